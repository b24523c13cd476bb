#!/bin/bash
# Grants (issue 4.5, kms-api.md 4.10), enforced: a grant to "bob" for decrypt-datakey on one key
# lets bob's viewer token (used by another uid) unwrap on THAT key only (create-datakey and other
# keys: KMS.0307); list-grants and list-retirable-grants show the documented fields; revoke-grant
# (KMS.2501 unknown id, KMS.2502 other key) takes effect at once; retire-grant works for the
# retiring principal (crypto, not viewer) and for a grantee whose grant includes retire-grant, not
# otherwise; kmsctl's grants name the issuer "kmsctl", a name no token may carry, and tokens
# default to their role's name, so a viewer token cannot retire them;
# KMS.2401 for create-grant alone, KMS.2402 for a bad grantee.
source "$(dirname "$0")/../lib/common.sh"
kms_setup
kms_user_setup
P=$KMS_MNT/lg
kms_start_project lg allow_other
atok=$KMS_TOKEN
k1=$(kms_create_key lg one)
k2=$(kms_create_key lg two)
r=$(kms_call "lg/keys/$k1/create-datakey" '{}')
ct1=$(jget "$r" .cipher_text) dek1=$(jget "$r" .plain_text)
ct2=$(jget "$(kms_call "lg/keys/$k2/create-datakey-without-plaintext" '{}')" .cipher_text)
unwrap() { printf '{"key_id":"%s","cipher_text":"%s","datakey_cipher_length":"64"}' "$1" "$2"; }
as_user setfattr -n user.kms.token -v "$(kms_token lg --user bob --role viewer)" "$P" ||
	fail "bob's setfattr"

# Without a grant, bob's viewer token may not unwrap.
assert_errcode "$(user_call lg/decrypt-datakey "$(unwrap "$k1" "$ct1")")" KMS.0307

r=$(kms_call lg/create-grant "{\"key_id\":\"$k1\",\"grantee_principal\":\"bob\",\"operations\":[\"decrypt-datakey\"],\"name\":\"bob-unwraps\"}")
g1=$(jget "$r" .grant_id)
[[ $g1 =~ ^[0-9a-f]{64}$ ]] || fail "grant_id: $r"
assert_eq "$(jget "$(user_call lg/decrypt-datakey "$(unwrap "$k1" "$ct1")")" .data_key)" "$dek1" \
	"bob decrypt-datakey under the grant"
assert_eq "$(jget "$(user_call "lg/keys/$k1/decrypt-datakey" "$(unwrap "$k1" "$ct1")")" .data_key)" "$dek1" \
	"bob decrypt-datakey in the key folder"
assert_errcode "$(user_call "lg/keys/$k1/create-datakey" '{}')" KMS.0307
as_user "$KMS_PY" "$KMS_IO" write "$P/keys/$k1/create-datakey" '{}'
assert_errno close EACCES "$KMS_UID"
assert_errcode "$(user_call lg/decrypt-datakey "$(unwrap "$k2" "$ct2")")" KMS.0307
assert_errcode "$(user_call "lg/keys/$k1/encrypt-datakey" "$(dek_request "$k1" "$(printf '%0128X' 5)")")" KMS.0307
assert_errcode "$(user_call lg/create-grant "{\"key_id\":\"$k1\",\"grantee_principal\":\"bob\",\"operations\":[\"create-datakey\"]}")" KMS.0307
assert_ok "$(user_call "lg/keys/$k1/describe-key" '{}')" # the viewer role's own right

# list-grants: the documented fields
r=$(kms_call lg/list-grants "{\"key_id\":\"$k1\"}")
assert_eq "$(jget "$r" '"\(.total) \(.truncated) [\(.next_marker)]"')" "1 false []" "list-grants paging"
g=$(jget "$r" '.grants[0]')
assert_eq "$(jget "$g" '[.key_id, .grant_id, .grantee_principal, (.operations | join(",")), .issuing_principal, .name, .retiring_principal] | join(" ")')" \
	"$k1 $g1 bob decrypt-datakey admin bob-unwraps " "list-grants entry"
[[ $(jget "$g" .creation_date) =~ ^[0-9]{13}$ ]] || fail "creation_date: $g"
assert_eq "$(jget "$(kms_call lg/list-grants "{\"key_id\":\"$k2\"}")" .total)" 0 "grants on the other key"
assert_eq "$(jget "$(user_call lg/list-grants "{\"key_id\":\"$k1\"}")" .total)" 1 "bob may list grants"

# errors of create-grant
assert_errcode "$(kms_call lg/create-grant "{\"key_id\":\"$k1\",\"grantee_principal\":\"bob\",\"operations\":[\"create-grant\"]}")" KMS.2401
kms_write lg/create-grant "{\"key_id\":\"$k1\",\"grantee_principal\":\"bob\",\"operations\":[\"create-grant\"]}"
assert_errno close EINVAL
long=$(printf 'b%.0s' $(seq 65))
for bad in "" "bad-name" "bo b" "$long"; do
	assert_errcode "$(kms_call lg/create-grant "{\"key_id\":\"$k1\",\"grantee_principal\":\"$bad\",\"operations\":[\"describe-key\"]}")" KMS.2402
done
assert_eq "$(jget "$(kms_call lg/list-grants "{\"key_id\":\"$k1\"}")" .total)" 1 "grants after refused creations"

# revoke-grant: errors, then at once
assert_errcode "$(kms_call lg/revoke-grant "{\"key_id\":\"$k1\",\"grant_id\":\"$(printf '%064x' 1)\"}")" KMS.2501
assert_errcode "$(kms_call lg/revoke-grant "{\"key_id\":\"$k1\",\"grant_id\":\"xyz\"}")" KMS.2501
assert_errcode "$(kms_call lg/revoke-grant "{\"key_id\":\"$k2\",\"grant_id\":\"$g1\"}")" KMS.2502
assert_errcode "$(user_call lg/revoke-grant "{\"key_id\":\"$k1\",\"grant_id\":\"$g1\"}")" KMS.0307
assert_ok "$(kms_call "lg/keys/$k1/revoke-grant" "{\"grant_id\":\"$g1\"}")"
assert_errcode "$(user_call lg/decrypt-datakey "$(unwrap "$k1" "$ct1")")" KMS.0307
assert_errcode "$(kms_call lg/revoke-grant "{\"key_id\":\"$k1\",\"grant_id\":\"$g1\"}")" KMS.2501

# retiring: carol is the retiring principal of g2; bob may retire g4 (has retire-grant), not g3.
mk() { jget "$(kms_call lg/create-grant "$1")" .grant_id; }
g2=$(mk "{\"key_id\":\"$k2\",\"grantee_principal\":\"dave\",\"operations\":[\"encrypt-datakey\"],\"retiring_principal\":\"carol\"}")
g3=$(mk "{\"key_id\":\"$k1\",\"grantee_principal\":\"bob\",\"operations\":[\"decrypt-datakey\"]}")
g4=$(mk "{\"key_id\":\"$k2\",\"grantee_principal\":\"bob\",\"operations\":[\"decrypt-datakey\",\"retire-grant\"]}")
kms_login lg "$(kms_token lg --user carol --role viewer)"
# A viewer may not retire, not even as the retiring principal (retire-grant needs crypto).
assert_errcode "$(kms_call lg/retire-grant "{\"key_id\":\"$k2\",\"grant_id\":\"$g2\"}")" KMS.0307
kms_login lg "$(kms_token lg --user carol --role crypto)"
r=$(kms_call lg/list-retirable-grants '{}')
assert_eq "$(jget "$r" '"\(.total) \(.grants[0].grant_id) \(.grants[0].retiring_principal) \(.grants[0].grantee_principal)"')" \
	"1 $g2 carol dave" "carol's retirable grants"
assert_eq "$(jget "$(user_call lg/list-retirable-grants '{}')" .total)" 0 "bob's retirable grants"
assert_errcode "$(kms_call lg/retire-grant "{\"key_id\":\"$k1\",\"grant_id\":\"$g3\"}")" KMS.0307
assert_ok "$(kms_call lg/retire-grant "{\"key_id\":\"$k2\",\"grant_id\":\"$g2\"}")"
kms_login lg "$atok"
assert_errcode "$(user_call lg/retire-grant "{\"key_id\":\"$k1\",\"grant_id\":\"$g3\"}")" KMS.0307
assert_ok "$(user_call lg/decrypt-datakey "$(unwrap "$k1" "$ct1")")"
# g4 is on k2: naming k1, where bob (a viewer) holds no retire-grant, is KMS.0307.
assert_errcode "$(user_call lg/retire-grant "{\"key_id\":\"$k1\",\"grant_id\":\"$g4\"}")" KMS.0307
assert_ok "$(user_call lg/decrypt-datakey "$(unwrap "$k2" "$ct2")")"
assert_ok "$(user_call "lg/keys/$k2/retire-grant" "{\"grant_id\":\"$g4\"}")"
assert_errcode "$(user_call lg/decrypt-datakey "$(unwrap "$k2" "$ct2")")" KMS.0307
assert_eq "$(jget "$(kms_call lg/list-grants "{\"key_id\":\"$k2\"}")" .total)" 0 "grants on k2 after retiring"
assert_eq "$(jget "$(kms_call lg/list-grants "{\"key_id\":\"$k1\"}")" '[.grants[].grant_id] | join(" ")')" "$g3" \
	"grants on k1"

# Issue 11: grants made by kmsctl had issuer "admin", the name every token got by default, and
# a viewer token retired them. kmsctl's grants name "kmsctl", which no token may carry; tokens
# default to their role's name; a viewer token (default name) may not retire kmsctl's grant, a
# crypto token named admin neither (it is not the issuer).
r=$(kms_ctl call lg create-grant "{\"key_id\":\"$k1\",\"grantee_principal\":\"dave\",\"operations\":[\"describe-key\"]}") ||
	fail "kmsctl call create-grant: $r"
g5=$(jget "$r" .grant_id)
assert_eq "$(jget "$(kms_call lg/list-grants "{\"key_id\":\"$k1\"}")" ".grants[] | select(.grant_id == \"$g5\") | .issuing_principal")" \
	kmsctl "issuer of kmsctl's grant"
for u in kmsctl uid0 uid1000; do
	rc=0
	out=$(kms_token lg --user "$u" --role viewer 2>&1) || rc=$?
	assert_eq "$rc" 2 "token issue --user $u"
	assert_contains "$out" "reserved" "token issue --user $u"
done
vtok=$(kms_token lg --role viewer)
ctok=$(kms_token lg --role crypto)
list=$(kms_ctl token list)
for t in viewer crypto; do
	[ -n "$(awk -v t="$t" '$2 == "lg" && $3 == t && $4 == t' <<<"$list")" ] ||
		fail "no $t token named $t: $list"
done
as_user setfattr -n user.kms.token -v "$vtok" "$P" || fail "viewer setfattr"
assert_errcode "$(user_call lg/retire-grant "{\"key_id\":\"$k1\",\"grant_id\":\"$g5\"}")" KMS.0307
as_user setfattr -n user.kms.token -v "$(kms_token lg --user admin --role viewer)" "$P" || fail "setfattr"
assert_errcode "$(user_call lg/retire-grant "{\"key_id\":\"$k1\",\"grant_id\":\"$g5\"}")" KMS.0307
as_user setfattr -n user.kms.token -v "$(kms_token lg --user admin --role crypto)" "$P" || fail "setfattr"
assert_errcode "$(user_call lg/retire-grant "{\"key_id\":\"$k1\",\"grant_id\":\"$g5\"}")" KMS.0307
as_user setfattr -n user.kms.token -v "$ctok" "$P" || fail "crypto setfattr"
assert_errcode "$(user_call lg/retire-grant "{\"key_id\":\"$k1\",\"grant_id\":\"$g5\"}")" KMS.0307
assert_ok "$(kms_ctl call lg retire-grant "{\"key_id\":\"$k1\",\"grant_id\":\"$g5\"}")"
kms_umount
