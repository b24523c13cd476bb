# shellcheck shell=bash
# podman.sh - real containers for the container-podman*.sh cases (sourced after common.sh).
#
# A case runs Debian's podman on a tiny image made here from Debian's busybox-static (`podman
# import` of a tar holding /bin/busybox and its applet links: no registry is needed). Everything
# podman keeps lives in a directory of this case (--root, --runroot, --tmpdir, the network
# configuration), never in the host's /var/lib/containers, and is removed when the case ends,
# whatever its status. Containers run with runc and explicit rlimits: crun refuses hosts whose
# cgroups are in hybrid mode, and podman's default RLIMIT_NOFILE/NPROC (1048576) exceed the hard
# limits of some hosts (runc then fails with "error setting rlimit type 7").
#
# ct_setup             after kms_setup: skip (77) unless podman can run a container here; build
#                      the image; PODMAN (array) is podman with this case's storage
# ct_run ARGS...       podman run --rm with the options every container needs, then ARGS
# ct_umount_at_exit D  lazily unmount D when the case ends (after the containers and the daemon)
# ct_new_key P         kms_init, a key with alias app in project P (kmsctl call: the cases use
#                      bindings, not tokens); prints its id
# ct_roundtrip_check WHAT OUT KEY_ID
#                      judge what `sh /t/roundtrip.sh DIR` printed in a container
# CT_IMAGE             the image's name
# CT_SCRIPTS           $KMS_WORK/ct, given to containers as /t (read-only): roundtrip.sh

CT_IMAGE=localhost/kmsfs-busybox:test
CT_SCRIPTS=
CT_DIR=
CT_UMOUNTS=()
# vfs copies layers: no mounts, nothing to set up, fine for a 2 MB image; overlay for big builds
CT_STORAGE_DRIVER=${CT_STORAGE_DRIVER:-vfs}
PODMAN=(podman)
CT_RUN_OPTS=(--rm --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024)

# ct_image_tar OUT: a tar of a root file system with the static busybox and its applets.
ct_image_tar() {
	local root=$CT_DIR/rootfs a
	mkdir -p "$root/bin" "$root/tmp" "$root/etc" "$root/proc" "$root/sys" "$root/dev" "$root/run"
	chmod 1777 "$root/tmp"
	cp /bin/busybox "$root/bin/busybox"
	for a in $("$root/bin/busybox" --list); do
		[ "$a" == busybox ] || ln -s busybox "$root/bin/$a"
	done
	echo 'root:x:0:0:root:/:/bin/sh' >"$root/etc/passwd"
	echo 'root:x:0:' >"$root/etc/group"
	tar -C "$root" -cf "$1" .
	rm -rf "$root"
}

# ct_setup: see above. Skips with podman's own error when a container cannot start here.
ct_setup() {
	local out
	command -v podman >/dev/null || skip "podman missing (apt-get install podman runc)"
	command -v runc >/dev/null || skip "runc missing (apt-get install runc)"
	[ -x /bin/busybox ] || skip "busybox missing (apt-get install busybox-static)"
	out=$(LC_ALL=C ldd /bin/busybox 2>&1) || true
	[[ "$out" == *"not a dynamic executable"* ]] ||
		skip "/bin/busybox is not static (apt-get install busybox-static)"
	# podman refuses a run root longer than 50 characters: a short directory, in the run's
	# temporary directory when its name leaves room.
	local top=${KMS_TMPDIR:-/tmp}
	[ "${#top}" -le 30 ] || top=/tmp
	CT_DIR=$(mktemp -d "$top/pm.XXXXXX")
	trap ct_cleanup EXIT
	PODMAN=(podman --root "$CT_DIR/root" --runroot "$CT_DIR/run" --tmpdir "$CT_DIR/tmp"
		--network-config-dir "$CT_DIR/net" --storage-driver "$CT_STORAGE_DRIVER" --events-backend none
		--cgroup-manager cgroupfs --runtime runc)
	ct_image_tar "$CT_DIR/image.tar"
	ct_scripts
	out=$("${PODMAN[@]}" import -q "$CT_DIR/image.tar" "$CT_IMAGE" 2>&1) ||
		skip "podman import failed: $(tail -n 1 <<<"$out")"
	out=$(ct_run "$CT_IMAGE" echo container-ok 2>&1) || true
	[[ "$out" == *container-ok* ]] || skip "podman cannot run a container here: $(tail -n 1 <<<"$out")"
}

# ct_scripts: the scripts containers run (busybox sh), in CT_SCRIPTS.
ct_scripts() {
	CT_SCRIPTS=$KMS_WORK/ct
	mkdir -p "$CT_SCRIPTS"
	# roundtrip.sh DIR: in the key folder DIR, a data key made with `cat create-datakey` (an
	# empty request), then unwrapped twice: `echo REQUEST > decrypt-datakey; cat decrypt-datakey`
	# and the same with dd. Prints one line per step; the host judges them (ct_roundtrip_check).
	cat >"$CT_SCRIPTS/roundtrip.sh" <<'EOS'
d=$1
r=$(cat "$d/create-datakey" 2>&1)
echo "create $r"
ct=$(echo "$r" | sed -n 's/.*"cipher_text":"\([0-9A-F]*\)".*/\1/p')
req="{\"cipher_text\":\"$ct\",\"datakey_cipher_length\":\"64\"}"
echo "$req" >"$d/decrypt-datakey"
echo "echo $(cat "$d/decrypt-datakey" 2>&1)"
echo "$req" >/tmp/req
dd if=/tmp/req of="$d/decrypt-datakey" 2>/dev/null
echo "dd $(dd if="$d/decrypt-datakey" 2>/dev/null)"
EOS
}

# ct_roundtrip_check WHAT OUT KEY_ID: OUT (roundtrip.sh's lines) shows a data key of KEY_ID made
# and unwrapped to the same plaintext with echo/cat and with dd; remembers the DEK (leak scan).
ct_roundtrip_check() {
	local what=$1 out=$2 id=$3 c e d pt
	c=$(sed -n 's/^create //p' <<<"$out")
	e=$(sed -n 's/^echo //p' <<<"$out")
	d=$(sed -n 's/^dd //p' <<<"$out")
	kms_record "$c"
	printf '%s' "$c" | jq -e '.plain_text | length == 128' >/dev/null 2>&1 ||
		fail "$what: cat create-datakey in the container: $out"
	pt=$(jget "$c" .plain_text)
	assert_eq "$(jget "$c" .key_id)" "$id" "$what: key_id of create-datakey"
	assert_eq "$(printf '%s' "$e" | jq -r .data_key 2>/dev/null)" "$pt" \
		"$what: decrypt-datakey with echo > and cat in the container ($e)"
	assert_eq "$(printf '%s' "$d" | jq -r .data_key 2>/dev/null)" "$pt" \
		"$what: decrypt-datakey with dd in the container ($d)"
}

# ct_run ARGS...: podman run --rm --network none (with the rlimits above) ARGS... (options,
# image, command). Containers get no network: kmsfs is a file system.
ct_run() { "${PODMAN[@]}" run "${CT_RUN_OPTS[@]}" "$@"; }

ct_umount_at_exit() { CT_UMOUNTS+=("$1"); }

ct_new_key() {
	local r
	kms_init
	r=$(kms_ctl call "$1" create-key '{"key_alias":"app"}') || fail "kmsctl call create-key: $r"
	jget "$r" .key_info.key_id
}

# The EXIT trap: remove the containers (a failed case may leave one running), stop the daemon
# (a mount below one of CT_UMOUNTS must go first), unmount CT_UMOUNTS, remove the podman
# directory, then common.sh's kms_cleanup with the case's status.
ct_cleanup() {
	local rc=$? i
	set +e
	trap - EXIT
	if [ -n "$CT_DIR" ]; then
		"${PODMAN[@]}" rm --all --force --time 0 >/dev/null 2>&1
		if [ ${#CT_UMOUNTS[@]} -gt 0 ]; then
			kms_daemon_kill "$KMS_PID" "$KMS_MNT"
			# shellcheck disable=SC2034 # common.sh's: the daemon is gone
			KMS_PID='' KMS_PID_CHILD=0
			for ((i = ${#CT_UMOUNTS[@]} - 1; i >= 0; i--)); do
				umount -l "${CT_UMOUNTS[$i]}" 2>/dev/null
			done
		fi
		# podman's per-container mounts (shm) under its directory, should any remain
		awk -v top="$CT_DIR/" 'index($5, top) == 1 {print $5}' /proc/self/mountinfo | sort -r |
			while read -r i; do umount -l "$i"; done
		rm -rf "$CT_DIR"
	fi
	(exit "$rc")
	kms_cleanup
}
