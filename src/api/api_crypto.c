/* Data keys, data and randomness (kms-api.md sections 3.1-3.7, 11). Plaintext lives only in
 * stack arrays that are wiped on every path, and in the caller's secret response buffer. */
#include <stdio.h>
#include <string.h>

#include "api_internal.h"
#include "common/kms_err.h"
#include "common/kms_hex.h"
#include "common/kms_limits.h"
#include "common/kms_secmem.h"
#include "core/kms_core.h"

#define API_DEFAULT_DATAKEY_BITS 512ul

/* datakey_length (bits) or key_spec; errors as the action defines them. */
static int api_datakey_bytes(struct api_request *r, int bad_range, int bad_multiple, int bad_spec,
			     size_t *bytes)
{
	unsigned long bits = API_DEFAULT_DATAKEY_BITS;
	const char *spec;
	bool present;
	int e;

	e = api_get_uint(r, "datakey_length", false, bad_range, 0, 1000000000ul, &bits, &present);
	if (e < 0)
		return e;
	if (present) {
		if (bits < 8 || bits > 8 * KMS_MAX_DATAKEY_BYTES)
			return bad_range;
		if (bits % 8)
			return bad_multiple;
	} else {
		if ((e = api_get_string(r, "key_spec", false, bad_spec, &spec)) < 0)
			return e;
		if (spec && strcmp(spec, "AES_256") == 0)
			bits = 256;
		else if (spec && strcmp(spec, "AES_128") == 0)
			bits = 128;
		else if (spec)
			return bad_spec;
	}
	*bytes = bits / 8;
	return 0;
}

/* Seal plain under k's newest version into a blob, appended as hex (or Base64) to out. */
static int api_seal(struct api_request *r, const struct store_key *k, const struct kms_buf *ctx,
		    const uint8_t *plain, size_t n, bool base64)
{
	uint8_t blob[CORE_BLOB_MAX];
	char text[2 * CORE_BLOB_MAX + 1];
	size_t len = 0;
	int e;

	e = core_blob_seal_kind(base64 ? CORE_BLOB_DATA : CORE_BLOB_DATAKEY,
				store_key_material(k, k->meta.current_version), k->meta.key_id,
				k->meta.current_version, ctx->data, ctx->len, plain, n, blob,
				sizeof(blob), &len);
	if (e < 0)
		return e;
	/* A ciphertext: encoded on the stack, no heap copy to allocate and wipe. */
	if (base64)
		kms_base64_encode(blob, len, text);
	else
		kms_hex_encode(blob, len, text);
	return api_add_string(r->out, "cipher_text", text);
}

static int api_make_datakey(struct api_request *r, bool with_plaintext)
{
	uint8_t dek[KMS_MAX_DATAKEY_BYTES];
	struct kms_buf ctx = KMS_BUF_INIT(KMS_MAX_CONTEXT, false);
	struct store_key *k = NULL;
	size_t n = 0;
	int e;

	if (with_plaintext)
		e = api_datakey_bytes(r, KMS_E_DATAKEY_RANGE, KMS_E_DATAKEY_MULTIPLE,
				      KMS_E_DATAKEY_SPEC, &n);
	else
		e = api_datakey_bytes(r, KMS_E_DATAKEY_512, KMS_E_DATAKEY_512, KMS_E_DATAKEY_SPEC,
				      &n);
	if (e < 0)
		goto out;
	if ((e = api_check_sequence(r)) < 0 || (e = api_get_context(r, &ctx)) < 0)
		goto out;
	if ((e = api_allowed_key(r, true, &k)) < 0 || (e = api_key_usable(k)) < 0)
		goto out;
	if ((e = core_random_secret(dek, n)) < 0)
		goto out;
	if ((e = api_add_string(r->out, "key_id", k->meta.key_id)) < 0)
		goto out;
	if (with_plaintext && (e = api_add_hex(r->out, "plain_text", dek, n)) < 0)
		goto out;
	e = api_seal(r, k, &ctx, dek, n, false);
out:
	kms_wipe(dek, sizeof(dek));
	kms_buf_free(&ctx);
	store_key_release(k);
	return e;
}

int api_create_datakey(struct api_request *r)
{
	return api_make_datakey(r, true);
}

int api_create_datakey_without_plaintext(struct api_request *r)
{
	return api_make_datakey(r, false);
}

int api_encrypt_datakey(struct api_request *r)
{
	const bool id_required = !r->caller->path_key_id; /* no key folder in the path */
	uint8_t buf[KMS_MAX_DATAKEY_BYTES + CORE_SHA256_BYTES], digest[CORE_SHA256_BYTES];
	struct kms_buf ctx = KMS_BUF_INIT(KMS_MAX_CONTEXT, false);
	const char *key_ref, *plain;
	unsigned long dek_len = 0;
	struct store_key *k = NULL;
	char id[KMS_KEY_ID_LEN + 1], alias[KMS_MAX_ALIAS + 1];
	size_t n = 0;
	bool present;
	int e;

	/* Order of checks as kms-api.md section 11.2: presence, key id, sequence, context,
	 * then the values. */
	if ((id_required && (e = api_require(r, "key_id")) < 0) ||
	    (e = api_require(r, "plain_text")) < 0 ||
	    (e = api_require(r, "datakey_plain_length")) < 0 ||
	    (e = api_get_string(r, "key_id", id_required, KMS_E_BAD_KEY_ID, &key_ref)) < 0 ||
	    (e = api_get_string(r, "plain_text", true, KMS_E_PLAIN_INVALID, &plain)) < 0)
		goto out;
	if (key_ref && (e = api_parse_key_ref(r, key_ref, id, alias)) < 0)
		goto out;
	if ((e = api_check_sequence(r)) < 0 || (e = api_get_context(r, &ctx)) < 0)
		goto out;
	e = api_get_uint(r, "datakey_plain_length", true, KMS_E_PLAIN_LENGTH, KMS_MIN_DATAKEY_BYTES,
			 KMS_MAX_DATAKEY_BYTES, &dek_len, &present);
	if (e < 0)
		goto out;
	if (!kms_is_hex(plain, strlen(plain))) {
		e = KMS_E_PLAIN_INVALID;
		goto out;
	}
	if (strlen(plain) != 2 * (dek_len + CORE_SHA256_BYTES)) {
		e = KMS_E_PLAIN_MISMATCH;
		goto out;
	}
	if (kms_hex_decode(plain, strlen(plain), buf, sizeof(buf), &n) < 0) {
		e = KMS_E_PLAIN_INVALID;
		goto out;
	}
	if ((e = core_sha256(buf, dek_len, digest)) < 0)
		goto out;
	if (!core_equal(digest, buf + dek_len, CORE_SHA256_BYTES)) {
		e = KMS_E_DEK_HASH;
		goto out;
	}
	if ((e = api_allowed_key(r, true, &k)) < 0 || (e = api_key_usable(k)) < 0)
		goto out;
	if ((e = api_add_string(r->out, "key_id", k->meta.key_id)) < 0 ||
	    (e = api_seal(r, k, &ctx, buf, dek_len, false)) < 0 ||
	    (e = api_add_ulong_string(r->out, "datakey_length", dek_len)) < 0)
		goto out;
	e = 0;
out:
	kms_wipe(buf, sizeof(buf));
	kms_buf_free(&ctx);
	store_key_release(k);
	return e;
}

/* Open a blob with the key it names; the request's key (if any) must be that key. */
/* A blob naming a version the cached key lacks may come from a rotation another host or
 * process made a moment ago (before its change reached this cache): read the key once more
 * from the store before calling the ciphertext invalid. *kp may be replaced. */
static int api_open_blob(struct api_request *r, enum core_blob_kind kind,
			 const struct core_blob *blob, const struct kms_buf *ctx,
			 struct store_key **kp, uint8_t *plain, size_t cap, size_t *n)
{
	const uint8_t *material;
	struct store_key *fresh = NULL;
	int e;

	if (strcmp(blob->key_id, (*kp)->meta.key_id) != 0)
		return KMS_E_BAD_KEY_ID;
	if ((e = api_key_usable(*kp)) < 0)
		return e;
	material = store_key_material(*kp, blob->key_version);
	if (!material && blob->key_version >= (*kp)->nversions &&
	    blob->key_version < KMS_MAX_KEY_VERSIONS) {
		/* The store's answer when it cannot tell (unreachable: KMS.0102, try again), never
		 * "invalid" for a ciphertext that may well be valid. */
		e = store_key_get_latest(r->svc->store, (*kp)->meta.project, (*kp)->meta.key_id,
					 &fresh);
		if (e < 0)
			return e;
		store_key_release(*kp);
		*kp = fresh;
		if ((e = api_key_usable(*kp)) < 0)
			return e;
		material = store_key_material(*kp, blob->key_version);
	}
	if (!material)
		return KMS_E_CIPHER_INVALID;
	return core_blob_open_kind(kind, material, blob, ctx->data, ctx->len, plain, cap, n);
}

int api_decrypt_datakey(struct api_request *r)
{
	const bool id_required = !r->caller->path_key_id; /* no key folder in the path */
	uint8_t raw[CORE_BLOB_MAX], dek[CORE_BLOB_MAX_PLAIN], digest[CORE_SHA256_BYTES];
	struct kms_buf ctx = KMS_BUF_INIT(KMS_MAX_CONTEXT, false);
	const char *key_ref, *cipher;
	unsigned long dek_len = 0;
	struct store_key *k = NULL;
	struct core_blob blob;
	char id[KMS_KEY_ID_LEN + 1], alias[KMS_MAX_ALIAS + 1];
	size_t raw_len = 0, n = 0, hex_len;
	bool present;
	int e;

	/* Order of checks as kms-api.md section 11.3: presence, key id, sequence, context,
	 * then the values. */
	if ((id_required && (e = api_require(r, "key_id")) < 0) ||
	    (e = api_require(r, "cipher_text")) < 0 ||
	    (e = api_require(r, "datakey_cipher_length")) < 0 ||
	    (e = api_get_string(r, "key_id", id_required, KMS_E_BAD_KEY_ID, &key_ref)) < 0 ||
	    (e = api_get_string(r, "cipher_text", true, KMS_E_CIPHER_INVALID, &cipher)) < 0)
		goto out;
	if (key_ref && (e = api_parse_key_ref(r, key_ref, id, alias)) < 0)
		goto out;
	if ((e = api_check_sequence(r)) < 0 || (e = api_get_context(r, &ctx)) < 0)
		goto out;
	e = api_get_uint(r, "datakey_cipher_length", true, KMS_E_CIPHER_LENGTH,
			 KMS_MIN_DATAKEY_BYTES, KMS_MAX_DATAKEY_BYTES, &dek_len, &present);
	if (e < 0)
		goto out;
	hex_len = strlen(cipher);
	if (hex_len > 2 * CORE_BLOB_MAX || !kms_is_hex(cipher, hex_len)) {
		e = KMS_E_CIPHER_INVALID;
		goto out;
	}
	if (hex_len / 2 != core_blob_size(dek_len)) {
		e = KMS_E_CIPHER_MISMATCH;
		goto out;
	}
	if ((e = kms_hex_decode(cipher, hex_len, raw, sizeof(raw), &raw_len)) < 0 ||
	    (e = core_blob_parse(raw, raw_len, &blob)) < 0) {
		e = e == KMS_E_INTERNAL ? e : KMS_E_CIPHER_INVALID;
		goto out;
	}
	if ((e = api_allowed_key(r, true, &k)) < 0)
		goto out;
	if ((e = api_open_blob(r, CORE_BLOB_DATAKEY, &blob, &ctx, &k, dek, sizeof(dek), &n)) < 0)
		goto out;
	if (n != dek_len) {
		e = KMS_E_CIPHER_MISMATCH;
		goto out;
	}
	if ((e = core_sha256(dek, n, digest)) < 0 ||
	    (e = api_add_hex(r->out, "data_key", dek, n)) < 0 ||
	    (e = api_add_ulong_string(r->out, "datakey_length", n)) < 0 ||
	    (e = api_add_hex(r->out, "datakey_dgst", digest, sizeof(digest))) < 0)
		goto out;
	e = 0;
out:
	kms_wipe(dek, sizeof(dek));
	kms_buf_free(&ctx);
	store_key_release(k);
	return e;
}

int api_gen_random(struct api_request *r)
{
	uint8_t buf[KMS_MAX_DATAKEY_BYTES];
	unsigned long bits = 0;
	bool present;
	int e;

	e = api_get_uint(r, "random_data_length", true, KMS_E_RANDOM_LENGTH, 0, 1000000000ul, &bits,
			 &present);
	if (e < 0)
		return e;
	if (bits < 8 || bits > 8 * sizeof(buf))
		return KMS_E_RANDOM_LENGTH;
	if (bits % 8)
		return KMS_E_RANDOM_MULTIPLE;
	if ((e = api_check_sequence(r)) < 0)
		return e;
	if ((e = core_random(buf, bits / 8)) < 0)
		return e;
	e = api_add_hex(r->out, "random_data", buf, bits / 8);
	kms_wipe(buf, sizeof(buf));
	return e;
}

int api_encrypt_data(struct api_request *r)
{
	struct kms_buf ctx = KMS_BUF_INIT(KMS_MAX_CONTEXT, false);
	struct store_key *k = NULL;
	const char *plain, *alg;
	size_t n;
	int e;

	if ((e = api_get_string(r, "plain_text", true, KMS_E_PLAIN_INVALID, &plain)) < 0)
		goto out;
	n = strlen(plain);
	if (n == 0 || n > KMS_MAX_DATA_BYTES) {
		e = KMS_E_PLAIN_INVALID;
		goto out;
	}
	if ((e = api_get_string(r, "encryption_algorithm", false, KMS_E_BAD_PARAM, &alg)) < 0)
		goto out;
	if (alg && strcmp(alg, "SYMMETRIC_DEFAULT") != 0) {
		e = KMS_E_BAD_PARAM;
		goto out;
	}
	if ((e = api_check_sequence(r)) < 0 || (e = api_get_context(r, &ctx)) < 0)
		goto out;
	if ((e = api_allowed_key(r, true, &k)) < 0 || (e = api_key_usable(k)) < 0)
		goto out;
	if ((e = api_add_string(r->out, "key_id", k->meta.key_id)) < 0)
		goto out;
	e = api_seal(r, k, &ctx, (const uint8_t *)plain, n, true);
out:
	kms_buf_free(&ctx);
	store_key_release(k);
	return e;
}

static bool api_printable_utf8(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n;) {
		size_t len = p[i] < 0x80	 ? 1
			     : (p[i] >> 5) == 6	 ? 2
			     : (p[i] >> 4) == 14 ? 3
			     : (p[i] >> 3) == 30 ? 4
						 : 0;

		if (len == 0 || i + len > n || p[i] == 0)
			return false;
		for (size_t j = 1; j < len; j++)
			if ((p[i + j] & 0xc0) != 0x80)
				return false;
		i += len;
	}
	return true;
}

int api_decrypt_data(struct api_request *r)
{
	uint8_t raw[CORE_BLOB_MAX], plain[CORE_BLOB_MAX_PLAIN + 1];
	char b64[2 * CORE_BLOB_MAX];
	struct kms_buf ctx = KMS_BUF_INIT(KMS_MAX_CONTEXT, false);
	const char *cipher, *key_ref;
	struct store_key *k = NULL;
	struct core_blob blob;
	char id[KMS_KEY_ID_LEN + 1], alias[KMS_MAX_ALIAS + 1];
	size_t raw_len = 0, n = 0, len;
	int e;

	if ((e = api_get_string(r, "cipher_text", true, KMS_E_CIPHER_INVALID, &cipher)) < 0 ||
	    (e = api_get_string(r, "key_id", false, KMS_E_BAD_KEY_ID, &key_ref)) < 0)
		goto out;
	if (key_ref && (e = api_parse_key_ref(r, key_ref, id, alias)) < 0)
		goto out;
	if ((e = api_check_sequence(r)) < 0 || (e = api_get_context(r, &ctx)) < 0)
		goto out;
	len = strlen(cipher);
	e = KMS_E_CIPHER_INVALID;
	if (len < 188 || len > 5648 ||
	    kms_base64_decode(cipher, len, raw, sizeof(raw), &raw_len) < 0 ||
	    core_blob_parse(raw, raw_len, &blob) < 0)
		goto out;
	/* The key comes from the blob; a key_id or key folder, if any, must name the same key. */
	snprintf(r->key_id, sizeof(r->key_id), "%s", blob.key_id);
	if ((e = store_key_get(r->svc->store, r->caller->project, blob.key_id, &k)) < 0 ||
	    (e = api_check_grant(r, k)) < 0)
		goto out;
	if (r->caller->path_key_id && strcmp(r->caller->path_key_id, blob.key_id) != 0) {
		e = KMS_E_BAD_KEY_ID;
		goto out;
	}
	if (key_ref) {
		struct store_key *named = NULL;

		if ((e = api_allowed_key(r, false, &named)) < 0)
			goto out;
		e = strcmp(named->meta.key_id, blob.key_id) ? KMS_E_BAD_KEY_ID : 0;
		store_key_release(named);
		if (e < 0)
			goto out;
	}
	e = api_open_blob(r, CORE_BLOB_DATA, &blob, &ctx, &k, plain, sizeof(plain) - 1, &n);
	if (e < 0)
		goto out;
	plain[n] = 0;
	kms_base64_encode(plain, n, b64);
	if ((e = api_add_string(r->out, "key_id", k->meta.key_id)) < 0 ||
	    (e = api_add_string(r->out, "plain_text",
				api_printable_utf8(plain, n) ? (const char *)plain : "")) < 0 ||
	    (e = api_add_string(r->out, "plain_text_base64", b64)) < 0)
		goto out;
	e = 0;
out:
	kms_wipe(plain, sizeof(plain));
	kms_wipe(b64, sizeof(b64));
	kms_buf_free(&ctx);
	store_key_release(k);
	return e;
}
