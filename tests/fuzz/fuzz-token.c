/* fuzz-token.c - token verification (auth/auth_token.c) on arbitrary bytes.
 *
 * The input is the token as a caller would set it (setfattr value), checked at a fixed time with
 * a fixed secret; corpus/fuzz-token/ holds tokens signed with that secret (see README.md) and
 * mutations of them. Properties:
 *   - the result is 0, KMS_E_TOKEN_MISSING, KMS_E_TOKEN_INVALID or KMS_E_TOKEN_EXPIRED;
 *   - MISSING exactly when the input is empty after trailing blanks (' ', '\r', '\n');
 *   - verification is deterministic, and claims are written only on success;
 *   - on success: the input starts with "kms1.", the claims are well formed (16 lower-case hex
 *     id, project of at most 64 characters, a valid user, a real role, expiry after now), the
 *     claims pass auth_claims_check() for their own project and fail it for another one and
 *     once expired, the same bytes verify as EXPIRED at the expiry time and as INVALID under
 *     any other secret, and re-issuing those claims yields a token that verifies to them.
 */
#include <stdlib.h>
#include <string.h>

#include "auth/kms_auth.h"
#include "common/kms_err.h"
#include "fuzz.h"

#define FUZZ_TOKEN_NOW 1700000000LL

/* "kmsfs-fuzz-token-secret-0123456!" */
static const uint8_t secret[AUTH_SECRET_BYTES] = {
	0x6b, 0x6d, 0x73, 0x66, 0x73, 0x2d, 0x66, 0x75, 0x7a, 0x7a, 0x2d,
	0x74, 0x6f, 0x6b, 0x65, 0x6e, 0x2d, 0x73, 0x65, 0x63, 0x72, 0x65,
	0x74, 0x2d, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x21,
};

static bool blank_only(const uint8_t *p, size_t n)
{
	while (n && (p[n - 1] == ' ' || p[n - 1] == '\r' || p[n - 1] == '\n'))
		n--;
	return n == 0;
}

static void check_claims(const char *tok, size_t size, const struct auth_claims *c)
{
	uint8_t other[AUTH_SECRET_BYTES];
	char again[AUTH_TOKEN_MAX];
	struct auth_claims c2;
	const char *id = c->id;

	if (size < 5 || memcmp(tok, "kms1.", 5) != 0)
		abort();
	if (strlen(id) != AUTH_TOKEN_ID_LEN || strlen(c->project) > KMS_MAX_PROJECT_ID ||
	    !auth_user_valid(c->user) || c->role < KMS_ROLE_VIEWER || c->role > KMS_ROLE_ADMIN ||
	    c->expiry <= FUZZ_TOKEN_NOW)
		abort();
	for (; *id; id++)
		if (!((*id >= '0' && *id <= '9') || (*id >= 'a' && *id <= 'f')))
			abort();
	if (auth_claims_check(c, c->project, FUZZ_TOKEN_NOW) != 0 ||
	    auth_claims_check(c, "another-project", FUZZ_TOKEN_NOW) != KMS_E_TOKEN_INVALID ||
	    auth_claims_check(c, c->project, c->expiry) != KMS_E_TOKEN_EXPIRED)
		abort();
	if (auth_token_verify(secret, tok, size, c->expiry, &c2) != KMS_E_TOKEN_EXPIRED)
		abort();
	memcpy(other, secret, sizeof(other));
	other[size % sizeof(other)] ^= 0x01;
	if (auth_token_verify(other, tok, size, FUZZ_TOKEN_NOW, &c2) != KMS_E_TOKEN_INVALID)
		abort();
	/* Our own issuer agrees with the claims (a new id, so a new token). */
	if (c->project[0] && strchr(c->project, '|') == NULL &&
	    auth_token_issue(secret, c->project, c->user, c->role, c->expiry, again, sizeof(again),
			     &c2) == 0 &&
	    (strcmp(c2.project, c->project) || strcmp(c2.user, c->user) || c2.role != c->role ||
	     c2.expiry != c->expiry))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *tok = (const char *)data;
	struct auth_claims c, c2;
	int r, r2;

	memset(&c, 0xa5, sizeof(c));
	r = auth_token_verify(secret, tok, size, FUZZ_TOKEN_NOW, &c);
	if (r != 0 && r != KMS_E_TOKEN_MISSING && r != KMS_E_TOKEN_INVALID &&
	    r != KMS_E_TOKEN_EXPIRED)
		abort();
	if ((r == KMS_E_TOKEN_MISSING) != blank_only(data, size))
		abort();
	r2 = auth_token_verify(secret, tok, size, FUZZ_TOKEN_NOW, &c2);
	if (r2 != r)
		abort();
	if (r != 0) {
		const uint8_t *p = (const uint8_t *)&c;

		for (size_t i = 0; i < sizeof(c); i++)
			if (p[i] != 0xa5)
				abort();
		return 0;
	}
	if (strcmp(c.id, c2.id) || strcmp(c.project, c2.project) || strcmp(c.user, c2.user) ||
	    c.role != c2.role || c.expiry != c2.expiry)
		abort();
	check_claims(tok, size, &c);
	return 0;
}
