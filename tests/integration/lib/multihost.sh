# shellcheck shell=bash
# multihost.sh - several kmsfs daemons ("hosts") sharing one PostgreSQL store, for the multihost
# cases; sourced after common.sh (a case calls kms_setup first). Each host NAME has its own
# state dir, mount point, log and stderr under $KMS_WORK/NAME/, and a copy (0600) of the first
# host's root key; all use the store URI KMS_MH_URI. The daemons are started and stopped with
# harness.sh's functions. The EXIT trap (a KMS_CLEANUP_HOOKS entry) kills every daemon, detaches
# its mount, scans every host's log, stderr and state dir and the PostgreSQL data directory for
# the plaintext DEKs the case saw, and then lib/pg.sh's hook removes the cluster.
#
#   kms_mh_pg                       a cluster in $KMS_WORK/pg with a database kms: KMS_MH_PGDIR,
#                                   KMS_MH_URI (skip: PostgreSQL not installed; fail: no start)
#   kms_mh_hosts NAME...            state dirs and mount points; `kmsctl --store init` on the first
#                                   (schema and root key), the root key copied to the others
#   kms_mh_host NAME ROOTKEY        one host more, with a copy of ROOTKEY
#   kms_mh_start NAME [OPT...]      mount NAME: kmsfs -o state=,log=,OPT...,store=URI
#   kms_mh_stop NAME                unmount; the daemon must exit with status 0
#   kms_mh_ctl NAME ARGS...         kmsctl --state NAME's --store URI ARGS...
#   kms_mh_token NAME P [ARGS...]   a token for P issued by kmsctl on NAME's state dir
#   kms_mh_login NAME P TOKEN       bind TOKEN for (this uid, P) on NAME's mount
#   kms_mh_call NAME FILE [REQ]     kms_call on NAME's mount (FILE relative to it)
#   kms_mh_mnt / _state / _log NAME print the paths

# shellcheck source=tests/integration/lib/pg.sh
source "$KMS_LIB/pg.sh"

declare -A KMS_MH_PID=()
KMS_MH_NAMES=()
KMS_MH_PGDIR= KMS_MH_URI=

kms_mh_mnt() { printf '%s\n' "$KMS_WORK/$1/mnt"; }
kms_mh_state() { printf '%s\n' "$KMS_WORK/$1/state"; }
kms_mh_log() { printf '%s\n' "$KMS_WORK/$1/kmsfs.log"; }

kms_mh_pg() {
	kms_pg_bindir >/dev/null || skip "PostgreSQL is not installed (apt-get install postgresql)"
	KMS_MH_PGDIR=$KMS_WORK/pg
	kms_pg_init "$KMS_MH_PGDIR" || fail "initdb of the test cluster failed (above)"
	kms_pg_start "$KMS_MH_PGDIR" || fail "the PostgreSQL test cluster did not start (its log above)"
	kms_pg_createdb "$KMS_MH_PGDIR" kms || fail "createdb kms failed"
	KMS_MH_URI=$(kms_pg_uri "$KMS_MH_PGDIR" kms)
	KMS_CLEANUP_HOOKS+=(kms_mh_cleanup) # after pg.sh's: runs first, while the cluster is there
}

kms_mh_ctl() {
	local n=$1
	shift
	"$KMSCTL" --state "$(kms_mh_state "$n")" --store "$KMS_MH_URI" "$@"
}

kms_mh_hosts() {
	local n first=$1 out
	_kms_mh_dirs "$first"
	out=$(kms_mh_ctl "$first" init 2>&1) || fail "kmsctl --store init on host $first: $out"
	[ -s "$(kms_mh_state "$first")/root.key" ] || fail "kmsctl --store init made no root key in $(kms_mh_state "$first")"
	for n in "${@:2}"; do kms_mh_host "$n" "$(kms_mh_state "$first")/root.key"; done
}

# kms_mh_host NAME ROOTKEY: one more host, its state dir holding a copy (0600) of ROOTKEY, as an
# operator sets up another machine.
kms_mh_host() {
	_kms_mh_dirs "$1"
	install -d -m 0700 "$(kms_mh_state "$1")"
	install -m 0600 "$2" "$(kms_mh_state "$1")/root.key"
}

_kms_mh_dirs() {
	mkdir -p "$KMS_WORK/$1/mnt"
	: >"$KMS_WORK/$1/kmsfs.stderr"
	KMS_MH_NAMES+=("$1")
}

kms_mh_start() {
	local n=$1 mnt opts o rc=0
	shift
	mnt=$(kms_mh_mnt "$n")
	opts="state=$(kms_mh_state "$n"),log=$(kms_mh_log "$n")"
	for o in "$@"; do opts+=",${o#-o }"; done
	opts+=",store=$KMS_MH_URI" # last: the keyword string holds spaces (no commas)
	# Each host its own machine id: remembered logins stay with the host that bound them.
	KMSFS_TEST_MACHINE_ID=${KMSFS_TEST_MACHINE_ID:-test-host-$n} \
		kms_daemon_start "$KMS_WORK/$n/kmsfs.stderr" "$KMSFS" "$mnt" -o "$opts"
	KMS_MH_PID[$n]=$KMS_DAEMON_PID
	echo "$KMS_DAEMON_PID" >"$KMS_WORK/$n/daemon.pid"
	if [ ! -e "$KMS_WORK/$n/watchdog" ]; then # as kms_setup's, for this host's daemon
		: >"$KMS_WORK/$n/watchdog"
		"$KMS_PY" "$KMS_IO" watchdog "${KMS_WATCHDOG:-240}" "$KMS_WORK/$n/daemon.pid" "$mnt" \
			"$KMS_WORK/watchdog.fired" "$KMS_WORK" </dev/null >/dev/null 2>&1 &
		kms_bg $!
	fi
	kms_wait_fuse "$KMS_DAEMON_PID" "$mnt" || rc=$?
	[ "$rc" -ne 1 ] || fail "kmsfs of host $n exited before its mount was live: $(tail -n 5 "$KMS_WORK/$n/kmsfs.stderr")"
	[ "$rc" -eq 0 ] || fail "kmsfs of host $n not mounted on $mnt after 10 s"
}

kms_mh_stop() {
	local n=$1 pid mnt err rc=0
	pid=${KMS_MH_PID[$n]:-}
	mnt=$(kms_mh_mnt "$n")
	[ -n "$pid" ] || return 0
	err=$(fusermount3 -u "$mnt" 2>&1) || fail "fusermount3 -u $mnt (host $n) failed: $err"
	kms_wait_exit "$pid" || fail "kmsfs of host $n (pid $pid) still runs 10 s after its unmount"
	wait "$pid" || rc=$?
	[ "$rc" -eq 0 ] || fail "kmsfs of host $n exited with status $rc after fusermount3 -u"
	KMS_MH_PID[$n]=
}

kms_mh_token() {
	local n=$1
	shift
	kms_mh_ctl "$n" token issue --project "$@"
}

kms_mh_login() { kms_token_bind "$(kms_mh_mnt "$1")" "$2" "$3"; }

kms_mh_call() {
	local n=$1 f=$2
	shift 2
	kms_call "$(kms_mh_mnt "$n")/$f" "$@"
}

# kms_mh_cleanup RC: the EXIT trap's part for the hosts (see the top).
kms_mh_cleanup() {
	local rc=$1 n paths=() p
	for n in "${KMS_MH_NAMES[@]}"; do
		kms_daemon_kill "${KMS_MH_PID[$n]:-}" "$(kms_mh_mnt "$n")" ||
			{ echo "FAIL: $KMS_CASE: could not remove the mount of host $n" >&2 && rc=1; }
		paths+=("$(kms_mh_log "$n")" "$KMS_WORK/$n/kmsfs.stderr" "$(kms_mh_state "$n")")
	done
	[ -z "$KMS_MH_PGDIR" ] || paths+=("$KMS_MH_PGDIR")
	if [ -s "$KMS_DEKS" ] && [ ${#paths[@]} -gt 0 ]; then
		kms_dek_scan "$KMS_DEKS" "${paths[@]}" || {
			echo "FAIL: $KMS_CASE: a plaintext DEK reached a host's log or state dir, or PostgreSQL's files" >&2
			rc=1
		}
	fi
	if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
		for n in "${KMS_MH_NAMES[@]}"; do
			for p in "$KMS_WORK/$n/kmsfs.stderr" "$(kms_mh_log "$n")"; do
				[ -s "$p" ] || continue
				echo "---- host $n: tail of $p" >&2
				tail -n 20 "$p" >&2
			done
		done
		[ -z "$KMS_MH_PGDIR" ] || [ ! -s "$KMS_MH_PGDIR/server.log" ] || {
			echo "---- tail of the PostgreSQL log" >&2
			tail -n 20 "$KMS_MH_PGDIR/server.log" >&2
		}
	fi
	[ "$rc" -eq "$1" ]
}
