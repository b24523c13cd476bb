#!/bin/bash
# kmsfs and the bench's null daemon (bench/nullfs, the physical-limit baseline) run the same
# transaction state machine (src/fs/fs_txn_state.c): the same sequence of opens, writes, reads
# and closes (programs, shells, re-reads, a write after a read, O_RDONLY first reads, a refused
# request and its errno on close, dup'd descriptors) gives the same outcomes on both: the same
# errnos, and reads of the same shape (a whole answer line, end of file, or the same byte counts
# relative to the answer's length, which differs: nullfs answers a fixed 400-byte line).
source "$(dirname "$0")/../lib/common.sh"
NULLFS=$KMS_BUILD/bench/nullfs
[ -x "$NULLFS" ] || skip "nullfs not built (meson -Dbench=true): $NULLFS"
kms_setup
kms_token p >/dev/null
kms_mount
kms_login p
id=$(kms_create_key p same)

# The null daemon on its own mount, with the same path to the same key; it never holds secrets.
NULL_MNT=$KMS_WORK/null
mkdir "$NULL_MNT"
trap 'rc=$?; set +e; fusermount3 -uz "$NULL_MNT" 2>/dev/null; (exit $rc); kms_cleanup' EXIT
"$NULLFS" "$NULL_MNT" -f -o "ids=$id" </dev/null >"$KMS_WORK/nullfs.stderr" 2>&1 &
null_pid=$!
kms_bg "$null_pid"
for ((i = 0; i < 100; i++)); do
	[ "$(stat -f -c %t "$NULL_MNT" 2>/dev/null)" == 65735546 ] && break
	sleep 0.1
done
[ "$(stat -f -c %t "$NULL_MNT" 2>/dev/null)" == 65735546 ] || fail "nullfs not mounted"

# sequence FILE: one outcome per line, "what result".
sequence() {
	"$KMS_PY" - "$1" <<'PY'
import errno, os, subprocess, sys
F = sys.argv[1]
L = None  # the length of this daemon's answer to {}


def norm(b):
    if not b:
        return "eof"
    if b.startswith(b"{") and b.endswith(b"\n") and b.count(b"\n") == 1:
        return "line"
    return str(len(b)) if len(b) <= 16 else "L%+d" % (len(b) - L)


def step(what, fn, *args):
    try:
        r = fn(*args)
    except OSError as e:
        print(what, errno.errorcode[e.errno])
        return None
    print(what, norm(r) if isinstance(r, bytes) else "ok")
    return r


def read_all(fd, n=65536):
    b = b""
    while True:
        c = os.read(fd, n)
        if not c:
            return b
        b += c


def opened(flags):
    return os.open(F, flags)


fd = opened(os.O_RDWR)
os.write(fd, b"{}")
L = len(os.pread(fd, 65536, 0))
os.close(fd)

# A program: O_RDWR, write, pread(0), then read() from the cursor (past the request).
fd = opened(os.O_RDWR)
step("a.write", os.write, fd, b"{}")
step("a.pread0", os.pread, fd, 65536, 0)
step("a.read", os.read, fd, 65536)
step("a.read-eof", os.read, fd, 65536)
step("a.pread3", os.pread, fd, 10, 3)
step("a.close", os.close, fd)

# A request in chunks, small reads, then a second request on the handle.
fd = opened(os.O_RDWR)
step("b.write1", os.write, fd, b"{")
step("b.write2", os.write, fd, b"}")
step("b.read7", read_all, fd, 7)
step("b.read-eof", os.read, fd, 100)
step("b.write-again", os.write, fd, b"{}")
step("b.read-again", os.read, fd, 65536)
step("b.close", os.close, fd)

# The shell pattern: the request runs at close, the next O_RDONLY open takes its answer once;
# another one runs an empty request.
fd = opened(os.O_WRONLY | os.O_TRUNC)
step("c.write", os.write, fd, b"{}")
step("c.close", os.close, fd)
fd = opened(os.O_RDONLY)
step("c.read", os.read, fd, 65536)
step("c.read-eof", os.read, fd, 65536)
step("c.close-r", os.close, fd)
fd = opened(os.O_RDONLY)
step("c.read-empty", read_all, fd)
step("c.close-r2", os.close, fd)

# O_RDONLY: a first read past the answer (a seek from st_size) is ESPIPE and uses nothing up;
# tiny reads, re-reads with pread.
fd = opened(os.O_RDONLY)
step("d.pread-far", os.pread, fd, 100, 100000)
step("d.read5", os.read, fd, 5)
step("d.read-rest", os.read, fd, 65536)
step("d.read-eof", os.read, fd, 65536)
step("d.pread-again", os.pread, fd, 16, 0)
step("d.close", os.close, fd)

# A write after a read starts the next request; close runs it into the mailbox.
fd = opened(os.O_RDWR)
step("e.write", os.write, fd, b"{}")
step("e.read", os.read, fd, 65536)
step("e.write-after-read", os.write, fd, b"{}")
step("e.close", os.close, fd)
fd = opened(os.O_RDONLY)
step("e.mailbox", os.read, fd, 65536)
step("e.close-r", os.close, fd)

# Open and close with nothing written: nothing runs, no mailbox.
fd = opened(os.O_RDWR)
step("f.close", os.close, fd)
fd = opened(os.O_RDONLY)
step("f.read", read_all, fd)
step("f.close-r", os.close, fd)

# A request past 64 KiB: EFBIG, and again for every later write; close (the first of two dup'd
# descriptors) reports it, once; the answer is still read.
fd = opened(os.O_RDWR)
step("g.write-big", os.write, fd, b" " * 70000)
step("g.write-more", os.write, fd, b"{}")
fd2 = os.dup(fd)
step("g.close-dup", os.close, fd2)
step("g.read", os.read, fd, 65536)
step("g.close", os.close, fd)
# The same run by a read, then close.
fd = opened(os.O_RDWR)
step("h.write-big", os.write, fd, b" " * 70000)
step("h.read", os.read, fd, 65536)
step("h.close", os.close, fd)
# Write-only: close reports it, and the refused answer waits in the mailbox.
fd = opened(os.O_WRONLY | os.O_TRUNC)
step("i.write-big", os.write, fd, b" " * 70000)
step("i.close", os.close, fd)
fd = opened(os.O_RDONLY)
step("i.mailbox", os.read, fd, 65536)
step("i.close-r", os.close, fd)
# After a refused request, a write starts a new one.
fd = opened(os.O_RDWR)
step("j.write-big", os.write, fd, b" " * 70000)
step("j.read", os.read, fd, 65536)
step("j.write", os.write, fd, b"{}")
step("j.read2", os.read, fd, 65536)
step("j.close", os.close, fd)

# Shells and tools. (Not tail: it seeks from st_size, which kmsfs sets and nullfs leaves 0.)
for what, cmd in (
    ("k.echo-cat", "echo '{}' >\"$1\" && cat \"$1\""),
    ("k.exec-fd", "exec 3<>\"$1\"; printf '{}' >&3; cat <&3; exec 3>&-"),
    ("k.cat", "cat \"$1\""),
    ("k.head", "head -c 5 \"$1\""),
    ("k.dd", "dd if=\"$1\" bs=7 status=none"),
):
    r = subprocess.run(["bash", "-c", cmd, "sh", F], stdout=subprocess.PIPE)
    print(what, norm(r.stdout), r.returncode)
PY
}

rel=p/keys/$id/create-datakey-without-plaintext
sequence "$KMS_MNT/$rel" >"$KMS_WORK/kmsfs.out" || fail "the sequence failed on kmsfs"
sequence "$NULL_MNT/$rel" >"$KMS_WORK/nullfs.out" || fail "the sequence failed on nullfs"
[ "$(wc -l <"$KMS_WORK/kmsfs.out")" -ge 50 ] || fail "short sequence: $(cat "$KMS_WORK/kmsfs.out")"
diff -u "$KMS_WORK/kmsfs.out" "$KMS_WORK/nullfs.out" >&2 || fail "kmsfs and nullfs differ (- kmsfs, + nullfs)"
# Spot checks that the sequence says what its comments say (on both, since they are equal).
while read -r what want; do
	assert_eq "$(sed -n "s/^$what //p" "$KMS_WORK/kmsfs.out")" "$want" "$what"
done <<'EOF'
a.read L-2
c.read line
d.pread-far ESPIPE
e.mailbox line
f.read line
g.close-dup EFBIG
g.close ok
h.close EFBIG
i.close EFBIG
j.read2 line
k.exec-fd line 0
EOF

fusermount3 -u "$NULL_MNT" || fail "fusermount3 -u $NULL_MNT failed"
for ((i = 0; i < 100; i++)); do _kms_pid_gone "$null_pid" && break; sleep 0.1; done
_kms_pid_gone "$null_pid" || fail "nullfs still running after unmount"
kms_umount
