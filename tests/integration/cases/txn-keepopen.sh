#!/bin/bash
# Kept-open handles (docs/using.md, "Kept-open handles"), as root and as an unprivileged user:
# 1,000 requests on one handle with bad ones in between (each its own error answer, the next one
# works), 8 threads with kept handles of their own (only their own answers; each decrypts what
# another created), a request after an idle pause longer than the mailbox TTL, and a handle kept
# across the revocation of its token (KMS.0302 from then on, also after a new token is bound:
# identity was captured at open; a new handle works). The checks: lib/txn_keepopen.py.
source "$(dirname "$0")/../lib/common.sh"
kms_setup
kms_user_setup
kms_token ko >/dev/null
kms_mount allow_other mailbox_ttl=1
kms_login ko
id=$(kms_create_key ko app)
P=$KMS_MNT/ko
as_user setfattr -n user.kms.token -v "$(kms_token ko --user ku --role crypto)" "$P" ||
	fail "user setfattr"

kms_py txn_keepopen many "$P" "$id"
as_user "$KMS_PY" "$KMS_PYLIB/txn_keepopen.py" many "$P" "$id"
kms_py txn_keepopen threads "$P" "$id"
as_user "$KMS_PY" "$KMS_PYLIB/txn_keepopen.py" threads "$P" "$id"
kms_py txn_keepopen idle "$P" "$id" 2.5

# keep_revoke WHO RUNNER...: txn_keepopen.py revoke, run by RUNNER (e.g. as_user), with two fresh
# tokens of user WHO; revokes the first while the script keeps a handle opened with it.
keep_revoke() {
	local who=$1 pid tid i rc=0
	shift
	KO_TOKEN1=$(kms_token ko --user "$who-1" --role crypto)
	KO_TOKEN2=$(kms_token ko --user "$who-2" --role crypto)
	export KO_TOKEN1 KO_TOKEN2
	"$@" "$KMS_PY" "$KMS_PYLIB/txn_keepopen.py" revoke "$P" "$KMS_SCRATCH/$who.ready" \
		"$KMS_SCRATCH/$who.go" &
	pid=$!
	kms_bg "$pid"
	unset KO_TOKEN1 KO_TOKEN2
	for ((i = 0; i < 300; i++)); do
		[ -e "$KMS_SCRATCH/$who.ready" ] && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	[ -e "$KMS_SCRATCH/$who.ready" ] || fail "revoke ($who): the handle was not ready"
	tid=$(kms_ctl token list | awk -v u="$who-1" '$3 == u {print $1}')
	kms_ctl token revoke "$tid" || fail "token revoke $tid"
	touch "$KMS_SCRATCH/$who.go"
	wait "$pid" || rc=$?
	[ "$rc" -eq 0 ] || fail "revoke ($who): the checks failed ($rc)"
}
keep_revoke kr
keep_revoke ku as_user

kill -0 "$KMS_PID" || fail "daemon died"
kms_umount
