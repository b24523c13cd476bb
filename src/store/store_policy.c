/* Projects and their access policy: modes and owners, uid/gid and cgroup role bindings, token
 * records and revocations. Loaded into memory at open and by store_refresh, so checks read no database;
 * rows that cannot be read fail closed. */
#include "store_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/kms_err.h"
#include "common/kms_hex.h"
#include "common/kms_time.h"

/* Token ids: 16 hex digits (kms_auth.h, AUTH_TOKEN_ID_LEN; the store does not include auth). */
#define STORE_TOKEN_ID_HEX 16u

bool store_project_id_valid(const char *p)
{
	size_t n = 0;

	if (!p)
		return false;
	for (; p[n]; n++) {
		char c = p[n];

		if (n >= KMS_MAX_PROJECT_ID)
			return false;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-'))
			return false;
	}
	return n > 0;
}

void store_policy_free(struct store_policy *p)
{
	free(p->projects);
	free(p->binds);
	free(p->cgroups);
	free(p->revoked);
	free(p->refused);
	memset(p, 0, sizeof(*p));
}

/* Note an unreadable row: its project (or, if it names none, every project) is refused. */
static int store_policy_unreadable_row(struct store_policy *p, const char *project,
				       const char *what)
{
	void *n;

	if (p->unreadable++ == 0)
		snprintf(p->first_unreadable, sizeof(p->first_unreadable), "%s", what);
	if (!project || !store_project_id_valid(project)) {
		p->refuse_all = true;
		return 0;
	}
	n = realloc(p->refused, (p->nrefused + 1) * sizeof(*p->refused));
	if (!n)
		return KMS_E_NOMEM;
	p->refused = n;
	snprintf(p->refused[p->nrefused++], sizeof(*p->refused), "%s", project);
	return 0;
}

static int store_policy_revoke(struct store_policy *p, const char *id)
{
	void *n = realloc(p->revoked, (p->nrevoked + 1) * sizeof(*p->revoked));

	if (!n)
		return KMS_E_NOMEM;
	p->revoked = n;
	snprintf(p->revoked[p->nrevoked++], sizeof(*p->revoked), "%s", id);
	return 0;
}

static int store_policy_project_row(const char *project, const struct store_project_policy *pp,
				    bool readable, void *arg)
{
	struct store_policy *p = arg;
	struct store_policy_project e = { 0 };
	char what[128];
	void *n;

	snprintf(what, sizeof(what), "project '%.64s' (refused: modes 0, KMS.0102)", project);
	if (!readable || !store_project_id_valid(project) || pp->mode > 07777 ||
	    pp->plaintext_mode > 07777)
		return store_policy_unreadable_row(p, project, what);
	n = realloc(p->projects, (p->nprojects + 1) * sizeof(e));
	if (!n)
		return KMS_E_NOMEM;
	p->projects = n;
	snprintf(e.project, sizeof(e.project), "%s", project);
	e.p = *pp;
	p->projects[p->nprojects++] = e;
	return 0;
}

/* An unreadable binding row (of kind "binding" or "cgroup binding"): its project is refused,
 * or every project when the row names none we can tell. */
static int store_policy_unreadable_binding(struct store_policy *p, const char *kind,
					   const char *project)
{
	bool valid = store_project_id_valid(project);
	char what[128];

	snprintf(what, sizeof(what), "a %s of project '%.64s' (%s refused)", kind,
		 valid ? project : "?", valid ? "project" : "every project");
	return store_policy_unreadable_row(p, valid ? project : NULL, what);
}

static int store_policy_binding_row(const char *project, enum store_principal kind, uint32_t id,
				    enum kms_role role, bool readable, void *arg)
{
	struct store_policy *p = arg;
	struct store_policy_binding e = { .kind = kind, .id = id, .role = role };
	void *n;

	if (!readable || !store_project_id_valid(project))
		return store_policy_unreadable_binding(p, "binding", project);
	n = realloc(p->binds, (p->nbinds + 1) * sizeof(e));
	if (!n)
		return KMS_E_NOMEM;
	p->binds = n;
	snprintf(e.project, sizeof(e.project), "%s", project);
	p->binds[p->nbinds++] = e;
	return 0;
}

/* A path no binding may name (changed behind our back) is unreadable too: it fails closed. */
static int store_policy_cgroup_row(const char *project, const char *path, enum kms_role role,
				   bool readable, void *arg)
{
	struct store_policy *p = arg;
	struct store_policy_cgroup *e;
	void *n;

	if (!readable || !store_project_id_valid(project) ||
	    !store_cgroup_path_valid(path, NULL, 0))
		return store_policy_unreadable_binding(p, "cgroup binding", project);
	n = realloc(p->cgroups, (p->ncgroups + 1) * sizeof(*e));
	if (!n)
		return KMS_E_NOMEM;
	p->cgroups = n;
	e = &p->cgroups[p->ncgroups++];
	snprintf(e->project, sizeof(e->project), "%s", project);
	snprintf(e->path, sizeof(e->path), "%s", path);
	e->role = role;
	return 0;
}

static int store_policy_token_row(const char *id, const struct store_token_info *t, bool readable,
				  void *arg)
{
	struct store_policy *p = arg;
	char what[128];

	if (strlen(id) != STORE_TOKEN_ID_HEX || !kms_is_hex(id, STORE_TOKEN_ID_HEX)) {
		/* Whose revocation this was is lost: no token can be trusted. */
		snprintf(what, sizeof(what), "a token row named '%.32s' (every project refused)",
			 id);
		return store_policy_unreadable_row(p, NULL, what);
	}
	if (readable)
		return t->revoked ? store_policy_revoke(p, id) : 0;
	/* Whether it was revoked is lost: it is. */
	if (p->unreadable++ == 0)
		snprintf(p->first_unreadable, sizeof(p->first_unreadable),
			 "token '%s' (counted as revoked)", id);
	return store_policy_revoke(p, id);
}

int store_policy_load(struct store *s)
{
	struct store_policy fresh = { 0 }, old;
	const struct store_policy_visitor v = { .project = store_policy_project_row,
						.binding = store_policy_binding_row,
						.cgroup_binding = store_policy_cgroup_row,
						.token = store_policy_token_row,
						.arg = &fresh };
	int r = s->ops->policy_list(s->be, &v);

	if (r < 0) {
		store_policy_free(&fresh);
		return r;
	}
	pthread_rwlock_wrlock(&s->policy_lock);
	old = s->policy;
	s->policy = fresh;
	pthread_rwlock_unlock(&s->policy_lock);
	store_policy_free(&old);
	return 0;
}

int store_project_ensure(struct store *s, const char *project)
{
	if (!store_project_id_valid(project))
		return KMS_E_BAD_URL;
	return s->ops->project_ensure(s->be, project, kms_time_real_ms());
}

int store_project_exists(struct store *s, const char *project, bool *exists)
{
	*exists = false;
	if (!store_project_id_valid(project))
		return 0;
	return s->ops->project_exists(s->be, project, exists);
}

int store_project_list(struct store *s, store_project_cb cb, void *arg)
{
	return s->ops->project_list(s->be, cb, arg);
}

/* policy_lock held. */
static bool store_project_refused_locked(const struct store *s, const char *project)
{
	if (s->policy.refuse_all)
		return true;
	for (size_t i = 0; i < s->policy.nrefused; i++)
		if (strcmp(s->policy.refused[i], project) == 0)
			return true;
	return false;
}

void store_project_policy(struct store *s, const char *project, struct store_project_policy *out)
{
	*out = (struct store_project_policy){ 0, 0, STORE_DEFAULT_PROJECT_MODE,
					      STORE_DEFAULT_PROJECT_MODE & 0666 };
	pthread_rwlock_rdlock(&s->policy_lock);
	for (size_t i = 0; i < s->policy.nprojects; i++)
		if (strcmp(s->policy.projects[i].project, project) == 0)
			*out = s->policy.projects[i].p;
	if (store_project_refused_locked(s, project))
		*out = (struct store_project_policy){ 0, 0, 0, 0 };
	pthread_rwlock_unlock(&s->policy_lock);
}

int store_project_policy_check(struct store *s, const char *project)
{
	bool refused;

	pthread_rwlock_rdlock(&s->policy_lock);
	refused = store_project_refused_locked(s, project);
	pthread_rwlock_unlock(&s->policy_lock);
	return refused ? KMS_E_IO : 0;
}

size_t store_policy_unreadable(struct store *s, char *what, size_t cap)
{
	size_t n;

	pthread_rwlock_rdlock(&s->policy_lock);
	n = s->policy.unreadable;
	if (cap)
		snprintf(what, cap, "%s", n ? s->policy.first_unreadable : "");
	pthread_rwlock_unlock(&s->policy_lock);
	return n;
}

int store_project_policy_set(struct store *s, const char *project,
			     const struct store_project_policy *p)
{
	int r;

	if (!store_project_id_valid(project) || p->mode > 07777 || p->plaintext_mode > 07777)
		return KMS_E_BAD_PARAM;
	if ((r = store_project_ensure(s, project)) < 0)
		return r;
	if ((r = s->ops->project_policy_set(s->be, project, p)) < 0)
		return r;
	return store_policy_load(s);
}

int store_binding_set(struct store *s, const char *project, enum store_principal kind, uint32_t id,
		      enum kms_role role)
{
	int r = 0;

	if (!store_project_id_valid(project) || role < KMS_ROLE_NONE || role > KMS_ROLE_ADMIN ||
	    (kind != STORE_BIND_UID && kind != STORE_BIND_GID))
		return KMS_E_BAD_PARAM;
	if (role != KMS_ROLE_NONE)
		r = store_project_ensure(s, project);
	if (r == 0)
		r = s->ops->binding_set(s->be, project, kind, id, role);
	return r < 0 ? r : store_policy_load(s);
}

enum kms_role store_binding_role(struct store *s, const char *project, uint32_t uid,
				 const uint32_t *gids, size_t ngids)
{
	enum kms_role uid_role = KMS_ROLE_NONE, gid_role = KMS_ROLE_NONE;

	pthread_rwlock_rdlock(&s->policy_lock);
	/* A project with an unreadable binding gives no role by binding: one of its rows may
	 * have been the uid binding that narrows a group's role. */
	for (size_t i = 0; i < s->policy.nbinds && !store_project_refused_locked(s, project); i++) {
		const struct store_policy_binding *b = &s->policy.binds[i];

		if (strcmp(b->project, project) != 0)
			continue;
		if (b->kind == STORE_BIND_UID && b->id == uid)
			uid_role = b->role;
		for (size_t g = 0; b->kind == STORE_BIND_GID && g < ngids; g++)
			if (b->id == gids[g] && b->role > gid_role)
				gid_role = b->role;
	}
	pthread_rwlock_unlock(&s->policy_lock);
	/* A binding for the uid itself is the more specific one. */
	return uid_role != KMS_ROLE_NONE ? uid_role : gid_role;
}

/* What is wrong with the components of path (after its leading '/'), or NULL. */
static const char *store_cgroup_components_bad(const char *path)
{
	for (const char *c = path + 1;; c++) {
		size_t len = strcspn(c, "/");

		if (len == 0)
			return "has an empty component ('//' or a '/' at the end)";
		if (strncmp(c, ".", len) == 0 || strncmp(c, "..", len) == 0)
			return "has a '.' or '..' component";
		for (size_t i = 0; i < len; i++)
			if ((unsigned char)c[i] < 0x20 || c[i] == 0x7f)
				return "has a control character";
		c += len;
		if (!*c)
			return NULL;
	}
}

bool store_cgroup_path_valid(const char *path, char *why, size_t why_len)
{
	const char *what = NULL;

	if (!path || path[0] != '/')
		what = "is not absolute (paths as in /proc/PID/cgroup start with '/')";
	else if (strlen(path) > STORE_CGROUP_PATH_MAX)
		what = "is longer than 1024 bytes";
	else if (!path[1])
		what = "is the root cgroup, which holds every process: bind a uid or gid instead";
	else
		what = store_cgroup_components_bad(path);
	if (what && why_len)
		snprintf(why, why_len, "the cgroup path %s", what);
	return !what;
}

int store_binding_set_cgroup(struct store *s, const char *project, const char *path,
			     enum kms_role role)
{
	int r = 0;

	if (!store_project_id_valid(project) || !store_cgroup_path_valid(path, NULL, 0) ||
	    role < KMS_ROLE_NONE || role > KMS_ROLE_ADMIN)
		return KMS_E_BAD_PARAM;
	if (role != KMS_ROLE_NONE)
		r = store_project_ensure(s, project);
	if (r == 0)
		r = s->ops->cgroup_binding_set(s->be, project, path, role);
	return r < 0 ? r : store_policy_load(s);
}

/* The depth at which binding path covers cgroup (its length: a longer covering path is a
 * deeper one), 0 if it does not: cgroup is path or below it, component-wise. */
static size_t store_cgroup_covers(const char *path, const char *cgroup)
{
	size_t n = strlen(path);

	return strncmp(path, cgroup, n) == 0 && (cgroup[n] == 0 || cgroup[n] == '/') ? n : 0;
}

enum kms_role store_binding_role_cgroup(struct store *s, const char *project, const char *cgroup)
{
	enum kms_role role = KMS_ROLE_NONE;
	size_t depth = 0;

	if (!cgroup || !cgroup[0])
		return KMS_ROLE_NONE;
	pthread_rwlock_rdlock(&s->policy_lock);
	/* As store_binding_role: an unreadable row may have been the deeper binding. */
	for (size_t i = 0; i < s->policy.ncgroups && !store_project_refused_locked(s, project);
	     i++) {
		const struct store_policy_cgroup *e = &s->policy.cgroups[i];
		size_t n =
			strcmp(e->project, project) == 0 ? store_cgroup_covers(e->path, cgroup) : 0;

		if (n > depth) {
			depth = n;
			role = e->role;
		}
	}
	pthread_rwlock_unlock(&s->policy_lock);
	return role;
}

bool store_cgroup_bindings_exist(struct store *s, const char *project)
{
	bool has;

	pthread_rwlock_rdlock(&s->policy_lock);
	has = store_project_refused_locked(s, project);
	for (size_t i = 0; i < s->policy.ncgroups && !has; i++)
		has = strcmp(s->policy.cgroups[i].project, project) == 0;
	pthread_rwlock_unlock(&s->policy_lock);
	return has;
}

bool store_policy_has_cgroup(struct store *s, const char *project, const char *path,
			     enum kms_role role)
{
	bool has = false;

	pthread_rwlock_rdlock(&s->policy_lock);
	for (size_t i = 0; i < s->policy.ncgroups && !has; i++)
		has = strcmp(s->policy.cgroups[i].project, project) == 0 &&
		      strcmp(s->policy.cgroups[i].path, path) == 0 &&
		      s->policy.cgroups[i].role == role;
	pthread_rwlock_unlock(&s->policy_lock);
	return has;
}

int store_cgroup_binding_list(struct store *s, const char *project, store_cgroup_binding_cb cb,
			      void *arg)
{
	int r = 0;

	pthread_rwlock_rdlock(&s->policy_lock);
	for (size_t i = 0; i < s->policy.ncgroups && r == 0; i++)
		if (strcmp(s->policy.cgroups[i].project, project) == 0)
			r = cb(s->policy.cgroups[i].path, s->policy.cgroups[i].role, arg);
	pthread_rwlock_unlock(&s->policy_lock);
	return r;
}

int store_token_record(struct store *s, const struct store_token_info *t)
{
	return s->ops->token_put(s->be, t);
}

struct store_token_find {
	const char *id;
	struct store_token_info t;
	bool found;
	store_token_cb cb;
	void *arg;
};

/* Readable token rows only: an unreadable one is neither listed nor found (it counts as revoked
 * in the policy). */
static int store_token_row(const char *id, const struct store_token_info *t, bool readable,
			   void *arg)
{
	struct store_token_find *f = arg;

	if (!readable)
		return 0;
	if (f->cb)
		return f->cb(t, f->arg);
	if (strcmp(id, f->id) == 0) {
		f->t = *t;
		f->found = true;
	}
	return 0;
}

static int store_token_scan(struct store *s, struct store_token_find *f)
{
	const struct store_policy_visitor v = { .token = store_token_row, .arg = f };

	return s->ops->policy_list(s->be, &v);
}

int store_token_revoke(struct store *s, const char *id)
{
	struct store_token_find f = { .id = id };
	int r = store_token_scan(s, &f);

	if (r < 0)
		return r;
	if (!f.found)
		return KMS_E_TOKEN_INVALID;
	f.t.revoked = true;
	if ((r = s->ops->token_put(s->be, &f.t)) < 0)
		return r;
	return store_policy_load(s);
}

int store_token_list(struct store *s, store_token_cb cb, void *arg)
{
	struct store_token_find f = { .cb = cb, .arg = arg };

	return store_token_scan(s, &f);
}

bool store_token_revoked(struct store *s, const char *id)
{
	bool revoked = false;

	pthread_rwlock_rdlock(&s->policy_lock);
	for (size_t i = 0; i < s->policy.nrevoked && !revoked; i++)
		revoked = strcmp(s->policy.revoked[i], id) == 0;
	pthread_rwlock_unlock(&s->policy_lock);
	return revoked;
}
