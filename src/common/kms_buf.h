/* kms_buf.h - the one bounded byte buffer of kmsfs.
 *
 * Invariants: len <= cap <= max; data is NULL iff cap == 0; data[len] is always a NUL byte when
 * cap > 0 (so a buffer holding text can be handed to parsers as a C string).
 * A buffer made with secret=true never leaves a copy of its bytes behind: growth is
 * alloc-copy-wipe-free (never realloc), reset and free wipe. Every buffer is wiped on free anyway:
 * the cost is small and it removes a class of mistakes.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kms_common.h"

struct kms_buf {
	uint8_t *data;
	size_t len;
	size_t cap;
	size_t max;
	bool secret;
};

#define KMS_BUF_INIT(max_, secret_)                                                                \
	{                                                                                          \
		NULL, 0, 0, (max_), (secret_)                                                      \
	}

void kms_buf_init(struct kms_buf *b, size_t max, bool secret);
/* Make room for extra more bytes (plus the trailing NUL). KMS_E_TOO_LONG past max. */
KMS_WUR int kms_buf_reserve(struct kms_buf *b, size_t extra);
KMS_WUR int kms_buf_append(struct kms_buf *b, const void *p, size_t n);
KMS_WUR int kms_buf_append_str(struct kms_buf *b, const char *s);
KMS_WUR int kms_buf_set(struct kms_buf *b, const void *p, size_t n);
/* Shrink to len bytes (no-op if it holds fewer), wiping the bytes cut off: the only way to
 * drop the tail of a buffer. */
void kms_buf_truncate(struct kms_buf *b, size_t len);
/* Empty the buffer, wiping the bytes it held; keeps its memory for reuse. */
void kms_buf_reset(struct kms_buf *b);
/* Empty the buffer like kms_buf_reset, but release its memory if it holds more than keep bytes,
 * so a long-lived buffer does not pin the memory of the largest thing it ever held. */
void kms_buf_trim(struct kms_buf *b, size_t keep);
/* Wipe and release; accepts an already freed or never used buffer. */
void kms_buf_free(struct kms_buf *b);
/* Hand over the contents of src to dst (dst is freed first); src is left empty. */
void kms_buf_move(struct kms_buf *dst, struct kms_buf *src);
