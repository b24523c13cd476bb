#!/bin/bash
# The rules hold across hosts under concurrency (issue 12.2): two daemons on one PostgreSQL store
# (lib/multihost.sh), requests released together by a barrier (lib/multihost.py):
# - the same alias created on both at the same moment, 30 rounds: exactly one succeeds, the
#   other answers KMS.1104, and the project holds one key per round;
# - -o key_quota=5 on both daemons (restarted with it), 3 threads on each creating keys until refused: exactly 5 keys
#   exist, every other answer is KMS.1105;
# - rotate-key of one key on both at the same moment, 10 rounds: the versions answered are
#   distinct and consecutive (never two "version 1"), number_of_rotations agrees on both;
# - disable/enable on A while B changes the description, 10 rounds: neither change is lost.
source "$(dirname "$0")/../lib/common.sh"
# shellcheck source=tests/integration/lib/multihost.sh
source "$KMS_LIB/multihost.sh"
kms_setup
kms_mh_pg
kms_mh_hosts A B
for h in A B; do kms_mh_start "$h"; done
MA=$(kms_mh_mnt A) MB=$(kms_mh_mnt B)
tok=$(kms_mh_token A ra) || fail "kmsctl token issue"
qtok=$(kms_mh_token A rq) || fail "kmsctl token issue"
for h in A B; do kms_mh_login "$h" ra "$tok" || fail "setfattr on host $h"; done

# race WHAT ARGS...: one multihost.py race, its summary logged.
race() {
	local what=$1 out
	shift
	out=$(kms_py multihost "$@") || fail "$what: $out"
	log "$what: $(tr '\n' ';' <<<"$out")"
}

race "same alias on A and B at once" alias-race 30 ra "$MA" "$MB"

id=$(jget "$(kms_mh_call A ra/create-key '{"key_alias":"rot"}')" .key_info.key_id)
[[ $id =~ ^[0-9a-f-]{36}$ ]] || fail "create-key for the rotation rounds: '$id'"
race "rotate-key on A and B at once" rotate-race 10 ra "$id" "$MA" "$MB"

sid=$(jget "$(kms_mh_call A ra/create-key '{"key_alias":"state"}')" .key_info.key_id)
[[ $sid =~ ^[0-9a-f-]{36}$ ]] || fail "create-key for the state rounds: '$sid'"
race "disable/enable on A with update-key-description on B" state-race 10 ra "$sid" "$MA" "$MB"

# The quota, with both daemons restarted with -o key_quota=5 (bindings live in daemon memory).
for h in A B; do
	kms_mh_stop "$h"
	kms_mh_start "$h" key_quota=5
	kms_mh_login "$h" rq "$qtok" || fail "setfattr on host $h"
done
race "create-key on A and B against key_quota=5" quota-race 5 rq 3 "$MA" "$MB"

out=$(kms_mh_ctl A check 2>&1) || fail "kmsctl check on the store: $out"
for h in A B; do kms_mh_stop "$h"; done
