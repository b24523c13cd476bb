/* test-api-datakey.c - the data-key actions (kms-api.md sections 3.1-3.4, 3.7, 7.3, 8, 11):
 * create-datakey, create-datakey-without-plaintext, encrypt-datakey, decrypt-datakey, and
 * gen-random; encryption_context binding; key id forms; key states; the order of validation of
 * section 11.2 (encrypt-datakey) and 11.3 (decrypt-datakey).
 *
 * Blobs are taken apart by the documented layout (core/kms_core.h, kms-api.md 8.1) to tamper
 * with single fields; a tampered digest is recomputed where the point is to get past it.
 */
#include "kms_test_api.h"

#define DGST_ZERO64 "F5A5FD42D16A20302798EF6ED309979B43003D2320D9F0E8EA9831A92759FB4B"
#define HEX_MAX	    (2 * CORE_BLOB_MAX + 1)

static char zero64[2 * 64 + 1]; /* hex of 64 zero bytes */

__attribute__((constructor)) static void init_zero64(void)
{
	memset(zero64, '0', 2 * 64);
}

/* hex(dek) || hex(SHA-256(dek)) for an n-byte DEK of value (i * mul + add) & 0xff. */
static const char *dek_plain(size_t n, unsigned mul, unsigned add, char *out)
{
	uint8_t dek[KMS_MAX_DATAKEY_BYTES];
	char dg[65];

	for (size_t i = 0; i < n; i++)
		dek[i] = (uint8_t)(i * mul + add);
	kms_hex_encode(dek, n, out);
	fx_sha256_hex(dek, n, dg);
	strcat(out, dg);
	return out;
}

static size_t unhex(const char *hex, uint8_t *out)
{
	return kms_test_unhex(hex, out, CORE_BLOB_MAX);
}

static void redigest(uint8_t *b, size_t n)
{
	if (core_sha256(b, n - CORE_SHA256_BYTES, b + n - CORE_SHA256_BYTES) < 0)
		abort();
}

/* create-datakey for key_ref in project; copies plain_text and cipher_text out. */
static void new_datakey(const char *project, const char *key_ref, const char *extra,
			char plain[HEX_MAX], char cipher[HEX_MAX])
{
	cJSON *r = NULL;

	ASSERT_ERR(pcall(project, "create-datakey", fx_fmt("{\"key_id\":\"%s\"%s}", key_ref, extra),
			 &r),
		   0);
	ASSERT_TRUE(fx_str(r, "plain_text") && fx_str(r, "cipher_text"));
	snprintf(plain, HEX_MAX, "%s", fx_str(r, "plain_text") ? fx_str(r, "plain_text") : "");
	snprintf(cipher, HEX_MAX, "%s", fx_str(r, "cipher_text") ? fx_str(r, "cipher_text") : "");
}

/* encrypt-datakey with key id of the hex plain_text plain, and datakey_plain_length len (JSON). */
static int wrap(const char *project, const char *id, const char *plain, const char *len)
{
	return pcall(project, "encrypt-datakey",
		     fx_fmt("{\"key_id\":\"%s\",\"plain_text\":\"%s\",\"datakey_plain_length\":%s}",
			    id, plain, len),
		     NULL);
}

/* action needs key_id id and the members a and b (each "name":value): without any one of the
 * three it is KMS.0204. */
static void each_required(const char *project, const char *action, const char *id, const char *a,
			  const char *b)
{
	ASSERT_ERR(pcall(project, action, fx_fmt("{%s,%s}", a, b), NULL), KMS_E_MISSING);
	ASSERT_ERR(pcall(project, action, fx_kid_with(id, b), NULL), KMS_E_MISSING);
	ASSERT_ERR(pcall(project, action, fx_kid_with(id, a), NULL), KMS_E_MISSING);
}

/* create-datakey with key id and the encryption_context ctx (a JSON text). */
static int with_context(const char *project, const char *id, const char *ctx)
{
	return pcall(project, "create-datakey",
		     fx_kid_with(id, fx_fmt("\"encryption_context\":%s", ctx)), NULL);
}

static int decrypt(const char *project, const char *key_ref, const char *cipher, size_t dek_len,
		   const char *extra, cJSON **r)
{
	return pcall(project, "decrypt-datakey",
		     fx_fmt("{\"key_id\":\"%s\",\"cipher_text\":\"%s\","
			    "\"datakey_cipher_length\":\"%zu\"%s}",
			    key_ref, cipher, dek_len, extra),
		     r);
}

/* ---- create-datakey (3.1) ---- */

TEST(create_datakey_default_512)
{
	char id[FX_ID_LEN], plain[HEX_MAX], cipher[HEX_MAX], dg[65];
	uint8_t blob[CORE_BLOB_MAX], dek[64];
	cJSON *r = NULL;

	STEP(fx_key("cd", "app", id));
	ASSERT_ERR(pcall("cd", "create-datakey", fx_fmt("{\"key_id\":\"%s\"}", id), &r), 0);
	ASSERT_EQ(cJSON_GetArraySize(r), 3);
	ASSERT_STREQ(fx_str(r, "key_id"), id);
	ASSERT_TRUE(fx_upper_hex(fx_str(r, "plain_text"), 128));
	ASSERT_TRUE(fx_upper_hex(fx_str(r, "cipher_text"), 376));
	snprintf(plain, sizeof(plain), "%s",
		 fx_str(r, "plain_text") ? fx_str(r, "plain_text") : "");
	snprintf(cipher, sizeof(cipher), "%s",
		 fx_str(r, "cipher_text") ? fx_str(r, "cipher_text") : "");
	/* The container of kms-api.md 8.1: 02 00 98 00, key id at 116, version 0 at 152. */
	ASSERT_EQ(unhex(cipher, blob), 188);
	ASSERT_HEXEQ(blob, 4, "02009800");
	ASSERT_MEMEQ(blob + 116, id, 36);
	ASSERT_HEXEQ(blob + 152, 4, "00000000");
	/* Round trip. */
	ASSERT_ERR(decrypt("cd", id, cipher, 64, "", &r), 0);
	ASSERT_EQ(cJSON_GetArraySize(r), 3);
	ASSERT_STREQ(fx_str(r, "data_key"), plain);
	ASSERT_STREQ(fx_str(r, "datakey_length"), "64");
	kms_test_unhex(plain, dek, sizeof(dek));
	fx_sha256_hex(dek, sizeof(dek), dg);
	ASSERT_STREQ(fx_str(r, "datakey_dgst"), dg);
	/* Fresh each time. */
	ASSERT_ERR(pcall("cd", "create-datakey", fx_fmt("{\"key_id\":\"%s\"}", id), &r), 0);
	ASSERT_FALSE(strcmp(fx_str(r, "plain_text"), plain) == 0);
	ASSERT_FALSE(strcmp(fx_str(r, "cipher_text"), cipher) == 0);
}

TEST(create_datakey_lengths)
{
	static const struct {
		const char *value;
		size_t bytes;
	} v[] = {
		{ "\"512\"", 64 },    { "512", 64 },	 { "\"8\"", 1 },    { "8", 1 },
		{ "\"128\"", 16 },    { "\"136\"", 17 }, { "\"256\"", 32 }, { "256", 32 },
		{ "\"8192\"", 1024 }, { "512.0", 64 },	 { "5.12e2", 64 },  { "\"0512\"", 64 },
		{ "null", 64 },
	};
	char id[FX_ID_LEN], plain[HEX_MAX], cipher[HEX_MAX];
	cJSON *r = NULL;

	STEP(fx_key("cd-len", "app", id));
	for (size_t i = 0; i < KMS_ARRAY_SIZE(v); i++) {
		int e = pcall("cd-len", "create-datakey",
			      fx_fmt("{\"key_id\":\"%s\",\"datakey_length\":%s}", id, v[i].value),
			      &r);

		if (e != 0)
			fprintf(stderr, "\tdatakey_length %s\n", v[i].value);
		ASSERT_ERR(e, 0);
		ASSERT_TRUE(fx_upper_hex(fx_str(r, "plain_text"), 2 * v[i].bytes));
		ASSERT_TRUE(fx_upper_hex(fx_str(r, "cipher_text"), 2 * core_blob_size(v[i].bytes)));
		snprintf(plain, sizeof(plain), "%s",
			 fx_str(r, "plain_text") ? fx_str(r, "plain_text") : "");
		snprintf(cipher, sizeof(cipher), "%s",
			 fx_str(r, "cipher_text") ? fx_str(r, "cipher_text") : "");
		ASSERT_ERR(decrypt("cd-len", id, cipher, v[i].bytes, "", &r), 0);
		ASSERT_STREQ(fx_str(r, "data_key"), plain);
		ASSERT_STREQ(fx_str(r, "datakey_length"), fx_fmt("%zu", v[i].bytes));
	}
}

TEST(create_datakey_key_spec)
{
	char id[FX_ID_LEN];
	cJSON *r = NULL;

	STEP(fx_key("cd-spec", "app", id));
	ASSERT_ERR(
		pcall("cd-spec", "create-datakey", fx_kid_with(id, "\"key_spec\":\"AES_128\""), &r),
		0);
	ASSERT_TRUE(fx_upper_hex(fx_str(r, "plain_text"), 32));
	ASSERT_ERR(
		pcall("cd-spec", "create-datakey", fx_kid_with(id, "\"key_spec\":\"AES_256\""), &r),
		0);
	ASSERT_TRUE(fx_upper_hex(fx_str(r, "plain_text"), 64));
	/* Both given: datakey_length wins (kms-api.md 3.1). */
	ASSERT_ERR(pcall("cd-spec", "create-datakey",
			 fx_kid_with(id, "\"key_spec\":\"AES_128\",\"datakey_length\":"
					 "\"512\""),
			 &r),
		   0);
	ASSERT_TRUE(fx_upper_hex(fx_str(r, "plain_text"), 128));
	ASSERT_ERR(pcall("cd-spec", "create-datakey", fx_kid_with(id, "\"key_spec\":\"SM4\""), &r),
		   KMS_E_DATAKEY_SPEC);
	ASSERT_LAST_ERROR("KMS.1902", "key_spec can only be AES_128 or AES_256.");
	ASSERT_ERR(
		pcall("cd-spec", "create-datakey", fx_kid_with(id, "\"key_spec\":\"aes_256\""), &r),
		KMS_E_DATAKEY_SPEC);
	ASSERT_ERR(pcall("cd-spec", "create-datakey", fx_kid_with(id, "\"key_spec\":256"), &r),
		   KMS_E_DATAKEY_SPEC);
}

TEST(create_datakey_length_errors)
{
	static const char *const range[] = {
		"\"0\"",    "\"7\"",	"\"8200\"",	  "\"8193\"",  "\"16384\"",
		"\"-8\"",   "\"abc\"",	"\"\"",		  "\"1e3\"",   "\" 512\"",
		"\"512 \"", "\"+512\"", "\"0x200\"",	  "\"512.0\"", "0",
		"-8",	    "7.5",	"512.5",	  "1e10",      "true",
		"{}",	    "[512]",	"\"9999999999\"",
	};
	static const char *const multiple[] = { "\"9\"", "\"12\"", "\"8191\"", "\"1001\"", "9" };
	char id[FX_ID_LEN];

	STEP(fx_key("cd-err", "app", id));
	STEP(fx_member_refuses(
		"cd-err", "create-datakey", id, "datakey_length", range, KMS_ARRAY_SIZE(range),
		KMS_E_DATAKEY_RANGE,
		FX_ERROR_LINE("KMS.1901",
			      "datakey_length must be in the range 8 bits to 8,192 bits.")));
	STEP(fx_member_refuses(
		"cd-err", "create-datakey", id, "datakey_length", multiple,
		KMS_ARRAY_SIZE(multiple), KMS_E_DATAKEY_MULTIPLE,
		FX_ERROR_LINE("KMS.1903", "datakey_length must be a multiple of 8.")));
}

TEST(datakey_key_id_forms)
{
	static const char *const actions[] = { "create-datakey",
					       "create-datakey-without-plaintext" };
	char id[FX_ID_LEN], other[FX_ID_LEN], theirs[FX_ID_LEN], forms[3][160];
	cJSON *r = NULL;

	STEP(fx_key("cd-forms", "app", id));
	STEP(fx_key("cd-forms", "other", other));
	STEP(fx_key("cd-forms-2", "theirs", theirs));
	snprintf(forms[0], sizeof(forms[0]), "%s", id);
	snprintf(forms[1], sizeof(forms[1]), "alias/app");
	snprintf(forms[2], sizeof(forms[2]), "%s", fx_urn("app"));
	for (size_t a = 0; a < KMS_ARRAY_SIZE(actions); a++) {
		const char *act = actions[a];

		for (size_t i = 0; i < KMS_ARRAY_SIZE(forms); i++) {
			ASSERT_ERR(
				pcall("cd-forms", act, fx_fmt("{\"key_id\":\"%s\"}", forms[i]), &r),
				0);
			ASSERT_STREQ(fx_str(r, "key_id"), id); /* always the 36-char id */
			ASSERT_ERR(call("cd-forms", act, API_SCOPE_KEY, id,
					fx_fmt("{\"key_id\":\"%s\"}", forms[i]), &r),
				   0);
			ASSERT_STREQ(fx_str(r, "key_id"), id);
		}
		/* In the key folder key_id may be left out; another key is refused. */
		ASSERT_ERR(call("cd-forms", act, API_SCOPE_KEY, id, "", &r), 0);
		ASSERT_STREQ(fx_str(r, "key_id"), id);
		ASSERT_ERR(call("cd-forms", act, API_SCOPE_KEY, id,
				fx_fmt("{\"key_id\":\"%s\"}", other), NULL),
			   KMS_E_BAD_KEY_ID);
		ASSERT_ERR(call("cd-forms", act, API_SCOPE_KEY, id, "{\"key_id\":\"alias/other\"}",
				NULL),
			   KMS_E_BAD_KEY_ID);
		ASSERT_ERR(call("cd-forms", act, API_SCOPE_KEY, FX_NO_KEY, "{}", NULL),
			   KMS_E_KEY_NOT_FOUND);
		ASSERT_ERR(call("cd-forms", act, API_SCOPE_KEY, theirs, "{}", NULL),
			   KMS_E_KEY_NOT_FOUND);
		/* Project level: required, well formed, known, ours. */
		ASSERT_ERR(pcall("cd-forms", act, "{}", NULL), KMS_E_MISSING);
		ASSERT_ERR(pcall("cd-forms", act, "{\"key_id\":null}", NULL), KMS_E_MISSING);
		ASSERT_ERR(pcall("cd-forms", act, "{\"key_id\":42}", NULL), KMS_E_BAD_KEY_ID);
		ASSERT_ERR(pcall("cd-forms", act, "{\"key_id\":\"not-a-key\"}", NULL),
			   KMS_E_BAD_KEY_ID);
		ASSERT_ERR(pcall("cd-forms", act, fx_fmt("{\"key_id\":\"%sx\"}", id), NULL),
			   KMS_E_BAD_KEY_ID);
		ASSERT_ERR(pcall("cd-forms", act, "{\"key_id\":\"" FX_NO_KEY "\"}", NULL),
			   KMS_E_KEY_NOT_FOUND);
		ASSERT_ERR(pcall("cd-forms", act, "{\"key_id\":\"alias/nope\"}", NULL),
			   KMS_E_KEY_NOT_FOUND);
		ASSERT_ERR(
			pcall("cd-forms", act, fx_fmt("{\"key_id\":\"%s\"}", fx_urn("nope")), NULL),
			KMS_E_KEY_NOT_FOUND);
		ASSERT_ERR(pcall("cd-forms", act, fx_fmt("{\"key_id\":\"%s\"}", theirs), NULL),
			   KMS_E_KEY_NOT_FOUND);
		ASSERT_ERR(pcall("cd-forms", act, "{\"key_id\":\"alias/theirs\"}", NULL),
			   KMS_E_KEY_NOT_FOUND);
	}
}

/* ---- create-datakey-without-plaintext (3.2) ---- */

TEST(datakey_without_plaintext)
{
	char id[FX_ID_LEN], cipher[HEX_MAX];
	cJSON *r = NULL;

	STEP(fx_key("cdw", "app", id));
	ASSERT_ERR(pcall("cdw", "create-datakey-without-plaintext",
			 fx_kid_with(id, "\"datakey_length\":\"512\""), &r),
		   0);
	ASSERT_EQ(cJSON_GetArraySize(r), 2);
	ASSERT_STREQ(fx_str(r, "key_id"), id);
	ASSERT_TRUE(fx_get(r, "plain_text") == NULL);
	ASSERT_TRUE(fx_upper_hex(fx_str(r, "cipher_text"), 376));
	snprintf(cipher, sizeof(cipher), "%s",
		 fx_str(r, "cipher_text") ? fx_str(r, "cipher_text") : "");
	ASSERT_ERR(decrypt("cdw", id, cipher, 64, "", &r), 0);
	ASSERT_TRUE(fx_upper_hex(fx_str(r, "data_key"), 128));
	ASSERT_ERR(pcall("cdw", "create-datakey-without-plaintext",
			 fx_kid_with(id, "\"datakey_length\":512"), &r),
		   0);
	ASSERT_ERR(pcall("cdw", "create-datakey-without-plaintext",
			 fx_fmt("{\"key_id\":\"%s\"}", id), &r),
		   0);
	ASSERT_TRUE(fx_upper_hex(fx_str(r, "cipher_text"), 376));
}

TEST(datakey_without_plaintext_2001)
{
	static const char *const bad[] = { "\"0\"",    "\"4\"",	  "\"9\"", "\"511\"",
					   "\"8200\"", "\"abc\"", "-512",  "true" };
	char id[FX_ID_LEN];

	STEP(fx_key("cdw-err", "app", id));
	STEP(fx_member_refuses("cdw-err", "create-datakey-without-plaintext", id, "datakey_length",
			       bad, KMS_ARRAY_SIZE(bad), KMS_E_DATAKEY_512,
			       FX_ERROR_LINE("KMS.2001", "datakey_length must be 512 bits.")));
}

/* ---- encrypt-datakey (3.3) ---- */

/* The documented example: 64 zero bytes and their SHA-256 in, the same back out. */
TEST(encrypt_datakey_doc_example)
{
	char id[FX_ID_LEN], cipher[HEX_MAX];
	uint8_t blob[CORE_BLOB_MAX];
	cJSON *r = NULL;

	STEP(fx_key("ed-doc", "app", id));
	ASSERT_ERR(pcall("ed-doc", "encrypt-datakey",
			 fx_fmt("{\"key_id\":\"%s\",\"plain_text\":\"%s%s\","
				"\"datakey_plain_length\":\"64\"}",
				id, zero64, DGST_ZERO64),
			 &r),
		   0);
	ASSERT_EQ(cJSON_GetArraySize(r), 3);
	ASSERT_STREQ(fx_str(r, "key_id"), id);
	ASSERT_STREQ(fx_str(r, "datakey_length"), "64");
	ASSERT_TRUE(fx_upper_hex(fx_str(r, "cipher_text"), 376));
	snprintf(cipher, sizeof(cipher), "%s",
		 fx_str(r, "cipher_text") ? fx_str(r, "cipher_text") : "");
	ASSERT_EQ(unhex(cipher, blob), 188);
	ASSERT_HEXEQ(blob, 4, "02009800");
	ASSERT_MEMEQ(blob + 116, id, 36);
	ASSERT_ERR(decrypt("ed-doc", id, cipher, 64, "", &r), 0);
	ASSERT_STREQ(fx_str(r, "data_key"), zero64);
	ASSERT_STREQ(fx_str(r, "datakey_length"), "64");
	ASSERT_STREQ(fx_str(r, "datakey_dgst"), DGST_ZERO64);
	ASSERT_STREQ(fx_last(), fx_fmt("{\"data_key\":\"%s\",\"datakey_length\":\"64\","
				       "\"datakey_dgst\":\"%s\"}\n",
				       zero64, DGST_ZERO64));
}

TEST(encrypt_datakey_sizes_and_case)
{
	static const size_t sizes[] = { 1, 15, 16, 17, 32, 64, 100, 1024 };
	static char plain[2 * (KMS_MAX_DATAKEY_BYTES + 32) + 1], lower[sizeof(plain)];
	char id[FX_ID_LEN], cipher[HEX_MAX];
	cJSON *r = NULL;

	STEP(fx_key("ed-size", "app", id));
	for (size_t i = 0; i < KMS_ARRAY_SIZE(sizes); i++) {
		size_t n = sizes[i];

		dek_plain(n, 7, (unsigned)i, plain);
		ASSERT_ERR(pcall("ed-size", "encrypt-datakey",
				 fx_fmt("{\"key_id\":\"%s\",\"plain_text\":\"%s\","
					"\"datakey_plain_length\":\"%zu\"}",
					id, plain, n),
				 &r),
			   0);
		ASSERT_STREQ(fx_str(r, "datakey_length"), fx_fmt("%zu", n));
		ASSERT_TRUE(fx_upper_hex(fx_str(r, "cipher_text"), 2 * core_blob_size(n)));
		snprintf(cipher, sizeof(cipher), "%s",
			 fx_str(r, "cipher_text") ? fx_str(r, "cipher_text") : "");
		ASSERT_ERR(decrypt("ed-size", id, cipher, n, "", &r), 0);
		ASSERT_TRUE(strncmp(fx_str(r, "data_key"), plain, 2 * n) == 0);
		ASSERT_EQ(strlen(fx_str(r, "data_key")), 2 * n);
		ASSERT_STREQ(fx_str(r, "datakey_dgst"), plain + 2 * n);
	}
	/* Input hex is case-insensitive (kms-api.md 1); output is upper case. */
	dek_plain(64, 13, 0xab, plain);
	for (size_t i = 0; plain[i]; i++)
		lower[i] = (char)(plain[i] >= 'A' && plain[i] <= 'F' ? plain[i] + 32 : plain[i]);
	lower[strlen(plain)] = 0;
	ASSERT_FALSE(strcmp(lower, plain) == 0);
	ASSERT_ERR(pcall("ed-size", "encrypt-datakey",
			 fx_fmt("{\"key_id\":\"%s\",\"plain_text\":\"%s\","
				"\"datakey_plain_length\":64}",
				id, lower),
			 &r),
		   0);
	snprintf(cipher, sizeof(cipher), "%s",
		 fx_str(r, "cipher_text") ? fx_str(r, "cipher_text") : "");
	ASSERT_ERR(decrypt("ed-size", "alias/app", cipher, 64, "", &r), 0);
	ASSERT_TRUE(strncmp(fx_str(r, "data_key"), plain, 128) == 0);
	/* In the key folder, without key_id. */
	ASSERT_ERR(call("ed-size", "encrypt-datakey", API_SCOPE_KEY, id,
			fx_fmt("{\"plain_text\":\"%s\",\"datakey_plain_length\":\"64\"}", plain),
			&r),
		   0);
	ASSERT_STREQ(fx_str(r, "key_id"), id);
}

TEST(encrypt_datakey_errors)
{
	static const char *const lens[] = { "\"0\"", "\"1025\"", "\"abc\"", "\"\"",
					    "-1",    "64.5",	 "\"64 \"", "true" };
	char id[FX_ID_LEN], good[2 * 96 + 1], bad[2 * 96 + 8];

	STEP(fx_key("ed-err", "app", id));
	dek_plain(64, 3, 1, good);
	/* 0204 */
	STEP(each_required("ed-err", "encrypt-datakey", id, fx_fmt("\"plain_text\":\"%s\"", good),
			   "\"datakey_plain_length\":\"64\""));
	ASSERT_ERR(wrap("ed-err", id, good, "null"), KMS_E_MISSING);
	/* 2102 */
	for (size_t i = 0; i < KMS_ARRAY_SIZE(lens); i++)
		EXPECT(lens[i], wrap("ed-err", id, good, lens[i]), KMS_E_PLAIN_LENGTH);
	ASSERT_LAST_ERROR("KMS.2102", "datakey_plain_length must be 64 bytes.");
	/* 2101: not hex (right length), odd length, not a string, blanks */
	snprintf(bad, sizeof(bad), "%s", good);
	bad[10] = 'G';
	ASSERT_ERR(wrap("ed-err", id, bad, "\"64\""), KMS_E_PLAIN_INVALID);
	ASSERT_LAST_ERROR("KMS.2101", "Invalid plain_text.");
	snprintf(bad, sizeof(bad), "%s", good);
	bad[10] = ' ';
	ASSERT_ERR(wrap("ed-err", id, bad, "\"64\""), KMS_E_PLAIN_INVALID);
	ASSERT_ERR(wrap("ed-err", id, fx_fmt("%s0", good), "\"64\""), KMS_E_PLAIN_INVALID);
	ASSERT_ERR(pcall("ed-err", "encrypt-datakey",
			 fx_kid_with(id, "\"plain_text\":12,"
					 "\"datakey_plain_length\":\"64\""),
			 NULL),
		   KMS_E_PLAIN_INVALID);
	ASSERT_ERR(wrap("ed-err", id, fx_fmt("0x%s", good), "\"64\""), KMS_E_PLAIN_INVALID);
	/* 2104: hex, but not 2 * (length + 32) digits */
	ASSERT_ERR(wrap("ed-err", id, fx_fmt("%s00", good), "\"64\""), KMS_E_PLAIN_MISMATCH);
	ASSERT_LAST_ERROR("KMS.2104",
			  "The length of plain_text does not match datakey_plain_length.");
	ASSERT_ERR(wrap("ed-err", id, good, "\"32\""), KMS_E_PLAIN_MISMATCH);
	ASSERT_ERR(wrap("ed-err", id, zero64, "\"64\""),
		   KMS_E_PLAIN_MISMATCH); /* DEK without its digest */
	ASSERT_ERR(wrap("ed-err", id, "", "\"64\""), KMS_E_PLAIN_MISMATCH);
	/* 2103: the digest of another DEK, a flipped digest bit, a flipped DEK bit */
	snprintf(bad, sizeof(bad), "%s%s", zero64, good + 128);
	ASSERT_ERR(wrap("ed-err", id, bad, "\"64\""), KMS_E_DEK_HASH);
	ASSERT_LAST_ERROR("KMS.2103", "Failed to verify the DEK hash.");
	for (size_t pos = 0; pos < 192; pos += 37) {
		snprintf(bad, sizeof(bad), "%s", good);
		bad[pos] = bad[pos] == '0' ? '1' : '0';
		ASSERT_ERR(wrap("ed-err", id, bad, "\"64\""), KMS_E_DEK_HASH);
	}
	/* The same DEK read as 32 bytes: its "digest" is not SHA-256 of the first half. */
	snprintf(bad, sizeof(bad), "%.*s", 2 * (32 + 32), good);
	ASSERT_ERR(wrap("ed-err", id, bad, "\"32\""), KMS_E_DEK_HASH);
	/* key errors come last */
	ASSERT_ERR(pcall("ed-err", "encrypt-datakey",
			 fx_fmt("{\"key_id\":\"" FX_NO_KEY "\",\"plain_text\":\"%s\","
				"\"datakey_plain_length\":\"64\"}",
				good),
			 NULL),
		   KMS_E_KEY_NOT_FOUND);
	ASSERT_ERR(pcall("ed-err", "encrypt-datakey",
			 fx_fmt("{\"key_id\":\"alias/%s\",\"plain_text\":\"%s\","
				"\"datakey_plain_length\":\"64\"}",
				"nope", good),
			 NULL),
		   KMS_E_KEY_NOT_FOUND);
	ASSERT_ERR(pcall("ed-err", "encrypt-datakey",
			 fx_fmt("{\"key_id\":\"x\",\"plain_text\":\"%s\","
				"\"datakey_plain_length\":\"64\"}",
				good),
			 NULL),
		   KMS_E_BAD_KEY_ID);
}

/* kms-api.md 11.2: 0202 -> 0204 -> 0205 -> 0206 -> 0208 -> 2102 -> 2101/2104 -> 2103 -> 0207.
 * Each request below carries the error of its row and every later one. */
TEST(encrypt_datakey_validation_order)
{
	char id[FX_ID_LEN], good[2 * 96 + 1], badhash[2 * 96 + 1];
	static const char bad_ctx[] = "\"encryption_context\":[1]";
	static const char bad_seq[] = "\"sequence\":\"x\"";

	STEP(fx_key("ed-order", "app", id));
	dek_plain(64, 5, 5, good);
	snprintf(badhash, sizeof(badhash), "%s%s", zero64, good + 128);
	ASSERT_ERR(pcall("ed-order", "encrypt-datakey",
			 fx_fmt("{\"key_id\":\"x\",\"datakey_plain_length\":\"0\",%s,%s", bad_ctx,
				bad_seq),
			 NULL),
		   KMS_E_BAD_JSON);
	ASSERT_ERR(pcall("ed-order", "encrypt-datakey",
			 fx_fmt("{\"key_id\":\"x\",\"datakey_plain_length\":\"64\",%s,%s}", bad_ctx,
				bad_seq),
			 NULL),
		   KMS_E_MISSING);
	ASSERT_ERR(pcall("ed-order", "encrypt-datakey",
			 fx_fmt("{\"key_id\":\"x\",\"plain_text\":\"zz\","
				"\"datakey_plain_length\":\"64\",%s,%s}",
				bad_ctx, bad_seq),
			 NULL),
		   KMS_E_BAD_KEY_ID);
	ASSERT_ERR(pcall("ed-order", "encrypt-datakey",
			 fx_fmt("{\"key_id\":\"" FX_NO_KEY "\",\"plain_text\":\"zz\","
				"\"datakey_plain_length\":\"64\",%s,%s}",
				bad_ctx, bad_seq),
			 NULL),
		   KMS_E_BAD_SEQUENCE);
	ASSERT_ERR(pcall("ed-order", "encrypt-datakey",
			 fx_fmt("{\"key_id\":\"" FX_NO_KEY "\",\"plain_text\":\"zz\","
				"\"datakey_plain_length\":\"64\",%s}",
				bad_ctx),
			 NULL),
		   KMS_E_BAD_CONTEXT);
	ASSERT_ERR(wrap("ed-order", FX_NO_KEY, "zz", "\"0\""), KMS_E_PLAIN_LENGTH);
	ASSERT_ERR(wrap("ed-order", FX_NO_KEY, "zz", "\"64\""), KMS_E_PLAIN_INVALID);
	ASSERT_ERR(wrap("ed-order", FX_NO_KEY, fx_fmt("%s00", badhash), "\"64\""),
		   KMS_E_PLAIN_MISMATCH);
	ASSERT_ERR(wrap("ed-order", FX_NO_KEY, badhash, "\"64\""), KMS_E_DEK_HASH);
	ASSERT_ERR(wrap("ed-order", FX_NO_KEY, good, "\"64\""), KMS_E_KEY_NOT_FOUND);
}

/* 11.2 again: key_id format, sequence and encryption_context are checked before the value of
 * datakey_plain_length (and presence before type). */
TEST(encrypt_datakey_common_checks_before_length)
{
	static const struct fx_refusal rows[] = {
		{ "{\"key_id\":\"x\",\"plain_text\":\"zz\",\"datakey_plain_length\":\"0\"}",
		  KMS_E_BAD_KEY_ID },
		{ "{\"key_id\":\"" FX_NO_KEY "\",\"plain_text\":\"zz\","
		  "\"datakey_plain_length\":\"0\",\"sequence\":\"x\"}",
		  KMS_E_BAD_SEQUENCE },
		{ "{\"key_id\":\"" FX_NO_KEY "\",\"plain_text\":\"zz\","
		  "\"datakey_plain_length\":\"0\",\"encryption_context\":[1]}",
		  KMS_E_BAD_CONTEXT },
		{ "{\"key_id\":5,\"datakey_plain_length\":\"64\"}", KMS_E_MISSING },
	};

	fx_refuses_each("ed-order2", "encrypt-datakey", NULL, rows, KMS_ARRAY_SIZE(rows));
}

/* ---- decrypt-datakey (3.4) ---- */

TEST(decrypt_datakey_errors)
{
	static const char *const lens[] = { "\"0\"", "\"1025\"", "\"x\"", "\"\"",
					    "-64",   "6.4",	 "[64]" };
	char id[FX_ID_LEN], plain[HEX_MAX], cipher[HEX_MAX], bad[HEX_MAX + 8];
	static char huge[2 * CORE_BLOB_MAX + 3];

	STEP(fx_key("dd-err", "app", id));
	STEP(new_datakey("dd-err", id, "", plain, cipher));
	/* 0204 */
	STEP(each_required("dd-err", "decrypt-datakey", id,
			   fx_fmt("\"cipher_text\":\"%s\"", cipher),
			   "\"datakey_cipher_length\":\"64\""));
	/* 2202 */
	for (size_t i = 0; i < KMS_ARRAY_SIZE(lens); i++)
		ASSERT_ERR(pcall("dd-err", "decrypt-datakey",
				 fx_fmt("{\"key_id\":\"%s\",\"cipher_text\":\"%s\","
					"\"datakey_cipher_length\":%s}",
					id, cipher, lens[i]),
				 NULL),
			   KMS_E_CIPHER_LENGTH);
	ASSERT_LAST_ERROR("KMS.2202", "datakey_cipher_length must be 64 bytes.");
	/* JSON number accepted */
	ASSERT_ERR(pcall("dd-err", "decrypt-datakey",
			 fx_fmt("{\"key_id\":\"%s\",\"cipher_text\":\"%s\","
				"\"datakey_cipher_length\":64}",
				id, cipher),
			 NULL),
		   0);
	/* 2201: not hex, odd, not a string, too long */
	snprintf(bad, sizeof(bad), "%s", cipher);
	bad[100] = 'x';
	ASSERT_ERR(decrypt("dd-err", id, bad, 64, "", NULL), KMS_E_CIPHER_INVALID);
	ASSERT_LAST_ERROR("KMS.2201", "Invalid cipher_text.");
	snprintf(bad, sizeof(bad), "%s0", cipher);
	ASSERT_ERR(decrypt("dd-err", id, bad, 64, "", NULL), KMS_E_CIPHER_INVALID);
	ASSERT_ERR(pcall("dd-err", "decrypt-datakey",
			 fx_kid_with(id, "\"cipher_text\":7,"
					 "\"datakey_cipher_length\":\"64\""),
			 NULL),
		   KMS_E_CIPHER_INVALID);
	memset(huge, 'A', sizeof(huge) - 1);
	ASSERT_ERR(decrypt("dd-err", id, huge, 64, "", NULL), KMS_E_CIPHER_INVALID);
	/* 2204: sizes that do not fit datakey_cipher_length */
	ASSERT_ERR(decrypt("dd-err", id, cipher, 32, "", NULL), KMS_E_CIPHER_MISMATCH);
	ASSERT_LAST_ERROR("KMS.2204",
			  "The length of cipher_text does not match datakey_cipher_length.");
	ASSERT_ERR(decrypt("dd-err", id, cipher, 65, "", NULL), KMS_E_CIPHER_MISMATCH);
	ASSERT_ERR(decrypt("dd-err", id, cipher, 1024, "", NULL), KMS_E_CIPHER_MISMATCH);
	snprintf(bad, sizeof(bad), "%.*s", 374, cipher);
	ASSERT_ERR(decrypt("dd-err", id, bad, 64, "", NULL), KMS_E_CIPHER_MISMATCH);
	snprintf(bad, sizeof(bad), "%s00", cipher);
	ASSERT_ERR(decrypt("dd-err", id, bad, 64, "", NULL), KMS_E_CIPHER_MISMATCH);
	/* The blob size fits 49..64 bytes: 60 is found out only after decryption. */
	ASSERT_ERR(decrypt("dd-err", id, cipher, 60, "", NULL), KMS_E_CIPHER_MISMATCH);
	ASSERT_ERR(decrypt("dd-err", id, cipher, 49, "", NULL), KMS_E_CIPHER_MISMATCH);
	/* key errors */
	ASSERT_ERR(decrypt("dd-err", FX_NO_KEY, cipher, 64, "", NULL), KMS_E_KEY_NOT_FOUND);
	ASSERT_ERR(decrypt("dd-err", "alias/nope", cipher, 64, "", NULL), KMS_E_KEY_NOT_FOUND);
	ASSERT_ERR(decrypt("dd-err", "nope", cipher, 64, "", NULL), KMS_E_BAD_KEY_ID);
	/* Still fine after all that. */
	ASSERT_ERR(decrypt("dd-err", id, cipher, 64, "", NULL), 0);
}

TEST(decrypt_datakey_short_dek_in_64_blob)
{
	char id[FX_ID_LEN], plain[HEX_MAX], cipher[HEX_MAX];
	cJSON *r = NULL;

	/* A 60-byte DEK makes a 188-byte blob too (ceil16(60) = 64): only its own length opens. */
	STEP(fx_key("dd-60", "app", id));
	dek_plain(60, 9, 9, plain);
	ASSERT_ERR(pcall("dd-60", "encrypt-datakey",
			 fx_fmt("{\"key_id\":\"%s\",\"plain_text\":\"%s\","
				"\"datakey_plain_length\":\"60\"}",
				id, plain),
			 &r),
		   0);
	ASSERT_TRUE(fx_upper_hex(fx_str(r, "cipher_text"), 376));
	snprintf(cipher, sizeof(cipher), "%s",
		 fx_str(r, "cipher_text") ? fx_str(r, "cipher_text") : "");
	ASSERT_ERR(decrypt("dd-60", id, cipher, 64, "", NULL), KMS_E_CIPHER_MISMATCH);
	ASSERT_ERR(decrypt("dd-60", id, cipher, 61, "", NULL), KMS_E_CIPHER_MISMATCH);
	ASSERT_ERR(decrypt("dd-60", id, cipher, 60, "", &r), 0);
	ASSERT_STREQ(fx_str(r, "datakey_length"), "60");
}

/* kms-api.md 11.3: 2202 -> 2201 (hex) -> 2204 (size) -> 2201 (container) -> key -> 2203. */
TEST(decrypt_datakey_validation_order)
{
	char id[FX_ID_LEN], plain[HEX_MAX], cipher[HEX_MAX], junk[HEX_MAX];

	STEP(fx_key("dd-order", "app", id));
	STEP(new_datakey("dd-order", id, "", plain, cipher));
	memset(junk, '0', 376);
	junk[376] = 0;
	ASSERT_ERR(pcall("dd-order", "decrypt-datakey",
			 "{\"key_id\":\"" FX_NO_KEY "\",\"cipher_text\":\"zz\","
			 "\"datakey_cipher_length\":\"0\"}",
			 NULL),
		   KMS_E_CIPHER_LENGTH);
	ASSERT_ERR(decrypt("dd-order", FX_NO_KEY, "zz", 64, "", NULL), KMS_E_CIPHER_INVALID);
	ASSERT_ERR(decrypt("dd-order", FX_NO_KEY, "00", 64, "", NULL), KMS_E_CIPHER_MISMATCH);
	ASSERT_ERR(decrypt("dd-order", FX_NO_KEY, junk, 64, "", NULL), KMS_E_CIPHER_INVALID);
	ASSERT_ERR(decrypt("dd-order", FX_NO_KEY, cipher, 64, "", NULL), KMS_E_KEY_NOT_FOUND);
	ASSERT_ERR(
		decrypt("dd-order", id, cipher, 64, ",\"encryption_context\":{\"a\":\"b\"}", NULL),
		KMS_E_DECRYPT_FAILED);
}

/* 11.2's common checks come first here too: key_id format, sequence, encryption_context are
 * checked before the value of datakey_cipher_length. */
TEST(decrypt_datakey_common_checks_before_length)
{
	static const struct fx_refusal rows[] = {
		{ "{\"key_id\":\"x\",\"cipher_text\":\"zz\",\"datakey_cipher_length\":\"0\"}",
		  KMS_E_BAD_KEY_ID },
		{ "{\"key_id\":\"" FX_NO_KEY "\",\"cipher_text\":\"zz\","
		  "\"datakey_cipher_length\":\"0\",\"sequence\":\"x\"}",
		  KMS_E_BAD_SEQUENCE },
		{ "{\"key_id\":\"" FX_NO_KEY "\",\"cipher_text\":\"zz\","
		  "\"datakey_cipher_length\":\"0\",\"encryption_context\":7}",
		  KMS_E_BAD_CONTEXT },
	};

	fx_refuses_each("dd-order2", "decrypt-datakey", NULL, rows, KMS_ARRAY_SIZE(rows));
}

TEST(decrypt_datakey_tampered)
{
	char id[FX_ID_LEN], other[FX_ID_LEN], plain[HEX_MAX], cipher[HEX_MAX], hex[HEX_MAX];
	uint8_t blob[CORE_BLOB_MAX], t[CORE_BLOB_MAX];
	size_t n;

	STEP(fx_key("dd-tamper", "app", id));
	STEP(fx_key("dd-tamper", "other", other));
	STEP(new_datakey("dd-tamper", id, "", plain, cipher));
	n = unhex(cipher, blob);
	ASSERT_EQ(n, 188);
	/* Every single-bit flip is refused: 2201 (digest/container) or 2203 (authenticity), or
	 * 0205 when the flip lands in the key id and makes another well-formed one. */
	for (size_t bit = 0; bit < 8 * n; bit += 3) {
		int e;

		memcpy(t, blob, n);
		t[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		kms_hex_encode(t, n, hex);
		e = decrypt("dd-tamper", id, hex, 64, "", NULL);
		if (e != KMS_E_CIPHER_INVALID)
			fprintf(stderr, "\tbit %zu: %s\n", bit, kms_err_info(e)->code);
		ASSERT_ERR(e, KMS_E_CIPHER_INVALID); /* the digest catches every flip */
	}
	/* With the digest recomputed (anyone can): the header and key id are checked... */
	memcpy(t, blob, n);
	t[0] = 3; /* format version */
	redigest(t, n);
	kms_hex_encode(t, n, hex);
	ASSERT_ERR(decrypt("dd-tamper", id, hex, 64, "", NULL), KMS_E_CIPHER_INVALID);
	memcpy(t, blob, n);
	t[116] = 'A'; /* not a key id character */
	redigest(t, n);
	kms_hex_encode(t, n, hex);
	ASSERT_ERR(decrypt("dd-tamper", id, hex, 64, "", NULL), KMS_E_CIPHER_INVALID);
	memcpy(t, blob, n);
	t[152] = 1; /* key version 1 does not exist */
	redigest(t, n);
	kms_hex_encode(t, n, hex);
	ASSERT_ERR(decrypt("dd-tamper", id, hex, 64, "", NULL), KMS_E_CIPHER_INVALID);
	/* ... and the payload is authenticated: 2203. */
	for (size_t pos = 4; pos < 116; pos += 11) {
		memcpy(t, blob, n);
		t[pos] ^= 0x40;
		redigest(t, n);
		kms_hex_encode(t, n, hex);
		ASSERT_ERR(decrypt("dd-tamper", id, hex, 64, "", NULL), KMS_E_DECRYPT_FAILED);
	}
	ASSERT_LAST_ERROR("KMS.2203", "Failed to verify the DEK hash.");
	/* The blob relabelled as another key's (digest recomputed), asked of that key: it is
	 * the wrong key material and a different authenticated key id, so 2203. */
	memcpy(t, blob, n);
	memcpy(t + 116, other, 36);
	redigest(t, n);
	kms_hex_encode(t, n, hex);
	ASSERT_ERR(decrypt("dd-tamper", other, hex, 64, "", NULL), KMS_E_DECRYPT_FAILED);
	/* The untouched blob still opens. */
	ASSERT_ERR(decrypt("dd-tamper", id, cipher, 64, "", NULL), 0);
}

TEST(decrypt_datakey_other_key)
{
	char id[FX_ID_LEN], other[FX_ID_LEN], theirs[FX_ID_LEN];
	char plain[HEX_MAX], cipher[HEX_MAX], their_cipher[HEX_MAX];
	cJSON *r = NULL;

	STEP(fx_key("dd-other", "app", id));
	STEP(fx_key("dd-other", "other", other));
	STEP(fx_key("dd-other-2", "theirs", theirs));
	STEP(new_datakey("dd-other", id, "", plain, cipher));
	STEP(new_datakey("dd-other-2", theirs, "", plain, their_cipher));
	/* A blob names its key: asking another key is a key id mismatch (11.3: 0205). */
	ASSERT_ERR(decrypt("dd-other", other, cipher, 64, "", NULL), KMS_E_BAD_KEY_ID);
	ASSERT_ERR(decrypt("dd-other", "alias/other", cipher, 64, "", NULL), KMS_E_BAD_KEY_ID);
	ASSERT_ERR(call("dd-other", "decrypt-datakey", API_SCOPE_KEY, other,
			fx_fmt("{\"cipher_text\":\"%s\",\"datakey_cipher_length\":\"64\"}", cipher),
			NULL),
		   KMS_E_BAD_KEY_ID);
	ASSERT_ERR(call("dd-other", "decrypt-datakey", API_SCOPE_KEY, id,
			fx_fmt("{\"cipher_text\":\"%s\",\"datakey_cipher_length\":\"64\"}", cipher),
			&r),
		   0);
	ASSERT_ERR(decrypt("dd-other", fx_urn("app"), cipher, 64, "", &r), 0);
	/* Another project's blob: its key is not ours, whichever key we name. */
	ASSERT_ERR(decrypt("dd-other", theirs, their_cipher, 64, "", NULL), KMS_E_KEY_NOT_FOUND);
	ASSERT_FAIL(decrypt("dd-other", id, their_cipher, 64, "", NULL));
	ASSERT_ERR(decrypt("dd-other-2", theirs, their_cipher, 64, "", NULL), 0);
}

/* ---- encryption_context ---- */

TEST(context_binding)
{
	static const char *const wrong[] = {
		"",
		",\"encryption_context\":{}",
		",\"encryption_context\":null",
		",\"encryption_context\":\"\"",
		",\"encryption_context\":{\"a\":\"1\"}",
		",\"encryption_context\":{\"a\":\"1\",\"b\":\"3\"}",
		",\"encryption_context\":{\"a\":\"1\",\"b\":\"2\",\"c\":\"3\"}",
		",\"encryption_context\":{\"A\":\"1\",\"b\":\"2\"}",
		",\"encryption_context\":{\"a\":1,\"b\":\"2\"}",
		",\"encryption_context\":{\"a\":\"1 \",\"b\":\"2\"}",
	};
	char id[FX_ID_LEN], plain[HEX_MAX], cipher[HEX_MAX], c2[HEX_MAX];
	cJSON *r = NULL;

	STEP(fx_key("ctx", "app", id));
	STEP(new_datakey("ctx", id, ",\"encryption_context\":{\"a\":\"1\",\"b\":\"2\"}", plain,
			 cipher));
	ASSERT_ERR(decrypt("ctx", id, cipher, 64,
			   ",\"encryption_context\":{\"a\":\"1\",\"b\":\"2\"}", &r),
		   0);
	ASSERT_STREQ(fx_str(r, "data_key"), plain);
	/* Member order does not matter. */
	ASSERT_ERR(decrypt("ctx", id, cipher, 64,
			   ",\"encryption_context\":{\"b\":\"2\",\"a\":\"1\"}", &r),
		   0);
	ASSERT_STREQ(fx_str(r, "data_key"), plain);
	/* The string form (GTC sends one) is the same context. */
	ASSERT_ERR(decrypt("ctx", id, cipher, 64,
			   ",\"encryption_context\":\"{\\\"b\\\":\\\"2\\\",\\\"a\\\":\\\"1\\\"}\"",
			   &r),
		   0);
	/* Required, and equal. */
	for (size_t i = 0; i < KMS_ARRAY_SIZE(wrong); i++) {
		int e = decrypt("ctx", id, cipher, 64, wrong[i], NULL);

		if (e != KMS_E_DECRYPT_FAILED)
			fprintf(stderr, "\tcontext %s\n", wrong[i]);
		ASSERT_ERR(e, KMS_E_DECRYPT_FAILED);
	}
	/* No context at encryption: none at decryption, and {} / "" / null are none. */
	STEP(new_datakey("ctx", id, "", plain, c2));
	ASSERT_ERR(decrypt("ctx", id, c2, 64, "", NULL), 0);
	ASSERT_ERR(decrypt("ctx", id, c2, 64, ",\"encryption_context\":{}", NULL), 0);
	ASSERT_ERR(decrypt("ctx", id, c2, 64, ",\"encryption_context\":\"\"", NULL), 0);
	ASSERT_ERR(decrypt("ctx", id, c2, 64, ",\"encryption_context\":null", NULL), 0);
	ASSERT_ERR(decrypt("ctx", id, c2, 64, ",\"encryption_context\":{\"a\":\"1\"}", NULL),
		   KMS_E_DECRYPT_FAILED);
	/* Nested objects are canonical too. */
	STEP(new_datakey("ctx", id, ",\"encryption_context\":{\"x\":{\"b\":1,\"a\":2},\"y\":[1,2]}",
			 plain, c2));
	ASSERT_ERR(decrypt("ctx", id, c2, 64,
			   ",\"encryption_context\":{\"y\":[1,2],\"x\":{\"a\":2,\"b\":1}}", NULL),
		   0);
	ASSERT_ERR(decrypt("ctx", id, c2, 64,
			   ",\"encryption_context\":{\"y\":[2,1],\"x\":{\"a\":2,\"b\":1}}", NULL),
		   KMS_E_DECRYPT_FAILED);
}

TEST(context_binding_encrypt_datakey)
{
	char id[FX_ID_LEN], plain[2 * 96 + 1], cipher[HEX_MAX];
	cJSON *r = NULL;

	STEP(fx_key("ctx-ed", "app", id));
	dek_plain(64, 1, 2, plain);
	ASSERT_ERR(pcall("ctx-ed", "encrypt-datakey",
			 fx_fmt("{\"key_id\":\"%s\",\"plain_text\":\"%s\",\"datakey_plain_length\":"
				"\"64\",\"encryption_context\":{\"file\":\"a.pdf\"}}",
				id, plain),
			 &r),
		   0);
	snprintf(cipher, sizeof(cipher), "%s",
		 fx_str(r, "cipher_text") ? fx_str(r, "cipher_text") : "");
	ASSERT_ERR(decrypt("ctx-ed", id, cipher, 64, "", NULL), KMS_E_DECRYPT_FAILED);
	ASSERT_ERR(decrypt("ctx-ed", id, cipher, 64, ",\"encryption_context\":{\"file\":\"b.pdf\"}",
			   NULL),
		   KMS_E_DECRYPT_FAILED);
	ASSERT_ERR(decrypt("ctx-ed", id, cipher, 64, ",\"encryption_context\":{\"file\":\"a.pdf\"}",
			   &r),
		   0);
	ASSERT_TRUE(strncmp(fx_str(r, "data_key"), plain, 128) == 0);
}

TEST(context_invalid_0208)
{
	static const char *const bad[] = {
		"[]",	   "[\"a\",\"b\"]", "1",     "0",	 "true",  "false",
		"\"abc\"", "\"[1]\"",	    "\"1\"", "\"null\"", "\"{\"", "\"{\\\"a\\\":}\"",
	};
	char id[FX_ID_LEN];

	STEP(fx_key("ctx-bad", "app", id));
	STEP(fx_member_refuses(
		"ctx-bad", "create-datakey", id, "encryption_context", bad, KMS_ARRAY_SIZE(bad),
		KMS_E_BAD_CONTEXT,
		FX_ERROR_LINE("KMS.0208", "Invalid value of value encryption_context.")));
	/* Duplicate names inside the context are refused (as bad JSON or a bad context). */
	{
		int e = with_context("ctx-bad", id, "{\"a\":\"1\",\"a\":\"2\"}");

		ASSERT_TRUE(e == KMS_E_BAD_JSON || e == KMS_E_BAD_CONTEXT);
	}
	/* ... in every action that takes a context */
	ASSERT_ERR(pcall("ctx-bad", "create-datakey-without-plaintext",
			 fx_kid_with(id, "\"encryption_context\":[]"), NULL),
		   KMS_E_BAD_CONTEXT);
	ASSERT_ERR(pcall("ctx-bad", "encrypt-data",
			 fx_kid_with(id, "\"plain_text\":\"x\",\"encryption_context\":1"), NULL),
		   KMS_E_BAD_CONTEXT);
	ASSERT_ERR(pcall("ctx-bad", "decrypt-data",
			 "{\"cipher_text\":\"x\",\"encryption_context\":1}", NULL),
		   KMS_E_BAD_CONTEXT);
}

/* A string holding an object must hold exactly one: "{...} junk" is not that object. */
TEST(context_string_with_trailing_garbage_0208)
{
	static const char *const junk[] = {
		"\"{\\\"a\\\":\\\"1\\\"} junk\"",
		"\"{\\\"a\\\":\\\"1\\\"}{}\"",
	};
	char id[FX_ID_LEN];

	STEP(fx_key("ctx-junk", "app", id));
	fx_member_refuses("ctx-junk", "create-datakey", id, "encryption_context", junk,
			  KMS_ARRAY_SIZE(junk), KMS_E_BAD_CONTEXT, NULL);
}

TEST(context_length_limit)
{
	static char v[KMS_MAX_CONTEXT + 16];
	char id[FX_ID_LEN], plain[HEX_MAX], cipher[HEX_MAX];
	size_t n = KMS_MAX_CONTEXT - 8; /* {"a":"<n>"} is n + 8 characters */

	STEP(fx_key("ctx-len", "app", id));
	memset(v, 'v', n);
	v[n] = 0;
	STEP(new_datakey("ctx-len", id, fx_fmt(",\"encryption_context\":{\"a\":\"%s\"}", v), plain,
			 cipher));
	ASSERT_ERR(decrypt("ctx-len", id, cipher, 64,
			   fx_fmt(",\"encryption_context\":{\"a\":"
				  "\"%s\"}",
				  v),
			   NULL),
		   0);
	/* The same as a string: 8192 characters */
	ASSERT_ERR(decrypt("ctx-len", id, cipher, 64,
			   fx_fmt(",\"encryption_context\":\"{\\\"a\\\":\\\"%s\\\"}\"", v), NULL),
		   0);
	/* One more is too long, either way. */
	v[n] = 'v';
	v[n + 1] = 0;
	ASSERT_ERR(pcall("ctx-len", "create-datakey",
			 fx_fmt("{\"key_id\":\"%s\",\"encryption_context\":{\"a\":\"%s\"}}", id, v),
			 NULL),
		   KMS_E_BAD_CONTEXT);
	ASSERT_ERR(pcall("ctx-len", "create-datakey",
			 fx_fmt("{\"key_id\":\"%s\",\"encryption_context\":"
				"\"{\\\"a\\\":\\\"%s\\\"}\"}",
				id, v),
			 NULL),
		   KMS_E_BAD_CONTEXT);
}

/* A context value "v\u0000x" is not the context "v": the bytes after the NUL count. */
TEST(context_with_nul_not_truncated)
{
	char id[FX_ID_LEN], plain[HEX_MAX], cipher[HEX_MAX];
	int e;

	STEP(fx_key("ctx-nul", "app", id));
	e = with_context("ctx-nul", id, "{\"k\":\"v\\u0000x\"}");
	if (e != 0) {
		/* Refusing such a context outright is fine too. */
		ASSERT_TRUE(e == KMS_E_BAD_CONTEXT || e == KMS_E_BAD_JSON);
		return;
	}
	STEP(new_datakey("ctx-nul", id, ",\"encryption_context\":{\"k\":\"v\\u0000x\"}", plain,
			 cipher));
	ASSERT_ERR(
		decrypt("ctx-nul", id, cipher, 64, ",\"encryption_context\":{\"k\":\"v\"}", NULL),
		KMS_E_DECRYPT_FAILED);
}

/* Both forms of a context get the same checks, so one request text names one context: the
 * string form refuses \u0000 (else {"k":"a\u0000evil"} would be {"k":"a"}) and nesting deeper
 * than the object form may be. */
TEST(context_string_form_checks)
{
	static char deep[2 * 700 + 64];
	char id[FX_ID_LEN], plain[HEX_MAX], cipher[HEX_MAX];
	size_t n = 0;

	STEP(fx_key("ctx-sf", "app", id));
	STEP(new_datakey("ctx-sf", id, ",\"encryption_context\":{\"k\":\"a\"}", plain, cipher));
	ASSERT_ERR(decrypt("ctx-sf", id, cipher, 64,
			   ",\"encryption_context\":\"{\\\"k\\\":\\\"a\\\\u0000evil\\\"}\"", NULL),
		   KMS_E_BAD_CONTEXT);
	ASSERT_LAST_ERROR("KMS.0208", "Invalid value of value encryption_context.");
	ASSERT_ERR(with_context("ctx-sf", id, "\"{\\\"k\\\":\\\"a\\\\u0000evil\\\"}\""),
		   KMS_E_BAD_CONTEXT);
	/* An escaped backslash before "u0000" is no NUL: that context is fine. */
	ASSERT_ERR(with_context("ctx-sf", id, "\"{\\\"k\\\":\\\"a\\\\\\\\u0000\\\"}\""), 0);
	/* 600 levels in a string: refused, as they would be in the object form. */
	for (int i = 0; i < 599; i++)
		deep[n++] = '[';
	deep[n++] = '1';
	for (int i = 0; i < 599; i++)
		deep[n++] = ']';
	deep[n] = 0;
	ASSERT_ERR(pcall("ctx-sf", "create-datakey",
			 fx_fmt("{\"key_id\":\"%s\",\"encryption_context\":\"{\\\"a\\\":%s}\"}", id,
				deep),
			 NULL),
		   KMS_E_BAD_CONTEXT);
	/* The deepest context the object form takes is taken as a string too, and is the same. */
	{
		const char *obj = "{\"a\":[[[[[[[[[[[[[1]]]]]]]]]]]]]}"; /* 15 levels */

		STEP(new_datakey("ctx-sf", id, fx_fmt(",\"encryption_context\":%s", obj), plain,
				 cipher));
		ASSERT_ERR(decrypt("ctx-sf", id, cipher, 64,
				   ",\"encryption_context\":\"{\\\"a\\\":[[[[[[[[[[[[[1]]]]]]]]]]]]"
				   "]}\"",
				   NULL),
			   0);
		ASSERT_ERR(with_context("ctx-sf", id, "{\"a\":[[[[[[[[[[[[[[1]]]]]]]]]]]]]]}"),
			   KMS_E_BAD_JSON);
		ASSERT_ERR(
			with_context("ctx-sf", id, "\"{\\\"a\\\":[[[[[[[[[[[[[[1]]]]]]]]]]]]]]}\""),
			KMS_E_BAD_CONTEXT);
	}
}

/* Numbers that are not finite would print as null: {"n":1e999} is refused in both forms, never
 * the context {"n":null}. */
TEST(context_non_finite_numbers_0208)
{
	static const char *const bad[] = {
		"{\"n\":1e999}",     "{\"n\":-1e999}",	      "{\"x\":{\"n\":1e400}}",
		"{\"n\":[1,1e999]}", "\"{\\\"n\\\":1e999}\"", "\"{\\\"n\\\":[-1e999]}\"",
	};
	char id[FX_ID_LEN], plain[HEX_MAX], cipher[HEX_MAX];

	STEP(fx_key("ctx-inf", "app", id));
	for (size_t i = 0; i < KMS_ARRAY_SIZE(bad); i++) {
		EXPECT(bad[i],
		       pcall("ctx-inf", "create-datakey",
			     fx_fmt("{\"key_id\":\"%s\",\"encryption_context\":%s}", id, bad[i]),
			     NULL),
		       KMS_E_BAD_CONTEXT);
		EXPECT(bad[i],
		       pcall("ctx-inf", "encrypt-data",
			     fx_fmt("{\"key_id\":\"%s\",\"plain_text\":\"x\","
				    "\"encryption_context\":%s}",
				    id, bad[i]),
			     NULL),
		       KMS_E_BAD_CONTEXT);
	}
	STEP(new_datakey("ctx-inf", id, ",\"encryption_context\":{\"n\":null}", plain, cipher));
	ASSERT_ERR(
		decrypt("ctx-inf", id, cipher, 64, ",\"encryption_context\":{\"n\":1e999}", NULL),
		KMS_E_BAD_CONTEXT);
	ASSERT_ERR(decrypt("ctx-inf", id, cipher, 64, ",\"encryption_context\":{\"n\":null}", NULL),
		   0);
	/* Large finite numbers are fine. */
	STEP(new_datakey("ctx-inf", id, ",\"encryption_context\":{\"n\":1e308}", plain, cipher));
	ASSERT_ERR(decrypt("ctx-inf", id, cipher, 64, ",\"encryption_context\":{\"n\":null}", NULL),
		   KMS_E_DECRYPT_FAILED);
}

/* ---- key states (6.2: crypto needs state 2) ---- */

TEST(key_states_0209_0210)
{
	char id[FX_ID_LEN], plain[HEX_MAX], cipher[HEX_MAX], good[2 * 96 + 1];
	cJSON *r = NULL;

	STEP(fx_key("state", "app", id));
	STEP(new_datakey("state", id, "", plain, cipher));
	dek_plain(64, 1, 1, good);
	ASSERT_ERR(pcall("state", "disable-key", fx_fmt("{\"key_id\":\"%s\"}", id), NULL), 0);
	ASSERT_ERR(pcall("state", "create-datakey", fx_fmt("{\"key_id\":\"%s\"}", id), NULL),
		   KMS_E_KEY_DISABLED);
	ASSERT_LAST_ERROR("KMS.0209", "The key has been disabled.");
	ASSERT_ERR(pcall("state", "create-datakey-without-plaintext",
			 fx_fmt("{\"key_id\":\"%s\"}", id), NULL),
		   KMS_E_KEY_DISABLED);
	ASSERT_ERR(wrap("state", id, good, "\"64\""), KMS_E_KEY_DISABLED);
	ASSERT_ERR(decrypt("state", id, cipher, 64, "", NULL), KMS_E_KEY_DISABLED);
	ASSERT_ERR(pcall("state", "encrypt-data", fx_kid_with(id, "\"plain_text\":\"x\""), NULL),
		   KMS_E_KEY_DISABLED);
	ASSERT_ERR(pcall("state", "describe-key", fx_fmt("{\"key_id\":\"%s\"}", id), &r), 0);
	ASSERT_STREQ(fx_str(r, "key_info.key_state"), "3");
	ASSERT_ERR(pcall("state", "schedule-key-deletion",
			 fx_kid_with(id, "\"pending_days\":\"7\""), NULL),
		   0);
	ASSERT_ERR(pcall("state", "create-datakey", fx_fmt("{\"key_id\":\"%s\"}", id), NULL),
		   KMS_E_KEY_PENDING_DELETION);
	ASSERT_LAST_ERROR("KMS.0210", "The key is in Scheduled deletion state and cannot be used.");
	ASSERT_ERR(decrypt("state", id, cipher, 64, "", NULL), KMS_E_KEY_PENDING_DELETION);
	ASSERT_ERR(pcall("state", "cancel-key-deletion", fx_fmt("{\"key_id\":\"%s\"}", id), NULL),
		   0);
	ASSERT_ERR(pcall("state", "enable-key", fx_fmt("{\"key_id\":\"%s\"}", id), NULL), 0);
	ASSERT_ERR(decrypt("state", id, cipher, 64, "", &r), 0);
	ASSERT_STREQ(fx_str(r, "data_key"), plain);
}

/* ---- gen-random (3.7) ---- */

TEST(gen_random)
{
	static const struct {
		const char *value;
		size_t bytes;
	} v[] = { { "\"512\"", 64 },	{ "512", 64 },	   { "\"8\"", 1 },
		  { "\"8192\"", 1024 }, { "\"256\"", 32 }, { "1024.0", 128 } };
	char a[2 * 64 + 1];
	cJSON *r = NULL;

	for (size_t i = 0; i < KMS_ARRAY_SIZE(v); i++) {
		ASSERT_ERR(pcall("rnd", "gen-random",
				 fx_fmt("{\"random_data_length\":%s}", v[i].value), &r),
			   0);
		ASSERT_EQ(cJSON_GetArraySize(r), 1);
		ASSERT_TRUE(fx_upper_hex(fx_str(r, "random_data"), 2 * v[i].bytes));
	}
	ASSERT_ERR(pcall("rnd", "gen-random", "{\"random_data_length\":\"512\"}", &r), 0);
	snprintf(a, sizeof(a), "%s", fx_str(r, "random_data"));
	ASSERT_ERR(pcall("rnd", "gen-random", "{\"random_data_length\":\"512\"}", &r), 0);
	ASSERT_FALSE(strcmp(a, fx_str(r, "random_data")) == 0);
}

TEST(gen_random_errors)
{
	static const char *const range[] = { "\"0\"",	"\"7\"", "\"8200\"", "\"8193\"",
					     "\"abc\"", "\"\"",	 "\"-8\"",   "-8",
					     "0",	"true",	 "\"1e3\"",  "[8]" };
	static const char *const multiple[] = { "\"9\"", "\"513\"", "\"8191\"", "12" };

	ASSERT_ERR(pcall("rnd-err", "gen-random", "{}", NULL), KMS_E_MISSING);
	ASSERT_ERR(pcall("rnd-err", "gen-random", "{\"random_data_length\":null}", NULL),
		   KMS_E_MISSING);
	for (size_t i = 0; i < KMS_ARRAY_SIZE(range); i++) {
		int e = pcall("rnd-err", "gen-random",
			      fx_fmt("{\"random_data_length\":%s}", range[i]), NULL);

		if (e != KMS_E_RANDOM_LENGTH)
			fprintf(stderr, "\trandom_data_length %s\n", range[i]);
		ASSERT_ERR(e, KMS_E_RANDOM_LENGTH);
	}
	ASSERT_LAST_ERROR("KMS.1801", "random_data_length must be 512 bits.");
	for (size_t i = 0; i < KMS_ARRAY_SIZE(multiple); i++)
		ASSERT_ERR(pcall("rnd-err", "gen-random",
				 fx_fmt("{\"random_data_length\":%s}", multiple[i]), NULL),
			   KMS_E_RANDOM_MULTIPLE);
	ASSERT_LAST_ERROR("KMS.1802", "random_data_length must be a multiple of 8.");
	ASSERT_ERR(pcall("rnd-err", "gen-random",
			 "{\"random_data_length\":\"512\",\"sequence\":\"short\"}", NULL),
		   KMS_E_BAD_SEQUENCE);
	/* No key folder form. */
	ASSERT_ERR(call("rnd-err", "gen-random", API_SCOPE_KEY, FX_NO_KEY,
			"{\"random_data_length\":\"512\"}", NULL),
		   KMS_E_BAD_URL);
}
