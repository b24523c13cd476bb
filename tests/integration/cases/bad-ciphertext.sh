#!/bin/bash
# decrypt-datakey of garbage (non-hex, random hex, zeros of the right size) is KMS.2201; every
# single bit flip of a real blob is KMS.2201 or KMS.2203 (never a DEK); a payload change with a
# recomputed trailing SHA-256 is KMS.2203; a wrong datakey_cipher_length is KMS.2204. The daemon
# keeps serving.
source "$(dirname "$0")/../lib/common.sh"
kms_setup
kms_token bc >/dev/null
kms_mount
kms_login bc
id=$(kms_create_key bc app)
r=$(kms_call bc/create-datakey "{\"key_id\":\"$id\"}")
ct=$(jget "$r" .cipher_text)
pt=$(jget "$r" .plain_text)

"$KMS_PY" - "$KMS_MNT/bc/decrypt-datakey" "$id" "$ct" "$pt" <<'PY'
import hashlib, os, sys
sys.path.insert(0, os.path.dirname(os.environ["KMS_IO"]))
import kmsio
f, kid, ct, pt = sys.argv[1:5]
blob = bytes.fromhex(ct)

def dec(hexstr, n="64"):
    return kmsio.call(f, {"key_id": kid, "cipher_text": hexstr, "datakey_cipher_length": n})

def code(r):
    return r.get("error", {}).get("error_code")

assert dec(ct)["data_key"] == pt
for garbage in ("ZZ" * 188, "G" + ct[1:], ct[:-1] + "x", os.urandom(188).hex(), "00" * 188, "ff" * 188):
    r = dec(garbage)
    assert code(r) == "KMS.2201", ("garbage", garbage[:16], r)
for short in (ct[:-2], ct[:8], ct + "00"):
    r = dec(short)
    assert code(r) in ("KMS.2201", "KMS.2204"), ("truncated/extended", len(short), r)
bad = {}
for i in range(len(blob)):
    for bit in (0, 7):
        m = bytearray(blob)
        m[i] ^= 1 << bit
        r = dec(m.hex())
        c = code(r)
        if c not in ("KMS.2201", "KMS.2203"):
            bad[(i, bit)] = r
assert not bad, ("bit flips not refused as 2201/2203", list(bad.items())[:3])
# An attacker who knows the container fixes up the trailing SHA-256: the GCM tag still says no.
for i in (5, 20, 60, 100, 115):
    m = bytearray(blob[:-32])
    m[i] ^= 0x01
    m = bytes(m) + hashlib.sha256(bytes(m)).digest()
    r = dec(m.hex())
    assert code(r) == "KMS.2203", ("payload change with a valid digest", i, r)
r = dec(ct, "32")
assert code(r) == "KMS.2204", ("datakey_cipher_length 32 for a 64-byte DEK", r)
assert dec(ct)["data_key"] == pt
print("# %d tampered blobs refused" % (2 * len(blob)), file=sys.stderr)
PY
kill -0 "$KMS_PID" || fail "daemon died"
kms_umount
