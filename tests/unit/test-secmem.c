/* test-secmem.c - kms_harden_process(): what it promises is visible from inside the process
 * (this sandboxed kernel does not let another process observe dumpability, see
 * tests/integration/cases/acl-hygiene.sh), and secrets come from the secure heap and are wiped. */
#include "kms_test.h"

#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include <openssl/crypto.h>

#include "common/kms_secmem.h"

TEST(harden_disables_dumps_and_cores)
{
	struct kms_harden_report rep;
	struct rlimit core;

	ASSERT_EQ(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0),
		  1); /* the default, so the test means something */
	kms_harden_process(64 * 1024, false, &rep);
	ASSERT_TRUE(rep.not_dumpable);
	ASSERT_TRUE(rep.no_core);
	ASSERT_EQ(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), 0);
	ASSERT_EQ(getrlimit(RLIMIT_CORE, &core), 0);
	ASSERT_EQ(core.rlim_cur, 0);
	ASSERT_EQ(core.rlim_max, 0);
	ASSERT_FALSE(rep.memory_locked); /* not asked for */
}

TEST(secrets_live_in_the_secure_heap)
{
	struct kms_harden_report rep;
	uint8_t *p;

	kms_harden_process(64 * 1024, false, &rep); /* idempotent */
	ASSERT_TRUE(rep.secure_heap);
	p = kms_secret_alloc(32);
	ASSERT_TRUE(p != NULL);
	ASSERT_EQ(CRYPTO_secure_allocated(p), 1);
	for (size_t i = 0; i < 32; i++)
		ASSERT_EQ(p[i], 0); /* zeroed on allocation */
	memset(p, 0xA5, 32);
	kms_secret_free(p, 32);
	kms_secret_free(NULL, 32); /* harmless */
}

TEST(wipe_zeroes_and_accepts_null)
{
	uint8_t b[48];

	memset(b, 0x5A, sizeof(b));
	kms_wipe(b + 8, 32);
	ASSERT_EQ(b[7], 0x5A);
	for (size_t i = 8; i < 40; i++)
		ASSERT_EQ(b[i], 0);
	ASSERT_EQ(b[40], 0x5A);
	kms_wipe(NULL, 10);
	kms_wipe(b, 0);
}

/* What it wipes cannot be read back once freed: this checks that it takes NULL and frees what it
 * is given (the ASan build reports a leak, a double or a bad free). */
TEST(free_string_wiped_frees_and_accepts_null)
{
	char *s = strdup("postgresql://kms:secret@db/kms");

	ASSERT_TRUE(s != NULL);
	kms_free_string_wiped(s);
	kms_free_string_wiped(NULL);
}
