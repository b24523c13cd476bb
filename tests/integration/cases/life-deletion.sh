#!/bin/bash
# Scheduled deletion really destroys the key once its date has passed (issue 4.1), also when the
# daemon was down at that time: schedule, unmount, move the date into the past in STATE/kms.db,
# remount: the key is gone (ls keys, aliases, describe-key KMS.0207, its ciphertexts KMS.0207, no
# row and no key material left in the database) and `kmsctl check` passes. A date that passes
# while the daemon runs is honoured by its maintenance within seconds. Keys not due survive.
source "$(dirname "$0")/../lib/common.sh"
kms_start_project ld
P=$KMS_MNT/ld
DB=$KMS_STATE/kms.db
sql() { kms_sql "$@"; }

doomed=$(kms_create_key ld doomed)
later=$(kms_create_key ld later)
keep=$(kms_create_key ld keep)
live=$(kms_create_key ld live)
ct=$(jget "$(kms_call "ld/keys/$doomed/create-datakey-without-plaintext" '{}')" .cipher_text)
ctk=$(jget "$(kms_call "ld/keys/$keep/create-datakey" '{}')" .cipher_text)
for k in "$doomed" "$later" "$live"; do
	assert_eq "$(jget "$(kms_call "ld/keys/$k/schedule-key-deletion" '{"pending_days":"7"}')" .key_state)" 4 \
		"schedule $k"
done
kms_umount

[ -f "$DB" ] || fail "no key database at $DB"
assert_eq "$(sql 'SELECT key_state FROM keys WHERE key_id = ?' "$doomed")" 4 "doomed key in the database"
sql 'UPDATE keys SET deletion_ms = 1 WHERE key_id = ?' "$doomed"
kms_mount
kms_login ld
ls "$P/keys" | grep -qx "$doomed" && fail "the key whose deletion date passed is still listed"
ls "$P/aliases" | grep -qx doomed && fail "the deleted key's alias is still listed"
[ -e "$P/keys/$doomed" ] && fail "keys/$doomed still exists"
assert_errcode "$(kms_call ld/describe-key "{\"key_id\":\"$doomed\"}")" KMS.0207
assert_errcode "$(kms_call ld/describe-key '{"key_id":"alias/doomed"}')" KMS.0207
assert_errcode "$(kms_call ld/decrypt-datakey "{\"key_id\":\"$doomed\",\"cipher_text\":\"$ct\",\"datakey_cipher_length\":\"64\"}")" KMS.0207
assert_errcode "$(kms_call ld/cancel-key-deletion "{\"key_id\":\"$doomed\"}")" KMS.0207
# The others survive: not yet due (state 4) and never scheduled (state 2, still decrypts).
assert_eq "$(jget "$(kms_call "ld/keys/$later/describe-key" '{}')" .key_info.key_state)" 4 "key not yet due"
assert_ok "$(kms_call ld/decrypt-datakey "{\"key_id\":\"$keep\",\"cipher_text\":\"$ctk\",\"datakey_cipher_length\":\"64\"}")"
assert_eq "$(jget "$(kms_call ld/list-keys '{}')" .total)" 3 "keys after the deletion"

# While running: the date passes (moved by another process), the daemon's maintenance acts.
kms_destroy_now ld "$live"
ls "$P/keys" | grep -qx "$live" && fail "the key deleted while running is still listed"
assert_eq "$(jget "$(kms_call ld/list-keys '{}')" .total)" 2 "keys after the live deletion"
kms_umount

# Really destroyed: no row, no key material, no grants or tags left; the store is intact.
for k in "$doomed" "$live"; do
	assert_eq "$(sql 'SELECT count(*) FROM keys WHERE key_id = ?' "$k")" 0 "key row of $k"
	assert_eq "$(sql 'SELECT count(*) FROM key_versions WHERE key_id = ?' "$k")" 0 "key material of $k"
done
out=$(kms_ctl check) || fail "kmsctl check after the deletions: $out"
assert_contains "$out" "0 damaged keys" "kmsctl check"
kms_mount
kms_login ld
assert_eq "$(ls "$P/keys" | sort | paste -sd' ')" "$(printf '%s\n' "$later" "$keep" | sort | paste -sd' ')" \
	"keys after a second remount"
kms_umount
