/* test-core-crypto.c - SHA-256, HMAC-SHA-256 and AES-256-GCM as core/ exposes them.
 *
 * Known answers: FIPS 180-2 / NIST examples for SHA-256, RFC 4231 for HMAC, and the GCM spec's
 * (McGrew & Viega) AES-256 test cases 13, 14 and 16. core_seal() draws its own nonce, so its
 * known answer goes the other way: a vector laid out as nonce || ciphertext || tag must unseal.
 */
#include "kms_test.h"

#include <pthread.h>

#include "core/kms_core.h"

TEST(init_idempotent)
{
	ASSERT_OK(core_init());
	ASSERT_OK(core_init());
}

/* ---- SHA-256 ---- */

TEST(sha256_known_answers)
{
	static const struct {
		const char *in;
		const char *digest;
	} v[] = {
		{ "", "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855" },
		{ "abc", "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD" },
		{ "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
		  "248D6A61D20638B8E5C026930C3E6039A33CE45964FF2167F6ECEDD419DB06C1" },
	};
	uint8_t d[CORE_SHA256_BYTES];

	for (size_t i = 0; i < KMS_ARRAY_SIZE(v); i++) {
		ASSERT_OK(core_sha256(v[i].in, strlen(v[i].in), d));
		ASSERT_HEXEQ(d, sizeof(d), v[i].digest);
	}
}

TEST(sha256_64_zero_bytes)
{
	uint8_t zero[64] = { 0 }, d[CORE_SHA256_BYTES];

	ASSERT_OK(core_sha256(zero, sizeof(zero), d));
	ASSERT_HEXEQ(d, sizeof(d),
		     "F5A5FD42D16A20302798EF6ED309979B43003D2320D9F0E8EA9831A92759FB4B");
}

TEST(sha256_million_a)
{
	static uint8_t a[1000000];
	uint8_t d[CORE_SHA256_BYTES];

	memset(a, 'a', sizeof(a));
	ASSERT_OK(core_sha256(a, sizeof(a), d));
	ASSERT_HEXEQ(d, sizeof(d),
		     "CDC76E5C9914FB9281A1C7E284D73E67F1809A48A497200E046D39CCC7112CD0");
}

/* ---- HMAC-SHA-256, RFC 4231 section 4 ---- */

static void hmac_case(const uint8_t *key, size_t key_len, const char *data, const char *mac,
		      size_t mac_len)
{
	uint8_t out[CORE_SHA256_BYTES];

	ASSERT_OK(core_hmac_sha256(key, key_len, data, strlen(data), out));
	ASSERT_HEXEQ(out, mac_len, mac);
}

#define HMAC_CASE(key, key_len, data, mac, mac_len)                                                \
	STEP(hmac_case(key, key_len, data, mac, mac_len))

TEST(hmac_rfc4231)
{
	uint8_t k[131];
	char d[51];

	memset(k, 0x0b, 20);
	HMAC_CASE(k, 20, "Hi There",
		  "B0344C61D8DB38535CA8AFCEAF0BF12B881DC200C9833DA726E9376C2E32CFF7", 32);
	HMAC_CASE((const uint8_t *)"Jefe", 4, "what do ya want for nothing?",
		  "5BDCC146BF60754E6A042426089575C75A003F089D2739839DEC58B964EC3843", 32);
	memset(k, 0xaa, 20);
	memset(d, 0xdd, 50);
	d[50] = 0;
	HMAC_CASE(k, 20, d, "773EA91E36800E46854DB8EBD09181A72959098B3EF8C122D9635514CED565FE", 32);
	for (int i = 0; i < 25; i++)
		k[i] = (uint8_t)(i + 1);
	memset(d, 0xcd, 50);
	HMAC_CASE(k, 25, d, "82558A389A443C0EA4CC819899F2083A85F0FAA3E578F8077A2E3FF46729665B", 32);
	/* Test case 5 is truncated to 128 bits. */
	memset(k, 0x0c, 20);
	HMAC_CASE(k, 20, "Test With Truncation", "A3B6167473100EE06E0C796C2955552B", 16);
	memset(k, 0xaa, 131);
	HMAC_CASE(k, 131, "Test Using Larger Than Block-Size Key - Hash Key First",
		  "60E431591EE0B67F0D8A26AACBF5B77F8E0BC6213728C5140546040F0EE37F54", 32);
	HMAC_CASE(k, 131,
		  "This is a test using a larger than block-size key and a larger than block-size "
		  "data. The key needs to be hashed before being used by the HMAC algorithm.",
		  "9B09FFA71B942FCB27635FBCD5B0E944BFDC63644F0713938A7F51535C3A35E2", 32);
}

TEST(hmac_empty_key_and_data)
{
	uint8_t out[CORE_SHA256_BYTES];

	ASSERT_OK(core_hmac_sha256((const uint8_t *)"", 0, "", 0, out));
	ASSERT_HEXEQ(out, sizeof(out),
		     "B613679A0814D9EC772F95D778C35FC5FF1697C493715653C6C712144292C5AD");
}

/* ---- AES-256-GCM ---- */

#define TC16_K	"FEFFE9928665731C6D6A8F9467308308FEFFE9928665731C6D6A8F9467308308"
#define TC16_IV "CAFEBABEFACEDBADDECAF888"
#define TC16_P                                                                                     \
	"D9313225F88406E5A55909C5AFF5269A86A7A9531534F7DA2E4C303D8A318A72"                         \
	"1C3C0C95956809532FCF0E2449A6B525B16AEDF5AA0DE657BA637B39"
#define TC16_A "FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2"
#define TC16_C                                                                                     \
	"522DC1F099567D07F47F37A32A84427D643A8CDCBFE5C0C97598A2BD2555D1AA"                         \
	"8CB08E48590DBB3DA7B08B1056828838C5F61E6393BA7A0ABCC9F662"
#define TC16_T "76FC6ECE0F4E1768CDDF8853BB2D551B"

struct tc16 {
	uint8_t k[32], iv[12], p[60], a[20], c[60], t[16];
};

static void tc16_load(struct tc16 *v)
{
	kms_test_unhex(TC16_K, v->k, sizeof(v->k));
	kms_test_unhex(TC16_IV, v->iv, sizeof(v->iv));
	kms_test_unhex(TC16_P, v->p, sizeof(v->p));
	kms_test_unhex(TC16_A, v->a, sizeof(v->a));
	kms_test_unhex(TC16_C, v->c, sizeof(v->c));
	kms_test_unhex(TC16_T, v->t, sizeof(v->t));
}

TEST(gcm_spec_zero_key)
{
	uint8_t key[32] = { 0 }, nonce[12] = { 0 }, zero[16] = { 0 }, out[16], tag[16];

	/* Test case 13: empty plaintext, no AAD. */
	ASSERT_OK(core_gcm_seal_detached_(key, nonce, NULL, 0, NULL, 0, zero, 0, out, tag));
	ASSERT_HEXEQ(tag, 16, "530F8AFBC74536B9A963B4F1C4CB738B");
	/* Test case 14: one zero block. */
	ASSERT_OK(core_gcm_seal_detached_(key, nonce, NULL, 0, NULL, 0, zero, 16, out, tag));
	ASSERT_HEXEQ(out, 16, "CEA7403D4D606B6E074EC5D3BAF39D18");
	ASSERT_HEXEQ(tag, 16, "D0D1C8A799996BF0265B98B5D48AB919");
}

TEST(gcm_spec_tc16_detached)
{
	struct tc16 v;
	uint8_t out[60], back[60], tag[16];

	tc16_load(&v);
	ASSERT_OK(core_gcm_seal_detached_(v.k, v.iv, v.a, 20, NULL, 0, v.p, 60, out, tag));
	ASSERT_MEMEQ(out, v.c, 60);
	ASSERT_MEMEQ(tag, v.t, 16);
	ASSERT_OK(core_gcm_open_detached_(v.k, v.iv, v.a, 20, NULL, 0, v.c, 60, back, v.t));
	ASSERT_MEMEQ(back, v.p, 60);
}

/* The two AAD pieces are one AAD, wherever it is cut. */
TEST(gcm_aad_split_anywhere)
{
	struct tc16 v;
	uint8_t out[60], back[60], tag[16];

	tc16_load(&v);
	for (size_t cut = 0; cut <= 20; cut++) {
		ASSERT_OK(core_gcm_seal_detached_(v.k, v.iv, v.a, cut, v.a + cut, 20 - cut, v.p, 60,
						  out, tag));
		ASSERT_MEMEQ(out, v.c, 60);
		ASSERT_MEMEQ(tag, v.t, 16);
		ASSERT_OK(core_gcm_open_detached_(v.k, v.iv, v.a, cut, v.a + cut, 20 - cut, v.c, 60,
						  back, v.t));
		ASSERT_MEMEQ(back, v.p, 60);
	}
}

TEST(gcm_open_detached_failure_wipes)
{
	struct tc16 v;
	uint8_t back[60], zero[60] = { 0 };

	tc16_load(&v);
	v.t[15] ^= 1;
	memset(back, 0xaa, sizeof(back));
	ASSERT_ERR(core_gcm_open_detached_(v.k, v.iv, v.a, 20, NULL, 0, v.c, 60, back, v.t),
		   KMS_E_DECRYPT_FAILED);
	ASSERT_MEMEQ(back, zero, 60);
}

/* core_seal's layout is nonce || ciphertext || tag: a spec vector laid out so must unseal. */
TEST(unseal_known_answer)
{
	struct tc16 v;
	uint8_t in[12 + 60 + 16], plain[60];
	size_t n = 99;

	tc16_load(&v);
	memcpy(in, v.iv, 12);
	memcpy(in + 12, v.c, 60);
	memcpy(in + 72, v.t, 16);
	ASSERT_OK(core_unseal(v.k, v.a, 20, in, sizeof(in), plain, sizeof(plain), &n));
	ASSERT_EQ(n, 60);
	ASSERT_MEMEQ(plain, v.p, 60);
	/* Test case 13 the same way: an empty secret is nonce || tag. */
	memset(in, 0, 12);
	kms_test_unhex("530F8AFBC74536B9A963B4F1C4CB738B", in + 12, 16);
	memset(v.k, 0, sizeof(v.k));
	ASSERT_OK(core_unseal(v.k, NULL, 0, in, 28, plain, sizeof(plain), &n));
	ASSERT_EQ(n, 0);
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seed * 131 + i * 7 + 1);
}

TEST(seal_round_trip)
{
	uint8_t key[32], plain[1000], sealed[1000 + CORE_SEALED_OVERHEAD], back[1000];
	static const char aad[] = "kms/project/key-material/v1";

	fill(key, sizeof(key), 1);
	for (size_t n = 0; n <= sizeof(plain); n += n < 80 ? 1 : 184) {
		size_t len = 0, got = 99;

		fill(plain, n, (unsigned)n);
		ASSERT_OK(core_seal(key, aad, sizeof(aad), plain, n, sealed, sizeof(sealed), &len));
		ASSERT_EQ(len, n + CORE_SEALED_OVERHEAD);
		ASSERT_OK(
			core_unseal(key, aad, sizeof(aad), sealed, len, back, sizeof(back), &got));
		ASSERT_EQ(got, n);
		ASSERT_MEMEQ(back, plain, n);
	}
}

TEST(seal_fresh_nonce)
{
	uint8_t key[32], plain[32], a[32 + CORE_SEALED_OVERHEAD], b[sizeof(a)];
	size_t la, lb;

	fill(key, sizeof(key), 2);
	fill(plain, sizeof(plain), 3);
	ASSERT_OK(core_seal(key, "x", 1, plain, sizeof(plain), a, sizeof(a), &la));
	ASSERT_OK(core_seal(key, "x", 1, plain, sizeof(plain), b, sizeof(b), &lb));
	ASSERT_EQ(la, lb);
	ASSERT_TRUE(memcmp(a, b, CORE_NONCE_BYTES) != 0);
	ASSERT_TRUE(memcmp(a, b, la) != 0);
}

TEST(unseal_rejects_wrong_key_and_aad)
{
	uint8_t key[32], other[32], plain[64], sealed[64 + CORE_SEALED_OVERHEAD], back[64];
	uint8_t zero[64] = { 0 };
	static const char aad[] = "project-a/key-1";
	static const char *const wrong[] = {
		"project-a/key-2", "project-a/key-1x", "project-a/key-", "PROJECT-A/KEY-1", "",
	};
	size_t len, n;

	fill(key, sizeof(key), 4);
	memcpy(other, key, sizeof(other));
	other[31] ^= 0x80;
	fill(plain, sizeof(plain), 5);
	ASSERT_OK(core_seal(key, aad, strlen(aad), plain, 64, sealed, sizeof(sealed), &len));
	memset(back, 0xaa, sizeof(back));
	n = 99;
	ASSERT_ERR(core_unseal(other, aad, strlen(aad), sealed, len, back, sizeof(back), &n),
		   KMS_E_DECRYPT_FAILED);
	ASSERT_EQ(n, 0);
	/* Nothing of the (wrong) decryption is left in the caller's buffer. */
	ASSERT_MEMEQ(back, zero, 64);
	for (size_t i = 0; i < KMS_ARRAY_SIZE(wrong); i++)
		ASSERT_ERR(core_unseal(key, wrong[i], strlen(wrong[i]), sealed, len, back,
				       sizeof(back), &n),
			   KMS_E_DECRYPT_FAILED);
	ASSERT_ERR(core_unseal(key, NULL, 0, sealed, len, back, sizeof(back), &n),
		   KMS_E_DECRYPT_FAILED);
	ASSERT_OK(core_unseal(key, aad, strlen(aad), sealed, len, back, sizeof(back), &n));
	ASSERT_MEMEQ(back, plain, 64);
}

TEST(unseal_rejects_every_truncation_and_flip)
{
	uint8_t key[32], plain[40], sealed[40 + CORE_SEALED_OVERHEAD], back[40];
	size_t len, n;

	fill(key, sizeof(key), 6);
	fill(plain, sizeof(plain), 7);
	ASSERT_OK(core_seal(key, "aad", 3, plain, sizeof(plain), sealed, sizeof(sealed), &len));
	for (size_t cut = 0; cut < len; cut++) {
		n = 99;
		ASSERT_ERR(core_unseal(key, "aad", 3, sealed, cut, back, sizeof(back), &n),
			   KMS_E_DECRYPT_FAILED);
		ASSERT_EQ(n, 0);
	}
	for (size_t bit = 0; bit < len * 8; bit++) {
		sealed[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		ASSERT_ERR(core_unseal(key, "aad", 3, sealed, len, back, sizeof(back), &n),
			   KMS_E_DECRYPT_FAILED);
		sealed[bit / 8] ^= (uint8_t)(1u << (bit % 8));
	}
	ASSERT_OK(core_unseal(key, "aad", 3, sealed, len, back, sizeof(back), &n));
}

TEST(seal_unseal_capacity)
{
	uint8_t key[32] = { 1 }, plain[32] = { 2 }, sealed[32 + CORE_SEALED_OVERHEAD], back[32];
	size_t len = 99, n = 99;

	ASSERT_FAIL(core_seal(key, NULL, 0, plain, 32, sealed, sizeof(sealed) - 1, &len));
	ASSERT_EQ(len, 0);
	ASSERT_OK(core_seal(key, NULL, 0, plain, 32, sealed, sizeof(sealed), &len));
	ASSERT_FAIL(core_unseal(key, NULL, 0, sealed, len, back, 31, &n));
	ASSERT_EQ(n, 0);
	ASSERT_OK(core_unseal(key, NULL, 0, sealed, len, back, 32, &n));
	ASSERT_EQ(n, 32);
}

/* ---- randomness and comparison ---- */

TEST(random_differs)
{
	uint8_t a[32] = { 0 }, b[32] = { 0 }, c[32] = { 0 }, d[32] = { 0 };

	ASSERT_OK(core_random(a, sizeof(a)));
	ASSERT_OK(core_random(b, sizeof(b)));
	ASSERT_OK(core_random_secret(c, sizeof(c)));
	ASSERT_OK(core_random_secret(d, sizeof(d)));
	/* 2^-256 odds of a false failure. */
	ASSERT_TRUE(memcmp(a, b, 32) != 0);
	ASSERT_TRUE(memcmp(c, d, 32) != 0);
	ASSERT_TRUE(memcmp(a, c, 32) != 0);
	ASSERT_OK(core_random(a, 0));
}

TEST(equal)
{
	uint8_t a[33], b[33];

	fill(a, sizeof(a), 8);
	memcpy(b, a, sizeof(b));
	ASSERT_TRUE(core_equal(a, b, sizeof(a)));
	ASSERT_TRUE(core_equal(a, b, 0));
	for (size_t i = 0; i < sizeof(a); i++) {
		b[i] ^= 0x01;
		ASSERT_FALSE(core_equal(a, b, sizeof(a)));
		b[i] ^= 0x81;
		ASSERT_FALSE(core_equal(a, b, sizeof(a)));
		b[i] ^= 0x80;
	}
	ASSERT_TRUE(core_equal(a, b, sizeof(a)));
}

/* ---- threads: each thread has its own cipher context ---- */

struct worker {
	unsigned seed;
	int failures;
};

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	uint8_t key[32], plain[100], sealed[100 + CORE_SEALED_OVERHEAD], back[100];

	fill(key, sizeof(key), w->seed);
	for (unsigned i = 0; i < 300; i++) {
		size_t n = i % 100 + 1, len = 0, got;

		fill(plain, n, w->seed + i);
		if (core_seal(key, &w->seed, sizeof(w->seed), plain, n, sealed, sizeof(sealed),
			      &len) < 0) {
			w->failures++;
			continue;
		}
		if (core_unseal(key, &w->seed, sizeof(w->seed), sealed, len, back, sizeof(back),
				&got) < 0 ||
		    got != n || memcmp(back, plain, n) != 0)
			w->failures++;
		/* A failure in between must not poison this thread's context. */
		sealed[len - 1] ^= 1;
		if (core_unseal(key, &w->seed, sizeof(w->seed), sealed, len, back, sizeof(back),
				&got) != KMS_E_DECRYPT_FAILED)
			w->failures++;
	}
	return NULL;
}

TEST(threads)
{
	pthread_t t[4];
	struct worker w[4];

	for (unsigned i = 0; i < 4; i++) {
		w[i] = (struct worker){ .seed = i + 10 };
		ASSERT_EQ(pthread_create(&t[i], NULL, worker_run, &w[i]), 0);
	}
	for (unsigned i = 0; i < 4; i++)
		ASSERT_EQ(pthread_join(t[i], NULL), 0);
	for (unsigned i = 0; i < 4; i++)
		ASSERT_EQ(w[i].failures, 0);
}
