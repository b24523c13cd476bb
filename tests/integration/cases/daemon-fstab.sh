#!/bin/bash
# Mounted by mount(8) (docs/service.md, fstab): `mount -t fuse.kmsfs kmsfs MNT -o state=...` and
# `mount -T FSTAB MNT` with the documented fstab line work. mount.fuse3 runs
# `kmsfs SOURCE MNT -o OPTIONS`: kmsfs takes the source (the fsname in /proc/mounts; an absolute
# path is the state directory when no state= is given), ignores mount-only options (nofail,
# _netdev, noauto, x-systemd.*) and the dev,suid that mount.fuse3 adds (the mount is nodev,nosuid),
# serves, and umount stops it. A third word is refused.
# mount(8) runs mount.fuse3 with a PATH of its own (/usr/local/sbin:/usr/local/bin:/usr/sbin:...),
# so the case runs in a private mount namespace where /usr/local/sbin holds the build's kmsfs.
source "$(dirname "$0")/../lib/common.sh"
if [ "${KMS_FSTAB_NS:-}" != 1 ]; then
	[ "$(id -u)" -eq 0 ] || skip "needs root (mount)"
	command -v unshare >/dev/null || skip "unshare missing (util-linux)"
	unshare -m --propagation private true 2>/dev/null || skip "cannot make a mount namespace (unshare -m)"
	KMS_FSTAB_NS=1 exec unshare -m --propagation private "$BASH" "$0" "$@"
fi
kms_setup mount umount
[ -x /sbin/mount.fuse3 ] || [ -x /usr/sbin/mount.fuse3 ] || skip "mount.fuse3 missing (apt-get install fuse3)"
[ -d /usr/local/sbin ] || skip "no /usr/local/sbin to put kmsfs in"
mkdir "$KMS_WORK/bin"
ln -s "$(readlink -f "$KMSFS")" "$KMS_WORK/bin/kmsfs"
mount --bind "$KMS_WORK/bin" /usr/local/sbin || skip "cannot bind-mount over /usr/local/sbin"
# mount(8) keeps x-* options in /run/mount/utab: this namespace's own, not the host's.
if [ -d /run/mount ]; then mount -t tmpfs -o mode=0755 kmsfs-it-utab /run/mount; fi
tok=$(kms_token fs)

# served_by SOURCE: the mount on KMS_MNT is kmsfs's, named SOURCE, nodev,nosuid,allow_other, and
# it serves (a key made through it); KMS_PID is the daemon.
served_by() {
	local src mp type opts o
	KMS_PID=$(kms_find_daemon "$KMS_MNT") || fail "no kmsfs process serves $KMS_MNT"
	echo "$KMS_PID" >"$KMS_WORK/daemon.pid"
	read -r src mp type opts _ < <(awk -v mp="$KMS_MNT" '$2 == mp' /proc/mounts)
	assert_eq "$src $mp $type" "$1 $KMS_MNT fuse.kmsfs" "the /proc/mounts line"
	for o in nodev nosuid allow_other; do
		[[ ",$opts," == *",$o,"* ]] || fail "mount options '$opts' lack $o"
	done
	kms_login fs "$tok"
	kms_create_key fs "key-$RANDOM" >/dev/null
}

# unmount: umount(8), and the daemon exits.
unmount() {
	local err
	err=$(umount "$KMS_MNT" 2>&1) || fail "umount $KMS_MNT: $err"
	kms_wait_exit "$KMS_PID" || fail "kmsfs still runs 10 s after umount"
	KMS_PID=
}

log "mount -t fuse.kmsfs kmsfs MNT -o state=...,mount-only options"
opts="state=$KMS_STATE,allow_other,nofail,_netdev,noauto,x-systemd.requires=kmsfs-it.service"
err=$(mount -t fuse.kmsfs kmsfs "$KMS_MNT" -o "$opts,log=$KMS_LOG" 2>&1) ||
	fail "mount -t fuse.kmsfs: $err"
served_by kmsfs
unmount

log "mount -T FSTAB MNT, with the line of docs/service.md"
cat >"$KMS_WORK/fstab" <<EOF
# the line docs/service.md gives, with this case's paths (and its log)
kmsfs $KMS_MNT fuse.kmsfs state=$KMS_STATE,allow_other,nofail,log=$KMS_LOG 0 0
EOF
err=$(mount -T "$KMS_WORK/fstab" "$KMS_MNT" 2>&1) || fail "mount -T fstab: $err"
served_by kmsfs
unmount

log "the state directory as the source"
cat >"$KMS_WORK/fstab2" <<EOF
$KMS_STATE $KMS_MNT fuse.kmsfs allow_other,nofail,_netdev,x-systemd.automount,log=$KMS_LOG 0 0
EOF
err=$(mount -T "$KMS_WORK/fstab2" "$KMS_MNT" 2>&1) || fail "mount -T fstab (source = state): $err"
served_by "$KMS_STATE"
unmount

log "a third word"
rc=0
err=$("$KMSFS" kmsfs "$KMS_MNT" extra -o "state=$KMS_STATE" 2>&1) || rc=$?
assert_eq "$rc" 1 "exit status of kmsfs SOURCE MNT EXTRA"
assert_contains "$err" "unexpected argument 'extra'" "kmsfs SOURCE MNT EXTRA"
kms_mounted "$KMS_MNT" && fail "kmsfs SOURCE MNT EXTRA mounted"
exit 0
