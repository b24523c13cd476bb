/* kmsctl - administration of a kmsfs state directory: tokens, direct calls, integrity checks.
 * It uses the same store and handlers as the daemon, and works while the daemon runs. */
#include <errno.h>
#include <getopt.h>
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

#ifndef KMSFS_VERSION
#define KMSFS_VERSION "unknown"
#endif

enum { EXIT_API_ERROR = 1, EXIT_USAGE = 2, EXIT_STATE = 3 };

static void kmsctl_usage(FILE *f)
{
	fprintf(f,
		"usage: kmsctl --state DIR COMMAND ...\n"
		"\n"
		"commands:\n"
		"  token issue --project P [--ttl SECONDS] [--user NAME] [--role admin|crypto|viewer]\n"
		"        print a token for P (default ttl 86400, user admin, role admin)\n"
		"  call PROJECT ACTION [JSON|-]\n"
		"        run ACTION on the store as an administrator and print its JSON response;\n"
		"        no JSON means an empty request, - reads the request from stdin\n"
		"  check\n"
		"        unseal every key version with the root key; exit 0 if all are intact\n"
		"\n"
		"exit status: 0 ok, 1 the API answered an error, 2 usage, 3 state directory problem\n");
}

static int kmsctl_open(const char *state, bool create, struct store **s)
{
	struct store_options opt = { .state_dir = state, .create = create };
	char why[512];
	int r;

	if (!state) {
		fprintf(stderr, "kmsctl: --state DIR is required\n");
		return EXIT_USAGE;
	}
	r = store_open(&opt, s, why, sizeof(why));
	if (r < 0) {
		fprintf(stderr, "kmsctl: %s\n", why);
		return EXIT_STATE;
	}
	return 0;
}

static int kmsctl_token(const char *state, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "project", required_argument, NULL, 'p' }, { "ttl", required_argument, NULL, 't' },
		{ "user", required_argument, NULL, 'u' },    { "role", required_argument, NULL, 'r' },
		{ NULL, 0, NULL, 0 },
	};
	const char *project = NULL, *user = "admin", *role_name = "admin";
	uint8_t secret[AUTH_SECRET_BYTES];
	char token[AUTH_TOKEN_MAX + 1], *end;
	long long ttl = 86400;
	struct store *s = NULL;
	enum auth_role role;
	int c, r;

	if (argc < 2 || strcmp(argv[1], "issue") != 0) {
		fprintf(stderr, "kmsctl: usage: token issue --project P [--ttl S] [--user NAME]\n");
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
	role = auth_role_parse(role_name);
	if (!project || !store_project_id_valid(project) || !auth_user_valid(user) ||
	    role == AUTH_ROLE_NONE || optind != argc) {
		fprintf(stderr, "kmsctl: token issue needs --project P (1..64 of [A-Za-z0-9_-]), "
				"a user of [A-Za-z0-9._@-] and a role admin, crypto or viewer\n");
		return EXIT_USAGE;
	}
	if ((r = kmsctl_open(state, true, &s)) != 0)
		return r;
	r = store_project_ensure(s, project);
	if (r == 0)
		r = store_state_secret(s, "token.key", secret);
	if (r == 0)
		r = auth_token_issue(secret, project, user, role, (int64_t)time(NULL) + ttl, token,
				     sizeof(token), NULL);
	kms_wipe(secret, sizeof(secret));
	store_close(s);
	if (r < 0) {
		fprintf(stderr, "kmsctl: cannot issue a token: %s\n", kms_err_info(r)->message);
		return EXIT_STATE;
	}
	printf("%s\n", token);
	return 0;
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
	struct api_caller caller = { .trusted = true };
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
	if ((status = kmsctl_open(state, true, &svc.store)) != 0)
		goto out;
	caller.project = argv[1];
	if (r == 0) {
		size_t deleted, rotated;

		/* Due deletions and rotations happen before anything else looks at keys. */
		r = store_sweep(svc.store, store_now_ms(), &deleted, &rotated);
	}
	if (r == 0 && (r = store_project_ensure(svc.store, argv[1])) == 0)
		r = api_call(&svc, &caller, action, req.data ? req.data : (const uint8_t *)"",
			     req.len, &resp);
	else if (api_error_json(r, &resp) < 0)
		r = KMS_E_INTERNAL;
	fwrite(resp.data, 1, resp.len, stdout);
	status = r < 0 ? EXIT_API_ERROR : 0;
out:
	kms_buf_free(&req);
	kms_buf_free(&resp);
	store_close(svc.store);
	return status;
}

static void kmsctl_check_report(const char *project, const char *key_id, uint32_t version,
				int err, void *arg)
{
	fprintf(stderr, "kmsctl: project '%s' key %s version %u does not unseal: %s\n", project,
		key_id, version, kms_err_info(err)->message);
}

static int kmsctl_check(const char *state)
{
	struct store *s = NULL;
	size_t versions = 0;
	int r;

	if ((r = kmsctl_open(state, false, &s)) != 0)
		return r;
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

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "state", required_argument, NULL, 's' }, { "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },     { NULL, 0, NULL, 0 },
	};
	struct kms_harden_report hr;
	const char *state = NULL;
	int c;

	umask(077);
	kms_harden_process(0, false, &hr);
	while ((c = getopt_long(argc, argv, "+s:hV", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			state = optarg;
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
	if (api_init() < 0) {
		fprintf(stderr, "kmsctl: OpenSSL lacks AES-256-GCM or SHA-256\n");
		return EXIT_STATE;
	}
	argc -= optind;
	argv += optind;
	if (strcmp(argv[0], "token") == 0)
		return kmsctl_token(state, argc, argv);
	if (strcmp(argv[0], "call") == 0)
		return kmsctl_call(state, argc, argv);
	if (strcmp(argv[0], "check") == 0)
		return kmsctl_check(state);
	fprintf(stderr, "kmsctl: unknown command '%s'\n", argv[0]);
	kmsctl_usage(stderr);
	return EXIT_USAGE;
}
