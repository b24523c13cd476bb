#!/bin/bash
# From SQLite to PostgreSQL (issue 12.1): an installation made through a daemon on SQLite (a key
# with three versions, an alias and a description, a disabled key, a key pending deletion,
# grants, tags, a project policy, a uid binding, tokens one of them revoked, 300 more keys in 3
# projects, DEKs and data ciphertexts under every version of two keys) is moved with
# `kmsctl --state DIR store copy --to URI`: the first run is killed (SIGKILL) once it has started
# writing, the second runs to completion (on a terminal: a progress line with keys copied of the
# total, rate and time left), a third copies nothing new (no key, version, project, policy,
# binding or token change in the change feed, the row counts stay). Then `kmsctl check` passes
# on the copy from another host's state dir (the root key copied 0600), and a daemon on the
# PostgreSQL store answers list-keys, tags, grants and rotation status as the SQLite daemon did,
# decrypts every old ciphertext, accepts the old token, refuses the revoked one, honours the
# binding, and kmsctl shows the same policy and token list.
source "$(dirname "$0")/../lib/common.sh"
# shellcheck source=tests/integration/lib/multihost.sh
source "$KMS_LIB/multihost.sh"
kms_setup
kms_user_setup
kms_pg_bindir >/dev/null || skip "PostgreSQL is not installed (apt-get install postgresql)"

# ---- the SQLite installation
kms_start_project sc allow_other
one=$(jget "$(kms_call sc/create-key '{"key_alias":"one","key_description":"three versions"}')" .key_info.key_id)
two=$(kms_create_key sc two)
three=$(kms_create_key sc three)
cts=() deks=() keyof=() datas=() plains=()
# ciphertexts KEY TAG: a DEK and a data ciphertext under KEY's current version, remembered.
ciphertexts() {
	local r
	r=$(kms_call sc/create-datakey "{\"key_id\":\"$1\"}")
	assert_ok "$r"
	cts+=("$(jget "$r" .cipher_text)") deks+=("$(jget "$r" .plain_text)") keyof+=("$1")
	r=$(kms_call sc/encrypt-data "{\"key_id\":\"$1\",\"plain_text\":\"$2\"}")
	assert_ok "$r"
	datas+=("$(jget "$r" .cipher_text)") plains+=("$2")
}
ciphertexts "$one" "one v1"
assert_ok "$(kms_call "sc/keys/$one/rotate-key" '{}')"
ciphertexts "$one" "one v2"
assert_ok "$(kms_call "sc/keys/$one/rotate-key" '{}')"
ciphertexts "$one" "one v3"
ciphertexts "$two" "two"
assert_ok "$(kms_call sc/disable-key "{\"key_id\":\"$two\"}")"
assert_ok "$(kms_call "sc/keys/$three/schedule-key-deletion" '{"pending_days":"7"}')"
assert_ok "$(kms_call sc/create-grant "{\"key_id\":\"$one\",\"grantee_principal\":\"bob\",\"operations\":[\"decrypt-datakey\",\"describe-key\"],\"name\":\"g1\"}")"
assert_ok "$(kms_call sc/create-grant "{\"key_id\":\"$two\",\"grantee_principal\":\"eve\",\"operations\":[\"describe-key\"]}")"
assert_eq "$(kms_call "sc/keys/$one/tags" '{"tag":{"key":"env","value":"prod"}}')" "{}" "tag env"
assert_eq "$(kms_call "sc/keys/$one/tags" '{"tag":{"key":"team","value":"blue"}}')" "{}" "tag team"
assert_ok "$(kms_call "sc/keys/$one/enable-key-rotation" '{"rotation_interval":"90"}')"
kms_ctl project set sc --mode 0755 --plaintext-mode 0700 || fail "project set"
kms_ctl project bind sc --uid "$KMS_USER" --role viewer || fail "project bind"
rtok=$(kms_token sc --user rita --role crypto)
rid=$(kms_ctl token list | awk '$3 == "rita" {print $1}')
kms_ctl token revoke "$rid" || fail "token revoke"
declare -A btok=()
for p in b1 b2 b3; do
	btok[$p]=$(kms_token "$p")
	kms_login "$p" "${btok[$p]}"
	# shellcheck disable=SC2046 # one request line per key: a batch
	r=$(kms_call "$p/create-key" "$(printf '{"key_alias":"bulk-%d"}\n' $(seq 100))")
	assert_eq "$(grep -c key_info <<<"$r")" 100 "keys created in $p"
done

# snapshot HOSTMNT: what the copy must keep, as the daemon on HOSTMNT answers it.
snapshot() {
	local m=$1 p k
	for p in sc b1 b2 b3; do
		kms_call "$m/$p/list-keys" '{"limit":"1000"}' | jq -c '.key_details |= sort_by(.key_id)'
	done
	for k in "$one" "$two" "$three"; do
		kms_call "$m/sc/list-grants" "{\"key_id\":\"$k\"}"
		kms_call "$m/sc/keys/$k/tags"
		kms_call "$m/sc/keys/$k/get-key-rotation-status" '{}'
	done
	kms_call "$m/sc/tags"
}
snapshot "$KMS_MNT" >"$KMS_WORK/before.json"
policy=$(kms_ctl project show sc)
# The tokens (up to the blank line; the remembered bindings after it are per host).
tokens=$(kms_ctl token list | awk 'NF == 0 {exit} {print}' | sort)
kms_umount

# ---- the copy: killed once it writes, then to completion, then once more with nothing to do
kms_mh_pg
pgdb() { kms_pg_sql "$KMS_MH_PGDIR" kms "$1" 2>/dev/null; }
: >"$KMS_WORK/copy1.out"
"$KMSCTL" --state "$KMS_STATE" store copy --to "$KMS_MH_URI" >"$KMS_WORK/copy1.out" 2>&1 &
cpid=$!
kms_bg "$cpid"
for ((i = 0; i < 600; i++)); do
	[ "$(pgdb 'SELECT count(*) FROM keys')" -gt 0 ] 2>/dev/null && break
	kms_pid_gone "$cpid" && break
	sleep 0.05
done
if kms_pid_gone "$cpid"; then
	rc=0
	wait "$cpid" || rc=$?
	[ "$rc" -eq 0 ] || fail "store copy (first run) failed with status $rc before it could be killed: $(cat "$KMS_WORK/copy1.out")"
	log "note: the first store copy finished before the kill ($(pgdb 'SELECT count(*) FROM keys') keys)"
else
	kill -KILL "$cpid"
	wait "$cpid" 2>/dev/null || true
	log "store copy killed with $(pgdb 'SELECT count(*) FROM keys') of 303 keys copied"
fi
# The second run on a terminal (script(1) gives it one): its progress names the total.
out=$(script -qec "$(printf '%q ' "$KMSCTL" --state "$KMS_STATE" store copy --to "$KMS_MH_URI")" /dev/null 2>&1) ||
	fail "store copy (second run): $out"
log "second run: $(tr '\r' '\n' <<<"$out" | grep -v '^$' | tail -n 2 | tr '\n' ';')"
[[ $out =~ copied\ [0-9]+\ of\ 303\ keys,\ [0-9]+\ keys/s,\ [0-9:-]+\ left ]] ||
	fail "no progress (copied N of 303 keys, rate, time left) from store copy on a terminal: $out"
count_rows() {
	pgdb "SELECT (SELECT count(*) FROM keys), (SELECT count(*) FROM key_versions), (SELECT count(*) FROM grants),
		(SELECT count(*) FROM tags), (SELECT count(*) FROM tokens), (SELECT count(*) FROM bindings),
		(SELECT count(*) FROM project_policies), (SELECT coalesce(max(seq), 0) FROM changes WHERE kind IN (1, 2))"
}
rows=$(count_rows) || fail "the copy's tables cannot be read: $(kms_pg_sql "$KMS_MH_PGDIR" kms 'SELECT 1 FROM keys' 2>&1)"
assert_eq "$(cut -d'|' -f1-2 <<<"$rows")" "303|305" "keys and key versions in PostgreSQL"
out=$("$KMSCTL" --state "$KMS_STATE" store copy --to "$KMS_MH_URI" 2>&1) || fail "store copy (third run): $out"
assert_not_contains "$out" "keys/s" "store copy's output to a pipe (no progress line)"
rows3=$(count_rows)
# (judged at the end, so that one run reports the rest too)
late=
[ "$rows3" == "$rows" ] || late="a third store copy changed the copy (rows and change feed before: $rows, after: $rows3); the changes: $(pgdb "SELECT kind, id FROM changes WHERE seq > ${rows##*|} AND kind IN (1, 2) ORDER BY seq" | tr '\n' ' ')"

# ---- another host on the copy: check, then a daemon
kms_mh_host P "$KMS_STATE/root.key"
out=$(kms_mh_ctl P check 2>&1) || fail "kmsctl check on the copy: $out"
kms_mh_start P allow_other
MP=$(kms_mh_mnt P)
for p in sc b1 b2 b3; do
	t=$KMS_TOKEN
	[ "$p" == sc ] || t=${btok[$p]}
	kms_mh_login P "$p" "$t" || fail "the old token of $p cannot be set on the PostgreSQL host"
done
snapshot "$MP" >"$KMS_WORK/after.json"
diff "$KMS_WORK/before.json" "$KMS_WORK/after.json" >&2 ||
	fail "the PostgreSQL host answers differently from the SQLite one (diff above)"
# The disabled key stays disabled (its ciphertexts refused); enabled, every old ciphertext decrypts.
assert_errcode "$(kms_mh_call P sc/decrypt-data "{\"cipher_text\":\"${datas[3]}\"}")" KMS.0209
assert_ok "$(kms_mh_call P sc/enable-key "{\"key_id\":\"$two\"}")"
for i in "${!cts[@]}"; do
	assert_eq "$(jget "$(kms_mh_call P sc/decrypt-datakey "{\"key_id\":\"${keyof[i]}\",\"cipher_text\":\"${cts[i]}\",\"datakey_cipher_length\":\"64\"}")" .data_key)" \
		"${deks[i]}" "old DEK $i (${plains[i]}) decrypted on the PostgreSQL host"
	assert_eq "$(jget "$(kms_mh_call P sc/decrypt-data "{\"cipher_text\":\"${datas[i]}\"}")" .plain_text)" \
		"${plains[i]}" "old data ciphertext $i decrypted on the PostgreSQL host"
done
kms_mh_login P sc "$rtok"
assert_errcode "$(kms_mh_call P sc/list-keys '{}')" KMS.0302
kms_mh_login P sc "$KMS_TOKEN"
assert_eq "$(jget "$(user_call "$MP/sc/list-keys")" .total)" 3 "list-keys through the copied binding (no token)"
assert_eq "$(kms_mh_ctl P project show sc)" "$policy" "project show on the copy"
assert_eq "$(kms_mh_ctl P token list | awk 'NF == 0 {exit} {print}' | sort)" "$tokens" "token list on the copy"
assert_contains "$(kms_mh_ctl P token list)" "$(head -n 1 /etc/machine-id 2>/dev/null || hostname)" \
	"the remembered bindings of the SQLite host, copied"
kms_mh_stop P
[ -z "$late" ] || fail "$late"
