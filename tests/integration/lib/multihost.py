#!/usr/bin/python3
"""multihost.py - the timed and concurrent parts of the multihost cases (lib/multihost.sh starts
the daemons). Every request is a same-handle transaction through kmsio (DEKs recorded for the
leak scan). Each command prints what it measured or found and exits 1 on a violation.

  multihost.py propagate LIMIT_S CHANGE PROBE...
      CHANGE: a JSON object, {"file": F, "req": R} (a request that must succeed) or
      {"cmd": [ARGV...]} (a command that must exit 0); each PROBE: {"file": F, "req": R,
      "expect": S}. Runs CHANGE, then repeats every PROBE until its response holds S (up to
      10 s), prints the milliseconds from CHANGE's acknowledgement to each probe's first
      matching response; fails if one took more than LIMIT_S seconds.
  multihost.py alias-race ROUNDS P MNT...   each round every mount creates a key with the same
      new alias at the same moment: exactly one succeeds, the others answer KMS.1104
  multihost.py quota-race QUOTA P THREADS MNT...   THREADS threads per mount create keys until
      refused: exactly QUOTA succeed in all, the rest answer KMS.1105, list-keys shows QUOTA
  multihost.py rotate-race ROUNDS P KEY MNT...   each round every mount rotates KEY at the same
      moment: the versions answered are distinct and, over all rounds, consecutive
  multihost.py state-race ROUNDS P KEY MNT_A MNT_B   each round A disables or enables KEY while B
      changes its description at the same moment: both changes hold on every mount
"""
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.environ.get("KMS_IO", "")) or os.path.dirname(__file__))
import kmsio  # noqa: E402


def code(resp):
    return (resp.get("error") or {}).get("error_code", "ok") if isinstance(resp, dict) else "?"


def call(path, req):
    try:
        return kmsio.call(path, req)
    except (OSError, ValueError) as e:
        return {"error": {"error_code": "OS:%s" % e}}


def simultaneous(jobs):
    """Run each (path, request) of jobs in its own thread, the handles opened first and the writes
    released together by a barrier; returns the parsed responses in order."""
    out = [None] * len(jobs)
    barrier = threading.Barrier(len(jobs))

    def run(i, path, req):
        data = json.dumps(req, separators=(",", ":")).encode()
        fd = -1
        try:
            fd = os.open(path, os.O_RDWR)
            barrier.wait(10)
            kmsio.write_all(fd, data)
            resp = kmsio.read_all(fd)
            kmsio.record(data)
            kmsio.record(resp)
            out[i] = json.loads(resp)
        except (OSError, ValueError, threading.BrokenBarrierError) as e:
            out[i] = {"error": {"error_code": "OS:%s" % e}}
            barrier.abort()
        finally:
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass

    ts = [threading.Thread(target=run, args=(i,) + j) for i, j in enumerate(jobs)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


def propagate(limit, change, probes):
    change, probes = json.loads(change), [json.loads(p) for p in probes]
    if "cmd" in change:
        r = subprocess.run(change["cmd"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            print("the change %s failed: %s" % (change["cmd"], r.stdout.decode()))
            return 1
    else:
        r = call(change["file"], change["req"])
        if code(r) != "ok":
            print("the change %s failed: %s" % (change["file"], r))
            return 1
    t0 = time.monotonic()
    pending = dict(enumerate(probes))
    took, last = {}, {}
    while pending and time.monotonic() - t0 < 10:
        for i, p in list(pending.items()):
            last[i] = json.dumps(call(p["file"], p.get("req", {})))
            if p["expect"] in last[i]:
                took[i] = (time.monotonic() - t0) * 1000
                del pending[i]
    bad = 0
    for i, p in enumerate(probes):
        if i in took:
            print("%.0f ms until %s saw %s" % (took[i], p["file"], p["expect"]))
            bad += took[i] > limit * 1000
        else:
            print("%s never saw %s within 10 s; last answer: %s" % (p["file"], p["expect"], last[i]))
            bad += 1
    return 1 if bad else 0


def alias_race(rounds, p, mnts):
    bad = 0
    for i in range(rounds):
        alias = "race-%d" % i
        rs = simultaneous([("%s/%s/create-key" % (m, p), {"key_alias": alias}) for m in mnts])
        codes = sorted(code(r) for r in rs)
        if codes != ["KMS.1104"] * (len(mnts) - 1) + ["ok"]:
            print("round %d (alias %s): answers %s: %s" % (i, alias, codes, rs))
            bad += 1
    keys = call("%s/%s/list-keys" % (mnts[-1], p), {"limit": "1000"})
    n = int(keys.get("total", -1)) if isinstance(keys, dict) else -1
    print("%d rounds on %d hosts: %d bad, %d keys listed" % (rounds, len(mnts), bad, n))
    if n != rounds:
        print("expected %d keys, list-keys: %s" % (rounds, keys))
        bad += 1
    return 1 if bad else 0


def quota_race(quota, p, threads, mnts):
    results = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads * len(mnts))

    def run(h, m, t):
        mine = []
        try:
            barrier.wait(10)
        except threading.BrokenBarrierError:
            pass
        for j in range(quota + 2):
            r = call("%s/%s/create-key" % (m, p), {"key_alias": "q-%d-%d-%d" % (h, t, j)})
            mine.append(code(r))
            if code(r) != "ok":
                break
        with lock:
            results.extend(mine)

    ts = [threading.Thread(target=run, args=(h, m, t)) for h, m in enumerate(mnts) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    ok = results.count("ok")
    other = sorted({c for c in results if c not in ("ok", "KMS.1105")})
    listed = [call("%s/%s/list-keys" % (m, p), {"limit": "1000"}).get("total") for m in mnts]
    print("quota %d, %d threads on each of %d hosts: %d created, %d refused with KMS.1105, other answers %s, list-keys %s"
          % (quota, threads, len(mnts), ok, results.count("KMS.1105"), other, listed))
    return 0 if ok == quota and not other and all(str(n) == str(quota) for n in listed) else 1


def rotate_race(rounds, p, key, mnts):
    versions, bad = [], 0
    for i in range(rounds):
        rs = simultaneous([("%s/%s/keys/%s/rotate-key" % (m, p, key), {}) for m in mnts])
        vs = [r.get("key_version") for r in rs]
        if any(code(r) != "ok" for r in rs) or len(set(vs)) != len(vs):
            print("round %d: answers %s" % (i, rs))
            bad += 1
        versions += [int(v) for v in vs if v is not None]
    versions.sort()
    start = versions[0] if versions else 0
    if versions != list(range(start, start + len(versions))):
        print("versions are not consecutive: %s" % versions)
        bad += 1
    # Every host agrees on the count once the other's last rotation reached it (1 s at most).
    deadline = time.monotonic() + 1.0
    while True:
        st = [call("%s/%s/keys/%s/get-key-rotation-status" % (m, p, key), {}).get("number_of_rotations")
              for m in mnts]
        if len(set(str(x) for x in st)) == 1 or time.monotonic() > deadline:
            break
    print("%d rounds on %d hosts: versions %s..%s, %d distinct of %d, number_of_rotations %s"
          % (rounds, len(mnts), start, versions[-1] if versions else "-", len(set(versions)), len(versions), st))
    return 1 if bad or len(set(str(x) for x in st)) != 1 else 0


def state_race(rounds, p, key, a, b):
    bad = 0
    for i in range(rounds):
        action = "disable-key" if i % 2 == 0 else "enable-key"
        desc = "round %d" % i
        rs = simultaneous([("%s/%s/keys/%s/%s" % (a, p, key, action), {}),
                           ("%s/%s/keys/%s/update-key-description" % (b, p, key),
                            {"key_description": desc})])
        if any(code(r) != "ok" for r in rs):
            print("round %d: answers %s" % (i, rs))
            bad += 1
            continue
        want = "3" if action == "disable-key" else "2"
        # The next request on either host sees both (they were acknowledged): allow the
        # propagation time of the other host's change (1 s) before judging.
        for m in (a, b):
            deadline = time.monotonic() + 1.0
            while True:
                ki = call("%s/%s/keys/%s/describe-key" % (m, p, key), {}).get("key_info", {})
                got = (ki.get("key_state"), ki.get("key_description"))
                if got == (want, desc) or time.monotonic() > deadline:
                    break
            if got != (want, desc):
                print("round %d on %s: key_state/description %s, expected %s" % (i, m, got, (want, desc)))
                bad += 1
    print("%d rounds of %s/update-key-description: %d lost changes" % (rounds, "disable/enable", bad))
    return 1 if bad else 0


def main(argv):
    cmd, args = argv[1], argv[2:]
    if cmd == "propagate":
        return propagate(float(args[0]), args[1], args[2:])
    if cmd == "alias-race":
        return alias_race(int(args[0]), args[1], args[2:])
    if cmd == "quota-race":
        return quota_race(int(args[0]), args[1], int(args[2]), args[3:])
    if cmd == "rotate-race":
        return rotate_race(int(args[0]), args[1], args[2], args[3:])
    if cmd == "state-race":
        return state_race(int(args[0]), args[1], args[2], args[3], args[4])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
