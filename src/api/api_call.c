/* Dispatch table, request parsing, authorisation and response rendering. */
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_internal.h"
#include "common/kms_err.h"
#include "common/kms_limits.h"
#include "common/kms_secmem.h"

#define BOTH (API_SCOPE_PROJECT | API_SCOPE_KEY)

/* The table: one row per action; no if-chains. */
static const struct api_action api_actions[] = {
	{ "create-key", API_SCOPE_PROJECT, AUTH_ROLE_ADMIN, false, api_create_key },
	{ "describe-key", BOTH, AUTH_ROLE_VIEWER, false, api_describe_key },
	{ "list-keys", API_SCOPE_PROJECT, AUTH_ROLE_VIEWER, false, api_list_keys },
	{ "create-datakey", BOTH, AUTH_ROLE_CRYPTO, true, api_create_datakey },
	{ "create-datakey-without-plaintext", BOTH, AUTH_ROLE_CRYPTO, false,
	  api_create_datakey_without_plaintext },
	{ "encrypt-datakey", BOTH, AUTH_ROLE_CRYPTO, false, api_encrypt_datakey },
	{ "decrypt-datakey", BOTH, AUTH_ROLE_CRYPTO, true, api_decrypt_datakey },
	{ "gen-random", API_SCOPE_PROJECT, AUTH_ROLE_CRYPTO, false, api_gen_random },
	{ "encrypt-data", BOTH, AUTH_ROLE_CRYPTO, false, api_encrypt_data },
	{ "decrypt-data", BOTH, AUTH_ROLE_CRYPTO, true, api_decrypt_data },
};

const struct api_action *api_action_find(const char *name, unsigned scope)
{
	for (size_t i = 0; i < KMS_ARRAY_SIZE(api_actions); i++)
		if ((api_actions[i].scopes & scope) && strcmp(api_actions[i].name, name) == 0)
			return &api_actions[i];
	return NULL;
}

size_t api_action_count(void)
{
	return KMS_ARRAY_SIZE(api_actions);
}

const struct api_action *api_action_at(size_t i)
{
	return i < KMS_ARRAY_SIZE(api_actions) ? &api_actions[i] : NULL;
}

/* cJSON allocates every string it parses or prints with these: wipe each block before freeing,
 * so hex DEKs in requests and responses do not linger in the heap. */
static void api_json_free(void *p)
{
	if (p) {
		kms_wipe(p, malloc_usable_size(p));
		free(p);
	}
}

static pthread_once_t api_once = PTHREAD_ONCE_INIT;
static int api_init_result;

static void api_init_once(void)
{
	cJSON_Hooks hooks = { malloc, api_json_free };

	cJSON_InitHooks(&hooks);
	api_init_result = core_init();
}

int api_init(void)
{
	pthread_once(&api_once, api_init_once);
	return api_init_result;
}

int api_error_json(int err, struct kms_buf *resp)
{
	const struct kms_err_info *e = kms_err_info(err);
	int r;

	/* Codes and messages are our own constants: no escaping needed, no allocation. */
	if ((r = kms_buf_append_str(resp, "{\"error\":{\"error_code\":\"")) < 0 ||
	    (r = kms_buf_append_str(resp, e->code)) < 0 ||
	    (r = kms_buf_append_str(resp, "\",\"error_msg\":\"")) < 0 ||
	    (r = kms_buf_append_str(resp, e->message)) < 0 ||
	    (r = kms_buf_append_str(resp, "\"}}\n")) < 0)
		return r;
	return 0;
}

static bool api_blank(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != ' ' && p[i] != '\t' && p[i] != '\n' && p[i] != '\r')
			return false;
	return true;
}

static size_t api_depth(const cJSON *j)
{
	size_t d = 0;

	for (const cJSON *c = j ? j->child : NULL; c; c = c->next) {
		size_t cd = api_depth(c);

		if (cd > d)
			d = cd;
	}
	return d + 1;
}

static bool api_has_duplicate_keys(const cJSON *o)
{
	for (const cJSON *a = o->child; a; a = a->next)
		for (const cJSON *b = a->next; b; b = b->next)
			if (a->string && b->string && strcmp(a->string, b->string) == 0)
				return true;
	return false;
}

static int api_parse(const uint8_t *req, size_t len, cJSON **out)
{
	const char *end = NULL;
	cJSON *j;

	*out = NULL;
	if (len > KMS_MAX_REQUEST)
		return KMS_E_TOO_LONG;
	if (api_blank(req, len)) {
		*out = cJSON_CreateObject();
		return *out ? 0 : KMS_E_NOMEM;
	}
	if (memchr(req, 0, len))
		return KMS_E_BAD_JSON;
	j = cJSON_ParseWithLengthOpts((const char *)req, len, &end, false);
	if (!j)
		return KMS_E_BAD_JSON;
	if (!cJSON_IsObject(j) || !end || !api_blank((const uint8_t *)end,
						   len - (size_t)(end - (const char *)req)) ||
	    api_depth(j) > KMS_MAX_JSON_DEPTH || api_has_duplicate_keys(j)) {
		cJSON_Delete(j);
		return KMS_E_BAD_JSON;
	}
	*out = j;
	return 0;
}

static int64_t api_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int api_authorise(const struct api_caller *c, const struct api_action *a, int64_t now_ms)
{
	int r;

	if (c->trusted)
		return 0;
	if (!c->claims)
		return c->auth_error ? c->auth_error : KMS_E_TOKEN_MISSING;
	if ((r = auth_claims_check(c->claims, c->project, now_ms / 1000)) < 0)
		return r;
	if (c->claims->role < a->min_role)
		return KMS_E_FORBIDDEN;
	return 0;
}

static int api_render(cJSON *out, struct kms_buf *resp)
{
	char *text = cJSON_PrintUnformatted(out);
	int r;

	if (!text)
		return KMS_E_NOMEM;
	r = kms_buf_append_str(resp, text);
	if (r == 0)
		r = kms_buf_append(resp, "\n", 1);
	api_json_free(text);
	return r == KMS_E_TOO_LONG ? KMS_E_INTERNAL : r;
}

int api_call(const struct api_service *svc, const struct api_caller *caller,
	     const struct api_action *action, const uint8_t *req, size_t len,
	     struct kms_buf *resp)
{
	struct api_request r = { .svc = svc, .caller = caller, .action = action };
	size_t start = resp->len;
	int err;

	if ((err = api_init()) < 0)
		goto fail;
	r.now_ms = api_now_ms();
	if (!action) {
		err = KMS_E_BAD_URL;
		goto fail;
	}
	if ((err = api_authorise(caller, action, r.now_ms)) < 0)
		goto fail;
	if ((err = api_parse(req, len, &r.body)) < 0)
		goto fail;
	r.out = cJSON_CreateObject();
	if (!r.out) {
		err = KMS_E_NOMEM;
		goto fail;
	}
	if ((err = action->handler(&r)) < 0)
		goto fail;
	if ((err = api_render(r.out, resp)) < 0)
		goto fail;
	err = 0;
	goto out;
fail:
	/* Drop any partial output, then describe the failure. */
	if (resp->len > start) {
		kms_wipe(resp->data + start, resp->len - start);
		resp->len = start;
		resp->data[start] = 0;
	}
	if (api_error_json(err, resp) < 0) {
		/* Only if resp is too small to hold ~120 bytes: leave it empty, keep the error. */
	}
out:
	cJSON_Delete(r.body);
	cJSON_Delete(r.out);
	return err;
}
