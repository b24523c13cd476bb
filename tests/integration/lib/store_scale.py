"""store_scale.py - the clients of cases/store-scale.sh.

  store_scale.py create BASE N THREADS    create N keys in the project folder BASE (THREADS
                                          clients in parallel); any error fails
  store_scale.py touch BASE MNT N LIMIT   N different keys of BASE/keys: data encrypted and
                                          decrypted under each, then every ciphertext decrypted
                                          again (the cache has long evicted them); every 25 keys
                                          MNT/.metrics must say kmsfs_key_cache_entries <= LIMIT
(encrypt-data, not data keys: every DEK a case sees is searched for in the files at its end,
which would take long for thousands of them.)
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


def metric(mnt, name):
    with open(os.path.join(mnt, ".metrics")) as f:
        m = re.search(r"^kmsfs_%s (\d+)$" % name, f.read(), re.M)
    if not m:
        raise RuntimeError("no kmsfs_%s in .metrics" % name)
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
        c = metric(mnt, "key_cache_entries")
        most = max(most, c)
        if c > limit:
            bad.append("key_cache_entries %d > %d" % (c, limit))

    def decrypt(k, pt, ct, what):
        d = kmsio.call(os.path.join(base, "decrypt-data"), {"cipher_text": ct})
        if d.get("plain_text") != pt or d.get("key_id") != k:
            bad.append("%s under %s: %s" % (what, k, d))

    for i, k in enumerate(keys):
        pt = "data under %s" % k
        r = kmsio.call(os.path.join(base, "keys", k, "encrypt-data"), {"plain_text": pt})
        if "error" in r or r.get("key_id") != k:
            bad.append("encrypt-data under %s: %s" % (k, r))
            continue
        cts[k] = (pt, r["cipher_text"])
        decrypt(k, pt, r["cipher_text"], "decrypt-data")
        if i % 25 == 0:
            check_cache()
    misses = metric(mnt, "key_cache_misses_total")
    for k, (pt, ct) in cts.items():
        decrypt(k, pt, ct, "decrypt-data again")
    check_cache()
    # The second pass found (nearly) none of them cached: each was loaded again.
    misses = metric(mnt, "key_cache_misses_total") - misses
    if misses < n - limit:
        bad.append("%d cache misses in the second pass over %d keys (cache of %d)" % (
            misses, n, limit))
    for b in bad[:10]:
        print("BAD: " + b, file=sys.stderr)
    print("# %d keys touched twice, at most %d cached (limit %d), %d loaded again; %d problems" % (
        len(keys), most, limit, misses, len(bad)), file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(globals()[sys.argv[1]](*sys.argv[2:]))
