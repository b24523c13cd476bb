"""crash_clients.py - the clients of cases/crash-consistency.sh.

  crash_clients.py clients BASE JOURNAL STOP SEED DEKFILE   4 client threads until STOP exists
  crash_clients.py verify BASE JOURNAL                      every journalled key and DEK is there

BASE is the project's folder on the mount. Every success a client *read* goes into its journal
(JOURNAL/c<n>) before its next request; verify checks them after the daemon's crashes.
"""
import glob, json, os, random, sys, threading


def call(base, action, req):
    """One same-handle transaction (write, pread at 0); close() errors are ignored (the answer
    says it)."""
    fd = os.open(os.path.join(base, action), os.O_RDWR)
    try:
        os.write(fd, json.dumps(req).encode())
        data = os.pread(fd, 1 << 20, 0)
    finally:
        try:
            os.close(fd)
        except OSError:
            pass
    return json.loads(data)


def call_ok(base, action, req):
    """call(), and RuntimeError(code) when the answer is an API error."""
    r = call(base, action, req)
    if "error" in r:
        raise RuntimeError(r["error"]["error_code"])
    return r


def clients(base, journal, stop, seed, dekfile):
    lock = threading.Lock()

    def client(n):
        keys = [seed]
        out = open(os.path.join(journal, f"c{n}"), "a", buffering=1)
        i = 0
        while not os.path.exists(stop):
            i += 1
            try:
                op = random.random()
                if op < 0.15:
                    r = call_ok(base, "create-key",
                                {"key_alias": f"c{n}-{i}-{random.randrange(1 << 30)}"})
                    keys.append(r["key_info"]["key_id"])
                    out.write(json.dumps({"key": keys[-1]}) + "\n")
                elif op < 0.25:
                    k = random.choice(keys)
                    try:
                        call_ok(base, "disable-key", {"key_id": k})
                    finally:
                        call_ok(base, "enable-key", {"key_id": k})
                elif op < 0.35:
                    call_ok(base, "rotate-key", {"key_id": random.choice(keys)})
                else:
                    k = random.choice(keys)
                    r = call_ok(base, "create-datakey", {"key_id": k, "datakey_length": "256"})
                    with lock, open(dekfile, "a") as f:
                        f.write(r["plain_text"] + "\n")
                    out.write(json.dumps({"key": k, "dek": r["plain_text"],
                                          "ct": r["cipher_text"]}) + "\n")
            except (OSError, RuntimeError, ValueError):
                pass  # the daemon is down or the key is in a transient state: try something else

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    return 0


def verify(base, journal):
    """Leave every key enabled (a crash may hit between disable and enable), then check."""
    entries = [json.loads(l) for f in glob.glob(journal + "/c*") for l in open(f) if l.strip()]
    keys = {e["key"] for e in entries}
    bad = 0
    for k in keys:
        call(base, "enable-key", {"key_id": k})
        r = call(base, "describe-key", {"key_id": k})
        if "error" in r:
            print(f"key {k} lost: {r}", file=sys.stderr)
            bad += 1
    deks = [e for e in entries if "dek" in e]
    for e in deks:
        r = call(base, "decrypt-datakey", {"key_id": e["key"], "cipher_text": e["ct"],
                                           "datakey_cipher_length": str(len(e["dek"]) // 2)})
        if r.get("data_key") != e["dek"]:
            print(f"data key under {e['key']} does not decrypt: {r}", file=sys.stderr)
            bad += 1
    print(f"# verified {len(keys)} keys and {len(deks)} data keys", file=sys.stderr)
    return 1 if bad or not deks else 0


if __name__ == "__main__":
    sys.exit(globals()[sys.argv[1]](*sys.argv[2:]))
