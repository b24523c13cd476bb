/* keepopen.c - many requests on kept-open kmsfs handles: one handle per action file per thread.
 *
 *   cc -O2 -pthread -o keepopen keepopen.c && ./keepopen
 *
 * Makes a key, then each of THREADS threads opens its key folder's create-datakey and
 * decrypt-datakey once (O_RDWR) and runs ROUNDS data-key round trips on those two handles: write
 * the request, read the answer, again. Half-way every thread sends a deliberate bad request
 * (malformed JSON), handles the error that its answer carries, and goes on on the same handle.
 *
 * Environment: KMS_MOUNT (default /kms), KMS_PROJECT (default demo), and either a token already
 * bound (setfattr) or KMS_TOKEN, which this program binds with setxattr. No library needed: the
 * few fields it reads are found with strstr (answers are compact JSON, one line). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define THREADS	   4
#define ROUNDS	   100
#define ANSWER_MAX 65536 /* these actions answer well under 1 KiB; list-keys may need 4 MiB */

static char dir[4096];

/* One kept-open handle and the answer of its last request. Not for sharing between threads: a
 * handle holds one request and one answer at a time. */
struct kms_handle {
	int fd;
	size_t len;
	char answer[ANSWER_MAX + 1];
};

static int kms_open(struct kms_handle *h, const char *path)
{
	h->len = 0;
	h->fd = open(path, O_RDWR | O_CLOEXEC);
	return h->fd < 0 ? -errno : 0;
}

/* Wipe the last answer (it may hold a plaintext key) and close. close() is not where a kept handle
 * learns of errors: each request's error was in its answer. */
static void kms_close(struct kms_handle *h)
{
	explicit_bzero(h->answer, sizeof(h->answer));
	if (h->fd >= 0)
		close(h->fd);
	h->fd = -1;
}

/* One request on the handle: write it, read its answer into h->answer (NUL-terminated). Returns 0
 * when an answer was read, success or the API's error JSON (see kms_error_code); -errno when none
 * could be. *write_err is the errno of a refused write (EFBIG: over 64 KiB), else 0: such a request
 * is answered all the same, and its answer must be read before the next request. */
static int kms_request(struct kms_handle *h, const char *req, int *write_err)
{
	size_t n = strlen(req), done = 0;
	ssize_t r;

	*write_err = 0;
	while (done < n) {
		r = write(h->fd, req + done, n - done); /* the file offset does not matter */
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			*write_err = errno;
			break;
		}
		done += (size_t)r;
	}
	explicit_bzero(h->answer, h->len);
	h->len = 0;
	/* The answer starts at the first read after the request: pread from 0. It is one line: stop
	 * at its '\n' (no read for the end of file needed). A short read is not an error. */
	while (h->len < ANSWER_MAX) {
		r = pread(h->fd, h->answer + h->len, ANSWER_MAX - h->len, (off_t)h->len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			break;
		h->len += (size_t)r;
		if (h->answer[h->len - 1] == '\n')
			break;
	}
	h->answer[h->len] = '\0';
	if (h->len == 0 || h->answer[h->len - 1] != '\n')
		return -EMSGSIZE; /* no answer, or one larger than ANSWER_MAX */
	return 0;
}

/* The string value of "name" in a compact one-line JSON answer, into out; false if absent. */
static int json_str(const char *json, const char *name, char *out, size_t cap)
{
	char pat[64];
	const char *p, *end;

	snprintf(pat, sizeof(pat), "\"%s\":\"", name);
	p = strstr(json, pat);
	if (!p)
		return 0;
	p += strlen(pat);
	end = strchr(p, '"');
	if (!end || (size_t)(end - p) >= cap)
		return 0;
	memcpy(out, p, (size_t)(end - p));
	out[end - p] = '\0';
	return 1;
}

/* The API error code of an answer ("KMS.0202"), or NULL when the request succeeded. */
static const char *kms_error_code(const char *answer, char *code, size_t cap)
{
	if (strncmp(answer, "{\"error\":", 9) != 0)
		return NULL;
	return json_str(answer, "error_code", code, cap) ? code : "unknown";
}

struct worker {
	pthread_t th;
	const char *key_id;
	int id, requests, handled, failed;
};

/* One create-datakey + decrypt-datakey round trip on the two kept handles; 0 on any failure. */
static int round_trip(struct worker *w, struct kms_handle *create, struct kms_handle *decrypt)
{
	char req[1024], plain[256], cipher[512], code[16];
	struct kms_handle *last = create;
	int werr, ok = 0;

	snprintf(req, sizeof(req),
		 "{\"datakey_length\":\"256\",\"encryption_context\":{\"worker\":\"%d\"}}", w->id);
	if (kms_request(create, req, &werr) < 0 ||
	    kms_error_code(create->answer, code, sizeof(code)) ||
	    !json_str(create->answer, "plain_text", plain, sizeof(plain)) ||
	    !json_str(create->answer, "cipher_text", cipher, sizeof(cipher)))
		goto out;
	snprintf(req, sizeof(req),
		 "{\"cipher_text\":\"%s\",\"datakey_cipher_length\":\"32\","
		 "\"encryption_context\":{\"worker\":\"%d\"}}",
		 cipher, w->id);
	last = decrypt;
	if (kms_request(decrypt, req, &werr) < 0 ||
	    kms_error_code(decrypt->answer, code, sizeof(code)))
		goto out;
	/* data_key must be the DEK that create-datakey gave */
	ok = strlen(plain) == 64 && strstr(decrypt->answer, plain) != NULL;
	w->requests += 2;
out:
	if (!ok)
		fprintf(stderr, "worker %d: %s\n", w->id, last->len ? last->answer : "no answer");
	explicit_bzero(plain, sizeof(plain));
	return ok;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct kms_handle *create = calloc(1, sizeof(*create)),
			  *decrypt = calloc(1, sizeof(*decrypt));
	char path[4200], code[16];
	int werr;

	w->failed = 1;
	if (!create || !decrypt)
		goto out;
	create->fd = decrypt->fd = -1;
	snprintf(path, sizeof(path), "%s/keys/%s/create-datakey", dir, w->key_id);
	if (kms_open(create, path) < 0) {
		perror(path);
		goto out;
	}
	snprintf(path, sizeof(path), "%s/keys/%s/decrypt-datakey", dir, w->key_id);
	if (kms_open(decrypt, path) < 0) {
		perror(path);
		goto out;
	}
	for (int i = 0; i < ROUNDS; i++) {
		if (i == ROUNDS / 2) {
			/* A deliberate bad request: its answer is the error; the handle goes on. */
			if (kms_request(create, "{\"datakey_length\":", &werr) < 0 ||
			    !kms_error_code(create->answer, code, sizeof(code)) ||
			    strcmp(code, "KMS.0202") != 0) {
				fprintf(stderr, "worker %d: bad JSON answered %s", w->id,
					create->answer);
				goto out;
			}
			w->handled++;
		}
		if (!round_trip(w, create, decrypt))
			goto out;
	}
	w->failed = 0;
out:
	if (create)
		kms_close(create);
	if (decrypt)
		kms_close(decrypt);
	free(create);
	free(decrypt);
	return NULL;
}

int main(void)
{
	const char *mnt = getenv("KMS_MOUNT"), *project = getenv("KMS_PROJECT");
	const char *token = getenv("KMS_TOKEN");
	static struct kms_handle h;
	struct worker w[THREADS];
	char path[4200], req[256], key_id[64], code[16];
	int werr, requests = 0, handled = 0, failed = 0;

	snprintf(dir, sizeof(dir), "%s/%s", mnt ? mnt : "/kms", project ? project : "demo");
	if (token && setxattr(dir, "user.kms.token", token, strlen(token), 0) != 0) {
		perror("setxattr user.kms.token");
		return 1;
	}
	/* A key of our own, made on a kept handle too. */
	snprintf(path, sizeof(path), "%s/create-key", dir);
	snprintf(req, sizeof(req), "{\"key_alias\":\"keepopen-c-%ld-%ld\"}", (long)getpid(),
		 (long)time(NULL));
	if (kms_open(&h, path) < 0 || kms_request(&h, req, &werr) < 0) {
		perror(path);
		return 1;
	}
	if (kms_error_code(h.answer, code, sizeof(code)) ||
	    !json_str(h.answer, "key_id", key_id, sizeof(key_id))) {
		fprintf(stderr, "create-key: %s", h.answer);
		return 1;
	}
	kms_close(&h);
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){ .id = i, .key_id = key_id };
		if (pthread_create(&w[i].th, NULL, worker_main, &w[i]) != 0) {
			fprintf(stderr, "pthread_create failed\n");
			return 1;
		}
	}
	for (int i = 0; i < THREADS; i++) {
		pthread_join(w[i].th, NULL);
		requests += w[i].requests;
		handled += w[i].handled;
		failed += w[i].failed;
	}
	if (failed)
		return 1;
	printf("key %s: %d requests on %d kept-open handles (%d threads), %d bad requests answered "
	       "with their error\n",
	       key_id, requests, 2 * THREADS, THREADS, handled);
	return 0;
}
