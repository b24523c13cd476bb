/* store_root_internal.h - what the root-key providers share (store_root.c dispatches to them);
 * nothing outside store_root*.c includes it. */
#pragma once

#include "store_root.h"

struct store_root_ops {
	KMS_WUR int (*seal)(struct store_root *r, const void *aad, size_t aad_len,
			    const uint8_t *in, size_t n, uint8_t *out, size_t cap, size_t *out_len);
	KMS_WUR int (*unseal)(struct store_root *r, const void *aad, size_t aad_len,
			      const uint8_t *in, size_t n, uint8_t *out, size_t cap,
			      size_t *out_len);
	KMS_WUR int (*derive)(struct store_root *r, const char *label, uint8_t out[CORE_KEY_BYTES]);
	KMS_WUR int (*destroy)(struct store_root *r, char *why, size_t why_len);
	void (*close)(struct store_root *r);
	bool (*secure)(const struct store_root *r);
	/* NULL for a root that cannot be lost (a file). */
	void (*status)(struct store_root *r, struct store_root_status *out);
	bool (*poll)(struct store_root *r);
	KMS_WUR int (*reconnect)(struct store_root *r, char *why, size_t why_len);
	/* Opaque seals: under a key derived for them (file: today's format), or by the provider
	 * itself with "kmsfs opaque " label as the AAD (token: nothing leaves it). */
	bool opaque_derived;
};

/* Every provider's state begins with this. */
struct store_root {
	const struct store_root_ops *ops;
	char shown[1024]; /* store_root_describe */
};

KMS_WUR int store_root_file_open(const struct store_root_params *p, struct store_root **out,
				 bool *created, char *why, size_t why_len);
KMS_WUR int store_root_p11_open(const struct store_root_params *p, struct store_root **out,
				bool *created, char *why, size_t why_len);
