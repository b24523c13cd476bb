/* The root key in a file: 32 random bytes, mode 0600, read into the secure heap. Also the state
 * directory's other 32-byte secret files (store_secret_file_read/create), which share the format
 * and the care: O_EXCL creation, fsync of file and directory before use, no symlinks. */
#include "store_internal.h"
#include "store_root_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/kms_err.h"
#include "common/kms_secmem.h"

struct store_root_file {
	struct store_root base;
	uint8_t *key; /* CORE_KEY_BYTES, secure heap */
	char path[4096];
	char dir[4096]; /* where the directory entry is made durable */
};

/* The directory holding path (for the fsync making its entry durable). */
static void store_file_dir(const char *path, char *dir, size_t cap)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		snprintf(dir, cap, ".");
	else if (slash == path)
		snprintf(dir, cap, "/");
	else
		snprintf(dir, cap, "%.*s", (int)(slash - path), path);
}

static int store_fsync_dir(const char *dir)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), r = 0;

	if (dfd < 0)
		return KMS_E_IO;
	if (fsync(dfd) != 0)
		r = KMS_E_IO;
	close(dfd);
	return r;
}

/* Write a new secret file: O_EXCL so two starters can never both create one, fsync file and dir. */
int store_secret_file_create(const char *dir, const char *path, uint8_t out[32])
{
	int fd, r;

	if ((r = core_random_secret(out, 32)) < 0)
		return r;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return errno == ENOSPC ? KMS_E_NOSPACE : KMS_E_IO;
	if (write(fd, out, 32) != 32 || fsync(fd) != 0) {
		r = errno == ENOSPC ? KMS_E_NOSPACE : KMS_E_IO;
		close(fd);
		unlink(path);
		return r;
	}
	close(fd);
	/* The name must be durable before any key is sealed under this secret. */
	if (store_fsync_dir(dir) < 0) {
		unlink(path);
		return KMS_E_IO;
	}
	return 0;
}

int store_secret_file_read(const char *path, uint8_t out[32], char *why, size_t why_len)
{
	struct stat st;
	uint8_t extra;
	ssize_t n;
	int fd, r = KMS_E_IO;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		if (errno == ENOENT)
			return KMS_E_KEY_NOT_FOUND;
		snprintf(why, why_len, "cannot read '%.300s': %s", path, strerror(errno));
		return KMS_E_IO;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		snprintf(why, why_len, "'%.300s' is not a regular file", path);
		goto out;
	}
	if (st.st_mode & 0077) {
		snprintf(why, why_len,
			 "'%.300s' is accessible to other users (mode %04o); run 'chmod 600 %s'",
			 path, (unsigned)(st.st_mode & 07777), path);
		goto out;
	}
	n = read(fd, out, 32);
	if (n != 32 || read(fd, &extra, 1) != 0) {
		snprintf(why, why_len,
			 "'%.300s' must hold exactly 32 bytes; it is damaged or not a "
			 "kmsfs key file",
			 path);
		kms_wipe(out, 32);
		goto out;
	}
	r = 0;
out:
	close(fd);
	return r;
}

static struct store_root_file *store_root_file_of(struct store_root *r)
{
	return (struct store_root_file *)r;
}

static int store_root_file_seal(struct store_root *r, const void *aad, size_t aad_len,
				const uint8_t *in, size_t n, uint8_t *out, size_t cap,
				size_t *out_len)
{
	return core_seal(store_root_file_of(r)->key, aad, aad_len, in, n, out, cap, out_len);
}

static int store_root_file_unseal(struct store_root *r, const void *aad, size_t aad_len,
				  const uint8_t *in, size_t n, uint8_t *out, size_t cap,
				  size_t *out_len)
{
	return core_unseal(store_root_file_of(r)->key, aad, aad_len, in, n, out, cap, out_len) < 0
		       ? KMS_E_DECRYPT_FAILED
		       : 0;
}

/* HMAC-SHA-256(root, label), as kmsfs has always derived. */
static int store_root_file_derive(struct store_root *r, const char *label,
				  uint8_t out[CORE_KEY_BYTES])
{
	return core_hmac_sha256(store_root_file_of(r)->key, CORE_KEY_BYTES, label, strlen(label),
				out);
}

static bool store_root_file_secure(const struct store_root *r)
{
	return kms_secret_is_secure(((const struct store_root_file *)r)->key);
}

static void store_root_file_close(struct store_root *r)
{
	struct store_root_file *f = store_root_file_of(r);

	kms_secret_free(f->key, CORE_KEY_BYTES);
	free(f);
}

/* Zeros over the first n bytes of fd. */
static int store_file_zero(int fd, off_t n)
{
	static const uint8_t zero[4096];

	for (off_t at = 0; at < n;) {
		size_t len = n - at < (off_t)sizeof(zero) ? (size_t)(n - at) : sizeof(zero);
		ssize_t w = pwrite(fd, zero, len, at);

		if (w <= 0)
			return KMS_E_IO;
		at += w;
	}
	return 0;
}

/* Overwrite, fsync, unlink, fsync the directory: the bytes do not stay on a disk that does not
 * relocate writes (on others, destroying the device or its encryption key is what counts). */
int store_secret_file_destroy(const char *path, const char *dir, const char *what, char *why,
			      size_t why_len)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW), e = 0;
	struct stat st;

	if (fd < 0 && errno == ENOENT)
		return 0;
	if (fd < 0 || fstat(fd, &st) != 0 || store_file_zero(fd, st.st_size) < 0 ||
	    fsync(fd) != 0 || unlink(path) != 0) {
		snprintf(why, why_len, "cannot destroy %s '%.300s': %s", what, path,
			 strerror(errno));
		e = KMS_E_IO;
	}
	if (fd >= 0)
		close(fd);
	if (e == 0 && store_fsync_dir(dir) < 0) {
		snprintf(why, why_len, "cannot sync directory '%.300s': %s", dir, strerror(errno));
		e = KMS_E_IO;
	}
	return e;
}

static int store_root_file_destroy(struct store_root *r, char *why, size_t why_len)
{
	struct store_root_file *f = store_root_file_of(r);

	return store_secret_file_destroy(f->path, f->dir, "root key", why, why_len);
}

static const struct store_root_ops store_root_file_ops = {
	.seal = store_root_file_seal,
	.unseal = store_root_file_unseal,
	.derive = store_root_file_derive,
	.destroy = store_root_file_destroy,
	.close = store_root_file_close,
	.secure = store_root_file_secure,
	.opaque_derived = true,
};

/* The file at p->location, or <state_dir>/root.key. */
int store_root_file_open(const struct store_root_params *p, struct store_root **out, bool *created,
			 char *why, size_t why_len)
{
	struct store_root_file *f = calloc(1, sizeof(*f));
	int r = f ? 0 : KMS_E_NOMEM;

	*created = false;
	if (r == 0 && !(f->key = kms_secret_alloc(CORE_KEY_BYTES)))
		r = KMS_E_NOMEM;
	if (r < 0)
		goto out;
	f->base.ops = &store_root_file_ops;
	if (p->location && *p->location)
		r = (size_t)snprintf(f->path, sizeof(f->path), "%s", p->location) < sizeof(f->path)
			    ? 0
			    : KMS_E_IO;
	else
		r = (size_t)snprintf(f->path, sizeof(f->path), "%s/root.key",
				     p->state_dir ? p->state_dir : ".") < sizeof(f->path)
			    ? 0
			    : KMS_E_IO;
	if (r < 0) {
		snprintf(why, why_len, "root key path too long");
		goto out;
	}
	snprintf(f->base.shown, sizeof(f->base.shown), "%.1000s", f->path);
	store_file_dir(f->path, f->dir, sizeof(f->dir));
	r = store_secret_file_read(f->path, f->key, why, why_len);
	if (r == KMS_E_KEY_NOT_FOUND && p->create) {
		/* The directory entry goes where the file is (the state directory by default). */
		r = store_secret_file_create(f->dir, f->path, f->key);
		if (r == 0) {
			*created = true;
		} else if (errno == EEXIST) { /* another starter was first: use its key */
			r = store_secret_file_read(f->path, f->key, why, why_len);
		} else {
			snprintf(why, why_len, "cannot create root key '%.300s': %s", f->path,
				 strerror(errno));
		}
	}
out:
	if (r == 0) {
		*out = &f->base;
	} else if (f) {
		kms_secret_free(f->key, CORE_KEY_BYTES);
		free(f);
	}
	return r;
}
