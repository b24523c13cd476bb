/* File transactions (design.md section 2): one request and one response per open handle, run at
 * the first read after a write, or at flush (write-only handles), fsync or release, with the
 * identity captured when the handle was opened (fs_identity.c); a response that no read asked
 * for is also left in a read-once mailbox for (file, opener uid), so `echo "$req" > f; cat f`
 * works. When a handle's request runs, and what a read or a
 * close then gets, is fs_txn_state.c's state machine (shared with bench/nullfs.c). */
#include <errno.h>
#include <linux/fuse.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/kms_err.h"
#include "common/kms_limits.h"
#include "common/kms_log.h"
#include "common/kms_secmem.h"
#include "fs_internal.h"
#include "common/kms_time.h"

/* Responses waiting for a shell's `cat`; bounded (FS_POOL_MAILBOXES, per uid and in all) so a
 * writer that never reads can't grow us. */
struct fs_mailbox {
	struct fs_mailbox *next;
	fuse_ino_t ino;
	struct fs_uid *owner; /* pinned; owner->uid is the uid that may take it */
	int64_t expires_ms;
	size_t held; /* resp.cap as counted in FS_POOL_HELD_BYTES */
	struct kms_buf resp;
};

/* Count the memory a response buffer holds now (held: what was counted for it so far), in the
 * daemon's and its uid's FS_POOL_HELD_BYTES. Its capacity, not its length: a buffer emptied for a
 * small answer keeps its block. Growth is not refused here: fs_txn_run checks for room first. */
static void fs_hold(struct fs *fs, struct fs_uid *owner, size_t *held, const struct kms_buf *b)
{
	if (b->cap > *held) {
		__atomic_add_fetch(&fs->pool_used[FS_POOL_HELD_BYTES], b->cap - *held,
				   __ATOMIC_RELAXED);
		__atomic_add_fetch(&owner->used[FS_POOL_HELD_BYTES], b->cap - *held,
				   __ATOMIC_RELAXED);
	} else if (b->cap < *held) {
		fs_share_give(fs, owner, FS_POOL_HELD_BYTES, *held - b->cap);
	}
	*held = b->cap;
}

/* Wipe and free a mailbox; give its place in FS_POOL_MAILBOXES back unless a new one of the
 * same (file, uid) takes it over. */
static void fs_mailbox_free(struct fs *fs, struct fs_mailbox *m, bool give_place)
{
	kms_buf_free(&m->resp);
	fs_hold(fs, m->owner, &m->held, &m->resp);
	if (give_place)
		fs_share_give(fs, m->owner, FS_POOL_MAILBOXES, 1);
	fs_uid_put(m->owner);
	free(m);
}

/* Takes over resp, for the uid of owner (pinned by the caller). Replaces (and wipes) an older
 * mailbox of the same (file, uid). Past the uid's share of mailboxes the response is dropped
 * (the writer gets no mailbox; other uids keep theirs). */
static void fs_mailbox_put(struct fs *fs, fuse_ino_t ino, struct fs_uid *owner,
			   struct kms_buf *resp)
{
	struct fs_mailbox *m = calloc(1, sizeof(*m)), **pp, *old = NULL;
	bool warn = false;

	if (!m) {
		kms_buf_free(resp);
		return;
	}
	m->ino = ino;
	m->owner = owner;
	m->expires_ms = kms_time_mono_ms() + (int64_t)fs->mailbox_ttl_s * 1000;
	kms_buf_init(&m->resp, KMS_MAX_RESPONSE, true);
	kms_buf_move(&m->resp, resp);
	pthread_mutex_lock(&fs->mail_lock);
	for (pp = &fs->mail; *pp; pp = &(*pp)->next) {
		if ((*pp)->ino == ino && (*pp)->owner == owner) {
			old = *pp;
			*pp = old->next;
			break;
		}
	}
	/* The replaced mailbox's place in the pool goes to the new one. */
	if (!old && !fs_share_take(fs, owner, FS_POOL_MAILBOXES, 1)) {
		pthread_mutex_unlock(&fs->mail_lock);
		warn = !__atomic_exchange_n(&owner->warned_mailboxes, true, __ATOMIC_RELAXED);
		/* Once per uid (until its entry is freed): a flood must not fill the log. */
		if (warn)
			kms_log_warning(
				"mailbox share (%zu per uid, %u in all) reached: responses for "
				"uid %u are dropped",
				fs_pool_share(FS_POOL_MAILBOXES), FS_MAX_MAILBOXES,
				(unsigned)owner->uid);
		kms_buf_free(&m->resp);
		free(m);
		return;
	}
	fs_uid_pin(owner);
	fs_hold(fs, owner, &m->held, &m->resp);
	m->next = fs->mail;
	fs->mail = m;
	pthread_mutex_unlock(&fs->mail_lock);
	if (old)
		fs_mailbox_free(fs, old, false);
}

/* Moves the response (and its count) of (ino, owner's uid) to out / *held. */
static bool fs_mailbox_take(struct fs *fs, fuse_ino_t ino, struct fs_uid *owner,
			    struct kms_buf *out, size_t *held)
{
	struct fs_mailbox **pp, *m = NULL;
	int64_t now = kms_time_mono_ms();

	pthread_mutex_lock(&fs->mail_lock);
	for (pp = &fs->mail; *pp; pp = &(*pp)->next) {
		if ((*pp)->ino == ino && (*pp)->owner == owner) {
			m = *pp;
			*pp = m->next;
			break;
		}
	}
	pthread_mutex_unlock(&fs->mail_lock);
	if (!m)
		return false;
	if (m->expires_ms <= now) {
		fs_mailbox_free(fs, m, true);
		return false;
	}
	/* Same uid: the held bytes stay in its count, now for the handle. */
	kms_buf_move(out, &m->resp);
	*held = m->held;
	m->held = 0;
	fs_mailbox_free(fs, m, true);
	return true;
}

void fs_mailbox_expire(struct fs *fs, bool all)
{
	struct fs_mailbox **pp, *dead = NULL;
	int64_t now = kms_time_mono_ms();

	pthread_mutex_lock(&fs->mail_lock);
	for (pp = &fs->mail; *pp;) {
		struct fs_mailbox *m = *pp;

		if (all || m->expires_ms <= now) {
			*pp = m->next;
			m->next = dead;
			dead = m;
		} else {
			pp = &m->next;
		}
	}
	pthread_mutex_unlock(&fs->mail_lock);
	while (dead) {
		struct fs_mailbox *next = dead->next;

		fs_mailbox_free(fs, dead, true);
		dead = next;
	}
}

__thread const struct fs_call *fs_current_call;

static struct fs_txn *fs_txn_of(struct fuse_file_info *fi)
{
	return (struct fs_txn *)(uintptr_t)fi->fh;
}

static void fs_txn_unbuffer(struct fs *fs, struct fs_txn *t)
{
	fs_share_give(fs, t->owner, FS_POOL_REQUEST_BYTES, t->req.len);
}

/* Free a handle and give back what it holds: answer bytes, its place among the uid's handles. */
static void fs_txn_link(struct fs *fs, struct fs_txn *t)
{
	pthread_mutex_lock(&fs->live_lock);
	t->live_prev = NULL;
	t->live_next = fs->live;
	if (fs->live)
		fs->live->live_prev = t;
	fs->live = t;
	pthread_mutex_unlock(&fs->live_lock);
}

static void fs_txn_unlink(struct fs *fs, struct fs_txn *t)
{
	pthread_mutex_lock(&fs->live_lock);
	if (t->live_prev)
		t->live_prev->live_next = t->live_next;
	else
		fs->live = t->live_next;
	if (t->live_next)
		t->live_next->live_prev = t->live_prev;
	pthread_mutex_unlock(&fs->live_lock);
}

static void fs_txn_free(struct fs *fs, struct fs_txn *t)
{
	fs_txn_unlink(fs, t);
	fs_txn_unbuffer(fs, t);
	kms_buf_free(&t->req);
	kms_buf_free(&t->resp);
	fs_hold(fs, t->owner, &t->resp_held, &t->resp);
	fs_share_give(fs, t->owner, FS_POOL_HANDLES, 1);
	fs_uid_put(t->owner);
	fs_identity_release(&t->id);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

/* Run the handle's request as its opener (t->id), whoever sent req. Caller holds t->lock. */
static void fs_txn_run(fuse_req_t req, struct fs_txn *t)
{
	struct fs *fs = fs_from_req(req);
	char project[KMS_MAX_PROJECT_ID + 1];
	struct fs_key_entry key;
	struct fs_call call = {
		.id = &t->id,
		.owner = t->owner,
	};
	int64_t start = kms_time_mono_ns(); /* counted in /kms/.metrics (fs_metrics.c) */
	size_t req_len = t->req.len;
	int err;

	fs_txn_unbuffer(fs, t);
	kms_buf_trim(&t->resp, FS_KEEP_BUF_BYTES);
	fs_hold(fs, t->owner, &t->resp_held, &t->resp);
	if (t->sm.state == FS_TXN_REFUSED) {
		err = t->sm.refusal;
		goto fail;
	}
	/* Answers held by handles and mailboxes are bounded, per uid and in all: past the bound,
	 * refuse (503, EAGAIN) before running rather than grow without limit. */
	if (!fs_share_room(fs, t->owner, FS_POOL_HELD_BYTES, KMS_MAX_RESPONSE)) {
		err = KMS_E_BUSY;
		goto fail;
	}
	if (!fs_project_name(fs, t->node.project, project)) {
		err = KMS_E_BAD_URL;
		goto fail;
	}
	/* The identity captured at open; the API judges it on every request. */
	fs_identity_caller(&t->id, project, &call.caller);
	if (t->node.type == FS_KEY_ACTION) {
		if (!fs_key_entry(fs, t->node.key, &key)) {
			err = KMS_E_KEY_NOT_FOUND;
			goto fail;
		}
		call.caller.path_key_id = key.key_id;
	}
	fs_current_call = &call;
	err = api_call(&fs->svc, &call.caller, t->action, t->req.data, t->req.len, &t->resp);
	fs_current_call = NULL;
	kms_buf_trim(&t->req, FS_KEEP_BUF_BYTES);
	fs_hold(fs, t->owner, &t->resp_held, &t->resp);
	fs_txn_on_answer(&t->sm, err < 0 ? err : 0);
	fs_metrics_count(fs, t->node.action, err, start, req_len, t->resp.len);
	return;
fail:
	kms_buf_trim(&t->req, FS_KEEP_BUF_BYTES);
	fs_txn_on_answer(&t->sm, err);
	if (api_error_json(err, &t->resp) < 0)
		kms_buf_reset(&t->resp);
	fs_hold(fs, t->owner, &t->resp_held, &t->resp);
	fs_metrics_count(fs, t->node.action, err, start, req_len, t->resp.len);
}

/* Set the open flags the kernel needs: direct_io so responses never enter the page cache (one
 * caller's DEK must not be served to another), parallel direct writes so writers to one file
 * don't queue on the inode lock, and no flush unless the handle is write-only: a handle that can
 * read reads its answer, so a FLUSH at its close would be one more synchronous round trip that
 * tells it nothing (fs_txn_needs_flush). libfuse 3.14.0 has no field for
 * FOPEN_PARALLEL_DIRECT_WRITES, hence the raw reply. */
static int fs_reply_open(fuse_req_t req, struct fuse_file_info *fi, int acc)
{
	struct fuse_open_out out;

	memset(&out, 0, sizeof(out));
	out.fh = fi->fh;
	out.open_flags = FOPEN_DIRECT_IO | FOPEN_PARALLEL_DIRECT_WRITES;
	if (!fs_txn_needs_flush(acc != O_WRONLY, acc != O_RDONLY))
		out.open_flags |= FOPEN_NOFLUSH;
	return fuse_reply_buf(req, (const char *)&out, sizeof(out));
}

void fs_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_from_req(req);
	int acc = fi->flags & O_ACCMODE;
	struct fs_uid *owner;
	struct fs_txn *t;
	struct fs_node n;

	if (!fs_node_from_ino(ino, &n)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (n.type != FS_PROJECT_ACTION && n.type != FS_KEY_ACTION) {
		fuse_reply_err(req, n.type == FS_ALIAS_LINK ? ELOOP : EISDIR);
		return;
	}
	owner = fs_uid_get(fs, fuse_req_ctx(req)->uid);
	if (!owner) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	/* Handles are bounded per uid and in all: a uid at its share gets ENFILE, others don't. */
	if (!fs_share_take(fs, owner, FS_POOL_HANDLES, 1)) {
		fs_uid_put(owner);
		fuse_reply_err(req, ENFILE);
		return;
	}
	t = calloc(1, sizeof(*t));
	if (!t) {
		fs_share_give(fs, owner, FS_POOL_HANDLES, 1);
		fs_uid_put(owner);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_init(&t->lock, NULL);
	t->owner = owner;
	fs_identity_capture(req, fs, n.project, &t->id);
	/* Only a handle's requests are audited: the tree's lookups capture no process name. */
	if (fs->audit)
		fs_process_name(t->id.pid, t->id.comm, sizeof(t->id.comm));
	t->ino = ino;
	t->node = n;
	t->action = api_action_at(n.action);
	t->writable = acc != O_RDONLY;
	t->readable = acc != O_WRONLY;
	kms_buf_init(&t->req, KMS_MAX_REQUEST, true);
	kms_buf_init(&t->resp, KMS_MAX_RESPONSE, true);
	fs_txn_on_open(&t->sm,
		       acc == O_RDONLY && fs_mailbox_take(fs, ino, owner, &t->resp, &t->resp_held));
	fi->fh = (uint64_t)(uintptr_t)t;
	fs_txn_link(fs, t);
	if (fs_reply_open(req, fi, acc) == -ENOENT)
		fs_txn_free(fs, t); /* the open was interrupted: no release will come */
}

/* The errno of a refused write: too long, or no room (KMS_E_BUSY) in the uid's share. */
static int fs_write_errno(int refusal)
{
	return refusal == KMS_E_TOO_LONG ? EFBIG : ENOMEM;
}

void fs_op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		 struct fuse_file_info *fi)
{
	struct fs *fs = fs_from_req(req);
	struct fs_txn *t = fs_txn_of(fi);
	int err = 0;
	int r;

	pthread_mutex_lock(&t->lock);
	switch (fs_txn_on_write(&t->sm)) {
	case FS_TXN_WRITE_FIRST:
		/* A write after a response starts the next request on this handle. */
		fs_txn_unbuffer(fs, t);
		kms_buf_trim(&t->req, FS_KEEP_BUF_BYTES);
		kms_buf_trim(&t->resp, FS_KEEP_BUF_BYTES);
		fs_hold(fs, t->owner, &t->resp_held, &t->resp);
		break;
	case FS_TXN_WRITE_MORE:
		break;
	case FS_TXN_WRITE_REFUSED:
		err = fs_write_errno(t->sm.refusal); /* as the write that failed */
		goto out;
	}
	if (!fs_share_take(fs, t->owner, FS_POOL_REQUEST_BYTES, size)) {
		/* Too many half-finished requests of the opener's uid, or daemon-wide: refuse, don't
		 * grow. The request is now incomplete, so it must answer an error, never run with
		 * what was accepted. */
		r = KMS_E_BUSY;
	} else if ((r = kms_buf_append(&t->req, buf, size)) < 0) {
		fs_share_give(fs, t->owner, FS_POOL_REQUEST_BYTES, size);
		if (r != KMS_E_TOO_LONG)
			r = KMS_E_BUSY;
	}
	if (r < 0) {
		fs_txn_unbuffer(fs, t);
		kms_buf_trim(&t->req, FS_KEEP_BUF_BYTES);
		fs_txn_on_write_refused(&t->sm, r);
		err = fs_write_errno(r);
	}
out:
	pthread_mutex_unlock(&t->lock);
	/* The request may carry a plaintext DEK (encrypt-datakey): it sits in libfuse's receive
	 * buffer for this worker, which is writable memory libfuse reuses without clearing. Wipe it
	 * now that it is copied (or refused), so no plaintext outlives its transaction there. */
	kms_wipe((void *)buf, size);
	if (err)
		fuse_reply_err(req, err);
	else
		fuse_reply_write(req, size);
}

/* read(), pread() and every other direct read carry the caller's lock owner (the kernel sets
 * FUSE_READ_LOCKOWNER from the reader's file table); the kernel's reads for its page cache do not:
 * sendfile, splice and copy_file_range from these files, mmap and readahead come that way. An
 * answer given to those would sit in the inode's page cache, where any other handle, of any uid,
 * could splice or map it without asking us. So they get no answer at all: EOPNOTSUPP, before
 * anything runs or moves. busybox cat and Python's shutil.copyfile then fall back to read();
 * os.sendfile and Node's fs.copyFileSync fail with "Operation not supported". (EIO or EINVAL
 * would make libuv emulate sendfile with pread for st_size bytes, and it loops for ever when the
 * answer is shorter than that.) */
static bool fs_read_is_for_page_cache(const struct fuse_file_info *fi)
{
	return fi->lock_owner == 0;
}

void fs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct fs_txn *t = fs_txn_of(fi);
	size_t pos;
	int err;

	if (fs_read_is_for_page_cache(fi)) {
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	pthread_mutex_lock(&t->lock);
	/* The written request, or (nothing written and no mailbox) the action with an empty one. */
	if (fs_txn_read_runs(&t->sm))
		fs_txn_run(req, t);
	err = fs_txn_on_read(&t->sm, t->writable, off, t->resp.len, &pos);
	if (err) {
		pthread_mutex_unlock(&t->lock);
		fuse_reply_err(req, err);
		return;
	}
	if (pos >= t->resp.len)
		fuse_reply_buf(req, NULL, 0);
	else
		fuse_reply_buf(req, (const char *)t->resp.data + pos,
			       size < t->resp.len - pos ? size : t->resp.len - pos);
	pthread_mutex_unlock(&t->lock);
}

/* Run a request that no read asked for (at flush, fsync or release) and, unless the handle can
 * still read it (keep: an fsync of a readable handle), move its response to the mailbox for the
 * next `cat` of this file by the opener's uid (never the uid of whoever closes: a setuid program
 * that inherited the descriptor, say). One copy only: a plaintext DEK is either on the handle or
 * in the mailbox. Caller holds t->lock. */
static void fs_txn_run_to_mailbox(fuse_req_t req, fuse_ino_t ino, struct fs_txn *t, bool keep)
{
	struct fs *fs = fs_from_req(req);
	struct kms_buf out = KMS_BUF_INIT(KMS_MAX_RESPONSE, true);

	fs_txn_run(req, t);
	if (keep)
		return;
	kms_buf_move(&out, &t->resp);
	/* The mailbox counts the buffer anew for the same uid: give back the handle's count. */
	fs_hold(fs, t->owner, &t->resp_held, &t->resp);
	fs_mailbox_put(fs, ino, t->owner, &out);
	kms_buf_free(&out);
}

/* A close of a write-only handle (the only ones opened without FOPEN_NOFLUSH), or an fsync of
 * any handle: run what was written, report a failed request once, to the first of them after it
 * ran (dup'd fds: the rest 0). */
void fs_op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_txn *t = fs_txn_of(fi);
	int err;

	pthread_mutex_lock(&t->lock);
	if (fs_txn_flush_runs(&t->sm))
		fs_txn_run_to_mailbox(req, ino, t, t->readable);
	err = kms_err_errno(fs_txn_on_flush(&t->sm));
	pthread_mutex_unlock(&t->lock);
	fuse_reply_err(req, err);
}

void fs_op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)datasync;
	fs_op_flush(req, ino, fi);
}

void fs_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_txn *t = fs_txn_of(fi);

	/* A read replies under the lock and unlocks after; the client may close, and this
	 * release arrive on another thread, in between. Wait for it before freeing. */
	pthread_mutex_lock(&t->lock);
	/* Written, never read nor flushed (read-write handles get no FLUSH): it still runs, as
	 * its opener, and its answer goes to the mailbox. The client does not wait for this. */
	if (fs_txn_release_runs(&t->sm))
		fs_txn_run_to_mailbox(req, ino, t, false);
	fs_txn_unbuffer(fs_from_req(req), t);
	kms_buf_reset(&t->req);
	pthread_mutex_unlock(&t->lock);
	fs_txn_free(fs_from_req(req), t);
	fuse_reply_err(req, 0);
}

void fs_txns_free_all(struct fs *fs)
{
	size_t n = 0;

	while (fs->live) {
		fs_txn_free(fs, fs->live);
		n++;
	}
	if (n)
		kms_log_debug("freed %zu handles that were still open at unmount", n);
}
