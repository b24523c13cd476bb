/* Token bindings remembered across daemon restarts (issue 15; docs/access-control.md, "Logins
 * survive restarts").
 *
 * A binding set with setfattr is also written to the store (kms_store.h, store_session_put):
 * the token's claims and the binding's scope (uid, mount namespace, project), sealed under a
 * root-derived key, never the token itself. The scope of a binding made in the host's mount
 * namespace (the one of pid 1) is "host": it is restored into the host namespace of the next
 * start, whatever its inode is then, so host logins survive a reboot. Any other namespace is
 * remembered by its inode, which matches only while that namespace lives. Rows are kept per
 * host (the machine id), so daemons sharing a PostgreSQL store never apply each other's.
 * -o forget_tokens: nothing is remembered and this host's rows are deleted at start. */
#define _GNU_SOURCE /* secure_getenv */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/kms_err.h"
#include "common/kms_log.h"
#include "common/kms_secmem.h"
#include "common/kms_time.h"
#include "fs_internal.h"

/* Tests only (docs/hacking.md): stands in for /etc/machine-id, so two daemons on one machine
 * act as two hosts. */
#define FS_REMEMBER_HOST_ENV "KMSFS_TEST_MACHINE_ID"

/* The machine id (/etc/machine-id, else the host name): names this host's rows. */
static void fs_remember_host_id(char *out, size_t cap)
{
	const char *env = secure_getenv(FS_REMEMBER_HOST_ENV);
	char line[128] = "";
	FILE *f;

	if (env && *env) {
		snprintf(out, cap, "%s", env);
		return;
	}
	f = fopen("/etc/machine-id", "re");
	if (f) {
		if (!fgets(line, sizeof(line), f))
			line[0] = 0;
		fclose(f);
	}
	line[strcspn(line, "\r\n \t")] = 0;
	if (!line[0] && gethostname(line, sizeof(line) - 1) != 0)
		snprintf(line, sizeof(line), "unknown");
	line[sizeof(line) - 1] = 0;
	snprintf(out, cap, "%s", line);
}

void fs_remember_init(struct fs *fs, bool forget)
{
	pthread_mutex_init(&fs->remember_lock, NULL);
	fs->forget_tokens = forget;
	/* The host's namespace is pid 1's. Where that cannot be read (a sandbox that hides pid
	 * 1), our own: the daemon mounts in the namespace its clients log in from. */
	fs->host_mntns = fs_mntns_of(1);
	if (fs->host_mntns == 0)
		fs->host_mntns = fs_mntns_of(getpid());
	fs_remember_host_id(fs->host_id, sizeof(fs->host_id));
}

/* The scope a binding of mntns is remembered with. */
static void fs_remember_scope(const struct fs *fs, uint64_t mntns, struct store_remembered *r)
{
	r->host_ns = fs->host_mntns != 0 && mntns == fs->host_mntns;
	r->mntns = r->host_ns ? 0 : mntns;
}

/* ---- the index of this host's rows ----
 *
 * put and drop must delete every row of their scope (uid, namespace, project): a row left
 * behind brings a removed or replaced login back at the next start. Listing this host's rows
 * for that unseals every one of them (an AES-GCM open each), under remember_lock: with
 * thousands of rows one user looping setfattr would slow every other user's login. So the
 * daemon keeps an index of the rows (scope -> row id, token id), made from the rows it
 * restores at start and kept up to date by put, drop and the janitor's drops, and deletes by
 * id.
 *
 * The index names every row of this host that unseals, and may name more, never fewer: only
 * this daemon adds rows of its host (put, here), and at start it indexes every row it keeps.
 * Others only take rows away (kmsctl token revoke deletes a token's rows on every host) or
 * re-seal them in place under their ids (root-key rotation). A delete that failed keeps its
 * entry, and a write that reported a failure is indexed too (it may have been committed before
 * the error: a lost connection), so that the next put or drop of the scope deletes them. An
 * entry too many is harmless: deleting an id that is gone deletes nothing and succeeds. A start
 * that could not list the rows (or ran out of memory) leaves remember_indexed false: the next
 * put, drop or question lists them once to make the index whole. */
struct fs_remember_row {
	struct fs_remember_row *next;
	uint32_t uid;
	bool host_ns;
	uint64_t mntns;
	char project[KMS_MAX_PROJECT_ID + 1];
	char id[33];
	char token_id[AUTH_TOKEN_ID_LEN + 1];
	bool written; /* the store said so (user.kms.identity's "remembered") */
};

static size_t fs_remember_bucket(uint32_t uid, uint64_t mntns, const char *project)
{
	uint32_t h = 2166136261u; /* FNV-1a of the project, then the uid and namespace mixed in */

	for (const char *c = project; *c; c++)
		h = (h ^ (uint8_t)*c) * 16777619u;
	h ^= uid * 2654435761u;
	h ^= (uint32_t)(mntns ^ (mntns >> 32)) * 2246822519u;
	return h % FS_BIND_BUCKETS;
}

static struct fs_remember_row **fs_remember_chain(struct fs *fs, const struct store_remembered *r)
{
	return &fs->remembered[fs_remember_bucket(r->uid, r->mntns, r->project)];
}

static bool fs_remember_in_scope(const struct fs_remember_row *x, const struct store_remembered *r)
{
	return x->uid == r->uid && x->host_ns == r->host_ns && x->mntns == r->mntns &&
	       strcmp(x->project, r->project) == 0;
}

/* An entry for row r (not linked yet); NULL out of memory. */
static struct fs_remember_row *fs_remember_row_new(const struct store_remembered *r, bool written)
{
	struct fs_remember_row *x = calloc(1, sizeof(*x));

	if (!x)
		return NULL;
	x->uid = r->uid;
	x->host_ns = r->host_ns;
	x->mntns = r->mntns;
	snprintf(x->project, sizeof(x->project), "%s", r->project);
	snprintf(x->id, sizeof(x->id), "%s", r->id);
	snprintf(x->token_id, sizeof(x->token_id), "%s", r->claims.id);
	x->written = written;
	return x;
}

/* Caller holds remember_lock. */
static void fs_remember_index_locked(struct fs *fs, struct fs_remember_row *x)
{
	struct fs_remember_row **pp =
		&fs->remembered[fs_remember_bucket(x->uid, x->mntns, x->project)];

	x->next = *pp;
	*pp = x;
}

/* Delete the rows of want's scope (the binding they remembered is gone or replaced), by id;
 * those whose delete failed stay in the index. Caller holds remember_lock. */
static int fs_remember_drop_locked(struct fs *fs, const struct store_remembered *want)
{
	struct fs_remember_row **pp = fs_remember_chain(fs, want), *x;
	int err = 0, e;

	while ((x = *pp) != NULL) {
		if (!fs_remember_in_scope(x, want)) {
			pp = &x->next;
			continue;
		}
		e = store_session_delete(fs->store, x->id);
		if (e < 0) {
			err = err ? err : e;
			pp = &x->next;
			continue;
		}
		*pp = x->next;
		free(x);
	}
	return err;
}

/* Index row r (remember_lock held); false out of memory. */
static bool fs_remember_index_row(const struct store_remembered *r, struct fs *fs)
{
	struct fs_remember_row *x = fs_remember_row_new(r, true);

	if (x)
		fs_remember_index_locked(fs, x);
	return x != NULL;
}

static int fs_remember_reindex_row(const struct store_remembered *r, void *arg)
{
	return fs_remember_index_row(r, arg) ? 0 : KMS_E_NOMEM;
}

static void fs_remember_index_clear(struct fs *fs)
{
	struct fs_remember_row *x;

	for (size_t i = 0; i < FS_BIND_BUCKETS; i++) {
		while ((x = fs->remembered[i]) != NULL) {
			fs->remembered[i] = x->next;
			free(x);
		}
	}
}

/* Make the index whole (remember_lock held) if the start could not (its listing failed, or it
 * ran out of memory): from a fresh listing of this host's rows. */
static int fs_remember_index_whole_locked(struct fs *fs)
{
	size_t unreadable = 0;
	int e;

	if (fs->remember_indexed)
		return 0;
	fs_remember_index_clear(fs);
	e = store_session_list(fs->store, fs->host_id, fs_remember_reindex_row, fs, &unreadable);
	fs->remember_indexed = e == 0;
	return e;
}

/* The row to remember for (uid, mntns, project): its host and scope filled in; false if the
 * project has no name (not remembered). */
static bool fs_remember_want(struct fs *fs, uid_t uid, uint64_t mntns, uint32_t project,
			     struct store_remembered *want)
{
	memset(want, 0, sizeof(*want));
	want->uid = uid;
	snprintf(want->host, sizeof(want->host), "%s", fs->host_id);
	fs_remember_scope(fs, mntns, want);
	return fs_project_name(fs, project, want->project);
}

bool fs_proc_start_of(pid_t pid, uint64_t *start)
{
	char path[64], buf[1024], *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = 0;
	/* The command name (field 2) may hold spaces and parentheses, but ends at the last ')';
	 * p then is the space before field 3, and 19 spaces on the one before field 22. */
	p = strrchr(buf, ')');
	for (int k = 3; k < 22 && p; k++)
		p = strchr(p + 1, ' ');
	return p && sscanf(p + 1, "%" SCNu64, start) == 1;
}

bool fs_witness_alive(pid_t pid, uint64_t start, uint64_t mntns)
{
	uint64_t now;

	return pid > 0 && fs_proc_start_of(pid, &now) && now == start && fs_mntns_of(pid) == mntns;
}

struct fs_remember_oldest {
	uint64_t mntns;
	struct store_remembered *r;
	bool found;
};

static bool fs_remember_oldest_visit(pid_t pid, void *arg)
{
	struct fs_remember_oldest *o = arg;
	uint64_t start;

	if (fs_mntns_of(pid) != o->mntns || !fs_proc_start_of(pid, &start))
		return false;
	if (!o->found || start < o->r->witness_start) {
		o->r->witness_pid = (int32_t)pid;
		o->r->witness_start = start;
		o->found = true;
	}
	return false;
}

/* The oldest process of mount namespace mntns: the witness a remembered binding keeps. Reads
 * all of /proc: never under remember_lock. */
static bool fs_remember_witness(uint64_t mntns, struct store_remembered *r)
{
	struct fs_remember_oldest o = { .mntns = mntns, .r = r };

	return fs_proc_each(fs_remember_oldest_visit, &o) == 0 && o.found;
}

/* Is the namespace a remembered binding names still the one it was made in: its witness alive,
 * the same process (start time) and still in it? */
static bool fs_remember_witness_alive(const struct store_remembered *r)
{
	return fs_witness_alive(r->witness_pid, r->witness_start, r->mntns);
}

int fs_remember_put(struct fs *fs, uid_t uid, uint64_t mntns, uint32_t project,
		    const struct auth_claims *claims)
{
	struct store_remembered want;
	struct store_token_info *c = &want.claims;
	struct fs_remember_row *x = NULL;
	bool witnessed;
	int e = 0;

	if (fs->forget_tokens || !fs_remember_want(fs, uid, mntns, project, &want))
		return 0;
	snprintf(c->id, sizeof(c->id), "%s", claims->id);
	snprintf(c->project, sizeof(c->project), "%s", claims->project);
	snprintf(c->user, sizeof(c->user), "%s", claims->user);
	c->role = claims->role;
	c->expiry = claims->expiry;
	/* A namespace of its own (a container's): remembered with the witness that it is still
	 * the same namespace after a restart (an unreadable one: not remembered). */
	witnessed = want.host_ns || fs_remember_witness(mntns, &want);
	pthread_mutex_lock(&fs->remember_lock);
	e = fs_remember_index_whole_locked(fs);
	if (e == 0)
		e = fs_remember_drop_locked(fs, &want);
	if (e == 0 && !witnessed)
		e = KMS_E_IO;
	/* The entry first: a row written but not indexed would outlive its binding's removal. */
	if (e == 0) {
		x = fs_remember_row_new(&want, false);
		e = x ? store_session_put(fs->store, &want) : KMS_E_NOMEM;
	}
	if (x && want.id[0]) {
		snprintf(x->id, sizeof(x->id), "%s", want.id);
		x->written = e == 0;
		fs_remember_index_locked(fs, x);
		x = NULL;
	}
	pthread_mutex_unlock(&fs->remember_lock);
	free(x); /* no id: nothing was written */
	if (e < 0)
		kms_log_warning("uid %u bound token %s, but the binding could not be remembered "
				"(%s): it will not survive a restart of the daemon",
				(unsigned)uid, claims->id, kms_err_info(e)->message);
	kms_wipe(&want, sizeof(want));
	return e;
}

void fs_remember_drop(struct fs *fs, uid_t uid, uint64_t mntns, uint32_t project)
{
	struct store_remembered want;
	int e;

	if (fs->forget_tokens || !fs_remember_want(fs, uid, mntns, project, &want))
		return;
	pthread_mutex_lock(&fs->remember_lock);
	e = fs_remember_index_whole_locked(fs);
	if (e == 0)
		e = fs_remember_drop_locked(fs, &want);
	pthread_mutex_unlock(&fs->remember_lock);
	if (e < 0)
		kms_log_warning("uid %u removed a token binding, but its remembered copy could not "
				"be deleted (%s): a restart of the daemon brings it back",
				(unsigned)uid, kms_err_info(e)->message);
}

bool fs_remembered(struct fs *fs, uid_t uid, uint64_t mntns, const char *project,
		   const char *token_id)
{
	struct store_remembered want;
	const struct fs_remember_row *x;
	bool found = false;

	if (fs->forget_tokens)
		return false;
	memset(&want, 0, sizeof(want));
	want.uid = uid;
	fs_remember_scope(fs, mntns, &want);
	snprintf(want.project, sizeof(want.project), "%s", project);
	pthread_mutex_lock(&fs->remember_lock);
	x = fs_remember_index_whole_locked(fs) == 0 ? *fs_remember_chain(fs, &want) : NULL;
	for (; x && !found; x = x->next)
		found = x->written && fs_remember_in_scope(x, &want) &&
			strcmp(x->token_id, token_id) == 0;
	pthread_mutex_unlock(&fs->remember_lock);
	/* kmsctl token revoke deletes the rows of the token it revokes, behind our back. */
	return found && !store_token_revoked(fs->store, token_id);
}

/* ---- restore at start ---- */

/* The mount namespaces of the running processes (sorted), so rows of namespaces that are gone
 * can be dropped. complete is false when some process's namespace could not be read (not
 * root): then nothing is dropped for being gone. */
struct fs_remember_live {
	uint64_t *ns;
	size_t n, cap;
	bool complete;
};

static int fs_remember_u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Adds pid's namespace to the list (a struct fs_remember_live); stops when out of memory. */
static bool fs_remember_live_visit(pid_t pid, void *arg)
{
	struct fs_remember_live *l = arg;
	char path[64];
	struct stat st;

	snprintf(path, sizeof(path), "/proc/%d/ns/mnt", (int)pid);
	if (stat(path, &st) != 0) {
		l->complete = l->complete && errno == ENOENT; /* gone meanwhile: fine */
		return false;
	}
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 256;
		uint64_t *v = realloc(l->ns, cap * sizeof(*v));

		if (!v) {
			l->complete = false;
			return true;
		}
		l->ns = v;
		l->cap = cap;
	}
	l->ns[l->n++] = (uint64_t)st.st_ino;
	return false;
}

static void fs_remember_live_scan(struct fs_remember_live *l)
{
	memset(l, 0, sizeof(*l));
	l->complete = true;
	if (fs_proc_each(fs_remember_live_visit, l) != 0)
		l->complete = false;
	qsort(l->ns, l->n, sizeof(*l->ns), fs_remember_u64_cmp);
}

static bool fs_remember_live_has(const struct fs_remember_live *l, uint64_t ns)
{
	return !l->complete ||
	       (l->n && bsearch(&ns, l->ns, l->n, sizeof(*l->ns), fs_remember_u64_cmp) != NULL);
}

struct fs_remember_restore {
	struct fs *fs;
	struct fs_remember_live live;
	int64_t now_s;
	size_t restored, dropped, failed;
	size_t unsure;	/* of other namespaces, restored though theirs may have ended */
	bool unindexed; /* a row kept that the index could not take (out of memory) */
};

static bool fs_remember_claims(const struct store_remembered *r, struct auth_claims *c)
{
	memset(c, 0, sizeof(*c));
	c->role = r->claims.role;
	c->expiry = r->claims.expiry;
	return (size_t)snprintf(c->id, sizeof(c->id), "%s", r->claims.id) < sizeof(c->id) &&
	       (size_t)snprintf(c->project, sizeof(c->project), "%s", r->claims.project) <
		       sizeof(c->project) &&
	       (size_t)snprintf(c->user, sizeof(c->user), "%s", r->claims.user) < sizeof(c->user);
}

/* One remembered binding: installed if still good, else its row deleted. */
static int fs_remember_restore_row(const struct store_remembered *r, void *arg)
{
	struct fs_remember_restore *x = arg;
	struct fs *fs = x->fs;
	struct auth_claims c;
	uint64_t mntns = r->host_ns ? fs->host_mntns : r->mntns;
	uint32_t project = 0;
	int e = 0;

	memset(&c, 0, sizeof(c));
	/* Expired or revoked (the purge before missed it if it happened just now), a namespace
	 * that no longer exists, a project that was removed: the row has no use any more. */
	if (r->claims.expiry <= x->now_s || store_token_revoked(fs->store, r->claims.id) ||
	    (!r->host_ns &&
	     (!fs_remember_live_has(&x->live, r->mntns) || !fs_remember_witness_alive(r))))
		e = -ENOENT;
	else
		e = fs_project_index(fs, r->project, &project);
	if (e == 0 && !r->host_ns && !x->live.complete)
		x->unsure++;
	if (e == -ENOENT && store_session_delete(fs->store, r->id) == 0) {
		x->dropped++;
		return 0;
	}
	/* Kept (or its delete failed): indexed, so that put and drop find it. */
	if (!fs_remember_index_row(r, fs))
		x->unindexed = true;
	if (e == -ENOENT)
		return 0;
	if (e == 0 && (!mntns || !fs_remember_claims(r, &c)))
		e = -EINVAL;
	if (e == 0)
		e = fs_binding_set(fs, (uid_t)r->uid, mntns, project, &c,
				   r->host_ns ? 0 : r->witness_pid);
	kms_wipe(&c, sizeof(c));
	if (e < 0)
		x->failed++;
	else
		x->restored++;
	return 0;
}

int fs_remember_restore(struct fs *fs)
{
	struct fs_remember_restore x = { .fs = fs };
	size_t purged = 0, unreadable = 0;
	int e;

	x.now_s = kms_time_real_ms() / 1000;
	if (fs->forget_tokens) {
		e = store_session_purge(fs->store, fs->host_id, NULL, true, 0, &purged);
		if (e == 0 && purged)
			kms_log_info("forget_tokens: deleted %zu remembered token binding(s) of "
				     "this host",
				     purged);
		goto out;
	}
	e = store_session_purge(fs->store, fs->host_id, NULL, false, kms_time_real_ms(), &purged);
	if (e < 0)
		goto out;
	fs_remember_live_scan(&x.live);
	pthread_mutex_lock(&fs->remember_lock);
	e = store_session_list(fs->store, fs->host_id, fs_remember_restore_row, &x, &unreadable);
	fs->remember_indexed = e == 0 && !x.unindexed;
	pthread_mutex_unlock(&fs->remember_lock);
	if (e == 0 && (x.restored || purged + x.dropped))
		kms_log_info("restored %zu remembered token binding(s); dropped %zu expired, "
			     "revoked or of a namespace or project that is gone",
			     x.restored, purged + x.dropped);
	if (x.unsure)
		kms_log_info("%zu remembered token binding(s) of other mount namespaces kept: not "
			     "every process's mount namespace can be read here to tell whether "
			     "theirs still exists",
			     x.unsure);
	if (x.failed)
		kms_log_warning("%zu remembered token binding(s) could not be restored (the "
				"uid's share of bindings, or no host mount namespace)",
				x.failed);
	if (unreadable)
		kms_log_warning("%zu remembered token binding(s) cannot be unsealed under this "
				"root key and are ignored",
				unreadable);
	free(x.live.ns);
out:
	if (e < 0)
		kms_log_error("remembered token bindings: %s; clients set their tokens again",
			      kms_err_info(e)->message);
	return e;
}

void fs_remember_free(struct fs *fs)
{
	fs_remember_index_clear(fs);
	pthread_mutex_destroy(&fs->remember_lock);
}
