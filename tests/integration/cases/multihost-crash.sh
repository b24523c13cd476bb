#!/bin/bash
# Nothing acknowledged is lost (issue 12.3), with three daemons A, B and C on one PostgreSQL:
# under load from 4 clients (create-key, rotate-key, create-grant, create-datakey on one host and
# decrypt-datakey of it on another, each request to a random host) and a fifth one issuing and
# revoking tokens with kmsctl, a random daemon is killed with SIGKILL and restarted again and
# again, and halfway PostgreSQL itself crashes (pg_ctl stop -m immediate) and restarts, the
# daemons staying up (they must serve again by themselves within 15 s). Every change a client
# was told about goes into a journal; afterwards every host lists and describes every journalled
# key, has at least every journalled rotation (no two acknowledged rotations of a key share a
# version), lists every journalled grant, refuses every revoked token (KMS.0302) and decrypts
# every journalled ciphertext to its DEK; `kmsctl check` passes on the store.
# KMS_MH_CRASH_SECONDS (default 40): how long the load and the kills last.
source "$(dirname "$0")/../lib/common.sh"
# shellcheck source=tests/integration/lib/multihost.sh
source "$KMS_LIB/multihost.sh"
kms_setup
kms_mh_pg
hosts=(A B C)
kms_mh_hosts "${hosts[@]}"
for h in "${hosts[@]}"; do kms_mh_start "$h" key_quota=100000; done
tok=$(kms_mh_token A mh) || fail "kmsctl token issue on host A"
rtok=$(kms_mh_token B mhr --role viewer) || fail "kmsctl token issue on host B"
for h in "${hosts[@]}"; do kms_mh_login "$h" mh "$tok" || fail "setfattr on host $h"; done
mnts=()
for h in "${hosts[@]}"; do mnts+=("$(kms_mh_mnt "$h")"); done
journal=$KMS_WORK/journal stop=$KMS_WORK/stop
mkdir -p "$journal"
py() { "$KMS_PY" "$(dirname "$0")/multihost-crash.py" "$@"; }

# mh_kill9 NAME: SIGKILL host NAME's daemon (its mount goes stale) and reap it.
mh_kill9() {
	kill -KILL "${KMS_MH_PID[$1]}"
	wait "${KMS_MH_PID[$1]}" 2>/dev/null || true
	KMS_MH_PID[$1]=
}
# acked: how many changes the daemons acknowledged so far (the token revocations, made by
# kmsctl on the store, are not counted: they say nothing about the daemons).
acked() { cat "$journal"/c* 2>/dev/null | wc -l; }
# traffic WHAT SECONDS: wait until 10 more changes were acknowledged.
traffic() {
	local n0 i
	n0=$(acked)
	for ((i = 0; i < $2 * 10; i++)); do
		[ "$(acked)" -lt $((n0 + 10)) ] || return 0
		sleep 0.1
	done
	fail "$1: no change acknowledged for $2 s ($(acked) so far)"
}

py load "$journal" "$stop" mh "$tok" "${mnts[@]}" 2>"$KMS_WORK/load.err" &
load=$!
kms_bg "$load"
py revoker "$journal" "$stop" "$KMSCTL" "$(kms_mh_state A)" "$KMS_MH_URI" mhr 2>"$KMS_WORK/revoker.err" &
revoker=$!
kms_bg "$revoker"

dur=${KMS_MH_CRASH_SECONDS:-40}
t0=$SECONDS kills=0 crashed=0
traffic "start" 15
while ((SECONDS - t0 < dur)); do
	if ((!crashed && SECONDS - t0 >= dur / 2)); then
		crashed=1
		n=$(acked)
		kms_pg_stop "$KMS_MH_PGDIR" immediate || fail "pg_ctl stop -m immediate"
		log "PostgreSQL crashed (stop -m immediate) with $n changes acknowledged"
		sleep 1
		kms_pg_start "$KMS_MH_PGDIR" || fail "PostgreSQL did not start again after the crash"
		# The daemons reconnect by themselves (issue 12.3): no restart here.
		traffic "after PostgreSQL's restart" 15
		log "traffic again $((SECONDS - t0 - dur / 2)) s after the crash"
		continue
	fi
	sleep "0.$((RANDOM % 8 + 2))"
	h=${hosts[RANDOM % ${#hosts[@]}]}
	mh_kill9 "$h"
	kills=$((kills + 1))
	kms_mh_start "$h" key_quota=100000
	assert_eq "$(kms_mount_count "$(kms_mh_mnt "$h")")" 1 "mounts on host $h after a restart"
	# Token bindings live in daemon memory: bind again (the clients do it too on KMS.0301).
	kms_mh_login "$h" mh "$tok" || fail "setfattr on host $h after its restart"
	traffic "after the restart of host $h" 15
done
touch "$stop"
for p in "$load" "$revoker"; do
	for ((i = 0; i < 300; i++)); do kms_pid_gone "$p" && break; sleep 0.1; done
	kms_pid_gone "$p" || fail "a client still runs 30 s after the end of the load (a hung request?)"
	wait "$p" || fail "a client failed: $(tail -n 5 "$KMS_WORK/load.err" "$KMS_WORK/revoker.err")"
done
revoked=$(wc -l <"$journal/revoker")
log "$kills kills and one PostgreSQL crash survived; $(acked) changes acknowledged, $revoked tokens revoked"

py verify "$journal" mh "$tok" mhr "$rtok" "${mnts[@]}" || fail "an acknowledged change was lost (above)"
out=$(kms_mh_ctl A check 2>&1) || fail "kmsctl check on the store: $out"
for h in "${hosts[@]}"; do kms_mh_stop "$h"; done
