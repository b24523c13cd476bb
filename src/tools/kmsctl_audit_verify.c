/* kmsctl_audit_verify.c - kmsctl --state DIR audit verify FILE [FILE...]: checks the MAC chain
 * of audit files (src/audit/audit_verify.c) given in the order they were written (oldest first)
 * and names the first line changed, removed or inserted. Exit 0 intact, 1 not, 3 unreadable. */
#define _GNU_SOURCE /* getline */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/kms_audit.h"
#include "common/kms_err.h"
#include "common/kms_secmem.h"
#include "kmsctl_internal.h"

/* One file: 0 intact, 1 bad (said), EXIT_STATE unreadable (said). */
static int kmsctl_verify_file(struct audit_verify *v, const char *prev_name, const char *name)
{
	FILE *f = fopen(name, "re");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int r = 0;

	if (!f) {
		fprintf(stderr, "kmsctl: cannot read '%s': %s\n", name, strerror(errno));
		return EXIT_STATE;
	}
	if (audit_verify_file_begin(v) < 0)
		r = -1;
	while (r == 0 && (n = getline(&line, &cap, f)) > 0) {
		bool torn = line[n - 1] != '\n';

		r = audit_verify_line(v, line, torn ? (size_t)n : (size_t)n - 1);
		if (r == 0 && torn) {
			v->bad_file = 0;
			v->bad_line = v->lines;
			snprintf(v->why, sizeof(v->why), "torn: the file ends inside it");
			r = 1;
		}
	}
	if (r == 0 && ferror(f)) {
		fprintf(stderr, "kmsctl: cannot read '%s': %s\n", name, strerror(errno));
		r = EXIT_STATE;
	}
	if (r == 0)
		r = audit_verify_file_end(v);
	if (r < 0) {
		fprintf(stderr, "kmsctl: out of memory\n");
		r = EXIT_STATE;
	} else if (r == 1) {
		printf("%s:%zu: %s\n", v->bad_file ? prev_name : name, v->bad_line, v->why);
	} else if (r == 0) {
		printf("%s: %zu lines intact%s\n", name, v->lines,
		       v->files > 1 && !v->linked
			       ? " (its link to the file before it was not recorded: it was "
				 "started while no writer knew that file's last line)"
			       : "");
	}
	free(line);
	fclose(f);
	return r;
}

int kmsctl_audit_verify(const char *state, int argc, char **argv)
{
	struct audit_verify v;
	struct store *s = NULL;
	uint8_t *key = NULL;
	int r, ret = EXIT_STATE;

	if (argc < 3 || strcmp(argv[1], "verify") != 0) {
		fprintf(stderr, "kmsctl: usage: kmsctl --state DIR audit verify FILE [FILE...] "
				"(oldest first)\n");
		return EXIT_USAGE;
	}
	if ((r = kmsctl_open(state, false, &s)) != 0)
		return r;
	key = kms_secret_alloc(AUDIT_KEY_BYTES);
	/* Read, never made: a verify must not leave a new key behind (every file would fail). */
	r = key ? store_state_secret_get(s, "audit.key", key) : KMS_E_NOMEM;
	store_close(s);
	if (r == KMS_E_KEY_NOT_FOUND) {
		fprintf(stderr,
			"kmsctl: '%s' has no audit key: no audit line was ever written "
			"for it, so these files are not its trail\n",
			state);
		goto out;
	}
	if (r < 0) {
		fprintf(stderr, "kmsctl: cannot read the audit key of '%s': %s\n", state,
			kms_err_info(r)->message);
		goto out;
	}
	audit_verify_init(&v, key);
	for (int i = 2; i < argc; i++) {
		r = kmsctl_verify_file(&v, i > 2 ? argv[i - 1] : "", argv[i]);
		if (r != 0)
			break;
	}
	if (r == 0)
		printf("audit trail intact: %zu lines in %d file(s); lines cut off the end of the "
		       "last file cannot be seen\n",
		       v.total, argc - 2);
	ret = r == 1 ? EXIT_API_ERROR : r;
	audit_verify_free(&v);
out:
	kms_secret_free(key, AUDIT_KEY_BYTES);
	return ret;
}
