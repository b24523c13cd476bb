/* store copy: one store's content into another under the same root key (kmsctl store copy moves
 * a SQLite installation into PostgreSQL), and how a store's URI is shown (never its password).
 *
 * The copy works on the backends' rows: sealed material is copied as it is, never unsealed, and
 * what the destination already holds is kept (key_put, grant_put insert only what is missing),
 * so a copy that was interrupted is finished by running it again. A key that changed in the
 * source since an earlier run copied it is copied afresh. */
#include "store_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/kms_err.h"
#include "common/kms_hex.h"
#include "common/kms_secmem.h"
#include "common/kms_time.h"

/* Keys and grants read from the source per call: memory stays bounded whatever the store holds. */
#define STORE_COPY_PAGE 256u

struct store_copy_ctx {
	struct store *src, *dst;
	store_copy_progress_fn progress;
	void *arg;
	char *why;
	size_t why_len;
	size_t done, total;
	/* The project names (collected first: a backend may hold its lock while it lists). */
	char (*projects)[KMS_MAX_PROJECT_ID + 1];
	size_t nprojects, cap_projects;
	/* One page of key ids or grants of the source. */
	char (*ids)[KMS_KEY_ID_LEN + 1];
	struct store_grant *grants;
	size_t npage;
	/* The versions of one key: sealed, so ordinary memory is fine. */
	struct store_sealed_version *versions;
	size_t nversions, cap_versions;
	/* The destination's policy rows before the copy: a row that is there already is not
	 * written again, so a run with nothing new to copy changes nothing (no change feed
	 * entries that every daemon would act on). */
	struct store_policy_project *have_projects;
	size_t nhave_projects, cap_have_projects;
	struct store_policy_binding *have_binds;
	size_t nhave_binds, cap_have_binds;
	struct store_token_info *have_tokens;
	size_t nhave_tokens, cap_have_tokens;
};

/* why = what failed (fmt, ...) and the error r; returns r. */
__attribute__((format(printf, 3, 4))) static int store_copy_fail(struct store_copy_ctx *c, int r,
								 const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(c->why, c->why_len, "%s: %s", msg, kms_err_info(r)->message);
	return r;
}

/* Room for one more of n elements of size in *p (capacity *cap). */
static int store_copy_grow(void *p, size_t *cap, size_t n, size_t size)
{
	void **arr = p, *grown;
	size_t ncap = *cap ? *cap * 2 : 16;

	if (n < *cap)
		return 0;
	if (!(grown = realloc(*arr, ncap * size)))
		return KMS_E_NOMEM;
	*arr = grown;
	*cap = ncap;
	return 0;
}

static int store_copy_project_name(const char *project, void *arg)
{
	struct store_copy_ctx *c = arg;

	if (store_copy_grow(&c->projects, &c->cap_projects, c->nprojects, sizeof(*c->projects)))
		return KMS_E_NOMEM;
	snprintf(c->projects[c->nprojects++], KMS_MAX_PROJECT_ID + 1, "%s", project);
	return 0;
}

/* Whether any project of s holds a key. */
static int store_copy_has_keys(struct store *s, struct store_copy_ctx *tmp, bool *any)
{
	size_t n = 0;
	int r = s->ops->project_list(s->be, store_copy_project_name, tmp);

	*any = false;
	for (size_t i = 0; r == 0 && i < tmp->nprojects && !*any; i++)
		if ((r = s->ops->key_count(s->be, tmp->projects[i], &n)) == 0)
			*any = n > 0;
	return r;
}

/* Domain id and region as the source has them. The root keys must be the same: sealed material
 * is copied as it is (store_open has already refused a destination sealed under another). */
static int store_copy_settings(struct store_copy_ctx *c)
{
	struct store *src = c->src, *dst = c->dst;
	char src_check[2 * CORE_SHA256_BYTES + 1], dst_check[sizeof(src_check)];
	struct store_copy_ctx tmp = { 0 };
	bool any = false;
	int r = store_root_check(src->root, src_check);

	if (r == 0)
		r = store_root_check(dst->root, dst_check);
	if (r < 0)
		return store_copy_fail(c, r, "cannot use the root key");
	if (strcmp(src_check, dst_check) != 0) {
		snprintf(c->why, c->why_len,
			 "the destination was opened with another root key than the source");
		return KMS_E_IO;
	}
	if (strcmp(src->domain_id, dst->domain_id) != 0) {
		r = store_copy_has_keys(dst, &tmp, &any);
		free(tmp.projects);
		if (r < 0)
			return store_copy_fail(c, r, "cannot read the destination");
		if (any) {
			snprintf(c->why, c->why_len,
				 "the destination already holds keys of another installation "
				 "(domain id %s, the source's is %s); copy into an empty database",
				 dst->domain_id, src->domain_id);
			return KMS_E_IO;
		}
		if ((r = dst->ops->meta_set(dst->be, "domain_id", src->domain_id)) < 0)
			return store_copy_fail(c, r, "cannot write the domain id");
		snprintf(dst->domain_id, sizeof(dst->domain_id), "%s", src->domain_id);
	}
	if (strcmp(src->region, dst->region) != 0) {
		if ((r = dst->ops->meta_set(dst->be, "region", src->region)) < 0)
			return store_copy_fail(c, r, "cannot write the region");
		snprintf(dst->region, sizeof(dst->region), "%s", src->region);
	}
	return 0;
}

static int store_copy_projects(struct store_copy_ctx *c)
{
	int64_t now = kms_time_real_ms();
	size_t n;
	int r = c->src->ops->project_list(c->src->be, store_copy_project_name, c);

	if (r < 0)
		return store_copy_fail(c, r, "cannot list the projects of the source");
	for (size_t i = 0; i < c->nprojects; i++) {
		if ((r = c->src->ops->key_count(c->src->be, c->projects[i], &n)) < 0)
			return store_copy_fail(c, r, "cannot count the keys of project '%s'",
					       c->projects[i]);
		c->total += n;
		if ((r = c->dst->ops->project_ensure(c->dst->be, c->projects[i], now)) < 0)
			return store_copy_fail(c, r, "cannot create project '%s'", c->projects[i]);
	}
	return 0;
}

static int store_copy_version(const struct store_sealed_version *v, void *arg)
{
	struct store_copy_ctx *c = arg;

	if (store_copy_grow(&c->versions, &c->cap_versions, c->nversions, sizeof(*c->versions)))
		return KMS_E_NOMEM;
	c->versions[c->nversions++] = *v;
	return 0;
}

/* What the destination holds of a key is what the source holds: the same revision and fields,
 * the same sealed versions. */
static bool store_copy_same(const struct store_key_meta *a, const struct store_key_meta *b)
{
	return a->revision == b->revision && a->state == b->state &&
	       strcmp(a->alias, b->alias) == 0 && strcmp(a->description, b->description) == 0 &&
	       a->deletion_ms == b->deletion_ms && a->rotation_enabled == b->rotation_enabled &&
	       a->rotation_interval_days == b->rotation_interval_days &&
	       a->last_rotation_ms == b->last_rotation_ms && a->rotations == b->rotations &&
	       a->current_version == b->current_version && a->expiration_ms == b->expiration_ms &&
	       a->import_digest_set == b->import_digest_set &&
	       core_equal(a->import_digest, b->import_digest, sizeof(a->import_digest));
}

static bool store_copy_versions_same(const struct store_sealed_version *a,
				     const struct store_sealed_version *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (a[i].version != b[i].version || a[i].sealed_len != b[i].sealed_len ||
		    !core_equal(a[i].sealed, b[i].sealed, a[i].sealed_len))
			return false;
	return true;
}

/* The destination holds the key already: keep it if it is the source's, else replace it (the
 * source changed it after an earlier run copied it). */
static int store_copy_existing(struct store_copy_ctx *c, const struct store_key_meta *m, size_t n)
{
	struct store_key_meta dm;
	bool added = false, same;
	int r;

	r = c->dst->ops->key_load(c->dst->be, m->project, m->key_id, NULL, &dm, store_copy_version,
				  c);
	if (r < 0)
		return r;
	same = c->nversions == 2 * n && store_copy_same(m, &dm) &&
	       store_copy_versions_same(c->versions, c->versions + n, n);
	c->nversions = n;
	if (same)
		return 0;
	if ((r = c->dst->ops->key_delete(c->dst->be, m->key_id, dm.revision)) < 0)
		return r;
	r = c->dst->ops->key_put(c->dst->be, m, c->versions, n, &added);
	return r == 0 && !added ? KMS_E_STALE : r;
}

static int store_copy_tag(const char *key_id, const char *tag_key, const char *tag_value, void *arg)
{
	struct store_copy_ctx *c = arg;

	/* Replacing a tag never counts; the source kept to the limit already. */
	return c->dst->ops->tag_set(c->dst->be, key_id, tag_key, tag_value, UINT32_MAX);
}

static int store_copy_key(struct store_copy_ctx *c, const char *project, const char *key_id)
{
	struct store_key_meta m;
	bool added = false;
	int r;

	c->nversions = 0;
	r = c->src->ops->key_load(c->src->be, project, key_id, NULL, &m, store_copy_version, c);
	if (r == KMS_E_KEY_NOT_FOUND)
		return 0; /* deleted since it was listed */
	if (r < 0)
		return store_copy_fail(c, r, "cannot read key %s of the source", key_id);
	r = c->dst->ops->key_put(c->dst->be, &m, c->versions, c->nversions, &added);
	if (r == 0 && !added)
		r = store_copy_existing(c, &m, c->nversions);
	if (r == KMS_E_ALIAS_DUPLICATE)
		snprintf(c->why, c->why_len,
			 "key %s: its alias '%.256s' names another key in the destination (the "
			 "source changed it since an earlier copy); remove that key there, or "
			 "copy into an empty database",
			 key_id, m.alias);
	if (r < 0)
		return r == KMS_E_ALIAS_DUPLICATE
			       ? r
			       : store_copy_fail(c, r, "cannot copy key %s", key_id);
	r = c->src->ops->tag_list(c->src->be, project, key_id, store_copy_tag, c);
	if (r < 0)
		return store_copy_fail(c, r, "cannot copy the tags of key %s", key_id);
	c->done++;
	if (c->progress)
		c->progress(c->done, c->total > c->done ? c->total : c->done, c->arg);
	return 0;
}

static int store_copy_key_id(const struct store_key_meta *m, void *arg)
{
	struct store_copy_ctx *c = arg;

	if (c->npage < STORE_COPY_PAGE)
		snprintf(c->ids[c->npage++], KMS_KEY_ID_LEN + 1, "%s", m->key_id);
	return 0;
}

static int store_copy_keys(struct store_copy_ctx *c)
{
	size_t total;
	int r = 0;

	c->ids = calloc(STORE_COPY_PAGE, sizeof(*c->ids));
	if (!c->ids)
		return KMS_E_NOMEM;
	if (c->progress)
		c->progress(0, c->total, c->arg);
	for (size_t p = 0; r == 0 && p < c->nprojects; p++) {
		const char *project = c->projects[p];

		for (size_t offset = 0;; offset += c->npage) {
			c->npage = 0;
			r = c->src->ops->key_list(c->src->be, project, 0, offset, STORE_COPY_PAGE,
						  store_copy_key_id, c, &total);
			if (r < 0)
				return store_copy_fail(c, r, "cannot list the keys of project '%s'",
						       project);
			for (size_t i = 0; r == 0 && i < c->npage; i++)
				r = store_copy_key(c, project, c->ids[i]);
			if (r < 0 || c->npage < STORE_COPY_PAGE)
				break;
		}
	}
	return r;
}

static int store_copy_grant_row(const struct store_grant *g, void *arg)
{
	struct store_copy_ctx *c = arg;

	if (c->npage < STORE_COPY_PAGE)
		c->grants[c->npage++] = *g;
	return 0;
}

static int store_copy_grants(struct store_copy_ctx *c)
{
	struct store_grant_filter all = { 0 };
	size_t total;
	bool added;
	int r = 0;

	c->grants = calloc(STORE_COPY_PAGE, sizeof(*c->grants));
	if (!c->grants)
		return KMS_E_NOMEM;
	for (size_t offset = 0;; offset += c->npage) {
		c->npage = 0;
		r = c->src->ops->grant_list(c->src->be, &all, offset, STORE_COPY_PAGE,
					    store_copy_grant_row, c, &total);
		if (r < 0)
			return store_copy_fail(c, r, "cannot list the grants of the source");
		for (size_t i = 0; i < c->npage; i++)
			if ((r = c->dst->ops->grant_put(c->dst->be, &c->grants[i], &added)) < 0)
				return store_copy_fail(c, r, "cannot copy grant %s",
						       c->grants[i].grant_id);
		if (c->npage < STORE_COPY_PAGE)
			return 0;
	}
}

/* Policy rows go over as they are; one the source cannot read is not guessed at. */
static int store_copy_unreadable(struct store_copy_ctx *c, const char *what, const char *name)
{
	snprintf(c->why, c->why_len,
		 "the source's %s row of '%.100s' cannot be read; set it again there (kmsctl "
		 "project set/bind, token revoke) and copy again",
		 what, name);
	return KMS_E_IO;
}

static bool store_copy_policy_same(const struct store_project_policy *a,
				   const struct store_project_policy *b)
{
	return a->owner == b->owner && a->group == b->group && a->mode == b->mode &&
	       a->plaintext_mode == b->plaintext_mode;
}

static bool store_copy_token_same(const struct store_token_info *a,
				  const struct store_token_info *b)
{
	return strcmp(a->id, b->id) == 0 && strcmp(a->project, b->project) == 0 &&
	       strcmp(a->user, b->user) == 0 && a->role == b->role && a->expiry == b->expiry &&
	       a->issued_ms == b->issued_ms && a->revoked == b->revoked;
}

/* The destination's rows (readable ones: an unreadable row is written over). */
static int store_copy_have_project(const char *project, const struct store_project_policy *p,
				   bool readable, void *arg)
{
	struct store_copy_ctx *c = arg;
	struct store_policy_project *h;

	if (!readable)
		return 0;
	if (store_copy_grow(&c->have_projects, &c->cap_have_projects, c->nhave_projects,
			    sizeof(*h)))
		return KMS_E_NOMEM;
	h = &c->have_projects[c->nhave_projects++];
	snprintf(h->project, sizeof(h->project), "%s", project);
	h->p = *p;
	return 0;
}

static int store_copy_have_binding(const char *project, enum store_principal kind, uint32_t id,
				   enum kms_role role, bool readable, void *arg)
{
	struct store_copy_ctx *c = arg;
	struct store_policy_binding *h;

	if (!readable)
		return 0;
	if (store_copy_grow(&c->have_binds, &c->cap_have_binds, c->nhave_binds, sizeof(*h)))
		return KMS_E_NOMEM;
	h = &c->have_binds[c->nhave_binds++];
	snprintf(h->project, sizeof(h->project), "%s", project);
	h->kind = kind;
	h->id = id;
	h->role = role;
	return 0;
}

static int store_copy_have_token(const char *id, const struct store_token_info *t, bool readable,
				 void *arg)
{
	struct store_copy_ctx *c = arg;

	if (!readable)
		return 0;
	if (store_copy_grow(&c->have_tokens, &c->cap_have_tokens, c->nhave_tokens, sizeof(*t)))
		return KMS_E_NOMEM;
	c->have_tokens[c->nhave_tokens++] = *t;
	return 0;
}

static int store_copy_policy_project(const char *project, const struct store_project_policy *p,
				     bool readable, void *arg)
{
	struct store_copy_ctx *c = arg;

	if (!readable)
		return store_copy_unreadable(c, "project", project);
	for (size_t i = 0; i < c->nhave_projects; i++)
		if (strcmp(c->have_projects[i].project, project) == 0 &&
		    store_copy_policy_same(&c->have_projects[i].p, p))
			return 0;
	return c->dst->ops->project_policy_set(c->dst->be, project, p);
}

static int store_copy_policy_binding(const char *project, enum store_principal kind, uint32_t id,
				     enum kms_role role, bool readable, void *arg)
{
	struct store_copy_ctx *c = arg;

	if (!readable)
		return store_copy_unreadable(c, "binding", project);
	for (size_t i = 0; i < c->nhave_binds; i++)
		if (strcmp(c->have_binds[i].project, project) == 0 &&
		    c->have_binds[i].kind == kind && c->have_binds[i].id == id &&
		    c->have_binds[i].role == role)
			return 0;
	return c->dst->ops->binding_set(c->dst->be, project, kind, id, role);
}

/* The destination's policy as loaded at its open says what it holds already. */
static int store_copy_policy_cgroup(const char *project, const char *path, enum kms_role role,
				    bool readable, void *arg)
{
	struct store_copy_ctx *c = arg;

	if (!readable)
		return store_copy_unreadable(c, "cgroup binding", project);
	if (store_policy_has_cgroup(c->dst, project, path, role))
		return 0;
	return c->dst->ops->cgroup_binding_set(c->dst->be, project, path, role);
}

static int store_copy_policy_token(const char *id, const struct store_token_info *t, bool readable,
				   void *arg)
{
	struct store_copy_ctx *c = arg;

	if (!readable)
		return store_copy_unreadable(c, "token", id);
	for (size_t i = 0; i < c->nhave_tokens; i++)
		if (store_copy_token_same(&c->have_tokens[i], t))
			return 0;
	return c->dst->ops->token_put(c->dst->be, t);
}

static int store_copy_policy(struct store_copy_ctx *c)
{
	const struct store_policy_visitor have = { .project = store_copy_have_project,
						   .binding = store_copy_have_binding,
						   .token = store_copy_have_token,
						   .arg = c };
	const struct store_policy_visitor v = { .project = store_copy_policy_project,
						.binding = store_copy_policy_binding,
						.cgroup_binding = store_copy_policy_cgroup,
						.token = store_copy_policy_token,
						.arg = c };
	int r;

	c->why[0] = 0;
	r = c->dst->ops->policy_list(c->dst->be, &have);
	if (r < 0)
		return store_copy_fail(c, r, "cannot read the destination's access policy");
	r = c->src->ops->policy_list(c->src->be, &v);
	if (r < 0 && !c->why[0])
		return store_copy_fail(c, r, "cannot copy the access policy");
	return r;
}

/* The state secrets live in the destination's settings, sealed under the root key in
 * "secret:NAME" (the format store_state_secret reads, whatever the backend), so tokens issued
 * before the copy keep working on every host ("token.key"), audit files written before it stay
 * verifiable ("audit.key") and imported material still matches its digest ("import-digest.key",
 * which exists only once a root-key rotation began). Only what the source has is copied. The
 * first secret wins: one the destination holds already must be the source's. */
static int store_copy_secret(struct store_copy_ctx *c, const char *name, const char *what)
{
	uint8_t *secret = kms_secret_alloc(64), *have = secret ? secret + 32 : NULL;
	uint8_t sealed[STORE_SECRET_SEALED];
	char hex[STORE_SECRET_HEX], label[STORE_SECRET_LABEL_MAX], meta[STORE_SECRET_SETTING_MAX];
	size_t n = 0;
	bool added = false;
	int r = secret ? 0 : KMS_E_NOMEM;

	if (r == 0)
		r = store_secret_setting(name, meta, label);
	/* A secret the source never made is not made now (the source may be a read-only backup). */
	if (r == 0)
		r = store_state_secret_get(c->src, name, secret);
	if (r == KMS_E_KEY_NOT_FOUND) {
		r = 0;
		goto out;
	}
	if (r == 0)
		r = store_seal_opaque(c->dst, label, secret, 32, sealed, sizeof(sealed), &n);
	if (r == 0) {
		kms_hex_encode(sealed, n, hex);
		r = c->dst->ops->meta_add(c->dst->be, meta, hex, &added);
	}
	if (r == 0 && !added && (r = store_state_secret(c->dst, name, have)) == 0 &&
	    !core_equal(secret, have, 32)) {
		snprintf(c->why, c->why_len,
			 "the destination already has another %s: %s; copy into an empty database",
			 what,
			 strcmp(name, "token.key") == 0 ? "tokens issued here would not work there"
							: "audit files written here would not "
							  "verify there");
		r = KMS_E_IO;
		goto out;
	}
	if (r < 0)
		store_copy_fail(c, r, "cannot copy the %s", what);
out:
	kms_secret_free(secret, 64);
	return r;
}

int store_copy(struct store *src, struct store *dst, store_copy_progress_fn progress, void *arg,
	       char *why, size_t why_len)
{
	struct store_copy_ctx c = { .src = src,
				    .dst = dst,
				    .progress = progress,
				    .arg = arg,
				    .why = why,
				    .why_len = why_len };
	int r;

	snprintf(why, why_len, "unknown error");
	if (src == dst || !dst->ops->key_put || !dst->ops->grant_put || !dst->ops->meta_add) {
		snprintf(why, why_len, "the destination cannot take a copy (backend %s)",
			 dst->ops->name);
		return KMS_E_INTERNAL;
	}
	/* Keys before grants (a grant names its key); the policy after the projects. */
	r = store_copy_settings(&c);
	if (r == 0)
		r = store_copy_projects(&c);
	if (r == 0)
		r = store_copy_keys(&c);
	if (r == 0)
		r = store_copy_grants(&c);
	if (r == 0)
		r = store_copy_policy(&c);
	if (r == 0)
		r = store_copy_secret(&c, "token.key", "token signing secret");
	if (r == 0)
		r = store_copy_secret(&c, "audit.key", "audit MAC key");
	if (r == 0)
		r = store_copy_secret(&c, "import-digest.key", "import digest key");
	if (r == 0 && (r = store_session_copy(src, dst)) < 0)
		store_copy_fail(&c, r, "cannot copy the remembered token bindings");
	/* A synchronous commit after the copy's last one: PostgreSQL then has every key on disk
	 * (and on its synchronous standby), including those put without waiting for the disk. */
	if (r == 0) {
		char now[24];

		snprintf(now, sizeof(now), "%lld", (long long)kms_time_real_ms());
		if ((r = dst->ops->meta_set(dst->be, "last_copy_ms", now)) < 0)
			store_copy_fail(&c, r, "cannot write to the destination");
	}
	/* What the destination caches (its policy, keys read before) is from before the copy. */
	if (r == 0) {
		store_cache_clear(dst);
		if ((r = store_policy_load(dst)) < 0)
			store_copy_fail(&c, r, "cannot read the copied access policy");
	}
	free(c.projects);
	free(c.ids);
	free(c.grants);
	free(c.versions);
	free(c.have_projects);
	free(c.have_binds);
	free(c.have_tokens);
	return r;
}

/* ---- how a store is shown */

/* The value of a keyword in a libpq keyword string ("host=/x dbname='a b'"), unquoted. */
static bool store_uri_keyword(const char *s, const char *key, char *out, size_t cap)
{
	size_t klen = strlen(key);

	while (*s) {
		size_t o = 0;
		bool match;

		while (*s == ' ' || *s == '\t' || *s == '\n')
			s++;
		match = strncmp(s, key, klen) == 0 && (s[klen] == '=' || s[klen] == ' ');
		s += strcspn(s, "=");
		if (*s == '=')
			s++;
		while (*s == ' ')
			s++;
		if (*s == '\'') {
			for (s++; *s && *s != '\''; s++) {
				if (*s == '\\' && s[1])
					s++;
				if (match && o + 1 < cap)
					out[o++] = *s;
			}
			if (*s)
				s++;
		} else {
			for (; *s && *s != ' ' && *s != '\t' && *s != '\n'; s++)
				if (match && o + 1 < cap)
					out[o++] = *s;
		}
		if (match) {
			out[o] = 0;
			return true;
		}
	}
	return false;
}

void store_uri_describe(const char *uri, char *out, size_t cap)
{
	const char *p, *hosts, *end;
	char host[256] = "", db[128] = "", service[128] = "";

	if (!uri || strcmp(uri, "sqlite") == 0) {
		snprintf(out, cap, "sqlite");
		return;
	}
	p = strstr(uri, "://");
	if (p && !strchr(uri, ' ') && p < uri + strcspn(uri, "=")) {
		/* scheme://[user[:password]@]hosts[/db][?params]: the hosts and the database. */
		hosts = p + 3;
		end = hosts + strcspn(hosts, "/?");
		p = memchr(hosts, '@', (size_t)(end - hosts));
		if (p)
			hosts = p + 1;
		snprintf(out, cap, "%.*s://%.*s%.*s", (int)(strstr(uri, "://") - uri), uri,
			 (int)(end - hosts), hosts, *end == '/' ? (int)strcspn(end, "?") : 0, end);
		return;
	}
	/* A service of pg_service.conf says where on its own. */
	if (store_uri_keyword(uri, "service", service, sizeof(service)) &&
	    !store_uri_keyword(uri, "host", host, sizeof(host)) &&
	    !store_uri_keyword(uri, "dbname", db, sizeof(db))) {
		snprintf(out, cap, "service=%s", service);
		return;
	}
	if (!store_uri_keyword(uri, "host", host, sizeof(host)) &&
	    !store_uri_keyword(uri, "hostaddr", host, sizeof(host)))
		snprintf(host, sizeof(host), "(default)");
	if (!store_uri_keyword(uri, "dbname", db, sizeof(db)))
		snprintf(db, sizeof(db), "(default)");
	snprintf(out, cap, "host=%s dbname=%s", host, db);
}

/* Overwrite n characters from p with '*'. */
static void store_uri_blank(char *p, size_t n)
{
	memset(p, '*', n);
}

bool store_uri_hide_password(char *s)
{
	bool hid = false;
	char *p, *at, *colon;

	/* scheme://user:password@host */
	if ((p = strstr(s, "://")) != NULL) {
		p += 3;
		at = p + strcspn(p, "@/?");
		colon = memchr(p, ':', (size_t)(at - p));
		if (*at == '@' && colon && at > colon + 1) {
			store_uri_blank(colon + 1, (size_t)(at - colon - 1));
			hid = true;
		}
	}
	/* password=... (and sslpassword=...) as a keyword (up to a blank, or quoted) or a URI
	 * parameter (up to &). */
	for (p = s; (p = strstr(p, "password")) != NULL; p++) {
		char *v = p + strlen("password");

		while (*v == ' ')
			v++;
		if (*v++ != '=')
			continue;
		while (*v == ' ')
			v++;
		if (*v == '\'') {
			size_t n = 0;

			for (v++; v[n] && v[n] != '\''; n++)
				if (v[n] == '\\' && v[n + 1])
					n++;
			store_uri_blank(v, n);
		} else {
			store_uri_blank(v, strcspn(v, " \t\n&,"));
		}
		hid = true;
	}
	/* A PKCS#11 URI's PIN (root_key=, --root-key): up to the next attribute or option. */
	for (p = s; (p = strstr(p, "pin-value=")) != NULL; p++) {
		char *v = p + strlen("pin-value=");
		size_t n = strcspn(v, ";?&, \t\n");

		store_uri_blank(v, n);
		hid = hid || n > 0;
	}
	return hid;
}
