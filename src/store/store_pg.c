/* The shared backend: one PostgreSQL database that the kmsfs daemons of many hosts use at once.
 *
 * libpq only. A small pool of connections serves requests (each held by one thread at a time)
 * and one more connection LISTENs for other hosts' changes (watch). Every call is bounded by the
 * backend's timeout: connecting, waiting for a free connection and each statement run on
 * non-blocking sockets with poll() until a deadline; past it the statement is cancelled, the
 * connection dropped (re-made on next use, counted in reconnects) and the call answers
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
#include "common/kms_time.h"

#define STORE_PG_POOL	  4  /* request connections */
#define STORE_PG_RETRIES  5  /* serialization failures and deadlocks retried */
#define STORE_PG_INT_TEXT 24 /* an int64 as text */
/* How long changes are kept for hosts that were away, and how often they are pruned. */
#define STORE_PG_CHANGES_KEEP	 "10 minutes"
#define STORE_PG_PRUNE_EVERY_MS	 60000
#define STORE_PG_CHANNEL	 "kmsfs_changes"
#define STORE_PG_SCHEMA_VERSION	 4 /* SQLite's schema 3, keys.revision and the change feed:
				      numbered after SQLite's version 4 that adds the revision */
#define STORE_PG_LOCK_SCHEMA	 "7020110001"
#define STORE_PG_LOCK_CHANGES	 "7020110002"

struct store_pg_conn {
	struct store_backend *b;
	PGconn *pg;
	bool busy;  /* held by a thread (pool lock) */
	bool ever;  /* has been connected: connecting again is a reconnect */
	bool retry; /* the last error was a serialization failure or a deadlock */
	bool in_tx;
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
	atomic_uint_fast64_t reconnects;
};

/* The connection this thread holds, so a row callback that queries again (or a transaction's
 * body calling an op) reuses it instead of waiting for a second one from the pool. */
static __thread struct store_pg_conn *store_pg_held;

/* ---- schema ---- */

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
	"CREATE UNIQUE INDEX keys_alias ON keys(project_id, key_alias) WHERE key_alias <> '';"
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
	"  revoked bigint NOT NULL DEFAULT 0);"
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
	" END $f$;"
#define STORE_PG_TRIGGER(table, kind)                                                              \
	"CREATE CONSTRAINT TRIGGER " table "_change AFTER INSERT OR UPDATE OR DELETE ON " table  \
	" DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION kmsfs_change('" kind "');"
	STORE_PG_TRIGGER("keys", "1") STORE_PG_TRIGGER("key_versions", "1")
		STORE_PG_TRIGGER("projects", "2") STORE_PG_TRIGGER("project_policies", "2")
			STORE_PG_TRIGGER("bindings", "2") STORE_PG_TRIGGER("tokens", "2")
				STORE_PG_TRIGGER("grants", "3") STORE_PG_TRIGGER("tags", "3")
					STORE_PG_TRIGGER("meta", "3");

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
	static const char *const kw[] = { "keepalives",	      "keepalives_idle",
					  "keepalives_interval", "keepalives_count",
					  "application_name",    "dbname",
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

static void store_pg_drop(struct store_pg_conn *c)
{
	PQfinish(c->pg);
	c->pg = NULL;
	c->in_tx = false;
}

/* A statement that missed its deadline: ask the server to stop it (on a local socket only, where
 * PQcancel cannot block; elsewhere the session's statement_timeout and
 * client_connection_check_interval end it) and drop the connection. */
static void store_pg_abandon(struct store_pg_conn *c)
{
	const char *host = PQhost(c->pg);

	if (host && host[0] == '/') {
		PGcancel *cancel = PQgetCancel(c->pg);
		char err[256];

		if (cancel) {
			(void)PQcancel(cancel, err, sizeof(err));
			PQfreeCancel(cancel);
		}
	}
	store_pg_drop(c);
}

static int store_pg_run(struct store_pg_conn *c, const char *sql, int nparams,
			const char *const *params, store_pg_row_fn fn, void *arg, long *affected);

/* What every session needs: durable commits, statements bounded on the server too (so a
 * statement abandoned by a client that gave up stops), a dead client noticed. */
static int store_pg_session(struct store_pg_conn *c)
{
	char sql[256];

	snprintf(sql, sizeof(sql),
		 "SET synchronous_commit = on; SET statement_timeout = %u; "
		 "SET client_connection_check_interval = 1000",
		 c->b->timeout_ms);
	return store_pg_run(c, sql, 0, NULL, NULL, NULL, NULL);
}

/* Make c usable: connect if it has no connection, or if the server closed an idle one (a
 * restart, a failover: a readable idle socket means the server said goodbye). */
static int store_pg_ready(struct store_pg_conn *c)
{
	struct store_backend *b = c->b;
	struct pollfd p;
	int r;

	if (c->pg) {
		p = (struct pollfd){ .fd = PQsocket(c->pg), .events = POLLIN };
		if (poll(&p, 1, 0) != 0 && (!PQconsumeInput(c->pg) || PQstatus(c->pg) != CONNECTION_OK))
			store_pg_drop(c);
	}
	if (c->pg)
		return 0;
	c->pg = store_pg_connect(b, c->deadline_ms);
	if (!c->pg)
		return KMS_E_NOMEM;
	if (PQstatus(c->pg) != CONNECTION_OK || PQsetnonblocking(c->pg, 1) != 0) {
		store_pg_drop(c);
		return KMS_E_STORE_UNAVAILABLE;
	}
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
			goto late;
		if (!PQconsumeInput(c->pg))
			goto lost;
	}
	if (f < 0)
		goto lost;
	for (;;) {
		while (PQisBusy(c->pg)) {
			if (store_pg_wait(PQsocket(c->pg), POLLIN, c->deadline_ms) < 0)
				goto late;
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
late:
	store_pg_abandon(c);
	PQclear(rows);
	return KMS_E_STORE_UNAVAILABLE;
lost:
	store_pg_drop(c);
	PQclear(rows);
	return KMS_E_STORE_UNAVAILABLE;
}

int store_pg_exec(struct store_pg_conn *c, const char *sql, int nparams, const char *const *params,
		  store_pg_row_fn fn, void *arg, long *affected)
{
	return store_pg_run(c, sql, nparams, params, fn, arg, affected);
}

int store_pg_query(struct store_backend *b, const char *sql, int nparams,
		   const char *const *params, store_pg_row_fn fn, void *arg, long *affected)
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
static int store_pg_tx_once(struct store_pg_conn *c, store_pg_tx_fn fn, void *arg,
			    bool *at_commit)
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

int store_pg_tx(struct store_backend *b, store_pg_tx_fn fn, void *arg)
{
	struct store_pg_conn *c;
	bool fresh_try = false, at_commit = false;
	int r = store_pg_get(b, store_pg_deadline(b->timeout_ms), &c);

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
