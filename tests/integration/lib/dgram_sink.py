"""dgram_sink.py MODE PATH OUT [ARGS...] - a datagram socket standing in for systemd or syslogd,
for cases/daemon-notify.sh and cases/daemon-logs.sh.

  dgram_sink.py syslog PATH OUT               what /dev/log receives: one datagram a line
  dgram_sink.py notify PATH OUT MNT ENTRY     systemd's NOTIFY_SOCKET (sd_notify(3)): a line
                                              "PID MESSAGE" per datagram, PID the sender's
                                              (SO_PASSCRED) and the message's newlines as '|';
                                              on READY=1 at once "ready-check ok" when MNT is a
                                              mount point whose root lists ENTRY, else
                                              "ready-check failed: WHY". Ends after STOPPING=1.

PATH is bound (an AF_UNIX SOCK_DGRAM socket) before anything is written to OUT, whose first line
is "listening"; OUT is written line by line. Runs until killed, or 60 s without a datagram."""
import os
import socket
import struct
import sys


def ready_check(mnt, entry):
    try:
        if not os.path.ismount(mnt):
            return "failed: %s is not a mount point" % mnt
        names = os.listdir(mnt)
    except OSError as e:
        return "failed: %s: %s" % (mnt, e)
    return "ok" if entry in names else "failed: %s lists %s, not %s" % (mnt, names, entry)


def sender_pid(ancillary):
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            return struct.unpack("iII", data[:12])[0]
    return 0


def main(argv):
    if len(argv) < 4 or argv[1] not in ("syslog", "notify") or (argv[1] == "notify") != (len(argv) == 6):
        sys.stderr.write(__doc__)
        return 2
    mode, path, out = argv[1], argv[2], argv[3]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    s.bind(path)
    os.chmod(path, 0o666)
    s.settimeout(60)
    with open(out, "a", buffering=1) as f:
        f.write("listening\n")
        while True:
            try:
                data, anc, _, _ = s.recvmsg(65536, socket.CMSG_SPACE(12))
            except socket.timeout:
                f.write("timeout\n")
                return 1
            text = data.decode(errors="replace")
            if mode == "syslog":
                f.write(text.rstrip("\n").replace("\n", "|") + "\n")
                continue
            f.write("%d %s\n" % (sender_pid(anc), text.replace("\n", "|")))
            fields = text.split("\n")
            if "READY=1" in fields:
                f.write("ready-check %s\n" % ready_check(argv[4], argv[5]))
            if "STOPPING=1" in fields:
                return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
