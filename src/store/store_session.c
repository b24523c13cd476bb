/* Token bindings remembered across daemon restarts (issue 15, kms_store.h struct
 * store_remembered). A row holds, in the clear, only what lets expired and revoked ones go
 * without the root key (host, token id, expiry); the rest (uid, scope, project, claims) is
 * sealed under a root-derived key with the row's id in the label, never the token itself. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/kms_err.h"
#include "common/kms_hex.h"
#include "store_internal.h"

#define STORE_SESSION_MAGIC  "kmsfs session 1"
#define STORE_SESSION_FIELDS 10 /* lines of the sealed text, the magic included */

int store_session_label(const char *id, char *out, size_t cap)
{
	return (size_t)snprintf(out, cap, "%s%s", STORE_SESSION_LABEL_PREFIX, id) < cap
		       ? 0
		       : KMS_E_BAD_PARAM;
}

/* One line per field; none of them can hold a newline (ids, names, numbers). */
static int store_session_text(const struct store_remembered *r, char *out, size_t cap)
{
	const struct store_token_info *c = &r->claims;
	char scope[80];
	int n;

	if (r->host_ns)
		snprintf(scope, sizeof(scope), "host");
	else
		snprintf(scope, sizeof(scope), "%" PRIu64 "@%" PRId32 ":%" PRIu64, r->mntns,
			 r->witness_pid, r->witness_start);
	n = snprintf(out, cap, "%s\n%s\n%" PRIu32 "\n%s\n%s\n%s\n%s\n%s\n%s\n%" PRId64 "\n",
		     STORE_SESSION_MAGIC, r->host, r->uid, scope, r->project, c->id, c->project,
		     c->user, kms_role_name(c->role), c->expiry);
	if (n < 0 || (size_t)n >= cap || strpbrk(r->host, "\n") || strpbrk(r->project, "\n") ||
	    strpbrk(c->user, "\n") || strpbrk(c->project, "\n") || strpbrk(c->id, "\n"))
		return KMS_E_BAD_PARAM;
	return 0;
}

static bool store_session_field(char *dst, size_t cap, const char *src)
{
	return (size_t)snprintf(dst, cap, "%s", src) < cap && *src;
}

static bool store_session_number(const char *s, uint64_t max, uint64_t *out)
{
	char *end;

	if (*s < '0' || *s > '9')
		return false;
	*out = strtoull(s, &end, 10);
	return !*end && *out <= max;
}

/* "MNTNS@PID:START" (store_session_text), modified in place. */
static bool store_session_scope(char *scope, struct store_remembered *r)
{
	char *at = strchr(scope, '@'), *colon = at ? strchr(at, ':') : NULL;
	uint64_t pid = 0;

	if (!at || !colon)
		return false;
	*at = *colon = 0;
	if (!store_session_number(scope, UINT64_MAX, &r->mntns) ||
	    !store_session_number(at + 1, INT32_MAX, &pid) ||
	    !store_session_number(colon + 1, UINT64_MAX, &r->witness_start))
		return false;
	r->witness_pid = (int32_t)pid;
	return true;
}

/* Parse the sealed text (NUL-terminated, modified in place) into r. */
static bool store_session_parse(char *text, struct store_remembered *r)
{
	char *f[STORE_SESSION_FIELDS], *save = NULL, *line;
	uint64_t uid = 0, expiry = 0;
	size_t n = 0;

	for (line = strtok_r(text, "\n", &save); line && n < STORE_SESSION_FIELDS;
	     line = strtok_r(NULL, "\n", &save))
		f[n++] = line;
	if (n != STORE_SESSION_FIELDS || line || strcmp(f[0], STORE_SESSION_MAGIC) != 0)
		return false;
	r->host_ns = strcmp(f[3], "host") == 0;
	if (!r->host_ns && !store_session_scope(f[3], r))
		return false;
	if (!store_session_number(f[2], UINT32_MAX, &uid) ||
	    !store_session_number(f[9], INT64_MAX, &expiry))
		return false;
	r->uid = (uint32_t)uid;
	r->claims.expiry = (int64_t)expiry;
	r->claims.role = kms_role_parse(f[8]);
	return r->claims.role != KMS_ROLE_NONE &&
	       store_session_field(r->host, sizeof(r->host), f[1]) &&
	       store_session_field(r->project, sizeof(r->project), f[4]) &&
	       store_session_field(r->claims.id, sizeof(r->claims.id), f[5]) &&
	       store_session_field(r->claims.project, sizeof(r->claims.project), f[6]) &&
	       store_session_field(r->claims.user, sizeof(r->claims.user), f[7]);
}

int store_session_put(struct store *s, struct store_remembered *r)
{
	struct store_session sess;
	char text[512], label[64];
	uint8_t rnd[16];
	int e;

	memset(&sess, 0, sizeof(sess));
	e = core_random(rnd, sizeof(rnd));
	if (e < 0)
		goto out;
	kms_hex_encode(rnd, sizeof(rnd), r->id);
	e = store_session_text(r, text, sizeof(text));
	if (e == 0)
		e = store_session_label(r->id, label, sizeof(label));
	if (e == 0)
		e = store_seal_opaque(s, label, (const uint8_t *)text, strlen(text), sess.sealed,
				      sizeof(sess.sealed), &sess.sealed_len);
	if (e < 0)
		goto out;
	memcpy(sess.id, r->id, sizeof(sess.id));
	snprintf(sess.host, sizeof(sess.host), "%s", r->host);
	snprintf(sess.token_id, sizeof(sess.token_id), "%s", r->claims.id);
	sess.expires_ms = r->claims.expiry * 1000;
	e = s->ops->session_put(s->be, &sess);
out:
	kms_wipe(text, sizeof(text));
	return e;
}

int store_session_delete(struct store *s, const char *id)
{
	return s->ops->session_delete(s->be, id);
}

static int store_session_gather(const struct store_session *sess, void *arg)
{
	struct store_session_rows *l = arg;

	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		struct store_session *v = realloc(l->v, cap * sizeof(*v));

		if (!v)
			return KMS_E_NOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = *sess;
	return 0;
}

int store_session_rows(struct store *s, const char *host, struct store_session_rows *l)
{
	memset(l, 0, sizeof(*l));
	return s->ops->session_list(s->be, host, store_session_gather, l);
}

/* Unseal one row; false if it does not unseal or its sealed copy disagrees with its columns. */
static bool store_session_open(struct store *s, const struct store_session *sess,
			       struct store_remembered *r)
{
	char text[STORE_SESSION_SEALED_MAX + 1], label[64];
	size_t n = 0;
	bool ok;

	memset(r, 0, sizeof(*r));
	ok = sess->sealed_len > 0 && store_session_label(sess->id, label, sizeof(label)) == 0 &&
	     store_unseal_opaque(s, label, sess->sealed, sess->sealed_len, (uint8_t *)text,
				 sizeof(text) - 1, &n) == 0;
	if (ok) {
		text[n] = 0;
		ok = store_session_parse(text, r) && strcmp(r->host, sess->host) == 0 &&
		     strcmp(r->claims.id, sess->token_id) == 0 &&
		     r->claims.expiry * 1000 == sess->expires_ms;
	}
	kms_wipe(text, sizeof(text));
	snprintf(r->id, sizeof(r->id), "%s", sess->id);
	return ok;
}

int store_session_list(struct store *s, const char *host, store_remembered_cb cb, void *arg,
		       size_t *unreadable)
{
	struct store_session_rows l;
	struct store_remembered r;
	int e = store_session_rows(s, host, &l);

	*unreadable = 0;
	for (size_t i = 0; e == 0 && i < l.n; i++) {
		if (store_session_open(s, &l.v[i], &r))
			e = cb(&r, arg);
		else
			(*unreadable)++;
	}
	kms_wipe(&r, sizeof(r));
	free(l.v);
	return e;
}

int store_session_purge(struct store *s, const char *host, const char *token_id, bool all,
			int64_t now_ms, size_t *purged)
{
	struct store_session_rows l;
	int e = store_session_rows(s, host, &l);
	size_t n = 0;

	for (size_t i = 0; e == 0 && i < l.n; i++) {
		const struct store_session *x = &l.v[i];
		bool go = token_id ? strcmp(x->token_id, token_id) == 0
				   : all || x->expires_ms <= now_ms ||
					     store_token_revoked(s, x->token_id);

		if (!go)
			continue;
		e = s->ops->session_delete(s->be, x->id);
		n += e == 0;
	}
	free(l.v);
	if (purged)
		*purged = n;
	return e;
}

int store_session_copy(struct store *src, struct store *dst)
{
	struct store_session_rows l;
	int e = store_session_rows(src, NULL, &l);

	for (size_t i = 0; e == 0 && i < l.n; i++)
		e = dst->ops->session_put(dst->be, &l.v[i]);
	free(l.v);
	return e;
}
