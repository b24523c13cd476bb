/* The audit trail (-o audit=FILE): one JSON line per request, appended before the response is
 * released. It names who (uid, gid, pid, process, token id or binding), what (project, key,
 * action, sequence) and the outcome (HTTP status, error code); never a plaintext, a token or a
 * token's secret part. A line that cannot be written fails the request (api_audit_fn). */
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

int fs_audit(void *ctx, const struct api_caller *c, const struct api_outcome *o)
{
	struct fs *fs = ctx;
	char line[1024], comm[32], ecomm[200], stamp[40];
	const char *who = c->trusted ? "admin" : c->claims ? c->claims->id : "";
	const char *user = c->claims ? c->claims->user : "";
	struct timespec ts;
	struct tm tm;
	ssize_t w;
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
	w = write(fs->audit_fd, line, (size_t)n);
	pthread_mutex_unlock(&fs->audit_lock);
	return w == n ? 0 : -1;
}
