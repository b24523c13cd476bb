#!/bin/bash
# key_id may be the 36-char id, alias/NAME or the URN kms:eu-de:<domain_id>:alias:NAME, in every
# data-key action; responses always carry the 36-char id, and a DEK wrapped under one form
# unwraps under another.
source "$(dirname "$0")/../lib/common.sh"
kms_start_project kf
r=$(kms_call kf/create-key '{"key_alias":"team/app"}')
id=$(jget "$r" .key_info.key_id)
dom=$(jget "$r" .key_info.domain_id)
forms=("$id" "alias/team/app" "kms:eu-de:$dom:alias:team/app")

for enc in "${forms[@]}"; do
	r=$(kms_call kf/create-datakey "{\"key_id\":\"$enc\"}")
	assert_eq "$(jget "$r" .key_id)" "$id" "create-datakey key_id for $enc"
	pt=$(jget "$r" .plain_text)
	ct=$(jget "$r" .cipher_text)
	for dec in "${forms[@]}"; do
		d=$(kms_call kf/decrypt-datakey "{\"key_id\":\"$dec\",\"cipher_text\":\"$ct\",\"datakey_cipher_length\":\"64\"}")
		assert_eq "$(jget "$d" .data_key)" "$pt" "wrapped under $enc, unwrapped under $dec"
	done
	r=$(kms_call kf/encrypt-datakey "$(dek_request "$enc" "$pt")")
	assert_eq "$(jget "$r" .key_id)" "$id" "encrypt-datakey key_id for $enc"
	r=$(kms_call kf/create-datakey-without-plaintext "{\"key_id\":\"$enc\"}")
	assert_eq "$(jget "$r" .key_id)" "$id" "create-datakey-without-plaintext key_id for $enc"
	r=$(kms_call kf/describe-key "{\"key_id\":\"$enc\"}")
	assert_eq "$(jget "$r" .key_info.key_id)" "$id" "describe-key for $enc"
done
kms_umount
