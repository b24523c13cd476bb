#!/bin/bash
# The key-scoped actions under keys/<id>/ take key_id from the path: requests without key_id
# work, the same key named in the body (id or alias) is fine, another key is KMS.0205.
source "$(dirname "$0")/../lib/common.sh"
kms_start_project kd
id=$(kms_create_key kd app)
other=$(kms_create_key kd other)
K=kd/keys/$id

r=$(kms_call "$K/create-datakey" '{}')
assert_eq "$(jget "$r" .key_id)" "$id" "create-datakey key_id"
pt=$(jget "$r" .plain_text)
ct=$(jget "$r" .cipher_text)
d=$(kms_call "$K/decrypt-datakey" "{\"cipher_text\":\"$ct\",\"datakey_cipher_length\":\"64\"}")
assert_eq "$(jget "$d" .data_key)" "$pt" "decrypt-datakey in the key dir"

r=$(kms_call "$K/create-datakey" '{"datakey_length":"256"}')
assert_eq "$(jget "$r" '.plain_text | length')" 64 "datakey_length in the key dir"

dgst=$(sha256_hex "$pt")
r=$(kms_call "$K/encrypt-datakey" "{\"plain_text\":\"$pt$dgst\",\"datakey_plain_length\":\"64\"}")
assert_eq "$(jget "$r" .key_id)" "$id" "encrypt-datakey key_id"
ct2=$(jget "$r" .cipher_text)
d=$(kms_call "kd/decrypt-datakey" "{\"key_id\":\"$id\",\"cipher_text\":\"$ct2\",\"datakey_cipher_length\":\"64\"}")
assert_eq "$(jget "$d" .data_key)" "$pt" "key-dir ciphertext decrypts at project level"

r=$(kms_call "$K/create-datakey-without-plaintext")
assert_eq "$(jget "$r" .key_id)" "$id" "create-datakey-without-plaintext key_id"
r=$(kms_call "$K/describe-key")
assert_eq "$(jget "$r" .key_info.key_alias)" app "describe-key in the key dir"
r=$(kms_call "$K/encrypt-data" '{"plain_text":"hello"}')
assert_eq "$(jget "$r" .key_id)" "$id" "encrypt-data key_id"

# Naming the same key in the body is allowed; naming another key is not.
assert_eq "$(jget "$(kms_call "$K/create-datakey" "{\"key_id\":\"$id\"}")" .key_id)" "$id" "same id in body"
assert_eq "$(jget "$(kms_call "$K/create-datakey" '{"key_id":"alias/app"}')" .key_id)" "$id" "own alias in body"
assert_errcode "$(kms_call "$K/create-datakey" "{\"key_id\":\"$other\"}")" KMS.0205
assert_errcode "$(kms_call "$K/create-datakey" '{"key_id":"alias/other"}')" KMS.0205
assert_errcode "$(kms_call "$K/describe-key" "{\"key_id\":\"$other\"}")" KMS.0205
assert_errcode "$(kms_call "$K/encrypt-datakey" "$(dek_request "$other" "$pt")")" KMS.0205
# A ciphertext of another key does not decrypt in this key's dir.
ct_other=$(jget "$(kms_call "kd/keys/$other/create-datakey-without-plaintext")" .cipher_text)
r=$(kms_call "$K/decrypt-datakey" "{\"cipher_text\":\"$ct_other\",\"datakey_cipher_length\":\"64\"}")
jget "$r" .error.error_code | grep -Eq '^KMS\.(0205|2201|2203)$' || fail "another key's blob in keys/$id: $r"
kms_umount
