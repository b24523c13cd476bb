#!/bin/bash
# An encryption_context given when a DEK is wrapped must be given, equal, to unwrap it:
# missing or different is KMS.2203; the same object with its keys in another order is equal.
source "$(dirname "$0")/../lib/common.sh"
kms_start_project cx
id=$(kms_create_key cx app)
ctx='{"file":"report.pdf","owner":"alice"}'
ctx_reordered='{"owner":"alice","file":"report.pdf"}'

dec() { # CIPHER [CONTEXT]
	if [ -n "${2:-}" ]; then
		kms_call cx/decrypt-datakey "{\"key_id\":\"$id\",\"cipher_text\":\"$1\",\"datakey_cipher_length\":\"64\",\"encryption_context\":$2}"
	else
		kms_call cx/decrypt-datakey "{\"key_id\":\"$id\",\"cipher_text\":\"$1\",\"datakey_cipher_length\":\"64\"}"
	fi
}

r=$(kms_call cx/create-datakey "{\"key_id\":\"$id\",\"encryption_context\":$ctx}")
pt=$(jget "$r" .plain_text)
ct=$(jget "$r" .cipher_text)
assert_eq "$(jget "$(dec "$ct" "$ctx")" .data_key)" "$pt" "same context"
assert_eq "$(jget "$(dec "$ct" "$ctx_reordered")" .data_key)" "$pt" "same context, keys reordered"
assert_errcode "$(dec "$ct")" KMS.2203
assert_errcode "$(dec "$ct" '{"file":"report.pdf","owner":"bob"}')" KMS.2203
assert_errcode "$(dec "$ct" '{"file":"report.pdf"}')" KMS.2203
assert_errcode "$(dec "$ct" '{"file":"report.pdf","owner":"alice","x":"1"}')" KMS.2203
kms_write cx/decrypt-datakey "{\"key_id\":\"$id\",\"cipher_text\":\"$ct\",\"datakey_cipher_length\":\"64\"}"
assert_errno close EINVAL

# encrypt-datakey and create-datakey-without-plaintext bind the context the same way.
ct2=$(jget "$(kms_call cx/encrypt-datakey "$(dek_request "$id" "$pt" | sed "s/}\$/,\"encryption_context\":$ctx}/")")" .cipher_text)
assert_eq "$(jget "$(dec "$ct2" "$ctx")" .data_key)" "$pt" "encrypt-datakey with context"
assert_errcode "$(dec "$ct2")" KMS.2203
ct3=$(jget "$(kms_call cx/create-datakey-without-plaintext "{\"key_id\":\"$id\",\"encryption_context\":$ctx}")" .cipher_text)
assert_ok "$(dec "$ct3" "$ctx")"
assert_errcode "$(dec "$ct3" '{"file":"other.pdf","owner":"alice"}')" KMS.2203
kms_umount
