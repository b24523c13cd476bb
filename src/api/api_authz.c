/* Who may do what: every permission decision of kmsfs is made in this file.
 *
 * The file system (src/fs) only captures who a caller is: uid, gid and groups, pid, and the
 * verified claims of the token it bound with setfattr (verifying a token is authentication, in
 * src/auth). It hands that over in struct api_caller; kmsctl is a trusted caller. The decisions,
 * in the order a request meets them:
 *
 *  1. Who the caller is (api_caller_claims): the token's claims; else the role of a
 *     `kmsctl project bind` binding, the most specific one (api_bound_role): the deepest cgroup
 *     binding covering the caller's cgroup (store_binding_role_cgroup), else its uid's binding,
 *     else the best of its groups' (store_binding_role); none for a caller whose cgroup is
 *     unknown in a project with cgroup bindings. A token always wins over a binding. A
 *     binding is captured when a handle is opened (api_bound_role, with the uid, groups and
 *     cgroup read then) and looked up again with them at every request, where it can only
 *     narrow: an unbind or a lower role applies at once, a higher role to later opens; a process
 *     that moved to another cgroup since keeps its handle's.
 *  2. May it call the action at all (api_caller_may): trusted; else a readable policy of the
 *     project, claims of this project, unexpired, not revoked, with a role of at least the
 *     action's min_role (the action table in api_call.c).
 *  3. Grants, for what the role does not allow: is the action one a grant may allow
 *     (api_action_grantable); a grant for it on some key of the project, before the body is read
 *     (api_authorise); on the key the request acts on (api_allowed_key, api_check_grant); a
 *     request that needed a grant and never checked one fails (api_check_grant_done); a grant
 *     handed on holds no more than the giver's own (api_check_grant_within_own).
 *  4. Rules inside actions: adding tags needs an administrator (api_check_role); who may retire
 *     a grant (api_check_retire); revoke-grant is an administrator's action (its min_role).
 *  5. Reserved principals: kmsctl acts as AUTH_USER_HOST_ADMIN, a binding as "uid<N>"
 *     (api_caller_user); no token may carry either name (auth_user_reserved, checked wherever a
 *     token is issued or verified), so a grant's issuer, retiring principal or grantee is who it
 *     says.
 *  6. What the file system shows: a project's keys and aliases to who may call list-keys there
 *     (api_caller_may_list); the project in the root directory to root and its owner
 *     (api_project_owner), and to who may see its keys.
 */
#include <stdio.h>
#include <string.h>

#include "api_internal.h"
#include "common/kms_err.h"
#include "common/kms_time.h"

/* --- 1. Who the caller is ------------------------------------------------------------------ */

/* A token wins over a binding. */
bool api_binding_applies(const struct api_caller *c)
{
	return !c->trusted && !c->claims;
}

/* The most specific binding wins: a cgroup names one workload, a uid may be shared by many (every
 * root container without a user namespace is uid 0), a group by more. */
enum kms_role api_bound_role(const struct api_service *svc, const struct api_caller *c)
{
	int role;

	if (!api_binding_applies(c) || !c->project)
		return KMS_ROLE_NONE;
	/* A cgroup binding can narrow the uid's or a group's (a viewer workload of an admin uid),
	 * so where the project has one, a process whose cgroup could not be read gets no binding
	 * at all rather than the broader one: fail closed. */
	if (c->cgroup && !c->cgroup[0] && store_cgroup_bindings_exist(svc->store, c->project))
		return KMS_ROLE_NONE;
	role = store_binding_role_cgroup(svc->store, c->project, c->cgroup);
	if (role == KMS_ROLE_NONE)
		role = store_binding_role(svc->store, c->project, c->uid, c->gids, c->ngids);
	return role > KMS_ROLE_NONE ? (enum kms_role)role : KMS_ROLE_NONE;
}

/* A binding acts as user "uid<N>" (a name no token can carry) with token id "uid:<N>", a cgroup
 * binding too: the audit line's cgroup names the workload. */
static void api_binding_claims(const struct api_caller *c, enum kms_role role,
			       struct auth_claims *claims)
{
	memset(claims, 0, sizeof(*claims));
	snprintf(claims->id, sizeof(claims->id), "uid:%u", (unsigned)c->uid);
	snprintf(claims->project, sizeof(claims->project), "%s", c->project);
	snprintf(claims->user, sizeof(claims->user), "uid%u", (unsigned)c->uid);
	claims->role = role;
	claims->expiry = INT64_MAX;
}

const struct auth_claims *api_caller_claims(const struct api_service *svc,
					    const struct api_caller *c, struct auth_claims *buf,
					    int *auth_error)
{
	enum kms_role now;

	*auth_error = 0;
	if (c->claims)
		return c->claims; /* api_caller_may checks expiry and revocation every request */
	if (c->trusted)
		return NULL;
	if (c->bound_role == KMS_ROLE_NONE) {
		*auth_error = c->auth_error ? c->auth_error : KMS_E_TOKEN_MISSING;
		return NULL;
	}
	now = api_bound_role(svc, c);
	if (now == KMS_ROLE_NONE) {
		*auth_error = KMS_E_TOKEN_MISSING; /* unbound since the open */
		return NULL;
	}
	api_binding_claims(c, now < c->bound_role ? now : c->bound_role, buf);
	return buf;
}

/* --- 2. May it call the action -------------------------------------------------------------- */

/* api_caller_may for a caller whose claims are known (api_caller_claims). */
static int api_claims_may(const struct api_service *svc, const struct api_caller *c,
			  const struct auth_claims *claims, int auth_error,
			  const struct api_action *action, int64_t now_ms)
{
	int r;

	if (c->trusted)
		return 0;
	/* A project whose policy rows cannot be read is closed, not open (KMS.0102). */
	if ((r = store_project_policy_check(svc->store, c->project)) < 0)
		return r;
	if (!claims)
		return auth_error ? auth_error : KMS_E_TOKEN_MISSING;
	if ((r = auth_claims_check(claims, c->project, now_ms / 1000)) < 0)
		return r;
	if (store_token_revoked(svc->store, claims->id))
		return KMS_E_TOKEN_INVALID;
	return claims->role >= action->min_role ? 0 : KMS_E_FORBIDDEN;
}

int api_caller_may(const struct api_service *svc, const struct api_caller *c,
		   const struct api_action *action, int64_t now_ms)
{
	struct auth_claims buf;
	const struct auth_claims *claims;
	int auth_error;

	claims = api_caller_claims(svc, c, &buf, &auth_error);
	return api_claims_may(svc, c, claims, auth_error, action, now_ms);
}

int api_check_role(const struct api_request *r, enum kms_role least)
{
	return r->caller->trusted || (r->claims && r->claims->role >= least) ? 0 : KMS_E_FORBIDDEN;
}

/* --- 3. Grants ------------------------------------------------------------------------------ */

static const char *const api_grant_ops[] = {
	"create-datakey",  "create-datakey-without-plaintext",
	"encrypt-datakey", "decrypt-datakey",
	"describe-key",	   "create-grant",
	"retire-grant",	   "encrypt-data",
	"decrypt-data",
};

bool api_action_grantable(const char *name)
{
	for (size_t i = 0; i < KMS_ARRAY_SIZE(api_grant_ops); i++)
		if (strcmp(api_grant_ops[i], name) == 0)
			return true;
	return false;
}

bool api_grant_ops_contain(const char *ops, const char *op)
{
	size_t n = strlen(op);

	for (const char *p = ops; p && *p;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);

		if (len == n && strncmp(p, op, n) == 0)
			return true;
		p = comma ? comma + 1 : NULL;
	}
	return false;
}

struct api_grant_find {
	const char *op;
	bool found;
	struct api_request *record; /* if set: note each key with a matching grant here */
};

static int api_grant_match(const struct store_grant *g, void *arg)
{
	struct api_grant_find *f = arg;
	struct api_request *r = f->record;

	if (!api_grant_ops_contain(g->operations, f->op))
		return 0;
	f->found = true;
	if (r && r->grant_keys_n < API_GRANT_KEYS_SEEN)
		snprintf(r->grant_keys[r->grant_keys_n], sizeof(r->grant_keys[0]), "%s", g->key_id);
	if (r && r->grant_keys_n <= API_GRANT_KEYS_SEEN)
		r->grant_keys_n++;
	return 0;
}

/* Does the caller hold a grant for op on key_id (any key of the project when NULL)? With
 * record, the keys found are noted in it. */
static int api_grant_held(struct api_request *r, const char *key_id, const char *op,
			  struct api_request *record, bool *held)
{
	struct store_grant_filter f = { .project = r->caller->project, .key_id = key_id };
	struct api_grant_find find = { .op = op, .record = record };
	int e;

	*held = false;
	if (!r->claims)
		return 0;
	f.grantee = r->claims->user;
	e = store_grant_list(r->svc->store, &f, 0, SIZE_MAX, api_grant_match, &find, NULL);
	if (e < 0)
		return e;
	*held = find.found;
	return 0;
}

/* Before any validation: a caller acting through grants must hold one for this action on some
 * key of the project, else KMS.0307 (not a validation error that would reveal the rules). */
static int api_check_grant_any(struct api_request *r)
{
	bool held;
	int e;

	/* Under keys/<id>/ only that key can be acted on: ask about it alone. */
	r->grant_keys_n = 0;
	if ((e = api_grant_held(r, r->caller->path_key_id, r->action->name, r, &held)) < 0)
		return e;
	r->grant_keys_known = true;
	return held ? 0 : KMS_E_FORBIDDEN;
}

/* Token first (as the REST API answers 403 before it looks at the body), then the role; an
 * action the role does not allow may still be allowed by a grant on the key, which is checked
 * once the key is known (api_check_grant). */
int api_authorise(struct api_request *r)
{
	int e = api_claims_may(r->svc, r->caller, r->claims, r->auth_error, r->action, r->now_ms);

	if (e != KMS_E_FORBIDDEN || !api_action_grantable(r->action->name))
		return e;
	r->grant_required = true;
	return api_check_grant_any(r);
}

static bool api_grant_key_seen(const struct api_request *r, const char *key_id)
{
	for (size_t i = 0; i < r->grant_keys_n && i < API_GRANT_KEYS_SEEN; i++)
		if (strcmp(r->grant_keys[i], key_id) == 0)
			return true;
	return false;
}

int api_check_grant(struct api_request *r, const struct store_key *k)
{
	bool held;
	int e;

	if (!r->grant_required)
		return 0;
	/* The keys noted are complete for the project, or for the key folder's own key. */
	if (r->grant_keys_known && r->grant_keys_n <= API_GRANT_KEYS_SEEN &&
	    (!r->caller->path_key_id || strcmp(r->caller->path_key_id, k->meta.key_id) == 0))
		held = api_grant_key_seen(r, k->meta.key_id);
	else if ((e = api_grant_held(r, k->meta.key_id, r->action->name, NULL, &held)) < 0)
		return e;
	if (!held)
		return KMS_E_FORBIDDEN;
	r->grant_checked = true;
	return 0;
}

int api_allowed_key(struct api_request *r, bool required, struct store_key **key)
{
	int e = api_resolve_key(r, required, key);

	if (e < 0 || !*key)
		return e;
	if ((e = api_check_grant(r, *key)) < 0) {
		store_key_release(*key);
		*key = NULL;
	}
	return e;
}

int api_check_grant_done(const struct api_request *r)
{
	/* Fail closed: a handler that never checked the grant its caller needed. */
	return r->grant_required && !r->grant_checked ? KMS_E_FORBIDDEN : 0;
}

int api_check_grant_within_own(struct api_request *r, const struct store_key *k, const char *ops)
{
	char op[64];
	bool held;
	int e;

	if (!r->grant_required)
		return 0;
	for (const char *p = ops; p && *p;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);

		snprintf(op, sizeof(op), "%.*s", (int)len, p);
		if ((e = api_grant_held(r, k->meta.key_id, op, NULL, &held)) < 0)
			return e;
		if (!held)
			return KMS_E_FORBIDDEN;
		p = comma ? comma + 1 : NULL;
	}
	return 0;
}

/* --- 4. Rules inside actions ---------------------------------------------------------------- */

int api_check_retire(struct api_request *r, const struct store_grant *g)
{
	const char *user = api_caller_user(r);
	bool allowed;

	/* Issuer, retiring principal, or a grantee whose grant includes retire-grant. A caller
	 * below the least role got here only through a retire-grant grant on this key
	 * (api_allowed_key checked it); token user names never equal kmsctl's name nor a uid
	 * binding's (auth_user_reserved), so an issuer is who it says. */
	allowed = api_check_role(r, KMS_ROLE_ADMIN) == 0 || strcmp(user, g->issuer) == 0 ||
		  (g->retiring[0] && strcmp(user, g->retiring) == 0) ||
		  (strcmp(user, g->grantee) == 0 &&
		   api_grant_ops_contain(g->operations, "retire-grant"));
	if (!allowed)
		return KMS_E_FORBIDDEN;
	r->grant_checked = true;
	return 0;
}

/* --- 5. Reserved principals ------------------------------------------------------------------ */

const char *api_caller_user(const struct api_request *r)
{
	if (r->claims)
		return r->claims->user;
	return AUTH_USER_HOST_ADMIN; /* a trusted administrator on the host (kmsctl) */
}

/* --- 6. What the file system shows ----------------------------------------------------------- */

bool api_caller_may_list(const struct api_service *svc, const struct api_caller *c)
{
	/* Asked at every lookup in a key folder: find the row once. */
	static const struct api_action *found;
	const struct api_action *list_keys = __atomic_load_n(&found, __ATOMIC_RELAXED);

	if (!list_keys) {
		list_keys = api_action_find("list-keys", API_SCOPE_PROJECT);
		__atomic_store_n(&found, list_keys, __ATOMIC_RELAXED);
	}

	return list_keys && api_caller_may(svc, c, list_keys, kms_time_real_ms()) == 0;
}

bool api_project_owner(const struct api_service *svc, const char *project, uid_t uid)
{
	struct store_project_policy pol;

	if (uid == 0)
		return true;
	store_project_policy(svc->store, project, &pol);
	return pol.owner == uid;
}
