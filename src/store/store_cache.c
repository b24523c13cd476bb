/* The snapshot cache: key_id -> immutable snapshot, at most cache_limit of them. The hot path (a
 * data-key request) takes a read lock, bumps a reference, marks the entry used and leaves: no
 * database read once a key has been used. Eviction is CLOCK (second chance): the hand passes over
 * entries used since it last came by and evicts the first that was not. With a shared backend the
 * cache is also only served while it is fresh (store_refresh), and refresh drops what changed. */
#include "store_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/kms_err.h"
#include "common/kms_secmem.h"
#include "common/kms_time.h"

/* With offline_grace_ms 0, how old the last refresh may be for a cached key to be served (the
 * watcher refreshes at least every second). */
#define STORE_FRESH_MS 1500

void store_key_release(struct store_key *k)
{
	if (!k || __atomic_sub_fetch(&k->refs, 1, __ATOMIC_ACQ_REL) > 0)
		return;
	kms_secret_free(k->material, (size_t)k->nversions * CORE_KEY_BYTES);
	free(k);
}

/* AAD of sealed material: the key id and version it belongs to, so sealed blobs can't be swapped. */
static void store_material_aad(const char *key_id, uint32_t version,
			       uint8_t aad[CORE_KEY_ID_BYTES + 4])
{
	memcpy(aad, key_id, CORE_KEY_ID_BYTES);
	aad[CORE_KEY_ID_BYTES] = (uint8_t)version;
	aad[CORE_KEY_ID_BYTES + 1] = (uint8_t)(version >> 8);
	aad[CORE_KEY_ID_BYTES + 2] = (uint8_t)(version >> 16);
	aad[CORE_KEY_ID_BYTES + 3] = (uint8_t)(version >> 24);
}

int store_seal_version(const struct store *s, const char *key_id, uint32_t version,
		       const uint8_t material[CORE_KEY_BYTES], struct store_sealed_version *v)
{
	uint8_t aad[CORE_KEY_ID_BYTES + 4];

	v->version = version;
	store_material_aad(key_id, version, aad);
	return store_root_seal(s->root, aad, sizeof(aad), material, CORE_KEY_BYTES, v->sealed,
			       sizeof(v->sealed), &v->sealed_len);
}

int store_unseal_version(const struct store *s, const char *key_id,
			 const struct store_sealed_version *v, uint8_t out[CORE_KEY_BYTES])
{
	uint8_t aad[CORE_KEY_ID_BYTES + 4];
	size_t n = 0;
	int r;

	if (strlen(key_id) != CORE_KEY_ID_BYTES)
		return KMS_E_IO;
	store_material_aad(key_id, v->version, aad);
	r = store_root_unseal(s->root, aad, sizeof(aad), v->sealed, v->sealed_len, out,
			      CORE_KEY_BYTES, &n);
	if (r < 0 || n != CORE_KEY_BYTES) {
		kms_wipe(out, CORE_KEY_BYTES);
		/* A token out of reach is an outage (KMS.0102 too), not damage. */
		return r == KMS_E_STORE_UNAVAILABLE ? r : KMS_E_IO;
	}
	return 0;
}

struct store_load_ctx {
	const struct store *s;
	struct store_key_meta *meta;
	struct store_sealed_version versions[64];
	size_t n;
};

static int store_collect_version(const struct store_sealed_version *v, void *arg)
{
	struct store_load_ctx *c = arg;

	if (c->n >= KMS_ARRAY_SIZE(c->versions) || v->version != c->n)
		return KMS_E_IO; /* versions must be 0..n-1 with no gaps */
	c->versions[c->n++] = *v;
	return 0;
}

/* ---- the CLOCK ring and the hash chains (cache_lock held for writing) ---- */

static struct store_entry *store_cache_find_locked(struct store *s, const char *key_id)
{
	for (struct store_entry *e = s->buckets[(size_t)kms_fnv1a(key_id) % s->nbuckets]; e;
	     e = e->next)
		if (strcmp(e->key->meta.key_id, key_id) == 0)
			return e;
	return NULL;
}

static void store_cache_grow_locked(struct store *s)
{
	size_t nb = s->nbuckets * 2;
	struct store_entry **b = calloc(nb, sizeof(*b));

	if (!b)
		return; /* keep the old table: correct, only slower */
	for (size_t i = 0; i < s->nbuckets; i++) {
		struct store_entry *e = s->buckets[i], *next;

		for (; e; e = next) {
			size_t h = (size_t)kms_fnv1a(e->key->meta.key_id) % nb;

			next = e->next;
			e->next = b[h];
			b[h] = e;
		}
	}
	free(s->buckets);
	s->buckets = b;
	s->nbuckets = nb;
}

/* Take e out of its chain and the ring; it keeps its snapshot, for the caller to release. */
static void store_entry_unlink_locked(struct store *s, struct store_entry *e)
{
	struct store_entry **pp = &s->buckets[(size_t)kms_fnv1a(e->key->meta.key_id) % s->nbuckets];

	while (*pp != e)
		pp = &(*pp)->next;
	*pp = e->next;
	if (e->ring_next == e) {
		s->hand = NULL;
	} else {
		if (s->hand == e)
			s->hand = e->ring_next;
		e->ring_prev->ring_next = e->ring_next;
		e->ring_next->ring_prev = e->ring_prev;
	}
	e->next = NULL;
	s->nentries--;
}

/* The entry the CLOCK hand evicts: the first not used since the hand last passed it. Ends
 * within two rounds: readers cannot mark entries while the lock is held for writing. */
static struct store_entry *store_clock_victim_locked(struct store *s)
{
	for (;;) {
		struct store_entry *e = s->hand;

		s->hand = e->ring_next;
		if (!__atomic_exchange_n(&e->referenced, 0, __ATOMIC_RELAXED))
			return e;
	}
}

/* Evict until at most keep entries are left; the evicted go onto *dead (chained by next) for
 * store_entries_free once the lock is released. */
static void store_cache_evict_locked(struct store *s, size_t keep, struct store_entry **dead)
{
	while (s->nentries > keep && s->hand) {
		struct store_entry *e = store_clock_victim_locked(s);

		store_entry_unlink_locked(s, e);
		e->next = *dead;
		*dead = e;
		__atomic_add_fetch(&s->cache_evictions, 1, __ATOMIC_RELAXED);
	}
}

/* Release the cache's references of entries taken out (a reader's own stays valid). */
static void store_entries_free(struct store_entry *dead)
{
	while (dead) {
		struct store_entry *next = dead->next;

		store_key_release(dead->key);
		free(dead);
		dead = next;
	}
}

/* Cache k (taking over one reference of the caller's), evicting to stay within the limit;
 * false if there was no memory for the entry. */
static bool store_cache_insert_locked(struct store *s, struct store_key *k,
				      struct store_entry **dead)
{
	struct store_entry *e = calloc(1, sizeof(*e));
	size_t h;

	if (!e)
		return false;
	store_cache_evict_locked(s, s->cache_limit - 1, dead);
	if (s->nentries >= s->nbuckets)
		store_cache_grow_locked(s);
	h = (size_t)kms_fnv1a(k->meta.key_id) % s->nbuckets;
	e->key = k;
	e->next = s->buckets[h];
	s->buckets[h] = e;
	/* Just behind the hand: the last entry it comes to. */
	if (!s->hand) {
		e->ring_prev = e->ring_next = e;
		s->hand = e;
	} else {
		e->ring_next = s->hand;
		e->ring_prev = s->hand->ring_prev;
		e->ring_prev->ring_next = e;
		s->hand->ring_prev = e;
	}
	s->nentries++;
	return true;
}

/* Make room in the secure heap: evict a quarter of the cache (at least one entry). */
static void store_cache_shrink(struct store *s)
{
	struct store_entry *dead = NULL;

	pthread_rwlock_wrlock(&s->cache_lock);
	store_cache_evict_locked(s, s->nentries ? s->nentries - s->nentries / 4 - 1 : 0, &dead);
	pthread_rwlock_unlock(&s->cache_lock);
	store_entries_free(dead);
}

void *store_material_alloc(struct store *s, size_t n)
{
	void *p = kms_secret_alloc(n);

	if (!p) {
		store_cache_shrink(s);
		p = kms_secret_alloc(n);
	}
	return p;
}

int store_snapshot_new(struct store *s, const struct store_key_meta *meta,
		       const struct store_sealed_version *versions, size_t n,
		       struct store_key **out)
{
	struct store_key *k;
	int r;

	*out = NULL;
	/* Only a key awaiting the import of its material may have none. */
	if (n == 0 && strcmp(meta->origin, "external") != 0)
		return KMS_E_IO;
	k = calloc(1, sizeof(*k));
	if (!k)
		return KMS_E_NOMEM;
	k->meta = *meta;
	k->meta.has_material = n > 0;
	k->refs = 1;
	if (n == 0) {
		*out = k;
		return 0;
	}
	k->material = store_material_alloc(s, n * CORE_KEY_BYTES);
	if (!k->material) {
		free(k);
		return KMS_E_NOMEM;
	}
	k->nversions = (uint32_t)n;
	for (size_t i = 0; i < n; i++) {
		r = store_unseal_version(s, meta->key_id, &versions[i],
					 k->material + i * CORE_KEY_BYTES);
		if (r < 0) {
			store_key_release(k);
			return r;
		}
	}
	*out = k;
	return 0;
}

uint64_t store_cache_gen(struct store *s)
{
	uint64_t gen;

	pthread_rwlock_rdlock(&s->cache_lock);
	gen = s->cache_gen;
	pthread_rwlock_unlock(&s->cache_lock);
	return gen;
}

struct store_key *store_cache_publish(struct store *s, struct store_key *k, uint64_t gen)
{
	struct store_entry *e, *dead = NULL;
	struct store_key *old = NULL, *use = k;

	pthread_rwlock_wrlock(&s->cache_lock);
	e = store_cache_find_locked(s, k->meta.key_id);
	if (e && e->key->meta.revision >= k->meta.revision) {
		/* Someone loaded it first, or changed it since: keep theirs, drop ours. */
		use = e->key;
		old = k;
	} else if (gen != s->cache_gen) {
		/* A snapshot was dropped as stale since our load began: what we read may predate
		 * that change. Use it for this request only (the caller's reference, no other). */
		use = NULL;
	} else if (e) {
		old = e->key;
		e->key = k;
	} else if (!store_cache_insert_locked(s, k, &dead)) {
		use = NULL; /* can't cache: correct, only slower */
	}
	if (use)
		__atomic_add_fetch(&use->refs, 1, __ATOMIC_RELAXED);
	pthread_rwlock_unlock(&s->cache_lock);
	store_key_release(old);
	store_entries_free(dead);
	return use ? use : k;
}

/* May cached snapshots be served? 0 yes; 1 no, read the key from the backend (nobody refreshed
 * the cache lately, though the backend was reachable at the last try); KMS_E_STORE_UNAVAILABLE
 * when a shared backend could not be reached and the offline grace has run out. */
static int store_cache_usable(struct store *s)
{
	int64_t age, limit;

	if (!store_shared(s))
		return 0;
	age = kms_time_mono_ms() - __atomic_load_n(&s->fresh_ms, __ATOMIC_RELAXED);
	limit = s->offline_grace_ms > 0 ? s->offline_grace_ms : STORE_FRESH_MS;
	if (age <= limit)
		return 0;
	return __atomic_load_n(&s->online, __ATOMIC_RELAXED) ? 1 : KMS_E_STORE_UNAVAILABLE;
}

/* Read a key from the backend and publish it. */
static int store_key_read(struct store *s, const char *project, const char *key_id,
			  const char *alias, struct store_key **out)
{
	struct store_key_meta meta;
	struct store_load_ctx *c;
	struct store_key *k = NULL;
	uint64_t gen;
	int r;

	c = calloc(1, sizeof(*c));
	if (!c)
		return KMS_E_NOMEM;
	c->s = s;
	c->meta = &meta;
	gen = store_cache_gen(s);
	r = s->ops->key_load(s->be, project, key_id, alias, &meta, store_collect_version, c);
	if (r < 0 && r != KMS_E_KEY_NOT_FOUND)
		__atomic_add_fetch(&s->load_errors, 1, __ATOMIC_RELAXED);
	if (r >= 0)
		r = store_snapshot_new(s, &meta, c->versions, c->n, &k);
	kms_wipe(c, sizeof(*c));
	free(c);
	if (r < 0)
		return r;
	*out = store_cache_publish(s, k, gen);
	return 0;
}

/* store_key_read for a request: a shared backend known to be unreachable fails now rather than
 * after its timeout. */
static int store_key_load(struct store *s, const char *project, const char *key_id,
			  const char *alias, struct store_key **out)
{
	if (store_shared(s) && !__atomic_load_n(&s->online, __ATOMIC_RELAXED))
		return KMS_E_STORE_UNAVAILABLE;
	return store_key_read(s, project, key_id, alias, out);
}

/* Hand the caller's reference k over as *out if the key is in project (a key id of another
 * project is "no such key" there). */
static int store_key_in_project(struct store_key *k, const char *project, struct store_key **out)
{
	if (!k || strcmp(k->meta.project, project) != 0) { /* !k: for the analyzer */
		store_key_release(k);
		return KMS_E_KEY_NOT_FOUND;
	}
	*out = k;
	return 0;
}

int store_key_get(struct store *s, const char *project, const char *key_id, struct store_key **out)
{
	struct store_entry *e;
	struct store_key *k = NULL;
	int use = store_cache_usable(s), r;

	*out = NULL;
	if (use < 0)
		return use;
	pthread_rwlock_rdlock(&s->cache_lock);
	e = use == 0 ? store_cache_find_locked(s, key_id) : NULL;
	if (e) {
		k = e->key;
		__atomic_add_fetch(&k->refs, 1, __ATOMIC_RELAXED);
		/* Only written when it changes: hits on a hot key share the cache line. */
		if (!__atomic_load_n(&e->referenced, __ATOMIC_RELAXED))
			__atomic_store_n(&e->referenced, 1, __ATOMIC_RELAXED);
	}
	pthread_rwlock_unlock(&s->cache_lock);
	__atomic_add_fetch(k ? &s->cache_hits : &s->cache_misses, 1, __ATOMIC_RELAXED);
	if (!k) {
		r = store_key_load(s, project, key_id, NULL, &k);
		/* Gone from the backend (deleted by another host): gone from the cache too. */
		if (r == KMS_E_KEY_NOT_FOUND && use == 1)
			store_cache_replace(s, key_id, NULL);
		if (r < 0)
			return r;
	}
	return store_key_in_project(k, project, out);
}

int store_key_get_by_alias(struct store *s, const char *project, const char *alias,
			   struct store_key **out)
{
	*out = NULL;
	return store_key_load(s, project, NULL, alias, out);
}

int store_key_get_latest(struct store *s, const char *project, const char *key_id,
			 struct store_key **out)
{
	struct store_key *k = NULL;
	int r;

	*out = NULL;
	r = store_key_load(s, project, key_id, NULL, &k);
	return r < 0 ? r : store_key_in_project(k, project, out);
}

const uint8_t *store_key_material(const struct store_key *k, uint32_t version)
{
	if (!k || version >= k->nversions)
		return NULL;
	return k->material + (size_t)version * CORE_KEY_BYTES;
}

/* Replace (or drop, when k is NULL) the cached snapshot of key_id. Takes over k's reference. */
void store_cache_replace(struct store *s, const char *key_id, struct store_key *k)
{
	struct store_entry *e, *dead = NULL;
	struct store_key *old = NULL;

	pthread_rwlock_wrlock(&s->cache_lock);
	e = store_cache_find_locked(s, key_id);
	if (e && k) {
		old = e->key;
		e->key = k;
	} else if (e) {
		store_entry_unlink_locked(s, e);
		dead = e;
	} else if (k && !store_cache_insert_locked(s, k, &dead)) {
		old = k; /* can't cache: correct, only slower */
	}
	if (!k)
		s->cache_gen++; /* loads that began before must not cache what they read */
	pthread_rwlock_unlock(&s->cache_lock);
	store_key_release(old);
	store_entries_free(dead);
}

void store_cache_clear(struct store *s)
{
	struct store_entry *dead = NULL;

	pthread_rwlock_wrlock(&s->cache_lock);
	for (size_t i = 0; i < s->nbuckets; i++) {
		while (s->buckets[i]) {
			struct store_entry *e = s->buckets[i];

			s->buckets[i] = e->next;
			e->next = dead;
			dead = e;
		}
	}
	s->nentries = 0;
	s->hand = NULL;
	s->cache_gen++;
	pthread_rwlock_unlock(&s->cache_lock);
	store_entries_free(dead);
}

/* A new snapshot with new metadata and the same material. */
int store_snapshot_with_meta(struct store *s, const struct store_key *cur,
			     const struct store_key_meta *m, struct store_key **out)
{
	struct store_key *k = calloc(1, sizeof(*k));
	size_t n = (size_t)cur->nversions * CORE_KEY_BYTES;

	*out = NULL;
	if (!k)
		return KMS_E_NOMEM;
	k->material = n ? store_material_alloc(s, n) : NULL;
	if (n && !k->material) {
		free(k);
		return KMS_E_NOMEM;
	}
	if (n)
		memcpy(k->material, cur->material, n);
	k->nversions = cur->nversions;
	k->meta = *m;
	k->meta.has_material = cur->nversions > 0;
	k->refs = 1;
	*out = k;
	return 0;
}

void store_publish_out(struct store *s, struct store_key *k, struct store_key **out)
{
	if (out) {
		__atomic_add_fetch(&k->refs, 1, __ATOMIC_RELAXED);
		*out = k;
	}
	store_cache_replace(s, k->meta.key_id, k);
}

/* ---- freshness: what other processes and hosts changed ---- */

int store_fresh_start(struct store *s)
{
	int r = 0;

	__atomic_store_n(&s->fresh_ms, kms_time_mono_ms(), __ATOMIC_RELAXED);
	__atomic_store_n(&s->online, true, __ATOMIC_RELAXED);
	/* Where store_refresh goes on from: what is committed after this is noticed. */
	if (s->ops->changes_since)
		r = s->ops->changes_since(s->be, -1, NULL, NULL, &s->seq);
	else
		r = s->ops->data_version(s->be, &s->data_version);
	return r;
}

/* Changed keys that were cached are read again at once (at most this many per refresh; the
 * others are only dropped): a key in use stays cached, also through an outage that follows,
 * and a change this host made itself, which comes back through the feed, costs one read. */
#define STORE_REFRESH_RELOADS 256

struct store_refresh_ctx {
	struct store *s;
	bool policy, changed;
	struct {
		char project[KMS_MAX_PROJECT_ID + 1];
		char key_id[KMS_KEY_ID_LEN + 1];
	} reload[STORE_REFRESH_RELOADS];
	size_t nreload;
};

/* Drop key_id's snapshot as stale (loads under way do not cache what they read); whether one
 * was cached, and its project. */
static bool store_cache_drop(struct store *s, const char *key_id,
			     char project[KMS_MAX_PROJECT_ID + 1])
{
	struct store_entry *e;

	pthread_rwlock_wrlock(&s->cache_lock);
	e = store_cache_find_locked(s, key_id);
	if (e) {
		snprintf(project, KMS_MAX_PROJECT_ID + 1, "%s", e->key->meta.project);
		store_entry_unlink_locked(s, e);
	}
	s->cache_gen++;
	pthread_rwlock_unlock(&s->cache_lock);
	store_entries_free(e);
	return e != NULL;
}

static void store_refresh_key(struct store_refresh_ctx *c, const char *id)
{
	char project[KMS_MAX_PROJECT_ID + 1];

	if (!store_cache_drop(c->s, id, project) || c->nreload == STORE_REFRESH_RELOADS)
		return;
	for (size_t i = 0; i < c->nreload; i++)
		if (strcmp(c->reload[i].key_id, id) == 0)
			return;
	snprintf(c->reload[c->nreload].project, sizeof(c->reload[0].project), "%s", project);
	snprintf(c->reload[c->nreload].key_id, sizeof(c->reload[0].key_id), "%s", id);
	c->nreload++;
}

static int store_refresh_change(enum store_change kind, const char *id, void *arg)
{
	struct store_refresh_ctx *c = arg;

	if (kind == STORE_CHANGE_KEY)
		store_refresh_key(c, id);
	else if (kind == STORE_CHANGE_POLICY)
		c->policy = true;
	else
		return 0; /* grants, tags, settings: nothing cached */
	c->changed = true;
	return 0;
}

/* Read the changed keys that were cached again (a key gone meanwhile stays gone). */
static int store_refresh_reload(struct store_refresh_ctx *c)
{
	int r = 0;

	for (size_t i = 0; i < c->nreload && r == 0; i++) {
		struct store_key *k = NULL;

		r = store_key_read(c->s, c->reload[i].project, c->reload[i].key_id, NULL, &k);
		store_key_release(k);
		if (r == KMS_E_KEY_NOT_FOUND)
			r = 0;
	}
	return r;
}

/* With a change feed: drop the keys that changed since the last call and reload the policy if
 * it changed. When the feed no longer holds everything missed (a long outage), everything
 * cached goes. refresh_lock held. */
static int store_refresh_feed(struct store *s, bool *changed)
{
	struct store_refresh_ctx *c = calloc(1, sizeof(*c));
	int64_t latest = s->seq;
	int r;

	if (!c)
		return KMS_E_NOMEM;
	c->s = s;
	r = s->ops->changes_since(s->be, s->seq, store_refresh_change, c, &latest);
	if (r == KMS_E_STALE) {
		/* The position first: what is cleared now is reloaded as of then or later. */
		r = s->ops->changes_since(s->be, -1, NULL, NULL, &latest);
		if (r == 0)
			store_cache_clear(s);
		c->policy = c->changed = r == 0;
		c->nreload = 0;
	}
	if (r == 0)
		r = store_refresh_reload(c);
	if (r == 0 && c->policy)
		r = store_policy_load(s);
	if (r == 0)
		s->seq = latest;
	*changed = c->changed;
	free(c);
	return r;
}

/* Without one (SQLite): the whole cache goes when another connection committed anything.
 * refresh_lock held. */
static int store_refresh_version(struct store *s, bool *changed)
{
	int64_t v = 0;
	int r = s->ops->data_version(s->be, &v);

	if (r < 0 || v == s->data_version)
		return r;
	if (s->data_version != 0) {
		store_cache_clear(s);
		*changed = true;
	}
	s->data_version = v;
	return store_policy_load(s);
}

int store_refresh(struct store *s, bool *changed)
{
	int64_t t0 = kms_time_mono_ms();
	int r;

	*changed = false;
	pthread_mutex_lock(&s->refresh_lock);
	r = s->ops->changes_since ? store_refresh_feed(s, changed)
				  : store_refresh_version(s, changed);
	if (r == 0) {
		/* Caught up with everything committed before t0. */
		__atomic_store_n(&s->fresh_ms, t0, __ATOMIC_RELAXED);
		__atomic_store_n(&s->online, true, __ATOMIC_RELAXED);
	} else if (r == KMS_E_STORE_UNAVAILABLE) {
		__atomic_store_n(&s->online, false, __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&s->refresh_lock);
	return r;
}

int store_watch(struct store *s, int timeout_ms)
{
	return s->ops->watch ? s->ops->watch(s->be, timeout_ms) : 0;
}

void store_stats_get(struct store *s, struct store_stats *out)
{
	bool shared = store_shared(s);

	memset(out, 0, sizeof(*out));
	pthread_rwlock_rdlock(&s->cache_lock);
	out->cached_keys = s->nentries;
	out->cache_limit = s->cache_limit;
	pthread_rwlock_unlock(&s->cache_lock);
	out->cache_hits = __atomic_load_n(&s->cache_hits, __ATOMIC_RELAXED);
	out->cache_misses = __atomic_load_n(&s->cache_misses, __ATOMIC_RELAXED);
	out->cache_evictions = __atomic_load_n(&s->cache_evictions, __ATOMIC_RELAXED);
	out->errors = __atomic_load_n(&s->load_errors, __ATOMIC_RELAXED);
	out->reconnects = s->ops->reconnects && s->be ? s->ops->reconnects(s->be) : 0;
	out->online = !shared || __atomic_load_n(&s->online, __ATOMIC_RELAXED);
	out->fresh_age_ms =
		shared ? kms_time_mono_ms() - __atomic_load_n(&s->fresh_ms, __ATOMIC_RELAXED) : 0;
}
