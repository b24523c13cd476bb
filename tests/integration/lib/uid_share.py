"""uid_share.py FUNCTION ARGS... - the clients of cases/fault-uid-share.sh, one function a step
(hold, mail, refusals; see each). The case runs them as the test user or other uids."""
import errno, os, resource, sys, time
import kmsio


def en(e):
    return errno.errorcode.get(e, str(e))


def hold(kind, path, n, ready, release):
    """Open path n times (kind "open": read-only and idle; "fill": O_RDWR with a 64 KiB
    half-written request each) until one fails; report "fit errno" and hold until release."""
    n = int(n)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(n + 64, hard), hard))
    blob = b'{"plain_text":"' + b"a" * (65536 - 15)
    hs, err = [], "none"
    while len(hs) < n:
        try:
            fd = os.open(path, os.O_RDONLY if kind == "open" else os.O_RDWR)
        except OSError as e:
            err = "open:" + en(e.errno)
            break
        hs.append(fd)
        if kind == "fill":
            try:
                os.write(fd, blob)
            except OSError as e:
                err = "write:" + en(e.errno)
                break
    fit = len(hs) - (1 if err.startswith("write:") else 0)
    with open(ready + ".tmp", "w") as f:
        f.write("%d %s\n" % (fit, err))
    os.rename(ready + ".tmp", ready)
    while not os.path.exists(release):
        time.sleep(0.05)
    for fd in hs:
        try:
            os.close(fd)
        except OSError:
            pass  # the half requests run at close: refused, no token


def mail(listfile):
    """Write {} to every file listed, O_WRONLY, never read: one mailbox each."""
    n = 0
    for path in open(listfile).read().split():
        fd = os.open(path, os.O_WRONLY)
        os.write(fd, b"{}")
        try:
            os.close(fd)
        except OSError:
            pass  # KMS.0301: EACCES
        n += 1
    print(n)


def refusals(path, n):
    """n empty reads with no identity; prints how long they took (whole seconds, rounded up)."""
    t = time.monotonic()
    for _ in range(int(n)):
        r = kmsio.call(path)
        assert r["error"]["error_code"] == "KMS.0301", r
    print(int(time.monotonic() - t) + 1)


globals()[sys.argv[1]](*sys.argv[2:])
