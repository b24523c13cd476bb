#!/bin/bash
# Roles (issue 3.3): admin may do everything; crypto the data-key and data actions plus
# describe/list; viewer describe/list only. A forbidden action answers KMS.0307 (HTTP 403 in the
# audit line), close() fails with EACCES, and nothing changes.
source "$(dirname "$0")/../lib/common.sh"
kms_setup
kms_token ro >/dev/null
AUDIT=$KMS_WORK/audit.jsonl
kms_mount audit="$AUDIT"
kms_login ro
id=$(kms_create_key ro app)
K=keys/$id
r=$(kms_call "ro/$K/create-datakey")
ct=$(jget "$r" .cipher_text)
dct=$(jget "$(kms_call ro/encrypt-data "{\"key_id\":\"$id\",\"plain_text\":\"role test\"}")" .cipher_text)
dek=$(printf '%064X' 3)$(printf '%064X' 5)

# req ACTION: a request that an admin's token gets answered successfully.
req() {
	case $1 in
	create-key) echo "{\"key_alias\":\"new-$RANDOM$RANDOM\"}" ;;
	decrypt-datakey) echo "{\"key_id\":\"$id\",\"cipher_text\":\"$ct\",\"datakey_cipher_length\":\"64\"}" ;;
	encrypt-datakey) dek_request "$id" "$dek" ;;
	encrypt-data) echo "{\"key_id\":\"$id\",\"plain_text\":\"hello\"}" ;;
	decrypt-data) echo "{\"cipher_text\":\"$dct\"}" ;;
	gen-random) echo '{"random_data_length":"512"}' ;;
	schedule-key-deletion) echo "{\"key_id\":\"$id\",\"pending_days\":\"7\"}" ;;
	update-key-alias) echo "{\"key_id\":\"$id\",\"key_alias\":\"renamed-$RANDOM\"}" ;;
	update-key-description) echo "{\"key_id\":\"$id\",\"key_description\":\"d$RANDOM\"}" ;;
	create-grant) echo "{\"key_id\":\"$id\",\"grantee_principal\":\"bob\",\"operations\":[\"describe-key\"]}" ;;
	list-keys | user-quotas | user-instances | tags | list-retirable-grants) echo '{}' ;;
	resource_instances-action) echo '{"action":"count"}' ;;
	*) echo "{\"key_id\":\"$id\"}" ;;
	esac
}
# call ACTION: project-level file, except the key-only tag files.
file_of() {
	case $1 in tags-action | delete-tag) echo "ro/$K/$1" ;; *) echo "ro/$1" ;; esac
}

allowed() {
	local a r
	for a in "$@"; do
		r=$(kms_call "$(file_of "$a")" "$(req "$a")")
		assert_ok "$r"
		assert_errno close 0
	done
}

forbidden() {
	local a r line
	for a in "$@"; do
		r=$(kms_call "$(file_of "$a")" "$(req "$a")")
		assert_errcode "$r" KMS.0307
		line=$(tail -n 1 "$AUDIT")
		assert_eq "$(jget "$line" '.action + " " + (.status|tostring) + " " + .error_code')" \
			"$a 403 KMS.0307" "audit line of the refused $a"
		kms_write "$(file_of "$a")" "$(req "$a")"
		assert_errno close EACCES
	done
}

state() { jget "$(kms_call "ro/$K/describe-key")" .key_info.key_state; }

# viewer
kms_login ro "$(kms_token ro --user vic --role viewer)"
allowed describe-key list-keys get-key-rotation-status list-grants user-quotas user-instances \
	tags resource_instances-action
forbidden create-key create-datakey create-datakey-without-plaintext encrypt-datakey \
	decrypt-datakey encrypt-data decrypt-data gen-random disable-key schedule-key-deletion \
	update-key-alias update-key-description enable-key-rotation rotate-key create-grant
assert_errcode "$(kms_call "ro/$K/tags" '{"tag":{"key":"a","value":"b"}}')" KMS.0307
assert_errcode "$(kms_call "ro/$K/delete-tag" '{"key":"a"}')" KMS.0307
assert_errcode "$(kms_call "ro/$K/tags-action" '{"action":"create","tags":[{"key":"a","value":"b"}]}')" KMS.0307
assert_eq "$(state)" 2 "key state after the viewer's refused disable/schedule"
assert_eq "$(jget "$(kms_call ro/list-keys '{}')" .total)" 1 "keys after the viewer's refused create-key"

# crypto
kms_login ro "$(kms_token ro --user cris --role crypto)"
allowed describe-key list-keys create-datakey create-datakey-without-plaintext encrypt-datakey \
	decrypt-datakey encrypt-data decrypt-data gen-random get-key-rotation-status
forbidden create-key disable-key schedule-key-deletion update-key-alias update-key-description \
	enable-key-rotation rotate-key create-grant
assert_errcode "$(kms_call "ro/$K/tags" '{"tag":{"key":"a","value":"b"}}')" KMS.0307
assert_eq "$(state)" 2 "key state after crypto's refused disable/schedule"
assert_eq "$(jget "$(kms_call "ro/$K/get-key-rotation-status")" .key_rotation_enabled)" false \
	"rotation after crypto's refused enable-key-rotation"

# admin: all of it
kms_login ro "$(kms_token ro --user ada --role admin)"
allowed describe-key list-keys create-key create-datakey create-datakey-without-plaintext \
	encrypt-datakey decrypt-datakey encrypt-data decrypt-data gen-random update-key-alias \
	update-key-description enable-key-rotation rotate-key create-grant
allowed disable-key enable-key schedule-key-deletion cancel-key-deletion enable-key
assert_ok "$(kms_call "ro/$K/tags" '{"tag":{"key":"a","value":"b"}}')"
assert_ok "$(kms_call "ro/$K/delete-tag" '{"key":"a"}')"
assert_eq "$(state)" 2 "key state after the admin's round trip"
kms_umount
