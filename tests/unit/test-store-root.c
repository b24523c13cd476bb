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
#include "store/kms_store.h"
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

/* A PIN file is refused, with a sentence naming it, its mode and the fix, unless it is root's or
 * ours and closed to everyone else; a symlink is judged by the file it leads to. The check comes
 * before the module is loaded: a refused file never reaches it. */
TEST(pkcs11_pin_file_open_to_others_is_refused)
{
	char pin[4300], link_path[4300], uri[8800], why[1024] = "", mode[16];
	struct store_root_params p = { uri, "/nonexistent/module.so", NULL, false, NULL };
	struct store_root *r = NULL;
	FILE *f;

	setup();
	snprintf(pin, sizeof(pin), "%s/pin", dir);
	snprintf(link_path, sizeof(link_path), "%s/pin-link", dir);
	snprintf(uri, sizeof(uri), "pkcs11:token=kmsfs;object=root;pin-source=file:%s", pin);
	f = fopen(pin, "w");
	ASSERT_TRUE(f != NULL);
	if (!f)
		return;
	fputs("1234\n", f);
	fclose(f);
	for (unsigned m = 0; m < 2; m++) {
		ASSERT_EQ(chmod(pin, m ? 0604 : 0640), 0);
		ASSERT_ERR(store_root_open(&p, &r, NULL, why, sizeof(why)), KMS_E_IO);
		snprintf(mode, sizeof(mode), "mode %04o", m ? 0604 : 0640);
		ASSERT_TRUE(strstr(why, mode) != NULL);
		ASSERT_TRUE(strstr(why, "chmod 600") != NULL);
		ASSERT_TRUE(strstr(why, pin) != NULL);
	}
	/* -o pkcs11_pin_file= and a symlink to the file: the same. */
	ASSERT_EQ(symlink(pin, link_path), 0);
	p.location = "pkcs11:token=kmsfs;object=root";
	p.pin_file = link_path;
	ASSERT_ERR(store_root_open(&p, &r, NULL, why, sizeof(why)), KMS_E_IO);
	ASSERT_TRUE(strstr(why, "chmod 600") != NULL);
	/* 0600 (or 0400): on to the module. */
	ASSERT_EQ(chmod(pin, 0400), 0);
	ASSERT_ERR(store_root_open(&p, &r, NULL, why, sizeof(why)), KMS_E_IO);
	ASSERT_TRUE(strstr(why, "cannot load the PKCS#11 module") != NULL);
	/* Another user's file, even closed to others. */
	if (geteuid() == 0) {
		ASSERT_EQ(chown(pin, 12345, 0), 0);
		ASSERT_ERR(store_root_open(&p, &r, NULL, why, sizeof(why)), KMS_E_IO);
		ASSERT_TRUE(strstr(why, "belongs to uid 12345") != NULL);
	}
	ASSERT_TRUE(r == NULL);
	(void)kms_test_rmrf(dir);
}

/* A URI as it may be shown and kept: without pin-value and one delimiter beside it; ps shows
 * pin-value=****. */
TEST(pkcs11_location_shown_without_pin)
{
	static const char *const cases[][2] = {
		{ "pkcs11:token=a;pin-value=1234;object=b", "pkcs11:token=a;object=b" },
		{ "pkcs11:token=a;object=b;pin-value=1234", "pkcs11:token=a;object=b" },
		{ "pkcs11:pin-value=1234;token=a;object=b", "pkcs11:token=a;object=b" },
		{ "pkcs11:token=a;object=b?pin-value=1234", "pkcs11:token=a;object=b" },
		{ "pkcs11:token=a;object=b?pin-value=1%32&module-name=m",
		  "pkcs11:token=a;object=b?module-name=m" },
		{ "pkcs11:token=a;pin-value=1?pin-source=file:/p",
		  "pkcs11:token=a?pin-source=file:/p" },
		{ "pkcs11:token=a;object=b?pin-source=file:/p",
		  "pkcs11:token=a;object=b?pin-source=file:/p" },
		{ "/etc/kmsfs/root.key;pin-value=x", "/etc/kmsfs/root.key;pin-value=x" },
	};
	char out[256], arg[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ASSERT_TRUE(store_root_location_shown(cases[i][0], out, sizeof(out)));
		ASSERT_STREQ(out, cases[i][1]);
	}
	ASSERT_FALSE(store_root_location_shown(cases[0][0], out, 12));
	snprintf(arg, sizeof(arg), "state=/s,root_key=pkcs11:token=a;pin-value=12%%34;object=b,f");
	ASSERT_TRUE(store_uri_hide_password(arg));
	ASSERT_STREQ(arg, "state=/s,root_key=pkcs11:token=a;pin-value=*****;object=b,f");
	snprintf(arg, sizeof(arg), "pkcs11:token=a;object=b");
	ASSERT_FALSE(store_uri_hide_password(arg));
}

/* ---- a token: SoftHSMv2 in a temporary directory, when it is installed (else said and passed) */

static char hsm_dir[4096];
static char hsm_module[256];
static char hsm_uri[4400];

/* A fresh SoftHSM token "unit" with PIN 1234; false if SoftHSM is not installed. */
static bool hsm_setup(void)
{
	static const char *const modules[] = {
		"/usr/lib/softhsm/libsofthsm2.so",
		"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
		"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so"
	};
	char conf[4200], cmd[8600];
	FILE *f;

	hsm_module[0] = 0;
	for (size_t i = 0; i < sizeof(modules) / sizeof(modules[0]); i++)
		if (access(modules[i], R_OK) == 0)
			snprintf(hsm_module, sizeof(hsm_module), "%s", modules[i]);
	if (!hsm_module[0] || system("command -v softhsm2-util >/dev/null 2>&1") != 0) {
		printf("# SoftHSMv2 not installed (apt-get install softhsm2): token tests "
		       "skipped\n");
		return false;
	}
	kms_test_mkdtemp(hsm_dir, sizeof(hsm_dir));
	snprintf(conf, sizeof(conf), "%s/softhsm2.conf", hsm_dir);
	f = fopen(conf, "w");
	if (!f)
		return false;
	fprintf(f, "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n",
		hsm_dir);
	fclose(f);
	setenv("SOFTHSM2_CONF", conf, 1);
	snprintf(cmd, sizeof(cmd),
		 "softhsm2-util --init-token --free --label unit --so-pin 5678 --pin 1234 "
		 ">/dev/null");
	if (system(cmd) != 0)
		return false;
	snprintf(hsm_uri, sizeof(hsm_uri), "pkcs11:token=unit;object=root;pin-value=1234");
	return true;
}

static struct store_root *hsm_open(bool create, bool *created, int *err, char *why, size_t cap)
{
	struct store_root_params p = { hsm_uri, hsm_module, NULL, create, NULL };
	struct store_root *r = NULL;

	*err = store_root_open(&p, &r, created, why, cap);
	return r;
}

TEST(pkcs11_token_root)
{
	uint8_t plain[CORE_KEY_BYTES], sealed[CORE_KEY_BYTES + 64], out[CORE_KEY_BYTES + 64];
	uint8_t d1[CORE_KEY_BYTES], d2[CORE_KEY_BYTES];
	char c1[2 * CORE_SHA256_BYTES + 1], c2[sizeof(c1)], why[1024] = "", shown[1024];
	struct store_root_status st;
	struct store_root *r, *again;
	size_t n = 0, m = 0;
	bool created = false;
	int err = 0;

	if (!hsm_setup()) {
		ASSERT_TRUE(hsm_module[0] == 0); /* installed, but no token could be made */
		return;
	}
	ASSERT_TRUE(hsm_open(false, &created, &err, why, sizeof(why)) == NULL);
	ASSERT_EQ(err, KMS_E_KEY_NOT_FOUND);
	ASSERT_TRUE(strstr(why, "no secret key 'root'") != NULL);
	r = hsm_open(true, &created, &err, why, sizeof(why));
	ASSERT_OK(err);
	ASSERT_TRUE(created);
	ASSERT_TRUE(r != NULL);
	if (!r)
		return;
	store_root_describe(r, shown, sizeof(shown));
	ASSERT_TRUE(strstr(shown, "1234") == NULL); /* no PIN value shown */
	/* pin-value is read by kmsfs (p11-kit never sees it), percent-decoded as RFC 7512 says. */
	snprintf(hsm_uri, sizeof(hsm_uri), "pkcs11:token=unit;object=root;pin-value=%%31%%323%%34");
	again = hsm_open(false, &created, &err, why, sizeof(why));
	ASSERT_OK(err);
	store_root_close(again);
	snprintf(hsm_uri, sizeof(hsm_uri), "pkcs11:token=unit;object=root;pin-value=12%%3");
	ASSERT_TRUE(hsm_open(false, &created, &err, why, sizeof(why)) == NULL);
	ASSERT_EQ(err, KMS_E_BAD_PARAM);
	ASSERT_TRUE(strstr(why, "hex digits") != NULL);
	snprintf(hsm_uri, sizeof(hsm_uri), "pkcs11:token=unit;object=root;pin-value=1234");
	/* The layout of core_seal; the AAD bound; a tag that does not verify is not an outage. */
	memset(plain, 0xa5, sizeof(plain));
	ASSERT_OK(store_root_seal(r, "aad", 3, plain, sizeof(plain), sealed, sizeof(sealed), &n));
	ASSERT_EQ(n, sizeof(plain) + CORE_SEALED_OVERHEAD);
	ASSERT_OK(store_root_unseal(r, "aad", 3, sealed, n, out, sizeof(out), &m));
	ASSERT_EQ(m, sizeof(plain));
	ASSERT_MEMEQ(out, plain, sizeof(plain));
	ASSERT_ERR(store_root_unseal(r, "aaD", 3, sealed, n, out, sizeof(out), &m),
		   KMS_E_DECRYPT_FAILED);
	sealed[20] ^= 1;
	ASSERT_ERR(store_root_unseal(r, "aad", 3, sealed, n, out, sizeof(out), &m),
		   KMS_E_DECRYPT_FAILED);
	store_root_status(r, &st);
	ASSERT_TRUE(st.available);
	ASSERT_EQ(st.losses, 0u);
	/* Opaque seals in the token. */
	ASSERT_OK(store_root_seal_opaque(r, "import-token", (const uint8_t *)"secret", 6, sealed,
					 sizeof(sealed), &n));
	ASSERT_OK(store_root_unseal_opaque(r, "import-token", sealed, n, out, sizeof(out), &m));
	ASSERT_EQ(m, 6u);
	ASSERT_ERR(store_root_unseal_opaque(r, "other", sealed, n, out, sizeof(out), &m),
		   KMS_E_DECRYPT_FAILED);
	/* Derivation: deterministic, per label; the same object opened again agrees. */
	ASSERT_OK(store_root_derive(r, "a", d1));
	ASSERT_OK(store_root_derive(r, "b", d2));
	ASSERT_FALSE(memcmp(d1, d2, sizeof(d1)) == 0);
	ASSERT_OK(store_root_check(r, c1));
	again = hsm_open(true, &created, &err, why, sizeof(why));
	ASSERT_OK(err);
	ASSERT_FALSE(created);
	if (again) {
		ASSERT_OK(store_root_check(again, c2));
		ASSERT_STREQ(c1, c2);
		ASSERT_OK(store_root_derive(again, "a", d2));
		ASSERT_MEMEQ(d1, d2, sizeof(d1));
		ASSERT_OK(store_root_unseal_opaque(again, "import-token", sealed, n, out,
						   sizeof(out), &m));
		store_root_close(again);
	}
	ASSERT_OK(store_root_destroy(r, why, sizeof(why)));
	store_root_close(r);
	ASSERT_TRUE(hsm_open(false, &created, &err, why, sizeof(why)) == NULL);
	ASSERT_EQ(err, KMS_E_KEY_NOT_FOUND);
	(void)kms_test_rmrf(hsm_dir);
}
