#!/bin/bash
# The man pages kmsfs(8), kmsctl(8) and kmsfs(5) (man/*.scd, rendered by the build) render
# without warnings (groff through `man --warnings -l`, and `mandoc -T lint`), and agree with
# --help: every `-o name` and `-x`/`--option` of `kmsfs --help` is an option term of kmsfs(8) and
# the reverse; every command and `--option` of `kmsctl --help` is a term of kmsctl(8) and the
# reverse. A difference is reported as the exact list of what is missing where.
source "$(dirname "$0")/../lib/common.sh"

MAN_DIR=$KMS_BUILD/man
[ -f "$MAN_DIR/kmsfs.8" ] || skip "man pages not built ($MAN_DIR/kmsfs.8 missing: scdoc not installed, or -Dman=disabled)"
[ -x "$KMSFS" ] && [ -x "$KMSCTL" ] || skip "kmsfs/kmsctl not built"
command -v man >/dev/null || command -v mandoc >/dev/null || skip "neither man (man-db, groff-base) nor mandoc is installed"

errors=()
# ---------------------------------------------------------------- rendering
for page in kmsfs.8 kmsctl.8 kmsfs.5; do
	f=$MAN_DIR/$page
	[ -s "$f" ] || { errors+=("$page was not built"); continue; }
	if command -v man >/dev/null; then
		w=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings=all -l "$f" 2>&1 >/dev/null) || w+=" (man exited $?)"
		[ -z "$w" ] || errors+=("man --warnings -l $page: $w")
		txt=$(LC_ALL=C.UTF-8 MANWIDTH=80 man -l "$f" 2>/dev/null)
		assert_contains "$txt" "SEE ALSO" "rendered $page"
	fi
	if command -v mandoc >/dev/null; then
		# scdoc writes a paragraph macro for every blank line, also where one has no effect
		# (after a heading, before .RE); mandoc skips those and says so. Anything else counts.
		w=$(mandoc -T lint -W warning "$f" 2>&1 | grep -v 'skipping paragraph macro' || true)
		[ -z "$w" ] || errors+=("mandoc -T lint $page: $w")
	fi
done

# ---------------------------------------------------------------- options against --help
opts_of() { grep -oE -- '-o [a-z_]+|--?[a-zA-Z][a-zA-Z-]*' | sort -u; }
# terms SCD SECTION...: the term lines (starting with '*') of those sections of a scdoc source.
terms() {
	local f=$1
	shift
	awk -v want=" $* " '/^# /{s = substr($0, 3); on = index(want, " " s " ") > 0; next}
		on && /^\*/' "$f" | tr -d '*' | sed -E 's/(^|[^a-z])_([^_ ]+)_/\1\2/g'
}
# cmd_of: the command of a "  word[ subword] ..." line (the subword after exactly one space).
cmd_of() { sed -nE 's/^ *([a-z]+( [a-z]+)?)( .*)?$/\1/p' | sort -u; }
# compare WHAT HELP_LIST MAN_LIST: record what each side lacks.
compare() {
	local only_help only_man
	only_help=$(comm -23 <(printf '%s\n' "$2") <(printf '%s\n' "$3") | paste -sd' ')
	only_man=$(comm -13 <(printf '%s\n' "$2") <(printf '%s\n' "$3") | paste -sd' ')
	[ -z "$only_help" ] || errors+=("$1: in --help but not in the man page: $only_help")
	[ -z "$only_man" ] || errors+=("$1: in the man page but not in --help: $only_man")
}

help=$("$KMSFS" --help 2>&1) || fail "kmsfs --help exited $?"
help_opts=$(grep -E '^    -' <<<"$help" | sed 's/^ *//; s/  .*//' | opts_of)
man_opts=$(terms "$KMS_SRC/man/kmsfs.8.scd" OPTIONS | opts_of)
[ "$(wc -l <<<"$help_opts")" -ge 20 ] || fail "kmsfs --help lists too few options: $help_opts"
compare "kmsfs(8) options" "$help_opts" "$man_opts"

help=$("$KMSCTL" --help 2>&1) || fail "kmsctl --help exited $?"
help_cmds=$(sed -n '/^commands:/,/^$/p' <<<"$help" | grep -E '^  [a-z]' | cmd_of)
man_cmds=$(terms "$KMS_SRC/man/kmsctl.8.scd" COMMANDS | cmd_of)
[ "$(wc -l <<<"$help_cmds")" -ge 8 ] || fail "kmsctl --help lists too few commands: $help_cmds"
compare "kmsctl(8) commands" "$help_cmds" "$man_cmds"
help_opts=$( (grep -oE -- '--[a-z][a-z-]*' <<<"$help"; printf -- '--help\n--version\n') | sort -u)
man_opts=$(terms "$KMS_SRC/man/kmsctl.8.scd" OPTIONS COMMANDS | grep -oE -- '--[a-z][a-z-]*' | sort -u)
compare "kmsctl(8) options" "$help_opts" "$man_opts"

# kmsfs(8) shows the fstab line and mount -t (issue 14: mounting from fstab).
scd=$(cat "$KMS_SRC/man/kmsfs.8.scd")
assert_contains "$scd" "kmsfs /kms fuse.kmsfs state=/var/lib/kmsfs,allow_other,nofail 0 0" "kmsfs(8) examples"
assert_contains "$scd" "mount -t fuse.kmsfs kmsfs /kms -o state=" "kmsfs(8) examples"

if [ ${#errors[@]} -gt 0 ]; then
	printf '%s\n' "${errors[@]}" >&2
	fail "${#errors[@]} problem(s) with the man pages (listed above)"
fi
