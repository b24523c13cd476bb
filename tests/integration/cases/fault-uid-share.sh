#!/bin/bash
# One uid cannot starve the others (issue 11.3). Every pool of the daemon has a daemon-wide bound
# and each uid (the uid that opened the handle) may take at most a quarter of it
# (docs/operations.md, Limits; src/fs/fs_internal.h): 1. open handles: 25000 of 100000. A user with
# no token holds 25000 idle read-only opens of another project's `version` file (over two processes:
# RLIMIT_NOFILE); its next open fails with ENFILE, while root and another uid still open and run
# requests. 2. request bytes: 64 MiB of 256 MiB. The user holds 1024 half-written 64 KiB requests;
# its next write fails with ENOMEM, while root's and another uid's writes are accepted. 3.
# mailboxes: 4096 of 16384. The user writes to 4097 files and never reads: the last answer is
# dropped (one warning in the log), and root's `echo > f; cat f` still gets its answer. 4. audit
# lines of refusals without an identity: a uid that makes 400 requests with no token gets at most 20
# lines in a row and then one a second; the rest are counted in lines with a "suppressed" field, and
# lines + suppressed add up to exactly the 400 refusals. Another uid's refusals and root's
# authenticated requests are all written.
source "$(dirname "$0")/../lib/common.sh"
kms_setup
kms_user_setup
OUID=61078 AUID=61079 # another user, and the audit step's caller (no passwd entries needed)
as_uid() { # as_uid UID CMD...
	local u=$1
	shift
	kms_as "$u" "$u" "" "$@"
}
hardfd=$(ulimit -Hn)
[ "$hardfd" == unlimited ] && hardfd=1048576
[ "$hardfd" -ge 12600 ] || skip "RLIMIT_NOFILE hard limit $hardfd: 25000 handles need two processes of 12600"
AUDIT=$KMS_WORK/audit.log
kms_token us >/dev/null
kms_token other >/dev/null
kms_mount allow_other key_quota=200 mailbox_ttl=600 "audit=$AUDIT"
kms_login us
P=$KMS_MNT/us
# 160 keys: 160 x 27 key action files + 32 project files > 4097 files for the mailbox step.
req=$(for i in $(seq 1 160); do printf '{"key_alias":"k%d"}\n' "$i"; done)
kms_call us/create-key "$req" >"$KMS_WORK/keys.json"
mapfile -t kids < <(jq -r '.key_info.key_id' "$KMS_WORK/keys.json")
[ "${#kids[@]}" -eq 160 ] || fail "batch create-key made ${#kids[@]} keys"
id=${kids[0]}

US=$KMS_PYLIB/uid_share.py # the clients of every step

wait_file() {
	local i
	for ((i = 0; i < 2400; i++)); do [ -e "$1" ] && return 0; sleep 0.05; done
	fail "no $1 after 120 s"
}
works() { # works WHO: a round trip as root, or an accepted request as another uid
	if [ "$1" == root ]; then
		assert_ok "$(kms_call "us/keys/$id/describe-key" '{}')"
	else
		r=$(as_uid "$OUID" "$KMS_PY" "$KMS_IO" rdwr "$P/describe-key" "{\"key_id\":\"$id\"}")
		assert_errcode "$r" KMS.0301 # its write was accepted, the request ran: it has no token
		assert_errno write 0 "$OUID"
	fi
}

# ---------------------------------------------------------------- 1. idle handles
rm -f "$KMS_SCRATCH"/h.*
kms_spawn "$KMS_UID" "$KMS_GID" "$KMS_PY" "$US" hold open "$KMS_MNT/other/version" 12500 "$KMS_SCRATCH/h.r1" "$KMS_SCRATCH/h.go" &
h1=$!
kms_bg $h1
wait_file "$KMS_SCRATCH/h.r1"
kms_spawn "$KMS_UID" "$KMS_GID" "$KMS_PY" "$US" hold open "$KMS_MNT/other/version" 12600 "$KMS_SCRATCH/h.r2" "$KMS_SCRATCH/h.go" &
h2=$!
kms_bg $h2
wait_file "$KMS_SCRATCH/h.r2"
read -r a1 e1 <"$KMS_SCRATCH/h.r1"
read -r a2 e2 <"$KMS_SCRATCH/h.r2"
log "idle handles of uid $KMS_UID: $a1 ($e1) + $a2 ($e2)"
assert_eq "$((a1 + a2)) $e2" "25000 open:ENFILE" "idle opens one uid may hold, then"
works root
works other
touch "$KMS_SCRATCH/h.go"
wait "$h1" "$h2" || fail "a handle holder failed"

# ---------------------------------------------------------------- 2. half-written requests
rm -f "$KMS_SCRATCH"/f.*
kms_spawn "$KMS_UID" "$KMS_GID" "$KMS_PY" "$US" hold fill "$P/encrypt-data" 1100 "$KMS_SCRATCH/f.r" "$KMS_SCRATCH/f.go" &
h1=$!
kms_bg $h1
wait_file "$KMS_SCRATCH/f.r"
read -r nfit ferr <"$KMS_SCRATCH/f.r"
log "64 KiB half-written requests of uid $KMS_UID: $nfit, then $ferr"
assert_eq "$nfit $ferr" "1024 write:ENOMEM" "half-written requests one uid may hold, then"
works root
works other
touch "$KMS_SCRATCH/f.go"
wait "$h1" || fail "the request holder failed"

# ---------------------------------------------------------------- 3. mailboxes
# Many files need key folders, which only a caller with an identity resolves: a viewer binding
# (its requests are refused with KMS.0307 and still leave mailboxes).
kms_ctl project bind us --uid "$KMS_USER" --role viewer || fail "project bind viewer"
files=$KMS_SCRATCH/files.txt
for k in "${kids[@]}"; do
	for f in "$P/keys/$k"/*; do printf '%s\n' "$f"; done
done | awk 'NR <= 4097' >"$files"
[ "$(wc -l <"$files")" -eq 4097 ] || fail "fewer than 4097 action files"
n=$(as_user "$KMS_PY" "$US" mail "$files")
assert_eq "$n" 4097 "files written"
kms_ctl project unbind us --uid "$KMS_USER" || fail "project unbind"
assert_eq "$(grep -c "mailbox share .* uid $KMS_UID are dropped" "$KMS_LOG")" 1 "warnings about the mailbox share"
r=$(sh -c "echo '{\"key_id\":\"$id\"}' > '$P/describe-key' && cat '$P/describe-key'")
assert_eq "$(jget "$r" .key_info.key_id)" "$id" "root's echo > f; cat f next to a full share of mailboxes"

# ---------------------------------------------------------------- 4. refusals in the audit trail
before=$(wc -l <"$AUDIT")
secs=$(as_uid "$AUID" "$KMS_PY" "$US" refusals "$P/list-keys" 400)
written=$(jq -s --argjson u "$AUID" '[.[] | select(.uid == $u and (has("suppressed") | not))] | length' "$AUDIT")
log "400 refusals of uid $AUID in ${secs}s: $written lines"
[ "$written" -le $((20 + secs + 1)) ] || fail "$written audit lines for 400 refusals in ${secs}s (20 + 1/s allowed)"
[ "$written" -ge 20 ] || fail "only $written refusals written: the first 20 must be"
for i in 1 2 3; do as_uid "$OUID" "$KMS_PY" "$KMS_IO" read "$P/list-keys" >/dev/null; done
for i in $(seq 1 30); do kms_call "us/keys/$id/describe-key" >/dev/null; done
kms_umount # the last summaries are written at the stop
sum() { jq -r -s --argjson u "$1" "$2" "$AUDIT"; }
written=$(sum "$AUID" '[.[] | select(.uid == $u and (has("suppressed") | not))] | length')
suppressed=$(sum "$AUID" '[.[] | select(.uid == $u) | .suppressed // 0] | add')
log "uid $AUID: $written lines written, $suppressed refusals suppressed; audit lines: $before -> $(wc -l <"$AUDIT")"
assert_eq "$((written + suppressed))" 400 "refusals written plus suppressed"
[ "$suppressed" -gt 0 ] || fail "no refusal was suppressed"
assert_eq "$(sum "$AUID" '[.[] | select(.uid == $u and has("suppressed"))][0] | [.status, .error_code, .action, .project] | join(" ")')" \
	"403 KMS.0301 list-keys us" "summary line"
assert_eq "$(sum "$OUID" '[.[] | select(.uid == $u and .action == "list-keys")] | length')" 3 "another uid's refusals"
assert_eq "$(sum 0 '[.[] | select(.uid == $u and .action == "describe-key" and .status == 200)] | length')" 33 \
	"root's describe-key lines (30, and 3 before)"
