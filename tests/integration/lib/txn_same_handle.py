"""txn_same_handle.py P KEY_ID - the checks of cases/txn-same-handle.sh.

Transactions on one O_RDWR handle of P/keys/KEY_ID/create-datakey: chunked writes, small reads,
pread at 0, several on one handle, Python file objects (binary and text), and an error answer
with the same one-line shape: fsync() reports it (EINVAL, once), close() does not (a read-write
handle gets no FLUSH)."""
import errno, json, os, sys
import kmsio
from kmsio import read_all
P, kid = sys.argv[1], sys.argv[2]
f = P + "/keys/" + kid + "/create-datakey"
dec = P + "/decrypt-datakey"

def check_line(resp):
    assert resp.endswith(b"\n") and resp.count(b"\n") == 1, resp
    doc = json.loads(resp)
    assert resp[:-1] == json.dumps(doc, separators=(",", ":")).encode() or b": " not in resp, resp
    kmsio.record(resp)
    return doc

fd = os.open(f, os.O_RDWR)
# 1. chunked write, plain read.
for part in (b'{"datakey', b'_length":', b'"512"}'):
    os.write(fd, part)
d1 = check_line(read_all(fd))
assert d1["key_id"] == kid and len(d1["plain_text"]) == 128, d1
assert os.read(fd, 100) == b"", "read after EOF must return 0 bytes"
# 2. same handle again, small reads.
os.write(fd, b'{"datakey_length":"256"}')
d2 = check_line(read_all(fd, 7))
assert len(d2["plain_text"]) == 64, d2
# 3. pread at 0 after the write.
os.write(fd, b"{}")
r3 = os.pread(fd, 1 << 16, 0)
d3 = check_line(r3)
assert len(d3["plain_text"]) == 128 and d3["plain_text"] not in (d1["plain_text"],), d3
# 4. a decrypt on another handle checks the DEK of transaction 1.
g = os.open(dec, os.O_RDWR)
os.write(g, json.dumps({"key_id": kid, "cipher_text": d1["cipher_text"], "datakey_cipher_length": "64"}).encode())
d4 = check_line(read_all(g))
os.close(g)
assert d4["data_key"] == d1["plain_text"], (d4, d1)
os.close(fd)

# Python file objects: unbuffered binary, then buffered text mode.
with open(f, "r+b", buffering=0) as fo:
    fo.write(b"{}")
    d5 = check_line(fo.read())
with open(dec, "r+") as fo:
    print(json.dumps({"key_id": kid, "cipher_text": d5["cipher_text"], "datakey_cipher_length": "64"}), file=fo)
    fo.flush()
    d6 = json.loads(fo.read())
assert d6["data_key"] == d5["plain_text"], (d6, d5)
# An error response has the same one-line shape; fsync() reports it once, close() never (no FLUSH
# for a read-write handle: docs/using.md, "Errors as errno").
fd = os.open(dec, os.O_RDWR)
os.write(fd, b'{"key_id":"' + kid.encode() + b'"}')
e = check_line(read_all(fd))
assert e["error"]["error_code"] == "KMS.0204", e
try:
    os.fsync(fd)
    sys.exit("fsync() after a failed request succeeded")
except OSError as x:
    assert x.errno == errno.EINVAL, errno.errorcode.get(x.errno)
os.fsync(fd)  # reported once
os.close(fd)  # raises if close() reported anything
