#!/bin/bash
# The logrotate snippet (dist/kmsfs.logrotate, installed as /etc/logrotate.d/kmsfs): logrotate
# parses it (`logrotate -d`), and a forced rotation with its paths moved into this case's work
# dir rotates a running daemon's log and audit file and signals it through STATE/daemon.lock:
# the daemon reopens both, writes the new lines to the new files (0600), none to the rotated
# ones, and keeps serving. A stopped daemon's stale lock file is not signalled.
source "$(dirname "$0")/../lib/common.sh"
kms_setup logrotate flock
CONF=$KMS_SRC/dist/kmsfs.logrotate

out=$(logrotate -d -s "$KMS_WORK/lr.debug.state" "$CONF" 2>&1) || fail "logrotate -d $CONF: $out"
assert_not_contains "$out" "error" "logrotate -d $CONF"
assert_contains "$out" "/var/lib/kmsfs/kmsfs.log" "logrotate -d $CONF"

# The installed paths, moved here: /var/lib/kmsfs is this case's state dir, /var/log/kmsfs
# its log dir (logrotate wants directories that only root may write).
LOGDIR=$KMS_WORK/log
install -d -m 0700 "$LOGDIR"
sed -e "s#/var/lib/kmsfs#$KMS_STATE#g" -e "s#/var/log/kmsfs#$LOGDIR#g" "$CONF" >"$KMS_WORK/kmsfs.logrotate"
audit=$LOGDIR/audit.log
# Daemonised with its default log, STATE/kmsfs.log, as a service runs it.
tok=$(kms_token rot)
KMS_LOG=$KMS_STATE/kmsfs.log
"$KMSFS" "$KMS_MNT" -o "state=$KMS_STATE,audit=$audit" </dev/null 2>>"$KMS_STDERR" ||
	fail "kmsfs (daemonising) exited $?"
KMS_PID=$(kms_find_daemon "$KMS_MNT") || fail "no kmsfs process serves $KMS_MNT"
echo "$KMS_PID" >"$KMS_WORK/daemon.pid"
kms_login rot "$tok"
kms_create_key rot before >/dev/null
[ -s "$KMS_LOG" ] && [ -s "$audit" ] || fail "no log or audit lines before the rotation"

logrotate -f -s "$KMS_WORK/lr.state" "$KMS_WORK/kmsfs.logrotate" 2>"$KMS_WORK/lr.err" ||
	fail "logrotate -f failed: $(cat "$KMS_WORK/lr.err")"
[ -s "$KMS_LOG.1" ] || fail "the log was not rotated to kmsfs.log.1: $(ls -l "$KMS_STATE")"
[ -s "$audit.1" ] || fail "the audit file was not rotated to audit.log.1: $(ls -l "$LOGDIR")"
# The daemon logs that line once it reopened both files.
for ((i = 0; i < 100; i++)); do grep -qs "reopened" "$KMS_LOG" && break; sleep 0.1; done
grep -qs "reopened" "$KMS_LOG" || fail "kmsfs did not reopen its log 10 s after logrotate's SIGHUP"
kms_pid_gone "$KMS_PID" && fail "kmsfs exited on logrotate's SIGHUP"
old_audit=$(wc -l <"$audit.1")
id=$(kms_create_key rot after)
r=$(kms_call rot/describe-key "{\"key_id\":\"$id\"}")
assert_eq "$(jget "$r" .key_info.key_alias)" after "describe-key after the rotation"
grep -q "\"key_id\":\"$id\"" "$audit" || fail "the new audit file lacks the new request"
assert_eq "$(wc -l <"$audit.1")" "$old_audit" "lines added to the rotated audit file"
assert_eq "$(stat -c %a "$KMS_LOG")" 600 "mode of the new log"
assert_eq "$(stat -c %a "$audit")" 600 "mode of the new audit file"

# Stopped: daemon.lock stays with the old pid, nobody holds it; the snippet must not signal
# that pid (it may belong to another process by now). A sleeping process with that pid stands
# in for the reused pid.
fusermount3 -u "$KMS_MNT"
kms_wait_exit "$KMS_PID" || fail "kmsfs still runs 10 s after unmount"
KMS_PID=
sleep 300 &
decoy=$!
kms_bg "$decoy"
printf '%s\n%s\n' "$decoy" "$KMS_MNT" >"$KMS_STATE/daemon.lock"
echo "line" >>"$KMS_LOG"
logrotate -f -s "$KMS_WORK/lr.state" "$KMS_WORK/kmsfs.logrotate" 2>"$KMS_WORK/lr.err" ||
	fail "logrotate -f (daemon stopped) failed: $(cat "$KMS_WORK/lr.err")"
sleep 0.2
kill -0 "$decoy" 2>/dev/null || fail "logrotate signalled the pid of a stale daemon.lock"
