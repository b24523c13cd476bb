#!/bin/bash
# Crash safety under traffic: a client keeps creating keys (and a DEK under each) while the
# daemon is killed with SIGKILL at random moments and restarted on the same mount point, a few
# times. Every key whose create-key response was read must exist afterwards, and every DEK whose
# create-datakey response was read must unwrap to the same bytes.
source "$(dirname "$0")/../lib/common.sh"
# docs/operations.md: the default quota (100 keys) would stop the traffic.
kms_start_project dl key_quota=100000
tok=$KMS_TOKEN
seen=$KMS_SCRATCH/seen.txt
: >"$seen"

# The client: survives ENOTCONN/ECONNABORTED and lost token bindings, records what it was told.
"$KMS_PY" - "$KMS_MNT/dl" "$tok" "$seen" <<'PY' 2>"$KMS_WORK/client.err" &
import os, sys, time
sys.path.insert(0, os.path.dirname(os.environ["KMS_IO"]))
import kmsio  # kmsio.call records each DEK for the leak scan
P, tok, seen = sys.argv[1:4]
i = 0
with open(seen, "a", buffering=1) as log:
    while True:
        i += 1
        try:
            r = kmsio.call(P + "/create-key", {"key_alias": "k%d" % i})
            if r.get("error", {}).get("error_code") == "KMS.0301":
                os.setxattr(P, "user.kms.token", tok.encode())
                continue
            kid = r["key_info"]["key_id"]
            log.write("key %s\n" % kid)
            d = kmsio.call(P + "/create-datakey", {"key_id": kid})
            log.write("dek %s %s %s\n" % (kid, d["plain_text"], d["cipher_text"]))
        except (OSError, ValueError, KeyError) as e:
            print("client:", repr(e)[:200], file=sys.stderr, flush=True)
            time.sleep(0.02)
PY
client=$!
kms_bg "$client"

acked() { grep -c '^key ' "$seen" || true; }
for round in 1 2 3 4; do
	# Traffic must flow again after each restart before the next kill.
	n0=$(acked)
	for ((i = 0; i < 100; i++)); do [ "$(acked)" -ge $((n0 + 10)) ] && break; sleep 0.1; done
	[ "$(acked)" -ge $((n0 + 10)) ] || fail "round $round: no key traffic ($(tail -n 3 "$KMS_WORK/client.err"))"
	sleep "$("$KMS_PY" -c 'import random; print(round(random.uniform(0, 0.5), 2))')"
	kms_kill9
	log "round $round: killed with $(acked) keys acknowledged"
	kms_mount key_quota=100000
	assert_eq "$(kms_mount_count "$KMS_MNT")" 1 "mounts after restart $round"
done
sleep 0.5
kill "$client"
wait "$client" 2>/dev/null || true
bg=() # forget the reaped client, keep the watchdog
for p in "${KMS_BG_PIDS[@]}"; do [ "$p" == "$client" ] || bg+=("$p"); done
KMS_BG_PIDS=("${bg[@]}")
kms_login dl "$tok"

nkeys=$(grep -c '^key ' "$seen" || true)
[ "$nkeys" -ge 10 ] || fail "too little traffic to mean anything: $nkeys keys ($(tail -3 "$KMS_WORK/client.err"))"
"$KMS_PY" - "$KMS_MNT/dl" "$seen" <<'PY'
import os, sys
sys.path.insert(0, os.path.dirname(os.environ["KMS_IO"]))
import kmsio
P, seen = sys.argv[1:3]
keys, deks = [], []
for line in open(seen):
    f = line.split()
    if f[0] == "key":
        keys.append(f[1])
    elif f[0] == "dek" and len(f) == 4:
        deks.append(f[1:])
present = set(os.listdir(P + "/keys"))
missing = [k for k in keys if k not in present]
assert not missing, ("acknowledged keys lost", missing[:5], len(missing))
for k in keys:
    r = kmsio.call(P + "/describe-key", {"key_id": k})
    assert r.get("key_info", {}).get("key_state") == "2", (k, r)
for kid, pt, ct in deks:
    r = kmsio.call(P + "/decrypt-datakey", {"key_id": kid, "cipher_text": ct, "datakey_cipher_length": "64"})
    assert r.get("data_key") == pt, ("acknowledged DEK does not unwrap", kid, r)
print("# %d keys and %d DEKs survived 4 kill -9" % (len(keys), len(deks)), file=sys.stderr)
PY
kms_umount
kms_ctl check >/dev/null || fail "kmsctl check after the crashes"
