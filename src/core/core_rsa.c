/* RSA wrapping keys for the import of key material (kms-api.md section 4.12).
 *
 * A fresh RSA-2048 key per get-parameters-for-import: the public half goes to the user as a DER
 * SubjectPublicKeyInfo, the private half (DER) travels sealed inside the import token and comes
 * back only to unwrap the user's material. Private DER lives in the caller's buffers (secure
 * heap); OpenSSL's own copies are cleared when the EVP_PKEY is freed. */
#include "kms_core.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "common/kms_err.h"

/* The DER that i2d (i2d_PrivateKey or i2d_PUBKEY) makes of pkey, into out (cap bytes). */
static bool core_rsa_der(const EVP_PKEY *pkey, int (*i2d)(const EVP_PKEY *, unsigned char **),
			 uint8_t *out, size_t cap, size_t *len)
{
	unsigned char *p = out;
	int n = i2d(pkey, NULL);

	/* The first call measures, the second writes. */
	if (n <= 0 || (size_t)n > cap || i2d(pkey, &p) != n)
		return false;
	*len = (size_t)n;
	return true;
}

int core_rsa_generate(uint8_t *priv, size_t priv_cap, size_t *priv_len, uint8_t *pub,
		      size_t pub_cap, size_t *pub_len)
{
	EVP_PKEY *pkey = NULL;
	int r = KMS_E_INTERNAL;

	*priv_len = *pub_len = 0;
	pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)CORE_RSA_BITS);
	if (!pkey)
		return KMS_E_INTERNAL;
	if (!core_rsa_der(pkey, i2d_PrivateKey, priv, priv_cap, priv_len) ||
	    !core_rsa_der(pkey, i2d_PUBKEY, pub, pub_cap, pub_len))
		goto out;
	r = 0;
out:
	if (r < 0) {
		OPENSSL_cleanse(priv, priv_cap);
		*priv_len = *pub_len = 0;
	}
	EVP_PKEY_free(pkey);
	return r;
}

int core_rsa_decrypt(enum core_rsa_padding pad, const uint8_t *priv, size_t priv_len,
		     const uint8_t *in, size_t n, uint8_t *out, size_t cap, size_t *out_len)
{
	uint8_t tmp[CORE_RSA_BITS / 8];
	const unsigned char *p = priv;
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *pkey = NULL;
	size_t len = sizeof(tmp);
	int r = KMS_E_DECRYPT_FAILED;

	*out_len = 0;
	pkey = d2i_PrivateKey(EVP_PKEY_RSA, NULL, &p, (long)priv_len);
	if (!pkey || EVP_PKEY_get_bits(pkey) != CORE_RSA_BITS)
		goto out;
	ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
	if (!ctx || EVP_PKEY_decrypt_init(ctx) <= 0)
		goto out;
	switch (pad) {
	case CORE_RSA_PKCS1_V1_5:
		if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) <= 0)
			goto out;
		break;
	case CORE_RSA_OAEP_SHA1:
	case CORE_RSA_OAEP_SHA256: {
		const char *md = pad == CORE_RSA_OAEP_SHA1 ? "SHA1" : "SHA256";

		if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) <= 0 ||
		    EVP_PKEY_CTX_set_rsa_oaep_md_name(ctx, md, NULL) <= 0 ||
		    EVP_PKEY_CTX_set_rsa_mgf1_md_name(ctx, md, NULL) <= 0)
			goto out;
		break;
	}
	default:
		goto out;
	}
	/* One outcome for every failure (bad padding, wrong size): no padding oracle. */
	if (EVP_PKEY_decrypt(ctx, tmp, &len, in, n) <= 0 || len > sizeof(tmp) || len > cap)
		goto out;
	memcpy(out, tmp, len);
	*out_len = len;
	r = 0;
out:
	OPENSSL_cleanse(tmp, sizeof(tmp));
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(pkey);
	return r;
}
