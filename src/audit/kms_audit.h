/* kms_audit.h - the audit trail: one JSON line per event, appended by the daemon (every request)
 * and by kmsctl (every change) to one file, each line chained to the one before it by a MAC.
 *
 * A line is a JSON object whose last two fields are "prev" and "mac":
 *   {"time":...,<event fields>,"prev":"<hex>","mac":"<hex>"}\n
 * mac = lower-case hex HMAC-SHA-256(audit key, the line's bytes from its '{' up to, not
 * including, its ',"mac":'), so it covers prev too. prev is the mac of the line before it in the
 * same file; "" on a file's first line. A line with the action "audit-open" marks where a writer
 * took the file up (a daemon's start, its reopening after log rotation, kmsctl starting an empty
 * file); when it starts a file it names the previous file: "prev_file" (the path that file had)
 * and "prev_file_mac" (its last mac, "" when the writer did not know it).
 *
 * Writers serialise their appends with flock(LOCK_EX) on the file; a writer whose file grew
 * under it (another writer) reads the last line's mac again before writing. The library returns
 * errors and never logs; the audit key (32 bytes, the state secret "audit.key") is the caller's
 * to fetch. Layers: common <- core <- audit, used by fs and tools. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/kms_common.h"

#define AUDIT_KEY_BYTES 32
#define AUDIT_MAC_HEX	64
/* One line at most, chain fields included (bigger events are refused, never cut): what a
 * reservation sets aside. */
#define AUDIT_LINE_MAX 4096
/* Preallocation step past the end of the file (fallocate KEEP_SIZE). */
#define AUDIT_PREALLOC	  (64 * 1024)
#define AUDIT_ACTION_OPEN "audit-open"

/* One event. Strings may be NULL (written as ""); process, cgroup and object_id are JSON-escaped,
 * the others are the caller's validated values (ids, action names, codes). */
struct audit_event {
	uid_t uid;
	gid_t gid;
	pid_t pid;
	const char *process;
	uint64_t mntns; /* inode of the caller's mount namespace, 0 unknown */
	const char *cgroup;
	const char *project, *key_id, *action, *error_code, *sequence, *token_id, *user;
	const char *object_id; /* what the action created or changed besides the key */
	int status;
	uint64_t suppressed; /* > 0 only in a summary of rate-limited refusals */
};

struct audit_trail;

/* Take up the trail in fd (opened read-write with O_APPEND, a regular file; the trail's once this
 * succeeds) at path (named in chain lines), keyed by key (copied into the secure heap). who: the
 * writer (uid, gid, pid, process, mntns, cgroup) for its "audit-open" lines, written now if
 * announce (a daemon), else only when the file is empty at a write (kmsctl starting a file).
 * 0, or -1 with errno (fd untouched, still the caller's). */
KMS_WUR int audit_open(int fd, const char *path, const uint8_t key[AUDIT_KEY_BYTES],
		       const struct audit_event *who, bool announce, struct audit_trail **out);
/* Continue in fd (log rotation, same path): its "audit-open" line names the old file's path and
 * last mac; the old descriptor is closed once room for every reserved line is allocated in the
 * new one. 0, or -1 (fd untouched, still the caller's; the trail goes on in the old file). */
KMS_WUR int audit_reopen(struct audit_trail *t, int fd);
void audit_close(struct audit_trail *t);

/* Reserve room for one line to come (audit_write with reserved), so a change is never made
 * whose line could not be written for want of space. 0 or -1. */
KMS_WUR int audit_reserve(struct audit_trail *t);
/* Give a reservation back without writing its line. */
void audit_unreserve(struct audit_trail *t);
/* Append e's line (reserved: it uses a reservation). 0 or -1 (nothing written). */
KMS_WUR int audit_write(struct audit_trail *t, const struct audit_event *e, bool reserved);

/* The calling process's mount namespace inode (0 unknown) and cgroup v2 path ("" unknown). */
void audit_self_workload(uint64_t *mntns, char *cgroup, size_t cap);

/* Formats e's line with prev into line (cap >= AUDIT_LINE_MAX): its length, -1 if too long. The
 * trail's own formatter, exposed for the unit tests. */
KMS_WUR int audit_format(const uint8_t key[AUDIT_KEY_BYTES], const struct audit_event *e,
			 const char *prev_file, const char *prev_file_mac, const char *prev,
			 char *line, size_t cap);

/* Verification, file after file in order (kmsctl audit verify). */
struct audit_verify {
	/* out, when audit_verify_line or audit_verify_file_end returns 1: */
	unsigned bad_file; /* 0: the current file, 1: the one before it */
	size_t bad_line;   /* 1-based */
	char why[320];
	/* state */
	const uint8_t *key;
	unsigned files;	     /* files begun */
	size_t lines, total; /* of the current file; of all files */
	uint8_t (*macs)[32], (*prev_macs)[32];
	size_t n_prev, cap;
	bool linked, link_unknown; /* the current file names the previous one's last mac; or "" */
};

void audit_verify_init(struct audit_verify *v, const uint8_t key[AUDIT_KEY_BYTES]);
/* Start the next file. 0 or -1 (no memory). */
KMS_WUR int audit_verify_file_begin(struct audit_verify *v);
/* Check the next line (without its '\n'; complete: a file's last bytes without '\n' are a torn
 * line). 0 intact, 1 bad (bad_line and why say), -1 no memory. */
KMS_WUR int audit_verify_line(struct audit_verify *v, const char *line, size_t len);
/* After a file's last line: does it continue the previous file? 0, 1 bad, as above. */
KMS_WUR int audit_verify_file_end(struct audit_verify *v);
void audit_verify_free(struct audit_verify *v);
