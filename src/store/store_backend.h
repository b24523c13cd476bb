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
typedef int (*store_backend_version_cb)(const struct store_sealed_version *v, void *arg);

struct store_backend_ops {
	const char *name;
	KMS_WUR int (*open)(const char *state_dir, bool create, bool read_only,
			    struct store_backend **out, char *why, size_t why_len);
	void (*close)(struct store_backend *b);
	/* Settings: small named blobs (domain id, region, root key check). */
	KMS_WUR int (*meta_get)(struct store_backend *b, const char *name, char *out, size_t cap,
				bool *found);
	KMS_WUR int (*meta_set)(struct store_backend *b, const char *name, const char *value);
	KMS_WUR int (*project_ensure)(struct store_backend *b, const char *project, int64_t now_ms);
	KMS_WUR int (*project_exists)(struct store_backend *b, const char *project, bool *exists);
	KMS_WUR int (*project_list)(struct store_backend *b, store_project_cb cb, void *arg);
	/* Insert key and its first version atomically; enforce alias uniqueness and quota. */
	KMS_WUR int (*key_insert)(struct store_backend *b, const struct store_key_meta *meta,
				  const struct store_sealed_version *v, unsigned quota);
	KMS_WUR int (*key_load)(struct store_backend *b, const char *project, const char *key_id,
				const char *alias, struct store_key_meta *meta,
				store_backend_version_cb cb, void *arg);
	KMS_WUR int (*key_list)(struct store_backend *b, const char *project, int state,
				size_t offset, size_t limit, store_backend_meta_cb cb, void *arg,
				size_t *total);
	KMS_WUR int (*key_count)(struct store_backend *b, const char *project, size_t *count);
	/* Every key with every version, for integrity checks. */
	KMS_WUR int (*key_scan)(struct store_backend *b, store_backend_meta_cb meta_cb,
				store_backend_version_cb cb, void *arg);
};

extern const struct store_backend_ops store_sqlite_ops;
