#include "kms_err.h"

#include <errno.h>

static const struct kms_err_info kms_err_table[] = {
#define KMS_ERR_ROW_(name, c, h, e, m) { #name, c, h, e, m },
	KMS_ERRORS(KMS_ERR_ROW_)
#undef KMS_ERR_ROW_
};

_Static_assert(KMS_ARRAY_SIZE(kms_err_table) == (size_t)(KMS__E_END - KMS__E_FIRST - 1),
	       "error table and enum out of step");

const struct kms_err_info *kms_err_info(int err)
{
	if (err <= KMS__E_FIRST || err >= KMS__E_END)
		err = KMS_E_INTERNAL;
	return &kms_err_table[err - KMS__E_FIRST - 1];
}
