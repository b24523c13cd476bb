#!/bin/bash
# A garbled token, a token with one character changed, and a token issued for another project
# are all refused with KMS.0302 (close: EACCES); the right token then works.
source "$(dirname "$0")/../lib/common.sh"
kms_setup
good=$(kms_token fp)
other=$(kms_token otherproj)
kms_mount
P=$KMS_MNT/fp

# One character in the middle changed, staying in the token's alphabet.
forged=$("$KMS_PY" - "$good" <<'PY'
import sys
t = sys.argv[1]
i = len(t) // 2
while not t[i].isalnum():
    i += 1
print(t[:i] + ("B" if t[i] == "A" else "A") + t[i + 1:])
PY
)
for bad in "garbage-token" "$forged" "$other" "${good}x" "${good:0:20}"; do
	setfattr -n user.kms.token -v "$bad" "$P" || fail "setfattr of a bad token failed (must bind, then fail requests)"
	assert_errcode "$(kms_call fp/create-key '{"key_alias":"k"}')" KMS.0302
	kms_write fp/list-keys '{}'
	assert_errno close EACCES
done
# The other project's token is fine on its own project.
kms_login otherproj "$other"
assert_ok "$(kms_call otherproj/list-keys '{}')"
kms_login fp "$good"
r=$(kms_call fp/list-keys '{}')
assert_ok "$r"
assert_eq "$(jget "$r" .total)" 0 "no key was created by a refused request"
kms_umount
