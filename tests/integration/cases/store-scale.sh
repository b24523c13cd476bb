#!/bin/bash
# Scale (issue 12.4), functional part, for SQLite and for PostgreSQL: a project with 10,000 keys
# (made through the mount by 8 clients in parallel: the material is sealed by the daemon); `ls
# keys/` and `ls aliases/` list all of them (paged reads from the store) and list-keys counts
# them; a daemon with -o key_cache=100 makes and unwraps a data key under 1,000 different keys
# and unwraps them all again afterwards (every one evicted and reloaded), while .metrics never
# shows more than 100 keys in its cache. KMS_SCALE_KEYS: the number of keys (default 10000).
source "$(dirname "$0")/../lib/common.sh"
# shellcheck source=tests/integration/lib/multihost.sh
source "$KMS_LIB/multihost.sh"
kms_setup
n=${KMS_SCALE_KEYS:-10000}
opts=(key_quota=$((n + 100)) key_cache=100)
py() { "$KMS_PY" "$(dirname "$0")/store-scale.py" "$@"; }

# scale WHAT MNT: the checks on the project sc of the mount MNT.
# shellcheck disable=SC2012 # ls: what a person types (the names are key ids and aliases)
scale() {
	local what=$1 mnt=$2 p=$2/sc t c
	py create "$p" "$n" 8 || fail "$what: creating $n keys (above)"
	t=$(date +%s%N)
	c=$(ls "$p/keys" | wc -l)
	log "$what: ls keys/ listed $c keys in $((($(date +%s%N) - t) / 1000000)) ms"
	assert_eq "$c" "$n" "$what: keys listed by ls keys/"
	assert_eq "$(ls "$p/keys" | sort -u | wc -l)" "$n" "$what: distinct keys listed by ls keys/"
	assert_eq "$(ls "$p/aliases" | wc -l)" "$n" "$what: aliases listed by ls aliases/"
	assert_eq "$(jget "$(kms_call "$p/list-keys" '{"limit":"10"}')" .total)" "$n" "$what: list-keys total"
	py touch "$p" "$mnt" 1000 100 || fail "$what: 1,000 keys through a cache of 100 (above)"
}

kms_start_project sc "${opts[@]}"
scale SQLite "$KMS_MNT"
kms_umount

kms_mh_pg
kms_mh_hosts P
kms_mh_start P "${opts[@]}"
kms_mh_login P sc "$(kms_mh_token P sc)" || fail "setfattr"
scale PostgreSQL "$(kms_mh_mnt P)"
kms_mh_stop P
