/* /kms/.metrics and /kms/.status (docs/monitoring.md): what the daemon has done and holds, for
 * root and the members of -o metrics_group. The request path only adds to its own thread's
 * counters (fs_metrics_count: no lock, no shared cache line; a block allocated once per thread);
 * each open of either file sums them into a snapshot and formats it whole, served with direct_io
 * from the handle. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/kms_err.h"
#include "common/kms_time.h"
#include "fs_internal.h"
#include "fs_uring.h"
#include "store/kms_store.h"

/* What a file's st_size says: never 0, or sendfile and splice readers get nothing without asking
 * (the action files have the same size rule, fs_stat_node); a snapshot is far smaller. */
#define FS_INFO_SIZE	  (1024 * 1024)
#define FS_INFO_MAX_BYTES (16u * 1024u * 1024u)

const int64_t fs_latency_bounds_ns[FS_LATENCY_BUCKETS] = {
	100000,	  250000,   500000,    1000000,	  2500000,   5000000,	 10000000,
	25000000, 50000000, 100000000, 250000000, 500000000, 1000000000, 2500000000,
};

static const char *const fs_info_names[] = {
	[FS_INFO_METRICS] = ".metrics", [FS_INFO_STATUS] = ".status"
};

int fs_info_index(const char *name, uint8_t *info)
{
	for (size_t i = 0; i < KMS_ARRAY_SIZE(fs_info_names); i++) {
		if (strcmp(name, fs_info_names[i]) == 0) {
			*info = (uint8_t)i;
			return 0;
		}
	}
	return -ENOENT;
}

const char *fs_info_name(uint8_t info)
{
	return info < KMS_ARRAY_SIZE(fs_info_names) ? fs_info_names[info] : NULL;
}

/* One thread's counters. Only that thread writes them (plain adds through relaxed atomics: no
 * lock prefix, no cache line shared with another writer); readers sum every block. A block
 * outlives its thread (its counts stay in the sums) and is handed to the next thread that needs
 * one. */
struct fs_counters {
	struct fs_counters *next;
	struct fs_metrics *m;
	bool in_use;
	uint64_t latency[FS_LATENCY_BUCKETS + 1]; /* per bucket (not cumulative); last: +Inf */
	uint64_t latency_ns;			  /* sum */
	uint64_t request_bytes, response_bytes;
	uint64_t requests
		[]; /* [action][code]: code 0 is success, c > 0 the error KMS__E_FIRST + c */
};

static struct fs_counters *fs_counters_new(struct fs_metrics *m)
{
	struct fs_counters *c =
		calloc(1, sizeof(*c) + m->nactions * m->ncodes * sizeof(c->requests[0]));

	if (c)
		c->m = m;
	return c;
}

/* A thread ended: its block waits for the next thread (the counts stay). */
static void fs_counters_release(void *p)
{
	struct fs_counters *c = p;
	struct fs_metrics *m = c->m;

	pthread_mutex_lock(&m->lock);
	c->in_use = false;
	pthread_mutex_unlock(&m->lock);
}

int fs_metrics_init(struct fs_metrics *m, const struct fs_options *opt)
{
	memset(m, 0, sizeof(*m));
	m->nactions = api_action_count();
	m->ncodes = (size_t)(KMS__E_END - KMS__E_FIRST); /* success, then every error */
	m->start_mono_ms = kms_time_mono_ms();
	m->version = opt->version ? opt->version : "unknown";
	m->has_group = opt->metrics_group_set;
	m->group = opt->metrics_group;
	m->fallback = fs_counters_new(m);
	if (!m->fallback)
		return KMS_E_NOMEM;
	if (pthread_key_create(&m->key, fs_counters_release) != 0) {
		free(m->fallback);
		m->fallback = NULL;
		return KMS_E_NOMEM;
	}
	pthread_mutex_init(&m->lock, NULL);
	return 0;
}

void fs_metrics_free(struct fs_metrics *m)
{
	if (!m->fallback)
		return;
	pthread_key_delete(m->key); /* no thread's destructor runs after this */
	while (m->blocks) {
		struct fs_counters *next = m->blocks->next;

		free(m->blocks);
		m->blocks = next;
	}
	free(m->fallback);
	m->fallback = NULL;
	pthread_mutex_destroy(&m->lock);
}

/* The calling thread's block: its own, a free one, a new one, or (out of memory) the shared
 * fallback (*shared set). */
static struct fs_counters *fs_counters_mine(struct fs_metrics *m, bool *shared)
{
	struct fs_counters *c = pthread_getspecific(m->key);

	*shared = false;
	if (c)
		return c;
	pthread_mutex_lock(&m->lock);
	for (c = m->blocks; c && c->in_use; c = c->next)
		;
	if (!c && (c = fs_counters_new(m)) != NULL) {
		c->next = m->blocks;
		m->blocks = c;
	}
	if (c && pthread_setspecific(m->key, c) == 0)
		c->in_use = true;
	else
		c = NULL;
	pthread_mutex_unlock(&m->lock);
	if (c)
		return c;
	*shared = true;
	return m->fallback;
}

static void fs_add(uint64_t *c, uint64_t n, bool shared)
{
	if (shared)
		__atomic_add_fetch(c, n, __ATOMIC_RELAXED);
	else /* one writer: no read-modify-write across threads needed */
		__atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

static uint64_t fs_get(const uint64_t *c)
{
	return __atomic_load_n(c, __ATOMIC_RELAXED);
}

void fs_metrics_count(struct fs *fs, uint8_t action, int err, int64_t start_ns, size_t req_len,
		      size_t resp_len)
{
	struct fs_metrics *m = &fs->metrics;
	int64_t ns = kms_time_mono_ns() - start_ns;
	size_t code = 0, b = 0;
	bool shared;
	struct fs_counters *c = fs_counters_mine(m, &shared);

	if (err < 0)
		code = err > KMS__E_FIRST && err < KMS__E_END
			       ? (size_t)(err - KMS__E_FIRST)
			       : (size_t)(KMS_E_INTERNAL - KMS__E_FIRST);
	if (action < m->nactions)
		fs_add(&c->requests[action * m->ncodes + code], 1, shared);
	while (b < FS_LATENCY_BUCKETS && ns > fs_latency_bounds_ns[b])
		b++;
	fs_add(&c->latency[b], 1, shared);
	fs_add(&c->latency_ns, ns > 0 ? (uint64_t)ns : 0, shared);
	fs_add(&c->request_bytes, req_len, shared);
	fs_add(&c->response_bytes, resp_len, shared);
}

/* Every block's counters added into sum (a block of the same shape). Caller holds m->lock. */
static void fs_counters_sum(const struct fs_metrics *m, const struct fs_counters *c,
			    struct fs_counters *sum)
{
	for (size_t i = 0; i < m->nactions * m->ncodes; i++)
		sum->requests[i] += fs_get(&c->requests[i]);
	for (size_t b = 0; b <= FS_LATENCY_BUCKETS; b++)
		sum->latency[b] += fs_get(&c->latency[b]);
	sum->latency_ns += fs_get(&c->latency_ns);
	sum->request_bytes += fs_get(&c->request_bytes);
	sum->response_bytes += fs_get(&c->response_bytes);
}

static struct fs_counters *fs_counters_total(struct fs_metrics *m)
{
	struct fs_counters *sum = fs_counters_new(m);

	if (!sum)
		return NULL;
	pthread_mutex_lock(&m->lock);
	fs_counters_sum(m, m->fallback, sum);
	for (const struct fs_counters *c = m->blocks; c; c = c->next)
		fs_counters_sum(m, c, sum);
	pthread_mutex_unlock(&m->lock);
	return sum;
}

bool fs_metrics_may_read(fuse_req_t req)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	const struct fs_metrics *m = &fs_from_req(req)->metrics;
	gid_t gids[FS_MAX_GROUPS + 1];
	size_t n;

	if (ctx->uid == 0)
		return true;
	if (!m->has_group)
		return false;
	n = fs_groups(req, ctx->gid, gids);
	for (size_t i = 0; i < n; i++)
		if (gids[i] == m->group)
			return true;
	return false;
}

void fs_info_stat(const struct fs *fs, struct stat *st)
{
	st->st_mode = S_IFREG | (fs->metrics.has_group ? 0440 : 0400);
	st->st_uid = 0;
	st->st_gid = fs->metrics.has_group ? fs->metrics.group : 0;
	st->st_nlink = 1;
	st->st_size = FS_INFO_SIZE;
}

/* The counters of each action: "ok" first (also when 0: every action is listed), then each error
 * code seen (several internal errors share one API code: summed). */
static int fs_snapshot_rows(const struct fs_metrics *m, const struct fs_counters *t,
			    struct fs_metrics_snapshot *s)
{
	s->rows = calloc(m->nactions * m->ncodes, sizeof(*s->rows));
	if (!s->rows)
		return KMS_E_NOMEM;
	for (size_t a = 0; a < m->nactions; a++) {
		const uint64_t *n = &t->requests[a * m->ncodes];
		size_t first = s->nrows;

		s->rows[s->nrows++] =
			(struct fs_metrics_row){ api_action_at(a)->name, "ok", fs_get(&n[0]) };
		for (size_t c = 1; c < m->ncodes; c++) {
			const char *code = kms_err_info(KMS__E_FIRST + (int)c)->code;
			uint64_t v = fs_get(&n[c]);
			size_t r = first + 1;

			if (!v)
				continue;
			while (r < s->nrows && strcmp(s->rows[r].code, code) != 0)
				r++;
			if (r == s->nrows)
				s->rows[s->nrows++] =
					(struct fs_metrics_row){ s->rows[first].action, code, 0 };
			s->rows[r].n += v;
		}
	}
	return 0;
}

static int fs_snapshot_take(struct fs *fs, struct fs_metrics_snapshot *s)
{
	struct fs_metrics *m = &fs->metrics;
	struct fs_counters *t;
	struct store_stats st;
	uint64_t sum = 0;
	int r;

	memset(s, 0, sizeof(*s));
	t = fs_counters_total(m);
	if (!t)
		return KMS_E_NOMEM;
	s->version = m->version;
	s->start_time_s = (int64_t)fs->mount_time;
	s->uptime_s = (double)(kms_time_mono_ms() - m->start_mono_ms) / 1000.0;
	for (size_t b = 0; b <= FS_LATENCY_BUCKETS; b++) {
		sum += t->latency[b];
		s->latency[b] = sum;
	}
	s->latency_sum_s = (double)t->latency_ns / 1e9;
	s->request_bytes = t->request_bytes;
	s->response_bytes = t->response_bytes;
	for (size_t p = 0; p < FS_POOLS; p++) {
		s->pool_used[p] = __atomic_load_n(&fs->pool_used[p], __ATOMIC_RELAXED);
		s->pool_limit[p] = fs_pool_limit((enum fs_pool)p);
	}
	store_stats_get(fs->store, &st);
	s->cache_entries = st.cached_keys;
	s->cache_limit = st.cache_limit;
	s->cache_hits = st.cache_hits;
	s->cache_misses = st.cache_misses;
	s->cache_evictions = st.cache_evictions;
	s->store_errors = st.errors;
	s->store_reconnects = st.reconnects;
	s->store_online = st.online;
	s->store_fresh_age_ms = st.fresh_age_ms;
	s->fuse_uring = fs_uring_state(NULL) == FS_URING_RUNNING;
	s->fuse_uring_requests = fs_uring_requests();
	r = fs_snapshot_rows(m, t, s);
	free(t);
	return r;
}

/* ------------------------------------------------------------------ formatting (pure) */

/* Output that remembers its first error: the formatters write on and return it once. */
struct fs_out {
	struct kms_buf *b;
	int r;
};

static void fs_put(struct fs_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fs_put(struct fs_out *o, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	if (o->r < 0)
		return;
	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	o->r = n < 0 || (size_t)n >= sizeof(line) ? KMS_E_INTERNAL
						  : kms_buf_append(o->b, line, (size_t)n);
}

/* The version as a label value or JSON string: no quote, backslash or control character. */
static void fs_safe_text(const char *in, char *out, size_t cap)
{
	size_t o = 0;

	for (; *in && o + 1 < cap; in++)
		out[o++] = (*in > ' ' && *in < 127 && *in != '"' && *in != '\\') ? *in : '_';
	out[o] = 0;
}

struct fs_gauge {
	enum fs_pool pool;
	const char *name, *help;
};

static const struct fs_gauge fs_pool_gauges[FS_POOLS] = {
	{ FS_POOL_HANDLES, "open_handles", "Open action file handles." },
	{ FS_POOL_REQUEST_BYTES, "buffered_request_bytes",
	  "Request bytes written to handles and not run yet." },
	{ FS_POOL_HELD_BYTES, "held_answer_bytes",
	  "Bytes held for answers by handles and mailboxes (buffer capacity)." },
	{ FS_POOL_MAILBOXES, "mailboxes",
	  "Answers held for a later read of the same file by the same uid (echo >f; cat f)." },
	{ FS_POOL_BINDINGS, "token_bindings", "Token bindings (uid, mount namespace, project)." },
};

static void fs_head(struct fs_out *o, const char *name, const char *type, const char *help)
{
	fs_put(o, "# HELP kmsfs_%s %s\n# TYPE kmsfs_%s %s\n", name, help, name, type);
}

static void fs_one(struct fs_out *o, const char *name, const char *type, const char *help,
		   uint64_t v)
{
	fs_head(o, name, type, help);
	fs_put(o, "kmsfs_%s %llu\n", name, (unsigned long long)v);
}

static void fs_text_requests(const struct fs_metrics_snapshot *s, struct fs_out *o)
{
	fs_head(o, "requests_total", "counter",
		"Requests run, by action and result: ok or the KMS error code.");
	for (size_t i = 0; i < s->nrows; i++)
		fs_put(o, "kmsfs_requests_total{action=\"%s\",code=\"%s\"} %llu\n",
		       s->rows[i].action, s->rows[i].code, (unsigned long long)s->rows[i].n);
	fs_head(o, "request_duration_seconds", "histogram",
		"Time a request took to run, from its first read or close to its answer.");
	for (size_t i = 0; i < FS_LATENCY_BUCKETS; i++)
		fs_put(o, "kmsfs_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
		       (double)fs_latency_bounds_ns[i] / 1e9, (unsigned long long)s->latency[i]);
	fs_put(o,
	       "kmsfs_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
	       "kmsfs_request_duration_seconds_sum %.9f\n"
	       "kmsfs_request_duration_seconds_count %llu\n",
	       (unsigned long long)s->latency[FS_LATENCY_BUCKETS], s->latency_sum_s,
	       (unsigned long long)s->latency[FS_LATENCY_BUCKETS]);
	fs_one(o, "request_bytes_total", "counter", "Bytes of requests run.", s->request_bytes);
	fs_one(o, "response_bytes_total", "counter", "Bytes of answers given.", s->response_bytes);
}

static void fs_text_pools(const struct fs_metrics_snapshot *s, struct fs_out *o)
{
	char name[64], help[160];

	for (size_t i = 0; i < FS_POOLS; i++) {
		const struct fs_gauge *g = &fs_pool_gauges[i];

		fs_one(o, g->name, "gauge", g->help, s->pool_used[g->pool]);
		snprintf(name, sizeof(name), "%s_limit", g->name);
		snprintf(help, sizeof(help), "The daemon's bound of kmsfs_%s (a uid may use %u%%).",
			 g->name, 100u / FS_UID_SHARE_DIVISOR);
		fs_one(o, name, "gauge", help, s->pool_limit[g->pool]);
	}
}

int fs_metrics_format_text(const struct fs_metrics_snapshot *s, struct kms_buf *b)
{
	struct fs_out o = { b, 0 };
	char version[64];

	fs_safe_text(s->version, version, sizeof(version));
	fs_head(&o, "build_info", "gauge", "The version of kmsfs serving this mount (always 1).");
	fs_put(&o, "kmsfs_build_info{version=\"%s\"} 1\n", version);
	fs_one(&o, "start_time_seconds", "gauge", "When the daemon started serving (Unix time).",
	       (uint64_t)(s->start_time_s > 0 ? s->start_time_s : 0));
	fs_head(&o, "uptime_seconds", "gauge", "Seconds since the daemon started.");
	fs_put(&o, "kmsfs_uptime_seconds %.3f\n", s->uptime_s);
	fs_text_requests(s, &o);
	fs_text_pools(s, &o);
	fs_one(&o, "key_cache_entries", "gauge", "Keys in the store's cache.", s->cache_entries);
	fs_one(&o, "key_cache_limit", "gauge", "The bound of kmsfs_key_cache_entries.",
	       s->cache_limit);
	fs_one(&o, "key_cache_hits_total", "counter", "Key look-ups the cache answered.",
	       s->cache_hits);
	fs_one(&o, "key_cache_misses_total", "counter", "Key look-ups that read the database.",
	       s->cache_misses);
	fs_one(&o, "key_cache_evictions_total", "counter",
	       "Keys dropped from the cache to stay within its bound.", s->cache_evictions);
	fs_one(&o, "store_errors_total", "counter",
	       "Key loads the store's backend failed (I/O, damage; not: no such key).",
	       s->store_errors);
	fs_one(&o, "store_reconnects_total", "counter",
	       "Reconnections of a network store backend (0 with SQLite).", s->store_reconnects);
	fs_one(&o, "store_online", "gauge",
	       "1 if the store's backend answered its last refresh (always 1 with SQLite).",
	       s->store_online ? 1 : 0);
	fs_head(&o, "store_fresh_age_seconds", "gauge",
		"Seconds since the store last refreshed from its backend (0 with SQLite).");
	fs_put(&o, "kmsfs_store_fresh_age_seconds %.3f\n",
	       (double)(s->store_fresh_age_ms > 0 ? s->store_fresh_age_ms : 0) / 1000.0);
	fs_one(&o, "fuse_uring", "gauge",
	       "1 if the kernel hands requests over io_uring (-o io_uring), 0: /dev/fuse only.",
	       s->fuse_uring ? 1 : 0);
	fs_one(&o, "fuse_uring_requests_total", "counter",
	       "FUSE requests answered over io_uring since the mount.", s->fuse_uring_requests);
	return o.r;
}

static void fs_json_requests(const struct fs_metrics_snapshot *s, struct fs_out *o)
{
	uint64_t total = 0, errors = 0;

	for (size_t i = 0; i < s->nrows; i++) {
		total += s->rows[i].n;
		if (strcmp(s->rows[i].code, "ok") != 0)
			errors += s->rows[i].n;
	}
	fs_put(o, "\"requests\":{\"total\":%llu,\"errors\":%llu,\"by_action\":{",
	       (unsigned long long)total, (unsigned long long)errors);
	/* Rows come grouped by action: one object per action, its codes inside. */
	for (size_t i = 0; i < s->nrows; i++) {
		bool first = i == 0 || strcmp(s->rows[i - 1].action, s->rows[i].action) != 0;
		bool last =
			i + 1 == s->nrows || strcmp(s->rows[i + 1].action, s->rows[i].action) != 0;

		if (first)
			fs_put(o, "%s\"%s\":{", i ? "," : "", s->rows[i].action);
		fs_put(o, "%s\"%s\":%llu%s", first ? "" : ",", s->rows[i].code,
		       (unsigned long long)s->rows[i].n, last ? "}" : "");
	}
	fs_put(o, "}},\"request_duration_seconds\":{\"count\":%llu,\"sum\":%.9f,\"buckets\":{",
	       (unsigned long long)s->latency[FS_LATENCY_BUCKETS], s->latency_sum_s);
	for (size_t i = 0; i < FS_LATENCY_BUCKETS; i++)
		fs_put(o, "\"%g\":%llu,", (double)fs_latency_bounds_ns[i] / 1e9,
		       (unsigned long long)s->latency[i]);
	fs_put(o, "\"+Inf\":%llu}},\"request_bytes\":%llu,\"response_bytes\":%llu",
	       (unsigned long long)s->latency[FS_LATENCY_BUCKETS],
	       (unsigned long long)s->request_bytes, (unsigned long long)s->response_bytes);
}

int fs_metrics_format_json(const struct fs_metrics_snapshot *s, struct kms_buf *b)
{
	struct fs_out o = { b, 0 };
	char version[64];

	fs_safe_text(s->version, version, sizeof(version));
	fs_put(&o,
	       "{\"serving\":true,\"version\":\"%s\",\"start_time_seconds\":%lld,"
	       "\"uptime_seconds\":%.3f,",
	       version, (long long)s->start_time_s, s->uptime_s);
	fs_json_requests(s, &o);
	for (size_t i = 0; i < FS_POOLS; i++)
		fs_put(&o, ",\"%s\":%zu", fs_pool_gauges[i].name,
		       s->pool_used[fs_pool_gauges[i].pool]);
	for (size_t i = 0; i < FS_POOLS; i++)
		fs_put(&o, "%s\"%s\":%zu%s", i ? "," : ",\"limits\":{", fs_pool_gauges[i].name,
		       s->pool_limit[fs_pool_gauges[i].pool], i + 1 == FS_POOLS ? "}" : "");
	fs_put(&o,
	       ",\"key_cache\":{\"entries\":%zu,\"limit\":%zu,\"hits\":%llu,\"misses\":%llu,"
	       "\"evictions\":%llu},",
	       s->cache_entries, s->cache_limit, (unsigned long long)s->cache_hits,
	       (unsigned long long)s->cache_misses, (unsigned long long)s->cache_evictions);
	fs_put(&o, "\"fuse\":{\"io_uring\":%s,\"io_uring_requests\":%llu},",
	       s->fuse_uring ? "true" : "false", (unsigned long long)s->fuse_uring_requests);
	fs_put(&o,
	       "\"store\":{\"errors\":%llu,\"reconnects\":%llu,\"online\":%s,"
	       "\"fresh_age_ms\":%lld}}\n",
	       (unsigned long long)s->store_errors, (unsigned long long)s->store_reconnects,
	       s->store_online ? "true" : "false",
	       (long long)(s->store_fresh_age_ms > 0 ? s->store_fresh_age_ms : 0));
	return o.r;
}

/* ------------------------------------------------------------------ the files */

/* One open .metrics or .status: its snapshot, formatted. Held while a read replies: the caller
 * may close, and RELEASE run on another worker, before that worker has sent the reply. */
struct fs_info_handle {
	pthread_mutex_t lock;
	struct kms_buf text;
};

static struct fs_info_handle *fs_info_of(struct fuse_file_info *fi)
{
	return (struct fs_info_handle *)(uintptr_t)fi->fh;
}

static void fs_info_free(struct fs_info_handle *h)
{
	kms_buf_free(&h->text);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

static int fs_info_fill(struct fs *fs, uint8_t info, struct kms_buf *out)
{
	struct fs_metrics_snapshot s;
	int r = fs_snapshot_take(fs, &s);

	if (r == 0)
		r = info == FS_INFO_STATUS ? fs_metrics_format_json(&s, out)
					   : fs_metrics_format_text(&s, out);
	free(s.rows);
	return r;
}

void fs_info_open(fuse_req_t req, const struct fs_node *n, struct fuse_file_info *fi)
{
	struct fs_info_handle *h;
	int r;

	/* Read-only; and (without default_permissions too) only for root and the group. */
	if ((fi->flags & O_ACCMODE) != O_RDONLY || !fs_metrics_may_read(req)) {
		fuse_reply_err(req, EACCES);
		return;
	}
	h = calloc(1, sizeof(*h));
	if (!h) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_init(&h->lock, NULL);
	kms_buf_init(&h->text, FS_INFO_MAX_BYTES, false);
	r = fs_info_fill(fs_from_req(req), n->action, &h->text);
	if (r < 0) {
		fs_info_free(h);
		fuse_reply_err(req, kms_err_errno(r));
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)h;
	fi->direct_io = 1; /* a snapshot per open, never the page cache's copy */
	fi->keep_cache = 0;
	fi->noflush = 1;
	if (fuse_reply_open(req, fi) == -ENOENT)
		fs_info_free(h); /* the open was interrupted: no release will come */
}

void fs_info_read(fuse_req_t req, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct fs_info_handle *h = fs_info_of(fi);
	size_t pos = off < 0 ? 0 : (size_t)off;

	/* Reads for the page cache (sendfile, splice, mmap) are refused as for the action files
	 * (fs_op_read): readers fall back to read(). */
	if (fi->lock_owner == 0) {
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	pthread_mutex_lock(&h->lock);
	if (pos >= h->text.len)
		fuse_reply_buf(req, NULL, 0);
	else
		fuse_reply_buf(req, (const char *)h->text.data + pos,
			       size < h->text.len - pos ? size : h->text.len - pos);
	pthread_mutex_unlock(&h->lock);
}

void fs_info_release(fuse_req_t req, struct fuse_file_info *fi)
{
	struct fs_info_handle *h = fs_info_of(fi);

	pthread_mutex_lock(&h->lock); /* wait for a read still replying */
	pthread_mutex_unlock(&h->lock);
	fs_info_free(h);
	fuse_reply_err(req, 0);
}
