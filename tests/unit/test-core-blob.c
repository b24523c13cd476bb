/* test-core-blob.c - the ciphertext container (format at the top of core/kms_core.h).
 *
 * Besides round trips, this holds the OpenSSH test_fuzz.c-style deterministic mutations: every
 * truncation and every single-bit flip of valid blobs must be refused, and a flip whose digest has
 * been recomputed (what a forger would do) must still fail, on authenticity. A blob is also built
 * by hand from the documented layout, so the format and the code cannot drift apart silently.
 */
#include "kms_test.h"

#include "core/kms_core.h"

#define KEY_ID	    "0f3b7c9e-1d2a-4b5c-8e6f-7a8b9c0d1e2f"
#define KEY_VERSION 3u
#define CONTEXT	    "{\"purpose\":\"unit-test\"}"

static const uint8_t test_key[CORE_KEY_BYTES] = {
	0x60, 0x3d, 0xeb, 0x10, 0x15, 0xca, 0x71, 0xbe, 0x2b, 0x73, 0xae,
	0xf0, 0x85, 0x7d, 0x77, 0x81, 0x1f, 0x35, 0x2c, 0x07, 0x3b, 0x61,
	0x08, 0xd7, 0x2d, 0x98, 0x10, 0xa3, 0x09, 0x14, 0xdf, 0xf4,
};

static size_t ceil16(size_t n)
{
	return (n + 15) / 16 * 16;
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seed * 29 + i * 13 + 5);
}

static void put_le(uint8_t *p, uint32_t v, size_t bytes)
{
	for (size_t i = 0; i < bytes; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le(const uint8_t *p, size_t bytes)
{
	uint32_t v = 0;

	for (size_t i = 0; i < bytes; i++)
		v |= (uint32_t)p[i] << (8 * i);
	return v;
}

static int seal(const uint8_t *plain, size_t n, uint8_t *out, size_t *len)
{
	return core_blob_seal(test_key, KEY_ID, KEY_VERSION, CONTEXT, strlen(CONTEXT), plain, n,
			      out, CORE_BLOB_MAX, len);
}

static int parse_open(const uint8_t *blob, size_t len, const uint8_t *key, const char *ctx,
		      uint8_t *plain, size_t *n)
{
	struct core_blob b;
	int r;

	*n = 0;
	r = core_blob_parse(blob, len, &b);
	if (r < 0)
		return r;
	return core_blob_open(key, &b, ctx, ctx ? strlen(ctx) : 0, plain, CORE_BLOB_MAX_PLAIN, n);
}

static void redigest(uint8_t *blob, size_t len)
{
	/* The digest is unkeyed: anyone can recompute it. */
	if (core_sha256(blob, len - CORE_SHA256_BYTES, blob + len - CORE_SHA256_BYTES) < 0)
		abort();
}

/* Build a blob by hand from the layout documented in kms_core.h, with a chosen nonce and an
 * arbitrary GCM plaintext ("frame"), which need not be well formed. */
static size_t build_blob(const uint8_t *key, const uint8_t nonce[CORE_NONCE_BYTES],
			 const char *key_id, uint32_t version, const char *ctx,
			 const uint8_t *frame, size_t framed, uint8_t *out)
{
	size_t payload = CORE_NONCE_BYTES + framed + CORE_TAG_BYTES;
	size_t len = 4 + payload + 36 + 4 + 32;
	uint8_t aad[4 + 36 + 4];

	put_le(out, 2, 2);
	put_le(out + 2, (uint32_t)(len - 4 - 32), 2);
	memcpy(out + 4, nonce, CORE_NONCE_BYTES);
	memcpy(out + 4 + payload, key_id, 36);
	put_le(out + 4 + payload + 36, version, 4);
	memcpy(aad, out, 4);
	memcpy(aad + 4, key_id, 36);
	put_le(aad + 40, version, 4);
	if (core_gcm_seal_detached_(key, nonce, aad, sizeof(aad), ctx, strlen(ctx), frame, framed,
				    out + 4 + CORE_NONCE_BYTES,
				    out + 4 + CORE_NONCE_BYTES + framed) < 0)
		abort();
	redigest(out, len);
	return len;
}

/* The documented frame: u32 LE n || plaintext || zeros up to ceil16(n) + 20 bytes. */
static size_t make_frame(const uint8_t *plain, size_t n, uint32_t claimed, uint8_t *frame)
{
	size_t framed = ceil16(n) + 20;

	memset(frame, 0, framed);
	put_le(frame, claimed, 4);
	memcpy(frame + 4, plain, n);
	return framed;
}

TEST(size_law)
{
	ASSERT_EQ(CORE_BLOB_OVERHEAD, 124);
	ASSERT_EQ(core_blob_size(64), 188);
	ASSERT_EQ(core_blob_size(1), 140);
	ASSERT_EQ(core_blob_size(16), 140);
	ASSERT_EQ(core_blob_size(17), 156);
	ASSERT_EQ(CORE_BLOB_MAX, 124 + 4096);
	for (size_t n = 1; n <= CORE_BLOB_MAX_PLAIN; n++)
		ASSERT_EQ(core_blob_size(n), 124 + ceil16(n));
}

static void round_trip(size_t n)
{
	static uint8_t plain[CORE_BLOB_MAX_PLAIN], back[CORE_BLOB_MAX_PLAIN], blob[CORE_BLOB_MAX];
	struct core_blob b;
	size_t len = 0, got = 99;

	fill(plain, n, (unsigned)n);
	ASSERT_OK(seal(plain, n, blob, &len));
	ASSERT_EQ(len, 124 + ceil16(n));
	ASSERT_EQ(len, core_blob_size(n));
	ASSERT_OK(core_blob_parse(blob, len, &b));
	ASSERT_TRUE(b.bytes == blob);
	ASSERT_EQ(b.len, len);
	ASSERT_TRUE(b.payload == blob + 4);
	ASSERT_EQ(b.payload_len, 48 + ceil16(n));
	ASSERT_STREQ(b.key_id, KEY_ID);
	ASSERT_EQ(b.key_version, KEY_VERSION);
	ASSERT_EQ(core_blob_plain_bound(&b), ceil16(n));
	ASSERT_OK(core_blob_open(test_key, &b, CONTEXT, strlen(CONTEXT), back, sizeof(back), &got));
	ASSERT_EQ(got, n);
	ASSERT_MEMEQ(back, plain, n);
}

TEST(round_trip_1_to_64_and_4096)
{
	for (size_t n = 1; n <= 64; n++) {
		round_trip(n);
		if (kms_test_failing()) {
			fprintf(stderr, "\tn = %zu\n", n);
			return;
		}
	}
	round_trip(4096);
}

TEST(layout_64_byte_dek)
{
	uint8_t plain[64], blob[CORE_BLOB_MAX], digest[32];
	size_t len;

	fill(plain, sizeof(plain), 1);
	ASSERT_OK(seal(plain, 64, blob, &len));
	ASSERT_EQ(len, 188);
	ASSERT_HEXEQ(blob, 4, "02009800");
	ASSERT_MEMEQ(blob + 116, KEY_ID, 36);
	ASSERT_EQ(get_le(blob + 152, 4), KEY_VERSION);
	ASSERT_OK(core_sha256(blob, 156, digest));
	ASSERT_MEMEQ(blob + 156, digest, 32);
}

TEST(layout_every_size)
{
	static uint8_t plain[CORE_BLOB_MAX_PLAIN], blob[CORE_BLOB_MAX];
	uint8_t digest[32];
	size_t len;

	fill(plain, sizeof(plain), 2);
	for (size_t n = 1; n <= CORE_BLOB_MAX_PLAIN; n += n < 100 ? 1 : 331) {
		ASSERT_OK(seal(plain, n, blob, &len));
		ASSERT_EQ(get_le(blob, 2), 2);
		ASSERT_EQ(get_le(blob + 2, 2), len - 36);
		ASSERT_MEMEQ(blob + len - 72, KEY_ID, 36);
		ASSERT_EQ(get_le(blob + len - 36, 4), KEY_VERSION);
		ASSERT_OK(core_sha256(blob, len - 32, digest));
		ASSERT_MEMEQ(blob + len - 32, digest, 32);
	}
}

TEST(hand_built_blob_opens)
{
	static const uint8_t nonce[12] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };
	uint8_t plain[37], frame[80], blob[CORE_BLOB_MAX], back[64];
	size_t framed, len, n;

	fill(plain, sizeof(plain), 3);
	framed = make_frame(plain, sizeof(plain), sizeof(plain), frame);
	len = build_blob(test_key, nonce, KEY_ID, 77, CONTEXT, frame, framed, blob);
	ASSERT_EQ(len, core_blob_size(sizeof(plain)));
	ASSERT_OK(parse_open(blob, len, test_key, CONTEXT, back, &n));
	ASSERT_EQ(n, sizeof(plain));
	ASSERT_MEMEQ(back, plain, sizeof(plain));
}

/* And the other way: what core_blob_seal writes decrypts by hand, per the documentation. */
TEST(sealed_blob_decrypts_by_hand)
{
	uint8_t plain[21], blob[CORE_BLOB_MAX], aad[44], frame[64], want[64];
	size_t len, framed = ceil16(21) + 20;

	fill(plain, sizeof(plain), 4);
	ASSERT_OK(seal(plain, sizeof(plain), blob, &len));
	memcpy(aad, blob, 4);
	memcpy(aad + 4, KEY_ID, 36);
	put_le(aad + 40, KEY_VERSION, 4);
	ASSERT_EQ(4 + 12 + framed + 16 + 36 + 4 + 32, len);
	ASSERT_OK(core_gcm_open_detached_(test_key, blob + 4, aad, 44, CONTEXT, strlen(CONTEXT),
					  blob + 16, framed, frame, blob + 16 + framed));
	make_frame(plain, sizeof(plain), sizeof(plain), want);
	ASSERT_MEMEQ(frame, want, framed);
}

TEST(fresh_nonce_per_seal)
{
	uint8_t plain[64], a[CORE_BLOB_MAX], b[CORE_BLOB_MAX];
	size_t la, lb;

	fill(plain, sizeof(plain), 5);
	ASSERT_OK(seal(plain, 64, a, &la));
	ASSERT_OK(seal(plain, 64, b, &lb));
	ASSERT_EQ(la, lb);
	ASSERT_TRUE(memcmp(a + 4, b + 4, CORE_NONCE_BYTES) != 0);
}

TEST(parse_rejects_every_truncation)
{
	static const size_t sizes[] = { 1, 16, 17, 64, 4096 };
	static uint8_t plain[CORE_BLOB_MAX_PLAIN], blob[CORE_BLOB_MAX + 32];
	struct core_blob b;
	size_t len;

	fill(plain, sizeof(plain), 6);
	ASSERT_ERR(core_blob_parse(NULL, 0, &b), KMS_E_CIPHER_INVALID);
	for (size_t s = 0; s < KMS_ARRAY_SIZE(sizes); s++) {
		ASSERT_OK(seal(plain, sizes[s], blob, &len));
		for (size_t cut = 0; cut < len; cut++) {
			if (core_blob_parse(blob, cut, &b) != KMS_E_CIPHER_INVALID)
				fprintf(stderr, "\tn = %zu, cut = %zu\n", sizes[s], cut);
			ASSERT_ERR(core_blob_parse(blob, cut, &b), KMS_E_CIPHER_INVALID);
			ASSERT_TRUE(b.bytes == NULL);
		}
		/* Trailing bytes are refused too, whole blocks included. */
		memset(blob + len, 0, 32);
		ASSERT_ERR(core_blob_parse(blob, len + 1, &b), KMS_E_CIPHER_INVALID);
		ASSERT_ERR(core_blob_parse(blob, len + 16, &b), KMS_E_CIPHER_INVALID);
		ASSERT_OK(core_blob_parse(blob, len, &b));
	}
}

TEST(parse_rejects_every_bit_flip)
{
	static const size_t sizes[] = { 1, 64, 4096 };
	static uint8_t plain[CORE_BLOB_MAX_PLAIN], blob[CORE_BLOB_MAX];
	struct core_blob b;
	size_t len;

	fill(plain, sizeof(plain), 7);
	for (size_t s = 0; s < KMS_ARRAY_SIZE(sizes); s++) {
		ASSERT_OK(seal(plain, sizes[s], blob, &len));
		for (size_t bit = 0; bit < len * 8; bit++) {
			int r;

			blob[bit / 8] ^= (uint8_t)(1u << (bit % 8));
			r = core_blob_parse(blob, len, &b);
			blob[bit / 8] ^= (uint8_t)(1u << (bit % 8));
			if (r != KMS_E_CIPHER_INVALID)
				fprintf(stderr, "\tn = %zu, bit %zu\n", sizes[s], bit);
			ASSERT_ERR(r, KMS_E_CIPHER_INVALID);
		}
		ASSERT_OK(core_blob_parse(blob, len, &b));
	}
}

/* A forger flips a bit and recomputes the digest. Header flips are structural (parse refuses);
 * key id flips may or may not leave a well-formed id; payload and version flips parse and must
 * then fail authentication. */
static void forged_flips(size_t n)
{
	static uint8_t plain[CORE_BLOB_MAX_PLAIN], blob[CORE_BLOB_MAX];
	size_t len, key_id_at, version_at, reached_open = 0;

	fill(plain, n, 8);
	ASSERT_OK(seal(plain, n, blob, &len));
	key_id_at = len - 72;
	version_at = len - 36;
	for (size_t bit = 0; bit < (len - 32) * 8; bit++) {
		size_t at = bit / 8, got;
		uint8_t back[CORE_BLOB_MAX_PLAIN];
		struct core_blob b;
		int rp, ro = 1;

		blob[at] ^= (uint8_t)(1u << (bit % 8));
		redigest(blob, len);
		rp = core_blob_parse(blob, len, &b);
		if (rp == 0)
			ro = core_blob_open(test_key, &b, CONTEXT, strlen(CONTEXT), back,
					    sizeof(back), &got);
		blob[at] ^= (uint8_t)(1u << (bit % 8));
		redigest(blob, len);

		if (at < 4) {
			ASSERT_ERR(rp, KMS_E_CIPHER_INVALID);
		} else if (at >= key_id_at && at < version_at) {
			if (rp == 0)
				ASSERT_ERR(ro, KMS_E_DECRYPT_FAILED);
			else
				ASSERT_ERR(rp, KMS_E_CIPHER_INVALID);
		} else {
			if (rp < 0 || ro != KMS_E_DECRYPT_FAILED)
				fprintf(stderr, "\tn = %zu, byte %zu bit %zu\n", n, at, bit % 8);
			ASSERT_OK(rp);
			ASSERT_ERR(ro, KMS_E_DECRYPT_FAILED);
		}
		reached_open += rp == 0;
	}
	/* Every payload and version bit, at least. */
	ASSERT_TRUE(reached_open >= (len - 72) * 8);
}

TEST(forged_flips_fail_authentication)
{
	STEP(forged_flips(64));
	STEP(forged_flips(1));
	forged_flips(4096);
}

TEST(wrong_context)
{
	static const char *const wrong[] = {
		"{\"purpose\":\"unit-tesT\"}",
		"{\"purpose\":\"unit-test\"} ",
		"{\"purpose\":\"unit-test\"",
		"",
		"{}",
	};
	uint8_t plain[64], blob[CORE_BLOB_MAX], back[CORE_BLOB_MAX_PLAIN];
	size_t len, n;

	fill(plain, sizeof(plain), 9);
	ASSERT_OK(seal(plain, 64, blob, &len));
	for (size_t i = 0; i < KMS_ARRAY_SIZE(wrong); i++)
		ASSERT_ERR(parse_open(blob, len, test_key, wrong[i], back, &n),
			   KMS_E_DECRYPT_FAILED);
	ASSERT_ERR(parse_open(blob, len, test_key, NULL, back, &n), KMS_E_DECRYPT_FAILED);
	ASSERT_EQ(n, 0);
	ASSERT_OK(parse_open(blob, len, test_key, CONTEXT, back, &n));
	ASSERT_EQ(n, 64);
}

TEST(no_context_is_empty_context)
{
	uint8_t plain[8] = "12345678", blob[CORE_BLOB_MAX], back[CORE_BLOB_MAX_PLAIN];
	size_t len, n;

	ASSERT_OK(core_blob_seal(test_key, KEY_ID, 0, NULL, 0, plain, 8, blob, sizeof(blob), &len));
	ASSERT_OK(parse_open(blob, len, test_key, "", back, &n));
	ASSERT_OK(parse_open(blob, len, test_key, NULL, back, &n));
	ASSERT_MEMEQ(back, plain, 8);
	ASSERT_ERR(parse_open(blob, len, test_key, CONTEXT, back, &n), KMS_E_DECRYPT_FAILED);
}

TEST(wrong_key)
{
	uint8_t plain[64], blob[CORE_BLOB_MAX], back[CORE_BLOB_MAX_PLAIN], key[CORE_KEY_BYTES];
	size_t len, n;

	fill(plain, sizeof(plain), 10);
	ASSERT_OK(seal(plain, 64, blob, &len));
	for (size_t i = 0; i < CORE_KEY_BYTES * 8; i += 37) {
		memcpy(key, test_key, sizeof(key));
		key[i / 8] ^= (uint8_t)(1u << (i % 8));
		n = 99;
		ASSERT_ERR(parse_open(blob, len, key, CONTEXT, back, &n), KMS_E_DECRYPT_FAILED);
		ASSERT_EQ(n, 0);
	}
}

TEST(key_version_round_trip)
{
	static const uint32_t versions[] = { 0, 1, 255, 256, 65536, UINT32_MAX };
	uint8_t plain[3] = { 1, 2, 3 }, blob[CORE_BLOB_MAX];
	struct core_blob b;
	size_t len;

	for (size_t i = 0; i < KMS_ARRAY_SIZE(versions); i++) {
		ASSERT_OK(core_blob_seal(test_key, KEY_ID, versions[i], NULL, 0, plain, 3, blob,
					 sizeof(blob), &len));
		ASSERT_OK(core_blob_parse(blob, len, &b));
		ASSERT_EQ(b.key_version, versions[i]);
	}
}

TEST(seal_rejects_bad_arguments)
{
	static uint8_t plain[CORE_BLOB_MAX_PLAIN + 1], blob[CORE_BLOB_MAX + 16];
	size_t len;

	len = 99;
	ASSERT_FAIL(seal(plain, 0, blob, &len));
	ASSERT_EQ(len, 0);
	len = 99;
	ASSERT_FAIL(seal(plain, CORE_BLOB_MAX_PLAIN + 1, blob, &len));
	ASSERT_EQ(len, 0);
	ASSERT_OK(seal(plain, CORE_BLOB_MAX_PLAIN, blob, &len));
	ASSERT_EQ(len, CORE_BLOB_MAX);
	/* Output capacity. */
	ASSERT_FAIL(core_blob_seal(test_key, KEY_ID, 1, NULL, 0, plain, 64, blob, 187, &len));
	ASSERT_EQ(len, 0);
	ASSERT_OK(core_blob_seal(test_key, KEY_ID, 1, NULL, 0, plain, 64, blob, 188, &len));
	/* Key ids are exactly 36 characters. */
	ASSERT_FAIL(core_blob_seal(test_key, "0f3b7c9e-1d2a-4b5c-8e6f-7a8b9c0d1e2", 1, NULL, 0,
				   plain, 64, blob, sizeof(blob), &len));
	ASSERT_FAIL(core_blob_seal(test_key, KEY_ID "0", 1, NULL, 0, plain, 64, blob, sizeof(blob),
				   &len));
	ASSERT_EQ(len, 0);
}

/* Whatever core_blob_seal accepts, core_blob_parse must accept: otherwise the service hands out
 * ciphertexts it will itself call invalid (KMS.2201). Today seal only checks strlen == 36. */
TEST(seal_output_always_parses)
{
	static const char *const ids[] = {
		"0F3B7C9E-1D2A-4B5C-8E6F-7A8B9C0D1E2F", /* an upper-case UUID */
		"0f3b7c9e_1d2a_4b5c_8e6f_7a8b9c0d1e2f", /* no dashes */
		"this is not a key id but 36 chars!!!",
	};
	uint8_t plain[16] = { 0 }, blob[CORE_BLOB_MAX];
	struct core_blob b;

	for (size_t i = 0; i < KMS_ARRAY_SIZE(ids); i++) {
		size_t len = 0;
		int r = core_blob_seal(test_key, ids[i], 1, NULL, 0, plain, 16, blob, sizeof(blob),
				       &len);

		ASSERT_EQ(strlen(ids[i]), 36);
		if (r < 0)
			continue;
		if (core_blob_parse(blob, len, &b) < 0)
			fprintf(stderr, "\tsealed under \"%s\", which parse refuses\n", ids[i]);
		ASSERT_OK(core_blob_parse(blob, len, &b));
	}
}

/* Key ids are UUIDs (kms_limits.h): lower-case hex digits and four dashes. */
TEST(parse_key_id_must_be_uuid)
{
	static const struct {
		const char *id;
		bool ok;
	} ids[] = {
		{ KEY_ID, true },
		{ "00000000-0000-0000-0000-000000000000", true },
		{ "abcdefab-cdef-abcd-efab-cdefabcdefab", true },
		{ "0f3b7c9e-1d2a-4b5c-8e6f-7a8b9c0d1e2g", false },
		{ "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz", false },
		{ "0F3B7C9E-1D2A-4B5C-8E6F-7A8B9C0D1E2F", false },
		{ "0f3b7c9e11d2a-4b5c-8e6f-7a8b9c0d1e2f", false },
		{ "0f3b7c9e-1d2a-4b5c-8e6f-7a8b9c0d1e-f", false },
		{ "0f3b7c9e-1d2a-4b5c-8e6f-7a8b9c0d1e2\x80", false },
		{ "0f3b7c9e-1d2a-4b5c-8e6f-7a8b9c0d1e2 ", false },
	};
	uint8_t plain[16] = { 0 }, blob[CORE_BLOB_MAX];
	struct core_blob b;
	size_t len;

	ASSERT_OK(seal(plain, 16, blob, &len));
	for (size_t i = 0; i < KMS_ARRAY_SIZE(ids); i++) {
		int r;

		memcpy(blob + len - 72, ids[i].id, 36);
		redigest(blob, len);
		r = core_blob_parse(blob, len, &b);
		if ((r == 0) != ids[i].ok)
			fprintf(stderr, "\tkey id \"%s\": parse says %d\n", ids[i].id, r);
		if (ids[i].ok)
			ASSERT_OK(r);
		else
			ASSERT_ERR(r, KMS_E_CIPHER_INVALID);
	}
}

TEST(parse_rejects_oversized_blob)
{
	/* Well formed in every other way: a 4112-byte plaintext, one block over the limit. */
	static const uint8_t nonce[12] = { 0 };
	static uint8_t frame[4112 + 20], blob[CORE_BLOB_MAX + 64], plain[4112];
	struct core_blob b;
	size_t framed, len;

	framed = make_frame(plain, sizeof(plain), sizeof(plain), frame);
	len = build_blob(test_key, nonce, KEY_ID, 1, "", frame, framed, blob);
	ASSERT_EQ(len, CORE_BLOB_MAX + 16);
	ASSERT_ERR(core_blob_parse(blob, len, &b), KMS_E_CIPHER_INVALID);
}

/* Authentic blobs whose decrypted frame is malformed (only a buggy encoder could make them). */
TEST(open_rejects_malformed_frames)
{
	static const uint32_t claims[] = { 0, 16, 33, 48, 0xffffffffu, 0x80000011u };
	static const uint8_t nonce[12] = { 9 };
	uint8_t plain[17], frame[64], blob[CORE_BLOB_MAX], back[CORE_BLOB_MAX_PLAIN];
	size_t framed, len, n;

	fill(plain, sizeof(plain), 11);
	/* Sanity: the well-formed frame opens. */
	framed = make_frame(plain, 17, 17, frame);
	len = build_blob(test_key, nonce, KEY_ID, 1, CONTEXT, frame, framed, blob);
	ASSERT_OK(parse_open(blob, len, test_key, CONTEXT, back, &n));
	ASSERT_EQ(n, 17);
	/* Claimed lengths that do not match the frame size. */
	for (size_t i = 0; i < KMS_ARRAY_SIZE(claims); i++) {
		framed = make_frame(plain, 17, claims[i], frame);
		len = build_blob(test_key, nonce, KEY_ID, 1, CONTEXT, frame, framed, blob);
		ASSERT_ERR(parse_open(blob, len, test_key, CONTEXT, back, &n),
			   KMS_E_CIPHER_INVALID);
		ASSERT_EQ(n, 0);
	}
	/* A length one block short, over a zero tail: the padding is clean but the size is not. */
	memset(frame, 0, sizeof(frame));
	put_le(frame, 16, 4);
	memcpy(frame + 4, plain, 16);
	len = build_blob(test_key, nonce, KEY_ID, 1, CONTEXT, frame, ceil16(17) + 20, blob);
	ASSERT_ERR(parse_open(blob, len, test_key, CONTEXT, back, &n), KMS_E_CIPHER_INVALID);
	/* Non-zero padding, at each padding byte. */
	for (size_t at = 4 + 17; at < ceil16(17) + 20; at++) {
		framed = make_frame(plain, 17, 17, frame);
		frame[at] = 0x01;
		len = build_blob(test_key, nonce, KEY_ID, 1, CONTEXT, frame, framed, blob);
		ASSERT_ERR(parse_open(blob, len, test_key, CONTEXT, back, &n),
			   KMS_E_CIPHER_INVALID);
	}
}

TEST(open_capacity)
{
	uint8_t plain[40], blob[CORE_BLOB_MAX], back[40];
	struct core_blob b;
	size_t len, n = 99;

	fill(plain, sizeof(plain), 12);
	ASSERT_OK(seal(plain, 40, blob, &len));
	ASSERT_OK(core_blob_parse(blob, len, &b));
	ASSERT_FAIL(core_blob_open(test_key, &b, CONTEXT, strlen(CONTEXT), back, 39, &n));
	ASSERT_EQ(n, 0);
	ASSERT_OK(core_blob_open(test_key, &b, CONTEXT, strlen(CONTEXT), back, 40, &n));
	ASSERT_EQ(n, 40);
}
