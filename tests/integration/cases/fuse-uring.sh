#!/bin/bash
# FUSE requests over io_uring (-o io_uring). The case follows the kernel's switch as it finds it
# (scripts/run-tests turns it off for the plain build and on for the ASan one, so both
# transports are tested; the case never changes it: other cases run meanwhile).
# Switch on: the daemon says so in its log and .metrics counts the requests its ring threads
# (4 per CPU) answer; every pattern works as on /dev/fuse, from both CPUs at once: O_RDWR
# transactions of threads that decrypt their own DEKs, the shell's echo and cat, busybox cat,
# dd, a 64 KiB request and a longer one (EFBIG), errors as JSON and errno. Unmount and SIGTERM
# end the daemon with status 0; after SIGKILL the mount fails with ENOTCONN (ECONNABORTED for a
# few milliseconds, while the kernel still releases the dead daemon's rings) and a new daemon
# serves again. io_uring=off, and -s, serve over /dev/fuse.
# Switch off: io_uring=on refuses to start (one line naming the switch), the default (auto)
# serves over /dev/fuse. Bad values of io_uring and io_uring_threads refuse to start.
source "$(dirname "$0")/../lib/common.sh"
SWITCH=/sys/module/fuse/parameters/enable_uring
kms_setup

# bad_start WORDS WHY OPTS: exit 1, one line on stderr containing WORDS, nothing mounted.
bad_start() {
	local rc=0 err=$KMS_WORK/start.err
	timeout 60 "$KMSFS" "$KMS_MNT" -o "state=$KMS_STATE,$3" </dev/null >/dev/null 2>"$err" || rc=$?
	assert_eq "$rc" 1 "exit status with $2"
	assert_eq "$(wc -l <"$err")" 1 "lines on stderr with $2 ($(cat "$err"))"
	assert_contains "$(cat "$err")" "$1" "stderr with $2"
	assert_eq "$(kms_mount_count "$KMS_MNT")" 0 "mounts with $2"
}
bad_start "give auto, on or off" "io_uring=fast" "io_uring=fast"
bad_start "io_uring_threads" "io_uring_threads=0" "io_uring_threads=0"
bad_start "io_uring_threads" "io_uring_threads=65" "io_uring_threads=65"
rc=0
timeout 60 "$KMSFS" "$KMS_MNT" -s -o "state=$KMS_STATE,io_uring=on" </dev/null >/dev/null 2>"$KMS_WORK/s.err" || rc=$?
assert_eq "$rc" 1 "exit status with -s and io_uring=on"
assert_contains "$(cat "$KMS_WORK/s.err")" "-s" "stderr with -s and io_uring=on"

# metric NAME: its value in /kms/.metrics.
metric() { awk -v n="$1" '$1 == n {print $2}' "$KMS_MNT/.metrics"; }

switch=N
[ -r "$SWITCH" ] && switch=$(cat "$SWITCH")
if [ "$switch" != Y ]; then
	log "the kernel's switch is off ($SWITCH: ${switch:-absent}): /dev/fuse only"
	bad_start "enable_uring" "io_uring=on and the switch off" "io_uring=on"
	kms_start_project ur
	id=$(kms_create_key ur app)
	r=$(kms_call "ur/keys/$id/create-datakey" '{}')
	assert_eq "$(jget "$r" .key_id)" "$id" "a transaction over /dev/fuse"
	assert_eq "$(metric kmsfs_fuse_uring)" 0 "kmsfs_fuse_uring with the switch off"
	assert_not_contains "$(cat "$KMS_LOG")" "io_uring" "the log with the switch off"
	kms_umount
	exit 0
fi

# ---- the switch is on
# A queue per possible CPU (the highest one + 1); 4 threads for each CPU online, 1 for the others.
queues=$(($(sed 's/.*[-,]//' /sys/devices/system/cpu/possible) + 1))
online=0
IFS=, read -ra ranges </sys/devices/system/cpu/online
for r in "${ranges[@]}"; do
	online=$((online + ${r#*-} - ${r%-*} + 1))
done
kms_start_project ur io_uring=on
P=$KMS_MNT/ur
id=$(kms_create_key ur app)
for ((i = 0; i < 50; i++)); do grep -q "over io_uring" "$KMS_LOG" && break; sleep 0.1; done
assert_contains "$(cat "$KMS_LOG")" "FUSE requests over io_uring: 4 threads per CPU" "the log"
rings=$(find "/proc/$KMS_PID/fd" -lname 'anon_inode:\[io_uring\]' | wc -l)
assert_eq "$rings" $((4 * online + queues - online)) \
	"io_uring descriptors of the daemon ($online CPUs online, $queues queues)"
n0=$(metric kmsfs_fuse_uring_requests_total)
assert_eq "$(metric kmsfs_fuse_uring)" 1 "kmsfs_fuse_uring"

# Threads of processes pinned to each CPU: every queue answers, nothing crosses.
pids=()
for ((c = 0; c < online && c < 4; c++)); do
	taskset -c "$c" "$KMS_PY" "$KMS_PYLIB/txn_threads.py" "$P" "$id" 2>"$KMS_WORK/threads.$c" &
	pids+=($!)
done
for ((c = 0; c < ${#pids[@]}; c++)); do
	wait "${pids[c]}" || fail "transactions pinned to CPU $c: $(tail -n 3 "$KMS_WORK/threads.$c")"
done

# The shell, busybox, dd.
req="{\"key_id\":\"$id\",\"datakey_length\":\"512\"}"
echo "$req" >"$P/create-datakey" || fail "echo > create-datakey failed"
r=$(kms_cat "$P/create-datakey")
assert_eq "$(jget "$r" .key_id)" "$id" "echo > f; cat f"
if command -v busybox >/dev/null; then
	echo "$req" >"$P/create-datakey"
	r=$(busybox cat "$P/create-datakey")
	kms_record "$r"
	assert_eq "$(jget "$r" .key_id)" "$id" "busybox cat"
fi
echo "$req" | dd of="$P/keys/$id/create-datakey" bs=4096 status=none || fail "dd of= failed"
r=$(dd if="$P/keys/$id/create-datakey" bs=65536 status=none)
kms_record "$r"
assert_eq "$(jget "$r" .key_id)" "$id" "dd"

# Requests as long as they may be, and longer; errors as JSON and errno.
kms_py bad_too_long "$P" "$id"
kms_write ur/create-key '{"key_alias":"bad alias"}'
assert_errno close EINVAL
assert_errcode "$(cat "$P/create-key")" KMS.1101

n1=$(metric kmsfs_fuse_uring_requests_total)
[ "$n1" -gt $((n0 + 1000)) ] || fail "only $((n1 - n0)) requests over io_uring for the transactions above"
log "$((n1 - n0)) requests answered over io_uring"
kill -0 "$KMS_PID" || fail "daemon died"
kms_umount

# SIGTERM: the daemon ends its ring threads, unmounts and exits 0.
kms_mount io_uring=on
kms_login ur "$KMS_TOKEN"
r=$(kms_call "ur/keys/$id/create-datakey" '{}')
assert_eq "$(jget "$r" .key_id)" "$id" "after a remount"
kill -TERM "$KMS_PID"
kms_wait_exit "$KMS_PID" || fail "kmsfs still running 10 s after SIGTERM: $(kms_threads "$KMS_PID")"
rc=0
wait "$KMS_PID" || rc=$?
assert_eq "$rc" 0 "exit status after SIGTERM"
KMS_PID= KMS_PID_CHILD=0
assert_eq "$(kms_mount_count "$KMS_MNT")" 0 "mounts after SIGTERM"

# SIGKILL: the mount fails with ENOTCONN (never hangs); a new daemon serves again.
kms_mount io_uring=on
kms_login ur "$KMS_TOKEN"
kms_kill9
kms_assert_stale "a read after SIGKILL" cat "$P/create-datakey"
fusermount3 -u "$KMS_MNT" || fail "fusermount3 -u of the dead mount failed"
kms_mount io_uring=on
kms_login ur "$KMS_TOKEN"
r=$(kms_call "ur/keys/$id/create-datakey" '{}')
assert_eq "$(jget "$r" .key_id)" "$id" "after SIGKILL and a new start"
kms_umount

# io_uring=off, and -s (one thread serves every request): /dev/fuse only, with the switch on.
for opt in io_uring=off -s; do
	if [ "$opt" == -s ]; then
		kms_daemon_start "$KMS_STDERR" "$KMSFS" "$KMS_MNT" -s -o "state=$KMS_STATE,log=$KMS_LOG"
		KMS_PID=$KMS_DAEMON_PID KMS_PID_CHILD=1
		kms_wait_live "$KMS_PID"
	else
		kms_mount "$opt"
	fi
	kms_login ur "$KMS_TOKEN"
	r=$(kms_call "ur/keys/$id/create-datakey" '{}')
	assert_eq "$(jget "$r" .key_id)" "$id" "$opt"
	assert_eq "$(metric kmsfs_fuse_uring)" 0 "kmsfs_fuse_uring with $opt"
	assert_eq "$(find "/proc/$KMS_PID/fd" -lname 'anon_inode:\[io_uring\]' | wc -l)" 0 \
		"io_uring descriptors with $opt"
	kms_umount
done
