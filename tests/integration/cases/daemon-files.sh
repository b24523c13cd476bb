#!/bin/bash
# The daemon's files are its own: a state directory left 0755 is tightened to 0700 at start, an
# existing audit or log file to 0600; a state directory owned by another user, and an audit or
# log path that is a symbolic link, make kmsfs refuse to start (exit 1, one line on stderr
# naming the problem), mount nothing and write nothing through the link.
source "$(dirname "$0")/../lib/common.sh"
kms_setup
kms_user_setup

# A pre-existing state dir, a log and an audit file others may read.
mkdir -m 0755 "$KMS_STATE"
chmod 0755 "$KMS_STATE"
audit=$KMS_WORK/audit.log
: >"$audit"
: >"$KMS_LOG"
chmod 0644 "$audit" "$KMS_LOG"
kms_mount "audit=$audit"
assert_eq "$(stat -c %a "$KMS_STATE")" 700 "state dir mode after start"
assert_eq "$(stat -c %a "$audit")" 600 "audit file mode after start"
assert_eq "$(stat -c %a "$KMS_LOG")" 600 "log file mode after start"
kms_umount

# refuse WORDS WHY OPTS: kmsfs (daemonising, as an admin starts it) exits 1 with one line on
# stderr containing WORDS, and mounts nothing.
refuse() {
	local err=$KMS_WORK/refuse.err rc=0
	"$KMSFS" "$KMS_MNT" -o "$3" </dev/null >/dev/null 2>"$err" || rc=$?
	assert_eq "$rc" 1 "exit status when $2"
	assert_eq "$(wc -l <"$err")" 1 "lines on stderr when $2 ($(cat "$err"))"
	assert_contains "$(cat "$err")" "$1" "stderr when $2"
	assert_eq "$(kms_mount_count "$KMS_MNT")" 0 "mounts when $2"
}

# The audit path is a symbolic link (to a file another user could have planted it for).
target=$KMS_WORK/elsewhere
: >"$target"
chmod 0644 "$target"
ln -s "$target" "$KMS_WORK/audit-link"
refuse "symbolic link" "the audit path is a symlink" \
	"state=$KMS_STATE,log=$KMS_LOG,audit=$KMS_WORK/audit-link"
assert_eq "$(stat -c %s "$target")" 0 "bytes written through the audit symlink"
assert_eq "$(stat -c %a "$target")" 644 "mode of the audit symlink's target"
ln -s "$target" "$KMS_WORK/log-link"
refuse "symbolic link" "the log path is a symlink" "state=$KMS_STATE,log=$KMS_WORK/log-link"
assert_eq "$(stat -c %s "$target")" 0 "bytes written through the log symlink"

# An audit file of another user.
install -o "$KMS_USER" -m 0600 /dev/null "$KMS_WORK/their-audit"
refuse "belongs to uid $KMS_UID" "the audit file is another user's" \
	"state=$KMS_STATE,log=$KMS_LOG,audit=$KMS_WORK/their-audit"

# A state directory of another user: refused, its mode and owner left alone.
other=$KMS_WORK/other-state
mkdir -m 0755 "$other"
chmod 0755 "$other"
chown "$KMS_USER" "$other"
refuse "belongs to uid $KMS_UID" "the state dir is another user's" "state=$other,log=$KMS_LOG"
refuse "belongs to uid $KMS_UID" "the state dir is another user's (log in it)" "state=$other"
assert_eq "$(stat -c '%a %u' "$other")" "755 $KMS_UID" "the other user's state dir"
assert_eq "$(ls -A "$other")" "" "files kmsfs put in another user's state dir"

# kmsctl refuses it too.
rc=0; err=$("$KMSCTL" --state "$other" init 2>&1 >/dev/null) || rc=$?
[ "$rc" -ne 0 ] || fail "kmsctl init accepted another user's state dir"
assert_contains "$err" "belongs to uid $KMS_UID" "kmsctl init on another user's state dir"
