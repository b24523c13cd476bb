#!/bin/bash
# The daemon as an admin runs it: the first start creates the state dir (0700) with root.key
# (0600) and kms.db (the token key sealed in it); without -f it returns only once the mount is
# live; a second daemon on the same state dir refuses (exit 1, message on stderr); SIGTERM unmounts and exits 0;
# fusermount3 -u makes a -f daemon exit 0; handles still open at a stop are freed by the daemon.
source "$(dirname "$0")/../lib/common.sh"
kms_setup

# Daemonised start: when the parent returns 0 the mount must already answer.
"$KMSFS" "$KMS_MNT" -o "state=$KMS_STATE,log=$KMS_LOG" </dev/null 2>>"$KMS_STDERR" ||
	fail "kmsfs (daemonising) exited $?"
KMS_PID=$(kms_find_daemon "$KMS_MNT") || fail "no kmsfs process serves $KMS_MNT"
echo "$KMS_PID" >"$KMS_WORK/daemon.pid"
mountpoint -q "$KMS_MNT" || fail "parent returned before the mount was live"
ls "$KMS_MNT" >/dev/null || fail "mount does not answer"

assert_eq "$(stat -c %a "$KMS_STATE")" 700 "state dir mode"
[ -f "$KMS_STATE/root.key" ] || fail "state dir lacks root.key"
assert_eq "$(stat -c %a "$KMS_STATE/root.key")" 600 "root.key mode"
[ ! -e "$KMS_STATE/token.key" ] || fail "a token.key file (it belongs sealed in kms.db)"
[ -f "$KMS_STATE/kms.db" ] || fail "state dir lacks kms.db"

# A second daemon on the same state dir must refuse, whatever its mount point.
mkdir "$KMS_WORK/mnt2"
rc=0
timeout 10 "$KMSFS" "$KMS_WORK/mnt2" -f -o "state=$KMS_STATE,log=$KMS_WORK/second.log" \
	</dev/null >"$KMS_WORK/second.out" 2>"$KMS_WORK/second.err" || rc=$?
if mountpoint -q "$KMS_WORK/mnt2"; then fusermount3 -uz "$KMS_WORK/mnt2"; fi
assert_eq "$rc" 1 "exit status of a second daemon on the same state dir"
[ -s "$KMS_WORK/second.err" ] || fail "second daemon refused without a message on stderr"
ls "$KMS_MNT" >/dev/null || fail "first daemon stopped serving after the refused second start"

# SIGTERM: unmount and exit 0 (not our child: poll until it is gone).
kill -TERM "$KMS_PID"
for ((i = 0; i < 100; i++)); do kms_pid_gone "$KMS_PID" && break; sleep 0.1; done
kms_pid_gone "$KMS_PID" || fail "kmsfs did not exit 10 s after SIGTERM"
KMS_PID=
mountpoint -q "$KMS_MNT" && fail "SIGTERM left the mount behind"

# SIGTERM to a -f child: exit status must be 0.
kms_mount
kill -TERM "$KMS_PID"
rc=0; wait "$KMS_PID" || rc=$?
KMS_PID= KMS_PID_CHILD=0
assert_eq "$rc" 0 "exit status after SIGTERM"
mountpoint -q "$KMS_MNT" && fail "SIGTERM left the mount behind"

# SIGTERM while handles are open (a written request, a read answer, an idle open): the kernel
# sends no RELEASE for them, so the daemon frees them itself (the ASan build's leak check makes
# a handle it forgot fail the exit status).
kms_start_project hp
hid=$(kms_create_key hp held)
"$KMS_PY" - "$KMS_MNT/hp" "$hid" "$KMS_WORK/held.ready" <<'PY' &
import os, sys, time
P, kid, ready = sys.argv[1:]
w = os.open(P + "/create-datakey", os.O_RDWR)
os.write(w, ('{"key_id":"%s"}' % kid).encode())
r = os.open(P + "/keys/" + kid + "/describe-key", os.O_RDWR)
os.write(r, b"{}")
assert b"key_info" in os.pread(r, 65536, 0)
i = os.open(P + "/list-keys", os.O_RDONLY)
open(ready, "w").close()
time.sleep(60)
PY
holder=$!
kms_bg $holder
for ((i = 0; i < 100; i++)); do [ -e "$KMS_WORK/held.ready" ] && break; sleep 0.1; done
[ -e "$KMS_WORK/held.ready" ] || fail "the handle holder did not get ready"
kill -TERM "$KMS_PID"
rc=0; wait "$KMS_PID" || rc=$?
KMS_PID= KMS_PID_CHILD=0
assert_eq "$rc" 0 "exit status after SIGTERM with open handles"
kill "$holder" 2>/dev/null || true
wait "$holder" 2>/dev/null || true
mountpoint -q "$KMS_MNT" && fail "SIGTERM left the mount behind"

# Restart on the existing state, then the normal clean unmount (exit 0 checked by kms_umount).
kms_mount
kms_umount
