#!/bin/bash
# kill -9 of the daemon leaves a stale mount ("Transport endpoint is not connected"; over
# io_uring, "Software caused connection abort" for the few milliseconds until the kernel has
# released the dead daemon's rings); starting
# kmsfs again on the same mount point detaches it by itself (no stacked mounts) and serves every
# key and ciphertext made before the crash.
source "$(dirname "$0")/../lib/common.sh"
kms_start_project dk
tok=$KMS_TOKEN
id=$(kms_create_key dk app)
r=$(kms_call dk/create-datakey "{\"key_id\":\"$id\"}")
pt=$(jget "$r" .plain_text)
ct=$(jget "$r" .cipher_text)
last=$(kms_create_key dk last-before-crash)

kms_kill9
kms_assert_stale "ls after kill -9" ls "$KMS_MNT"

kms_mount
assert_eq "$(kms_mount_count "$KMS_MNT")" 1 "mounts on $KMS_MNT after the restart"
kms_login dk "$tok"
[ -d "$KMS_MNT/dk/keys/$last" ] || fail "key created just before the crash is gone"
d=$(kms_call dk/decrypt-datakey "{\"key_id\":\"$id\",\"cipher_text\":\"$ct\",\"datakey_cipher_length\":\"64\"}")
assert_eq "$(jget "$d" .data_key)" "$pt" "DEK after kill -9"
kms_create_key dk after-crash >/dev/null
kms_umount
kms_ctl check >/dev/null || fail "kmsctl check after the crash"
