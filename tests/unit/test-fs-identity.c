/* test-fs-identity.c - what kmsfs reads of a caller's workload (src/fs/fs_identity.c): the mount
 * namespace is the nsfs inode a stat of /proc/PID/ns/mnt gives, in a child that made a new one
 * too (when allowed: root), and 0 for a pid that is not there; the cgroup is the "0::" line of
 * /proc/PID/cgroup (NULL without one). */
#define _GNU_SOURCE
#include "kms_test.h"

#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fs/fs_internal.h"

static uint64_t ns_ino(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (uint64_t)st.st_ino : 0;
}

TEST(mntns_is_the_nsfs_inode)
{
	ASSERT_TRUE(ns_ino("/proc/self/ns/mnt") != 0);
	ASSERT_EQ(fs_mntns_of(getpid()), ns_ino("/proc/self/ns/mnt"));
	ASSERT_EQ(fs_mntns_of(0), 0);
	ASSERT_EQ(fs_mntns_of(-1), 0);
	ASSERT_EQ(fs_mntns_of(0x7ffffff0), 0); /* above any pid_max: no such process */
}

TEST(mntns_of_a_new_namespace)
{
	int sync[2], status;
	char c = 0;
	pid_t child;

	if (geteuid() != 0) {
		printf("# skipped: needs root for unshare(CLONE_NEWNS)\n");
		return;
	}
	ASSERT_OK(pipe(sync));
	child = fork();
	ASSERT_TRUE(child >= 0);
	if (child == 0) {
		/* In a namespace of its own until the parent has looked (and kills it). */
		close(sync[0]);
		if (unshare(CLONE_NEWNS) != 0 || write(sync[1], "x", 1) != 1)
			_exit(2);
		sleep(30);
		_exit(0);
	}
	close(sync[1]);
	if (read(sync[0], &c, 1) != 1) {
		printf("# skipped: unshare(CLONE_NEWNS) refused here\n");
		waitpid(child, &status, 0);
		close(sync[0]);
		return;
	}
	{
		char path[64];

		snprintf(path, sizeof(path), "/proc/%d/ns/mnt", (int)child);
		ASSERT_TRUE(fs_mntns_of(child) != 0);
		ASSERT_EQ(fs_mntns_of(child), ns_ino(path));
		ASSERT_NE(fs_mntns_of(child), fs_mntns_of(getpid()));
	}
	kill(child, SIGKILL);
	ASSERT_EQ(waitpid(child, &status, 0), child);
	close(sync[0]);
}

TEST(cgroup_is_the_v2_line)
{
	char line[4096], *want = NULL, *got;
	FILE *f = fopen("/proc/self/cgroup", "r");

	ASSERT_TRUE(f != NULL);
	while (f && fgets(line, sizeof(line), f)) {
		if (strncmp(line, "0::", 3) == 0) {
			line[strcspn(line, "\n")] = 0;
			free(want);
			want = strdup(line + 3);
		}
	}
	if (f)
		fclose(f);
	got = fs_cgroup_of(getpid());
	if (want)
		ASSERT_STREQ(got, want);
	else
		ASSERT_TRUE(got == NULL);
	free(got);
	free(want);
	ASSERT_TRUE(fs_cgroup_of(0) == NULL);
	ASSERT_TRUE(fs_cgroup_of(0x7ffffff0) == NULL);
}
