#!/bin/bash
# Every common reader of an action file gets the whole answer, or fails loudly: never 0 bytes
# with exit status 0. GNU cat, busybox cat, cp, dd, head, a `while read` loop, Python's read(),
# shutil.copyfile, os.sendfile / os.splice / os.copy_file_range, Node's fs.readFileSync and
# fs.copyFileSync, tail. sendfile and splice come to kmsfs as page-cache reads, which it refuses
# (an answer must never sit in the shared page cache): the tools that fall back to read() get
# the answer, the others an error. Two users splicing the same file never see each other's
# answers. Tools that are not installed are skipped with a log line.
source "$(dirname "$0")/../lib/common.sh"
kms_setup
kms_user_setup
kms_start_project rd allow_other
id=$(kms_create_key rd app)
P=$KMS_MNT/rd
F=$P/keys/$id/create-datakey # every read-only open answers a fresh DEK for $id
O=$KMS_SCRATCH
utok=$(kms_token rd --user "$KMS_USER" --role crypto)
as_user setfattr -n user.kms.token -v "$utok" "$P" || fail "user setfattr"

# assert_answer WHAT FILE: FILE holds one whole create-datakey answer for $id (and its DEK is
# remembered for the leak scan).
assert_answer() {
	local out
	out=$(cat "$2")
	[ -n "$out" ] || fail "$1: 0 bytes and exit status 0"
	kms_record "$out"
	printf '%s' "$out" | jq -e --arg id "$id" \
		'.key_id == $id and (.plain_text | length) == 128 and (.cipher_text | length) > 0' \
		>/dev/null || fail "$1: not a whole create-datakey answer: '$out'"
	[ "$(tail -c 1 "$2" | od -An -c | tr -d ' ')" == '\n' ] || fail "$1: answer cut short"
}

# reader WHAT CMD...: CMD writes what it read to $O/out. It either gets the whole answer or
# fails (non-zero exit); it must not hang.
reader() {
	local what=$1 rc=0
	shift
	rm -f "$O/out"
	timeout 60 "$@" >"$O/err" 2>&1 || rc=$?
	[ "$rc" -ne 124 ] || fail "$what: hung (killed after 60 s)"
	if [ "$rc" -eq 0 ]; then
		assert_answer "$what" "$O/out"
		log "$what: whole answer"
	else
		[ ! -s "$O/out" ] || kms_record "$(cat "$O/out")"
		log "$what: fails loudly (exit $rc): $(head -c 200 "$O/err")"
	fi
}

# must_work WHAT CMD...: as reader, and CMD must succeed.
must_work() {
	local what=$1
	shift
	rm -f "$O/out"
	timeout 60 "$@" >"$O/err" 2>&1 || fail "$what failed: $(head -c 300 "$O/err")"
	assert_answer "$what" "$O/out"
}

# ---------------------------------------------------------------- what stat says
assert_eq "$(stat -c %s "$F")" 4194304 "st_size of an action file (the largest answer)"

# ---------------------------------------------------------------- readers that must get it
must_work "GNU cat" sh -c "cat '$F' >'$O/out'"
must_work "GNU cat into a pipe" sh -c "cat '$F' | cat >'$O/out'"
must_work "cp" cp "$F" "$O/out"
must_work "dd" dd if="$F" of="$O/out" status=none
must_work "dd bs=7" dd if="$F" of="$O/out" bs=7 status=none
must_work "head -c" sh -c "head -c 100000 '$F' >'$O/out'"
must_work "head -n 1" sh -c "head -n 1 '$F' >'$O/out'"
must_work "while read" bash -c "while IFS= read -r l; do printf '%s\n' \"\$l\"; done <'$F' >'$O/out'"
must_work "cat | tail" sh -c "cat '$F' | tail -n 1 >'$O/out'"
must_work "grep" sh -c "grep key_id '$F' >'$O/out'"
must_work "jq" sh -c "jq -c . '$F' >'$O/out'"
must_work "bash \$(<f)" bash -c "x=\$(<'$F'); printf '%s\n' \"\$x\" >'$O/out'"
must_work "python read()" "$KMS_PY" -c "open('$O/out','w').write(open('$F').read())"
must_work "shutil.copyfile" "$KMS_PY" -c "import shutil; shutil.copyfile('$F', '$O/out')"
must_work "shutil.copyfileobj" "$KMS_PY" -c \
	"import shutil; shutil.copyfileobj(open('$F','rb'), open('$O/out','wb'))"
if command -v busybox >/dev/null; then
	must_work "busybox cat" sh -c "busybox cat '$F' >'$O/out'"
	must_work "busybox cat into a pipe" sh -c "busybox cat '$F' | cat >'$O/out'"
	must_work "busybox cp" busybox cp "$F" "$O/out"
	must_work "busybox head" sh -c "busybox head -n 1 '$F' >'$O/out'"
	must_work "busybox dd" busybox dd if="$F" of="$O/out"
	# The shell pattern, as in an Alpine container: the answer comes from the mailbox.
	printf '{"datakey_length":"512"}' >"$F"
	must_work "echo > f; busybox cat f" sh -c "busybox cat '$F' >'$O/out'"
	reader "busybox tail" sh -c "busybox tail -n 1 '$F' >'$O/out'"
else
	log "busybox not installed: busybox checks skipped (apt-get install busybox-static)"
fi
if command -v node >/dev/null; then
	must_work "node fs.readFileSync" node -e \
		"require('fs').writeFileSync('$O/out', require('fs').readFileSync('$F'))"
	must_work "node fs.readFileSync utf8" node -e \
		"require('fs').writeFileSync('$O/out', require('fs').readFileSync('$F', 'utf8'))"
	must_work "node fs.readFile" node -e \
		"require('fs').readFile('$F', (e, b) => { if (e) throw e; require('fs').writeFileSync('$O/out', b) })"
	must_work "node fs.promises.readFile" node -e \
		"require('fs').promises.readFile('$F').then(b => require('fs').writeFileSync('$O/out', b))"
	reader "node fs.copyFileSync" node -e "require('fs').copyFileSync('$F', '$O/out')"
else
	log "node not installed: Node checks skipped (apt-get install nodejs)"
fi
if command -v go >/dev/null; then
	log "go is installed, but the io.Copy check is not part of this case (no module cache)"
else
	log "no Go toolchain: io.Copy check skipped"
fi
# GNU tail seeks to st_size minus a block first; that read is past the answer: an error.
reader "GNU tail" sh -c "tail -n 1 '$F' >'$O/out'"
reader "GNU tail -c" sh -c "tail -c 50 '$F' >'$O/out'"

# ---------------------------------------------------------------- the raw calls
# Each of sendfile, splice and copy_file_range from a fresh handle (to a file, a pipe): the whole
# answer or an OSError, never 0 with success; then read() on the same handle still gets the
# whole answer (nothing ran or was used up by the refused call). And mmap fails.
kms_py txn_readers_raw "$F" "$O" || fail "raw calls"

# ---------------------------------------------------------------- two users, one file
# Root and the test user each make transactions on the same file and try every page-cache path
# on their own handles while the other's answers are live. No splice/sendfile/mmap ever returns
# a byte, and each user's reads return only its own DEKs.
cat >"$KMS_WORK/two.py" <<'PY'
import json, mmap, os, sys
f, who, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
seen = []
for i in range(n):
    fd = os.open(f, os.O_RDWR)
    os.write(fd, b'{"datakey_length":"512"}')
    for attempt in ("sendfile", "splice"):
        r, w = os.pipe()
        try:
            got = os.sendfile(w, fd, 0, 65536) if attempt == "sendfile" else os.splice(fd, w, 65536)
        except OSError:
            got = -1
        os.close(w)
        leaked = os.read(r, 1 << 20)
        os.close(r)
        if got >= 0 or leaked:
            sys.exit("%s: %s returned %d (%r)" % (who, attempt, got, leaked[:80]))
    doc = json.loads(os.pread(fd, 1 << 20, 0))
    seen.append(doc["plain_text"])
    os.close(fd)
with open(os.environ["KMS_DEKS"], "a") as d:
    d.write("\n".join(seen) + "\n")
with open(os.path.join(os.environ["KMS_SCRATCH"], "deks." + who), "w") as out:
    out.write("\n".join(seen) + "\n")
PY
chmod 0644 "$KMS_WORK/two.py"
"$KMS_PY" "$KMS_WORK/two.py" "$F" root 150 &
rp=$!
as_user "$KMS_PY" "$KMS_WORK/two.py" "$F" user 150 || fail "the test user's transactions"
wait "$rp" || fail "root's transactions"
[ "$(sort "$O/deks.root" "$O/deks.user" | uniq -d | wc -l)" -eq 0 ] ||
	fail "a DEK was answered to both users"
[ "$(sort -u "$O/deks.root" | wc -l)" -eq 150 ] || fail "root's DEKs are not all distinct"
[ "$(sort -u "$O/deks.user" | wc -l)" -eq 150 ] || fail "the user's DEKs are not all distinct"

# Root holds an answer in an open handle; the user's own handles never splice or map it.
KMS_UID=$KMS_UID KMS_GID=$KMS_GID "$KMS_PY" - "$F" <<'PY' || fail "root's live answer reached the test user"
import json, os, subprocess, sys
f = sys.argv[1]
fd = os.open(f, os.O_RDWR)
os.write(fd, b'{"datakey_length":"512"}')
mine = json.loads(os.pread(fd, 1 << 20, 0))["plain_text"]
with open(os.environ["KMS_DEKS"], "a") as d:
    d.write(mine + "\n")
probe = ("import mmap, os, sys\n"
         "out = b''\n"
         "for i in range(20):\n"
         "    fd = os.open(sys.argv[1], os.O_RDONLY)\n"
         "    r, w = os.pipe()\n"
         "    try: os.sendfile(w, fd, 0, 65536)\n"
         "    except OSError: pass\n"
         "    try: os.splice(fd, w, 65536)\n"
         "    except OSError: pass\n"
         "    os.close(w); out += os.read(r, 1 << 20); os.close(r); os.close(fd)\n"
         "sys.stdout.buffer.write(out)\n")
uid, gid = int(os.environ["KMS_UID"]), int(os.environ["KMS_GID"])
r = subprocess.run(["setpriv", "--reuid=%d" % uid, "--regid=%d" % gid, "--clear-groups",
                    sys.executable, "-c", probe, f], capture_output=True)
assert r.returncode == 0, r
assert r.stdout == b"", ("the user spliced bytes", r.stdout[:200])
assert mine.encode() not in r.stdout
os.close(fd)
PY
kms_umount
