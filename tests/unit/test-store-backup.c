/* test-store-backup.c - backup and restore (kms_store.h, store_backup.c) on real state
 * directories: a backup holds the store's rows sealed as they are, stamped with the root key it
 * needs, and no root key; a restore rebuilds everything under that root key only, refuses a
 * destination that holds keys, and finishes a restore that was interrupted. The PostgreSQL
 * parts (backup taken in one snapshot, restore into PostgreSQL) need KMS_TEST_PG_URI
 * (with-pg.sh) and report SKIP without it. */
#include "kms_test.h"

#include <fcntl.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kms_test_tmp.h"
#include "store/kms_store.h"
#include "store/store_internal.h"
#include "common/kms_err.h"
#include "common/kms_time.h"

#define P "proj-a"

static char base[4096], why[2048];

static void cleanup(void)
{
	if (base[0])
		(void)kms_test_rmrf(base);
	base[0] = 0;
}

/* A fresh base directory; the last one goes at exit. */
static void fresh_base(void)
{
	static bool registered;

	if (!registered) {
		atexit(cleanup);
		registered = true;
	}
	cleanup();
	kms_test_mkdtemp(base, sizeof(base));
}

static void path_in(char *out, size_t cap, const char *name)
{
	snprintf(out, cap, "%s/%s", base, name);
}

/* The store of base/dir (created with a root key of its own unless one is there). */
static int open_dir(const char *dir, const char *uri, bool create, struct store **out)
{
	char path[4200];
	struct store_options o = { .state_dir = path, .backend = uri, .create = create };

	path_in(path, sizeof(path), dir);
	why[0] = 0;
	return store_open(&o, out, why, sizeof(why));
}

/* The backup file as a store under the root key of the state dir arg (store_backup_open_fn). */
static int open_file(const char *db_file, bool writable, struct store **out, void *arg)
{
	char uri[4300];
	struct store_options o = { .state_dir = arg, .backend = uri, .read_only = !writable };

	snprintf(uri, sizeof(uri), "sqlite:%s", db_file);
	return store_open(&o, out, why, sizeof(why));
}

static void copy_file(const char *from, const char *to)
{
	uint8_t buf[64];
	int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ssize_t n;

	ASSERT_TRUE(in >= 0 && out >= 0);
	while ((n = read(in, buf, sizeof(buf))) > 0)
		ASSERT_EQ(write(out, buf, (size_t)n), n);
	close(in);
	close(out);
}

/* A new state dir base/name holding a copy of base/from's root key. */
static void dir_with_root_of(const char *name, const char *from)
{
	char dir[4200], a[4300], b[4300];

	path_in(dir, sizeof(dir), name);
	ASSERT_EQ(mkdir(dir, 0700), 0);
	snprintf(a, sizeof(a), "%s/%s/root.key", base, from);
	snprintf(b, sizeof(b), "%s/root.key", dir);
	STEP(copy_file(a, b));
}

/* What the source holds: two keys (one rotated twice), a grant, a tag, a policy, a binding, a
 * token record; material of every version kept to compare. */
struct fill {
	char ids[2][KMS_KEY_ID_LEN + 1];
	uint8_t material[4][CORE_KEY_BYTES];
	uint8_t token_secret[32];
};

static void fill_store(struct store *s, struct fill *f)
{
	struct store_grant g = { .grant_id = "g1",
				 .project = P,
				 .grantee = "bob",
				 .grantee_type = "user",
				 .operations = "describe-key",
				 .issuer = "i",
				 .creation_ms = 5 };
	struct store_project_policy pol = { 1, 2, 0750, 0700 };
	struct store_token_info t = {
		.id = "0123456789abcdef", .project = P, .user = "u", .role = KMS_ROLE_ADMIN
	};
	struct store_key *k = NULL;

	ASSERT_OK(store_project_ensure(s, P));
	ASSERT_OK(store_key_create(s, P, "one", "first", 100, &k));
	snprintf(f->ids[0], sizeof(f->ids[0]), "%s", k->meta.key_id);
	store_key_release(k);
	ASSERT_OK(store_key_rotate(s, P, f->ids[0], kms_time_real_ms(), NULL));
	ASSERT_OK(store_key_rotate(s, P, f->ids[0], kms_time_real_ms(), &k));
	for (uint32_t v = 0; v < 3; v++)
		memcpy(f->material[v], store_key_material(k, v), CORE_KEY_BYTES);
	store_key_release(k);
	ASSERT_OK(store_key_create(s, P, "two", "", 100, &k));
	snprintf(f->ids[1], sizeof(f->ids[1]), "%s", k->meta.key_id);
	memcpy(f->material[3], store_key_material(k, 0), CORE_KEY_BYTES);
	store_key_release(k);
	snprintf(g.key_id, sizeof(g.key_id), "%s", f->ids[0]);
	ASSERT_OK(store_grant_create(s, &g, 100));
	ASSERT_OK(store_tag_set(s, f->ids[0], "env", "prod", 10));
	ASSERT_OK(store_project_policy_set(s, P, &pol));
	ASSERT_OK(store_binding_set(s, P, STORE_BIND_UID, 1234, KMS_ROLE_VIEWER));
	t.expiry = kms_time_real_ms() / 1000 + 3600;
	t.issued_ms = kms_time_real_ms();
	ASSERT_OK(store_token_record(s, &t));
	ASSERT_OK(store_state_secret(s, "token.key", f->token_secret));
}

static int count_token(const struct store_token_info *t, void *arg)
{
	(*(size_t *)arg)++;
	return 0;
}

static int count_grant(const struct store_grant *g, void *arg)
{
	(*(size_t *)arg)++;
	return 0;
}

/* Everything fill_store made, in s, with the same material. */
static void expect_filled(struct store *s, const struct fill *f)
{
	struct store_grant_filter all = { 0 };
	struct store_project_policy pol;
	struct store_key *k = NULL;
	uint8_t secret[32];
	size_t n = 0, total = 0, checked = 0;
	uint32_t gid = 0;

	ASSERT_OK(store_key_get(s, P, f->ids[0], &k));
	ASSERT_EQ(k->nversions, 3);
	ASSERT_STREQ(k->meta.alias, "one");
	for (uint32_t v = 0; v < 3; v++)
		ASSERT_MEMEQ(store_key_material(k, v), f->material[v], CORE_KEY_BYTES);
	store_key_release(k);
	ASSERT_OK(store_key_get(s, P, f->ids[1], &k));
	ASSERT_MEMEQ(store_key_material(k, 0), f->material[3], CORE_KEY_BYTES);
	store_key_release(k);
	ASSERT_OK(store_grant_list(s, &all, 0, 100, count_grant, &n, &total));
	ASSERT_EQ(n, 1);
	n = 0;
	ASSERT_OK(store_token_list(s, count_token, &n));
	ASSERT_EQ(n, 1);
	store_project_policy(s, P, &pol);
	ASSERT_EQ(pol.mode, 0750);
	ASSERT_EQ(store_binding_role(s, P, 1234, &gid, 0), KMS_ROLE_VIEWER);
	ASSERT_OK(store_state_secret(s, "token.key", secret));
	ASSERT_MEMEQ(secret, f->token_secret, 32);
	ASSERT_EQ(store_check(s, NULL, NULL, &checked), 0);
	ASSERT_EQ(checked, 4);
}

static bool file_contains(const char *path, const uint8_t *needle, size_t n)
{
	static uint8_t buf[1 << 20];
	int fd = open(path, O_RDONLY);
	ssize_t len = fd >= 0 ? read(fd, buf, sizeof(buf)) : -1;

	if (fd >= 0)
		close(fd);
	for (ssize_t i = 0; len > 0 && i + (ssize_t)n <= len; i++)
		if (memcmp(buf + i, needle, n) == 0)
			return true;
	return false;
}

static void meta_of(const char *file, const char *name, char *out, size_t cap)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;

	out[0] = 0;
	ASSERT_EQ(sqlite3_open_v2(file, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE name = ?", -1, &st, NULL),
		  SQLITE_OK);
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		snprintf(out, cap, "%s", (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	sqlite3_close(db);
}

/* A backup of base/src (uri: its store) into base/name, stamped; info of it. */
static void take_backup(const char *uri, const char *name, struct store_backup_info *info)
{
	char file[4200], dir[4300], mode[32];
	struct store *s = NULL;
	struct store_backup_info read;
	struct stat st;

	path_in(file, sizeof(file), name);
	path_in(dir, sizeof(dir), "src");
	ASSERT_OK(open_dir("src", uri, false, &s));
	ASSERT_OK(store_backup(s, file, open_file, dir, NULL, NULL, info, why, sizeof(why)));
	store_close(s);
	ASSERT_EQ(stat(file, &st), 0);
	ASSERT_EQ(st.st_mode & 0777, 0600);
	meta_of(file, "backup_format", mode, sizeof(mode));
	ASSERT_STREQ(mode, "1");
	ASSERT_OK(store_backup_read_info(file, &read, why, sizeof(why)));
	ASSERT_STREQ(read.root_check, info->root_check);
	ASSERT_EQ(read.root_generation, 1);
	ASSERT_EQ(read.made_ms, info->made_ms);
	ASSERT_STREQ(read.domain_id, info->domain_id);
	/* One file: no -wal or -journal beside it. */
	snprintf(dir, sizeof(dir), "%s-wal", file);
	ASSERT_TRUE(access(dir, F_OK) != 0);
	snprintf(dir, sizeof(dir), "%s.partial", file);
	ASSERT_TRUE(access(dir, F_OK) != 0);
}

/* Restore base/name into the store of base/dir (uri). */
static int restore_into(const char *name, const char *dir, const char *uri,
			const struct store_backup_info *info)
{
	char file[4200], state[4200];
	struct store *bk = NULL, *dst = NULL;
	bool already = false;
	int r;

	path_in(file, sizeof(file), name);
	path_in(state, sizeof(state), dir);
	if ((r = open_file(file, false, &bk, state)) < 0)
		return r;
	r = open_dir(dir, uri, true, &dst);
	if (r == 0)
		r = store_restore(bk, dst, info, NULL, NULL, &already, why, sizeof(why));
	if (r < 0)
		fprintf(stderr, "restore: %s\n", why);
	store_close(dst);
	store_close(bk);
	return r;
}

static void roundtrip(const char *src_uri, const char *dst_uri)
{
	char file[4200], root[4300];
	uint8_t key[32];
	struct store_backup_info info;
	struct store *s = NULL;
	struct fill f;
	int fd;

	fresh_base();
	ASSERT_OK(open_dir("src", src_uri, true, &s));
	STEP(fill_store(s, &f));
	store_close(s);
	STEP(take_backup(src_uri, "b.db", &info));
	/* No root key in it, no material in plain. */
	snprintf(root, sizeof(root), "%s/src/root.key", base);
	fd = open(root, O_RDONLY);
	ASSERT_EQ(read(fd, key, sizeof(key)), 32);
	close(fd);
	path_in(file, sizeof(file), "b.db");
	ASSERT_FALSE(file_contains(file, key, sizeof(key)));
	for (int i = 0; i < 4; i++)
		ASSERT_FALSE(file_contains(file, f.material[i], CORE_KEY_BYTES));
	ASSERT_FALSE(file_contains(file, f.token_secret, 32));

	STEP(dir_with_root_of("dst", "src"));
	ASSERT_OK(restore_into("b.db", "dst", dst_uri, &info));
	ASSERT_OK(open_dir("dst", dst_uri, false, &s));
	STEP(expect_filled(s, &f));
	ASSERT_STREQ(store_domain_id(s), info.domain_id);
	store_close(s);
}

TEST(sqlite_backup_restore_keeps_everything_sealed)
{
	STEP(roundtrip(NULL, NULL));
}

/* A SQLite source whose token secret is still the file DIR/token.key of an older release: the
 * backup takes it, sealed (moved into the source's settings first, the file destroyed), and a
 * restore brings it back. */
TEST(sqlite_backup_takes_a_token_key_file)
{
	struct store_backup_info info;
	struct store *s = NULL;
	uint8_t file[32], secret[32];
	char path[4300], bfile[4200], hex[256];
	int fd;

	fresh_base();
	ASSERT_OK(open_dir("src", NULL, true, &s));
	store_close(s);
	memset(file, 0x17, sizeof(file));
	snprintf(path, sizeof(path), "%s/src/token.key", base);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	ASSERT_EQ(write(fd, file, sizeof(file)), 32);
	close(fd);
	STEP(take_backup(NULL, "b.db", &info));
	ASSERT_TRUE(access(path, F_OK) != 0);
	path_in(bfile, sizeof(bfile), "b.db");
	meta_of(bfile, "secret:token.key", hex, sizeof(hex));
	ASSERT_TRUE(strlen(hex) > 64);
	ASSERT_FALSE(file_contains(bfile, file, sizeof(file)));
	STEP(dir_with_root_of("dst", "src"));
	ASSERT_OK(restore_into("b.db", "dst", NULL, &info));
	ASSERT_OK(open_dir("dst", NULL, false, &s));
	ASSERT_OK(store_state_secret_get(s, "token.key", secret));
	ASSERT_MEMEQ(secret, file, 32);
	store_close(s);
}

TEST(restore_refuses_another_root_key_saying_which_generation)
{
	struct store_backup_info info;
	struct store_options o = { 0 };
	struct store *s = NULL;
	struct fill f;
	char dir[4200], key[4300];
	uint8_t other[32];
	int fd;

	fresh_base();
	ASSERT_OK(open_dir("src", NULL, true, &s));
	STEP(fill_store(s, &f));
	store_close(s);
	STEP(take_backup(NULL, "b.db", &info));
	path_in(dir, sizeof(dir), "other");
	ASSERT_EQ(mkdir(dir, 0700), 0);
	o.state_dir = dir;
	/* No root key at all: refused, nothing made. */
	ASSERT_ERR(store_backup_root_check(&o, &info, why, sizeof(why)), KMS_E_IO);
	ASSERT_TRUE(strstr(why, "no root key") != NULL);
	ASSERT_TRUE(strstr(why, "generation 1") != NULL);
	snprintf(key, sizeof(key), "%s/root.key", dir);
	ASSERT_TRUE(access(key, F_OK) != 0);
	/* Another one: refused with the generation the backup needs. */
	memset(other, 7, sizeof(other));
	fd = open(key, O_WRONLY | O_CREAT | O_EXCL, 0600);
	ASSERT_EQ(write(fd, other, sizeof(other)), 32);
	close(fd);
	ASSERT_ERR(store_backup_root_check(&o, &info, why, sizeof(why)), KMS_E_IO);
	ASSERT_TRUE(strstr(why, "is not the one this backup was sealed under") != NULL);
	ASSERT_TRUE(strstr(why, "generation 1") != NULL);
	/* The right one passes. */
	STEP(dir_with_root_of("right", "src"));
	path_in(dir, sizeof(dir), "right");
	ASSERT_OK(store_backup_root_check(&o, &info, why, sizeof(why)));
}

TEST(restore_refuses_keys_and_finishes_an_interrupted_run)
{
	struct store_backup_info info;
	struct store *s = NULL;
	struct store_key *k = NULL;
	struct fill f;
	char pending[128];
	bool found = false;

	fresh_base();
	ASSERT_OK(open_dir("src", NULL, true, &s));
	STEP(fill_store(s, &f));
	store_close(s);
	STEP(take_backup(NULL, "b.db", &info));
	/* A destination with a key of its own. */
	STEP(dir_with_root_of("busy", "src"));
	ASSERT_OK(open_dir("busy", NULL, true, &s));
	ASSERT_OK(store_key_create(s, P, "mine", "", 100, &k));
	store_key_release(k);
	store_close(s);
	ASSERT_ERR(restore_into("b.db", "busy", NULL, &info), KMS_E_IO);
	ASSERT_TRUE(strstr(why, "already holds keys") != NULL);
	/* A finished restore run again copies nothing (a key made since stays as it is). */
	STEP(dir_with_root_of("dst", "src"));
	ASSERT_OK(restore_into("b.db", "dst", NULL, &info));
	ASSERT_OK(open_dir("dst", NULL, false, &s));
	ASSERT_OK(store_key_rotate(s, P, f.ids[1], kms_time_real_ms(), NULL));
	store_close(s);
	ASSERT_OK(restore_into("b.db", "dst", NULL, &info));
	ASSERT_OK(open_dir("dst", NULL, false, &s));
	ASSERT_OK(store_key_get(s, P, f.ids[1], &k));
	ASSERT_EQ(k->nversions, 2);
	store_key_release(k);
	store_close(s);
	/* One killed after its keys went in (its mark still there) is finished by a rerun. */
	ASSERT_OK(open_dir("dst", NULL, false, &s));
	ASSERT_OK(s->ops->meta_get(s->be, "restore_pending", pending, sizeof(pending), &found));
	ASSERT_TRUE(found && pending[0] == 0);
	snprintf(pending, sizeof(pending), "%s %lld %.16s", info.domain_id, (long long)info.made_ms,
		 info.root_check);
	ASSERT_OK(s->ops->meta_set(s->be, "restore_pending", pending));
	ASSERT_OK(s->ops->meta_set(s->be, "restored_from", ""));
	store_close(s);
	ASSERT_OK(restore_into("b.db", "dst", NULL, &info));
	ASSERT_OK(open_dir("dst", NULL, false, &s));
	ASSERT_OK(store_key_get(s, P, f.ids[1], &k));
	ASSERT_EQ(k->nversions, 1); /* the backup's key again, as an interrupted restore goes on */
	store_key_release(k);
	store_close(s);
}

TEST(backup_refuses_a_store_in_the_middle_of_a_root_rotation)
{
	struct store_backup_info info;
	char file[4200], dir[4200], check[2 * CORE_SHA256_BYTES + 1];
	struct store *s = NULL;
	struct fill f;

	fresh_base();
	ASSERT_OK(open_dir("src", NULL, true, &s));
	STEP(fill_store(s, &f));
	ASSERT_OK(s->ops->meta_set(s->be, "root_next_check", "00AB"));
	path_in(file, sizeof(file), "b.db");
	path_in(dir, sizeof(dir), "src");
	ASSERT_ERR(store_backup(s, file, open_file, dir, NULL, NULL, &info, why, sizeof(why)),
		   KMS_E_BUSY);
	ASSERT_TRUE(strstr(why, "rotation") != NULL);
	ASSERT_TRUE(access(file, F_OK) != 0);
	/* Committed (the next root is the root now): a backup is fine. */
	ASSERT_OK(store_root_check_value(s, check));
	ASSERT_OK(s->ops->meta_set(s->be, "root_next_check", check));
	ASSERT_OK(store_backup(s, file, open_file, dir, NULL, NULL, &info, why, sizeof(why)));
	store_close(s);
}

/* Writes made while the backup runs: the first progress call (between two steps of the copy)
 * creates a key through another store on the source. */
struct late {
	struct store *other;
	bool done;
	int r;
};

static void late_write(size_t done, size_t total, void *arg)
{
	struct late *l = arg;
	struct store_key *k = NULL;

	if (l->done)
		return;
	l->done = true;
	l->r = store_key_create(l->other, P, "late", "", 100, &k);
	store_key_release(k);
}

static void one_moment(const char *uri)
{
	char file[4200], dir[4200], *filler;
	struct store_backup_info info;
	struct store *s = NULL, *f = NULL;
	struct late l = { 0 };
	struct fill fl;
	size_t n = 0;

	fresh_base();
	ASSERT_OK(open_dir("src", uri, true, &s));
	STEP(fill_store(s, &fl));
	/* SQLite copies 256 pages a step: a few steps, so the write falls between two. */
	filler = malloc(1500000);
	ASSERT_TRUE(filler != NULL);
	memset(filler, 'x', 1499999);
	filler[1499999] = 0;
	ASSERT_OK(s->ops->meta_set(s->be, "filler", filler));
	free(filler);
	ASSERT_OK(open_dir("src", uri, false, &l.other));
	path_in(file, sizeof(file), "b.db");
	path_in(dir, sizeof(dir), "src");
	ASSERT_OK(store_backup(s, file, open_file, dir, late_write, &l, &info, why, sizeof(why)));
	store_close(l.other);
	store_close(s);
	ASSERT_TRUE(l.done);
	ASSERT_OK(l.r);
	ASSERT_OK(open_file(file, false, &f, dir));
	ASSERT_OK(store_key_count(f, P, &n));
	store_close(f);
	ASSERT_EQ(n, 2);
	ASSERT_OK(open_dir("src", uri, false, &s));
	ASSERT_OK(store_key_count(s, P, &n));
	store_close(s);
	ASSERT_EQ(n, 3);
}

TEST(sqlite_backup_is_of_one_moment_while_others_write)
{
	STEP(one_moment(NULL));
}

static bool pg_fresh(const char **uri)
{
	PGconn *pg;
	PGresult *res;
	bool ok;

	*uri = getenv("KMS_TEST_PG_URI");
	if (!*uri || !**uri) {
		fprintf(stderr, "SKIP: KMS_TEST_PG_URI is not set\n");
		return false;
	}
	pg = PQconnectdb(*uri);
	res = PQexec(pg, "SET client_min_messages = warning; DROP SCHEMA public CASCADE; "
			 "CREATE SCHEMA public");
	ok = PQresultStatus(res) == PGRES_COMMAND_OK;
	PQclear(res);
	PQfinish(pg);
	return ok;
}

TEST(postgresql_backup_is_of_one_moment_while_others_write)
{
	const char *uri;

	if (pg_fresh(&uri))
		STEP(one_moment(uri));
}

TEST(postgresql_backup_restore_both_ways)
{
	const char *uri;

	/* PostgreSQL -> backup -> SQLite, and SQLite -> backup -> PostgreSQL. */
	if (!pg_fresh(&uri))
		return;
	STEP(roundtrip(uri, NULL));
	ASSERT_TRUE(pg_fresh(&uri));
	STEP(roundtrip(NULL, uri));
}
