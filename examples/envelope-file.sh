#!/bin/bash
# Envelope encryption of a file with a data key from kmsfs, using only the shell and openssl.
#
#   envelope-file.sh encrypt KEY FILE      writes FILE.enc and FILE.enc.dek (the wrapped DEK)
#   envelope-file.sh decrypt KEY FILE.enc  writes FILE.enc.out, unwrapping the DEK through kmsfs
#   envelope-file.sh                       demo: makes a key, encrypts and decrypts a sample file
#
# KEY is a key id or alias/NAME. Environment: KMS_MOUNT (default /kms), KMS_PROJECT (default demo);
# the caller has set its token once: setfattr -n user.kms.token -v "$TOKEN" "$KMS_MOUNT/$KMS_PROJECT".
#
# The plaintext DEK exists only in this shell's memory and in openssl's (passed on fd 3, never on
# the command line where `ps` would show it); only the wrapped DEK (cipher_text) is written to disk.
set -euo pipefail

mnt=${KMS_MOUNT:-/kms}
project=${KMS_PROJECT:-demo}
dir="$mnt/$project"

# kms ACTION JSON: one transaction the way a shell does it: write the request, read the response.
# A failed request also makes the write's close fail, which `cat >` reports.
kms() {
	local action=$1 request=$2 response
	printf '%s' "$request" | cat >"$dir/$action" || true
	response=$(cat "$dir/$action")
	case $response in
	*'"error"'*) echo "kmsfs $action failed: $response" >&2; return 1 ;;
	esac
	printf '%s' "$response"
}

# field NAME: extract a string field from a one-line JSON object on stdin (no jq needed).
field() {
	sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p"
}

encrypt() {
	local key=$1 in=$2 resp dek wrapped
	resp=$(kms create-datakey "{\"key_id\":\"$key\",\"datakey_length\":\"512\"}")
	dek=$(printf '%s' "$resp" | field plain_text)
	wrapped=$(printf '%s' "$resp" | field cipher_text)
	key=$(printf '%s' "$resp" | field key_id)
	# The DEK (as hex text) keys openssl through PBKDF2; it goes over a pipe, not argv.
	openssl enc -aes-256-cbc -pbkdf2 -iter 10000 -md sha256 -salt -pass fd:3 \
		-in "$in" -out "$in.enc" 3<<<"$dek"
	unset dek resp
	printf '{"key_id":"%s","cipher_text":"%s","datakey_cipher_length":"64"}\n' \
		"$key" "$wrapped" >"$in.enc.dek"
	echo "encrypted $in -> $in.enc (wrapped DEK in $in.enc.dek)"
}

decrypt() {
	local in=$1 resp dek
	resp=$(kms decrypt-datakey "$(cat "$in.dek")")
	dek=$(printf '%s' "$resp" | field data_key)
	openssl enc -d -aes-256-cbc -pbkdf2 -iter 10000 -md sha256 -pass fd:3 \
		-in "$in" -out "$in.out" 3<<<"$dek"
	unset dek resp
	echo "decrypted $in -> $in.out"
}

demo() {
	local alias
	demo_dir=$(mktemp -d)
	trap 'rm -rf "$demo_dir"' EXIT
	local work=$demo_dir
	alias="envelope-demo-$$-$RANDOM"
	kms create-key "{\"key_alias\":\"$alias\",\"key_description\":\"envelope example\"}" >/dev/null
	head -c 100000 /dev/urandom >"$work/data.bin"
	encrypt "alias/$alias" "$work/data.bin"
	decrypt "$work/data.bin.enc"
	cmp "$work/data.bin" "$work/data.bin.enc.out"
	! grep -qi "$(sed -n 's/.*"cipher_text":"\([^"]*\)".*/\1/p' "$work/data.bin.enc.dek" | head -c 32)" \
		"$work/data.bin.enc"
	echo "envelope round trip ok"
}

case ${1:-demo} in
encrypt) encrypt "$2" "$3" ;;
decrypt) decrypt "$2" ;;
demo) demo ;;
*) echo "usage: $0 [encrypt KEY FILE | decrypt FILE.enc]" >&2; exit 2 ;;
esac
