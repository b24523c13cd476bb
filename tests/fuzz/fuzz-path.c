/* fuzz-path: the path resolver. The input is a path; each component goes through
 * fs_lookup_step() from the root down, as lookups do. Properties: no crash, a step only says a
 * child exists for names that fit its kind, alias names survive encode/decode, and inode numbers
 * decode to the node they encode. */
#include <stdlib.h>
#include <string.h>

#include "fs/fs_internal.h"
#include "fuzz.h"

static void fuzz_check_ino(const struct fs_node *n)
{
	struct fs_node back;

	if (n->type == FS_ROOT)
		return;
	if (!fs_node_from_ino(fs_node_ino(n), &back) || back.type != n->type ||
	    back.action != n->action || back.project != (n->project & 0xffff) || back.key != n->key)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[1024], alias[KMS_MAX_ALIAS + 1], again[3 * KMS_MAX_ALIAS + 1];
	char back[KMS_MAX_ALIAS + 1];
	enum fs_node_type parent = FS_ROOT, child;
	struct fs_node n = { 0 };
	char *save = NULL;
	uint8_t action = 0;

	if (size >= sizeof(path) || memchr(data, 0, size))
		return 0;
	memcpy(path, data, size);
	path[size] = 0;
	for (char *c = strtok_r(path, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		if (fs_lookup_step(parent, c, &child, &action, alias, sizeof(alias)) < 0)
			break;
		if (child == FS_PROJECT_DIR && !store_project_id_valid(c))
			abort();
		if ((child == FS_PROJECT_ACTION || child == FS_KEY_ACTION) &&
		    (action >= api_action_count() || strcmp(api_action_at(action)->name, c) != 0))
			abort();
		if (child == FS_ALIAS_LINK) {
			fs_alias_encode(alias, again, sizeof(again));
			if (!fs_alias_decode(again, back, sizeof(back)) || strcmp(back, alias) != 0)
				abort();
		}
		n.type = child;
		n.action = action;
		n.project = (uint32_t)size;
		n.key = child == FS_KEY_DIR || child == FS_KEY_ACTION || child == FS_ALIAS_LINK
				? (uint32_t)(size * 2654435761u)
				: FS_NO_KEY;
		fuzz_check_ino(&n);
		parent = child;
	}
	return 0;
}
