/* The audit trail (-o audit=FILE): one JSON line per request, appended before the response is
 * released. It names who (uid, gid, pid, process, token id or binding), what (project, key,
 * action, sequence) and the outcome (HTTP status, error code); never a plaintext, a token or a
 * token's secret part. A line that cannot be written fails the request (api_audit_fn). The who is
 * the identity the handle captured at open. Refusals for want of an identity are rate-limited per
 * uid (anyone can cause them): the ones not written are summed up in "suppressed" lines. */
#define _GNU_SOURCE /* fallocate */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/kms_err.h"
#include "fs_internal.h"
#include "common/kms_time.h"

/* JSON string body of s (no quotes), bounded; control characters escaped. */
static size_t fs_json_escape(char *out, size_t cap, const char *s)
{
	size_t o = 0;

	for (; *s && o + 7 < cap; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
		} else {
			out[o++] = (char)c;
		}
	}
	out[o] = 0;
	return o;
}

/* Make sure the blocks for this line (extra bytes) and for every reserved line still to come
 * are allocated past the end of the file (end), so those writes cannot fail for want of space.
 * Called with audit_lock held. Where the file system cannot preallocate, writes are tried as
 * they come (and a torn line is cut off again). */
static int fs_audit_room(struct fs *fs, off_t end, size_t extra)
{
	off_t need = end + (off_t)extra + (off_t)fs->audit_pending * FS_AUDIT_LINE_MAX;
	off_t want;

	if (!fs->audit_prealloc)
		return 0;
	if (fs->audit_reserved_to >= need)
		return 0;
	if (fs->audit_reserved_to < end)
		fs->audit_reserved_to = end;
	/* In steps of 64 KiB, or exactly what is needed when the file system is nearly full. */
	want = need + FS_AUDIT_PREALLOC;
	if (fallocate(fs->audit_fd, FALLOC_FL_KEEP_SIZE, fs->audit_reserved_to,
		      want - fs->audit_reserved_to) == 0) {
		fs->audit_reserved_to = want;
		return 0;
	}
	if (errno == EOPNOTSUPP || errno == ENOSYS) {
		fs->audit_prealloc = false;
		return 0;
	}
	if (fallocate(fs->audit_fd, FALLOC_FL_KEEP_SIZE, fs->audit_reserved_to,
		      need - fs->audit_reserved_to) == 0) {
		fs->audit_reserved_to = need;
		return 0;
	}
	return -1;
}

/* One audit line: the fields every line has; suppressed > 0 only in a summary line. */
struct fs_audit_line {
	uid_t uid;
	gid_t gid;
	pid_t pid;
	const char *comm, *project, *key_id, *action, *code, *sequence, *token_id, *user;
	int status;
	uint64_t suppressed;
};

static int fs_audit_format(const struct fs_audit_line *l, char *line, size_t cap)
{
	char ecomm[200], stamp[40], extra[48] = "";
	struct timespec ts;
	struct tm tm;
	int n;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	fs_json_escape(ecomm, sizeof(ecomm), l->comm);
	if (l->suppressed)
		snprintf(extra, sizeof(extra), ",\"suppressed\":%llu",
			 (unsigned long long)l->suppressed);
	/* Every other field is ours or validated (project ids, key ids, action names, sequence). */
	n = snprintf(line, cap,
		     "{\"time\":\"%s.%03ldZ\",\"uid\":%u,\"gid\":%u,\"pid\":%d,\"process\":\"%s\","
		     "\"project\":\"%s\",\"key_id\":\"%s\",\"action\":\"%s\",\"status\":%d,"
		     "\"error_code\":\"%s\",\"sequence\":\"%s\",\"token_id\":\"%s\",\"user\":\"%"
		     "s\"%s}\n",
		     stamp, ts.tv_nsec / 1000000, (unsigned)l->uid, (unsigned)l->gid, (int)l->pid,
		     ecomm, l->project, l->key_id, l->action, l->status, l->code, l->sequence,
		     l->token_id, l->user, extra);
	return n < 0 || (size_t)n >= cap ? -1 : n;
}

/* Append a formatted line (reserved: room for it was reserved and is now used). */
static int fs_audit_append(struct fs *fs, const char *line, int n, bool reserved)
{
	ssize_t w;
	off_t end;

	pthread_mutex_lock(&fs->audit_lock);
	if (reserved && fs->audit_pending > 0)
		fs->audit_pending--;
	end = lseek(fs->audit_fd, 0, SEEK_END);
	if (end < 0 || fs_audit_room(fs, end, (size_t)n) != 0) {
		w = -1;
		goto unlock;
	}
	w = write(fs->audit_fd, line, (size_t)n);
	/* A short write (possible only without preallocation) would leave a torn line that the
	 * next line continues: cut it off again so the trail stays one JSON object per line. */
	if (w > 0 && w != n && ftruncate(fs->audit_fd, end) != 0)
		w = -1;
unlock:
	pthread_mutex_unlock(&fs->audit_lock);
	return w == n ? 0 : -1;
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
		if (o->reserved && fs->audit_pending > 0)
			fs->audit_pending--;
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
	struct fs_audit_line l = {
		.uid = c->uid,
		.gid = c->gid,
		.pid = c->pid,
		.comm = call ? call->id->comm : "",
		.project = c->project ? c->project : "",
		.key_id = o->key_id,
		.action = o->action,
		.code = o->error_code ? o->error_code : "",
		.sequence = o->sequence,
		.token_id = c->trusted	? "admin"
			    : o->claims ? o->claims->id
					: "",
		.user = o->claims ? o->claims->user : "",
		.status = o->http,
	};
	char line[FS_AUDIT_LINE_MAX];
	int n;

	if (call && fs_audit_is_refusal(o) && !fs_audit_admit(fs, call->owner, c, o))
		return 0;
	n = fs_audit_format(&l, line, sizeof(line));
	if (n < 0)
		return -1;
	return fs_audit_append(fs, line, n, o->reserved);
}

bool fs_audit_summary(struct fs *fs, struct fs_uid *u)
{
	struct fs_audit_line l = { .uid = u->uid,
				   .comm = "",
				   .key_id = "",
				   .sequence = "",
				   .token_id = "",
				   .user = "",
				   .status = 403 };
	char line[FS_AUDIT_LINE_MAX];
	bool idle;
	int n = -1;

	if (fs->audit_fd < 0)
		return true;
	pthread_mutex_lock(&fs->audit_lock);
	fs_audit_refill(u, kms_time_mono_ms());
	l.suppressed = u->audit_suppressed;
	if (l.suppressed) {
		l.gid = u->audit_gid;
		l.project = u->audit_project;
		l.action = u->audit_action;
		l.code = u->audit_code;
		n = fs_audit_format(&l, line, sizeof(line));
	}
	pthread_mutex_unlock(&fs->audit_lock);
	/* Written outside the bucket's lock hold; kept for the next sweep if it cannot be. */
	if (n > 0 && fs_audit_append(fs, line, n, false) == 0) {
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
	off_t end;
	int r = -1;

	pthread_mutex_lock(&fs->audit_lock);
	end = lseek(fs->audit_fd, 0, SEEK_END);
	fs->audit_pending++;
	if (end >= 0 && fs_audit_room(fs, end, 0) == 0)
		r = 0;
	else
		fs->audit_pending--;
	pthread_mutex_unlock(&fs->audit_lock);
	return r;
}

int fs_audit_reopen(struct fs *fs, int fd)
{
	int old;
	off_t end, old_reserved;
	bool old_prealloc;
	int r = -1;

	pthread_mutex_lock(&fs->audit_lock);
	if (fs->audit_fd < 0 || fd < 0)
		goto unlock;
	old = fs->audit_fd;
	old_reserved = fs->audit_reserved_to;
	old_prealloc = fs->audit_prealloc;
	fs->audit_fd = fd;
	fs->audit_reserved_to = 0;
	fs->audit_prealloc = true;
	end = lseek(fd, 0, SEEK_END);
	if (end >= 0 && fs_audit_room(fs, end, 0) == 0) {
		close(old);
		r = 0;
	} else {
		fs->audit_fd = old;
		fs->audit_reserved_to = old_reserved;
		fs->audit_prealloc = old_prealloc;
	}
unlock:
	pthread_mutex_unlock(&fs->audit_lock);
	return r;
}
