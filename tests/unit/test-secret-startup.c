/* test-secret-startup.c - the root key and the token secret are read only after the process is
 * hardened, so they live in the OpenSSL secure heap (docs/operations.md, Durability and security),
 * and the state directory that holds them is ours and closed to others. Each case runs in a child
 * process: the secure heap is per process and cannot be taken down again. */
#include "kms_test.h"
#include "kms_test_tmp.h"

#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "common/kms_secmem.h"
#include "fs/kms_fs.h"
#include "store/kms_store.h"

static char base_dir[4096];
static char state_dir[4200];

static void fresh_state(void)
{
	if (base_dir[0])
		(void)kms_test_rmrf(base_dir);
	kms_test_mkdtemp(base_dir, sizeof(base_dir));
	snprintf(state_dir, sizeof(state_dir), "%s/state", base_dir);
}

static void cleanup(void)
{
	if (base_dir[0])
		(void)kms_test_rmrf(base_dir);
}

/* Run fn in a child; its exit status is the number of failed checks (or 100+ on a crash). */
static int in_child(int (*fn)(void))
{
	int status = 0;
	pid_t pid = fork();

	if (pid == 0)
		_exit(fn());
	if (pid < 0 || waitpid(pid, &status, 0) != pid)
		return 200;
	return WIFEXITED(status) ? WEXITSTATUS(status)
				 : 100 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

/* What kmsfs and kmsctl did before: open the store, then harden. The check below sees it. */
static int open_then_harden(void)
{
	struct store_options o = { .state_dir = state_dir, .create = true };
	struct kms_harden_report hr;
	struct store *s = NULL;
	char why[512];
	int bad = 0;

	if (store_open(&o, &s, why, sizeof(why)) != 0)
		return 50;
	kms_harden_process(64 * 1024, false, &hr);
	bad += hr.secure_heap ? 0 : 1;
	bad += store_root_key_secure(s) ? 1 : 0; /* ordinary heap: not secure */
	store_close(s);
	return bad;
}

/* What kmsfs and kmsctl do now: store_open_hardened, then fs_new reads the token secret. */
static int harden_then_open(void)
{
	struct store_options o = { .state_dir = state_dir, .create = true };
	struct fs_options fo = { .audit_fd = -1 };
	struct kms_harden_report hr;
	struct store *s = NULL;
	struct fs *fs = NULL;
	char why[512];
	int bad = 0;

	if (store_open_hardened(&o, 64 * 1024, false, &hr, &s, why, sizeof(why)) != 0)
		return 50;
	bad += hr.secure_heap && hr.not_dumpable && hr.no_core ? 0 : 1;
	bad += CRYPTO_secure_malloc_initialized() ? 0 : 1;
	bad += store_root_key_secure(s) ? 0 : 1;
	fo.store = s;
	if (fs_new(&fo, &fs) != 0) {
		store_close(s);
		return 60;
	}
	bad += fs_token_secret_secure(fs) ? 0 : 1;
	fs_free(fs);
	store_close(s);
	return bad;
}

TEST(root_key_read_before_hardening_is_in_the_ordinary_heap)
{
	atexit(cleanup);
	fresh_state();
	ASSERT_EQ(in_child(open_then_harden), 0);
}

TEST(root_key_and_token_secret_are_in_the_secure_heap)
{
	fresh_state();
	ASSERT_EQ(in_child(harden_then_open), 0);
	fresh_state();
	ASSERT_EQ(mkdir(state_dir, 0700), 0); /* an existing state directory: the same */
	ASSERT_EQ(in_child(harden_then_open), 0);
}

TEST(wide_state_directory_is_tightened_to_0700)
{
	struct store_options o = { .create = true };
	struct store *s = NULL;
	struct stat st;
	char why[512];

	fresh_state();
	ASSERT_EQ(mkdir(state_dir, 0700), 0);
	ASSERT_EQ(chmod(state_dir, 0755), 0);
	o.state_dir = state_dir;
	ASSERT_OK(store_open(&o, &s, why, sizeof(why)));
	store_close(s);
	ASSERT_EQ(stat(state_dir, &st), 0);
	ASSERT_EQ(st.st_mode & 07777, 0700);
}

TEST(state_directory_of_another_user_is_refused)
{
	struct store_options o = { .create = true };
	struct store *s = NULL;
	char why[512];

	if (geteuid() != 0) {
		fprintf(stderr, "# skipped: chown to another user needs root\n");
		return;
	}
	fresh_state();
	ASSERT_EQ(mkdir(state_dir, 0700), 0);
	ASSERT_EQ(chown(state_dir, 65534, 65534), 0);
	o.state_dir = state_dir;
	ASSERT_FAIL(store_open(&o, &s, why, sizeof(why)));
	ASSERT_TRUE(s == NULL);
	ASSERT_TRUE(strstr(why, "belongs to uid 65534") != NULL);
}
