# shellcheck shell=bash
# harness.sh - the daemon harness shared by the integration cases (lib/common.sh sources it) and
# the benchmarks (bench/run sources it; bench/soak imports the same steps from lib/kmsio.py).
#
# Starting a daemon on a mount point, waiting for the mount, stopping it (gracefully, or by force
# on every exit path), a fresh state dir, tokens and their binding, and the search for plaintext
# DEKs in the daemon's files. Every function takes what it works on as arguments (a pid, a mount
# point, a state dir), so that a case with one daemon and a benchmark with several use the same
# code; none of them exits or prints a verdict: each returns a status and the caller says what
# failed in its own words. Safe under `set -euo pipefail`.
#
# Needs: KMSCTL (kmsctl binary) for the token functions, KMS_PY (python3) for kms_dek_scan.

KMS_HARNESS_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# kms_pid_gone PID: true when PID (empty: no daemon) has exited, whether reaped or a zombie.
kms_pid_gone() {
	local st
	[ -n "$1" ] || return 0
	st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 0
	[ "$st" == "Z" ]
}

# kms_mount_count MNT: how many mounts sit on MNT (a restart must not stack them).
kms_mount_count() {
	awk -v mp="$1" '$2 == mp' /proc/mounts | wc -l
}

# kms_mounted MNT: true when something is mounted on MNT.
kms_mounted() {
	awk -v mp="$1" '$2 == mp { n++ } END { exit n ? 0 : 1 }' /proc/mounts
}

# kms_daemon_start OUT BINARY MNT ARGS...: start `BINARY MNT -f ARGS...` in the background of the
# caller (so that the caller can `wait` for its status), stdout and stderr appended to OUT; the
# pid goes to KMS_DAEMON_PID. Returns at once: wait with kms_wait_fuse or kms_wait_path.
kms_daemon_start() {
	local out=$1 bin=$2 mnt=$3
	shift 3
	"$bin" "$mnt" -f "$@" </dev/null >>"$out" 2>&1 &
	# shellcheck disable=SC2034 # the caller's
	KMS_DAEMON_PID=$!
}

# kms_wait_fuse PID MNT: wait up to 10 s until a live FUSE mount on MNT answers statfs (never
# cached, unlike stat: a stale mount left by a killed daemon is a mountpoint too, but statfs fails
# ENOTCONN). Returns 0 once live, 1 if PID exited first, 2 after 10 s.
kms_wait_fuse() {
	local pid=$1 mnt=$2 i
	for ((i = 0; i < 100; i++)); do
		# f_type FUSE_SUPER_MAGIC: not the bare dir seen while a restart swaps a stale mount.
		if [ "$(stat -f -c %t "$mnt" 2>/dev/null)" == 65735546 ]; then return 0; fi
		kms_pid_gone "$pid" && return 1
		sleep 0.1
	done
	return 2
}

# kms_wait_path PID PATH: wait up to 10 s, in 5 ms steps, until PATH can be stat'ed (the mount
# answers and the tree holds it; bench/run times mounts with it). Returns 0, 1 if PID exited
# first, 2 after 10 s.
kms_wait_path() {
	local pid=$1 path=$2 i
	for ((i = 0; i < 2000; i++)); do
		stat -t "$path" >/dev/null 2>&1 && return 0
		kms_pid_gone "$pid" && return 1
		sleep 0.005
	done
	return 2
}

# kms_detach MNT: lazily detach whatever is still mounted on MNT (a stale or hung mount);
# returns 0 when nothing is left on it.
kms_detach() {
	local mnt=$1 i
	for ((i = 0; i < 10; i++)); do
		kms_mounted "$mnt" || return 0
		fusermount3 -uz "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
	done
	! kms_mounted "$mnt"
}

# kms_daemon_kill PID MNT: the clean-up of every exit path: SIGTERM, 3 s, SIGKILL; reap PID if it
# is the caller's child; detach the mount. Returns kms_detach's status.
kms_daemon_kill() {
	local pid=$1 mnt=$2 i
	if ! kms_pid_gone "$pid"; then
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 30; i++)); do kms_pid_gone "$pid" && break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	if [ -n "$pid" ]; then wait "$pid" 2>/dev/null || true; fi
	kms_detach "$mnt"
}

# kms_daemon_stop PID MNT: unmount (the daemon then exits by itself), give it 5 s, then
# kms_daemon_kill. For callers that do not judge the exit (the strict one is common.sh's
# kms_umount).
kms_daemon_stop() {
	local pid=$1 mnt=$2 i
	if kms_mounted "$mnt"; then fusermount3 -u "$mnt" 2>/dev/null || true; fi
	for ((i = 0; i < 50; i++)); do kms_pid_gone "$pid" && break; sleep 0.1; done
	kms_daemon_kill "$pid" "$mnt"
}

# kms_state_init STATE: `kmsctl init` a fresh state dir, as an admin does before the first
# kmsctl command when no daemon has started yet (kmsctl refuses a state dir that does not exist).
kms_state_init() { "$KMSCTL" --state "$1" init >/dev/null; }

# kms_token_issue STATE PROJECT [ARGS...]: print a new token for PROJECT (kmsctl creates the
# project; a state dir not made yet is initialised first).
kms_token_issue() {
	local state=$1 p=$2
	shift 2
	[ -e "$state/kms.db" ] || kms_state_init "$state" || return
	"$KMSCTL" --state "$state" token issue --project "$p" "$@"
}

# kms_token_bind MNT PROJECT TOKEN: bind TOKEN to (this uid, PROJECT) on the mount.
kms_token_bind() { setfattr -n user.kms.token -v "$3" "$1/$2"; }

# kms_dek_scan DEKFILE PATH...: fail (status 1, a LEAK line per hit on stderr) when a DEK listed
# in DEKFILE (hex, one a line) appears, as hex in either case or as raw bytes, in a file under
# PATH (the daemon's log and stderr, its state dir).
kms_dek_scan() { "$KMS_PY" "$KMS_HARNESS_LIB/kmsio.py" scan "$@"; }
