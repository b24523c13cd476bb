/* store_root.h - the root of trust: where the root key lives and what may be done with it.
 *
 * Every CMK version, the state secrets (token signing, audit MAC) and import tokens are sealed
 * under the root key. A provider holds it: a 32-byte file in the secure heap (store_root_file.c),
 * or a non-extractable AES-256 secret key object in a PKCS#11 token (store_root_p11.c), where the
 * key never enters this process and the token does the work. The rest of the store sees only this
 * interface (never the bytes of the key), so the root can move between providers and be rotated
 * (store_rotate.c) while daemons serve. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/kms_common.h"
#include "core/kms_core.h"

struct store_root;

/* Where a root key lives: a file path, or an RFC 7512 PKCS#11 URI ("pkcs11:token=...;object=...",
 * the PIN from pin-source=file:... in the URI or pin_file). */
struct store_root_params {
	const char *location;	   /* file path or "pkcs11:..." */
	const char *pkcs11_module; /* NULL: p11-kit's proxy module */
	const char *pin_file;	   /* NULL: pin-source/pin-value of the URI, else none */
	bool create;		   /* create the key if it is not there (file: O_EXCL 0600; token:
				     a CKA_EXTRACTABLE false, CKA_SENSITIVE true AES-256 object) */
	const char *state_dir;	   /* where a new file's directory entry is made durable */
};

/* Opens the root key (creating it if p->create and it is absent: *created says so).
 * KMS_E_KEY_NOT_FOUND if absent and not created; KMS_E_IO / KMS_E_STORE_UNAVAILABLE with a
 * sentence in why otherwise. */
KMS_WUR int store_root_open(const struct store_root_params *p, struct store_root **out,
			    bool *created, char *why, size_t why_len);
void store_root_close(struct store_root *r);

/* Whether a location names a PKCS#11 object ("pkcs11:" prefix). */
bool store_root_location_is_pkcs11(const char *location);
/* The location as it may be shown (PIN values removed). */
void store_root_describe(const struct store_root *r, char *out, size_t cap);
/* A location as it may be shown and kept: a PKCS#11 URI without its pin-value, a file path as
 * it is. false if that does not fit cap (out then holds what fitted). */
bool store_root_location_shown(const char *location, char *out, size_t cap);

/* AES-256-GCM under the root key with this additional data; out = nonce || ciphertext || tag
 * (n + CORE_SEALED_OVERHEAD bytes), the format core_seal writes, whichever provider seals.
 * KMS_E_STORE_UNAVAILABLE while a token cannot be reached (the provider reopens its session
 * on the next call). unseal: KMS_E_DECRYPT_FAILED when the tag does not verify. */
KMS_WUR int store_root_seal(struct store_root *r, const void *aad, size_t aad_len,
			    const uint8_t *in, size_t n, uint8_t *out, size_t cap, size_t *out_len);
KMS_WUR int store_root_unseal(struct store_root *r, const void *aad, size_t aad_len,
			      const uint8_t *in, size_t n, uint8_t *out, size_t cap,
			      size_t *out_len);
/* A 32-byte key derived from the root key for one purpose label (file: HMAC-SHA-256(root,
 * label), as before; token: a KDF computed inside the token). Deterministic: the same root and
 * label give the same key on every host. */
KMS_WUR int store_root_derive(struct store_root *r, const char *label, uint8_t out[CORE_KEY_BYTES]);
/* The root's check value (hex of store_root_derive("kmsfs root key check v1")), kept in the store's
 * settings to refuse a wrong root key; out: 2 * CORE_SHA256_BYTES + 1. */
KMS_WUR int store_root_check(struct store_root *r, char out[2 * CORE_SHA256_BYTES + 1]);
/* Opaque seals (import tokens, state secrets, remembered sessions), the label binding each to
 * its use: a file root seals under a key derived for them with the label as AAD (the format of
 * earlier releases), a token root in the token with "kmsfs opaque " label as AAD. unseal:
 * KMS_E_DECRYPT_FAILED when the tag does not verify, KMS_E_STORE_UNAVAILABLE as above. */
KMS_WUR int store_root_seal_opaque(struct store_root *r, const char *label, const uint8_t *in,
				   size_t n, uint8_t *out, size_t cap, size_t *out_len);
KMS_WUR int store_root_unseal_opaque(struct store_root *r, const char *label, const uint8_t *in,
				     size_t n, uint8_t *out, size_t cap, size_t *out_len);
/* Whether whatever of the root is in this process is in the secure heap (a token: nothing). */
bool store_root_secure(const struct store_root *r);
/* Whether the root can be used now, and how often it was lost and came back (a token that
 * disappears: module error, session closed, device removed). The library never logs: the daemon
 * reads this and says so once each way. */
struct store_root_status {
	bool available;
	uint64_t losses, recoveries;
	char error[160]; /* why it was last lost ("" if never) */
};
void store_root_status(struct store_root *r, struct store_root_status *out);
/* A token root that was lost: try to get it back now if the last try is a second old (calls
 * made while it is lost try too). Whether it is available. A file root: always true. */
bool store_root_poll(struct store_root *r);
/* After fork() in the child (store_reopen): a module's sessions do not cross it, start afresh. */
KMS_WUR int store_root_reconnect(struct store_root *r, char *why, size_t why_len);
/* Destroy the key where it lives (file: overwritten, fsynced, unlinked; token: C_DestroyObject):
 * only after nothing is sealed under it any more (root-key rotation). */
KMS_WUR int store_root_destroy(struct store_root *r, char *why, size_t why_len);
