#!/bin/bash
# The ciphertext blob keeps the real service's container (design.md section 4), so tools that
# parse it keep working: u16 LE version 2, u16 LE body length (152 for a 64-byte DEK), payload,
# the 36-byte ASCII key_id, u32 key version, SHA-256 of all preceding bytes; 124 + ceil16(n) bytes.
source "$(dirname "$0")/../lib/common.sh"
kms_start_project bf
id=$(kms_create_key bf app)
for action in create-datakey create-datakey-without-plaintext; do
	ct=$(jget "$(kms_call "bf/keys/$id/$action")" .cipher_text)
	"$KMS_PY" - "$ct" "$id" <<'PY' || fail "blob of $action does not follow the container format"
import hashlib, struct, sys
b = bytes.fromhex(sys.argv[1]); kid = sys.argv[2].encode()
assert len(b) == 188, len(b)
ver, body = struct.unpack("<HH", b[:4])
assert ver == 2, ver
assert body == len(b) - 4 - 32 == 152, body
assert b[-32:] == hashlib.sha256(b[:-32]).digest(), "trailing SHA-256"
assert b[-32 - 4 - 36:-32 - 4] == kid, b[-72:-36]
PY
done
# The size law of the real service: 124 + ceil(n/16)*16 bytes for an n-byte DEK.
for bits in 8 128 256 1000 8192; do
	n=$((bits / 8))
	ct=$(jget "$(kms_call "bf/keys/$id/create-datakey" "{\"datakey_length\":\"$bits\"}")" .cipher_text)
	assert_eq "$((${#ct} / 2))" $((124 + (n + 15) / 16 * 16)) "blob size for a $n-byte DEK"
done
kms_umount
