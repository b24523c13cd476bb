#!/bin/bash
# Only `kmsctl --state DIR init` (and kmsfs's first start) create a state directory: every other
# kmsctl command on a missing one (a mistyped --state) fails with exit 3 and a message naming
# init, and creates nothing. init makes the directory 0700 with root.key (0600) and kms.db (the
# token key is sealed in kms.db, no file); on an existing one it says so, exits 0 and leaves the root key as it was.
source "$(dirname "$0")/../lib/common.sh"
kms_setup

typo=$KMS_WORK/mistyped/dir
for cmd in "token issue --project p" "token list" "token revoke abc" "project set p --mode 0750" \
	"project show p" "call p list-keys {}" "check"; do
	rc=0
	# shellcheck disable=SC2086 # the words of cmd are the command line
	err=$("$KMSCTL" --state "$typo" $cmd 2>&1 >/dev/null) || rc=$?
	assert_eq "$rc" 3 "exit status of kmsctl $cmd on a missing state dir"
	assert_contains "$err" "init" "kmsctl $cmd on a missing state dir"
	[ ! -e "$KMS_WORK/mistyped" ] || fail "kmsctl $cmd created '$KMS_WORK/mistyped'"
done
# An existing but empty directory is no store either.
mkdir "$KMS_WORK/empty"
rc=0; "$KMSCTL" --state "$KMS_WORK/empty" token issue --project p >/dev/null 2>&1 || rc=$?
assert_eq "$rc" 3 "exit status of token issue in an empty directory"
[ ! -e "$KMS_WORK/empty/root.key" ] || fail "token issue made a root key in an empty directory"

out=$("$KMSCTL" --state "$KMS_STATE" init) || fail "kmsctl init exited $?"
assert_contains "$out" "initialised" "kmsctl init"
assert_eq "$(stat -c %a "$KMS_STATE")" 700 "state dir mode"
assert_eq "$(stat -c %a "$KMS_STATE/root.key")" 600 "root.key mode"
[ ! -e "$KMS_STATE/token.key" ] || fail "init left a token.key file (it belongs sealed in kms.db)"
[ -f "$KMS_STATE/kms.db" ] || fail "init made no kms.db"
sum=$(sha256sum <"$KMS_STATE/root.key")
out=$("$KMSCTL" --state "$KMS_STATE" init) || fail "kmsctl init on an initialised dir exited $?"
assert_contains "$out" "already initialised" "kmsctl init again"
assert_eq "$(sha256sum <"$KMS_STATE/root.key")" "$sum" "root key after a second init"
rc=0; "$KMSCTL" --state "$KMS_STATE" init extra >/dev/null 2>&1 || rc=$?
assert_eq "$rc" 2 "exit status of init with an extra argument"

# The initialised dir is what the daemon and the other commands use.
kms_start_project p
tok=$KMS_TOKEN
kms_create_key p first >/dev/null
kms_umount
kms_ctl check >/dev/null || fail "kmsctl check after init"
assert_eq "$(sha256sum <"$KMS_STATE/root.key")" "$sum" "root key after the daemon used the dir"
