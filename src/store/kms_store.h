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
 * - Backends (SQLite now, PostgreSQL later) implement struct store_backend_ops (store_backend.h);
 *   nothing above this header knows which one is in use.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/kms_common.h"
#include "common/kms_limits.h"
#include "core/kms_core.h"

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
	char description[KMS_MAX_DESCRIPTION + 1];
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
};

struct store_key {
	struct store_key_meta meta;
	uint32_t nversions;   /* material of versions 0 .. nversions-1 */
	uint8_t *material;    /* nversions * CORE_KEY_BYTES, secure heap */
	int refs;             /* atomic */
};

struct store_options {
	const char *state_dir;
	const char *root_key_file; /* NULL: <state_dir>/root.key */
	const char *region;        /* NULL: keep the stored one, default "eu-de" */
	bool create;               /* may create the state dir, root key and database */
	bool read_only;
};

/* Opens (and on first use creates) the state directory. On failure why holds a sentence saying
 * what is wrong and how to fix it. Never creates a root key next to an existing database. */
KMS_WUR int store_open(const struct store_options *opt, struct store **out, char *why,
		       size_t why_len);
void store_close(struct store *s);

const char *store_domain_id(const struct store *s);
const char *store_region(const struct store *s);
const char *store_state_dir(const struct store *s);

/* A 32-byte secret kept in a 0600 file in the state dir, created on first use (token signing). */
KMS_WUR int store_state_secret(struct store *s, const char *name, uint8_t out[32]);

KMS_WUR int store_project_ensure(struct store *s, const char *project);
KMS_WUR int store_project_exists(struct store *s, const char *project, bool *exists);
typedef int (*store_project_cb)(const char *project, void *arg);
KMS_WUR int store_project_list(struct store *s, store_project_cb cb, void *arg);
bool store_project_id_valid(const char *project);

/* Create an AES_256 key in state 2 with fresh material. Fails with KMS_E_ALIAS_DUPLICATE or
 * KMS_E_TOO_MANY_KEYS (quota reached). *out is a new reference. */
KMS_WUR int store_key_create(struct store *s, const char *project, const char *alias,
			     const char *description, unsigned quota, struct store_key **out);
/* Look a key up by id or by alias within the project; KMS_E_KEY_NOT_FOUND otherwise. */
KMS_WUR int store_key_get(struct store *s, const char *project, const char *key_id,
			  struct store_key **out);
KMS_WUR int store_key_get_by_alias(struct store *s, const char *project, const char *alias,
				   struct store_key **out);
void store_key_release(struct store_key *k);
/* Material of one version, NULL when the key has no such version. */
const uint8_t *store_key_material(const struct store_key *k, uint32_t version);

typedef int (*store_key_cb)(const struct store_key_meta *meta, void *arg);
/* Keys of a project in creation order; state 0 = any. total = number matching the filter. */
KMS_WUR int store_key_list(struct store *s, const char *project, int state, size_t offset,
			   size_t limit, store_key_cb cb, void *arg, size_t *total);
KMS_WUR int store_key_count(struct store *s, const char *project, size_t *count);

/* Unseal every version of every key; calls cb for each failure. Returns number of bad keys. */
typedef void (*store_check_cb)(const char *project, const char *key_id, uint32_t version, int err,
			       void *arg);
KMS_WUR int store_check(struct store *s, store_check_cb cb, void *arg, size_t *keys_checked);
