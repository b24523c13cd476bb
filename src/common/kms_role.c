/* kms_role.c - role names. */
#include "kms_role.h"

#include <string.h>

const char *kms_role_name(enum kms_role role)
{
	switch (role) {
	case KMS_ROLE_VIEWER:
		return "viewer";
	case KMS_ROLE_CRYPTO:
		return "crypto";
	case KMS_ROLE_ADMIN:
		return "admin";
	default:
		return "none";
	}
}

enum kms_role kms_role_parse(const char *name)
{
	if (!name)
		return KMS_ROLE_NONE;
	if (strcmp(name, "viewer") == 0)
		return KMS_ROLE_VIEWER;
	if (strcmp(name, "crypto") == 0)
		return KMS_ROLE_CRYPTO;
	if (strcmp(name, "admin") == 0)
		return KMS_ROLE_ADMIN;
	return KMS_ROLE_NONE;
}
