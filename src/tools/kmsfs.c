/* kmsfs - mount a key management service as files.
 *
 * Start-up order matters: everything that can fail for a reason the admin must fix (options,
 * state directory, root key, another daemon on the same state) fails before anything is mounted,
 * with a message on stderr; then mount; then daemonise (the parent exits 0 once the mount is
 * live); then start threads and lock memory, which do not survive fork. */
#include "fs/kms_fs.h"
#include "fs/fs_session.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/kms_err.h"
#include "common/kms_log.h"
#include "common/kms_secmem.h"
#include "store/kms_store.h"

#ifndef KMSFS_VERSION
#define KMSFS_VERSION "unknown"
#endif

struct kmsfs_config {
	char *state;
	char *log;
	char *region;
	char *root_key;
	unsigned mailbox_ttl;
	unsigned key_quota;
	unsigned secure_heap_kib;
	int no_mlock;
	char *audit;
	int no_default_permissions;
};

#define KMSFS_OPT(t, p) { t, offsetof(struct kmsfs_config, p), 1 }
static const struct fuse_opt kmsfs_opts[] = {
	KMSFS_OPT("state=%s", state),
	KMSFS_OPT("log=%s", log),
	KMSFS_OPT("region=%s", region),
	KMSFS_OPT("root_key=%s", root_key),
	KMSFS_OPT("mailbox_ttl=%u", mailbox_ttl),
	KMSFS_OPT("key_quota=%u", key_quota),
	KMSFS_OPT("secure_heap=%u", secure_heap_kib),
	KMSFS_OPT("no_mlock", no_mlock),
	KMSFS_OPT("audit=%s", audit),
	KMSFS_OPT("no_default_permissions", no_default_permissions),
	FUSE_OPT_END,
};

static void kmsfs_usage(const char *prog)
{
	printf("usage: %s MOUNTPOINT -o state=DIR [options]\n"
	       "\n"
	       "kmsfs options:\n"
	       "    -o state=DIR           state directory: key database, root key, token key (required)\n"
	       "    -o root_key=FILE       root key file (default DIR/root.key)\n"
	       "    -o log=FILE            log file (default: stderr with -f, else DIR/kmsfs.log)\n"
	       "    -o mailbox_ttl=SECONDS how long an unread shell response waits (default 30)\n"
	       "    -o key_quota=N         keys per project (default 100)\n"
	       "    -o region=NAME         region in key URNs and realm (default eu-de)\n"
	       "    -o secure_heap=KIB     locked memory for key material (default 4096)\n"
	       "    -o no_mlock            do not lock the daemon's memory\n"
	       "    -o allow_other         let other users in (then tokens decide what they may do)\n"
	       "    -o audit=FILE          append one JSON line per request; a failed write fails it\n"
	       "    -o no_default_permissions  do not let the kernel enforce project modes\n"
	       "\n",
	       prog);
}

/* A mount left by a killed daemon answers ENOTCONN; detach it (and any stacked under it) so we
 * can mount again. statfs, unlike stat, always reaches the daemon: the kernel may answer stat of
 * the mount root from its attribute cache. */
static void kmsfs_clear_stale_mount(const char *mountpoint)
{
	struct statfs sfs;

	for (int i = 0; i < 16; i++) {
		if (statfs(mountpoint, &sfs) == 0 || errno != ENOTCONN)
			return;
		if (umount2(mountpoint, MNT_DETACH) == 0) {
			kms_log_warning("detached a stale mount on '%s' left by a daemon that died",
					mountpoint);
			continue;
		}
		{
			pid_t pid = fork();
			int status = 1;

			if (pid == 0) {
				execlp("fusermount3", "fusermount3", "-uz", mountpoint, (char *)NULL);
				_exit(127);
			}
			if (pid < 0 || waitpid(pid, &status, 0) < 0 || status != 0)
				return;
		}
	}
}

/* Tell kmsctl who serves this state directory, so it can make policy changes take effect at
 * once (it asks the mount for user.kms.refresh). */
static void kmsfs_publish(int lock_fd, const char *mountpoint)
{
	char abs[4096], line[4200];
	int n;

	if (!realpath(mountpoint, abs))
		return;
	n = snprintf(line, sizeof(line), "%d\n%s\n", (int)getpid(), abs);
	if (n > 0 && (size_t)n < sizeof(line) && ftruncate(lock_fd, 0) == 0)
		(void)!pwrite(lock_fd, line, (size_t)n, 0);
}

static int kmsfs_lock_state(const char *state)
{
	char path[4200];
	int fd;

	if ((size_t)snprintf(path, sizeof(path), "%s/daemon.lock", state) >= sizeof(path))
		return -1;
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		fprintf(stderr, "kmsfs: cannot open '%s': %s\n", path, strerror(errno));
		return -1;
	}
	/* A daemon that was just unmounted may still be exiting: give it a moment. */
	for (int i = 0; i < 30 && flock(fd, LOCK_EX | LOCK_NB) != 0; i++)
		usleep(100000);
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		fprintf(stderr,
			"kmsfs: another kmsfs daemon is serving state directory '%s'; unmount it "
			"first (fusermount3 -u MOUNTPOINT)\n",
			state);
		close(fd);
		return -1;
	}
	return fd; /* held until exit; inherited across daemonising */
}

__attribute__((format(printf, 2, 0))) static void kmsfs_fuse_log(enum fuse_log_level level,
								  const char *fmt, va_list ap)
{
	char msg[512];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	msg[strcspn(msg, "\n")] = 0;
	kms_log(level <= FUSE_LOG_ERR ? KMS_LOG_ERROR
		: level <= FUSE_LOG_WARNING ? KMS_LOG_WARNING
		: level <= FUSE_LOG_INFO ? KMS_LOG_INFO : KMS_LOG_DEBUG,
		"libfuse: %s", msg);
}

static void kmsfs_report_hardening(const struct kms_harden_report *hr)
{
	if (!hr->not_dumpable || !hr->no_core)
		kms_log_warning("could not disable core dumps; key material could reach a core file");
	if (hr->lock_skipped)
		kms_log_warning("memory not locked (sanitizer build): key material may be swapped");
	else if (!hr->memory_locked)
		kms_log_warning("mlockall failed (%s): key material may be swapped; raise "
				"RLIMIT_MEMLOCK or run as root",
				strerror(hr->lock_errno));
	if (!hr->secure_heap)
		kms_log_warning("OpenSSL secure heap unavailable: key material is in normal memory");
}

int main(int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct kmsfs_config cfg = { .secure_heap_kib = 4096 };
	struct fuse_cmdline_opts opts = { 0 };
	struct fuse_session *se = NULL;
	struct store_options sopt = { 0 };
	struct kms_harden_report hr;
	struct fs_options fopt = { .audit_fd = -1 };
	struct store *store = NULL;
	struct fs *fs = NULL;
	FILE *logf = NULL;
	char why[512], state_abs[4096];
	int ret = 1, lock_fd = -1, r;

	umask(077);
	if (fuse_opt_parse(&args, &cfg, kmsfs_opts, NULL) != 0)
		goto out;
	if (fuse_parse_cmdline(&args, &opts) != 0)
		goto out;
	if (opts.show_help) {
		kmsfs_usage(argv[0]);
		fuse_cmdline_help();
		fuse_lowlevel_help();
		ret = 0;
		goto out;
	}
	if (opts.show_version) {
		printf("kmsfs %s (libfuse %s)\n", KMSFS_VERSION, fuse_pkgversion());
		ret = 0;
		goto out;
	}
	if (!opts.mountpoint || !cfg.state) {
		fprintf(stderr, "kmsfs: usage: %s MOUNTPOINT -o state=DIR [-f] [-o allow_other]\n"
				"       (kmsfs --help lists all options)\n",
			argv[0]);
		ret = 2;
		goto out;
	}
	/* Absolute paths: daemonising changes the working directory to /. */
	if (mkdir(cfg.state, 0700) != 0 && errno != EEXIST) {
		fprintf(stderr, "kmsfs: cannot create state directory '%s': %s\n", cfg.state,
			strerror(errno));
		goto out;
	}
	if (!realpath(cfg.state, state_abs)) {
		fprintf(stderr, "kmsfs: state directory '%s': %s\n", cfg.state, strerror(errno));
		goto out;
	}
	if (cfg.log || !opts.foreground) {
		char path[4200];

		snprintf(path, sizeof(path), "%s", cfg.log ? cfg.log : state_abs);
		if (!cfg.log)
			strncat(path, "/kmsfs.log", sizeof(path) - strlen(path) - 1);
		logf = fopen(path, "ae");
		if (!logf) {
			fprintf(stderr, "kmsfs: cannot open log file '%s': %s\n", path,
				strerror(errno));
			goto out;
		}
		kms_log_set_stream(logf);
	}
	fuse_set_log_func(kmsfs_fuse_log);
	if ((lock_fd = kmsfs_lock_state(state_abs)) < 0)
		goto out;
	sopt.state_dir = state_abs;
	sopt.create = true;
	sopt.region = cfg.region;
	sopt.root_key_file = cfg.root_key;
	r = store_open(&sopt, &store, why, sizeof(why));
	if (r < 0) {
		fprintf(stderr, "kmsfs: %s\n", why);
		kms_log_error("%s", why);
		goto out;
	}
	if (cfg.audit) {
		fopt.audit_fd = open(cfg.audit, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
		if (fopt.audit_fd < 0) {
			fprintf(stderr, "kmsfs: cannot open audit file '%s': %s\n", cfg.audit,
				strerror(errno));
			goto out;
		}
	} else {
		fopt.audit_fd = -1;
	}
	fopt.store = store;
	fopt.mailbox_ttl_s = cfg.mailbox_ttl;
	fopt.key_quota = cfg.key_quota;
	if ((r = fs_new(&fopt, &fs)) < 0) {
		fprintf(stderr, "kmsfs: cannot set up: %s\n", kms_err_info(r)->message);
		goto out;
	}
	kmsfs_clear_stale_mount(opts.mountpoint);
	/* The kernel enforces each project's owner, group and modes (kmsctl project set). */
	if (!cfg.no_default_permissions && fuse_opt_add_arg(&args, "-odefault_permissions") != 0)
		goto out;
	se = fuse_session_new(&args, fs_lowlevel_ops(), sizeof(*fs_lowlevel_ops()), fs);
	if (!se)
		goto out;
	if (fuse_set_signal_handlers(se) != 0)
		goto out;
	if (fuse_session_mount(se, opts.mountpoint) != 0) {
		fprintf(stderr, "kmsfs: cannot mount on '%s'\n", opts.mountpoint);
		goto out_handlers;
	}
	if (!opts.foreground)
		store_detach(store);
	fuse_daemonize(opts.foreground);
	if (!opts.foreground && store_reopen(store, why, sizeof(why)) < 0) {
		kms_log_error("%s", why);
		goto out_unmount;
	}
	kmsfs_publish(lock_fd, opts.mountpoint);
	kms_harden_process((size_t)cfg.secure_heap_kib * 1024, !cfg.no_mlock, &hr);
	kmsfs_report_hardening(&hr);
	if (fs_start(fs) < 0) {
		kms_log_error("cannot start the mailbox janitor thread");
		goto out_unmount;
	}
	kms_log_info("kmsfs %s serving '%s' from state '%s'", KMSFS_VERSION, opts.mountpoint,
		     state_abs);
	ret = fs_session_loop(se, &opts);
	kms_log_info("kmsfs stopped serving '%s'", opts.mountpoint);
out_unmount:
	fuse_session_unmount(se);
out_handlers:
	fuse_remove_signal_handlers(se);
out:
	if (se)
		fuse_session_destroy(se);
	fs_free(fs);
	store_close(store);
	if (lock_fd >= 0)
		close(lock_fd);
	free(opts.mountpoint);
	fuse_opt_free_args(&args);
	free(cfg.state);
	free(cfg.log);
	free(cfg.region);
	free(cfg.root_key);
	free(cfg.audit);
	if (fopt.audit_fd > 0)
		close(fopt.audit_fd);
	if (logf)
		fclose(logf);
	return ret;
}
