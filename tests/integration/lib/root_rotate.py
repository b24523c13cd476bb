"""root_rotate.py - the clients of cases/root-rotate.sh.

  root_rotate.py clients BASE JOURNAL STOP DEKFILE   4 client threads until STOP exists
  root_rotate.py verify BASE JOURNAL [MIN]            every journalled DEK decrypts (at least MIN)

BASE is a project's folder on a mount. The clients make keys now and then, rotate them, and
make and decrypt data keys; every data key a client read goes into its journal (JOURNAL/c<n>)
with its ciphertext, so verify can check that each still decrypts through the daemon: made
before, during and after the root-key rotations.
"""
import glob, json, os, random, sys, threading, time

from crash_clients import call  # one same-handle transaction


def clients(base, journal, stop, dekfile):
    lock = threading.Lock()
    errors = []

    def client(n):
        keys = []
        out = open(os.path.join(journal, f"c{n}"), "a", buffering=1)
        mine = []
        i = 0
        while not os.path.exists(stop):
            i += 1
            try:
                op = random.random()
                # steady load, not a flood: verify reads every data key back, and the exit
                # trap scans files for every one
                time.sleep(float(os.environ.get("ROOT_ROTATE_PAUSE", "0.01")))
                if not keys or op < 0.02:
                    r = call(base, "create-key", {"key_alias": f"c{n}-{i}-{random.randrange(1 << 30)}"})
                    keys.append(r["key_info"]["key_id"])
                elif op < 0.10:
                    r = call(base, "rotate-key", {"key_id": random.choice(keys)})
                elif op < 0.55 or not mine:
                    k = random.choice(keys)
                    r = call(base, "create-datakey", {"key_id": k, "datakey_length": "256"})
                    with lock, open(dekfile, "a") as f:
                        f.write(r["plain_text"] + "\n")
                    e = {"key": k, "dek": r["plain_text"], "ct": r["cipher_text"]}
                    out.write(json.dumps(e) + "\n")
                    mine.append(e)
                else:
                    e = random.choice(mine)
                    r = call(base, "decrypt-datakey", {"key_id": e["key"], "cipher_text": e["ct"],
                                                       "datakey_cipher_length": "32"})
                    if r.get("data_key") != e["dek"]:
                        errors.append(f"during the rotations a data key under {e['key']} "
                                      f"did not decrypt: {r}")
            except (OSError, KeyError, ValueError) as ex:
                errors.append(f"client {n}: {ex!r} {locals().get('r')}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    for e in errors[:10]:
        print(e, file=sys.stderr)
    print(f"# clients: {len(errors)} failed requests", file=sys.stderr)
    return 1 if errors else 0


def verify(base, journal, least="1"):
    entries = [json.loads(l) for f in glob.glob(journal + "/c*") for l in open(f) if l.strip()]
    bad = 0
    for e in entries:
        r = call(base, "decrypt-datakey", {"key_id": e["key"], "cipher_text": e["ct"],
                                           "datakey_cipher_length": "32"})
        if r.get("data_key") != e["dek"]:
            print(f"data key under {e['key']} does not decrypt: {r}", file=sys.stderr)
            bad += 1
    print(f"# verified {len(entries)} data keys", file=sys.stderr)
    return 1 if bad or len(entries) < int(least) else 0


if __name__ == "__main__":
    sys.exit(globals()[sys.argv[1]](*sys.argv[2:]))
