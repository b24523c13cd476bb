/* gen-seeds.c - writes the seed corpus of fuzz-blob: valid blobs sealed with the fuzzer's key and
 * context (see fuzz.h), and near misses of each kind the parser and opener must tell apart.
 *
 * Usage: gen-seeds DIR    (tests/fuzz/corpus/fuzz-blob holds its committed output; nonces are
 * random, so each run writes different but equivalent blobs.)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/kms_core.h"
#include "fuzz.h"

static const char *out_dir;
static const uint8_t key[CORE_KEY_BYTES] = FUZZ_BLOB_KEY;

static void put(const char *name, const void *p, size_t n)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", out_dir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
		perror(path);
		exit(1);
	}
}

static size_t seal(uint32_t version, const char *ctx, size_t n, uint8_t *out)
{
	uint8_t plain[CORE_BLOB_MAX_PLAIN];
	size_t len;

	for (size_t i = 0; i < n; i++)
		plain[i] = (uint8_t)(i * 31 + n);
	if (core_blob_seal(key, FUZZ_BLOB_KEY_ID, version, ctx, strlen(ctx), plain, n, out,
			   CORE_BLOB_MAX, &len) < 0) {
		fprintf(stderr, "core_blob_seal failed\n");
		exit(1);
	}
	return len;
}

static void redigest(uint8_t *blob, size_t len)
{
	if (core_sha256(blob, len - CORE_SHA256_BYTES, blob + len - CORE_SHA256_BYTES) < 0)
		exit(1);
}

/* An authentic blob (correct tag and digest) around an arbitrary, possibly malformed, frame. */
static size_t frame_blob(const uint8_t *frame, size_t framed, uint8_t *out)
{
	static const uint8_t nonce[CORE_NONCE_BYTES] = { 0xf0, 0x0d };
	size_t payload = CORE_NONCE_BYTES + framed + CORE_TAG_BYTES;
	size_t len = CORE_BLOB_HEADER + payload + CORE_KEY_ID_BYTES + 4 + CORE_SHA256_BYTES;
	uint8_t *tail = out + CORE_BLOB_HEADER + payload;
	uint8_t aad[CORE_BLOB_HEADER + CORE_KEY_ID_BYTES + 4];
	const char *ctx = FUZZ_BLOB_CONTEXT;
	size_t body = len - CORE_BLOB_HEADER - CORE_SHA256_BYTES;

	out[0] = CORE_BLOB_VERSION;
	out[1] = 0;
	out[2] = (uint8_t)body;
	out[3] = (uint8_t)(body >> 8);
	memcpy(out + CORE_BLOB_HEADER, nonce, sizeof(nonce));
	memcpy(tail, FUZZ_BLOB_KEY_ID, CORE_KEY_ID_BYTES);
	memset(tail + CORE_KEY_ID_BYTES, 0, 4);
	tail[CORE_KEY_ID_BYTES] = 1;
	memcpy(aad, out, CORE_BLOB_HEADER);
	memcpy(aad + CORE_BLOB_HEADER, tail, CORE_KEY_ID_BYTES + 4);
	if (core_gcm_seal_detached_(key, nonce, aad, sizeof(aad), ctx, strlen(ctx), frame, framed,
				    out + CORE_BLOB_HEADER + CORE_NONCE_BYTES,
				    out + CORE_BLOB_HEADER + CORE_NONCE_BYTES + framed) < 0)
		exit(1);
	redigest(out, len);
	return len;
}

int main(int argc, char **argv)
{
	static const size_t sizes[] = { 1, 15, 16, 17, 32, 64, 100, 4096 };
	static uint8_t blob[CORE_BLOB_MAX];
	uint8_t frame[64] = { 0 };
	char name[64];
	size_t len;

	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	out_dir = argv[1];

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		len = seal(1, FUZZ_BLOB_CONTEXT, sizes[i], blob);
		snprintf(name, sizeof(name), "blob-%04zu", sizes[i]);
		put(name, blob, len);
	}
	len = seal(UINT32_MAX, FUZZ_BLOB_CONTEXT, 64, blob);
	put("blob-0064-version-max", blob, len);
	len = seal(1, "another context", 64, blob);
	put("blob-0064-other-context", blob, len);

	len = seal(1, FUZZ_BLOB_CONTEXT, 64, blob);
	put("miss-truncated", blob, len - 1);
	blob[len - 1] ^= 0x01;
	put("miss-bad-digest", blob, len);
	blob[len - 1] ^= 0x01;
	blob[40] ^= 0x80;
	redigest(blob, len);
	put("miss-forged-payload", blob, len);
	blob[40] ^= 0x80;
	blob[0] = 3;
	redigest(blob, len);
	put("miss-format-version", blob, len);
	blob[0] = CORE_BLOB_VERSION;
	blob[len - 72] = 'G';
	redigest(blob, len);
	put("miss-key-id-char", blob, len);

	/* Authentic frames the opener must still refuse: 17 bytes claimed as 33, then bad pad. */
	frame[0] = 33;
	len = frame_blob(frame, 16 + 16 + 20, blob);
	put("frame-bad-length", blob, len);
	frame[0] = 17;
	frame[40] = 1;
	len = frame_blob(frame, 16 + 16 + 20, blob);
	put("frame-bad-padding", blob, len);
	frame[40] = 0;
	len = frame_blob(frame, 16 + 16 + 20, blob);
	put("frame-good-zeros", blob, len);

	put("edge-empty", "", 0);
	memset(blob, 0, 140);
	put("edge-zeros-140", blob, 140);
	put("edge-header-only", "\x02\x00\x98\x00", 4);
	return 0;
}
