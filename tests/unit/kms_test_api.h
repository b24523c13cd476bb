/* kms_test_api.h - the fixture of the API tests (test-api-*.c): one store in a temporary
 * directory per executable (opened on first use, closed and removed at exit), a service on it,
 * and call(), which runs one request through api_call() exactly as the file system would.
 *
 *   cJSON *r;
 *
 *   ASSERT_ERR(call("proj", "create-key", API_SCOPE_PROJECT, NULL, "{\"key_alias\":\"a\"}", &r),
 *              0);
 *   ASSERT_STREQ(fx_str(r, "key_info.domain_id"), store_domain_id(fx_svc()->store));
 *
 * call() returns api_call()'s value (0 or a KMS_E_*) and the parsed response. Before that it
 * checks what every response must be, success or not: a single line of JSON ending in "\n";
 * on failure exactly {"error":{"error_code":"KMS.xxxx","error_msg":"..."}} + "\n" with the code
 * and message of the returned error; on success no "error" member. A response that breaks any
 * of this fails the test and makes call() return FX_BAD_RESPONSE, which no ASSERT_ERR expects.
 * call_batch() checks a batch body's answer the same way, line by line.
 *
 * Responses are owned by the fixture (a ring of FX_KEEP): never cJSON_Delete them, and copy out
 * what must outlive the next FX_KEEP calls. fx_fmt() formats requests into a ring of buffers
 * the same way. Tests use a project of their own, so their keys never meet.
 */
#pragma once

#include <stdarg.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "api/kms_api.h"
#include "auth/kms_auth.h"
#include "common/kms_buf.h"
#include "common/kms_hex.h"
#include "common/kms_limits.h"
#include "core/kms_core.h"
#include "kms_test.h"
#include "kms_test_tmp.h"

#define FX_BAD_RESPONSE 1
#define FX_KEEP		32
#define FX_FMT_MAX	(KMS_MAX_REQUEST + 4096)
#define FX_ID_LEN	(KMS_KEY_ID_LEN + 1)

static char fx_dir_[4096];
static struct store *fx_store_;
static struct api_service fx_svc_;
static cJSON *fx_keep_[FX_KEEP];
static size_t fx_keep_next_;
static struct kms_buf fx_last_ = KMS_BUF_INIT(KMS_MAX_RESPONSE, true);

static inline void fx_cleanup_(void)
{
	for (size_t i = 0; i < FX_KEEP; i++) {
		cJSON_Delete(fx_keep_[i]);
		fx_keep_[i] = NULL;
	}
	kms_buf_free(&fx_last_);
	store_close(fx_store_);
	fx_store_ = NULL;
	if (fx_dir_[0] && kms_test_rmrf(fx_dir_) != 0)
		fprintf(stderr, "warning: could not remove %s\n", fx_dir_);
}

/* The service (and store) every call() uses; key_quota is KMS_DEFAULT_KEY_QUOTA. */
static inline struct api_service *fx_svc(void)
{
	char why[1024] = "";

	if (!fx_store_) {
		struct store_options o = { .create = true };

		kms_test_mkdtemp(fx_dir_, sizeof(fx_dir_));
		o.state_dir = fx_dir_;
		if (api_init() < 0 || store_open(&o, &fx_store_, why, sizeof(why)) < 0) {
			fprintf(stderr, "fixture: cannot open a store in %s: %s\n", fx_dir_, why);
			kms_test_rmrf(fx_dir_);
			abort();
		}
		fx_svc_.store = fx_store_;
		fx_svc_.key_quota = KMS_DEFAULT_KEY_QUOTA;
		atexit(fx_cleanup_);
	}
	return &fx_svc_;
}

/* printf into one of 8 rotating static buffers (requests up to FX_FMT_MAX). */
static inline const char *fx_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline const char *fx_fmt(const char *fmt, ...)
{
	static char ring[8][FX_FMT_MAX];
	static size_t next;
	char *out = ring[next++ % 8];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(out, FX_FMT_MAX, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= FX_FMT_MAX) {
		fprintf(stderr, "fx_fmt: request too long for the fixture\n");
		abort();
	}
	return out;
}

/* The exact text of the last response (valid until the next call). */
static inline const char *fx_last(void)
{
	return fx_last_.data ? (const char *)fx_last_.data : "";
}

static inline size_t fx_last_len(void)
{
	return fx_last_.len;
}

static inline cJSON *fx_keep(cJSON *j)
{
	size_t slot = fx_keep_next_++ % FX_KEEP;

	cJSON_Delete(fx_keep_[slot]);
	fx_keep_[slot] = j;
	return j;
}

/* error.error_code of a response, or NULL. */
static inline const char *fx_str_(const cJSON *j)
{
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
	const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "error_code");

	return cJSON_IsString(c) ? c->valuestring : NULL;
}

/* The message the error table gives code ("KMS.xxxx"), or NULL for no such code. */
#define FX_ERR_ROW_(name, code, http, errnum, msg) { code, msg },
static inline const char *fx_code_message_(const char *code)
{
	static const struct {
		const char *code, *msg;
	} rows[] = { KMS_ERRORS(FX_ERR_ROW_) };

	for (size_t i = 0; i < KMS_ARRAY_SIZE(rows); i++)
		if (strcmp(rows[i].code, code) == 0)
			return rows[i].msg;
	return NULL;
}
#undef FX_ERR_ROW_

/* One response line (without its "\n"): a JSON object; if it holds "error", exactly the error
 * shape with a code of the table and that code's message. Returns the parsed line, or NULL. */
static inline cJSON *fx_check_line_(const char *text, size_t n)
{
	const char *end = NULL;
	const cJSON *e;
	cJSON *j;

	if (memchr(text, '\r', n) || memchr(text, 0, n)) {
		kms_test_fail_(__FILE__, __LINE__, "response line holds CR or NUL");
		return NULL;
	}
	j = cJSON_ParseWithLengthOpts(text, n, &end, false);
	if (!j || end != text + n || !cJSON_IsObject(j)) {
		kms_test_fail_(__FILE__, __LINE__, "response line is not one JSON object");
		fprintf(stderr, "\tline: %.*s\n", (int)n, text);
		cJSON_Delete(j);
		return NULL;
	}
	e = cJSON_GetObjectItemCaseSensitive(j, "error");
	if (e) {
		const cJSON *code = cJSON_GetObjectItemCaseSensitive(e, "error_code");
		const char *msg = cJSON_IsString(code) ? fx_code_message_(code->valuestring) : NULL;
		char want[512];

		snprintf(want, sizeof(want),
			 "{\"error\":{\"error_code\":\"%s\",\"error_msg\":\"%s\"}}",
			 msg ? code->valuestring : "?", msg ? msg : "?");
		if (!msg || strlen(want) != n || memcmp(want, text, n) != 0) {
			kms_test_fail_(__FILE__, __LINE__, "error line is not exactly the table's");
			fprintf(stderr, "\tline: %.*s\n", (int)n, text);
			cJSON_Delete(j);
			return NULL;
		}
	}
	return j;
}

/* The invariants of every response; the parsed (last) response, or NULL (test failed).
 * Single requests answer one line; batch bodies one line per request line. */
static inline cJSON *fx_check_response_(int err, const struct kms_buf *resp, bool batch,
					size_t *lines)
{
	const char *text = (const char *)resp->data;
	size_t pos = 0;
	cJSON *j = NULL;

	*lines = 0;
	if (err > 0 || !text || resp->len < 3 || text[resp->len - 1] != '\n') {
		kms_test_fail_(__FILE__, __LINE__, "no response ending in \\n, or a return > 0");
		fprintf(stderr, "\treturn %d, response: %s\n", err, text ? text : "(none)");
		return NULL;
	}
	while (pos < resp->len) {
		const char *nl = memchr(text + pos, '\n', resp->len - pos);
		size_t n = (size_t)(nl - (text + pos));

		cJSON_Delete(j);
		j = fx_check_line_(text + pos, n);
		if (!j)
			return NULL;
		(*lines)++;
		pos += n + 1;
	}
	if (!batch && *lines != 1) {
		kms_test_fail_(__FILE__, __LINE__, "response to a single request is not one line");
		fprintf(stderr, "\tresponse: %s", text);
		cJSON_Delete(j);
		return NULL;
	}
	if (err < 0) {
		const struct kms_err_info *e = kms_err_info(err);
		const char *code = fx_str_(j);

		if (!code || strcmp(code, e->code) != 0) {
			kms_test_fail_(__FILE__, __LINE__,
				       "error response does not match the return");
			fprintf(stderr, "\treturn %s (%s), response: %s", e->name, e->code, text);
			cJSON_Delete(j);
			return NULL;
		}
	} else if (!batch && cJSON_GetObjectItemCaseSensitive(j, "error")) {
		kms_test_fail_(__FILE__, __LINE__, "success response holds an \"error\" member");
		fprintf(stderr, "\tresponse: %s", text);
		cJSON_Delete(j);
		return NULL;
	}
	return j;
}

/* Run one request as caller. out (may be NULL) gets the parsed response, owned by the fixture. */
static inline int fx_call_lines(const struct api_service *svc, const struct api_caller *caller,
				const char *action, unsigned scope, const void *req, size_t len,
				bool batch, size_t *lines, cJSON **out)
{
	struct kms_buf resp = KMS_BUF_INIT(KMS_MAX_RESPONSE, true);
	const struct api_action *a = action ? api_action_find(action, scope) : NULL;
	int err = api_call(svc, caller, a, req, len, &resp);
	cJSON *j = fx_check_response_(err, &resp, batch, lines);

	if (kms_buf_set(&fx_last_, resp.data ? resp.data : (const uint8_t *)"", resp.len) < 0)
		abort();
	kms_buf_free(&resp);
	fx_keep(j);
	if (out)
		*out = j;
	return j ? err : FX_BAD_RESPONSE;
}

static inline int fx_call_as(const struct api_service *svc, const struct api_caller *caller,
			     const char *action, unsigned scope, const void *req, size_t len,
			     cJSON **out)
{
	size_t lines;

	return fx_call_lines(svc, caller, action, scope, req, len, false, &lines, out);
}

/* A batch body (one request per line) as a trusted caller; *lines = response lines, *out the
 * last one. The lines themselves are in fx_last(). */
static inline int call_batch(const char *project, const char *action, const char *body,
			     size_t *lines, cJSON **out)
{
	struct api_caller c = { .project = project, .trusted = true };

	return fx_call_lines(fx_svc(), &c, action, API_SCOPE_PROJECT, body, strlen(body), true,
			     lines, out);
}

/* A trusted caller (kmsctl): no token needed. */
static inline int call_raw(const char *project, const char *action, unsigned scope,
			   const char *path_key_id, const void *req, size_t len, cJSON **out)
{
	struct api_caller c = { .project = project, .path_key_id = path_key_id, .trusted = true };

	return fx_call_as(fx_svc(), &c, action, scope, req, len, out);
}

static inline int call(const char *project, const char *action, unsigned scope,
		       const char *path_key_id, const char *json, cJSON **out)
{
	return call_raw(project, action, scope, path_key_id, json, strlen(json), out);
}

/* Project-scope shorthand. */
static inline int pcall(const char *project, const char *action, const char *json, cJSON **out)
{
	return call(project, action, API_SCOPE_PROJECT, NULL, json, out);
}

/* The member at a dotted path ("key_info.key_id"), or NULL. */
static inline const cJSON *fx_get(const cJSON *j, const char *path)
{
	char name[128];

	while (j && *path) {
		size_t n = strcspn(path, ".");

		if (n >= sizeof(name))
			return NULL;
		memcpy(name, path, n);
		name[n] = 0;
		j = cJSON_GetObjectItemCaseSensitive(j, name);
		path += n;
		if (*path == '.')
			path++;
	}
	return j;
}

/* The string at path, or NULL when absent or not a string. */
static inline const char *fx_str(const cJSON *j, const char *path)
{
	const cJSON *s = fx_get(j, path);

	return cJSON_IsString(s) ? s->valuestring : NULL;
}

static inline bool fx_upper_hex(const char *s, size_t n)
{
	if (!s || strlen(s) != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'F')))
			return false;
	return true;
}

static inline bool fx_key_id_form(const char *s)
{
	if (!s || strlen(s) != KMS_KEY_ID_LEN)
		return false;
	for (size_t i = 0; i < KMS_KEY_ID_LEN; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;

		if (dash ? s[i] != '-'
			 : !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'z')))
			return false;
	}
	return true;
}

/* Upper-case hex of SHA-256(p) into out (65 bytes). */
static inline void fx_sha256_hex(const void *p, size_t n, char out[65])
{
	uint8_t d[CORE_SHA256_BYTES];

	if (core_sha256(p, n, d) < 0)
		abort();
	kms_hex_encode(d, sizeof(d), out);
}

/* create-key with the request json as a trusted caller of svc; the new key's id goes to id. */
static inline void fx_key_in(const struct api_service *svc, const char *project, const char *json,
			     char id[FX_ID_LEN])
{
	struct api_caller c = { .project = project, .trusted = true };
	cJSON *r = NULL;
	const char *s;

	id[0] = 0;
	ASSERT_ERR(fx_call_as(svc, &c, "create-key", API_SCOPE_PROJECT, json, strlen(json), &r), 0);
	s = fx_str(r, "key_info.key_id");
	ASSERT_TRUE(fx_key_id_form(s));
	memcpy(id, s, FX_ID_LEN);
}

/* Create key alias in project; its id goes to id. */
static inline void fx_key(const char *project, const char *alias, char id[FX_ID_LEN])
{
	fx_key_in(fx_svc(), project, fx_fmt("{\"key_alias\":\"%s\"}", alias), id);
}

/* Copy a response string out (NULL: empty). */
static inline void fx_cp(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src ? src : "");
}

/* The request {"key_id":"<id>"}. */
static inline const char *fx_kid(const char *id)
{
	return fx_fmt("{\"key_id\":\"%s\"}", id);
}

/* The decrypt-datakey request for the 64-byte data key sealed in cipher (hex) by key (an id or
 * another key form). */
static inline const char *fx_unwrap_req(const char *key, const char *cipher)
{
	return fx_fmt("{\"key_id\":\"%s\",\"cipher_text\":\"%s\",\"datakey_cipher_length\":\"64\"}",
		      key, cipher);
}

/* The request {"key_id":"<id>",<members>} (members: more JSON members, without braces). */
static inline const char *fx_kid_with(const char *id, const char *members)
{
	return fx_fmt("{\"key_id\":\"%s\",%s}", id, members);
}

/* The claims api_call() gets from a verified token of user in project with role. */
static inline struct auth_claims fx_claims(const char *project, const char *user,
					   enum kms_role role, int64_t expiry)
{
	struct auth_claims c;

	memset(&c, 0, sizeof(c));
	snprintf(c.id, sizeof(c.id), "0123456789abcdef");
	snprintf(c.project, sizeof(c.project), "%s", project);
	snprintf(c.user, sizeof(c.user), "%s", user);
	c.role = role;
	c.expiry = expiry;
	return c;
}

/* action as user with role (the claims of a token valid for an hour, as api_call() gets them
 * from a verified token or a binding); path_key_id non-NULL: in that key folder. */
static inline int ucall(const char *project, const char *user, enum kms_role role,
			const char *action, const char *path_key_id, const char *json, cJSON **out)
{
	struct auth_claims claims = fx_claims(project, user, role, time(NULL) + 3600);
	struct api_caller c = { .project = project,
				.path_key_id = path_key_id,
				.claims = &claims,
				.uid = 1000,
				.gid = 1000 };

	return fx_call_as(fx_svc(), &c, action, path_key_id ? API_SCOPE_KEY : API_SCOPE_PROJECT,
			  json, strlen(json), out);
}

/* A store of its own in a temporary directory, for the tests that move the clock (a sweep acts
 * on every project of a store). opt may be changed and reused to open the store again. */
struct fx_own {
	char dir[4096];
	struct store_options opt;
	struct store *st;
	struct api_service svc;
};

/* 0, or -1 (said on stderr, nothing left behind). */
static inline int fx_own_open(struct fx_own *o)
{
	char why[1024] = "";

	memset(o, 0, sizeof(*o));
	fx_svc(); /* api_init() and the fixture's cleanup */
	kms_test_mkdtemp(o->dir, sizeof(o->dir));
	o->opt.create = true;
	o->opt.state_dir = o->dir;
	if (store_open(&o->opt, &o->st, why, sizeof(why)) < 0) {
		fprintf(stderr, "cannot open a store in %s: %s\n", o->dir, why);
		kms_test_rmrf(o->dir);
		return -1;
	}
	o->svc.store = o->st;
	o->svc.key_quota = KMS_DEFAULT_KEY_QUOTA;
	return 0;
}

/* Close the store (if open) and remove its directory. */
static inline void fx_own_close(struct fx_own *o)
{
	store_close(o->st);
	o->st = NULL;
	if (kms_test_rmrf(o->dir) != 0)
		fprintf(stderr, "warning: could not remove %s\n", o->dir);
}

/* The URN form of an alias for this store. */
static inline const char *fx_urn(const char *alias)
{
	const struct store *s = fx_svc()->store;

	return fx_fmt("kms:%s:%s:alias:%s", store_region(s), store_domain_id(s), alias);
}

/* The last response is exactly the error line of code ("KMS.xxxx") with message msg (both string
 * literals): checks the table's text, as call() already checks that it matches the return. */
#define ASSERT_LAST_ERROR(code, msg) ASSERT_STREQ(fx_last(), FX_ERROR_LINE(code, msg))

/* The exact error response line of code ("KMS.xxxx") and msg (both string literals). */
#define FX_ERROR_LINE(code, msg)                                                                   \
	"{\"error\":{\"error_code\":\"" code "\",\"error_msg\":\"" msg "\"}}\n"

/* ASSERT_ERR that also names the case (a request, a value) when it fails. */
#define EXPECT(what, expr, err)                                                                    \
	do {                                                                                       \
		int e_ = (expr);                                                                   \
		if (e_ != (err))                                                                   \
			fprintf(stderr, "\t%s\n", (what));                                         \
		ASSERT_ERR(e_, err);                                                               \
	} while (0)

#define FX_HEX_MAX (2 * CORE_BLOB_MAX + 1)

/* What one key made: a data key (its cipher_text and plain_text) and the encrypt-data
 * cipher_text of a text. */
struct fx_blobs {
	char dk[FX_HEX_MAX];
	char plain[FX_HEX_MAX];
	char data[FX_HEX_MAX];
};

/* create-datakey and encrypt-data of text with key id, as a trusted caller of svc. */
static inline void fx_blobs_in(const struct api_service *svc, const char *project, const char *id,
			       const char *text, struct fx_blobs *b)
{
	struct api_caller c = { .project = project, .trusted = true };
	const char *req = fx_kid(id);
	cJSON *r = NULL;

	ASSERT_ERR(fx_call_as(svc, &c, "create-datakey", API_SCOPE_PROJECT, req, strlen(req), &r),
		   0);
	fx_cp(b->dk, sizeof(b->dk), fx_str(r, "cipher_text"));
	fx_cp(b->plain, sizeof(b->plain), fx_str(r, "plain_text"));
	req = fx_fmt("{\"key_id\":\"%s\",\"plain_text\":\"%s\"}", id, text);
	ASSERT_ERR(fx_call_as(svc, &c, "encrypt-data", API_SCOPE_PROJECT, req, strlen(req), &r), 0);
	fx_cp(b->data, sizeof(b->data), fx_str(r, "cipher_text"));
}

/* Only characters of the standard Base64 alphabet and padding ("" too). */
static inline bool fx_base64_chars(const char *s)
{
	for (; *s; s++)
		if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
		      (*s >= '0' && *s <= '9') || *s == '+' || *s == '/' || *s == '='))
			return false;
	return true;
}

/* A request (or a part of one) that must be refused, and the error it must get. */
struct fx_refusal {
	const char *req;
	int err;
};

/* Each request of rows, as a trusted call of action in project (in the key folder path_key_id
 * when that is not NULL), is refused with its row's error. */
static inline void fx_refuses_each(const char *project, const char *action, const char *path_key_id,
				   const struct fx_refusal *rows, size_t n)
{
	unsigned scope = path_key_id ? API_SCOPE_KEY : API_SCOPE_PROJECT;

	for (size_t i = 0; i < n; i++)
		EXPECT(rows[i].req, call(project, action, scope, path_key_id, rows[i].req, NULL),
		       rows[i].err);
}

/* Each of the n JSON texts of values, as member of the request {"key_id":id,member:value} of
 * action in project, is refused with err, and (line not NULL) the response is exactly line. */
static inline void fx_member_refuses(const char *project, const char *action, const char *id,
				     const char *member, const char *const *values, size_t n,
				     int err, const char *line)
{
	for (size_t i = 0; i < n; i++) {
		EXPECT(fx_fmt("%s %s", member, values[i]),
		       pcall(project, action,
			     fx_fmt("{\"key_id\":\"%s\",\"%s\":%s}", id, member, values[i]), NULL),
		       err);
		if (line)
			ASSERT_STREQ(fx_last(), line);
	}
}

/* member is required by action on key id: absent, and null, it is KMS.0204. */
static inline void fx_member_required(const char *project, const char *action, const char *id,
				      const char *member)
{
	ASSERT_ERR(pcall(project, action, fx_kid(id), NULL), KMS_E_MISSING);
	ASSERT_ERR(pcall(project, action, fx_kid_with(id, fx_fmt("\"%s\":null", member)), NULL),
		   KMS_E_MISSING);
}

/* The listing r was cut or not (truncated: "true" or "false") and the next page starts at
 * next_marker ("" for none). */
static inline void fx_page_ends(const cJSON *r, const char *truncated, const char *next_marker)
{
	ASSERT_STREQ(fx_str(r, "truncated"), truncated);
	ASSERT_STREQ(fx_str(r, "next_marker"), next_marker);
}

/* A 36-character key id that names no key. */
#define FX_NO_KEY "0badc0de-0000-4000-8000-000000000000"

/* The number at path in r, or -1 when it is missing or not a number. */
static inline double fx_num(const cJSON *r, const char *path)
{
	const cJSON *n = fx_get(r, path);

	return cJSON_IsNumber(n) ? n->valuedouble : -1;
}
