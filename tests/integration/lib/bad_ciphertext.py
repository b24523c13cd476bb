"""bad_ciphertext.py FILE KEY_ID CIPHER_TEXT DEK - the checks of cases/bad-ciphertext.sh.

decrypt-datakey (FILE) of garbage, of every single bit flip of a real blob and of a payload
change with a recomputed digest is refused (KMS.2201/2203/2204), never a DEK."""
import hashlib, os, sys
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
