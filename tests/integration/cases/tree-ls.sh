#!/bin/bash
# Browsing the tree with ls/stat/readlink: /kms lists projects (one created by kmsctl while
# mounted appears at once), a project lists its action files plus keys/ and aliases/, keys/ lists
# key dirs, a key dir lists its key-level actions, aliases are symlinks to ../keys/<id> ('/' as
# %2F), action files are 0666 with size 0, and unknown names are ENOENT.
source "$(dirname "$0")/../lib/common.sh"
kms_start_project tree
M=$KMS_MNT

assert_contains " $(ls "$M" | tr '\n' ' ') " " tree " "ls /kms"
# A project created while mounted shows up without a remount.
kms_token late >/dev/null
assert_contains " $(ls "$M" | tr '\n' ' ') " " late " "ls /kms after a new project"
[ -d "$M/late" ] || fail "new project is not a directory"

listing=" $(ls "$M/tree" | tr '\n' ' ') "
for f in create-key list-keys describe-key create-datakey create-datakey-without-plaintext \
	encrypt-datakey decrypt-datakey gen-random encrypt-data decrypt-data keys aliases; do
	assert_contains "$listing" " $f " "ls /kms/tree"
done
[ -d "$M/tree/keys" ] && [ -d "$M/tree/aliases" ] || fail "keys/ and aliases/ must be directories"
assert_eq "$(ls "$M/tree/keys" | wc -l)" 0 "keys/ of a new project"

f=$M/tree/create-datakey
assert_eq "$(stat -c '%f %a %s' "$f")" "81b6 666 4194304" "stat of an action file (S_IFREG|0666, size: the largest answer)"

id=$(kms_create_key tree app)
id2=$(kms_create_key tree team/app)
assert_contains " $(ls "$M/tree/keys" | tr '\n' ' ') " " $id " "ls keys/ after create-key"
assert_eq "$(ls "$M/tree/keys" | wc -l)" 2 "number of key dirs"
listing=" $(ls "$M/tree/keys/$id" | tr '\n' ' ') "
for f in create-datakey create-datakey-without-plaintext encrypt-datakey decrypt-datakey \
	describe-key encrypt-data; do
	assert_contains "$listing" " $f " "ls keys/<id>"
done
assert_eq "$(stat -c '%f %a %s' "$M/tree/keys/$id/create-datakey")" "81b6 666 4194304" "stat of a key action"

[ -L "$M/tree/aliases/app" ] || fail "aliases/app is not a symlink"
assert_eq "$(readlink "$M/tree/aliases/app")" "../keys/$id" "readlink aliases/app"
assert_eq "$(readlink "$M/tree/aliases/team%2Fapp")" "../keys/$id2" "readlink of an alias with '/'"
# Following the alias reaches the key dir.
r=$(kms_call tree/aliases/app/describe-key)
assert_eq "$(jget "$r" .key_info.key_id)" "$id" "describe-key through aliases/app"

# Unknown names.
for p in nope tree/nope tree/keys/00000000-0000-0000-0000-000000000000 tree/keys/$id/nope \
	tree/aliases/nope tree/keys/$id/create-key; do
	err=$(stat "$M/$p" 2>&1) && fail "stat $p succeeded"
	assert_contains "$err" "No such file or directory" "stat $p"
done
err=$(cat "$M/nope/create-key" 2>&1) && fail "cat of an unknown project succeeded"
assert_contains "$err" "No such file or directory" "cat /kms/nope/create-key"

kms_umount
