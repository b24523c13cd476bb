#!/bin/bash
# The audit chain (issue 13.4, 15.4): the daemon's requests and kmsctl's changes (token issue and
# revoke, project bind, call) go to one -o audit file, each line chained to the one before it by
# an HMAC; `kmsctl audit verify` passes on the untouched file and names the first line changed,
# removed or inserted, with its number. create-key lines carry the new key_id, create-grant lines
# the grant_id; every line has mntns and cgroup. Log rotation (mv + SIGHUP) links the new file
# to the old one: verifying both in order passes, and shows lines cut off the old file's end (a
# cut at the end of the newest file is what verify cannot see: docs/operations.md). kmsctl with
# an --audit file it cannot write refuses the change and changes nothing.
source "$(dirname "$0")/../lib/common.sh"
kms_setup
kms_user_setup
A=$KMS_WORK/audit.log
P=ac
kms_start_project $P allow_other "audit=$A"
lines() { wc -l <"$1"; }
last() { tail -n 1 "$A"; }
verify() { kms_ctl audit verify "$@"; }
assert_eq "$(cat "$KMS_STATE/audit.path")" "$A" "the audit file kmsfs records for kmsctl"

# Requests through the mount: create-key, create-grant, a refusal.
id=$(kms_create_key $P app)
assert_eq "$(jget "$(last)" '[.action, .key_id] | join(" ")')" "create-key $id" \
	"create-key's line names the new key"
r=$(kms_call "$P/keys/$id/create-grant" '{"grantee_principal":"someone","operations":["describe-key"]}')
assert_ok "$r"
gid=$(jget "$r" .grant_id)
assert_eq "$(jget "$(last)" '[.action, .key_id, .object_id] | join(" ")')" "create-grant $id $gid" \
	"create-grant's line names the grant"
assert_errcode "$(kms_call $P/describe-key '{"key_id":"00000000-0000-0000-0000-000000000000"}')" KMS.0207
assert_eq "$(jget "$(last)" '[.action, (.status|tostring), .error_code] | join(" ")')" \
	"describe-key 404 KMS.0207" "the refused request's line"

# kmsctl's changes, in between, to the same file: as user kmsctl, with its uid and pid.
n=$(lines "$A")
tok=$(kms_ctl token issue --project $P --user ops --role crypto) || fail "token issue"
tid=$(kms_ctl token list | awk '$3 == "ops" {print $1}')
l=$(last)
assert_eq "$(jget "$l" '[.action, .project, .object_id, .user, .process, (.uid|tostring)] | join(" ")')" \
	"kmsctl token issue $P $tid kmsctl kmsctl 0" "token issue's line"
assert_not_contains "$(cat "$A")" "$tok" "the audit file (the token)"
kms_ctl project bind $P --uid "$KMS_USER" --role viewer || fail "project bind"
assert_eq "$(jget "$(last)" '[.action, .project, .object_id] | join(" ")')" \
	"kmsctl project bind $P uid:$KMS_UID" "project bind's line"
assert_ok "$(user_call "$P/keys/$id/describe-key")"
out=$(kms_ctl call $P create-key '{"key_alias":"by-kmsctl"}') || fail "kmsctl call: $out"
kid=$(jget "$out" .key_info.key_id)
assert_eq "$(jget "$(last)" '[.action, .key_id, .user, .process] | join(" ")')" \
	"create-key $kid kmsctl kmsctl" "kmsctl call's line (through the API's audit hook)"
kms_ctl token revoke "$tid" || fail "token revoke"
assert_eq "$(jget "$(last)" '[.action, .object_id, (.status|tostring)] | join(" ")')" \
	"kmsctl token revoke $tid 200" "token revoke's line"
assert_ok "$(kms_call "$P/keys/$id/describe-key")"
assert_eq "$(lines "$A")" $((n + 6)) "lines of five changes and one request"

# The long administrative commands write their lines to the same chain (issue 13.4): backup,
# restore (into another state directory, --audit naming this file) and root-key rotation while
# the daemon serves.
bk="$KMS_WORK/audit-backup.db" new="$KMS_WORK/audit-restored"
kms_ctl backup "$bk" >/dev/null 2>&1 || fail "backup"
assert_eq "$(jget "$(last)" '[.action, .object_id, (.status|tostring)] | join(" ")')" \
	"kmsctl backup $bk 200" "backup's line"
install -d -m 0700 "$new" && install -m 0600 "$KMS_STATE/root.key" "$new/root.key"
"$KMSCTL" --state "$new" --audit "$A" restore "$bk" >/dev/null 2>&1 || fail "restore"
assert_eq "$(jget "$(last)" '[.action, .object_id, (.status|tostring)] | join(" ")')" \
	"kmsctl restore $bk 200" "restore's line"
kms_ctl root-key rotate >/dev/null 2>&1 || fail "root-key rotate"
assert_eq "$(jget "$(last)" '[.action, (.status|tostring)] | join(" ")')" \
	"kmsctl root-key rotate 200" "root-key rotate's line"
assert_ok "$(kms_call "$P/keys/$id/describe-key")"
verify "$A" >/dev/null || fail "the chain after backup, restore and rotation: $(verify "$A" 2>&1)"

# Every line: the workload fields (issue 15.4) and the chain fields.
jq -e . "$A" >/dev/null || fail "the audit file is not JSON lines"
bad=$(jq -c 'select((.mntns|type) != "number" or (.cgroup|type) != "string" or
	(.prev|type) != "string" or (.mac|test("^[0-9a-f]{64}$")|not))' "$A")
[ -z "$bad" ] || fail "lines without mntns, cgroup, prev or mac: $bad"
host_ns=$(stat -L -c %i /proc/self/ns/mnt)
assert_eq "$(jq -r 'select(.process == "kmsctl") | .mntns' "$A" | sort -u)" "$host_ns" \
	"kmsctl lines' mntns"
assert_eq "$(jq -r 'select(.process == "kmsctl") | .cgroup' "$A" | sort -u)" \
	"$(sed -n 's/^0:://p' /proc/self/cgroup)" "kmsctl lines' cgroup"
# A request's line: the workload of the process that opened the handle (this shell's child).
assert_eq "$(jq -r 'select(.action == "create-grant") | [(.mntns|tostring), .cgroup] | join(" ")' "$A")" \
	"$host_ns $(sed -n 's/^0:://p' /proc/self/cgroup)" "a request's mntns and cgroup"

# Intact: exit 0 and the count.
total=$(lines "$A")
out=$(verify "$A") || fail "audit verify of the untouched file: $out"
assert_contains "$out" "$total lines" "audit verify's count"

# tamper NAME SED-SCRIPT: a copy of the trail changed by SED-SCRIPT; verify must exit 1 and name
# the line. Prints verify's report.
tamper() {
	local f=$KMS_WORK/$1 out rc=0
	cp "$A" "$f"
	sed -i "$2" "$f"
	cmp -s "$A" "$f" && fail "sed '$2' changed nothing"
	out=$(verify "$f") || rc=$?
	assert_eq "$rc" 1 "audit verify's status for $1 ($out)"
	printf '%s\n' "$out"
}
out=$(tamper edited '3s/"status":200/"status":500/')
assert_contains "$out" "edited:3: changed" "a line edited"
out=$(tamper removed '5d')
assert_contains "$out" "removed:5: removed" "a line removed"
sed -n 3p "$A" >"$KMS_WORK/copy"
out=$(tamper inserted "6r $KMS_WORK/copy")
assert_contains "$out" "inserted:7: inserted: a copy of line 3" "a line inserted"
# A forged line (made up without the key) in between.
forged=$(sed -n 3p "$A" | jq -c '.action = "describe-key"')
printf '%s\n' "$forged" >"$KMS_WORK/forged-line"
out=$(tamper forged "2r $KMS_WORK/forged-line")
assert_contains "$out" "forged:3: changed or inserted" "a forged line inserted"
out=$(tamper head '1d')
assert_contains "$out" "head:1: removed" "the first line removed"
# The last line removed: one file alone cannot show it (what verify says, and docs say, too).
cp "$A" "$KMS_WORK/cut"
sed -i '$d' "$KMS_WORK/cut"
out=$(verify "$KMS_WORK/cut") || fail "a file cut at its end fails verify: $out"
assert_contains "$out" "cannot be seen" "verify says what it cannot see"

# Log rotation: mv + SIGHUP starts a new file whose first line names the old file's last MAC.
mv "$A" "$A.1"
kill -HUP "$KMS_PID"
for ((i = 0; i < 100; i++)); do [ -s "$A" ] && break; sleep 0.1; done
[ -s "$A" ] || fail "no new audit file 10 s after SIGHUP"
assert_eq "$(jget "$(head -n 1 "$A")" '[.action, .prev, .prev_file, .prev_file_mac] | join(" ")')" \
	"audit-open  $A $(jget "$(tail -n 1 "$A.1")" .mac)" "the new file's first line"
kms_create_key $P after-rotation >/dev/null
kms_ctl project unbind $P --uid "$KMS_USER" || fail "project unbind"
out=$(verify "$A.1" "$A") || fail "audit verify of both files: $out"
assert_contains "$out" "2 file(s)" "audit verify of both files"
# The old file's end cut off: seen through the link.
cp "$A.1" "$KMS_WORK/old-cut"
sed -i '$d' "$KMS_WORK/old-cut"
rc=0
out=$(verify "$KMS_WORK/old-cut" "$A") || rc=$?
assert_eq "$rc" 1 "audit verify of a cut old file and the new one ($out)"
assert_contains "$out" "old-cut:$total: removed" "lines cut off the old file's end"

# An --audit file kmsctl cannot write: the change is refused and not made.
unbound() {
	grep -q key_info <<<"$(user_call "$P/keys/$id/describe-key" 2>&1)" &&
		fail "the binding refused for want of an audit line was made"
	return 0
}
n=$(kms_ctl token list | wc -l)
mkdir "$KMS_WORK/adir"
rc=0
out=$(kms_ctl --audit "$KMS_WORK/adir" token issue --project $P --user never 2>&1) || rc=$?
[ "$rc" != 0 ] || fail "token issue with an unwritable audit file succeeded: $out"
assert_contains "$out" "nothing was changed" "kmsctl's refusal"
assert_eq "$(kms_ctl token list | wc -l)" "$n" "token records after the refused issue"
rc=0
out=$(kms_ctl --audit /nonexistent/dir/audit.log project bind $P --uid "$KMS_USER" --role admin 2>&1) ||
	rc=$?
[ "$rc" != 0 ] || fail "project bind with an unwritable audit file succeeded: $out"
unbound
# The daemon's own trail, made unwritable (a full file system is acl-audit's case): kmsctl
# refuses the change too.
mv "$A" "$A.2"
mkdir "$A"
rc=0
out=$(kms_ctl project bind $P --uid "$KMS_USER" --role admin 2>&1) || rc=$?
[ "$rc" != 0 ] || fail "project bind with the daemon's trail unwritable succeeded: $out"
unbound
rmdir "$A"
mv "$A.2" "$A"
out=$(verify "$A.1" "$A") || fail "audit verify after the refusals: $out"
kms_umount
