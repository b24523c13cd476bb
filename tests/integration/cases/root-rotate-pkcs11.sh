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
softhsm=$(kms_softhsm_module)
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

# shellcheck source=tests/integration/lib/root_rotate.sh
source "$KMS_LIB/root_rotate.sh"
kms_start_project rk key_quota=100000
first=$(rr_hex "$KMS_STATE/root.key")
rr_start "$KMS_MNT/rk"
rr_kills 3 7 "$KMSCTL" --state "$KMS_STATE" --pkcs11-module "$softhsm" root-key rotate --to "$uri"
out=$("$KMSCTL" --state "$KMS_STATE" --pkcs11-module "$softhsm" root-key rotate --to "$uri" 2>&1) ||
	fail "the rotation into the token: $out"
log "$out"
assert_contains "$out" "is 'pkcs11:" "the root key after the rotation"
[ ! -e "$KMS_STATE/root.key" ] || fail "root.key left after moving the root key into the token"
[ ! -e "$KMS_STATE/root.key.next" ] || fail "root.key.next left behind"
rr_gone "$first" "$KMS_STATE"
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
rr_finish rk
