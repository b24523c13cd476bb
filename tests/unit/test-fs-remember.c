/* test-fs-remember.c - the daemon's side of remembered logins (src/fs/fs_remember.c) and the
 * janitor's watch on the namespaces bindings pin (fs_xattr.c, fs_bindings_sweep).
 *
 * put and drop find a scope's rows through the daemon's index of this host's rows, never by
 * listing them: a put replaces its scope's row and leaves the others, a drop deletes its scope's
 * row, a row deleted behind the daemon's back (kmsctl token revoke) is harmless to delete again,
 * and a daemon started on the store indexes the rows it restores, so its put and drop find them.
 * The janitor keeps a binding while its namespace has a process, through a new witness when the
 * first one ends, and drops it two sweeps after the last one ended. */
#define _GNU_SOURCE
#include "kms_test.h"
#include "kms_test_tmp.h"

#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/kms_time.h"
#include "fs/fs_internal.h"
#include "store/kms_store.h"

static char base_dir[4096];
static struct store *st;

static void cleanup(void)
{
	store_close(st);
	st = NULL;
	if (base_dir[0])
		(void)kms_test_rmrf(base_dir);
}

static struct store *test_store(void)
{
	struct store_options o = { .create = true };
	char why[512] = "";

	if (st)
		return st;
	kms_test_mkdtemp(base_dir, sizeof(base_dir));
	atexit(cleanup);
	o.state_dir = base_dir;
	if (store_open(&o, &st, why, sizeof(why)) != 0 || store_project_ensure(st, "p") != 0) {
		fprintf(stderr, "cannot open a store in %s: %s\n", base_dir, why);
		abort();
	}
	return st;
}

static struct fs *test_fs(void)
{
	struct fs_options o = { .audit_fd = -1 };
	struct fs *fs = NULL;

	o.store = test_store();
	if (fs_new(&o, &fs) != 0)
		abort();
	return fs;
}

static struct auth_claims claims_of(const char *token_id)
{
	struct auth_claims c;

	memset(&c, 0, sizeof(c));
	snprintf(c.id, sizeof(c.id), "%s", token_id);
	snprintf(c.project, sizeof(c.project), "p");
	snprintf(c.user, sizeof(c.user), "u");
	c.role = KMS_ROLE_ADMIN;
	c.expiry = kms_time_real_ms() / 1000 + 3600;
	return c;
}

struct rows {
	size_t n;
	uint32_t uid;
	char token_id[17];
	size_t of_uid;
};

static int count_row(const struct store_remembered *r, void *arg)
{
	struct rows *c = arg;

	c->n++;
	if (r->uid == c->uid) {
		c->of_uid++;
		snprintf(c->token_id, sizeof(c->token_id), "%s", r->claims.id);
	}
	return 0;
}

/* The rows of this host in the store, and those of uid (the token of the last one). */
static struct rows rows_of(struct fs *fs, uint32_t uid)
{
	struct rows c = { .uid = uid };
	size_t unreadable = 0;

	if (store_session_list(fs->store, fs->host_id, count_row, &c, &unreadable) != 0)
		abort();
	return c;
}

static int put(struct fs *fs, uid_t uid, const char *token_id)
{
	struct auth_claims c = claims_of(token_id);
	uint32_t project;

	if (fs_project_index(fs, "p", &project) != 0)
		return -1;
	return fs_remember_put(fs, uid, fs->host_mntns, project, &c);
}

static void drop(struct fs *fs, uid_t uid)
{
	uint32_t project;

	if (fs_project_index(fs, "p", &project) == 0)
		fs_remember_drop(fs, uid, fs->host_mntns, project);
}

TEST(put_replaces_its_scope_and_drop_deletes_it)
{
	struct fs *fs = test_fs();
	size_t before = rows_of(fs, 0).n;

	ASSERT_OK(put(fs, 5001, "tok-a"));
	ASSERT_OK(put(fs, 5002, "tok-b"));
	ASSERT_EQ(rows_of(fs, 5001).n, before + 2);
	ASSERT_TRUE(fs_remembered(fs, 5001, fs->host_mntns, "p", "tok-a"));
	/* A new token in the same scope: its row replaces the old one. */
	ASSERT_OK(put(fs, 5001, "tok-c"));
	ASSERT_EQ(rows_of(fs, 5001).n, before + 2);
	ASSERT_EQ(rows_of(fs, 5001).of_uid, 1);
	ASSERT_STREQ(rows_of(fs, 5001).token_id, "tok-c");
	ASSERT_TRUE(fs_remembered(fs, 5001, fs->host_mntns, "p", "tok-c"));
	ASSERT_FALSE(fs_remembered(fs, 5001, fs->host_mntns, "p", "tok-a"));
	ASSERT_FALSE(fs_remembered(fs, 5003, fs->host_mntns, "p", "tok-c"));
	drop(fs, 5001);
	ASSERT_EQ(rows_of(fs, 5001).of_uid, 0);
	ASSERT_EQ(rows_of(fs, 5002).of_uid, 1);
	ASSERT_FALSE(fs_remembered(fs, 5001, fs->host_mntns, "p", "tok-c"));
	drop(fs, 5002);
	ASSERT_EQ(rows_of(fs, 0).n, before);
	fs_free(fs);
}

TEST(rows_deleted_behind_the_daemons_back_are_harmless)
{
	struct fs *fs = test_fs();
	size_t purged = 0;

	ASSERT_OK(put(fs, 5101, "tok-gone"));
	/* kmsctl token revoke: the token's rows go, on every host. */
	ASSERT_OK(store_session_purge(fs->store, NULL, "tok-gone", true, 0, &purged));
	ASSERT_EQ(purged, 1);
	drop(fs, 5101); /* deletes an id that is gone: nothing, and no error */
	ASSERT_OK(put(fs, 5101, "tok-gone"));
	ASSERT_OK(store_session_purge(fs->store, NULL, "tok-gone", true, 0, &purged));
	ASSERT_OK(put(fs, 5101, "tok-new"));
	ASSERT_EQ(rows_of(fs, 5101).of_uid, 1);
	ASSERT_TRUE(fs_remembered(fs, 5101, fs->host_mntns, "p", "tok-new"));
	drop(fs, 5101);
	ASSERT_EQ(rows_of(fs, 5101).of_uid, 0);
	fs_free(fs);
}

TEST(a_restarted_daemon_finds_the_rows_it_restored)
{
	struct fs *fs = test_fs();

	ASSERT_OK(put(fs, 5201, "tok-r1"));
	ASSERT_OK(put(fs, 5202, "tok-r2"));
	fs_free(fs);
	fs = test_fs(); /* restores both, and indexes them */
	ASSERT_TRUE(fs_remembered(fs, 5201, fs->host_mntns, "p", "tok-r1"));
	ASSERT_OK(put(fs, 5201, "tok-r3"));
	ASSERT_EQ(rows_of(fs, 5201).of_uid, 1);
	ASSERT_STREQ(rows_of(fs, 5201).token_id, "tok-r3");
	drop(fs, 5202);
	ASSERT_EQ(rows_of(fs, 5202).of_uid, 0);
	drop(fs, 5201);
	ASSERT_EQ(rows_of(fs, 5201).of_uid, 0);
	fs_free(fs);
}

TEST(a_witness_is_a_pid_its_start_time_and_namespace)
{
	uint64_t start = 0, ns = fs_mntns_of(getpid());
	int status;
	pid_t child;

	ASSERT_TRUE(fs_proc_start_of(getpid(), &start));
	ASSERT_TRUE(fs_witness_alive(getpid(), start, ns));
	ASSERT_FALSE(fs_witness_alive(getpid(), start + 1, ns)); /* another process of that pid */
	ASSERT_FALSE(fs_witness_alive(getpid(), start, ns + 1)); /* in another namespace */
	ASSERT_FALSE(fs_witness_alive(0, start, ns));
	child = fork();
	ASSERT_TRUE(child >= 0);
	if (child == 0)
		_exit(0);
	ASSERT_EQ(waitpid(child, &status, 0), child);
	ASSERT_FALSE(fs_proc_start_of(child, &start)); /* gone */
}

/* A child in a mount namespace of its own, and a second process in it (its child, reparented
 * to us: we are a subreaper). *ns: the namespace; 0 when namespaces cannot be made here. */
static void two_in_a_namespace(pid_t *first, pid_t *second, uint64_t *ns)
{
	int p[2];
	pid_t pids[2] = { 0, 0 };

	*ns = 0;
	if (pipe(p) != 0)
		return;
	*first = fork();
	if (*first == 0) {
		close(p[0]);
		if (unshare(CLONE_NEWNS) != 0)
			_exit(2);
		pids[0] = getpid();
		pids[1] = fork();
		if (pids[1] == 0) {
			pause();
			_exit(0);
		}
		if (write(p[1], pids, sizeof(pids)) != (ssize_t)sizeof(pids))
			_exit(3);
		pause();
		_exit(0);
	}
	close(p[1]);
	if (*first > 0 && read(p[0], pids, sizeof(pids)) == (ssize_t)sizeof(pids)) {
		*second = pids[1];
		*ns = fs_mntns_of(*first);
	}
	close(p[0]);
}

static void end(pid_t pid)
{
	int status;

	kill(pid, SIGKILL);
	(void)waitpid(pid, &status, 0);
}

TEST(the_janitor_keeps_a_namespace_with_a_process_and_drops_one_without)
{
	struct auth_claims c = claims_of("tok-ns"), got;
	struct fs *fs;
	uint32_t project;
	uint64_t ns;
	pid_t first = 0, second = 0;
	int err;

	if (geteuid() != 0) {
		printf("# skipped: needs root for unshare(CLONE_NEWNS)\n");
		return;
	}
	ASSERT_OK(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0));
	two_in_a_namespace(&first, &second, &ns);
	if (ns == 0 || ns == fs_mntns_of(getpid())) {
		printf("# skipped: unshare(CLONE_NEWNS) refused here\n");
		if (first > 0)
			end(first);
		return;
	}
	fs = test_fs();
	ASSERT_OK(fs_project_index(fs, "p", &project));
	/* Pinned through first, its first witness. */
	ASSERT_OK(fs_binding_set(fs, 5301, ns, project, &c, first));
	for (int i = 0; i < 3; i++)
		fs_bindings_sweep(fs);
	ASSERT_TRUE(fs_binding_claims(fs, 5301, ns, project, &got, &err));
	/* The witness ends; the namespace lives on in second: the sweep finds it. */
	end(first);
	for (int i = 0; i < 3; i++)
		fs_bindings_sweep(fs);
	ASSERT_TRUE(fs_binding_claims(fs, 5301, ns, project, &got, &err));
	/* Its last process ends: gone after two sweeps, not one (a scan may miss a fork). */
	end(second);
	fs_bindings_sweep(fs);
	ASSERT_TRUE(fs_binding_claims(fs, 5301, ns, project, &got, &err));
	fs_bindings_sweep(fs);
	ASSERT_FALSE(fs_binding_claims(fs, 5301, ns, project, &got, &err));
	fs_free(fs);
}
