#!/bin/bash
# A missing, wrong or world-readable root key and a damaged key database make kmsfs refuse to
# start with a message saying what is wrong and how to fix it; it never mounts, and never makes a
# new root key over sealed keys. Restoring the files brings every key back.
source "$(dirname "$0")/../lib/common.sh"
kms_start_project fs
tok=$KMS_TOKEN
id=$(kms_create_key fs keep)
r=$(kms_call fs/create-datakey "{\"key_id\":\"$id\"}")
kms_umount
cp -a "$KMS_STATE/root.key" "$KMS_WORK/root.key.bak"
cp -a "$KMS_STATE/kms.db" "$KMS_WORK/kms.db.bak"

# refuse EXPECTED-WORDS: kmsfs must exit non-zero, say EXPECTED-WORDS, and mount nothing.
refuse() {
	local out rc=0
	out=$("$KMSFS" "$KMS_MNT" -o "state=$KMS_STATE" -f 2>&1) || rc=$?
	[ "$rc" -ne 0 ] || fail "kmsfs started although $2"
	assert_contains "$out" "$1" "message when $2"
	assert_eq "$(kms_mount_count "$KMS_MNT")" 0 "mounts when $2"
}

rm "$KMS_STATE/root.key"
refuse "restore root.key" "the root key is missing"
[ ! -e "$KMS_STATE/root.key" ] || fail "kmsfs created a new root key over sealed keys"

head -c 32 /dev/urandom >"$KMS_STATE/root.key"
chmod 600 "$KMS_STATE/root.key"
refuse "does not match" "the root key is another one"

cp -a "$KMS_WORK/root.key.bak" "$KMS_STATE/root.key"
chmod 644 "$KMS_STATE/root.key"
refuse "chmod 600" "the root key is readable by others"
chmod 600 "$KMS_STATE/root.key"

dd if=/dev/urandom of="$KMS_STATE/kms.db" bs=1024 seek=1 count=16 conv=notrunc 2>/dev/null
refuse "unusable" "the key database is damaged"
"$KMSCTL" --state "$KMS_STATE" check >/dev/null 2>&1 && fail "kmsctl check passed a damaged database"

cp -a "$KMS_WORK/kms.db.bak" "$KMS_STATE/kms.db"
rm -f "$KMS_STATE/kms.db-wal" "$KMS_STATE/kms.db-shm"
kms_mount
kms_login fs "$tok"
d=$(kms_call fs/decrypt-datakey "{\"key_id\":\"$id\",\"cipher_text\":\"$(jget "$r" .cipher_text)\",\"datakey_cipher_length\":\"64\"}")
assert_eq "$(jget "$d" .data_key)" "$(jget "$r" .plain_text)" "DEK after restoring the files"
kms_umount
kms_ctl check >/dev/null || fail "kmsctl check after restoring"
