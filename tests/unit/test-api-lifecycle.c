/* test-api-lifecycle.c - the key lifecycle actions (kms-api.md sections 4.4-4.8, 6.2, 7.4):
 * enable-key (KMS.1201), disable-key (KMS.1301), schedule-key-deletion (7..1096 days, KMS.1401,
 * KMS.1402, flat reply), cancel-key-deletion (back to Disabled "3", KMS.1501), the destruction
 * of a key once its date has passed (store_sweep() with a later clock), update-key-alias
 * (KMS.1101, KMS.1104), update-key-description (KMS.1103), rotation (enable/disable-key-rotation,
 * update-key-rotation-interval 30..365 with KMS.3001 and KMS.0313, get-key-rotation-status,
 * automatic rotation by store_sweep()), and the rotate-key extension (old ciphertexts still
 * decrypt, new ones carry the newest version, at most 64 versions). Crypto on a disabled key is
 * KMS.0209, on a key pending deletion KMS.0210.
 *
 * Tests that move the clock forward (store_sweep) use a store of their own (struct fx_own), because
 * a sweep acts on every project of a store.
 */
#include "kms_test_api.h"
#include "common/kms_time.h"

#define HEX_MAX (2 * CORE_BLOB_MAX + 1)
#define DAY_MS	86400000LL
#define SEQ	"919c82d4-8046-4722-9094-35c3c6524cff"

/* key_state of a key as describe-key shows it (valid for FX_KEEP calls), or NULL. */
static const char *state_of(const char *project, const char *id)
{
	cJSON *r = NULL;

	if (pcall(project, "describe-key", fx_kid(id), &r) != 0)
		return NULL;
	return fx_str(r, "key_info.key_state");
}

/* action on key id, named by key_id and in its key folder, is refused with err, whose response
 * is exactly line; the key stays in state. */
static void refused_in_state(const char *project, const char *action, const char *id, int err,
			     const char *line, const char *state)
{
	ASSERT_ERR(pcall(project, action, fx_kid(id), NULL), err);
	ASSERT_STREQ(fx_last(), line);
	ASSERT_ERR(call(project, action, API_SCOPE_KEY, id, "{}", NULL), err);
	ASSERT_STREQ(state_of(project, id), state);
}

static const char *describe_field(const char *project, const char *id, const char *field)
{
	cJSON *r = NULL;

	if (pcall(project, "describe-key", fx_kid(id), &r) != 0)
		return NULL;
	return fx_str(r, fx_fmt("key_info.%s", field));
}

/* The key version a hex (data key) or Base64 (data) ciphertext names; UINT32_MAX if unparsable. */
static uint32_t blob_version(const char *ct, bool base64)
{
	static uint8_t raw[CORE_BLOB_MAX];
	struct core_blob b;
	size_t n = 0;

	if (base64) {
		if (kms_base64_decode(ct, strlen(ct), raw, sizeof(raw), &n) < 0)
			return UINT32_MAX;
	} else {
		n = kms_test_unhex(ct, raw, sizeof(raw));
	}
	return core_blob_parse(raw, n, &b) < 0 ? UINT32_MAX : b.key_version;
}

/* ---- a store of our own, for the tests that move the clock ---- */

static int ocall(struct fx_own *o, const char *project, const char *action, const char *json,
		 cJSON **r)
{
	struct api_caller c = { .project = project, .trusted = true };

	return fx_call_as(&o->svc, &c, action, API_SCOPE_PROJECT, json, strlen(json), r);
}

static void own_key(struct fx_own *o, const char *project, const char *alias, char id[FX_ID_LEN])
{
	fx_key_in(&o->svc, project, fx_fmt("{\"key_alias\":\"%s\"}", alias), id);
}

static void check_cb(const char *project, const char *key_id, uint32_t version, int err, void *arg)
{
	fprintf(stderr, "\tstore_check: %s %s version %u: %d\n", project, key_id, version, err);
}

/* Run body on a fresh store that is closed and removed afterwards, whatever body did. */
static void with_own_store(void (*body)(struct fx_own *o))
{
	struct fx_own o;

	ASSERT_OK(fx_own_open(&o));
	body(&o);
	fx_own_close(&o);
}

/* ---- enable-key, disable-key (4.4) ---- */

TEST(disable_enable_replies)
{
	char id[FX_ID_LEN];
	cJSON *r = NULL;

	STEP(fx_key("ed", "app", id));
	ASSERT_STREQ(state_of("ed", id), "2");
	ASSERT_ERR(pcall("ed", "disable-key", fx_kid(id), &r), 0);
	ASSERT_STREQ(fx_last(),
		     fx_fmt("{\"key_info\":{\"key_id\":\"%s\",\"key_state\":\"3\"}}\n", id));
	ASSERT_STREQ(state_of("ed", id), "3");
	ASSERT_ERR(pcall("ed", "enable-key", fx_kid(id), &r), 0);
	ASSERT_STREQ(fx_last(),
		     fx_fmt("{\"key_info\":{\"key_id\":\"%s\",\"key_state\":\"2\"}}\n", id));
	ASSERT_STREQ(state_of("ed", id), "2");
	/* In the key folder, with an empty request; and with a valid sequence. */
	ASSERT_ERR(call("ed", "disable-key", API_SCOPE_KEY, id, "", &r), 0);
	ASSERT_STREQ(fx_str(r, "key_info.key_state"), "3");
	ASSERT_ERR(call("ed", "enable-key", API_SCOPE_KEY, id, "{\"sequence\":\"" SEQ "\"}", &r),
		   0);
	ASSERT_STREQ(fx_str(r, "key_info.key_id"), id);
	ASSERT_STREQ(fx_str(r, "key_info.key_state"), "2");
	/* By alias too (the API documents only the id here; kmsfs takes every form). */
	ASSERT_ERR(pcall("ed", "disable-key", "{\"key_id\":\"alias/app\"}", &r), 0);
	ASSERT_STREQ(fx_str(r, "key_info.key_id"), id);
	ASSERT_ERR(pcall("ed", "enable-key", fx_fmt("{\"key_id\":\"%s\"}", fx_urn("app")), &r), 0);
	ASSERT_STREQ(fx_str(r, "key_info.key_state"), "2");
}

TEST(enable_key_not_disabled_1201)
{
	char id[FX_ID_LEN];

	STEP(fx_key("ed1201", "app", id));
	refused_in_state("ed1201", "enable-key", id, KMS_E_NOT_DISABLED,
			 FX_ERROR_LINE("KMS.1201", "The key is not disabled."), "2");
}

TEST(disable_key_not_enabled_1301)
{
	char id[FX_ID_LEN];

	STEP(fx_key("ed1301", "app", id));
	ASSERT_ERR(pcall("ed1301", "disable-key", fx_kid(id), NULL), 0);
	refused_in_state("ed1301", "disable-key", id, KMS_E_NOT_ENABLED,
			 FX_ERROR_LINE("KMS.1301", "The key is not enabled."), "3");
}

/* docs/api-differences.md, States: enable-key and disable-key on a key pending
 * deletion answer KMS.0210, not KMS.1201 / KMS.1301 (kms-api.md 4.4 would say 1201 / 1301). */
TEST(enable_disable_pending_deletion_0210)
{
	char id[FX_ID_LEN];

	STEP(fx_key("ed0210", "app", id));
	ASSERT_ERR(pcall("ed0210", "schedule-key-deletion",
			 fx_kid_with(id, "\"pending_days\":\"7\""), NULL),
		   0);
	ASSERT_ERR(pcall("ed0210", "enable-key", fx_kid(id), NULL), KMS_E_KEY_PENDING_DELETION);
	ASSERT_ERR(pcall("ed0210", "disable-key", fx_kid(id), NULL), KMS_E_KEY_PENDING_DELETION);
	ASSERT_STREQ(state_of("ed0210", id), "4");
}

/* Every lifecycle action: KMS.0204 without key_id, 0205 malformed, 0207 unknown, 0206 for a bad
 * sequence; in a key folder a key_id naming another key is KMS.0205. */
TEST(lifecycle_common_errors)
{
	static const struct {
		const char *action, *extra;
	} a[] = {
		{ "enable-key", "" },
		{ "disable-key", "" },
		{ "schedule-key-deletion", ",\"pending_days\":\"7\"" },
		{ "cancel-key-deletion", "" },
		{ "update-key-alias", ",\"key_alias\":\"fresh\"" },
		{ "update-key-description", ",\"key_description\":\"d\"" },
		{ "enable-key-rotation", "" },
		{ "disable-key-rotation", "" },
		{ "update-key-rotation-interval", ",\"rotation_interval\":90" },
		{ "get-key-rotation-status", "" },
		{ "rotate-key", "" },
		{ "rotate-on-demand", "" },
	};
	char id[FX_ID_LEN], other[FX_ID_LEN];

	STEP(fx_key("lc-err", "app", id));
	STEP(fx_key("lc-err", "other", other));
	for (size_t i = 0; i < KMS_ARRAY_SIZE(a); i++) {
		const char *x = a[i].extra, *n = a[i].action;

		EXPECT(n, pcall("lc-err", n, fx_fmt("{\"sequence\":\"" SEQ "\"%s}", x), NULL),
		       KMS_E_MISSING);
		EXPECT(n, pcall("lc-err", n, fx_fmt("{\"key_id\":\"nope\"%s}", x), NULL),
		       KMS_E_BAD_KEY_ID);
		EXPECT(n, pcall("lc-err", n, fx_fmt("{\"key_id\":5%s}", x), NULL),
		       KMS_E_BAD_KEY_ID);
		EXPECT(n, pcall("lc-err", n, fx_fmt("{\"key_id\":\"%s\"%s}", FX_NO_KEY, x), NULL),
		       KMS_E_KEY_NOT_FOUND);
		ASSERT_LAST_ERROR("KMS.0207", "The key does not exist.");
		EXPECT(n, pcall("lc-err", n, fx_fmt("{\"key_id\":\"alias/nope\"%s}", x), NULL),
		       KMS_E_KEY_NOT_FOUND);
		EXPECT(n,
		       pcall("lc-err", n,
			     fx_fmt("{\"key_id\":\"%s\",\"sequence\":\"short\"%s}", id, x), NULL),
		       KMS_E_BAD_SEQUENCE);
		EXPECT(n,
		       call("lc-err", n, API_SCOPE_KEY, id,
			    fx_fmt("{\"key_id\":\"%s\"%s}", other, x), NULL),
		       KMS_E_BAD_KEY_ID);
		/* The key of another project does not exist here. */
		EXPECT(n, pcall("lc-err2", n, fx_fmt("{\"key_id\":\"%s\"%s}", id, x), NULL),
		       KMS_E_KEY_NOT_FOUND);
	}
	/* Nothing above changed either key. */
	ASSERT_STREQ(state_of("lc-err", id), "2");
	ASSERT_STREQ(describe_field("lc-err", id, "key_alias"), "app");
	ASSERT_STREQ(describe_field("lc-err", other, "key_description"), "");
	ASSERT_STREQ(describe_field("lc-err", other, "key_rotation_enabled"), "false");
}

/* Lifecycle actions need admin (docs/using.md, Actions); get-key-rotation-status a viewer. */
TEST(lifecycle_roles_0307)
{
	static const char *const admin_only[] = {
		"enable-key",	       "disable-key",	       "schedule-key-deletion",
		"cancel-key-deletion", "update-key-alias",     "update-key-description",
		"enable-key-rotation", "disable-key-rotation", "update-key-rotation-interval",
		"rotate-key",	       "rotate-on-demand",
	};
	static const enum kms_role below[] = { KMS_ROLE_NONE, KMS_ROLE_VIEWER, KMS_ROLE_CRYPTO };
	char id[FX_ID_LEN];
	cJSON *r = NULL;

	STEP(fx_key("lc-roles", "app", id));
	for (size_t i = 0; i < KMS_ARRAY_SIZE(admin_only); i++) {
		for (size_t j = 0; j < KMS_ARRAY_SIZE(below); j++)
			ASSERT_ERR(
				ucall("lc-roles", "someone", below[j], admin_only[i], NULL,
				      fx_kid_with(id,
						  "\"pending_days\":\"7\","
						  "\"key_alias\":\"x\",\"key_description\":\"x\","
						  "\"rotation_interval\":90"),
				      NULL),
				KMS_E_FORBIDDEN);
	}
	ASSERT_STREQ(state_of("lc-roles", id), "2");
	ASSERT_STREQ(describe_field("lc-roles", id, "key_alias"), "app");
	ASSERT_ERR(ucall("lc-roles", "someone", KMS_ROLE_VIEWER, "get-key-rotation-status", NULL,
			 fx_kid(id), &r),
		   0);
	ASSERT_EQ(r && cJSON_IsFalse(fx_get(r, "key_rotation_enabled")), 1);
	ASSERT_ERR(ucall("lc-roles", "someone", KMS_ROLE_NONE, "get-key-rotation-status", NULL,
			 fx_kid(id), NULL),
		   KMS_E_FORBIDDEN);
	ASSERT_ERR(
		ucall("lc-roles", "someone", KMS_ROLE_ADMIN, "disable-key", NULL, fx_kid(id), &r),
		0);
	ASSERT_STREQ(fx_str(r, "key_info.key_state"), "3");
}

/* ---- schedule-key-deletion, cancel-key-deletion (4.5, 4.6) ---- */

TEST(schedule_key_deletion_reply_and_date)
{
	static const struct {
		const char *days;
		long long n;
	} ok[] = { { "\"7\"", 7 }, { "\"1096\"", 1096 }, { "30", 30 }, { "\"0365\"", 365 } };
	cJSON *r = NULL;

	for (size_t i = 0; i < KMS_ARRAY_SIZE(ok); i++) {
		char id[FX_ID_LEN];
		int64_t before, after, when;

		STEP(fx_key("sd", fx_fmt("k%zu", i), id));
		before = kms_time_real_ms();
		ASSERT_ERR(pcall("sd", "schedule-key-deletion",
				 fx_fmt("{\"key_id\":\"%s\",\"pending_days\":%s}", id, ok[i].days),
				 &r),
			   0);
		after = kms_time_real_ms();
		/* Flat: no key_info wrapper (kms-api.md 4.5, 6). */
		ASSERT_STREQ(fx_last(), fx_fmt("{\"key_id\":\"%s\",\"key_state\":\"4\"}\n", id));
		ASSERT_STREQ(state_of("sd", id), "4");
		when = strtoll(describe_field("sd", id, "scheduled_deletion_date"), NULL, 10);
		ASSERT_LE(before + ok[i].n * DAY_MS, when);
		ASSERT_LE(when, after + ok[i].n * DAY_MS);
	}
	/* From Disabled too, and in a key folder. */
	{
		char id[FX_ID_LEN];

		STEP(fx_key("sd", "from-disabled", id));
		ASSERT_ERR(pcall("sd", "disable-key", fx_kid(id), NULL), 0);
		ASSERT_ERR(call("sd", "schedule-key-deletion", API_SCOPE_KEY, id,
				"{\"pending_days\":\"7\"}", &r),
			   0);
		ASSERT_STREQ(fx_str(r, "key_state"), "4");
		ASSERT_EQ(cJSON_GetArraySize(r), 2);
	}
}

TEST(schedule_key_deletion_bounds_1401)
{
	static const char *const bad[] = {
		"\"6\"",  "\"1097\"", "\"0\"",	  "6",	 "1097", "\"abc\"",
		"\"\"",	  "\"-7\"",   "-7",	  "7.5", "true", "\"7 \"",
		"\" 7\"", "\"1e3\"",  "\"0x10\"", "[7]", "{}",
	};
	static const char line[] = FX_ERROR_LINE(
		"KMS.1401", "Set the pending deletion period between 7 to 1096 days.");
	char id[FX_ID_LEN];

	STEP(fx_key("sd1401", "app", id));
	STEP(fx_member_refuses("sd1401", "schedule-key-deletion", id, "pending_days", bad,
			       KMS_ARRAY_SIZE(bad), KMS_E_PENDING_DAYS, line));
	STEP(fx_member_required("sd1401", "schedule-key-deletion", id, "pending_days"));
	ASSERT_STREQ(state_of("sd1401", id), "2");
	ASSERT_STREQ(describe_field("sd1401", id, "scheduled_deletion_date"), "");
}

TEST(schedule_key_deletion_twice_1402)
{
	char id[FX_ID_LEN], date[24];

	STEP(fx_key("sd1402", "app", id));
	ASSERT_ERR(pcall("sd1402", "schedule-key-deletion",
			 fx_kid_with(id, "\"pending_days\":\"7\""), NULL),
		   0);
	fx_cp(date, sizeof(date), describe_field("sd1402", id, "scheduled_deletion_date"));
	ASSERT_ERR(pcall("sd1402", "schedule-key-deletion",
			 fx_kid_with(id, "\"pending_days\":\"30\""), NULL),
		   KMS_E_ALREADY_PENDING);
	ASSERT_LAST_ERROR("KMS.1402", "The key is already in Pending deletion state.");
	ASSERT_ERR(call("sd1402", "schedule-key-deletion", API_SCOPE_KEY, id,
			"{\"pending_days\":\"7\"}", NULL),
		   KMS_E_ALREADY_PENDING);
	/* The first date stands. */
	ASSERT_STREQ(describe_field("sd1402", id, "scheduled_deletion_date"), date);
}

TEST(cancel_key_deletion_to_disabled)
{
	char id[FX_ID_LEN];
	cJSON *r = NULL;

	STEP(fx_key("cd", "app", id));
	ASSERT_ERR(pcall("cd", "schedule-key-deletion", fx_kid_with(id, "\"pending_days\":\"7\""),
			 NULL),
		   0);
	ASSERT_ERR(pcall("cd", "cancel-key-deletion", fx_kid(id), &r), 0);
	/* kms-api.md 4.6: flat reply, and the key is Disabled (3), not Enabled. */
	ASSERT_STREQ(fx_last(), fx_fmt("{\"key_id\":\"%s\",\"key_state\":\"3\"}\n", id));
	ASSERT_STREQ(state_of("cd", id), "3");
	ASSERT_STREQ(describe_field("cd", id, "scheduled_deletion_date"), "");
	ASSERT_ERR(pcall("cd", "create-datakey", fx_kid(id), NULL), KMS_E_KEY_DISABLED);
	ASSERT_ERR(pcall("cd", "enable-key", fx_kid(id), &r), 0);
	ASSERT_STREQ(fx_str(r, "key_info.key_state"), "2");
	ASSERT_ERR(pcall("cd", "create-datakey", fx_kid(id), NULL), 0);
	/* Again in the key folder, from Disabled, with the upper bound. */
	ASSERT_ERR(pcall("cd", "disable-key", fx_kid(id), NULL), 0);
	ASSERT_ERR(call("cd", "schedule-key-deletion", API_SCOPE_KEY, id,
			"{\"pending_days\":\"1096\"}", NULL),
		   0);
	ASSERT_ERR(call("cd", "cancel-key-deletion", API_SCOPE_KEY, id, "", &r), 0);
	ASSERT_STREQ(fx_str(r, "key_id"), id);
	ASSERT_STREQ(fx_str(r, "key_state"), "3");
}

TEST(cancel_key_deletion_not_pending_1501)
{
	static const char line[] =
		FX_ERROR_LINE("KMS.1501", "The key is not in Pending deletion state.");
	char id[FX_ID_LEN];

	STEP(fx_key("cd1501", "app", id));
	STEP(refused_in_state("cd1501", "cancel-key-deletion", id, KMS_E_NOT_PENDING, line, "2"));
	ASSERT_ERR(pcall("cd1501", "disable-key", fx_kid(id), NULL), 0);
	refused_in_state("cd1501", "cancel-key-deletion", id, KMS_E_NOT_PENDING, line, "3");
}

/* ---- crypto and changes by key state (6.2) ---- */

/* Every action that uses the key's material answers err. */
static void crypto_refused(const char *project, const char *id, const struct fx_blobs *b, int err)
{
	char good[2 * 96 + 1];
	uint8_t dek[64] = { 0 };
	char dg[65];

	kms_hex_encode(dek, sizeof(dek), good);
	fx_sha256_hex(dek, sizeof(dek), dg);
	strcat(good, dg);
	ASSERT_ERR(pcall(project, "create-datakey", fx_kid(id), NULL), err);
	ASSERT_ERR(pcall(project, "create-datakey-without-plaintext", fx_kid(id), NULL), err);
	ASSERT_ERR(pcall(project, "encrypt-datakey",
			 fx_fmt("{\"key_id\":\"%s\",\"plain_text\":\"%s\","
				"\"datakey_plain_length\":\"64\"}",
				id, good),
			 NULL),
		   err);
	ASSERT_ERR(pcall(project, "decrypt-datakey", fx_unwrap_req(id, b->dk), NULL), err);
	ASSERT_ERR(pcall(project, "encrypt-data", fx_kid_with(id, "\"plain_text\":\"x\""), NULL),
		   err);
	ASSERT_ERR(
		pcall(project, "decrypt-data", fx_fmt("{\"cipher_text\":\"%s\"}", b->data), NULL),
		err);
	ASSERT_ERR(pcall(project, "rotate-key", fx_kid(id), NULL), err);
	ASSERT_ERR(call(project, "create-datakey", API_SCOPE_KEY, id, "", NULL), err);
	ASSERT_ERR(call(project, "rotate-key", API_SCOPE_KEY, id, "", NULL), err);
	ASSERT_ERR(pcall(project, "rotate-on-demand", fx_kid(id), NULL), err);
	ASSERT_ERR(call(project, "rotate-on-demand", API_SCOPE_KEY, id, "", NULL), err);
}

/* A change of a key's settings: the action and the request's members after key_id (or NULL). */
struct change {
	const char *action, *members;
};

/* Each change of rows on key id answers err. */
static void changes_answer(const char *project, const char *id, const struct change *rows, size_t n,
			   int err)
{
	for (size_t i = 0; i < n; i++)
		EXPECT(rows[i].action,
		       pcall(project, rows[i].action,
			     rows[i].members ? fx_kid_with(id, rows[i].members) : fx_kid(id), NULL),
		       err);
}

TEST(disabled_key_0209)
{
	static const struct change allowed[] = {
		{ "update-key-alias", "\"key_alias\":\"renamed\"" },
		{ "update-key-description", "\"key_description\":\"off\"" },
		{ "enable-key-rotation", NULL },
		{ "update-key-rotation-interval", "\"rotation_interval\":30" },
	};
	struct fx_blobs b;
	char id[FX_ID_LEN];
	cJSON *r = NULL;

	STEP(fx_key("st0209", "app", id));
	STEP(fx_blobs_in(fx_svc(), "st0209", id, "state test", &b));
	ASSERT_ERR(pcall("st0209", "disable-key", fx_kid(id), NULL), 0);
	STEP(crypto_refused("st0209", id, &b, KMS_E_KEY_DISABLED));
	ASSERT_LAST_ERROR("KMS.0209", "The key has been disabled.");
	/* Management of a disabled key is allowed: alias, description, rotation settings. */
	STEP(changes_answer("st0209", id, allowed, KMS_ARRAY_SIZE(allowed), 0));
	ASSERT_ERR(pcall("st0209", "get-key-rotation-status", fx_kid(id), &r), 0);
	ASSERT_EQ(fx_num(r, "number_of_rotations"), 0);
	/* Enabled again, the old ciphertexts decrypt. */
	ASSERT_ERR(pcall("st0209", "enable-key", fx_kid(id), NULL), 0);
	ASSERT_ERR(pcall("st0209", "decrypt-datakey",
			 fx_fmt("{\"key_id\":\"alias/renamed\",\"cipher_text\":\"%s\","
				"\"datakey_cipher_length\":\"64\"}",
				b.dk),
			 &r),
		   0);
	ASSERT_STREQ(fx_str(r, "data_key"), b.plain);
	ASSERT_ERR(pcall("st0209", "decrypt-data", fx_fmt("{\"cipher_text\":\"%s\"}", b.data), &r),
		   0);
	ASSERT_STREQ(fx_str(r, "plain_text"), "state test");
}

TEST(pending_deletion_0210)
{
	static const struct change refused[] = {
		{ "update-key-alias", "\"key_alias\":\"renamed\"" },
		{ "update-key-description", "\"key_description\":\"x\"" },
		{ "disable-key-rotation", NULL },
		{ "enable-key-rotation", NULL },
		{ "update-key-rotation-interval", "\"rotation_interval\":60" },
	};
	struct fx_blobs b;
	char id[FX_ID_LEN];
	cJSON *r = NULL;

	STEP(fx_key("st0210", "app", id));
	STEP(fx_blobs_in(fx_svc(), "st0210", id, "state test", &b));
	ASSERT_ERR(pcall("st0210", "enable-key-rotation", fx_kid(id), NULL), 0);
	ASSERT_ERR(pcall("st0210", "schedule-key-deletion",
			 fx_kid_with(id, "\"pending_days\":\"7\""), NULL),
		   0);
	STEP(crypto_refused("st0210", id, &b, KMS_E_KEY_PENDING_DELETION));
	ASSERT_LAST_ERROR("KMS.0210", "The key is in Scheduled deletion state and cannot be used.");
	/* kms-api.md 4.7: no alias or description change in state 4; docs/api-differences.md: nor
	 * rotation settings. */
	STEP(changes_answer("st0210", id, refused, KMS_ARRAY_SIZE(refused),
			    KMS_E_KEY_PENDING_DELETION));
	/* Reading works. */
	ASSERT_STREQ(describe_field("st0210", id, "key_alias"), "app");
	ASSERT_STREQ(describe_field("st0210", id, "key_description"), "");
	ASSERT_ERR(pcall("st0210", "get-key-rotation-status", fx_kid(id), &r), 0);
	ASSERT_TRUE(cJSON_IsTrue(fx_get(r, "key_rotation_enabled")));
	ASSERT_EQ(fx_num(r, "rotation_interval"), 365);
	ASSERT_ERR(pcall("st0210", "list-keys", "{\"key_state\":\"4\"}", &r), 0);
	ASSERT_EQ(fx_num(r, "total"), 1);
	ASSERT_STREQ(cJSON_GetArrayItem(fx_get(r, "keys"), 0)->valuestring, id);
	/* Cancel and enable: usable again, the old ciphertexts still decrypt. */
	ASSERT_ERR(pcall("st0210", "cancel-key-deletion", fx_kid(id), NULL), 0);
	ASSERT_ERR(pcall("st0210", "enable-key", fx_kid(id), NULL), 0);
	ASSERT_ERR(pcall("st0210", "decrypt-datakey", fx_unwrap_req(id, b.dk), &r), 0);
	ASSERT_STREQ(fx_str(r, "data_key"), b.plain);
}

/* ---- destruction and automatic rotation: store_sweep() with a later clock ---- */

static void body_deletion_when_due(struct fx_own *o)
{
	char doomed[FX_ID_LEN], later[FX_ID_LEN], keep[FX_ID_LEN], ct[HEX_MAX], ctk[HEX_MAX];
	cJSON *r = NULL;
	int64_t due;
	size_t deleted = 9, rotated = 9;

	STEP(own_key(o, "dl", "doomed", doomed));
	STEP(own_key(o, "dl", "later", later));
	STEP(own_key(o, "dl", "keep", keep));
	ASSERT_ERR(ocall(o, "dl", "create-datakey-without-plaintext", fx_kid(doomed), &r), 0);
	fx_cp(ct, sizeof(ct), fx_str(r, "cipher_text"));
	ASSERT_ERR(ocall(o, "dl", "create-datakey", fx_kid(keep), &r), 0);
	fx_cp(ctk, sizeof(ctk), fx_str(r, "cipher_text"));
	ASSERT_ERR(ocall(o, "dl", "create-grant",
			 fx_kid_with(doomed, "\"grantee_principal\":\"bob\","
					     "\"operations\":[\"describe-key\"]"),
			 NULL),
		   0);
	{
		struct api_caller c = { .project = "dl", .path_key_id = doomed, .trusted = true };
		const char *req = "{\"tag\":{\"key\":\"env\",\"value\":\"x\"}}";

		ASSERT_ERR(fx_call_as(&o->svc, &c, "tags", API_SCOPE_KEY, req, strlen(req), NULL),
			   0);
	}
	ASSERT_ERR(ocall(o, "dl", "schedule-key-deletion",
			 fx_kid_with(doomed, "\"pending_days\":\"7\""), NULL),
		   0);
	ASSERT_ERR(ocall(o, "dl", "schedule-key-deletion",
			 fx_kid_with(later, "\"pending_days\":\"8\""), NULL),
		   0);
	ASSERT_ERR(ocall(o, "dl", "describe-key", fx_kid(doomed), &r), 0);
	due = strtoll(fx_str(r, "key_info.scheduled_deletion_date"), NULL, 10);
	ASSERT_LE(kms_time_real_ms() + 7 * DAY_MS - 60000, due);

	/* A millisecond before the date: nothing happens. */
	ASSERT_OK(store_sweep(o->st, due - 1, &deleted, &rotated));
	ASSERT_EQ(deleted, 0);
	ASSERT_EQ(rotated, 0);
	ASSERT_ERR(ocall(o, "dl", "describe-key", fx_kid(doomed), &r), 0);
	ASSERT_STREQ(fx_str(r, "key_info.key_state"), "4");
	/* On the date: destroyed, with its alias, grants and tags; the others stay. */
	ASSERT_OK(store_sweep(o->st, due, &deleted, &rotated));
	ASSERT_EQ(deleted, 1);
	ASSERT_EQ(rotated, 0);
	ASSERT_ERR(ocall(o, "dl", "describe-key", fx_kid(doomed), NULL), KMS_E_KEY_NOT_FOUND);
	ASSERT_ERR(ocall(o, "dl", "describe-key", "{\"key_id\":\"alias/doomed\"}", NULL),
		   KMS_E_KEY_NOT_FOUND);
	ASSERT_ERR(ocall(o, "dl", "cancel-key-deletion", fx_kid(doomed), NULL),
		   KMS_E_KEY_NOT_FOUND);
	ASSERT_ERR(ocall(o, "dl", "decrypt-datakey", fx_unwrap_req(doomed, ct), NULL),
		   KMS_E_KEY_NOT_FOUND);
	ASSERT_ERR(ocall(o, "dl", "list-keys", "{}", &r), 0);
	ASSERT_EQ(fx_num(r, "total"), 2);
	ASSERT_ERR(ocall(o, "dl", "user-quotas", "", &r), 0);
	ASSERT_STREQ(fx_last(), "{\"quotas\":{\"resources\":[{\"type\":\"CMK\",\"used\":2,"
				"\"quota\":100},{\"type\":\"grant_per_CMK\",\"used\":0,"
				"\"quota\":100}]}}\n");
	ASSERT_ERR(ocall(o, "dl", "tags", "", &r), 0);
	ASSERT_STREQ(fx_last(), "{\"tags\":[]}\n");
	ASSERT_ERR(ocall(o, "dl", "describe-key", fx_kid(later), &r), 0);
	ASSERT_STREQ(fx_str(r, "key_info.key_state"), "4");
	ASSERT_ERR(ocall(o, "dl", "decrypt-datakey", fx_unwrap_req(keep, ctk), NULL), 0);
	/* The alias is free again; the material check still passes. */
	ASSERT_ERR(ocall(o, "dl", "create-key", "{\"key_alias\":\"doomed\"}", NULL), 0);
	{
		size_t checked = 0;

		ASSERT_EQ(store_check(o->st, check_cb, NULL, &checked), 0);
		ASSERT_EQ(checked, 3); /* versions: one each of keep, later and the new "doomed" */
	}
	/* A sweep long after catches up with every date that passed. */
	ASSERT_OK(store_sweep(o->st, due + 3650 * DAY_MS, &deleted, &rotated));
	ASSERT_EQ(deleted, 1);
	ASSERT_ERR(ocall(o, "dl", "describe-key", fx_kid(later), NULL), KMS_E_KEY_NOT_FOUND);
	ASSERT_ERR(ocall(o, "dl", "user-instances", "", &r), 0);
	ASSERT_STREQ(fx_last(), "{\"instance_num\":2}\n");
}

TEST(schedule_key_deletion_destroys_when_due)
{
	with_own_store(body_deletion_when_due);
}

static double rotations(struct fx_own *o, const char *id)
{
	cJSON *r = NULL;

	if (ocall(o, "ar", "get-key-rotation-status", fx_kid(id), &r) != 0)
		return -1;
	return fx_num(r, "number_of_rotations");
}

static void body_automatic_rotation(struct fx_own *o)
{
	char rot[FX_ID_LEN], norot[FX_ID_LEN], off[FX_ID_LEN], pend[FX_ID_LEN], ct[HEX_MAX];
	char plain[HEX_MAX];
	cJSON *r = NULL;
	int64_t t0;
	size_t deleted = 9, rotated = 9;

	STEP(own_key(o, "ar", "rot", rot));
	STEP(own_key(o, "ar", "norot", norot));
	STEP(own_key(o, "ar", "off", off));
	STEP(own_key(o, "ar", "pend", pend));
	ASSERT_ERR(ocall(o, "ar", "create-datakey", fx_kid(rot), &r), 0);
	fx_cp(ct, sizeof(ct), fx_str(r, "cipher_text"));
	fx_cp(plain, sizeof(plain), fx_str(r, "plain_text"));
	ASSERT_EQ(blob_version(ct, false), 0);
	t0 = kms_time_real_ms();
	ASSERT_ERR(ocall(o, "ar", "enable-key-rotation", fx_kid(rot), NULL), 0);
	ASSERT_ERR(ocall(o, "ar", "update-key-rotation-interval",
			 fx_kid_with(rot, "\"rotation_interval\":30"), NULL),
		   0);
	ASSERT_ERR(ocall(o, "ar", "enable-key-rotation", fx_kid(off), NULL), 0);
	ASSERT_ERR(ocall(o, "ar", "update-key-rotation-interval",
			 fx_kid_with(off, "\"rotation_interval\":30"), NULL),
		   0);
	ASSERT_ERR(ocall(o, "ar", "disable-key", fx_kid(off), NULL), 0);
	ASSERT_ERR(ocall(o, "ar", "enable-key-rotation", fx_kid(pend), NULL), 0);
	ASSERT_ERR(ocall(o, "ar", "update-key-rotation-interval",
			 fx_kid_with(pend, "\"rotation_interval\":30"), NULL),
		   0);
	ASSERT_ERR(ocall(o, "ar", "schedule-key-deletion",
			 fx_kid_with(pend, "\"pending_days\":\"1096\""), NULL),
		   0);

	/* 29 days on: not yet. */
	ASSERT_OK(store_sweep(o->st, t0 + 29 * DAY_MS, &deleted, &rotated));
	ASSERT_EQ(rotated, 0);
	ASSERT_EQ(rotations(o, rot), 0);
	/* 30 days (and a minute) on: the enabled key rotates, once; the disabled key, the key
	 * without rotation and the key pending deletion do not. */
	ASSERT_OK(store_sweep(o->st, t0 + 30 * DAY_MS + 60000, &deleted, &rotated));
	ASSERT_EQ(rotated, 1);
	ASSERT_EQ(deleted, 0);
	ASSERT_EQ(rotations(o, rot), 1);
	ASSERT_EQ(rotations(o, norot), 0);
	ASSERT_EQ(rotations(o, off), 0);
	ASSERT_EQ(rotations(o, pend), 0);
	ASSERT_ERR(ocall(o, "ar", "get-key-rotation-status", fx_kid(rot), &r), 0);
	ASSERT_STREQ(fx_str(r, "last_rotation_time"),
		     fx_fmt("%lld", (long long)(t0 + 30 * DAY_MS + 60000)));
	ASSERT_OK(store_sweep(o->st, t0 + 30 * DAY_MS + 60000, &deleted, &rotated));
	ASSERT_EQ(rotated, 0);
	/* New ciphertexts use version 1; the old one still decrypts. */
	ASSERT_ERR(ocall(o, "ar", "create-datakey-without-plaintext", fx_kid(rot), &r), 0);
	ASSERT_EQ(blob_version(fx_str(r, "cipher_text"), false), 1);
	ASSERT_ERR(ocall(o, "ar", "decrypt-datakey", fx_unwrap_req(rot, ct), &r), 0);
	ASSERT_STREQ(fx_str(r, "data_key"), plain);
	/* Another interval later: once more. After disable-key-rotation: never. */
	ASSERT_OK(store_sweep(o->st, t0 + 60 * DAY_MS + 60000, &deleted, &rotated));
	ASSERT_EQ(rotated, 1);
	ASSERT_EQ(rotations(o, rot), 2);
	ASSERT_ERR(ocall(o, "ar", "disable-key-rotation", fx_kid(rot), NULL), 0);
	ASSERT_OK(store_sweep(o->st, t0 + 365 * DAY_MS, &deleted, &rotated));
	ASSERT_EQ(rotated, 0);
	ASSERT_EQ(rotations(o, rot), 2);
	/* The disabled key, enabled again, catches up at the next sweep. */
	ASSERT_ERR(ocall(o, "ar", "enable-key", fx_kid(off), NULL), 0);
	ASSERT_OK(store_sweep(o->st, t0 + 365 * DAY_MS, &deleted, &rotated));
	ASSERT_EQ(rotated, 1);
	ASSERT_EQ(rotations(o, off), 1);
}

TEST(rotation_automatic_when_interval_passes)
{
	with_own_store(body_automatic_rotation);
}

/* ---- update-key-alias, update-key-description (4.7) ---- */

TEST(update_key_alias)
{
	char id[FX_ID_LEN];
	cJSON *r = NULL;

	STEP(fx_key("ua", "app", id));
	ASSERT_ERR(pcall("ua", "update-key-alias", fx_kid_with(id, "\"key_alias\":\"app2\""), &r),
		   0);
	ASSERT_STREQ(fx_last(),
		     fx_fmt("{\"key_info\":{\"key_id\":\"%s\",\"key_alias\":\"app2\"}}\n", id));
	ASSERT_STREQ(describe_field("ua", id, "key_alias"), "app2");
	ASSERT_ERR(pcall("ua", "describe-key", "{\"key_id\":\"alias/app\"}", NULL),
		   KMS_E_KEY_NOT_FOUND);
	ASSERT_ERR(pcall("ua", "describe-key", "{\"key_id\":\"alias/app2\"}", &r), 0);
	ASSERT_STREQ(fx_str(r, "key_info.key_id"), id);
	ASSERT_ERR(pcall("ua", "describe-key", fx_fmt("{\"key_id\":\"%s\"}", fx_urn("app2")), &r),
		   0);
	ASSERT_STREQ(fx_str(r, "key_info.key_id"), id);
	/* Every allowed character; in the key folder; renaming to its own alias; by alias. */
	ASSERT_ERR(call("ua", "update-key-alias", API_SCOPE_KEY, id,
			"{\"key_alias\":\"team/App_1:x-Y\"}", &r),
		   0);
	ASSERT_STREQ(fx_str(r, "key_info.key_alias"), "team/App_1:x-Y");
	ASSERT_ERR(call("ua", "update-key-alias", API_SCOPE_KEY, id,
			"{\"key_alias\":\"team/App_1:x-Y\"}", NULL),
		   0);
	ASSERT_ERR(pcall("ua", "update-key-alias",
			 "{\"key_id\":\"alias/team/App_1:x-Y\",\"key_alias\":\"final\"}", &r),
		   0);
	ASSERT_STREQ(fx_str(r, "key_info.key_id"), id);
	ASSERT_STREQ(describe_field("ua", id, "key_alias"), "final");
	/* A 255-character alias is allowed. */
	{
		char a[256];

		memset(a, 'a', 255);
		a[255] = 0;
		ASSERT_ERR(pcall("ua", "update-key-alias",
				 fx_fmt("{\"key_id\":\"%s\",\"key_alias\":\"%s\"}", id, a), &r),
			   0);
		ASSERT_STREQ(fx_str(r, "key_info.key_alias"), a);
	}
}

TEST(update_key_alias_1101_1104)
{
	static const char *const bad[] = {
		"\"\"",		"\"bad alias\"",  "\"semi;colon\"", "\"x/default\"",
		"\"/default\"", "\"caf\\u00e9\"", "\"a.b\"",	    "5",
		"true",		"[\"a\"]",
	};
	char id[FX_ID_LEN], other[FX_ID_LEN], long_alias[257];

	STEP(fx_key("ua-err", "app", id));
	STEP(fx_key("ua-err", "other", other));
	STEP(fx_member_refuses("ua-err", "update-key-alias", id, "key_alias", bad,
			       KMS_ARRAY_SIZE(bad), KMS_E_ALIAS_INVALID,
			       FX_ERROR_LINE("KMS.1101", "Invalid key_alias.")));
	memset(long_alias, 'a', 256);
	long_alias[256] = 0;
	ASSERT_ERR(pcall("ua-err", "update-key-alias",
			 fx_fmt("{\"key_id\":\"%s\",\"key_alias\":\"%s\"}", id, long_alias), NULL),
		   KMS_E_ALIAS_INVALID);
	STEP(fx_member_required("ua-err", "update-key-alias", id, "key_alias"));
	/* Another key's alias: KMS.1104, and neither key changes. */
	ASSERT_ERR(pcall("ua-err", "update-key-alias", fx_kid_with(id, "\"key_alias\":\"other\""),
			 NULL),
		   KMS_E_ALIAS_DUPLICATE);
	ASSERT_LAST_ERROR("KMS.1104", "Duplicate key aliases.");
	ASSERT_ERR(call("ua-err", "update-key-alias", API_SCOPE_KEY, other,
			"{\"key_alias\":\"app\"}", NULL),
		   KMS_E_ALIAS_DUPLICATE);
	ASSERT_STREQ(describe_field("ua-err", id, "key_alias"), "app");
	ASSERT_STREQ(describe_field("ua-err", other, "key_alias"), "other");
	/* The alias of a key of another project is free here. */
	ASSERT_ERR(pcall("ua-err2", "create-key", "{\"key_alias\":\"taken\"}", NULL), 0);
	ASSERT_ERR(pcall("ua-err", "update-key-alias", fx_kid_with(id, "\"key_alias\":\"taken\""),
			 NULL),
		   0);
	/* Once renamed, the old alias is free. */
	ASSERT_ERR(pcall("ua-err", "update-key-alias", fx_kid_with(other, "\"key_alias\":\"app\""),
			 NULL),
		   0);
}

TEST(update_key_description)
{
	char id[FX_ID_LEN], d255[4 * 255 + 1];
	cJSON *r = NULL;

	STEP(fx_key("ud", "app", id));
	ASSERT_ERR(pcall("ud", "update-key-description",
			 fx_kid_with(id, "\"key_description\":\"first key\""), &r),
		   0);
	ASSERT_STREQ(fx_last(), fx_fmt("{\"key_info\":{\"key_id\":\"%s\",\"key_description\":"
				       "\"first key\"}}\n",
				       id));
	ASSERT_STREQ(describe_field("ud", id, "key_description"), "first key");
	/* 0..255 characters, counted as characters (UTF-8), in the key folder too. */
	ASSERT_ERR(call("ud", "update-key-description", API_SCOPE_KEY, id,
			"{\"key_description\":\"\"}", &r),
		   0);
	ASSERT_STREQ(fx_str(r, "key_info.key_description"), "");
	ASSERT_STREQ(describe_field("ud", id, "key_description"), "");
	d255[0] = 0;
	for (int i = 0; i < 255; i++)
		strcat(d255, "\xc3\xa4"); /* ä */
	ASSERT_ERR(pcall("ud", "update-key-description",
			 fx_fmt("{\"key_id\":\"%s\",\"key_description\":\"%s\"}", id, d255), &r),
		   0);
	ASSERT_STREQ(fx_str(r, "key_info.key_description"), d255);
	ASSERT_STREQ(describe_field("ud", id, "key_description"), d255);
	ASSERT_ERR(pcall("ud", "update-key-description",
			 fx_kid_with(id, "\"key_description\":\"quote \\\" and \\\\\""), &r),
		   0);
	ASSERT_STREQ(fx_str(r, "key_info.key_description"), "quote \" and \\");
}

TEST(update_key_description_1103)
{
	static const char *const not_strings[] = { "5", "[]" };
	char id[FX_ID_LEN], d256[257];

	STEP(fx_key("ud-err", "app", id));
	ASSERT_ERR(pcall("ud-err", "update-key-description",
			 fx_kid_with(id, "\"key_description\":\"keep\""), NULL),
		   0);
	memset(d256, 'd', 256);
	d256[256] = 0;
	ASSERT_ERR(pcall("ud-err", "update-key-description",
			 fx_fmt("{\"key_id\":\"%s\",\"key_description\":\"%s\"}", id, d256), NULL),
		   KMS_E_DESCRIPTION_INVALID);
	ASSERT_LAST_ERROR("KMS.1103", "Invalid key_description.");
	STEP(fx_member_refuses("ud-err", "update-key-description", id, "key_description",
			       not_strings, KMS_ARRAY_SIZE(not_strings), KMS_E_DESCRIPTION_INVALID,
			       NULL));
	ASSERT_ERR(pcall("ud-err", "update-key-description", fx_kid(id), NULL), KMS_E_MISSING);
	ASSERT_STREQ(describe_field("ud-err", id, "key_description"), "keep");
}

/* ---- rotation (4.8) ---- */

TEST(rotation_status_of_new_key)
{
	char id[FX_ID_LEN];

	STEP(fx_key("rs", "app", id));
	ASSERT_ERR(pcall("rs", "get-key-rotation-status", fx_kid(id), NULL), 0);
	/* key_rotation_enabled a JSON boolean, as the API's example; default interval 365. */
	ASSERT_STREQ(fx_last(), "{\"key_rotation_enabled\":false,\"rotation_interval\":365,"
				"\"last_rotation_time\":\"\",\"number_of_rotations\":0}\n");
	ASSERT_ERR(call("rs", "get-key-rotation-status", API_SCOPE_KEY, id, "", NULL), 0);
	ASSERT_STREQ(fx_last(), "{\"key_rotation_enabled\":false,\"rotation_interval\":365,"
				"\"last_rotation_time\":\"\",\"number_of_rotations\":0}\n");
}

TEST(enable_disable_key_rotation)
{
	char id[FX_ID_LEN];
	cJSON *r = NULL;

	STEP(fx_key("er", "app", id));
	/* No body in the API: {} here. */
	ASSERT_ERR(pcall("er", "enable-key-rotation", fx_kid(id), NULL), 0);
	ASSERT_STREQ(fx_last(), "{}\n");
	ASSERT_ERR(pcall("er", "get-key-rotation-status", fx_kid(id), &r), 0);
	ASSERT_TRUE(cJSON_IsTrue(fx_get(r, "key_rotation_enabled")));
	ASSERT_EQ(fx_num(r, "rotation_interval"), 365);
	ASSERT_EQ(fx_num(r, "number_of_rotations"), 0);
	/* In key objects it is the string "true". */
	ASSERT_STREQ(describe_field("er", id, "key_rotation_enabled"), "true");
	ASSERT_ERR(pcall("er", "enable-key-rotation", fx_kid(id), NULL),
		   KMS_E_ROTATION_NOT_DISABLED);
	ASSERT_LAST_ERROR("KMS.2901", "Key rotation is not disabled.");
	ASSERT_ERR(call("er", "disable-key-rotation", API_SCOPE_KEY, id, "", NULL), 0);
	ASSERT_STREQ(fx_last(), "{}\n");
	ASSERT_ERR(pcall("er", "get-key-rotation-status", fx_kid(id), &r), 0);
	ASSERT_TRUE(cJSON_IsFalse(fx_get(r, "key_rotation_enabled")));
	ASSERT_STREQ(describe_field("er", id, "key_rotation_enabled"), "false");
	ASSERT_ERR(pcall("er", "disable-key-rotation", fx_kid(id), NULL),
		   KMS_E_ROTATION_NOT_ENABLED);
	ASSERT_LAST_ERROR("KMS.0313", "Key rotation is not enabled.");
	ASSERT_ERR(call("er", "enable-key-rotation", API_SCOPE_KEY, id, "{}", NULL), 0);
	ASSERT_STREQ(describe_field("er", id, "key_rotation_enabled"), "true");
}

TEST(update_key_rotation_interval)
{
	static const char *const bad[] = {
		"29",	"366",	  "0",	     "-1",	"\"abc\"", "\"\"", "30.5",
		"true", "\"29\"", "\"366\"", "\" 90\"", "[90]",	   "1e9",
	};
	static const struct {
		const char *v;
		int days;
	} good[] = { { "30", 30 }, { "365", 365 }, { "\"90\"", 90 }, { "180.0", 180 } };
	char id[FX_ID_LEN];
	cJSON *r = NULL;

	STEP(fx_key("ri", "app", id));
	/* Rotation off: KMS.0313. */
	ASSERT_ERR(pcall("ri", "update-key-rotation-interval",
			 fx_kid_with(id, "\"rotation_interval\":90"), NULL),
		   KMS_E_ROTATION_NOT_ENABLED);
	ASSERT_ERR(pcall("ri", "enable-key-rotation", fx_kid(id), NULL), 0);
	STEP(fx_member_refuses("ri", "update-key-rotation-interval", id, "rotation_interval", bad,
			       KMS_ARRAY_SIZE(bad), KMS_E_ROTATION_INTERVAL,
			       FX_ERROR_LINE("KMS.3001", "Invalid rotation_interval.")));
	STEP(fx_member_required("ri", "update-key-rotation-interval", id, "rotation_interval"));
	ASSERT_ERR(pcall("ri", "get-key-rotation-status", fx_kid(id), &r), 0);
	ASSERT_EQ(fx_num(r, "rotation_interval"), 365);
	for (size_t i = 0; i < KMS_ARRAY_SIZE(good); i++) {
		ASSERT_ERR(
			pcall("ri", "update-key-rotation-interval",
			      fx_fmt("{\"key_id\":\"%s\",\"rotation_interval\":%s}", id, good[i].v),
			      NULL),
			0);
		ASSERT_STREQ(fx_last(), "{}\n");
		ASSERT_ERR(pcall("ri", "get-key-rotation-status", fx_kid(id), &r), 0);
		ASSERT_EQ(fx_num(r, "rotation_interval"), good[i].days);
	}
	ASSERT_ERR(call("ri", "update-key-rotation-interval", API_SCOPE_KEY, id,
			"{\"rotation_interval\":45}", NULL),
		   0);
	/* Rotation off again: the interval stays, and cannot be changed. */
	ASSERT_ERR(pcall("ri", "disable-key-rotation", fx_kid(id), NULL), 0);
	ASSERT_ERR(pcall("ri", "update-key-rotation-interval",
			 fx_kid_with(id, "\"rotation_interval\":60"), NULL),
		   KMS_E_ROTATION_NOT_ENABLED);
	ASSERT_ERR(pcall("ri", "get-key-rotation-status", fx_kid(id), &r), 0);
	ASSERT_TRUE(cJSON_IsFalse(fx_get(r, "key_rotation_enabled")));
	ASSERT_EQ(fx_num(r, "rotation_interval"), 45);
}

/* ---- rotate-key (kmsfs extension; docs/using.md, Actions) ---- */

TEST(rotate_key_versions)
{
	char id[FX_ID_LEN];
	struct fx_blobs made[3]; /* at versions 0, 1, 2 */
	cJSON *r = NULL;

	STEP(fx_key("rk", "app", id));
	for (unsigned v = 0; v < 3; v++) {
		if (v > 0) {
			int64_t before = kms_time_real_ms(), after, last;

			ASSERT_ERR(pcall("rk", "rotate-key", fx_kid(id), &r), 0);
			after = kms_time_real_ms();
			ASSERT_STREQ(fx_last(), fx_fmt("{\"key_id\":\"%s\",\"key_version\":\"%u\","
						       "\"number_of_rotations\":%u}\n",
						       id, v, v));
			ASSERT_ERR(pcall("rk", "get-key-rotation-status", fx_kid(id), &r), 0);
			ASSERT_EQ(fx_num(r, "number_of_rotations"), v);
			/* Rotation stays off: rotate-key does not need it. */
			ASSERT_TRUE(cJSON_IsFalse(fx_get(r, "key_rotation_enabled")));
			last = strtoll(fx_str(r, "last_rotation_time"), NULL, 10);
			ASSERT_LE(before, last);
			ASSERT_LE(last, after);
		}
		/* New ciphertexts carry the newest version. */
		STEP(fx_blobs_in(fx_svc(), "rk", id, fx_fmt("v%u", v), &made[v]));
		ASSERT_EQ(blob_version(made[v].dk, false), v);
		ASSERT_EQ(blob_version(made[v].data, true), v);
		ASSERT_ERR(pcall("rk", "create-datakey-without-plaintext", fx_kid(id), &r), 0);
		ASSERT_EQ(blob_version(fx_str(r, "cipher_text"), false), v);
		{
			uint8_t dek[32] = { 1, 2, 3 };
			char pt[2 * 64 + 1], dg[65];

			kms_hex_encode(dek, sizeof(dek), pt);
			fx_sha256_hex(dek, sizeof(dek), dg);
			ASSERT_ERR(pcall("rk", "encrypt-datakey",
					 fx_fmt("{\"key_id\":\"%s\",\"plain_text\":\"%s%s\","
						"\"datakey_plain_length\":\"32\"}",
						id, pt, dg),
					 &r),
				   0);
			ASSERT_EQ(blob_version(fx_str(r, "cipher_text"), false), v);
		}
		/* Every ciphertext made so far still decrypts. */
		for (unsigned w = 0; w <= v; w++) {
			ASSERT_ERR(
				pcall("rk", "decrypt-datakey", fx_unwrap_req(id, made[w].dk), &r),
				0);
			ASSERT_STREQ(fx_str(r, "data_key"), made[w].plain);
			ASSERT_ERR(pcall("rk", "decrypt-data",
					 fx_fmt("{\"cipher_text\":\"%s\"}", made[w].data), &r),
				   0);
			ASSERT_STREQ(fx_str(r, "plain_text"), fx_fmt("v%u", w));
		}
	}
	/* Key id, alias and state are unchanged; in the key folder too. */
	ASSERT_STREQ(describe_field("rk", id, "key_alias"), "app");
	ASSERT_STREQ(describe_field("rk", id, "key_state"), "2");
	ASSERT_ERR(call("rk", "rotate-key", API_SCOPE_KEY, id, "", &r), 0);
	ASSERT_STREQ(fx_str(r, "key_version"), "3");
	ASSERT_EQ(fx_num(r, "number_of_rotations"), 3);
}

/* Huawei's name for rotate-key (POST /kms/rotate-on-demand, {"key_id"} -> {"key_id"}), in the
 * project folder and the key folder: each call adds a version, as rotate-key does. */
TEST(rotate_on_demand)
{
	char id[FX_ID_LEN], ct[HEX_MAX];
	cJSON *r = NULL;

	STEP(fx_key("rod", "app", id));
	ASSERT_TRUE(api_action_find("rotate-on-demand", API_SCOPE_PROJECT) != NULL);
	ASSERT_TRUE(api_action_find("rotate-on-demand", API_SCOPE_KEY) != NULL);
	ASSERT_EQ(api_action_find("rotate-on-demand", API_SCOPE_KEY)->min_role, KMS_ROLE_ADMIN);
	ASSERT_ERR(pcall("rod", "create-datakey", fx_kid(id), &r), 0);
	fx_cp(ct, sizeof(ct), fx_str(r, "cipher_text"));
	ASSERT_ERR(pcall("rod", "rotate-on-demand",
			 fx_fmt("{\"key_id\":\"%s\",\"sequence\":\"" SEQ "\"}", id), &r),
		   0);
	ASSERT_STREQ(fx_last(), fx_fmt("{\"key_id\":\"%s\"}\n", id));
	ASSERT_ERR(call("rod", "rotate-on-demand", API_SCOPE_KEY, id, "", &r), 0);
	ASSERT_STREQ(fx_last(), fx_fmt("{\"key_id\":\"%s\"}\n", id));
	ASSERT_ERR(pcall("rod", "rotate-on-demand", "{\"key_id\":\"alias/app\"}", &r), 0);
	ASSERT_STREQ(fx_str(r, "key_id"), id);
	ASSERT_ERR(pcall("rod", "get-key-rotation-status", fx_kid(id), &r), 0);
	ASSERT_EQ(fx_num(r, "number_of_rotations"), 3);
	ASSERT_ERR(pcall("rod", "create-datakey-without-plaintext", fx_kid(id), &r), 0);
	ASSERT_EQ(blob_version(fx_str(r, "cipher_text"), false), 3);
	ASSERT_EQ(blob_version(ct, false), 0);
	ASSERT_ERR(pcall("rod", "decrypt-datakey", fx_unwrap_req(id, ct), NULL), 0);
}

/* docs/api-differences.md, Rotation: at most 64 material versions; one more answers KMS.0308. */
static void body_version_limit(struct fx_own *o)
{
	char id[FX_ID_LEN], first[HEX_MAX], pfirst[HEX_MAX];
	cJSON *r = NULL;
	size_t deleted = 9, rotated = 9;

	STEP(own_key(o, "vl", "app", id));
	ASSERT_ERR(ocall(o, "vl", "create-datakey", fx_kid(id), &r), 0);
	fx_cp(first, sizeof(first), fx_str(r, "cipher_text"));
	fx_cp(pfirst, sizeof(pfirst), fx_str(r, "plain_text"));
	for (unsigned v = 1; v <= 63; v++) {
		ASSERT_ERR(ocall(o, "vl", "rotate-key", fx_kid(id), &r), 0);
		ASSERT_STREQ(fx_str(r, "key_version"), fx_fmt("%u", v));
	}
	ASSERT_ERR(ocall(o, "vl", "rotate-key", fx_kid(id), NULL), KMS_E_BAD_PARAM);
	ASSERT_LAST_ERROR("KMS.0308", "Invalid parameter.");
	ASSERT_ERR(ocall(o, "vl", "get-key-rotation-status", fx_kid(id), &r), 0);
	ASSERT_EQ(fx_num(r, "number_of_rotations"), 63);
	/* The key keeps working on version 63; version 0 still decrypts. */
	ASSERT_ERR(ocall(o, "vl", "create-datakey-without-plaintext", fx_kid(id), &r), 0);
	ASSERT_EQ(blob_version(fx_str(r, "cipher_text"), false), 63);
	ASSERT_ERR(ocall(o, "vl", "decrypt-datakey", fx_unwrap_req(id, first), &r), 0);
	ASSERT_STREQ(fx_str(r, "data_key"), pfirst);
	/* Automatic rotation leaves it alone, without failing the sweep. */
	ASSERT_ERR(ocall(o, "vl", "enable-key-rotation", fx_kid(id), NULL), 0);
	ASSERT_EQ(store_sweep(o->st, kms_time_real_ms() + 3650 * DAY_MS, &deleted, &rotated), 0);
	ASSERT_EQ(rotated, 0);
	ASSERT_ERR(ocall(o, "vl", "get-key-rotation-status", fx_kid(id), &r), 0);
	ASSERT_EQ(fx_num(r, "number_of_rotations"), 63);
	{
		size_t checked = 0;

		ASSERT_EQ(store_check(o->st, check_cb, NULL, &checked), 0);
		ASSERT_EQ(checked, 64); /* versions */
	}
}

TEST(rotate_key_version_limit_0308)
{
	with_own_store(body_version_limit);
}
