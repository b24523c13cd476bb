#!/bin/bash
# The token xattr is write-only: setfattr binds it (on the project dir or a path inside it),
# getfattr -n says "No such attribute", getfattr -d / listxattr never show it (so cp -a, rsync -X,
# tar --xattrs cannot copy it), setfattr -x forgets it (next request: KMS.0301). The token never
# shows up in the daemon's log.
source "$(dirname "$0")/../lib/common.sh"
kms_setup
tok=$(kms_token tx)
kms_mount
P=$KMS_MNT/tx

setfattr -n user.kms.token -v "$tok" "$P" || fail "setfattr on the project dir"
id=$(kms_create_key tx app)

for path in "$P" "$P/create-key" "$P/keys/$id" "$P/keys/$id/create-datakey"; do
	err=$(getfattr -n user.kms.token "$path" 2>&1) && fail "getfattr -n user.kms.token $path returned: $err"
	assert_contains "$err" "No such attribute" "getfattr -n on $path"
	out=$(getfattr -d -m - "$path" 2>&1 || true)
	assert_not_contains "$out" "kms.token" "getfattr -d -m - $path"
	assert_not_contains "$out" "$tok" "getfattr -d -m - $path"
done
"$KMS_PY" - "$P" "$tok" <<'PY'
import errno, os, sys
p, tok = sys.argv[1], sys.argv[2]
for path in (p, p + "/create-key", p + "/keys"):
    names = os.listxattr(path)
    assert "user.kms.token" not in names, (path, names)
    try:
        v = os.getxattr(path, "user.kms.token")
        sys.exit("getxattr returned %r on %s" % (v, path))
    except OSError as e:
        assert e.errno == errno.ENODATA, (path, errno.errorcode.get(e.errno))
PY

# Any path inside the project a caller without identity can resolve binds the same token (not a
# key folder: issue 11.4); os.setxattr works like setfattr.
setfattr -x user.kms.token "$P"
assert_errcode "$(kms_call tx/list-keys '{}')" KMS.0301
err=$(setfattr -n user.kms.token -v "$tok" "$P/keys/$id/create-datakey" 2>&1) &&
	fail "setfattr through a key folder without identity"
assert_contains "$err" "Permission denied" "setfattr through a key folder without identity"
"$KMS_PY" -c 'import os, sys; os.setxattr(sys.argv[1], "user.kms.token", sys.argv[2].encode())' \
	"$P/keys" "$tok"
r=$(kms_call tx/list-keys '{}')
assert_ok "$r"
assert_eq "$(jget "$r" .total)" 1 "list-keys total"

# setfattr -x through another path of the project forgets it too.
setfattr -x user.kms.token "$P/create-key"
assert_errcode "$(kms_call tx/list-keys '{}')" KMS.0301
assert_eq "$(kms_call "tx/keys/$id/describe-key")" "" "key folder without a token"
assert_errno open EACCES

kms_umount
if grep -rqF -- "$tok" "$KMS_LOG" "$KMS_STDERR" 2>/dev/null; then fail "the token appears in the daemon log"; fi
