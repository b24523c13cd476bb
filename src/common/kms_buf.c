#include "kms_buf.h"

#include <stdlib.h>
#include <string.h>

#include "kms_err.h"
#include "kms_secmem.h"

void kms_buf_init(struct kms_buf *b, size_t max, bool secret)
{
	*b = (struct kms_buf)KMS_BUF_INIT(max, secret);
}

int kms_buf_reserve(struct kms_buf *b, size_t extra)
{
	/* Past SIZE_MAX / 2, len + extra + 1, max + 1 and the doubling below would wrap. */
	size_t max = b->max < SIZE_MAX / 2 ? b->max : SIZE_MAX / 2;
	size_t need, ncap;
	uint8_t *n;

	if (extra > max || b->len > max - extra)
		return KMS_E_TOO_LONG;
	need = b->len + extra + 1;
	if (need <= b->cap)
		return 0;
	ncap = b->cap ? b->cap : 256;
	while (ncap < need)
		ncap *= 2;
	if (ncap > max + 1)
		ncap = max + 1;
	/* Never realloc: the old block would be released with its contents in it. */
	n = malloc(ncap);
	if (!n)
		return KMS_E_NOMEM;
	if (b->data) {
		memcpy(n, b->data, b->len);
		kms_wipe(b->data, b->cap);
		free(b->data);
	}
	n[b->len] = 0;
	b->data = n;
	b->cap = ncap;
	return 0;
}

int kms_buf_append(struct kms_buf *b, const void *p, size_t n)
{
	int r = kms_buf_reserve(b, n);

	if (r < 0)
		return r;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = 0;
	return 0;
}

int kms_buf_append_str(struct kms_buf *b, const char *s)
{
	return kms_buf_append(b, s, strlen(s));
}

int kms_buf_set(struct kms_buf *b, const void *p, size_t n)
{
	kms_buf_reset(b);
	return kms_buf_append(b, p, n);
}

void kms_buf_reset(struct kms_buf *b)
{
	if (b->data) {
		kms_wipe(b->data, b->len + 1);
		b->data[0] = 0;
	}
	b->len = 0;
}

void kms_buf_truncate(struct kms_buf *b, size_t len)
{
	if (len >= b->len)
		return;
	kms_wipe(b->data + len, b->len - len);
	b->len = len;
	b->data[len] = 0;
}

void kms_buf_trim(struct kms_buf *b, size_t keep)
{
	if (b->cap > keep)
		kms_buf_free(b);
	else
		kms_buf_reset(b);
}

void kms_buf_free(struct kms_buf *b)
{
	if (b->data) {
		kms_wipe(b->data, b->cap);
		free(b->data);
	}
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

void kms_buf_move(struct kms_buf *dst, struct kms_buf *src)
{
	size_t max = dst->max;
	bool secret = dst->secret || src->secret;

	kms_buf_free(dst);
	*dst = *src;
	dst->max = max > src->max ? max : src->max;
	dst->secret = secret;
	src->data = NULL;
	src->len = 0;
	src->cap = 0;
}
