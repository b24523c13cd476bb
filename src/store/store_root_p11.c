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
#include <sys/stat.h>
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

/* A module is loaded and initialised once per process, whatever number of roots use it (a store
 * copy or a root-key rotation opens two): C_Finalize would end every user's sessions. */
struct store_p11_module {
	struct store_p11_module *next;
	char path[1024];
	void *dl;
	CK_FUNCTION_LIST_PTR f;
	unsigned refs; /* store_p11_modules_lock */
	/* Calls hold it for reading; starting the module afresh (and any root's login and
	 * search) for writing. */
	pthread_rwlock_t lock;
	bool initialized; /* C_Initialize succeeded (lock held for writing) */
	uint64_t gen;	  /* bumped by every C_Initialize: older sessions and handles are void */
};

static pthread_mutex_t store_p11_modules_lock = PTHREAD_MUTEX_INITIALIZER;
static struct store_p11_module *store_p11_modules;

struct store_root_p11 {
	struct store_root base;
	char module[1024];
	struct store_p11_module *m;
	CK_FUNCTION_LIST_PTR f;
	P11KitUri *uri;
	char label[STORE_P11_LABEL_MAX + 1];
	uint8_t id[64];
	size_t id_len;
	char *pin; /* secure heap, NUL-terminated */
	size_t pin_len;
	pthread_mutex_t pool_lock;
	CK_SESSION_HANDLE pool[STORE_P11_POOL];
	size_t npool;
	CK_SLOT_ID slot;
	CK_OBJECT_HANDLE key;
	uint64_t gen;		     /* m->gen when the sessions and key handle were had */
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

/* A PIN file is a secret like a private key: refused (as OpenSSH refuses a key file) unless it
 * belongs to root or to the user running this and nobody else may read or write it. fstat: the
 * file a symlink leads to is the one judged. */
static int store_p11_pin_file_check(int fd, const char *path, char *why, size_t why_len)
{
	struct stat st;

	if (fstat(fd, &st) != 0) {
		snprintf(why, why_len, "cannot read the PIN file '%.300s': %s", path,
			 strerror(errno));
		return KMS_E_IO;
	}
	if (st.st_uid != 0 && st.st_uid != geteuid()) {
		snprintf(why, why_len,
			 "the PIN file '%.300s' belongs to uid %u, not to root or uid %u that runs "
			 "this; chown it (and chmod 600 it)",
			 path, (unsigned)st.st_uid, (unsigned)geteuid());
		return KMS_E_IO;
	}
	if (st.st_mode & 077) {
		snprintf(why, why_len,
			 "the PIN file '%.300s' is open to other users (mode %04o); run 'chmod 600 "
			 "%.300s'",
			 path, (unsigned)(st.st_mode & 07777), path);
		return KMS_E_IO;
	}
	return 0;
}

/* The PIN from the file src (pin_file, or the URI's pin-source file:PATH or PATH), one line,
 * into p->pin. */
static int store_p11_pin_read(struct store_root_p11 *p, const char *src, char *why, size_t why_len)
{
	ssize_t n = 0;
	int fd, r;

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
	r = store_p11_pin_file_check(fd, src, why, why_len);
	if (r == 0)
		n = read(fd, p->pin, STORE_P11_PIN_MAX + 1);
	close(fd);
	if (r == 0 && (n < 0 || n > STORE_P11_PIN_MAX)) {
		snprintf(why, why_len, "cannot read the PIN file '%.300s': %s", src,
			 n < 0 ? strerror(errno) : "longer than a PIN");
		r = KMS_E_IO;
	}
	if (r < 0)
		n = 0;
	/* One line: a trailing newline (echo PIN > file) is not part of it. */
	while (n > 0 && (p->pin[n - 1] == '\n' || p->pin[n - 1] == '\r'))
		n--;
	p->pin[n] = 0;
	p->pin_len = (size_t)n;
	return r;
}

/* The value of the URI's pin-value attribute (its text up to the next ';', '?' or '&'), NULL if
 * there is none. */
static const char *store_p11_pin_value_at(const char *location, size_t *len)
{
	for (const char *c = location + 7; *c;) {
		size_t n = strcspn(c, ";?&");

		if (strncmp(c, "pin-value=", 10) == 0) {
			*len = n - 10;
			return c + 10;
		}
		c += n + (c[n] ? 1 : 0);
	}
	return NULL;
}

static int store_p11_hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The pin-value of the URI, percent-decoded, into p->pin: read here, so p11-kit (which parses the
 * URI without it) never holds a copy outside the secure heap. */
static int store_p11_pin_value(struct store_root_p11 *p, const char *value, size_t n, char *why,
			       size_t why_len)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		int hi = 0, lo = 0;

		if (o == STORE_P11_PIN_MAX) {
			snprintf(why, why_len, "the PIN in the PKCS#11 URI is too long");
			return KMS_E_BAD_PARAM;
		}
		if (value[i] != '%') {
			p->pin[o++] = value[i];
			continue;
		}
		if (i + 2 >= n || (hi = store_p11_hex_digit(value[i + 1])) < 0 ||
		    (lo = store_p11_hex_digit(value[i + 2])) < 0) {
			snprintf(
				why, why_len,
				"the PIN in the PKCS#11 URI has a '%%' that is not followed by two "
				"hex digits");
			return KMS_E_BAD_PARAM;
		}
		p->pin[o++] = (char)(hi << 4 | lo);
		i += 2;
	}
	p->pin[o] = 0;
	p->pin_len = o;
	return 0;
}

/* The PIN: pin_file, else the URI's pin-source (file:PATH or PATH), else its pin-value, else
 * none (a token without login). Read into the secure heap. */
static int store_p11_pin(struct store_root_p11 *p, const char *location, const char *pin_file,
			 char *why, size_t why_len)
{
	const char *src = pin_file ? pin_file : p11_kit_uri_get_pin_source(p->uri);
	size_t n = 0;
	const char *value = store_p11_pin_value_at(location, &n);
	int r;

	if (!src && !value)
		return 0;
	if (!(p->pin = kms_secret_alloc(STORE_P11_PIN_MAX + 1)))
		return KMS_E_NOMEM;
	r = src ? store_p11_pin_read(p, src, why, why_len)
		: store_p11_pin_value(p, value, n, why, why_len);
	if (r < 0)
		kms_wipe(p->pin, STORE_P11_PIN_MAX + 1);
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

/* Without its pin-value attribute and one delimiter next to it: the one after it within the
 * path or the query (';', '&'), else the one before it ("a;pin-value=1?b" is "a?b"). */
bool store_root_location_shown(const char *location, char *out, size_t cap)
{
	const char *c = location + 7;
	size_t o = 7;

	if (!store_root_location_is_pkcs11(location))
		return (size_t)snprintf(out, cap, "%s", location ? location : "") < cap;
	if (cap <= o)
		return false;
	memcpy(out, location, o);
	while (*c) {
		size_t n = strcspn(c, ";?&");
		char delim = c[n];
		size_t step = n + (delim ? 1 : 0);

		if (strncmp(c, "pin-value=", 10) != 0) {
			if (o + step >= cap) {
				out[o] = 0;
				return false;
			}
			memcpy(out + o, c, step);
			o += step;
		} else if (delim != ';' && delim != '&') {
			if (o > 7 && strchr(";?&", out[o - 1]))
				o--;
			if (delim == '?' && o + 1 < cap)
				out[o++] = '?';
		}
		c += step;
	}
	out[o] = 0;
	return true;
}

/* The module at path (NULL: p11-kit's proxy), loaded once per process. */
static int store_p11_module_get(struct store_root_p11 *p, const char *path, char *why,
				size_t why_len)
{
	CK_RV (*get_list)(CK_FUNCTION_LIST_PTR_PTR);
	struct store_p11_module *m;
	int r = 0;

	snprintf(p->module, sizeof(p->module), "%s", path ? path : STORE_P11_PROXY_MODULE);
	pthread_mutex_lock(&store_p11_modules_lock);
	for (m = store_p11_modules; m && strcmp(m->path, p->module) != 0;)
		m = m->next;
	if (!m && !(m = calloc(1, sizeof(*m))))
		r = KMS_E_NOMEM;
	else if (!m->dl) {
		snprintf(m->path, sizeof(m->path), "%s", p->module);
		m->dl = dlopen(m->path, RTLD_NOW | RTLD_LOCAL);
		*(void **)&get_list = m->dl ? dlsym(m->dl, "C_GetFunctionList") : NULL;
		if (!m->dl)
			snprintf(why, why_len, "cannot load the PKCS#11 module '%.300s': %.300s",
				 m->path, dlerror());
		else if (!get_list || get_list(&m->f) != CKR_OK || !m->f)
			snprintf(why, why_len,
				 "'%.300s' is not a PKCS#11 module (no C_GetFunctionList)",
				 m->path);
		if (!m->dl || !m->f) {
			if (m->dl)
				dlclose(m->dl);
			free(m);
			m = NULL;
			r = KMS_E_IO;
		} else {
			pthread_rwlock_init(&m->lock, NULL);
			m->next = store_p11_modules;
			store_p11_modules = m;
		}
	}
	if (m) {
		m->refs++;
		p->m = m;
		p->f = m->f;
	}
	pthread_mutex_unlock(&store_p11_modules_lock);
	return r;
}

/* The last root using a module: finalise and unload it. */
static void store_p11_module_put(struct store_p11_module *m)
{
	struct store_p11_module **at;

	pthread_mutex_lock(&store_p11_modules_lock);
	if (--m->refs > 0) {
		pthread_mutex_unlock(&store_p11_modules_lock);
		return;
	}
	for (at = &store_p11_modules; *at != m;)
		at = &(*at)->next;
	*at = m->next;
	pthread_mutex_unlock(&store_p11_modules_lock);
	if (m->initialized)
		(void)m->f->C_Finalize(NULL);
	dlclose(m->dl);
	pthread_rwlock_destroy(&m->lock);
	free(m);
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

/* The pooled sessions: closed while they are of the module's current start, else only
 * forgotten (their handles may be another root's now). Module lock held for writing. */
static void store_p11_drop_sessions(struct store_root_p11 *p)
{
	pthread_mutex_lock(&p->pool_lock);
	for (size_t i = 0; p->gen == p->m->gen && p->m->initialized && i < p->npool; i++)
		(void)p->f->C_CloseSession(p->pool[i]);
	p->npool = 0;
	pthread_mutex_unlock(&p->pool_lock);
}

/* Start the module (afresh if reinit: a lost token) and find the key; module lock held for
 * writing. */
static int store_p11_start(struct store_root_p11 *p, bool create, bool *created, bool reinit,
			   char *why, size_t why_len)
{
	CK_C_INITIALIZE_ARGS args = { .flags = CKF_OS_LOCKING_OK };
	CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
	struct store_p11_module *m = p->m;
	CK_RV rv;
	int r;

	store_p11_drop_sessions(p);
	if (reinit && m->initialized) {
		(void)p->f->C_Finalize(NULL);
		m->initialized = false;
	}
	if (!m->initialized) {
		rv = p->f->C_Initialize(&args);
		if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
			snprintf(why, why_len, "PKCS#11 module '%.300s' does not start (%s)",
				 p->module, store_p11_rv(rv));
			return KMS_E_STORE_UNAVAILABLE;
		}
		m->initialized = true;
		__atomic_add_fetch(&m->gen, 1, __ATOMIC_ACQ_REL);
	}
	__atomic_store_n(&p->gen, m->gen, __ATOMIC_RELEASE);
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

/* Up, with sessions and a key handle of the module's current start. */
static bool store_p11_current(struct store_root_p11 *p)
{
	return __atomic_load_n(&p->up, __ATOMIC_ACQUIRE) &&
	       __atomic_load_n(&p->gen, __ATOMIC_ACQUIRE) ==
		       __atomic_load_n(&p->m->gen, __ATOMIC_ACQUIRE);
}

/* Lost: start the module afresh if the last try is old enough. Up but the module was started
 * afresh for another root: log in and find the key again (at once). Whether it is usable. */
static bool store_p11_retry(struct store_root_p11 *p)
{
	char why[512];
	bool created = false, lost;

	if (store_p11_current(p))
		return true;
	lost = !__atomic_load_n(&p->up, __ATOMIC_ACQUIRE);
	if (lost && kms_time_mono_ms() < __atomic_load_n(&p->next_try_ms, __ATOMIC_RELAXED))
		return false;
	pthread_rwlock_wrlock(&p->m->lock);
	lost = !p->up;
	if (!(p->up && p->gen == p->m->gen) && (!lost || kms_time_mono_ms() >= p->next_try_ms)) {
		if (store_p11_start(p, false, &created, lost, why, sizeof(why)) == 0) {
			__atomic_store_n(&p->up, true, __ATOMIC_RELEASE);
			if (lost)
				__atomic_add_fetch(&p->recoveries, 1, __ATOMIC_RELAXED);
		} else {
			if (!lost) {
				__atomic_store_n(&p->up, false, __ATOMIC_RELEASE);
				__atomic_add_fetch(&p->losses, 1, __ATOMIC_RELAXED);
			}
			__atomic_store_n(&p->next_try_ms, kms_time_mono_ms() + STORE_P11_RETRY_MS,
					 __ATOMIC_RELAXED);
			pthread_mutex_lock(&p->pool_lock);
			snprintf(p->error, sizeof(p->error), "%.159s", why);
			pthread_mutex_unlock(&p->pool_lock);
		}
	}
	pthread_rwlock_unlock(&p->m->lock);
	return store_p11_current(p);
}

/* Begin a call: the module lock for reading and a session of its own. */
static int store_p11_begin(struct store_root_p11 *p, CK_SESSION_HANDLE *s)
{
	CK_RV rv = CKR_OK;

	if (!store_p11_retry(p))
		return KMS_E_STORE_UNAVAILABLE;
	pthread_rwlock_rdlock(&p->m->lock);
	if (!store_p11_current(p)) {
		pthread_rwlock_unlock(&p->m->lock);
		return KMS_E_STORE_UNAVAILABLE;
	}
	pthread_mutex_lock(&p->pool_lock);
	*s = p->npool ? p->pool[--p->npool] : CK_INVALID_HANDLE;
	pthread_mutex_unlock(&p->pool_lock);
	if (*s == CK_INVALID_HANDLE)
		rv = p->f->C_OpenSession(p->slot, CKF_SERIAL_SESSION, NULL, NULL, s);
	if (rv != CKR_OK) {
		store_p11_lost(p, "open session", rv);
		pthread_rwlock_unlock(&p->m->lock);
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
	pthread_rwlock_unlock(&p->m->lock);
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

	pthread_rwlock_wrlock(&p->m->lock);
	/* The parent's sessions are not ours: forget them without closing (the parent may), and
	 * start the module afresh in this process. */
	pthread_mutex_lock(&p->pool_lock);
	p->npool = 0;
	pthread_mutex_unlock(&p->pool_lock);
	e = store_p11_start(p, false, &created, true, why, why_len);
	__atomic_store_n(&p->up, e == 0, __ATOMIC_RELEASE);
	if (e < 0)
		__atomic_store_n(&p->next_try_ms, kms_time_mono_ms() + STORE_P11_RETRY_MS,
				 __ATOMIC_RELAXED);
	pthread_rwlock_unlock(&p->m->lock);
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

	if (p->m) {
		pthread_rwlock_wrlock(&p->m->lock);
		store_p11_drop_sessions(p);
		pthread_rwlock_unlock(&p->m->lock);
		store_p11_module_put(p->m);
	}
	if (p->uri)
		p11_kit_uri_free(p->uri);
	if (p->pin)
		kms_secret_free(p->pin, STORE_P11_PIN_MAX + 1);
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
	pthread_mutex_init(&p->pool_lock, NULL);
	/* p11-kit parses the URI without its PIN (store_p11_pin reads that itself). */
	if (!store_root_location_shown(prm->location, p->base.shown, sizeof(p->base.shown))) {
		snprintf(why, why_len, "the PKCS#11 URI of the root key is too long");
		r = KMS_E_BAD_PARAM;
	} else {
		r = store_p11_parse(p, p->base.shown, why, why_len);
	}
	if (r == 0)
		r = store_p11_pin(p, prm->location, prm->pin_file, why, why_len);
	if (r == 0)
		r = store_p11_module_get(p, prm->pkcs11_module, why, why_len);
	if (r == 0) {
		pthread_rwlock_wrlock(&p->m->lock);
		r = store_p11_start(p, prm->create, created, false, why, why_len);
		pthread_rwlock_unlock(&p->m->lock);
	}
	if (r < 0) {
		store_p11_close(&p->base);
		return r;
	}
	p->up = true;
	*out = &p->base;
	return 0;
}
