/* The fuse_lowlevel_ops table, the service's lifetime, and the mailbox janitor. */
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include "common/kms_err.h"
#include "common/kms_log.h"
#include "common/kms_secmem.h"
#include "audit/kms_audit.h"
#include "fs_internal.h"
#include "common/kms_time.h"

static void fs_op_deny(fuse_req_t req)
{
	fuse_reply_err(req, EPERM);
}

static void fs_op_mkdir(fuse_req_t req, fuse_ino_t p, const char *name, mode_t mode)
{
	fs_op_deny(req);
}

static void fs_op_unlink(fuse_req_t req, fuse_ino_t p, const char *name)
{
	fs_op_deny(req);
}

static void fs_op_rename(fuse_req_t req, fuse_ino_t p, const char *name, fuse_ino_t np,
			 const char *nname, unsigned int flags)
{
	fs_op_deny(req);
}

static void fs_op_symlink(fuse_req_t req, const char *link, fuse_ino_t p, const char *name)
{
	fs_op_deny(req);
}

static void fs_op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t p, const char *name)
{
	fs_op_deny(req);
}

/* O_CREAT of a name that does not exist: the tree has no such action. */
static void fs_op_mknod(fuse_req_t req, fuse_ino_t p, const char *name, mode_t mode, dev_t rdev)
{
	fuse_reply_err(req, ENOENT);
}

static void fs_op_create(fuse_req_t req, fuse_ino_t p, const char *name, mode_t mode,
			 struct fuse_file_info *fi)
{
	fuse_reply_err(req, ENOENT);
}

/* /kms/.metrics and /kms/.status are snapshots (fs_metrics.c); every other file is a
 * transaction (fs_txn.c). */
static bool fs_ino_is_info(fuse_ino_t ino, struct fs_node *n)
{
	return fs_node_from_ino(ino, n) && n->type == FS_INFO_FILE;
}

static void fs_op_open_file(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_node n;

	if (fs_ino_is_info(ino, &n))
		fs_info_open(req, &n, fi);
	else
		fs_op_open(req, ino, fi);
}

static void fs_op_read_file(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			    struct fuse_file_info *fi)
{
	struct fs_node n;

	if (fs_ino_is_info(ino, &n))
		fs_info_read(req, size, off, fi);
	else
		fs_op_read(req, ino, size, off, fi);
}

static void fs_op_flush_file(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_node n;

	if (fs_ino_is_info(ino, &n))
		fuse_reply_err(req, 0);
	else
		fs_op_flush(req, ino, fi);
}

static void fs_op_fsync_file(fuse_req_t req, fuse_ino_t ino, int datasync,
			     struct fuse_file_info *fi)
{
	struct fs_node n;

	if (fs_ino_is_info(ino, &n))
		fuse_reply_err(req, 0); /* a snapshot: nothing to run */
	else
		fs_op_fsync(req, ino, datasync, fi);
}

static void fs_op_release_file(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_node n;

	if (fs_ino_is_info(ino, &n))
		fs_info_release(req, fi);
	else
		fs_op_release(req, ino, fi);
}

static void fs_op_init(void *userdata, struct fuse_conn_info *conn)
{
	/* Never cache file data: responses are per handle and may hold plaintext keys. */
	conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
}

static const struct fuse_lowlevel_ops fs_ops = {
	.init = fs_op_init,
	.lookup = fs_op_lookup,
	.getattr = fs_op_getattr,
	.setattr = fs_op_setattr,
	.readlink = fs_op_readlink,
	.mknod = fs_op_mknod,
	.mkdir = fs_op_mkdir,
	.unlink = fs_op_unlink,
	.rmdir = fs_op_unlink,
	.symlink = fs_op_symlink,
	.rename = fs_op_rename,
	.link = fs_op_link,
	.open = fs_op_open_file,
	.read = fs_op_read_file,
	.write = fs_op_write,
	.flush = fs_op_flush_file,
	.fsync = fs_op_fsync_file,
	.release = fs_op_release_file,
	.opendir = fs_op_opendir,
	.readdir = fs_op_readdir,
	.releasedir = fs_op_releasedir,
	.setxattr = fs_op_setxattr,
	.getxattr = fs_op_getxattr,
	.listxattr = fs_op_listxattr,
	.removexattr = fs_op_removexattr,
	.create = fs_op_create,
};

const struct fuse_lowlevel_ops *fs_lowlevel_ops(void)
{
	return &fs_ops;
}

int fs_new(const struct fs_options *opt, struct fs **out)
{
	struct fs *fs;
	int r;

	*out = NULL;
	if ((r = api_init()) < 0)
		return r;
	fs = calloc(1, sizeof(*fs));
	if (!fs)
		return KMS_E_NOMEM;
	fs->store = opt->store;
	fs->svc.store = opt->store;
	fs->svc.key_quota = opt->key_quota ? opt->key_quota : KMS_DEFAULT_KEY_QUOTA;
	fs->mailbox_ttl_s = opt->mailbox_ttl_s ? opt->mailbox_ttl_s : 30;
	fs->entry_timeout = opt->entry_timeout > 0 ? opt->entry_timeout : 1.0;
	fs->mount_time = time(NULL);
	pthread_mutex_init(&fs->audit_lock, NULL);
	pthread_mutex_init(&fs->mail_lock, NULL);
	pthread_rwlock_init(&fs->bind_lock, NULL);
	pthread_mutex_init(&fs->live_lock, NULL);
	pthread_rwlock_init(&fs->uid_lock, NULL);
	pthread_mutex_init(&fs->janitor_lock, NULL);
	pthread_cond_init(&fs->janitor_cond, NULL);
	fs_remember_init(fs, opt->forget_tokens);
	if ((r = fs_registry_init(&fs->reg)) < 0)
		goto fail;
	if ((r = fs_metrics_init(&fs->metrics, opt)) < 0)
		goto fail;
	fs->token_secret = kms_secret_alloc(AUTH_SECRET_BYTES);
	if (!fs->token_secret) {
		r = KMS_E_NOMEM;
		goto fail;
	}
	if ((r = store_state_secret(fs->store, "token.key", fs->token_secret)) < 0)
		goto fail;
	/* Before the mount serves: logged-in clients keep working across the restart. A failure
	 * is logged; they then set their tokens again. */
	if (fs_remember_restore(fs) < 0)
		kms_log_debug("no remembered token bindings restored");
	/* Last: once the trail has the descriptor, nothing may fail (it is the caller's before). */
	if (opt->audit_fd >= 0 && (r = fs_audit_open(fs, opt)) < 0)
		goto fail;
	*out = fs;
	return 0;
fail:
	fs_free(fs);
	return r;
}

/* Scheduled deletions and automatic rotations that are due (also after downtime). */
static void fs_sweep(struct fs *fs)
{
	size_t deleted = 0, rotated = 0;
	int r = store_sweep(fs->store, kms_time_real_ms(), &deleted, &rotated);

	/* An unreachable shared store: the watcher has said so once. */
	if (r < 0 && r != KMS_E_STORE_UNAVAILABLE)
		kms_log_error("key maintenance failed: %s", kms_err_info(r)->message);
	if (deleted)
		kms_log_info("destroyed %zu keys whose scheduled deletion date passed", deleted);
	if (rotated)
		kms_log_info("rotated %zu keys whose rotation interval passed", rotated);
}

/* Say when policy rows become unreadable (their projects are refused) or readable again: once
 * per change, not every second. last holds what was said last. */
static void fs_report_policy(struct fs *fs, char *last, size_t cap)
{
	char what[160];
	size_t n = store_policy_unreadable(fs->store, what, sizeof(what));

	if (strcmp(what, last) == 0)
		return;
	if (n)
		kms_log_error(
			"%zu policy row(s) in the key database cannot be read and fail closed, "
			"first %s, until the row is set again (kmsctl project set/bind, token "
			"revoke) or removed",
			n, what);
	else
		kms_log_info("every policy row can be read again");
	snprintf(last, cap, "%s", what);
}

/* Every second: wipe expired mailboxes (an unread response never outlives its TTL by much), write
 * the summaries of suppressed refusals, and notice changes kmsctl made to the database; every
 * 10 s: key maintenance. */
/* The database read through once after mounting, not before: a mount must be quick whatever the
 * store's size. Damage is logged; a request that touches a damaged page fails on its own. */
static void fs_verify(struct fs *fs)
{
	char why[512];

	if (store_verify(fs->store, why, sizeof(why)) < 0)
		kms_log_error("%s; run 'kmsctl check' on the state directory and restore the "
			      "database from a backup",
			      why);
}

/* A root key in a token that went away or came back: said once each (the store counts). */
static void fs_report_root(struct fs *fs, uint64_t *losses, uint64_t *recoveries)
{
	struct store_root_status st;

	store_root_watch(fs->store, &st);
	if (st.losses > *losses)
		kms_log_error(
			"root key token unavailable (%s): new keys and keys not in memory fail "
			"with KMS.0102 until it is back; cached keys keep working",
			st.error);
	if (st.recoveries > *recoveries)
		kms_log_info("root key token available again");
	*losses = st.losses;
	*recoveries = st.recoveries;
}

static void *fs_janitor(void *arg)
{
	struct fs *fs = arg;
	struct timespec ts;
	unsigned ticks = 0;
	bool changed;
	char policy_said[160] = "";
	uint64_t root_losses = 0, root_recoveries = 0;

	fs_verify(fs);
	fs_sweep(fs);
	fs_report_policy(fs, policy_said, sizeof(policy_said));
	pthread_mutex_lock(&fs->janitor_lock);
	while (!fs->stopping) {
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&fs->janitor_cond, &fs->janitor_lock, &ts);
		pthread_mutex_unlock(&fs->janitor_lock);
		fs_mailbox_expire(fs, false);
		/* Summaries of suppressed refusals; entries of uids that hold nothing go. */
		fs_uids_sweep(fs, false);
		fs_bindings_sweep(fs); /* logins of mount namespaces that ended */
		fs_mntns_memo_trim(FS_MNTNS_LINK_IDLE_NS);
		/* A shared store is refreshed by the watcher, as soon as another host changes it. */
		if (!fs->watcher_running && store_refresh(fs->store, &changed) == 0 && changed)
			kms_log_debug("key database changed by another process; cache dropped");
		fs_report_policy(fs, policy_said, sizeof(policy_said));
		fs_report_root(fs, &root_losses, &root_recoveries);
		if (++ticks % 10 == 0) {
			fs_sweep(fs);
			/* Give freed request and answer buffers back to the system: with mlockall
			 * they would otherwise stay resident (and locked) after a burst. */
			malloc_trim(0);
		}
		pthread_mutex_lock(&fs->janitor_lock);
	}
	pthread_mutex_unlock(&fs->janitor_lock);
	return NULL;
}

/* Wait up to ms on the janitor's condition (signalled at unmount); whether we are stopping. */
static bool fs_watcher_pause(struct fs *fs, int ms)
{
	struct timespec ts;
	bool stopping;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&fs->janitor_lock);
	if (!fs->stopping)
		pthread_cond_timedwait(&fs->janitor_cond, &fs->janitor_lock, &ts);
	stopping = fs->stopping;
	pthread_mutex_unlock(&fs->janitor_lock);
	return stopping;
}

static bool fs_watcher_stopping(struct fs *fs)
{
	bool stopping;

	pthread_mutex_lock(&fs->janitor_lock);
	stopping = fs->stopping;
	pthread_mutex_unlock(&fs->janitor_lock);
	return stopping;
}

/* How long one wait for a notification lasts: the watcher notices an unmount within it. */
#define FS_WATCH_SLICE_MS 250
/* Refresh at least this often without a notification (one may be lost). */
#define FS_WATCH_REFRESH_MS 1000

/* A shared store: wait for another host's change (LISTEN/NOTIFY), then bring the cache up to
 * date; at least every second anyway, which also keeps cached keys usable (offline grace). Says
 * once when the store becomes unreachable and once when it is back and caught up. */
static void *fs_watcher(void *arg)
{
	struct fs *fs = arg;
	int64_t last = kms_time_mono_ms();
	bool online = true, changed;
	int w, r;

	while (!fs_watcher_stopping(fs)) {
		w = store_watch(fs->store, FS_WATCH_SLICE_MS);
		if (w == 0 && kms_time_mono_ms() - last < FS_WATCH_REFRESH_MS)
			continue;
		/* Also after a failed wait: the store's other connections may still get through. */
		r = store_refresh(fs->store, &changed);
		last = kms_time_mono_ms();
		if (r < 0 && online)
			kms_log_error("key store unreachable (%s %s): changes fail, cached keys "
				      "serve for the offline grace only",
				      kms_err_info(r)->code, kms_err_info(r)->name);
		else if (r == 0 && !online)
			kms_log_info("key store reachable again, caught up");
		online = r == 0;
		/* An unreachable store answers at once or after its timeout: do not spin. */
		if ((w < 0 || r < 0) && fs_watcher_pause(fs, FS_WATCH_REFRESH_MS))
			break;
	}
	return NULL;
}

int fs_start(struct fs *fs)
{
	/* The watcher first: the janitor leaves refreshing to it when it runs. */
	if (store_shared(fs->store)) {
		if (pthread_create(&fs->watcher, NULL, fs_watcher, fs) != 0)
			return KMS_E_SYSTEM;
		fs->watcher_running = true;
	}
	if (pthread_create(&fs->janitor, NULL, fs_janitor, fs) != 0)
		return KMS_E_SYSTEM;
	fs->janitor_running = true;
	return 0;
}

bool fs_token_secret_secure(const struct fs *fs)
{
	return fs && kms_secret_is_secure(fs->token_secret);
}

void fs_free(struct fs *fs)
{
	if (!fs)
		return;
	if (fs->janitor_running || fs->watcher_running) {
		pthread_mutex_lock(&fs->janitor_lock);
		fs->stopping = true;
		pthread_cond_broadcast(&fs->janitor_cond);
		pthread_mutex_unlock(&fs->janitor_lock);
	}
	if (fs->janitor_running)
		pthread_join(fs->janitor, NULL);
	if (fs->watcher_running)
		pthread_join(fs->watcher, NULL);
	fs_txns_free_all(fs);
	fs_mailbox_expire(fs, true);
	fs_bindings_free(fs);
	fs_uids_sweep(fs, true);
	fs_registry_free(&fs->reg);
	fs_metrics_free(&fs->metrics);
	kms_secret_free(fs->token_secret, AUTH_SECRET_BYTES);
	audit_close(fs->audit);
	pthread_mutex_destroy(&fs->mail_lock);
	pthread_mutex_destroy(&fs->audit_lock);
	pthread_rwlock_destroy(&fs->bind_lock);
	pthread_mutex_destroy(&fs->live_lock);
	pthread_rwlock_destroy(&fs->uid_lock);
	pthread_mutex_destroy(&fs->janitor_lock);
	pthread_cond_destroy(&fs->janitor_cond);
	fs_remember_free(fs);
	free(fs);
}
