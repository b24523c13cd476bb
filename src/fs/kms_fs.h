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
	unsigned key_quota;     /* per project, default 100 */
	double entry_timeout;   /* default 1.0 s */
	int audit_fd;           /* append one JSON line per request here; -1: no audit */
};

KMS_WUR int fs_new(const struct fs_options *opt, struct fs **out);
/* Start background work (mailbox expiry). Call after daemonising: fork does not keep threads. */
KMS_WUR int fs_start(struct fs *fs);
void fs_free(struct fs *fs);
const struct fuse_lowlevel_ops *fs_lowlevel_ops(void);
