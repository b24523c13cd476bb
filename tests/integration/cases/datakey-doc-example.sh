#!/bin/bash
# The API documentation's example, as a shell user types it: encrypt-datakey of 64 zero bytes
# (plain_text = DEK || SHA-256(DEK), datakey_plain_length "64") gives a 376-hex-char cipher_text
# and datakey_length "64"; decrypt-datakey gives back 128 zeros with the documented datakey_dgst.
source "$(dirname "$0")/../lib/common.sh"
kms_start_project doc
id=$(kms_create_key doc app)
P=$KMS_MNT/doc
zeros=$(printf '0%.0s' $(seq 128))
dgst=F5A5FD42D16A20302798EF6ED309979B43003D2320D9F0E8EA9831A92759FB4B
assert_eq "$(sha256_hex "$zeros")" "$dgst" "SHA-256 of 64 zero bytes (test sanity)"

echo "{\"key_id\":\"$id\",\"plain_text\":\"$zeros$dgst\",\"datakey_plain_length\":\"64\"}" >"$P/encrypt-datakey"
r=$(cat "$P/encrypt-datakey")
assert_ok "$r"
assert_eq "$(jget "$r" .key_id)" "$id" "encrypt-datakey key_id"
assert_eq "$(jget "$r" .datakey_length)" 64 "encrypt-datakey datakey_length"
ct=$(jget "$r" .cipher_text)
[[ $ct =~ ^[0-9A-Fa-f]{376}$ ]] || fail "cipher_text must be 376 hex chars, got ${#ct}: $ct"
assert_eq "$(jget "$r" '[keys[]] | sort | join(",")')" "cipher_text,datakey_length,key_id" "encrypt-datakey fields"

# Lower-case input hex is accepted too (the real service does).
r2=$(kms_call doc/encrypt-datakey "{\"key_id\":\"$id\",\"plain_text\":\"$zeros${dgst,,}\",\"datakey_plain_length\":\"64\"}")
ct2=$(jget "$r2" .cipher_text)
[ "$ct2" != "$ct" ] || fail "two encryptions of one DEK gave the same cipher_text"

for c in "$ct" "$ct2"; do
	echo "{\"key_id\":\"$id\",\"cipher_text\":\"$c\",\"datakey_cipher_length\":\"64\"}" >"$P/decrypt-datakey"
	r=$(cat "$P/decrypt-datakey")
	assert_ok "$r"
	assert_eq "$(jget "$r" .data_key)" "$zeros" "data_key"
	assert_eq "$(jget "$r" .datakey_length)" 64 "decrypt datakey_length"
	assert_eq "$(jget "$r" .datakey_dgst)" "$dgst" "datakey_dgst"
	assert_eq "$(jget "$r" '[keys[]] | sort | join(",")')" "data_key,datakey_dgst,datakey_length" "decrypt-datakey fields"
done
kms_umount
