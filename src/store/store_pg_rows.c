/* The PostgreSQL backend's rows beside the keys: projects, grants, tags, policy rows, tokens,
 * and the whole-store reads and writes of check and store copy (store_pg.c holds connections,
 * transactions, the schema and the keys themselves).
 *
 * Every op answers as store_sqlite.c does: the same rows in the same order, the same errors.
 * Two things differ underneath and are dealt with here. Limits (grants, tags per key) are
 * counted after locking the key's row in the same transaction, so two hosts adding the last
 * allowed grant at once cannot both succeed. Text is ordered byte by byte (COLLATE "C"), as
 * SQLite does, whatever collation the database was created with. */
#include "store_pg_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/kms_err.h"

/* An integer parameter as the text libpq takes. */
#define STORE_PG_INT_LEN 24
static const char *store_pg_int(char buf[STORE_PG_INT_LEN], int64_t v)
{
	snprintf(buf, STORE_PG_INT_LEN, "%" PRId64, v);
	return buf;
}

static int64_t store_pg_size(size_t n)
{
	return n > (size_t)INT64_MAX ? INT64_MAX : (int64_t)n;
}

static int store_pg_count_row(const PGresult *res, int row, void *arg)
{
	return store_pg_int64(res, row, 0, arg) ? 0 : KMS_E_IO;
}

static int store_pg_true_row(const PGresult *res, int row, void *arg)
{
	(void)res;
	(void)row;
	*(bool *)arg = true;
	return 0;
}

/* A caller's callback may stop a listing with any non-zero value (SQLite's rows stop on it and
 * return it); store_pg_exec stops only on a negative one. The row function keeps what the
 * callback returned in *stop and hands store_pg_exec something negative. */
static int store_pg_stop_row(int *stop, int r)
{
	*stop = r;
	return r > 0 ? KMS_E_INTERNAL : r;
}

static int store_pg_stopped(int stop, int r)
{
	return stop != 0 ? stop : r;
}

/* ---- projects ---- */

#define STORE_PG_PROJECT_INSERT                                                                    \
	"INSERT INTO projects(project_id, created_ms) VALUES($1, $2) "                             \
	"ON CONFLICT (project_id) DO NOTHING"

int store_pg_project_ensure(struct store_backend *b, const char *project, int64_t now_ms)
{
	char now[STORE_PG_INT_LEN];
	const char *p[] = { project, store_pg_int(now, now_ms) };

	return store_pg_query(b, STORE_PG_PROJECT_INSERT, 2, p, NULL, NULL, NULL);
}

int store_pg_project_exists(struct store_backend *b, const char *project, bool *exists)
{
	*exists = false;
	return store_pg_query(b, "SELECT 1 FROM projects WHERE project_id = $1", 1, &project,
			      store_pg_true_row, exists, NULL);
}

struct store_pg_project_rows {
	store_project_cb cb;
	void *arg;
	int stop;
};

static int store_pg_project_row(const PGresult *res, int row, void *arg)
{
	struct store_pg_project_rows *l = arg;

	return store_pg_stop_row(&l->stop, l->cb(PQgetvalue(res, row, 0), l->arg));
}

int store_pg_project_list(struct store_backend *b, store_project_cb cb, void *arg)
{
	struct store_pg_project_rows l = { cb, arg, 0 };
	int r = store_pg_query(b,
			       "SELECT project_id FROM projects ORDER BY project_id COLLATE \"C\"",
			       0, NULL, store_pg_project_row, &l, NULL);

	return store_pg_stopped(l.stop, r);
}

/* ---- grants and tags: rows a key has at most max of ---- */

/* A write that a count of the key's rows limits: the key's row is locked first, so every
 * other writer of the same key waits until this one committed, then counts again. The count
 * comes before the key's absence (as in SQLite, where the insert's foreign key fails after
 * the count), so both backends give the same error when both apply. */
struct store_pg_limited {
	const char *count_sql; /* the first count_nparams of params ($1: the key id); one
				  row, one integer */
	int count_nparams;
	const char *write_sql; /* all params */
	const char *const *params;
	int nparams;
	unsigned max;
	int too_many;
	int clash; /* when the write changed no row (0: fine) */
};

static int store_pg_limited_tx(struct store_pg_conn *c, void *arg)
{
	const struct store_pg_limited *l = arg;
	const char *key_id = l->params[0];
	int64_t count = 0;
	long affected = 0;
	bool found = false;
	int r = store_pg_exec(c, "SELECT 1 FROM keys WHERE key_id = $1 FOR UPDATE", 1, &key_id,
			      store_pg_true_row, &found, NULL);

	if (r == 0)
		r = store_pg_exec(c, l->count_sql, l->count_nparams, l->params, store_pg_count_row,
				  &count, NULL);
	if (r == 0 && count >= (int64_t)l->max)
		r = l->too_many;
	if (r == 0 && !found)
		r = KMS_E_KEY_NOT_FOUND;
	if (r == 0)
		r = store_pg_exec(c, l->write_sql, l->nparams, l->params, NULL, NULL, &affected);
	if (r == 0 && affected == 0)
		r = l->clash;
	return r;
}

#define STORE_PG_GRANT_INSERT                                                                      \
	"INSERT INTO grants(key_id, grant_id, project_id, grantee, grantee_type, operations, "     \
	"issuer, retiring, name, creation_ms) VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "    \
	"ON CONFLICT (grant_id) DO NOTHING"

/* The parameters of STORE_PG_GRANT_INSERT (the key id first, as store_pg_limited wants it). */
#define STORE_PG_GRANT_PARAMS(g, creation)                                                         \
	{                                                                                          \
		(g)->key_id, (g)->grant_id, (g)->project, (g)->grantee, (g)->grantee_type,         \
			(g)->operations, (g)->issuer, (g)->retiring, (g)->name,                    \
			store_pg_int(creation, (g)->creation_ms)                                   \
	}

int store_pg_grant_insert(struct store_backend *b, const struct store_grant *g, unsigned max)
{
	char creation[STORE_PG_INT_LEN];
	const char *p[] = STORE_PG_GRANT_PARAMS(g, creation);
	/* A grant id that is there already is ours twice (random ids clashed): a bug. */
	struct store_pg_limited l = {
		"SELECT count(*) FROM grants WHERE key_id = $1",
		1,
		STORE_PG_GRANT_INSERT,
		p,
		(int)KMS_ARRAY_SIZE(p),
		max,
		KMS_E_TOO_MANY_GRANTS,
		KMS_E_INTERNAL,
	};

	return store_pg_tx(b, store_pg_limited_tx, &l);
}

/* store copy: the grant as it is, unless its id is there (KMS_E_KEY_NOT_FOUND from the
 * foreign key if its key is not). */
int store_pg_grant_put(struct store_backend *b, const struct store_grant *g, bool *added)
{
	char creation[STORE_PG_INT_LEN];
	const char *p[] = STORE_PG_GRANT_PARAMS(g, creation);
	long affected = 0;
	int r = store_pg_query(b, STORE_PG_GRANT_INSERT, (int)KMS_ARRAY_SIZE(p), p, NULL, NULL,
			       &affected);

	*added = r == 0 && affected > 0;
	return r;
}

int store_pg_grant_delete(struct store_backend *b, const char *grant_id)
{
	return store_pg_query(b, "DELETE FROM grants WHERE grant_id = $1", 1, &grant_id, NULL, NULL,
			      NULL);
}

struct store_pg_grant_rows {
	store_grant_cb cb;
	void *arg;
	int stop;
};

static int store_pg_grant_row(const PGresult *res, int row, void *arg)
{
	struct store_pg_grant_rows *l = arg;
	struct store_grant g;

	memset(&g, 0, sizeof(g));
	store_pg_text(res, row, 0, g.grant_id, sizeof(g.grant_id));
	store_pg_text(res, row, 1, g.project, sizeof(g.project));
	store_pg_text(res, row, 2, g.key_id, sizeof(g.key_id));
	store_pg_text(res, row, 3, g.grantee, sizeof(g.grantee));
	store_pg_text(res, row, 4, g.grantee_type, sizeof(g.grantee_type));
	store_pg_text(res, row, 5, g.operations, sizeof(g.operations));
	store_pg_text(res, row, 6, g.issuer, sizeof(g.issuer));
	store_pg_text(res, row, 7, g.retiring, sizeof(g.retiring));
	store_pg_text(res, row, 8, g.name, sizeof(g.name));
	if (!store_pg_int64(res, row, 9, &g.creation_ms))
		return KMS_E_IO;
	return store_pg_stop_row(&l->stop, l->cb(&g, l->arg));
}

/* A filter field that is NULL matches every row. */
#define STORE_PG_GRANT_WHERE                                                                       \
	" FROM grants WHERE ($1::text IS NULL OR project_id = $1) AND "                            \
	"($2::text IS NULL OR key_id = $2) AND ($3::text IS NULL OR grantee = $3) AND "            \
	"($4::text IS NULL OR retiring = $4) AND ($5::text IS NULL OR grant_id = $5)"

int store_pg_grant_list(struct store_backend *b, const struct store_grant_filter *f, size_t offset,
			size_t limit, store_grant_cb cb, void *arg, size_t *total)
{
	struct store_pg_grant_rows l = { cb, arg, 0 };
	char lim[STORE_PG_INT_LEN], off[STORE_PG_INT_LEN];
	const char *p[] = {
		f->project,
		f->key_id,
		f->grantee,
		f->retiring,
		f->grant_id,
		store_pg_int(lim, store_pg_size(limit)),
		store_pg_int(off, store_pg_size(offset)),
	};
	int64_t n = 0;
	int r;

	if (total) {
		*total = 0;
		r = store_pg_query(b, "SELECT count(*)" STORE_PG_GRANT_WHERE, 5, p,
				   store_pg_count_row, &n, NULL);
		*total = (size_t)n;
		if (r < 0 || limit == 0)
			return r;
	}
	/* SQLite's order: creation time, then the order the rows went in (rowid; here seq). */
	r = store_pg_query(b,
			   "SELECT grant_id, project_id, key_id, grantee, grantee_type, "
			   "operations, issuer, retiring, name, creation_ms" STORE_PG_GRANT_WHERE
			   " ORDER BY creation_ms, seq LIMIT $6::bigint OFFSET $7::bigint",
			   (int)KMS_ARRAY_SIZE(p), p, store_pg_grant_row, &l, NULL);
	return store_pg_stopped(l.stop, r);
}

int store_pg_grant_count_max(struct store_backend *b, const char *project, size_t *n)
{
	int64_t v = 0;
	int r = store_pg_query(b,
			       "SELECT coalesce(max(c), 0) FROM (SELECT count(*) AS c FROM grants "
			       "WHERE project_id = $1 GROUP BY key_id) AS per_key",
			       1, &project, store_pg_count_row, &v, NULL);

	*n = (size_t)v;
	return r;
}

int store_pg_tag_set(struct store_backend *b, const char *key_id, const char *tag_key,
		     const char *tag_value, unsigned max)
{
	const char *p[] = { key_id, tag_key, tag_value };
	/* Replacing a tag the key already has never counts against the limit: it counts -1. */
	struct store_pg_limited l = {
		"SELECT CASE WHEN EXISTS(SELECT 1 FROM tags WHERE key_id = $1 AND tag_key = $2) "
		"THEN -1 ELSE count(*) END FROM tags WHERE key_id = $1",
		2,
		"INSERT INTO tags(key_id, tag_key, tag_value) VALUES($1, $2, $3) "
		"ON CONFLICT (key_id, tag_key) DO UPDATE SET tag_value = EXCLUDED.tag_value",
		p,
		(int)KMS_ARRAY_SIZE(p),
		max,
		KMS_E_TOO_MANY_TAGS,
		0,
	};

	return store_pg_tx(b, store_pg_limited_tx, &l);
}

int store_pg_tag_delete(struct store_backend *b, const char *key_id, const char *tag_key)
{
	const char *p[] = { key_id, tag_key };
	long affected = 0;
	int r = store_pg_query(b, "DELETE FROM tags WHERE key_id = $1 AND tag_key = $2", 2, p, NULL,
			       NULL, &affected);

	return r == 0 && affected == 0 ? KMS_E_TAG_NOT_FOUND : r;
}

struct store_pg_tag_rows {
	store_tag_cb cb;
	void *arg;
	int stop;
};

static int store_pg_tag_row(const PGresult *res, int row, void *arg)
{
	struct store_pg_tag_rows *l = arg;

	return store_pg_stop_row(&l->stop, l->cb(PQgetvalue(res, row, 0), PQgetvalue(res, row, 1),
						 PQgetvalue(res, row, 2), l->arg));
}

int store_pg_tag_list(struct store_backend *b, const char *project, const char *key_id,
		      store_tag_cb cb, void *arg)
{
	struct store_pg_tag_rows l = { cb, arg, 0 };
	const char *p[] = { project, key_id };
	int r;

	/* By tag key for one key; for a project also by value and key id: an order that does not
	 * depend on key ids or creation times. */
	r = store_pg_query(
		b,
		key_id ? "SELECT t.key_id, t.tag_key, t.tag_value FROM tags t JOIN keys k "
			 "ON k.key_id = t.key_id WHERE k.project_id = $1 AND "
			 "t.key_id = $2 ORDER BY t.tag_key COLLATE \"C\""
		       : "SELECT t.key_id, t.tag_key, t.tag_value FROM tags t JOIN keys k "
			 "ON k.key_id = t.key_id WHERE k.project_id = $1 "
			 "ORDER BY t.tag_key COLLATE \"C\", t.tag_value COLLATE \"C\", "
			 "t.key_id COLLATE \"C\"",
		key_id ? 2 : 1, p, store_pg_tag_row, &l, NULL);
	return store_pg_stopped(l.stop, r);
}

/* ---- policy rows and tokens ---- */

int store_pg_project_policy_set(struct store_backend *b, const char *project,
				const struct store_project_policy *pp)
{
	char owner[STORE_PG_INT_LEN], group[STORE_PG_INT_LEN], mode[STORE_PG_INT_LEN],
		pmode[STORE_PG_INT_LEN];
	const char *p[] = {
		project,
		store_pg_int(owner, pp->owner),
		store_pg_int(group, pp->group),
		store_pg_int(mode, pp->mode),
		store_pg_int(pmode, pp->plaintext_mode),
	};

	return store_pg_query(b,
			      "INSERT INTO project_policies(project_id, owner_uid, group_gid, "
			      "dir_mode, plaintext_mode) VALUES($1, $2, $3, $4, $5) "
			      "ON CONFLICT (project_id) DO UPDATE SET owner_uid = "
			      "EXCLUDED.owner_uid, group_gid = EXCLUDED.group_gid, dir_mode = "
			      "EXCLUDED.dir_mode, plaintext_mode = EXCLUDED.plaintext_mode",
			      (int)KMS_ARRAY_SIZE(p), p, NULL, NULL, NULL);
}

/* A binding row: params p are its key columns, then the role's name (n in all). KMS_ROLE_NONE
 * deletes the row (del: by the key columns), any other role inserts or replaces it (put). */
static int store_pg_binding_write(struct store_backend *b, enum kms_role role, const char *del,
				  const char *put, const char *const *p, int n)
{
	if (role == KMS_ROLE_NONE)
		return store_pg_query(b, del, n - 1, p, NULL, NULL, NULL);
	return store_pg_query(b, put, n, p, NULL, NULL, NULL);
}

int store_pg_binding_set(struct store_backend *b, const char *project, enum store_principal kind,
			 uint32_t id, enum kms_role role)
{
	char pid[STORE_PG_INT_LEN];
	const char *p[] = {
		project,
		kind == STORE_BIND_UID ? "uid" : "gid",
		store_pg_int(pid, id),
		kms_role_name(role),
	};

	return store_pg_binding_write(
		b, role,
		"DELETE FROM bindings WHERE project_id = $1 AND principal = $2 AND "
		"principal_id = $3",
		"INSERT INTO bindings(project_id, principal, principal_id, role) "
		"VALUES($1, $2, $3, $4) ON CONFLICT (project_id, principal, "
		"principal_id) DO UPDATE SET role = EXCLUDED.role",
		p, (int)KMS_ARRAY_SIZE(p));
}

int store_pg_cgroup_binding_set(struct store_backend *b, const char *project, const char *path,
				enum kms_role role)
{
	const char *p[] = { project, path, kms_role_name(role) };

	return store_pg_binding_write(
		b, role, "DELETE FROM cgroup_bindings WHERE project_id = $1 AND path = $2",
		"INSERT INTO cgroup_bindings(project_id, path, role) VALUES($1, $2, $3) "
		"ON CONFLICT (project_id, path) DO UPDATE SET role = EXCLUDED.role",
		p, (int)KMS_ARRAY_SIZE(p));
}

int store_pg_token_put(struct store_backend *b, const struct store_token_info *t)
{
	char expiry[STORE_PG_INT_LEN], issued[STORE_PG_INT_LEN];
	const char *p[] = {
		t->id,
		t->project,
		t->user,
		kms_role_name(t->role),
		store_pg_int(expiry, t->expiry),
		store_pg_int(issued, t->issued_ms),
		t->revoked ? "1" : "0",
	};

	return store_pg_query(b,
			      "INSERT INTO tokens(token_id, project_id, user_name, role, expiry, "
			      "issued_ms, revoked) VALUES($1, $2, $3, $4, $5, $6, $7) "
			      "ON CONFLICT (token_id) DO UPDATE SET project_id = "
			      "EXCLUDED.project_id, user_name = EXCLUDED.user_name, role = "
			      "EXCLUDED.role, expiry = EXCLUDED.expiry, issued_ms = "
			      "EXCLUDED.issued_ms, revoked = EXCLUDED.revoked",
			      (int)KMS_ARRAY_SIZE(p), p, NULL, NULL, NULL);
}

/* ---- remembered token bindings (schema 5) ---- */

int store_pg_session_put(struct store_backend *b, const struct store_session *sess)
{
	char expires[STORE_PG_INT_LEN], sealed[2 * STORE_SESSION_SEALED_MAX + 3];
	const char *p[] = {
		sess->id, sess->host, sess->token_id, store_pg_int(expires, sess->expires_ms),
		sealed,
	};

	store_pg_bytea_param(sess->sealed, sess->sealed_len, sealed);
	return store_pg_query(
		b,
		"INSERT INTO sessions(session_id, host, token_id, expires_ms, sealed) "
		"VALUES($1, $2, $3, $4, $5) ON CONFLICT (session_id) DO UPDATE SET "
		"host = EXCLUDED.host, token_id = EXCLUDED.token_id, expires_ms = "
		"EXCLUDED.expires_ms, sealed = EXCLUDED.sealed",
		(int)KMS_ARRAY_SIZE(p), p, NULL, NULL, NULL);
}

int store_pg_session_reseal(struct store_backend *b, const char *id, const uint8_t *old,
			    size_t old_len, const uint8_t *sealed, size_t n)
{
	char was[2 * STORE_SESSION_SEALED_MAX + 3], now[2 * STORE_SESSION_SEALED_MAX + 3];
	const char *p[] = { id, now, was };
	long changed = 0;
	int r;

	store_pg_bytea_param(old, old_len, was);
	store_pg_bytea_param(sealed, n, now);
	r = store_pg_query(b,
			   "UPDATE sessions SET sealed = $2 WHERE session_id = $1 AND sealed = $3",
			   (int)KMS_ARRAY_SIZE(p), p, NULL, NULL, &changed);
	return r == 0 && changed != 1 ? KMS_E_STALE : r;
}

int store_pg_session_delete(struct store_backend *b, const char *id)
{
	return store_pg_query(b, "DELETE FROM sessions WHERE session_id = $1", 1, &id, NULL, NULL,
			      NULL);
}

struct store_pg_session_rows {
	store_session_cb cb;
	void *arg;
	int stop;
};

/* A row whose columns do not fit is handed on with sealed_len 0: it cannot be unsealed, and
 * the store drops it. */
static int store_pg_session_row(const PGresult *res, int row, void *arg)
{
	struct store_pg_session_rows *l = arg;
	struct store_session sess;

	memset(&sess, 0, sizeof(sess));
	store_pg_text(res, row, 0, sess.id, sizeof(sess.id));
	store_pg_text(res, row, 1, sess.host, sizeof(sess.host));
	store_pg_text(res, row, 2, sess.token_id, sizeof(sess.token_id));
	if (!store_pg_int64(res, row, 3, &sess.expires_ms) ||
	    !store_pg_bytea_get(res, row, 4, sess.sealed, sizeof(sess.sealed), &sess.sealed_len))
		sess.sealed_len = 0;
	return store_pg_stop_row(&l->stop, l->cb(&sess, l->arg));
}

int store_pg_session_list(struct store_backend *b, const char *host, store_session_cb cb, void *arg)
{
	struct store_pg_session_rows l = { cb, arg, 0 };
	int r = store_pg_query(
		b,
		"SELECT session_id, host, token_id, expires_ms, sealed FROM sessions "
		"WHERE $1::text IS NULL OR host = $1 ORDER BY session_id COLLATE \"C\"",
		1, &host, store_pg_session_row, &l, NULL);

	return store_pg_stopped(l.stop, r);
}

/* Typed reads of policy columns: false when the column does not hold a value of the type (the
 * columns are typed here, but a NULL, a number out of range or text that names no role or
 * principal can still be put there from outside). */
static bool store_pg_col_u32(const PGresult *res, int row, int col, uint32_t *out)
{
	*out = 0;
	return !PQgetisnull(res, row, col) && store_pg_uint32(res, row, col, out);
}

static bool store_pg_col_i64(const PGresult *res, int row, int col, int64_t min, int64_t max,
			     int64_t *out)
{
	*out = 0;
	return !PQgetisnull(res, row, col) && store_pg_int64(res, row, col, out) && *out >= min &&
	       *out <= max;
}

/* Text that fits cap - 1 bytes and is not empty. */
static bool store_pg_col_text(const PGresult *res, int row, int col, char *out, size_t cap)
{
	int n = PQgetlength(res, row, col);

	store_pg_text(res, row, col, out, cap);
	return !PQgetisnull(res, row, col) && n > 0 && (size_t)n < cap;
}

static bool store_pg_col_role(const PGresult *res, int row, int col, enum kms_role *out)
{
	*out = PQgetisnull(res, row, col) ? KMS_ROLE_NONE
					  : kms_role_parse(PQgetvalue(res, row, col));
	return *out != KMS_ROLE_NONE;
}

struct store_pg_policy_rows {
	const struct store_policy_visitor *v;
	int stop;
};

static int store_pg_project_policy_row(const PGresult *res, int row, void *arg)
{
	struct store_pg_policy_rows *l = arg;
	struct store_project_policy p = { 0 };
	bool ok = store_pg_col_u32(res, row, 1, &p.owner) &&
		  store_pg_col_u32(res, row, 2, &p.group) &&
		  store_pg_col_u32(res, row, 3, &p.mode) &&
		  store_pg_col_u32(res, row, 4, &p.plaintext_mode);

	return store_pg_stop_row(&l->stop,
				 l->v->project(PQgetvalue(res, row, 0), &p, ok, l->v->arg));
}

static int store_pg_binding_row(const PGresult *res, int row, void *arg)
{
	struct store_pg_policy_rows *l = arg;
	const char *principal = PQgetvalue(res, row, 1);
	enum store_principal kind = STORE_BIND_UID;
	enum kms_role role = KMS_ROLE_NONE;
	uint32_t id = 0;
	bool ok = !PQgetisnull(res, row, 1);

	if (ok && strcmp(principal, "gid") == 0)
		kind = STORE_BIND_GID;
	else if (ok)
		ok = strcmp(principal, "uid") == 0;
	ok = store_pg_col_u32(res, row, 2, &id) && store_pg_col_role(res, row, 3, &role) && ok;
	return store_pg_stop_row(
		&l->stop, l->v->binding(PQgetvalue(res, row, 0), kind, id, role, ok, l->v->arg));
}

/* The path is checked by the store (store_cgroup_path_valid); here only that it is there. */
static int store_pg_cgroup_binding_row(const PGresult *res, int row, void *arg)
{
	struct store_pg_policy_rows *l = arg;
	enum kms_role role = KMS_ROLE_NONE;
	bool ok = !PQgetisnull(res, row, 1);

	ok = store_pg_col_role(res, row, 2, &role) && ok;
	return store_pg_stop_row(&l->stop, l->v->cgroup_binding(PQgetvalue(res, row, 0),
								PQgetvalue(res, row, 1), role, ok,
								l->v->arg));
}

static int store_pg_token_row(const PGresult *res, int row, void *arg)
{
	struct store_pg_policy_rows *l = arg;
	struct store_token_info t;
	int64_t revoked = 0;
	bool ok;

	memset(&t, 0, sizeof(t));
	store_pg_text(res, row, 0, t.id, sizeof(t.id));
	ok = store_pg_col_text(res, row, 1, t.project, sizeof(t.project)) &&
	     store_pg_col_text(res, row, 2, t.user, sizeof(t.user)) &&
	     store_pg_col_role(res, row, 3, &t.role) &&
	     store_pg_col_i64(res, row, 4, INT64_MIN, INT64_MAX, &t.expiry) &&
	     store_pg_col_i64(res, row, 5, INT64_MIN, INT64_MAX, &t.issued_ms) &&
	     store_pg_col_i64(res, row, 6, 0, 1, &revoked);
	t.revoked = revoked != 0;
	return store_pg_stop_row(&l->stop, l->v->token(PQgetvalue(res, row, 0), &t, ok, l->v->arg));
}

int store_pg_policy_list(struct store_backend *b, const struct store_policy_visitor *v)
{
	struct store_pg_policy_rows l = { v, 0 };
	int r = 0;

	if (v->binding)
		r = store_pg_query(b,
				   "SELECT project_id, principal, principal_id, role FROM bindings "
				   "ORDER BY project_id COLLATE \"C\", principal COLLATE \"C\", "
				   "principal_id",
				   0, NULL, store_pg_binding_row, &l, NULL);
	if (r == 0 && l.stop == 0 && v->cgroup_binding)
		r = store_pg_query(b,
				   "SELECT project_id, path, role FROM cgroup_bindings "
				   "ORDER BY project_id COLLATE \"C\", path COLLATE \"C\"",
				   0, NULL, store_pg_cgroup_binding_row, &l, NULL);
	if (r == 0 && l.stop == 0 && v->project)
		r = store_pg_query(b,
				   "SELECT project_id, owner_uid, group_gid, dir_mode, "
				   "plaintext_mode FROM project_policies "
				   "ORDER BY project_id COLLATE \"C\"",
				   0, NULL, store_pg_project_policy_row, &l, NULL);
	if (r == 0 && l.stop == 0 && v->token)
		r = store_pg_query(b,
				   "SELECT token_id, project_id, user_name, role, expiry, "
				   "issued_ms, revoked FROM tokens ORDER BY token_id COLLATE \"C\"",
				   0, NULL, store_pg_token_row, &l, NULL);
	return store_pg_stopped(l.stop, r);
}

/* ---- every key: integrity checks and store copy ---- */

struct store_pg_scan_rows {
	store_backend_meta_cb meta_cb;
	store_backend_version_cb cb;
	void *arg;
	int stop;
};

static int store_pg_scan_row(const PGresult *res, int row, void *arg)
{
	struct store_pg_scan_rows *s = arg;
	struct store_key_meta m;
	struct store_sealed_version v;
	int r;

	if (!store_pg_key_from_row(res, row, 0, &m))
		return KMS_E_IO;
	r = s->meta_cb(&m, s->arg);
	if (r != 0)
		return store_pg_stop_row(&s->stop, r);
	/* A version that does not read is reported as such through cb (length 0). */
	if (store_pg_version_from_row(res, row, STORE_PG_KEY_NCOLUMNS, &v) < 0)
		v.sealed_len = 0;
	return store_pg_stop_row(&s->stop, s->cb(&v, s->arg));
}

int store_pg_key_scan(struct store_backend *b, store_backend_meta_cb meta_cb,
		      store_backend_version_cb cb, void *arg)
{
	struct store_pg_scan_rows s = { meta_cb, cb, arg, 0 };
	/* SQLite's order: keys made in the same millisecond by insertion order, and each key's
	 * versions together (never by a random key id, never one key's versions split). */
	int r = store_pg_query(
		b,
		"SELECT " STORE_PG_KEY_COLUMNS ", v.version, v.sealed "
		"FROM keys JOIN key_versions v USING (key_id) "
		"ORDER BY project_id COLLATE \"C\", creation_ms, keys.seq, v.version",
		0, NULL, store_pg_scan_row, &s, NULL);

	return store_pg_stopped(s.stop, r);
}

struct store_pg_key_put {
	const struct store_key_meta *m;
	const struct store_sealed_version *v;
	size_t n;
	bool *added;
};

/* Its project first (the key row refers to it) unless the copy made it already; then the key
 * with every column as given (revision too) unless its id is there; then its versions, each
 * dated at the key's creation (the store keeps no time per version), as SQLite's key_put. */
static int store_pg_key_put_tx(struct store_pg_conn *c, void *arg)
{
	const struct store_pg_key_put *t = arg;
	const struct store_key_meta *m = t->m;
	struct store_pg_key_params kp;
	char created[STORE_PG_INT_LEN];
	const char *p[] = { m->project, store_pg_int(created, m->creation_ms) };
	long affected = 0;
	/* Only store copy puts keys, and it ends with a synchronous commit (store_copy.c), which
	 * makes every earlier commit durable with it; a key lost to a crash before that is copied
	 * again by the next run. Not waiting for the disk at each key makes a copy several times
	 * faster. */
	int r = store_pg_exec(c, "SET LOCAL synchronous_commit = off", 0, NULL, NULL, NULL, NULL);

	if (r == 0)
		r = store_pg_exec(c, STORE_PG_PROJECT_INSERT, 2, p, NULL, NULL, NULL);
	store_pg_key_params(m, &kp);
	if (r == 0)
		r = store_pg_exec(c,
				  "INSERT INTO keys(" STORE_PG_KEY_COLUMNS
				  ") VALUES(" STORE_PG_KEY_VALUES
				  ") ON CONFLICT (key_id) DO NOTHING",
				  STORE_PG_KEY_NCOLUMNS, kp.p, NULL, NULL, &affected);
	for (size_t i = 0; r == 0 && affected > 0 && i < t->n; i++)
		r = store_pg_version_insert(c, m->key_id, &t->v[i], m->creation_ms);
	*t->added = r == 0 && affected > 0;
	return r;
}

int store_pg_key_put(struct store_backend *b, const struct store_key_meta *meta,
		     const struct store_sealed_version *v, size_t n, bool *added)
{
	struct store_pg_key_put t = { meta, v, n, added };
	int r;

	*added = false;
	r = store_pg_tx(b, store_pg_key_put_tx, &t);
	if (r < 0)
		*added = false;
	return r;
}
