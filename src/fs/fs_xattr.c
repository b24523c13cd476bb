/* Tokens through extended attributes (design.md section 5).
 *
 * `setfattr -n user.kms.token -v TOKEN <path in P>` binds the token's verified claims to
 * (caller uid, P) in memory. The attribute is write-only: getxattr never returns it (ENODATA) and
 * listxattr never lists it, so cp -a, rsync -X and tar --xattrs can't copy a token anywhere.
 * Only the claims (id, project, user, role, expiry) are kept, never the token itself. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/kms_err.h"
#include "common/kms_log.h"
#include "common/kms_secmem.h"
#include "fs_internal.h"

#define FS_TOKEN_XATTR "user.kms.token"

/* One binding per (uid, mount namespace, project), counted in the uid's share of
 * FS_POOL_BINDINGS, so a caller that binds garbage to every project leaves room for the others.
 * The mount namespace (the nsfs inode of /proc/PID/ns/mnt, never 0) keeps the host's logins out
 * of every container and a container's out of the host and the other containers. */
struct fs_binding {
	struct fs_binding *next;
	struct fs_uid *owner; /* pinned */
	uid_t uid;
	uint64_t mntns;
	uint32_t project;
	int error; /* why the token was refused, or 0 */
	struct auth_claims claims;
};

static bool fs_project_of(fuse_ino_t ino, uint32_t *project)
{
	struct fs_node n;

	if (!fs_node_from_ino(ino, &n) || n.type == FS_ROOT || n.type == FS_INFO_FILE)
		return false;
	*project = n.project;
	return true;
}

static size_t fs_binding_bucket(uid_t uid, uint64_t mntns, uint32_t project)
{
	uint32_t ns = (uint32_t)(mntns ^ (mntns >> 32));

	return (((uint32_t)uid * 2654435761u) ^ (project * 40503u) ^ (ns * 2246822519u)) %
	       FS_BIND_BUCKETS;
}

static struct fs_binding **fs_binding_find_locked(struct fs *fs, uid_t uid, uint64_t mntns,
						  uint32_t project)
{
	struct fs_binding **pp;

	for (pp = &fs->bindings[fs_binding_bucket(uid, mntns, project)]; *pp; pp = &(*pp)->next)
		if ((*pp)->uid == uid && (*pp)->mntns == mntns && (*pp)->project == project)
			return pp;
	return NULL;
}

bool fs_binding_claims(struct fs *fs, uid_t uid, uint64_t mntns, uint32_t project,
		       struct auth_claims *out, int *err)
{
	struct fs_binding **pp;
	bool ok = false;

	*err = KMS_E_TOKEN_MISSING;
	if (mntns == 0)
		return false; /* fail closed: a caller whose namespace is unknown has no token */
	pthread_rwlock_rdlock(&fs->bind_lock);
	pp = fs_binding_find_locked(fs, uid, mntns, project);
	if (pp && (*pp)->error == 0) {
		*out = (*pp)->claims;
		ok = true;
	} else if (pp) {
		*err = (*pp)->error;
	}
	pthread_rwlock_unlock(&fs->bind_lock);
	return ok;
}

static void fs_binding_free(struct fs *fs, struct fs_binding *b)
{
	fs_share_give(fs, b->owner, FS_POOL_BINDINGS, 1);
	fs_uid_put(b->owner);
	kms_wipe(b, sizeof(*b));
	free(b);
}

void fs_bindings_free(struct fs *fs)
{
	for (size_t i = 0; i < FS_BIND_BUCKETS; i++) {
		while (fs->bindings[i]) {
			struct fs_binding *b = fs->bindings[i];

			fs->bindings[i] = b->next;
			fs_binding_free(fs, b);
		}
	}
}

/* Install b (uid, mntns, project, claims and error filled in), replacing the binding of its
 * scope: 0, or -ENOSPC when the uid's share of bindings is used up (b is not installed). */
static int fs_binding_install(struct fs *fs, struct fs_binding *b)
{
	struct fs_binding *old = NULL, **pp;
	int err = 0;

	pthread_rwlock_wrlock(&fs->bind_lock);
	pp = fs_binding_find_locked(fs, b->uid, b->mntns, b->project);
	if (pp) {
		/* A new token replaces the old one (its place in the pool goes to the new one).
		 * Handles opened before keep the identity they captured. */
		old = *pp;
		*pp = old->next;
		fs_share_give(fs, old->owner, FS_POOL_BINDINGS, 1);
	}
	if (!fs_share_take(fs, b->owner, FS_POOL_BINDINGS, 1)) {
		err = -ENOSPC;
		goto out;
	}
	/* Logged before the lock is let go: a concurrent setxattr may replace and free b. */
	if (b->error == 0)
		kms_log_info("uid %u bound token %s (user '%s', role %s) to a project in mount "
			     "namespace %llu",
			     (unsigned)b->uid, b->claims.id, b->claims.user,
			     kms_role_name(b->claims.role), (unsigned long long)b->mntns);
	pp = &fs->bindings[fs_binding_bucket(b->uid, b->mntns, b->project)];
	b->next = *pp;
	*pp = b;
out:
	pthread_rwlock_unlock(&fs->bind_lock);
	if (old) {
		fs_uid_put(old->owner);
		kms_wipe(old, sizeof(*old));
		free(old);
	}
	return err;
}

/* A new binding of (uid, mntns, project) with claims (error 0) or a refused token's error. */
static struct fs_binding *fs_binding_new(struct fs *fs, uid_t uid, uint64_t mntns, uint32_t project)
{
	struct fs_binding *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	b->owner = fs_uid_get(fs, uid);
	if (!b->owner) {
		free(b);
		return NULL;
	}
	b->uid = uid;
	b->mntns = mntns;
	b->project = project;
	return b;
}

/* Free a binding that was never installed (nothing of the pool taken). */
static void fs_binding_discard(struct fs_binding *b)
{
	if (!b)
		return;
	fs_uid_put(b->owner);
	kms_wipe(b, sizeof(*b));
	free(b);
}

int fs_binding_set(struct fs *fs, uid_t uid, uint64_t mntns, uint32_t project,
		   const struct auth_claims *claims)
{
	struct fs_binding *b;
	int err;

	if (mntns == 0)
		return -EINVAL;
	b = fs_binding_new(fs, uid, mntns, project);
	if (!b)
		return -ENOMEM;
	b->claims = *claims;
	err = fs_binding_install(fs, b);
	if (err < 0)
		fs_binding_discard(b);
	return err;
}

bool fs_binding_remove(struct fs *fs, uid_t uid, uint64_t mntns, uint32_t project)
{
	struct fs_binding **pp, *old = NULL;

	pthread_rwlock_wrlock(&fs->bind_lock);
	pp = fs_binding_find_locked(fs, uid, mntns, project);
	if (pp) {
		old = *pp;
		*pp = old->next;
	}
	pthread_rwlock_unlock(&fs->bind_lock);
	/* Handles opened with this token keep the identity they captured (docs/access-control.md,
	 * Tokens). */
	if (old)
		fs_binding_free(fs, old);
	return old != NULL;
}

void fs_op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
		    size_t size, int flags)
{
	struct fs *fs = fs_from_req(req);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct fs_binding *b = NULL;
	uint64_t mntns;
	uint32_t project;
	int err = 0;

	if (strcmp(name, FS_TOKEN_XATTR) != 0) {
		err = ENOTSUP;
		goto out;
	}
	if (!fs_project_of(ino, &project)) {
		err = EINVAL; /* tokens belong to a project: set them inside one */
		goto out;
	}
	if (size > KMS_MAX_TOKEN) {
		err = E2BIG;
		goto out;
	}
	/* The binding's scope is the caller's mount namespace: unknown, no binding (fail
	 * closed; user.kms.identity says why). */
	mntns = fs_mntns_of(ctx->pid);
	if (mntns == 0) {
		kms_log_warning("uid %u: the mount namespace of pid %d is unreadable: token not "
				"bound",
				(unsigned)ctx->uid, (int)ctx->pid);
		err = EPERM;
		goto out;
	}
	b = fs_binding_new(fs, ctx->uid, mntns, project);
	if (!b) {
		err = ENOMEM;
		goto out;
	}
	/* Verify now (signature, syntax); expiry and project are checked on every request. */
	b->error = auth_token_verify(fs->token_secret, value, size, 0, &b->claims);
	err = -fs_binding_install(fs, b);
	if (err == 0)
		b = NULL;
out:
	fs_binding_discard(b);
	/* Only the token's claims are kept; the token itself (a bearer secret) must not linger in
	 * libfuse's reused receive buffer either. */
	if (value && size)
		kms_wipe((void *)value, size);
	fuse_reply_err(req, err);
}

void fs_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	/* kmsctl asks this after changing policy or revoking a token, so the change is in force
	 * when kmsctl returns (the janitor would notice within a second anyway). Harmless: it
	 * only re-reads the database. */
	if (strcmp(name, "user.kms.refresh") == 0) {
		bool changed;

		if (store_refresh(fs_from_req(req)->store, &changed) < 0)
			kms_log_warning("re-reading the key database failed");
	}
	/* Nothing to read, ever: tokens are write-only; security.capability must be fast. */
	fuse_reply_err(req, ENODATA);
}

void fs_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	if (size == 0)
		fuse_reply_xattr(req, 0);
	else
		fuse_reply_buf(req, NULL, 0);
}

void fs_op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	struct fs *fs = fs_from_req(req);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	uint64_t mntns;
	uint32_t project;

	/* Only the binding of the caller's own scope: the host's removexattr leaves a
	 * container's login alone, and the other way round. */
	mntns = fs_mntns_of(ctx->pid);
	if (strcmp(name, FS_TOKEN_XATTR) != 0 || !fs_project_of(ino, &project) || mntns == 0 ||
	    !fs_binding_remove(fs, ctx->uid, mntns, project)) {
		fuse_reply_err(req, ENODATA);
		return;
	}
	fuse_reply_err(req, 0);
}
