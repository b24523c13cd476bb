#!/bin/bash
# One shell fd for both directions: `exec 3<>f; printf req >&3; cat <&3` returns the whole
# response although the file offset is past the request; the fd can be reused.
source "$(dirname "$0")/../lib/common.sh"
kms_start_project xf
id=$(kms_create_key xf app)
f=$KMS_MNT/xf/describe-key
exec 3<>"$f"
printf '{"key_id":"%s"}' "$id" >&3
r=$(cat <&3)
assert_eq "$(jget "$r" .key_info.key_id)" "$id" "first transaction on fd 3"
printf '{"key_id":"alias/app","sequence":"919c82d4-8046-4722-9094-35c3c6524cff"}' >&3
r=$(cat <&3)
assert_eq "$(jget "$r" .key_info.key_alias)" app "second transaction on fd 3"
exec 3>&-

exec 4<>"$KMS_MNT/xf/keys/$id/create-datakey"
echo '{"datakey_length":"256"}' >&4
r=$(cat <&4)
kms_record "$r"
assert_eq "$(jget "$r" '.plain_text | length')" 64 "create-datakey on fd 4"
exec 4>&-
kms_umount
