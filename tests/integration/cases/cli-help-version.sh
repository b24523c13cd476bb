#!/bin/bash
# CLI basics a new user tries first: `kmsfs --help` and `kmsfs --version` print something and
# exit 0; --help lists the options docs/operations.md's Options section lists, with kmsfs's defaults; kmsctl rejects a bad command line with exit 2; `kmsctl call` works without a mount
# (exit 0 on success, 1 on an API error, `-` reads stdin); `kmsctl check` passes.
source "$(dirname "$0")/../lib/common.sh"
kms_setup

out=$("$KMSFS" --help 2>&1) || fail "kmsfs --help exited $?"
assert_contains "$out" "state=" "kmsfs --help"
# --help is true: kmsfs's thread default, each option once, and the same list as docs/operations.md's Options.
opts_of() { grep -oE -- '-o [a-z_]+|--?[a-zA-Z]+' | sort -u; }
assert_contains "$(grep -- '-o max_threads' <<<"$out")" "default 16" "max_threads in kmsfs --help"
assert_eq "$(grep -c -- '-o allow_other' <<<"$out")" 1 "lines naming allow_other in kmsfs --help"
help_opts=$(grep -E '^    -' <<<"$out" | sed 's/^ *//; s/  .*//' | opts_of)
readme_opts=$(sed -n '/^## Options/,/^## /p' "$KMS_SRC/docs/operations.md" | grep -E '^\| `-' | cut -d'|' -f2 | opts_of)
[ "$(wc -l <<<"$help_opts")" -ge 20 ] || fail "kmsfs --help lists too few options: $help_opts"
assert_eq "$help_opts" "$readme_opts" "options of kmsfs --help vs docs/operations.md's Options section"
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
# additional_authenticated_data is bound (docs/api-differences.md, Contexts): decryption needs it.
r=$(kms_ctl call cli encrypt-data "{\"key_id\":\"$id\",\"plain_text\":\"hello\",\"additional_authenticated_data\":\"a1\"}")
ct=$(jget "$r" .cipher_text)
rc=0; r=$(kms_ctl call cli decrypt-data "{\"cipher_text\":\"$ct\"}") || rc=$?
assert_eq "$rc" 1 "decrypt-data without the additional_authenticated_data"
rc=0; r=$(kms_ctl call cli decrypt-data "{\"cipher_text\":\"$ct\",\"additional_authenticated_data\":\"a2\"}") || rc=$?
assert_eq "$rc" 1 "decrypt-data with another additional_authenticated_data"
r=$(kms_ctl call cli decrypt-data "{\"cipher_text\":\"$ct\",\"additional_authenticated_data\":\"a1\"}") ||
	fail "decrypt-data with the same additional_authenticated_data: $r"
assert_eq "$(jget "$r" .plain_text)" hello "plaintext bound to additional_authenticated_data"
rc=0; r=$(kms_ctl call cli describe-key '{"key_id":"alias/nope"}') || rc=$?
assert_eq "$rc" 1 "kmsctl call exit status for an API error"
assert_errcode "$r" KMS.0207
rc=0; r=$(kms_ctl call cli describe-key) || rc=$?
assert_eq "$rc" 1 "kmsctl call with no JSON (empty request)"
assert_errcode "$r" KMS.0204
kms_ctl check >/dev/null || fail "kmsctl check failed on a fresh store"
