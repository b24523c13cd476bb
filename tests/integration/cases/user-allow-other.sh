#!/bin/bash
# An unprivileged user on a mount with -o allow_other: root's token is not used for it (KMS.0301),
# it can bind and use its own token (setfattr and os.setxattr), its mailbox is separate from
# root's, and forgetting its token does not touch root's. Without allow_other the kernel refuses
# the user outright.
source "$(dirname "$0")/../lib/common.sh"
kms_setup
kms_user_setup
P=$KMS_MNT/uo
kms_start_project uo allow_other
id=$(kms_create_key uo root-key)

as_user ls "$P" >/dev/null || fail "user cannot list the project"
assert_errcode "$(user_call uo/list-keys '{}')" KMS.0301
as_user "$KMS_PY" "$KMS_IO" write "$P/list-keys" '{}'
assert_errno close EACCES "$KMS_UID"

utok=$(kms_token uo --user "$KMS_USER")
as_user setfattr -n user.kms.token -v "$utok" "$P" || fail "user setfattr"
r=$(user_call uo/create-key '{"key_alias":"user-key"}')
uid_key=$(jget "$r" .key_info.key_id)
r=$(user_call uo/create-datakey "{\"key_id\":\"$uid_key\"}")
pt=$(jget "$r" .plain_text)
d=$(user_call "uo/keys/$uid_key/decrypt-datakey" "{\"cipher_text\":\"$(jget "$r" .cipher_text)\",\"datakey_cipher_length\":\"64\"}")
assert_eq "$(jget "$d" .data_key)" "$pt" "user round trip"
assert_eq "$(jget "$(kms_call uo/list-keys '{}')" .total)" 2 "root sees the user's key"

# Shell pattern as the user, and mailboxes per uid.
as_user sh -c "echo '{\"key_id\":\"$id\"}' > '$P/create-datakey'" || fail "user echo > f"
assert_errcode "$(kms_cat "$P/create-datakey")" KMS.0204
r=$(as_user cat "$P/create-datakey")
kms_record "$r"
assert_eq "$(jget "$r" .key_id)" "$id" "user's mailbox"
echo "{\"key_id\":\"$id\"}" >"$P/describe-key"
assert_errcode "$(as_user cat "$P/describe-key")" KMS.0204
assert_eq "$(jget "$(cat "$P/describe-key")" .key_info.key_id)" "$id" "root's mailbox"

# python os.setxattr by the user, then forgetting it leaves root's token alone.
as_user "$KMS_PY" -c 'import os, sys; os.setxattr(sys.argv[1], "user.kms.token", sys.argv[2].encode())' \
	"$P/keys/$uid_key" "$utok" || fail "user os.setxattr"
as_user setfattr -x user.kms.token "$P" || fail "user setfattr -x"
assert_errcode "$(user_call uo/list-keys '{}')" KMS.0301
assert_ok "$(kms_call uo/list-keys '{}')"
err=$(as_user getfattr -n user.kms.token "$P" 2>&1) && fail "user getfattr returned a token"
kms_umount

# Without allow_other the user cannot even look.
kms_mount
err=$(as_user ls "$P" 2>&1) && fail "user could list a mount without allow_other"
assert_contains "$err" "Permission denied" "ls without allow_other"
kms_umount
