# shellcheck shell=bash
# root_rotate.sh - what the root-key rotation cases share (cases/root-rotate*.sh): the clients of
# root_rotate.py on one mount, their journal, and the checks after the rotations.

# rr_clients P JOURNAL ERRFILE &: the clients, python in place of the background subshell (so
# that the EXIT trap kills them, and none holds the test's stdout).
rr_clients() {
	exec "$KMS_PY" "$KMS_PYLIB/root_rotate.py" clients "$1" "$2" "$KMS_WORK/stop" "$KMS_DEKS" \
		</dev/null >/dev/null 2>"$3"
}

# rr_start P: the clients on project folder P (4 threads) until rr_stop; journal in $RR_JOURNAL.
rr_start() {
	RR_JOURNAL=$KMS_WORK/journal
	mkdir -p "$RR_JOURNAL"
	rr_clients "$1" "$RR_JOURNAL" "$KMS_WORK/clients.err" &
	RR_CLIENTS=$!
	kms_bg "$RR_CLIENTS"
	rr_more 20 || fail "no traffic before the rotation ($(tail -3 "$KMS_WORK/clients.err"))"
}

# rr_made: data keys journalled so far; rr_more N: wait (10 s at most) for N more.
rr_made() { cat "$RR_JOURNAL"/c* 2>/dev/null | wc -l; }
rr_more() {
	local n i
	n=$(($(rr_made) + $1))
	for ((i = 0; i < 100 && $(rr_made) < n; i++)); do sleep 0.1; done
	[ "$(rr_made)" -ge "$n" ]
}

# rr_finish PROJECT: some traffic after the rotations, the clients stopped (none may have seen a
# failure), every data key decrypts through the daemon, then after a remount; kmsctl check.
rr_finish() {
	local P=$KMS_MNT/$1 out
	rr_more 20 || fail "no traffic after the rotations ($(tail -3 "$KMS_WORK/clients.err"))"
	touch "$KMS_WORK/stop"
	wait "$RR_CLIENTS" || fail "clients saw failures ($(tail -5 "$KMS_WORK/clients.err"))"
	kms_py root_rotate verify "$P" "$RR_JOURNAL" 40 || fail "data keys after rotating"
	kms_umount
	kms_mount key_quota=100000
	kms_login "$1" "$KMS_TOKEN"
	kms_py root_rotate verify "$P" "$RR_JOURNAL" 40 || fail "data keys after a remount"
	kms_umount
	out=$(kms_ctl check) || fail "kmsctl check after the rotations: $out"
}

# rr_hex FILE: its bytes in hex; rr_gone HEX DIR...: those bytes are in no file of the DIRs.
rr_hex() { od -An -tx1 "$1" | tr -d ' \n'; }
rr_gone() {
	local hex=$1 d f
	shift
	for d in "$@"; do
		for f in "$d"/*; do
			[ -f "$f" ] || continue
			[ "$(rr_hex "$f" | grep -c "$hex")" -eq 0 ] || fail "the first root key is still in $f"
		done
	done
}

# rr_kills ROUNDS MAX CMD...: run CMD in the background and SIGKILL it after a random 0.05..MAX
# seconds, ROUNDS times (a round whose CMD finished first says so).
rr_kills() {
	local rounds=$1 max=$2 round pid
	shift 2
	for ((round = 1; round <= rounds; round++)); do
		"$@" >>"$KMS_WORK/rotate.out" 2>&1 &
		pid=$!
		sleep "$("$KMS_PY" -c "import random; print(round(random.uniform(0.05, $max), 2))")"
		kill -KILL "$pid" 2>/dev/null || log "round $round: the rotation had finished"
		wait "$pid" 2>/dev/null || true
		log "round $round: $(rr_made) data keys"
	done
}
