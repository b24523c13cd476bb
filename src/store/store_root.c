/* The root-key provider interface (store_root.h): picks the provider by the location and does
 * what is the same for all of them (opaque seals, the check value). */
#include "store_root_internal.h"

#include <stdio.h>
#include <string.h>

#include "common/kms_err.h"
#include "common/kms_hex.h"
#include "common/kms_secmem.h"

/* Labels of keys derived from the root key: never the root key itself for anything but key
 * material, so no two uses share a key. The values are those of earlier releases: stores made
 * by them keep working. */
#define STORE_ROOT_CHECK_LABEL	 "kmsfs root key check v1"
#define STORE_ROOT_OPAQUE_LABEL	 "kmsfs opaque seal key v1"
#define STORE_ROOT_OPAQUE_PREFIX "kmsfs opaque "

bool store_root_location_is_pkcs11(const char *location)
{
	return location && strncmp(location, "pkcs11:", 7) == 0;
}

int store_root_open(const struct store_root_params *p, struct store_root **out, bool *created,
		    char *why, size_t why_len)
{
	bool made = false;
	int r;

	*out = NULL;
	if (store_root_location_is_pkcs11(p->location))
		r = store_root_p11_open(p, out, &made, why, why_len);
	else
		r = store_root_file_open(p, out, &made, why, why_len);
	if (created)
		*created = r == 0 && made;
	return r;
}

void store_root_close(struct store_root *r)
{
	if (r)
		r->ops->close(r);
}

void store_root_describe(const struct store_root *r, char *out, size_t cap)
{
	snprintf(out, cap, "%s", r ? r->shown : "(none)");
}

int store_root_seal(struct store_root *r, const void *aad, size_t aad_len, const uint8_t *in,
		    size_t n, uint8_t *out, size_t cap, size_t *out_len)
{
	*out_len = 0;
	return r->ops->seal(r, aad, aad_len, in, n, out, cap, out_len);
}

int store_root_unseal(struct store_root *r, const void *aad, size_t aad_len, const uint8_t *in,
		      size_t n, uint8_t *out, size_t cap, size_t *out_len)
{
	*out_len = 0;
	return r->ops->unseal(r, aad, aad_len, in, n, out, cap, out_len);
}

int store_root_derive(struct store_root *r, const char *label, uint8_t out[CORE_KEY_BYTES])
{
	return r->ops->derive(r, label, out);
}

int store_root_check(struct store_root *r, char out[2 * CORE_SHA256_BYTES + 1])
{
	uint8_t mac[CORE_SHA256_BYTES];
	int e = store_root_derive(r, STORE_ROOT_CHECK_LABEL, mac);

	if (e == 0)
		kms_hex_encode(mac, sizeof(mac), out);
	else
		out[0] = 0;
	kms_wipe(mac, sizeof(mac));
	return e;
}

bool store_root_secure(const struct store_root *r)
{
	return r && r->ops->secure(r);
}

void store_root_status(struct store_root *r, struct store_root_status *out)
{
	memset(out, 0, sizeof(*out));
	out->available = true;
	if (r && r->ops->status)
		r->ops->status(r, out);
}

bool store_root_poll(struct store_root *r)
{
	return !r || !r->ops->poll || r->ops->poll(r);
}

int store_root_reconnect(struct store_root *r, char *why, size_t why_len)
{
	return r && r->ops->reconnect ? r->ops->reconnect(r, why, why_len) : 0;
}

int store_root_destroy(struct store_root *r, char *why, size_t why_len)
{
	return r->ops->destroy(r, why, why_len);
}

/* A provider that derives: a key of its own for opaque seals, the label as AAD (the format of
 * earlier releases). Else the provider seals with "kmsfs opaque " label as the AAD. */
static int store_root_opaque(struct store_root *r, bool seal, const char *label, const uint8_t *in,
			     size_t n, uint8_t *out, size_t cap, size_t *out_len)
{
	uint8_t key[CORE_KEY_BYTES];
	char aad[512];
	int e;

	*out_len = 0;
	if (!r->ops->opaque_derived) {
		if ((size_t)snprintf(aad, sizeof(aad), "%s%s", STORE_ROOT_OPAQUE_PREFIX, label) >=
		    sizeof(aad))
			return KMS_E_BAD_PARAM;
		return (seal ? r->ops->seal : r->ops->unseal)(r, aad, strlen(aad), in, n, out, cap,
							      out_len);
	}
	e = r->ops->derive(r, STORE_ROOT_OPAQUE_LABEL, key);
	if (e == 0)
		e = (seal ? core_seal : core_unseal)(key, label, strlen(label), in, n, out, cap,
						     out_len);
	kms_wipe(key, sizeof(key));
	return e;
}

int store_root_seal_opaque(struct store_root *r, const char *label, const uint8_t *in, size_t n,
			   uint8_t *out, size_t cap, size_t *out_len)
{
	return store_root_opaque(r, true, label, in, n, out, cap, out_len);
}

int store_root_unseal_opaque(struct store_root *r, const char *label, const uint8_t *in, size_t n,
			     uint8_t *out, size_t cap, size_t *out_len)
{
	return store_root_opaque(r, false, label, in, n, out, cap, out_len);
}
