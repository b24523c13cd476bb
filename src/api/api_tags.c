/* Tags (kms-api.md section 4.11). The REST API's GET and DELETE become files (docs/using.md,
 * Actions):
 *   keys/<id>/tags          {"tag":{"key","value"}} adds a tag; an empty request lists them
 *   keys/<id>/delete-tag    {"key":"K"} deletes one
 *   keys/<id>/tags-action   {"action":"create"|"delete","tags":[...]} in batches
 *   <P>/tags                lists the project's tags;  <P>/resource_instances-action filters keys */
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "api_internal.h"
#include "common/kms_err.h"

#define API_MAX_TAGS	  10u
#define API_TAG_KEY_MAX	  36u
#define API_TAG_VALUE_MAX 43u

/* UTF-8 text of min..max characters with no ASCII control character and none of *<>\= :
 * 0, else bad_chars or bad_length. */
static int api_tag_text_check(const char *s, size_t min, size_t max, int bad_chars, int bad_length)
{
	size_t chars;

	if (!api_utf8_length(s, "*<>\\=", &chars))
		return bad_chars;
	return chars >= min && chars <= max ? 0 : bad_length;
}

/* Tag keys: 1..36 characters (KMS.0411), allowed characters (KMS.0406). */
static int api_tag_key_check(const char *s)
{
	return api_tag_text_check(s, 1, API_TAG_KEY_MAX, KMS_E_TAG_KEY, KMS_E_TAG_KEY_LENGTH);
}

/* Tag values: 0..43 characters (KMS.0410), allowed characters (KMS.0405). */
static int api_tag_value_check(const char *s)
{
	return api_tag_text_check(s, 0, API_TAG_VALUE_MAX, KMS_E_TAG_VALUE, KMS_E_TAG_VALUE_LENGTH);
}

static int api_tag_fields(const cJSON *tag, const char **k, const char **v, bool need_value)
{
	const cJSON *key = cJSON_GetObjectItemCaseSensitive(tag, "key");
	const cJSON *value = cJSON_GetObjectItemCaseSensitive(tag, "value");
	int e;

	if (!cJSON_IsObject(tag))
		return KMS_E_TAG_LIST;
	if (!key)
		return KMS_E_MISSING;
	if (!cJSON_IsString(key))
		return KMS_E_TAG_KEY;
	if ((e = api_tag_key_check(key->valuestring)) < 0)
		return e;
	*k = key->valuestring;
	*v = "";
	if (!value)
		return need_value ? KMS_E_MISSING : 0;
	if (!cJSON_IsString(value))
		return KMS_E_TAG_VALUE;
	if ((e = api_tag_value_check(value->valuestring)) < 0)
		return e;
	*v = value->valuestring;
	return 0;
}

struct api_tag_out {
	cJSON *arr;
	size_t n;
};

static int api_tag_collect(const char *key_id, const char *k, const char *v, void *arg)
{
	struct api_tag_out *t = arg;
	cJSON *o = cJSON_CreateObject();

	if (!o || !cJSON_AddItemToArray(t->arr, o) || api_add_string(o, "key", k) < 0 ||
	    api_add_string(o, "value", v) < 0)
		return KMS_E_NOMEM;
	t->n++;
	return 0;
}

static bool api_only_sequence(const cJSON *body)
{
	for (const cJSON *c = body->child; c; c = c->next)
		if (strcmp(c->string, "sequence") != 0 && strcmp(c->string, "key_id") != 0)
			return false;
	return true;
}

int api_key_tags(struct api_request *r)
{
	const cJSON *tag = cJSON_GetObjectItemCaseSensitive(r->body, "tag");
	struct api_tag_out out = { 0 };
	struct store_key *k = NULL;
	const char *tk, *tv;
	int e;

	if ((e = api_check_sequence(r)) < 0)
		return e;
	if (!tag && !api_only_sequence(r->body))
		return KMS_E_MISSING;
	if (tag && (e = api_tag_fields(tag, &tk, &tv, true)) < 0)
		return e;
	if ((e = api_allowed_key(r, true, &k)) < 0)
		return e;
	if (tag) {
		if (k->meta.state == STORE_KEY_PENDING_DELETION)
			e = KMS_E_KEY_PENDING_DELETION;
		else
			e = store_tag_set(r->svc->store, k->meta.key_id, tk, tv, API_MAX_TAGS);
		goto out;
	}
	out.arr = cJSON_AddArrayToObject(r->out, "tags");
	if (!out.arr || !cJSON_AddArrayToObject(r->out, "sys_tags")) {
		e = KMS_E_NOMEM;
		goto out;
	}
	e = store_tag_list(r->svc->store, r->caller->project, k->meta.key_id, api_tag_collect,
			   &out);
	if (e == 0)
		e = api_add_int(r->out, "existTagsNum", (double)out.n);
out:
	store_key_release(k);
	return e;
}

int api_delete_tag(struct api_request *r)
{
	struct store_key *k = NULL;
	const char *tk;
	int e;

	if ((e = api_get_string(r, "key", true, KMS_E_TAG_KEY, &tk)) < 0)
		return e;
	if ((e = api_tag_key_check(tk)) < 0)
		return e;
	if ((e = api_check_sequence(r)) < 0 || (e = api_allowed_key(r, true, &k)) < 0)
		return e;
	/* As tags-action delete: a key pending deletion keeps its tags until it is destroyed. */
	if (k->meta.state == STORE_KEY_PENDING_DELETION)
		e = KMS_E_KEY_PENDING_DELETION;
	else
		e = store_tag_delete(r->svc->store, k->meta.key_id, tk);
	store_key_release(k);
	return e;
}

/* The tag keys a key has now, to check a create against the limit before changing anything. */
struct api_tag_names {
	char names[API_MAX_TAGS][API_TAG_KEY_MAX + 1];
	size_t n;
};

static int api_tag_name(const char *key_id, const char *k, const char *v, void *arg)
{
	struct api_tag_names *t = arg;

	if (t->n < API_MAX_TAGS)
		snprintf(t->names[t->n++], sizeof(t->names[0]), "%s", k);
	return 0;
}

static bool api_tag_named(const struct api_tag_names *t, const char *k)
{
	for (size_t i = 0; i < t->n; i++)
		if (strcmp(t->names[i], k) == 0)
			return true;
	return false;
}

/* Would creating these tags pass the per-key limit? Counts each new tag key once (a key that
 * repeats in the request, or that the key already has, replaces a value). */
static int api_tags_fit(struct api_request *r, const struct store_key *k, const cJSON *tags)
{
	struct api_tag_names have = { .n = 0 };
	const cJSON *t;
	const char *tk, *tv;
	int e;

	if ((e = store_tag_list(r->svc->store, r->caller->project, k->meta.key_id, api_tag_name,
				&have)) < 0)
		return e;
	cJSON_ArrayForEach(t, tags)
	{
		if ((e = api_tag_fields(t, &tk, &tv, true)) < 0)
			return e;
		if (api_tag_named(&have, tk))
			continue;
		if (have.n >= API_MAX_TAGS)
			return KMS_E_TOO_MANY_TAGS;
		snprintf(have.names[have.n++], sizeof(have.names[0]), "%s", tk);
	}
	return 0;
}

int api_tags_action(struct api_request *r)
{
	const cJSON *tags = cJSON_GetObjectItemCaseSensitive(r->body, "tags"), *t;
	struct store_key *k = NULL;
	const char *action, *tk, *tv;
	bool create;
	int e;

	if ((e = api_get_string(r, "action", true, KMS_E_TAG_ACTION, &action)) < 0)
		return e;
	if (strcmp(action, "create") != 0 && strcmp(action, "delete") != 0)
		return KMS_E_TAG_ACTION;
	create = strcmp(action, "create") == 0;
	if (!tags)
		return KMS_E_MISSING;
	if (!cJSON_IsArray(tags))
		return KMS_E_TAG_LIST;
	if (!tags->child)
		return KMS_E_TAG_LIST_EMPTY;
	if (cJSON_GetArraySize(tags) > (int)API_MAX_TAGS)
		return KMS_E_TAG_LIST_SIZE; /* more items than a key may have tags */
	/* Validate every item before changing anything. */
	cJSON_ArrayForEach(t, tags) if ((e = api_tag_fields(t, &tk, &tv, create)) < 0) return e;
	if ((e = api_check_sequence(r)) < 0 || (e = api_allowed_key(r, true, &k)) < 0)
		return e;
	if (k->meta.state == STORE_KEY_PENDING_DELETION) {
		e = KMS_E_KEY_PENDING_DELETION;
		goto out;
	}
	/* All or nothing: a create that would pass the limit changes no tag. */
	if (create && (e = api_tags_fit(r, k, tags)) < 0)
		goto out;
	cJSON_ArrayForEach(t, tags)
	{
		if ((e = api_tag_fields(t, &tk, &tv, create)) < 0)
			goto out;
		if (create)
			e = store_tag_set(r->svc->store, k->meta.key_id, tk, tv, API_MAX_TAGS);
		else
			e = store_tag_delete(r->svc->store, k->meta.key_id, tk);
		if (e == KMS_E_TAG_NOT_FOUND)
			e = 0; /* deleting in batches: already gone is fine */
		if (e < 0)
			goto out;
	}
out:
	store_key_release(k);
	return e;
}

/* Project tags: {"tags":[{"key":K,"values":[...]}]} */
struct api_project_tags {
	cJSON *arr;
};

static int api_project_tag(const char *key_id, const char *k, const char *v, void *arg)
{
	struct api_project_tags *p = arg;
	cJSON *entry = NULL, *c, *values, *s;

	cJSON_ArrayForEach(c, p->arr)
	{
		const cJSON *key = cJSON_GetObjectItemCaseSensitive(c, "key");

		if (strcmp(key->valuestring, k) == 0)
			entry = c;
	}
	if (!entry) {
		entry = cJSON_CreateObject();
		if (!entry || !cJSON_AddItemToArray(p->arr, entry) ||
		    api_add_string(entry, "key", k) < 0 || !cJSON_AddArrayToObject(entry, "values"))
			return KMS_E_NOMEM;
	}
	values = cJSON_GetObjectItemCaseSensitive(entry, "values");
	cJSON_ArrayForEach(c, values) if (strcmp(c->valuestring, v) == 0) return 0;
	s = cJSON_CreateString(v);
	if (!s || !cJSON_AddItemToArray(values, s)) {
		cJSON_Delete(s);
		return KMS_E_NOMEM;
	}
	return 0;
}

int api_project_tags(struct api_request *r)
{
	struct api_project_tags p = { cJSON_AddArrayToObject(r->out, "tags") };

	if (!p.arr)
		return KMS_E_NOMEM;
	return store_tag_list(r->svc->store, r->caller->project, NULL, api_project_tag, &p);
}

/* resource_instances/action: filter or count keys by tags and name. */
struct api_instances {
	struct api_request *r;
	const cJSON *tags;
	const char *name_match;
	unsigned long offset, limit;
	bool count_only;
	size_t matched;
	cJSON *resources;
	cJSON *key_tags; /* scratch: tags of the key being looked at */
};

static int api_instances_tag(const char *key_id, const char *k, const char *v, void *arg)
{
	struct api_instances *c = arg;
	cJSON *o = cJSON_CreateObject();

	if (!o || !cJSON_AddItemToArray(c->key_tags, o) || api_add_string(o, "key", k) < 0 ||
	    api_add_string(o, "value", v) < 0)
		return KMS_E_NOMEM;
	return 0;
}

static bool api_instances_match(struct api_instances *c, const struct store_key_meta *m)
{
	const cJSON *want;

	if (c->name_match && !strstr(m->alias, c->name_match))
		return false;
	cJSON_ArrayForEach(want, c->tags)
	{
		const cJSON *wk = cJSON_GetObjectItemCaseSensitive(want, "key");
		const cJSON *wv = cJSON_GetObjectItemCaseSensitive(want, "values"), *have, *v;
		bool ok = false;

		cJSON_ArrayForEach(have, c->key_tags)
		{
			const char *hk = cJSON_GetObjectItemCaseSensitive(have, "key")->valuestring;
			const char *hv =
				cJSON_GetObjectItemCaseSensitive(have, "value")->valuestring;

			if (strcmp(hk, wk->valuestring) != 0)
				continue;
			if (!wv || !wv->child)
				ok = true;
			cJSON_ArrayForEach(v, wv) if (strcmp(v->valuestring, hv) == 0) ok = true;
		}
		if (!ok)
			return false;
	}
	return true;
}

static int api_instances_key(const struct store_key_meta *m, void *arg)
{
	struct api_instances *c = arg;
	cJSON *res = NULL, *detail = NULL;
	int e;

	c->key_tags = cJSON_CreateArray();
	if (!c->key_tags)
		return KMS_E_NOMEM;
	e = store_tag_list(c->r->svc->store, c->r->caller->project, m->key_id, api_instances_tag,
			   c);
	if (e < 0 || !api_instances_match(c, m))
		goto out;
	if (c->count_only || c->matched++ < c->offset || c->matched > c->offset + c->limit)
		goto out;
	res = cJSON_CreateObject();
	detail = api_key_object(c->r->svc, m);
	if (!res || !detail || !cJSON_AddItemToArray(c->resources, res)) {
		cJSON_Delete(res);
		e = KMS_E_NOMEM;
		goto out;
	}
	if (api_add_string(res, "resource_id", m->key_id) < 0 ||
	    !cJSON_AddItemToObject(res, "resource_detail", detail) ||
	    api_add_string(res, "resource_name", m->alias) < 0 ||
	    !cJSON_AddItemToObject(res, "tags", c->key_tags)) {
		e = KMS_E_NOMEM;
		goto out;
	}
	detail = NULL;
	c->key_tags = NULL;
out:
	if (c->count_only && e == 0 && c->key_tags && api_instances_match(c, m))
		c->matched++;
	cJSON_Delete(detail);
	cJSON_Delete(c->key_tags);
	c->key_tags = NULL;
	return e;
}

static int api_instances_check(struct api_instances *c, const cJSON *matches)
{
	const cJSON *t, *m;
	int e;

	if (c->tags && !cJSON_IsArray(c->tags))
		return KMS_E_TAG_LIST;
	cJSON_ArrayForEach(t, c->tags)
	{
		const cJSON *k = cJSON_GetObjectItemCaseSensitive(t, "key");
		const cJSON *vs = cJSON_GetObjectItemCaseSensitive(t, "values"), *v;

		if (!cJSON_IsObject(t) || !cJSON_IsString(k))
			return KMS_E_TAG_KEY;
		if ((e = api_tag_key_check(k->valuestring)) < 0)
			return e;
		if (vs && !cJSON_IsArray(vs))
			return KMS_E_TAG_VALUE;
		cJSON_ArrayForEach(v, vs) if (!cJSON_IsString(v)) return KMS_E_TAG_VALUE;
		else if ((e = api_tag_value_check(v->valuestring)) < 0) return e;
	}
	if (matches && !cJSON_IsArray(matches))
		return KMS_E_TAG_MATCH_KEY;
	cJSON_ArrayForEach(m, matches)
	{
		const cJSON *k = cJSON_GetObjectItemCaseSensitive(m, "key");
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, "value");

		if (!cJSON_IsString(k) || strcmp(k->valuestring, "resource_name") != 0)
			return KMS_E_TAG_MATCH_KEY;
		if (!cJSON_IsString(v) || strlen(v->valuestring) > KMS_MAX_ALIAS)
			return KMS_E_TAG_MATCH_VALUE;
		c->name_match = v->valuestring;
	}
	return 0;
}

int api_resource_instances(struct api_request *r)
{
	struct api_instances c = { .r = r, .limit = 10 };
	const char *action;
	bool present;
	size_t total;
	int e;

	if ((e = api_get_string(r, "action", true, KMS_E_TAG_ACTION, &action)) < 0)
		return e;
	if (strcmp(action, "filter") != 0 && strcmp(action, "count") != 0)
		return KMS_E_TAG_ACTION;
	c.count_only = strcmp(action, "count") == 0;
	c.tags = cJSON_GetObjectItemCaseSensitive(r->body, "tags");
	if ((e = api_instances_check(&c, cJSON_GetObjectItemCaseSensitive(r->body, "matches"))) < 0)
		return e;
	if ((e = api_get_uint(r, "limit", false, KMS_E_LIMIT_INVALID, 1, 1000, &c.limit,
			      &present)) < 0 ||
	    (e = api_get_uint(r, "offset", false, KMS_E_OFFSET_INVALID, 0, 1000000000ul, &c.offset,
			      &present)) < 0 ||
	    (e = api_check_sequence(r)) < 0)
		return e;
	if (!c.count_only && !(c.resources = cJSON_AddArrayToObject(r->out, "resources")))
		return KMS_E_NOMEM;
	e = store_key_list(r->svc->store, r->caller->project, 0, 0, SIZE_MAX, api_instances_key, &c,
			   &total);
	if (e < 0)
		return e;
	return api_add_int(r->out, "total_count", (double)c.matched);
}
