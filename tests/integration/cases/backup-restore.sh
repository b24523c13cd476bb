#!/bin/bash
# Backup and restore (issue 13.3). `kmsctl backup FILE` is taken while 4 clients make DEKs,
# create keys and rotate them through the daemon (on a terminal: pages done of the total, rate,
# time left); the file is 0600, holds no root key bytes and no DEK (the harness's leak scan), and
# says which root key generation it needs. `kmsctl restore FILE` then refuses a state dir with
# another root key (a sentence naming the generation; nothing made there) and one that holds
# keys; a restore killed (SIGKILL) once keys went in is finished by running it again; `kmsctl
# check` passes on the restored dir, and a daemon on it decrypts every DEK made before the backup
# began and accepts the token issued before. Then the same file restored into PostgreSQL, that
# store backed up (one snapshot transaction) and restored into SQLite again, checked there; and a
# store whose root key is in a PKCS#11 token (SoftHSMv2) backed up and restored through the URI
# it recorded (no root.key made), another token object refused.
source "$(dirname "$0")/../lib/common.sh"
# shellcheck source=tests/integration/lib/multihost.sh
source "$KMS_LIB/multihost.sh"
kms_setup script

kms_start_project br allow_other
seeds=()
for a in s1 s2 s3; do seeds+=("$(kms_create_key br "$a")"); done
kms_ctl project bind br --uid 4242 --role viewer || fail "project bind"
# Keys enough (in projects of their own: 100 keys a project) that a restore runs long enough to
# be killed in the middle.
for p in b1 b2 b3; do
	kms_login "$p" "$(kms_token "$p")"
	# shellcheck disable=SC2046 # one request line per key: a batch
	r=$(kms_call "$p/create-key" "$(printf '{"key_alias":"bulk-%d"}\n' $(seq 100))")
	assert_eq "$(grep -c key_info <<<"$r")" 100 "keys created in $p"
done
SRC=$KMS_STATE
B=$KMS_WORK/backups
mkdir "$B"
journal=$KMS_WORK/journal
mkdir "$journal"

# ---- the backup, under load
kms_py backup_restore load "$KMS_MNT/br" "$journal" "$KMS_WORK/stop" "${seeds[@]}" \
	>"$KMS_WORK/load.out" 2>&1 &
lpid=$!
kms_bg "$lpid"
for ((i = 0; i < 100; i++)); do
	[ "$(kms_py backup_restore count "$journal")" -ge 50 ] && break
	sleep 0.1
done
before=$(date +%s.%N)
out=$(script -qec "$(printf '%q ' "$KMSCTL" --state "$SRC" backup "$B/one.db")" /dev/null 2>&1) ||
	fail "kmsctl backup under load: $out"
made=$(kms_py backup_restore count "$journal")
sleep 0.5
touch "$KMS_WORK/stop"
wait "$lpid" || fail "the load clients failed: $(cat "$KMS_WORK/load.out")"
log "backup: $(tr '\r' '\n' <<<"$out" | grep -v '^$' | tail -n 3 | tr '\n' ';')"
[[ $out =~ copied\ [0-9]+\ of\ [0-9]+\ pages,\ [0-9]+\ pages/s,\ [0-9:-]+\ left ]] ||
	fail "no progress (copied N of M pages, rate, time left) from backup on a terminal: $out"
assert_contains "$out" "needs root key generation 1" "backup's report"
[ "$made" -ge 50 ] || fail "the clients made only $made DEKs before the backup ended"
assert_eq "$(stat -c %a "$B/one.db")" 600 "the backup file's mode"
[ ! -e "$B/one.db.partial" ] || fail "the backup left its temporary file behind"
# Nothing secret in it: no DEK (the list the harness scans for), no root key bytes.
kms_dek_scan "$KMS_DEKS" "$B/one.db" || fail "a DEK is in the backup file"
od -An -tx1 -v "$SRC/root.key" | tr -d ' \n' >"$KMS_WORK/rootkey.txt"
echo >>"$KMS_WORK/rootkey.txt"
kms_dek_scan "$KMS_WORK/rootkey.txt" "$B/one.db" || fail "the root key is in the backup file"
tokens=$(kms_ctl token list | sort)
kms_umount

# ---- the wrong root key, a destination that holds keys
bad=$KMS_WORK/bad
install -d -m 0700 "$bad"
head -c 32 /dev/urandom >"$bad/root.key"
chmod 0600 "$bad/root.key"
rc=0
out=$("$KMSCTL" --state "$bad" restore "$B/one.db" 2>&1) || rc=$?
assert_eq "$rc" 3 "restore under another root key: exit status"
assert_contains "$out" "is not the one this backup was sealed under" "refusal of another root key"
assert_contains "$out" "needs root key generation 1" "refusal of another root key"
[ ! -e "$bad/kms.db" ] || fail "a refused restore made a key database in $bad"
rc=0
out=$("$KMSCTL" --state "$SRC" restore "$B/one.db" 2>&1) || rc=$?
assert_eq "$rc" 3 "restore over a store with keys: exit status"
assert_contains "$out" "already holds keys" "refusal of a destination with keys"

# ---- a restore killed once keys went in, finished by a second run
NEW=$KMS_WORK/new
install -d -m 0700 "$NEW"
install -m 0600 "$SRC/root.key" "$NEW/root.key"
"$KMSCTL" --state "$NEW" restore "$B/one.db" >"$KMS_WORK/restore1.out" 2>&1 &
rpid=$!
kms_bg "$rpid"
for ((i = 0; i < 600; i++)); do
	[ "$(kms_py backup_restore keys "$NEW/kms.db")" -gt 0 ] && break
	kms_pid_gone "$rpid" && break
	sleep 0.02
done
if kms_pid_gone "$rpid"; then
	rc=0
	wait "$rpid" || rc=$?
	[ "$rc" -eq 0 ] || fail "restore (first run) failed with status $rc: $(cat "$KMS_WORK/restore1.out")"
	log "note: the first restore finished before the kill"
else
	kill -KILL "$rpid"
	wait "$rpid" 2>/dev/null || true
	log "restore killed with $(kms_py backup_restore keys "$NEW/kms.db") keys in"
fi
out=$("$KMSCTL" --state "$NEW" restore "$B/one.db" 2>&1) || fail "restore (second run): $out"
assert_contains "$out" " 0 damaged keys" "restore's check"
log "restore: $(tr '\n' ';' <<<"$out")"
out=$("$KMSCTL" --state "$NEW" check 2>&1) || fail "kmsctl check on the restored dir: $out"
assert_eq "$(kms_ctl token list | sort)" "$tokens" "token records (source)"
KMS_STATE=$NEW
assert_eq "$(kms_ctl token list | sort)" "$tokens" "token records of the restored dir"
assert_eq "$(kms_ctl project show br)" "$(KMS_STATE=$SRC kms_ctl project show br)" "project policy"

# ---- a daemon on the restored store: every DEK made before the backup, the old token
kms_mount allow_other
kms_login br "$KMS_TOKEN"
n=$(kms_py backup_restore verify "$KMS_MNT/br" "$journal" "$before") ||
	fail "a DEK made before the backup does not decrypt on the restored store"
[ "$n" -ge 50 ] || fail "only $n DEKs were made before the backup began"
log "$n DEKs made before the backup decrypt on the restored store"
assert_eq "$(($(jget "$(kms_call br/list-keys '{"limit":"1000"}')" .total) + 300))" \
	"$(kms_py backup_restore keys "$B/one.db")" "keys listed by the restored daemon (and 300 bulk keys)"
kms_umount

# ---- PostgreSQL: SQLite backup -> PostgreSQL, PostgreSQL backup -> SQLite
kms_mh_pg
PGS=$KMS_WORK/pgstate
install -d -m 0700 "$PGS"
install -m 0600 "$SRC/root.key" "$PGS/root.key"
out=$("$KMSCTL" --state "$PGS" --store "$KMS_MH_URI" restore "$B/one.db" 2>&1) ||
	fail "restore into PostgreSQL: $out"
assert_contains "$out" " 0 damaged keys" "restore into PostgreSQL"
keys=$(kms_pg_sql "$KMS_MH_PGDIR" kms 'SELECT count(*) FROM keys')
assert_eq "$keys" "$(kms_py backup_restore keys "$B/one.db")" "keys in PostgreSQL"
out=$("$KMSCTL" --state "$PGS" --store "$KMS_MH_URI" backup "$B/two.db" 2>&1) ||
	fail "backup of PostgreSQL: $out"
assert_contains "$out" "needs root key generation 1" "backup of PostgreSQL"
assert_eq "$(stat -c %a "$B/two.db")" 600 "the PostgreSQL backup's mode"
kms_dek_scan "$KMS_DEKS" "$B/two.db" || fail "a DEK is in the PostgreSQL backup file"
kms_dek_scan "$KMS_WORK/rootkey.txt" "$B/two.db" || fail "the root key is in the PostgreSQL backup"
AGAIN=$KMS_WORK/again
install -d -m 0700 "$AGAIN"
install -m 0600 "$SRC/root.key" "$AGAIN/root.key"
out=$("$KMSCTL" --state "$AGAIN" restore "$B/two.db" 2>&1) || fail "restore of the PostgreSQL backup: $out"
assert_contains "$out" " 0 damaged keys" "restore of the PostgreSQL backup"
assert_eq "$(kms_py backup_restore keys "$AGAIN/kms.db")" "$keys" "keys after PostgreSQL -> SQLite"
KMS_STATE=$AGAIN
assert_eq "$(kms_ctl token list | sort)" "$tokens" "token records after PostgreSQL -> SQLite"
# A DEK made before the first backup, decrypted there by kmsctl call (the handlers, no daemon).
e=$(head -n 1 "$journal/c0")
r=$(kms_ctl call br decrypt-datakey "$(jq -c '{key_id: .key, cipher_text: .ct, datakey_cipher_length: "64"}' <<<"$e")")
assert_eq "$(jget "$r" .data_key)" "$(jq -r .dek <<<"$e")" "a DEK after SQLite -> PostgreSQL -> SQLite"
for d in "$SRC" "$NEW" "$PGS" "$AGAIN"; do
	kms_dek_scan "$KMS_DEKS" "$d" || fail "a DEK reached $d"
done

# ---- a root key in a PKCS#11 token (SoftHSMv2): backup and restore find it through the URI
# the store recorded, never make a root.key file, and refuse another token object
softhsm=$(kms_softhsm_module)
if [ -z "$softhsm" ] || ! command -v softhsm2-util >/dev/null; then
	skip "the rest passed; SoftHSMv2 is not installed for the token part (apt-get install softhsm2)"
fi
HSM=$KMS_WORK/hsm
mkdir -p "$HSM/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$HSM/tokens" >"$HSM/softhsm2.conf"
export SOFTHSM2_CONF=$HSM/softhsm2.conf
softhsm2-util --init-token --free --label kmsfs --so-pin 5678 --pin 1234 >/dev/null || fail "softhsm2-util --init-token"
(umask 077 && echo 1234 >"$HSM/pin")
uri="pkcs11:token=kmsfs;object=root-a;pin-source=file:$HSM/pin"
TOK=$KMS_WORK/tok
hctl() { "$KMSCTL" --pkcs11-module "$softhsm" "$@"; }
hctl --state "$TOK" init --root-key "$uri" >/dev/null || fail "kmsctl init --root-key"
k=$(jget "$(hctl --state "$TOK" call th create-key '{"key_alias":"t"}')" .key_info.key_id)
r=$(hctl --state "$TOK" call th create-datakey "{\"key_id\":\"$k\"}")
kms_record "$r"
out=$(hctl --state "$TOK" backup "$B/tok.db" 2>&1) || fail "backup of a token-rooted store: $out"
TOK2=$KMS_WORK/tok2
install -d -m 0700 "$TOK2"
out=$(hctl --state "$TOK2" restore "$B/tok.db" 2>&1) || fail "restore of a token-rooted store: $out"
assert_contains "$out" " 0 damaged keys" "restore of a token-rooted store"
[ ! -e "$TOK2/root.key" ] || fail "restore made a root.key file although the root key is in a token"
d=$(hctl --state "$TOK2" call th decrypt-datakey "{\"key_id\":\"$k\",\"cipher_text\":\"$(jget "$r" .cipher_text)\",\"datakey_cipher_length\":\"64\"}")
assert_eq "$(jget "$d" .data_key)" "$(jget "$r" .plain_text)" "a DEK after a token-rooted restore"
hctl --state "$KMS_WORK/tokb" init --root-key "pkcs11:token=kmsfs;object=root-b;pin-source=file:$HSM/pin" >/dev/null ||
	fail "kmsctl init --root-key (a second object)"
TOK3=$KMS_WORK/tok3
install -d -m 0700 "$TOK3"
rc=0
out=$(hctl --state "$TOK3" --root-key "pkcs11:token=kmsfs;object=root-b;pin-source=file:$HSM/pin" restore "$B/tok.db" 2>&1) || rc=$?
assert_eq "$rc" 3 "restore under another token object: exit status"
assert_contains "$out" "is not the one this backup was sealed under" "refusal of another token object"
if [ -e "$TOK3/kms.db" ] || [ -e "$TOK3/root.key" ]; then fail "a refused restore made files in $TOK3"; fi
