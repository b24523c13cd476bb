#!/bin/bash
# Keys, aliases and ciphertexts survive unmount + remount on the same state dir: the key dirs are
# back, a DEK wrapped before unwraps after, the token bound before still works without being set
# again (bindings are remembered across restarts; tokens-remembered tests them), and `kmsctl
# check` passes.
source "$(dirname "$0")/../lib/common.sh"
kms_start_project du
tok=$KMS_TOKEN
id1=$(kms_create_key du one)
id2=$(kms_create_key du two)
r=$(kms_call du/create-datakey "{\"key_id\":\"$id1\",\"encryption_context\":{\"f\":\"x\"}}")
pt=$(jget "$r" .plain_text)
ct=$(jget "$r" .cipher_text)
kms_umount
[ -z "$(ls "$KMS_MNT")" ] || fail "mount point not empty after unmount"
kms_ctl check >/dev/null || fail "kmsctl check after unmount"

kms_mount
assert_ok "$(kms_call du/list-keys '{}')"
kms_login du "$tok"
assert_eq "$(ls "$KMS_MNT/du/keys" | sort | tr '\n' ' ')" "$(printf '%s\n' "$id1" "$id2" | sort | tr '\n' ' ')" "key dirs after remount"
assert_eq "$(readlink "$KMS_MNT/du/aliases/two")" "../keys/$id2" "alias after remount"
d=$(kms_call du/decrypt-datakey "{\"key_id\":\"alias/one\",\"cipher_text\":\"$ct\",\"datakey_cipher_length\":\"64\",\"encryption_context\":{\"f\":\"x\"}}")
assert_eq "$(jget "$d" .data_key)" "$pt" "DEK after remount"
assert_errcode "$(kms_call du/create-key '{"key_alias":"one"}')" KMS.1104
kms_umount
kms_ctl check >/dev/null || fail "kmsctl check at the end"
