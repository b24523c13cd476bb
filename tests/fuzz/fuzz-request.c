/* fuzz-request.c - the whole API layer (api/api_call.c and every handler) on one request.
 *
 * Input: byte 0 picks the action (api_action_at(byte % api_action_count())); byte 1 picks where
 * and who: bits 0-1 the scope (0: project; 1, 2: the folder of key 0 or 1; 3: the folder of a
 * key of another project), bits 2-4 the caller (trusted, no token, viewer, crypto, admin,
 * expired admin, admin of another project, trusted); the rest is the request body. An action
 * that does not exist in the chosen scope is called as no action (KMS.0201), as kmsfs would.
 *
 * The store is opened once, in a temporary directory made on the first call (removed at exit):
 * SQLite there, or the store the environment variable KMS_FUZZ_STORE names (a kmsfs -o store=
 * URI; CI replays the corpus once against a throw-away PostgreSQL that way), with two keys in
 * project "fz" and one in "fz-other". Key ids are random per run, so the body may name them by
 * placeholders, replaced before the call: @K0@ @K1@ (keys of "fz"), @KX@ (the
 * key of "fz-other"), @URN@ ("kms:<region>:<domain>:alias:"), @CT@ (a create-datakey cipher_text
 * of key 0, 64-byte DEK), @CTX@ (the same with encryption_context {"a":"1"}), @DCT@ (an
 * encrypt-data cipher_text of "hello" under key 0), @KE@ (a key of "fz" with origin external,
 * pending import), @TOK@ (an import token for @KE@, RSAES_OAEP_SHA_256). That lets seeds reach
 * the code behind key lookup, decryption and the import token.
 *
 * Properties, for every input:
 *   - api_call() returns 0 or a KMS_E_* value, and leaves a response ending in "\n";
 *   - every response line is one JSON object; a line holding "error" is exactly
 *     {"error":{"error_code":"KMS.xxxx","error_msg":"..."}} with a code and message of the table;
 *   - a nonzero return comes with an error line for that very error, the last line;
 *   - a body without "\n" (never a batch) gets exactly one line, and "error" iff nonzero return;
 *   - a caller without valid claims (no token, expired, another project) never gets a success
 *     line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "api/kms_api.h"
#include "common/kms_err.h"
#include "common/kms_limits.h"
#include "fuzz.h"

#define FZ_PROJECT "fz"
#define FZ_OTHER   "fz-other"
#define FZ_NO_KEY  "0badc0de-0000-4000-8000-000000000000"

static char fz_dir[4096];
static struct store *fz_store;
static struct api_service fz_svc;
static char fz_key[4][KMS_KEY_ID_LEN + 1];
static char fz_tok[6200];
static char fz_urn[256];
static char fz_ct[2 * 4300], fz_ctx[2 * 4300], fz_dct[4300];

static void fz_rmrf(const char *dir)
{
	static const char *const files[] = { "kms.db",	 "kms.db-wal", "kms.db-shm",
					     "root.key", "token.key",  "kms.db-journal" };
	char path[4200];

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		unlink(path);
	}
	if (rmdir(dir) != 0)
		fprintf(stderr, "fuzz-request: could not remove %s\n", dir);
}

static void fz_cleanup(void)
{
	store_close(fz_store);
	fz_store = NULL;
	if (fz_dir[0])
		fz_rmrf(fz_dir);
}

/* A trusted call during setup; aborts unless it succeeds. Copies string field name out. */
static void fz_setup_call(const char *project, const char *action, const char *body,
			  const char *field, char *out, size_t cap)
{
	struct api_caller c = { .project = project, .trusted = true };
	struct kms_buf resp = KMS_BUF_INIT(KMS_MAX_RESPONSE, true);
	const cJSON *f;
	cJSON *j;

	if (api_call(&fz_svc, &c, api_action_find(action, API_SCOPE_PROJECT), (const uint8_t *)body,
		     strlen(body), &resp) != 0) {
		fprintf(stderr, "fuzz-request setup: %s failed: %s", action, (char *)resp.data);
		abort();
	}
	j = cJSON_Parse((const char *)resp.data);
	f = cJSON_GetObjectItemCaseSensitive(j, "key_info");
	f = cJSON_GetObjectItemCaseSensitive(f ? f : j, field);
	if (!cJSON_IsString(f) || (size_t)snprintf(out, cap, "%s", f->valuestring) >= cap)
		abort();
	cJSON_Delete(j);
	kms_buf_free(&resp);
}

static void fz_setup(void)
{
	struct store_options o = { .create = true };
	const char *tmp = getenv("TMPDIR");
	char why[1024] = "", body[512];

	snprintf(fz_dir, sizeof(fz_dir), "%s/kmsfs-fuzz-request-XXXXXX",
		 tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(fz_dir)) {
		perror("fuzz-request: mkdtemp");
		abort();
	}
	o.state_dir = fz_dir;
	o.backend = getenv("KMS_FUZZ_STORE");
	if (api_init() < 0 || store_open(&o, &fz_store, why, sizeof(why)) < 0) {
		fprintf(stderr, "fuzz-request: store_open: %s\n", why);
		abort();
	}
	atexit(fz_cleanup);
	fz_svc.store = fz_store;
	fz_svc.key_quota = KMS_DEFAULT_KEY_QUOTA;
	fz_setup_call(FZ_PROJECT, "create-key", "{\"key_alias\":\"k0\"}", "key_id", fz_key[0],
		      sizeof(fz_key[0]));
	fz_setup_call(FZ_PROJECT, "create-key", "{\"key_alias\":\"k1\"}", "key_id", fz_key[1],
		      sizeof(fz_key[1]));
	fz_setup_call(FZ_OTHER, "create-key", "{\"key_alias\":\"k0\"}", "key_id", fz_key[2],
		      sizeof(fz_key[2]));
	fz_setup_call(FZ_PROJECT, "create-key", "{\"key_alias\":\"ke\",\"origin\":\"external\"}",
		      "key_id", fz_key[3], sizeof(fz_key[3]));
	snprintf(body, sizeof(body),
		 "{\"key_id\":\"%s\",\"wrapping_algorithm\":\"RSAES_OAEP_SHA_256\"}", fz_key[3]);
	fz_setup_call(FZ_PROJECT, "get-parameters-for-import", body, "import_token", fz_tok,
		      sizeof(fz_tok));
	snprintf(fz_urn, sizeof(fz_urn), "kms:%s:%s:alias:", store_region(fz_store),
		 store_domain_id(fz_store));
	snprintf(body, sizeof(body), "{\"key_id\":\"%s\"}", fz_key[0]);
	fz_setup_call(FZ_PROJECT, "create-datakey", body, "cipher_text", fz_ct, sizeof(fz_ct));
	snprintf(body, sizeof(body), "{\"key_id\":\"%s\",\"encryption_context\":{\"a\":\"1\"}}",
		 fz_key[0]);
	fz_setup_call(FZ_PROJECT, "create-datakey", body, "cipher_text", fz_ctx, sizeof(fz_ctx));
	snprintf(body, sizeof(body), "{\"key_id\":\"%s\",\"plain_text\":\"hello\"}", fz_key[0]);
	fz_setup_call(FZ_PROJECT, "encrypt-data", body, "cipher_text", fz_dct, sizeof(fz_dct));
}

struct fz_placeholder {
	const char *name;
	const char *value;
};

/* The placeholder at in[i], or NULL. */
static const struct fz_placeholder *fz_match(const uint8_t *in, size_t len, size_t i)
{
	static const struct fz_placeholder ph[] = {
		{ "@K0@", fz_key[0] }, { "@K1@", fz_key[1] }, { "@KX@", fz_key[2] },
		{ "@URN@", fz_urn },   { "@CTX@", fz_ctx },   { "@CT@", fz_ct },
		{ "@DCT@", fz_dct },   { "@KE@", fz_key[3] }, { "@TOK@", fz_tok },
	};

	if (in[i] != '@')
		return NULL;
	for (size_t j = 0; j < sizeof(ph) / sizeof(ph[0]); j++) {
		size_t k = strlen(ph[j].name);

		if (len - i >= k && memcmp(in + i, ph[j].name, k) == 0)
			return &ph[j];
	}
	return NULL;
}

/* The body with placeholders replaced; *n its length. malloc'd. */
static uint8_t *fz_expand(const uint8_t *in, size_t len, size_t *n)
{
	const struct fz_placeholder *p;
	size_t cap = 1, o = 0;
	uint8_t *out;

	for (size_t i = 0; i < len;) {
		p = fz_match(in, len, i);
		cap += p ? strlen(p->value) : 1;
		i += p ? strlen(p->name) : 1;
	}
	out = malloc(cap);
	if (!out)
		abort();
	for (size_t i = 0; i < len;) {
		p = fz_match(in, len, i);
		if (p) {
			memcpy(out + o, p->value, strlen(p->value));
			o += strlen(p->value);
			i += strlen(p->name);
		} else {
			out[o++] = in[i++];
		}
	}
	*n = o;
	return out;
}

/* The table's message for code, or NULL. */
#define FZ_ROW(name, code, http, errnum, msg) { code, msg },
static const char *fz_message(const char *code)
{
	static const struct {
		const char *code, *msg;
	} rows[] = { KMS_ERRORS(FZ_ROW) };

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		if (strcmp(rows[i].code, code) == 0)
			return rows[i].msg;
	return NULL;
}
#undef FZ_ROW

/* Check one response line; returns 1 for an error line, 0 for a success line. */
static int fz_line(const char *p, size_t n)
{
	const char *end = NULL, *msg;
	const cJSON *e, *code;
	char want[512];
	cJSON *j;
	int is_error;

	if (memchr(p, 0, n) || memchr(p, '\r', n))
		abort();
	j = cJSON_ParseWithLengthOpts(p, n, &end, false);
	if (!j || end != p + n || !cJSON_IsObject(j))
		abort();
	e = cJSON_GetObjectItemCaseSensitive(j, "error");
	is_error = e != NULL;
	if (e) {
		code = cJSON_GetObjectItemCaseSensitive(e, "error_code");
		if (!cJSON_IsString(code) || !(msg = fz_message(code->valuestring)))
			abort();
		snprintf(want, sizeof(want),
			 "{\"error\":{\"error_code\":\"%s\",\"error_msg\":\"%s\"}}",
			 code->valuestring, msg);
		if (strlen(want) != n || memcmp(want, p, n) != 0)
			abort();
	}
	cJSON_Delete(j);
	return is_error;
}

static void fz_check(int r, const struct kms_buf *resp, bool single, bool unauthorised)
{
	const char *text = (const char *)resp->data, *last = NULL;
	size_t pos = 0, lines = 0, errors = 0, last_len = 0;

	if (r > 0 || resp->len == 0 || !text || text[resp->len - 1] != '\n')
		abort();
	while (pos < resp->len) {
		const char *nl = memchr(text + pos, '\n', resp->len - pos);
		size_t n = (size_t)(nl - (text + pos));

		errors += (size_t)fz_line(text + pos, n);
		last = text + pos;
		last_len = n;
		lines++;
		pos += n + 1;
	}
	if (r < 0) {
		const struct kms_err_info *e = kms_err_info(r);
		char want[512];

		snprintf(want, sizeof(want),
			 "{\"error\":{\"error_code\":\"%s\",\"error_msg\":\"%s\"}}", e->code,
			 e->message);
		if (strlen(want) != last_len || memcmp(want, last, last_len) != 0)
			abort();
	}
	if (single && (lines != 1 || (errors == 1) != (r < 0)))
		abort();
	if (unauthorised && errors != lines)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct auth_claims claims[4];
	static bool ready;
	struct api_caller c = { .project = FZ_PROJECT, .uid = 1000, .gid = 1000, .pid = 1 };
	struct kms_buf resp = KMS_BUF_INIT(KMS_MAX_RESPONSE, true);
	const struct api_action *a;
	unsigned scope = API_SCOPE_PROJECT, who;
	bool unauthorised = false;
	uint8_t *body;
	size_t n;
	int r;

	if (size < 2)
		return 0;
	if (!ready) {
		static const enum kms_role roles[4] = { KMS_ROLE_VIEWER, KMS_ROLE_CRYPTO,
							KMS_ROLE_ADMIN, KMS_ROLE_ADMIN };

		fz_setup();
		for (int i = 0; i < 4; i++) {
			snprintf(claims[i].id, sizeof(claims[i].id), "00000000000000%02d", i);
			snprintf(claims[i].project, sizeof(claims[i].project), FZ_PROJECT);
			snprintf(claims[i].user, sizeof(claims[i].user), "fuzz%d", i);
			claims[i].role = roles[i];
			claims[i].expiry = INT64_MAX;
		}
		ready = true;
	}
	a = api_action_at(data[0] % api_action_count());
	switch (data[1] & 3) {
	case 1:
	case 2:
		scope = API_SCOPE_KEY;
		c.path_key_id = fz_key[(data[1] & 3) - 1];
		break;
	case 3:
		scope = API_SCOPE_KEY;
		c.path_key_id = data[1] & 0x80 ? FZ_NO_KEY : fz_key[2];
		break;
	}
	if (!(a->scopes & scope))
		a = NULL;
	who = (data[1] >> 2) & 7;
	switch (who) {
	case 0:
	case 7:
		c.trusted = true;
		break;
	case 1:
		c.auth_error = data[1] & 0x40 ? KMS_E_TOKEN_EXPIRED : 0;
		unauthorised = true;
		break;
	case 2:
	case 3:
	case 4:
		c.claims = &claims[who - 2];
		break;
	case 5: /* expired */
		claims[3].expiry = (int64_t)time(NULL) - 1;
		snprintf(claims[3].project, sizeof(claims[3].project), FZ_PROJECT);
		c.claims = &claims[3];
		unauthorised = true;
		break;
	case 6: /* another project's token */
		claims[3].expiry = INT64_MAX;
		snprintf(claims[3].project, sizeof(claims[3].project), FZ_OTHER);
		c.claims = &claims[3];
		unauthorised = true;
		break;
	}
	body = fz_expand(data + 2, size - 2, &n);
	r = api_call(&fz_svc, &c, a, body, n, &resp);
	fz_check(r, &resp, !memchr(body, '\n', n), unauthorised);
	free(body);
	kms_buf_free(&resp);
	return 0;
}
