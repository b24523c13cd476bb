/* test-framework.c - kms_test.h checks itself: each assertion passes on a true claim and fails on
 * a false one, comparisons are exact across types, and the hex helper decodes. The failing side is
 * exercised in helpers whose failure is then cleared, so this file passes when all is well. */
#include "kms_test.h"

/* Run fn; report whether it failed, and clear the failure so the calling test can go on. */
static bool fails(void (*fn)(void))
{
	bool was;

	kms_test_failed_ = false;
	fprintf(stderr, "(expected failure follows)\n");
	fn();
	was = kms_test_failed_;
	kms_test_failed_ = false;
	return was;
}

static void eq_minus_one_size_max(void)
{
	ASSERT_EQ(-1, SIZE_MAX);
}

static void le_size_max_minus_one(void)
{
	ASSERT_LE(SIZE_MAX, -1);
}

static void ne_equal(void)
{
	ASSERT_NE((unsigned char)200, 200L);
}

static void true_false(void)
{
	ASSERT_TRUE(1 == 2);
}

static void false_true(void)
{
	ASSERT_FALSE(1);
}

static void streq_differ(void)
{
	ASSERT_STREQ("abc", "abd");
}

static void streq_null(void)
{
	ASSERT_STREQ(NULL, "");
}

static void memeq_differ(void)
{
	ASSERT_MEMEQ("abcd", "abce", 4);
}

static void hexeq_differ(void)
{
	ASSERT_HEXEQ("\x01\x02", 2, "0103");
}

static void hexeq_length(void)
{
	ASSERT_HEXEQ("\x01\x02", 2, "010203");
}

static void ok_on_error(void)
{
	ASSERT_OK(KMS_E_BAD_PARAM);
}

static void err_on_other_error(void)
{
	ASSERT_ERR(KMS_E_BAD_PARAM, KMS_E_TOO_LONG);
}

static void err_on_success(void)
{
	ASSERT_ERR(0, KMS_E_TOO_LONG);
}

static void fail_on_success(void)
{
	ASSERT_FAIL(0);
}

TEST(assertions_fail_when_false)
{
	static void (*const cases[])(void) = {
		eq_minus_one_size_max,
		le_size_max_minus_one,
		ne_equal,
		true_false,
		false_true,
		streq_differ,
		streq_null,
		memeq_differ,
		hexeq_differ,
		hexeq_length,
		ok_on_error,
		err_on_other_error,
		err_on_success,
		fail_on_success,
	};

	for (size_t i = 0; i < KMS_ARRAY_SIZE(cases); i++) {
		bool f = fails(cases[i]);

		if (!f)
			fprintf(stderr, "\tcase %zu did not fail\n", i);
		ASSERT_TRUE(f);
	}
}

TEST(assertions_pass_when_true)
{
	ASSERT_EQ((size_t)5, 5);
	ASSERT_EQ(-5, (long)-5);
	ASSERT_EQ(UINT64_MAX, UINT64_MAX);
	ASSERT_NE(-1, UINT64_MAX);
	ASSERT_LE(-1, 0u);
	ASSERT_LE(INTMAX_MIN, 0);
	ASSERT_LE(0, SIZE_MAX);
	ASSERT_LE(3, 3);
	ASSERT_TRUE(1);
	ASSERT_FALSE(0);
	ASSERT_STREQ("", "");
	ASSERT_MEMEQ("abc", "abc", 3);
	ASSERT_MEMEQ(NULL, NULL, 0);
	ASSERT_HEXEQ("\xab\x0c", 2, "aB0C");
	ASSERT_HEXEQ("", 0, "");
	ASSERT_OK(0);
	ASSERT_OK(7);
	ASSERT_ERR(KMS_E_TOO_LONG, KMS_E_TOO_LONG);
	ASSERT_FAIL(KMS_E_INTERNAL);
	ASSERT_FAIL(-1);
}

TEST(each_argument_evaluated_once)
{
	int a = 0, b = 0;

	ASSERT_EQ(a++, b++);
	ASSERT_LE(a++, ++b);
	ASSERT_OK(a++);
	ASSERT_EQ(a, 3);
	ASSERT_EQ(b, 2);
}

TEST(unhex)
{
	uint8_t out[4];

	ASSERT_EQ(kms_test_unhex("", out, 0), 0);
	ASSERT_EQ(kms_test_unhex("00fFa5", out, sizeof(out)), 3);
	ASSERT_EQ(out[0], 0x00);
	ASSERT_EQ(out[1], 0xff);
	ASSERT_EQ(out[2], 0xa5);
}
