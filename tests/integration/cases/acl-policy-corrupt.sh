#!/bin/bash
# Unreadable policy rows fail closed (issue 11): a project whose policy row in kms.db is garbled
# (here with python's sqlite3 while the daemon runs) got the defaults 0777/0666, so a policy of
# 0700 opened to every user. Now its folder and files show mode 0 (owner root), another user's
# open is refused by the kernel, root's requests answer KMS.0102 (EIO), the daemon logs one clear
# line, another project is unaffected, and `kmsctl project set` repairs it.
source "$(dirname "$0")/../lib/common.sh"
kms_setup
kms_user_setup
DB=$KMS_STATE/kms.db
kms_token pc >/dev/null
kms_token other >/dev/null
kms_mount allow_other
kms_login pc
kms_login other
id=$(kms_create_key pc app)
oid=$(kms_create_key other app)
P=$KMS_MNT/pc
# wait_mode PATH MODE: the daemon polls the database every second and the kernel may cache
# attributes for 1 s more; wait (at most 10 s) until stat shows MODE.
wait_mode() {
	local i
	for ((i = 0; i < 100; i++)); do
		[ "$(stat -c %a "$1")" == "$2" ] && return 0
		sleep 0.1
	done
}
# Only root's group may enter; the test user holds a crypto binding, which would serve it if
# the kernel let it open a file.
kms_ctl project set pc --owner root --group root --mode 0770 --plaintext-mode 0700 ||
	fail "project set"
kms_ctl project bind pc --uid "$KMS_USER" --role crypto || fail "project bind"
wait_mode "$P" 770
assert_eq "$(stat -c %a "$P")" 770 "mode of the project before"
as_user ls "$P" >/dev/null 2>&1 && fail "the test user lists a 0770 root project"

# Garble the row while the daemon runs.
"$KMS_PY" -c 'import sqlite3, sys
c = sqlite3.connect(sys.argv[1], timeout=10)
c.execute("UPDATE project_policies SET dir_mode = ? WHERE project_id = ?", ("0770 garbage", "pc"))
assert c.total_changes == 1, c.total_changes
c.commit()' "$DB" || fail "could not garble the policy row"
wait_mode "$P" 0
assert_eq "$(stat -c '%a %u %g' "$P")" "0 0 0" "mode, owner and group of the project after"
assert_eq "$(stat -c %a "$P/create-datakey")" 0 "mode of an action file after"
# Key folders need what list-keys needs, which a closed project gives nobody.
out=$(stat "$P/keys/$id" 2>&1) && fail "root resolved a key folder of a closed project: $out"
assert_contains "$out" "Permission denied" "root's stat of a key folder"
out=$(as_user cat "$P/keys/$id/create-datakey-without-plaintext" 2>&1) &&
	fail "the test user read an action file: $out"
assert_contains "$out" "Permission denied" "the test user's cat"
as_user ls "$P" >/dev/null 2>&1 && fail "the test user lists the project"
# Root passes the kernel's mode checks; the daemon refuses the request.
assert_errcode "$(kms_call pc/describe-key "{\"key_id\":\"$id\"}")" KMS.0102
kms_write pc/create-datakey "{\"key_id\":\"$id\"}"
assert_errno close EIO
assert_errcode "$(kms_call pc/create-key '{"key_alias":"during"}')" KMS.0102
# One clear line in the log, naming the project.
for ((i = 0; i < 50; i++)); do
	grep -q "cannot be read and fail closed" "$KMS_LOG" && break
	sleep 0.1
done
grep "cannot be read and fail closed" "$KMS_LOG" | grep -q "project 'pc'" ||
	fail "no log line about the unreadable policy row: $(tail -5 "$KMS_LOG")"
[ "$(grep -c "cannot be read and fail closed" "$KMS_LOG")" -eq 1 ] ||
	fail "the log line is repeated: $(grep -c "cannot be read" "$KMS_LOG")"
# Another project is served as before.
assert_eq "$(jget "$(kms_call "other/keys/$oid/describe-key" '{}')" .key_info.key_id)" "$oid" \
	"describe-key in another project"

# kmsctl project set writes a readable row again: served again.
kms_ctl project set pc --owner root --group root --mode 0770 --plaintext-mode 0700 ||
	fail "project set (repair)"
wait_mode "$P" 770
assert_eq "$(stat -c %a "$P")" 770 "mode of the project after the repair"
assert_eq "$(jget "$(kms_call "pc/keys/$id/describe-key" '{}')" .key_info.key_id)" "$id" \
	"describe-key after the repair"
assert_eq "$(jget "$(kms_call pc/list-keys '{}')" .total)" 1 "no key was created meanwhile"
kms_umount
