/* fs_uring.h - FUSE requests over io_uring (kernel 6.14 and later) beside libfuse 3.14's loop.
 *
 * With the fuse module's enable_uring on, the kernel hands each request to a ring queue of the
 * CPU its caller runs on, and a daemon thread that waits on that queue answers it there: the
 * caller and the daemon meet on one CPU, instead of waking each other across CPUs at every
 * round trip (this VM pays about 50 us for such a wake-up, 4 us on one CPU; see
 * docs/operations.md, "FUSE over io_uring").
 *
 * libfuse 3.14 knows nothing of this, so the module sits under it as its custom I/O
 * (fuse_session_custom_io): it asks for io_uring in the INIT reply, and once the kernel agreed,
 * starts per CPU queue a few threads (one for a CPU not online), each with its own ring and one
 * registered entry. A thread turns a request from its entry into the byte stream libfuse would
 * have read from /dev/fuse, lets libfuse dispatch it to the usual handlers, and takes the reply
 * the handler writes back into the entry (commit and fetch the next request in one system call).
 * FORGET and INTERRUPT, and every request until all queues are registered, still come through
 * /dev/fuse and the usual loop, which keeps running beside the rings. Shared with the bench's
 * null daemon. */
#pragma once

#ifndef FUSE_USE_VERSION
#error "define FUSE_USE_VERSION before including fs_uring.h"
#endif
#include <fuse_lowlevel.h>
#include <stdbool.h>

#define FS_URING_THREADS_DEFAULT 4u /* per CPU queue */
#define FS_URING_THREADS_LIMIT	 64u
#define FS_URING_CPUS_MAX	 65536u /* beyond any kernel's NR_CPUS: a list naming more is refused */

/* Where the kernel's switch is. */
#define FS_URING_SWITCH "/sys/module/fuse/parameters/enable_uring"

/* What became of a session's rings (fs_uring_state). */
enum fs_uring_state {
	FS_URING_OFF = 0, /* not asked for */
	FS_URING_WAITING, /* installed; the INIT request has not come yet */
	FS_URING_REFUSED, /* the kernel did not offer io_uring at INIT (enable_uring off) */
	FS_URING_FAILED,  /* offered, but a ring or a thread could not be set up */
	FS_URING_RUNNING, /* every queue has its threads: requests come over io_uring */
};

/* Install the rings under se (after fuse_session_mount, before the loop): threads per CPU
 * queue, 1..FS_URING_THREADS_LIMIT. 0, or -1 with errno (the kernel switch is off: EOPNOTSUPP;
 * one session per process: EBUSY). The session then runs on /dev/fuse until its INIT. */
int fs_uring_attach(struct fuse_session *se, unsigned threads) __attribute__((warn_unused_result));

/* Stop and join the ring threads (after the loop returned, before fuse_session_unmount). */
void fs_uring_stop(void);

/* The state, and the errno of a failure (FS_URING_FAILED), for the daemon's log. */
enum fs_uring_state fs_uring_state(int *error);

/* CPUs the kernel made a queue for that were not online at the mount: their queues got one
 * thread each, not the number asked for. */
unsigned fs_uring_offline_cpus(void);

/* Requests answered over the rings since the mount. */
unsigned long long fs_uring_requests(void);

/* A CPU list as sysfs writes it ("0-1", "0-3,5", ...): the highest CPU it names + 1, or 0 when it
 * names none, is malformed, or names one beyond FS_URING_CPUS_MAX. Marks the CPUs below cap in
 * set (if set). For the possible CPUs (one queue each) and the online ones (threads). */
unsigned fs_uring_cpu_list(const char *text, unsigned char *set, unsigned cap);

/* Is the kernel switch on? */
bool fs_uring_switch_on(void);
