/* fuzz-blob.c - the ciphertext container parser and opener (core/core_blob.c).
 *
 * Any input either fails core_blob_parse() with KMS_E_CIPHER_INVALID or parses into a blob whose
 * fields lie inside the input; a parsed blob either fails core_blob_open() with
 * KMS_E_DECRYPT_FAILED / KMS_E_CIPHER_INVALID and no output, or opens to a plaintext whose size
 * matches the blob's, and which re-seals to a blob of the same size that opens to the same bytes.
 *
 * The unkeyed SHA-256 digest would stop almost every mutation at the door, so each input is also
 * tried with its last 32 bytes replaced by the right digest: that copy reaches the structure
 * checks and the GCM open, as a forger's blob would.
 */
#include <stdlib.h>
#include <string.h>

#include "common/kms_err.h"
#include "core/kms_core.h"
#include "fuzz.h"

static void check(const uint8_t *data, size_t size)
{
	static const uint8_t key[CORE_KEY_BYTES] = FUZZ_BLOB_KEY;
	static uint8_t plain[CORE_BLOB_MAX_PLAIN], again[CORE_BLOB_MAX_PLAIN];
	static uint8_t resealed[CORE_BLOB_MAX];
	const char *ctx = FUZZ_BLOB_CONTEXT;
	struct core_blob blob, blob2;
	size_t n = 1, n2, len2;
	/* Everything in a blob but the payload. */
	size_t fixed = CORE_BLOB_HEADER + CORE_KEY_ID_BYTES + 4 + CORE_SHA256_BYTES;
	int r;

	r = core_blob_parse(data, size, &blob);
	if (r == KMS_E_CIPHER_INVALID)
		return;
	if (r < 0)
		abort();
	if (blob.bytes != data || blob.len != size || blob.payload != data + CORE_BLOB_HEADER ||
	    blob.payload_len + fixed != size || strlen(blob.key_id) != CORE_KEY_ID_BYTES ||
	    memcmp(blob.key_id, data + CORE_BLOB_HEADER + blob.payload_len, CORE_KEY_ID_BYTES) ||
	    core_blob_plain_bound(&blob) == 0 || core_blob_plain_bound(&blob) % 16 ||
	    core_blob_plain_bound(&blob) > CORE_BLOB_MAX_PLAIN)
		abort();

	r = core_blob_open(key, &blob, ctx, strlen(ctx), plain, sizeof(plain), &n);
	if (r == KMS_E_DECRYPT_FAILED || r == KMS_E_CIPHER_INVALID) {
		if (n != 0)
			abort();
		return;
	}
	if (r < 0 || n == 0 || (n + 15) / 16 * 16 != core_blob_plain_bound(&blob))
		abort();

	if (core_blob_seal(key, blob.key_id, blob.key_version, ctx, strlen(ctx), plain, n, resealed,
			   sizeof(resealed), &len2) < 0 ||
	    len2 != size)
		abort();
	if (core_blob_parse(resealed, len2, &blob2) < 0 || blob2.key_version != blob.key_version ||
	    strcmp(blob2.key_id, blob.key_id) != 0)
		abort();
	if (core_blob_open(key, &blob2, ctx, strlen(ctx), again, sizeof(again), &n2) < 0 ||
	    n2 != n || memcmp(again, plain, n) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy;

	check(data, size);
	if (size <= CORE_SHA256_BYTES || size > CORE_BLOB_MAX)
		return 0;
	copy = malloc(size);
	if (!copy)
		abort();
	memcpy(copy, data, size);
	if (core_sha256(copy, size - CORE_SHA256_BYTES, copy + size - CORE_SHA256_BYTES) < 0)
		abort();
	check(copy, size);
	free(copy);
	return 0;
}
