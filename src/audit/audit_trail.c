/* audit_trail.c - writing the audit trail (kms_audit.h): one JSON line per event, chained by
 * HMAC, appended under flock so the daemon and kmsctl can share one file, with room for the
 * lines promised to requests allocated ahead so that they cannot fail for want of space. */
#define _GNU_SOURCE /* fallocate */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/kms_hex.h"
#include "common/kms_secmem.h"
#include "core/kms_core.h"
#include "kms_audit.h"

/* What ends every line: ,"mac":"<64 hex>"}\n */
#define AUDIT_MAC_FIELD ",\"mac\":\""
#define AUDIT_TAIL_LEN	(sizeof(AUDIT_MAC_FIELD) - 1 + AUDIT_MAC_HEX + 3)

struct audit_trail {
	pthread_mutex_t lock; /* then the flock of fd: threads first, then processes */
	int fd;
	char *path;
	uint8_t *key;		      /* secure heap */
	off_t end;		      /* the size we left the file at; -1 unknown */
	char last[AUDIT_MAC_HEX + 1]; /* mac of the file's last line, "" if none */
	size_t pending;		      /* reserved lines not yet written */
	off_t reserved_to;	      /* blocks are allocated up to here */
	bool prealloc;		      /* the file system supports fallocate(KEEP_SIZE) */
	struct audit_event who;	      /* the writer, for its audit-open lines */
	char who_process[64], who_cgroup[1024];
};

/* JSON string body of s (no quotes): -1 if it does not fit (a line is never cut short). */
static int audit_escape(char *out, size_t cap, const char *s)
{
	size_t o = 0;

	for (s = s ? s : ""; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (o + 7 > cap)
			return -1;
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
	return 0;
}

static const char *audit_str(const char *s)
{
	return s ? s : "";
}

int audit_format(const uint8_t key[AUDIT_KEY_BYTES], const struct audit_event *e,
		 const char *prev_file, const char *prev_file_mac, const char *prev, char *line,
		 size_t cap)
{
	char ecomm[200], ecg[1200], eobj[1200], efile[1200], stamp[40], extra[1400] = "";
	uint8_t mac[32];
	struct timespec ts;
	struct tm tm;
	int n, m;

	if (audit_escape(ecomm, sizeof(ecomm), e->process) < 0 ||
	    audit_escape(ecg, sizeof(ecg), e->cgroup) < 0 ||
	    audit_escape(eobj, sizeof(eobj), e->object_id) < 0 ||
	    audit_escape(efile, sizeof(efile), prev_file) < 0)
		return -1;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	if (e->suppressed)
		snprintf(extra, sizeof(extra), ",\"suppressed\":%llu",
			 (unsigned long long)e->suppressed);
	else if (prev_file)
		snprintf(extra, sizeof(extra), ",\"prev_file\":\"%s\",\"prev_file_mac\":\"%s\"",
			 efile, audit_str(prev_file_mac));
	n = snprintf(line, cap,
		     "{\"time\":\"%s.%03ldZ\",\"uid\":%u,\"gid\":%u,\"pid\":%d,\"process\":\"%s\","
		     "\"mntns\":%llu,\"cgroup\":\"%s\",\"project\":\"%s\",\"key_id\":\"%s\","
		     "\"action\":\"%s\",\"status\":%d,\"error_code\":\"%s\",\"sequence\":\"%s\","
		     "\"token_id\":\"%s\",\"user\":\"%s\",\"object_id\":\"%s\"%s,\"prev\":\"%s\"",
		     stamp, ts.tv_nsec / 1000000, (unsigned)e->uid, (unsigned)e->gid, (int)e->pid,
		     ecomm, (unsigned long long)e->mntns, ecg, audit_str(e->project),
		     audit_str(e->key_id), audit_str(e->action), e->status,
		     audit_str(e->error_code), audit_str(e->sequence), audit_str(e->token_id),
		     audit_str(e->user), eobj, extra, audit_str(prev));
	if (n < 0 || (size_t)n + AUDIT_TAIL_LEN >= cap ||
	    (size_t)n + AUDIT_TAIL_LEN > AUDIT_LINE_MAX)
		return -1;
	if (core_hmac_sha256(key, AUDIT_KEY_BYTES, line, (size_t)n, mac) < 0)
		return -1;
	memcpy(line + n, AUDIT_MAC_FIELD, sizeof(AUDIT_MAC_FIELD) - 1);
	m = n + (int)sizeof(AUDIT_MAC_FIELD) - 1;
	kms_hex_encode(mac, sizeof(mac), line + m);
	/* kms_hex_encode writes upper case: the documented form is lower case. */
	for (int i = m; i < m + AUDIT_MAC_HEX; i++)
		if (line[i] >= 'A' && line[i] <= 'F')
			line[i] = (char)(line[i] - 'A' + 'a');
	memcpy(line + m + AUDIT_MAC_HEX, "\"}\n", 4);
	return m + AUDIT_MAC_HEX + 3;
}

/* The mac of the line that ends at end: "" when the file is empty or its last line is not one
 * of ours (verify reports the break there). */
static void audit_read_last(int fd, off_t end, char out[AUDIT_MAC_HEX + 1])
{
	char tail[AUDIT_TAIL_LEN];
	const size_t field = sizeof(AUDIT_MAC_FIELD) - 1;

	out[0] = 0;
	if (end < (off_t)AUDIT_TAIL_LEN ||
	    pread(fd, tail, sizeof(tail), end - (off_t)sizeof(tail)) != (ssize_t)sizeof(tail))
		return;
	if (!core_equal(tail, AUDIT_MAC_FIELD, field) ||
	    !core_equal(tail + field + AUDIT_MAC_HEX, "\"}\n", 3))
		return;
	for (size_t i = 0; i < AUDIT_MAC_HEX; i++) {
		char c = tail[field + i];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return;
	}
	memcpy(out, tail + field, AUDIT_MAC_HEX);
	out[AUDIT_MAC_HEX] = 0;
}

/* Make sure the blocks for extra bytes at end and for every reserved line still to come are
 * allocated, so those writes cannot fail for want of space (t->lock held). Where the file
 * system cannot preallocate, writes are tried as they come (and a torn line is cut off). */
static int audit_room(struct audit_trail *t, off_t end, size_t extra)
{
	off_t need = end + (off_t)extra + (off_t)t->pending * AUDIT_LINE_MAX;
	off_t want;

	if (!t->prealloc || t->reserved_to >= need)
		return 0;
	if (t->reserved_to < end)
		t->reserved_to = end;
	/* In steps of 64 KiB, or exactly what is needed when the file system is nearly full. */
	want = need + AUDIT_PREALLOC;
	if (fallocate(t->fd, FALLOC_FL_KEEP_SIZE, t->reserved_to, want - t->reserved_to) == 0) {
		t->reserved_to = want;
		return 0;
	}
	if (errno == EOPNOTSUPP || errno == ENOSYS) {
		t->prealloc = false;
		return 0;
	}
	if (fallocate(t->fd, FALLOC_FL_KEEP_SIZE, t->reserved_to, need - t->reserved_to) == 0) {
		t->reserved_to = need;
		return 0;
	}
	return -1;
}

static int audit_flock(int fd, int op)
{
	int r;

	do
		r = flock(fd, op);
	while (r != 0 && errno == EINTR);
	return r;
}

/* The mac a formatted line of length n ends with, into out. */
static void audit_line_mac(const char *line, int n, char out[AUDIT_MAC_HEX + 1])
{
	memcpy(out, line + n - 3 - AUDIT_MAC_HEX, AUDIT_MAC_HEX);
	out[AUDIT_MAC_HEX] = 0;
}

/* Format and append (t->lock held): an audit-open line first if open (link: it names the
 * previous file, prev_file non-NULL) or if the file is empty (a new file), then e's line if
 * any. One write, under the flock; the file's last mac is read again if it grew under us. */
static int audit_append_locked(struct audit_trail *t, const struct audit_event *e, bool open,
			       const char *prev_file, const char *prev_file_mac)
{
	char buf[2 * AUDIT_LINE_MAX], mac[AUDIT_MAC_HEX + 1];
	int n = 0, k;
	ssize_t w = -1;
	off_t end;

	if (audit_flock(t->fd, LOCK_EX) != 0)
		return -1;
	end = lseek(t->fd, 0, SEEK_END);
	if (end < 0)
		goto unlock;
	if (end != t->end)
		audit_read_last(t->fd, end, t->last);
	snprintf(mac, sizeof(mac), "%s", t->last);
	if (open || end == 0) {
		struct audit_event o = t->who;

		o.action = AUDIT_ACTION_OPEN;
		o.status = 200;
		if (!prev_file && end == 0)
			prev_file = prev_file_mac = "";
		k = audit_format(t->key, &o, prev_file, prev_file_mac, mac, buf, AUDIT_LINE_MAX);
		if (k < 0)
			goto unlock;
		audit_line_mac(buf, k, mac);
		n = k;
	}
	if (e) {
		k = audit_format(t->key, e, NULL, NULL, mac, buf + n, AUDIT_LINE_MAX);
		if (k < 0)
			goto unlock;
		n += k;
		audit_line_mac(buf, n, mac);
	}
	if (audit_room(t, end, (size_t)n) != 0)
		goto unlock;
	w = write(t->fd, buf, (size_t)n);
	if (w == n) {
		t->end = end + n;
		memcpy(t->last, mac, sizeof(mac));
	} else if (w > 0 && ftruncate(t->fd, end) != 0) {
		/* A short write (possible only without preallocation) would leave a torn line
		 * that the next line continues: it is cut off again (above), else unknown. */
		t->end = -1;
	}
unlock:
	audit_flock(t->fd, LOCK_UN);
	return w == n ? 0 : -1;
}

int audit_write(struct audit_trail *t, const struct audit_event *e, bool reserved)
{
	int r;

	pthread_mutex_lock(&t->lock);
	if (reserved && t->pending > 0)
		t->pending--;
	r = audit_append_locked(t, e, false, NULL, NULL);
	pthread_mutex_unlock(&t->lock);
	return r;
}

int audit_reserve(struct audit_trail *t)
{
	off_t end;
	int r = -1;

	pthread_mutex_lock(&t->lock);
	end = lseek(t->fd, 0, SEEK_END);
	t->pending++;
	if (end >= 0 && audit_room(t, end, 0) == 0)
		r = 0;
	else
		t->pending--;
	pthread_mutex_unlock(&t->lock);
	return r;
}

void audit_unreserve(struct audit_trail *t)
{
	pthread_mutex_lock(&t->lock);
	if (t->pending > 0)
		t->pending--;
	pthread_mutex_unlock(&t->lock);
}

static void audit_free(struct audit_trail *t)
{
	if (!t)
		return;
	kms_secret_free(t->key, AUDIT_KEY_BYTES);
	free(t->path);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

int audit_open(int fd, const char *path, const uint8_t key[AUDIT_KEY_BYTES],
	       const struct audit_event *who, bool announce, struct audit_trail **out)
{
	struct audit_trail *t = calloc(1, sizeof(*t));

	*out = NULL;
	if (!t)
		return -1;
	pthread_mutex_init(&t->lock, NULL);
	t->fd = fd;
	t->end = -1;
	t->prealloc = true;
	t->path = strdup(path ? path : "");
	t->key = kms_secret_alloc(AUDIT_KEY_BYTES);
	if (!t->path || !t->key) {
		errno = ENOMEM;
		goto fail;
	}
	memcpy(t->key, key, AUDIT_KEY_BYTES);
	t->who = *who;
	snprintf(t->who_process, sizeof(t->who_process), "%s", audit_str(who->process));
	snprintf(t->who_cgroup, sizeof(t->who_cgroup), "%s", audit_str(who->cgroup));
	t->who.process = t->who_process;
	t->who.cgroup = t->who_cgroup;
	if (announce) {
		pthread_mutex_lock(&t->lock);
		int r = audit_append_locked(t, NULL, true, NULL, NULL);

		pthread_mutex_unlock(&t->lock);
		if (r != 0)
			goto fail;
	}
	*out = t;
	return 0;
fail:
	audit_free(t);
	return -1;
}

int audit_reopen(struct audit_trail *t, int fd)
{
	char old_last[AUDIT_MAC_HEX + 1];
	int old;
	off_t old_end, old_reserved;
	bool old_prealloc;
	int r;

	pthread_mutex_lock(&t->lock);
	old = t->fd;
	old_end = t->end;
	old_reserved = t->reserved_to;
	old_prealloc = t->prealloc;
	/* The old file's last line as it is now (kmsctl may have written after us). */
	if (audit_flock(old, LOCK_EX) == 0) {
		off_t e = lseek(old, 0, SEEK_END);

		if (e >= 0 && e != t->end)
			audit_read_last(old, e, t->last);
		audit_flock(old, LOCK_UN);
	}
	memcpy(old_last, t->last, sizeof(old_last));
	t->fd = fd;
	t->end = -1;
	t->reserved_to = 0;
	t->prealloc = true;
	r = audit_append_locked(t, NULL, true, t->path, old_last);
	if (r == 0) {
		close(old);
	} else {
		t->fd = old;
		t->end = old_end;
		t->reserved_to = old_reserved;
		t->prealloc = old_prealloc;
		memcpy(t->last, old_last, sizeof(old_last));
	}
	pthread_mutex_unlock(&t->lock);
	return r;
}

void audit_close(struct audit_trail *t)
{
	if (!t)
		return;
	close(t->fd);
	audit_free(t);
}

void audit_self_workload(uint64_t *mntns, char *cgroup, size_t cap)
{
	struct stat st;
	char line[4200];
	FILE *f;

	*mntns = stat("/proc/self/ns/mnt", &st) == 0 ? (uint64_t)st.st_ino : 0;
	cgroup[0] = 0;
	f = fopen("/proc/self/cgroup", "re");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "0::", 3) == 0) {
			line[strcspn(line, "\n")] = 0;
			snprintf(cgroup, cap, "%s", line + 3);
			break;
		}
	}
	fclose(f);
}
