"""fdpass.py - the clients of cases/acl-fd-passing.sh: descriptors that change hands.

  fdpass.py setuid-flush PATH REQ rdwr|wronly
  fdpass.py serve SOCK read|close
  fdpass.py give SOCK PATH REQ read|noread
  fdpass.py take SOCK REQ
  fdpass.py twice PATH REQ1|- REQ2 GATE
"""
import os, socket, subprocess, sys, time
import kmsio
from kmsio import read_all, write_all


def close_quietly(fd):
    """close() reports a refused request (EACCES): the answer says it already."""
    try:
        os.close(fd)
    except OSError:
        pass


def out(b):
    kmsio.record(b)
    sys.stdout.buffer.write(b)
    sys.stdout.flush()


def setuid_flush(path, req, mode):
    """Write req, let `fusermount3 -V` (setuid root) inherit the descriptor and exit, then read
    the answer (O_RDWR) or just close (O_WRONLY)."""
    fd = os.open(path, os.O_RDWR if mode == "rdwr" else os.O_WRONLY)
    write_all(fd, req.encode())
    kmsio.record(req.encode())
    subprocess.run(["fusermount3", "-V"], pass_fds=(fd,), stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True)
    if mode == "rdwr":
        out(read_all(fd))
    close_quietly(fd)


def wait_for(path, limit=60):
    end = time.monotonic() + limit
    while not os.path.exists(path):
        if time.monotonic() > end:
            sys.exit("timed out waiting for " + path)
        time.sleep(0.02)


def receive(sock_path, use):
    """Listen on sock_path (open to every uid), accept one descriptor over SCM_RIGHTS, use(fd),
    then say "done" back."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(sock_path + ".tmp")
    os.chmod(sock_path + ".tmp", 0o777)
    # Listening before the name appears: a sender that sees it never finds nobody there.
    s.listen(1)
    os.rename(sock_path + ".tmp", sock_path)
    c, _ = s.accept()
    _, fds, _, _ = socket.recv_fds(c, 16, 1)
    use(fds[0])
    c.sendall(b"done")
    c.close()
    s.close()
    os.unlink(sock_path)


def serve(sock_path, what):
    """Receive one descriptor, then read it to EOF (print the answer) or only close it."""
    def use(fd):
        if what == "read":
            out(read_all(fd))
        close_quietly(fd)
    receive(sock_path, use)


def give(sock_path, path, req, then_read):
    """Open path O_RDWR, write req (if any), hand the descriptor over, wait, then read it."""
    fd = os.open(path, os.O_RDWR)
    if req:
        write_all(fd, req.encode())
    wait_for(sock_path)
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(sock_path)
    socket.send_fds(c, [b"x"], [fd])
    assert c.recv(4) == b"done"
    c.close()
    if then_read == "read":
        out(read_all(fd))
    close_quietly(fd)


def take(sock_path, req):
    """Receive a descriptor (opened by someone else) and do a whole transaction on it."""
    def use(fd):
        write_all(fd, req.encode())
        out(read_all(fd))
        close_quietly(fd)
    receive(sock_path, use)


def twice(path, req1, req2, gate):
    """Two transactions on one O_RDWR handle, the second after gate.go exists."""
    fd = os.open(path, os.O_RDWR)
    if req1 != "-":
        write_all(fd, req1.encode())
        out(read_all(fd).rstrip(b"\n") + b"\n")
    with open(gate + ".ready", "w"):
        pass
    wait_for(gate + ".go")
    write_all(fd, req2.encode())
    out(read_all(fd))
    close_quietly(fd)


cmd = sys.argv[1]
if cmd == "setuid-flush":
    setuid_flush(*sys.argv[2:5])
elif cmd == "serve":
    serve(*sys.argv[2:4])
elif cmd == "give":
    give(*sys.argv[2:6])
elif cmd == "take":
    take(*sys.argv[2:4])
elif cmd == "twice":
    twice(*sys.argv[2:6])
else:
    sys.exit("usage")
