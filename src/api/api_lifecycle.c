/* Key lifecycle and counters (kms-api.md sections 4.4-4.9, 6.2): state machine transitions are
 * validated and applied atomically by store_key_modify(), durable before the response is built. */
#include <stdio.h>
#include <string.h>

#include "api_internal.h"
#include "common/kms_err.h"

/* Resolve the request's key and apply edit to it; *out (optional) gets the new snapshot. */
static int api_modify(struct api_request *r, store_key_edit_fn edit, void *arg,
		      struct store_key **out)
{
	struct store_key *k = NULL;
	char key_id[KMS_KEY_ID_LEN + 1];
	int e;

	if ((e = api_check_sequence(r)) < 0)
		return e;
	if ((e = api_allowed_key(r, true, &k)) < 0)
		return e;
	snprintf(key_id, sizeof(key_id), "%s", k->meta.key_id);
	store_key_release(k);
	return store_key_modify(r->svc->store, r->caller->project, key_id, edit, arg, out);
}

static int api_key_state_reply(struct api_request *r, const struct store_key *k, bool wrapped)
{
	cJSON *o = wrapped ? cJSON_AddObjectToObject(r->out, "key_info") : r->out;
	char state[4];
	int e;

	if (!o)
		return KMS_E_NOMEM;
	snprintf(state, sizeof(state), "%d", k->meta.state);
	if ((e = api_add_string(o, "key_id", k->meta.key_id)) < 0)
		return e;
	return api_add_string(o, "key_state", state);
}

static int api_edit_enable(struct store_key_meta *m, void *arg)
{
	if (m->state != STORE_KEY_DISABLED)
		return m->state == STORE_KEY_PENDING_DELETION ? KMS_E_KEY_PENDING_DELETION
							      : KMS_E_NOT_DISABLED;
	m->state = STORE_KEY_ENABLED;
	return 0;
}

static int api_edit_disable(struct store_key_meta *m, void *arg)
{
	if (m->state != STORE_KEY_ENABLED)
		return m->state == STORE_KEY_PENDING_DELETION ? KMS_E_KEY_PENDING_DELETION
							      : KMS_E_NOT_ENABLED;
	m->state = STORE_KEY_DISABLED;
	return 0;
}

static int api_state_change(struct api_request *r, store_key_edit_fn edit, bool wrapped)
{
	struct store_key *k = NULL;
	int e = api_modify(r, edit, NULL, &k);

	if (e == 0)
		e = api_key_state_reply(r, k, wrapped);
	store_key_release(k);
	return e;
}

int api_enable_key(struct api_request *r)
{
	return api_state_change(r, api_edit_enable, true);
}

int api_disable_key(struct api_request *r)
{
	return api_state_change(r, api_edit_disable, true);
}

int api_state_change_arg(struct api_request *r, store_key_edit_fn edit, void *arg)
{
	struct store_key *k = NULL;
	int e = api_modify(r, edit, arg, &k);

	if (e == 0)
		e = api_key_state_reply(r, k, false);
	store_key_release(k);
	return e;
}

struct api_deletion {
	int64_t when_ms;
};

static int api_edit_schedule(struct store_key_meta *m, void *arg)
{
	struct api_deletion *d = arg;

	if (m->state == STORE_KEY_PENDING_DELETION)
		return KMS_E_ALREADY_PENDING;
	m->state = STORE_KEY_PENDING_DELETION;
	m->deletion_ms = d->when_ms;
	return 0;
}

int api_schedule_key_deletion(struct api_request *r)
{
	struct api_deletion d;
	unsigned long days = 0;
	bool present;
	int e;

	e = api_get_uint(r, "pending_days", true, KMS_E_PENDING_DAYS, 7, 1096, &days, &present);
	if (e < 0)
		return e;
	d.when_ms = r->now_ms + (int64_t)days * 86400000;
	return api_state_change_arg(r, api_edit_schedule, &d);
}

static int api_edit_cancel(struct store_key_meta *m, void *arg)
{
	if (m->state != STORE_KEY_PENDING_DELETION)
		return KMS_E_NOT_PENDING;
	/* The API returns a cancelled key to Disabled (3), not Enabled; a key without material
	 * (origin external, never imported or deleted) to Pending import (5). */
	m->state = m->has_material ? STORE_KEY_DISABLED : STORE_KEY_PENDING_IMPORT;
	m->deletion_ms = 0;
	return 0;
}

int api_cancel_key_deletion(struct api_request *r)
{
	return api_state_change(r, api_edit_cancel, false);
}

static int api_edit_alias(struct store_key_meta *m, void *arg)
{
	if (m->state == STORE_KEY_PENDING_DELETION)
		return KMS_E_KEY_PENDING_DELETION;
	snprintf(m->alias, sizeof(m->alias), "%s", (const char *)arg);
	return 0;
}

int api_update_key_alias(struct api_request *r)
{
	struct store_key *k = NULL;
	const char *alias;
	cJSON *info;
	int e;

	if ((e = api_get_alias(r, &alias)) < 0)
		return e;
	if ((e = api_modify(r, api_edit_alias, (void *)alias, &k)) < 0)
		return e;
	info = cJSON_AddObjectToObject(r->out, "key_info");
	if (!info || api_add_string(info, "key_id", k->meta.key_id) < 0 ||
	    api_add_string(info, "key_alias", k->meta.alias) < 0)
		e = KMS_E_NOMEM;
	store_key_release(k);
	return e;
}

static int api_edit_description(struct store_key_meta *m, void *arg)
{
	if (m->state == STORE_KEY_PENDING_DELETION)
		return KMS_E_KEY_PENDING_DELETION;
	snprintf(m->description, sizeof(m->description), "%s", (const char *)arg);
	return 0;
}

int api_update_key_description(struct api_request *r)
{
	struct store_key *k = NULL;
	const char *desc;
	cJSON *info;
	int e;

	if ((e = api_get_string(r, "key_description", true, KMS_E_DESCRIPTION_INVALID, &desc)) < 0)
		return e;
	if (!api_description_valid(desc))
		return KMS_E_DESCRIPTION_INVALID;
	if ((e = api_modify(r, api_edit_description, (void *)desc, &k)) < 0)
		return e;
	info = cJSON_AddObjectToObject(r->out, "key_info");
	if (!info || api_add_string(info, "key_id", k->meta.key_id) < 0 ||
	    api_add_string(info, "key_description", k->meta.description) < 0)
		e = KMS_E_NOMEM;
	store_key_release(k);
	return e;
}

static int api_edit_rotation_on(struct store_key_meta *m, void *arg)
{
	if (strcmp(m->origin, "kms") != 0)
		return KMS_E_EXTERNAL_ROTATION; /* imported material never rotates (4.8) */
	if (m->state == STORE_KEY_PENDING_DELETION)
		return KMS_E_KEY_PENDING_DELETION;
	if (m->rotation_enabled)
		return KMS_E_ROTATION_NOT_DISABLED;
	m->rotation_enabled = true;
	/* The first automatic rotation is one interval from now, not from creation. */
	if (m->last_rotation_ms == 0 && arg)
		m->last_rotation_ms = *(const int64_t *)arg;
	return 0;
}

static int api_edit_rotation_off(struct store_key_meta *m, void *arg)
{
	if (m->state == STORE_KEY_PENDING_DELETION)
		return KMS_E_KEY_PENDING_DELETION;
	if (!m->rotation_enabled)
		return KMS_E_ROTATION_NOT_ENABLED;
	m->rotation_enabled = false;
	return 0;
}

int api_enable_key_rotation(struct api_request *r)
{
	return api_modify(r, api_edit_rotation_on, &r->now_ms, NULL);
}

int api_disable_key_rotation(struct api_request *r)
{
	return api_modify(r, api_edit_rotation_off, NULL, NULL);
}

static int api_edit_interval(struct store_key_meta *m, void *arg)
{
	if (m->state == STORE_KEY_PENDING_DELETION)
		return KMS_E_KEY_PENDING_DELETION;
	if (!m->rotation_enabled)
		return KMS_E_ROTATION_NOT_ENABLED;
	m->rotation_interval_days = *(const int *)arg;
	return 0;
}

int api_update_key_rotation_interval(struct api_request *r)
{
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(r->body, "rotation_interval");
	unsigned long days = 0;
	bool present;
	int e, d;

	/* A JSON integer in the API (the one numeric field that is not a string); strings too. */
	if (!f)
		return KMS_E_MISSING;
	e = api_get_uint(r, "rotation_interval", true, KMS_E_ROTATION_INTERVAL, 30, 365, &days,
			 &present);
	if (e < 0)
		return e;
	d = (int)days;
	return api_modify(r, api_edit_interval, &d, NULL);
}

int api_get_key_rotation_status(struct api_request *r)
{
	struct store_key *k = NULL;
	char last[24] = "";
	int e;

	if ((e = api_check_sequence(r)) < 0 || (e = api_allowed_key(r, true, &k)) < 0)
		return e;
	if (k->meta.rotations)
		snprintf(last, sizeof(last), "%lld", (long long)k->meta.last_rotation_ms);
	if (!cJSON_AddBoolToObject(r->out, "key_rotation_enabled", k->meta.rotation_enabled) ||
	    api_add_int(r->out, "rotation_interval", k->meta.rotation_interval_days) < 0 ||
	    api_add_string(r->out, "last_rotation_time", last) < 0 ||
	    api_add_int(r->out, "number_of_rotations", k->meta.rotations) < 0)
		e = KMS_E_NOMEM;
	store_key_release(k);
	return e;
}

/* On-demand rotation: rotate-key, an extension of kmsfs (the OTC REST API only rotates on
 * schedule), and rotate-on-demand, its name in the current Huawei API. *n is the key after the
 * rotation. */
static int api_rotate_now(struct api_request *r, struct store_key **n)
{
	struct store_key *k = NULL;
	int e;

	*n = NULL;
	if ((e = api_check_sequence(r)) < 0 || (e = api_allowed_key(r, true, &k)) < 0)
		return e;
	if (strcmp(k->meta.origin, "kms") != 0)
		e = KMS_E_EXTERNAL_ROTATION;
	else
		e = api_key_usable(k);
	if (e == 0)
		e = store_key_rotate(r->svc->store, r->caller->project, k->meta.key_id, r->now_ms,
				     n);
	if (e == 0 && !*n)
		e = KMS_E_INTERNAL; /* store_key_rotate sets *n on success */
	store_key_release(k);
	return e;
}

int api_rotate_key(struct api_request *r)
{
	struct store_key *n = NULL;
	int e;

	if ((e = api_rotate_now(r, &n)) != 0)
		goto out;
	if ((e = api_add_string(r->out, "key_id", n->meta.key_id)) < 0 ||
	    (e = api_add_ulong_string(r->out, "key_version", n->meta.current_version)) < 0 ||
	    (e = api_add_int(r->out, "number_of_rotations", n->meta.rotations)) < 0)
		goto out;
out:
	store_key_release(n);
	return e;
}

/* Huawei's RotateKeyOnDemand answers {"key_id"} only (its SDK's response model). */
int api_rotate_on_demand(struct api_request *r)
{
	struct store_key *n = NULL;
	int e = api_rotate_now(r, &n);

	if (e == 0)
		e = api_add_string(r->out, "key_id", n->meta.key_id);
	store_key_release(n);
	return e;
}

int api_user_instances(struct api_request *r)
{
	size_t n = 0;
	int e = store_key_count(r->svc->store, r->caller->project, &n);

	return e < 0 ? e : api_add_int(r->out, "instance_num", (double)n);
}

static int api_quota_row(cJSON *arr, const char *type, size_t used, unsigned quota)
{
	cJSON *o = cJSON_CreateObject();

	if (!o || !cJSON_AddItemToArray(arr, o))
		return KMS_E_NOMEM;
	if (api_add_string(o, "type", type) < 0 || api_add_int(o, "used", (double)used) < 0 ||
	    api_add_int(o, "quota", quota) < 0)
		return KMS_E_NOMEM;
	return 0;
}

int api_user_quotas(struct api_request *r)
{
	cJSON *quotas = cJSON_AddObjectToObject(r->out, "quotas"), *res;
	size_t n = 0, grants = 0;
	int e;

	if ((e = store_key_count(r->svc->store, r->caller->project, &n)) < 0)
		return e;
	if ((e = store_grant_count_max(r->svc->store, r->caller->project, &grants)) < 0)
		return e;
	res = quotas ? cJSON_AddArrayToObject(quotas, "resources") : NULL;
	if (!res)
		return KMS_E_NOMEM;
	if ((e = api_quota_row(res, "CMK", n, r->svc->key_quota)) < 0)
		return e;
	return api_quota_row(res, "grant_per_CMK", grants, KMS_GRANTS_PER_KEY);
}

static cJSON *api_version_object(void)
{
	cJSON *v = cJSON_CreateObject(), *links = NULL, *self = NULL;

	if (!v)
		return NULL;
	links = cJSON_AddArrayToObject(v, "links");
	self = cJSON_CreateObject();
	if (!links || !self || !cJSON_AddItemToArray(links, self) ||
	    !cJSON_AddStringToObject(self, "href", "/v1.0/") ||
	    !cJSON_AddStringToObject(self, "rel", "self") ||
	    !cJSON_AddStringToObject(v, "id", "v1.0") ||
	    !cJSON_AddStringToObject(v, "min_version", "") ||
	    !cJSON_AddStringToObject(v, "status", "CURRENT") ||
	    !cJSON_AddStringToObject(v, "version", "") ||
	    !cJSON_AddStringToObject(v, "updated", "2018-09-05T08:18:05Z")) {
		if (self && !links)
			cJSON_Delete(self);
		cJSON_Delete(v);
		return NULL;
	}
	return v;
}

/* GET / : every API version. */
int api_versions(struct api_request *r)
{
	cJSON *arr = cJSON_AddArrayToObject(r->out, "versions"), *v = api_version_object();

	if (!arr || !v || !cJSON_AddItemToArray(arr, v)) {
		cJSON_Delete(v);
		return KMS_E_NOMEM;
	}
	return 0;
}

/* GET /v1.0 : one version. */
int api_version(struct api_request *r)
{
	cJSON *v = api_version_object();

	if (!v || !cJSON_AddItemToObject(r->out, "version", v)) {
		cJSON_Delete(v);
		return KMS_E_NOMEM;
	}
	return 0;
}
