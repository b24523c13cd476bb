#!/bin/bash
# Containers (issue 3.6): a key folder bind-mounted into a new mount namespace (unshare -m) is used
# there by another uid (setpriv) that never sets a token: its identity is a `project bind --uid`
# made on the host. The same rules hold inside: with a crypto binding the uid makes and unwraps
# DEKs (cat, echo > f; cat f, python open()); after the host switches to --plaintext-mode 0700 and
# a viewer binding, the plaintext files are closed by the kernel (EACCES at open) and the role
# refuses the rest (KMS.0307); after unbind, everything is refused (EACCES or KMS.0301). Nothing
# leaks to the host's mounts.
source "$(dirname "$0")/../lib/common.sh"
kms_setup unshare # kms_container
kms_user_setup
kms_start_project cb allow_other
id=$(kms_create_key cb app)
target=$KMS_WORK/container # in the namespace, the key folder (kms_container)
kms_ctl project bind cb --uid "$KMS_USER" --role crypto || fail "project bind"

cat >"$KMS_WORK/inside.sh" <<'INNER'
set -euo pipefail
target=$1 id=$2 uid=$3 gid=$4 phase=$5
run() { setpriv --reuid="$uid" --regid="$gid" --clear-groups -- env KMS_SCRATCH="$KMS_SCRATCH" "$@"; }
code() { printf '%s' "$1" | jq -r '.error.error_code // "none"'; }
errno_of() { tr ' ' '\n' <"$KMS_SCRATCH/status.$uid" | sed -n "s/^$1=//p"; }
run getfattr -n user.kms.token "$target" >/dev/null 2>&1 && { echo "a token is readable"; exit 1; }
case $phase in
crypto)
	r=$(run cat "$target/create-datakey")
	printf '%s\n' "$r" | "$KMS_PY" "$KMS_IO" record
	pt=$(printf '%s' "$r" | jq -r .plain_text)
	ct=$(printf '%s' "$r" | jq -r .cipher_text)
	[ "${#pt}" -eq 128 ] || { echo "uid cat create-datakey: $r"; exit 1; }
	run sh -c "printf '{\"cipher_text\":\"%s\",\"datakey_cipher_length\":\"64\"}' '$ct' > '$target/decrypt-datakey'"
	r=$(run cat "$target/decrypt-datakey")
	printf '%s\n' "$r" | "$KMS_PY" "$KMS_IO" record
	[ "$(printf '%s' "$r" | jq -r .data_key)" == "$pt" ] || { echo "uid echo/cat decrypt: $r"; exit 1; }
	r=$(run "$KMS_PY" "$KMS_IO" rdwr "$target/encrypt-data" '{"plain_text":"container data"}')
	c=$(printf '%s' "$r" | jq -r .cipher_text)
	r=$(run "$KMS_PY" "$KMS_IO" rdwr "$target/decrypt-data" "{\"cipher_text\":\"$c\"}")
	[ "$(printf '%s' "$r" | jq -r .plain_text)" == "container data" ] || { echo "uid data: $r"; exit 1; }
	r=$(run "$KMS_PY" "$KMS_IO" rdwr "$target/disable-key" '{}')
	[ "$(code "$r")" == KMS.0307 ] || { echo "crypto disable-key: $r"; exit 1; }
	;;
viewer)
	run "$KMS_PY" "$KMS_IO" read "$target/create-datakey" >/dev/null
	[ "$(errno_of open)" == EACCES ] || { echo "plaintext file open: $(errno_of open)"; exit 1; }
	run "$KMS_PY" "$KMS_IO" rdwr "$target/decrypt-datakey" '{}' >/dev/null
	[ "$(errno_of open)" == EACCES ] || { echo "decrypt-datakey open: $(errno_of open)"; exit 1; }
	r=$(run "$KMS_PY" "$KMS_IO" rdwr "$target/create-datakey-without-plaintext" '{}')
	[ "$(code "$r")" == KMS.0307 ] || { echo "viewer create-datakey-without-plaintext: $r"; exit 1; }
	run "$KMS_PY" "$KMS_IO" write "$target/create-datakey-without-plaintext" '{}'
	[ "$(errno_of close)" == EACCES ] || { echo "viewer close: $(errno_of close)"; exit 1; }
	r=$(run cat "$target/describe-key")
	[ "$(printf '%s' "$r" | jq -r .key_info.key_id)" == "$id" ] || { echo "viewer describe: $r"; exit 1; }
	;;
unbound)
	# No identity: refused either way. The key folder is the root of this bind mount, so the
	# walk does not pass keys/<id> (looked up again at every walk, and refused without an
	# identity: docs/access-control.md, "Who sees what in the tree"). Whether describe-key is
	# looked up again (EACCES) or its entry is still in the kernel's cache from the host's own
	# walk (the open succeeds and the request answers KMS.0301) depends on timing.
	r=$(run cat "$target/describe-key" 2>&1) || r=$(printf '%s' "$r" | grep -o "Permission denied")
	case $r in "Permission denied" | *'"KMS.0301"'*) ;; *) echo "unbound describe: $r"; exit 1 ;; esac
	;;
esac
echo "inside-ok $phase"
INNER
# Root in the namespace resolves the key folder with its own login (KMS_CT_TOKEN): the host's
# token does not apply there.
inside() { KMS_CT_TOKEN=$KMS_TOKEN kms_container "$KMS_MNT/cb/keys/$id" "$KMS_WORK/inside.sh" "$id" "$KMS_UID" "$KMS_GID" "$1"; }
out=$(inside crypto) || fail "inside the namespace (crypto binding): $out"
assert_contains "$out" "inside-ok crypto" "namespace script"

kms_ctl project set cb --mode 0777 --plaintext-mode 0700 || fail "project set"
kms_ctl project bind cb --uid "$KMS_USER" --role viewer || fail "project bind viewer"
sleep 1.5 # the attribute cache (1 s)
out=$(inside viewer) || fail "inside the namespace (viewer binding, plaintext-mode 0700): $out"
assert_contains "$out" "inside-ok viewer" "namespace script"

kms_ctl project unbind cb --uid "$KMS_USER" || fail "project unbind"
out=$(inside unbound) || fail "inside the namespace (unbound): $out"
assert_contains "$out" "inside-ok unbound" "namespace script"
mountpoint -q "$target" && fail "the namespace's bind mount leaked to the host"
kms_umount
