/* Per-uid shares of the daemon's pools (docs/operations.md, Limits). Every pool has a daemon-wide
 * bound and each uid may take at most a quarter of it, so one uid that holds thousands of
 * half-written requests or idle handles leaves the rest to the others. A handle's use is charged to
 * the uid that opened it (the identity it runs with), whoever writes to it later. */
#include <stdlib.h>

#include "fs_internal.h"

static const size_t fs_pool_max[FS_POOLS] = {
	[FS_POOL_HANDLES] = FS_MAX_OPEN_HANDLES,  [FS_POOL_REQUEST_BYTES] = FS_MAX_BUFFERED_BYTES,
	[FS_POOL_HELD_BYTES] = FS_MAX_HELD_BYTES, [FS_POOL_MAILBOXES] = FS_MAX_MAILBOXES,
	[FS_POOL_BINDINGS] = FS_MAX_BINDINGS,
};

size_t fs_pool_limit(enum fs_pool p)
{
	return fs_pool_max[p];
}

size_t fs_pool_share(enum fs_pool p)
{
	return fs_pool_max[p] / FS_UID_SHARE_DIVISOR;
}

static size_t fs_uid_bucket(uid_t uid)
{
	return ((uint32_t)uid * 2654435761u) % FS_UID_BUCKETS;
}

static struct fs_uid *fs_uid_find_pin(struct fs *fs, uid_t uid)
{
	struct fs_uid *u;

	for (u = fs->uids[fs_uid_bucket(uid)]; u; u = u->next) {
		if (u->uid == uid) {
			__atomic_add_fetch(&u->refs, 1, __ATOMIC_RELAXED);
			return u;
		}
	}
	return NULL;
}

/* Every open comes here: a read lock, so that opens never wait for each other; the entry is
 * created (write lock) only the first time a uid shows up, and freed only under the write lock
 * while nothing pins it. */
struct fs_uid *fs_uid_get(struct fs *fs, uid_t uid)
{
	struct fs_uid *u;
	size_t b = fs_uid_bucket(uid);

	pthread_rwlock_rdlock(&fs->uid_lock);
	u = fs_uid_find_pin(fs, uid);
	pthread_rwlock_unlock(&fs->uid_lock);
	if (u)
		return u;
	pthread_rwlock_wrlock(&fs->uid_lock);
	u = fs_uid_find_pin(fs, uid);
	if (!u) {
		u = calloc(1, sizeof(*u));
		if (u) {
			u->uid = uid;
			u->refs = 1;
			u->audit_tokens = FS_AUDIT_REFUSAL_BURST;
			u->next = fs->uids[b];
			fs->uids[b] = u;
		}
	}
	pthread_rwlock_unlock(&fs->uid_lock);
	return u;
}

void fs_uid_pin(struct fs_uid *u)
{
	__atomic_add_fetch(&u->refs, 1, __ATOMIC_RELAXED);
}

void fs_uid_put(struct fs_uid *u)
{
	if (u)
		__atomic_sub_fetch(&u->refs, 1, __ATOMIC_RELEASE);
}

bool fs_share_take(struct fs *fs, struct fs_uid *u, enum fs_pool p, size_t n)
{
	if (__atomic_add_fetch(&u->used[p], n, __ATOMIC_RELAXED) > fs_pool_share(p)) {
		__atomic_sub_fetch(&u->used[p], n, __ATOMIC_RELAXED);
		return false;
	}
	if (__atomic_add_fetch(&fs->pool_used[p], n, __ATOMIC_RELAXED) > fs_pool_max[p]) {
		__atomic_sub_fetch(&fs->pool_used[p], n, __ATOMIC_RELAXED);
		__atomic_sub_fetch(&u->used[p], n, __ATOMIC_RELAXED);
		return false;
	}
	return true;
}

void fs_share_give(struct fs *fs, struct fs_uid *u, enum fs_pool p, size_t n)
{
	if (!n)
		return;
	__atomic_sub_fetch(&u->used[p], n, __ATOMIC_RELAXED);
	__atomic_sub_fetch(&fs->pool_used[p], n, __ATOMIC_RELAXED);
}

bool fs_share_room(struct fs *fs, const struct fs_uid *u, enum fs_pool p, size_t n)
{
	return __atomic_load_n(&u->used[p], __ATOMIC_RELAXED) + n <= fs_pool_share(p) &&
	       __atomic_load_n(&fs->pool_used[p], __ATOMIC_RELAXED) + n <= fs_pool_max[p];
}

static bool fs_uid_idle(const struct fs_uid *u, bool audit_idle)
{
	if (!audit_idle)
		return false;
	if (__atomic_load_n(&u->refs, __ATOMIC_ACQUIRE) != 0)
		return false;
	for (size_t p = 0; p < FS_POOLS; p++)
		if (__atomic_load_n(&u->used[p], __ATOMIC_RELAXED) != 0)
			return false;
	return true;
}

void fs_uids_sweep(struct fs *fs, bool all)
{
	pthread_rwlock_wrlock(&fs->uid_lock);
	for (size_t b = 0; b < FS_UID_BUCKETS; b++) {
		struct fs_uid **pp = &fs->uids[b];

		while (*pp) {
			struct fs_uid *u = *pp;

			bool audit_idle = fs_audit_summary(fs, u);

			if (all || fs_uid_idle(u, audit_idle)) {
				*pp = u->next;
				free(u);
			} else {
				pp = &u->next;
			}
		}
	}
	pthread_rwlock_unlock(&fs->uid_lock);
}
