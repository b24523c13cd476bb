#!/bin/bash
# Aliases (issue 4.1-4.2, kms-api.md 1, 4.7): update-key-alias renames (reply key_info{key_id,
# key_alias}); a duplicate is KMS.1104, an invalid alias KMS.1101 (EINVAL); <P>/aliases/ lists
# symlinks to ../keys/<id> (a '/' in an alias appears as %2F) that work as key folders; the forms
# alias/NAME and kms:<region>:<domain_id>:alias:NAME (domain_id from describe-key, region = realm,
# configurable with -o region=) name the key in describe-key and the crypto actions.
source "$(dirname "$0")/../lib/common.sh"
kms_start_project la
P=$KMS_MNT/la
id=$(kms_create_key la app)
other=$(kms_create_key la other)

r=$(kms_call "la/update-key-alias" "{\"key_id\":\"$id\",\"key_alias\":\"app2\"}")
assert_eq "$(jget "$r" '.key_info | "\(.key_id) \(.key_alias)"')" "$id app2" "update-key-alias reply"
assert_eq "$(jget "$(kms_call "la/keys/$id/describe-key" '{}')" .key_info.key_alias)" app2 "alias after rename"
assert_errcode "$(kms_call la/describe-key '{"key_id":"alias/app"}')" KMS.0207
assert_eq "$(ls "$P/aliases" | sort | paste -sd' ')" "app2 other" "aliases/ after rename"
assert_eq "$(readlink "$P/aliases/app2")" "../keys/$id" "readlink aliases/app2"
[ -L "$P/aliases/app2" ] || fail "aliases/app2 is not a symlink"
assert_eq "$(jget "$(cat "$P/aliases/app2/describe-key")" .key_info.key_id)" "$id" "cat aliases/app2/describe-key"

# duplicate and invalid aliases: refused, nothing renamed
assert_errcode "$(kms_call "la/keys/$other/update-key-alias" '{"key_alias":"app2"}')" KMS.1104
kms_write "la/keys/$other/update-key-alias" '{"key_alias":"app2"}'
assert_errno close EEXIST
assert_errcode "$(kms_call la/create-key '{"key_alias":"app2"}')" KMS.1104
long=$(printf 'a%.0s' $(seq 256))
for bad in "" "bad alias" "semi;colon" "x/default" "$long" 'quote\"'; do
	assert_errcode "$(kms_call "la/keys/$other/update-key-alias" "{\"key_alias\":\"$bad\"}")" KMS.1101
done
kms_write "la/keys/$other/update-key-alias" '{"key_alias":"bad alias"}'
assert_errno close EINVAL
assert_errcode "$(kms_call "la/keys/$other/update-key-alias" '{}')" KMS.0204
assert_eq "$(jget "$(kms_call "la/keys/$other/describe-key" '{}')" .key_info.key_alias)" other \
	"alias after refused renames"

# An alias with '/' (allowed by the API's pattern): %2F in aliases/.
echo '{"key_alias":"team/app"}' >"$P/keys/$id/update-key-alias"
assert_eq "$(jget "$(cat "$P/keys/$id/update-key-alias")" .key_info.key_alias)" team/app "echo > update-key-alias"
assert_eq "$(ls "$P/aliases" | sort | paste -sd' ')" "other team%2Fapp" "aliases/ with a slash"
assert_eq "$(readlink "$P/aliases/team%2Fapp")" "../keys/$id" "readlink aliases/team%2Fapp"
assert_eq "$(jget "$(cat "$P/aliases/team%2Fapp/describe-key")" .key_info.key_id)" "$id" "key folder through %2F"

# alias/NAME and the URN in the crypto actions.
info=$(kms_call la/describe-key '{"key_id":"alias/team/app"}')
assert_eq "$(jget "$info" .key_info.key_id)" "$id" "describe-key alias/team/app"
domain=$(jget "$info" .key_info.domain_id)
region=$(jget "$info" .key_info.realm)
[[ $domain =~ ^[0-9a-f]{32}$ ]] || fail "domain_id '$domain'"
assert_eq "$region" eu-de "default realm"
urn="kms:$region:$domain:alias:team/app"
check_refs() {
	local ref r ct dek c
	for ref in "$@"; do
		assert_eq "$(jget "$(kms_call la/describe-key "{\"key_id\":\"$ref\"}")" .key_info.key_id)" "$id" "describe-key $ref"
		r=$(kms_call la/create-datakey "{\"key_id\":\"$ref\"}")
		assert_eq "$(jget "$r" .key_id)" "$id" "create-datakey $ref"
		ct=$(jget "$r" .cipher_text)
		r=$(kms_call la/decrypt-datakey "{\"key_id\":\"$ref\",\"cipher_text\":\"$ct\",\"datakey_cipher_length\":\"64\"}")
		[[ $(jget "$r" .data_key) =~ ^[0-9A-F]{128}$ ]] || fail "decrypt-datakey $ref: $r"
		assert_ok "$(kms_call la/create-datakey-without-plaintext "{\"key_id\":\"$ref\"}")"
		dek=$(printf '%0128X' 77)
		assert_ok "$(kms_call la/encrypt-datakey "$(dek_request "$ref" "$dek")")"
		c=$(jget "$(kms_call la/encrypt-data "{\"key_id\":\"$ref\",\"plain_text\":\"via $ref\"}")" .cipher_text)
		assert_eq "$(jget "$(kms_call la/decrypt-data "{\"cipher_text\":\"$c\"}")" .plain_text)" "via $ref" "data via $ref"
	done
}
check_refs alias/team/app "$urn"
assert_errcode "$(kms_call la/describe-key "{\"key_id\":\"kms:$region:$domain:alias:nope\"}")" KMS.0207
assert_errcode "$(kms_call la/describe-key "{\"key_id\":\"kms:xx-yy:$domain:alias:team/app\"}")" KMS.0207
kms_umount

# The region is configurable: realm and URN follow it.
kms_mount region=eu-nl
kms_login la
info=$(kms_call la/describe-key '{"key_id":"alias/team/app"}')
assert_eq "$(jget "$info" .key_info.realm)" eu-nl "realm with -o region=eu-nl"
assert_eq "$(jget "$info" .key_info.domain_id)" "$domain" "domain_id after a remount"
check_refs "kms:eu-nl:$domain:alias:team/app"
assert_errcode "$(kms_call la/describe-key "{\"key_id\":\"$urn\"}")" KMS.0207
kms_umount
