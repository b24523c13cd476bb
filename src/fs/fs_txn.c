/* File transactions (design.md section 2): one request and one response per open handle, run at
 * the first read after a write or at flush; a response run at flush is also left in a read-once
 * mailbox for (file, uid), so `echo "$req" > f; cat f` works. */
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

/* Responses waiting for a shell's `cat`; bounded so a writer that never reads can't grow us. */
#define FS_MAX_MAILBOXES 16384u

struct fs_mailbox {
	struct fs_mailbox *next;
	fuse_ino_t ino;
	uid_t uid;
	int64_t expires_ms;
	size_t held; /* resp.cap as counted in fs->held_bytes */
	struct kms_buf resp;
};

static int64_t fs_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Count the memory a response buffer holds now (held: what was counted for it so far). Its
 * capacity, not its length: a buffer emptied for a small answer keeps its block. */
static void fs_hold(struct fs *fs, size_t *held, const struct kms_buf *b)
{
	if (b->cap > *held)
		__atomic_add_fetch(&fs->held_bytes, b->cap - *held, __ATOMIC_RELAXED);
	else if (b->cap < *held)
		__atomic_sub_fetch(&fs->held_bytes, *held - b->cap, __ATOMIC_RELAXED);
	*held = b->cap;
}

static void fs_mailbox_free(struct fs *fs, struct fs_mailbox *m)
{
	kms_buf_free(&m->resp);
	fs_hold(fs, &m->held, &m->resp);
	free(m);
}

/* Takes over resp. Replaces (and wipes) an older mailbox of the same (file, uid). */
static void fs_mailbox_put(struct fs *fs, fuse_ino_t ino, uid_t uid, struct kms_buf *resp)
{
	struct fs_mailbox *m = calloc(1, sizeof(*m)), **pp;

	if (!m) {
		kms_buf_free(resp);
		return;
	}
	m->ino = ino;
	m->uid = uid;
	m->expires_ms = fs_now_ms() + (int64_t)fs->mailbox_ttl_s * 1000;
	kms_buf_init(&m->resp, KMS_MAX_RESPONSE, true);
	kms_buf_move(&m->resp, resp);
	fs_hold(fs, &m->held, &m->resp);
	pthread_mutex_lock(&fs->mail_lock);
	for (pp = &fs->mail; *pp; pp = &(*pp)->next) {
		if ((*pp)->ino == ino && (*pp)->uid == uid) {
			struct fs_mailbox *old = *pp;

			*pp = old->next;
			fs_mailbox_free(fs, old);
			fs->nmail--;
			break;
		}
	}
	if (fs->nmail >= FS_MAX_MAILBOXES) {
		pthread_mutex_unlock(&fs->mail_lock);
		kms_log_warning("mailbox limit (%u) reached: a response for uid %u was dropped",
				FS_MAX_MAILBOXES, (unsigned)uid);
		fs_mailbox_free(fs, m);
		return;
	}
	m->next = fs->mail;
	fs->mail = m;
	fs->nmail++;
	pthread_mutex_unlock(&fs->mail_lock);
}

/* Moves the response (and its count) to out / *held. */
static bool fs_mailbox_take(struct fs *fs, fuse_ino_t ino, uid_t uid, struct kms_buf *out,
			    size_t *held)
{
	struct fs_mailbox **pp, *m = NULL;
	int64_t now = fs_now_ms();

	pthread_mutex_lock(&fs->mail_lock);
	for (pp = &fs->mail; *pp; pp = &(*pp)->next) {
		if ((*pp)->ino == ino && (*pp)->uid == uid) {
			m = *pp;
			*pp = m->next;
			fs->nmail--;
			break;
		}
	}
	pthread_mutex_unlock(&fs->mail_lock);
	if (!m)
		return false;
	if (m->expires_ms <= now) {
		fs_mailbox_free(fs, m);
		return false;
	}
	kms_buf_move(out, &m->resp);
	*held = m->held;
	m->held = 0;
	fs_mailbox_free(fs, m);
	return true;
}

void fs_mailbox_expire(struct fs *fs, bool all)
{
	struct fs_mailbox **pp, *dead = NULL;
	int64_t now = fs_now_ms();

	pthread_mutex_lock(&fs->mail_lock);
	for (pp = &fs->mail; *pp;) {
		struct fs_mailbox *m = *pp;

		if (all || m->expires_ms <= now) {
			*pp = m->next;
			m->next = dead;
			dead = m;
			fs->nmail--;
		} else {
			pp = &m->next;
		}
	}
	pthread_mutex_unlock(&fs->mail_lock);
	while (dead) {
		struct fs_mailbox *next = dead->next;

		fs_mailbox_free(fs, dead);
		dead = next;
	}
}

static struct fs_txn *fs_txn_of(struct fuse_file_info *fi)
{
	return (struct fs_txn *)(uintptr_t)fi->fh;
}

static void fs_txn_unbuffer(struct fs *fs, struct fs_txn *t)
{
	if (t->req.len)
		__atomic_sub_fetch(&fs->buffered_bytes, t->req.len, __ATOMIC_RELAXED);
}

static void fs_txn_free(struct fs *fs, struct fs_txn *t)
{
	kms_buf_free(&t->req);
	kms_buf_free(&t->resp);
	fs_hold(fs, &t->resp_held, &t->resp);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

/* Identity without a token: the role `kmsctl project bind` gave this uid or one of its groups,
 * the way a container gets its identity from where it runs. A token, when set, wins. */
static bool fs_identity_claims(fuse_req_t req, struct fs *fs, const char *project,
			       struct auth_claims *claims)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	gid_t groups[64];
	uint32_t gids[65];
	size_t n = 0;
	int ng, role;

	gids[n++] = ctx->gid;
	ng = fuse_req_getgroups(req, (int)KMS_ARRAY_SIZE(groups), groups);
	for (int i = 0; i < ng && i < (int)KMS_ARRAY_SIZE(groups); i++)
		gids[n++] = groups[i];
	role = store_binding_role(fs->store, project, ctx->uid, gids, n);
	if (role <= 0)
		return false;
	memset(claims, 0, sizeof(*claims));
	snprintf(claims->id, sizeof(claims->id), "uid:%u", (unsigned)ctx->uid);
	snprintf(claims->project, sizeof(claims->project), "%s", project);
	snprintf(claims->user, sizeof(claims->user), "uid%u", (unsigned)ctx->uid);
	claims->role = (enum auth_role)role;
	claims->expiry = INT64_MAX;
	return true;
}

/* Run the handle's request as the caller of req. Caller holds t->lock. */
static void fs_txn_run(fuse_req_t req, struct fs_txn *t)
{
	struct fs *fs = fs_from_req(req);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	char project[KMS_MAX_PROJECT_ID + 1];
	struct fs_key_entry key;
	struct auth_claims claims;
	struct api_caller caller = { .uid = ctx->uid, .gid = ctx->gid, .pid = ctx->pid };
	int err;

	fs_txn_unbuffer(fs, t);
	kms_buf_trim(&t->resp, FS_KEEP_BUF_BYTES);
	fs_hold(fs, &t->resp_held, &t->resp);
	t->base_set = false;
	t->req_pending = false;
	t->resp_ready = true;
	t->err_reported = false;
	if (t->refused) {
		err = t->refused;
		t->refused = 0;
		goto fail;
	}
	/* Answers held by handles and mailboxes are bounded: past the bound, refuse (503, EAGAIN)
	 * before running rather than grow without limit. */
	if (__atomic_load_n(&fs->held_bytes, __ATOMIC_RELAXED) + KMS_MAX_RESPONSE >
	    FS_MAX_HELD_BYTES) {
		err = KMS_E_BUSY;
		goto fail;
	}
	if (!fs_project_name(fs, t->node.project, project)) {
		err = KMS_E_BAD_URL;
		goto fail;
	}
	caller.project = project;
	if (t->node.type == FS_KEY_ACTION) {
		if (!fs_key_entry(fs, t->node.key, &key)) {
			err = KMS_E_KEY_NOT_FOUND;
			goto fail;
		}
		caller.path_key_id = key.key_id;
	}
	if (fs_binding_claims(fs, ctx->uid, t->node.project, &claims, &caller.auth_error))
		caller.claims = &claims;
	else if (fs_identity_claims(req, fs, project, &claims))
		caller.claims = &claims; /* no token set: an admin's uid/gid binding, if any */
	t->last_err = api_call(&fs->svc, &caller, t->action, t->req.data, t->req.len, &t->resp);
	kms_buf_trim(&t->req, FS_KEEP_BUF_BYTES);
	fs_hold(fs, &t->resp_held, &t->resp);
	return;
fail:
	kms_buf_trim(&t->req, FS_KEEP_BUF_BYTES);
	t->last_err = err;
	if (api_error_json(err, &t->resp) < 0)
		kms_buf_reset(&t->resp);
	fs_hold(fs, &t->resp_held, &t->resp);
}

/* Set the open flags the kernel needs: direct_io so responses never enter the page cache (one
 * caller's DEK must not be served to another), parallel direct writes so writers to one file
 * don't queue on the inode lock, and no flush for read-only handles (nothing to run there).
 * libfuse 3.14.0 has no field for FOPEN_PARALLEL_DIRECT_WRITES, hence the raw reply. */
static int fs_reply_open(fuse_req_t req, struct fuse_file_info *fi, bool writable)
{
	struct fuse_open_out out;

	memset(&out, 0, sizeof(out));
	out.fh = fi->fh;
	out.open_flags = FOPEN_DIRECT_IO | FOPEN_PARALLEL_DIRECT_WRITES;
	if (!writable)
		out.open_flags |= FOPEN_NOFLUSH;
	return fuse_reply_buf(req, (const char *)&out, sizeof(out));
}

void fs_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_from_req(req);
	int acc = fi->flags & O_ACCMODE;
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
	if (__atomic_add_fetch(&fs->open_handles, 1, __ATOMIC_RELAXED) > FS_MAX_OPEN_HANDLES) {
		__atomic_sub_fetch(&fs->open_handles, 1, __ATOMIC_RELAXED);
		fuse_reply_err(req, ENFILE);
		return;
	}
	t = calloc(1, sizeof(*t));
	if (!t) {
		__atomic_sub_fetch(&fs->open_handles, 1, __ATOMIC_RELAXED);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_init(&t->lock, NULL);
	t->ino = ino;
	t->node = n;
	t->action = api_action_at(n.action);
	t->writable = acc != O_RDONLY;
	kms_buf_init(&t->req, KMS_MAX_REQUEST, true);
	kms_buf_init(&t->resp, KMS_MAX_RESPONSE, true);
	if (acc == O_RDONLY &&
	    fs_mailbox_take(fs, ino, fuse_req_ctx(req)->uid, &t->resp, &t->resp_held))
		t->resp_ready = true;
	fi->fh = (uint64_t)(uintptr_t)t;
	if (fs_reply_open(req, fi, t->writable) == -ENOENT) {
		fs_txn_free(fs, t); /* the open was interrupted: no release will come */
		__atomic_sub_fetch(&fs->open_handles, 1, __ATOMIC_RELAXED);
	}
}

void fs_op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		 struct fuse_file_info *fi)
{
	struct fs *fs = fs_from_req(req);
	struct fs_txn *t = fs_txn_of(fi);
	int err = 0;
	int r;

	pthread_mutex_lock(&t->lock);
	if (!t->req_pending && !t->refused) {
		/* A write after a response starts the next request on this handle. */
		fs_txn_unbuffer(fs, t);
		kms_buf_trim(&t->req, FS_KEEP_BUF_BYTES);
		kms_buf_trim(&t->resp, FS_KEEP_BUF_BYTES);
		fs_hold(fs, &t->resp_held, &t->resp);
		t->resp_ready = false;
		t->base_set = false;
	}
	t->req_pending = true;
	if (t->refused) {
		err = t->refused == KMS_E_TOO_LONG ? EFBIG : ENOMEM; /* as the write that failed */
		goto out;
	}
	if (__atomic_add_fetch(&fs->buffered_bytes, size, __ATOMIC_RELAXED) >
	    FS_MAX_BUFFERED_BYTES) {
		/* Too many half-finished requests daemon-wide: refuse, don't grow. The request is
		 * now incomplete, so it must answer an error, never run with what was accepted. */
		__atomic_sub_fetch(&fs->buffered_bytes, size, __ATOMIC_RELAXED);
		r = KMS_E_BUSY;
	} else if ((r = kms_buf_append(&t->req, buf, size)) < 0) {
		__atomic_sub_fetch(&fs->buffered_bytes, size, __ATOMIC_RELAXED);
		if (r != KMS_E_TOO_LONG)
			r = KMS_E_BUSY;
	}
	if (r < 0) {
		fs_txn_unbuffer(fs, t);
		kms_buf_trim(&t->req, FS_KEEP_BUF_BYTES);
		t->refused = r;
		err = r == KMS_E_TOO_LONG ? EFBIG : ENOMEM;
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

	if (fs_read_is_for_page_cache(fi)) {
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	pthread_mutex_lock(&t->lock);
	if (t->req_pending || t->refused || !t->resp_ready) {
		/* Nothing written and no mailbox: run the action with an empty request. */
		fs_txn_run(req, t);
		t->ran_by_read = true;
	}
	if (!t->base_set) {
		/* A read-only handle reads its answer like a regular file, from offset 0. A reader
		 * whose first read is past the answer sought there from st_size, which is only a
		 * bound (`tail` seeks to st_size minus a block): ESPIPE, so that it fails loudly
		 * rather than print nothing. */
		if (!t->writable && off > 0 && (size_t)off >= t->resp.len) {
			pthread_mutex_unlock(&t->lock);
			fuse_reply_err(req, ESPIPE);
			return;
		}
		/* A handle that wrote its request gets the response from its first read after
		 * the request, whatever the file offset (a shell's `exec 3<>f; printf … >&3;
		 * cat <&3` reads from the end of its request). */
		t->read_base = t->writable ? off : 0;
		t->base_set = true;
	}
	pos = off >= t->read_base ? (size_t)(off - t->read_base) : (size_t)off;
	if (pos >= t->resp.len)
		fuse_reply_buf(req, NULL, 0);
	else
		fuse_reply_buf(req, (const char *)t->resp.data + pos,
			       size < t->resp.len - pos ? size : t->resp.len - pos);
	pthread_mutex_unlock(&t->lock);
}

void fs_op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_from_req(req);
	struct fs_txn *t = fs_txn_of(fi);
	int err = 0;

	pthread_mutex_lock(&t->lock);
	if (t->req_pending || t->refused) {
		struct kms_buf copy = KMS_BUF_INIT(KMS_MAX_RESPONSE, true);

		fs_txn_run(req, t);
		t->ran_by_read = false;
		/* Leave the response for the next `cat` of this file by this uid. */
		if (kms_buf_append(&copy, t->resp.data, t->resp.len) == 0)
			fs_mailbox_put(fs, ino, fuse_req_ctx(req)->uid, &copy);
		kms_buf_free(&copy);
	}
	/* Report a failed request once, to the first close after it ran (dup'd fds: the rest 0). */
	if (t->resp_ready && t->last_err < 0 && !t->err_reported) {
		t->err_reported = true;
		err = kms_err_errno(t->last_err);
	}
	pthread_mutex_unlock(&t->lock);
	fuse_reply_err(req, err);
}

void fs_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_txn *t = fs_txn_of(fi);

	/* A read replies under the lock and unlocks after; the client may close, and this
	 * release arrive on another thread, in between. Wait for it before freeing. */
	pthread_mutex_lock(&t->lock);
	fs_txn_unbuffer(fs_from_req(req), t);
	kms_buf_reset(&t->req);
	pthread_mutex_unlock(&t->lock);
	fs_txn_free(fs_from_req(req), t);
	__atomic_sub_fetch(&fs_from_req(req)->open_handles, 1, __ATOMIC_RELAXED);
	fuse_reply_err(req, 0);
}
