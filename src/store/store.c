/* The store front end: state directory, root key, sealing, and the snapshot cache.
 *
 * The cache maps key_id -> immutable snapshot. The hot path (a data-key request) takes a read
 * lock, bumps a reference and leaves: no database read once a key has been used. */
#include "kms_store.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <uuid/uuid.h>

#include "common/kms_err.h"
#include "common/kms_hex.h"
#include "common/kms_secmem.h"
#include "store_backend.h"
#include "common/kms_time.h"

#define STORE_ROOT_CHECK_LABEL "kmsfs root key check v1"
/* Labels of keys derived from the root key (HMAC-SHA-256(root, label)): never the root key
 * itself for anything but key material, so no two uses share a key. */
#define STORE_OPAQUE_KEY_LABEL "kmsfs opaque seal key v1"
#define STORE_IMPORT_DIGEST_LABEL "kmsfs import digest key v1"
#define STORE_DEFAULT_REGION "eu-de"
/* Token ids: 16 hex digits (kms_auth.h, AUTH_TOKEN_ID_LEN; the store does not include auth). */
#define STORE_TOKEN_ID_HEX 16u

struct store_entry {
	struct store_key *key;
	struct store_entry *next;
};

struct store_policy_project {
	char project[KMS_MAX_PROJECT_ID + 1];
	struct store_project_policy p;
};

struct store_policy_binding {
	char project[KMS_MAX_PROJECT_ID + 1];
	int kind;
	uint32_t id;
	int role;
};

struct store_policy {
	struct store_policy_project *projects;
	size_t nprojects;
	struct store_policy_binding *binds;
	size_t nbinds;
	char (*revoked)[17];
	size_t nrevoked;
	/* Rows that could not be read fail closed: their project is refused (all projects when
	 * the row names none we can tell); an unreadable token row revokes that token. */
	char (*refused)[KMS_MAX_PROJECT_ID + 1];
	size_t nrefused;
	bool refuse_all;
	size_t unreadable;
	char first_unreadable[128];
};

struct store {
	const struct store_backend_ops *ops;
	struct store_backend *be;
	char state_dir[2048];
	uint8_t *root_key; /* CORE_KEY_BYTES, secure heap */
	char domain_id[33];
	char region[64];
	pthread_rwlock_t cache_lock;
	pthread_mutex_t update_lock; /* serialises changes to keys */
	int64_t data_version;
	pthread_rwlock_t policy_lock;
	struct store_policy policy;
	struct store_entry **buckets;
	size_t nbuckets;
	size_t nentries;
	bool wipe_pending; /* deleted material may still be in the database files (update_lock) */
};

static int store_policy_load(struct store *s);
static void store_policy_free(struct store_policy *p);

bool store_project_id_valid(const char *p)
{
	size_t n = 0;

	if (!p)
		return false;
	for (; p[n]; n++) {
		char c = p[n];

		if (n >= KMS_MAX_PROJECT_ID)
			return false;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-'))
			return false;
	}
	return n > 0;
}

/* Write a new secret file: O_EXCL so two starters can never both create one, fsync file and dir. */
static int store_create_secret_file(const char *dir, const char *path, uint8_t out[32])
{
	int fd, dfd, r;

	if ((r = core_random_secret(out, 32)) < 0)
		return r;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return errno == ENOSPC ? KMS_E_NOSPACE : KMS_E_IO;
	if (write(fd, out, 32) != 32 || fsync(fd) != 0) {
		r = errno == ENOSPC ? KMS_E_NOSPACE : KMS_E_IO;
		close(fd);
		unlink(path);
		return r;
	}
	close(fd);
	/* The name must be durable before any key is sealed under this secret. */
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fsync(dfd) != 0) {
		if (dfd >= 0)
			close(dfd);
		unlink(path);
		return KMS_E_IO;
	}
	close(dfd);
	return 0;
}

/* 0 and the secret; KMS_E_KEY_NOT_FOUND if absent; KMS_E_IO with why if unusable. */
static int store_read_secret_file(const char *path, uint8_t out[32], char *why, size_t why_len)
{
	struct stat st;
	uint8_t extra;
	ssize_t n;
	int fd, r = KMS_E_IO;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		if (errno == ENOENT)
			return KMS_E_KEY_NOT_FOUND;
		snprintf(why, why_len, "cannot read '%.300s': %s", path, strerror(errno));
		return KMS_E_IO;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		snprintf(why, why_len, "'%.300s' is not a regular file", path);
		goto out;
	}
	if (st.st_mode & 0077) {
		snprintf(why, why_len,
			 "'%.300s' is accessible to other users (mode %04o); run 'chmod 600 %s'", path,
			 (unsigned)(st.st_mode & 07777), path);
		goto out;
	}
	n = read(fd, out, 32);
	if (n != 32 || read(fd, &extra, 1) != 0) {
		snprintf(why, why_len, "'%.300s' must hold exactly 32 bytes; it is damaged or not a "
				       "kmsfs key file", path);
		kms_wipe(out, 32);
		goto out;
	}
	r = 0;
out:
	close(fd);
	return r;
}

int store_state_secret(struct store *s, const char *name, uint8_t out[32])
{
	char path[4096], why[4600];
	int r;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", s->state_dir, name) >= sizeof(path))
		return KMS_E_IO;
	r = store_read_secret_file(path, out, why, sizeof(why));
	if (r == KMS_E_KEY_NOT_FOUND) {
		r = store_create_secret_file(s->state_dir, path, out);
		if (r == KMS_E_IO && errno == EEXIST)
			r = store_read_secret_file(path, out, why, sizeof(why));
	}
	return r;
}

static void store_root_check(const uint8_t *root, char out[2 * CORE_SHA256_BYTES + 1])
{
	uint8_t mac[CORE_SHA256_BYTES];

	if (core_hmac_sha256(root, CORE_KEY_BYTES, STORE_ROOT_CHECK_LABEL,
			     strlen(STORE_ROOT_CHECK_LABEL), mac) < 0)
		memset(mac, 0, sizeof(mac));
	kms_hex_encode(mac, sizeof(mac), out);
}

static int store_load_root(struct store *s, const struct store_options *opt, char *why,
			   size_t why_len)
{
	char path[4096], check[2 * CORE_SHA256_BYTES + 1], stored[128];
	bool have_check = false;
	int r;

	if (opt->root_key_file)
		snprintf(path, sizeof(path), "%s", opt->root_key_file);
	else if ((size_t)snprintf(path, sizeof(path), "%s/root.key", s->state_dir) >= sizeof(path))
		return KMS_E_IO;
	if ((r = s->ops->meta_get(s->be, "root_check", stored, sizeof(stored), &have_check)) < 0) {
		snprintf(why, why_len, "cannot read the key database in '%.300s'", s->state_dir);
		return r;
	}
	s->root_key = kms_secret_alloc(CORE_KEY_BYTES);
	if (!s->root_key)
		return KMS_E_NOMEM;
	r = store_read_secret_file(path, s->root_key, why, why_len);
	if (r == KMS_E_KEY_NOT_FOUND) {
		if (have_check) {
			snprintf(why, why_len,
				 "root key '%.300s' is missing, but the key database in '%.300s' holds keys "
				 "sealed under it; restore root.key from your backup (kmsfs never "
				 "creates a new root key over existing keys)",
				 path, s->state_dir);
			return KMS_E_IO;
		}
		if (!opt->create || opt->read_only) {
			snprintf(why, why_len, "root key '%.300s' does not exist", path);
			return KMS_E_IO;
		}
		r = store_create_secret_file(s->state_dir, path, s->root_key);
		if (r < 0) {
			snprintf(why, why_len, "cannot create root key '%.300s': %s", path,
				 strerror(errno));
			return r;
		}
	} else if (r < 0) {
		return r;
	}
	store_root_check(s->root_key, check);
	if (have_check) {
		if (strlen(stored) != strlen(check) || !core_equal(stored, check, strlen(check))) {
			snprintf(why, why_len,
				 "root key '%.300s' does not match the key database in '%.300s': it is not "
				 "the key these keys were sealed with; restore the right root.key",
				 path, s->state_dir);
			return KMS_E_IO;
		}
		return 0;
	}
	if (opt->read_only)
		return 0;
	r = s->ops->meta_set(s->be, "root_check", check);
	if (r < 0)
		snprintf(why, why_len, "cannot write to the key database in '%.300s'", s->state_dir);
	return r;
}

static int store_load_identity(struct store *s, const struct store_options *opt)
{
	bool found = false;
	uint8_t raw[16];
	int r;

	if ((r = s->ops->meta_get(s->be, "domain_id", s->domain_id, sizeof(s->domain_id),
				  &found)) < 0)
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

/* token rows: name = id, value = "project|user|role|expiry|issued_ms|revoked" */
static int store_token_parse(const char *id, const char *value, struct store_token_info *t)
{
	long long exp, issued;
	int revoked;

	memset(t, 0, sizeof(*t));
	snprintf(t->id, sizeof(t->id), "%s", id);
	if (sscanf(value, "%64[^|]|%64[^|]|%7[^|]|%lld|%lld|%d", t->project, t->user, t->role,
		   &exp, &issued, &revoked) != 6)
		return KMS_E_IO;
	t->expiry = exp;
	t->issued_ms = issued;
	t->revoked = revoked != 0;
	return 0;
}

static void store_policy_free(struct store_policy *p)
{
	free(p->projects);
	free(p->binds);
	free(p->revoked);
	free(p->refused);
	memset(p, 0, sizeof(*p));
}

/* Note an unreadable row: its project (or, if it names none, every project) is refused. */
static int store_policy_unreadable_row(struct store_policy *p, const char *project,
				       const char *what)
{
	void *n;

	if (p->unreadable++ == 0)
		snprintf(p->first_unreadable, sizeof(p->first_unreadable), "%s", what);
	if (!project || !store_project_id_valid(project)) {
		p->refuse_all = true;
		return 0;
	}
	n = realloc(p->refused, (p->nrefused + 1) * sizeof(*p->refused));
	if (!n)
		return KMS_E_NOMEM;
	p->refused = n;
	snprintf(p->refused[p->nrefused++], sizeof(*p->refused), "%s", project);
	return 0;
}

/* "OWNER GROUP MODE PLAINTEXT_MODE" (decimal ids, octal modes up to 07777), nothing else. */
static bool store_project_value_parse(const char *value, struct store_project_policy *out)
{
	int end = -1;

	if (value[0] < '0' || value[0] > '9') /* no sign, no blank before the owner */
		return false;
	if (sscanf(value, "%u %u %o %o%n", &out->owner, &out->group, &out->mode,
		   &out->plaintext_mode, &end) != 4)
		return false;
	return end > 0 && value[end] == 0 && out->mode <= 07777 && out->plaintext_mode <= 07777;
}

/* name "PROJECT|uid|ID" or "PROJECT|gid|ID", value a role 1..3, nothing else. */
static bool store_binding_parse(const char *name, const char *value,
				struct store_policy_binding *e)
{
	char kindname[8];
	int end = -1;

	if (sscanf(name, "%64[^|]|%3[a-z]|%u%n", e->project, kindname, &e->id, &end) != 3 ||
	    end < 0 || name[end] != 0 || !store_project_id_valid(e->project))
		return false;
	if (strcmp(kindname, "uid") == 0)
		e->kind = STORE_BIND_UID;
	else if (strcmp(kindname, "gid") == 0)
		e->kind = STORE_BIND_GID;
	else
		return false;
	if (value[0] < '1' || value[0] > '3' || value[1] != 0)
		return false;
	e->role = value[0] - '0';
	return true;
}

/* The project a binding row's name starts with, if any. */
static const char *store_binding_project(const char *name, char out[KMS_MAX_PROJECT_ID + 1])
{
	const char *bar = strchr(name, '|');
	size_t n = bar ? (size_t)(bar - name) : 0;

	if (n == 0 || n > KMS_MAX_PROJECT_ID)
		return NULL;
	memcpy(out, name, n);
	out[n] = 0;
	return store_project_id_valid(out) ? out : NULL;
}

static int store_policy_revoke(struct store_policy *p, const char *id)
{
	void *n = realloc(p->revoked, (p->nrevoked + 1) * sizeof(*p->revoked));

	if (!n)
		return KMS_E_NOMEM;
	p->revoked = n;
	snprintf(p->revoked[p->nrevoked++], sizeof(*p->revoked), "%s", id);
	return 0;
}

static int store_policy_token_row(struct store_policy *p, const char *name, const char *value)
{
	struct store_token_info t;
	char what[128];

	if (strlen(name) != STORE_TOKEN_ID_HEX || !kms_is_hex(name, STORE_TOKEN_ID_HEX)) {
		/* Whose revocation this was is lost: no token can be trusted. */
		snprintf(what, sizeof(what), "a token row named '%.32s' (every project refused)",
			 name);
		return store_policy_unreadable_row(p, NULL, what);
	}
	if (store_token_parse(name, value, &t) == 0)
		return t.revoked ? store_policy_revoke(p, t.id) : 0;
	/* Whether it was revoked is lost: it is. */
	if (p->unreadable++ == 0)
		snprintf(p->first_unreadable, sizeof(p->first_unreadable),
			 "token '%s' (counted as revoked)", name);
	return store_policy_revoke(p, name);
}

static int store_policy_row(const char *kind, const char *name, const char *value, void *arg)
{
	struct store_policy *p = arg;
	char what[128], project[KMS_MAX_PROJECT_ID + 1];
	void *n;

	if (strcmp(kind, "project") == 0) {
		struct store_policy_project e = { 0 };

		snprintf(what, sizeof(what), "project '%.64s' (refused: modes 0, KMS.0102)", name);
		if (!store_project_id_valid(name) || !store_project_value_parse(value, &e.p))
			return store_policy_unreadable_row(p, name, what);
		n = realloc(p->projects, (p->nprojects + 1) * sizeof(e));
		if (!n)
			return KMS_E_NOMEM;
		p->projects = n;
		snprintf(e.project, sizeof(e.project), "%s", name);
		p->projects[p->nprojects++] = e;
	} else if (strcmp(kind, "bind") == 0) {
		struct store_policy_binding e = { 0 };

		if (!store_binding_parse(name, value, &e)) {
			const char *proj = store_binding_project(name, project);

			snprintf(what, sizeof(what), "a binding of project '%.64s' (%s refused)",
				 proj ? proj : "?", proj ? "project" : "every project");
			return store_policy_unreadable_row(p, proj, what);
		}
		n = realloc(p->binds, (p->nbinds + 1) * sizeof(e));
		if (!n)
			return KMS_E_NOMEM;
		p->binds = n;
		p->binds[p->nbinds++] = e;
	} else if (strcmp(kind, "token") == 0) {
		return store_policy_token_row(p, name, value);
	}
	return 0; /* a kind of a later version: not ours to judge */
}

static int store_policy_load(struct store *s)
{
	struct store_policy fresh = { 0 }, old;
	int r = s->ops->policy_list(s->be, store_policy_row, &fresh);

	if (r < 0) {
		store_policy_free(&fresh);
		return r;
	}
	pthread_rwlock_wrlock(&s->policy_lock);
	old = s->policy;
	s->policy = fresh;
	pthread_rwlock_unlock(&s->policy_lock);
	store_policy_free(&old);
	return 0;
}

int store_state_dir_prepare(const char *dir, bool create, bool read_only, char *why,
			    size_t why_len)
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
		snprintf(why, why_len, "state directory '%.300s' does not exist or is not a directory%s",
			 dir, create ? "" : " (kmsctl --state DIR init creates one)");
		return KMS_E_IO;
	}
	/* It holds the root key: it must be ours (another owner could swap the files under us)
	 * and closed to everyone else. */
	if (st.st_uid != geteuid()) {
		snprintf(why, why_len,
			 "state directory '%.300s' belongs to uid %u, not to uid %u that runs this; "
			 "chown it or choose another directory",
			 dir, (unsigned)st.st_uid, (unsigned)geteuid());
		return KMS_E_IO;
	}
	if ((st.st_mode & 077) && (read_only || chmod(dir, 0700) != 0)) {
		snprintf(why, why_len,
			 "state directory '%.300s' is open to other users (mode %04o) and could not "
			 "be made 0700",
			 dir, (unsigned)(st.st_mode & 07777));
		return KMS_E_IO;
	}
	return 0;
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
	pthread_rwlock_init(&s->policy_lock, NULL);
	s->nbuckets = 1024;
	s->buckets = calloc(s->nbuckets, sizeof(*s->buckets));
	if (!s->buckets) {
		r = KMS_E_NOMEM;
		goto fail;
	}
	s->ops = &store_sqlite_ops;
	r = s->ops->open(s->state_dir, opt->create, opt->read_only, &s->be, why, why_len);
	if (r < 0)
		goto fail;
	if ((r = store_load_root(s, opt, why, why_len)) < 0)
		goto fail;
	if ((r = store_load_identity(s, opt)) < 0 || (r = store_policy_load(s)) < 0) {
		snprintf(why, why_len, "cannot read or write the key database in '%.300s'",
			 s->state_dir);
		goto fail;
	}
	*out = s;
	return 0;
fail:
	store_close(s);
	return r;
}

int store_open_hardened(const struct store_options *opt, size_t secure_heap_bytes,
			bool lock_memory, struct kms_harden_report *hr, struct store **out, char *why,
			size_t why_len)
{
	kms_harden_process(secure_heap_bytes, lock_memory, hr);
	return store_open(opt, out, why, why_len);
}

bool store_root_key_secure(const struct store *s)
{
	return s && kms_secret_is_secure(s->root_key);
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
	r = s->ops->open(s->state_dir, false, false, &be, why, why_len);

	if (r < 0)
		return r;
	s->be = be;
	s->data_version = 0;
	return 0;
}

void store_key_release(struct store_key *k)
{
	if (!k || __atomic_sub_fetch(&k->refs, 1, __ATOMIC_ACQ_REL) > 0)
		return;
	kms_secret_free(k->material, (size_t)k->nversions * CORE_KEY_BYTES);
	free(k);
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
	kms_secret_free(s->root_key, CORE_KEY_BYTES);
	pthread_rwlock_destroy(&s->cache_lock);
	pthread_mutex_destroy(&s->update_lock);
	store_policy_free(&s->policy);
	pthread_rwlock_destroy(&s->policy_lock);
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

int store_project_ensure(struct store *s, const char *project)
{
	if (!store_project_id_valid(project))
		return KMS_E_BAD_URL;
	return s->ops->project_ensure(s->be, project, kms_time_real_ms());
}

int store_project_exists(struct store *s, const char *project, bool *exists)
{
	*exists = false;
	if (!store_project_id_valid(project))
		return 0;
	return s->ops->project_exists(s->be, project, exists);
}

int store_project_list(struct store *s, store_project_cb cb, void *arg)
{
	return s->ops->project_list(s->be, cb, arg);
}

/* AAD of sealed material: the key id and version it belongs to, so sealed blobs can't be swapped. */
static void store_material_aad(const char *key_id, uint32_t version,
			       uint8_t aad[CORE_KEY_ID_BYTES + 4])
{
	memcpy(aad, key_id, CORE_KEY_ID_BYTES);
	aad[CORE_KEY_ID_BYTES] = (uint8_t)version;
	aad[CORE_KEY_ID_BYTES + 1] = (uint8_t)(version >> 8);
	aad[CORE_KEY_ID_BYTES + 2] = (uint8_t)(version >> 16);
	aad[CORE_KEY_ID_BYTES + 3] = (uint8_t)(version >> 24);
}

static int store_unseal_version(const struct store *s, const char *key_id,
				const struct store_sealed_version *v, uint8_t out[CORE_KEY_BYTES])
{
	uint8_t aad[CORE_KEY_ID_BYTES + 4];
	size_t n = 0;
	int r;

	if (strlen(key_id) != CORE_KEY_ID_BYTES)
		return KMS_E_IO;
	store_material_aad(key_id, v->version, aad);
	r = core_unseal(s->root_key, aad, sizeof(aad), v->sealed, v->sealed_len, out,
			CORE_KEY_BYTES, &n);
	if (r < 0 || n != CORE_KEY_BYTES) {
		kms_wipe(out, CORE_KEY_BYTES);
		return KMS_E_IO;
	}
	return 0;
}

struct store_load_ctx {
	const struct store *s;
	struct store_key_meta *meta;
	struct store_sealed_version versions[64];
	size_t n;
};

static int store_collect_version(const struct store_sealed_version *v, void *arg)
{
	struct store_load_ctx *c = arg;

	if (c->n >= KMS_ARRAY_SIZE(c->versions) || v->version != c->n)
		return KMS_E_IO; /* versions must be 0..n-1 with no gaps */
	c->versions[c->n++] = *v;
	return 0;
}

static int store_snapshot_new(const struct store *s, const struct store_key_meta *meta,
			      const struct store_sealed_version *versions, size_t n,
			      struct store_key **out)
{
	struct store_key *k;
	int r;

	*out = NULL;
	/* Only a key awaiting the import of its material may have none. */
	if (n == 0 && strcmp(meta->origin, "external") != 0)
		return KMS_E_IO;
	k = calloc(1, sizeof(*k));
	if (!k)
		return KMS_E_NOMEM;
	k->meta = *meta;
	k->meta.has_material = n > 0;
	k->refs = 1;
	if (n == 0) {
		*out = k;
		return 0;
	}
	k->material = kms_secret_alloc(n * CORE_KEY_BYTES);
	if (!k->material) {
		free(k);
		return KMS_E_NOMEM;
	}
	k->nversions = (uint32_t)n;
	for (size_t i = 0; i < n; i++) {
		r = store_unseal_version(s, meta->key_id, &versions[i],
					 k->material + i * CORE_KEY_BYTES);
		if (r < 0) {
			store_key_release(k);
			return r;
		}
	}
	*out = k;
	return 0;
}

static struct store_key *store_cache_find_locked(struct store *s, const char *key_id)
{
	for (struct store_entry *e = s->buckets[(size_t)kms_fnv1a(key_id) % s->nbuckets]; e; e = e->next)
		if (strcmp(e->key->meta.key_id, key_id) == 0)
			return e->key;
	return NULL;
}

static void store_cache_grow_locked(struct store *s)
{
	size_t nb = s->nbuckets * 2;
	struct store_entry **b = calloc(nb, sizeof(*b));

	if (!b)
		return; /* keep the old table: correct, only slower */
	for (size_t i = 0; i < s->nbuckets; i++) {
		struct store_entry *e = s->buckets[i], *next;

		for (; e; e = next) {
			size_t h = (size_t)kms_fnv1a(e->key->meta.key_id) % nb;

			next = e->next;
			e->next = b[h];
			b[h] = e;
		}
	}
	free(s->buckets);
	s->buckets = b;
	s->nbuckets = nb;
}

/* Publish k (taking over the caller's reference); returns the snapshot now cached, referenced. */
static struct store_key *store_cache_publish(struct store *s, struct store_key *k)
{
	struct store_entry *e;
	struct store_key *cur;

	pthread_rwlock_wrlock(&s->cache_lock);
	cur = store_cache_find_locked(s, k->meta.key_id);
	if (cur) {
		/* Someone loaded it first: keep theirs, drop ours. */
		__atomic_add_fetch(&cur->refs, 1, __ATOMIC_RELAXED);
		pthread_rwlock_unlock(&s->cache_lock);
		store_key_release(k);
		return cur;
	}
	e = malloc(sizeof(*e));
	if (e) {
		size_t h;

		if (s->nentries >= s->nbuckets)
			store_cache_grow_locked(s);
		h = (size_t)kms_fnv1a(k->meta.key_id) % s->nbuckets;
		e->key = k;
		e->next = s->buckets[h];
		s->buckets[h] = e;
		s->nentries++;
		__atomic_add_fetch(&k->refs, 1, __ATOMIC_RELAXED); /* the cache's own reference */
	}
	pthread_rwlock_unlock(&s->cache_lock);
	return k;
}

static int store_key_load(struct store *s, const char *project, const char *key_id,
			  const char *alias, struct store_key **out)
{
	struct store_key_meta meta;
	struct store_load_ctx *c;
	struct store_key *k = NULL;
	int r;

	c = calloc(1, sizeof(*c));
	if (!c)
		return KMS_E_NOMEM;
	c->s = s;
	c->meta = &meta;
	r = s->ops->key_load(s->be, project, key_id, alias, &meta, store_collect_version, c);
	if (r >= 0)
		r = store_snapshot_new(s, &meta, c->versions, c->n, &k);
	kms_wipe(c, sizeof(*c));
	free(c);
	if (r < 0)
		return r;
	*out = store_cache_publish(s, k);
	return 0;
}

int store_key_get(struct store *s, const char *project, const char *key_id, struct store_key **out)
{
	struct store_key *k;

	*out = NULL;
	pthread_rwlock_rdlock(&s->cache_lock);
	k = store_cache_find_locked(s, key_id);
	if (k)
		__atomic_add_fetch(&k->refs, 1, __ATOMIC_RELAXED);
	pthread_rwlock_unlock(&s->cache_lock);
	if (!k) {
		int r = store_key_load(s, project, key_id, NULL, &k);

		if (r < 0)
			return r;
	}
	if (strcmp(k->meta.project, project) != 0) {
		store_key_release(k);
		return KMS_E_KEY_NOT_FOUND;
	}
	*out = k;
	return 0;
}

int store_key_get_by_alias(struct store *s, const char *project, const char *alias,
			   struct store_key **out)
{
	*out = NULL;
	return store_key_load(s, project, NULL, alias, out);
}

const uint8_t *store_key_material(const struct store_key *k, uint32_t version)
{
	if (!k || version >= k->nversions)
		return NULL;
	return k->material + (size_t)version * CORE_KEY_BYTES;
}

static void store_new_key_id(char out[KMS_KEY_ID_LEN + 1])
{
	uuid_t u;

	uuid_generate_random(u);
	uuid_unparse_lower(u, out);
}

static int store_key_create_common(struct store *s, const char *project, const char *alias,
				   const char *description, unsigned quota, bool external,
				   struct store_key **out)
{
	struct store_sealed_version v = { 0 };
	struct store_key_meta meta = { 0 };
	uint8_t material[CORE_KEY_BYTES], aad[CORE_KEY_ID_BYTES + 4];
	struct store_key *k = NULL;
	int r;

	*out = NULL;
	if ((r = store_project_ensure(s, project)) < 0)
		return r;
	snprintf(meta.project, sizeof(meta.project), "%s", project);
	store_new_key_id(meta.key_id);
	snprintf(meta.alias, sizeof(meta.alias), "%s", alias);
	snprintf(meta.description, sizeof(meta.description), "%s", description ? description : "");
	snprintf(meta.key_spec, sizeof(meta.key_spec), "AES_256");
	snprintf(meta.key_usage, sizeof(meta.key_usage), "ENCRYPT_DECRYPT");
	snprintf(meta.origin, sizeof(meta.origin), external ? "external" : "kms");
	meta.state = external ? STORE_KEY_PENDING_IMPORT : STORE_KEY_ENABLED;
	meta.creation_ms = kms_time_real_ms();
	meta.rotation_interval_days = 365;
	if (external) {
		if ((r = s->ops->key_insert(s->be, &meta, NULL, quota)) < 0)
			goto out;
		if ((r = store_snapshot_new(s, &meta, NULL, 0, &k)) < 0)
			goto out;
		*out = store_cache_publish(s, k);
		r = 0;
		goto out;
	}
	if ((r = core_random_secret(material, sizeof(material))) < 0)
		goto out;
	store_material_aad(meta.key_id, 0, aad);
	r = core_seal(s->root_key, aad, sizeof(aad), material, sizeof(material), v.sealed,
		      sizeof(v.sealed), &v.sealed_len);
	if (r < 0)
		goto out;
	/* Durable before anyone hears of it. */
	if ((r = s->ops->key_insert(s->be, &meta, &v, quota)) < 0)
		goto out;
	if ((r = store_snapshot_new(s, &meta, &v, 1, &k)) < 0)
		goto out;
	*out = store_cache_publish(s, k);
	r = 0;
out:
	kms_wipe(material, sizeof(material));
	return r;
}

int store_key_create(struct store *s, const char *project, const char *alias,
		     const char *description, unsigned quota, struct store_key **out)
{
	return store_key_create_common(s, project, alias, description, quota, false, out);
}

int store_key_create_external(struct store *s, const char *project, const char *alias,
			      const char *description, unsigned quota, struct store_key **out)
{
	return store_key_create_common(s, project, alias, description, quota, true, out);
}

struct store_list_ctx {
	store_key_cb cb;
	void *arg;
};

static int store_list_forward(const struct store_key_meta *meta, void *arg)
{
	struct store_list_ctx *c = arg;

	return c->cb(meta, c->arg);
}

int store_key_list(struct store *s, const char *project, int state, size_t offset, size_t limit,
		   store_key_cb cb, void *arg, size_t *total)
{
	struct store_list_ctx c = { cb, arg };

	return s->ops->key_list(s->be, project, state, offset, limit, store_list_forward, &c,
				total);
}

int store_key_count(struct store *s, const char *project, size_t *count)
{
	return s->ops->key_count(s->be, project, count);
}

struct store_check_ctx {
	struct store *s;
	struct store_key_meta meta;
	store_check_cb cb;
	void *arg;
	size_t versions;
	size_t bad;
	char last_bad[KMS_KEY_ID_LEN + 1];
};

static int store_check_meta(const struct store_key_meta *meta, void *arg)
{
	struct store_check_ctx *c = arg;

	c->meta = *meta;
	return 0;
}

static int store_check_version(const struct store_sealed_version *v, void *arg)
{
	struct store_check_ctx *c = arg;
	uint8_t material[CORE_KEY_BYTES];
	int r = v->sealed_len ? store_unseal_version(c->s, c->meta.key_id, v, material) : KMS_E_IO;

	kms_wipe(material, sizeof(material));
	c->versions++;
	if (r < 0) {
		if (strcmp(c->last_bad, c->meta.key_id) != 0) {
			c->bad++;
			snprintf(c->last_bad, sizeof(c->last_bad), "%s", c->meta.key_id);
		}
		if (c->cb)
			c->cb(c->meta.project, c->meta.key_id, v->version, r, c->arg);
	}
	return 0;
}

int store_check(struct store *s, store_check_cb cb, void *arg, size_t *versions_checked)
{
	struct store_check_ctx c = { .s = s, .cb = cb, .arg = arg };
	int r = s->ops->key_scan(s->be, store_check_meta, store_check_version, &c);

	*versions_checked = c.versions;
	if (r < 0)
		return r;
	return (int)c.bad;
}

/* Replace (or drop, when k is NULL) the cached snapshot of key_id. Takes over k's reference. */
static void store_cache_replace(struct store *s, const char *key_id, struct store_key *k)
{
	struct store_entry **pp, *e;
	struct store_key *old = NULL;

	pthread_rwlock_wrlock(&s->cache_lock);
	for (pp = &s->buckets[(size_t)kms_fnv1a(key_id) % s->nbuckets]; (e = *pp) != NULL; pp = &e->next)
		if (strcmp(e->key->meta.key_id, key_id) == 0)
			break;
	if (e && k) {
		old = e->key;
		e->key = k;
	} else if (e) {
		old = e->key;
		*pp = e->next;
		free(e);
		s->nentries--;
	} else if (k) {
		e = malloc(sizeof(*e));
		if (e) {
			e->key = k;
			e->next = s->buckets[(size_t)kms_fnv1a(key_id) % s->nbuckets];
			s->buckets[(size_t)kms_fnv1a(key_id) % s->nbuckets] = e;
			s->nentries++;
		} else {
			old = k; /* can't cache: correct, only slower */
		}
	}
	pthread_rwlock_unlock(&s->cache_lock);
	store_key_release(old);
}

static void store_cache_clear(struct store *s)
{
	struct store_entry *dead = NULL;

	pthread_rwlock_wrlock(&s->cache_lock);
	for (size_t i = 0; i < s->nbuckets; i++) {
		while (s->buckets[i]) {
			struct store_entry *e = s->buckets[i];

			s->buckets[i] = e->next;
			e->next = dead;
			dead = e;
		}
	}
	s->nentries = 0;
	pthread_rwlock_unlock(&s->cache_lock);
	while (dead) {
		struct store_entry *next = dead->next;

		store_key_release(dead->key);
		free(dead);
		dead = next;
	}
}

/* A new snapshot with new metadata and the same material. */
static int store_snapshot_with_meta(const struct store_key *cur, const struct store_key_meta *m,
				    struct store_key **out)
{
	struct store_key *k = calloc(1, sizeof(*k));
	size_t n = (size_t)cur->nversions * CORE_KEY_BYTES;

	*out = NULL;
	if (!k)
		return KMS_E_NOMEM;
	k->material = n ? kms_secret_alloc(n) : NULL;
	if (n && !k->material) {
		free(k);
		return KMS_E_NOMEM;
	}
	if (n)
		memcpy(k->material, cur->material, n);
	k->nversions = cur->nversions;
	k->meta = *m;
	k->meta.has_material = cur->nversions > 0;
	k->refs = 1;
	*out = k;
	return 0;
}

static void store_publish_out(struct store *s, struct store_key *k, struct store_key **out)
{
	if (out) {
		__atomic_add_fetch(&k->refs, 1, __ATOMIC_RELAXED);
		*out = k;
	}
	store_cache_replace(s, k->meta.key_id, k);
}

int store_key_modify(struct store *s, const char *project, const char *key_id,
		     store_key_edit_fn edit, void *arg, struct store_key **out)
{
	struct store_key *cur = NULL, *k = NULL;
	struct store_key_meta m;
	int r;

	if (out)
		*out = NULL;
	pthread_mutex_lock(&s->update_lock);
	if ((r = store_key_get(s, project, key_id, &cur)) < 0)
		goto out;
	m = cur->meta;
	m.has_material = cur->nversions > 0;
	if ((r = edit(&m, arg)) < 0)
		goto out;
	if ((r = s->ops->key_update(s->be, &m)) < 0)
		goto out;
	if ((r = store_snapshot_with_meta(cur, &m, &k)) < 0) {
		store_cache_replace(s, key_id, NULL); /* durable but not cached: reload later */
		goto out;
	}
	store_publish_out(s, k, out);
	/* The cache owns k: the analyzer cannot follow the atomic reference count. */
	/* NOLINTNEXTLINE(clang-analyzer-unix.Malloc) */
	r = 0;
out:
	store_key_release(cur);
	pthread_mutex_unlock(&s->update_lock);
	return r;
}

static int store_rotate_locked(struct store *s, struct store_key *cur, int64_t now_ms,
			       struct store_key **out)
{
	struct store_sealed_version v = { 0 };
	uint8_t aad[CORE_KEY_ID_BYTES + 4];
	struct store_key_meta m = cur->meta;
	struct store_key *k = NULL;
	size_t old = (size_t)cur->nversions * CORE_KEY_BYTES;
	int r;

	if (strcmp(cur->meta.origin, "kms") != 0)
		return KMS_E_EXTERNAL_ROTATION; /* imported material never rotates (4.8) */
	if (cur->nversions == 0 || cur->nversions >= 64)
		return KMS_E_BAD_PARAM; /* bounded history: see README, rotation */
	k = calloc(1, sizeof(*k));
	if (!k)
		return KMS_E_NOMEM;
	k->refs = 1;
	k->nversions = cur->nversions + 1;
	k->material = kms_secret_alloc(old + CORE_KEY_BYTES);
	if (!k->material) {
		free(k);
		return KMS_E_NOMEM;
	}
	memcpy(k->material, cur->material, old);
	if ((r = core_random_secret(k->material + old, CORE_KEY_BYTES)) < 0)
		goto fail;
	v.version = cur->nversions;
	store_material_aad(m.key_id, v.version, aad);
	r = core_seal(s->root_key, aad, sizeof(aad), k->material + old, CORE_KEY_BYTES, v.sealed,
		      sizeof(v.sealed), &v.sealed_len);
	if (r < 0)
		goto fail;
	m.current_version = v.version;
	m.rotations++;
	m.last_rotation_ms = now_ms;
	if ((r = s->ops->key_add_version(s->be, &m, &v)) < 0)
		goto fail;
	k->meta = m;
	store_publish_out(s, k, out);
	/* The cache owns k: the analyzer cannot follow the atomic reference count. */
	/* NOLINTNEXTLINE(clang-analyzer-unix.Malloc) */
	return 0;
fail:
	store_key_release(k);
	return r;
}

int store_key_rotate(struct store *s, const char *project, const char *key_id, int64_t now_ms,
		     struct store_key **out)
{
	struct store_key *cur = NULL;
	int r;

	if (out)
		*out = NULL;
	pthread_mutex_lock(&s->update_lock);
	r = store_key_get(s, project, key_id, &cur);
	if (r == 0)
		r = store_rotate_locked(s, cur, now_ms, out);
	store_key_release(cur);
	pthread_mutex_unlock(&s->update_lock);
	return r;
}

/* A 32-byte key derived from the root key for one purpose. */
static int store_derive(const struct store *s, const char *label, uint8_t out[CORE_KEY_BYTES])
{
	return core_hmac_sha256(s->root_key, CORE_KEY_BYTES, label, strlen(label), out);
}

int store_seal_opaque(struct store *s, const char *label, const uint8_t *in, size_t n,
		      uint8_t *out, size_t cap, size_t *out_len)
{
	uint8_t key[CORE_KEY_BYTES];
	int r;

	*out_len = 0;
	if ((r = store_derive(s, STORE_OPAQUE_KEY_LABEL, key)) == 0)
		r = core_seal(key, label, strlen(label), in, n, out, cap, out_len);
	kms_wipe(key, sizeof(key));
	return r;
}

int store_unseal_opaque(struct store *s, const char *label, const uint8_t *in, size_t n,
			uint8_t *out, size_t cap, size_t *out_len)
{
	uint8_t key[CORE_KEY_BYTES];
	int r;

	*out_len = 0;
	if ((r = store_derive(s, STORE_OPAQUE_KEY_LABEL, key)) == 0)
		r = core_unseal(key, label, strlen(label), in, n, out, cap, out_len);
	kms_wipe(key, sizeof(key));
	return r < 0 ? KMS_E_DECRYPT_FAILED : 0;
}

/* HMAC-SHA-256 under a root-derived key over key_id || material. */
static int store_import_digest(const struct store *s, const char *key_id,
			       const uint8_t material[CORE_KEY_BYTES], uint8_t out[32])
{
	uint8_t key[CORE_KEY_BYTES], msg[CORE_KEY_ID_BYTES + CORE_KEY_BYTES];
	int r = KMS_E_INTERNAL;

	if (strlen(key_id) != CORE_KEY_ID_BYTES)
		return KMS_E_INTERNAL;
	memcpy(msg, key_id, CORE_KEY_ID_BYTES);
	memcpy(msg + CORE_KEY_ID_BYTES, material, CORE_KEY_BYTES);
	if ((r = store_derive(s, STORE_IMPORT_DIGEST_LABEL, key)) == 0)
		r = core_hmac_sha256(key, sizeof(key), msg, sizeof(msg), out);
	kms_wipe(key, sizeof(key));
	kms_wipe(msg, sizeof(msg));
	return r;
}

int store_key_import(struct store *s, const char *project, const char *key_id,
		     const uint8_t material[CORE_KEY_BYTES], int64_t expiration_ms,
		     struct store_key **out)
{
	struct store_sealed_version v = { 0 };
	uint8_t aad[CORE_KEY_ID_BYTES + 4], digest[32];
	struct store_key *cur = NULL, *k = NULL;
	struct store_key_meta m;
	int r;

	if (out)
		*out = NULL;
	pthread_mutex_lock(&s->update_lock);
	if ((r = store_key_get(s, project, key_id, &cur)) < 0)
		goto out;
	m = cur->meta;
	if (strcmp(m.origin, "external") != 0) {
		r = KMS_E_EXTERNAL_REQUIRED;
		goto out;
	}
	if (m.state != STORE_KEY_PENDING_IMPORT) {
		r = KMS_E_NOT_PENDING_IMPORT;
		goto out;
	}
	if ((r = store_import_digest(s, m.key_id, material, digest)) < 0)
		goto out;
	if (m.import_digest_set && !core_equal(m.import_digest, digest, sizeof(digest))) {
		r = KMS_E_IMPORT_DIFFERENT;
		goto out;
	}
	memcpy(m.import_digest, digest, sizeof(digest));
	m.import_digest_set = true;
	m.state = STORE_KEY_ENABLED;
	m.expiration_ms = expiration_ms;
	m.current_version = 0;
	v.version = 0;
	store_material_aad(m.key_id, 0, aad);
	r = core_seal(s->root_key, aad, sizeof(aad), material, CORE_KEY_BYTES, v.sealed,
		      sizeof(v.sealed), &v.sealed_len);
	if (r < 0)
		goto out;
	/* Durable before the snapshot is published. */
	if ((r = s->ops->key_replace_material(s->be, &m, &v)) < 0)
		goto out;
	if ((r = store_snapshot_new(s, &m, &v, 1, &k)) < 0) {
		store_cache_replace(s, m.key_id, NULL); /* durable but not cached: reload later */
		goto out;
	}
	store_publish_out(s, k, out);
	/* The cache owns k: the analyzer cannot follow the atomic reference count. */
	/* NOLINTNEXTLINE(clang-analyzer-unix.Malloc) */
	r = 0;
out:
	kms_wipe(digest, sizeof(digest));
	store_key_release(cur);
	pthread_mutex_unlock(&s->update_lock);
	return r;
}

/* After material was deleted (update_lock held): make sure no copy stays in the database files.
 * If another process's reader holds the log, the next sweep tries again. */
static int store_wipe_deleted_locked(struct store *s)
{
	int r = s->ops->wipe_deleted(s->be);

	s->wipe_pending = r < 0;
	return r;
}

/* Drop every material version of an external key (update_lock held): back to state 5, except
 * that a key pending deletion stays so (cancelling it then returns it to state 5). */
static int store_material_clear_locked(struct store *s, const char *project, const char *key_id,
				       struct store_key **out)
{
	struct store_key *cur = NULL, *k = NULL;
	struct store_key_meta m;
	int r;

	if ((r = store_key_get(s, project, key_id, &cur)) < 0)
		return r;
	m = cur->meta;
	if (m.state != STORE_KEY_PENDING_DELETION)
		m.state = STORE_KEY_PENDING_IMPORT;
	m.expiration_ms = 0;
	m.has_material = false;
	if ((r = s->ops->key_replace_material(s->be, &m, NULL)) < 0)
		goto out;
	/* The deletion is done and durable; a copy left in the log is the sweep's to retry. */
	(void)store_wipe_deleted_locked(s);
	if ((r = store_snapshot_new(s, &m, NULL, 0, &k)) < 0) {
		store_cache_replace(s, m.key_id, NULL); /* durable but not cached: reload later */
		goto out;
	}
	store_publish_out(s, k, out);
out:
	/* The cache owns k: the analyzer cannot follow the atomic reference count. */
	/* NOLINTNEXTLINE(clang-analyzer-unix.Malloc) */
	store_key_release(cur);
	return r;
}

int store_key_delete_material(struct store *s, const char *project, const char *key_id,
			      struct store_key **out)
{
	struct store_key *cur = NULL;
	int r;

	if (out)
		*out = NULL;
	pthread_mutex_lock(&s->update_lock);
	if ((r = store_key_get(s, project, key_id, &cur)) < 0)
		goto out;
	if (strcmp(cur->meta.origin, "external") != 0)
		r = KMS_E_EXTERNAL_REQUIRED;
	else if (cur->meta.state != STORE_KEY_ENABLED && cur->meta.state != STORE_KEY_DISABLED)
		r = KMS_E_MATERIAL_STATE;
	else
		r = store_material_clear_locked(s, project, key_id, out);
out:
	store_key_release(cur);
	pthread_mutex_unlock(&s->update_lock);
	return r;
}

struct store_due {
	struct store_key_meta *keys;
	size_t n, cap;
};

static int store_collect_due(const struct store_key_meta *m, void *arg)
{
	struct store_due *d = arg;

	if (d->n == d->cap) {
		size_t ncap = d->cap ? d->cap * 2 : 16;
		struct store_key_meta *p = realloc(d->keys, ncap * sizeof(*p));

		if (!p)
			return KMS_E_NOMEM;
		d->keys = p;
		d->cap = ncap;
	}
	d->keys[d->n++] = *m;
	return 0;
}

int store_sweep(struct store *s, int64_t now_ms, size_t *deleted, size_t *rotated)
{
	struct store_due due = { 0 };
	int r;

	*deleted = *rotated = 0;
	pthread_mutex_lock(&s->update_lock);
	r = s->ops->key_due(s->be, now_ms, store_collect_due, &due);
	/* One key that can't be handled (e.g. at its version limit) must not hold up the rest:
	 * go on, and report the first failure. */
	for (size_t i = 0; i < due.n; i++) {
		const struct store_key_meta *m = &due.keys[i];
		int e;

		if (m->state == STORE_KEY_PENDING_DELETION && m->deletion_ms > 0 &&
		    m->deletion_ms <= now_ms) {
			if ((e = s->ops->key_delete(s->be, m->key_id)) == 0) {
				store_cache_replace(s, m->key_id, NULL);
				(*deleted)++;
				s->wipe_pending = true;
			}
		} else if (strcmp(m->origin, "external") == 0) {
			/* Imported material past its expiration time. */
			e = m->expiration_ms > 0 && m->expiration_ms <= now_ms
				    ? store_material_clear_locked(s, m->project, m->key_id, NULL)
				    : 0;
		} else {
			struct store_key *cur = NULL;

			e = store_key_get(s, m->project, m->key_id, &cur);
			if (e == 0 && cur->nversions >= 64)
				e = 0; /* at the version limit: stays on its last version */
			else if (e == 0)
				e = store_rotate_locked(s, cur, now_ms, NULL);
			if (e == 0 && cur && cur->nversions < 64)
				(*rotated)++;
			store_key_release(cur);
		}
		if (e < 0 && r == 0)
			r = e;
	}
	/* Once for all keys destroyed now, or again for an earlier deletion not yet wiped. */
	if (s->wipe_pending) {
		int e = store_wipe_deleted_locked(s);

		if (e < 0 && r == 0)
			r = e;
	}
	pthread_mutex_unlock(&s->update_lock);
	free(due.keys);
	return r;
}

int store_refresh(struct store *s, bool *changed)
{
	int64_t v = 0;
	int r = s->ops->data_version(s->be, &v);

	*changed = false;
	if (r < 0)
		return r;
	if (v != s->data_version) {
		if (s->data_version != 0) {
			store_cache_clear(s);
			*changed = true;
		}
		s->data_version = v;
		return store_policy_load(s);
	}
	return 0;
}

int store_grant_create(struct store *s, const struct store_grant *g, unsigned max)
{
	return s->ops->grant_insert(s->be, g, max);
}

int store_grant_delete(struct store *s, const char *grant_id)
{
	return s->ops->grant_delete(s->be, grant_id);
}

int store_grant_list(struct store *s, const struct store_grant_filter *f, size_t offset,
		     size_t limit, store_grant_cb cb, void *arg, size_t *total)
{
	return s->ops->grant_list(s->be, f, offset, limit, cb, arg, total);
}

int store_grant_count_max(struct store *s, const char *project, size_t *n)
{
	return s->ops->grant_count_max(s->be, project, n);
}

int store_tag_set(struct store *s, const char *key_id, const char *tag_key,
		  const char *tag_value, unsigned max)
{
	return s->ops->tag_set(s->be, key_id, tag_key, tag_value, max);
}

int store_tag_delete(struct store *s, const char *key_id, const char *tag_key)
{
	return s->ops->tag_delete(s->be, key_id, tag_key);
}

int store_tag_list(struct store *s, const char *project, const char *key_id, store_tag_cb cb,
		   void *arg)
{
	return s->ops->tag_list(s->be, project, key_id, cb, arg);
}

/* policy_lock held. */
static bool store_project_refused_locked(const struct store *s, const char *project)
{
	if (s->policy.refuse_all)
		return true;
	for (size_t i = 0; i < s->policy.nrefused; i++)
		if (strcmp(s->policy.refused[i], project) == 0)
			return true;
	return false;
}

void store_project_policy(struct store *s, const char *project, struct store_project_policy *out)
{
	*out = (struct store_project_policy){ 0, 0, STORE_DEFAULT_PROJECT_MODE,
					      STORE_DEFAULT_PROJECT_MODE & 0666 };
	pthread_rwlock_rdlock(&s->policy_lock);
	for (size_t i = 0; i < s->policy.nprojects; i++)
		if (strcmp(s->policy.projects[i].project, project) == 0)
			*out = s->policy.projects[i].p;
	if (store_project_refused_locked(s, project))
		*out = (struct store_project_policy){ 0, 0, 0, 0 };
	pthread_rwlock_unlock(&s->policy_lock);
}

int store_project_policy_check(struct store *s, const char *project)
{
	bool refused;

	pthread_rwlock_rdlock(&s->policy_lock);
	refused = store_project_refused_locked(s, project);
	pthread_rwlock_unlock(&s->policy_lock);
	return refused ? KMS_E_IO : 0;
}

size_t store_policy_unreadable(struct store *s, char *what, size_t cap)
{
	size_t n;

	pthread_rwlock_rdlock(&s->policy_lock);
	n = s->policy.unreadable;
	if (cap)
		snprintf(what, cap, "%s", n ? s->policy.first_unreadable : "");
	pthread_rwlock_unlock(&s->policy_lock);
	return n;
}

int store_project_policy_set(struct store *s, const char *project,
			     const struct store_project_policy *p)
{
	char value[64];
	int r;

	if (!store_project_id_valid(project) || p->mode > 07777 || p->plaintext_mode > 07777)
		return KMS_E_BAD_PARAM;
	if ((r = store_project_ensure(s, project)) < 0)
		return r;
	snprintf(value, sizeof(value), "%u %u %o %o", p->owner, p->group, p->mode,
		 p->plaintext_mode);
	if ((r = s->ops->policy_set(s->be, "project", project, value)) < 0)
		return r;
	return store_policy_load(s);
}

int store_binding_set(struct store *s, const char *project, enum store_principal kind,
		      uint32_t id, int role)
{
	char name[128], value[8];
	int r;

	if (!store_project_id_valid(project) || role < 0 || role > 3)
		return KMS_E_BAD_PARAM;
	snprintf(name, sizeof(name), "%s|%s|%u", project, kind == STORE_BIND_UID ? "uid" : "gid",
		 id);
	snprintf(value, sizeof(value), "%d", role);
	if (role == 0)
		r = s->ops->policy_delete(s->be, "bind", name);
	else if ((r = store_project_ensure(s, project)) == 0)
		r = s->ops->policy_set(s->be, "bind", name, value);
	return r < 0 ? r : store_policy_load(s);
}

int store_binding_role(struct store *s, const char *project, uint32_t uid, const uint32_t *gids,
		       size_t ngids)
{
	int uid_role = 0, gid_role = 0;

	pthread_rwlock_rdlock(&s->policy_lock);
	/* A project with an unreadable binding gives no role by binding: one of its rows may
	 * have been the uid binding that narrows a group's role. */
	for (size_t i = 0; i < s->policy.nbinds && !store_project_refused_locked(s, project); i++) {
		const struct store_policy_binding *b = &s->policy.binds[i];

		if (strcmp(b->project, project) != 0)
			continue;
		if (b->kind == STORE_BIND_UID && b->id == uid)
			uid_role = b->role;
		for (size_t g = 0; b->kind == STORE_BIND_GID && g < ngids; g++)
			if (b->id == gids[g] && b->role > gid_role)
				gid_role = b->role;
	}
	pthread_rwlock_unlock(&s->policy_lock);
	/* A binding for the uid itself is the more specific one. */
	return uid_role ? uid_role : gid_role;
}

static int store_token_write(struct store *s, const struct store_token_info *t)
{
	char value[256];

	snprintf(value, sizeof(value), "%s|%s|%s|%lld|%lld|%d", t->project, t->user, t->role,
		 (long long)t->expiry, (long long)t->issued_ms, t->revoked ? 1 : 0);
	return s->ops->policy_set(s->be, "token", t->id, value);
}

int store_token_record(struct store *s, const struct store_token_info *t)
{
	return store_token_write(s, t);
}

struct store_token_find {
	const char *id;
	struct store_token_info t;
	bool found;
	store_token_cb cb;
	void *arg;
};

static int store_token_row(const char *kind, const char *name, const char *value, void *arg)
{
	struct store_token_find *f = arg;
	struct store_token_info t;

	if (strcmp(kind, "token") != 0 || store_token_parse(name, value, &t) < 0)
		return 0;
	if (f->cb)
		return f->cb(&t, f->arg);
	if (strcmp(t.id, f->id) == 0) {
		f->t = t;
		f->found = true;
	}
	return 0;
}

int store_token_revoke(struct store *s, const char *id)
{
	struct store_token_find f = { .id = id };
	int r = s->ops->policy_list(s->be, store_token_row, &f);

	if (r < 0)
		return r;
	if (!f.found)
		return KMS_E_TOKEN_INVALID;
	f.t.revoked = true;
	if ((r = store_token_write(s, &f.t)) < 0)
		return r;
	return store_policy_load(s);
}

int store_token_list(struct store *s, store_token_cb cb, void *arg)
{
	struct store_token_find f = { .cb = cb, .arg = arg };

	return s->ops->policy_list(s->be, store_token_row, &f);
}

bool store_token_revoked(struct store *s, const char *id)
{
	bool revoked = false;

	pthread_rwlock_rdlock(&s->policy_lock);
	for (size_t i = 0; i < s->policy.nrevoked && !revoked; i++)
		revoked = strcmp(s->policy.revoked[i], id) == 0;
	pthread_rwlock_unlock(&s->policy_lock);
	return revoked;
}
