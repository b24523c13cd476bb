#!/bin/bash
# encrypt-datakey refuses a plain_text whose digest is wrong (KMS.2103), that is not hex
# (KMS.2101), or whose length does not match datakey_plain_length (KMS.2104); close() says EINVAL.
source "$(dirname "$0")/../lib/common.sh"
kms_start_project ee
id=$(kms_create_key ee app)
dek=$(jget "$(kms_call ee/gen-random '{"random_data_length":"512"}')" .random_data)
[[ $dek =~ ^[0-9A-Fa-f]{128}$ ]] || fail "gen-random 512 bits: $dek"
good=$(dek_request "$id" "$dek")
assert_ok "$(kms_call ee/encrypt-datakey "$good")"

req() { printf '{"key_id":"%s","plain_text":"%s","datakey_plain_length":"%s"}' "$id" "$1" "$2"; }
dgst=$(sha256_hex "$dek")
wrong=$(sha256_hex "${dek:2}00")
assert_errcode "$(kms_call ee/encrypt-datakey "$(req "$dek$wrong" 64)")" KMS.2103
c=1; [ "${dek:0:1}" != 1 ] || c=2
flipped=$c${dek:1}
assert_errcode "$(kms_call ee/encrypt-datakey "$(req "$flipped$dgst" 64)")" KMS.2103
kms_write ee/encrypt-datakey "$(req "$dek$wrong" 64)"
assert_errno close EINVAL

assert_errcode "$(kms_call ee/encrypt-datakey "$(req "ZZ${dek:2}$dgst" 64)")" KMS.2101
assert_errcode "$(kms_call ee/encrypt-datakey "$(req "$dek${dgst}0" 64)")" KMS.2101
assert_errcode "$(kms_call ee/encrypt-datakey "$(req "${dek:0:64} ${dek:64}$dgst" 64)")" KMS.2101
kms_write ee/encrypt-datakey "$(req "ZZ${dek:2}$dgst" 64)"
assert_errno close EINVAL

assert_errcode "$(kms_call ee/encrypt-datakey "$(req "$dek$dgst" 32)")" KMS.2104
assert_errcode "$(kms_call ee/encrypt-datakey "$(req "$dek${dgst:0:32}" 64)")" KMS.2104
kms_umount
