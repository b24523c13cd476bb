#!/bin/bash
# Importing key material (kms-api.md 4.1, 4.12, 6.2) through a real mount, the way a user does it
# with openssl: create-key with origin "external" (state 5), get-parameters-for-import, wrap 32
# random bytes with `openssl pkeyutl` (OAEP SHA-256) under the public key, import-key-material,
# then the key works for data keys and data; delete-imported-key-material (state 5, crypto
# refused with KMS.0209), re-import of the same material (old ciphertexts decrypt again), of
# other material (KMS.2606); an import token issued by kmsctl works on the mount (the token is
# self-contained); rotation refused (KMS.0312); material with an expiration time is deleted by
# the daemon's maintenance; everything survives a remount and `kmsctl check`.
source "$(dirname "$0")/../lib/common.sh"
command -v openssl >/dev/null || skip "openssl is not installed"
kms_start_project li
W=$KMS_SCRATCH/import
mkdir -p "$W"

r=$(kms_call li/create-key '{"key_alias":"byok","origin":"external"}')
assert_ok "$r"
id=$(jget "$r" .key_info.key_id)
K=li/keys/$id
d=$(kms_call "$K/describe-key" '{}')
assert_eq "$(jget "$d" '.key_info | "\(.key_state) \(.origin)"')" "5 external" "a new external key"
assert_errcode "$(kms_call "$K/create-datakey" '{}')" KMS.0209
assert_errcode "$(kms_call "$K/enable-key-rotation" '{}')" KMS.0312
assert_errcode "$(kms_call "$K/delete-imported-key-material" '{}')" KMS.2701

# wrap_material TOKEN_JSON MATERIAL_FILE: the encrypted_key_material for the parameters.
wrap_material() {
	jget "$1" .public_key | base64 -d >"$W/pub.der"
	openssl pkeyutl -encrypt -pubin -inkey "$W/pub.der" -keyform DER \
		-pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 \
		-in "$2" -out "$W/wrapped.bin" || fail "openssl pkeyutl -encrypt"
	base64 -w0 "$W/wrapped.bin"
}
# import FILE PARAMS MATERIAL_FILE [EXPIRES_IN_S]: the response of import-key-material. The
# expiration time is taken after the (slow) wrapping, so a busy machine cannot make it past.
import() {
	local wrapped extra=
	wrapped=$(wrap_material "$2" "$3")
	[ -z "${4:-}" ] || extra=",\"expiration_time\":\"$(($(date +%s) + $4))\""
	kms_call "$1" "{\"import_token\":\"$(jget "$2" .import_token)\",\"encrypted_key_material\":\"$wrapped\"$extra}"
}
params() { kms_call "$K/get-parameters-for-import" '{"wrapping_algorithm":"RSAES_OAEP_SHA_256"}'; }

head -c 32 /dev/urandom >"$W/material.bin"
p=$(params)
assert_ok "$p"
assert_eq "$(jget "$p" .key_id)" "$id" "get-parameters-for-import key_id"
assert_eq "$(jget "$p" '.expiration_time | type')" number "expiration_time is a number"
now=$(date +%s)
exp=$(jget "$p" .expiration_time)
((exp >= now + 86400 - 60 && exp <= now + 86400 + 60)) || fail "token expiry $exp is not 24 h from $now"
[[ $(jget "$p" .import_token) =~ ^[0-9a-zA-Z+/=]{200,6144}$ ]] || fail "import_token format"
openssl pkey -pubin -inform DER -in <(jget "$p" .public_key | base64 -d) -noout -text 2>/dev/null |
	grep -q "2048 bit" || fail "public_key is not an RSA-2048 SubjectPublicKeyInfo"
r=$(import "$K/import-key-material" "$p" "$W/material.bin")
assert_eq "$r" "{}" "import-key-material reply"
d=$(kms_call "$K/describe-key" '{}')
assert_eq "$(jget "$d" '.key_info | "\(.key_state) \(.origin)"')" "2 external" "after the import"

dk=$(kms_call "$K/create-datakey" '{"datakey_length":"256"}')
assert_ok "$dk"
ct=$(jget "$dk" .cipher_text)
data=$(jget "$(kms_call "$K/encrypt-data" '{"plain_text":"bring your own key"}')" .cipher_text)
back() {
	assert_eq "$(jget "$(kms_call "$K/decrypt-datakey" "{\"cipher_text\":\"$ct\",\"datakey_cipher_length\":\"32\"}")" .data_key)" \
		"$(jget "$dk" .plain_text)" "$1: decrypt-datakey"
	assert_eq "$(jget "$(kms_call li/decrypt-data "{\"cipher_text\":\"$data\"}")" .plain_text)" \
		"bring your own key" "$1: decrypt-data"
}
back "imported"
assert_errcode "$(kms_call "$K/rotate-key" '{}')" KMS.0312
assert_errcode "$(kms_call "$K/get-parameters-for-import" '{"wrapping_algorithm":"RSAES_OAEP_SHA_256"}')" KMS.0310

# Delete: state 5, nothing decrypts; the same material again: the old ciphertexts decrypt.
assert_eq "$(kms_call li/delete-imported-key-material "{\"key_id\":\"$id\"}")" "{}" "delete reply"
assert_eq "$(jget "$(kms_call "$K/describe-key" '{}')" .key_info.key_state)" 5 "after delete"
assert_errcode "$(kms_call "$K/decrypt-datakey" "{\"cipher_text\":\"$ct\",\"datakey_cipher_length\":\"32\"}")" KMS.0209
assert_errcode "$(kms_call "$K/encrypt-data" '{"plain_text":"x"}')" KMS.0209
head -c 32 /dev/urandom >"$W/other.bin"
p=$(params)
assert_errcode "$(import "$K/import-key-material" "$p" "$W/other.bin")" KMS.2606
# A token issued by kmsctl (another process) is accepted by the daemon.
p=$(kms_ctl call li get-parameters-for-import "{\"key_id\":\"$id\",\"wrapping_algorithm\":\"RSAES_OAEP_SHA_256\"}") ||
	fail "kmsctl get-parameters-for-import: $p"
assert_eq "$(import "$K/import-key-material" "$p" "$W/material.bin")" "{}" "re-import of the same material"
back "re-imported"

# Expiry: material imported with an expiration time a few seconds ahead is deleted by the
# daemon's maintenance (every 10 s).
assert_eq "$(kms_call "$K/delete-imported-key-material" '{}')" "{}" "delete before the expiring import"
p=$(params)
assert_eq "$(import "$K/import-key-material" "$p" "$W/material.bin" 5)" "{}" \
	"import with expiration_time"
assert_eq "$(jget "$(kms_call "$K/describe-key" '{}')" '.key_info.expiration_time | length')" 13 \
	"expiration_time in ms in the key object"
for _ in $(seq 1 80); do # expiry (5 s) + one maintenance period (10 s), with room to spare
	[ "$(jget "$(kms_call "$K/describe-key" '{}')" .key_info.key_state)" == 5 ] && break
	sleep 0.5
done
assert_eq "$(jget "$(kms_call "$K/describe-key" '{}')" .key_info.key_state)" 5 "expired material deleted"
p=$(params)
assert_eq "$(import "$K/import-key-material" "$p" "$W/material.bin")" "{}" "import after expiry"

kms_umount
kms_mount
kms_login li
back "after a remount"
kms_umount
out=$(kms_ctl check) || fail "kmsctl check: $out"
