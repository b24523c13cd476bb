#!/bin/bash
# decrypt-datakey of garbage (non-hex, random hex, zeros of the right size) is KMS.2201; every
# single bit flip of a real blob is KMS.2201 or KMS.2203 (never a DEK); a payload change with a
# recomputed trailing SHA-256 is KMS.2203; a wrong datakey_cipher_length is KMS.2204. The daemon
# keeps serving.
source "$(dirname "$0")/../lib/common.sh"
kms_start_project bc
id=$(kms_create_key bc app)
r=$(kms_call bc/create-datakey "{\"key_id\":\"$id\"}")
ct=$(jget "$r" .cipher_text)
pt=$(jget "$r" .plain_text)

kms_py bad_ciphertext "$KMS_MNT/bc/decrypt-datakey" "$id" "$ct" "$pt"
kill -0 "$KMS_PID" || fail "daemon died"
kms_umount
