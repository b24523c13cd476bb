/* test-store.c - the durable key store (store/kms_store.h) on a real state directory.
 *
 * Every test starts from a fresh temporary directory (setup()); the directory of the previous
 * test, and the last one at exit, are removed with everything in them. The root key rules are
 * the point of several tests: a state directory whose root.key is missing, foreign or readable
 * by others must refuse to open, and must never get a new root key next to existing keys.
 *
 * The suite is written against the backend interface: every STORE_TEST runs once for each row
 * of backends[] (today SQLite only; a PostgreSQL backend is one more row, with its URI and its
 * way to read and overwrite sealed material from outside). Damage is made from outside the
 * store, as a disk error or an editor would. Tests of one backend's own storage (SQLite: the
 * schema upgrade, rows garbled with SQL, files the WAL leaves behind) are plain TESTs at the end.
 */
#include "kms_test.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kms_test_tmp.h"
#include "store/kms_store.h"
#include "store/store_internal.h"
#include "common/kms_hex.h"
#include "common/kms_time.h"

#define P "proj-a"
#define Q "proj-b"

static char base_dir[4096];
static char state_dir[4200];
static struct store *S;
static char why[1024];

static void path_of(char *out, size_t cap, const char *name);

/* ---- the backends ---- */

static sqlite3 *sqlite_open(int flags)
{
	char path[4300];
	sqlite3 *db = NULL;

	path_of(path, sizeof(path), "kms.db");
	if (sqlite3_open_v2(path, &db, flags, NULL) != SQLITE_OK) {
		kms_test_fail_(__FILE__, __LINE__, "cannot open kms.db");
		sqlite3_close(db);
		return NULL;
	}
	sqlite3_busy_timeout(db, 5000);
	return db;
}

static void sqlite_sealed_read(const char *key_id, uint32_t version, uint8_t *out, size_t cap,
			       size_t *len)
{
	sqlite3 *db = sqlite_open(SQLITE_OPEN_READONLY);
	sqlite3_stmt *st = NULL;

	*len = 0;
	ASSERT_TRUE(db != NULL);
	ASSERT_EQ(sqlite3_prepare_v2(db,
				     "SELECT sealed FROM key_versions WHERE key_id = ? AND "
				     "version = ?",
				     -1, &st, NULL),
		  SQLITE_OK);
	sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, version);
	if (sqlite3_step(st) == SQLITE_ROW && (size_t)sqlite3_column_bytes(st, 0) <= cap) {
		*len = (size_t)sqlite3_column_bytes(st, 0);
		memcpy(out, sqlite3_column_blob(st, 0), *len);
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	ASSERT_TRUE(*len > 0);
}

static void sqlite_sealed_write(const char *key_id, uint32_t version, const uint8_t *p, size_t n)
{
	sqlite3 *db = sqlite_open(SQLITE_OPEN_READWRITE);
	sqlite3_stmt *st = NULL;
	int changes = 0;

	ASSERT_TRUE(db != NULL);
	ASSERT_EQ(sqlite3_prepare_v2(db,
				     "UPDATE key_versions SET sealed = ? WHERE key_id = ? AND "
				     "version = ?",
				     -1, &st, NULL),
		  SQLITE_OK);
	sqlite3_bind_blob(st, 1, p, (int)n, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 2, key_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, version);
	if (sqlite3_step(st) == SQLITE_DONE)
		changes = sqlite3_changes(db);
	sqlite3_finalize(st);
	sqlite3_close(db);
	ASSERT_EQ(changes, 1);
}

/* PostgreSQL (KMS_TEST_PG_URI: a running cluster's database, tests/unit/with-pg.sh). Every
 * test starts from an empty database, as it starts from an empty state directory. */
static char pg_uri[1024];

static PGconn *pg_connect(void)
{
	PGconn *pg = PQconnectdb(pg_uri);

	if (PQstatus(pg) != CONNECTION_OK) {
		kms_test_fail_(__FILE__, __LINE__, PQerrorMessage(pg));
		PQfinish(pg);
		return NULL;
	}
	return pg;
}

static bool pg_ready(void)
{
	const char *uri = getenv("KMS_TEST_PG_URI");
	static bool told;

	if (!uri || !uri[0]) {
		if (!told)
			fprintf(stderr, "SKIP backend postgresql: KMS_TEST_PG_URI is not set\n");
		told = true;
		return false;
	}
	snprintf(pg_uri, sizeof(pg_uri), "%s", uri);
	return true;
}

/* One statement (params: key id, version, and the sealed bytes for an UPDATE); the first
 * column of the first row, binary, into out. */
static int pg_sealed_sql(const char *sql, const char *key_id, uint32_t version, const uint8_t *p,
			 size_t n, uint8_t *out, size_t cap, size_t *len)
{
	PGconn *pg = pg_connect();
	char v[16];
	const char *values[] = { key_id, v, (const char *)p };
	const int lengths[] = { 0, 0, (int)n }, formats[] = { 0, 0, 1 };
	PGresult *res;
	int changed = -1;

	if (!pg)
		return -1;
	snprintf(v, sizeof(v), "%u", version);
	res = PQexecParams(pg, sql, p ? 3 : 2, NULL, values, lengths, formats, 1);
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
	    (size_t)PQgetlength(res, 0, 0) <= cap) {
		*len = (size_t)PQgetlength(res, 0, 0);
		memcpy(out, PQgetvalue(res, 0, 0), *len);
	}
	if (PQresultStatus(res) == PGRES_COMMAND_OK)
		changed = atoi(PQcmdTuples(res));
	PQclear(res);
	PQfinish(pg);
	return changed;
}

static void pg_sealed_read(const char *key_id, uint32_t version, uint8_t *out, size_t cap,
			   size_t *len)
{
	*len = 0;
	(void)pg_sealed_sql("SELECT sealed FROM key_versions WHERE key_id = $1 AND version = $2",
			    key_id, version, NULL, 0, out, cap, len);
	ASSERT_TRUE(*len > 0);
}

static void pg_sealed_write(const char *key_id, uint32_t version, const uint8_t *p, size_t n)
{
	size_t len = 0;

	ASSERT_EQ(pg_sealed_sql("UPDATE key_versions SET sealed = $3 WHERE key_id = $1 AND "
				"version = $2",
				key_id, version, p, n, NULL, 0, &len),
		  1);
}

static void pg_reset(void)
{
	PGconn *pg = pg_connect();
	PGresult *res;

	if (!pg)
		return;
	res = PQexec(pg, "SET client_min_messages = warning; DROP SCHEMA public CASCADE; "
			 "CREATE SCHEMA public");
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		kms_test_fail_(__FILE__, __LINE__, PQerrorMessage(pg));
	PQclear(res);
	PQfinish(pg);
}

struct test_backend {
	const char *name;
	const char *uri;     /* store_options.backend */
	const char *db_file; /* its file in the state directory, NULL if it has none */
	/* The sealed material of one key version, read and overwritten from outside the store. */
	void (*sealed_read)(const char *key_id, uint32_t version, uint8_t *out, size_t cap,
			    size_t *len);
	void (*sealed_write)(const char *key_id, uint32_t version, const uint8_t *p, size_t n);
	bool (*ready)(void); /* NULL: always; false: skip the backend */
	void (*reset)(void); /* empty what outlives a state directory (NULL: nothing) */
};

static const struct test_backend backends[] = {
	{ "sqlite", "sqlite", "kms.db", sqlite_sealed_read, sqlite_sealed_write, NULL, NULL },
	{ "postgresql", pg_uri, NULL, pg_sealed_read, pg_sealed_write, pg_ready, pg_reset },
};

/* The backend of the running test; plain TESTs use the first. */
static const struct test_backend *B = &backends[0];

/* A test of the store through its interface: runs once for every backend. */
#define STORE_TEST(test)                                                                           \
	static void store_test_##test(void);                                                       \
	TEST(test)                                                                                 \
	{                                                                                          \
		for (size_t i = 0; i < KMS_ARRAY_SIZE(backends) && !kms_test_failing(); i++) {     \
			B = &backends[i];                                                          \
			if (B->ready && !B->ready())                                               \
				continue;                                                          \
			store_test_##test();                                                       \
			if (kms_test_failing())                                                    \
				fprintf(stderr, "\tbackend: %s\n", B->name);                       \
		}                                                                                  \
		B = &backends[0];                                                                  \
	}                                                                                          \
	static void store_test_##test(void)

static void teardown(void)
{
	store_close(S);
	S = NULL;
	if (base_dir[0] && kms_test_rmrf(base_dir) != 0)
		fprintf(stderr, "warning: could not remove %s\n", base_dir);
	base_dir[0] = 0;
}

static void path_of(char *out, size_t cap, const char *name)
{
	snprintf(out, cap, "%s/%s", state_dir, name);
}

static int open_store(bool create, struct store **out)
{
	struct store_options o = { .state_dir = state_dir, .backend = B->uri, .create = create };

	why[0] = 0;
	return store_open(&o, out, why, sizeof(why));
}

/* A fresh base dir; the state dir is base/state and does not exist yet. */
static void setup_empty(void)
{
	static bool registered;

	teardown();
	if (!registered) {
		atexit(teardown);
		registered = true;
	}
	kms_test_mkdtemp(base_dir, sizeof(base_dir));
	snprintf(state_dir, sizeof(state_dir), "%s/state", base_dir);
	if (B->reset)
		B->reset();
}

/* setup_empty() plus an open store in S. */
static void setup(void)
{
	setup_empty();
	ASSERT_OK(open_store(true, &S));
	ASSERT_TRUE(S != NULL);
}

/* setup(), and leave the test if it failed. */
#define SETUP()                                                                                    \
	do {                                                                                       \
		setup();                                                                           \
		if (kms_test_failing())                                                            \
			return;                                                                    \
	} while (0)

static void close_store(void)
{
	store_close(S);
	S = NULL;
}

static void reopen(void)
{
	close_store();
	ASSERT_OK(open_store(false, &S));
}

static void new_key(const char *project, const char *alias, char id[KMS_KEY_ID_LEN + 1])
{
	struct store_key *k = NULL;

	ASSERT_OK(store_key_create(S, project, alias, NULL, KMS_DEFAULT_KEY_QUOTA, &k));
	ASSERT_TRUE(k != NULL);
	memcpy(id, k->meta.key_id, KMS_KEY_ID_LEN + 1);
	store_key_release(k);
}

/* Keys "a" and "b" of project P. */
static void new_keys_ab(char a[KMS_KEY_ID_LEN + 1], char b[KMS_KEY_ID_LEN + 1])
{
	new_key(P, "a", a);
	new_key(P, "b", b);
}

static bool uuid_lower(const char *s)
{
	if (strlen(s) != 36)
		return false;
	for (size_t i = 0; i < 36; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;

		if (dash ? s[i] != '-'
			 : !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	}
	return true;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void write_file(const char *path, const void *p, size_t n, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);

	ASSERT_TRUE(fd >= 0);
	ASSERT_EQ(write(fd, p, n), (ssize_t)n);
	ASSERT_EQ(close(fd), 0);
	ASSERT_EQ(chmod(path, mode), 0);
}

static size_t read_file(const char *path, void *p, size_t cap)
{
	int fd = open(path, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return 0;
	n = read(fd, p, cap);
	close(fd);
	return n < 0 ? 0 : (size_t)n;
}

/* ---- opening and creating ---- */

STORE_TEST(open_fresh_creates_state)
{
	char path[4300];
	struct stat st;

	setup_empty();
	ASSERT_EQ(stat(state_dir, &st), -1);
	ASSERT_OK(open_store(true, &S));
	ASSERT_EQ(stat(state_dir, &st), 0);
	ASSERT_TRUE(S_ISDIR(st.st_mode));
	ASSERT_EQ(st.st_mode & 0777, 0700);
	path_of(path, sizeof(path), "root.key");
	ASSERT_EQ(lstat(path, &st), 0);
	ASSERT_TRUE(S_ISREG(st.st_mode));
	ASSERT_EQ(st.st_mode & 0777, 0600);
	ASSERT_EQ(st.st_size, 32);
	if (B->db_file) {
		path_of(path, sizeof(path), B->db_file);
		ASSERT_EQ(lstat(path, &st), 0);
		ASSERT_TRUE(S_ISREG(st.st_mode));
	}
	ASSERT_STREQ(store_state_dir(S), state_dir);
	ASSERT_STREQ(store_region(S), "eu-de");
	ASSERT_EQ(strlen(store_domain_id(S)), 32);
	for (const char *c = store_domain_id(S); *c; c++)
		ASSERT_TRUE((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f'));
}

STORE_TEST(open_without_create_fails_on_missing_dir)
{
	struct stat st;

	setup_empty();
	ASSERT_FAIL(open_store(false, &S));
	ASSERT_TRUE(S == NULL);
	ASSERT_TRUE(why[0] != 0);
	ASSERT_EQ(stat(state_dir, &st), -1);
}

STORE_TEST(open_region_option)
{
	struct store_options o = { .create = true, .region = "eu-nl" };

	setup_empty();
	o.state_dir = state_dir;
	o.backend = B->uri;
	ASSERT_OK(store_open(&o, &S, why, sizeof(why)));
	ASSERT_STREQ(store_region(S), "eu-nl");
	reopen();
	if (kms_test_failing())
		return;
	/* NULL keeps the stored region. */
	ASSERT_STREQ(store_region(S), "eu-nl");
}

STORE_TEST(reopen_keeps_identity_and_keys)
{
	char domain[64], a[KMS_KEY_ID_LEN + 1], b[KMS_KEY_ID_LEN + 1];
	uint8_t mat_a[CORE_KEY_BYTES], mat_b[CORE_KEY_BYTES];
	struct store_key *k = NULL;
	size_t n = 0;

	SETUP();
	snprintf(domain, sizeof(domain), "%s", store_domain_id(S));
	new_key(P, "alpha", a);
	new_key(P, "beta", b);
	if (kms_test_failing())
		return;
	ASSERT_OK(store_key_get(S, P, a, &k));
	memcpy(mat_a, store_key_material(k, 0), CORE_KEY_BYTES);
	store_key_release(k);
	ASSERT_OK(store_key_get(S, P, b, &k));
	memcpy(mat_b, store_key_material(k, 0), CORE_KEY_BYTES);
	store_key_release(k);
	ASSERT_FALSE(memcmp(mat_a, mat_b, CORE_KEY_BYTES) == 0);

	reopen();
	if (kms_test_failing())
		return;
	ASSERT_STREQ(store_domain_id(S), domain);
	ASSERT_OK(store_key_count(S, P, &n));
	ASSERT_EQ(n, 2);
	ASSERT_OK(store_key_get(S, P, a, &k));
	ASSERT_STREQ(k->meta.alias, "alpha");
	ASSERT_MEMEQ(store_key_material(k, 0), mat_a, CORE_KEY_BYTES);
	store_key_release(k);
	ASSERT_OK(store_key_get_by_alias(S, P, "beta", &k));
	ASSERT_STREQ(k->meta.key_id, b);
	ASSERT_MEMEQ(store_key_material(k, 0), mat_b, CORE_KEY_BYTES);
	store_key_release(k);
}

/* ---- the root key ---- */

STORE_TEST(root_key_missing_refuses_and_is_not_recreated)
{
	char path[4300], id[KMS_KEY_ID_LEN + 1];
	struct stat st;

	SETUP();
	new_key(P, "k", id);
	close_store();
	path_of(path, sizeof(path), "root.key");
	ASSERT_EQ(unlink(path), 0);
	/* Even with create=true, which would create a root key in a fresh directory. */
	ASSERT_FAIL(open_store(true, &S));
	ASSERT_TRUE(S == NULL);
	ASSERT_TRUE(strstr(why, "root.key") != NULL);
	ASSERT_EQ(lstat(path, &st), -1);
	ASSERT_EQ(errno, ENOENT);
	ASSERT_FAIL(open_store(false, &S));
	ASSERT_EQ(lstat(path, &st), -1);
}

STORE_TEST(root_key_missing_without_keys_still_refuses)
{
	char path[4300];
	struct stat st;

	/* The database records the root key's check value at creation: no keys are needed. */
	SETUP();
	close_store();
	path_of(path, sizeof(path), "root.key");
	ASSERT_EQ(unlink(path), 0);
	ASSERT_FAIL(open_store(true, &S));
	ASSERT_EQ(lstat(path, &st), -1);
}

STORE_TEST(root_key_foreign_refuses)
{
	char path[4300], id[KMS_KEY_ID_LEN + 1];
	uint8_t orig[64], other[32];
	size_t n;

	SETUP();
	new_key(P, "k", id);
	close_store();
	path_of(path, sizeof(path), "root.key");
	n = read_file(path, orig, sizeof(orig));
	ASSERT_EQ(n, 32);
	memcpy(other, orig, sizeof(other));
	other[17] ^= 0x01; /* one bit off: still not the key */
	write_file(path, other, sizeof(other), 0600);
	if (kms_test_failing())
		return;
	ASSERT_FAIL(open_store(false, &S));
	ASSERT_TRUE(S == NULL);
	ASSERT_TRUE(strstr(why, "does not match") != NULL);
	/* The file was left alone, and the right key opens again. */
	ASSERT_EQ(read_file(path, other, sizeof(other)), 32);
	write_file(path, orig, 32, 0600);
	if (kms_test_failing())
		return;
	ASSERT_OK(open_store(false, &S));
}

STORE_TEST(root_key_mode_0644_refuses)
{
	char path[4300];

	SETUP();
	close_store();
	path_of(path, sizeof(path), "root.key");
	ASSERT_EQ(chmod(path, 0644), 0);
	ASSERT_FAIL(open_store(false, &S));
	ASSERT_TRUE(strstr(why, "chmod 600") != NULL);
	ASSERT_EQ(chmod(path, 0640), 0);
	ASSERT_FAIL(open_store(false, &S));
	ASSERT_EQ(chmod(path, 0600), 0);
	ASSERT_OK(open_store(false, &S));
}

STORE_TEST(root_key_wrong_size_refuses)
{
	char path[4300];
	uint8_t orig[40], buf[40];

	SETUP();
	close_store();
	path_of(path, sizeof(path), "root.key");
	ASSERT_EQ(read_file(path, orig, sizeof(orig)), 32);
	memcpy(buf, orig, 32);
	buf[32] = 0;
	write_file(path, buf, 33, 0600); /* the key plus one byte */
	if (kms_test_failing())
		return;
	ASSERT_FAIL(open_store(false, &S));
	write_file(path, buf, 31, 0600);
	if (kms_test_failing())
		return;
	ASSERT_FAIL(open_store(false, &S));
	write_file(path, orig, 32, 0600);
	if (kms_test_failing())
		return;
	ASSERT_OK(open_store(false, &S));
}

STORE_TEST(root_key_symlink_refuses)
{
	char path[4300], moved[4300];

	SETUP();
	close_store();
	path_of(path, sizeof(path), "root.key");
	snprintf(moved, sizeof(moved), "%s/root.key.real", base_dir);
	ASSERT_EQ(rename(path, moved), 0);
	ASSERT_EQ(symlink(moved, path), 0);
	ASSERT_FAIL(open_store(false, &S));
}

/* ---- keys ---- */

STORE_TEST(key_create_fields)
{
	struct store_key *k = NULL, *k2 = NULL;
	int64_t before = now_ms(), after;

	SETUP();
	ASSERT_OK(store_key_create(S, P, "app", "the app key", 10, &k));
	after = now_ms();
	ASSERT_TRUE(k != NULL);
	ASSERT_STREQ(k->meta.project, P);
	ASSERT_TRUE(uuid_lower(k->meta.key_id));
	ASSERT_STREQ(k->meta.alias, "app");
	ASSERT_STREQ(k->meta.description, "the app key");
	ASSERT_STREQ(k->meta.key_spec, "AES_256");
	ASSERT_STREQ(k->meta.key_usage, "ENCRYPT_DECRYPT");
	ASSERT_STREQ(k->meta.origin, "kms");
	ASSERT_EQ(k->meta.state, STORE_KEY_ENABLED);
	ASSERT_EQ(k->meta.deletion_ms, 0);
	ASSERT_LE(before, k->meta.creation_ms);
	ASSERT_LE(k->meta.creation_ms, after);
	ASSERT_EQ(k->meta.current_version, 0);
	ASSERT_EQ(k->nversions, 1);
	ASSERT_TRUE(store_key_material(k, 0) != NULL);
	ASSERT_TRUE(store_key_material(k, 1) == NULL);
	ASSERT_TRUE(store_key_material(NULL, 0) == NULL);
	ASSERT_OK(store_key_create(S, P, "other", NULL, 10, &k2));
	ASSERT_STREQ(k2->meta.description, "");
	ASSERT_STREQ(k2->meta.alias, "other");
	ASSERT_FALSE(strcmp(k->meta.key_id, k2->meta.key_id) == 0);
	ASSERT_FALSE(memcmp(store_key_material(k, 0), store_key_material(k2, 0), CORE_KEY_BYTES) ==
		     0);
	store_key_release(k);
	store_key_release(k2);
}

STORE_TEST(key_get_by_id_and_alias)
{
	char a[KMS_KEY_ID_LEN + 1], b[KMS_KEY_ID_LEN + 1];
	struct store_key *k = NULL, *k2 = NULL;

	SETUP();
	new_key(P, "alpha", a);
	new_key(Q, "alpha", b); /* the same alias in another project is another key */
	if (kms_test_failing())
		return;
	ASSERT_OK(store_key_get(S, P, a, &k));
	ASSERT_STREQ(k->meta.key_id, a);
	ASSERT_OK(store_key_get_by_alias(S, P, "alpha", &k2));
	ASSERT_STREQ(k2->meta.key_id, a);
	ASSERT_MEMEQ(store_key_material(k, 0), store_key_material(k2, 0), CORE_KEY_BYTES);
	store_key_release(k);
	store_key_release(k2);
	ASSERT_OK(store_key_get_by_alias(S, Q, "alpha", &k));
	ASSERT_STREQ(k->meta.key_id, b);
	store_key_release(k);
	k = NULL;
	/* Another project's key is not found by id, even when cached. */
	ASSERT_ERR(store_key_get(S, Q, a, &k), KMS_E_KEY_NOT_FOUND);
	ASSERT_TRUE(k == NULL);
	ASSERT_ERR(store_key_get(S, P, b, &k), KMS_E_KEY_NOT_FOUND);
	ASSERT_ERR(store_key_get(S, P, "00000000-0000-4000-8000-000000000000", &k),
		   KMS_E_KEY_NOT_FOUND);
	ASSERT_ERR(store_key_get_by_alias(S, P, "nope", &k), KMS_E_KEY_NOT_FOUND);
	ASSERT_ERR(store_key_get_by_alias(S, "proj-c", "alpha", &k), KMS_E_KEY_NOT_FOUND);
	/* Not found after a reopen either (nothing cached). */
	reopen();
	if (kms_test_failing())
		return;
	ASSERT_ERR(store_key_get(S, Q, a, &k), KMS_E_KEY_NOT_FOUND);
	ASSERT_OK(store_key_get(S, P, a, &k));
	store_key_release(k);
}

STORE_TEST(key_snapshot_outlives_store_cache)
{
	char a[KMS_KEY_ID_LEN + 1];
	uint8_t mat[CORE_KEY_BYTES];
	struct store_key *k = NULL;

	SETUP();
	new_key(P, "alpha", a);
	if (kms_test_failing())
		return;
	ASSERT_OK(store_key_get(S, P, a, &k));
	memcpy(mat, store_key_material(k, 0), CORE_KEY_BYTES);
	/* A reader's reference stays valid after the store (and its cache) is gone. */
	close_store();
	ASSERT_MEMEQ(store_key_material(k, 0), mat, CORE_KEY_BYTES);
	ASSERT_STREQ(k->meta.key_id, a);
	store_key_release(k);
}

STORE_TEST(key_duplicate_alias)
{
	char a[KMS_KEY_ID_LEN + 1];
	struct store_key *k = NULL;
	size_t n = 0;

	SETUP();
	new_key(P, "dup", a);
	if (kms_test_failing())
		return;
	ASSERT_ERR(store_key_create(S, P, "dup", NULL, KMS_DEFAULT_KEY_QUOTA, &k),
		   KMS_E_ALIAS_DUPLICATE);
	ASSERT_TRUE(k == NULL);
	ASSERT_OK(store_key_count(S, P, &n));
	ASSERT_EQ(n, 1);
	/* Case matters: "Dup" is another alias. */
	ASSERT_OK(store_key_create(S, P, "Dup", NULL, KMS_DEFAULT_KEY_QUOTA, &k));
	store_key_release(k);
	reopen();
	if (kms_test_failing())
		return;
	ASSERT_ERR(store_key_create(S, P, "dup", NULL, KMS_DEFAULT_KEY_QUOTA, &k),
		   KMS_E_ALIAS_DUPLICATE);
}

STORE_TEST(key_quota)
{
	char id[KMS_KEY_ID_LEN + 1];
	struct store_key *k = NULL;
	size_t n = 0;

	SETUP();
	ASSERT_OK(store_key_create(S, P, "k1", NULL, 2, &k));
	store_key_release(k);
	ASSERT_OK(store_key_create(S, P, "k2", NULL, 2, &k));
	store_key_release(k);
	k = NULL;
	ASSERT_ERR(store_key_create(S, P, "k3", NULL, 2, &k), KMS_E_TOO_MANY_KEYS);
	ASSERT_TRUE(k == NULL);
	/* Quota beats the alias check? Either way nothing is created. */
	ASSERT_FAIL(store_key_create(S, P, "k1", NULL, 2, &k));
	ASSERT_OK(store_key_count(S, P, &n));
	ASSERT_EQ(n, 2);
	/* The quota is per project. */
	ASSERT_OK(store_key_create(S, Q, "k1", NULL, 2, &k));
	store_key_release(k);
	ASSERT_ERR(store_key_create(S, Q, "z", NULL, 0, &k), KMS_E_TOO_MANY_KEYS);
	/* A larger quota lets the project grow again. */
	new_key(P, "k3", id);
	if (kms_test_failing())
		return;
	ASSERT_OK(store_key_count(S, P, &n));
	ASSERT_EQ(n, 3);
}

STORE_TEST(key_create_bad_project)
{
	struct store_key *k = NULL;

	SETUP();
	ASSERT_FAIL(store_key_create(S, "", "a", NULL, 10, &k));
	ASSERT_FAIL(store_key_create(S, "a/b", "a", NULL, 10, &k));
	ASSERT_FAIL(store_key_create(S, "a b", "a", NULL, 10, &k));
	ASSERT_TRUE(k == NULL);
}

STORE_TEST(project_ids)
{
	char p64[65], p65[66];
	bool exists = true;

	memset(p64, 'x', 64);
	p64[64] = 0;
	memset(p65, 'x', 65);
	p65[65] = 0;
	ASSERT_TRUE(store_project_id_valid("a"));
	ASSERT_TRUE(store_project_id_valid("Proj_1-x"));
	ASSERT_TRUE(store_project_id_valid(p64));
	ASSERT_FALSE(store_project_id_valid(p65));
	ASSERT_FALSE(store_project_id_valid(""));
	ASSERT_FALSE(store_project_id_valid(NULL));
	ASSERT_FALSE(store_project_id_valid("a.b"));
	ASSERT_FALSE(store_project_id_valid("a/b"));
	ASSERT_FALSE(store_project_id_valid(".."));
	ASSERT_FALSE(store_project_id_valid("a\nb"));

	SETUP();
	ASSERT_OK(store_project_exists(S, P, &exists));
	ASSERT_FALSE(exists);
	ASSERT_OK(store_project_ensure(S, P));
	ASSERT_OK(store_project_ensure(S, P));
	ASSERT_OK(store_project_exists(S, P, &exists));
	ASSERT_TRUE(exists);
	ASSERT_FAIL(store_project_ensure(S, "a/b"));
	ASSERT_OK(store_project_exists(S, "a/b", &exists));
	ASSERT_FALSE(exists);
}

static int count_project(const char *project, void *arg)
{
	int *n = arg;

	if (strcmp(project, P) == 0)
		n[0]++;
	else if (strcmp(project, Q) == 0)
		n[1]++;
	else
		n[2]++;
	return 0;
}

STORE_TEST(project_list)
{
	char id[KMS_KEY_ID_LEN + 1];
	int n[3] = { 0 };

	SETUP();
	ASSERT_OK(store_project_ensure(S, P));
	new_key(Q, "x", id); /* creating a key creates its project */
	if (kms_test_failing())
		return;
	reopen();
	if (kms_test_failing())
		return;
	ASSERT_OK(store_project_list(S, count_project, n));
	ASSERT_EQ(n[0], 1);
	ASSERT_EQ(n[1], 1);
	ASSERT_EQ(n[2], 0);
}

/* ---- listing ---- */

struct list_seen {
	char ids[16][KMS_KEY_ID_LEN + 1];
	size_t n;
	int fail_at; /* return an error on this call (1-based), 0: never */
};

static int list_cb(const struct store_key_meta *m, void *arg)
{
	struct list_seen *s = arg;

	if (s->n >= 16)
		return KMS_E_INTERNAL;
	snprintf(s->ids[s->n], sizeof(s->ids[0]), "%s", m->key_id);
	s->n++;
	if (s->fail_at && (int)s->n == s->fail_at)
		return KMS_E_NOMEM;
	return 0;
}

STORE_TEST(key_list_order_offset_limit)
{
	char ids[5][KMS_KEY_ID_LEN + 1], other[KMS_KEY_ID_LEN + 1], alias[8];
	struct list_seen seen;
	size_t total = 99;

	SETUP();
	for (int i = 0; i < 5; i++) {
		snprintf(alias, sizeof(alias), "k%d", i);
		new_key(P, alias, ids[i]);
		if (kms_test_failing())
			return;
		if (i == 2)
			new_key(Q, "q", other); /* interleaved, must not show up in P */
		if (kms_test_failing())
			return;
	}
	memset(&seen, 0, sizeof(seen));
	ASSERT_OK(store_key_list(S, P, 0, 0, 100, list_cb, &seen, &total));
	ASSERT_EQ(total, 5);
	ASSERT_EQ(seen.n, 5);
	for (int i = 0; i < 5; i++)
		ASSERT_STREQ(seen.ids[i], ids[i]);

	memset(&seen, 0, sizeof(seen));
	ASSERT_OK(store_key_list(S, P, 0, 1, 2, list_cb, &seen, &total));
	ASSERT_EQ(total, 5); /* total ignores offset and limit */
	ASSERT_EQ(seen.n, 2);
	ASSERT_STREQ(seen.ids[0], ids[1]);
	ASSERT_STREQ(seen.ids[1], ids[2]);

	memset(&seen, 0, sizeof(seen));
	ASSERT_OK(store_key_list(S, P, 0, 4, 10, list_cb, &seen, &total));
	ASSERT_EQ(seen.n, 1);
	ASSERT_STREQ(seen.ids[0], ids[4]);

	memset(&seen, 0, sizeof(seen));
	ASSERT_OK(store_key_list(S, P, 0, 5, 10, list_cb, &seen, &total));
	ASSERT_EQ(seen.n, 0);
	ASSERT_EQ(total, 5);

	memset(&seen, 0, sizeof(seen));
	ASSERT_OK(store_key_list(S, P, 0, 0, 0, list_cb, &seen, &total));
	ASSERT_EQ(seen.n, 0);
	ASSERT_EQ(total, 5);

	/* The order survives a reopen (it comes from the database, not the cache). */
	reopen();
	if (kms_test_failing())
		return;
	memset(&seen, 0, sizeof(seen));
	ASSERT_OK(store_key_list(S, P, 0, 0, 100, list_cb, &seen, &total));
	ASSERT_EQ(seen.n, 5);
	for (int i = 0; i < 5; i++)
		ASSERT_STREQ(seen.ids[i], ids[i]);
}

STORE_TEST(key_list_state_filter_and_count)
{
	char id[KMS_KEY_ID_LEN + 1];
	struct list_seen seen;
	size_t total = 99, n = 99;

	SETUP();
	ASSERT_OK(store_key_count(S, P, &n));
	ASSERT_EQ(n, 0);
	memset(&seen, 0, sizeof(seen));
	ASSERT_OK(store_key_list(S, P, 0, 0, 10, list_cb, &seen, &total));
	ASSERT_EQ(total, 0);
	ASSERT_EQ(seen.n, 0);
	new_key(P, "a", id);
	new_key(P, "b", id);
	new_key(Q, "c", id);
	if (kms_test_failing())
		return;
	ASSERT_OK(store_key_count(S, P, &n));
	ASSERT_EQ(n, 2);
	ASSERT_OK(store_key_count(S, Q, &n));
	ASSERT_EQ(n, 1);
	memset(&seen, 0, sizeof(seen));
	ASSERT_OK(store_key_list(S, P, STORE_KEY_ENABLED, 0, 10, list_cb, &seen, &total));
	ASSERT_EQ(total, 2);
	ASSERT_EQ(seen.n, 2);
	for (int state = 1; state <= 5; state++) {
		if (state == STORE_KEY_ENABLED)
			continue;
		memset(&seen, 0, sizeof(seen));
		ASSERT_OK(store_key_list(S, P, state, 0, 10, list_cb, &seen, &total));
		ASSERT_EQ(total, 0);
		ASSERT_EQ(seen.n, 0);
	}
}

STORE_TEST(key_list_callback_error_stops)
{
	char id[KMS_KEY_ID_LEN + 1];
	struct list_seen seen;
	size_t total = 0;

	SETUP();
	for (int i = 0; i < 4; i++) {
		char alias[8];

		snprintf(alias, sizeof(alias), "k%d", i);
		new_key(P, alias, id);
		if (kms_test_failing())
			return;
	}
	memset(&seen, 0, sizeof(seen));
	seen.fail_at = 2;
	ASSERT_ERR(store_key_list(S, P, 0, 0, 10, list_cb, &seen, &total), KMS_E_NOMEM);
	ASSERT_EQ(seen.n, 2);
}

/* ---- integrity check ---- */

struct check_seen {
	int calls;
	char key_id[KMS_KEY_ID_LEN + 1];
	uint32_t version;
	char project[KMS_MAX_PROJECT_ID + 1];
};

static void check_cb(const char *project, const char *key_id, uint32_t version, int err, void *arg)
{
	struct check_seen *c = arg;

	c->calls++;
	snprintf(c->key_id, sizeof(c->key_id), "%s", key_id);
	snprintf(c->project, sizeof(c->project), "%s", project);
	c->version = version;
}

/* Replace the sealed material of key_id, version 0: one bit flipped at flip_at, or replace. */
static void db_edit_sealed(const char *key_id, size_t flip_at, const uint8_t *replace, size_t n)
{
	uint8_t blob[256];
	size_t len = 0;

	B->sealed_read(key_id, 0, blob, sizeof(blob), &len);
	ASSERT_TRUE(len > flip_at);
	if (replace) {
		ASSERT_LE(n, sizeof(blob));
		memcpy(blob, replace, n);
		len = n;
	} else {
		blob[flip_at] ^= 0x01;
	}
	B->sealed_write(key_id, 0, blob, len);
}

static void db_read_sealed(const char *key_id, uint8_t *out, size_t cap, size_t *len)
{
	B->sealed_read(key_id, 0, out, cap, len);
}

STORE_TEST(check_passes_on_good_store)
{
	char id[KMS_KEY_ID_LEN + 1];
	struct check_seen c = { 0 };
	size_t checked = 99;

	SETUP();
	ASSERT_EQ(store_check(S, check_cb, &c, &checked), 0);
	ASSERT_EQ(checked, 0);
	new_keys_ab(id, id);
	new_key(Q, "a", id);
	if (kms_test_failing())
		return;
	reopen();
	if (kms_test_failing())
		return;
	ASSERT_EQ(store_check(S, check_cb, &c, &checked), 0);
	ASSERT_EQ(checked, 3);
	ASSERT_EQ(c.calls, 0);
	ASSERT_EQ(store_check(S, NULL, NULL, &checked), 0);
}

STORE_TEST(check_reports_corrupt_sealed_material)
{
	char a[KMS_KEY_ID_LEN + 1], b[KMS_KEY_ID_LEN + 1], c3[KMS_KEY_ID_LEN + 1];
	struct check_seen c = { 0 };
	struct store_key *k = NULL;
	size_t checked = 0;

	SETUP();
	new_keys_ab(a, b);
	new_key(Q, "c", c3);
	if (kms_test_failing())
		return;
	close_store();
	db_edit_sealed(b, 20, NULL, 0); /* one bit of the ciphertext */
	if (kms_test_failing())
		return;
	ASSERT_OK(open_store(false, &S));
	ASSERT_EQ(store_check(S, check_cb, &c, &checked), 1);
	ASSERT_EQ(checked, 3);
	ASSERT_EQ(c.calls, 1);
	ASSERT_STREQ(c.key_id, b);
	ASSERT_STREQ(c.project, P);
	ASSERT_EQ(c.version, 0);
	/* The damaged key cannot be loaded; the others still can. */
	ASSERT_FAIL(store_key_get(S, P, b, &k));
	ASSERT_TRUE(k == NULL);
	ASSERT_OK(store_key_get(S, P, a, &k));
	store_key_release(k);
	ASSERT_OK(store_key_get(S, Q, c3, &k));
	store_key_release(k);
}

STORE_TEST(check_reports_truncated_and_empty_material)
{
	char a[KMS_KEY_ID_LEN + 1], b[KMS_KEY_ID_LEN + 1];
	struct check_seen c = { 0 };
	static const uint8_t few[5] = { 1, 2, 3, 4, 5 };
	size_t checked = 0;

	SETUP();
	new_keys_ab(a, b);
	if (kms_test_failing())
		return;
	close_store();
	db_edit_sealed(a, 0, few, sizeof(few));
	if (kms_test_failing())
		return;
	db_edit_sealed(b, 0, few, 0); /* an empty blob */
	if (kms_test_failing())
		return;
	ASSERT_OK(open_store(false, &S));
	ASSERT_EQ(store_check(S, check_cb, &c, &checked), 2);
	ASSERT_EQ(c.calls, 2);
}

STORE_TEST(check_detects_swapped_material)
{
	char a[KMS_KEY_ID_LEN + 1], b[KMS_KEY_ID_LEN + 1];
	uint8_t sa[256], sb[256];
	size_t la = 0, lb = 0, checked = 0;
	struct check_seen c = { 0 };

	/* Sealed material is bound to its key id: two valid blobs swapped are two bad keys. */
	SETUP();
	new_keys_ab(a, b);
	if (kms_test_failing())
		return;
	close_store();
	db_read_sealed(a, sa, sizeof(sa), &la);
	db_read_sealed(b, sb, sizeof(sb), &lb);
	if (kms_test_failing())
		return;
	db_edit_sealed(a, 0, sb, lb);
	db_edit_sealed(b, 0, sa, la);
	if (kms_test_failing())
		return;
	ASSERT_OK(open_store(false, &S));
	ASSERT_EQ(store_check(S, check_cb, &c, &checked), 2);
}

/* ---- state secrets ---- */

STORE_TEST(state_secret_created_once)
{
	uint8_t s1[32], s2[32], s3[32], t[32], file[64];
	char path[4300];
	struct stat st;

	SETUP();
	path_of(path, sizeof(path), "token.key");
	ASSERT_EQ(lstat(path, &st), -1);
	ASSERT_OK(store_state_secret(S, "token.key", s1));
	/* In the backend, sealed, whichever backend (state_secret_file_moved). */
	ASSERT_EQ(lstat(path, &st), -1);
	ASSERT_OK(store_state_secret(S, "token.key", s2));
	ASSERT_MEMEQ(s1, s2, 32);
	ASSERT_OK(store_state_secret(S, "other.key", t));
	ASSERT_FALSE(memcmp(s1, t, 32) == 0);
	reopen();
	if (kms_test_failing())
		return;
	ASSERT_OK(store_state_secret(S, "token.key", s3));
	ASSERT_MEMEQ(s1, s3, 32);
	/* Not the root key either. */
	path_of(path, sizeof(path), "root.key");
	ASSERT_EQ(read_file(path, file, sizeof(file)), 32);
	ASSERT_FALSE(memcmp(file, s1, 32) == 0);
}

/* Remembered token bindings (issue 15): sealed claims and scope, listed per host, purged when
 * expired, revoked, of one token or all of a host; a row moved to another host does not unseal. */
static struct store_remembered remembered(const char *host, uint32_t uid, uint64_t mntns,
					  const char *token_id, int64_t expiry)
{
	struct store_remembered r;

	memset(&r, 0, sizeof(r));
	snprintf(r.host, sizeof(r.host), "%s", host);
	r.uid = uid;
	r.host_ns = mntns == 0;
	r.mntns = mntns;
	snprintf(r.project, sizeof(r.project), "p1");
	snprintf(r.claims.id, sizeof(r.claims.id), "%s", token_id);
	snprintf(r.claims.project, sizeof(r.claims.project), "p1");
	snprintf(r.claims.user, sizeof(r.claims.user), "remembered-user");
	r.claims.role = KMS_ROLE_CRYPTO;
	r.claims.expiry = expiry;
	return r;
}

struct remembered_seen {
	struct store_remembered r[8];
	size_t n;
};

static int remembered_row(const struct store_remembered *r, void *arg)
{
	struct remembered_seen *seen = arg;

	if (seen->n < KMS_ARRAY_SIZE(seen->r))
		seen->r[seen->n] = *r;
	seen->n++;
	return 0;
}

static int raw_session_row(const struct store_session *sess, void *arg)
{
	*(struct store_session *)arg = *sess;
	return 0;
}

/* How many rows of host unseal; SIZE_MAX if listing failed or one did not unseal. */
static size_t remembered_count(const char *host)
{
	struct remembered_seen seen = { .n = 0 };
	size_t unreadable = 0;

	if (store_session_list(S, host, remembered_row, &seen, &unreadable) < 0 || unreadable)
		return SIZE_MAX;
	return seen.n;
}

/* Whether the file name (in the state directory) holds text. */
static bool file_holds(const char *name, const char *text)
{
	size_t cap = 8u << 20, n, len = strlen(text);
	uint8_t *buf = malloc(cap);
	char path[4300];
	bool found = false;

	path_of(path, sizeof(path), name);
	n = buf ? read_file(path, buf, cap) : 0;
	for (size_t i = 0; i + len <= n && !found; i++)
		found = memcmp(buf + i, text, len) == 0;
	free(buf);
	return found;
}

STORE_TEST(remembered_bindings)
{
	int64_t later = time(NULL) + 3600;
	struct store_remembered a = remembered("host-a", 1000, 0, "00000000000000a1", later);
	struct store_remembered b =
		remembered("host-a", 0, 4026532999ull, "00000000000000a2", later);
	struct store_remembered c = remembered("host-b", 0, 0, "00000000000000b1", later);
	struct store_remembered old = remembered("host-a", 5, 0, "00000000000000a3", 1000);
	struct store_token_info t = { .id = "00000000000000a2",
				      .project = "p1",
				      .user = "u",
				      .role = KMS_ROLE_ADMIN,
				      .expiry = later };
	struct remembered_seen seen = { .n = 0 };
	struct store_session raw;
	size_t unreadable = 0, purged = 0;

	SETUP();
	ASSERT_OK(store_project_ensure(S, "p1"));
	ASSERT_OK(store_session_put(S, &a));
	ASSERT_OK(store_session_put(S, &b));
	ASSERT_OK(store_session_put(S, &c));
	ASSERT_OK(store_session_put(S, &old));
	ASSERT_EQ(strlen(a.id), 32);
	ASSERT_TRUE(strcmp(a.id, b.id) != 0);
	ASSERT_OK(store_session_list(S, "host-a", remembered_row, &seen, &unreadable));
	ASSERT_EQ(seen.n, 3);
	ASSERT_EQ(unreadable, 0);
	for (size_t i = 0; i < seen.n && i < KMS_ARRAY_SIZE(seen.r); i++) {
		const struct store_remembered *r = &seen.r[i];

		ASSERT_STREQ(r->host, "host-a");
		ASSERT_STREQ(r->project, "p1");
		ASSERT_STREQ(r->claims.user, "remembered-user");
		ASSERT_EQ(r->claims.role, KMS_ROLE_CRYPTO);
		if (strcmp(r->id, b.id) == 0) {
			ASSERT_FALSE(r->host_ns);
			ASSERT_EQ(r->mntns, 4026532999ull);
			ASSERT_EQ(r->uid, 0);
			ASSERT_EQ(r->claims.expiry, later);
		} else if (strcmp(r->id, a.id) == 0) {
			ASSERT_TRUE(r->host_ns);
			ASSERT_EQ(r->uid, 1000);
		}
	}
	ASSERT_EQ(remembered_count(NULL), 4);
	if (B->db_file) { /* the sealed part is not readable in the files */
		char wal[64];

		snprintf(wal, sizeof(wal), "%s-wal", B->db_file);
		ASSERT_TRUE(file_holds(wal, "host-a") || file_holds(B->db_file, "host-a"));
		ASSERT_FALSE(file_holds(B->db_file, "remembered-user"));
		ASSERT_FALSE(file_holds(wal, "remembered-user"));
	}
	/* Expired rows, then those of a revoked token, go; the others stay. */
	ASSERT_OK(store_session_purge(S, "host-a", NULL, false, time(NULL) * 1000, &purged));
	ASSERT_EQ(purged, 1);
	ASSERT_OK(store_token_record(S, &t));
	ASSERT_OK(store_token_revoke(S, t.id));
	ASSERT_OK(store_session_purge(S, NULL, NULL, false, time(NULL) * 1000, &purged));
	ASSERT_EQ(purged, 1);
	ASSERT_EQ(remembered_count("host-a"), 1);
	/* A row moved to another host (its clear column changed) does not unseal there. */
	memset(&raw, 0, sizeof(raw));
	ASSERT_OK(S->ops->session_list(S->be, "host-b", raw_session_row, &raw));
	ASSERT_STREQ(raw.id, c.id);
	snprintf(raw.host, sizeof(raw.host), "host-a");
	ASSERT_OK(S->ops->session_put(S->be, &raw));
	seen.n = 0;
	ASSERT_OK(store_session_list(S, "host-a", remembered_row, &seen, &unreadable));
	ASSERT_EQ(seen.n, 1);
	ASSERT_EQ(unreadable, 1);
	ASSERT_OK(store_session_delete(S, c.id));
	ASSERT_OK(store_session_put(S, &c));
	/* One token's rows on every host; then all of a host. */
	ASSERT_OK(store_session_purge(S, NULL, "00000000000000b1", false, 0, &purged));
	ASSERT_EQ(purged, 1);
	ASSERT_EQ(remembered_count("host-b"), 0);
	ASSERT_OK(store_session_put(S, &c));
	ASSERT_OK(store_session_purge(S, "host-a", NULL, true, 0, &purged));
	ASSERT_EQ(purged, 1);
	ASSERT_EQ(remembered_count(NULL), 1);
	reopen();
	if (kms_test_failing())
		return;
	ASSERT_EQ(remembered_count("host-b"), 1);
}

STORE_TEST(state_secret_bad_file_refused)
{
	uint8_t s[32], file[32], t[32], left[64], zero[32] = { 0 };
	char path[4300], link_path[4300];
	struct stat st;

	SETUP();
	if (store_shared(S))
		return; /* no file: shared_state_secret_in_settings */
	/* A token.key of a state directory made before the secrets moved into the settings. */
	memset(file, 0x5a, sizeof(file));
	path_of(path, sizeof(path), "token.key");
	write_file(path, file, sizeof(file), 0644);
	ASSERT_FAIL(store_state_secret(S, "token.key", s));
	ASSERT_EQ(chmod(path, 0600), 0);
	ASSERT_EQ(truncate(path, 16), 0);
	ASSERT_FAIL(store_state_secret(S, "token.key", s));
	unlink(path);
	write_file(path, file, sizeof(file), 0600);
	/* A hard link keeps the file's inode: what the move leaves of its bytes stays readable. */
	path_of(link_path, sizeof(link_path), "token.key.link");
	ASSERT_EQ(link(path, link_path), 0);
	/* Moved into the settings once, then gone: tokens signed with it keep working. */
	ASSERT_OK(store_state_secret(S, "token.key", s));
	ASSERT_MEMEQ(s, file, 32);
	ASSERT_EQ(lstat(path, &st), -1);
	/* Overwritten before it was unlinked: the secret's bytes are not on disk any more. */
	ASSERT_EQ(read_file(link_path, left, sizeof(left)), sizeof(file));
	ASSERT_FALSE(memcmp(left, file, sizeof(file)) == 0);
	ASSERT_MEMEQ(left, zero, sizeof(zero));
	unlink(link_path);
	reopen();
	if (kms_test_failing())
		return;
	ASSERT_OK(store_state_secret(S, "token.key", t));
	ASSERT_MEMEQ(t, file, 32);
	/* A file left over beside the settings' copy (a move killed before the file went) is
	 * destroyed at the next read; one holding another secret is left alone. */
	write_file(path, file, sizeof(file), 0600);
	ASSERT_EQ(link(path, link_path), 0);
	ASSERT_OK(store_state_secret(S, "token.key", t));
	ASSERT_EQ(lstat(path, &st), -1);
	ASSERT_EQ(read_file(link_path, left, sizeof(left)), sizeof(file));
	ASSERT_MEMEQ(left, zero, sizeof(zero));
	unlink(link_path);
	file[0] ^= 1;
	write_file(path, file, sizeof(file), 0600);
	ASSERT_OK(store_state_secret(S, "token.key", t));
	ASSERT_EQ(lstat(path, &st), 0);
	ASSERT_EQ(read_file(path, left, sizeof(left)), sizeof(file));
	ASSERT_MEMEQ(left, file, sizeof(file));
	unlink(path);
}

/* ---- what the backend refuses, and what goes with a key ---- */

static int rename_to(struct store_key_meta *m, void *arg)
{
	snprintf(m->alias, sizeof(m->alias), "%s", (const char *)arg);
	return 0;
}

static int delete_at(struct store_key_meta *m, void *arg)
{
	m->state = STORE_KEY_PENDING_DELETION;
	m->deletion_ms = *(const int64_t *)arg;
	return 0;
}

static int count_tag(const char *key_id, const char *tag_key, const char *tag_value, void *arg)
{
	(*(size_t *)arg)++;
	return 0;
}

static int count_grant(const struct store_grant *g, void *arg)
{
	(*(size_t *)arg)++;
	return 0;
}

/* Each refusal says what was refused: not every constraint is a duplicate alias. */
STORE_TEST(constraint_errors_say_which)
{
	char a[KMS_KEY_ID_LEN + 1], b[KMS_KEY_ID_LEN + 1], alias_a[] = "a";
	struct store_grant g = { .grant_id = "g1",
				 .project = P,
				 .grantee = "u",
				 .grantee_type = "user",
				 .operations = "describe-key",
				 .issuer = "i",
				 .key_id = "00000000-0000-4000-8000-000000000000" };
	struct store_key *k = NULL;

	SETUP();
	new_keys_ab(a, b);
	if (kms_test_failing())
		return;
	/* The alias index: a rename onto another key's alias. */
	ASSERT_ERR(store_key_modify(S, P, b, rename_to, alias_a, &k), KMS_E_ALIAS_DUPLICATE);
	ASSERT_TRUE(k == NULL);
	/* Grants and tags of a key that does not exist. */
	ASSERT_ERR(store_grant_create(S, &g, 10), KMS_E_KEY_NOT_FOUND);
	ASSERT_ERR(store_tag_set(S, g.key_id, "t", "v", 10), KMS_E_KEY_NOT_FOUND);
	/* A grant id used twice is a fault of ours, not the caller's alias. */
	snprintf(g.key_id, sizeof(g.key_id), "%s", a);
	ASSERT_OK(store_grant_create(S, &g, 10));
	ASSERT_ERR(store_grant_create(S, &g, 10), KMS_E_INTERNAL);
	/* The limits still count, and replacing a tag never counts against them. */
	ASSERT_OK(store_tag_set(S, a, "t", "v", 1));
	ASSERT_OK(store_tag_set(S, a, "t", "w", 1));
	ASSERT_ERR(store_tag_set(S, a, "u", "v", 1), KMS_E_TOO_MANY_TAGS);
	ASSERT_ERR(store_tag_delete(S, a, "u"), KMS_E_TAG_NOT_FOUND);
}

/* A key destroyed by the sweep goes with its grants and tags, in one transaction. */
STORE_TEST(destroyed_key_takes_its_grants_and_tags)
{
	char a[KMS_KEY_ID_LEN + 1], b[KMS_KEY_ID_LEN + 1];
	struct store_grant g = { .grant_id = "g1",
				 .project = P,
				 .grantee = "u",
				 .grantee_type = "user",
				 .operations = "describe-key",
				 .issuer = "i" };
	struct store_grant_filter f = { .project = P };
	int64_t now = kms_time_real_ms(), when = now + 1000;
	size_t deleted = 0, rotated = 0, tags = 0, grants = 0, total = 0;
	struct store_key *k = NULL;

	SETUP();
	new_keys_ab(a, b);
	if (kms_test_failing())
		return;
	snprintf(g.key_id, sizeof(g.key_id), "%s", a);
	ASSERT_OK(store_grant_create(S, &g, 10));
	ASSERT_OK(store_tag_set(S, a, "t", "v", 10));
	ASSERT_OK(store_tag_set(S, b, "t", "v", 10));
	ASSERT_OK(store_key_modify(S, P, a, delete_at, &when, &k));
	store_key_release(k);
	ASSERT_OK(store_sweep(S, now + 2000, &deleted, &rotated));
	ASSERT_EQ(deleted, 1);
	ASSERT_ERR(store_key_get(S, P, a, &k), KMS_E_KEY_NOT_FOUND);
	ASSERT_OK(store_grant_list(S, &f, 0, 10, count_grant, &grants, &total));
	ASSERT_EQ(total, 0);
	ASSERT_EQ(grants, 0);
	ASSERT_OK(store_tag_list(S, P, NULL, count_tag, &tags));
	ASSERT_EQ(tags, 1); /* b's */
}

/* ==== many hosts on one backend ==== */

/* A second handle on the same backend, as another host (or kmsctl) would hold: its own
 * connection and cache, the same database and root key. */
static struct store *S2;

static void close_second(void)
{
	store_close(S2);
	S2 = NULL;
}

static int open_second(void)
{
	struct store_options o = { .state_dir = state_dir, .backend = B->uri };

	close_second();
	return store_open(&o, &S2, why, sizeof(why));
}

/* setup() and a second handle in S2. */
#define SETUP2()                                                                                   \
	do {                                                                                       \
		setup();                                                                           \
		if (kms_test_failing())                                                            \
			return;                                                                    \
		ASSERT_OK(open_second());                                                          \
	} while (0)

static void refresh_of(struct store *s, bool want_changed)
{
	bool changed = false;

	ASSERT_OK(store_refresh(s, &changed));
	ASSERT_EQ(changed, want_changed);
}

static int set_disabled(struct store_key_meta *m, void *arg)
{
	(void)arg;
	if (m->state != STORE_KEY_ENABLED)
		return KMS_E_KEY_DISABLED;
	m->state = STORE_KEY_DISABLED;
	return 0;
}

static int describe_as(struct store_key_meta *m, void *arg)
{
	snprintf(m->description, sizeof(m->description), "%s", (const char *)arg);
	return 0;
}

static int cancel_deletion(struct store_key_meta *m, void *arg)
{
	(void)arg;
	if (m->state != STORE_KEY_PENDING_DELETION)
		return KMS_E_BAD_PARAM;
	m->state = STORE_KEY_DISABLED;
	m->deletion_ms = 0;
	return 0;
}

/* The state of key id as handle s serves it (0 if it has none). */
static int state_via(struct store *s, const char *id)
{
	struct store_key *k = NULL;
	int state = 0;

	if (store_key_get(s, P, id, &k) == 0)
		state = k->meta.state;
	store_key_release(k);
	return state;
}

/* Once it refreshed, handle s serves key id with n versions, the last current. */
static void versions_after_refresh(struct store *s, const char *id, uint32_t n)
{
	struct store_key *k = NULL;

	refresh_of(s, true);
	ASSERT_OK(store_key_get(s, P, id, &k));
	ASSERT_EQ(k->nversions, n);
	ASSERT_EQ(k->meta.current_version, n - 1);
	ASSERT_EQ(k->meta.rotations, n - 1);
	store_key_release(k);
}

/* A change through one handle is served by the other once it refreshed: the key itself, and
 * the policy. */
STORE_TEST(second_handle_sees_changes_after_refresh)
{
	char a[KMS_KEY_ID_LEN + 1];
	struct store_key *k = NULL;
	uint32_t gid = 50;

	SETUP2();
	new_key(P, "a", a);
	if (kms_test_failing())
		return;
	ASSERT_EQ(state_via(S2, a), STORE_KEY_ENABLED); /* cached in S2 from now on */
	ASSERT_EQ(state_via(S, a), STORE_KEY_ENABLED);
	ASSERT_OK(store_key_modify(S, P, a, set_disabled, NULL, &k));
	store_key_release(k);
	k = NULL;
	refresh_of(S2, true);
	ASSERT_EQ(state_via(S2, a), STORE_KEY_DISABLED);
	refresh_of(S2, false);
	/* Policy: a binding made through S counts in S2. */
	ASSERT_EQ(store_binding_role(S2, P, 1000, &gid, 1), KMS_ROLE_NONE);
	ASSERT_OK(store_binding_set(S, P, STORE_BIND_GID, 50, KMS_ROLE_CRYPTO));
	refresh_of(S2, true);
	ASSERT_EQ(store_binding_role(S2, P, 1000, &gid, 1), KMS_ROLE_CRYPTO);
	/* A key made through S, and its alias, are found through S2 at once (not cached yet). */
	ASSERT_OK(store_key_create(S, P, "b", NULL, KMS_DEFAULT_KEY_QUOTA, &k));
	store_key_release(k);
	k = NULL;
	ASSERT_OK(store_key_get_by_alias(S2, P, "b", &k));
	store_key_release(k);
	close_second();
}

/* ---- cgroup bindings ---- */

struct cgroup_seen {
	char list[256];
};

static int cgroup_seen_row(const char *path, enum kms_role role, void *arg)
{
	struct cgroup_seen *c = arg;
	size_t n = strlen(c->list);

	snprintf(c->list + n, sizeof(c->list) - n, "%s=%s;", path, kms_role_name(role));
	return 0;
}

/* A binding covers its path and every path below it, component-wise; the deepest covering one
 * gives the role (even a lower one); unbind removes it; another handle sees it once refreshed. */
STORE_TEST(cgroup_bindings_cover_subtrees)
{
	struct cgroup_seen seen = { "" };
	char reason[160];
	static const char *const bad[] = {
		"system.slice", "/",   "//a",	"/a//b", "/a/", "/a/../b",
		"/a/./b",	"/..", "/a\nb", "/a\tb", "",
	};

	SETUP2();
	ASSERT_OK(store_binding_set_cgroup(S, P, "/app.slice", KMS_ROLE_ADMIN));
	ASSERT_OK(store_binding_set_cgroup(S, P, "/app.slice/web.service", KMS_ROLE_VIEWER));
	ASSERT_OK(store_binding_set_cgroup(S, Q, "/other", KMS_ROLE_CRYPTO));
	ASSERT_EQ(store_binding_role_cgroup(S, P, "/app.slice"), KMS_ROLE_ADMIN);
	ASSERT_EQ(store_binding_role_cgroup(S, P, "/app.slice/db.service"), KMS_ROLE_ADMIN);
	ASSERT_EQ(store_binding_role_cgroup(S, P, "/app.slice/web.service"), KMS_ROLE_VIEWER);
	ASSERT_EQ(store_binding_role_cgroup(S, P, "/app.slice/web.service/x/y"), KMS_ROLE_VIEWER);
	ASSERT_EQ(store_binding_role_cgroup(S, P, "/app.slice/web.servicex"), KMS_ROLE_ADMIN);
	ASSERT_EQ(store_binding_role_cgroup(S, P, "/app.slicex"), KMS_ROLE_NONE);
	ASSERT_EQ(store_binding_role_cgroup(S, P, "/"), KMS_ROLE_NONE);
	ASSERT_EQ(store_binding_role_cgroup(S, P, "/other"), KMS_ROLE_NONE);
	ASSERT_EQ(store_binding_role_cgroup(S, Q, "/other/c"), KMS_ROLE_CRYPTO);
	ASSERT_EQ(store_binding_role_cgroup(S, P, ""), KMS_ROLE_NONE);
	ASSERT_EQ(store_binding_role_cgroup(S, P, NULL), KMS_ROLE_NONE);
	/* Replacing sets the new role; listing is in path order. */
	ASSERT_OK(store_binding_set_cgroup(S, P, "/app.slice", KMS_ROLE_CRYPTO));
	ASSERT_OK(store_cgroup_binding_list(S, P, cgroup_seen_row, &seen));
	ASSERT_STREQ(seen.list, "/app.slice=crypto;/app.slice/web.service=viewer;");
	/* Paths no binding may name. */
	for (size_t i = 0; i < KMS_ARRAY_SIZE(bad); i++) {
		ASSERT_FALSE(store_cgroup_path_valid(bad[i], reason, sizeof(reason)));
		ASSERT_TRUE(strncmp(reason, "the cgroup path ", 16) == 0);
		ASSERT_ERR(store_binding_set_cgroup(S, P, bad[i], KMS_ROLE_VIEWER),
			   KMS_E_BAD_PARAM);
	}
	{
		char long_path[STORE_CGROUP_PATH_MAX + 2];

		memset(long_path, 'a', sizeof(long_path) - 1);
		long_path[0] = '/';
		long_path[sizeof(long_path) - 1] = 0;
		ASSERT_FALSE(store_cgroup_path_valid(long_path, reason, sizeof(reason)));
		long_path[STORE_CGROUP_PATH_MAX] = 0;
		ASSERT_TRUE(store_cgroup_path_valid(long_path, reason, sizeof(reason)));
	}
	ASSERT_TRUE(store_cgroup_path_valid("/a/.b/..c/b..", NULL, 0));
	ASSERT_ERR(store_binding_set_cgroup(S, "x y", "/a", KMS_ROLE_VIEWER), KMS_E_BAD_PARAM);
	ASSERT_ERR(store_binding_set_cgroup(S, P, "/a", (enum kms_role)4), KMS_E_BAD_PARAM);
	/* The other handle: once refreshed. */
	refresh_of(S2, true);
	ASSERT_EQ(store_binding_role_cgroup(S2, P, "/app.slice/db.service"), KMS_ROLE_CRYPTO);
	ASSERT_OK(store_binding_set_cgroup(S2, P, "/app.slice/web.service", KMS_ROLE_NONE));
	ASSERT_OK(store_binding_set_cgroup(S2, P, "/never-bound", KMS_ROLE_NONE));
	refresh_of(S, true);
	ASSERT_EQ(store_binding_role_cgroup(S, P, "/app.slice/web.service"), KMS_ROLE_CRYPTO);
	/* Kept across a reopen. */
	reopen();
	ASSERT_EQ(store_binding_role_cgroup(S, P, "/app.slice/web.service"), KMS_ROLE_CRYPTO);
	ASSERT_EQ(store_binding_role_cgroup(S, Q, "/other"), KMS_ROLE_CRYPTO);
	ASSERT_EQ(store_binding_role(S, P, 0, NULL, 0), KMS_ROLE_NONE);
	close_second();
}

/* Rotations through a handle whose cache is stale are applied on top of the other's: versions
 * 0, 1, 2, never two versions 1 (issue 12: "a rotate-key on each host gave both version 1"). */
STORE_TEST(stale_handle_rotates_on_top)
{
	char a[KMS_KEY_ID_LEN + 1];
	uint8_t v0[CORE_KEY_BYTES], v1[CORE_KEY_BYTES];
	struct store_key *k = NULL, *k2 = NULL;

	SETUP2();
	new_key(P, "a", a);
	if (kms_test_failing())
		return;
	ASSERT_OK(store_key_get(S2, P, a, &k2)); /* S2 caches version 0 only */
	store_key_release(k2);
	k2 = NULL;
	ASSERT_OK(store_key_rotate(S, P, a, now_ms(), &k));
	ASSERT_EQ(k->meta.current_version, 1);
	memcpy(v0, store_key_material(k, 0), sizeof(v0));
	memcpy(v1, store_key_material(k, 1), sizeof(v1));
	store_key_release(k);
	k = NULL;
	/* No refresh: S2 still holds the key as it was. */
	ASSERT_OK(store_key_rotate(S2, P, a, now_ms(), &k2));
	ASSERT_EQ(k2->meta.current_version, 2);
	ASSERT_EQ(k2->nversions, 3);
	ASSERT_EQ(k2->meta.rotations, 2);
	ASSERT_MEMEQ(store_key_material(k2, 0), v0, sizeof(v0));
	ASSERT_MEMEQ(store_key_material(k2, 1), v1, sizeof(v1));
	ASSERT_FALSE(memcmp(store_key_material(k2, 2), v1, sizeof(v1)) == 0);
	store_key_release(k2);
	versions_after_refresh(S, a, 3);
	close_second();
}

/* The same for metadata: two edits through two handles both hold, the second computed again on
 * the key as the first left it; the revision counts every write. */
STORE_TEST(stale_handle_modifies_on_top)
{
	char a[KMS_KEY_ID_LEN + 1], first[] = "first", renamed[] = "renamed";
	struct store_key *k = NULL;
	uint64_t rev0;

	SETUP2();
	new_key(P, "a", a);
	if (kms_test_failing())
		return;
	ASSERT_OK(store_key_get(S2, P, a, &k));
	rev0 = k->meta.revision;
	store_key_release(k);
	k = NULL;
	ASSERT_OK(store_key_modify(S, P, a, describe_as, first, &k));
	ASSERT_EQ(k->meta.revision, rev0 + 1);
	store_key_release(k);
	k = NULL;
	ASSERT_OK(store_key_modify(S2, P, a, rename_to, renamed, &k));
	ASSERT_STREQ(k->meta.description, "first");
	ASSERT_STREQ(k->meta.alias, "renamed");
	ASSERT_EQ(k->meta.revision, rev0 + 2);
	store_key_release(k);
	k = NULL;
	/* A transition the other host's change made invalid is refused, not forced. */
	ASSERT_OK(store_key_modify(S, P, a, set_disabled, NULL, &k));
	store_key_release(k);
	k = NULL;
	ASSERT_ERR(store_key_modify(S2, P, a, set_disabled, NULL, &k), KMS_E_KEY_DISABLED);
	ASSERT_TRUE(k == NULL);
	refresh_of(S, true);
	ASSERT_OK(store_key_get_by_alias(S, P, "renamed", &k));
	ASSERT_STREQ(k->meta.description, "first");
	ASSERT_EQ(k->meta.state, STORE_KEY_DISABLED);
	store_key_release(k);
	close_second();
}

/* Backend operations wrapped, to act between two of the store's steps. */
static struct store_backend_ops wrap_ops;
static const struct store_backend_ops *wrap_real;
static void (*wrap_after_due)(void);
static char wrap_key[KMS_KEY_ID_LEN + 1];

static int wrap_key_due(struct store_backend *b, int64_t now, store_backend_meta_cb cb, void *arg)
{
	int r = wrap_real->key_due(b, now, cb, arg);

	if (wrap_after_due)
		wrap_after_due();
	return r;
}

static void wrap_store(struct store *s)
{
	wrap_real = s->ops;
	wrap_ops = *s->ops;
	wrap_ops.key_due = wrap_key_due;
	wrap_after_due = NULL;
	s->ops = &wrap_ops;
}

/* The other host cancels the deletion after the sweep found the key due. */
static void cancel_through_second(void)
{
	struct store_key *k = NULL;

	ASSERT_OK(store_key_modify(S2, P, wrap_key, cancel_deletion, NULL, &k));
	store_key_release(k);
}

/* When a key made now is due for its first automatic rotation, and a little more. */
#define ROTATION_DUE (now_ms() + 91 * 86400000LL)

/* The other host's sweep gets there first. */
static void sweep_through_second(void)
{
	size_t deleted = 0, rotated = 0;

	ASSERT_OK(store_sweep(S2, ROTATION_DUE, &deleted, &rotated));
	ASSERT_EQ(rotated, 1);
}

static int rotate_every_90_days(struct store_key_meta *m, void *arg)
{
	(void)arg;
	m->rotation_enabled = true;
	m->rotation_interval_days = 90;
	return 0;
}

/* Issue 12: "Scheduled deletion is executed once, by whichever daemon gets there first, without
 * destroying a key that was cancelled in between"; automatic rotation likewise, once. */
STORE_TEST(sweep_respects_changes_made_after_key_due)
{
	char a[KMS_KEY_ID_LEN + 1], b[KMS_KEY_ID_LEN + 1];
	int64_t when = now_ms() - 1000;
	size_t deleted = 0, rotated = 0;
	struct store_key *k = NULL;

	SETUP2();
	new_keys_ab(a, b);
	if (kms_test_failing())
		return;
	ASSERT_OK(store_key_modify(S, P, a, delete_at, &when, &k));
	store_key_release(k);
	k = NULL;
	wrap_store(S);
	snprintf(wrap_key, sizeof(wrap_key), "%s", a);
	wrap_after_due = cancel_through_second;
	ASSERT_OK(store_sweep(S, now_ms(), &deleted, &rotated));
	wrap_after_due = NULL;
	ASSERT_EQ(deleted, 0);
	ASSERT_EQ(state_via(S2, a), STORE_KEY_DISABLED);
	refresh_of(S, true);
	ASSERT_EQ(state_via(S, a), STORE_KEY_DISABLED);
	/* Not cancelled: destroyed once, whoever sweeps. */
	ASSERT_OK(store_key_modify(S, P, a, delete_at, &when, &k));
	store_key_release(k);
	k = NULL;
	ASSERT_OK(store_sweep(S2, now_ms(), &deleted, &rotated));
	ASSERT_EQ(deleted, 1);
	ASSERT_OK(store_sweep(S, now_ms(), &deleted, &rotated));
	ASSERT_EQ(deleted, 0);
	refresh_of(S, true);
	ASSERT_ERR(store_key_get(S, P, a, &k), KMS_E_KEY_NOT_FOUND);
	/* Automatic rotation due on both hosts: done once. */
	ASSERT_OK(store_key_modify(S, P, b, rotate_every_90_days, NULL, &k));
	store_key_release(k);
	k = NULL;
	wrap_after_due = sweep_through_second;
	ASSERT_OK(store_sweep(S, ROTATION_DUE, &deleted, &rotated));
	wrap_after_due = NULL;
	ASSERT_EQ(rotated, 0);
	versions_after_refresh(S, b, 2);
	close_second();
}

struct rotator {
	struct store *s;
	const char *id;
	int ok, stale, other;
};

static void *rotate_many(void *arg)
{
	struct rotator *r = arg;

	for (int i = 0; i < 15; i++) {
		struct store_key *k = NULL;
		int e = store_key_rotate(r->s, P, r->id, now_ms(), &k);

		store_key_release(k);
		if (e == 0)
			r->ok++;
		else if (e == KMS_E_STALE)
			r->stale++; /* lost more races than it retries: allowed, but nothing written */
		else
			r->other++;
	}
	return NULL;
}

/* Two hosts rotating one key at the same time: every rotation acknowledged is one version more,
 * none is lost or written twice. */
STORE_TEST(concurrent_rotations_lose_nothing)
{
	char a[KMS_KEY_ID_LEN + 1];
	struct rotator r1 = { 0 }, r2 = { 0 };
	struct store_key *k = NULL;
	pthread_t t1, t2;

	SETUP2();
	new_key(P, "a", a);
	if (kms_test_failing())
		return;
	r1 = (struct rotator){ .s = S, .id = a };
	r2 = (struct rotator){ .s = S2, .id = a };
	ASSERT_EQ(pthread_create(&t1, NULL, rotate_many, &r1), 0);
	ASSERT_EQ(pthread_create(&t2, NULL, rotate_many, &r2), 0);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	ASSERT_EQ(r1.other + r2.other, 0);
	ASSERT_TRUE(r1.ok > 0 && r2.ok > 0);
	refresh_of(S, true);
	ASSERT_OK(store_key_get(S, P, a, &k));
	ASSERT_EQ(k->nversions, (uint32_t)(1 + r1.ok + r2.ok));
	ASSERT_EQ(k->meta.rotations, (uint32_t)(r1.ok + r2.ok));
	for (uint32_t i = 0; i < k->nversions; i++)
		for (uint32_t j = i + 1; j < k->nversions; j++)
			ASSERT_FALSE(memcmp(store_key_material(k, i), store_key_material(k, j),
					    CORE_KEY_BYTES) == 0);
	store_key_release(k);
	close_second();
}

/* The token signing secret is one for all hosts: with a shared backend it lives there, sealed,
 * and a host with its own state directory (and the same root key) gets the same one. */
STORE_TEST(state_secret_same_through_both_handles)
{
	uint8_t s1[32], s2[32];
	char path[4300], other[4300], root[4400], root2[4400];
	struct stat st;

	SETUP2();
	ASSERT_OK(store_state_secret(S2, "token.key", s2));
	ASSERT_OK(store_state_secret(S, "token.key", s1));
	ASSERT_MEMEQ(s1, s2, 32);
	close_second();
	if (!store_shared(S))
		return;
	path_of(path, sizeof(path), "token.key");
	ASSERT_EQ(lstat(path, &st), -1); /* not in the state directory */
	snprintf(other, sizeof(other), "%s/other", base_dir);
	ASSERT_EQ(mkdir(other, 0700), 0);
	path_of(root, sizeof(root), "root.key");
	snprintf(root2, sizeof(root2), "%s/root.key", other);
	ASSERT_EQ(read_file(root, s2, sizeof(s2)), 32);
	write_file(root2, s2, 32, 0600);
	{
		struct store_options o = { .state_dir = other, .backend = B->uri };

		ASSERT_OK(store_open(&o, &S2, why, sizeof(why)));
	}
	ASSERT_OK(store_state_secret(S2, "token.key", s2));
	ASSERT_MEMEQ(s1, s2, 32);
	close_second();
}

/* ==== the cache's bound ==== */

static int open_store_cache(unsigned key_cache, struct store **out)
{
	/* A shared backend's cache serves hits only while fresh: nobody refreshes it here. */
	struct store_options o = { .state_dir = state_dir,
				   .backend = B->uri,
				   .create = true,
				   .key_cache = key_cache,
				   .offline_grace_ms = 3600000 };

	return store_open(&o, out, why, sizeof(why));
}

/* A cache of 8 keys with 100 keys in use holds 8 and every key works. */
STORE_TEST(cache_bounded)
{
	static char ids[100][KMS_KEY_ID_LEN + 1];
	struct store_stats st;
	struct store_key *k = NULL;

	setup_empty();
	ASSERT_OK(open_store_cache(8, &S));
	for (size_t i = 0; i < KMS_ARRAY_SIZE(ids); i++) {
		char alias[16];

		snprintf(alias, sizeof(alias), "k%zu", i);
		new_key(P, alias, ids[i]);
		if (kms_test_failing())
			return;
	}
	store_stats_get(S, &st);
	ASSERT_EQ(st.cache_limit, 8);
	ASSERT_LE(st.cached_keys, 8);
	for (int round = 0; round < 2; round++)
		for (size_t i = 0; i < KMS_ARRAY_SIZE(ids); i++) {
			ASSERT_OK(store_key_get(S, P, ids[i], &k));
			ASSERT_STREQ(k->meta.key_id, ids[i]);
			ASSERT_TRUE(store_key_material(k, 0) != NULL);
			store_key_release(k);
			k = NULL;
		}
	store_stats_get(S, &st);
	ASSERT_EQ(st.cached_keys, 8);
	ASSERT_TRUE(st.cache_evictions >= 200 - 8);
	/* A key used again and again stays (second chance) while others pass through. */
	for (size_t i = 0; i < KMS_ARRAY_SIZE(ids); i++) {
		uint64_t misses;

		ASSERT_OK(store_key_get(S, P, ids[0], &k));
		store_key_release(k);
		k = NULL;
		store_stats_get(S, &st);
		misses = st.cache_misses;
		ASSERT_OK(store_key_get(S, P, ids[0], &k));
		store_key_release(k);
		k = NULL;
		store_stats_get(S, &st);
		ASSERT_EQ(st.cache_misses, misses);
		ASSERT_OK(store_key_get(S, P, ids[i], &k));
		store_key_release(k);
		k = NULL;
	}
	/* The default bound. */
	close_store();
	ASSERT_OK(open_store(false, &S));
	store_stats_get(S, &st);
	ASSERT_EQ(st.cache_limit, STORE_DEFAULT_KEY_CACHE);
}

/* Eviction drops the cache's reference only: a snapshot a request still holds stays intact. */
STORE_TEST(cache_eviction_keeps_held_snapshots)
{
	char ids[20][KMS_KEY_ID_LEN + 1];
	uint8_t m0[CORE_KEY_BYTES];
	struct store_key *held = NULL, *k = NULL;
	struct store_stats st;

	setup_empty();
	ASSERT_OK(open_store_cache(2, &S));
	for (size_t i = 0; i < KMS_ARRAY_SIZE(ids); i++) {
		char alias[16];

		snprintf(alias, sizeof(alias), "k%zu", i);
		new_key(P, alias, ids[i]);
		if (kms_test_failing())
			return;
	}
	ASSERT_OK(store_key_get(S, P, ids[0], &held));
	memcpy(m0, store_key_material(held, 0), sizeof(m0));
	for (size_t i = 1; i < KMS_ARRAY_SIZE(ids); i++) {
		ASSERT_OK(store_key_get(S, P, ids[i], &k));
		store_key_release(k);
		k = NULL;
	}
	store_stats_get(S, &st);
	ASSERT_LE(st.cached_keys, 2);
	ASSERT_MEMEQ(store_key_material(held, 0), m0, sizeof(m0));
	ASSERT_STREQ(held->meta.key_id, ids[0]);
	/* Rotation from the evicted key works, on the material it has. */
	ASSERT_OK(store_key_rotate(S, P, ids[0], now_ms(), &k));
	ASSERT_MEMEQ(store_key_material(k, 0), m0, sizeof(m0));
	store_key_release(k);
	store_key_release(held);
}

/* ==== the SQLite backend's own storage ==== */

/* ---- deleted material leaves no copy in the state directory ---- */

static bool bytes_contain(const uint8_t *hay, size_t hn, const uint8_t *needle, size_t n)
{
	for (size_t i = 0; n <= hn && i <= hn - n; i++)
		if (hay[i] == needle[0] && memcmp(hay + i, needle, n) == 0)
			return true;
	return false;
}

/* Does any file of the state directory (kms.db, kms.db-wal, kms.db-shm, ...) hold needle? Its
 * name goes to where. */
static void state_files_find(const uint8_t *needle, size_t n, bool *found, char *where, size_t cap)
{
	DIR *d = opendir(state_dir);
	struct dirent *e;

	*found = false;
	ASSERT_TRUE(d != NULL);
	/* cppcheck-suppress nullPointer ; ASSERT_TRUE returned if d is NULL */
	while (!*found && (e = readdir(d)) != NULL) {
		char path[sizeof(state_dir) + 2 + sizeof(e->d_name)];
		struct stat st;
		uint8_t *buf;
		ssize_t got = -1;
		int fd;

		snprintf(path, sizeof(path), "%s/%s", state_dir, e->d_name);
		if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size == 0)
			continue;
		buf = malloc((size_t)st.st_size);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (buf && fd >= 0)
			got = read(fd, buf, (size_t)st.st_size);
		if (got != st.st_size)
			kms_test_fail_(__FILE__, __LINE__, "a state file could not be read");
		if (got > 0 && bytes_contain(buf, (size_t)got, needle, n)) {
			*found = true;
			snprintf(where, cap, "%s", e->d_name);
		}
		if (fd >= 0)
			close(fd);
		free(buf);
	}
	closedir(d);
}

static bool state_files_hold(const uint8_t *needle, size_t n, char *where, size_t cap)
{
	bool found = false;

	state_files_find(needle, n, &found, where, cap);
	return found;
}

static off_t file_size(const char *name)
{
	char path[4300];
	struct stat st;

	path_of(path, sizeof(path), name);
	return stat(path, &st) == 0 ? st.st_size : -1;
}

/* An external key of project P with imported material (32 bytes of fill), its id in id. */
static void new_imported_key(const char *alias, uint8_t fill, int64_t expiration_ms,
			     char id[KMS_KEY_ID_LEN + 1])
{
	uint8_t material[CORE_KEY_BYTES];
	struct store_key *k = NULL;

	ASSERT_OK(store_key_create_external(S, P, alias, NULL, KMS_DEFAULT_KEY_QUOTA, &k));
	memcpy(id, k->meta.key_id, KMS_KEY_ID_LEN + 1);
	store_key_release(k);
	k = NULL;
	memset(material, fill, sizeof(material));
	ASSERT_OK(store_key_import(S, P, id, material, expiration_ms, &k));
	store_key_release(k);
}

/* Issue 11: delete-imported-key-material left the sealed material in kms.db-wal, where the root
 * key recovers it. After the deletion no file of the state directory holds it, while the store
 * stays open (as the daemon keeps it). */
TEST(deleted_imported_material_leaves_no_copy)
{
	char id[KMS_KEY_ID_LEN + 1], keep[KMS_KEY_ID_LEN + 1], where[300] = "";
	struct store_key *k = NULL;
	uint8_t sealed[256];
	size_t n = 0;

	SETUP();
	new_key(P, "stays", keep);
	new_imported_key("ext", 0x5a, 0, id);
	if (kms_test_failing())
		return;
	db_read_sealed(id, sealed, sizeof(sealed), &n);
	ASSERT_TRUE(n > 16);
	ASSERT_TRUE(state_files_hold(sealed, n, where, sizeof(where)));
	ASSERT_OK(store_key_delete_material(S, P, id, &k));
	store_key_release(k);
	where[0] = 0;
	if (state_files_hold(sealed, n, where, sizeof(where)))
		fprintf(stderr, "\tsealed material still in %s\n", where);
	ASSERT_EQ(where[0], 0);
	ASSERT_EQ(file_size("kms.db-wal"), 0);
	/* The other key is intact and the store works on. */
	db_read_sealed(keep, sealed, sizeof(sealed), &n);
	ASSERT_OK(store_key_get(S, P, keep, &k));
	store_key_release(k);
	reopen();
	ASSERT_OK(store_key_get(S, P, keep, &k));
	store_key_release(k);
}

static int schedule_now(struct store_key_meta *m, void *arg)
{
	m->state = STORE_KEY_PENDING_DELETION;
	m->deletion_ms = *(const int64_t *)arg;
	return 0;
}

/* The same for keys destroyed by the sweep after their deletion date, and for imported
 * material that expired: every version of the key is gone from every file. */
TEST(destroyed_key_and_expired_material_leave_no_copy)
{
	uint8_t v0[256], v1[256], ext[256];
	char id[KMS_KEY_ID_LEN + 1], xid[KMS_KEY_ID_LEN + 1], where[300] = "";
	struct store_key *k = NULL;
	size_t n0 = 0, n1 = 0, nx = 0, deleted = 0, rotated = 0;
	int64_t now = kms_time_real_ms(), when = now + 1000;

	SETUP();
	new_key(P, "doomed", id);
	db_read_sealed(id, v0, sizeof(v0), &n0);
	ASSERT_OK(store_key_rotate(S, P, id, now, &k));
	store_key_release(k);
	k = NULL;
	B->sealed_read(id, 1, v1, sizeof(v1), &n1);
	ASSERT_OK(store_key_modify(S, P, id, schedule_now, &when, &k));
	store_key_release(k);
	k = NULL;
	new_imported_key("ext", 0xa5, now + 2000, xid);
	if (kms_test_failing())
		return;
	db_read_sealed(xid, ext, sizeof(ext), &nx);
	ASSERT_TRUE(state_files_hold(v0, n0, where, sizeof(where)));
	ASSERT_TRUE(state_files_hold(ext, nx, where, sizeof(where)));
	ASSERT_OK(store_sweep(S, now + 3000, &deleted, &rotated));
	ASSERT_EQ(deleted, 1);
	where[0] = 0;
	if (state_files_hold(v0, n0, where, sizeof(where)) ||
	    state_files_hold(v1, n1, where, sizeof(where)) ||
	    state_files_hold(ext, nx, where, sizeof(where)))
		fprintf(stderr, "\tsealed material still in %s\n", where);
	ASSERT_EQ(where[0], 0);
	ASSERT_EQ(file_size("kms.db-wal"), 0);
	ASSERT_ERR(store_key_get(S, P, id, &k), KMS_E_KEY_NOT_FOUND);
	ASSERT_OK(store_key_get(S, P, xid, &k));
	ASSERT_EQ(k->meta.state, STORE_KEY_PENDING_IMPORT);
	store_key_release(k);
}

/* ---- unreadable policy rows fail closed ---- */

/* Run one SQL statement on kms.db from outside, as an editor or a disk error would. */
static void db_exec(const char *sql)
{
	sqlite3 *db = sqlite_open(SQLITE_OPEN_READWRITE);

	ASSERT_TRUE(db != NULL);
	ASSERT_EQ(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	ASSERT_EQ(sqlite3_close(db), SQLITE_OK);
}

static void refresh(void)
{
	bool changed = false;

	ASSERT_OK(store_refresh(S, &changed));
}

/* Issue 11: a project row that could not be read fell back to the defaults (0777/0666, open to
 * all). Now the project is refused (store_project_policy_check) and its modes are 0. */
TEST(unreadable_project_policy_fails_closed)
{
	/* A column and the SQL value that makes it unreadable: not an integer, or out of range. */
	static const char *const bad[][2] = {
		{ "dir_mode", "'garbage'" },
		{ "dir_mode", "''" },
		{ "owner_uid", "-1" },
		{ "group_gid", "4294967296" },
		{ "dir_mode", "99999" },
		{ "plaintext_mode", "4096" },
		{ "owner_uid", "1.5" },
		{ "plaintext_mode", "X'00'" },
		{ "dir_mode", "'0750 0700 junk'" },
	};
	struct store_project_policy pol = { 1000, 1000, 0750, 0700 }, got;
	char what[160];

	SETUP();
	ASSERT_OK(store_project_policy_set(S, Q, &pol));
	for (size_t i = 0; i < KMS_ARRAY_SIZE(bad); i++) {
		char *sql =
			sqlite3_mprintf("UPDATE project_policies SET %s = %s WHERE project_id = "
					"'" P "'",
					bad[i][0], bad[i][1]);

		ASSERT_OK(store_project_policy_set(S, P, &pol));
		ASSERT_OK(store_project_policy_check(S, P));
		store_project_policy(S, P, &got);
		ASSERT_EQ(got.mode, 0750);
		ASSERT_EQ(store_policy_unreadable(S, what, sizeof(what)), 0);
		ASSERT_TRUE(sql != NULL);
		db_exec(sql);
		sqlite3_free(sql);
		refresh();
		if (store_project_policy_check(S, P) != KMS_E_IO)
			fprintf(stderr, "\t%s = %s\n", bad[i][0], bad[i][1]);
		ASSERT_ERR(store_project_policy_check(S, P), KMS_E_IO);
		store_project_policy(S, P, &got);
		ASSERT_EQ(got.owner, 0);
		ASSERT_EQ(got.group, 0);
		ASSERT_EQ(got.mode, 0);
		ASSERT_EQ(got.plaintext_mode, 0);
		ASSERT_EQ(store_policy_unreadable(S, what, sizeof(what)), 1);
		ASSERT_TRUE(strstr(what, "project '" P "'") != NULL);
		/* The other project keeps its policy. */
		ASSERT_OK(store_project_policy_check(S, Q));
		store_project_policy(S, Q, &got);
		ASSERT_EQ(got.mode, 0750);
	}
	/* Also at open: a store opened on such a database refuses the project from the start. */
	reopen();
	ASSERT_ERR(store_project_policy_check(S, P), KMS_E_IO);
	/* Setting the policy again repairs it. */
	ASSERT_OK(store_project_policy_set(S, P, &pol));
	ASSERT_OK(store_project_policy_check(S, P));
	store_project_policy(S, P, &got);
	ASSERT_EQ(got.plaintext_mode, 0700);
	ASSERT_EQ(store_policy_unreadable(S, what, sizeof(what)), 0);
	ASSERT_STREQ(what, "");
}

/* An unreadable binding could have been the uid binding that narrows a group's role: no role by
 * binding in that project, and the project is refused. A row that names no project refuses
 * every project. An unreadable token row counts as a revocation of that token. */
TEST(unreadable_binding_and_token_rows_fail_closed)
{
	const uint32_t gids[] = { 50 };
	struct store_token_info t = { .id = "0123456789abcdef",
				      .project = P,
				      .user = "u",
				      .role = KMS_ROLE_ADMIN,
				      .expiry = 2000000000 };
	char what[160];

	SETUP();
	ASSERT_OK(store_binding_set(S, P, STORE_BIND_GID, 50, KMS_ROLE_ADMIN));
	ASSERT_OK(store_binding_set(S, P, STORE_BIND_UID, 1000, KMS_ROLE_VIEWER));
	ASSERT_OK(store_binding_set(S, Q, STORE_BIND_UID, 1000, KMS_ROLE_CRYPTO));
	ASSERT_EQ(store_binding_role(S, P, 1000, gids, 1), KMS_ROLE_VIEWER);
	ASSERT_EQ(store_binding_role(S, P, 1001, gids, 1), KMS_ROLE_ADMIN);
	/* The uid binding's role becomes "9": not a role. */
	db_exec("UPDATE bindings SET role = '9' WHERE project_id = '" P "' AND principal = 'uid' "
		"AND principal_id = 1000");
	refresh();
	ASSERT_EQ(store_binding_role(S, P, 1000, gids, 1), KMS_ROLE_NONE);
	ASSERT_EQ(store_binding_role(S, P, 1001, gids, 1), KMS_ROLE_NONE);
	ASSERT_ERR(store_project_policy_check(S, P), KMS_E_IO);
	ASSERT_EQ(store_binding_role(S, Q, 1000, NULL, 0), KMS_ROLE_CRYPTO);
	ASSERT_OK(store_project_policy_check(S, Q));
	ASSERT_EQ(store_policy_unreadable(S, what, sizeof(what)), 1);
	ASSERT_TRUE(strstr(what, "binding of project '" P "'") != NULL);
	/* Its id garbled but still naming the project. */
	db_exec("UPDATE bindings SET role = 'viewer', principal_id = '10x0' WHERE project_id = "
		"'" P "' AND principal = 'uid' AND principal_id = 1000");
	refresh();
	ASSERT_EQ(store_binding_role(S, P, 1001, gids, 1), KMS_ROLE_NONE);
	ASSERT_OK(store_project_policy_check(S, Q));
	/* A principal that is neither uid nor gid. */
	db_exec("UPDATE bindings SET principal = 'pid', principal_id = 1000 WHERE project_id = "
		"'" P "' AND principal_id = '10x0'");
	refresh();
	ASSERT_EQ(store_binding_role(S, P, 1001, gids, 1), KMS_ROLE_NONE);
	ASSERT_ERR(store_project_policy_check(S, P), KMS_E_IO);
	/* A row that names no project: every project is refused. */
	db_exec("UPDATE bindings SET project_id = 'x y', principal = 'uid' WHERE project_id = "
		"'" P "' AND principal = 'pid'");
	refresh();
	ASSERT_ERR(store_project_policy_check(S, P), KMS_E_IO);
	ASSERT_ERR(store_project_policy_check(S, Q), KMS_E_IO);
	ASSERT_EQ(store_binding_role(S, Q, 1000, NULL, 0), KMS_ROLE_NONE);
	db_exec("DELETE FROM bindings WHERE project_id = 'x y'");
	refresh();
	ASSERT_OK(store_project_policy_check(S, P));
	ASSERT_EQ(store_binding_role(S, P, 1001, gids, 1), KMS_ROLE_ADMIN);
	/* Token rows. */
	ASSERT_OK(store_token_record(S, &t));
	ASSERT_FALSE(store_token_revoked(S, t.id));
	db_exec("UPDATE tokens SET expiry = 'garbled'");
	refresh();
	ASSERT_TRUE(store_token_revoked(S, t.id));
	ASSERT_OK(store_project_policy_check(S, P));
	ASSERT_EQ(store_policy_unreadable(S, what, sizeof(what)), 1);
	ASSERT_TRUE(strstr(what, "token '0123456789abcdef'") != NULL);
	db_exec("UPDATE tokens SET expiry = 2000000000, role = 'root'");
	refresh();
	ASSERT_TRUE(store_token_revoked(S, t.id));
	db_exec("UPDATE tokens SET token_id = 'not-an-id'");
	refresh();
	ASSERT_ERR(store_project_policy_check(S, P), KMS_E_IO);
	db_exec("DELETE FROM tokens");
	refresh();
	ASSERT_OK(store_project_policy_check(S, P));
	ASSERT_EQ(store_policy_unreadable(S, what, sizeof(what)), 0);
}

/* A cgroup binding row that cannot be read (a role that is none, a path no binding may name)
 * could have been the deeper binding that narrows a role: the project is refused, and gives no
 * role by any binding. A row that names no project refuses every project. */
TEST(unreadable_cgroup_binding_rows_fail_closed)
{
	char what[160];

	SETUP();
	ASSERT_OK(store_binding_set_cgroup(S, P, "/a", KMS_ROLE_ADMIN));
	ASSERT_OK(store_binding_set_cgroup(S, P, "/a/b", KMS_ROLE_VIEWER));
	ASSERT_OK(store_binding_set(S, P, STORE_BIND_UID, 1000, KMS_ROLE_CRYPTO));
	ASSERT_OK(store_binding_set_cgroup(S, Q, "/a", KMS_ROLE_CRYPTO));
	db_exec("UPDATE cgroup_bindings SET role = 'root' WHERE path = '/a/b'");
	refresh();
	ASSERT_EQ(store_binding_role_cgroup(S, P, "/a/b"), KMS_ROLE_NONE);
	ASSERT_EQ(store_binding_role_cgroup(S, P, "/a"), KMS_ROLE_NONE);
	ASSERT_EQ(store_binding_role(S, P, 1000, NULL, 0), KMS_ROLE_NONE);
	ASSERT_ERR(store_project_policy_check(S, P), KMS_E_IO);
	ASSERT_EQ(store_binding_role_cgroup(S, Q, "/a/b"), KMS_ROLE_CRYPTO);
	ASSERT_OK(store_project_policy_check(S, Q));
	ASSERT_EQ(store_policy_unreadable(S, what, sizeof(what)), 1);
	ASSERT_TRUE(strstr(what, "cgroup binding of project '" P "'") != NULL);
	/* A path no binding may name, a path that is not text. */
	db_exec("UPDATE cgroup_bindings SET role = 'viewer', path = '/a/../b' WHERE path = '/a/b'");
	refresh();
	ASSERT_ERR(store_project_policy_check(S, P), KMS_E_IO);
	db_exec("UPDATE cgroup_bindings SET path = X'2f63' WHERE path = '/a/../b'");
	refresh();
	ASSERT_ERR(store_project_policy_check(S, P), KMS_E_IO);
	ASSERT_OK(store_project_policy_check(S, Q));
	/* No project we can tell: every project. */
	db_exec("UPDATE cgroup_bindings SET project_id = 'x y', path = '/c' WHERE path = X'2f63'");
	refresh();
	ASSERT_ERR(store_project_policy_check(S, Q), KMS_E_IO);
	ASSERT_EQ(store_binding_role_cgroup(S, Q, "/a"), KMS_ROLE_NONE);
	db_exec("DELETE FROM cgroup_bindings WHERE project_id = 'x y'");
	refresh();
	ASSERT_OK(store_project_policy_check(S, P));
	ASSERT_EQ(store_binding_role_cgroup(S, P, "/a/b"), KMS_ROLE_ADMIN);
	ASSERT_EQ(store_policy_unreadable(S, what, sizeof(what)), 0);
}

/* ---- schema upgrade 2 -> 3: policy strings become typed rows ---- */

/* The schema of version 2 as that release created it, with policy rows in its string format. */
static const char v2_database[] =
	"CREATE TABLE meta(name TEXT PRIMARY KEY, value TEXT NOT NULL);"
	"CREATE TABLE projects(project_id TEXT PRIMARY KEY, created_ms INTEGER NOT NULL);"
	"CREATE TABLE keys(key_id TEXT PRIMARY KEY,"
	"  project_id TEXT NOT NULL REFERENCES projects(project_id),"
	"  key_alias TEXT NOT NULL, key_description TEXT NOT NULL DEFAULT '',"
	"  key_spec TEXT NOT NULL, key_usage TEXT NOT NULL, origin TEXT NOT NULL,"
	"  key_state INTEGER NOT NULL, creation_ms INTEGER NOT NULL,"
	"  deletion_ms INTEGER NOT NULL DEFAULT 0, rotation_enabled INTEGER NOT NULL DEFAULT 0,"
	"  rotation_interval INTEGER NOT NULL DEFAULT 365,"
	"  last_rotation_ms INTEGER NOT NULL DEFAULT 0, rotations INTEGER NOT NULL DEFAULT 0,"
	"  current_version INTEGER NOT NULL DEFAULT 0, expiration_ms INTEGER NOT NULL DEFAULT 0,"
	"  import_digest BLOB);"
	"CREATE UNIQUE INDEX keys_alias ON keys(project_id, key_alias);"
	"CREATE INDEX keys_project ON keys(project_id, creation_ms);"
	"CREATE TABLE key_versions(key_id TEXT NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,"
	"  version INTEGER NOT NULL, sealed BLOB NOT NULL, created_ms INTEGER NOT NULL,"
	"  PRIMARY KEY(key_id, version));"
	"CREATE TABLE grants(grant_id TEXT PRIMARY KEY, project_id TEXT NOT NULL,"
	"  key_id TEXT NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,"
	"  grantee TEXT NOT NULL, grantee_type TEXT NOT NULL, operations TEXT NOT NULL,"
	"  issuer TEXT NOT NULL, retiring TEXT NOT NULL DEFAULT '', name TEXT NOT NULL DEFAULT '',"
	"  creation_ms INTEGER NOT NULL);"
	"CREATE INDEX grants_key ON grants(key_id);"
	"CREATE TABLE tags(key_id TEXT NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,"
	"  tag_key TEXT NOT NULL, tag_value TEXT NOT NULL, PRIMARY KEY(key_id, tag_key));"
	"CREATE TABLE policy(kind TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL,"
	"  PRIMARY KEY(kind, name));"
	"INSERT INTO meta VALUES('schema_version', '2');"
	"INSERT INTO projects VALUES('" P "', 1), ('" Q "', 2);"
	"INSERT INTO policy VALUES"
	"  ('project', '" P "', '1000 1001 750 640'),"
	"  ('project', '" Q "', '0 0 0770 garbage'),"
	"  ('bind', '" P "|uid|1000', '1'),"
	"  ('bind', '" P "|gid|50', '3'),"
	"  ('bind', '" Q "|gid|7', '2'),"
	"  ('bind', 'proj-c|uid|1x', '1'),"
	"  ('token', '0123456789abcdef', '" P "|alice|admin|2000000000|1700000000000|0'),"
	"  ('token', 'fedcba9876543210', '" Q "|bob|viewer|2000000001|1700000000001|1'),"
	"  ('token', '00000000000000aa', 'garbled'),"
	"  ('future', 'x', 'y');";

struct token_seen {
	struct store_token_info t[4];
	size_t n;
};

static int token_collect(const struct store_token_info *t, void *arg)
{
	struct token_seen *seen = arg;

	if (seen->n < KMS_ARRAY_SIZE(seen->t))
		seen->t[seen->n] = *t;
	seen->n++;
	return 0;
}

static void v2_upgrade_check(void)
{
	const uint32_t gids[] = { 50 }, gids_q[] = { 7 };
	struct store_project_policy got;
	struct token_seen seen = { 0 };
	char what[160];

	store_project_policy(S, P, &got);
	ASSERT_EQ(got.owner, 1000);
	ASSERT_EQ(got.group, 1001);
	ASSERT_EQ(got.mode, 0750);
	ASSERT_EQ(got.plaintext_mode, 0640);
	ASSERT_OK(store_project_policy_check(S, P));
	ASSERT_EQ(store_binding_role(S, P, 1000, gids, 1), KMS_ROLE_VIEWER);
	ASSERT_EQ(store_binding_role(S, P, 1001, gids, 1), KMS_ROLE_ADMIN);
	/* Rows version 2 could not read still fail closed, for the same projects. */
	ASSERT_ERR(store_project_policy_check(S, Q), KMS_E_IO);
	ASSERT_EQ(store_binding_role(S, Q, 1, gids_q, 1), KMS_ROLE_NONE);
	ASSERT_ERR(store_project_policy_check(S, "proj-c"), KMS_E_IO);
	ASSERT_EQ(store_policy_unreadable(S, what, sizeof(what)), 3);
	ASSERT_TRUE(store_token_revoked(S, "fedcba9876543210"));
	ASSERT_TRUE(store_token_revoked(S, "00000000000000aa"));
	ASSERT_FALSE(store_token_revoked(S, "0123456789abcdef"));
	ASSERT_OK(store_token_list(S, token_collect, &seen));
	ASSERT_EQ(seen.n, 2);
	ASSERT_STREQ(seen.t[0].id, "0123456789abcdef");
	ASSERT_STREQ(seen.t[0].project, P);
	ASSERT_STREQ(seen.t[0].user, "alice");
	ASSERT_EQ(seen.t[0].role, KMS_ROLE_ADMIN);
	ASSERT_EQ(seen.t[0].expiry, 2000000000);
	ASSERT_EQ(seen.t[0].issued_ms, 1700000000000);
	ASSERT_FALSE(seen.t[0].revoked);
	ASSERT_STREQ(seen.t[1].id, "fedcba9876543210");
	ASSERT_STREQ(seen.t[1].project, Q);
	ASSERT_STREQ(seen.t[1].user, "bob");
	ASSERT_EQ(seen.t[1].role, KMS_ROLE_VIEWER);
	ASSERT_EQ(seen.t[1].expiry, 2000000001);
	ASSERT_TRUE(seen.t[1].revoked);
}

TEST(schema_upgrade_2_3_keeps_policy_bindings_and_tokens)
{
	struct store_project_policy pol = { 0, 0, 0700, 0600 };
	char path[4300];
	sqlite3 *db = NULL;

	setup_empty();
	ASSERT_EQ(mkdir(state_dir, 0700), 0);
	path_of(path, sizeof(path), "kms.db");
	ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
	ASSERT_EQ(sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL), SQLITE_OK);
	ASSERT_EQ(sqlite3_exec(db, v2_database, NULL, NULL, NULL), SQLITE_OK);
	ASSERT_EQ(sqlite3_close(db), SQLITE_OK);
	/* Read-only, it cannot be upgraded and is refused with a reason. */
	{
		struct store_options o = { .state_dir = state_dir, .read_only = true };

		ASSERT_ERR(store_open(&o, &S, why, sizeof(why)), KMS_E_IO);
		ASSERT_TRUE(strstr(why, "schema version 2") != NULL);
	}
	ASSERT_OK(open_store(true, &S));
	if (kms_test_failing())
		return;
	v2_upgrade_check();
	/* Once upgraded it stays so: the same after a reopen, and the old table is gone. */
	reopen();
	v2_upgrade_check();
	ASSERT_ERR(store_binding_set(S, P, STORE_BIND_UID, 1, (enum kms_role)4), KMS_E_BAD_PARAM);
	db_exec("SELECT 1 FROM meta WHERE name = 'schema_version' AND value = '3'");
	{
		path_of(path, sizeof(path), "kms.db");
		ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
		ASSERT_TRUE(sqlite3_exec(db, "SELECT 1 FROM policy", NULL, NULL, NULL) !=
			    SQLITE_OK);
		ASSERT_EQ(sqlite3_close(db), SQLITE_OK);
	}
	/* Writing the repaired policy reads back. */
	ASSERT_OK(store_project_policy_set(S, Q, &pol));
	ASSERT_OK(store_project_policy_check(S, Q));
}

/* ---- schema upgrade 3 -> 4: revisions ---- */

static int64_t db_int(const char *sql)
{
	sqlite3 *db = sqlite_open(SQLITE_OPEN_READONLY);
	sqlite3_stmt *st = NULL;
	int64_t v = -1;

	if (!db)
		return -1;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

TEST(schema_upgrade_3_4_adds_revisions)
{
	char a[KMS_KEY_ID_LEN + 1];
	uint8_t m1[CORE_KEY_BYTES];
	struct store_key *k = NULL;

	SETUP();
	new_key(P, "a", a);
	if (kms_test_failing())
		return;
	ASSERT_OK(store_key_rotate(S, P, a, now_ms(), &k));
	memcpy(m1, store_key_material(k, 1), sizeof(m1));
	ASSERT_EQ(k->meta.revision, 1);
	store_key_release(k);
	k = NULL;
	close_store();
	/* What version 3 wrote: no revision column. */
	db_exec("ALTER TABLE keys DROP COLUMN revision;"
		"UPDATE meta SET value = '3' WHERE name = 'schema_version'");
	{
		struct store_options o = { .state_dir = state_dir, .read_only = true };

		ASSERT_ERR(store_open(&o, &S, why, sizeof(why)), KMS_E_IO);
		ASSERT_TRUE(strstr(why, "schema version 3") != NULL);
	}
	ASSERT_OK(open_store(false, &S));
	if (kms_test_failing())
		return;
	ASSERT_EQ(db_int("SELECT value FROM meta WHERE name = 'schema_version'"), 5);
	ASSERT_OK(store_key_get(S, P, a, &k));
	ASSERT_EQ(k->meta.revision, 0);
	ASSERT_EQ(k->nversions, 2);
	ASSERT_MEMEQ(store_key_material(k, 1), m1, sizeof(m1));
	store_key_release(k);
	k = NULL;
	/* Writes are conditional from now on, and count. */
	ASSERT_OK(store_key_rotate(S, P, a, now_ms(), &k));
	ASSERT_EQ(k->meta.revision, 1);
	store_key_release(k);
	ASSERT_EQ(db_int("SELECT revision FROM keys"), 1);
	reopen();
	ASSERT_EQ(db_int("SELECT value FROM meta WHERE name = 'schema_version'"), 5);
}

/* ---- schema upgrade 4 -> 5: cgroup bindings and remembered sessions ---- */

TEST(schema_upgrade_4_5_adds_tables)
{
	char a[KMS_KEY_ID_LEN + 1];
	struct store_key *k = NULL;

	SETUP();
	new_key(P, "a", a);
	ASSERT_OK(store_binding_set(S, P, STORE_BIND_UID, 1000, KMS_ROLE_CRYPTO));
	if (kms_test_failing())
		return;
	close_store();
	ASSERT_EQ(db_int("SELECT value FROM meta WHERE name = 'schema_version'"), 5);
	/* What version 4 wrote: neither table. */
	db_exec("DROP TABLE cgroup_bindings; DROP TABLE sessions;"
		"UPDATE meta SET value = '4' WHERE name = 'schema_version'");
	{
		struct store_options o = { .state_dir = state_dir, .read_only = true };

		ASSERT_ERR(store_open(&o, &S, why, sizeof(why)), KMS_E_IO);
		ASSERT_TRUE(strstr(why, "schema version 4") != NULL);
	}
	ASSERT_OK(open_store(false, &S));
	if (kms_test_failing())
		return;
	ASSERT_EQ(db_int("SELECT value FROM meta WHERE name = 'schema_version'"), 5);
	ASSERT_EQ(db_int("SELECT count(*) FROM cgroup_bindings"), 0);
	ASSERT_EQ(db_int("SELECT count(*) FROM sessions"), 0);
	/* What version 4 held reads the same. */
	ASSERT_OK(store_key_get(S, P, a, &k));
	ASSERT_EQ(k->nversions, 1);
	store_key_release(k);
	ASSERT_EQ(store_binding_role(S, P, 1000, NULL, 0), KMS_ROLE_CRYPTO);
	reopen();
	ASSERT_EQ(db_int("SELECT value FROM meta WHERE name = 'schema_version'"), 5);
	close_store();
	/* A version this kmsfs does not know is refused, as before. */
	db_exec("UPDATE meta SET value = '6' WHERE name = 'schema_version'");
	ASSERT_ERR(open_store(false, &S), KMS_E_IO);
	ASSERT_TRUE(strstr(why, "schema version 6") != NULL);
}

/* ---- the operations store copy uses, SQLite to SQLite ---- */

struct sealed_set {
	struct store_sealed_version v[4];
	size_t n;
};

static int sealed_collect(const struct store_sealed_version *v, void *arg)
{
	struct sealed_set *set = arg;

	if (set->n >= KMS_ARRAY_SIZE(set->v))
		return KMS_E_IO;
	set->v[set->n++] = *v;
	return 0;
}

/* A second state directory with the same root key, its store in D. */
static int open_copy_target(const char *name, struct store **out)
{
	char dir[4300], root[4400], root2[4400];
	uint8_t key[32];
	struct store_options o = { .backend = B->uri, .create = true };

	snprintf(dir, sizeof(dir), "%s/%s", base_dir, name);
	if (mkdir(dir, 0700) != 0)
		return KMS_E_IO;
	path_of(root, sizeof(root), "root.key");
	snprintf(root2, sizeof(root2), "%s/root.key", dir);
	if (read_file(root, key, sizeof(key)) != 32)
		return KMS_E_IO;
	write_file(root2, key, 32, 0600);
	o.state_dir = dir;
	return store_open(&o, out, why, sizeof(why));
}

/* store copy carries the cgroup bindings, and a second run finds them there. */
TEST(store_copy_carries_cgroup_bindings)
{
	struct store *D = NULL;

	SETUP();
	ASSERT_OK(store_binding_set_cgroup(S, P, "/system.slice/app.service", KMS_ROLE_CRYPTO));
	ASSERT_OK(store_binding_set_cgroup(S, Q, "/kubepods.slice", KMS_ROLE_VIEWER));
	ASSERT_OK(open_copy_target("copy", &D));
	if (kms_test_failing())
		return;
	ASSERT_OK(store_copy(S, D, NULL, NULL, why, sizeof(why)));
	ASSERT_OK(store_copy(S, D, NULL, NULL, why, sizeof(why)));
	ASSERT_EQ(store_binding_role_cgroup(D, P, "/system.slice/app.service"), KMS_ROLE_CRYPTO);
	ASSERT_EQ(store_binding_role_cgroup(D, Q, "/kubepods.slice/a"), KMS_ROLE_VIEWER);
	store_close(D);
}

TEST(sqlite_key_put_grant_put_meta_add)
{
	char a[KMS_KEY_ID_LEN + 1], value[16];
	struct store_grant g = { .grant_id = "g1",
				 .project = P,
				 .grantee = "u",
				 .grantee_type = "user",
				 .operations = "describe-key",
				 .issuer = "i",
				 .creation_ms = 5 };
	struct store_grant_filter f = { .project = P };
	struct sealed_set set = { 0 };
	struct store_key_meta meta;
	struct store_key *k = NULL, *k2 = NULL;
	struct store *D = NULL;
	size_t grants = 0, total = 0;
	bool added = false, found = false;

	SETUP();
	new_key(P, "a", a);
	if (kms_test_failing())
		return;
	ASSERT_OK(store_key_rotate(S, P, a, now_ms(), &k));
	store_key_release(k);
	k = NULL;
	snprintf(g.key_id, sizeof(g.key_id), "%s", a);
	ASSERT_OK(store_grant_create(S, &g, 10));
	ASSERT_OK(S->ops->key_load(S->be, P, a, NULL, &meta, sealed_collect, &set));
	ASSERT_EQ(set.n, 2);
	ASSERT_OK(open_copy_target("copy", &D));
	if (kms_test_failing())
		return;
	ASSERT_ERR(D->ops->grant_put(D->be, &g, &added), KMS_E_KEY_NOT_FOUND);
	ASSERT_OK(D->ops->key_put(D->be, &meta, set.v, set.n, &added));
	ASSERT_TRUE(added);
	ASSERT_OK(D->ops->key_put(D->be, &meta, set.v, set.n, &added));
	ASSERT_FALSE(added);
	ASSERT_OK(D->ops->grant_put(D->be, &g, &added));
	ASSERT_TRUE(added);
	ASSERT_OK(D->ops->grant_put(D->be, &g, &added));
	ASSERT_FALSE(added);
	ASSERT_OK(store_grant_list(D, &f, 0, 10, count_grant, &grants, &total));
	ASSERT_EQ(total, 1);
	/* The copy unseals to the same material, at the same revision. */
	ASSERT_OK(store_key_get(S, P, a, &k));
	ASSERT_OK(store_key_get(D, P, a, &k2));
	if (kms_test_failing())
		goto out;
	ASSERT_EQ(k2->nversions, 2);
	ASSERT_EQ(k2->meta.revision, k->meta.revision);
	ASSERT_STREQ(k2->meta.alias, "a");
	ASSERT_MEMEQ(store_key_material(k2, 0), store_key_material(k, 0), CORE_KEY_BYTES);
	ASSERT_MEMEQ(store_key_material(k2, 1), store_key_material(k, 1), CORE_KEY_BYTES);
	/* Settings: the first writer wins. */
	ASSERT_OK(D->ops->meta_add(D->be, "x", "1", &added));
	ASSERT_TRUE(added);
	ASSERT_OK(D->ops->meta_add(D->be, "x", "2", &added));
	ASSERT_FALSE(added);
	ASSERT_OK(D->ops->meta_get(D->be, "x", value, sizeof(value), &found));
	ASSERT_TRUE(found);
	ASSERT_STREQ(value, "1");
out:
	store_key_release(k);
	store_key_release(k2);
	store_close(D);
}

/* ---- a shared backend's freshness, on SQLite marked shared ---- */

/* SQLite as a shared backend would behave when it cannot be reached (fake_down). */
static struct store_backend_ops fake_shared_ops;
static bool fake_down;

static int fake_data_version(struct store_backend *b, int64_t *version)
{
	return fake_down ? KMS_E_STORE_UNAVAILABLE : store_sqlite_ops.data_version(b, version);
}

static int fake_key_load(struct store_backend *b, const char *project, const char *key_id,
			 const char *alias, struct store_key_meta *meta,
			 store_backend_version_cb cb, void *arg)
{
	return fake_down ? KMS_E_STORE_UNAVAILABLE
			 : store_sqlite_ops.key_load(b, project, key_id, alias, meta, cb, arg);
}

static void fake_shared(struct store *s)
{
	fake_shared_ops = store_sqlite_ops;
	fake_shared_ops.shared = true;
	fake_shared_ops.data_version = fake_data_version;
	fake_shared_ops.key_load = fake_key_load;
	fake_down = false;
	s->ops = &fake_shared_ops;
}

static uint64_t misses_of(struct store *s)
{
	struct store_stats st;

	store_stats_get(s, &st);
	return st.cache_misses;
}

/* Cached keys are served while the backend cannot be reached for at most the offline grace,
 * then refused like everything else until a refresh reaches it again; a key not cached is
 * refused at once. Without a grace (0) a hit needs a refresh within the last ~1.5 s, else the
 * key is read from the backend. */
TEST(shared_offline_grace)
{
	struct store_options o = { .create = true, .offline_grace_ms = 60000 };
	char a[KMS_KEY_ID_LEN + 1], b[KMS_KEY_ID_LEN + 1];
	struct store_key *k = NULL;
	struct store_stats st;
	uint64_t misses;

	setup_empty();
	o.state_dir = state_dir;
	ASSERT_OK(store_open(&o, &S, why, sizeof(why)));
	fake_shared(S);
	ASSERT_TRUE(store_shared(S));
	new_keys_ab(a, b);
	if (kms_test_failing())
		return;
	store_cache_replace(S, b, NULL); /* only a is cached */
	refresh_of(S, false);
	store_stats_get(S, &st);
	ASSERT_TRUE(st.online);
	ASSERT_LE(st.fresh_age_ms, 1000);
	fake_down = true;
	ASSERT_ERR(store_refresh(S, &(bool){ false }), KMS_E_STORE_UNAVAILABLE);
	store_stats_get(S, &st);
	ASSERT_FALSE(st.online);
	ASSERT_EQ(state_via(S, a), STORE_KEY_ENABLED);
	ASSERT_ERR(store_key_get(S, P, b, &k), KMS_E_STORE_UNAVAILABLE);
	/* The grace runs out. */
	S->fresh_ms -= 61000;
	ASSERT_ERR(store_key_get(S, P, a, &k), KMS_E_STORE_UNAVAILABLE);
	/* Back: one refresh catches up, then the cache serves again. */
	fake_down = false;
	refresh_of(S, false);
	store_stats_get(S, &st);
	ASSERT_TRUE(st.online);
	misses = misses_of(S);
	ASSERT_EQ(state_via(S, a), STORE_KEY_ENABLED);
	ASSERT_EQ(misses_of(S), misses);
	ASSERT_EQ(state_via(S, b), STORE_KEY_ENABLED);
	/* No grace: a hit needs a recent refresh; without one the backend is asked. */
	S->offline_grace_ms = 0;
	ASSERT_EQ(state_via(S, a), STORE_KEY_ENABLED);
	ASSERT_EQ(misses_of(S), misses + 1); /* b's */
	S->fresh_ms -= 2000;
	ASSERT_EQ(state_via(S, a), STORE_KEY_ENABLED);
	ASSERT_EQ(misses_of(S), misses + 2);
	fake_down = true;
	ASSERT_ERR(store_key_get(S, P, a, &k), KMS_E_STORE_UNAVAILABLE);
	ASSERT_ERR(store_refresh(S, &(bool){ false }), KMS_E_STORE_UNAVAILABLE);
	ASSERT_ERR(store_key_get(S, P, a, &k), KMS_E_STORE_UNAVAILABLE);
	fake_down = false;
	/* SQLite itself is never offline. */
	S->ops = &store_sqlite_ops;
	store_stats_get(S, &st);
	ASSERT_TRUE(st.online);
	ASSERT_EQ(st.fresh_age_ms, 0);
	ASSERT_EQ(store_watch(S, 1000), 0);
}

/* With a shared backend the token secret is a setting, sealed under the root key: no file, the
 * same through every handle, and a damaged one is refused. */
TEST(shared_state_secret_in_settings)
{
	uint8_t s1[32], s2[32];
	char path[4300], hex[256], plain[65];
	bool found = false;

	SETUP();
	fake_shared(S);
	ASSERT_OK(open_second());
	if (kms_test_failing())
		return;
	S2->ops = &fake_shared_ops;
	ASSERT_OK(store_state_secret(S, "token.key", s1));
	ASSERT_OK(store_state_secret(S2, "token.key", s2));
	ASSERT_MEMEQ(s1, s2, 32);
	ASSERT_OK(store_state_secret(S, "token.key", s2));
	ASSERT_MEMEQ(s1, s2, 32);
	ASSERT_OK(store_state_secret(S, "other.key", s2));
	ASSERT_FALSE(memcmp(s1, s2, 32) == 0);
	path_of(path, sizeof(path), "token.key");
	ASSERT_EQ(access(path, F_OK), -1);
	ASSERT_OK(S->ops->meta_get(S->be, "secret:token.key", hex, sizeof(hex), &found));
	ASSERT_TRUE(found);
	kms_hex_encode(s1, 32, plain);
	ASSERT_TRUE(strlen(hex) > 64);
	ASSERT_TRUE(strstr(hex, plain) == NULL);
	ASSERT_OK(S->ops->meta_set(S->be, "secret:token.key", "00ff"));
	ASSERT_ERR(store_state_secret(S2, "token.key", s2), KMS_E_IO);
	close_second();
}

/* ---- a full secure heap evicts cached keys ---- */

/* The cache is bounded by keys, but the keys' material lives in the secure heap, which may be
 * smaller: a snapshot that finds it full evicts cached keys and tries once more instead of
 * failing the request. (Last: the secure heap stays set up for the rest of the process only if
 * it cannot be taken down.) */
TEST(full_secure_heap_evicts)
{
	char ids[150][KMS_KEY_ID_LEN + 1];
	struct store_key *k = NULL;
	struct store_stats st;

	if (CRYPTO_secure_malloc_initialized()) {
		fprintf(stderr,
			"SKIP full_secure_heap_evicts: the secure heap is set up already\n");
		return;
	}
	/* 4 KiB: 128 blocks of 32 bytes, fewer than the keys below. */
	ASSERT_TRUE(CRYPTO_secure_malloc_init(4096, 32) != 0);
	setup_empty();
	ASSERT_OK(open_store_cache(1000, &S));
	ASSERT_TRUE(store_root_key_secure(S));
	for (size_t i = 0; i < KMS_ARRAY_SIZE(ids) && !kms_test_failing(); i++) {
		char alias[16];

		snprintf(alias, sizeof(alias), "k%zu", i);
		new_key(i % 2 ? P : Q, alias, ids[i]);
	}
	for (size_t i = 0; i < KMS_ARRAY_SIZE(ids) && !kms_test_failing(); i++) {
		ASSERT_OK(store_key_get(S, i % 2 ? P : Q, ids[i], &k));
		ASSERT_TRUE(kms_secret_is_secure(store_key_material(k, 0)));
		store_key_release(k);
		k = NULL;
	}
	store_stats_get(S, &st);
	ASSERT_TRUE(st.cache_evictions > 0);
	ASSERT_TRUE(st.cached_keys < KMS_ARRAY_SIZE(ids));
	close_store();
	ASSERT_EQ(CRYPTO_secure_malloc_done(), 1);
}

/* ---- a change feed, faked on SQLite marked shared ---- */

static struct {
	enum store_change kind;
	char id[KMS_KEY_ID_LEN + 1];
} fake_feed[16];
static int64_t fake_feed_n;
static bool fake_feed_pruned; /* what came after since is no longer kept */

static int fake_changes_since(struct store_backend *b, int64_t since, store_backend_change_cb cb,
			      void *arg, int64_t *latest)
{
	int r = 0;

	(void)b;
	if (fake_down)
		return KMS_E_STORE_UNAVAILABLE;
	if (since >= 0 && fake_feed_pruned)
		return KMS_E_STALE;
	for (int64_t i = since + 1; since >= 0 && i <= fake_feed_n && r == 0; i++)
		r = cb(fake_feed[i - 1].kind, fake_feed[i - 1].id, arg);
	*latest = fake_feed_n;
	return r;
}

static void fake_change(enum store_change kind, const char *id)
{
	fake_feed[fake_feed_n].kind = kind;
	snprintf(fake_feed[fake_feed_n].id, sizeof(fake_feed[0].id), "%s", id);
	fake_feed_n++;
}

static size_t cached_of(struct store *s)
{
	struct store_stats st;

	store_stats_get(s, &st);
	return st.cached_keys;
}

/* With a change feed, refresh reads again only the cached keys that changed, reloads the policy
 * only when it changed, catches up on what it missed while the backend could not be reached, and drops
 * everything when the feed no longer holds what it missed. */
TEST(shared_change_feed_refresh)
{
	struct store_options o = { .create = true, .offline_grace_ms = 60000 };
	char a[KMS_KEY_ID_LEN + 1], b[KMS_KEY_ID_LEN + 1], changed_elsewhere[] = "changed";
	struct store_key *k = NULL;
	uint32_t gid = 50;
	uint64_t misses;

	setup_empty();
	o.state_dir = state_dir;
	ASSERT_OK(store_open(&o, &S, why, sizeof(why)));
	fake_shared(S);
	fake_shared_ops.changes_since = fake_changes_since;
	fake_feed_n = 0;
	fake_feed_pruned = false;
	S->seq = 0;
	ASSERT_OK(open_second()); /* another host, writing to the same database */
	new_keys_ab(a, b);
	if (kms_test_failing())
		return;
	refresh_of(S, false);
	ASSERT_EQ(cached_of(S), 2);
	/* A change of a elsewhere: a is read again at once, b stays as it was. */
	ASSERT_OK(store_key_modify(S2, P, a, describe_as, changed_elsewhere, &k));
	store_key_release(k);
	k = NULL;
	fake_change(STORE_CHANGE_KEY, a);
	misses = misses_of(S);
	refresh_of(S, true);
	ASSERT_EQ(cached_of(S), 2);
	ASSERT_OK(store_key_get(S, P, a, &k));
	ASSERT_STREQ(k->meta.description, changed_elsewhere);
	store_key_release(k);
	k = NULL;
	ASSERT_EQ(state_via(S, b), STORE_KEY_ENABLED);
	ASSERT_EQ(misses_of(S), misses);
	/* Changed, but not cached here: stays uncached. */
	store_cache_replace(S, a, NULL);
	fake_change(STORE_CHANGE_KEY, a);
	refresh_of(S, true);
	ASSERT_EQ(cached_of(S), 1);
	ASSERT_EQ(state_via(S, a), STORE_KEY_ENABLED);
	/* Grants, tags, settings: nothing cached changes. */
	fake_change(STORE_CHANGE_OTHER, "");
	refresh_of(S, false);
	ASSERT_EQ(cached_of(S), 2);
	/* Policy: reloaded. */
	ASSERT_OK(store_binding_set(S2, P, STORE_BIND_GID, 50, KMS_ROLE_ADMIN));
	ASSERT_EQ(store_binding_role(S, P, 1, &gid, 1), KMS_ROLE_NONE);
	fake_change(STORE_CHANGE_POLICY, "");
	refresh_of(S, true);
	ASSERT_EQ(store_binding_role(S, P, 1, &gid, 1), KMS_ROLE_ADMIN);
	ASSERT_EQ(cached_of(S), 2);
	/* An outage during which b is disabled elsewhere: served as cached within the grace, caught
	 * up by the first refresh that gets through. */
	fake_down = true;
	ASSERT_ERR(store_refresh(S, &(bool){ false }), KMS_E_STORE_UNAVAILABLE);
	ASSERT_OK(store_key_modify(S2, P, b, set_disabled, NULL, &k));
	store_key_release(k);
	k = NULL;
	fake_change(STORE_CHANGE_KEY, b);
	ASSERT_EQ(state_via(S, b), STORE_KEY_ENABLED);
	fake_down = false;
	refresh_of(S, true);
	ASSERT_EQ(state_via(S, b), STORE_KEY_DISABLED);
	/* Missed changes no longer kept: everything goes. */
	fake_feed_pruned = true;
	ASSERT_EQ(state_via(S, a), STORE_KEY_ENABLED);
	ASSERT_TRUE(cached_of(S) > 0);
	refresh_of(S, true);
	ASSERT_EQ(cached_of(S), 0);
	fake_feed_pruned = false;
	refresh_of(S, false);
	ASSERT_EQ(S->seq, fake_feed_n);
	close_second();
}

/* ---- a load that a refresh overtook ---- */

static char overtaken_other[KMS_KEY_ID_LEN + 1];

/* As if a refresh dropped another key as stale while this load was running. */
static int overtaken_key_load(struct store_backend *b, const char *project, const char *key_id,
			      const char *alias, struct store_key_meta *meta,
			      store_backend_version_cb cb, void *arg)
{
	store_cache_replace(S, overtaken_other, NULL);
	return store_sqlite_ops.key_load(b, project, key_id, alias, meta, cb, arg);
}

/* What such a load read may predate the change that was dropped: it serves the request that
 * asked and is not cached, and the caller's reference is the only one (no leak). */
TEST(overtaken_load_not_cached)
{
	char a[KMS_KEY_ID_LEN + 1];
	struct store_key *k = NULL;

	SETUP();
	new_keys_ab(a, overtaken_other);
	if (kms_test_failing())
		return;
	store_cache_clear(S);
	fake_shared_ops = store_sqlite_ops;
	fake_shared_ops.key_load = overtaken_key_load;
	S->ops = &fake_shared_ops;
	ASSERT_OK(store_key_get(S, P, a, &k));
	ASSERT_EQ(k->refs, 1);
	ASSERT_EQ(cached_of(S), 0);
	store_key_release(k);
	k = NULL;
	S->ops = &store_sqlite_ops;
	ASSERT_OK(store_key_get(S, P, a, &k));
	ASSERT_EQ(k->refs, 2);
	ASSERT_EQ(cached_of(S), 1);
	store_key_release(k);
}

/* A damaged page deep in the file: opening reads no page it does not need (a mount stays quick
 * whatever the size), and store_verify, which kmsctl check and kmsfs after mounting run, finds
 * the damage. */
TEST(verify_finds_damage_open_does_not_read)
{
	char id[KMS_KEY_ID_LEN + 1], path[8192], msg[512], alias[32], project[16];
	uint8_t junk[4096];
	struct stat st;
	int fd;

	SETUP();
	for (int i = 0; i < 400; i++) {
		snprintf(alias, sizeof(alias), "k%d", i);
		snprintf(project, sizeof(project), "v%d", i / 90); /* under the key quota */
		new_key(project, alias, id);
	}
	ASSERT_OK(store_verify(S, msg, sizeof(msg)));
	store_close(S);
	S = NULL;
	path_of(path, sizeof(path), "kms.db");
	ASSERT_EQ(stat(path, &st), 0);
	ASSERT_TRUE(st.st_size > 64 * 1024);
	memset(junk, 0xa5, sizeof(junk));
	fd = open(path, O_WRONLY);
	ASSERT_TRUE(fd >= 0);
	ASSERT_EQ(pwrite(fd, junk, sizeof(junk), (st.st_size / 2) & ~(off_t)4095),
		  (ssize_t)sizeof(junk));
	close(fd);
	ASSERT_OK(open_store(false, &S));
	ASSERT_TRUE(store_verify(S, msg, sizeof(msg)) < 0);
	ASSERT_TRUE(strstr(msg, "is damaged") != NULL);
}
