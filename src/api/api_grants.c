/* Grants (kms-api.md section 4.10): a grantee (a token's user name) may do exactly the granted
 * operations on one key, beyond what its role allows. The handlers are here; who may create,
 * retire or revoke a grant, and what a grant allows, is decided in api_authz.c. */
#include <stdio.h>
#include <string.h>

#include "api_internal.h"
#include "common/kms_err.h"
#include "common/kms_hex.h"
#include "core/kms_core.h"

#define API_GRANTS_PER_PAGE_MAX 1000ul

static bool api_principal_valid(const char *p)
{
	size_t n = strlen(p);

	if (n == 0 || n > STORE_PRINCIPAL_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' && p[i] <= 'Z') ||
		      (p[i] >= '0' && p[i] <= '9')))
			return false;
	return true;
}

static int api_grant_operations(struct api_request *r, char out[STORE_GRANT_OPS_MAX + 1])
{
	const cJSON *ops = cJSON_GetObjectItemCaseSensitive(r->body, "operations"), *op;
	size_t n = 0, used = 0;
	bool only_create_grant = true;

	out[0] = 0;
	if (!ops)
		return KMS_E_MISSING;
	if (!cJSON_IsArray(ops) || !ops->child)
		return KMS_E_BAD_PARAM;
	cJSON_ArrayForEach(op, ops)
	{
		if (!cJSON_IsString(op) || !api_action_grantable(op->valuestring))
			return KMS_E_BAD_PARAM;
		if (api_grant_ops_contain(out, op->valuestring))
			continue;
		if (strcmp(op->valuestring, "create-grant") != 0)
			only_create_grant = false;
		used += (size_t)snprintf(out + used, STORE_GRANT_OPS_MAX + 1 - used, "%s%s",
					 n++ ? "," : "", op->valuestring);
		if (used > STORE_GRANT_OPS_MAX)
			return KMS_E_BAD_PARAM;
	}
	return only_create_grant ? KMS_E_GRANT_OPERATIONS : 0;
}

static int api_optional_principal(struct api_request *r, const char *name, int bad, char *out,
				  size_t cap)
{
	const char *v;
	int e = api_get_string(r, name, false, bad, &v);

	out[0] = 0;
	if (e < 0)
		return e;
	if (v && !api_principal_valid(v))
		return bad;
	if (v)
		snprintf(out, cap, "%s", v);
	return 0;
}

int api_create_grant(struct api_request *r)
{
	struct store_grant g;
	struct store_key *k = NULL;
	const char *grantee, *type, *name;
	uint8_t raw[32];
	char hex[65];
	int e;

	memset(&g, 0, sizeof(g));
	if ((e = api_get_string(r, "grantee_principal", true, KMS_E_GRANT_USER, &grantee)) < 0)
		return e;
	if (!api_principal_valid(grantee))
		return KMS_E_GRANT_USER;
	if ((e = api_grant_operations(r, g.operations)) < 0)
		return e;
	if ((e = api_get_string(r, "name", false, KMS_E_BAD_PARAM, &name)) < 0)
		return e;
	if (name && !api_alias_valid(name))
		return KMS_E_BAD_PARAM;
	if ((e = api_optional_principal(r, "retiring_principal", KMS_E_BAD_PARAM, g.retiring,
					sizeof(g.retiring))) < 0)
		return e;
	if ((e = api_get_string(r, "grantee_principal_type", false, KMS_E_BAD_PARAM, &type)) < 0)
		return e;
	if (type && strcmp(type, "user") != 0 && strcmp(type, "domain") != 0)
		return KMS_E_BAD_PARAM;
	if ((e = api_check_sequence(r)) < 0 || (e = api_allowed_key(r, true, &k)) < 0)
		return e;
	if (k->meta.state == STORE_KEY_PENDING_DELETION) {
		e = KMS_E_KEY_PENDING_DELETION;
		goto out;
	}
	if ((e = api_check_grant_within_own(r, k, g.operations)) < 0)
		goto out;
	if ((e = core_random(raw, sizeof(raw))) < 0)
		goto out;
	kms_hex_encode(raw, sizeof(raw), hex);
	for (char *p = hex; *p; p++)
		if (*p >= 'A' && *p <= 'F')
			*p = (char)(*p - 'A' + 'a');
	snprintf(g.grant_id, sizeof(g.grant_id), "%s", hex);
	snprintf(g.project, sizeof(g.project), "%s", r->caller->project);
	snprintf(g.key_id, sizeof(g.key_id), "%s", k->meta.key_id);
	snprintf(g.grantee, sizeof(g.grantee), "%s", grantee);
	snprintf(g.grantee_type, sizeof(g.grantee_type), "%s", type ? type : "user");
	snprintf(g.issuer, sizeof(g.issuer), "%s", api_caller_user(r));
	snprintf(g.name, sizeof(g.name), "%s", name ? name : "");
	g.creation_ms = r->now_ms;
	if ((e = store_grant_create(r->svc->store, &g, KMS_GRANTS_PER_KEY)) < 0)
		goto out;
	e = api_add_string(r->out, "grant_id", g.grant_id);
	snprintf(r->object_id, sizeof(r->object_id), "%s", g.grant_id);
out:
	store_key_release(k);
	return e;
}

static cJSON *api_grant_object(const struct store_grant *g)
{
	cJSON *o = cJSON_CreateObject(), *ops;
	char created[24];

	if (!o)
		return NULL;
	snprintf(created, sizeof(created), "%lld", (long long)g->creation_ms);
	ops = cJSON_AddArrayToObject(o, "operations");
	for (const char *p = g->operations; ops && *p;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		char op[64];
		cJSON *s;

		snprintf(op, sizeof(op), "%.*s", (int)len, p);
		s = cJSON_CreateString(op);
		if (!s || !cJSON_AddItemToArray(ops, s)) {
			cJSON_Delete(s);
			ops = NULL;
			break;
		}
		p = comma ? comma + 1 : p + len;
	}
	if (!ops || api_add_string(o, "key_id", g->key_id) < 0 ||
	    api_add_string(o, "grant_id", g->grant_id) < 0 ||
	    api_add_string(o, "grantee_principal", g->grantee) < 0 ||
	    api_add_string(o, "grantee_principal_type", g->grantee_type) < 0 ||
	    api_add_string(o, "issuing_principal", g->issuer) < 0 ||
	    api_add_string(o, "creation_date", created) < 0 ||
	    api_add_string(o, "name", g->name) < 0 ||
	    api_add_string(o, "retiring_principal", g->retiring) < 0) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

static int api_grant_list_one(const struct store_grant *g, void *arg)
{
	cJSON *o = api_grant_object(g);

	if (!o || !cJSON_AddItemToArray(arg, o)) {
		cJSON_Delete(o);
		return KMS_E_NOMEM;
	}
	return 0;
}

static int api_list_grants_common(struct api_request *r, const struct store_grant_filter *f)
{
	unsigned long limit = 100, marker = 0;
	bool present;
	size_t total = 0;
	cJSON *arr;
	int e;

	if ((e = api_get_uint(r, "limit", false, KMS_E_LIMIT_INVALID, 1, API_GRANTS_PER_PAGE_MAX,
			      &limit, &present)) < 0 ||
	    (e = api_get_uint(r, "marker", false, KMS_E_MARKER_INVALID, 0, 1000000000ul, &marker,
			      &present)) < 0)
		return e;
	arr = cJSON_AddArrayToObject(r->out, "grants");
	if (!arr)
		return KMS_E_NOMEM;
	e = store_grant_list(r->svc->store, f, marker, limit, api_grant_list_one, arr, &total);
	if (e < 0)
		return e;
	return api_add_page(r->out, marker, (size_t)cJSON_GetArraySize(arr), total);
}

int api_list_grants(struct api_request *r)
{
	struct store_grant_filter f = { .project = r->caller->project };
	struct store_key *k = NULL;
	int e;

	if ((e = api_check_sequence(r)) < 0 || (e = api_allowed_key(r, true, &k)) < 0)
		return e;
	f.key_id = k->meta.key_id;
	e = api_list_grants_common(r, &f);
	store_key_release(k);
	return e;
}

int api_list_retirable_grants(struct api_request *r)
{
	struct store_grant_filter f = { .project = r->caller->project,
					.retiring = api_caller_user(r) };
	int e;

	if ((e = api_check_sequence(r)) < 0)
		return e;
	return api_list_grants_common(r, &f);
}

static int api_grant_copy(const struct store_grant *g, void *arg)
{
	*(struct store_grant *)arg = *g;
	return 0;
}

/* Find the request's grant on the request's key: KMS.2501 unknown, KMS.2502 other key. */
static int api_find_grant(struct api_request *r, struct store_grant *g)
{
	struct store_grant_filter f = { .project = r->caller->project };
	struct store_key *k = NULL;
	const char *id;
	size_t total = 0;
	int e;

	if ((e = api_get_string(r, "grant_id", true, KMS_E_GRANT_ID, &id)) < 0)
		return e;
	if (strlen(id) != STORE_GRANT_ID_LEN || !kms_is_hex(id, STORE_GRANT_ID_LEN))
		return KMS_E_GRANT_ID;
	if ((e = api_check_sequence(r)) < 0 || (e = api_allowed_key(r, true, &k)) < 0)
		return e;
	{
		char lower[STORE_GRANT_ID_LEN + 1];

		for (size_t i = 0; i <= STORE_GRANT_ID_LEN; i++)
			lower[i] = (char)(id[i] >= 'A' && id[i] <= 'F' ? id[i] - 'A' + 'a' : id[i]);
		f.grant_id = lower;
		memset(g, 0, sizeof(*g));
		e = store_grant_list(r->svc->store, &f, 0, 1, api_grant_copy, g, &total);
	}
	if (e == 0 && total == 0)
		e = KMS_E_GRANT_ID;
	if (e == 0 && strcmp(g->key_id, k->meta.key_id) != 0)
		e = KMS_E_GRANT_KEY_MISMATCH;
	store_key_release(k);
	return e;
}

int api_revoke_grant(struct api_request *r)
{
	struct store_grant g;
	int e = api_find_grant(r, &g);

	return e < 0 ? e : store_grant_delete(r->svc->store, g.grant_id);
}

int api_retire_grant(struct api_request *r)
{
	struct store_grant g;
	int e = api_find_grant(r, &g);

	if (e < 0 || (e = api_check_retire(r, &g)) < 0)
		return e;
	return store_grant_delete(r->svc->store, g.grant_id);
}
