/* kms_store.h - the durable key store: projects, keys, sealed key material, aliases.
 *
 * Contract:
 * - Every change is durable (fsync'd by the backend) before the call returns 0, so a caller
 *   may announce a new key as soon as store_key_create() succeeds (design.md section 6).
 * - Key material exists in plaintext only inside struct store_key snapshots, in the secure heap;
 *   on disk it is sealed with AES-256-GCM under the root key, AAD = key_id || u32 LE version.
 * - A snapshot is immutable and reference counted: readers never lock while they use it; a change
 *   publishes a new snapshot. store_key_release() wipes the material of the last reference.
 * - The store never logs; errors are KMS_E_* values, and store_open() explains failures in text.
 * - Backends (SQLite, PostgreSQL) implement struct store_backend_ops (store_backend.h);
 *   nothing above this header knows which one is in use.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/kms_common.h"
#include "common/kms_limits.h"
#include "common/kms_role.h"
#include "common/kms_secmem.h"
#include "core/kms_core.h"
#include "store/store_root.h"

struct store;

enum store_key_state {
	STORE_KEY_PENDING_ACTIVATION = 1,
	STORE_KEY_ENABLED = 2,
	STORE_KEY_DISABLED = 3,
	STORE_KEY_PENDING_DELETION = 4,
	STORE_KEY_PENDING_IMPORT = 5,
};

struct store_key_meta {
	char project[KMS_MAX_PROJECT_ID + 1];
	char key_id[KMS_KEY_ID_LEN + 1];
	char alias[KMS_MAX_ALIAS + 1];
	char description[4 * KMS_MAX_DESCRIPTION + 1]; /* 255 characters of UTF-8 */
	char key_spec[16];
	char key_usage[24];
	char origin[12];
	int state;
	int64_t creation_ms;
	int64_t deletion_ms; /* 0: not scheduled */
	bool rotation_enabled;
	int rotation_interval_days;
	int64_t last_rotation_ms;
	uint32_t rotations;
	uint32_t current_version;
	/* Imported material (origin "external"): when it expires (0: never), and a keyed digest
	 * (HMAC-SHA-256 under a root-derived key over key_id || material) of the first material
	 * imported, so a re-import after deletion can be held to the same material (KMS.2606). */
	int64_t expiration_ms;
	bool import_digest_set;
	uint8_t import_digest[32];
	/* Set by the store from the snapshot for store_key_modify's edit function: does the key
	 * hold material? Not stored. */
	bool has_material;
	/* The row's revision in the backend: every write to the key adds one, and a write made
	 * from an older revision fails (KMS_E_STALE) because another process or host changed the
	 * key since it was read; the store then re-reads the key and applies the change again. */
	uint64_t revision;
};

struct store_key {
	struct store_key_meta meta;
	uint32_t nversions; /* material of versions 0 .. nversions-1 */
	uint8_t *material;  /* nversions * CORE_KEY_BYTES, secure heap */
	int refs;	    /* atomic */
};

#define STORE_DEFAULT_KEY_CACHE	       100000u
#define STORE_DEFAULT_TIMEOUT_MS       5000u
#define STORE_DEFAULT_OFFLINE_GRACE_MS 60000

struct store_options {
	const char *state_dir;
	/* Where the keys live: NULL or "sqlite" for kms.db in state_dir; a libpq connection URI
	 * ("postgresql://...", "postgres://...") or keyword string ("host=... dbname=...") for a
	 * PostgreSQL database that several hosts share; "sqlite:FILE" for the SQLite database
	 * FILE instead of kms.db (a backup: kmsctl backup and restore open it under state_dir's
	 * root key, store_backup.c). The root key stays in its file whatever
	 * the backend; with a shared backend the token signing secret lives in the database,
	 * sealed under the root key. */
	const char *backend;
	unsigned key_cache;  /* most keys cached at once, least recently used go first (0: the
				default, STORE_DEFAULT_KEY_CACHE) */
	unsigned timeout_ms; /* a shared backend's bound on connecting and on each statement (0:
				STORE_DEFAULT_TIMEOUT_MS) */
	/* How long keys already cached keep being served while a shared backend cannot be reached
	 * (0: not at all; kmsfs passes its -o offline_grace, STORE_DEFAULT_OFFLINE_GRACE_MS by
	 * default). Not used with SQLite. */
	int64_t offline_grace_ms;
	/* Where the root key is (store_root.h): a file (NULL: <state_dir>/root.key) or a PKCS#11
	 * URI "pkcs11:token=...;object=..." with the module (NULL: p11-kit's proxy) and a file
	 * holding the PIN (NULL: the URI's pin-source/pin-value). */
	const char *root_key;
	const char *pkcs11_module;
	const char *pkcs11_pin_file;
	const char *region; /* NULL: keep the stored one, default "eu-de" */
	bool create;	    /* may create the state dir, root key and database */
	bool read_only;
};

/* Opens (and on first use creates) the state directory. On failure why holds a sentence saying
 * what is wrong and how to fix it. Never creates a root key next to an existing database. */
KMS_WUR int store_open(const struct store_options *opt, struct store **out, char *why,
		       size_t why_len);
void store_close(struct store *s);
/* The checks store_open makes on the state directory, for a caller that must make them before
 * it puts anything there (kmsfs's log): create it 0700 if create, refuse it unless it is a
 * directory of this euid, tighten a mode open to others to 0700 (refuse it if read_only). */
KMS_WUR int store_state_dir_prepare(const char *dir, bool create, bool read_only, char *why,
				    size_t why_len);
/* What daemons and tools call: make the process fit to hold secrets (kms_harden_process: secure
 * heap of secure_heap_bytes, not dumpable, no core, mlockall if lock_memory) and only then open
 * the store, so the root key is read into the secure heap, never into the ordinary one. */
KMS_WUR int store_open_hardened(const struct store_options *opt, size_t secure_heap_bytes,
				bool lock_memory, struct kms_harden_report *hr, struct store **out,
				char *why, size_t why_len);
/* Whether the root key lives in the OpenSSL secure heap (start-up self-check and tests); a root
 * key in a token: whether the PIN does. */
bool store_root_key_secure(const struct store *s);
/* The root key's provider: a token root that was lost is tried again (at most once a second),
 * then *out says whether it is available and how often it went and came back. The daemon's
 * janitor calls it every second and logs each loss and recovery once. */
bool store_root_watch(struct store *s, struct store_root_status *out);
/* Around fork(): SQLite connections must not cross it (POSIX locks stay with the parent while
 * SQLite's in-memory lock bookkeeping is copied to the child, which then holds no real locks and
 * another process may delete the WAL under it). Detach before fork, reopen in the child; the
 * root key, cache and policy are kept. Nothing may use the store in between. */
void store_detach(struct store *s);
KMS_WUR int store_reopen(struct store *s, char *why, size_t why_len);

const char *store_domain_id(const struct store *s);
const char *store_region(const struct store *s);
const char *store_state_dir(const struct store *s);

/* A 32-byte secret created on first use (token signing): a 0600 file in the state dir, or with a
 * shared backend a setting sealed under the root key, so every host gets the same one. */
KMS_WUR int store_state_secret(struct store *s, const char *name, uint8_t out[32]);
/* The state secret if there is one (moving an old file into the settings), never creating one:
 * KMS_E_KEY_NOT_FOUND (also what a read-only store such as a backup may be asked). */
KMS_WUR int store_state_secret_get(struct store *s, const char *name, uint8_t out[32]);
/* Whether several hosts share the backend (PostgreSQL). */
bool store_shared(const struct store *s);

KMS_WUR int store_project_ensure(struct store *s, const char *project);
KMS_WUR int store_project_exists(struct store *s, const char *project, bool *exists);
typedef int (*store_project_cb)(const char *project, void *arg);
KMS_WUR int store_project_list(struct store *s, store_project_cb cb, void *arg);
bool store_project_id_valid(const char *project);

/* Create an AES_256 key in state 2 with fresh material. Fails with KMS_E_ALIAS_DUPLICATE or
 * KMS_E_TOO_MANY_KEYS (quota reached). *out is a new reference. */
KMS_WUR int store_key_create(struct store *s, const char *project, const char *alias,
			     const char *description, unsigned quota, struct store_key **out);
/* Create a key with origin "external" in state 5 (pending import), without material. */
KMS_WUR int store_key_create_external(struct store *s, const char *project, const char *alias,
				      const char *description, unsigned quota,
				      struct store_key **out);
/* Import 32 bytes of material into an external key in state 5 (KMS_E_EXTERNAL_REQUIRED,
 * KMS_E_NOT_PENDING_IMPORT otherwise): it becomes version 0 and the key enabled (state 2);
 * expiration_ms (0: never) is when store_sweep() deletes it again. A key that held material
 * before accepts only the same material (KMS_E_IMPORT_DIFFERENT). */
KMS_WUR int store_key_import(struct store *s, const char *project, const char *key_id,
			     const uint8_t material[CORE_KEY_BYTES], int64_t expiration_ms,
			     struct store_key **out);
/* Remove the material (every version) of an external key in state 2 or 3 (KMS_E_MATERIAL_STATE
 * otherwise), durably; the key returns to state 5. */
KMS_WUR int store_key_delete_material(struct store *s, const char *project, const char *key_id,
				      struct store_key **out);
/* Seal an opaque byte string under a key derived from the root key, bound to a purpose label
 * (the GCM AAD): tokens that must come back to us unchanged. out needs n + CORE_SEALED_OVERHEAD
 * bytes. store_unseal_opaque fails with KMS_E_DECRYPT_FAILED for anything not sealed so. */
KMS_WUR int store_seal_opaque(struct store *s, const char *label, const uint8_t *in, size_t n,
			      uint8_t *out, size_t cap, size_t *out_len);
KMS_WUR int store_unseal_opaque(struct store *s, const char *label, const uint8_t *in, size_t n,
				uint8_t *out, size_t cap, size_t *out_len);
/* Look a key up by id or by alias within the project; KMS_E_KEY_NOT_FOUND otherwise. With a
 * shared backend a cached key is served only while the cache is fresh (a store_refresh within
 * offline_grace_ms, or within ~1.5 s when that is 0; else the key is read from the backend), and
 * KMS_E_STORE_UNAVAILABLE once the backend is known to be unreachable and the grace has run out. */
KMS_WUR int store_key_get(struct store *s, const char *project, const char *key_id,
			  struct store_key **out);
KMS_WUR int store_key_get_by_alias(struct store *s, const char *project, const char *alias,
				   struct store_key **out);
/* The key as the backend holds it now, whatever is cached (the cache is updated with it): for a
 * ciphertext naming a version the cached snapshot does not have yet, because the key was rotated
 * by another host or process a moment ago. */
KMS_WUR int store_key_get_latest(struct store *s, const char *project, const char *key_id,
				 struct store_key **out);
void store_key_release(struct store_key *k);
/* Material of one version, NULL when the key has no such version. */
const uint8_t *store_key_material(const struct store_key *k, uint32_t version);

typedef int (*store_key_cb)(const struct store_key_meta *meta, void *arg);
/* Keys of a project in creation order; state 0 = any. total = number matching the filter. */
KMS_WUR int store_key_list(struct store *s, const char *project, int state, size_t offset,
			   size_t limit, store_key_cb cb, void *arg, size_t *total);
KMS_WUR int store_key_count(struct store *s, const char *project, size_t *count);

/* Change a key's metadata atomically: edit validates the transition on a copy of the current
 * metadata and changes it (returning a KMS_E_* to refuse); the result is made durable, then
 * published. *out (optional) is the new snapshot. Serialised with all other changes. */
typedef int (*store_key_edit_fn)(struct store_key_meta *meta, void *arg);
KMS_WUR int store_key_modify(struct store *s, const char *project, const char *key_id,
			     store_key_edit_fn edit, void *arg, struct store_key **out);
/* New material version; encryption uses it from now on, old versions still decrypt. */
KMS_WUR int store_key_rotate(struct store *s, const char *project, const char *key_id,
			     int64_t now_ms, struct store_key **out);
/* Destroy keys whose scheduled deletion date has passed, delete imported material whose
 * expiration time has passed (the key returns to state 5; not counted) and rotate keys whose
 * rotation interval has passed, as of now_ms (also catching up after downtime). */
KMS_WUR int store_sweep(struct store *s, int64_t now_ms, size_t *deleted, size_t *rotated);
/* Forget cached snapshots if another process (kmsctl) or host changed the database since the last
 * call: with a change feed (a shared backend) only the keys that changed, and the policy if it
 * changed; otherwise the whole cache. With a shared backend a successful call also marks the
 * cache fresh (the offline grace counts from the last one) and one after an outage reconnects
 * and catches up on every change missed before cached keys are served again. */
KMS_WUR int store_refresh(struct store *s, bool *changed);
/* Wait at most timeout_ms for a sign that another host changed something (a shared backend's
 * notification): 1 if one came, 0 if the time passed (at once with a backend that has no
 * notifications, which callers then poll with store_refresh), KMS_E_STORE_UNAVAILABLE if the
 * backend cannot be reached. Call store_refresh after it. */
KMS_WUR int store_watch(struct store *s, int timeout_ms);

/* What /kms/.metrics reports of the store. Hits and misses count store_key_get (a miss reads the
 * database); errors count key loads the backend failed (I/O, corruption; not "no such key");
 * reconnects are a network backend's (always 0 with SQLite). */
struct store_stats {
	size_t cached_keys, cache_limit;
	uint64_t cache_hits, cache_misses, cache_evictions, errors, reconnects;
	bool online;	      /* the last store_refresh reached the backend (SQLite: always) */
	int64_t fresh_age_ms; /* since the last successful store_refresh (SQLite: 0) */
};
void store_stats_get(struct store *s, struct store_stats *out);

/* Grants (kms-api.md section 4.10): who else may use a key, and for what. */
#define STORE_GRANT_ID_LEN  64u
#define STORE_PRINCIPAL_MAX 64u
#define STORE_GRANT_OPS_MAX 256u
struct store_grant {
	char grant_id[STORE_GRANT_ID_LEN + 1];
	char project[KMS_MAX_PROJECT_ID + 1];
	char key_id[KMS_KEY_ID_LEN + 1];
	char grantee[STORE_PRINCIPAL_MAX + 1];
	char grantee_type[8];			  /* user | domain */
	char operations[STORE_GRANT_OPS_MAX + 1]; /* comma-separated action names */
	char issuer[STORE_PRINCIPAL_MAX + 1];
	char retiring[STORE_PRINCIPAL_MAX + 1];
	char name[KMS_MAX_ALIAS + 1];
	int64_t creation_ms;
};
typedef int (*store_grant_cb)(const struct store_grant *g, void *arg);
/* Grant filter: any field NULL matches all. */
struct store_grant_filter {
	const char *project;
	const char *key_id;
	const char *grantee;
	const char *retiring;
	const char *grant_id;
};
/* KMS_E_TOO_MANY_GRANTS when the key already has max grants. */
KMS_WUR int store_grant_create(struct store *s, const struct store_grant *g, unsigned max);
KMS_WUR int store_grant_delete(struct store *s, const char *grant_id);
/* Calls cb for the matching grants from offset, at most limit; *total: all that match (total
 * NULL: not counted, one query less, for callers that only look at the grants). */
KMS_WUR int store_grant_list(struct store *s, const struct store_grant_filter *f, size_t offset,
			     size_t limit, store_grant_cb cb, void *arg, size_t *total);
/* The largest number of grants on one key of the project (the grant_per_CMK quota's use). */
KMS_WUR int store_grant_count_max(struct store *s, const char *project, size_t *n);

/* Tags (kms-api.md section 4.11). */
typedef int (*store_tag_cb)(const char *key_id, const char *tag_key, const char *tag_value,
			    void *arg);
/* Insert or replace; KMS_E_TOO_MANY_TAGS past max tags on the key. */
KMS_WUR int store_tag_set(struct store *s, const char *key_id, const char *tag_key,
			  const char *tag_value, unsigned max);
/* KMS_E_TAG_NOT_FOUND if the key has no such tag. */
KMS_WUR int store_tag_delete(struct store *s, const char *key_id, const char *tag_key);
/* Tags of one key (key_id), by tag key; or of every key of a project (key_id NULL), by tag
 * key, then value, then key id: an order that does not depend on key ids or creation times. */
KMS_WUR int store_tag_list(struct store *s, const char *project, const char *key_id,
			   store_tag_cb cb, void *arg);

/* Access policy: who may see and use a project's files, identities without tokens, tokens.
 * Kept in memory (loaded at open, reloaded by store_refresh when another process changed it),
 * so checking it costs no database read. */
struct store_project_policy {
	uint32_t owner;		 /* uid of the project's directories and files */
	uint32_t group;		 /* gid */
	uint32_t mode;		 /* directory mode, e.g. 0750; files get mode & 0666 */
	uint32_t plaintext_mode; /* file mode of actions returning plaintext keys */
};
#define STORE_DEFAULT_PROJECT_MODE 0777u
/* Defaults when the admin set nothing: open to every user, tokens decide. A project whose policy
 * rows cannot be read (store_project_policy_check fails) gets owner 0, group 0 and modes 0: it
 * fails closed, never open. */
void store_project_policy(struct store *s, const char *project, struct store_project_policy *out);
/* KMS_E_IO if a policy row of the project (its modes or a binding), or a row that names no
 * project we can tell, cannot be read: requests in the project must be refused. 0 otherwise.
 * A token row whose state cannot be read counts as a revocation of that token. */
KMS_WUR int store_project_policy_check(struct store *s, const char *project);
/* How many policy rows could not be read at the last load; what names the first and what it
 * does ("project 'P' (refused: ...)", "token 'ID' (counted as revoked)", ...). For a log line. */
size_t store_policy_unreadable(struct store *s, char *what, size_t cap);
KMS_WUR int store_project_policy_set(struct store *s, const char *project,
				     const struct store_project_policy *p);

enum store_principal { STORE_BIND_UID = 1, STORE_BIND_GID = 2 };
/* A token binding remembered across daemon restarts (issue 15): the claims and the scope it
 * was bound in, sealed under a root-derived key (never the token itself). host names the
 * machine whose daemon bound it (its mount namespaces mean nothing elsewhere); expires_ms and
 * token_id in the clear so expired and revoked ones can be dropped without unsealing. */
#define STORE_SESSION_SEALED_MAX 1024
struct store_session {
	char id[33];	   /* 32 hex: random */
	char host[65];	   /* the host's machine id */
	char token_id[17]; /* the token's id (claims.id) */
	int64_t expires_ms;
	uint8_t sealed[STORE_SESSION_SEALED_MAX];
	size_t sealed_len;
};
typedef int (*store_session_cb)(const struct store_session *sess, void *arg);
/* Sessions are sealed (store_seal_opaque) with the label this prefix || the session's id: a
 * root-key rotation re-seals them under it. */
#define STORE_SESSION_LABEL_PREFIX "kmsfs session "

/* Bind a role (viewer, crypto, admin) to a uid or gid; KMS_ROLE_NONE removes the binding. */
KMS_WUR int store_binding_set(struct store *s, const char *project, enum store_principal kind,
			      uint32_t id, enum kms_role role);
/* The role bound to uid, else the best role bound to one of gids; KMS_ROLE_NONE if none. */
enum kms_role store_binding_role(struct store *s, const char *project, uint32_t uid,
				 const uint32_t *gids, size_t ngids);

/* Bindings by cgroup (schema 5): a role for every process whose cgroup v2 path (the 0:: line of
 * /proc/PID/cgroup) is path or below it, component-wise ("/a" covers "/a" and "/a/b", never
 * "/ab"). A path is absolute, below the root ("/" itself would cover every process), with no
 * empty, "." or ".." component, no control character and at most STORE_CGROUP_PATH_MAX bytes. */
#define STORE_CGROUP_PATH_MAX 1024u
/* false, and why says what is wrong with path in a sentence, when a binding may not name it. */
bool store_cgroup_path_valid(const char *path, char *why, size_t why_len);
/* Bind role to the cgroup subtree path; KMS_ROLE_NONE removes the binding. */
KMS_WUR int store_binding_set_cgroup(struct store *s, const char *project, const char *path,
				     enum kms_role role);
/* The role of the deepest cgroup binding of project that covers cgroup (a caller's path);
 * KMS_ROLE_NONE if none covers it, if cgroup is NULL or "" (unknown), or if the project has a
 * policy row that cannot be read (as store_binding_role). */
enum kms_role store_binding_role_cgroup(struct store *s, const char *project, const char *cgroup);
/* Has project any cgroup binding (as loaded), or a policy row that cannot be read? */
bool store_cgroup_bindings_exist(struct store *s, const char *project);
/* The cgroup bindings of project as loaded (readable rows), in path order. */
typedef int (*store_cgroup_binding_cb)(const char *path, enum kms_role role, void *arg);
KMS_WUR int store_cgroup_binding_list(struct store *s, const char *project,
				      store_cgroup_binding_cb cb, void *arg);

#define STORE_TOKEN_USER_MAX 64u
struct store_token_info {
	char id[17];
	char project[KMS_MAX_PROJECT_ID + 1];
	char user[STORE_TOKEN_USER_MAX + 1];
	enum kms_role role;
	int64_t expiry;
	int64_t issued_ms;
	bool revoked;
};
typedef int (*store_token_cb)(const struct store_token_info *t, void *arg);
KMS_WUR int store_token_record(struct store *s, const struct store_token_info *t);
/* KMS_E_TOKEN_INVALID for an unknown id. */
KMS_WUR int store_token_revoke(struct store *s, const char *id);
KMS_WUR int store_token_list(struct store *s, store_token_cb cb, void *arg);
bool store_token_revoked(struct store *s, const char *id);

/* store_session.c: a remembered binding as the daemon and kmsctl see it (unsealed). The sealed
 * part holds everything but id; host, claims.id and the expiry are also in the clear (and must
 * agree with the sealed copy, so a row moved to another host or token does not unseal). */
struct store_remembered {
	char id[33];
	char host[65];
	uint32_t uid;
	bool host_ns;	/* bound in the host's mount namespace: applies there after a reboot too */
	uint64_t mntns; /* else the inode of the namespace it was bound in */
	/* With mntns: the oldest process of that namespace when it was bound (pid, start time in
	 * clock ticks after boot). The kernel gives a namespace's number to a new one once it
	 * ended, so a binding is restored only while this very process is still in it. */
	int32_t witness_pid;
	uint64_t witness_start;
	char project[KMS_MAX_PROJECT_ID + 1]; /* the project it was bound in */
	struct store_token_info claims;	      /* id, project, user, role, expiry */
};
typedef int (*store_remembered_cb)(const struct store_remembered *r, void *arg);
/* Remember r under a new random id (written to r->id): its claims and scope sealed under a
 * root-derived key with the label "kmsfs session ID". Never a token. */
KMS_WUR int store_session_put(struct store *s, struct store_remembered *r);
KMS_WUR int store_session_delete(struct store *s, const char *id);
/* The remembered bindings of host (NULL: every host), unsealed, in id order; rows that do
 * not unseal (another root key, damaged, moved) are not passed on but counted in *unreadable.
 * cb may call the other store_session_* functions. */
KMS_WUR int store_session_list(struct store *s, const char *host, store_remembered_cb cb, void *arg,
			       size_t *unreadable);
/* Delete, among the rows of host (NULL: every host), those of token_id (NULL: any), or with
 * all every one of them, else the expired ones (expires_ms <= now_ms) and those of a revoked
 * token; *purged (may be NULL) counts them. Needs no unsealing. */
KMS_WUR int store_session_purge(struct store *s, const char *host, const char *token_id, bool all,
				int64_t now_ms, size_t *purged);

/* store copy: copy everything of src (settings, projects, keys with their sealed versions as they
 * are, grants, tags, policies, bindings, token records, the token signing secret) into dst, an
 * open store under the same root key. What dst already holds is kept, so an interrupted copy is
 * finished by running it again. progress (may be NULL) is called with keys copied so far and
 * the total. Refuses (why says so) a dst of another domain id that already holds keys. */
typedef void (*store_copy_progress_fn)(size_t done, size_t total, void *arg);
KMS_WUR int store_copy(struct store *src, struct store *dst, store_copy_progress_fn progress,
		       void *arg, char *why, size_t why_len);
/* Backups (store_backup.c). A backup file is a SQLite database in the store's schema (0600, in
 * rollback-journal mode: one file) holding only sealed material: key versions and state secrets
 * sealed under the root key, never the root key, never a secret in plain. Its settings say what
 * restoring it needs: the check value and generation of the root key it was sealed under. */
#define STORE_BACKUP_FORMAT 1
struct store_backup_info {
	char root_check[2 * CORE_SHA256_BYTES + 1]; /* of the root key the backup needs */
	uint32_t root_generation;		    /* root_generation of the source (absent: 1) */
	int64_t made_ms;			    /* the moment the backup is of */
	char source[512];	  /* store_uri_describe of the source, or its dir */
	char domain_id[33];	  /* of the source */
	int format;		  /* STORE_BACKUP_FORMAT */
	char root_location[1024]; /* a token root's URI as the source recorded it, or "" */
};
/* Opens a store on the existing SQLite file db_file (store_options.backend "sqlite:FILE", create
 * false: never a new root key) under the root key the caller's other stores use, writable or
 * read-only. 0 or a KMS_E_* (after saying why: the caller's). */
typedef int (*store_backup_open_fn)(const char *db_file, bool writable, struct store **out,
				    void *arg);
/* Write a consistent snapshot of s (of one moment, while daemons and other hosts go on) to the
 * new file path: a temporary name in path's directory, made durable, then renamed over path.
 * SQLite: the online backup API (progress in pages); a source without a file of its own
 * (PostgreSQL): one snapshot transaction copied (store_copy) into a store on the file (progress
 * in keys). open_file opens the file as a store. info: the stamp written into it. */
KMS_WUR int store_backup(struct store *s, const char *path, store_backup_open_fn open_file,
			 void *open_arg, store_copy_progress_fn progress, void *arg,
			 struct store_backup_info *info, char *why, size_t why_len);
/* The stamp of the backup file path, read without any root key. KMS_E_IO with why if path is
 * not a kmsfs backup (or cannot be read). */
KMS_WUR int store_backup_read_info(const char *path, struct store_backup_info *info, char *why,
				   size_t why_len);
/* Whether the root key of opt (store_options.root_key, else the token the backup names, else
 * state_dir's root.key) is the one
 * the backup needs, comparing check values: 0, or KMS_E_IO with a sentence in why that says why
 * not and which generation the backup needs. Creates nothing. */
KMS_WUR int store_backup_root_check(const struct store_options *opt,
				    const struct store_backup_info *info, char *why,
				    size_t why_len);
/* A private copy of backup path in dir ("restore-source.db", 0600; out: its name): restore works
 * on it, never on the backup (which may be on read-only media, and whose schema an older release
 * wrote: opening the copy brings it up to this one's). The caller removes it. */
KMS_WUR int store_backup_work_copy(const char *path, const char *dir, char *out, size_t cap,
				   char *why, size_t why_len);
/* The check value of the root key s is open under (hex, as store_backup_info.root_check). */
KMS_WUR int store_root_check_value(struct store *s, char out[2 * CORE_SHA256_BYTES + 1]);
/* Restore: everything of backup (a store open read-only on a backup file, under the root key
 * info->root_check names) into dst, an open store that holds no keys: settings, projects, keys
 * with their sealed versions, grants, tags, policies, bindings, tokens, state secrets,
 * remembered bindings. A restore that was interrupted is finished by running it again (dst
 * records which backup it is taking); one that had finished is not done again (*already: dst
 * was restored from this backup before, nothing copied). A dst holding other keys is refused
 * (why says so). */
KMS_WUR int store_restore(struct store *backup, struct store *dst,
			  const struct store_backup_info *info, store_copy_progress_fn progress,
			  void *arg, bool *already, char *why, size_t why_len);
/* A store URI (store_options.backend) as logs and messages may show it: the hosts and the
 * database only, never a user name or password ("postgresql://db1,db2/kms", "host=/x dbname=kms",
 * "sqlite"). store_uri_hide_password overwrites a password in s, and a PKCS#11 URI's PIN
 * (pin-value=), with '*' (argv, for ps); true if there was one. Both in store_copy.c. */
void store_uri_describe(const char *uri, char *out, size_t cap);
bool store_uri_hide_password(char *s);

/* Root-key rotation (store_rotate.c, docs/root-of-trust.md): generation N -> N+1 while daemons
 * serve. Creates the next root (to: a file or "pkcs11:..." URI; NULL: beside the current one, a
 * file "root.key.next" renamed into place at the end, or an object "<object>-g<N+1>" in the same
 * token), re-seals every CMK version, state secret and remembered session under it, checks
 * that everything unseals under it alone, commits, and only then destroys the old root. Run
 * again after an interruption at any point, it goes on from there. progress (may be NULL):
 * versions done of total in the current pass. why says what stopped it. */
struct store_rotate_report {
	uint32_t generation;  /* the root's generation now */
	bool resumed;	      /* an interrupted rotation was found and finished */
	bool unchanged;	      /* --to names the root key in use already: nothing done */
	size_t resealed;      /* sealed items written under the new root */
	char destroyed[1024]; /* the retired root, as shown ("": none destroyed by this run) */
	char now[1024];	      /* where the root is now, as shown */
};
typedef void (*store_rotate_progress_fn)(size_t done, size_t total, void *arg);
KMS_WUR int store_root_rotate(struct store *s, const char *to, store_rotate_progress_fn progress,
			      void *arg, struct store_rotate_report *rep, char *why,
			      size_t why_len);

/* Read the database files through for damage (SQLite's quick_check; nothing for PostgreSQL, which
 * checks its own pages). Slow for large stores, so not part of store_open: kmsctl check runs it
 * and kmsfs runs it once in the background after mounting. KMS_E_IO with why on damage. */
KMS_WUR int store_verify(struct store *s, char *why, size_t why_len);

/* Unseal every version of every key; calls cb for each failure. Returns number of bad keys. */
typedef void (*store_check_cb)(const char *project, const char *key_id, uint32_t version, int err,
			       void *arg);
KMS_WUR int store_check(struct store *s, store_check_cb cb, void *arg, size_t *keys_checked);
