/* fuzz-main.c - replay driver for builds without libFuzzer (systemd's src/fuzz/fuzz-main.c idea).
 *
 * Usage: fuzz-x PATH...   Each PATH is a file or a directory; every regular file in a directory
 * (sorted by name, not recursive) is fed to LLVMFuzzerTestOneInput() once, in a heap block of
 * exactly its size so that ASan sees any over-read. A crash or abort() fails the run; so does an
 * argument that yields no input at all (a wrong corpus path must not pass silently).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

/* Larger inputs are refused: libFuzzer's own default -max_len is 4096. */
#define FUZZ_MAX_INPUT (16u * 1024u * 1024u)

static int run_file(int dirfd, const char *name, const char *shown)
{
	struct stat st;
	uint8_t *buf = NULL;
	size_t got = 0;
	int fd, r = -1;

	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "%s: %s\n", shown, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > FUZZ_MAX_INPUT) {
		fprintf(stderr, "%s: not a regular file of at most %u bytes\n", shown,
			FUZZ_MAX_INPUT);
		goto out;
	}
	/* malloc(0) may return NULL; libFuzzer never passes NULL, so neither do we. */
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!buf)
		goto out;
	while (got < (size_t)st.st_size) {
		ssize_t k = read(fd, buf + got, (size_t)st.st_size - got);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			fprintf(stderr, "%s: short read\n", shown);
			goto out;
		}
		got += (size_t)k;
	}
	printf("%s (%zu bytes)... ", shown, got);
	fflush(stdout);
	LLVMFuzzerTestOneInput(buf, got);
	printf("ok\n");
	r = 0;
out:
	free(buf);
	close(fd);
	return r;
}

static int not_hidden(const struct dirent *d)
{
	return d->d_name[0] != '.';
}

/* Returns the number of inputs run, or -1. */
static long run_path(const char *path)
{
	struct dirent **names = NULL;
	struct stat st;
	long count = 0;
	int n, dirfd;

	if (stat(path, &st) < 0) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode))
		return run_file(AT_FDCWD, path, path) < 0 ? -1 : 1;
	dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		return -1;
	}
	n = scandir(path, &names, not_hidden, alphasort);
	if (n < 0) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		close(dirfd);
		return -1;
	}
	for (int i = 0; i < n; i++) {
		char shown[4096];

		snprintf(shown, sizeof(shown), "%s/%s", path, names[i]->d_name);
		if (count >= 0 && run_file(dirfd, names[i]->d_name, shown) < 0)
			count = -1;
		else if (count >= 0)
			count++;
		free(names[i]);
	}
	free(names);
	close(dirfd);
	return count;
}

int main(int argc, char **argv)
{
	long total = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: %s FILE-OR-CORPUS-DIR...\n", argv[0]);
		return 2;
	}
	for (int i = 1; i < argc; i++) {
		long k = run_path(argv[i]);

		if (k <= 0) {
			if (k == 0)
				fprintf(stderr, "%s: no inputs\n", argv[i]);
			return 1;
		}
		total += k;
	}
	printf("%ld inputs ok\n", total);
	return 0;
}
