#!/bin/bash
# Root-key rotation into and inside a PKCS#11 token (SoftHSMv2 through p11-kit, as in case
# pkcs11-root): a daemon with a file root key serves 4 clients while `kmsctl root-key rotate
# --to pkcs11:...` is killed with SIGKILL 3 times at random moments, then finished: the root key
# is a non-extractable object in the token, no root.key is left and the first key's bytes are in
# no file of the state directory. Then a rotation inside the token (no --to): a new object
# kmsfs-root-g3, the old object destroyed (pkcs11-tool). Every data key decrypts through the
# daemon, also after a remount that names no root key (the store's recorded one); check passes.
source "$(dirname "$0")/../lib/common.sh"
kms_setup softhsm2-util pkcs11-tool
softhsm=
for f in /usr/lib/softhsm/libsofthsm2.so /usr/lib/*/softhsm/libsofthsm2.so; do
	[ -e "$f" ] && softhsm=$f && break
done
[ -n "$softhsm" ] || skip "libsofthsm2.so not found (apt-get install softhsm2)"
p11-kit list-modules 2>/dev/null | grep -q softhsm ||
	skip "p11-kit has no softhsm2 module configured (/usr/share/p11-kit/modules/softhsm2.module)"
HSM=$KMS_WORK/hsm
mkdir -p "$HSM/tokens"
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$HSM" \
	>"$HSM/softhsm2.conf"
export SOFTHSM2_CONF=$HSM/softhsm2.conf
softhsm2-util --init-token --free --label kmsfs --so-pin 5678 --pin 1234 >/dev/null ||
	fail "softhsm2-util --init-token"
(umask 077 && echo 1234 >"$HSM/pin")
uri="pkcs11:token=kmsfs;object=kmsfs-root;pin-source=file:$HSM/pin"
objects() { pkcs11-tool --module "$softhsm" --token-label kmsfs --login --pin 1234 --list-objects 2>/dev/null; }

kms_start_project rk key_quota=100000
P=$KMS_MNT/rk
journal=$KMS_WORK/journal stop=$KMS_WORK/stop
mkdir "$journal"
first=$(od -An -tx1 "$KMS_STATE/root.key" | tr -d ' \n')
kms_py root_rotate clients "$P" "$journal" "$stop" "$KMS_DEKS" 2>"$KMS_WORK/clients.err" &
clients=$!
kms_bg "$clients"
made() { cat "$journal"/c* 2>/dev/null | wc -l; }
for ((i = 0; i < 100 && $(made) < 20; i++)); do sleep 0.1; done
[ "$(made)" -ge 20 ] || fail "no traffic before the rotation ($(tail -3 "$KMS_WORK/clients.err"))"

for round in 1 2 3; do
	"$KMSCTL" --state "$KMS_STATE" --pkcs11-module "$softhsm" root-key rotate --to "$uri" \
		>>"$KMS_WORK/rotate.out" 2>&1 &
	pid=$!
	sleep "$("$KMS_PY" -c 'import random; print(round(random.uniform(0.05, 7), 2))')"
	kill -KILL "$pid" 2>/dev/null || log "round $round: the rotation had finished"
	wait "$pid" 2>/dev/null || true
done
out=$("$KMSCTL" --state "$KMS_STATE" --pkcs11-module "$softhsm" root-key rotate --to "$uri" 2>&1) ||
	fail "the rotation into the token: $out"
log "$out"
assert_contains "$out" "is 'pkcs11:" "the root key after the rotation"
[ ! -e "$KMS_STATE/root.key" ] || fail "root.key left after moving the root key into the token"
[ ! -e "$KMS_STATE/root.key.next" ] || fail "root.key.next left behind"
for f in "$KMS_STATE"/*; do
	[ "$(od -An -tx1 "$f" | tr -d ' \n' | grep -c "$first")" -eq 0 ] ||
		fail "the file root key is still in $f"
done
objs=$(objects)
assert_contains "$objs" "kmsfs-root" "pkcs11-tool --list-objects"
assert_contains "$objs" "never extractable" "the root key object"

# Inside the token: kmsctl finds the recorded URI by itself (p11-kit's proxy).
out=$("$KMSCTL" --state "$KMS_STATE" root-key rotate 2>&1) || fail "the rotation inside the token: $out"
log "$out"
assert_contains "$out" "kmsfs-root-g3" "the new object"
assert_contains "$out" "destroyed the old root key" "the rotation inside the token"
objs=$(objects)
assert_eq "$(grep -c "label: *kmsfs-root-g3$" <<<"$objs")" 1 "the new object in the token"
assert_eq "$(grep -c "label: *kmsfs-root$" <<<"$objs")" 0 "the old object in the token"
n=$(made)
for ((i = 0; i < 100 && $(made) < n + 20; i++)); do sleep 0.1; done
touch "$stop"
wait "$clients" || fail "clients saw failures ($(tail -5 "$KMS_WORK/clients.err"))"

kms_py root_rotate verify "$P" "$journal" 40 || fail "data keys through the daemon after rotating"
kms_umount
kms_mount key_quota=100000
kms_login rk "$KMS_TOKEN"
kms_py root_rotate verify "$P" "$journal" 40 || fail "data keys after a remount"
kms_umount
out=$(kms_ctl check) || fail "kmsctl check after the rotations: $out"
