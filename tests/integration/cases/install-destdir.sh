#!/bin/bash
# `meson install --destdir DIR` of this build installs exactly the agreed files (docs/install.md):
# the two programs, the three man pages (when the build made them), the bash completion for
# kmsctl, the logrotate snippet, the sysusers.d file for the kmsfs group, and the systemd units
# when the tree has them; the installed programs run and the installed pages render.
source "$(dirname "$0")/../lib/common.sh"
command -v meson >/dev/null || skip "meson missing"
[ -f "$KMS_BUILD/build.ninja" ] || skip "no configured build in $KMS_BUILD"
[ -x "$KMSFS" ] && [ -x "$KMSCTL" ] || skip "kmsfs/kmsctl not built"
DEST=$(mktemp -d "${KMS_TMPDIR:-/tmp}/kmsfs-destdir.XXXXXX")
trap 'rm -rf "$DEST"' EXIT

opt() { meson introspect --buildoptions "$KMS_BUILD" | jq -r --arg n "$1" '.[] | select(.name == $n) | .value'; }
# abs DIR: an install directory option made absolute against the prefix, as meson does.
abs() { case $1 in /*) echo "$1" ;; *) echo "$prefix/$1" ;; esac; }
prefix=$(opt prefix)
bindir=$(abs "$(opt bindir)")
mandir=$(abs "$(opt mandir)")
datadir=$(abs "$(opt datadir)")
sysconfdir=$(abs "$(opt sysconfdir)")

out=$(meson install -C "$KMS_BUILD" --no-rebuild --destdir "$DEST" 2>&1) || fail "meson install failed: $out"

expected=("$bindir/kmsfs" "$bindir/kmsctl"
	"$datadir/bash-completion/completions/kmsctl"
	"$sysconfdir/logrotate.d/kmsfs"
	"$prefix/lib/sysusers.d/kmsfs.conf")
if [ -f "$KMS_BUILD/man/kmsfs.8" ]; then
	expected+=("$mandir/man8/kmsfs.8" "$mandir/man8/kmsctl.8" "$mandir/man5/kmsfs.5")
else
	log "man pages not built (no scdoc): not expected"
fi
installed=$(cd "$DEST" && find . \( -type f -o -type l \) | sed 's#^\.##' | sort)
# The systemd units (systemd/, helper of issue 14 item 2) go wherever their meson.build says.
units=$(grep -E '/kmsfs@?\.service$' <<<"$installed" || true)
if [ -f "$KMS_SRC/systemd/meson.build" ]; then
	for u in kmsfs.service kmsfs@.service; do
		grep -q "/$u\$" <<<"$units" || fail "the systemd unit $u was not installed"
	done
fi
want=$( (printf '%s\n' "${expected[@]}"; [ -z "$units" ] || printf '%s\n' "$units") | sed 's#//*#/#g' | sort)
missing=$(comm -23 <(echo "$want") <(echo "$installed") | paste -sd' ')
extra=$(comm -13 <(echo "$want") <(echo "$installed") | paste -sd' ')
[ -z "$missing" ] || fail "meson install did not install: $missing"
[ -z "$extra" ] || fail "meson install installed files no one agreed on (update this case and docs/install.md): $extra"

"$DEST$bindir/kmsfs" --version | grep -q '^kmsfs ' || fail "installed kmsfs --version"
"$DEST$bindir/kmsctl" --version | grep -q '^kmsctl ' || fail "installed kmsctl --version"
[ ! -x "$DEST$bindir/kmsfs" ] || [ "$(stat -c %a "$DEST$bindir/kmsfs")" = 755 ] || fail "mode of kmsfs"
for f in "$sysconfdir/logrotate.d/kmsfs" "$prefix/lib/sysusers.d/kmsfs.conf" \
	"$datadir/bash-completion/completions/kmsctl"; do
	assert_eq "$(stat -c %a "$DEST$f")" 644 "mode of $f"
done
grep -qE '^g kmsfs ' "$DEST$prefix/lib/sysusers.d/kmsfs.conf" || fail "sysusers.d file makes no kmsfs group"
if [ -f "$KMS_BUILD/man/kmsfs.8" ] && command -v man >/dev/null; then
	for p in man8/kmsfs.8 man8/kmsctl.8 man5/kmsfs.5; do
		LC_ALL=C.UTF-8 man -l "$DEST$mandir/$p" 2>/dev/null | grep -q '^NAME' || fail "installed $p does not render"
	done
fi
