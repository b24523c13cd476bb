#!/bin/bash
# kmsfs and the bench's null daemon (bench/nullfs, the physical-limit baseline) run the same
# transaction state machine (src/fs/fs_txn_state.c): the same sequence of opens, writes, reads
# and closes (programs, shells, re-reads, a write after a read, O_RDONLY first reads, a refused
# request and its errno on a write-only close or an fsync, dup'd descriptors) gives the same outcomes on both: the same
# errnos, and reads of the same shape (a whole answer line, end of file, or the same byte counts
# relative to the answer's length, which differs: nullfs answers a fixed 400-byte line).
source "$(dirname "$0")/../lib/common.sh"
NULLFS=$KMS_BUILD/bench/nullfs
[ -x "$NULLFS" ] || skip "nullfs not built (meson -Dbench=true): $NULLFS"

# null_mount KEY_ID: the null daemon on its own mount, with the same path to the same key (it
# never holds secrets); unmounted by the EXIT trap whatever happens. It burns 2 µs of CPU per
# request run (-o work_ns, the bench's work budget), which must change no outcome.
null_mount() {
	NULL_MNT=$KMS_WORK/null
	mkdir "$NULL_MNT"
	trap 'rc=$?; set +e; fusermount3 -uz "$NULL_MNT" 2>/dev/null; (exit $rc); kms_cleanup' EXIT
	"$NULLFS" "$NULL_MNT" -f -o "ids=$1,work_ns=2000" </dev/null >"$KMS_WORK/nullfs.stderr" 2>&1 &
	null_pid=$!
	kms_bg "$null_pid"
	for ((i = 0; i < 100; i++)); do
		[ "$(stat -f -c %t "$NULL_MNT" 2>/dev/null)" == 65735546 ] && return 0
		sleep 0.1
	done
	fail "nullfs not mounted on $NULL_MNT after 10 s"
}

# sequence FILE: run the scripts below on FILE; one outcome a line: "script.step op => result".
sequence() {
	"$KMS_PY" - "$1" <<'PY'
import errno, os, subprocess, sys
F = sys.argv[1]
FLAGS = {"rdwr": os.O_RDWR, "wronly": os.O_WRONLY | os.O_TRUNC, "rdonly": os.O_RDONLY}
DATA = {"{}": b"{}", "{": b"{", "}": b"}", "big": b" " * 70000}  # big: past the 64 KiB limit
# A script's steps: open FLAGS | w DATA | r N | all N (read to EOF, N bytes a read) |
# pread N OFF | dup | fsync | close; each on the descriptor opened or dup'd last.
SCRIPTS = [
    # A program: O_RDWR, write, pread(0), then read() from the cursor (past the request).
    ("a", "open rdwr; w {}; pread 65536 0; r 65536; r 65536; pread 10 3; close"),
    # A request in chunks, small reads, then a second request on the handle.
    ("b", "open rdwr; w {; w }; all 7; r 100; w {}; r 65536; close"),
    # The shell pattern: the request runs at close, the next O_RDONLY open takes its answer
    # once; the one after runs an empty request.
    ("c", "open wronly; w {}; close; open rdonly; r 65536; r 65536; close;"
          " open rdonly; all 65536; close"),
    # O_RDONLY: a first read past the answer (a seek from st_size) is ESPIPE and uses nothing
    # up; tiny reads, re-reads with pread.
    ("d", "open rdonly; pread 100 100000; r 5; r 65536; r 65536; pread 16 0; close"),
    # A write after a read starts the next request; the release runs it into the mailbox (after
    # close() returned: the O_RDONLY open may come first and run an empty request: a line too).
    ("e", "open rdwr; w {}; r 65536; w {}; close; open rdonly; r 65536; close"),
    # Open and close with nothing written: nothing runs, no mailbox.
    ("f", "open rdwr; close; open rdonly; all 65536; close"),
    # A request past 64 KiB: EFBIG, and again for every later write; a read-write handle's
    # close reports nothing (no FLUSH: using.md); the answer is still read.
    ("g", "open rdwr; w big; w {}; dup; close; r 65536; close"),
    # The same, run by a read; close reports nothing.
    ("h", "open rdwr; w big; r 65536; close"),
    # Write-only: close reports it, and the refused request's answer waits in the mailbox.
    ("i", "open wronly; w big; close; open rdonly; r 65536; close"),
    # After a refused request, a write starts a new one.
    ("j", "open rdwr; w big; r 65536; w {}; r 65536; close"),
    # fsync runs a written request and reports its errno, once; close then reports nothing.
    ("l", "open rdwr; w big; fsync; fsync; close"),
    # Dup'd write-only descriptors: the first close reports the errno, the second 0.
    ("m", "open wronly; w big; dup; close; close"),
]
# Shells and tools. (Not tail: it seeks from st_size, which kmsfs sets and nullfs leaves 0.)
SHELLS = [
    ("k.echo-cat", "echo '{}' >\"$1\" && cat \"$1\""),
    ("k.exec-fd", "exec 3<>\"$1\"; printf '{}' >&3; cat <&3; exec 3>&-"),
    ("k.cat", "cat \"$1\""),
    ("k.head", "head -c 5 \"$1\""),
    ("k.dd", "dd if=\"$1\" bs=7 status=none"),
]
L = None  # the length of this daemon's answer to {}


def norm(b):
    if not b:
        return "eof"
    if b.startswith(b"{") and b.endswith(b"\n") and b.count(b"\n") == 1:
        return "line"
    return str(len(b)) if len(b) <= 16 else "L%+d" % (len(b) - L)


def read_all(fd, n):
    b = b""
    while True:
        c = os.read(fd, n)
        if not c:
            return b
        b += c


def do(fds, w):
    """One step; the bytes it read, or None."""
    if w[0] == "open":
        fds.append(os.open(F, FLAGS[w[1]]))
    elif w[0] == "dup":
        fds.append(os.dup(fds[-1]))
    elif w[0] == "fsync":
        os.fsync(fds[-1])
    elif w[0] == "close":
        os.close(fds.pop())  # the descriptor is gone even when close() fails
    elif w[0] == "w":
        os.write(fds[-1], DATA[w[1]])
    elif w[0] == "r":
        return os.read(fds[-1], int(w[1]))
    elif w[0] == "all":
        return read_all(fds[-1], int(w[1]))
    elif w[0] == "pread":
        return os.pread(fds[-1], int(w[1]), int(w[2]))
    return None


fd = os.open(F, os.O_RDWR)
os.write(fd, b"{}")
L = len(os.pread(fd, 65536, 0))
os.close(fd)
for name, script in SCRIPTS:
    fds = []
    for i, text in enumerate(script.split(";")):
        w = text.split()
        try:
            r = do(fds, w)
            res = "ok" if r is None else norm(r)
        except OSError as e:
            res = errno.errorcode[e.errno]
        print("%s.%d %s => %s" % (name, i, " ".join(w), res))
    assert not fds, (name, "left open")
for name, cmd in SHELLS:
    r = subprocess.run(["bash", "-c", cmd, "sh", F], stdout=subprocess.PIPE)
    print("%s => %s %d" % (name, norm(r.stdout), r.returncode))
PY
}

kms_setup
# A work_ns out of range is refused before anything is mounted.
mkdir "$KMS_WORK/bad"
rc=0
"$NULLFS" "$KMS_WORK/bad" -f -o work_ns=-5 </dev/null >"$KMS_WORK/bad.out" 2>&1 || rc=$?
assert_eq "$rc" 2 "nullfs -o work_ns=-5: exit status"
grep -q "work_ns must be 0..1000000000" "$KMS_WORK/bad.out" || fail "no reason given: $(cat "$KMS_WORK/bad.out")"
[ "$(stat -f -c %t "$KMS_WORK/bad")" != 65735546 ] || fail "nullfs mounted despite work_ns=-5"

kms_token p >/dev/null
kms_mount
kms_login p
id=$(kms_create_key p same)
null_mount "$id"
rel=p/keys/$id/create-datakey-without-plaintext
sequence "$KMS_MNT/$rel" >"$KMS_WORK/kmsfs.out" || fail "the sequence failed on kmsfs"
sequence "$NULL_MNT/$rel" >"$KMS_WORK/nullfs.out" || fail "the sequence failed on nullfs"
[ "$(wc -l <"$KMS_WORK/kmsfs.out")" -ge 50 ] || fail "short sequence: $(cat "$KMS_WORK/kmsfs.out")"
diff -u "$KMS_WORK/kmsfs.out" "$KMS_WORK/nullfs.out" >&2 || fail "kmsfs and nullfs differ (- kmsfs, + nullfs)"
# Spot checks that the scripts do what their comments say (on both, since they are equal).
while read -r what want; do
	assert_eq "$(grep "^$what " "$KMS_WORK/kmsfs.out" | sed 's/.* => //')" "$want" "$what"
done <<'EOF'
a.3 L-2
c.4 line
d.1 ESPIPE
e.6 line
f.3 line
g.4 ok
g.5 line
g.6 ok
h.3 ok
i.2 EFBIG
j.4 line
l.2 EFBIG
l.3 ok
l.4 ok
m.3 EFBIG
m.4 ok
k.exec-fd line 0
EOF

fusermount3 -u "$NULL_MNT" || fail "fusermount3 -u $NULL_MNT failed"
for ((i = 0; i < 100; i++)); do kms_pid_gone "$null_pid" && break; sleep 0.1; done
kms_pid_gone "$null_pid" || fail "nullfs still running after unmount"
kms_umount
