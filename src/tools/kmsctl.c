/* kmsctl - administration of a kmsfs state directory: tokens, direct calls, integrity checks.
 * It uses the same store and handlers as the daemon, and works while the daemon runs. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <cjson/cJSON.h>
#include <sys/file.h>
#include <sys/xattr.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/kms_api.h"
#include "auth/kms_auth.h"
#include "common/kms_err.h"
#include "common/kms_limits.h"
#include "common/kms_secmem.h"
#include "store/kms_store.h"
#include "common/kms_time.h"
#include "kmsctl_internal.h"

#ifndef KMSFS_VERSION
#define KMSFS_VERSION "unknown"
#endif

static void kmsctl_usage(FILE *f)
{
	fprintf(f,
		"usage: kmsctl --state DIR [--store URI] [--root-key LOC] [--pkcs11-module PATH]\n"
		"              [--pkcs11-pin-file FILE] [--audit FILE] COMMAND ...\n"
		"\n"
		"--store URI: the keys are in the PostgreSQL database URI (a libpq URI or keyword\n"
		"string) that several hosts share, not in SQLite in DIR; DIR still holds the root\n"
		"key. Give it to every command that opens the store, as to kmsfs -o store=URI\n"
		"--root-key LOC: the root key file (default DIR/root.key) or a PKCS#11 URI\n"
		"(pkcs11:token=T;object=O;pin-source=file:PIN_FILE); a store whose root key is in "
		"a\n"
		"token remembers the URI. --pkcs11-module PATH (default p11-kit's proxy) and\n"
		"--pkcs11-pin-file FILE as kmsfs -o pkcs11_module, pkcs11_pin_file\n"
		"\n"
		"--audit FILE: write the audit line of every change to FILE (default: the\n"
		"daemon's -o audit file for DIR, if it has one); a change whose line cannot be\n"
		"written is refused\n"
		"\n"
		"commands:\n"
		"  init [--root-key LOC] create the state directory (0700), root key and key "
		"database;\n"
		"        on an existing one it says so and changes nothing. Every other command\n"
		"        refuses a state directory that does not exist. With --store URI it\n"
		"        creates the database's schema, and the root key only if DIR has none\n"
		"  token issue --project P [--ttl SECONDS] [--user NAME] [--role "
		"admin|crypto|viewer]\n"
		"        print a token for P (default ttl 86400, role admin, user: the role's "
		"name;\n"
		"        '" AUTH_USER_HOST_ADMIN "' and uidN are reserved)\n"
		"  token revoke ID     refuse the token with this id from now on (running daemon "
		"too)\n"
		"  token list          ids, users, projects, roles, expiry and state, then where\n"
		"        daemons remember them bound (host, uid, mount namespace, project); never "
		"a token\n"
		"  project set P [--owner USER] [--group GROUP] [--mode MODE] [--plaintext-mode "
		"MODE]\n"
		"        owner, group and directory mode of P's tree (files get MODE & 0666); "
		"actions\n"
		"        returning plaintext keys get --plaintext-mode (default: like the others)\n"
		"  project bind P --uid USER|--gid GROUP|--cgroup PATH --role "
		"admin|crypto|viewer\n"
		"        let that uid or group, or every process in the cgroup v2 PATH or below "
		"it\n"
		"        (/proc/PID/cgroup), use P with that role without a token\n"
		"  project unbind P --uid USER|--gid GROUP|--cgroup PATH\n"
		"  project show P      print P's owner, group, modes and cgroup bindings\n"
		"  call PROJECT ACTION [JSON|-]\n"
		"        run ACTION on the store as an administrator and print its JSON response;\n"
		"        no JSON means an empty request, - reads the request from stdin\n"
		"  check\n"
		"        unseal every key version with the root key; exit 0 if all are intact\n"
		"  status [--json] [--timeout SECONDS]\n"
		"        is the daemon of DIR serving? reads MOUNT/.status (default timeout 5);\n"
		"        a health probe: exit 0 serving, 4 not running, 5 not answering\n"
		"  store copy --to URI\n"
		"        copy every key, version, grant, tag, policy, token record and the token\n"
		"        key into the PostgreSQL database URI (run it again to finish an\n"
		"        interrupted copy), then check that every key version unseals there\n"
		"  audit verify FILE [FILE...]\n"
		"        check the MAC chain of audit files (oldest first): the first line "
		"changed,\n"
		"        removed or inserted, with its number and why (exit 1); 0 if intact\n"
		"  root-key rotate [--to pkcs11:...|--to FILE]\n"
		"        a new root key (beside the current one, or at --to), every sealed key\n"
		"        version and secret re-sealed under it while daemons serve, then the old\n"
		"        one destroyed; run it again to finish an interrupted rotation\n"
		"  backup FILE\n"
		"        write a consistent snapshot of the store (while daemons serve) to FILE:\n"
		"        sealed material only, never the root key; it names the root key\n"
		"        generation it needs\n"
		"  restore FILE\n"
		"        rebuild the store of DIR (or --store URI), which must hold no keys, from\n"
		"        backup FILE under DIR's root key (copy it there first; run it again to\n"
		"        finish an interrupted restore), then check that every version unseals\n"
		"\n"
		"exit status: 0 ok, 1 the API answered an error, 2 usage, 3 state directory "
		"problem,\n"
		"4 no daemon runs (status), 5 the daemon does not answer (status)\n");
}

/* --store URI: NULL for SQLite in the state directory. */
const char *kmsctl_store_uri;
static char *kmsctl_store_kept; /* what kmsctl_store_uri points to, if anything */
const char *kmsctl_root_key, *kmsctl_pkcs11_module, *kmsctl_pkcs11_pin_file;

/* Opens the store uri (NULL: SQLite) of state; quiet: no message when that fails. */
int kmsctl_open_store(const char *state, const char *uri, bool create, bool quiet, struct store **s)
{
	return kmsctl_open_file(state, uri, NULL, create, false, quiet, s);
}

void kmsctl_store_options(const char *state, struct store_options *opt)
{
	*opt = (struct store_options){ .state_dir = state,
				       .root_key = kmsctl_root_key,
				       .pkcs11_module = kmsctl_pkcs11_module,
				       .pkcs11_pin_file = kmsctl_pkcs11_pin_file };
}

int kmsctl_open_file(const char *state, const char *uri, const char *db_file, bool create,
		     bool read_only, bool quiet, struct store **s)
{
	struct store_options opt;
	struct kms_harden_report hr;
	char why[600], file[4200];
	int r;

	kmsctl_store_options(state, &opt);
	opt.backend = uri;
	opt.create = create;
	opt.read_only = read_only;
	if (db_file) {
		snprintf(file, sizeof(file), "sqlite:%s", db_file);
		opt.backend = file;
	}
	if (!state) {
		fprintf(stderr, "kmsctl: --state DIR is required\n");
		return EXIT_USAGE;
	}
	r = store_open_hardened(&opt, KMSCTL_SECURE_HEAP, false, &hr, s, why, sizeof(why));
	if (r < 0) {
		if (!quiet)
			fprintf(stderr, "kmsctl: %s\n", why);
		return EXIT_STATE;
	}
	return 0;
}

/* Opens the store of an existing state directory; only init (create) may make one. The
 * process is hardened first so the root key is read into the secure heap. */
int kmsctl_open(const char *state, bool create, struct store **s)
{
	return kmsctl_open_store(state, kmsctl_store_uri, create, false, s);
}

/* kmsctl --state DIR init: the one command (besides the daemon's first start) that creates a
 * state directory. Idempotent: an existing one is opened to check it and left as it is. */
static int kmsctl_init(const char *state, int argc, char **argv)
{
	uint8_t *secret = NULL;
	char path[4200];
	struct stat st;
	struct store *s = NULL;
	struct kmsctl_audit *audit = NULL;
	bool existed;
	int r;

	if (argc == 3 && strcmp(argv[1], "--root-key") == 0)
		kmsctl_root_key = argv[2];
	else if (argc != 1) {
		fprintf(stderr,
			"kmsctl: usage: kmsctl --state DIR init [--root-key FILE|pkcs11:...]\n");
		return EXIT_USAGE;
	}
	if (!state) {
		fprintf(stderr, "kmsctl: --state DIR is required\n");
		return EXIT_USAGE;
	}
	snprintf(path, sizeof(path), "%s/kms.db", state);
	existed = stat(path, &st) == 0;
	/* A shared store is initialised once its schema and root key check are there. */
	if (kmsctl_store_uri)
		existed = kmsctl_open_store(state, kmsctl_store_uri, false, true, &s) == 0;
	/* Before anything is made; the line is keyed once the store (and its audit key) is. */
	if ((r = kmsctl_audit_open(state, s, &audit)) != 0) {
		store_close(s);
		return r;
	}
	if (!s && (r = kmsctl_open(state, !existed, &s)) != 0) {
		(void)kmsctl_audit_close(audit, "kmsctl init", NULL, NULL, KMS_E_IO);
		return r;
	}
	secret = kms_secret_alloc(AUTH_SECRET_BYTES);
	r = secret ? store_state_secret(s, "token.key", secret) : KMS_E_NOMEM;
	kms_secret_free(secret, AUTH_SECRET_BYTES);
	store_close(s);
	if (kmsctl_audit_close(audit, "kmsctl init", NULL, NULL, r) != 0 && r == 0)
		return EXIT_STATE;
	if (r < 0) {
		fprintf(stderr, "kmsctl: cannot create the token key in '%s': %s\n", state,
			kms_err_info(r)->message);
		return EXIT_STATE;
	}
	if (kmsctl_store_uri) {
		char shown[512];

		store_uri_describe(kmsctl_store_uri, shown, sizeof(shown));
		printf(existed ? "kmsctl: state directory '%s' and key store %s are already "
				 "initialised; nothing changed\n"
			       : "kmsctl: initialised state directory '%s' and key store %s\n",
		       state, shown);
		return 0;
	}
	printf(existed ? "kmsctl: state directory '%s' is already initialised; nothing changed\n"
		       : "kmsctl: initialised state directory '%s'\n",
	       state);
	return 0;
}

static int kmsctl_token_row(const struct store_token_info *t, void *arg)
{
	char when[32];
	time_t exp = (time_t)t->expiry;
	struct tm tm;

	gmtime_r(&exp, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	printf("%-16s  %-20s  %-16s  %-6s  %s  %s\n", t->id, t->project, t->user,
	       kms_role_name(t->role), when,
	       t->revoked ? "revoked" : (t->expiry <= (int64_t)time(NULL) ? "expired" : "valid"));
	return 0;
}

static int kmsctl_token_admin(const char *state, int argc, char **argv)
{
	struct kmsctl_audit *audit = NULL;
	struct store *s = NULL;
	int r;

	if ((strcmp(argv[1], "revoke") == 0 && argc != 3) ||
	    (strcmp(argv[1], "list") == 0 && argc != 2)) {
		fprintf(stderr, "kmsctl: usage: token revoke ID | token list\n");
		return EXIT_USAGE;
	}
	if ((r = kmsctl_open(state, false, &s)) != 0)
		return r;
	if (strcmp(argv[1], "list") == 0) {
		printf("%-16s  %-20s  %-16s  %-6s  %-20s  %s\n", "ID", "PROJECT", "USER", "ROLE",
		       "EXPIRES", "STATE");
		r = store_token_list(s, kmsctl_token_row, NULL);
		if (r == 0)
			r = kmsctl_sessions_list(s);
	} else if ((r = kmsctl_audit_open(state, s, &audit)) != 0) {
		store_close(s);
		return r;
	} else {
		r = store_token_revoke(s, argv[2]);
		if (kmsctl_audit_close(audit, "kmsctl token revoke", NULL, argv[2], r) != 0) {
			store_close(s);
			return EXIT_STATE;
		}
		if (r == 0)
			r = kmsctl_sessions_forget(s, argv[2]);
		if (r == 0)
			kmsctl_notify_daemon(state);
	}
	store_close(s);
	if (r == KMS_E_TOKEN_INVALID) {
		fprintf(stderr, "kmsctl: no token with id '%s' was issued here\n", argv[2]);
		return EXIT_API_ERROR;
	}
	if (r < 0) {
		fprintf(stderr, "kmsctl: %s\n", kms_err_info(r)->message);
		return EXIT_STATE;
	}
	return 0;
}

static bool kmsctl_parse_id(const char *s, bool group, uint32_t *id)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (*s && !*end && !errno && v < UINT32_MAX) {
		*id = (uint32_t)v;
		return true;
	}
	if (group) {
		struct group *g = getgrnam(s);

		if (g)
			*id = g->gr_gid;
		return g != NULL;
	}
	{
		struct passwd *p = getpwnam(s);

		if (p)
			*id = p->pw_uid;
		return p != NULL;
	}
}

static bool kmsctl_parse_mode(const char *s, uint32_t *mode)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 8);
	if (!*s || *end || errno || v > 0777)
		return false;
	*mode = (uint32_t)v;
	return true;
}

static int kmsctl_project(const char *state, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "owner", required_argument, NULL, 'o' },
		{ "group", required_argument, NULL, 'g' },
		{ "mode", required_argument, NULL, 'm' },
		{ "plaintext-mode", required_argument, NULL, 'P' },
		{ "uid", required_argument, NULL, 'u' },
		{ "gid", required_argument, NULL, 'G' },
		{ "role", required_argument, NULL, 'r' },
		{ NULL, 0, NULL, 0 },
	};
	struct store_project_policy pol;
	const char *sub, *project;
	bool have_plain = false, have_mode = false, bind_uid = false, bind_gid = false;
	uint32_t bind_id = 0;
	enum kms_role role = KMS_ROLE_NONE;
	struct kmsctl_audit *audit = NULL;
	const char *action = NULL;
	char object[32] = "";
	struct store *s = NULL;
	int c, r;

	if (argc < 3 || !store_project_id_valid(argv[2])) {
		fprintf(stderr, "kmsctl: usage: project set|bind|unbind|show P ...\n");
		return EXIT_USAGE;
	}
	if (kmsctl_project_cgroup_wanted(argc, argv))
		return kmsctl_project_cgroup(state, argc, argv);
	sub = argv[1];
	project = argv[2];
	if ((r = kmsctl_open(state, false, &s)) != 0)
		return r;
	store_project_policy(s, project, &pol);
	optind = 3;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			if (!kmsctl_parse_id(optarg, false, &pol.owner))
				goto bad;
			break;
		case 'g':
			if (!kmsctl_parse_id(optarg, true, &pol.group))
				goto bad;
			break;
		case 'm':
			if (!kmsctl_parse_mode(optarg, &pol.mode))
				goto bad;
			have_mode = true;
			break;
		case 'P':
			if (!kmsctl_parse_mode(optarg, &pol.plaintext_mode))
				goto bad;
			have_plain = true;
			break;
		case 'u':
			if (!kmsctl_parse_id(optarg, false, &bind_id))
				goto bad;
			bind_uid = true;
			break;
		case 'G':
			if (!kmsctl_parse_id(optarg, true, &bind_id))
				goto bad;
			bind_gid = true;
			break;
		case 'r':
			role = kms_role_parse(optarg);
			if (role == KMS_ROLE_NONE)
				goto bad;
			break;
		default:
			goto bad;
		}
	}
	if (optind != argc)
		goto bad;
	if (strcmp(sub, "show") != 0) {
		action = strcmp(sub, "set") == 0    ? "kmsctl project set"
			 : strcmp(sub, "bind") == 0 ? "kmsctl project bind"
						    : "kmsctl project unbind";
		if ((r = kmsctl_audit_open(state, s, &audit)) != 0) {
			store_close(s);
			return r;
		}
	}
	if (strcmp(sub, "set") == 0) {
		if (have_mode && !have_plain)
			pol.plaintext_mode = pol.mode & 0666;
		r = store_project_policy_set(s, project, &pol);
	} else if (strcmp(sub, "bind") == 0 || strcmp(sub, "unbind") == 0) {
		bool unbind = strcmp(sub, "unbind") == 0;

		if (bind_uid == bind_gid || (!unbind && role == KMS_ROLE_NONE))
			goto bad;
		snprintf(object, sizeof(object), "%s:%u", bind_uid ? "uid" : "gid", bind_id);
		r = store_binding_set(s, project, bind_uid ? STORE_BIND_UID : STORE_BIND_GID,
				      bind_id, unbind ? KMS_ROLE_NONE : role);
	} else if (strcmp(sub, "show") == 0) {
		printf("project %s: owner %u group %u mode %04o plaintext-mode %04o\n", project,
		       pol.owner, pol.group, pol.mode, pol.plaintext_mode);
		r = kmsctl_project_show_cgroups(s, project);
	} else {
		goto bad;
	}
	store_close(s);
	if (audit && kmsctl_audit_close(audit, action, project, object, r) != 0)
		return EXIT_STATE;
	if (r < 0) {
		fprintf(stderr, "kmsctl: %s\n", kms_err_info(r)->message);
		return EXIT_STATE;
	}
	kmsctl_notify_daemon(state);
	return 0;
bad:
	/* Nothing was changed: the trail gets no line. */
	(void)kmsctl_audit_close(audit, NULL, NULL, NULL, 0);
	store_close(s);
	fprintf(stderr, "kmsctl: usage: project set P [--owner U] [--group G] [--mode 0750] "
			"[--plaintext-mode 0700] | project bind P --uid U|--gid G|--cgroup PATH "
			"--role R | project unbind P --uid U|--gid G|--cgroup PATH | project show "
			"P\n");
	return EXIT_USAGE;
}

static int kmsctl_token(const char *state, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "project", required_argument, NULL, 'p' },
		{ "ttl", required_argument, NULL, 't' },
		{ "user", required_argument, NULL, 'u' },
		{ "role", required_argument, NULL, 'r' },
		{ NULL, 0, NULL, 0 },
	};
	const char *project = NULL, *user = NULL, *role_name = "admin";
	struct auth_claims claims;
	uint8_t *secret = NULL;
	char token[AUTH_TOKEN_MAX + 1], *end;
	long long ttl = 86400;
	struct kmsctl_audit *audit = NULL;
	struct store *s = NULL;
	enum kms_role role;
	int c, r;

	if (argc >= 2 && (strcmp(argv[1], "revoke") == 0 || strcmp(argv[1], "list") == 0))
		return kmsctl_token_admin(state, argc, argv);
	if (argc < 2 || strcmp(argv[1], "issue") != 0) {
		fprintf(stderr, "kmsctl: usage: token issue|revoke|list ...\n");
		return EXIT_USAGE;
	}
	optind = 2;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			project = optarg;
			break;
		case 't':
			errno = 0;
			ttl = strtoll(optarg, &end, 10);
			if (errno || *end || ttl <= 0 || ttl > 10LL * 366 * 86400) {
				fprintf(stderr, "kmsctl: --ttl takes 1..316224000 seconds\n");
				return EXIT_USAGE;
			}
			break;
		case 'u':
			user = optarg;
			break;
		case 'r':
			role_name = optarg;
			break;
		default:
			return EXIT_USAGE;
		}
	}
	role = kms_role_parse(role_name);
	/* One default name per role, so that tokens of different roles never share a principal
	 * unless asked to. */
	if (!user)
		user = kms_role_name(role);
	if (auth_user_reserved(user)) {
		fprintf(stderr,
			"kmsctl: user name '%s' is reserved ('%s' is kmsctl itself, uidN a "
			"uid binding)\n",
			user, AUTH_USER_HOST_ADMIN);
		return EXIT_USAGE;
	}
	if (!project || !store_project_id_valid(project) || !auth_user_valid(user) ||
	    role == KMS_ROLE_NONE || optind != argc) {
		fprintf(stderr, "kmsctl: token issue needs --project P (1..64 of [A-Za-z0-9_-]), "
				"a user of [A-Za-z0-9._@-] and a role admin, crypto or viewer\n");
		return EXIT_USAGE;
	}
	if ((r = kmsctl_open(state, false, &s)) != 0)
		return r;
	if ((r = kmsctl_audit_open(state, s, &audit)) != 0) {
		store_close(s);
		return r;
	}
	claims.id[0] = 0;
	r = store_project_ensure(s, project);
	/* After kmsctl_open: the secure heap exists now. */
	if (r == 0 && !(secret = kms_secret_alloc(AUTH_SECRET_BYTES)))
		r = KMS_E_NOMEM;
	if (r == 0)
		r = store_state_secret(s, "token.key", secret);
	if (r == 0)
		r = auth_token_issue(secret, project, user, role, (int64_t)time(NULL) + ttl, token,
				     sizeof(token), &claims);
	if (r == 0) {
		/* Remember what was issued (never the token) for token list and revoke. */
		struct store_token_info info = { .expiry = claims.expiry,
						 .issued_ms = kms_time_real_ms() };

		snprintf(info.id, sizeof(info.id), "%s", claims.id);
		snprintf(info.project, sizeof(info.project), "%s", claims.project);
		snprintf(info.user, sizeof(info.user), "%s", claims.user);
		info.role = claims.role;
		r = store_token_record(s, &info);
	}
	kms_secret_free(secret, AUTH_SECRET_BYTES);
	store_close(s);
	/* The token's id, never the token. */
	if (kmsctl_audit_close(audit, "kmsctl token issue", project, claims.id, r) != 0) {
		kms_wipe(token, sizeof(token));
		return EXIT_STATE;
	}
	if (r < 0) {
		fprintf(stderr, "kmsctl: cannot issue a token: %s\n", kms_err_info(r)->message);
		return EXIT_STATE;
	}
	printf("%s\n", token);
	return 0;
}

/* The daemon serving state (it holds DIR/daemon.lock and wrote its pid and mount point there,
 * kmsfs.c kmsfs_publish): false when none runs. */
static bool kmsctl_daemon_find(const char *state, int *pid, char *mount, size_t cap)
{
	char path[4200], buf[4200], *nl;
	ssize_t n;
	int fd;
	bool held;

	snprintf(path, sizeof(path), "%s/daemon.lock", state);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	/* A lock we can take is held by no daemon (a stopped one leaves its lines behind). */
	held = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
	n = held ? read(fd, buf, sizeof(buf) - 1) : 0;
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = 0;
	*pid = atoi(buf);
	nl = strchr(buf, '\n');
	if (*pid <= 0 || !nl)
		return false;
	nl++;
	nl[strcspn(nl, "\n")] = 0;
	snprintf(mount, cap, "%s", nl);
	return true;
}

/* Ask the running daemon (if any) to re-read the database now, so a revocation or policy change
 * is in force when this command returns. The daemon also notices within a second by itself. */
void kmsctl_notify_daemon(const char *state)
{
	char mount[4200], buf[1];
	int pid;

	if (!kmsctl_daemon_find(state, &pid, mount, sizeof(mount)) || kill(pid, 0) != 0)
		return;
	(void)getxattr(mount, "user.kms.refresh", buf, 0);
}

static int kmsctl_read_stdin(struct kms_buf *req)
{
	char chunk[4096];
	size_t n;

	while ((n = fread(chunk, 1, sizeof(chunk), stdin)) > 0)
		if (kms_buf_append(req, chunk, n) < 0)
			return KMS_E_TOO_LONG;
	return ferror(stdin) ? KMS_E_IO : 0;
}

static int kmsctl_call(const char *state, int argc, char **argv)
{
	struct kms_buf req = KMS_BUF_INIT(KMS_MAX_REQUEST, true);
	struct kms_buf resp = KMS_BUF_INIT(KMS_MAX_RESPONSE, true);
	struct api_service svc = { .key_quota = KMS_DEFAULT_KEY_QUOTA };
	struct api_caller caller = {
		.trusted = true, .uid = getuid(), .gid = getgid(), .pid = getpid()
	};
	struct kmsctl_audit *audit = NULL;
	const struct api_action *action;
	int r, status;

	if (argc < 3 || argc > 4) {
		fprintf(stderr, "kmsctl: usage: call PROJECT ACTION [JSON|-]\n");
		return EXIT_USAGE;
	}
	if (!store_project_id_valid(argv[1])) {
		fprintf(stderr, "kmsctl: '%s' is not a project id (1..64 of [A-Za-z0-9_-])\n",
			argv[1]);
		return EXIT_USAGE;
	}
	action = api_action_find(argv[2], API_SCOPE_PROJECT);
	if (!action) {
		fprintf(stderr, "kmsctl: unknown action '%s'\n", argv[2]);
		return EXIT_USAGE;
	}
	if (argc == 4 && strcmp(argv[3], "-") == 0)
		r = kmsctl_read_stdin(&req);
	else if (argc == 4)
		r = kms_buf_append_str(&req, argv[3]);
	else
		r = 0;
	if ((status = kmsctl_open(state, false, &svc.store)) != 0)
		goto out;
	/* Each request's line is written by the API's audit hook, as the daemon's are. */
	if ((status = kmsctl_audit_open(state, svc.store, &audit)) != 0)
		goto out;
	kmsctl_audit_service(audit, &svc);
	caller.project = argv[1];
	if (r == 0) {
		size_t deleted, rotated;

		/* Due deletions and rotations happen before anything else looks at keys. */
		r = store_sweep(svc.store, kms_time_real_ms(), &deleted, &rotated);
	}
	if (r == 0 && (r = store_project_ensure(svc.store, argv[1])) == 0)
		r = api_call(&svc, &caller, action, req.data ? req.data : (const uint8_t *)"",
			     req.len, &resp);
	else if (api_error_json(r, &resp) < 0)
		r = KMS_E_INTERNAL;
	fwrite(resp.data, 1, resp.len, stdout);
	status = r < 0 ? EXIT_API_ERROR : 0;
out:
	(void)kmsctl_audit_close(audit, NULL, NULL, NULL, 0);
	kms_buf_free(&req);
	kms_buf_free(&resp);
	store_close(svc.store);
	return status;
}

static void kmsctl_check_report(const char *project, const char *key_id, uint32_t version, int err,
				void *arg)
{
	fprintf(stderr, "kmsctl: project '%s' key %s version %u does not unseal: %s\n", project,
		key_id, version, kms_err_info(err)->message);
}

static int kmsctl_check(const char *state)
{
	struct store *s = NULL;
	size_t versions = 0;
	char why[512];
	int r;

	if ((r = kmsctl_open(state, false, &s)) != 0)
		return r;
	if (store_verify(s, why, sizeof(why)) < 0) {
		fprintf(stderr, "kmsctl: %s\n", why);
		store_close(s);
		return EXIT_STATE;
	}
	r = store_check(s, kmsctl_check_report, NULL, &versions);
	store_close(s);
	if (r < 0) {
		fprintf(stderr, "kmsctl: cannot read the key database: %s\n",
			kms_err_info(r)->message);
		return EXIT_STATE;
	}
	printf("checked %zu key versions: %d damaged keys\n", versions, r);
	return r == 0 ? 0 : EXIT_STATE;
}

/* Read path into out in a child, so a dead mount (a stopped daemon) cannot hang us: the child
 * is killed at the deadline. 0, or an errno (ETIMEDOUT at the deadline). */
static int kmsctl_read_bounded(const char *path, unsigned timeout_s, struct kms_buf *out)
{
	struct pollfd p = { .events = POLLIN };
	int64_t deadline = kms_time_mono_ms() + (int64_t)timeout_s * 1000;
	int fds[2], status = 0, err = 0;
	char chunk[4096];
	pid_t pid;
	ssize_t n;

	if (pipe(fds) != 0)
		return errno;
	pid = fork();
	if (pid < 0) {
		err = errno;
		close(fds[0]);
		close(fds[1]);
		return err;
	}
	if (pid == 0) {
		int fd = open(path, O_RDONLY | O_CLOEXEC);

		close(fds[0]);
		if (fd < 0)
			_exit(errno & 0x7f);
		while ((n = read(fd, chunk, sizeof(chunk))) > 0)
			if (write(fds[1], chunk, (size_t)n) != n)
				_exit(EPIPE);
		_exit(n < 0 ? errno & 0x7f : 0);
	}
	close(fds[1]);
	p.fd = fds[0];
	for (;;) {
		int64_t left = deadline - kms_time_mono_ms();

		if (left <= 0 || poll(&p, 1, (int)left) == 0) {
			err = ETIMEDOUT;
			break;
		}
		n = read(fds[0], chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (kms_buf_append(out, chunk, (size_t)n) < 0) {
			err = EFBIG;
			break;
		}
	}
	close(fds[0]);
	if (err) {
		/* Waiting for a FUSE answer is killable; reap it if it is gone, never wait. */
		kill(pid, SIGKILL);
		usleep(10000);
		waitpid(pid, &status, WNOHANG);
		return err;
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return EIO;
	return WEXITSTATUS(status);
}

static void kmsctl_status_summary(const char *mount, int pid, const cJSON *st)
{
	const cJSON *req = cJSON_GetObjectItemCaseSensitive(st, "requests");
	const cJSON *cache = cJSON_GetObjectItemCaseSensitive(st, "key_cache");
	double up = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(st, "uptime_seconds"));

	printf("kmsfs %s serving %s (pid %d) for %.0f s\n",
	       cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(st, "version")), mount, pid,
	       up);
	printf("requests: %.0f (%.0f errors); open handles: %.0f; mailboxes: %.0f; token "
	       "bindings: %.0f\n",
	       cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(req, "total")),
	       cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(req, "errors")),
	       cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(st, "open_handles")),
	       cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(st, "mailboxes")),
	       cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(st, "token_bindings")));
	printf("key cache: %.0f keys, %.0f hits, %.0f misses\n",
	       cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(cache, "entries")),
	       cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(cache, "hits")),
	       cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(cache, "misses")));
}

/* status: a health probe (systemd, Docker, Kubernetes). Never touches the store: only the lock
 * file and the mount's .status, read with a deadline. */
static int kmsctl_status(const char *state, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "timeout", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	struct kms_buf text = KMS_BUF_INIT(16u * 1024u * 1024u, false);
	char mount[4200], path[4300];
	unsigned long timeout = 5;
	bool json = false;
	cJSON *st = NULL;
	int c, pid, err, ret = EXIT_NOT_ANSWERING;
	char *end;

	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'j') {
			json = true;
		} else if (c == 't' && (timeout = strtoul(optarg, &end, 10)) > 0 && !*end &&
			   timeout <= 3600) {
			continue;
		} else {
			fprintf(stderr, "kmsctl: usage: status [--json] [--timeout SECONDS]\n");
			return EXIT_USAGE;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "kmsctl: usage: status [--json] [--timeout SECONDS]\n");
		return EXIT_USAGE;
	}
	if (!state) {
		fprintf(stderr, "kmsctl: --state DIR is required\n");
		return EXIT_USAGE;
	}
	snprintf(path, sizeof(path), "%s/daemon.lock", state);
	if (access(state, F_OK) != 0 || (access(path, R_OK) != 0 && errno != ENOENT)) {
		fprintf(stderr, "kmsctl: state directory '%s': %s\n", state, strerror(errno));
		return EXIT_STATE;
	}
	if (!kmsctl_daemon_find(state, &pid, mount, sizeof(mount))) {
		fprintf(stderr, "kmsctl: no kmsfs daemon serves '%s'\n", state);
		return EXIT_NOT_RUNNING;
	}
	snprintf(path, sizeof(path), "%s/.status", mount);
	err = kmsctl_read_bounded(path, (unsigned)timeout, &text);
	if (err)
		fprintf(stderr, "kmsctl: the daemon (pid %d) does not answer on %s: %s\n", pid,
			path, err == ETIMEDOUT ? "no answer in time" : strerror(err));
	else if (!(st = cJSON_Parse((const char *)text.data)) ||
		 !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(st, "serving")))
		fprintf(stderr, "kmsctl: %s is not a kmsfs status\n", path);
	else
		ret = 0;
	if (ret == 0 && json)
		fputs((const char *)text.data, stdout);
	else if (ret == 0)
		kmsctl_status_summary(mount, pid, st);
	cJSON_Delete(st);
	kms_buf_free(&text);
	return ret;
}

/* Progress on a terminal (store copy, root-key rotate): one line, rewritten at most five
 * times a second. */
void kmsctl_progress_show(size_t done, size_t total, void *arg)
{
	struct kmsctl_progress *p = arg;
	int64_t now = kms_time_mono_ms();
	double secs = (double)(now - p->start_ms) / 1000.0,
	       rate = secs > 0 ? (double)done / secs : 0;
	char left[32] = "--:--:--";

	if (p->shown && now - p->last_ms < 200 && done < total)
		return;
	p->last_ms = now;
	p->shown = true;
	if (rate > 0 && done > 0) {
		long t = (long)((double)(total - done) / rate + 0.5);

		snprintf(left, sizeof(left), "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
	}
	fprintf(stderr, "\rkmsctl: %s %zu of %zu %s, %.0f %s/s, %s left   ",
		p->verb ? p->verb : "copied", done, total, p->unit ? p->unit : "keys", rate,
		p->unit ? p->unit : "keys", left);
	fflush(stderr);
}

static int kmsctl_count_tag(const char *key_id, const char *tag_key, const char *tag_value,
			    void *arg)
{
	((struct kmsctl_counts *)arg)->tags++;
	return 0;
}

static int kmsctl_count_project(const char *project, void *arg)
{
	struct kmsctl_counts *c = arg;
	size_t n = 0;
	int r = store_key_count(c->s, project, &n);

	c->projects++;
	c->keys += n;
	if (r == 0)
		r = store_tag_list(c->s, project, NULL, kmsctl_count_tag, c);
	return r;
}

static int kmsctl_count_token(const struct store_token_info *t, void *arg)
{
	((struct kmsctl_counts *)arg)->tokens++;
	return 0;
}

/* check: also unseal every version (kmsctl check); reports what does not. */
int kmsctl_count(struct store *s, bool check, struct kmsctl_counts *c)
{
	struct store_grant_filter all = { 0 };
	int r;

	memset(c, 0, sizeof(*c));
	c->s = s;
	r = store_project_list(s, kmsctl_count_project, c);
	if (r == 0)
		r = store_grant_list(s, &all, 0, 0, NULL, NULL, &c->grants);
	if (r == 0)
		r = store_token_list(s, kmsctl_count_token, c);
	if (r == 0 && check) {
		r = store_check(s, kmsctl_check_report, NULL, &c->versions);
		c->damaged = r > 0 ? (size_t)r : 0;
		r = r > 0 ? 0 : r;
	}
	return r;
}

/* kmsctl --state DIR [--store SRC] store copy --to URI: the source (SQLite in DIR by default)
 * into URI under DIR's root key, then the destination checked as kmsctl check does and its
 * counts compared with the source's. */
static int kmsctl_store_copy(const char *state, int argc, char **argv)
{
	struct kmsctl_progress prog = { .start_ms = kms_time_mono_ms(),
					.verb = "copied",
					.unit = "keys" };
	struct kmsctl_counts from, to;
	struct store *src = NULL, *dst = NULL;
	struct kmsctl_audit *audit = NULL;
	char why[600], shown[512];
	const char *uri = NULL;
	int r, ret = EXIT_STATE;

	if (argc == 4 && strcmp(argv[1], "copy") == 0 && strcmp(argv[2], "--to") == 0)
		uri = argv[3];
	else if (argc == 3 && strcmp(argv[1], "copy") == 0 && strncmp(argv[2], "--to=", 5) == 0)
		uri = argv[2] + 5;
	if (!uri || !*uri || strcmp(uri, "sqlite") == 0 ||
	    (kmsctl_store_uri && strcmp(uri, kmsctl_store_uri) == 0)) {
		fprintf(stderr, "kmsctl: usage: kmsctl --state DIR [--store URI] store copy --to "
				"URI (another store than the source, e.g. postgresql://HOST/DB)\n");
		return EXIT_USAGE;
	}
	store_uri_describe(uri, shown, sizeof(shown));
	if ((r = kmsctl_open(state, false, &src)) != 0)
		return r;
	if ((ret = kmsctl_audit_open(state, src, &audit)) != 0) {
		store_close(src);
		return ret;
	}
	ret = EXIT_STATE;
	if (kmsctl_open_store(state, uri, true, false, &dst) != 0) {
		r = KMS_E_STORE_UNAVAILABLE;
		goto out;
	}
	r = store_copy(src, dst, isatty(STDERR_FILENO) ? kmsctl_progress_show : NULL, &prog, why,
		       sizeof(why));
	if (prog.shown)
		fputc('\n', stderr);
	if (r < 0) {
		/* What an outage or a race stopped, another run finishes. */
		fprintf(stderr, "kmsctl: store copy to %s stopped: %s%s\n", shown, why,
			r == KMS_E_STORE_UNAVAILABLE || r == KMS_E_STALE || r == KMS_E_BUSY
				? " (run it again to go on)"
				: "");
		goto out;
	}
	if ((r = kmsctl_count(src, false, &from)) < 0 || (r = kmsctl_count(dst, true, &to)) < 0) {
		fprintf(stderr, "kmsctl: cannot count what %s holds: %s\n", shown,
			kms_err_info(r)->message);
		goto out;
	}
	printf("kmsctl: copied to %s: %zu projects, %zu keys, %zu grants, %zu tags, %zu token "
	       "records\n",
	       shown, to.projects, to.keys, to.grants, to.tags, to.tokens);
	printf("checked %zu key versions: %zu damaged keys\n", to.versions, to.damaged);
	if (to.projects < from.projects || to.keys < from.keys || to.grants < from.grants ||
	    to.tags < from.tags || to.tokens < from.tokens) {
		fprintf(stderr,
			"kmsctl: the source holds more (%zu projects, %zu keys, %zu grants, %zu "
			"tags, %zu token records): it changed while it was copied; run the copy "
			"again\n",
			from.projects, from.keys, from.grants, from.tags, from.tokens);
		goto out;
	}
	ret = to.damaged ? EXIT_STATE : 0;
out:
	/* The destination as shown (never a password). */
	if (kmsctl_audit_close(audit, "kmsctl store copy", NULL, shown,
			       r < 0 ? r : (ret ? KMS_E_IO : 0)) != 0)
		ret = EXIT_STATE;
	store_close(dst);
	store_close(src);
	return ret;
}

static int kmsctl_command(const char *state, int argc, char **argv)
{
	if (strcmp(argv[0], "init") == 0)
		return kmsctl_init(state, argc, argv);
	if (strcmp(argv[0], "token") == 0)
		return kmsctl_token(state, argc, argv);
	if (strcmp(argv[0], "call") == 0)
		return kmsctl_call(state, argc, argv);
	if (strcmp(argv[0], "check") == 0)
		return kmsctl_check(state);
	if (strcmp(argv[0], "project") == 0)
		return kmsctl_project(state, argc, argv);
	if (strcmp(argv[0], "status") == 0)
		return kmsctl_status(state, argc, argv);
	if (strcmp(argv[0], "store") == 0)
		return kmsctl_store_copy(state, argc, argv);
	if (strcmp(argv[0], "root-key") == 0)
		return kmsctl_root_command(state, argc, argv);
	/* Commands in kmsctl_*.c files, one line each. */
	if (strcmp(argv[0], "audit") == 0)
		return kmsctl_audit_verify(state, argc, argv);
	if (strcmp(argv[0], "backup") == 0 || strcmp(argv[0], "restore") == 0)
		return kmsctl_backup(state, argc, argv);
	fprintf(stderr, "kmsctl: unknown command '%s'\n", argv[0]);
	kmsctl_usage(stderr);
	return EXIT_USAGE;
}

/* ps shows no password of --store or --to and no PIN of a root key URI (pin-value=): argv's are
 * overwritten with '*', the command works on copies (kmsctl_store_kept for --store,
 * kmsctl_root_kept for --root-key), in the secure heap where they fit (the plain copy wiped):
 * they live as long as the process. */
static void kmsctl_hide_passwords(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		size_t n = strlen(argv[i]) + 1;
		char *copy = malloc(n), *kept;

		if (!copy)
			continue;
		memcpy(copy, argv[i], n);
		if (!store_uri_hide_password(argv[i])) {
			free(copy);
			continue;
		}
		kept = kms_secret_alloc(n);
		if (kept) {
			memcpy(kept, copy, n);
			kms_wipe(copy, n);
			free(copy);
			copy = kept;
		}
		argv[i] = copy;
	}
}

/* --root-key: a copy in the secure heap (a pkcs11: URI may hold the PIN). */
static char *kmsctl_root_kept;
static size_t kmsctl_root_kept_len;

static void kmsctl_root_forget(void)
{
	kms_secret_free(kmsctl_root_kept, kmsctl_root_kept_len);
	kmsctl_root_kept = NULL;
}

static bool kmsctl_root_keep(const char *arg)
{
	size_t n = strlen(arg) + 1;

	kmsctl_root_forget();
	kmsctl_root_key = kmsctl_root_kept = kms_secret_alloc(n);
	kmsctl_root_kept_len = n;
	if (kmsctl_root_kept)
		memcpy(kmsctl_root_kept, arg, n);
	return kmsctl_root_kept != NULL;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "state", required_argument, NULL, 's' },
		{ "store", required_argument, NULL, 'S' },
		{ "root-key", required_argument, NULL, 'R' },
		{ "pkcs11-module", required_argument, NULL, 'M' },
		{ "pkcs11-pin-file", required_argument, NULL, 'P' },
		{ "audit", required_argument, NULL, 'A' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct kms_harden_report hr;
	const char *state = NULL;
	int c, r;

	umask(077);
	/* Before any secret is read (a request on stdin, the root key): no core, not dumpable,
	 * and the secure heap (kmsctl_open asks again, which changes nothing then). */
	kms_harden_process(KMSCTL_SECURE_HEAP, false, &hr);
	while ((c = getopt_long(argc, argv, "+s:hV", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			state = optarg;
			break;
		case 'S':
			/* A copy: argv's is overwritten where it holds a password (below). */
			kms_free_string_wiped(kmsctl_store_kept); /* may hold a password */
			kmsctl_store_uri = kmsctl_store_kept = strdup(optarg);
			if (!kmsctl_store_kept) {
				fprintf(stderr, "kmsctl: out of memory\n");
				return EXIT_STATE;
			}
			break;
		case 'R':
			if (!kmsctl_root_keep(optarg)) {
				fprintf(stderr, "kmsctl: out of memory\n");
				return EXIT_STATE;
			}
			break;
		case 'M':
			kmsctl_pkcs11_module = optarg;
			break;
		case 'P':
			kmsctl_pkcs11_pin_file = optarg;
			break;
		case 'A':
			kmsctl_audit_file = optarg;
			break;
		case 'h':
			kmsctl_usage(stdout);
			return 0;
		case 'V':
			printf("kmsctl %s\n", KMSFS_VERSION);
			return 0;
		default:
			kmsctl_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		kmsctl_usage(stderr);
		return EXIT_USAGE;
	}
	if (kmsctl_store_uri && (!*kmsctl_store_uri || strcmp(kmsctl_store_uri, "sqlite") == 0))
		kmsctl_store_uri = NULL; /* SQLite in DIR, as without --store */
	/* Copies for the store, then no password left in what ps shows (store copy may run long). */
	kmsctl_hide_passwords(argc, argv);
	if (api_init() < 0) {
		fprintf(stderr, "kmsctl: OpenSSL lacks AES-256-GCM or SHA-256\n");
		return EXIT_STATE;
	}
	argc -= optind;
	argv += optind;
	r = kmsctl_command(state, argc, argv);
	kmsctl_root_forget();
	core_thread_release();
	return r;
}
