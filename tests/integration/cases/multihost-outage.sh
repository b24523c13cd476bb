#!/bin/bash
# Outages are clear and short (issue 12.3): daemons A and B (-o store_timeout=2,offline_grace=5)
# on one PostgreSQL. With PostgreSQL stopped (immediate): a create-key fails within
# store_timeout + 1 s with KMS.0102 (rdwr) and EIO on close (write, run at close); a data key of a
# key already cached is still made during the grace and refused (KMS.0102, EIO) after it; a
# daemon with offline_grace=0 refuses it at once (2 s after the stop, when A still serves).
# PostgreSQL back: the daemons serve writes again without a restart, and a key made and then
# disabled on A right after it is seen so on B within 1 s. The same with a hung server
# (postmaster and backends stopped with SIGSTOP, sockets open): requests fail within
# store_timeout + 1 s, never hang, and all is well after SIGCONT.
# Every client call runs under `timeout`: a call that hangs fails the case. The times measured
# are printed.
source "$(dirname "$0")/../lib/common.sh"
# shellcheck source=tests/integration/lib/multihost.sh
source "$KMS_LIB/multihost.sh"
kms_setup
kms_mh_pg
kms_mh_hosts A B C
opts=(store_timeout=2 offline_grace=5)
kms_mh_start A "${opts[@]}"
kms_mh_start B "${opts[@]}"
tok=$(kms_mh_token A ou) || fail "kmsctl token issue"
for h in A B; do kms_mh_login "$h" ou "$tok" || fail "setfattr on host $h"; done
limit_ms=3000 # store_timeout + 1 s

# tcall HOST MODE FILE REQ: one transaction (kmsio.py MODE: rdwr or write) on HOST's mount under
# `timeout`; sets R (the response), E (close()'s errno) and MS (milliseconds it took).
tcall() {
	local t rc=0
	t=$(date +%s%N)
	R=$(timeout -k 2 20 "$KMS_PY" "$KMS_IO" "$2" "$(kms_mh_mnt "$1")/$3" "$4") || rc=$?
	MS=$((($(date +%s%N) - t) / 1000000))
	if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then fail "$2 $3 on host $1 hung (killed after 20 s)"; fi
	[ "$rc" -eq 0 ] || fail "kmsio.py $2 $3 on host $1 failed with status $rc"
	E=$(kms_errno close)
}
# refused WHAT HOST FILE REQ: KMS.0102 (rdwr) and EIO on close (write), each within limit_ms.
refused() {
	local what=$1 ms1
	tcall "$2" rdwr "$3" "$4"
	assert_errcode "$R" KMS.0102
	ms1=$MS
	tcall "$2" write "$3" "$4"
	assert_eq "$E" EIO "close() of $3 on host $2 ($what)"
	((ms1 <= limit_ms && MS <= limit_ms)) || fail "$what: $3 on host $2 took $ms1 ms and $MS ms (limit $limit_ms)"
	log "$what: $3 on host $2 refused in $ms1 ms (KMS.0102) and $MS ms (EIO at close)"
}
# served WHAT HOST FILE REQ: a successful answer.
served() {
	tcall "$2" rdwr "$3" "$4"
	printf '%s' "$R" | jq -e 'type == "object" and (has("error") | not)' >/dev/null 2>&1 ||
		fail "$1: $3 on host $2 was not served ($MS ms): $R"
}
since() { echo $((($(date +%s%N) - $1) / 1000000)); }
key=$(jget "$(kms_mh_call A ou/create-key '{"key_alias":"cached"}')" .key_info.key_id)
dk="{\"key_id\":\"$key\"}"
for h in A B; do served "before the outage" "$h" ou/create-datakey "$dk"; done

# ---- PostgreSQL down (a crash: the sockets close)
kms_pg_stop "$KMS_MH_PGDIR" immediate || fail "pg_ctl stop -m immediate"
t0=$(date +%s%N)
served "at once after the stop" B ou/create-datakey "$dk"
refused "PostgreSQL stopped" A ou/create-key '{"key_alias":"during"}'
if (($(since "$t0") < 3500)); then
	served "$(since "$t0") ms after the stop (grace 5 s)" B ou/create-datakey "$dk"
fi
refused "PostgreSQL stopped" B ou/create-key '{"key_alias":"during2"}'
while (($(since "$t0") < 6500)); do sleep 0.2; done
for h in A B; do refused "$(since "$t0") ms after the stop (grace 5 s over)" "$h" ou/create-datakey "$dk"; done

# ---- back: writes again without a restart; a change on A is seen on B within 1 s
kms_pg_start "$KMS_MH_PGDIR" || fail "PostgreSQL did not start again"
t0=$(date +%s%N)
back='' i=0
while (($(since "$t0") < 15000)); do
	i=$((i + 1)) # a new alias each time: a try may have committed without an answer
	tcall A rdwr ou/create-key "{\"key_alias\":\"after-$i\"}"
	if ! printf '%s' "$R" | jq -e 'has("error")' >/dev/null; then back=$(since "$t0") && break; fi
	sleep 0.1
done
[ -n "$back" ] || fail "host A serves no write 15 s after PostgreSQL's restart: $R"
log "host A serves writes again $back ms after PostgreSQL's start returned"
k2=$(jget "$R" .key_info.key_id)
# catch_up WHAT JQ-TEST FILE REQ: B sees the change within 1 s.
catch_up() {
	local t1
	t1=$(date +%s%N)
	while :; do
		tcall B rdwr "$3" "$4"
		printf '%s' "$R" | jq -e "$2" >/dev/null 2>&1 && break
		(($(since "$t1") < 1000)) || fail "$1 not seen on host B 1 s later: $R"
		sleep 0.05
	done
	log "$1 seen on host B after $(since "$t1") ms"
}
catch_up "key made on A after the outage" '.key_info.key_state == "2"' ou/describe-key "{\"key_id\":\"$k2\"}"
assert_ok "$(kms_mh_call A ou/disable-key "{\"key_id\":\"$key\"}")"
catch_up "disable on A after the outage" '.error.error_code == "KMS.0209"' ou/create-datakey "$dk"
assert_ok "$(kms_mh_call A ou/enable-key "{\"key_id\":\"$key\"}")"
catch_up "enable on A" '.cipher_text' ou/create-datakey "$dk"

# ---- offline_grace=0: no grace at all (A, with 5 s, still serves at the same moment)
kms_mh_start C store_timeout=2 offline_grace=0
kms_mh_login C ou "$tok" || fail "setfattr on host C"
served "before the outage" C ou/create-datakey "$dk"
kms_pg_stop "$KMS_MH_PGDIR" immediate || fail "pg_ctl stop -m immediate"
t0=$(date +%s%N)
sleep 2
served "$(since "$t0") ms after the stop (grace 5 s)" A ou/create-datakey "$dk"
refused "$(since "$t0") ms after the stop with offline_grace=0" C ou/create-datakey "$dk"
kms_pg_start "$KMS_MH_PGDIR" || fail "PostgreSQL did not start again"
for ((i = 0; i < 150; i++)); do
	tcall C rdwr ou/create-datakey "$dk"
	printf '%s' "$R" | jq -e '.cipher_text' >/dev/null 2>&1 && break
	sleep 0.1
done
printf '%s' "$R" | jq -e '.cipher_text' >/dev/null 2>&1 || fail "host C does not serve 15 s after PostgreSQL's restart: $R"
kms_mh_stop C

# ---- a hung server: postmaster and backends stopped (SIGSTOP), their sockets open
pgpids=()
cont_pg() {
	local p
	for p in "${pgpids[@]}"; do kill -CONT "$p" 2>/dev/null || true; done
	pgpids=()
}
KMS_CLEANUP_HOOKS+=(cont_pg) # after the cluster's hook: runs before it
pm=$(head -n 1 "$KMS_MH_PGDIR/data/postmaster.pid")
# shellcheck disable=SC2207 # pids: one word each
pgpids=("$pm" $(ps -o pid= --ppid "$pm"))
kill -STOP "${pgpids[@]}"
t0=$(date +%s%N)
log "PostgreSQL hung: SIGSTOP to ${#pgpids[@]} processes"
refused "PostgreSQL hung" A ou/create-key '{"key_alias":"hung"}'
refused "PostgreSQL hung" B ou/update-key-description "{\"key_id\":\"$key\",\"key_description\":\"x\"}"
while (($(since "$t0") < 6500)); do sleep 0.2; done
refused "$(since "$t0") ms into the hang (grace 5 s over)" B ou/create-datakey "$dk"
cont_pg
t0=$(date +%s%N)
back='' i=0
while (($(since "$t0") < 15000)); do
	i=$((i + 1))
	tcall B rdwr ou/create-key "{\"key_alias\":\"after-hang-$i\"}"
	if ! printf '%s' "$R" | jq -e 'has("error")' >/dev/null; then back=$(since "$t0") && break; fi
	sleep 0.1
done
[ -n "$back" ] || fail "host B serves no write 15 s after SIGCONT: $R"
log "host B serves writes again $back ms after SIGCONT"
for h in A B; do served "after the hang" "$h" ou/create-datakey "$dk"; done
kms_mh_stop A
kms_mh_stop B
