#!/bin/bash
# An unread mailbox response expires after mailbox_ttl seconds (-o mailbox_ttl=1): a late cat
# runs an empty request instead of returning an old (possibly secret) response.
source "$(dirname "$0")/../lib/common.sh"
kms_start_project tt mailbox_ttl=1
P=$KMS_MNT/tt
id=$(kms_create_key tt app)
echo "{\"key_id\":\"$id\"}" >"$P/create-datakey"
r=$(kms_cat "$P/create-datakey")
assert_eq "$(jget "$r" .key_id)" "$id" "mailbox read at once"
echo "{\"key_id\":\"$id\"}" >"$P/create-datakey"
sleep 2.5
assert_errcode "$(cat "$P/create-datakey")" KMS.0204
kms_umount
