/* The root key in a PKCS#11 token: a non-extractable, sensitive AES-256 secret key object named
 * by an RFC 7512 URI (parsed by p11-kit), used through a module loaded with dlopen (default:
 * p11-kit's proxy, so whatever module p11-kit is configured with works). The key never enters
 * this process:
 * - seal/unseal: C_Encrypt/C_Decrypt with CKM_AES_GCM, a 12-byte IV from OpenSSL's RNG, a
 *   128-bit tag and the caller's AAD; the bytes are nonce || ciphertext || tag, what core_seal
 *   writes, so a file root and a token root write the same layout.
 * - derive: NIST SP 800-108 KDF in counter mode with AES-CMAC as the PRF (C_Sign with
 *   CKM_AES_CMAC in the token): K(i) = CMAC(root, [i]_4 || label || 0x00 || [256]_4) for
 *   i = 1, 2, the 32 bytes K(1) || K(2). So the object needs CKA_SIGN too.
 * - opaque seals: in the token, "kmsfs opaque " label as the AAD (store_root.c).
 * C_Encrypt keeps per-session state, so every call takes a session of its own from a small pool.
 * A token that goes away (session closed, device removed, module error) makes every call fail
 * with KMS_E_STORE_UNAVAILABLE; the next call at least a second later starts the module afresh
 * (C_Finalize, C_Initialize, login, find the object). Cached CMKs are not affected: they are
 * in the secure heap, and the token is never on the data-key path. */
#include "store_root_internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>
#include <p11-kit/uri.h>

#include "common/kms_err.h"
#include "common/kms_secmem.h"
#include "common/kms_time.h"

#ifndef STORE_P11_PROXY_MODULE
#define STORE_P11_PROXY_MODULE "p11-kit-proxy.so"
#endif
#define STORE_P11_POOL	    16	 /* sessions kept open for reuse */
#define STORE_P11_PIN_MAX   256	 /* bytes of a PIN */
#define STORE_P11_RETRY_MS  1000 /* at most one reopen a second while the token is away */
#define STORE_P11_LABEL_MAX 128

struct store_root_p11 {
	struct store_root base;
	char module[1024];
	void *dl;
	CK_FUNCTION_LIST_PTR f;
	P11KitUri *uri;
	char label[STORE_P11_LABEL_MAX + 1];
	uint8_t id[64];
	size_t id_len;
	char *pin; /* secure heap, NUL-terminated */
	size_t pin_len;
	/* Calls hold it for reading; losing and starting afresh for writing. */
	pthread_rwlock_t lock;
	pthread_mutex_t pool_lock;
	CK_SESSION_HANDLE pool[STORE_P11_POOL];
	size_t npool;
	CK_SLOT_ID slot;
	CK_OBJECT_HANDLE key;
	bool initialized;	     /* C_Initialize succeeded (lock held for writing) */
	bool up;		     /* relaxed atomic */
	int64_t next_try_ms;	     /* relaxed atomic */
	uint64_t losses, recoveries; /* relaxed atomics */
	char error[160];	     /* pool_lock */
};

static struct store_root_p11 *store_p11_of(struct store_root *r)
{
	return (struct store_root_p11 *)r;
}

/* What a return value means, for sentences. */
static const char *store_p11_rv(CK_RV rv)
{
	switch (rv) {
	case CKR_OK:
		return "CKR_OK";
	case CKR_PIN_INCORRECT:
		return "CKR_PIN_INCORRECT";
	case CKR_PIN_LOCKED:
		return "CKR_PIN_LOCKED";
	case CKR_PIN_EXPIRED:
		return "CKR_PIN_EXPIRED";
	case CKR_SESSION_HANDLE_INVALID:
		return "CKR_SESSION_HANDLE_INVALID";
	case CKR_SESSION_CLOSED:
		return "CKR_SESSION_CLOSED";
	case CKR_DEVICE_REMOVED:
		return "CKR_DEVICE_REMOVED";
	case CKR_DEVICE_ERROR:
		return "CKR_DEVICE_ERROR";
	case CKR_TOKEN_NOT_PRESENT:
		return "CKR_TOKEN_NOT_PRESENT";
	case CKR_TOKEN_NOT_RECOGNIZED:
		return "CKR_TOKEN_NOT_RECOGNIZED";
	case CKR_KEY_HANDLE_INVALID:
		return "CKR_KEY_HANDLE_INVALID";
	case CKR_OBJECT_HANDLE_INVALID:
		return "CKR_OBJECT_HANDLE_INVALID";
	case CKR_MECHANISM_INVALID:
		return "CKR_MECHANISM_INVALID";
	case CKR_MECHANISM_PARAM_INVALID:
		return "CKR_MECHANISM_PARAM_INVALID";
	case CKR_KEY_FUNCTION_NOT_PERMITTED:
		return "CKR_KEY_FUNCTION_NOT_PERMITTED";
	case CKR_USER_NOT_LOGGED_IN:
		return "CKR_USER_NOT_LOGGED_IN";
	case CKR_USER_PIN_NOT_INITIALIZED:
		return "CKR_USER_PIN_NOT_INITIALIZED";
	case CKR_CRYPTOKI_NOT_INITIALIZED:
		return "CKR_CRYPTOKI_NOT_INITIALIZED";
	case CKR_GENERAL_ERROR:
		return "CKR_GENERAL_ERROR";
	case CKR_FUNCTION_FAILED:
		return "CKR_FUNCTION_FAILED";
	case CKR_ENCRYPTED_DATA_INVALID:
		return "CKR_ENCRYPTED_DATA_INVALID";
	case CKR_TEMPLATE_INCONSISTENT:
		return "CKR_TEMPLATE_INCONSISTENT";
	case CKR_ATTRIBUTE_VALUE_INVALID:
		return "CKR_ATTRIBUTE_VALUE_INVALID";
	default:
		return "a PKCS#11 error";
	}
}

/* Errors that say the token (or the module's view of it) is gone, not that this call was
 * wrong. */
static bool store_p11_lost_rv(CK_RV rv)
{
	switch (rv) {
	case CKR_SESSION_HANDLE_INVALID:
	case CKR_SESSION_CLOSED:
	case CKR_DEVICE_REMOVED:
	case CKR_DEVICE_ERROR:
	case CKR_DEVICE_MEMORY:
	case CKR_TOKEN_NOT_PRESENT:
	case CKR_TOKEN_NOT_RECOGNIZED:
	case CKR_CRYPTOKI_NOT_INITIALIZED:
	case CKR_USER_NOT_LOGGED_IN:
	case CKR_KEY_HANDLE_INVALID:
	case CKR_OBJECT_HANDLE_INVALID:
	case CKR_GENERAL_ERROR:
	case CKR_FUNCTION_FAILED:
	case CKR_HOST_MEMORY:
		return true;
	default:
		return false;
	}
}

/* The PIN: pin_file, else the URI's pin-source (file:PATH or PATH), else its pin-value, else
 * none (a token without login). Read into the secure heap. */
static int store_p11_pin(struct store_root_p11 *p, const char *pin_file, char *why, size_t why_len)
{
	const char *src = pin_file ? pin_file : p11_kit_uri_get_pin_source(p->uri);
	const char *value = p11_kit_uri_get_pin_value(p->uri);
	ssize_t n = 0;
	int fd, r = 0;

	if (!src && !value)
		return 0;
	if (!(p->pin = kms_secret_alloc(STORE_P11_PIN_MAX + 1)))
		return KMS_E_NOMEM;
	if (!src) {
		p->pin_len = strlen(value);
		if (p->pin_len > STORE_P11_PIN_MAX) {
			snprintf(why, why_len, "the PIN in the PKCS#11 URI is too long");
			return KMS_E_BAD_PARAM;
		}
		memcpy(p->pin, value, p->pin_len + 1);
		return 0;
	}
	if (strncmp(src, "file://", 7) == 0)
		src += 7;
	else if (strncmp(src, "file:", 5) == 0)
		src += 5;
	fd = open(src, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, why_len, "cannot read the PIN file '%.300s': %s", src,
			 strerror(errno));
		return KMS_E_IO;
	}
	n = read(fd, p->pin, STORE_P11_PIN_MAX + 1);
	close(fd);
	if (n < 0 || n > STORE_P11_PIN_MAX) {
		snprintf(why, why_len, "cannot read the PIN file '%.300s': %s", src,
			 n < 0 ? strerror(errno) : "longer than a PIN");
		r = KMS_E_IO;
		n = 0;
	}
	/* One line: a trailing newline (echo PIN > file) is not part of it. */
	while (n > 0 && (p->pin[n - 1] == '\n' || p->pin[n - 1] == '\r'))
		n--;
	p->pin[n] = 0;
	p->pin_len = (size_t)n;
	return r;
}

/* Parse the URI: it must name an object by its label (object=); id= is used too if given. */
static int store_p11_parse(struct store_root_p11 *p, const char *location, char *why,
			   size_t why_len)
{
	CK_ATTRIBUTE_PTR a;
	int u;

	if (!(p->uri = p11_kit_uri_new()))
		return KMS_E_NOMEM;
	u = p11_kit_uri_parse(location, P11_KIT_URI_FOR_OBJECT_ON_TOKEN, p->uri);
	if (u != P11_KIT_URI_OK) {
		snprintf(why, why_len,
			 "the root key location is not a PKCS#11 URI kmsfs can use: %s",
			 p11_kit_uri_message(u));
		return KMS_E_BAD_PARAM;
	}
	a = p11_kit_uri_get_attribute(p->uri, CKA_LABEL);
	if (!a || !a->pValue || a->ulValueLen == 0 || a->ulValueLen > STORE_P11_LABEL_MAX) {
		snprintf(why, why_len,
			 "the PKCS#11 URI must name the root key object (object=LABEL, at most %d "
			 "bytes), e.g. pkcs11:token=kmsfs;object=kmsfs-root",
			 STORE_P11_LABEL_MAX);
		return KMS_E_BAD_PARAM;
	}
	memcpy(p->label, a->pValue, a->ulValueLen);
	p->label[a->ulValueLen] = 0;
	a = p11_kit_uri_get_attribute(p->uri, CKA_ID);
	if (a && a->pValue && a->ulValueLen > 0 && a->ulValueLen <= sizeof(p->id)) {
		memcpy(p->id, a->pValue, a->ulValueLen);
		p->id_len = a->ulValueLen;
	}
	return 0;
}

/* The location as it may be shown: the URI without pin-value. */
static void store_p11_shown(struct store_root_p11 *p, const char *location)
{
	size_t o = 0;

	for (const char *c = location; *c && o + 1 < sizeof(p->base.shown);) {
		const char *end = c + strcspn(c, ";?&");

		if (strncmp(c, "pin-value=", 10) != 0) {
			size_t n = (size_t)(end - c) + (*end ? 1 : 0);

			if (o + n >= sizeof(p->base.shown))
				break;
			memcpy(p->base.shown + o, c, n);
			o += n;
		}
		c = *end ? end + 1 : end;
	}
	while (o > 0 && strchr(";?&", p->base.shown[o - 1]))
		o--;
	p->base.shown[o] = 0;
}

static int store_p11_load_module(struct store_root_p11 *p, const char *module, char *why,
				 size_t why_len)
{
	CK_RV (*get_list)(CK_FUNCTION_LIST_PTR_PTR);

	snprintf(p->module, sizeof(p->module), "%s", module ? module : STORE_P11_PROXY_MODULE);
	p->dl = dlopen(p->module, RTLD_NOW | RTLD_LOCAL);
	if (!p->dl) {
		snprintf(why, why_len, "cannot load the PKCS#11 module '%.300s': %.300s", p->module,
			 dlerror());
		return KMS_E_IO;
	}
	*(void **)&get_list = dlsym(p->dl, "C_GetFunctionList");
	if (!get_list || get_list(&p->f) != CKR_OK || !p->f) {
		snprintf(why, why_len, "'%.300s' is not a PKCS#11 module (no C_GetFunctionList)",
			 p->module);
		return KMS_E_IO;
	}
	return 0;
}

/* The first slot whose token the URI matches. */
static int store_p11_find_slot(struct store_root_p11 *p, char *why, size_t why_len)
{
	CK_SLOT_ID slots[64];
	CK_ULONG n = KMS_ARRAY_SIZE(slots);
	CK_TOKEN_INFO ti;
	CK_RV rv = p->f->C_GetSlotList(CK_TRUE, slots, &n);

	if (rv != CKR_OK) {
		snprintf(why, why_len, "PKCS#11 module '%.300s' cannot list its slots (%s)",
			 p->module, store_p11_rv(rv));
		return KMS_E_STORE_UNAVAILABLE;
	}
	for (CK_ULONG i = 0; i < n; i++) {
		if (p->f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
			continue;
		if (p11_kit_uri_match_token_info(p->uri, &ti)) {
			p->slot = slots[i];
			return 0;
		}
	}
	snprintf(why, why_len,
		 "no token of PKCS#11 module '%.300s' matches '%.300s' (%lu token%s present; "
		 "'p11tool --list-tokens' or 'pkcs11-tool --module MODULE --list-slots' "
		 "shows them)",
		 p->module, p->base.shown, (unsigned long)n, n == 1 ? "" : "s");
	return KMS_E_STORE_UNAVAILABLE;
}

static int store_p11_login(struct store_root_p11 *p, CK_SESSION_HANDLE s, char *why, size_t why_len)
{
	CK_RV rv;

	if (!p->pin)
		return 0;
	rv = p->f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)p->pin, p->pin_len);
	if (rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN)
		return 0;
	if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_INVALID || rv == CKR_PIN_LEN_RANGE) {
		snprintf(why, why_len,
			 "the PIN of token '%.300s' is wrong (%s): check pin-source/pin-value or "
			 "pkcs11_pin_file; tokens lock after a few wrong PINs",
			 p->base.shown, store_p11_rv(rv));
		return KMS_E_IO;
	}
	snprintf(why, why_len, "cannot log in to token '%.300s' (%s)", p->base.shown,
		 store_p11_rv(rv));
	return store_p11_lost_rv(rv) ? KMS_E_STORE_UNAVAILABLE : KMS_E_IO;
}

/* The template naming our object: a secret key with the URI's label (and id). */
static CK_ULONG store_p11_name(struct store_root_p11 *p, CK_ATTRIBUTE *t, CK_OBJECT_CLASS *cls)
{
	CK_ULONG n = 0;

	*cls = CKO_SECRET_KEY;
	t[n++] = (CK_ATTRIBUTE){ CKA_CLASS, cls, sizeof(*cls) };
	t[n++] = (CK_ATTRIBUTE){ CKA_LABEL, p->label, strlen(p->label) };
	if (p->id_len)
		t[n++] = (CK_ATTRIBUTE){ CKA_ID, p->id, p->id_len };
	return n;
}

static int store_p11_generate(struct store_root_p11 *p, CK_SESSION_HANDLE s, char *why,
			      size_t why_len)
{
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_KEY_TYPE kt = CKK_AES;
	CK_ULONG len = CORE_KEY_BYTES;
	CK_OBJECT_CLASS cls;
	CK_MECHANISM mech = { CKM_AES_KEY_GEN, NULL, 0 };
	CK_ATTRIBUTE t[20];
	CK_ULONG n = store_p11_name(p, t, &cls);
	CK_RV rv;

	t[n++] = (CK_ATTRIBUTE){ CKA_KEY_TYPE, &kt, sizeof(kt) };
	t[n++] = (CK_ATTRIBUTE){ CKA_VALUE_LEN, &len, sizeof(len) };
	t[n++] = (CK_ATTRIBUTE){ CKA_TOKEN, &yes, sizeof(yes) };
	t[n++] = (CK_ATTRIBUTE){ CKA_PRIVATE, &yes, sizeof(yes) };
	t[n++] = (CK_ATTRIBUTE){ CKA_SENSITIVE, &yes, sizeof(yes) };
	t[n++] = (CK_ATTRIBUTE){ CKA_EXTRACTABLE, &no, sizeof(no) };
	t[n++] = (CK_ATTRIBUTE){ CKA_ENCRYPT, &yes, sizeof(yes) };
	t[n++] = (CK_ATTRIBUTE){ CKA_DECRYPT, &yes, sizeof(yes) };
	t[n++] = (CK_ATTRIBUTE){ CKA_SIGN, &yes, sizeof(yes) };
	t[n++] = (CK_ATTRIBUTE){ CKA_VERIFY, &no, sizeof(no) };
	t[n++] = (CK_ATTRIBUTE){ CKA_WRAP, &no, sizeof(no) };
	t[n++] = (CK_ATTRIBUTE){ CKA_UNWRAP, &no, sizeof(no) };
	t[n++] = (CK_ATTRIBUTE){ CKA_DERIVE, &no, sizeof(no) };
	rv = p->f->C_GenerateKey(s, &mech, t, n, &p->key);
	if (rv != CKR_OK) {
		snprintf(why, why_len,
			 "cannot create the root key '%.300s' in the token (%s); is the token "
			 "writable and logged in (a PIN)?",
			 p->base.shown, store_p11_rv(rv));
		return KMS_E_IO;
	}
	return 0;
}

/* A key that may leave the token is no root of trust: refuse it. */
static int store_p11_check_object(struct store_root_p11 *p, CK_SESSION_HANDLE s, char *why,
				  size_t why_len)
{
	CK_BBOOL sensitive = CK_FALSE, extractable = CK_TRUE;
	CK_KEY_TYPE kt = 0;
	CK_ULONG len = 0;
	CK_ATTRIBUTE t[] = {
		{ CKA_KEY_TYPE, &kt, sizeof(kt) },
		{ CKA_VALUE_LEN, &len, sizeof(len) },
		{ CKA_SENSITIVE, &sensitive, sizeof(sensitive) },
		{ CKA_EXTRACTABLE, &extractable, sizeof(extractable) },
	};
	CK_RV rv = p->f->C_GetAttributeValue(s, p->key, t, KMS_ARRAY_SIZE(t));

	if (rv != CKR_OK) {
		snprintf(why, why_len, "cannot read the attributes of '%.300s' (%s)", p->base.shown,
			 store_p11_rv(rv));
		return store_p11_lost_rv(rv) ? KMS_E_STORE_UNAVAILABLE : KMS_E_IO;
	}
	if (kt != CKK_AES || len != CORE_KEY_BYTES) {
		snprintf(why, why_len, "'%.300s' is not an AES-256 key", p->base.shown);
		return KMS_E_IO;
	}
	if (!sensitive || extractable) {
		snprintf(why, why_len,
			 "'%.300s' may leave the token (CKA_SENSITIVE false or CKA_EXTRACTABLE "
			 "true): kmsfs wants a root key that cannot; let kmsctl init --root-key "
			 "create one",
			 p->base.shown);
		return KMS_E_IO;
	}
	return 0;
}

/* Find our object (create it if create and absent). */
static int store_p11_find_key(struct store_root_p11 *p, CK_SESSION_HANDLE s, bool create,
			      bool *created, char *why, size_t why_len)
{
	CK_OBJECT_HANDLE found[2];
	CK_ULONG nfound = 0;
	CK_OBJECT_CLASS cls;
	CK_ATTRIBUTE t[4];
	CK_ULONG n = store_p11_name(p, t, &cls);
	CK_RV rv = p->f->C_FindObjectsInit(s, t, n);

	if (rv == CKR_OK) {
		rv = p->f->C_FindObjects(s, found, KMS_ARRAY_SIZE(found), &nfound);
		(void)p->f->C_FindObjectsFinal(s);
	}
	if (rv != CKR_OK) {
		snprintf(why, why_len, "cannot search token '%.300s' (%s)", p->base.shown,
			 store_p11_rv(rv));
		return store_p11_lost_rv(rv) ? KMS_E_STORE_UNAVAILABLE : KMS_E_IO;
	}
	if (nfound > 1) {
		snprintf(why, why_len,
			 "several secret keys in the token match '%.300s': name one (id=...)",
			 p->base.shown);
		return KMS_E_IO;
	}
	if (nfound == 1) {
		p->key = found[0];
		return store_p11_check_object(p, s, why, why_len);
	}
	if (!create) {
		snprintf(why, why_len,
			 "no secret key '%.200s' in the token of '%.300s'%s (kmsctl init "
			 "--root-key URI creates one)",
			 p->label, p->base.shown, p->pin ? "" : " (no PIN given: is it private?)");
		return KMS_E_KEY_NOT_FOUND;
	}
	*created = true;
	return store_p11_generate(p, s, why, why_len);
}

static void store_p11_close_sessions(struct store_root_p11 *p)
{
	pthread_mutex_lock(&p->pool_lock);
	for (size_t i = 0; i < p->npool; i++)
		(void)p->f->C_CloseSession(p->pool[i]);
	p->npool = 0;
	pthread_mutex_unlock(&p->pool_lock);
}

/* Start the module (afresh) and find the key: lock held for writing (or not shared yet). */
static int store_p11_start(struct store_root_p11 *p, bool create, bool *created, char *why,
			   size_t why_len)
{
	CK_C_INITIALIZE_ARGS args = { .flags = CKF_OS_LOCKING_OK };
	CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
	CK_RV rv;
	int r;

	if (p->initialized) {
		store_p11_close_sessions(p);
		(void)p->f->C_Finalize(NULL);
		p->initialized = false;
	}
	rv = p->f->C_Initialize(&args);
	if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		snprintf(why, why_len, "PKCS#11 module '%.300s' does not start (%s)", p->module,
			 store_p11_rv(rv));
		return KMS_E_STORE_UNAVAILABLE;
	}
	p->initialized = true;
	if ((r = store_p11_find_slot(p, why, why_len)) < 0)
		return r;
	rv = p->f->C_OpenSession(p->slot, CKF_SERIAL_SESSION | (create ? CKF_RW_SESSION : 0), NULL,
				 NULL, &s);
	if (rv != CKR_OK) {
		snprintf(why, why_len, "cannot open a session with token '%.300s' (%s)",
			 p->base.shown, store_p11_rv(rv));
		return KMS_E_STORE_UNAVAILABLE;
	}
	r = store_p11_login(p, s, why, why_len);
	if (r == 0)
		r = store_p11_find_key(p, s, create, created, why, why_len);
	if (r < 0) {
		(void)p->f->C_CloseSession(s);
		return r;
	}
	pthread_mutex_lock(&p->pool_lock);
	p->pool[p->npool++] = s;
	pthread_mutex_unlock(&p->pool_lock);
	return 0;
}

/* A call saw the token go: say so (once), fail calls until a reopen gets it back. */
static void store_p11_lost(struct store_root_p11 *p, const char *what, CK_RV rv)
{
	bool was_up = true;

	if (!__atomic_compare_exchange_n(&p->up, &was_up, false, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_RELAXED))
		return;
	__atomic_add_fetch(&p->losses, 1, __ATOMIC_RELAXED);
	__atomic_store_n(&p->next_try_ms, kms_time_mono_ms() + STORE_P11_RETRY_MS,
			 __ATOMIC_RELAXED);
	pthread_mutex_lock(&p->pool_lock);
	snprintf(p->error, sizeof(p->error), "%s: %s", what, store_p11_rv(rv));
	pthread_mutex_unlock(&p->pool_lock);
}

/* Lost: start afresh if the last try is old enough. Whether it is up. */
static bool store_p11_retry(struct store_root_p11 *p)
{
	char why[512];
	bool created = false;

	if (__atomic_load_n(&p->up, __ATOMIC_ACQUIRE))
		return true;
	if (kms_time_mono_ms() < __atomic_load_n(&p->next_try_ms, __ATOMIC_RELAXED))
		return false;
	pthread_rwlock_wrlock(&p->lock);
	if (!p->up && kms_time_mono_ms() >= p->next_try_ms) {
		if (store_p11_start(p, false, &created, why, sizeof(why)) == 0) {
			__atomic_store_n(&p->up, true, __ATOMIC_RELEASE);
			__atomic_add_fetch(&p->recoveries, 1, __ATOMIC_RELAXED);
		} else {
			__atomic_store_n(&p->next_try_ms, kms_time_mono_ms() + STORE_P11_RETRY_MS,
					 __ATOMIC_RELAXED);
			pthread_mutex_lock(&p->pool_lock);
			snprintf(p->error, sizeof(p->error), "%.159s", why);
			pthread_mutex_unlock(&p->pool_lock);
		}
	}
	pthread_rwlock_unlock(&p->lock);
	return __atomic_load_n(&p->up, __ATOMIC_ACQUIRE);
}

/* Begin a call: the lock for reading and a session of its own. */
static int store_p11_begin(struct store_root_p11 *p, CK_SESSION_HANDLE *s)
{
	CK_RV rv = CKR_OK;

	if (!store_p11_retry(p))
		return KMS_E_STORE_UNAVAILABLE;
	pthread_rwlock_rdlock(&p->lock);
	if (!__atomic_load_n(&p->up, __ATOMIC_ACQUIRE)) {
		pthread_rwlock_unlock(&p->lock);
		return KMS_E_STORE_UNAVAILABLE;
	}
	pthread_mutex_lock(&p->pool_lock);
	*s = p->npool ? p->pool[--p->npool] : CK_INVALID_HANDLE;
	pthread_mutex_unlock(&p->pool_lock);
	if (*s == CK_INVALID_HANDLE)
		rv = p->f->C_OpenSession(p->slot, CKF_SERIAL_SESSION, NULL, NULL, s);
	if (rv != CKR_OK) {
		store_p11_lost(p, "open session", rv);
		pthread_rwlock_unlock(&p->lock);
		return KMS_E_STORE_UNAVAILABLE;
	}
	return 0;
}

/* End a call: the session back to the pool (closed if the pool is full or the call lost it). */
static void store_p11_end(struct store_root_p11 *p, CK_SESSION_HANDLE s, bool keep)
{
	pthread_mutex_lock(&p->pool_lock);
	if (keep && p->npool < STORE_P11_POOL) {
		p->pool[p->npool++] = s;
		s = CK_INVALID_HANDLE;
	}
	pthread_mutex_unlock(&p->pool_lock);
	if (s != CK_INVALID_HANDLE)
		(void)p->f->C_CloseSession(s);
	pthread_rwlock_unlock(&p->lock);
}

/* After a failed call: is the token still there (then the call itself was refused)? Some
 * modules answer a tag that does not verify with CKR_GENERAL_ERROR. */
static bool store_p11_alive(struct store_root_p11 *p, CK_SESSION_HANDLE s)
{
	CK_SESSION_INFO si;
	CK_KEY_TYPE kt;
	CK_ATTRIBUTE t = { CKA_KEY_TYPE, &kt, sizeof(kt) };

	return p->f->C_GetSessionInfo(s, &si) == CKR_OK &&
	       p->f->C_GetAttributeValue(s, p->key, &t, 1) == CKR_OK;
}

static int store_p11_gcm(struct store_root *r, bool seal, const void *aad, size_t aad_len,
			 const uint8_t *in, size_t n, uint8_t *out, size_t cap, size_t *out_len)
{
	struct store_root_p11 *p = store_p11_of(r);
	uint8_t iv[CORE_NONCE_BYTES], *tmp = NULL;
	CK_GCM_PARAMS gp = { iv,      sizeof(iv),	 8 * sizeof(iv), (CK_BYTE_PTR)aad,
			     aad_len, 8 * CORE_TAG_BYTES };
	CK_MECHANISM mech = { CKM_AES_GCM, &gp, sizeof(gp) };
	CK_SESSION_HANDLE s;
	CK_ULONG len;
	CK_RV rv;
	int e;

	*out_len = 0;
	if (seal ? cap < n + CORE_SEALED_OVERHEAD || n > 65536 : n < CORE_SEALED_OVERHEAD)
		return seal ? KMS_E_BAD_PARAM : KMS_E_DECRYPT_FAILED;
	if (seal && (e = core_random(iv, sizeof(iv))) < 0)
		return e;
	if (!seal)
		memcpy(iv, in, sizeof(iv));
	/* The token writes ciphertext || tag when sealing; plaintext may need room for the tag
	 * while opening (some modules ask for it): a secure-heap buffer of the input's size. */
	len = seal ? n + CORE_TAG_BYTES : n;
	if (!seal && !(tmp = kms_secret_alloc(n)))
		return KMS_E_NOMEM;
	if ((e = store_p11_begin(p, &s)) < 0)
		goto out;
	rv = (seal ? p->f->C_EncryptInit : p->f->C_DecryptInit)(s, &mech, p->key);
	if (rv == CKR_OK && seal)
		rv = p->f->C_Encrypt(s, (CK_BYTE_PTR)in, n, out + sizeof(iv), &len);
	else if (rv == CKR_OK)
		rv = p->f->C_Decrypt(s, (CK_BYTE_PTR)in + sizeof(iv), n - sizeof(iv), tmp, &len);
	if (rv == CKR_OK && (seal ? len != n + CORE_TAG_BYTES : len > cap))
		rv = CKR_GENERAL_ERROR;
	if (rv == CKR_OK) {
		if (seal) {
			memcpy(out, iv, sizeof(iv));
			*out_len = len + sizeof(iv);
		} else {
			memcpy(out, tmp, len);
			*out_len = len;
		}
		e = 0;
	} else if (!seal && (!store_p11_lost_rv(rv) || store_p11_alive(p, s))) {
		e = KMS_E_DECRYPT_FAILED;
	} else {
		store_p11_lost(p, seal ? "C_Encrypt" : "C_Decrypt", rv);
		e = store_p11_lost_rv(rv) ? KMS_E_STORE_UNAVAILABLE : KMS_E_IO;
	}
	store_p11_end(p, s, e != KMS_E_STORE_UNAVAILABLE);
out:
	if (tmp)
		kms_secret_free(tmp, n);
	return e;
}

static int store_p11_seal(struct store_root *r, const void *aad, size_t aad_len, const uint8_t *in,
			  size_t n, uint8_t *out, size_t cap, size_t *out_len)
{
	return store_p11_gcm(r, true, aad, aad_len, in, n, out, cap, out_len);
}

static int store_p11_unseal(struct store_root *r, const void *aad, size_t aad_len,
			    const uint8_t *in, size_t n, uint8_t *out, size_t cap, size_t *out_len)
{
	return store_p11_gcm(r, false, aad, aad_len, in, n, out, cap, out_len);
}

/* SP 800-108 counter mode, PRF AES-CMAC in the token (see the top of this file). */
static int store_p11_derive(struct store_root *r, const char *label, uint8_t out[CORE_KEY_BYTES])
{
	struct store_root_p11 *p = store_p11_of(r);
	CK_MECHANISM mech = { CKM_AES_CMAC, NULL, 0 };
	size_t label_len = strlen(label);
	uint8_t msg[4 + 256 + 1 + 4];
	CK_SESSION_HANDLE s;
	CK_ULONG len;
	CK_RV rv = CKR_OK;
	int e;

	if (label_len > 256)
		return KMS_E_BAD_PARAM;
	memcpy(msg + 4, label, label_len);
	msg[4 + label_len] = 0;
	msg[4 + label_len + 1] = 0; /* L = 256 bits, big-endian */
	msg[4 + label_len + 2] = 0;
	msg[4 + label_len + 3] = 1;
	msg[4 + label_len + 4] = 0;
	if ((e = store_p11_begin(p, &s)) < 0)
		return e;
	for (unsigned i = 1; rv == CKR_OK && i <= 2; i++) {
		msg[0] = msg[1] = msg[2] = 0;
		msg[3] = (uint8_t)i;
		len = 16;
		rv = p->f->C_SignInit(s, &mech, p->key);
		if (rv == CKR_OK)
			rv = p->f->C_Sign(s, msg, 4 + label_len + 5, out + 16 * (i - 1), &len);
		if (rv == CKR_OK && len != 16)
			rv = CKR_GENERAL_ERROR;
	}
	if (rv != CKR_OK) {
		kms_wipe(out, CORE_KEY_BYTES);
		if (store_p11_lost_rv(rv) && !store_p11_alive(p, s)) {
			store_p11_lost(p, "C_Sign", rv);
			e = KMS_E_STORE_UNAVAILABLE;
		} else {
			/* CKR_KEY_FUNCTION_NOT_PERMITTED: the object lacks CKA_SIGN. */
			e = KMS_E_IO;
		}
	}
	store_p11_end(p, s, e != KMS_E_STORE_UNAVAILABLE);
	return e;
}

static bool store_p11_secure(const struct store_root *r)
{
	const struct store_root_p11 *p = (const struct store_root_p11 *)r;

	/* The key is in the token; of it only the PIN is here, in the secure heap. */
	return !p->pin || kms_secret_is_secure(p->pin);
}

static void store_p11_status(struct store_root *r, struct store_root_status *out)
{
	struct store_root_p11 *p = store_p11_of(r);

	out->available = __atomic_load_n(&p->up, __ATOMIC_ACQUIRE);
	out->losses = __atomic_load_n(&p->losses, __ATOMIC_RELAXED);
	out->recoveries = __atomic_load_n(&p->recoveries, __ATOMIC_RELAXED);
	pthread_mutex_lock(&p->pool_lock);
	snprintf(out->error, sizeof(out->error), "%s", p->error);
	pthread_mutex_unlock(&p->pool_lock);
}

static bool store_p11_poll(struct store_root *r)
{
	return store_p11_retry(store_p11_of(r));
}

static int store_p11_reconnect(struct store_root *r, char *why, size_t why_len)
{
	struct store_root_p11 *p = store_p11_of(r);
	bool created = false;
	int e;

	pthread_rwlock_wrlock(&p->lock);
	/* The parent's sessions are not ours: drop them without closing (the parent may). */
	pthread_mutex_lock(&p->pool_lock);
	p->npool = 0;
	pthread_mutex_unlock(&p->pool_lock);
	p->initialized = false;
	(void)p->f->C_Finalize(NULL);
	e = store_p11_start(p, false, &created, why, why_len);
	__atomic_store_n(&p->up, e == 0, __ATOMIC_RELEASE);
	if (e < 0)
		__atomic_store_n(&p->next_try_ms, kms_time_mono_ms() + STORE_P11_RETRY_MS,
				 __ATOMIC_RELAXED);
	pthread_rwlock_unlock(&p->lock);
	return e;
}

static int store_p11_destroy(struct store_root *r, char *why, size_t why_len)
{
	struct store_root_p11 *p = store_p11_of(r);
	CK_SESSION_HANDLE s = CK_INVALID_HANDLE, rw = CK_INVALID_HANDLE;
	CK_RV rv;
	int e;

	if ((e = store_p11_begin(p, &s)) < 0) {
		snprintf(why, why_len, "token of '%.300s' unavailable", p->base.shown);
		return e;
	}
	/* Object destruction needs a read-write session. */
	rv = p->f->C_OpenSession(p->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &rw);
	if (rv == CKR_OK) {
		rv = p->f->C_DestroyObject(rw, p->key);
		(void)p->f->C_CloseSession(rw);
	}
	if (rv != CKR_OK) {
		snprintf(why, why_len, "cannot destroy '%.300s' in the token (%s)", p->base.shown,
			 store_p11_rv(rv));
		e = KMS_E_IO;
	}
	store_p11_end(p, s, true);
	return e;
}

static void store_p11_close(struct store_root *r)
{
	struct store_root_p11 *p = store_p11_of(r);

	if (p->initialized) {
		store_p11_close_sessions(p);
		(void)p->f->C_Finalize(NULL);
	}
	if (p->dl)
		dlclose(p->dl);
	if (p->uri)
		p11_kit_uri_free(p->uri);
	if (p->pin)
		kms_secret_free(p->pin, STORE_P11_PIN_MAX + 1);
	pthread_rwlock_destroy(&p->lock);
	pthread_mutex_destroy(&p->pool_lock);
	free(p);
}

static const struct store_root_ops store_p11_ops = {
	.seal = store_p11_seal,
	.unseal = store_p11_unseal,
	.derive = store_p11_derive,
	.destroy = store_p11_destroy,
	.close = store_p11_close,
	.secure = store_p11_secure,
	.status = store_p11_status,
	.poll = store_p11_poll,
	.reconnect = store_p11_reconnect,
	.opaque_derived = false,
};

int store_root_p11_open(const struct store_root_params *prm, struct store_root **out, bool *created,
			char *why, size_t why_len)
{
	struct store_root_p11 *p = calloc(1, sizeof(*p));
	int r;

	*out = NULL;
	*created = false;
	if (!p)
		return KMS_E_NOMEM;
	p->base.ops = &store_p11_ops;
	pthread_rwlock_init(&p->lock, NULL);
	pthread_mutex_init(&p->pool_lock, NULL);
	store_p11_shown(p, prm->location);
	r = store_p11_parse(p, prm->location, why, why_len);
	if (r == 0)
		r = store_p11_pin(p, prm->pin_file, why, why_len);
	if (r == 0)
		r = store_p11_load_module(p, prm->pkcs11_module, why, why_len);
	if (r == 0)
		r = store_p11_start(p, prm->create, created, why, why_len);
	if (r < 0) {
		store_p11_close(&p->base);
		return r;
	}
	p->up = true;
	*out = &p->base;
	return 0;
}
