/* store_internal.h - what the store's own files share (store_state.c, store_cache.c,
 * store_keys.c, store_policy.c); nothing outside src/store includes it. */
#pragma once

#include <pthread.h>

#include "kms_store.h"
#include "store_backend.h"
#include "store_root.h"

/* A cached snapshot: in its hash bucket's chain and in the CLOCK ring of all entries. */
struct store_entry {
	struct store_key *key;
	struct store_entry *next;		   /* hash chain */
	struct store_entry *ring_prev, *ring_next; /* CLOCK order (cache_lock held for writing) */
	uint8_t referenced; /* used since the hand passed: set with a relaxed atomic by readers */
};

struct store_policy_project {
	char project[KMS_MAX_PROJECT_ID + 1];
	struct store_project_policy p;
};

struct store_policy_binding {
	char project[KMS_MAX_PROJECT_ID + 1];
	enum store_principal kind;
	uint32_t id;
	enum kms_role role;
};

struct store_policy_cgroup {
	char project[KMS_MAX_PROJECT_ID + 1];
	char path[STORE_CGROUP_PATH_MAX + 1];
	enum kms_role role;
};

struct store_policy {
	struct store_policy_project *projects;
	size_t nprojects;
	struct store_policy_binding *binds;
	size_t nbinds;
	struct store_policy_cgroup *cgroups;
	size_t ncgroups;
	char (*revoked)[17];
	size_t nrevoked;
	/* Rows that could not be read fail closed: their project is refused (all projects when
	 * the row names none we can tell); an unreadable token row revokes that token. */
	char (*refused)[KMS_MAX_PROJECT_ID + 1];
	size_t nrefused;
	bool refuse_all;
	size_t unreadable;
	char first_unreadable[128];
};

struct store {
	const struct store_backend_ops *ops;
	struct store_backend *be;
	char state_dir[2048];
	char *backend_uri;	 /* store_options.backend, NULL for the default */
	struct store_root *root; /* the root key's provider (store_root.h) */
	/* Root-key rotation (store_rotate.c). root_lock guards root, next_root, old_root and the
	 * checks: a daemon swaps them when another process commits a rotation. */
	pthread_rwlock_t root_lock;
	struct store_root *next_root; /* a rotation runs: new material is sealed under it */
	struct store_root *old_root;  /* the root a committed rotation retires, until destroyed */
	char root_check[72], next_check[72];
	uint32_t root_generation;
	int64_t roots_read_ms; /* monotonic: when the settings were last read */
	char *root_option, *pkcs11_module, *pkcs11_pin_file; /* store_options, to open others */
	char root_alt[1100]; /* where the root was found when not where the options say */
	char domain_id[33];
	char region[64];
	unsigned timeout_ms;
	pthread_rwlock_t cache_lock;
	pthread_mutex_t update_lock;  /* serialises changes to keys */
	pthread_mutex_t refresh_lock; /* serialises store_refresh */
	int64_t data_version;	      /* refresh_lock */
	pthread_rwlock_t policy_lock;
	struct store_policy policy;
	struct store_entry **buckets;
	size_t nbuckets;
	size_t nentries;
	size_t cache_limit;
	struct store_entry *hand; /* CLOCK: the next entry to look at for eviction */
	/* Bumped (cache_lock held for writing) whenever a snapshot is dropped as stale: a load that
	 * began before must not cache what it read (store_cache_publish). */
	uint64_t cache_gen;
	uint64_t cache_hits, cache_misses, load_errors; /* relaxed atomics: store_stats_get */
	uint64_t cache_evictions;			/* likewise */
	bool wipe_pending; /* deleted material may still be in the database files (update_lock) */
	/* A shared backend (store_shared): the change feed position and the freshness of the
	 * cache. seq: refresh_lock; fresh_ms (monotonic) and online: relaxed atomics. */
	int64_t seq;
	int64_t fresh_ms;
	bool online;
	int64_t offline_grace_ms;
};

/* store_cache.c */
/* Seal and unseal one version of a key's material under the root key; the AAD binds the key id
 * and version, so sealed blobs cannot be swapped (kms_store.h). */
KMS_WUR int store_seal_version(struct store *s, const char *key_id, uint32_t version,
			       const uint8_t material[CORE_KEY_BYTES],
			       struct store_sealed_version *v);
KMS_WUR int store_unseal_version(struct store *s, const char *key_id,
				 const struct store_sealed_version *v, uint8_t out[CORE_KEY_BYTES]);
/* Secure-heap memory for key material; when the secure heap is full, evict some cached
 * snapshots and try once more. */
void *store_material_alloc(struct store *s, size_t n);
/* A new snapshot (one reference) of meta with the n versions unsealed. */
KMS_WUR int store_snapshot_new(struct store *s, const struct store_key_meta *meta,
			       const struct store_sealed_version *versions, size_t n,
			       struct store_key **out);
/* A new snapshot with new metadata and the same material. */
KMS_WUR int store_snapshot_with_meta(struct store *s, const struct store_key *cur,
				     const struct store_key_meta *m, struct store_key **out);
/* The cache generation to pass to store_cache_publish, read before loading from the backend. */
uint64_t store_cache_gen(struct store *s);
/* Publish k, loaded from the backend when the generation was gen (taking over the caller's
 * reference); returns the snapshot to use, referenced: the cached one if it is as new as k,
 * else k (cached unless a snapshot was dropped as stale since gen). */
struct store_key *store_cache_publish(struct store *s, struct store_key *k, uint64_t gen);
/* Replace (or drop, when k is NULL) the cached snapshot of key_id. Takes over k's reference. */
void store_cache_replace(struct store *s, const char *key_id, struct store_key *k);
void store_cache_clear(struct store *s);
/* Publish k as the cached snapshot; *out (if out) gets a reference of its own. */
void store_publish_out(struct store *s, struct store_key *k, struct store_key **out);

/* At open, before the policy is loaded (store_cache.c): the cache is fresh, and the change feed's
 * position (or SQLite's data_version) is where store_refresh goes on from. */
KMS_WUR int store_fresh_start(struct store *s);

/* store_root_file.c: the state directory's 32-byte secret files. read: 0, KMS_E_KEY_NOT_FOUND
 * if absent, KMS_E_IO with why if unusable (not a regular file, open to others, not 32 bytes).
 * create: O_EXCL (errno EEXIST when another was first), file and dir fsynced before use. */
KMS_WUR int store_secret_file_read(const char *path, uint8_t out[32], char *why, size_t why_len);
KMS_WUR int store_secret_file_create(const char *dir, const char *path, uint8_t out[32]);
/* Destroy a secret file (the root key's, a state secret's moved into the settings): its bytes
 * overwritten in place and fsynced, then unlinked and dir fsynced. 0 if it is not there; why
 * names what (e.g. "root key") and the path otherwise. */
KMS_WUR int store_secret_file_destroy(const char *path, const char *dir, const char *what,
				      char *why, size_t why_len);

/* store_session.c: store copy: every remembered token binding of src, as it is (sealed, same
 * ids: the same root key unseals it), into dst. */
KMS_WUR int store_session_copy(struct store *src, struct store *dst);
/* The raw rows of host (NULL: every host), gathered first: a backend may hold its lock while it
 * hands rows over, and the callers write or delete rows as they go. free(l->v) when done. */
struct store_session_rows {
	struct store_session *v;
	size_t n, cap;
};
KMS_WUR int store_session_rows(struct store *s, const char *host, struct store_session_rows *l);
/* The label a row's claims are sealed under (store_seal_opaque): the prefix and its id. */
KMS_WUR int store_session_label(const char *id, char *out, size_t cap);

/* store_rotate.c: the roots of a process while rotations come and go. */
/* The label of the import digest key, kept as the state secret "import-digest.key" once a
 * rotation began (the digests stored with keys must still verify after it). */
#define STORE_IMPORT_DIGEST_LABEL "kmsfs import digest key v1"
/* Seal under the next root while a rotation runs, else under the root. */
KMS_WUR int store_roots_seal(struct store *s, const void *aad, size_t aad_len, const uint8_t *in,
			     size_t n, uint8_t *out, size_t cap, size_t *out_len);
/* Unseal under whichever root the tag verifies; before failing, read the settings again. */
KMS_WUR int store_roots_unseal(struct store *s, const void *aad, size_t aad_len, const uint8_t *in,
			       size_t n, uint8_t *out, size_t cap, size_t *out_len);
KMS_WUR int store_roots_seal_opaque(struct store *s, const char *label, const uint8_t *in, size_t n,
				    uint8_t *out, size_t cap, size_t *out_len);
KMS_WUR int store_roots_unseal_opaque(struct store *s, const char *label, const uint8_t *in,
				      size_t n, uint8_t *out, size_t cap, size_t *out_len);
/* A root-derived key that must survive rotations: the state secret name if it exists, else
 * derived from the root under label. */
KMS_WUR int store_roots_derive_kept(struct store *s, const char *name, const char *label,
				    uint8_t out[CORE_KEY_BYTES]);
/* At open, with the result of store_load_root: find the root where a rotation left it, open
 * the next one while a rotation runs. Returns loaded or 0. */
KMS_WUR int store_roots_open(struct store *s, int loaded, char *why, size_t why_len);
/* Re-read the rotation settings (store_refresh when something changed). */
KMS_WUR int store_roots_reload(struct store *s);

/* Tests only: how long a rotation lets other processes notice a setting (ms), and a point at
 * which store_root_rotate stops as if killed there (KMS_E_BUSY; 0: none). */
extern int store_rotate_settle_ms;
extern int store_rotate_stop_at;
enum {
	STORE_ROTATE_STOP_CREATED = 1, /* the next root exists, nothing announced */
	STORE_ROTATE_STOP_ANNOUNCED,   /* its location and generation written, not its check */
	STORE_ROTATE_STOP_STARTED,     /* announced (root_next_check) */
	STORE_ROTATE_STOP_RESEAL,      /* half the keys re-sealed */
	STORE_ROTATE_STOP_RESEALED,    /* everything re-sealed and verified, not committed */
	STORE_ROTATE_STOP_COMMITTED,   /* root_check is the new root's */
	STORE_ROTATE_STOP_GENERATION,  /* root_generation written */
	STORE_ROTATE_STOP_DESTROYED,   /* the old root destroyed */
	STORE_ROTATE_STOP_RENAMED,     /* root.key.next renamed to root.key */
	STORE_ROTATE_STOP_LOCATED,     /* root_location written, next_* not cleared */
	STORE_ROTATE_STOP_LAST = STORE_ROTATE_STOP_LOCATED,
};

/* store_state.c: keep: store value as the secret name unless there is one. */
KMS_WUR int store_state_secret_keep(struct store *s, const char *name, const uint8_t value[32]);
/* A state secret NAME (32 bytes) lives in the settings under "secret:NAME" as the hex of its
 * store_seal_opaque under the label "kmsfs state secret NAME": both, for NAME (KMS_E_BAD_PARAM
 * for a name that is too long or holds a '/'). */
#define STORE_SECRET_SEALED	 (32 + CORE_SEALED_OVERHEAD)
#define STORE_SECRET_HEX	 (2 * STORE_SECRET_SEALED + 2) /* the setting, with room to spare */
#define STORE_SECRET_SETTING_MAX 128
#define STORE_SECRET_LABEL_MAX	 160
KMS_WUR int store_secret_setting(const char *name, char setting[STORE_SECRET_SETTING_MAX],
				 char label[STORE_SECRET_LABEL_MAX]);

/* store_policy.c */
KMS_WUR int store_policy_load(struct store *s);
/* Does the loaded policy of s hold exactly this cgroup binding (store copy: nothing to write)? */
bool store_policy_has_cgroup(struct store *s, const char *project, const char *path,
			     enum kms_role role);
void store_policy_free(struct store_policy *p);
