#!/bin/bash
# /kms/.metrics and /kms/.status (docs/monitoring.md) and `kmsctl status`: root and the members of
# -o metrics_group read them (0440 root:GROUP), others get EACCES and do not see them listed;
# without the option only root may (0400). The exposition parses (lib/metrics.py: HELP and TYPE
# for every family, `name{labels} value` lines), and its counters move exactly with the requests
# made (counts by action and code, latency count, bytes; open handles, mailboxes), .status says
# the same. kmsctl status exits 0 while the daemon serves, 5 when it is stopped (kill -STOP)
# within its timeout, 0 again after SIGCONT, 4 once unmounted.
source "$(dirname "$0")/../lib/common.sh"
kms_setup
kms_member_setup
kms_start_project met allow_other "metrics_group=kmsitg"
M=$KMS_MNT
status() { "$KMSCTL" --state "$KMS_STATE" status "$@"; }

assert_eq "$(stat -c '%a %u %g' "$M/.metrics" "$M/.status" | sort -u)" "440 0 $KMS_GRP" "mode and owner of .metrics and .status"
cat "$M/.metrics" >"$KMS_WORK/root.prom" || fail "root cannot read .metrics"
kms_py metrics parse "$KMS_WORK/root.prom"
assert_contains "$(cat "$KMS_WORK/root.prom")" 'kmsfs_build_info{version="' "build info"
jq -e '.serving == true' "$M/.status" >/dev/null || fail ".status is no JSON with serving: true"

# A member of the group reads both; anyone else gets EACCES, and ls -a lists them only to readers.
out=$(kms_as "$KMS_MUID" "$KMS_MGID" "$KMS_GRP" cat "$M/.metrics") || fail "member of metrics_group cannot read .metrics"
assert_contains "$out" "# TYPE kmsfs_requests_total counter" "member's .metrics"
kms_as "$KMS_MUID" "$KMS_MGID" "$KMS_GRP" cat "$M/.status" | jq -e .serving >/dev/null || fail "member cannot read .status"
assert_contains "$(kms_as "$KMS_MUID" "$KMS_MGID" "$KMS_GRP" ls -a "$M")" ".metrics" "ls -a by a member"
for f in .metrics .status; do
	err=$(kms_as "$KMS_MUID" "$KMS_MGID" "" cat "$M/$f" 2>&1) && fail "a non-member read $f"
	assert_contains "$err" "Permission denied" "a non-member reading $f"
done
assert_not_contains "$(kms_as "$KMS_MUID" "$KMS_MGID" "" ls -a "$M")" ".metrics" "ls -a by a non-member"
err=$(sh -c "echo x >'$M/.metrics'" 2>&1) && fail "root wrote to .metrics"
assert_contains "$err" "Permission denied" "writing .metrics"
# Readers that copy through the page cache (cp, busybox cat) fall back to read() and get it all.
cp "$M/.metrics" "$KMS_WORK/cp.prom" || fail "cp of .metrics"
kms_py metrics parse "$KMS_WORK/cp.prom"

# The counters move with the requests.
kms_py metrics check "$M" met >/dev/null

# kmsctl status: serving, stopped (the mount hangs: the probe must not), serving again.
out=$(status) || fail "kmsctl status exited $? while the daemon serves"
assert_contains "$out" "serving $M" "kmsctl status"
status --json | jq -e '.serving == true and .requests.total >= 6' >/dev/null || fail "kmsctl status --json"
kill -STOP "$KMS_PID"
# kill returns before every thread has stopped: probe once all have (state T), or the probe may
# still be answered.
threads() { sed 's/.*) //' /proc/"$KMS_PID"/task/*/stat | cut -d' ' -f1 | sort | uniq -c | tr '\n' ' '; }
for ((i = 0; i < 50; i++)); do [[ "$(threads)" =~ ^\ *[0-9]+\ T\ $ ]] && break; sleep 0.1; done
t0=$(date +%s)
rc=0; status --timeout 2 >/dev/null 2>&1 || rc=$?
states=$(threads)
kill -CONT "$KMS_PID"
assert_eq "$rc" 5 "kmsctl status of a stopped daemon (thread states: $states)"
[ $(($(date +%s) - t0)) -le 6 ] || fail "kmsctl status took $(($(date +%s) - t0)) s with a 2 s timeout"
status >/dev/null || fail "kmsctl status after SIGCONT exited $?"
kms_umount
rc=0; status >/dev/null 2>&1 || rc=$?
assert_eq "$rc" 4 "kmsctl status with no daemon"
rc=0; "$KMSCTL" --state "$KMS_WORK/nope" status >/dev/null 2>&1 || rc=$?
assert_eq "$rc" 3 "kmsctl status of a missing state directory"

# Without metrics_group: root only.
kms_mount allow_other
assert_eq "$(stat -c '%a %u %g' "$M/.metrics")" "400 0 0" "mode without metrics_group"
cat "$M/.metrics" >/dev/null || fail "root cannot read .metrics without metrics_group"
kms_as "$KMS_MUID" "$KMS_MGID" "$KMS_GRP" cat "$M/.metrics" >/dev/null 2>&1 && fail "a group member read .metrics without metrics_group"
kms_umount
