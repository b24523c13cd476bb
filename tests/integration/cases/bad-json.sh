#!/bin/bash
# Broken requests get API errors, never a crash: malformed JSON is KMS.0202, missing fields
# KMS.0204, fields of the wrong JSON type some 400 error; close() says EINVAL each time and the
# daemon keeps serving.
source "$(dirname "$0")/../lib/common.sh"
kms_start_project bj
id=$(kms_create_key bj app)

for req in '{' 'not json' '{"key_alias":}' '{"key_alias":"a"}}' '{"key_alias":"a",}' "{'key_alias':'a'}" \
	'{"key_alias":"a"' '{"key_alias":"a\q"}' '{"key_alias" "a"}'; do
	assert_errcode "$(kms_call bj/create-key "$req")" KMS.0202
	kms_write bj/create-key "$req"
	assert_errno close EINVAL
done
# A NUL byte or invalid UTF-8 inside a string: refused (as bad JSON or as a bad alias).
for raw in '{"key_alias":"a\0b"}' '{"key_alias":"\xff\xfe"}' '{"key_alias":"a"}\0'; do
	r=$(printf "$raw" | "$KMS_PY" "$KMS_IO" rdwr "$KMS_MNT/bj/create-key" -)
	jget "$r" .error.error_code | grep -Eq '^KMS\.(0202|1101)$' || fail "request $raw: $r"
done
deep=$(printf '{"a":%.0s' $(seq 200))1$(printf '}%.0s' $(seq 200))
r=$(kms_call bj/create-key "$deep")
jget "$r" .error.error_code | grep -Eq '^KMS\.0(202|204)$' || fail "deeply nested JSON: $r"
rc=0; err=$(echo '{"key_alias":' | cat 2>&1 >"$KMS_MNT/bj/create-key") || rc=$?
[ "$rc" -ne 0 ] || fail "cat > f of malformed JSON exited 0"
assert_contains "$err" "Invalid argument" "cat > f of malformed JSON"

# Missing fields.
assert_errcode "$(kms_call bj/create-datakey '{}')" KMS.0204
assert_errcode "$(kms_call bj/describe-key '{"sequence":"919c82d4-8046-4722-9094-35c3c6524cff"}')" KMS.0204
assert_errcode "$(kms_call bj/encrypt-datakey "{\"key_id\":\"$id\",\"datakey_plain_length\":\"64\"}")" KMS.0204
assert_errcode "$(kms_call bj/decrypt-datakey "{\"key_id\":\"$id\",\"datakey_cipher_length\":\"64\"}")" KMS.0204
assert_errcode "$(kms_call "bj/keys/$id/decrypt-datakey" '{"datakey_cipher_length":"64"}')" KMS.0204
assert_errcode "$(kms_call bj/decrypt-datakey "{\"key_id\":\"$id\",\"cipher_text\":\"00\"}")" KMS.0204
kms_write bj/create-datakey '{}'
assert_errno close EINVAL

# Wrong JSON types: an API error (status 400), whatever the code.
for req in "{\"key_id\":123}" "{\"key_id\":[\"$id\"]}" "{\"key_id\":null}" "{\"key_id\":{\"id\":\"$id\"}}" \
	"{\"key_id\":\"$id\",\"datakey_length\":[512]}" "{\"key_id\":\"$id\",\"datakey_length\":true}" \
	"{\"key_id\":\"$id\",\"encryption_context\":[1,2]}" "{\"key_id\":\"$id\",\"encryption_context\":7}" \
	'[]' '"string"' '42' 'null'; do
	r=$(kms_call bj/create-datakey "$req")
	jget "$r" '.error.error_code' | grep -Eq '^KMS\.[0-9]{4}$' || fail "wrong types must be refused: $req -> $r"
	kms_write bj/create-datakey "$req"
	assert_errno close EINVAL
done

# Still alive and correct.
kill -0 "$KMS_PID" || fail "daemon died"
r=$(kms_call bj/create-datakey "{\"key_id\":\"$id\"}")
assert_eq "$(jget "$r" .key_id)" "$id" "a good request after the bad ones"
assert_eq "$(jget "$(kms_call bj/list-keys '{}')" .total)" 1 "no key was created by a bad request"
kms_umount
