#include "kms_secmem.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include <openssl/crypto.h>

#ifndef MCL_ONFAULT
#define MCL_ONFAULT 4
#endif

#if defined(__SANITIZE_ADDRESS__)
#define KMS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KMS_ASAN 1
#endif
#endif

/* explicit_bzero is glibc's vectorised memset behind a compiler barrier: as sure as
 * OPENSSL_cleanse, and several times faster on the few hundred bytes wiped per request. */
void kms_wipe(void *p, size_t n)
{
	if (p && n)
		explicit_bzero(p, n);
}

void kms_free_string_wiped(char *s)
{
	if (s)
		kms_wipe(s, strlen(s));
	free(s);
}

void kms_harden_process(size_t secure_heap_bytes, bool lock_memory, struct kms_harden_report *rep)
{
	struct rlimit no_core = { 0, 0 };

	*rep = (struct kms_harden_report){ 0 };
	rep->not_dumpable = prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0;
	rep->no_core = setrlimit(RLIMIT_CORE, &no_core) == 0;
#ifdef KMS_ASAN
	/* ASan reserves terabytes of shadow memory; locking it would exhaust the machine. */
	lock_memory = false;
	rep->lock_skipped = true;
#endif
	if (lock_memory) {
		/* ONFAULT: lock pages as they are touched, so idle thread stacks cost nothing. */
		rep->memory_locked = mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) == 0;
		if (!rep->memory_locked)
			rep->lock_errno = errno;
	}
	if (secure_heap_bytes && !CRYPTO_secure_malloc_initialized())
		rep->secure_heap = CRYPTO_secure_malloc_init(secure_heap_bytes, 32) == 1;
	else
		rep->secure_heap = CRYPTO_secure_malloc_initialized();
}

void *kms_secret_alloc(size_t n)
{
	return OPENSSL_secure_zalloc(n);
}

void kms_secret_free(void *p, size_t n)
{
	if (p)
		OPENSSL_secure_clear_free(p, n);
}

bool kms_secret_is_secure(const void *p)
{
	return p && CRYPTO_secure_malloc_initialized() && CRYPTO_secure_allocated(p) == 1;
}
