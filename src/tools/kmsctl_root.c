/* kmsctl root-key rotate [--to pkcs11:...|--to FILE]: a new root key while daemons serve
 * (store_root_rotate, docs/root-of-trust.md). Run again after an interruption, it finishes. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/kms_err.h"
#include "common/kms_time.h"
#include "kmsctl_internal.h"

static int kmsctl_root_rotate(const char *state, const char *to)
{
	struct kmsctl_progress prog = { .start_ms = kms_time_mono_ms(),
					.verb = "re-sealed",
					.unit = "versions" };
	struct store_rotate_report rep;
	struct kmsctl_audit *audit = NULL;
	struct store *s = NULL;
	char why[1600];
	int r, ret;

	/* Before anything records --to (the audit line names it): never a PIN value there. */
	if (to && strstr(to, "pin-value")) {
		fprintf(stderr,
			"kmsctl: --to names a PIN value, which would be kept in the store's "
			"settings and the audit trail; use pin-source=file:... or "
			"--pkcs11-pin-file\n");
		return EXIT_USAGE;
	}
	if ((ret = kmsctl_open(state, false, &s)) != 0)
		return ret;
	if ((ret = kmsctl_audit_open(state, s, &audit)) != 0)
		goto out;
	r = store_root_rotate(s, to, isatty(STDERR_FILENO) ? kmsctl_progress_show : NULL, &prog,
			      &rep, why, sizeof(why));
	if (prog.shown)
		fputc('\n', stderr);
	ret = kmsctl_audit_close(audit, "kmsctl root-key rotate", NULL, to, r);
	if (r < 0) {
		/* Nothing is lost: what was done stays, the next run goes on from there. */
		fprintf(stderr,
			"kmsctl: root-key rotation stopped: %s (%s); run it again to go on\n",
			why[0] ? why : kms_err_info(r)->message, kms_err_info(r)->code);
		ret = EXIT_STATE;
		goto out;
	}
	if (rep.unchanged) {
		printf("kmsctl: the root key (generation %u) is '%s' already; nothing to do\n",
		       rep.generation, rep.now);
		goto out;
	}
	printf("kmsctl: %sroot key generation %u is '%s'; %zu sealed item(s) re-sealed\n",
	       rep.resumed ? "finished an interrupted rotation: " : "", rep.generation, rep.now,
	       rep.resealed);
	if (rep.destroyed[0])
		printf("kmsctl: destroyed the old root key '%s'\n", rep.destroyed);
	else
		printf("kmsctl: no old root key left here to destroy (an earlier run destroyed "
		       "it)\n");
out:
	store_close(s);
	return ret;
}

int kmsctl_root_command(const char *state, int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "rotate") == 0)
		return kmsctl_root_rotate(state, NULL);
	if (argc == 4 && strcmp(argv[1], "rotate") == 0 && strcmp(argv[2], "--to") == 0 &&
	    argv[3][0])
		return kmsctl_root_rotate(state, argv[3]);
	fprintf(stderr, "kmsctl: usage: kmsctl --state DIR root-key rotate [--to pkcs11:...|--to "
			"FILE]\n");
	return EXIT_USAGE;
}
