#include "kms_hex.h"

#include <string.h>

#include "kms_err.h"

static const char kms_hex_digits[] = "0123456789ABCDEF";

/* Four bytes to their eight digits at once, in arithmetic only (no table indexed by a secret
 * byte): each byte's two nibbles spread into two bytes, then n + '0', plus 7 past 9. Every
 * answer carries a hex blob, so this runs for each request. */
static void kms_hex_encode4(const uint8_t *in, char *out)
{
	uint32_t x;
	uint64_t y, n, past9;

	memcpy(&x, in, sizeof(x));
	y = x;
	y = (y | y << 16) & 0x0000FFFF0000FFFFull;
	y = (y | y << 8) & 0x00FF00FF00FF00FFull; /* byte i in 16-bit lane i */
	n = ((y >> 4) & 0x000F000F000F000Full) | ((y & 0x000F000F000F000Full) << 8);
	past9 = ((n + 0x0606060606060606ull) >> 4) & 0x0101010101010101ull;
	n += 0x3030303030303030ull + past9 * 7;
	memcpy(out, &n, sizeof(n));
}

void kms_hex_encode(const uint8_t *in, size_t n, char *out)
{
	size_t i = 0;

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	for (; i + 4 <= n; i += 4)
		kms_hex_encode4(in + i, out + 2 * i);
#endif
	for (; i < n; i++) {
		out[2 * i] = kms_hex_digits[in[i] >> 4];
		out[2 * i + 1] = kms_hex_digits[in[i] & 15];
	}
	out[2 * n] = 0;
}

/* A run of an alphabet's characters, first..last, whose values count up from value. */
struct kms_char_run {
	char first, last;
	int value;
};

/* c's value in the alphabet made of runs, or -1 when c is not in it. */
static int kms_char_value(char c, const struct kms_char_run *runs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (c >= runs[i].first && c <= runs[i].last)
			return runs[i].value + (c - runs[i].first);
	return -1;
}

static int kms_hex_value(char c)
{
	static const struct kms_char_run hex[] = {
		{ '0', '9', 0 },
		{ 'a', 'f', 10 },
		{ 'A', 'F', 10 },
	};

	return kms_char_value(c, hex, KMS_ARRAY_SIZE(hex));
}

bool kms_is_hex(const char *in, size_t len)
{
	if (len % 2)
		return false;
	for (size_t i = 0; i < len; i++)
		if (kms_hex_value(in[i]) < 0)
			return false;
	return true;
}

int kms_hex_decode(const char *in, size_t len, uint8_t *out, size_t cap, size_t *out_len)
{
	*out_len = 0;
	if (len % 2 || len / 2 > cap)
		return KMS_E_BAD_PARAM;
	for (size_t i = 0; i < len / 2; i++) {
		int hi = kms_hex_value(in[2 * i]), lo = kms_hex_value(in[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return KMS_E_BAD_PARAM;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	*out_len = len / 2;
	return 0;
}

static const char kms_b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void kms_base64_encode(const uint8_t *in, size_t n, char *out)
{
	size_t o = 0, i = 0;

	for (; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];

		out[o++] = kms_b64_alphabet[v >> 18];
		out[o++] = kms_b64_alphabet[(v >> 12) & 63];
		out[o++] = kms_b64_alphabet[(v >> 6) & 63];
		out[o++] = kms_b64_alphabet[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);

		out[o++] = kms_b64_alphabet[v >> 18];
		out[o++] = kms_b64_alphabet[(v >> 12) & 63];
		out[o++] = i + 1 < n ? kms_b64_alphabet[(v >> 6) & 63] : '=';
		out[o++] = '=';
	}
	out[o] = 0;
}

static int kms_b64_value(char c)
{
	static const struct kms_char_run b64[] = {
		{ 'A', 'Z', 0 },  { 'a', 'z', 26 }, { '0', '9', 52 },
		{ '+', '+', 62 }, { '/', '/', 63 },
	};

	return kms_char_value(c, b64, KMS_ARRAY_SIZE(b64));
}

int kms_base64_decode(const char *in, size_t len, uint8_t *out, size_t cap, size_t *out_len)
{
	size_t pad = 0, n, o = 0;

	*out_len = 0;
	if (len == 0 || len % 4)
		return KMS_E_BAD_PARAM;
	if (in[len - 1] == '=')
		pad++;
	if (in[len - 2] == '=')
		pad++;
	n = len / 4 * 3 - pad;
	if (n > cap)
		return KMS_E_BAD_PARAM;
	for (size_t i = 0; i < len; i += 4) {
		int v[4];
		uint32_t w;

		for (int j = 0; j < 4; j++) {
			bool padding_allowed = i + 4 == len && j >= 4 - (int)pad;

			v[j] = padding_allowed ? 0 : kms_b64_value(in[i + j]);
			if (v[j] < 0)
				return KMS_E_BAD_PARAM;
		}
		w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
		    (uint32_t)v[3];
		if (i + 4 == len && ((pad == 1 && (w & 0xff)) || (pad == 2 && (w & 0xffff))))
			return KMS_E_BAD_PARAM; /* non-canonical trailing bits */
		out[o++] = (uint8_t)(w >> 16);
		if (o < n)
			out[o++] = (uint8_t)(w >> 8);
		if (o < n)
			out[o++] = (uint8_t)w;
	}
	*out_len = n;
	return 0;
}
