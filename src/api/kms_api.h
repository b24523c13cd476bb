/* kms_api.h - one handler per KMS action: JSON request in, JSON response out. No FUSE.
 *
 * api_call() always leaves a complete response in resp: the action's JSON on success, or
 * {"error":{"error_code":"KMS.xxxx","error_msg":"..."}} on failure, followed by "\n". It returns
 * 0 or the KMS_E_* error the response describes (callers map it to an errno with kms_err_info).
 * The response buffer may hold plaintext key material: callers keep it in a secret kms_buf.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "auth/kms_auth.h"
#include "common/kms_buf.h"
#include "common/kms_common.h"
#include "store/kms_store.h"

enum api_scope {
	API_SCOPE_PROJECT = 1, /* /kms/<P>/<action> */
	API_SCOPE_KEY = 2,     /* /kms/<P>/keys/<key_id>/<action> */
};

struct api_request;
typedef int (*api_handler)(struct api_request *r);

struct api_action {
	const char *name;
	unsigned scopes;	/* API_SCOPE_* bits */
	enum kms_role min_role; /* least role that may call it */
	bool plaintext;		/* response carries plaintext key material */
	api_handler handler;
};

/* What happened to one request, for the audit trail: no secrets in here. */
struct api_outcome {
	const char *action;
	char key_id[KMS_KEY_ID_LEN + 1]; /* the key the request used (or created), if any */
	char object_id[80];		 /* what it created besides a key (create-grant) */
	char sequence[40];		 /* the request's "sequence", if valid */
	int http;			 /* 200 or the error's status */
	const char *error_code;		 /* "KMS.xxxx" or "" */
	/* Who the request ran as: its token's claims or a binding's (NULL: trusted, or none). */
	const struct auth_claims *claims;
	bool reserved; /* audit_reserve() succeeded for this request */
};

struct api_caller;
/* Called once per request (each batch item too) before its response is released. A non-zero
 * return fails the request with KMS.0102: the audit trail fails closed. */
typedef int (*api_audit_fn)(void *ctx, const struct api_caller *caller,
			    const struct api_outcome *outcome);
/* Called before a request runs: makes sure its audit line will fit, so that a change is never
 * made and then reported as failed because its line could not be written. Non-zero fails the
 * request with KMS.0102 before anything happens. */
typedef int (*api_audit_reserve_fn)(void *ctx);

/* The service: shared by all callers, read-only after setup. */
struct api_service {
	struct store *store;
	unsigned key_quota;		    /* per project */
	api_audit_fn audit;		    /* optional */
	api_audit_reserve_fn audit_reserve; /* optional, with audit */
	void *audit_ctx;
};

/* Who asks, where: what the file system captured of the caller, which api_authz.c judges.
 * trusted = an administrator on the host (kmsctl): no token needed. */
struct api_caller {
	const char *project;
	const char *path_key_id; /* key folder the request came through, or NULL */
	bool trusted;
	const struct auth_claims *claims; /* the verified claims of the caller's token, or NULL */
	int auth_error;			  /* why there is no token (KMS_E_TOKEN_*, ...), or 0 */
	/* The role a `kmsctl project bind` binding gave the caller when it opened the handle
	 * (api_bound_role), KMS_ROLE_NONE if none: every request looks the binding up again with
	 * uid, gids and cgroup, and can only narrow it. */
	enum kms_role bound_role;
	uid_t uid;
	gid_t gid;
	const gid_t *gids; /* the primary group and the supplementary ones, for the bindings */
	size_t ngids;
	pid_t pid;
	/* The workload (issue 15): the inode of the caller's mount namespace (/proc/PID/ns/mnt, 0
	 * unknown) and its cgroup v2 path (the 0:: line of /proc/PID/cgroup, "" unknown, NULL for
	 * callers that are not processes such as kmsctl), both read when the handle was opened. */
	uint64_t mntns;
	const char *cgroup;
};

const struct api_action *api_action_find(const char *name, unsigned scope);
size_t api_action_count(void);
const struct api_action *api_action_at(size_t i);

/* One-time process setup (cJSON wipe-on-free hooks, crypto). */
KMS_WUR int api_init(void);

/* The role bindings give caller in its project now: the deepest cgroup binding covering its
 * cgroup, else its uid's binding, else the best of its groups' (gids); KMS_ROLE_NONE if none, or
 * if it has a token, which wins. The file system captures this in caller->bound_role when a
 * handle is opened. */
enum kms_role api_bound_role(const struct api_service *svc, const struct api_caller *caller);
/* May bindings apply to caller at all: not trusted and no token (a token wins). */
bool api_binding_applies(const struct api_caller *caller);

/* May caller run action, judged by who it is alone, before any request body or key is looked
 * at: trusted, or claims (its token, or its binding) of this project, unexpired at now_ms
 * (unix milliseconds), not revoked, with a role that allows the action. 0 if so; KMS_E_FORBIDDEN
 * when the role falls short (a grant on a key may still allow a grantable action: api_call checks
 * that per key); else the KMS_E_TOKEN_* error api_call would answer. api_call decides with this,
 * and api_caller_may_list what the file system shows of a project (its keys and aliases). */
KMS_WUR int api_caller_may(const struct api_service *svc, const struct api_caller *caller,
			   const struct api_action *action, int64_t now_ms);
/* What the file system shows caller: a project's keys and aliases when it may call list-keys
 * there now; the project itself in the root directory to its owner and root (api_project_owner)
 * without asking more, and to who may see its keys. */
bool api_caller_may_list(const struct api_service *svc, const struct api_caller *caller);
bool api_project_owner(const struct api_service *svc, const char *project, uid_t uid);

/* Run one request. Empty or all-blank req means "{}". A body of several lines each holding one
 * JSON object is a batch: one response line per request line, in order, and the return value is
 * 0 unless the caller may not call the action at all (then one error answers the whole batch). */
KMS_WUR int api_call(const struct api_service *svc, const struct api_caller *caller,
		     const struct api_action *action, const uint8_t *req, size_t len,
		     struct kms_buf *resp);

/* Append the error JSON for err (and "\n") to resp. */
KMS_WUR int api_error_json(int err, struct kms_buf *resp);
