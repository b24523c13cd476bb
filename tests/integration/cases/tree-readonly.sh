#!/bin/bash
# The tree cannot be changed: mkdir, rmdir, unlink, rename, symlink, link, chmod and chown give
# EPERM; O_CREAT of an unknown name gives ENOENT; writing to a directory gives EISDIR. Checked
# with the shell tools and with python's os calls (exact errno).
source "$(dirname "$0")/../lib/common.sh"
kms_start_project ro
id=$(kms_create_key ro app)
M=$KMS_MNT

err=$(mkdir "$M/ro/keys/newdir" 2>&1) && fail "mkdir succeeded"
assert_contains "$err" "Operation not permitted" "mkdir"
err=$(rm -f "$M/ro/create-key" 2>&1) && fail "rm succeeded"
assert_contains "$err" "Operation not permitted" "rm"
err=$(mv "$M/ro/create-key" "$M/ro/create-key2" 2>&1) && fail "mv succeeded"
assert_contains "$err" "Operation not permitted" "mv"
err=$(touch "$M/ro/new-file" 2>&1) && fail "touch of a new name succeeded"
assert_contains "$err" "No such file or directory" "touch new name"
err=$( (echo '{}' > "$M/ro/keys/$id") 2>&1) && fail "write to a directory succeeded"
assert_contains "$err" "Is a directory" "echo > dir"

kms_py tree_readonly "$M/ro" "$id"
kms_umount
