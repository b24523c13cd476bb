/* store_pg_internal.h - what the PostgreSQL backend's files share (store_pg.c: connections,
 * timeouts, schema, transactions, keys and the change feed; store_pg_rows.c: projects, grants,
 * tags, policy rows, tokens, scans and copies). Nothing outside src/store includes it. */
#pragma once

#include <libpq-fe.h>

#include "store_backend.h"

/* One connection of the pool, held by one thread between store_pg_conn_get and _put. */
struct store_pg_conn;

/* A statement's parameters: text values (NULL: SQL NULL), as libpq takes them. */
#define STORE_PG_MAX_PARAMS 24

/* Called for each row of a result; a negative return stops and is returned. */
typedef int (*store_pg_row_fn)(const PGresult *res, int row, void *arg);
/* A transaction's body: runs statements on c with store_pg_exec. Returning KMS_E_STALE or
 * another error rolls back. It may run more than once (serialization failures are retried),
 * so it must not have effects outside the database. */
typedef int (*store_pg_tx_fn)(struct store_pg_conn *c, void *arg);

/* One statement on c, bounded by the backend's timeout: calls fn per row (fn may be NULL) and
 * sets *affected (may be NULL) to the rows changed. Errors: KMS_E_ALIAS_DUPLICATE (unique
 * violation on the alias index), KMS_E_STORE_UNAVAILABLE (no answer in time, connection lost:
 * the connection is dropped and re-made on next use), KMS_E_STALE (serialization failure or
 * deadlock: store_pg_tx retries), KMS_E_IO (anything else). */
KMS_WUR int store_pg_exec(struct store_pg_conn *c, const char *sql, int nparams,
			  const char *const *params, store_pg_row_fn fn, void *arg, long *affected);
/* BEGIN; fn; COMMIT on a pooled connection (synchronous commit: the change is durable on the
 * primary and its synchronous standby when this returns 0). Serialization failures and
 * deadlocks are retried a few times. */
KMS_WUR int store_pg_tx(struct store_backend *b, store_pg_tx_fn fn, void *arg);
/* One statement outside an explicit transaction (autocommit), on a pooled connection. */
KMS_WUR int store_pg_query(struct store_backend *b, const char *sql, int nparams,
			   const char *const *params, store_pg_row_fn fn, void *arg,
			   long *affected);

/* Column helpers: copy text of (row, col) into dst (cap bytes, always terminated; "" for
 * NULL); parse integers (false if the text is not one in range). */
void store_pg_text(const PGresult *res, int row, int col, char *dst, size_t cap);
bool store_pg_int64(const PGresult *res, int row, int col, int64_t *out);
bool store_pg_uint32(const PGresult *res, int row, int col, uint32_t *out);

/* The ops store_pg_rows.c implements (store_backend.h says what each does). */
KMS_WUR int store_pg_project_ensure(struct store_backend *b, const char *project, int64_t now_ms);
KMS_WUR int store_pg_project_exists(struct store_backend *b, const char *project, bool *exists);
KMS_WUR int store_pg_project_list(struct store_backend *b, store_project_cb cb, void *arg);
KMS_WUR int store_pg_grant_insert(struct store_backend *b, const struct store_grant *g,
				  unsigned max);
KMS_WUR int store_pg_grant_put(struct store_backend *b, const struct store_grant *g, bool *added);
KMS_WUR int store_pg_grant_delete(struct store_backend *b, const char *grant_id);
KMS_WUR int store_pg_grant_list(struct store_backend *b, const struct store_grant_filter *f,
				size_t offset, size_t limit, store_grant_cb cb, void *arg,
				size_t *total);
KMS_WUR int store_pg_grant_count_max(struct store_backend *b, const char *project, size_t *n);
KMS_WUR int store_pg_tag_set(struct store_backend *b, const char *key_id, const char *tag_key,
			     const char *tag_value, unsigned max);
KMS_WUR int store_pg_tag_delete(struct store_backend *b, const char *key_id, const char *tag_key);
KMS_WUR int store_pg_tag_list(struct store_backend *b, const char *project, const char *key_id,
			      store_tag_cb cb, void *arg);
KMS_WUR int store_pg_project_policy_set(struct store_backend *b, const char *project,
					const struct store_project_policy *p);
KMS_WUR int store_pg_binding_set(struct store_backend *b, const char *project,
				 enum store_principal kind, uint32_t id, enum kms_role role);
KMS_WUR int store_pg_cgroup_binding_set(struct store_backend *b, const char *project,
					const char *path, enum kms_role role);
KMS_WUR int store_pg_token_put(struct store_backend *b, const struct store_token_info *t);
KMS_WUR int store_pg_policy_list(struct store_backend *b, const struct store_policy_visitor *v);
KMS_WUR int store_pg_session_put(struct store_backend *b, const struct store_session *sess);
KMS_WUR int store_pg_session_delete(struct store_backend *b, const char *id);
KMS_WUR int store_pg_session_list(struct store_backend *b, const char *host, store_session_cb cb,
				  void *arg);
KMS_WUR int store_pg_session_reseal(struct store_backend *b, const char *id, const uint8_t *old,
				    size_t old_len, const uint8_t *sealed, size_t n);
KMS_WUR int store_pg_key_scan(struct store_backend *b, store_backend_meta_cb meta_cb,
			      store_backend_version_cb cb, void *arg);
KMS_WUR int store_pg_key_put(struct store_backend *b, const struct store_key_meta *meta,
			     const struct store_sealed_version *v, size_t n, bool *added);

/* Helpers store_pg.c adds for both files (key rows and sealed material, shared by key_load,
 * key_list, key_due, key_insert in store_pg.c and key_scan, key_put in store_pg_rows.c). */

/* A key row's columns, in the order store_pg_key_from_row reads them and store_pg_key_params
 * fills $1..$STORE_PG_KEY_NCOLUMNS. */
#define STORE_PG_KEY_COLUMNS                                                                       \
	"project_id, key_id, key_alias, key_description, key_spec, key_usage, origin, key_state, " \
	"creation_ms, deletion_ms, rotation_enabled, rotation_interval, last_rotation_ms, "        \
	"rotations, current_version, expiration_ms, import_digest, revision"
#define STORE_PG_KEY_VALUES                                                                        \
	"$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18"
#define STORE_PG_KEY_NCOLUMNS 18

/* A key's fields as text parameters $1..$18 (STORE_PG_KEY_COLUMNS order); p points into the
 * struct, so keep it alive while the statement runs. */
struct store_pg_key_params {
	char num[11][24];
	char digest[2 * 32 + 3];
	const char *p[STORE_PG_KEY_NCOLUMNS];
};
void store_pg_key_params(const struct store_key_meta *m, struct store_pg_key_params *kp);
/* The key of a row whose STORE_PG_KEY_COLUMNS start at column col. false: a column does not
 * hold a value of its type (the fields read so far are set, the rest zero). */
bool store_pg_key_from_row(const PGresult *res, int row, int col, struct store_key_meta *m);

/* bytea: as a text parameter ("\x" and hex; dst holds 2n + 3 bytes) and from a text result
 * (false if NULL, malformed or longer than cap). */
#define STORE_PG_SEALED_HEX (2 * (CORE_KEY_BYTES + CORE_SEALED_OVERHEAD) + 3)
void store_pg_bytea_param(const uint8_t *src, size_t n, char *dst);
bool store_pg_bytea_get(const PGresult *res, int row, int col, uint8_t *dst, size_t cap,
			size_t *len);
/* A sealed version from columns (version, sealed) starting at col: KMS_E_IO if unreadable. */
KMS_WUR int store_pg_version_from_row(const PGresult *res, int row, int col,
				      struct store_sealed_version *v);
/* INSERT one sealed version of key_id (inside the caller's transaction on c). */
KMS_WUR int store_pg_version_insert(struct store_pg_conn *c, const char *key_id,
				    const struct store_sealed_version *v, int64_t created_ms);
