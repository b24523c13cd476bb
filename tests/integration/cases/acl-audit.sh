#!/bin/bash
# The audit trail (issue 3.7): with -o audit=FILE every request appends exactly one JSON line with
# time, uid, gid, pid, process, project, key_id, action, status, error_code, sequence and token_id
# (failures and refusals too); no plaintext DEK, data plaintext, token or token MAC ever appears
# in it. When the line cannot be written (the audit file's filesystem is full) every request fails
# closed, KMS.0102 and EIO, hands out no key material and changes nothing; once space is freed,
# requests work again.
source "$(dirname "$0")/../lib/common.sh"
kms_setup
kms_user_setup
AFS=$KMS_WORK/auditfs
mkdir "$AFS"
mount -t tmpfs -o size=64k,mode=0755 kmsit-audit "$AFS" || skip "cannot mount a tmpfs"
trap 'rc=$?; umount -l "$AFS" 2>/dev/null; (exit $rc); kms_cleanup' EXIT
AUDIT=$AFS/audit.jsonl
P=$KMS_MNT/au
SEQ=919c82d4-8046-4722-9094-35c3c6524cff
tok=$(kms_token au --user auditor --role admin)
kms_mount allow_other audit="$AUDIT"
kms_login au "$tok"
tid=$(kms_ctl token list | awk '$3 == "auditor" {print $1}')
[ -n "$tid" ] || fail "no token id for auditor"

lines() { wc -l <"$AUDIT"; }
last() { tail -n 1 "$AUDIT"; }
n0=$(lines)
id=$(kms_create_key au app)
assert_eq "$(lines)" $((n0 + 1)) "audit lines after one create-key"

# One request, every field: a python process sends a valid sequence and reports its pid.
out=$("$KMS_PY" - "$P/keys/$id/create-datakey" "$SEQ" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
os.write(fd, ('{"sequence":"%s"}' % sys.argv[2]).encode())
resp = os.read(fd, 65536).decode()
os.close(fd)
print(os.getpid(), open("/proc/self/comm").read().strip())
print(resp, end="")
PY
)
read -r pypid pycomm <<<"$(head -n 1 <<<"$out")"
resp=$(tail -n +2 <<<"$out")
kms_record "$resp"
dek=$(jget "$resp" .plain_text)
[[ $dek =~ ^[0-9A-F]{128}$ ]] || fail "create-datakey: $resp"
assert_eq "$(lines)" $((n0 + 2)) "audit lines after create-datakey"
l=$(last)
for f in time uid gid pid process project key_id action status error_code sequence token_id; do
	jget "$l" "has(\"$f\")" | grep -qx true || fail "audit line without $f: $l"
done
jget "$l" '(.uid|type) == "number" and (.gid|type) == "number" and (.pid|type) == "number" and
	(.status|type) == "number"' | grep -qx true || fail "audit field types: $l"
[[ $(jget "$l" .time) =~ ^20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9](\.[0-9]+)?Z$ ]] ||
	fail "audit time: $(jget "$l" .time)"
t=$(date -d "$(jget "$l" .time)" +%s)
((t >= $(date +%s) - 60 && t <= $(date +%s) + 1)) || fail "audit time is not now: $(jget "$l" .time)"
assert_eq "$(jget "$l" '[.uid, .gid, .pid] | map(tostring) | join(" ")')" "0 0 $pypid" "uid gid pid"
assert_eq "$(jget "$l" '[.process, .project, .key_id, .action, (.status|tostring), .error_code, .sequence, .token_id] | join(" ")')" \
	"$pycomm au $id create-datakey 200  $SEQ $tid" "audit line of create-datakey"

# Failures are audited too, with their status and code; an invalid sequence is not echoed.
r=$(kms_call au/describe-key '{"key_id":"00000000-0000-0000-0000-000000000000"}')
assert_errcode "$r" KMS.0207
assert_eq "$(jget "$(last)" '[.action, (.status|tostring), .error_code] | join(" ")')" \
	"describe-key 404 KMS.0207" "audit of an unknown key"
r=$(kms_call au/describe-key "{\"key_id\":\"$id\",\"sequence\":\"not-a-sequence\"}")
assert_errcode "$r" KMS.0206
assert_eq "$(jget "$(last)" '[.key_id, .error_code, .sequence] | join(" ")')" " KMS.0206 " \
	"audit of a bad sequence"
# Another uid through a binding: its uid, gid and process (cat) are the ones recorded.
kms_ctl project bind au --uid "$KMS_USER" --role viewer || fail "project bind"
as_user cat "$P/keys/$id/create-datakey" >/dev/null || true
l=$(last)
assert_eq "$(jget "$l" '[(.uid|tostring), (.gid|tostring), .process, .action, (.status|tostring), .error_code] | join(" ")')" \
	"$KMS_UID $KMS_GID cat create-datakey 403 KMS.0307" "audit of the user's refused request"
assert_ok "$(user_call "au/keys/$id/describe-key")"
assert_eq "$(jget "$(last)" '[(.uid|tostring), .action, (.status|tostring)] | join(" ")')" \
	"$KMS_UID describe-key 200" "audit of the user's describe-key"
# Every request is one line: ten more requests, ten more lines.
n1=$(lines)
for ((i = 0; i < 5; i++)); do
	assert_ok "$(kms_call "au/keys/$id/describe-key")"
	assert_ok "$(kms_call au/encrypt-data "{\"key_id\":\"$id\",\"plain_text\":\"top-secret-message-$i\"}")"
done
assert_eq "$(lines)" $((n1 + 10)) "audit lines after ten requests"
jq -e . "$AUDIT" >/dev/null || fail "the audit file is not JSON lines"

# No secrets in the trail.
a=$(cat "$AUDIT")
assert_not_contains "$a" "$dek" "audit file (DEK)"
assert_not_contains "${a,,}" "${dek,,}" "audit file (DEK, lower case)"
assert_not_contains "$a" "$tok" "audit file (token)"
assert_not_contains "$a" "${tok##*.}" "audit file (token MAC)"
assert_not_contains "$a" "top-secret-message" "audit file (data plaintext)"
"$KMS_PY" "$KMS_IO" scan "$KMS_DEKS" "$AUDIT" || fail "a DEK reached the audit file"

# Fail closed: fill the audit filesystem. Once the audit file's last page is used up (a few more
# lines), every request fails with KMS.0102 / EIO.
dd if=/dev/zero of="$AFS/filler" bs=1k 2>/dev/null || true
failed=0
for ((i = 0; i < 60; i++)); do
	r=$(kms_call "au/keys/$id/describe-key")
	if [ "$(jget "$r" '.error.error_code // "none"')" == KMS.0102 ]; then
		failed=1
		break
	fi
	assert_ok "$r"
done
[ "$failed" == 1 ] || fail "requests still succeed with the audit filesystem full"
nfull=$(lines)
r=$(kms_call "au/keys/$id/create-datakey" '{}')
assert_errcode "$r" KMS.0102
assert_errno close 0 # read-write: close() reports nothing (docs/using.md); write-only does:
kms_write "au/keys/$id/describe-key" '{}'
assert_errno close EIO
r=$(kms_call "au/keys/$id/disable-key" '{}')
assert_errcode "$r" KMS.0102
r=$(kms_call au/create-key '{"key_alias":"unaudited"}')
assert_errcode "$r" KMS.0102
assert_errcode "$(user_call "au/keys/$id/describe-key")" KMS.0102
assert_eq "$(lines)" "$nfull" "audit lines while full"

# Space again: requests work (tmpfs may take a moment to count the freed blocks), the trail is
# still one JSON object per line (no torn line from the failed writes), and what failed
# unaudited did not happen.
rm -f "$AFS/filler"
for ((i = 0; i < 20; i++)); do
	r=$(kms_call "au/keys/$id/describe-key")
	[ "$(jget "$r" '.error.error_code // "none"')" == none ] && break
	sleep 0.1
done
assert_ok "$r"
bad=$("$KMS_PY" - "$AUDIT" <<'PY'
import json, sys
for n, line in enumerate(open(sys.argv[1], "rb").read().split(b"\n")[:-1], 1):
    try:
        assert isinstance(json.loads(line), dict)
    except Exception:
        i = line.find(b'{"time"', 1)
        print("line %d: ...%s" % (n, line[max(0, i - 60):i + 30].decode("utf-8", "replace")))
        break
PY
)
[ -z "$bad" ] || fail "the audit file holds a torn line after the failed writes: $bad"
jq -e . "$AUDIT" >/dev/null || fail "the audit file is no longer JSON lines"
assert_eq "$(jget "$(last)" '[.action, (.status|tostring)] | join(" ")')" "describe-key 200" \
	"audit line after space was freed"
assert_eq "$(jget "$(kms_call "au/keys/$id/describe-key")" .key_info.key_state)" 2 \
	"key state after the disable-key that failed for want of an audit line"
assert_errcode "$(kms_call au/describe-key '{"key_id":"alias/unaudited"}')" KMS.0207
assert_ok "$(kms_call "au/keys/$id/create-datakey")"
kms_umount
