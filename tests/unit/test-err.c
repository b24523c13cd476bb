/* test-err.c - the KMS_ERRORS table: every row well formed, lookups agree with the rows,
 * unknown values fall back to KMS_E_INTERNAL. */
#include "kms_test.h"

#include <errno.h>
#include <limits.h>

struct row {
	int value;
	const char *name;
	const char *code;
	int http;
	int errnum;
	const char *message;
};

static const struct row rows[] = {
#define ROW_(name, c, h, e, m) { name, #name, c, h, e, m },
	KMS_ERRORS(ROW_)
#undef ROW_
};

/* ^KMS\.[0-9]{4}$ */
static bool code_ok(const char *c)
{
	if (strlen(c) != 8 || strncmp(c, "KMS.", 4) != 0)
		return false;
	for (size_t i = 4; i < 8; i++)
		if (c[i] < '0' || c[i] > '9')
			return false;
	return true;
}

TEST(code_format_matcher)
{
	/* The matcher itself, so the table test can fail. */
	ASSERT_TRUE(code_ok("KMS.0101"));
	ASSERT_FALSE(code_ok("KMS.101"));
	ASSERT_FALSE(code_ok("KMS.01011"));
	ASSERT_FALSE(code_ok("kms.0101"));
	ASSERT_FALSE(code_ok("KMS-0101"));
	ASSERT_FALSE(code_ok("KMS.01a1"));
}

TEST(rows_well_formed)
{
	ASSERT_TRUE(KMS_ARRAY_SIZE(rows) > 0);
	for (size_t i = 0; i < KMS_ARRAY_SIZE(rows); i++) {
		const struct row *r = &rows[i];
		int h = r->http;

		if (!code_ok(r->code))
			fprintf(stderr, "\t%s: code \"%s\"\n", r->name, r->code);
		ASSERT_TRUE(code_ok(r->code));
		if (h != 400 && h != 403 && h != 404 && h != 405 && h != 500 && h != 503)
			fprintf(stderr, "\t%s: http %d\n", r->name, h);
		ASSERT_TRUE(h == 400 || h == 403 || h == 404 || h == 405 || h == 500 || h == 503);
		ASSERT_TRUE(r->errnum > 0);
		ASSERT_TRUE(r->message[0] != 0);
		ASSERT_EQ(strncmp(r->name, "KMS_E_", 6), 0);
		/* Server-side codes (KMS.01xx) are the 5xx ones, and only they are. */
		ASSERT_EQ(strncmp(r->code, "KMS.01", 6) == 0, h >= 500);
	}
}

TEST(values_negative_and_dense)
{
	ASSERT_EQ(KMS_OK, 0);
	ASSERT_EQ(KMS__E_END - KMS__E_FIRST - 1, KMS_ARRAY_SIZE(rows));
	for (size_t i = 0; i < KMS_ARRAY_SIZE(rows); i++) {
		ASSERT_TRUE(rows[i].value < 0);
		ASSERT_EQ(rows[i].value, KMS__E_FIRST + 1 + (int)i);
	}
}

TEST(lookup_matches_rows)
{
	for (size_t i = 0; i < KMS_ARRAY_SIZE(rows); i++) {
		const struct row *r = &rows[i];
		const struct kms_err_info *e = kms_err_info(r->value);

		ASSERT_TRUE(e != NULL);
		ASSERT_STREQ(e->name, r->name);
		ASSERT_STREQ(e->code, r->code);
		ASSERT_EQ(e->http, r->http);
		ASSERT_EQ(e->errnum, r->errnum);
		ASSERT_STREQ(e->message, r->message);
		ASSERT_EQ(kms_err_errno(r->value), r->errnum);
	}
}

TEST(spot_checks)
{
	ASSERT_STREQ(kms_err_info(KMS_E_KEY_NOT_FOUND)->code, "KMS.0207");
	ASSERT_EQ(kms_err_info(KMS_E_KEY_NOT_FOUND)->http, 404);
	ASSERT_EQ(kms_err_errno(KMS_E_KEY_NOT_FOUND), ENOENT);
	ASSERT_STREQ(kms_err_info(KMS_E_CIPHER_INVALID)->code, "KMS.2201");
	ASSERT_STREQ(kms_err_info(KMS_E_DECRYPT_FAILED)->code, "KMS.2203");
	ASSERT_EQ(kms_err_info(KMS_E_METHOD)->http, 405);
	ASSERT_EQ(kms_err_info(KMS_E_BUSY)->http, 503);
	ASSERT_EQ(kms_err_errno(KMS_E_TOO_LONG), EFBIG);
	ASSERT_EQ(kms_err_errno(KMS_E_TOKEN_INVALID), EACCES);
}

/* kms_err.h: several internal errors may share one API code; they must then look the same to an
 * API client (status and message) and differ for a file-system client (errno), except an
 * unreachable shared store, which is EIO like any other I/O failure of the store
 * (docs/many-hosts.md) and differs only in what kmsfs logs and counts. */
TEST(shared_codes_consistent)
{
	for (size_t i = 0; i < KMS_ARRAY_SIZE(rows); i++) {
		for (size_t j = i + 1; j < KMS_ARRAY_SIZE(rows); j++) {
			if (strcmp(rows[i].code, rows[j].code) != 0)
				continue;
			if (strcmp(rows[j].name, "KMS_E_STORE_UNAVAILABLE") == 0 &&
			    strcmp(rows[i].name, "KMS_E_IO") == 0)
				continue;
			if (rows[i].http != rows[j].http || rows[i].errnum == rows[j].errnum ||
			    strcmp(rows[i].message, rows[j].message) != 0)
				fprintf(stderr, "\t%s vs %s\n", rows[i].name, rows[j].name);
			ASSERT_EQ(rows[i].http, rows[j].http);
			ASSERT_STREQ(rows[i].message, rows[j].message);
			ASSERT_NE(rows[i].errnum, rows[j].errnum);
		}
	}
}

TEST(out_of_range_is_internal)
{
	const int bad[] = { 0,
			    1,
			    2,
			    100,
			    INT_MAX,
			    -1,
			    -2,
			    -500,
			    KMS__E_FIRST,
			    KMS__E_END,
			    KMS__E_FIRST - 1,
			    KMS__E_END + 1,
			    INT_MIN,
			    INT_MIN + 1 };
	const struct kms_err_info *internal = kms_err_info(KMS_E_INTERNAL);

	ASSERT_STREQ(internal->name, "KMS_E_INTERNAL");
	for (size_t i = 0; i < KMS_ARRAY_SIZE(bad); i++)
		ASSERT_TRUE(kms_err_info(bad[i]) == internal);
	/* Success has no errno, whatever kms_err_info(0) says. */
	ASSERT_EQ(kms_err_errno(0), 0);
	ASSERT_EQ(kms_err_errno(INT_MAX), kms_err_info(KMS_E_INTERNAL)->errnum);
}

TEST(error_lines_fit_the_batch_reservation)
{
	/* api_call.c keeps API_ERROR_LINE_MAX (160) bytes per batch item for an error line:
	 * {"error":{"error_code":"KMS.xxxx","error_msg":"..."}}\n plus the NUL of snprintf. */
	for (size_t i = 0; i < KMS_ARRAY_SIZE(rows); i++)
		ASSERT_LE(51 + strlen(rows[i].message) + 1, 160);
}
