#!/bin/bash
# A well-formed key_id of no key (id, alias/NAME or URN) answers KMS.0207 and close() ENOENT;
# a malformed key_id answers KMS.0205 (EINVAL); an unknown keys/<id>/ dir is ENOENT on open.
source "$(dirname "$0")/../lib/common.sh"
kms_start_project uk
id=$(kms_create_key uk app)
dom=$(jget "$(kms_call uk/describe-key "{\"key_id\":\"$id\"}")" .key_info.domain_id)
nokey=$(uuidgen 2>/dev/null || "$KMS_PY" -c 'import uuid; print(uuid.uuid4())')

for kid in "$nokey" alias/nope "kms:eu-de:$dom:alias:nope"; do
	for action in create-datakey create-datakey-without-plaintext describe-key; do
		assert_errcode "$(kms_call "uk/$action" "{\"key_id\":\"$kid\"}")" KMS.0207
	done
	assert_errcode "$(kms_call uk/encrypt-datakey "$(dek_request "$kid" "$(printf 'ab%.0s' $(seq 64))")")" KMS.0207
	kms_write uk/create-datakey "{\"key_id\":\"$kid\"}"
	assert_errno close ENOENT
done
rc=0; err=$(echo "{\"key_id\":\"$nokey\"}" | cat 2>&1 >"$KMS_MNT/uk/describe-key") || rc=$?
[ "$rc" -ne 0 ] || fail "cat > describe-key of an unknown key succeeded"
assert_contains "$err" "No such file or directory" "close error of an unknown key"

for kid in not-a-key "${id}x" "${id^^}" 1234; do
	assert_errcode "$(kms_call uk/create-datakey "{\"key_id\":\"$kid\"}")" KMS.0205
done
kms_write uk/create-datakey '{"key_id":"not-a-key"}'
assert_errno close EINVAL

kms_call "uk/keys/$nokey/create-datakey" '{}' >/dev/null
assert_errno open ENOENT
kms_umount
