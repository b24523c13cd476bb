/* The audit trail (-o audit=FILE): one JSON line per request, appended before the response is
 * released. It names who (uid, gid, pid, process, mount namespace, cgroup, token id or binding),
 * what (project, key, action, sequence, the object created) and the outcome (HTTP status, error
 * code); never a plaintext, a token or a token's secret part. A line that cannot be written fails
 * the request (api_audit_fn). The who is the identity the handle captured at open. Refusals for
 * want of an identity are rate-limited per uid (anyone can cause them): the ones not written are
 * summed up in "suppressed" lines. Formatting, the MAC chain and appending: src/audit/. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "audit/kms_audit.h"
#include "common/kms_err.h"
#include "common/kms_secmem.h"
#include "fs_internal.h"
#include "common/kms_time.h"

/* The daemon as the writer of its audit-open lines. */
static void fs_audit_who(struct audit_event *who, char *cgroup, size_t cap)
{
	*who = (struct audit_event){ .uid = geteuid(),
				     .gid = getegid(),
				     .pid = getpid(),
				     .process = "kmsfs",
				     .cgroup = cgroup };
	audit_self_workload(&who->mntns, cgroup, cap);
}

int fs_audit_open(struct fs *fs, const struct fs_options *opt)
{
	uint8_t *key = kms_secret_alloc(AUDIT_KEY_BYTES);
	struct audit_event who;
	char cgroup[1024];
	int r = key ? 0 : KMS_E_NOMEM;

	/* The MAC key is a state secret: sealed in the store, so it follows the root key. */
	if (r == 0)
		r = store_state_secret(fs->store, "audit.key", key);
	fs_audit_who(&who, cgroup, sizeof(cgroup));
	if (r == 0 && audit_open(opt->audit_fd, opt->audit_path, key, &who, true, &fs->audit) != 0)
		r = KMS_E_IO;
	kms_secret_free(key, AUDIT_KEY_BYTES);
	if (r < 0)
		return r;
	fs->svc.audit = fs_audit;
	fs->svc.audit_reserve = fs_audit_reserve;
	fs->svc.audit_ctx = fs;
	return 0;
}

/* Refill u's refusal bucket for the time passed (audit_lock held). */
static void fs_audit_refill(struct fs_uid *u, int64_t now)
{
	int64_t secs = (now - u->audit_refill_ms) / 1000;

	if (u->audit_tokens >= FS_AUDIT_REFUSAL_BURST) {
		u->audit_refill_ms = now;
		return;
	}
	if (secs <= 0)
		return;
	if (secs >= FS_AUDIT_REFUSAL_BURST ||
	    u->audit_tokens + (uint64_t)secs * FS_AUDIT_REFUSAL_PER_S >= FS_AUDIT_REFUSAL_BURST) {
		u->audit_tokens = FS_AUDIT_REFUSAL_BURST;
		u->audit_refill_ms = now;
		return;
	}
	u->audit_tokens += (unsigned)secs * FS_AUDIT_REFUSAL_PER_S;
	u->audit_refill_ms += secs * 1000;
}

/* A refusal for want of an identity: no token, or a forged, revoked or expired one. Anyone can
 * cause these as fast as the file system answers, so they are rate-limited per uid. */
static bool fs_audit_is_refusal(const struct api_outcome *o)
{
	static const int codes[] = { KMS_E_TOKEN_MISSING, KMS_E_TOKEN_INVALID,
				     KMS_E_TOKEN_EXPIRED };

	if (!o->error_code || !o->error_code[0])
		return false;
	for (size_t i = 0; i < KMS_ARRAY_SIZE(codes); i++)
		if (strcmp(o->error_code, kms_err_info(codes[i])->code) == 0)
			return true;
	return false;
}

/* May this refusal be written? If not, it is counted for u's next summary line. */
static bool fs_audit_admit(struct fs *fs, struct fs_uid *u, const struct api_caller *c,
			   const struct api_outcome *o)
{
	bool admit;

	pthread_mutex_lock(&fs->audit_lock);
	fs_audit_refill(u, kms_time_mono_ms());
	admit = u->audit_tokens > 0;
	if (admit) {
		u->audit_tokens--;
	} else {
		u->audit_suppressed++;
		u->audit_gid = c->gid;
		snprintf(u->audit_project, sizeof(u->audit_project), "%s",
			 c->project ? c->project : "");
		snprintf(u->audit_action, sizeof(u->audit_action), "%s", o->action);
		snprintf(u->audit_code, sizeof(u->audit_code), "%s", o->error_code);
		/* Nothing is written for it: give its reserved room back. */
		if (o->reserved)
			audit_unreserve(fs->audit);
	}
	pthread_mutex_unlock(&fs->audit_lock);
	return admit;
}

int fs_audit(void *ctx, const struct api_caller *c, const struct api_outcome *o)
{
	struct fs *fs = ctx;
	/* The call this thread is running (fs_txn_run), if c is its caller. */
	const struct fs_call *call =
		fs_current_call && &fs_current_call->caller == c ? fs_current_call : NULL;
	struct audit_event e = {
		.uid = c->uid,
		.gid = c->gid,
		.pid = c->pid,
		.process = call ? call->id->comm : "",
		.mntns = c->mntns,
		.cgroup = c->cgroup,
		.project = c->project,
		.key_id = o->key_id,
		.action = o->action,
		.error_code = o->error_code,
		.sequence = o->sequence,
		.token_id = c->trusted	? "admin"
			    : o->claims ? o->claims->id
					: "",
		.user = o->claims ? o->claims->user : "",
		.object_id = o->object_id,
		.status = o->http,
	};

	if (call && fs_audit_is_refusal(o) && !fs_audit_admit(fs, call->owner, c, o))
		return 0;
	return audit_write(fs->audit, &e, o->reserved);
}

bool fs_audit_summary(struct fs *fs, struct fs_uid *u)
{
	struct audit_event l = { .uid = u->uid, .status = 403 };
	char project[sizeof(u->audit_project)], action[sizeof(u->audit_action)],
		code[sizeof(u->audit_code)];
	bool idle;

	if (!fs->audit)
		return true;
	pthread_mutex_lock(&fs->audit_lock);
	fs_audit_refill(u, kms_time_mono_ms());
	l.suppressed = u->audit_suppressed;
	if (l.suppressed) {
		/* Copies: the line is written outside the bucket's lock. */
		l.gid = u->audit_gid;
		l.project = memcpy(project, u->audit_project, sizeof(project));
		l.action = memcpy(action, u->audit_action, sizeof(action));
		l.error_code = memcpy(code, u->audit_code, sizeof(code));
	}
	pthread_mutex_unlock(&fs->audit_lock);
	/* Kept for the next sweep if it cannot be written. */
	if (l.suppressed && audit_write(fs->audit, &l, false) == 0) {
		pthread_mutex_lock(&fs->audit_lock);
		u->audit_suppressed -= l.suppressed;
		pthread_mutex_unlock(&fs->audit_lock);
	}
	pthread_mutex_lock(&fs->audit_lock);
	idle = u->audit_suppressed == 0 && u->audit_tokens >= FS_AUDIT_REFUSAL_BURST;
	pthread_mutex_unlock(&fs->audit_lock);
	return idle;
}

int fs_audit_reserve(void *ctx)
{
	struct fs *fs = ctx;

	return audit_reserve(fs->audit);
}

int fs_audit_reopen(struct fs *fs, int fd)
{
	if (!fs->audit || fd < 0)
		return -1;
	return audit_reopen(fs->audit, fd);
}
