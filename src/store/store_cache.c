/* The snapshot cache: key_id -> immutable snapshot. The hot path (a data-key request) takes a
 * read lock, bumps a reference and leaves: no database read once a key has been used. */
#include "store_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/kms_err.h"
#include "common/kms_secmem.h"

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
	return core_seal(s->root_key, aad, sizeof(aad), material, CORE_KEY_BYTES, v->sealed,
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
	r = core_unseal(s->root_key, aad, sizeof(aad), v->sealed, v->sealed_len, out,
			CORE_KEY_BYTES, &n);
	if (r < 0 || n != CORE_KEY_BYTES) {
		kms_wipe(out, CORE_KEY_BYTES);
		return KMS_E_IO;
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

int store_snapshot_new(const struct store *s, const struct store_key_meta *meta,
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
	k->material = kms_secret_alloc(n * CORE_KEY_BYTES);
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

static struct store_key *store_cache_find_locked(struct store *s, const char *key_id)
{
	for (struct store_entry *e = s->buckets[(size_t)kms_fnv1a(key_id) % s->nbuckets]; e;
	     e = e->next)
		if (strcmp(e->key->meta.key_id, key_id) == 0)
			return e->key;
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

/* Publish k (taking over the caller's reference); returns the snapshot now cached, referenced. */
struct store_key *store_cache_publish(struct store *s, struct store_key *k)
{
	struct store_entry *e;
	struct store_key *cur;

	pthread_rwlock_wrlock(&s->cache_lock);
	cur = store_cache_find_locked(s, k->meta.key_id);
	if (cur) {
		/* Someone loaded it first: keep theirs, drop ours. */
		__atomic_add_fetch(&cur->refs, 1, __ATOMIC_RELAXED);
		pthread_rwlock_unlock(&s->cache_lock);
		store_key_release(k);
		return cur;
	}
	e = malloc(sizeof(*e));
	if (e) {
		size_t h;

		if (s->nentries >= s->nbuckets)
			store_cache_grow_locked(s);
		h = (size_t)kms_fnv1a(k->meta.key_id) % s->nbuckets;
		e->key = k;
		e->next = s->buckets[h];
		s->buckets[h] = e;
		s->nentries++;
		__atomic_add_fetch(&k->refs, 1, __ATOMIC_RELAXED); /* the cache's own reference */
	}
	pthread_rwlock_unlock(&s->cache_lock);
	return k;
}

static int store_key_load(struct store *s, const char *project, const char *key_id,
			  const char *alias, struct store_key **out)
{
	struct store_key_meta meta;
	struct store_load_ctx *c;
	struct store_key *k = NULL;
	int r;

	c = calloc(1, sizeof(*c));
	if (!c)
		return KMS_E_NOMEM;
	c->s = s;
	c->meta = &meta;
	r = s->ops->key_load(s->be, project, key_id, alias, &meta, store_collect_version, c);
	if (r < 0 && r != KMS_E_KEY_NOT_FOUND)
		__atomic_add_fetch(&s->load_errors, 1, __ATOMIC_RELAXED);
	if (r >= 0)
		r = store_snapshot_new(s, &meta, c->versions, c->n, &k);
	kms_wipe(c, sizeof(*c));
	free(c);
	if (r < 0)
		return r;
	*out = store_cache_publish(s, k);
	return 0;
}

int store_key_get(struct store *s, const char *project, const char *key_id, struct store_key **out)
{
	struct store_key *k;

	*out = NULL;
	pthread_rwlock_rdlock(&s->cache_lock);
	k = store_cache_find_locked(s, key_id);
	if (k)
		__atomic_add_fetch(&k->refs, 1, __ATOMIC_RELAXED);
	pthread_rwlock_unlock(&s->cache_lock);
	__atomic_add_fetch(k ? &s->cache_hits : &s->cache_misses, 1, __ATOMIC_RELAXED);
	if (!k) {
		int r = store_key_load(s, project, key_id, NULL, &k);

		if (r < 0)
			return r;
	}
	if (strcmp(k->meta.project, project) != 0) {
		store_key_release(k);
		return KMS_E_KEY_NOT_FOUND;
	}
	*out = k;
	return 0;
}

int store_key_get_by_alias(struct store *s, const char *project, const char *alias,
			   struct store_key **out)
{
	*out = NULL;
	return store_key_load(s, project, NULL, alias, out);
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
	struct store_entry **pp, *e;
	struct store_key *old = NULL;

	pthread_rwlock_wrlock(&s->cache_lock);
	for (pp = &s->buckets[(size_t)kms_fnv1a(key_id) % s->nbuckets]; (e = *pp) != NULL;
	     pp = &e->next)
		if (strcmp(e->key->meta.key_id, key_id) == 0)
			break;
	if (e && k) {
		old = e->key;
		e->key = k;
	} else if (e) {
		old = e->key;
		*pp = e->next;
		free(e);
		s->nentries--;
	} else if (k) {
		e = malloc(sizeof(*e));
		if (e) {
			e->key = k;
			e->next = s->buckets[(size_t)kms_fnv1a(key_id) % s->nbuckets];
			s->buckets[(size_t)kms_fnv1a(key_id) % s->nbuckets] = e;
			s->nentries++;
		} else {
			old = k; /* can't cache: correct, only slower */
		}
	}
	pthread_rwlock_unlock(&s->cache_lock);
	store_key_release(old);
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
	pthread_rwlock_unlock(&s->cache_lock);
	while (dead) {
		struct store_entry *next = dead->next;

		store_key_release(dead->key);
		free(dead);
		dead = next;
	}
}

/* A new snapshot with new metadata and the same material. */
int store_snapshot_with_meta(const struct store_key *cur, const struct store_key_meta *m,
			     struct store_key **out)
{
	struct store_key *k = calloc(1, sizeof(*k));
	size_t n = (size_t)cur->nversions * CORE_KEY_BYTES;

	*out = NULL;
	if (!k)
		return KMS_E_NOMEM;
	k->material = n ? kms_secret_alloc(n) : NULL;
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

void store_stats_get(struct store *s, struct store_stats *out)
{
	memset(out, 0, sizeof(*out));
	pthread_rwlock_rdlock(&s->cache_lock);
	out->cached_keys = s->nentries;
	pthread_rwlock_unlock(&s->cache_lock);
	out->cache_hits = __atomic_load_n(&s->cache_hits, __ATOMIC_RELAXED);
	out->cache_misses = __atomic_load_n(&s->cache_misses, __ATOMIC_RELAXED);
	out->errors = __atomic_load_n(&s->load_errors, __ATOMIC_RELAXED);
	/* SQLite is a local file: nothing to reconnect to. */
	out->reconnects = 0;
}
