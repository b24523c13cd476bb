#!/bin/bash
# A program's transaction: open(O_RDWR), write the request (in any chunks), read -> that
# request's response, from its start whatever the file offset (read, pread at 0, small reads,
# Python file objects in binary and text mode); several transactions on one handle; the response
# is one compact JSON line ending in "\n".
source "$(dirname "$0")/../lib/common.sh"
kms_start_project sh
id=$(kms_create_key sh app)

kms_py txn_same_handle "$KMS_MNT/sh" "$id"
kms_umount
