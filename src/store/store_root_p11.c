/* The root key in a PKCS#11 token (not yet: store_root_open refuses a pkcs11: location). */
#include "store_root_internal.h"

#include <stdio.h>

#include "common/kms_err.h"

int store_root_p11_open(const struct store_root_params *p, struct store_root **out, bool *created,
			char *why, size_t why_len)
{
	(void)p;
	*out = NULL;
	*created = false;
	snprintf(why, why_len, "this kmsfs cannot use a root key in a PKCS#11 token");
	return KMS_E_IO;
}
