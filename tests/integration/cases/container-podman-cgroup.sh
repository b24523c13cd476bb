#!/bin/bash
# A cgroup binding for real containers (podman + runc, lib/podman.sh; issue 15.2): containers run
# as root without a user namespace (the host's uid 0, as Docker's default) under a test-owned
# cgroup parent (--cgroup-parent), with the project folder on /run/kms. No token and no uid
# binding: `kmsctl project bind P --cgroup PARENT/app` lets every container started under
# PARENT/app make and unwrap data keys through the key folder (each container has a cgroup of its
# own below it: PARENT/app/libpod-<id>), while a container under PARENT/other cannot even look
# into keys/ (EACCES). After `project unbind` neither can. The cgroups runc made (in every
# hierarchy) are removed at the end, also when the case fails.
source "$(dirname "$0")/../lib/common.sh"
source "$KMS_LIB/podman.sh"
kms_setup
ct_setup

# Every cgroup mount (v1 and v2): a container's cgroup parent is made in each of them.
CG_NAME=kmsfs-ct.$$.$RANDOM
cg_mounts() {
	awk '{for (i = 7; i < NF; i++) if ($i == "-") {
		if ($(i + 1) == "cgroup2" || $(i + 1) == "cgroup") print $5; break}}' /proc/self/mountinfo
}
read -r CG < <(awk '{for (i = 7; i < NF; i++) if ($i == "-") {
	if ($(i + 1) == "cgroup2" && $4 == "/") print $5; break}}' /proc/self/mountinfo | head -n 1) || true
if [ -z "${CG:-}" ]; then skip "no cgroup v2 hierarchy mounted at its root in /proc/self/mountinfo"; fi
# The EXIT trap's part (after the containers are gone): the parent in every hierarchy, deepest
# first, processes moved to the root cgroup first.
cg_cleanup() {
	local m d p i left
	for ((i = 0; i < 50; i++)); do
		left=0
		while read -r m; do
			[ -d "$m/$CG_NAME" ] || continue
			while read -r d; do
				while read -r p; do echo "$p" >"$m/cgroup.procs"; done <"$d/cgroup.procs" 2>/dev/null
				rmdir "$d" 2>/dev/null
			done < <(find "$m/$CG_NAME" -depth -type d)
			[ ! -d "$m/$CG_NAME" ] || left=1
		done < <(cg_mounts)
		[ "$left" -eq 1 ] || return 0
		sleep 0.1
	done
	echo "FAIL: $KMS_CASE: could not remove the cgroups $CG_NAME" >&2
	return 1
}
KMS_CLEANUP_HOOKS+=(cg_cleanup)
mkdir "$CG/$CG_NAME" || skip "cannot create a cgroup in $CG"

id=$(ct_new_key pc)
kms_mount allow_other
# ctr PARENT ARGS...: a container under cgroup parent /CG_NAME/PARENT with the project folder on
# /run/kms and the scripts on /t.
ctr() {
	local parent=/$CG_NAME/$1
	shift
	ct_run --cgroup-parent "$parent" -v "$KMS_MNT/pc:/run/kms:rslave" -v "$CT_SCRIPTS:/t:ro" "$@"
}
APP=/$CG_NAME/app

# The cgroup of a container under app, as the daemon reads it (the host's /proc).
cname=kmsfs-cg-$$
ctr app -d --name "$cname" "$CT_IMAGE" sleep 60 >/dev/null || fail "podman run -d"
cpid=$("${PODMAN[@]}" inspect -f '{{.State.Pid}}' "$cname") || fail "podman inspect"
path=$(sed -n 's/^0:://p' "/proc/$cpid/cgroup")
[[ $path == "$APP/"* ]] || fail "the container's cgroup is '$path', not below $APP"
"${PODMAN[@]}" rm -f -t 0 "$cname" >/dev/null 2>&1

# Unbound: root in the container has no identity (its own mount namespace: no token of the
# host's either).
out=$(ctr app "$CT_IMAGE" cat "/run/kms/keys/$id/create-datakey" 2>&1) &&
	fail "a container without a binding read the key folder: $out"
assert_contains "$out" "ermission denied" "container under $APP before the binding"

kms_ctl project bind pc --cgroup "$APP" --role crypto || fail "project bind --cgroup"
out=$(ctr app "$CT_IMAGE" sh /t/roundtrip.sh "/run/kms/keys/$id" 2>&1) || fail "podman run: $out"
ct_roundtrip_check "container under $APP" "$out" "$id"
out=$(ctr app "$CT_IMAGE" cat /run/kms/create-key 2>&1) || fail "podman run: $out"
assert_errcode "$out" KMS.0307
out=$(ctr other "$CT_IMAGE" cat "/run/kms/keys/$id/create-datakey" 2>&1) &&
	fail "a container under /$CG_NAME/other read the key folder: $out"
assert_contains "$out" "ermission denied" "container under /$CG_NAME/other"

kms_ctl project unbind pc --cgroup "$APP" || fail "project unbind --cgroup"
out=$(ctr app "$CT_IMAGE" cat "/run/kms/keys/$id/create-datakey" 2>&1) &&
	fail "a container under $APP read the key folder after unbind: $out"
assert_contains "$out" "ermission denied" "container under $APP after unbind"
kms_umount
