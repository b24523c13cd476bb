/* populate - fill a key store with many real keys, fast, for bench/run's scale figures.
 *
 *   populate -s STATE_DIR [-b STORE] -n N [-p PROJECT] [-m FIRST] [-j THREADS] [-o IDS_FILE]
 *
 * Creates N keys through the store's public API (store_key_create: fresh material, sealed under
 * the state dir's root key, quota enforced, durable before the call returns), exactly as a
 * daemon's create-key does, so that a daemon mounted on the store afterwards serves them. FIRST
 * (default min(N, 10000)) of them go to PROJECT (default "p"), the rest to projects PROJECT-1,
 * PROJECT-2, ... of 1000 keys each. Why not all in one project: the quota check counts the keys
 * of the project in the same transaction as the insert (the count that keeps the rule under
 * concurrency), so filling one project costs O(n) per key and O(n²) in all (50,000 keys in one
 * project: 45 s; 1,000,000: hours), while projects of 1000 keep every key at the same small
 * cost. STORE is a store URI (kmsfs -o store=...; default SQLite in STATE_DIR), and the state
 * dir is made (with its root key) when it does not exist. THREADS (default 1) create keys of
 * different projects in parallel: nothing for SQLite (one writer), round trips overlap with
 * PostgreSQL. The ids of PROJECT's keys go to IDS_FILE, one a line (for requests that touch
 * them). Prints: keys=N projects=P secs=S keys_s=R
 *
 * It stays above the backend: the store seals, enforces and writes; no SQL, no backend ops.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/kms_limits.h"
#include "common/kms_secmem.h"
#include "core/kms_core.h"
#include "store/kms_store.h"

#define POP_PER_PROJECT 1000L
#define POP_SECURE_HEAP (64u * 1024u * 1024u) /* power of two; the tool's snapshots */
#define POP_KEY_CACHE	1024u		      /* the tool reads nothing back */

struct pop {
	struct store *s;
	const char *project;
	long n, first, nprojects;
	int threads;
	FILE *ids;
	pthread_mutex_t lock; /* ids, done, err */
	long done;
	int err;
};

struct pop_thread {
	struct pop *p;
	int index;
	pthread_t tid;
};

static double pop_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Project number i (0: the main one) and how many keys it gets. */
static long pop_project_keys(const struct pop *p, long i)
{
	long rest;

	if (i == 0)
		return p->first;
	rest = p->n - p->first - (i - 1) * POP_PER_PROJECT;
	return rest < POP_PER_PROJECT ? rest : POP_PER_PROJECT;
}

static int pop_fill_project(struct pop *p, long i)
{
	char project[KMS_MAX_PROJECT_ID + 1], alias[32];
	long count = pop_project_keys(p, i);
	int r = 0;

	if (i == 0)
		snprintf(project, sizeof(project), "%s", p->project);
	else
		snprintf(project, sizeof(project), "%s-%ld", p->project, i);
	for (long k = 0; k < count && r == 0; k++) {
		struct store_key *key = NULL;

		snprintf(alias, sizeof(alias), "bulk-%ld", k);
		r = store_key_create(p->s, project, alias, "", (unsigned)count + 100, &key);
		if (r < 0) {
			fprintf(stderr, "populate: project %s, key %ld: error %d\n", project, k, r);
			break;
		}
		if (i == 0 && p->ids) {
			pthread_mutex_lock(&p->lock);
			fprintf(p->ids, "%s\n", key->meta.key_id);
			pthread_mutex_unlock(&p->lock);
		}
		store_key_release(key);
	}
	pthread_mutex_lock(&p->lock);
	p->done += count;
	if (r < 0 && p->err == 0)
		p->err = r;
	pthread_mutex_unlock(&p->lock);
	return r;
}

static void *pop_thread_main(void *arg)
{
	struct pop_thread *t = arg;
	struct pop *p = t->p;

	for (long i = t->index; i < p->nprojects; i += p->threads) {
		int stop;

		pthread_mutex_lock(&p->lock);
		stop = p->err;
		pthread_mutex_unlock(&p->lock);
		if (stop || pop_fill_project(p, i) < 0)
			break;
	}
	return NULL;
}

static void pop_usage(void)
{
	fprintf(stderr, "usage: populate -s STATE_DIR [-b STORE] -n N [-p PROJECT] [-m FIRST] "
			"[-j THREADS] [-o IDS_FILE]\n");
	exit(2);
}

static int pop_run(struct pop *p)
{
	struct pop_thread t[64];
	int started = 0;

	for (int i = 0; i < p->threads; i++) {
		t[i].p = p;
		t[i].index = i;
		if (pthread_create(&t[i].tid, NULL, pop_thread_main, &t[i]) != 0) {
			p->err = -1;
			break;
		}
		started++;
	}
	for (int i = 0; i < started; i++)
		pthread_join(t[i].tid, NULL);
	return p->err;
}

int main(int argc, char **argv)
{
	struct store_options o = { .create = true, .key_cache = POP_KEY_CACHE };
	struct pop p = { .project = "p", .first = -1, .threads = 1 };
	struct kms_harden_report hr;
	const char *ids_path = NULL;
	char why[512];
	double t0;
	int c, ret = 1;

	while ((c = getopt(argc, argv, "s:b:n:p:m:j:o:")) != -1) {
		switch (c) {
		case 's':
			o.state_dir = optarg;
			break;
		case 'b':
			o.backend = optarg;
			break;
		case 'n':
			p.n = atol(optarg);
			break;
		case 'p':
			p.project = optarg;
			break;
		case 'm':
			p.first = atol(optarg);
			break;
		case 'j':
			p.threads = atoi(optarg);
			break;
		case 'o':
			ids_path = optarg;
			break;
		default:
			pop_usage();
		}
	}
	if (!o.state_dir || p.n <= 0 || p.threads < 1 || p.threads > 64 || optind != argc)
		pop_usage();
	if (p.first < 0 || p.first > p.n)
		p.first = p.n < 10000 ? p.n : 10000;
	p.nprojects = 1 + (p.n - p.first + POP_PER_PROJECT - 1) / POP_PER_PROJECT;
	pthread_mutex_init(&p.lock, NULL);
	if (ids_path && !(p.ids = fopen(ids_path, "w"))) {
		fprintf(stderr, "populate: %s: %s\n", ids_path, strerror(errno));
		return 1;
	}
	if (core_init() < 0) {
		fprintf(stderr, "populate: OpenSSL initialisation failed\n");
		goto out;
	}
	if (store_open_hardened(&o, POP_SECURE_HEAP, false, &hr, &p.s, why, sizeof(why)) < 0) {
		fprintf(stderr, "populate: %s\n", why);
		goto out;
	}
	t0 = pop_now();
	if (pop_run(&p) == 0) {
		double secs = pop_now() - t0;

		printf("keys=%ld projects=%ld secs=%.3f keys_s=%.0f\n", p.done, p.nprojects, secs,
		       (double)p.done / secs);
		ret = 0;
	}
	store_close(p.s);
out:
	if (p.ids && fclose(p.ids) != 0)
		ret = 1;
	pthread_mutex_destroy(&p.lock);
	core_thread_release(); /* the main thread's random pool (kms_core.h) */
	return ret;
}
