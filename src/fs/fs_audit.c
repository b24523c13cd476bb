/* The audit trail (-o audit=FILE): one JSON line per request, appended before the response is
 * released. It names who (uid, gid, pid, process, token id or binding), what (project, key,
 * action, sequence) and the outcome (HTTP status, error code); never a plaintext, a token or a
 * token's secret part. A line that cannot be written fails the request (api_audit_fn). */
#define _GNU_SOURCE /* fallocate */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fs_internal.h"

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

/* The calling thread's command name; pid is a thread id in our pid namespace (0 if unseen). */
static void fs_process_name(pid_t pid, char *out, size_t cap)
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

int fs_audit(void *ctx, const struct api_caller *c, const struct api_outcome *o)
{
	struct fs *fs = ctx;
	char line[FS_AUDIT_LINE_MAX], comm[32], ecomm[200], stamp[40];
	const char *who = c->trusted ? "admin" : c->claims ? c->claims->id : "";
	const char *user = c->claims ? c->claims->user : "";
	struct timespec ts;
	struct tm tm;
	ssize_t w;
	off_t end;
	int n;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	fs_process_name(c->pid, comm, sizeof(comm));
	fs_json_escape(ecomm, sizeof(ecomm), comm);
	/* Every other field is ours or validated (project ids, key ids, action names, sequence). */
	n = snprintf(line, sizeof(line),
		     "{\"time\":\"%s.%03ldZ\",\"uid\":%u,\"gid\":%u,\"pid\":%d,\"process\":\"%s\","
		     "\"project\":\"%s\",\"key_id\":\"%s\",\"action\":\"%s\",\"status\":%d,"
		     "\"error_code\":\"%s\",\"sequence\":\"%s\",\"token_id\":\"%s\",\"user\":\"%s\"}\n",
		     stamp, ts.tv_nsec / 1000000, (unsigned)c->uid, (unsigned)c->gid, (int)c->pid,
		     ecomm, c->project ? c->project : "", o->key_id, o->action, o->http,
		     o->error_code ? o->error_code : "", o->sequence, who, user);
	if (n < 0 || (size_t)n >= sizeof(line))
		return -1;
	pthread_mutex_lock(&fs->audit_lock);
	if (o->reserved && fs->audit_pending > 0)
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
