/* kmsctl_audit.c - the audit trail of administrative changes (kmsctl_internal.h): kmsctl appends
 * its lines to the daemon's trail (src/audit/: the same format, MAC chain and flock), so one file
 * records the requests and the administrators' changes in the order they happened. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/kms_audit.h"
#include "auth/kms_auth.h"
#include "common/kms_err.h"
#include "common/kms_secmem.h"
#include "kmsctl_internal.h"

/* --audit FILE */
const char *kmsctl_audit_file;

struct kmsctl_audit {
	struct audit_trail *trail; /* NULL until the key is known (init) */
	int fd;			   /* the file's, until the trail has it */
	bool reserved;
	char state[4096], path[4096];
	struct audit_event who;
	char cgroup[1024];
};

/* Which trail: --audit FILE, else the one the daemon of state records (kmsfs -o audit writes
 * STATE/audit.path), else none (false). */
static bool kmsctl_audit_where(const char *state, char *path, size_t cap)
{
	char rec[4200];
	FILE *f;
	bool found = false;

	if (kmsctl_audit_file) {
		snprintf(path, cap, "%s", kmsctl_audit_file);
		return true;
	}
	snprintf(rec, sizeof(rec), "%s/audit.path", state);
	f = fopen(rec, "re");
	if (!f)
		return false;
	if (fgets(path, (int)cap, f)) {
		path[strcspn(path, "\n")] = 0;
		found = path[0] != 0;
	}
	fclose(f);
	return found;
}

static int kmsctl_audit_fail(struct kmsctl_audit *a, const char *what)
{
	fprintf(stderr, "kmsctl: the audit trail '%s' %s: %s; nothing was changed\n", a->path, what,
		strerror(errno));
	if (a->trail)
		audit_close(a->trail);
	else if (a->fd >= 0)
		close(a->fd);
	free(a);
	return EXIT_STATE;
}

/* The trail keyed with the state secret "audit.key" of s. */
static int kmsctl_audit_start(struct kmsctl_audit *a, struct store *s)
{
	uint8_t *key = kms_secret_alloc(AUDIT_KEY_BYTES);
	int r = key ? store_state_secret(s, "audit.key", key) : KMS_E_NOMEM;

	if (r == 0 && audit_open(a->fd, a->path, key, &a->who, false, &a->trail) == 0)
		a->fd = -1;
	else if (r == 0)
		r = KMS_E_IO;
	kms_secret_free(key, AUDIT_KEY_BYTES);
	return r;
}

int kmsctl_audit_open(const char *state, struct store *s, struct kmsctl_audit **out)
{
	struct kmsctl_audit *a;
	struct stat st;
	int r;

	*out = NULL;
	a = calloc(1, sizeof(*a));
	if (!a) {
		fprintf(stderr, "kmsctl: out of memory\n");
		return EXIT_STATE;
	}
	a->fd = -1;
	if (!state || !kmsctl_audit_where(state, a->path, sizeof(a->path))) {
		free(a);
		return 0;
	}
	snprintf(a->state, sizeof(a->state), "%s", state);
	a->who = (struct audit_event){ .uid = getuid(),
				       .gid = getgid(),
				       .pid = getpid(),
				       .process = "kmsctl",
				       .cgroup = a->cgroup,
				       .user = AUTH_USER_HOST_ADMIN };
	audit_self_workload(&a->who.mntns, a->cgroup, sizeof(a->cgroup));
	/* O_NONBLOCK: a FIFO put there must not hang us; it is refused below. */
	a->fd = open(a->path, O_RDWR | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC,
		     0600);
	if (a->fd < 0)
		return kmsctl_audit_fail(a, "cannot be opened");
	if (fstat(a->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		errno = EINVAL;
		return kmsctl_audit_fail(a, "is not a regular file");
	}
	if (fcntl(a->fd, F_SETFL, O_APPEND) != 0)
		return kmsctl_audit_fail(a, "cannot be used");
	if (!s) { /* init: the key exists once the store does; the line is written then */
		*out = a;
		return 0;
	}
	r = kmsctl_audit_start(a, s);
	if (r < 0) {
		errno = r == KMS_E_IO ? errno : EIO;
		fprintf(stderr, "kmsctl: cannot read the audit key of '%s': %s\n", state,
			kms_err_info(r)->message);
		return kmsctl_audit_fail(a, "cannot be written");
	}
	/* Room for the line, so the change is never made and then left unrecorded. */
	if (audit_reserve(a->trail) != 0)
		return kmsctl_audit_fail(a, "has no room for a line");
	a->reserved = true;
	*out = a;
	return 0;
}

static void kmsctl_audit_free(struct kmsctl_audit *a)
{
	if (a->trail)
		audit_close(a->trail);
	else if (a->fd >= 0)
		close(a->fd);
	free(a);
}

int kmsctl_audit_close(struct kmsctl_audit *a, const char *action, const char *project,
		       const char *object_id, int err)
{
	struct audit_event e;
	struct store *s = NULL;
	int r = 0;

	if (!a)
		return 0;
	if (!action) /* the API hook wrote the lines (kmsctl_audit_service) */
		goto out;
	if (!a->trail && kmsctl_open_store(a->state, kmsctl_store_uri, false, true, &s) == 0) {
		r = kmsctl_audit_start(a, s);
		store_close(s);
	}
	e = a->who;
	e.action = action;
	e.project = project;
	e.object_id = object_id;
	e.status = err ? kms_err_info(err)->http : 200;
	e.error_code = err ? kms_err_info(err)->code : "";
	if (r < 0 || !a->trail || audit_write(a->trail, &e, a->reserved) != 0) {
		fprintf(stderr, "kmsctl: %s: the audit line could not be written to '%s': %s\n",
			action, a->path, err ? "the change failed as well" : "the change WAS made");
		r = EXIT_STATE;
	}
out:
	kmsctl_audit_free(a);
	return r < 0 ? EXIT_STATE : r;
}

/* api_audit_fn of kmsctl call: the request's line, as the daemon's with kmsctl as the caller. */
static int kmsctl_audit_api(void *ctx, const struct api_caller *c, const struct api_outcome *o)
{
	struct kmsctl_audit *a = ctx;
	struct audit_event e = a->who;

	e.project = c->project;
	e.key_id = o->key_id;
	e.action = o->action;
	e.status = o->http;
	e.error_code = o->error_code;
	e.sequence = o->sequence;
	e.object_id = o->object_id;
	return audit_write(a->trail, &e, o->reserved);
}

static int kmsctl_audit_api_reserve(void *ctx)
{
	struct kmsctl_audit *a = ctx;

	return audit_reserve(a->trail);
}

void kmsctl_audit_service(struct kmsctl_audit *a, struct api_service *svc)
{
	if (!a || !a->trail)
		return;
	svc->audit = kmsctl_audit_api;
	svc->audit_reserve = kmsctl_audit_api_reserve;
	svc->audit_ctx = a;
}
