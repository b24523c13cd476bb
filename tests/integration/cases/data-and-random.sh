#!/bin/bash
# encrypt-data / decrypt-data round trip small data (Base64 ciphertext, 124 + ceil16(n) bytes,
# key taken from the blob on decrypt, context bound like data keys); gen-random returns fresh
# hex of the asked length.
source "$(dirname "$0")/../lib/common.sh"
kms_start_project dr
id=$(kms_create_key dr app)

r=$(kms_call dr/encrypt-data "{\"key_id\":\"alias/app\",\"plain_text\":\"hello world\"}")
assert_eq "$(jget "$r" .key_id)" "$id" "encrypt-data key_id"
ct=$(jget "$r" .cipher_text)
[[ $ct =~ ^[A-Za-z0-9+/=]+$ ]] || fail "encrypt-data cipher_text is not Base64: $ct"
assert_eq "$(printf '%s' "$ct" | base64 -d | wc -c)" 140 "encrypt-data blob size for 11 bytes"
r=$(kms_call dr/decrypt-data "{\"cipher_text\":\"$ct\"}")
assert_eq "$(jget "$r" .plain_text)" "hello world" "decrypt-data"
assert_eq "$(jget "$r" .key_id)" "$id" "decrypt-data key_id"

r=$(kms_call "dr/keys/$id/encrypt-data" '{"plain_text":"ctx bound","encryption_context":{"a":"b"}}')
ct=$(jget "$r" .cipher_text)
assert_eq "$(jget "$(kms_call dr/decrypt-data "{\"cipher_text\":\"$ct\",\"encryption_context\":{\"a\":\"b\"}}")" .plain_text)" "ctx bound" "decrypt-data with context"
assert_errcode "$(kms_call dr/decrypt-data "{\"cipher_text\":\"$ct\"}")" KMS.2203

a=$(jget "$(kms_call dr/gen-random '{"random_data_length":"512"}')" .random_data)
b=$(jget "$(kms_call dr/gen-random '{"random_data_length":"512"}')" .random_data)
[[ $a =~ ^[0-9A-F]{128}$ ]] || fail "gen-random 512 bits: $a"
[ "$a" != "$b" ] || fail "gen-random returned the same bytes twice"
kms_umount
