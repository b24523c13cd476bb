#!/bin/bash
# The container view: in a new mount namespace (unshare -m) a key dir is bind-mounted somewhere
# else (mount --bind /kms/P/keys/<id> /secrets/key) and used there, by root (which set its own
# token in the namespace first: the host's does not apply there) and by another uid (setpriv) that
# binds its own token through the bind mount. The host sees no extra mount, and the daemon still
# unmounts cleanly afterwards.
source "$(dirname "$0")/../lib/common.sh"
kms_setup unshare # kms_container
kms_user_setup
kms_start_project ct allow_other
id=$(kms_create_key ct app)
utok=$(kms_token ct --user "$KMS_USER")
target=$KMS_WORK/container # in the namespace, the key folder (kms_container)

cat >"$KMS_WORK/inside.sh" <<'INNER'
set -euo pipefail
target=$1 id=$2 uid=$3 gid=$4 utok=$5
# root inside the namespace
r=$(cat "$target/create-datakey-without-plaintext")
[ "$(printf '%s' "$r" | jq -r .key_id)" == "$id" ] || { echo "root cat: $r"; exit 1; }
echo '{}' >"$target/create-datakey"
r=$(cat "$target/create-datakey")
printf '%s\n' "$r" | "$KMS_PY" "$KMS_IO" record
pt=$(printf '%s' "$r" | jq -r .plain_text)
ct=$(printf '%s' "$r" | jq -r .cipher_text)
printf '{"cipher_text":"%s","datakey_cipher_length":"64"}' "$ct" >"$target/decrypt-datakey"
[ "$(jq -r .data_key <"$target/decrypt-datakey")" == "$pt" ] || { echo "root decrypt failed"; exit 1; }
# another uid inside the namespace, token set through the bind mount
run() { setpriv --reuid="$uid" --regid="$gid" --clear-groups -- "$@"; }
r=$(run cat "$target/create-datakey")
[ "$(printf '%s' "$r" | jq -r .error.error_code)" == KMS.0301 ] || { echo "user without token: $r"; exit 1; }
run setfattr -n user.kms.token -v "$utok" "$target"
r=$(run "$KMS_PY" "$KMS_IO" rdwr "$target/create-datakey" '{}')
pt=$(printf '%s' "$r" | jq -r .plain_text)
ct=$(printf '%s' "$r" | jq -r .cipher_text)
r=$(run "$KMS_PY" "$KMS_IO" rdwr "$target/decrypt-datakey" "{\"cipher_text\":\"$ct\",\"datakey_cipher_length\":\"64\"}")
[ "$(printf '%s' "$r" | jq -r .data_key)" == "$pt" ] || { echo "user decrypt: $r"; exit 1; }
run ls "$target" | grep -qx describe-key || { echo "user ls of the bind mount"; exit 1; }
echo inside-ok
INNER
out=$(KMS_CT_TOKEN=$KMS_TOKEN kms_container "$KMS_MNT/ct/keys/$id" "$KMS_WORK/inside.sh" "$id" "$KMS_UID" "$KMS_GID" "$utok") ||
	fail "inside the namespace: $out"
assert_contains "$out" inside-ok "namespace script"
mountpoint -q "$target" && fail "the namespace's bind mount leaked to the host"
kms_umount
