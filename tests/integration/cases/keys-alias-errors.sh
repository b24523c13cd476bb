#!/bin/bash
# create-key refuses a duplicate alias (KMS.1104) and invalid aliases (KMS.1101), a missing alias
# (KMS.0204), all with close() EINVAL; none of them creates a key. An alias whose entry under
# aliases/ ('/' written %2F) would pass 255 bytes is KMS.1101 too (create-key, update-key-alias).
source "$(dirname "$0")/../lib/common.sh"
kms_start_project ka
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
# An alias's entry under aliases/ ('/' written %2F) must fit in NAME_MAX (255 bytes): 86 '/'
# (258 bytes written) is KMS.1101, also for update-key-alias; 85 '/' (255 bytes) works, and
# every entry ls lists can be stat'ed and followed.
slashes=$(printf '/%.0s' $(seq 86))
assert_errcode "$(kms_call ka/create-key "{\"key_alias\":\"$slashes\"}")" KMS.1101
kms_write ka/create-key "{\"key_alias\":\"$slashes\"}"
assert_errno close EINVAL
sid=$(kms_create_key ka "${slashes:1}")
assert_errcode "$(kms_call "ka/keys/$sid/update-key-alias" "{\"key_alias\":\"x$slashes\"}")" KMS.1101
pairs=x$(printf '/x%.0s' $(seq 63))yy
kms_create_key ka "$pairs" >/dev/null
assert_errcode "$(kms_call ka/create-key "{\"key_alias\":\"${pairs}y\"}")" KMS.1101
assert_eq "$(jget "$(kms_call ka/list-keys '{}')" .total)" 4 "keys after the refused requests"
assert_eq "$(ls "$KMS_MNT/ka/keys" | wc -l)" 4 "key dirs"
n=0
while IFS= read -r name; do
	((${#name} <= 255)) || fail "aliases/ entry of ${#name} bytes"
	stat "$KMS_MNT/ka/aliases/$name" >/dev/null || fail "stat aliases/$name"
	[ -d "$KMS_MNT/ka/aliases/$name/" ] || fail "aliases/$name does not lead to a key folder"
	n=$((n + 1))
done < <(ls "$KMS_MNT/ka/aliases")
assert_eq "$n" 4 "aliases listed and stat'ed"
assert_eq "$(readlink "$KMS_MNT/ka/aliases/$(printf '%%2F%.0s' $(seq 85))")" "../keys/$sid" \
	"readlink of the 255-byte entry"
kms_umount
