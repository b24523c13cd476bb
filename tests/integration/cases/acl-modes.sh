#!/bin/bash
# Kernel-enforced project modes (issue 3.1): `kmsctl project set P --owner U --group G --mode 0750
# --plaintext-mode 0700` changes owner, group and modes of P's folders and files on a RUNNING
# mount (within the 1 s attribute cache); a user outside owner and group gets EACCES from open()
# itself (the kernel, default_permissions), never an API answer; with --mode 0770 a group member
# can wrap keys with its own token (create-datakey-without-plaintext, encrypt-datakey) but the
# plaintext actions (create-datakey, decrypt-datakey, decrypt-data) stay closed to it (EACCES).
source "$(dirname "$0")/../lib/common.sh"
kms_setup
kms_user_setup # kmsit: the outsider
kms_member_setup # kmsitm, in group kmsitg
id kmsitb >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin kmsitb ||
	skip "cannot create user kmsitb"
G=$KMS_GRP
as_owner() { kms_as "$(id -u kmsitb)" "$(id -g kmsitb)" "" "$@"; } # kmsitb, no groups
# policy_set ARGS...: kmsctl project set, and start the clock for wait_attr.
policy_set() {
	kms_ctl project set "$@" || fail "kmsctl project set $*"
	set_ms=$(($(date +%s%N) / 1000000))
}
# wait_attr FILE FORMAT EXPECTED: stat must agree at the latest 1.5 s after policy_set (the
# attribute cache holds 1 s).
wait_attr() {
	while [ "$(stat -c "$2" "$1")" != "$3" ]; do
		(($(date +%s%N) / 1000000 - set_ms < 1500)) ||
			fail "${1#"$KMS_MNT"/}: stat -c '$2' is '$(stat -c "$2" "$1")', expected '$3' 1.5 s after project set"
		sleep 0.05
	done
}
P=$KMS_MNT/am
kms_start_project am allow_other
id=$(kms_create_key am app)
K=$P/keys/$id

assert_eq "$(stat -c '%U:%G %a' "$P")" "root:root 777" "default project folder"
policy_set am --owner kmsitb --group kmsitg --mode 0750 --plaintext-mode 0700
assert_eq "$(kms_ctl project show am)" \
	"project am: owner $(id -u kmsitb) group $G mode 0750 plaintext-mode 0700" "project show"

# The running mount follows within the attribute cache time (1 s).
for f in "$P" "$P/keys" "$P/aliases" "$K"; do
	wait_attr "$f" '%U:%G %A' "kmsitb:kmsitg drwxr-x---"
done
for f in create-key list-keys create-datakey-without-plaintext encrypt-datakey gen-random; do
	wait_attr "$P/$f" '%U:%G %A' "kmsitb:kmsitg -rw-r-----"
done
for f in create-datakey decrypt-datakey decrypt-data; do
	wait_attr "$P/$f" '%U:%G %A' "kmsitb:kmsitg -rw-------"
	wait_attr "$K/$f" '%U:%G %A' "kmsitb:kmsitg -rw-------"
done
wait_attr "$K/describe-key" '%U:%G %A' "kmsitb:kmsitg -rw-r-----"
line=$(ls -l "$P" | grep ' create-datakey$') || fail "ls -l lists no create-datakey"
[[ $line == "-rw------- 1 kmsitb kmsitg "* ]] || fail "ls -l line: $line"

# The outsider: the kernel refuses at open(), the daemon never answers.
err=$(as_user ls "$P" 2>&1) && fail "outsider could list the project"
assert_contains "$err" "Permission denied" "outsider ls"
r=$(user_call "$K/describe-key")
assert_eq "$r" "" "outsider read of describe-key (no API answer)"
assert_errno open EACCES "$KMS_UID"
r=$(user_call am/list-keys '{}')
assert_eq "$r" "" "outsider O_RDWR of list-keys (no API answer)"
assert_errno open EACCES "$KMS_UID"
err=$(as_user cat "$P/create-key" 2>&1) && fail "outsider cat of create-key"
assert_contains "$err" "Permission denied" "outsider cat"

# A group member with 0750: may look and read (an empty request reaches the API), not write.
# (Without an identity it may not look into keys/ though: issue 11.4.)
as_member ls "$P" | grep -qx create-datakey-without-plaintext || fail "member cannot list the project"
assert_errcode "$(as_member "$KMS_PY" "$KMS_IO" read "$P/create-datakey-without-plaintext")" KMS.0301
as_member "$KMS_PY" "$KMS_IO" rdwr "$P/create-datakey-without-plaintext" "{\"key_id\":\"$id\"}" >/dev/null
assert_errno open EACCES "$KMS_MUID"
as_member "$KMS_PY" "$KMS_IO" read "$K/create-datakey" >/dev/null
assert_errno open EACCES "$KMS_MUID"

# --mode 0770 --plaintext-mode 0700: the group wraps keys but cannot unwrap them.
policy_set am --mode 0770 --plaintext-mode 0700
wait_attr "$P" '%U:%G %a' "kmsitb:kmsitg 770"
wait_attr "$K" '%U:%G %a' "kmsitb:kmsitg 770"
wait_attr "$P/encrypt-datakey" '%a' 660
wait_attr "$K/create-datakey-without-plaintext" '%a' 660
wait_attr "$P/decrypt-datakey" '%a' 600
mtok=$(kms_token am --user member --role crypto)
as_member setfattr -n user.kms.token -v "$mtok" "$P" || fail "member setfattr of its token"
r=$(as_member "$KMS_PY" "$KMS_IO" rdwr "$P/create-datakey-without-plaintext" "{\"key_id\":\"$id\"}")
assert_eq "$(jget "$r" .key_id)" "$id" "member create-datakey-without-plaintext"
ct=$(jget "$r" .cipher_text)
assert_eq "${#ct}" 376 "member's wrapped DEK"
r=$(as_member "$KMS_PY" "$KMS_IO" read "$K/create-datakey-without-plaintext")
assert_eq "$(jget "$r" .key_id)" "$id" "member cat of keys/<id>/create-datakey-without-plaintext"
dek=$(printf '%064X' 7)$(printf '%064X' 11)
r=$(as_member "$KMS_PY" "$KMS_IO" rdwr "$P/encrypt-datakey" "$(dek_request "$id" "$dek")")
wrapped=$(jget "$r" .cipher_text)
[ "${#wrapped}" -eq 376 ] || fail "member encrypt-datakey: $r"
for f in "$P/create-datakey" "$K/create-datakey" "$P/decrypt-datakey" "$K/decrypt-datakey" \
	"$P/decrypt-data"; do
	r=$(as_member "$KMS_PY" "$KMS_IO" rdwr "$f" \
		"{\"key_id\":\"$id\",\"cipher_text\":\"$wrapped\",\"datakey_cipher_length\":\"64\"}")
	assert_eq "$r" "" "member on ${f#"$KMS_MNT"/}: no API answer"
	assert_errno open EACCES "$KMS_MUID"
done
# The same role on the owner's uid unwraps: the refusal above is the mode, not the role.
otok=$(kms_token am --user owner --role crypto)
as_owner setfattr -n user.kms.token -v "$otok" "$P" || fail "owner setfattr"
r=$(as_owner "$KMS_PY" "$KMS_IO" rdwr "$K/decrypt-datakey" \
	"{\"cipher_text\":\"$wrapped\",\"datakey_cipher_length\":\"64\"}")
assert_eq "$(jget "$r" .data_key)" "$dek" "owner unwraps the member's DEK"
kms_umount
