#!/bin/bash
# Many hosts, one store (issue 12.1, 12.2): three daemons A, B and C on separate mount points and
# state dirs share one PostgreSQL store (a throw-away cluster, lib/pg.sh) and one root key.
# A token issued by kmsctl on one host's state dir works on every host; a key made on A is
# listed and used on B and C; a DEK made on A decrypts on B (and data encrypted on C decrypts on
# A); a disable on A is refused on B and C within 1 s, an alias or description change on A is
# seen on B and C within 1 s, grants and tags made on A are seen on C, a rotation and a deletion
# scheduled and cancelled on A are seen on B and C within 1 s, a token revoked with
# kmsctl on A's state dir is refused on B and C within 1 s (each time measured and printed);
# `kmsctl check` passes on the store; every daemon unmounts cleanly. C is mounted with a wrong
# store= before the right one: the last one counts. The EXIT trap scans every
# host's log and state dir and the PostgreSQL data directory for the plaintext DEKs seen.
source "$(dirname "$0")/../lib/common.sh"
# shellcheck source=tests/integration/lib/multihost.sh
source "$KMS_LIB/multihost.sh"
kms_setup
kms_mh_pg
kms_mh_hosts A B C
# C is given store= twice, a wrong one first: the last one counts (the first copy is wiped and
# freed; an ASan build would catch a bad free).
kms_mh_start A
kms_mh_start B
kms_mh_start C "store=host=$KMS_WORK/no-such-socket-dir dbname=wrong password=first-store-secret"
! grep -q first-store-secret "$(kms_mh_log C)" "$KMS_WORK/C/kmsfs.stderr" ||
	fail "the password of the discarded store= reached C's log or stderr"
MA=$(kms_mh_mnt A) MB=$(kms_mh_mnt B) MC=$(kms_mh_mnt C)

# propagate WHAT CHANGE PROBE...: the change, then the probes until they see it (1 s at most).
propagate() {
	local what=$1 out
	shift
	out=$(kms_py multihost propagate 1 "$@") || fail "$what: $out"
	log "$what: $(tr '\n' ';' <<<"$out")"
	awk '/ ms until / {print $1}' <<<"$out" >>"$KMS_WORK/propagation.ms"
}
probe() { jq -nc --arg f "$1" --arg r "$2" --arg e "$3" '{file: $f, req: ($r | fromjson), expect: $e}'; }
change() { jq -nc --arg f "$1" --arg r "$2" '{file: $f, req: ($r | fromjson)}'; }

# A token from kmsctl on B's state dir works on A, B and C; one from C's works on A.
tok=$(kms_mh_token B mh) || fail "kmsctl token issue on host B"
for h in A B C; do
	kms_mh_login "$h" mh "$tok" || fail "setfattr of B's token on host $h"
	assert_eq "$(jget "$(kms_mh_call "$h" mh/list-keys '{}')" .total)" 0 "list-keys on host $h with B's token"
done
tokc=$(kms_mh_token C mh --user carol --role viewer) || fail "kmsctl token issue on host C"
kms_mh_login A mh "$tokc"
assert_eq "$(jget "$(kms_mh_call A mh/list-keys '{}')" .total)" 0 "list-keys on host A with C's token"
kms_mh_login A mh "$tok"

# A key made on A: listed, described and used on B and C.
r=$(kms_mh_call A mh/create-key '{"key_alias":"app","key_description":"made on A"}')
assert_ok "$r"
id=$(jget "$r" .key_info.key_id)
for h in B C; do
	r=$(kms_mh_call "$h" mh/list-keys '{}')
	assert_eq "$(jget "$r" '[.keys[]] | join(",")')" "$id" "list-keys on host $h"
	r=$(kms_mh_call "$h" mh/describe-key "{\"key_id\":\"alias/app\"}")
	assert_eq "$(jget "$r" '"\(.key_info.key_id) \(.key_info.key_state) \(.key_info.key_description)"')" \
		"$id 2 made on A" "describe-key of alias/app on host $h"
	assert_ok "$(kms_mh_call "$h" "mh/keys/$id/create-datakey" '{}')"
	[ -L "$(kms_mh_mnt "$h")/mh/aliases/app" ] || fail "aliases/app missing on host $h"
done

# A DEK made on A decrypts on B and C; data encrypted on C decrypts on A.
r=$(kms_mh_call A mh/create-datakey "{\"key_id\":\"$id\"}")
ct=$(jget "$r" .cipher_text) dek=$(jget "$r" .plain_text)
for h in B C; do
	r=$(kms_mh_call "$h" mh/decrypt-datakey "{\"key_id\":\"$id\",\"cipher_text\":\"$ct\",\"datakey_cipher_length\":\"64\"}")
	assert_eq "$(jget "$r" .data_key)" "$dek" "A's DEK decrypted on host $h"
done
ctd=$(jget "$(kms_mh_call C mh/encrypt-data "{\"key_id\":\"$id\",\"plain_text\":\"from C\"}")" .cipher_text)
assert_eq "$(jget "$(kms_mh_call A mh/decrypt-data "{\"cipher_text\":\"$ctd\"}")" .plain_text)" "from C" \
	"C's ciphertext decrypted on host A"

# Disable on A: refused on B and C within 1 s; enabled again on A: usable on B and C.
dk="{\"key_id\":\"$id\"}"
propagate "disable-key on A, refused on B and C" "$(change "$MA/mh/disable-key" "$dk")" \
	"$(probe "$MB/mh/create-datakey" "$dk" KMS.0209)" "$(probe "$MC/mh/create-datakey" "$dk" KMS.0209)"
propagate "enable-key on A, usable on B and C" "$(change "$MA/mh/enable-key" "$dk")" \
	"$(probe "$MB/mh/create-datakey-without-plaintext" "$dk" cipher_text)" \
	"$(probe "$MC/mh/create-datakey-without-plaintext" "$dk" cipher_text)"

# Alias and description changes on A, seen on B and C.
propagate "update-key-alias on A, seen on B and C" \
	"$(change "$MA/mh/update-key-alias" "{\"key_id\":\"$id\",\"key_alias\":\"app2\"}")" \
	"$(probe "$MB/mh/describe-key" "{\"key_id\":\"alias/app2\"}" "$id")" \
	"$(probe "$MC/mh/describe-key" "{\"key_id\":\"alias/app2\"}" "$id")"
for h in B C; do
	assert_errcode "$(kms_mh_call "$h" mh/describe-key '{"key_id":"alias/app"}')" KMS.0207
	[ -L "$(kms_mh_mnt "$h")/mh/aliases/app2" ] || fail "aliases/app2 missing on host $h"
done
propagate "update-key-description on A, seen on B and C" \
	"$(change "$MA/mh/update-key-description" "{\"key_id\":\"$id\",\"key_description\":\"changed on A\"}")" \
	"$(probe "$MB/mh/describe-key" "$dk" "changed on A")" "$(probe "$MC/mh/describe-key" "$dk" "changed on A")"

# Grants and tags made on A, seen on C.
r=$(kms_mh_call A mh/create-grant "{\"key_id\":\"$id\",\"grantee_principal\":\"bob\",\"operations\":[\"decrypt-datakey\"],\"name\":\"g-on-a\"}")
g=$(jget "$r" .grant_id)
[[ $g =~ ^[0-9a-f]{64}$ ]] || fail "create-grant on A: $r"
r=$(kms_mh_call C mh/list-grants "$dk")
assert_eq "$(jget "$r" '"\(.total) \(.grants[0].grant_id) \(.grants[0].grantee_principal) \(.grants[0].name)"')" \
	"1 $g bob g-on-a" "list-grants on host C"
assert_eq "$(kms_mh_call A "mh/keys/$id/tags" '{"tag":{"key":"env","value":"prod"}}')" "{}" "a tag on A"
r=$(kms_mh_call C "mh/keys/$id/tags")
assert_eq "$(jget "$r" '[.tags[] | "\(.key)=\(.value)"] | join(",")')" "env=prod" "tags on host C"
assert_eq "$(jget "$(kms_mh_call C mh/tags)" '[.tags[] | "\(.key):\(.values | join("|"))"] | join(",")')" \
	"env:prod" "project tags on host C"

# Rotation, and deletion scheduled and cancelled, on A: seen on B and C within 1 s.
propagate "rotate-key on A, seen on B and C" "$(change "$MA/mh/keys/$id/rotate-key" '{}')" \
	"$(probe "$MB/mh/keys/$id/get-key-rotation-status" '{}' '"number_of_rotations": 1')" \
	"$(probe "$MC/mh/keys/$id/get-key-rotation-status" '{}' '"number_of_rotations": 1')"
# A data key made on A under a version A has just made: B decrypts it at once, even before the
# rotation has reached B's cache (B reads the key again rather than call it invalid).
for round in 1 2 3 4 5 6 7 8 9 10; do
	r=$(kms_mh_call A "mh/keys/$id/rotate-key" '{}')
	[[ $r != *error_code* ]] || fail "round $round: rotate-key on A: $r"
	r=$(kms_mh_call A mh/create-datakey "$dk")
	d=$(kms_mh_call B mh/decrypt-datakey "{\"key_id\":\"$id\",\"cipher_text\":\"$(jget "$r" .cipher_text)\",\"datakey_cipher_length\":\"64\"}")
	assert_eq "$(jget "$d" .data_key)" "$(jget "$r" .plain_text)" "round $round: a DEK under A's newest version, on B at once"
done
t=$(jget "$(kms_mh_call A mh/create-key '{"key_alias":"short-lived"}')" .key_info.key_id)
tk="{\"key_id\":\"$t\"}"
propagate "schedule-key-deletion on A, seen on B and C" \
	"$(change "$MA/mh/keys/$t/schedule-key-deletion" '{"pending_days":"7"}')" \
	"$(probe "$MB/mh/describe-key" "$tk" '"key_state": "4"')" "$(probe "$MC/mh/describe-key" "$tk" '"key_state": "4"')"
propagate "cancel-key-deletion on A, seen on B and C" "$(change "$MA/mh/keys/$t/cancel-key-deletion" '{}')" \
	"$(probe "$MB/mh/describe-key" "$tk" '"key_state": "3"')" "$(probe "$MC/mh/describe-key" "$tk" '"key_state": "3"')"

# A token revoked with kmsctl on A's state dir: refused on B and C within 1 s.
rtok=$(kms_mh_token A rv --user rita --role crypto) || fail "kmsctl token issue on A"
for h in B C; do
	kms_mh_login "$h" rv "$rtok" || fail "setfattr of rita's token on host $h"
	assert_eq "$(jget "$(kms_mh_call "$h" rv/list-keys '{}')" .total)" 0 "rita's token on host $h"
done
rid=$(kms_mh_ctl C token list | awk '$3 == "rita" {print $1}')
[[ $rid =~ ^[0-9a-f]{16}$ ]] || fail "rita's token is not in \`token list\` on host C: '$rid'"
propagate "token revoke on A, refused on B and C" \
	"$(jq -nc --arg k "$KMSCTL" --arg s "$(kms_mh_state A)" --arg u "$KMS_MH_URI" --arg id "$rid" \
		'{cmd: [$k, "--state", $s, "--store", $u, "token", "revoke", $id]}')" \
	"$(probe "$MB/rv/list-keys" '{}' KMS.0302)" "$(probe "$MC/rv/list-keys" '{}' KMS.0302)"
assert_eq "$(kms_mh_ctl B token list | awk -v id="$rid" '$1 == id {print $6}')" revoked "rita's state on host B"
assert_ok "$(kms_mh_call B mh/list-keys '{}')" # the other token still works

sort -n "$KMS_WORK/propagation.ms" | awk '{v[NR] = $1} END {
	printf "# propagation from A to B and C: %d changes, median %d ms, slowest %d ms\n", NR, v[int((NR + 1) / 2)], v[NR]}' >&2

# The store is intact, and every host unmounts cleanly.
out=$(kms_mh_ctl B check 2>&1) || fail "kmsctl check on the store: $out"
for h in A B C; do kms_mh_stop "$h"; done
