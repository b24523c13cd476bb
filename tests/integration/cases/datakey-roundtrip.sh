#!/bin/bash
# create-datakey gives an upper-case hex DEK (512 bits by default) and a 376-hex-char
# cipher_text that decrypt-datakey turns back into the same DEK (with its SHA-256);
# create-datakey-without-plaintext gives a cipher_text only, which decrypts too; datakey_length
# 8..8192 (multiple of 8) is honoured, other lengths are refused.
source "$(dirname "$0")/../lib/common.sh"
kms_start_project rt
id=$(kms_create_key rt app)

seen=()
for i in 1 2 3; do
	r=$(kms_call rt/create-datakey "{\"key_id\":\"$id\"}")
	assert_ok "$r"
	assert_eq "$(jget "$r" '[keys[]] | sort | join(",")')" "cipher_text,key_id,plain_text" "create-datakey fields"
	assert_eq "$(jget "$r" .key_id)" "$id" key_id
	pt=$(jget "$r" .plain_text)
	ct=$(jget "$r" .cipher_text)
	[[ $pt =~ ^[0-9A-F]{128}$ ]] || fail "plain_text must be 128 upper-case hex chars: $pt"
	[[ $ct =~ ^[0-9A-Fa-f]{376}$ ]] || fail "cipher_text must be 376 hex chars, got ${#ct}"
	for s in "${seen[@]}"; do [ "$s" != "$pt" ] || fail "create-datakey returned the same DEK twice"; done
	seen+=("$pt")
	d=$(kms_call rt/decrypt-datakey "{\"key_id\":\"$id\",\"cipher_text\":\"$ct\",\"datakey_cipher_length\":\"64\"}")
	assert_eq "$(jget "$d" .data_key)" "$pt" "decrypted DEK"
	assert_eq "$(jget "$d" .datakey_dgst)" "$(sha256_hex "$pt")" "datakey_dgst"
done

r=$(kms_call rt/create-datakey "{\"key_id\":\"$id\",\"datakey_length\":\"512\"}")
assert_eq "$(jget "$r" '.plain_text | length')" 128 "512-bit DEK"

r=$(kms_call rt/create-datakey-without-plaintext "{\"key_id\":\"$id\"}")
assert_eq "$(jget "$r" '[keys[]] | sort | join(",")')" "cipher_text,key_id" "without-plaintext fields"
ct=$(jget "$r" .cipher_text)
[[ $ct =~ ^[0-9A-Fa-f]{376}$ ]] || fail "without-plaintext cipher_text must be 376 hex chars, got ${#ct}"
d=$(kms_call rt/decrypt-datakey "{\"key_id\":\"$id\",\"cipher_text\":\"$ct\",\"datakey_cipher_length\":\"64\"}")
[[ $(jget "$d" .data_key) =~ ^[0-9A-F]{128}$ ]] || fail "decrypt of a plaintext-free DEK: $d"

for bits in 8 256 8192; do
	r=$(kms_call rt/create-datakey "{\"key_id\":\"$id\",\"datakey_length\":\"$bits\"}")
	pt=$(jget "$r" .plain_text)
	assert_eq "${#pt}" $((bits / 4)) "hex length of a $bits-bit DEK"
	d=$(kms_call rt/decrypt-datakey "{\"key_id\":\"$id\",\"cipher_text\":\"$(jget "$r" .cipher_text)\",\"datakey_cipher_length\":\"$((bits / 8))\"}")
	assert_eq "$(jget "$d" .data_key)" "$pt" "round trip of a $bits-bit DEK"
	assert_eq "$(jget "$d" .datakey_length)" $((bits / 8)) "datakey_length of a $bits-bit DEK"
done
for bits in 0 4 12 8200 8193; do
	r=$(kms_call rt/create-datakey "{\"key_id\":\"$id\",\"datakey_length\":\"$bits\"}")
	jget "$r" .error.error_code | grep -Eq '^KMS\.(1901|1903)$' ||
		fail "datakey_length \"$bits\" must be refused with KMS.1901/1903: $r"
done
kms_umount
