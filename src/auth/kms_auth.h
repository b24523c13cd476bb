/* kms_auth.h - tokens: issue, verify, scope, expiry. No I/O: the caller supplies the secret.
 *
 * A token is  kms1.<payload>.<mac>  where payload is the unpadded base64url of
 * "v1|<id>|<project>|<user>|<role>|<expiry unix seconds>" and mac the unpadded base64url of
 * HMAC-SHA-256(secret, "kms1." || payload). The id (16 hex) names a token in audit lines and
 * revocation lists without revealing it. Verification is constant time in the MAC comparison.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/kms_common.h"
#include "common/kms_limits.h"
#include "common/kms_role.h"

#define AUTH_SECRET_BYTES 32u
#define AUTH_TOKEN_ID_LEN 16u
#define AUTH_MAX_USER	  64u
#define AUTH_TOKEN_MAX	  512u

struct auth_claims {
	char id[AUTH_TOKEN_ID_LEN + 1];
	char project[KMS_MAX_PROJECT_ID + 1];
	char user[AUTH_MAX_USER + 1];
	enum kms_role role;
	int64_t expiry; /* unix seconds */
};

/* The principal of a trusted administrator on the host (kmsctl): the issuer of the grants it
 * creates and the retiring principal that names it. No token can carry it (auth_user_reserved),
 * so no token can act as kmsctl did. */
#define AUTH_USER_HOST_ADMIN "kmsctl"

/* Names no token may carry, as they name other principals: AUTH_USER_HOST_ADMIN, and "uid"
 * followed by digits (a uid binding acts as user uidN). */
bool auth_user_reserved(const char *user);
/* 1..AUTH_MAX_USER of [A-Za-z0-9._@-], and not reserved: a user name a token may carry. */
bool auth_user_valid(const char *user);

/* Writes a NUL-terminated token to out. */
KMS_WUR int auth_token_issue(const uint8_t secret[AUTH_SECRET_BYTES], const char *project,
			     const char *user, enum kms_role role, int64_t expiry, char *out,
			     size_t cap, struct auth_claims *claims);
/* KMS_E_TOKEN_MISSING for an empty token, KMS_E_TOKEN_INVALID for anything garbled or forged,
 * KMS_E_TOKEN_EXPIRED when now >= expiry (now = 0: no expiry check, for binding a token whose
 * expiry is checked per request). claims are filled only on success. */
KMS_WUR int auth_token_verify(const uint8_t secret[AUTH_SECRET_BYTES], const char *token,
			      size_t len, int64_t now, struct auth_claims *claims);
/* May these claims act in project at time now? (project mismatch: KMS_E_TOKEN_INVALID) */
KMS_WUR int auth_claims_check(const struct auth_claims *claims, const char *project, int64_t now);
