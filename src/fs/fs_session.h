/* fs_session.h - the libfuse loop as kmsfs runs it, shared with the bench's null daemon so that
 * the baseline is measured with exactly kmsfs's session settings. Header-only: the null daemon
 * links no kmsfs library. FUSE_USE_VERSION must be defined first (kms_fs.h does). */
#pragma once

#ifndef FUSE_USE_VERSION
#error "define FUSE_USE_VERSION before including fs_session.h"
#endif
#include <fuse_lowlevel.h>
#include <limits.h>
#include <signal.h>

#define FS_MAX_THREADS_DEFAULT 16u
#define FS_MAX_THREADS_LIMIT   1024u

/* Run the session as the command line asks: single-threaded, or multithreaded with clone_fd,
 * max_idle_threads and max_threads (default 16: libfuse 3.14 leaves it at UINT_MAX unless
 * -o max_threads is given). 0 when it stopped in order (unmount, or SIGTERM, SIGINT or SIGHUP,
 * whose number libfuse's signal handler leaves as the loop's result), else 1. */
static inline int fs_session_loop(struct fuse_session *se, const struct fuse_cmdline_opts *o)
{
	unsigned threads = o->max_threads && o->max_threads <= FS_MAX_THREADS_LIMIT
				   ? o->max_threads
				   : FS_MAX_THREADS_DEFAULT;
	struct fuse_loop_config *loop;
	int r;

	if (o->singlethread) {
		r = fuse_session_loop(se);
	} else {
		loop = fuse_loop_cfg_create();
		if (!loop)
			return 1;
		fuse_loop_cfg_set_clone_fd(loop, (unsigned)o->clone_fd);
		if (o->max_idle_threads != UINT_MAX) /* UINT_MAX: libfuse's "no limit" default */
			fuse_loop_cfg_set_idle_threads(loop, o->max_idle_threads);
		fuse_loop_cfg_set_max_threads(loop, threads);
		r = fuse_session_loop_mt(se, loop);
		fuse_loop_cfg_destroy(loop);
	}
	return r == 0 || r == SIGTERM || r == SIGINT || r == SIGHUP ? 0 : 1;
}
