#!/bin/bash
# create-key refuses a duplicate alias (KMS.1104) and invalid aliases (KMS.1101), a missing alias
# (KMS.0204), all with close() EINVAL; none of them creates a key.
source "$(dirname "$0")/../lib/common.sh"
kms_setup
kms_token ka >/dev/null
kms_mount
kms_login ka
kms_create_key ka app >/dev/null

assert_errcode "$(kms_call ka/create-key '{"key_alias":"app"}')" KMS.1104
kms_write ka/create-key '{"key_alias":"app"}'
assert_errno close EEXIST
long=$(printf 'a%.0s' $(seq 256))
for bad in "" "bad alias" "semi;colon" "dollar\$" "$long" "tab\\tx"; do
	assert_errcode "$(kms_call ka/create-key "{\"key_alias\":\"$bad\"}")" KMS.1101
done
assert_errcode "$(kms_call ka/create-key '{}')" KMS.0204
kms_write ka/create-key '{"key_alias":"bad alias"}'
assert_errno close EINVAL
# 255 characters of the allowed set are fine.
ok=$(printf 'b%.0s' $(seq 252))a:_
kms_create_key ka "${ok:0:255}" >/dev/null
assert_eq "$(jget "$(kms_call ka/list-keys '{}')" .total)" 2 "keys after the refused requests"
assert_eq "$(ls "$KMS_MNT/ka/keys" | wc -l)" 2 "key dirs"
kms_umount
