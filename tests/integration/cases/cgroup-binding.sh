#!/bin/bash
# Bindings by cgroup (issue 15.2), with real cgroups: a test-owned parent made under the machine's
# cgroup v2 hierarchy (found in /proc/self/mountinfo, never assumed), children app, app/child and
# apps, processes moved in by writing their pid to cgroup.procs. `kmsctl project bind P --cgroup
# PATH --role crypto` gives the unprivileged test user, without any token, the role in app and
# app/child, and nothing in apps (a sibling whose name starts with app's), the parent or outside;
# user.kms.identity there names the cgroup and the binding's role.
# A process that opened a handle in app and then moved out keeps the handle's identity, but its
# new opens do not get the role; unbind applies at once to requests on an open handle and to new
# opens. Root in a container (its own mount namespace) gets the role in app too, not elsewhere:
# the host root's token does not apply there. Precedence: a token beats a cgroup binding (both
# ways), the deepest cgroup binding beats a shallower one and the uid binding (both ways), the uid
# binding beats a group's. `project show` lists the bindings; bad paths are refused with a
# sentence. A cgroup path of about 4,900 bytes is read whole (user.kms.identity names it, its
# binding applies) and is cut and marked in the audit line, its request served. Then on PostgreSQL: a bind made with host A's kmsctl is seen by daemon B within a
# second, and so is the unbind. The cgroups are removed at the end (their processes moved out
# first), also when the case fails.
source "$(dirname "$0")/../lib/common.sh"
kms_setup
kms_user_setup
kms_member_setup

# The cgroup v2 mount: its root in the hierarchy and its mount point (fields 4 and 5, the file
# system type after the " - " separator).
read -r CG_ROOT CG < <(awk '{for (i = 7; i < NF; i++) if ($i == "-") {
	if ($(i + 1) == "cgroup2") print $4, $5; break}}' /proc/self/mountinfo | head -n 1) || true
if [ -z "${CG:-}" ] || [ ! -d "$CG" ]; then skip "no cgroup v2 hierarchy in /proc/self/mountinfo"; fi
# cg_dir PATH: the directory of cgroup PATH (as /proc/PID/cgroup names it).
cg_dir() {
	local p=$1
	[ "$CG_ROOT" == / ] || p=${p#"$CG_ROOT"}
	printf '%s%s\n' "$CG" "$p"
}
CG_HOME=$(cg_dir "$(sed -n 's/^0:://p' /proc/self/cgroup)") # where processes go back to
[ -w "$CG_HOME/cgroup.procs" ] || CG_HOME=$CG
CG_PARENT=$CG/kmsfs-it.$$.$RANDOM
mkdir "$CG_PARENT" 2>/dev/null || skip "cannot create a cgroup in $CG"

# The EXIT trap's part: every process of the test's cgroups back home, then the cgroups removed,
# deepest first.
# The deep chain (made below) through relative paths: its absolute ones pass PATH_MAX. Its
# processes are gone with their subshells.
cg_deep_cleanup() {
	[ -n "${comp:-}" ] && [ -d "$CG_PARENT/app/${comp}0" ] || return 0
	(
		cd "$CG_PARENT/app" || exit 0
		for ((k = 0; k < 20; k++)); do cd "$comp$k" 2>/dev/null || break; done
		for ((; k > 0; k--)); do cd .. && rmdir "$comp$((k - 1))"; done
	) 2>/dev/null
	return 0
}
cg_cleanup() {
	local d p i
	[ -d "$CG_PARENT" ] || return 0
	for ((i = 0; i < 50; i++)); do
		cg_deep_cleanup
		while read -r d; do
			while read -r p; do echo "$p" >"$CG_HOME/cgroup.procs"; done <"$d/cgroup.procs" 2>/dev/null
			rmdir "$d" 2>/dev/null
		done < <(find "$CG_PARENT" -depth -type d)
		[ -d "$CG_PARENT" ] || return 0
		sleep 0.1
	done
	echo "FAIL: $KMS_CASE: could not remove the cgroups under $CG_PARENT" >&2
	return 1
}
KMS_CLEANUP_HOOKS+=(cg_cleanup)
mkdir "$CG_PARENT/app" "$CG_PARENT/app/child" "$CG_PARENT/apps" || fail "mkdir of child cgroups"

# in_cg DIR CMD...: CMD (a function too) in a subshell moved into the cgroup of DIR first.
in_cg() {
	local d=$1
	shift
	(
		echo "$BASHPID" >"$d/cgroup.procs" || exit 99
		"$@"
	)
}
# The parent's path as the kernel tells a process in it.
PARENT=$(in_cg "$CG_PARENT" sed -n 's/^0:://p' /proc/self/cgroup)
if [[ $PARENT != /* ]] || [ "$(cg_dir "$PARENT")" != "$CG_PARENT" ]; then
	fail "a process moved into $CG_PARENT reads its cgroup as '$PARENT'"
fi
APP=$PARENT/app

kms_start_project cg allow_other "audit=$KMS_WORK/audit.log"
id=$(kms_create_key cg app)
F=$KMS_MNT/cg/create-datakey
REQ="{\"key_id\":\"$id\"}"
code() { jq -r 'if type == "object" and has("error") then .error.error_code else "ok" end' <<<"$1"; }
# user_dek DIR / member_dek DIR: create-datakey's answer ("ok" or the error code) for the test
# user (no token, no group) / the group member, from a process in the cgroup of DIR.
user_dek() { code "$(in_cg "$1" user_call "$F" "$REQ")"; }
member_dek() { code "$(in_cg "$1" as_member "$KMS_PY" "$KMS_IO" rdwr "$F" "$REQ")"; }

# Before any binding: nobody's role.
assert_eq "$(user_dek "$CG_PARENT/app")" KMS.0301 "unbound cgroup"

# The binding: app and below, nothing else; no token needed.
kms_ctl project bind cg --cgroup "$APP" --role crypto || fail "project bind --cgroup"
assert_eq "$(user_dek "$CG_PARENT/app")" ok "user in the bound cgroup $APP"
assert_eq "$(user_dek "$CG_PARENT/app/child")" ok "user in the child cgroup $APP/child"
assert_eq "$(user_dek "$CG_PARENT/apps")" KMS.0301 "user in the sibling cgroup $PARENT/apps"
assert_eq "$(user_dek "$CG_PARENT")" KMS.0301 "user in the parent cgroup $PARENT"
assert_eq "$(user_dek "$CG_HOME")" KMS.0301 "user outside the test's cgroups"
r=$(in_cg "$CG_PARENT/app" user_call "$KMS_MNT/cg/create-key" '{"key_alias":"crypto-may-not"}')
assert_errcode "$r" KMS.0307
r=$(in_cg "$CG_PARENT/app" user_call "$KMS_MNT/cg/keys/$id/create-datakey")
assert_eq "$(jget "$r" .key_id)" "$id" "the key folder, open to the bound cgroup"
assert_contains "$(kms_ctl project show cg)" "cgroup $APP role crypto" "project show"
# How kmsfs sees the user there (user.kms.identity): its cgroup, the binding's role.
r=$(in_cg "$CG_PARENT/app/child" as_user getfattr --only-values -n user.kms.identity "$KMS_MNT/cg")
assert_eq "$(jget "$r" '"\(.cgroup) \(.binding.role) \(.role)"')" "$APP/child crypto crypto" \
	"user.kms.identity in $APP/child"
# Root in a container without a user namespace (a mount namespace of its own, as Docker's
# default): the host root's token does not apply there, the cgroup binding does.
cat >"$KMS_WORK/ct.sh" <<'CT'
"$KMS_PY" "$KMS_IO" rdwr "$1/create-datakey" "{\"key_id\":\"$2\"}"
CT
ct_dek() { code "$(in_cg "$1" kms_container "$KMS_MNT/cg" "$KMS_WORK/ct.sh" "$id")"; }
assert_eq "$(ct_dek "$CG_PARENT/app")" ok "root container in $APP"
assert_eq "$(ct_dek "$CG_PARENT/apps")" KMS.0301 "root container in $PARENT/apps"

# Paths no binding may name: refused with a sentence, exit status 2.
for bad in app/x / "$APP/" "$APP//x" "$APP/../x" "$APP/./x"; do
	rc=0
	out=$(kms_ctl project bind cg --cgroup "$bad" --role viewer 2>&1) || rc=$?
	assert_eq "$rc" 2 "exit status of bind --cgroup '$bad'"
	assert_contains "$out" "the cgroup path" "why bind --cgroup '$bad' is refused"
done
rc=0
out=$(kms_ctl project bind cg --cgroup "/$(head -c 1100 /dev/zero | tr '\0' a)" --role viewer 2>&1) || rc=$?
assert_eq "$rc" 2 "exit status of bind --cgroup with 1101 bytes"
assert_contains "$out" "longer than 1024 bytes"
rc=0
kms_ctl project bind cg --cgroup "$APP" --uid "$KMS_USER" --role viewer 2>/dev/null || rc=$?
assert_eq "$rc" 2 "bind --cgroup with --uid"

# A process that keeps a handle: it opens in app, then moves out, comes back; unbind at once.
coproc W { echo "$BASHPID" >"$CG_PARENT/app/cgroup.procs" &&
	kms_spawn "$KMS_UID" "$KMS_GID" "$KMS_PY" "$KMS_PYLIB/cgroup_binding.py" "$F" "$REQ"; }
kms_bg "$W_PID"
W_IN=${W[1]} W_OUT=${W[0]}
read -r -t 30 wpid <&"$W_OUT" || fail "the worker did not start"
# w CMD WANT WHAT: the worker's answer to CMD must be WANT.
w() {
	local out=
	echo "$1" >&"$W_IN"
	read -r -t 30 out <&"$W_OUT" || fail "the worker did not answer '$1' ($3)"
	assert_eq "$out" "$2" "$3"
}
w open ok "open in $APP"
w call ok "a request on the handle opened in $APP"
echo "$wpid" >"$CG_PARENT/apps/cgroup.procs"
assert_eq "$(sed -n 's/^0:://p' "/proc/$wpid/cgroup")" "$PARENT/apps" "the worker's cgroup after the move"
w call ok "a request on the handle opened in $APP, from $PARENT/apps"
w new KMS.0301 "a new open from $PARENT/apps"
echo "$wpid" >"$CG_PARENT/app/cgroup.procs"
w new ok "a new open back in $APP"
kms_ctl project unbind cg --cgroup "$APP" || fail "project unbind --cgroup"
w call KMS.0301 "a request on the open handle after unbind"
w new KMS.0301 "a new open after unbind"
assert_eq "$(user_dek "$CG_PARENT/app")" KMS.0301 "user in $APP after unbind"
assert_not_contains "$(kms_ctl project show cg)" "cgroup $APP" "project show after unbind"
kms_ctl project bind cg --cgroup "$APP" --role crypto || fail "project bind --cgroup again"
w call ok "the open handle after the binding is back"
echo quit >&"$W_IN"

# A token beats a cgroup binding, both ways.
vtok=$(kms_token cg --user vera --role viewer)
as_user setfattr -n user.kms.token -v "$vtok" "$KMS_MNT/cg" || fail "user setfattr viewer token"
assert_eq "$(user_dek "$CG_PARENT/app")" KMS.0307 "viewer token, crypto cgroup binding"
kms_ctl project bind cg --cgroup "$APP" --role viewer || fail "project bind --cgroup viewer"
atok=$(kms_token cg --user alice --role admin)
as_user setfattr -n user.kms.token -v "$atok" "$KMS_MNT/cg" || fail "user setfattr admin token"
assert_eq "$(user_dek "$CG_PARENT/app")" ok "admin token, viewer cgroup binding"
as_user setfattr -x user.kms.token "$KMS_MNT/cg" || fail "user setfattr -x"
assert_eq "$(user_dek "$CG_PARENT/app")" KMS.0307 "viewer cgroup binding, token removed"

# The deepest cgroup binding beats a shallower one and the uid binding, both ways.
kms_ctl project bind cg --cgroup "$APP" --role crypto || fail "project bind --cgroup crypto"
kms_ctl project bind cg --uid "$KMS_USER" --role viewer || fail "project bind --uid viewer"
assert_eq "$(user_dek "$CG_PARENT/app")" ok "crypto cgroup binding, viewer uid binding"
assert_eq "$(user_dek "$CG_HOME")" KMS.0307 "viewer uid binding outside the cgroups"
kms_ctl project bind cg --cgroup "$APP/child" --role viewer || fail "project bind --cgroup child"
kms_ctl project bind cg --uid "$KMS_USER" --role admin || fail "project bind --uid admin"
assert_eq "$(user_dek "$CG_PARENT/app/child")" KMS.0307 "viewer in $APP/child beats crypto in $APP and admin uid"
assert_eq "$(user_dek "$CG_PARENT/app")" ok "crypto in $APP"
assert_eq "$(user_dek "$CG_HOME")" ok "admin uid binding outside the cgroups"
kms_ctl project unbind cg --uid "$KMS_USER" || fail "project unbind --uid"

# The uid binding beats the group's; a cgroup binding beats both.
kms_ctl project bind cg --gid kmsitg --role admin || fail "project bind --gid admin"
kms_ctl project bind cg --uid kmsitm --role viewer || fail "project bind --uid kmsitm viewer"
assert_eq "$(member_dek "$CG_HOME")" KMS.0307 "viewer uid binding beats admin group binding"
assert_eq "$(member_dek "$CG_PARENT/app")" ok "crypto cgroup binding beats both"
kms_ctl project unbind cg --uid kmsitm || fail "project unbind --uid kmsitm"
assert_eq "$(member_dek "$CG_HOME")" ok "admin group binding alone"
kms_ctl project unbind cg --gid kmsitg || fail "project unbind --gid"
kms_ctl project unbind cg --cgroup "$APP/child" || fail "project unbind --cgroup child"
kms_ctl project unbind cg --cgroup "$APP" || fail "project unbind --cgroup"
assert_eq "$(user_dek "$CG_PARENT/app/child")" KMS.0301 "every binding removed"

# A deep cgroup: its path (about 4,900 bytes, made through relative paths: an absolute one would
# pass PATH_MAX) makes /proc/PID/cgroup longer than one page. kmsfs reads the file whole (a path
# cut short could name a shallower cgroup), and the audit line names it cut at a character with
# "[...]" (the request is audited and served, not refused).
kms_ctl project bind cg --cgroup "$APP" --role crypto || fail "project bind --cgroup for the deep one"
comp=$(head -c 240 /dev/zero | tr '\0' d)
(
	cd "$CG_PARENT/app" || exit 1
	for ((i = 0; i < 20; i++)); do mkdir "$comp$i" && cd "$comp$i" || exit 1; done
) || fail "mkdir of a deep cgroup"
# in_deep CMD...: CMD in a subshell moved into the deep cgroup first.
in_deep() {
	(
		cd "$CG_PARENT/app" || exit 99
		for ((i = 0; i < 20; i++)); do cd "$comp$i" || exit 99; done
		echo "$BASHPID" >cgroup.procs || exit 99
		cd / && "$@"
	)
}
DEEP=$(in_deep sed -n 's/^0:://p' /proc/self/cgroup)
[ "$(in_deep cat /proc/self/cgroup | wc -c)" -gt 4096 ] || fail "/proc/PID/cgroup of the deep cgroup fits one page"
r=$(in_deep as_user getfattr --only-values -n user.kms.identity "$KMS_MNT/cg")
assert_eq "$(jget "$r" .cgroup)" "$DEEP" "user.kms.identity names the whole deep path"
assert_eq "$(jget "$r" .binding.role)" crypto "the binding of $APP covers the deep cgroup"
assert_eq "$(code "$(in_deep user_call "$F" "$REQ")")" ok "user in the deep cgroup"
line=$(grep -F "\"cgroup\":\"$APP/$comp" "$KMS_WORK/audit.log" | tail -n 1)
[ -n "$line" ] || fail "no audit line names the deep cgroup"
assert_contains "$line" "[...]\",\"project\":\"cg\"" "the deep path, cut and marked in the audit line"
assert_eq "$(jq -r .status <<<"$line")" 200 "the deep cgroup's request in the audit line"
kms_ctl project unbind cg --cgroup "$APP" || fail "project unbind --cgroup after the deep one"
kms_umount

# PostgreSQL: a bind with host A's kmsctl is seen by daemon B within 1 s, and the unbind too. The
# probes run as root in app, which has no token on B.
# shellcheck source=tests/integration/lib/multihost.sh
source "$KMS_LIB/multihost.sh"
kms_mh_pg
kms_mh_hosts A B
kms_mh_start A
kms_mh_start B
kms_mh_login A mh "$(kms_mh_token A mh)" || fail "login on host A"
r=$(kms_mh_call A mh/create-key '{"key_alias":"pg"}')
assert_ok "$r"
pkey=$(jget "$r" .key_info.key_id)
probe="$(jq -nc --arg f "$(kms_mh_mnt B)/mh/create-datakey" --arg k "$pkey" \
	'{file: $f, req: {key_id: $k}}')"
ctl_cmd() {
	printf '%s\n' "$@" | jq -R . | jq -sc --arg k "$KMSCTL" --arg s "$(kms_mh_state A)" \
		--arg u "$KMS_MH_URI" '{cmd: ([$k, "--state", $s, "--store", $u, "project"] + .)}'
}
propagate() {
	local what=$1 out
	shift
	out=$(in_cg "$CG_PARENT/app" kms_py multihost propagate 1 "$@") || fail "$what: $out"
	log "$what: $(tr '\n' ';' <<<"$out")"
}
assert_errcode "$(in_cg "$CG_PARENT/app" kms_mh_call B mh/create-datakey "{\"key_id\":\"$pkey\"}")" KMS.0301
propagate "bind --cgroup on A, seen on B" "$(ctl_cmd bind mh --cgroup "$APP" --role crypto)" \
	"$(jq -c '. + {expect: "plain_text"}' <<<"$probe")"
propagate "unbind --cgroup on A, seen on B" "$(ctl_cmd unbind mh --cgroup "$APP")" \
	"$(jq -c '. + {expect: "KMS.0301"}' <<<"$probe")"
kms_mh_stop A
kms_mh_stop B
