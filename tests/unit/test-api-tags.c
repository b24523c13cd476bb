/* test-api-tags.c - tags, counters, quotas and versions (kms-api.md sections 4.9, 4.11, 5):
 * keys/<id>/tags (list with an empty request, add with {"tag":...}), keys/<id>/delete-tag,
 * keys/<id>/tags-action (create/delete in batches), <P>/tags (project tags),
 * <P>/resource_instances-action (filter and count by tags and resource_name), the tag limits
 * (key 1..36 characters, value 0..43, none of *<>\= or control characters, 10 tags per key:
 * KMS.0401, 0402, 0403, 0404, 0405, 0406, 0407, 0409, 0410, 0411, 0412, 0416, 0417), user-instances, user-quotas
 * (the key quota, KMS.1105) and versions / version (docs/using.md, Actions).
 */
#include "kms_test_api.h"

/* The key-folder actions: keys/<id>/<action>. */
static int kcall(const char *project, const char *id, const char *action, const char *json,
		 cJSON **r)
{
	return call(project, action, API_SCOPE_KEY, id, json, r);
}

static int add_tag(const char *project, const char *id, const char *k, const char *v)
{
	return kcall(project, id, "tags",
		     fx_fmt("{\"tag\":{\"key\":\"%s\",\"value\":\"%s\"}}", k, v), NULL);
}

/* The exact text of keys/<id>/tags, listed (valid until the next call). */
static const char *tags_text(const char *project, const char *id)
{
	if (kcall(project, id, "tags", "", NULL) != 0)
		return "(failed)";
	return fx_last();
}

/* action as the user "tagger" with role; path_key_id non-NULL: in that key folder. */
static int role_call(const char *project, enum kms_role role, const char *action,
		     const char *path_key_id, const char *json)
{
	return ucall(project, "tagger", role, action, path_key_id, json, NULL);
}

static char *repeat(char *out, const char *unit, int n)
{
	out[0] = 0;
	for (int i = 0; i < n; i++)
		strcat(out, unit);
	return out;
}

/* ---- keys/<id>/tags: add and list (4.11) ---- */

TEST(key_tags_add_and_list)
{
	char id[FX_ID_LEN], other[FX_ID_LEN], k36[4 * 36 + 1], v43[44];
	cJSON *r = NULL;

	STEP(fx_key("kt", "app", id));
	STEP(fx_key("kt", "other", other));
	ASSERT_STREQ(tags_text("kt", id), "{\"tags\":[],\"sys_tags\":[],\"existTagsNum\":0}\n");
	/* Adding answers {} (the API's 204). */
	ASSERT_ERR(add_tag("kt", id, "env", "prod"), 0);
	ASSERT_STREQ(fx_last(), "{}\n");
	ASSERT_STREQ(tags_text("kt", id), "{\"tags\":[{\"key\":\"env\",\"value\":\"prod\"}],"
					  "\"sys_tags\":[],\"existTagsNum\":1}\n");
	/* A second tag; the same key again replaces the value; an empty value is allowed. */
	ASSERT_ERR(add_tag("kt", id, "team", "blue"), 0);
	ASSERT_ERR(add_tag("kt", id, "env", "staging"), 0);
	ASSERT_ERR(add_tag("kt", id, "empty", ""), 0);
	ASSERT_STREQ(tags_text("kt", id),
		     "{\"tags\":[{\"key\":\"empty\",\"value\":\"\"},{\"key\":\"env\",\"value\":"
		     "\"staging\"},{\"key\":\"team\",\"value\":\"blue\"}],\"sys_tags\":[],"
		     "\"existTagsNum\":3}\n");
	/* An empty request, {}, a key_id naming the folder's key, or a sequence: all list. */
	ASSERT_ERR(kcall("kt", id, "tags", "{}", &r), 0);
	ASSERT_EQ(fx_num(r, "existTagsNum"), 3);
	ASSERT_ERR(kcall("kt", id, "tags", fx_fmt("{\"key_id\":\"%s\"}", id), &r), 0);
	ASSERT_EQ(fx_num(r, "existTagsNum"), 3);
	ASSERT_ERR(kcall("kt", id, "tags",
			 "{\"sequence\":\"919c82d4-8046-4722-9094-35c3c6524cff\"}", &r),
		   0);
	ASSERT_EQ(fx_num(r, "existTagsNum"), 3);
	/* The longest key (36 characters, counted as characters) and value (43). */
	ASSERT_ERR(add_tag("kt", other, repeat(k36, "\xc3\xa4", 36), repeat(v43, "v", 43)), 0);
	ASSERT_ERR(kcall("kt", other, "tags", "", &r), 0);
	ASSERT_STREQ(fx_str(cJSON_GetArrayItem(fx_get(r, "tags"), 0), "key"), k36);
	ASSERT_STREQ(fx_str(cJSON_GetArrayItem(fx_get(r, "tags"), 0), "value"), v43);
	/* Other characters are fine: blanks, ':', '/', '-', '.', quotes. */
	ASSERT_ERR(add_tag("kt", other, "a b:c/d-e.f\\\"", "x y:z/\\\"q"), 0);
	ASSERT_ERR(kcall("kt", other, "tags", "", &r), 0);
	ASSERT_EQ(fx_num(r, "existTagsNum"), 2);
	/* Each key's own tags. */
	ASSERT_ERR(kcall("kt", id, "tags", "", &r), 0);
	ASSERT_EQ(fx_num(r, "existTagsNum"), 3);
}

/* Each JSON text of bad, as the key (value: false) or the value of a tag of key id: err. */
static void tag_refuses_each(const char *id, bool value, const char *const *bad, size_t n, int err)
{
	for (size_t i = 0; i < n; i++)
		EXPECT(bad[i],
		       kcall("kte", id, "tags",
			     value ? fx_fmt("{\"tag\":{\"key\":\"k\",\"value\":%s}}", bad[i])
				   : fx_fmt("{\"tag\":{\"key\":%s,\"value\":\"v\"}}", bad[i]),
			     NULL),
		       err);
}

TEST(key_tags_errors)
{
	static const char *const bad_key[] = {
		"\"a=b\"",   "\"a*b\"",	      "\"a<b\"", "\"a>b\"", "\"a\\\\b\"",
		"\"a\\tb\"", "\"a\\u001fb\"", "5",	 "null",    "[\"a\"]",
	};
	static const char *const bad_value[] = {
		"\"a=b\"", "\"x*\"", "\"<\"", "\">\"", "\"\\\\\"", "\"\\n\"", "5", "true", "{}",
	};
	char id[FX_ID_LEN], k37[38], v44[45];

	STEP(fx_key("kte", "app", id));
	STEP(tag_refuses_each(id, false, bad_key, KMS_ARRAY_SIZE(bad_key), KMS_E_TAG_KEY));
	ASSERT_LAST_ERROR("KMS.0406", "Invalid tag key.");
	/* Length is its own code: KMS.0411 for keys, KMS.0410 for values. */
	EXPECT("37 characters", add_tag("kte", id, repeat(k37, "k", 37), "v"),
	       KMS_E_TAG_KEY_LENGTH);
	ASSERT_LAST_ERROR("KMS.0411", "Invalid tag key length.");
	EXPECT("empty key", add_tag("kte", id, "", "v"), KMS_E_TAG_KEY_LENGTH);
	STEP(tag_refuses_each(id, true, bad_value, KMS_ARRAY_SIZE(bad_value), KMS_E_TAG_VALUE));
	ASSERT_LAST_ERROR("KMS.0405", "Invalid tag value.");
	EXPECT("44 characters", add_tag("kte", id, "k", repeat(v44, "v", 44)),
	       KMS_E_TAG_VALUE_LENGTH);
	ASSERT_LAST_ERROR("KMS.0410", "Invalid tag value length.");
	/* The tag itself: not an object KMS.0412; without key or value KMS.0204. */
	EXPECT("tag string", kcall("kte", id, "tags", "{\"tag\":\"env\"}", NULL), KMS_E_TAG_LIST);
	EXPECT("tag array", kcall("kte", id, "tags", "{\"tag\":[]}", NULL), KMS_E_TAG_LIST);
	ASSERT_LAST_ERROR("KMS.0412", "Invalid tag list.");
	EXPECT("no key", kcall("kte", id, "tags", "{\"tag\":{\"value\":\"v\"}}", NULL),
	       KMS_E_MISSING);
	EXPECT("no value", kcall("kte", id, "tags", "{\"tag\":{\"key\":\"k\"}}", NULL),
	       KMS_E_MISSING);
	EXPECT("sequence",
	       kcall("kte", id, "tags",
		     "{\"tag\":{\"key\":\"k\",\"value\":\"v\"},\"sequence\":\"s\"}", NULL),
	       KMS_E_BAD_SEQUENCE);
	EXPECT("other key",
	       kcall("kte", id, "tags",
		     fx_kid_with(FX_NO_KEY, "\"tag\":{\"key\":\"k\",\"value\":\"v\"}"), NULL),
	       KMS_E_BAD_KEY_ID);
	ASSERT_STREQ(tags_text("kte", id), "{\"tags\":[],\"sys_tags\":[],\"existTagsNum\":0}\n");
	/* A key pending deletion takes no new tags (docs/api-differences.md, States). */
	ASSERT_ERR(pcall("kte", "schedule-key-deletion", fx_kid_with(id, "\"pending_days\":\"7\""),
			 NULL),
		   0);
	EXPECT("pending", add_tag("kte", id, "k", "v"), KMS_E_KEY_PENDING_DELETION);
	ASSERT_STREQ(tags_text("kte", id), "{\"tags\":[],\"sys_tags\":[],\"existTagsNum\":0}\n");
}

/* 10 tags per key (kms-api.md 4.11, 5): the 11th is KMS.0409; replacing one is not adding. */
TEST(key_tags_limit_0409)
{
	char id[FX_ID_LEN];
	cJSON *r = NULL;

	STEP(fx_key("ktl", "app", id));
	for (int i = 0; i < 10; i++)
		ASSERT_ERR(add_tag("ktl", id, fx_fmt("t%d", i), "v"), 0);
	ASSERT_ERR(add_tag("ktl", id, "t10", "v"), KMS_E_TOO_MANY_TAGS);
	ASSERT_LAST_ERROR("KMS.0409", "Too many tags.");
	ASSERT_ERR(add_tag("ktl", id, "t9", "new"), 0);
	ASSERT_ERR(kcall("ktl", id, "tags-action",
			 "{\"action\":\"create\",\"tags\":[{\"key\":\"t10\",\"value\":\"v\"}]}",
			 NULL),
		   KMS_E_TOO_MANY_TAGS);
	ASSERT_ERR(kcall("ktl", id, "tags", "", &r), 0);
	ASSERT_EQ(fx_num(r, "existTagsNum"), 10);
	ASSERT_STREQ(fx_str(cJSON_GetArrayItem(fx_get(r, "tags"), 9), "value"), "new");
	/* After a deletion there is room for one. */
	ASSERT_ERR(kcall("ktl", id, "delete-tag", "{\"key\":\"t0\"}", NULL), 0);
	ASSERT_ERR(add_tag("ktl", id, "t10", "v"), 0);
	ASSERT_ERR(add_tag("ktl", id, "t11", "v"), KMS_E_TOO_MANY_TAGS);
}

/* Listing is a viewer's; adding, delete-tag and tags-action need admin (docs/using.md, Actions). */
TEST(key_tags_roles)
{
	char id[FX_ID_LEN];
	const char *add = "{\"tag\":{\"key\":\"a\",\"value\":\"b\"}}";

	STEP(fx_key("ktr", "app", id));
	ASSERT_ERR(role_call("ktr", KMS_ROLE_VIEWER, "tags", id, ""), 0);
	ASSERT_ERR(role_call("ktr", KMS_ROLE_VIEWER, "tags", NULL, ""), 0);
	ASSERT_ERR(role_call("ktr", KMS_ROLE_NONE, "tags", id, ""), KMS_E_FORBIDDEN);
	ASSERT_ERR(role_call("ktr", KMS_ROLE_VIEWER, "tags", id, add), KMS_E_FORBIDDEN);
	ASSERT_ERR(role_call("ktr", KMS_ROLE_CRYPTO, "tags", id, add), KMS_E_FORBIDDEN);
	ASSERT_ERR(role_call("ktr", KMS_ROLE_CRYPTO, "tags-action", id,
			     "{\"action\":\"create\",\"tags\":[{\"key\":\"a\",\"value\":\"b\"}]}"),
		   KMS_E_FORBIDDEN);
	ASSERT_STREQ(tags_text("ktr", id), "{\"tags\":[],\"sys_tags\":[],\"existTagsNum\":0}\n");
	ASSERT_ERR(role_call("ktr", KMS_ROLE_ADMIN, "tags", id, add), 0);
	ASSERT_ERR(role_call("ktr", KMS_ROLE_CRYPTO, "delete-tag", id, "{\"key\":\"a\"}"),
		   KMS_E_FORBIDDEN);
	ASSERT_ERR(role_call("ktr", KMS_ROLE_VIEWER, "resource_instances-action", NULL,
			     "{\"action\":\"count\"}"),
		   0);
	ASSERT_ERR(role_call("ktr", KMS_ROLE_ADMIN, "delete-tag", id, "{\"key\":\"a\"}"), 0);
	ASSERT_STREQ(tags_text("ktr", id), "{\"tags\":[],\"sys_tags\":[],\"existTagsNum\":0}\n");
}

/* ---- keys/<id>/delete-tag ---- */

TEST(delete_tag)
{
	char id[FX_ID_LEN], k37[38];

	STEP(fx_key("dt", "app", id));
	ASSERT_ERR(add_tag("dt", id, "env", "prod"), 0);
	ASSERT_ERR(add_tag("dt", id, "team", "red"), 0);
	ASSERT_ERR(kcall("dt", id, "delete-tag", "{\"key\":\"env\"}", NULL), 0);
	ASSERT_STREQ(fx_last(), "{}\n");
	ASSERT_STREQ(tags_text("dt", id), "{\"tags\":[{\"key\":\"team\",\"value\":\"red\"}],"
					  "\"sys_tags\":[],\"existTagsNum\":1}\n");
	/* A tag the key does not have: KMS.0416 (404). */
	ASSERT_ERR(kcall("dt", id, "delete-tag", "{\"key\":\"env\"}", NULL), KMS_E_TAG_NOT_FOUND);
	ASSERT_LAST_ERROR("KMS.0416", "Invalid tag ID.");
	ASSERT_EQ(kms_err_info(KMS_E_TAG_NOT_FOUND)->http, 404);
	ASSERT_ERR(kcall("dt", id, "delete-tag", "{}", NULL), KMS_E_MISSING);
	ASSERT_ERR(kcall("dt", id, "delete-tag", "{\"key\":\"\"}", NULL), KMS_E_TAG_KEY_LENGTH);
	ASSERT_ERR(kcall("dt", id, "delete-tag", "{\"key\":\"a=b\"}", NULL), KMS_E_TAG_KEY);
	ASSERT_ERR(kcall("dt", id, "delete-tag", fx_fmt("{\"key\":\"%s\"}", repeat(k37, "k", 37)),
			 NULL),
		   KMS_E_TAG_KEY_LENGTH);
	ASSERT_ERR(kcall("dt", id, "delete-tag", "{\"key\":5}", NULL), KMS_E_TAG_KEY);
	ASSERT_ERR(kcall("dt", id, "delete-tag", "{\"key\":\"team\",\"sequence\":\"s\"}", NULL),
		   KMS_E_BAD_SEQUENCE);
	ASSERT_ERR(kcall("dt", id, "delete-tag",
			 fx_fmt("{\"key\":\"team\",\"key_id\":\"%s\"}", FX_NO_KEY), NULL),
		   KMS_E_BAD_KEY_ID);
	/* Key folders only: there is no <P>/delete-tag (nor <P>/tags-action). */
	ASSERT_ERR(pcall("dt", "delete-tag", fx_kid_with(id, "\"key\":\"team\""), NULL),
		   KMS_E_BAD_URL);
	ASSERT_ERR(pcall("dt", "tags-action",
			 fx_kid_with(id, "\"action\":\"delete\","
					 "\"tags\":[{\"key\":\"team\"}]"),
			 NULL),
		   KMS_E_BAD_URL);
	ASSERT_LAST_ERROR("KMS.0201", "Invalid request URL.");
	ASSERT_STREQ(tags_text("dt", id), "{\"tags\":[{\"key\":\"team\",\"value\":\"red\"}],"
					  "\"sys_tags\":[],\"existTagsNum\":1}\n");
}

/* ---- keys/<id>/tags-action ---- */

TEST(tags_action_create_delete)
{
	char id[FX_ID_LEN];

	STEP(fx_key("ta", "app", id));
	ASSERT_ERR(kcall("ta", id, "tags-action",
			 "{\"action\":\"create\",\"tags\":[{\"key\":\"env\",\"value\":\"prod\"},"
			 "{\"key\":\"team\",\"value\":\"red\"},{\"key\":\"tmp\",\"value\":\"\"}]}",
			 NULL),
		   0);
	ASSERT_STREQ(fx_last(), "{}\n");
	ASSERT_STREQ(tags_text("ta", id),
		     "{\"tags\":[{\"key\":\"env\",\"value\":\"prod\"},{\"key\":\"team\",\"value\":"
		     "\"red\"},{\"key\":\"tmp\",\"value\":\"\"}],\"sys_tags\":[],"
		     "\"existTagsNum\":3}\n");
	/* delete: values are optional; a tag that is not there is no error. */
	ASSERT_ERR(kcall("ta", id, "tags-action",
			 "{\"action\":\"delete\",\"tags\":[{\"key\":\"tmp\"},{\"key\":\"gone\"},"
			 "{\"key\":\"team\",\"value\":\"whatever\"}]}",
			 NULL),
		   0);
	ASSERT_STREQ(fx_last(), "{}\n");
	ASSERT_STREQ(tags_text("ta", id), "{\"tags\":[{\"key\":\"env\",\"value\":\"prod\"}],"
					  "\"sys_tags\":[],\"existTagsNum\":1}\n");
	/* create replaces values; 10 items are allowed in one request. */
	ASSERT_ERR(kcall("ta", id, "tags-action",
			 "{\"action\":\"create\",\"tags\":[{\"key\":\"env\",\"value\":\"dev\"},"
			 "{\"key\":\"a1\",\"value\":\"1\"},{\"key\":\"a2\",\"value\":\"2\"},"
			 "{\"key\":\"a3\",\"value\":\"3\"},{\"key\":\"a4\",\"value\":\"4\"},"
			 "{\"key\":\"a5\",\"value\":\"5\"},{\"key\":\"a6\",\"value\":\"6\"},"
			 "{\"key\":\"a7\",\"value\":\"7\"},{\"key\":\"a8\",\"value\":\"8\"},"
			 "{\"key\":\"a9\",\"value\":\"9\"}]}",
			 NULL),
		   0);
	ASSERT_STREQ(tags_text("ta", id),
		     "{\"tags\":[{\"key\":\"a1\",\"value\":\"1\"},{\"key\":\"a2\",\"value\":\"2\"},"
		     "{\"key\":\"a3\",\"value\":\"3\"},{\"key\":\"a4\",\"value\":\"4\"},"
		     "{\"key\":\"a5\",\"value\":\"5\"},{\"key\":\"a6\",\"value\":\"6\"},"
		     "{\"key\":\"a7\",\"value\":\"7\"},{\"key\":\"a8\",\"value\":\"8\"},"
		     "{\"key\":\"a9\",\"value\":\"9\"},{\"key\":\"env\",\"value\":\"dev\"}],"
		     "\"sys_tags\":[],\"existTagsNum\":10}\n");
}

TEST(tags_action_errors)
{
	static const struct fx_refusal bad[] = {
		{ "{\"tags\":[{\"key\":\"k\",\"value\":\"v\"}]}", KMS_E_MISSING },
		{ "{\"action\":\"update\",\"tags\":[{\"key\":\"k\",\"value\":\"v\"}]}",
		  KMS_E_TAG_ACTION },
		{ "{\"action\":\"Create\",\"tags\":[{\"key\":\"k\",\"value\":\"v\"}]}",
		  KMS_E_TAG_ACTION },
		{ "{\"action\":5,\"tags\":[{\"key\":\"k\",\"value\":\"v\"}]}", KMS_E_TAG_ACTION },
		{ "{\"action\":\"create\"}", KMS_E_MISSING },
		{ "{\"action\":\"create\",\"tags\":{\"key\":\"k\",\"value\":\"v\"}}",
		  KMS_E_TAG_LIST },
		{ "{\"action\":\"create\",\"tags\":\"k\"}", KMS_E_TAG_LIST },
		{ "{\"action\":\"create\",\"tags\":[]}", KMS_E_TAG_LIST_EMPTY },
		{ "{\"action\":\"delete\",\"tags\":[]}", KMS_E_TAG_LIST_EMPTY },
		{ "{\"action\":\"create\",\"tags\":[\"k\"]}", KMS_E_TAG_LIST },
		{ "{\"action\":\"create\",\"tags\":[{\"value\":\"v\"}]}", KMS_E_MISSING },
		{ "{\"action\":\"create\",\"tags\":[{\"key\":\"k\"}]}", KMS_E_MISSING },
		{ "{\"action\":\"delete\",\"tags\":[{\"value\":\"v\"}]}", KMS_E_MISSING },
		{ "{\"action\":\"create\",\"tags\":[{\"key\":\"a=b\",\"value\":\"v\"}]}",
		  KMS_E_TAG_KEY },
		{ "{\"action\":\"delete\",\"tags\":[{\"key\":\"\"}]}", KMS_E_TAG_KEY_LENGTH },
		{ "{\"action\":\"create\",\"tags\":[{\"key\":\"k\",\"value\":\"a*\"}]}",
		  KMS_E_TAG_VALUE },
		/* One bad item refuses the whole request: nothing before it is done either. */
		{ "{\"action\":\"create\",\"tags\":[{\"key\":\"ok\",\"value\":\"v\"},"
		  "{\"key\":\"k\",\"value\":\"<\"}]}",
		  KMS_E_TAG_VALUE },
		{ "{\"action\":\"delete\",\"tags\":[{\"key\":\"keep\"},{\"key\":\">\"}]}",
		  KMS_E_TAG_KEY },
		{ "{\"action\":\"create\",\"tags\":[{\"key\":\"ok\",\"value\":\"v\"}],"
		  "\"sequence\":\"s\"}",
		  KMS_E_BAD_SEQUENCE },
	};
	char id[FX_ID_LEN], many[2048];

	STEP(fx_key("tae", "app", id));
	ASSERT_ERR(add_tag("tae", id, "keep", "v"), 0);
	STEP(fx_refuses_each("tae", "tags-action", id, bad, KMS_ARRAY_SIZE(bad)));
	ASSERT_ERR(kcall("tae", id, "tags-action", "{\"action\":\"sort\",\"tags\":[]}", NULL),
		   KMS_E_TAG_ACTION);
	ASSERT_LAST_ERROR("KMS.0404", "Invalid action.");
	ASSERT_ERR(kcall("tae", id, "tags-action", "{\"action\":\"create\",\"tags\":[]}", NULL),
		   KMS_E_TAG_LIST_EMPTY);
	ASSERT_LAST_ERROR("KMS.0401", "Tag list cannot be empty.");
	/* More than 10 items in one request: KMS.0407 (list size), nothing added. */
	strcpy(many, "{\"action\":\"create\",\"tags\":[");
	for (int i = 0; i < 11; i++)
		strcat(many, fx_fmt("%s{\"key\":\"m%d\",\"value\":\"v\"}", i ? "," : "", i));
	strcat(many, "]}");
	ASSERT_ERR(kcall("tae", id, "tags-action", many, NULL), KMS_E_TAG_LIST_SIZE);
	ASSERT_LAST_ERROR("KMS.0407", "Invalid tag list size.");
	ASSERT_STREQ(tags_text("tae", id), "{\"tags\":[{\"key\":\"keep\",\"value\":\"v\"}],"
					   "\"sys_tags\":[],\"existTagsNum\":1}\n");
	/* A key pending deletion: KMS.0210, for create and delete alike. */
	ASSERT_ERR(pcall("tae", "schedule-key-deletion", fx_kid_with(id, "\"pending_days\":\"7\""),
			 NULL),
		   0);
	ASSERT_ERR(kcall("tae", id, "tags-action",
			 "{\"action\":\"create\",\"tags\":[{\"key\":\"k\",\"value\":\"v\"}]}",
			 NULL),
		   KMS_E_KEY_PENDING_DELETION);
	ASSERT_ERR(kcall("tae", id, "tags-action",
			 "{\"action\":\"delete\",\"tags\":[{\"key\":\"keep\"}]}", NULL),
		   KMS_E_KEY_PENDING_DELETION);
	ASSERT_STREQ(tags_text("tae", id), "{\"tags\":[{\"key\":\"keep\",\"value\":\"v\"}],"
					   "\"sys_tags\":[],\"existTagsNum\":1}\n");
}

/* ---- <P>/tags (project tags) ---- */

TEST(project_tags)
{
	char a[FX_ID_LEN], b[FX_ID_LEN], c[FX_ID_LEN], x[FX_ID_LEN];
	cJSON *r = NULL;

	ASSERT_ERR(pcall("pt", "tags", "", &r), 0);
	ASSERT_STREQ(fx_last(), "{\"tags\":[]}\n");
	STEP(fx_key("pt", "a", a));
	STEP(fx_key("pt", "b", b));
	STEP(fx_key("pt", "c", c));
	STEP(fx_key("pt-other", "x", x));
	/* Values added against creation order (key a first): the answer is sorted anyway. */
	ASSERT_ERR(add_tag("pt", a, "team", "red"), 0);
	ASSERT_ERR(add_tag("pt", a, "env", "staging"), 0);
	ASSERT_ERR(add_tag("pt", b, "env", "prod"), 0);
	ASSERT_ERR(add_tag("pt", c, "env", "dev"), 0);
	ASSERT_ERR(add_tag("pt", c, "team", "blue"), 0);
	ASSERT_ERR(add_tag("pt-other", x, "secret", "other-project"), 0);
	/* One entry per tag key with its distinct values, keys and values in byte order (not in
	 * the order of key ids or creation times); another project's tags are not shown. */
	ASSERT_ERR(pcall("pt", "tags", "", &r), 0);
	ASSERT_STREQ(fx_last(),
		     "{\"tags\":[{\"key\":\"env\",\"values\":[\"dev\",\"prod\","
		     "\"staging\"]},{\"key\":\"team\",\"values\":[\"blue\",\"red\"]}]}\n");
	/* A value shared by two keys appears once. */
	ASSERT_ERR(add_tag("pt", b, "team", "red"), 0);
	ASSERT_ERR(pcall("pt", "tags", "", &r), 0);
	ASSERT_STREQ(fx_last(),
		     "{\"tags\":[{\"key\":\"env\",\"values\":[\"dev\",\"prod\","
		     "\"staging\"]},{\"key\":\"team\",\"values\":[\"blue\",\"red\"]}]}\n");
	ASSERT_ERR(pcall("pt", "tags", "{}", &r), 0);
	ASSERT_EQ(cJSON_GetArraySize(fx_get(r, "tags")), 2);
	ASSERT_ERR(pcall("pt", "tags", "{\"sequence\":\"bad\"}", &r), 0);
	ASSERT_EQ(cJSON_GetArraySize(fx_get(r, "tags")), 2);
	ASSERT_ERR(pcall("pt-other", "tags", "", &r), 0);
	ASSERT_STREQ(fx_last(),
		     "{\"tags\":[{\"key\":\"secret\",\"values\":[\"other-project\"]}]}\n");
}

/* ---- <P>/resource_instances-action ---- */

struct ri {
	char a[FX_ID_LEN], b[FX_ID_LEN], c[FX_ID_LEN], d[FX_ID_LEN];
};

/* Four keys: alpha (env=prod, team=blue), beta (env=staging), gamma (env=prod, team=red),
 * alphabet (no tags), in that order. */
static void ri_setup(const char *p, struct ri *k)
{
	STEP(fx_key(p, "alpha", k->a));
	STEP(fx_key(p, "beta", k->b));
	STEP(fx_key(p, "gamma", k->c));
	STEP(fx_key(p, "alphabet", k->d));
	ASSERT_ERR(add_tag(p, k->a, "env", "prod"), 0);
	ASSERT_ERR(add_tag(p, k->a, "team", "blue"), 0);
	ASSERT_ERR(add_tag(p, k->b, "env", "staging"), 0);
	ASSERT_ERR(add_tag(p, k->c, "env", "prod"), 0);
	ASSERT_ERR(add_tag(p, k->c, "team", "red"), 0);
}

/* The resource ids of a filter response, comma-separated (valid until the next call). */
static const char *ids_of(const cJSON *r)
{
	static char out[8 * FX_ID_LEN];
	const cJSON *res;

	out[0] = 0;
	cJSON_ArrayForEach(res, fx_get(r, "resources"))
	{
		if (out[0])
			strcat(out, ",");
		strcat(out, fx_str(res, "resource_id") ? fx_str(res, "resource_id") : "?");
	}
	return out;
}

/* resource_instances-action body (in project "ri") finds exactly the keys want ("id,id..."). */
static void finds(const char *body, const char *want)
{
	cJSON *r = NULL;

	ASSERT_ERR(pcall("ri", "resource_instances-action", body, &r), 0);
	ASSERT_STREQ(ids_of(r), want);
}

static double count_of(const char *body)
{
	cJSON *r = NULL;

	if (pcall("ri-count", "resource_instances-action", body, &r) != 0)
		return -1;
	if (cJSON_GetArraySize(r) != 1) /* count: total_count only */
		return -2;
	return fx_num(r, "total_count");
}

TEST(resource_instances_filter)
{
	struct ri k;
	cJSON *r = NULL;
	const cJSON *res;

	STEP(ri_setup("ri", &k));
	ASSERT_ERR(
		pcall("ri", "resource_instances-action",
		      "{\"action\":\"filter\",\"tags\":[{\"key\":\"env\",\"values\":[\"prod\"]}]}",
		      &r),
		0);
	ASSERT_EQ(cJSON_GetArraySize(r), 2);
	ASSERT_EQ(fx_num(r, "total_count"), 2);
	ASSERT_STREQ(ids_of(r), fx_fmt("%s,%s", k.a, k.c));
	/* One resource: id, the key object (strings, docs/api-differences.md), name = alias, tags.
	 */
	res = cJSON_GetArrayItem(fx_get(r, "resources"), 0);
	ASSERT_EQ(cJSON_GetArraySize(res), 4);
	ASSERT_STREQ(fx_str(res, "resource_id"), k.a);
	ASSERT_STREQ(fx_str(res, "resource_name"), "alpha");
	ASSERT_STREQ(fx_str(res, "resource_detail.key_id"), k.a);
	ASSERT_STREQ(fx_str(res, "resource_detail.key_state"), "2");
	ASSERT_STREQ(fx_str(res, "resource_detail.key_alias"), "alpha");
	ASSERT_EQ(cJSON_GetArraySize(fx_get(res, "resource_detail")), 15);
	{
		char *t = cJSON_PrintUnformatted(fx_get(res, "tags"));

		ASSERT_TRUE(t != NULL);
		ASSERT_STREQ(t, "[{\"key\":\"env\",\"value\":\"prod\"},"
				"{\"key\":\"team\",\"value\":\"blue\"}]");
		cJSON_free(t);
	}
	/* Several values: any of them; no values or []: any value; several tags: all of them. */
	STEP(finds("{\"action\":\"filter\",\"tags\":[{\"key\":\"env\","
		   "\"values\":[\"prod\",\"staging\"]}]}",
		   fx_fmt("%s,%s,%s", k.a, k.b, k.c)));
	STEP(finds("{\"action\":\"filter\",\"tags\":[{\"key\":\"team\",\"values\":[]}]}",
		   fx_fmt("%s,%s", k.a, k.c)));
	STEP(finds("{\"action\":\"filter\",\"tags\":[{\"key\":\"team\"}]}",
		   fx_fmt("%s,%s", k.a, k.c)));
	ASSERT_ERR(pcall("ri", "resource_instances-action",
			 "{\"action\":\"filter\",\"tags\":[{\"key\":\"env\",\"values\":[\"prod\"]},"
			 "{\"key\":\"team\",\"values\":[\"red\"]}]}",
			 &r),
		   0);
	ASSERT_STREQ(ids_of(r), k.c);
	ASSERT_EQ(fx_num(r, "total_count"), 1);
	ASSERT_ERR(
		pcall("ri", "resource_instances-action",
		      "{\"action\":\"filter\",\"tags\":[{\"key\":\"env\",\"values\":[\"dev\"]}]}",
		      &r),
		0);
	ASSERT_STREQ(fx_last(), "{\"resources\":[],\"total_count\":0}\n");
	/* No tags: every key. matches resource_name: a substring of the alias. */
	STEP(finds("{\"action\":\"filter\"}", fx_fmt("%s,%s,%s,%s", k.a, k.b, k.c, k.d)));
	STEP(finds("{\"action\":\"filter\",\"matches\":[{\"key\":\"resource_name\","
		   "\"value\":\"alpha\"}]}",
		   fx_fmt("%s,%s", k.a, k.d)));
	STEP(finds("{\"action\":\"filter\",\"matches\":[{\"key\":\"resource_name\","
		   "\"value\":\"alpha\"}],\"tags\":[{\"key\":\"env\"}]}",
		   k.a));
	ASSERT_ERR(pcall("ri", "resource_instances-action",
			 "{\"action\":\"filter\",\"matches\":[{\"key\":\"resource_name\","
			 "\"value\":\"\"}]}",
			 &r),
		   0);
	ASSERT_EQ(fx_num(r, "total_count"), 4);
	/* Paging: limit (default 10) and offset; total_count counts every match. */
	ASSERT_ERR(pcall("ri", "resource_instances-action",
			 "{\"action\":\"filter\",\"limit\":\"2\",\"offset\":\"1\"}", &r),
		   0);
	ASSERT_STREQ(ids_of(r), fx_fmt("%s,%s", k.b, k.c));
	ASSERT_EQ(fx_num(r, "total_count"), 4);
	STEP(finds("{\"action\":\"filter\",\"limit\":1,\"offset\":3}", k.d));
	ASSERT_ERR(pcall("ri", "resource_instances-action",
			 "{\"action\":\"filter\",\"offset\":\"4\"}", &r),
		   0);
	ASSERT_STREQ(fx_last(), "{\"resources\":[],\"total_count\":4}\n");
	/* Keys in every state are resources; the state shows in resource_detail. */
	ASSERT_ERR(pcall("ri", "disable-key", fx_fmt("{\"key_id\":\"%s\"}", k.b), NULL), 0);
	ASSERT_ERR(pcall("ri", "resource_instances-action",
			 "{\"action\":\"filter\",\"tags\":[{\"key\":\"env\","
			 "\"values\":[\"staging\"]}]}",
			 &r),
		   0);
	ASSERT_STREQ(
		fx_str(cJSON_GetArrayItem(fx_get(r, "resources"), 0), "resource_detail.key_state"),
		"3");
	ASSERT_ERR(pcall("ri", "enable-key", fx_fmt("{\"key_id\":\"%s\"}", k.b), NULL), 0);
}

TEST(resource_instances_count)
{
	struct ri k;

	ASSERT_EQ(count_of("{\"action\":\"count\"}"), 0);
	STEP(ri_setup("ri-count", &k));
	ASSERT_EQ(count_of("{\"action\":\"count\"}"), 4);
	ASSERT_EQ(count_of("{\"action\":\"count\",\"tags\":[{\"key\":\"env\","
			   "\"values\":[\"prod\"]}]}"),
		  2);
	ASSERT_EQ(count_of("{\"action\":\"count\",\"tags\":[{\"key\":\"env\",\"values\":[]},"
			   "{\"key\":\"team\",\"values\":[\"red\"]}]}"),
		  1);
	ASSERT_EQ(count_of("{\"action\":\"count\",\"matches\":[{\"key\":\"resource_name\","
			   "\"value\":\"alpha\"}]}"),
		  2);
	/* limit and offset do not change a count. */
	ASSERT_EQ(count_of("{\"action\":\"count\",\"limit\":\"1\",\"offset\":\"3\"}"), 4);
	ASSERT_EQ(count_of("{\"action\":\"count\",\"tags\":[{\"key\":\"none\"}]}"), 0);
}

TEST(resource_instances_errors)
{
	static const struct fx_refusal bad[] = {
		{ "{}", KMS_E_MISSING },
		{ "{\"action\":\"sort\"}", KMS_E_TAG_ACTION },
		{ "{\"action\":\"Filter\"}", KMS_E_TAG_ACTION },
		{ "{\"action\":1}", KMS_E_TAG_ACTION },
		{ "{\"action\":\"filter\",\"tags\":{}}", KMS_E_TAG_LIST },
		{ "{\"action\":\"filter\",\"tags\":[\"env\"]}", KMS_E_TAG_KEY },
		{ "{\"action\":\"filter\",\"tags\":[{\"values\":[\"x\"]}]}", KMS_E_TAG_KEY },
		{ "{\"action\":\"filter\",\"tags\":[{\"key\":\"a=b\"}]}", KMS_E_TAG_KEY },
		{ "{\"action\":\"filter\",\"tags\":[{\"key\":\"\"}]}", KMS_E_TAG_KEY_LENGTH },
		{ "{\"action\":\"count\",\"tags\":[{\"key\":\"env\",\"values\":\"prod\"}]}",
		  KMS_E_TAG_VALUE },
		{ "{\"action\":\"count\",\"tags\":[{\"key\":\"env\",\"values\":[5]}]}",
		  KMS_E_TAG_VALUE },
		{ "{\"action\":\"count\",\"tags\":[{\"key\":\"env\",\"values\":[\"a*\"]}]}",
		  KMS_E_TAG_VALUE },
		{ "{\"action\":\"filter\",\"matches\":{}}", KMS_E_TAG_MATCH_KEY },
		{ "{\"action\":\"filter\",\"matches\":[{\"key\":\"alias\",\"value\":\"x\"}]}",
		  KMS_E_TAG_MATCH_KEY },
		{ "{\"action\":\"filter\",\"matches\":[{\"value\":\"x\"}]}", KMS_E_TAG_MATCH_KEY },
		{ "{\"action\":\"filter\",\"matches\":[{\"key\":\"resource_name\",\"value\":5}]}",
		  KMS_E_TAG_MATCH_VALUE },
		{ "{\"action\":\"filter\",\"matches\":[{\"key\":\"resource_name\"}]}",
		  KMS_E_TAG_MATCH_VALUE },
		{ "{\"action\":\"filter\",\"limit\":\"0\"}", KMS_E_LIMIT_INVALID },
		{ "{\"action\":\"filter\",\"limit\":\"1001\"}", KMS_E_LIMIT_INVALID },
		{ "{\"action\":\"filter\",\"limit\":\"x\"}", KMS_E_LIMIT_INVALID },
		{ "{\"action\":\"filter\",\"offset\":\"-1\"}", KMS_E_OFFSET_INVALID },
		{ "{\"action\":\"filter\",\"offset\":\"x\"}", KMS_E_OFFSET_INVALID },
		{ "{\"action\":\"filter\",\"sequence\":\"s\"}", KMS_E_BAD_SEQUENCE },
	};
	static const char *const msgs[][2] = {
		{ "{\"action\":\"filter\",\"matches\":[{\"key\":\"alias\",\"value\":\"x\"}]}",
		  "{\"error\":{\"error_code\":\"KMS.0403\",\"error_msg\":\"Invalid match "
		  "key.\"}}\n" },
		{ "{\"action\":\"filter\",\"matches\":[{\"key\":\"resource_name\",\"value\":5}]}",
		  "{\"error\":{\"error_code\":\"KMS.0402\",\"error_msg\":\"Invalid match "
		  "value.\"}}\n" },
		{ "{\"action\":\"filter\",\"offset\":\"-1\"}",
		  "{\"error\":{\"error_code\":\"KMS.0417\",\"error_msg\":\"Invalid offset.\"}}\n" },
	};
	char v256[300];

	STEP(fx_refuses_each("ri-err", "resource_instances-action", NULL, bad,
			     KMS_ARRAY_SIZE(bad)));
	for (size_t i = 0; i < KMS_ARRAY_SIZE(msgs); i++) {
		ASSERT_FAIL(pcall("ri-err", "resource_instances-action", msgs[i][0], NULL));
		ASSERT_STREQ(fx_last(), msgs[i][1]);
	}
	repeat(v256, "v", 256);
	ASSERT_ERR(pcall("ri-err", "resource_instances-action",
			 fx_fmt("{\"action\":\"filter\",\"matches\":[{\"key\":\"resource_name\","
				"\"value\":\"%s\"}]}",
				v256),
			 NULL),
		   KMS_E_TAG_MATCH_VALUE);
	/* Project scope only. */
	{
		char id[FX_ID_LEN];

		STEP(fx_key("ri-err", "k", id));
		ASSERT_ERR(kcall("ri-err", id, "resource_instances-action",
				 "{\"action\":\"count\"}", NULL),
			   KMS_E_BAD_URL);
	}
}

/* ---- user-instances, user-quotas (4.9) ---- */

TEST(user_instances)
{
	char id[FX_ID_LEN];

	ASSERT_ERR(pcall("ui", "user-instances", "", NULL), 0);
	ASSERT_STREQ(fx_last(), "{\"instance_num\":0}\n");
	for (int i = 0; i < 3; i++) {
		STEP(fx_key("ui", fx_fmt("k%d", i), id));
	}
	ASSERT_ERR(pcall("ui", "user-instances", "", NULL), 0);
	ASSERT_STREQ(fx_last(), "{\"instance_num\":3}\n");
	/* Disabled and pending-deletion keys count; other projects do not. */
	ASSERT_ERR(pcall("ui", "disable-key", fx_fmt("{\"key_id\":\"%s\"}", id), NULL), 0);
	ASSERT_ERR(pcall("ui", "schedule-key-deletion", fx_kid_with(id, "\"pending_days\":\"7\""),
			 NULL),
		   0);
	ASSERT_ERR(pcall("ui-other", "create-key", "{\"key_alias\":\"x\"}", NULL), 0);
	ASSERT_ERR(pcall("ui", "user-instances", "{}", NULL), 0);
	ASSERT_STREQ(fx_last(), "{\"instance_num\":3}\n");
	/* A GET in the API: the body is ignored, sequence included (docs/using.md, Actions). */
	ASSERT_ERR(pcall("ui", "user-instances", "{\"sequence\":\"bad\",\"x\":1}", NULL), 0);
	ASSERT_STREQ(fx_last(), "{\"instance_num\":3}\n");
	ASSERT_ERR(call("ui", "user-instances", API_SCOPE_KEY, id, "", NULL), KMS_E_BAD_URL);
}

static int quota_call(const struct api_service *svc, const char *project, const char *action,
		      const char *json)
{
	struct api_caller c = { .project = project, .trusted = true };

	return fx_call_as(svc, &c, action, API_SCOPE_PROJECT, json, strlen(json), NULL);
}

TEST(user_quotas_and_key_quota_1105)
{
	struct api_service svc = *fx_svc();
	char id[FX_ID_LEN], b[FX_ID_LEN];
	cJSON *r = NULL;

	ASSERT_ERR(pcall("uq", "user-quotas", "", NULL), 0);
	ASSERT_STREQ(fx_last(), "{\"quotas\":{\"resources\":[{\"type\":\"CMK\",\"used\":0,"
				"\"quota\":100},{\"type\":\"grant_per_CMK\",\"used\":0,"
				"\"quota\":100}]}}\n");
	STEP(fx_key("uq", "a", id));
	STEP(fx_key("uq", "b", b));
	for (int i = 0; i < 3; i++)
		ASSERT_ERR(pcall("uq", "create-grant",
				 fx_fmt("{\"key_id\":\"%s\",\"grantee_principal\":\"u%d\","
					"\"operations\":[\"describe-key\"]}",
					i < 2 ? id : b, i),
				 NULL),
			   0);
	/* grant_per_CMK: the most grants on one key (docs/api-differences.md, Quotas). */
	ASSERT_ERR(pcall("uq", "user-quotas", "{}", &r), 0);
	ASSERT_STREQ(fx_last(), "{\"quotas\":{\"resources\":[{\"type\":\"CMK\",\"used\":2,"
				"\"quota\":100},{\"type\":\"grant_per_CMK\",\"used\":2,"
				"\"quota\":100}]}}\n");
	/* The key quota is the service's (-o key_quota=N): at the quota, KMS.1105; a key pending
	 * deletion still counts. */
	svc.key_quota = 3;
	ASSERT_ERR(quota_call(&svc, "uq", "user-quotas", ""), 0);
	ASSERT_STREQ(fx_last(), "{\"quotas\":{\"resources\":[{\"type\":\"CMK\",\"used\":2,"
				"\"quota\":3},{\"type\":\"grant_per_CMK\",\"used\":2,"
				"\"quota\":100}]}}\n");
	ASSERT_ERR(quota_call(&svc, "uq", "create-key", "{\"key_alias\":\"c\"}"), 0);
	ASSERT_ERR(quota_call(&svc, "uq", "create-key", "{\"key_alias\":\"d\"}"),
		   KMS_E_TOO_MANY_KEYS);
	ASSERT_LAST_ERROR("KMS.1105", "Too many keys.");
	ASSERT_ERR(pcall("uq", "schedule-key-deletion", fx_kid_with(id, "\"pending_days\":\"7\""),
			 NULL),
		   0);
	ASSERT_ERR(quota_call(&svc, "uq", "create-key", "{\"key_alias\":\"d\"}"),
		   KMS_E_TOO_MANY_KEYS);
	ASSERT_ERR(quota_call(&svc, "uq", "user-quotas", ""), 0);
	ASSERT_STREQ(fx_last(), "{\"quotas\":{\"resources\":[{\"type\":\"CMK\",\"used\":3,"
				"\"quota\":3},{\"type\":\"grant_per_CMK\",\"used\":2,"
				"\"quota\":100}]}}\n");
	/* Per project: another project still has room. */
	ASSERT_ERR(quota_call(&svc, "uq-other", "create-key", "{\"key_alias\":\"d\"}"), 0);
	ASSERT_ERR(pcall("uq", "user-quotas", "{\"sequence\":\"ignored\"}", NULL), 0);
	ASSERT_ERR(pcall("uq", "list-keys", "{}", &r), 0);
	ASSERT_EQ(fx_num(r, "total"), 3);
}

/* ---- versions, version (4.9; docs/api-differences.md, Lists: links are relative) ---- */

TEST(versions_and_version)
{
	ASSERT_ERR(pcall("ver", "versions", "", NULL), 0);
	ASSERT_STREQ(fx_last(),
		     "{\"versions\":[{\"links\":[{\"href\":\"/v1.0/\",\"rel\":\"self\"}],"
		     "\"id\":\"v1.0\",\"min_version\":\"\",\"status\":\"CURRENT\","
		     "\"version\":\"\",\"updated\":\"2018-09-05T08:18:05Z\"}]}\n");
	ASSERT_ERR(pcall("ver", "version", "", NULL), 0);
	ASSERT_STREQ(fx_last(), "{\"version\":{\"links\":[{\"href\":\"/v1.0/\",\"rel\":\"self\"}],"
				"\"id\":\"v1.0\",\"min_version\":\"\",\"status\":\"CURRENT\","
				"\"version\":\"\",\"updated\":\"2018-09-05T08:18:05Z\"}}\n");
	/* GET-style: the body, sequence included, is ignored (docs/using.md, Actions). */
	ASSERT_ERR(pcall("ver", "versions", "{\"anything\":1,\"sequence\":\"bad\"}", NULL), 0);
	ASSERT_EQ(strncmp(fx_last(), "{\"versions\":[{", 14), 0);
	ASSERT_ERR(pcall("ver", "version", "{\"sequence\":\"bad\"}", NULL), 0);
	ASSERT_EQ(strncmp(fx_last(), "{\"version\":{", 12), 0);
	ASSERT_ERR(role_call("ver", KMS_ROLE_VIEWER, "versions", NULL, ""), 0);
	ASSERT_ERR(role_call("ver", KMS_ROLE_VIEWER, "version", NULL, ""), 0);
	ASSERT_ERR(role_call("ver", KMS_ROLE_NONE, "version", NULL, ""), KMS_E_FORBIDDEN);
	ASSERT_ERR(call("ver", "versions", API_SCOPE_KEY, FX_NO_KEY, "", NULL), KMS_E_BAD_URL);
}

/* tags-action create is all or nothing: a request that would pass 10 tags adds none of its tags,
 * while one that only replaces values (or repeats a key) still fits. */
TEST(tags_action_create_all_or_nothing)
{
	char id[FX_ID_LEN], k[8];

	STEP(fx_key("tan", "app", id));
	for (int i = 0; i < 9; i++) {
		snprintf(k, sizeof(k), "t%d", i);
		ASSERT_ERR(add_tag("tan", id, k, "v"), 0);
	}
	ASSERT_ERR(kcall("tan", id, "tags-action",
			 "{\"action\":\"create\",\"tags\":[{\"key\":\"n1\",\"value\":\"v\"},"
			 "{\"key\":\"n2\",\"value\":\"v\"}]}",
			 NULL),
		   KMS_E_TOO_MANY_TAGS);
	ASSERT_TRUE(strstr(tags_text("tan", id), "\"n1\"") == NULL);
	ASSERT_TRUE(strstr(tags_text("tan", id), "\"existTagsNum\":9}") != NULL);
	/* Replacing two values and adding one repeated key: 10 tags, fits. */
	ASSERT_ERR(kcall("tan", id, "tags-action",
			 "{\"action\":\"create\",\"tags\":[{\"key\":\"t0\",\"value\":\"w\"},"
			 "{\"key\":\"n1\",\"value\":\"a\"},{\"key\":\"n1\",\"value\":\"b\"},"
			 "{\"key\":\"t1\",\"value\":\"w\"}]}",
			 NULL),
		   0);
	ASSERT_TRUE(strstr(tags_text("tan", id), "{\"key\":\"n1\",\"value\":\"b\"}") != NULL);
	ASSERT_TRUE(strstr(tags_text("tan", id), "\"existTagsNum\":10}") != NULL);
}

/* delete-tag and tags-action delete agree: a key pending deletion keeps its tags (KMS.0210). */
TEST(delete_tag_pending_deletion_0210)
{
	char id[FX_ID_LEN];

	STEP(fx_key("dtp", "app", id));
	ASSERT_ERR(add_tag("dtp", id, "env", "prod"), 0);
	ASSERT_ERR(pcall("dtp", "schedule-key-deletion", fx_kid_with(id, "\"pending_days\":\"7\""),
			 NULL),
		   0);
	ASSERT_ERR(kcall("dtp", id, "delete-tag", "{\"key\":\"env\"}", NULL),
		   KMS_E_KEY_PENDING_DELETION);
	ASSERT_ERR(kcall("dtp", id, "tags-action",
			 "{\"action\":\"delete\",\"tags\":[{\"key\":\"env\"}]}", NULL),
		   KMS_E_KEY_PENDING_DELETION);
	ASSERT_TRUE(strstr(tags_text("dtp", id), "\"existTagsNum\":1}") != NULL);
}
