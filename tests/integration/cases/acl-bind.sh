#!/bin/bash
# Identity without tokens (issue 3.2): `kmsctl project bind P --uid U --role crypto` lets U's
# processes use data-key actions with no token set, at once on the running daemon; a viewer
# binding may describe and list but gets KMS.0307 (EACCES at close) for create-datakey; a token
# set by U takes precedence over the binding, both ways (viewer binding + admin token creates a
# key; crypto binding + viewer token cannot make a DEK); unbind takes effect at once; a --gid
# binding serves a member of that group and nobody else.
source "$(dirname "$0")/../lib/common.sh"
kms_setup
kms_user_setup
kms_member_setup
P=$KMS_MNT/ab
kms_start_project ab allow_other
id=$(kms_create_key ab app)
K=$P/keys/$id
# nobody UID CMD...: CMD runs as UID, which has no identity in ab: the key folder is closed to
# it (EACCES at open, issue 11.4) and the project's own file answers KMS.0301.
nobody() {
	local uid=$1
	shift
	[ -z "$("$@" "$KMS_PY" "$KMS_IO" read "$K/create-datakey")" ] || fail "$uid: key folder answered"
	assert_errno open EACCES "$uid"
	assert_errcode "$("$@" "$KMS_PY" "$KMS_IO" rdwr "$P/create-datakey" "{\"key_id\":\"$id\"}")" KMS.0301
}

nobody "$KMS_UID" as_user

# crypto binding: data-key actions without any token.
kms_ctl project bind ab --uid "$KMS_USER" --role crypto || fail "project bind --uid"
r=$(as_user "$KMS_PY" "$KMS_IO" read "$K/create-datakey")
pt=$(jget "$r" .plain_text)
ct=$(jget "$r" .cipher_text)
[ "${#pt}" -eq 128 ] || fail "bound user create-datakey: $r"
r=$(user_call "$K/decrypt-datakey" "{\"cipher_text\":\"$ct\",\"datakey_cipher_length\":\"64\"}")
assert_eq "$(jget "$r" .data_key)" "$pt" "bound user decrypt-datakey"
r=$(as_user sh -c "echo '{\"key_id\":\"$id\"}' > '$P/create-datakey-without-plaintext' && cat '$P/create-datakey-without-plaintext'")
assert_eq "$(jget "$r" .key_id)" "$id" "bound user echo > f; cat f"
assert_eq "$(jget "$(user_call ab/describe-key "{\"key_id\":\"$id\"}")" .key_info.key_id)" "$id" \
	"bound user describe-key"
assert_errcode "$(user_call ab/create-key '{"key_alias":"crypto-may-not"}')" KMS.0307
as_user "$KMS_PY" "$KMS_IO" write "$P/create-key" '{"key_alias":"crypto-may-not"}'
assert_errno close EACCES "$KMS_UID"
assert_errcode "$(kms_call ab/describe-key '{"key_id":"alias/crypto-may-not"}')" KMS.0207

# viewer binding: describe and list, no key material.
kms_ctl project bind ab --uid "$KMS_USER" --role viewer || fail "project bind viewer"
assert_eq "$(jget "$(user_call "$K/describe-key")" .key_info.key_id)" "$id" "viewer describe-key"
assert_eq "$(jget "$(user_call ab/list-keys '{}')" .total)" 1 "viewer list-keys"
assert_errcode "$(user_call "$K/create-datakey")" KMS.0307
assert_errcode "$(user_call ab/create-datakey "{\"key_id\":\"$id\"}")" KMS.0307
as_user "$KMS_PY" "$KMS_IO" write "$K/create-datakey" '{}'
assert_errno close EACCES "$KMS_UID"
assert_errcode "$(user_call "$K/decrypt-datakey" "{\"cipher_text\":\"$ct\",\"datakey_cipher_length\":\"64\"}")" KMS.0307

# A token set by the user wins over the binding: viewer binding + admin token creates a key ...
atok=$(kms_token ab --user alice --role admin)
as_user setfattr -n user.kms.token -v "$atok" "$P" || fail "user setfattr admin token"
r=$(user_call ab/create-key '{"key_alias":"by-alice"}')
assert_ok "$r"
assert_eq "$(jget "$(user_call ab/list-keys '{}')" .total)" 2 "keys after alice's create-key"
# ... and crypto binding + viewer token cannot make a DEK.
kms_ctl project bind ab --uid "$KMS_USER" --role crypto || fail "project bind crypto again"
vtok=$(kms_token ab --user vera --role viewer)
as_user setfattr -n user.kms.token -v "$vtok" "$P" || fail "user setfattr viewer token"
assert_errcode "$(user_call "$K/create-datakey")" KMS.0307
as_user setfattr -x user.kms.token "$P" || fail "user setfattr -x"
assert_ok "$(user_call "$K/create-datakey")"

# unbind: gone at once.
kms_ctl project unbind ab --uid "$KMS_USER" || fail "project unbind"
nobody "$KMS_UID" as_user
as_user "$KMS_PY" "$KMS_IO" write "$P/create-datakey-without-plaintext" "{\"key_id\":\"$id\"}"
assert_errno close EACCES "$KMS_UID"

# --gid binding: a member of the group (supplementary) is served, a non-member is not.
nobody "$KMS_MUID" as_member
kms_ctl project bind ab --gid kmsitg --role crypto || fail "project bind --gid"
r=$(as_member "$KMS_PY" "$KMS_IO" read "$K/create-datakey")
[ "$(jget "$r" .key_id)" == "$id" ] && [ -n "$(jget "$r" .plain_text)" ] ||
	fail "group member create-datakey: $r"
assert_errcode "$(as_member "$KMS_PY" "$KMS_IO" rdwr "$P/create-key" '{"key_alias":"m"}')" KMS.0307
nobody "$KMS_UID" as_user
kms_ctl project unbind ab --gid kmsitg || fail "project unbind --gid"
nobody "$KMS_MUID" as_member
kms_umount
