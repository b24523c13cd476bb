/* test-store-rotate.c - root-key rotation (src/store/store_rotate.c): stopped as a kill -9 would
 * stop it at every step, the store still opens with every key, secret and import digest
 * intact, and running it again finishes it: the old root key's bytes are gone, the new one is
 * in root.key. A second handle (a daemon) open during the rotation seals under the next root
 * once it noticed it, and keeps working across the commit. A remembered binding that another
 * handle removes or replaces while the rotation re-seals it stays as that handle left it.
 *
 * Runs on SQLite, and on PostgreSQL too with KMS_TEST_PG_URI (tests/unit/with-pg.sh).
 */
#include "kms_test.h"
#include "kms_test_tmp.h"

#include <fcntl.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/kms_err.h"
#include "common/kms_time.h"
#include "store/store_internal.h"

#define P "proj-r"

static char base_dir[4096], state_dir[4200], why[2048];
static const char *backend; /* store_options.backend: NULL SQLite, else the PostgreSQL URI */
static struct store *S, *S2;

static void pg_reset(const char *uri)
{
	PGconn *pg = PQconnectdb(uri);
	PGresult *res = PQexec(pg, "SET client_min_messages = warning; DROP SCHEMA public CASCADE; "
				   "CREATE SCHEMA public");

	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		kms_test_fail_(__FILE__, __LINE__, PQerrorMessage(pg));
	PQclear(res);
	PQfinish(pg);
}

static void teardown(void)
{
	store_close(S2);
	store_close(S);
	S = S2 = NULL;
	if (base_dir[0])
		(void)kms_test_rmrf(base_dir);
	base_dir[0] = 0;
}

static int open_at(const char *dir, bool create, struct store **out)
{
	struct store_options o = { .state_dir = dir, .backend = backend, .create = create };

	why[0] = 0;
	return store_open(&o, out, why, sizeof(why));
}

static void setup(void)
{
	static bool registered;

	teardown();
	if (!registered) {
		atexit(teardown);
		registered = true;
	}
	kms_test_mkdtemp(base_dir, sizeof(base_dir));
	snprintf(state_dir, sizeof(state_dir), "%s/state", base_dir);
	if (backend)
		pg_reset(backend);
	store_rotate_settle_ms = 0;
	store_rotate_stop_at = 0;
	ASSERT_OK(open_at(state_dir, true, &S));
}

static size_t read_file(const char *name, uint8_t *out, size_t cap)
{
	char path[4400];
	int fd;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/%s", state_dir, name);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return 0;
	n = read(fd, out, cap);
	close(fd);
	return n > 0 ? (size_t)n : 0;
}

static bool file_exists(const char *name)
{
	char path[4400];

	snprintf(path, sizeof(path), "%s/%s", state_dir, name);
	return access(path, F_OK) == 0;
}

/* Whether the 32 bytes are in any file of the state directory (the database too). */
static bool bytes_in_state_dir(const uint8_t key[32])
{
	static const char *const names[] = { "root.key", "root.key.next", "kms.db", "kms.db-wal" };
	static uint8_t buf[4 << 20];

	for (size_t i = 0; i < KMS_ARRAY_SIZE(names); i++) {
		size_t n = read_file(names[i], buf, sizeof(buf));

		for (size_t j = 0; j + 32 <= n; j++)
			if (memcmp(buf + j, key, 32) == 0)
				return true;
	}
	return false;
}

struct fixture {
	char kid[3][KMS_KEY_ID_LEN + 1]; /* kms, rotated twice, external (imported) */
	uint8_t material[3][3][CORE_KEY_BYTES];
	uint8_t imported[CORE_KEY_BYTES];
	uint8_t token_secret[32];
};

static void fixture_make(struct fixture *f)
{
	struct store_key *k = NULL;

	memset(f->imported, 0x42, sizeof(f->imported));
	ASSERT_OK(store_key_create(S, P, "a", "", 100, &k));
	snprintf(f->kid[0], sizeof(f->kid[0]), "%s", k->meta.key_id);
	store_key_release(k);
	ASSERT_OK(store_key_create(S, P, "b", "", 100, &k));
	snprintf(f->kid[1], sizeof(f->kid[1]), "%s", k->meta.key_id);
	store_key_release(k);
	ASSERT_OK(store_key_rotate(S, P, f->kid[1], 1, &k));
	store_key_release(k);
	ASSERT_OK(store_key_rotate(S, P, f->kid[1], 2, &k));
	store_key_release(k);
	ASSERT_OK(store_key_create_external(S, P, "c", "", 100, &k));
	snprintf(f->kid[2], sizeof(f->kid[2]), "%s", k->meta.key_id);
	store_key_release(k);
	ASSERT_OK(store_key_import(S, P, f->kid[2], f->imported, 0, &k));
	store_key_release(k);
	for (int i = 0; i < 3; i++) {
		ASSERT_OK(store_key_get_latest(S, P, f->kid[i], &k));
		for (uint32_t v = 0; v < k->nversions; v++)
			memcpy(f->material[i][v], store_key_material(k, v), CORE_KEY_BYTES);
		store_key_release(k);
	}
	ASSERT_OK(store_state_secret(S, "token.key", f->token_secret));
}

/* Everything as it was, read from the backend (not the cache) through handle s. */
static void fixture_check(struct store *s, const struct fixture *f)
{
	struct store_key *k = NULL;
	uint8_t secret[32];
	size_t versions = 0;

	ASSERT_EQ(store_check(s, NULL, NULL, &versions), 0);
	ASSERT_EQ(versions, 5);
	for (int i = 0; i < 3; i++) {
		ASSERT_OK(store_key_get_latest(s, P, f->kid[i], &k));
		for (uint32_t v = 0; k && v < k->nversions; v++)
			ASSERT_MEMEQ(store_key_material(k, v), f->material[i][v], CORE_KEY_BYTES);
		store_key_release(k);
		k = NULL;
	}
	ASSERT_OK(store_state_secret(s, "token.key", secret));
	ASSERT_MEMEQ(secret, f->token_secret, 32);
}

static void rotate_stopped_at(int at)
{
	struct store_rotate_report rep;
	struct fixture f;
	uint8_t first[32], now[32];
	struct store_key *k = NULL;
	uint8_t other[CORE_KEY_BYTES];
	bool found = false;
	char gen[16];

	setup();
	if (kms_test_failing())
		return;
	fixture_make(&f);
	ASSERT_EQ(read_file("root.key", first, sizeof(first)), 32);
	store_rotate_stop_at = at;
	ASSERT_ERR(store_root_rotate(S, NULL, NULL, NULL, &rep, why, sizeof(why)), KMS_E_BUSY);
	store_rotate_stop_at = 0;
	/* kill -9: the handle goes without anything more being written. */
	store_close(S);
	S = NULL;
	if (open_at(state_dir, false, &S) != 0) {
		fprintf(stderr, "\tstopped at %d, reopening: %s\n", at, why);
		ASSERT_TRUE(false);
		return;
	}
	fixture_check(S, &f);
	ASSERT_OK(store_root_rotate(S, NULL, NULL, NULL, &rep, why, sizeof(why)));
	ASSERT_EQ(rep.generation, 2);
	fixture_check(S, &f);
	store_close(S);
	S = NULL;
	ASSERT_OK(open_at(state_dir, false, &S));
	fixture_check(S, &f);
	/* The old root is gone from the state directory, the new one is root.key. */
	ASSERT_FALSE(file_exists("root.key.next"));
	ASSERT_EQ(read_file("root.key", now, sizeof(now)), 32);
	ASSERT_FALSE(memcmp(now, first, 32) == 0);
	ASSERT_FALSE(bytes_in_state_dir(first));
	ASSERT_OK(S->ops->meta_get(S->be, "root_generation", gen, sizeof(gen), &found));
	ASSERT_TRUE(found && strcmp(gen, "2") == 0);
	/* The import digest still holds the key to the material imported before. */
	ASSERT_OK(store_key_delete_material(S, P, f.kid[2], &k));
	store_key_release(k);
	memset(other, 0x43, sizeof(other));
	ASSERT_ERR(store_key_import(S, P, f.kid[2], other, 0, &k), KMS_E_IMPORT_DIFFERENT);
	ASSERT_OK(store_key_import(S, P, f.kid[2], f.imported, 0, &k));
	store_key_release(k);
	if (kms_test_failing())
		fprintf(stderr, "\tstopped at %d\n", at);
}

static void run_backends(void (*fn)(void))
{
	const char *pg = getenv("KMS_TEST_PG_URI");

	backend = NULL;
	fn();
	if (kms_test_failing() || !pg || !pg[0])
		return;
	backend = pg;
	fn();
	if (kms_test_failing())
		fprintf(stderr, "\tbackend: postgresql\n");
	backend = NULL;
}

static void every_stop(void)
{
	for (int at = 1; at <= STORE_ROTATE_STOP_LAST && !kms_test_failing(); at++)
		rotate_stopped_at(at);
}

TEST(rotation_resumes_after_a_stop_at_every_step)
{
	run_backends(every_stop);
}

/* A token.key file of an older state directory moves into the settings, and a rotation
 * re-seals it: tokens signed with it keep verifying. */
static void token_file_moved(void)
{
	struct store_rotate_report rep;
	uint8_t file[32], secret[32];
	char path[4400];
	int fd;

	if (backend)
		return; /* a shared store never had the file */
	setup();
	if (kms_test_failing())
		return;
	memset(file, 0x17, sizeof(file));
	snprintf(path, sizeof(path), "%s/token.key", state_dir);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	ASSERT_TRUE(fd >= 0);
	ASSERT_EQ(write(fd, file, 32), 32);
	close(fd);
	ASSERT_OK(store_root_rotate(S, NULL, NULL, NULL, &rep, why, sizeof(why)));
	ASSERT_FALSE(file_exists("token.key"));
	ASSERT_OK(store_state_secret(S, "token.key", secret));
	ASSERT_MEMEQ(secret, file, 32);
}

TEST(token_key_file_moved_and_resealed)
{
	run_backends(token_file_moved);
}

/* A daemon's handle: it learns of the rotation when it refreshes, seals under the next root,
 * unseals what the rotation re-sealed, and goes on after the commit without reopening. */
static void second_handle(void)
{
	struct store_rotate_report rep;
	struct store_key *k = NULL;
	char kid[KMS_KEY_ID_LEN + 1];
	uint8_t material[CORE_KEY_BYTES];
	size_t versions = 0;
	bool changed;

	setup();
	if (kms_test_failing())
		return;
	ASSERT_OK(open_at(state_dir, false, &S2));
	ASSERT_OK(store_key_create(S, P, "a", "", 100, &k));
	store_key_release(k);
	store_rotate_stop_at = STORE_ROTATE_STOP_STARTED;
	ASSERT_ERR(store_root_rotate(S, NULL, NULL, NULL, &rep, why, sizeof(why)), KMS_E_BUSY);
	store_rotate_stop_at = 0;
	ASSERT_OK(store_refresh(S2, &changed));
	ASSERT_TRUE(S2->next_root != NULL);
	ASSERT_OK(store_key_create(S2, P, "made-during", "", 100, &k));
	snprintf(kid, sizeof(kid), "%s", k->meta.key_id);
	memcpy(material, store_key_material(k, 0), CORE_KEY_BYTES);
	store_key_release(k);
	ASSERT_OK(store_root_rotate(S, NULL, NULL, NULL, &rep, why, sizeof(why)));
	ASSERT_OK(store_refresh(S2, &changed));
	ASSERT_TRUE(S2->next_root == NULL);
	ASSERT_EQ(store_check(S2, NULL, NULL, &versions), 0);
	ASSERT_EQ(versions, 2);
	ASSERT_OK(store_key_get_latest(S2, P, kid, &k));
	ASSERT_MEMEQ(store_key_material(k, 0), material, CORE_KEY_BYTES);
	store_key_release(k);
	ASSERT_OK(store_key_create(S2, P, "made-after", "", 100, &k));
	store_key_release(k);
	ASSERT_EQ(store_check(S, NULL, NULL, &versions), 0);
	ASSERT_EQ(versions, 3);
}

TEST(daemon_handle_follows_the_rotation)
{
	run_backends(second_handle);
}

/* A daemon's watcher: refreshes S2 until told to stop. */
static volatile bool watching;

static void *watcher(void *arg)
{
	bool changed;

	(void)arg;
	while (watching) {
		if (store_refresh(S2, &changed) < 0)
			break;
		usleep(20000);
	}
	return NULL;
}

/* A process that cannot open the next root (another host without the new file) holds up the
 * rotation before anything is sealed under it; once the file is there, the rotation goes on. */
static int rotate_watched(void)
{
	struct store_rotate_report rep;
	pthread_t w;
	int r;

	/* S2 re-reads the settings when the rotation clears the row, and says it again. */
	watching = true;
	if (pthread_create(&w, NULL, watcher, NULL) != 0)
		return KMS_E_SYSTEM;
	r = store_root_rotate(S, NULL, NULL, NULL, &rep, why, sizeof(why));
	watching = false;
	pthread_join(w, NULL);
	return r;
}

static void copy_key(const char *name, const char *dir)
{
	char to[4400];
	uint8_t key[32];
	int fd;

	ASSERT_EQ(read_file(name, key, sizeof(key)), 32);
	snprintf(to, sizeof(to), "%s/%s", dir, name);
	fd = open(to, O_WRONLY | O_CREAT | O_EXCL, 0600);
	ASSERT_TRUE(fd >= 0 && write(fd, key, 32) == 32);
	if (fd >= 0)
		close(fd);
}

static void other_host_missing(void)
{
	struct store_key *k = NULL;
	char other[4200];
	size_t versions = 0;
	bool changed;

	if (!backend)
		return; /* hosts share only a PostgreSQL store */
	setup();
	if (kms_test_failing())
		return;
	snprintf(other, sizeof(other), "%s/other", base_dir);
	ASSERT_EQ(mkdir(other, 0700), 0);
	copy_key("root.key", other);
	ASSERT_OK(open_at(other, false, &S2));
	ASSERT_OK(store_key_create(S, P, "a", "", 100, &k));
	store_key_release(k);
	store_rotate_settle_ms = 300;
	ASSERT_ERR(rotate_watched(), KMS_E_BUSY);
	ASSERT_TRUE(strstr(why, "cannot open the next root key") != NULL);
	/* Only proposed: nothing sealed under it, the other host reads everything. */
	ASSERT_TRUE(S->next_root == NULL && S2->next_root == NULL);
	ASSERT_OK(store_key_create(S, P, "b", "", 100, &k));
	store_key_release(k);
	ASSERT_EQ(store_check(S2, NULL, NULL, &versions), 0);
	ASSERT_EQ(versions, 2);
	copy_key("root.key.next", other);
	ASSERT_OK(rotate_watched());
	ASSERT_OK(store_refresh(S2, &changed));
	ASSERT_TRUE(S2->next_root == NULL);
	ASSERT_EQ(store_check(S2, NULL, NULL, &versions), 0);
	ASSERT_EQ(versions, 2);
}

TEST(commit_waits_for_a_host_without_the_next_root)
{
	run_backends(other_host_missing);
}

/* ---- remembered bindings changed while a rotation re-seals them */

static const struct store_backend_ops *real_ops;
static struct store_backend_ops racing_ops;
static char race_deleted[33], race_replaced[33];
static bool racing;

/* What a setfattr on another handle does between the rotation's listing and its writes: one
 * binding removed, one replaced (the same row, other claims: uid 2000 for 1000), sealed as a
 * daemon that noticed the rotation seals, under the next root. */
static void race_setfattr(struct store *s, const struct store_session *rows, size_t n)
{
	char label[80], text[STORE_SESSION_SEALED_MAX + 1], *uid;
	struct store_session x;
	size_t len = 0;

	ASSERT_TRUE(n == 3);
	if (n != 3)
		return;
	snprintf(race_deleted, sizeof(race_deleted), "%s", rows[0].id);
	ASSERT_OK(real_ops->session_delete(s->be, rows[0].id));
	x = rows[1];
	snprintf(race_replaced, sizeof(race_replaced), "%s", x.id);
	ASSERT_OK(store_session_label(x.id, label, sizeof(label)));
	ASSERT_OK(store_unseal_opaque(s, label, x.sealed, x.sealed_len, (uint8_t *)text,
				      sizeof(text) - 1, &len));
	text[len] = 0;
	uid = strstr(text, "\n1000\n");
	ASSERT_TRUE(uid != NULL);
	if (uid)
		uid[1] = '2';
	ASSERT_OK(store_seal_opaque(s, label, (const uint8_t *)text, len, x.sealed,
				    sizeof(x.sealed), &x.sealed_len));
	ASSERT_OK(real_ops->session_put(s->be, &x));
}

struct race_rows {
	struct store_session v[8];
	size_t n;
	store_session_cb cb;
	void *arg;
};

static int race_row(const struct store_session *sess, void *arg)
{
	struct race_rows *l = arg;

	if (l->n < KMS_ARRAY_SIZE(l->v))
		l->v[l->n++] = *sess;
	return l->cb(sess, l->arg);
}

/* The backend's listing, then (once) the other handle's setfattr. */
static int racing_list(struct store_backend *b, const char *host, store_session_cb cb, void *arg)
{
	struct race_rows *l = calloc(1, sizeof(*l));
	int r;

	if (!l)
		return KMS_E_NOMEM;
	l->cb = cb;
	l->arg = arg;
	r = real_ops->session_list(b, host, race_row, l);
	if (r == 0 && racing) {
		racing = false;
		race_setfattr(S, l->v, l->n);
	}
	free(l);
	return r;
}

struct race_seen {
	size_t n;
	bool deleted_back;
	uint32_t replaced_uid;
};

static int race_seen_row(const struct store_remembered *r, void *arg)
{
	struct race_seen *seen = arg;

	seen->n++;
	seen->deleted_back |= strcmp(r->id, race_deleted) == 0;
	if (strcmp(r->id, race_replaced) == 0)
		seen->replaced_uid = r->uid;
	return 0;
}

/* The rotation writes a binding only if its row still holds what it read: the removed one does
 * not come back, the replaced one keeps its new claims; both backends. */
static void sessions_raced(void)
{
	struct store_remembered r = {
		.host = "host-a", .uid = 1000, .host_ns = true, .project = P
	};
	struct store_rotate_report rep;
	struct race_seen seen = { 0 };
	size_t unreadable = 0;

	setup();
	if (kms_test_failing())
		return;
	r.claims = (struct store_token_info){ .id = "0123456789abcdef",
					      .project = P,
					      .user = "u",
					      .role = KMS_ROLE_CRYPTO,
					      .expiry = kms_time_real_ms() / 1000 + 3600 };
	for (int i = 0; i < 3; i++)
		ASSERT_OK(store_session_put(S, &r));
	real_ops = S->ops;
	racing_ops = *S->ops;
	racing_ops.session_list = racing_list;
	S->ops = &racing_ops;
	racing = true;
	ASSERT_OK(store_root_rotate(S, NULL, NULL, NULL, &rep, why, sizeof(why)));
	S->ops = real_ops;
	ASSERT_FALSE(racing);
	ASSERT_OK(store_session_list(S, NULL, race_seen_row, &seen, &unreadable));
	ASSERT_EQ(unreadable, 0u);
	ASSERT_EQ(seen.n, 2u);
	ASSERT_FALSE(seen.deleted_back);
	ASSERT_EQ(seen.replaced_uid, 2000u);
}

TEST(rotation_never_undoes_a_binding_changed_meanwhile)
{
	run_backends(sessions_raced);
}
