"""fault_clients.py - the misbehaving clients of cases/fault-clients.sh, one function a step.

  fault_clients.py FUNCTION ARGS...   (see each function; the case runs them with kms_py or
                                       "$KMS_PY" "$FC" when it needs the pid of a background one)
"""
import ctypes, errno, json, os, random, resource, signal, statistics, sys, time
import kmsio
from kmsio import read_all

libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def en(e):
    return errno.errorcode.get(e, str(e))


def roundtrip(P, kid):
    """A correct client: a DEK from the key folder, unwrapped through the project file."""
    t = time.monotonic()
    dk = kmsio.call(P + "/keys/" + kid + "/create-datakey", {"datakey_length": "256"})
    back = kmsio.call(P + "/decrypt-datakey", {"key_id": kid, "cipher_text": dk["cipher_text"],
                                                "datakey_cipher_length": "32"})
    assert len(dk.get("plain_text", "")) == 64 and back.get("data_key") == dk["plain_text"], (dk, back)
    return time.monotonic() - t


def client(P, kid, n):
    """n round trips; prints the median and worst latency in ms."""
    ts = sorted(roundtrip(P, kid) for _ in range(int(n)))
    print("%.1f %.1f" % (1000 * statistics.median(ts), 1000 * ts[-1]))


def raise_nofile(n):
    """Room for n more descriptors (the caller's quota respects the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 64 if hard == resource.RLIM_INFINITY else min(n + 64, hard)
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def signal_ready(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text + "\n")
    os.rename(path + ".tmp", path)


def wait_release(path, limit=120):
    end = time.monotonic() + limit
    while not os.path.exists(path) and time.monotonic() < end:
        time.sleep(0.05)


def kills(P, kid, dpid):
    """Step 1: clients SIGKILLed mid-transaction."""
    K = P + "/keys/" + kid
    enc = json.dumps({"plain_text": "misbehaving client payload"}).encode()
    batch = b"\n".join([enc] * 3) + b"\n"
    slow = b"{}\n" * 20000  # about 40 ms of work for the daemon: the read blocks meanwhile

    def spawn(fn):
        pid = os.fork()
        if pid == 0:
            code = 3
            try:
                libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
                fn()
                code = 0
            except BaseException as e:  # noqa: BLE001 - the child reports and exits
                print("child %d: %r" % (os.getpid(), e), file=sys.stderr)
            os._exit(code)
        return pid

    def reap(pid, may_finish=False):
        _, st = os.waitpid(pid, 0)
        if os.WIFSIGNALED(st) and os.WTERMSIG(st) == signal.SIGKILL:
            return 1
        assert may_finish and os.WIFEXITED(st) and os.WEXITSTATUS(st) == 0, \
            "a killed client failed before its kill (status %#x)" % st
        return 0

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def half_object():
        fd = os.open(K + "/encrypt-data", os.O_RDWR)
        os.write(fd, enc[: len(enc) // 2])
        die()

    def full_unread():
        fd = os.open(K + "/encrypt-data", os.O_RDWR)
        os.write(fd, enc)
        die()

    def mid_batch():
        fd = os.open(K + "/encrypt-data", os.O_WRONLY)
        os.write(fd, batch + enc[:11])
        die()

    def mid_batch_chunks():
        fd = os.open(K + "/encrypt-data", os.O_WRONLY)
        for i in range(0, len(batch), 20):
            os.write(fd, batch[i:i + 20])
            if i > len(batch) // 2:
                die()

    def busy_loop():  # killed by the parent at a random moment of open/write/read/close
        while True:
            fd = os.open(K + "/encrypt-data", os.O_RDWR)
            for i in range(0, len(batch), 7):
                os.write(fd, batch[i:i + 7])
            lines = read_all(fd).splitlines()
            assert len(lines) == 3 and all("cipher_text" in json.loads(l) for l in lines), lines
            os.close(fd)

    def slow_read():
        fd = os.open(K + "/decrypt-datakey", os.O_RDWR)
        os.write(fd, slow)
        r = read_all(fd)
        assert r.count(b"\n") == 20000, len(r)

    def check(what):
        try:
            os.kill(int(dpid), 0)
            roundtrip(P, kid)
        except Exception as e:  # noqa: BLE001 - say after which kind of kill
            raise AssertionError("after the %s kills: %r" % (what, e)) from e

    counts = {}
    for name, fn in (("half-object", half_object), ("full-unread", full_unread),
                     ("mid-batch", mid_batch), ("mid-batch-chunks", mid_batch_chunks)):
        n = 0
        for _ in range(30):
            n += reap(spawn(fn))
        assert n == 30, name
        counts[name] = n
        check(name)
    n = 0
    for _ in range(50):
        pid = spawn(busy_loop)
        time.sleep(random.uniform(0.001, 0.03))
        os.kill(pid, signal.SIGKILL)
        n += reap(pid)
    counts["random-moment"] = n
    check("random")
    n = 0
    for _ in range(20):
        pid = spawn(slow_read)
        time.sleep(random.uniform(0.005, 0.04))
        os.kill(pid, signal.SIGKILL)
        n += reap(pid, may_finish=True)
    counts["blocked-in-read"] = n
    check("slow read")
    # A handle shared with a child: the child writes half a request and dies (a read-write
    # handle gets no FLUSH at close: the half request waits); the parent ends it with fsync
    # (it runs and reports its error), then does a whole transaction on the same handle and
    # must get the answer to its own request.
    n = 0
    for i in range(20):
        fd = os.open(K + "/encrypt-data", os.O_RDWR)
        pid = spawn(lambda: (os.write(fd, enc[:9]), die()))
        n += reap(pid)
        try:
            os.fsync(fd)
        except OSError as e:
            assert e.errno == errno.EINVAL, e  # the half request: KMS.0202
        mine = json.dumps({"plain_text": "parent %d" % i}).encode()
        os.write(fd, mine)
        r = json.loads(read_all(fd))
        assert "cipher_text" in r, r
        d = kmsio.call(P + "/decrypt-data", {"cipher_text": r["cipher_text"]})
        assert d.get("plain_text") == "parent %d" % i, d
        os.close(fd)  # its own request succeeded: no error to report
    counts["shared-handle"] = n
    check("shared")
    print(" ".join("%s=%d" % kv for kv in counts.items()))


def hog(P, first, n, ready, release, *kids):
    """Step 2: hold handles first..first+n-1 of every kind while another client works."""
    first, n = int(first), int(n)
    raise_nofile(n)
    acts = ("describe-key", "encrypt-data", "decrypt-data", "create-datakey-without-plaintext",
            "get-key-rotation-status", "list-grants")
    hs = []
    for i in range(first, first + n):
        f = "%s/keys/%s/%s" % (P, kids[i % len(kids)], acts[(i // len(kids)) % len(acts)])
        kind = i % 4
        if kind == 0:
            fd = os.open(f, os.O_RDWR)
            os.write(fd, b'{"plain_text":"half a requ')
        elif kind == 1:
            fd = os.open(f, os.O_WRONLY)
            os.write(fd, b'{}\n{"plain_te')
        elif kind == 2:
            fd = os.open(f, os.O_RDONLY)
        else:
            fd = os.open(f, os.O_RDWR)
            os.write(fd, b"{}")
            assert len(os.read(fd, 1)) == 1
        hs.append((kind, fd))
    signal_ready(ready, str(n))
    wait_release(release)
    bad = []
    for kind, fd in hs:
        try:
            os.close(fd)
            got = 0
        except OSError as e:
            got = e.errno
        if kind == 0 and got != 0:  # read-write: no FLUSH; the half object runs at the release
            bad.append("half-object close: %s" % en(got))
        if kind == 2 and got != 0:
            bad.append("read-only close: %s" % en(got))
    assert not bad, bad[:5]


def burst(P, lines, *kids):
    """Step 3: write to many files, never read. Prints how many files."""
    big = b"{}\n" * int(lines)  # 21845 lines: 65535 bytes, answered by ~2 MiB of KMS.0204 lines
    n = 0
    for kid in kids:
        K = P + "/keys/" + kid
        for act, body in (("decrypt-datakey", big), ("decrypt-data", big), ("describe-key", b"{}"),
                          ("encrypt-data", b'{"plain_text":"never read"}'),
                          ("get-key-rotation-status", b"{}")):
            fd = os.open(K + "/" + act, os.O_WRONLY)
            os.write(fd, body)
            try:
                os.close(fd)
            except OSError:
                pass  # {} for decrypt-data: EINVAL; this client does not care
            n += 1
    print(n)


def pinned(P, kid, lines, n, ready, release):
    """Step 6: n handles that each take a big answer (a batch of `{}` lines, read whole), then
    a small one, and stay open. Nothing big is held: the daemon must not keep the big blocks.
    Reports the number of handles."""
    raise_nofile(int(n) + 64)
    f = P + "/keys/" + kid + "/decrypt-datakey"
    batch = b"{}\n" * int(lines)
    hs = []
    for _ in range(int(n)):
        fd = os.open(f, os.O_RDWR)
        hs.append(fd)
        os.write(fd, batch)
        big = read_all(fd)
        if not big.startswith(b'{"error":{"error_code":"KMS.0204"') or len(big) < (1 << 20):
            print("unexpected big answer: %r (%d bytes)" % (big[:64], len(big)), file=sys.stderr)
            sys.exit(1)
        os.write(fd, b"{}")  # one request: one short error line
        small = os.pread(fd, 4096, 0)
        if not small.startswith(b'{"error":{"error_code":"KMS.0204"') or small.count(b"\n") != 1:
            print("unexpected small answer: %r" % small[:200], file=sys.stderr)
            sys.exit(1)
    signal_ready(ready, "%d" % len(hs))
    wait_release(release)
    for fd in hs:
        try:
            os.close(fd)
        except OSError:
            pass  # the {} request's EINVAL


def holdanswers(P, kid, lines, maxh, ready, release):
    """Step 5: handles that take a big answer (a batch of `{}` lines: one KMS.0204 line each)
    and read one byte of it, until the daemon refuses to run more (KMS.0104: the bound on held
    answers) or maxh handles. Reports "held busy"."""
    raise_nofile(int(maxh) + 64)
    f = P + "/keys/" + kid + "/decrypt-datakey"
    batch = b"{}\n" * int(lines)
    hs, busy = [], 0
    while len(hs) < int(maxh):
        fd = os.open(f, os.O_RDWR)
        hs.append(fd)
        os.write(fd, batch)
        first = os.pread(fd, 64, 0)
        if b'"KMS.0104"' in first:
            busy += 1
            if busy >= 5:
                break
        elif not first.startswith(b'{"error":{"error_code":"KMS.0204"'):
            print("unexpected answer: %r" % first, file=sys.stderr)
            sys.exit(1)
    signal_ready(ready, "%d %d" % (len(hs) - busy, busy))
    wait_release(release)
    for fd in hs:
        try:
            os.close(fd)
        except OSError:
            pass


def reads(P, kid, n):
    """Callers that need no request bytes: empty reads. Prints median/max ms."""
    K = P + "/keys/" + kid
    ts = []
    for _ in range(int(n)):
        t = time.monotonic()
        w = kmsio.call(K + "/create-datakey-without-plaintext")
        d = kmsio.call(K + "/describe-key")
        ts.append(time.monotonic() - t)
        assert w.get("key_id") == kid and len(w.get("cipher_text", "")) > 64, w
        assert d.get("key_info", {}).get("key_id") == kid, d
    ts.sort()
    print("%.1f %.1f" % (1000 * statistics.median(ts), 1000 * ts[-1]))


def fill(P, kid, ready, release, quota):
    """Step 4: fill the daemon-wide request buffer with 64 KiB half-written requests, on up to
    quota handles. Reports how many fit and the errno of the first refused write ("none": the
    quota ran out first; bash starts another filler)."""
    quota = int(quota)
    raise_nofile(quota)
    # The project's file: uids with no identity cannot resolve key folders.
    f = P + "/encrypt-data"
    blob = b'{"plain_text":"' + b"a" * (65536 - 15)
    assert len(blob) == 65536
    hs, fit, err = [], 0, "none"
    while len(hs) < quota:
        fd = os.open(f, os.O_RDWR)
        hs.append(fd)
        try:
            assert os.write(fd, blob) == len(blob)
            fit += 1
        except OSError as e:
            err = en(e.errno)
            break
    if err != "none":  # the bound is reached: not even one more byte, on a new handle
        fd = os.open(f, os.O_RDWR)
        hs.append(fd)
        try:
            os.write(fd, b"a")
            err += "/one-more-byte-accepted"
        except OSError as e:
            err += "/" + en(e.errno)
    signal_ready(ready, "%d %s" % (fit, err))
    wait_release(release)
    if err != "none":
        # The handle whose write was refused never runs what it had: it answers KMS.0104.
        ans = os.pread(hs[fit], 4096, 0)
        if b'"KMS.0104"' not in ans:
            print("refused handle answered: %r" % ans[:200], file=sys.stderr)
            sys.exit(1)
    for fd in hs:
        try:
            os.close(fd)
        except OSError:
            pass  # the half requests run at close and fail: EINVAL (and ENOMEM's handle: any)


def write_err(fd, b):
    """The errno of os.write(fd, b), 0 when it worked."""
    try:
        os.write(fd, b)
        return 0
    except OSError as e:
        return e.errno


def bound64k(P, kid):
    """Step 4, 64 KiB: EFBIG on the write that crosses it (and on later writes), KMS.0203, then
    the same handle works again; close() reports EFBIG when the oversized request ran at close."""
    f = P + "/keys/" + kid + "/encrypt-data"
    fd = os.open(f, os.O_RDWR)
    assert write_err(fd, b'{"plain_text":"' + b"a" * 60000) == 0
    assert write_err(fd, b"a" * 6000) == errno.EFBIG
    assert write_err(fd, b'"}') == errno.EFBIG, "a write after the overflow must fail too"
    r = json.loads(read_all(fd))
    assert r["error"]["error_code"] == "KMS.0203", r
    assert write_err(fd, b'{"plain_text":"after the overflow"}') == 0
    r = json.loads(read_all(fd))
    assert "cipher_text" in r, r
    os.close(fd)
    fd = os.open(f, os.O_WRONLY)
    assert write_err(fd, b"x" * 65537) == errno.EFBIG
    try:
        os.close(fd)
        sys.exit("close() of an oversized request succeeded")
    except OSError as e:
        assert e.errno == errno.EFBIG, errno.errorcode.get(e.errno)


def onewrite(path):
    """Open path O_RDWR and write a small request: prints "accepted" or the write's errno."""
    fd = os.open(path, os.O_RDWR)
    e = write_err(fd, b'{"plain_text":"x"}')
    print(errno.errorcode[e] if e else "accepted")


if __name__ == "__main__":
    globals()[sys.argv[1]](*sys.argv[2:])
