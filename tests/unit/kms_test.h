/* kms_test.h - the unit test framework of kmsfs, in one header (systemd tests.h style).
 *
 * A test file is one executable:
 *
 *   #include "kms_test.h"
 *
 *   TEST(buf_append)
 *   {
 *           struct kms_buf b = KMS_BUF_INIT(16, false);
 *
 *           ASSERT_OK(kms_buf_append(&b, "abc", 3));
 *           ASSERT_EQ(b.len, 3);
 *           ASSERT_MEMEQ(b.data, "abc", 3);
 *           ASSERT_ERR(kms_buf_append(&b, "0123456789abcdef", 16), KMS_E_TOO_LONG);
 *           kms_buf_free(&b);
 *   }
 *
 * TEST(name) defines `static void test_name(void)` and registers it from a constructor; tests run
 * in the order they appear in the file. The header also defines main() (define KMS_TEST_NO_MAIN
 * before including it to supply your own): `./test-x` runs every test, `./test-x NAME...` runs
 * only those, `./test-x --list` prints the names. Each test prints "ok   NAME" or "FAIL NAME",
 * then a summary line "N passed, M failed, K checks" (K: the assertions evaluated, so a
 * refactoring of a test can show that it still checks as much); the exit status is 0 when all
 * passed, else 1 (meson's test() wants exactly that).
 *
 * Assertions (all evaluate each argument exactly once):
 *   ASSERT_TRUE(c), ASSERT_FALSE(c)
 *   ASSERT_EQ(a, b), ASSERT_NE(a, b), ASSERT_LE(a, b)  integers of any types and signedness,
 *                                                       compared by value (-1 < SIZE_MAX), so
 *                                                       size_t vs int literal needs no cast
 *   ASSERT_STREQ(a, b)                                  C strings (NULL-safe)
 *   ASSERT_MEMEQ(a, b, n)                               n bytes; prints both in hex on failure
 *   ASSERT_HEXEQ(p, n, "hex")                           n bytes equal to the hex string
 *   ASSERT_OK(expr)                                     expr returns >= 0 (kmsfs: 0 or a count)
 *   ASSERT_ERR(expr, KMS_E_x)                           expr returns exactly that error
 *   ASSERT_FAIL(expr)                                   expr returns any negative error
 * A failed assertion prints file:line, the expression and the values, marks the current test
 * failed and `return`s from the enclosing function, so it can only be used in functions
 * returning void. A void helper that asserts is called as STEP(helper(...)), which stops the
 * calling test too when the helper failed (it is `helper(...); if (kms_test_failing()) return;`).
 *
 * Hex helpers (decoding is common/kms_hex.c's; test-hex.c checks it against oracles of its own,
 * and never with these helpers):
 *   size_t kms_test_unhex(const char *hex, uint8_t *out, size_t cap)  aborts on a malformed
 *                                                                      literal (a bug in the test)
 *   void kms_test_hexprint(FILE *f, const void *p, size_t n)           upper case, 64 bytes max
 *
 * Keep the tests deterministic unless randomness is the point (nonces); a test that needs
 * random input should say so in a comment and print nothing random on success.
 */
#pragma once

#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/kms_err.h"
#include "common/kms_hex.h"

struct kms_test {
	const char *name;
	void (*fn)(void);
	int line;
};

#define KMS_TEST_MAX 1024

static struct kms_test kms_test_table_[KMS_TEST_MAX];
static size_t kms_test_count_;
static bool kms_test_failed_;
static uintmax_t kms_test_checks_; /* assertions evaluated, for the summary line */

static inline void kms_test_register_(const char *name, void (*fn)(void), int line)
{
	if (kms_test_count_ == KMS_TEST_MAX) {
		fprintf(stderr, "kms_test: more than %d tests in one file\n", KMS_TEST_MAX);
		abort();
	}
	kms_test_table_[kms_test_count_++] = (struct kms_test){ name, fn, line };
}

#define TEST(name)                                                                                 \
	static void test_##name(void);                                                             \
	__attribute__((constructor)) static void kms_test_register_##name(void)                    \
	{                                                                                          \
		kms_test_register_(#name, test_##name, __LINE__);                                  \
	}                                                                                          \
	static void test_##name(void)

static inline bool kms_test_failing(void)
{
	return kms_test_failed_;
}

/* Run a void helper that asserts; if it failed, return from the calling test (or helper) too. */
#define STEP(call)                                                                                 \
	do {                                                                                       \
		call;                                                                              \
		if (kms_test_failing())                                                            \
			return;                                                                    \
	} while (0)

static inline void kms_test_fail_(const char *file, int line, const char *what)
{
	kms_test_failed_ = true;
	fprintf(stderr, "%s:%d: assertion failed: %s\n", file, line, what);
}

/* Hex helpers. */

/* The library's decoder (common/kms_hex.c, which test-hex.c checks against oracles of its own). */
static inline size_t kms_test_unhex(const char *hex, uint8_t *out, size_t cap)
{
	size_t n;

	if (kms_hex_decode(hex, strlen(hex), out, cap, &n) < 0) {
		fprintf(stderr, "kms_test_unhex: not hex, or too long (%zu chars)\n", strlen(hex));
		abort();
	}
	return n;
}

static inline void kms_test_hexprint(FILE *f, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n && i < 64; i++)
		/* cppcheck-suppress arrayIndexOutOfBounds ; i < n, and n is the object's size */
		fprintf(f, "%02X", b[i]);
	if (n > 64)
		fprintf(f, "... (%zu bytes)", n);
}

static inline const char *kms_test_errname_(intmax_t r)
{
	if (r == 0)
		return "0";
	if (r > KMS__E_FIRST && r < KMS__E_END)
		return kms_err_info((int)r)->name;
	return "not a KMS_E_* value";
}

/* Assertions. */

/* The frame of every assertion: count the check; when ok is false, fail as what, say more with
 * the statements after it (at least (void)0) and return from the calling function. */
#define KMS_TEST_CHECK_(ok, what, ...)                                                             \
	do {                                                                                       \
		kms_test_checks_++;                                                                \
		if (!(ok)) {                                                                       \
			kms_test_fail_(__FILE__, __LINE__, what);                                  \
			__VA_ARGS__;                                                               \
			return;                                                                    \
		}                                                                                  \
	} while (0)

#define ASSERT_TRUE(c)	KMS_TEST_CHECK_(c, "ASSERT_TRUE(" #c ")", (void)0)
#define ASSERT_FALSE(c) KMS_TEST_CHECK_(!(c), "ASSERT_FALSE(" #c ")", (void)0)

/* An integer of any type, kept with its signedness so that comparisons are mathematically exact
 * (no -1 == SIZE_MAX surprises) whatever the two operand types are. */
struct kms_test_int_ {
	bool is_signed;
	intmax_t s;
	uintmax_t u;
};

static inline struct kms_test_int_ kms_test_int_s_(intmax_t v)
{
	return (struct kms_test_int_){ true, v, (uintmax_t)v };
}

static inline struct kms_test_int_ kms_test_int_u_(uintmax_t v)
{
	return (struct kms_test_int_){ false, (intmax_t)v, v };
}

/* After integer promotion (+ 0) only these are unsigned. */
#define KMS_TEST_INT_(x)                                                                           \
	(_Generic((x) + 0, unsigned int                                                            \
		  : false, unsigned long                                                           \
		  : false, unsigned long long                                                      \
		  : false, default                                                                 \
		  : true)                                                                          \
		 ? kms_test_int_s_((intmax_t)(x))                                                  \
		 : kms_test_int_u_((uintmax_t)(x)))

/* <0, 0, >0 as a is below, equal to or above b. */
static inline int kms_test_int_cmp_(struct kms_test_int_ a, struct kms_test_int_ b)
{
	if (a.is_signed && a.s < 0)
		return b.is_signed && b.s < 0 ? (a.s > b.s) - (a.s < b.s) : -1;
	if (b.is_signed && b.s < 0)
		return 1;
	return (a.u > b.u) - (a.u < b.u);
}

static inline void kms_test_int_print_(const char *label, struct kms_test_int_ v)
{
	if (v.is_signed)
		fprintf(stderr, "\t%s %jd (0x%jx)\n", label, v.s, v.u);
	else
		fprintf(stderr, "\t%s %ju (0x%jx)\n", label, v.u, v.u);
}

#define KMS_TEST_CMP_(a, op, b, name)                                                              \
	do {                                                                                       \
		struct kms_test_int_ kms_a_ = KMS_TEST_INT_(a), kms_b_ = KMS_TEST_INT_(b);         \
		KMS_TEST_CHECK_(kms_test_int_cmp_(kms_a_, kms_b_) op 0, name "(" #a ", " #b ")",   \
				kms_test_int_print_("left: ", kms_a_);                             \
				kms_test_int_print_("right:", kms_b_));                            \
	} while (0)

#define ASSERT_EQ(a, b) KMS_TEST_CMP_(a, ==, b, "ASSERT_EQ")
#define ASSERT_NE(a, b) KMS_TEST_CMP_(a, !=, b, "ASSERT_NE")
#define ASSERT_LE(a, b) KMS_TEST_CMP_(a, <=, b, "ASSERT_LE")

#define ASSERT_STREQ(a, b)                                                                         \
	do {                                                                                       \
		const char *kms_a_ = (a), *kms_b_ = (b);                                           \
		KMS_TEST_CHECK_(kms_a_ &&kms_b_ &&strcmp(kms_a_, kms_b_) == 0,                     \
				"ASSERT_STREQ(" #a ", " #b ")",                                    \
				fprintf(stderr, "\tleft:  \"%s\"\n\tright: \"%s\"\n",              \
					kms_a_ ? kms_a_ : "(null)", kms_b_ ? kms_b_ : "(null)"));  \
	} while (0)

/* Whether the an bytes at a are the bn bytes at b. */
static inline bool kms_test_memeq_(const void *a, size_t an, const void *b, size_t bn)
{
	return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

static inline void kms_test_mem_print_(const void *a, size_t an, const void *b, size_t bn)
{
	fprintf(stderr, "\tleft:  ");
	kms_test_hexprint(stderr, a, an);
	fprintf(stderr, "\n\tright: ");
	kms_test_hexprint(stderr, b, bn);
	fprintf(stderr, "\n");
}

#define ASSERT_MEMEQ(a, b, n)                                                                      \
	do {                                                                                       \
		const void *kms_a_ = (a), *kms_b_ = (b);                                           \
		size_t kms_n_ = (n);                                                               \
		KMS_TEST_CHECK_(kms_test_memeq_(kms_a_, kms_n_, kms_b_, kms_n_),                   \
				"ASSERT_MEMEQ(" #a ", " #b ", " #n ")",                            \
				kms_test_mem_print_(kms_a_, kms_n_, kms_b_, kms_n_));              \
	} while (0)

#define ASSERT_HEXEQ(p, n, hex)                                                                    \
	do {                                                                                       \
		uint8_t kms_want_[4096];                                                           \
		size_t kms_wn_ = kms_test_unhex((hex), kms_want_, sizeof(kms_want_));              \
		const void *kms_p_ = (p);                                                          \
		size_t kms_n_ = (n);                                                               \
		KMS_TEST_CHECK_(kms_test_memeq_(kms_p_, kms_n_, kms_want_, kms_wn_),               \
				"ASSERT_HEXEQ(" #p ", " #n ", " #hex ")",                          \
				kms_test_mem_print_(kms_p_, kms_n_, kms_want_, kms_wn_));          \
	} while (0)

#define ASSERT_OK(expr)                                                                            \
	do {                                                                                       \
		intmax_t kms_r_ = (expr);                                                          \
		KMS_TEST_CHECK_(                                                                   \
			kms_r_ >= 0, "ASSERT_OK(" #expr ")",                                       \
			fprintf(stderr, "\tgot: %jd (%s)\n", kms_r_, kms_test_errname_(kms_r_)));  \
	} while (0)

#define ASSERT_ERR(expr, err)                                                                      \
	do {                                                                                       \
		intmax_t kms_r_ = (expr), kms_e_ = (err);                                          \
		KMS_TEST_CHECK_(kms_r_ == kms_e_, "ASSERT_ERR(" #expr ", " #err ")",               \
				fprintf(stderr, "\tgot:  %jd (%s)\n\twant: %jd (%s)\n", kms_r_,    \
					kms_test_errname_(kms_r_), kms_e_,                         \
					kms_test_errname_(kms_e_)));                               \
	} while (0)

#define ASSERT_FAIL(expr)                                                                          \
	do {                                                                                       \
		intmax_t kms_r_ = (expr);                                                          \
		KMS_TEST_CHECK_(                                                                   \
			kms_r_ < 0, "ASSERT_FAIL(" #expr ")",                                      \
			fprintf(stderr, "\tgot: %jd, want a negative KMS_E_* value\n", kms_r_));   \
	} while (0)

/* The runner. */

#ifndef KMS_TEST_NO_MAIN
static int kms_test_by_line_(const void *a, const void *b)
{
	const struct kms_test *x = a, *y = b;

	return (x->line > y->line) - (x->line < y->line);
}

static bool kms_test_selected_(const char *name, int argc, char **argv)
{
	if (argc < 2)
		return true;
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return true;
	return false;
}

int main(int argc, char **argv)
{
	size_t passed = 0, failed = 0;

	/* Constructors run in an order the toolchain picks; the file's order is the useful one. */
	qsort(kms_test_table_, kms_test_count_, sizeof(kms_test_table_[0]), kms_test_by_line_);
	if (argc == 2 && strcmp(argv[1], "--list") == 0) {
		for (size_t i = 0; i < kms_test_count_; i++)
			printf("%s\n", kms_test_table_[i].name);
		return 0;
	}
	for (size_t i = 0; i < kms_test_count_; i++) {
		const struct kms_test *t = &kms_test_table_[i];

		if (!kms_test_selected_(t->name, argc, argv))
			continue;
		kms_test_failed_ = false;
		t->fn();
		/* Our output after the assertion's stderr lines, so a failure reads top-down. */
		fflush(stderr);
		printf("%s %s\n", kms_test_failed_ ? "FAIL" : "ok  ", t->name);
		fflush(stdout);
		if (kms_test_failed_)
			failed++;
		else
			passed++;
	}
	if (passed + failed == 0) {
		fprintf(stderr, "no test selected\n");
		return 1;
	}
	printf("%zu passed, %zu failed, %ju checks\n", passed, failed, kms_test_checks_);
	return failed ? 1 : 0;
}
#endif
