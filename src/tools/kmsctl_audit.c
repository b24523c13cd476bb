/* kmsctl_audit.c - the audit trail of administrative changes (kmsctl_internal.h). */
#include <stdlib.h>

#include "kmsctl_internal.h"

/* Placeholder until the audit chain lands: no trail is written yet. */
int kmsctl_audit_open(const char *state, struct store *s, struct kmsctl_audit **out)
{
	(void)state;
	(void)s;
	*out = NULL;
	return 0;
}

int kmsctl_audit_close(struct kmsctl_audit *a, const char *action, const char *project,
		       const char *object_id, int err)
{
	(void)a;
	(void)action;
	(void)project;
	(void)object_id;
	(void)err;
	return 0;
}
