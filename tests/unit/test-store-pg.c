/* test-store-pg.c - what the PostgreSQL backend (src/store/store_pg.c) adds to the store's
 * suite (test-store.c runs that suite on it too): several hosts on one database, through the
 * backend's ops directly, each "host" a backend of its own with its own connections.
 *
 * - the rules hold under races: one alias per project, the key quota;
 * - revision-checked writes: KMS_E_STALE for a row changed since it was read, KMS_E_KEY_NOT_FOUND
 *   for one that is gone;
 * - the change feed and watch: another host's change is seen, in order, by kind; a gap after a
 *   prune is KMS_E_STALE;
 * - outages: an unreachable server and a statement held up past the timeout answer
 *   KMS_E_STORE_UNAVAILABLE in time, and the connection is made again afterwards.
 *
 * Needs KMS_TEST_PG_URI (tests/unit/with-pg.sh); every test reports SKIP without it. Each test
 * starts from an empty database.
 */
#include "kms_test.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/kms_time.h"
#include "store/store_backend.h"

#define P "proj-a"

static const char *pg_uri;

static bool pg_sql(const char *sql)
{
	PGconn *pg = PQconnectdb(pg_uri);
	PGresult *res = PQexec(pg, sql);
	bool ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;

	if (!ok)
		fprintf(stderr, "%s: %s", sql, PQerrorMessage(pg));
	PQclear(res);
	PQfinish(pg);
	return ok;
}

static bool skipped;

/* An empty database; skipped without KMS_TEST_PG_URI. */
static void fresh(void)
{
	pg_uri = getenv("KMS_TEST_PG_URI");
	skipped = !pg_uri || !pg_uri[0];
	if (skipped) {
		fprintf(stderr, "SKIP: KMS_TEST_PG_URI is not set\n");
		return;
	}
	ASSERT_TRUE(pg_sql("SET client_min_messages = warning; DROP SCHEMA public CASCADE; "
			   "CREATE SCHEMA public"));
}

/* fresh(), and leave the test if it skipped or failed. */
#define FRESH()                                                                                    \
	do {                                                                                       \
		fresh();                                                                           \
		if (skipped || kms_test_failing())                                                 \
			return;                                                                    \
	} while (0)

static struct store_backend *host(unsigned timeout_ms)
{
	struct store_backend_params p = { "/nonexistent", pg_uri, true, false, timeout_ms };
	struct store_backend *b = NULL;
	char why[512] = "";

	if (store_pg_ops.open(&p, &b, why, sizeof(why)) < 0) {
		kms_test_fail_(__FILE__, __LINE__, why);
		b = NULL;
	}
	return b;
}

static void meta_of(struct store_key_meta *m, const char *alias, int n)
{
	memset(m, 0, sizeof(*m));
	snprintf(m->project, sizeof(m->project), "%s", P);
	snprintf(m->key_id, sizeof(m->key_id), "00000000-0000-4000-8000-%012d", n);
	snprintf(m->alias, sizeof(m->alias), "%s", alias);
	snprintf(m->key_spec, sizeof(m->key_spec), "AES_256");
	snprintf(m->key_usage, sizeof(m->key_usage), "ENCRYPT_DECRYPT");
	snprintf(m->origin, sizeof(m->origin), "kms");
	m->state = 2;
	m->creation_ms = 1000 + n;
	m->rotation_interval_days = 365;
}

static const struct store_sealed_version sealed = { .version = 0,
						    .sealed = { 1, 2, 3 },
						    .sealed_len = 60 };

/* ---- races ---- */

struct racer {
	struct store_backend *b;
	struct store_key_meta m;
	unsigned quota;
	pthread_barrier_t *start;
	int r;
};

static void *race(void *arg)
{
	struct racer *x = arg;

	pthread_barrier_wait(x->start);
	x->r = store_pg_ops.key_insert(x->b, &x->m, &sealed, x->quota);
	return NULL;
}

/* n inserts at once, racer i on host i % 2; returns how many succeeded, counts the errors. */
static int run_race(struct store_backend *h[2], struct racer *x, int n, int *dup, int *quota)
{
	pthread_t t[16];
	pthread_barrier_t start;
	int ok = 0;

	pthread_barrier_init(&start, NULL, (unsigned)n);
	for (int i = 0; i < n; i++) {
		x[i].b = h[i % 2];
		x[i].start = &start;
		pthread_create(&t[i], NULL, race, &x[i]);
	}
	for (int i = 0; i < n; i++) {
		pthread_join(t[i], NULL);
		ok += x[i].r == 0;
		*dup += x[i].r == KMS_E_ALIAS_DUPLICATE;
		*quota += x[i].r == KMS_E_TOO_MANY_KEYS;
	}
	pthread_barrier_destroy(&start);
	return ok;
}

TEST(same_alias_at_once_one_wins)
{
	struct store_backend *h[2];
	struct racer x[8];

	FRESH();
	h[0] = host(5000);
	h[1] = host(5000);
	for (int round = 0; round < 5 && h[0] && h[1]; round++) {
		char alias[32];
		int dup = 0, quota = 0;

		snprintf(alias, sizeof(alias), "race-%d", round);
		for (int i = 0; i < 8; i++) {
			meta_of(&x[i].m, alias, round * 8 + i);
			x[i].quota = 1000;
		}
		ASSERT_EQ(run_race(h, x, 8, &dup, &quota), 1);
		ASSERT_EQ(dup, 7);
	}
	store_pg_ops.close(h[0]);
	store_pg_ops.close(h[1]);
}

TEST(quota_holds_across_hosts)
{
	struct store_backend *h[2];
	struct racer x[12];
	int dup = 0, quota = 0;
	size_t n = 0;

	FRESH();
	h[0] = host(5000);
	h[1] = host(5000);
	for (int i = 0; i < 12; i++) {
		char alias[32];

		snprintf(alias, sizeof(alias), "q-%d", i);
		meta_of(&x[i].m, alias, i);
		x[i].quota = 5;
	}
	if (h[0] && h[1]) {
		ASSERT_EQ(run_race(h, x, 12, &dup, &quota), 5);
		ASSERT_EQ(quota, 7);
		ASSERT_OK(store_pg_ops.key_count(h[0], P, &n));
		ASSERT_EQ(n, 5);
	}
	store_pg_ops.close(h[0]);
	store_pg_ops.close(h[1]);
}

/* ---- revision-checked writes ---- */

static int no_version(const struct store_sealed_version *v, void *arg)
{
	(void)v;
	(*(int *)arg)++;
	return 0;
}

TEST(revision_checked_writes)
{
	struct store_backend *a, *b;
	struct store_key_meta m, ma, mb;
	struct store_sealed_version v1 = sealed;
	int nv = 0;

	FRESH();
	a = host(5000);
	b = host(5000);
	if (!a || !b)
		goto out;
	meta_of(&m, "k", 1);
	ASSERT_OK(store_pg_ops.key_insert(a, &m, &sealed, 10));
	ASSERT_OK(store_pg_ops.key_load(a, P, m.key_id, NULL, &ma, no_version, &nv));
	ASSERT_OK(store_pg_ops.key_load(b, P, NULL, "k", &mb, no_version, &nv));
	ASSERT_EQ(nv, 2);
	ASSERT_EQ(ma.revision, 0);
	/* Host a changes it; host b's copy is stale now, whatever it writes. */
	ma.state = 3;
	ASSERT_OK(store_pg_ops.key_update(a, &ma));
	ASSERT_EQ(ma.revision, 1);
	mb.state = 4;
	ASSERT_ERR(store_pg_ops.key_update(b, &mb), KMS_E_STALE);
	v1.version = 1;
	ASSERT_ERR(store_pg_ops.key_add_version(b, &mb, &v1), KMS_E_STALE);
	ASSERT_ERR(store_pg_ops.key_replace_material(b, &mb, NULL), KMS_E_STALE);
	ASSERT_ERR(store_pg_ops.key_delete(b, m.key_id, 0), KMS_E_STALE);
	/* Re-read, apply again: fine. Rotation adds a version atomically. */
	nv = 0;
	ASSERT_OK(store_pg_ops.key_load(b, P, m.key_id, NULL, &mb, no_version, &nv));
	ASSERT_EQ(mb.state, 3);
	mb.current_version = 1;
	ASSERT_OK(store_pg_ops.key_add_version(b, &mb, &v1));
	ASSERT_EQ(mb.revision, 2);
	nv = 0;
	ASSERT_OK(store_pg_ops.key_load(a, P, m.key_id, NULL, &ma, no_version, &nv));
	ASSERT_EQ(nv, 2);
	ASSERT_EQ(ma.current_version, 1);
	ASSERT_OK(store_pg_ops.key_delete(a, m.key_id, 2));
	ASSERT_ERR(store_pg_ops.key_update(b, &mb), KMS_E_KEY_NOT_FOUND);
	ASSERT_ERR(store_pg_ops.key_delete(b, m.key_id, 2), KMS_E_KEY_NOT_FOUND);
	ASSERT_ERR(store_pg_ops.key_load(b, P, m.key_id, NULL, &mb, no_version, &nv),
		   KMS_E_KEY_NOT_FOUND);
out:
	store_pg_ops.close(a);
	store_pg_ops.close(b);
}

TEST(meta_add_first_writer_wins)
{
	struct store_backend *a, *b;
	char v[64];
	bool added = false, found = false;

	FRESH();
	a = host(5000);
	b = host(5000);
	if (a && b) {
		ASSERT_OK(store_pg_ops.meta_add(a, "secret:x", "one", &added));
		ASSERT_TRUE(added);
		ASSERT_OK(store_pg_ops.meta_add(b, "secret:x", "two", &added));
		ASSERT_FALSE(added);
		ASSERT_OK(store_pg_ops.meta_get(b, "secret:x", v, sizeof(v), &found));
		ASSERT_TRUE(found);
		ASSERT_STREQ(v, "one");
	}
	store_pg_ops.close(a);
	store_pg_ops.close(b);
}

/* ---- the change feed ---- */

struct seen {
	int n;
	int kind[16];
	char id[16][KMS_KEY_ID_LEN + 1];
};

static int saw(enum store_change kind, const char *id, void *arg)
{
	struct seen *s = arg;

	if (s->n < 16) {
		s->kind[s->n] = (int)kind;
		snprintf(s->id[s->n], sizeof(s->id[0]), "%s", id);
	}
	s->n++;
	return 0;
}

TEST(changes_of_another_host_in_order)
{
	struct store_backend *a, *b;
	struct store_key_meta m;
	struct store_project_policy pp = { 0, 0, 0750, 0640 };
	struct seen s = { 0 };
	int64_t since = 0, latest = 0, dv = 0;

	FRESH();
	a = host(5000);
	b = host(5000);
	if (!a || !b)
		goto out;
	ASSERT_OK(store_pg_ops.changes_since(a, -1, saw, &s, &since));
	ASSERT_EQ(s.n, 0);
	/* The first watch (re)connects and says "maybe"; then nothing until a change. */
	ASSERT_EQ(store_pg_ops.watch(a, 1000), 1);
	ASSERT_EQ(store_pg_ops.watch(a, 50), 0);
	meta_of(&m, "k", 1);
	ASSERT_OK(store_pg_ops.key_insert(b, &m, &sealed, 10));
	ASSERT_OK(store_pg_ops.project_policy_set(b, P, &pp));
	ASSERT_OK(store_pg_ops.meta_set(b, "region", "eu-x"));
	ASSERT_EQ(store_pg_ops.watch(a, 2000), 1);
	ASSERT_OK(store_pg_ops.changes_since(a, since, saw, &s, &latest));
	/* projects (the key's project was made), keys, key_versions, project policy, meta */
	ASSERT_EQ(s.n, 5);
	ASSERT_EQ(s.kind[0], STORE_CHANGE_POLICY);
	ASSERT_EQ(s.kind[1], STORE_CHANGE_KEY);
	ASSERT_STREQ(s.id[1], m.key_id);
	ASSERT_EQ(s.kind[2], STORE_CHANGE_KEY);
	ASSERT_STREQ(s.id[2], m.key_id);
	ASSERT_EQ(s.kind[3], STORE_CHANGE_POLICY);
	ASSERT_EQ(s.kind[4], STORE_CHANGE_OTHER);
	ASSERT_EQ(latest, since + 5);
	ASSERT_OK(store_pg_ops.data_version(a, &dv));
	ASSERT_EQ(dv, latest);
	/* Nothing new: nothing called, latest stays. */
	s.n = 0;
	ASSERT_OK(store_pg_ops.changes_since(a, latest, saw, &s, &latest));
	ASSERT_EQ(s.n, 0);
	ASSERT_EQ(latest, since + 5);
	/* Pruned past what a host saw (or another database): start over. */
	ASSERT_TRUE(pg_sql("DELETE FROM changes WHERE seq < (SELECT max(seq) FROM changes)"));
	ASSERT_ERR(store_pg_ops.changes_since(a, since, saw, &s, &latest), KMS_E_STALE);
	ASSERT_OK(store_pg_ops.changes_since(a, latest - 1, saw, &s, &latest));
	ASSERT_ERR(store_pg_ops.changes_since(a, latest + 10, saw, &s, &latest), KMS_E_STALE);
out:
	store_pg_ops.close(a);
	store_pg_ops.close(b);
}

/* ---- schema upgrade 4 -> 5 ---- */

static int64_t pg_int(const char *sql)
{
	PGconn *pg = PQconnectdb(pg_uri);
	PGresult *res = PQexec(pg, sql);
	int64_t v = -1;

	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
		v = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	PQfinish(pg);
	return v;
}

TEST(schema_4_upgraded_to_5)
{
	struct store_backend_params ro = { "/nonexistent", NULL, false, true, 5000 };
	struct store_backend *a = NULL, *b = NULL;
	struct store_key_meta m;
	struct seen s = { 0 };
	int64_t since = 0, latest = 0;
	size_t n = 0;
	char why[512] = "";

	FRESH();
	a = host(5000);
	if (!a)
		return;
	meta_of(&m, "k", 1);
	ASSERT_OK(store_pg_ops.key_insert(a, &m, &sealed, 10));
	store_pg_ops.close(a);
	a = NULL;
	ASSERT_EQ(pg_int("SELECT value FROM meta WHERE name = 'schema_version'"), 5);
	/* What version 4 made: neither table nor its feed. */
	ASSERT_TRUE(pg_sql("DROP TABLE cgroup_bindings; DROP TABLE sessions;"
			   "UPDATE meta SET value = '4' WHERE name = 'schema_version'"));
	ro.uri = pg_uri;
	ASSERT_ERR(store_pg_ops.open(&ro, &b, why, sizeof(why)), KMS_E_IO);
	ASSERT_TRUE(strstr(why, "schema version 4") != NULL);
	/* Read-write (without create, as a daemon opens it): upgraded in place. */
	ro.read_only = false;
	ASSERT_OK(store_pg_ops.open(&ro, &b, why, sizeof(why)));
	if (kms_test_failing())
		return;
	ASSERT_EQ(pg_int("SELECT value FROM meta WHERE name = 'schema_version'"), 5);
	ASSERT_OK(store_pg_ops.key_count(b, P, &n));
	ASSERT_EQ(n, 1);
	/* The new tables feed the change feed: cgroup bindings as policy, sessions as other. */
	ASSERT_OK(store_pg_ops.changes_since(b, -1, saw, &s, &since));
	ASSERT_TRUE(pg_sql("INSERT INTO cgroup_bindings VALUES('" P "', '/a', 'viewer')"));
	ASSERT_TRUE(pg_sql("INSERT INTO sessions VALUES('s1', 'h', 't', 1, '\\x00')"));
	ASSERT_OK(store_pg_ops.changes_since(b, since, saw, &s, &latest));
	ASSERT_EQ(s.n, 2);
	ASSERT_EQ(s.kind[0], STORE_CHANGE_POLICY);
	ASSERT_EQ(s.kind[1], STORE_CHANGE_OTHER);
	store_pg_ops.close(b);
	b = NULL;
	/* A version this kmsfs does not know is refused, as before. */
	ASSERT_TRUE(pg_sql("UPDATE meta SET value = '6' WHERE name = 'schema_version'"));
	ASSERT_ERR(store_pg_ops.open(&ro, &b, why, sizeof(why)), KMS_E_IO);
	ASSERT_TRUE(strstr(why, "schema version 6") != NULL);
}

/* ---- outages ---- */

TEST(unreachable_server_fails_in_time)
{
	struct store_backend_params p = { "/nonexistent", "host=/nonexistent-kms-socket-dir port=1",
					  true, false, 1000 };
	struct store_backend *b = NULL;
	char why[512] = "";
	int64_t t0 = kms_time_mono_ms();

	FRESH();
	ASSERT_ERR(store_pg_ops.open(&p, &b, why, sizeof(why)), KMS_E_STORE_UNAVAILABLE);
	ASSERT_TRUE(b == NULL);
	ASSERT_LE(kms_time_mono_ms() - t0, 1000 + 2000);
	ASSERT_TRUE(strstr(why, "cannot reach") != NULL);
}

TEST(statement_held_up_times_out_then_reconnects)
{
	struct store_backend *a;
	struct store_key_meta m;
	PGconn *locker;
	PGresult *res;
	int64_t t0;
	size_t n = 0;

	FRESH();
	a = host(2000);
	if (!a)
		return;
	meta_of(&m, "k", 1);
	ASSERT_OK(store_pg_ops.key_insert(a, &m, &sealed, 10));
	ASSERT_EQ(store_pg_ops.reconnects(a), 0);
	/* Another session holds the project's row: a key insert waits for it, past its bound. */
	locker = PQconnectdb(pg_uri);
	res = PQexec(locker, "BEGIN; SELECT 1 FROM projects FOR UPDATE");
	ASSERT_EQ(PQresultStatus(res), PGRES_TUPLES_OK);
	PQclear(res);
	meta_of(&m, "k2", 2);
	t0 = kms_time_mono_ms();
	ASSERT_ERR(store_pg_ops.key_insert(a, &m, &sealed, 10), KMS_E_STORE_UNAVAILABLE);
	ASSERT_LE(2000, kms_time_mono_ms() - t0);
	ASSERT_LE(kms_time_mono_ms() - t0, 2000 + 2000); /* slack for a busy machine */
	PQfinish(locker);
	/* The dropped connection is made again on the next call, which works. */
	ASSERT_OK(store_pg_ops.key_insert(a, &m, &sealed, 10));
	ASSERT_OK(store_pg_ops.key_count(a, P, &n));
	ASSERT_EQ(n, 2);
	ASSERT_EQ(store_pg_ops.reconnects(a), 1);
	store_pg_ops.close(a);
}
