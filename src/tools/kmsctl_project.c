/* kmsctl_project.c - project bind/unbind --cgroup PATH and the cgroup lines of project show
 * (kmsctl_internal.h). The uid/gid bindings and the project's modes are in kmsctl.c. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "common/kms_err.h"
#include "kmsctl_internal.h"

#define KMSCTL_CGROUP_USAGE                                                                        \
	"kmsctl: usage: project bind P --cgroup PATH --role admin|crypto|viewer | project unbind " \
	"P --cgroup PATH\n"

bool kmsctl_project_cgroup_wanted(int argc, char **argv)
{
	for (int i = 3; i < argc; i++)
		if (strcmp(argv[i], "--") == 0)
			return false;
		else if (strncmp(argv[i], "--cgroup", 8) == 0 && (!argv[i][8] || argv[i][8] == '='))
			return true;
	return false;
}

/* The cgroup path and role of bind/unbind P --cgroup PATH [--role R]; false: a usage error, said
 * on stderr. */
static bool kmsctl_cgroup_args(int argc, char **argv, bool unbind, const char **path,
			       enum kms_role *role)
{
	static const struct option opts[] = {
		{ "cgroup", required_argument, NULL, 'c' },
		{ "role", required_argument, NULL, 'r' },
		{ NULL, 0, NULL, 0 },
	};
	char why[160];
	int c;

	*path = NULL;
	*role = KMS_ROLE_NONE;
	optind = 3;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'c' && !*path)
			*path = optarg;
		else if (c == 'r' && !unbind && (*role = kms_role_parse(optarg)) != KMS_ROLE_NONE)
			continue;
		else
			goto bad;
	}
	if (optind != argc || !*path || (!unbind && *role == KMS_ROLE_NONE))
		goto bad;
	if (!store_cgroup_path_valid(*path, why, sizeof(why))) {
		fprintf(stderr, "kmsctl: cannot %s cgroup '%.1100s': %s\n", argv[1], *path, why);
		return false;
	}
	return true;
bad:
	fprintf(stderr, "%s", KMSCTL_CGROUP_USAGE);
	fprintf(stderr, "kmsctl: --cgroup goes with --role (bind) and nothing else; PATH is a "
			"cgroup v2 path as in /proc/PID/cgroup, e.g. /system.slice/app.service\n");
	return false;
}

int kmsctl_project_cgroup(const char *state, int argc, char **argv)
{
	const char *project = argv[2], *path;
	bool unbind = strcmp(argv[1], "unbind") == 0;
	enum kms_role role;
	struct kmsctl_audit *audit = NULL;
	char action[32];
	struct store *s = NULL;
	int r;

	if ((!unbind && strcmp(argv[1], "bind") != 0)) {
		fprintf(stderr, "%s", KMSCTL_CGROUP_USAGE);
		return EXIT_USAGE;
	}
	if (!kmsctl_cgroup_args(argc, argv, unbind, &path, &role))
		return EXIT_USAGE;
	if ((r = kmsctl_open(state, false, &s)) != 0)
		return r;
	if ((r = kmsctl_audit_open(state, s, &audit)) != 0) {
		store_close(s);
		return r;
	}
	r = store_binding_set_cgroup(s, project, path, role);
	store_close(s);
	snprintf(action, sizeof(action), "kmsctl project %s", argv[1]);
	if (kmsctl_audit_close(audit, action, project, path, r) != 0)
		return EXIT_STATE;
	if (r < 0) {
		fprintf(stderr, "kmsctl: %s\n", kms_err_info(r)->message);
		return EXIT_STATE;
	}
	kmsctl_notify_daemon(state);
	return 0;
}

static int kmsctl_cgroup_line(const char *path, enum kms_role role, void *arg)
{
	(void)arg;
	printf("cgroup %s role %s\n", path, kms_role_name(role));
	return 0;
}

int kmsctl_project_show_cgroups(struct store *s, const char *project)
{
	return store_cgroup_binding_list(s, project, kmsctl_cgroup_line, NULL);
}
