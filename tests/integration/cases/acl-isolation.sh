#!/bin/bash
# Isolation between users (issue 3.5), as an unprivileged uid B (setpriv) next to uid A (root):
# A's token is never used for B's opens (KMS.0301; a descriptor A opened and handed to B runs as
# A), and root is not special to the API without a token;
# B's `cat f` after A's `echo req > f` runs B's own empty request and never returns A's response,
# which A still gets afterwards; two O_RDWR handles on one file, one per uid, interleaved, each
# answer their own request with their own identity.
source "$(dirname "$0")/../lib/common.sh"
kms_setup
kms_user_setup
P=$KMS_MNT/is
kms_token is >/dev/null
kms_mount allow_other
# root without a token is nobody to the API
assert_errcode "$(kms_call is/list-keys '{}')" KMS.0301
kms_login is
id=$(kms_create_key is app)

# A's token is not B's.
assert_errcode "$(user_call is/list-keys '{}')" KMS.0301
# ... and B, with no identity in the project, cannot even resolve A's key folder (issue 11.4).
assert_eq "$(user_call "is/keys/$id/create-datakey")" "" "B reading through A's key folder"
assert_errno open EACCES "$KMS_UID"
as_user "$KMS_PY" "$KMS_IO" write "$P/describe-key" "{\"key_id\":\"$id\"}"
assert_errno close EACCES "$KMS_UID"
# A file descriptor A opened and B inherited carries A's identity, captured at the open, like
# the kernel's file credentials (issue 11.1; acl-fd-passing tests the other direction): what B
# does with it is what A handed over, never more than B could do with its own opens.
out=$(
	exec 3<>"$P/describe-key"
	as_user "$KMS_PY" -c 'import os, sys
os.write(3, sys.argv[1].encode())
print(os.read(3, 4096).decode())' "{\"key_id\":\"$id\"}"
)
assert_eq "$(jget "$out" .key_info.key_id)" "$id" "B's request on A's descriptor"

# B gets its own token (crypto, user bee) for the mailbox and handle tests.
as_user setfattr -n user.kms.token -v "$(kms_token is --user bee --role crypto)" "$P" ||
	fail "user setfattr"

# Mailboxes: A writes, B reads its own empty request's answer, A then still gets its response.
echo "{\"key_id\":\"$id\"}" >"$P/create-datakey"
rb=$(as_user cat "$P/create-datakey")
kms_record "$rb"
assert_errcode "$rb" KMS.0204
ra=$(kms_cat "$P/create-datakey")
assert_eq "$(jget "$ra" .key_id)" "$id" "A's mailbox after B's cat"
pa=$(jget "$ra" .plain_text)
[[ $pa =~ ^[0-9A-F]{128}$ ]] || fail "A's response: $ra"
assert_not_contains "$rb" "$pa" "B's answer"
# and the other way round
as_user sh -c "echo '{\"key_id\":\"$id\"}' > '$P/create-datakey'" || fail "B echo > f"
assert_errcode "$(cat "$P/create-datakey")" KMS.0204
rb=$(as_user cat "$P/create-datakey")
kms_record "$rb"
assert_eq "$(jget "$rb" .key_id)" "$id" "B's mailbox after A's cat"
assert_not_contains "$rb" "$pa" "B's response"

# O_RDWR handles: A writes a request and holds the handle; B runs a whole transaction on the
# same file; A then reads its own answer (an admin's create-key), B got its own (crypto: 0307).
exec 3<>"$P/create-key"
printf '{"key_alias":"made-by-a"}' >&3
rb=$(user_call is/create-key '{"key_alias":"made-by-b"}')
assert_errcode "$rb" KMS.0307
ra=$(cat <&3)
exec 3>&-
assert_ok "$ra"
r=$(kms_call is/describe-key '{"key_id":"alias/made-by-a"}')
assert_eq "$(jget "$r" .key_info.key_id)" "$(jget "$ra" .key_info.key_id)" "A's key"
assert_errcode "$(kms_call is/describe-key '{"key_id":"alias/made-by-b"}')" KMS.0207
# Concurrent, the other way: B's handle holds a request while A runs one.
r=$(
	as_user "$KMS_PY" - "$P/create-datakey" "$id" "$KMS_SCRATCH/b-ready" "$KMS_SCRATCH/a-done" <<'PY' &
import os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
os.write(fd, ('{"key_id":"%s"}' % sys.argv[2]).encode())
open(sys.argv[3], "w").close()
for _ in range(100):
    if os.path.exists(sys.argv[4]):
        break
    time.sleep(0.05)
print(os.read(fd, 65536).decode(), end="")
os.close(fd)
PY
	for ((i = 0; i < 100; i++)); do [ -e "$KMS_SCRATCH/b-ready" ] && break; sleep 0.05; done
	kms_call is/create-datakey "{\"key_id\":\"$id\"}" >"$KMS_SCRATCH/a.json"
	touch "$KMS_SCRATCH/a-done"
	wait
)
kms_record "$r"
ra=$(cat "$KMS_SCRATCH/a.json")
assert_eq "$(jget "$r" .key_id)" "$id" "B's held handle"
assert_eq "$(jget "$ra" .key_id)" "$id" "A's transaction meanwhile"
[ "$(jget "$r" .plain_text)" != "$(jget "$ra" .plain_text)" ] || fail "A and B got the same DEK"
kms_umount
