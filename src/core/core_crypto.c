/* AES-256-GCM, SHA-256, HMAC and randomness over OpenSSL 3 EVP.
 *
 * The cipher and digest are fetched once (implicit fetches cost ~0.3 us per call) and each thread
 * keeps one EVP_CIPHER_CTX and one EVP_MD_CTX (a fresh context per call costs another ~0.3 us,
 * ~1,400 instructions for the SHA-256 of every data key's blob); kms-api/fuse-facts measured
 * both. Every EVP call is checked, every output length re-checked. */
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
static pthread_key_t core_tls_key;
static bool core_ready;
/* Bumped in a forked child: random bytes drawn before fork must never be used twice. */
static unsigned core_fork_generation;

/* Per-thread state, in the secure heap because it holds secrets:
 * - a pool of DRBG output: RAND_priv_bytes costs ~0.6 us per call whatever the size (a getpid
 *   for fork detection, parameter look-ups), and a data key needs two draws (key and nonce);
 *   drawing 4 KiB at a time makes that one call per ~50 requests. Bytes are wiped as used.
 * - one cipher context per direction that keeps the last key's schedule: re-keying costs more
 *   than the GCM work on 64 bytes, and consecutive requests mostly use the same key. */
#define CORE_POOL_BYTES 4096u
struct core_tls {
	uint8_t pool[CORE_POOL_BYTES];
	size_t pool_pos;
	unsigned pool_generation;
	EVP_CIPHER_CTX *ctx[2]; /* [0] decrypt, [1] encrypt */
	uint8_t key[2][CORE_KEY_BYTES];
	bool keyed[2];
	EVP_MD_CTX *md; /* SHA-256, initialised again for every digest */
};

static void core_tls_destroy(void *p)
{
	struct core_tls *t = p;

	EVP_CIPHER_CTX_free(t->ctx[0]);
	EVP_CIPHER_CTX_free(t->ctx[1]);
	EVP_MD_CTX_free(t->md);
	OPENSSL_secure_clear_free(t, sizeof(*t));
}

static void core_after_fork_child(void)
{
	core_fork_generation++;
}

static void core_init_once(void)
{
	core_gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
	core_sha = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (pthread_key_create(&core_tls_key, core_tls_destroy) != 0 ||
	    pthread_atfork(NULL, NULL, core_after_fork_child) != 0)
		return;
	core_ready = core_gcm && core_sha;
}

int core_init(void)
{
	pthread_once(&core_once, core_init_once);
	return core_ready ? 0 : KMS_E_INTERNAL;
}

void core_thread_release(void)
{
	struct core_tls *t;

	if (!core_ready || !(t = pthread_getspecific(core_tls_key)))
		return;
	(void)pthread_setspecific(core_tls_key, NULL);
	core_tls_destroy(t);
}

static struct core_tls *core_tls(void)
{
	struct core_tls *t;

	if (core_init() < 0)
		return NULL;
	t = pthread_getspecific(core_tls_key);
	if (t)
		return t;
	t = OPENSSL_secure_zalloc(sizeof(*t));
	if (!t)
		return NULL;
	t->pool_pos = CORE_POOL_BYTES; /* empty */
	t->ctx[0] = EVP_CIPHER_CTX_new();
	t->ctx[1] = EVP_CIPHER_CTX_new();
	t->md = EVP_MD_CTX_new();
	if (!t->ctx[0] || !t->ctx[1] || !t->md || pthread_setspecific(core_tls_key, t) != 0) {
		core_tls_destroy(t);
		return NULL;
	}
	return t;
}

int core_random_secret(uint8_t *out, size_t n)
{
	struct core_tls *t = n <= CORE_POOL_BYTES / 8 ? core_tls() : NULL;

	if (!t)
		return RAND_priv_bytes(out, (int)n) == 1 ? 0 : KMS_E_INTERNAL;
	if (t->pool_generation != core_fork_generation || CORE_POOL_BYTES - t->pool_pos < n) {
		if (RAND_priv_bytes(t->pool, CORE_POOL_BYTES) != 1) {
			t->pool_pos = CORE_POOL_BYTES;
			return KMS_E_INTERNAL;
		}
		t->pool_pos = 0;
		t->pool_generation = core_fork_generation;
	}
	memcpy(out, t->pool + t->pool_pos, n);
	OPENSSL_cleanse(t->pool + t->pool_pos, n); /* each byte is handed out once */
	t->pool_pos += n;
	return 0;
}

int core_random(uint8_t *out, size_t n)
{
	/* Public randomness (nonces, ids) from the same private DRBG stream: one draw serves both,
	 * and seeing a nonce tells nothing about the bytes handed out next to it. */
	return core_random_secret(out, n);
}

int core_sha256(const void *in, size_t n, uint8_t out[CORE_SHA256_BYTES])
{
	struct core_tls *t = core_tls();
	unsigned int len = 0;

	if (!t)
		return KMS_E_INTERNAL;
	/* Init_ex2 resets the context: nothing of the previous digest is carried over. */
	if (EVP_DigestInit_ex2(t->md, core_sha, NULL) != 1 || EVP_DigestUpdate(t->md, in, n) != 1 ||
	    EVP_DigestFinal_ex(t->md, out, &len) != 1 || len != CORE_SHA256_BYTES)
		return KMS_E_INTERNAL;
	return 0;
}

int core_hmac_sha256(const uint8_t *key, size_t key_len, const void *in, size_t n,
		     uint8_t out[CORE_SHA256_BYTES])
{
	unsigned int len = 0;

	/* The digest fetched once, not EVP_sha256()'s implicit fetch at every call. */
	if (core_init() < 0)
		return KMS_E_INTERNAL;
	if (!HMAC(core_sha, key, (int)key_len, in, n, out, &len) || len != CORE_SHA256_BYTES)
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
			const void *aad2, size_t aad2_len, const uint8_t *in, size_t n,
			uint8_t *out, uint8_t tag[CORE_TAG_BYTES])
{
	struct core_tls *t = core_tls();
	EVP_CIPHER_CTX *ctx;
	int len = 0, fin = 0, d = enc ? 1 : 0;

	if (!t || n > INT32_MAX || aad1_len > INT32_MAX || aad2_len > INT32_MAX)
		return KMS_E_INTERNAL;
	ctx = t->ctx[d];
	if (t->keyed[d] && CRYPTO_memcmp(t->key[d], key, CORE_KEY_BYTES) == 0) {
		/* Same key as last time on this thread: new nonce only, schedule kept. */
		if (EVP_CipherInit_ex2(ctx, NULL, NULL, nonce, d, NULL) != 1)
			return KMS_E_INTERNAL;
	} else {
		t->keyed[d] = false;
		if (EVP_CipherInit_ex2(ctx, core_gcm, key, nonce, d, NULL) != 1)
			return KMS_E_INTERNAL;
		memcpy(t->key[d], key, CORE_KEY_BYTES);
		t->keyed[d] = true;
	}
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
			    const uint8_t nonce[CORE_NONCE_BYTES], const void *aad1,
			    size_t aad1_len, const void *aad2, size_t aad2_len, const uint8_t *in,
			    size_t n, uint8_t *out, uint8_t tag[CORE_TAG_BYTES])
{
	return core_gcm_run(true, key, nonce, aad1, aad1_len, aad2, aad2_len, in, n, out, tag);
}

int core_gcm_open_detached_(const uint8_t key[CORE_KEY_BYTES],
			    const uint8_t nonce[CORE_NONCE_BYTES], const void *aad1,
			    size_t aad1_len, const void *aad2, size_t aad2_len, const uint8_t *in,
			    size_t n, uint8_t *out, const uint8_t tag[CORE_TAG_BYTES])
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
