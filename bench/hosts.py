#!/usr/bin/env python3
"""hosts.py - the request loops of bench/run's many-hosts figures (issue 12).

  hosts.py propagate KEYDIR_A KEYDIR_B CHANGES
      Alternately disable-key and enable-key the key through daemon A (KEYDIR_A = the key's
      folder keys/<id> on A's mount); after A acknowledged each change (its response read), poll
      create-datakey-without-plaintext on the same key through daemon B (KEYDIR_B) until B's
      answer flips (KMS.0209 after a disable, a data key after an enable). Prints one line:
      changes=N p50_ms=.. p99_ms=.. max_ms=.. polls=..  (nearest-rank percentiles of the time
      from A's acknowledgement to the first request on B that saw the change, i.e. that
      started after it and got the new answer).
  hosts.py touch PROJECT_DIR IDS_FILE
      create-datakey-without-plaintext once on every key listed in IDS_FILE (one id a line),
      through PROJECT_DIR/keys/<id>/. Prints: keys=N secs=S
  hosts.py until-ok FILE REQUEST TIMEOUT
      Repeat the request (one same-handle transaction; "XXXXXXXX" in REQUEST is replaced by a
      fresh number each time) until one succeeds (no "error" in the answer and close() is fine),
      at most TIMEOUT seconds. Prints: ok_ns=<CLOCK_REALTIME ns of that success> tries=N
      (exit 1 after TIMEOUT: the last answer on stderr).

Standard library only; runs as the caller (root in bench/run, whose tokens are bound).
"""
import os
import sys
import time

ACTION = "create-datakey-without-plaintext"


def tx(path, req):
    """One same-handle transaction: (ok, response text). ok: an answer without "error" and a
    close() that succeeded."""
    data = req.encode()
    resp = bytearray()
    ok = True
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError as e:
        return False, "open: %s" % e
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            resp += chunk
    except OSError as e:
        ok = False
        resp += ("[%s]" % e).encode()
    finally:
        try:
            os.close(fd)
        except OSError:
            ok = False
    text = resp.decode(errors="replace")
    return ok and text.startswith("{") and '"error"' not in text, text


def pct(sorted_values, p):
    """Nearest-rank percentile (p in 0..100) of an ascending list."""
    n = len(sorted_values)
    k = max(1, -(-p * n // 100))  # ceil(p * n / 100)
    return sorted_values[int(k) - 1]


def propagate(keydir_a, keydir_b, changes):
    probe = os.path.join(keydir_b, ACTION)
    ok, text = tx(probe, "{}")
    if not ok:
        sys.exit("hosts.py: the key does not work on B to begin with: " + text.strip())
    lat, polls = [], 0
    for i in range(changes):
        disable = i % 2 == 0
        action = "disable-key" if disable else "enable-key"
        ok, text = tx(os.path.join(keydir_a, action), "{}")
        if not ok:
            sys.exit("hosts.py: %s on A failed: %s" % (action, text.strip()))
        t0 = time.monotonic_ns()  # A acknowledged the change
        while True:
            ok, text = tx(probe, "{}")
            polls += 1
            if disable and not ok and "KMS.0209" in text:
                break
            if not disable and ok:
                break
            if not ok and not disable and "KMS.0209" not in text:
                sys.exit("hosts.py: unexpected answer on B: " + text.strip())
            if time.monotonic_ns() - t0 > 10 * 10**9:
                sys.exit("hosts.py: B did not see %s within 10 s (last: %s)"
                         % (action, text.strip()))
        # The request that saw the change started after the previous poll ended; count to its
        # end (an upper bound of the delay by one request).
        lat.append((time.monotonic_ns() - t0) / 1e6)
    if changes % 2:  # leave the key enabled
        tx(os.path.join(keydir_a, "enable-key"), "{}")
    s = sorted(lat)
    print("changes=%d p50_ms=%.1f p99_ms=%.1f max_ms=%.1f polls=%d"
          % (len(s), pct(s, 50), pct(s, 99), s[-1], polls))


def touch(project_dir, ids_file):
    with open(ids_file) as f:
        ids = [line.strip() for line in f if line.strip()]
    t0 = time.monotonic()
    for key_id in ids:
        ok, text = tx(os.path.join(project_dir, "keys", key_id, ACTION), "{}")
        if not ok:
            sys.exit("hosts.py: key %s: %s" % (key_id, text.strip()))
    print("keys=%d secs=%.3f" % (len(ids), time.monotonic() - t0))


def until_ok(path, req, timeout):
    deadline = time.monotonic() + timeout
    tries, text = 0, ""
    while time.monotonic() < deadline:
        tries += 1
        ok, text = tx(path, req.replace("XXXXXXXX", "%08x" % (time.time_ns() & 0xffffffff)))
        if ok:
            print("ok_ns=%d tries=%d" % (time.time_ns(), tries))
            return 0
        time.sleep(0.01)
    print("hosts.py: no success within %g s, last answer: %s" % (timeout, text.strip()),
          file=sys.stderr)
    return 1


def main(argv):
    if len(argv) == 5 and argv[1] == "propagate":
        propagate(argv[2], argv[3], int(argv[4]))
        return 0
    if len(argv) == 4 and argv[1] == "touch":
        touch(argv[2], argv[3])
        return 0
    if len(argv) == 5 and argv[1] == "until-ok":
        return until_ok(argv[2], argv[3], float(argv[4]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
