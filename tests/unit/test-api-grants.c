/* test-api-grants.c - grants (kms-api.md section 4.10, 7.4): create-grant (KMS.2401, KMS.2402,
 * KMS.2404), list-grants and list-retirable-grants (fields, paging, KMS.1601, KMS.1602),
 * revoke-grant and retire-grant (KMS.2501, KMS.2502, who may retire), and their enforcement
 * (docs/access-control.md, Grants): a grantee whose role alone does not allow an
 * action may call exactly the granted operations on exactly that key, and nothing else.
 *
 * Callers with a role are built from struct auth_claims directly (as api_call() gets them from a
 * verified token or a binding); trusted callers (kmsctl) act as the user "kmsctl"
 * (AUTH_USER_HOST_ADMIN), a name no token may carry.
 */
#include "kms_test_api.h"
#include "common/kms_time.h"

#define HEX_MAX	 (2 * CORE_BLOB_MAX + 1)
#define NO_GRANT "0000000000000000000000000000000000000000000000000000000000000001"

/* The create-grant request for key: grantee, ops (the members of "operations") and extra (more
 * members, each after a comma, or ""). */
static const char *grant_req(const char *key, const char *grantee, const char *ops,
			     const char *extra)
{
	return fx_fmt("{\"key_id\":\"%s\",\"grantee_principal\":\"%s\",\"operations\":[%s]%s}", key,
		      grantee, ops, extra);
}

/* The request of revoke-grant and retire-grant for grant g of key. */
static const char *key_grant(const char *key, const char *g)
{
	return fx_fmt("{\"key_id\":\"%s\",\"grant_id\":\"%s\"}", key, g);
}

/* create-grant by the trusted admin: the grant id goes to out (65 bytes). */
static void grant(const char *project, const char *key, const char *grantee, const char *ops,
		  const char *extra, char out[65])
{
	cJSON *r = NULL;

	out[0] = 0;
	ASSERT_ERR(pcall(project, "create-grant", grant_req(key, grantee, ops, extra), &r), 0);
	fx_cp(out, 65, fx_str(r, "grant_id"));
}

/* retire-grant of grant g of key by user with role: what api_call() returns. */
static int retire(const char *project, const char *user, enum kms_role role, const char *key,
		  const char *g)
{
	return ucall(project, user, role, "retire-grant", NULL, key_grant(key, g), NULL);
}

static bool lower_hex64(const char *s)
{
	if (!s || strlen(s) != 64)
		return false;
	for (size_t i = 0; i < 64; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

static double grant_total(const char *project, const char *key)
{
	cJSON *r = NULL;

	if (pcall(project, "list-grants", fx_kid(key), &r) != 0)
		return -1;
	return fx_num(r, "total");
}

/* ---- create-grant and list-grants (4.10) ---- */

TEST(create_grant_and_list_fields)
{
	char id[FX_ID_LEN], g[65];
	cJSON *r = NULL;
	const cJSON *e;
	int64_t before, after, created;

	STEP(fx_key("cg", "app", id));
	before = kms_time_real_ms();
	ASSERT_ERR(pcall("cg", "create-grant",
			 fx_kid_with(id, "\"grantee_principal\":\"bob\","
					 "\"operations\":[\"decrypt-datakey\",\"describe-key\"],"
					 "\"name\":\"bob-unwraps\""),
			 &r),
		   0);
	after = kms_time_real_ms();
	/* {"grant_id": 64 hex} and nothing else. */
	ASSERT_EQ(cJSON_GetArraySize(r), 1);
	ASSERT_TRUE(lower_hex64(fx_str(r, "grant_id")));
	fx_cp(g, sizeof(g), fx_str(r, "grant_id"));

	ASSERT_ERR(pcall("cg", "list-grants", fx_kid(id), &r), 0);
	ASSERT_EQ(fx_num(r, "total"), 1);
	STEP(fx_page_ends(r, "false", ""));
	ASSERT_EQ(cJSON_GetArraySize(fx_get(r, "grants")), 1);
	e = cJSON_GetArrayItem(fx_get(r, "grants"), 0);
	ASSERT_EQ(cJSON_GetArraySize(e), 9);
	ASSERT_STREQ(fx_str(e, "key_id"), id);
	ASSERT_STREQ(fx_str(e, "grant_id"), g);
	ASSERT_STREQ(fx_str(e, "grantee_principal"), "bob");
	ASSERT_STREQ(fx_str(e, "grantee_principal_type"), "user");
	ASSERT_STREQ(fx_str(e, "issuing_principal"), AUTH_USER_HOST_ADMIN);
	ASSERT_STREQ(fx_str(e, "name"), "bob-unwraps");
	ASSERT_STREQ(fx_str(e, "retiring_principal"), "");
	ASSERT_EQ(cJSON_GetArraySize(fx_get(e, "operations")), 2);
	ASSERT_STREQ(cJSON_GetArrayItem(fx_get(e, "operations"), 0)->valuestring,
		     "decrypt-datakey");
	ASSERT_STREQ(cJSON_GetArrayItem(fx_get(e, "operations"), 1)->valuestring, "describe-key");
	/* creation_date: a string of milliseconds (the API's example has 13 digits). */
	ASSERT_EQ(strlen(fx_str(e, "creation_date")), 13);
	created = strtoll(fx_str(e, "creation_date"), NULL, 10);
	ASSERT_LE(before, created);
	ASSERT_LE(created, after);
	/* The same through the key folder; the grant id is unique. */
	ASSERT_ERR(call("cg", "list-grants", API_SCOPE_KEY, id, "", &r), 0);
	ASSERT_STREQ(fx_str(cJSON_GetArrayItem(fx_get(r, "grants"), 0), "grant_id"), g);
	ASSERT_ERR(call("cg", "create-grant", API_SCOPE_KEY, id,
			"{\"grantee_principal\":\"bob\",\"operations\":[\"decrypt-datakey\"]}", &r),
		   0);
	ASSERT_TRUE(lower_hex64(fx_str(r, "grant_id")));
	ASSERT_FALSE(strcmp(fx_str(r, "grant_id"), g) == 0);
	ASSERT_EQ(grant_total("cg", id), 2);
}

TEST(create_grant_optional_fields)
{
	static const char *const all_ops =
		"\"create-datakey\",\"create-datakey-without-plaintext\",\"encrypt-datakey\","
		"\"decrypt-datakey\",\"describe-key\",\"create-grant\",\"retire-grant\","
		"\"encrypt-data\",\"decrypt-data\"";
	char id[FX_ID_LEN], g[65];
	cJSON *r = NULL;
	const cJSON *e, *ops;

	STEP(fx_key("cgo", "app", id));
	STEP(grant("cgo", id, "Carol9", all_ops,
		   ",\"name\":\"a:b/c_d-e\",\"retiring_principal\":\"Dave1\","
		   "\"grantee_principal_type\":\"domain\",\"sequence\":"
		   "\"919c82d4-8046-4722-9094-35c3c6524cff\"",
		   g));
	ASSERT_ERR(pcall("cgo", "list-grants", fx_kid(id), &r), 0);
	e = cJSON_GetArrayItem(fx_get(r, "grants"), 0);
	ASSERT_STREQ(fx_str(e, "grant_id"), g);
	ASSERT_STREQ(fx_str(e, "grantee_principal"), "Carol9");
	ASSERT_STREQ(fx_str(e, "grantee_principal_type"), "domain");
	ASSERT_STREQ(fx_str(e, "name"), "a:b/c_d-e");
	ASSERT_STREQ(fx_str(e, "retiring_principal"), "Dave1");
	ops = fx_get(e, "operations");
	ASSERT_EQ(cJSON_GetArraySize(ops), 9);
	ASSERT_STREQ(cJSON_GetArrayItem(ops, 0)->valuestring, "create-datakey");
	ASSERT_STREQ(cJSON_GetArrayItem(ops, 8)->valuestring, "decrypt-data");
	/* Repeated operations are kept once; create-grant with another operation is fine; a
	 * 64-character principal is allowed; type "user" explicitly. */
	STEP(grant("cgo", id, "b0b", "\"describe-key\",\"describe-key\",\"create-grant\"",
		   ",\"grantee_principal_type\":\"user\"", g));
	ASSERT_ERR(pcall("cgo", "list-grants", fx_kid(id), &r), 0);
	e = cJSON_GetArrayItem(fx_get(r, "grants"), 1);
	ASSERT_STREQ(fx_str(e, "grant_id"), g);
	ops = fx_get(e, "operations");
	ASSERT_EQ(cJSON_GetArraySize(ops), 2);
	ASSERT_STREQ(cJSON_GetArrayItem(ops, 0)->valuestring, "describe-key");
	ASSERT_STREQ(cJSON_GetArrayItem(ops, 1)->valuestring, "create-grant");
	{
		char p64[65];

		memset(p64, 'p', 64);
		p64[64] = 0;
		STEP(grant("cgo", id, p64, "\"describe-key\"", "", g));
	}
	/* A disabled key can be granted (only state 4 refuses). */
	ASSERT_ERR(pcall("cgo", "disable-key", fx_kid(id), NULL), 0);
	STEP(grant("cgo", id, "eve", "\"describe-key\"", "", g));
	ASSERT_EQ(grant_total("cgo", id), 4);
}

TEST(create_grant_errors)
{
	static const char *const bad_grantee[] = {
		"\"\"", "\"bad-name\"", "\"bo b\"",  "\"bob.x\"", "\"b\\u00f6b\"",
		"5",	"true",		"[\"bob\"]",
	};
	static const char *const bad_ops[] = {
		"[]",
		"\"decrypt-datakey\"",
		"[\"enable-key\"]",
		"[\"list-keys\"]",
		"[\"Decrypt-Datakey\"]",
		"[\"decrypt-datakey\",5]",
		"[\"decrypt-datakey\",\"\"]",
		"{}",
		"[\"gen-random\"]",
		"[\"revoke-grant\"]",
	};
	/* Other members after a valid grantee and operations. */
	static const char *const bad_extra[] = {
		",\"name\":\"a b\"",
		",\"name\":\"\"",
		",\"name\":7",
		",\"retiring_principal\":\"a-b\"",
		",\"retiring_principal\":\"\"",
		",\"grantee_principal_type\":\"group\"",
		",\"grantee_principal_type\":\"User\"",
	};
	char id[FX_ID_LEN], p65[66], n256[257];
	const char *ok = "\"grantee_principal\":\"bob\",\"operations\":[\"describe-key\"]";

	STEP(fx_key("cge", "app", id));
	/* KMS.2401: create-grant is not enough by itself. */
	ASSERT_ERR(pcall("cge", "create-grant", grant_req(id, "bob", "\"create-grant\"", ""), NULL),
		   KMS_E_GRANT_OPERATIONS);
	ASSERT_LAST_ERROR("KMS.2401", "Specify an operation in addition to create-grant.");
	ASSERT_ERR(pcall("cge", "create-grant",
			 grant_req(id, "bob", "\"create-grant\",\"create-grant\"", ""), NULL),
		   KMS_E_GRANT_OPERATIONS);
	/* KMS.2402: grantee 1..64 of [A-Za-z0-9]. */
	memset(p65, 'p', 65);
	p65[65] = 0;
	ASSERT_ERR(pcall("cge", "create-grant", grant_req(id, p65, "\"describe-key\"", ""), NULL),
		   KMS_E_GRANT_USER);
	for (size_t i = 0; i < KMS_ARRAY_SIZE(bad_grantee); i++)
		EXPECT(bad_grantee[i],
		       pcall("cge", "create-grant",
			     fx_fmt("{\"key_id\":\"%s\",\"grantee_principal\":%s,"
				    "\"operations\":[\"describe-key\"]}",
				    id, bad_grantee[i]),
			     NULL),
		       KMS_E_GRANT_USER);
	ASSERT_LAST_ERROR("KMS.2402", "Invalid user ID.");
	/* Other fields: KMS.0308 (the API names no code for them). */
	for (size_t i = 0; i < KMS_ARRAY_SIZE(bad_ops); i++)
		EXPECT(bad_ops[i],
		       pcall("cge", "create-grant",
			     fx_fmt("{\"key_id\":\"%s\",\"grantee_principal\":\"bob\","
				    "\"operations\":%s}",
				    id, bad_ops[i]),
			     NULL),
		       KMS_E_BAD_PARAM);
	memset(n256, 'n', 256);
	n256[256] = 0;
	EXPECT("name",
	       pcall("cge", "create-grant",
		     fx_fmt("{\"key_id\":\"%s\",%s,\"name\":\"%s\"}", id, ok, n256), NULL),
	       KMS_E_BAD_PARAM);
	for (size_t i = 0; i < KMS_ARRAY_SIZE(bad_extra); i++)
		EXPECT(bad_extra[i],
		       pcall("cge", "create-grant",
			     fx_fmt("{\"key_id\":\"%s\",%s%s}", id, ok, bad_extra[i]), NULL),
		       KMS_E_BAD_PARAM);
	/* Missing fields: KMS.0204. */
	EXPECT("no grantee",
	       pcall("cge", "create-grant", fx_kid_with(id, "\"operations\":[\"describe-key\"]"),
		     NULL),
	       KMS_E_MISSING);
	EXPECT("no operations",
	       pcall("cge", "create-grant", fx_kid_with(id, "\"grantee_principal\":\"bob\""), NULL),
	       KMS_E_MISSING);
	EXPECT("no key", pcall("cge", "create-grant", fx_fmt("{%s}", ok), NULL), KMS_E_MISSING);
	/* The key: 0205, 0207, sequence 0206, another key in a key folder 0205. */
	EXPECT("bad key", pcall("cge", "create-grant", fx_fmt("{\"key_id\":\"x\",%s}", ok), NULL),
	       KMS_E_BAD_KEY_ID);
	EXPECT("no such key",
	       pcall("cge", "create-grant", fx_fmt("{\"key_id\":\"%s\",%s}", FX_NO_KEY, ok), NULL),
	       KMS_E_KEY_NOT_FOUND);
	EXPECT("sequence",
	       pcall("cge", "create-grant",
		     fx_fmt("{\"key_id\":\"%s\",%s,\"sequence\":\"s\"}", id, ok), NULL),
	       KMS_E_BAD_SEQUENCE);
	EXPECT("folder",
	       call("cge", "create-grant", API_SCOPE_KEY, id,
		    fx_fmt("{\"key_id\":\"%s\",%s}", FX_NO_KEY, ok), NULL),
	       KMS_E_BAD_KEY_ID);
	ASSERT_EQ(grant_total("cge", id), 0);
	/* A key pending deletion cannot be granted (docs/api-differences.md, States). */
	ASSERT_ERR(pcall("cge", "schedule-key-deletion", fx_kid_with(id, "\"pending_days\":\"7\""),
			 NULL),
		   0);
	EXPECT("pending",
	       pcall("cge", "create-grant", fx_fmt("{\"key_id\":\"%s\",%s}", id, ok), NULL),
	       KMS_E_KEY_PENDING_DELETION);
	ASSERT_EQ(grant_total("cge", id), 0);
}

/* KMS.2404: at most 100 grants per key (the grant_per_CMK quota); user-quotas reports the most
 * grants on one key. */
TEST(create_grant_limit_2404)
{
	char id[FX_ID_LEN], other[FX_ID_LEN], g[65];
	cJSON *r = NULL;

	STEP(fx_key("cgl", "full", id));
	STEP(fx_key("cgl", "other", other));
	for (int i = 0; i < 100; i++) {
		STEP(grant("cgl", id, fx_fmt("user%d", i), "\"describe-key\"", "", g));
	}
	ASSERT_ERR(
		pcall("cgl", "create-grant", grant_req(id, "late", "\"describe-key\"", ""), NULL),
		KMS_E_TOO_MANY_GRANTS);
	ASSERT_LAST_ERROR("KMS.2404", "Too many CMK grants.");
	ASSERT_EQ(grant_total("cgl", id), 100);
	STEP(grant("cgl", other, "late", "\"describe-key\"", "", g));
	ASSERT_ERR(pcall("cgl", "user-quotas", "", &r), 0);
	ASSERT_STREQ(fx_last(), "{\"quotas\":{\"resources\":[{\"type\":\"CMK\",\"used\":2,"
				"\"quota\":100},{\"type\":\"grant_per_CMK\",\"used\":100,"
				"\"quota\":100}]}}\n");
	/* Revoking one makes room for one. */
	ASSERT_ERR(pcall("cgl", "list-grants", fx_kid_with(id, "\"limit\":\"1\""), &r), 0);
	fx_cp(g, sizeof(g), fx_str(cJSON_GetArrayItem(fx_get(r, "grants"), 0), "grant_id"));
	ASSERT_ERR(pcall("cgl", "revoke-grant", key_grant(id, g), NULL), 0);
	STEP(grant("cgl", id, "late", "\"describe-key\"", "", g));
	ASSERT_EQ(grant_total("cgl", id), 100);
}

TEST(list_grants_paging_and_errors)
{
	char id[FX_ID_LEN], other[FX_ID_LEN], g[5][65], og[65];
	cJSON *r = NULL;
	static const char *const bad_limit[] = { "\"0\"", "\"1001\"", "\"abc\"", "\"-1\"",
						 "0",	  "\"\"",     "true" };
	static const char *const bad_marker[] = { "\"-1\"", "\"abc\"", "-1", "\"\"", "1.5" };

	STEP(fx_key("lg", "app", id));
	STEP(fx_key("lg", "other", other));
	for (int i = 0; i < 5; i++) {
		STEP(grant("lg", id, fx_fmt("u%d", i), "\"describe-key\"", "", g[i]));
	}
	STEP(grant("lg", other, "x", "\"describe-key\"", "", og));
	/* Pages of 2 in creation order: markers "2", "4", then "". */
	for (int page = 0; page < 3; page++) {
		const cJSON *gs;

		ASSERT_ERR(pcall("lg", "list-grants",
				 fx_fmt("{\"key_id\":\"%s\",\"limit\":\"2\",\"marker\":\"%d\"}", id,
					2 * page),
				 &r),
			   0);
		gs = fx_get(r, "grants");
		ASSERT_EQ(fx_num(r, "total"), 5);
		ASSERT_EQ(cJSON_GetArraySize(gs), page < 2 ? 2 : 1);
		for (int j = 0; j < cJSON_GetArraySize(gs); j++)
			ASSERT_STREQ(fx_str(cJSON_GetArrayItem(gs, j), "grant_id"),
				     g[2 * page + j]);
		STEP(fx_page_ends(r, page < 2 ? "true" : "false",
				  page < 2 ? fx_fmt("%d", 2 * page + 2) : ""));
	}
	/* Numbers as JSON integers too; a marker past the end: empty page. */
	ASSERT_ERR(pcall("lg", "list-grants", fx_kid_with(id, "\"limit\":1000,\"marker\":4"), &r),
		   0);
	ASSERT_EQ(cJSON_GetArraySize(fx_get(r, "grants")), 1);
	ASSERT_ERR(pcall("lg", "list-grants", fx_kid_with(id, "\"marker\":\"9\""), &r), 0);
	ASSERT_EQ(cJSON_GetArraySize(fx_get(r, "grants")), 0);
	ASSERT_EQ(fx_num(r, "total"), 5);
	ASSERT_STREQ(fx_str(r, "truncated"), "false");
	/* Only the grants of the key asked for. */
	ASSERT_ERR(pcall("lg", "list-grants", fx_kid(other), &r), 0);
	ASSERT_EQ(fx_num(r, "total"), 1);
	ASSERT_STREQ(fx_str(cJSON_GetArrayItem(fx_get(r, "grants"), 0), "grant_id"), og);
	STEP(fx_member_refuses("lg", "list-grants", id, "limit", bad_limit,
			       KMS_ARRAY_SIZE(bad_limit), KMS_E_LIMIT_INVALID,
			       FX_ERROR_LINE("KMS.1601", "Invalid limit.")));
	STEP(fx_member_refuses(
		"lg", "list-grants", id, "marker", bad_marker, KMS_ARRAY_SIZE(bad_marker),
		KMS_E_MARKER_INVALID,
		FX_ERROR_LINE("KMS.1602", "marker must be greater than or equals 0.")));
	ASSERT_ERR(pcall("lg", "list-grants", "{}", NULL), KMS_E_MISSING);
	ASSERT_ERR(pcall("lg", "list-grants", fx_kid(FX_NO_KEY), NULL), KMS_E_KEY_NOT_FOUND);
	ASSERT_ERR(pcall("lg", "list-grants", "{\"key_id\":\"bad\"}", NULL), KMS_E_BAD_KEY_ID);
	ASSERT_ERR(pcall("lg", "list-grants", fx_kid_with(id, "\"sequence\":\"s\""), NULL),
		   KMS_E_BAD_SEQUENCE);
	/* A viewer may list (docs/using.md, Actions). */
	ASSERT_ERR(ucall("lg", "vic", KMS_ROLE_VIEWER, "list-grants", NULL, fx_kid(id), &r), 0);
	ASSERT_EQ(fx_num(r, "total"), 5);
	ASSERT_ERR(ucall("lg", "vic", KMS_ROLE_NONE, "list-grants", NULL, fx_kid(id), &r),
		   KMS_E_FORBIDDEN);
}

TEST(list_retirable_grants)
{
	char a[FX_ID_LEN], b[FX_ID_LEN], g1[65], g2[65], g3[65], g4[65];
	cJSON *r = NULL;
	const cJSON *e;

	STEP(fx_key("lrg", "a", a));
	STEP(fx_key("lrg", "b", b));
	STEP(grant("lrg", a, "dave", "\"encrypt-datakey\"", ",\"retiring_principal\":\"carol\"",
		   g1));
	STEP(grant("lrg", b, "erin", "\"decrypt-datakey\"", ",\"retiring_principal\":\"carol\"",
		   g2));
	STEP(grant("lrg", a, "carol", "\"decrypt-datakey\"", "", g3));
	STEP(grant("lrg", b, "dave", "\"describe-key\"", ",\"retiring_principal\":\"kmsctl\"", g4));
	/* carol: the grants whose retiring principal she is, over all keys, in order. */
	ASSERT_ERR(ucall("lrg", "carol", KMS_ROLE_VIEWER, "list-retirable-grants", NULL, "", &r),
		   0);
	ASSERT_EQ(fx_num(r, "total"), 2);
	STEP(fx_page_ends(r, "false", ""));
	e = cJSON_GetArrayItem(fx_get(r, "grants"), 0);
	ASSERT_STREQ(fx_str(e, "grant_id"), g1);
	ASSERT_STREQ(fx_str(e, "key_id"), a);
	ASSERT_STREQ(fx_str(e, "grantee_principal"), "dave");
	ASSERT_STREQ(fx_str(e, "retiring_principal"), "carol");
	ASSERT_STREQ(fx_str(e, "issuing_principal"), AUTH_USER_HOST_ADMIN);
	ASSERT_STREQ(fx_str(cJSON_GetArrayItem(fx_get(r, "grants"), 1), "grant_id"), g2);
	ASSERT_ERR(ucall("lrg", "carol", KMS_ROLE_VIEWER, "list-retirable-grants", NULL,
			 "{\"limit\":\"1\"}", &r),
		   0);
	ASSERT_EQ(cJSON_GetArraySize(fx_get(r, "grants")), 1);
	STEP(fx_page_ends(r, "true", "1"));
	ASSERT_ERR(ucall("lrg", "carol", KMS_ROLE_VIEWER, "list-retirable-grants", NULL,
			 "{\"limit\":\"1\",\"marker\":\"1\"}", &r),
		   0);
	ASSERT_STREQ(fx_str(cJSON_GetArrayItem(fx_get(r, "grants"), 0), "grant_id"), g2);
	ASSERT_STREQ(fx_str(r, "truncated"), "false");
	/* dave and erin are grantees, not retiring principals. */
	ASSERT_ERR(ucall("lrg", "dave", KMS_ROLE_CRYPTO, "list-retirable-grants", NULL, "{}", &r),
		   0);
	ASSERT_STREQ(fx_last(), "{\"grants\":[],\"next_marker\":\"\",\"truncated\":\"false\","
				"\"total\":0}\n");
	/* The trusted administrator is "kmsctl". */
	ASSERT_ERR(pcall("lrg", "list-retirable-grants", "", &r), 0);
	ASSERT_EQ(fx_num(r, "total"), 1);
	ASSERT_STREQ(fx_str(cJSON_GetArrayItem(fx_get(r, "grants"), 0), "grant_id"), g4);
	/* Another project's grants are not listed. */
	ASSERT_ERR(ucall("lrg2", "carol", KMS_ROLE_VIEWER, "list-retirable-grants", NULL, "", &r),
		   0);
	ASSERT_EQ(fx_num(r, "total"), 0);
	ASSERT_ERR(pcall("lrg", "list-retirable-grants", "{\"limit\":\"0\"}", NULL),
		   KMS_E_LIMIT_INVALID);
	ASSERT_ERR(pcall("lrg", "list-retirable-grants", "{\"marker\":\"-1\"}", NULL),
		   KMS_E_MARKER_INVALID);
	ASSERT_ERR(pcall("lrg", "list-retirable-grants", "{\"sequence\":\"s\"}", NULL),
		   KMS_E_BAD_SEQUENCE);
	/* Project scope only. */
	ASSERT_ERR(call("lrg", "list-retirable-grants", API_SCOPE_KEY, a, "", NULL), KMS_E_BAD_URL);
}

/* ---- revoke-grant, retire-grant ---- */

TEST(revoke_grant)
{
	static const char *const bad_ids[] = {
		"\"xyz\"",
		"\"\"",
		"5",
		/* 63 and 65 hex digits, a non-hex digit */
		"\"000000000000000000000000000000000000000000000000000000000000001\"",
		"\"00000000000000000000000000000000000000000000000000000000000000011\"",
		"\"g000000000000000000000000000000000000000000000000000000000000001\"",
		"\"" NO_GRANT "\"",
	};
	char id[FX_ID_LEN], other[FX_ID_LEN], g[65], g2[65], upper[65];
	cJSON *r = NULL;

	STEP(fx_key("rv", "app", id));
	STEP(fx_key("rv", "other", other));
	STEP(grant("rv", id, "bob", "\"describe-key\"", "", g));
	STEP(grant("rv", id, "bob", "\"encrypt-data\"", "", g2));
	STEP(fx_member_refuses("rv", "revoke-grant", id, "grant_id", bad_ids,
			       KMS_ARRAY_SIZE(bad_ids), KMS_E_GRANT_ID,
			       FX_ERROR_LINE("KMS.2501", "Invalid grant ID.")));
	ASSERT_ERR(pcall("rv", "revoke-grant", fx_kid(id), NULL), KMS_E_MISSING);
	/* The grant of another key: KMS.2502, and it stays. */
	ASSERT_ERR(pcall("rv", "revoke-grant", key_grant(other, g), NULL),
		   KMS_E_GRANT_KEY_MISMATCH);
	ASSERT_LAST_ERROR("KMS.2502", "grant_id and key_id do not match.");
	ASSERT_ERR(call("rv", "revoke-grant", API_SCOPE_KEY, other,
			fx_fmt("{\"grant_id\":\"%s\"}", g), NULL),
		   KMS_E_GRANT_KEY_MISMATCH);
	ASSERT_EQ(grant_total("rv", id), 2);
	/* Revoked: reply {}, gone; a second revoke is KMS.2501. Upper-case hex names it too. */
	ASSERT_ERR(pcall("rv", "revoke-grant", key_grant(id, g), NULL), 0);
	ASSERT_STREQ(fx_last(), "{}\n");
	ASSERT_EQ(grant_total("rv", id), 1);
	ASSERT_ERR(pcall("rv", "revoke-grant", key_grant(id, g), NULL), KMS_E_GRANT_ID);
	ASSERT_ERR(
		pcall("rv", "revoke-grant",
		      fx_fmt("{\"key_id\":\"%s\",\"grant_id\":\"%s\",\"sequence\":\"s\"}", id, g2),
		      NULL),
		KMS_E_BAD_SEQUENCE);
	ASSERT_ERR(
		pcall("rv", "retire-grant",
		      fx_fmt("{\"key_id\":\"%s\",\"grant_id\":\"%s\",\"sequence\":\"s\"}", id, g2),
		      NULL),
		KMS_E_BAD_SEQUENCE);
	ASSERT_EQ(grant_total("rv", id), 1);
	for (size_t i = 0; i < 65; i++)
		upper[i] = (char)(g2[i] >= 'a' && g2[i] <= 'f' ? g2[i] - 'a' + 'A' : g2[i]);
	ASSERT_ERR(call("rv", "revoke-grant", API_SCOPE_KEY, id,
			fx_fmt("{\"grant_id\":\"%s\"}", upper), &r),
		   0);
	ASSERT_EQ(grant_total("rv", id), 0);
	/* Only admins revoke, even a grantee whose grant has every grantable operation. */
	STEP(grant("rv", id, "bob", "\"describe-key\",\"retire-grant\",\"create-grant\"", "", g));
	ASSERT_ERR(
		ucall("rv", "bob", KMS_ROLE_CRYPTO, "revoke-grant", NULL, key_grant(id, g), NULL),
		KMS_E_FORBIDDEN);
	ASSERT_ERR(ucall("rv", "ada", KMS_ROLE_ADMIN, "revoke-grant", NULL, key_grant(id, g), NULL),
		   0);
	ASSERT_EQ(grant_total("rv", id), 0);
}

TEST(retire_grant_who_may)
{
	char id[FX_ID_LEN], other[FX_ID_LEN], g[65];

	STEP(fx_key("rt", "app", id));
	STEP(fx_key("rt", "other", other));
	/* The retiring principal. */
	STEP(grant("rt", id, "dave", "\"encrypt-datakey\"", ",\"retiring_principal\":\"carol\"",
		   g));
	ASSERT_ERR(retire("rt", "dave", KMS_ROLE_VIEWER, id, g), KMS_E_FORBIDDEN);
	ASSERT_ERR(retire("rt", "erin", KMS_ROLE_CRYPTO, id, g), KMS_E_FORBIDDEN);
	ASSERT_EQ(grant_total("rt", id), 1);
	/* Retiring needs the crypto role (or a grant that includes retire-grant): a viewer that is
	 * the retiring principal may not. */
	ASSERT_ERR(retire("rt", "carol", KMS_ROLE_VIEWER, id, g), KMS_E_FORBIDDEN);
	ASSERT_EQ(grant_total("rt", id), 1);
	ASSERT_ERR(retire("rt", "carol", KMS_ROLE_CRYPTO, id, g), 0);
	ASSERT_STREQ(fx_last(), "{}\n");
	ASSERT_EQ(grant_total("rt", id), 0);
	ASSERT_ERR(retire("rt", "carol", KMS_ROLE_CRYPTO, id, g), KMS_E_GRANT_ID);
	/* A grantee whose grant includes retire-grant (in the key folder). Naming another key:
	 * a viewer holds no grant there (KMS.0307), a crypto caller learns KMS.2502. */
	STEP(grant("rt", id, "bob", "\"decrypt-datakey\",\"retire-grant\"", "", g));
	ASSERT_ERR(retire("rt", "bob", KMS_ROLE_VIEWER, other, g), KMS_E_FORBIDDEN);
	ASSERT_ERR(retire("rt", "bob", KMS_ROLE_CRYPTO, other, g), KMS_E_GRANT_KEY_MISMATCH);
	ASSERT_ERR(ucall("rt", "bob", KMS_ROLE_VIEWER, "retire-grant", id,
			 fx_fmt("{\"grant_id\":\"%s\"}", g), NULL),
		   0);
	ASSERT_EQ(grant_total("rt", id), 0);
	/* A grantee without retire-grant may not. */
	STEP(grant("rt", id, "bob", "\"decrypt-datakey\"", "", g));
	ASSERT_ERR(retire("rt", "bob", KMS_ROLE_CRYPTO, id, g), KMS_E_FORBIDDEN);
	ASSERT_EQ(grant_total("rt", id), 1);
	/* An admin may (docs/access-control.md, Grants); so may the trusted administrator. */
	ASSERT_ERR(retire("rt", "ada", KMS_ROLE_ADMIN, id, g), 0);
	STEP(grant("rt", id, "bob", "\"decrypt-datakey\"", "", g));
	ASSERT_ERR(pcall("rt", "retire-grant", key_grant(id, g), NULL), 0);
	ASSERT_EQ(grant_total("rt", id), 0);
	/* The issuer: a viewer who holds create-grant on the key issues a grant and retires it. */
	STEP(grant("rt", id, "ivan", "\"create-grant\",\"describe-key\"", "", g));
	{
		cJSON *r = NULL;
		char mine[65];

		ASSERT_ERR(ucall("rt", "ivan", KMS_ROLE_VIEWER, "create-grant", NULL,
				 grant_req(id, "judy", "\"describe-key\"", ""), &r),
			   0);
		fx_cp(mine, sizeof(mine), fx_str(r, "grant_id"));
		ASSERT_ERR(pcall("rt", "list-grants", fx_kid_with(id, "\"marker\":\"1\""), &r), 0);
		ASSERT_STREQ(
			fx_str(cJSON_GetArrayItem(fx_get(r, "grants"), 0), "issuing_principal"),
			"ivan");
		ASSERT_ERR(retire("rt", "judy", KMS_ROLE_CRYPTO, id, mine), KMS_E_FORBIDDEN);
		/* As a viewer (its grant has no retire-grant) ivan may not retire it; with the
		 * crypto role the issuer may. */
		ASSERT_ERR(retire("rt", "ivan", KMS_ROLE_VIEWER, id, mine), KMS_E_FORBIDDEN);
		ASSERT_ERR(retire("rt", "ivan", KMS_ROLE_CRYPTO, id, mine), 0);
		ASSERT_EQ(grant_total("rt", id), 1);
	}
	/* Errors as revoke-grant's. */
	ASSERT_ERR(pcall("rt", "retire-grant",
			 fx_fmt("{\"key_id\":\"%s\",\"grant_id\":\"" NO_GRANT "\"}", id), NULL),
		   KMS_E_GRANT_ID);
	ASSERT_ERR(pcall("rt", "retire-grant", fx_kid_with(id, "\"grant_id\":\"nope\""), NULL),
		   KMS_E_GRANT_ID);
	ASSERT_ERR(pcall("rt", "retire-grant", fx_kid(id), NULL), KMS_E_MISSING);
}

/* Issue 11: kmsctl's grants had issuer "admin", the name every token got by default, so a
 * viewer token retired them. kmsctl is now "kmsctl", which no token may carry, and a viewer may
 * not retire at all; a grant that includes retire-grant still lets its grantee retire it. */
TEST(retire_grant_kmsctl_issuer_not_a_token_name)
{
	char id[FX_ID_LEN], g[65], g2[65];
	cJSON *r = NULL;

	STEP(fx_key("rti", "app", id));
	STEP(grant("rti", id, "bob", "\"decrypt-datakey\"", "", g));
	ASSERT_ERR(pcall("rti", "list-grants", fx_kid(id), &r), 0);
	ASSERT_STREQ(fx_str(cJSON_GetArrayItem(fx_get(r, "grants"), 0), "issuing_principal"),
		     "kmsctl");
	ASSERT_FALSE(auth_user_valid(AUTH_USER_HOST_ADMIN));
	/* "admin", the old default name, is no issuer of kmsctl's grants, whatever the role. */
	ASSERT_ERR(retire("rti", "admin", KMS_ROLE_VIEWER, id, g), KMS_E_FORBIDDEN);
	ASSERT_ERR(ucall("rti", "admin", KMS_ROLE_VIEWER, "retire-grant", id,
			 fx_fmt("{\"grant_id\":\"%s\"}", g), NULL),
		   KMS_E_FORBIDDEN);
	ASSERT_ERR(retire("rti", "admin", KMS_ROLE_CRYPTO, id, g), KMS_E_FORBIDDEN);
	ASSERT_ERR(retire("rti", "viewer", KMS_ROLE_VIEWER, id, g), KMS_E_FORBIDDEN);
	ASSERT_EQ(grant_total("rti", id), 1);
	/* A grant with retire-grant on another key gives a viewer nothing on this one. */
	{
		char other[FX_ID_LEN];

		STEP(fx_key("rti", "other", other));
		STEP(grant("rti", other, "vera", "\"retire-grant\",\"describe-key\"", "", g2));
		STEP(grant("rti", id, "dave", "\"describe-key\"",
			   ",\"retiring_principal\":\"vera\"", g2));
		ASSERT_ERR(retire("rti", "vera", KMS_ROLE_VIEWER, id, g2), KMS_E_FORBIDDEN);
		ASSERT_EQ(grant_total("rti", id), 2);
		ASSERT_ERR(retire("rti", "vera", KMS_ROLE_CRYPTO, id, g2), 0);
	}
	ASSERT_ERR(retire("rti", "ada", KMS_ROLE_ADMIN, id, g), 0);
	ASSERT_EQ(grant_total("rti", id), 0);
	ASSERT_EQ(api_action_find("retire-grant", API_SCOPE_PROJECT)->min_role, KMS_ROLE_CRYPTO);
}

/* ---- enforcement ---- */

struct enf {
	const char *project;
	char k1[FX_ID_LEN], k2[FX_ID_LEN];
	struct fx_blobs b1, b2; /* of k1 and k2, encrypt-data of "one" and "two" */
	char wrap[2 * 96 + 1];	/* an encrypt-datakey plain_text */
};

static void enf_setup(struct enf *e, const char *project)
{
	uint8_t dek[64];
	char dg[65];

	memset(e, 0, sizeof(*e));
	e->project = project;
	STEP(fx_key(project, "one", e->k1));
	STEP(fx_key(project, "two", e->k2));
	STEP(fx_blobs_in(fx_svc(), project, e->k1, "one", &e->b1));
	STEP(fx_blobs_in(fx_svc(), project, e->k2, "two", &e->b2));
	for (size_t i = 0; i < sizeof(dek); i++)
		dek[i] = (uint8_t)i;
	kms_hex_encode(dek, sizeof(dek), e->wrap);
	fx_sha256_hex(dek, sizeof(dek), dg);
	strcat(e->wrap, dg);
}

/* The operations a grant may name that a viewer's role does not allow by itself. */
static const char *const above_viewer[] = {
	"create-datakey",  "create-datakey-without-plaintext",
	"encrypt-datakey", "decrypt-datakey",
	"encrypt-data",	   "decrypt-data",
	"create-grant",
};

/* A request for op on key (1 or 2) that an admin gets answered successfully. */
static const char *enf_request(struct enf *e, const char *op, int key)
{
	const char *id = key == 1 ? e->k1 : e->k2;

	if (strcmp(op, "encrypt-datakey") == 0)
		return fx_fmt("{\"key_id\":\"%s\",\"plain_text\":\"%s\","
			      "\"datakey_plain_length\":\"64\"}",
			      id, e->wrap);
	if (strcmp(op, "decrypt-datakey") == 0)
		return fx_unwrap_req(id, key == 1 ? e->b1.dk : e->b2.dk);
	if (strcmp(op, "encrypt-data") == 0)
		return fx_kid_with(id, "\"plain_text\":\"x\"");
	if (strcmp(op, "decrypt-data") == 0)
		return fx_fmt("{\"cipher_text\":\"%s\"}", key == 1 ? e->b1.data : e->b2.data);
	if (strcmp(op, "create-grant") == 0)
		return grant_req(id, "zed", "\"describe-key\"", "");
	return fx_kid(id); /* create-datakey, create-datakey-without-plaintext */
}

/* For each operation X above a viewer's role: bob (viewer) may call X on k1 exactly while a grant
 * for X on k1 exists; never another operation, never on k2; carol (same role, no grant) never. */
TEST(grant_enforcement_exact_operations)
{
	struct enf e;
	size_t n = KMS_ARRAY_SIZE(above_viewer);

	STEP(enf_setup(&e, "enf"));
	for (size_t i = 0; i < n; i++) {
		const char *op = above_viewer[i];
		char g[65];

		EXPECT(op,
		       ucall("enf", "bob", KMS_ROLE_VIEWER, op, NULL, enf_request(&e, op, 1), NULL),
		       KMS_E_FORBIDDEN);
		/* create-grant cannot be granted alone (KMS.2401): with describe-key, which a
		 * viewer may do anyway. */
		STEP(grant("enf", e.k1, "bob",
			   fx_fmt("\"%s\"%s", op,
				  strcmp(op, "create-grant") ? "" : ",\"describe-key\""),
			   "", g));
		EXPECT(op,
		       ucall("enf", "bob", KMS_ROLE_VIEWER, op, NULL, enf_request(&e, op, 1), NULL),
		       0);
		for (size_t j = 0; j < n; j++) {
			if (j == i)
				continue;
			EXPECT(fx_fmt("%s with a grant for %s", above_viewer[j], op),
			       ucall("enf", "bob", KMS_ROLE_VIEWER, above_viewer[j], NULL,
				     enf_request(&e, above_viewer[j], 1), NULL),
			       KMS_E_FORBIDDEN);
		}
		EXPECT(fx_fmt("%s on the other key", op),
		       ucall("enf", "bob", KMS_ROLE_VIEWER, op, NULL, enf_request(&e, op, 2), NULL),
		       KMS_E_FORBIDDEN);
		EXPECT(fx_fmt("%s by carol", op),
		       ucall("enf", "carol", KMS_ROLE_VIEWER, op, NULL, enf_request(&e, op, 1),
			     NULL),
		       KMS_E_FORBIDDEN);
		ASSERT_ERR(pcall("enf", "revoke-grant", key_grant(e.k1, g), NULL), 0);
		EXPECT(fx_fmt("%s after revoke-grant", op),
		       ucall("enf", "bob", KMS_ROLE_VIEWER, op, NULL, enf_request(&e, op, 1), NULL),
		       KMS_E_FORBIDDEN);
	}
	ASSERT_LAST_ERROR("KMS.0307", "No access permissions.");
}

/* decrypt-datakey of the 64-byte DEK cipher by the viewer bob: in key folder folder, or (folder
 * NULL) with key_id ref. */
static int bob_unwraps(const char *project, const char *folder, const char *ref, const char *cipher,
		       cJSON **r)
{
	const char *req =
		folder ? fx_fmt("{\"cipher_text\":\"%s\",\"datakey_cipher_length\":\"64\"}", cipher)
		       : fx_unwrap_req(ref, cipher);

	return ucall(project, "bob", KMS_ROLE_VIEWER, "decrypt-datakey", folder, req, r);
}

/* What a granted operation returns is the real thing: the DEK, in every key form and in the key
 * folder; a grant to bob does not serve a different user, nor another project. */
TEST(grant_enforcement_results_and_key_forms)
{
	struct enf e;
	char g[65];
	cJSON *r = NULL;
	char unwrap1[FX_FMT_MAX / 16];

	STEP(enf_setup(&e, "enf2"));
	STEP(grant("enf2", e.k1, "bob", "\"decrypt-datakey\",\"decrypt-data\"", "", g));
	fx_cp(unwrap1, sizeof(unwrap1), enf_request(&e, "decrypt-datakey", 1));
	ASSERT_ERR(ucall("enf2", "bob", KMS_ROLE_VIEWER, "decrypt-datakey", NULL, unwrap1, &r), 0);
	ASSERT_STREQ(fx_str(r, "data_key"), e.b1.plain);
	ASSERT_ERR(bob_unwraps("enf2", NULL, "alias/one", e.b1.dk, &r), 0);
	ASSERT_STREQ(fx_str(r, "data_key"), e.b1.plain);
	ASSERT_ERR(bob_unwraps("enf2", NULL, fx_urn("one"), e.b1.dk, &r), 0);
	ASSERT_STREQ(fx_str(r, "data_key"), e.b1.plain);
	ASSERT_ERR(bob_unwraps("enf2", e.k1, NULL, e.b1.dk, &r), 0);
	ASSERT_STREQ(fx_str(r, "data_key"), e.b1.plain);
	/* In k2's folder, or by k2's alias: not granted. */
	ASSERT_ERR(bob_unwraps("enf2", e.k2, NULL, e.b2.dk, NULL), KMS_E_FORBIDDEN);
	ASSERT_ERR(bob_unwraps("enf2", NULL, "alias/two", e.b2.dk, NULL), KMS_E_FORBIDDEN);
	/* decrypt-data takes the key from the blob: k1's blob yes, k2's no. */
	ASSERT_ERR(ucall("enf2", "bob", KMS_ROLE_VIEWER, "decrypt-data", NULL,
			 enf_request(&e, "decrypt-data", 1), &r),
		   0);
	ASSERT_STREQ(fx_str(r, "plain_text"), "one");
	ASSERT_STREQ(fx_str(r, "key_id"), e.k1);
	ASSERT_ERR(ucall("enf2", "bob", KMS_ROLE_VIEWER, "decrypt-data", NULL,
			 enf_request(&e, "decrypt-data", 2), NULL),
		   KMS_E_FORBIDDEN);
	/* The grantee is a user name: another user with the same role gets nothing; the same name
	 * in another project neither (its token is for that project). */
	ASSERT_ERR(ucall("enf2", "Bob", KMS_ROLE_VIEWER, "decrypt-datakey", NULL, unwrap1, NULL),
		   KMS_E_FORBIDDEN);
	ASSERT_ERR(ucall("enf2-x", "bob", KMS_ROLE_VIEWER, "decrypt-datakey", NULL, unwrap1, NULL),
		   KMS_E_FORBIDDEN);
	/* The role's own rights are unchanged by the grant, and it never adds admin actions. */
	ASSERT_ERR(ucall("enf2", "bob", KMS_ROLE_VIEWER, "describe-key", NULL, fx_kid(e.k2), NULL),
		   0);
	ASSERT_ERR(ucall("enf2", "bob", KMS_ROLE_VIEWER, "gen-random", NULL,
			 "{\"random_data_length\":\"512\"}", NULL),
		   KMS_E_FORBIDDEN);
}

/* Admin-only actions that a grant can never allow, even one with every grantable operation. */
TEST(grant_never_allows_admin_actions)
{
	static const char *const admin_only[] = {
		"enable-key",	       "disable-key",	       "schedule-key-deletion",
		"cancel-key-deletion", "update-key-alias",     "update-key-description",
		"enable-key-rotation", "disable-key-rotation", "update-key-rotation-interval",
		"rotate-key",	       "revoke-grant",	       "create-key",
	};
	char id[FX_ID_LEN], g[65];
	cJSON *r = NULL;

	STEP(fx_key("enf3", "app", id));
	STEP(grant("enf3", id, "bob",
		   "\"create-datakey\",\"create-datakey-without-plaintext\",\"encrypt-datakey\","
		   "\"decrypt-datakey\",\"describe-key\",\"create-grant\",\"retire-grant\","
		   "\"encrypt-data\",\"decrypt-data\"",
		   "", g));
	for (size_t i = 0; i < KMS_ARRAY_SIZE(admin_only); i++) {
		EXPECT(admin_only[i],
		       ucall("enf3", "bob", KMS_ROLE_VIEWER, admin_only[i], NULL,
			     fx_fmt("{\"key_id\":\"%s\",\"pending_days\":\"7\",\"key_alias\":\"x\","
				    "\"key_description\":\"x\",\"rotation_interval\":90,"
				    "\"grant_id\":\"%s\"}",
				    id, g),
			     NULL),
		       KMS_E_FORBIDDEN);
		EXPECT(admin_only[i],
		       ucall("enf3", "bob", KMS_ROLE_VIEWER, admin_only[i],
			     strcmp(admin_only[i], "create-key") ? id : NULL,
			     fx_fmt("{\"pending_days\":\"7\",\"key_alias\":\"x\","
				    "\"key_description\":\"x\",\"rotation_interval\":90,"
				    "\"grant_id\":\"%s\"}",
				    g),
			     NULL),
		       KMS_E_FORBIDDEN);
	}
	ASSERT_ERR(ucall("enf3", "bob", KMS_ROLE_VIEWER, "tags", id,
			 "{\"tag\":{\"key\":\"a\",\"value\":\"b\"}}", NULL),
		   KMS_E_FORBIDDEN);
	ASSERT_ERR(pcall("enf3", "describe-key", fx_kid(id), &r), 0);
	ASSERT_STREQ(fx_str(r, "key_info.key_state"), "2");
	ASSERT_STREQ(fx_str(r, "key_info.key_alias"), "app");
	ASSERT_STREQ(fx_str(r, "key_info.key_rotation_enabled"), "false");
	ASSERT_EQ(grant_total("enf3", id), 1);
	/* With that grant bob does do the crypto. */
	ASSERT_ERR(ucall("enf3", "bob", KMS_ROLE_VIEWER, "create-datakey", id, "", &r), 0);
	ASSERT_TRUE(fx_upper_hex(fx_str(r, "plain_text"), 128));
}

/* A caller with no role at all (KMS_ROLE_NONE) may describe a key only through a grant. */
TEST(grant_enforcement_role_none)
{
	char id[FX_ID_LEN], other[FX_ID_LEN], g[65];
	cJSON *r = NULL;

	STEP(fx_key("enf4", "app", id));
	STEP(fx_key("enf4", "other", other));
	ASSERT_ERR(ucall("enf4", "nob", KMS_ROLE_NONE, "describe-key", NULL, fx_kid(id), NULL),
		   KMS_E_FORBIDDEN);
	STEP(grant("enf4", id, "nob", "\"describe-key\"", "", g));
	ASSERT_ERR(ucall("enf4", "nob", KMS_ROLE_NONE, "describe-key", NULL, fx_kid(id), &r), 0);
	ASSERT_STREQ(fx_str(r, "key_info.key_id"), id);
	ASSERT_ERR(ucall("enf4", "nob", KMS_ROLE_NONE, "describe-key", id, "", &r), 0);
	ASSERT_ERR(ucall("enf4", "nob", KMS_ROLE_NONE, "describe-key", NULL, fx_kid(other), NULL),
		   KMS_E_FORBIDDEN);
	/* Not grantable: listing. */
	ASSERT_ERR(ucall("enf4", "nob", KMS_ROLE_NONE, "list-keys", NULL, "{}", NULL),
		   KMS_E_FORBIDDEN);
	ASSERT_ERR(ucall("enf4", "nob", KMS_ROLE_NONE, "list-grants", NULL, fx_kid(id), NULL),
		   KMS_E_FORBIDDEN);
	ASSERT_ERR(ucall("enf4", "nob", KMS_ROLE_NONE, "get-key-rotation-status", NULL, fx_kid(id),
			 NULL),
		   KMS_E_FORBIDDEN);
}

/* A grant does not override the key's state: the grantee gets KMS.0209 for a disabled key and
 * KMS.0210 for a key pending deletion, like everyone else. */
TEST(grant_on_disabled_key_still_checks_state)
{
	struct enf e;
	char g[65];

	STEP(enf_setup(&e, "enf5"));
	STEP(grant("enf5", e.k1, "bob", "\"decrypt-datakey\"", "", g));
	ASSERT_ERR(pcall("enf5", "disable-key", fx_kid(e.k1), NULL), 0);
	ASSERT_ERR(ucall("enf5", "bob", KMS_ROLE_VIEWER, "decrypt-datakey", NULL,
			 enf_request(&e, "decrypt-datakey", 1), NULL),
		   KMS_E_KEY_DISABLED);
	ASSERT_ERR(pcall("enf5", "schedule-key-deletion",
			 fx_kid_with(e.k1, "\"pending_days\":\"7\""), NULL),
		   0);
	ASSERT_ERR(ucall("enf5", "bob", KMS_ROLE_VIEWER, "decrypt-datakey", NULL,
			 enf_request(&e, "decrypt-datakey", 1), NULL),
		   KMS_E_KEY_PENDING_DELETION);
	/* Without the grant the same request is refused first. */
	ASSERT_ERR(ucall("enf5", "carol", KMS_ROLE_VIEWER, "decrypt-datakey", NULL,
			 enf_request(&e, "decrypt-datakey", 1), NULL),
		   KMS_E_FORBIDDEN);
}

/* A grantee allowed create-grant hands on no more than it holds: bob (viewer) with
 * create-grant + describe-key on K may grant describe-key, not create-datakey (KMS.0307), so
 * he cannot lift himself to plaintext data keys. */
TEST(grant_cannot_escalate)
{
	char k[FX_ID_LEN], gid[65];

	STEP(fx_key("esc", "k", k));
	grant("esc", k, "bob", "\"create-grant\",\"describe-key\"", "", gid);
	ASSERT_ERR(ucall("esc", "bob", KMS_ROLE_VIEWER, "create-grant", NULL,
			 grant_req(k, "bob", "\"create-datakey\"", ""), NULL),
		   KMS_E_FORBIDDEN);
	ASSERT_ERR(ucall("esc", "bob", KMS_ROLE_VIEWER, "create-grant", NULL,
			 grant_req(k, "bob", "\"describe-key\",\"create-datakey\"", ""), NULL),
		   KMS_E_FORBIDDEN);
	ASSERT_ERR(ucall("esc", "bob", KMS_ROLE_VIEWER, "create-datakey", NULL,
			 fx_fmt("{\"key_id\":\"%s\"}", k), NULL),
		   KMS_E_FORBIDDEN);
	/* Within what he holds: allowed. */
	ASSERT_ERR(ucall("esc", "bob", KMS_ROLE_VIEWER, "create-grant", NULL,
			 grant_req(k, "carol", "\"describe-key\"", ""), NULL),
		   0);
	/* An admin by role is not limited. */
	ASSERT_ERR(ucall("esc", "ann", KMS_ROLE_ADMIN, "create-grant", NULL,
			 grant_req(k, "bob", "\"create-datakey\"", ""), NULL),
		   0);
}

/* Without any grant for the action, a caller whose role does not allow it is refused before
 * its request is validated: KMS.0307, never a validation error that describes the rules. */
TEST(no_grant_refused_before_validation)
{
	char k[FX_ID_LEN];

	STEP(fx_key("nov", "k", k));
	ASSERT_ERR(ucall("nov", "dan", KMS_ROLE_VIEWER, "create-datakey", NULL,
			 "{\"datakey_length\":\"7\"}", NULL),
		   KMS_E_FORBIDDEN);
	ASSERT_ERR(ucall("nov", "dan", KMS_ROLE_VIEWER, "create-datakey", NULL, "{}", NULL),
		   KMS_E_FORBIDDEN);
	ASSERT_ERR(ucall("nov", "dan", KMS_ROLE_VIEWER, "encrypt-datakey", NULL, "{\"x\":1}", NULL),
		   KMS_E_FORBIDDEN);
	ASSERT_ERR(ucall("nov", "dan", KMS_ROLE_VIEWER, "create-datakey", k, "{}", NULL),
		   KMS_E_FORBIDDEN);
}

/* The grant check looks the caller's grants up once per request and remembers up to
 * API_GRANT_KEYS_SEEN (8, src/api/api_internal.h) keys: with grants on more keys than that it
 * asks the store again, and gives the same answers. Under a key folder it asks about that key only; a blob of another key
 * is still judged by that other key's grants. */
TEST(grant_check_many_keys_and_key_folder)
{
	char k[10][FX_ID_LEN], gid[65], blob[HEX_MAX];
	const size_t n = KMS_ARRAY_SIZE(k);
	cJSON *r = NULL;

	for (size_t i = 0; i < n; i++)
		STEP(fx_key("gmk", fx_fmt("k%zu", i), k[i]));
	/* Grants on all but the last key. */
	for (size_t i = 0; i + 1 < n; i++)
		grant("gmk", k[i], "bob",
		      "\"create-datakey-without-plaintext\",\"decrypt-datakey\"", "", gid);
	for (size_t i = 0; i + 1 < n; i++)
		ASSERT_ERR(ucall("gmk", "bob", KMS_ROLE_VIEWER, "create-datakey-without-plaintext",
				 NULL, fx_kid(k[i]), NULL),
			   0);
	ASSERT_ERR(ucall("gmk", "bob", KMS_ROLE_VIEWER, "create-datakey-without-plaintext", NULL,
			 fx_kid(k[n - 1]), NULL),
		   KMS_E_FORBIDDEN);
	/* Key folders: the folder's key with a grant, and one without. */
	ASSERT_ERR(ucall("gmk", "bob", KMS_ROLE_VIEWER, "create-datakey-without-plaintext", k[0],
			 "{}", NULL),
		   0);
	ASSERT_ERR(ucall("gmk", "bob", KMS_ROLE_VIEWER, "create-datakey-without-plaintext",
			 k[n - 1], "{}", NULL),
		   KMS_E_FORBIDDEN);
	/* Under k[0]'s folder, a ciphertext of k[1] (bob holds decrypt-datakey there too): the
	 * folder serves only its own key (KMS.0205), not KMS.0307. */
	ASSERT_ERR(pcall("gmk", "create-datakey-without-plaintext", fx_kid(k[1]), &r), 0);
	fx_cp(blob, sizeof(blob), fx_str(r, "cipher_text"));
	ASSERT_ERR(ucall("gmk", "bob", KMS_ROLE_VIEWER, "decrypt-datakey", k[0],
			 fx_fmt("{\"cipher_text\":\"%s\",\"datakey_cipher_length\":\"64\"}", blob),
			 NULL),
		   KMS_E_BAD_KEY_ID);
	ASSERT_ERR(ucall("gmk", "bob", KMS_ROLE_VIEWER, "decrypt-datakey", NULL,
			 fx_unwrap_req(k[1], blob), NULL),
		   0);
}
