/* Dispatch table, request parsing and response rendering; authorisation is api_authz.c's. */
#include <malloc.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "api_internal.h"
#include "common/kms_err.h"
#include "common/kms_limits.h"
#include "common/kms_secmem.h"
#include "common/kms_time.h"

#define BOTH (API_SCOPE_PROJECT | API_SCOPE_KEY)
/* The longest error line ({"error":...}\n); batches keep this much room per item. */
#define API_ERROR_LINE_MAX 160u /* the longest, KMS.2606, is 159 bytes with its "\n" */

static int api_tags_dispatch(struct api_request *r);

/* The table: one row per action; no if-chains. */
static const struct api_action api_actions[] = {
	{ "create-key", API_SCOPE_PROJECT, KMS_ROLE_ADMIN, false, api_create_key },
	{ "describe-key", BOTH, KMS_ROLE_VIEWER, false, api_describe_key },
	{ "list-keys", API_SCOPE_PROJECT, KMS_ROLE_VIEWER, false, api_list_keys },
	{ "create-datakey", BOTH, KMS_ROLE_CRYPTO, true, api_create_datakey },
	{ "create-datakey-without-plaintext", BOTH, KMS_ROLE_CRYPTO, false,
	  api_create_datakey_without_plaintext },
	{ "encrypt-datakey", BOTH, KMS_ROLE_CRYPTO, false, api_encrypt_datakey },
	{ "decrypt-datakey", BOTH, KMS_ROLE_CRYPTO, true, api_decrypt_datakey },
	{ "gen-random", API_SCOPE_PROJECT, KMS_ROLE_CRYPTO, false, api_gen_random },
	{ "encrypt-data", BOTH, KMS_ROLE_CRYPTO, false, api_encrypt_data },
	{ "decrypt-data", BOTH, KMS_ROLE_CRYPTO, true, api_decrypt_data },
	{ "enable-key", BOTH, KMS_ROLE_ADMIN, false, api_enable_key },
	{ "disable-key", BOTH, KMS_ROLE_ADMIN, false, api_disable_key },
	{ "schedule-key-deletion", BOTH, KMS_ROLE_ADMIN, false, api_schedule_key_deletion },
	{ "cancel-key-deletion", BOTH, KMS_ROLE_ADMIN, false, api_cancel_key_deletion },
	{ "update-key-alias", BOTH, KMS_ROLE_ADMIN, false, api_update_key_alias },
	{ "update-key-description", BOTH, KMS_ROLE_ADMIN, false, api_update_key_description },
	{ "enable-key-rotation", BOTH, KMS_ROLE_ADMIN, false, api_enable_key_rotation },
	{ "disable-key-rotation", BOTH, KMS_ROLE_ADMIN, false, api_disable_key_rotation },
	{ "update-key-rotation-interval", BOTH, KMS_ROLE_ADMIN, false,
	  api_update_key_rotation_interval },
	{ "get-key-rotation-status", BOTH, KMS_ROLE_VIEWER, false, api_get_key_rotation_status },
	{ "rotate-key", BOTH, KMS_ROLE_ADMIN, false, api_rotate_key },
	{ "user-instances", API_SCOPE_PROJECT, KMS_ROLE_VIEWER, false, api_user_instances },
	{ "user-quotas", API_SCOPE_PROJECT, KMS_ROLE_VIEWER, false, api_user_quotas },
	{ "versions", API_SCOPE_PROJECT, KMS_ROLE_VIEWER, false, api_versions },
	{ "version", API_SCOPE_PROJECT, KMS_ROLE_VIEWER, false, api_version },
	{ "create-grant", BOTH, KMS_ROLE_ADMIN, false, api_create_grant },
	{ "list-grants", BOTH, KMS_ROLE_VIEWER, false, api_list_grants },
	{ "list-retirable-grants", API_SCOPE_PROJECT, KMS_ROLE_VIEWER, false,
	  api_list_retirable_grants },
	{ "revoke-grant", BOTH, KMS_ROLE_ADMIN, false, api_revoke_grant },
	/* Retiring changes who may use a key: not a read-only role's right (the API's read-only
	 * policies lack kms:grant:retire); a grant that includes retire-grant still allows it. */
	{ "retire-grant", BOTH, KMS_ROLE_CRYPTO, false, api_retire_grant },
	{ "tags", BOTH, KMS_ROLE_VIEWER, false, api_tags_dispatch },
	{ "delete-tag", API_SCOPE_KEY, KMS_ROLE_ADMIN, false, api_delete_tag },
	{ "tags-action", API_SCOPE_KEY, KMS_ROLE_ADMIN, false, api_tags_action },
	{ "resource_instances-action", API_SCOPE_PROJECT, KMS_ROLE_VIEWER, false,
	  api_resource_instances },
	/* Appended, not grouped with create-key: byte 0 of the fuzz-request seeds is an index here. */
	{ "get-parameters-for-import", BOTH, KMS_ROLE_ADMIN, false, api_get_parameters_for_import },
	{ "import-key-material", BOTH, KMS_ROLE_ADMIN, false, api_import_key_material },
	{ "delete-imported-key-material", BOTH, KMS_ROLE_ADMIN, false,
	  api_delete_imported_key_material },
	/* The current Huawei SDK's name (POST /kms/rotate-on-demand) for rotate-key. */
	{ "rotate-on-demand", BOTH, KMS_ROLE_ADMIN, false, api_rotate_on_demand },
};

/* keys/<id>/tags lists or adds (adding needs admin); <P>/tags lists the project's tags. */
static int api_tags_dispatch(struct api_request *r)
{
	if (!r->caller->path_key_id)
		return api_project_tags(r);
	if (cJSON_GetObjectItemCaseSensitive(r->body, "tag") &&
	    api_check_role(r, KMS_ROLE_ADMIN) < 0)
		return KMS_E_FORBIDDEN;
	return api_key_tags(r);
}

const struct api_action *api_action_find(const char *name, unsigned scope)
{
	for (size_t i = 0; i < KMS_ARRAY_SIZE(api_actions); i++)
		if ((api_actions[i].scopes & scope) && strcmp(api_actions[i].name, name) == 0)
			return &api_actions[i];
	return NULL;
}

size_t api_action_count(void)
{
	return KMS_ARRAY_SIZE(api_actions);
}

const struct api_action *api_action_at(size_t i)
{
	return i < KMS_ARRAY_SIZE(api_actions) ? &api_actions[i] : NULL;
}

/* cJSON allocates every string it parses or prints with these: wipe each block before freeing,
 * so hex DEKs in requests and responses do not linger in the heap. */
static void api_json_free(void *p)
{
	if (p) {
		kms_wipe(p, malloc_usable_size(p));
		free(p);
	}
}

static pthread_once_t api_once = PTHREAD_ONCE_INIT;
static int api_init_result;

static void api_init_once(void)
{
	cJSON_Hooks hooks = { malloc, api_json_free };

	cJSON_InitHooks(&hooks);
	api_init_result = core_init();
}

int api_init(void)
{
	pthread_once(&api_once, api_init_once);
	return api_init_result;
}

int api_error_json(int err, struct kms_buf *resp)
{
	const struct kms_err_info *e = kms_err_info(err);
	char line[API_ERROR_LINE_MAX];
	int n;

	/* Codes and messages are our own constants: no escaping needed. One append, so a full
	 * buffer gets the whole line or nothing, never half a line. */
	n = snprintf(line, sizeof(line),
		     "{\"error\":{\"error_code\":\"%s\",\"error_msg\":\"%s\"}}\n", e->code,
		     e->message);
	if (n < 0 || (size_t)n >= sizeof(line))
		return KMS_E_INTERNAL;
	return kms_buf_append(resp, line, (size_t)n);
}

static bool api_blank(const uint8_t *p, size_t n)
{
	if (!p)
		return true;
	for (size_t i = 0; i < n; i++)
		if (p[i] != ' ' && p[i] != '\t' && p[i] != '\n' && p[i] != '\r')
			return false;
	return true;
}

size_t api_json_depth(const cJSON *j)
{
	size_t d = 0;

	for (const cJSON *c = j ? j->child : NULL; c; c = c->next) {
		size_t cd = api_json_depth(c);

		if (cd > d)
			d = cd;
	}
	return d + 1;
}

static bool api_has_duplicate_keys(const cJSON *o)
{
	for (const cJSON *a = o->child; a; a = a->next)
		for (const cJSON *b = a->next; b; b = b->next)
			if (a->string && b->string && strcmp(a->string, b->string) == 0)
				return true;
	return false;
}

bool api_json_has_nul_escape(const uint8_t *p, size_t n)
{
	if (n == 0 || !memchr(p, '\\', n))
		return false; /* most requests have no escape at all */
	for (size_t i = 0; i + 6 <= n; i++)
		if (p[i] == '\\' && (p[i + 1] == 'u' || p[i + 1] == 'U') && p[i + 2] == '0' &&
		    p[i + 3] == '0' && p[i + 4] == '0' && p[i + 5] == '0') {
			size_t bs = 0;

			for (size_t j = i; j > 0 && p[j - 1] == '\\'; j--)
				bs++;
			if (bs % 2 == 0)
				return true; /* an unescaped backslash starts it */
		}
	return false;
}

static int api_parse(const uint8_t *req, size_t len, cJSON **out)
{
	const char *end = NULL;
	cJSON *j;

	*out = NULL;
	if (len > KMS_MAX_REQUEST)
		return KMS_E_TOO_LONG;
	if (api_blank(req, len)) {
		*out = cJSON_CreateObject();
		return *out ? 0 : KMS_E_NOMEM;
	}
	if (memchr(req, 0, len) || api_json_has_nul_escape(req, len))
		return KMS_E_BAD_JSON;
	j = cJSON_ParseWithLengthOpts((const char *)req, len, &end, false);
	if (!j)
		return KMS_E_BAD_JSON;
	if (!cJSON_IsObject(j) || !end ||
	    !api_blank((const uint8_t *)end, len - (size_t)(end - (const char *)req)) ||
	    api_json_depth(j) > KMS_MAX_JSON_DEPTH || api_has_duplicate_keys(j)) {
		cJSON_Delete(j);
		return KMS_E_BAD_JSON;
	}
	*out = j;
	return 0;
}

/* Tell the audit hook what happened; its failure fails the request (fail closed). */
static int api_audit(struct api_request *r, int err)
{
	struct api_outcome o = { .action = r->action ? r->action->name : "",
				 .reserved = r->audit_reserved,
				 .claims = r->claims };
	const cJSON *seq = r->body ? cJSON_GetObjectItemCaseSensitive(r->body, "sequence") : NULL;
	const struct kms_err_info *e = kms_err_info(err);

	if (!r->svc->audit)
		return 0;
	snprintf(o.key_id, sizeof(o.key_id), "%s",
		 r->key_id[0] ? r->key_id : (r->caller->path_key_id ? r->caller->path_key_id : ""));
	snprintf(o.object_id, sizeof(o.object_id), "%s", err ? "" : r->object_id);
	if (seq && cJSON_IsString(seq) && api_check_sequence(r) == 0)
		snprintf(o.sequence, sizeof(o.sequence), "%s", seq->valuestring);
	o.http = err ? e->http : 200;
	o.error_code = err ? e->code : "";
	return r->svc->audit(r->svc->audit_ctx, r->caller, &o) == 0 ? 0 : KMS_E_IO;
}

/* Does this byte print as itself in a JSON string (cJSON's rule: escape below 32, '"', '\\')? */
static bool api_plain_byte(unsigned char c)
{
	return c > 31 && c != '"' && c != '\\';
}

/* The bytes from p (end: its NUL) that need no escape: 16 (SSE2) or 8 at a time, then one by
 * one. Answers are mostly long hex strings, so this loop is most of the printing. */
static const unsigned char *api_plain_run(const unsigned char *p, const unsigned char *end)
{
#ifdef __SSE2__
	const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\');
	const __m128i c31 = _mm_set1_epi8(31);

	while (end - p >= 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
		/* min(v, 31) == v: v <= 31, unsigned */
		__m128i bad = _mm_or_si128(
			_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
			_mm_cmpeq_epi8(_mm_min_epu8(v, c31), v));

		if (_mm_movemask_epi8(bad))
			break;
		p += 16;
	}
#else
	const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
	uint64_t v, q, b;

	/* A zero byte in x sets its high bit in (x - ones) & ~x; bytes at or above 128 never need
	 * an escape (their high bit masks them out of the first test). */
	while (end - p >= 8) {
		memcpy(&v, p, sizeof(v));
		q = v ^ (ones * '"');
		b = v ^ (ones * '\\');
		if ((((v - ones * 32) & ~v) | ((q - ones) & ~q) | ((b - ones) & ~b)) & highs)
			break;
		p += 8;
	}
#endif
	while (p < end && api_plain_byte(*p))
		p++;
	return p;
}

/* The escape of a byte that is not plain (api_plain_byte), as cJSON writes it: a letter for
 * the seven it names, else \u and four lower-case hex digits. */
static void api_escape(unsigned char c, char esc[8])
{
	static const char named[] = "\"\\\b\f\n\r\t", letters[] = "\"\\bfnrt";
	const char *at = c ? strchr(named, c) : NULL;

	if (at)
		snprintf(esc, 8, "\\%c", letters[at - named]);
	else
		snprintf(esc, 8, "\\u%04x", c);
}

/* A string as cJSON prints it, then the byte after (':' or ',', or none: 0). A string with
 * nothing to escape (hex, ids: nearly all) is one reservation and one copy. */
static int api_print_string(const char *s, char after, struct kms_buf *out)
{
	const unsigned char *p = (const unsigned char *)(s ? s : "");
	size_t n = strlen((const char *)p);
	const unsigned char *end = p + n, *run = api_plain_run(p, end);
	int r;

	if (run == end) {
		if ((r = kms_buf_reserve(out, n + 3)) < 0)
			return r;
		out->data[out->len++] = '"';
		memcpy(out->data + out->len, p, n);
		out->len += n;
		out->data[out->len++] = '"';
		if (after)
			out->data[out->len++] = (uint8_t)after;
		out->data[out->len] = 0;
		return 0;
	}
	r = kms_buf_append(out, "\"", 1);
	while (r == 0 && p < end) {
		char esc[8];

		if (run > p)
			r = kms_buf_append(out, p, (size_t)(run - p));
		if (r < 0 || run == end)
			break;
		api_escape(*run, esc);
		r = kms_buf_append_str(out, esc);
		p = run + 1;
		run = api_plain_run(p, end);
	}
	if (r == 0)
		r = kms_buf_append(out, "\"", 1);
	return r < 0 || !after ? r : kms_buf_append(out, &after, 1);
}

/* A number exactly as cJSON prints it (its rules for integers, precision and locale): numbers
 * are rare in answers, so cJSON prints them. */
static int api_print_number(const cJSON *j, struct kms_buf *out)
{
	cJSON copy = *j;
	char *text;
	int r;

	copy.next = copy.prev = NULL;
	copy.string = NULL;
	text = cJSON_PrintUnformatted(&copy);
	if (!text)
		return KMS_E_NOMEM;
	r = kms_buf_append_str(out, text);
	api_json_free(text);
	return r;
}

int api_json_print(const cJSON *j, struct kms_buf *out)
{
	const char *close = "}";
	int r = 0;

	switch (j->type & 0xff) {
	case cJSON_NULL:
		return kms_buf_append_str(out, "null");
	case cJSON_False:
		return kms_buf_append_str(out, "false");
	case cJSON_True:
		return kms_buf_append_str(out, "true");
	case cJSON_Number:
		return api_print_number(j, out);
	case cJSON_Raw:
		return j->valuestring ? kms_buf_append_str(out, j->valuestring) : KMS_E_INTERNAL;
	case cJSON_String:
		return api_print_string(j->valuestring, 0, out);
	case cJSON_Array:
		close = "]";
		r = kms_buf_append(out, "[", 1);
		break;
	case cJSON_Object:
		r = kms_buf_append(out, "{", 1);
		break;
	default:
		return KMS_E_INTERNAL;
	}
	for (const cJSON *c = j->child; c && r == 0; c = c->next) {
		if (cJSON_IsObject(j))
			r = api_print_string(c->string, ':', out);
		if (r == 0 && cJSON_IsString(c))
			r = api_print_string(c->valuestring, c->next ? ',' : 0, out);
		else if (r == 0 && (r = api_json_print(c, out)) == 0 && c->next)
			r = kms_buf_append(out, ",", 1);
	}
	return r < 0 ? r : kms_buf_append(out, close, 1);
}

/* Printed straight into resp: no text of cJSON's to allocate, copy and wipe. */
static int api_render(cJSON *out, struct kms_buf *resp)
{
	int r = api_json_print(out, resp);

	if (r == 0)
		r = kms_buf_append(resp, "\n", 1);
	return r; /* KMS_E_TOO_LONG: the answer (a batch's, in practice) passes 4 MiB */
}

/* One request; base holds what all requests of the call share (service, caller, claims, action). */
static int api_call_one(const struct api_request *base, const uint8_t *req, size_t len,
			struct kms_buf *resp)
{
	const struct api_service *svc = base->svc;
	const struct api_action *action = base->action;
	struct api_request r = *base;
	size_t start = resp->len;
	int err;

	if ((err = api_init()) < 0)
		goto fail;
	r.now_ms = kms_time_real_ms();
	if (!action) {
		err = KMS_E_BAD_URL;
		goto fail;
	}
	if (svc->audit && svc->audit_reserve) {
		if (svc->audit_reserve(svc->audit_ctx) != 0) {
			err = KMS_E_IO;
			goto fail_audited;
		}
		r.audit_reserved = true;
	}
	if ((err = api_authorise(&r)) < 0)
		goto fail;
	if ((err = api_parse(req, len, &r.body)) < 0)
		goto fail;
	r.out = cJSON_CreateObject();
	if (!r.out) {
		err = KMS_E_NOMEM;
		goto fail;
	}
	if ((err = action->handler(&r)) < 0)
		goto fail;
	if ((err = api_check_grant_done(&r)) < 0)
		goto fail;
	if ((err = api_audit(&r, 0)) < 0)
		goto fail_audited;
	if ((err = api_render(r.out, resp)) < 0)
		goto fail_audited;
	err = 0;
	goto out;
fail:
	if (api_audit(&r, err) < 0)
		err = KMS_E_IO;
fail_audited:
	/* Drop any partial output, then describe the failure. */
	kms_buf_truncate(resp, start);
	if (api_error_json(err, resp) < 0) {
		/* Only if resp is too small to hold ~120 bytes: leave it empty, keep the error. */
	}
out:
	cJSON_Delete(r.body);
	cJSON_Delete(r.out);
	return err;
}

/* Does the first non-blank line hold a complete JSON object by itself? */
static bool api_first_line_is_object(const uint8_t *req, size_t len, size_t *line_end)
{
	const uint8_t *nl = memchr(req, '\n', len);
	const char *end = NULL;
	cJSON *j;
	bool ok;

	if (!nl)
		return false;
	*line_end = (size_t)(nl - req);
	if (api_blank(req, *line_end))
		return false;
	j = cJSON_ParseWithLengthOpts((const char *)req, *line_end, &end, false);
	ok = j && cJSON_IsObject(j) && end &&
	     api_blank((const uint8_t *)end, *line_end - (size_t)(end - (const char *)req));
	cJSON_Delete(j);
	return ok && !api_blank(nl, len - *line_end);
}

/* A batch: one request object per line, one response per line, in order; each item succeeds or
 * fails alone. It is recognised only when the body is not a single JSON value but its first line
 * is a complete object, so a pretty-printed single request keeps its meaning. */
static size_t api_count_items(const uint8_t *req, size_t len)
{
	size_t pos = 0, items = 0;

	while (pos < len) {
		const uint8_t *nl = memchr(req + pos, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - (req + pos)) : len - pos;

		items += !api_blank(req + pos, n);
		pos += n + 1;
	}
	return items;
}

static int api_call_batch(const struct api_request *base, const uint8_t *req, size_t len,
			  struct kms_buf *resp)
{
	size_t pos = 0, left = api_count_items(req, len);
	int r;

	while (pos < len) {
		const uint8_t *nl = memchr(req + pos, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - (req + pos)) : len - pos, start = resp->len;

		if (!api_blank(req + pos, n)) {
			left--;
			r = api_call_one(base, req + pos, n, resp);
			if (r == KMS_E_TOKEN_MISSING || r == KMS_E_TOKEN_INVALID ||
			    r == KMS_E_TOKEN_EXPIRED || r == KMS_E_FORBIDDEN)
				return r; /* the caller may not do this at all: one answer suffices */
			/* Every item gets its line: an answer that would leave no room for the
			 * error lines of the items after it is replaced by KMS.0203 (the batch's
			 * response is too long), which always fits in the room kept for it. */
			if (resp->len == start ||
			    resp->max - resp->len < (left + 1) * API_ERROR_LINE_MAX) {
				kms_buf_truncate(resp, start);
				if ((r = api_error_json(KMS_E_TOO_LONG, resp)) < 0)
					return r;
			}
		}
		pos += n + 1;
	}
	return 0;
}

int api_call(const struct api_service *svc, const struct api_caller *caller,
	     const struct api_action *action, const uint8_t *req, size_t len, struct kms_buf *resp)
{
	const uint8_t *nl = req && len <= KMS_MAX_REQUEST ? memchr(req, '\n', len) : NULL;
	struct api_request base = { .svc = svc, .caller = caller, .action = action };
	struct auth_claims bound;
	const char *end = NULL;
	size_t line_end;
	cJSON *whole;

	/* Who the caller is, decided once for the whole body (every item of a batch). */
	base.claims = api_caller_claims(svc, caller, &bound, &base.auth_error);

	/* The common case, one line (echo adds the trailing newline): parse once. */
	if (!nl || api_blank(nl, len - (size_t)(nl - req)) || memchr(req, 0, len))
		return api_call_one(&base, req, len, resp);
	if (api_init() < 0)
		return api_call_one(&base, req, len, resp);
	whole = cJSON_ParseWithLengthOpts((const char *)req, len, &end, false);
	if (whole && end &&
	    api_blank((const uint8_t *)end, len - (size_t)(end - (const char *)req))) {
		cJSON_Delete(whole);
		return api_call_one(&base, req, len, resp);
	}
	cJSON_Delete(whole);
	if (!api_first_line_is_object(req, len, &line_end))
		return api_call_one(&base, req, len, resp);
	return api_call_batch(&base, req, len, resp);
}
