#!/bin/bash
# The state directory's file system fills up: key creation fails with the API's I/O error
# (KMS.0102, ENOSPC at close), every existing key keeps working, and once space is freed key
# creation works again. Nothing is lost: kmsctl check passes afterwards.
source "$(dirname "$0")/../lib/common.sh"
kms_setup
mkdir -p "$KMS_STATE"
mount -t tmpfs -o size=1m,mode=0700 kmsfs-fullfs "$KMS_STATE" || skip "cannot mount a tmpfs"
# Our tmpfs goes after the daemon has stopped (kms_cleanup reads the exit status from $?).
trap 'rc=$?; umount -l "$KMS_STATE" 2>/dev/null; (exit $rc); kms_cleanup' EXIT

kms_start_project full
tok=$KMS_TOKEN
first=$(kms_create_key full first)
pad=$(head -c 250 /dev/zero | tr '\0' d)
full=0
for i in $(seq 1 3000); do
	r=$(kms_call full/create-key "{\"key_alias\":\"k$i\",\"key_description\":\"$pad\"}")
	case $r in
	*'"KMS.0102"'*) full=1; break ;;
	*key_info*) ;;
	*) fail "unexpected response while filling the disk: $r" ;;
	esac
done
[ "$full" == 1 ] || fail "the 1 MiB state file system never filled up"
log "file system full after $i keys"
kms_write full/create-key "{\"key_alias\":\"w$i\",\"key_description\":\"$pad\"}" # close() reports it
assert_errno close ENOSPC  # 5xx is EIO, except a full disk: ENOSPC says what to fix
# Everything else keeps working.
r=$(kms_call full/create-datakey "{\"key_id\":\"$first\"}")
assert_ok "$r"
d=$(kms_call full/decrypt-datakey "{\"key_id\":\"$first\",\"cipher_text\":\"$(jget "$r" .cipher_text)\",\"datakey_cipher_length\":\"64\"}")
assert_eq "$(jget "$d" .data_key)" "$(jget "$r" .plain_text)" "decrypt on a full disk"
assert_ok "$(kms_call full/list-keys)"
# Space freed: creation works again, without a restart.
mount -o remount,size=8m "$KMS_STATE"
assert_ok "$(kms_call full/create-key '{"key_alias":"after-space-freed"}')"
kms_umount
kms_ctl check >/dev/null || fail "kmsctl check after the disk was full"
