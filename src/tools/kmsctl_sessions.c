/* kmsctl_sessions.c - where tokens are bound: the bindings daemons remember across restarts
 * (kms_store.h, struct store_remembered), shown by `token list` and dropped by `token revoke`. */
#include <inttypes.h>
#include <stdio.h>

#include "common/kms_err.h"
#include "kmsctl_internal.h"

static int kmsctl_session_row(const struct store_remembered *r, void *arg)
{
	char ns[24];

	if (r->host_ns)
		snprintf(ns, sizeof(ns), "host");
	else
		snprintf(ns, sizeof(ns), "%" PRIu64, r->mntns);
	printf("%-16s  %-32s  %-10" PRIu32 "  %-20s  %s\n", r->claims.id, r->host, r->uid, ns,
	       r->project);
	(*(size_t *)arg)++;
	return 0;
}

int kmsctl_sessions_list(struct store *s)
{
	size_t unreadable = 0, n = 0;
	int r;

	printf("\nbound (remembered across daemon restarts):\n%-16s  %-32s  %-10s  %-20s  %s\n",
	       "TOKEN", "HOST", "UID", "NAMESPACE", "PROJECT");
	r = store_session_list(s, NULL, kmsctl_session_row, &n, &unreadable);
	if (r == 0 && n == 0)
		printf("(none)\n");
	if (unreadable)
		fprintf(stderr,
			"kmsctl: %zu remembered binding(s) cannot be unsealed under this root key "
			"(damaged, or sealed under another one); daemons ignore them\n",
			unreadable);
	return r;
}

int kmsctl_sessions_forget(struct store *s, const char *token_id)
{
	size_t n = 0;
	int r = store_session_purge(s, NULL, token_id, false, 0, &n);

	if (r == 0 && n)
		fprintf(stderr, "kmsctl: dropped %zu remembered binding(s) of token %s\n", n,
			token_id);
	return r;
}
