#!/bin/bash
# The systemd units (systemd/, docs/service.md): `systemd-analyze verify` accepts kmsfs.service
# and an instance of kmsfs@.service without a word (it warns, exit 0, about a setting it cannot
# parse), run on copies whose ExecStart is the build's kmsfs. They start kmsfs in the foreground
# as Type=notify (Type=exec in a build without libsystemd), with the state directory 0700 and the
# limits kmsfs needs, and no setting that makes a mount namespace: a mount made in one never
# reaches the host (systemd.exec(5), MountFlags=). meson installs both into the unit directory.
source "$(dirname "$0")/../lib/common.sh"
kms_setup
command -v systemd-analyze >/dev/null || skip "systemd-analyze missing (apt-get install systemd)"
units=$KMS_BUILD/systemd
[ -f "$units/kmsfs.service" ] && [ -f "$units/kmsfs@.service" ] || fail "no units in $units"

# A unit known to be good must pass first: otherwise systemd-analyze cannot work here at all.
mkdir "$KMS_WORK/units"
printf '[Service]\nType=oneshot\nExecStart=/bin/true\n' >"$KMS_WORK/units/kmsfs-probe.service"
err=$(cd "$KMS_WORK/units" && systemd-analyze verify --man=no ./kmsfs-probe.service 2>&1) ||
	skip "systemd-analyze verify cannot run here: $err"
[ -z "$err" ] || skip "systemd-analyze verify warns about a trivial unit here: $err"

bindir=$(sed -n 's|^ExecStart=\(/.*\)/kmsfs .*|\1|p' "$units/kmsfs.service")
[ -n "$bindir" ] || fail "kmsfs.service: no ExecStart=/.../kmsfs"
cp "$units/kmsfs.service" "$KMS_WORK/units/kmsfs.service"
cp "$units/kmsfs@.service" "$KMS_WORK/units/kmsfs@srv-kms.service"
sed -i "s|^ExecStart=$bindir/kmsfs |ExecStart=$KMSFS |" "$KMS_WORK/units"/kmsfs*.service
if [[ "$(ldd "$KMSFS")" == *libsystemd* ]]; then type=notify; else type=exec; fi
for u in kmsfs.service kmsfs@srv-kms.service; do
	f=$KMS_WORK/units/$u
	err=$(cd "$KMS_WORK/units" && systemd-analyze verify --man=no "./$u" 2>&1) ||
		fail "systemd-analyze verify $u: $err"
	[ -z "$err" ] || fail "systemd-analyze verify $u warns: $err"
	for want in "Type=$type" StateDirectoryMode=0700 LimitMEMLOCK=infinity NoNewPrivileges=yes \
		Restart=on-failure "DeviceAllow=/dev/fuse rw"; do
		grep -qx "$want" "$f" || fail "$u lacks $want"
	done
	grep -q '^CapabilityBoundingSet=.*CAP_SYS_ADMIN' "$f" || fail "$u: no CAP_SYS_ADMIN to mount"
	grep -qE "^ExecStart=$KMSFS [^ ]+ -f -o state=%S/" "$f" || fail "$u: ExecStart is not kmsfs MNT -f"
	if grep -E '^(Private(Tmp|Devices|Mounts|Network|IPC|Users)|Protect(System|Home|Kernel[A-Za-z]*|ControlGroups|Proc|Hostname)|ProcSubset|(ReadWrite|ReadOnly|Inaccessible|Exec|NoExec)Paths|TemporaryFileSystem|Bind(ReadOnly)?Paths|RootDirectory|RootImage|MountAPIVFS|DynamicUser|MountFlags)=' "$f"; then
		fail "$u makes a mount namespace: its mount would never reach the host"
	fi
done
assert_contains "$(grep '^ExecStart=' "$KMS_WORK/units/kmsfs.service")" " /kms -f " "kmsfs.service mount point"
assert_contains "$(grep '^StateDirectory=' "$KMS_WORK/units/kmsfs@srv-kms.service")" "kmsfs-%i" \
	"kmsfs@.service state directory"

# meson installs both units: into -Dsystemdunitdir=, else systemd's systemdsystemunitdir.
command -v meson >/dev/null || skip "meson missing: cannot check what it installs"
dir=$(meson introspect "$KMS_BUILD" --buildoptions | jq -r '.[] | select(.name == "systemdunitdir") | .value')
[ -n "$dir" ] || dir=$(pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null || echo /lib/systemd/system)
inst=$(meson introspect "$KMS_BUILD" --installed) || fail "meson introspect --installed"
for u in kmsfs.service kmsfs@.service; do
	assert_eq "$(jq -r --arg f "$units/$u" '.[$f]' <<<"$inst")" "$dir/$u" "where meson installs $u"
done
exit 0
