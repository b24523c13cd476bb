#!/bin/bash
# dd as the request writer and response reader, with large and tiny block sizes; a refused
# request makes dd fail (it reports close errors).
source "$(dirname "$0")/../lib/common.sh"
kms_start_project dd
id=$(kms_create_key dd app)
P=$KMS_MNT/dd
printf '{"key_id":"%s","datakey_length":"512"}' "$id" >"$KMS_WORK/req.json"

dd if="$KMS_WORK/req.json" of="$P/create-datakey" status=none || fail "dd of= failed"
r=$(dd if="$P/create-datakey" bs=4096 status=none)
kms_record "$r"
assert_eq "$(jget "$r" .key_id)" "$id" "dd bs=4096"
ct=$(jget "$r" .cipher_text)
pt=$(jget "$r" .plain_text)

printf '{"key_id":"%s","cipher_text":"%s","datakey_cipher_length":"64"}' "$id" "$ct" >"$KMS_WORK/dec.json"
dd if="$KMS_WORK/dec.json" of="$P/decrypt-datakey" bs=7 status=none || fail "dd bs=7 failed"
r=$(dd if="$P/decrypt-datakey" bs=5 status=none)
assert_eq "$(jget "$r" .data_key)" "$pt" "dd bs=7 write, bs=5 read"

dd if="$KMS_WORK/dec.json" of="$P/decrypt-datakey" conv=notrunc status=none || fail "dd conv=notrunc"
assert_eq "$(jget "$(dd if="$P/decrypt-datakey" status=none)" .data_key)" "$pt" "dd conv=notrunc"

printf '{"key_id":"%s","cipher_text":"00","datakey_cipher_length":"64"}' "$id" >"$KMS_WORK/bad.json"
rc=0; err=$(dd if="$KMS_WORK/bad.json" of="$P/decrypt-datakey" status=none 2>&1) || rc=$?
[ "$rc" -ne 0 ] || fail "dd of a refused request exited 0"
assert_contains "$err" "Invalid argument" "dd error message"
kms_umount
