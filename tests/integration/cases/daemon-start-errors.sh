#!/bin/bash
# Every error that stops a start reaches the terminal: kmsfs started as an admin does (no -f, so
# it daemonises) with a bad option, a missing mount point or an unusable state directory exits
# non-zero with exactly one line on stderr saying what is wrong, and mounts nothing. A bad
# option creates nothing.
source "$(dirname "$0")/../lib/common.sh"
kms_setup

# bad_start WORDS WHY ARGS...: exit 1, one stderr line containing WORDS, no mount.
bad_start() {
	local words=$1 why=$2 err=$KMS_WORK/start.err rc=0
	shift 2
	timeout 60 "$KMSFS" "$@" </dev/null >/dev/null 2>"$err" || rc=$?
	assert_eq "$rc" 1 "exit status with $why"
	assert_eq "$(wc -l <"$err")" 1 "lines on stderr with $why ($(cat "$err"))"
	assert_contains "$(cat "$err")" "$words" "stderr with $why"
	assert_eq "$(kms_mount_count "$KMS_MNT")" 0 "mounts with $why"
}

bad_start "bogus=1" "an unknown option" "$KMS_MNT" -o "state=$KMS_STATE,bogus=1"
[ ! -e "$KMS_STATE" ] || fail "a start with a bad option created the state dir"
bad_start "bogus" "an unknown option and a log file" "$KMS_MNT" -o "state=$KMS_STATE,log=$KMS_LOG,bogus"
bad_start "max_threads" "a bad option value" "$KMS_MNT" -o "state=$KMS_STATE,max_threads=x"
bad_start "$KMS_WORK/nowhere" "a missing mount point" "$KMS_WORK/nowhere" -o "state=$KMS_STATE"
: >"$KMS_WORK/file"
bad_start "Not a directory" "a state dir under a file" "$KMS_MNT" -o "state=$KMS_WORK/file/state"
bad_start "not a directory" "a state dir that is a file" "$KMS_MNT" -o "state=$KMS_WORK/file"
bad_start "log file" "a log file in a missing directory" \
	"$KMS_MNT" -o "state=$KMS_STATE,log=$KMS_WORK/no/dir/kmsfs.log"

# A damaged root key: the message names the file, on the terminal as well as in the log.
kms_init
head -c 5 /dev/urandom >"$KMS_STATE/root.key"
bad_start "root.key" "a short root key" "$KMS_MNT" -o "state=$KMS_STATE,log=$KMS_LOG"
grep -q "root.key" "$KMS_LOG" || fail "the log lacks the start error"
