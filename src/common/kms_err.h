/* kms_err.h - the one error table of kmsfs.
 *
 * Every failure inside kmsfs is one of these values. Each maps to the API's "KMS.xxxx" code, the
 * HTTP status the REST API would answer, the errno a file operation returns, and the API's message.
 * Functions return 0 on success or a negative KMS_E_* value; adding an error is one line here.
 * Several internal errors may share one API code (they differ in errno).
 */
#pragma once

#include "kms_common.h"

/*  name                          code        http  errno      message */
#define KMS_ERRORS(X)                                                                              \
	X(KMS_E_INTERNAL, "KMS.0101", 500, EIO, "KMS error.")                                      \
	X(KMS_E_NOMEM, "KMS.0101", 500, ENOMEM, "KMS error.")                                      \
	X(KMS_E_IO, "KMS.0102", 500, EIO, "Abnormal KMS I/O.")                                     \
	X(KMS_E_NOSPACE, "KMS.0102", 500, ENOSPC, "Abnormal KMS I/O.")                             \
	X(KMS_E_STORE_UNAVAILABLE, "KMS.0102", 500, EIO, "Abnormal KMS I/O.")                      \
	X(KMS_E_STALE, "KMS.0104", 503, EBUSY,                                                     \
	  "A system exception occurred. Contact technical support.")                               \
	X(KMS_E_SYSTEM, "KMS.0103", 500, EIO,                                                      \
	  "A system exception occurred. Contact technical support.")                               \
	X(KMS_E_BUSY, "KMS.0104", 503, EAGAIN,                                                     \
	  "A system exception occurred. Contact technical support.")                               \
	X(KMS_E_BAD_URL, "KMS.0201", 400, ENOENT, "Invalid request URL.")                          \
	X(KMS_E_BAD_JSON, "KMS.0202", 400, EINVAL, "Invalid JSON format of the request message.")  \
	X(KMS_E_TOO_LONG, "KMS.0203", 400, EFBIG, "Request message too long.")                     \
	X(KMS_E_MISSING, "KMS.0204", 400, EINVAL, "Parameters missing in the request message.")    \
	X(KMS_E_BAD_KEY_ID, "KMS.0205", 400, EINVAL, "Invalid key ID.")                            \
	X(KMS_E_BAD_SEQUENCE, "KMS.0206", 400, EINVAL, "Invalid sequence number.")                 \
	X(KMS_E_KEY_NOT_FOUND, "KMS.0207", 404, ENOENT, "The key does not exist.")                 \
	X(KMS_E_BAD_CONTEXT, "KMS.0208", 400, EINVAL,                                              \
	  "Invalid value of value encryption_context.")                                            \
	X(KMS_E_KEY_DISABLED, "KMS.0209", 400, EINVAL, "The key has been disabled.")               \
	X(KMS_E_KEY_PENDING_DELETION, "KMS.0210", 400, EINVAL,                                     \
	  "The key is in Scheduled deletion state and cannot be used.")                            \
	X(KMS_E_DEFAULT_KEY, "KMS.0211", 400, EINVAL,                                              \
	  "Cannot perform this operation on Default Master Keys.")                                 \
	X(KMS_E_METHOD, "KMS.0215", 405, EINVAL, "Request method not supported.")                  \
	X(KMS_E_TOKEN_MISSING, "KMS.0301", 403, EACCES, "Invalid or null X-Auth-Token.")           \
	X(KMS_E_TOKEN_INVALID, "KMS.0302", 403, EACCES, "Invalid X-Auth-Token.")                   \
	X(KMS_E_TOKEN_EXPIRED, "KMS.0303", 403, EACCES, "X-Auth-Token expired.")                   \
	X(KMS_E_TOKEN_PROJECT, "KMS.0305", 403, EACCES, "Invalid X-Auth-Token project name.")      \
	X(KMS_E_NO_ACCESS, "KMS.0306", 403, EACCES, "No access permissions.")                      \
	X(KMS_E_FORBIDDEN, "KMS.0307", 403, EACCES, "No access permissions.")                      \
	X(KMS_E_BAD_PARAM, "KMS.0308", 400, EINVAL, "Invalid parameter.")                          \
	X(KMS_E_EXTERNAL_REQUIRED, "KMS.0309", 400, EINVAL, "External keys required.")             \
	X(KMS_E_NOT_PENDING_IMPORT, "KMS.0310", 400, EINVAL,                                       \
	  "The key is not in Pending import state.")                                               \
	X(KMS_E_EXTERNAL_ROTATION, "KMS.0312", 400, EINVAL, "External keys cannot be rotated.")    \
	X(KMS_E_ROTATION_NOT_ENABLED, "KMS.0313", 400, EINVAL, "Key rotation is not enabled.")     \
	X(KMS_E_TAG_LIST_EMPTY, "KMS.0401", 400, EINVAL, "Tag list cannot be empty.")              \
	X(KMS_E_TAG_MATCH_VALUE, "KMS.0402", 400, EINVAL, "Invalid match value.")                  \
	X(KMS_E_TAG_MATCH_KEY, "KMS.0403", 400, EINVAL, "Invalid match key.")                      \
	X(KMS_E_TAG_ACTION, "KMS.0404", 400, EINVAL, "Invalid action.")                            \
	X(KMS_E_TAG_VALUE, "KMS.0405", 400, EINVAL, "Invalid tag value.")                          \
	X(KMS_E_TAG_KEY, "KMS.0406", 400, EINVAL, "Invalid tag key.")                              \
	X(KMS_E_TAG_LIST_SIZE, "KMS.0407", 400, EINVAL, "Invalid tag list size.")                  \
	X(KMS_E_TOO_MANY_TAGS, "KMS.0409", 400, EINVAL, "Too many tags.")                          \
	X(KMS_E_TAG_VALUE_LENGTH, "KMS.0410", 400, EINVAL, "Invalid tag value length.")            \
	X(KMS_E_TAG_KEY_LENGTH, "KMS.0411", 400, EINVAL, "Invalid tag key length.")                \
	X(KMS_E_TAG_LIST, "KMS.0412", 400, EINVAL, "Invalid tag list.")                            \
	X(KMS_E_TAG_NOT_FOUND, "KMS.0416", 404, ENOENT, "Invalid tag ID.")                         \
	X(KMS_E_OFFSET_INVALID, "KMS.0417", 400, EINVAL, "Invalid offset.")                        \
	X(KMS_E_ALIAS_INVALID, "KMS.1101", 400, EINVAL, "Invalid key_alias.")                      \
	X(KMS_E_DESCRIPTION_INVALID, "KMS.1103", 400, EINVAL, "Invalid key_description.")          \
	X(KMS_E_ALIAS_DUPLICATE, "KMS.1104", 400, EEXIST, "Duplicate key aliases.")                \
	X(KMS_E_TOO_MANY_KEYS, "KMS.1105", 400, EDQUOT, "Too many keys.")                          \
	X(KMS_E_KEY_SPEC, "KMS.1110", 400, EINVAL, "Invalid alg_type.")                            \
	X(KMS_E_NOT_DISABLED, "KMS.1201", 400, EINVAL, "The key is not disabled.")                 \
	X(KMS_E_NOT_ENABLED, "KMS.1301", 400, EINVAL, "The key is not enabled.")                   \
	X(KMS_E_PENDING_DAYS, "KMS.1401", 400, EINVAL,                                             \
	  "Set the pending deletion period between 7 to 1096 days.")                               \
	X(KMS_E_ALREADY_PENDING, "KMS.1402", 400, EINVAL,                                          \
	  "The key is already in Pending deletion state.")                                         \
	X(KMS_E_NOT_PENDING, "KMS.1501", 400, EINVAL, "The key is not in Pending deletion state.") \
	X(KMS_E_LIMIT_INVALID, "KMS.1601", 400, EINVAL, "Invalid limit.")                          \
	X(KMS_E_MARKER_INVALID, "KMS.1602", 400, EINVAL,                                           \
	  "marker must be greater than or equals 0.")                                              \
	X(KMS_E_RANDOM_LENGTH, "KMS.1801", 400, EINVAL, "random_data_length must be 512 bits.")    \
	X(KMS_E_RANDOM_MULTIPLE, "KMS.1802", 400, EINVAL,                                          \
	  "random_data_length must be a multiple of 8.")                                           \
	X(KMS_E_DATAKEY_RANGE, "KMS.1901", 400, EINVAL,                                            \
	  "datakey_length must be in the range 8 bits to 8,192 bits.")                             \
	X(KMS_E_DATAKEY_SPEC, "KMS.1902", 400, EINVAL, "key_spec can only be AES_128 or AES_256.") \
	X(KMS_E_DATAKEY_MULTIPLE, "KMS.1903", 400, EINVAL,                                         \
	  "datakey_length must be a multiple of 8.")                                               \
	X(KMS_E_GRANT_OPERATIONS, "KMS.2401", 400, EINVAL,                                         \
	  "Specify an operation in addition to create-grant.")                                     \
	X(KMS_E_GRANT_USER, "KMS.2402", 400, EINVAL, "Invalid user ID.")                           \
	X(KMS_E_TOO_MANY_GRANTS, "KMS.2404", 400, EINVAL, "Too many CMK grants.")                  \
	X(KMS_E_GRANT_ID, "KMS.2501", 400, EINVAL, "Invalid grant ID.")                            \
	X(KMS_E_GRANT_KEY_MISMATCH, "KMS.2502", 400, EINVAL, "grant_id and key_id do not match.")  \
	X(KMS_E_IMPORT_TOKEN_EXPIRED, "KMS.2601", 400, EINVAL, "Token expired.")                   \
	X(KMS_E_IMPORT_EXPIRATION, "KMS.2602", 400, EINVAL,                                        \
	  "Key expiration time must be later than the current time.")                              \
	X(KMS_E_IMPORT_KEY_MISMATCH, "KMS.2603", 400, EINVAL,                                      \
	  "Key IDs in the imported key and token do not match.")                                   \
	X(KMS_E_IMPORT_LENGTH, "KMS.2604", 400, EINVAL,                                            \
	  "The external key plaintext length must be 32 bits.")                                    \
	X(KMS_E_IMPORT_TOKEN, "KMS.2605", 400, EINVAL, "Token verification failed.")               \
	X(KMS_E_IMPORT_DIFFERENT, "KMS.2606", 400, EINVAL,                                         \
	  "You are importing a deleted key again. The imported plaintext must be the same as the " \
	  "deleted key plaintext.")                                                                \
	X(KMS_E_MATERIAL_STATE, "KMS.2701", 400, EINVAL,                                           \
	  "Key material is not in Enabled or Disabled state and cannot be deleted.")               \
	X(KMS_E_ROTATION_NOT_DISABLED, "KMS.2901", 400, EINVAL, "Key rotation is not disabled.")   \
	X(KMS_E_ROTATION_INTERVAL, "KMS.3001", 400, EINVAL, "Invalid rotation_interval.")          \
	X(KMS_E_DATAKEY_512, "KMS.2001", 400, EINVAL, "datakey_length must be 512 bits.")          \
	X(KMS_E_PLAIN_INVALID, "KMS.2101", 400, EINVAL, "Invalid plain_text.")                     \
	X(KMS_E_PLAIN_LENGTH, "KMS.2102", 400, EINVAL, "datakey_plain_length must be 64 bytes.")   \
	X(KMS_E_DEK_HASH, "KMS.2103", 400, EINVAL, "Failed to verify the DEK hash.")               \
	X(KMS_E_PLAIN_MISMATCH, "KMS.2104", 400, EINVAL,                                           \
	  "The length of plain_text does not match datakey_plain_length.")                         \
	X(KMS_E_CIPHER_INVALID, "KMS.2201", 400, EINVAL, "Invalid cipher_text.")                   \
	X(KMS_E_CIPHER_LENGTH, "KMS.2202", 400, EINVAL, "datakey_cipher_length must be 64 bytes.") \
	X(KMS_E_DECRYPT_FAILED, "KMS.2203", 400, EINVAL, "Failed to verify the DEK hash.")         \
	X(KMS_E_CIPHER_MISMATCH, "KMS.2204", 400, EINVAL,                                          \
	  "The length of cipher_text does not match datakey_cipher_length.")

enum kms_err {
	/* Values count up from here, so every error is negative and 0 stays success. */
	KMS__E_FIRST = -1000,
#define KMS_ERR_ENUM_(name, code, http, errnum, msg) name,
	KMS_ERRORS(KMS_ERR_ENUM_)
#undef KMS_ERR_ENUM_
		KMS__E_END,
	KMS_OK = 0,
};

struct kms_err_info {
	const char *name;    /* "KMS_E_KEY_NOT_FOUND" */
	const char *code;    /* "KMS.0207" */
	int http;	     /* 404 */
	int errnum;	     /* ENOENT */
	const char *message; /* "The key does not exist." */
};

/* Never NULL: unknown values (including positive ones) map to KMS_E_INTERNAL. */
const struct kms_err_info *kms_err_info(int err);

static inline int kms_err_errno(int err)
{
	return err == 0 ? 0 : kms_err_info(err)->errnum;
}
