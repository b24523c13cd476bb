#!/bin/bash
# Real containers across a daemon restart (podman + runc, a busybox image; lib/podman.sh), with
# the layout of docs/operations.md "Containers": kmsfs mounted on SHARED/mnt, SHARED a shared
# bind mount of itself, and a container given SHARED with `-v SHARED:/run/kms:rslave`. It makes
# and unwraps a data key (cat, echo >, dd) through /run/kms/mnt/P/keys/K; the daemon is stopped
# (SIGTERM, as systemctl restart does), and meanwhile the container sees an empty mount point;
# a new daemon starts, and the same container, still running, works again: the new mount
# propagated into it. A second container given the key folder itself (`-v /kms/P/keys/K:/run/kms`)
# sees "Transport endpoint is not connected" from the stop on, as the docs say. Identities are
# `project bind`s, which the key database keeps across restarts.
source "$(dirname "$0")/../lib/common.sh"
source "$KMS_LIB/podman.sh"
kms_setup
ct_setup
id=$(ct_new_key cr)
kms_ctl project bind cr --uid root --role viewer || fail "project bind root"
kms_ctl project bind cr --uid 2000 --role crypto || fail "project bind 2000"

shared=$KMS_WORK/shared
mkdir -p "$shared/mnt"
mount --bind "$shared" "$shared" || skip "cannot bind-mount $shared on itself"
ct_umount_at_exit "$shared"
# its own peer group, whatever the propagation of the mount it sits on
mount --make-private "$shared"
mount --make-shared "$shared"
KMS_MNT=$shared/mnt
kms_mount allow_other

# Both containers run one step per go.N file that appears in /box, writing NAME.out.N, then
# NAME.done.N: 1 before the restart, 2 while no daemon serves, 3 after the restart.
box=$KMS_WORK/box
mkdir -m 0777 "$box"
cat >"$CT_SCRIPTS/steps.sh" <<'EOS'
name=$1 k=$2
for step in 1 2 3; do
	while [ ! -e "/box/go.$step" ]; do sleep 0.05; done
	case $name.$step in
	parent.2) echo "ls:[$(ls -A /run/kms/mnt)]"; cat "$k/describe-key" ;;
	parent.*) sh /t/roundtrip.sh "$k" ;;
	folder.*) cat "$k/describe-key" ;;
	esac >"/box/$name.out.$step" 2>&1
	touch "/box/$name.done.$step"
done
EOS
ct_run --user 2000:2000 -v "$shared:/run/kms:rslave" -v "$CT_SCRIPTS:/t:ro" -v "$box:/box" \
	"$CT_IMAGE" sh /t/steps.sh parent "/run/kms/mnt/cr/keys/$id" >"$KMS_WORK/parent.log" 2>&1 &
parent=$!
kms_bg "$parent"
ct_run --user 2000:2000 -v "$KMS_MNT/cr/keys/$id:/run/kms:rslave" -v "$CT_SCRIPTS:/t:ro" \
	-v "$box:/box" "$CT_IMAGE" sh /t/steps.sh folder /run/kms >"$KMS_WORK/folder.log" 2>&1 &
folder=$!
kms_bg "$folder"

# step N: let both containers run step N and wait (30 s at most) until they are done.
step() {
	local i
	touch "$box/go.$1"
	for ((i = 0; i < 300; i++)); do
		[ -e "$box/parent.done.$1" ] && [ -e "$box/folder.done.$1" ] && return 0
		sleep 0.1
	done
	fail "step $1: the containers did not finish: $(cat "$KMS_WORK/parent.log" "$KMS_WORK/folder.log")"
}

step 1
ct_roundtrip_check "before the restart, shared parent" "$(cat "$box/parent.out.1")" "$id"
out=$(cat "$box/folder.out.1")
assert_eq "$(jget "$out" .key_info.key_id)" "$id" "before the restart, key folder: describe-key"

# The restart: SIGTERM (the daemon unmounts and exits 0), then a new daemon on the same mount.
kill -TERM "$KMS_PID"
rc=0
wait "$KMS_PID" || rc=$?
assert_eq "$rc" 0 "exit status after SIGTERM"
KMS_PID='' KMS_PID_CHILD=0
kms_mounted "$KMS_MNT" && fail "SIGTERM left the mount on $KMS_MNT"
step 2
out=$(cat "$box/parent.out.2")
assert_contains "$out" "No such file or directory" "while no daemon serves, shared parent"
assert_contains "$out" "ls:[]" "while no daemon serves, the mount point in the container"
assert_contains "$(cat "$box/folder.out.2")" "not connected" "while no daemon serves, key folder"
kms_mount allow_other

step 3
ct_roundtrip_check "after the restart, shared parent" "$(cat "$box/parent.out.3")" "$id"
assert_contains "$(cat "$box/folder.out.3")" "not connected" "after the restart, key folder"
wait "$parent" || fail "the shared-parent container: $(cat "$KMS_WORK/parent.log")"
wait "$folder" || fail "the key-folder container: $(cat "$KMS_WORK/folder.log")"
kms_umount
