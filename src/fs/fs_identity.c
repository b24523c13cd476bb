/* Who a request runs as (design.md section 5). The identity is captured when a handle is opened,
 * like the kernel's file credentials, and every request on the handle runs with it: a descriptor
 * handed to another process (fork, SCM_RIGHTS, a setuid program that inherits it and exits, which
 * makes the kernel send the FLUSH as root) never borrows that process's identity. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static void fs_binding_role_claims(const struct fs_identity *id, const char *project, int role,
				   struct auth_claims *claims)
{
	memset(claims, 0, sizeof(*claims));
	snprintf(claims->id, sizeof(claims->id), "uid:%u", (unsigned)id->uid);
	snprintf(claims->project, sizeof(claims->project), "%s", project);
	snprintf(claims->user, sizeof(claims->user), "uid%u", (unsigned)id->uid);
	claims->role = (enum kms_role)role;
	claims->expiry = INT64_MAX;
}

/* Identity without a token: the role `kmsctl project bind` gave this uid or one of its groups,
 * the way a container gets its identity from where it runs. */
static void fs_identity_bound(fuse_req_t req, struct fs *fs, uint32_t project,
			      struct fs_identity *id)
{
	char name[KMS_MAX_PROJECT_ID + 1];
	gid_t groups[FS_MAX_GROUPS];
	uint32_t gids[FS_MAX_GROUPS + 1];
	size_t n = 0;
	int ng, role;

	if (!fs_project_name(fs, project, name))
		return;
	gids[n++] = id->gid;
	ng = fuse_req_getgroups(req, (int)FS_MAX_GROUPS, groups);
	for (int i = 0; i < ng && i < (int)FS_MAX_GROUPS; i++)
		gids[n++] = groups[i];
	role = store_binding_role(fs->store, name, id->uid, gids, n);
	if (role <= 0)
		return;
	id->gids = malloc(n * sizeof(*id->gids));
	if (!id->gids) {
		id->auth_error = KMS_E_NOMEM; /* fail closed: no role we could not re-check */
		return;
	}
	memcpy(id->gids, gids, n * sizeof(*id->gids));
	id->ngids = n;
	fs_binding_role_claims(id, name, role, &id->claims);
	id->source = FS_ID_BINDING;
}

void fs_identity_capture(fuse_req_t req, struct fs *fs, uint32_t project, struct fs_identity *out)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);

	memset(out, 0, sizeof(*out));
	out->uid = ctx->uid;
	out->gid = ctx->gid;
	out->pid = ctx->pid;
	out->source = FS_ID_NONE;
	/* A token, when set, wins over a binding. */
	if (fs_binding_claims(fs, out->uid, project, &out->claims, &out->auth_error)) {
		out->source = FS_ID_TOKEN;
		return;
	}
	fs_identity_bound(req, fs, project, out);
}

void fs_identity_release(struct fs_identity *id)
{
	free(id->gids);
	id->gids = NULL;
	id->ngids = 0;
	id->source = FS_ID_NONE;
}

const struct auth_claims *fs_identity_claims(struct fs *fs, const struct fs_identity *id,
					     const char *project, struct auth_claims *buf,
					     int *auth_error)
{
	int role;

	*auth_error = 0;
	switch (id->source) {
	case FS_ID_TOKEN:
		return &id->claims;
	case FS_ID_BINDING:
		role = store_binding_role(fs->store, project, id->uid, id->gids, id->ngids);
		if (role <= 0) {
			*auth_error = KMS_E_TOKEN_MISSING; /* unbound since the open */
			return NULL;
		}
		*buf = id->claims;
		if ((enum kms_role)role < buf->role)
			buf->role = (enum kms_role)role;
		return buf;
	case FS_ID_NONE:
	default:
		*auth_error = id->auth_error ? id->auth_error : KMS_E_TOKEN_MISSING;
		return NULL;
	}
}
