/* The store's state directory: its files (root key, secrets), the store's identity (domain id,
 * region), opening and closing the store around its backend, and sealing opaque tokens under a
 * key derived from the root key. */
#include "store_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/kms_err.h"
#include "common/kms_hex.h"
#include "common/kms_secmem.h"

#define STORE_DEFAULT_REGION "eu-de"

bool store_shared(const struct store *s)
{
	return s->ops->shared;
}

/* The sealed form of a state secret in the backend's settings: hex of store_seal_opaque(label
 * "kmsfs state secret NAME"), so the backend never sees it in plain and a root-key rotation
 * re-seals it with everything else. */
int store_secret_setting(const char *name, char setting[STORE_SECRET_SETTING_MAX],
			 char label[STORE_SECRET_LABEL_MAX])
{
	if (strchr(name, '/') ||
	    (size_t)snprintf(setting, STORE_SECRET_SETTING_MAX, "secret:%s", name) >=
		    STORE_SECRET_SETTING_MAX ||
	    (size_t)snprintf(label, STORE_SECRET_LABEL_MAX, "kmsfs state secret %s", name) >=
		    STORE_SECRET_LABEL_MAX)
		return KMS_E_BAD_PARAM;
	return 0;
}

/* The secret held in meta under "secret:NAME": 0, KMS_E_KEY_NOT_FOUND if there is none,
 * KMS_E_IO if it does not unseal (another root key, or damaged). */
static int store_secret_meta_read(struct store *s, const char *meta_name, const char *label,
				  uint8_t out[32])
{
	char hex[2 * STORE_SECRET_SEALED + 2];
	uint8_t sealed[STORE_SECRET_SEALED];
	size_t n = 0, len = 0;
	bool found = false;
	int r = s->ops->meta_get(s->be, meta_name, hex, sizeof(hex), &found);

	if (r < 0)
		return r;
	if (!found)
		return KMS_E_KEY_NOT_FOUND;
	if (kms_hex_decode(hex, strlen(hex), sealed, sizeof(sealed), &n) < 0 ||
	    store_unseal_opaque(s, label, sealed, n, out, 32, &len) < 0 || len != 32) {
		kms_wipe(out, 32);
		return KMS_E_IO;
	}
	return 0;
}

/* Seal secret and insert it unless one is there; *added says which (the first writer wins:
 * the others read the winner back). */
static int store_secret_meta_add(struct store *s, const char *meta_name, const char *label,
				 const uint8_t secret[32], bool *added)
{
	char hex[2 * STORE_SECRET_SEALED + 1];
	uint8_t sealed[STORE_SECRET_SEALED];
	size_t n = 0;
	int r = store_seal_opaque(s, label, secret, 32, sealed, sizeof(sealed), &n);

	*added = false;
	if (r == 0) {
		kms_hex_encode(sealed, n, hex);
		r = s->ops->meta_add(s->be, meta_name, hex, added);
	}
	return r;
}

/* Destroy the file path of a secret the settings hold: overwritten before it is unlinked, so a
 * copy of the state directory (or of the disk) holds no usable secret. Should that fail, the
 * secret is still used from the settings, and the next read tries again
 * (store_secret_file_leftover). */
static void store_secret_file_drop(struct store *s, const char *path)
{
	char why[600];

	if (store_secret_file_destroy(path, s->state_dir, "state secret", why, sizeof(why)) < 0)
		why[0] = 0;
}

static int store_secret_file_path(const struct store *s, const char *name, char *path, size_t cap)
{
	return (size_t)snprintf(path, cap, "%s/%s", s->state_dir, name) < cap ? 0 : KMS_E_IO;
}

/* A state directory made before the secrets moved into the settings holds NAME as a 0600 file:
 * seal it into the settings once (tokens signed with it keep working), then destroy the file.
 * KMS_E_KEY_NOT_FOUND: no file. */
static int store_secret_file_move(struct store *s, const char *name, const char *meta_name,
				  const char *label, uint8_t out[32])
{
	char path[4096], why[4600];
	bool added = false;
	int r;

	if (store_shared(s))
		return KMS_E_KEY_NOT_FOUND; /* a shared store never had the file */
	if ((r = store_secret_file_path(s, name, path, sizeof(path))) < 0 ||
	    (r = store_secret_file_read(path, out, why, sizeof(why))) < 0)
		return r;
	/* Durable in the settings (the backend's contract) before the file goes. */
	r = store_secret_meta_add(s, meta_name, label, out, &added);
	if (r == 0 && !added) /* moved by another process meanwhile: the same secret */
		r = store_secret_meta_read(s, meta_name, label, out);
	if (r < 0) {
		kms_wipe(out, 32);
		return r;
	}
	store_secret_file_drop(s, path);
	return 0;
}

/* The file of a secret the settings hold, left by a move that was killed (or failed) before
 * it was destroyed: destroyed once it is seen to hold that very secret (never another one: a
 * store on a backup file shares the state directory of the store it is restored into). */
static void store_secret_file_leftover(struct store *s, const char *name, const uint8_t secret[32])
{
	char path[4096], why[4600];
	uint8_t *file = NULL;

	if (store_shared(s) || store_secret_file_path(s, name, path, sizeof(path)) < 0 ||
	    access(path, F_OK) != 0 || !(file = kms_secret_alloc(32)))
		return;
	if (store_secret_file_read(path, file, why, sizeof(why)) == 0 &&
	    core_equal(file, secret, 32))
		store_secret_file_drop(s, path);
	kms_secret_free(file, 32);
}

int store_state_secret_get(struct store *s, const char *name, uint8_t out[32])
{
	char meta_name[STORE_SECRET_SETTING_MAX], label[STORE_SECRET_LABEL_MAX];
	int r = store_secret_setting(name, meta_name, label);

	if (r == 0)
		r = store_secret_meta_read(s, meta_name, label, out);
	if (r == 0)
		store_secret_file_leftover(s, name, out);
	else if (r == KMS_E_KEY_NOT_FOUND)
		r = store_secret_file_move(s, name, meta_name, label, out);
	return r;
}

int store_state_secret_keep(struct store *s, const char *name, const uint8_t value[32])
{
	char meta_name[STORE_SECRET_SETTING_MAX], label[STORE_SECRET_LABEL_MAX];
	bool added = false;
	int r = store_secret_setting(name, meta_name, label);

	return r == 0 ? store_secret_meta_add(s, meta_name, label, value, &added) : r;
}

int store_state_secret(struct store *s, const char *name, uint8_t out[32])
{
	char meta_name[STORE_SECRET_SETTING_MAX], label[STORE_SECRET_LABEL_MAX];
	bool added = false;
	int r = store_state_secret_get(s, name, out);

	if (r != KMS_E_KEY_NOT_FOUND)
		return r;
	if ((r = store_secret_setting(name, meta_name, label)) < 0 ||
	    (r = core_random_secret(out, 32)) < 0)
		return r;
	r = store_secret_meta_add(s, meta_name, label, out, &added);
	if (r == 0 && !added) /* another process or host was first: use its secret */
		r = store_secret_meta_read(s, meta_name, label, out);
	if (r < 0)
		kms_wipe(out, 32);
	return r;
}

/* What messages call the store: the key database in the state directory, or a shared store by
 * its hosts and database (never a password). */
static void store_where(const struct store *s, char *out, size_t cap)
{
	char shown[512];

	if (!s->ops->shared) {
		snprintf(out, cap, "the key database in '%.300s'", s->state_dir);
		return;
	}
	store_uri_describe(s->backend_uri, shown, sizeof(shown));
	snprintf(out, cap, "the key store %s", shown);
}

/* A root key in a token: record its URI (no PIN value) in meta "root_location", so tools and
 * daemons started without --root-key / root_key= find it. A file root records nothing (the
 * default is the state directory's root.key). */
static int store_root_record(struct store *s, const char *location, const char *recorded,
			     bool read_only, char *why, size_t why_len, const char *where)
{
	char shown[1024];
	int r;

	if (read_only || !store_root_location_is_pkcs11(location))
		return 0;
	store_root_describe(s->root, shown, sizeof(shown));
	if (strcmp(shown, recorded) == 0)
		return 0;
	r = s->ops->meta_set(s->be, "root_location", shown);
	if (r < 0)
		snprintf(why, why_len, "cannot write to %s", where);
	return r;
}

/* Open the root key (creating it only where no key was ever sealed) and refuse one whose check
 * value is not the one the store recorded. */
static int store_load_root(struct store *s, const struct store_options *opt, char *why,
			   size_t why_len)
{
	char check[2 * CORE_SHA256_BYTES + 1], stored[128], where[600], shown[1024];
	char recorded[1024];
	struct store_root_params rp = { opt->root_key, opt->pkcs11_module, opt->pkcs11_pin_file,
					false, s->state_dir };
	bool have_check = false, found = false;
	int r;

	store_where(s, where, sizeof(where));
	if ((r = s->ops->meta_get(s->be, "root_check", stored, sizeof(stored), &have_check)) < 0) {
		snprintf(why, why_len, "cannot read %s", where);
		return r;
	}
	/* Without a location: where the store says its root key is (a token's URI, recorded
	 * below), else the file in the state directory. */
	if (!rp.location && (r = s->ops->meta_get(s->be, "root_location", recorded,
						  sizeof(recorded), &found)) < 0) {
		snprintf(why, why_len, "cannot read %s", where);
		return r;
	}
	if (!rp.location && found && *recorded)
		rp.location = recorded;
	/* Never a new root key over keys sealed under another. */
	rp.create = opt->create && !opt->read_only && !have_check;
	r = store_root_open(&rp, &s->root, NULL, why, why_len);
	if (r == KMS_E_KEY_NOT_FOUND && store_root_location_is_pkcs11(rp.location)) {
		if (have_check) {
			char said[1024];

			snprintf(said, sizeof(said), "%s", why);
			snprintf(
				why, why_len,
				"%.600s, but %s holds keys sealed under it; make the token holding "
				"it available (kmsfs never creates a new root key over existing "
				"keys)",
				said, where);
		}
		return KMS_E_IO;
	}
	if (r == KMS_E_KEY_NOT_FOUND) {
		char path[4096];

		if (opt->root_key)
			snprintf(path, sizeof(path), "%s", opt->root_key);
		else
			snprintf(path, sizeof(path), "%s/root.key", s->state_dir);
		if (have_check)
			snprintf(why, why_len,
				 "root key '%.300s' is missing, but %s holds keys sealed under it; "
				 "%s (kmsfs never creates a new root key over existing keys)",
				 path, where,
				 s->ops->shared ? "copy root.key (mode 0600) from a host that "
						  "serves this store"
						: "restore root.key from your backup");
		else
			snprintf(why, why_len, "root key '%.300s' does not exist", path);
		return KMS_E_IO;
	}
	if (r < 0)
		return r;
	store_root_describe(s->root, shown, sizeof(shown));
	if ((r = store_root_check(s->root, check)) < 0) {
		snprintf(why, why_len, "cannot use root key '%.300s'", shown);
		return r;
	}
	if (have_check) {
		if (strlen(stored) != strlen(check) || !core_equal(stored, check, strlen(check))) {
			snprintf(why, why_len,
				 "root key '%.300s' does not match %s: it is not the key these "
				 "keys were sealed with; restore the right root.key",
				 shown, where);
			return KMS_E_IO;
		}
		return store_root_record(s, rp.location, found ? recorded : "", opt->read_only, why,
					 why_len, where);
	}
	if (opt->read_only)
		return 0;
	r = s->ops->meta_set(s->be, "root_check", check);
	if (r == 0)
		return store_root_record(s, rp.location, found ? recorded : "", false, why, why_len,
					 where);
	snprintf(why, why_len, "cannot write to %s", where);
	return r;
}

static int store_load_identity(struct store *s, const struct store_options *opt)
{
	bool found = false;
	uint8_t raw[16];
	int r;

	r = s->ops->meta_get(s->be, "domain_id", s->domain_id, sizeof(s->domain_id), &found);
	if (r < 0)
		return r;
	if (!found) {
		if ((r = core_random(raw, sizeof(raw))) < 0)
			return r;
		kms_hex_encode(raw, sizeof(raw), s->domain_id);
		for (char *p = s->domain_id; *p; p++)
			if (*p >= 'A' && *p <= 'F')
				*p = (char)(*p - 'A' + 'a');
		if (!opt->read_only && (r = s->ops->meta_set(s->be, "domain_id", s->domain_id)) < 0)
			return r;
	}
	if ((r = s->ops->meta_get(s->be, "region", s->region, sizeof(s->region), &found)) < 0)
		return r;
	if (opt->region && (!found || strcmp(opt->region, s->region) != 0)) {
		snprintf(s->region, sizeof(s->region), "%s", opt->region);
		if (!opt->read_only && (r = s->ops->meta_set(s->be, "region", s->region)) < 0)
			return r;
	} else if (!found) {
		snprintf(s->region, sizeof(s->region), "%s", STORE_DEFAULT_REGION);
	}
	return 0;
}

int store_state_dir_prepare(const char *dir, bool create, bool read_only, char *why, size_t why_len)
{
	struct stat st;

	if (!dir || !*dir) {
		snprintf(why, why_len, "no state directory given (-o state=DIR)");
		return KMS_E_IO;
	}
	if (create && !read_only && mkdir(dir, 0700) != 0 && errno != EEXIST) {
		snprintf(why, why_len, "cannot create state directory '%.300s': %s", dir,
			 strerror(errno));
		return errno == ENOSPC ? KMS_E_NOSPACE : KMS_E_IO;
	}
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		snprintf(why, why_len,
			 "state directory '%.300s' does not exist or is not a directory%s", dir,
			 create ? "" : " (kmsctl --state DIR init creates one)");
		return KMS_E_IO;
	}
	/* It holds the root key: it must be ours (another owner could swap the files under us)
	 * and closed to everyone else. */
	if (st.st_uid != geteuid()) {
		snprintf(
			why, why_len,
			"state directory '%.300s' belongs to uid %u, not to uid %u that runs this; "
			"chown it or choose another directory",
			dir, (unsigned)st.st_uid, (unsigned)geteuid());
		return KMS_E_IO;
	}
	if ((st.st_mode & 077) && (read_only || chmod(dir, 0700) != 0)) {
		snprintf(
			why, why_len,
			"state directory '%.300s' is open to other users (mode %04o) and could not "
			"be made 0700",
			dir, (unsigned)(st.st_mode & 07777));
		return KMS_E_IO;
	}
	return 0;
}

/* The backends, by the scheme of store_options.backend (a scheme ending in "://" is a prefix,
 * another what comes before the first ':'); the first is the default. A libpq keyword string ("host=...
 * dbname=...") has no scheme: a value with '=' is PostgreSQL's. */
static const struct {
	const char *scheme;
	const struct store_backend_ops *ops;
} store_backends[] = {
	{ "sqlite", &store_sqlite_ops },
	{ "postgresql://", &store_pg_ops },
	{ "postgres://", &store_pg_ops },
};

static const struct store_backend_ops *store_backend_find(const char *uri)
{
	if (!uri)
		return store_backends[0].ops;
	for (size_t i = 0; i < KMS_ARRAY_SIZE(store_backends); i++) {
		const char *scheme = store_backends[i].scheme;
		size_t n = strlen(scheme);
		bool prefix = n > 3 && strcmp(scheme + n - 3, "://") == 0;

		if (strncmp(uri, scheme, n) == 0 && (prefix || uri[n] == 0 || uri[n] == ':'))
			return store_backends[i].ops;
	}
	return strchr(uri, '=') ? &store_pg_ops : NULL;
}

/* store_options.root_key as the store keeps it: without a PIN value (the root holds its PIN in
 * the secure heap, and nothing else may name one: a rotation names its next root after it). */
static char *store_root_option_keep(const char *root_key)
{
	size_t cap = strlen(root_key) + 1;
	char *out = malloc(cap);

	if (out && !store_root_location_shown(root_key, out, cap)) {
		free(out);
		out = NULL;
	}
	return out;
}

int store_open(const struct store_options *opt, struct store **out, char *why, size_t why_len)
{
	struct store *s;
	int r;

	*out = NULL;
	snprintf(why, why_len, "unknown error");
	if ((r = core_init()) < 0) {
		snprintf(why, why_len, "OpenSSL does not offer AES-256-GCM and SHA-256");
		return r;
	}
	if ((r = store_state_dir_prepare(opt->state_dir, opt->create, opt->read_only, why,
					 why_len)) < 0)
		return r;
	s = calloc(1, sizeof(*s));
	if (!s)
		return KMS_E_NOMEM;
	snprintf(s->state_dir, sizeof(s->state_dir), "%s", opt->state_dir);
	pthread_rwlock_init(&s->cache_lock, NULL);
	pthread_mutex_init(&s->update_lock, NULL);
	pthread_mutex_init(&s->refresh_lock, NULL);
	pthread_rwlock_init(&s->policy_lock, NULL);
	pthread_rwlock_init(&s->root_lock, NULL);
	if ((opt->root_key && !(s->root_option = store_root_option_keep(opt->root_key))) ||
	    (opt->pkcs11_module && !(s->pkcs11_module = strdup(opt->pkcs11_module))) ||
	    (opt->pkcs11_pin_file && !(s->pkcs11_pin_file = strdup(opt->pkcs11_pin_file)))) {
		r = KMS_E_NOMEM;
		goto fail;
	}
	s->cache_limit = opt->key_cache ? opt->key_cache : STORE_DEFAULT_KEY_CACHE;
	s->timeout_ms = opt->timeout_ms ? opt->timeout_ms : STORE_DEFAULT_TIMEOUT_MS;
	s->offline_grace_ms = opt->offline_grace_ms > 0 ? opt->offline_grace_ms : 0;
	s->nbuckets = 1024;
	s->buckets = calloc(s->nbuckets, sizeof(*s->buckets));
	if (!s->buckets) {
		r = KMS_E_NOMEM;
		goto fail;
	}
	if (!(s->ops = store_backend_find(opt->backend))) {
		char shown[512];

		store_uri_describe(opt->backend, shown, sizeof(shown));
		snprintf(why, why_len,
			 "unknown key store '%.100s' (kmsfs knows: sqlite, postgresql://..., "
			 "postgres://..., a libpq keyword string)",
			 shown);
		r = KMS_E_IO;
		goto fail;
	}
	if (opt->backend && !(s->backend_uri = strdup(opt->backend))) {
		r = KMS_E_NOMEM;
		goto fail;
	}
	{
		struct store_backend_params bp = { s->state_dir, s->backend_uri, opt->create,
						   opt->read_only, s->timeout_ms };

		r = s->ops->open(&bp, &s->be, why, why_len);
	}
	if (r < 0)
		goto fail;
	r = store_load_root(s, opt, why, why_len);
	if ((r = store_roots_open(s, r, why, why_len)) < 0)
		goto fail;
	if ((r = store_load_identity(s, opt)) < 0 || (r = store_fresh_start(s)) < 0 ||
	    (r = store_policy_load(s)) < 0) {
		char where[600];

		store_where(s, where, sizeof(where));
		snprintf(why, why_len, "cannot read or write %s", where);
		goto fail;
	}
	*out = s;
	return 0;
fail:
	store_close(s);
	return r;
}

int store_open_hardened(const struct store_options *opt, size_t secure_heap_bytes, bool lock_memory,
			struct kms_harden_report *hr, struct store **out, char *why, size_t why_len)
{
	kms_harden_process(secure_heap_bytes, lock_memory, hr);
	return store_open(opt, out, why, why_len);
}

bool store_root_key_secure(const struct store *s)
{
	return s && store_root_secure(s->root);
}

bool store_root_watch(struct store *s, struct store_root_status *out)
{
	(void)store_root_poll(s->root);
	store_root_status(s->root, out);
	return out->available;
}

void store_detach(struct store *s)
{
	if (s->be)
		s->ops->close(s->be);
	s->be = NULL;
}

int store_reopen(struct store *s, char *why, size_t why_len)
{
	struct store_backend *be = NULL;
	int r;

	store_detach(s);
	{
		struct store_backend_params bp = { s->state_dir, s->backend_uri, false, false,
						   s->timeout_ms };

		r = s->ops->open(&bp, &be, why, why_len);
	}

	if (r < 0)
		return r;
	s->be = be;
	s->data_version = 0;
	/* A token's sessions do not cross fork() either (the roots of a rotation too). */
	r = store_root_reconnect(s->root, why, why_len);
	if (r == 0)
		r = store_root_reconnect(s->next_root, why, why_len);
	return r == 0 ? store_root_reconnect(s->old_root, why, why_len) : r;
}

void store_close(struct store *s)
{
	if (!s)
		return;
	for (size_t i = 0; s->buckets && i < s->nbuckets; i++) {
		struct store_entry *e = s->buckets[i], *next;

		for (; e; e = next) {
			next = e->next;
			store_key_release(e->key);
			free(e);
		}
	}
	free(s->buckets);
	if (s->be)
		s->ops->close(s->be);
	store_root_close(s->root);
	store_root_close(s->next_root);
	store_root_close(s->old_root);
	pthread_rwlock_destroy(&s->root_lock);
	free(s->root_option);
	free(s->pkcs11_module);
	free(s->pkcs11_pin_file);
	pthread_rwlock_destroy(&s->cache_lock);
	pthread_mutex_destroy(&s->update_lock);
	pthread_mutex_destroy(&s->refresh_lock);
	store_policy_free(&s->policy);
	pthread_rwlock_destroy(&s->policy_lock);
	kms_free_string_wiped(s->backend_uri); /* may hold the database password */
	free(s);
}

const char *store_domain_id(const struct store *s)
{
	return s->domain_id;
}

const char *store_region(const struct store *s)
{
	return s->region;
}

const char *store_state_dir(const struct store *s)
{
	return s->state_dir;
}

int store_seal_opaque(struct store *s, const char *label, const uint8_t *in, size_t n, uint8_t *out,
		      size_t cap, size_t *out_len)
{
	return store_roots_seal_opaque(s, label, in, n, out, cap, out_len);
}

/* Whatever does not unseal is KMS_E_DECRYPT_FAILED, unless the root cannot be reached. */
int store_unseal_opaque(struct store *s, const char *label, const uint8_t *in, size_t n,
			uint8_t *out, size_t cap, size_t *out_len)
{
	int r = store_roots_unseal_opaque(s, label, in, n, out, cap, out_len);

	if (r < 0 && r != KMS_E_STORE_UNAVAILABLE)
		r = KMS_E_DECRYPT_FAILED;
	return r;
}
