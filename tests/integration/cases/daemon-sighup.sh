#!/bin/bash
# SIGHUP (what logrotate sends) reopens the log and the audit file and the daemon keeps serving:
# after the files are moved away and the daemon gets SIGHUP, it still answers, new files are
# created (0600) and receive the new lines, the moved files receive none. Done twice, and once
# for a daemonised start, where SIGHUP used to unmount.
source "$(dirname "$0")/../lib/common.sh"
kms_setup
audit=$KMS_WORK/audit.log
kms_start_project hup "audit=$audit"
tok=$KMS_TOKEN
kms_create_key hup before >/dev/null
grep -q '"action":"create-key"' "$audit" || fail "no audit line before the rotation"

# wait_file PATH: the daemon creates PATH after SIGHUP (bounded wait, no timing asserted).
wait_file() {
	local i
	for ((i = 0; i < 100; i++)); do [ -e "$1" ] && return 0; sleep 0.1; done
	fail "$1 not created 10 s after SIGHUP"
}

for round in 1 2; do
	mv "$audit" "$audit.$round"
	mv "$KMS_LOG" "$KMS_LOG.$round"
	old_audit=$(wc -l <"$audit.$round")
	kill -HUP "$KMS_PID"
	wait_file "$KMS_LOG"
	wait_file "$audit"
	kms_pid_gone "$KMS_PID" && fail "kmsfs exited on SIGHUP"
	assert_eq "$(kms_mount_count "$KMS_MNT")" 1 "mounts after SIGHUP"
	id=$(kms_create_key hup "after-$round")
	r=$(kms_call hup/describe-key "{\"key_id\":\"$id\"}")
	assert_eq "$(jget "$r" .key_info.key_alias)" "after-$round" "describe-key after SIGHUP"
	grep -q "\"key_id\":\"$id\"" "$audit" || fail "the new audit file lacks the new request"
	assert_eq "$(wc -l <"$audit.$round")" "$old_audit" "lines added to the moved audit file"
	grep -q "reopened" "$KMS_LOG" || fail "the new log lacks the reopen line"
	assert_eq "$(stat -c %a "$audit")" 600 "mode of the new audit file"
	assert_eq "$(stat -c %a "$KMS_LOG")" 600 "mode of the new log file"
done
kms_umount

# Daemonised (as logrotate meets it): SIGHUP keeps the mount.
"$KMSFS" "$KMS_MNT" -o "state=$KMS_STATE,log=$KMS_LOG,audit=$audit" </dev/null 2>>"$KMS_STDERR" ||
	fail "kmsfs (daemonising) exited $?"
KMS_PID=$(kms_find_daemon "$KMS_MNT") || fail "no kmsfs process serves $KMS_MNT"
echo "$KMS_PID" >"$KMS_WORK/daemon.pid"
mv "$KMS_LOG" "$KMS_LOG.3"
kill -HUP "$KMS_PID"
wait_file "$KMS_LOG"
kms_login hup "$tok"
kms_create_key hup daemonised >/dev/null
mountpoint -q "$KMS_MNT" || fail "SIGHUP unmounted the daemonised kmsfs"
kill -TERM "$KMS_PID"
for ((i = 0; i < 100; i++)); do kms_pid_gone "$KMS_PID" && break; sleep 0.1; done
kms_pid_gone "$KMS_PID" || fail "kmsfs did not exit 10 s after SIGTERM"
KMS_PID=
