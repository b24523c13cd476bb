/* bench-core - the in-process cost of kmsfs's request core, on one thread, against raw OpenSSL.
 *
 *   bench-core [-d SECONDS] [-s STATE_DIR] [-o create|decrypt|openssl]
 *       Creates a key in a fresh temporary state (or STATE_DIR, which must not exist), then
 *       times, each for SECONDS (default 1):
 *       create: api_call(create-datakey-without-plaintext, {"key_id":ID}) as a trusted caller
 *               through the key folder (path_key_id = ID), JSON in, JSON out;
 *       decrypt: api_call(decrypt-datakey, {"key_id","cipher_text","datakey_cipher_length":"64"});
 *       openssl: RAND_bytes(64) + AES-256-GCM of those 64 bytes (12-byte counter IV, the key id
 *               as AAD, 16-byte tag) with one EVP_CIPHER_CTX keyed once and reused.
 *       Prints: create_ops_s= decrypt_ops_s= openssl_ops_s= core_ops_s= core_ratio=
 *       decrypt_ratio=   (core_ops_s = create_ops_s; core_ratio = core_ops_s / openssl_ops_s).
 *       -o times only that one (for profiling: perf record -g bench-core -o create -d 5).
 *   bench-core --mkkeys STATE_DIR PROJECT N
 *       Creates N keys in PROJECT of STATE_DIR (the mount-time figure of bench/run), quota N+100.
 *
 * Like the daemon, it initialises the OpenSSL secure heap (4 MiB) before any key is loaded.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "api/kms_api.h"
#include "common/kms_limits.h"
#include "common/kms_secmem.h"
#include "store/kms_store.h"

#define CORE_PROJECT "p"

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static struct store *open_state(const char *dir)
{
	struct store_options o = { .state_dir = dir, .create = true };
	struct store *s = NULL;
	char why[512];

	if (store_open(&o, &s, why, sizeof(why)) < 0) {
		fprintf(stderr, "bench-core: %s\n", why);
		return NULL;
	}
	return s;
}

/* Copy the JSON string value of "name" out of a compact response. */
static int json_field(const char *resp, const char *name, char *out, size_t cap)
{
	char pat[64];
	const char *p, *e;

	snprintf(pat, sizeof(pat), "\"%s\":\"", name);
	p = strstr(resp, pat);
	if (!p)
		return -1;
	p += strlen(pat);
	e = strchr(p, '"');
	if (!e || (size_t)(e - p) >= cap)
		return -1;
	memcpy(out, p, (size_t)(e - p));
	out[e - p] = 0;
	return 0;
}

/* The action named so for this caller: key scope once caller->path_key_id is set. */
static const struct api_action *action_of(const struct api_caller *caller, const char *name)
{
	return api_action_find(name, caller->path_key_id ? API_SCOPE_KEY : API_SCOPE_PROJECT);
}

/* One api_call(); a failure prints the error response. */
static int call_action(const struct api_service *svc, const struct api_caller *caller,
		       const struct api_action *a, const char *name, const char *req, size_t len,
		       struct kms_buf *resp)
{
	int r;

	kms_buf_reset(resp);
	r = api_call(svc, caller, a, (const uint8_t *)req, len, resp);
	if (r < 0)
		fprintf(stderr, "bench-core: %s failed: %.*s", name, (int)resp->len,
			resp->data ? (const char *)resp->data : "");
	return r;
}

static int call(const struct api_service *svc, const struct api_caller *caller, const char *name,
		const char *req, struct kms_buf *resp)
{
	return call_action(svc, caller, action_of(caller, name), name, req, strlen(req), resp);
}

/* ops/s of api_call(action, req) for about secs seconds. */
static double time_api(const struct api_service *svc, const struct api_caller *caller,
		       const char *name, const char *req, double secs, struct kms_buf *resp)
{
	const struct api_action *a = action_of(caller, name);
	size_t len = strlen(req);
	double t0 = now_s(), t;
	long ops = 0;

	do {
		for (int i = 0; i < 256; i++)
			if (call_action(svc, caller, a, name, req, len, resp) < 0)
				return -1;
		ops += 256;
		t = now_s() - t0;
	} while (t < secs);
	return (double)ops / t;
}

/* The raw baseline: what one create-datakey-without-plaintext must at least do. */
static double time_openssl(double secs)
{
	unsigned char key[32], dek[64], iv[12] = { 0 }, out[64 + 16], tag[16];
	static const unsigned char aad[36] = "00000000-0000-0000-0000-000000000000";
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	uint64_t counter = 0;
	double t0, t;
	long ops = 0;
	int n;

	if (!ctx || RAND_bytes(key, sizeof(key)) != 1 ||
	    EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, NULL) != 1)
		goto fail;
	t0 = now_s();
	do {
		for (int i = 0; i < 256; i++) {
			counter++;
			memcpy(iv + 4, &counter, sizeof(counter));
			if (RAND_bytes(dek, sizeof(dek)) != 1 ||
			    EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, iv) != 1 ||
			    EVP_EncryptUpdate(ctx, NULL, &n, aad, sizeof(aad)) != 1 ||
			    EVP_EncryptUpdate(ctx, out, &n, dek, sizeof(dek)) != 1 ||
			    EVP_EncryptFinal_ex(ctx, out + n, &n) != 1 ||
			    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, sizeof(tag), tag) != 1)
				goto fail;
		}
		ops += 256;
		t = now_s() - t0;
	} while (t < secs);
	EVP_CIPHER_CTX_free(ctx);
	return (double)ops / t;
fail:
	EVP_CIPHER_CTX_free(ctx);
	return -1;
}

static int mkkeys(const char *dir, const char *project, long n)
{
	struct store *s = open_state(dir);
	double t0 = now_s();
	char alias[32];

	if (!s)
		return 1;
	for (long i = 0; i < n; i++) {
		struct store_key *k = NULL;
		int r;

		snprintf(alias, sizeof(alias), "bench-%ld", i);
		r = store_key_create(s, project, alias, "", (unsigned)n + 100, &k);
		if (r < 0) {
			fprintf(stderr, "bench-core: key %ld: error %d\n", i, r);
			store_close(s);
			return 1;
		}
		store_key_release(k);
	}
	store_close(s);
	printf("keys=%ld secs=%.3f\n", n, now_s() - t0);
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: bench-core [-d SECONDS] [-s NEW_STATE_DIR] "
			"[-o create|decrypt|openssl]\n"
			"       bench-core --mkkeys STATE_DIR PROJECT N\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct kms_buf resp = KMS_BUF_INIT(KMS_MAX_RESPONSE, true);
	struct api_service svc = { .key_quota = KMS_DEFAULT_KEY_QUOTA };
	struct api_caller caller = { .project = CORE_PROJECT, .trusted = true };
	char tmp[] = "/tmp/bench-core.XXXXXX", dir[4096];
	char key_id[KMS_KEY_ID_LEN + 1], cipher[1024], req_create[128], req_decrypt[1400];
	const char *state = NULL, *only = NULL;
	double secs = 1.0, create, decrypt, openssl;
	struct kms_harden_report hr;
	int c, ret = 1;

	kms_harden_process(4096u * 1024u, false, &hr);
	if (api_init() < 0) {
		fprintf(stderr, "bench-core: api_init failed\n");
		return 1;
	}
	if (argc == 5 && strcmp(argv[1], "--mkkeys") == 0)
		return mkkeys(argv[2], argv[3], atol(argv[4]));
	while ((c = getopt(argc, argv, "d:s:o:")) != -1) {
		switch (c) {
		case 'd':
			secs = atof(optarg);
			break;
		case 's':
			state = optarg;
			break;
		case 'o':
			only = optarg;
			if (strcmp(only, "create") != 0 && strcmp(only, "decrypt") != 0 &&
			    strcmp(only, "openssl") != 0)
				usage();
			break;
		default:
			usage();
		}
	}
	if (!state) {
		if (!mkdtemp(tmp)) {
			perror("bench-core: mkdtemp");
			return 1;
		}
		snprintf(dir, sizeof(dir), "%s/state", tmp);
	} else {
		snprintf(dir, sizeof(dir), "%s", state);
	}
	if (!(svc.store = open_state(dir)))
		goto out;
	if (store_project_ensure(svc.store, CORE_PROJECT) < 0)
		goto out;
	/* A key, through the handler (as kmsctl call p create-key does). */
	if (call(&svc, &caller, "create-key", "{\"key_alias\":\"bench\"}", &resp) < 0 ||
	    json_field((const char *)resp.data, "key_id", key_id, sizeof(key_id)) < 0)
		goto out;
	caller.path_key_id = key_id;
	snprintf(req_create, sizeof(req_create), "{\"key_id\":\"%s\"}", key_id);
	if (call(&svc, &caller, "create-datakey-without-plaintext", req_create, &resp) < 0 ||
	    json_field((const char *)resp.data, "cipher_text", cipher, sizeof(cipher)) < 0)
		goto out;
	snprintf(req_decrypt, sizeof(req_decrypt),
		 "{\"key_id\":\"%s\",\"cipher_text\":\"%s\",\"datakey_cipher_length\":\"64\"}",
		 key_id, cipher);
	if (call(&svc, &caller, "decrypt-datakey", req_decrypt, &resp) < 0)
		goto out;

	/* Warm up (first-use allocations, DRBG seeding), then measure. */
	if (time_api(&svc, &caller, "create-datakey-without-plaintext", req_create, secs / 10,
		     &resp) < 0)
		goto out;
	if (only) {
		double v = strcmp(only, "create") == 0
				   ? time_api(&svc, &caller, "create-datakey-without-plaintext",
					      req_create, secs, &resp)
			   : strcmp(only, "decrypt") == 0
				   ? time_api(&svc, &caller, "decrypt-datakey", req_decrypt, secs,
					      &resp)
				   : time_openssl(secs);

		printf("%s_ops_s=%.0f\n", only, v);
		ret = v > 0 ? 0 : 1;
		goto out;
	}
	create = time_api(&svc, &caller, "create-datakey-without-plaintext", req_create, secs,
			  &resp);
	decrypt = time_api(&svc, &caller, "decrypt-datakey", req_decrypt, secs, &resp);
	openssl = time_openssl(secs);
	if (create <= 0 || decrypt <= 0 || openssl <= 0)
		goto out;
	printf("create_ops_s=%.0f decrypt_ops_s=%.0f openssl_ops_s=%.0f core_ops_s=%.0f "
	       "core_ratio=%.3f decrypt_ratio=%.3f\n",
	       create, decrypt, openssl, create, create / openssl, decrypt / openssl);
	ret = 0;
out:
	kms_buf_free(&resp);
	store_close(svc.store);
	if (!state)
		nftw(tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return ret;
}
