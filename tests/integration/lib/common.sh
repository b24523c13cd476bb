# shellcheck shell=bash
# common.sh - sourced by every tests/integration/cases/*.sh.
#
# A case mounts the real kmsfs, uses it the way a person or a program would (echo, cat, dd,
# setfattr, python open()), and exits 0 (pass), 77 (skip) or anything else (fail).
# Whatever happens, the EXIT trap kills what the case started, lazily unmounts, scans the daemon
# log and the state dir for every plaintext DEK the case saw, and removes the work dir.
# The daemon steps themselves (start, wait, stop, tokens, DEK scan) are lib/harness.sh, which the
# benchmarks share; the Python a case runs is in lib/*.py (kmsio.py and one file per case that
# needs more than a few lines), run with kms_py.
#
# Environment (meson sets these; the defaults let `bash case.sh` work from a source tree):
#   KMSFS KMSCTL KMS_SRC KMS_BUILD   binaries and trees
#   KMS_KEEP=1                       keep the work dir for debugging
#   KMS_TMPDIR                       where work dirs go (default /tmp; scripts/run-tests sets one
#                                    per run so that it can find exactly its own leftovers)
set -euo pipefail

KMS_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${KMS_SRC:=$(cd "$KMS_LIB/../../.." && pwd)}"
: "${KMS_BUILD:=$KMS_SRC/build}"
: "${KMSFS:=$KMS_BUILD/src/tools/kmsfs}"
: "${KMSCTL:=$KMS_BUILD/src/tools/kmsctl}"
export KMSFS KMSCTL KMS_SRC KMS_BUILD
if [ -x /usr/bin/python3 ]; then KMS_PY=/usr/bin/python3; else KMS_PY=$(command -v python3 || echo python3); fi
# shellcheck source=tests/integration/lib/harness.sh
source "$KMS_LIB/harness.sh"
KMS_CASE=$(basename "$0" .sh)
KMS_USER=kmsit                  # the unprivileged test user (created on demand)

KMS_WORK= KMS_PID= KMS_PID_CHILD=0
KMS_BG_PIDS=()
KMS_CLEANUP_HOOKS=() # functions the EXIT trap runs (newest first) before the work dir goes

# ---------------------------------------------------------------- messages and assertions

log() { printf '# %s\n' "$*" >&2; }
fail() { printf 'FAIL: %s: %s\n' "$KMS_CASE" "$*" >&2; exit 1; }
skip() { printf 'SKIP: %s: %s\n' "$KMS_CASE" "$*" >&2; exit 77; }

# assert_eq GOT EXPECTED [WHAT]
assert_eq() {
	[ "$1" == "$2" ] || fail "${3:-value}: expected '$2', got '$1'"
}

# assert_contains HAYSTACK NEEDLE [WHAT]
assert_contains() {
	[[ "$1" == *"$2"* ]] || fail "${3:-output}: '$2' not found in: $1"
}

# assert_not_contains HAYSTACK NEEDLE [WHAT]
assert_not_contains() {
	[[ "$1" != *"$2"* ]] || fail "${3:-output}: '$2' must not appear in: $1"
}

# assert_errcode FILE_OR_STRING KMS.xxxx: the response is the API error KMS.xxxx.
assert_errcode() {
	local s=$1 code
	if [ -f "$s" ]; then s=$(cat "$s"); fi
	code=$(printf '%s' "$s" | jq -r '.error.error_code // "none"' 2>/dev/null) ||
		fail "expected error $2, response is not JSON: '$s'"
	[ "$code" == "$2" ] || fail "expected error $2, got $code: $s"
	printf '%s' "$s" | jq -e '.error.error_msg | type == "string" and length > 0' >/dev/null ||
		fail "error $2 without an error_msg string: $s"
}

# assert_ok RESPONSE: a JSON object that is not an API error.
assert_ok() {
	printf '%s' "$1" | jq -e 'type == "object" and (has("error") | not)' >/dev/null 2>&1 ||
		fail "expected a successful response, got: '$1'"
}

# jget JSON JQ-FILTER: one value (raw strings); fails if the JSON does not parse.
jget() {
	printf '%s' "$1" | jq -r "$2"
}

# ---------------------------------------------------------------- setup, mount, cleanup

# kms_setup [COMMAND...]: skip (77) unless this can run (and each COMMAND is on PATH, e.g.
# unshare for kms_container); make the work dir and an EXIT trap.
#   KMS_WORK  the temp dir (0755, so a test user can reach the mount)
#   KMS_STATE state dir (created by kmsfs's first start, or by kms_init / the first kms_token)
#   KMS_MNT mount point
#   KMS_LOG   daemon log (-o log=)            KMS_STDERR the daemon's stderr
#   KMS_SCRATCH world-writable scratch dir    KMS_DEKS  the DEKs seen (leak scan list)
# shellcheck disable=SC2120 # the cases pass the commands
kms_setup() {
	[ "$(id -u)" -eq 0 ] || skip "needs root (FUSE mounts; /dev/fuse is root-only here)"
	[ -c /dev/fuse ] || skip "no /dev/fuse"
	(: <>/dev/fuse) 2>/dev/null || skip "/dev/fuse cannot be opened"
	command -v fusermount3 >/dev/null || skip "fusermount3 missing (apt-get install fuse3)"
	command -v jq >/dev/null || skip "jq missing (apt-get install jq)"
	command -v setfattr >/dev/null || skip "setfattr missing (apt-get install attr)"
	[ -x "$KMSFS" ] || skip "kmsfs binary not built: $KMSFS"
	[ -x "$KMSCTL" ] || skip "kmsctl binary not built: $KMSCTL"
	local c
	for c in "$@"; do command -v "$c" >/dev/null || skip "$c missing"; done

	KMS_WORK=$(mktemp -d "${KMS_TMPDIR:-/tmp}/kmsfs-it.XXXXXX")
	trap kms_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	chmod 0755 "$KMS_WORK"
	KMS_STATE=$KMS_WORK/state
	KMS_MNT=$KMS_WORK/mnt
	KMS_LOG=$KMS_WORK/kmsfs.log
	KMS_STDERR=$KMS_WORK/kmsfs.stderr
	KMS_SCRATCH=$KMS_WORK/scratch
	KMS_DEKS=$KMS_SCRATCH/deks.txt
	mkdir "$KMS_MNT" "$KMS_SCRATCH"
	chmod 1777 "$KMS_SCRATCH"
	: >"$KMS_DEKS"
	chmod 0666 "$KMS_DEKS"
	: >"$KMS_STDERR"
	# Copies the test user can read, wherever the source tree lives; beside kmsio.py, so that
	# the case files import it.
	KMS_PYLIB=$KMS_WORK/py
	install -d -m 0755 "$KMS_PYLIB"
	install -m 0755 "$KMS_LIB"/*.py "$KMS_PYLIB/"
	KMS_IO=$KMS_PYLIB/kmsio.py
	export KMS_SCRATCH KMS_DEKS KMS_IO KMS_MNT KMS_STATE
	# Watchdog (kmsio.py watchdog): a hung daemon would block this case in a FUSE call, where no
	# trap runs; before meson's timeout (300 s) it kills the daemon and detaches the mount. If the
	# case is SIGKILLed, it does the cleanup the trap could not do.
	: >"$KMS_WORK/daemon.pid"
	"$KMS_PY" "$KMS_IO" watchdog "${KMS_WATCHDOG:-240}" "$KMS_WORK/daemon.pid" "$KMS_MNT" \
		"$KMS_WORK/watchdog.fired" "$KMS_WORK" </dev/null >/dev/null 2>&1 &
	kms_bg $!
}

kms_cleanup() {
	local rc=$? p
	set +e
	trap - EXIT
	for p in "${KMS_BG_PIDS[@]}"; do
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	# Hooks (other daemons, PostgreSQL clusters: lib/multihost.sh, lib/pg.sh) get the status so
	# far and return non-zero for a failure of their own.
	for ((p = ${#KMS_CLEANUP_HOOKS[@]} - 1; p >= 0; p--)); do
		"${KMS_CLEANUP_HOOKS[p]}" "$rc" || { [ "$rc" -ne 0 ] || rc=1; }
	done
	if [ -n "$KMS_WORK" ]; then
		kms_daemon_kill "$KMS_PID" "$KMS_MNT"
		if [ -e "$KMS_WORK/watchdog.fired" ]; then
			echo "FAIL: $KMS_CASE: timed out (watchdog killed the daemon after ${KMS_WATCHDOG:-240} s)" >&2
			rc=1
		fi
		if kms_mounted "$KMS_MNT"; then
			echo "FAIL: $KMS_CASE: could not remove the mount on $KMS_MNT" >&2
			rc=1
		fi
		# Secrets must never reach the log or the state dir (design.md, style.md section 5).
		if [ -s "$KMS_DEKS" ]; then
			kms_dek_scan "$KMS_DEKS" "$KMS_LOG" "$KMS_STDERR" "$KMS_STATE" || {
				echo "FAIL: $KMS_CASE: a plaintext DEK reached the daemon log or state dir" >&2
				[ "$rc" -eq 0 ] && rc=1
			}
		fi
		if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
			for p in "$KMS_STDERR" "$KMS_LOG"; do
				[ -s "$p" ] || continue
				if grep -qE '^==[0-9]+==ERROR|runtime error:' "$p"; then
					echo "---- sanitizer report in $p" >&2
					sed -n '/^==[0-9]*==ERROR\|runtime error:/,$p' "$p" | grep -v '^  0x' | head -n 80 >&2
				else
					echo "---- tail of $p" >&2
					tail -n 30 "$p" >&2
				fi
			done
		fi
		if [ "${KMS_KEEP:-0}" == 1 ]; then
			echo "# work dir kept: $KMS_WORK" >&2
		else
			rm -rf "$KMS_WORK"
		fi
	fi
	exit "$rc"
}

# kms_bg PID: kill this background process in the EXIT trap.
kms_bg() { KMS_BG_PIDS+=("$1"); }

# kms_wait_live PID: wait up to 10 s until the mount on KMS_MNT is live (kms_wait_fuse).
kms_wait_live() {
	local rc=0
	kms_wait_fuse "$1" "$KMS_MNT" || rc=$?
	[ "$rc" -ne 1 ] || fail "kmsfs exited before the mount was live: $(tail -n 5 "$KMS_STDERR")"
	[ "$rc" -eq 0 ] || fail "kmsfs not mounted on $KMS_MNT after 10 s"
}

# kms_mount [OPT...]: start kmsfs -f in the background with -o state=,log= plus each OPT
# (e.g. `kms_mount allow_other mailbox_ttl=2`); return once the mount answers.
kms_mount() {
	local opts="state=$KMS_STATE,log=$KMS_LOG" o
	for o in "$@"; do opts+=",${o#-o }"; done
	kms_daemon_start "$KMS_STDERR" "$KMSFS" "$KMS_MNT" -o "$opts"
	KMS_PID=$KMS_DAEMON_PID
	KMS_PID_CHILD=1
	echo "$KMS_PID" >"$KMS_WORK/daemon.pid"
	kms_wait_live "$KMS_PID"
}

# _kms_mount_holders MNT: what keeps MNT busy (EBUSY on unmount): processes with a descriptor,
# working directory, root or mapping under it, and mounts on top of or inside it. Read from
# /proc only (readlink never enters the FUSE file system, so a hung daemon cannot hang this).
_kms_mount_holders() {
	local mnt=$1
	find /proc/[0-9]*/cwd /proc/[0-9]*/root /proc/[0-9]*/fd /proc/[0-9]*/map_files \
		-maxdepth 1 \( -lname "$mnt" -o -lname "$mnt/*" \) 2>/dev/null |
		awk -F/ '{c = ""; getline c < ("/proc/" $3 "/comm"); print "pid " $3 " (" c "): " $4 ($5 ? "/" $5 : "")}' |
		sort -u | head -n 20
	awk -v mp="$mnt" '$5 == mp || index($5, mp "/") == 1 {print "mount: " $5 " (" $9 ")"}' \
		/proc/self/mountinfo
}

# kms_mounted_elsewhere MAJOR:MINOR: the processes whose mount namespace still holds a copy of
# that file system. A namespace made while it was mounted (unshare -m, a container) keeps it
# alive after the unmount here, so the kernel does not end the daemon's connection: a daemon that
# keeps serving then is right, and the cause is the other namespace (another test running on the
# same machine), not kmsfs.
kms_mounted_elsewhere() {
	local pids p
	[ -n "$1" ] || return 0
	pids=$(grep -l "^[0-9]* [0-9]* $1 " /proc/[0-9]*/mountinfo 2>/dev/null | cut -d/ -f3 | head -n 5)
	[ -n "$pids" ] || return 0
	printf ' the file system is still mounted in the mount namespace of:'
	for p in $pids; do printf ' %s (%s)' "$p" "$(cat "/proc/$p/comm" 2>/dev/null)"; done
	printf ';'
}

# kms_threads PID: what each thread of PID is doing (state, kernel wait channel, and a stack
# from gdb when it is installed), for a failure message about a daemon that does not exit.
kms_threads() {
	local t
	for t in /proc/"$1"/task/*; do
		printf '\n  %s %s %s' "${t##*/}" "$(awk '{print $3}' "$t/stat" 2>/dev/null)" \
			"$(cat "$t/wchan" 2>/dev/null)"
	done
	command -v gdb >/dev/null &&
		timeout 20 gdb -batch -p "$1" -ex 'thread apply all bt 8' 2>/dev/null | grep -E '^(Thread|#)'
	return 0
}

# kms_umount: fusermount3 -u, then the daemon must exit by itself, with status 0.
kms_umount() {
	local i rc=0 err dev elsewhere
	dev=$(mountpoint -d "$KMS_MNT" 2>/dev/null)
	err=$(fusermount3 -u "$KMS_MNT" 2>&1) ||
		fail "fusermount3 -u $KMS_MNT failed: $err; held by: $(_kms_mount_holders "$KMS_MNT" | tr '\n' ';')"
	if ! kms_wait_exit "$KMS_PID"; then
		elsewhere=$(kms_mounted_elsewhere "$dev")
		# Pinned by another namespace: end the connection as the last unmount would have.
		# (fusectl, mounted in a namespace of its own so the host's mounts are not touched)
		if [ -n "$elsewhere" ] && unshare -m sh -c 'mount -t fusectl fusectl /sys/fs/fuse/connections &&
			echo 1 >"/sys/fs/fuse/connections/$1/abort"' sh "${dev#0:}" 2>/dev/null; then
			echo "note:$elsewhere its FUSE connection was aborted" >&2
		fi
		kms_wait_exit "$KMS_PID" ||
			fail "kmsfs (pid $KMS_PID) still running 10 s after unmount;$elsewhere its threads: $(kms_threads "$KMS_PID")"
	fi
	if [ "$KMS_PID_CHILD" == 1 ]; then
		wait "$KMS_PID" || rc=$?
		[ "$rc" -eq 0 ] || fail "kmsfs exited with status $rc after fusermount3 -u"
	fi
	KMS_PID= KMS_PID_CHILD=0
}

# kms_kill9: SIGKILL the daemon (the mount goes stale) and reap it.
kms_kill9() {
	kill -KILL "$KMS_PID"
	wait "$KMS_PID" 2>/dev/null || true
	KMS_PID= KMS_PID_CHILD=0
}

# kms_assert_stale WHAT CMD...: CMD runs against a mount whose daemon was killed. It must fail
# with ENOTCONN and never hang. Over io_uring the kernel ends the connection only once it has
# released the dead daemon's rings, a few milliseconds after the exit: a request made meanwhile
# fails with ECONNABORTED instead, so that one is retried until ENOTCONN (at most 10 s).
kms_assert_stale() {
	local what=$1 err rc i
	shift
	for ((i = 0; i < 100; i++)); do
		rc=0
		err=$(timeout 10 "$@" 2>&1) || rc=$?
		[ "$rc" != 0 ] || fail "$what: '$*' on a dead mount succeeded: $err"
		[ "$rc" != 124 ] || fail "$what: '$*' on a dead mount hung for 10 s"
		case $err in
		*"Transport endpoint is not connected"*) return 0 ;;
		*"Software caused connection abort"*)
			log "$what: ECONNABORTED (the kernel still releases the rings); again"
			sleep 0.1
			;;
		*) fail "$what: '$*' on a dead mount: $err (want 'Transport endpoint is not connected')" ;;
		esac
	done
	fail "$what: '$*' still fails with ECONNABORTED 10 s after the daemon died"
}

# kms_find_daemon MOUNTPOINT: pid of the kmsfs process serving MOUNTPOINT (for daemonised starts).
kms_find_daemon() { "$KMS_PY" "$KMS_IO" finddaemon "$1" "$(readlink -f "$KMSFS")"; }

# kms_wait_exit PID: wait up to 10 s for PID to exit; false if it still runs.
kms_wait_exit() {
	local i
	for ((i = 0; i < 100; i++)); do kms_pid_gone "$1" && return 0; sleep 0.1; done
	return 1
}

# ---------------------------------------------------------------- tokens, users, calls

# kms_ctl ARGS...: kmsctl on this test's state dir.
kms_ctl() { "$KMSCTL" --state "$KMS_STATE" "$@"; }

# kms_softhsm_module: the path of SoftHSMv2's PKCS#11 module, or nothing if it is not installed.
kms_softhsm_module() {
	local f
	for f in /usr/lib/softhsm/libsofthsm2.so /usr/lib/*/softhsm/libsofthsm2.so; do
		[ -e "$f" ] && echo "$f" && return 0
	done
	return 0
}

# kms_init: `kmsctl init` the state dir, as an admin does before the first kmsctl command when
# the daemon has not started yet (kmsctl refuses a state dir that does not exist).
kms_init() { kms_state_init "$KMS_STATE"; }

# kms_token P [ARGS...]: issue a token for project P (creates P; inits a state dir not made yet).
kms_token() { kms_token_issue "$KMS_STATE" "$@"; }

# kms_login P [TOKEN]: bind TOKEN (default: a fresh one) to (this uid, P).
kms_login() {
	local tok=${2:-}
	[ -n "$tok" ] || tok=$(kms_token "$1")
	kms_token_bind "$KMS_MNT" "$1" "$tok"
}

# kms_start_project P [OPT...]: the usual start of a case: kms_setup (unless done already), a
# token for project P (kept in KMS_TOKEN, to bind it again after a restart: bindings live in daemon
# memory), kms_mount OPT..., and the token bound for this uid (root).
kms_start_project() {
	local p=$1
	shift
	# shellcheck disable=SC2119 # no commands to require
	[ -n "$KMS_WORK" ] || kms_setup
	KMS_TOKEN=$(kms_token "$p")
	kms_mount "$@"
	kms_login "$p" "$KMS_TOKEN"
}

# kms_call FILE [REQUEST|-]: one transaction on one O_RDWR handle (REQUEST omitted: a plain
# O_RDONLY read). FILE is relative to the mount unless absolute. Prints the response; the
# errno of each step is then available through kms_errno.
kms_call() {
	local f=$1
	[[ $f == /* ]] || f=$KMS_MNT/$f
	if [ $# -ge 2 ]; then
		"$KMS_PY" "$KMS_IO" rdwr "$f" "$2"
	else
		"$KMS_PY" "$KMS_IO" read "$f"
	fi
}

# kms_write FILE REQUEST|-: open O_WRONLY|O_TRUNC, write, close (the request runs at close).
kms_write() {
	local f=$1
	[[ $f == /* ]] || f=$KMS_MNT/$f
	"$KMS_PY" "$KMS_IO" write "$f" "$2"
}

# kms_errno [STEP [UID]]: errno name (or 0) of STEP (open|write|read|close, default close) of
# the last kms_call/kms_write made by UID (default: this uid).
kms_errno() {
	local step=${1:-close} uid=${2:-$(id -u)}
	tr ' ' '\n' <"$KMS_SCRATCH/status.$uid" | sed -n "s/^$step=//p"
}

# assert_errno STEP EXPECTED [UID]
assert_errno() {
	local got
	got=$(kms_errno "$1" "${3:-}")
	[ "$got" == "$2" ] || fail "$1(): expected errno $2, got $got"
}

# kms_record JSON: remember the DEKs of a response obtained without kms_call (cat, dd, ...).
kms_record() { printf '%s\n' "$1" | "$KMS_PY" "$KMS_IO" record; }

# kms_sql SQL [ARGS...]: run SQL (with ? parameters) on the state directory's SQLite database,
# print the rows (what another process may do to it while the daemon runs).
kms_sql() {
	"$KMS_PY" -c 'import sqlite3, sys
c = sqlite3.connect(sys.argv[1], timeout=10)
for row in c.execute(sys.argv[2], sys.argv[3:]):
    print(*row)
c.commit()' "$KMS_STATE/kms.db" "$@"
}

# kms_destroy_now P KEY_ID: a key of P scheduled for deletion is destroyed by the running daemon:
# its date is moved into the past in the database and its maintenance acts within seconds; waits
# (15 s at most) until describe-key answers KMS.0207.
kms_destroy_now() {
	local i r
	kms_sql 'UPDATE keys SET deletion_ms = 1 WHERE key_id = ?' "$2"
	for ((i = 0; i < 150; i++)); do
		r=$(kms_call "$1/describe-key" "{\"key_id\":\"$2\"}")
		[ "$(jget "$r" '.error.error_code // "none"')" == KMS.0207 ] && return 0
		sleep 0.1
	done
	assert_errcode "$r" KMS.0207
}

# kms_cat FILE: cat it and remember its DEKs.
kms_cat() {
	local out
	out=$(cat "$1")
	kms_record "$out"
	printf '%s\n' "$out"
}

# kms_create_key P ALIAS: create a key through the mount, print its key_id.
kms_create_key() {
	local r
	r=$(kms_call "$1/create-key" "{\"key_alias\":\"$2\"}")
	assert_ok "$r"
	jget "$r" .key_info.key_id
}

# sha256_hex HEX: upper-case hex SHA-256 of the bytes HEX encodes.
sha256_hex() {
	"$KMS_PY" -c 'import hashlib, sys; print(hashlib.sha256(bytes.fromhex(sys.argv[1])).hexdigest().upper())' "$1"
}

# dek_request KEY_ID DEK_HEX: an encrypt-datakey request for DEK (digest computed here).
dek_request() {
	local dgst
	dgst=$(sha256_hex "$2")
	printf '{"key_id":"%s","plain_text":"%s%s","datakey_plain_length":"%d"}' \
		"$1" "$2" "$dgst" $((${#2} / 2))
}

# kms_user_setup: make sure the unprivileged test user exists; sets KMS_UID/KMS_GID.
kms_user_setup() {
	command -v setpriv >/dev/null || skip "setpriv missing (util-linux)"
	if ! id "$KMS_USER" >/dev/null 2>&1; then
		useradd --system --no-create-home --shell /usr/sbin/nologin "$KMS_USER" ||
			skip "cannot create test user $KMS_USER"
	fi
	KMS_UID=$(id -u "$KMS_USER")
	KMS_GID=$(id -g "$KMS_USER")
}

# kms_member_setup: make sure the group kmsitg and its member kmsitm exist (the user of group
# bindings and group modes); sets KMS_MUID, KMS_MGID (kmsitm's primary gid) and KMS_GRP (kmsitg).
kms_member_setup() {
	groupadd -f kmsitg || skip "cannot create group kmsitg"
	id kmsitm >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin kmsitm ||
		skip "cannot create user kmsitm"
	usermod -a -G kmsitg kmsitm || skip "cannot add kmsitm to kmsitg"
	KMS_MUID=$(id -u kmsitm)
	KMS_MGID=$(id -g kmsitm)
	KMS_GRP=$(getent group kmsitg | cut -d: -f3)
}

# kms_as UID GID GROUPS CMD...: run CMD as UID:GID with the supplementary GROUPS (gids, comma
# separated; empty: none), HOME=/ and the scratch and DEK-list paths of this case.
kms_as() {
	local u=$1 g=$2 groups=(--clear-groups)
	[ -z "$3" ] || groups=(--groups="$3")
	shift 3
	setpriv --reuid="$u" --regid="$g" "${groups[@]}" -- \
		env HOME=/ KMS_SCRATCH="$KMS_SCRATCH" KMS_DEKS="$KMS_DEKS" "$@"
}

# kms_spawn UID GID CMD... &: kms_as in the background; `exec`, so that $! is CMD's own pid (the
# EXIT trap kills it, once given to kms_bg) and not a subshell's. Only ever used with `&`.
kms_spawn() {
	local u=$1 g=$2
	shift 2
	exec setpriv --reuid="$u" --regid="$g" --clear-groups -- \
		env HOME=/ KMS_SCRATCH="$KMS_SCRATCH" KMS_DEKS="$KMS_DEKS" "$@"
}

# as_user CMD...: run CMD as the test user, no supplementary groups.
as_user() { kms_as "$KMS_UID" "$KMS_GID" "" "$@"; }

# as_member CMD...: run CMD as kmsitm, with the group kmsitg (kms_member_setup).
as_member() { kms_as "$KMS_MUID" "$KMS_MGID" "$KMS_GRP" "$@"; }

# kms_container DIR SCRIPT ARGS...: what a container sees: in a new mount namespace (unshare -m,
# private propagation) DIR, a folder of the mount, is bind-mounted on $KMS_WORK/container, and
# `bash SCRIPT $KMS_WORK/container ARGS...` runs there (as root; KMS_PY, KMS_IO, KMS_SCRATCH and
# KMS_DEKS in its environment). Prints its stdout and stderr; its status is the script's. The
# bind mount must not reach the host: check with `mountpoint -q "$KMS_WORK/container"`.
# Tokens are scoped to the mount namespace, so the host's do not apply there: with KMS_CT_TOKEN
# set, root in the namespace first sets that token on DIR's project folder (the container's own
# login), which resolving a key folder needs.
kms_container() {
	local dir=$1
	shift
	mkdir -p "$KMS_WORK/container"
	# shellcheck disable=SC2016 # expanded by the inner sh
	unshare -m --propagation private env KMS_PY="$KMS_PY" KMS_IO="$KMS_IO" \
		KMS_SCRATCH="$KMS_SCRATCH" KMS_DEKS="$KMS_DEKS" KMS_CT_TOKEN="${KMS_CT_TOKEN:-}" \
		sh -c '{ [ -z "$KMS_CT_TOKEN" ] || setfattr -n user.kms.token -v "$KMS_CT_TOKEN" "${1%/keys/*}"; } &&
			mount --bind "$1" "$2" && t=$2 s=$3 && shift 3 && exec bash "$s" "$t" "$@"' \
		sh "$dir" "$KMS_WORK/container" "$@" 2>&1
}

# kms_py NAME ARGS...: run lib/NAME.py (the copy in the work dir, which the test user can read).
kms_py() {
	local name=$1
	shift
	"$KMS_PY" "$KMS_PYLIB/$name.py" "$@"
}

# user_call FILE [REQUEST]: kms_call as the test user (status: kms_errno STEP $KMS_UID).
user_call() {
	local f=$1
	[[ $f == /* ]] || f=$KMS_MNT/$f
	if [ $# -ge 2 ]; then
		as_user "$KMS_PY" "$KMS_IO" rdwr "$f" "$2"
	else
		as_user "$KMS_PY" "$KMS_IO" read "$f"
	fi
}
