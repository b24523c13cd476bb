#!/bin/bash
# Rotation (issue 4.3, kms-api.md 4.8): get-key-rotation-status fields and types; enable/disable-
# key-rotation (KMS.0313 when not enabled); update-key-rotation-interval 30..365 (KMS.3001;
# KMS.0313 when rotation is off); the rotate-key extension (and rotate-on-demand, the Huawei SDK's
# name for it, through echo and cat) increments number_of_rotations; every
# ciphertext made before any rotation still decrypts and new ones carry the new version (u32 LE
# just before the trailing SHA-256: DEK blob bytes 152..155); automatic rotation when the interval
# has passed (moved into the past in STATE/kms.db while unmounted) by the daemon's maintenance,
# not for keys without rotation or disabled keys.
source "$(dirname "$0")/../lib/common.sh"
kms_start_project lr
DB=$KMS_STATE/kms.db
id=$(kms_create_key lr app)
norot=$(kms_create_key lr no-rotation)
off=$(kms_create_key lr disabled-key)
K=lr/keys/$id

status() { kms_call "lr/keys/$1/get-key-rotation-status" '{}'; }
# blob_version HEX|BASE64: the key version a ciphertext names.
blob_version() {
	"$KMS_PY" -c 'import base64, re, struct, sys
s = sys.argv[1]
b = bytes.fromhex(s) if re.fullmatch("[0-9A-Fa-f]+", s) else base64.b64decode(s)
print(struct.unpack("<I", b[-36:-32])[0])' "$1"
}
cts=() datas=() plains=() deks=()
# new_ciphertexts VERSION: make a DEK and a data ciphertext, check they carry VERSION, keep them.
new_ciphertexts() {
	local r ct d
	r=$(kms_call "$K/create-datakey" '{}')
	ct=$(jget "$r" .cipher_text)
	assert_eq "$("$KMS_PY" -c 'import struct, sys; print(struct.unpack("<I", bytes.fromhex(sys.argv[1])[152:156])[0])' "$ct")" \
		"$1" "version in DEK blob bytes 152..155"
	d=$(jget "$(kms_call "$K/encrypt-data" "{\"plain_text\":\"data under version $1\"}")" .cipher_text)
	assert_eq "$(blob_version "$d")" "$1" "version in the encrypt-data blob"
	cts+=("$ct") deks+=("$(jget "$r" .plain_text)") datas+=("$d") plains+=("data under version $1")
}
# all_decrypt: every ciphertext made so far still decrypts to what it was made from.
all_decrypt() {
	local i
	for i in "${!cts[@]}"; do
		assert_eq "$(jget "$(kms_call "$K/decrypt-datakey" "{\"cipher_text\":\"${cts[i]}\",\"datakey_cipher_length\":\"64\"}")" .data_key)" \
			"${deks[i]}" "DEK $i after rotation"
		assert_eq "$(jget "$(kms_call lr/decrypt-data "{\"cipher_text\":\"${datas[i]}\"}")" .plain_text)" \
			"${plains[i]}" "data $i after rotation"
	done
}

s=$(status "$id")
assert_eq "$(jget "$s" '[.key_rotation_enabled, .rotation_interval, .last_rotation_time, .number_of_rotations] | map(type) | join(" ")')" \
	"boolean number string number" "get-key-rotation-status types"
assert_eq "$(jget "$s" '"\(.key_rotation_enabled) \(.rotation_interval) \(.number_of_rotations)"')" "false 365 0" \
	"status of a new key"
assert_errcode "$(kms_call "$K/update-key-rotation-interval" '{"rotation_interval":90}')" KMS.0313
assert_errcode "$(kms_call "$K/disable-key-rotation" '{}')" KMS.0313
kms_write "$K/disable-key-rotation" '{}'
assert_errno close EINVAL

assert_eq "$(kms_call lr/enable-key-rotation "{\"key_id\":\"$id\"}")" "{}" "enable-key-rotation reply"
assert_eq "$(jget "$(status "$id")" .key_rotation_enabled)" true "rotation enabled"
for bad in 29 366 0 -1 '"abc"' '""' 30.5 true; do
	assert_errcode "$(kms_call "$K/update-key-rotation-interval" "{\"rotation_interval\":$bad}")" KMS.3001
done
kms_write "$K/update-key-rotation-interval" '{"rotation_interval":29}'
assert_errno close EINVAL
assert_errcode "$(kms_call "$K/update-key-rotation-interval" '{}')" KMS.0204
for good in 30 365 '"90"'; do
	assert_ok "$(kms_call "$K/update-key-rotation-interval" "{\"rotation_interval\":$good}")"
	assert_eq "$(jget "$(status "$id")" .rotation_interval)" "${good//\"/}" "interval after setting $good"
done

# On-demand rotations; old ciphertexts keep decrypting, new ones name the new version.
new_ciphertexts 0
for v in 1 2; do
	before=$(($(date +%s%N) / 1000000))
	r=$(kms_call "$K/rotate-key" '{}')
	assert_eq "$(jget "$r" '"\(.key_id) \(.key_version) \(.number_of_rotations)"')" "$id $v $v" "rotate-key reply"
	s=$(status "$id")
	assert_eq "$(jget "$s" .number_of_rotations)" "$v" "number_of_rotations"
	last=$(jget "$s" .last_rotation_time)
	[[ $last =~ ^[0-9]{13}$ ]] && ((last >= before - 1000 && last <= before + 60000)) ||
		fail "last_rotation_time '$last' (rotated at $before)"
	new_ciphertexts "$v"
	all_decrypt
done
assert_eq "$(jget "$(kms_call "$K/describe-key" '{}')" .key_info.key_id)" "$id" "key id unchanged by rotation"

# rotate-on-demand, the current Huawei SDK's name for rotate-key ({"key_id"} -> {"key_id"}), in
# the project folder and the key folder, with echo and cat; each adds a version.
assert_contains " $(ls "$KMS_MNT/lr" | tr '\n' ' ') " " rotate-on-demand " "ls of the project"
assert_contains " $(ls "$KMS_MNT/$K" | tr '\n' ' ') " " rotate-on-demand " "ls of the key folder"
echo "{\"key_id\":\"$id\"}" >"$KMS_MNT/lr/rotate-on-demand" || fail "echo > lr/rotate-on-demand"
assert_eq "$(cat "$KMS_MNT/lr/rotate-on-demand")" "{\"key_id\":\"$id\"}" "rotate-on-demand reply"
assert_eq "$(jget "$(status "$id")" .number_of_rotations)" 3 "rotations after rotate-on-demand"
new_ciphertexts 3
echo '{}' >"$KMS_MNT/$K/rotate-on-demand" || fail "echo > $K/rotate-on-demand"
assert_eq "$(cat "$KMS_MNT/$K/rotate-on-demand")" "{\"key_id\":\"$id\"}" "rotate-on-demand in the key folder"
new_ciphertexts 4
all_decrypt

# disable-key-rotation; then the interval cannot be changed; rotate-key on a disabled key: 0209
assert_eq "$(kms_call "$K/disable-key-rotation" '{}')" "{}" "disable-key-rotation reply"
assert_eq "$(jget "$(status "$id")" .key_rotation_enabled)" false "rotation disabled"
assert_errcode "$(kms_call "$K/update-key-rotation-interval" '{"rotation_interval":60}')" KMS.0313
assert_errcode "$(kms_call "$K/disable-key-rotation" '{}')" KMS.0313
assert_ok "$(kms_call "$K/enable-key-rotation" '{}')"
assert_ok "$(kms_call "lr/keys/$off/enable-key-rotation" '{}')"
assert_ok "$(kms_call "lr/keys/$off/disable-key" '{}')"
assert_errcode "$(kms_call "lr/keys/$off/rotate-key" '{}')" KMS.0209
assert_errcode "$(kms_call "lr/keys/$off/rotate-on-demand" '{}')" KMS.0209
kms_umount

# Automatic rotation after downtime: the interval passed long ago.
"$KMS_PY" -c 'import sqlite3, sys
c = sqlite3.connect(sys.argv[1], timeout=10)
c.executemany("UPDATE keys SET last_rotation_ms = 1, creation_ms = 1 WHERE key_id = ?", [(k,) for k in sys.argv[2:]])
assert c.total_changes == 3, c.total_changes
c.commit()' "$DB" "$id" "$norot" "$off" || fail "could not move the rotation dates"
kms_mount
kms_login lr
for ((i = 0; i < 150; i++)); do
	[ "$(jget "$(status "$id")" .number_of_rotations)" -gt 4 ] && break
	sleep 0.1
done
assert_eq "$(jget "$(status "$id")" .number_of_rotations)" 5 "rotations after the interval passed"
assert_eq "$(jget "$(status "$norot")" .number_of_rotations)" 0 "a key without rotation"
assert_eq "$(jget "$(status "$off")" .number_of_rotations)" 0 "a disabled key"
new_ciphertexts 5
all_decrypt
kms_umount
out=$(kms_ctl check) || fail "kmsctl check: $out"
