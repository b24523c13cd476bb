/* test-auth.c - tokens (auth/kms_auth.h): issue, verify, expiry, scope, roles, users.
 *
 * Besides round trips this is an exhaustive mutation test in the style of test-core-blob.c: every
 * single-byte change of a valid token (every position, every other byte value), every truncation
 * and every insertion of a character must be refused as KMS_E_TOKEN_INVALID, never accepted and
 * never reported as anything else. Only an empty token is KMS_E_TOKEN_MISSING.
 */
#include "kms_test.h"

#include "auth/kms_auth.h"
#include "core/kms_core.h"

#define NOW   1700000000LL
#define LATER (NOW + 3600)

static const uint8_t secret[AUTH_SECRET_BYTES] = {
	0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xfe, 0xdc, 0xba,
	0x98, 0x76, 0x54, 0x32, 0x10, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55,
	0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
};

static void issue(const char *project, const char *user, enum kms_role role, int64_t expiry,
		  char tok[AUTH_TOKEN_MAX])
{
	ASSERT_OK(auth_token_issue(secret, project, user, role, expiry, tok, AUTH_TOKEN_MAX, NULL));
	ASSERT_TRUE(strlen(tok) > 5);
}

static int verify(const char *tok, size_t len, int64_t now, struct auth_claims *c)
{
	return auth_token_verify(secret, tok, len, now, c);
}

static bool b64url_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_';
}

TEST(issue_verify_round_trip)
{
	char tok[AUTH_TOKEN_MAX];
	struct auth_claims c, ci;

	memset(&ci, 0x5a, sizeof(ci));
	ASSERT_OK(auth_token_issue(secret, "proj-1", "alice", KMS_ROLE_CRYPTO, LATER, tok,
				   sizeof(tok), &ci));
	memset(&c, 0x5a, sizeof(c));
	ASSERT_OK(verify(tok, strlen(tok), NOW, &c));
	ASSERT_STREQ(c.project, "proj-1");
	ASSERT_STREQ(c.user, "alice");
	ASSERT_EQ(c.role, KMS_ROLE_CRYPTO);
	ASSERT_EQ(c.expiry, LATER);
	ASSERT_EQ(strlen(c.id), AUTH_TOKEN_ID_LEN);
	for (const char *p = c.id; *p; p++)
		ASSERT_TRUE((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'));
	/* issue's claims are the verified ones. */
	ASSERT_STREQ(ci.id, c.id);
	ASSERT_STREQ(ci.project, c.project);
	ASSERT_STREQ(ci.user, c.user);
	ASSERT_EQ(ci.role, c.role);
	ASSERT_EQ(ci.expiry, c.expiry);
	ASSERT_OK(auth_claims_check(&c, "proj-1", NOW));
}

TEST(token_shape)
{
	char tok[AUTH_TOKEN_MAX];
	const char *dot;

	STEP(issue("p", "u", KMS_ROLE_ADMIN, LATER, tok));
	ASSERT_TRUE(strncmp(tok, "kms1.", 5) == 0);
	dot = strchr(tok + 5, '.');
	ASSERT_TRUE(dot != NULL);
	ASSERT_TRUE(strchr(dot + 1, '.') == NULL);
	/* The MAC: unpadded base64url of 32 bytes. */
	ASSERT_EQ(strlen(dot + 1), 43);
	for (const char *p = tok + 5; *p; p++)
		ASSERT_TRUE(p == dot || b64url_char(*p));
}

TEST(ids_differ)
{
	char t1[AUTH_TOKEN_MAX], t2[AUTH_TOKEN_MAX];
	struct auth_claims c1, c2;

	STEP(issue("p", "u", KMS_ROLE_ADMIN, LATER, t1));
	STEP(issue("p", "u", KMS_ROLE_ADMIN, LATER, t2));
	ASSERT_FALSE(strcmp(t1, t2) == 0);
	ASSERT_OK(verify(t1, strlen(t1), NOW, &c1));
	ASSERT_OK(verify(t2, strlen(t2), NOW, &c2));
	ASSERT_FALSE(strcmp(c1.id, c2.id) == 0);
}

TEST(all_roles_and_long_fields)
{
	static const enum kms_role roles[] = { KMS_ROLE_VIEWER, KMS_ROLE_CRYPTO, KMS_ROLE_ADMIN };
	char tok[AUTH_TOKEN_MAX], project[KMS_MAX_PROJECT_ID + 1], user[AUTH_MAX_USER + 1];
	struct auth_claims c;

	memset(project, 'P', KMS_MAX_PROJECT_ID);
	project[KMS_MAX_PROJECT_ID] = 0;
	memset(user, 'u', AUTH_MAX_USER);
	user[AUTH_MAX_USER] = 0;
	for (size_t i = 0; i < KMS_ARRAY_SIZE(roles); i++) {
		STEP(issue(project, user, roles[i], LATER, tok));
		ASSERT_LE(strlen(tok), AUTH_TOKEN_MAX - 1);
		ASSERT_OK(verify(tok, strlen(tok), NOW, &c));
		ASSERT_EQ(c.role, roles[i]);
		ASSERT_STREQ(c.project, project);
		ASSERT_STREQ(c.user, user);
	}
}

TEST(issue_rejects_bad_arguments)
{
	char tok[AUTH_TOKEN_MAX], long_project[KMS_MAX_PROJECT_ID + 2];

	memset(long_project, 'p', KMS_MAX_PROJECT_ID + 1);
	long_project[KMS_MAX_PROJECT_ID + 1] = 0;
	ASSERT_ERR(auth_token_issue(secret, "p", "u", KMS_ROLE_NONE, LATER, tok, sizeof(tok), NULL),
		   KMS_E_BAD_PARAM);
	ASSERT_ERR(auth_token_issue(secret, "p", "", KMS_ROLE_ADMIN, LATER, tok, sizeof(tok), NULL),
		   KMS_E_BAD_PARAM);
	ASSERT_ERR(
		auth_token_issue(secret, "p", "a|b", KMS_ROLE_ADMIN, LATER, tok, sizeof(tok), NULL),
		KMS_E_BAD_PARAM);
	ASSERT_ERR(auth_token_issue(secret, long_project, "u", KMS_ROLE_ADMIN, LATER, tok,
				    sizeof(tok), NULL),
		   KMS_E_BAD_PARAM);
	/* Too small an output buffer is an error, not a truncated token. */
	ASSERT_FAIL(auth_token_issue(secret, "p", "u", KMS_ROLE_ADMIN, LATER, tok, 20, NULL));
	ASSERT_FAIL(auth_token_issue(secret, "p", "u", KMS_ROLE_ADMIN, LATER, tok, 60, NULL));
}

/* A token that can never verify must not be issued: the project is one of the payload's
 * '|'-separated fields, so an empty project or one holding '|' would make a dead token. */
TEST(issue_rejects_unverifiable_project)
{
	char tok[AUTH_TOKEN_MAX];

	ASSERT_ERR(auth_token_issue(secret, "", "u", KMS_ROLE_ADMIN, LATER, tok, sizeof(tok), NULL),
		   KMS_E_BAD_PARAM);
	ASSERT_ERR(
		auth_token_issue(secret, "a|b", "u", KMS_ROLE_ADMIN, LATER, tok, sizeof(tok), NULL),
		KMS_E_BAD_PARAM);
}

TEST(expired)
{
	char tok[AUTH_TOKEN_MAX];
	struct auth_claims c;

	STEP(issue("p", "u", KMS_ROLE_ADMIN, NOW, tok));
	ASSERT_OK(verify(tok, strlen(tok), NOW - 1, &c));
	memset(&c, 0x5a, sizeof(c));
	ASSERT_ERR(verify(tok, strlen(tok), NOW, &c), KMS_E_TOKEN_EXPIRED);
	ASSERT_ERR(verify(tok, strlen(tok), NOW + 1, &c), KMS_E_TOKEN_EXPIRED);
	ASSERT_ERR(verify(tok, strlen(tok), INT64_MAX, &c), KMS_E_TOKEN_EXPIRED);
	/* claims are left alone on failure */
	ASSERT_EQ(c.expiry, (int64_t)0x5a5a5a5a5a5a5a5aLL);
}

TEST(claims_check)
{
	char tok[AUTH_TOKEN_MAX];
	struct auth_claims c;

	STEP(issue("proj", "u", KMS_ROLE_VIEWER, LATER, tok));
	ASSERT_OK(verify(tok, strlen(tok), NOW, &c));
	ASSERT_OK(auth_claims_check(&c, "proj", NOW));
	ASSERT_OK(auth_claims_check(&c, "proj", LATER - 1));
	ASSERT_ERR(auth_claims_check(&c, "other", NOW), KMS_E_TOKEN_INVALID);
	ASSERT_ERR(auth_claims_check(&c, "proj2", NOW), KMS_E_TOKEN_INVALID);
	ASSERT_ERR(auth_claims_check(&c, "pro", NOW), KMS_E_TOKEN_INVALID);
	ASSERT_ERR(auth_claims_check(&c, "PROJ", NOW), KMS_E_TOKEN_INVALID);
	ASSERT_ERR(auth_claims_check(&c, "", NOW), KMS_E_TOKEN_INVALID);
	ASSERT_ERR(auth_claims_check(&c, "proj", LATER), KMS_E_TOKEN_EXPIRED);
	/* Another project wins over expiry: the token is not for this project at all. */
	ASSERT_ERR(auth_claims_check(&c, "other", LATER), KMS_E_TOKEN_INVALID);
}

TEST(empty_is_missing)
{
	struct auth_claims c;

	ASSERT_ERR(verify("", 0, NOW, &c), KMS_E_TOKEN_MISSING);
	ASSERT_ERR(verify("\n", 1, NOW, &c), KMS_E_TOKEN_MISSING);
	ASSERT_ERR(verify("\r\n", 2, NOW, &c), KMS_E_TOKEN_MISSING);
	ASSERT_ERR(verify("  ", 2, NOW, &c), KMS_E_TOKEN_MISSING);
}

TEST(trailing_newline_tolerated)
{
	char tok[AUTH_TOKEN_MAX + 4], orig[AUTH_TOKEN_MAX];
	struct auth_claims c;
	size_t n;

	STEP(issue("p", "u", KMS_ROLE_ADMIN, LATER, orig));
	n = strlen(orig);
	snprintf(tok, sizeof(tok), "%s\n", orig);
	ASSERT_OK(verify(tok, n + 1, NOW, &c));
	snprintf(tok, sizeof(tok), "%s\r\n", orig);
	ASSERT_OK(verify(tok, n + 2, NOW, &c));
	/* Leading blanks and inner newlines are not. */
	snprintf(tok, sizeof(tok), " %s", orig);
	ASSERT_ERR(verify(tok, n + 1, NOW, &c), KMS_E_TOKEN_INVALID);
	snprintf(tok, sizeof(tok), "\n%s", orig);
	ASSERT_ERR(verify(tok, n + 1, NOW, &c), KMS_E_TOKEN_INVALID);
	/* len is honoured: bytes after it do not count. */
	snprintf(tok, sizeof(tok), "%sXYZ", orig);
	ASSERT_OK(verify(tok, n, NOW, &c));
	ASSERT_ERR(verify(tok, n + 3, NOW, &c), KMS_E_TOKEN_INVALID);
}

TEST(other_secret_invalid)
{
	char tok[AUTH_TOKEN_MAX];
	uint8_t other[AUTH_SECRET_BYTES];
	struct auth_claims c;

	STEP(issue("p", "u", KMS_ROLE_ADMIN, LATER, tok));
	for (size_t i = 0; i < AUTH_SECRET_BYTES; i++) {
		memcpy(other, secret, sizeof(other));
		other[i] ^= 0x80;
		ASSERT_ERR(auth_token_verify(other, tok, strlen(tok), NOW, &c),
			   KMS_E_TOKEN_INVALID);
	}
	/* Even an expired token of another secret is INVALID, not EXPIRED: forgery first. */
	ASSERT_ERR(auth_token_verify(other, tok, strlen(tok), LATER + 1, &c), KMS_E_TOKEN_INVALID);
}

TEST(every_single_byte_change_invalid)
{
	char orig[AUTH_TOKEN_MAX], tok[AUTH_TOKEN_MAX];
	struct auth_claims c;
	size_t n, tried = 0;

	STEP(issue("proj", "alice", KMS_ROLE_CRYPTO, LATER, orig));
	n = strlen(orig);
	for (size_t i = 0; i < n; i++) {
		for (int v = 0; v < 256; v++) {
			int r;

			if ((char)v == orig[i])
				continue;
			memcpy(tok, orig, n + 1);
			tok[i] = (char)v;
			r = verify(tok, n, NOW, &c);
			if (r != KMS_E_TOKEN_INVALID)
				fprintf(stderr, "\tposition %zu byte 0x%02x: %s\n", i, v,
					r == 0 ? "accepted" : kms_err_info(r)->name);
			ASSERT_ERR(r, KMS_E_TOKEN_INVALID);
			tried++;
		}
	}
	ASSERT_EQ(tried, n * 255);
}

TEST(every_truncation_invalid)
{
	char tok[AUTH_TOKEN_MAX];
	struct auth_claims c;
	size_t n;

	STEP(issue("proj", "alice", KMS_ROLE_CRYPTO, LATER, tok));
	n = strlen(tok);
	ASSERT_ERR(verify(tok, 0, NOW, &c), KMS_E_TOKEN_MISSING);
	for (size_t len = 1; len < n; len++) {
		int r = verify(tok, len, NOW, &c);

		if (r != KMS_E_TOKEN_INVALID)
			fprintf(stderr, "\tlength %zu of %zu\n", len, n);
		ASSERT_ERR(r, KMS_E_TOKEN_INVALID);
	}
	/* Dropping any one character (not only the tail). */
	for (size_t i = 0; i < n; i++) {
		char cut[AUTH_TOKEN_MAX];

		memcpy(cut, tok, i);
		memcpy(cut + i, tok + i + 1, n - i);
		ASSERT_ERR(verify(cut, n - 1, NOW, &c), KMS_E_TOKEN_INVALID);
	}
}

TEST(every_insertion_invalid)
{
	static const char extra[] = "Aa0-_.=+/ |\x01\xff";
	char tok[AUTH_TOKEN_MAX], ins[AUTH_TOKEN_MAX + 2];
	struct auth_claims c;
	size_t n;

	STEP(issue("proj", "alice", KMS_ROLE_CRYPTO, LATER, tok));
	n = strlen(tok);
	for (size_t i = 0; i < n; i++) { /* before position i (after the end: trailing newline) */
		for (size_t e = 0; e < sizeof(extra) - 1; e++) {
			memcpy(ins, tok, i);
			ins[i] = extra[e];
			memcpy(ins + i + 1, tok + i, n - i + 1);
			ASSERT_ERR(verify(ins, n + 1, NOW, &c), KMS_E_TOKEN_INVALID);
		}
	}
}

TEST(garbage_invalid)
{
	static const char *const bad[] = {
		"x",
		"kms1",
		"kms1.",
		"kms1..",
		"kms1.abc",
		"kms1.abc.",
		"kms1..abc",
		"KMS1.abc.def",
		"kms2.abc.def",
		"Bearer kms1.abc.def",
		"kms1.YQ.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	};
	char big[AUTH_TOKEN_MAX + 16];
	struct auth_claims c;

	for (size_t i = 0; i < KMS_ARRAY_SIZE(bad); i++)
		ASSERT_ERR(verify(bad[i], strlen(bad[i]), NOW, &c), KMS_E_TOKEN_INVALID);
	memcpy(big, "kms1.", 5);
	memset(big + 5, 'A', sizeof(big) - 5);
	big[200] = '.';
	ASSERT_ERR(verify(big, sizeof(big), NOW, &c), KMS_E_TOKEN_INVALID);
}

/* A token signed with the right secret but a payload that is not ours must still be refused:
 * built here by hand with the documented layout (kms_auth.h). */
static void forge(const char *payload, char *out, size_t cap)
{
	static const char tbl[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	uint8_t mac[CORE_SHA256_BYTES];
	size_t o = 0, n = strlen(payload);
	const uint8_t *p = (const uint8_t *)payload;
	char *dot;

	o = (size_t)snprintf(out, cap, "kms1.");
	for (size_t i = 0; i < n; i += 3) {
		uint32_t w = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
			     (i + 2 < n ? p[i + 2] : 0);
		size_t chars = i + 2 < n ? 4 : i + 1 < n ? 3 : 2;

		for (size_t j = 0; j < chars; j++)
			out[o++] = tbl[(w >> (18 - 6 * j)) & 63];
	}
	out[o] = 0;
	if (core_hmac_sha256(secret, sizeof(secret), out, o, mac) < 0)
		abort();
	dot = out + o;
	*dot++ = '.';
	for (size_t i = 0; i < sizeof(mac); i += 3) {
		uint32_t w = (uint32_t)mac[i] << 16 |
			     (i + 1 < sizeof(mac) ? (uint32_t)mac[i + 1] << 8 : 0) |
			     (i + 2 < sizeof(mac) ? mac[i + 2] : 0);
		size_t chars = i + 2 < sizeof(mac) ? 4 : i + 1 < sizeof(mac) ? 3 : 2;

		for (size_t j = 0; j < chars; j++)
			*dot++ = tbl[(w >> (18 - 6 * j)) & 63];
	}
	*dot = 0;
}

TEST(signed_but_malformed_payload_invalid)
{
	static const char *const bad[] = {
		"v2|0123456789abcdef|p|u|admin|1800000000",
		"v1|0123456789abcde|p|u|admin|1800000000",
		"v1|0123456789abcdef|p|u|root|1800000000",
		"v1|0123456789abcdef|p|u|admin|18x",
		"v1|0123456789abcdef|p|u|admin|",
		"v1|0123456789abcdef|p|u|admin",
		"v1|0123456789abcdef|p|u|admin|1800000000|extra",
		"v1|0123456789abcdef|p|bad user|admin|1800000000",
		"v1|0123456789abcdef||u|admin|1800000000",
		"",
	};
	char tok[AUTH_TOKEN_MAX];
	struct auth_claims c;

	/* The forger works: a well-formed payload verifies. */
	forge("v1|0123456789abcdef|p|u|admin|1800000000", tok, sizeof(tok));
	ASSERT_OK(verify(tok, strlen(tok), NOW, &c));
	ASSERT_EQ(c.expiry, 1800000000);
	ASSERT_EQ(c.role, KMS_ROLE_ADMIN);
	for (size_t i = 0; i < KMS_ARRAY_SIZE(bad); i++) {
		forge(bad[i], tok, sizeof(tok));
		if (verify(tok, strlen(tok), NOW, &c) != KMS_E_TOKEN_INVALID)
			fprintf(stderr, "\tpayload \"%s\"\n", bad[i]);
		ASSERT_ERR(verify(tok, strlen(tok), NOW, &c), KMS_E_TOKEN_INVALID);
	}
}

TEST(role_names)
{
	ASSERT_STREQ(kms_role_name(KMS_ROLE_VIEWER), "viewer");
	ASSERT_STREQ(kms_role_name(KMS_ROLE_CRYPTO), "crypto");
	ASSERT_STREQ(kms_role_name(KMS_ROLE_ADMIN), "admin");
	ASSERT_STREQ(kms_role_name(KMS_ROLE_NONE), "none");
	ASSERT_STREQ(kms_role_name((enum kms_role)42), "none");
	ASSERT_EQ(kms_role_parse("viewer"), KMS_ROLE_VIEWER);
	ASSERT_EQ(kms_role_parse("crypto"), KMS_ROLE_CRYPTO);
	ASSERT_EQ(kms_role_parse("admin"), KMS_ROLE_ADMIN);
	ASSERT_EQ(kms_role_parse("none"), KMS_ROLE_NONE);
	ASSERT_EQ(kms_role_parse("Admin"), KMS_ROLE_NONE);
	ASSERT_EQ(kms_role_parse("admin "), KMS_ROLE_NONE);
	ASSERT_EQ(kms_role_parse(""), KMS_ROLE_NONE);
	ASSERT_EQ(kms_role_parse(NULL), KMS_ROLE_NONE);
	/* Roles are ordered: each includes the ones below. */
	ASSERT_TRUE(KMS_ROLE_NONE < KMS_ROLE_VIEWER);
	ASSERT_TRUE(KMS_ROLE_VIEWER < KMS_ROLE_CRYPTO);
	ASSERT_TRUE(KMS_ROLE_CRYPTO < KMS_ROLE_ADMIN);
	for (int r = KMS_ROLE_VIEWER; r <= KMS_ROLE_ADMIN; r++)
		ASSERT_EQ(kms_role_parse(kms_role_name((enum kms_role)r)), r);
}

TEST(user_validation)
{
	static const char *const good[] = { "a",       "alice",		  "Alice.B",
					    "svc-1_x", "ops@example.com", "0" };
	static const char *const bad[] = { "",	"a b", "a|b",  "a/b", "a:b",
					   "é", "a\n", "a\tb", "a\"b" };
	char u64[AUTH_MAX_USER + 1], u65[AUTH_MAX_USER + 2];

	for (size_t i = 0; i < KMS_ARRAY_SIZE(good); i++)
		ASSERT_TRUE(auth_user_valid(good[i]));
	for (size_t i = 0; i < KMS_ARRAY_SIZE(bad); i++)
		ASSERT_FALSE(auth_user_valid(bad[i]));
	memset(u64, 'u', AUTH_MAX_USER);
	u64[AUTH_MAX_USER] = 0;
	memset(u65, 'u', AUTH_MAX_USER + 1);
	u65[AUTH_MAX_USER + 1] = 0;
	ASSERT_TRUE(auth_user_valid(u64));
	ASSERT_FALSE(auth_user_valid(u65));
}

/* Names of other principals are reserved: kmsctl's own (the issuer of the grants it creates)
 * and uidN (a uid binding). No token is issued with one, and a token carrying one (minted with
 * the secret by other means) does not verify, so a token can never act as kmsctl or a bound
 * uid. Close names stay usable. */
TEST(reserved_user_names)
{
	static const char *const reserved[] = { AUTH_USER_HOST_ADMIN, "kmsctl", "uid0", "uid1000",
						"uid4294967295" };
	static const char *const usable[] = { "admin", "viewer", "crypto", "Kmsctl", "kmsctl1",
					      "uid",   "uidx",	 "uid1x",  "xuid1",  "UID1" };
	char tok[AUTH_TOKEN_MAX];
	struct auth_claims c;

	for (size_t i = 0; i < KMS_ARRAY_SIZE(reserved); i++) {
		ASSERT_TRUE(auth_user_reserved(reserved[i]));
		ASSERT_FALSE(auth_user_valid(reserved[i]));
		ASSERT_ERR(auth_token_issue(secret, "p", reserved[i], KMS_ROLE_VIEWER, LATER, tok,
					    sizeof(tok), NULL),
			   KMS_E_BAD_PARAM);
		{
			char payload[128];

			snprintf(payload, sizeof(payload),
				 "v1|0123456789abcdef|p|%s|admin|1800000000", reserved[i]);
			forge(payload, tok, sizeof(tok));
		}
		ASSERT_ERR(verify(tok, strlen(tok), NOW, &c), KMS_E_TOKEN_INVALID);
	}
	for (size_t i = 0; i < KMS_ARRAY_SIZE(usable); i++) {
		ASSERT_FALSE(auth_user_reserved(usable[i]));
		issue("p", usable[i], KMS_ROLE_VIEWER, LATER, tok);
		ASSERT_OK(verify(tok, strlen(tok), NOW, &c));
		ASSERT_STREQ(c.user, usable[i]);
	}
}
