/* test-hex.c - the strict hex and Base64 codecs: RFC 4648 known answers, every way to be
 * malformed, and exhaustive checks of the small input spaces against independent oracles. */
#include "kms_test.h"

#include "common/kms_hex.h"

struct vec {
	const char *plain;
	const char *base16;
	const char *base64;
};

/* RFC 4648 section 10. */
static const struct vec rfc4648[] = {
	{ "", "", "" },
	{ "f", "66", "Zg==" },
	{ "fo", "666F", "Zm8=" },
	{ "foo", "666F6F", "Zm9v" },
	{ "foob", "666F6F62", "Zm9vYg==" },
	{ "fooba", "666F6F6261", "Zm9vYmE=" },
	{ "foobar", "666F6F626172", "Zm9vYmFy" },
};

static int hex_dec(const char *s, uint8_t *out, size_t cap, size_t *n)
{
	return kms_hex_decode(s, strlen(s), out, cap, n);
}

static int b64_dec(const char *s, uint8_t *out, size_t cap, size_t *n)
{
	return kms_base64_decode(s, strlen(s), out, cap, n);
}

static size_t hex_encoded_len(size_t n)
{
	return 2 * n;
}

/* What the hex and the Base64 tests share: one codec of kms_hex.h. */
struct codec {
	void (*encode)(const uint8_t *in, size_t n, char *out);
	int (*decode)(const char *s, uint8_t *out, size_t cap, size_t *n);
	size_t (*encoded_len)(size_t n);
	bool (*valid)(const char *in, size_t len); /* NULL: the codec has no validity check */
	bool base64;				   /* which column of struct vec */
};

static const struct codec hex = { kms_hex_encode, hex_dec, hex_encoded_len, kms_is_hex, false };
static const struct codec base64 = { kms_base64_encode, b64_dec, kms_base64_encoded_len, NULL,
				     true };

static bool is_hex_char(char c)
{
	return c != 0 && memchr("0123456789abcdefABCDEF", c, 22) != NULL;
}

/* The RFC 4648 vectors both ways. The empty string is encoded only: Base64 refuses to decode it
 * (see base64_empty). */
static void known_answers(const struct codec *c)
{
	for (size_t i = 0; i < KMS_ARRAY_SIZE(rfc4648); i++) {
		const struct vec *v = &rfc4648[i];
		const char *want = c->base64 ? v->base64 : v->base16;
		size_t n = strlen(v->plain), got = 99;
		char enc[64];
		uint8_t dec[64];

		memset(enc, 'x', sizeof(enc));
		c->encode((const uint8_t *)v->plain, n, enc);
		ASSERT_STREQ(enc, want);
		ASSERT_EQ(c->encoded_len(n), strlen(want));
		if (n == 0 && c->base64)
			continue;
		ASSERT_OK(c->decode(want, dec, sizeof(dec), &got));
		ASSERT_EQ(got, n);
		ASSERT_MEMEQ(dec, v->plain, n);
	}
}

/* Every string of bad is refused, with nothing decoded (and not valid, where c can say). */
static void rejects(const struct codec *c, const char *const *bad, size_t count)
{
	uint8_t out[16];
	size_t n;

	for (size_t i = 0; i < count; i++) {
		n = 7;
		if (c->decode(bad[i], out, sizeof(out), &n) != KMS_E_BAD_PARAM)
			fprintf(stderr, "\taccepted \"%s\"\n", bad[i]);
		ASSERT_ERR(c->decode(bad[i], out, sizeof(out), &n), KMS_E_BAD_PARAM);
		ASSERT_EQ(n, 0);
		if (c->valid)
			ASSERT_FALSE(c->valid(bad[i], strlen(bad[i])));
	}
}

/* text decodes to exactly need bytes: into need, and not into one fewer. */
static void capacity_is(const struct codec *c, const char *text, size_t need)
{
	uint8_t out[16];
	size_t n = 7;

	ASSERT_OK(c->decode(text, out, need, &n));
	ASSERT_EQ(n, need);
	ASSERT_ERR(c->decode(text, out, need - 1, &n), KMS_E_BAD_PARAM);
	ASSERT_EQ(n, 0);
}

TEST(hex_rfc4648)
{
	known_answers(&hex);
}

TEST(hex_case)
{
	uint8_t out[8];
	size_t n;
	char enc[17];

	ASSERT_OK(hex_dec("0aFfBc", out, sizeof(out), &n));
	ASSERT_EQ(n, 3);
	ASSERT_MEMEQ(out, "\x0a\xff\xbc", 3);
	ASSERT_OK(hex_dec("abcdef", out, sizeof(out), &n));
	ASSERT_OK(hex_dec("ABCDEF", out + 3, sizeof(out) - 3, &n));
	ASSERT_MEMEQ(out, out + 3, 3);
	/* Output is upper case, as the service prints it. */
	kms_hex_encode((const uint8_t *)"\xab\xcd\xef\x09", 4, enc);
	ASSERT_STREQ(enc, "ABCDEF09");
}

TEST(hex_all_bytes_round_trip)
{
	uint8_t in[256], out[256];
	char enc[513];
	size_t n;

	for (size_t i = 0; i < 256; i++)
		in[i] = (uint8_t)i;
	kms_hex_encode(in, sizeof(in), enc);
	ASSERT_EQ(strlen(enc), 512);
	ASSERT_TRUE(kms_is_hex(enc, 512));
	ASSERT_OK(kms_hex_decode(enc, 512, out, sizeof(out), &n));
	ASSERT_EQ(n, 256);
	ASSERT_MEMEQ(in, out, 256);
}

/* Every byte value at every position of the 4-byte groups the encoder works in, and every
 * length of the tail after them: the digits of a plain per-byte encoding, upper case. */
TEST(hex_encode_every_position)
{
	static const char digits[] = "0123456789ABCDEF";
	uint8_t in[11];
	char enc[23], want[23];

	for (size_t len = 0; len <= sizeof(in); len++) {
		for (unsigned v = 0; v < 256; v++) {
			for (size_t i = 0; i < len; i++)
				in[i] = (uint8_t)(v + 37 * i);
			for (size_t i = 0; i < len; i++) {
				want[2 * i] = digits[in[i] >> 4];
				want[2 * i + 1] = digits[in[i] & 15];
			}
			want[2 * len] = 0;
			memset(enc, 'x', sizeof(enc));
			kms_hex_encode(in, len, enc);
			ASSERT_STREQ(enc, want);
		}
	}
}

TEST(hex_rejects)
{
	static const char *const bad[] = {
		"0",	 "ABC",	     " 00",  "00 ",    "0 0",	      "\t0", "00\n",
		"0G",	 "g0",	     "0x00", "+0",     "-0",	      "00:", "é0",
		"0\xff", "\xc3\xa9", "000G", "0000 0", "DEADBEEF\n0",
	};
	uint8_t out[16];
	size_t n;

	STEP(rejects(&hex, bad, KMS_ARRAY_SIZE(bad)));
	/* An embedded NUL counts as a character, not as the end. */
	ASSERT_ERR(kms_hex_decode("0\0", 2, out, sizeof(out), &n), KMS_E_BAD_PARAM);
	ASSERT_ERR(kms_hex_decode("00\0\0", 4, out, sizeof(out), &n), KMS_E_BAD_PARAM);
	ASSERT_FALSE(kms_is_hex("00\0\0", 4));
}

TEST(hex_capacity)
{
	uint8_t out[4];
	size_t n = 7;

	STEP(capacity_is(&hex, "00112233", 4));
	STEP(capacity_is(&hex, "0011223344", 5));
	STEP(capacity_is(&hex, "00", 1));
	ASSERT_OK(hex_dec("", out, 0, &n));
	ASSERT_EQ(n, 0);
	ASSERT_TRUE(kms_is_hex("", 0));
}

/* Every two-character input, against an oracle that shares no code with kms_hex.c. */
TEST(hex_exhaustive_pairs)
{
	for (int a = 0; a < 256; a++) {
		for (int b = 0; b < 256; b++) {
			char in[2] = { (char)a, (char)b };
			bool want = is_hex_char(in[0]) && is_hex_char(in[1]);
			uint8_t out[1];
			size_t n;
			int r = kms_hex_decode(in, 2, out, 1, &n);

			ASSERT_EQ(kms_is_hex(in, 2), want);
			if (!want) {
				ASSERT_ERR(r, KMS_E_BAD_PARAM);
				continue;
			}
			ASSERT_OK(r);
			ASSERT_EQ(n, 1);
			ASSERT_EQ(out[0], strtoul((char[3]){ in[0], in[1], 0 }, NULL, 16));
		}
	}
}

TEST(base64_rfc4648)
{
	known_answers(&base64);
}

/* The decoder refuses the empty string (RFC 4648 would decode it to nothing). Pinned here so
 * that a change is deliberate: every kmsfs Base64 field is non-empty. */
TEST(base64_empty)
{
	uint8_t out[4];
	size_t n = 7;

	ASSERT_ERR(kms_base64_decode("", 0, out, sizeof(out), &n), KMS_E_BAD_PARAM);
	ASSERT_EQ(n, 0);
}

TEST(base64_rejects)
{
	static const char *const bad[] = {
		/* length not a multiple of 4 */
		"Z",
		"Zg",
		"Zg=",
		"Zm9vY",
		"Zm9vYg=",
		"Zm9vYg===",
		/* whitespace */
		"Zm9 ",
		" Zm9",
		"Zm\n9",
		"Zm9v\r\n",
		"Zm9v    ",
		"Zm\t9",
		/* characters outside the standard alphabet (incl. base64url) */
		"Zm9-",
		"Zm9_",
		"Zm9.",
		"Zm9*",
		"Zm9\xc3",
		"Zm\x80v",
		/* bad padding */
		"====",
		"A===",
		"Z===",
		"Zg=A",
		"Z=g=",
		"=Zg=",
		"Zg==Zm9v",
		"Zm8=Zm9v",
		"Zm9v====",
		/* non-canonical trailing bits: "f" is Zg==, "fo" is Zm8= */
		"Zh==",
		"Zv==",
		"Z/==",
		"Zm9=",
		"Zm+=",
		"Zm9vYh==",
		"Zm9vYmF=",
	};
	uint8_t out[16];
	size_t n;

	STEP(rejects(&base64, bad, KMS_ARRAY_SIZE(bad)));
	/* An embedded NUL is a character like any other. */
	ASSERT_ERR(kms_base64_decode("Zg=\0", 4, out, sizeof(out), &n), KMS_E_BAD_PARAM);
	ASSERT_ERR(kms_base64_decode("Zm9\0", 4, out, sizeof(out), &n), KMS_E_BAD_PARAM);
}

TEST(base64_capacity)
{
	STEP(capacity_is(&base64, "Zm9vYmFy", 6));
	/* Padding does not count against the capacity. */
	capacity_is(&base64, "Zm9vYg==", 4);
}

TEST(base64_round_trip_lengths)
{
	uint8_t in[200], out[200];
	char enc[300];

	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)(i * 37 + 11);
	for (size_t len = 1; len <= sizeof(in); len++) {
		size_t n;

		kms_base64_encode(in, len, enc);
		ASSERT_EQ(strlen(enc), kms_base64_encoded_len(len));
		ASSERT_OK(kms_base64_decode(enc, strlen(enc), out, len, &n));
		ASSERT_EQ(n, len);
		ASSERT_MEMEQ(in, out, len);
	}
}

static int b64_index(char c)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const char *p = c ? memchr(alphabet, c, 64) : NULL;

	return p ? (int)(p - alphabet) : -1;
}

/* Every final quantum "XY==" and "XYZ=" over the alphabet: accepted exactly when the unused low
 * bits are zero, and then canonical (encoding the result gives the input back). */
TEST(base64_exhaustive_padded_quanta)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t accepted = 0;

	for (int x = 0; x < 64; x++) {
		for (int y = 0; y < 64; y++) {
			for (int z = -1; z < 64; z++) {
				char in[5] = { alphabet[x], alphabet[y], z < 0 ? '=' : alphabet[z],
					       '=', 0 };
				bool want = z < 0 ? (y & 15) == 0 : (z & 3) == 0;
				uint8_t out[2];
				char enc[5];
				size_t n;
				int r = kms_base64_decode(in, 4, out, sizeof(out), &n);

				ASSERT_EQ(b64_index(in[1]), y);
				if (!want) {
					ASSERT_ERR(r, KMS_E_BAD_PARAM);
					continue;
				}
				ASSERT_OK(r);
				ASSERT_EQ(n, z < 0 ? 1 : 2);
				kms_base64_encode(out, n, enc);
				ASSERT_STREQ(enc, in);
				accepted++;
			}
		}
	}
	/* 64*4 "XY==" plus 64*64*16 "XYZ=". */
	ASSERT_EQ(accepted, 64 * 4 + 64 * 64 * 16);
}
