#!/bin/bash
# Root-key rotation without downtime (issue 13.2): a daemon serves 4 clients (keys made and
# rotated, data keys made and decrypted) while `kmsctl root-key rotate` is killed with SIGKILL
# at random moments 10 times, then run to the end. Every data key made before, during and after
# decrypts through the daemon, also after a remount; `kmsctl check` passes; the first root
# key's bytes are in no file of the state directory any more, and no root.key.next is left.
source "$(dirname "$0")/../lib/common.sh"
kms_start_project rr key_quota=100000
P=$KMS_MNT/rr
journal=$KMS_WORK/journal stop=$KMS_WORK/stop
mkdir "$journal"
first=$(od -An -tx1 "$KMS_STATE/root.key" | tr -d ' \n')

kms_py root_rotate clients "$P" "$journal" "$stop" "$KMS_DEKS" 2>"$KMS_WORK/clients.err" &
clients=$!
kms_bg "$clients"
made() { cat "$journal"/c* 2>/dev/null | wc -l; }
# meta NAME: a setting of the store (read-only, beside the daemon).
meta() {
	"$KMS_PY" -c 'import sqlite3, sys
db = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
r = db.execute("select value from meta where name = ?", (sys.argv[2],)).fetchone()
print(r[0] if r else "")' "$KMS_STATE/kms.db" "$1"
}
for ((i = 0; i < 100 && $(made) < 20; i++)); do sleep 0.1; done
[ "$(made)" -ge 20 ] || fail "no traffic before the rotation ($(tail -3 "$KMS_WORK/clients.err"))"
kms_py root_rotate verify "$P" "$journal" 20 || fail "data keys made before the rotation"

for round in $(seq 10); do
	"$KMSCTL" --state "$KMS_STATE" root-key rotate >>"$KMS_WORK/rotate.out" 2>&1 &
	pid=$!
	sleep "$("$KMS_PY" -c 'import random; print(round(random.uniform(0.05, 8), 2))')"
	kill -KILL "$pid" 2>/dev/null || log "round $round: the rotation had finished"
	wait "$pid" 2>/dev/null || true
	log "round $round: generation $(meta root_generation), next '$(meta root_next_location)'," \
		"$(made) data keys"
done
out=$("$KMSCTL" --state "$KMS_STATE" root-key rotate 2>&1) || fail "the last rotation: $out"
log "$out"
assert_contains "$out" "root key generation" "kmsctl root-key rotate"
assert_contains "$out" "destroyed the old root key" "kmsctl root-key rotate"
n=$(made)
for ((i = 0; i < 100 && $(made) < n + 20; i++)); do sleep 0.1; done
touch "$stop"
wait "$clients" || fail "clients saw failures ($(tail -5 "$KMS_WORK/clients.err"))"

kms_py root_rotate verify "$P" "$journal" 40 || fail "data keys through the daemon after rotating"
kms_umount
kms_mount key_quota=100000
kms_login rr "$KMS_TOKEN"
kms_py root_rotate verify "$P" "$journal" 40 || fail "data keys after a remount"
kms_umount
out=$(kms_ctl check) || fail "kmsctl check after the rotations: $out"

[ ! -e "$KMS_STATE/root.key.next" ] || fail "root.key.next left behind"
[ -f "$KMS_STATE/root.key" ] || fail "no root.key after the rotations"
for f in "$KMS_STATE"/*; do
	[ "$(od -An -tx1 "$f" | tr -d ' \n' | grep -c "$first")" -eq 0 ] ||
		fail "the first root key is still in $f"
done
gen=$(meta root_generation)
[ "$gen" -ge 2 ] || fail "root_generation $gen after the rotations"
log "root key generation $gen, $(made) data keys verified"
