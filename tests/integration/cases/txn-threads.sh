#!/bin/bash
# Eight python threads run same-handle transactions concurrently on ONE shared file path: each
# creates DEKs on keys/<id>/create-datakey and decrypts exactly its own through decrypt-datakey.
# No response may belong to another thread (distinct DEKs, each unwraps to its own plaintext,
# per-thread encryption_context), over hundreds of transactions.
source "$(dirname "$0")/../lib/common.sh"
kms_setup
kms_token th >/dev/null
kms_mount
kms_login th
id=$(kms_create_key th app)

"$KMS_PY" - "$KMS_MNT/th" "$id" <<'PY'
import os, sys, threading
sys.path.insert(0, os.path.dirname(os.environ["KMS_IO"]))
import kmsio
P, kid = sys.argv[1], sys.argv[2]
create = P + "/keys/" + kid + "/create-datakey"
decrypt = P + "/keys/" + kid + "/decrypt-datakey"
THREADS, ROUNDS = 8, 40
deks, errors, lock = [], [], threading.Lock()

def txn(path, req):  # records the DEKs for the leak scan
    return kmsio.call(path, req, check_close=True)

def worker(t):
    ctx = {"thread": str(t)}
    try:
        for i in range(ROUNDS):
            n = 64 if (t + i) % 2 else 32
            r = txn(create, {"datakey_length": str(8 * n), "encryption_context": ctx})
            pt = r["plain_text"]
            assert len(pt) == 2 * n, ("wrong length: another thread's response?", t, i, r)
            d = txn(decrypt, {"cipher_text": r["cipher_text"], "datakey_cipher_length": str(n),
                              "encryption_context": ctx})
            assert d.get("data_key") == pt, ("cross-talk", t, i, d)
            with lock:
                deks.append(pt)
    except Exception as e:  # noqa: BLE001 - report every thread's failure
        with lock:
            errors.append(repr(e))

ts = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
for t in ts:
    t.start()
for t in ts:
    t.join()
if errors:
    sys.exit("%d thread(s) failed: %s" % (len(errors), errors[:3]))
assert len(deks) == THREADS * ROUNDS, len(deks)
assert len(set(deks)) == len(deks), "a DEK was handed out twice"
print("# %d transactions, no cross-talk" % (2 * len(deks)), file=sys.stderr)
PY
kill -0 "$KMS_PID" || fail "daemon died under concurrency"
kms_umount
