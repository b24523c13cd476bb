/* store_backend.h - what a storage backend implements. Backends see only sealed material. */
#pragma once

#include "kms_store.h"

struct store_backend;

struct store_sealed_version {
	uint32_t version;
	uint8_t sealed[CORE_KEY_BYTES + CORE_SEALED_OVERHEAD];
	size_t sealed_len;
};

typedef int (*store_backend_meta_cb)(const struct store_key_meta *meta, void *arg);

/* What a change of another process or host touched (changes_since). */
enum store_change {
	STORE_CHANGE_KEY = 1,	 /* a key's row or versions; id: the key id */
	STORE_CHANGE_POLICY = 2, /* projects, project policies, bindings, tokens; id: "" */
	STORE_CHANGE_OTHER = 3,	 /* grants, tags, settings: nothing the store caches; id: "" */
};
typedef int (*store_backend_change_cb)(enum store_change kind, const char *id, void *arg);

/* What open() needs to know. */
struct store_backend_params {
	const char *state_dir;
	const char *uri; /* store_options.backend: NULL for SQLite's default, a libpq URI or
			    keyword string for PostgreSQL; "sqlite:FILE": SQLite in the database
			    file FILE (a backup, store_backup.c), in rollback-journal mode (one
			    file, no -wal) */
	bool create;
	bool read_only;
	unsigned timeout_ms; /* a network backend's bound on connecting and on each statement */
};
/* store_backup.c: progress of a backup, in units done of total. */
typedef void (*store_backend_progress_fn)(size_t done, size_t total, void *arg);
typedef int (*store_backend_version_cb)(const struct store_sealed_version *v, void *arg);

/* The policy rows a backend holds, handed to the store one by one. readable is false when a
 * column does not hold a value of its type (text where a number belongs, a number out of range,
 * a role that is none of viewer/crypto/admin, a principal that is neither uid nor gid): the
 * store then fails closed (kms_store.h, store_project_policy_check). The key columns (project,
 * token id) are passed as the text they hold, whatever it is, for the store to judge. */
struct store_policy_visitor {
	int (*project)(const char *project, const struct store_project_policy *p, bool readable,
		       void *arg);
	int (*binding)(const char *project, enum store_principal kind, uint32_t id,
		       enum kms_role role, bool readable, void *arg);
	int (*token)(const char *id, const struct store_token_info *t, bool readable, void *arg);
	/* Schema 5: a role bound to every process in a cgroup v2 subtree (path starts with '/'). */
	int (*cgroup_binding)(const char *project, const char *path, enum kms_role role,
			      bool readable, void *arg);
	void *arg;
};

struct store_backend_ops {
	const char *name;
	/* Several hosts share it: the store serves cached keys only while it has heard from the
	 * backend recently (offline grace), learns of other hosts' changes through changes_since
	 * and watch, and keeps secrets such as the token signing key in it (sealed under the root
	 * key) instead of in the state directory. */
	bool shared;
	/* KMS_E_STORE_UNAVAILABLE (with why) when a network backend cannot be reached in time. */
	KMS_WUR int (*open)(const struct store_backend_params *p, struct store_backend **out,
			    char *why, size_t why_len);
	void (*close)(struct store_backend *b);
	/* Settings: small named blobs (domain id, region, root key check). */
	KMS_WUR int (*meta_get)(struct store_backend *b, const char *name, char *out, size_t cap,
				bool *found);
	KMS_WUR int (*meta_set)(struct store_backend *b, const char *name, const char *value);
	/* Insert name = value unless name is there; *added says which (first writer wins). */
	KMS_WUR int (*meta_add)(struct store_backend *b, const char *name, const char *value,
				bool *added);
	KMS_WUR int (*project_ensure)(struct store_backend *b, const char *project, int64_t now_ms);
	KMS_WUR int (*project_exists)(struct store_backend *b, const char *project, bool *exists);
	KMS_WUR int (*project_list)(struct store_backend *b, store_project_cb cb, void *arg);
	/* Insert key and its first version atomically; enforce alias uniqueness and quota. v is
	 * NULL for a key without material (origin external, pending import). */
	KMS_WUR int (*key_insert)(struct store_backend *b, const struct store_key_meta *meta,
				  const struct store_sealed_version *v, unsigned quota);
	KMS_WUR int (*key_load)(struct store_backend *b, const char *project, const char *key_id,
				const char *alias, struct store_key_meta *meta,
				store_backend_version_cb cb, void *arg);
	KMS_WUR int (*key_list)(struct store_backend *b, const char *project, int state,
				size_t offset, size_t limit, store_backend_meta_cb cb, void *arg,
				size_t *total);
	KMS_WUR int (*key_count)(struct store_backend *b, const char *project, size_t *count);
	/* The three writes to a key below are conditional on its revision (kms_store.h,
	 * store_key_meta.revision): they succeed only if the row still has meta->revision, and
	 * then store meta->revision + 1 and set meta->revision to it. KMS_E_STALE if the row has
	 * another revision (changed by another process or host since it was read: the store
	 * re-reads it and tries again), KMS_E_KEY_NOT_FOUND if it is gone. */
	/* Replace a key's mutable fields (alias uniqueness enforced: KMS_E_ALIAS_DUPLICATE). */
	KMS_WUR int (*key_update)(struct store_backend *b, struct store_key_meta *meta);
	/* Add a material version and update the key's fields, atomically. */
	KMS_WUR int (*key_add_version)(struct store_backend *b, struct store_key_meta *meta,
				       const struct store_sealed_version *v);
	/* Replace all material versions of a key by v (NULL: none) and update its fields,
	 * atomically and durably (imported material: import, deletion, expiry). */
	KMS_WUR int (*key_replace_material)(struct store_backend *b, struct store_key_meta *meta,
					    const struct store_sealed_version *v);
	/* The key with its versions, grants and tags, atomically, if its row still has revision
	 * (KMS_E_STALE otherwise: a cancelled deletion is never carried out). */
	KMS_WUR int (*key_delete)(struct store_backend *b, const char *key_id, uint64_t revision);
	/* Root-key rotation: replace the sealed bytes of these n versions of key_id (the same
	 * material sealed under another root key), atomically, if the key's row still has
	 * revision; the revision stays (the material did not change). KMS_E_STALE if it has
	 * another one or a version is gone, KMS_E_KEY_NOT_FOUND if the key is gone. */
	KMS_WUR int (*key_reseal)(struct store_backend *b, const char *key_id, uint64_t revision,
				  const struct store_sealed_version *v, size_t n);
	/* store copy: insert the key with these n versions exactly as given (sealed material,
	 * revision, no quota), or nothing if a key with its id is there (*added false). */
	KMS_WUR int (*key_put)(struct store_backend *b, const struct store_key_meta *meta,
			       const struct store_sealed_version *v, size_t n, bool *added);
	/* Leave no copy of deleted rows in the database files: the freed pages are overwritten,
	 * and the log that still holds their earlier contents is folded in and emptied. Called
	 * after material is deleted (key_delete, key_replace_material with none). KMS_E_BUSY when
	 * a reader of another process kept the log from being emptied: call again later. */
	KMS_WUR int (*wipe_deleted)(struct store_backend *b);
	/* Keys due for deletion (state 4, deletion time passed), for the deletion of imported
	 * material (origin external, states 2-4, expiration time passed) or automatic rotation. */
	KMS_WUR int (*key_due)(struct store_backend *b, int64_t now_ms, store_backend_meta_cb cb,
			       void *arg);
	/* Changes when another process commits: lets the cache notice kmsctl's edits. */
	KMS_WUR int (*data_version)(struct store_backend *b, int64_t *version);
	/* The change feed of a shared backend (NULL: none; the store then drops its whole cache
	 * when data_version moves). Calls cb for every change committed after sequence number
	 * since, in order, and sets *latest to the newest sequence number (since = -1: calls
	 * nothing, only sets *latest). KMS_E_STALE if changes after since are no longer kept: the
	 * caller must forget everything it caches. */
	KMS_WUR int (*changes_since)(struct store_backend *b, int64_t since,
				     store_backend_change_cb cb, void *arg, int64_t *latest);
	/* Block until a change may have been committed by someone else (LISTEN/NOTIFY) or
	 * timeout_ms passed: 1 notified, 0 timed out, KMS_E_STORE_UNAVAILABLE when the backend
	 * cannot be reached (the next call tries to reconnect). NULL: no notifications. */
	KMS_WUR int (*watch)(struct store_backend *b, int timeout_ms);
	/* Read the backend's own files through for damage (SQLite: PRAGMA quick_check), without
	 * holding up other calls; why says what is damaged. NULL: nothing to check here (a
	 * server checks its own pages). */
	KMS_WUR int (*verify)(struct store_backend *b, char *why, size_t why_len);
	/* Connections re-established after a loss since open (store_stats.reconnects). */
	uint64_t (*reconnects)(struct store_backend *b);
	/* grant_insert and tag_set count and write in one transaction (KMS_E_TOO_MANY_GRANTS,
	 * KMS_E_TOO_MANY_TAGS; replacing a tag never counts); KMS_E_KEY_NOT_FOUND if the key is
	 * not there. A clash of primary keys (ids we made) is KMS_E_INTERNAL. */
	KMS_WUR int (*grant_insert)(struct store_backend *b, const struct store_grant *g,
				    unsigned max);
	/* store copy: insert g as it is unless its grant id is there (*added false). */
	KMS_WUR int (*grant_put)(struct store_backend *b, const struct store_grant *g, bool *added);
	KMS_WUR int (*grant_delete)(struct store_backend *b, const char *grant_id);
	KMS_WUR int (*grant_list)(struct store_backend *b, const struct store_grant_filter *f,
				  size_t offset, size_t limit, store_grant_cb cb, void *arg,
				  size_t *total);
	KMS_WUR int (*grant_count_max)(struct store_backend *b, const char *project, size_t *n);
	KMS_WUR int (*tag_set)(struct store_backend *b, const char *key_id, const char *tag_key,
			       const char *tag_value, unsigned max);
	KMS_WUR int (*tag_delete)(struct store_backend *b, const char *key_id, const char *tag_key);
	KMS_WUR int (*tag_list)(struct store_backend *b, const char *project, const char *key_id,
				store_tag_cb cb, void *arg);
	/* Access policy (kms_store.h), in typed rows. project_policy_set and token_put insert or
	 * replace; binding_set with KMS_ROLE_NONE removes the binding. */
	KMS_WUR int (*project_policy_set)(struct store_backend *b, const char *project,
					  const struct store_project_policy *p);
	KMS_WUR int (*binding_set)(struct store_backend *b, const char *project,
				   enum store_principal kind, uint32_t id, enum kms_role role);
	KMS_WUR int (*token_put)(struct store_backend *b, const struct store_token_info *t);
	/* Every policy row: bindings, then cgroup bindings, then project policies, then tokens; a
	 * NULL callback of v skips its rows. */
	KMS_WUR int (*policy_list)(struct store_backend *b, const struct store_policy_visitor *v);
	/* Schema 5. A role for every process in the cgroup v2 subtree path; KMS_ROLE_NONE removes
	 * it. A change of the policy (STORE_CHANGE_POLICY in the feed). */
	KMS_WUR int (*cgroup_binding_set)(struct store_backend *b, const char *project,
					  const char *path, enum kms_role role);
	/* Schema 5. Remembered token bindings (kms_store.h, struct store_session): insert or
	 * replace by id, delete by id, list those of one host (NULL: all hosts). Nothing the store
	 * caches: STORE_CHANGE_OTHER in the feed. */
	KMS_WUR int (*session_put)(struct store_backend *b, const struct store_session *sess);
	KMS_WUR int (*session_delete)(struct store_backend *b, const char *id);
	KMS_WUR int (*session_list)(struct store_backend *b, const char *host, store_session_cb cb,
				    void *arg);
	/* Root-key rotation: replace the sealed bytes of row id by sealed (n bytes) if it still
	 * holds old (old_len bytes), else KMS_E_STALE (deleted or replaced meanwhile: a setfattr
	 * that did so is never undone). */
	KMS_WUR int (*session_reseal)(struct store_backend *b, const char *id, const uint8_t *old,
				      size_t old_len, const uint8_t *sealed, size_t n);
	/* Backups (store_backup.c); NULL where the backend has no such way. backup_file: write a
	 * consistent copy of the database into the new file path (SQLite: the online backup API
	 * under one read transaction, so writers of other processes go on and the copy is of one
	 * moment), rollback-journal mode, durable; progress in pages. snapshot: run fn with every
	 * read this thread makes of b in one consistent snapshot (PostgreSQL: one REPEATABLE READ
	 * READ ONLY transaction on one connection); fn must not write to b. */
	KMS_WUR int (*backup_file)(struct store_backend *b, const char *path,
				   store_backend_progress_fn progress, void *arg, char *why,
				   size_t why_len);
	KMS_WUR int (*snapshot)(struct store_backend *b, int (*fn)(void *arg), void *arg);
	/* Every key with every version, for integrity checks. */
	KMS_WUR int (*key_scan)(struct store_backend *b, store_backend_meta_cb meta_cb,
				store_backend_version_cb cb, void *arg);
};

extern const struct store_backend_ops store_sqlite_ops;
extern const struct store_backend_ops store_pg_ops;
