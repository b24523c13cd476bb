#!/bin/bash
# Secret hygiene of the running daemon (issue: access control, point 8): no core dumps, memory
# locked (or a logged warning saying why not), and no plaintext DEK left in the daemon's memory
# once the responses that carried it were read or expired: after same-handle transactions,
# echo/cat through the mailbox, requests that carried a plaintext DEK in (encrypt-datakey,
# decrypt-datakey), error paths with a plaintext in the request, a batch, and a mailbox that
# expired unread. The daemon's writable memory is read through /proc/PID/mem and searched for
# every DEK (hex in either case, and raw bytes) and for the token set with setfattr.
source "$(dirname "$0")/../lib/common.sh"
kms_setup
P=$KMS_MNT/hy
kms_token hy >/dev/null
kms_mount mailbox_ttl=1
# The token is a bearer secret: the daemon keeps its claims, never the token itself.
tok=$(kms_token hy)
kms_login hy "$tok"
id=$(kms_create_key hy hygiene)

# Cores and locking, as the kernel sees them.
read -r soft hard < <(awk '/^Max core file size/ {print $5, $6}' "/proc/$KMS_PID/limits")
assert_eq "$soft $hard" "0 0" "core file size limit of the daemon"
lck=$(awk '/^VmLck:/ {print $2}' "/proc/$KMS_PID/status")
if [ "${lck:-0}" -eq 0 ]; then
	grep -qE "memory not locked|mlockall failed" "$KMS_LOG" "$KMS_STDERR" ||
		fail "daemon memory is not locked (VmLck 0) and no warning says so"
	log "memory not locked here (warning logged)"
fi

# Same-handle transactions returning plaintext.
for ((i = 0; i < 20; i++)); do
	r=$(kms_call "hy/keys/$id/create-datakey" '{"datakey_length":"256"}')
	assert_ok "$r"
done
# The shell pattern through the mailbox.
for ((i = 0; i < 10; i++)); do
	echo '{"datakey_length":"512"}' >"$P/keys/$id/create-datakey"
	r=$(kms_cat "$P/keys/$id/create-datakey")
	assert_ok "$r"
done
# Plaintext DEKs going in: encrypt-datakey, then decrypt-datakey back, both ways.
mine=()
for ((i = 0; i < 5; i++)); do
	d=$("$KMS_PY" -c 'import os; print(os.urandom(32).hex().upper())')
	mine+=("$d")
	printf '%s\n' "$d" >>"$KMS_DEKS"
	r=$(kms_call hy/encrypt-datakey "$(dek_request "$id" "$d")")
	assert_ok "$r"
	c=$(jget "$r" .cipher_text)
	r=$(kms_call "hy/keys/$id/decrypt-datakey" "{\"cipher_text\":\"$c\",\"datakey_cipher_length\":\"32\"}")
	assert_eq "$(jget "$r" .data_key)" "$d" "decrypt-datakey round trip"
	# Written and never read: the mailbox expires (mailbox_ttl=1).
	echo "{\"cipher_text\":\"$c\",\"datakey_cipher_length\":\"32\"}" >"$P/keys/$id/decrypt-datakey"
done
# Error paths with a plaintext in the request: wrong digest, wrong length, unknown key.
d=${mine[0]}
assert_errcode "$(kms_call hy/encrypt-datakey "{\"key_id\":\"$id\",\"plain_text\":\"$d$(printf '0%.0s' {1..64})\",\"datakey_plain_length\":\"32\"}")" KMS.2103
assert_errcode "$(kms_call hy/encrypt-datakey "{\"key_id\":\"$id\",\"plain_text\":\"$d\",\"datakey_plain_length\":\"64\"}")" KMS.2104
assert_errcode "$(kms_call hy/encrypt-datakey "$(dek_request 00000000-0000-0000-0000-000000000000 "$d")")" KMS.0207
# A batch: three data keys and a bad line, one response each.
r=$(printf '{}\n{"datakey_length":"128"}\nnot json\n{}\n' | kms_call "hy/keys/$id/create-datakey" -)
assert_eq "$(printf '%s\n' "$r" | wc -l)" 4 "batch response lines"

# Let the unread mailboxes expire (TTL 1 s; the janitor runs every second), then search.
sleep 3
[ "$(wc -l <"$KMS_DEKS")" -ge 40 ] || fail "too few DEKs recorded to mean anything: $(wc -l <"$KMS_DEKS")"
if ldd "$KMSFS" | grep -q libasan; then
	# ASan maps terabytes of shadow memory read-write: no scan can read that in a test's time.
	# The plain build runs the scan.
	log "sanitizer build: memory scan skipped"
	kms_umount
	exit 0
fi
"$KMS_PY" "$KMS_IO" memscan "$KMS_PID" "$KMS_DEKS" "$tok" || fail "plaintext DEKs remain in the daemon's memory"
kms_umount
