/* Who a request runs as (design.md section 5). The identity is captured when a handle is opened,
 * like the kernel's file credentials, and every request on the handle runs with it: a descriptor
 * handed to another process (fork, SCM_RIGHTS, a setuid program that inherits it and exits, which
 * makes the kernel send the FLUSH as root) never borrows that process's identity. Capture only:
 * what the identity may do is decided in src/api/api_authz.c. */
#define _GNU_SOURCE /* O_PATH */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common/kms_err.h"
#include "common/kms_time.h"
#include "fs_internal.h"

void fs_process_name(pid_t pid, char *out, size_t cap)
{
	char path[64];
	ssize_t n;
	int fd;

	out[0] = 0;
	if (pid <= 0)
		return;
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	n = read(fd, out, cap - 1);
	close(fd);
	if (n <= 0)
		n = 0;
	out[n] = 0;
	out[strcspn(out, "\n")] = 0;
}

/* The primary group and the supplementary ones of req's caller (out: FS_MAX_GROUPS + 1). */
size_t fs_groups(fuse_req_t req, gid_t gid, gid_t *out)
{
	gid_t groups[FS_MAX_GROUPS];
	size_t n = 0;
	int ng;

	out[n++] = gid;
	ng = fuse_req_getgroups(req, (int)FS_MAX_GROUPS, groups);
	for (int i = 0; i < ng && i < (int)FS_MAX_GROUPS; i++)
		out[n++] = groups[i];
	return n;
}

/* "/proc/PID" followed by tail into path, without the cost of snprintf (one per open). */
#define FS_PROC_PATH 64
static void fs_proc_path(char path[FS_PROC_PATH], pid_t pid, const char *tail)
{
	char digits[16];
	size_t n = 0, len = 6, tlen;
	unsigned v = (unsigned)pid;

	memcpy(path, "/proc/", len);
	do {
		digits[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		path[len++] = digits[--n];
	tlen = strlen(tail);
	if (len + tlen >= FS_PROC_PATH)
		tlen = 0; /* never with our tails: /proc/PID alone then */
	memcpy(path + len, tail, tlen);
	path[len + tlen] = 0;
}

/* The namespace named by a link "mnt:[INODE]" of n bytes, 0 if it is not one. */
static uint64_t fs_mntns_parse(const char *link, ssize_t n)
{
	uint64_t ino = 0;

	if (n < 7 || strncmp(link, "mnt:[", 5) != 0 || link[n - 1] != ']')
		return 0;
	for (ssize_t i = 5; i < n - 1; i++) {
		if (link[i] < '0' || link[i] > '9' || ino > UINT64_MAX / 10 - 1)
			return 0;
		ino = ino * 10 + (uint64_t)(link[i] - '0');
	}
	return ino;
}

uint64_t fs_mntns_of(pid_t pid)
{
	char path[FS_PROC_PATH], link[64];
	ssize_t n;

	if (pid <= 0)
		return 0;
	fs_proc_path(path, pid, "/ns/mnt");
	/* The link reads "mnt:[INODE]", the nsfs inode a stat would give: half the cost of a stat,
	 * which makes the kernel instantiate the namespace's dentry (measured: 2.4 against 4.7 us). */
	n = readlink(path, link, sizeof(link));
	return fs_mntns_parse(link, n);
}

/* The namespace the task behind link_fd (an O_PATH of /proc/PID/ns/mnt) is in now, 0 if that
 * task is gone. The link is the task's, not the number's: the kernel ties a /proc inode to the
 * task's struct pid, so a task that reuses the number is never read through it (its read fails
 * and the caller opens the number again). Without the path walk: 1.45 against 2.2 us here. */
static uint64_t fs_mntns_via(int link_fd)
{
	char link[64];
	ssize_t n = readlinkat(link_fd, "", link, sizeof(link));

	return fs_mntns_parse(link, n);
}

int fs_proc_each(bool (*visit)(pid_t pid, void *arg), void *arg)
{
	DIR *d = opendir("/proc");
	struct dirent *e;

	if (!d)
		return -errno;
	while ((e = readdir(d)) != NULL) {
		char *end;
		long pid;

		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue; /* not a process ("self", "sys", ...) */
		pid = strtol(e->d_name, &end, 10);
		if (*end || pid > INT32_MAX)
			continue;
		if (visit((pid_t)pid, arg))
			break;
	}
	closedir(d);
	return 0;
}

/* What the tree shows a caller (fs_tree.c: a key folder's entries are never cached, so every
 * open of a file in one looks its folder up first) is decided with the namespace the caller's
 * thread had at its last open or lookup, if that was less than FS_MNTNS_MEMO_NS ago: far less
 * than the kernel needs to give a thread id to another task (it allocates every other pid
 * first). A thread that entered a new namespace meanwhile may see key names of the old one's for
 * that long, never use its tokens: opens read the namespace afresh. Kernel facts, so shared by
 * every mount of the process. */
#define FS_MNTNS_MEMO_SLOTS FS_MNTNS_LINK_SLOTS
#define FS_MNTNS_MEMO_NS    (2 * 1000 * 1000)
/* Each slot also keeps, for a thread read twice before, an O_PATH descriptor of its
 * /proc/PID/ns/mnt (fs_mntns_via), so that the reads an open must make afresh skip the path
 * walk: client threads that come back are the common case, while a one-off process (a shell's
 * cat: one read at the lookup, one at the open) pays no open of its own nor takes the slot's
 * descriptor from another thread. A descriptor is only ever in its slot or in the hands of one
 * reader, which takes it out under the slot's lock, so no thread closes one another is reading
 * through. At most one per slot. */
#define FS_MNTNS_LINK_AFTER 2u /* fresh reads of a thread before its descriptor is opened */
struct fs_mntns_memo {
	bool busy; /* a spin lock: held for a few loads and stores, never across a system call */
	pid_t pid;
	uint8_t reads; /* fresh reads of pid, up to FS_MNTNS_LINK_AFTER */
	int link_fd;   /* -1: none */
	uint64_t mntns;
	int64_t at_ns;
};
static struct fs_mntns_memo fs_mntns_memos[FS_MNTNS_MEMO_SLOTS] = {
	[0 ... FS_MNTNS_MEMO_SLOTS - 1] = { .link_fd = -1 },
};

static void fs_mntns_memo_lock(struct fs_mntns_memo *m)
{
	while (__atomic_test_and_set(&m->busy, __ATOMIC_ACQUIRE))
		;
}

static void fs_mntns_memo_unlock(struct fs_mntns_memo *m)
{
	__atomic_clear(&m->busy, __ATOMIC_RELEASE);
}

/* A fresh read of pid's namespace, through *link_fd (taken from the slot; closed and reset if
 * its task is gone) or, for a thread that comes back (keep), through a descriptor opened now. */
static uint64_t fs_mntns_read(pid_t pid, bool keep, int *link_fd)
{
	char path[FS_PROC_PATH];
	uint64_t ns = 0;

	if (*link_fd >= 0) {
		ns = fs_mntns_via(*link_fd);
		if (ns)
			return ns;
		close(*link_fd); /* its task ended: the number may be another task's now */
		*link_fd = -1;
	}
	if (!keep)
		return fs_mntns_of(pid);
	fs_proc_path(path, pid, "/ns/mnt");
	*link_fd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (*link_fd < 0)
		return fs_mntns_of(pid);
	ns = fs_mntns_via(*link_fd);
	if (!ns) { /* unreadable to us: no descriptor kept for it */
		close(*link_fd);
		*link_fd = -1;
	}
	return ns;
}

/* pid's namespace: remembered (view) or read afresh (and remembered). */
static uint64_t fs_mntns_recent(pid_t pid, bool view)
{
	struct fs_mntns_memo *m;
	int64_t now = kms_time_mono_ns();
	int link_fd = -1, evicted = -1;
	uint64_t ns = 0;
	bool seen, keep = false;

	if (pid <= 0)
		return 0;
	m = &fs_mntns_memos[(unsigned)pid % FS_MNTNS_MEMO_SLOTS];
	fs_mntns_memo_lock(m);
	seen = m->pid == pid;
	if (seen && view && now - m->at_ns < FS_MNTNS_MEMO_NS) {
		ns = m->mntns;
	} else if (seen) {
		keep = m->reads >= FS_MNTNS_LINK_AFTER;
		link_fd = m->link_fd;
		m->link_fd = -1;
	}
	fs_mntns_memo_unlock(m);
	if (ns)
		return ns;
	ns = fs_mntns_read(pid, keep, &link_fd);
	fs_mntns_memo_lock(m);
	if (ns && m->pid != pid) { /* the slot goes to pid, with the descriptor it has */
		evicted = m->link_fd;
		m->link_fd = -1;
		m->pid = pid;
		m->reads = 0;
	}
	if (ns) {
		m->mntns = ns;
		m->at_ns = now; /* read after now: kept no longer than it is sure */
		if (m->reads < FS_MNTNS_LINK_AFTER)
			m->reads++;
	}
	if (m->pid == pid && m->link_fd < 0) {
		m->link_fd = link_fd;
		link_fd = -1;
	}
	fs_mntns_memo_unlock(m);
	if (evicted >= 0)
		close(evicted);
	if (link_fd >= 0)
		close(link_fd);
	return ns;
}

void fs_mntns_memo_trim(int64_t idle_ns)
{
	int64_t now = kms_time_mono_ns();

	for (unsigned i = 0; i < FS_MNTNS_MEMO_SLOTS; i++) {
		struct fs_mntns_memo *m = &fs_mntns_memos[i];
		int link_fd = -1;

		fs_mntns_memo_lock(m);
		if (m->link_fd >= 0 && now - m->at_ns >= idle_ns) {
			link_fd = m->link_fd;
			m->link_fd = -1;
		}
		fs_mntns_memo_unlock(m);
		if (link_fd >= 0)
			close(link_fd);
	}
}

/* Hybrid hierarchies list the v1 controllers (a path each, at most PATH_MAX) before the v2
 * line: the file is read whole, up to this many bytes. */
#define FS_CGROUP_FILE_MAX (16u * (PATH_MAX + 32u))

/* The whole of /proc/PID/cgroup, NUL-terminated, into buf (cap bytes): 1, 0 if it cannot be
 * read, -1 if it is longer. Never a prefix: a path cut short could name a shallower cgroup,
 * whose binding does not cover the caller ("/a/b" of "/a/bc"). */
static int fs_cgroup_file(pid_t pid, char *buf, size_t cap)
{
	char path[FS_PROC_PATH];
	size_t len = 0;
	ssize_t n = 0;
	int fd;

	fs_proc_path(path, pid, "/cgroup");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	while (len < cap - 1 && (n = read(fd, buf + len, cap - 1 - len)) > 0)
		len += (size_t)n;
	if (n > 0) { /* buf is full: is there more? */
		char more;

		n = read(fd, &more, 1);
	}
	close(fd);
	buf[len] = 0;
	if (n > 0)
		return -1;
	return n == 0 && len > 0 && buf[len - 1] == '\n';
}

/* The v2 path of the "0::" line of buf, or NULL. */
static char *fs_cgroup_v2(char *buf)
{
	char *line, *next;

	for (line = buf; line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = 0;
		if (strncmp(line, "0::", 3) == 0)
			return line[3] == '/' ? strdup(line + 3) : NULL;
	}
	return NULL;
}

char *fs_cgroup_of(pid_t pid)
{
	char small[4096], *big, *out = NULL;
	int r;

	if (pid <= 0)
		return NULL;
	r = fs_cgroup_file(pid, small, sizeof(small));
	if (r > 0)
		return fs_cgroup_v2(small);
	/* Long paths: read it again whole (it may have changed meanwhile; never a prefix). */
	if (r < 0 && (big = malloc(FS_CGROUP_FILE_MAX)) != NULL) {
		if (fs_cgroup_file(pid, big, FS_CGROUP_FILE_MAX) > 0)
			out = fs_cgroup_v2(big);
		free(big);
	}
	return out;
}

static void fs_identity_take(fuse_req_t req, struct fs *fs, uint32_t project, bool view,
			     struct fs_identity *out)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	char name[KMS_MAX_PROJECT_ID + 1] = "";
	gid_t gids[FS_MAX_GROUPS + 1];
	struct api_caller caller;
	enum kms_role role;

	memset(out, 0, sizeof(*out));
	out->uid = ctx->uid;
	out->gid = ctx->gid;
	out->pid = ctx->pid;
	/* Tokens are bound per mount namespace (0 unknown: no token applies). A read of /proc per
	 * open, spared while no token is bound anywhere and nothing is audited. */
	if (fs->audit || __atomic_load_n(&fs->pool_used[FS_POOL_BINDINGS], __ATOMIC_RELAXED))
		out->mntns = fs_mntns_recent(out->pid, view);
	out->has_token = fs_binding_claims(fs, out->uid, out->mntns, project, &out->claims,
					   &out->auth_error);
	/* The cgroup only where it can matter: for the bindings (no token) and the audit lines
	 * (of handles: the tree's views are not audited). Read even while no cgroup binding
	 * exists: one made later must narrow handles opened before, on their next request. */
	if (!out->has_token || (fs->audit && !view))
		out->cgroup = fs_cgroup_of(out->pid);
	fs_identity_caller(out, name, &caller);
	/* The groups (a read of /proc) only for a caller a binding can apply to. */
	if (!api_binding_applies(&caller) || !fs_project_name(fs, project, name))
		return;
	caller.gids = gids;
	caller.ngids = fs_groups(req, out->gid, gids);
	/* The API decides which role the bindings give; requests re-check it with these groups. */
	role = api_bound_role(&fs->svc, &caller);
	if (role == KMS_ROLE_NONE)
		return;
	out->gids = malloc(caller.ngids * sizeof(*out->gids));
	if (!out->gids) {
		out->auth_error = KMS_E_NOMEM; /* fail closed: no role we could not re-check */
		return;
	}
	memcpy(out->gids, gids, caller.ngids * sizeof(*out->gids));
	out->ngids = caller.ngids;
	out->bound_role = role;
}

void fs_identity_capture(fuse_req_t req, struct fs *fs, uint32_t project, struct fs_identity *out)
{
	fs_identity_take(req, fs, project, false, out);
}

void fs_identity_view(fuse_req_t req, struct fs *fs, uint32_t project, struct fs_identity *out)
{
	fs_identity_take(req, fs, project, true, out);
}

void fs_identity_release(struct fs_identity *id)
{
	free(id->gids);
	id->gids = NULL;
	id->ngids = 0;
	id->bound_role = KMS_ROLE_NONE;
	free(id->cgroup);
	id->cgroup = NULL;
	id->mntns = 0;
}

void fs_identity_caller(const struct fs_identity *id, const char *project, struct api_caller *out)
{
	out->project = project;
	out->trusted = false;
	out->claims = id->has_token ? &id->claims : NULL;
	out->auth_error = id->auth_error;
	out->bound_role = id->bound_role;
	out->uid = id->uid;
	out->gid = id->gid;
	out->gids = id->gids;
	out->ngids = id->ngids;
	out->pid = id->pid;
	out->mntns = id->mntns;
	out->cgroup = id->cgroup ? id->cgroup : ""; /* "" : a process whose cgroup is unknown */
}

/* --- user.kms.identity: how kmsfs sees the caller now ------------------------------------ */

/* Why no token applies to id (its auth_error, or the check of its bound token's claims: err). */
static void fs_describe_no_token(cJSON *o, const struct fs_identity *id, int err)
{
	char why[256];

	if (id->pid <= 0)
		snprintf(why, sizeof(why),
			 "the caller is not visible in the daemon's pid namespace: its mount "
			 "namespace is unknown, no token applies");
	else if (id->mntns == 0)
		snprintf(why, sizeof(why),
			 "/proc/%d/ns/mnt is unreadable to the daemon: the mount namespace is "
			 "unknown, no token applies",
			 (int)id->pid);
	else if (err == KMS_E_TOKEN_MISSING)
		snprintf(why, sizeof(why),
			 "%s: no token was set by uid %u in this mount namespace for this project",
			 kms_err_info(err)->code, (unsigned)id->uid);
	else
		snprintf(why, sizeof(why), "%s: %s", kms_err_info(err)->code,
			 kms_err_info(err)->message);
	cJSON_AddStringToObject(o, "token_error", why);
}

/* The token bound for id's scope: its claims (never the token), and whether it applies now. */
static enum kms_role fs_describe_token(cJSON *o, struct fs *fs, const struct fs_identity *id,
				       const char *project)
{
	cJSON *t;
	int err = id->auth_error;

	if (id->has_token) {
		t = cJSON_AddObjectToObject(o, "token");
		if (t) {
			cJSON_AddStringToObject(t, "id", id->claims.id);
			cJSON_AddStringToObject(t, "user", id->claims.user);
			cJSON_AddStringToObject(t, "role", kms_role_name(id->claims.role));
			cJSON_AddNumberToObject(t, "expiry", (double)id->claims.expiry);
			/* fs_remember.c: false when it will not survive a restart */
			cJSON_AddBoolToObject(
				t, "remembered",
				fs_remembered(fs, id->uid, id->mntns, project, id->claims.id));
		}
		err = auth_claims_check(&id->claims, project, kms_time_real_ms() / 1000);
		if (err == 0 && store_token_revoked(fs->store, id->claims.id))
			err = KMS_E_TOKEN_INVALID;
	} else {
		cJSON_AddNullToObject(o, "token");
	}
	if (err == 0) {
		cJSON_AddStringToObject(o, "token_id", id->claims.id);
		return id->claims.role;
	}
	cJSON_AddNullToObject(o, "token_id");
	fs_describe_no_token(o, id, err ? err : KMS_E_TOKEN_MISSING);
	return KMS_ROLE_NONE;
}

/* The role the bindings (uid, gid, cgroup) give the caller, token or not. */
static enum kms_role fs_describe_binding(cJSON *o, fuse_req_t req, struct fs *fs,
					 const struct fs_identity *id, const char *project)
{
	gid_t gids[FS_MAX_GROUPS + 1];
	struct api_caller caller;
	enum kms_role role;

	fs_identity_caller(id, project, &caller);
	caller.claims = NULL;
	caller.gids = gids;
	caller.ngids = fs_groups(req, id->gid, gids);
	role = api_bound_role(&fs->svc, &caller);
	if (role == KMS_ROLE_NONE) {
		cJSON_AddNullToObject(o, "binding");
		return role;
	}
	cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "binding"), "role", kms_role_name(role));
	return role;
}

char *fs_identity_describe(fuse_req_t req, struct fs *fs, uint32_t project)
{
	char name[KMS_MAX_PROJECT_ID + 1];
	struct fs_identity id;
	enum kms_role role, bound;
	uint64_t host;
	char *out = NULL;
	cJSON *o;

	if (!fs_project_name(fs, project, name))
		return NULL;
	fs_identity_capture(req, fs, project, &id);
	/* What capture spares itself when it cannot matter, the description shows anyway. */
	if (id.mntns == 0)
		id.mntns = fs_mntns_of(id.pid);
	if (!id.cgroup)
		id.cgroup = fs_cgroup_of(id.pid);
	host = fs_mntns_of(1);
	o = cJSON_CreateObject();
	if (!o)
		goto out;
	cJSON_AddStringToObject(o, "project", name);
	cJSON_AddNumberToObject(o, "uid", id.uid);
	cJSON_AddNumberToObject(o, "gid", id.gid);
	cJSON_AddNumberToObject(o, "pid", id.pid);
	if (id.mntns)
		cJSON_AddNumberToObject(o, "mntns", (double)id.mntns);
	else
		cJSON_AddNullToObject(o, "mntns");
	/* Unknown (null) when the daemon may not read pid 1's namespace either. */
	if (id.mntns && host)
		cJSON_AddBoolToObject(o, "host_namespace", id.mntns == host);
	else
		cJSON_AddNullToObject(o, "host_namespace");
	if (id.cgroup)
		cJSON_AddStringToObject(o, "cgroup", id.cgroup);
	else
		cJSON_AddNullToObject(o, "cgroup");
	role = fs_describe_token(o, fs, &id, name);
	bound = fs_describe_binding(o, req, fs, &id, name);
	/* A token always wins; else the binding. */
	if (role == KMS_ROLE_NONE && !id.has_token)
		role = bound;
	if (role == KMS_ROLE_NONE)
		cJSON_AddNullToObject(o, "role");
	else
		cJSON_AddStringToObject(o, "role", kms_role_name(role));
	out = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
out:
	fs_identity_release(&id);
	return out;
}
