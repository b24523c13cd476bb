#!/bin/bash
# A token issued with --ttl 1 works at once and is refused with KMS.0303 (EACCES) two seconds
# later; a fresh token works again.
source "$(dirname "$0")/../lib/common.sh"
kms_setup
kms_token ex >/dev/null
kms_mount
kms_login ex "$(kms_token ex --ttl 1)"
assert_ok "$(kms_call ex/list-keys '{}')"
sleep 2.5
assert_errcode "$(kms_call ex/list-keys '{}')" KMS.0303
kms_write ex/list-keys '{}'
assert_errno close EACCES
kms_login ex
assert_ok "$(kms_call ex/list-keys '{}')"
kms_umount
