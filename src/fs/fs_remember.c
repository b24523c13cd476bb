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
#include <dirent.h>
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

struct fs_remember_match {
	struct fs *fs;
	struct store_remembered want; /* uid, scope, project */
	int err;
};

/* Delete the rows of want's scope (the binding they remembered is gone or replaced). */
static int fs_remember_delete_row(const struct store_remembered *r, void *arg)
{
	struct fs_remember_match *m = arg;
	int e;

	if (r->uid != m->want.uid || r->host_ns != m->want.host_ns || r->mntns != m->want.mntns ||
	    strcmp(r->project, m->want.project) != 0)
		return 0;
	e = store_session_delete(m->fs->store, r->id);
	if (e < 0 && m->err == 0)
		m->err = e;
	return 0;
}

/* Fill m for (uid, mntns, project); false if the project has no name (not remembered). */
static bool fs_remember_match_of(struct fs *fs, uid_t uid, uint64_t mntns, uint32_t project,
				 struct fs_remember_match *m)
{
	memset(m, 0, sizeof(*m));
	m->fs = fs;
	m->want.uid = uid;
	snprintf(m->want.host, sizeof(m->want.host), "%s", fs->host_id);
	fs_remember_scope(fs, mntns, &m->want);
	return fs_project_name(fs, project, m->want.project);
}

/* Caller holds remember_lock. */
static int fs_remember_drop_locked(struct fs_remember_match *m)
{
	size_t unreadable = 0;
	int e = store_session_list(m->fs->store, m->fs->host_id, fs_remember_delete_row, m,
				   &unreadable);

	return e < 0 ? e : m->err;
}

/* The start time of pid (clock ticks after boot: field 22 of /proc/PID/stat); false if gone. */
static bool fs_remember_start_of(pid_t pid, uint64_t *out)
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
	return p && sscanf(p + 1, "%" SCNu64, out) == 1;
}

/* The oldest process of mount namespace mntns: the witness a remembered binding keeps. */
static bool fs_remember_witness(uint64_t mntns, struct store_remembered *r)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	bool found = false;

	if (!d)
		return false;
	while ((e = readdir(d)) != NULL) {
		char *end;
		long pid = strtol(e->d_name, &end, 10);
		uint64_t start;

		if (*end || pid <= 0 || pid > INT32_MAX || fs_mntns_of((pid_t)pid) != mntns ||
		    !fs_remember_start_of((pid_t)pid, &start))
			continue;
		if (!found || start < r->witness_start) {
			r->witness_pid = (int32_t)pid;
			r->witness_start = start;
			found = true;
		}
	}
	closedir(d);
	return found;
}

/* Is the namespace a remembered binding names still the one it was made in: its witness alive,
 * the same process (start time) and still in it? */
static bool fs_remember_witness_alive(const struct store_remembered *r)
{
	uint64_t start;

	return r->witness_pid > 0 && fs_remember_start_of(r->witness_pid, &start) &&
	       start == r->witness_start && fs_mntns_of(r->witness_pid) == r->mntns;
}

int fs_remember_put(struct fs *fs, uid_t uid, uint64_t mntns, uint32_t project,
		    const struct auth_claims *claims)
{
	struct fs_remember_match m;
	struct store_token_info *c = &m.want.claims;
	int e = 0;

	if (fs->forget_tokens || !fs_remember_match_of(fs, uid, mntns, project, &m))
		return 0;
	snprintf(c->id, sizeof(c->id), "%s", claims->id);
	snprintf(c->project, sizeof(c->project), "%s", claims->project);
	snprintf(c->user, sizeof(c->user), "%s", claims->user);
	c->role = claims->role;
	c->expiry = claims->expiry;
	pthread_mutex_lock(&fs->remember_lock);
	e = fs_remember_drop_locked(&m);
	/* A namespace of its own (a container's): remembered with the witness that it is still
	 * the same namespace after a restart (an unreadable one: not remembered). */
	if (e == 0 && !m.want.host_ns && !fs_remember_witness(mntns, &m.want))
		e = KMS_E_IO;
	if (e == 0)
		e = store_session_put(fs->store, &m.want);
	pthread_mutex_unlock(&fs->remember_lock);
	if (e < 0)
		kms_log_warning("uid %u bound token %s, but the binding could not be remembered "
				"(%s): it will not survive a restart of the daemon",
				(unsigned)uid, claims->id, kms_err_info(e)->message);
	kms_wipe(&m, sizeof(m));
	return e;
}

void fs_remember_drop(struct fs *fs, uid_t uid, uint64_t mntns, uint32_t project)
{
	struct fs_remember_match m;
	int e;

	if (fs->forget_tokens || !fs_remember_match_of(fs, uid, mntns, project, &m))
		return;
	pthread_mutex_lock(&fs->remember_lock);
	e = fs_remember_drop_locked(&m);
	pthread_mutex_unlock(&fs->remember_lock);
	if (e < 0)
		kms_log_warning("uid %u removed a token binding, but its remembered copy could not "
				"be deleted (%s): a restart of the daemon brings it back",
				(unsigned)uid, kms_err_info(e)->message);
}

struct fs_remember_find {
	const struct store_remembered *want;
	const char *token_id;
	bool found;
};

static int fs_remember_find_row(const struct store_remembered *r, void *arg)
{
	struct fs_remember_find *f = arg;

	f->found = f->found ||
		   (r->uid == f->want->uid && r->host_ns == f->want->host_ns &&
		    r->mntns == f->want->mntns && strcmp(r->project, f->want->project) == 0 &&
		    strcmp(r->claims.id, f->token_id) == 0);
	return 0;
}

bool fs_remembered(struct fs *fs, uid_t uid, uint64_t mntns, const char *project,
		   const char *token_id)
{
	struct store_remembered want;
	struct fs_remember_find f = { &want, token_id, false };
	size_t unreadable = 0;

	if (fs->forget_tokens)
		return false;
	memset(&want, 0, sizeof(want));
	want.uid = uid;
	fs_remember_scope(fs, mntns, &want);
	snprintf(want.project, sizeof(want.project), "%s", project);
	if (store_session_list(fs->store, fs->host_id, fs_remember_find_row, &f, &unreadable) < 0)
		return false;
	return f.found;
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

static void fs_remember_live_scan(struct fs_remember_live *l)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	char path[64];
	struct stat st;

	memset(l, 0, sizeof(*l));
	l->complete = d != NULL;
	while (d && (e = readdir(d))) {
		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%.20s/ns/mnt", e->d_name);
		if (stat(path, &st) != 0) {
			l->complete = l->complete && errno == ENOENT; /* gone meanwhile: fine */
			continue;
		}
		if (l->n == l->cap) {
			size_t cap = l->cap ? 2 * l->cap : 256;
			uint64_t *v = realloc(l->ns, cap * sizeof(*v));

			if (!v) {
				l->complete = false;
				break;
			}
			l->ns = v;
			l->cap = cap;
		}
		l->ns[l->n++] = (uint64_t)st.st_ino;
	}
	if (d)
		closedir(d);
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
	size_t unsure; /* of other namespaces, restored though theirs may have ended */
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
	if (e == -ENOENT) {
		x->dropped += store_session_delete(fs->store, r->id) == 0;
		return 0;
	}
	if (e == 0 && (!mntns || !fs_remember_claims(r, &c)))
		e = -EINVAL;
	if (e == 0)
		e = fs_binding_set(fs, (uid_t)r->uid, mntns, project, &c);
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
	e = store_session_list(fs->store, fs->host_id, fs_remember_restore_row, &x, &unreadable);
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
	pthread_mutex_destroy(&fs->remember_lock);
}
