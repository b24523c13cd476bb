#!/bin/bash
# A request runs with the identity of the process that OPENED the handle (issue 11.1), whoever
# reads, flushes or closes the descriptor later, like the kernel's own file credentials.
#
#   1. The setuid-flush attack. An unprivileged user with no token opens an action file, writes a
#      request and lets a setuid-root program (`fusermount3 -V`) inherit the descriptor; when it
#      exits, the kernel sends the FLUSH as uid 0, and root has an admin token bound. The request
#      must run as the user: create-datakey answers KMS.0301 (no DEK), schedule-key-deletion
#      answers KMS.0301 (the key stays enabled), and an O_WRONLY encrypt-datakey of a DEK the user
#      chose does not land in root's mailbox (root's next `cat` gets its own answer, no blob that
#      wraps the attacker's DEK).
#   2. A descriptor handed over a Unix socket (SCM_RIGHTS) to a process of another uid that has a
#      crypto token: what that process reads, or the FLUSH of its close, runs as the opener (no
#      token: KMS.0301). The other way round, a handle opened by the token holder and handed to the
#      user with no token works for the user (it runs as the token holder).
#   3. Changes after the open: the handle keeps the identity captured at open when its token is
#      removed or replaced (or set only after the open), but a revocation, an expiry, an unbind or
#      a lower bound role apply to the open handle at once; a higher bound role does not.
source "$(dirname "$0")/../lib/common.sh"
kms_setup
kms_user_setup
command -v fusermount3 >/dev/null || skip "fusermount3 missing"
[ -u "$(command -v fusermount3)" ] || skip "fusermount3 is not setuid root here"
BUID=61077 # the other uid of step 2 (no passwd entry needed)
as_b() { kms_as "$BUID" "$BUID" "" "$@"; }
P=$KMS_MNT/fp
kms_start_project fp allow_other # root: an admin token
id=$(kms_create_key fp app)
victim=$(kms_create_key fp victim)
K=$P/keys/$id
# A caller with no identity cannot resolve key folders (EACCES): its requests go through the
# project's files, with the key id in the request.
KREQ="{\"key_id\":\"$id\"}"

FP=$KMS_PYLIB/fdpass.py # the clients of every step

# ---------------------------------------------------------------- 1. setuid flush
# The attack's premise: the user itself gets nothing.
assert_errcode "$(user_call "$P/create-datakey" "$KREQ")" KMS.0301

r=$(as_user "$KMS_PY" "$FP" setuid-flush "$P/create-datakey" "$KREQ" rdwr)
assert_not_contains "$r" plain_text "create-datakey flushed by a setuid-root program"
assert_errcode "$r" KMS.0301

r=$(as_user "$KMS_PY" "$FP" setuid-flush "$P/schedule-key-deletion" \
	"{\"key_id\":\"$victim\",\"pending_days\":\"7\"}" rdwr)
assert_errcode "$r" KMS.0301
r=$(kms_call fp/describe-key "{\"key_id\":\"$victim\"}")
assert_eq "$(jget "$r" .key_info.key_state)" 2 "state of the key the user tried to schedule for deletion"

# Mailbox poisoning: an O_WRONLY encrypt-datakey of a DEK the user knows, flushed as root.
dek=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' | tr a-f A-F)
req=$(dek_request "$id" "$dek")
as_user "$KMS_PY" "$FP" setuid-flush "$P/encrypt-datakey" "$req" wronly
r=$(kms_cat "$P/encrypt-datakey")
assert_not_contains "$r" cipher_text "root's cat after the user's O_WRONLY handle was flushed as root"
assert_errcode "$r" KMS.0204 # root's own empty request: plain_text missing
# The user's own mailbox holds its own answer.
r=$(as_user cat "$P/encrypt-datakey")
assert_errcode "$r" KMS.0301

# ---------------------------------------------------------------- 2. SCM_RIGHTS, no root involved
btok=$(kms_token fp --user bea --role crypto)
as_b setfattr -n user.kms.token -v "$btok" "$P" || fail "uid $BUID setfattr"
r=$(as_b "$KMS_PY" "$KMS_IO" read "$K/create-datakey")
[ -n "$(jget "$r" .plain_text)" ] || fail "uid $BUID's own create-datakey: $r"

# (a) the token holder reads a handle the user opened and wrote.
sock=$KMS_SCRATCH/pass.sock
kms_spawn "$BUID" "$BUID" "$KMS_PY" "$FP" serve "$sock" read >"$KMS_WORK/b.out" &
bpid=$!
kms_bg $bpid
as_user "$KMS_PY" "$FP" give "$sock" "$P/create-datakey" "$KREQ" noread
wait "$bpid" || fail "the receiving process failed"
r=$(cat "$KMS_WORK/b.out")
assert_not_contains "$r" plain_text "read by the token holder of a handle the user opened"
assert_errcode "$r" KMS.0301

# (b) the token holder only closes it (its FLUSH runs the request); the user reads afterwards.
kms_spawn "$BUID" "$BUID" "$KMS_PY" "$FP" serve "$sock" close >/dev/null &
bpid=$!
kms_bg $bpid
r=$(as_user "$KMS_PY" "$FP" give "$sock" "$P/create-datakey" "$KREQ" read)
wait "$bpid" || fail "the receiving process failed"
assert_not_contains "$r" plain_text "answer after the token holder's close of the user's handle"
assert_errcode "$r" KMS.0301

# (c) the other way round: the token holder's handle works for the user it is handed to.
kms_spawn "$KMS_UID" "$KMS_GID" "$KMS_PY" "$FP" take "$sock" '{}' >"$KMS_WORK/a.out" &
apid=$!
kms_bg $apid
as_b "$KMS_PY" "$FP" give "$sock" "$K/create-datakey" '' noread
wait "$apid" || fail "the user's receiving process failed"
r=$(cat "$KMS_WORK/a.out")
[ -n "$(jget "$r" .plain_text)" ] || fail "a handle opened by the token holder, used by the user: $r"

# ---------------------------------------------------------------- 3. changes after the open
# twice UID FILE REQ1 REQ2 CHANGE...: a handle opened by UID (and used with REQ1 unless it is -)
# before CHANGE runs, used again with REQ2 after; prints both answers, one per line.
gate=$KMS_SCRATCH/gate
twice() {
	local who=$1 f=$2 r1=$3 r2=$4 pid i
	shift 4
	rm -f "$gate.ready" "$gate.go"
	kms_spawn "$who" "$([ "$who" == "$BUID" ] && echo "$BUID" || echo "$KMS_GID")" "$KMS_PY" "$FP" twice "$f" "$r1" "$r2" "$gate" >"$KMS_SCRATCH/twice.out" &
	pid=$!
	kms_bg $pid
	for ((i = 0; i < 600; i++)); do [ -e "$gate.ready" ] && break; sleep 0.05; done
	[ -e "$gate.ready" ] || fail "the handle holder did not get ready"
	"$@" || fail "change: $*"
	touch "$gate.go"
	wait "$pid" || fail "the handle holder failed"
	cat "$KMS_SCRATCH/twice.out"
}
second() { sed -n 2p <<<"$1"; }
first() { sed -n 1p <<<"$1"; }

# A token removed after the open: the handle keeps it.
r=$(twice "$BUID" "$P/create-datakey" "$KREQ" "$KREQ" as_b setfattr -x user.kms.token "$P")
[ -n "$(jget "$(first "$r")" .plain_text)" ] && [ -n "$(jget "$(second "$r")" .plain_text)" ] ||
	fail "token removed after the open: $r"
assert_errcode "$(as_b "$KMS_PY" "$KMS_IO" rdwr "$P/create-datakey" "$KREQ")" KMS.0301
# A token set after the open: the handle still has none.
r=$(twice "$BUID" "$P/create-datakey" '-' "$KREQ" as_b setfattr -n user.kms.token -v "$btok" "$P")
assert_errcode "$r" KMS.0301
# A token replaced by a viewer's after the open: the handle keeps the crypto role.
vtok=$(kms_token fp --user vic --role viewer)
r=$(twice "$BUID" "$K/create-datakey" '{}' '{}' as_b setfattr -n user.kms.token -v "$vtok" "$P")
[ -n "$(jget "$(second "$r")" .plain_text)" ] || fail "token replaced after the open: $r"
assert_errcode "$(as_b "$KMS_PY" "$KMS_IO" read "$K/create-datakey")" KMS.0307
# Revocation applies to the open handle at once.
as_b setfattr -n user.kms.token -v "$btok" "$P" || fail "setfattr again"
bid=$(kms_ctl token list | awk '$3 == "bea" {print $1; exit}')
r=$(twice "$BUID" "$K/create-datakey" '{}' '{}' kms_ctl token revoke "$bid")
[ -n "$(jget "$(first "$r")" .plain_text)" ] || fail "before the revocation: $r"
assert_errcode "$(second "$r")" KMS.0302
# Expiry too (4 s of validity; the first request is made at once).
etok=$(kms_token fp --user eve --role crypto --ttl 4)
as_b setfattr -n user.kms.token -v "$etok" "$P" || fail "setfattr expiring token"
r=$(twice "$BUID" "$K/create-datakey" '{}' '{}' sleep 5)
[ -n "$(jget "$(first "$r")" .plain_text)" ] || fail "before the expiry: $r"
assert_errcode "$(second "$r")" KMS.0303
# Bindings: an unbind or a lower role applies at once, a higher role only to later opens.
kms_ctl project bind fp --uid "$KMS_USER" --role crypto || fail "project bind"
r=$(twice "$KMS_UID" "$P/create-datakey" "$KREQ" "$KREQ" kms_ctl project unbind fp --uid "$KMS_USER")
[ -n "$(jget "$(first "$r")" .plain_text)" ] || fail "bound user: $r"
assert_errcode "$(second "$r")" KMS.0301
kms_ctl project bind fp --uid "$KMS_USER" --role crypto || fail "project bind"
r=$(twice "$KMS_UID" "$K/create-datakey" '{}' '{}' kms_ctl project bind fp --uid "$KMS_USER" --role viewer)
assert_errcode "$(second "$r")" KMS.0307
r=$(twice "$KMS_UID" "$K/create-datakey" '-' '{}' kms_ctl project bind fp --uid "$KMS_USER" --role crypto)
assert_errcode "$r" KMS.0307
[ -n "$(jget "$(user_call "$K/create-datakey")" .plain_text)" ] || fail "a new open after the higher role"
kms_umount
