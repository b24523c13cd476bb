/* test-api-import.c - importing key material (kms-api.md sections 4.1, 4.8, 4.12, 6.2, 7.4):
 * create-key with origin "external" (state 5, no material), get-parameters-for-import (RSA-2048
 * wrapping key, self-contained import token), import-key-material (each wrapping algorithm,
 * KMS.2601-2606, 0309, 0310), delete-imported-key-material (KMS.2701, 0309), re-import of the
 * same material after deletion (old ciphertexts decrypt again) and of other material (KMS.2606),
 * expiry of imported material by store_sweep(), no rotation of imported keys (KMS.0312), and the
 * upgrade of a version-1 key database.
 *
 * The test wraps material as a user would: with OpenSSL and the public key it was given.
 */
#include "kms_test_api.h"

#include <time.h>

#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <sqlite3.h>

#include "common/kms_err.h"
#include "common/kms_time.h"

#define DAY_MS	  86400000LL
#define TOKEN_MAX 6145
#define B64_MAX	  1024

static const char *const algs[] = { "RSAES_PKCS1_V1_5", "RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256" };

struct params {
	char token[TOKEN_MAX];
	char pub[B64_MAX];
	const char *alg;
};

static struct api_service *cur_svc;

static int ccall(const char *project, const char *action, const char *json, cJSON **r)
{
	struct api_caller c = { .project = project, .trusted = true };

	return fx_call_as(cur_svc ? cur_svc : fx_svc(), &c, action, API_SCOPE_PROJECT, json,
			  strlen(json), r);
}

static void new_key(const char *project, const char *alias, bool external, char id[FX_ID_LEN])
{
	fx_key_in(cur_svc ? cur_svc : fx_svc(), project,
		  fx_fmt("{\"key_alias\":\"%s\"%s}", alias,
			 external ? ",\"origin\":\"external\"" : ""),
		  id);
}

/* In project, an external key "ext" (no material yet) and a key "kms" with KMS material. */
static void ext_and_kms(const char *project, char ext[FX_ID_LEN], char kms[FX_ID_LEN])
{
	STEP(new_key(project, "ext", true, ext));
	new_key(project, "kms", false, kms);
}

static const char *field(const char *project, const char *id, const char *name)
{
	cJSON *r = NULL;

	if (ccall(project, "describe-key", fx_kid(id), &r) != 0)
		return NULL;
	return fx_str(r, fx_fmt("key_info.%s", name));
}

static void get_params(const char *project, const char *id, const char *alg, struct params *p)
{
	cJSON *r = NULL;
	const cJSON *exp;
	double now_s = (double)time(NULL);

	ASSERT_ERR(ccall(project, "get-parameters-for-import",
			 fx_fmt("{\"key_id\":\"%s\",\"wrapping_algorithm\":\"%s\"}", id, alg), &r),
		   0);
	ASSERT_STREQ(fx_str(r, "key_id"), id);
	ASSERT_TRUE(fx_str(r, "import_token") != NULL);
	ASSERT_TRUE(strlen(fx_str(r, "import_token")) >= 200);
	ASSERT_TRUE(strlen(fx_str(r, "import_token")) <= 6144);
	ASSERT_TRUE(fx_base64_chars(fx_str(r, "import_token")));
	/* Seconds, 24 hours from now, as a JSON number (the API's example). */
	exp = fx_get(r, "expiration_time");
	ASSERT_TRUE(cJSON_IsNumber(exp));
	ASSERT_TRUE(exp->valuedouble >= now_s + 86400 - 5 && exp->valuedouble <= now_s + 86400 + 5);
	fx_cp(p->token, sizeof(p->token), fx_str(r, "import_token"));
	fx_cp(p->pub, sizeof(p->pub), fx_str(r, "public_key"));
	p->alg = alg;
}

/* Wrap n bytes with the Base64 DER public key, as a user would; Base64 into out. */
static void wrap_with(const char *pub_b64, const char *alg, const uint8_t *m, size_t n,
		      char out[B64_MAX])
{
	uint8_t der[1024], ct[512];
	const unsigned char *p = der;
	size_t der_len = 0, ct_len = sizeof(ct);
	EVP_PKEY *pk;
	EVP_PKEY_CTX *ctx;

	ASSERT_OK(kms_base64_decode(pub_b64, strlen(pub_b64), der, sizeof(der), &der_len));
	pk = d2i_PUBKEY(NULL, &p, (long)der_len);
	ASSERT_TRUE(pk != NULL);
	ASSERT_EQ(EVP_PKEY_get_bits(pk), 2048);
	ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL);
	ASSERT_TRUE(ctx && EVP_PKEY_encrypt_init(ctx) > 0);
	if (strcmp(alg, "RSAES_PKCS1_V1_5") == 0) {
		ASSERT_TRUE(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) > 0);
	} else {
		const char *md = strcmp(alg, "RSAES_OAEP_SHA_1") == 0 ? "SHA1" : "SHA256";

		ASSERT_TRUE(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) > 0);
		ASSERT_TRUE(EVP_PKEY_CTX_set_rsa_oaep_md_name(ctx, md, NULL) > 0);
	}
	ASSERT_TRUE(EVP_PKEY_encrypt(ctx, ct, &ct_len, m, n) > 0);
	ASSERT_EQ(ct_len, 256);
	kms_base64_encode(ct, ct_len, out);
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(pk);
}

static int import_with(const char *project, const char *id, const struct params *p,
		       const char *wrapped, const char *extra)
{
	cJSON *r = NULL;

	return ccall(project, "import-key-material",
		     fx_fmt("{\"key_id\":\"%s\",\"import_token\":\"%s\","
			    "\"encrypted_key_material\":\"%s\"%s}",
			    id, p->token, wrapped, extra ? extra : ""),
		     &r);
}

/* get-parameters-for-import, wrap m, import-key-material: the reply is exactly {}. */
static void import_material(const char *project, const char *id, const char *alg,
			    const uint8_t m[32], const char *extra)
{
	static struct params p;
	char wrapped[B64_MAX];

	get_params(project, id, alg, &p);
	wrap_with(p.pub, alg, m, 32, wrapped);
	ASSERT_ERR(import_with(project, id, &p, wrapped, extra), 0);
	ASSERT_STREQ(fx_last(), "{}\n");
}

/* A data key and encrypt-data under the key, both decrypted back. */
static void crypto_works(const char *project, const char *id, struct fx_blobs *c)
{
	cJSON *r = NULL;

	STEP(fx_blobs_in(cur_svc ? cur_svc : fx_svc(), project, id, "imported", c));
	ASSERT_ERR(ccall(project, "decrypt-datakey", fx_unwrap_req(id, c->dk), &r), 0);
	ASSERT_STREQ(fx_str(r, "data_key"), c->plain);
	ASSERT_ERR(ccall(project, "decrypt-data", fx_fmt("{\"cipher_text\":\"%s\"}", c->data), &r),
		   0);
	ASSERT_STREQ(fx_str(r, "plain_text"), "imported");
}

/* Old ciphertexts decrypt (again) to what they held. */
static void old_cts_decrypt(const char *project, const char *id, const struct fx_blobs *c, int err)
{
	cJSON *r = NULL;

	ASSERT_ERR(ccall(project, "decrypt-datakey", fx_unwrap_req(id, c->dk), &r), err);
	if (err == 0)
		ASSERT_STREQ(fx_str(r, "data_key"), c->plain);
	ASSERT_ERR(ccall(project, "decrypt-data", fx_fmt("{\"cipher_text\":\"%s\"}", c->data), &r),
		   err);
	if (err == 0)
		ASSERT_STREQ(fx_str(r, "plain_text"), "imported");
}

static void crypto_refused(const char *project, const char *id, int err)
{
	cJSON *r = NULL;

	ASSERT_ERR(ccall(project, "create-datakey", fx_kid(id), &r), err);
	ASSERT_ERR(ccall(project, "create-datakey-without-plaintext", fx_kid(id), &r), err);
	ASSERT_ERR(ccall(project, "encrypt-data", fx_kid_with(id, "\"plain_text\":\"x\""), &r),
		   err);
}

/* ---- create-key origin external, and the round trip for each wrapping algorithm ---- */

TEST(external_key_pending_import)
{
	char id[FX_ID_LEN];
	cJSON *r = NULL;

	new_key("im-new", "ext", true, id);
	ASSERT_STREQ(field("im-new", id, "key_state"), "5");
	ASSERT_STREQ(field("im-new", id, "origin"), "external");
	ASSERT_STREQ(field("im-new", id, "expiration_time"), "");
	ASSERT_ERR(ccall("im-new", "list-keys", "{\"key_state\":\"5\"}", &r), 0);
	ASSERT_EQ(fx_get(r, "total")->valuedouble, 1);
	{
		const cJSON *d = cJSON_GetArrayItem(fx_get(r, "key_details"), 0);

		ASSERT_STREQ(fx_str(d, "origin"), "external");
		ASSERT_STREQ(fx_str(d, "key_state"), "5");
	}
	/* No material: every crypto action is refused (docs/api-differences.md: KMS.0209). */
	crypto_refused("im-new", id, KMS_E_KEY_DISABLED);
	/* It counts against the quota like any key. */
	ASSERT_ERR(ccall("im-new", "user-instances", "{}", &r), 0);
	ASSERT_EQ(fx_get(r, "instance_num")->valuedouble, 1);
}

TEST(import_round_trip_each_algorithm)
{
	for (size_t i = 0; i < KMS_ARRAY_SIZE(algs); i++) {
		uint8_t m[32];
		char id[FX_ID_LEN];
		struct fx_blobs c;

		ASSERT_OK(core_random(m, sizeof(m)));
		new_key("im-rt", fx_fmt("k%zu", i), true, id);
		import_material("im-rt", id, algs[i], m, NULL);
		ASSERT_STREQ(field("im-rt", id, "key_state"), "2");
		ASSERT_STREQ(field("im-rt", id, "origin"), "external");
		ASSERT_STREQ(field("im-rt", id, "expiration_time"), "");
		crypto_works("im-rt", id, &c);
	}
}

TEST(import_in_key_folder)
{
	static struct params p;
	char id[FX_ID_LEN], wrapped[B64_MAX];
	uint8_t m[32];
	cJSON *r = NULL;

	ASSERT_OK(core_random(m, sizeof(m)));
	new_key("im-kf", "kf", true, id);
	ASSERT_ERR(call("im-kf", "get-parameters-for-import", API_SCOPE_KEY, id,
			"{\"wrapping_algorithm\":\"RSAES_OAEP_SHA_256\"}", &r),
		   0);
	fx_cp(p.token, sizeof(p.token), fx_str(r, "import_token"));
	wrap_with(fx_str(r, "public_key"), "RSAES_OAEP_SHA_256", m, 32, wrapped);
	ASSERT_ERR(call("im-kf", "import-key-material", API_SCOPE_KEY, id,
			fx_fmt("{\"import_token\":\"%s\",\"encrypted_key_material\":\"%s\"}",
			       p.token, wrapped),
			&r),
		   0);
	ASSERT_STREQ(field("im-kf", id, "key_state"), "2");
	ASSERT_ERR(call("im-kf", "delete-imported-key-material", API_SCOPE_KEY, id, "", &r), 0);
	ASSERT_STREQ(fx_last(), "{}\n");
	ASSERT_STREQ(field("im-kf", id, "key_state"), "5");
}

/* ---- errors ---- */

TEST(get_parameters_errors)
{
	char ext[FX_ID_LEN], kms[FX_ID_LEN];
	uint8_t m[32] = { 1 };
	cJSON *r = NULL;

	STEP(ext_and_kms("im-gp", ext, kms));
	ASSERT_ERR(ccall("im-gp", "get-parameters-for-import",
			 "{\"wrapping_algorithm\":\"RSAES_OAEP_SHA_256\"}", &r),
		   KMS_E_MISSING);
	ASSERT_ERR(ccall("im-gp", "get-parameters-for-import", fx_kid(ext), &r), KMS_E_MISSING);
	ASSERT_ERR(ccall("im-gp", "get-parameters-for-import",
			 fx_kid_with(ext, "\"wrapping_algorithm\":\"RSAES_OAEP_SHA_512\""), &r),
		   KMS_E_BAD_PARAM);
	ASSERT_ERR(ccall("im-gp", "get-parameters-for-import",
			 fx_kid_with(ext, "\"wrapping_algorithm\":1"), &r),
		   KMS_E_BAD_PARAM);
	ASSERT_ERR(ccall("im-gp", "get-parameters-for-import",
			 fx_kid_with(ext, "\"wrapping_algorithm\":\"RSAES_OAEP_SHA_1\","
					  "\"sequence\":\"short\""),
			 &r),
		   KMS_E_BAD_SEQUENCE);
	ASSERT_ERR(ccall("im-gp", "get-parameters-for-import",
			 "{\"key_id\":\"0badc0de-0000-4000-8000-000000000000\","
			 "\"wrapping_algorithm\":\"RSAES_OAEP_SHA_1\"}",
			 &r),
		   KMS_E_KEY_NOT_FOUND);
	ASSERT_ERR(ccall("im-gp", "get-parameters-for-import",
			 "{\"key_id\":\"nope\",\"wrapping_algorithm\":\"RSAES_OAEP_SHA_1\"}", &r),
		   KMS_E_BAD_KEY_ID);
	ASSERT_ERR(ccall("im-gp", "get-parameters-for-import",
			 fx_kid_with(kms, "\"wrapping_algorithm\":\"RSAES_OAEP_SHA_1\""), &r),
		   KMS_E_EXTERNAL_REQUIRED);
	import_material("im-gp", ext, "RSAES_OAEP_SHA_1", m, NULL);
	ASSERT_ERR(ccall("im-gp", "get-parameters-for-import",
			 fx_kid_with(ext, "\"wrapping_algorithm\":\"RSAES_OAEP_SHA_1\""), &r),
		   KMS_E_NOT_PENDING_IMPORT);
}

/* A token as get-parameters-for-import makes it, with another expiry (the layout of
 * api_import.c), sealed under this store's root key. */
static void token_with_expiry(const char *token, int64_t expiry_ms, char out[TOKEN_MAX])
{
	static uint8_t sealed[6144], plain[6144];
	size_t n = 0, pn = 0;
	struct store *st = fx_svc()->store;

	ASSERT_OK(kms_base64_decode(token, strlen(token), sealed, sizeof(sealed), &n));
	ASSERT_OK(store_unseal_opaque(st, "import-token", sealed, n, plain, sizeof(plain), &pn));
	ASSERT_TRUE(memcmp(plain, "KIT1", 4) == 0);
	for (int i = 0; i < 8; i++)
		plain[5 + i] = (uint8_t)((uint64_t)expiry_ms >> (8 * i));
	ASSERT_OK(store_seal_opaque(st, "import-token", plain, pn, sealed, sizeof(sealed), &n));
	kms_base64_encode(sealed, n, out);
	/* Sealed under another label, the same bytes are no token. */
	ASSERT_ERR(store_unseal_opaque(st, "other", sealed, n, plain, sizeof(plain), &pn),
		   KMS_E_DECRYPT_FAILED);
}

TEST(import_errors)
{
	static struct params p, p2, bad;
	char ext[FX_ID_LEN], ext2[FX_ID_LEN], kms[FX_ID_LEN], wrapped[B64_MAX], w16[B64_MAX];
	char junk[B64_MAX];
	uint8_t m[32], m16[16], raw[256];
	cJSON *r = NULL;

	ASSERT_OK(core_random(m, sizeof(m)));
	ASSERT_OK(core_random(m16, sizeof(m16)));
	new_key("im-err", "ext", true, ext);
	new_key("im-err", "ext2", true, ext2);
	new_key("im-err", "kms", false, kms);
	get_params("im-err", ext, "RSAES_OAEP_SHA_256", &p);
	get_params("im-err", ext2, "RSAES_OAEP_SHA_256", &p2);
	wrap_with(p.pub, "RSAES_OAEP_SHA_256", m, 32, wrapped);

	/* Required fields. */
	ASSERT_ERR(ccall("im-err", "import-key-material",
			 fx_fmt("{\"import_token\":\"%s\",\"encrypted_key_material\":\"%s\"}",
				p.token, wrapped),
			 &r),
		   KMS_E_MISSING);
	ASSERT_ERR(
		ccall("im-err", "import-key-material",
		      fx_fmt("{\"key_id\":\"%s\",\"encrypted_key_material\":\"%s\"}", ext, wrapped),
		      &r),
		KMS_E_MISSING);
	ASSERT_ERR(ccall("im-err", "import-key-material",
			 fx_fmt("{\"key_id\":\"%s\",\"import_token\":\"%s\"}", ext, p.token), &r),
		   KMS_E_MISSING);
	/* import_token: ^[0-9a-zA-Z+/=]{200,6144}$, then it must be ours (KMS.2605). */
	memset(bad.token, 'A', 199);
	bad.token[199] = 0;
	ASSERT_ERR(import_with("im-err", ext, &bad, wrapped, NULL), KMS_E_IMPORT_TOKEN);
	memset(bad.token, 'A', 6145);
	bad.token[6145 - 1] = 0;
	ASSERT_ERR(import_with("im-err", ext, &bad, wrapped, NULL), KMS_E_IMPORT_TOKEN);
	snprintf(bad.token, sizeof(bad.token), "%s", p.token);
	bad.token[10] = '-';
	ASSERT_ERR(import_with("im-err", ext, &bad, wrapped, NULL), KMS_E_IMPORT_TOKEN);
	snprintf(bad.token, sizeof(bad.token), "%s", p.token);
	bad.token[100] = bad.token[100] == 'A' ? 'B' : 'A'; /* a flipped bit: not sealed by us */
	ASSERT_ERR(import_with("im-err", ext, &bad, wrapped, NULL), KMS_E_IMPORT_TOKEN);
	memset(bad.token, 'A', 400);
	bad.token[400] = 0;
	ASSERT_ERR(import_with("im-err", ext, &bad, wrapped, NULL), KMS_E_IMPORT_TOKEN);
	ASSERT_ERR(ccall("im-err", "import-key-material",
			 fx_fmt("{\"key_id\":\"%s\",\"import_token\":5,"
				"\"encrypted_key_material\":\"%s\"}",
				ext, wrapped),
			 &r),
		   KMS_E_IMPORT_TOKEN);
	/* encrypted_key_material: ^[0-9a-zA-Z+/=]{344,360}$ and Base64 (KMS.0308). */
	ASSERT_ERR(import_with("im-err", ext, &p, "AAAA", NULL), KMS_E_BAD_PARAM);
	ASSERT_ERR(import_with("im-err", ext, &p, fx_fmt("%.340s!!!!", wrapped), NULL),
		   KMS_E_BAD_PARAM);
	/* expiration_time: seconds, later than now (KMS.2602); malformed KMS.0308. */
	ASSERT_ERR(import_with("im-err", ext, &p, wrapped, ",\"expiration_time\":\"1000000000\""),
		   KMS_E_IMPORT_EXPIRATION);
	ASSERT_ERR(import_with("im-err", ext, &p, wrapped,
			       fx_fmt(",\"expiration_time\":%lld", (long long)time(NULL) - 1)),
		   KMS_E_IMPORT_EXPIRATION);
	ASSERT_ERR(import_with("im-err", ext, &p, wrapped, ",\"expiration_time\":\"soon\""),
		   KMS_E_BAD_PARAM);
	ASSERT_ERR(import_with("im-err", ext, &p, wrapped, ",\"expiration_time\":-5"),
		   KMS_E_BAD_PARAM);
	/* The key: external (KMS.0309), pending import (KMS.0310), known (KMS.0207). */
	ASSERT_ERR(import_with("im-err", kms, &p, wrapped, NULL), KMS_E_EXTERNAL_REQUIRED);
	ASSERT_ERR(import_with("im-err", "0badc0de-0000-4000-8000-000000000000", &p, wrapped, NULL),
		   KMS_E_KEY_NOT_FOUND);
	/* A token of another key (KMS.2603). */
	ASSERT_ERR(import_with("im-err", ext2, &p, wrapped, NULL), KMS_E_IMPORT_KEY_MISMATCH);
	/* An expired token (KMS.2601). */
	token_with_expiry(p.token, kms_time_real_ms() - 1000, bad.token);
	ASSERT_ERR(import_with("im-err", ext, &bad, wrapped, NULL), KMS_E_IMPORT_TOKEN_EXPIRED);
	/* The token's own expiry is what counts: the same layout a minute ahead works below. */
	token_with_expiry(p.token, kms_time_real_ms() + 60000, bad.token);
	/* Material that does not unwrap or is not 32 bytes: KMS.2604, alike (no padding oracle). */
	wrap_with(p.pub, "RSAES_OAEP_SHA_256", m16, 16, w16);
	ASSERT_ERR(import_with("im-err", ext, &p, w16, NULL), KMS_E_IMPORT_LENGTH);
	ASSERT_OK(core_random(raw, sizeof(raw)));
	kms_base64_encode(raw, sizeof(raw), junk);
	ASSERT_ERR(import_with("im-err", ext, &p, junk, NULL), KMS_E_IMPORT_LENGTH);
	wrap_with(p.pub, "RSAES_PKCS1_V1_5", m, 32, junk); /* other padding than the token's */
	ASSERT_ERR(import_with("im-err", ext, &p, junk, NULL), KMS_E_IMPORT_LENGTH);
	wrap_with(p2.pub, "RSAES_OAEP_SHA_256", m, 32, junk); /* another token's public key */
	ASSERT_ERR(import_with("im-err", ext, &p, junk, NULL), KMS_E_IMPORT_LENGTH);
	ASSERT_STREQ(field("im-err", ext, "key_state"), "5");
	/* Now it works, and a second import is KMS.0310. */
	ASSERT_ERR(import_with("im-err", ext, &bad, wrapped, NULL), 0);
	ASSERT_STREQ(field("im-err", ext, "key_state"), "2");
	ASSERT_ERR(import_with("im-err", ext, &p, wrapped, NULL), KMS_E_NOT_PENDING_IMPORT);
}

TEST(delete_material_errors)
{
	char ext[FX_ID_LEN], kms[FX_ID_LEN];
	uint8_t m[32] = { 7 };
	cJSON *r = NULL;

	STEP(ext_and_kms("im-del", ext, kms));
	ASSERT_ERR(ccall("im-del", "delete-imported-key-material", "{}", &r), KMS_E_MISSING);
	ASSERT_ERR(ccall("im-del", "delete-imported-key-material", fx_kid(kms), &r),
		   KMS_E_EXTERNAL_REQUIRED);
	ASSERT_ERR(ccall("im-del", "delete-imported-key-material", fx_kid(ext), &r),
		   KMS_E_MATERIAL_STATE);
	import_material("im-del", ext, "RSAES_PKCS1_V1_5", m, NULL);
	/* Disabled (3) is allowed as well as Enabled (2). */
	ASSERT_ERR(ccall("im-del", "disable-key", fx_kid(ext), &r), 0);
	ASSERT_ERR(ccall("im-del", "delete-imported-key-material", fx_kid(ext), &r), 0);
	ASSERT_STREQ(fx_last(), "{}\n");
	ASSERT_STREQ(field("im-del", ext, "key_state"), "5");
	ASSERT_ERR(ccall("im-del", "delete-imported-key-material", fx_kid(ext), &r),
		   KMS_E_MATERIAL_STATE);
	/* Pending deletion (4): KMS.2701. */
	import_material("im-del", ext, "RSAES_PKCS1_V1_5", m, NULL);
	ASSERT_ERR(ccall("im-del", "schedule-key-deletion",
			 fx_kid_with(ext, "\"pending_days\":\"7\""), &r),
		   0);
	ASSERT_ERR(ccall("im-del", "delete-imported-key-material", fx_kid(ext), &r),
		   KMS_E_MATERIAL_STATE);
	/* Cancelled, the key with material is Disabled as usual. */
	ASSERT_ERR(ccall("im-del", "cancel-key-deletion", fx_kid(ext), &r), 0);
	ASSERT_STREQ(fx_str(r, "key_state"), "3");
}

TEST(import_actions_need_admin_0307)
{
	static const char *const actions[] = { "get-parameters-for-import", "import-key-material",
					       "delete-imported-key-material" };
	static const enum kms_role roles[] = { KMS_ROLE_VIEWER, KMS_ROLE_CRYPTO };
	char ext[FX_ID_LEN];
	cJSON *r = NULL;

	new_key("im-role", "ext", true, ext);
	for (size_t a = 0; a < KMS_ARRAY_SIZE(actions); a++) {
		for (size_t i = 0; i < KMS_ARRAY_SIZE(roles); i++)
			ASSERT_ERR(ucall("im-role", "someone", roles[i], actions[a], NULL,
					 fx_kid(ext), &r),
				   KMS_E_FORBIDDEN);
	}
	ASSERT_ERR(ucall("im-role", "someone", KMS_ROLE_ADMIN, "get-parameters-for-import", NULL,
			 fx_kid_with(ext, "\"wrapping_algorithm\":\"RSAES_OAEP_SHA_256\""), &r),
		   0);
}

/* ---- deletion, re-import, states, rotation ---- */

TEST(delete_and_reimport_same_material)
{
	char id[FX_ID_LEN];
	uint8_t m[32], other[32];
	struct fx_blobs c;
	cJSON *r = NULL;

	ASSERT_OK(core_random(m, sizeof(m)));
	memcpy(other, m, sizeof(m));
	other[31] ^= 1;
	new_key("im-re", "re", true, id);
	import_material("im-re", id, "RSAES_OAEP_SHA_256", m, NULL);
	crypto_works("im-re", id, &c);
	ASSERT_ERR(ccall("im-re", "delete-imported-key-material", fx_kid(id), &r), 0);
	ASSERT_STREQ(field("im-re", id, "key_state"), "5");
	crypto_refused("im-re", id, KMS_E_KEY_DISABLED);
	old_cts_decrypt("im-re", id, &c, KMS_E_KEY_DISABLED);
	/* Other material than before: KMS.2606, the key stays pending import. */
	import_material("im-re", id, "RSAES_OAEP_SHA_1", m, NULL);
	old_cts_decrypt("im-re", id, &c, 0);
	ASSERT_ERR(ccall("im-re", "delete-imported-key-material", fx_kid(id), &r), 0);
	{
		static struct params p;
		char wrapped[B64_MAX];

		get_params("im-re", id, "RSAES_PKCS1_V1_5", &p);
		wrap_with(p.pub, "RSAES_PKCS1_V1_5", other, 32, wrapped);
		ASSERT_ERR(import_with("im-re", id, &p, wrapped, NULL), KMS_E_IMPORT_DIFFERENT);
		ASSERT_STREQ(field("im-re", id, "key_state"), "5");
		/* The same token still works with the right material. */
		wrap_with(p.pub, "RSAES_PKCS1_V1_5", m, 32, wrapped);
		ASSERT_ERR(import_with("im-re", id, &p, wrapped, NULL), 0);
	}
	old_cts_decrypt("im-re", id, &c, 0);
	crypto_works("im-re", id, &c);
}

TEST(states_and_rotation_of_external_keys)
{
	char id[FX_ID_LEN];
	uint8_t m[32] = { 9 };
	cJSON *r = NULL;

	new_key("im-st", "st", true, id);
	/* enable-key only from 3 (KMS.1201), disable-key only from 2 (KMS.1301): kms-api.md 4.4. */
	ASSERT_ERR(ccall("im-st", "enable-key", fx_kid(id), &r), KMS_E_NOT_DISABLED);
	ASSERT_ERR(ccall("im-st", "disable-key", fx_kid(id), &r), KMS_E_NOT_ENABLED);
	/* Imported keys never rotate (KMS.0312), with or without material. */
	ASSERT_ERR(ccall("im-st", "enable-key-rotation", fx_kid(id), &r), KMS_E_EXTERNAL_ROTATION);
	ASSERT_ERR(ccall("im-st", "rotate-key", fx_kid(id), &r), KMS_E_EXTERNAL_ROTATION);
	/* A key pending import may be scheduled for deletion; cancelled, it is pending import. */
	ASSERT_ERR(ccall("im-st", "schedule-key-deletion",
			 fx_kid_with(id, "\"pending_days\":\"7\""), &r),
		   0);
	ASSERT_ERR(ccall("im-st", "cancel-key-deletion", fx_kid(id), &r), 0);
	ASSERT_STREQ(fx_str(r, "key_state"), "5");
	ASSERT_ERR(ccall("im-st", "enable-key", fx_kid(id), &r), KMS_E_NOT_DISABLED);
	import_material("im-st", id, "RSAES_OAEP_SHA_256", m, NULL);
	ASSERT_ERR(ccall("im-st", "enable-key-rotation", fx_kid(id), &r), KMS_E_EXTERNAL_ROTATION);
	ASSERT_ERR(ccall("im-st", "rotate-key", fx_kid(id), &r), KMS_E_EXTERNAL_ROTATION);
	ASSERT_ERR(ccall("im-st", "get-key-rotation-status", fx_kid(id), &r), 0);
	ASSERT_TRUE(cJSON_IsFalse(fx_get(r, "key_rotation_enabled")));
	ASSERT_ERR(ccall("im-st", "disable-key", fx_kid(id), &r), 0);
	crypto_refused("im-st", id, KMS_E_KEY_DISABLED);
	ASSERT_ERR(ccall("im-st", "enable-key", fx_kid(id), &r), 0);
	ASSERT_ERR(ccall("im-st", "create-datakey", fx_kid(id), &r), 0);
}

/* ---- expiry: store_sweep() with a later clock, on a store of our own ---- */

TEST(imported_material_expires)
{
	struct fx_own o;
	char why[1024] = "", id[FX_ID_LEN], id2[FX_ID_LEN];
	uint8_t m[32];
	size_t deleted = 0, rotated = 0;
	int64_t now = kms_time_real_ms(), exp_s = now / 1000 + 3600;
	struct fx_blobs c;

	ASSERT_OK(fx_own_open(&o));
	cur_svc = &o.svc;
	ASSERT_OK(core_random(m, sizeof(m)));
	new_key("im-exp", "exp", true, id);
	new_key("im-exp", "exp-ms", true, id2);
	import_material("im-exp", id, "RSAES_OAEP_SHA_256", m,
			fx_fmt(",\"expiration_time\":\"%lld\"", (long long)exp_s));
	/* Milliseconds too (13 digits), as a JSON integer. */
	import_material("im-exp", id2, "RSAES_OAEP_SHA_256", m,
			fx_fmt(",\"expiration_time\":%lld", (long long)(exp_s * 1000 + 7200000)));
	ASSERT_STREQ(field("im-exp", id, "expiration_time"),
		     fx_fmt("%lld", (long long)exp_s * 1000));
	ASSERT_STREQ(field("im-exp", id2, "expiration_time"),
		     fx_fmt("%lld", (long long)exp_s * 1000 + 7200000));
	crypto_works("im-exp", id, &c);
	ASSERT_OK(store_sweep(o.st, exp_s * 1000 - 1, &deleted, &rotated));
	ASSERT_STREQ(field("im-exp", id, "key_state"), "2");
	ASSERT_OK(store_sweep(o.st, exp_s * 1000, &deleted, &rotated));
	ASSERT_EQ(deleted, 0);
	ASSERT_STREQ(field("im-exp", id, "key_state"), "5");
	ASSERT_STREQ(field("im-exp", id, "expiration_time"), "");
	ASSERT_STREQ(field("im-exp", id2, "key_state"), "2");
	crypto_refused("im-exp", id, KMS_E_KEY_DISABLED);
	old_cts_decrypt("im-exp", id, &c, KMS_E_KEY_DISABLED);
	/* Durable: a fresh open of the store sees the same. */
	store_close(o.st);
	ASSERT_OK(store_open(&o.opt, &o.st, why, sizeof(why)));
	o.svc.store = o.st;
	ASSERT_STREQ(field("im-exp", id, "key_state"), "5");
	ASSERT_STREQ(field("im-exp", id2, "key_state"), "2");
	/* Re-imported (same material, no expiry), the old ciphertexts decrypt again. */
	import_material("im-exp", id, "RSAES_PKCS1_V1_5", m, NULL);
	old_cts_decrypt("im-exp", id, &c, 0);
	ASSERT_OK(store_sweep(o.st, exp_s * 1000 + 3650 * DAY_MS, &deleted, &rotated));
	ASSERT_STREQ(field("im-exp", id, "key_state"), "2");
	ASSERT_STREQ(field("im-exp", id2, "key_state"), "5");
	cur_svc = NULL;
	fx_own_close(&o);
}

/* ---- the key database of schema version 1 (before import) still opens, upgraded ---- */

static int one_int(void *arg, int n, char **v, char **names)
{
	(void)names;
	*(int *)arg = n == 1 && v[0] ? atoi(v[0]) : -1;
	return 0;
}

TEST(schema_version_1_upgraded)
{
	struct fx_own o;
	char why[1024] = "", id[FX_ID_LEN], path[4200];
	struct fx_blobs c;
	sqlite3 *db = NULL;
	int version = 0;

	ASSERT_OK(fx_own_open(&o));
	cur_svc = &o.svc;
	new_key("im-v1", "old", false, id);
	crypto_works("im-v1", id, &c);
	store_close(o.st);
	/* Make it exactly what version 1 wrote: no import columns, schema_version 1. */
	snprintf(path, sizeof(path), "%s/kms.db", o.dir);
	ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
	ASSERT_EQ(sqlite3_exec(db,
			       "ALTER TABLE keys DROP COLUMN expiration_ms;"
			       "ALTER TABLE keys DROP COLUMN import_digest;"
			       "ALTER TABLE keys DROP COLUMN revision;"
			       "UPDATE meta SET value = '1' WHERE name = 'schema_version';",
			       NULL, NULL, NULL),
		  SQLITE_OK);
	sqlite3_close(db);
	/* Read-only, it cannot be upgraded: a clear refusal. */
	o.opt.read_only = true;
	o.opt.create = false;
	ASSERT_FAIL(store_open(&o.opt, &o.st, why, sizeof(why)));
	ASSERT_TRUE(strstr(why, "schema version 1") != NULL);
	o.opt.read_only = false;
	ASSERT_OK(store_open(&o.opt, &o.st, why, sizeof(why)));
	o.svc.store = o.st;
	ASSERT_STREQ(field("im-v1", id, "key_state"), "2");
	ASSERT_STREQ(field("im-v1", id, "origin"), "kms");
	old_cts_decrypt("im-v1", id, &c, 0);
	{
		char ext[FX_ID_LEN];
		uint8_t m[32] = { 3 };

		new_key("im-v1", "new", true, ext);
		import_material("im-v1", ext, "RSAES_OAEP_SHA_256", m, NULL);
	}
	store_close(o.st);
	ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
	ASSERT_EQ(sqlite3_exec(db, "SELECT value FROM meta WHERE name = 'schema_version'", one_int,
			       &version, NULL),
		  SQLITE_OK);
	ASSERT_EQ(version, 5);
	ASSERT_EQ(sqlite3_exec(db, "SELECT count(*) FROM keys WHERE import_digest IS NOT NULL",
			       one_int, &version, NULL),
		  SQLITE_OK);
	ASSERT_EQ(version, 1);
	sqlite3_close(db);
	/* A newer version than this kmsfs knows is refused. */
	ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
	ASSERT_EQ(sqlite3_exec(db, "UPDATE meta SET value = '6' WHERE name = 'schema_version'",
			       NULL, NULL, NULL),
		  SQLITE_OK);
	sqlite3_close(db);
	ASSERT_FAIL(store_open(&o.opt, &o.st, why, sizeof(why)));
	ASSERT_TRUE(strstr(why, "schema version 6") != NULL);
	cur_svc = NULL;
	fx_own_close(&o);
}
