/* Batches (one request per line) whose answers would pass the 4 MiB response limit: every item
 * still gets exactly one complete line, in order; those that don't fit answer KMS.0203. Found by
 * fuzz-request: a full buffer used to get half an error line. */
#include <string.h>

#include "kms_test_api.h"

TEST(batch_past_response_limit_answers_every_item)
{
	char id[FX_ID_LEN], alias[32];
	static char body[KMS_MAX_REQUEST];
	size_t lines = 0, pos = 0, items = 0, too_long = 0;
	const char *text, *end;
	cJSON *out = NULL;

	for (int i = 0; i < 100; i++) {
		snprintf(alias, sizeof(alias), "big-%d", i);
		fx_key("batchbig", alias, id);
	}
	/* ~47 KB of key_details per list-keys answer: 200 answers are ~9 MiB. */
	while (items < 200) {
		memcpy(body + pos, "{}\n", 3);
		pos += 3;
		items++;
	}
	body[pos] = 0;
	ASSERT_ERR(call_batch("batchbig", "list-keys", body, &lines, &out), 0);
	ASSERT_EQ(lines, items);
	/* out is the last line only: walk the whole answer (each line was already checked to
	 * be one complete JSON object by the fixture). */
	text = fx_last();
	end = text + fx_last_len();
	while (text < end) {
		const char *nl = memchr(text, '\n', (size_t)(end - text));
		cJSON *line = cJSON_ParseWithLength(text, (size_t)(nl - text));
		const cJSON *err = cJSON_GetObjectItemCaseSensitive(line, "error");

		ASSERT_TRUE(line != NULL);
		if (err) {
			ASSERT_STREQ(
				cJSON_GetObjectItemCaseSensitive(err, "error_code")->valuestring,
				"KMS.0203");
			too_long++;
		} else {
			ASSERT_EQ(
				cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(line, "keys")),
				100);
		}
		cJSON_Delete(line);
		text = nl + 1;
	}
	ASSERT_TRUE(too_long > 0 && too_long < items);
	ASSERT_LE(fx_last_len(), (size_t)KMS_MAX_RESPONSE);
}

TEST(error_line_never_split)
{
	struct kms_buf b = KMS_BUF_INIT(40, false);

	/* Too small for any error line: nothing at all is written, not half a line. */
	ASSERT_TRUE(api_error_json(KMS_E_BAD_JSON, &b) < 0);
	ASSERT_EQ(b.len, (size_t)0);
	kms_buf_free(&b);
}
