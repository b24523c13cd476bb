#!/bin/bash
# Logs an operator can use (docs/service.md, Logs). Under systemd, stderr is the journal
# (JOURNAL_STREAM names its device and inode): every line kmsfs -f writes there carries an
# sd-daemon "<N>" priority prefix (6 info, 3 a start-up error) and no time stamp of its own; a
# JOURNAL_STREAM naming another file changes nothing. -o log=syslog sends the lines to syslog,
# facility daemon, with their priorities (info 30, warning 28, error 27), in the foreground and
# daemonised (no kmsfs.log then); SIGHUP keeps the daemon serving; a start-up error goes to stderr
# as well. syslog(3) writes to /dev/log: the syslog part runs in a private mount namespace where
# an overlay on /dev adds a /dev/log that is this case's socket (lib/dgram_sink.py syslog).
source "$(dirname "$0")/../lib/common.sh"
kms_setup unshare
tok=$(kms_token lg)
: >"$KMS_WORK/not-a-dir"

log "stderr is the journal's stream"
JOURNAL_STREAM=$(stat -c %d:%i "$KMS_STDERR") \
	kms_daemon_start "$KMS_STDERR" "$KMSFS" "$KMS_MNT" -o "state=$KMS_STATE"
KMS_PID=$KMS_DAEMON_PID KMS_PID_CHILD=1
echo "$KMS_PID" >"$KMS_WORK/daemon.pid"
kms_wait_live "$KMS_PID"
kms_login lg "$tok"
kms_create_key lg journal >/dev/null
kms_umount
err=$(cat "$KMS_STDERR")
grep -q "^<6>kmsfs .* serving '$KMS_MNT'" <<<"$err" || fail "no <6> serving line on stderr: $err"
grep -q "^<6>kmsfs stopped serving" <<<"$err" || fail "no <6> line when it stopped: $err"
if grep -vE '^<[0-7]>' <<<"$err"; then fail "lines without a priority prefix on the journal"; fi
if grep -E '^<[0-7]>[0-9]{4}-' <<<"$err"; then fail "time stamps on the journal"; fi

for who in journal other; do
	: >"$KMS_WORK/err.$who"
	rc=0
	JOURNAL_STREAM=$(stat -c %d:%i "$KMS_WORK/err.journal") \
		"$KMSFS" "$KMS_MNT" -f -o "state=$KMS_WORK/not-a-dir" </dev/null \
		2>>"$KMS_WORK/err.$who" || rc=$?
	assert_eq "$rc" 1 "exit status of a start on a state 'directory' that is a file ($who)"
done
grep -q "^<3>kmsfs: .*not-a-dir" "$KMS_WORK/err.journal" ||
	fail "start-up error on the journal: $(cat "$KMS_WORK/err.journal")"
grep -q "^kmsfs: .*not-a-dir" "$KMS_WORK/err.other" ||
	fail "start-up error with JOURNAL_STREAM naming another file: $(cat "$KMS_WORK/err.other")"

log "-o log=syslog, in a mount namespace with a fake /dev/log"
unshare -m --propagation private true 2>/dev/null || skip "cannot make a mount namespace (unshare -m)"
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || true
grep -qw overlay /proc/filesystems || skip "no overlay file system (for a fake /dev/log)"
mkdir "$KMS_WORK/devns"
cat >"$KMS_WORK/inside.sh" <<'INNER'
set -euo pipefail
w=$KMS_WORK
source "$KMS_LIB/harness.sh"
mount -t tmpfs -o mode=0700 kmsdev "$w/devns"
mkdir "$w/devns/upper" "$w/devns/work"
mount -t overlay -o "lowerdir=/dev,upperdir=$w/devns/upper,workdir=$w/devns/work" kmsdev /dev
ln -sfn "$w/log.sock" /dev/log
"$KMS_PY" "$KMS_PYLIB/dgram_sink.py" syslog "$w/log.sock" "$w/syslog.out" </dev/null &
sink=$! pid=
trap 'kms_daemon_kill "$pid" "$KMS_MNT"; kill "$sink"' EXIT
wait_for() { # FILE REGEX: wait up to 10 s for a line matching REGEX in FILE
	local i
	for ((i = 0; i < 100; i++)); do grep -qE "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
	echo "no '$2' in $1 after 10 s: $(tr '\n' ';' <"$1")"
	exit 1
}
wait_for "$w/syslog.out" '^listening'

kms_daemon_start "$w/fg.stderr" "$KMSFS" "$KMS_MNT" -o "state=$KMS_STATE,log=syslog,no_mlock"
pid=$KMS_DAEMON_PID
echo "$pid" >"$w/daemon.pid"
echo "fg $pid" >>"$w/pids"
kms_wait_fuse "$pid" "$KMS_MNT" || { echo "kmsfs -f -o log=syslog did not mount"; exit 1; }
wait_for "$w/syslog.out" "kmsfs\[$pid\]: kmsfs .* serving"
kill -HUP "$pid"
wait_for "$w/syslog.out" "kmsfs\[$pid\]: SIGHUP"
kms_pid_gone "$pid" && { echo "kmsfs exited on SIGHUP"; exit 1; }
fusermount3 -u "$KMS_MNT"
rc=0
wait "$pid" || rc=$?
[ "$rc" -eq 0 ] || { echo "kmsfs -f -o log=syslog exited $rc"; exit 1; }
wait_for "$w/syslog.out" "kmsfs\[$pid\]: kmsfs stopped serving"

"$KMSFS" "$KMS_MNT" -o "state=$KMS_STATE,log=syslog" </dev/null 2>>"$w/bg.stderr"
pid=$("$KMS_PY" "$KMS_IO" finddaemon "$KMS_MNT" "$(readlink -f "$KMSFS")")
echo "$pid" >"$w/daemon.pid"
echo "bg $pid" >>"$w/pids"
wait_for "$w/syslog.out" "kmsfs\[$pid\]: kmsfs .* serving"
kms_daemon_stop "$pid" "$KMS_MNT"
pid=

rc=0
"$KMSFS" "$KMS_MNT" -f -o "state=$w/not-a-dir,log=syslog" </dev/null 2>"$w/err.syslog" || rc=$?
[ "$rc" -eq 1 ] || { echo "a failed start with -o log=syslog exited $rc"; exit 1; }
wait_for "$w/syslog.out" "^<27>.*kmsfs\[[0-9]+\]: .*not-a-dir"
INNER
unshare -m --propagation private env KMS_WORK="$KMS_WORK" KMS_LIB="$KMS_LIB" KMS_PY="$KMS_PY" \
	KMS_PYLIB="$KMS_PYLIB" KMS_IO="$KMS_IO" KMSFS="$KMSFS" KMS_STATE="$KMS_STATE" \
	KMS_MNT="$KMS_MNT" bash "$KMS_WORK/inside.sh" >"$KMS_WORK/inside.out" 2>&1 ||
	fail "in the namespace: $(tail -n 5 "$KMS_WORK/inside.out")"
[ -e /dev/log ] && [ "$(readlink /dev/log)" == "$KMS_WORK/log.sock" ] && fail "the fake /dev/log reached the host"

syslog=$(cat "$KMS_WORK/syslog.out")
fg=$(sed -n 's/^fg //p' "$KMS_WORK/pids")
bg=$(sed -n 's/^bg //p' "$KMS_WORK/pids")
grep -qE "^<30>.*kmsfs\[$fg\]: kmsfs .* serving '$KMS_MNT'" <<<"$syslog" || fail "no info line: $syslog"
grep -qE "^<28>.*kmsfs\[$fg\]: .*(mlockall|not locked)" <<<"$syslog" ||
	fail "no warning line (-o no_mlock): $syslog"
grep -qE "^<30>.*kmsfs\[$fg\]: SIGHUP: log and audit files reopened" <<<"$syslog" ||
	fail "no SIGHUP line: $syslog"
grep -qE "^<30>.*kmsfs\[$bg\]: kmsfs .* serving" <<<"$syslog" ||
	fail "no line from the daemonised kmsfs: $syslog"
[ -e "$KMS_STATE/kmsfs.log" ] && fail "a daemon with -o log=syslog wrote $KMS_STATE/kmsfs.log"
[ -s "$KMS_WORK/fg.stderr" ] && fail "kmsfs -f -o log=syslog wrote to stderr: $(cat "$KMS_WORK/fg.stderr")"
grep -q "^kmsfs: .*not-a-dir" "$KMS_WORK/err.syslog" ||
	fail "a start-up error with -o log=syslog must reach stderr too: $(cat "$KMS_WORK/err.syslog")"
exit 0
