"""store-scale.py - the clients of cases/store-scale.sh.

  store-scale.py create BASE N THREADS    create N keys in the project folder BASE (THREADS
                                          clients in parallel); any error fails
  store-scale.py touch BASE MNT N LIMIT   N different keys of BASE/keys: a data key made and
                                          unwrapped under each, then every one of them unwrapped
                                          again (the cache has long evicted them); every 25 keys
                                          MNT/.metrics must say kmsfs_key_cache_entries <= LIMIT
"""
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.environ["KMS_IO"]))
import kmsio  # noqa: E402


def create(base, n, threads):
    n, threads = int(n), int(threads)
    errors, made = [], [0]
    lock = threading.Lock()
    nxt = iter(range(n))

    def client():
        while True:
            with lock:
                i = next(nxt, None)
            if i is None or len(errors) > 5:
                return
            try:
                r = kmsio.call(os.path.join(base, "create-key"), {"key_alias": "s%05d" % i},
                               record_deks=False)
            except (OSError, ValueError) as e:
                r = {"error": repr(e)}
            with lock:
                if "error" in r:
                    errors.append((i, r))
                else:
                    made[0] += 1

    t = time.monotonic()
    ts = [threading.Thread(target=client) for _ in range(threads)]
    [x.start() for x in ts]
    [x.join() for x in ts]
    dt = time.monotonic() - t
    print("# %d keys created in %.1f s (%.0f/s, %d clients)" % (made[0], dt, made[0] / dt, threads),
          file=sys.stderr)
    for i, r in errors[:5]:
        print("create-key s%05d: %s" % (i, r), file=sys.stderr)
    return 1 if errors or made[0] != n else 0


def cache_entries(mnt):
    with open(os.path.join(mnt, ".metrics")) as f:
        m = re.search(r"^kmsfs_key_cache_entries (\d+)$", f.read(), re.M)
    if not m:
        raise RuntimeError("no kmsfs_key_cache_entries in .metrics")
    return int(m.group(1))


def touch(base, mnt, n, limit):
    n, limit = int(n), int(limit)
    keys = sorted(os.listdir(os.path.join(base, "keys")))[:n]
    if len(keys) != n:
        print("only %d keys listed" % len(keys), file=sys.stderr)
        return 1
    bad, most, cts = [], 0, {}

    def check_cache():
        nonlocal most
        c = cache_entries(mnt)
        most = max(most, c)
        if c > limit:
            bad.append("key_cache_entries %d > %d" % (c, limit))

    for i, k in enumerate(keys):
        r = kmsio.call(os.path.join(base, "keys", k, "create-datakey"), {"datakey_length": "256"})
        if "error" in r or r.get("key_id") != k:
            bad.append("create-datakey under %s: %s" % (k, r))
            continue
        cts[k] = (r["plain_text"], r["cipher_text"])
        d = kmsio.call(os.path.join(base, "decrypt-datakey"),
                       {"key_id": k, "cipher_text": r["cipher_text"], "datakey_cipher_length": "32"})
        if d.get("data_key") != r["plain_text"]:
            bad.append("decrypt-datakey under %s: %s" % (k, d))
        if i % 25 == 0:
            check_cache()
    for k, (pt, ct) in cts.items():
        d = kmsio.call(os.path.join(base, "decrypt-datakey"),
                       {"key_id": k, "cipher_text": ct, "datakey_cipher_length": "32"})
        if d.get("data_key") != pt:
            bad.append("decrypt-datakey again under %s: %s" % (k, d))
    check_cache()
    for b in bad[:10]:
        print("BAD: " + b, file=sys.stderr)
    print("# %d keys touched twice, at most %d cached (limit %d); %d problems" % (
        len(keys), most, limit, len(bad)), file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(globals()[sys.argv[1]](*sys.argv[2:]))
