/* fuzz-hex.c - the strict hex and Base64 decoders (common/kms_hex.c).
 *
 * Properties, on every input x (as text, then as bytes):
 *   hex:    decode(x) succeeds iff kms_is_hex(x); then encode(decode(x)) == upper-case(x).
 *   base64: decode(x) succeeds only for canonical text: encode(decode(x)) == x, byte for byte.
 *   both:   decode(encode(x)) == x for arbitrary bytes x; failures report 0 bytes written.
 */
#include <stdlib.h>
#include <string.h>

#include "common/kms_err.h"
#include "common/kms_hex.h"
#include "fuzz.h"

static char upper(char c)
{
	return c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
}

static void check_hex(const char *in, size_t size, uint8_t *dec, char *enc)
{
	size_t n = 1;
	int r = kms_hex_decode(in, size, dec, size / 2, &n);

	if ((r == 0) != kms_is_hex(in, size) || (r < 0 && (r != KMS_E_BAD_PARAM || n != 0)))
		abort();
	if (r < 0)
		return;
	if (n != size / 2)
		abort();
	kms_hex_encode(dec, n, enc);
	for (size_t i = 0; i < size; i++)
		if (enc[i] != upper(in[i]))
			abort();
	/* One byte short of room must fail. */
	if (size && kms_hex_decode(in, size, dec, size / 2 - 1, &n) != KMS_E_BAD_PARAM)
		abort();
}

static void check_base64(const char *in, size_t size, uint8_t *dec, char *enc)
{
	size_t cap = size / 4 * 3, n = 1;
	int r = kms_base64_decode(in, size, dec, cap, &n);

	if (r < 0) {
		if (r != KMS_E_BAD_PARAM || n != 0)
			abort();
		return;
	}
	if (size == 0 || size % 4 || n > cap || n + 2 < cap)
		abort();
	kms_base64_encode(dec, n, enc);
	if (strlen(enc) != size || memcmp(enc, in, size) != 0)
		abort();
}

static void check_encoders(const uint8_t *data, size_t size, uint8_t *dec, char *enc)
{
	size_t n;

	kms_hex_encode(data, size, enc);
	if (strlen(enc) != 2 * size || !kms_is_hex(enc, 2 * size) ||
	    kms_hex_decode(enc, 2 * size, dec, size, &n) < 0 || n != size ||
	    memcmp(dec, data, size) != 0)
		abort();
	kms_base64_encode(data, size, enc);
	if (strlen(enc) != kms_base64_encoded_len(size))
		abort();
	if (size && (kms_base64_decode(enc, strlen(enc), dec, size, &n) < 0 || n != size ||
		     memcmp(dec, data, size) != 0))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Room for the largest output: 2n + 1 hex digits, (n + 2) / 3 * 4 + 1 Base64 chars. */
	uint8_t *dec = malloc(size + 1);
	char *enc = malloc(2 * size + 8);

	if (!dec || !enc)
		abort();
	check_hex((const char *)data, size, dec, enc);
	check_base64((const char *)data, size, dec, enc);
	check_encoders(data, size, dec, enc);
	free(dec);
	free(enc);
	return 0;
}
