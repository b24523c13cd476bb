/* fs_uring.c - FUSE requests over io_uring beside libfuse 3.14's loop (see fs_uring.h).
 *
 * The kernel's side (fs/fuse/dev_uring.c): an entry is a header buffer (struct
 * fs_uring_header) and a payload buffer registered with FUSE_IO_URING_CMD_REGISTER on a queue
 * (one per possible CPU). A request for that queue completes the command: the fuse_in_header in
 * in_out, the op's own header (its first argument, if any) in op_in, every other argument one
 * after the other in the payload, their length in payload_sz. The reply goes back the same
 * way: the fuse_out_header in in_out, all reply arguments in the payload, then
 * FUSE_IO_URING_CMD_COMMIT_AND_FETCH with the request's commit_id, which also waits for the next
 * request. The ring is used once every queue has an entry; until then, and for FORGET and
 * INTERRUPT always, /dev/fuse. */
#define _GNU_SOURCE
#define FUSE_USE_VERSION 314 /* as kms_fs.h; the null daemon compiles this file too */
#include "fs/fs_uring.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <linux/fuse.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

/* The kernel's ABI (include/uapi/linux/fuse.h, protocol 7.42), newer than Debian 12's headers. */
#define FS_URING_FLAG2 (1u << (41 - 32)) /* FUSE_OVER_IO_URING, in flags2 */
enum { FS_URING_CMD_REGISTER = 1, FS_URING_CMD_COMMIT_AND_FETCH = 2 };

struct fs_uring_header {
	char in_out[128]; /* struct fuse_in_header, and the reply's fuse_out_header */
	char op_in[128];  /* the op's own header */
	struct {
		uint64_t flags;
		uint64_t commit_id;
		uint32_t payload_sz;
		uint32_t padding;
		uint64_t reserved;
	} ent;
};

struct fs_uring_cmd {
	uint64_t flags;
	uint64_t commit_id;
	uint16_t qid;
	uint8_t padding[6];
};

_Static_assert(sizeof(struct fs_uring_header) == 288, "fuse_uring_req_header is 288 bytes");
_Static_assert(sizeof(struct fs_uring_cmd) == 24, "fuse_uring_cmd_req is 24 bytes");

#define FS_URING_GAP (sizeof(struct fuse_in_header) + 128) /* room to rebuild the stream */
/* IORING_ENTER_NO_IOWAIT and IORING_FEAT_NO_IOWAIT (Linux 6.15), newer than liburing 2.3. */
#define FS_URING_ENTER_NO_IOWAIT (1u << 7)
#define FS_URING_FEAT_NO_IOWAIT	 (1u << 17)
#define FS_URING_STOP_TAG	 1u
#define FS_URING_ENT_TAG	 2u
#define FS_URING_LINE		 64

/* Each on cache lines of its own: the threads of one CPU sit next to each other in the array,
 * and every request writes the fields below. */
struct __attribute__((aligned(FS_URING_LINE))) fs_uring_worker {
	struct io_uring ring;
	bool ring_up;
	bool no_iowait; /* the kernel can wait without counting it as I/O wait */
	pthread_t thread;
	bool started;
	unsigned qid;
	struct fs_uring_header *hdr;
	unsigned char *buf; /* FS_URING_GAP bytes, then the registered payload */
	size_t buf_len;
	size_t last_reply; /* payload bytes of the last reply, wiped when a shorter request lands */
	size_t high;	   /* payload bytes ever used: wiped at the end */
	struct iovec iov[2];
	/* The request this thread is answering: its reply is taken by fs_uring_writev. */
	uint64_t unique;
	bool replied;
	bool reply_too_big;
	/* Requests answered: written by this thread only, summed by fs_uring_requests. One
	 * counter for all threads cost 151 ns an add, against 31 ns on a line of its own (two
	 * CPUs, one add each 30 µs): the shared line bounces between the CPUs. */
	unsigned long long requests;
};

struct fs_uring {
	struct fuse_session *se;
	int fd;
	unsigned threads, queues;
	int stop_fd;
	pthread_mutex_t lock;
	enum fs_uring_state state;
	int error;
	uint64_t init_unique;
	bool init_offered;
	size_t payload_max;
	struct fs_uring_worker *workers; /* nworkers of them; both set and cleared under lock */
	size_t nworkers;
	unsigned offline; /* queues of CPUs not online at the mount: one thread each */
	size_t spawned;	  /* threads created */
	/* Start-up: each thread sets its ring up and counts itself ready (or failed), then waits
	 * for the INIT reply to be written (go 1) or not to use its ring (go -1). */
	pthread_cond_t cond;
	size_t ready, failed;
	int go;
	unsigned long long requests; /* of the threads already stopped */
};

static struct fs_uring fs_uring_global = {
	.fd = -1, .stop_fd = -1, .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER
};
static __thread struct fs_uring_worker *fs_uring_self;

bool fs_uring_switch_on(void)
{
	char c = 'N';
	int fd = open(FS_URING_SWITCH, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return false;
	if (read(fd, &c, 1) != 1)
		c = 'N';
	close(fd);
	return c == 'Y' || c == 'y' || c == '1';
}

unsigned fs_uring_cpu_list(const char *text, unsigned char *set, unsigned cap)
{
	unsigned highest = 0;
	bool any = false;
	const char *p = text;

	while (*p && *p != '\n') {
		char *end;
		unsigned long lo, hi;

		if (*p < '0' || *p > '9')
			return 0;
		lo = hi = strtoul(p, &end, 10);
		p = end;
		if (*p == '-') {
			if (p[1] < '0' || p[1] > '9')
				return 0;
			hi = strtoul(p + 1, &end, 10);
			p = end;
		}
		if (lo > hi || hi >= FS_URING_CPUS_MAX)
			return 0;
		for (unsigned long v = lo; set && v <= hi && v < cap; v++)
			set[v] = 1;
		if (hi >= highest)
			highest = (unsigned)hi;
		any = true;
		if (*p == ',')
			p++;
		else if (*p && *p != '\n')
			return 0;
	}
	return any ? highest + 1 : 0;
}

/* fs_uring_cpu_list of a sysfs file: 0 when it cannot be read. */
static unsigned fs_uring_cpus(const char *path, unsigned char *set, unsigned cap)
{
	char text[4096];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return 0;
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	text[n] = 0;
	return fs_uring_cpu_list(text, set, cap);
}

static void fs_uring_fail(struct fs_uring *u, int error)
{
	pthread_mutex_lock(&u->lock);
	if (u->state != FS_URING_FAILED) {
		u->state = FS_URING_FAILED;
		u->error = error;
	}
	pthread_mutex_unlock(&u->lock);
}

/* An SQE128 slot is two struct io_uring_sqe: zeroed and filled through its address, which the
 * compiler's bounds checks would otherwise take for one struct. */
__attribute__((noinline)) static void fs_uring_put(void *slot, size_t off, const void *v, size_t n)
{
	memcpy((unsigned char *)slot + off, v, n);
}

static void fs_uring_prep_cmd(struct fs_uring *u, struct fs_uring_worker *w,
			      struct io_uring_sqe *sqe, uint32_t op, uint64_t commit_id)
{
	static const unsigned char zero[2 * sizeof(struct io_uring_sqe)];
	struct fs_uring_cmd cmd = { .qid = (uint16_t)w->qid, .commit_id = commit_id };

	fs_uring_put(sqe, 0, zero, sizeof(zero));
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = u->fd;
	sqe->cmd_op = op;
	sqe->user_data = FS_URING_ENT_TAG;
	if (op == FS_URING_CMD_REGISTER) {
		sqe->addr = (uint64_t)(uintptr_t)w->iov;
		sqe->len = 2;
	}
	fs_uring_put(sqe, offsetof(struct io_uring_sqe, cmd), &cmd, sizeof(cmd));
}

/* The request in w's entry as libfuse reads it from /dev/fuse, in place before the payload:
 * its start, or NULL when the kernel's lengths do not add up. */
static unsigned char *fs_uring_rebuild(struct fs_uring_worker *w, size_t *len)
{
	struct fuse_in_header in;
	size_t payload = w->hdr->ent.payload_sz, op;
	unsigned char *start;

	memcpy(&in, w->hdr->in_out, sizeof(in));
	if (payload > w->buf_len - FS_URING_GAP || in.len < sizeof(in) + payload)
		return NULL;
	op = in.len - sizeof(in) - payload;
	if (op > sizeof(w->hdr->op_in))
		return NULL;
	start = w->buf + FS_URING_GAP - op - sizeof(in);
	memcpy(start, &in, sizeof(in));
	memcpy(start + sizeof(in), w->hdr->op_in, op);
	*len = in.len;
	return start;
}

/* Answer the request in w's entry: through libfuse's dispatch, whose handler replies through
 * fs_uring_writev into the entry. */
static void fs_uring_serve(struct fs_uring *u, struct fs_uring_worker *w)
{
	unsigned char *start;
	size_t len = 0, payload = w->hdr->ent.payload_sz;
	struct fuse_out_header out = { 0 };

	if (payload < w->last_reply) /* what is left of the last reply: it may hold a key */
		explicit_bzero(w->buf + FS_URING_GAP + payload, w->last_reply - payload);
	w->last_reply = 0;
	if (payload > w->high)
		w->high = payload;
	w->unique = w->hdr->ent.commit_id;
	w->replied = false;
	w->reply_too_big = false;
	start = fs_uring_rebuild(w, &len);
	if (start) {
		struct fuse_buf fbuf = { .mem = start, .size = len };

		fs_uring_self = w;
		fuse_session_process_buf(u->se, &fbuf);
		fs_uring_self = NULL;
	}
	if (!w->replied || w->reply_too_big) {
		/* No reply from libfuse (a request it drops, lengths that do not add up), or one
		 * larger than the entry: the caller gets EIO, never a request left hanging. */
		out.len = sizeof(out);
		out.error = -EIO;
		out.unique = w->unique;
		memcpy(w->hdr->in_out, &out, sizeof(out));
		w->hdr->ent.payload_sz = 0;
	}
	__atomic_store_n(&w->requests, w->requests + 1, __ATOMIC_RELAXED);
}

static int fs_uring_worker_setup(struct fs_uring *u, struct fs_uring_worker *w);

/* Submit what w prepared and wait for a completion: io_uring_submit_and_wait, except that the
 * wait for the next request is not I/O wait where the kernel can tell the two apart. Otherwise
 * every idle ring thread counts as a task in I/O wait: a load average of 8 and "wa" in top on
 * an idle 2-CPU host, which monitoring would take for a disk in trouble. */
static int fs_uring_submit_and_wait(struct fs_uring_worker *w)
{
	struct io_uring_sq *sq = &w->ring.sq;
	unsigned tail = sq->sqe_tail;

	if (!w->no_iowait)
		return io_uring_submit_and_wait(&w->ring, 1);
	/* liburing's own flush of the SQ ring (queue.c, __io_uring_flush_sq), no SQPOLL here */
	if (sq->sqe_head != tail) {
		sq->sqe_head = tail;
		io_uring_smp_store_release(sq->ktail, tail);
	}
	return io_uring_enter((unsigned)w->ring.ring_fd,
			      tail - io_uring_smp_load_acquire(sq->khead), 1,
			      IORING_ENTER_GETEVENTS | FS_URING_ENTER_NO_IOWAIT, NULL);
}

static void *fs_uring_worker_main(void *arg)
{
	struct fs_uring *u = &fs_uring_global;
	struct fs_uring_worker *w = arg;
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	cpu_set_t cpus;
	int r;

	/* On the queue's own CPU, where its callers run (not fatal: a cpuset may forbid it). */
	CPU_ZERO(&cpus);
	CPU_SET(w->qid, &cpus);
	(void)pthread_setaffinity_np(pthread_self(), sizeof(cpus), &cpus);
	/* The ring is made here: a single-issuer ring belongs to the thread that made it. */
	r = fs_uring_worker_setup(u, w) == 0 ? 0 : errno;
	pthread_mutex_lock(&u->lock);
	if (r) {
		u->failed++;
		if (!u->error)
			u->error = r;
	} else {
		u->ready++;
	}
	pthread_cond_broadcast(&u->cond);
	while (u->go == 0)
		pthread_cond_wait(&u->cond, &u->lock);
	r = r || u->go < 0;
	pthread_mutex_unlock(&u->lock);
	if (r)
		return NULL;

	sqe = io_uring_get_sqe(&w->ring);
	io_uring_prep_poll_add(sqe, u->stop_fd, POLLIN);
	sqe->user_data = FS_URING_STOP_TAG;
	sqe = io_uring_get_sqe(&w->ring);
	fs_uring_prep_cmd(u, w, sqe, FS_URING_CMD_REGISTER, 0);
	for (;;) {
		r = fs_uring_submit_and_wait(w);
		if (r < 0) {
			if (r == -EINTR)
				continue;
			fs_uring_fail(u, -r);
			break;
		}
		if (io_uring_peek_cqe(&w->ring, &cqe) != 0)
			continue;
		if (cqe->user_data == FS_URING_STOP_TAG)
			break;
		r = cqe->res;
		io_uring_cqe_seen(&w->ring, cqe);
		if (r < 0) {
			/* ENOTCONN, ECANCELED: the mount is gone. Anything else: a registration
			 * the kernel refused, and the session stays on /dev/fuse. */
			if (r != -ENOTCONN && r != -ECANCELED)
				fs_uring_fail(u, -r);
			break;
		}
		fs_uring_serve(u, w);
		sqe = io_uring_get_sqe(&w->ring);
		fs_uring_prep_cmd(u, w, sqe, FS_URING_CMD_COMMIT_AND_FETCH, w->unique);
	}
	return NULL;
}

/* The reply to a request this thread answers from its entry: into the entry. */
static ssize_t fs_uring_reply(struct fs_uring_worker *w, const struct iovec *iov, int count)
{
	size_t room = w->buf_len - FS_URING_GAP, used = 0, total = 0;
	struct fuse_out_header out;
	int i;

	if (iov[0].iov_len != sizeof(out))
		return -1;
	memcpy(&out, iov[0].iov_base, sizeof(out));
	for (i = 1; i < count; i++) {
		if (iov[i].iov_len > room - used) {
			/* The caller gets EIO: what was copied of this reply goes at once. */
			explicit_bzero(w->buf + FS_URING_GAP, used);
			w->reply_too_big = true;
			w->replied = true;
			errno = EINVAL;
			return -1;
		}
		memcpy(w->buf + FS_URING_GAP + used, iov[i].iov_base, iov[i].iov_len);
		used += iov[i].iov_len;
	}
	memcpy(w->hdr->in_out, &out, sizeof(out));
	w->hdr->ent.payload_sz = (uint32_t)used;
	w->last_reply = used;
	if (used > w->high)
		w->high = used;
	w->replied = true;
	total = sizeof(out) + used;
	return (ssize_t)total;
}

static int fs_uring_spawn(struct fs_uring *u);
static void fs_uring_release(struct fs_uring *u, int go);

/* The payload buffer the kernel requires of every entry (fuse_uring_create): the largest of
 * FUSE_MIN_READ_BUFFER, max_write and max_pages pages (32 unless the reply sets FUSE_MAX_PAGES).
 * A larger buffer is allowed, so the kernel's own cap on max_pages need not be known here. */
static size_t fs_uring_payload_size(const struct fuse_init_out *init)
{
	size_t pages = init->flags & FUSE_MAX_PAGES ? init->max_pages : 32;
	size_t size = (pages ? pages : 1) * (size_t)sysconf(_SC_PAGESIZE);

	if (size < init->max_write)
		size = init->max_write;
	if (size < FUSE_MIN_READ_BUFFER)
		size = FUSE_MIN_READ_BUFFER;
	return size;
}

/* The INIT reply, asking for io_uring, then the rings once the kernel took it. */
static ssize_t fs_uring_init_reply(struct fs_uring *u, int fd, const struct iovec *iov, int count)
{
	unsigned char msg[sizeof(struct fuse_out_header) + sizeof(struct fuse_init_out)] = { 0 };
	struct fuse_out_header out;
	struct fuse_init_out init;
	size_t used = 0;
	ssize_t w;
	int i;

	for (i = 0; i < count; i++) {
		size_t n = iov[i].iov_len;

		if (n > sizeof(msg) - used)
			return writev(fd, iov, count); /* not an INIT reply this module knows */
		memcpy(msg + used, iov[i].iov_base, n);
		used += n;
	}
	memcpy(&out, msg, sizeof(out));
	if (out.error != 0 || used < sizeof(out) + offsetof(struct fuse_init_out, flags2))
		return writev(fd, iov, count);
	memcpy(&init, msg + sizeof(out), sizeof(init));
	u->payload_max = fs_uring_payload_size(&init);
	/* Ask for io_uring only with every ring in place: once the kernel agreed, it holds back
	 * every request until each queue has an entry. */
	if (fs_uring_spawn(u) != 0) {
		fs_uring_fail(u, errno);
		fs_uring_release(u, -1);
		return writev(fd, iov, count);
	}
	init.flags |= FUSE_INIT_EXT;
	init.flags2 |= FS_URING_FLAG2;
	memcpy(msg + sizeof(out), &init, sizeof(init));
	out.len = sizeof(msg);
	memcpy(msg, &out, sizeof(out));
	w = write(fd, msg, sizeof(msg));
	/* The kernel handled the reply within the write: the connection is initialised, the
	 * entries may register. A registration it refuses turns io_uring off for the connection
	 * and lets the held requests go through /dev/fuse. */
	fs_uring_release(u, w < 0 ? -1 : 1);
	if (w < 0)
		return w;
	return (ssize_t)used;
}

static ssize_t fs_uring_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	struct fs_uring *u = &fs_uring_global;
	struct fs_uring_worker *w = fs_uring_self;
	struct fuse_out_header out;

	(void)userdata;
	if (count < 1 || iov[0].iov_len < sizeof(out))
		return writev(fd, iov, count);
	memcpy(&out, iov[0].iov_base, sizeof(out));
	if (w && out.unique == w->unique && !w->replied)
		return fs_uring_reply(w, iov, count);
	if (out.unique != 0 && out.unique == u->init_unique && u->init_offered) {
		u->init_unique = 0;
		return fs_uring_init_reply(u, fd, iov, count);
	}
	return writev(fd, iov, count);
}

static ssize_t fs_uring_read(int fd, void *buf, size_t len, void *userdata)
{
	struct fs_uring *u = &fs_uring_global;
	ssize_t n = read(fd, buf, len);
	struct fuse_in_header in;
	struct fuse_init_in init;

	(void)userdata;
	if (n < (ssize_t)(sizeof(in) + offsetof(struct fuse_init_in, unused)))
		return n;
	memcpy(&in, buf, sizeof(in));
	if (in.opcode != FUSE_INIT)
		return n;
	memcpy(&init, (char *)buf + sizeof(in), offsetof(struct fuse_init_in, unused));
	pthread_mutex_lock(&u->lock);
	if (init.flags & FUSE_INIT_EXT && init.flags2 & FS_URING_FLAG2) {
		u->init_unique = in.unique;
		u->init_offered = true;
	} else if (u->state == FS_URING_WAITING) {
		u->state = FS_URING_REFUSED;
	}
	pthread_mutex_unlock(&u->lock);
	return n;
}

static int fs_uring_worker_setup(struct fs_uring *u, struct fs_uring_worker *w)
{
	struct io_uring_params p;
	int r;

	w->buf_len = FS_URING_GAP + u->payload_max;
	/* Anonymous pages: not dumped, locked with the rest of the daemon (mlockall), touched
	 * only as far as requests reach. */
	w->buf = mmap(NULL, w->buf_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (w->buf == MAP_FAILED) {
		w->buf = NULL;
		return -1;
	}
	(void)madvise(w->buf, w->buf_len, MADV_DONTDUMP);
	w->hdr = calloc(1, sizeof(*w->hdr));
	if (!w->hdr)
		return -1;
	w->iov[0] = (struct iovec){ .iov_base = w->hdr, .iov_len = sizeof(*w->hdr) };
	w->iov[1] = (struct iovec){ .iov_base = w->buf + FS_URING_GAP, .iov_len = u->payload_max };
	memset(&p, 0, sizeof(p));
	/* SQE128: the command sits in the SQE's tail. Task work runs only when the thread waits
	 * for it anyway: no interrupt of a thread at work. */
	p.flags = IORING_SETUP_SQE128 | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
	r = io_uring_queue_init_params(4, &w->ring, &p);
	if (r == -EINVAL) {
		memset(&p, 0, sizeof(p));
		p.flags = IORING_SETUP_SQE128 | IORING_SETUP_COOP_TASKRUN;
		r = io_uring_queue_init_params(4, &w->ring, &p);
	}
	if (r < 0) {
		errno = -r;
		return -1;
	}
	w->ring_up = true;
	w->no_iowait = (p.features & FS_URING_FEAT_NO_IOWAIT) != 0;
	return 0;
}

/* How many threads each queue gets: u->threads for a CPU online now. A queue of a CPU that is
 * not (a VM may name many it could hot-add) gets one: no caller runs there, but the kernel uses
 * the rings only once every queue has an entry. workers[] filled with their queues' ids: its
 * length, or 0 with errno. */
static size_t fs_uring_layout(const struct fs_uring *u, struct fs_uring_worker **out,
			      unsigned *offline)
{
	unsigned char *online = calloc(u->queues, 1);
	struct fs_uring_worker *workers = NULL;
	size_t n = 0, i = 0;

	*out = NULL;
	if (!online)
		return 0;
	if (fs_uring_cpus("/sys/devices/system/cpu/online", online, u->queues) == 0)
		memset(online, 1, u->queues); /* not known: as if every CPU were */
	*offline = 0;
	for (unsigned q = 0; q < u->queues; q++) {
		n += online[q] ? u->threads : 1;
		*offline += !online[q];
	}
	/* n is at most FS_URING_CPUS_MAX * FS_URING_THREADS_LIMIT: no overflow. */
	workers = aligned_alloc(FS_URING_LINE, n * sizeof(*workers));
	if (workers) {
		memset(workers, 0, n * sizeof(*workers));
		for (unsigned q = 0; q < u->queues; q++)
			for (unsigned k = 0; k < (online[q] ? u->threads : 1); k++)
				workers[i++].qid = q;
	}
	free(online);
	*out = workers;
	return workers ? n : 0;
}

/* Start the ring threads and wait until each has its ring and buffers: 0 when all have. */
static int fs_uring_spawn(struct fs_uring *u)
{
	struct fs_uring_worker *workers;
	unsigned offline = 0;
	size_t n = fs_uring_layout(u, &workers, &offline), i;
	int r = 0;

	if (!n)
		return -1;
	pthread_mutex_lock(&u->lock);
	u->workers = workers;
	u->nworkers = n;
	u->offline = offline;
	pthread_mutex_unlock(&u->lock);
	for (i = 0; i < n; i++) {
		sigset_t all, old;

		/* The ring threads must not take the daemon's signals (libfuse's handlers end
		 * the loop in the thread that gets them). */
		sigfillset(&all);
		pthread_sigmask(SIG_BLOCK, &all, &old);
		r = pthread_create(&u->workers[i].thread, NULL, fs_uring_worker_main,
				   &u->workers[i]);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		if (r != 0)
			break;
		u->workers[i].started = true;
		u->spawned++;
	}
	pthread_mutex_lock(&u->lock);
	while (u->ready + u->failed < u->spawned)
		pthread_cond_wait(&u->cond, &u->lock);
	if (r == 0 && u->failed)
		r = u->error;
	pthread_mutex_unlock(&u->lock);
	if (r != 0) {
		errno = r;
		return -1;
	}
	return 0;
}

/* Let the threads register their entries (go 1) or end (go -1). */
static void fs_uring_release(struct fs_uring *u, int go)
{
	pthread_mutex_lock(&u->lock);
	if (u->go == 0)
		u->go = go;
	if (go > 0 && u->state == FS_URING_WAITING)
		u->state = FS_URING_RUNNING;
	pthread_cond_broadcast(&u->cond);
	pthread_mutex_unlock(&u->lock);
}

int fs_uring_attach(struct fuse_session *se, unsigned threads)
{
	struct fs_uring *u = &fs_uring_global;
	static const struct fuse_custom_io io = { .read = fs_uring_read,
						  .writev = fs_uring_writev };

	if (threads == 0 || threads > FS_URING_THREADS_LIMIT) {
		errno = EINVAL;
		return -1;
	}
	if (u->se) {
		errno = EBUSY;
		return -1;
	}
	if (!fs_uring_switch_on()) {
		errno = EOPNOTSUPP;
		return -1;
	}
	/* The kernel makes one queue per possible CPU. */
	u->queues = fs_uring_cpus("/sys/devices/system/cpu/possible", NULL, 0);
	if (u->queues == 0) {
		errno = ENOENT;
		return -1;
	}
	u->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (u->stop_fd < 0)
		return -1;
	u->se = se;
	u->fd = fuse_session_fd(se);
	u->threads = threads;
	u->state = FS_URING_WAITING;
	if (fuse_session_custom_io(se, &io, u->fd) != 0) {
		u->state = FS_URING_OFF;
		u->se = NULL;
		errno = EIO;
		return -1;
	}
	return 0;
}

void fs_uring_stop(void)
{
	struct fs_uring *u = &fs_uring_global;
	size_t n = u->nworkers, i;
	struct fs_uring_worker *workers;
	uint64_t one = 1;

	if (!u->se)
		return;
	fs_uring_release(u, -1); /* threads still waiting to start: end */
	if (u->stop_fd >= 0 && write(u->stop_fd, &one, sizeof(one)) != sizeof(one))
		u->error = errno;
	for (i = 0; u->workers && i < n; i++) {
		struct fs_uring_worker *w = &u->workers[i];

		if (w->started)
			pthread_join(w->thread, NULL);
		if (w->ring_up)
			io_uring_queue_exit(&w->ring);
		if (w->buf) {
			explicit_bzero(w->buf, FS_URING_GAP + w->high);
			munmap(w->buf, w->buf_len);
		}
		free(w->hdr);
	}
	pthread_mutex_lock(&u->lock);
	workers = u->workers;
	for (i = 0; workers && i < n; i++)
		u->requests += workers[i].requests;
	u->workers = NULL;
	u->nworkers = 0;
	pthread_mutex_unlock(&u->lock);
	free(workers);
	if (u->stop_fd >= 0)
		close(u->stop_fd);
	u->stop_fd = -1;
}

enum fs_uring_state fs_uring_state(int *error)
{
	struct fs_uring *u = &fs_uring_global;
	enum fs_uring_state s;

	pthread_mutex_lock(&u->lock);
	s = u->state;
	if (error)
		*error = u->error;
	pthread_mutex_unlock(&u->lock);
	return s;
}

unsigned long long fs_uring_requests(void)
{
	struct fs_uring *u = &fs_uring_global;
	unsigned long long total;
	size_t n, i;

	pthread_mutex_lock(&u->lock);
	total = u->requests;
	n = u->nworkers;
	for (i = 0; u->workers && i < n; i++)
		total += __atomic_load_n(&u->workers[i].requests, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&u->lock);
	return total;
}

unsigned fs_uring_offline_cpus(void)
{
	struct fs_uring *u = &fs_uring_global;
	unsigned n;

	pthread_mutex_lock(&u->lock);
	n = u->offline;
	pthread_mutex_unlock(&u->lock);
	return n;
}
