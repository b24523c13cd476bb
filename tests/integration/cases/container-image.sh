#!/bin/bash
# The Containerfile (docs/kubernetes.md). By default: it parses. `podman build` on a stand-in
# base image (the busybox image of lib/podman.sh) must read both stages and reach the first RUN
# step, which then fails for want of apt-get: nothing is downloaded.
#
# KMS_IMAGE_BUILD=1: the full build, outside the default run (it needs Debian's mirror and some
# minutes: here about 2.5 for the base and 2 for the build, on 2 busy cores), e.g.
#   KMS_IMAGE_BUILD=1 meson test -C build --suite integration container-image --timeout-multiplier 6
# A Debian 12 base is made with debootstrap (or imported from KMS_DEBIAN_TAR, a tar of a Debian 12
# root file system), the image is built, and run as the DaemonSet runs it: /dev/fuse,
# CAP_SYS_ADMIN (and CAP_IPC_LOCK), the state directory, and a shared directory with rshared
# propagation. Its mount must reach the host; `kmsctl status` in the container exits 0; a busybox
# container (uid 2000, bound) given the shared directory with rslave makes and unwraps a data key
# through the alias; `podman stop` makes kmsfs unmount (also on the host) and exit 0.
source "$(dirname "$0")/../lib/common.sh"
source "$KMS_LIB/podman.sh"
# the full build: overlay storage (vfs would copy every layer), a watchdog that waits for it
[ "${KMS_IMAGE_BUILD:-0}" != 1 ] || { CT_STORAGE_DRIVER=overlay; : "${KMS_WATCHDOG:=1500}"; }
kms_setup
ct_setup

if [ "${KMS_IMAGE_BUILD:-0}" != 1 ]; then
	out=$("${PODMAN[@]}" build --pull=never --network none --ulimit nofile=1024:1024 \
		--ulimit nproc=1024:1024 --build-arg "DEBIAN=$CT_IMAGE" -t localhost/kmsfs:parse \
		-f "$KMS_SRC/Containerfile" "$KMS_SRC" 2>&1) && fail "the build passed on a busybox base: $out"
	assert_contains "$out" "[1/2] STEP 1/" "podman build: the first of two stages"
	assert_contains "$out" "[1/2] STEP 2/" "podman build: the first RUN step"
	assert_contains "$out" "apt-get: not found" "podman build: the RUN step ran on the stand-in base"
	log "Containerfile parsed (KMS_IMAGE_BUILD=1 for the full build)"
	exit 0
fi

# The Debian 12 base image.
base=localhost/debian:12
if [ -n "${KMS_DEBIAN_TAR:-}" ]; then
	"${PODMAN[@]}" import -q "$KMS_DEBIAN_TAR" "$base" >/dev/null || fail "podman import $KMS_DEBIAN_TAR"
else
	command -v debootstrap >/dev/null || skip "debootstrap missing (or give KMS_DEBIAN_TAR)"
	root=$CT_DIR/debian
	debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian \
		>"$KMS_WORK/debootstrap.log" 2>&1 || fail "debootstrap: $(tail -n 5 "$KMS_WORK/debootstrap.log")"
	tar -C "$root" -cf "$CT_DIR/debian.tar" . && rm -rf "$root"
	"${PODMAN[@]}" import -q "$CT_DIR/debian.tar" "$base" >/dev/null || fail "podman import of the base"
	rm -f "$CT_DIR/debian.tar"
fi

image=localhost/kmsfs:test
"${PODMAN[@]}" build --pull=never --network host --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
	--build-arg "DEBIAN=$base" -t "$image" -f "$KMS_SRC/Containerfile" "$KMS_SRC" \
	>"$KMS_WORK/build.log" 2>&1 || fail "podman build: $(tail -n 20 "$KMS_WORK/build.log")"

# kmsfs in its container, as the DaemonSet runs it (same paths inside and on the host; IPC_LOCK
# lets mlockall ignore RLIMIT_MEMLOCK, as in the privileged pod).
shared=$KMS_WORK/shared
mkdir -p "$shared/mnt" "$KMS_STATE"
chmod 0700 "$KMS_STATE"
mount --bind "$shared" "$shared"
ct_umount_at_exit "$shared"
mount --make-private "$shared"
mount --make-shared "$shared"
KMS_MNT=$shared/mnt
"${PODMAN[@]}" run -d --name kmsfs --network none --ulimit nofile=1024:1024 \
	--ulimit nproc=1024:1024 --device /dev/fuse --cap-add SYS_ADMIN --cap-add IPC_LOCK \
	-v "$KMS_STATE:/var/lib/kmsfs" -v "$shared:/srv/kms:rshared" \
	"$image" /srv/kms/mnt -f -o state=/var/lib/kmsfs,allow_other >/dev/null || fail "podman run kmsfs"
kctl() { "${PODMAN[@]}" exec kmsfs kmsctl --state /var/lib/kmsfs "$@"; }
for ((i = 0; i < 100; i++)); do
	[ "$(stat -f -c %t "$KMS_MNT" 2>/dev/null)" == 65735546 ] && break
	sleep 0.1
done
[ "$(stat -f -c %t "$KMS_MNT")" == 65735546 ] ||
	fail "the mount of the kmsfs container did not reach the host: $("${PODMAN[@]}" logs kmsfs 2>&1)"
out=$(kctl status 2>&1) || fail "kmsctl status in the kmsfs container: $out"
r=$(kctl call ci create-key '{"key_alias":"app"}') || fail "kmsctl call create-key: $r"
id=$(jget "$r" .key_info.key_id)
kctl project bind ci --uid 2000 --role crypto || fail "project bind"
out=$(ct_run --user 2000:2000 -v "$shared:/run/kms:rslave" -v "$CT_SCRIPTS:/t:ro" "$CT_IMAGE" \
	sh /t/roundtrip.sh "/run/kms/mnt/ci/aliases/app" 2>&1) || fail "podman run: $out"
ct_roundtrip_check "through the kmsfs container's mount" "$out" "$id"

"${PODMAN[@]}" stop -t 10 kmsfs >/dev/null || fail "podman stop kmsfs"
[ "$("${PODMAN[@]}" inspect -f '{{.State.ExitCode}}' kmsfs)" == 0 ] ||
	fail "kmsfs exited with $("${PODMAN[@]}" inspect -f '{{.State.ExitCode}}' kmsfs): $("${PODMAN[@]}" logs kmsfs 2>&1)"
kms_mounted "$KMS_MNT" && fail "podman stop left the mount on the host"
assert_not_contains "$("${PODMAN[@]}" logs kmsfs 2>&1)" "mlockall failed" "the daemon's log"
"${PODMAN[@]}" rm kmsfs >/dev/null
