"""txn_keepopen.py CHECK P ARGS... - the checks of cases/txn-keepopen.sh: kept-open handles
(docs/using.md, "Kept-open handles"), each CHECK run by root and, where the case says so, by the
unprivileged test user.

  many P KEY_ID          1,000 requests on ONE handle of P/create-datakey, every tenth a bad one
                         (bad JSON, unknown key, over 64 KiB, a missing field): each gets its own
                         error answer (and EFBIG from the write when too long), the next request on
                         the handle works; writes and reads in every style a program uses.
  threads P KEY_ID       8 threads, each with its own kept handles on the key folder's
                         create-datakey and decrypt-datakey: each gets only its own answers, then
                         decrypts what another thread created.
  idle P KEY_ID SECONDS  a request on a handle after SECONDS of idling (longer than the mount's
                         mailbox_ttl), and one written before the pause and read after it.
  revoke P READY GO      (tokens in $KO_TOKEN1, $KO_TOKEN2) bind token 1, keep a handle of
                         P/describe-key, create READY and wait for GO (the case revokes token 1
                         meanwhile): the kept handle then answers KMS.0302 to every request, also
                         after token 2 is bound (identity was captured at open); a new handle
                         works.
"""
import concurrent.futures, errno, json, os, sys, threading, time
import kmsio


def ename(e):
    return errno.errorcode.get(e, str(e))


class Handle:
    """A kept-open O_RDWR handle; req() is one request on it in the given write/read style."""

    def __init__(self, path):
        self.path = path
        self.fd = os.open(path, os.O_RDWR)
        self.n = 0

    def req(self, body, style=0):
        """Returns (answer dict, errno of the write or 0). Fails on a read errno or a malformed
        answer: an API error is an answer, never a failed read."""
        if isinstance(body, dict):
            body = json.dumps(body, separators=(",", ":")).encode()
        self.n += 1
        werr = 0
        try:
            if style == 3:
                assert os.pwrite(self.fd, body, 0) == len(body)
            elif style == 2:  # in chunks
                for i in range(0, len(body), 5):
                    kmsio.write_all(self.fd, body[i:i + 5])
            else:
                kmsio.write_all(self.fd, body)
        except OSError as e:
            werr = e.errno
        try:
            if style == 1:  # pread at 0: one round trip when it fits
                ans = os.pread(self.fd, 1 << 16, 0)
            elif style == 2:  # small reads to the end of file
                ans = kmsio.read_all(self.fd, 7)
            else:  # read() from the current offset to the end of file
                ans = kmsio.read_all(self.fd, 1 << 16)
                assert os.read(self.fd, 100) == b"", "a read after the end of the answer"
        except OSError as e:
            raise AssertionError("%s request %d: read failed %s (an API error is an answer)" % (
                self.path, self.n, ename(e.errno)))
        assert ans.endswith(b"\n") and ans.count(b"\n") == 1, (self.path, self.n, ans)
        kmsio.record(body)
        kmsio.record(ans)
        return json.loads(ans), werr

    def ok(self, body, style=0):
        doc, werr = self.req(body, style)
        assert werr == 0 and "error" not in doc, (self.path, self.n, ename(werr), doc)
        return doc

    def err(self, body, code, want_werr=0, style=0):
        doc, werr = self.req(body, style)
        got = doc.get("error", {}).get("error_code")
        assert got == code, (self.path, self.n, "expected", code, doc)
        assert werr == want_werr, (self.path, self.n, "write errno", ename(werr))
        return doc

    def close(self):
        os.close(self.fd)  # raises if close() fails


def many(P, kid):
    h = Handle(P + "/create-datakey")
    bad = [
        (b'{"key_id":"' + kid.encode() + b'",', "KMS.0202", 0),  # bad JSON
        ({"key_id": "0f0e0d0c-0b0a-4908-8706-050403020100"}, "KMS.0207", 0),  # unknown key
        (b'{"key_id":"' + kid.encode() + b'"' + b" " * 70000 + b"}", "KMS.0203", errno.EFBIG),
        ({"datakey_length": "256"}, "KMS.0204", 0),  # key_id missing
    ]
    errs = 0
    for i in range(1000):
        style = i % 4
        if i % 10 == 9:
            body, code, werr = bad[(i // 10) % len(bad)]
            h.err(body, code, werr, style if werr == 0 else 0)
            errs += 1
            continue
        n = 8 * (1 + i % 64)  # bytes: the answer must be this request's
        d = h.ok({"key_id": kid, "datakey_length": str(8 * n)}, style)
        assert d["key_id"] == kid and len(d["plain_text"]) == 2 * n, (i, n, d)
    # A too-long request that was written in chunks: once a write is refused, the request's
    # further writes are too (it must answer why, never run with a part); its read answers it.
    big = b'{"key_id":"' + kid.encode() + b'"' + b" " * 70000 + b"}"
    refused = 0
    for i in range(0, len(big), 8192):
        try:
            kmsio.write_all(h.fd, big[i:i + 8192])
        except OSError as e:
            assert e.errno == errno.EFBIG, ename(e.errno)
            refused += 1
    assert refused >= 1 and refused == len(range(65536 // 8192 * 8192, len(big), 8192)), refused
    a = json.loads(kmsio.read_all(h.fd))
    assert a["error"]["error_code"] == "KMS.0203", a
    h.ok({"key_id": kid}, 1)
    # The last request succeeded: close() has nothing to report (earlier failures were each
    # reported in their own answer).
    h.close()
    print("# many: %d requests on one handle, %d of them errors" % (h.n + 1, errs + 1),
          file=sys.stderr)


def threads(P, kid):
    N, ROUNDS = 8, 40
    create = P + "/keys/" + kid + "/create-datakey"
    decrypt = P + "/keys/" + kid + "/decrypt-datakey"
    made = [[] for _ in range(N)]  # (cipher_text, plain_text) per thread
    barrier = threading.Barrier(N, timeout=120)

    def worker(t):
        ctx = {"thread": str(t)}
        n = 8 * (t + 1)  # bytes: each thread's DEKs have their own length
        try:
            c, d = Handle(create), Handle(decrypt)
            for i in range(ROUNDS):
                if i == ROUNDS // 2:  # an error in between, on this thread's handle only
                    d.err({"cipher_text": made[t][0][0], "datakey_cipher_length": str(n)},
                          "KMS.2203")
                r = c.ok({"datakey_length": str(8 * n), "encryption_context": ctx}, i % 4)
                assert len(r["plain_text"]) == 2 * n, ("another thread's answer?", t, i, r)
                back = d.ok({"cipher_text": r["cipher_text"], "datakey_cipher_length": str(n),
                             "encryption_context": ctx}, (i + 1) % 4)
                assert back["data_key"] == r["plain_text"], ("cross-talk", t, i, back)
                made[t].append((r["cipher_text"], r["plain_text"]))
            barrier.wait()
            # What another thread created, on this thread's kept decrypt handle.
            o = (t + 1) % N
            for ct, pt in made[o]:
                back = d.ok({"cipher_text": ct, "datakey_cipher_length": str(8 * (o + 1)),
                             "encryption_context": {"thread": str(o)}})
                assert back["data_key"] == pt, ("thread", t, "decrypting", o, back)
            c.close()
            d.close()
        except BaseException:
            barrier.abort()  # the others stop waiting for this one
            raise

    with concurrent.futures.ThreadPoolExecutor(N) as pool:
        futures = [pool.submit(worker, t) for t in range(N)]
    # The cause, not a thread that only stopped waiting for it at the barrier.
    errs = sorted((f.exception() for f in futures if f.exception()),
                  key=lambda e: isinstance(e, threading.BrokenBarrierError))
    if errs:
        raise errs[0]
    deks = [pt for m in made for _, pt in m]
    assert len(deks) == N * ROUNDS and len(set(deks)) == len(deks), "a DEK was handed out twice"
    print("# threads: %d handles, %d requests, no cross-talk" % (2 * N, N * (3 * ROUNDS + 1)),
          file=sys.stderr)


def idle(P, kid, seconds):
    h = Handle(P + "/keys/" + kid + "/create-datakey-without-plaintext")
    h.ok({})
    time.sleep(float(seconds))
    a = h.ok({})  # after a pause longer than the mailbox TTL: the handle is not a mailbox
    assert a["key_id"] == kid, a
    # Written before a pause, read after it: the request runs at the read.
    kmsio.write_all(h.fd, b'{"datakey_length":"128"}')
    time.sleep(float(seconds))
    a = json.loads(kmsio.read_all(h.fd))
    assert a["key_id"] == kid and "cipher_text" in a, a
    h.ok({}, 1)
    h.close()
    print("# idle: requests after %s s pauses on one handle" % seconds, file=sys.stderr)


def revoke(P, ready, go):
    kmsio.bind_token(os.path.dirname(P), os.path.basename(P), os.environ["KO_TOKEN1"])
    h = Handle(P + "/describe-key")
    kid = h.ok({"key_id": "alias/app"})["key_info"]["key_id"]
    open(ready, "w").close()
    t_end = time.monotonic() + 60
    while not os.path.exists(go):
        assert time.monotonic() < t_end, "no go from the case"
        time.sleep(0.05)
    # Token 1 is revoked: the kept handle answers KMS.0302 to each request, in its answer (the
    # read does not fail), and goes on answering.
    for style in range(4):
        h.err({"key_id": kid}, "KMS.0302", 0, style)
    # A new token does not change an open handle: it keeps the identity captured at open.
    kmsio.bind_token(os.path.dirname(P), os.path.basename(P), os.environ["KO_TOKEN2"])
    h.err({"key_id": kid}, "KMS.0302")
    g = Handle(P + "/describe-key")
    assert g.ok({"key_id": kid})["key_info"]["key_id"] == kid
    h.err({"key_id": kid}, "KMS.0302")
    g.close()
    try:
        os.close(h.fd)  # what close() reports is not where a kept handle learns of errors
    except OSError:
        pass
    print("# revoke: uid %d's kept handle answers KMS.0302 after the revocation, a new one works"
          % os.getuid(), file=sys.stderr)


if __name__ == "__main__":
    checks = {"many": many, "threads": threads, "idle": idle, "revoke": revoke}
    if len(sys.argv) < 3 or sys.argv[1] not in checks:
        sys.exit(__doc__)
    checks[sys.argv[1]](*sys.argv[2:])
