#!/bin/bash
# Root-key rotation on a PostgreSQL store with two hosts (docs/root-of-trust.md, several hosts):
# daemons A and B, each with its own state dir and a copy of root.key, serve clients while
# `kmsctl root-key rotate` runs on A's state dir. B cannot open A's new root.key.next, says so in
# the store, and the rotation refuses to commit (exit 3, naming host B) while both keep serving;
# with the new file copied to B the rotation commits and destroys A's old root key; B, still
# running, serves old and new data keys; `kmsctl root-key rotate` on B's state dir then only
# finishes there (B's old root.key destroyed, the new one renamed into place). Data keys made
# before, during and after decrypt on both hosts, also after both are restarted; check passes.
source "$(dirname "$0")/../lib/common.sh"
# shellcheck source=tests/integration/lib/multihost.sh
source "$KMS_LIB/multihost.sh"
# shellcheck source=tests/integration/lib/root_rotate.sh
source "$KMS_LIB/root_rotate.sh"
kms_setup
kms_mh_pg
kms_mh_hosts A B
for h in A B; do kms_mh_start "$h" key_quota=100000; done
tok=$(kms_mh_token A rp) || fail "kmsctl token issue"
for h in A B; do kms_mh_login "$h" rp "$tok"; done
SA=$(kms_mh_state A) SB=$(kms_mh_state B)
first=$(rr_hex "$SA/root.key")

for h in A B; do mkdir "$KMS_WORK/j$h"; done
export ROOT_ROTATE_PAUSE=0.05 # the exit trap scans PostgreSQL's files for every data key
declare -A clients
for h in A B; do
	rr_clients "$(kms_mh_mnt "$h")/rp" "$KMS_WORK/j$h" "$KMS_WORK/clients$h.err" &
	clients[$h]=$!
	kms_bg $!
done
made() { cat "$KMS_WORK"/j?/c* 2>/dev/null | wc -l; }
for ((i = 0; i < 100 && $(made) < 20; i++)); do sleep 0.1; done
[ "$(made)" -ge 20 ] || fail "no traffic before the rotation"

rc=0
out=$(kms_mh_ctl A root-key rotate 2>&1) || rc=$?
log "$out"
assert_eq "$rc" 3 "exit status of a rotation that host B cannot follow"
assert_contains "$out" "cannot open the next root key" "the refused commit"
assert_contains "$out" "$(hostname)" "the refused commit names the host"
[ -f "$SA/root.key.next" ] || fail "no root.key.next on A after the refused commit"
assert_eq "$(rr_hex "$SA/root.key")" "$first" "A's root.key before the commit"

install -m 0600 "$SA/root.key.next" "$SB/root.key.next"
out=$(kms_mh_ctl A root-key rotate 2>&1) || fail "rotation with the new key on B: $out"
log "$out"
assert_contains "$out" "destroyed the old root key" "rotation on A"
[ ! -e "$SA/root.key.next" ] || fail "A's root.key.next left behind"
n=$(made)
for ((i = 0; i < 100 && $(made) < n + 20; i++)); do sleep 0.1; done
out=$(kms_mh_ctl B root-key rotate 2>&1) || fail "finishing on B: $out"
log "$out"
assert_contains "$out" "destroyed the old root key" "finishing on B"
[ ! -e "$SB/root.key.next" ] || fail "B's root.key.next left behind"
assert_eq "$(rr_hex "$SB/root.key")" "$(rr_hex "$SA/root.key")" "the root key on A and B"
touch "$KMS_WORK/stop"
for h in A B; do
	wait "${clients[$h]}" || fail "clients on $h saw failures ($(tail -5 "$KMS_WORK/clients$h.err"))"
done

for h in A B; do
	for j in A B; do
		kms_py root_rotate verify "$(kms_mh_mnt "$h")/rp" "$KMS_WORK/j$j" 10 ||
			fail "data keys made on $j, decrypted on $h"
	done
	kms_mh_stop "$h"
	kms_mh_start "$h" key_quota=100000
	kms_mh_login "$h" rp "$tok"
	for j in A B; do
		kms_py root_rotate verify "$(kms_mh_mnt "$h")/rp" "$KMS_WORK/j$j" 10 ||
			fail "data keys made on $j, decrypted on $h after its restart"
	done
done
out=$(kms_mh_ctl B check) || fail "kmsctl check: $out"
rr_gone "$first" "$SA" "$SB"
for h in A B; do kms_mh_stop "$h"; done
