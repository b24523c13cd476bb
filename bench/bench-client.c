/* bench-client - load generator for bench/run: file transactions against a kmsfs-like mount.
 *
 *   bench-client [-m rdwr|shell|batch] [--keep] [-t THREADS] [-d SECONDS | -n TOTAL]
 *                [-w WARMUP] [-r REQUEST [-u]] [-b LINES] [-k] [-p DAEMON_PID] FILE...
 *
 * rdwr  : same-handle transactions on ONE shared file (the first FILE), every thread:
 *         open(O_RDWR), write(request), pread(0), close.
 * --keep (mode keep): kept-open handles (docs/using.md, "Kept-open handles") on ONE shared file
 *         (the first FILE): every thread opens its own handle once (O_RDWR), then loops
 *         pwrite(request, 0), pread(0) on it; the handle is closed after the run. A transaction
 *         is one write and one read.
 * shell : the two-open pattern, thread i on FILE[i % nfiles] (give one file per thread: the
 *         mailbox is per (file, uid)): open(O_WRONLY|O_TRUNC), write, close; open(O_RDONLY),
 *         read, close.
 * batch : open(O_RDWR), write LINES lines of REQUEST, read until LINES response lines, close;
 *         on the first FILE by every thread. Counts response lines (keys) per second.
 *
 * Every latency is recorded (one transaction = one batch in batch mode). Every response is
 * checked: non-empty, starts with '{', ends with '\n', and with -k (kmsfs) holds no "error";
 * every close() must succeed. Any bad response makes the exit status 1. Output: one line of
 * key=value pairs; p50/p99 are nearest-rank percentiles.
 * -d: warm up for -w seconds (default 0.3), then measure for -d seconds (default 3).
 * -n: exactly TOTAL transactions, no warm-up (used to age the daemon for the memory figures).
 * -p: also report the daemon's CPU time per transaction (from /proc/PID/stat) and foreign_cpu:
 *     the CPUs kept busy meanwhile by anything but this client and that daemon.
 * -u: (rdwr) a request that differs every time: the first "XXXXXXXX" in REQUEST is replaced by a
 *     counter in 8 hex digits, one number per transaction of this process (create-key with
 *     {"key_alias":"a-XXXXXXXX"}: every alias is new; give each process its own prefix).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

enum mode { MODE_RDWR, MODE_SHELL, MODE_BATCH, MODE_KEEP };
static const char *const mode_names[] = { "rdwr", "shell", "batch", "keep" };
enum phase { PHASE_WARMUP, PHASE_MEASURE, PHASE_STOP };

#define RDWR_BUF  (64u * 1024u)
#define BATCH_BUF (8u * 1024u * 1024u)

static struct {
	enum mode mode;
	unsigned threads;
	double duration, warmup;
	long total;
	const char *req;
	size_t req_len;
	char *batch_req;
	size_t batch_len;
	unsigned batch_lines;
	bool kms;
	int daemon_pid;
	char **files;
	int nfiles;
	long unique_at; /* -u: offset of "XXXXXXXX" in req, else -1 */
} cfg = { .mode = MODE_RDWR,
	  .threads = 1,
	  .duration = 3,
	  .warmup = 0.3,
	  .req = "{}",
	  .batch_lines = 1000,
	  .unique_at = -1 };

static _Atomic int phase = PHASE_WARMUP;
static _Atomic long issued;
static _Atomic unsigned long unique_next;
static _Atomic long bad_total;
static _Atomic int bad_printed;

struct worker {
	pthread_t th;
	unsigned id;
	uint32_t *lat; /* ns, clamped */
	size_t n, cap;
	long items; /* keys (batch) or transactions */
	char *buf;
	size_t bufcap;
	char *req; /* -u: this thread's copy of the request */
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void report_bad(const char *what, const char *path, const char *buf, ssize_t n, int err)
{
	atomic_fetch_add(&bad_total, 1);
	if (atomic_fetch_add(&bad_printed, 1) < 5)
		fprintf(stderr, "bench-client: bad response (%s) on %s: errno=%d len=%zd: %.*s\n",
			what, path, err, n, n > 0 ? (int)(n < 200 ? n : 200) : 0, n > 0 ? buf : "");
}

/* A complete, valid one-line response? */
static bool check_line(const char *p, size_t n)
{
	if (n == 0 || p[0] != '{')
		return false;
	if (cfg.kms && memmem(p, n, "\"error\"", 7))
		return false;
	return true;
}

/* Read a response from fd at file offset off (pread) or the current offset (off < 0), until it
 * ends with '\n' (one round trip when it fits) or EOF. */
static ssize_t read_response(int fd, char *buf, size_t cap, off_t off)
{
	size_t got = 0;

	while (got < cap) {
		ssize_t r = off >= 0 ? pread(fd, buf + got, cap - got, off + (off_t)got)
				     : read(fd, buf + got, cap - got);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (r == 0)
			break;
		got += (size_t)r;
		if (buf[got - 1] == '\n')
			break;
	}
	return (ssize_t)got;
}

/* open(path, flags) and write the whole of buf: the fd, or -1 (reported as bad). */
static int open_write(const char *path, int flags, const char *buf, size_t len, const char *what)
{
	int fd = open(path, flags);

	if (fd < 0) {
		report_bad(what, path, NULL, -1, errno);
		return -1;
	}
	if (write(fd, buf, len) != (ssize_t)len) {
		report_bad("write", path, NULL, -1, errno);
		close(fd);
		return -1;
	}
	return fd;
}

/* close(fd), which must succeed (kmsfs reports a failed request there). */
static bool close_ok(int fd, const char *what, const char *path)
{
	if (close(fd) == 0)
		return true;
	report_bad(what, path, NULL, -1, errno);
	return false;
}

/* Read one response line from fd (pread at off, or read when off < 0), close fd, check both. */
static bool read_close(struct worker *w, int fd, off_t off, const char *what, const char *path)
{
	ssize_t n = read_response(fd, w->buf, w->bufcap, off);
	int err = n < 0 ? errno : 0;

	if (n <= 0 || w->buf[n - 1] != '\n' || !check_line(w->buf, (size_t)n)) {
		close(fd);
		report_bad(what, path, w->buf, n, err);
		return false;
	}
	return close_ok(fd, "close", path);
}

/* -u: the request with this transaction's number in place of XXXXXXXX (in w->req). */
static const char *unique_req(struct worker *w)
{
	char num[9];

	if (cfg.unique_at < 0)
		return cfg.req;
	snprintf(num, sizeof(num), "%08lx", atomic_fetch_add(&unique_next, 1) & 0xfffffffful);
	memcpy(w->req + cfg.unique_at, num, 8);
	return w->req;
}

static bool tx_rdwr(struct worker *w, const char *path)
{
	int fd = open_write(path, O_RDWR, unique_req(w), cfg.req_len, "open");

	return fd >= 0 && read_close(w, fd, 0, "rdwr", path);
}

/* One request on a kept-open handle: the next write starts it, the read of its answer ends it. */
static bool tx_keep(struct worker *w, int fd, const char *path)
{
	ssize_t n;

	if (pwrite(fd, cfg.req, cfg.req_len, 0) != (ssize_t)cfg.req_len) {
		report_bad("write", path, NULL, -1, errno);
		return false;
	}
	n = read_response(fd, w->buf, w->bufcap, 0);
	if (n <= 0 || w->buf[n - 1] != '\n' || !check_line(w->buf, (size_t)n)) {
		report_bad("keep", path, w->buf, n, n < 0 ? errno : 0);
		return false;
	}
	return true;
}

static bool tx_shell(struct worker *w, const char *path)
{
	int fd = open_write(path, O_WRONLY | O_TRUNC, cfg.req, cfg.req_len, "open-w");

	if (fd < 0 || !close_ok(fd, "close-w", path))
		return false;
	fd = open(path, O_RDONLY);
	if (fd < 0) {
		report_bad("open-r", path, NULL, -1, errno);
		return false;
	}
	return read_close(w, fd, -1, "shell", path);
}

/* Returns the number of good response lines. */
static long tx_batch(struct worker *w, const char *path)
{
	size_t got = 0, lines = 0, pos = 0;
	long good = 0;
	int fd = open_write(path, O_RDWR, cfg.batch_req, cfg.batch_len, "open");

	if (fd < 0)
		return 0;
	while (lines < cfg.batch_lines && got < w->bufcap) {
		ssize_t r = pread(fd, w->buf + got, w->bufcap - got, (off_t)got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		for (size_t i = got; i < got + (size_t)r; i++)
			if (w->buf[i] == '\n')
				lines++;
		got += (size_t)r;
	}
	if (!close_ok(fd, "close", path))
		return 0;
	while (pos < got) {
		char *nl = memchr(w->buf + pos, '\n', got - pos);
		size_t n = nl ? (size_t)(nl - (w->buf + pos)) : got - pos;

		if (nl && check_line(w->buf + pos, n))
			good++;
		else
			report_bad("batch line", path, w->buf + pos, (ssize_t)n, 0);
		pos += n + 1;
	}
	if (lines != cfg.batch_lines)
		report_bad("batch count", path, w->buf, (ssize_t)got, 0);
	return good;
}

static void record(struct worker *w, uint64_t ns)
{
	if (w->n == w->cap) {
		size_t ncap = w->cap ? w->cap * 2 : 65536;
		uint32_t *p = realloc(w->lat, ncap * sizeof(*p));

		if (!p) { /* a lost sample would make tx and tx_s wrong */
			fprintf(stderr, "bench-client: out of memory\n");
			exit(1);
		}
		w->lat = p;
		w->cap = ncap;
	}
	w->lat[w->n++] = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	const char *path =
		cfg.mode == MODE_SHELL ? cfg.files[w->id % (unsigned)cfg.nfiles] : cfg.files[0];
	int fd = -1;

	/* --keep: the thread's handle, opened once; a thread that cannot open it does nothing. */
	if (cfg.mode == MODE_KEEP) {
		fd = open(path, O_RDWR);
		if (fd < 0) {
			report_bad("open", path, NULL, -1, errno);
			return NULL;
		}
	}
	for (;;) {
		int ph = atomic_load_explicit(&phase, memory_order_relaxed);
		bool rec = ph == PHASE_MEASURE; /* -n: measuring from the start */
		uint64_t t0, t1;
		long items = 1;
		bool ok = true;

		if (ph == PHASE_STOP)
			break;
		if (cfg.total > 0 && atomic_fetch_add(&issued, 1) >= cfg.total)
			break;
		t0 = now_ns();
		switch (cfg.mode) {
		case MODE_RDWR:
			ok = tx_rdwr(w, path);
			break;
		case MODE_SHELL:
			ok = tx_shell(w, path);
			break;
		case MODE_BATCH:
			items = tx_batch(w, path);
			break;
		case MODE_KEEP:
			ok = tx_keep(w, fd, path);
			break;
		}
		t1 = now_ns();
		if (rec) {
			record(w, t1 - t0);
			if (ok)
				w->items += items;
		}
	}
	if (fd >= 0)
		close_ok(fd, "close", path);
	return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* The p-th percentile (nearest rank: the ceil(n * p / 100)-th smallest) of n sorted ns, in µs. */
static double percentile_us(const uint32_t *sorted, size_t n, unsigned p)
{
	return n ? sorted[(n * p + 99) / 100 - 1] / 1e3 : 0;
}

/* The start of a /proc file as a string; false if it cannot be read. */
static bool read_proc(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return false;
	n = read(fd, buf, cap - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = 0;
	return true;
}

/* utime + stime of a process in clock ticks, or -1. */
static long long proc_cpu_ticks(int pid)
{
	char path[64], buf[4096], *p;
	unsigned long long ut, st;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if (!read_proc(path, buf, sizeof(buf)))
		return -1;
	p = strrchr(buf, ')');
	/* After ") ": state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt
	 * utime stime: utime is the 11th field after the state. */
	if (!p ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (long long)(ut + st);
}

/* Busy CPU time of the whole machine (user+nice+system+irq+softirq+steal), in clock ticks. */
static long long machine_busy_ticks(void)
{
	unsigned long long v[8] = { 0 };
	char buf[512];

	if (!read_proc("/proc/stat", buf, sizeof(buf)) ||
	    sscanf(buf, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
		   &v[4], &v[5], &v[6], &v[7]) != 8)
		return -1;
	return (long long)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]);
}

static double self_cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec / 1e6;
}

static void sleep_s(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* CPU time of the daemon (-p), of this process and of the whole machine, at time t. */
struct sample {
	long long daemon_ticks, busy_ticks; /* -1: unknown */
	double self_s;
	uint64_t t;
};

static void take_sample(struct sample *s)
{
	s->daemon_ticks = cfg.daemon_pid ? proc_cpu_ticks(cfg.daemon_pid) : -1;
	s->self_s = self_cpu_s();
	s->busy_ticks = machine_busy_ticks();
	s->t = now_ns();
}

static void usage(void)
{
	fprintf(stderr, "usage: bench-client [-m rdwr|shell|batch|keep] [--keep] [-t THREADS] [-d "
			"SECONDS | -n TOTAL] [-w WARMUP] [-r REQUEST] [-u] [-b LINES] [-k] [-p "
			"PID] FILE...\n");
	exit(2);
}

static enum mode parse_mode(const char *name)
{
	for (size_t i = 0; i < sizeof(mode_names) / sizeof(mode_names[0]); i++)
		if (strcmp(name, mode_names[i]) == 0)
			return (enum mode)i;
	usage();
	return MODE_RDWR;
}

int main(int argc, char **argv)
{
	struct worker *w;
	struct sample s0 = { 0 }, s1 = { 0 };
	double secs, tps, self_s, hz = (double)sysconf(_SC_CLK_TCK);
	size_t nlat = 0, k = 0;
	uint32_t *all;
	long long daemon_ticks = -1;
	static const struct option longopts[] = { { "keep", no_argument, NULL, 'K' },
						  { NULL, 0, NULL, 0 } };
	long items = 0, tx;
	bool keep = false;
	int c;

	while ((c = getopt_long(argc, argv, "m:t:d:n:w:r:b:kp:u", longopts, NULL)) != -1) {
		switch (c) {
		case 'K':
			keep = true;
			break;
		case 'm':
			cfg.mode = parse_mode(optarg);
			break;
		case 't':
			cfg.threads = (unsigned)atoi(optarg);
			break;
		case 'd':
			cfg.duration = atof(optarg);
			break;
		case 'n':
			cfg.total = atol(optarg);
			break;
		case 'w':
			cfg.warmup = atof(optarg);
			break;
		case 'r':
			cfg.req = optarg;
			break;
		case 'b':
			cfg.batch_lines = (unsigned)atoi(optarg);
			break;
		case 'k':
			cfg.kms = true;
			break;
		case 'p':
			cfg.daemon_pid = atoi(optarg);
			break;
		case 'u':
			cfg.unique_at = 0;
			break;
		default:
			usage();
		}
	}
	/* --keep is the rdwr transaction on a handle kept by each thread. */
	if (keep && cfg.mode != MODE_RDWR && cfg.mode != MODE_KEEP)
		usage();
	if (keep)
		cfg.mode = MODE_KEEP;
	if (optind >= argc || cfg.threads < 1 || cfg.threads > 1024 || cfg.batch_lines < 1 ||
	    (cfg.total <= 0 && cfg.duration <= 0))
		usage();
	cfg.files = argv + optind;
	cfg.nfiles = argc - optind;
	cfg.req_len = strlen(cfg.req);
	if (cfg.unique_at == 0) {
		const char *x = strstr(cfg.req, "XXXXXXXX");

		if (!x || cfg.mode != MODE_RDWR)
			usage();
		cfg.unique_at = x - cfg.req;
	}
	if (cfg.mode == MODE_BATCH) {
		cfg.batch_len = (cfg.req_len + 1) * cfg.batch_lines;
		cfg.batch_req = malloc(cfg.batch_len);
		if (!cfg.batch_req)
			return 1;
		for (unsigned i = 0; i < cfg.batch_lines; i++) {
			memcpy(cfg.batch_req + i * (cfg.req_len + 1), cfg.req, cfg.req_len);
			cfg.batch_req[i * (cfg.req_len + 1) + cfg.req_len] = '\n';
		}
	}
	w = calloc(cfg.threads, sizeof(*w));
	if (!w)
		return 1;
	for (unsigned i = 0; i < cfg.threads; i++) {
		w[i].id = i;
		w[i].bufcap = cfg.mode == MODE_BATCH ? BATCH_BUF : RDWR_BUF;
		w[i].buf = malloc(w[i].bufcap);
		w[i].req = strdup(cfg.req);
		if (!w[i].buf || !w[i].req) {
			fprintf(stderr, "bench-client: out of memory\n");
			exit(1);
		}
	}
	if (cfg.total > 0) { /* -n: every transaction counts, from the first */
		atomic_store(&phase, PHASE_MEASURE);
		take_sample(&s0);
	}
	for (unsigned i = 0; i < cfg.threads; i++)
		if (pthread_create(&w[i].th, NULL, worker_main, &w[i]) != 0) {
			fprintf(stderr, "bench-client: pthread_create failed\n");
			return 1;
		}
	if (cfg.total <= 0) {
		sleep_s(cfg.warmup);
		take_sample(&s0);
		atomic_store(&phase, PHASE_MEASURE);
		sleep_s(cfg.duration);
		atomic_store(&phase, PHASE_STOP);
		take_sample(&s1);
	}
	for (unsigned i = 0; i < cfg.threads; i++)
		pthread_join(w[i].th, NULL);
	if (cfg.total > 0)
		take_sample(&s1);
	for (unsigned i = 0; i < cfg.threads; i++) {
		nlat += w[i].n;
		items += w[i].items;
	}
	all = malloc((nlat ? nlat : 1) * sizeof(*all));
	if (!all) {
		fprintf(stderr, "bench-client: out of memory\n");
		exit(1);
	}
	for (unsigned i = 0; i < cfg.threads; i++) {
		if (w[i].n)
			memcpy(all + k, w[i].lat, w[i].n * sizeof(*all));
		k += w[i].n;
	}
	qsort(all, nlat, sizeof(*all), cmp_u32);
	tx = (long)nlat;
	secs = (double)(s1.t - s0.t) / 1e9;
	tps = secs > 0 ? (double)tx / secs : 0;
	printf("mode=%s threads=%u tx=%ld secs=%.3f tx_s=%.0f p50_us=%.1f p99_us=%.1f max_us=%.1f",
	       mode_names[cfg.mode], cfg.threads, tx, secs, tps, percentile_us(all, nlat, 50),
	       percentile_us(all, nlat, 99), percentile_us(all, nlat, 100));
	if (cfg.mode == MODE_BATCH)
		printf(" keys=%ld keys_s=%.0f", items, secs > 0 ? (double)items / secs : 0);
	self_s = s1.self_s - s0.self_s;
	printf(" client_cpu_us_tx=%.1f", tx ? self_s * 1e6 / (double)tx : 0);
	if (s0.daemon_ticks >= 0 && s1.daemon_ticks >= 0) {
		daemon_ticks = s1.daemon_ticks - s0.daemon_ticks;
		printf(" daemon_cpu_us_tx=%.1f",
		       tx ? (double)daemon_ticks * 1e6 / hz / (double)tx : 0);
	}
	/* CPUs busy with anything but this client and the daemon (other work on a shared machine). */
	if (daemon_ticks >= 0 && s0.busy_ticks >= 0 && s1.busy_ticks >= 0 && secs > 0)
		printf(" foreign_cpu=%.2f",
		       ((double)(s1.busy_ticks - s0.busy_ticks - daemon_ticks) / hz - self_s) /
			       secs);
	printf(" bad=%ld\n", atomic_load(&bad_total));
	for (unsigned i = 0; i < cfg.threads; i++) {
		free(w[i].lat);
		free(w[i].buf);
		free(w[i].req);
	}
	free(w);
	free(all);
	free(cfg.batch_req);
	return atomic_load(&bad_total) ? 1 : 0;
}
