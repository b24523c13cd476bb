#!/bin/bash
# CLI basics a new user tries first: `kmsfs --help` and `kmsfs --version` print something and
# exit 0; kmsctl rejects a bad command line with exit 2; `kmsctl call` works without a mount
# (exit 0 on success, 1 on an API error, `-` reads stdin); `kmsctl check` passes.
source "$(dirname "$0")/../lib/common.sh"
kms_setup

out=$("$KMSFS" --help 2>&1) || fail "kmsfs --help exited $?"
assert_contains "$out" "state=" "kmsfs --help"
out=$("$KMSFS" --version 2>&1) || fail "kmsfs --version exited $?"
[[ "$out" =~ [0-9]+\.[0-9]+ ]] || fail "kmsfs --version prints no version: $out"

rc=0; "$KMSCTL" --state "$KMS_STATE" no-such-command >/dev/null 2>&1 || rc=$?
assert_eq "$rc" 2 "kmsctl exit status for an unknown command"
rc=0; "$KMSCTL" --state "$KMS_STATE" token issue >/dev/null 2>&1 || rc=$?
assert_eq "$rc" 2 "kmsctl exit status for token issue without --project"

# Admin calls straight against the store, no mount, no token.
tok=$(kms_token cli)
[ "$(printf '%s\n' "$tok" | wc -l)" -eq 1 ] && [ -n "$tok" ] || fail "token issue must print one line: '$tok'"
r=$(kms_ctl call cli create-key '{"key_alias":"cli-key"}') || fail "kmsctl call create-key exited $?"
id=$(jget "$r" .key_info.key_id)
[ ${#id} -eq 36 ] || fail "create-key key_id '$id'"
r=$(printf '{"key_id":"%s"}' "$id" | kms_ctl call cli describe-key -) || fail "kmsctl call describe-key - exited $?"
assert_eq "$(jget "$r" .key_info.key_alias)" cli-key "describe-key via stdin"
rc=0; r=$(kms_ctl call cli describe-key '{"key_id":"alias/nope"}') || rc=$?
assert_eq "$rc" 1 "kmsctl call exit status for an API error"
assert_errcode "$r" KMS.0207
rc=0; r=$(kms_ctl call cli describe-key) || rc=$?
assert_eq "$rc" 1 "kmsctl call with no JSON (empty request)"
assert_errcode "$r" KMS.0204
kms_ctl check >/dev/null || fail "kmsctl check failed on a fresh store"
