"""txn_readers_raw.py FILE SCRATCH - the raw calls of cases/txn-readers.sh.

Each of sendfile, splice and copy_file_range from a fresh handle of FILE (to a file in SCRATCH,
to a pipe): the whole answer or an OSError, never 0 with success; read() on the same handle
still gets the whole answer afterwards. mmap fails."""
import errno, json, os, subprocess, sys
f, scratch = sys.argv[1], sys.argv[2]

def check(what, data):
    doc = json.loads(data)
    assert "plain_text" in doc and data.endswith(b"\n"), (what, data)
    with open(os.environ["KMS_DEKS"], "a") as d:
        d.write(doc["plain_text"] + "\n")

def to_file(fd, call):
    out = os.open(os.path.join(scratch, "raw"), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        n = call(fd, out)
        return n, os.pread(out, 1 << 20, 0)
    finally:
        os.close(out)

def to_pipe(fd, call):
    r, w = os.pipe()
    try:
        n = call(fd, w)
    finally:
        os.close(w)
    data = os.read(r, 1 << 20)
    os.close(r)
    return n, data

calls = {
    "sendfile to a file": lambda fd: to_file(fd, lambda i, o: os.sendfile(o, i, None, 1 << 22)),
    "sendfile at 0 to a pipe": lambda fd: to_pipe(fd, lambda i, o: os.sendfile(o, i, 0, 65536)),
    "splice to a pipe": lambda fd: to_pipe(fd, lambda i, o: os.splice(i, o, 65536)),
    "copy_file_range": lambda fd: to_file(fd, lambda i, o: os.copy_file_range(i, o, 1 << 22)),
}
for what, call in calls.items():
    for mode in (os.O_RDONLY, os.O_RDWR):
        fd = os.open(f, mode)
        if mode == os.O_RDWR:
            os.write(fd, b'{"datakey_length":"512"}')
        try:
            n, data = call(fd)
        except OSError as e:
            print("# %s: %s" % (what, e), file=sys.stderr)
        else:
            assert n > 0, "%s: 0 bytes and no error" % what
            check(what, data)
        # The refused call used nothing up: read() gets the answer now.
        check(what + ", then pread", os.pread(fd, 1 << 20, 0))
        os.close(fd)

# mmap: MAP_SHARED is refused (ENODEV, direct_io); MAP_PRIVATE reads through the page cache,
# so the process must not get the answer (SIGBUS on the first access).
for flags in ("mmap.MAP_SHARED", "mmap.MAP_PRIVATE"):
    r = subprocess.run([sys.executable, "-c",
                        "import mmap, os, resource, sys; "
                        "resource.setrlimit(resource.RLIMIT_CORE, (0, 0)); "
                        "fd = os.open(sys.argv[1], os.O_RDONLY); "
                        "m = mmap.mmap(fd, 4096, flags=%s, prot=mmap.PROT_READ); "
                        "sys.stdout.buffer.write(m[:4096])" % flags, f], capture_output=True)
    assert r.returncode != 0 and b"plain_text" not in r.stdout, (flags, r)
    print("# mmap %s: exit %d %s" % (flags, r.returncode, r.stderr.decode()[-80:].strip()),
          file=sys.stderr)
