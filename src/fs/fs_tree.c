/* The tree: inode numbers, the project/key registry, lookup, attributes, directory listings. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/kms_err.h"
#include "common/kms_limits.h"
#include "fs_internal.h"

fuse_ino_t fs_node_ino(const struct fs_node *n)
{
	if (n->type == FS_ROOT)
		return FUSE_ROOT_ID;
	return (fuse_ino_t)n->type << 56 | (fuse_ino_t)n->action << 48 |
	       (fuse_ino_t)(n->project & 0xffff) << 32 | n->key;
}

bool fs_node_from_ino(fuse_ino_t ino, struct fs_node *n)
{
	memset(n, 0, sizeof(*n));
	if (ino == FUSE_ROOT_ID) {
		n->type = FS_ROOT;
		return true;
	}
	n->type = (enum fs_node_type)(ino >> 56);
	n->action = (uint8_t)(ino >> 48);
	n->project = (uint32_t)(ino >> 32) & 0xffff;
	n->key = (uint32_t)ino;
	return n->type >= FS_PROJECT_DIR && n->type <= FS_INFO_FILE;
}

/* An alias's dentry is never cached (fs_reply_node), so every path walk through aliases/<alias>
 * looks it up, and the store finds a key by alias only by reading the database and unsealing the
 * key. A small direct-mapped table remembers which key each alias named last; a hit is used only
 * while the store's cached copy of that key still carries the alias. */
#define FS_ALIAS_SLOTS 1024u

struct fs_alias_slot {
	uint64_t hash; /* of (project, alias) */
	uint32_t key;  /* registry index, or FS_NO_KEY */
};

int fs_registry_init(struct fs_registry *r)
{
	memset(r, 0, sizeof(*r));
	pthread_rwlock_init(&r->lock, NULL);
	r->index_cap = 1024;
	r->key_index = calloc(r->index_cap, sizeof(*r->key_index));
	r->alias_slots = calloc(FS_ALIAS_SLOTS, sizeof(*r->alias_slots));
	if (!r->key_index || !r->alias_slots)
		return KMS_E_NOMEM;
	for (size_t i = 0; i < FS_ALIAS_SLOTS; i++)
		r->alias_slots[i].key = FS_NO_KEY;
	return 0;
}

void fs_registry_free(struct fs_registry *r)
{
	free(r->projects);
	free(r->keys);
	free(r->key_index);
	free(r->alias_slots);
	pthread_rwlock_destroy(&r->lock);
}

/* Index of key_id, or FS_NO_KEY. Caller holds the lock. */
static uint32_t fs_key_find_locked(struct fs_registry *r, const char *key_id)
{
	for (size_t i = (size_t)kms_fnv1a(key_id) % r->index_cap;; i = (i + 1) % r->index_cap) {
		uint32_t slot = r->key_index[i];

		if (slot == 0)
			return FS_NO_KEY;
		if (strcmp(r->keys[slot - 1].key_id, key_id) == 0)
			return slot - 1;
	}
}

static int fs_index_grow_locked(struct fs_registry *r)
{
	size_t ncap = r->index_cap * 2;
	uint32_t *idx = calloc(ncap, sizeof(*idx));

	if (!idx)
		return KMS_E_NOMEM;
	for (size_t k = 0; k < r->nkeys; k++) {
		size_t i = (size_t)kms_fnv1a(r->keys[k].key_id) % ncap;

		while (idx[i])
			i = (i + 1) % ncap;
		idx[i] = (uint32_t)k + 1;
	}
	free(r->key_index);
	r->key_index = idx;
	r->index_cap = ncap;
	return 0;
}

int fs_key_register(struct fs *fs, uint32_t project, const struct store_key_meta *m, uint32_t *idx)
{
	struct fs_registry *r = &fs->reg;
	struct fs_key_entry *e;
	uint32_t found;
	size_t i;
	int ret = 0;

	pthread_rwlock_rdlock(&r->lock);
	found = fs_key_find_locked(r, m->key_id);
	if (found != FS_NO_KEY && strcmp(r->keys[found].alias, m->alias) == 0) {
		*idx = found;
		pthread_rwlock_unlock(&r->lock);
		return 0;
	}
	pthread_rwlock_unlock(&r->lock);

	pthread_rwlock_wrlock(&r->lock);
	found = fs_key_find_locked(r, m->key_id);
	if (found != FS_NO_KEY) {
		/* Known key: refresh what may change (the alias). */
		snprintf(r->keys[found].alias, sizeof(r->keys[found].alias), "%s", m->alias);
		*idx = found;
		goto out;
	}
	if (r->nkeys >= UINT32_MAX - 1) {
		ret = KMS_E_NOMEM;
		goto out;
	}
	if ((r->nkeys + 1) * 2 > r->index_cap && (ret = fs_index_grow_locked(r)) < 0)
		goto out;
	if (r->nkeys == r->cap_keys) {
		size_t ncap = r->cap_keys ? r->cap_keys * 2 : 256;
		struct fs_key_entry *k = realloc(r->keys, ncap * sizeof(*k));

		if (!k) {
			ret = KMS_E_NOMEM;
			goto out;
		}
		r->keys = k;
		r->cap_keys = ncap;
	}
	e = &r->keys[r->nkeys];
	memset(e, 0, sizeof(*e));
	snprintf(e->key_id, sizeof(e->key_id), "%s", m->key_id);
	snprintf(e->alias, sizeof(e->alias), "%s", m->alias);
	e->project = project;
	e->creation_ms = m->creation_ms;
	for (i = (size_t)kms_fnv1a(e->key_id) % r->index_cap; r->key_index[i];
	     i = (i + 1) % r->index_cap)
		;
	r->key_index[i] = (uint32_t)r->nkeys + 1;
	*idx = (uint32_t)r->nkeys++;
out:
	pthread_rwlock_unlock(&r->lock);
	return ret;
}

bool fs_key_entry(struct fs *fs, uint32_t idx, struct fs_key_entry *out)
{
	bool ok;

	pthread_rwlock_rdlock(&fs->reg.lock);
	ok = idx < fs->reg.nkeys;
	if (ok)
		*out = fs->reg.keys[idx];
	pthread_rwlock_unlock(&fs->reg.lock);
	return ok;
}

bool fs_project_name(struct fs *fs, uint32_t idx, char out[KMS_MAX_PROJECT_ID + 1])
{
	bool ok;

	pthread_rwlock_rdlock(&fs->reg.lock);
	ok = idx < fs->reg.nprojects;
	if (ok)
		memcpy(out, fs->reg.projects[idx], KMS_MAX_PROJECT_ID + 1);
	pthread_rwlock_unlock(&fs->reg.lock);
	return ok;
}

static bool fs_project_find(struct fs_registry *r, const char *name, uint32_t *idx)
{
	for (size_t i = 0; i < r->nprojects; i++) {
		if (strcmp(r->projects[i], name) == 0) {
			*idx = (uint32_t)i;
			return true;
		}
	}
	return false;
}

int fs_project_index(struct fs *fs, const char *name, uint32_t *idx)
{
	struct fs_registry *r = &fs->reg;
	bool exists = false, found;
	int ret = 0;

	pthread_rwlock_rdlock(&r->lock);
	found = fs_project_find(r, name, idx);
	pthread_rwlock_unlock(&r->lock);
	if (found)
		return 0;
	/* Projects come into being through kmsctl (token issue, call), maybe while we run. */
	if (store_project_exists(fs->store, name, &exists) < 0)
		return -EIO;
	if (!exists)
		return -ENOENT;
	pthread_rwlock_wrlock(&r->lock);
	if (fs_project_find(r, name, idx))
		goto out;
	if (r->nprojects >= FS_MAX_PROJECTS) {
		ret = -ENOSPC;
		goto out;
	}
	if (r->nprojects == r->cap_projects) {
		size_t ncap = r->cap_projects ? r->cap_projects * 2 : 16;
		void *p = realloc(r->projects, ncap * sizeof(*r->projects));

		if (!p) {
			ret = -ENOMEM;
			goto out;
		}
		r->projects = p;
		r->cap_projects = ncap;
	}
	snprintf(r->projects[r->nprojects], KMS_MAX_PROJECT_ID + 1, "%s", name);
	*idx = (uint32_t)r->nprojects++;
out:
	pthread_rwlock_unlock(&r->lock);
	return ret;
}

void fs_alias_encode(const char *alias, char *out, size_t cap)
{
	size_t o = 0;

	for (; *alias && o + 4 < cap; alias++) {
		if (*alias == '/') {
			memcpy(out + o, "%2F", 3);
			o += 3;
		} else {
			out[o++] = *alias;
		}
	}
	out[o] = 0;
}

bool fs_alias_decode(const char *name, char *out, size_t cap)
{
	size_t o = 0;

	for (; *name; name++) {
		if (o + 1 >= cap)
			return false;
		if (*name == '%') {
			if (strncmp(name, "%2F", 3) != 0 && strncmp(name, "%2f", 3) != 0)
				return false;
			out[o++] = '/';
			name += 2;
		} else {
			out[o++] = *name;
		}
	}
	out[o] = 0;
	return o > 0;
}

/* Who asks: the caller of a FUSE request, as the tree's decisions need it. */
struct fs_who {
	fuse_req_t req;
	uid_t uid;
};

static void fs_who_init(fuse_req_t req, struct fs_who *who)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);

	memset(who, 0, sizeof(*who));
	who->req = req;
	who->uid = ctx->uid;
}

/* May the caller see the keys of project: list keys/ and aliases/, look a key or an alias up,
 * read an alias? The API decides (api_caller_may_list: exactly when it would let the caller call
 * list-keys there), with the identity an open would capture now, so the tree never tells a
 * caller more than the API answers it. */
static bool fs_caller_may_list(struct fs *fs, struct fs_who *who, uint32_t project)
{
	char pname[KMS_MAX_PROJECT_ID + 1];
	struct api_caller caller = { 0 };
	struct fs_identity id;
	bool may;

	if (!fs_project_name(fs, project, pname))
		return false;
	fs_identity_view(who->req, fs, project, &id);
	fs_identity_caller(&id, pname, &caller);
	may = api_caller_may_list(&fs->svc, &caller);
	fs_identity_release(&id);
	return may;
}

/* Is the project listed in the root directory for this caller? For root and the project's owner
 * (api_project_owner), and for callers that may see its keys. Anyone may still look a project up
 * by name (that is how a token is bound to it: setfattr on /kms/P). */
static bool fs_caller_sees_project(struct fs *fs, struct fs_who *who, uint32_t project,
				   const char *pname)
{
	return api_project_owner(&fs->svc, pname, who->uid) || fs_caller_may_list(fs, who, project);
}

/* Nodes that name a key: what a caller may only learn with the identity list-keys needs. */
static bool fs_node_names_key(enum fs_node_type t)
{
	return t == FS_KEYS_DIR || t == FS_ALIASES_DIR || t == FS_KEY_DIR || t == FS_ALIAS_LINK;
}

/* EACCES unless the caller of req may see the keys of the project the node lies in. */
static int fs_check_may_list(fuse_req_t req, const struct fs_node *n)
{
	struct fs_who who;

	if (!fs_node_names_key(n->type))
		return 0;
	fs_who_init(req, &who);
	return fs_caller_may_list(fs_from_req(req), &who, n->project) ? 0 : -EACCES;
}

void fs_stat_node(struct fs *fs, const struct fs_node *n, struct stat *st)
{
	struct store_project_policy pol = { 0, 0, 0755, 0644 };
	char pname[KMS_MAX_PROJECT_ID + 1];
	struct fs_key_entry k;
	mode_t file_mode;

	memset(st, 0, sizeof(*st));
	st->st_ino = fs_node_ino(n);
	st->st_atime = st->st_mtime = st->st_ctime = fs->mount_time;
	st->st_blksize = 4096;
	if (n->type == FS_INFO_FILE) {
		fs_info_stat(fs, st);
		return;
	}
	/* Everything inside a project carries its owner, group and modes (kmsctl project set);
	 * with default_permissions the kernel enforces them before a request reaches us. */
	if (n->type != FS_ROOT && fs_project_name(fs, n->project, pname))
		store_project_policy(fs->store, pname, &pol);
	file_mode = pol.mode & 0666;
	if ((n->type == FS_PROJECT_ACTION || n->type == FS_KEY_ACTION) &&
	    api_action_at(n->action)->plaintext)
		file_mode = pol.plaintext_mode & 0666;
	st->st_uid = pol.owner;
	st->st_gid = pol.group;
	switch (n->type) {
	case FS_PROJECT_ACTION:
	case FS_KEY_ACTION:
		/* Content is per handle (direct_io), never in the page cache. The size is the
		 * largest answer there can be, never 0: with size 0 the kernel answers sendfile,
		 * splice and copy_file_range with 0 bytes without asking us (busybox cat and
		 * shutil.copyfile then copy nothing and succeed); with this size it asks, through
		 * the page cache, and fs_op_read refuses, so those readers fall back to read().
		 * Readers that size a buffer from st_size (Node's readFileSync) get any answer. */
		st->st_mode = S_IFREG | file_mode;
		st->st_nlink = 1;
		st->st_size = (off_t)KMS_MAX_RESPONSE;
		break;
	case FS_ALIAS_LINK:
		st->st_mode = S_IFLNK | 0777;
		st->st_nlink = 1;
		st->st_size = (off_t)strlen("../keys/") + KMS_KEY_ID_LEN;
		break;
	case FS_KEY_DIR:
		if (fs_key_entry(fs, n->key, &k))
			st->st_mtime = st->st_ctime = (time_t)(k.creation_ms / 1000);
		/* fall through */
	default:
		st->st_mode = S_IFDIR | (n->type == FS_ROOT ? 0755 : (pol.mode & 07777));
		st->st_nlink = 2;
		break;
	}
}

static void fs_reply_node(fuse_req_t req, const struct fs_node *n)
{
	struct fs *fs = fs_from_req(req);
	struct fuse_entry_param e;

	memset(&e, 0, sizeof(e));
	fs_stat_node(fs, n, &e.attr);
	e.ino = e.attr.st_ino;
	e.attr_timeout = fs->entry_timeout;
	e.entry_timeout = fs->entry_timeout;
	/* The kernel's dentries are shared by all users: one cached for a caller who may see a key
	 * would let any other caller walk through it without asking us. Never cache the name of a
	 * key or an alias, so every path walk through one is a lookup, checked for its caller. */
	if (n->type == FS_KEY_DIR || n->type == FS_ALIAS_LINK)
		e.entry_timeout = 0;
	fuse_reply_entry(req, &e);
}

static int fs_action_index(const char *name, unsigned scope, uint8_t *idx)
{
	for (size_t i = 0; i < api_action_count(); i++) {
		const struct api_action *a = api_action_at(i);

		if ((a->scopes & scope) && strcmp(a->name, name) == 0) {
			*idx = (uint8_t)i;
			return 0;
		}
	}
	return -ENOENT;
}

static uint64_t fs_alias_hash(uint32_t project, const char *alias)
{
	return (uint64_t)(size_t)kms_fnv1a(alias) ^ ((uint64_t)project + 1) * 0x9e3779b97f4a7c15ull;
}

/* The key alias named last in project, if the store's cached copy of it still carries the alias:
 * the store's cache follows every change (update-key-alias, deletion, kmsctl's edits once read). */
static bool fs_alias_recall(struct fs *fs, uint32_t project, const char *pname, const char *alias,
			    struct store_key **out)
{
	uint64_t h = fs_alias_hash(project, alias);
	struct fs_alias_slot slot;
	struct fs_key_entry e;
	struct store_key *k = NULL;

	*out = NULL;
	pthread_rwlock_rdlock(&fs->reg.lock);
	slot = fs->reg.alias_slots[h % FS_ALIAS_SLOTS];
	pthread_rwlock_unlock(&fs->reg.lock);
	if (slot.hash != h || slot.key == FS_NO_KEY || !fs_key_entry(fs, slot.key, &e) ||
	    e.project != project || store_key_get(fs->store, pname, e.key_id, &k) < 0)
		return false;
	if (strcmp(k->meta.alias, alias) != 0) {
		store_key_release(k);
		return false;
	}
	*out = k;
	return true;
}

static void fs_alias_remember(struct fs *fs, uint32_t project, const char *alias, uint32_t idx)
{
	uint64_t h = fs_alias_hash(project, alias);

	pthread_rwlock_wrlock(&fs->reg.lock);
	fs->reg.alias_slots[h % FS_ALIAS_SLOTS] = (struct fs_alias_slot){ h, idx };
	pthread_rwlock_unlock(&fs->reg.lock);
}

static int fs_lookup_key(struct fs *fs, uint32_t project, const char *key_id, const char *alias,
			 uint32_t *idx)
{
	char pname[KMS_MAX_PROJECT_ID + 1];
	struct store_key *k = NULL;
	bool recalled = false;
	int r;

	if (!fs_project_name(fs, project, pname))
		return -ENOENT;
	if (key_id)
		r = store_key_get(fs->store, pname, key_id, &k);
	else if (alias && (recalled = fs_alias_recall(fs, project, pname, alias, &k)))
		r = 0;
	else
		r = store_key_get_by_alias(fs->store, pname, alias, &k);
	if (r == KMS_E_KEY_NOT_FOUND)
		return -ENOENT;
	if (r < 0)
		return -kms_err_errno(r);
	r = fs_key_register(fs, project, &k->meta, idx);
	store_key_release(k);
	if (r < 0)
		return -ENOMEM;
	if (alias && !recalled)
		fs_alias_remember(fs, project, alias, *idx);
	return 0;
}

static bool fs_key_id_shape(const char *s)
{
	size_t n = strlen(s);

	if (n != KMS_KEY_ID_LEN)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'z') || s[i] == '-'))
			return false;
	return true;
}

int fs_lookup_step(enum fs_node_type parent, const char *name, enum fs_node_type *child,
		   uint8_t *action, char *alias, size_t alias_cap)
{
	switch (parent) {
	case FS_ROOT:
		if (fs_info_index(name, action) == 0) {
			*child = FS_INFO_FILE;
			return 0;
		}
		*child = FS_PROJECT_DIR;
		return store_project_id_valid(name) ? 0 : -ENOENT;
	case FS_PROJECT_DIR:
		if (strcmp(name, "keys") == 0) {
			*child = FS_KEYS_DIR;
			return 0;
		}
		if (strcmp(name, "aliases") == 0) {
			*child = FS_ALIASES_DIR;
			return 0;
		}
		*child = FS_PROJECT_ACTION;
		return fs_action_index(name, API_SCOPE_PROJECT, action);
	case FS_KEYS_DIR:
		*child = FS_KEY_DIR;
		return fs_key_id_shape(name) ? 0 : -ENOENT;
	case FS_KEY_DIR:
		*child = FS_KEY_ACTION;
		return fs_action_index(name, API_SCOPE_KEY, action);
	case FS_ALIASES_DIR:
		*child = FS_ALIAS_LINK;
		return fs_alias_decode(name, alias, alias_cap) ? 0 : -ENOENT;
	default:
		return -ENOTDIR;
	}
}

void fs_op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_from_req(req);
	struct fs_node p, n = { 0 };
	char alias[KMS_MAX_ALIAS + 1];
	int r = -ENOENT;

	if (!fs_node_from_ino(parent, &p))
		goto fail;
	n.project = p.project;
	n.key = p.type == FS_KEY_DIR ? p.key : FS_NO_KEY;
	/* Under keys/ and aliases/ the caller's identity comes first: without it every name is
	 * EACCES, whether a key of that name exists or not. */
	if ((p.type == FS_KEYS_DIR || p.type == FS_ALIASES_DIR) &&
	    (r = fs_check_may_list(req, &p)) < 0)
		goto fail;
	if ((r = fs_lookup_step(p.type, name, &n.type, &n.action, alias, sizeof(alias))) < 0)
		goto fail;
	/* What the step says may exist, the store decides whether it does. */
	switch (n.type) {
	case FS_PROJECT_DIR:
		r = fs_project_index(fs, name, &n.project);
		break;
	case FS_KEY_DIR:
		r = fs_lookup_key(fs, p.project, name, NULL, &n.key);
		break;
	case FS_ALIAS_LINK:
		r = fs_lookup_key(fs, p.project, NULL, alias, &n.key);
		break;
	default:
		r = 0;
		break;
	}
	if (r < 0)
		goto fail;
	fs_reply_node(req, &n);
	return;
fail:
	fuse_reply_err(req, -r);
}

void fs_op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_from_req(req);
	struct fs_node n;
	struct stat st;
	int r;

	if (!fs_node_from_ino(ino, &n)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	/* A key dir's times are its creation time: not for a caller who may not list keys (one
	 * that still holds a handle or a working directory from before its token was revoked). */
	if (n.type == FS_KEY_DIR && (r = fs_check_may_list(req, &n)) < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	fs_stat_node(fs, &n, &st);
	fuse_reply_attr(req, &st, fs->entry_timeout);
}

void fs_op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		   struct fuse_file_info *fi)
{
	struct fs_node n;

	/* truncate(f, 0) on a request file is harmless (requests live in handles); else EPERM. */
	if (fs_node_from_ino(ino, &n) && (n.type == FS_PROJECT_ACTION || n.type == FS_KEY_ACTION) &&
	    to_set == FUSE_SET_ATTR_SIZE && attr->st_size == 0) {
		fs_op_getattr(req, ino, fi);
		return;
	}
	fuse_reply_err(req, EPERM);
}

void fs_op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct fs *fs = fs_from_req(req);
	struct fs_key_entry k;
	struct fs_node n;
	char target[64];
	int r;

	if (!fs_node_from_ino(ino, &n) || n.type != FS_ALIAS_LINK || !fs_key_entry(fs, n.key, &k)) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if ((r = fs_check_may_list(req, &n)) < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	snprintf(target, sizeof(target), "../keys/%s", k.key_id);
	fuse_reply_readlink(req, target);
}

/* A directory listing is built whole at opendir and served from the handle: offsets stay valid
 * however the tree changes meanwhile. Except keys/ and aliases/, which may hold any number of
 * keys: they are read from the store a page at a time (FS_DIR_PAGE keys per store_key_list
 * call, the first page at opendir), so a listing holds one page whatever the directory holds.
 * Their entry i (".", "..", then the keys in creation order) has offset i + 1; a key deleted
 * while a listing is read moves the later ones up by one (one may be missed, as a directory
 * changed during readdir allows). */
#define FS_DIR_PAGE 1000u

struct fs_dirbuf {
	char *data;
	size_t len, cap;
	fuse_req_t req;
	/* Held while a readdir replies: the caller may close the directory, and its RELEASEDIR run
	 * on another worker, before that worker has returned from writing the reply. */
	pthread_mutex_t lock;
	/* keys/ and aliases/: data holds entries first .. first + count - 1 of dir's listing;
	 * done when the store had no keys after them. */
	bool paged, done;
	struct fs_node dir;
	size_t first, count;
};

static void fs_dirbuf_free(struct fs_dirbuf *b)
{
	pthread_mutex_destroy(&b->lock);
	free(b->data);
	free(b);
}

static int fs_dir_add(struct fs_dirbuf *b, const char *name, const struct fs_node *n)
{
	struct fs *fs = fs_from_req(b->req);
	struct stat st;
	size_t need = fuse_add_direntry(b->req, NULL, 0, name, NULL, 0);

	if (b->len + need > b->cap) {
		size_t ncap = b->cap ? b->cap * 2 : 4096;
		char *p;

		while (ncap < b->len + need)
			ncap *= 2;
		p = realloc(b->data, ncap);
		if (!p)
			return -ENOMEM;
		b->data = p;
		b->cap = ncap;
	}
	fs_stat_node(fs, n, &st);
	fuse_add_direntry(b->req, b->data + b->len, need, name, &st,
			  b->paged ? (off_t)(b->first + b->count + 1) : (off_t)(b->len + need));
	b->len += need;
	b->count++;
	return 0;
}

/* The bytes of the entry at p (struct fuse_dirent: its header, the name, padding to 8). */
static size_t fs_dirent_size(const char *p)
{
	const struct {
		uint64_t ino, off;
		uint32_t namelen, type;
	} *ent = (const void *)p;

	return (sizeof(*ent) + ent->namelen + 7) & ~(size_t)7;
}

struct fs_list_ctx {
	struct fs *fs;
	struct fs_dirbuf *b;
	struct fs_who *who;
	uint32_t project;
	bool aliases;
};

static int fs_list_project(const char *project, void *arg)
{
	struct fs_list_ctx *c = arg;
	struct fs_node n = { .type = FS_PROJECT_DIR, .key = FS_NO_KEY };

	if (fs_project_index(c->fs, project, &n.project) < 0 ||
	    !fs_caller_sees_project(c->fs, c->who, n.project, project))
		return 0;
	return fs_dir_add(c->b, project, &n) < 0 ? KMS_E_NOMEM : 0;
}

static int fs_list_key(const struct store_key_meta *m, void *arg)
{
	struct fs_list_ctx *c = arg;
	struct fs_node n = { .project = c->project };
	char name[3 * KMS_MAX_ALIAS + 1];

	if (fs_key_register(c->fs, c->project, m, &n.key) < 0)
		return KMS_E_NOMEM;
	if (c->aliases) {
		n.type = FS_ALIAS_LINK;
		fs_alias_encode(m->alias, name, sizeof(name));
	} else {
		n.type = FS_KEY_DIR;
		snprintf(name, sizeof(name), "%s", m->key_id);
	}
	return fs_dir_add(c->b, name, &n) < 0 ? KMS_E_NOMEM : 0;
}

static int fs_list_actions(struct fs_dirbuf *b, const struct fs_node *dir, unsigned scope,
			   enum fs_node_type type)
{
	for (size_t i = 0; i < api_action_count(); i++) {
		const struct api_action *a = api_action_at(i);
		struct fs_node n = {
			.type = type, .project = dir->project, .key = dir->key, .action = (uint8_t)i
		};

		if ((a->scopes & scope) && fs_dir_add(b, a->name, &n) < 0)
			return -ENOMEM;
	}
	return 0;
}

/* The page of keys/ or aliases/ (b->dir) that starts with entry from. */
static int fs_dir_page(struct fs *fs, struct fs_dirbuf *b, size_t from)
{
	struct fs_list_ctx c = { .fs = fs,
				 .b = b,
				 .project = b->dir.project,
				 .aliases = b->dir.type == FS_ALIASES_DIR };
	char pname[KMS_MAX_PROJECT_ID + 1];
	size_t total = 0, skip = from < 2 ? 0 : from - 2;
	int r;

	b->len = 0;
	b->first = from;
	b->count = 0;
	b->done = false;
	if (from == 0 && (r = fs_dir_add(b, ".", &b->dir)) < 0)
		return r;
	if (from <= 1 && (r = fs_dir_add(b, "..", &b->dir)) < 0)
		return r;
	if (!fs_project_name(fs, b->dir.project, pname))
		return -ENOENT;
	r = store_key_list(fs->store, pname, 0, skip, FS_DIR_PAGE, fs_list_key, &c, &total);
	if (r < 0)
		return -kms_err_errno(r);
	b->done = total <= skip + FS_DIR_PAGE;
	return 0;
}

static int fs_fill_dir(struct fs *fs, struct fs_dirbuf *b, const struct fs_node *d)
{
	struct fs_who who;
	struct fs_list_ctx c = { .fs = fs, .b = b, .who = &who, .project = d->project };
	struct fs_node self = *d, n = *d;
	int r;

	if ((r = fs_check_may_list(b->req, d)) < 0)
		return r;
	if (d->type == FS_KEYS_DIR || d->type == FS_ALIASES_DIR) {
		b->paged = true;
		b->dir = *d;
		return fs_dir_page(fs, b, 0);
	}
	if ((r = fs_dir_add(b, ".", &self)) < 0 || (r = fs_dir_add(b, "..", &self)) < 0)
		return r;
	switch (d->type) {
	case FS_ROOT:
		/* .metrics and .status only for who may read them (a lookup by name finds them for
		 * anyone; opening them is EACCES then). */
		n.type = FS_INFO_FILE;
		n.action = fs_metrics_may_read(b->req) ? 0 : UINT8_MAX;
		for (; fs_info_name(n.action); n.action++)
			if ((r = fs_dir_add(b, fs_info_name(n.action), &n)) < 0)
				return r;
		fs_who_init(b->req, &who);
		r = store_project_list(fs->store, fs_list_project, &c);
		return r < 0 ? -EIO : 0;
	case FS_PROJECT_DIR:
		n.type = FS_KEYS_DIR;
		if ((r = fs_dir_add(b, "keys", &n)) < 0)
			return r;
		n.type = FS_ALIASES_DIR;
		if ((r = fs_dir_add(b, "aliases", &n)) < 0)
			return r;
		return fs_list_actions(b, d, API_SCOPE_PROJECT, FS_PROJECT_ACTION);
	case FS_KEY_DIR:
		return fs_list_actions(b, d, API_SCOPE_KEY, FS_KEY_ACTION);
	default:
		return -ENOTDIR;
	}
}

void fs_op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_dirbuf *b = calloc(1, sizeof(*b));
	struct fs_node n;
	int r;

	if (!b) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_init(&b->lock, NULL);
	b->req = req;
	if (!fs_node_from_ino(ino, &n)) {
		r = -ENOENT;
		goto fail;
	}
	if ((r = fs_fill_dir(fs_from_req(req), b, &n)) < 0)
		goto fail;
	b->req = NULL;
	fi->fh = (uint64_t)(uintptr_t)b;
	if (fuse_reply_open(req, fi) == -ENOENT)
		fs_dirbuf_free(b); /* the opendir was interrupted: no release will come */
	return;
fail:
	fs_dirbuf_free(b);
	fuse_reply_err(req, -r);
}

/* Where entry off starts in a paged listing's data, reading the page that holds it first if
 * need be; b->len when there is no such entry. */
static int fs_dir_seek(fuse_req_t req, struct fs_dirbuf *b, size_t off, size_t *start)
{
	int r = 0;

	if (off < b->first || (off >= b->first + b->count && !b->done)) {
		b->req = req;
		r = fs_dir_page(fs_from_req(req), b, off);
		b->req = NULL;
	}
	*start = 0;
	if (off < b->first || off >= b->first + b->count) {
		*start = b->len;
		return r;
	}
	for (size_t i = b->first; i < off; i++)
		*start += fs_dirent_size(b->data + *start);
	return r;
}

void fs_op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		   struct fuse_file_info *fi)
{
	struct fs_dirbuf *b = (struct fs_dirbuf *)(uintptr_t)fi->fh;
	size_t start = off < 0 ? 0 : (size_t)off, end;
	int r;

	pthread_mutex_lock(&b->lock);
	if (b->paged && (r = fs_dir_seek(req, b, start, &start)) < 0) {
		fuse_reply_err(req, -r);
		goto out;
	}
	if (start >= b->len) {
		fuse_reply_buf(req, NULL, 0);
		goto out;
	}
	/* Whole entries only: walk to the last one that fits. */
	end = start;
	while (end < b->len && end + fs_dirent_size(b->data + end) - start <= size)
		end += fs_dirent_size(b->data + end);
	fuse_reply_buf(req, b->data + start, end - start);
out:
	pthread_mutex_unlock(&b->lock);
}

void fs_op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_dirbuf *b = (struct fs_dirbuf *)(uintptr_t)fi->fh;

	if (b) {
		pthread_mutex_lock(&b->lock); /* wait for a readdir still replying */
		pthread_mutex_unlock(&b->lock);
		fs_dirbuf_free(b);
	}
	fuse_reply_err(req, 0);
}
