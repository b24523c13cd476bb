/* test-fs-uring.c - the CPU lists of sysfs as src/fs/fs_uring.c reads them: the possible CPUs
 * give the kernel's number of queues, the online ones which queues get all their threads. */
#include "kms_test.h"

#include <string.h>

#define FUSE_USE_VERSION 314
#include "fs/fs_uring.h"

static unsigned list(const char *text, unsigned char *set, unsigned cap)
{
	memset(set, 0, cap);
	return fs_uring_cpu_list(text, set, cap);
}

TEST(ranges_and_single_cpus)
{
	unsigned char set[16];

	ASSERT_EQ(list("0\n", set, 16), 1);
	ASSERT_EQ(set[0], 1);
	ASSERT_EQ(set[1], 0);
	ASSERT_EQ(list("0-1\n", set, 16), 2);
	ASSERT_EQ(set[0] + set[1] + set[2], 2);
	ASSERT_EQ(list("0-3,5\n", set, 16), 6);
	ASSERT_EQ(set[3], 1);
	ASSERT_EQ(set[4], 0);
	ASSERT_EQ(set[5], 1);
	ASSERT_EQ(list("0,2,4-5,7", set, 16), 8);
	ASSERT_EQ(set[1] + set[3] + set[6], 0);
	ASSERT_EQ(set[0] + set[2] + set[4] + set[5] + set[7], 5);
	/* A VM that may hot-add CPUs: 2 online of 128 possible. */
	ASSERT_EQ(fs_uring_cpu_list("0-127\n", NULL, 0), 128);
	ASSERT_EQ(list("0-1\n", set, 16), 2);
}

TEST(cpus_beyond_cap_are_counted_not_marked)
{
	unsigned char set[4];

	ASSERT_EQ(list("2-9\n", set, 4), 10);
	ASSERT_EQ(set[0] + set[1], 0);
	ASSERT_EQ(set[2] + set[3], 2);
}

TEST(malformed_lists_name_no_cpu)
{
	unsigned char set[8];

	ASSERT_EQ(list("", set, 8), 0);
	ASSERT_EQ(list("\n", set, 8), 0);
	ASSERT_EQ(list("x", set, 8), 0);
	ASSERT_EQ(list("0-", set, 8), 0);
	ASSERT_EQ(list("3-1", set, 8), 0);
	ASSERT_EQ(list("0-1x", set, 8), 0);
	ASSERT_EQ(list("-1", set, 8), 0);
	ASSERT_EQ(list("0 1", set, 8), 0);
	ASSERT_EQ(list("65536", set, 8), 0);
	ASSERT_EQ(list("0-99999999999999999999", set, 8), 0);
	ASSERT_EQ(list("65535", set, 8), 65536);
}
