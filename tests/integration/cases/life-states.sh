#!/bin/bash
# The key state machine (issue 4.1, kms-api.md 4.4-4.6, 6.2), through <P>/<action> with key_id and
# through keys/<id>/<action> alike: disable-key 2->3 (KMS.1301 otherwise), enable-key 3->2
# (KMS.1201 otherwise), schedule-key-deletion ->4 with pending_days 7..1096 (KMS.1401; flat reply;
# KMS.1402 when already pending), cancel-key-deletion 4->3 (KMS.1501 otherwise); crypto on a
# disabled key KMS.0209, on a key pending deletion KMS.0210; every error is EINVAL at close.
source "$(dirname "$0")/../lib/common.sh"
kms_start_project ls
P=$KMS_MNT/ls

# act FORM KEY ACTION [JSON-FIELDS]: FORM "project" sends key_id in the body to <P>/ACTION,
# FORM "keydir" writes only the fields to keys/KEY/ACTION.
act() {
	local form=$1 key=$2 action=$3 fields=${4:-}
	if [ "$form" == project ]; then
		kms_call "ls/$action" "{\"key_id\":\"$key\"${fields:+,$fields}}"
	else
		kms_call "ls/keys/$key/$action" "{$fields}"
	fi
}
# refused FORM KEY ACTION CODE [FIELDS]: the API error, and EINVAL from close() of a writer.
refused() {
	assert_errcode "$(act "$1" "$2" "$3" "${5:-}")" "$4"
	if [ "$1" == project ]; then
		kms_write "ls/$3" "{\"key_id\":\"$2\"${5:+,$5}}"
	else
		kms_write "ls/keys/$2/$3" "{${5:-}}"
	fi
	assert_errno close EINVAL
}
state() { jget "$(kms_call "ls/keys/$1/describe-key" "{}")" .key_info.key_state; }

walk() {
	local form=$1 key r ct dct now sched
	key=$(kms_create_key ls "walk-$form")
	ct=$(jget "$(kms_call "ls/keys/$key/create-datakey-without-plaintext")" .cipher_text)
	dct=$(jget "$(kms_call ls/encrypt-data "{\"key_id\":\"$key\",\"plain_text\":\"x\"}")" .cipher_text)
	assert_eq "$(state "$key")" 2 "$form: new key"
	refused "$form" "$key" enable-key KMS.1201

	r=$(act "$form" "$key" disable-key)
	assert_eq "$(jget "$r" '.key_info | "\(.key_id) \(.key_state)"')" "$key 3" "$form: disable-key reply"
	assert_eq "$(state "$key")" 3 "$form: after disable"
	refused "$form" "$key" disable-key KMS.1301
	refused "$form" "$key" create-datakey KMS.0209
	refused "$form" "$key" create-datakey-without-plaintext KMS.0209
	refused "$form" "$key" encrypt-datakey KMS.0209 \
		"$(dek_request "$key" "$(printf '%0128X' 9)" | sed 's/^{"key_id":"[^"]*",//; s/}$//')"
	refused "$form" "$key" decrypt-datakey KMS.0209 "\"cipher_text\":\"$ct\",\"datakey_cipher_length\":\"64\""
	refused "$form" "$key" encrypt-data KMS.0209 '"plain_text":"x"'
	assert_errcode "$(kms_call ls/decrypt-data "{\"cipher_text\":\"$dct\"}")" KMS.0209
	r=$(act "$form" "$key" enable-key)
	assert_eq "$(jget "$r" '.key_info | "\(.key_id) \(.key_state)"')" "$key 2" "$form: enable-key reply"
	assert_ok "$(kms_call "ls/keys/$key/decrypt-datakey" "{\"cipher_text\":\"$ct\",\"datakey_cipher_length\":\"64\"}")"

	# schedule-key-deletion: bounds, flat reply, date, KMS.1402
	for d in 6 1097 abc; do
		refused "$form" "$key" schedule-key-deletion KMS.1401 "\"pending_days\":\"$d\""
	done
	assert_eq "$(state "$key")" 2 "$form: after refused schedules"
	now=$(($(date +%s%N) / 1000000))
	r=$(act "$form" "$key" schedule-key-deletion '"pending_days":"7"')
	assert_eq "$(jget "$r" 'keys | sort | join(",")')" "key_id,key_state" "$form: flat schedule reply"
	assert_eq "$(jget "$r" '"\(.key_id) \(.key_state)"')" "$key 4" "$form: schedule reply"
	assert_eq "$(state "$key")" 4 "$form: after schedule"
	sched=$(jget "$(kms_call "ls/keys/$key/describe-key")" .key_info.scheduled_deletion_date)
	((sched >= now + 7 * 86400000 - 5000 && sched <= now + 7 * 86400000 + 5000)) ||
		fail "$form: scheduled_deletion_date $sched is not 7 days after $now"
	refused "$form" "$key" schedule-key-deletion KMS.1402 '"pending_days":"7"'
	refused "$form" "$key" create-datakey KMS.0210
	refused "$form" "$key" decrypt-datakey KMS.0210 "\"cipher_text\":\"$ct\",\"datakey_cipher_length\":\"64\""
	refused "$form" "$key" encrypt-data KMS.0210 '"plain_text":"x"'
	assert_errcode "$(kms_call ls/decrypt-data "{\"cipher_text\":\"$dct\"}")" KMS.0210
	refused "$form" "$key" update-key-description KMS.0210 '"key_description":"no"'
	assert_ok "$(act "$form" "$key" describe-key)"

	# cancel: back to 3 (not 2), flat reply; only from 4
	r=$(act "$form" "$key" cancel-key-deletion)
	assert_eq "$(jget "$r" 'keys | sort | join(",")')" "key_id,key_state" "$form: flat cancel reply"
	assert_eq "$(jget "$r" '"\(.key_id) \(.key_state)"')" "$key 3" "$form: cancel reply"
	assert_eq "$(jget "$(kms_call "ls/keys/$key/describe-key")" .key_info.scheduled_deletion_date)" "" \
		"$form: scheduled_deletion_date after cancel"
	refused "$form" "$key" cancel-key-deletion KMS.1501
	refused "$form" "$key" create-datakey KMS.0209
	# schedule from disabled, with the upper bound; cancel; enable; usable again
	r=$(act "$form" "$key" schedule-key-deletion '"pending_days":"1096"')
	assert_eq "$(jget "$r" .key_state)" 4 "$form: schedule from disabled"
	assert_eq "$(jget "$(act "$form" "$key" cancel-key-deletion)" .key_state)" 3 "$form: second cancel"
	assert_eq "$(jget "$(act "$form" "$key" enable-key)" .key_info.key_state)" 2 "$form: enable after cancel"
	refused "$form" "$key" cancel-key-deletion KMS.1501
	assert_ok "$(kms_call "ls/keys/$key/create-datakey-without-plaintext" "{}")"
}
walk project
walk keydir

# The shell way inside a key folder: echo > f; cat f.
id=$(kms_create_key ls shell)
echo '{}' >"$P/keys/$id/disable-key"
assert_eq "$(jget "$(cat "$P/keys/$id/disable-key")" .key_info.key_state)" 3 "echo > disable-key"
echo '{"pending_days":"30"}' >"$P/keys/$id/schedule-key-deletion"
assert_eq "$(jget "$(cat "$P/keys/$id/schedule-key-deletion")" .key_state)" 4 "echo > schedule-key-deletion"
assert_errcode "$(cat "$P/keys/$id/create-datakey")" KMS.0210
assert_eq "$(jget "$(kms_call ls/list-keys '{"key_state":"4"}')" '.keys | join(" ")')" "$id" "list-keys key_state 4"
kms_umount
