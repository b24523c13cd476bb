/* test-buf.c - struct kms_buf: bounds, growth, NUL termination, wiping, move.
 *
 * Wiping is observed at the only point it matters, the free(): this binary is linked with
 * -Wl,--wrap=free (tests/unit/meson.build), so every free() in kms_buf.c goes through
 * __wrap_free() below, which checks the block is all zero when it is one we are watching.
 */
#include "kms_test.h"

#include "common/kms_buf.h"

void __real_free(void *p);
void __wrap_free(void *p);

static const void *watch_ptr;
static size_t watch_len;
static bool watch_hit, watch_zero;

void __wrap_free(void *p)
{
	if (p && p == watch_ptr) {
		const uint8_t *b = p;
		bool zero = true;

		for (size_t i = 0; i < watch_len; i++)
			zero &= b[i] == 0;
		watch_hit = true;
		watch_zero = zero;
		watch_ptr = NULL;
	}
	__real_free(p);
}

static void watch(const void *p, size_t n)
{
	watch_ptr = p;
	watch_len = n;
	watch_hit = false;
	watch_zero = false;
}

static void fill(uint8_t *p, size_t n, uint8_t seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seed + i * 7);
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* The invariants kms_buf.h promises (cap counts the NUL byte, so cap <= max + 1; written as
 * cap - 1 <= max, which cannot wrap). */
static void check_invariants(const struct kms_buf *b)
{
	ASSERT_EQ(b->data == NULL, b->cap == 0);
	if (b->cap) {
		ASSERT_TRUE(b->len < b->cap);
		ASSERT_LE(b->cap - 1, b->max);
		ASSERT_EQ(b->data[b->len], 0);
	} else {
		ASSERT_EQ(b->len, 0);
	}
	ASSERT_LE(b->len, b->max);
}

#define CHECK_INVARIANTS(b) STEP(check_invariants(b))

/* b holds exactly the text s and its NUL. */
static void holds_text(const struct kms_buf *b, const char *s)
{
	ASSERT_EQ(b->len, strlen(s));
	ASSERT_STREQ((const char *)b->data, s);
	check_invariants(b);
}

/* Where a buffer's bytes were: to tell a kept block from a new one. */
struct block {
	const uint8_t *data;
	size_t cap;
};

/* Append n (at most 5000) bytes 0x5a to b, and note the block they are in. */
static void append_noting(struct kms_buf *b, size_t n, struct block *at)
{
	uint8_t bytes[5000];

	memset(bytes, 0x5a, n);
	ASSERT_OK(kms_buf_append(b, bytes, n));
	at->data = b->data;
	at->cap = b->cap;
}

/* b is empty and wiped (its first n bytes zero), in the block it had. */
static void kept_empty(const struct kms_buf *b, const struct block *at, size_t n)
{
	ASSERT_TRUE(b->data == at->data);
	ASSERT_EQ(b->cap, at->cap);
	ASSERT_EQ(b->len, 0);
	ASSERT_TRUE(all_zero(b->data, n));
	check_invariants(b);
}

/* b holds no block at all. */
static void released(const struct kms_buf *b)
{
	ASSERT_TRUE(b->data == NULL);
	ASSERT_EQ(b->len, 0);
	ASSERT_EQ(b->cap, 0);
	check_invariants(b);
}

TEST(init)
{
	struct kms_buf a = KMS_BUF_INIT(123, true), b;

	memset(&b, 0x5a, sizeof(b));
	kms_buf_init(&b, 123, true);
	ASSERT_TRUE(a.data == NULL && b.data == NULL);
	ASSERT_EQ(a.len, 0);
	ASSERT_EQ(b.len, 0);
	ASSERT_EQ(a.cap, 0);
	ASSERT_EQ(b.cap, 0);
	ASSERT_EQ(a.max, 123);
	ASSERT_EQ(b.max, 123);
	ASSERT_TRUE(a.secret && b.secret);
	CHECK_INVARIANTS(&b);
}

TEST(append_keeps_nul)
{
	struct kms_buf b = KMS_BUF_INIT(64, false);

	ASSERT_OK(kms_buf_append(&b, "abc", 3));
	CHECK_INVARIANTS(&b);
	ASSERT_OK(kms_buf_append(&b, "de", 2));
	STEP(holds_text(&b, "abcde"));
	ASSERT_OK(kms_buf_append_str(&b, "fgh"));
	STEP(holds_text(&b, "abcdefgh"));
	kms_buf_free(&b);
}

TEST(append_nothing_gives_empty_string)
{
	struct kms_buf b = KMS_BUF_INIT(64, false);

	ASSERT_OK(kms_buf_append(&b, NULL, 0));
	ASSERT_TRUE(b.data != NULL);
	STEP(holds_text(&b, ""));
	kms_buf_free(&b);
}

TEST(max_is_exact)
{
	/* 300 crosses the first allocation (256), so growth and the cap clamp both run. */
	struct kms_buf b = KMS_BUF_INIT(300, false);
	uint8_t src[301];
	const uint8_t *before; /* the block, which a refused append must keep */

	fill(src, sizeof(src), 1);
	for (size_t i = 0; i < 300; i++) {
		ASSERT_OK(kms_buf_append(&b, src + i, 1));
		CHECK_INVARIANTS(&b);
	}
	ASSERT_EQ(b.len, 300);
	before = b.data;
	ASSERT_ERR(kms_buf_append(&b, src + 300, 1), KMS_E_TOO_LONG);
	ASSERT_ERR(kms_buf_reserve(&b, 1), KMS_E_TOO_LONG);
	ASSERT_OK(kms_buf_reserve(&b, 0));
	/* A refused append changes nothing. */
	ASSERT_TRUE(b.data == before);
	ASSERT_EQ(b.len, 300);
	ASSERT_MEMEQ(b.data, src, 300);
	CHECK_INVARIANTS(&b);
	kms_buf_free(&b);
}

TEST(max_zero)
{
	struct kms_buf b = KMS_BUF_INIT(0, false);

	ASSERT_OK(kms_buf_append(&b, "", 0));
	ASSERT_ERR(kms_buf_append(&b, "x", 1), KMS_E_TOO_LONG);
	ASSERT_EQ(b.len, 0);
	CHECK_INVARIANTS(&b);
	kms_buf_free(&b);
}

TEST(one_shot_over_max)
{
	struct kms_buf b = KMS_BUF_INIT(16, false);
	uint8_t src[17] = { 0 };

	ASSERT_ERR(kms_buf_append(&b, src, 17), KMS_E_TOO_LONG);
	ASSERT_TRUE(b.data == NULL);
	ASSERT_ERR(kms_buf_set(&b, src, 17), KMS_E_TOO_LONG);
	ASSERT_OK(kms_buf_set(&b, src, 16));
	ASSERT_EQ(b.len, 16);
	CHECK_INVARIANTS(&b);
	kms_buf_free(&b);
}

TEST(reserve_overflow)
{
	struct kms_buf b = KMS_BUF_INIT(1000, false);

	ASSERT_OK(kms_buf_append(&b, "0123456789", 10));
	ASSERT_ERR(kms_buf_reserve(&b, SIZE_MAX), KMS_E_TOO_LONG);
	ASSERT_ERR(kms_buf_reserve(&b, SIZE_MAX - 5), KMS_E_TOO_LONG);
	ASSERT_ERR(kms_buf_reserve(&b, 991), KMS_E_TOO_LONG);
	ASSERT_OK(kms_buf_reserve(&b, 990));
	ASSERT_EQ(b.len, 10);
	ASSERT_TRUE(b.cap >= 1001);
	CHECK_INVARIANTS(&b);
	kms_buf_free(&b);
}

/* An (unwise) max of SIZE_MAX: kms_buf_reserve() clamps the allocation to max + 1, which wraps to
 * 0, so the first append gets a malloc(0) block and writes past it. */
TEST(huge_max_first_append)
{
	struct kms_buf b = KMS_BUF_INIT(SIZE_MAX, false);

	ASSERT_OK(kms_buf_append(&b, "x", 1));
	CHECK_INVARIANTS(&b);
	ASSERT_TRUE(b.cap >= 2);
	ASSERT_STREQ((const char *)b.data, "x");
	kms_buf_free(&b);
}

/* The same max: len + extra + 1 wraps to 0, and kms_buf_reserve() reports success without
 * allocating anything; a following append would write through NULL. */
TEST(huge_max_reserve_wraparound)
{
	struct kms_buf b = KMS_BUF_INIT(SIZE_MAX, false);

	ASSERT_FAIL(kms_buf_reserve(&b, SIZE_MAX));
	ASSERT_TRUE(b.data == NULL);
	ASSERT_FAIL(kms_buf_reserve(&b, SIZE_MAX - 1));
	CHECK_INVARIANTS(&b);
}

TEST(growth_keeps_contents)
{
	struct kms_buf b = KMS_BUF_INIT(1u << 20, false);
	static uint8_t src[10000];

	fill(src, sizeof(src), 3);
	for (size_t i = 0; i < sizeof(src); i++)
		ASSERT_OK(kms_buf_append(&b, src + i, 1));
	ASSERT_EQ(b.len, sizeof(src));
	ASSERT_MEMEQ(b.data, src, sizeof(src));
	CHECK_INVARIANTS(&b);
	kms_buf_free(&b);
}

TEST(set_replaces_and_wipes_tail)
{
	struct kms_buf b = KMS_BUF_INIT(64, false);

	ASSERT_OK(kms_buf_set(&b, "0123456789", 10));
	ASSERT_OK(kms_buf_set(&b, "ab", 2));
	STEP(holds_text(&b, "ab"));
	/* The old tail is not left behind the new NUL. */
	ASSERT_TRUE(all_zero(b.data + 2, 9));
	ASSERT_OK(kms_buf_set(&b, "0123456789abcdef", 16));
	STEP(holds_text(&b, "0123456789abcdef"));
	kms_buf_free(&b);
}

TEST(reset_wipes_and_keeps_memory)
{
	struct kms_buf b = KMS_BUF_INIT(4096, true);
	struct block at;

	STEP(append_noting(&b, 100, &at));
	kms_buf_reset(&b);
	STEP(kept_empty(&b, &at, 101));
	ASSERT_OK(kms_buf_append(&b, "x", 1));
	ASSERT_TRUE(b.data == at.data);
	ASSERT_STREQ((const char *)b.data, "x");
	kms_buf_free(&b);
	/* Reset of a never used buffer is harmless. */
	kms_buf_reset(&b);
	CHECK_INVARIANTS(&b);
}

TEST(trim_keeps_small_blocks_and_releases_big_ones)
{
	struct kms_buf b = KMS_BUF_INIT(65536, true);
	struct block at;

	STEP(append_noting(&b, 100, &at));
	kms_buf_trim(&b, 4096); /* 256-byte block: kept, wiped, empty */
	STEP(kept_empty(&b, &at, 101));
	STEP(append_noting(&b, 5000, &at));
	ASSERT_TRUE(b.cap > 4096);
	kms_buf_trim(&b, 4096); /* 8 KiB block: released */
	STEP(released(&b));
	ASSERT_OK(kms_buf_append(&b, "x", 1)); /* usable again */
	ASSERT_STREQ((const char *)b.data, "x");
	kms_buf_free(&b);
	kms_buf_trim(&b, 0); /* a never used or freed buffer: harmless */
	CHECK_INVARIANTS(&b);
}

TEST(free_wipes_and_is_idempotent)
{
	struct kms_buf b = KMS_BUF_INIT(4096, false);
	struct kms_buf never = KMS_BUF_INIT(8, true);
	uint8_t junk[300];

	fill(junk, sizeof(junk), 9);
	ASSERT_OK(kms_buf_append(&b, junk, sizeof(junk)));
	/* Non-secret buffers are wiped too (kms_buf.h). */
	watch(b.data, b.cap);
	kms_buf_free(&b);
	ASSERT_TRUE(watch_hit);
	ASSERT_TRUE(watch_zero);
	STEP(released(&b));
	/* The bound and the kind survive, so the buffer can be used again. */
	ASSERT_EQ(b.max, 4096);
	kms_buf_free(&b);
	kms_buf_free(&never);
	CHECK_INVARIANTS(&never);
	ASSERT_OK(kms_buf_append(&b, "again", 5));
	ASSERT_STREQ((const char *)b.data, "again");
	kms_buf_free(&b);
}

TEST(growth_wipes_old_block)
{
	struct kms_buf b = KMS_BUF_INIT(4096, true);
	uint8_t key[300];
	uint8_t *old;

	fill(key, sizeof(key), 0x41);
	ASSERT_OK(kms_buf_append(&b, key, 200));
	old = b.data;
	watch(old, b.cap);
	ASSERT_OK(kms_buf_append(&b, key + 200, 100));
	ASSERT_TRUE(b.data != old);
	ASSERT_TRUE(watch_hit);
	ASSERT_TRUE(watch_zero);
	ASSERT_MEMEQ(b.data, key, sizeof(key));
	CHECK_INVARIANTS(&b);
	kms_buf_free(&b);
}

TEST(move)
{
	struct kms_buf dst = KMS_BUF_INIT(16, false), src = KMS_BUF_INIT(1024, true);
	uint8_t *moved;
	size_t cap;

	ASSERT_OK(kms_buf_append_str(&dst, "old contents"));
	ASSERT_OK(kms_buf_append_str(&src, "a secret longer than dst's max"));
	moved = src.data;
	cap = src.cap;
	watch(dst.data, dst.cap);
	kms_buf_move(&dst, &src);
	/* dst was freed (and so wiped) first. */
	ASSERT_TRUE(watch_hit);
	ASSERT_TRUE(watch_zero);
	/* The bytes moved without a copy. */
	ASSERT_TRUE(dst.data == moved);
	ASSERT_EQ(dst.cap, cap);
	ASSERT_STREQ((const char *)dst.data, "a secret longer than dst's max");
	ASSERT_TRUE(dst.secret);
	CHECK_INVARIANTS(&dst);
	/* src is empty and reusable, with its own bound. */
	STEP(released(&src));
	ASSERT_EQ(src.max, 1024);
	ASSERT_OK(kms_buf_append_str(&src, "next"));
	ASSERT_STREQ((const char *)src.data, "next");
	kms_buf_free(&src);
	kms_buf_free(&dst);
}

TEST(move_empty)
{
	struct kms_buf dst = KMS_BUF_INIT(64, false), src = KMS_BUF_INIT(64, false);

	ASSERT_OK(kms_buf_append_str(&dst, "gone"));
	kms_buf_move(&dst, &src);
	STEP(released(&dst));
	CHECK_INVARIANTS(&src);
	ASSERT_OK(kms_buf_append_str(&src, "x"));
	kms_buf_move(&dst, &src);
	ASSERT_STREQ((const char *)dst.data, "x");
	ASSERT_FALSE(dst.secret);
	kms_buf_free(&dst);
}

TEST(truncate_wipes_the_tail)
{
	struct kms_buf b = KMS_BUF_INIT(64, true);

	kms_buf_truncate(&b, 0); /* a never used buffer: harmless */
	CHECK_INVARIANTS(&b);
	ASSERT_OK(kms_buf_append_str(&b, "keep-secret"));
	kms_buf_truncate(&b, 20); /* longer than it is: nothing changes */
	ASSERT_EQ(b.len, 11);
	kms_buf_truncate(&b, 4);
	ASSERT_EQ(b.len, 4);
	ASSERT_STREQ((const char *)b.data, "keep");
	ASSERT_TRUE(all_zero(b.data + 4, 8));
	CHECK_INVARIANTS(&b);
	kms_buf_free(&b);
}
