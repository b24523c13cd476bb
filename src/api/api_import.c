/* Import of key material (kms-api.md section 4.12): get-parameters-for-import,
 * import-key-material, delete-imported-key-material.
 *
 * The import token is self-contained: Base64 of a blob sealed by the store under a root-derived
 * key (store_seal_opaque, label "import-token"), whose plaintext is
 *
 *   "KIT1" | wrapping algorithm (1 byte) | expiry in ms (u64 LE) | key id (36) | RSA key DER
 *
 * so nothing is stored for it, and any process of the same state directory (the daemon, kmsctl)
 * accepts it until it expires, 24 hours after it was issued. The RSA private key and the
 * unwrapped material live only in the secure heap and are wiped on every path. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"
#include "common/kms_err.h"
#include "common/kms_hex.h"
#include "common/kms_secmem.h"
#include "core/kms_core.h"

#define API_TOKEN_LABEL	       "import-token"
#define API_TOKEN_MAGIC	       "KIT1"
#define API_TOKEN_HEADER       (4u + 1u + 8u + CORE_KEY_ID_BYTES)
#define API_TOKEN_PLAIN_MAX    (API_TOKEN_HEADER + CORE_RSA_PRIV_DER_MAX)
#define API_TOKEN_SEALED_MAX   (API_TOKEN_PLAIN_MAX + CORE_SEALED_OVERHEAD)
#define API_TOKEN_TTL_MS       (24LL * 3600 * 1000)
#define API_TOKEN_MIN_CHARS    200u
#define API_TOKEN_MAX_CHARS    6144u
#define API_MATERIAL_MIN_CHARS 344u
#define API_MATERIAL_MAX_CHARS 360u

static const struct {
	const char *name;
	enum core_rsa_padding pad;
} api_wrapping[] = {
	{ "RSAES_PKCS1_V1_5", CORE_RSA_PKCS1_V1_5 },
	{ "RSAES_OAEP_SHA_1", CORE_RSA_OAEP_SHA1 },
	{ "RSAES_OAEP_SHA_256", CORE_RSA_OAEP_SHA256 },
};

/* ^[0-9a-zA-Z+/=]{min,max}$ */
static bool api_base64_chars(const char *s, size_t min, size_t max)
{
	size_t n = strlen(s);

	if (n < min || n > max)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      c == '+' || c == '/' || c == '='))
			return false;
	}
	return true;
}

/* The key the request names, which must be external (KMS.0309) and pending import (KMS.0310). */
static int api_import_key(struct api_request *r, struct store_key **k)
{
	int e = api_allowed_key(r, true, k);

	if (e < 0)
		return e;
	if (strcmp((*k)->meta.origin, "external") != 0)
		e = KMS_E_EXTERNAL_REQUIRED;
	else if ((*k)->meta.state != STORE_KEY_PENDING_IMPORT)
		e = KMS_E_NOT_PENDING_IMPORT;
	if (e < 0) {
		store_key_release(*k);
		*k = NULL;
	}
	return e;
}

int api_get_parameters_for_import(struct api_request *r)
{
	static const size_t b64_max = (API_TOKEN_SEALED_MAX + 2) / 3 * 4 + 1;
	uint8_t pub[CORE_RSA_PUB_DER_MAX], *plain = NULL, sealed[API_TOKEN_SEALED_MAX];
	char pub_b64[(CORE_RSA_PUB_DER_MAX + 2) / 3 * 4 + 1], *token = NULL;
	size_t der_len = 0, pub_len = 0, sealed_len = 0, alg = 0;
	struct store_key *k = NULL;
	const char *name;
	int64_t expiry;
	int e;

	if ((e = api_get_string(r, "wrapping_algorithm", true, KMS_E_BAD_PARAM, &name)) < 0)
		goto out;
	for (alg = 0; alg < KMS_ARRAY_SIZE(api_wrapping); alg++)
		if (strcmp(name, api_wrapping[alg].name) == 0)
			break;
	if (alg == KMS_ARRAY_SIZE(api_wrapping)) {
		e = KMS_E_BAD_PARAM;
		goto out;
	}
	if ((e = api_check_sequence(r)) < 0 || (e = api_import_key(r, &k)) < 0)
		goto out;
	plain = kms_secret_alloc(API_TOKEN_PLAIN_MAX);
	token = malloc(b64_max);
	if (!plain || !token) {
		e = KMS_E_NOMEM;
		goto out;
	}
	e = core_rsa_generate(plain + API_TOKEN_HEADER, CORE_RSA_PRIV_DER_MAX, &der_len, pub,
			      sizeof(pub), &pub_len);
	if (e < 0)
		goto out;
	expiry = r->now_ms + API_TOKEN_TTL_MS;
	memcpy(plain, API_TOKEN_MAGIC, 4);
	plain[4] = (uint8_t)api_wrapping[alg].pad;
	for (int i = 0; i < 8; i++)
		plain[5 + i] = (uint8_t)((uint64_t)expiry >> (8 * i));
	memcpy(plain + 13, k->meta.key_id, CORE_KEY_ID_BYTES);
	e = store_seal_opaque(r->svc->store, API_TOKEN_LABEL, plain, API_TOKEN_HEADER + der_len,
			      sealed, sizeof(sealed), &sealed_len);
	if (e < 0)
		goto out;
	kms_base64_encode(sealed, sealed_len, token);
	kms_base64_encode(pub, pub_len, pub_b64);
	if ((e = api_add_string(r->out, "key_id", k->meta.key_id)) < 0 ||
	    (e = api_add_string(r->out, "import_token", token)) < 0 ||
	    (e = api_add_int(r->out, "expiration_time", (double)(expiry / 1000))) < 0 ||
	    (e = api_add_string(r->out, "public_key", pub_b64)) < 0)
		goto out;
out:
	kms_secret_free(plain, API_TOKEN_PLAIN_MAX);
	free(token);
	store_key_release(k);
	return e;
}

/* Optional expiration_time: seconds since the epoch as the API says (a decimal string or a JSON
 * integer); 13 digits and more are taken as milliseconds, the unit of the key object's dates.
 * KMS.0308 when malformed, KMS.2602 unless later than now. *ms = 0 when absent. */
static int api_get_expiration(struct api_request *r, int64_t *ms)
{
	unsigned long v = 0;
	bool present;
	int e;

	*ms = 0;
	e = api_get_uint(r, "expiration_time", false, KMS_E_BAD_PARAM, 0, 999999999999999ul, &v,
			 &present);
	if (e < 0 || !present)
		return e;
	if (v < 1000000000000ul)
		v *= 1000;
	if ((int64_t)v <= r->now_ms)
		return KMS_E_IMPORT_EXPIRATION;
	*ms = (int64_t)v;
	return 0;
}

int api_import_key_material(struct api_request *r)
{
	uint8_t *plain = NULL, *sealed = NULL, *material, wrapped[CORE_RSA_BITS / 8 + 16];
	const char *token, *wrapped_b64;
	size_t sealed_len = 0, plain_len = 0, wrapped_len = 0, material_len = 0;
	struct store_key *k = NULL;
	int64_t expiration = 0, token_expiry = 0;
	int e;

	if ((e = api_get_string(r, "import_token", true, KMS_E_IMPORT_TOKEN, &token)) < 0)
		goto out;
	if (!api_base64_chars(token, API_TOKEN_MIN_CHARS, API_TOKEN_MAX_CHARS)) {
		e = KMS_E_IMPORT_TOKEN;
		goto out;
	}
	e = api_get_string(r, "encrypted_key_material", true, KMS_E_BAD_PARAM, &wrapped_b64);
	if (e < 0)
		goto out;
	if (!api_base64_chars(wrapped_b64, API_MATERIAL_MIN_CHARS, API_MATERIAL_MAX_CHARS) ||
	    kms_base64_decode(wrapped_b64, strlen(wrapped_b64), wrapped, sizeof(wrapped),
			      &wrapped_len) < 0) {
		e = KMS_E_BAD_PARAM;
		goto out;
	}
	if ((e = api_get_expiration(r, &expiration)) < 0 || (e = api_check_sequence(r)) < 0)
		goto out;
	if ((e = api_import_key(r, &k)) < 0)
		goto out;
	/* The token: ours (sealed by this state directory's root key), unexpired, for this key. */
	sealed = malloc(API_TOKEN_MAX_CHARS);
	/* The token's plaintext, then room for the unwrapped material: all in the secure heap. */
	plain = kms_secret_alloc(API_TOKEN_MAX_CHARS + CORE_RSA_BITS / 8);
	if (!sealed || !plain) {
		e = KMS_E_NOMEM;
		goto out;
	}
	material = plain + API_TOKEN_MAX_CHARS;
	if (kms_base64_decode(token, strlen(token), sealed, API_TOKEN_MAX_CHARS, &sealed_len) < 0 ||
	    store_unseal_opaque(r->svc->store, API_TOKEN_LABEL, sealed, sealed_len, plain,
				API_TOKEN_MAX_CHARS, &plain_len) < 0 ||
	    plain_len <= API_TOKEN_HEADER || !core_equal(plain, API_TOKEN_MAGIC, 4)) {
		e = KMS_E_IMPORT_TOKEN;
		goto out;
	}
	for (int i = 7; i >= 0; i--)
		token_expiry = (int64_t)(((uint64_t)token_expiry << 8) | plain[5 + i]);
	if (token_expiry <= r->now_ms) {
		e = KMS_E_IMPORT_TOKEN_EXPIRED;
		goto out;
	}
	if (!core_equal(plain + 13, k->meta.key_id, CORE_KEY_ID_BYTES)) {
		e = KMS_E_IMPORT_KEY_MISMATCH;
		goto out;
	}
	/* Any failure to unwrap and a plaintext of the wrong size answer alike: no oracle. */
	e = core_rsa_decrypt((enum core_rsa_padding)plain[4], plain + API_TOKEN_HEADER,
			     plain_len - API_TOKEN_HEADER, wrapped, wrapped_len, material,
			     CORE_RSA_BITS / 8, &material_len);
	if (e < 0 || material_len != CORE_KEY_BYTES) {
		e = KMS_E_IMPORT_LENGTH;
		goto out;
	}
	e = store_key_import(r->svc->store, r->caller->project, k->meta.key_id, material,
			     expiration, NULL);
out:
	kms_secret_free(plain, API_TOKEN_MAX_CHARS + CORE_RSA_BITS / 8);
	free(sealed);
	store_key_release(k);
	return e;
}

int api_delete_imported_key_material(struct api_request *r)
{
	struct store_key *k = NULL;
	int e;

	if ((e = api_check_sequence(r)) < 0 || (e = api_allowed_key(r, true, &k)) < 0)
		return e;
	e = store_key_delete_material(r->svc->store, r->caller->project, k->meta.key_id, NULL);
	store_key_release(k);
	return e;
}
