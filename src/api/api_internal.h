/* api_internal.h - shared by the handlers: the request context and JSON validation helpers. */
#pragma once

#include <cjson/cJSON.h>

#include "kms_api.h"

/* How many keys api_authorise remembers having a grant for the action: enough for every
 * real grantee; one with more grants costs one more store query per request. */
#define API_GRANT_KEYS_SEEN 8

struct api_request {
	const struct api_service *svc;
	const struct api_caller *caller;
	/* Who the caller is for this request (api_caller_claims): its token's claims or those of a
	 * binding; NULL when trusted or without an identity (auth_error: why). */
	const struct auth_claims *claims;
	int auth_error;
	const struct api_action *action;
	cJSON *body; /* the request object (never NULL) */
	cJSON *out;  /* the response object to fill */
	int64_t now_ms;
	bool grant_required; /* the role does not allow the action: a grant on the key must */
	bool grant_checked;
	/* Set by api_authorise: the keys holding a grant for this action, so api_check_grant
	 * needs no second query (grant_keys_n past API_GRANT_KEYS_SEEN: not all are listed). */
	bool grant_keys_known;
	size_t grant_keys_n;
	char grant_keys[API_GRANT_KEYS_SEEN][KMS_KEY_ID_LEN + 1];
	bool audit_reserved;		 /* the audit line of this request has room waiting */
	char key_id[KMS_KEY_ID_LEN + 1]; /* for the audit trail */
	char object_id[80];		 /* for the audit trail: a grant id created */
};

/* Nesting depth of a JSON value (a scalar is 1). */
size_t api_json_depth(const cJSON *j);
/* Append j as cJSON_PrintUnformatted prints it, without its intermediate copy. */
KMS_WUR int api_json_print(const cJSON *j, struct kms_buf *out);
/* Does JSON text hold a \u0000 escape? cJSON strings end at NUL, so "a\u0000b" would silently
 * become "a": such text is refused wherever it is parsed. */
bool api_json_has_nul_escape(const uint8_t *p, size_t n);

/* A field's raw string value: err_type if present but not a string; KMS_E_MISSING if required
 * and absent (then *s = NULL). */
KMS_WUR int api_get_string(struct api_request *r, const char *name, bool required, int err_type,
			   const char **s);
/* KMS_E_MISSING unless the field is present (any type). */
KMS_WUR int api_require(struct api_request *r, const char *name);
/* A number given as a decimal string ("512") or, leniently, a JSON integer. bad for anything
 * else (including out of [min, max]); KMS_E_MISSING if required and absent; *present says. */
KMS_WUR int api_get_uint(struct api_request *r, const char *name, bool required, int bad,
			 unsigned long min, unsigned long max, unsigned long *v, bool *present);
/* Optional "sequence": 36 characters of [A-Za-z0-9-] (KMS.0206). */
KMS_WUR int api_check_sequence(struct api_request *r);
/* Canonical encryption_context (sorted keys, compact JSON); empty when absent or {}. */
KMS_WUR int api_get_context(struct api_request *r, struct kms_buf *ctx);

/* The key a request names: from the path and/or "key_id" (id, alias/NAME, or URN).
 * Format errors KMS.0205, unknown KMS.0207. required=false with neither: *key = NULL, 0.
 * Resolution only: handlers get their key through api_allowed_key, which checks the grant. */
KMS_WUR int api_resolve_key(struct api_request *r, bool required, struct store_key **key);
/* Parse a key reference without looking it up: sets *id or *alias. */
KMS_WUR int api_parse_key_ref(struct api_request *r, const char *ref, char id[KMS_KEY_ID_LEN + 1],
			      char alias[KMS_MAX_ALIAS + 1]);
/* Is k usable for cryptography (state 2)? KMS.0209 / KMS.0210 otherwise. */
KMS_WUR int api_key_usable(const struct store_key *k);
bool api_key_id_valid(const char *s);
bool api_alias_valid(const char *s);
/* The longest name of an alias under aliases/ ('/' written "%2F"): NAME_MAX. */
#define API_ALIAS_ENTRY_MAX 255u
/* The required, valid "key_alias" (KMS.0204 / KMS.1101), whose entry under aliases/ fits in
 * API_ALIAS_ENTRY_MAX bytes. */
KMS_WUR int api_get_alias(struct api_request *r, const char **alias);
/* The length of UTF-8 text in characters (the API's limits count characters, not bytes). false
 * for invalid UTF-8 and, when refused is not NULL, for an ASCII control character or one of
 * the characters in refused. */
bool api_utf8_length(const char *s, const char *refused, size_t *chars);
bool api_description_valid(const char *s);
int api_state_change_arg(struct api_request *r, store_key_edit_fn edit, void *arg);

/* api_authz.c: every permission decision (its header lists them). */
/* Who the caller is now: its token's claims, else a binding's (in buf), looked up again and
 * never above the role captured at open; NULL when trusted or none (*auth_error: why). */
const struct auth_claims *api_caller_claims(const struct api_service *svc,
					    const struct api_caller *c, struct auth_claims *buf,
					    int *auth_error);
/* Before the body is read: may the caller run the action, by its role or (grantable actions)
 * through a grant on some key of the project (then r->grant_required). 0 or the error. */
KMS_WUR int api_authorise(struct api_request *r);
/* The key the request acts on (api_resolve_key), if the caller may act on it: its role allows
 * the action, or it holds a grant for the action on that key. */
KMS_WUR int api_allowed_key(struct api_request *r, bool required, struct store_key **key);
/* Does a grant allow the action on k for this caller (0 when its role does, or KMS.0307)? */
KMS_WUR int api_check_grant(struct api_request *r, const struct store_key *k);
/* After the handler: KMS.0307 if the caller needed a grant and none was checked. */
KMS_WUR int api_check_grant_done(const struct api_request *r);
/* A caller who may create grants only through a grant hands on no more than it holds: every
 * operation (comma-separated ops) must be one of its own grants on k. */
KMS_WUR int api_check_grant_within_own(struct api_request *r, const struct store_key *k,
				       const char *ops);
/* May the caller retire g: an administrator, its issuer, its retiring principal, or its grantee
 * when the grant includes retire-grant. */
KMS_WUR int api_check_retire(struct api_request *r, const struct store_grant *g);
/* 0 if the caller is trusted or its role is least or above, else KMS_E_FORBIDDEN. */
KMS_WUR int api_check_role(const struct api_request *r, enum kms_role least);
/* Is the action one a grant may allow; is op one of the comma-separated ops. */
bool api_action_grantable(const char *name);
bool api_grant_ops_contain(const char *ops, const char *op);
/* The principal the caller acts as: its token's user, "uid<N>" for a binding, or kmsctl's. */
const char *api_caller_user(const struct api_request *r);

/* Response helpers. name must outlive the response (a string literal): it is not copied. */
KMS_WUR int api_add_string(cJSON *o, const char *name, const char *value);
KMS_WUR int api_add_hex(cJSON *o, const char *name, const uint8_t *p, size_t n);
KMS_WUR int api_add_ulong_string(cJSON *o, const char *name, unsigned long v);
KMS_WUR int api_add_int(cJSON *o, const char *name, double v);
/* A listing's page: next_marker, truncated and total, for count items from marker on. */
KMS_WUR int api_add_page(cJSON *o, unsigned long marker, size_t count, size_t total);
/* The key object of describe-key/list-keys (all strings). */
cJSON *api_key_object(const struct api_service *svc, const struct store_key_meta *m);

/* Handlers. */
int api_create_key(struct api_request *r);
int api_describe_key(struct api_request *r);
int api_list_keys(struct api_request *r);
int api_create_datakey(struct api_request *r);
int api_create_datakey_without_plaintext(struct api_request *r);
int api_encrypt_datakey(struct api_request *r);
int api_decrypt_datakey(struct api_request *r);
int api_gen_random(struct api_request *r);
int api_encrypt_data(struct api_request *r);
int api_decrypt_data(struct api_request *r);
int api_enable_key(struct api_request *r);
int api_disable_key(struct api_request *r);
int api_schedule_key_deletion(struct api_request *r);
int api_cancel_key_deletion(struct api_request *r);
int api_update_key_alias(struct api_request *r);
int api_update_key_description(struct api_request *r);
int api_enable_key_rotation(struct api_request *r);
int api_disable_key_rotation(struct api_request *r);
int api_update_key_rotation_interval(struct api_request *r);
int api_get_key_rotation_status(struct api_request *r);
int api_rotate_key(struct api_request *r);
int api_rotate_on_demand(struct api_request *r);
int api_user_instances(struct api_request *r);
int api_user_quotas(struct api_request *r);
int api_versions(struct api_request *r);
int api_version(struct api_request *r);
int api_create_grant(struct api_request *r);
int api_list_grants(struct api_request *r);
int api_list_retirable_grants(struct api_request *r);
int api_revoke_grant(struct api_request *r);
int api_retire_grant(struct api_request *r);
int api_key_tags(struct api_request *r);
int api_delete_tag(struct api_request *r);
int api_tags_action(struct api_request *r);
int api_project_tags(struct api_request *r);
int api_resource_instances(struct api_request *r);
int api_get_parameters_for_import(struct api_request *r);
int api_import_key_material(struct api_request *r);
int api_delete_imported_key_material(struct api_request *r);
