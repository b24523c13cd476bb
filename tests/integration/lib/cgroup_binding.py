#!/usr/bin/python3
"""cgroup_binding.py FILE REQ - a process that keeps one handle of FILE open, for
cases/cgroup-binding.sh: the case moves it between cgroups and changes bindings, and asks it
for requests on its open handle and on new ones.

Prints its pid, then answers each command read from stdin with one line:
  open   open FILE O_RDWR (its identity is captured here): "ok" or the errno name
  call   one transaction (REQ) on that handle: "ok", the response's error code or an errno name
  new    one transaction (REQ) on a new handle of FILE, closed afterwards: the same
  quit   exit
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.environ.get("KMS_IO", "")) or os.path.dirname(__file__))
import kmsio  # noqa: E402


def answer(resp):
    kmsio.record(resp)
    try:
        doc = json.loads(resp)
    except ValueError:
        return "unparsable:" + resp[:60].decode(errors="replace")
    return doc["error"]["error_code"] if "error" in doc else "ok"


def transact(fd, req):
    try:
        kmsio.write_all(fd, req)
        return answer(kmsio.read_all(fd))
    except OSError as e:
        return kmsio.errname(e)


def new_handle(path, req):
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError as e:
        return kmsio.errname(e)
    out = transact(fd, req)
    try:
        os.close(fd)
    except OSError:
        pass  # a failed request may fail close() too; the answer says why
    return out


def main(path, req):
    fd = -1
    print(os.getpid(), flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "quit":
            break
        if cmd == "open":
            try:
                fd = os.open(path, os.O_RDWR)
                out = "ok"
            except OSError as e:
                out = kmsio.errname(e)
        elif cmd == "call":
            out = transact(fd, req)
        elif cmd == "new":
            out = new_handle(path, req)
        else:
            out = "unknown command " + cmd
        print(out, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2].encode()))
