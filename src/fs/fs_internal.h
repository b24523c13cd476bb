/* fs_internal.h - the pieces of the FUSE layer and how they share state. */
#pragma once

#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

#include "auth/kms_auth.h"
#include "common/kms_buf.h"
#include "kms_fs.h"

/* Inode numbers encode the node: type (8 bits) | action (8) | project index (16) | key index (32).
 * Indexes are handed out by this daemon and never reused while it runs, so an inode number
 * always names the same node; no table is needed to decode one. */
enum fs_node_type {
	FS_ROOT = 0,
	FS_PROJECT_DIR = 1,
	FS_PROJECT_ACTION = 2,
	FS_KEYS_DIR = 3,
	FS_KEY_DIR = 4,
	FS_KEY_ACTION = 5,
	FS_ALIASES_DIR = 6,
	FS_ALIAS_LINK = 7,
};

#define FS_NO_KEY UINT32_MAX
/* Open request handles and buffered request bytes over all of them (README, limits). */
#define FS_MAX_OPEN_HANDLES 100000u
#define FS_MAX_BUFFERED_BYTES (256u * 1024u * 1024u)
/* Responses held by open handles and mailboxes. A request runs only while one more answer of
 * the largest size (4 MiB) fits, so the total stays under this plus one answer per worker. */
#define FS_MAX_HELD_BYTES (256u * 1024u * 1024u)
/* A handle keeps request and response blocks up to this size for its next transaction and
 * releases bigger ones, so an idle handle never pins an earlier big request or answer. */
#define FS_KEEP_BUF_BYTES 4096u
#define FS_MAX_PROJECTS 65535u

struct fs_node {
	enum fs_node_type type;
	uint32_t project;
	uint32_t key;
	uint8_t action; /* index into the api action table */
};

fuse_ino_t fs_node_ino(const struct fs_node *n);
bool fs_node_from_ino(fuse_ino_t ino, struct fs_node *n);

struct fs_key_entry {
	char key_id[KMS_KEY_ID_LEN + 1];
	char alias[KMS_MAX_ALIAS + 1];
	uint32_t project;
	int64_t creation_ms;
};

struct fs_registry {
	pthread_rwlock_t lock;
	char (*projects)[KMS_MAX_PROJECT_ID + 1];
	size_t nprojects, cap_projects;
	struct fs_key_entry *keys;
	size_t nkeys, cap_keys;
	uint32_t *key_index; /* open addressing: key_id -> index + 1 */
	size_t index_cap;
	struct fs_alias_slot *alias_slots; /* which key an alias named last (fs_tree.c) */
};

struct fs_mailbox;
struct fs_binding;

struct fs {
	struct store *store;
	struct api_service svc;
	uint8_t *token_secret; /* AUTH_SECRET_BYTES, secure heap */
	struct fs_registry reg;
	unsigned mailbox_ttl_s;
	double entry_timeout;
	time_t mount_time;

	pthread_mutex_t mail_lock;
	struct fs_mailbox *mail; /* list; small: one per (file, uid) with an unread response */
	size_t nmail;

	pthread_rwlock_t bind_lock;
	struct fs_binding *bindings;
	size_t nbindings;

	int audit_fd;
	pthread_mutex_t audit_lock;
	size_t audit_pending;     /* requests that reserved room for their line */
	off_t audit_reserved_to;  /* the audit file's blocks are allocated up to here */
	bool audit_prealloc;      /* the file system supports fallocate(KEEP_SIZE) */

	/* Bounds against clients that open many handles or write and never read. */
	size_t open_handles;   /* atomic */
	size_t buffered_bytes; /* atomic: request bytes held by all handles */
	size_t held_bytes;     /* atomic: response bytes held by handles and mailboxes */

	pthread_t janitor;
	bool janitor_running;
	pthread_mutex_t janitor_lock;
	pthread_cond_t janitor_cond;
	bool stopping;
};

/* One open file handle: the unit of a transaction (design.md section 2). */
struct fs_txn {
	pthread_mutex_t lock;
	fuse_ino_t ino;
	struct fs_node node;
	const struct api_action *action;
	bool writable;
	struct kms_buf req;  /* secret */
	struct kms_buf resp; /* secret */
	bool req_pending;    /* written since the last run */
	bool resp_ready;
	size_t resp_held;    /* resp.cap as counted in fs->held_bytes */
	int refused;         /* KMS_E_TOO_LONG (past KMS_MAX_REQUEST) or KMS_E_BUSY (daemon-wide
			      * request bytes exhausted): the request answers this, never runs */
	bool ran_by_read;    /* the response went to this handle's reader */
	int last_err;
	bool err_reported;
	bool base_set;
	off_t read_base;
};

/* fs_tree.c */
/* One step of path resolution, without the store: what kind of child `name` would be under a
 * node of type parent (FS_ROOT..FS_ALIASES_DIR). -ENOENT / -ENOTDIR when it can't exist; for an
 * action its table index, for an alias its decoded name (alias_cap bytes). Pure: fuzzed. */
int fs_lookup_step(enum fs_node_type parent, const char *name, enum fs_node_type *child,
		   uint8_t *action, char *alias, size_t alias_cap);
KMS_WUR int fs_registry_init(struct fs_registry *r);
void fs_registry_free(struct fs_registry *r);
/* Project index for a name, registering it if the store knows the project. -ENOENT otherwise. */
int fs_project_index(struct fs *fs, const char *name, uint32_t *idx);
bool fs_project_name(struct fs *fs, uint32_t idx, char out[KMS_MAX_PROJECT_ID + 1]);
int fs_key_register(struct fs *fs, uint32_t project, const struct store_key_meta *m,
		    uint32_t *idx);
bool fs_key_entry(struct fs *fs, uint32_t idx, struct fs_key_entry *out);
void fs_stat_node(struct fs *fs, const struct fs_node *n, struct stat *st);
void fs_op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name);
void fs_op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		   struct fuse_file_info *fi);
void fs_op_readlink(fuse_req_t req, fuse_ino_t ino);
void fs_op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		   struct fuse_file_info *fi);
void fs_op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
/* Alias names may hold '/', which a file name cannot: it is written %2F. */
void fs_alias_encode(const char *alias, char *out, size_t cap);
bool fs_alias_decode(const char *name, char *out, size_t cap);

/* fs_txn.c */
void fs_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void fs_op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		 struct fuse_file_info *fi);
void fs_op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_mailbox_expire(struct fs *fs, bool all);

/* fs_xattr.c */
void fs_op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
		    size_t size, int flags);
void fs_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size);
void fs_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
void fs_op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name);
/* The caller's verified claims for a project, copied out (false: *err says why there are none). */
bool fs_binding_claims(struct fs *fs, uid_t uid, uint32_t project, struct auth_claims *out,
		       int *err);
void fs_bindings_free(struct fs *fs);

/* fs_audit.c */
#define FS_AUDIT_LINE_MAX 1024
#define FS_AUDIT_PREALLOC (64 * 1024)
int fs_audit(void *ctx, const struct api_caller *caller, const struct api_outcome *o);
int fs_audit_reserve(void *ctx);

static inline struct fs *fs_from_req(fuse_req_t req)
{
	return fuse_req_userdata(req);
}
