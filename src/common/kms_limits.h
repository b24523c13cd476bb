/* kms_limits.h - every bound on user-controlled input, in one place, each with its why. */
#pragma once

/* A request body: the REST API caps bodies too (KMS.0203); 64 KiB holds the largest valid
 * request (encrypt-data of 4096 bytes, an 8192-char encryption_context) with room to spare. */
#define KMS_MAX_REQUEST (64u * 1024u)
/* A response: the largest is list-keys with many key_details; bounded by the key quota. */
#define KMS_MAX_RESPONSE (4u * 1024u * 1024u)
/* JSON nesting: requests are flat objects; encryption_context may hold small objects. */
#define KMS_MAX_JSON_DEPTH 16
/* encryption_context: the API says "maximum length of 8192 characters". */
#define KMS_MAX_CONTEXT 8192u
/* Data keys: Huawei's 8..8192 bits (OTC's fixed 512 is a subset). */
#define KMS_MIN_DATAKEY_BYTES 1u
#define KMS_MAX_DATAKEY_BYTES 1024u
/* encrypt-data plaintext: 1..4096 bytes. */
#define KMS_MAX_DATA_BYTES 4096u
/* A token as set through the xattr: tokens we issue are < 512 bytes. */
#define KMS_MAX_TOKEN 4096u
/* Project ids: 1..64 of [A-Za-z0-9_-]. */
#define KMS_MAX_PROJECT_ID 64u
/* key_alias and key_description: 1..255 / 0..255 characters. */
#define KMS_MAX_ALIAS	    255u
#define KMS_MAX_DESCRIPTION 255u
/* Key ids are UUID strings. */
#define KMS_KEY_ID_LEN 36u
/* Default key quota per project (kms-api.md section 5: 100 custom CMKs). */
#define KMS_DEFAULT_KEY_QUOTA 100u
/* Material versions of a key: a bounded history (docs/api-differences.md, Rotation). */
#define KMS_MAX_KEY_VERSIONS 64u
/* Grants per key (the grant_per_CMK quota of kms-api.md section 4.9). */
#define KMS_GRANTS_PER_KEY 100u
