/* kms_fs.h - the FUSE file tree: the only layer that knows about FUSE. It turns file operations
 * into api_call()s: per-handle transactions, per-(file, uid) mailboxes, token xattrs. */
#pragma once

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include <stdbool.h>

#include "api/kms_api.h"
#include "common/kms_common.h"

struct fs;

struct fs_options {
	struct store *store;
	unsigned mailbox_ttl_s; /* default 30 */
	unsigned key_quota;	/* per project, default 100 */
	double entry_timeout;	/* default 1.0 s */
	int audit_fd;		/* append one JSON line per request here (opened read-write,
				 * O_APPEND); -1: no audit. Owned by the fs once fs_new
				 * succeeds (fs_free closes it). */
	const char *audit_path; /* its path, named in the trail's chain lines */
	const char *version;	/* for kmsfs_build_info (static string) */
	bool metrics_group_set; /* /kms/.metrics and .status: root and this group may read */
	gid_t metrics_group;
	bool forget_tokens; /* -o forget_tokens: token bindings are not remembered across restarts */
};

KMS_WUR int fs_new(const struct fs_options *opt, struct fs **out);
/* Start background work (mailbox expiry). Call after daemonising: fork does not keep threads. */
KMS_WUR int fs_start(struct fs *fs);
void fs_free(struct fs *fs);
/* Whether the token secret lives in the OpenSSL secure heap (start-up self-check and tests). */
bool fs_token_secret_secure(const struct fs *fs);
/* Continue the audit trail in fd (a file opened afresh after log rotation, SIGHUP): the old
 * descriptor is closed once room for every line already promised is reserved in the new one.
 * -1 (fd untouched, still the caller's) when there is no audit trail or no room. */
KMS_WUR int fs_audit_reopen(struct fs *fs, int fd);
const struct fuse_lowlevel_ops *fs_lowlevel_ops(void);
