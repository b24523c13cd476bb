#!/bin/bash
# The root key in a PKCS#11 token (issue 13.1): SoftHSMv2 with its configuration and token
# directory in the work dir (SOFTHSM2_CONF). `kmsctl init --root-key pkcs11:...` (the SoftHSM
# module named directly) creates a non-extractable, sensitive AES-256 object that pkcs11-tool
# shows so, and no root.key in the state dir; kmsctl then finds the token by itself through
# p11-kit's proxy (the URI the store recorded). A daemon with -o root_key=URI,pkcs11_module=...
# serves DEK round trips, across a remount and a kill -9; a wrong PIN and a missing object are
# refused with a sentence saying so. The token made unavailable while the daemon runs (its
# directory moved away): a cached key still serves, a key not in memory answers KMS.0102, the log
# says so once; the directory back, the daemon recovers by itself (logged once) and serves that
# key. A PIN file others may read is refused; a PIN in the URI (pin-value=) is blanked in ps (of
# kmsfs and of kmsctl) and named by no log line or setting. Once more on PostgreSQL (-o
# store=URI). The DEK leak scan covers the token directory too.
source "$(dirname "$0")/../lib/common.sh"
# shellcheck source=tests/integration/lib/pg.sh
source "$KMS_LIB/pg.sh"
kms_setup softhsm2-util pkcs11-tool
softhsm=$(kms_softhsm_module)
[ -n "$softhsm" ] || skip "libsofthsm2.so not found (apt-get install softhsm2)"
proxy=$(pkg-config --variable=proxy_module p11-kit-1 2>/dev/null)
[ -e "$proxy" ] || skip "p11-kit's proxy module not found (apt-get install p11-kit libp11-kit-dev)"
p11-kit list-modules 2>/dev/null | grep -q softhsm ||
	skip "p11-kit has no softhsm2 module configured (/usr/share/p11-kit/modules/softhsm2.module)"

HSM=$KMS_WORK/hsm
mkdir -p "$HSM/tokens"
cat >"$HSM/softhsm2.conf" <<EOF
directories.tokendir = $HSM/tokens
objectstore.backend = file
log.level = ERROR
EOF
export SOFTHSM2_CONF=$HSM/softhsm2.conf
softhsm2-util --init-token --free --label kmsfs --so-pin 5678 --pin 1234 >/dev/null ||
	fail "softhsm2-util --init-token"
(umask 077 && echo 1234 >"$HSM/pin" && echo 9999 >"$HSM/badpin")
uri="pkcs11:token=kmsfs;object=kmsfs-root;pin-source=file:$HSM/pin"

# ---- init: the object in the token, not extractable; no root key file
out=$("$KMSCTL" --state "$KMS_STATE" --pkcs11-module "$softhsm" init --root-key "$uri") ||
	fail "kmsctl init --root-key: $out"
objs=$(pkcs11-tool --module "$softhsm" --token-label kmsfs --login --pin 1234 --list-objects 2>/dev/null)
assert_contains "$objs" "kmsfs-root" "pkcs11-tool --list-objects"
assert_contains "$objs" "AES length 32" "the root key object"
assert_contains "$objs" "never extractable" "the root key object"
assert_contains "$objs" "sensitive" "the root key object"
[ -e "$KMS_STATE/root.key" ] && fail "a root.key file was made although the root key is in a token"
# init again: the object is there, nothing changes
out=$("$KMSCTL" --state "$KMS_STATE" --pkcs11-module "$softhsm" init --root-key "$uri") ||
	fail "kmsctl init again: $out"
assert_contains "$out" "already initialised" "kmsctl init again"
n=$(pkcs11-tool --module "$softhsm" --token-label kmsfs --login --pin 1234 --list-objects 2>/dev/null | grep -c "label: *kmsfs-root")
assert_eq "$n" 1 "root key objects after a second init"

# ---- kmsctl without --root-key: the recorded URI, through p11-kit's proxy
KMS_TOKEN=$(kms_token pk) || fail "kmsctl token issue through p11-kit's proxy"
kms_mount "root_key=$uri" "pkcs11_module=$softhsm"
kms_login pk "$KMS_TOKEN"
id=$(kms_create_key pk app)
r=$(kms_call pk/create-datakey "{\"key_id\":\"$id\"}")
assert_ok "$r"
pt=$(jget "$r" .plain_text)
ct=$(jget "$r" .cipher_text)
dk() { kms_call pk/decrypt-datakey "{\"key_id\":\"$1\",\"cipher_text\":\"$2\",\"datakey_cipher_length\":\"64\"}"; }
assert_eq "$(jget "$(dk "$id" "$ct")" .data_key)" "$pt" "DEK round trip"
other=$(kms_create_key pk other)
r=$(kms_call pk/create-datakey "{\"key_id\":\"$other\"}")
opt=$(jget "$r" .plain_text)
oct=$(jget "$r" .cipher_text)
[ -e "$KMS_STATE/root.key" ] && fail "root.key appeared in the state dir"

# ---- remount, then kill -9 and restart
kms_umount
kms_mount "root_key=$uri" "pkcs11_module=$softhsm"
kms_login pk "$KMS_TOKEN"
assert_eq "$(jget "$(dk "$id" "$ct")" .data_key)" "$pt" "DEK after a remount"
kms_kill9
kms_mount "root_key=$uri" "pkcs11_module=$proxy"
kms_login pk "$KMS_TOKEN"
assert_eq "$(jget "$(dk "$id" "$ct")" .data_key)" "$pt" "DEK after kill -9 (module: p11-kit's proxy)"
kms_ctl check >/dev/null || fail "kmsctl check (token root, through the proxy)"

# ---- the token goes away while the daemon runs: $id is cached, $other is not (not used since
# the restart)
mv "$HSM/tokens" "$HSM/tokens.away"
assert_eq "$(jget "$(dk "$id" "$ct")" .data_key)" "$pt" "a cached key while the token is away"
assert_errcode "$(dk "$other" "$oct")" KMS.0102
assert_errcode "$(kms_call pk/create-key '{"key_alias":"during"}')" KMS.0102
for ((i = 0; i < 30; i++)); do
	grep -q "root key token unavailable" "$KMS_LOG" && break
	sleep 0.1
done
assert_eq "$(grep -c "root key token unavailable" "$KMS_LOG")" 1 "log lines about the loss"
mv "$HSM/tokens.away" "$HSM/tokens"
for ((i = 0; i < 50; i++)); do
	grep -q "root key token available again" "$KMS_LOG" && break
	sleep 0.1
done
assert_eq "$(grep -c "root key token available again" "$KMS_LOG")" 1 "log lines about the recovery"
assert_eq "$(jget "$(dk "$other" "$oct")" .data_key)" "$opt" "an uncached key after the token is back"
kms_create_key pk after >/dev/null
kms_umount

# ---- a wrong PIN, a missing object: a sentence each
err=$("$KMSCTL" --state "$KMS_STATE" --pkcs11-pin-file "$HSM/badpin" check 2>&1) &&
	fail "kmsctl check with a wrong PIN succeeded"
assert_contains "$err" "PIN of token" "wrong PIN"
assert_contains "$err" "is wrong" "wrong PIN"
err=$("$KMSCTL" --state "$KMS_STATE" --root-key "pkcs11:token=kmsfs;object=nope;pin-source=file:$HSM/pin" check 2>&1) &&
	fail "kmsctl check with a missing object succeeded"
assert_contains "$err" "no secret key 'nope'" "missing object"
err=$("$KMSCTL" --state "$KMS_STATE" --root-key "pkcs11:token=nosuch;object=kmsfs-root" check 2>&1) &&
	fail "kmsctl check with a missing token succeeded"
assert_contains "$err" "no token" "missing token"
rc=0
timeout 20 "$KMSFS" "$KMS_MNT" -f -o "state=$KMS_STATE,log=$KMS_LOG,pkcs11_pin_file=$HSM/badpin" \
	</dev/null >"$KMS_WORK/bad.out" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "kmsfs started with a wrong PIN"
assert_contains "$(cat "$KMS_WORK/bad.out" "$KMS_LOG")" "is wrong" "kmsfs with a wrong PIN"
kms_detach "$KMS_MNT" || fail "mount left after a failed start"

# ---- a PIN file others may read: refused, naming the file, its mode and the fix
cp "$HSM/pin" "$HSM/pin-open" && chmod 0640 "$HSM/pin-open"
err=$("$KMSCTL" --state "$KMS_STATE" --pkcs11-pin-file "$HSM/pin-open" check 2>&1) &&
	fail "kmsctl check with a PIN file of mode 0640 succeeded"
assert_contains "$err" "PIN file '$HSM/pin-open'" "PIN file open to others"
assert_contains "$err" "mode 0640" "PIN file open to others"
assert_contains "$err" "chmod 600" "PIN file open to others"

# ---- the PIN in the URI (pin-value=): ps shows it blanked, no log line or setting names it
pvuri="pkcs11:token=kmsfs;object=kmsfs-root;pin-value=1234"
kms_mount "root_key=$pvuri" "pkcs11_module=$softhsm"
cmdline=$(tr '\0' ' ' <"/proc/$KMS_PID/cmdline")
assert_not_contains "$cmdline" "pin-value=1234" "kmsfs's command line (ps)"
assert_contains "$cmdline" "pin-value=****" "kmsfs's command line (ps)"
kms_login pk "$KMS_TOKEN"
assert_eq "$(jget "$(dk "$id" "$ct")" .data_key)" "$pt" "DEK with the PIN in the URI"
kms_umount
assert_not_contains "$(cat "$KMS_LOG" "$KMS_STDERR")" "pin-value=1234" "the log"
assert_not_contains "$(kms_sql "SELECT name, value FROM meta")" "pin-value" "the store's settings"
"$KMSCTL" --state "$KMS_STATE" --root-key "$pvuri" check >/dev/null ||
	fail "kmsctl --root-key with the PIN in the URI"
# kmsctl's own command line, while it waits for its request on stdin (read(2) on fd 0).
mkfifo "$KMS_WORK/req"
"$KMSCTL" --state "$KMS_STATE" --root-key "$pvuri" call pk list-keys - <"$KMS_WORK/req" \
	>"$KMS_WORK/list.out" 2>&1 &
ctl=$!
exec 7>"$KMS_WORK/req"
for _ in $(seq 100); do
	[[ "$(cat "/proc/$ctl/syscall" 2>/dev/null)" == "0 0x0 "* ]] && break
	sleep 0.1
done
[[ "$(cat "/proc/$ctl/syscall" 2>/dev/null)" == "0 0x0 "* ]] || fail "kmsctl call - never read stdin"
cmdline=$(tr '\0' ' ' <"/proc/$ctl/cmdline")
echo '{}' >&7
exec 7>&-
wait "$ctl" || fail "kmsctl call list-keys with the PIN in the URI: $(cat "$KMS_WORK/list.out")"
assert_contains "$(cat "$KMS_WORK/list.out")" '"keys"' "kmsctl call list-keys with the PIN in the URI"
assert_not_contains "$cmdline" "pin-value=1234" "kmsctl's command line (ps)"
assert_contains "$cmdline" "pin-value=****" "kmsctl's command line (ps)"
# The recorded URI with its pin-source again, for kmsctl without --root-key.
"$KMSCTL" --state "$KMS_STATE" --root-key "$uri" check >/dev/null || fail "kmsctl check (pin-source)"

# ---- PostgreSQL: the same token root, another object
if kms_pg_bindir >/dev/null; then
	pgdir=$KMS_WORK/pg
	kms_pg_init "$pgdir" || fail "initdb"
	kms_pg_start "$pgdir" || fail "PostgreSQL did not start"
	kms_pg_createdb "$pgdir" kms || fail "createdb"
	pguri=$(kms_pg_uri "$pgdir" kms)
	puri="pkcs11:token=kmsfs;object=kmsfs-pg;pin-source=file:$HSM/pin"
	KMS_STATE=$KMS_WORK/pgstate
	"$KMSCTL" --state "$KMS_STATE" --store "$pguri" init --root-key "$puri" >/dev/null ||
		fail "kmsctl --store init --root-key"
	[ -e "$KMS_STATE/root.key" ] && fail "root.key made with a token root on PostgreSQL"
	tok=$("$KMSCTL" --state "$KMS_STATE" --store "$pguri" token issue --project pg) ||
		fail "token issue on PostgreSQL"
	kms_mount "store=$pguri" "root_key=$puri"
	kms_login pg "$tok"
	pid=$(kms_create_key pg app)
	r=$(kms_call pg/create-datakey "{\"key_id\":\"$pid\"}")
	ppt=$(jget "$r" .plain_text)
	pct=$(jget "$r" .cipher_text)
	r=$(kms_call pg/decrypt-datakey "{\"key_id\":\"$pid\",\"cipher_text\":\"$pct\",\"datakey_cipher_length\":\"64\"}")
	assert_eq "$(jget "$r" .data_key)" "$ppt" "DEK round trip on PostgreSQL"
	kms_umount
	"$KMSCTL" --state "$KMS_STATE" --store "$pguri" check >/dev/null || fail "kmsctl check on PostgreSQL"
	[ -e "$KMS_STATE/root.key" ] && fail "root.key in the state dir (PostgreSQL)"
else
	log "PostgreSQL is not installed: its part skipped"
fi

# The DEKs never reach the token's files either (kms_cleanup scans log and state dir).
kms_dek_scan "$KMS_DEKS" "$HSM" "$KMS_WORK/state" || fail "a plaintext DEK reached the token's files or the state dir"
