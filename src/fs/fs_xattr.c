/* Tokens through extended attributes (design.md section 5).
 *
 * `setfattr -n user.kms.token -v TOKEN <path in P>` binds the token's verified claims to
 * (caller uid, caller's mount namespace, P) in memory. The attribute is write-only: getxattr never returns it (ENODATA) and
 * listxattr never lists it, so cp -a, rsync -X and tar --xattrs can't copy a token anywhere.
 * Only the claims (id, project, user, role, expiry) are kept, never the token itself. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/kms_err.h"
#include "common/kms_log.h"
#include "common/kms_secmem.h"
#include "fs_internal.h"

#define FS_TOKEN_XATTR	  "user.kms.token"
#define FS_IDENTITY_XATTR "user.kms.identity"

/* One binding per (uid, mount namespace, project), counted in the uid's share of
 * FS_POOL_BINDINGS, so a caller that binds garbage to every project leaves room for the others.
 * The mount namespace (the nsfs inode of /proc/PID/ns/mnt, never 0) keeps the host's logins out
 * of every container and a container's out of the host and the other containers. */
struct fs_binding {
	struct fs_binding *next;
	struct fs_uid *owner; /* pinned */
	uid_t uid;
	uint64_t mntns; /* pinned (struct fs_ns_pin) while the binding is installed */
	uint32_t project;
	int error; /* why the token was refused, or 0 */
	struct auth_claims claims;
};

/* A mount namespace bindings are scoped to, held open. The kernel gives the inode number of a
 * namespace that ended to the next new one at once, so a number alone would hand the logins of
 * a container that just stopped to whichever starts next; while we hold the namespace its number
 * stays its own. The janitor lets go of namespaces no process is in any more, and of their
 * bindings with them (fs_bindings_sweep). Under fs->bind_lock. */
struct fs_ns_pin {
	struct fs_ns_pin *next;
	uint64_t ino;
	int fd;
	uid_t creator;	 /* counted in its share of the pins */
	size_t refs;	 /* installed bindings scoped to it */
	unsigned unseen; /* sweeps in a row that found no process in it */
	/* A process seen in it (pid 0: none yet), looked at first by the sweep: while it lives in
	 * the namespace, no scan of /proc is needed to know the namespace has a process. */
	pid_t witness;
	uint64_t witness_start;
};
/* At most this many, and a quarter of the descriptors the daemon may open; a uid may pin a
 * quarter of that (FS_UID_SHARE_DIVISOR). */
#define FS_MAX_NS_PINS 4096u
/* A namespace is let go after this many sweeps (a second apart) that found no process in it:
 * one scan of /proc can miss a process forked behind it. */
#define FS_NS_UNSEEN_SWEEPS 2u

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

/* An open descriptor of the mount namespace numbered ino, through pid; -ESRCH when pid is not
 * in it (any more). */
static int fs_ns_open_pid(pid_t pid, uint64_t ino)
{
	char path[64];
	struct stat st;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/ns/mnt", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* The number of what we opened, not of what pid was in a moment ago. */
	if (fstat(fd, &st) != 0 || (uint64_t)st.st_ino != ino) {
		close(fd);
		return -ESRCH;
	}
	return fd;
}

struct fs_ns_opening {
	uint64_t ino;
	pid_t via;
	int fd;
};

static bool fs_ns_open_visit(pid_t pid, void *arg)
{
	struct fs_ns_opening *o = arg;

	o->via = pid;
	o->fd = fs_ns_open_pid(pid, o->ino);
	return o->fd >= 0;
}

/* An open descriptor of the mount namespace numbered ino, through hint if it is in it, else
 * through any process that is (*via: which); -ESRCH when none is (the namespace has ended). */
static int fs_ns_open(pid_t hint, uint64_t ino, pid_t *via)
{
	struct fs_ns_opening o = { .ino = ino, .via = hint, .fd = -ESRCH };
	int err;

	if (hint > 0)
		o.fd = fs_ns_open_pid(hint, ino);
	if (o.fd < 0) {
		err = fs_proc_each(fs_ns_open_visit, &o);
		if (err < 0)
			return err;
	}
	*via = o.via;
	return o.fd < 0 ? -ESRCH : o.fd;
}

static size_t fs_ns_pin_limit(void)
{
	struct rlimit rl;
	size_t limit = FS_MAX_NS_PINS;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur / 4 < limit)
		limit = (size_t)rl.rlim_cur / 4;
	return limit;
}

static struct fs_ns_pin **fs_ns_pin_find_locked(struct fs *fs, uint64_t ino)
{
	struct fs_ns_pin **pp;

	for (pp = &fs->ns_pins; *pp; pp = &(*pp)->next)
		if ((*pp)->ino == ino)
			return pp;
	return NULL;
}

/* One more binding scoped to namespace ino: its pin, or a new one holding *fd (taken: set to
 * -1) with witness w (pid 0: none). -ESRCH without a pin or a descriptor (the namespace ended
 * meanwhile), -ENOSPC when the daemon's or uid's share of pins is used up. */
static int fs_ns_pin_get_locked(struct fs *fs, uint64_t ino, uid_t uid, int *fd,
				const struct fs_ns_pin *w)
{
	struct fs_ns_pin **pp = fs_ns_pin_find_locked(fs, ino), *p;
	size_t total = 0, mine = 0, limit;

	if (pp) {
		(*pp)->refs++;
		return 0;
	}
	if (*fd < 0)
		return -ESRCH;
	for (p = fs->ns_pins; p; p = p->next) {
		total++;
		mine += p->creator == uid;
	}
	limit = fs_ns_pin_limit();
	if (total >= limit || mine >= limit / FS_UID_SHARE_DIVISOR)
		return -ENOSPC;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->ino = ino;
	p->fd = *fd;
	p->creator = uid;
	p->refs = 1;
	p->witness = w->witness;
	p->witness_start = w->witness_start;
	p->next = fs->ns_pins;
	fs->ns_pins = p;
	*fd = -1;
	return 0;
}

static void fs_ns_pin_put_locked(struct fs *fs, uint64_t ino)
{
	struct fs_ns_pin **pp = fs_ns_pin_find_locked(fs, ino), *p;

	if (!pp || --(*pp)->refs > 0)
		return;
	p = *pp;
	*pp = p->next;
	close(p->fd);
	free(p);
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
	while (fs->ns_pins) {
		struct fs_ns_pin *p = fs->ns_pins;

		fs->ns_pins = p->next;
		close(p->fd);
		free(p);
	}
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

/* Install b (uid, mntns, project, claims and error filled in), replacing the binding of its
 * scope, and pin its namespace (found through pid, if given, else through /proc): 0, -ESRCH when
 * no process is in that namespace, or -ENOSPC when the uid's share of bindings or pins is used
 * up. Takes b either way: installed, or discarded. */
static int fs_binding_install(struct fs *fs, struct fs_binding *b, pid_t pid)
{
	struct fs_binding *old = NULL, **pp;
	struct fs_ns_pin w = { .witness = 0 };
	bool pinned;
	int fd = -1, err;

	pthread_rwlock_rdlock(&fs->bind_lock);
	pinned = fs_ns_pin_find_locked(fs, b->mntns) != NULL;
	pthread_rwlock_unlock(&fs->bind_lock);
	if (!pinned) {
		fd = fs_ns_open(pid, b->mntns, &w.witness);
		if (fd < 0) {
			fs_binding_discard(b);
			return fd;
		}
		/* The process the namespace was opened through is its first witness (if it has
		 * gone meanwhile, the first sweep looks for another). */
		if (!fs_proc_start_of(w.witness, &w.witness_start))
			w.witness = 0;
	}
	pthread_rwlock_wrlock(&fs->bind_lock);
	err = fs_ns_pin_get_locked(fs, b->mntns, b->uid, &fd, &w);
	if (err < 0)
		goto out;
	pp = fs_binding_find_locked(fs, b->uid, b->mntns, b->project);
	if (pp) {
		/* A new token replaces the old one (its place in the pool goes to the new one).
		 * Handles opened before keep the identity they captured. */
		old = *pp;
		*pp = old->next;
		fs_share_give(fs, old->owner, FS_POOL_BINDINGS, 1);
		fs_ns_pin_put_locked(fs, old->mntns);
	}
	if (!fs_share_take(fs, b->owner, FS_POOL_BINDINGS, 1)) {
		fs_ns_pin_put_locked(fs, b->mntns);
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
	b = NULL;
out:
	pthread_rwlock_unlock(&fs->bind_lock);
	fs_binding_discard(b); /* not installed */
	if (fd >= 0)
		close(fd); /* pinned by a concurrent install meanwhile */
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

int fs_binding_set(struct fs *fs, uid_t uid, uint64_t mntns, uint32_t project,
		   const struct auth_claims *claims, pid_t hint)
{
	struct fs_binding *b;

	if (mntns == 0)
		return -EINVAL;
	b = fs_binding_new(fs, uid, mntns, project);
	if (!b)
		return -ENOMEM;
	b->claims = *claims;
	return fs_binding_install(fs, b, hint);
}

bool fs_binding_remove(struct fs *fs, uid_t uid, uint64_t mntns, uint32_t project)
{
	struct fs_binding **pp, *old = NULL;

	pthread_rwlock_wrlock(&fs->bind_lock);
	pp = fs_binding_find_locked(fs, uid, mntns, project);
	if (pp) {
		old = *pp;
		*pp = old->next;
		fs_ns_pin_put_locked(fs, mntns);
	}
	pthread_rwlock_unlock(&fs->bind_lock);
	/* Handles opened with this token keep the identity they captured (docs/access-control.md,
	 * Tokens). */
	if (old)
		fs_binding_free(fs, old);
	return old != NULL;
}

/* A pinned namespace as a sweep sees it: its witness, and whether a process is in it now. */
struct fs_ns_look {
	uint64_t ino;
	pid_t witness;
	uint64_t witness_start;
	bool seen;
	bool renewed; /* the scan picked a new witness (pid 0: it went at once): the pin takes it */
};

static int fs_ns_look_cmp(const void *a, const void *b)
{
	uint64_t x = ((const struct fs_ns_look *)a)->ino, y = ((const struct fs_ns_look *)b)->ino;

	return x < y ? -1 : x > y;
}

/* The pinned namespaces with their witnesses, sorted (NULL when there are none). */
static struct fs_ns_look *fs_ns_pinned(struct fs *fs, size_t *n)
{
	struct fs_ns_pin *p;
	struct fs_ns_look *l = NULL;
	size_t cap = 0;

	*n = 0;
	pthread_rwlock_rdlock(&fs->bind_lock);
	for (p = fs->ns_pins; p; p = p->next)
		cap++;
	if (cap)
		l = calloc(cap, sizeof(*l));
	for (p = fs->ns_pins; l && p; p = p->next, (*n)++) {
		l[*n].ino = p->ino;
		l[*n].witness = p->witness;
		l[*n].witness_start = p->witness_start;
	}
	pthread_rwlock_unlock(&fs->bind_lock);
	if (l)
		qsort(l, *n, sizeof(*l), fs_ns_look_cmp);
	return l;
}

struct fs_ns_scanning {
	struct fs_ns_look *l;
	size_t n, left;
};

/* Makes pid the witness of its namespace if that is one of the list's not seen yet; stops once
 * none is left. */
static bool fs_ns_scan_visit(pid_t pid, void *arg)
{
	struct fs_ns_scanning *s = arg;
	struct fs_ns_look key = { .ino = fs_mntns_of(pid) }, *hit;

	hit = key.ino ? bsearch(&key, s->l, s->n, sizeof(*s->l), fs_ns_look_cmp) : NULL;
	if (!hit || hit->seen)
		return false;
	hit->seen = hit->renewed = true;
	hit->witness = fs_proc_start_of(pid, &hit->witness_start) ? pid : 0;
	return --s->left == 0;
}

/* Find a process in each of the left namespaces of l (sorted) not seen yet, and make it their
 * witness. false if /proc can't be read. */
static bool fs_ns_scan(struct fs_ns_look *l, size_t n, size_t left)
{
	struct fs_ns_scanning s = { .l = l, .n = n, .left = left };

	return fs_proc_each(fs_ns_scan_visit, &s) == 0;
}

/* Which of l (sorted) have a process in them now. Each namespace's witness is looked at first:
 * while that process lives in it (two small reads of /proc/PID), the namespace has a process.
 * All of /proc is read only when some witness has gone, for those namespaces, each getting a new
 * witness if it has a process left. false if /proc can't be read. */
static bool fs_ns_look_all(struct fs_ns_look *l, size_t n)
{
	uint64_t self = fs_mntns_of(getpid()); /* the daemon's own: the host's, usually */
	size_t left = 0;

	for (size_t i = 0; i < n; i++) {
		l[i].seen = l[i].ino == self ||
			    fs_witness_alive(l[i].witness, l[i].witness_start, l[i].ino);
		left += !l[i].seen;
	}
	return left == 0 || fs_ns_scan(l, n, left);
}

/* Unlink every binding scoped to namespace ino onto *dead (bind_lock held for writing). */
static size_t fs_bindings_unlink_ns_locked(struct fs *fs, uint64_t ino, struct fs_binding **dead)
{
	struct fs_binding **pp, *b;
	size_t n = 0;

	for (size_t i = 0; i < FS_BIND_BUCKETS; i++) {
		for (pp = &fs->bindings[i]; *pp;) {
			b = *pp;
			if (b->mntns != ino) {
				pp = &b->next;
				continue;
			}
			*pp = b->next;
			b->next = *dead;
			*dead = b;
			fs_ns_pin_put_locked(fs, ino);
			n++;
		}
	}
	return n;
}

void fs_bindings_sweep(struct fs *fs)
{
	struct fs_binding *dead = NULL, *b;
	struct fs_ns_pin *p, *next;
	struct fs_ns_look *l, *at, key;
	size_t n, dropped;

	l = fs_ns_pinned(fs, &n);
	if (!l || !fs_ns_look_all(l, n))
		goto out;
	pthread_rwlock_wrlock(&fs->bind_lock);
	for (p = fs->ns_pins; p; p = next) {
		next = p->next; /* p goes with its last binding */
		key.ino = p->ino;
		at = bsearch(&key, l, n, sizeof(*l), fs_ns_look_cmp);
		if (!at)
			continue; /* pinned after the snapshot */
		if (at->renewed) {
			p->witness = at->witness;
			p->witness_start = at->witness_start;
		}
		p->unseen = at->seen ? 0 : p->unseen + 1;
		if (p->unseen < FS_NS_UNSEEN_SWEEPS)
			continue;
		dropped = fs_bindings_unlink_ns_locked(fs, at->ino, &dead);
		kms_log_info("mount namespace %llu has no process left: %zu token binding(s) "
			     "dropped",
			     (unsigned long long)at->ino, dropped);
	}
	pthread_rwlock_unlock(&fs->bind_lock);
	while (dead) {
		b = dead;
		dead = b->next;
		/* Its namespace ended: a restart must not give the login to a namespace that gets
		 * the same number later. */
		fs_remember_drop(fs, b->uid, b->mntns, b->project);
		fs_binding_free(fs, b);
	}
out:
	free(l);
}

/* The caller's namespace could be read but not held open (it has no process left, or the
 * daemon may not open it): no binding (fail closed), and the log says why. */
static int fs_binding_unpinnable(const struct fuse_ctx *ctx, int err)
{
	kms_log_warning("uid %u: cannot hold the mount namespace of pid %d open (%s): token not "
			"bound",
			(unsigned)ctx->uid, (int)ctx->pid, strerror(err));
	return EPERM;
}

void fs_op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
		    size_t size, int flags)
{
	struct fs *fs = fs_from_req(req);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct fs_binding *b = NULL;
	struct auth_claims claims = { 0 };
	bool refused;
	uint64_t mntns;
	uint32_t project;
	int err = 0;

	memset(&claims, 0, sizeof(claims));

	if (strcmp(name, FS_TOKEN_XATTR) != 0) {
		err = strcmp(name, FS_IDENTITY_XATTR) == 0 ? EPERM : ENOTSUP; /* read-only */
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
	b->error = auth_token_verify(fs->token_secret, value, size, 0, &claims);
	b->claims = claims;
	refused = b->error != 0;
	/* Installed or not, b is the install's: a concurrent setxattr may replace and free it. */
	err = -fs_binding_install(fs, b, ctx->pid);
	b = NULL;
	if (err != 0 && err != ENOSPC && err != ENOMEM)
		err = fs_binding_unpinnable(ctx, err);
	/* Remembered across restarts (fs_remember.c); a refused token replaced the binding. */
	if (err == 0 && !refused && fs_remember_put(fs, ctx->uid, mntns, project, &claims) < 0)
		kms_log_debug("binding kept in memory only");
	else if (err == 0 && refused)
		fs_remember_drop(fs, ctx->uid, mntns, project);
out:
	kms_wipe(&claims, sizeof(claims));
	fs_binding_discard(b);
	/* Only the token's claims are kept; the token itself (a bearer secret) must not linger in
	 * libfuse's reused receive buffer either. */
	if (value && size)
		kms_wipe((void *)value, size);
	fuse_reply_err(req, err);
}

/* Reply to a getxattr/listxattr of size with len bytes of value: the size when asked for it. */
static void fs_reply_value(fuse_req_t req, const char *value, size_t len, size_t size)
{
	if (size == 0)
		fuse_reply_xattr(req, len);
	else if (size < len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, value, len);
}

/* user.kms.identity on a node of a project: how kmsfs sees the caller now (fs_identity.c). */
static void fs_get_identity(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	uint32_t project;
	char *json;

	if (!fs_project_of(ino, &project)) {
		fuse_reply_err(req, ENODATA);
		return;
	}
	json = fs_identity_describe(req, fs_from_req(req), project);
	if (!json) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	fs_reply_value(req, json, strlen(json), size);
	free(json);
}

void fs_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	if (strcmp(name, FS_IDENTITY_XATTR) == 0) {
		fs_get_identity(req, ino, size);
		return;
	}
	/* kmsctl asks this after changing policy or revoking a token, so the change is in force
	 * when kmsctl returns (the janitor would notice within a second anyway). Harmless: it
	 * only re-reads the database. */
	if (strcmp(name, "user.kms.refresh") == 0) {
		bool changed;

		if (store_refresh(fs_from_req(req)->store, &changed) < 0)
			kms_log_warning("re-reading the key database failed");
	}
	/* Nothing else to read, ever: tokens are write-only; security.capability must be fast. */
	fuse_reply_err(req, ENODATA);
}

void fs_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	(void)ino;
	/* Nothing is listed: never the token, and not the identity either. The identity is
	 * computed for whoever reads it, so cp -a, rsync -X and tar --xattrs would write the
	 * copier's uid, pid, namespace and token id onto every copy (and fail with EPERM copying
	 * into kmsfs). getfattr -n user.kms.identity still reads it. */
	fs_reply_value(req, "", 0, size);
}

void fs_op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	struct fs *fs = fs_from_req(req);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	uint64_t mntns;
	uint32_t project;

	if (strcmp(name, FS_IDENTITY_XATTR) == 0) {
		fuse_reply_err(req, EPERM); /* read-only */
		return;
	}
	/* Only the binding of the caller's own scope: the host's removexattr leaves a
	 * container's login alone, and the other way round. */
	mntns = fs_mntns_of(ctx->pid);
	if (strcmp(name, FS_TOKEN_XATTR) != 0 || !fs_project_of(ino, &project) || mntns == 0 ||
	    !fs_binding_remove(fs, ctx->uid, mntns, project)) {
		fuse_reply_err(req, ENODATA);
		return;
	}
	fs_remember_drop(fs, ctx->uid, mntns, project);
	fuse_reply_err(req, 0);
}
