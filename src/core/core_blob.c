/* The ciphertext container (format in kms_core.h). Parsing is bounded and total: every byte
 * sequence is either a structurally valid blob or KMS_E_CIPHER_INVALID. */
#include "kms_core.h"

#include <string.h>

#include <openssl/crypto.h>

#include "common/kms_err.h"

#define CORE_PREFIX_BYTES (CORE_BLOB_HEADER + CORE_KEY_ID_BYTES + 4u)
#define CORE_FRAME_BYTES  20u /* u32 length + 16 bytes of zero padding */

static void core_put_u16(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void core_put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static uint32_t core_get_u16(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static uint32_t core_get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static bool core_key_id_chars_ok(const uint8_t *p)
{
	for (size_t i = 0; i < CORE_KEY_ID_BYTES; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		uint8_t c = p[i];

		if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
	}
	return true;
}

/* The authenticated prefix: header || key id || version. */
static void core_prefix(uint8_t out[CORE_PREFIX_BYTES], const uint8_t header[CORE_BLOB_HEADER],
			const char *key_id, uint32_t key_version)
{
	memcpy(out, header, CORE_BLOB_HEADER);
	memcpy(out + CORE_BLOB_HEADER, key_id, CORE_KEY_ID_BYTES);
	core_put_u32(out + CORE_BLOB_HEADER + CORE_KEY_ID_BYTES, key_version);
}

int core_blob_parse(const uint8_t *in, size_t len, struct core_blob *blob)
{
	uint8_t digest[CORE_SHA256_BYTES];
	size_t payload_len;
	const uint8_t *tail;

	memset(blob, 0, sizeof(*blob));
	if (!in || len < CORE_BLOB_OVERHEAD + 16 || len > CORE_BLOB_MAX ||
	    (len - CORE_BLOB_OVERHEAD) % 16)
		return KMS_E_CIPHER_INVALID;
	if (core_get_u16(in) != CORE_BLOB_VERSION ||
	    core_get_u16(in + 2) != len - CORE_BLOB_HEADER - CORE_SHA256_BYTES)
		return KMS_E_CIPHER_INVALID;
	if (core_sha256(in, len - CORE_SHA256_BYTES, digest) < 0)
		return KMS_E_INTERNAL;
	if (!core_equal(digest, in + len - CORE_SHA256_BYTES, CORE_SHA256_BYTES))
		return KMS_E_CIPHER_INVALID;
	payload_len = len - CORE_BLOB_HEADER - CORE_KEY_ID_BYTES - 4 - CORE_SHA256_BYTES;
	tail = in + CORE_BLOB_HEADER + payload_len;
	if (!core_key_id_chars_ok(tail))
		return KMS_E_CIPHER_INVALID;
	blob->bytes = in;
	blob->len = len;
	blob->payload = in + CORE_BLOB_HEADER;
	blob->payload_len = payload_len;
	memcpy(blob->key_id, tail, CORE_KEY_ID_BYTES);
	blob->key_id[CORE_KEY_ID_BYTES] = 0;
	blob->key_version = core_get_u32(tail + CORE_KEY_ID_BYTES);
	return 0;
}

int core_blob_seal(const uint8_t key[CORE_KEY_BYTES], const char *key_id, uint32_t key_version,
		   const void *context, size_t context_len, const uint8_t *plain, size_t n,
		   uint8_t *out, size_t out_cap, size_t *out_len)
{
	return core_blob_seal_kind(CORE_BLOB_DATAKEY, key, key_id, key_version, context,
				   context_len, plain, n, out, out_cap, out_len);
}

int core_blob_open(const uint8_t key[CORE_KEY_BYTES], const struct core_blob *blob,
		   const void *context, size_t context_len, uint8_t *plain, size_t cap, size_t *n)
{
	return core_blob_open_kind(CORE_BLOB_DATAKEY, key, blob, context, context_len, plain, cap,
				   n);
}

int core_blob_seal_kind(enum core_blob_kind kind, const uint8_t key[CORE_KEY_BYTES],
			const char *key_id, uint32_t key_version, const void *context,
			size_t context_len, const uint8_t *plain, size_t n, uint8_t *out,
			size_t out_cap, size_t *out_len)
{
	uint8_t frame[CORE_BLOB_MAX_PLAIN + CORE_FRAME_BYTES + 16];
	uint8_t prefix[CORE_PREFIX_BYTES + 1];
	size_t total, framed, payload_len;
	uint8_t *payload, *tail;
	int r = KMS_E_INTERNAL;

	*out_len = 0;
	if (n == 0 || n > CORE_BLOB_MAX_PLAIN || strlen(key_id) != CORE_KEY_ID_BYTES ||
	    !core_key_id_chars_ok((const uint8_t *)key_id))
		return KMS_E_INTERNAL;
	total = core_blob_size(n);
	if (out_cap < total)
		return KMS_E_INTERNAL;
	framed = (n + 15) / 16 * 16 + CORE_FRAME_BYTES;
	payload_len = CORE_NONCE_BYTES + framed + CORE_TAG_BYTES;

	core_put_u16(out, CORE_BLOB_VERSION);
	core_put_u16(out + 2, (uint32_t)(total - CORE_BLOB_HEADER - CORE_SHA256_BYTES));
	payload = out + CORE_BLOB_HEADER;
	tail = payload + payload_len;
	memcpy(tail, key_id, CORE_KEY_ID_BYTES);
	core_put_u32(tail + CORE_KEY_ID_BYTES, key_version);
	core_prefix(prefix, out, key_id, key_version);
	prefix[CORE_PREFIX_BYTES] = 1; /* used only for CORE_BLOB_DATA */

	memset(frame, 0, framed);
	core_put_u32(frame, (uint32_t)n);
	memcpy(frame + 4, plain, n);
	if ((r = core_random(payload, CORE_NONCE_BYTES)) < 0)
		goto out;
	r = core_gcm_seal_detached_(key, payload, prefix,
				    CORE_PREFIX_BYTES + (kind == CORE_BLOB_DATA), context,
				    context_len, frame, framed, payload + CORE_NONCE_BYTES,
				    payload + CORE_NONCE_BYTES + framed);
	if (r < 0)
		goto out;
	if ((r = core_sha256(out, total - CORE_SHA256_BYTES, out + total - CORE_SHA256_BYTES)) < 0)
		goto out;
	*out_len = total;
	r = 0;
out:
	OPENSSL_cleanse(frame, framed);
	if (r < 0)
		OPENSSL_cleanse(out, total);
	return r;
}

int core_blob_open_kind(enum core_blob_kind kind, const uint8_t key[CORE_KEY_BYTES],
			const struct core_blob *blob, const void *context, size_t context_len,
			uint8_t *plain, size_t cap, size_t *n)
{
	uint8_t frame[CORE_BLOB_MAX_PLAIN + CORE_FRAME_BYTES + 16];
	uint8_t prefix[CORE_PREFIX_BYTES + 1];
	size_t framed, len;
	uint8_t zero = 0;
	int r;

	*n = 0;
	if (blob->payload_len < CORE_NONCE_BYTES + CORE_TAG_BYTES + CORE_FRAME_BYTES + 16)
		return KMS_E_CIPHER_INVALID;
	framed = blob->payload_len - CORE_NONCE_BYTES - CORE_TAG_BYTES;
	if (framed > sizeof(frame))
		return KMS_E_CIPHER_INVALID;
	core_prefix(prefix, blob->bytes, blob->key_id, blob->key_version);
	prefix[CORE_PREFIX_BYTES] = 1;
	r = core_gcm_open_detached_(key, blob->payload, prefix,
				    CORE_PREFIX_BYTES + (kind == CORE_BLOB_DATA), context,
				    context_len, blob->payload + CORE_NONCE_BYTES, framed, frame,
				    blob->payload + CORE_NONCE_BYTES + framed);
	if (r < 0)
		goto out;
	/* Authentic from here on; the checks below guard against our own encoder's bugs. */
	r = KMS_E_CIPHER_INVALID;
	len = core_get_u32(frame);
	if (len == 0 || (len + 15) / 16 * 16 + CORE_FRAME_BYTES != framed)
		goto out;
	for (size_t i = 4 + len; i < framed; i++)
		zero |= frame[i];
	if (zero)
		goto out;
	if (len > cap) {
		r = KMS_E_INTERNAL;
		goto out;
	}
	memcpy(plain, frame + 4, len);
	*n = len;
	r = 0;
out:
	OPENSSL_cleanse(frame, sizeof(frame));
	return r;
}
