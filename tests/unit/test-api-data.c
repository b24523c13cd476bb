/* test-api-data.c - encrypt-data and decrypt-data (kms-api.md sections 3.5, 3.6, 8.2): Base64
 * ciphertext of 124 + ceil16(n) bytes, plaintext of 1..4096 bytes (bytes, not characters), the
 * key taken from the blob on decrypt, the 188..5648 character bounds, context binding.
 */
#include "kms_test_api.h"

#define B64_MAX (2 * CORE_BLOB_MAX)

static size_t b64_len(size_t plain)
{
	return kms_base64_encoded_len(core_blob_size(plain));
}

/* encrypt-data of text (a JSON string body, already escaped) under key_ref. */
static void encrypt(const char *project, const char *key_ref, const char *text, const char *extra,
		    char out[B64_MAX])
{
	cJSON *r = NULL;

	out[0] = 0;
	ASSERT_ERR(
		pcall(project, "encrypt-data",
		      fx_fmt("{\"key_id\":\"%s\",\"plain_text\":\"%s\"%s}", key_ref, text, extra),
		      &r),
		0);
	ASSERT_TRUE(fx_str(r, "cipher_text") != NULL);
	snprintf(out, B64_MAX, "%s", fx_str(r, "cipher_text"));
}

static int decrypt(const char *project, const char *cipher, const char *extra, cJSON **r)
{
	return pcall(project, "decrypt-data", fx_fmt("{\"cipher_text\":\"%s\"%s}", cipher, extra),
		     r);
}

TEST(encrypt_data_round_trip)
{
	char id[FX_ID_LEN], ct[B64_MAX];
	uint8_t blob[CORE_BLOB_MAX];
	size_t n = 0;
	cJSON *r = NULL;

	STEP(fx_key("ed", "app", id));
	ASSERT_ERR(
		pcall("ed", "encrypt-data", fx_kid_with(id, "\"plain_text\":\"hello world\""), &r),
		0);
	ASSERT_EQ(cJSON_GetArraySize(r), 2);
	ASSERT_STREQ(fx_str(r, "key_id"), id);
	snprintf(ct, sizeof(ct), "%s", fx_str(r, "cipher_text"));
	ASSERT_TRUE(fx_base64_chars(ct));
	ASSERT_EQ(strlen(ct), 188);
	ASSERT_OK(kms_base64_decode(ct, strlen(ct), blob, sizeof(blob), &n));
	ASSERT_EQ(n, 140);
	ASSERT_HEXEQ(blob, 4, "02006800"); /* version 2, body 140 - 36 = 104 */
	ASSERT_MEMEQ(blob + n - 72, id, 36);
	ASSERT_ERR(decrypt("ed", ct, "", &r), 0);
	ASSERT_EQ(cJSON_GetArraySize(r), 3);
	ASSERT_STREQ(fx_str(r, "key_id"), id);
	ASSERT_STREQ(fx_str(r, "plain_text"), "hello world");
	ASSERT_STREQ(fx_str(r, "plain_text_base64"), "aGVsbG8gd29ybGQ=");
	/* Fresh nonce each time. */
	ASSERT_ERR(
		pcall("ed", "encrypt-data", fx_kid_with(id, "\"plain_text\":\"hello world\""), &r),
		0);
	ASSERT_FALSE(strcmp(fx_str(r, "cipher_text"), ct) == 0);
}

TEST(encrypt_data_sizes)
{
	static const size_t sizes[] = { 1, 2, 15, 16, 17, 100, 1000, 4095, 4096 };
	static char text[KMS_MAX_DATA_BYTES + 1];
	char id[FX_ID_LEN], ct[B64_MAX];
	cJSON *r = NULL;

	STEP(fx_key("ed-size", "app", id));
	for (size_t i = 0; i < KMS_ARRAY_SIZE(sizes); i++) {
		size_t n = sizes[i];

		for (size_t j = 0; j < n; j++)
			text[j] = (char)('A' + (j * 7 + i) % 26);
		text[n] = 0;
		STEP(encrypt("ed-size", id, text, "", ct));
		ASSERT_EQ(strlen(ct), b64_len(n));
		ASSERT_ERR(decrypt("ed-size", ct, "", &r), 0);
		ASSERT_STREQ(fx_str(r, "plain_text"), text);
		ASSERT_EQ(strlen(fx_str(r, "plain_text_base64")), kms_base64_encoded_len(n));
	}
	/* The documented bounds: 1 byte -> 188 characters, 4096 bytes -> 5628 (<= 5648). */
	ASSERT_EQ(b64_len(1), 188);
	ASSERT_EQ(b64_len(4096), 5628);
}

TEST(encrypt_data_limit_counts_bytes)
{
	static char text[2 * 2049 + 1];
	char id[FX_ID_LEN], ct[B64_MAX];
	cJSON *r = NULL;

	STEP(fx_key("ed-bytes", "app", id));
	/* 2048 two-byte characters are 4096 bytes: the most there can be. */
	for (size_t i = 0; i < 2048; i++)
		memcpy(text + 2 * i, "\xc3\xa9", 2);
	text[2 * 2048] = 0;
	STEP(encrypt("ed-bytes", id, text, "", ct));
	ASSERT_EQ(strlen(ct), b64_len(4096));
	ASSERT_ERR(decrypt("ed-bytes", ct, "", &r), 0);
	ASSERT_STREQ(fx_str(r, "plain_text"), text);
	memcpy(text + 2 * 2048, "\xc3\xa9", 2);
	text[2 * 2049] = 0;
	ASSERT_ERR(pcall("ed-bytes", "encrypt-data",
			 fx_fmt("{\"key_id\":\"%s\",\"plain_text\":\"%s\"}", id, text), NULL),
		   KMS_E_PLAIN_INVALID);
}

TEST(encrypt_data_errors)
{
	static const char *const bad_plain[] = { "\"\"", "42", "[\"x\"]" };
	/* req: the value of encryption_algorithm */
	static const struct fx_refusal algs[] = {
		{ "\"SYMMETRIC_DEFAULT\"", 0 },
		{ "\"RSAES_OAEP_SHA_256\"", KMS_E_BAD_PARAM },
		{ "1", KMS_E_BAD_PARAM },
	};
	static char text[KMS_MAX_DATA_BYTES + 2];
	char id[FX_ID_LEN];

	STEP(fx_key("ed-err", "app", id));
	memset(text, 'x', KMS_MAX_DATA_BYTES + 1);
	ASSERT_ERR(pcall("ed-err", "encrypt-data",
			 fx_fmt("{\"key_id\":\"%s\",\"plain_text\":\"%s\"}", id, text), NULL),
		   KMS_E_PLAIN_INVALID);
	ASSERT_LAST_ERROR("KMS.2101", "Invalid plain_text.");
	STEP(fx_member_refuses("ed-err", "encrypt-data", id, "plain_text", bad_plain,
			       KMS_ARRAY_SIZE(bad_plain), KMS_E_PLAIN_INVALID, NULL));
	STEP(fx_member_required("ed-err", "encrypt-data", id, "plain_text"));
	ASSERT_ERR(pcall("ed-err", "encrypt-data", "{\"plain_text\":\"x\"}", NULL), KMS_E_MISSING);
	/* encryption_algorithm: only the symmetric default */
	for (size_t i = 0; i < KMS_ARRAY_SIZE(algs); i++)
		EXPECT(algs[i].req,
		       pcall("ed-err", "encrypt-data",
			     fx_kid_with(id,
					 fx_fmt("\"plain_text\":\"x\",\"encryption_algorithm\":%s",
						algs[i].req)),
			     NULL),
		       algs[i].err);
	/* keys */
	ASSERT_ERR(
		pcall("ed-err", "encrypt-data", "{\"key_id\":\"bad\",\"plain_text\":\"x\"}", NULL),
		KMS_E_BAD_KEY_ID);
	ASSERT_ERR(pcall("ed-err", "encrypt-data",
			 "{\"key_id\":\"" FX_NO_KEY "\",\"plain_text\":\"x\"}", NULL),
		   KMS_E_KEY_NOT_FOUND);
	ASSERT_ERR(pcall("ed-err", "encrypt-data",
			 fx_kid_with(id, "\"plain_text\":\"x\",\"sequence\":\"1\""), NULL),
		   KMS_E_BAD_SEQUENCE);
}

/* plain_text is the string as sent: "a\u0000b" is three bytes, or refused; never "a". */
TEST(encrypt_data_with_nul_not_truncated)
{
	char id[FX_ID_LEN], ct[B64_MAX];
	cJSON *r = NULL;
	int e;

	STEP(fx_key("ed-nul", "app", id));
	e = pcall("ed-nul", "encrypt-data", fx_kid_with(id, "\"plain_text\":\"a\\u0000b\""), &r);
	if (e != 0) {
		ASSERT_TRUE(e == KMS_E_PLAIN_INVALID || e == KMS_E_BAD_JSON);
		return;
	}
	snprintf(ct, sizeof(ct), "%s", fx_str(r, "cipher_text"));
	ASSERT_ERR(decrypt("ed-nul", ct, "", &r), 0);
	ASSERT_STREQ(fx_str(r, "plain_text_base64"), "YQBi");
}

TEST(encrypt_data_key_forms_and_folder)
{
	char id[FX_ID_LEN], other[FX_ID_LEN], ct[B64_MAX];
	cJSON *r = NULL;

	STEP(fx_key("ed-forms", "app", id));
	STEP(fx_key("ed-forms", "other", other));
	STEP(encrypt("ed-forms", "alias/app", "via alias", "", ct));
	STEP(encrypt("ed-forms", fx_urn("app"), "via urn", "", ct));
	ASSERT_ERR(decrypt("ed-forms", ct, "", &r), 0);
	ASSERT_STREQ(fx_str(r, "key_id"), id);
	ASSERT_STREQ(fx_str(r, "plain_text"), "via urn");
	ASSERT_ERR(
		call("ed-forms", "encrypt-data", API_SCOPE_KEY, id, "{\"plain_text\":\"dir\"}", &r),
		0);
	ASSERT_STREQ(fx_str(r, "key_id"), id);
	ASSERT_ERR(call("ed-forms", "encrypt-data", API_SCOPE_KEY, id,
			fx_fmt("{\"plain_text\":\"dir\",\"key_id\":\"%s\"}", other), NULL),
		   KMS_E_BAD_KEY_ID);
	ASSERT_ERR(call("ed-forms", "encrypt-data", API_SCOPE_KEY, FX_NO_KEY,
			"{\"plain_text\":\"dir\"}", NULL),
		   KMS_E_KEY_NOT_FOUND);
}

TEST(decrypt_data_key_from_blob)
{
	char id[FX_ID_LEN], other[FX_ID_LEN], ct[B64_MAX];
	cJSON *r = NULL;

	STEP(fx_key("dd", "app", id));
	STEP(fx_key("dd", "other", other));
	STEP(encrypt("dd", id, "secret", "", ct));
	/* No key_id needed; if given it must name the blob's key, in any form. */
	ASSERT_ERR(decrypt("dd", ct, "", &r), 0);
	ASSERT_STREQ(fx_str(r, "key_id"), id);
	ASSERT_ERR(decrypt("dd", ct, fx_fmt(",\"key_id\":\"%s\"", id), &r), 0);
	ASSERT_ERR(decrypt("dd", ct, ",\"key_id\":\"alias/app\"", &r), 0);
	ASSERT_ERR(decrypt("dd", ct, fx_fmt(",\"key_id\":\"%s\"", fx_urn("app")), &r), 0);
	ASSERT_STREQ(fx_str(r, "plain_text"), "secret");
	ASSERT_ERR(decrypt("dd", ct, fx_fmt(",\"key_id\":\"%s\"", other), NULL), KMS_E_BAD_KEY_ID);
	ASSERT_ERR(decrypt("dd", ct, ",\"key_id\":\"alias/other\"", NULL), KMS_E_BAD_KEY_ID);
	ASSERT_ERR(decrypt("dd", ct, ",\"key_id\":\"bad\"", NULL), KMS_E_BAD_KEY_ID);
	ASSERT_ERR(decrypt("dd", ct, ",\"key_id\":7", NULL), KMS_E_BAD_KEY_ID);
	ASSERT_ERR(decrypt("dd", ct, ",\"key_id\":\"" FX_NO_KEY "\"", NULL), KMS_E_KEY_NOT_FOUND);
	/* Key folders. */
	ASSERT_ERR(call("dd", "decrypt-data", API_SCOPE_KEY, id,
			fx_fmt("{\"cipher_text\":\"%s\"}", ct), &r),
		   0);
	ASSERT_ERR(call("dd", "decrypt-data", API_SCOPE_KEY, other,
			fx_fmt("{\"cipher_text\":\"%s\"}", ct), NULL),
		   KMS_E_BAD_KEY_ID);
}

TEST(decrypt_data_other_project)
{
	char id[FX_ID_LEN], mine[FX_ID_LEN], ct[B64_MAX];

	STEP(fx_key("dd-p1", "app", id));
	STEP(fx_key("dd-p2", "app", mine));
	STEP(encrypt("dd-p1", id, "theirs", "", ct));
	ASSERT_ERR(decrypt("dd-p2", ct, "", NULL), KMS_E_KEY_NOT_FOUND);
	ASSERT_ERR(decrypt("dd-p2", ct, ",\"key_id\":\"alias/app\"", NULL), KMS_E_KEY_NOT_FOUND);
	ASSERT_ERR(decrypt("dd-p1", ct, "", NULL), 0);
}

TEST(decrypt_data_cipher_bounds)
{
	static char big[5700];
	char id[FX_ID_LEN], ct[B64_MAX], bad[B64_MAX];

	STEP(fx_key("dd-bounds", "app", id));
	STEP(encrypt("dd-bounds", id, "x", "", ct));
	ASSERT_EQ(strlen(ct), 188);
	ASSERT_ERR(decrypt("dd-bounds", ct, "", NULL), 0);
	ASSERT_ERR(pcall("dd-bounds", "decrypt-data", "{}", NULL), KMS_E_MISSING);
	ASSERT_ERR(pcall("dd-bounds", "decrypt-data", "{\"cipher_text\":null}", NULL),
		   KMS_E_MISSING);
	ASSERT_ERR(pcall("dd-bounds", "decrypt-data", "{\"cipher_text\":188}", NULL),
		   KMS_E_CIPHER_INVALID);
	ASSERT_ERR(decrypt("dd-bounds", "", "", NULL), KMS_E_CIPHER_INVALID);
	/* 187 characters: below the bound (also not a multiple of 4). */
	snprintf(bad, sizeof(bad), "%.*s", 187, ct);
	ASSERT_ERR(decrypt("dd-bounds", bad, "", NULL), KMS_E_CIPHER_INVALID);
	/* 184: a multiple of 4, still below the bound. */
	snprintf(bad, sizeof(bad), "%.*s", 184, ct);
	ASSERT_ERR(decrypt("dd-bounds", bad, "", NULL), KMS_E_CIPHER_INVALID);
	/* Not Base64: a bad character, URL-safe alphabet, blanks, hex. */
	snprintf(bad, sizeof(bad), "%s", ct);
	bad[10] = '*';
	ASSERT_ERR(decrypt("dd-bounds", bad, "", NULL), KMS_E_CIPHER_INVALID);
	snprintf(bad, sizeof(bad), "%s", ct);
	bad[10] = '-';
	ASSERT_ERR(decrypt("dd-bounds", bad, "", NULL), KMS_E_CIPHER_INVALID);
	snprintf(bad, sizeof(bad), "%s", ct);
	bad[10] = ' ';
	ASSERT_ERR(decrypt("dd-bounds", bad, "", NULL), KMS_E_CIPHER_INVALID);
	/* Base64 of 188 characters, but not a blob. */
	memset(bad, 'A', 188);
	bad[188] = 0;
	ASSERT_ERR(decrypt("dd-bounds", bad, "", NULL), KMS_E_CIPHER_INVALID);
	/* Above the bound: 5652 and 5649 characters. */
	memset(big, 'A', 5652);
	big[5652] = 0;
	ASSERT_ERR(decrypt("dd-bounds", big, "", NULL), KMS_E_CIPHER_INVALID);
	big[5649] = 0;
	ASSERT_ERR(decrypt("dd-bounds", big, "", NULL), KMS_E_CIPHER_INVALID);
	/* 5648, the largest allowed: Base64, but no blob (4236 bytes > 124 + 4096). */
	big[5648] = 0;
	ASSERT_ERR(decrypt("dd-bounds", big, "", NULL), KMS_E_CIPHER_INVALID);
}

TEST(decrypt_data_tampered)
{
	char id[FX_ID_LEN], ct[B64_MAX], bad[B64_MAX];
	uint8_t blob[CORE_BLOB_MAX];
	size_t n = 0;

	STEP(fx_key("dd-tamper", "app", id));
	STEP(encrypt("dd-tamper", id, "integrity matters", "", ct));
	ASSERT_OK(kms_base64_decode(ct, strlen(ct), blob, sizeof(blob), &n));
	for (size_t pos = 0; pos < n; pos += 5) {
		blob[pos] ^= 0x04;
		kms_base64_encode(blob, n, bad);
		ASSERT_ERR(decrypt("dd-tamper", bad, "", NULL), KMS_E_CIPHER_INVALID);
		blob[pos] ^= 0x04;
	}
	/* Payload changed, digest recomputed: authenticity fails. */
	blob[20] ^= 0x01;
	ASSERT_OK(core_sha256(blob, n - 32, blob + n - 32));
	kms_base64_encode(blob, n, bad);
	ASSERT_ERR(decrypt("dd-tamper", bad, "", NULL), KMS_E_DECRYPT_FAILED);
}

TEST(decrypt_data_context)
{
	char id[FX_ID_LEN], ct[B64_MAX];
	cJSON *r = NULL;

	STEP(fx_key("dd-ctx", "app", id));
	STEP(encrypt("dd-ctx", id, "bound", ",\"encryption_context\":{\"a\":\"1\",\"b\":\"2\"}",
		     ct));
	ASSERT_ERR(decrypt("dd-ctx", ct, "", NULL), KMS_E_DECRYPT_FAILED);
	ASSERT_ERR(decrypt("dd-ctx", ct, ",\"encryption_context\":{\"a\":\"1\"}", NULL),
		   KMS_E_DECRYPT_FAILED);
	ASSERT_ERR(decrypt("dd-ctx", ct, ",\"encryption_context\":{\"b\":\"2\",\"a\":\"1\"}", &r),
		   0);
	ASSERT_STREQ(fx_str(r, "plain_text"), "bound");
	ASSERT_ERR(decrypt("dd-ctx", ct, ",\"encryption_context\":[]", NULL), KMS_E_BAD_CONTEXT);
}

TEST(decrypt_data_binary_and_escapes)
{
	char id[FX_ID_LEN], ct[B64_MAX];
	cJSON *r = NULL;

	STEP(fx_key("dd-bin", "app", id));
	/* JSON escapes come back as the same characters. */
	STEP(encrypt("dd-bin", id, "q\\\"b\\\\s\\n\\t\\u00e9\\u0001", "", ct));
	ASSERT_ERR(decrypt("dd-bin", ct, "", &r), 0);
	ASSERT_STREQ(fx_str(r, "plain_text"), "q\"b\\s\n\t\xc3\xa9\x01");
	/* Bytes that are not UTF-8 (raw in the request): plain_text "" and the Base64 form. */
	STEP(encrypt("dd-bin", id, "a\xff\xfe", "", ct));
	ASSERT_ERR(decrypt("dd-bin", ct, "", &r), 0);
	ASSERT_STREQ(fx_str(r, "plain_text"), "");
	ASSERT_STREQ(fx_str(r, "plain_text_base64"), "Yf/+");
}

TEST(decrypt_data_disabled_key_0209)
{
	char id[FX_ID_LEN], ct[B64_MAX];

	STEP(fx_key("dd-state", "app", id));
	STEP(encrypt("dd-state", id, "x", "", ct));
	ASSERT_ERR(pcall("dd-state", "disable-key", fx_fmt("{\"key_id\":\"%s\"}", id), NULL), 0);
	ASSERT_ERR(decrypt("dd-state", ct, "", NULL), KMS_E_KEY_DISABLED);
	ASSERT_ERR(pcall("dd-state", "enable-key", fx_fmt("{\"key_id\":\"%s\"}", id), NULL), 0);
	ASSERT_ERR(decrypt("dd-state", ct, "", NULL), 0);
}

/* kms-api.md 3.4: the real service answers KMS.2203 when a data key's ciphertext is sent to
 * decrypt-data; a DEK must not come back out of decrypt-data as "data". */
TEST(decrypt_data_refuses_datakey_blob)
{
	char id[FX_ID_LEN], b64[B64_MAX];
	uint8_t blob[CORE_BLOB_MAX];
	cJSON *r = NULL;
	size_t n;

	STEP(fx_key("dd-cross", "app", id));
	ASSERT_ERR(pcall("dd-cross", "create-datakey", fx_fmt("{\"key_id\":\"%s\"}", id), &r), 0);
	n = kms_test_unhex(fx_str(r, "cipher_text"), blob, sizeof(blob));
	kms_base64_encode(blob, n, b64);
	ASSERT_ERR(decrypt("dd-cross", b64, "", NULL), KMS_E_DECRYPT_FAILED);
}
