#include "kms_auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/kms_err.h"
#include "common/kms_hex.h"
#include "common/kms_secmem.h"
#include "core/kms_core.h"

#define AUTH_PREFIX "kms1."

bool auth_user_reserved(const char *user)
{
	size_t digits = 0;

	if (strcmp(user, AUTH_USER_HOST_ADMIN) == 0)
		return true;
	if (strncmp(user, "uid", 3) != 0)
		return false;
	for (const char *p = user + 3; *p; p++, digits++)
		if (*p < '0' || *p > '9')
			return false;
	return digits > 0;
}

bool auth_user_valid(const char *user)
{
	size_t n = strlen(user);

	if (auth_user_reserved(user))
		return false;
	if (n == 0 || n > AUTH_MAX_USER)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = user[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-' || c == '@'))
			return false;
	}
	return true;
}

/* base64url without padding, via the strict standard codec. */
static void auth_b64url_encode(const uint8_t *in, size_t n, char *out)
{
	size_t len;

	kms_base64_encode(in, n, out);
	len = strlen(out);
	while (len && out[len - 1] == '=')
		out[--len] = 0;
	for (size_t i = 0; i < len; i++)
		out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
}

static int auth_b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap, size_t *n)
{
	char tmp[AUTH_TOKEN_MAX + 4];
	size_t i;

	if (len > AUTH_TOKEN_MAX || len % 4 == 1)
		return KMS_E_TOKEN_INVALID;
	for (i = 0; i < len; i++) {
		char c = in[i];

		if (c == '+' || c == '/' || c == '=')
			return KMS_E_TOKEN_INVALID;
		tmp[i] = c == '-' ? '+' : c == '_' ? '/' : c;
	}
	while (i % 4)
		tmp[i++] = '=';
	return kms_base64_decode(tmp, i, out, cap, n) < 0 ? KMS_E_TOKEN_INVALID : 0;
}

static int auth_mac(const uint8_t secret[AUTH_SECRET_BYTES], const char *signed_part, size_t n,
		    uint8_t mac[CORE_SHA256_BYTES])
{
	return core_hmac_sha256(secret, AUTH_SECRET_BYTES, signed_part, n, mac);
}

int auth_token_issue(const uint8_t secret[AUTH_SECRET_BYTES], const char *project, const char *user,
		     enum kms_role role, int64_t expiry, char *out, size_t cap,
		     struct auth_claims *claims)
{
	char payload[256], id[AUTH_TOKEN_ID_LEN + 1], b64[400], macb64[64];
	uint8_t raw_id[AUTH_TOKEN_ID_LEN / 2], mac[CORE_SHA256_BYTES];
	int n, r;

	if (!project[0] || strlen(project) > KMS_MAX_PROJECT_ID || strchr(project, '|') ||
	    !auth_user_valid(user) || role == KMS_ROLE_NONE)
		return KMS_E_BAD_PARAM;
	if ((r = core_random(raw_id, sizeof(raw_id))) < 0)
		return r;
	kms_hex_encode(raw_id, sizeof(raw_id), id);
	for (char *p = id; *p; p++)
		if (*p >= 'A' && *p <= 'F')
			*p = (char)(*p - 'A' + 'a');
	n = snprintf(payload, sizeof(payload), "v1|%s|%s|%s|%s|%lld", id, project, user,
		     kms_role_name(role), (long long)expiry);
	if (n < 0 || (size_t)n >= sizeof(payload))
		return KMS_E_BAD_PARAM;
	auth_b64url_encode((const uint8_t *)payload, (size_t)n, b64);
	n = snprintf(out, cap, AUTH_PREFIX "%s", b64);
	if (n < 0 || (size_t)n >= cap)
		return KMS_E_BAD_PARAM;
	if ((r = auth_mac(secret, out, (size_t)n, mac)) < 0)
		return r;
	auth_b64url_encode(mac, sizeof(mac), macb64);
	if ((size_t)n + 1 + strlen(macb64) >= cap)
		return KMS_E_BAD_PARAM;
	out[n] = '.';
	memcpy(out + n + 1, macb64, strlen(macb64) + 1);
	if (claims)
		return auth_token_verify(secret, out, strlen(out), 0, claims);
	return 0;
}

/* Split "v1|id|project|user|role|expiry" into claims. */
static int auth_parse_payload(char *p, struct auth_claims *c)
{
	char *field[6], *save = NULL, *end;
	size_t i = 0;
	long long exp;

	for (char *t = strtok_r(p, "|", &save); t; t = strtok_r(NULL, "|", &save)) {
		if (i >= KMS_ARRAY_SIZE(field))
			return KMS_E_TOKEN_INVALID;
		field[i++] = t;
	}
	if (i != 6 || strcmp(field[0], "v1") != 0 || strlen(field[1]) != AUTH_TOKEN_ID_LEN ||
	    strlen(field[2]) > KMS_MAX_PROJECT_ID || !auth_user_valid(field[3]))
		return KMS_E_TOKEN_INVALID;
	exp = strtoll(field[5], &end, 10);
	if (*end || end == field[5])
		return KMS_E_TOKEN_INVALID;
	memset(c, 0, sizeof(*c));
	snprintf(c->id, sizeof(c->id), "%s", field[1]);
	snprintf(c->project, sizeof(c->project), "%s", field[2]);
	snprintf(c->user, sizeof(c->user), "%s", field[3]);
	c->role = kms_role_parse(field[4]);
	c->expiry = exp;
	return c->role == KMS_ROLE_NONE ? KMS_E_TOKEN_INVALID : 0;
}

int auth_token_verify(const uint8_t secret[AUTH_SECRET_BYTES], const char *token, size_t len,
		      int64_t now, struct auth_claims *claims)
{
	uint8_t mac[CORE_SHA256_BYTES], given[CORE_SHA256_BYTES + 4];
	char payload[AUTH_TOKEN_MAX + 1];
	struct auth_claims c;
	const char *dot;
	size_t plen, glen;
	int r;

	/* Tolerate the trailing newline of `setfattr -v "$(cat tokenfile)"` style inputs. */
	while (len && (token[len - 1] == '\n' || token[len - 1] == '\r' || token[len - 1] == ' '))
		len--;
	if (len == 0)
		return KMS_E_TOKEN_MISSING;
	if (len > AUTH_TOKEN_MAX || len <= strlen(AUTH_PREFIX) ||
	    memcmp(token, AUTH_PREFIX, strlen(AUTH_PREFIX)) != 0)
		return KMS_E_TOKEN_INVALID;
	dot = memchr(token + strlen(AUTH_PREFIX), '.', len - strlen(AUTH_PREFIX));
	if (!dot)
		return KMS_E_TOKEN_INVALID;
	if ((r = auth_mac(secret, token, (size_t)(dot - token), mac)) < 0)
		return r;
	r = auth_b64url_decode(dot + 1, len - (size_t)(dot + 1 - token), given, sizeof(given),
			       &glen);
	if (r < 0 || glen != sizeof(mac) || !core_equal(mac, given, sizeof(mac)))
		return KMS_E_TOKEN_INVALID;
	r = auth_b64url_decode(token + strlen(AUTH_PREFIX),
			       (size_t)(dot - token) - strlen(AUTH_PREFIX), (uint8_t *)payload,
			       sizeof(payload) - 1, &plen);
	if (r < 0 || memchr(payload, 0, plen))
		return KMS_E_TOKEN_INVALID;
	payload[plen] = 0;
	if ((r = auth_parse_payload(payload, &c)) < 0)
		return r;
	if (now && now >= c.expiry)
		return KMS_E_TOKEN_EXPIRED;
	*claims = c;
	return 0;
}

int auth_claims_check(const struct auth_claims *claims, const char *project, int64_t now)
{
	if (strcmp(claims->project, project) != 0)
		return KMS_E_TOKEN_INVALID;
	if (now >= claims->expiry)
		return KMS_E_TOKEN_EXPIRED;
	return 0;
}
