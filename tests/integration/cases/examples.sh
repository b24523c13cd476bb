#!/bin/bash
# Every script in examples/ runs against a fresh mount, as its README shows, and exits 0.
# Examples get: KMS_MOUNT (mount point), KMS_PROJECT (a project whose token root has set),
# KMSCTL, KMS_STATE, KMS_TOKEN, and a scratch cwd. Skips while examples/ has no scripts.
source "$(dirname "$0")/../lib/common.sh"
shopt -s nullglob
scripts=()
for f in "$KMS_SRC"/examples/*.sh "$KMS_SRC"/examples/*.py "$KMS_SRC"/examples/*/*.sh; do
	scripts+=("$f")
done
[ ${#scripts[@]} -gt 0 ] || skip "no example scripts in $KMS_SRC/examples yet"
kms_start_project example allow_other
tok=$KMS_TOKEN
for f in "${scripts[@]}"; do
	name=${f#"$KMS_SRC"/examples/}
	mkdir -p "$KMS_WORK/run/$name"
	case $f in
	*.py) cmd=("$KMS_PY" "$f") ;;
	*) cmd=(bash "$f") ;;
	esac
	rc=0
	(cd "$KMS_WORK/run/$name" && env KMS_MOUNT="$KMS_MNT" KMS_PROJECT=example KMSCTL="$KMSCTL" \
		KMS_STATE="$KMS_STATE" KMS_TOKEN="$tok" KMSFS="$KMSFS" timeout 120 "${cmd[@]}" \
		</dev/null >"$KMS_WORK/$(basename "$name").out" 2>&1) || rc=$?
	if [ "$rc" -ne 0 ]; then
		cat "$KMS_WORK/$(basename "$name").out" >&2
		fail "example $name exited $rc"
	fi
	log "example $name: ok"
done
kms_umount
