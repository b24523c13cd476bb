"""bad_too_long.py P KEY_ID - the checks of cases/bad-too-long.sh.

Requests over 64 KiB to P/describe-key: the write that goes past 65536 bytes fails with EFBIG
and the answer is KMS.0203 (one big write, many small ones); exactly 64 KiB is fine."""
import errno, json, os, sys
import kmsio
P, kid = sys.argv[1], sys.argv[2]
f = P + "/describe-key"
base = json.dumps({"key_id": kid}).encode()

def pad(n):  # a valid describe-key request of exactly n bytes
    return base[:-1] + b" " * (n - len(base)) + b"}"

def txn(chunks):
    fd = os.open(f, os.O_RDWR)
    err = None
    try:
        for c in chunks:
            try:
                kmsio.write_all(fd, c)  # a short write is fine, as long as a later one fails
            except OSError as e:
                err = e.errno
                break
        out = kmsio.read_all(fd)
    finally:
        try:
            os.close(fd)
        except OSError:
            pass
    return err, json.loads(out)

err, r = txn([pad(65536)])
assert err is None and r["key_info"]["key_id"] == kid, ("exactly 64 KiB", err, r)
big = pad(65537)
err, r = txn([big])
assert err == errno.EFBIG, ("one write of 64 KiB + 1", errno.errorcode.get(err))
assert r["error"]["error_code"] == "KMS.0203", r
err, r = txn([big[i:i + 4096] for i in range(0, len(big), 4096)])
assert err == errno.EFBIG, ("4 KiB writes", errno.errorcode.get(err))
assert r["error"]["error_code"] == "KMS.0203", r
err, r = txn([b"x" * (1 << 20)])
assert err == errno.EFBIG and r["error"]["error_code"] == "KMS.0203", (err, r)
