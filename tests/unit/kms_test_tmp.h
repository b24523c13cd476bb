/* kms_test_tmp.h - temporary directories for unit tests that need a state directory.
 *
 *   char dir[4096];
 *
 *   kms_test_mkdtemp(dir, sizeof(dir));    a fresh 0700 directory under $TMPDIR (or /tmp)
 *   ...
 *   kms_test_rmrf(dir);                    removes it and everything below it
 *
 * kms_test_mkdtemp() aborts when no directory can be made: then no test can run at all.
 */
#pragma once

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static inline void kms_test_mkdtemp(char *out, size_t cap)
{
	const char *base = getenv("TMPDIR");

	if (!base || !*base)
		base = "/tmp";
	if ((size_t)snprintf(out, cap, "%s/kmsfs-unit-XXXXXX", base) >= cap || !mkdtemp(out)) {
		perror("kms_test_mkdtemp");
		abort();
	}
}

/* 0 when path and everything below it are gone (no symlinks are followed). */
static inline int kms_test_rmrf(const char *path)
{
	struct dirent *d;
	struct stat st;
	DIR *dir;
	int r = 0;

	if (lstat(path, &st) != 0)
		return -1;
	if (!S_ISDIR(st.st_mode))
		return unlink(path);
	(void)chmod(path, 0700); /* undo a test's chmod, so that removal cannot fail on it */
	dir = opendir(path);
	if (!dir)
		return -1;
	while ((d = readdir(dir))) {
		char sub[4096];

		if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0)
			continue;
		if ((size_t)snprintf(sub, sizeof(sub), "%s/%s", path, d->d_name) >= sizeof(sub) ||
		    kms_test_rmrf(sub) != 0)
			r = -1;
	}
	closedir(dir);
	return rmdir(path) == 0 ? r : -1;
}
