/* Root-key rotation: generation N -> N+1 while daemons serve (docs/root-of-trust.md).
 *
 * The store's settings say where a rotation is:
 *   root_check            the check value of the root everything is sealed under (committed)
 *   root_generation       its generation (absent: 1)
 *   root_location         where it lives when not where the options say (after --to)
 *   root_next_location    the next root while a rotation runs: a PKCS#11 URI, an absolute
 *                         path, or a file name beside each host's own root key file
 *   root_next_generation  N+1
 *   root_next_check       its check value; written last, so a reader that sees it set finds
 *                         the other two
 *   root_next_missing     a host that cannot open the next root says so here ("host: why")
 * No rotation: root_next_check empty. In progress: root_next_check != root_check; every process
 * then opens the next root too, seals new material under it and unseals with either. Committed:
 * root_next_check == root_check; the old root may be destroyed once every process uses the new
 * one, then the next_* rows are cleared. Every step is a single durable setting, so running the
 * command again after a kill goes on from wherever it stopped. */
#include "store_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "common/kms_err.h"
#include "common/kms_hex.h"
#include "common/kms_secmem.h"
#include "common/kms_time.h"

#define STORE_CHECK_HEX (2 * CORE_SHA256_BYTES + 1)
/* How long other processes get to notice a new setting (daemons refresh at least every second)
 * before the rotation relies on it. */
#define STORE_ROTATE_SETTLE_MS 2500
int store_rotate_settle_ms = STORE_ROTATE_SETTLE_MS;
int store_rotate_stop_at;
/* Re-seal passes before giving up on writers that keep sealing under the old root. */
#define STORE_ROTATE_PASSES 6
/* An unseal that fails under every root re-reads the settings at most this often. */
#define STORE_ROOTS_RELOAD_MS 200

/* The state secrets there are (store_state_secret): a rotation re-seals each. A new secret must
 * be named here. */
static const char *const store_secret_names[] = { "token.key", "audit.key", "import-digest.key" };

/* ---- settings ---- */

static int store_meta_read(struct store *s, const char *name, char *out, size_t cap)
{
	bool found = false;
	int r = s->ops->meta_get(s->be, name, out, cap, &found);

	if (r < 0 || !found)
		out[0] = 0;
	return r;
}

struct store_rotation {
	char check[72];
	char next_check[72];
	char next_location[1100];
	char location[1100];
	uint32_t generation, next_generation;
};

static int store_rotation_read(struct store *s, struct store_rotation *st)
{
	char gen[32], next_gen[32];
	int r;

	memset(st, 0, sizeof(*st));
	if ((r = store_meta_read(s, "root_check", st->check, sizeof(st->check))) < 0 ||
	    (r = store_meta_read(s, "root_next_check", st->next_check, sizeof(st->next_check))) <
		    0 ||
	    (r = store_meta_read(s, "root_next_location", st->next_location,
				 sizeof(st->next_location))) < 0 ||
	    (r = store_meta_read(s, "root_location", st->location, sizeof(st->location))) < 0 ||
	    (r = store_meta_read(s, "root_generation", gen, sizeof(gen))) < 0 ||
	    (r = store_meta_read(s, "root_next_generation", next_gen, sizeof(next_gen))) < 0)
		return r;
	st->generation = gen[0] ? (uint32_t)strtoul(gen, NULL, 10) : 1;
	st->next_generation =
		next_gen[0] ? (uint32_t)strtoul(next_gen, NULL, 10) : st->generation + 1;
	return 0;
}

static bool store_rotation_running(const struct store_rotation *st)
{
	return st->next_check[0] && strcmp(st->next_check, st->check) != 0;
}

static bool store_rotation_committed(const struct store_rotation *st)
{
	return st->next_check[0] && strcmp(st->next_check, st->check) == 0;
}

/* ---- where roots live ---- */

/* A file location without '/' lies beside this process's own root key file. */
static void store_root_resolve(const struct store *s, const char *location, char *out, size_t cap)
{
	const char *own = s->root_option;
	const char *slash = own ? strrchr(own, '/') : NULL;
	int n;

	if (store_root_location_is_pkcs11(location) || strchr(location, '/'))
		n = snprintf(out, cap, "%s", location);
	else if (!own || store_root_location_is_pkcs11(own))
		n = snprintf(out, cap, "%s/%s", s->state_dir, location);
	else if (!slash)
		n = snprintf(out, cap, "%s", location);
	else
		n = snprintf(out, cap, "%.*s/%s", (int)(slash - own), own, location);
	if (n < 0 || (size_t)n >= cap)
		out[0] = 0; /* too long: opens nothing */
}

static int store_root_open_at(struct store *s, const char *location, bool create,
			      struct store_root **out, char check[STORE_CHECK_HEX], char *why,
			      size_t why_len)
{
	char where[1200];
	struct store_root_params rp = { where, s->pkcs11_module, s->pkcs11_pin_file, create,
					s->state_dir };
	int r;

	store_root_resolve(s, location, where, sizeof(where));
	why[0] = 0;
	r = store_root_open(&rp, out, NULL, why, why_len);
	if (r == KMS_E_KEY_NOT_FOUND && !why[0])
		snprintf(why, why_len, "'%.300s' does not exist", where);
	if (r == 0 && (r = store_root_check(*out, check)) < 0) {
		snprintf(why, why_len, "cannot use root key '%.300s'", where);
		store_root_close(*out);
		*out = NULL;
	}
	return r;
}

/* ---- the roots a process uses (root_lock) ---- */

/* This host, as root_next_missing names it. */
static void store_host_name(char *out, size_t cap)
{
	if (gethostname(out, cap) != 0)
		snprintf(out, cap, "?");
	out[cap - 1] = 0;
}

/* Say (once per reason) that this process cannot open the next root. */
static void store_next_missing(struct store *s, const char *why)
{
	char host[128], val[900], have[900];

	store_host_name(host, sizeof(host));
	snprintf(val, sizeof(val), "%s (pid %ld): %.700s", host, (long)getpid(), why);
	if (store_meta_read(s, "root_next_missing", have, sizeof(have)) == 0 &&
	    strcmp(have, val) != 0 && s->ops->meta_set(s->be, "root_next_missing", val) < 0)
		return; /* the rotation waits for it anyway: it cannot commit without this host */
}

/* Bring this process's roots in line with the settings: open the next root while a rotation
 * runs, make it the root once committed. */
int store_roots_reload(struct store *s)
{
	struct store_rotation st;
	struct store_root *open = NULL, *drop = NULL;
	char check[STORE_CHECK_HEX], why[1200];
	int r = store_rotation_read(s, &st);

	if (r < 0)
		return r;
	pthread_rwlock_rdlock(&s->root_lock);
	bool have_next = s->next_root && strcmp(s->next_check, st.next_check) == 0;
	bool root_ok = strcmp(s->root_check, st.check) == 0;
	pthread_rwlock_unlock(&s->root_lock);
	if (st.next_check[0] && !have_next && !(root_ok && !store_rotation_running(&st))) {
		r = store_root_open_at(s, st.next_location, false, &open, check, why, sizeof(why));
		if (r == 0 && strcmp(check, st.next_check) != 0) {
			snprintf(why, sizeof(why),
				 "the key at '%.300s' is not the next root key (another check "
				 "value)",
				 st.next_location);
			store_root_close(open);
			open = NULL;
			r = KMS_E_IO;
		}
		if (r < 0 && store_rotation_running(&st))
			store_next_missing(s, why);
	} else if (!st.next_check[0] && st.next_location[0]) {
		/* Proposed: can this process open it? Not used before it is announced. */
		if (store_root_open_at(s, st.next_location, false, &open, check, why, sizeof(why)) <
		    0)
			store_next_missing(s, why);
		store_root_close(open);
		open = NULL;
	}
	pthread_rwlock_wrlock(&s->root_lock);
	if (open) {
		drop = s->next_root;
		s->next_root = open;
		snprintf(s->next_check, sizeof(s->next_check), "%s", st.next_check);
		open = NULL;
	}
	/* Committed: the next root is the root now. */
	if (s->next_root && strcmp(s->next_check, st.check) == 0 &&
	    strcmp(s->root_check, st.check) != 0) {
		store_root_close(s->old_root);
		s->old_root = s->root;
		s->root = s->next_root;
		snprintf(s->root_check, sizeof(s->root_check), "%s", s->next_check);
		s->next_root = NULL;
		s->next_check[0] = 0;
	}
	/* Rolled back or finished elsewhere: a next root nobody uses any more. */
	if (s->next_root && strcmp(s->next_check, st.next_check) != 0) {
		store_root_close(drop);
		drop = s->next_root;
		s->next_root = NULL;
		s->next_check[0] = 0;
	}
	s->root_generation = st.generation;
	s->roots_read_ms = kms_time_mono_ms();
	pthread_rwlock_unlock(&s->root_lock);
	store_root_close(drop);
	return 0;
}

typedef int (*store_root_op)(struct store_root *r, const void *aad, size_t aad_len,
			     const uint8_t *in, size_t n, uint8_t *out, size_t cap,
			     size_t *out_len);

/* Seal under the next root while a rotation runs, else under the root. */
int store_roots_seal(struct store *s, const void *aad, size_t aad_len, const uint8_t *in, size_t n,
		     uint8_t *out, size_t cap, size_t *out_len)
{
	int r;

	pthread_rwlock_rdlock(&s->root_lock);
	r = store_root_seal(s->next_root ? s->next_root : s->root, aad, aad_len, in, n, out, cap,
			    out_len);
	pthread_rwlock_unlock(&s->root_lock);
	return r;
}

/* Unseal under whichever root the tag verifies: the root, the next one, the previous one. */
static int store_roots_try(struct store *s, store_root_op op, const void *aad, size_t aad_len,
			   const uint8_t *in, size_t n, uint8_t *out, size_t cap, size_t *out_len)
{
	int r;

	pthread_rwlock_rdlock(&s->root_lock);
	r = op(s->root, aad, aad_len, in, n, out, cap, out_len);
	if (r < 0 && r != KMS_E_STORE_UNAVAILABLE && s->next_root)
		r = op(s->next_root, aad, aad_len, in, n, out, cap, out_len);
	if (r < 0 && r != KMS_E_STORE_UNAVAILABLE && s->old_root)
		r = op(s->old_root, aad, aad_len, in, n, out, cap, out_len);
	pthread_rwlock_unlock(&s->root_lock);
	return r;
}

/* ... and before refusing, read the settings again: a rotation may have begun or ended since. */
static int store_roots_unseal_op(struct store *s, store_root_op op, const void *aad, size_t aad_len,
				 const uint8_t *in, size_t n, uint8_t *out, size_t cap,
				 size_t *out_len)
{
	int r = store_roots_try(s, op, aad, aad_len, in, n, out, cap, out_len);
	int64_t last;

	if (r == 0 || r == KMS_E_STORE_UNAVAILABLE)
		return r;
	pthread_rwlock_rdlock(&s->root_lock);
	last = s->roots_read_ms;
	pthread_rwlock_unlock(&s->root_lock);
	if (kms_time_mono_ms() - last < STORE_ROOTS_RELOAD_MS || store_roots_reload(s) < 0)
		return r;
	return store_roots_try(s, op, aad, aad_len, in, n, out, cap, out_len);
}

int store_roots_unseal(struct store *s, const void *aad, size_t aad_len, const uint8_t *in,
		       size_t n, uint8_t *out, size_t cap, size_t *out_len)
{
	return store_roots_unseal_op(s, store_root_unseal, aad, aad_len, in, n, out, cap, out_len);
}

/* Opaque seals carry their label where the others carry AAD. */
static int store_root_unseal_opaque_op(struct store_root *r, const void *label, size_t len,
				       const uint8_t *in, size_t n, uint8_t *out, size_t cap,
				       size_t *out_len)
{
	(void)len;
	return store_root_unseal_opaque(r, label, in, n, out, cap, out_len);
}

int store_roots_seal_opaque(struct store *s, const char *label, const uint8_t *in, size_t n,
			    uint8_t *out, size_t cap, size_t *out_len)
{
	int r;

	pthread_rwlock_rdlock(&s->root_lock);
	r = store_root_seal_opaque(s->next_root ? s->next_root : s->root, label, in, n, out, cap,
				   out_len);
	pthread_rwlock_unlock(&s->root_lock);
	return r;
}

int store_roots_unseal_opaque(struct store *s, const char *label, const uint8_t *in, size_t n,
			      uint8_t *out, size_t cap, size_t *out_len)
{
	return store_roots_unseal_op(s, store_root_unseal_opaque_op, label, strlen(label), in, n,
				     out, cap, out_len);
}

/* A key derived from the root that must outlive a rotation (the import digest key): kept as the
 * state secret name once a rotation began, else derived from the root as before. */
int store_roots_derive_kept(struct store *s, const char *name, const char *label,
			    uint8_t out[CORE_KEY_BYTES])
{
	int r = store_state_secret_get(s, name, out);

	if (r != KMS_E_KEY_NOT_FOUND)
		return r;
	pthread_rwlock_rdlock(&s->root_lock);
	r = store_root_derive(s->root, label, out);
	pthread_rwlock_unlock(&s->root_lock);
	return r;
}

/* The default next location: a file beside the root's ("root.key.next", renamed into place at
 * the end), or a new object "<object>-g<N+1>" in the same token. */
static int store_rotate_default_next(const char *current, uint32_t gen, char *out, size_t cap)
{
	if (!store_root_location_is_pkcs11(current)) {
		const char *base = strrchr(current, '/');

		int n = snprintf(out, cap, "%s.next", base ? base + 1 : current);

		return n < 0 || (size_t)n >= cap ? KMS_E_BAD_PARAM : 0;
	}
	const char *obj = strstr(current, "object=");
	size_t end, stem;

	if (!obj)
		return KMS_E_BAD_PARAM;
	obj += 7;
	end = strcspn(obj, ";?");
	stem = end;
	/* "<object>-g<digits>": the stem without the old generation */
	for (size_t i = end; i > 2; i--) {
		if (obj[i - 1] >= '0' && obj[i - 1] <= '9')
			continue;
		if (i < end && obj[i - 1] == 'g' && obj[i - 2] == '-')
			stem = i - 2;
		break;
	}
	if ((size_t)snprintf(out, cap, "%.*s%.*s-g%u%s", (int)(obj - current), current, (int)stem,
			     obj, gen, obj + end) >= cap)
		return KMS_E_BAD_PARAM;
	return 0;
}

/* ---- opening ---- */

/* At open, after the configured root (store_load_root): where a rotation left the root. The
 * configured key may be the old one of a committed rotation, or gone (destroyed, moved to
 * --to): then the next location or root_location holds the root. */
int store_roots_open(struct store *s, int loaded, char *why, size_t why_len)
{
	struct store_rotation st;
	const char *alt[3];
	char check[STORE_CHECK_HEX], err[1200], beside[1100], retired[72];
	const char *own = s->root_option ? s->root_option : "root.key";
	int r = store_rotation_read(s, &st);

	if (r < 0)
		return loaded;
	if (loaded == 0) {
		snprintf(s->root_check, sizeof(s->root_check), "%s", st.check);
		if (!s->root_check[0] && store_root_check(s->root, check) == 0)
			snprintf(s->root_check, sizeof(s->root_check), "%s", check);
		return store_roots_reload(s);
	}
	if (loaded != KMS_E_IO || !st.check[0])
		return loaded;
	/* Only a key a rotation retired (missing, or the one it retired last) is looked for
	 * elsewhere: a wrong or mistyped key stays an error. */
	if (store_meta_read(s, "root_retired_check", retired, sizeof(retired)) < 0 || !retired[0] ||
	    (s->root && (store_root_check(s->root, check) < 0 || strcmp(check, retired) != 0)))
		return loaded;
	/* Committed, not finished: the next location; moved (--to): root_location; finished on
	 * another host, this host's new file not yet renamed: "root.key.next". */
	alt[0] = store_rotation_committed(&st) ? st.next_location : NULL;
	alt[1] = st.location[0] ? st.location : NULL;
	alt[2] = !store_root_location_is_pkcs11(own) &&
				 store_rotate_default_next(own, 0, beside, sizeof(beside)) == 0
			 ? beside
			 : NULL;
	for (size_t i = 0; i < KMS_ARRAY_SIZE(alt); i++) {
		struct store_root *root = NULL;

		if (!alt[i] ||
		    store_root_open_at(s, alt[i], false, &root, check, err, sizeof(err)) < 0)
			continue;
		if (strcmp(check, st.check) != 0) {
			store_root_close(root);
			continue;
		}
		/* The configured key, if it opened, is the one the rotation retires. */
		s->old_root = s->root;
		s->root = root;
		snprintf(s->root_check, sizeof(s->root_check), "%s", st.check);
		snprintf(s->root_alt, sizeof(s->root_alt), "%s", alt[i]);
		return store_roots_reload(s);
	}
	(void)why;
	(void)why_len;
	return loaded;
}

/* ---- the rotation ---- */

/* Tests: stop as a kill would at this point (store_internal.h). */
static bool store_rotate_stopped(int at)
{
	return store_rotate_stop_at == at;
}

static void store_rotate_sleep(void)
{
	int ms = store_rotate_settle_ms;
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

struct store_rotate_ctx {
	struct store *s;
	struct store_root *next; /* seal under it; everything must unseal under it alone */
	store_rotate_progress_fn progress;
	void *arg;
	struct store_rotate_report *rep;
	char *why;
	size_t why_len;
	/* the keys to go through, collected first (a scan holds the database) */
	struct store_rotate_key {
		char project[KMS_MAX_PROJECT_ID + 1];
		char key_id[KMS_KEY_ID_LEN + 1];
		uint32_t nversions;
	} * keys;
	size_t nkeys, cap, versions, done;
	size_t resealed, lost;
	size_t raced; /* rows changed by another process between read and write */
};

/* Room for one more of size bytes in *v (n used of *cap). */
static int store_rotate_grow(void **v, size_t n, size_t *cap, size_t size)
{
	size_t ncap = *cap ? *cap * 2 : 64;
	void *p;

	if (n < *cap)
		return 0;
	p = realloc(*v, ncap * size);
	if (!p)
		return KMS_E_NOMEM;
	*v = p;
	*cap = ncap;
	return 0;
}

static int store_rotate_collect_meta(const struct store_key_meta *m, void *arg)
{
	struct store_rotate_ctx *c = arg;

	if (c->nkeys && strcmp(c->keys[c->nkeys - 1].key_id, m->key_id) == 0)
		return 0;
	if (store_rotate_grow((void **)&c->keys, c->nkeys, &c->cap, sizeof(*c->keys)) < 0)
		return KMS_E_NOMEM;
	snprintf(c->keys[c->nkeys].project, sizeof(c->keys[0].project), "%s", m->project);
	snprintf(c->keys[c->nkeys].key_id, sizeof(c->keys[0].key_id), "%s", m->key_id);
	c->keys[c->nkeys].nversions = 0;
	c->nkeys++;
	return 0;
}

static int store_rotate_collect_version(const struct store_sealed_version *v, void *arg)
{
	struct store_rotate_ctx *c = arg;

	(void)v;
	c->keys[c->nkeys - 1].nversions++;
	c->versions++;
	return 0;
}

static void store_material_aad_of(const char *key_id, uint32_t version,
				  uint8_t aad[CORE_KEY_ID_BYTES + 4])
{
	memcpy(aad, key_id, CORE_KEY_ID_BYTES);
	for (int i = 0; i < 4; i++)
		aad[CORE_KEY_ID_BYTES + i] = (uint8_t)(version >> (8 * i));
}

struct store_rotate_load {
	struct store_key_meta meta;
	struct store_sealed_version v[KMS_MAX_KEY_VERSIONS];
	size_t n;
};

static int store_rotate_load_version(const struct store_sealed_version *v, void *arg)
{
	struct store_rotate_load *l = arg;

	if (l->n >= KMS_ARRAY_SIZE(l->v))
		return KMS_E_IO;
	l->v[l->n++] = *v;
	return 0;
}

/* One key: every version not sealed under the next root is unsealed (under any root) and
 * sealed under it, written only if the key did not change since it was read. */
static int store_rotate_key_once(struct store_rotate_ctx *c, const struct store_rotate_key *k,
				 struct store_rotate_load *l, size_t *stale_versions)
{
	struct store *s = c->s;
	uint8_t aad[CORE_KEY_ID_BYTES + 4], *plain = kms_secret_alloc(CORE_KEY_BYTES);
	size_t len = 0, nchanged = 0;
	int r = plain ? 0 : KMS_E_NOMEM;

	l->n = 0;
	if (r == 0)
		r = s->ops->key_load(s->be, k->project, k->key_id, NULL, &l->meta,
				     store_rotate_load_version, l);
	for (size_t i = 0; r == 0 && i < l->n; i++) {
		struct store_sealed_version *v = &l->v[i];

		store_material_aad_of(k->key_id, v->version, aad);
		if (store_root_unseal(c->next, aad, sizeof(aad), v->sealed, v->sealed_len, plain,
				      CORE_KEY_BYTES, &len) == 0)
			continue;
		if (store_roots_unseal(s, aad, sizeof(aad), v->sealed, v->sealed_len, plain,
				       CORE_KEY_BYTES, &len) < 0 ||
		    len != CORE_KEY_BYTES) {
			c->lost++; /* damaged, or sealed under a root we do not have */
			continue;
		}
		r = store_root_seal(c->next, aad, sizeof(aad), plain, CORE_KEY_BYTES, v->sealed,
				    sizeof(v->sealed), &v->sealed_len);
		l->v[nchanged++] = *v;
	}
	if (r == 0 && nchanged)
		r = s->ops->key_reseal(s->be, k->key_id, l->meta.revision, l->v, nchanged);
	if (r == 0)
		c->resealed += nchanged;
	*stale_versions = nchanged;
	kms_secret_free(plain, CORE_KEY_BYTES);
	return r;
}

static int store_rotate_key(struct store_rotate_ctx *c, const struct store_rotate_key *k,
			    struct store_rotate_load *l)
{
	size_t n = 0;
	int r = KMS_E_STALE;

	for (int i = 0; i < 16 && r == KMS_E_STALE; i++)
		r = store_rotate_key_once(c, k, l, &n);
	/* Gone meanwhile: nothing left to re-seal. */
	return r == KMS_E_KEY_NOT_FOUND ? 0 : r;
}

/* Every version of every key under the next root. */
static int store_rotate_keys(struct store_rotate_ctx *c)
{
	struct store_rotate_load *l = calloc(1, sizeof(*l));
	int r = l ? 0 : KMS_E_NOMEM;

	c->nkeys = c->versions = c->done = 0;
	if (r == 0)
		r = c->s->ops->key_scan(c->s->be, store_rotate_collect_meta,
					store_rotate_collect_version, c);
	for (size_t i = 0; r == 0 && i < c->nkeys; i++) {
		r = store_rotate_key(c, &c->keys[i], l);
		c->done += c->keys[i].nversions;
		if (store_rotate_stopped(STORE_ROTATE_STOP_RESEAL) && i == c->nkeys / 2)
			r = KMS_E_BUSY;
		if (c->progress)
			c->progress(c->done, c->versions, c->arg);
	}
	if (r < 0)
		snprintf(c->why, c->why_len, "cannot re-seal the keys' material: %s",
			 kms_err_info(r)->message);
	if (l)
		kms_wipe(l, sizeof(*l));
	free(l);
	return r;
}

/* The state secrets: sealed under the next root in their settings. */
static int store_rotate_secrets(struct store_rotate_ctx *c)
{
	struct store *s = c->s;
	char name[STORE_SECRET_SETTING_MAX], label[STORE_SECRET_LABEL_MAX], hex[STORE_SECRET_HEX];
	uint8_t sealed[STORE_SECRET_SEALED], *plain = kms_secret_alloc(32);
	size_t n = 0, len = 0;
	int r = plain ? 0 : KMS_E_NOMEM;

	for (size_t i = 0; r == 0 && i < KMS_ARRAY_SIZE(store_secret_names); i++) {
		if ((r = store_secret_setting(store_secret_names[i], name, label)) < 0 ||
		    (r = store_meta_read(s, name, hex, sizeof(hex))) < 0 || !hex[0])
			continue;
		if (kms_hex_decode(hex, strlen(hex), sealed, sizeof(sealed), &n) < 0) {
			c->lost++;
			continue;
		}
		if (store_root_unseal_opaque(c->next, label, sealed, n, plain, 32, &len) == 0)
			continue;
		if (store_roots_unseal_opaque(s, label, sealed, n, plain, 32, &len) < 0) {
			c->lost++;
			continue;
		}
		r = store_root_seal_opaque(c->next, label, plain, 32, sealed, sizeof(sealed), &n);
		if (r == 0) {
			kms_hex_encode(sealed, n, hex);
			r = s->ops->meta_set(s->be, name, hex);
		}
		if (r == 0)
			c->resealed++;
	}
	kms_secret_free(plain, 32);
	if (r < 0)
		snprintf(c->why, c->why_len, "cannot re-seal the state secrets: %s",
			 kms_err_info(r)->message);
	return r;
}

/* One remembered binding under the next root, written only if its row still holds what was
 * read: a setfattr that replaced or deleted it meanwhile is never undone (the next pass sees
 * the row as it is now). */
static int store_rotate_session(struct store_rotate_ctx *c, const struct store_session *x,
				uint8_t *plain)
{
	struct store *s = c->s;
	uint8_t sealed[STORE_SESSION_SEALED_MAX];
	char label[80];
	size_t len = 0, n = 0;
	int r = store_session_label(x->id, label, sizeof(label));

	if (r < 0 || store_root_unseal_opaque(c->next, label, x->sealed, x->sealed_len, plain,
					      STORE_SESSION_SEALED_MAX, &len) == 0)
		return r;
	if (store_roots_unseal_opaque(s, label, x->sealed, x->sealed_len, plain,
				      STORE_SESSION_SEALED_MAX, &len) < 0) {
		c->lost++;
		return 0;
	}
	r = store_root_seal_opaque(c->next, label, plain, len, sealed, sizeof(sealed), &n);
	if (r == 0)
		r = s->ops->session_reseal(s->be, x->id, x->sealed, x->sealed_len, sealed, n);
	if (r == KMS_E_STALE)
		c->raced++;
	else if (r == 0)
		c->resealed++;
	return r == KMS_E_STALE ? 0 : r;
}

/* Remembered token bindings (schema 5; skipped where the backend has none). */
static int store_rotate_sessions(struct store_rotate_ctx *c)
{
	struct store *s = c->s;
	struct store_session_rows l = { 0 };
	uint8_t *plain = kms_secret_alloc(STORE_SESSION_SEALED_MAX);
	int r = plain ? 0 : KMS_E_NOMEM;

	if (!s->ops->session_list || !s->ops->session_reseal)
		goto out;
	/* Every open store has the table (schema 5): a failure to list it must stop the rotation,
	 * or the old root would be destroyed with bindings still sealed under it. */
	if (r == 0)
		r = store_session_rows(s, NULL, &l);
	for (size_t i = 0; r == 0 && i < l.n; i++)
		r = store_rotate_session(c, &l.v[i], plain);
	if (r < 0)
		snprintf(c->why, c->why_len, "cannot re-seal the remembered token bindings: %s",
			 kms_err_info(r)->message);
out:
	free(l.v);
	kms_secret_free(plain, STORE_SESSION_SEALED_MAX);
	return r;
}

/* Re-seal everything under c->next until one pass finds nothing left to do (writers that had
 * not noticed the rotation yet may have sealed under the old root meanwhile). */
static int store_rotate_reseal_all(struct store_rotate_ctx *c)
{
	int r = 0;

	for (int pass = 0; pass < STORE_ROTATE_PASSES; pass++) {
		c->resealed = c->lost = c->raced = 0;
		if ((r = store_rotate_keys(c)) < 0 || (r = store_rotate_secrets(c)) < 0 ||
		    (r = store_rotate_sessions(c)) < 0)
			return r;
		c->rep->resealed += c->resealed;
		if (c->lost) {
			snprintf(c->why, c->why_len,
				 "%zu sealed item(s) unseal under no root key this process has "
				 "(damaged, or sealed under a root key that is gone): see kmsctl "
				 "check; nothing was committed",
				 c->lost);
			return KMS_E_IO;
		}
		/* A row another process changed meanwhile is looked at again. */
		if (c->resealed == 0 && c->raced == 0)
			return 0;
	}
	snprintf(c->why, c->why_len,
		 "material sealed under the old root key keeps appearing (a process that has "
		 "not noticed the rotation?); run the command again");
	return KMS_E_BUSY;
}

/* Hosts that cannot open the next root would be left without a root at the commit: each says
 * so in root_next_missing whenever it re-reads the settings (which clearing it makes them do). */
static int store_rotate_hosts_ready(struct store_rotate_ctx *c)
{
	char have[900];
	int r = c->s->ops->meta_set(c->s->be, "root_next_missing", "");

	if (r == 0) {
		store_rotate_sleep();
		r = store_meta_read(c->s, "root_next_missing", have, sizeof(have));
	}
	if (r == 0 && have[0]) {
		snprintf(c->why, c->why_len,
			 "a process cannot open the next root key: %.700s; make it "
			 "available there (for a file root: copy the new file beside that host's "
			 "root key, mode 0600), then run the command again",
			 have);
		r = KMS_E_BUSY;
	}
	return r;
}

/* --to as it is kept: a relative file name is taken from the working directory. */
static int store_rotate_to_location(const char *to, char *loc, size_t cap)
{
	char *abs;
	int n;

	if (store_root_location_is_pkcs11(to) || to[0] == '/')
		n = snprintf(loc, cap, "%s", to);
	else if ((abs = realpath(".", NULL)) != NULL) {
		n = snprintf(loc, cap, "%s/%s", abs, to);
		free(abs);
	} else {
		return KMS_E_IO;
	}
	return n < 0 || (size_t)n >= cap ? KMS_E_BAD_PARAM : 0;
}

/* Whether --to names the root key in use (a rotation to it that finished already). */
static bool store_rotate_is_current(struct store *s, const struct store_rotation *st,
				    const char *to)
{
	char loc[1100], check[STORE_CHECK_HEX], why[1200];
	struct store_root *r = NULL;
	bool same;

	if (store_rotate_to_location(to, loc, sizeof(loc)) < 0 ||
	    store_root_open_at(s, loc, false, &r, check, why, sizeof(why)) < 0)
		return false;
	same = strcmp(check, st->check) == 0;
	store_root_close(r);
	return same;
}

/* Start: create the next root and propose it (location and generation), then announce it
 * (its check) once no process said it cannot open it. */
static int store_rotate_start(struct store_rotate_ctx *c, const struct store_rotation *st,
			      const char *to)
{
	struct store *s = c->s;
	char loc[1100], check[STORE_CHECK_HEX], gen[16];
	const char *own = s->root_option ? s->root_option : "root.key";
	const char *cur = s->root_alt[0] ? s->root_alt : st->location[0] ? st->location : own;
	struct store_root *next = NULL;
	uint8_t *kept = kms_secret_alloc(CORE_KEY_BYTES);
	int r = kept ? 0 : KMS_E_NOMEM;

	/* Proposed already (every process can try it; nothing is sealed under it yet). */
	if (r == 0 && st->next_location[0] && (!to || strcmp(to, st->next_location) == 0)) {
		snprintf(loc, sizeof(loc), "%s", st->next_location);
		goto open;
	}
	if (r == 0 && to && strstr(to, "pin-value")) {
		snprintf(c->why, c->why_len,
			 "--to names a PIN value, which would be kept in the store's settings; "
			 "use pin-source=file:... or --pkcs11-pin-file");
		r = KMS_E_BAD_PARAM;
	}
	if (r == 0 && to) {
		r = store_rotate_to_location(to, loc, sizeof(loc));
	} else if (r == 0 && cur != own && !store_root_location_is_pkcs11(cur)) {
		/* Moved there by an earlier --to: beside it, by its full path. */
		if ((size_t)snprintf(loc, sizeof(loc), "%s.next", cur) >= sizeof(loc))
			r = KMS_E_BAD_PARAM;
	} else if (r == 0 &&
		   store_rotate_default_next(cur, st->generation + 1, loc, sizeof(loc)) < 0) {
		snprintf(c->why, c->why_len, "cannot name a new key beside '%.300s'", cur);
		r = KMS_E_BAD_PARAM;
	}
	/* Secrets still in files move into the settings first (they are re-sealed there), and the
	 * import digest key is kept as it is derived from the old root now. */
	for (size_t i = 0; r == 0 && i < KMS_ARRAY_SIZE(store_secret_names); i++) {
		uint8_t tmp[32];

		r = store_state_secret_get(s, store_secret_names[i], tmp);
		kms_wipe(tmp, sizeof(tmp));
		if (r == KMS_E_KEY_NOT_FOUND)
			r = 0;
	}
	if (r == 0 && (r = store_root_derive(s->root, STORE_IMPORT_DIGEST_LABEL, kept)) == 0)
		r = store_state_secret_keep(s, "import-digest.key", kept);
	if (r < 0 && !c->why[0])
		snprintf(c->why, c->why_len, "cannot prepare the store: %s",
			 kms_err_info(r)->message);
open:
	if (r == 0 &&
	    (r = store_root_open_at(s, loc, true, &next, check, c->why, c->why_len)) == 0 &&
	    strcmp(check, st->check) == 0) {
		snprintf(c->why, c->why_len, "'%.300s' is the current root key", loc);
		r = KMS_E_BAD_PARAM;
	}
	snprintf(gen, sizeof(gen), "%u", st->generation + 1);
	if (r == 0 && store_rotate_stopped(STORE_ROTATE_STOP_CREATED))
		r = KMS_E_BUSY;
	if (r == 0 && ((r = s->ops->meta_set(s->be, "root_next_location", loc)) < 0 ||
		       (r = s->ops->meta_set(s->be, "root_next_generation", gen)) < 0 ||
		       (r = s->ops->meta_set(s->be, "root_next_missing", "")) < 0))
		snprintf(c->why, c->why_len, "cannot write the store's settings: %s",
			 kms_err_info(r)->message);
	if (r == 0 && store_rotate_stopped(STORE_ROTATE_STOP_ANNOUNCED))
		r = KMS_E_BUSY;
	/* Proposed: every process tries to open it and says so if it cannot; only once none
	 * complained is it announced (its check), and only then does anyone seal under it. */
	if (r == 0)
		r = store_rotate_hosts_ready(c);
	if (r == 0 && (r = s->ops->meta_set(s->be, "root_next_check", check)) < 0)
		snprintf(c->why, c->why_len, "cannot write the store's settings: %s",
			 kms_err_info(r)->message);
	store_root_close(next);
	kms_secret_free(kept, CORE_KEY_BYTES);
	if (r == 0)
		r = store_roots_reload(s);
	return r;
}

/* The file root beside the configured one ("root.key.next") takes the old one's name. */
static int store_rotate_rename(struct store *s, const char *next_location, char *now, size_t cap)
{
	char from[1200], to[1200], dir[1200];
	const char *own = s->root_option ? s->root_option : "root.key";
	char *slash;
	int fd;

	if (store_root_location_is_pkcs11(next_location) || strchr(next_location, '/') ||
	    store_root_location_is_pkcs11(own))
		return 0;
	store_root_resolve(s, next_location, from, sizeof(from));
	store_root_resolve(s, own, to, sizeof(to));
	if (rename(from, to) != 0 && errno != ENOENT)
		return KMS_E_IO;
	snprintf(now, cap, "%.1000s", to);
	snprintf(dir, sizeof(dir), "%s", to);
	slash = strrchr(dir, '/');
	if (slash)
		*slash = 0;
	fd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) != 0) {
		if (fd >= 0)
			close(fd);
		return KMS_E_IO;
	}
	close(fd);
	return 0;
}

/* After the commit: once every process uses the new root, nothing is sealed under the old one
 * (checked again), so it is destroyed; then the next_* settings are cleared. */
static int store_rotate_finish(struct store_rotate_ctx *c, const struct store_rotation *st)
{
	struct store *s = c->s;
	char gen[16], old[1200], check[STORE_CHECK_HEX], retired[72];
	int r;

	snprintf(gen, sizeof(gen), "%u", st->next_generation);
	if ((r = s->ops->meta_set(s->be, "root_generation", gen)) < 0)
		goto fail;
	if (store_rotate_stopped(STORE_ROTATE_STOP_GENERATION))
		return KMS_E_BUSY;
	store_rotate_sleep();
	/* Stragglers sealed under the old root (still open here) go under the new one. */
	c->next = s->root;
	if ((r = store_rotate_reseal_all(c)) < 0)
		return r;
	if ((r = store_meta_read(s, "root_retired_check", retired, sizeof(retired))) < 0)
		goto fail;
	if (s->old_root &&
	    (store_root_check(s->old_root, check) < 0 || strcmp(check, retired) != 0)) {
		/* Not the key this store retired (a wrong --root-key?): never destroyed here. */
		store_root_close(s->old_root);
		s->old_root = NULL;
	}
	if (s->old_root) {
		store_root_describe(s->old_root, old, sizeof(old));
		if ((r = store_root_destroy(s->old_root, c->why, c->why_len)) < 0)
			return r;
		store_root_close(s->old_root);
		s->old_root = NULL;
		snprintf(c->rep->destroyed, sizeof(c->rep->destroyed), "%.1000s", old);
	}
	if (store_rotate_stopped(STORE_ROTATE_STOP_DESTROYED))
		return KMS_E_BUSY;
	if ((r = store_rotate_rename(s, st->next_location, c->rep->now, sizeof(c->rep->now))) < 0) {
		snprintf(c->why, c->why_len, "cannot rename the new root key into place: %s",
			 strerror(errno));
		return r;
	}
	if (store_rotate_stopped(STORE_ROTATE_STOP_RENAMED))
		return KMS_E_BUSY;
	/* Where the root is when not where the options say: --to, or a new token object. */
	if (store_root_location_is_pkcs11(st->next_location) || strchr(st->next_location, '/'))
		r = s->ops->meta_set(s->be, "root_location", st->next_location);
	if (r == 0 && store_rotate_stopped(STORE_ROTATE_STOP_LOCATED))
		return KMS_E_BUSY;
	if (r == 0 && (r = s->ops->meta_set(s->be, "root_next_check", "")) == 0 &&
	    (r = s->ops->meta_set(s->be, "root_next_location", "")) == 0)
		r = s->ops->meta_set(s->be, "root_next_generation", "");
	if (r == 0)
		return 0;
fail:
	snprintf(c->why, c->why_len, "cannot write the store's settings: %s",
		 kms_err_info(r)->message);
	return r;
}

/* Announced: re-seal everything under the next root, check every host can open it, commit. */
static int store_rotate_commit(struct store_rotate_ctx *c, const struct store_rotation *st)
{
	struct store *s = c->s;
	int r = 0;

	if (!s->next_root) {
		snprintf(c->why, c->why_len,
			 "the next root key '%.300s' of the interrupted rotation cannot be opened",
			 st->next_location);
		return KMS_E_IO;
	}
	c->next = s->next_root;
	if (store_rotate_stopped(STORE_ROTATE_STOP_STARTED) ||
	    (r = store_rotate_reseal_all(c)) < 0 || (r = store_rotate_hosts_ready(c)) < 0 ||
	    store_rotate_stopped(STORE_ROTATE_STOP_RESEALED))
		return r < 0 ? r : KMS_E_BUSY;
	/* The commit: one setting (the retired root's check first: only that key is ever
	 * destroyed). */
	if ((r = s->ops->meta_set(s->be, "root_retired_check", st->check)) < 0 ||
	    (r = s->ops->meta_set(s->be, "root_check", st->next_check)) < 0) {
		snprintf(c->why, c->why_len, "cannot write the store's settings");
		return r;
	}
	if ((r = store_roots_reload(s)) < 0)
		return r;
	return store_rotate_stopped(STORE_ROTATE_STOP_COMMITTED) ? KMS_E_BUSY : 0;
}

/* One rotation at a time on this host. */
static int store_rotate_lock(struct store *s, int *fd, char *why, size_t why_len)
{
	char path[2200];

	snprintf(path, sizeof(path), "%s/rotate.lock", s->state_dir);
	*fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (*fd < 0 || flock(*fd, LOCK_EX | LOCK_NB) != 0) {
		snprintf(why, why_len, "another root-key rotation runs on '%.300s'", s->state_dir);
		if (*fd >= 0)
			close(*fd);
		*fd = -1;
		return KMS_E_BUSY;
	}
	return 0;
}

int store_root_rotate(struct store *s, const char *to, store_rotate_progress_fn progress, void *arg,
		      struct store_rotate_report *rep, char *why, size_t why_len)
{
	struct store_rotate_ctx c = {
		.s = s, .progress = progress, .arg = arg, .rep = rep, .why = why, .why_len = why_len
	};
	struct store_rotation st;
	char tobuf[1100];
	int lock = -1, r;

	memset(rep, 0, sizeof(*rep));
	why[0] = 0;
	if (to && store_rotate_to_location(to, tobuf, sizeof(tobuf)) < 0) {
		snprintf(why, why_len, "--to '%.300s' is too long", to);
		return KMS_E_BAD_PARAM;
	}
	to = to ? tobuf : NULL;
	if ((r = store_rotate_lock(s, &lock, why, why_len)) < 0)
		return r;
	if ((r = store_roots_reload(s)) < 0 || (r = store_rotation_read(s, &st)) < 0) {
		snprintf(why, why_len, "cannot read the store's settings");
		goto out;
	}
	rep->resumed = st.next_check[0] || st.next_location[0];
	if (store_rotation_running(&st) && to && strcmp(to, st.next_location) != 0) {
		snprintf(why, why_len,
			 "an interrupted rotation to '%.300s' is in progress: run the command "
			 "without --to (or with that location) to finish it first",
			 st.next_location);
		r = KMS_E_BAD_PARAM;
		goto out;
	}
	if (!st.next_check[0]) {
		if (s->old_root) {
			/* Committed and finished elsewhere; only this host's old key is left. */
			c.next = s->root;
			st.next_generation = st.generation;
			snprintf(st.next_location, sizeof(st.next_location), "%s", s->root_alt);
			r = store_rotate_finish(&c, &st);
			goto done;
		}
		if (!st.next_location[0] && to && store_rotate_is_current(s, &st, to)) {
			/* Done already: a run that finished before (killed after its last step). */
			rep->unchanged = true;
			st.next_generation = st.generation;
			r = 0;
			goto done;
		}
		if ((r = store_rotate_start(&c, &st, to)) < 0 ||
		    (r = store_rotation_read(s, &st)) < 0)
			goto out;
		store_rotate_sleep();
	}
	if (store_rotation_running(&st) && (r = store_rotate_commit(&c, &st)) < 0)
		goto out;
	r = store_rotate_finish(&c, &st);
done:
	rep->generation = st.next_generation;
	if (!rep->now[0])
		store_root_describe(s->root, rep->now, sizeof(rep->now));
out:
	free(c.keys);
	if (lock >= 0)
		close(lock);
	return r;
}
