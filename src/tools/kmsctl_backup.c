/* kmsctl backup FILE, kmsctl restore FILE (kms_store.h, store_backup.c): a consistent snapshot
 * of the store in a file that holds only sealed material, and a store rebuilt from one under
 * the root key it names. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/kms_err.h"
#include "common/kms_time.h"
#include "kmsctl_internal.h"

/* The backup file as a store under state's root key (store_backup_open_fn). */
static int kmsctl_backup_open(const char *db_file, bool writable, struct store **out, void *arg)
{
	const char *state = arg;

	/* Never create: the file is there (store_backup made it), and a root key must not be. */
	return kmsctl_open_file(state, NULL, db_file, false, !writable, false, out) == 0 ? 0
											 : KMS_E_IO;
}

/* "2026-12-06 21:54:36 UTC" */
static void kmsctl_backup_when(int64_t ms, char *out, size_t cap)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (!gmtime_r(&t, &tm) || !strftime(out, cap, "%Y-%m-%d %H:%M:%S UTC", &tm))
		snprintf(out, cap, "%lld ms", (long long)ms);
}

/* What a backup file holds, read through a store on it (read-only). */
static int kmsctl_backup_report(const char *state, const char *file,
				const struct store_backup_info *info)
{
	struct kmsctl_counts c;
	struct store *f = NULL;
	struct stat st;
	char when[64];
	int r;

	if (kmsctl_open_file(state, NULL, file, false, true, false, &f) != 0)
		return EXIT_STATE;
	r = kmsctl_count(f, false, &c);
	store_close(f);
	if (r < 0) {
		fprintf(stderr, "kmsctl: cannot read back '%s': %s\n", file,
			kms_err_info(r)->message);
		return EXIT_STATE;
	}
	kmsctl_backup_when(info->made_ms, when, sizeof(when));
	printf("kmsctl: backed up %s to '%s' (%lld bytes, as of %s): %zu projects, %zu keys, "
	       "%zu grants, %zu tags, %zu token records\n",
	       info->source, file, stat(file, &st) == 0 ? (long long)st.st_size : -1LL, when,
	       c.projects, c.keys, c.grants, c.tags, c.tokens);
	printf("kmsctl: restoring it needs root key generation %u (check value %.16s...)\n",
	       info->root_generation, info->root_check);
	return 0;
}

static int kmsctl_backup_take(const char *state, const char *file)
{
	struct kmsctl_progress prog = { .start_ms = kms_time_mono_ms(), .verb = "copied" };
	struct store_backup_info info;
	struct kmsctl_audit *a = NULL;
	struct store *s = NULL;
	char why[1200];
	int r, ret;

	if ((ret = kmsctl_open(state, false, &s)) != 0)
		return ret;
	prog.unit = store_shared(s) ? "keys" : "pages";
	if ((ret = kmsctl_audit_open(state, s, &a)) != 0) {
		store_close(s);
		return ret;
	}
	r = store_backup(s, file, kmsctl_backup_open, (void *)state,
			 isatty(STDERR_FILENO) ? kmsctl_progress_show : NULL, &prog, &info, why,
			 sizeof(why));
	if (prog.shown)
		fputc('\n', stderr);
	ret = kmsctl_audit_close(a, "kmsctl backup", NULL, file, r);
	store_close(s);
	if (r < 0) {
		fprintf(stderr, "kmsctl: backup to '%s' failed: %s\n", file, why);
		return EXIT_STATE;
	}
	return ret != 0 ? ret : kmsctl_backup_report(state, file, &info);
}

/* Whether a store (the backup) holds an audit key. */
static bool kmsctl_restore_has_audit_key(struct store *s)
{
	uint8_t *key = kms_secret_alloc(32);
	bool has = key && store_state_secret_get(s, "audit.key", key) == 0;

	kms_secret_free(key, 32);
	return has;
}

static int kmsctl_restore(const char *state, const char *file)
{
	struct kmsctl_progress prog = { .start_ms = kms_time_mono_ms(), .verb = "copied" };
	struct store_backup_info info;
	struct store_options opt;
	struct kmsctl_audit *a = NULL;
	struct kmsctl_counts c;
	struct store *bk = NULL, *dst = NULL;
	char why[1200], check[2 * CORE_SHA256_BYTES + 1], shown[512], work[4200];
	bool already = false;
	int r, ret;

	if (!state) {
		fprintf(stderr, "kmsctl: --state DIR is required\n");
		return EXIT_USAGE;
	}
	if (store_backup_read_info(file, &info, why, sizeof(why)) < 0) {
		fprintf(stderr, "kmsctl: %s\n", why);
		return EXIT_STATE;
	}
	/* The root key first: nothing is made in state under another one. Without --root-key,
	 * the token the backup's store recorded (as store_open finds it in a store). */
	if (!kmsctl_root_key && info.root_location[0])
		kmsctl_root_key = info.root_location;
	kmsctl_store_options(state, &opt);
	if (store_backup_root_check(&opt, &info, why, sizeof(why)) < 0) {
		fprintf(stderr, "kmsctl: cannot restore '%s' into '%s': %s\n", file, state, why);
		return EXIT_STATE;
	}
	if (store_backup_work_copy(file, state, work, sizeof(work), why, sizeof(why)) < 0) {
		fprintf(stderr, "kmsctl: %s\n", why);
		return EXIT_STATE;
	}
	if ((ret = kmsctl_open_file(state, NULL, work, false, false, false, &bk)) != 0 ||
	    (ret = kmsctl_open(state, true, &dst)) != 0)
		goto out;
	ret = EXIT_STATE;
	if (store_root_check_value(dst, check) < 0 || strcmp(check, info.root_check) != 0) {
		fprintf(stderr,
			"kmsctl: the root key of the destination is not the one '%s' needs\n",
			file);
		goto out;
	}
	/* The line is keyed with the installation's audit key, the backup's (restored with it), so
	 * the trail it goes to verifies as one chain; a backup without one: the destination's. */
	if ((ret = kmsctl_audit_open(state, kmsctl_restore_has_audit_key(bk) ? bk : dst, &a)) != 0)
		goto out;
	r = store_restore(bk, dst, &info, isatty(STDERR_FILENO) ? kmsctl_progress_show : NULL,
			  &prog, &already, why, sizeof(why));
	if (prog.shown)
		fputc('\n', stderr);
	ret = kmsctl_audit_close(a, "kmsctl restore", NULL, file, r);
	if (r < 0) {
		fprintf(stderr, "kmsctl: restore of '%s' stopped: %s%s\n", file, why,
			r == KMS_E_STORE_UNAVAILABLE || r == KMS_E_STALE || r == KMS_E_BUSY
				? " (run it again to go on)"
				: "");
		ret = EXIT_STATE;
		goto out;
	}
	if (ret != 0)
		goto out;
	if ((r = kmsctl_count(dst, true, &c)) < 0) {
		fprintf(stderr, "kmsctl: cannot read the restored store: %s\n",
			kms_err_info(r)->message);
		ret = EXIT_STATE;
		goto out;
	}
	store_uri_describe(kmsctl_store_uri, shown, sizeof(shown));
	if (already)
		printf("kmsctl: '%s' was restored into %s of '%s' before; nothing copied\n", file,
		       shown, state);
	printf("kmsctl: restored '%s' into %s of '%s': %zu projects, %zu keys, %zu grants, %zu "
	       "tags, %zu token records\n",
	       file, shown, state, c.projects, c.keys, c.grants, c.tags, c.tokens);
	printf("checked %zu key versions: %zu damaged keys\n", c.versions, c.damaged);
	ret = c.damaged ? EXIT_STATE : 0;
out:
	store_close(dst);
	store_close(bk);
	(void)unlink(work);
	return ret;
}

int kmsctl_backup(const char *state, int argc, char **argv)
{
	if (argc != 2 || !argv[1][0]) {
		fprintf(stderr, "kmsctl: usage: kmsctl --state DIR [--store URI] %s FILE\n",
			argv[0]);
		return EXIT_USAGE;
	}
	if (strcmp(argv[0], "backup") == 0)
		return kmsctl_backup_take(state, argv[1]);
	return kmsctl_restore(state, argv[1]);
}
