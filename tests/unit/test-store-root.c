/* test-store-root.c - the root key behind store_root.h, file provider: creation (O_EXCL, 0600,
 * 32 bytes), reading, sealing in core_seal's format, derivation and the check value as earlier
 * releases computed them (stores made by them keep working), opaque seals, destruction. */
#include "kms_test.h"
#include "kms_test_tmp.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/kms_err.h"
#include "common/kms_hex.h"
#include "store/store_root.h"

static char dir[4096];
static char path[4200];

static struct store_root *open_root(bool create, bool *created, int *err)
{
	struct store_root_params p = { NULL, NULL, NULL, create, dir };
	struct store_root *r = NULL;
	char why[512] = "";

	*err = store_root_open(&p, &r, created, why, sizeof(why));
	return r;
}

static void read_file_key(uint8_t key[CORE_KEY_BYTES])
{
	FILE *f = fopen(path, "rb");

	ASSERT_TRUE(f != NULL);
	if (!f)
		return;
	ASSERT_EQ(fread(key, 1, CORE_KEY_BYTES, f), CORE_KEY_BYTES);
	fclose(f);
}

static void setup(void)
{
	if (dir[0])
		(void)kms_test_rmrf(dir);
	kms_test_mkdtemp(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/root.key", dir);
}

/* A fresh directory with a new root key; key: the file's bytes. */
static struct store_root *fresh_root(uint8_t key[CORE_KEY_BYTES])
{
	struct store_root *r;
	bool created = false;
	int err = -1;

	setup();
	r = open_root(true, &created, &err);
	if (r && err == 0 && created)
		read_file_key(key);
	return r;
}

TEST(file_absent_is_not_created_without_create)
{
	bool created = true;
	int err = 0;

	setup();
	ASSERT_TRUE(open_root(false, &created, &err) == NULL);
	ASSERT_EQ(err, KMS_E_KEY_NOT_FOUND);
	ASSERT_FALSE(created);
	ASSERT_EQ(access(path, F_OK), -1);
}

TEST(file_created_0600_then_read_back)
{
	struct store_root *r, *again;
	char c1[2 * CORE_SHA256_BYTES + 1], c2[sizeof(c1)], shown[4300];
	struct stat st;
	bool created = false;
	int err = -1;

	setup();
	r = open_root(true, &created, &err);
	ASSERT_OK(err);
	ASSERT_TRUE(created);
	ASSERT_EQ(stat(path, &st), 0);
	ASSERT_EQ(st.st_mode & 0777, 0600);
	ASSERT_EQ(st.st_size, CORE_KEY_BYTES);
	store_root_describe(r, shown, sizeof(shown));
	ASSERT_STREQ(shown, path);
	ASSERT_FALSE(store_root_location_is_pkcs11(path));
	ASSERT_TRUE(store_root_location_is_pkcs11("pkcs11:token=a;object=b"));
	again = open_root(true, &created, &err);
	ASSERT_OK(err);
	ASSERT_FALSE(created);
	ASSERT_OK(store_root_check(r, c1));
	ASSERT_OK(store_root_check(again, c2));
	ASSERT_STREQ(c1, c2);
	store_root_close(again);
	store_root_close(r);
}

TEST(file_seal_is_core_seal_and_binds_the_aad)
{
	uint8_t key[CORE_KEY_BYTES], plain[CORE_KEY_BYTES], sealed[CORE_KEY_BYTES + 64];
	uint8_t out[CORE_KEY_BYTES + 64];
	size_t n = 0, m = 0;
	struct store_root *r = fresh_root(key);

	ASSERT_TRUE(r != NULL);
	memset(plain, 0x5a, sizeof(plain));
	ASSERT_OK(store_root_seal(r, "aad", 3, plain, sizeof(plain), sealed, sizeof(sealed), &n));
	ASSERT_EQ(n, sizeof(plain) + CORE_SEALED_OVERHEAD);
	ASSERT_OK(core_unseal(key, "aad", 3, sealed, n, out, sizeof(out), &m));
	ASSERT_MEMEQ(out, plain, sizeof(plain));
	ASSERT_OK(core_seal(key, "aad", 3, plain, sizeof(plain), sealed, sizeof(sealed), &n));
	ASSERT_OK(store_root_unseal(r, "aad", 3, sealed, n, out, sizeof(out), &m));
	ASSERT_EQ(m, sizeof(plain));
	ASSERT_MEMEQ(out, plain, sizeof(plain));
	ASSERT_ERR(store_root_unseal(r, "aaD", 3, sealed, n, out, sizeof(out), &m),
		   KMS_E_DECRYPT_FAILED);
	store_root_close(r);
}

TEST(file_derive_check_and_opaque_as_before)
{
	uint8_t key[CORE_KEY_BYTES], d[CORE_KEY_BYTES], want[CORE_SHA256_BYTES];
	uint8_t opaque_key[CORE_KEY_BYTES], sealed[128], out[128];
	char check[2 * CORE_SHA256_BYTES + 1], hex[2 * CORE_SHA256_BYTES + 1];
	static const char label[] = "kmsfs root key check v1";
	static const char ol[] = "kmsfs opaque seal key v1";
	size_t n = 0, m = 0;
	struct store_root *r = fresh_root(key);

	ASSERT_TRUE(r != NULL);
	ASSERT_OK(store_root_derive(r, "some label", d));
	ASSERT_OK(core_hmac_sha256(key, sizeof(key), "some label", 10, want));
	ASSERT_MEMEQ(d, want, sizeof(want));
	ASSERT_OK(store_root_check(r, check));
	ASSERT_OK(core_hmac_sha256(key, sizeof(key), label, strlen(label), want));
	kms_hex_encode(want, sizeof(want), hex);
	ASSERT_STREQ(check, hex);
	/* Opaque seals: under HMAC(root, "kmsfs opaque seal key v1"), the label as AAD. */
	ASSERT_OK(store_root_seal_opaque(r, "import-token", (const uint8_t *)"secret", 6, sealed,
					 sizeof(sealed), &n));
	ASSERT_OK(core_hmac_sha256(key, sizeof(key), ol, strlen(ol), opaque_key));
	ASSERT_OK(core_unseal(opaque_key, "import-token", 12, sealed, n, out, sizeof(out), &m));
	ASSERT_EQ(m, 6u);
	ASSERT_MEMEQ(out, "secret", 6);
	ASSERT_FAIL(store_root_unseal_opaque(r, "other", sealed, n, out, sizeof(out), &m));
	ASSERT_OK(store_root_unseal_opaque(r, "import-token", sealed, n, out, sizeof(out), &m));
	store_root_close(r);
}

TEST(file_status_and_destroy)
{
	uint8_t key[CORE_KEY_BYTES];
	struct store_root_status st;
	char why[512];
	bool created;
	int err;
	struct store_root *r = fresh_root(key);

	ASSERT_TRUE(r != NULL);
	store_root_status(r, &st);
	ASSERT_TRUE(st.available);
	ASSERT_EQ(st.losses, 0u);
	ASSERT_TRUE(store_root_poll(r));
	ASSERT_OK(store_root_reconnect(r, why, sizeof(why)));
	ASSERT_OK(store_root_destroy(r, why, sizeof(why)));
	ASSERT_EQ(access(path, F_OK), -1);
	store_root_close(r);
	ASSERT_TRUE(open_root(false, &created, &err) == NULL);
	ASSERT_EQ(err, KMS_E_KEY_NOT_FOUND);
}

TEST(file_damaged_refused_with_a_sentence)
{
	struct store_root_params p = { NULL, NULL, NULL, false, NULL };
	struct store_root *r = NULL;
	char why[512] = "";
	FILE *f;

	setup();
	p.state_dir = dir;
	f = fopen(path, "wb");
	ASSERT_TRUE(f != NULL);
	if (f) {
		fputs("short", f);
		fclose(f);
	}
	ASSERT_EQ(chmod(path, 0600), 0);
	ASSERT_ERR(store_root_open(&p, &r, NULL, why, sizeof(why)), KMS_E_IO);
	ASSERT_TRUE(strstr(why, "exactly 32 bytes") != NULL);
	ASSERT_EQ(chmod(path, 0644), 0);
	ASSERT_ERR(store_root_open(&p, &r, NULL, why, sizeof(why)), KMS_E_IO);
	ASSERT_TRUE(strstr(why, "chmod 600") != NULL);
	(void)kms_test_rmrf(dir);
}

TEST(pkcs11_uri_without_object_is_refused)
{
	struct store_root_params p = { "pkcs11:token=kmsfs", "/nonexistent/module.so", NULL, false,
				       NULL };
	struct store_root *r = NULL;
	char why[512] = "";

	ASSERT_ERR(store_root_open(&p, &r, NULL, why, sizeof(why)), KMS_E_BAD_PARAM);
	ASSERT_TRUE(strstr(why, "object=") != NULL);
	p.location = "pkcs11:token=kmsfs;object=root";
	ASSERT_ERR(store_root_open(&p, &r, NULL, why, sizeof(why)), KMS_E_IO);
	ASSERT_TRUE(strstr(why, "cannot load the PKCS#11 module") != NULL);
	ASSERT_TRUE(r == NULL);
}
