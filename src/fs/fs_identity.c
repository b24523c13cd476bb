/* Who a request runs as (design.md section 5). The identity is captured when a handle is opened,
 * like the kernel's file credentials, and every request on the handle runs with it: a descriptor
 * handed to another process (fork, SCM_RIGHTS, a setuid program that inherits it and exits, which
 * makes the kernel send the FLUSH as root) never borrows that process's identity. Capture only:
 * what the identity may do is decided in src/api/api_authz.c. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/kms_err.h"
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

/* "/proc/PID/ns/mnt" into path (64 bytes), without the cost of snprintf (one per open). */
static void fs_proc_path(char *path, pid_t pid, const char *tail)
{
	char digits[16];
	size_t n = 0, len = 6;
	unsigned v = (unsigned)pid;

	memcpy(path, "/proc/", len);
	do {
		digits[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		path[len++] = digits[--n];
	strcpy(path + len, tail);
}

uint64_t fs_mntns_of(pid_t pid)
{
	char path[64], link[64];
	uint64_t ino = 0;
	ssize_t n;

	if (pid <= 0)
		return 0;
	fs_proc_path(path, pid, "/ns/mnt");
	/* The link reads "mnt:[INODE]", the nsfs inode a stat would give: half the cost of a stat,
	 * which makes the kernel instantiate the namespace's dentry (measured: 2.4 against 4.7 us). */
	n = readlink(path, link, sizeof(link));
	if (n < 7 || memcmp(link, "mnt:[", 5) != 0 || link[n - 1] != ']')
		return 0;
	for (ssize_t i = 5; i < n - 1; i++) {
		if (link[i] < '0' || link[i] > '9' || ino > UINT64_MAX / 10 - 1)
			return 0;
		ino = ino * 10 + (uint64_t)(link[i] - '0');
	}
	return ino;
}

char *fs_cgroup_of(pid_t pid)
{
	char path[64], buf[4096];
	char *line, *next;
	ssize_t n;
	int fd;

	if (pid <= 0)
		return NULL;
	fs_proc_path(path, pid, "/cgroup");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return NULL;
	buf[n] = 0;
	/* Hybrid hierarchies list the v1 controllers first: the v2 path is on the "0::" line. */
	for (line = buf; line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = 0;
		if (strncmp(line, "0::", 3) == 0)
			return line[3] == '/' ? strdup(line + 3) : NULL;
	}
	return NULL;
}

void fs_identity_capture(fuse_req_t req, struct fs *fs, uint32_t project, struct fs_identity *out)
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
		out->mntns = fs_mntns_of(out->pid);
	out->has_token = fs_binding_claims(fs, out->uid, out->mntns, project, &out->claims,
					   &out->auth_error);
	/* The cgroup only where it can matter: for the bindings (no token) and the audit lines. */
	if (!out->has_token || fs->audit)
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
