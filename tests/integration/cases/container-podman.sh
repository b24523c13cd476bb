#!/bin/bash
# Real containers (podman + runc, a busybox image built here; lib/podman.sh): a key folder given
# to a container with `-v /kms/P/keys/K:/run/kms:rslave`, as docs/operations.md "Containers"
# says. The runtime resolves the folder as the host's root, so root needs a binding (viewer is
# enough). Inside, busybox makes a data key with `cat create-datakey` and unwraps it with
# `echo > decrypt-datakey; cat` and with dd: as --user 2000 bound crypto, as root (host uid 0,
# viewer: KMS.0307; then crypto), and in a user namespace (--uidmap 0:100000:65536), where the
# daemon sees the host uid 102000 for the container's 2000 (the audit's uid says so): a binding
# of uid 2000 does not apply there (KMS.0301), one of uid 102000 does.
source "$(dirname "$0")/../lib/common.sh"
source "$KMS_LIB/podman.sh"
kms_setup
ct_setup
id=$(ct_new_key cp)
audit=$KMS_WORK/audit.jsonl
kms_mount allow_other "audit=$audit"
key=$KMS_MNT/cp/keys/$id

# ctr ARGS...: a container with the key folder on /run/kms and the scripts on /t.
ctr() { ct_run -v "$key:/run/kms:rslave" -v "$CT_SCRIPTS:/t:ro" "$@"; }
# roundtrip WHAT ARGS...: roundtrip.sh in a container run with ARGS (podman options).
roundtrip() {
	local what=$1 out
	shift
	out=$(ctr "$@" "$CT_IMAGE" sh /t/roundtrip.sh /run/kms 2>&1) || fail "$what: podman run: $out"
	ct_roundtrip_check "$what" "$out" "$id"
}
# audit_uids SINCE: the uids of the audit lines after line SINCE.
audit_uids() { tail -n "+$(($1 + 1))" "$audit" | jq -r .uid | sort -u | tr '\n' ' '; }
lines() { wc -l <"$audit"; }

# No identity for root: the runtime cannot even resolve the key folder.
out=$(ctr "$CT_IMAGE" true 2>&1) && fail "podman mounted a key folder that root may not see: $out"
assert_contains "$out" "ermission denied" "podman run without a binding for root"

# The documented bindings: root viewer (resolves the key), uid 2000 crypto.
kms_ctl project bind cp --uid root --role viewer || fail "project bind root"
out=$(ctr --user 2000:2000 "$CT_IMAGE" cat /run/kms/create-datakey 2>&1) || fail "podman run: $out"
assert_errcode "$out" KMS.0301
kms_ctl project bind cp --uid 2000 --role crypto || fail "project bind 2000"
n=$(lines)
roundtrip "--user 2000" --user 2000:2000
assert_eq "$(audit_uids "$n")" "2000 " "uids the daemon saw for --user 2000"

# Root in the container is the host's root: viewer may describe, not make data keys.
out=$(ctr "$CT_IMAGE" cat /run/kms/describe-key 2>&1) || fail "podman run: $out"
assert_eq "$(jget "$out" .key_info.key_id)" "$id" "root (viewer) describe-key in a container"
out=$(ctr "$CT_IMAGE" cat /run/kms/create-datakey 2>&1) || fail "podman run: $out"
assert_errcode "$out" KMS.0307
kms_ctl project bind cp --uid root --role crypto || fail "project bind root crypto"
n=$(lines)
roundtrip "root" --user 0:0
assert_eq "$(audit_uids "$n")" "0 " "uids the daemon saw for root"

# A user namespace: container uid U is host uid 100000+U, and that is the uid kmsfs sees.
userns=(--uidmap 0:100000:65536 --gidmap 0:100000:65536 --user 2000:2000)
n=$(lines)
out=$(ctr "${userns[@]}" "$CT_IMAGE" cat /run/kms/create-datakey 2>&1) || fail "podman run: $out"
assert_errcode "$out" KMS.0301
assert_eq "$(audit_uids "$n")" "102000 " "uid the daemon saw for --user 2000 in a user namespace"
kms_ctl project bind cp --uid 102000 --role crypto || fail "project bind 102000"
n=$(lines)
roundtrip "--uidmap, --user 2000" "${userns[@]}"
assert_eq "$(audit_uids "$n")" "102000 " "uids the daemon saw for the bound host uid"
kms_umount
