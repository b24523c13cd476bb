/* kmsctl_internal.h - what kmsctl's command files (kmsctl.c, kmsctl_*.c) share. Each command
 * group lives in its own file; kmsctl.c parses the global options and dispatches. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api/kms_api.h"
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
/* --root-key LOC (file or pkcs11: URI), --pkcs11-module PATH, --pkcs11-pin-file FILE: NULL for
 * the defaults (the store's recorded token, else DIR/root.key; p11-kit's proxy; the URI's). */
extern const char *kmsctl_root_key, *kmsctl_pkcs11_module, *kmsctl_pkcs11_pin_file;

/* Opens the store uri (NULL: SQLite) of state; quiet: no message when that fails. Returns 0 or
 * an exit status (EXIT_USAGE, EXIT_STATE) after saying why on stderr. */
int kmsctl_open_store(const char *state, const char *uri, bool create, bool quiet,
		      struct store **s);
/* The options every store kmsctl opens gets: state's root key (the default location, or what
 * the root-key options name); the caller sets backend, create, read_only. */
void kmsctl_store_options(const char *state, struct store_options *opt);
/* kmsctl_open_store on the SQLite file db_file (NULL: kms.db of state, or uri) under state's
 * root key, read-only if read_only (backup and restore open backup files so). */
int kmsctl_open_file(const char *state, const char *uri, const char *db_file, bool create,
		     bool read_only, bool quiet, struct store **s);
/* Opens the store of an existing state directory (--store if given); only init (create) may
 * make one. The process is hardened first so the root key is read into the secure heap. */
int kmsctl_open(const char *state, bool create, struct store **s);
/* Progress of a long command on a terminal: "kmsctl: VERB done of total UNIT, rate, time left",
 * rewritten in place (store_copy_progress_fn, store_rotate_progress_fn). */
struct kmsctl_progress {
	int64_t start_ms, last_ms;
	bool shown;
	const char *verb, *unit;
};
void kmsctl_progress_show(size_t done, size_t total, void *arg);
/* kmsctl_root.c: root-key rotate. */
int kmsctl_root_command(const char *state, int argc, char **argv);

/* Tell the daemon serving state (if any) to re-read the policy now. */
void kmsctl_notify_daemon(const char *state);

/* kmsctl_sessions.c: the token bindings daemons remember (token list prints them after the
 * tokens, never a token; token revoke drops those of the token on every host). */
int kmsctl_sessions_list(struct store *s);
int kmsctl_sessions_forget(struct store *s, const char *token_id);

/* The audit trail of administrative changes (kmsctl_audit.c): every command that changes
 * something opens it before the change and closes it with the outcome after, so a change is
 * never made that the trail cannot record (fail-closed, like the daemon's requests). */
struct kmsctl_audit;
/* Open the trail (--audit FILE, else the one the daemon of state writes with -o audit, else
 * none: *out NULL) and make sure the line can be written. Returns 0 or an exit status after
 * saying why on stderr; then the command must not make its change. s: the open store (the
 * trail's MAC key is a state secret), NULL before the store exists (init). */
int kmsctl_audit_open(const char *state, struct store *s, struct kmsctl_audit **out);
/* Write the line and free a (NULL: nothing to do). action: "kmsctl <command>" ("kmsctl token
 * issue", "kmsctl root-key rotate", ...), NULL when kmsctl_audit_service's hook wrote the lines
 * (call: only frees); project and object_id (the token id, key id, cgroup path, file... the
 * change is about) may be NULL; err: 0 or the KMS_E_* the change failed with. Returns 0 or
 * EXIT_STATE (said why on stderr). */
int kmsctl_audit_close(struct kmsctl_audit *a, const char *action, const char *project,
		       const char *object_id, int err);

/* project bind/unbind P --cgroup PATH (kmsctl_project.c): wanted when the arguments after P
 * name --cgroup; the command's exit status. show: P's cgroup bindings, one line each. */
bool kmsctl_project_cgroup_wanted(int argc, char **argv);
int kmsctl_project_cgroup(const char *state, int argc, char **argv);
int kmsctl_project_show_cgroups(struct store *s, const char *project);

/* API requests (kmsctl call) audited through svc's api_audit_fn like the daemon's, one line each
 * with the API's action name, as user "kmsctl" with kmsctl's uid and pid. a NULL: nothing. */
void kmsctl_audit_service(struct kmsctl_audit *a, struct api_service *svc);
/* --audit FILE: the trail kmsctl writes, instead of the one the daemon of the state records. */
extern const char *kmsctl_audit_file;
/* kmsctl audit verify FILE... (kmsctl_audit_verify.c). */
int kmsctl_audit_verify(const char *state, int argc, char **argv);

/* What a store holds, counted through the store's own interface (kmsctl.c); check: also unseal
 * every version as kmsctl check does, reporting what does not on stderr. */
struct kmsctl_counts {
	struct store *s;
	size_t projects, keys, versions, damaged, grants, tags, tokens;
	int err;
};
int kmsctl_count(struct store *s, bool check, struct kmsctl_counts *c);

/* kmsctl_backup.c: backup FILE, restore FILE. */
int kmsctl_backup(const char *state, int argc, char **argv);
