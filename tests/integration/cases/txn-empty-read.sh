#!/bin/bash
# Reading an action file with no request runs it with an empty request: `cat
# keys/<id>/create-datakey-without-plaintext` returns a fresh wrapped DEK every time (key_id from
# the path), and a project-level action that needs fields answers KMS.0204.
source "$(dirname "$0")/../lib/common.sh"
kms_start_project er
id=$(kms_create_key er app)
K=$KMS_MNT/er/keys/$id

a=$(cat "$K/create-datakey-without-plaintext")
b=$(cat "$K/create-datakey-without-plaintext")
for r in "$a" "$b"; do
	assert_eq "$(jget "$r" '[keys[]] | sort | join(",")')" "cipher_text,key_id" "fields"
	assert_eq "$(jget "$r" .key_id)" "$id" "key_id from the path"
	[[ $(jget "$r" .cipher_text) =~ ^[0-9A-Fa-f]{376}$ ]] || fail "cipher_text: $r"
done
[ "$(jget "$a" .cipher_text)" != "$(jget "$b" .cipher_text)" ] || fail "two cats gave the same blob"
d=$(kms_call "er/keys/$id/decrypt-datakey" "{\"cipher_text\":\"$(jget "$a" .cipher_text)\",\"datakey_cipher_length\":\"64\"}")
assert_ok "$d"

r=$(kms_cat "$K/create-datakey")
assert_eq "$(jget "$r" '.plain_text | length')" 128 "cat keys/<id>/create-datakey"
head -c 10000 "$K/create-datakey-without-plaintext" | jq -e .cipher_text >/dev/null || fail "head -c"
"$KMS_PY" -c 'import pathlib, sys, json; json.loads(pathlib.Path(sys.argv[1]).read_bytes())["cipher_text"]' \
	"$K/create-datakey-without-plaintext" || fail "Path.read_bytes()"

for action in create-datakey create-datakey-without-plaintext decrypt-datakey encrypt-datakey describe-key create-key; do
	assert_errcode "$(cat "$KMS_MNT/er/$action")" KMS.0204
done
kms_umount
