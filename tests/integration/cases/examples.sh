#!/bin/bash
# Every example in examples/ runs against a fresh mount, as its README shows, and exits 0: scripts
# (*.sh, *.py) as they are, C programs (*.c) compiled first with cc, warnings as errors.
# Examples get: KMS_MOUNT (mount point), KMS_PROJECT (a project whose token root has set),
# KMSCTL, KMS_STATE, KMS_TOKEN, and a scratch cwd. Skips while examples/ has none; without cc the
# others run and the case then skips, naming the C examples it could not run.
source "$(dirname "$0")/../lib/common.sh"
shopt -s nullglob
examples=()
for f in "$KMS_SRC"/examples/*.sh "$KMS_SRC"/examples/*.py "$KMS_SRC"/examples/*/*.sh \
	"$KMS_SRC"/examples/*.c; do
	examples+=("$f")
done
[ ${#examples[@]} -gt 0 ] || skip "no examples in $KMS_SRC/examples yet"
kms_start_project example allow_other
tok=$KMS_TOKEN
not_run=()
mkdir -p "$KMS_WORK/bin"
for f in "${examples[@]}"; do
	name=${f#"$KMS_SRC"/examples/}
	out=$KMS_WORK/$(basename "$name").out
	mkdir -p "$KMS_WORK/run/$name"
	case $f in
	*.py) cmd=("$KMS_PY" "$f") ;;
	*.c)
		if ! command -v cc >/dev/null; then
			not_run+=("$name")
			continue
		fi
		cmd=("$KMS_WORK/bin/$(basename "$name" .c)")
		cc -O2 -Wall -Wextra -Werror -pthread -o "${cmd[0]}" "$f" 2>"$out" || {
			cat "$out" >&2
			fail "example $name does not compile"
		}
		;;
	*) cmd=(bash "$f") ;;
	esac
	rc=0
	(cd "$KMS_WORK/run/$name" && env KMS_MOUNT="$KMS_MNT" KMS_PROJECT=example KMSCTL="$KMSCTL" \
		KMS_STATE="$KMS_STATE" KMS_TOKEN="$tok" KMSFS="$KMSFS" timeout 120 "${cmd[@]}" \
		</dev/null >"$out" 2>&1) || rc=$?
	if [ "$rc" -ne 0 ]; then
		cat "$out" >&2
		fail "example $name exited $rc"
	fi
	log "example $name: ok ($(tail -n 1 "$out"))"
done
kms_umount
[ ${#not_run[@]} -eq 0 ] || skip "no C compiler (cc): ${not_run[*]} not compiled nor run"
