/* test-api-keys.c - the API layer's common machinery and the key actions: dispatch, request
 * parsing (KMS.0202/0203, empty request), sequence (KMS.0206), authorisation (KMS.0301-0307),
 * create-key, describe-key and list-keys (kms-api.md sections 4.1-4.3, 6, 7; interface-spec.md).
 *
 * Every request goes through api_call() via call() (kms_test_api.h), which also checks the shape
 * of every response, so each test below checks that too, on each call.
 */
#include "kms_test_api.h"

#include <time.h>

#include "auth/kms_auth.h"

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- a valid request for every action, for the tests that loop over all of them ---- */

struct valid_ctx {
	const char *project;
	char id[FX_ID_LEN];
	char dk_ct[2 * CORE_BLOB_MAX + 1]; /* a create-datakey cipher_text (hex) */
	char data_ct[2 * CORE_BLOB_MAX];   /* an encrypt-data cipher_text (Base64) */
	char zero_dek[2 * 64 + 1];	   /* hex of 64 zero bytes */
	unsigned aliases;
};

static void valid_setup(struct valid_ctx *v, const char *project)
{
	cJSON *r = NULL;

	memset(v, 0, sizeof(*v));
	v->project = project;
	memset(v->zero_dek, '0', 2 * 64);
	STEP(fx_key(project, "main", v->id));
	ASSERT_ERR(pcall(project, "create-datakey", fx_fmt("{\"key_id\":\"%s\"}", v->id), &r), 0);
	ASSERT_TRUE(fx_str(r, "cipher_text") != NULL);
	snprintf(v->dk_ct, sizeof(v->dk_ct), "%s", fx_str(r, "cipher_text"));
	ASSERT_ERR(
		pcall(project, "encrypt-data", fx_kid_with(v->id, "\"plain_text\":\"hello\""), &r),
		0);
	ASSERT_TRUE(fx_str(r, "cipher_text") != NULL);
	snprintf(v->data_ct, sizeof(v->data_ct), "%s", fx_str(r, "cipher_text"));
}

#define ZERO_DEK_DGST "F5A5FD42D16A20302798EF6ED309979B43003D2320D9F0E8EA9831A92759FB4B"

/* A request for action that succeeds, with extra (",\"name\":value" or "") appended. */
static const char *valid_request(struct valid_ctx *v, const char *action, const char *extra)
{
	if (strcmp(action, "create-key") == 0)
		return fx_fmt("{\"key_alias\":\"valid-%u\"%s}", v->aliases++, extra);
	if (strcmp(action, "list-keys") == 0)
		return fx_fmt("{\"limit\":\"10\"%s}", extra);
	if (strcmp(action, "gen-random") == 0)
		return fx_fmt("{\"random_data_length\":\"512\"%s}", extra);
	if (strcmp(action, "encrypt-datakey") == 0)
		return fx_fmt("{\"key_id\":\"%s\",\"plain_text\":\"%s%s\","
			      "\"datakey_plain_length\":\"64\"%s}",
			      v->id, v->zero_dek, ZERO_DEK_DGST, extra);
	if (strcmp(action, "decrypt-datakey") == 0)
		return fx_fmt("{\"key_id\":\"%s\",\"cipher_text\":\"%s\","
			      "\"datakey_cipher_length\":\"64\"%s}",
			      v->id, v->dk_ct, extra);
	if (strcmp(action, "encrypt-data") == 0)
		return fx_fmt("{\"key_id\":\"%s\",\"plain_text\":\"x\"%s}", v->id, extra);
	if (strcmp(action, "decrypt-data") == 0)
		return fx_fmt("{\"cipher_text\":\"%s\"%s}", v->data_ct, extra);
	/* describe-key, create-datakey, create-datakey-without-plaintext */
	return fx_fmt("{\"key_id\":\"%s\"%s}", v->id, extra);
}

/* The actions of the project folder only. */
static const char *const project_only[] = { "create-key", "list-keys", "gen-random" };

static const char *const all_actions[] = {
	"create-key",
	"describe-key",
	"list-keys",
	"create-datakey",
	"create-datakey-without-plaintext",
	"encrypt-datakey",
	"decrypt-datakey",
	"gen-random",
	"encrypt-data",
	"decrypt-data",
};

/* The least role of each action (kms_auth.h: viewer = describe and list; crypto = + data keys,
 * data, random; admin = everything). */
static enum kms_role expected_min_role(const char *action)
{
	if (strcmp(action, "create-key") == 0)
		return KMS_ROLE_ADMIN;
	if (strcmp(action, "describe-key") == 0 || strcmp(action, "list-keys") == 0)
		return KMS_ROLE_VIEWER;
	return KMS_ROLE_CRYPTO;
}

/* ---- dispatch ---- */

TEST(action_table)
{
	static const char *const key_scope[] = {
		"create-datakey",  "create-datakey-without-plaintext",
		"encrypt-datakey", "decrypt-datakey",
		"describe-key",	   "encrypt-data",
	};
	static const char *const plaintext[] = { "create-datakey", "decrypt-datakey",
						 "decrypt-data" };

	/* The ten actions of this file's scope; the table may hold more (lifecycle, grants...). */
	ASSERT_LE(KMS_ARRAY_SIZE(all_actions), api_action_count());
	ASSERT_TRUE(api_action_at(api_action_count()) == NULL);
	for (size_t i = 0; i < api_action_count(); i++)
		for (size_t j = i + 1; j < api_action_count(); j++)
			ASSERT_FALSE(strcmp(api_action_at(i)->name, api_action_at(j)->name) == 0);
	for (size_t i = 0; i < KMS_ARRAY_SIZE(all_actions); i++) {
		const struct api_action *a = api_action_find(all_actions[i], API_SCOPE_PROJECT);
		bool pt = false;

		ASSERT_TRUE(a != NULL);
		ASSERT_STREQ(a->name, all_actions[i]);
		ASSERT_TRUE(a->handler != NULL);
		ASSERT_EQ(a->min_role, expected_min_role(a->name));
		for (size_t j = 0; j < KMS_ARRAY_SIZE(plaintext); j++)
			pt |= strcmp(plaintext[j], a->name) == 0;
		ASSERT_EQ(a->plaintext, pt);
	}
	for (size_t i = 0; i < api_action_count(); i++)
		ASSERT_TRUE(api_action_find(api_action_at(i)->name, api_action_at(i)->scopes) ==
			    api_action_at(i));
	for (size_t i = 0; i < KMS_ARRAY_SIZE(key_scope); i++)
		ASSERT_TRUE(api_action_find(key_scope[i], API_SCOPE_KEY) != NULL);
	for (size_t i = 0; i < KMS_ARRAY_SIZE(project_only); i++)
		ASSERT_TRUE(api_action_find(project_only[i], API_SCOPE_KEY) == NULL);
	ASSERT_TRUE(api_action_find("nope", API_SCOPE_PROJECT) == NULL);
	ASSERT_TRUE(api_action_find("", API_SCOPE_PROJECT) == NULL);
	ASSERT_TRUE(api_action_find("create-key", 0) == NULL);
	ASSERT_TRUE(api_action_find("Create-Key", API_SCOPE_PROJECT) == NULL);
}

TEST(unknown_action_0201)
{
	ASSERT_ERR(call("disp", NULL, API_SCOPE_PROJECT, NULL, "{}", NULL), KMS_E_BAD_URL);
	ASSERT_LAST_ERROR("KMS.0201", "Invalid request URL.");
	ASSERT_ERR(call("disp", "nope", API_SCOPE_PROJECT, NULL, "{}", NULL), KMS_E_BAD_URL);
	for (size_t i = 0; i < KMS_ARRAY_SIZE(project_only); i++)
		EXPECT(project_only[i],
		       call("disp", project_only[i], API_SCOPE_KEY, FX_NO_KEY, "{}", NULL),
		       KMS_E_BAD_URL);
	/* Checked before the body: bad JSON to no action is still KMS.0201. */
	ASSERT_ERR(call("disp", NULL, API_SCOPE_PROJECT, NULL, "{", NULL), KMS_E_BAD_URL);
}

/* Every error of the table renders as {"error":{"error_code","error_msg"}} + "\n". */
#define ERR_LIST_(name, code, http, errnum, msg) { name, code, msg },
TEST(error_json_every_code)
{
	static const struct {
		int err;
		const char *code, *msg;
	} errs[] = { KMS_ERRORS(ERR_LIST_) };

	for (size_t i = 0; i < KMS_ARRAY_SIZE(errs); i++) {
		struct kms_buf b = KMS_BUF_INIT(4096, false);
		char want[512];
		cJSON *j, *e;

		ASSERT_OK(api_error_json(errs[i].err, &b));
		snprintf(want, sizeof(want),
			 "{\"error\":{\"error_code\":\"%s\",\"error_msg\":\"%s\"}}\n", errs[i].code,
			 errs[i].msg);
		ASSERT_STREQ((const char *)b.data, want);
		j = cJSON_Parse((const char *)b.data);
		ASSERT_TRUE(j != NULL);
		e = cJSON_GetObjectItemCaseSensitive(j, "error");
		ASSERT_EQ(cJSON_GetArraySize(j), 1);
		ASSERT_EQ(cJSON_GetArraySize(e), 2);
		ASSERT_STREQ(fx_str(e, "error_code"), errs[i].code);
		cJSON_Delete(j);
		kms_buf_free(&b);
	}
}
#undef ERR_LIST_

TEST(error_json_appends)
{
	struct kms_buf b = KMS_BUF_INIT(4096, false);

	/* api_error_json appends: what the buffer held stays in front. */
	ASSERT_OK(kms_buf_append_str(&b, "X"));
	ASSERT_OK(api_error_json(KMS_E_KEY_NOT_FOUND, &b));
	ASSERT_STREQ((const char *)b.data, "X{\"error\":{\"error_code\":\"KMS.0207\",\"error_msg\":"
					   "\"The key does not exist.\"}}\n");
	kms_buf_free(&b);
}

TEST(response_appended_to_buffer)
{
	struct api_caller c = { .project = "append", .trusted = true };
	struct kms_buf b = KMS_BUF_INIT(KMS_MAX_RESPONSE, true);
	const struct api_action *a = api_action_find("list-keys", API_SCOPE_PROJECT);

	ASSERT_OK(kms_buf_append_str(&b, "prefix"));
	ASSERT_OK(api_call(fx_svc(), &c, a, (const uint8_t *)"{}", 2, &b));
	ASSERT_TRUE(strncmp((const char *)b.data, "prefix{\"keys\":[]", 16) == 0);
	kms_buf_reset(&b);
	ASSERT_OK(kms_buf_append_str(&b, "prefix"));
	ASSERT_ERR(api_call(fx_svc(), &c, a, (const uint8_t *)"{", 1, &b), KMS_E_BAD_JSON);
	ASSERT_TRUE(strncmp((const char *)b.data, "prefix{\"error\":", 15) == 0);
	kms_buf_free(&b);
}

/* ---- request parsing ---- */

TEST(bad_json_0202)
{
	static const char *const bad[] = {
		"{",
		"}",
		"{\"limit\":}",
		"{\"limit\":\"1\",}",
		"{'limit':'1'}",
		"{limit:\"1\"}",
		"{\"limit\":\"1\"",
		"{\"limit\" \"1\"}",
		"{\"limit\":\"1}",
		"{\"limit\":\"\\x\"}",
		"[]",
		"[{}]",
		"\"{}\"",
		"null",
		"1",
		"true",
		"{} x",
		"{}}",
		"{},",
		"{}{}",
		"{\"limit\":\"1\"} {\"limit\":\"2\"}",
		"x{}",
		"{\"limit\":\"1\",\"limit\":\"1\"}",
		"{\"limit\":\"1\",\"marker\":\"0\",\"limit\":\"2\"}",
	};

	for (size_t i = 0; i < KMS_ARRAY_SIZE(bad); i++) {
		int r = pcall("json", "list-keys", bad[i], NULL);

		if (r != KMS_E_BAD_JSON)
			fprintf(stderr, "\trequest: %s\n", bad[i]);
		ASSERT_ERR(r, KMS_E_BAD_JSON);
	}
}

TEST(bad_json_nul_bytes_0202)
{
	ASSERT_ERR(call_raw("json", "list-keys", API_SCOPE_PROJECT, NULL, "{}\0", 3, NULL),
		   KMS_E_BAD_JSON);
	ASSERT_ERR(call_raw("json", "list-keys", API_SCOPE_PROJECT, NULL, "\0{}", 3, NULL),
		   KMS_E_BAD_JSON);
	ASSERT_ERR(
		call_raw("json", "list-keys", API_SCOPE_PROJECT, NULL, "{\"a\":\"\0\"}", 8, NULL),
		KMS_E_BAD_JSON);
	ASSERT_ERR(call_raw("json", "list-keys", API_SCOPE_PROJECT, NULL, "\0", 1, NULL),
		   KMS_E_BAD_JSON);
}

TEST(json_depth)
{
	char req[4200];
	size_t n;

	/* {"x":[[...]]}: the object is level 1, each array one more; 16 levels are allowed. */
	for (int levels = 2; levels <= 18; levels++) {
		int r;

		n = (size_t)snprintf(req, sizeof(req), "{\"x\":");
		for (int i = 1; i < levels; i++)
			req[n++] = '[';
		for (int i = 1; i < levels; i++)
			req[n++] = ']';
		req[n++] = '}';
		req[n] = 0;
		r = pcall("json", "list-keys", req, NULL);
		if (levels <= KMS_MAX_JSON_DEPTH)
			ASSERT_ERR(r, 0);
		else
			ASSERT_ERR(r, KMS_E_BAD_JSON);
	}
	/* Far beyond any limit (cJSON's own is 1000). */
	n = (size_t)snprintf(req, sizeof(req), "{\"x\":");
	for (int i = 0; i < 2000; i++)
		req[n++] = '[';
	for (int i = 0; i < 2000; i++)
		req[n++] = ']';
	req[n++] = '}';
	req[n] = 0;
	ASSERT_ERR(pcall("json", "list-keys", req, NULL), KMS_E_BAD_JSON);
	/* Deep objects too. */
	n = (size_t)snprintf(req, sizeof(req), "{\"encryption_context\":");
	for (int i = 0; i < 20; i++)
		n += (size_t)snprintf(req + n, sizeof(req) - n, "{\"a\":");
	n += (size_t)snprintf(req + n, sizeof(req) - n, "\"v\"");
	for (int i = 0; i < 21; i++)
		req[n++] = '}';
	req[n] = 0;
	ASSERT_ERR(pcall("json", "list-keys", req, NULL), KMS_E_BAD_JSON);
}

static char big_req[KMS_MAX_REQUEST + 16];

/* A list-keys request of exactly n bytes: valid JSON padded with blanks. */
static size_t padded_request(size_t n)
{
	const char *body = "{\"limit\":\"10\"}";

	memset(big_req, ' ', n);
	memcpy(big_req, body, strlen(body));
	big_req[n] = 0;
	return n;
}

TEST(too_long_0203)
{
	size_t n = padded_request(KMS_MAX_REQUEST);

	ASSERT_ERR(call_raw("long", "list-keys", API_SCOPE_PROJECT, NULL, big_req, n, NULL), 0);
	n = padded_request(KMS_MAX_REQUEST + 1);
	ASSERT_ERR(call_raw("long", "list-keys", API_SCOPE_PROJECT, NULL, big_req, n, NULL),
		   KMS_E_TOO_LONG);
	ASSERT_LAST_ERROR("KMS.0203", "Request message too long.");
	/* Length is checked before syntax. */
	memset(big_req, '{', KMS_MAX_REQUEST + 1);
	ASSERT_ERR(call_raw("long", "list-keys", API_SCOPE_PROJECT, NULL, big_req,
			    KMS_MAX_REQUEST + 1, NULL),
		   KMS_E_TOO_LONG);
	/* And a long string value inside a valid request is still just a request. */
	memset(big_req, 'a', KMS_MAX_REQUEST + 1);
	memcpy(big_req, "{\"x\":\"", 6);
	memcpy(big_req + KMS_MAX_REQUEST - 2, "\"}", 2);
	ASSERT_ERR(call_raw("long", "list-keys", API_SCOPE_PROJECT, NULL, big_req, KMS_MAX_REQUEST,
			    NULL),
		   0);
}

TEST(empty_request_is_empty_object)
{
	static const char *const blank[] = { "",   " ",	   "\n",     "\r\n",	 " \t\r\n ",
					     "{}", " {} ", "\n{}\n", "\t{ }\r\n" };

	for (size_t i = 0; i < KMS_ARRAY_SIZE(blank); i++) {
		cJSON *r = NULL;

		ASSERT_ERR(pcall("empty", "list-keys", blank[i], &r), 0);
		ASSERT_TRUE(cJSON_IsArray(fx_get(r, "keys")));
		ASSERT_ERR(pcall("empty", "create-key", blank[i], NULL), KMS_E_MISSING);
		ASSERT_ERR(pcall("empty", "gen-random", blank[i], NULL), KMS_E_MISSING);
		ASSERT_ERR(pcall("empty", "describe-key", blank[i], NULL), KMS_E_MISSING);
		ASSERT_ERR(pcall("empty", "create-datakey", blank[i], NULL), KMS_E_MISSING);
		ASSERT_ERR(pcall("empty", "encrypt-data", blank[i], NULL), KMS_E_MISSING);
		ASSERT_ERR(pcall("empty", "decrypt-data", blank[i], NULL), KMS_E_MISSING);
	}
	/* api_call with no bytes at all (NULL is allowed for len 0 by the interface). */
	ASSERT_ERR(call_raw("empty", "list-keys", API_SCOPE_PROJECT, NULL, "", 0, NULL), 0);
}

TEST(unknown_fields_ignored)
{
	cJSON *r = NULL;

	ASSERT_ERR(pcall("unk", "list-keys", "{\"foo\":\"bar\",\"n\":[1,{\"a\":null}]}", &r), 0);
	ASSERT_ERR(pcall("unk", "create-key",
			 "{\"key_alias\":\"u\",\"enterprise_project_id\":\"0\",\"x\":1}", &r),
		   0);
}

/* ---- batch bodies (kms_api.h): one request per line, one response line each ---- */

TEST(batch_lines)
{
	size_t lines = 0;
	cJSON *r = NULL;

	ASSERT_ERR(call_batch("batch", "create-key",
			      "{\"key_alias\":\"b1\"}\n{\"key_alias\":\"b1\"}\n\n{\"key_alias\":"
			      "\"b2\"}\n",
			      &lines, &r),
		   0);
	ASSERT_EQ(lines, 3);
	ASSERT_TRUE(fx_key_id_form(fx_str(r, "key_info.key_id")));
	ASSERT_TRUE(strstr(fx_last(), "}\n{\"error\":{\"error_code\":\"KMS.1104\"") != NULL);
	/* A bad line fails alone. */
	ASSERT_ERR(call_batch("batch", "list-keys", "{}\n{\n{\"limit\":\"0\"}", &lines, &r), 0);
	ASSERT_EQ(lines, 3);
	ASSERT_STREQ(fx_str_(r), "KMS.1601");
	ASSERT_TRUE(strstr(fx_last(), "\n{\"error\":{\"error_code\":\"KMS.0202\"") != NULL);
	/* A pretty-printed single request is one request, not a batch. */
	ASSERT_ERR(call_batch("batch", "list-keys", "{\n  \"limit\": \"1\"\n}\n", &lines, &r), 0);
	ASSERT_EQ(lines, 1);
	ASSERT_EQ(cJSON_GetArraySize(fx_get(r, "keys")), 1);
	/* Lines that do not start with a complete object: one (bad) request. */
	ASSERT_ERR(call_batch("batch", "list-keys", "{\n{}\n", &lines, &r), KMS_E_BAD_JSON);
	ASSERT_EQ(lines, 1);
}

TEST(batch_unauthorised_answers_once)
{
	struct api_caller c = { .project = "batch" };
	size_t lines = 0;
	const char *body = "{}\n{}\n{}\n";

	ASSERT_ERR(fx_call_lines(fx_svc(), &c, "list-keys", API_SCOPE_PROJECT, body, strlen(body),
				 true, &lines, NULL),
		   KMS_E_TOKEN_MISSING);
	ASSERT_EQ(lines, 1);
}

/* ---- sequence (KMS.0206), on every action ---- */

TEST(sequence_every_action)
{
	static const char *const bad[] = {
		"\"\"",
		"\"919c82d4-8046-4722-9094-35c3c6524cf\"",
		"\"919c82d4-8046-4722-9094-35c3c6524cfff\"",
		"\"919c82d4-8046-4722-9094-35c3c6524cf!\"",
		"\"919c82d4 8046-4722-9094-35c3c6524cff\"",
		"\"919c82d4-8046-4722-9094-35c3c6524c\\u00e9\"",
		"123",
		"true",
		"{}",
		"[\"919c82d4-8046-4722-9094-35c3c6524cff\"]",
	};
	struct valid_ctx v;
	cJSON *r = NULL;
	size_t before = 0;

	STEP(valid_setup(&v, "seq"));
	for (size_t i = 0; i < KMS_ARRAY_SIZE(all_actions); i++) {
		const char *a = all_actions[i];

		ASSERT_ERR(pcall("seq", a, valid_request(&v, a, ""), NULL), 0);
		ASSERT_ERR(pcall("seq", a,
				 valid_request(&v, a,
					       ",\"sequence\":"
					       "\"919c82d4-8046-4722-9094-35c3c6524cff\""),
				 NULL),
			   0);
		ASSERT_ERR(pcall("seq", a,
				 valid_request(&v, a,
					       ",\"sequence\":"
					       "\"ABCDEFGH-0000-zzzz-9094-35c3c6524cff\""),
				 NULL),
			   0);
		for (size_t j = 0; j < KMS_ARRAY_SIZE(bad); j++) {
			int e = pcall("seq", a,
				      valid_request(&v, a, fx_fmt(",\"sequence\":%s", bad[j])),
				      NULL);

			if (e != KMS_E_BAD_SEQUENCE)
				fprintf(stderr, "\t%s with sequence %s\n", a, bad[j]);
			ASSERT_ERR(e, KMS_E_BAD_SEQUENCE);
		}
	}
	/* A refused create-key created nothing. */
	ASSERT_ERR(pcall("seq", "list-keys", "{}", &r), 0);
	before = (size_t)fx_get(r, "total")->valuedouble;
	ASSERT_ERR(pcall("seq", "create-key", "{\"key_alias\":\"never\",\"sequence\":\"x\"}", NULL),
		   KMS_E_BAD_SEQUENCE);
	ASSERT_ERR(pcall("seq", "list-keys", "{}", &r), 0);
	ASSERT_EQ((size_t)fx_get(r, "total")->valuedouble, before);
	ASSERT_ERR(pcall("seq", "describe-key", "{\"key_id\":\"alias/never\"}", NULL),
		   KMS_E_KEY_NOT_FOUND);
}

/* ---- authorisation ---- */

static int call_claims(const char *project, const char *action, const struct auth_claims *claims,
		       int auth_error, const char *json)
{
	struct api_caller c = { .project = project,
				.claims = claims,
				.auth_error = auth_error,
				.uid = 1000,
				.gid = 1000,
				.pid = 1 };

	return fx_call_as(fx_svc(), &c, action, API_SCOPE_PROJECT, json, strlen(json), NULL);
}

static struct auth_claims claims_for(const char *project, enum kms_role role, int64_t expiry)
{
	return fx_claims(project, "tester", role, expiry);
}

TEST(untrusted_without_claims_0301)
{
	struct valid_ctx v;

	STEP(valid_setup(&v, "auth1"));
	for (size_t i = 0; i < KMS_ARRAY_SIZE(all_actions); i++) {
		const char *a = all_actions[i], *req = valid_request(&v, a, "");

		ASSERT_ERR(call_claims("auth1", a, NULL, 0, req), KMS_E_TOKEN_MISSING);
		ASSERT_ERR(call_claims("auth1", a, NULL, KMS_E_TOKEN_MISSING, req),
			   KMS_E_TOKEN_MISSING);
		/* Why the file system has no claims is passed on as is. */
		ASSERT_ERR(call_claims("auth1", a, NULL, KMS_E_TOKEN_INVALID, req),
			   KMS_E_TOKEN_INVALID);
		ASSERT_ERR(call_claims("auth1", a, NULL, KMS_E_TOKEN_EXPIRED, req),
			   KMS_E_TOKEN_EXPIRED);
	}
	/* Authorisation comes before the body is even parsed. */
	ASSERT_ERR(call_claims("auth1", "list-keys", NULL, 0, "{"), KMS_E_TOKEN_MISSING);
	ASSERT_LAST_ERROR("KMS.0301", "Invalid or null X-Auth-Token.");
}

/* Every action, each with a valid request, called with claims c (no auth error): err. */
static void every_action_answers(const char *project, struct valid_ctx *v,
				 const struct auth_claims *c, int err)
{
	for (size_t i = 0; i < KMS_ARRAY_SIZE(all_actions); i++) {
		const char *a = all_actions[i];

		EXPECT(a, call_claims(project, a, c, 0, valid_request(v, a, "")), err);
	}
}

TEST(untrusted_other_project_0302)
{
	struct auth_claims c = claims_for("auth-other", KMS_ROLE_ADMIN, time(NULL) + 3600);
	struct valid_ctx v;

	STEP(valid_setup(&v, "auth2"));
	STEP(every_action_answers("auth2", &v, &c, KMS_E_TOKEN_INVALID));
	ASSERT_LAST_ERROR("KMS.0302", "Invalid X-Auth-Token.");
	/* A prefix of the project is another project. */
	c = claims_for("auth", KMS_ROLE_ADMIN, time(NULL) + 3600);
	ASSERT_ERR(call_claims("auth2", "list-keys", &c, 0, "{}"), KMS_E_TOKEN_INVALID);
	c = claims_for("auth22", KMS_ROLE_ADMIN, time(NULL) + 3600);
	ASSERT_ERR(call_claims("auth2", "list-keys", &c, 0, "{}"), KMS_E_TOKEN_INVALID);
}

TEST(untrusted_expired_0303)
{
	struct auth_claims c = claims_for("auth3", KMS_ROLE_ADMIN, time(NULL) - 1);
	struct valid_ctx v;

	STEP(valid_setup(&v, "auth3"));
	STEP(every_action_answers("auth3", &v, &c, KMS_E_TOKEN_EXPIRED));
	ASSERT_LAST_ERROR("KMS.0303", "X-Auth-Token expired.");
	c = claims_for("auth3", KMS_ROLE_ADMIN, time(NULL) + 3600);
	ASSERT_ERR(call_claims("auth3", "list-keys", &c, 0, "{}"), 0);
}

TEST(role_matrix_0307)
{
	static const enum kms_role roles[] = { KMS_ROLE_NONE, KMS_ROLE_VIEWER, KMS_ROLE_CRYPTO,
					       KMS_ROLE_ADMIN };
	struct valid_ctx v;

	STEP(valid_setup(&v, "roles"));
	for (size_t i = 0; i < KMS_ARRAY_SIZE(all_actions); i++) {
		const char *a = all_actions[i];

		for (size_t j = 0; j < KMS_ARRAY_SIZE(roles); j++) {
			struct auth_claims c = claims_for("roles", roles[j], time(NULL) + 3600);
			int e = call_claims("roles", a, &c, 0, valid_request(&v, a, ""));

			if (roles[j] >= expected_min_role(a))
				ASSERT_ERR(e, 0);
			else
				ASSERT_ERR(e, KMS_E_FORBIDDEN);
		}
	}
	{
		/* The two named in the brief, and a viewer's bad JSON: role first. */
		struct auth_claims viewer = claims_for("roles", KMS_ROLE_VIEWER, time(NULL) + 60);
		struct auth_claims crypto = claims_for("roles", KMS_ROLE_CRYPTO, time(NULL) + 60);

		ASSERT_ERR(call_claims("roles", "create-datakey", &viewer, 0,
				       fx_fmt("{\"key_id\":\"%s\"}", v.id)),
			   KMS_E_FORBIDDEN);
		ASSERT_LAST_ERROR("KMS.0307", "No access permissions.");
		ASSERT_ERR(call_claims("roles", "create-key", &crypto, 0, "{\"key_alias\":\"z\"}"),
			   KMS_E_FORBIDDEN);
		ASSERT_ERR(call_claims("roles", "create-key", &crypto, 0, "{"), KMS_E_FORBIDDEN);
		ASSERT_ERR(call_claims("roles", "gen-random", &viewer, 0, "{"), KMS_E_FORBIDDEN);
		ASSERT_ERR(call_claims("roles", "describe-key", &viewer, 0, "{"), KMS_E_BAD_JSON);
	}
}

/* api_caller_may, which the file system asks what a caller may see, decides exactly as api_call
 * authorises: for every action and every kind of caller its answer is api_call's (FORBIDDEN:
 * no grant is held here, so api_call refuses too). */
TEST(caller_may_agrees_with_api_call)
{
	static const enum kms_role roles[] = { KMS_ROLE_NONE, KMS_ROLE_VIEWER, KMS_ROLE_CRYPTO,
					       KMS_ROLE_ADMIN };
	struct store_token_info rec = { .id = "fedcba9876543210",
					.project = "may",
					.user = "rev",
					.role = KMS_ROLE_ADMIN,
					.expiry = INT64_MAX };
	struct auth_claims revoked = claims_for("may", KMS_ROLE_ADMIN, time(NULL) + 3600);
	struct auth_claims other = claims_for("may-other", KMS_ROLE_ADMIN, time(NULL) + 3600);
	struct auth_claims expired = claims_for("may", KMS_ROLE_ADMIN, time(NULL) - 1);
	struct valid_ctx v;

	STEP(valid_setup(&v, "may"));
	snprintf(revoked.id, sizeof(revoked.id), "%s", rec.id);
	ASSERT_OK(store_token_record(fx_svc()->store, &rec));
	ASSERT_OK(store_token_revoke(fx_svc()->store, rec.id));
	for (size_t i = 0; i < KMS_ARRAY_SIZE(all_actions); i++) {
		const char *a = all_actions[i], *req = valid_request(&v, a, "");
		const struct api_action *act = api_action_find(a, API_SCOPE_PROJECT);
		const struct auth_claims *cases[KMS_ARRAY_SIZE(roles) + 3] = { &revoked, &other,
									       &expired };
		struct auth_claims by_role[KMS_ARRAY_SIZE(roles)];
		struct api_caller c = { .project = "may", .uid = 1000, .gid = 1000 };

		ASSERT_TRUE(act != NULL);
		for (size_t j = 0; j < KMS_ARRAY_SIZE(roles); j++) {
			by_role[j] = claims_for("may", roles[j], time(NULL) + 3600);
			cases[3 + j] = &by_role[j];
		}
		for (size_t j = 0; j < KMS_ARRAY_SIZE(cases); j++) {
			c.claims = cases[j];
			ASSERT_ERR(api_caller_may(fx_svc(), &c, act, (int64_t)time(NULL) * 1000),
				   call_claims("may", a, cases[j], 0, req));
		}
		c.claims = NULL;
		ASSERT_ERR(api_caller_may(fx_svc(), &c, act, (int64_t)time(NULL) * 1000),
			   KMS_E_TOKEN_MISSING);
		c.auth_error = KMS_E_TOKEN_INVALID;
		ASSERT_ERR(api_caller_may(fx_svc(), &c, act, (int64_t)time(NULL) * 1000),
			   KMS_E_TOKEN_INVALID);
		c.auth_error = 0;
		c.trusted = true;
		ASSERT_ERR(api_caller_may(fx_svc(), &c, act, (int64_t)time(NULL) * 1000), 0);
	}
	/* What the tree asks: any role may list keys; revoked, expired and foreign claims may not. */
	{
		const struct api_action *list = api_action_find("list-keys", API_SCOPE_PROJECT);
		struct auth_claims viewer = claims_for("may", KMS_ROLE_VIEWER, time(NULL) + 60);
		struct api_caller c = { .project = "may", .claims = &viewer };

		ASSERT_ERR(api_caller_may(fx_svc(), &c, list, (int64_t)time(NULL) * 1000), 0);
		ASSERT_ERR(api_caller_may(fx_svc(), &c, list, ((int64_t)time(NULL) + 61) * 1000),
			   KMS_E_TOKEN_EXPIRED);
		c.claims = &revoked;
		ASSERT_ERR(api_caller_may(fx_svc(), &c, list, (int64_t)time(NULL) * 1000),
			   KMS_E_TOKEN_INVALID);
	}
}

TEST(real_token_end_to_end)
{
	static const uint8_t secret[AUTH_SECRET_BYTES] = { 7, 7, 7 };
	struct api_caller c = { .project = "tok" };
	struct auth_claims claims;
	char tok[AUTH_TOKEN_MAX], id[FX_ID_LEN];
	cJSON *r = NULL;
	const char *req;

	STEP(fx_key("tok", "k", id));
	ASSERT_OK(auth_token_issue(secret, "tok", "bob", KMS_ROLE_CRYPTO, time(NULL) + 600, tok,
				   sizeof(tok), NULL));
	ASSERT_OK(auth_token_verify(secret, tok, strlen(tok), time(NULL), &claims));
	c.claims = &claims;
	req = fx_fmt("{\"key_id\":\"%s\"}", id);
	ASSERT_ERR(
		fx_call_as(fx_svc(), &c, "create-datakey", API_SCOPE_PROJECT, req, strlen(req), &r),
		0);
	ASSERT_STREQ(fx_str(r, "key_id"), id);
	c.project = "tok2";
	ASSERT_ERR(
		fx_call_as(fx_svc(), &c, "create-datakey", API_SCOPE_PROJECT, req, strlen(req), &r),
		KMS_E_TOKEN_INVALID);
}

/* ---- create-key (4.1) ---- */

TEST(create_key_success)
{
	cJSON *r = NULL;
	const cJSON *info;

	ASSERT_ERR(pcall("ck", "create-key", "{\"key_alias\":\"app\"}", &r), 0);
	ASSERT_EQ(cJSON_GetArraySize(r), 1);
	info = fx_get(r, "key_info");
	ASSERT_TRUE(cJSON_IsObject(info));
	ASSERT_EQ(cJSON_GetArraySize(info), 2);
	ASSERT_TRUE(fx_key_id_form(fx_str(info, "key_id")));
	ASSERT_STREQ(fx_str(info, "domain_id"), store_domain_id(fx_svc()->store));
	/* compact: no blanks anywhere in this response */
	ASSERT_TRUE(strchr(fx_last(), ' ') == NULL);
	ASSERT_TRUE(strncmp(fx_last(), "{\"key_info\":{\"key_id\":\"", 23) == 0);
	/* All optional fields at their only allowed values. */
	ASSERT_ERR(pcall("ck", "create-key",
			 "{\"key_alias\":\"app2\",\"key_spec\":\"AES_256\",\"key_usage\":"
			 "\"ENCRYPT_DECRYPT\",\"origin\":\"kms\",\"key_description\":\"d\","
			 "\"sequence\":\"919c82d4-8046-4722-9094-35c3c6524cff\"}",
			 &r),
		   0);
}

TEST(create_key_alias_valid_forms)
{
	char a255[256], req[400];
	cJSON *r = NULL;

	memset(a255, 'a', 255);
	a255[255] = 0;
	snprintf(req, sizeof(req), "{\"key_alias\":\"%s\"}", a255);
	ASSERT_ERR(pcall("ck-alias", "create-key", req, NULL), 0);
	ASSERT_ERR(pcall("ck-alias", "describe-key", fx_fmt("{\"key_id\":\"alias/%s\"}", a255), &r),
		   0);
	ASSERT_STREQ(fx_str(r, "key_info.key_alias"), a255);
	ASSERT_ERR(pcall("ck-alias", "create-key", "{\"key_alias\":\"x\"}", NULL), 0);
	ASSERT_ERR(pcall("ck-alias", "create-key", "{\"key_alias\":\"A-z_0:9/x\"}", NULL), 0);
	ASSERT_ERR(pcall("ck-alias", "create-key", "{\"key_alias\":\"alias/x\"}", NULL), 0);
	ASSERT_ERR(pcall("ck-alias", "create-key", "{\"key_alias\":\"default\"}", NULL), 0);
	ASSERT_ERR(pcall("ck-alias", "create-key", "{\"key_alias\":\"x/defaults\"}", NULL), 0);
	ASSERT_ERR(pcall("ck-alias", "describe-key", "{\"key_id\":\"alias/A-z_0:9/x\"}", &r), 0);
	ASSERT_STREQ(fx_str(r, "key_info.key_alias"), "A-z_0:9/x");
}

TEST(create_key_alias_invalid_1101)
{
	static const char *const bad[] = {
		"\"\"",		"\"a b\"",   "\"a.b\"",	  "\"\\u00e9\"", "\"x/default\"",
		"\"/default\"", "\"a\\nb\"", "\"a%2Fb\"", "\"a\\\"b\"",	 "12",
		"true",		"{}",	     "[\"a\"]",
	};
	char a256[257], req[400];
	cJSON *r = NULL;

	for (size_t i = 0; i < KMS_ARRAY_SIZE(bad); i++) {
		int e = pcall("ck-bad", "create-key", fx_fmt("{\"key_alias\":%s}", bad[i]), NULL);

		if (e != KMS_E_ALIAS_INVALID)
			fprintf(stderr, "\tkey_alias %s\n", bad[i]);
		ASSERT_ERR(e, KMS_E_ALIAS_INVALID);
	}
	memset(a256, 'a', 256);
	a256[256] = 0;
	snprintf(req, sizeof(req), "{\"key_alias\":\"%s\"}", a256);
	ASSERT_ERR(pcall("ck-bad", "create-key", req, NULL), KMS_E_ALIAS_INVALID);
	ASSERT_ERR(pcall("ck-bad", "create-key", "{}", NULL), KMS_E_MISSING);
	ASSERT_ERR(pcall("ck-bad", "create-key", "{\"key_alias\":null}", NULL), KMS_E_MISSING);
	ASSERT_ERR(pcall("ck-bad", "create-key", "{\"alias\":\"a\"}", NULL), KMS_E_MISSING);
	ASSERT_ERR(pcall("ck-bad", "list-keys", "{}", &r), 0);
	ASSERT_EQ(fx_get(r, "total")->valuedouble, 0);
}

/* An alias with '/' is listed under aliases/ with each '/' written %2F: that name must fit in
 * one directory entry (255 bytes), so "x" + 63 × "/x" + "yy" (255 bytes written) is the longest
 * such alias; one more byte is KMS.1101, however short the alias itself. */
static void alias_with_slashes(char *out, size_t pairs, const char *tail)
{
	size_t n = 0;

	out[n++] = 'x';
	for (size_t i = 0; i < pairs; i++) {
		out[n++] = '/';
		out[n++] = 'x';
	}
	snprintf(out + n, 8, "%s", tail);
}

TEST(create_key_alias_entry_fits_name_max)
{
	char fits[256], over[256], slashes[256];
	cJSON *r = NULL;

	alias_with_slashes(fits, 63, "yy");  /* 129 characters, 255 bytes as %2F */
	alias_with_slashes(over, 63, "yyy"); /* 130 characters, 256 bytes */
	memset(slashes, '/', 86);	     /* 86 × %2F = 258 bytes */
	slashes[86] = 0;
	ASSERT_EQ(strlen(fits), 129);
	ASSERT_ERR(pcall("ck-slash", "create-key", fx_fmt("{\"key_alias\":\"%s\"}", over), NULL),
		   KMS_E_ALIAS_INVALID);
	ASSERT_LAST_ERROR("KMS.1101", "Invalid key_alias.");
	ASSERT_ERR(pcall("ck-slash", "create-key", fx_fmt("{\"key_alias\":\"%s\"}", slashes), NULL),
		   KMS_E_ALIAS_INVALID);
	ASSERT_ERR(pcall("ck-slash", "list-keys", "{}", &r), 0);
	ASSERT_EQ(fx_num(r, "total"), 0);
	ASSERT_ERR(pcall("ck-slash", "create-key", fx_fmt("{\"key_alias\":\"%s\"}", fits), &r), 0);
	ASSERT_ERR(pcall("ck-slash", "describe-key", fx_fmt("{\"key_id\":\"alias/%s\"}", fits), &r),
		   0);
	ASSERT_STREQ(fx_str(r, "key_info.key_alias"), fits);
	slashes[85] = 0; /* 85 × %2F = 255 bytes */
	ASSERT_ERR(pcall("ck-slash", "create-key", fx_fmt("{\"key_alias\":\"%s\"}", slashes), NULL),
		   0);
	/* update-key-alias applies the same bound, in both folders; the key keeps its alias. */
	{
		const char *id = fx_str(r, "key_info.key_id");
		char kid[FX_ID_LEN];

		snprintf(kid, sizeof(kid), "%s", id);
		ASSERT_ERR(pcall("ck-slash", "update-key-alias",
				 fx_fmt("{\"key_id\":\"%s\",\"key_alias\":\"%s\"}", kid, over),
				 NULL),
			   KMS_E_ALIAS_INVALID);
		ASSERT_ERR(call("ck-slash", "update-key-alias", API_SCOPE_KEY, kid,
				fx_fmt("{\"key_alias\":\"%s\"}", over), NULL),
			   KMS_E_ALIAS_INVALID);
		ASSERT_ERR(pcall("ck-slash", "describe-key", fx_kid(kid), &r), 0);
		ASSERT_STREQ(fx_str(r, "key_info.key_alias"), fits);
	}
}

/* An alias is taken as sent or refused: "a\u0000b" must not quietly become "a". Refused as an
 * invalid alias or, as kmsfs refuses \u0000 in every string, as bad JSON. */
TEST(create_key_alias_with_nul_refused)
{
	cJSON *r = NULL;
	int e = pcall("ck-nul", "create-key", "{\"key_alias\":\"a\\u0000b\"}", NULL);

	ASSERT_TRUE(e == KMS_E_ALIAS_INVALID || e == KMS_E_BAD_JSON);
	ASSERT_ERR(pcall("ck-nul", "list-keys", "{}", &r), 0);
	ASSERT_EQ(fx_get(r, "total")->valuedouble, 0);
	ASSERT_ERR(pcall("ck-nul", "describe-key", "{\"key_id\":\"alias/a\"}", NULL),
		   KMS_E_KEY_NOT_FOUND);
}

TEST(create_key_description)
{
	char d255[256], d256[257], req[700];
	cJSON *r = NULL;

	memset(d255, 'd', 255);
	d255[255] = 0;
	memset(d256, 'd', 256);
	d256[256] = 0;
	snprintf(req, sizeof(req), "{\"key_alias\":\"d255\",\"key_description\":\"%s\"}", d255);
	ASSERT_ERR(pcall("ck-desc", "create-key", req, NULL), 0);
	ASSERT_ERR(pcall("ck-desc", "describe-key", "{\"key_id\":\"alias/d255\"}", &r), 0);
	ASSERT_STREQ(fx_str(r, "key_info.key_description"), d255);
	snprintf(req, sizeof(req), "{\"key_alias\":\"d256\",\"key_description\":\"%s\"}", d256);
	ASSERT_ERR(pcall("ck-desc", "create-key", req, NULL), KMS_E_DESCRIPTION_INVALID);
	ASSERT_ERR(pcall("ck-desc", "create-key", "{\"key_alias\":\"e\",\"key_description\":\"\"}",
			 NULL),
		   0);
	ASSERT_ERR(pcall("ck-desc", "describe-key", "{\"key_id\":\"alias/e\"}", &r), 0);
	ASSERT_STREQ(fx_str(r, "key_info.key_description"), "");
	ASSERT_ERR(
		pcall("ck-desc", "create-key", "{\"key_alias\":\"f\",\"key_description\":5}", NULL),
		KMS_E_DESCRIPTION_INVALID);
	ASSERT_ERR(pcall("ck-desc", "create-key",
			 "{\"key_alias\":\"f\",\"key_description\":[\"x\"]}", NULL),
		   KMS_E_DESCRIPTION_INVALID);
	/* Raw bytes that are not UTF-8. */
	ASSERT_ERR(pcall("ck-desc", "create-key",
			 "{\"key_alias\":\"f\",\"key_description\":\"a\xff\xfe\"}", NULL),
		   KMS_E_DESCRIPTION_INVALID);
	ASSERT_ERR(pcall("ck-desc", "create-key",
			 "{\"key_alias\":\"f\",\"key_description\":\"\xc3\"}", NULL),
		   KMS_E_DESCRIPTION_INVALID);
	ASSERT_ERR(pcall("ck-desc", "describe-key", "{\"key_id\":\"alias/f\"}", NULL),
		   KMS_E_KEY_NOT_FOUND);
}

/* The limit counts characters (kms-api.md 4.1: 0..255 chars): 255 two-byte characters are
 * valid, and what is stored must be what was sent, not a cut at 255 bytes. */
TEST(create_key_description_multibyte)
{
	char desc[2 * 255 + 1], req[700];
	cJSON *r = NULL;

	for (size_t i = 0; i < 255; i++)
		memcpy(desc + 2 * i, "\xc3\xa9", 2); /* U+00E9 */
	desc[2 * 255] = 0;
	snprintf(req, sizeof(req), "{\"key_alias\":\"mb\",\"key_description\":\"%s\"}", desc);
	ASSERT_ERR(pcall("ck-mb", "create-key", req, NULL), 0);
	ASSERT_ERR(pcall("ck-mb", "describe-key", "{\"key_id\":\"alias/mb\"}", &r), 0);
	ASSERT_STREQ(fx_str(r, "key_info.key_description"), desc);
	/* 256 of them are one too many. */
	snprintf(req, sizeof(req), "{\"key_alias\":\"mb2\",\"key_description\":\"%s\xc3\xa9\"}",
		 desc);
	ASSERT_ERR(pcall("ck-mb", "create-key", req, NULL), KMS_E_DESCRIPTION_INVALID);
}

TEST(create_key_spec_usage_origin)
{
	/* req: members after the alias. */
	static const struct fx_refusal bad[] = {
		{ "\"key_spec\":\"RSA_2048\"", KMS_E_KEY_SPEC },
		{ "\"key_spec\":\"aes_256\"", KMS_E_KEY_SPEC },
		{ "\"key_spec\":\"AES_128\"", KMS_E_KEY_SPEC },
		{ "\"key_spec\":\"\"", KMS_E_KEY_SPEC },
		{ "\"key_spec\":256", KMS_E_KEY_SPEC },
		{ "\"key_usage\":\"SIGN_VERIFY\"", KMS_E_BAD_PARAM },
		{ "\"key_usage\":\"GENERATE_VERIFY_MAC\"", KMS_E_BAD_PARAM },
		{ "\"key_usage\":1", KMS_E_BAD_PARAM },
		{ "\"origin\":\"KMS\"", KMS_E_BAD_PARAM },
		{ "\"origin\":\"EXTERNAL\"", KMS_E_BAD_PARAM },
		{ "\"origin\":false", KMS_E_BAD_PARAM },
	};
	cJSON *r = NULL;

	for (size_t i = 0; i < KMS_ARRAY_SIZE(bad); i++)
		ASSERT_ERR(pcall("ck-spec", "create-key",
				 fx_fmt("{\"key_alias\":\"s%zu\",%s}", i, bad[i].req), NULL),
			   bad[i].err);
	ASSERT_ERR(pcall("ck-spec", "list-keys", "{}", &r), 0);
	ASSERT_EQ(fx_get(r, "total")->valuedouble, 0);
	/* null is the same as absent */
	ASSERT_ERR(pcall("ck-spec", "create-key", "{\"key_alias\":\"n\",\"key_spec\":null}", NULL),
		   0);
	/* origin "kms" and "external" (material to import: test-api-import.c) */
	ASSERT_ERR(
		pcall("ck-spec", "create-key", "{\"key_alias\":\"o1\",\"origin\":\"kms\"}", NULL),
		0);
	ASSERT_ERR(pcall("ck-spec", "create-key", "{\"key_alias\":\"o2\",\"origin\":\"external\"}",
			 NULL),
		   0);
	ASSERT_ERR(pcall("ck-spec", "describe-key", "{\"key_id\":\"alias/o2\"}", &r), 0);
	ASSERT_STREQ(fx_str(r, "key_info.origin"), "external");
	ASSERT_STREQ(fx_str(r, "key_info.key_state"), "5");
}

TEST(create_key_duplicate_alias_1104)
{
	cJSON *r = NULL;

	ASSERT_ERR(pcall("ck-dup", "create-key", "{\"key_alias\":\"same\"}", NULL), 0);
	ASSERT_ERR(pcall("ck-dup", "create-key", "{\"key_alias\":\"same\"}", NULL),
		   KMS_E_ALIAS_DUPLICATE);
	ASSERT_LAST_ERROR("KMS.1104", "Duplicate key aliases.");
	ASSERT_ERR(pcall("ck-dup", "create-key",
			 "{\"key_alias\":\"same\",\"key_description\":\"other\"}", NULL),
		   KMS_E_ALIAS_DUPLICATE);
	ASSERT_ERR(pcall("ck-dup", "list-keys", "{}", &r), 0);
	ASSERT_EQ(fx_get(r, "total")->valuedouble, 1);
	/* Aliases are per project. */
	ASSERT_ERR(pcall("ck-dup2", "create-key", "{\"key_alias\":\"same\"}", NULL), 0);
}

static int quota_call(const struct api_service *svc, const struct api_caller *c, const char *req)
{
	return fx_call_as(svc, c, "create-key", API_SCOPE_PROJECT, req, strlen(req), NULL);
}

TEST(create_key_quota_1105)
{
	struct api_service svc = *fx_svc();
	struct api_caller c = { .project = "ck-quota", .trusted = true };
	cJSON *r = NULL;

	svc.key_quota = 3;
	for (int i = 0; i < 3; i++) {
		ASSERT_ERR(quota_call(&svc, &c, fx_fmt("{\"key_alias\":\"q%d\"}", i)), 0);
	}
	ASSERT_ERR(quota_call(&svc, &c, "{\"key_alias\":\"q3\"}"), KMS_E_TOO_MANY_KEYS);
	ASSERT_LAST_ERROR("KMS.1105", "Too many keys.");
	ASSERT_ERR(pcall("ck-quota", "list-keys", "{}", &r), 0);
	ASSERT_EQ(fx_get(r, "total")->valuedouble, 3);
	/* The default quota (100) of the shared service still allows more. */
	ASSERT_ERR(pcall("ck-quota", "create-key", "{\"key_alias\":\"q3\"}", NULL), 0);
	svc.key_quota = 0;
	ASSERT_ERR(quota_call(&svc, &c, "{\"key_alias\":\"q9\"}"), KMS_E_TOO_MANY_KEYS);
}

/* ---- describe-key (4.2, 6) ---- */

TEST(describe_key_fields)
{
	static const char *const members[] = {
		"key_id",	   "domain_id",	       "key_alias",
		"realm",	   "key_spec",	       "key_usage",
		"key_description", "creation_date",    "scheduled_deletion_date",
		"key_state",	   "default_key_flag", "key_type",
		"expiration_time", "origin",	       "key_rotation_enabled",
	};
	char id[FX_ID_LEN];
	int64_t before = now_ms(), after, created;
	const cJSON *info;
	cJSON *r = NULL;

	ASSERT_ERR(
		pcall("dk", "create-key", "{\"key_alias\":\"app\",\"key_description\":\"hi\"}", &r),
		0);
	after = now_ms();
	snprintf(id, sizeof(id), "%s", fx_str(r, "key_info.key_id"));
	ASSERT_ERR(pcall("dk", "describe-key", fx_fmt("{\"key_id\":\"%s\"}", id), &r), 0);
	ASSERT_EQ(cJSON_GetArraySize(r), 1);
	info = fx_get(r, "key_info");
	ASSERT_EQ(cJSON_GetArraySize(info), KMS_ARRAY_SIZE(members));
	for (size_t i = 0; i < KMS_ARRAY_SIZE(members); i++) {
		if (!fx_str(info, members[i]))
			fprintf(stderr, "\tmember %s\n", members[i]);
		ASSERT_TRUE(fx_str(info, members[i]) != NULL); /* all strings */
	}
	ASSERT_STREQ(fx_str(info, "key_id"), id);
	ASSERT_STREQ(fx_str(info, "domain_id"), store_domain_id(fx_svc()->store));
	ASSERT_STREQ(fx_str(info, "key_alias"), "app");
	ASSERT_STREQ(fx_str(info, "realm"), store_region(fx_svc()->store));
	ASSERT_STREQ(fx_str(info, "key_spec"), "AES_256");
	ASSERT_STREQ(fx_str(info, "key_usage"), "ENCRYPT_DECRYPT");
	ASSERT_STREQ(fx_str(info, "key_description"), "hi");
	ASSERT_STREQ(fx_str(info, "scheduled_deletion_date"), "");
	ASSERT_STREQ(fx_str(info, "key_state"), "2");
	ASSERT_STREQ(fx_str(info, "default_key_flag"), "0");
	ASSERT_STREQ(fx_str(info, "key_type"), "1");
	ASSERT_STREQ(fx_str(info, "origin"), "kms");
	ASSERT_STREQ(fx_str(info, "key_rotation_enabled"), "false");
	/* milliseconds, 13 digits */
	ASSERT_EQ(strlen(fx_str(info, "creation_date")), 13);
	created = strtoll(fx_str(info, "creation_date"), NULL, 10);
	ASSERT_LE(before, created);
	ASSERT_LE(created, after);
}

TEST(describe_key_id_forms)
{
	char id[FX_ID_LEN], other[FX_ID_LEN], forms[3][160];
	cJSON *r = NULL;

	STEP(fx_key("dkf", "app", id));
	STEP(fx_key("dkf", "other", other));
	snprintf(forms[0], sizeof(forms[0]), "%s", id);
	snprintf(forms[1], sizeof(forms[1]), "alias/app");
	snprintf(forms[2], sizeof(forms[2]), "kms:%s:%s:alias:app", store_region(fx_svc()->store),
		 store_domain_id(fx_svc()->store));
	for (size_t i = 0; i < KMS_ARRAY_SIZE(forms); i++) {
		ASSERT_ERR(
			pcall("dkf", "describe-key", fx_fmt("{\"key_id\":\"%s\"}", forms[i]), &r),
			0);
		ASSERT_STREQ(fx_str(r, "key_info.key_id"), id);
		/* The same in the key's own folder. */
		ASSERT_ERR(call("dkf", "describe-key", API_SCOPE_KEY, id,
				fx_fmt("{\"key_id\":\"%s\"}", forms[i]), &r),
			   0);
		ASSERT_STREQ(fx_str(r, "key_info.key_id"), id);
	}
	ASSERT_ERR(call("dkf", "describe-key", API_SCOPE_KEY, id, "", &r), 0);
	ASSERT_STREQ(fx_str(r, "key_info.key_alias"), "app");
	ASSERT_ERR(call("dkf", "describe-key", API_SCOPE_KEY, other, "{}", &r), 0);
	ASSERT_STREQ(fx_str(r, "key_info.key_alias"), "other");
}

TEST(describe_key_errors)
{
	static const char *const malformed[] = {
		"",
		"not-a-key",
		"0badc0de-0000-4000-8000-00000000000",
		"0badc0de-0000-4000-8000-0000000000000",
		"0BADC0DE-0000-4000-8000-000000000000",
		"0badc0de_0000_4000_8000_000000000000",
		"0badc0de-00004-000-8000-000000000000",
		"{0badc0de-0000-4000-8000-000000000000}",
		" 0badc0de-0000-4000-8000-00000000000",
		"alias/",
		"alias/a b",
		"alias/x/default",
		"ALIAS/app",
		"alias:app",
		"app",
		"kms:",
		"kms:eu-de",
		"kms:eu-de:x:key:app",
	};
	char id[FX_ID_LEN], other_proj[FX_ID_LEN];

	STEP(fx_key("dke", "app", id));
	STEP(fx_key("dke-other", "theirs", other_proj));
	ASSERT_ERR(pcall("dke", "describe-key", "{}", NULL), KMS_E_MISSING);
	ASSERT_ERR(pcall("dke", "describe-key", "{\"key_id\":null}", NULL), KMS_E_MISSING);
	ASSERT_ERR(pcall("dke", "describe-key", "{\"keyid\":\"alias/app\"}", NULL), KMS_E_MISSING);
	ASSERT_ERR(pcall("dke", "describe-key", "{\"key_id\":123}", NULL), KMS_E_BAD_KEY_ID);
	ASSERT_ERR(pcall("dke", "describe-key", "{\"key_id\":[\"alias/app\"]}", NULL),
		   KMS_E_BAD_KEY_ID);
	ASSERT_ERR(pcall("dke", "describe-key", "{\"key_id\":{}}", NULL), KMS_E_BAD_KEY_ID);
	for (size_t i = 0; i < KMS_ARRAY_SIZE(malformed); i++) {
		int e = pcall("dke", "describe-key", fx_fmt("{\"key_id\":\"%s\"}", malformed[i]),
			      NULL);

		if (e != KMS_E_BAD_KEY_ID)
			fprintf(stderr, "\tkey_id \"%s\"\n", malformed[i]);
		ASSERT_ERR(e, KMS_E_BAD_KEY_ID);
	}
	/* Well-formed but unknown: KMS.0207, whatever the form. */
	ASSERT_ERR(pcall("dke", "describe-key", "{\"key_id\":\"" FX_NO_KEY "\"}", NULL),
		   KMS_E_KEY_NOT_FOUND);
	ASSERT_LAST_ERROR("KMS.0207", "The key does not exist.");
	ASSERT_ERR(pcall("dke", "describe-key", "{\"key_id\":\"alias/nope\"}", NULL),
		   KMS_E_KEY_NOT_FOUND);
	ASSERT_ERR(
		pcall("dke", "describe-key", fx_fmt("{\"key_id\":\"%s\"}", fx_urn("nope")), NULL),
		KMS_E_KEY_NOT_FOUND);
	/* A URN of another region or domain names no key of ours. */
	ASSERT_ERR(pcall("dke", "describe-key",
			 fx_fmt("{\"key_id\":\"kms:xx-yy:%s:alias:app\"}",
				store_domain_id(fx_svc()->store)),
			 NULL),
		   KMS_E_KEY_NOT_FOUND);
	ASSERT_ERR(
		pcall("dke", "describe-key",
		      fx_fmt("{\"key_id\":\"kms:%s:00000000000000000000000000000000:alias:app\"}",
			     store_region(fx_svc()->store)),
		      NULL),
		KMS_E_KEY_NOT_FOUND);
	/* Another project's key, by id or alias. */
	ASSERT_ERR(pcall("dke", "describe-key", fx_fmt("{\"key_id\":\"%s\"}", other_proj), NULL),
		   KMS_E_KEY_NOT_FOUND);
	ASSERT_ERR(pcall("dke", "describe-key", "{\"key_id\":\"alias/theirs\"}", NULL),
		   KMS_E_KEY_NOT_FOUND);
}

/* A URN of this store whose alias part is malformed is a malformed key id (KMS.0205), like
 * "alias/a b"; only a well-formed URN of no key of ours is KMS.0207. */
TEST(describe_key_malformed_urn_0205)
{
	ASSERT_ERR(pcall("dke", "describe-key", fx_fmt("{\"key_id\":\"%s\"}", fx_urn("")), NULL),
		   KMS_E_BAD_KEY_ID);
	ASSERT_ERR(pcall("dke", "describe-key", fx_fmt("{\"key_id\":\"%s\"}", fx_urn("a b")), NULL),
		   KMS_E_BAD_KEY_ID);
	ASSERT_ERR(pcall("dke", "describe-key", fx_fmt("{\"key_id\":\"%s\"}", fx_urn("x/default")),
			 NULL),
		   KMS_E_BAD_KEY_ID);
}

/* "alias/app\u0000x" is not "alias/app": a malformed key id, or bad JSON (\u0000 refused). */
TEST(describe_key_id_with_nul_refused)
{
	char id[FX_ID_LEN];
	int e;

	STEP(fx_key("dk-nul", "app", id));
	e = pcall("dk-nul", "describe-key", "{\"key_id\":\"alias/app\\u0000x\"}", NULL);
	ASSERT_TRUE(e == KMS_E_BAD_KEY_ID || e == KMS_E_BAD_JSON);
	e = pcall("dk-nul", "describe-key", fx_fmt("{\"key_id\":\"%s\\u0000\"}", id), NULL);
	ASSERT_TRUE(e == KMS_E_BAD_KEY_ID || e == KMS_E_BAD_JSON);
}

TEST(describe_key_in_key_folder)
{
	char id[FX_ID_LEN], other[FX_ID_LEN], theirs[FX_ID_LEN];

	STEP(fx_key("dkk", "app", id));
	STEP(fx_key("dkk", "other", other));
	STEP(fx_key("dkk-2", "theirs", theirs));
	/* A key folder serves only its own key. */
	ASSERT_ERR(call("dkk", "describe-key", API_SCOPE_KEY, id,
			fx_fmt("{\"key_id\":\"%s\"}", other), NULL),
		   KMS_E_BAD_KEY_ID);
	ASSERT_ERR(call("dkk", "describe-key", API_SCOPE_KEY, id, "{\"key_id\":\"alias/other\"}",
			NULL),
		   KMS_E_BAD_KEY_ID);
	ASSERT_ERR(call("dkk", "describe-key", API_SCOPE_KEY, id,
			fx_fmt("{\"key_id\":\"%s\"}", fx_urn("other")), NULL),
		   KMS_E_BAD_KEY_ID);
	ASSERT_ERR(call("dkk", "describe-key", API_SCOPE_KEY, id, "{\"key_id\":\"bad\"}", NULL),
		   KMS_E_BAD_KEY_ID);
	/* A folder of no key of this project. */
	ASSERT_ERR(call("dkk", "describe-key", API_SCOPE_KEY, FX_NO_KEY, "{}", NULL),
		   KMS_E_KEY_NOT_FOUND);
	ASSERT_ERR(call("dkk", "describe-key", API_SCOPE_KEY, theirs, "{}", NULL),
		   KMS_E_KEY_NOT_FOUND);
}

/* ---- list-keys (4.3) ---- */

TEST(list_keys_empty_project)
{
	cJSON *r = NULL;

	ASSERT_ERR(pcall("lk-empty", "list-keys", "{}", &r), 0);
	ASSERT_EQ(cJSON_GetArraySize(r), 5);
	ASSERT_TRUE(cJSON_IsArray(fx_get(r, "keys")));
	ASSERT_EQ(cJSON_GetArraySize(fx_get(r, "keys")), 0);
	ASSERT_TRUE(cJSON_IsArray(fx_get(r, "key_details")));
	ASSERT_EQ(cJSON_GetArraySize(fx_get(r, "key_details")), 0);
	STEP(fx_page_ends(r, "false", ""));
	ASSERT_TRUE(cJSON_IsNumber(fx_get(r, "total")));
	ASSERT_EQ(fx_get(r, "total")->valuedouble, 0);
	ASSERT_STREQ(fx_last(), "{\"keys\":[],\"key_details\":[],\"next_marker\":\"\","
				"\"truncated\":\"false\",\"total\":0}\n");
}

static void list_ids(cJSON *r, char ids[][FX_ID_LEN], size_t *n)
{
	const cJSON *k;

	*n = 0;
	cJSON_ArrayForEach(k, fx_get(r, "keys"))
	{
		ASSERT_TRUE(cJSON_IsString(k));
		snprintf(ids[*n], FX_ID_LEN, "%s", k->valuestring);
		(*n)++;
	}
}

/* list-keys req in project "lk": *r gets the response and got its key ids, which must be want. */
static void list_page(const char *req, cJSON **r, char got[][FX_ID_LEN], size_t want)
{
	size_t n;

	ASSERT_ERR(pcall("lk", "list-keys", req, r), 0);
	list_ids(*r, got, &n);
	ASSERT_EQ(n, want);
}

TEST(list_keys_order_and_paging)
{
	char ids[6][FX_ID_LEN], got[8][FX_ID_LEN], alias[8];
	cJSON *r = NULL;

	for (int i = 0; i < 6; i++) {
		snprintf(alias, sizeof(alias), "k%d", i);
		STEP(fx_key("lk", alias, ids[i]));
	}
	STEP(list_page("{}", &r, got, 6));
	for (int i = 0; i < 6; i++)
		ASSERT_STREQ(got[i], ids[i]);
	ASSERT_EQ(fx_get(r, "total")->valuedouble, 6);
	STEP(fx_page_ends(r, "false", ""));

	STEP(list_page("{\"limit\":\"4\"}", &r, got, 4));
	ASSERT_STREQ(got[3], ids[3]);
	STEP(fx_page_ends(r, "true", "4"));
	ASSERT_EQ(fx_get(r, "total")->valuedouble, 6);

	/* Follow next_marker to the end. */
	STEP(list_page("{\"limit\":\"4\",\"marker\":\"4\"}", &r, got, 2));
	ASSERT_STREQ(got[0], ids[4]);
	ASSERT_STREQ(got[1], ids[5]);
	STEP(fx_page_ends(r, "false", ""));

	STEP(list_page("{\"limit\":\"2\",\"marker\":\"2\"}", &r, got, 2));
	ASSERT_STREQ(got[0], ids[2]);
	STEP(fx_page_ends(r, "true", "4"));

	/* Exactly the rest: not truncated. */
	ASSERT_ERR(pcall("lk", "list-keys", "{\"limit\":\"6\"}", &r), 0);
	ASSERT_STREQ(fx_str(r, "truncated"), "false");
	/* Past the end. */
	STEP(list_page("{\"marker\":\"6\"}", &r, got, 0));
	ASSERT_EQ(fx_get(r, "total")->valuedouble, 6);
	ASSERT_STREQ(fx_str(r, "truncated"), "false");
	STEP(list_page("{\"marker\":\"100\"}", &r, got, 0));
	/* Lenient numbers: JSON integers work like the strings. */
	STEP(list_page("{\"limit\":2,\"marker\":1}", &r, got, 2));
	ASSERT_STREQ(got[0], ids[1]);
	ASSERT_STREQ(fx_str(r, "next_marker"), "3");
	ASSERT_ERR(pcall("lk", "list-keys", "{\"limit\":\"1000\"}", &r), 0);
}

TEST(list_keys_details_match_describe)
{
	char id[FX_ID_LEN];
	cJSON *r = NULL, *d = NULL;
	const cJSON *k;
	size_t i = 0;

	STEP(fx_key("lkd", "a", id));
	STEP(fx_key("lkd", "b", id));
	ASSERT_ERR(pcall("lkd", "list-keys", "{}", &r), 0);
	ASSERT_EQ(cJSON_GetArraySize(fx_get(r, "key_details")), 2);
	cJSON_ArrayForEach(k, fx_get(r, "key_details"))
	{
		const char *kid = fx_str(k, "key_id");

		ASSERT_STREQ(kid, cJSON_GetArrayItem(fx_get(r, "keys"), (int)i)->valuestring);
		ASSERT_ERR(pcall("lkd", "describe-key", fx_fmt("{\"key_id\":\"%s\"}", kid), &d), 0);
		ASSERT_TRUE(cJSON_Compare(fx_get(d, "key_info"), k, true));
		i++;
	}
}

TEST(list_keys_state_filter)
{
	char id[FX_ID_LEN];
	cJSON *r = NULL;

	STEP(fx_key("lks", "a", id));
	ASSERT_ERR(pcall("lks", "list-keys", "{\"key_state\":\"2\"}", &r), 0);
	ASSERT_EQ(fx_get(r, "total")->valuedouble, 1);
	ASSERT_ERR(pcall("lks", "list-keys", "{\"key_state\":2}", &r), 0);
	ASSERT_EQ(fx_get(r, "total")->valuedouble, 1);
	for (int s = 1; s <= 5; s++) {
		if (s == 2)
			continue;
		ASSERT_ERR(pcall("lks", "list-keys", fx_fmt("{\"key_state\":\"%d\"}", s), &r), 0);
		ASSERT_EQ(fx_get(r, "total")->valuedouble, 0);
		ASSERT_EQ(cJSON_GetArraySize(fx_get(r, "keys")), 0);
	}
}

TEST(list_keys_errors)
{
	static const struct fx_refusal bad[] = {
		{ "{\"limit\":\"0\"}", KMS_E_LIMIT_INVALID },
		{ "{\"limit\":\"1001\"}", KMS_E_LIMIT_INVALID },
		{ "{\"limit\":\"-1\"}", KMS_E_LIMIT_INVALID },
		{ "{\"limit\":\"abc\"}", KMS_E_LIMIT_INVALID },
		{ "{\"limit\":\"\"}", KMS_E_LIMIT_INVALID },
		{ "{\"limit\":\" 1\"}", KMS_E_LIMIT_INVALID },
		{ "{\"limit\":\"1.5\"}", KMS_E_LIMIT_INVALID },
		{ "{\"limit\":\"0x10\"}", KMS_E_LIMIT_INVALID },
		{ "{\"limit\":1.5}", KMS_E_LIMIT_INVALID },
		{ "{\"limit\":-1}", KMS_E_LIMIT_INVALID },
		{ "{\"limit\":0}", KMS_E_LIMIT_INVALID },
		{ "{\"limit\":true}", KMS_E_LIMIT_INVALID },
		{ "{\"limit\":[1]}", KMS_E_LIMIT_INVALID },
		{ "{\"marker\":\"-1\"}", KMS_E_MARKER_INVALID },
		{ "{\"marker\":-1}", KMS_E_MARKER_INVALID },
		{ "{\"marker\":\"x\"}", KMS_E_MARKER_INVALID },
		{ "{\"marker\":0.5}", KMS_E_MARKER_INVALID },
		{ "{\"marker\":{}}", KMS_E_MARKER_INVALID },
		{ "{\"key_state\":\"0\"}", KMS_E_BAD_PARAM },
		{ "{\"key_state\":\"6\"}", KMS_E_BAD_PARAM },
		{ "{\"key_state\":\"7\"}", KMS_E_BAD_PARAM },
		{ "{\"key_state\":\"22\"}", KMS_E_BAD_PARAM },
		{ "{\"key_state\":\"enabled\"}", KMS_E_BAD_PARAM },
		/* limit is checked before marker */
		{ "{\"limit\":\"0\",\"marker\":\"-1\"}", KMS_E_LIMIT_INVALID },
	};

	STEP(fx_refuses_each("lke", "list-keys", NULL, bad, KMS_ARRAY_SIZE(bad)));
	ASSERT_LAST_ERROR("KMS.1601", "Invalid limit.");
	ASSERT_ERR(pcall("lke", "list-keys", "{\"marker\":\"-1\"}", NULL), KMS_E_MARKER_INVALID);
	ASSERT_LAST_ERROR("KMS.1602", "marker must be greater than or equals 0.");
	/* null is absent */
	ASSERT_ERR(pcall("lke", "list-keys", "{\"limit\":null,\"marker\":null}", NULL), 0);
}

TEST(list_keys_projects_apart)
{
	char a[FX_ID_LEN], b[FX_ID_LEN];
	cJSON *r = NULL;

	STEP(fx_key("lkp-1", "same", a));
	STEP(fx_key("lkp-2", "same", b));
	ASSERT_ERR(pcall("lkp-1", "list-keys", "{}", &r), 0);
	ASSERT_EQ(fx_get(r, "total")->valuedouble, 1);
	ASSERT_STREQ(cJSON_GetArrayItem(fx_get(r, "keys"), 0)->valuestring, a);
	ASSERT_ERR(pcall("lkp-2", "list-keys", "{}", &r), 0);
	ASSERT_STREQ(cJSON_GetArrayItem(fx_get(r, "keys"), 0)->valuestring, b);
}
