#!/bin/bash
# create-key answers {"key_info":{"key_id","domain_id"}}; describe-key by id, alias/NAME and URN
# returns the key object with string values only (key_state "2"); the new key's dir appears in
# `ls keys/` and describe-key works there without a request body.
source "$(dirname "$0")/../lib/common.sh"
kms_start_project kc

r=$(kms_call kc/create-key '{"key_alias":"app","key_description":"the app key"}')
assert_ok "$r"
printf '%s' "$r" | jq -e '.key_info | (.key_id | type == "string") and (.domain_id | type == "string")' >/dev/null ||
	fail "create-key response shape: $r"
id=$(jget "$r" .key_info.key_id)
dom=$(jget "$r" .key_info.domain_id)
[[ $id =~ ^[0-9a-z]{8}-[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{12}$ ]] || fail "key_id format: $id"
[[ $dom =~ ^[0-9a-fA-F]{32}$ ]] || fail "domain_id format: $dom"
assert_contains " $(ls "$KMS_MNT/kc/keys" | tr '\n' ' ') " " $id " "ls keys/"

check_key_info() { # RESPONSE
	local ki
	printf '%s' "$1" | jq -e '.key_info | type == "object"' >/dev/null || fail "no key_info object: $1"
	ki=$(jget "$1" .key_info)
	printf '%s' "$ki" | jq -e '[.[] | type] | all(. == "string")' >/dev/null ||
		fail "describe-key values must all be strings: $ki"
	for f in key_id domain_id key_alias key_state key_description creation_date key_spec key_usage origin default_key_flag; do
		printf '%s' "$ki" | jq -e --arg f "$f" 'has($f)' >/dev/null || fail "key_info lacks $f: $ki"
	done
	assert_eq "$(jget "$ki" .key_id)" "$id" key_id
	assert_eq "$(jget "$ki" .domain_id)" "$dom" domain_id
	assert_eq "$(jget "$ki" .key_alias)" app key_alias
	assert_eq "$(jget "$ki" .key_description)" "the app key" key_description
	assert_eq "$(jget "$ki" .key_state)" 2 key_state
	assert_eq "$(jget "$ki" .key_spec)" AES_256 key_spec
	assert_eq "$(jget "$ki" .key_usage)" ENCRYPT_DECRYPT key_usage
	assert_eq "$(jget "$ki" .origin)" kms origin
	assert_eq "$(jget "$ki" .default_key_flag)" 0 default_key_flag
	[[ $(jget "$ki" .creation_date) =~ ^[0-9]+$ ]] || fail "creation_date is not a decimal string: $ki"
}
for kid in "$id" alias/app "kms:eu-de:$dom:alias:app"; do
	check_key_info "$(kms_call kc/describe-key "{\"key_id\":\"$kid\"}")"
done
# Key-level describe-key: key_id from the path, empty request or {}.
check_key_info "$(kms_call "kc/keys/$id/describe-key")"
check_key_info "$(kms_call "kc/keys/$id/describe-key" '{}')"
# Shell style.
echo "{\"key_id\":\"$id\"}" >"$KMS_MNT/kc/describe-key"
check_key_info "$(cat "$KMS_MNT/kc/describe-key")"
kms_umount
