#!/bin/bash
# Requests over 64 KiB: the write that goes past 65536 bytes fails with EFBIG and the response is
# KMS.0203 (one big write, many small writes, `cat big > f` + `cat f`); exactly 64 KiB is fine.
source "$(dirname "$0")/../lib/common.sh"
kms_setup
kms_token tl >/dev/null
kms_mount
kms_login tl
id=$(kms_create_key tl app)
P=$KMS_MNT/tl

"$KMS_PY" - "$P" "$id" <<'PY'
import errno, json, os, sys
sys.path.insert(0, os.path.dirname(os.environ["KMS_IO"]))
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
PY

head -c 70000 /dev/zero | tr '\0' ' ' >"$KMS_WORK/big.json"
rc=0; err=$(cat "$KMS_WORK/big.json" 2>&1 >"$P/create-key") || rc=$?
[ "$rc" -ne 0 ] || fail "cat of 70000 bytes > f exited 0"
assert_contains "$err" "File too large" "cat big > f"
assert_errcode "$(cat "$P/create-key")" KMS.0203
kms_write tl/create-key - <"$KMS_WORK/big.json"
assert_errno write EFBIG
assert_errno close EFBIG

kill -0 "$KMS_PID" || fail "daemon died"
assert_eq "$(jget "$(kms_call tl/describe-key "{\"key_id\":\"$id\"}")" .key_info.key_id)" "$id" "after the big requests"
kms_umount
