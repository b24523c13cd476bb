"""backup_restore.py - the clients and checks of cases/backup-restore.sh.

  backup_restore.py load BASE JOURNAL STOP KEYS...    4 client threads until STOP exists: each
                                                      makes DEKs (create-datakey) under random
                                                      keys, creates keys now and then (15 at
                                                      most) and rotates them; every DEK it got
                                                      back goes
                                                      into JOURNAL/c<n> with the time it got it
  backup_restore.py verify BASE JOURNAL BEFORE        every DEK journalled before BEFORE (unix
                                                      seconds) decrypts through the mount BASE
                                                      to the same plaintext; prints the count
  backup_restore.py count JOURNAL                     DEKs journalled in all
  backup_restore.py keys DB                           rows of the keys table of SQLite file DB

BASE is the project's folder on a mount. The DEKs are recorded for the harness's leak scan.
"""
import glob, json, os, random, sqlite3, sys, threading, time

import kmsio


def call(base, action, req):
    """kmsio.call on BASE/ACTION; an API error raises RuntimeError."""
    r = kmsio.call(os.path.join(base, action), req)
    if "error" in r:
        raise RuntimeError(r["error"]["error_code"] + ": " + r["error"].get("error_msg", ""))
    return r


def load(base, journal, stop, keys):
    failures = []

    def client(n):
        mine = list(keys)
        out = open(os.path.join(journal, "c%d" % n), "a", buffering=1)
        i = 0
        try:
            while not os.path.exists(stop):
                i += 1
                op = random.random()
                if op < 0.05 and len(mine) < len(keys) + 15:  # 4 x 15: under the quota
                    r = call(base, "create-key", {"key_alias": "c%d-%d" % (n, i)})
                    mine.append(r["key_info"]["key_id"])
                elif op < 0.15:
                    call(base, "rotate-key", {"key_id": random.choice(mine)})
                else:
                    k = random.choice(mine)
                    r = call(base, "create-datakey", {"key_id": k})
                    out.write(json.dumps({"t": time.time(), "key": k, "ct": r["cipher_text"],
                                          "dek": r["plain_text"]}) + "\n")
        except Exception as e:  # noqa: BLE001 - reported by the case
            failures.append("client %d: %r" % (n, e))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        print("\n".join(failures), file=sys.stderr)
        return 1
    return 0


def entries(journal):
    for fn in sorted(glob.glob(os.path.join(journal, "c*"))):
        with open(fn) as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)


def verify(base, journal, before):
    n = 0
    for e in entries(journal):
        if e["t"] >= before:
            continue
        r = call(base, "decrypt-datakey", {"key_id": e["key"], "cipher_text": e["ct"],
                                           "datakey_cipher_length": "64"})
        if r["data_key"].upper() != e["dek"].upper():
            print("DEK of key %s decrypts to another value" % e["key"], file=sys.stderr)
            return 1
        n += 1
    print(n)
    return 0


def main(argv):
    cmd = argv[1]
    if cmd == "load":
        return load(argv[2], argv[3], argv[4], argv[5:])
    if cmd == "verify":
        return verify(argv[2], argv[3], float(argv[4]))
    if cmd == "count":
        print(sum(1 for _ in entries(argv[2])))
        return 0
    if cmd == "keys":
        try:
            db = sqlite3.connect("file:%s?mode=ro" % argv[2], uri=True, timeout=0.2)
            print(db.execute("SELECT count(*) FROM keys").fetchone()[0])
        except sqlite3.Error:
            print(0)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
