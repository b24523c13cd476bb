#!/bin/bash
# systemd readiness (docs/service.md, Type=notify) against a fake systemd (lib/dgram_sink.py
# notify on NOTIFY_SOCKET): kmsfs -f sends READY=1 only once the mount answers (the sink lists
# the mount root the moment it gets it), with a STATUS= line naming the mount point, the state and
# how many projects and keys it serves; STOPPING=1 comes after READY=1 and before the exit, on
# fusermount3 -u and on SIGTERM; every message comes from the daemon's own pid. Daemonised (no
# -f), READY=1 names the serving process (MAINPID=). A start that fails says why in STATUS= and
# never sends READY=1.
source "$(dirname "$0")/../lib/common.sh"
kms_setup ldd
[[ "$(ldd "$KMSFS")" == *libsystemd* ]] ||
	skip "kmsfs built without libsystemd (-Dsystemd=disabled, or libsystemd-dev missing): no sd_notify"

tok=$(kms_token nt)
kms_token other >/dev/null
for k in k1 k2 k3; do
	kms_ctl call nt create-key "{\"key_alias\":\"$k\"}" >/dev/null || fail "create-key $k"
done
state_abs=$(readlink -f "$KMS_STATE")

# sink_start NAME: a fake notification socket $KMS_WORK/NAME.sock; what it gets: $KMS_WORK/NAME.out.
sink_start() {
	local i
	"$KMS_PY" "$KMS_PYLIB/dgram_sink.py" notify "$KMS_WORK/$1.sock" "$KMS_WORK/$1.out" \
		"$KMS_MNT" nt </dev/null 2>>"$KMS_WORK/sink.err" &
	kms_bg $!
	for ((i = 0; i < 100; i++)); do
		grep -q '^listening' "$KMS_WORK/$1.out" 2>/dev/null && return 0
		sleep 0.1
	done
	fail "the fake notification socket did not start: $(cat "$KMS_WORK/sink.err")"
}

# sink_wait NAME REGEX: wait up to 10 s until the sink NAME got a line matching REGEX.
sink_wait() {
	local i
	for ((i = 0; i < 100; i++)); do
		grep -qE "$2" "$KMS_WORK/$1.out" && return 0
		sleep 0.1
	done
	fail "no '$2' from kmsfs 10 s after its start; the sink got: $(tr '\n' ';' <"$KMS_WORK/$1.out")"
}

# check_run NAME PID KEYS: READY=1 (the mount answers; from PID; it serves 2 projects and KEYS
# keys), then STOPPING=1.
check_run() {
	local out=$KMS_WORK/$1.out ready
	sink_wait "$1" 'STOPPING=1'
	grep -q '^ready-check ok$' "$out" ||
		fail "$1: at READY=1 the mount did not answer: $(grep ready-check "$out")"
	assert_eq "$(grep -c 'READY=1' "$out")" 1 "$1: READY=1 messages"
	assert_eq "$(grep -oE 'READY=1|STOPPING=1' "$out" | tr '\n' ' ')" "READY=1 STOPPING=1 " \
		"$1: order of the messages"
	ready=$(grep 'READY=1' "$out")
	assert_eq "${ready%% *}" "$2" "$1: sender of READY=1"
	assert_contains "$ready" "STATUS=serving $KMS_MNT from $state_abs: 2 projects, $3 keys" \
		"$1: READY=1"
	assert_eq "$(grep 'STOPPING=1' "$out" | cut -d' ' -f1)" "$2" "$1: sender of STOPPING=1"
	if grep -v '^listening' "$out" | grep -vE "^($2 |ready-check)"; then
		fail "$1: a message from another process"
	fi
}

log "foreground, stopped by fusermount3 -u"
sink_start fg
NOTIFY_SOCKET=$KMS_WORK/fg.sock kms_mount
sink_wait fg 'READY=1'
kms_login nt "$tok"
kms_create_key nt served >/dev/null
pid=$KMS_PID
kms_umount
check_run fg "$pid" 3
assert_not_contains "$(cat "$KMS_WORK/fg.out")" MAINPID "a foreground daemon's messages"

log "foreground, stopped by SIGTERM"
sink_start term
NOTIFY_SOCKET=$KMS_WORK/term.sock kms_mount
sink_wait term 'READY=1'
pid=$KMS_PID
kill -TERM "$pid"
kms_wait_exit "$pid" || fail "kmsfs still runs 10 s after SIGTERM"
rc=0
wait "$pid" || rc=$?
KMS_PID= KMS_PID_CHILD=0
assert_eq "$rc" 0 "exit status after SIGTERM"
check_run term "$pid" 4

log "daemonised: MAINPID= names the serving process"
sink_start bg
NOTIFY_SOCKET=$KMS_WORK/bg.sock "$KMSFS" "$KMS_MNT" -o "state=$KMS_STATE,log=$KMS_LOG" \
	</dev/null 2>>"$KMS_STDERR" || fail "kmsfs (daemonising) exited $?"
KMS_PID=$(kms_find_daemon "$KMS_MNT") || fail "no kmsfs process serves $KMS_MNT"
echo "$KMS_PID" >"$KMS_WORK/daemon.pid"
sink_wait bg 'READY=1'
assert_contains "$(grep 'READY=1' "$KMS_WORK/bg.out")" "MAINPID=$KMS_PID|" "READY=1 of a daemon"
fusermount3 -u "$KMS_MNT" || fail "fusermount3 -u"
kms_wait_exit "$KMS_PID" || fail "kmsfs still runs 10 s after unmount"
check_run bg "$KMS_PID" 4
KMS_PID=

log "a failed start: STATUS= says why, no READY=1"
sink_start fail
: >"$KMS_WORK/not-a-dir"
rc=0
NOTIFY_SOCKET=$KMS_WORK/fail.sock "$KMSFS" "$KMS_MNT" -f -o "state=$KMS_WORK/not-a-dir" \
	</dev/null 2>>"$KMS_STDERR" || rc=$?
assert_eq "$rc" 1 "exit status of a start on a state 'directory' that is a file"
sink_wait fail 'STATUS=.*not-a-dir'
assert_not_contains "$(cat "$KMS_WORK/fail.out")" READY=1 "messages of a failed start"
kms_mounted "$KMS_MNT" && fail "a failed start left a mount"
exit 0
