/* Key lifecycle: create, modify, rotate, import and delete material, the sweep of due keys,
 * listing and checking, and the grants and tags the backend keeps. Every change is durable in
 * the backend before its snapshot is published (update_lock serialises them in this process).
 * Other processes and hosts change keys too: every write is conditional on the revision the
 * change was computed from, and one that lost the race is computed again on the key as it is
 * now (store_change). */
#include "store_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uuid/uuid.h>

#include "common/kms_err.h"
#include "common/kms_secmem.h"
#include "common/kms_time.h"

/* A label of a key derived from the root key (see store_state.c). */
#define STORE_IMPORT_DIGEST_LABEL "kmsfs import digest key v1"

static void store_new_key_id(char out[KMS_KEY_ID_LEN + 1])
{
	uuid_t u;

	uuid_generate_random(u);
	uuid_unparse_lower(u, out);
}

static int store_key_create_common(struct store *s, const char *project, const char *alias,
				   const char *description, unsigned quota, bool external,
				   struct store_key **out)
{
	struct store_sealed_version v = { 0 };
	struct store_key_meta meta = { 0 };
	uint8_t material[CORE_KEY_BYTES];
	struct store_key *k = NULL;
	int r;

	*out = NULL;
	if ((r = store_project_ensure(s, project)) < 0)
		return r;
	snprintf(meta.project, sizeof(meta.project), "%s", project);
	store_new_key_id(meta.key_id);
	snprintf(meta.alias, sizeof(meta.alias), "%s", alias);
	snprintf(meta.description, sizeof(meta.description), "%s", description ? description : "");
	snprintf(meta.key_spec, sizeof(meta.key_spec), "AES_256");
	snprintf(meta.key_usage, sizeof(meta.key_usage), "ENCRYPT_DECRYPT");
	snprintf(meta.origin, sizeof(meta.origin), external ? "external" : "kms");
	meta.state = external ? STORE_KEY_PENDING_IMPORT : STORE_KEY_ENABLED;
	meta.creation_ms = kms_time_real_ms();
	meta.rotation_interval_days = 365;
	if (external) {
		if ((r = s->ops->key_insert(s->be, &meta, NULL, quota)) < 0)
			goto out;
		if ((r = store_snapshot_new(s, &meta, NULL, 0, &k)) < 0)
			goto out;
		store_publish_out(s, k, out);
		goto out;
	}
	if ((r = core_random_secret(material, sizeof(material))) < 0)
		goto out;
	if ((r = store_seal_version(s, meta.key_id, 0, material, &v)) < 0)
		goto out;
	/* Durable before anyone hears of it. */
	if ((r = s->ops->key_insert(s->be, &meta, &v, quota)) < 0)
		goto out;
	if ((r = store_snapshot_new(s, &meta, &v, 1, &k)) < 0)
		goto out;
	store_publish_out(s, k, out);
out:
	kms_wipe(material, sizeof(material));
	return r;
}

int store_key_create(struct store *s, const char *project, const char *alias,
		     const char *description, unsigned quota, struct store_key **out)
{
	return store_key_create_common(s, project, alias, description, quota, false, out);
}

int store_key_create_external(struct store *s, const char *project, const char *alias,
			      const char *description, unsigned quota, struct store_key **out)
{
	return store_key_create_common(s, project, alias, description, quota, true, out);
}

struct store_list_ctx {
	store_key_cb cb;
	void *arg;
};

static int store_list_forward(const struct store_key_meta *meta, void *arg)
{
	struct store_list_ctx *c = arg;

	return c->cb(meta, c->arg);
}

int store_key_list(struct store *s, const char *project, int state, size_t offset, size_t limit,
		   store_key_cb cb, void *arg, size_t *total)
{
	struct store_list_ctx c = { cb, arg };

	return s->ops->key_list(s->be, project, state, offset, limit, store_list_forward, &c,
				total);
}

int store_key_count(struct store *s, const char *project, size_t *count)
{
	return s->ops->key_count(s->be, project, count);
}

struct store_check_ctx {
	struct store *s;
	struct store_key_meta meta;
	store_check_cb cb;
	void *arg;
	size_t versions;
	size_t bad;
	char last_bad[KMS_KEY_ID_LEN + 1];
};

static int store_check_meta(const struct store_key_meta *meta, void *arg)
{
	struct store_check_ctx *c = arg;

	c->meta = *meta;
	return 0;
}

static int store_check_version(const struct store_sealed_version *v, void *arg)
{
	struct store_check_ctx *c = arg;
	uint8_t material[CORE_KEY_BYTES];
	int r = v->sealed_len ? store_unseal_version(c->s, c->meta.key_id, v, material) : KMS_E_IO;

	kms_wipe(material, sizeof(material));
	c->versions++;
	if (r < 0) {
		if (strcmp(c->last_bad, c->meta.key_id) != 0) {
			c->bad++;
			snprintf(c->last_bad, sizeof(c->last_bad), "%s", c->meta.key_id);
		}
		if (c->cb)
			c->cb(c->meta.project, c->meta.key_id, v->version, r, c->arg);
	}
	return 0;
}

int store_verify(struct store *s, char *why, size_t why_len)
{
	*why = '\0';
	return s->ops->verify ? s->ops->verify(s->be, why, why_len) : 0;
}

int store_check(struct store *s, store_check_cb cb, void *arg, size_t *versions_checked)
{
	struct store_check_ctx c = { .s = s, .cb = cb, .arg = arg };
	int r = s->ops->key_scan(s->be, store_check_meta, store_check_version, &c);

	*versions_checked = c.versions;
	if (r < 0)
		return r;
	return (int)c.bad;
}

/* One attempt at a change of a key (update_lock held): cur is the key as last read; the write
 * is conditional on cur's revision, so KMS_E_STALE means another process or host changed the key
 * meanwhile and nothing was written. On success *out (if out) is the new snapshot. */
typedef int (*store_change_fn)(struct store *s, const struct store_key *cur, void *arg,
			       struct store_key **out);

/* How often a change lost to others is computed again before giving up (KMS_E_STALE). */
#define STORE_CHANGE_TRIES 8

/* Run fn on the key, update_lock held: on KMS_E_STALE drop the cached snapshot, read the key
 * again from the backend and run fn on it again (it validates the transition anew). */
static int store_change_locked(struct store *s, const char *project, const char *key_id,
			       store_change_fn fn, void *arg, struct store_key **out)
{
	int r = KMS_E_STALE;

	for (int i = 0; i < STORE_CHANGE_TRIES && r == KMS_E_STALE; i++) {
		struct store_key *cur = NULL;

		r = store_key_get(s, project, key_id, &cur);
		if (r == 0)
			r = fn(s, cur, arg, out);
		store_key_release(cur);
		if (r == KMS_E_STALE)
			store_cache_replace(s, key_id, NULL);
	}
	return r;
}

static int store_change(struct store *s, const char *project, const char *key_id,
			store_change_fn fn, void *arg, struct store_key **out)
{
	int r;

	if (out)
		*out = NULL;
	pthread_mutex_lock(&s->update_lock);
	r = store_change_locked(s, project, key_id, fn, arg, out);
	pthread_mutex_unlock(&s->update_lock);
	return r;
}

/* The change is durable: publish *k, the snapshot made of it (made: whether that worked; k is
 * read after made is computed). If none could be made, drop the cached one instead: it is stale,
 * and the next get reloads the key. */
static int store_publish_change(struct store *s, const char *key_id, int made,
				struct store_key *const *k, struct store_key **out)
{
	if (made < 0) {
		store_cache_replace(s, key_id, NULL);
		return made;
	}
	store_publish_out(s, *k, out);
	/* The cache owns k: the analyzer cannot follow the atomic reference count. */
	/* NOLINTNEXTLINE(clang-analyzer-unix.Malloc) */
	return 0;
}

struct store_modify {
	store_key_edit_fn edit;
	void *arg;
};

static int store_modify_fn(struct store *s, const struct store_key *cur, void *arg,
			   struct store_key **out)
{
	const struct store_modify *e = arg;
	struct store_key *k = NULL;
	struct store_key_meta m = cur->meta;
	int r;

	m.has_material = cur->nversions > 0;
	if ((r = e->edit(&m, e->arg)) == 0 && (r = s->ops->key_update(s->be, &m)) == 0)
		r = store_publish_change(s, m.key_id, store_snapshot_with_meta(s, cur, &m, &k), &k,
					 out);
	return r;
}

int store_key_modify(struct store *s, const char *project, const char *key_id,
		     store_key_edit_fn edit, void *arg, struct store_key **out)
{
	struct store_modify e = { edit, arg };

	return store_change(s, project, key_id, store_modify_fn, &e, out);
}

static int store_rotate_fn(struct store *s, const struct store_key *cur, void *arg,
			   struct store_key **out)
{
	struct store_sealed_version v = { 0 };
	struct store_key_meta m = cur->meta;
	struct store_key *k = NULL;
	size_t old = (size_t)cur->nversions * CORE_KEY_BYTES;
	int r;

	if (strcmp(cur->meta.origin, "kms") != 0)
		return KMS_E_EXTERNAL_ROTATION; /* imported material never rotates (4.8) */
	if (cur->nversions == 0 || cur->nversions >= KMS_MAX_KEY_VERSIONS)
		return KMS_E_BAD_PARAM; /* bounded history: see docs/api-differences.md, Rotation */
	k = calloc(1, sizeof(*k));
	if (!k)
		return KMS_E_NOMEM;
	k->refs = 1;
	k->nversions = cur->nversions + 1;
	k->material = store_material_alloc(s, old + CORE_KEY_BYTES);
	if (!k->material) {
		free(k);
		return KMS_E_NOMEM;
	}
	memcpy(k->material, cur->material, old);
	if ((r = core_random_secret(k->material + old, CORE_KEY_BYTES)) < 0)
		goto fail;
	if ((r = store_seal_version(s, m.key_id, cur->nversions, k->material + old, &v)) < 0)
		goto fail;
	m.current_version = v.version;
	m.rotations++;
	m.last_rotation_ms = *(const int64_t *)arg;
	if ((r = s->ops->key_add_version(s->be, &m, &v)) < 0)
		goto fail;
	k->meta = m;
	store_publish_out(s, k, out);
	/* The cache owns k: the analyzer cannot follow the atomic reference count. */
	/* NOLINTNEXTLINE(clang-analyzer-unix.Malloc) */
	return 0;
fail:
	store_key_release(k);
	return r;
}

int store_key_rotate(struct store *s, const char *project, const char *key_id, int64_t now_ms,
		     struct store_key **out)
{
	return store_change(s, project, key_id, store_rotate_fn, &now_ms, out);
}

/* HMAC-SHA-256 under a root-derived key over key_id || material. */
static int store_import_digest(const struct store *s, const char *key_id,
			       const uint8_t material[CORE_KEY_BYTES], uint8_t out[32])
{
	uint8_t key[CORE_KEY_BYTES], msg[CORE_KEY_ID_BYTES + CORE_KEY_BYTES];
	int r = KMS_E_INTERNAL;

	if (strlen(key_id) != CORE_KEY_ID_BYTES)
		return KMS_E_INTERNAL;
	memcpy(msg, key_id, CORE_KEY_ID_BYTES);
	memcpy(msg + CORE_KEY_ID_BYTES, material, CORE_KEY_BYTES);
	if ((r = store_root_derive(s->root, STORE_IMPORT_DIGEST_LABEL, key)) == 0)
		r = core_hmac_sha256(key, sizeof(key), msg, sizeof(msg), out);
	kms_wipe(key, sizeof(key));
	kms_wipe(msg, sizeof(msg));
	return r;
}

/* May material (whose digest this is) be imported into the key m? */
static int store_import_allowed(const struct store_key_meta *m, const uint8_t digest[32])
{
	if (strcmp(m->origin, "external") != 0)
		return KMS_E_EXTERNAL_REQUIRED;
	if (m->state != STORE_KEY_PENDING_IMPORT)
		return KMS_E_NOT_PENDING_IMPORT;
	if (m->import_digest_set && !core_equal(m->import_digest, digest, 32))
		return KMS_E_IMPORT_DIFFERENT;
	return 0;
}

struct store_import {
	const uint8_t *material;
	int64_t expiration_ms;
};

static int store_import_fn(struct store *s, const struct store_key *cur, void *arg,
			   struct store_key **out)
{
	const struct store_import *im = arg;
	struct store_sealed_version v = { 0 };
	struct store_key_meta m = cur->meta;
	struct store_key *k = NULL;
	uint8_t digest[32] = { 0 };
	int r = store_import_digest(s, m.key_id, im->material, digest);

	if (r == 0 && (r = store_import_allowed(&m, digest)) == 0) {
		memcpy(m.import_digest, digest, sizeof(digest));
		m.import_digest_set = true;
		m.state = STORE_KEY_ENABLED;
		m.expiration_ms = im->expiration_ms;
		m.current_version = 0;
		r = store_seal_version(s, m.key_id, 0, im->material, &v);
	}
	/* Durable before the snapshot is published. */
	if (r == 0 && (r = s->ops->key_replace_material(s->be, &m, &v)) == 0)
		r = store_publish_change(s, m.key_id, store_snapshot_new(s, &m, &v, 1, &k), &k,
					 out);
	kms_wipe(digest, sizeof(digest));
	return r;
}

int store_key_import(struct store *s, const char *project, const char *key_id,
		     const uint8_t material[CORE_KEY_BYTES], int64_t expiration_ms,
		     struct store_key **out)
{
	struct store_import im = { material, expiration_ms };

	return store_change(s, project, key_id, store_import_fn, &im, out);
}

/* After material was deleted (update_lock held): make sure no copy stays in the database files.
 * If another process's reader holds the log, the next sweep tries again. */
static int store_wipe_deleted_locked(struct store *s)
{
	int r = s->ops->wipe_deleted(s->be);

	s->wipe_pending = r < 0;
	return r;
}

/* Drop every material version of an external key (update_lock held): back to state 5, except
 * that a key pending deletion stays so (cancelling it then returns it to state 5). */
static int store_material_clear_fn(struct store *s, const struct store_key *cur, void *arg,
				   struct store_key **out)
{
	struct store_key *k = NULL;
	struct store_key_meta m = cur->meta;
	int r;

	(void)arg;
	if (m.state != STORE_KEY_PENDING_DELETION)
		m.state = STORE_KEY_PENDING_IMPORT;
	m.expiration_ms = 0;
	m.has_material = false;
	if ((r = s->ops->key_replace_material(s->be, &m, NULL)) == 0) {
		/* The deletion is done and durable; a copy left in the log is the sweep's to retry. */
		(void)store_wipe_deleted_locked(s);
		r = store_publish_change(s, m.key_id, store_snapshot_new(s, &m, NULL, 0, &k), &k,
					 out);
	}
	return r;
}

static int store_delete_material_fn(struct store *s, const struct store_key *cur, void *arg,
				    struct store_key **out)
{
	if (strcmp(cur->meta.origin, "external") != 0)
		return KMS_E_EXTERNAL_REQUIRED;
	if (cur->meta.state != STORE_KEY_ENABLED && cur->meta.state != STORE_KEY_DISABLED)
		return KMS_E_MATERIAL_STATE;
	return store_material_clear_fn(s, cur, arg, out);
}

int store_key_delete_material(struct store *s, const char *project, const char *key_id,
			      struct store_key **out)
{
	return store_change(s, project, key_id, store_delete_material_fn, NULL, out);
}

struct store_due {
	struct store_key_meta *keys;
	size_t n, cap;
};

static int store_collect_due(const struct store_key_meta *m, void *arg)
{
	struct store_due *d = arg;

	if (d->n == d->cap) {
		size_t ncap = d->cap ? d->cap * 2 : 16;
		struct store_key_meta *p = realloc(d->keys, ncap * sizeof(*p));

		if (!p)
			return KMS_E_NOMEM;
		d->keys = p;
		d->cap = ncap;
	}
	d->keys[d->n++] = *m;
	return 0;
}

/* Carry out fn on a key found due (update_lock held), but only on the key as key_due read it:
 * if it changed since (here, or in another process or host: cancelled, rotated already), it is
 * left for the next sweep to judge again. */
static int store_due_change(struct store *s, const struct store_key_meta *due, store_change_fn fn,
			    void *arg)
{
	struct store_key *cur = NULL;
	int r = store_key_get(s, due->project, due->key_id, &cur);

	if (r == 0 && cur->meta.revision != due->revision) {
		/* Our snapshot may be older than what key_due read: read the key again. */
		store_key_release(cur);
		cur = NULL;
		store_cache_replace(s, due->key_id, NULL);
		r = store_key_get(s, due->project, due->key_id, &cur);
	}
	if (r == 0 && cur->meta.revision == due->revision)
		r = fn(s, cur, arg, NULL);
	store_key_release(cur);
	if (r == KMS_E_STALE)
		store_cache_replace(s, due->key_id, NULL);
	/* Changed or gone since key_due: not ours to carry out now. */
	return r == KMS_E_STALE || r == KMS_E_KEY_NOT_FOUND ? 0 : r;
}

struct store_sweep_rotate {
	int64_t now_ms;
	bool rotated;
};

static int store_sweep_rotate_fn(struct store *s, const struct store_key *cur, void *arg,
				 struct store_key **out)
{
	struct store_sweep_rotate *sr = arg;
	int r;

	if (cur->nversions >= KMS_MAX_KEY_VERSIONS)
		return 0; /* at the version limit: stays on its last version */
	r = store_rotate_fn(s, cur, &sr->now_ms, out);
	sr->rotated = r == 0;
	return r;
}

/* One key found due (update_lock held). */
static int store_sweep_one(struct store *s, const struct store_key_meta *m, int64_t now_ms,
			   size_t *deleted, size_t *rotated)
{
	struct store_sweep_rotate sr = { now_ms, false };
	int r;

	if (m->state == STORE_KEY_PENDING_DELETION && m->deletion_ms > 0 &&
	    m->deletion_ms <= now_ms) {
		/* Only with the revision key_due read: a deletion cancelled since is not done. */
		r = s->ops->key_delete(s->be, m->key_id, m->revision);
		if (r == 0 || r == KMS_E_STALE || r == KMS_E_KEY_NOT_FOUND)
			store_cache_replace(s, m->key_id, NULL);
		if (r == 0) {
			(*deleted)++;
			s->wipe_pending = true;
		}
		return r == KMS_E_STALE || r == KMS_E_KEY_NOT_FOUND ? 0 : r;
	}
	if (strcmp(m->origin, "external") == 0)
		/* Imported material past its expiration time. */
		return m->expiration_ms > 0 && m->expiration_ms <= now_ms
			       ? store_due_change(s, m, store_material_clear_fn, NULL)
			       : 0;
	r = store_due_change(s, m, store_sweep_rotate_fn, &sr);
	if (sr.rotated)
		(*rotated)++;
	return r;
}

int store_sweep(struct store *s, int64_t now_ms, size_t *deleted, size_t *rotated)
{
	struct store_due due = { 0 };
	int r;

	*deleted = *rotated = 0;
	pthread_mutex_lock(&s->update_lock);
	r = s->ops->key_due(s->be, now_ms, store_collect_due, &due);
	/* One key that can't be handled (e.g. at its version limit) must not hold up the rest:
	 * go on, and report the first failure. */
	for (size_t i = 0; i < due.n; i++) {
		int e = store_sweep_one(s, &due.keys[i], now_ms, deleted, rotated);

		if (e < 0 && r == 0)
			r = e;
	}
	/* Once for all keys destroyed now, or again for an earlier deletion not yet wiped. */
	if (s->wipe_pending) {
		int e = store_wipe_deleted_locked(s);

		if (e < 0 && r == 0)
			r = e;
	}
	pthread_mutex_unlock(&s->update_lock);
	free(due.keys);
	return r;
}

int store_grant_create(struct store *s, const struct store_grant *g, unsigned max)
{
	return s->ops->grant_insert(s->be, g, max);
}

int store_grant_delete(struct store *s, const char *grant_id)
{
	return s->ops->grant_delete(s->be, grant_id);
}

int store_grant_list(struct store *s, const struct store_grant_filter *f, size_t offset,
		     size_t limit, store_grant_cb cb, void *arg, size_t *total)
{
	return s->ops->grant_list(s->be, f, offset, limit, cb, arg, total);
}

int store_grant_count_max(struct store *s, const char *project, size_t *n)
{
	return s->ops->grant_count_max(s->be, project, n);
}

int store_tag_set(struct store *s, const char *key_id, const char *tag_key, const char *tag_value,
		  unsigned max)
{
	return s->ops->tag_set(s->be, key_id, tag_key, tag_value, max);
}

int store_tag_delete(struct store *s, const char *key_id, const char *tag_key)
{
	return s->ops->tag_delete(s->be, key_id, tag_key);
}

int store_tag_list(struct store *s, const char *project, const char *key_id, store_tag_cb cb,
		   void *arg)
{
	return s->ops->tag_list(s->be, project, key_id, cb, arg);
}
