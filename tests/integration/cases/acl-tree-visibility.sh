#!/bin/bash
# The tree tells nothing to a caller with no identity (issue 11.4). A user with no token and no
# binding does not see the project in `ls /kms`, and `ls -l P/keys`, `ls P/aliases`, `stat
# P/keys/<id>`, `readlink P/aliases/<alias>` and opening P/keys/<id>/<action> all fail with
# EACCES (for a key that does not exist too), also right after root looked the same names up
# (the kernel's dentry cache is shared by all users); no key id appears in any output. The
# project stays reachable by name (a token is bound with setfattr on it) and its own action
# files answer the API's KMS.0301. With a valid token, a viewer binding for the uid, or one for
# a supplementary group, the user sees the project and its keys; a revoked or an expired token,
# or an unbind, takes that away again. The project's owner sees the project but not its keys.
# Root sees every project, and the keys of those where it has an identity.
source "$(dirname "$0")/../lib/common.sh"
kms_setup
kms_user_setup
kms_member_setup
P=$KMS_MNT/tv
kms_token tv >/dev/null
kms_token tvother >/dev/null
kms_mount allow_other
kms_login tv
id=$(kms_create_key tv app)
id2=$(kms_create_key tv team/app)
oid=$(jget "$(kms_ctl call tvother create-key '{"key_alias":"hidden"}')" .key_info.key_id)
[ -n "$oid" ] && [ "$oid" != null ] || fail "kmsctl call create-key in tvother"
absent=00000000-0000-0000-0000-000000000000

# out_of CMD...: the command's stdout and stderr together, whatever its status.
out_of() { "$@" 2>&1 || true; }

# sees_nothing WHO...: run as WHO (a command prefix), everything about tv's keys is refused.
sees_nothing() {
	local out
	out=$(out_of "$@" ls "$KMS_MNT")
	assert_not_contains " $(tr '\n' ' ' <<<"$out") " " tv " "ls /kms ($*)"
	out=$(out_of "$@" ls -l "$P/keys")
	assert_contains "$out" "Permission denied" "ls -l keys/ ($*)"
	out+=$(out_of "$@" ls -la "$P/aliases")
	assert_contains "$out" "Permission denied" "ls aliases/ ($*)"
	for f in "$P/keys/$id" "$P/keys/$absent" "$P/aliases/app" "$P/aliases/nope" \
		"$P/keys/$id/describe-key"; do
		# Root just resolved it: a dentry cached for root must not answer for the user.
		stat "$f" >/dev/null 2>&1 || true
		assert_contains "$(out_of "$@" stat "$f")" "Permission denied" "stat ${f#"$P"/} ($*)"
	done
	readlink "$P/aliases/app" >/dev/null
	o=$(out_of "$@" readlink -v "$P/aliases/app")
	assert_contains "$o" "Permission denied" "readlink aliases/app ($*)"
	out+=$o
	out+=$(out_of "$@" readlink -v "$P/aliases/team%2Fapp")
	assert_contains "$(out_of "$@" cat "$P/keys/$id/describe-key")" "Permission denied" \
		"cat keys/<id>/describe-key ($*)"
	# What it was told about names it did not already know (ls and readlink outputs).
	for k in "$id" "$id2" "$oid"; do
		assert_not_contains "$out" "$k" "what $* was told"
	done
}

# sees_keys WHO...: run as WHO, tv is listed and its keys and aliases resolve.
sees_keys() {
	assert_contains " $("$@" ls "$KMS_MNT" | tr '\n' ' ') " " tv " "ls /kms ($*)"
	assert_eq "$("$@" ls "$P/keys" | sort | tr '\n' ' ')" "$(printf '%s\n' "$id" "$id2" | sort | tr '\n' ' ')" \
		"ls keys/ ($*)"
	"$@" ls -l "$P/keys" >/dev/null || fail "ls -l keys/ ($*)"
	assert_eq "$("$@" ls "$P/aliases" | sort | tr '\n' ' ')" "app team%2Fapp " "ls aliases/ ($*)"
	assert_eq "$("$@" readlink "$P/aliases/app")" "../keys/$id" "readlink aliases/app ($*)"
	"$@" stat "$P/keys/$id" >/dev/null || fail "stat keys/<id> ($*)"
	r=$("$@" cat "$P/aliases/team%2Fapp/describe-key")
	assert_eq "$(jget "$r" .key_info.key_id)" "$id2" "describe-key through the alias ($*)"
}

# --- No identity: nothing, but the project is still reachable by name.
sees_nothing as_user
assert_contains " $(as_user ls "$P" | tr '\n' ' ') " " list-keys " "ls of the project itself"
assert_errcode "$(as_user cat "$P/list-keys")" KMS.0301

# --- A token bound by the user: tv and its keys, nothing of tvother.
vtok=$(kms_token tv --user vic --role viewer)
as_user setfattr -n user.kms.token -v "$vtok" "$P" || fail "user setfattr"
sees_keys as_user
assert_not_contains " $(as_user ls "$KMS_MNT" | tr '\n' ' ') " " tvother " "ls /kms with a tv token"
out=$(out_of as_user ls "$KMS_MNT/tvother/keys")
assert_contains "$out" "Permission denied" "tvother/keys with a tv token"
assert_not_contains "$out" "$oid" "tvother/keys with a tv token"

# --- Revoked: nothing again.
vid=$(kms_ctl token list | awk '$3 == "vic" {print $1}')
kms_ctl token revoke "$vid" || fail "token revoke"
sees_nothing as_user

# --- Expired: nothing once its time has passed.
etok=$(kms_token tv --user eve --role viewer --ttl 5)
issued=$(date +%s)
as_user setfattr -n user.kms.token -v "$etok" "$P" || fail "user setfattr (ttl token)"
sees_keys as_user
while (($(date +%s) < issued + 6)); do sleep 0.2; done
sees_nothing as_user
as_user setfattr -x user.kms.token "$P" || fail "user setfattr -x"

# --- A uid binding, then a binding of a supplementary group; unbind takes both away.
kms_ctl project bind tv --uid "$KMS_USER" --role viewer || fail "project bind --uid"
sees_keys as_user
kms_ctl project unbind tv --uid "$KMS_USER" || fail "project unbind --uid"
sees_nothing as_user
sees_nothing as_member
kms_ctl project bind tv --gid kmsitg --role viewer || fail "project bind --gid"
sees_keys as_member
sees_nothing as_user
kms_ctl project unbind tv --gid kmsitg || fail "project unbind --gid"
sees_nothing as_member

# --- The project's owner sees the project in /kms, and still no key without an identity.
kms_ctl project set tv --owner "$KMS_USER" ||
	fail "project set --owner"
assert_contains " $(as_user ls "$KMS_MNT" | tr '\n' ' ') " " tv " "ls /kms as the owner"
out=$(out_of as_user ls "$P/keys")
assert_contains "$out" "Permission denied" "keys/ as the owner without identity"
assert_not_contains "$out" "$id" "keys/ as the owner without identity"
out=$(out_of as_member ls "$KMS_MNT")
assert_not_contains " $(tr '\n' ' ' <<<"$out") " " tv " "ls /kms as a non-owner"

# --- Root: every project; keys only where it has an identity (a token for tv, none for tvother).
assert_eq "$(ls "$KMS_MNT" | tr '\n' ' ')" "tv tvother " "ls /kms as root"
sees_keys env
out=$(out_of ls "$KMS_MNT/tvother/keys")
assert_contains "$out" "Permission denied" "root: tvother/keys without a token"
assert_not_contains "$out" "$oid" "root: tvother/keys without a token"
kms_login tvother
assert_eq "$(ls "$KMS_MNT/tvother/keys")" "$oid" "root: tvother/keys with a token"

# Alias names are looked up at every walk (never cached): one moved to another key resolves to
# that key at once.
assert_eq "$(readlink "$P/aliases/app")" "../keys/$id" "aliases/app before the move"
assert_ok "$(kms_call tv/update-key-alias "{\"key_id\":\"$id\",\"key_alias\":\"was-app\"}")"
assert_ok "$(kms_call tv/update-key-alias "{\"key_id\":\"$id2\",\"key_alias\":\"app\"}")"
assert_eq "$(readlink "$P/aliases/app")" "../keys/$id2" "aliases/app after the move"
assert_eq "$(readlink "$P/aliases/was-app")" "../keys/$id" "aliases/was-app"
err=$(stat "$P/aliases/team%2Fapp" 2>&1) && fail "the old alias team/app still resolves"
assert_contains "$err" "No such file or directory" "the old alias team/app"
kms_umount
