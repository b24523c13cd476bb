/* kmsfs - mount a key management service as files.
 *
 * Start-up order matters. Without -f the process forks first: the child does everything and the
 * parent waits, exiting 0 once the mount is live or with the child's status when it gives up, so
 * no fork comes between the secrets and the process that holds them. The serving process then
 * hardens itself (secure heap, not dumpable, no core, locked memory), only then reads the root
 * key and the token secret, checks everything the admin must fix (state directory, root key,
 * another daemon on the same state, audit file), mounts, and leaves the terminal. Every error
 * that stops a start is one line on stderr (and in the log). */
#define _GNU_SOURCE /* asprintf, pipe2 */
#include "fs/kms_fs.h"
#include "fs/fs_session.h"
#include "fs/fs_uring.h"

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <stdarg.h>
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

#ifdef KMSFS_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#ifndef KMSFS_VERSION
#define KMSFS_VERSION "unknown"
#endif

struct kmsfs_config {
	char *words[2]; /* [SOURCE] MOUNTPOINT: mount(8) passes a source (kmsfs_opt_proc) */
	unsigned nwords;
	char *state;
	char *log;
	char *region;
	char *root_key;
	char *pkcs11_module;
	char *pkcs11_pin_file;
	unsigned mailbox_ttl;
	unsigned key_quota;
	unsigned secure_heap_kib;
	int no_mlock;
	char *audit;
	int no_default_permissions;
	char *metrics_group;
	int forget_tokens;
	/* The shared store (-o store=URI) and its bounds, checked by kmsfs_store_options. */
	char *store;
	char *key_cache;
	char *store_timeout;
	char *offline_grace;
	/* FUSE requests over io_uring: auto (when the kernel's switch is on), on, off. */
	char *io_uring;
	char *io_uring_threads;
	bool after_store; /* the option before the one kmsfs_opt_proc looks at was store= */
};

enum { KMSFS_KEY_STORE = 100 };

#define KMSFS_OPT(t, p)                                                                            \
	{                                                                                          \
		t, offsetof(struct kmsfs_config, p), 1                                             \
	}
static const struct fuse_opt kmsfs_opts[] = {
	KMSFS_OPT("state=%s", state),
	KMSFS_OPT("log=%s", log),
	KMSFS_OPT("region=%s", region),
	KMSFS_OPT("root_key=%s", root_key),
	KMSFS_OPT("pkcs11_module=%s", pkcs11_module),
	KMSFS_OPT("pkcs11_pin_file=%s", pkcs11_pin_file),
	KMSFS_OPT("mailbox_ttl=%u", mailbox_ttl),
	KMSFS_OPT("key_quota=%u", key_quota),
	KMSFS_OPT("secure_heap=%u", secure_heap_kib),
	KMSFS_OPT("no_mlock", no_mlock),
	KMSFS_OPT("audit=%s", audit),
	KMSFS_OPT("no_default_permissions", no_default_permissions),
	KMSFS_OPT("metrics_group=%s", metrics_group),
	KMSFS_OPT("forget_tokens", forget_tokens),
	FUSE_OPT_KEY("store=", KMSFS_KEY_STORE),
	KMSFS_OPT("key_cache=%s", key_cache),
	KMSFS_OPT("store_timeout=%s", store_timeout),
	KMSFS_OPT("offline_grace=%s", offline_grace),
	KMSFS_OPT("io_uring=%s", io_uring),
	KMSFS_OPT("io_uring_threads=%s", io_uring_threads),
	FUSE_OPT_END,
};

/* -o store=URI: kept whole (libfuse has already turned "\," into ","). The last one counts. */
static int kmsfs_store_option(struct kmsfs_config *cfg, const char *arg)
{
	kms_free_string_wiped(cfg->store); /* store= given twice: the first may hold a password */
	cfg->store = strdup(arg + strlen("store="));
	cfg->after_store = true;
	return cfg->store ? 0 : -1;
}

/* A ',' in -o separates options, also inside store=: "store=postgresql://db1,db2/kms" reaches us
 * as store=postgresql://db1 and an option "db2/kms". An option right after store= that no
 * option looks like (a '/', ':', '?', '@' or blank before any '=') is the rest of the URI:
 * refuse it with the rule rather than let libfuse call it unknown. */
static bool kmsfs_store_fragment(const struct kmsfs_config *cfg, const char *arg)
{
	char shown[512], rest[512];

	if (strcspn(arg, "/:?@ ") >= strcspn(arg, "="))
		return false;
	store_uri_describe(cfg->store, shown, sizeof(shown));
	snprintf(rest, sizeof(rest), "%s", arg);
	store_uri_hide_password(rest);
	fprintf(stderr,
		"%skmsfs: -o store=%s is followed by '%s': a ',' inside -o separates options; "
		"write each ',' of the store's URI as '\\,' (-o "
		"'store=postgresql://db1\\,db2/kms')\n",
		kms_log_stderr_prefix(KMS_LOG_ERROR), shown, rest);
	return true;
}

/* mount(8) runs `kmsfs SOURCE MOUNTPOINT -o OPTIONS` (through mount.fuse3, for the type
 * fuse.kmsfs): the words are kept aside (kmsfs_take_words), and options that mean something to
 * mount(8) only, or that a key service must not have (dev and suid, which mount.fuse3 adds), are
 * dropped. */
static int kmsfs_opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	static const char *const mount_only[] = { "",	      "auto", "noauto", "nofail",
						  "_netdev",  "user", "users",	"nouser",
						  "defaults", "dev",  "suid",	NULL };
	struct kmsfs_config *cfg = data;
	bool after_store = cfg->after_store;

	cfg->after_store = false;
	if (key == KMSFS_KEY_STORE)
		return kmsfs_store_option(cfg, arg);
	if (key == FUSE_OPT_KEY_NONOPT) {
		if (cfg->nwords == 2) {
			fprintf(stderr,
				"kmsfs: unexpected argument '%s' (kmsfs [SOURCE] MOUNTPOINT)\n",
				arg);
			return -1;
		}
		cfg->words[cfg->nwords] = strdup(arg);
		return cfg->words[cfg->nwords++] ? 0 : -1;
	}
	if (key != FUSE_OPT_KEY_OPT)
		return 1;
	if (after_store && kmsfs_store_fragment(cfg, arg))
		return -1;
	if (strncmp(arg, "x-", 2) == 0 || strncmp(arg, "comment=", 8) == 0)
		return 0;
	for (size_t i = 0; mount_only[i]; i++)
		if (strcmp(arg, mount_only[i]) == 0)
			return 0;
	return 1;
}

/* Give libfuse the mount point back, and name the mount after SOURCE (fsname: mount(8) and
 * findmnt match the fstab line with /proc/mounts by it), keeping the type fuse.kmsfs (libfuse
 * names the type after the program only when no fsname is given). An absolute SOURCE is the
 * state directory when state= is not given. */
static int kmsfs_take_words(struct fuse_args *args, struct kmsfs_config *cfg)
{
	const char *source = cfg->nwords == 2 ? cfg->words[0] : NULL;
	char *escaped = NULL, *fsname = NULL;
	int r = 0;

	if (cfg->nwords)
		r = fuse_opt_add_arg(args, cfg->words[cfg->nwords - 1]);
	if (r == 0 && source) {
		/* A comma in SOURCE must not start another option. */
		if (fuse_opt_add_opt_escaped(&escaped, source) != 0 ||
		    asprintf(&fsname, "-osubtype=kmsfs,fsname=%s", escaped) < 0)
			fsname = NULL;
		r = fsname ? fuse_opt_add_arg(args, fsname) : -1;
		free(escaped);
		free(fsname);
	}
	if (r == 0 && source && source[0] == '/' && !cfg->state && !(cfg->state = strdup(source)))
		r = -1;
	return r;
}

/* The whole option list, kmsfs's and the libfuse ones kmsfs supports, with kmsfs's defaults
 * (libfuse's own help says max_threads 10 and lists allow_other once more). The Options section
 * of docs/operations.md lists the same options (tests/integration/cases/cli-help-version.sh
 * compares them). */
static void kmsfs_usage(const char *prog)
{
	printf("usage: %s [SOURCE] MOUNTPOINT -o state=DIR [options]\n"
	       "\n"
	       "Without -f kmsfs returns once the mount is live and serves in the background.\n"
	       "SIGHUP reopens the log and audit files (log rotation); SIGTERM, SIGINT or\n"
	       "fusermount3 -u MOUNTPOINT stop it. Under systemd (Type=notify) it reports\n"
	       "READY=1 once the mount answers.\n"
	       "\n"
	       "mount -t fuse.kmsfs and /etc/fstab run kmsfs SOURCE MOUNTPOINT -o OPTIONS:\n"
	       "SOURCE names the mount (an absolute path is the state directory if state= is\n"
	       "not given); the mount-only options nofail, _netdev, auto, noauto, user, users,\n"
	       "nouser, defaults, x-* and comment=* are ignored, and so are dev and suid\n"
	       "(kmsfs always mounts nodev,nosuid).\n"
	       "\n"
	       "options:\n"
	       "    -o state=DIR           state directory: key database, root key\n"
	       "                           (required; created 0700 on the first start)\n"
	       "    -o root_key=FILE       root key file (default DIR/root.key)\n"
	       "    -o root_key=pkcs11:URI  root key in a PKCS#11 token (RFC 7512 URI, e.g.\n"
	       "                           pkcs11:token=T;object=O; docs/root-of-trust.md)\n"
	       "    -o pkcs11_module=PATH  PKCS#11 module (default p11-kit's proxy)\n"
	       "    -o pkcs11_pin_file=FILE  the token's PIN (default: the URI's pin source)\n"
	       "    -o log=FILE            log file (default: stderr with -f, else DIR/kmsfs.log)\n"
	       "    -o log=syslog          log to syslog (facility daemon) instead\n"
	       "    -o audit=FILE          append one JSON line per request; a failed write fails "
	       "it\n"
	       "    -o mailbox_ttl=SECONDS how long an unread shell response waits (default 30)\n"
	       "    -o key_quota=N         keys per project (default 100)\n"
	       "    -o region=NAME         region in key URNs and realm (default eu-de)\n"
	       "    -o secure_heap=KIB     locked memory for key material (default 4096)\n"
	       "    -o no_mlock            do not lock the daemon's memory\n"
	       "    -o no_default_permissions  do not let the kernel enforce project modes\n"
	       "    -o metrics_group=GROUP  who besides root may read /kms/.metrics, .status\n"
	       "    -o forget_tokens       do not remember token bindings across restarts (and\n"
	       "                           delete this host's remembered ones at start)\n"
	       "    -o store=URI           keys in a PostgreSQL database that several hosts share: "
	       "a\n"
	       "                           libpq URI or keyword string, each ',' written '\\,'\n"
	       "                           (default: SQLite in the state directory)\n"
	       "    -o key_cache=N         most keys held in memory at once (default %u)\n"
	       "    -o store_timeout=SECONDS  bound on reaching a shared store (default %u)\n"
	       "    -o offline_grace=SECONDS  serve cached keys this long while a shared store\n"
	       "                           cannot be reached (default %d; 0: not at all)\n"
	       "    -o allow_other         let other users in (then tokens decide what they may "
	       "do)\n"
	       "    -o allow_root          let root in besides the user who mounted\n"
	       "    -o auto_unmount        remove the mount when the daemon dies\n"
	       "    -o max_threads=N       FUSE worker threads (default %u, up to %u)\n"
	       "    -o max_idle_threads=N  idle worker threads kept (default: no limit)\n"
	       "    -o clone_fd            one /dev/fuse descriptor per worker thread\n"
	       "    -o io_uring=MODE       FUSE requests over io_uring, on the caller's CPU: auto\n"
	       "                           (default: when the kernel's enable_uring is on, not\n"
	       "                           with -s), on (refuse to start without it), off\n"
	       "    -o io_uring_threads=N  io_uring threads per CPU (default %u, up to %u)\n"
	       "    -f                     stay in the foreground\n"
	       "    -s                     one thread serves every request\n"
	       "    -d, -o debug           libfuse debug output on stderr (implies -f)\n"
	       "    -h, --help             print this help\n"
	       "    -V, --version          print the version\n",
	       prog, STORE_DEFAULT_KEY_CACHE, STORE_DEFAULT_TIMEOUT_MS / 1000,
	       STORE_DEFAULT_OFFLINE_GRACE_MS / 1000, FS_MAX_THREADS_DEFAULT, FS_MAX_THREADS_LIMIT,
	       FS_URING_THREADS_DEFAULT, FS_URING_THREADS_LIMIT);
}

/* -o NAME=VALUE, a whole number from min to max; unset: keeps *out. */
static bool kmsfs_number(const char *name, const char *value, unsigned long min, unsigned long max,
			 unsigned long *out)
{
	unsigned long n;
	char *end;

	if (!value)
		return true;
	errno = 0;
	n = strtoul(value, &end, 10);
	if (value[0] >= '0' && value[0] <= '9' && !*end && !errno && n >= min && n <= max) {
		*out = n;
		return true;
	}
	fprintf(stderr, "%skmsfs: -o %s=%s: give a whole number from %lu to %lu\n",
		kms_log_stderr_prefix(KMS_LOG_ERROR), name, value, min, max);
	return false;
}

/* -o store, key_cache, store_timeout, offline_grace into the store's options. */
static bool kmsfs_store_options(const struct kmsfs_config *cfg, struct store_options *sopt)
{
	unsigned long cache = STORE_DEFAULT_KEY_CACHE, timeout = STORE_DEFAULT_TIMEOUT_MS / 1000,
		      grace = STORE_DEFAULT_OFFLINE_GRACE_MS / 1000;

	if (cfg->store && !cfg->store[0]) {
		fprintf(stderr,
			"%skmsfs: -o store= needs a URI (postgresql://HOST/DB or 'host=DIR "
			"dbname=DB'); without store= the keys stay in SQLite in the state "
			"directory\n",
			kms_log_stderr_prefix(KMS_LOG_ERROR));
		return false;
	}
	if (!kmsfs_number("key_cache", cfg->key_cache, 1, 100000000, &cache) ||
	    !kmsfs_number("store_timeout", cfg->store_timeout, 1, 3600, &timeout) ||
	    !kmsfs_number("offline_grace", cfg->offline_grace, 0, 86400, &grace))
		return false;
	sopt->backend = cfg->store;
	sopt->key_cache = (unsigned)cache;
	sopt->timeout_ms = (unsigned)timeout * 1000;
	sopt->offline_grace_ms = (int64_t)grace * 1000;
	return true;
}

/* -o io_uring and io_uring_threads: the ring threads per CPU to start, 0 for /dev/fuse only.
 * With -s (one thread serves every request) auto means off. */
static bool kmsfs_uring_options(const struct kmsfs_config *cfg, bool single, unsigned *threads)
{
	const char *mode = cfg->io_uring ? cfg->io_uring : "auto";
	unsigned long n = FS_URING_THREADS_DEFAULT;

	if (!kmsfs_number("io_uring_threads", cfg->io_uring_threads, 1, FS_URING_THREADS_LIMIT, &n))
		return false;
	*threads = 0;
	if (strcmp(mode, "off") == 0)
		return true;
	if (strcmp(mode, "auto") != 0 && strcmp(mode, "on") != 0) {
		fprintf(stderr, "%skmsfs: -o io_uring=%s: give auto, on or off\n",
			kms_log_stderr_prefix(KMS_LOG_ERROR), mode);
		return false;
	}
	if (single) {
		if (strcmp(mode, "on") == 0) {
			fprintf(stderr, "%skmsfs: -o io_uring=on and -s: io_uring needs threads\n",
				kms_log_stderr_prefix(KMS_LOG_ERROR));
			return false;
		}
		return true;
	}
	if (!fs_uring_switch_on()) {
		if (strcmp(mode, "on") == 0) {
			fprintf(stderr,
				"%skmsfs: -o io_uring=on: the kernel's FUSE-over-io_uring is off "
				"(%s is not Y; a root can turn it on with `echo Y > %s`, it needs "
				"Linux 6.14 or later)\n",
				kms_log_stderr_prefix(KMS_LOG_ERROR), FS_URING_SWITCH,
				FS_URING_SWITCH);
			return false;
		}
		return true;
	}
	*threads = (unsigned)n;
	return true;
}

/* systemd's notification socket (sd_notify(3), Type=notify): nothing without NOTIFY_SOCKET, or
 * in a build without libsystemd. */
__attribute__((format(printf, 1, 2))) static void kmsfs_notify(const char *fmt, ...)
{
#ifdef KMSFS_HAVE_SYSTEMD
	char msg[2400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	(void)sd_notify(0, msg);
#else
	(void)fmt;
#endif
}

/* Until the daemon leaves the terminal, errors go to stderr as well as to the log (a file or
 * syslog), and to systemd as the service's status. */
static bool kmsfs_log_elsewhere, kmsfs_detached;

__attribute__((format(printf, 1, 2))) static void kmsfs_error(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	msg[strcspn(msg, "\n")] = 0; /* one line */
	if (!kmsfs_detached)
		fprintf(stderr, "%skmsfs: %s\n", kms_log_stderr_prefix(KMS_LOG_ERROR), msg);
	if (kmsfs_log_elsewhere || kmsfs_detached)
		kms_log_error("%s", msg);
	kmsfs_notify("STATUS=%s", msg);
}

/* A mount left by a killed daemon answers ENOTCONN; detach it (and any stacked under it) so we
 * can mount again. Over io_uring the kernel ends the dead daemon's connection only once it has
 * released its rings, a few milliseconds after the exit: a request made meanwhile waits for that
 * and fails with ECONNABORTED, which a live daemon never causes. statfs, unlike stat, always
 * reaches the daemon: the kernel may answer stat of the mount root from its attribute cache. */
static void kmsfs_clear_stale_mount(const char *mountpoint)
{
	struct statfs sfs;

	for (int i = 0; i < 16; i++) {
		if (statfs(mountpoint, &sfs) == 0 || (errno != ENOTCONN && errno != ECONNABORTED))
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
				execlp("fusermount3", "fusermount3", "-uz", mountpoint,
				       (char *)NULL);
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

/* Where kmsctl finds the audit trail of this state directory (kmsctl_audit.c): STATE/audit.path
 * holds the -o audit path, and is removed when the daemon runs without one. */
static int kmsfs_record_audit(const char *state, const char *audit_path)
{
	char path[4200], tmp[4220];
	int fd, n, r = -1;

	snprintf(path, sizeof(path), "%s/audit.path", state);
	if (!audit_path)
		return unlink(path) == 0 || errno == ENOENT ? 0 : -1;
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	n = (int)strlen(audit_path);
	if (write(fd, audit_path, (size_t)n) == n && write(fd, "\n", 1) == 1 && fsync(fd) == 0)
		r = rename(tmp, path);
	close(fd);
	if (r != 0)
		unlink(tmp);
	return r;
}

/* -o metrics_group=GROUP: a group name or a gid. */
static bool kmsfs_group(const char *name, gid_t *gid)
{
	struct group *g = getgrnam(name);
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(name, &end, 10);
	if (g) {
		*gid = g->gr_gid;
		return true;
	}
	if (*name && !*end && !errno && v < UINT32_MAX) {
		*gid = (gid_t)v;
		return true;
	}
	kmsfs_error("metrics_group: no group '%s'", name);
	return false;
}

static int kmsfs_lock_state(const char *state)
{
	char path[4200];
	int fd;

	if ((size_t)snprintf(path, sizeof(path), "%s/daemon.lock", state) >= sizeof(path))
		return -1;
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		kmsfs_error("cannot open '%s': %s", path, strerror(errno));
		return -1;
	}
	/* A daemon that was just unmounted may still be exiting: give it a moment. */
	for (int i = 0; i < 30 && flock(fd, LOCK_EX | LOCK_NB) != 0; i++)
		usleep(100000);
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		kmsfs_error("another kmsfs daemon is serving state directory '%s'; unmount it "
			    "first (fusermount3 -u MOUNTPOINT)",
			    state);
		close(fd);
		return -1;
	}
	return fd; /* held until exit; inherited across daemonising */
}

/* libfuse writes one message in several calls (an unknown option is three): put the pieces
 * together and log whole lines. The last error line is kept for the start-up error. */
static pthread_mutex_t kmsfs_fuse_log_lock = PTHREAD_MUTEX_INITIALIZER;
static char kmsfs_fuse_line[512], kmsfs_fuse_error[512];
static bool kmsfs_fuse_quiet; /* while probing the options: the caller reports */

__attribute__((format(printf, 2, 0))) static void kmsfs_fuse_log(enum fuse_log_level level,
								 const char *fmt, va_list ap)
{
	size_t len;

	pthread_mutex_lock(&kmsfs_fuse_log_lock);
	len = strlen(kmsfs_fuse_line);
	vsnprintf(kmsfs_fuse_line + len, sizeof(kmsfs_fuse_line) - len, fmt, ap);
	len = strlen(kmsfs_fuse_line);
	if (len > 0 && kmsfs_fuse_line[len - 1] != '\n' && len + 1 < sizeof(kmsfs_fuse_line))
		goto unlock; /* more to come */
	kmsfs_fuse_line[strcspn(kmsfs_fuse_line, "\n")] = 0;
	if (level <= FUSE_LOG_ERR)
		snprintf(kmsfs_fuse_error, sizeof(kmsfs_fuse_error), "%s", kmsfs_fuse_line);
	if (!kmsfs_fuse_quiet)
		kms_log(level <= FUSE_LOG_ERR	    ? KMS_LOG_ERROR
			: level <= FUSE_LOG_WARNING ? KMS_LOG_WARNING
			: level <= FUSE_LOG_INFO    ? KMS_LOG_INFO
						    : KMS_LOG_DEBUG,
			"libfuse: %s", kmsfs_fuse_line);
	kmsfs_fuse_line[0] = 0;
unlock:
	pthread_mutex_unlock(&kmsfs_fuse_log_lock);
}

/* What libfuse said last went wrong (for a start-up error line), or fallback. */
static const char *kmsfs_fuse_why(const char *fallback)
{
	return kmsfs_fuse_error[0] ? kmsfs_fuse_error : fallback;
}

static void kmsfs_report_hardening(const struct kms_harden_report *hr, const struct store *store,
				   const struct fs *fs)
{
	if (!hr->not_dumpable || !hr->no_core)
		kms_log_warning(
			"could not disable core dumps; key material could reach a core file");
	if (hr->lock_skipped)
		kms_log_warning("memory not locked (sanitizer build): key material may be swapped");
	else if (!hr->memory_locked && !hr->lock_errno)
		kms_log_warning("memory not locked (-o no_mlock): key material may be swapped");
	else if (!hr->memory_locked)
		kms_log_warning("mlockall failed (%s): key material may be swapped; raise "
				"RLIMIT_MEMLOCK or run as root",
				strerror(hr->lock_errno));
	if (!hr->secure_heap)
		kms_log_warning(
			"OpenSSL secure heap unavailable: key material is in normal memory");
	else if (!store_root_key_secure(store) || !fs_token_secret_secure(fs))
		kms_log_warning("the root key or the token secret is outside the secure heap");
}

/* Whether libfuse accepts the remaining options, asked before anything is created or forked: a
 * throw-away session parses a copy of them (parsing consumes what it knows). */
static bool kmsfs_options_valid(const struct fuse_args *args)
{
	struct fuse_args copy = FUSE_ARGS_INIT(0, NULL);
	struct fuse_session *probe = NULL;
	bool ok = true;

	for (int i = 0; ok && i < args->argc; i++)
		ok = fuse_opt_add_arg(&copy, args->argv[i]) == 0;
	if (ok) {
		kmsfs_fuse_quiet = true;
		probe = fuse_session_new(&copy, fs_lowlevel_ops(), sizeof(*fs_lowlevel_ops()),
					 NULL);
		kmsfs_fuse_quiet = false;
	}
	if (probe)
		fuse_session_destroy(probe);
	fuse_opt_free_args(&copy);
	return probe != NULL;
}

/* An absolute form of path: the daemon works from / and reopens its files on SIGHUP. */
static char *kmsfs_abspath(const char *path)
{
	char cwd[4096], *out = NULL;

	if (path[0] == '/')
		return strdup(path);
	if (!getcwd(cwd, sizeof(cwd)) || asprintf(&out, "%s/%s", cwd, path) < 0)
		return NULL;
	return out;
}

/* Open path for appending, private to this daemon: never through a symbolic link, only a
 * regular file of ours, created 0600 or tightened to it. -1 with why filled otherwise. */
static int kmsfs_open_private(const char *path, const char *what, char *why, size_t why_len)
{
	struct stat st;
	int fd;

	/* O_NONBLOCK: a FIFO put there must not hang the start; it is refused below. */
	/* Read-write: the audit trail reads its last line's MAC back (src/audit/). */
	fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
	if (fd < 0) {
		if (errno == ELOOP)
			snprintf(
				why, why_len,
				"%s file '%s' is a symbolic link; give the path of the file itself",
				what, path);
		else
			snprintf(why, why_len, "cannot open %s file '%s': %s", what, path,
				 strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		snprintf(why, why_len, "%s file '%s' is not a regular file", what, path);
		goto fail;
	}
	if (st.st_uid != geteuid()) {
		snprintf(why, why_len,
			 "%s file '%s' belongs to uid %u, not to uid %u that runs kmsfs", what,
			 path, (unsigned)st.st_uid, (unsigned)geteuid());
		goto fail;
	}
	if ((st.st_mode & 077) && fchmod(fd, 0600) != 0) {
		snprintf(why, why_len,
			 "%s file '%s' is open to other users (mode %04o) and could "
			 "not be made 0600: %s",
			 what, path, (unsigned)(st.st_mode & 07777), strerror(errno));
		goto fail;
	}
	if (fcntl(fd, F_SETFL, O_WRONLY | O_APPEND) != 0) {
		snprintf(why, why_len, "cannot use %s file '%s': %s", what, path, strerror(errno));
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return -1;
}

static FILE *kmsfs_open_log(const char *path, char *why, size_t why_len)
{
	int fd = kmsfs_open_private(path, "log", why, why_len);
	FILE *f = fd >= 0 ? fdopen(fd, "a") : NULL;

	if (fd >= 0 && !f) {
		snprintf(why, why_len, "cannot open log file '%s': %s", path, strerror(errno));
		close(fd);
	}
	return f;
}

/* A root_key=pkcs11:... URI may hold the token's PIN (pin-value=): its copy is wiped when freed,
 * and freed as soon as the store is open (the store keeps the URI without it, the root the PIN
 * in the secure heap). */
static void kmsfs_forget_root_key(struct kmsfs_config *cfg)
{
	kms_free_string_wiped(cfg->root_key);
	cfg->root_key = NULL;
}

/* The store URI may hold the database password: the store keeps its own copy (it reconnects
 * with it), so ours is wiped and freed once the store is open. */
static void kmsfs_forget_store_uri(struct kmsfs_config *cfg)
{
	kms_free_string_wiped(cfg->store);
	cfg->store = NULL;
}

/* Fork; the parent waits until the child reports the mount live (one byte on the pipe) and exits
 * 0, or exits with the child's status when the child gives up (it said why on stderr). The
 * parent needs no root key location while it waits. */
static int kmsfs_fork(int *ready_fd, struct kmsfs_config *cfg)
{
	int p[2], status = 0;
	ssize_t n;
	pid_t pid;
	char c;

	if (pipe2(p, O_CLOEXEC) != 0)
		return -1;
	pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid == 0) {
		close(p[0]);
		(void)setsid();
		*ready_fd = p[1];
		return 0;
	}
	close(p[1]);
	kmsfs_forget_root_key(cfg);
	do
		n = read(p[0], &c, 1);
	while (n < 0 && errno == EINTR);
	if (n == 1)
		_exit(0);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	_exit(WIFEXITED(status) && WEXITSTATUS(status) != 0 ? WEXITSTATUS(status) : 1);
}

/* The mount is live: leave the terminal and let the waiting parent return. */
static void kmsfs_detach(int ready_fd)
{
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);

	(void)!chdir("/");
	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		dup2(null, STDERR_FILENO);
		if (null > STDERR_FILENO)
			close(null);
	}
	kmsfs_detached = true;
	(void)!write(ready_fd, "1", 1);
	close(ready_fd);
}

/* SIGHUP (logrotate) reopens the log and the audit file and the daemon keeps serving. The
 * handler only writes a byte to a pipe; a thread does the reopening outside signal context. */
struct kmsfs_reopen {
	int pipe[2];
	pthread_t thread;
	bool running;
	struct fs *fs;
	const char *log_path;	/* NULL: the log is stderr */
	const char *audit_path; /* NULL: no audit trail */
	FILE *logf;		/* the current log stream */
};

static int kmsfs_hup_fd = -1;

static void kmsfs_on_hup(int sig)
{
	int saved = errno;

	(void)sig;
	(void)!write(kmsfs_hup_fd, "h", 1);
	errno = saved;
}

static void kmsfs_reopen_files(struct kmsfs_reopen *ro)
{
	char why[600];
	FILE *f, *old;
	int fd;

	if (ro->log_path) {
		f = kmsfs_open_log(ro->log_path, why, sizeof(why));
		if (f) {
			old = kms_log_swap_stream(f);
			if (old && old != stderr)
				fclose(old);
			ro->logf = f;
		} else {
			kms_log_error("SIGHUP: %s; logging to the old file", why);
		}
	}
	if (ro->audit_path) {
		fd = kmsfs_open_private(ro->audit_path, "audit", why, sizeof(why));
		if (fd < 0) {
			kms_log_error("SIGHUP: %s; the audit trail goes on in the old file", why);
		} else if (fs_audit_reopen(ro->fs, fd) != 0) {
			close(fd);
			kms_log_error(
				"SIGHUP: no room for the audit trail in '%s'; it goes on in the "
				"old file",
				ro->audit_path);
		}
	}
	kms_log_info("SIGHUP: log and audit files reopened");
}

static void *kmsfs_reopen_thread(void *arg)
{
	struct kmsfs_reopen *ro = arg;
	ssize_t n;
	char c;

	for (;;) {
		n = read(ro->pipe[0], &c, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n != 1 || c == 'q')
			break;
		kmsfs_reopen_files(ro);
	}
	return NULL;
}

/* After fuse_set_signal_handlers(), which makes SIGHUP end the session: ours replaces it. */
static int kmsfs_reopen_start(struct kmsfs_reopen *ro)
{
	struct sigaction sa = { .sa_handler = kmsfs_on_hup, .sa_flags = SA_RESTART };

	if (pipe2(ro->pipe, O_CLOEXEC) != 0)
		return -1;
	if (fcntl(ro->pipe[1], F_SETFL, O_NONBLOCK) != 0 ||
	    pthread_create(&ro->thread, NULL, kmsfs_reopen_thread, ro) != 0) {
		close(ro->pipe[0]);
		close(ro->pipe[1]);
		ro->pipe[0] = ro->pipe[1] = -1;
		return -1;
	}
	ro->running = true;
	kmsfs_hup_fd = ro->pipe[1];
	sigemptyset(&sa.sa_mask);
	return sigaction(SIGHUP, &sa, NULL);
}

static void kmsfs_reopen_stop(struct kmsfs_reopen *ro)
{
	struct sigaction sa = { .sa_handler = SIG_IGN };

	if (!ro->running)
		return;
	sigaction(SIGHUP, &sa, NULL);
	while (write(ro->pipe[1], "q", 1) < 0 && errno == EINTR)
		;
	pthread_join(ro->thread, NULL);
	close(ro->pipe[0]);
	close(ro->pipe[1]);
	ro->running = false;
}

/* READY=1 goes to systemd once the mount answers: a statfs of the mount point reaches the daemon
 * (the kernel never answers it from a cache) and only after the kernel's INIT is answered, so a
 * stat after READY=1 succeeds. The session loop answers it: a thread asks. */
struct kmsfs_ready {
	pthread_t thread;
	bool running, stopping, notify;
	pthread_mutex_t lock; /* READY=1 never after STOPPING=1 */
	const char *mountpoint;
	int mainpid;		/* a forked daemon names itself (MAINPID=); 0: not forked */
	unsigned uring_threads; /* io_uring asked for: say once mounted what came of it */
	char status[2200];	/* what it serves, for STATUS= (systemctl status shows it) */
};

struct kmsfs_count {
	struct store *store;
	size_t projects, keys;
};

static int kmsfs_count_project(const char *project, void *arg)
{
	struct kmsfs_count *c = arg;
	size_t n = 0;

	c->projects++;
	if (store_key_count(c->store, project, &n) == 0)
		c->keys += n;
	return 0;
}

/* Once the kernel's INIT came (the mount answers): how requests reach the daemon. */
static void kmsfs_uring_report(unsigned threads)
{
	unsigned offline;
	int error = 0;

	switch (fs_uring_state(&error)) {
	case FS_URING_RUNNING:
		offline = fs_uring_offline_cpus();
		if (offline)
			kms_log_info("FUSE requests over io_uring: %u threads per CPU (%u CPU%s "
				     "not online: 1 thread each)",
				     threads, offline, offline == 1 ? "" : "s");
		else
			kms_log_info("FUSE requests over io_uring: %u threads per CPU", threads);
		break;
	case FS_URING_REFUSED:
		kms_log_warning("FUSE over io_uring: the kernel did not offer it at mount; "
				"requests come through /dev/fuse");
		break;
	case FS_URING_FAILED:
		kms_log_warning("FUSE over io_uring could not be set up (%s); requests come "
				"through /dev/fuse",
				strerror(error));
		break;
	default:
		break;
	}
}

static void *kmsfs_ready_thread(void *arg)
{
	struct kmsfs_ready *rd = arg;
	struct statfs sfs;
	char pid[32] = "";
	int r;

	do
		r = statfs(rd->mountpoint, &sfs);
	while (r != 0 && errno == EINTR);
	if (r == 0 && rd->uring_threads)
		kmsfs_uring_report(rd->uring_threads);
	if (rd->mainpid)
		snprintf(pid, sizeof(pid), "MAINPID=%d\n", rd->mainpid);
	pthread_mutex_lock(&rd->lock);
	if (r == 0 && !rd->stopping && rd->notify)
		kmsfs_notify("READY=1\n%sSTATUS=%s", pid, rd->status);
	pthread_mutex_unlock(&rd->lock);
	return NULL;
}

/* Once mounted, before the janitor thread starts (the store is counted here, alone). */
static int kmsfs_ready_start(struct kmsfs_ready *rd, struct store *store, const char *state,
			     const char *shown)
{
	struct kmsfs_count c = { .store = store };

	rd->notify = secure_getenv("NOTIFY_SOCKET") != NULL;
	if (!rd->notify && !rd->uring_threads)
		return 0;
	/* The status is for systemd only: the store is counted only then. */
	if (rd->notify && store_project_list(store, kmsfs_count_project, &c) == 0)
		snprintf(rd->status, sizeof(rd->status),
			 "serving %.900s from %.900s: %zu projects, %zu keys (%.300s store)",
			 rd->mountpoint, state, c.projects, c.keys, shown);
	else if (rd->notify)
		snprintf(rd->status, sizeof(rd->status), "serving %.1024s from %.1024s",
			 rd->mountpoint, state);
	if (pthread_create(&rd->thread, NULL, kmsfs_ready_thread, rd) != 0)
		return -1;
	rd->running = true;
	return 0;
}

/* The session ended (unmount or a signal), or a start failed once mounted: tell systemd before
 * unmounting and exiting (once). */
static void kmsfs_ready_stopping(struct kmsfs_ready *rd)
{
	pthread_mutex_lock(&rd->lock);
	if (rd->running && !rd->stopping)
		kmsfs_notify("STOPPING=1\nSTATUS=stopping: unmounting %s", rd->mountpoint);
	rd->stopping = true;
	pthread_mutex_unlock(&rd->lock);
}

/* After the unmount, which ends a statfs still waiting for an INIT that never came. */
static void kmsfs_ready_stop(struct kmsfs_ready *rd)
{
	if (rd->running)
		pthread_join(rd->thread, NULL);
	rd->running = false;
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
	struct kmsfs_reopen ro = { .pipe = { -1, -1 } };
	struct kmsfs_ready rd = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct store *store = NULL;
	struct stat mst;
	struct fs *fs = NULL;
	char why[600], state_abs[4096], store_shown[512], *log_path = NULL, *audit_path = NULL;
	int ret = 1, lock_fd = -1, ready_fd = -1, r;
	unsigned uring_threads = 0;
	bool log_syslog, shared_store = false;

	umask(077);
	kms_log_detect_journal();
	if (fuse_opt_parse(&args, &cfg, kmsfs_opts, kmsfs_opt_proc) != 0 ||
	    kmsfs_take_words(&args, &cfg) != 0)
		goto out;
	if (fuse_parse_cmdline(&args, &opts) != 0)
		goto out;
	/* -d: libfuse's line per request reaches the log at debug level (kmsfs_fuse_log). */
	if (opts.debug)
		kms_log_set_level(KMS_LOG_DEBUG);
	if (opts.show_help) {
		kmsfs_usage(argv[0]);
		ret = 0;
		goto out;
	}
	if (opts.show_version) {
		printf("kmsfs %s (libfuse %s)\n", KMSFS_VERSION, fuse_pkgversion());
		ret = 0;
		goto out;
	}
	/* The parsed options hold the URIs now: ps shows no password and no PIN (root_key=
	 * pkcs11:...;pin-value=) from here on (the docs recommend ~/.pgpass or PGPASSFILE and a
	 * PIN file, which never reach argv at all). */
	for (int i = 1; i < argc; i++)
		store_uri_hide_password(argv[i]);
	if (!opts.mountpoint || !cfg.state) {
		fprintf(stderr,
			"kmsfs: usage: %s [SOURCE] MOUNTPOINT -o state=DIR [-f] [-o allow_other]\n"
			"       (kmsfs --help lists all options)\n",
			argv[0]);
		ret = 2;
		goto out;
	}
	if (!kmsfs_store_options(&cfg, &sopt) ||
	    !kmsfs_uring_options(&cfg, opts.singlethread, &uring_threads))
		goto out;
	store_uri_describe(cfg.store, store_shown, sizeof(store_shown));
	shared_store = cfg.store != NULL;
	fuse_set_log_func(kmsfs_fuse_log);
	/* The kernel enforces each project's owner, group and modes (kmsctl project set). */
	if (!cfg.no_default_permissions && fuse_opt_add_arg(&args, "-odefault_permissions") != 0)
		goto out;
	if (!kmsfs_options_valid(&args)) {
		kmsfs_error("%s", kmsfs_fuse_why("libfuse refused the options"));
		goto out;
	}
	if (!opts.foreground && kmsfs_fork(&ready_fd, &cfg) != 0) {
		kmsfs_error("cannot fork: %s", strerror(errno));
		goto out;
	}
	log_syslog = cfg.log && strcmp(cfg.log, "syslog") == 0;
	if (log_syslog) {
		kms_log_use_syslog("kmsfs");
		kmsfs_log_elsewhere = true;
	}
	/* Absolute paths: the daemon works from / and reopens the log and audit file on SIGHUP. */
	if ((cfg.log || !opts.foreground) && !log_syslog) {
		if (cfg.log)
			log_path = kmsfs_abspath(cfg.log);
		else if (asprintf(&log_path, "%s/kmsfs.log", cfg.state) < 0)
			log_path = NULL;
		if (log_path && log_path[0] != '/') {
			char *abs = kmsfs_abspath(log_path);

			free(log_path);
			log_path = abs;
		}
		if (!log_path) {
			kmsfs_error("out of memory");
			goto out;
		}
	}
	if (cfg.audit && !(audit_path = kmsfs_abspath(cfg.audit))) {
		kmsfs_error("out of memory");
		goto out;
	}
	sopt.create = true;
	sopt.region = cfg.region;
	sopt.root_key = cfg.root_key;
	sopt.pkcs11_module = cfg.pkcs11_module;
	sopt.pkcs11_pin_file = cfg.pkcs11_pin_file;
	/* Before anything is put in it (the log): created 0700, or ours and tightened to 0700. */
	if (store_state_dir_prepare(cfg.state, true, false, why, sizeof(why)) < 0) {
		kmsfs_error("%s", why);
		goto out;
	}
	if (!realpath(cfg.state, state_abs)) {
		kmsfs_error("state directory '%s': %s", cfg.state, strerror(errno));
		goto out;
	}
	if (log_path) {
		FILE *logf = kmsfs_open_log(log_path, why, sizeof(why));

		if (!logf) {
			kmsfs_error("%s", why);
			goto out;
		}
		kms_log_set_stream(logf);
		kmsfs_log_elsewhere = true;
		ro.logf = logf;
		ro.log_path = log_path;
	}
	if ((lock_fd = kmsfs_lock_state(state_abs)) < 0)
		goto out;
	sopt.state_dir = state_abs;
	/* First make the process fit to hold secrets, then read them: the root key here, the
	 * token secret in fs_new, both into the secure heap. */
	r = store_open_hardened(&sopt, (size_t)cfg.secure_heap_kib * 1024, !cfg.no_mlock, &hr,
				&store, why, sizeof(why));
	sopt.root_key = NULL;
	sopt.backend = NULL;
	kmsfs_forget_root_key(&cfg);
	kmsfs_forget_store_uri(&cfg);
	if (r < 0) {
		kmsfs_error("%s", why);
		goto out;
	}
	if (audit_path) {
		fopt.audit_fd = kmsfs_open_private(audit_path, "audit", why, sizeof(why));
		if (fopt.audit_fd < 0) {
			kmsfs_error("%s", why);
			goto out;
		}
		ro.audit_path = audit_path;
		fopt.audit_path = audit_path;
	}
	if (kmsfs_record_audit(state_abs, audit_path) != 0) {
		kmsfs_error("cannot record the audit file in '%s/audit.path': %s", state_abs,
			    strerror(errno));
		goto out;
	}
	fopt.store = store;
	fopt.version = KMSFS_VERSION;
	if (cfg.metrics_group && !kmsfs_group(cfg.metrics_group, &fopt.metrics_group))
		goto out;
	fopt.metrics_group_set = cfg.metrics_group != NULL;
	fopt.forget_tokens = cfg.forget_tokens != 0;
	fopt.mailbox_ttl_s = cfg.mailbox_ttl;
	fopt.key_quota = cfg.key_quota;
	if ((r = fs_new(&fopt, &fs)) < 0) {
		kmsfs_error("cannot set up: %s", kms_err_info(r)->message);
		goto out;
	}
	ro.fs = fs;
	kmsfs_clear_stale_mount(opts.mountpoint);
	if (stat(opts.mountpoint, &mst) != 0) {
		kmsfs_error("mount point '%s': %s", opts.mountpoint, strerror(errno));
		goto out;
	}
	if (!S_ISDIR(mst.st_mode)) {
		kmsfs_error("mount point '%s' is not a directory", opts.mountpoint);
		goto out;
	}
	se = fuse_session_new(&args, fs_lowlevel_ops(), sizeof(*fs_lowlevel_ops()), fs);
	if (!se) {
		kmsfs_error("cannot start: %s", kmsfs_fuse_why("libfuse refused the options"));
		goto out;
	}
	if (fuse_set_signal_handlers(se) != 0) {
		kmsfs_error("cannot install signal handlers");
		goto out;
	}
	if (fuse_session_mount(se, opts.mountpoint) != 0) {
		kmsfs_error("cannot mount on '%s': %s", opts.mountpoint,
			    kmsfs_fuse_why("libfuse could not mount"));
		goto out_handlers;
	}
	if (uring_threads && fs_uring_attach(se, uring_threads) != 0) {
		kmsfs_error("cannot set up FUSE over io_uring: %s", strerror(errno));
		goto out_unmount;
	}
	kmsfs_publish(lock_fd, opts.mountpoint);
	rd.mountpoint = opts.mountpoint;
	rd.uring_threads = uring_threads;
	rd.mainpid = ready_fd >= 0 ? (int)getpid() : 0;
	if (kmsfs_ready_start(&rd, store, state_abs, store_shown) != 0) {
		kmsfs_error("cannot start the readiness thread");
		goto out_unmount;
	}
	kmsfs_report_hardening(&hr, store, fs);
	if (fs_start(fs) < 0) {
		kmsfs_error("cannot start the mailbox janitor thread");
		goto out_unmount;
	}
	if (kmsfs_reopen_start(&ro) != 0) {
		kmsfs_error("cannot set up SIGHUP (log reopening): %s", strerror(errno));
		goto out_unmount;
	}
	if (shared_store)
		kms_log_info("kmsfs %s serving '%s' from state '%s', keys in %s", KMSFS_VERSION,
			     opts.mountpoint, state_abs, store_shown);
	else
		kms_log_info("kmsfs %s serving '%s' from state '%s'", KMSFS_VERSION,
			     opts.mountpoint, state_abs);
	if (ready_fd >= 0) {
		kmsfs_detach(ready_fd);
		ready_fd = -1;
	}
	ret = fs_session_loop(se, &opts);
	kms_log_info("kmsfs stopped serving '%s'", opts.mountpoint);
out_unmount:
	fs_uring_stop();
	kmsfs_ready_stopping(&rd);
	fuse_session_unmount(se);
	kmsfs_ready_stop(&rd);
out_handlers:
	fuse_remove_signal_handlers(se);
out:
	kmsfs_reopen_stop(&ro);
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
	kmsfs_forget_root_key(&cfg);
	free(cfg.pkcs11_module);
	free(cfg.pkcs11_pin_file);
	free(cfg.audit);
	free(cfg.metrics_group);
	kmsfs_forget_store_uri(&cfg);
	free(cfg.key_cache);
	free(cfg.store_timeout);
	free(cfg.offline_grace);
	free(cfg.io_uring);
	free(cfg.io_uring_threads);
	free(cfg.words[0]);
	free(cfg.words[1]);
	free(log_path);
	free(audit_path);
	if (fopt.audit_fd >= 0 && !fs)
		close(fopt.audit_fd);
	if (ro.logf) {
		kms_log_set_stream(NULL);
		fclose(ro.logf);
	}
	core_thread_release();
	return ret;
}
