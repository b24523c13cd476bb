/* kms_common.h - attributes and tiny helpers shared by every layer. */
#pragma once

#include <stddef.h>

#define KMS_WUR __attribute__((warn_unused_result))
#define KMS_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define KMS_UNUSED __attribute__((unused))
