/* kmsctl_internal.h - what kmsctl's command files (kmsctl.c, kmsctl_*.c) share. Each command
 * group lives in its own file; kmsctl.c parses the global options and dispatches. */
#pragma once

#include <stdbool.h>

#include "store/kms_store.h"

enum {
	EXIT_API_ERROR = 1,
	EXIT_USAGE = 2,
	EXIT_STATE = 3,
	EXIT_NOT_RUNNING = 4,	/* status: no daemon serves the state directory */
	EXIT_NOT_ANSWERING = 5, /* status: it runs, but its mount does not answer in time */
};

/* Secure heap for the root key, the token secret and the key material one command touches. */
#define KMSCTL_SECURE_HEAP (1024 * 1024)

/* --store URI: NULL for SQLite in the state directory. */
extern const char *kmsctl_store_uri;

/* Opens the store uri (NULL: SQLite) of state; quiet: no message when that fails. Returns 0 or
 * an exit status (EXIT_USAGE, EXIT_STATE) after saying why on stderr. */
int kmsctl_open_store(const char *state, const char *uri, bool create, bool quiet,
		      struct store **s);
/* Opens the store of an existing state directory (--store if given); only init (create) may
 * make one. The process is hardened first so the root key is read into the secure heap. */
int kmsctl_open(const char *state, bool create, struct store **s);
/* Tell the daemon serving state (if any) to re-read the policy now. */
void kmsctl_notify_daemon(const char *state);
