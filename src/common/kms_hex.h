/* kms_hex.h - strict hex and Base64 codecs.
 *
 * Output hex is upper case, as the service prints it; input hex is case-insensitive (clients mix
 * cases and the service accepts that). Decoders reject odd lengths, whitespace and any stray
 * character; Base64 decoding also rejects bad padding and non-zero trailing bits.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kms_common.h"

/* Writes 2n upper-case hex digits and a NUL to out (size >= 2n + 1). */
void kms_hex_encode(const uint8_t *in, size_t n, char *out);
/* Decodes len hex digits into out (cap bytes). KMS_E_BAD_PARAM on any defect or overflow. */
KMS_WUR int kms_hex_decode(const char *in, size_t len, uint8_t *out, size_t cap, size_t *out_len);
bool kms_is_hex(const char *in, size_t len);

static inline size_t kms_base64_encoded_len(size_t n)
{
	return (n + 2) / 3 * 4;
}
/* Writes the padded Base64 of in and a NUL to out (size >= kms_base64_encoded_len(n) + 1). */
void kms_base64_encode(const uint8_t *in, size_t n, char *out);
KMS_WUR int kms_base64_decode(const char *in, size_t len, uint8_t *out, size_t cap,
			      size_t *out_len);
