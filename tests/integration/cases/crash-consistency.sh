#!/bin/bash
# kill -9 at random moments under load: 4 clients create keys, disable/enable them, rotate them
# and make data keys, while the daemon is killed KMS_CRASH_ROUNDS times (default 20) and
# restarted on the same mount point. Afterwards every key whose create-key response a client
# read exists, every data key a client received decrypts to the same DEK (whatever rotations
# happened), and kmsctl check passes.
source "$(dirname "$0")/../lib/common.sh"
rounds=${KMS_CRASH_ROUNDS:-20}
kms_setup
tok=$(kms_token crash)
kms_mount key_quota=100000
kms_login crash "$tok"
seed=$(kms_create_key crash seed)
journal=$KMS_WORK/journal
mkdir -p "$journal"
stop=$KMS_WORK/stop

# Clients: every success a client *read* goes into its journal before the next request.
"$KMS_PY" - "$KMS_MNT/crash" "$journal" "$stop" "$seed" "$KMS_DEKS" <<'PY' &
import json, os, random, sys, threading
base, journal, stop, seed, dekfile = sys.argv[1:6]
lock = threading.Lock()

def call(action, req):
    fd = os.open(os.path.join(base, action), os.O_RDWR)
    try:
        os.write(fd, json.dumps(req).encode())
        data = os.pread(fd, 1 << 20, 0)
    finally:
        try:
            os.close(fd)
        except OSError:
            pass
    r = json.loads(data)
    if "error" in r:
        raise RuntimeError(r["error"]["error_code"])
    return r

def client(n):
    keys = [seed]
    out = open(os.path.join(journal, f"c{n}"), "a", buffering=1)
    i = 0
    while not os.path.exists(stop):
        i += 1
        try:
            op = random.random()
            if op < 0.15:
                r = call("create-key", {"key_alias": f"c{n}-{i}-{random.randrange(1 << 30)}"})
                keys.append(r["key_info"]["key_id"])
                out.write(json.dumps({"key": keys[-1]}) + "\n")
            elif op < 0.25:
                k = random.choice(keys)
                try:
                    call("disable-key", {"key_id": k})
                finally:
                    call("enable-key", {"key_id": k})
            elif op < 0.35:
                call("rotate-key", {"key_id": random.choice(keys)})
            else:
                k = random.choice(keys)
                r = call("create-datakey", {"key_id": k, "datakey_length": "256"})
                with lock, open(dekfile, "a") as f:
                    f.write(r["plain_text"] + "\n")
                out.write(json.dumps({"key": k, "dek": r["plain_text"],
                                      "ct": r["cipher_text"]}) + "\n")
        except (OSError, RuntimeError, ValueError):
            pass  # the daemon is down or the key is in a transient state: try something else

threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
PY
kms_bg $!
clients=$!

for ((round = 1; round <= rounds; round++)); do
	sleep "0.$((RANDOM % 6 + 2))"
	kms_kill9
	kms_mount key_quota=100000
	# Tokens live in daemon memory only: the clients' uid sets it again after a restart.
	kms_login crash "$tok"
done
sleep 1
touch "$stop"
wait "$clients" || true
log "$rounds kills survived; $(cat "$journal"/c* | wc -l) journal entries"

# Verify: leave every key enabled (a crash may hit between disable and enable), then check.
"$KMS_PY" - "$KMS_MNT/crash" "$journal" <<'PY' || fail "a key or a data key was lost"
import glob, json, os, sys
base, journal = sys.argv[1:3]

def call(action, req):
    fd = os.open(os.path.join(base, action), os.O_RDWR)
    try:
        os.write(fd, json.dumps(req).encode())
        data = os.pread(fd, 1 << 20, 0)
    finally:
        try:
            os.close(fd)
        except OSError:
            pass
    return json.loads(data)

entries = [json.loads(l) for f in glob.glob(journal + "/c*") for l in open(f) if l.strip()]
keys = {e["key"] for e in entries}
bad = 0
for k in keys:
    call("enable-key", {"key_id": k})
    r = call("describe-key", {"key_id": k})
    if "error" in r:
        print(f"key {k} lost: {r}", file=sys.stderr); bad += 1
deks = [e for e in entries if "dek" in e]
for e in deks:
    r = call("decrypt-datakey", {"key_id": e["key"], "cipher_text": e["ct"],
                                 "datakey_cipher_length": str(len(e["dek"]) // 2)})
    if r.get("data_key") != e["dek"]:
        print(f"data key under {e['key']} does not decrypt: {r}", file=sys.stderr); bad += 1
print(f"# verified {len(keys)} keys and {len(deks)} data keys", file=sys.stderr)
sys.exit(1 if bad or not deks else 0)
PY
kms_umount
kms_ctl check >/dev/null || fail "kmsctl check after $rounds crashes"
