#!/bin/bash
# Requests over 64 KiB: the write that goes past 65536 bytes fails with EFBIG and the response is
# KMS.0203 (one big write, many small writes, `cat big > f` + `cat f`); exactly 64 KiB is fine.
source "$(dirname "$0")/../lib/common.sh"
kms_start_project tl
id=$(kms_create_key tl app)
P=$KMS_MNT/tl

kms_py bad_too_long "$P" "$id"

head -c 70000 /dev/zero | tr '\0' ' ' >"$KMS_WORK/big.json"
rc=0; err=$(cat "$KMS_WORK/big.json" 2>&1 >"$P/create-key") || rc=$?
[ "$rc" -ne 0 ] || fail "cat of 70000 bytes > f exited 0"
assert_contains "$err" "File too large" "cat big > f"
assert_errcode "$(cat "$P/create-key")" KMS.0203
kms_write tl/create-key - <"$KMS_WORK/big.json"
assert_errno write EFBIG
assert_errno close EFBIG

kill -0 "$KMS_PID" || fail "daemon died"
assert_eq "$(jget "$(kms_call tl/describe-key "{\"key_id\":\"$id\"}")" .key_info.key_id)" "$id" "after the big requests"
kms_umount
