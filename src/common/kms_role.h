/* kms_role.h - the roles a caller can hold in a project: one enum for every layer.
 *
 * The store keeps them (role bindings, token records), auth signs them into tokens, api decides
 * with them. Ordered: a higher role may do everything a lower one may.
 */
#pragma once

enum kms_role {
	KMS_ROLE_NONE = 0,
	KMS_ROLE_VIEWER = 1, /* describe and list */
	KMS_ROLE_CRYPTO = 2, /* + data keys, data, random */
	KMS_ROLE_ADMIN = 3,  /* everything */
};

/* "viewer", "crypto", "admin"; "none" for anything else. */
const char *kms_role_name(enum kms_role role);
/* KMS_ROLE_NONE for an unknown name or NULL. */
enum kms_role kms_role_parse(const char *name);
