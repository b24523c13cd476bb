#!/bin/bash
# Eight python threads run same-handle transactions concurrently on ONE shared file path: each
# creates DEKs on keys/<id>/create-datakey and decrypts exactly its own through decrypt-datakey.
# No response may belong to another thread (distinct DEKs, each unwraps to its own plaintext,
# per-thread encryption_context), over hundreds of transactions.
source "$(dirname "$0")/../lib/common.sh"
kms_start_project th
id=$(kms_create_key th app)

kms_py txn_threads "$KMS_MNT/th" "$id"
kill -0 "$KMS_PID" || fail "daemon died under concurrency"
kms_umount
