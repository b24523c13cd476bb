#!/bin/bash
# No token set: every request answers KMS.0301 and the writer's close() fails with EACCES,
# so `cat req > f` and python's close() report it; `echo > f; cat f` then shows the error.
source "$(dirname "$0")/../lib/common.sh"
kms_setup
kms_token nt >/dev/null
kms_ctl call nt create-key '{"key_alias":"app"}' >/dev/null
kms_mount
P=$KMS_MNT/nt

r=$(kms_call nt/create-key '{"key_alias":"x"}')
assert_errcode "$r" KMS.0301
kms_write nt/list-keys '{}'
assert_errno close EACCES
assert_errno write 0

echo '{}' >"$KMS_WORK/req"
rc=0; err=$(cat "$KMS_WORK/req" 2>&1 >"$P/list-keys") || rc=$?
[ "$rc" -ne 0 ] || fail "cat req > list-keys succeeded without a token"
assert_contains "$err" "Permission denied" "cat req > f"
assert_errcode "$(cat "$P/list-keys")" KMS.0301
# An empty read (no request) is refused the same way.
assert_errcode "$(cat "$P/create-datakey-without-plaintext")" KMS.0301
# Key folders are closed to a caller with no identity (issue 11.4), even root.
id=$(kms_ctl call nt list-keys '{}' | jq -r '.keys[0]')
[[ $id =~ ^[0-9a-f-]{36}$ ]] || fail "kmsctl call list-keys: key id '$id'"
err=$(cat "$P/keys/$id/create-datakey-without-plaintext" 2>&1) && fail "key folder without a token"
assert_contains "$err" "Permission denied" "cat keys/<id>/... without a token"
kms_umount
