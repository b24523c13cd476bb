#!/bin/bash
# The bash completion for kmsctl (completion/kmsctl), sourced in a plain bash as bash-completion
# would: the commands of `kmsctl --help` (all of them), subcommands, options, roles, the state
# directory, project names (from the tokens of `kmsctl token list` and from the running daemon's
# mount), token ids, and the actions of `kmsctl call`, which must be exactly the action files of
# a mounted project.
source "$(dirname "$0")/../lib/common.sh"
kms_start_project demo
kms_token other >/dev/null
kms_ctl project set viaMount --mode 0750 >/dev/null # no token: only the mount lists it
COMPLETION=$KMS_SRC/completion/kmsctl
CTL_DIR=$(dirname "$KMSCTL")

# comp WORD...: the completions bash offers for the command line WORD... (the last word is the
# one being completed), sorted, on one line.
comp() {
	PATH=$CTL_DIR:$PATH bash --norc --noprofile -c '
		source "$1"
		shift
		complete -p kmsctl >/dev/null || exit 3
		COMP_WORDS=("$@")
		COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
		COMP_LINE="$*"
		COMP_POINT=${#COMP_LINE}
		_kmsctl kmsctl "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
		printf "%s\n" "${COMPREPLY[@]}" | sed "/^$/d" | sort | paste -sd" "' bash "$COMPLETION" "$@" ||
		fail "completing '$*' failed (exit $?)"
}
S=$KMS_STATE
# Every command of kmsctl --help ("  word" lines of its commands list), and at least these.
help_cmds=$("$KMSCTL" --help | sed -n '/^commands:/,/^$/p' | sed -nE 's/^  ([a-z][a-z-]*).*/\1/p' | sort -u | paste -sd' ')
assert_eq "$(comp kmsctl '')" "$help_cmds" "commands vs kmsctl --help"
for c in call check init project token; do assert_contains " $help_cmds " " $c " "commands"; done
assert_eq "$(comp kmsctl --)" "--help --state --store --version" "options"
assert_eq "$(comp kmsctl --state "$KMS_WORK/sta")" "$KMS_WORK/state" "--state DIR"
assert_eq "$(comp kmsctl --state "$S" to)" "token" "command prefix"
assert_eq "$(comp kmsctl --state "$S" token '')" "issue list revoke" "token subcommands"
assert_eq "$(comp kmsctl --state "$S" token issue --)" "--project --role --ttl --user" "token issue options"
assert_eq "$(comp kmsctl --state "$S" token issue --role c)" "crypto" "roles"
assert_eq "$(comp kmsctl --state "$S" token issue --project '')" "demo other viaMount" "projects"
assert_eq "$(comp kmsctl --state="$S" project show v)" "viaMount" "projects with --state=DIR"
assert_eq "$(comp kmsctl --state "$S" project '')" "bind set show unbind" "project subcommands"
assert_eq "$(comp kmsctl --state "$S" project bind demo --)" "--cgroup --gid --role --uid" "project bind options"
assert_eq "$(comp kmsctl --state "$S" project set demo --plain)" "--plaintext-mode" "project set options"
assert_eq "$(comp kmsctl --state "$S" project bind demo --uid roo)" "root" "users"
assert_eq "$(comp kmsctl --state "$S" call d)" "demo" "call PROJECT"
assert_eq "$(comp kmsctl --state "$S" call demo create-datakey)" \
	"create-datakey create-datakey-without-plaintext" "call ACTION prefix"
ids=$(kms_ctl token list | awk 'NF == 0 {exit} NR > 1 {print $1}' | sort | paste -sd' ')
assert_eq "$(comp kmsctl --state "$S" token revoke '')" "$ids" "token ids"

# Every action file of a project, and nothing else.
actions=$(ls -1 "$KMS_MNT/demo" | grep -vxE 'keys|aliases' | sort | paste -sd' ')
[ -n "$actions" ] || fail "no action files in $KMS_MNT/demo"
assert_eq "$(comp kmsctl --state "$S" call demo '')" "$actions" "kmsctl call actions vs the files of a project"
kms_umount
