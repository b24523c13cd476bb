/* Backup and restore (kms_store.h): a store's snapshot in a SQLite file that holds only sealed
 * material, and a store rebuilt from one.
 *
 * The backend takes the snapshot: SQLite copies its pages with the online backup API under one
 * read transaction (backup_file), PostgreSQL runs store_copy inside one REPEATABLE READ
 * transaction (snapshot) into a store on the file. Either way the file ends up stamped with the
 * root key it needs (check value and generation), so a restore can refuse the wrong root with a
 * sentence instead of failing to unseal. The state secrets (token signing, audit) go in as the
 * sealed settings "secret:NAME" with the snapshot: a source that still keeps one in a file of
 * its state directory has it moved into its settings first. */
#include "store_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/kms_err.h"
#include "common/kms_hex.h"
#include "common/kms_secmem.h"
#include "common/kms_time.h"

/* The state secrets a store may hold (store_state_secret names) that a restore takes over
 * before store_copy (which copies "import-digest.key" too). */
static const char *const store_backup_secrets[] = { "token.key", "audit.key" };

struct store_backup_ctx {
	struct store *src, *dst;
	store_copy_progress_fn progress;
	void *arg;
	char *why;
	size_t why_len;
	const struct store_backup_info *info; /* backup: what the file records */
};

/* Secrets a SQLite source still keeps in files of its state directory (made before they moved
 * into the settings) go into its settings now (store_state_secret_get moves them), so that the
 * snapshot carries every secret once, as it carries every setting: in the copy of the database
 * file, or through store_copy into the file's store. */
static int store_backup_secret_files(struct store *s)
{
	uint8_t *secret = kms_secret_alloc(32);
	char path[4200];
	int r = secret ? 0 : KMS_E_NOMEM;

	for (size_t i = 0; r == 0 && !s->ops->shared && i < KMS_ARRAY_SIZE(store_backup_secrets);
	     i++) {
		snprintf(path, sizeof(path), "%s/%s", s->state_dir, store_backup_secrets[i]);
		if (access(path, F_OK) != 0)
			r = errno == ENOENT ? 0 : KMS_E_IO;
		else
			r = store_state_secret_get(s, store_backup_secrets[i], secret);
	}
	kms_secret_free(secret, 32);
	return r;
}

/* What store_copy does not carry: the root key generation. (Cgroup bindings and remembered
 * bindings it copies itself.) */
static int store_backup_extras(struct store_backup_ctx *c)
{
	char gen[24];
	bool found = false;
	int r;

	c->why[0] = 0;
	r = c->src->ops->meta_get(c->src->be, "root_generation", gen, sizeof(gen), &found);
	if (r == 0 && found)
		r = c->dst->ops->meta_set(c->dst->be, "root_generation", gen);
	if (r < 0)
		snprintf(c->why, c->why_len, "cannot copy the root key generation: %s",
			 kms_err_info(r)->message);
	return r;
}

int store_root_check_value(struct store *s, char out[2 * CORE_SHA256_BYTES + 1])
{
	return store_root_check(s->root, out);
}

/* "2026-12-06 21:54:36 UTC" */
static void store_backup_when(int64_t ms, char *out, size_t cap)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (!gmtime_r(&t, &tm) || !strftime(out, cap, "%Y-%m-%d %H:%M:%S UTC", &tm))
		snprintf(out, cap, "%lld ms", (long long)ms);
}

int store_backup_root_check(const struct store_options *opt, const struct store_backup_info *info,
			    char *why, size_t why_len)
{
	struct store_root_params rp = { opt->root_key, opt->pkcs11_module, opt->pkcs11_pin_file,
					false, opt->state_dir };
	char check[2 * CORE_SHA256_BYTES + 1] = "", shown[1024], when[64];
	struct store_root *root = NULL;
	int r;

	/* As store_open: without a location given, the token the store recorded. */
	if (!rp.location && info->root_location[0])
		rp.location = info->root_location;
	r = store_root_open(&rp, &root, NULL, why, why_len);

	store_backup_when(info->made_ms, when, sizeof(when));
	if (r == KMS_E_KEY_NOT_FOUND) {
		if (rp.location) /* without a PIN value, as every message names a root */
			store_root_location_shown(rp.location, shown, sizeof(shown));
		else
			snprintf(shown, sizeof(shown), "%.1000s/root.key", opt->state_dir);
		snprintf(why, why_len,
			 "there is no root key at '%.300s': the backup is sealed under root key "
			 "generation %u (check value %.16s...) of %.200s as of %s, and a restore "
			 "never makes a new root key; put a copy of that key there (mode 0600) or "
			 "name it with --root-key, then restore again",
			 shown, info->root_generation, info->root_check, info->source, when);
		return KMS_E_IO;
	}
	if (r < 0)
		return r;
	store_root_describe(root, shown, sizeof(shown));
	r = store_root_check(root, check);
	store_root_close(root);
	if (r < 0) {
		snprintf(why, why_len, "cannot use root key '%.300s': %s", shown,
			 kms_err_info(r)->message);
		return r;
	}
	if (strcmp(check, info->root_check) != 0) {
		snprintf(why, why_len,
			 "root key '%.300s' is not the one this backup was sealed under (its check "
			 "value is %.16s..., the backup's %.16s...): the backup needs root key "
			 "generation %u of %.200s, current when it was made (%s); put that key in "
			 "place (a copy, mode 0600, or --root-key) and restore again",
			 shown, check, info->root_check, info->root_generation, info->source, when);
		return KMS_E_IO;
	}
	return 0;
}

/* ---- backup */

/* The snapshot in f (the file, or the source inside its snapshot) is sealed under the root key
 * info names: no root-key rotation running in it (store_rotate.c: root_next_check set and not
 * yet the committed root_check, keys under two roots), none committed since kmsctl opened the
 * store. */
static int store_backup_one_root(struct store *f, const struct store_backup_info *info, char *why,
				 size_t why_len)
{
	char next[2 * CORE_SHA256_BYTES + 2] = "", cur[2 * CORE_SHA256_BYTES + 2] = "";
	bool found = false;
	int r = f->ops->meta_get(f->be, "root_next_check", next, sizeof(next), &found);

	if (r == 0)
		r = f->ops->meta_get(f->be, "root_check", cur, sizeof(cur), &found);
	if (r < 0) {
		snprintf(why, why_len, "cannot read the snapshot's settings: %s",
			 kms_err_info(r)->message);
		return r;
	}
	if (next[0] && strcmp(next, cur) != 0) {
		snprintf(why, why_len,
			 "a root-key rotation was running when the snapshot was taken, so its keys "
			 "are sealed under two root keys; finish it (kmsctl root-key rotate) and "
			 "back up again");
		return KMS_E_BUSY;
	}
	if (strcmp(cur, info->root_check) != 0) {
		snprintf(why, why_len,
			 "the root key was rotated while the backup was taken; run it again");
		return KMS_E_BUSY;
	}
	return 0;
}

/* The body of a snapshot (PostgreSQL): everything into the file's store. */
static int store_backup_copy(void *arg)
{
	struct store_backup_ctx *c = arg;
	int r = store_backup_one_root(c->src, c->info, c->why, c->why_len);

	if (r == 0)
		r = store_copy(c->src, c->dst, c->progress, c->arg, c->why, c->why_len);
	if (r == 0)
		r = store_backup_extras(c);
	return r;
}

/* The stamp: settings written last, so a file without them was not finished. */
static int store_backup_stamp(struct store *f, const struct store_backup_info *info)
{
	char gen[16], made[24], format[16];
	int r;

	snprintf(gen, sizeof(gen), "%" PRIu32, info->root_generation);
	snprintf(made, sizeof(made), "%" PRId64, info->made_ms);
	snprintf(format, sizeof(format), "%d", info->format);
	r = f->ops->meta_set(f->be, "backup_root_check", info->root_check);
	if (r == 0)
		r = f->ops->meta_set(f->be, "backup_root_generation", gen);
	if (r == 0)
		r = f->ops->meta_set(f->be, "backup_made_ms", made);
	if (r == 0)
		r = f->ops->meta_set(f->be, "backup_source", info->source);
	if (r == 0)
		r = f->ops->meta_set(f->be, "backup_format", format);
	return r;
}

/* What the backup of s records about it, before the snapshot is taken. */
static int store_backup_describe(struct store *s, struct store_backup_info *info)
{
	char gen[24];
	bool found = false;
	int r;

	memset(info, 0, sizeof(*info));
	info->format = STORE_BACKUP_FORMAT;
	info->made_ms = kms_time_real_ms();
	snprintf(info->domain_id, sizeof(info->domain_id), "%s", s->domain_id);
	if (s->ops->shared)
		store_uri_describe(s->backend_uri, info->source, sizeof(info->source));
	else
		snprintf(info->source, sizeof(info->source), "sqlite %.400s/kms.db", s->state_dir);
	if ((r = store_root_check_value(s, info->root_check)) < 0)
		return r;
	r = s->ops->meta_get(s->be, "root_generation", gen, sizeof(gen), &found);
	info->root_generation = found ? (uint32_t)strtoul(gen, NULL, 10) : 1;
	return r;
}

/* fsync a file or directory by name. */
static int store_backup_sync(const char *path, bool dir)
{
	int fd = open(path, (dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC), r = 0;

	if (fd < 0)
		return KMS_E_IO;
	if (fsync(fd) != 0)
		r = errno == ENOSPC ? KMS_E_NOSPACE : KMS_E_IO;
	close(fd);
	return r;
}

/* The temporary file in path's directory: a new empty one, 0600 (what a killed run left
 * there goes first). */
static int store_backup_temp(const char *path, char *tmp, size_t cap, char *why, size_t why_len)
{
	int fd;

	if ((size_t)snprintf(tmp, cap, "%s.partial", path) >= cap) {
		snprintf(why, why_len, "the backup file's name is too long");
		return KMS_E_BAD_PARAM;
	}
	(void)unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		snprintf(why, why_len, "cannot create '%.300s': %s", tmp, strerror(errno));
		return errno == ENOSPC ? KMS_E_NOSPACE : KMS_E_IO;
	}
	close(fd);
	return 0;
}

/* A new file gets the source's recorded root location first (a token root: the URI), so that
 * opening it finds the same root key as the source without --root-key. */
static int store_backup_seed(struct store *src, const char *tmp)
{
	char uri[4300], location[1024];
	struct store_backend_params bp = { .state_dir = src->state_dir, .uri = uri };
	struct store_backend *b = NULL;
	bool found = false;
	int r = src->ops->meta_get(src->be, "root_location", location, sizeof(location), &found);
	char why[512];

	if (r < 0 || !found)
		return r;
	snprintf(uri, sizeof(uri), "sqlite:%s", tmp);
	if ((r = store_sqlite_ops.open(&bp, &b, why, sizeof(why))) < 0)
		return r;
	r = store_sqlite_ops.meta_set(b, "root_location", location);
	store_sqlite_ops.close(b);
	return r;
}

/* The snapshot into the file tmp, by the backend's own means. */
static int store_backup_take(struct store_backup_ctx *c, const char *tmp,
			     store_backup_open_fn open_file, void *open_arg)
{
	struct store *src = c->src;
	int r;

	if (src->ops->backup_file)
		return src->ops->backup_file(src->be, tmp, c->progress, c->arg, c->why, c->why_len);
	if (!src->ops->snapshot) {
		snprintf(c->why, c->why_len, "the %s backend cannot take a consistent snapshot",
			 src->ops->name);
		return KMS_E_INTERNAL;
	}
	if ((r = store_backup_seed(src, tmp)) < 0 ||
	    (r = open_file(tmp, true, &c->dst, open_arg)) < 0) {
		snprintf(c->why, c->why_len, "cannot create a key database in '%.300s'", tmp);
		return r;
	}
	r = src->ops->snapshot(src->be, store_backup_copy, c);
	if (r < 0 && !c->why[0])
		snprintf(c->why, c->why_len, "cannot read the source: %s",
			 kms_err_info(r)->message);
	store_close(c->dst);
	c->dst = NULL;
	return r;
}

int store_backup(struct store *s, const char *path, store_backup_open_fn open_file, void *open_arg,
		 store_copy_progress_fn progress, void *arg, struct store_backup_info *info,
		 char *why, size_t why_len)
{
	struct store_backup_ctx c = { .src = s,
				      .progress = progress,
				      .arg = arg,
				      .why = why,
				      .why_len = why_len,
				      .info = info };
	struct store *f = NULL;
	char tmp[4200], dir[4200];
	int r;

	why[0] = 0;
	if ((r = store_backup_describe(s, info)) < 0) {
		snprintf(why, why_len, "cannot read the source's settings: %s",
			 kms_err_info(r)->message);
		return r;
	}
	if ((r = store_backup_secret_files(s)) < 0) {
		snprintf(why, why_len, "cannot move the state secrets into the settings: %s",
			 kms_err_info(r)->message);
		return r;
	}
	if ((r = store_backup_temp(path, tmp, sizeof(tmp), why, why_len)) < 0)
		return r;
	r = store_backup_take(&c, tmp, open_file, open_arg);
	if (r == 0 && (r = open_file(tmp, true, &f, open_arg)) < 0)
		snprintf(why, why_len, "cannot open the copy '%.300s'", tmp);
	if (r == 0)
		r = store_backup_one_root(f, info, why, why_len);
	if (r == 0 && (r = store_backup_stamp(f, info)) < 0)
		snprintf(why, why_len, "cannot write to '%.300s': %s", tmp,
			 kms_err_info(r)->message);
	store_close(f);
	/* Durable under its own name before it takes path's, and the name durable after. */
	snprintf(dir, sizeof(dir), "%s", path);
	if (r == 0 && (r = store_backup_sync(tmp, false)) < 0)
		snprintf(why, why_len, "cannot write '%.300s' to disk", tmp);
	if (r == 0 && rename(tmp, path) != 0) {
		snprintf(why, why_len, "cannot rename '%.300s' to '%.300s': %s", tmp, path,
			 strerror(errno));
		r = KMS_E_IO;
	}
	if (r == 0 && (r = store_backup_sync(dirname(dir), true)) < 0)
		snprintf(why, why_len, "cannot write the directory of '%.300s' to disk", path);
	if (r < 0)
		(void)unlink(tmp);
	return r;
}

/* ---- the stamp of a backup file */

static int store_backup_info_get(struct store_backend *b, const char *name, char *out, size_t cap)
{
	bool found = false;
	int r = store_sqlite_ops.meta_get(b, name, out, cap, &found);

	return r == 0 && !found ? KMS_E_KEY_NOT_FOUND : r;
}

int store_backup_read_info(const char *path, struct store_backup_info *info, char *why,
			   size_t why_len)
{
	char gen[24] = "", made[24] = "", format[16] = "", uri[4200];
	struct store_backend_params bp = { .state_dir = ".", .uri = uri, .read_only = true };
	struct store_backend *b = NULL;
	int r;

	memset(info, 0, sizeof(*info));
	if ((size_t)snprintf(uri, sizeof(uri), "sqlite:%s", path) >= sizeof(uri)) {
		snprintf(why, why_len, "the backup file's name is too long");
		return KMS_E_BAD_PARAM;
	}
	if (access(path, R_OK) != 0) {
		snprintf(why, why_len, "cannot read backup '%.300s': %s", path, strerror(errno));
		return KMS_E_IO;
	}
	if ((r = store_sqlite_ops.open(&bp, &b, why, why_len)) < 0)
		return r;
	r = store_backup_info_get(b, "backup_format", format, sizeof(format));
	if (r == 0)
		r = store_backup_info_get(b, "backup_root_check", info->root_check,
					  sizeof(info->root_check));
	if (r == 0)
		r = store_backup_info_get(b, "backup_root_generation", gen, sizeof(gen));
	if (r == 0)
		r = store_backup_info_get(b, "backup_made_ms", made, sizeof(made));
	if (r == 0)
		r = store_backup_info_get(b, "backup_source", info->source, sizeof(info->source));
	if (r == 0)
		r = store_backup_info_get(b, "domain_id", info->domain_id, sizeof(info->domain_id));
	if (r == 0 && store_backup_info_get(b, "root_location", info->root_location,
					    sizeof(info->root_location)) < 0)
		info->root_location[0] = 0;
	store_sqlite_ops.close(b);
	info->format = atoi(format);
	info->root_generation = (uint32_t)strtoul(gen, NULL, 10);
	info->made_ms = strtoll(made, NULL, 10);
	if (r < 0 || info->format < 1) {
		snprintf(why, why_len,
			 "'%.300s' is not a finished kmsfs backup (kmsctl backup writes one)",
			 path);
		return KMS_E_IO;
	}
	if (info->format > STORE_BACKUP_FORMAT) {
		snprintf(why, why_len,
			 "backup '%.300s' has format %d; this kmsctl reads format %d and older: "
			 "restore it with a newer kmsfs",
			 path, info->format, STORE_BACKUP_FORMAT);
		return KMS_E_IO;
	}
	return 0;
}

/* ---- restore */

int store_backup_work_copy(const char *path, const char *dir, char *out, size_t cap, char *why,
			   size_t why_len)
{
	uint8_t buf[65536];
	ssize_t n = 0;
	int in, fd, r = 0;

	if ((size_t)snprintf(out, cap, "%s/restore-source.db", dir) >= cap) {
		snprintf(why, why_len, "the state directory's name is too long");
		return KMS_E_BAD_PARAM;
	}
	(void)unlink(out); /* what a killed run left */
	in = open(path, O_RDONLY | O_CLOEXEC);
	fd = open(out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	while (in >= 0 && fd >= 0 && (n = read(in, buf, sizeof(buf))) > 0)
		if (write(fd, buf, (size_t)n) != n) {
			n = -1;
			break;
		}
	if (in < 0 || fd < 0 || n < 0) {
		snprintf(why, why_len, "cannot copy backup '%.300s' to '%.300s': %s", path, out,
			 strerror(errno));
		r = errno == ENOSPC ? KMS_E_NOSPACE : KMS_E_IO;
	}
	if (in >= 0)
		close(in);
	if (fd >= 0)
		close(fd);
	if (r < 0)
		(void)unlink(out);
	return r;
}

static int store_restore_project(const char *project, void *arg)
{
	struct store_backup_ctx *c = arg;
	size_t n = 0;
	int r = c->dst->ops->key_count(c->dst->be, project, &n);

	if (r == 0 && n > 0)
		r = 1; /* stops the listing: there are keys */
	return r;
}

/* Which backup dst is taking ("" if none): written before the first key goes in, so a rerun
 * after a kill knows the keys there are this backup's. */
static void store_restore_id(const struct store_backup_info *info, char *out, size_t cap)
{
	snprintf(out, cap, "%s %" PRId64 " %.16s", info->domain_id, info->made_ms,
		 info->root_check);
}

static int store_restore_begin(struct store_backup_ctx *c, const struct store_backup_info *info)
{
	char id[128], pending[128] = "";
	bool found = false;
	int r = c->dst->ops->project_list(c->dst->be, store_restore_project, c);

	if (r < 0) {
		snprintf(c->why, c->why_len, "cannot read the destination: %s",
			 kms_err_info(r)->message);
		return r;
	}
	store_restore_id(info, id, sizeof(id));
	if (r == 1) {
		r = c->dst->ops->meta_get(c->dst->be, "restored_from", pending, sizeof(pending),
					  &found);
		if (r == 0 && found && strcmp(pending, id) == 0)
			return 1; /* done by an earlier run (killed before it said so) */
		if (r == 0)
			r = c->dst->ops->meta_get(c->dst->be, "restore_pending", pending,
						  sizeof(pending), &found);
		if (r < 0 || !found || strcmp(pending, id) != 0) {
			snprintf(c->why, c->why_len,
				 "the destination already holds keys; restore into a new state "
				 "directory (or an empty database), never over a store in use");
			return r < 0 ? r : KMS_E_IO;
		}
	}
	if ((r = c->dst->ops->meta_set(c->dst->be, "restore_pending", id)) < 0)
		snprintf(c->why, c->why_len, "cannot write to the destination: %s",
			 kms_err_info(r)->message);
	return r;
}

/* The backup's state secrets become the destination's (it holds no keys: nothing is sealed
 * or signed under what it had), sealed as they are, after a check that they unseal under this
 * root key: before store_copy, which holds source and destination to one token signing
 * secret. */
static int store_restore_secrets(struct store_backup_ctx *c)
{
	char meta_name[STORE_SECRET_SETTING_MAX], label[STORE_SECRET_LABEL_MAX];
	char hex[STORE_SECRET_HEX];
	uint8_t sealed[STORE_SECRET_SEALED], *secret = kms_secret_alloc(32);
	size_t n = 0, len = 0;
	bool found = false;
	int r = secret ? 0 : KMS_E_NOMEM;

	for (size_t i = 0; r == 0 && i < KMS_ARRAY_SIZE(store_backup_secrets); i++) {
		const char *name = store_backup_secrets[i];

		if ((r = store_secret_setting(name, meta_name, label)) < 0)
			break;
		r = c->src->ops->meta_get(c->src->be, meta_name, hex, sizeof(hex), &found);
		if (r < 0 || !found)
			continue;
		if (kms_hex_decode(hex, strlen(hex), sealed, sizeof(sealed), &n) < 0 ||
		    store_unseal_opaque(c->src, label, sealed, n, secret, 32, &len) < 0 ||
		    len != 32) {
			snprintf(c->why, c->why_len,
				 "the backup's state secret %s does not unseal under this root key",
				 name);
			r = KMS_E_IO;
			break;
		}
		if ((r = c->dst->ops->meta_set(c->dst->be, meta_name, hex)) < 0)
			snprintf(c->why, c->why_len, "cannot write the state secret %s: %s", name,
				 kms_err_info(r)->message);
	}
	kms_secret_free(secret, 32);
	return r;
}

int store_restore(struct store *backup, struct store *dst, const struct store_backup_info *info,
		  store_copy_progress_fn progress, void *arg, bool *already, char *why,
		  size_t why_len)
{
	char id[128];
	struct store_backup_ctx c = { .src = backup,
				      .dst = dst,
				      .progress = progress,
				      .arg = arg,
				      .why = why,
				      .why_len = why_len };
	int r;

	why[0] = 0;
	*already = false;
	r = store_restore_begin(&c, info);
	if (r == 1) {
		*already = true;
		return 0;
	}
	if (r == 0)
		r = store_restore_secrets(&c);
	if (r == 0)
		r = store_copy(backup, dst, progress, arg, why, why_len);
	if (r == 0)
		r = store_backup_extras(&c);
	/* Done: a rerun finds this backup restored and copies nothing again (the store may be in
	 * use by then: copying the backup over it would take changes back). */
	store_restore_id(info, id, sizeof(id));
	if (r == 0 && (r = dst->ops->meta_set(dst->be, "restored_from", id)) == 0)
		r = dst->ops->meta_set(dst->be, "restore_pending", "");
	if (r < 0 && !why[0])
		snprintf(why, why_len, "cannot write to the destination: %s",
			 kms_err_info(r)->message);
	return r;
}
