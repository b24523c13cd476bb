/* The embedded backend: one SQLite database in the state directory.
 *
 * WAL with synchronous=FULL makes every commit durable before it returns (a kill -9 or power cut
 * after a successful create-key keeps the key); a single connection behind one mutex keeps the
 * code simple, and the hot path never gets here because the store caches snapshots. */
#include "store_backend.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "common/kms_err.h"

struct store_backend {
	sqlite3 *db;
	pthread_mutex_t lock;
	char path[4096];
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

/* Schema 5: roles bound to cgroup v2 subtrees (path: '/' and below) and remembered token
 * bindings (kms_store.h, struct store_session; sealed holds the claims, never a token). */
#define STORE_SCHEMA5_TABLES                                                                       \
	"CREATE TABLE IF NOT EXISTS cgroup_bindings("                                              \
	"  project_id TEXT NOT NULL, path TEXT NOT NULL, role TEXT NOT NULL,"                      \
	"  PRIMARY KEY(project_id, path));"                                                        \
	"CREATE TABLE IF NOT EXISTS sessions("                                                     \
	"  session_id TEXT PRIMARY KEY, host TEXT NOT NULL, token_id TEXT NOT NULL,"               \
	"  expires_ms INTEGER NOT NULL, sealed BLOB NOT NULL);"

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
	"  import_digest BLOB,"
	"  revision INTEGER NOT NULL DEFAULT 0);"
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
	"  PRIMARY KEY(key_id, tag_key));" STORE_POLICY_TABLES STORE_SCHEMA5_TABLES
	"INSERT OR IGNORE INTO meta(name, value) VALUES('schema_version', '5');";

/* Schema versions: 1 the first; 2 adds keys.expiration_ms and keys.import_digest (imported key
 * material); 3 replaces the policy table of (kind, name, value) strings by typed tables (modes
 * as integers, roles by name); 4 adds keys.revision (writes conditional on it, so a change
 * kmsctl made meanwhile is never overwritten); 5 adds cgroup_bindings and sessions (tables only:
 * what version 4 holds reads the same). A database of an older version is upgraded when opened
 * read-write. */
#define STORE_SCHEMA_VERSION 5
static const char store_sqlite_upgrade_1_2[] =
	"ALTER TABLE keys ADD COLUMN expiration_ms INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE keys ADD COLUMN import_digest BLOB;"
	"UPDATE meta SET value = '2' WHERE name = 'schema_version';";
static const char store_sqlite_upgrade_3_4[] =
	"ALTER TABLE keys ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;"
	"UPDATE meta SET value = '4' WHERE name = 'schema_version';";
static const char store_sqlite_upgrade_4_5[] =
	STORE_SCHEMA5_TABLES "UPDATE meta SET value = '5' WHERE name = 'schema_version';";

#define STORE_KEY_COLUMNS                                                                          \
	"project_id, key_id, key_alias, key_description, key_spec, key_usage, origin, key_state, " \
	"creation_ms, deletion_ms, rotation_enabled, rotation_interval, last_rotation_ms, "        \
	"rotations, current_version, expiration_ms, import_digest, revision"

#define STORE_KEY_VALUES                                                                           \
	":project_id, :key_id, :key_alias, :key_description, :key_spec, :key_usage, :origin, "     \
	":key_state, :creation_ms, :deletion_ms, :rotation_enabled, :rotation_interval, "          \
	":last_rotation_ms, :rotations, :current_version, :expiration_ms, :import_digest, "        \
	":revision"

/* A constraint failure, by which constraint failed (extended result codes are on). */
static int store_sqlite_constraint_err(sqlite3 *db, int rc)
{
	const char *msg = db ? sqlite3_errmsg(db) : "";

	switch (rc) {
	case SQLITE_CONSTRAINT_UNIQUE:
		/* "UNIQUE constraint failed: keys.project_id, keys.key_alias" (index keys_alias) */
		return strstr(msg, "keys.key_alias") ? KMS_E_ALIAS_DUPLICATE : KMS_E_INTERNAL;
	case SQLITE_CONSTRAINT_FOREIGNKEY:
		return KMS_E_KEY_NOT_FOUND; /* the key the row belongs to is gone */
	case SQLITE_CONSTRAINT_CHECK:
	case SQLITE_CONSTRAINT_NOTNULL:
		return KMS_E_BAD_PARAM;
	case SQLITE_CONSTRAINT_PRIMARYKEY: /* random ids clashed or a row went in twice: a bug */
	default:
		return KMS_E_INTERNAL;
	}
}

/* What an SQLite result means for the store (db: for the details of a failed constraint). */
static int store_sqlite_err(sqlite3 *db, int rc)
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
		return store_sqlite_constraint_err(db, rc);
	default:
		return KMS_E_IO;
	}
}

static void store_copy_text(char *dst, size_t cap, const unsigned char *src)
{
	snprintf(dst, cap, "%s", src ? (const char *)src : "");
}

/* A statement's parameters, bound by name (":key_id"). A name the statement does not use is
 * skipped, so one list serves several statements (the INSERT and the UPDATE of a key). */
enum store_param_type { STORE_P_TEXT, STORE_P_INT, STORE_P_BLOB };
struct store_param {
	const char *name;
	enum store_param_type type;
	const char *text; /* NULL binds NULL */
	int64_t i;
	const void *blob; /* NULL binds NULL */
	size_t n;
};
#define STORE_TEXT(nm, v)                                                                          \
	{                                                                                          \
		.name = (nm), .type = STORE_P_TEXT, .text = (v)                                    \
	}
#define STORE_INT(nm, v)                                                                           \
	{                                                                                          \
		.name = (nm), .type = STORE_P_INT, .i = (int64_t)(v)                               \
	}
#define STORE_BLOB(nm, p, len)                                                                     \
	{                                                                                          \
		.name = (nm), .type = STORE_P_BLOB, .blob = (p), .n = (len)                        \
	}
/* The array and its length, as store_run and store_query take them. */
#define STORE_PARAMS(...)                                                                          \
	(const struct store_param[]){ __VA_ARGS__ },                                               \
		KMS_ARRAY_SIZE(((const struct store_param[]){ __VA_ARGS__ }))

static void store_bind(sqlite3_stmt *st, const struct store_param *p, size_t np)
{
	for (size_t i = 0; i < np; i++) {
		int col = sqlite3_bind_parameter_index(st, p[i].name);

		if (col == 0)
			continue;
		if (p[i].type == STORE_P_INT)
			sqlite3_bind_int64(st, col, p[i].i);
		else if (p[i].type == STORE_P_TEXT && p[i].text)
			sqlite3_bind_text(st, col, p[i].text, -1, SQLITE_STATIC);
		else if (p[i].type == STORE_P_BLOB && p[i].blob)
			sqlite3_bind_blob(st, col, p[i].blob, (int)p[i].n, SQLITE_STATIC);
		else
			sqlite3_bind_null(st, col);
	}
}

/* Rows of a query, one by one; a non-zero return stops the query and is returned. */
typedef int (*store_row_fn)(sqlite3_stmt *st, void *arg);

/* Prepare sql, bind p, and hand each row to fn (NULL: none expected). Caller holds the lock. */
static int store_run(sqlite3 *db, const char *sql, const struct store_param *p, size_t np,
		     store_row_fn fn, void *arg)
{
	sqlite3_stmt *st = NULL;
	int r = 0, rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);

	if (rc == SQLITE_OK) {
		store_bind(st, p, np);
		while ((rc = sqlite3_step(st)) == SQLITE_ROW)
			if (fn && (r = fn(st, arg)) != 0)
				break;
	}
	if (r == 0 && rc != SQLITE_DONE)
		r = store_sqlite_err(db, rc);
	sqlite3_finalize(st);
	return r;
}

/* store_run under the lock; *changes (if changes) gets the number of rows it changed. */
static int store_query_changes(struct store_backend *b, const char *sql,
			       const struct store_param *p, size_t np, store_row_fn fn, void *arg,
			       int *changes)
{
	int r;

	pthread_mutex_lock(&b->lock);
	r = store_run(b->db, sql, p, np, fn, arg);
	if (changes)
		*changes = sqlite3_changes(b->db);
	pthread_mutex_unlock(&b->lock);
	return r;
}

static int store_query(struct store_backend *b, const char *sql, const struct store_param *p,
		       size_t np, store_row_fn fn, void *arg)
{
	return store_query_changes(b, sql, p, np, fn, arg, NULL);
}

/* Run fn in one write transaction. BEGIN IMMEDIATE takes the write lock first (waiting out
 * another process's writer for the busy timeout), so what fn reads and what it writes are one
 * step; COMMIT makes it durable (synchronous=FULL) before we return; any failure rolls all of it
 * back. Caller holds the lock (or owns db alone, at open). */
typedef int (*store_tx_fn)(sqlite3 *db, void *arg);

static int store_tx_db(sqlite3 *db, store_tx_fn fn, void *arg)
{
	int r = store_sqlite_err(db, sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL));

	if (r < 0)
		return r;
	r = fn(db, arg);
	if (r == 0)
		r = store_sqlite_err(db, sqlite3_exec(db, "COMMIT", NULL, NULL, NULL));
	if (r < 0)
		(void)sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return r;
}

static int store_tx(struct store_backend *b, store_tx_fn fn, void *arg)
{
	int r;

	pthread_mutex_lock(&b->lock);
	r = store_tx_db(b->db, fn, arg);
	pthread_mutex_unlock(&b->lock);
	return r;
}

static int store_int_row(sqlite3_stmt *st, void *arg)
{
	*(int64_t *)arg = sqlite3_column_int64(st, 0);
	return 0;
}

static int store_count_row(sqlite3_stmt *st, void *arg)
{
	*(size_t *)arg = (size_t)sqlite3_column_int64(st, 0);
	return 0;
}

static int store_true_row(sqlite3_stmt *st, void *arg)
{
	*(bool *)arg = true;
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

/* A typed column of a version 2 row, or the unreadable marker in its place. */
static struct store_param store_v2_int(const char *name, bool ok, int64_t v)
{
	struct store_param p = STORE_INT(name, v);

	if (!ok)
		p = (struct store_param)STORE_TEXT(name, STORE_V2_UNREADABLE);
	return p;
}

static int store_v2_row(sqlite3_stmt *row, void *arg)
{
	const char *kind = (const char *)sqlite3_column_text(row, 0);
	const char *name = (const char *)sqlite3_column_text(row, 1);
	const char *value = (const char *)sqlite3_column_text(row, 2);
	sqlite3 *db = arg;
	struct store_token_info t = { 0 };
	char project[KMS_MAX_PROJECT_ID + 1], principal[4] = "", role[8] = "";
	const char *bind_role = NULL;
	int64_t n[4] = { 0 }, id = 0, revoked = 0;
	bool ok;

	if (strcmp(kind, "project") == 0) {
		ok = store_v2_project_parse(value, n);
		return store_run(db,
				 "INSERT INTO project_policies(project_id, owner_uid, group_gid, "
				 "dir_mode, plaintext_mode) VALUES(:project_id, :owner_uid, "
				 ":group_gid, :dir_mode, :plaintext_mode)",
				 STORE_PARAMS(STORE_TEXT(":project_id", name),
					      store_v2_int(":owner_uid", ok, n[0]),
					      store_v2_int(":group_gid", ok, n[1]),
					      store_v2_int(":dir_mode", ok, n[2]),
					      store_v2_int(":plaintext_mode", ok, n[3])),
				 NULL, NULL);
	}
	if (strcmp(kind, "bind") == 0) {
		/* Unreadable: the whole name stands in for the id, so each row keeps its own key. */
		ok = store_v2_binding_parse(name, value, project, principal, &id, &bind_role);
		return store_run(
			db,
			"INSERT INTO bindings(project_id, principal, principal_id, role) "
			"VALUES(:project_id, :principal, :principal_id, :role)",
			STORE_PARAMS(STORE_TEXT(":project_id", project),
				     STORE_TEXT(":principal", ok ? principal : STORE_V2_UNREADABLE),
				     ok ? (struct store_param)STORE_INT(":principal_id", id)
					: (struct store_param)STORE_TEXT(":principal_id", name),
				     STORE_TEXT(":role", ok ? bind_role : value)),
			NULL, NULL);
	}
	if (strcmp(kind, "token") == 0) {
		ok = store_v2_token_parse(value, &t, role, &revoked);
		return store_run(
			db,
			"INSERT INTO tokens(token_id, project_id, user_name, role, expiry, "
			"issued_ms, revoked) VALUES(:token_id, :project_id, :user_name, "
			":role, :expiry, :issued_ms, :revoked)",
			STORE_PARAMS(STORE_TEXT(":token_id", name),
				     STORE_TEXT(":project_id", t.project),
				     STORE_TEXT(":user_name", t.user), STORE_TEXT(":role", role),
				     store_v2_int(":expiry", ok, t.expiry),
				     store_v2_int(":issued_ms", ok, t.issued_ms),
				     store_v2_int(":revoked", ok, revoked)),
			NULL, NULL);
	}
	return 0;
}

/* Version 2 -> 3. A version 1 database may predate the policy table. */
static int store_sqlite_upgrade_2_3(sqlite3 *db)
{
	int r = store_sqlite_err(db, sqlite3_exec(db,
						  STORE_POLICY_TABLES
						  "CREATE TABLE IF NOT EXISTS policy(kind TEXT NOT "
						  "NULL, name TEXT NOT NULL, value TEXT NOT NULL, "
						  "PRIMARY KEY(kind, name));",
						  NULL, NULL, NULL));

	if (r == 0)
		r = store_run(db, "SELECT kind, name, value FROM policy", NULL, 0, store_v2_row,
			      db);
	if (r == 0)
		r = store_sqlite_err(db, sqlite3_exec(db,
						      "DROP TABLE policy;"
						      "UPDATE meta SET value = '3' WHERE name = "
						      "'schema_version';",
						      NULL, NULL, NULL));
	return r;
}

static int store_schema_version(sqlite3 *db, int64_t *version)
{
	*version = 0;
	return store_run(db, "SELECT value FROM meta WHERE name = 'schema_version'", NULL, 0,
			 store_int_row, version);
}

/* Inside the upgrade's transaction: another process may have upgraded meanwhile. */
static int store_sqlite_upgrade_tx(sqlite3 *db, void *arg)
{
	int64_t version = 0;
	int r = store_schema_version(db, &version);

	(void)arg;
	if (r == 0 && version == 1)
		r = store_sqlite_err(db,
				     sqlite3_exec(db, store_sqlite_upgrade_1_2, NULL, NULL, NULL));
	if (r == 0 && (version == 1 || version == 2))
		r = store_sqlite_upgrade_2_3(db);
	if (r == 0 && version >= 1 && version <= 3)
		r = store_sqlite_err(db,
				     sqlite3_exec(db, store_sqlite_upgrade_3_4, NULL, NULL, NULL));
	if (r == 0 && version >= 1 && version <= 4)
		r = store_sqlite_err(db,
				     sqlite3_exec(db, store_sqlite_upgrade_4_5, NULL, NULL, NULL));
	return r;
}

/* Bring an older database to STORE_SCHEMA_VERSION, in one transaction. *refused: the version
 * is one we cannot upgrade here, and why says so. */
static int store_sqlite_upgrade(sqlite3 *db, bool read_only, bool *refused, char *why,
				size_t why_len)
{
	int64_t version = 0;
	int r = store_schema_version(db, &version);

	*refused = r == 0 && version != STORE_SCHEMA_VERSION &&
		   (read_only || version > STORE_SCHEMA_VERSION || version < 1);
	if (r < 0 || version == STORE_SCHEMA_VERSION)
		return r;
	if (version > STORE_SCHEMA_VERSION || version < 1) {
		snprintf(why, why_len,
			 "the key database has schema version %lld, this kmsfs knows %d; use the "
			 "kmsfs release that wrote it",
			 (long long)version, STORE_SCHEMA_VERSION);
		return KMS_E_IO;
	}
	if (read_only) {
		snprintf(
			why, why_len,
			"the key database has schema version %lld and must be upgraded to %d: open "
			"it read-write once (start kmsfs or run kmsctl)",
			(long long)version, STORE_SCHEMA_VERSION);
		return KMS_E_IO;
	}
	return store_tx_db(db, store_sqlite_upgrade_tx, NULL);
}

static int store_sqlite_open(const struct store_backend_params *p, struct store_backend **out,
			     char *why, size_t why_len)
{
	const char *state_dir = p->state_dir;
	bool create = p->create, read_only = p->read_only;
	struct store_backend *b = NULL;
	char path[4096];
	int flags = read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
	bool refused = false;
	int r = KMS_E_IO, rc;
	/* kms.db in state_dir, or the file of "sqlite:FILE" (a backup) */
	const char *file =
		p->uri && strncmp(p->uri, "sqlite:", 7) == 0 && p->uri[7] ? p->uri + 7 : NULL;

	*out = NULL;
	if (create && !read_only)
		flags |= SQLITE_OPEN_CREATE;
	flags |= SQLITE_OPEN_NOMUTEX; /* we serialise with our own mutex */
	if (file ? (size_t)snprintf(path, sizeof(path), "%s", file) >= sizeof(path)
		 : (size_t)snprintf(path, sizeof(path), "%s/kms.db", state_dir) >= sizeof(path)) {
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
	/* A backup file is one file (copied, moved, opened read-only on another medium). */
	rc = sqlite3_exec(b->db, file ? "PRAGMA journal_mode=DELETE;" : "PRAGMA journal_mode=WAL;",
			  NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(b->db,
				  "PRAGMA synchronous=FULL;"
				  "PRAGMA foreign_keys=ON; PRAGMA secure_delete=ON;",
				  NULL, NULL, NULL);
	if (rc == SQLITE_OK && !read_only)
		rc = sqlite3_exec(b->db, store_sqlite_schema, NULL, NULL, NULL);
	r = store_sqlite_err(b->db, rc);
	if (r == 0 && (r = store_sqlite_upgrade(b->db, read_only, &refused, why, why_len)) < 0 &&
	    refused)
		goto out;
	if (r == 0)
		r = store_sqlite_err(b->db, sqlite3_exec(b->db,
							 "SELECT count(*) FROM "
							 "(SELECT 1 FROM keys LIMIT 1);",
							 NULL, NULL, NULL));
	if (r < 0) {
		snprintf(why, why_len,
			 "key database '%.300s' is unusable (%s); restore it from a backup or fix "
			 "the "
			 "file's permissions and the file system",
			 path, sqlite3_errmsg(b->db));
		goto out;
	}
	snprintf(b->path, sizeof(b->path), "%s", path);
	*out = b;
	b = NULL;
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

struct store_meta_row {
	char *out;
	size_t cap;
	bool *found;
};

static int store_meta_row(sqlite3_stmt *st, void *arg)
{
	struct store_meta_row *m = arg;

	store_copy_text(m->out, m->cap, sqlite3_column_text(st, 0));
	*m->found = true;
	return 0;
}

static int store_sqlite_meta_get(struct store_backend *b, const char *name, char *out, size_t cap,
				 bool *found)
{
	struct store_meta_row m = { out, cap, found };

	*found = false;
	return store_query(b, "SELECT value FROM meta WHERE name = :name",
			   STORE_PARAMS(STORE_TEXT(":name", name)), store_meta_row, &m);
}

static int store_sqlite_meta_set(struct store_backend *b, const char *name, const char *value)
{
	return store_query(b, "INSERT OR REPLACE INTO meta(name, value) VALUES(:name, :value)",
			   STORE_PARAMS(STORE_TEXT(":name", name), STORE_TEXT(":value", value)),
			   NULL, NULL);
}

static int store_sqlite_meta_add(struct store_backend *b, const char *name, const char *value,
				 bool *added)
{
	int changes = 0;
	int r = store_query_changes(
		b, "INSERT OR IGNORE INTO meta(name, value) VALUES(:name, :value)",
		STORE_PARAMS(STORE_TEXT(":name", name), STORE_TEXT(":value", value)), NULL, NULL,
		&changes);

	*added = r == 0 && changes == 1;
	return r;
}

static int store_sqlite_project_ensure(struct store_backend *b, const char *project, int64_t now_ms)
{
	return store_query(
		b,
		"INSERT OR IGNORE INTO projects(project_id, created_ms) "
		"VALUES(:project_id, :created_ms)",
		STORE_PARAMS(STORE_TEXT(":project_id", project), STORE_INT(":created_ms", now_ms)),
		NULL, NULL);
}

/* A count over one project's rows (sql names it :project_id). */
static int store_project_count(struct store_backend *b, const char *sql, const char *project,
			       size_t *n)
{
	*n = 0;
	return store_query(b, sql, STORE_PARAMS(STORE_TEXT(":project_id", project)),
			   store_count_row, n);
}

static int store_sqlite_project_exists(struct store_backend *b, const char *project, bool *exists)
{
	size_t n = 0;
	int r = store_project_count(
		b, "SELECT count(*) FROM projects WHERE project_id = :project_id", project, &n);

	*exists = n > 0;
	return r;
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

	return store_query(b, "SELECT project_id FROM projects ORDER BY project_id", NULL, 0,
			   store_project_row, &p);
}

static void store_meta_from_row(sqlite3_stmt *st, struct store_key_meta *m)
{
	memset(m, 0, sizeof(*m));
	store_copy_text(m->project, sizeof(m->project), sqlite3_column_text(st, 0));
	store_copy_text(m->key_id, sizeof(m->key_id), sqlite3_column_text(st, 1));
	store_copy_text(m->alias, sizeof(m->alias), sqlite3_column_text(st, 2));
	store_copy_text(m->description, sizeof(m->description), sqlite3_column_text(st, 3));
	store_copy_text(m->key_spec, sizeof(m->key_spec), sqlite3_column_text(st, 4));
	store_copy_text(m->key_usage, sizeof(m->key_usage), sqlite3_column_text(st, 5));
	store_copy_text(m->origin, sizeof(m->origin), sqlite3_column_text(st, 6));
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
	m->revision = (uint64_t)sqlite3_column_int64(st, 17);
}

/* Write a key's fields: the INSERT of a new key or the UPDATE of its mutable fields, both
 * binding the named parameters of STORE_KEY_VALUES they use. Caller holds the lock. */
static int store_key_write(sqlite3 *db, const char *sql, const struct store_key_meta *m)
{
	return store_run(
		db, sql,
		STORE_PARAMS(STORE_TEXT(":project_id", m->project),
			     STORE_TEXT(":key_id", m->key_id), STORE_TEXT(":key_alias", m->alias),
			     STORE_TEXT(":key_description", m->description),
			     STORE_TEXT(":key_spec", m->key_spec),
			     STORE_TEXT(":key_usage", m->key_usage),
			     STORE_TEXT(":origin", m->origin), STORE_INT(":key_state", m->state),
			     STORE_INT(":creation_ms", m->creation_ms),
			     STORE_INT(":deletion_ms", m->deletion_ms),
			     STORE_INT(":rotation_enabled", m->rotation_enabled),
			     STORE_INT(":rotation_interval", m->rotation_interval_days),
			     STORE_INT(":last_rotation_ms", m->last_rotation_ms),
			     STORE_INT(":rotations", m->rotations),
			     STORE_INT(":current_version", m->current_version),
			     STORE_INT(":expiration_ms", m->expiration_ms),
			     STORE_BLOB(":import_digest",
					m->import_digest_set ? m->import_digest : NULL,
					sizeof(m->import_digest)),
			     STORE_INT(":revision", m->revision)),
		NULL, NULL);
}

/* Whether the key's row is there with the given revision: 0 if so, KMS_E_STALE if it has
 * another one (changed by another process since it was read), KMS_E_KEY_NOT_FOUND if it is
 * gone. Inside a write transaction, so the answer holds until it ends. */
static int store_revision_check(sqlite3 *db, const char *key_id, uint64_t revision)
{
	int64_t have = -1;
	int r = store_run(db, "SELECT revision FROM keys WHERE key_id = :key_id",
			  STORE_PARAMS(STORE_TEXT(":key_id", key_id)), store_int_row, &have);

	if (r == 0 && have < 0)
		r = KMS_E_KEY_NOT_FOUND;
	else if (r == 0 && (uint64_t)have != revision)
		r = KMS_E_STALE;
	return r;
}

/* The mutable fields of a key whose row still has m->revision; the row gets m->revision + 1
 * (the caller sets m->revision once the transaction committed). */
static int store_update_locked(sqlite3 *db, const struct store_key_meta *m)
{
	int r = store_key_write(
		db,
		"UPDATE keys SET key_alias = :key_alias, key_description = "
		":key_description, key_state = :key_state, deletion_ms = :deletion_ms, "
		"rotation_enabled = :rotation_enabled, rotation_interval = "
		":rotation_interval, last_rotation_ms = :last_rotation_ms, rotations = "
		":rotations, current_version = :current_version, expiration_ms = "
		":expiration_ms, import_digest = :import_digest, revision = :revision + 1 "
		"WHERE key_id = :key_id AND revision = :revision",
		m);

	if (r == 0 && sqlite3_changes(db) != 1) {
		r = store_revision_check(db, m->key_id, m->revision);
		if (r == 0)
			r = KMS_E_INTERNAL; /* there with its revision, yet not updated */
	}
	return r;
}

/* One sealed material version of key_id. Caller holds the lock, inside a transaction. */
static int store_insert_version_locked(sqlite3 *db, const char *key_id,
				       const struct store_sealed_version *v, int64_t created_ms)
{
	return store_run(db,
			 "INSERT INTO key_versions(key_id, version, sealed, created_ms) "
			 "VALUES(:key_id, :version, :sealed, :created_ms)",
			 STORE_PARAMS(STORE_TEXT(":key_id", key_id),
				      STORE_INT(":version", v->version),
				      STORE_BLOB(":sealed", v->sealed, v->sealed_len),
				      STORE_INT(":created_ms", created_ms)),
			 NULL, NULL);
}

struct store_key_tx {
	const struct store_key_meta *m;
	const struct store_sealed_version *v;
	unsigned quota;
};

static int store_key_insert_tx(sqlite3 *db, void *arg)
{
	const struct store_key_tx *t = arg;
	const struct store_key_meta *m = t->m;
	size_t count = 0;
	bool taken = false;
	int r = store_run(db, "SELECT count(*) FROM keys WHERE project_id = :project_id",
			  STORE_PARAMS(STORE_TEXT(":project_id", m->project)), store_count_row,
			  &count);

	if (r == 0 && count >= t->quota)
		r = KMS_E_TOO_MANY_KEYS;
	if (r == 0)
		r = store_run(db,
			      "SELECT 1 FROM keys WHERE project_id = :project_id AND key_alias = "
			      ":key_alias",
			      STORE_PARAMS(STORE_TEXT(":project_id", m->project),
					   STORE_TEXT(":key_alias", m->alias)),
			      store_true_row, &taken);
	if (r == 0 && taken)
		r = KMS_E_ALIAS_DUPLICATE;
	if (r == 0)
		r = store_key_write(
			db, "INSERT INTO keys(" STORE_KEY_COLUMNS ") VALUES(" STORE_KEY_VALUES ")",
			m);
	if (r == 0 && t->v)
		r = store_insert_version_locked(db, m->key_id, t->v, m->creation_ms);
	return r;
}

static int store_sqlite_key_insert(struct store_backend *b, const struct store_key_meta *m,
				   const struct store_sealed_version *v, unsigned quota)
{
	struct store_key_tx t = { m, v, quota };

	/* One transaction: the quota count, the alias check and the inserts are one step. */
	return store_tx(b, store_key_insert_tx, &t);
}

struct store_key_put {
	const struct store_key_meta *m;
	const struct store_sealed_version *v;
	size_t n;
	bool *added;
};

static int store_key_put_tx(sqlite3 *db, void *arg)
{
	const struct store_key_put *t = arg;
	const struct store_key_meta *m = t->m;
	bool there = false;
	int r = store_run(db, "SELECT 1 FROM keys WHERE key_id = :key_id",
			  STORE_PARAMS(STORE_TEXT(":key_id", m->key_id)), store_true_row, &there);

	if (r < 0 || there)
		return r;
	/* Its project first (the key row refers to it), unless the copy made it already. */
	r = store_run(db,
		      "INSERT OR IGNORE INTO projects(project_id, created_ms) "
		      "VALUES(:project_id, :created_ms)",
		      STORE_PARAMS(STORE_TEXT(":project_id", m->project),
				   STORE_INT(":created_ms", m->creation_ms)),
		      NULL, NULL);
	if (r == 0)
		r = store_key_write(
			db, "INSERT INTO keys(" STORE_KEY_COLUMNS ") VALUES(" STORE_KEY_VALUES ")",
			m);
	for (size_t i = 0; i < t->n && r == 0; i++)
		r = store_insert_version_locked(db, m->key_id, &t->v[i], m->creation_ms);
	*t->added = r == 0;
	return r;
}

static int store_sqlite_key_put(struct store_backend *b, const struct store_key_meta *m,
				const struct store_sealed_version *v, size_t n, bool *added)
{
	struct store_key_put t = { m, v, n, added };
	int r;

	*added = false;
	/* Only store copy (and restore) puts keys, and it ends with a commit at synchronous=FULL
	 * whose sync of the log covers these too, as on PostgreSQL (store_pg_rows.c): no disk
	 * wait per key. A key lost to a power cut before then is copied again by the next run. */
	pthread_mutex_lock(&b->lock);
	(void)sqlite3_exec(b->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
	r = store_tx_db(b->db, store_key_put_tx, &t);
	if (sqlite3_exec(b->db, "PRAGMA synchronous=FULL", NULL, NULL, NULL) != SQLITE_OK && r == 0)
		r = KMS_E_IO;
	pthread_mutex_unlock(&b->lock);
	if (r < 0)
		*added = false;
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
	int r;

	r = store_query(
		b,
		key_id ? "SELECT " STORE_KEY_COLUMNS
			 " FROM keys WHERE project_id = :project_id AND key_id = :key_id"
		       : "SELECT " STORE_KEY_COLUMNS
			 " FROM keys WHERE project_id = :project_id AND key_alias = :key_alias",
		STORE_PARAMS(STORE_TEXT(":project_id", project), STORE_TEXT(":key_id", key_id),
			     STORE_TEXT(":key_alias", alias)),
		store_load_meta_row, &l);
	if (r < 0)
		return r;
	if (!l.found)
		return KMS_E_KEY_NOT_FOUND;
	return store_query(b,
			   "SELECT version, sealed FROM key_versions WHERE key_id = :key_id "
			   "ORDER BY version",
			   STORE_PARAMS(STORE_TEXT(":key_id", meta->key_id)),
			   store_load_version_row, &l);
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

#define STORE_LIST_WHERE                                                                           \
	" FROM keys WHERE project_id = :project_id AND (:state = 0 OR key_state = :state)"

static int store_sqlite_key_list(struct store_backend *b, const char *project, int state,
				 size_t offset, size_t limit, store_backend_meta_cb cb, void *arg,
				 size_t *total)
{
	struct store_list_rows l = { cb, arg };
	const struct store_param p[] = {
		STORE_TEXT(":project_id", project),
		STORE_INT(":state", state),
		STORE_INT(":limit", limit > INT64_MAX ? INT64_MAX : (int64_t)limit),
		STORE_INT(":offset", offset),
	};
	int r;

	*total = 0;
	r = store_query(b, "SELECT count(*)" STORE_LIST_WHERE, p, KMS_ARRAY_SIZE(p),
			store_count_row, total);
	if (r < 0 || limit == 0)
		return r;
	return store_query(b,
			   "SELECT " STORE_KEY_COLUMNS STORE_LIST_WHERE
			   " ORDER BY creation_ms, rowid LIMIT :limit OFFSET :offset",
			   p, KMS_ARRAY_SIZE(p), store_list_row, &l);
}

static int store_sqlite_key_count(struct store_backend *b, const char *project, size_t *count)
{
	return store_project_count(b, "SELECT count(*) FROM keys WHERE project_id = :project_id",
				   project, count);
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
	r = store_version_from_row(st, 18, &v);
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
			   "k.import_digest, k.revision, v.version, v.sealed "
			   "FROM keys k JOIN key_versions v ON v.key_id = k.key_id "
			   "ORDER BY k.project_id, k.creation_ms, k.rowid, v.version",
			   NULL, 0, store_scan_row, &s);
}

/* A write to a key committed: the row has the next revision now (store_backend.h). */
static int store_revision_next(struct store_key_meta *m, int r)
{
	if (r == 0)
		m->revision++;
	return r;
}

static int store_sqlite_key_update(struct store_backend *b, struct store_key_meta *m)
{
	int r;

	pthread_mutex_lock(&b->lock);
	r = store_update_locked(b->db, m);
	pthread_mutex_unlock(&b->lock);
	return store_revision_next(m, r);
}

/* The row first: a stale revision fails as KMS_E_STALE before a version another process added
 * meanwhile could clash with ours. */
static int store_key_add_version_tx(sqlite3 *db, void *arg)
{
	const struct store_key_tx *t = arg;
	int r = store_update_locked(db, t->m);

	return r == 0 ? store_insert_version_locked(db, t->m->key_id, t->v, t->m->last_rotation_ms)
		      : r;
}

static int store_sqlite_key_add_version(struct store_backend *b, struct store_key_meta *m,
					const struct store_sealed_version *v)
{
	struct store_key_tx t = { m, v, 0 };

	return store_revision_next(m, store_tx(b, store_key_add_version_tx, &t));
}

static int store_key_replace_material_tx(sqlite3 *db, void *arg)
{
	const struct store_key_tx *t = arg;
	int r = store_update_locked(db, t->m);

	/* secure_delete=ON overwrites the freed pages of the old sealed material. */
	if (r == 0)
		r = store_run(db, "DELETE FROM key_versions WHERE key_id = :key_id",
			      STORE_PARAMS(STORE_TEXT(":key_id", t->m->key_id)), NULL, NULL);
	if (r == 0 && t->v)
		r = store_insert_version_locked(db, t->m->key_id, t->v, t->m->creation_ms);
	return r;
}

static int store_sqlite_key_replace_material(struct store_backend *b, struct store_key_meta *m,
					     const struct store_sealed_version *v)
{
	struct store_key_tx t = { m, v, 0 };

	return store_revision_next(m, store_tx(b, store_key_replace_material_tx, &t));
}

struct store_key_reseal {
	const char *key_id;
	uint64_t revision;
	const struct store_sealed_version *v;
	size_t n;
};

static int store_key_reseal_tx(sqlite3 *db, void *arg)
{
	const struct store_key_reseal *t = arg;
	int r = store_revision_check(db, t->key_id, t->revision);

	for (size_t i = 0; r == 0 && i < t->n; i++) {
		r = store_run(
			db,
			"UPDATE key_versions SET sealed = :sealed WHERE key_id = :key_id "
			"AND version = :version",
			STORE_PARAMS(STORE_TEXT(":key_id", t->key_id),
				     STORE_INT(":version", t->v[i].version),
				     STORE_BLOB(":sealed", t->v[i].sealed, t->v[i].sealed_len)),
			NULL, NULL);
		if (r == 0 && sqlite3_changes(db) != 1)
			r = KMS_E_STALE; /* the material was replaced meanwhile */
	}
	return r;
}

static int store_sqlite_key_reseal(struct store_backend *b, const char *key_id, uint64_t revision,
				   const struct store_sealed_version *v, size_t n)
{
	struct store_key_reseal t = { key_id, revision, v, n };

	return store_tx(b, store_key_reseal_tx, &t);
}

struct store_key_delete {
	const char *key_id;
	uint64_t revision;
};

static int store_key_delete_tx(sqlite3 *db, void *arg)
{
	const struct store_key_delete *d = arg;
	/* Versions first (explicitly: foreign keys may be off in old databases), then what else
	 * belongs to the key, then the key; secure_delete=ON overwrites the freed pages, so the
	 * sealed material is really gone. */
	static const char *const sql[] = {
		"DELETE FROM key_versions WHERE key_id = :key_id",
		"DELETE FROM grants WHERE key_id = :key_id",
		"DELETE FROM tags WHERE key_id = :key_id",
		"DELETE FROM keys WHERE key_id = :key_id",
	};
	/* Only the key as it was read: a deletion cancelled since is not carried out. */
	int r = store_revision_check(db, d->key_id, d->revision);

	for (size_t i = 0; i < KMS_ARRAY_SIZE(sql) && r == 0; i++)
		r = store_run(db, sql[i], STORE_PARAMS(STORE_TEXT(":key_id", d->key_id)), NULL,
			      NULL);
	return r;
}

static int store_sqlite_key_delete(struct store_backend *b, const char *key_id, uint64_t revision)
{
	struct store_key_delete d = { key_id, revision };

	return store_tx(b, store_key_delete_tx, &d);
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
	if (rc == SQLITE_OK && log_frames > 0)
		rc = SQLITE_BUSY; /* not everything was copied and cut (-1: not in WAL mode) */
	rc = store_sqlite_err(b->db, rc);
	pthread_mutex_unlock(&b->lock);
	return rc;
}

static int store_sqlite_key_due(struct store_backend *b, int64_t now_ms, store_backend_meta_cb cb,
				void *arg)
{
	struct store_list_rows l = { cb, arg };

	return store_query(
		b,
		"SELECT " STORE_KEY_COLUMNS " FROM keys WHERE "
		"(key_state = 4 AND deletion_ms > 0 AND deletion_ms <= :now) OR "
		"(origin = 'external' AND key_state IN (2, 3, 4) AND expiration_ms > 0 "
		" AND expiration_ms <= :now) OR "
		"(key_state = 2 AND rotation_enabled = 1 AND current_version < 63 AND "
		" max(last_rotation_ms, creation_ms) + rotation_interval * 86400000 <= :now)",
		STORE_PARAMS(STORE_INT(":now", now_ms)), store_list_row, &l);
}

static int store_sqlite_data_version(struct store_backend *b, int64_t *version)
{
	return store_query(b, "PRAGMA data_version", NULL, 0, store_int_row, version);
}

/* A write that a count limits (grants, tags of a key): counted and written in one transaction,
 * with the same parameters. */
struct store_limited {
	const char *count_sql;
	const char *write_sql;
	const struct store_param *p;
	size_t np;
	unsigned max;
	int too_many;
};

static int store_limited_tx(sqlite3 *db, void *arg)
{
	const struct store_limited *l = arg;
	int64_t count = 0;
	int r = store_run(db, l->count_sql, l->p, l->np, store_int_row, &count);

	if (r == 0 && count >= (int64_t)l->max)
		r = l->too_many;
	if (r == 0)
		r = store_run(db, l->write_sql, l->p, l->np, NULL, NULL);
	return r;
}

static int store_sqlite_grant_insert(struct store_backend *b, const struct store_grant *g,
				     unsigned max)
{
	const struct store_param p[] = {
		STORE_TEXT(":grant_id", g->grant_id),
		STORE_TEXT(":project_id", g->project),
		STORE_TEXT(":key_id", g->key_id),
		STORE_TEXT(":grantee", g->grantee),
		STORE_TEXT(":grantee_type", g->grantee_type),
		STORE_TEXT(":operations", g->operations),
		STORE_TEXT(":issuer", g->issuer),
		STORE_TEXT(":retiring", g->retiring),
		STORE_TEXT(":name", g->name),
		STORE_INT(":creation_ms", g->creation_ms),
	};
	struct store_limited l = {
		"SELECT count(*) FROM grants WHERE key_id = :key_id",
		"INSERT INTO grants(grant_id, project_id, key_id, grantee, grantee_type, "
		"operations, "
		"issuer, retiring, name, creation_ms) VALUES(:grant_id, :project_id, :key_id, "
		":grantee, :grantee_type, :operations, :issuer, :retiring, :name, :creation_ms)",
		p,
		KMS_ARRAY_SIZE(p),
		max,
		KMS_E_TOO_MANY_GRANTS,
	};

	return store_tx(b, store_limited_tx, &l);
}

static int store_sqlite_grant_put(struct store_backend *b, const struct store_grant *g, bool *added)
{
	int changes = 0;
	int r = store_query_changes(
		b,
		"INSERT OR IGNORE INTO grants(grant_id, project_id, key_id, grantee, grantee_type, "
		"operations, issuer, retiring, name, creation_ms) VALUES(:grant_id, :project_id, "
		":key_id, :grantee, :grantee_type, :operations, :issuer, :retiring, :name, "
		":creation_ms)",
		STORE_PARAMS(
			STORE_TEXT(":grant_id", g->grant_id), STORE_TEXT(":project_id", g->project),
			STORE_TEXT(":key_id", g->key_id), STORE_TEXT(":grantee", g->grantee),
			STORE_TEXT(":grantee_type", g->grantee_type),
			STORE_TEXT(":operations", g->operations), STORE_TEXT(":issuer", g->issuer),
			STORE_TEXT(":retiring", g->retiring), STORE_TEXT(":name", g->name),
			STORE_INT(":creation_ms", g->creation_ms)),
		NULL, NULL, &changes);

	*added = r == 0 && changes == 1;
	return r;
}

static int store_sqlite_grant_delete(struct store_backend *b, const char *grant_id)
{
	return store_query(b, "DELETE FROM grants WHERE grant_id = :grant_id",
			   STORE_PARAMS(STORE_TEXT(":grant_id", grant_id)), NULL, NULL);
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
	store_copy_text(g.grant_id, sizeof(g.grant_id), sqlite3_column_text(st, 0));
	store_copy_text(g.project, sizeof(g.project), sqlite3_column_text(st, 1));
	store_copy_text(g.key_id, sizeof(g.key_id), sqlite3_column_text(st, 2));
	store_copy_text(g.grantee, sizeof(g.grantee), sqlite3_column_text(st, 3));
	store_copy_text(g.grantee_type, sizeof(g.grantee_type), sqlite3_column_text(st, 4));
	store_copy_text(g.operations, sizeof(g.operations), sqlite3_column_text(st, 5));
	store_copy_text(g.issuer, sizeof(g.issuer), sqlite3_column_text(st, 6));
	store_copy_text(g.retiring, sizeof(g.retiring), sqlite3_column_text(st, 7));
	store_copy_text(g.name, sizeof(g.name), sqlite3_column_text(st, 8));
	g.creation_ms = sqlite3_column_int64(st, 9);
	return l->cb(&g, l->arg);
}

/* A filter field that is NULL matches every row. */
#define STORE_GRANT_WHERE                                                                          \
	" FROM grants WHERE (:project_id IS NULL OR project_id = :project_id) AND "                \
	"(:key_id IS NULL OR key_id = :key_id) AND (:grantee IS NULL OR grantee = :grantee) AND "  \
	"(:retiring IS NULL OR retiring = :retiring) AND (:grant_id IS NULL OR grant_id = "        \
	":grant_id)"

static int store_sqlite_grant_list(struct store_backend *b, const struct store_grant_filter *f,
				   size_t offset, size_t limit, store_grant_cb cb, void *arg,
				   size_t *total)
{
	struct store_grant_rows l = { cb, arg };
	const struct store_param p[] = {
		STORE_TEXT(":project_id", f->project),
		STORE_TEXT(":key_id", f->key_id),
		STORE_TEXT(":grantee", f->grantee),
		STORE_TEXT(":retiring", f->retiring),
		STORE_TEXT(":grant_id", f->grant_id),
		STORE_INT(":limit", limit > INT64_MAX ? INT64_MAX : (int64_t)limit),
		STORE_INT(":offset", offset),
	};
	int r;

	if (total) {
		*total = 0;
		r = store_query(b, "SELECT count(*)" STORE_GRANT_WHERE, p, KMS_ARRAY_SIZE(p),
				store_count_row, total);
		if (r < 0 || limit == 0)
			return r;
	}
	return store_query(b,
			   "SELECT grant_id, project_id, key_id, grantee, grantee_type, "
			   "operations, issuer, retiring, name, creation_ms" STORE_GRANT_WHERE
			   " ORDER BY creation_ms, rowid LIMIT :limit OFFSET :offset",
			   p, KMS_ARRAY_SIZE(p), store_grant_row, &l);
}

static int store_sqlite_grant_count_max(struct store_backend *b, const char *project, size_t *n)
{
	return store_project_count(
		b,
		"SELECT coalesce(max(c), 0) FROM (SELECT count(*) AS c FROM grants "
		"WHERE project_id = :project_id GROUP BY key_id)",
		project, n);
}

static int store_sqlite_tag_set(struct store_backend *b, const char *key_id, const char *tag_key,
				const char *tag_value, unsigned max)
{
	const struct store_param p[] = {
		STORE_TEXT(":key_id", key_id),
		STORE_TEXT(":tag_key", tag_key),
		STORE_TEXT(":tag_value", tag_value),
	};
	/* Replacing an existing tag never counts against the limit: it counts -1. */
	struct store_limited l = {
		"SELECT CASE WHEN EXISTS(SELECT 1 FROM tags WHERE key_id = :key_id AND tag_key = "
		":tag_key) THEN -1 ELSE count(*) END FROM tags WHERE key_id = :key_id",
		"INSERT OR REPLACE INTO tags(key_id, tag_key, tag_value) VALUES(:key_id, :tag_key, "
		":tag_value)",
		p,
		KMS_ARRAY_SIZE(p),
		max,
		KMS_E_TOO_MANY_TAGS,
	};

	return store_tx(b, store_limited_tx, &l);
}

static int store_sqlite_tag_delete(struct store_backend *b, const char *key_id, const char *tag_key)
{
	int changes = 0;
	int r = store_query_changes(
		b, "DELETE FROM tags WHERE key_id = :key_id AND tag_key = :tag_key",
		STORE_PARAMS(STORE_TEXT(":key_id", key_id), STORE_TEXT(":tag_key", tag_key)), NULL,
		NULL, &changes);

	return r == 0 && changes == 0 ? KMS_E_TAG_NOT_FOUND : r;
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
	const struct store_param p[] = {
		STORE_TEXT(":project_id", project),
		STORE_TEXT(":key_id", key_id),
	};

	/* By tag key for one key; for a project also by value and key id: an order that does not
	 * depend on key ids or creation times. */
	return store_query(
		b,
		key_id ? "SELECT t.key_id, t.tag_key, t.tag_value FROM tags t JOIN keys k "
			 "ON k.key_id = t.key_id WHERE k.project_id = :project_id AND "
			 "t.key_id = :key_id ORDER BY t.tag_key"
		       : "SELECT t.key_id, t.tag_key, t.tag_value FROM tags t JOIN keys k "
			 "ON k.key_id = t.key_id WHERE k.project_id = :project_id "
			 "ORDER BY t.tag_key, t.tag_value, t.key_id",
		p, KMS_ARRAY_SIZE(p), store_tag_row, &l);
}

static int store_sqlite_project_policy_set(struct store_backend *b, const char *project,
					   const struct store_project_policy *p)
{
	return store_query(
		b,
		"INSERT OR REPLACE INTO project_policies(project_id, owner_uid, "
		"group_gid, dir_mode, plaintext_mode) VALUES(:project_id, :owner_uid, "
		":group_gid, :dir_mode, :plaintext_mode)",
		STORE_PARAMS(STORE_TEXT(":project_id", project), STORE_INT(":owner_uid", p->owner),
			     STORE_INT(":group_gid", p->group), STORE_INT(":dir_mode", p->mode),
			     STORE_INT(":plaintext_mode", p->plaintext_mode)),
		NULL, NULL);
}

static int store_sqlite_binding_set(struct store_backend *b, const char *project,
				    enum store_principal kind, uint32_t id, enum kms_role role)
{
	const struct store_param p[] = {
		STORE_TEXT(":project_id", project),
		STORE_TEXT(":principal", kind == STORE_BIND_UID ? "uid" : "gid"),
		STORE_INT(":principal_id", id),
		STORE_TEXT(":role", kms_role_name(role)),
	};

	return store_query(b,
			   role == KMS_ROLE_NONE
				   ? "DELETE FROM bindings WHERE project_id = :project_id AND "
				     "principal = :principal AND principal_id = :principal_id"
				   : "INSERT OR REPLACE INTO bindings(project_id, principal, "
				     "principal_id, role) VALUES(:project_id, :principal, "
				     ":principal_id, :role)",
			   p, KMS_ARRAY_SIZE(p), NULL, NULL);
}

static int store_sqlite_cgroup_binding_set(struct store_backend *b, const char *project,
					   const char *path, enum kms_role role)
{
	const struct store_param p[] = {
		STORE_TEXT(":project_id", project),
		STORE_TEXT(":path", path),
		STORE_TEXT(":role", kms_role_name(role)),
	};

	return store_query(
		b,
		role == KMS_ROLE_NONE
			? "DELETE FROM cgroup_bindings WHERE project_id = :project_id "
			  "AND path = :path"
			: "INSERT OR REPLACE INTO cgroup_bindings(project_id, path, role) "
			  "VALUES(:project_id, :path, :role)",
		p, KMS_ARRAY_SIZE(p), NULL, NULL);
}

static int store_sqlite_token_put(struct store_backend *b, const struct store_token_info *tk)
{
	return store_query(b,
			   "INSERT OR REPLACE INTO tokens(token_id, project_id, user_name, role, "
			   "expiry, issued_ms, revoked) VALUES(:token_id, :project_id, :user_name, "
			   ":role, :expiry, :issued_ms, :revoked)",
			   STORE_PARAMS(STORE_TEXT(":token_id", tk->id),
					STORE_TEXT(":project_id", tk->project),
					STORE_TEXT(":user_name", tk->user),
					STORE_TEXT(":role", kms_role_name(tk->role)),
					STORE_INT(":expiry", tk->expiry),
					STORE_INT(":issued_ms", tk->issued_ms),
					STORE_INT(":revoked", tk->revoked ? 1 : 0)),
			   NULL, NULL);
}

/* Remembered token bindings (schema 5): the row's clear columns and its sealed part. */
static int store_sqlite_session_put(struct store_backend *b, const struct store_session *sess)
{
	return store_query(b,
			   "INSERT OR REPLACE INTO sessions(session_id, host, token_id, "
			   "expires_ms, sealed) VALUES(:session_id, :host, :token_id, "
			   ":expires_ms, :sealed)",
			   STORE_PARAMS(STORE_TEXT(":session_id", sess->id),
					STORE_TEXT(":host", sess->host),
					STORE_TEXT(":token_id", sess->token_id),
					STORE_INT(":expires_ms", sess->expires_ms),
					STORE_BLOB(":sealed", sess->sealed, sess->sealed_len)),
			   NULL, NULL);
}

static int store_sqlite_session_reseal(struct store_backend *b, const char *id, const uint8_t *old,
				       size_t old_len, const uint8_t *sealed, size_t n)
{
	int changes = 0;
	int r = store_query_changes(b,
				    "UPDATE sessions SET sealed = :sealed WHERE session_id = "
				    ":session_id AND sealed = :old",
				    STORE_PARAMS(STORE_TEXT(":session_id", id),
						 STORE_BLOB(":sealed", sealed, n),
						 STORE_BLOB(":old", old, old_len)),
				    NULL, NULL, &changes);

	return r == 0 && changes != 1 ? KMS_E_STALE : r;
}

static int store_sqlite_session_delete(struct store_backend *b, const char *id)
{
	return store_query(b, "DELETE FROM sessions WHERE session_id = :session_id",
			   STORE_PARAMS(STORE_TEXT(":session_id", id)), NULL, NULL);
}

struct store_session_rows {
	store_session_cb cb;
	void *arg;
};

/* A row whose columns do not fit is handed on with sealed_len 0: it cannot be unsealed, and
 * the store drops it. */
static int store_session_row(sqlite3_stmt *st, void *arg)
{
	struct store_session_rows *l = arg;
	struct store_session sess;
	const void *p = sqlite3_column_blob(st, 4);
	int n = sqlite3_column_bytes(st, 4);

	memset(&sess, 0, sizeof(sess));
	store_copy_text(sess.id, sizeof(sess.id), sqlite3_column_text(st, 0));
	store_copy_text(sess.host, sizeof(sess.host), sqlite3_column_text(st, 1));
	store_copy_text(sess.token_id, sizeof(sess.token_id), sqlite3_column_text(st, 2));
	sess.expires_ms = sqlite3_column_int64(st, 3);
	if (p && n > 0 && (size_t)n <= sizeof(sess.sealed)) {
		memcpy(sess.sealed, p, (size_t)n);
		sess.sealed_len = (size_t)n;
	}
	return l->cb(&sess, l->arg);
}

static int store_sqlite_session_list(struct store_backend *b, const char *host, store_session_cb cb,
				     void *arg)
{
	struct store_session_rows l = { cb, arg };

	return store_query(b,
			   "SELECT session_id, host, token_id, expires_ms, sealed FROM sessions "
			   "WHERE :host IS NULL OR host = :host ORDER BY session_id",
			   STORE_PARAMS(STORE_TEXT(":host", host)), store_session_row, &l);
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

	store_copy_text(out, cap, p);
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

/* The path is checked by the store (store_cgroup_path_valid); here only that it is text. */
static int store_cgroup_binding_row(sqlite3_stmt *st, void *arg)
{
	const struct store_policy_visitor *v = arg;
	enum kms_role role = KMS_ROLE_NONE;
	bool ok = sqlite3_column_type(st, 1) == SQLITE_TEXT;

	ok = store_col_role(st, 2, &role) && ok;
	return v->cgroup_binding(store_col_key(st, 0), store_col_key(st, 1), role, ok, v->arg);
}

static int store_token_row(sqlite3_stmt *st, void *arg)
{
	const struct store_policy_visitor *v = arg;
	struct store_token_info t;
	int64_t revoked = 0;
	bool ok;

	memset(&t, 0, sizeof(t));
	store_copy_text(t.id, sizeof(t.id), sqlite3_column_text(st, 0));
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
				NULL, 0, store_binding_row, (void *)v);
	if (r == 0 && v->cgroup_binding)
		r = store_query(b,
				"SELECT project_id, path, role FROM cgroup_bindings "
				"ORDER BY project_id, path",
				NULL, 0, store_cgroup_binding_row, (void *)v);
	if (r == 0 && v->project)
		r = store_query(b,
				"SELECT project_id, owner_uid, group_gid, dir_mode, plaintext_mode "
				"FROM project_policies ORDER BY project_id",
				NULL, 0, store_project_policy_row, (void *)v);
	if (r == 0 && v->token)
		r = store_query(b,
				"SELECT token_id, project_id, user_name, role, expiry, issued_ms, "
				"revoked FROM tokens ORDER BY token_id",
				NULL, 0, store_token_row, (void *)v);
	return r;
}

static int store_verify_row(sqlite3_stmt *st, void *arg)
{
	char *why = arg;
	const unsigned char *t = sqlite3_column_text(st, 0);

	if (t && strcmp((const char *)t, "ok") == 0)
		return 0;
	snprintf(why, 256, "%s", t ? (const char *)t : "(no answer)");
	return KMS_E_IO;
}

/* PRAGMA quick_check reads every page: seconds for millions of keys. So it is not part of
 * open (a mount must be quick whatever the size) but its own step, on a connection of its
 * own, so that it holds up no request (WAL: readers do not wait for each other). */
static int store_sqlite_verify(struct store_backend *b, char *why, size_t why_len)
{
	char first[256] = "";
	sqlite3 *db = NULL;
	int r, rc = sqlite3_open_v2(b->path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);

	if (rc == SQLITE_OK) {
		sqlite3_busy_timeout(db, 5000);
		r = store_run(db, "PRAGMA quick_check", NULL, 0, store_verify_row, first);
		if (r < 0 && !*first)
			snprintf(first, sizeof(first), "%s", sqlite3_errmsg(db));
	} else {
		r = KMS_E_IO;
		snprintf(first, sizeof(first), "%s", db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
	}
	sqlite3_close(db);
	if (r < 0)
		snprintf(why, why_len, "key database '%.300s' is damaged: %s", b->path, first);
	return r;
}

/* Pages copied per step of a backup: the progress moves, and each step is short. */
#define STORE_BACKUP_PAGES 256

/* The online backup of b's database into dst (a connection to the new file), under the read
 * transaction the caller opened on b, so the copy is of that moment: without it a write by
 * another process between two steps would start the copy over, and under steady load it would
 * never end. Caller holds b's lock. */
static int store_backup_steps(struct store_backend *b, sqlite3 *dst,
			      store_backend_progress_fn progress, void *arg)
{
	sqlite3_backup *bk = sqlite3_backup_init(dst, "main", b->db, "main");
	int rc;

	if (!bk)
		return store_sqlite_err(dst, sqlite3_errcode(dst));
	do {
		rc = sqlite3_backup_step(bk, STORE_BACKUP_PAGES);
		if (progress && (rc == SQLITE_OK || rc == SQLITE_DONE)) {
			int total = sqlite3_backup_pagecount(bk);

			progress((size_t)(total - sqlite3_backup_remaining(bk)), (size_t)total,
				 arg);
		}
	} while (rc == SQLITE_OK);
	sqlite3_backup_finish(bk);
	return rc == SQLITE_DONE ? 0 : store_sqlite_err(dst, rc);
}

static int store_sqlite_backup_file(struct store_backend *b, const char *path,
				    store_backend_progress_fn progress, void *arg, char *why,
				    size_t why_len)
{
	sqlite3 *dst = NULL;
	int r, rc;

	rc = sqlite3_open_v2(
		path, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(dst, "PRAGMA journal_mode=DELETE; PRAGMA synchronous=FULL;", NULL,
				  NULL, NULL);
	if (rc != SQLITE_OK) {
		snprintf(why, why_len, "cannot create '%.300s': %s", path,
			 dst ? sqlite3_errmsg(dst) : sqlite3_errstr(rc));
		sqlite3_close(dst);
		return KMS_E_IO;
	}
	pthread_mutex_lock(&b->lock);
	/* BEGIN and a read: the read transaction (and its snapshot) starts with the read. */
	r = store_sqlite_err(
		b->db, sqlite3_exec(b->db, "BEGIN; SELECT count(*) FROM meta;", NULL, NULL, NULL));
	if (r == 0) {
		r = store_backup_steps(b, dst, progress, arg);
		(void)sqlite3_exec(b->db, "COMMIT", NULL, NULL, NULL);
		if (r < 0)
			snprintf(why, why_len, "cannot copy '%.300s' into '%.300s': %s", b->path,
				 path, sqlite3_errmsg(dst));
	} else {
		snprintf(why, why_len, "cannot read '%.300s': %s", b->path, sqlite3_errmsg(b->db));
	}
	pthread_mutex_unlock(&b->lock);
	if (sqlite3_close(dst) != SQLITE_OK && r == 0) {
		snprintf(why, why_len, "cannot close '%.300s'", path);
		r = KMS_E_IO;
	}
	return r;
}

const struct store_backend_ops store_sqlite_ops = {
	.backup_file = store_sqlite_backup_file,
	.verify = store_sqlite_verify,
	.name = "sqlite",
	.open = store_sqlite_open,
	.close = store_sqlite_close,
	.meta_get = store_sqlite_meta_get,
	.meta_set = store_sqlite_meta_set,
	.meta_add = store_sqlite_meta_add,
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
	.key_reseal = store_sqlite_key_reseal,
	.key_put = store_sqlite_key_put,
	.wipe_deleted = store_sqlite_wipe_deleted,
	.key_due = store_sqlite_key_due,
	.data_version = store_sqlite_data_version,
	.grant_insert = store_sqlite_grant_insert,
	.grant_put = store_sqlite_grant_put,
	.grant_delete = store_sqlite_grant_delete,
	.grant_list = store_sqlite_grant_list,
	.grant_count_max = store_sqlite_grant_count_max,
	.tag_set = store_sqlite_tag_set,
	.tag_delete = store_sqlite_tag_delete,
	.tag_list = store_sqlite_tag_list,
	.project_policy_set = store_sqlite_project_policy_set,
	.binding_set = store_sqlite_binding_set,
	.cgroup_binding_set = store_sqlite_cgroup_binding_set,
	.token_put = store_sqlite_token_put,
	.session_put = store_sqlite_session_put,
	.session_delete = store_sqlite_session_delete,
	.session_list = store_sqlite_session_list,
	.session_reseal = store_sqlite_session_reseal,
	.policy_list = store_sqlite_policy_list,
	.key_scan = store_sqlite_key_scan,
};
