#!/bin/bash
# Failover (issue 12.3): a primary and a synchronous streaming standby (lib/pg.sh), daemons A and
# B with the multi-host store string `host=P,S port=PP,PS ... target_session_attrs=read-write`
# (each ',' written '\,' inside -o, as kmsfs(1) says), under the load of multihost-crash.py
# (keys, rotations, grants, data keys decrypted on the other host, tokens revoked with kmsctl on
# the same string). The primary crashes (pg_ctl stop -m immediate), the standby is promoted and
# its synchronous_standby_names cleared (docs/many-hosts.md: it has no standby of its own, a
# commit would wait forever). Every daemon must serve writes again within 15 s of the crash,
# without a restart (the time is printed: failover_s), and no change acknowledged before, during
# or after is lost on either host; `kmsctl check` passes on the promoted server.
source "$(dirname "$0")/../lib/common.sh"
# shellcheck source=tests/integration/lib/multihost.sh
source "$KMS_LIB/multihost.sh"
kms_setup
kms_mh_pg
pri=$KMS_MH_PGDIR sb=$KMS_WORK/pgs
kms_pg_standby "$pri" "$sb" 5433 || fail "no synchronous standby (above)"
# uri_part DIR KEY: host or port of the cluster in DIR (from its keyword string).
uri_part() { kms_pg_uri "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
KMS_MH_URI="host=$(uri_part "$pri" host),$(uri_part "$sb" host) port=$(uri_part "$pri" port),$(uri_part "$sb" port)"
KMS_MH_URI+=" dbname=kms user=kmspg target_session_attrs=read-write connect_timeout=2"
log "store: $KMS_MH_URI"
hosts=(A B)
kms_mh_hosts "${hosts[@]}"
for h in "${hosts[@]}"; do
	# kms_mh_start puts store= last in -o, where a ',' separates options: escape them.
	KMS_MH_URI=${KMS_MH_URI//,/\\,} kms_mh_start "$h" key_quota=100000
done
tok=$(kms_mh_token A mf) || fail "kmsctl token issue on host A"
rtok=$(kms_mh_token B mfr --role viewer) || fail "kmsctl token issue on host B"
mnts=()
for h in "${hosts[@]}"; do
	kms_mh_login "$h" mf "$tok" || fail "setfattr on host $h"
	mnts+=("$(kms_mh_mnt "$h")")
done
journal=$KMS_WORK/journal stop=$KMS_WORK/stop
mkdir -p "$journal"
py() { "$KMS_PY" "$(dirname "$0")/multihost-crash.py" "$@"; }
acked() { cat "$journal"/c* 2>/dev/null | wc -l; }
since() { echo $((($(date +%s%N) - $1) / 1000000)); }

py load "$journal" "$stop" mf "$tok" "${mnts[@]}" 2>"$KMS_WORK/load.err" &
load=$!
kms_bg "$load"
py revoker "$journal" "$stop" "$KMSCTL" "$(kms_mh_state A)" "$KMS_MH_URI" mfr 2>"$KMS_WORK/revoker.err" &
revoker=$!
kms_bg "$revoker"
for ((i = 0; i < 150; i++)); do [ "$(acked)" -lt 40 ] || break; sleep 0.1; done
[ "$(acked)" -ge 40 ] || fail "no traffic before the failover: $(acked) changes in 15 s"
sleep 3

n=$(acked)
kms_pg_stop "$pri" immediate || fail "pg_ctl stop -m immediate of the primary"
t0=$(date +%s%N)
log "primary crashed with $n changes acknowledged"
kms_pg_promote "$sb" || fail "promotion of the standby (above)"
kms_pg_sql "$sb" postgres "ALTER SYSTEM RESET synchronous_standby_names" >/dev/null ||
	fail "clearing synchronous_standby_names on the promoted standby"
kms_pg_sql "$sb" postgres "SELECT pg_reload_conf()" >/dev/null || fail "pg_reload_conf() on the promoted standby"
log "standby promoted $(since "$t0") ms after the crash"

# Each daemon, unrestarted, serves a write again (the load keeps running meanwhile).
worst=0
for h in "${hosts[@]}"; do
	ok=
	while (($(since "$t0") < 20000)); do
		r=$(timeout -k 2 20 "$KMS_PY" "$KMS_IO" rdwr "$(kms_mh_mnt "$h")/mf/create-key" '{}') ||
			fail "create-key on host $h hung during the failover"
		if printf '%s' "$r" | jq -e '.key_info.key_id' >/dev/null 2>&1; then ok=$(since "$t0") && break; fi
		sleep 0.1
	done
	[ -n "$ok" ] || fail "host $h serves no write 20 s after the primary's crash: $r"
	log "host $h serves writes again $ok ms after the primary's crash"
	((ok <= worst)) || worst=$ok
done
log "failover_s=$(printf '%d.%03d' $((worst / 1000)) $((worst % 1000))) (every daemon serves writes again)"
((worst <= 15000)) || fail "failover took $worst ms (limit 15 s)"
n=$(acked)
for ((i = 0; i < 150; i++)); do [ "$(acked)" -lt $((n + 40)) ] || break; sleep 0.1; done
[ "$(acked)" -ge $((n + 40)) ] || fail "the load does not go on after the failover"
sleep 2
touch "$stop"
for p in "$load" "$revoker"; do
	for ((i = 0; i < 300; i++)); do kms_pid_gone "$p" && break; sleep 0.1; done
	kms_pid_gone "$p" || fail "a client still runs 30 s after the end of the load (a hung request?)"
	wait "$p" || fail "a client failed: $(tail -n 5 "$KMS_WORK/load.err" "$KMS_WORK/revoker.err")"
done

py verify "$journal" mf "$tok" mfr "$rtok" "${mnts[@]}" || fail "an acknowledged change was lost (above)"
out=$(kms_mh_ctl A check 2>&1) || fail "kmsctl check on the promoted server: $out"
for h in "${hosts[@]}"; do kms_mh_stop "$h"; done
