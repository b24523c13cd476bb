#!/usr/bin/python3
"""kmsio.py - the file-transaction client of the integration cases (plain open/read/write), and
the Python side of the daemon harness that the benchmarks share (lib/harness.sh is the shell side).

  kmsio.py rdwr  FILE [REQ|-]   one O_RDWR handle: write REQ (if given), read to EOF, close
  kmsio.py write FILE REQ|-     O_WRONLY|O_TRUNC: write REQ, close (the request runs at close)
  kmsio.py read  FILE           O_RDONLY: read to EOF (takes the mailbox, or runs `{}`)
  kmsio.py record               read JSON (one document per line) on stdin, remember its DEKs
  kmsio.py scan  DEKFILE PATH...  fail if a remembered DEK appears in a file under PATH
  kmsio.py memscan PID DEKFILE [STRING...]  fail if a remembered DEK (or STRING) is in the
                                writable memory of process PID
  kmsio.py finddaemon MNT EXE   print the pid of the process EXE that serves MNT (status 1: none)
Python cases `import kmsio` (the case files in lib/ sit beside it; other code: sys.path gets the
dirname of $KMS_IO) and use kmsio.call(path, req), or kmsio.write_all(fd, data) and
kmsio.read_all(fd) on a handle of their own. bench/soak imports the harness functions (a fresh
state dir, start_daemon, stop_daemon, issue_token, bind_token, find_leaks).

The response bytes go to stdout unchanged. The errno of each step (`0` when it worked) goes to
$KMS_SCRATCH/status.<uid> as `open=0 write=0 read=0 close=EACCES`, so a shell case can check
close() errors without losing the response. Every hex DEK seen in a `plain_text` or `data_key`
field (request or response) is appended to $KMS_DEKS for the end-of-test leak scan.
Exit status: 0 (even for API errors and failed syscalls), 2 on usage errors, 1 for a scan hit.
"""
import errno
import json
import os
import re
import sys

HEX = re.compile(r"^[0-9A-Fa-f]+$")


def errname(e):
    return errno.errorcode.get(e.errno, str(e.errno))


def dek_candidates(doc):
    """Hex DEKs in a request or response object (long and varied enough to be searchable)."""
    out = []
    if not isinstance(doc, dict):
        return out
    for field in ("plain_text", "data_key"):
        v = doc.get(field)
        if not isinstance(v, str) or not HEX.match(v):
            continue
        n = doc.get("datakey_plain_length")
        if field == "plain_text" and isinstance(n, (str, int)) and str(n).isdigit():
            v = v[: 2 * int(n)]  # encrypt-datakey: DEK || SHA-256(DEK); the DEK is the secret
        if len(v) >= 32 and len(set(v.upper())) >= 8:
            out.append(v.upper())
    return out


def record(blob):
    path = os.environ.get("KMS_DEKS")
    if not path:
        return
    deks = []
    for line in blob.decode("utf-8", "replace").splitlines():
        try:
            deks += dek_candidates(json.loads(line))
        except ValueError:
            pass
    if deks:
        with open(path, "a") as f:
            f.write("".join(d + "\n" for d in deks))


def write_all(fd, data):
    """Write all of data, whatever short writes the file system makes; OSError on a failed write."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def read_all(fd, size=1 << 20, buf=None):
    """Read fd to EOF with reads of size bytes; returns the bytes. buf: a bytearray that the reads
    go into, so that the caller keeps what was read before a read failed (OSError)."""
    if buf is None:
        buf = bytearray()
    while True:
        chunk = os.read(fd, size)
        if not chunk:
            return bytes(buf)
        buf += chunk


def status_path():
    d = os.environ.get("KMS_SCRATCH") or "/tmp"
    return os.path.join(d, "status.%d" % os.getuid())


def transact(mode, path, req):
    st = {"open": "0", "write": "0", "read": "0", "close": "0"}
    resp = bytearray()
    flags = {"rdwr": os.O_RDWR, "write": os.O_WRONLY | os.O_TRUNC, "read": os.O_RDONLY}[mode]
    fd = -1
    try:
        fd = os.open(path, flags)
    except OSError as e:
        st["open"] = errname(e)
    if fd >= 0:
        if req is not None:
            try:
                write_all(fd, req)
            except OSError as e:
                st["write"] = errname(e)
        if mode != "write":
            try:
                read_all(fd, buf=resp)
            except OSError as e:
                st["read"] = errname(e)
        try:
            os.close(fd)
        except OSError as e:
            st["close"] = errname(e)
    with open(status_path(), "w") as f:
        f.write(" ".join("%s=%s" % kv for kv in st.items()) + "\n")
    resp = bytes(resp)
    if req:
        record(req)
    record(resp)
    sys.stdout.buffer.write(resp)
    sys.stdout.flush()


def find_leaks(deks, paths):
    """The DEKs (hex strings) that appear in a file under paths, as hex in either case or (for
    DEKs of 16 bytes or more) as raw bytes: a list of (what, file), one per hit."""
    needles = []
    for d in sorted({d.upper() for d in deks}):
        needles.append((d, d.lower().encode()))
        if len(d) >= 32:
            needles.append((d + " (raw bytes)", bytes.fromhex(d)))
    hits = []
    for top in paths:
        files = [top] if os.path.isfile(top) else [
            os.path.join(r, n) for r, _, ns in os.walk(top) for n in ns]
        for fn in files:
            try:
                with open(fn, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            low = data.lower()
            for name, needle in needles:
                hay = data if name.endswith("(raw bytes)") else low
                if needle in hay:
                    hits.append((name, fn))
    return hits


def scan(dekfile, paths):
    try:
        with open(dekfile) as f:
            deks = [l.strip() for l in f if l.strip()]
    except FileNotFoundError:
        return 0
    hits = find_leaks(deks, paths)
    for name, fn in hits:
        print("LEAK: DEK %s... found in %s" % (name[:16], fn), file=sys.stderr)
    return 1 if hits else 0


def memscan(pid, dekfile, literals=()):
    """Search the writable memory of process pid for every DEK in dekfile (hex either case, and
    the raw bytes) and for each literal string (a token). Prints each hit with its mapping;
    returns 1 if there was any."""
    with open(dekfile) as f:
        deks = sorted({l.strip().upper() for l in f if l.strip()})
    needles = [("literal " + l[:12], l.encode()) for l in literals]
    for d in deks:
        needles += [(d, d.encode()), (d, d.lower().encode()), (d + " raw", bytes.fromhex(d))]
    hits = 0
    with open("/proc/%s/maps" % pid) as maps, open("/proc/%s/mem" % pid, "rb", 0) as mem:
        for line in maps:
            f = line.split()
            lo, hi = (int(x, 16) for x in f[0].split("-"))
            name = f[5] if len(f) > 5 else "[anon]"
            if "w" not in f[1] or name in ("[vvar]", "[vsyscall]"):
                continue
            if hi - lo > 1 << 32:
                print("memscan: skipping a %d GiB mapping" % ((hi - lo) >> 30), file=sys.stderr)
                continue
            try:
                mem.seek(lo)
                data = mem.read(hi - lo)
            except (OSError, ValueError, OverflowError):
                continue
            for what, needle in needles:
                i = data.find(needle)
                if i >= 0:
                    print("IN MEMORY: DEK %s... at %#x in %s: %r" % (
                        what[:16], lo + i, name, data[max(0, i - 48):i + 8]), file=sys.stderr)
                    hits += 1
    print("%d DEKs searched" % len(deks), file=sys.stderr)
    return 1 if hits else 0


def call(path, req=None, record_deks=True, check_close=False):
    """One same-handle transaction for python cases: returns the parsed response.
    req: dict (sent as compact JSON), bytes/str (sent as is) or None (read only).
    check_close: raise OSError if close() fails (for requests that must succeed)."""
    if isinstance(req, dict):
        req = json.dumps(req, separators=(",", ":"))
    if isinstance(req, str):
        req = req.encode()
    fd = os.open(path, os.O_RDWR if req is not None else os.O_RDONLY)
    done = False
    try:
        if req is not None:
            write_all(fd, req)
        resp = read_all(fd)
        done = True
    finally:
        try:
            os.close(fd)
        except OSError:
            if check_close and done:
                raise
            # otherwise: a failed request may also fail close(); the response says why
    if record_deks:
        if req:
            record(req)
        record(resp)
    return json.loads(resp)


def watchdog(seconds, pidfile, mnt, fired, workdir):
    """The case's guard, in its own session so that a SIGKILL of the case's process group
    (meson's timeout) does not reach it.
    - After SECONDS: SIGKILL the daemon and lazily unmount, so that a case blocked in a FUSE
      call gets an error, fails, and its EXIT trap still runs.
    - If the case dies without its trap (SIGKILL): do the trap's cleanup (daemon, mount, dir)."""
    import shutil, signal, time
    os.setsid()
    parent = os.getppid()
    deadline = time.monotonic() + float(seconds)

    def stop_daemon():
        try:
            pid = int(open(pidfile).read().strip())
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                if mnt.encode() in f.read().split(b"\0"):  # still ours, not a reused pid
                    os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            pass
        detach(mnt)

    def stop_the_rest():
        """Whatever else the case started under workdir: more daemons (lib/multihost.sh),
        PostgreSQL clusters (lib/pg.sh: postgres -D workdir/...), and their mounts."""
        prefix = workdir.rstrip("/").encode() + b"/"
        for d in os.listdir("/proc"):
            if not d.isdigit() or int(d) == os.getpid():
                continue
            try:
                with open("/proc/%s/cmdline" % d, "rb") as f:
                    args = f.read().split(b"\0")
                if any(a.startswith(prefix) for a in args):
                    os.kill(int(d), signal.SIGKILL)
            except (OSError, ValueError):
                pass
        with open("/proc/mounts") as f:
            for m in [l.split()[1] for l in f if len(l.split()) > 2]:
                if m.startswith(workdir.rstrip("/") + "/"):
                    detach(m)

    while True:
        time.sleep(0.5)
        if os.getppid() != parent:  # the case is gone and its trap did not run
            stop_daemon()
            stop_the_rest()
            shutil.rmtree(workdir, ignore_errors=True)
            return 0
        if deadline and time.monotonic() > deadline:
            deadline = 0
            open(fired, "w").close()
            stop_daemon()


# ---------------------------------------------------------------- the daemon harness
# The same steps as lib/harness.sh, for Python callers (bench/soak).

def mounted(mnt):
    """True when something is mounted on mnt."""
    with open("/proc/mounts") as f:
        return any(l.split()[1] == mnt for l in f if len(l.split()) > 2)


def detach(mnt):
    """Lazily detach whatever is still mounted on mnt; True when nothing is left."""
    import subprocess
    for _ in range(10):
        if not mounted(mnt):
            return True
        if subprocess.call(["fusermount3", "-uz", mnt], stderr=subprocess.DEVNULL) != 0:
            subprocess.call(["umount", "-l", mnt], stderr=subprocess.DEVNULL)
    return not mounted(mnt)


def _run_kmsctl(kmsctl, state, *args):
    import subprocess
    r = subprocess.run([kmsctl, "--state", state] + list(args),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0:
        raise RuntimeError("kmsctl %s: %s" % (" ".join(args[:4]),
                                              r.stderr.decode(errors="replace").strip()))
    return r.stdout.decode()


def init_state(kmsctl, state):
    """`kmsctl init` a fresh state dir, as an admin does before the first start."""
    _run_kmsctl(kmsctl, state, "init")


def issue_token(kmsctl, state, project, *args):
    """A new token for project (kmsctl creates the project); RuntimeError if kmsctl fails."""
    return _run_kmsctl(kmsctl, state, "token", "issue", "--project", project, *args).strip()


def bind_token(mnt, project, token):
    """Bind token to (this uid, project) on the mount."""
    os.setxattr(os.path.join(mnt, project), "user.kms.token", token.encode())


def _tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def start_daemon(cmd, mnt, out_path, env=None, timeout=30.0, tails=()):
    """Start cmd (`kmsfs MNT -f -o ...`) in a session of its own (a Ctrl-C of the caller must
    not reach it: it is stopped by unmounting), stdout and stderr appended to out_path; return
    the Popen once the mount on mnt answers. RuntimeError (with the tails of out_path and of the
    files in tails) if the daemon exits first or the mount is not live after timeout s."""
    import subprocess, time
    with open(out_path, "ab") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env,
                                start_new_session=True)
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if proc.poll() is not None:
            raise RuntimeError("%s exited (status %d) before the mount was live:\n%s" % (
                os.path.basename(cmd[0]), proc.returncode,
                "".join(_tail(p) for p in (out_path,) + tuple(tails))))
        if mounted(mnt):
            try:
                os.listdir(mnt)
                return proc
            except OSError:
                pass
        time.sleep(0.05)
    raise RuntimeError("%s not mounted on %s after %g s" % (
        os.path.basename(cmd[0]), mnt, timeout))


def stop_daemon(proc, mnt, timeout=120.0):
    """fusermount3 -u (retried while busy); the daemon must then exit by itself within timeout s
    (ASan's leak check takes a while), else it is killed; whatever is left on mnt is detached.
    Returns (exit status, [problems])."""
    import subprocess, time
    problems = []
    if proc.poll() is None and mounted(mnt):
        for i in range(50):
            r = subprocess.run(["fusermount3", "-u", mnt], stderr=subprocess.PIPE,
                               stdout=subprocess.DEVNULL)
            if r.returncode == 0 or not mounted(mnt):
                break
            if i == 49:
                problems.append("fusermount3 -u %s failed: %s" % (
                    mnt, r.stderr.decode(errors="replace").strip()))
            time.sleep(0.2)
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        problems.append("%s still running %g s after the unmount; killed" % (
            os.path.basename(proc.args[0]), timeout))
        proc.kill()
        rc = proc.wait()
    if not detach(mnt):
        problems.append("could not remove the mount on %s" % mnt)
    return rc, problems


def find_daemon(mnt, exe):
    """The pid of the process running exe whose command line names mnt, or None."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                if mnt.encode() in f.read().split(b"\0") and \
                        os.readlink("/proc/%s/exe" % pid) == exe:
                    return int(pid)
        except OSError:
            pass
    return None


def main(argv):
    if len(argv) >= 3 and argv[1] in ("rdwr", "write", "read"):
        req = None
        if len(argv) >= 4:
            req = sys.stdin.buffer.read() if argv[3] == "-" else argv[3].encode()
        elif argv[1] == "write":
            req = b""
        transact(argv[1], argv[2], req)
        return 0
    if len(argv) == 2 and argv[1] == "record":
        record(sys.stdin.buffer.read())
        return 0
    if len(argv) == 7 and argv[1] == "watchdog":
        return watchdog(*argv[2:])
    if len(argv) >= 4 and argv[1] == "memscan":
        return memscan(argv[2], argv[3], argv[4:])
    if len(argv) == 4 and argv[1] == "finddaemon":
        pid = find_daemon(argv[2], argv[3])
        if pid is None:
            return 1
        print(pid)
        return 0
    if len(argv) >= 3 and argv[1] == "scan":
        return scan(argv[2], argv[3:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
