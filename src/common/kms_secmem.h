/* kms_secmem.h - keeping secrets out of core dumps, swap and freed memory. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "kms_common.h"

/* Wipe n bytes in a way the compiler cannot elide. */
void kms_wipe(void *p, size_t n);
/* Wipe a heap string that may hold a secret (a store URI's password, a PIN), then free it;
 * NULL is fine. */
void kms_free_string_wiped(char *s);

/* Outcome of kms_harden_process(): each field false means that protection could not be had,
 * so the caller (a daemon or tool, the only layers that log) can say so. */
struct kms_harden_report {
	bool not_dumpable;  /* prctl(PR_SET_DUMPABLE, 0) */
	bool no_core;	    /* RLIMIT_CORE = 0 */
	bool memory_locked; /* mlockall(MCL_CURRENT|MCL_FUTURE|MCL_ONFAULT) */
	bool lock_skipped;  /* mlockall deliberately skipped (sanitizer build) */
	bool secure_heap;   /* OpenSSL secure heap (locked, guarded) for key material */
	int lock_errno;
};

/* Make the process unfit to leak secrets: no core dumps, not ptrace-able by other users, memory
 * locked (best effort), and OpenSSL's secure heap of secure_heap_bytes for key material. */
void kms_harden_process(size_t secure_heap_bytes, bool lock_memory, struct kms_harden_report *rep);

/* Key material allocations: the OpenSSL secure heap when initialised, else the normal heap. */
void *kms_secret_alloc(size_t n);
void kms_secret_free(void *p, size_t n);
/* Whether p points into the OpenSSL secure heap. */
bool kms_secret_is_secure(const void *p);
