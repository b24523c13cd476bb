#!/bin/bash
# The shell pattern: `echo req > f; cat f` returns the response once (a second cat runs an empty
# request: KMS.0204 for project-level decrypt-datakey); mailboxes are per file; a newer request
# replaces an unread response.
source "$(dirname "$0")/../lib/common.sh"
kms_start_project mb
P=$KMS_MNT/mb
id=$(kms_create_key mb app)
ct=$(jget "$(kms_call "mb/keys/$id/create-datakey-without-plaintext")" .cipher_text)

echo "{\"key_id\":\"$id\",\"cipher_text\":\"$ct\",\"datakey_cipher_length\":\"64\"}" >"$P/decrypt-datakey"
r=$(kms_cat "$P/decrypt-datakey")
assert_ok "$r"
[[ $(jget "$r" .data_key) =~ ^[0-9A-F]{128}$ ]] || fail "mailbox response: $r"
assert_errcode "$(cat "$P/decrypt-datakey")" KMS.0204

# create-key the shell way, then the key exists.
echo '{"key_alias":"shell-made"}' >"$P/create-key"
r=$(cat "$P/create-key")
id2=$(jget "$r" .key_info.key_id)
[ -d "$P/keys/$id2" ] || fail "key made through the mailbox has no dir"
assert_errcode "$(cat "$P/create-key")" KMS.0204

# Per file: reading another file does not take this file's response.
echo "{\"key_id\":\"$id\"}" >"$P/create-datakey"
assert_errcode "$(cat "$P/describe-key")" KMS.0204
r=$(kms_cat "$P/create-datakey")
assert_eq "$(jget "$r" .key_id)" "$id" "mailbox after reading another file"

# Replacement: only the newer response is kept.
echo '{"key_alias":"first"}' >"$P/create-key"
echo '{"key_alias":"first"}' >"$P/create-key"
assert_errcode "$(cat "$P/create-key")" KMS.1104
assert_errcode "$(cat "$P/create-key")" KMS.0204

# printf without a newline, and a here-string, work the same.
printf '{"key_id":"%s"}' "$id" >"$P/describe-key"
assert_eq "$(jget "$(cat "$P/describe-key")" .key_info.key_id)" "$id" "printf > f"
cat >"$P/describe-key" <<<"{\"key_id\":\"alias/app\"}"
assert_eq "$(jget "$(cat "$P/describe-key")" .key_info.key_id)" "$id" "cat <<< > f"
kms_umount
