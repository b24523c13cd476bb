/* Field validation and key resolution, shared by every handler. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"
#include "common/kms_err.h"
#include "common/kms_hex.h"
#include "common/kms_limits.h"
#include "common/kms_secmem.h"

int api_get_string(struct api_request *r, const char *name, bool required, int err_type,
		   const char **s)
{
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(r->body, name);

	*s = NULL;
	if (!f || cJSON_IsNull(f))
		return required ? KMS_E_MISSING : 0;
	if (!cJSON_IsString(f) || !f->valuestring)
		return err_type;
	*s = f->valuestring;
	return 0;
}

int api_require(struct api_request *r, const char *name)
{
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(r->body, name);

	return f && !cJSON_IsNull(f) ? 0 : KMS_E_MISSING;
}

int api_get_uint(struct api_request *r, const char *name, bool required, int bad, unsigned long min,
		 unsigned long max, unsigned long *v, bool *present)
{
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(r->body, name);
	/* 9 digits for counts and lengths; 15 for the few fields (dates) whose max needs them. */
	bool wide = max > 1000000000ul;
	size_t max_digits = wide ? 15 : 9;
	double max_number = wide ? 1e15 : 1e9;
	unsigned long x = 0;

	*present = false;
	if (!f || cJSON_IsNull(f))
		return required ? KMS_E_MISSING : 0;
	if (cJSON_IsString(f)) {
		const char *s = f->valuestring;
		size_t n = strlen(s);

		/* Plain decimal digits only: no sign, blanks, hex or exponent. */
		if (n == 0 || n > max_digits)
			return bad;
		for (size_t i = 0; i < n; i++) {
			if (s[i] < '0' || s[i] > '9')
				return bad;
			x = x * 10 + (unsigned long)(s[i] - '0');
		}
	} else if (cJSON_IsNumber(f)) {
		double d = f->valuedouble;

		if (d < 0 || d > max_number || d != (double)(unsigned long)d)
			return bad;
		x = (unsigned long)d;
	} else {
		return bad;
	}
	if (x < min || x > max)
		return bad;
	*v = x;
	*present = true;
	return 0;
}

int api_check_sequence(struct api_request *r)
{
	const char *s;
	int e = api_get_string(r, "sequence", false, KMS_E_BAD_SEQUENCE, &s);

	if (e < 0 || !s)
		return e;
	if (strlen(s) != 36)
		return KMS_E_BAD_SEQUENCE;
	for (const char *p = s; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
		      (*p >= 'A' && *p <= 'Z') || *p == '-'))
			return KMS_E_BAD_SEQUENCE;
	return 0;
}

static int api_key_cmp(const void *a, const void *b)
{
	const cJSON *x = *(const cJSON *const *)a, *y = *(const cJSON *const *)b;

	return strcmp(x->string, y->string);
}

/* A copy of j with object members sorted by name, recursively; NULL on duplicates or no memory. */
static cJSON *api_sorted_copy(const cJSON *j)
{
	const cJSON *c;
	cJSON *out, **kids = NULL;
	size_t n = 0, i;

	if (!cJSON_IsObject(j) && !cJSON_IsArray(j))
		return cJSON_Duplicate(j, false);
	out = cJSON_IsObject(j) ? cJSON_CreateObject() : cJSON_CreateArray();
	if (!out)
		return NULL;
	for (c = j->child; c; c = c->next)
		n++;
	if (n == 0)
		return out;
	kids = calloc(n, sizeof(*kids));
	if (!kids)
		goto fail;
	for (i = 0, c = j->child; c; c = c->next, i++) {
		kids[i] = api_sorted_copy(c);
		if (!kids[i])
			goto fail;
		/* cJSON_Duplicate already named leaves; containers made here need a name. */
		if (c->string && !kids[i]->string && !(kids[i]->string = strdup(c->string)))
			goto fail;
	}
	if (cJSON_IsObject(j)) {
		qsort(kids, n, sizeof(*kids), api_key_cmp);
		for (i = 1; i < n; i++)
			if (strcmp(kids[i - 1]->string, kids[i]->string) == 0)
				goto fail;
	}
	for (i = 0; i < n; i++) {
		if (!cJSON_AddItemToArray(out, kids[i]))
			goto fail;
		kids[i] = NULL;
	}
	free(kids);
	return out;
fail:
	for (i = 0; kids && i < n; i++)
		cJSON_Delete(kids[i]);
	free(kids);
	cJSON_Delete(out);
	return NULL;
}

static int api_get_encryption_context(struct api_request *r, struct kms_buf *ctx);

/* Huawei's additional_authenticated_data (a string of up to 128 bytes) binds like a context:
 * it is appended after a NUL, which no canonical context contains (\u0000 is refused). */
static int api_add_aad(struct api_request *r, struct kms_buf *ctx)
{
	const char *aad;
	int e = api_get_string(r, "additional_authenticated_data", false, KMS_E_BAD_CONTEXT, &aad);

	if (e < 0 || !aad || !aad[0])
		return e;
	if (strlen(aad) > 128)
		return KMS_E_BAD_CONTEXT;
	if (kms_buf_append(ctx, "\0aad\0", 5) < 0 || kms_buf_append_str(ctx, aad) < 0)
		return KMS_E_BAD_CONTEXT;
	return 0;
}

int api_get_context(struct api_request *r, struct kms_buf *ctx)
{
	int e = api_get_encryption_context(r, ctx);

	return e < 0 ? e : api_add_aad(r, ctx);
}

/* Every number finite: cJSON prints inf and nan as null, so {"n":1e999} would bind like
 * {"n":null}. */
static bool api_context_numbers_finite(const cJSON *j)
{
	if (cJSON_IsNumber(j) && !isfinite(j->valuedouble))
		return false;
	for (const cJSON *c = j->child; c; c = c->next)
		if (!api_context_numbers_finite(c))
			return false;
	return true;
}

/* The checks of a request body, for a context given either way (the object nested in the
 * request, or a string holding it): one JSON text maps to one context and back. */
static bool api_context_acceptable(const cJSON *ctx)
{
	/* As deep as it could be inside a request body (one level for the body itself). */
	return api_json_depth(ctx) + 1 <= KMS_MAX_JSON_DEPTH && api_context_numbers_finite(ctx);
}

static int api_get_encryption_context(struct api_request *r, struct kms_buf *ctx)
{
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(r->body, "encryption_context");
	cJSON *parsed = NULL, *sorted = NULL;
	char *text = NULL;
	int e = KMS_E_BAD_CONTEXT;

	kms_buf_reset(ctx);
	if (!f || cJSON_IsNull(f))
		return 0;
	if (cJSON_IsString(f)) {
		/* Some SDKs send the context as a JSON string holding the object. */
		size_t n = strlen(f->valuestring);

		if (n == 0)
			return 0;
		if (n > KMS_MAX_CONTEXT ||
		    api_json_has_nul_escape((const uint8_t *)f->valuestring, n))
			return KMS_E_BAD_CONTEXT;
		parsed = cJSON_ParseWithOpts(f->valuestring, NULL, true);
		f = parsed;
	}
	if (!cJSON_IsObject(f) || !api_context_acceptable(f))
		goto out;
	if (!f->child) {
		e = 0; /* {} is the same as no context */
		goto out;
	}
	sorted = api_sorted_copy(f);
	if (!sorted)
		goto out;
	text = cJSON_PrintUnformatted(sorted);
	if (!text || strlen(text) > KMS_MAX_CONTEXT)
		goto out;
	e = kms_buf_append_str(ctx, text) < 0 ? KMS_E_BAD_CONTEXT : 0;
out:
	if (text)
		cJSON_free(text);
	cJSON_Delete(sorted);
	cJSON_Delete(parsed);
	return e;
}

bool api_utf8_length(const char *s, const char *refused, size_t *chars)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = 0;

	while (*p) {
		size_t len = *p < 0x80	       ? 1
			     : (*p >> 5) == 6  ? 2
			     : (*p >> 4) == 14 ? 3
			     : (*p >> 3) == 30 ? 4
					       : 0;

		if (len == 0 || (refused && (*p < 32 || strchr(refused, *p))))
			return false;
		for (size_t i = 1; i < len; i++)
			if ((p[i] & 0xc0) != 0x80)
				return false;
		p += len;
		n++;
	}
	*chars = n;
	return true;
}

bool api_key_id_valid(const char *s)
{
	if (strlen(s) != KMS_KEY_ID_LEN)
		return false;
	for (size_t i = 0; i < KMS_KEY_ID_LEN; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		char c = s[i];

		if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')))
			return false;
	}
	return true;
}

bool api_alias_valid(const char *s)
{
	size_t n = strlen(s);
	static const char suffix[] = "/default";

	if (n == 0 || n > KMS_MAX_ALIAS)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == ':' || c == '/' || c == '_' || c == '-'))
			return false;
	}
	/* Default Master Keys own the "/default" suffix. */
	return !(n >= strlen(suffix) && strcmp(s + n - strlen(suffix), suffix) == 0);
}

/* An alias is a name under aliases/ with each '/' written "%2F" (3 bytes): that name must fit
 * in one directory entry (NAME_MAX, 255 bytes), or the link could be listed but not looked up. */
static bool api_alias_entry_fits(const char *alias)
{
	size_t n = 0;

	for (const char *p = alias; *p; p++)
		n += *p == '/' ? 3 : 1;
	return n <= API_ALIAS_ENTRY_MAX;
}

int api_get_alias(struct api_request *r, const char **alias)
{
	int e = api_get_string(r, "key_alias", true, KMS_E_ALIAS_INVALID, alias);

	if (e < 0)
		return e;
	return api_alias_valid(*alias) && api_alias_entry_fits(*alias) ? 0 : KMS_E_ALIAS_INVALID;
}

int api_parse_key_ref(struct api_request *r, const char *ref, char id[KMS_KEY_ID_LEN + 1],
		      char alias[KMS_MAX_ALIAS + 1])
{
	const struct store *st = r->svc->store;
	char urn[128];
	size_t n;

	id[0] = alias[0] = 0;
	if (api_key_id_valid(ref)) {
		memcpy(id, ref, KMS_KEY_ID_LEN + 1);
		return 0;
	}
	if (strncmp(ref, "alias/", 6) == 0 && api_alias_valid(ref + 6)) {
		snprintf(alias, KMS_MAX_ALIAS + 1, "%s", ref + 6);
		return 0;
	}
	/* kms:<region>:<domain_id>:alias:<name> */
	n = (size_t)snprintf(urn, sizeof(urn), "kms:%s:%s:alias:", store_region(st),
			     store_domain_id(st));
	if (n < sizeof(urn) && strncmp(ref, urn, n) == 0 && api_alias_valid(ref + n)) {
		snprintf(alias, KMS_MAX_ALIAS + 1, "%s", ref + n);
		return 0;
	}
	{
		/* A well-formed URN of another region or domain names no key of ours. */
		const char *name = strncmp(ref, "kms:", 4) == 0 ? strstr(ref, ":alias:") : NULL;

		if (name && api_alias_valid(name + 7))
			return KMS_E_KEY_NOT_FOUND;
	}
	return KMS_E_BAD_KEY_ID;
}

int api_resolve_key(struct api_request *r, bool required, struct store_key **key)
{
	const char *project = r->caller->project, *path_id = r->caller->path_key_id, *ref;
	char id[KMS_KEY_ID_LEN + 1], alias[KMS_MAX_ALIAS + 1];
	struct store_key *k = NULL;
	int e;

	*key = NULL;
	if ((e = api_get_string(r, "key_id", required && !path_id, KMS_E_BAD_KEY_ID, &ref)) < 0)
		return e;
	if (!ref && !path_id)
		return 0;
	if (ref && (e = api_parse_key_ref(r, ref, id, alias)) < 0)
		return e;
	if (ref && path_id && id[0] && strcmp(id, path_id) != 0)
		return KMS_E_BAD_KEY_ID; /* a key folder serves only its own key */
	if (!ref)
		snprintf(id, sizeof(id), "%s", path_id);
	if (id[0])
		e = store_key_get(r->svc->store, project, id, &k);
	else
		e = store_key_get_by_alias(r->svc->store, project, alias, &k);
	if (e < 0)
		return e;
	if (path_id && strcmp(k->meta.key_id, path_id) != 0) {
		store_key_release(k);
		return KMS_E_BAD_KEY_ID;
	}
	snprintf(r->key_id, sizeof(r->key_id), "%s", k->meta.key_id);
	*key = k;
	return 0;
}

int api_key_usable(const struct store_key *k)
{
	switch (k->meta.state) {
	case STORE_KEY_ENABLED:
		return k->meta.has_material ? 0 : KMS_E_KEY_DISABLED;
	case STORE_KEY_PENDING_DELETION:
		return KMS_E_KEY_PENDING_DELETION;
	default:
		/* Disabled, and (docs/api-differences.md) pending import: the API names no code. */
		return KMS_E_KEY_DISABLED;
	}
}

/* Add item (consumed) under name, a literal: cJSON keeps the pointer (AddItemToObjectCS) instead
 * of copying the name into every response, and never frees it. */
static int api_add_item(cJSON *o, const char *name, cJSON *item)
{
	if (!item || !cJSON_AddItemToObjectCS(o, name, item)) {
		cJSON_Delete(item);
		return KMS_E_NOMEM;
	}
	return 0;
}

int api_add_string(cJSON *o, const char *name, const char *value)
{
	return api_add_item(o, name, cJSON_CreateString(value));
}

int api_add_hex(cJSON *o, const char *name, const uint8_t *p, size_t n)
{
	char *hex = malloc(2 * n + 1);
	cJSON *s;

	if (!hex)
		return KMS_E_NOMEM;
	kms_hex_encode(p, n, hex);
	s = cJSON_CreateString(hex);
	kms_wipe(hex, 2 * n + 1);
	free(hex);
	return api_add_item(o, name, s);
}

int api_add_ulong_string(cJSON *o, const char *name, unsigned long v)
{
	char s[24];

	snprintf(s, sizeof(s), "%lu", v);
	return api_add_string(o, name, s);
}

int api_add_int(cJSON *o, const char *name, double v)
{
	return api_add_item(o, name, cJSON_CreateNumber(v));
}

int api_add_page(cJSON *o, unsigned long marker, size_t count, size_t total)
{
	int e;

	if (marker + count < total) {
		if ((e = api_add_ulong_string(o, "next_marker", marker + count)) < 0 ||
		    (e = api_add_string(o, "truncated", "true")) < 0)
			return e;
	} else if ((e = api_add_string(o, "next_marker", "")) < 0 ||
		   (e = api_add_string(o, "truncated", "false")) < 0) {
		return e;
	}
	return api_add_int(o, "total", (double)total);
}

static void api_ms_string(int64_t ms, char out[24])
{
	if (ms > 0)
		snprintf(out, 24, "%lld", (long long)ms);
	else
		out[0] = 0;
}

cJSON *api_key_object(const struct api_service *svc, const struct store_key_meta *m)
{
	char created[24], deletion[24], expiration[24], state[4];
	cJSON *o = cJSON_CreateObject();

	if (!o)
		return NULL;
	api_ms_string(m->creation_ms, created);
	api_ms_string(m->deletion_ms, deletion);
	api_ms_string(m->expiration_ms, expiration);
	snprintf(state, sizeof(state), "%d", m->state);
	if (api_add_string(o, "key_id", m->key_id) < 0 ||
	    api_add_string(o, "domain_id", store_domain_id(svc->store)) < 0 ||
	    api_add_string(o, "key_alias", m->alias) < 0 ||
	    api_add_string(o, "realm", store_region(svc->store)) < 0 ||
	    api_add_string(o, "key_spec", m->key_spec) < 0 ||
	    api_add_string(o, "key_usage", m->key_usage) < 0 ||
	    api_add_string(o, "key_description", m->description) < 0 ||
	    api_add_string(o, "creation_date", created) < 0 ||
	    api_add_string(o, "scheduled_deletion_date", deletion) < 0 ||
	    api_add_string(o, "key_state", state) < 0 ||
	    api_add_string(o, "default_key_flag", "0") < 0 ||
	    api_add_string(o, "key_type", "1") < 0 ||
	    api_add_string(o, "expiration_time", expiration) < 0 ||
	    api_add_string(o, "origin", m->origin) < 0 ||
	    api_add_string(o, "key_rotation_enabled", m->rotation_enabled ? "true" : "false") < 0) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}
