#!/bin/bash
# Tags, counters, quotas and versions (issue 4.6, kms-api.md 4.9, 4.11): keys/<id>/tags adds
# ({"tag":...}) and lists (cat), keys/<id>/delete-tag and tags-action create/delete change them,
# <P>/tags lists the project's keys and values, resource_instances-action filters and counts by
# tags and resource_name; tag limits (KMS.0406/0411 key characters/length, KMS.0405/0410 value, KMS.0409 more than 10
# tags on a key, KMS.0407 more than 10 items in one tags-action);
# user-instances and user-quotas are readable files with the real numbers; -o key_quota=N caps
# the keys per project (KMS.1105, pending deletion still counts); versions and version files.
source "$(dirname "$0")/../lib/common.sh"
kms_start_project lt
P=$KMS_MNT/lt
a=$(kms_create_key lt alpha)
b=$(kms_create_key lt beta)
c=$(kms_create_key lt gamma)

# keys/<id>/tags: add, list; delete-tag; tags-action
assert_eq "$(kms_call "lt/keys/$a/tags" '{"tag":{"key":"env","value":"prod"}}')" "{}" "add a tag"
echo '{"tag":{"key":"team","value":"blue"}}' >"$P/keys/$a/tags"
assert_eq "$(cat "$P/keys/$a/tags")" "{}" "echo > tags; cat tags"
r=$(cat "$P/keys/$a/tags")
assert_eq "$(jget "$r" '"\([.tags[] | "\(.key)=\(.value)"] | sort | join(",")) \(.sys_tags | length) \(.existTagsNum)"')" \
	"env=prod,team=blue 0 2" "cat keys/<id>/tags"
assert_ok "$(kms_call "lt/keys/$a/tags" '{"tag":{"key":"env","value":"staging"}}')"
assert_eq "$(jget "$(cat "$P/keys/$a/tags")" '[.tags[] | select(.key == "env") | .value] | join(",")')" staging \
	"a tag's value replaced"
assert_ok "$(kms_call "lt/keys/$a/delete-tag" '{"key":"team"}')"
assert_eq "$(jget "$(cat "$P/keys/$a/tags")" '[.tags[].key] | join(",")')" env "tags after delete-tag"
assert_ok "$(kms_call "lt/keys/$b/tags-action" '{"action":"create","tags":[{"key":"env","value":"prod"},{"key":"team","value":"red"},{"key":"tmp","value":""}]}')"
assert_ok "$(kms_call "lt/keys/$b/tags-action" '{"action":"delete","tags":[{"key":"tmp"}]}')"
assert_eq "$(jget "$(cat "$P/keys/$b/tags")" '[.tags[] | "\(.key)=\(.value)"] | sort | join(",")')" \
	"env=prod,team=red" "tags after tags-action"
assert_errcode "$(kms_call "lt/keys/$b/tags-action" '{"action":"update","tags":[{"key":"x","value":"y"}]}')" KMS.0404
assert_errcode "$(kms_call "lt/keys/$b/tags-action" '{"action":"create","tags":[]}')" KMS.0401
assert_eq "$(jget "$(cat "$P/keys/$c/tags")" .existTagsNum)" 0 "untagged key"

# <P>/tags
r=$(cat "$P/tags")
assert_eq "$(jget "$r" '[.tags[] | "\(.key):\(.values | sort | join("|"))"] | sort | join(",")')" \
	"env:prod|staging,team:red" "project tags"

# resource_instances-action
ri() { kms_call lt/resource_instances-action "$1"; }
r=$(ri '{"action":"filter","tags":[{"key":"env","values":["prod"]}]}')
assert_eq "$(jget "$r" '"\(.total_count) \([.resources[].resource_id] | join(","))"')" "1 $b" "filter env=prod"
assert_eq "$(jget "$r" '.resources[0] | "\(.resource_name) \(.resource_detail.key_id) \([.tags[].key] | sort | join(","))"')" \
	"beta $b env,team" "filter resource fields"
r=$(ri '{"action":"filter","tags":[{"key":"env","values":["prod","staging"]}]}')
assert_eq "$(jget "$r" '[.resources[].resource_id] | sort | join(",")')" "$(printf '%s\n' "$a" "$b" | sort | paste -sd,)" \
	"filter env in (prod, staging)"
assert_eq "$(jget "$(ri '{"action":"count","tags":[{"key":"env","values":["prod","staging"]}]}')" .total_count)" 2 "count env"
assert_eq "$(jget "$(ri '{"action":"count","tags":[{"key":"env","values":[]},{"key":"team","values":["red"]}]}')" .total_count)" 1 \
	"count env=any and team=red"
assert_eq "$(jget "$(ri '{"action":"count"}')" .total_count)" 3 "count of all keys"
r=$(ri '{"action":"filter","matches":[{"key":"resource_name","value":"gam"}]}')
assert_eq "$(jget "$r" '"\(.total_count) \(.resources[0].resource_id)"')" "1 $c" "matches resource_name"
assert_eq "$(jget "$(ri '{"action":"filter","limit":"1","offset":"1"}')" '.resources | length')" 1 "limit/offset"
assert_errcode "$(ri '{"action":"sort"}')" KMS.0404
assert_errcode "$(ri '{"action":"filter","matches":[{"key":"alias","value":"x"}]}')" KMS.0403

# Tag limits: key 1..36 characters without *<>\= or control characters, value <= 43, 10 tags.
assert_ok "$(kms_call "lt/keys/$c/tags" "{\"tag\":{\"key\":\"$(printf 'ä%.0s' $(seq 36))\",\"value\":\"$(printf 'v%.0s' $(seq 43))\"}}")"
for bad in "a=b" "a*b" "a<b" "a>b" 'a\\b' 'a\tb'; do
	assert_errcode "$(kms_call "lt/keys/$c/tags" "{\"tag\":{\"key\":\"$bad\",\"value\":\"v\"}}")" KMS.0406
done
for bad in "" "$(printf 'k%.0s' $(seq 37))"; do
	assert_errcode "$(kms_call "lt/keys/$c/tags" "{\"tag\":{\"key\":\"$bad\",\"value\":\"v\"}}")" KMS.0411
done
kms_write "lt/keys/$c/tags" '{"tag":{"key":"a=b","value":"v"}}'
assert_errno close EINVAL
assert_errcode "$(cat "$P/keys/$c/tags")" KMS.0406 # the writer's mailbox
for bad in "a=b" "x*"; do
	assert_errcode "$(kms_call "lt/keys/$c/tags" "{\"tag\":{\"key\":\"k\",\"value\":\"$bad\"}}")" KMS.0405
done
assert_errcode "$(kms_call "lt/keys/$c/tags" "{\"tag\":{\"key\":\"k\",\"value\":\"$(printf 'v%.0s' $(seq 44))\"}}")" KMS.0410
for i in 2 3 4 5 6 7 8 9 10; do
	assert_ok "$(kms_call "lt/keys/$c/tags" "{\"tag\":{\"key\":\"t$i\",\"value\":\"$i\"}}")"
done
assert_eq "$(jget "$(cat "$P/keys/$c/tags")" .existTagsNum)" 10 "ten tags"
assert_errcode "$(kms_call "lt/keys/$c/tags" '{"tag":{"key":"t11","value":"11"}}')" KMS.0409
assert_errcode "$(kms_call "lt/keys/$c/tags-action" '{"action":"create","tags":[{"key":"t11","value":"11"}]}')" KMS.0409
assert_ok "$(kms_call "lt/keys/$c/tags" '{"tag":{"key":"t10","value":"ten"}}')" # replacing is not adding
many=$(jq -nc '{action:"create",tags:[range(11) | {key:"m\(.)",value:"v"}]}')
assert_errcode "$(kms_call "lt/keys/$a/tags-action" "$many")" KMS.0407
assert_eq "$(jget "$(cat "$P/keys/$a/tags")" .existTagsNum)" 1 "no tag added by a refused batch"

# Counters and versions: plain readable files.
assert_eq "$(cat "$P/user-instances")" '{"instance_num":3}' "cat user-instances"
r=$(cat "$P/user-quotas")
assert_eq "$(jget "$r" '[.quotas.resources[] | "\(.type):\(.used)/\(.quota)"] | join(" ")')" \
	"CMK:3/100 grant_per_CMK:0/100" "cat user-quotas (default quota 100)"
jget "$r" '[.quotas.resources[] | (.used|type), (.quota|type)] | unique == ["number"]' | grep -qx true ||
	fail "user-quotas numbers are not integers: $r"
r=$(cat "$P/versions")
assert_eq "$(jget "$r" '.versions[0] | "\(.id) \(.status) [\(.min_version)] [\(.version)] \(.updated) \(.links[0].rel)"')" \
	"v1.0 CURRENT [] [] 2018-09-05T08:18:05Z self" "cat versions"
assert_eq "$(jget "$(cat "$P/version")" .version.id)" v1.0 "cat version"
assert_eq "$(jget "$(cat "$P/version")" .version.status)" CURRENT "cat version status"
kms_umount

# -o key_quota=2: per project; a third key is KMS.1105, also while one is pending deletion.
kms_mount key_quota=2
kms_login lt
kms_login lq "$(kms_token lq)"
q1=$(kms_create_key lq q1)
kms_create_key lq q2 >/dev/null
assert_errcode "$(kms_call lq/create-key '{"key_alias":"q3"}')" KMS.1105
kms_write lq/create-key '{"key_alias":"q3"}'
assert_errno close EDQUOT
assert_eq "$(jget "$(cat "$KMS_MNT/lq/user-quotas")" '.quotas.resources[] | select(.type == "CMK") | "\(.used)/\(.quota)"')" \
	"2/2" "user-quotas with key_quota=2"
assert_eq "$(jget "$(cat "$KMS_MNT/lq/user-instances")" .instance_num)" 2 "user-instances with key_quota=2"
assert_ok "$(kms_call "lq/keys/$q1/schedule-key-deletion" '{"pending_days":"7"}')"
assert_errcode "$(kms_call lq/create-key '{"key_alias":"q3"}')" KMS.1105
assert_errcode "$(kms_call lt/create-key '{"key_alias":"delta"}')" KMS.1105
assert_eq "$(ls "$KMS_MNT/lq/keys" | wc -l)" 2 "keys under the quota"
kms_umount
