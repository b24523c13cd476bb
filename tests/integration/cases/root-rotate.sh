#!/bin/bash
# Root-key rotation without downtime (issue 13.2): a daemon serves 4 clients (keys made and
# rotated, data keys made and decrypted) while `kmsctl root-key rotate` is killed with SIGKILL
# at random moments 10 times, then run to the end. Every data key made before, during and after
# decrypts through the daemon, also after a remount; `kmsctl check` passes; the first root
# key's bytes are in no file of the state directory any more, and no root.key.next is left.
source "$(dirname "$0")/../lib/common.sh"
# shellcheck source=tests/integration/lib/root_rotate.sh
source "$KMS_LIB/root_rotate.sh"
kms_start_project rr key_quota=100000
first=$(rr_hex "$KMS_STATE/root.key")
rr_start "$KMS_MNT/rr"
kms_py root_rotate verify "$KMS_MNT/rr" "$RR_JOURNAL" 20 || fail "data keys made before the rotation"

rr_kills 10 8 "$KMSCTL" --state "$KMS_STATE" root-key rotate
out=$("$KMSCTL" --state "$KMS_STATE" root-key rotate 2>&1) || fail "the last rotation: $out"
log "$out"
assert_contains "$out" "root key generation" "kmsctl root-key rotate"
assert_contains "$out" "destroyed the old root key" "kmsctl root-key rotate"
rr_finish rr

[ ! -e "$KMS_STATE/root.key.next" ] || fail "root.key.next left behind"
[ -f "$KMS_STATE/root.key" ] || fail "no root.key after the rotations"
rr_gone "$first" "$KMS_STATE"
gen=$("$KMS_PY" -c 'import sqlite3, sys
db = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
print(db.execute("select value from meta where name = ?", ("root_generation",)).fetchone()[0])' \
	"$KMS_STATE/kms.db")
[ "$gen" -ge 2 ] || fail "root_generation $gen after the rotations"
log "root key generation $gen, $(rr_made) data keys verified"
