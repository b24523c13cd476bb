/* kms_common.h - attributes and tiny helpers shared by every layer. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define KMS_WUR		  __attribute__((warn_unused_result))
#define KMS_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define KMS_UNUSED	  __attribute__((unused))

/* FNV-1a over a C string: the one hash of the in-memory indexes (key cache, tree). Not for
 * anything an attacker could exploit by collisions beyond a longer probe: indexes hold only
 * names that exist. */
static inline uint64_t kms_fnv1a(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}
