#!/bin/bash
# Token lifecycle (issue 3.4): `kmsctl token list` shows id, project, user, role, expiry and state
# of every issued token and never the token (nor its payload or MAC part); `kmsctl token revoke ID`
# makes the very next request with that token fail with KMS.0302 (EACCES) on the running daemon,
# leaves other tokens alone, shows as "revoked", and survives a remount.
source "$(dirname "$0")/../lib/common.sh"
kms_setup
kms_user_setup
kms_token rv >/dev/null
kms_mount allow_other
kms_login rv
id=$(kms_create_key rv app)

atok=$(kms_token rv --user alice --role crypto --ttl 3600)
now=$(date +%s)
btok=$(kms_token rv --user bob --role viewer)
kms_login rv "$atok"
as_user setfattr -n user.kms.token -v "$btok" "$KMS_MNT/rv" || fail "user setfattr"
assert_ok "$(kms_call "rv/keys/$id/create-datakey-without-plaintext")"
assert_ok "$(user_call "rv/keys/$id/describe-key")"

list=$(kms_ctl token list) || fail "token list"
for t in "$atok" "$btok"; do
	assert_not_contains "$list" "$t" "token list"
	payload=${t#kms1.}
	assert_not_contains "$list" "${payload%%.*}" "token list (payload part)"
	assert_not_contains "$list" "${t##*.}" "token list (MAC part)"
done
read -r -a head <<<"$(head -n 1 <<<"$list")"
assert_eq "${head[*]}" "ID PROJECT USER ROLE EXPIRES STATE" "token list header"
arow=$(awk '$3 == "alice"' <<<"$list")
brow=$(awk '$3 == "bob"' <<<"$list")
[ "$(wc -l <<<"$arow")" -eq 1 ] && [ -n "$arow" ] || fail "token list: no single row for alice"
read -r aid aproj auser arole aexp astate <<<"$arow"
[[ $aid =~ ^[0-9a-f]{16}$ ]] || fail "token id '$aid'"
assert_eq "$aproj $auser $arole $astate" "rv alice crypto valid" "alice's row"
exp_s=$(date -d "$aexp" +%s) || fail "expiry '$aexp' is not a date"
((exp_s >= now + 3600 - 5 && exp_s <= now + 3600 + 5)) || fail "alice's expiry $aexp, issued $now with ttl 3600"
assert_eq "$(awk '{print $2, $3, $4, $6}' <<<"$brow")" "rv bob viewer valid" "bob's row"
bid=$(awk '{print $1}' <<<"$brow")
[ "$(awk 'NR > 1 && $3 == "admin"' <<<"$list" | wc -l)" -ge 2 ] || fail "token list misses the admin tokens"

# Revoke alice's: the very next request fails; bob's and root's other tokens are untouched.
kms_ctl token revoke "$aid" || fail "token revoke $aid"
assert_errcode "$(kms_call rv/create-datakey-without-plaintext "{\"key_id\":\"$id\"}")" KMS.0302
kms_write rv/create-datakey-without-plaintext "{\"key_id\":\"$id\"}"
assert_errno close EACCES
# The key folder is closed to a revoked token at once (issue 11.4).
assert_eq "$(kms_call "rv/keys/$id/create-datakey-without-plaintext")" "" "key folder after revoke"
assert_errno open EACCES
assert_ok "$(user_call "rv/keys/$id/describe-key")"
assert_eq "$(kms_ctl token list | awk -v id="$aid" '$1 == id {print $6}')" revoked "alice's state"
assert_eq "$(kms_ctl token list | awk -v id="$bid" '$1 == id {print $6}')" valid "bob's state"
# setting the revoked token again does not bring it back
kms_login rv "$atok"
assert_errcode "$(kms_call rv/list-keys '{}')" KMS.0302

# An unknown id is an error, not a silent success.
out=$(kms_ctl token revoke 0123456789abcdef 2>&1) && fail "revoking an unknown id succeeded: $out"

# Still revoked after a remount; bob's still works.
kms_umount
kms_mount allow_other
kms_login rv "$atok"
assert_errcode "$(kms_call rv/list-keys '{}')" KMS.0302
as_user setfattr -n user.kms.token -v "$btok" "$KMS_MNT/rv" || fail "user setfattr after remount"
assert_ok "$(user_call rv/list-keys '{}')"
kms_ctl token revoke "$bid" || fail "token revoke $bid"
assert_errcode "$(user_call rv/list-keys '{}')" KMS.0302
kms_umount
