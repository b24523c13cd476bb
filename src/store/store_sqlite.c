/* The embedded backend: one SQLite database in the state directory.
 *
 * WAL with synchronous=FULL makes every commit durable before it returns (a kill -9 or power cut
 * after a successful create-key keeps the key); a single connection behind one mutex keeps the
 * code simple, and the hot path never gets here because the store caches snapshots. */
#include "store_backend.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "common/kms_err.h"

struct store_backend {
	sqlite3 *db;
	pthread_mutex_t lock;
};

/* Policy (kms_store.h). No CHECK constraints: a row changed behind our back must still load,
 * to fail closed (store_backend.h, struct store_policy_visitor), not keep the database shut. */
#define STORE_POLICY_TABLES                                                                        \
	"CREATE TABLE IF NOT EXISTS project_policies("                                             \
	"  project_id TEXT PRIMARY KEY, owner_uid INTEGER NOT NULL, group_gid INTEGER NOT NULL,"   \
	"  dir_mode INTEGER NOT NULL, plaintext_mode INTEGER NOT NULL);"                           \
	"CREATE TABLE IF NOT EXISTS bindings("                                                     \
	"  project_id TEXT NOT NULL, principal TEXT NOT NULL, principal_id INTEGER NOT NULL,"      \
	"  role TEXT NOT NULL, PRIMARY KEY(project_id, principal, principal_id));"                 \
	"CREATE TABLE IF NOT EXISTS tokens("                                                       \
	"  token_id TEXT PRIMARY KEY, project_id TEXT NOT NULL, user_name TEXT NOT NULL,"          \
	"  role TEXT NOT NULL, expiry INTEGER NOT NULL, issued_ms INTEGER NOT NULL,"               \
	"  revoked INTEGER NOT NULL DEFAULT 0);"

static const char store_sqlite_schema[] =
	"CREATE TABLE IF NOT EXISTS meta("
	"  name TEXT PRIMARY KEY, value TEXT NOT NULL);"
	"CREATE TABLE IF NOT EXISTS projects("
	"  project_id TEXT PRIMARY KEY, created_ms INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS keys("
	"  key_id TEXT PRIMARY KEY,"
	"  project_id TEXT NOT NULL REFERENCES projects(project_id),"
	"  key_alias TEXT NOT NULL,"
	"  key_description TEXT NOT NULL DEFAULT '',"
	"  key_spec TEXT NOT NULL, key_usage TEXT NOT NULL, origin TEXT NOT NULL,"
	"  key_state INTEGER NOT NULL,"
	"  creation_ms INTEGER NOT NULL,"
	"  deletion_ms INTEGER NOT NULL DEFAULT 0,"
	"  rotation_enabled INTEGER NOT NULL DEFAULT 0,"
	"  rotation_interval INTEGER NOT NULL DEFAULT 365,"
	"  last_rotation_ms INTEGER NOT NULL DEFAULT 0,"
	"  rotations INTEGER NOT NULL DEFAULT 0,"
	"  current_version INTEGER NOT NULL DEFAULT 0,"
	"  expiration_ms INTEGER NOT NULL DEFAULT 0,"
	"  import_digest BLOB);"
	"CREATE UNIQUE INDEX IF NOT EXISTS keys_alias ON keys(project_id, key_alias);"
	"CREATE INDEX IF NOT EXISTS keys_project ON keys(project_id, creation_ms);"
	"CREATE TABLE IF NOT EXISTS key_versions("
	"  key_id TEXT NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,"
	"  version INTEGER NOT NULL,"
	"  sealed BLOB NOT NULL,"
	"  created_ms INTEGER NOT NULL,"
	"  PRIMARY KEY(key_id, version));"
	"CREATE TABLE IF NOT EXISTS grants("
	"  grant_id TEXT PRIMARY KEY,"
	"  project_id TEXT NOT NULL,"
	"  key_id TEXT NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,"
	"  grantee TEXT NOT NULL, grantee_type TEXT NOT NULL, operations TEXT NOT NULL,"
	"  issuer TEXT NOT NULL, retiring TEXT NOT NULL DEFAULT '', name TEXT NOT NULL DEFAULT '',"
	"  creation_ms INTEGER NOT NULL);"
	"CREATE INDEX IF NOT EXISTS grants_key ON grants(key_id);"
	"CREATE TABLE IF NOT EXISTS tags("
	"  key_id TEXT NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,"
	"  tag_key TEXT NOT NULL, tag_value TEXT NOT NULL,"
	"  PRIMARY KEY(key_id, tag_key));"
	STORE_POLICY_TABLES
	"INSERT OR IGNORE INTO meta(name, value) VALUES('schema_version', '3');";

/* Schema versions: 1 the first; 2 adds keys.expiration_ms and keys.import_digest (imported key
 * material); 3 replaces the policy table of (kind, name, value) strings by typed tables (modes
 * as integers, roles by name). A database of an older version is upgraded when opened
 * read-write. */
#define STORE_SCHEMA_VERSION 3
static const char store_sqlite_upgrade_1_2[] =
	"ALTER TABLE keys ADD COLUMN expiration_ms INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE keys ADD COLUMN import_digest BLOB;"
	"UPDATE meta SET value = '2' WHERE name = 'schema_version';";

#define STORE_KEY_COLUMNS                                                                          \
	"project_id, key_id, key_alias, key_description, key_spec, key_usage, origin, key_state, " \
	"creation_ms, deletion_ms, rotation_enabled, rotation_interval, last_rotation_ms, "        \
	"rotations, current_version, expiration_ms, import_digest"

static int store_sqlite_err(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_DONE:
	case SQLITE_ROW:
		return 0;
	case SQLITE_FULL:
		return KMS_E_NOSPACE;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return KMS_E_BUSY;
	case SQLITE_NOMEM:
		return KMS_E_NOMEM;
	case SQLITE_CONSTRAINT:
		return KMS_E_ALIAS_DUPLICATE;
	default:
		return KMS_E_IO;
	}
}

static void store_copy(char *dst, size_t cap, const unsigned char *src)
{
	snprintf(dst, cap, "%s", src ? (const char *)src : "");
}

static int store_version_cb(void *arg, int ncols, char **vals, char **names)
{
	(void)names;
	if (ncols == 1 && vals[0])
		*(int *)arg = atoi(vals[0]);
	return 0;
}

/* Version 2 kept policy as (kind, name, value) strings:
 *   project  name PROJECT, value "OWNER GROUP MODE PLAINTEXT_MODE" (decimal ids, octal modes)
 *   bind     name "PROJECT|uid|ID" or "PROJECT|gid|ID", value a role "1".."3"
 *   token    name ID, value "PROJECT|USER|ROLE|EXPIRY|ISSUED_MS|REVOKED"
 * The upgrade moves each row to its typed table. A row version 2 could not read moves as a row
 * version 3 cannot read either (STORE_V2_UNREADABLE in its typed columns), so it still fails
 * closed, for the same project; rows of kinds version 2 did not know are dropped. */
#define STORE_V2_UNREADABLE "unreadable version 2 row"

static bool store_v2_project_parse(const char *value, int64_t out[4])
{
	unsigned owner, group, mode, pmode;
	int end = -1;

	if (value[0] < '0' || value[0] > '9') /* no sign, no blank before the owner */
		return false;
	if (sscanf(value, "%u %u %o %o%n", &owner, &group, &mode, &pmode, &end) != 4 || end <= 0 ||
	    value[end] != 0 || mode > 07777 || pmode > 07777)
		return false;
	out[0] = owner;
	out[1] = group;
	out[2] = mode;
	out[3] = pmode;
	return true;
}

/* The project a binding's name starts with ("" if none) and, if the whole row reads, its
 * principal, id and role name. */
static bool store_v2_binding_parse(const char *name, const char *value,
				   char project[KMS_MAX_PROJECT_ID + 1], char principal[4],
				   int64_t *id, const char **role)
{
	static const char *const roles[] = { "viewer", "crypto", "admin" };
	const char *bar = strchr(name, '|');
	size_t n = bar ? (size_t)(bar - name) : 0;
	unsigned uid;
	int end = -1;

	project[0] = 0;
	if (n == 0 || n > KMS_MAX_PROJECT_ID)
		return false;
	memcpy(project, name, n);
	project[n] = 0;
	if (!store_project_id_valid(project)) {
		project[0] = 0;
		return false;
	}
	if (sscanf(bar + 1, "%3[a-z]|%u%n", principal, &uid, &end) != 2 || end < 0 ||
	    bar[1 + end] != 0 || (strcmp(principal, "uid") != 0 && strcmp(principal, "gid") != 0))
		return false;
	if (value[0] < '1' || value[0] > '3' || value[1] != 0)
		return false;
	*id = uid;
	*role = roles[value[0] - '1'];
	return true;
}

static bool store_v2_token_parse(const char *value, struct store_token_info *t, char role[8],
				 int64_t *revoked)
{
	long long exp, issued;
	int rev;

	if (sscanf(value, "%64[^|]|%64[^|]|%7[^|]|%lld|%lld|%d", t->project, t->user, role, &exp,
		   &issued, &rev) != 6)
		return false;
	t->expiry = exp;
	t->issued_ms = issued;
	*revoked = rev != 0;
	return true;
}

/* Bind a typed column, or the unreadable marker in its place. */
static void store_v2_bind_int(sqlite3_stmt *st, int col, bool ok, int64_t v)
{
	if (ok)
		sqlite3_bind_int64(st, col, v);
	else
		sqlite3_bind_text(st, col, STORE_V2_UNREADABLE, -1, SQLITE_STATIC);
}

static int store_v2_row(sqlite3 *db, const char *kind, const char *name, const char *value)
{
	struct store_token_info t = { 0 };
	char project[KMS_MAX_PROJECT_ID + 1], principal[4] = "", role[8] = "";
	const char *bind_role = NULL;
	int64_t n[4] = { 0 }, id = 0, revoked = 0;
	sqlite3_stmt *st = NULL;
	bool ok;
	int rc;

	if (strcmp(kind, "project") == 0) {
		ok = store_v2_project_parse(value, n);
		rc = sqlite3_prepare_v2(db, "INSERT INTO project_policies(project_id, owner_uid, "
					"group_gid, dir_mode, plaintext_mode) VALUES(?1,?2,?3,?4,?5)",
					-1, &st, NULL);
		if (rc != SQLITE_OK)
			goto out;
		sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
		for (int i = 0; i < 4; i++)
			store_v2_bind_int(st, 2 + i, ok, n[i]);
	} else if (strcmp(kind, "bind") == 0) {
		ok = store_v2_binding_parse(name, value, project, principal, &id, &bind_role);
		rc = sqlite3_prepare_v2(db, "INSERT INTO bindings(project_id, principal, "
					"principal_id, role) VALUES(?1,?2,?3,?4)",
					-1, &st, NULL);
		if (rc != SQLITE_OK)
			goto out;
		sqlite3_bind_text(st, 1, project, -1, SQLITE_STATIC);
		/* Unreadable: the whole name stands in for the id, so each row keeps its own key. */
		sqlite3_bind_text(st, 2, ok ? principal : STORE_V2_UNREADABLE, -1, SQLITE_STATIC);
		if (ok)
			sqlite3_bind_int64(st, 3, id);
		else
			sqlite3_bind_text(st, 3, name, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 4, ok ? bind_role : value, -1, SQLITE_STATIC);
	} else if (strcmp(kind, "token") == 0) {
		ok = store_v2_token_parse(value, &t, role, &revoked);
		rc = sqlite3_prepare_v2(db, "INSERT INTO tokens(token_id, project_id, user_name, "
					"role, expiry, issued_ms, revoked) VALUES(?1,?2,?3,?4,?5,?6,?7)",
					-1, &st, NULL);
		if (rc != SQLITE_OK)
			goto out;
		sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, t.project, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, t.user, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 4, role, -1, SQLITE_STATIC);
		store_v2_bind_int(st, 5, ok, t.expiry);
		store_v2_bind_int(st, 6, ok, t.issued_ms);
		store_v2_bind_int(st, 7, ok, revoked);
	} else {
		return SQLITE_OK;
	}
	rc = sqlite3_step(st);
	rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
out:
	sqlite3_finalize(st);
	return rc;
}

/* Version 2 -> 3, inside the upgrade's transaction. */
static int store_sqlite_upgrade_2_3(sqlite3 *db)
{
	sqlite3_stmt *st = NULL;
	/* A version 1 database may predate the policy table. */
	int rc = sqlite3_exec(db,
			      STORE_POLICY_TABLES "CREATE TABLE IF NOT EXISTS policy(kind TEXT NOT NULL,"
			      " name TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY(kind, name));",
			      NULL, NULL, NULL);

	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(db, "SELECT kind, name, value FROM policy", -1, &st, NULL);
	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
		rc = store_v2_row(db, (const char *)sqlite3_column_text(st, 0),
				  (const char *)sqlite3_column_text(st, 1),
				  (const char *)sqlite3_column_text(st, 2));
	sqlite3_finalize(st);
	if (rc == SQLITE_DONE)
		rc = sqlite3_exec(db,
				  "DROP TABLE policy;"
				  "UPDATE meta SET value = '3' WHERE name = 'schema_version';",
				  NULL, NULL, NULL);
	return rc;
}

/* Bring an older database to STORE_SCHEMA_VERSION, in one transaction (another process may be
 * opening it at the same moment: the version is read again under the write lock). */
static int store_sqlite_upgrade(sqlite3 *db, bool read_only, char *why, size_t why_len)
{
	int version = 0, rc;

	rc = sqlite3_exec(db, "SELECT value FROM meta WHERE name = 'schema_version'",
			  store_version_cb, &version, NULL);
	if (rc != SQLITE_OK)
		return rc;
	if (version == STORE_SCHEMA_VERSION)
		return SQLITE_OK;
	if (version > STORE_SCHEMA_VERSION || version < 1) {
		snprintf(why, why_len,
			 "the key database has schema version %d, this kmsfs knows %d; use the kmsfs "
			 "release that wrote it",
			 version, STORE_SCHEMA_VERSION);
		return SQLITE_MISMATCH;
	}
	if (read_only) {
		snprintf(why, why_len,
			 "the key database has schema version %d and must be upgraded to %d: open it "
			 "read-write once (start kmsfs or run kmsctl)",
			 version, STORE_SCHEMA_VERSION);
		return SQLITE_MISMATCH;
	}
	rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return rc;
	version = 0;
	rc = sqlite3_exec(db, "SELECT value FROM meta WHERE name = 'schema_version'",
			  store_version_cb, &version, NULL);
	if (rc == SQLITE_OK && version == 1)
		rc = sqlite3_exec(db, store_sqlite_upgrade_1_2, NULL, NULL, NULL);
	if (rc == SQLITE_OK && (version == 1 || version == 2))
		rc = store_sqlite_upgrade_2_3(db);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		(void)sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

static int store_sqlite_open(const char *state_dir, bool create, bool read_only,
			     struct store_backend **out, char *why, size_t why_len)
{
	struct store_backend *b = NULL;
	char path[4096];
	int flags = read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
	int r = KMS_E_IO, rc;

	*out = NULL;
	if (create && !read_only)
		flags |= SQLITE_OPEN_CREATE;
	flags |= SQLITE_OPEN_NOMUTEX; /* we serialise with our own mutex */
	if ((size_t)snprintf(path, sizeof(path), "%s/kms.db", state_dir) >= sizeof(path)) {
		snprintf(why, why_len, "state directory path is too long");
		return KMS_E_IO;
	}
	b = calloc(1, sizeof(*b));
	if (!b)
		return KMS_E_NOMEM;
	{
		/* Recursive: row callbacks may query again (e.g. list projects, then look one up). */
		pthread_mutexattr_t attr;

		pthread_mutexattr_init(&attr);
		pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
		pthread_mutex_init(&b->lock, &attr);
		pthread_mutexattr_destroy(&attr);
	}
	rc = sqlite3_open_v2(path, &b->db, flags, NULL);
	if (rc != SQLITE_OK) {
		snprintf(why, why_len, "cannot open key database '%.300s': %s", path,
			 b->db ? sqlite3_errmsg(b->db) : sqlite3_errstr(rc));
		goto out;
	}
	sqlite3_busy_timeout(b->db, 5000);
	sqlite3_extended_result_codes(b->db, 1);
	rc = sqlite3_exec(b->db,
			  "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
			  "PRAGMA foreign_keys=ON; PRAGMA secure_delete=ON;",
			  NULL, NULL, NULL);
	if (rc == SQLITE_OK && !read_only)
		rc = sqlite3_exec(b->db, store_sqlite_schema, NULL, NULL, NULL);
	if (rc == SQLITE_OK) {
		rc = store_sqlite_upgrade(b->db, read_only, why, why_len);
		if (rc == SQLITE_MISMATCH) {
			r = KMS_E_IO;
			goto out;
		}
	}
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(b->db, "SELECT count(*) FROM keys; PRAGMA quick_check;", NULL, NULL,
				  NULL);
	if (rc != SQLITE_OK) {
		snprintf(why, why_len,
			 "key database '%.300s' is unusable (%s); restore it from a backup or fix the "
			 "file's permissions and the file system",
			 path, sqlite3_errmsg(b->db));
		r = store_sqlite_err(rc);
		if (r == 0)
			r = KMS_E_IO;
		goto out;
	}
	*out = b;
	b = NULL;
	r = 0;
out:
	if (b) {
		sqlite3_close(b->db);
		pthread_mutex_destroy(&b->lock);
		free(b);
	}
	return r;
}

static void store_sqlite_close(struct store_backend *b)
{
	if (!b)
		return;
	sqlite3_close(b->db);
	pthread_mutex_destroy(&b->lock);
	free(b);
}

/* Prepare, bind text arguments, and hand each row to fn. All under the lock. */
typedef int (*store_row_fn)(sqlite3_stmt *st, void *arg);

static int store_query(struct store_backend *b, const char *sql, const char *const *texts,
		       size_t ntexts, const int64_t *ints, size_t nints, store_row_fn fn, void *arg)
{
	sqlite3_stmt *st = NULL;
	int r, rc;

	pthread_mutex_lock(&b->lock);
	rc = sqlite3_prepare_v2(b->db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK) {
		r = store_sqlite_err(rc);
		goto out;
	}
	for (size_t i = 0; i < ntexts; i++)
		sqlite3_bind_text(st, (int)i + 1, texts[i], -1, SQLITE_STATIC);
	for (size_t i = 0; i < nints; i++)
		sqlite3_bind_int64(st, (int)(ntexts + i) + 1, ints[i]);
	r = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (fn && (r = fn(st, arg)) != 0)
			goto out;
	}
	if (rc != SQLITE_DONE)
		r = store_sqlite_err(rc);
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&b->lock);
	return r;
}

struct store_meta_row {
	char *out;
	size_t cap;
	bool *found;
};

static int store_meta_row(sqlite3_stmt *st, void *arg)
{
	struct store_meta_row *m = arg;

	store_copy(m->out, m->cap, sqlite3_column_text(st, 0));
	*m->found = true;
	return 0;
}

static int store_sqlite_meta_get(struct store_backend *b, const char *name, char *out, size_t cap,
				 bool *found)
{
	struct store_meta_row m = { out, cap, found };
	const char *t[] = { name };

	*found = false;
	return store_query(b, "SELECT value FROM meta WHERE name = ?", t, 1, NULL, 0,
			   store_meta_row, &m);
}

static int store_sqlite_meta_set(struct store_backend *b, const char *name, const char *value)
{
	const char *t[] = { name, value };

	return store_query(b, "INSERT OR REPLACE INTO meta(name, value) VALUES(?, ?)", t, 2, NULL,
			   0, NULL, NULL);
}

static int store_sqlite_project_ensure(struct store_backend *b, const char *project,
				       int64_t now_ms)
{
	const char *t[] = { project };

	return store_query(b, "INSERT OR IGNORE INTO projects(project_id, created_ms) VALUES(?, ?)",
			   t, 1, &now_ms, 1, NULL, NULL);
}

static int store_true_row(sqlite3_stmt *st, void *arg)
{
	*(bool *)arg = true;
	return 0;
}

static int store_sqlite_project_exists(struct store_backend *b, const char *project, bool *exists)
{
	const char *t[] = { project };

	*exists = false;
	return store_query(b, "SELECT 1 FROM projects WHERE project_id = ?", t, 1, NULL, 0,
			   store_true_row, exists);
}

struct store_project_rows {
	store_project_cb cb;
	void *arg;
};

static int store_project_row(sqlite3_stmt *st, void *arg)
{
	struct store_project_rows *p = arg;

	return p->cb((const char *)sqlite3_column_text(st, 0), p->arg);
}

static int store_sqlite_project_list(struct store_backend *b, store_project_cb cb, void *arg)
{
	struct store_project_rows p = { cb, arg };

	return store_query(b, "SELECT project_id FROM projects ORDER BY project_id", NULL, 0, NULL,
			   0, store_project_row, &p);
}

static void store_meta_from_row(sqlite3_stmt *st, struct store_key_meta *m)
{
	memset(m, 0, sizeof(*m));
	store_copy(m->project, sizeof(m->project), sqlite3_column_text(st, 0));
	store_copy(m->key_id, sizeof(m->key_id), sqlite3_column_text(st, 1));
	store_copy(m->alias, sizeof(m->alias), sqlite3_column_text(st, 2));
	store_copy(m->description, sizeof(m->description), sqlite3_column_text(st, 3));
	store_copy(m->key_spec, sizeof(m->key_spec), sqlite3_column_text(st, 4));
	store_copy(m->key_usage, sizeof(m->key_usage), sqlite3_column_text(st, 5));
	store_copy(m->origin, sizeof(m->origin), sqlite3_column_text(st, 6));
	m->state = sqlite3_column_int(st, 7);
	m->creation_ms = sqlite3_column_int64(st, 8);
	m->deletion_ms = sqlite3_column_int64(st, 9);
	m->rotation_enabled = sqlite3_column_int(st, 10) != 0;
	m->rotation_interval_days = sqlite3_column_int(st, 11);
	m->last_rotation_ms = sqlite3_column_int64(st, 12);
	m->rotations = (uint32_t)sqlite3_column_int64(st, 13);
	m->current_version = (uint32_t)sqlite3_column_int64(st, 14);
	m->expiration_ms = sqlite3_column_int64(st, 15);
	if (sqlite3_column_bytes(st, 16) == (int)sizeof(m->import_digest) &&
	    sqlite3_column_blob(st, 16)) {
		memcpy(m->import_digest, sqlite3_column_blob(st, 16), sizeof(m->import_digest));
		m->import_digest_set = true;
	}
}

static void store_bind_digest(sqlite3_stmt *st, int col, const struct store_key_meta *m)
{
	if (m->import_digest_set)
		sqlite3_bind_blob(st, col, m->import_digest, (int)sizeof(m->import_digest),
				  SQLITE_STATIC);
	else
		sqlite3_bind_null(st, col);
}

static int store_exec_locked(struct store_backend *b, const char *sql)
{
	return store_sqlite_err(sqlite3_exec(b->db, sql, NULL, NULL, NULL));
}

static int store_sqlite_key_insert(struct store_backend *b, const struct store_key_meta *m,
				   const struct store_sealed_version *v, unsigned quota)
{
	sqlite3_stmt *st = NULL;
	int r, rc;
	bool in_tx = false;

	pthread_mutex_lock(&b->lock);
	/* IMMEDIATE: take the write lock first, so the quota count and the insert are one step. */
	if ((r = store_exec_locked(b, "BEGIN IMMEDIATE")) < 0)
		goto out;
	in_tx = true;
	rc = sqlite3_prepare_v2(b->db, "SELECT count(*) FROM keys WHERE project_id = ?", -1, &st,
				NULL);
	if (rc != SQLITE_OK)
		goto sql_fail;
	sqlite3_bind_text(st, 1, m->project, -1, SQLITE_STATIC);
	if ((rc = sqlite3_step(st)) != SQLITE_ROW)
		goto sql_fail;
	if (sqlite3_column_int64(st, 0) >= (int64_t)quota) {
		r = KMS_E_TOO_MANY_KEYS;
		goto out;
	}
	sqlite3_finalize(st);
	st = NULL;
	rc = sqlite3_prepare_v2(b->db,
				"SELECT 1 FROM keys WHERE project_id = ? AND key_alias = ?", -1,
				&st, NULL);
	if (rc != SQLITE_OK)
		goto sql_fail;
	sqlite3_bind_text(st, 1, m->project, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, m->alias, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		r = KMS_E_ALIAS_DUPLICATE;
		goto out;
	}
	if (rc != SQLITE_DONE)
		goto sql_fail;
	sqlite3_finalize(st);
	st = NULL;
	rc = sqlite3_prepare_v2(b->db,
				"INSERT INTO keys(" STORE_KEY_COLUMNS
				") VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
				-1, &st, NULL);
	if (rc != SQLITE_OK)
		goto sql_fail;
	sqlite3_bind_text(st, 1, m->project, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, m->key_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, m->alias, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, m->description, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, m->key_spec, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, m->key_usage, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 7, m->origin, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 8, m->state);
	sqlite3_bind_int64(st, 9, m->creation_ms);
	sqlite3_bind_int64(st, 10, m->deletion_ms);
	sqlite3_bind_int(st, 11, m->rotation_enabled);
	sqlite3_bind_int(st, 12, m->rotation_interval_days);
	sqlite3_bind_int64(st, 13, m->last_rotation_ms);
	sqlite3_bind_int64(st, 14, m->rotations);
	sqlite3_bind_int64(st, 15, m->current_version);
	sqlite3_bind_int64(st, 16, m->expiration_ms);
	store_bind_digest(st, 17, m);
	if ((rc = sqlite3_step(st)) != SQLITE_DONE)
		goto sql_fail;
	sqlite3_finalize(st);
	st = NULL;
	if (!v)
		goto commit;
	rc = sqlite3_prepare_v2(b->db,
				"INSERT INTO key_versions(key_id, version, sealed, created_ms) "
				"VALUES(?,?,?,?)",
				-1, &st, NULL);
	if (rc != SQLITE_OK)
		goto sql_fail;
	sqlite3_bind_text(st, 1, m->key_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, v->version);
	sqlite3_bind_blob(st, 3, v->sealed, (int)v->sealed_len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, m->creation_ms);
	if ((rc = sqlite3_step(st)) != SQLITE_DONE)
		goto sql_fail;
	sqlite3_finalize(st);
	st = NULL;
commit:
	if ((r = store_exec_locked(b, "COMMIT")) < 0)
		goto out;
	in_tx = false;
	r = 0;
	goto out;
sql_fail:
	r = store_sqlite_err(rc);
	if (r == 0)
		r = KMS_E_IO;
out:
	sqlite3_finalize(st);
	if (in_tx)
		(void)sqlite3_exec(b->db, "ROLLBACK", NULL, NULL, NULL);
	pthread_mutex_unlock(&b->lock);
	return r;
}

static int store_version_from_row(sqlite3_stmt *st, int col, struct store_sealed_version *v)
{
	int n = sqlite3_column_bytes(st, col + 1);
	const void *p = sqlite3_column_blob(st, col + 1);

	v->version = (uint32_t)sqlite3_column_int64(st, col);
	if (n <= 0 || (size_t)n > sizeof(v->sealed) || !p)
		return KMS_E_IO;
	memcpy(v->sealed, p, (size_t)n);
	v->sealed_len = (size_t)n;
	return 0;
}

struct store_load_rows {
	struct store_key_meta *meta;
	bool found;
	store_backend_version_cb cb;
	void *arg;
};

static int store_load_meta_row(sqlite3_stmt *st, void *arg)
{
	struct store_load_rows *l = arg;

	store_meta_from_row(st, l->meta);
	l->found = true;
	return 0;
}

static int store_load_version_row(sqlite3_stmt *st, void *arg)
{
	struct store_load_rows *l = arg;
	struct store_sealed_version v;
	int r = store_version_from_row(st, 0, &v);

	if (r == 0)
		r = l->cb(&v, l->arg);
	return r;
}

static int store_sqlite_key_load(struct store_backend *b, const char *project, const char *key_id,
				 const char *alias, struct store_key_meta *meta,
				 store_backend_version_cb cb, void *arg)
{
	struct store_load_rows l = { meta, false, cb, arg };
	const char *t[] = { project, key_id ? key_id : alias };
	const char *t2[1];
	int r;

	r = store_query(b,
			key_id ? "SELECT " STORE_KEY_COLUMNS
				 " FROM keys WHERE project_id = ? AND key_id = ?"
			       : "SELECT " STORE_KEY_COLUMNS
				 " FROM keys WHERE project_id = ? AND key_alias = ?",
			t, 2, NULL, 0, store_load_meta_row, &l);
	if (r < 0)
		return r;
	if (!l.found)
		return KMS_E_KEY_NOT_FOUND;
	t2[0] = meta->key_id;
	return store_query(b,
			   "SELECT version, sealed FROM key_versions WHERE key_id = ? "
			   "ORDER BY version",
			   t2, 1, NULL, 0, store_load_version_row, &l);
}

struct store_list_rows {
	store_backend_meta_cb cb;
	void *arg;
};

static int store_list_row(sqlite3_stmt *st, void *arg)
{
	struct store_list_rows *l = arg;
	struct store_key_meta m;

	store_meta_from_row(st, &m);
	return l->cb(&m, l->arg);
}

static int store_count_row(sqlite3_stmt *st, void *arg)
{
	*(size_t *)arg = (size_t)sqlite3_column_int64(st, 0);
	return 0;
}

static int store_sqlite_key_list(struct store_backend *b, const char *project, int state,
				 size_t offset, size_t limit, store_backend_meta_cb cb, void *arg,
				 size_t *total)
{
	struct store_list_rows l = { cb, arg };
	const char *t[] = { project };
	int64_t ints[3] = { state, state, 0 };
	int r;

	*total = 0;
	r = store_query(b,
			"SELECT count(*) FROM keys WHERE project_id = ? AND (? = 0 OR key_state = ?)",
			t, 1, ints, 2, store_count_row, total);
	if (r < 0 || limit == 0)
		return r;
	{
		int64_t lim[4] = { state, state, (int64_t)limit, (int64_t)offset };

		return store_query(b,
				   "SELECT " STORE_KEY_COLUMNS " FROM keys WHERE project_id = ? "
				   "AND (? = 0 OR key_state = ?) ORDER BY creation_ms, rowid "
				   "LIMIT ? OFFSET ?",
				   t, 1, lim, 4, store_list_row, &l);
	}
}

static int store_sqlite_key_count(struct store_backend *b, const char *project, size_t *count)
{
	const char *t[] = { project };

	*count = 0;
	return store_query(b, "SELECT count(*) FROM keys WHERE project_id = ?", t, 1, NULL, 0,
			   store_count_row, count);
}

struct store_scan_rows {
	store_backend_meta_cb meta_cb;
	store_backend_version_cb cb;
	void *arg;
};

static int store_scan_row(sqlite3_stmt *st, void *arg)
{
	struct store_scan_rows *s = arg;
	struct store_key_meta m;
	struct store_sealed_version v;
	int r;

	store_meta_from_row(st, &m);
	if ((r = s->meta_cb(&m, s->arg)) != 0)
		return r;
	r = store_version_from_row(st, 17, &v);
	if (r < 0)
		v.sealed_len = 0; /* report it as unreadable through cb */
	return s->cb(&v, s->arg);
}

static int store_sqlite_key_scan(struct store_backend *b, store_backend_meta_cb meta_cb,
				 store_backend_version_cb cb, void *arg)
{
	struct store_scan_rows s = { meta_cb, cb, arg };

	return store_query(b,
			   "SELECT k.project_id, k.key_id, k.key_alias, k.key_description, "
			   "k.key_spec, k.key_usage, k.origin, k.key_state, k.creation_ms, "
			   "k.deletion_ms, k.rotation_enabled, k.rotation_interval, "
			   "k.last_rotation_ms, k.rotations, k.current_version, k.expiration_ms, "
			   "k.import_digest, v.version, v.sealed "
			   "FROM keys k JOIN key_versions v ON v.key_id = k.key_id "
			   "ORDER BY k.project_id, k.creation_ms, v.version",
			   NULL, 0, NULL, 0, store_scan_row, &s);
}

static int store_update_locked(struct store_backend *b, const struct store_key_meta *m)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = sqlite3_prepare_v2(b->db,
				"UPDATE keys SET key_alias = ?, key_description = ?, key_state = ?, "
				"deletion_ms = ?, rotation_enabled = ?, rotation_interval = ?, "
				"last_rotation_ms = ?, rotations = ?, current_version = ?, "
				"expiration_ms = ?, import_digest = ? WHERE key_id = ?",
				-1, &st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(st, 1, m->alias, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, m->description, -1, SQLITE_STATIC);
		sqlite3_bind_int(st, 3, m->state);
		sqlite3_bind_int64(st, 4, m->deletion_ms);
		sqlite3_bind_int(st, 5, m->rotation_enabled);
		sqlite3_bind_int(st, 6, m->rotation_interval_days);
		sqlite3_bind_int64(st, 7, m->last_rotation_ms);
		sqlite3_bind_int64(st, 8, m->rotations);
		sqlite3_bind_int64(st, 9, m->current_version);
		sqlite3_bind_int64(st, 10, m->expiration_ms);
		store_bind_digest(st, 11, m);
		sqlite3_bind_text(st, 12, m->key_id, -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
		if (rc == SQLITE_DONE && sqlite3_changes(b->db) != 1)
			rc = SQLITE_NOTFOUND;
	}
	sqlite3_finalize(st);
	if (rc == SQLITE_NOTFOUND)
		return KMS_E_KEY_NOT_FOUND;
	return rc == SQLITE_DONE ? 0 : store_sqlite_err(rc);
}

static int store_sqlite_key_update(struct store_backend *b, const struct store_key_meta *m)
{
	int r;

	pthread_mutex_lock(&b->lock);
	r = store_update_locked(b, m);
	pthread_mutex_unlock(&b->lock);
	return r;
}

/* One sealed material version of key_id. Called with b->lock held, inside a transaction. */
static int store_insert_version_locked(struct store_backend *b, const char *key_id,
				       const struct store_sealed_version *v, int64_t created_ms)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(b->db,
				    "INSERT INTO key_versions(key_id, version, sealed, created_ms) "
				    "VALUES(?,?,?,?)",
				    -1, &st, NULL);

	if (rc == SQLITE_OK) {
		sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, v->version);
		sqlite3_bind_blob(st, 3, v->sealed, (int)v->sealed_len, SQLITE_STATIC);
		sqlite3_bind_int64(st, 4, created_ms);
		rc = sqlite3_step(st);
	}
	sqlite3_finalize(st);
	return rc;
}

static int store_sqlite_key_add_version(struct store_backend *b, const struct store_key_meta *m,
					const struct store_sealed_version *v)
{
	int r, rc;

	pthread_mutex_lock(&b->lock);
	if ((r = store_exec_locked(b, "BEGIN IMMEDIATE")) < 0)
		goto out;
	rc = store_insert_version_locked(b, m->key_id, v, m->last_rotation_ms);
	r = rc == SQLITE_DONE ? store_update_locked(b, m) : store_sqlite_err(rc);
	if (r == 0)
		r = store_exec_locked(b, "COMMIT");
	if (r < 0)
		(void)sqlite3_exec(b->db, "ROLLBACK", NULL, NULL, NULL);
out:
	pthread_mutex_unlock(&b->lock);
	return r;
}

static int store_sqlite_key_replace_material(struct store_backend *b,
					     const struct store_key_meta *m,
					     const struct store_sealed_version *v)
{
	sqlite3_stmt *st = NULL;
	int r, rc = SQLITE_DONE;

	pthread_mutex_lock(&b->lock);
	if ((r = store_exec_locked(b, "BEGIN IMMEDIATE")) < 0)
		goto out;
	/* secure_delete=ON overwrites the freed pages of the old sealed material. */
	rc = sqlite3_prepare_v2(b->db, "DELETE FROM key_versions WHERE key_id = ?", -1, &st,
				NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(st, 1, m->key_id, -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
	}
	sqlite3_finalize(st);
	st = NULL;
	if (rc == SQLITE_DONE && v)
		rc = store_insert_version_locked(b, m->key_id, v, m->creation_ms);
	r = rc == SQLITE_DONE ? store_update_locked(b, m) : store_sqlite_err(rc);
	if (r == 0)
		r = store_exec_locked(b, "COMMIT");
	if (r < 0)
		(void)sqlite3_exec(b->db, "ROLLBACK", NULL, NULL, NULL);
out:
	pthread_mutex_unlock(&b->lock);
	return r;
}

static int store_sqlite_key_delete(struct store_backend *b, const char *key_id)
{
	const char *t[] = { key_id };
	int r;

	/* Versions first (explicitly: foreign keys may be off in old databases), then the key;
	 * secure_delete=ON overwrites the freed pages, so the sealed material is really gone. */
	r = store_query(b, "DELETE FROM key_versions WHERE key_id = ?", t, 1, NULL, 0, NULL, NULL);
	if (r == 0)
		r = store_query(b, "DELETE FROM grants WHERE key_id = ?", t, 1, NULL, 0, NULL, NULL);
	if (r == 0)
		r = store_query(b, "DELETE FROM tags WHERE key_id = ?", t, 1, NULL, 0, NULL, NULL);
	if (r == 0)
		r = store_query(b, "DELETE FROM keys WHERE key_id = ?", t, 1, NULL, 0, NULL, NULL);
	return r;
}

/* secure_delete=ON zeroes what a delete frees, but in WAL mode the pages as they were before
 * stay in kms.db-wal until a checkpoint, and after one the file keeps its old frames until they
 * are overwritten. TRUNCATE copies every frame into kms.db (the zeroed pages last) and cuts the
 * log to zero bytes; it waits (busy timeout) for readers of other processes. */
static int store_sqlite_wipe_deleted(struct store_backend *b)
{
	int log_frames = -1, copied = -1, rc;

	pthread_mutex_lock(&b->lock);
	rc = sqlite3_wal_checkpoint_v2(b->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, &log_frames,
				       &copied);
	pthread_mutex_unlock(&b->lock);
	if (rc == SQLITE_OK && log_frames > 0)
		rc = SQLITE_BUSY; /* not everything was copied and cut (-1: not in WAL mode) */
	return store_sqlite_err(rc);
}

static int store_sqlite_key_due(struct store_backend *b, int64_t now_ms, store_backend_meta_cb cb,
				void *arg)
{
	struct store_list_rows l = { cb, arg };
	int64_t ints[3] = { now_ms, now_ms, now_ms };

	return store_query(b,
			   "SELECT " STORE_KEY_COLUMNS " FROM keys WHERE "
			   "(key_state = 4 AND deletion_ms > 0 AND deletion_ms <= ?) OR "
			   "(origin = 'external' AND key_state IN (2, 3, 4) AND expiration_ms > 0 "
			   " AND expiration_ms <= ?) OR "
			   "(key_state = 2 AND rotation_enabled = 1 AND current_version < 63 AND "
			   " max(last_rotation_ms, creation_ms) + rotation_interval * 86400000 <= ?)",
			   NULL, 0, ints, 3, store_list_row, &l);
}

static int store_version_row(sqlite3_stmt *st, void *arg)
{
	*(int64_t *)arg = sqlite3_column_int64(st, 0);
	return 0;
}

static int store_sqlite_data_version(struct store_backend *b, int64_t *version)
{
	return store_query(b, "PRAGMA data_version", NULL, 0, NULL, 0, store_version_row, version);
}

/* Run a statement that counts rows for a key under the write lock, then one that changes them:
 * the limit check and the change are one step. */
static int store_limited_write(struct store_backend *b, const char *count_sql, const char *key_id,
			       unsigned max, int too_many, sqlite3_stmt *write)
{
	sqlite3_stmt *st = NULL;
	int r, rc;

	if ((r = store_exec_locked(b, "BEGIN IMMEDIATE")) < 0)
		return r;
	rc = sqlite3_prepare_v2(b->db, count_sql, -1, &st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
	}
	if (rc != SQLITE_ROW) {
		r = store_sqlite_err(rc);
		r = r ? r : KMS_E_IO;
	} else if (sqlite3_column_int64(st, 0) >= (int64_t)max) {
		r = too_many;
	} else {
		rc = sqlite3_step(write);
		r = rc == SQLITE_DONE ? 0 : store_sqlite_err(rc);
		if (r == KMS_E_ALIAS_DUPLICATE) /* constraint: the key vanished meanwhile */
			r = KMS_E_KEY_NOT_FOUND;
	}
	sqlite3_finalize(st);
	if (r == 0)
		r = store_exec_locked(b, "COMMIT");
	if (r < 0)
		(void)sqlite3_exec(b->db, "ROLLBACK", NULL, NULL, NULL);
	return r;
}

static int store_sqlite_grant_insert(struct store_backend *b, const struct store_grant *g,
				     unsigned max)
{
	sqlite3_stmt *st = NULL;
	int r, rc;

	pthread_mutex_lock(&b->lock);
	rc = sqlite3_prepare_v2(b->db,
				"INSERT INTO grants(grant_id, project_id, key_id, grantee, grantee_type, "
				"operations, issuer, retiring, name, creation_ms) "
				"VALUES(?,?,?,?,?,?,?,?,?,?)",
				-1, &st, NULL);
	if (rc != SQLITE_OK) {
		r = store_sqlite_err(rc);
		goto out;
	}
	sqlite3_bind_text(st, 1, g->grant_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, g->project, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, g->key_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, g->grantee, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, g->grantee_type, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, g->operations, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 7, g->issuer, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 8, g->retiring, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 9, g->name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 10, g->creation_ms);
	r = store_limited_write(b, "SELECT count(*) FROM grants WHERE key_id = ?", g->key_id, max,
				KMS_E_TOO_MANY_GRANTS, st);
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&b->lock);
	return r;
}

static int store_sqlite_grant_delete(struct store_backend *b, const char *grant_id)
{
	const char *t[] = { grant_id };

	return store_query(b, "DELETE FROM grants WHERE grant_id = ?", t, 1, NULL, 0, NULL, NULL);
}

struct store_grant_rows {
	store_grant_cb cb;
	void *arg;
};

static int store_grant_row(sqlite3_stmt *st, void *arg)
{
	struct store_grant_rows *l = arg;
	struct store_grant g;

	memset(&g, 0, sizeof(g));
	store_copy(g.grant_id, sizeof(g.grant_id), sqlite3_column_text(st, 0));
	store_copy(g.project, sizeof(g.project), sqlite3_column_text(st, 1));
	store_copy(g.key_id, sizeof(g.key_id), sqlite3_column_text(st, 2));
	store_copy(g.grantee, sizeof(g.grantee), sqlite3_column_text(st, 3));
	store_copy(g.grantee_type, sizeof(g.grantee_type), sqlite3_column_text(st, 4));
	store_copy(g.operations, sizeof(g.operations), sqlite3_column_text(st, 5));
	store_copy(g.issuer, sizeof(g.issuer), sqlite3_column_text(st, 6));
	store_copy(g.retiring, sizeof(g.retiring), sqlite3_column_text(st, 7));
	store_copy(g.name, sizeof(g.name), sqlite3_column_text(st, 8));
	g.creation_ms = sqlite3_column_int64(st, 9);
	return l->cb(&g, l->arg);
}

#define STORE_GRANT_WHERE                                                                          \
	" FROM grants WHERE (?1 IS NULL OR project_id = ?1) AND (?2 IS NULL OR key_id = ?2) AND "  \
	"(?3 IS NULL OR grantee = ?3) AND (?4 IS NULL OR retiring = ?4) AND "                      \
	"(?5 IS NULL OR grant_id = ?5)"

static int store_grant_query(struct store_backend *b, const char *sql,
			     const struct store_grant_filter *f, int64_t limit, int64_t offset,
			     store_row_fn fn, void *arg)
{
	const char *vals[5] = { f->project, f->key_id, f->grantee, f->retiring, f->grant_id };
	sqlite3_stmt *st = NULL;
	int r = 0, rc;

	pthread_mutex_lock(&b->lock);
	rc = sqlite3_prepare_v2(b->db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK) {
		r = store_sqlite_err(rc);
		goto out;
	}
	for (int i = 0; i < 5; i++) {
		if (vals[i])
			sqlite3_bind_text(st, i + 1, vals[i], -1, SQLITE_STATIC);
		else
			sqlite3_bind_null(st, i + 1);
	}
	if (sqlite3_bind_parameter_count(st) >= 7) {
		sqlite3_bind_int64(st, 6, limit);
		sqlite3_bind_int64(st, 7, offset);
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		if ((r = fn(st, arg)) != 0)
			goto out;
	if (rc != SQLITE_DONE)
		r = store_sqlite_err(rc);
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&b->lock);
	return r;
}

static int store_sqlite_grant_list(struct store_backend *b, const struct store_grant_filter *f,
				   size_t offset, size_t limit, store_grant_cb cb, void *arg,
				   size_t *total)
{
	struct store_grant_rows l = { cb, arg };
	int r;

	if (total) {
		*total = 0;
		r = store_grant_query(b, "SELECT count(*)" STORE_GRANT_WHERE, f, 0, 0,
				      store_count_row, total);
		if (r < 0 || limit == 0)
			return r;
	}
	return store_grant_query(b,
				 "SELECT grant_id, project_id, key_id, grantee, grantee_type, "
				 "operations, issuer, retiring, name, creation_ms" STORE_GRANT_WHERE
				 " ORDER BY creation_ms, rowid LIMIT ?6 OFFSET ?7",
				 f, (int64_t)(limit > INT64_MAX ? INT64_MAX : limit), (int64_t)offset,
				 store_grant_row, &l);
}

static int store_sqlite_grant_count_max(struct store_backend *b, const char *project, size_t *n)
{
	const char *t[] = { project };

	*n = 0;
	return store_query(b,
			   "SELECT coalesce(max(c), 0) FROM (SELECT count(*) AS c FROM grants "
			   "WHERE project_id = ? GROUP BY key_id)",
			   t, 1, NULL, 0, store_count_row, n);
}

static int store_sqlite_tag_set(struct store_backend *b, const char *key_id, const char *tag_key,
				const char *tag_value, unsigned max)
{
	sqlite3_stmt *st = NULL;
	const char *t[] = { key_id, tag_key };
	bool exists = false;
	int r, rc;

	pthread_mutex_lock(&b->lock);
	r = store_query(b, "SELECT 1 FROM tags WHERE key_id = ? AND tag_key = ?", t, 2, NULL, 0,
			store_true_row, &exists);
	if (r < 0)
		goto out;
	rc = sqlite3_prepare_v2(b->db,
				"INSERT OR REPLACE INTO tags(key_id, tag_key, tag_value) VALUES(?,?,?)",
				-1, &st, NULL);
	if (rc != SQLITE_OK) {
		r = store_sqlite_err(rc);
		goto out;
	}
	sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, tag_key, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, tag_value, -1, SQLITE_STATIC);
	/* Replacing an existing tag never counts against the limit. */
	r = store_limited_write(b, "SELECT count(*) FROM tags WHERE key_id = ?", key_id,
				exists ? UINT32_MAX : max, KMS_E_TOO_MANY_TAGS, st);
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&b->lock);
	return r;
}

static int store_sqlite_tag_delete(struct store_backend *b, const char *key_id,
				   const char *tag_key)
{
	const char *t[] = { key_id, tag_key };
	bool exists = false;
	int r;

	pthread_mutex_lock(&b->lock);
	r = store_query(b, "SELECT 1 FROM tags WHERE key_id = ? AND tag_key = ?", t, 2, NULL, 0,
			store_true_row, &exists);
	if (r == 0 && !exists)
		r = KMS_E_TAG_NOT_FOUND;
	if (r == 0)
		r = store_query(b, "DELETE FROM tags WHERE key_id = ? AND tag_key = ?", t, 2, NULL,
				0, NULL, NULL);
	pthread_mutex_unlock(&b->lock);
	return r;
}

struct store_tag_rows {
	store_tag_cb cb;
	void *arg;
};

static int store_tag_row(sqlite3_stmt *st, void *arg)
{
	struct store_tag_rows *l = arg;

	return l->cb((const char *)sqlite3_column_text(st, 0),
		     (const char *)sqlite3_column_text(st, 1),
		     (const char *)sqlite3_column_text(st, 2), l->arg);
}

static int store_sqlite_tag_list(struct store_backend *b, const char *project, const char *key_id,
				 store_tag_cb cb, void *arg)
{
	struct store_tag_rows l = { cb, arg };
	const char *t[] = { project, key_id };

	if (key_id)
		return store_query(b,
				   "SELECT t.key_id, t.tag_key, t.tag_value FROM tags t JOIN keys k "
				   "ON k.key_id = t.key_id WHERE k.project_id = ? AND t.key_id = ? "
				   "ORDER BY t.tag_key",
				   t, 2, NULL, 0, store_tag_row, &l);
	return store_query(b,
			   "SELECT t.key_id, t.tag_key, t.tag_value FROM tags t JOIN keys k "
			   "ON k.key_id = t.key_id WHERE k.project_id = ? "
			   "ORDER BY t.tag_key, t.tag_value, t.key_id",
			   t, 1, NULL, 0, store_tag_row, &l);
}

static int store_sqlite_project_policy_set(struct store_backend *b, const char *project,
					   const struct store_project_policy *p)
{
	const char *t[] = { project };
	const int64_t v[] = { p->owner, p->group, p->mode, p->plaintext_mode };

	return store_query(b,
			   "INSERT OR REPLACE INTO project_policies(project_id, owner_uid, "
			   "group_gid, dir_mode, plaintext_mode) VALUES(?,?,?,?,?)",
			   t, 1, v, 4, NULL, NULL);
}

static const char *store_principal_name(enum store_principal kind)
{
	return kind == STORE_BIND_UID ? "uid" : "gid";
}

static int store_sqlite_binding_set(struct store_backend *b, const char *project,
				    enum store_principal kind, uint32_t id, enum kms_role role)
{
	const char *t[] = { project, store_principal_name(kind), kms_role_name(role) };
	const int64_t v[] = { id };

	if (role == KMS_ROLE_NONE)
		return store_query(b,
				   "DELETE FROM bindings WHERE project_id = ? AND principal = ? "
				   "AND principal_id = ?",
				   t, 2, v, 1, NULL, NULL);
	return store_query(b,
			   "INSERT OR REPLACE INTO bindings(project_id, principal, role, "
			   "principal_id) VALUES(?,?,?,?)",
			   t, 3, v, 1, NULL, NULL);
}

static int store_sqlite_token_put(struct store_backend *b, const struct store_token_info *tk)
{
	const char *t[] = { tk->id, tk->project, tk->user, kms_role_name(tk->role) };
	const int64_t v[] = { tk->expiry, tk->issued_ms, tk->revoked ? 1 : 0 };

	return store_query(b,
			   "INSERT OR REPLACE INTO tokens(token_id, project_id, user_name, role, "
			   "expiry, issued_ms, revoked) VALUES(?,?,?,?,?,?,?)",
			   t, 4, v, 3, NULL, NULL);
}

/* Typed reads of policy columns: false when the column does not hold a value of the type. */
static bool store_col_int(sqlite3_stmt *st, int col, int64_t min, int64_t max, int64_t *out)
{
	if (sqlite3_column_type(st, col) != SQLITE_INTEGER)
		return false;
	*out = sqlite3_column_int64(st, col);
	return *out >= min && *out <= max;
}

static bool store_col_u32(sqlite3_stmt *st, int col, uint32_t *out)
{
	int64_t v = 0;
	bool ok = store_col_int(st, col, 0, UINT32_MAX, &v);

	*out = (uint32_t)v;
	return ok;
}

/* Text that fits cap - 1 bytes and is not empty. */
static bool store_col_text(sqlite3_stmt *st, int col, char *out, size_t cap)
{
	const unsigned char *p = sqlite3_column_text(st, col);
	int n = sqlite3_column_bytes(st, col);

	store_copy(out, cap, p);
	return sqlite3_column_type(st, col) == SQLITE_TEXT && n > 0 && (size_t)n < cap;
}

static bool store_col_role(sqlite3_stmt *st, int col, enum kms_role *out)
{
	*out = sqlite3_column_type(st, col) == SQLITE_TEXT
		       ? kms_role_parse((const char *)sqlite3_column_text(st, col))
		       : KMS_ROLE_NONE;
	return *out != KMS_ROLE_NONE;
}

/* The key column of a policy row as text, whatever it holds. */
static const char *store_col_key(sqlite3_stmt *st, int col)
{
	const unsigned char *p = sqlite3_column_text(st, col);

	return p ? (const char *)p : "";
}

static int store_project_policy_row(sqlite3_stmt *st, void *arg)
{
	const struct store_policy_visitor *v = arg;
	struct store_project_policy p = { 0 };
	bool ok = store_col_u32(st, 1, &p.owner) && store_col_u32(st, 2, &p.group) &&
		  store_col_u32(st, 3, &p.mode) && store_col_u32(st, 4, &p.plaintext_mode);

	return v->project(store_col_key(st, 0), &p, ok, v->arg);
}

static int store_binding_row(sqlite3_stmt *st, void *arg)
{
	const struct store_policy_visitor *v = arg;
	const char *principal = (const char *)sqlite3_column_text(st, 1);
	enum store_principal kind = STORE_BIND_UID;
	enum kms_role role = KMS_ROLE_NONE;
	uint32_t id = 0;
	bool ok = sqlite3_column_type(st, 1) == SQLITE_TEXT;

	if (ok && strcmp(principal, "gid") == 0)
		kind = STORE_BIND_GID;
	else if (ok)
		ok = strcmp(principal, "uid") == 0;
	ok = store_col_u32(st, 2, &id) && store_col_role(st, 3, &role) && ok;
	return v->binding(store_col_key(st, 0), kind, id, role, ok, v->arg);
}

static int store_token_row(sqlite3_stmt *st, void *arg)
{
	const struct store_policy_visitor *v = arg;
	struct store_token_info t;
	int64_t revoked = 0;
	bool ok;

	memset(&t, 0, sizeof(t));
	store_copy(t.id, sizeof(t.id), sqlite3_column_text(st, 0));
	ok = store_col_text(st, 1, t.project, sizeof(t.project)) &&
	     store_col_text(st, 2, t.user, sizeof(t.user)) && store_col_role(st, 3, &t.role) &&
	     store_col_int(st, 4, INT64_MIN, INT64_MAX, &t.expiry) &&
	     store_col_int(st, 5, INT64_MIN, INT64_MAX, &t.issued_ms) &&
	     store_col_int(st, 6, 0, 1, &revoked);
	t.revoked = revoked != 0;
	return v->token(store_col_key(st, 0), &t, ok, v->arg);
}

static int store_sqlite_policy_list(struct store_backend *b, const struct store_policy_visitor *v)
{
	int r = 0;

	if (v->binding)
		r = store_query(b,
				"SELECT project_id, principal, principal_id, role FROM bindings "
				"ORDER BY project_id, principal, principal_id",
				NULL, 0, NULL, 0, store_binding_row, (void *)v);
	if (r == 0 && v->project)
		r = store_query(b,
				"SELECT project_id, owner_uid, group_gid, dir_mode, plaintext_mode "
				"FROM project_policies ORDER BY project_id",
				NULL, 0, NULL, 0, store_project_policy_row, (void *)v);
	if (r == 0 && v->token)
		r = store_query(b,
				"SELECT token_id, project_id, user_name, role, expiry, issued_ms, "
				"revoked FROM tokens ORDER BY token_id",
				NULL, 0, NULL, 0, store_token_row, (void *)v);
	return r;
}

const struct store_backend_ops store_sqlite_ops = {
	.name = "sqlite",
	.open = store_sqlite_open,
	.close = store_sqlite_close,
	.meta_get = store_sqlite_meta_get,
	.meta_set = store_sqlite_meta_set,
	.project_ensure = store_sqlite_project_ensure,
	.project_exists = store_sqlite_project_exists,
	.project_list = store_sqlite_project_list,
	.key_insert = store_sqlite_key_insert,
	.key_load = store_sqlite_key_load,
	.key_list = store_sqlite_key_list,
	.key_count = store_sqlite_key_count,
	.key_update = store_sqlite_key_update,
	.key_add_version = store_sqlite_key_add_version,
	.key_replace_material = store_sqlite_key_replace_material,
	.key_delete = store_sqlite_key_delete,
	.wipe_deleted = store_sqlite_wipe_deleted,
	.key_due = store_sqlite_key_due,
	.data_version = store_sqlite_data_version,
	.grant_insert = store_sqlite_grant_insert,
	.grant_delete = store_sqlite_grant_delete,
	.grant_list = store_sqlite_grant_list,
	.grant_count_max = store_sqlite_grant_count_max,
	.tag_set = store_sqlite_tag_set,
	.tag_delete = store_sqlite_tag_delete,
	.tag_list = store_sqlite_tag_list,
	.project_policy_set = store_sqlite_project_policy_set,
	.binding_set = store_sqlite_binding_set,
	.token_put = store_sqlite_token_put,
	.policy_list = store_sqlite_policy_list,
	.key_scan = store_sqlite_key_scan,
};
