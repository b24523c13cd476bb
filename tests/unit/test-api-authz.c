/* test-api-authz.c - who a caller without a token is (src/api/api_authz.c, api_bound_role and the
 * re-check of every request): the precedence of bindings (docs/access-control.md) with callers
 * filled in as the file system fills them at open (uid, groups, cgroup v2 path):
 *
 *  - a token always wins: no binding applies to a caller that has one;
 *  - else the deepest cgroup binding that covers the caller's cgroup (its path or one below it,
 *    component-wise), whatever the uid and gid bindings say;
 *  - else the uid's binding; else the best of the groups' bindings;
 *  - every request looks the binding up again with the identity captured at open: an unbind
 *    applies at once (to what a new open would get, never more than the handle had).
 */
#include "kms_test_api.h"

#include "api/api_internal.h"
#include "store/kms_store.h"

#define P "authz-p"

static const gid_t gids[] = { 50, 60 };

/* A caller as the file system captures it at open: no token; its binding's role in bound_role. */
static struct api_caller opened(uid_t uid, const char *cgroup)
{
	struct api_caller c = { .project = P,
				.uid = uid,
				.gid = gids[0],
				.gids = gids,
				.ngids = KMS_ARRAY_SIZE(gids),
				.pid = 4242,
				.cgroup = cgroup };

	c.bound_role = api_bound_role(fx_svc(), &c);
	return c;
}

/* The role the caller acts with now: the highest of viewer, crypto, admin its requests pass. */
static enum kms_role acts_as(const struct api_caller *c)
{
	static const char *const action[] = { "list-keys", "encrypt-data", "create-key" };
	enum kms_role role = KMS_ROLE_NONE;

	for (size_t i = 0; i < KMS_ARRAY_SIZE(action); i++)
		if (api_caller_may(fx_svc(), c, api_action_find(action[i], API_SCOPE_PROJECT),
				   time(NULL) * 1000LL) == 0)
			role = (enum kms_role)(KMS_ROLE_VIEWER + (int)i);
	return role;
}

/* The bindings of these tests (on), or none of them (off). */
static void bind_all_as(bool on)
{
	struct store *s = fx_svc()->store;

	ASSERT_OK(store_binding_set(s, P, STORE_BIND_UID, 1000,
				    on ? KMS_ROLE_VIEWER : KMS_ROLE_NONE));
	ASSERT_OK(
		store_binding_set(s, P, STORE_BIND_GID, 50, on ? KMS_ROLE_CRYPTO : KMS_ROLE_NONE));
	ASSERT_OK(store_binding_set(s, P, STORE_BIND_GID, 60, on ? KMS_ROLE_ADMIN : KMS_ROLE_NONE));
	ASSERT_OK(
		store_binding_set_cgroup(s, P, "/app.slice", on ? KMS_ROLE_CRYPTO : KMS_ROLE_NONE));
	ASSERT_OK(store_binding_set_cgroup(s, P, "/app.slice/web.service",
					   on ? KMS_ROLE_VIEWER : KMS_ROLE_NONE));
}

static void bind_all(void)
{
	bind_all_as(true);
}

static void unbind_all(void)
{
	bind_all_as(false);
}

TEST(precedence_cgroup_then_uid_then_gid)
{
	static const struct {
		uid_t uid;
		const char *cgroup;
		enum kms_role role;
	} cases[] = {
		/* The deepest cgroup binding, even one lower than a shallower one or the uid's. */
		{ 1000, "/app.slice/web.service", KMS_ROLE_VIEWER },
		{ 1000, "/app.slice/web.service/sub", KMS_ROLE_VIEWER },
		{ 1000, "/app.slice/db.service", KMS_ROLE_CRYPTO },
		/* A cgroup binding beats the groups' too (uid 1001 has no binding of its own). */
		{ 1001, "/app.slice", KMS_ROLE_CRYPTO },
		/* Outside every bound cgroup ("/app.slicex" is not below "/app.slice"): the uid's
		 * binding beats the groups' (admin); without one, the best group's. */
		{ 1000, "/app.slicex", KMS_ROLE_VIEWER },
		{ 1000, "/", KMS_ROLE_VIEWER },
		/* Unknown (unreadable) in a project with cgroup bindings: none, since the binding
		 * it could not be matched against might be a narrower one. */
		{ 1000, "", KMS_ROLE_NONE },
		{ 1001, "", KMS_ROLE_NONE },
		{ 1001, "/user.slice", KMS_ROLE_ADMIN },
	};
	struct api_caller c;

	bind_all();
	for (size_t i = 0; i < KMS_ARRAY_SIZE(cases); i++) {
		c = opened(cases[i].uid, cases[i].cgroup);
		ASSERT_EQ(c.bound_role, cases[i].role);
		ASSERT_EQ(acts_as(&c), cases[i].role);
		if (kms_test_failing())
			fprintf(stderr, "\tuid %u in '%s'\n", (unsigned)cases[i].uid,
				cases[i].cgroup);
	}
	/* A cgroup binding acts as the uid, as a uid binding does. */
	{
		struct auth_claims buf;
		const struct auth_claims *claims;
		int auth_error = 0;

		c = opened(1000, "/app.slice");
		claims = api_caller_claims(fx_svc(), &c, &buf, &auth_error);
		ASSERT_TRUE(claims != NULL);
		ASSERT_STREQ(claims->user, "uid1000");
		ASSERT_EQ(claims->role, KMS_ROLE_CRYPTO);
	}
	unbind_all();
}

TEST(token_wins_over_every_binding)
{
	struct auth_claims claims = fx_claims(P, "alice", KMS_ROLE_VIEWER, time(NULL) + 3600);
	struct api_caller c;

	bind_all();
	c = opened(1001, "/app.slice");
	c.claims = &claims;
	ASSERT_EQ(api_bound_role(fx_svc(), &c), KMS_ROLE_NONE);
	ASSERT_EQ(acts_as(&c), KMS_ROLE_VIEWER);
	claims.role = KMS_ROLE_ADMIN;
	c = opened(1000, "/app.slice/web.service");
	c.claims = &claims;
	ASSERT_EQ(acts_as(&c), KMS_ROLE_ADMIN);
	unbind_all();
}

/* The handle keeps the identity it was opened with; each request looks its binding up again: an
 * unbind applies at once, what the next binding gives applies no higher than the open's role. */
TEST(every_request_rechecks_the_handles_cgroup)
{
	struct store *s = fx_svc()->store;
	struct api_caller c;

	bind_all();
	c = opened(1000, "/app.slice/db.service");
	ASSERT_EQ(acts_as(&c), KMS_ROLE_CRYPTO);
	/* A higher role for the cgroup: later opens get it, this handle does not. */
	ASSERT_OK(store_binding_set_cgroup(s, P, "/app.slice", KMS_ROLE_ADMIN));
	ASSERT_EQ(acts_as(&c), KMS_ROLE_CRYPTO);
	ASSERT_EQ(opened(1000, "/app.slice/db.service").bound_role, KMS_ROLE_ADMIN);
	/* Unbound: the uid's binding is what applies now (viewer), at once. */
	ASSERT_OK(store_binding_set_cgroup(s, P, "/app.slice", KMS_ROLE_NONE));
	ASSERT_EQ(acts_as(&c), KMS_ROLE_VIEWER);
	/* And no binding at all: no role, KMS.0301 as without a token. */
	ASSERT_OK(store_binding_set(s, P, STORE_BIND_UID, 1000, KMS_ROLE_NONE));
	ASSERT_OK(store_binding_set(s, P, STORE_BIND_GID, 50, KMS_ROLE_NONE));
	ASSERT_OK(store_binding_set(s, P, STORE_BIND_GID, 60, KMS_ROLE_NONE));
	ASSERT_EQ(acts_as(&c), KMS_ROLE_NONE);
	ASSERT_ERR(api_caller_may(fx_svc(), &c, api_action_find("list-keys", API_SCOPE_PROJECT),
				  time(NULL) * 1000LL),
		   KMS_E_TOKEN_MISSING);
	/* Bound again: the handle's role comes back, within what it was opened with. */
	ASSERT_OK(store_binding_set_cgroup(s, P, "/app.slice", KMS_ROLE_ADMIN));
	ASSERT_EQ(acts_as(&c), KMS_ROLE_CRYPTO);
	unbind_all();
}

/* An unknown cgroup only matters where the project has cgroup bindings: elsewhere the uid's
 * binding applies as before. */
TEST(unknown_cgroup_fails_closed_only_where_cgroups_are_bound)
{
	struct store *s = fx_svc()->store;
	struct api_caller c;

	ASSERT_OK(store_binding_set(s, P, STORE_BIND_UID, 1000, KMS_ROLE_CRYPTO));
	c = opened(1000, "");
	ASSERT_EQ(c.bound_role, KMS_ROLE_CRYPTO);
	ASSERT_OK(store_binding_set_cgroup(s, P, "/batch.slice", KMS_ROLE_VIEWER));
	ASSERT_EQ(acts_as(&c), KMS_ROLE_NONE); /* the handle's next request too */
	c = opened(1000, "");
	ASSERT_EQ(c.bound_role, KMS_ROLE_NONE);
	c = opened(1000, "/user.slice");
	ASSERT_EQ(c.bound_role, KMS_ROLE_CRYPTO);
	ASSERT_OK(store_binding_set_cgroup(s, P, "/batch.slice", KMS_ROLE_NONE));
	c = opened(1000, "");
	ASSERT_EQ(c.bound_role, KMS_ROLE_CRYPTO);
	ASSERT_OK(store_binding_set(s, P, STORE_BIND_UID, 1000, KMS_ROLE_NONE));
}

/* A cgroup binding is for its project only. */
TEST(cgroup_binding_is_for_its_project)
{
	struct api_caller c;

	ASSERT_OK(store_binding_set_cgroup(fx_svc()->store, "authz-q", "/q", KMS_ROLE_ADMIN));
	c = opened(1000, "/q/x");
	ASSERT_EQ(c.bound_role, KMS_ROLE_NONE);
	c.project = "authz-q";
	ASSERT_EQ(api_bound_role(fx_svc(), &c), KMS_ROLE_ADMIN);
	ASSERT_OK(store_binding_set_cgroup(fx_svc()->store, "authz-q", "/q", KMS_ROLE_NONE));
	ASSERT_EQ(api_bound_role(fx_svc(), &c), KMS_ROLE_NONE);
}
