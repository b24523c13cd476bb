/* The shared backend: one PostgreSQL database that the kmsfs daemons of many hosts use at once.
 *
 * libpq only. A small pool of connections serves requests (each held by one thread at a time)
 * and one more connection LISTENs for other hosts' changes (watch). Every call is bounded by the
 * backend's timeout, as a whole (a transaction with all its statements and retries): waiting
 * for a free connection, connecting and each statement run on non-blocking sockets with poll()
 * until one deadline; past it the connection is dropped (re-made on next use, counted in
 * reconnects; the server ends the statement by its own statement_timeout) and the call answers
 * KMS_E_STORE_UNAVAILABLE, never hangs. Every session has synchronous_commit on: a change is
 * acknowledged only after COMMIT returned, so it is on the primary's disk and on its
 * synchronous standby.
 *
 * The rules that SQLite keeps with one writer are kept here by constraints and row locks in one
 * transaction (quota: the project's row FOR UPDATE, then count; alias: a unique index), never by
 * a read then a write. Writes to a key are conditional on its revision (store_backend.h).
 *
 * Change feed: deferred triggers append one row per changed row to `changes` at COMMIT, under a
 * transaction-wide advisory lock, so sequence numbers become visible in the order they were
 * given and a reader that saw seq N has seen every change below N; they also NOTIFY the
 * channel watch listens on. Rows older than ten minutes are pruned (keeping the newest).
 *
 * The store hands this backend sealed material only: no plaintext key ever reaches PostgreSQL,
 * its WAL or its backups. */
#include "store_pg_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/kms_err.h"
#include "common/kms_hex.h"
#include "common/kms_secmem.h"
#include "common/kms_time.h"

#define STORE_PG_POOL	  4  /* request connections */
#define STORE_PG_RETRIES  5  /* serialization failures and deadlocks retried */
#define STORE_PG_INT_TEXT 24 /* an int64 as text */
/* How long changes are kept for hosts that were away, and how often they are pruned. */
#define STORE_PG_CHANGES_KEEP	"10 minutes"
#define STORE_PG_PRUNE_EVERY_MS 60000
#define STORE_PG_CHANNEL	"kmsfs_changes"
/* The schema: SQLite's schema 3, keys.revision and the change feed; numbered after SQLite's
 * version 4, which adds the revision; 5 adds cgroup_bindings and sessions (SQLite's 5), and a
 * store of version 4 is upgraded to it in place. */
#define STORE_PG_SCHEMA_VERSION 5
#define STORE_PG_SCHEMA_MS	60000u /* the bound of creating or upgrading the schema */
#define STORE_PG_LOCK_SCHEMA	"7020110001"
#define STORE_PG_LOCK_CHANGES	"7020110002"

struct store_pg_conn {
	struct store_backend *b;
	PGconn *pg;
	bool busy;  /* held by a thread (pool lock) */
	bool ever;  /* has been connected: connecting again is a reconnect */
	bool retry; /* the last error was a serialization failure or a deadlock */
	bool in_tx;
	bool snapshot;		     /* in store_pg_snapshot: each op keeps its own bound */
	int depth;		     /* nested gets of the holding thread */
	int64_t deadline_ms;	     /* monotonic: the bound of the current call */
	struct store_pg_conn *outer; /* what the thread held before */
};

struct store_backend {
	char *uri;
	unsigned timeout_ms;
	bool read_only;
	pthread_mutex_t lock; /* the pool's busy flags */
	pthread_cond_t freed;
	struct store_pg_conn pool[STORE_PG_POOL];
	pthread_mutex_t listen_lock; /* watch: one caller at a time */
	struct store_pg_conn listen;
	int64_t pruned_ms; /* monotonic, last prune of changes (under lock) */
	char error[256];   /* libpq's last word on a failure (under lock), for open's why */
	atomic_uint_fast64_t reconnects;
};

/* The connection this thread holds, so a row callback that queries again (or a transaction's
 * body calling an op) reuses it instead of waiting for a second one from the pool. */
static __thread struct store_pg_conn *store_pg_held;

/* ---- schema ---- */

/* Schema 5 (store_sqlite.c, STORE_SCHEMA5_TABLES): new in a store and added to one of version 4. */
#define STORE_PG_SCHEMA5_TABLES                                                                    \
	"CREATE TABLE cgroup_bindings("                                                            \
	"  project_id text NOT NULL, path text NOT NULL, role text NOT NULL,"                      \
	"  PRIMARY KEY(project_id, path));"                                                        \
	"CREATE TABLE sessions("                                                                   \
	"  session_id text PRIMARY KEY, host text NOT NULL, token_id text NOT NULL,"               \
	"  expires_ms bigint NOT NULL, sealed bytea NOT NULL);"

/* Same tables and columns as SQLite's schema 3 (store_sqlite.c), typed; plus keys.revision,
 * keys.seq and grants.seq (the order rows went in, SQLite's rowid) and the change feed. No
 * CHECK constraints on policy rows: a row changed behind our back must load to fail closed. */
static const char store_pg_schema[] =
	"CREATE TABLE meta(name text PRIMARY KEY, value text NOT NULL);"
	"CREATE TABLE projects(project_id text PRIMARY KEY, created_ms bigint NOT NULL);"
	"CREATE TABLE keys("
	"  key_id text PRIMARY KEY,"
	"  project_id text NOT NULL REFERENCES projects(project_id),"
	"  key_alias text NOT NULL,"
	"  key_description text NOT NULL DEFAULT '',"
	"  key_spec text NOT NULL, key_usage text NOT NULL, origin text NOT NULL,"
	"  key_state bigint NOT NULL,"
	"  creation_ms bigint NOT NULL,"
	"  deletion_ms bigint NOT NULL DEFAULT 0,"
	"  rotation_enabled bigint NOT NULL DEFAULT 0,"
	"  rotation_interval bigint NOT NULL DEFAULT 365,"
	"  last_rotation_ms bigint NOT NULL DEFAULT 0,"
	"  rotations bigint NOT NULL DEFAULT 0,"
	"  current_version bigint NOT NULL DEFAULT 0,"
	"  expiration_ms bigint NOT NULL DEFAULT 0,"
	"  import_digest bytea,"
	"  revision bigint NOT NULL DEFAULT 0,"
	"  seq bigserial NOT NULL);"
	"CREATE UNIQUE INDEX keys_alias ON keys(project_id, key_alias);"
	"CREATE INDEX keys_project ON keys(project_id, creation_ms, seq);"
	"CREATE TABLE key_versions("
	"  key_id text NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,"
	"  version bigint NOT NULL,"
	"  sealed bytea NOT NULL,"
	"  created_ms bigint NOT NULL,"
	"  PRIMARY KEY(key_id, version));"
	"CREATE TABLE grants("
	"  grant_id text PRIMARY KEY,"
	"  project_id text NOT NULL,"
	"  key_id text NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,"
	"  grantee text NOT NULL, grantee_type text NOT NULL, operations text NOT NULL,"
	"  issuer text NOT NULL, retiring text NOT NULL DEFAULT '', name text NOT NULL DEFAULT '',"
	"  creation_ms bigint NOT NULL,"
	"  seq bigserial NOT NULL);"
	"CREATE INDEX grants_key ON grants(key_id);"
	"CREATE TABLE tags("
	"  key_id text NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,"
	"  tag_key text NOT NULL, tag_value text NOT NULL,"
	"  PRIMARY KEY(key_id, tag_key));"
	"CREATE TABLE project_policies("
	"  project_id text PRIMARY KEY, owner_uid bigint NOT NULL, group_gid bigint NOT NULL,"
	"  dir_mode bigint NOT NULL, plaintext_mode bigint NOT NULL);"
	"CREATE TABLE bindings("
	"  project_id text NOT NULL, principal text NOT NULL, principal_id bigint NOT NULL,"
	"  role text NOT NULL, PRIMARY KEY(project_id, principal, principal_id));"
	"CREATE TABLE tokens("
	"  token_id text PRIMARY KEY, project_id text NOT NULL, user_name text NOT NULL,"
	"  role text NOT NULL, expiry bigint NOT NULL, issued_ms bigint NOT NULL,"
	"  revoked bigint NOT NULL DEFAULT 0);" STORE_PG_SCHEMA5_TABLES
	/* The change feed (store_backend.h, changes_since). */
	"CREATE TABLE changes(seq bigserial PRIMARY KEY, kind smallint NOT NULL,"
	"  id text NOT NULL DEFAULT '', at timestamptz NOT NULL DEFAULT now());"
	"CREATE FUNCTION kmsfs_change() RETURNS trigger LANGUAGE plpgsql AS $f$"
	" DECLARE i text := '';"
	" BEGIN"
	"  IF TG_ARGV[0] = '1' THEN"
	"   IF TG_OP = 'DELETE' THEN i := OLD.key_id; ELSE i := NEW.key_id; END IF;"
	"  END IF;"
	/* At COMMIT (deferred) and one committer at a time: seq is taken in commit order. */
	"  PERFORM pg_advisory_xact_lock(" STORE_PG_LOCK_CHANGES ");"
	"  INSERT INTO changes(kind, id) VALUES(TG_ARGV[0]::smallint, i);"
	"  PERFORM pg_notify('" STORE_PG_CHANNEL "', '');"
	"  RETURN NULL;"
	" END $f$;";

/* Which tables feed changes of which kind (enum store_change): one deferred trigger each. */
static const struct {
	const char *table;
	enum store_change kind;
} store_pg_feeds[] = {
	{ "keys", STORE_CHANGE_KEY },
	{ "key_versions", STORE_CHANGE_KEY },
	{ "projects", STORE_CHANGE_POLICY },
	{ "project_policies", STORE_CHANGE_POLICY },
	{ "bindings", STORE_CHANGE_POLICY },
	{ "tokens", STORE_CHANGE_POLICY },
	{ "grants", STORE_CHANGE_OTHER },
	{ "tags", STORE_CHANGE_OTHER },
	{ "meta", STORE_CHANGE_OTHER },
	/* schema 5 (the last ones: the upgrade from 4 adds them) */
	{ "cgroup_bindings", STORE_CHANGE_POLICY },
	{ "sessions", STORE_CHANGE_OTHER },
};
#define STORE_PG_FEEDS_V4 9 /* the first ones, which schema 4 had */

/* ---- waiting with a deadline ---- */

static int64_t store_pg_deadline(unsigned timeout_ms)
{
	return kms_time_mono_ms() + (int64_t)timeout_ms;
}

/* Wait until fd is ready for events or the deadline passed (KMS_E_STORE_UNAVAILABLE). */
static int store_pg_wait(int fd, short events, int64_t deadline_ms)
{
	for (;;) {
		int64_t left = deadline_ms - kms_time_mono_ms();
		struct pollfd p = { .fd = fd, .events = events };
		int n;

		if (fd < 0 || left <= 0)
			return KMS_E_STORE_UNAVAILABLE;
		n = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
		if (n > 0)
			return 0;
		if (n == 0 || errno != EINTR)
			return KMS_E_STORE_UNAVAILABLE;
	}
}

/* ---- connections ---- */

/* Connect within the deadline: libpq's own connect_timeout is not applied to PQconnectPoll, so
 * the wait is ours. The user's URI or keyword string comes first (expand_dbname); keepalives
 * notice a peer that vanished, the application name shows in pg_stat_activity. */
static PGconn *store_pg_connect(const struct store_backend *b, int64_t deadline_ms)
{
	static const char *const kw[] = { "keepalives",
					  "keepalives_idle",
					  "keepalives_interval",
					  "keepalives_count",
					  "application_name",
					  "dbname",
					  NULL };
	const char *val[] = { "1", "10", "5", "3", "kmsfs", b->uri, NULL };
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	PGconn *pg = PQconnectStartParams(kw, val, 1);

	if (!pg || PQstatus(pg) == CONNECTION_BAD)
		return pg;
	while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
		short ev = st == PGRES_POLLING_READING ? POLLIN : POLLOUT;

		if (store_pg_wait(PQsocket(pg), ev, deadline_ms) < 0)
			break;
		st = PQconnectPoll(pg);
	}
	return pg;
}

/* Keep libpq's message (its first line) for open's why. */
static void store_pg_note(struct store_backend *b, const char *msg)
{
	size_t n = strcspn(msg, "\n");

	pthread_mutex_lock(&b->lock);
	snprintf(b->error, sizeof(b->error), "%.*s", (int)n, msg);
	pthread_mutex_unlock(&b->lock);
}

static void store_pg_drop(struct store_pg_conn *c)
{
	PQfinish(c->pg);
	c->pg = NULL;
	c->in_tx = false;
}

static int store_pg_run(struct store_pg_conn *c, const char *sql, int nparams,
			const char *const *params, store_pg_row_fn fn, void *arg, long *affected);

/* What every session needs: durable commits, statements bounded on the server too (so a
 * statement abandoned by a client that gave up stops), a dead client or one stopped in the
 * middle of a transaction noticed (its locks would hold up every other host). */
static int store_pg_session(struct store_pg_conn *c)
{
	char sql[256];

	snprintf(sql, sizeof(sql),
		 "SET synchronous_commit = on; SET statement_timeout = %u; "
		 "SET idle_in_transaction_session_timeout = %u; "
		 "SET client_connection_check_interval = 1000",
		 c->b->timeout_ms, 2 * c->b->timeout_ms);
	return store_pg_run(c, sql, 0, NULL, NULL, NULL, NULL);
}

/* The store never logs: the server's notices and warnings are not for the daemon's stderr. */
static void store_pg_quiet(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

/* Make c usable: connect if it has no connection, or if the server closed an idle one (a
 * restart, a failover: a readable idle socket means the server said goodbye). */
static int store_pg_ready(struct store_pg_conn *c)
{
	struct store_backend *b = c->b;
	struct pollfd p;
	int64_t connect_by;
	int r;

	if (c->pg) {
		p = (struct pollfd){ .fd = PQsocket(c->pg), .events = POLLIN };
		if (poll(&p, 1, 0) != 0 &&
		    (!PQconsumeInput(c->pg) || PQstatus(c->pg) != CONNECTION_OK))
			store_pg_drop(c);
	}
	if (c->pg)
		return 0;
	connect_by = store_pg_deadline(b->timeout_ms);
	c->pg = store_pg_connect(b, connect_by < c->deadline_ms ? connect_by : c->deadline_ms);
	if (!c->pg)
		return KMS_E_NOMEM;
	if (PQstatus(c->pg) != CONNECTION_OK || PQsetnonblocking(c->pg, 1) != 0) {
		store_pg_note(b, PQstatus(c->pg) == CONNECTION_BAD ? PQerrorMessage(c->pg)
								   : "no answer in time");
		store_pg_drop(c);
		return KMS_E_STORE_UNAVAILABLE;
	}
	PQsetNoticeProcessor(c->pg, store_pg_quiet, NULL);
	if (c->ever)
		atomic_fetch_add(&b->reconnects, 1);
	c->ever = true;
	r = store_pg_session(c);
	if (r < 0)
		store_pg_drop(c);
	return r;
}

static int store_pg_cond_wait(struct store_backend *b, int64_t deadline_ms)
{
	int64_t left = deadline_ms - kms_time_mono_ms();
	struct timespec ts;

	if (left <= 0)
		return KMS_E_STORE_UNAVAILABLE;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += left / 1000;
	ts.tv_nsec += (left % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	return pthread_cond_timedwait(&b->freed, &b->lock, &ts) == ETIMEDOUT
		       ? KMS_E_STORE_UNAVAILABLE
		       : 0;
}

/* A free connection of the pool, preferably one already connected. */
static struct store_pg_conn *store_pg_pick(struct store_backend *b)
{
	struct store_pg_conn *any = NULL;

	for (size_t i = 0; i < STORE_PG_POOL; i++) {
		if (b->pool[i].busy)
			continue;
		if (b->pool[i].pg)
			return &b->pool[i];
		if (!any)
			any = &b->pool[i];
	}
	return any;
}

static void store_pg_put(struct store_pg_conn *c)
{
	struct store_backend *b = c->b;

	if (--c->depth > 0)
		return;
	store_pg_held = c->outer;
	c->outer = NULL;
	pthread_mutex_lock(&b->lock);
	c->busy = false;
	pthread_cond_signal(&b->freed);
	pthread_mutex_unlock(&b->lock);
}

/* A connection for this thread, usable, within the deadline (the held one if it has one). */
static int store_pg_get(struct store_backend *b, int64_t deadline_ms, struct store_pg_conn **out)
{
	struct store_pg_conn *c = store_pg_held;
	int r = 0;

	*out = NULL;
	if (c && c->b == b) {
		if (c->snapshot)
			c->deadline_ms = deadline_ms;
		c->depth++;
		*out = c;
		return 0;
	}
	pthread_mutex_lock(&b->lock);
	while (r == 0 && !(c = store_pg_pick(b)))
		r = store_pg_cond_wait(b, deadline_ms);
	if (r == 0)
		c->busy = true;
	pthread_mutex_unlock(&b->lock);
	if (r < 0)
		return r;
	c->depth = 1;
	c->deadline_ms = deadline_ms;
	c->retry = false;
	c->outer = store_pg_held;
	store_pg_held = c;
	r = store_pg_ready(c);
	if (r < 0) {
		store_pg_put(c);
		return r;
	}
	*out = c;
	return 0;
}

/* ---- statements ---- */

/* What a failed statement means for the store. */
static int store_pg_err(struct store_pg_conn *c, const PGresult *res)
{
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	const char *constraint = PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME);

	store_pg_note(c->b, PQresultErrorMessage(res));
	if (!state || PQstatus(c->pg) != CONNECTION_OK)
		return KMS_E_STORE_UNAVAILABLE; /* the connection broke */
	if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0) {
		c->retry = true;
		return KMS_E_STALE;
	}
	if (strcmp(state, "23505") == 0) /* ids we made clashed, or a row went in twice: a bug */
		return constraint && strcmp(constraint, "keys_alias") == 0 ? KMS_E_ALIAS_DUPLICATE
									   : KMS_E_INTERNAL;
	if (strcmp(state, "23503") == 0)
		return KMS_E_KEY_NOT_FOUND; /* the key the row belongs to is gone */
	if (strcmp(state, "53100") == 0)
		return KMS_E_NOSPACE;
	/* Cancelled (statement_timeout), shut down, a standby after failover (read-only
	 * transaction), connection trouble: not reachable as a writable primary in time. */
	if (strncmp(state, "57", 2) == 0 || strncmp(state, "08", 2) == 0 ||
	    strcmp(state, "25006") == 0 || strcmp(state, "53300") == 0)
		return KMS_E_STORE_UNAVAILABLE;
	return KMS_E_IO;
}

/* Send a statement and wait for its results until c's deadline. Rows are handed to fn only
 * after the last result is in, so fn may run statements on c itself. */
static int store_pg_run(struct store_pg_conn *c, const char *sql, int nparams,
			const char *const *params, store_pg_row_fn fn, void *arg, long *affected)
{
	PGresult *rows = NULL, *res;
	int r = 0, f, sent;

	if (affected)
		*affected = 0;
	if (!c->pg)
		return KMS_E_STORE_UNAVAILABLE;
	/* Without parameters, the simple protocol (the schema is several statements). */
	sent = nparams == 0 ? PQsendQuery(c->pg, sql)
			    : PQsendQueryParams(c->pg, sql, nparams, NULL, params, NULL, NULL, 0);
	if (!sent)
		goto lost;
	while ((f = PQflush(c->pg)) == 1) {
		if (store_pg_wait(PQsocket(c->pg), POLLIN | POLLOUT, c->deadline_ms) < 0)
			goto lost;
		if (!PQconsumeInput(c->pg))
			goto lost;
	}
	if (f < 0)
		goto lost;
	for (;;) {
		while (PQisBusy(c->pg)) {
			if (store_pg_wait(PQsocket(c->pg), POLLIN, c->deadline_ms) < 0)
				goto lost;
			if (!PQconsumeInput(c->pg))
				goto lost;
		}
		res = PQgetResult(c->pg);
		if (!res)
			break;
		switch (PQresultStatus(res)) {
		case PGRES_TUPLES_OK:
			PQclear(rows);
			rows = res;
			res = NULL;
			break;
		case PGRES_COMMAND_OK:
			if (affected)
				*affected = atol(PQcmdTuples(res));
			break;
		default:
			if (r == 0)
				r = store_pg_err(c, res);
			break;
		}
		PQclear(res);
	}
	if (r == KMS_E_STORE_UNAVAILABLE)
		store_pg_drop(c); /* re-made on next use, to whichever host is the primary now */
	for (int i = 0; r == 0 && rows && fn && i < PQntuples(rows); i++)
		r = fn(rows, i, arg);
	if (r == 0 && rows && affected)
		*affected = PQntuples(rows);
	PQclear(rows);
	return r;
lost:
	/* Also when late. No PQcancel then: it connects and waits for the server without a bound
	 * of its own, and a server that does not answer in time is the case here. The session's
	 * statement_timeout (the same bound) and client_connection_check_interval stop the
	 * statement there. */
	store_pg_drop(c);
	PQclear(rows);
	return KMS_E_STORE_UNAVAILABLE;
}

int store_pg_exec(struct store_pg_conn *c, const char *sql, int nparams, const char *const *params,
		  store_pg_row_fn fn, void *arg, long *affected)
{
	return store_pg_run(c, sql, nparams, params, fn, arg, affected);
}

int store_pg_query(struct store_backend *b, const char *sql, int nparams, const char *const *params,
		   store_pg_row_fn fn, void *arg, long *affected)
{
	struct store_pg_conn *c;
	int r = store_pg_get(b, store_pg_deadline(b->timeout_ms), &c);

	if (r < 0)
		return r;
	r = store_pg_run(c, sql, nparams, params, fn, arg, affected);
	store_pg_put(c);
	return r;
}

/* A short pause before a retried transaction, growing with the attempt; the clock's
 * nanoseconds spread hosts that collided apart. */
static void store_pg_backoff(int attempt)
{
	struct timespec now, ts = { 0, 0 };

	clock_gettime(CLOCK_MONOTONIC, &now);
	ts.tv_nsec = (1 + now.tv_nsec % (5 * attempt)) * 1000000L;
	nanosleep(&ts, NULL);
}

/* One try of the transaction; *at_commit: it failed at COMMIT (whether it committed is then
 * unknown, so it must not be tried again). */
static int store_pg_tx_once(struct store_pg_conn *c, store_pg_tx_fn fn, void *arg, bool *at_commit)
{
	int r = store_pg_run(c, "BEGIN", 0, NULL, NULL, NULL, NULL);

	*at_commit = false;
	if (r < 0)
		return r;
	c->in_tx = true;
	r = fn(c, arg);
	if (r == 0) {
		r = store_pg_run(c, "COMMIT", 0, NULL, NULL, NULL, NULL);
		*at_commit = r < 0;
	} else if (c->pg && store_pg_run(c, "ROLLBACK", 0, NULL, NULL, NULL, NULL) < 0) {
		store_pg_drop(c);
	}
	c->in_tx = false;
	return r;
}

/* store_pg_tx with a bound of its own for the statements (connecting keeps the timeout). */
static int store_pg_tx_within(struct store_backend *b, unsigned bound_ms, store_pg_tx_fn fn,
			      void *arg)
{
	struct store_pg_conn *c;
	bool fresh_try = false, at_commit = false;
	int r = store_pg_get(b, store_pg_deadline(bound_ms), &c);

	if (r < 0)
		return r;
	if (c->in_tx) { /* an op called from a transaction's body: part of it */
		r = fn(c, arg);
		store_pg_put(c);
		return r;
	}
	for (int attempt = 1;; attempt++) {
		c->retry = false;
		r = store_pg_tx_once(c, fn, arg, &at_commit);
		if (r == KMS_E_STORE_UNAVAILABLE && !fresh_try && !at_commit && !c->pg &&
		    kms_time_mono_ms() < c->deadline_ms) {
			/* A pooled connection the server had closed: one try on a new one (the
			 * transaction did not commit, the server dropped it with the session). */
			fresh_try = true;
			r = store_pg_ready(c);
			if (r == 0)
				continue;
		}
		if (r == 0 || !c->retry || attempt >= STORE_PG_RETRIES)
			break;
		store_pg_backoff(attempt);
	}
	if (r == KMS_E_STALE && c->retry)
		r = KMS_E_BUSY; /* retries ran out: KMS.0104, try again */
	store_pg_put(c);
	return r;
}

int store_pg_tx(struct store_backend *b, store_pg_tx_fn fn, void *arg)
{
	return store_pg_tx_within(b, b->timeout_ms, fn, arg);
}

/* ---- columns and parameters ---- */

void store_pg_text(const PGresult *res, int row, int col, char *dst, size_t cap)
{
	snprintf(dst, cap, "%s", PQgetisnull(res, row, col) ? "" : PQgetvalue(res, row, col));
}

bool store_pg_int64(const PGresult *res, int row, int col, int64_t *out)
{
	const char *s = PQgetvalue(res, row, col);
	char *end = NULL;
	long long v;

	*out = 0;
	if (PQgetisnull(res, row, col) || !s || !s[0])
		return false;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != 0)
		return false;
	*out = v;
	return true;
}

bool store_pg_uint32(const PGresult *res, int row, int col, uint32_t *out)
{
	int64_t v = 0;

	*out = 0;
	if (!store_pg_int64(res, row, col, &v) || v < 0 || v > UINT32_MAX)
		return false;
	*out = (uint32_t)v;
	return true;
}

void store_pg_bytea_param(const uint8_t *src, size_t n, char *dst)
{
	dst[0] = '\\';
	dst[1] = 'x';
	kms_hex_encode(src, n, dst + 2);
}

bool store_pg_bytea_get(const PGresult *res, int row, int col, uint8_t *dst, size_t cap,
			size_t *len)
{
	const char *s = PQgetvalue(res, row, col);
	size_t n = (size_t)PQgetlength(res, row, col);

	*len = 0;
	if (PQgetisnull(res, row, col) || n < 2 || s[0] != '\\' || s[1] != 'x')
		return false;
	return kms_hex_decode(s + 2, n - 2, dst, cap, len) == 0;
}

static const char *store_pg_num(char dst[STORE_PG_INT_TEXT], int64_t v)
{
	snprintf(dst, STORE_PG_INT_TEXT, "%" PRId64, v);
	return dst;
}

void store_pg_key_params(const struct store_key_meta *m, struct store_pg_key_params *kp)
{
	const int64_t num[] = {
		m->state,
		m->creation_ms,
		m->deletion_ms,
		m->rotation_enabled,
		m->rotation_interval_days,
		m->last_rotation_ms,
		m->rotations,
		m->current_version,
		m->expiration_ms,
		m->revision > INT64_MAX ? INT64_MAX : (int64_t)m->revision,
	};
	size_t i;

	kp->p[0] = m->project;
	kp->p[1] = m->key_id;
	kp->p[2] = m->alias;
	kp->p[3] = m->description;
	kp->p[4] = m->key_spec;
	kp->p[5] = m->key_usage;
	kp->p[6] = m->origin;
	for (i = 0; i < KMS_ARRAY_SIZE(num); i++)
		kp->p[7 + i + (i >= 9)] = store_pg_num(kp->num[i], num[i]); /* skip the digest */
	kp->p[16] = NULL;
	if (m->import_digest_set) {
		store_pg_bytea_param(m->import_digest, sizeof(m->import_digest), kp->digest);
		kp->p[16] = kp->digest;
	}
}

bool store_pg_key_from_row(const PGresult *res, int row, int col, struct store_key_meta *m)
{
	int64_t n[4] = { 0 }, revision = 0;
	size_t len = 0;
	bool ok = true;

	memset(m, 0, sizeof(*m));
	store_pg_text(res, row, col, m->project, sizeof(m->project));
	store_pg_text(res, row, col + 1, m->key_id, sizeof(m->key_id));
	store_pg_text(res, row, col + 2, m->alias, sizeof(m->alias));
	store_pg_text(res, row, col + 3, m->description, sizeof(m->description));
	store_pg_text(res, row, col + 4, m->key_spec, sizeof(m->key_spec));
	store_pg_text(res, row, col + 5, m->key_usage, sizeof(m->key_usage));
	store_pg_text(res, row, col + 6, m->origin, sizeof(m->origin));
	ok = store_pg_int64(res, row, col + 7, &n[0]) && n[0] >= INT_MIN && n[0] <= INT_MAX;
	m->state = (int)n[0];
	ok = store_pg_int64(res, row, col + 8, &m->creation_ms) && ok;
	ok = store_pg_int64(res, row, col + 9, &m->deletion_ms) && ok;
	ok = store_pg_int64(res, row, col + 10, &n[1]) && ok;
	m->rotation_enabled = n[1] != 0;
	ok = store_pg_int64(res, row, col + 11, &n[2]) && n[2] >= INT_MIN && n[2] <= INT_MAX && ok;
	m->rotation_interval_days = (int)n[2];
	ok = store_pg_int64(res, row, col + 12, &m->last_rotation_ms) && ok;
	ok = store_pg_uint32(res, row, col + 13, &m->rotations) && ok;
	ok = store_pg_uint32(res, row, col + 14, &m->current_version) && ok;
	ok = store_pg_int64(res, row, col + 15, &m->expiration_ms) && ok;
	if (store_pg_bytea_get(res, row, col + 16, m->import_digest, sizeof(m->import_digest),
			       &len) &&
	    len == sizeof(m->import_digest))
		m->import_digest_set = true;
	ok = store_pg_int64(res, row, col + 17, &revision) && revision >= 0 && ok;
	m->revision = (uint64_t)revision;
	return ok;
}

int store_pg_version_from_row(const PGresult *res, int row, int col, struct store_sealed_version *v)
{
	memset(v, 0, sizeof(*v));
	if (!store_pg_uint32(res, row, col, &v->version) ||
	    !store_pg_bytea_get(res, row, col + 1, v->sealed, sizeof(v->sealed), &v->sealed_len) ||
	    v->sealed_len == 0)
		return KMS_E_IO;
	return 0;
}

int store_pg_version_insert(struct store_pg_conn *c, const char *key_id,
			    const struct store_sealed_version *v, int64_t created_ms)
{
	char version[STORE_PG_INT_TEXT], created[STORE_PG_INT_TEXT], sealed[STORE_PG_SEALED_HEX];
	const char *p[] = { key_id, store_pg_num(version, v->version), sealed,
			    store_pg_num(created, created_ms) };

	if (v->sealed_len == 0 || v->sealed_len > sizeof(v->sealed))
		return KMS_E_BAD_PARAM;
	store_pg_bytea_param(v->sealed, v->sealed_len, sealed);
	return store_pg_exec(c,
			     "INSERT INTO key_versions(key_id, version, sealed, created_ms) "
			     "VALUES($1, $2, $3, $4)",
			     4, p, NULL, NULL, NULL);
}

static int store_pg_int_row(const PGresult *res, int row, void *arg)
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

/* ---- opening: the schema ---- */

struct store_pg_schema {
	bool create;
	bool read_only;
	int64_t version; /* 0: none; as found, or as made or upgraded to */
};

static int store_pg_version_row(const PGresult *res, int row, void *arg)
{
	struct store_pg_schema *s = arg;

	if (!PQgetisnull(res, row, 0) && !store_pg_int64(res, row, 0, &s->version))
		s->version = -1;
	return 0;
}

static int store_pg_schema_read(struct store_pg_conn *c, struct store_pg_schema *s)
{
	bool there = false;
	int r = store_pg_exec(c, "SELECT 1 WHERE to_regclass('meta') IS NOT NULL", 0, NULL,
			      store_pg_true_row, &there, NULL);

	s->version = 0;
	if (r == 0 && there)
		r = store_pg_exec(c, "SELECT value FROM meta WHERE name = 'schema_version'", 0,
				  NULL, store_pg_version_row, s, NULL);
	return r;
}

/* The change feed's trigger on store_pg_feeds[from..]. */
static int store_pg_feed_triggers(struct store_pg_conn *c, size_t from)
{
	int r = 0;

	for (size_t i = from; r == 0 && i < KMS_ARRAY_SIZE(store_pg_feeds); i++) {
		char trigger[256];

		snprintf(trigger, sizeof(trigger),
			 "CREATE CONSTRAINT TRIGGER %s_change AFTER INSERT OR UPDATE OR DELETE ON "
			 "%s DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION "
			 "kmsfs_change('%d')",
			 store_pg_feeds[i].table, store_pg_feeds[i].table,
			 (int)store_pg_feeds[i].kind);
		r = store_pg_exec(c, trigger, 0, NULL, NULL, NULL, NULL);
	}
	return r;
}

/* Version 4 -> 5: the new tables with their feeds, in the schema transaction. */
static int store_pg_upgrade_4_5(struct store_pg_conn *c, struct store_pg_schema *s)
{
	int r = store_pg_exec(c, STORE_PG_SCHEMA5_TABLES, 0, NULL, NULL, NULL, NULL);

	if (r == 0)
		r = store_pg_feed_triggers(c, STORE_PG_FEEDS_V4);
	if (r == 0)
		r = store_pg_exec(c, "UPDATE meta SET value = '5' WHERE name = 'schema_version'", 0,
				  NULL, NULL, NULL, NULL);
	if (r == 0)
		s->version = 5;
	return r;
}

/* Inside one transaction, one host at a time (another may be creating or upgrading the same
 * schema): create it if there is none, upgrade an older one in place unless read-only. */
static int store_pg_schema_tx(struct store_pg_conn *c, void *arg)
{
	struct store_pg_schema *s = arg;
	char sql[64];
	int r;

	snprintf(sql, sizeof(sql), "SET LOCAL statement_timeout = %lld",
		 (long long)(c->deadline_ms - kms_time_mono_ms()));
	r = store_pg_exec(c, sql, 0, NULL, NULL, NULL, NULL);
	if (r == 0)
		r = store_pg_exec(c, "SELECT pg_advisory_xact_lock(" STORE_PG_LOCK_SCHEMA ")", 0,
				  NULL, NULL, NULL, NULL);

	if (r == 0)
		r = store_pg_schema_read(c, s);
	if (r == 0 && s->version == 4 && !s->read_only)
		return store_pg_upgrade_4_5(c, s);
	if (r < 0 || s->version != 0 || !s->create)
		return r;
	r = store_pg_exec(c, store_pg_schema, 0, NULL, NULL, NULL, NULL);
	if (r == 0)
		r = store_pg_feed_triggers(c, 0);
	snprintf(sql, sizeof(sql), "INSERT INTO meta VALUES('schema_version', '%d')",
		 STORE_PG_SCHEMA_VERSION);
	if (r == 0)
		r = store_pg_exec(c, sql, 0, NULL, NULL, NULL, NULL);
	if (r == 0)
		s->version = STORE_PG_SCHEMA_VERSION;
	return r;
}

static int store_pg_schema_open(struct store_backend *b, bool create, char *why, size_t why_len)
{
	struct store_pg_schema s = { create && !b->read_only, b->read_only, 0 };
	/* Creating or upgrading the schema is done once and may take longer than a request on a
	 * busy server; connecting is bounded by the timeout all the same. */
	int r = store_pg_tx_within(
		b, STORE_PG_SCHEMA_MS > b->timeout_ms ? STORE_PG_SCHEMA_MS : b->timeout_ms,
		store_pg_schema_tx, &s);

	if (r == 0 && s.version == 0) {
		snprintf(why, why_len,
			 "the PostgreSQL database holds no kmsfs key store; create it with "
			 "'kmsctl --state DIR --store URI init'");
		r = KMS_E_IO;
	} else if (r == 0 && s.version == 4) {
		snprintf(
			why, why_len,
			"the PostgreSQL key store has schema version 4 and must be upgraded to %d: "
			"open it read-write once (start kmsfs or run kmsctl)",
			STORE_PG_SCHEMA_VERSION);
		r = KMS_E_IO;
	} else if (r == 0 && s.version != STORE_PG_SCHEMA_VERSION) {
		snprintf(why, why_len,
			 "the PostgreSQL key store has schema version %lld, this kmsfs knows %d; "
			 "use the kmsfs release that wrote it",
			 (long long)s.version, STORE_PG_SCHEMA_VERSION);
		r = KMS_E_IO;
	}
	return r;
}

static void store_pg_close(struct store_backend *b)
{
	if (!b)
		return;
	for (size_t i = 0; i < STORE_PG_POOL; i++)
		PQfinish(b->pool[i].pg);
	PQfinish(b->listen.pg);
	pthread_cond_destroy(&b->freed);
	pthread_mutex_destroy(&b->lock);
	pthread_mutex_destroy(&b->listen_lock);
	kms_free_string_wiped(b->uri); /* may hold the database password */
	free(b);
}

static struct store_backend *store_pg_new(const struct store_backend_params *p)
{
	struct store_backend *b = calloc(1, sizeof(*b));
	pthread_condattr_t attr;

	if (!b)
		return NULL;
	b->uri = strdup(p->uri);
	if (!b->uri) {
		free(b);
		return NULL;
	}
	b->timeout_ms = p->timeout_ms ? p->timeout_ms : STORE_DEFAULT_TIMEOUT_MS;
	b->read_only = p->read_only;
	pthread_mutex_init(&b->lock, NULL);
	pthread_mutex_init(&b->listen_lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&b->freed, &attr);
	pthread_condattr_destroy(&attr);
	for (size_t i = 0; i < STORE_PG_POOL; i++)
		b->pool[i].b = b;
	b->listen.b = b;
	atomic_init(&b->reconnects, 0);
	return b;
}

static int store_pg_open(const struct store_backend_params *p, struct store_backend **out,
			 char *why, size_t why_len)
{
	struct store_backend *b = NULL;
	int r;

	*out = NULL;
	why[0] = 0;
	if (!p->uri || !p->uri[0]) {
		snprintf(why, why_len, "no PostgreSQL connection string");
		return KMS_E_BAD_PARAM;
	}
	b = store_pg_new(p);
	if (!b)
		return KMS_E_NOMEM;
	r = store_pg_schema_open(b, p->create, why, why_len);
	if (r < 0 && !why[0]) {
		pthread_mutex_lock(&b->lock);
		snprintf(why, why_len, "%s the PostgreSQL key store: %s",
			 r == KMS_E_STORE_UNAVAILABLE ? "cannot reach" : "cannot use",
			 b->error[0] ? b->error : kms_err_info(r)->message);
		pthread_mutex_unlock(&b->lock);
	}
	if (r < 0) {
		store_pg_close(b);
		return r;
	}
	*out = b;
	return 0;
}

/* ---- settings ---- */

struct store_pg_meta_row {
	char *out;
	size_t cap;
	bool *found;
};

static int store_pg_meta_row(const PGresult *res, int row, void *arg)
{
	struct store_pg_meta_row *m = arg;

	store_pg_text(res, row, 0, m->out, m->cap);
	*m->found = true;
	return 0;
}

static int store_pg_meta_get(struct store_backend *b, const char *name, char *out, size_t cap,
			     bool *found)
{
	struct store_pg_meta_row m = { out, cap, found };

	*found = false;
	return store_pg_query(b, "SELECT value FROM meta WHERE name = $1", 1, &name,
			      store_pg_meta_row, &m, NULL);
}

static int store_pg_meta_set(struct store_backend *b, const char *name, const char *value)
{
	const char *p[] = { name, value };

	return store_pg_query(b,
			      "INSERT INTO meta(name, value) VALUES($1, $2) ON CONFLICT (name) "
			      "DO UPDATE SET value = EXCLUDED.value",
			      2, p, NULL, NULL, NULL);
}

static int store_pg_meta_add(struct store_backend *b, const char *name, const char *value,
			     bool *added)
{
	const char *p[] = { name, value };
	long n = 0;
	int r = store_pg_query(b,
			       "INSERT INTO meta(name, value) VALUES($1, $2) ON CONFLICT (name) "
			       "DO NOTHING",
			       2, p, NULL, NULL, &n);

	*added = r == 0 && n == 1;
	return r;
}

/* ---- keys ---- */

struct store_pg_key_tx {
	const struct store_key_meta *m;
	const struct store_sealed_version *v;
	unsigned quota;
	bool replace; /* key_replace_material: the versions go first */
};

/* The quota is counted with the project's row locked: every other creator in the project
 * waits for this transaction, then counts again (up to the quota only, so a project with a
 * million keys costs no more than one with a few). The alias is the unique index's to refuse. */
/* Lock the project's row, making it first if it is not there (the store makes it before, so
 * that costs nothing but one statement). */
static int store_pg_project_lock(struct store_pg_conn *c, const struct store_key_meta *m)
{
	char created[STORE_PG_INT_TEXT];
	const char *p[] = { m->project, store_pg_num(created, m->creation_ms) };
	long n = 0;
	int r = store_pg_exec(c, "SELECT 1 FROM projects WHERE project_id = $1 FOR UPDATE", 1, p,
			      NULL, NULL, &n);

	if (r == 0 && n == 0)
		r = store_pg_exec(c,
				  "INSERT INTO projects(project_id, created_ms) VALUES($1, $2) "
				  "ON CONFLICT (project_id) DO NOTHING",
				  2, p, NULL, NULL, NULL);
	if (r == 0 && n == 0)
		r = store_pg_exec(c, "SELECT 1 FROM projects WHERE project_id = $1 FOR UPDATE", 1,
				  p, NULL, NULL, NULL);
	return r;
}

static int store_pg_key_insert_tx(struct store_pg_conn *c, void *arg)
{
	const struct store_pg_key_tx *t = arg;
	const struct store_key_meta *m = t->m;
	struct store_pg_key_params kp;
	char max[STORE_PG_INT_TEXT];
	const char *quota[] = { m->project, store_pg_num(max, t->quota) };
	int64_t count = 0;
	int r = store_pg_project_lock(c, m);

	/* A statement of its own, after the lock: it sees what the creator we waited for added. */
	if (r == 0)
		r = store_pg_exec(c,
				  "SELECT count(*) FROM (SELECT 1 FROM keys WHERE project_id = $1 "
				  "LIMIT $2::bigint) k",
				  2, quota, store_pg_int_row, &count, NULL);
	if (r == 0 && count >= (int64_t)t->quota)
		r = KMS_E_TOO_MANY_KEYS;
	store_pg_key_params(m, &kp);
	if (r == 0)
		r = store_pg_exec(c,
				  "INSERT INTO keys(" STORE_PG_KEY_COLUMNS
				  ") VALUES(" STORE_PG_KEY_VALUES ")",
				  STORE_PG_KEY_NCOLUMNS, kp.p, NULL, NULL, NULL);
	if (r == 0 && t->v)
		r = store_pg_version_insert(c, m->key_id, t->v, m->creation_ms);
	return r;
}

static int store_pg_key_insert(struct store_backend *b, const struct store_key_meta *meta,
			       const struct store_sealed_version *v, unsigned quota)
{
	struct store_pg_key_tx t = { meta, v, quota, false };

	return store_pg_tx(b, store_pg_key_insert_tx, &t);
}

struct store_pg_load {
	struct store_key_meta *meta;
	bool found;
	store_backend_version_cb cb;
	void *arg;
};

/* A row of the key joined with one of its versions (none: NULL version columns). */
static int store_pg_load_row(const PGresult *res, int row, void *arg)
{
	struct store_pg_load *l = arg;
	struct store_sealed_version v;
	int r;

	if (row == 0) {
		if (!store_pg_key_from_row(res, row, 0, l->meta))
			return KMS_E_IO;
		l->found = true;
	}
	if (PQgetisnull(res, row, STORE_PG_KEY_NCOLUMNS))
		return 0;
	r = store_pg_version_from_row(res, row, STORE_PG_KEY_NCOLUMNS, &v);
	if (r == 0)
		r = l->cb(&v, l->arg);
	kms_wipe(&v, sizeof(v));
	return r;
}

/* The key and its versions in one statement: one snapshot, so the versions are those of the
 * revision read (a rotation elsewhere cannot slip in between). */
static int store_pg_key_load(struct store_backend *b, const char *project, const char *key_id,
			     const char *alias, struct store_key_meta *meta,
			     store_backend_version_cb cb, void *arg)
{
	struct store_pg_load l = { meta, false, cb, arg };
	const char *p[] = { project, key_id ? key_id : alias };
	int r = store_pg_query(
		b,
		key_id ? "SELECT k.*, v.version, v.sealed FROM (SELECT " STORE_PG_KEY_COLUMNS
			 " FROM keys WHERE project_id = $1 AND key_id = $2) k "
			 "LEFT JOIN key_versions v ON v.key_id = k.key_id "
			 "ORDER BY v.version"
		       : "SELECT k.*, v.version, v.sealed FROM (SELECT " STORE_PG_KEY_COLUMNS
			 " FROM keys WHERE project_id = $1 AND key_alias = $2) k "
			 "LEFT JOIN key_versions v ON v.key_id = k.key_id "
			 "ORDER BY v.version",
		2, p, store_pg_load_row, &l, NULL);

	if (r == 0 && !l.found)
		r = KMS_E_KEY_NOT_FOUND;
	return r;
}

struct store_pg_list {
	store_backend_meta_cb cb;
	void *arg;
	int stop; /* what cb returned, if it stopped the rows */
};

static int store_pg_list_row(const PGresult *res, int row, void *arg)
{
	struct store_pg_list *l = arg;
	struct store_key_meta m;
	int r;

	if (!store_pg_key_from_row(res, row, 0, &m))
		return KMS_E_IO;
	r = l->cb(&m, l->arg);
	if (r == 0)
		return 0;
	l->stop = r; /* a positive stop is handed back as it is, as SQLite's rows do */
	return r < 0 ? r : KMS_E_INTERNAL;
}

static int store_pg_listed(const struct store_pg_list *l, int r)
{
	return l->stop ? l->stop : r;
}

#define STORE_PG_LIST_WHERE                                                                        \
	" FROM keys WHERE project_id = $1 AND ($2::bigint = 0 OR key_state = $2)"

static int store_pg_key_list(struct store_backend *b, const char *project, int state, size_t offset,
			     size_t limit, store_backend_meta_cb cb, void *arg, size_t *total)
{
	struct store_pg_list l = { cb, arg, 0 };
	char st[STORE_PG_INT_TEXT], lim[STORE_PG_INT_TEXT], off[STORE_PG_INT_TEXT];
	const char *p[] = {
		project,
		store_pg_num(st, state),
		store_pg_num(lim, limit > INT64_MAX ? INT64_MAX : (int64_t)limit),
		store_pg_num(off, offset > INT64_MAX ? INT64_MAX : (int64_t)offset),
	};
	int64_t n = 0;
	int r = store_pg_query(b, "SELECT count(*)" STORE_PG_LIST_WHERE, 2, p, store_pg_int_row, &n,
			       NULL);

	*total = (size_t)n;
	if (r < 0 || limit == 0)
		return r;
	r = store_pg_query(b,
			   "SELECT " STORE_PG_KEY_COLUMNS STORE_PG_LIST_WHERE
			   " ORDER BY creation_ms, seq LIMIT $3::bigint OFFSET $4::bigint",
			   4, p, store_pg_list_row, &l, NULL);
	return store_pg_listed(&l, r);
}

static int store_pg_key_count(struct store_backend *b, const char *project, size_t *count)
{
	int64_t n = 0;
	int r = store_pg_query(b, "SELECT count(*) FROM keys WHERE project_id = $1", 1, &project,
			       store_pg_int_row, &n, NULL);

	*count = (size_t)n;
	return r;
}

/* After a conditional write changed nothing: was the key changed or is it gone? */
static int store_pg_stale_or_gone(struct store_pg_conn *c, const char *key_id)
{
	bool there = false;
	int r = store_pg_exec(c, "SELECT 1 FROM keys WHERE key_id = $1", 1, &key_id,
			      store_pg_true_row, &there, NULL);

	if (r == 0)
		r = there ? KMS_E_STALE : KMS_E_KEY_NOT_FOUND;
	return r;
}

/* The key's fields, if its row still has m->revision; the row then has the next one. */
static int store_pg_key_write(struct store_pg_conn *c, const struct store_key_meta *m)
{
	struct store_pg_key_params kp;
	long n = 0;
	int r;

	store_pg_key_params(m, &kp);
	r = store_pg_exec(c,
			  "UPDATE keys SET key_alias = $3, key_description = $4, key_spec = $5, "
			  "key_usage = $6, origin = $7, key_state = $8, creation_ms = $9, "
			  "deletion_ms = $10, rotation_enabled = $11, rotation_interval = $12, "
			  "last_rotation_ms = $13, rotations = $14, current_version = $15, "
			  "expiration_ms = $16, import_digest = $17, revision = revision + 1 "
			  "WHERE project_id = $1 AND key_id = $2 AND revision = $18",
			  STORE_PG_KEY_NCOLUMNS, kp.p, NULL, NULL, &n);
	if (r == 0 && n != 1)
		r = store_pg_stale_or_gone(c, m->key_id);
	return r;
}

static int store_pg_key_write_tx(struct store_pg_conn *c, void *arg)
{
	const struct store_pg_key_tx *t = arg;
	const char *key_id = t->m->key_id;
	int r = store_pg_key_write(c, t->m);

	if (r == 0 && t->replace)
		r = store_pg_exec(c, "DELETE FROM key_versions WHERE key_id = $1", 1, &key_id, NULL,
				  NULL, NULL);
	/* Added on rotation: created then; a replacement (import): as old as the key. */
	if (r == 0 && t->v)
		r = store_pg_version_insert(c, t->m->key_id, t->v,
					    t->replace ? t->m->creation_ms
						       : t->m->last_rotation_ms);
	return r;
}

static int store_pg_key_write_all(struct store_backend *b, struct store_key_meta *meta,
				  const struct store_sealed_version *v, bool replace)
{
	struct store_pg_key_tx t = { meta, v, 0, replace };
	int r = store_pg_tx(b, store_pg_key_write_tx, &t);

	if (r == 0)
		meta->revision++;
	return r;
}

static int store_pg_key_update(struct store_backend *b, struct store_key_meta *meta)
{
	return store_pg_key_write_all(b, meta, NULL, false);
}

static int store_pg_key_add_version(struct store_backend *b, struct store_key_meta *meta,
				    const struct store_sealed_version *v)
{
	return store_pg_key_write_all(b, meta, v, false);
}

static int store_pg_key_replace_material(struct store_backend *b, struct store_key_meta *meta,
					 const struct store_sealed_version *v)
{
	return store_pg_key_write_all(b, meta, v, true);
}

struct store_pg_reseal {
	const char *key_id;
	uint64_t revision;
	const struct store_sealed_version *v;
	size_t n;
};

/* The key's row is locked (FOR UPDATE: a concurrent write waits) but not changed. */
static int store_pg_key_reseal_tx(struct store_pg_conn *c, void *arg)
{
	const struct store_pg_reseal *t = arg;
	char rev[STORE_PG_INT_TEXT], version[STORE_PG_INT_TEXT], sealed[STORE_PG_SEALED_HEX];
	const char *p[] = { t->key_id,
			    store_pg_num(rev, t->revision > INT64_MAX ? INT64_MAX
								      : (int64_t)t->revision) };
	bool there = false;
	long n = 0;
	int r = store_pg_exec(c,
			      "SELECT 1 FROM keys WHERE key_id = $1 AND revision = $2 FOR UPDATE",
			      2, p, store_pg_true_row, &there, NULL);

	if (r == 0 && !there)
		r = store_pg_stale_or_gone(c, t->key_id);
	for (size_t i = 0; r == 0 && i < t->n; i++) {
		const char *q[] = { t->key_id, store_pg_num(version, t->v[i].version), sealed };

		if (t->v[i].sealed_len == 0 || t->v[i].sealed_len > sizeof(t->v[i].sealed))
			return KMS_E_BAD_PARAM;
		store_pg_bytea_param(t->v[i].sealed, t->v[i].sealed_len, sealed);
		r = store_pg_exec(c,
				  "UPDATE key_versions SET sealed = $3 WHERE key_id = $1 AND "
				  "version = $2",
				  3, q, NULL, NULL, &n);
		if (r == 0 && n != 1)
			r = KMS_E_STALE; /* the material was replaced meanwhile */
	}
	return r;
}

static int store_pg_key_reseal(struct store_backend *b, const char *key_id, uint64_t revision,
			       const struct store_sealed_version *v, size_t n)
{
	struct store_pg_reseal t = { key_id, revision, v, n };

	return store_pg_tx(b, store_pg_key_reseal_tx, &t);
}

struct store_pg_delete {
	const char *key_id;
	uint64_t revision;
};

/* Versions, grants and tags go with the key's row (ON DELETE CASCADE). */
static int store_pg_key_delete_tx(struct store_pg_conn *c, void *arg)
{
	const struct store_pg_delete *d = arg;
	char rev[STORE_PG_INT_TEXT];
	const char *p[] = { d->key_id,
			    store_pg_num(rev, d->revision > INT64_MAX ? INT64_MAX
								      : (int64_t)d->revision) };
	long n = 0;
	int r = store_pg_exec(c, "DELETE FROM keys WHERE key_id = $1 AND revision = $2", 2, p, NULL,
			      NULL, &n);

	if (r == 0 && n != 1)
		r = store_pg_stale_or_gone(c, d->key_id);
	return r;
}

static int store_pg_key_delete(struct store_backend *b, const char *key_id, uint64_t revision)
{
	struct store_pg_delete d = { key_id, revision };

	return store_pg_tx(b, store_pg_key_delete_tx, &d);
}

/* Nothing to do here, and nothing could be done: PostgreSQL reclaims a deleted row's space when
 * VACUUM runs (autovacuum), and until then, in its WAL, archives and base backups the row's
 * old contents remain. That is acceptable because the store hands PostgreSQL sealed material
 * only (AES-256-GCM under the root key, which never leaves the hosts' state directories): what
 * stays behind is ciphertext, as in any backup. */
static int store_pg_wipe_deleted(struct store_backend *b)
{
	(void)b;
	return 0;
}

/* Changes older than a host may be away for are dropped now and then (the newest is kept, so
 * changes_since can tell a gap from a quiet database). */
static int store_pg_prune(struct store_backend *b)
{
	int64_t now = kms_time_mono_ms();
	bool due;

	pthread_mutex_lock(&b->lock);
	due = !b->read_only && (b->pruned_ms == 0 || now - b->pruned_ms >= STORE_PG_PRUNE_EVERY_MS);
	if (due)
		b->pruned_ms = now;
	pthread_mutex_unlock(&b->lock);
	if (!due)
		return 0;
	return store_pg_query(
		b,
		"DELETE FROM changes WHERE at < now() - interval '" STORE_PG_CHANGES_KEEP
		"' AND seq < (SELECT max(seq) FROM changes)",
		0, NULL, NULL, NULL, NULL);
}

static int store_pg_key_due(struct store_backend *b, int64_t now_ms, store_backend_meta_cb cb,
			    void *arg)
{
	struct store_pg_list l = { cb, arg, 0 };
	char now[STORE_PG_INT_TEXT];
	const char *p[] = { store_pg_num(now, now_ms) };
	int r = store_pg_prune(b);

	if (r == 0)
		r = store_pg_query(
			b,
			"SELECT " STORE_PG_KEY_COLUMNS " FROM keys WHERE "
			"(key_state = 4 AND deletion_ms > 0 AND deletion_ms <= $1) OR "
			"(origin = 'external' AND key_state IN (2, 3, 4) AND expiration_ms > 0 "
			" AND expiration_ms <= $1) OR "
			"(key_state = 2 AND rotation_enabled = 1 AND current_version < 63 AND "
			" greatest(last_rotation_ms, creation_ms) + rotation_interval * 86400000 "
			" <= $1)",
			1, p, store_pg_list_row, &l, NULL);
	return store_pg_listed(&l, r);
}

/* ---- the change feed ---- */

static int store_pg_data_version(struct store_backend *b, int64_t *version)
{
	*version = 0;
	return store_pg_query(b, "SELECT coalesce(max(seq), 0) FROM changes", 0, NULL,
			      store_pg_int_row, version, NULL);
}

struct store_pg_changes {
	int64_t min, max;
	store_backend_change_cb cb;
	void *arg;
	int stop;
};

static int store_pg_bounds_row(const PGresult *res, int row, void *arg)
{
	struct store_pg_changes *ch = arg;

	return store_pg_int64(res, row, 0, &ch->min) && store_pg_int64(res, row, 1, &ch->max)
		       ? 0
		       : KMS_E_IO;
}

static int store_pg_change_row(const PGresult *res, int row, void *arg)
{
	struct store_pg_changes *ch = arg;
	int64_t seq = 0, kind = 0;
	int r;

	if (!store_pg_int64(res, row, 0, &seq) || !store_pg_int64(res, row, 1, &kind))
		return KMS_E_IO;
	if (seq > ch->max)
		ch->max = seq;
	r = ch->cb((enum store_change)kind, PQgetvalue(res, row, 2), ch->arg);
	if (r != 0)
		ch->stop = r;
	return r > 0 ? KMS_E_INTERNAL : r;
}

static int store_pg_changes_since(struct store_backend *b, int64_t since,
				  store_backend_change_cb cb, void *arg, int64_t *latest)
{
	struct store_pg_changes ch = { 0, 0, cb, arg, 0 };
	char s[STORE_PG_INT_TEXT];
	const char *p[] = { store_pg_num(s, since) };
	int r = store_pg_query(b,
			       "SELECT coalesce(min(seq), 0), coalesce(max(seq), 0) FROM changes",
			       0, NULL, store_pg_bounds_row, &ch, NULL);

	if (r < 0)
		return r;
	*latest = ch.max;
	if (since < 0)
		return 0;
	/* Changes after since were pruned, or the database is not the one since came from. */
	if (since > ch.max || (ch.min > 0 && since < ch.min - 1))
		return KMS_E_STALE;
	r = store_pg_query(b, "SELECT seq, kind, id FROM changes WHERE seq > $1 ORDER BY seq", 1, p,
			   store_pg_change_row, &ch, NULL);
	if (ch.stop)
		return ch.stop;
	if (r == 0)
		*latest = ch.max;
	return r;
}

static void store_pg_sleep_until(int64_t deadline_ms)
{
	int64_t left = deadline_ms - kms_time_mono_ms();
	struct timespec ts;

	if (left <= 0)
		return;
	ts.tv_sec = left / 1000;
	ts.tv_nsec = (left % 1000) * 1000000L;
	nanosleep(&ts, NULL);
}

/* The LISTEN connection: (re)made on demand; a new one reports a change, since notifications
 * sent while there was none are lost. */
static int store_pg_listen(struct store_backend *b)
{
	struct store_pg_conn *c = &b->listen;
	int r;

	c->deadline_ms = store_pg_deadline(b->timeout_ms);
	r = store_pg_ready(c);
	if (r == 0)
		r = store_pg_run(c, "LISTEN " STORE_PG_CHANNEL, 0, NULL, NULL, NULL, NULL);
	if (r < 0)
		store_pg_drop(c);
	return r < 0 ? r : 1;
}

static int store_pg_notified(PGconn *pg)
{
	PGnotify *n;
	int seen = 0;

	while ((n = PQnotifies(pg))) {
		PQfreemem(n);
		seen = 1;
	}
	return seen;
}

static int store_pg_watch_locked(struct store_backend *b, int timeout_ms)
{
	struct store_pg_conn *c = &b->listen;
	int64_t deadline = store_pg_deadline(timeout_ms > 0 ? (unsigned)timeout_ms : 0);
	int r;

	if (!c->pg) {
		r = store_pg_listen(b);
		if (r < 0) /* not at once again: the caller would spin while the server is down */
			store_pg_sleep_until(deadline);
		return r;
	}
	for (;;) {
		if (!PQconsumeInput(c->pg) || PQstatus(c->pg) != CONNECTION_OK) {
			store_pg_drop(c);
			return KMS_E_STORE_UNAVAILABLE;
		}
		if (store_pg_notified(c->pg))
			return 1;
		r = store_pg_wait(PQsocket(c->pg), POLLIN, deadline);
		if (r < 0)
			return 0; /* timed out */
	}
}

static int store_pg_watch(struct store_backend *b, int timeout_ms)
{
	int r;

	pthread_mutex_lock(&b->listen_lock);
	r = store_pg_watch_locked(b, timeout_ms);
	pthread_mutex_unlock(&b->listen_lock);
	return r;
}

/* A backup's reads: one REPEATABLE READ transaction on the connection this thread holds for
 * the whole of fn (the ops fn calls get it, as a transaction's body does), so fn sees one
 * moment of the database however long it takes, while other hosts go on writing. */
static int store_pg_snapshot(struct store_backend *b, int (*fn)(void *arg), void *arg)
{
	struct store_pg_conn *c;
	int e, r = store_pg_get(b, store_pg_deadline(b->timeout_ms), &c);

	if (r < 0)
		return r;
	if (c->in_tx) {
		store_pg_put(c);
		return KMS_E_INTERNAL;
	}
	r = store_pg_run(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL, NULL, NULL,
			 NULL);
	if (r == 0) {
		c->in_tx = c->snapshot = true;
		r = fn(arg);
		c->in_tx = c->snapshot = false;
		c->deadline_ms = store_pg_deadline(b->timeout_ms);
		e = c->pg ? store_pg_run(c, r == 0 ? "COMMIT" : "ROLLBACK", 0, NULL, NULL, NULL,
					 NULL)
			  : KMS_E_STORE_UNAVAILABLE;
		if (e < 0 && c->pg)
			store_pg_drop(c); /* a transaction may still be open on it */
		if (r == 0)
			r = e;
	}
	store_pg_put(c);
	return r;
}

static uint64_t store_pg_reconnects(struct store_backend *b)
{
	return atomic_load(&b->reconnects);
}

const struct store_backend_ops store_pg_ops = {
	.name = "postgresql",
	.shared = true,
	.open = store_pg_open,
	.close = store_pg_close,
	.meta_get = store_pg_meta_get,
	.meta_set = store_pg_meta_set,
	.meta_add = store_pg_meta_add,
	.project_ensure = store_pg_project_ensure,
	.project_exists = store_pg_project_exists,
	.project_list = store_pg_project_list,
	.key_insert = store_pg_key_insert,
	.key_load = store_pg_key_load,
	.key_list = store_pg_key_list,
	.key_count = store_pg_key_count,
	.key_update = store_pg_key_update,
	.key_add_version = store_pg_key_add_version,
	.key_replace_material = store_pg_key_replace_material,
	.key_delete = store_pg_key_delete,
	.key_reseal = store_pg_key_reseal,
	.key_put = store_pg_key_put,
	.wipe_deleted = store_pg_wipe_deleted,
	.key_due = store_pg_key_due,
	.data_version = store_pg_data_version,
	.changes_since = store_pg_changes_since,
	.watch = store_pg_watch,
	.reconnects = store_pg_reconnects,
	.grant_insert = store_pg_grant_insert,
	.grant_put = store_pg_grant_put,
	.grant_delete = store_pg_grant_delete,
	.grant_list = store_pg_grant_list,
	.grant_count_max = store_pg_grant_count_max,
	.tag_set = store_pg_tag_set,
	.tag_delete = store_pg_tag_delete,
	.tag_list = store_pg_tag_list,
	.project_policy_set = store_pg_project_policy_set,
	.binding_set = store_pg_binding_set,
	.cgroup_binding_set = store_pg_cgroup_binding_set,
	.token_put = store_pg_token_put,
	.session_put = store_pg_session_put,
	.session_delete = store_pg_session_delete,
	.session_list = store_pg_session_list,
	.session_reseal = store_pg_session_reseal,
	.policy_list = store_pg_policy_list,
	.key_scan = store_pg_key_scan,
	.snapshot = store_pg_snapshot,
};
