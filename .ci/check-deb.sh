#!/bin/bash
# .ci/check-deb.sh - the Debian package (debian/): builds it with `dpkg-buildpackage -b -us -uc`
# in a copy of the tree (the source tree is left as it is), checks its file list (`dpkg-deb -c`)
# for the agreed files, and installs it into an empty root (`dpkg --root`, maintainer scripts
# run chrootless with DPKG_ROOT set), where its postinst must have made the kmsfs group.
# Exit status: 0 passed, 1 failed, 2 skipped (not a Debian system, or the build tools missing).
# scripts/run-tests runs it once and counts it. KEEP=1 keeps the work dir.
set -uo pipefail
cd "$(dirname "$0")/.."
SRC=$(pwd)

skip() { echo "# check-deb: skipped: $*"; exit 2; }
fail() { echo "# check-deb: FAIL: $*"; exit 1; }
command -v dpkg-buildpackage >/dev/null || skip "dpkg-buildpackage missing (apt-get install dpkg-dev)"
command -v dh >/dev/null || skip "debhelper missing (apt-get install debhelper)"
[ "$(id -u)" -eq 0 ] || skip "dpkg --root needs root here"

WORK=$(mktemp -d /tmp/kmsfs-deb.XXXXXX)
[ "${KEEP:-0}" = 1 ] && echo "# check-deb: work dir $WORK" || trap 'rm -rf "$WORK"' EXIT
VERSION=$(dpkg-parsechangelog -l debian/changelog -S Version) || fail "debian/changelog does not parse"
ARCH=$(dpkg --print-architecture)
DEB=$WORK/kmsfs_${VERSION}_$ARCH.deb

# The tree as git sees it (tracked and new files, not ignored ones such as build dirs).
mkdir "$WORK/kmsfs"
if git -C "$SRC" rev-parse --git-dir >/dev/null 2>&1; then
	git -C "$SRC" ls-files -z --cached --others --exclude-standard |
		(cd "$SRC" && xargs -0 cp --parents -a -t "$WORK/kmsfs" 2>/dev/null)
	# Files git lists but that were deleted in the work tree are simply not copied.
else
	tar -C "$SRC" --exclude='./build*' -cf - . | tar -C "$WORK/kmsfs" -xf -
fi
start=$SECONDS
(cd "$WORK/kmsfs" && DEB_BUILD_OPTIONS="nocheck parallel=$(nproc)" \
	dpkg-buildpackage -b -us -uc) >"$WORK/build.log" 2>&1 || {
	tail -n 40 "$WORK/build.log"
	grep -q 'Unmet build dependencies' "$WORK/build.log" &&
		fail "build dependencies missing (see above; .ci/run installs them)"
	fail "dpkg-buildpackage -b -us -uc failed"
}
echo "# check-deb: built $(basename "$DEB") in $((SECONDS - start)) s"
[ -f "$DEB" ] || fail "no $(basename "$DEB") after the build: $(ls "$WORK")"

# ---------------------------------------------------------------- the file list
list=$(dpkg-deb -c "$DEB" | awk '{print $6}' | sed 's#^\./#/#; s#/$##')
problems=()
need() { grep -qxE "$1" <<<"$list" || problems+=("missing $1"); }
need /usr/bin/kmsfs
need /usr/bin/kmsctl
need /usr/share/man/man8/kmsfs\\.8\\.gz
need /usr/share/man/man8/kmsctl\\.8\\.gz
need /usr/share/man/man5/kmsfs\\.5\\.gz
need /usr/share/bash-completion/completions/kmsctl
need /etc/logrotate\\.d/kmsfs
need /usr/lib/sysusers\\.d/kmsfs\\.conf
need /usr/share/doc/kmsfs/copyright
if [ -f systemd/meson.build ]; then
	need '(/usr)?/lib/systemd/system/kmsfs\.service'
	need '(/usr)?/lib/systemd/system/kmsfs@\.service'
fi
bad=$(grep -E '^/usr/local|^/build|\.scd$|/tests?/' <<<"$list" || true)
[ -z "$bad" ] || problems+=("files that do not belong in the package: $(paste -sd' ' <<<"$bad")")
conffiles=$(dpkg-deb --ctrl-tarfile "$DEB" | tar -xOf - ./conffiles 2>/dev/null || true)
grep -qx /etc/logrotate.d/kmsfs <<<"$conffiles" || problems+=("/etc/logrotate.d/kmsfs is not a conffile")
[ ${#problems[@]} -eq 0 ] || fail "$(printf '%s; ' "${problems[@]}")"

# ---------------------------------------------------------------- install into an empty root
ROOT=$WORK/root
mkdir -p "$ROOT/var/lib/dpkg/info" "$ROOT/var/lib/dpkg/updates" "$ROOT/var/lib/dpkg/triggers" \
	"$ROOT/etc"
: >"$ROOT/var/lib/dpkg/status"
: >"$ROOT/var/lib/dpkg/available"
# The root has no libc or fuse3 package (--force-depends); the maintainer scripts run on this
# host with DPKG_ROOT=$ROOT, which systemd-sysusers and deb-systemd-helper honour.
dpkg --root="$ROOT" --log=/dev/null --force-script-chrootless --force-depends --force-unsafe-io \
	-i "$DEB" >"$WORK/dpkg.log" 2>&1 || { cat "$WORK/dpkg.log"; fail "dpkg --root=$ROOT -i failed"; }
state=$(dpkg-query --admindir="$ROOT/var/lib/dpkg" -W -f='${Status}' kmsfs 2>/dev/null)
[ "$state" = "install ok installed" ] || { cat "$WORK/dpkg.log"; fail "kmsfs in the root is '$state'"; }
"$ROOT/usr/bin/kmsfs" --version | grep -q "^kmsfs ${VERSION%-*} " || fail "installed kmsfs --version: $("$ROOT/usr/bin/kmsfs" --version 2>&1)"
"$ROOT/usr/bin/kmsctl" --version | grep -q "^kmsctl ${VERSION%-*}" || fail "installed kmsctl --version"
if command -v systemd-sysusers >/dev/null; then
	grep -q '^kmsfs:' "$ROOT/etc/group" 2>/dev/null || fail "the postinst made no kmsfs group in $ROOT/etc/group"
fi
LC_ALL=C.UTF-8 man -l "$ROOT/usr/share/man/man8/kmsfs.8.gz" 2>/dev/null | grep -q '^NAME' ||
	fail "the installed kmsfs(8) does not render"
dpkg --root="$ROOT" --log=/dev/null --force-script-chrootless --force-depends -P kmsfs \
	>>"$WORK/dpkg.log" 2>&1 || { cat "$WORK/dpkg.log"; fail "dpkg --root -P kmsfs failed"; }
[ ! -e "$ROOT/usr/bin/kmsfs" ] || fail "purge left /usr/bin/kmsfs"
echo "# check-deb: $(basename "$DEB"): $(wc -l <<<"$list") entries, installed and purged in a temporary root"
