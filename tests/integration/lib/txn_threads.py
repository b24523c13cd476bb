"""txn_threads.py P KEY_ID - the checks of cases/txn-threads.sh.

Eight threads of same-handle transactions on ONE shared path (P/keys/KEY_ID/create-datakey),
each decrypting exactly its own DEKs: no response may belong to another thread."""
import os, sys, threading
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
