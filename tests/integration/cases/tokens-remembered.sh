#!/bin/bash
# Logins survive restarts (issue 15.3): tokens bound with setfattr by root on the host, by an
# unprivileged user (setpriv) and by root inside a mount namespace (unshare -m, a process kept
# alive for the test) keep working after `fusermount3 -u` + start and after kill -9 + start,
# without being set again, and the namespace's only in that namespace. A token that expired and
# one that was revoked end (and their rows go). `kmsctl token list` shows where each token is
# bound, user.kms.identity whether a binding is remembered; no part of a token is in the
# database. -o forget_tokens forgets this host's. On a PostgreSQL store shared by two daemons
# with different machine ids (KMSFS_TEST_MACHINE_ID), a binding made on host A is not applied on
# host B.
source "$(dirname "$0")/../lib/common.sh"
kms_setup unshare nsenter setpriv
kms_user_setup

# The work dir a shared mount, so that a namespace made with slave propagation (as a container
# given an rslave bind mount) sees every new mount of the daemon, and its unmounts.
mount --bind "$KMS_WORK" "$KMS_WORK" || skip "cannot bind-mount the work dir"
mount --make-shared "$KMS_WORK"
remembered_cleanup() {
	kms_daemon_kill "$KMS_PID" "$KMS_MNT"
	umount -l "$KMS_WORK" 2>/dev/null
	return 0
}
KMS_CLEANUP_HOOKS+=(remembered_cleanup)

tok_root=$(kms_token rm --user hostroot)
tok_user=$(kms_token rm --user plain --role crypto)
tok_ns=$(kms_token rm --user inns --role viewer)
tok_short=$(kms_token rx --user brief --ttl 12)
tok_rev=$(kms_token rv --user gone)
kms_mount allow_other

unshare -m --propagation slave sleep 600 &
nspid=$!
kms_bg "$nspid"
for ((i = 0; i < 50; i++)); do
	[ "$(stat -L -c %i "/proc/$nspid/ns/mnt")" != "$(stat -L -c %i /proc/self/ns/mnt)" ] && break
	sleep 0.1
done
nsino=$(stat -L -c %i "/proc/$nspid/ns/mnt")
in_ns() { nsenter -t "$nspid" -m -- "$@"; }

kms_login rm "$tok_root"
kms_login rx "$tok_short"
kms_login rv "$tok_rev"
as_user setfattr -n user.kms.token -v "$tok_user" "$KMS_MNT/rm" || fail "setfattr as $KMS_USER"
in_ns setfattr -n user.kms.token -v "$tok_ns" "$KMS_MNT/rm" || fail "setfattr in the namespace"
id=$(kms_create_key rm app)

# Who is who: root on the host is admin, the user crypto, root in the namespace viewer; a
# namespace made now has no login.
check_logins() {
	local when=$1 r
	assert_ok "$(kms_call rm/list-keys '{}')"
	r=$(kms_call rm/create-key "{\"key_alias\":\"k-$when\"}")
	assert_ok "$r"
	r=$(user_call rm/create-datakey "{\"key_id\":\"$id\"}")
	assert_eq "$(jget "$r" '.plain_text | length')" 128 "$KMS_USER's create-datakey $when: $r"
	kms_record "$r"
	assert_errcode "$(user_call rm/disable-key "{\"key_id\":\"$id\"}")" KMS.0307
	r=$(in_ns "$KMS_PY" "$KMS_IO" rdwr "$KMS_MNT/rm/list-keys" '{}')
	assert_ok "$r"
	assert_errcode "$(in_ns "$KMS_PY" "$KMS_IO" rdwr "$KMS_MNT/rm/create-key" '{"key_alias":"ns"}')" KMS.0307
	assert_errcode "$(unshare -m "$KMS_PY" "$KMS_IO" rdwr "$KMS_MNT/rm/list-keys" '{}')" KMS.0301
}
check_logins before
ident() { getfattr --only-values -n user.kms.identity "$KMS_MNT/$1" | jq -r "$2"; }
assert_eq "$(ident rm .token.remembered)" true "user.kms.identity: remembered"
assert_ok "$(kms_call rx/list-keys '{}')"
assert_ok "$(kms_call rv/list-keys '{}')"

# token list: where each is bound (host scope for the host's namespace, the inode otherwise).
host=$(head -n 1 /etc/machine-id 2>/dev/null || hostname)
list=$(kms_ctl token list) || fail "token list"
bound=$(awk 'f && NF == 5 {print $1, $3, $4, $5} /^TOKEN /{f = 1}' <<<"$list")
tid() { kms_ctl token list | awk -v u="$1" 'NF == 6 && $3 == u {print $1; exit}'; }
for row in "$(tid hostroot) 0 host rm" "$(tid plain) $KMS_UID host rm" "$(tid inns) 0 $nsino rm" \
	"$(tid brief) 0 host rx" "$(tid gone) 0 host rv"; do
	grep -qxF "$row" <<<"$bound" || fail "token list: no binding '$row' in: $list"
done
assert_contains "$list" "$host" "token list: the machine id"
for t in "$tok_root" "$tok_user" "$tok_ns" "$tok_short" "$tok_rev"; do
	assert_not_contains "$list" "${t##*.}" "token list (a token's MAC)"
done

# No part of a token in the database (its payload or its MAC).
sync
for t in "$tok_root" "$tok_user" "$tok_ns"; do
	p=${t#kms1.}
	for part in "${p%%.*}" "${t##*.}"; do
		if grep -rqaF -- "$part" "$KMS_STATE"; then fail "a token part is in the state dir"; fi
	done
done

# ---- restart: unmount + start
kms_umount
kms_mount allow_other
check_logins after-umount

# ---- revocation ends a login at once, and its row goes
rid=$(tid gone)
kms_ctl token revoke "$rid" >/dev/null || fail "token revoke"
r=$(kms_call rv/list-keys '{}')
[ "$(jget "$r" .error.error_code)" != null ] || fail "the revoked token still works: $r"
kms_ctl token list | grep -q "^$rid .* rv$" && fail "token list still shows the revoked token bound"

# ---- restart: kill -9 + start (the expired token has run out meanwhile)
while [ "$(kms_call rx/list-keys '{}' | jq -r '.error.error_code // "ok"')" == ok ]; do sleep 1; done
kms_kill9
kms_mount allow_other
check_logins after-kill9
assert_errcode "$(kms_call rx/list-keys '{}')" KMS.0301
assert_errcode "$(kms_call rv/list-keys '{}')" KMS.0301
list=$(kms_ctl token list)
grep -qE " (rx|rv)$" <<<"$(awk '/^TOKEN /{f = 1} f' <<<"$list")" &&
	fail "expired or revoked bindings still remembered: $list"
grep -q "restored 3 remembered token binding" "$KMS_LOG" || fail "no 'restored 3' line in the log"

# ---- removexattr forgets for good; a namespace that is gone is forgotten at the next start;
# -o forget_tokens forgets this host's and remembers nothing
in_ns setfattr -x user.kms.token "$KMS_MNT/rm" || fail "setfattr -x in the namespace"
unshare -m --propagation slave sleep 600 &
ns2=$!
kms_bg "$ns2"
for ((i = 0; i < 50; i++)); do
	ns2ino=$(stat -L -c %i "/proc/$ns2/ns/mnt")
	[ "$ns2ino" != "$(stat -L -c %i /proc/self/ns/mnt)" ] && break
	sleep 0.1
done
nsenter -t "$ns2" -m -- setfattr -n user.kms.token -v "$tok_ns" "$KMS_MNT/rm" || fail "setfattr in a second namespace"
kms_ctl token list | grep -qE " $ns2ino +rm$" || fail "no binding of the second namespace in token list"
kill -KILL "$ns2"
wait "$ns2" 2>/dev/null || true
kms_umount
kms_mount allow_other
assert_errcode "$(in_ns "$KMS_PY" "$KMS_IO" rdwr "$KMS_MNT/rm/list-keys" '{}')" KMS.0301
kms_ctl token list | grep -qE " $nsino +rm$" && fail "the namespace's binding is remembered after removexattr"
# Only a daemon that can read every process's namespace can tell that one ended.
if find /proc/[0-9]*/ns/mnt -maxdepth 0 -exec stat -L -c %i {} + >/dev/null 2>&1; then
	kms_ctl token list | grep -qE " $ns2ino +rm$" && fail "a binding remembered after its namespace ended"
else
	log "note: some process's mount namespace is unreadable here: the binding of an ended namespace is kept"
	grep -q "of other mount namespaces kept" "$KMS_LOG" || fail "the log does not say why the binding of an ended namespace is kept"
fi
assert_ok "$(kms_call rm/list-keys '{}')"
kms_umount
kms_mount allow_other forget_tokens
assert_errcode "$(kms_call rm/list-keys '{}')" KMS.0301
assert_errcode "$(user_call rm/list-keys '{}')" KMS.0301
assert_eq "$(kms_ctl token list | awk '/^TOKEN /{f = 1; next} f' | grep -c "$host")" 0 "bindings left after forget_tokens"
kms_login rm "$tok_root"
assert_ok "$(kms_call rm/list-keys '{}')"
assert_eq "$(ident rm .token.remembered)" false "user.kms.identity with forget_tokens"
kms_umount
kms_mount allow_other
assert_errcode "$(kms_call rm/list-keys '{}')" KMS.0301
kms_umount

# ---- a remembered binding names its namespace by number and by the namespace's oldest process
# (the kernel gives an ended namespace's number to the next new one): a namespace that lives on
# in a younger process after that one ended is not trusted after a restart; a new login works
unshare -m --propagation slave sleep 600 &
w=$!
kms_bg "$w"
for ((i = 0; i < 50; i++)); do
	wino=$(stat -L -c %i "/proc/$w/ns/mnt")
	[ "$wino" != "$(stat -L -c %i /proc/self/ns/mnt)" ] && break
	sleep 0.1
done
kms_mount allow_other
nsenter -t "$w" -m -- setfattr -n user.kms.token -v "$tok_ns" "$KMS_MNT/rm" ||
	fail "setfattr in the witnessed namespace"
nsenter -t "$w" -m -- sleep 600 &
y=$!
kms_bg "$y"
for ((i = 0; i < 50; i++)); do
	[ "$(stat -L -c %i "/proc/$y/ns/mnt" 2>/dev/null)" = "$wino" ] && break
	sleep 0.1
done
assert_ok "$(nsenter -t "$y" -m -- "$KMS_PY" "$KMS_IO" rdwr "$KMS_MNT/rm/list-keys" '{}')"
kill -KILL "$w"
wait "$w" 2>/dev/null || true
kms_umount
kms_mount allow_other
assert_errcode "$(nsenter -t "$y" -m -- "$KMS_PY" "$KMS_IO" rdwr "$KMS_MNT/rm/list-keys" '{}')" \
	KMS.0301
nsenter -t "$y" -m -- setfattr -n user.kms.token -v "$tok_ns" "$KMS_MNT/rm" ||
	fail "setfattr again in the namespace"
assert_ok "$(nsenter -t "$y" -m -- "$KMS_PY" "$KMS_IO" rdwr "$KMS_MNT/rm/list-keys" '{}')"
kms_umount

# ---- PostgreSQL, two hosts: A's binding is not applied on B
# shellcheck source=tests/integration/lib/multihost.sh
source "$KMS_LIB/multihost.sh"
kms_mh_pg
kms_mh_hosts A B
tok=$(kms_mh_token A pg)
KMSFS_TEST_MACHINE_ID=test-host-a kms_mh_start A
KMSFS_TEST_MACHINE_ID=test-host-b kms_mh_start B
kms_mh_login A pg "$tok"
assert_ok "$(kms_mh_call A pg/list-keys '{}')"
assert_errcode "$(kms_mh_call B pg/list-keys '{}')" KMS.0301
assert_contains "$(kms_mh_ctl A token list)" "test-host-a" "token list on PostgreSQL"
kms_mh_stop A
kms_mh_stop B
KMSFS_TEST_MACHINE_ID=test-host-b kms_mh_start B
KMSFS_TEST_MACHINE_ID=test-host-a kms_mh_start A
assert_ok "$(kms_mh_call A pg/list-keys '{}')"
assert_errcode "$(kms_mh_call B pg/list-keys '{}')" KMS.0301
dump=$(_kms_pg_as pg_dump -h "$(_kms_pg_sock "$KMS_MH_PGDIR")" -p "$(_kms_pg_port "$KMS_MH_PGDIR")" -U "$KMS_PG_USER" kms 2>&1) ||
	fail "pg_dump: $dump"
assert_contains "$dump" "test-host-a" "pg_dump holds the session row"
p=${tok#kms1.}
assert_not_contains "$dump" "${p%%.*}" "pg_dump (token payload)"
assert_not_contains "$dump" "${tok##*.}" "pg_dump (token MAC)"
kms_mh_stop A
kms_mh_stop B
