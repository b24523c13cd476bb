/* Projects and their access policy: modes and owners, uid/gid role bindings, token records and
 * revocations. Loaded into memory at open and by store_refresh, so checks read no database;
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

/* token rows: name = id, value = "project|user|role|expiry|issued_ms|revoked" */
static int store_token_parse(const char *id, const char *value, struct store_token_info *t)
{
	long long exp, issued;
	int revoked;

	memset(t, 0, sizeof(*t));
	snprintf(t->id, sizeof(t->id), "%s", id);
	if (sscanf(value, "%64[^|]|%64[^|]|%7[^|]|%lld|%lld|%d", t->project, t->user, t->role,
		   &exp, &issued, &revoked) != 6)
		return KMS_E_IO;
	t->expiry = exp;
	t->issued_ms = issued;
	t->revoked = revoked != 0;
	return 0;
}

void store_policy_free(struct store_policy *p)
{
	free(p->projects);
	free(p->binds);
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

/* "OWNER GROUP MODE PLAINTEXT_MODE" (decimal ids, octal modes up to 07777), nothing else. */
static bool store_project_value_parse(const char *value, struct store_project_policy *out)
{
	int end = -1;

	if (value[0] < '0' || value[0] > '9') /* no sign, no blank before the owner */
		return false;
	if (sscanf(value, "%u %u %o %o%n", &out->owner, &out->group, &out->mode,
		   &out->plaintext_mode, &end) != 4)
		return false;
	return end > 0 && value[end] == 0 && out->mode <= 07777 && out->plaintext_mode <= 07777;
}

/* name "PROJECT|uid|ID" or "PROJECT|gid|ID", value a role 1..3, nothing else. */
static bool store_binding_parse(const char *name, const char *value,
				struct store_policy_binding *e)
{
	char kindname[8];
	int end = -1;

	if (sscanf(name, "%64[^|]|%3[a-z]|%u%n", e->project, kindname, &e->id, &end) != 3 ||
	    end < 0 || name[end] != 0 || !store_project_id_valid(e->project))
		return false;
	if (strcmp(kindname, "uid") == 0)
		e->kind = STORE_BIND_UID;
	else if (strcmp(kindname, "gid") == 0)
		e->kind = STORE_BIND_GID;
	else
		return false;
	if (value[0] < '1' || value[0] > '3' || value[1] != 0)
		return false;
	e->role = value[0] - '0';
	return true;
}

/* The project a binding row's name starts with, if any. */
static const char *store_binding_project(const char *name, char out[KMS_MAX_PROJECT_ID + 1])
{
	const char *bar = strchr(name, '|');
	size_t n = bar ? (size_t)(bar - name) : 0;

	if (n == 0 || n > KMS_MAX_PROJECT_ID)
		return NULL;
	memcpy(out, name, n);
	out[n] = 0;
	return store_project_id_valid(out) ? out : NULL;
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

static int store_policy_token_row(struct store_policy *p, const char *name, const char *value)
{
	struct store_token_info t;
	char what[128];

	if (strlen(name) != STORE_TOKEN_ID_HEX || !kms_is_hex(name, STORE_TOKEN_ID_HEX)) {
		/* Whose revocation this was is lost: no token can be trusted. */
		snprintf(what, sizeof(what), "a token row named '%.32s' (every project refused)",
			 name);
		return store_policy_unreadable_row(p, NULL, what);
	}
	if (store_token_parse(name, value, &t) == 0)
		return t.revoked ? store_policy_revoke(p, t.id) : 0;
	/* Whether it was revoked is lost: it is. */
	if (p->unreadable++ == 0)
		snprintf(p->first_unreadable, sizeof(p->first_unreadable),
			 "token '%s' (counted as revoked)", name);
	return store_policy_revoke(p, name);
}

static int store_policy_row(const char *kind, const char *name, const char *value, void *arg)
{
	struct store_policy *p = arg;
	char what[128], project[KMS_MAX_PROJECT_ID + 1];
	void *n;

	if (strcmp(kind, "project") == 0) {
		struct store_policy_project e = { 0 };

		snprintf(what, sizeof(what), "project '%.64s' (refused: modes 0, KMS.0102)", name);
		if (!store_project_id_valid(name) || !store_project_value_parse(value, &e.p))
			return store_policy_unreadable_row(p, name, what);
		n = realloc(p->projects, (p->nprojects + 1) * sizeof(e));
		if (!n)
			return KMS_E_NOMEM;
		p->projects = n;
		snprintf(e.project, sizeof(e.project), "%s", name);
		p->projects[p->nprojects++] = e;
	} else if (strcmp(kind, "bind") == 0) {
		struct store_policy_binding e = { 0 };

		if (!store_binding_parse(name, value, &e)) {
			const char *proj = store_binding_project(name, project);

			snprintf(what, sizeof(what), "a binding of project '%.64s' (%s refused)",
				 proj ? proj : "?", proj ? "project" : "every project");
			return store_policy_unreadable_row(p, proj, what);
		}
		n = realloc(p->binds, (p->nbinds + 1) * sizeof(e));
		if (!n)
			return KMS_E_NOMEM;
		p->binds = n;
		p->binds[p->nbinds++] = e;
	} else if (strcmp(kind, "token") == 0) {
		return store_policy_token_row(p, name, value);
	}
	return 0; /* a kind of a later version: not ours to judge */
}

int store_policy_load(struct store *s)
{
	struct store_policy fresh = { 0 }, old;
	int r = s->ops->policy_list(s->be, store_policy_row, &fresh);

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
	char value[64];
	int r;

	if (!store_project_id_valid(project) || p->mode > 07777 || p->plaintext_mode > 07777)
		return KMS_E_BAD_PARAM;
	if ((r = store_project_ensure(s, project)) < 0)
		return r;
	snprintf(value, sizeof(value), "%u %u %o %o", p->owner, p->group, p->mode,
		 p->plaintext_mode);
	if ((r = s->ops->policy_set(s->be, "project", project, value)) < 0)
		return r;
	return store_policy_load(s);
}

int store_binding_set(struct store *s, const char *project, enum store_principal kind,
		      uint32_t id, int role)
{
	char name[128], value[8];
	int r;

	if (!store_project_id_valid(project) || role < 0 || role > 3)
		return KMS_E_BAD_PARAM;
	snprintf(name, sizeof(name), "%s|%s|%u", project, kind == STORE_BIND_UID ? "uid" : "gid",
		 id);
	snprintf(value, sizeof(value), "%d", role);
	if (role == 0)
		r = s->ops->policy_delete(s->be, "bind", name);
	else if ((r = store_project_ensure(s, project)) == 0)
		r = s->ops->policy_set(s->be, "bind", name, value);
	return r < 0 ? r : store_policy_load(s);
}

int store_binding_role(struct store *s, const char *project, uint32_t uid, const uint32_t *gids,
		       size_t ngids)
{
	int uid_role = 0, gid_role = 0;

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
	return uid_role ? uid_role : gid_role;
}

static int store_token_write(struct store *s, const struct store_token_info *t)
{
	char value[256];

	snprintf(value, sizeof(value), "%s|%s|%s|%lld|%lld|%d", t->project, t->user, t->role,
		 (long long)t->expiry, (long long)t->issued_ms, t->revoked ? 1 : 0);
	return s->ops->policy_set(s->be, "token", t->id, value);
}

int store_token_record(struct store *s, const struct store_token_info *t)
{
	return store_token_write(s, t);
}

struct store_token_find {
	const char *id;
	struct store_token_info t;
	bool found;
	store_token_cb cb;
	void *arg;
};

static int store_token_row(const char *kind, const char *name, const char *value, void *arg)
{
	struct store_token_find *f = arg;
	struct store_token_info t;

	if (strcmp(kind, "token") != 0 || store_token_parse(name, value, &t) < 0)
		return 0;
	if (f->cb)
		return f->cb(&t, f->arg);
	if (strcmp(t.id, f->id) == 0) {
		f->t = t;
		f->found = true;
	}
	return 0;
}

int store_token_revoke(struct store *s, const char *id)
{
	struct store_token_find f = { .id = id };
	int r = s->ops->policy_list(s->be, store_token_row, &f);

	if (r < 0)
		return r;
	if (!f.found)
		return KMS_E_TOKEN_INVALID;
	f.t.revoked = true;
	if ((r = store_token_write(s, &f.t)) < 0)
		return r;
	return store_policy_load(s);
}

int store_token_list(struct store *s, store_token_cb cb, void *arg)
{
	struct store_token_find f = { .cb = cb, .arg = arg };

	return s->ops->policy_list(s->be, store_token_row, &f);
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
