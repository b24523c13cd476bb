/* AES-256-GCM, SHA-256, HMAC and randomness over OpenSSL 3 EVP.
 *
 * The cipher and digest are fetched once (implicit fetches cost ~0.3 us per call) and each thread
 * keeps one EVP_CIPHER_CTX (a fresh context per call costs another ~0.3 us); kms-api/fuse-facts
 * measured both. Every EVP call is checked, every output length re-checked. */
#include "kms_core.h"

#include <pthread.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "common/kms_err.h"

static EVP_CIPHER *core_gcm;
static EVP_MD *core_sha;
static pthread_once_t core_once = PTHREAD_ONCE_INIT;
static pthread_key_t core_ctx_key;
static bool core_ready;

static void core_ctx_destroy(void *p)
{
	EVP_CIPHER_CTX_free(p);
}

static void core_init_once(void)
{
	core_gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
	core_sha = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (pthread_key_create(&core_ctx_key, core_ctx_destroy) != 0)
		return;
	core_ready = core_gcm && core_sha;
}

int core_init(void)
{
	pthread_once(&core_once, core_init_once);
	return core_ready ? 0 : KMS_E_INTERNAL;
}

static EVP_CIPHER_CTX *core_ctx(void)
{
	EVP_CIPHER_CTX *ctx;

	if (core_init() < 0)
		return NULL;
	ctx = pthread_getspecific(core_ctx_key);
	if (ctx)
		return ctx;
	ctx = EVP_CIPHER_CTX_new();
	if (ctx && pthread_setspecific(core_ctx_key, ctx) != 0) {
		EVP_CIPHER_CTX_free(ctx);
		ctx = NULL;
	}
	return ctx;
}

int core_random(uint8_t *out, size_t n)
{
	return RAND_bytes(out, (int)n) == 1 ? 0 : KMS_E_INTERNAL;
}

int core_random_secret(uint8_t *out, size_t n)
{
	return RAND_priv_bytes(out, (int)n) == 1 ? 0 : KMS_E_INTERNAL;
}

int core_sha256(const void *in, size_t n, uint8_t out[CORE_SHA256_BYTES])
{
	unsigned int len = 0;

	if (core_init() < 0)
		return KMS_E_INTERNAL;
	if (EVP_Digest(in, n, out, &len, core_sha, NULL) != 1 || len != CORE_SHA256_BYTES)
		return KMS_E_INTERNAL;
	return 0;
}

int core_hmac_sha256(const uint8_t *key, size_t key_len, const void *in, size_t n,
		     uint8_t out[CORE_SHA256_BYTES])
{
	unsigned int len = 0;

	if (!HMAC(EVP_sha256(), key, (int)key_len, in, n, out, &len) || len != CORE_SHA256_BYTES)
		return KMS_E_INTERNAL;
	return 0;
}

bool core_equal(const void *a, const void *b, size_t n)
{
	return CRYPTO_memcmp(a, b, n) == 0;
}

/* One GCM pass. aad2 lets callers authenticate two non-adjacent pieces without copying. */
static int core_gcm_run(bool enc, const uint8_t key[CORE_KEY_BYTES],
			const uint8_t nonce[CORE_NONCE_BYTES], const void *aad1, size_t aad1_len,
			const void *aad2, size_t aad2_len, const uint8_t *in, size_t n, uint8_t *out,
			uint8_t tag[CORE_TAG_BYTES])
{
	EVP_CIPHER_CTX *ctx = core_ctx();
	int len = 0, fin = 0;

	if (!ctx || n > INT32_MAX || aad1_len > INT32_MAX || aad2_len > INT32_MAX)
		return KMS_E_INTERNAL;
	if (EVP_CipherInit_ex2(ctx, core_gcm, key, nonce, enc ? 1 : 0, NULL) != 1)
		return KMS_E_INTERNAL;
	if (aad1_len && EVP_CipherUpdate(ctx, NULL, &len, aad1, (int)aad1_len) != 1)
		return KMS_E_INTERNAL;
	if (aad2_len && EVP_CipherUpdate(ctx, NULL, &len, aad2, (int)aad2_len) != 1)
		return KMS_E_INTERNAL;
	if (EVP_CipherUpdate(ctx, out, &len, in, (int)n) != 1 || (size_t)len != n)
		return KMS_E_INTERNAL;
	if (!enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, CORE_TAG_BYTES, tag) != 1)
		return KMS_E_INTERNAL;
	if (EVP_CipherFinal_ex(ctx, out + len, &fin) != 1)
		return enc ? KMS_E_INTERNAL : KMS_E_DECRYPT_FAILED;
	if (fin != 0)
		return KMS_E_INTERNAL;
	if (enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, CORE_TAG_BYTES, tag) != 1)
		return KMS_E_INTERNAL;
	return 0;
}

int core_gcm_seal_detached_(const uint8_t key[CORE_KEY_BYTES],
			    const uint8_t nonce[CORE_NONCE_BYTES], const void *aad1, size_t aad1_len,
			    const void *aad2, size_t aad2_len, const uint8_t *in, size_t n,
			    uint8_t *out, uint8_t tag[CORE_TAG_BYTES])
{
	return core_gcm_run(true, key, nonce, aad1, aad1_len, aad2, aad2_len, in, n, out, tag);
}

int core_gcm_open_detached_(const uint8_t key[CORE_KEY_BYTES],
			    const uint8_t nonce[CORE_NONCE_BYTES], const void *aad1, size_t aad1_len,
			    const void *aad2, size_t aad2_len, const uint8_t *in, size_t n,
			    uint8_t *out, const uint8_t tag[CORE_TAG_BYTES])
{
	uint8_t t[CORE_TAG_BYTES];
	int r;

	memcpy(t, tag, sizeof(t));
	r = core_gcm_run(false, key, nonce, aad1, aad1_len, aad2, aad2_len, in, n, out, t);
	if (r < 0)
		OPENSSL_cleanse(out, n);
	return r;
}

int core_seal(const uint8_t key[CORE_KEY_BYTES], const void *aad, size_t aad_len,
	      const uint8_t *plain, size_t n, uint8_t *out, size_t out_cap, size_t *out_len)
{
	int r;

	*out_len = 0;
	if (out_cap < n + CORE_SEALED_OVERHEAD)
		return KMS_E_INTERNAL;
	if ((r = core_random(out, CORE_NONCE_BYTES)) < 0)
		return r;
	r = core_gcm_run(true, key, out, aad, aad_len, NULL, 0, plain, n, out + CORE_NONCE_BYTES,
			 out + CORE_NONCE_BYTES + n);
	if (r < 0)
		return r;
	*out_len = n + CORE_SEALED_OVERHEAD;
	return 0;
}

int core_unseal(const uint8_t key[CORE_KEY_BYTES], const void *aad, size_t aad_len,
		const uint8_t *in, size_t len, uint8_t *plain, size_t cap, size_t *n)
{
	size_t body;
	uint8_t tag[CORE_TAG_BYTES];
	int r;

	*n = 0;
	if (len < CORE_SEALED_OVERHEAD || len - CORE_SEALED_OVERHEAD > cap)
		return KMS_E_DECRYPT_FAILED;
	body = len - CORE_SEALED_OVERHEAD;
	memcpy(tag, in + CORE_NONCE_BYTES + body, CORE_TAG_BYTES);
	r = core_gcm_run(false, key, in, aad, aad_len, NULL, 0, in + CORE_NONCE_BYTES, body, plain,
			 tag);
	if (r < 0) {
		OPENSSL_cleanse(plain, body);
		return r;
	}
	*n = body;
	return 0;
}
