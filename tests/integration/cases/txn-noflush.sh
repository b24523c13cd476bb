#!/bin/bash
# Read-write handles close without a FLUSH round trip (FOPEN_NOFLUSH), counted in libfuse's
# `-o debug` log: a program's open(O_RDWR), write, read, close costs OPEN, WRITE, READ and an
# asynchronous RELEASE, no FLUSH. A read-write request written and never read still runs, at the
# release, and its answer lands in the opener's mailbox; close() reports nothing for it, fsync()
# does. Write-only handles keep their FLUSH: `echo "$req" > f` still fails with the errno.
source "$(dirname "$0")/../lib/common.sh"
kms_start_project nf debug
P=$KMS_MNT/nf
id=$(kms_create_key nf app)
F=$P/keys/$id/create-datakey-without-plaintext

# ops OPCODE: how many requests of that kind the daemon has logged so far (libfuse's debug
# lines go to kmsfs's log).
ops() { grep -c "opcode: $1 " "$KMS_LOG" || true; }
# settle: wait until the RELEASEs of closed handles have been logged (they are asynchronous).
settle() {
	local i n
	for ((i = 0; i < 50; i++)); do
		n=$(ops RELEASE)
		sleep 0.05
		[ "$(ops RELEASE)" == "$n" ] && [ "$(ops OPEN)" == "$n" ] && return 0
	done
}
settle
[ "$(ops OPEN)" -gt 0 ] || fail "no 'opcode: OPEN' in the -o debug log: $(head -c 300 "$KMS_LOG")"

# 20 program transactions: 20 OPEN, WRITE, READ and RELEASE, no FLUSH.
declare -A before after
for op in OPEN WRITE READ FLUSH RELEASE; do before[$op]=$(ops $op); done
"$KMS_PY" - "$F" "$id" <<'PY' || fail "O_RDWR transactions failed"
import json, os, sys
for _ in range(20):
    fd = os.open(sys.argv[1], os.O_RDWR)
    os.write(fd, json.dumps({"key_id": sys.argv[2]}).encode())
    r = json.loads(os.pread(fd, 65536, 0))
    assert "cipher_text" in r, r
    os.close(fd)
PY
settle
for op in OPEN WRITE READ FLUSH RELEASE; do after[$op]=$(($(ops $op) - before[$op])); done
log "20 O_RDWR transactions: OPEN ${after[OPEN]} WRITE ${after[WRITE]} READ ${after[READ]} FLUSH ${after[FLUSH]} RELEASE ${after[RELEASE]}"
assert_eq "${after[FLUSH]}" 0 "FLUSH requests for 20 read-write transactions"
for op in OPEN WRITE READ RELEASE; do assert_eq "${after[$op]}" 20 "$op requests for 20 transactions"; done

# Write-only keeps its FLUSH, and close() reports the request's errno.
n=$(ops FLUSH)
kms_write nf/create-key '{"key_alias":"bad alias"}'
assert_errno close EINVAL
[ "$(ops FLUSH)" -gt "$n" ] || fail "no FLUSH for a write-only close"
assert_errcode "$(cat "$P/create-key")" KMS.1101

# Written, never read: close() is 0, the request runs at the release, the answer is mailed.
# take FILE CODE: read-only opens of FILE until one takes a mailed answer containing CODE (the
# release may come after the first open: that one runs an empty request).
take() {
	local i r
	for ((i = 0; i < 40; i++)); do
		r=$(cat "$1")
		[[ $r == *"$2"* ]] && { printf '%s' "$r"; return 0; }
		sleep 0.05
	done
	fail "no mailed answer with $2 in $1 (last: $r)"
}
"$KMS_PY" - "$P/describe-key" "$P/create-key" "$id" <<'PY' || fail "written-not-read handles"
import json, os, sys
for path, req in ((sys.argv[1], {"key_id": sys.argv[3]}), (sys.argv[2], {"key_alias": "bad alias"})):
    fd = os.open(path, os.O_RDWR)
    os.write(fd, json.dumps(req).encode())
    os.close(fd)  # raises if close() reported anything
PY
assert_eq "$(jget "$(take "$P/describe-key" key_info)" .key_info.key_id)" "$id" "mailed answer of a read-write handle"
assert_errcode "$(take "$P/create-key" KMS.1101)" KMS.1101

# fsync runs what was written and reports its errno, once; close() is then 0.
"$KMS_PY" - "$P/create-key" <<'PY' || fail "fsync of a failed request"
import errno, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
os.write(fd, b'{"key_alias":"bad alias"}')
try:
    os.fsync(fd)
    sys.exit("fsync() after a failed request succeeded")
except OSError as e:
    assert e.errno == errno.EINVAL, e
os.fsync(fd)
r = os.pread(fd, 65536, 0)
assert b"KMS.1101" in r, r
os.close(fd)
PY
kms_umount
