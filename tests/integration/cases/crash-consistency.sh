#!/bin/bash
# kill -9 at random moments under load: 4 clients create keys, disable/enable them, rotate them
# and make data keys, while the daemon is killed KMS_CRASH_ROUNDS times (default 20) and
# restarted on the same mount point. Afterwards every key whose create-key response a client
# read exists, every data key a client received decrypts to the same DEK (whatever rotations
# happened), and kmsctl check passes.
source "$(dirname "$0")/../lib/common.sh"
rounds=${KMS_CRASH_ROUNDS:-20}
kms_start_project crash key_quota=100000
tok=$KMS_TOKEN
seed=$(kms_create_key crash seed)
journal=$KMS_WORK/journal
mkdir -p "$journal"
stop=$KMS_WORK/stop

# Clients: every success a client *read* goes into its journal before the next request.
"$KMS_PY" "$KMS_PYLIB/crash_clients.py" clients "$KMS_MNT/crash" "$journal" "$stop" "$seed" "$KMS_DEKS" &
kms_bg $!
clients=$!

for ((round = 1; round <= rounds; round++)); do
	sleep "0.$((RANDOM % 6 + 2))"
	kms_kill9
	kms_mount key_quota=100000
	# Tokens live in daemon memory only: the clients' uid sets it again after a restart.
	kms_login crash "$tok"
done
sleep 1
touch "$stop"
wait "$clients" || true
log "$rounds kills survived; $(cat "$journal"/c* | wc -l) journal entries"

# Verify: leave every key enabled (a crash may hit between disable and enable), then check.
kms_py crash_clients verify "$KMS_MNT/crash" "$journal" || fail "a key or a data key was lost"
kms_umount
kms_ctl check >/dev/null || fail "kmsctl check after $rounds crashes"
