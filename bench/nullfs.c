/* nullfs - the baseline daemon of bench/: kmsfs's FUSE front end with nothing behind it.
 *
 * Same libfuse set-up as src/tools/kmsfs.c (low-level API, FUSE_USE_VERSION 314,
 * default_permissions, kmsfs's own loop from src/fs/fs_session.h: multithreaded, clone_fd and
 * max_idle_threads from the command line, max_threads 16 unless -o max_threads is given;
 * writeback cache off, entry and attr timeouts 1 s) and the same open reply as
 * src/fs/fs_txn.c (raw fuse_open_out: FOPEN_DIRECT_IO | FOPEN_PARALLEL_DIRECT_WRITES, plus
 * FOPEN_NOFLUSH for every open but write-only ones). The same transaction state machine per
 * handle, kmsfs's own (src/fs/fs_txn_state.c): a request buffer per handle, a response at the
 * first read after a write, a request left pending at flush, fsync or release answered into a
 * read-once mailbox per (inode, opener's uid) for the shell pattern, a refused write reported
 * again at close. The response is a fixed
 * 400-byte JSON-looking line, also for a refused request: no crypto, no JSON, no store.
 * Reads reply under the handle's lock and release waits for that lock, as in kmsfs.
 *
 * Tree (same depth as kmsfs):  /p/create-datakey-without-plaintext
 *                              /p/keys/<id>/create-datakey-without-plaintext  for each -o ids=
 *
 * usage: nullfs MOUNTPOINT [-f] [-o ids=ID1:ID2:...] [-o noflush=0|1] [-o work_ns=N]
 *               [libfuse options]
 * -o noflush=1 (the default) is kmsfs's open reply; -o noflush=0 is the one before issue 17:
 * FOPEN_NOFLUSH for read-only opens only, so every close of a writable handle costs a FLUSH round
 * trip. bench/run runs both, to show the old limit next to the new one.
 * -o work_ns=N: each request run (the read that answers it) first spends about N ns of CPU in
 * a calibrated loop, no system call and no memory traffic: what a daemon doing N ns of work per
 * transaction more than this one can reach (bench/README.md, "Work per transaction").
 */
#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include "fs/fs_session.h"
#include "fs/fs_txn_state.h"
#include "fs/fs_uring.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define NULL_ACTION	 "create-datakey-without-plaintext"
#define NULL_MAX_KEYS	 256u
#define NULL_MAX_REQUEST (64u * 1024u)
#define NULL_RESP_LEN	 400u
#define NULL_TIMEOUT	 1.0
#define NULL_MAILBOX_TTL 30

/* Inodes: 1 root, 2 /p, 3 /p/keys, 4 /p/<action>, KEYDIR+i /p/keys/<id_i>, KEYFILE+i its action. */
enum { INO_ROOT = 1, INO_PROJECT = 2, INO_KEYS = 3, INO_PACTION = 4 };
#define INO_KEYDIR  0x1000u
#define INO_KEYFILE 0x2000u

struct null_opts {
	char *ids;
	int noflush;
	int work_ns;
	unsigned io_uring; /* ring threads per CPU queue, 0: /dev/fuse only */
};

static struct {
	char ids[NULL_MAX_KEYS][64];
	bool flush_rw;	     /* -o noflush=0: a FLUSH at every close of a writable handle */
	uint64_t work_loops; /* -o work_ns: iterations of null_work per request run */
	unsigned nkeys;
	time_t mount_time;
	char resp[NULL_RESP_LEN];
	pthread_mutex_t mail_lock;
	struct null_mailbox *mail;
} g = { .mail_lock = PTHREAD_MUTEX_INITIALIZER };

struct null_mailbox {
	struct null_mailbox *next;
	fuse_ino_t ino;
	uid_t uid;
	time_t expires;
	size_t len;
	char *data;
};

/* One open handle: the transaction (same fields that matter as struct fs_txn). */
struct null_txn {
	pthread_mutex_t lock;
	struct fs_txn_sm sm; /* refusals and errors are errnos here */
	bool writable;
	uid_t uid; /* the opener's: its mailbox */
	char *req;
	size_t req_len, req_cap;
	char *resp;
	size_t resp_len;
};

static time_t null_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

static bool null_is_file(fuse_ino_t ino)
{
	return ino == INO_PACTION || (ino >= INO_KEYFILE && ino < INO_KEYFILE + g.nkeys);
}

static bool null_valid(fuse_ino_t ino)
{
	return (ino >= INO_ROOT && ino <= INO_PACTION) ||
	       (ino >= INO_KEYDIR && ino < INO_KEYDIR + g.nkeys) || null_is_file(ino);
}

static void null_stat(fuse_ino_t ino, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_atime = st->st_mtime = st->st_ctime = g.mount_time;
	st->st_blksize = 4096;
	if (null_is_file(ino)) {
		st->st_mode = S_IFREG | 0666; /* size 0: content is per handle (direct_io) */
		st->st_nlink = 1;
	} else {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
	}
}

/* 0 if ino exists and is a regular file (want_file) or a directory, else the errno to reply. */
static int null_kind_err(fuse_ino_t ino, bool want_file)
{
	if (!null_valid(ino))
		return ENOENT;
	if (null_is_file(ino) != want_file)
		return want_file ? EISDIR : ENOTDIR;
	return 0;
}

static void null_reply_entry(fuse_req_t req, fuse_ino_t ino)
{
	struct fuse_entry_param e;

	memset(&e, 0, sizeof(e));
	null_stat(ino, &e.attr);
	e.ino = ino;
	e.attr_timeout = NULL_TIMEOUT;
	e.entry_timeout = NULL_TIMEOUT;
	/* kmsfs never lets the kernel cache a key folder's name (it checks each walk through one
	 * for its caller): the same lookup per open here. */
	if (ino >= INO_KEYDIR && ino < INO_KEYDIR + g.nkeys)
		e.entry_timeout = 0;
	fuse_reply_entry(req, &e);
}

static void null_init(void *userdata, struct fuse_conn_info *conn)
{
	conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
}

static void null_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_ino_t ino = 0;

	if (parent == INO_ROOT && strcmp(name, "p") == 0) {
		ino = INO_PROJECT;
	} else if (parent == INO_PROJECT && strcmp(name, "keys") == 0) {
		ino = INO_KEYS;
	} else if (parent == INO_PROJECT && strcmp(name, NULL_ACTION) == 0) {
		ino = INO_PACTION;
	} else if (parent == INO_KEYS) {
		for (unsigned i = 0; i < g.nkeys; i++)
			if (strcmp(name, g.ids[i]) == 0)
				ino = INO_KEYDIR + i;
	} else if (parent >= INO_KEYDIR && parent < INO_KEYDIR + g.nkeys &&
		   strcmp(name, NULL_ACTION) == 0) {
		ino = INO_KEYFILE + (parent - INO_KEYDIR);
	}
	if (!ino) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	null_reply_entry(req, ino);
}

static void null_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;

	if (!null_valid(ino)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	null_stat(ino, &st);
	fuse_reply_attr(req, &st, NULL_TIMEOUT);
}

static void null_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
			 struct fuse_file_info *fi)
{
	if (null_is_file(ino) && to_set == FUSE_SET_ATTR_SIZE && attr->st_size == 0) {
		null_getattr(req, ino, fi);
		return;
	}
	fuse_reply_err(req, EPERM);
}

/* ---------------------------------------------------------------- mailbox (shell pattern) */

static void null_mailbox_free(struct null_mailbox *m)
{
	if (m) {
		free(m->data);
		free(m);
	}
}

/* Unlink and return the mailbox of (ino, uid), or NULL. Caller holds g.mail_lock. */
static struct null_mailbox *null_mailbox_unlink(fuse_ino_t ino, uid_t uid)
{
	for (struct null_mailbox **pp = &g.mail; *pp; pp = &(*pp)->next) {
		if ((*pp)->ino == ino && (*pp)->uid == uid) {
			struct null_mailbox *m = *pp;

			*pp = m->next;
			return m;
		}
	}
	return NULL;
}

static void null_mailbox_put(fuse_ino_t ino, uid_t uid, const char *data, size_t len)
{
	struct null_mailbox *m = calloc(1, sizeof(*m)), *old;

	if (!m)
		return;
	m->data = malloc(len);
	if (!m->data) {
		free(m);
		return;
	}
	memcpy(m->data, data, len);
	m->len = len;
	m->ino = ino;
	m->uid = uid;
	m->expires = null_now() + NULL_MAILBOX_TTL;
	pthread_mutex_lock(&g.mail_lock);
	old = null_mailbox_unlink(ino, uid);
	m->next = g.mail;
	g.mail = m;
	pthread_mutex_unlock(&g.mail_lock);
	null_mailbox_free(old);
}

/* Move the unexpired mailbox of (ino, uid) into t's response; false if there is none. */
static bool null_mailbox_take(fuse_ino_t ino, uid_t uid, struct null_txn *t)
{
	struct null_mailbox *m;

	pthread_mutex_lock(&g.mail_lock);
	m = null_mailbox_unlink(ino, uid);
	pthread_mutex_unlock(&g.mail_lock);
	if (!m)
		return false;
	if (m->expires > null_now()) {
		t->resp = m->data; /* the handle owns it now */
		t->resp_len = m->len;
		m->data = NULL;
	}
	null_mailbox_free(m);
	return t->resp != NULL;
}

/* ---------------------------------------------------------------- transactions */

static struct null_txn *null_txn_of(struct fuse_file_info *fi)
{
	return (struct null_txn *)(uintptr_t)fi->fh;
}

static void null_resp_free(struct null_txn *t)
{
	if (t->resp != g.resp)
		free(t->resp);
	t->resp = NULL;
	t->resp_len = 0;
}

static void null_txn_free(struct null_txn *t)
{
	free(t->req);
	null_resp_free(t);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

/* Work the CPU for n iterations: a dependent chain of multiply-adds the compiler cannot drop. */
static uint64_t null_work(uint64_t n)
{
	volatile uint64_t sink;
	uint64_t x = n | 1;

	for (uint64_t i = 0; i < n; i++)
		x = x * 6364136223846793005u + 1442695040888963407u;
	sink = x;
	return sink;
}

static int64_t null_thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Iterations of null_work for ns nanoseconds of this thread's CPU: the best of five timings
 * of a loop long enough (about 20 ms) for the clock's resolution not to matter. */
static uint64_t null_work_calibrate(int ns)
{
	const uint64_t probe = 20u * 1000u * 1000u;
	int64_t best = INT64_MAX;

	if (ns <= 0)
		return 0;
	for (int i = 0; i < 5; i++) {
		int64_t t0 = null_thread_cpu_ns(), dt;

		(void)null_work(probe);
		dt = null_thread_cpu_ns() - t0;
		if (dt > 0 && dt < best)
			best = dt;
	}
	return best == INT64_MAX ? 0 : (uint64_t)((double)probe * ns / (double)best);
}

/* "Run" the request: the fixed response (a refused request's too, reported at close). Caller
 * holds t->lock. */
static void null_txn_run(struct null_txn *t)
{
	if (g.work_loops)
		(void)null_work(g.work_loops);
	null_resp_free(t);
	t->resp = g.resp;
	t->resp_len = sizeof(g.resp);
	t->req_len = 0;
	fs_txn_on_answer(&t->sm, t->sm.state == FS_TXN_REFUSED ? t->sm.refusal : 0);
}

/* A new zeroed handle of size bytes for an open of ino (a file if want_file, else a folder);
 * NULL when the open has been answered with an error. */
static void *null_open_handle(fuse_req_t req, fuse_ino_t ino, bool want_file, size_t size)
{
	int err = null_kind_err(ino, want_file);
	void *h = err ? NULL : calloc(1, size);

	if (!err && !h)
		err = ENOMEM;
	if (err)
		fuse_reply_err(req, err);
	return h;
}

static void null_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	int acc = fi->flags & O_ACCMODE;
	struct fuse_open_out out;
	struct null_txn *t = null_open_handle(req, ino, true, sizeof(*t));

	if (!t)
		return;
	pthread_mutex_init(&t->lock, NULL);
	t->writable = acc != O_RDONLY;
	t->uid = fuse_req_ctx(req)->uid;
	fs_txn_on_open(&t->sm, acc == O_RDONLY && null_mailbox_take(ino, t->uid, t));
	fi->fh = (uint64_t)(uintptr_t)t;
	/* Exactly kmsfs's fs_reply_open(). */
	memset(&out, 0, sizeof(out));
	out.fh = fi->fh;
	out.open_flags = FOPEN_DIRECT_IO | FOPEN_PARALLEL_DIRECT_WRITES;
	if (g.flush_rw ? acc == O_RDONLY : !fs_txn_needs_flush(acc != O_WRONLY, acc != O_RDONLY))
		out.open_flags |= FOPEN_NOFLUSH;
	if (fuse_reply_buf(req, (const char *)&out, sizeof(out)) == -ENOENT)
		null_txn_free(t);
}

/* Room for size more request bytes. */
static bool null_req_room(struct null_txn *t, size_t size)
{
	size_t ncap = t->req_cap ? t->req_cap : 256;
	char *p;

	if (t->req_len + size <= t->req_cap)
		return true;
	while (ncap < t->req_len + size)
		ncap *= 2;
	p = realloc(t->req, ncap);
	if (!p)
		return false;
	t->req = p;
	t->req_cap = ncap;
	return true;
}

static void null_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct null_txn *t = null_txn_of(fi);
	int err = 0;

	pthread_mutex_lock(&t->lock);
	switch (fs_txn_on_write(&t->sm)) {
	case FS_TXN_WRITE_FIRST:
		t->req_len = 0;
		null_resp_free(t);
		break;
	case FS_TXN_WRITE_MORE:
		break;
	case FS_TXN_WRITE_REFUSED:
		err = t->sm.refusal; /* as the write that failed */
		goto out;
	}
	if (t->req_len + size > NULL_MAX_REQUEST)
		err = EFBIG;
	else if (!null_req_room(t, size))
		err = ENOMEM;
	if (err) {
		fs_txn_on_write_refused(&t->sm, err);
		goto out;
	}
	memcpy(t->req + t->req_len, buf, size);
	t->req_len += size;
out:
	pthread_mutex_unlock(&t->lock);
	if (err)
		fuse_reply_err(req, err);
	else
		fuse_reply_write(req, size);
}

static void null_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		      struct fuse_file_info *fi)
{
	struct null_txn *t = null_txn_of(fi);
	size_t pos, n;
	int err;

	pthread_mutex_lock(&t->lock);
	if (fs_txn_read_runs(&t->sm))
		null_txn_run(t);
	err = fs_txn_on_read(&t->sm, t->writable, off, t->resp_len, &pos);
	/* As kmsfs's fs_op_read: reply under the handle's lock; null_release waits for it. */
	if (err) {
		fuse_reply_err(req, err);
	} else {
		n = pos >= t->resp_len ? 0 : size < t->resp_len - pos ? size : t->resp_len - pos;
		fuse_reply_buf(req, n ? t->resp + pos : NULL, n);
	}
	pthread_mutex_unlock(&t->lock);
}

/* As kmsfs's fs_txn_run_to_mailbox: a run no read asked for leaves the answer in the mailbox. */
static void null_txn_run_to_mailbox(fuse_ino_t ino, struct null_txn *t)
{
	null_txn_run(t);
	null_mailbox_put(ino, t->uid, t->resp, t->resp_len);
}

static void null_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct null_txn *t = null_txn_of(fi);
	int err;

	pthread_mutex_lock(&t->lock);
	if (fs_txn_flush_runs(&t->sm))
		null_txn_run_to_mailbox(ino, t);
	err = fs_txn_on_flush(&t->sm);
	pthread_mutex_unlock(&t->lock);
	fuse_reply_err(req, err);
}

static void null_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)datasync;
	null_flush(req, ino, fi);
}

static void null_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct null_txn *t = null_txn_of(fi);

	/* A read may still be replying under the lock (most handles have no FLUSH). What was
	 * written and never read nor flushed runs now, into the mailbox, as in kmsfs. */
	pthread_mutex_lock(&t->lock);
	if (fs_txn_release_runs(&t->sm))
		null_txn_run_to_mailbox(ino, t);
	pthread_mutex_unlock(&t->lock);
	null_txn_free(t);
	fuse_reply_err(req, 0);
}

/* ---------------------------------------------------------------- directories, xattrs */

struct null_dirbuf {
	char *data;
	size_t len;
};

static void null_dir_add(fuse_req_t req, struct null_dirbuf *b, const char *name, fuse_ino_t ino)
{
	struct stat st;
	size_t need = fuse_add_direntry(req, NULL, 0, name, NULL, 0);
	char *p = realloc(b->data, b->len + need);

	if (!p)
		return;
	b->data = p;
	null_stat(ino, &st);
	fuse_add_direntry(req, b->data + b->len, need, name, &st, (off_t)(b->len + need));
	b->len += need;
}

static void null_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct null_dirbuf *b = null_open_handle(req, ino, false, sizeof(*b));

	if (!b)
		return;
	null_dir_add(req, b, ".", ino);
	null_dir_add(req, b, "..", ino);
	if (ino == INO_ROOT) {
		null_dir_add(req, b, "p", INO_PROJECT);
	} else if (ino == INO_PROJECT) {
		null_dir_add(req, b, "keys", INO_KEYS);
		null_dir_add(req, b, NULL_ACTION, INO_PACTION);
	} else if (ino == INO_KEYS) {
		for (unsigned i = 0; i < g.nkeys; i++)
			null_dir_add(req, b, g.ids[i], INO_KEYDIR + i);
	} else {
		null_dir_add(req, b, NULL_ACTION, INO_KEYFILE + (ino - INO_KEYDIR));
	}
	fi->fh = (uint64_t)(uintptr_t)b;
	if (fuse_reply_open(req, fi) == -ENOENT) {
		free(b->data);
		free(b);
	}
}

static void null_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			 struct fuse_file_info *fi)
{
	struct null_dirbuf *b = (struct null_dirbuf *)(uintptr_t)fi->fh;
	size_t start = off < 0 ? 0 : (size_t)off, end = start;

	if (start >= b->len) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	while (end < b->len) {
		const struct fuse_dirent *ent = (const void *)(b->data + end);

		if ((size_t)ent->off - start > size)
			break;
		end = (size_t)ent->off;
	}
	fuse_reply_buf(req, b->data + start, end - start);
}

static void null_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct null_dirbuf *b = (struct null_dirbuf *)(uintptr_t)fi->fh;

	free(b->data);
	free(b);
	fuse_reply_err(req, 0);
}

static void null_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			  size_t size, int flags)
{
	fuse_reply_err(req, 0);
}

static void null_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	fuse_reply_err(req, ENODATA); /* as kmsfs: security.capability must be fast */
}

static void null_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	if (size == 0)
		fuse_reply_xattr(req, 0);
	else
		fuse_reply_buf(req, NULL, 0);
}

static void null_create(fuse_req_t req, fuse_ino_t p, const char *name, mode_t mode,
			struct fuse_file_info *fi)
{
	fuse_reply_err(req, ENOENT);
}

static const struct fuse_lowlevel_ops null_ops = {
	.init = null_init,
	.lookup = null_lookup,
	.getattr = null_getattr,
	.setattr = null_setattr,
	.open = null_open,
	.read = null_read,
	.write = null_write,
	.flush = null_flush,
	.fsync = null_fsync,
	.release = null_release,
	.opendir = null_opendir,
	.readdir = null_readdir,
	.releasedir = null_releasedir,
	.setxattr = null_setxattr,
	.getxattr = null_getxattr,
	.listxattr = null_listxattr,
	.create = null_create,
};

static const struct fuse_opt null_fuse_opts[] = {
	{ "ids=%s", offsetof(struct null_opts, ids), 1 },
	{ "noflush=%d", offsetof(struct null_opts, noflush), 0 },
	{ "work_ns=%d", offsetof(struct null_opts, work_ns), 0 },
	{ "io_uring", offsetof(struct null_opts, io_uring), FS_URING_THREADS_DEFAULT },
	{ "io_uring=%u", offsetof(struct null_opts, io_uring), 0 },
	FUSE_OPT_END,
};

static void null_parse_ids(const char *ids)
{
	const char *p = ids;

	while (p && *p && g.nkeys < NULL_MAX_KEYS) {
		size_t n = strcspn(p, ":,");

		if (n > 0 && n < sizeof(g.ids[0])) {
			memcpy(g.ids[g.nkeys], p, n);
			g.ids[g.nkeys][n] = 0;
			g.nkeys++;
		}
		p += n;
		if (*p)
			p++;
	}
}

int main(int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct null_opts nopt = { .noflush = 1 };
	struct fuse_cmdline_opts opts = { 0 };
	struct fuse_session *se = NULL;
	int ret = 1;

	if (fuse_opt_parse(&args, &nopt, null_fuse_opts, NULL) != 0)
		return 1;
	if (fuse_parse_cmdline(&args, &opts) != 0)
		return 1;
	if (opts.show_help || opts.show_version || !opts.mountpoint) {
		printf("usage: %s MOUNTPOINT [-f] [-o ids=ID1:ID2:...] [-o noflush=0|1] "
		       "[-o work_ns=N] [-o io_uring[=THREADS_PER_CPU]] [libfuse options]\n",
		       argv[0]);
		ret = opts.show_help || opts.show_version ? 0 : 2;
		goto out;
	}
	null_parse_ids(nopt.ids);
	g.flush_rw = nopt.noflush == 0;
	if (nopt.work_ns < 0 || nopt.work_ns > 1000 * 1000 * 1000) {
		fprintf(stderr, "nullfs: work_ns must be 0..1000000000\n");
		ret = 2;
		goto out;
	}
	g.work_loops = null_work_calibrate(nopt.work_ns);
	g.mount_time = time(NULL);
	/* A fixed 400-byte one-line response: '{', a 397-byte string, '}', '\n'. */
	memset(g.resp, 'n', sizeof(g.resp));
	memcpy(g.resp, "{\"null\":\"", 9);
	memcpy(g.resp + sizeof(g.resp) - 3, "\"}\n", 3);

	/* As kmsfs: the kernel checks modes (default_permissions), which costs it the same. */
	if (fuse_opt_add_arg(&args, "-odefault_permissions") != 0)
		goto out;
	se = fuse_session_new(&args, &null_ops, sizeof(null_ops), NULL);
	if (!se)
		goto out;
	if (fuse_set_signal_handlers(se) != 0)
		goto out;
	if (fuse_session_mount(se, opts.mountpoint) != 0) {
		fprintf(stderr, "nullfs: cannot mount on '%s'\n", opts.mountpoint);
		goto out_handlers;
	}
	if (nopt.io_uring && fs_uring_attach(se, nopt.io_uring) != 0) {
		fprintf(stderr, "nullfs: io_uring: %s\n", strerror(errno));
		ret = 2;
		goto out_unmount;
	}
	fuse_daemonize(opts.foreground);
	ret = fs_session_loop(se, &opts); /* exactly kmsfs's loop (src/fs/fs_session.h) */
	fs_uring_stop();
out_unmount:
	fuse_session_unmount(se);
out_handlers:
	fuse_remove_signal_handlers(se);
out:
	if (se)
		fuse_session_destroy(se);
	free(opts.mountpoint);
	free(nopt.ids);
	fuse_opt_free_args(&args);
	while (g.mail) {
		struct null_mailbox *m = g.mail;

		g.mail = m->next;
		null_mailbox_free(m);
	}
	return ret;
}
