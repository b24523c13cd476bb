#!/bin/bash
# list-keys: {"keys":[ids],"key_details":[key objects],"next_marker":"","truncated":"false",
# "total":N} with total an integer and everything else strings; limit/marker page through.
source "$(dirname "$0")/../lib/common.sh"
kms_start_project kl

r=$(kms_call kl/list-keys '{}')
assert_ok "$r"
assert_eq "$(jget "$r" '.total | type')" number "type of total"
assert_eq "$(jget "$r" .total)" 0 "total of an empty project"
assert_eq "$(jget "$r" '.keys | length')" 0 "keys of an empty project"

ids=()
for a in k1 k2 k3; do ids+=("$(kms_create_key kl "$a")"); done
r=$(kms_call kl/list-keys '{}')
printf '%s' "$r" | jq -e '(.keys | type == "array") and (.key_details | type == "array")
	and .next_marker == "" and .truncated == "false" and .total == 3
	and (.keys | all(type == "string"))
	and (.key_details | all([.[] | type] | all(. == "string")))' >/dev/null ||
	fail "list-keys shape: $r"
for id in "${ids[@]}"; do
	assert_contains "$(jget "$r" '.keys | join(" ")')" "$id" "list-keys keys"
	assert_eq "$(jget "$r" ".key_details[] | select(.key_id == \"$id\") | .key_state")" 2 "key_state of $id"
done
assert_eq "$(jget "$r" '[.key_details[].key_alias] | sort | join(",")')" "k1,k2,k3" "aliases"
# The same through an empty read (cat with no request).
assert_eq "$(jget "$(kms_call kl/list-keys)" .total)" 3 "list-keys with an empty request"

# Paging.
r=$(kms_call kl/list-keys '{"limit":"2"}')
assert_eq "$(jget "$r" '.keys | length')" 2 "page 1 size"
assert_eq "$(jget "$r" .truncated)" true "page 1 truncated"
assert_eq "$(jget "$r" .total)" 3 "page 1 total"
m=$(jget "$r" .next_marker)
[ -n "$m" ] || fail "page 1 has no next_marker: $r"
r2=$(kms_call kl/list-keys "{\"limit\":\"2\",\"marker\":\"$m\"}")
assert_eq "$(jget "$r2" '.keys | length')" 1 "page 2 size"
assert_eq "$(jget "$r2" .truncated)" false "page 2 truncated"
all=$( (jget "$r" '.keys[]'; jget "$r2" '.keys[]') | sort | tr '\n' ' ')
assert_eq "$all" "$(printf '%s\n' "${ids[@]}" | sort | tr '\n' ' ')" "keys over both pages"
kms_umount
