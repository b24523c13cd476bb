/* fs_internal.h - the pieces of the FUSE layer and how they share state. */
#pragma once

#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

#include "auth/kms_auth.h"
#include "common/kms_buf.h"
#include "fs_txn_state.h"
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
	FS_INFO_FILE = 8, /* /kms/.metrics or /kms/.status (action: enum fs_info) */
};

#define FS_NO_KEY UINT32_MAX
/* A handle keeps request and response blocks up to this size for its next transaction and
 * releases bigger ones, so an idle handle never pins an earlier big request or answer. */
#define FS_KEEP_BUF_BYTES 4096u
#define FS_MAX_PROJECTS	  65535u

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
struct fs_ns_pin;
struct fs_remember_row;

/* fs_metrics.c: what the daemon counts for /kms/.metrics and /kms/.status. The request path
 * adds to its thread's own counters (no lock, no shared cache line); a reader sums them at open. */
#define FS_LATENCY_BUCKETS 14u
struct fs_counters;
struct fs_metrics {
	pthread_mutex_t lock;	      /* the list of counter blocks */
	struct fs_counters *blocks;   /* one per thread that counted (fs_metrics.c) */
	struct fs_counters *fallback; /* shared, atomic: for a thread that got no block */
	pthread_key_t key;	      /* the calling thread's block */
	size_t nactions, ncodes;
	int64_t start_mono_ms;
	const char *version;
	bool has_group; /* -o metrics_group: group may read them too, else only root */
	gid_t group;
};

/* Pools that clients fill and the daemon bounds (docs/operations.md, Limits). Each has a
 * daemon-wide bound and a per-uid share of it (FS_UID_SHARE_DIVISOR): one uid at its share leaves
 * the rest to the others. A handle's use is charged to the uid that opened it. */
enum fs_pool {
	FS_POOL_HANDLES,       /* open action handles */
	FS_POOL_REQUEST_BYTES, /* request bytes buffered by handles */
	FS_POOL_HELD_BYTES,    /* answer bytes held by handles and mailboxes (buffer capacity) */
	FS_POOL_MAILBOXES,     /* unread mailboxes */
	FS_POOL_BINDINGS,      /* token bindings, one per (uid, mount namespace, project) */
	FS_POOLS
};
#define FS_MAX_OPEN_HANDLES   100000u
#define FS_MAX_BUFFERED_BYTES (256u * 1024u * 1024u)
/* A request runs only while one more answer of the largest size (4 MiB) fits in its uid's share
 * and in this bound, so the total stays under this plus one answer per worker. */
#define FS_MAX_HELD_BYTES (256u * 1024u * 1024u)
#define FS_MAX_MAILBOXES  16384u
#define FS_MAX_BINDINGS	  65536u
/* Every uid (root too) may take at most a quarter of each pool. */
#define FS_UID_SHARE_DIVISOR 4u
#define FS_UID_BUCKETS	     256u
#define FS_BIND_BUCKETS	     4096u

/* One uid's use of the pools, and the rate limit of its audited refusals. Found through
 * fs->uids; pinned (refs) by every handle, mailbox and binding of the uid; the janitor frees it
 * once nothing pins it, it holds nothing and its refusal bucket is full again. */
struct fs_uid {
	struct fs_uid *next;
	uid_t uid;
	size_t refs;	       /* atomic; freed at 0 only under fs->uid_lock (write) */
	size_t used[FS_POOLS]; /* atomic */
	bool warned_mailboxes; /* atomic: the "mailbox share reached" warning was logged */
	/* Audited refusals without an identity (under fs->audit_lock): a token bucket. */
	unsigned audit_tokens;
	int64_t audit_refill_ms;
	uint64_t audit_suppressed; /* refusals not written since the last summary */
	gid_t audit_gid;	   /* of the last suppressed one, for the summary line */
	char audit_project[KMS_MAX_PROJECT_ID + 1];
	char audit_action[48];
	char audit_code[16];
};

/* Who opened a handle, captured at OPEN like the kernel's file credentials. Every request on the
 * handle runs with it, whoever reads, flushes or closes the descriptor later. Only facts: what
 * they allow is for the API to decide (api_authz.c), request by request. */
#define FS_MAX_GROUPS 64u
struct fs_identity {
	uid_t uid;
	gid_t gid;
	pid_t pid; /* a thread id in the daemon's pid namespace; 0 when the caller is not visible */
	char comm[16];	/* the opener's command name (read only when auditing) */
	bool has_token; /* claims: the token bound to (uid, mntns, project) at open */
	struct auth_claims claims;
	int auth_error; /* no token: why (KMS_E_TOKEN_MISSING, or the bound token's error) */
	/* The role bindings gave at open (api_bound_role), and the primary and supplementary
	 * groups (heap) it was found with, for the per-request re-check: an unbind applies at
	 * once, like a revocation. */
	enum kms_role bound_role;
	gid_t *gids;
	size_t ngids;
	/* The opener's workload: mount namespace inode (0 unknown) and cgroup v2 path (heap, NULL
	 * unknown), read at open (fs_identity_capture) and kept for the handle's life. */
	uint64_t mntns;
	char *cgroup;
};

struct fs {
	struct store *store;
	struct api_service svc;
	uint8_t *token_secret; /* AUTH_SECRET_BYTES, secure heap */
	struct fs_registry reg;
	unsigned mailbox_ttl_s;
	double entry_timeout;
	time_t mount_time;
	struct fs_metrics metrics;

	pthread_mutex_t mail_lock;
	struct fs_mailbox *mail; /* list; small: one per (file, uid) with an unread response */

	pthread_rwlock_t bind_lock;
	struct fs_binding *bindings[FS_BIND_BUCKETS]; /* chains, by (uid, mntns, project) */
	struct fs_ns_pin *ns_pins; /* the namespaces bindings are scoped to, held open */

	/* Open action handles. At unmount the kernel sends no RELEASE for handles whose
	 * descriptors are still open (or whose release was still queued): fs_free frees these. */
	pthread_mutex_t live_lock;
	struct fs_txn *live;

	pthread_rwlock_t uid_lock;
	struct fs_uid *uids[FS_UID_BUCKETS]; /* chains, by uid */
	size_t pool_used[FS_POOLS];	     /* atomic: all uids together */

	struct audit_trail *audit;  /* NULL: no audit trail */
	pthread_mutex_t audit_lock; /* the refusal buckets of the uids */

	pthread_t janitor;
	/* A shared store's watcher (fs_ops.c): waits for other hosts' changes and refreshes the
	 * cache; stops with the janitor (stopping, janitor_lock, janitor_cond). */
	pthread_t watcher;
	bool janitor_running;
	bool watcher_running;
	pthread_mutex_t janitor_lock;
	pthread_cond_t janitor_cond;
	bool stopping;
	/* fs_remember.c: -o forget_tokens, this host's name in the store's remembered bindings (the
	 * machine id), the host's mount namespace (pid 1's), and remember_lock, which serialises
	 * the store writes of setfattr and removexattr and guards remembered: the index of this
	 * host's rows by scope (uid, namespace, project), so that those writes touch only the rows
	 * of their own scope. */
	bool forget_tokens;
	char host_id[65];
	uint64_t host_mntns;
	pthread_mutex_t remember_lock;
	struct fs_remember_row *remembered[FS_BIND_BUCKETS];
	bool remember_indexed; /* remembered names every row of this host (else: list again) */
};

/* One open file handle: the unit of a transaction (design.md section 2). */
struct fs_txn {
	pthread_mutex_t lock;
	struct fs_txn *live_prev, *live_next; /* fs->live: freed at unmount if no RELEASE came */
	struct fs_identity id; /* the opener's: every request on the handle runs with it */
	struct fs_uid *owner;  /* the opener uid's pools, pinned */
	fuse_ino_t ino;
	struct fs_node node;
	const struct api_action *action;
	bool writable;	     /* opened for writing (open mode, not state) */
	bool readable;	     /* opened for reading: an fsync leaves the answer on it */
	struct kms_buf req;  /* secret */
	struct kms_buf resp; /* secret */
	size_t resp_held;    /* resp.cap as counted in FS_POOL_HELD_BYTES */
	/* The transaction's state (fs_txn_state.h). A refused write's code is KMS_E_TOO_LONG (past
	 * KMS_MAX_REQUEST) or KMS_E_BUSY (the uid's share or the daemon's request bytes exhausted). */
	struct fs_txn_sm sm;
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
int fs_key_register(struct fs *fs, uint32_t project, const struct store_key_meta *m, uint32_t *idx);
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
void fs_op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
void fs_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_mailbox_expire(struct fs *fs, bool all);
/* Free the handles no RELEASE came for (the session has ended: no request is running). */
void fs_txns_free_all(struct fs *fs);

/* fs_xattr.c */
void fs_op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
		    size_t size, int flags);
void fs_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size);
void fs_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
void fs_op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name);
/* The claims of the token uid bound to a project, copied out (false: *err says why there are
 * none). Callers use fs_identity_capture. */
bool fs_binding_claims(struct fs *fs, uid_t uid, uint64_t mntns, uint32_t project,
		       struct auth_claims *out, int *err);
void fs_bindings_free(struct fs *fs);
/* The janitor's: drop the bindings of mount namespaces no process is in any more (each binding
 * holds its namespace open, so that the kernel cannot give its number to a new one). A process
 * seen in each namespace is looked at first; /proc is read only for those where it has gone. */
void fs_bindings_sweep(struct fs *fs);
/* Install (or replace) the token binding of (uid, mount namespace, project) in memory, from a
 * setfattr or from a remembered one at start (fs_remember.c; hint: a process in mntns, or 0);
 * remove it. */
KMS_WUR int fs_binding_set(struct fs *fs, uid_t uid, uint64_t mntns, uint32_t project,
			   const struct auth_claims *claims, pid_t hint);
bool fs_binding_remove(struct fs *fs, uid_t uid, uint64_t mntns, uint32_t project); /* was one */

/* fs_remember.c: token bindings remembered across restarts (sealed in the store), unless
 * -o forget_tokens. put/drop after a binding was set/removed through the file system; restore
 * once at start, before the mount serves. */
KMS_WUR int fs_remember_put(struct fs *fs, uid_t uid, uint64_t mntns, uint32_t project,
			    const struct auth_claims *claims);
void fs_remember_drop(struct fs *fs, uid_t uid, uint64_t mntns, uint32_t project);
KMS_WUR int fs_remember_restore(struct fs *fs);
/* Whether the binding of token_id in (uid, mntns, project name) is remembered in the store
 * (user.kms.identity: a failed write leaves it in memory only). */
bool fs_remembered(struct fs *fs, uid_t uid, uint64_t mntns, const char *project,
		   const char *token_id);
/* In fs_new before anything can fail (forget: -o forget_tokens), and in fs_free. */
void fs_remember_init(struct fs *fs, bool forget);
void fs_remember_free(struct fs *fs);
/* A witness of a mount namespace: one process seen in it, named by pid and start time (clock
 * ticks after boot: field 22 of /proc/PID/stat), so that a pid given to a new process is not
 * taken for it. fs_proc_start_of: pid's start time (false if gone); fs_witness_alive: is that
 * very process still there, and in namespace mntns. */
bool fs_proc_start_of(pid_t pid, uint64_t *start);
bool fs_witness_alive(pid_t pid, uint64_t start, uint64_t mntns);

/* fs_identity.c */
/* The identity of req's caller for a project (index, as in struct fs_node): uid, gid, pid, mount
 * namespace, cgroup (without a token, or with the audit on), the token bound to (uid, mntns,
 * project), and (without a token) the role bindings give it now, with the groups to look them up
 * again. Release with fs_identity_release. */
void fs_identity_capture(fuse_req_t req, struct fs *fs, uint32_t project, struct fs_identity *out);
/* The same for what the tree shows the caller (fs_tree.c), where the mount namespace its thread
 * had at its last open or lookup may serve for a moment longer (fs_identity.c). */
void fs_identity_view(fuse_req_t req, struct fs *fs, uint32_t project, struct fs_identity *out);
void fs_identity_release(struct fs_identity *id);
/* The caller the API judges (api_call, api_caller_may) for a captured identity in project (its
 * name); sets every field but path_key_id. Points into id, which must outlive out. */
void fs_identity_caller(const struct fs_identity *id, const char *project, struct api_caller *out);
/* The calling thread's command name; pid is a thread id in our pid namespace (0 if unseen). */
void fs_process_name(pid_t pid, char *out, size_t cap);
/* The inode of pid's mount namespace (0 if unreadable; fs_mntns_of(1): the host's), and its
 * cgroup v2 path (the "0::" line of /proc/PID/cgroup, heap, NULL if unreadable). */
uint64_t fs_mntns_of(pid_t pid);
char *fs_cgroup_of(pid_t pid);
/* Close the kept /proc/PID/ns/mnt descriptors (fs_identity.c) of threads not read for idle_ns:
 * mostly those of tasks that ended, which nothing else would close. */
#define FS_MNTNS_LINK_IDLE_NS (2 * 1000 * 1000 * 1000LL)
#define FS_MNTNS_LINK_SLOTS   64u /* at most this many such descriptors */
void fs_mntns_memo_trim(int64_t idle_ns);
/* Calls visit(pid, arg) for each process in /proc, in /proc's order, until visit returns true.
 * 0 when /proc was read (to its end, or up to the stop), else -errno: its opendir's. The one
 * walk of all processes (witnesses of mount namespaces, the live namespaces at start). */
KMS_WUR int fs_proc_each(bool (*visit)(pid_t pid, void *arg), void *arg);
/* user.kms.identity: one JSON object (heap; NULL out of memory or no such project) describing
 * how a new open by req's caller in project would be seen: uid, gid, pid, mntns,
 * host_namespace, cgroup, the token that applies (its claims, never the token) or why none, the
 * role bindings give and the resulting role. */
char *fs_identity_describe(fuse_req_t req, struct fs *fs, uint32_t project);

/* fs_metrics.c */
enum fs_info { FS_INFO_METRICS = 0, FS_INFO_STATUS = 1 };
KMS_WUR int fs_metrics_init(struct fs_metrics *m, const struct fs_options *opt);
void fs_metrics_free(struct fs_metrics *m);
/* Count one request of action (table index) that ended with err (0 or KMS_E_*), started at
 * start_ns (kms_time_mono_ns), with req_len bytes in and resp_len out. Lock-free. */
void fs_metrics_count(struct fs *fs, uint8_t action, int err, int64_t start_ns, size_t req_len,
		      size_t resp_len);
/* May req's caller read .metrics and .status: root, or a member of -o metrics_group. */
bool fs_metrics_may_read(fuse_req_t req);
/* The name of an info file (".metrics", ".status") and its index; -ENOENT for other names. */
int fs_info_index(const char *name, uint8_t *info);
const char *fs_info_name(uint8_t info);
void fs_info_stat(const struct fs *fs, struct stat *st);
void fs_info_open(fuse_req_t req, const struct fs_node *n, struct fuse_file_info *fi);
void fs_info_read(fuse_req_t req, size_t size, off_t off, struct fuse_file_info *fi);
void fs_info_release(fuse_req_t req, struct fuse_file_info *fi);

/* A snapshot of the counters, as the formatting functions (pure: unit-tested) take it. */
struct fs_metrics_row {
	const char *action, *code; /* code: "ok" or "KMS.xxxx" */
	uint64_t n;
};
struct fs_metrics_snapshot {
	const char *version;
	int64_t start_time_s; /* Unix time */
	double uptime_s;
	struct fs_metrics_row *rows; /* every action with "ok", then the error codes seen */
	size_t nrows;
	uint64_t latency[FS_LATENCY_BUCKETS + 1]; /* cumulative; last: +Inf (the count) */
	double latency_sum_s;
	uint64_t request_bytes, response_bytes;
	size_t pool_used[FS_POOLS], pool_limit[FS_POOLS];
	size_t cache_entries, cache_limit;
	uint64_t cache_hits, cache_misses, cache_evictions, store_errors, store_reconnects;
	bool store_online;
	int64_t store_fresh_age_ms;
	bool fuse_uring;	      /* requests come over io_uring (fs_uring.h) */
	uint64_t fuse_uring_requests; /* answered over io_uring since the mount */
};
/* The upper bounds of the latency buckets (ns). */
extern const int64_t fs_latency_bounds_ns[FS_LATENCY_BUCKETS];
/* Prometheus text exposition format 0.0.4 / one JSON object, appended to out. */
KMS_WUR int fs_metrics_format_text(const struct fs_metrics_snapshot *s, struct kms_buf *out);
KMS_WUR int fs_metrics_format_json(const struct fs_metrics_snapshot *s, struct kms_buf *out);
/* fs_identity.c: the primary group and the supplementary ones of req's caller
 * (out: FS_MAX_GROUPS + 1). */
size_t fs_groups(fuse_req_t req, gid_t gid, gid_t *out);

/* fs_share.c: the per-uid shares of the pools. */
/* The uid's entry, created if needed and pinned; NULL when out of memory. */
struct fs_uid *fs_uid_get(struct fs *fs, uid_t uid);
/* One more pin on an entry the caller has pinned already. */
void fs_uid_pin(struct fs_uid *u);
void fs_uid_put(struct fs_uid *u);
/* Take n of a pool for u: false (nothing taken) when u's share or the daemon's bound would be
 * passed. */
KMS_WUR bool fs_share_take(struct fs *fs, struct fs_uid *u, enum fs_pool p, size_t n);
void fs_share_give(struct fs *fs, struct fs_uid *u, enum fs_pool p, size_t n);
/* Is there room for n more of a pool in u's share and the daemon's bound? */
bool fs_share_room(struct fs *fs, const struct fs_uid *u, enum fs_pool p, size_t n);
/* Free entries that hold nothing (all: every entry, at shutdown); write the audit summary of
 * suppressed refusals first. */
void fs_uids_sweep(struct fs *fs, bool all);
size_t fs_pool_share(enum fs_pool p);
size_t fs_pool_limit(enum fs_pool p); /* the daemon-wide bound */

/* fs_audit.c */
/* Refusals for want of an identity (KMS.0301-0303) are written at most this many in a row per
 * uid, then one a second; the rest are counted and summed up in a "suppressed" line. */
#define FS_AUDIT_REFUSAL_BURST 20u
#define FS_AUDIT_REFUSAL_PER_S 1u
/* What fs_txn_run hands to api_call, and (through fs_current_call, for the thread that runs it)
 * what fs_audit gets back: the handle's identity and the uid charged for it. */
struct fs_call {
	struct api_caller caller;
	const struct fs_identity *id;
	struct fs_uid *owner;
};
extern __thread const struct fs_call *fs_current_call;
int fs_audit(void *ctx, const struct api_caller *caller, const struct api_outcome *o);
int fs_audit_reserve(void *ctx);
/* Write u's "suppressed" summary line if it has one pending (uid_lock held for writing). True
 * when u's refusal bucket is full again and nothing is pending: the entry may go. */
bool fs_audit_summary(struct fs *fs, struct fs_uid *u);
/* Take up the trail in opt->audit_fd (fs_new): the audit key, then the daemon's audit-open line. */
KMS_WUR int fs_audit_open(struct fs *fs, const struct fs_options *opt);

static inline struct fs *fs_from_req(fuse_req_t req)
{
	return fuse_req_userdata(req);
}
