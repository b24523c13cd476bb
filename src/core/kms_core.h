/* kms_core.h - envelope crypto and the ciphertext container. No I/O, no JSON, no FUSE, no logging.
 *
 * The ciphertext blob keeps the real service's container (kms-api.md section 8), so tools that
 * parse or size-check it keep working:
 *
 *   offset  size      field
 *   0       2         format version, u16 LE = 2
 *   2       2         body length, u16 LE = bytes between this header and the trailing digest
 *   4       P         payload = nonce(12) || AES-256-GCM(u32 LE n || plaintext || zero pad) || tag(16)
 *   4+P     36        key id, ASCII
 *   40+P    4         key material version, u32 LE
 *   44+P    32        SHA-256 of all preceding bytes
 *
 * The GCM plaintext is padded to ceil16(n) + 20 bytes so that P = 48 + ceil16(n) and the whole
 * blob is 124 + ceil16(n) bytes: the service's published size law (188 bytes for a 64-byte DEK).
 * GCM's AAD is header || key id || version || encryption context, so every byte of the blob but
 * the digest is authenticated; the unkeyed digest only tells corruption (KMS.2201) apart from
 * tampering or a wrong context (KMS.2203).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/kms_common.h"

#define CORE_KEY_BYTES	    32u
#define CORE_NONCE_BYTES    12u
#define CORE_TAG_BYTES	    16u
#define CORE_SHA256_BYTES   32u
#define CORE_KEY_ID_BYTES   36u
#define CORE_BLOB_VERSION   2u
#define CORE_BLOB_HEADER    4u
#define CORE_BLOB_OVERHEAD  124u /* 4 + 48 + 36 + 4 + 32 */
#define CORE_BLOB_MAX_PLAIN 4096u
#define CORE_BLOB_MAX	    (CORE_BLOB_OVERHEAD + CORE_BLOB_MAX_PLAIN)
/* Root-key sealing of key material: nonce || ciphertext || tag. */
#define CORE_SEALED_OVERHEAD (CORE_NONCE_BYTES + CORE_TAG_BYTES)

/* Size of the blob for an n-byte plaintext: 124 + ceil(n/16)*16. */
static inline size_t core_blob_size(size_t n)
{
	return CORE_BLOB_OVERHEAD + (n + 15) / 16 * 16;
}

/* Fetch the algorithms once. Safe to call many times and from many threads. */
KMS_WUR int core_init(void);
/* Free the calling thread's cipher contexts and random pool now. Threads that end free theirs,
 * but the main thread's stay until exit, where a secure-heap copy hides them from leak checks:
 * tools call this before they return from main. */
void core_thread_release(void);

KMS_WUR int core_random(uint8_t *out, size_t n);	/* nonces, ids, public randomness */
KMS_WUR int core_random_secret(uint8_t *out, size_t n); /* key material and DEKs */
KMS_WUR int core_sha256(const void *in, size_t n, uint8_t out[CORE_SHA256_BYTES]);

/* A parsed, structurally valid blob. Points into the caller's bytes. */
struct core_blob {
	const uint8_t *bytes;
	size_t len;
	const uint8_t *payload;
	size_t payload_len;
	char key_id[CORE_KEY_ID_BYTES + 1];
	uint32_t key_version;
};

/* Checks size, version, body length, digest and the key id's characters: KMS_E_CIPHER_INVALID
 * for anything wrong. Says nothing about authenticity: that is core_blob_open's job. */
KMS_WUR int core_blob_parse(const uint8_t *in, size_t len, struct core_blob *blob);

/* Plaintext length the blob carries, from its size alone (rounded up to 16: an upper bound). */
static inline size_t core_blob_plain_bound(const struct core_blob *blob)
{
	return blob->len - CORE_BLOB_OVERHEAD;
}

/* Encrypt n bytes (1..CORE_BLOB_MAX_PLAIN) under key into a blob of core_blob_size(n) bytes. */
KMS_WUR int core_blob_seal(const uint8_t key[CORE_KEY_BYTES], const char *key_id,
			   uint32_t key_version, const void *context, size_t context_len,
			   const uint8_t *plain, size_t n, uint8_t *out, size_t out_cap,
			   size_t *out_len);

/* What a blob protects. A data blob's AAD carries one more byte (0x01) after the prefix, so a
 * data-key blob never opens as data nor the other way round (kms-api.md: a data-key ciphertext
 * given to decrypt-data fails with KMS.2203); canonical contexts start with '{' or are empty,
 * so the two AAD forms cannot coincide. core_blob_seal/open are the data-key forms. */
enum core_blob_kind { CORE_BLOB_DATAKEY = 0, CORE_BLOB_DATA = 1 };
KMS_WUR int core_blob_seal_kind(enum core_blob_kind kind, const uint8_t key[CORE_KEY_BYTES],
				const char *key_id, uint32_t key_version, const void *context,
				size_t context_len, const uint8_t *plain, size_t n, uint8_t *out,
				size_t out_cap, size_t *out_len);
KMS_WUR int core_blob_open_kind(enum core_blob_kind kind, const uint8_t key[CORE_KEY_BYTES],
				const struct core_blob *blob, const void *context,
				size_t context_len, uint8_t *plain, size_t cap, size_t *n);

/* Decrypt a parsed blob with the material of blob->key_version. KMS_E_DECRYPT_FAILED when the
 * tag does not verify (wrong key, context or tampering). plain gets the exact plaintext. */
KMS_WUR int core_blob_open(const uint8_t key[CORE_KEY_BYTES], const struct core_blob *blob,
			   const void *context, size_t context_len, uint8_t *plain, size_t cap,
			   size_t *n);

/* Seal/unseal CMK material (or any small secret) under the root key; aad binds it to its place. */
KMS_WUR int core_seal(const uint8_t key[CORE_KEY_BYTES], const void *aad, size_t aad_len,
		      const uint8_t *plain, size_t n, uint8_t *out, size_t out_cap,
		      size_t *out_len);
KMS_WUR int core_unseal(const uint8_t key[CORE_KEY_BYTES], const void *aad, size_t aad_len,
			const uint8_t *in, size_t len, uint8_t *plain, size_t cap, size_t *n);

/* Internal: GCM with a detached tag and two AAD pieces (used by the blob code). */
KMS_WUR int core_gcm_seal_detached_(const uint8_t key[CORE_KEY_BYTES],
				    const uint8_t nonce[CORE_NONCE_BYTES], const void *aad1,
				    size_t aad1_len, const void *aad2, size_t aad2_len,
				    const uint8_t *in, size_t n, uint8_t *out,
				    uint8_t tag[CORE_TAG_BYTES]);
KMS_WUR int core_gcm_open_detached_(const uint8_t key[CORE_KEY_BYTES],
				    const uint8_t nonce[CORE_NONCE_BYTES], const void *aad1,
				    size_t aad1_len, const void *aad2, size_t aad2_len,
				    const uint8_t *in, size_t n, uint8_t *out,
				    const uint8_t tag[CORE_TAG_BYTES]);

/* HMAC-SHA-256, for token signatures and key checks. */
KMS_WUR int core_hmac_sha256(const uint8_t *key, size_t key_len, const void *in, size_t n,
			     uint8_t out[CORE_SHA256_BYTES]);
/* Constant-time comparison. */
bool core_equal(const void *a, const void *b, size_t n);

/* RSA wrapping keys for importing key material (kms-api.md section 4.12). */
#define CORE_RSA_BITS	      2048
#define CORE_RSA_PRIV_DER_MAX 2048u /* PKCS#1 DER of an RSA-2048 key is about 1190 bytes */
#define CORE_RSA_PUB_DER_MAX  512u  /* SubjectPublicKeyInfo DER: 294 bytes */
enum core_rsa_padding {
	CORE_RSA_PKCS1_V1_5 = 1,
	CORE_RSA_OAEP_SHA1 = 2,
	CORE_RSA_OAEP_SHA256 = 3, /* MGF1 with the same digest, as openssl pkeyutl does */
};
/* A fresh RSA-2048 key: private key DER (PKCS#1) into priv, SubjectPublicKeyInfo DER into pub. */
KMS_WUR int core_rsa_generate(uint8_t *priv, size_t priv_cap, size_t *priv_len, uint8_t *pub,
			      size_t pub_cap, size_t *pub_len);
/* Decrypt n bytes with the private key DER. Every failure (malformed key, bad padding, output
 * too large) is KMS_E_DECRYPT_FAILED alike, so callers cannot become a padding oracle. */
KMS_WUR int core_rsa_decrypt(enum core_rsa_padding pad, const uint8_t *priv, size_t priv_len,
			     const uint8_t *in, size_t n, uint8_t *out, size_t cap,
			     size_t *out_len);
