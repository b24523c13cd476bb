#!/bin/bash
# What the kernel's name and attribute caches must never answer (issue 17: a cheaper walk through
# key folders must not change these). Each step first walks the names involved (so the kernel
# holds their dentries and attributes), then changes the store and checks the very next walk:
# a new key and its alias resolve at once (no negative entry kept); an alias moved to another
# key resolves to that key at once, also through aliases/<alias>/<action>; a key destroyed while
# the daemon runs is gone from keys/ and aliases/ at the next walk (ENOENT, not the old folder);
# an unbind right after the user walked a key folder refuses the next walk and open (EACCES); a
# project mode set with kmsctl closes and reopens paths through key folders within the 1 s
# attribute cache; renaming a key folder, an alias or an action file fails (EPERM) and leaves the
# names as they were. (Another uid right after root's walk: acl-tree-visibility.sh.)
source "$(dirname "$0")/../lib/common.sh"
kms_setup
kms_user_setup
kms_start_project tc allow_other
P=$KMS_MNT/tc
# out_of CMD...: the command's stdout and stderr together, whatever its status.
out_of() { "$@" 2>&1 || true; }
# walk ID: root walks keys/ID and its action files, as a program making requests does.
walk() {
	local i
	for ((i = 0; i < 3; i++)); do
		assert_ok "$(kms_call "tc/keys/$1/describe-key" '{}')"
	done
	stat "$P/keys/$1" >/dev/null || fail "stat keys/$1"
}

id=$(kms_create_key tc app)
walk "$id"

# --- A new key and its alias appear at once, though the names were just looked up in vain.
[ -e "$P/aliases/fresh" ] && fail "aliases/fresh before the key exists"
[ -e "$P/aliases/fresh/describe-key" ] && fail "aliases/fresh/describe-key before the key exists"
fid=$(kms_create_key tc fresh)
assert_eq "$(readlink "$P/aliases/fresh")" "../keys/$fid" "readlink aliases/fresh at once"
assert_eq "$(jget "$(kms_call tc/aliases/fresh/describe-key '{}')" .key_info.key_id)" "$fid" \
	"describe-key through the new alias"
ls "$P/keys" | grep -qx "$fid" || fail "the new key is not listed"
walk "$fid"

# --- An alias moved to another key: the next walk through it reaches that key.
assert_eq "$(jget "$(kms_call tc/aliases/app/describe-key '{}')" .key_info.key_id)" "$id" \
	"aliases/app before the move"
assert_ok "$(kms_call tc/update-key-alias "{\"key_id\":\"$id\",\"key_alias\":\"was-app\"}")"
assert_ok "$(kms_call tc/update-key-alias "{\"key_id\":\"$fid\",\"key_alias\":\"app\"}")"
assert_eq "$(jget "$(kms_call tc/aliases/app/describe-key '{}')" .key_info.key_id)" "$fid" \
	"aliases/app/describe-key right after the move"
assert_eq "$(readlink "$P/aliases/was-app")" "../keys/$id" "aliases/was-app"
err=$(out_of stat "$P/aliases/fresh")
assert_contains "$err" "No such file or directory" "the alias fresh after it moved away"

# --- A key destroyed while the daemon runs (its deletion date moved into the past by another
# process, as life-deletion.sh does): gone at the next walk, though it was walked just before.
did=$(kms_create_key tc doomed)
assert_eq "$(jget "$(kms_call "tc/keys/$did/schedule-key-deletion" '{"pending_days":"7"}')" \
	.key_state)" 4 "schedule the deletion"
walk "$did"
readlink "$P/aliases/doomed" >/dev/null || fail "readlink aliases/doomed"
kms_destroy_now tc "$did"
assert_contains "$(out_of stat "$P/keys/$did")" "No such file or directory" "stat keys/<deleted>"
assert_contains "$(out_of cat "$P/keys/$did/describe-key")" "No such file or directory" \
	"cat keys/<deleted>/describe-key"
assert_contains "$(out_of stat "$P/aliases/doomed")" "No such file or directory" \
	"stat aliases/doomed"
ls "$P/keys" | grep -qx "$did" && fail "the destroyed key is still listed"

# --- An unbind right after the user walked the key folder: the next walk and open are refused.
kms_ctl project bind tc --uid "$KMS_UID" --role crypto || fail "project bind --uid"
for ((i = 0; i < 3; i++)); do
	r=$(user_call "tc/keys/$id/create-datakey-without-plaintext" '{}')
	assert_ok "$r"
done
as_user stat "$P/keys/$id" >/dev/null || fail "user: stat keys/<id> while bound"
kms_ctl project unbind tc --uid "$KMS_UID" || fail "project unbind --uid"
assert_contains "$(out_of as_user stat "$P/keys/$id")" "Permission denied" \
	"user: stat keys/<id> right after the unbind"
assert_contains "$(out_of as_user cat "$P/keys/$id/describe-key")" "Permission denied" \
	"user: open keys/<id>/describe-key right after the unbind"

# --- A project mode set with kmsctl applies to paths through key folders within the attribute
# cache time (1 s; 1.5 s allowed here), both ways.
kms_ctl project bind tc --uid "$KMS_UID" --role crypto || fail "project bind --uid (again)"
assert_ok "$(user_call "tc/keys/$id/create-datakey-without-plaintext" '{}')"
# until_out SECONDS TEXT CMD...: CMD's output contains TEXT within SECONDS of now.
until_out() {
	local t0 max=$1 text=$2 out
	shift 2
	t0=$(date +%s%N)
	while :; do
		out=$(out_of "$@")
		[[ $out == *"$text"* ]] && return 0
		(($(date +%s%N) - t0 < max * 1000000000)) || break
		sleep 0.05
	done
	fail "$* did not say '$text' within $max s (last: $out)"
}
kms_ctl project set tc --mode 0700 || fail "project set --mode 0700"
until_out 1.5 "Permission denied" as_user cat "$P/keys/$id/describe-key"
assert_contains "$(out_of as_user stat "$P/keys/$id/describe-key")" "Permission denied" \
	"user: stat through the key folder under mode 0700"
kms_ctl project set tc --mode 0777 || fail "project set --mode 0777"
until_out 1.5 '"key_id"' as_user cat "$P/keys/$id/describe-key"

# --- No renames: the names stay as they were.
for pair in "keys/$id keys/$fid-x" "aliases/app aliases/other" \
	"keys/$id/describe-key keys/$id/other"; do
	read -r from to <<<"$pair"
	assert_contains "$(out_of mv "$P/$from" "$P/$to")" "Operation not permitted" "mv $from"
	[ -e "$P/$to" ] && fail "$to exists after a refused rename"
	[ -e "$P/$from" ] || fail "$from is gone after a refused rename"
done
assert_eq "$(jget "$(kms_call "tc/keys/$id/describe-key" '{}')" .key_info.key_id)" "$id" \
	"describe-key after the refused renames"
kms_umount
