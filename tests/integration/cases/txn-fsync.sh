#!/bin/bash
# fsync() runs a written request without closing. On a handle that can read (O_RDWR) the answer
# stays on the handle for its read and nothing goes to the mailbox: one copy of a plaintext DEK,
# never a second one for a later O_RDONLY open of the file (that open runs a fresh, empty
# request). On a write-only handle the answer moves to the mailbox (the shell's `cat f` takes it,
# once). The mailboxes gauge of /kms/.metrics says how many answers wait.
source "$(dirname "$0")/../lib/common.sh"
kms_start_project fs
P=$KMS_MNT/fs
id=$(kms_create_key fs app)
F=$P/keys/$id/create-datakey
mailboxes() { sed -n 's/^kmsfs_mailboxes //p' "$KMS_MNT/.metrics"; }
assert_eq "$(mailboxes)" 0 "mailboxes at the start"

# O_RDWR: write, fsync (0), read the answer; the fsync put nothing in the mailbox.
out=$("$KMS_PY" - "$F" "$KMS_MNT/.metrics" <<'PY'
import json, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
os.write(fd, b'{"datakey_length":"256"}')
os.fsync(fd)
with open(sys.argv[2]) as m:
    held = [l for l in m if l.startswith("kmsfs_mailboxes ")]
r = os.pread(fd, 65536, 0)
assert b'"plain_text"' in r, r
os.close(fd)
print(held[0].split()[1], r.decode().strip())
PY
) || fail "fsync of an O_RDWR handle"
read -r held first <<<"$out"
kms_record "$first"
assert_eq "$held" 0 "mailboxes after fsync of an O_RDWR handle"
dek1=$(jget "$first" .plain_text)
# A later O_RDONLY open gets no copy of that answer: an empty request runs (a new DEK).
second=$(kms_cat "$F")
dek2=$(jget "$second" .plain_text)
[ -n "$dek2" ] || fail "the O_RDONLY open got no DEK: $second"
[ "$dek1" != "$dek2" ] || fail "the mailbox served a second copy of the DEK read on the handle"

# O_RDWR, fsync, close without reading: the answer stays with the handle and goes with it.
"$KMS_PY" - "$F" <<'PY' || fail "fsync then close of an O_RDWR handle"
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
os.write(fd, b'{"datakey_length":"256"}')
os.fsync(fd)
os.close(fd)
PY
sleep 0.2 # the RELEASE is asynchronous
assert_eq "$(mailboxes)" 0 "mailboxes after fsync and close of an unread O_RDWR handle"

# O_WRONLY: fsync moves the answer to the mailbox; close() reports 0 and runs nothing more; the
# next O_RDONLY open takes that answer, once.
"$KMS_PY" - "$F" <<'PY' || fail "fsync of a write-only handle"
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
os.write(fd, b'{"datakey_length":"256"}')
os.fsync(fd)
os.close(fd)
PY
assert_eq "$(mailboxes)" 1 "mailboxes after fsync of a write-only handle"
mailed=$(kms_cat "$F")
assert_eq "$(mailboxes)" 0 "mailboxes once taken"
[ "$(jget "$mailed" .plain_text | wc -c)" -eq 65 ] || fail "mailed answer: $mailed"
again=$(kms_cat "$F")
[ "$(jget "$mailed" .plain_text)" != "$(jget "$again" .plain_text)" ] || fail "the mailbox served its answer twice"
kms_umount
