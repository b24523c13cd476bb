"""daemon-metrics.sh's Python side: a parser of the Prometheus text exposition format 0.0.4 as
/kms/.metrics writes it, and the check that its counters move exactly as the requests made here
say, with /kms/.status telling the same.

    metrics.py parse FILE              exit 0 if FILE is valid exposition text (else say why)
    metrics.py check MNT PROJECT       the requests, the deltas, .status (as root)
"""
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kmsio  # noqa: E402

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
SAMPLE = re.compile(r"^(" + NAME + r")(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"(?:,|$)')
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


def family(name, types):
    if name in types:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[: -len(suffix)]
        if name.endswith(suffix) and types.get(base) == "histogram":
            return base
    return None


def parse_labels(text):
    labels, pos = [], 0
    while pos < len(text):
        m = LABEL.match(text, pos)
        if not m:
            raise ValueError(f"bad labels: {{{text}}}")
        labels.append((m.group(1), m.group(2)))
        pos = m.end()
    if len({k for k, _ in labels}) != len(labels):
        raise ValueError(f"label named twice: {{{text}}}")
    return tuple(sorted(labels))


def parse(text):
    """{(name, labels): value}. Every sample line is `name{labels} value`, and its family has a
    HELP and a TYPE line before it; every name starts with kmsfs_. ValueError otherwise."""
    helps, types, samples = {}, {}, {}
    if not text.endswith("\n"):
        raise ValueError("no newline at the end")
    for line in text.split("\n")[:-1]:
        if line.startswith("# HELP "):
            name, _, text_ = line[7:].partition(" ")
            if name in helps or not text_ or not re.fullmatch(NAME, name):
                raise ValueError(f"bad or repeated HELP: {line}")
            helps[name] = text_
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            if name not in helps or name in types or kind not in TYPES:
                raise ValueError(f"TYPE without HELP, repeated or unknown: {line}")
            types[name] = kind
        else:
            m = SAMPLE.match(line)
            if not m:
                raise ValueError(f"not a sample line: {line!r}")
            name, labels, value = m.group(1), parse_labels(m.group(2) or ""), m.group(3)
            if family(name, types) is None:
                raise ValueError(f"sample before its HELP and TYPE: {line}")
            if (name, labels) in samples:
                raise ValueError(f"sample repeated: {line}")
            samples[(name, labels)] = float(value)
    for name, kind in types.items():
        if not name.startswith("kmsfs_"):
            raise ValueError(f"{name}: not kmsfs_")
        if kind == "counter" and not name.endswith("_total"):
            raise ValueError(f"counter {name} does not end in _total")
    if set(helps) != set(types):
        raise ValueError(f"HELP without TYPE: {set(helps) - set(types)}")
    check_histograms(types, samples)
    return samples


def check_histograms(types, samples):
    for name, kind in types.items():
        if kind != "histogram":
            continue
        buckets = sorted(
            (float(dict(lab)["le"]), v) for (n, lab), v in samples.items() if n == name + "_bucket"
        )
        counts = [v for _, v in buckets]
        if not buckets or buckets[-1][0] != float("inf") or counts != sorted(counts):
            raise ValueError(f"{name}: buckets not cumulative up to +Inf: {buckets}")
        if samples[(name + "_count", ())] != counts[-1] or (name + "_sum", ()) not in samples:
            raise ValueError(f"{name}: _count is not the +Inf bucket, or no _sum")


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def raw_call(path, req, flags=os.O_RDWR):
    """One transaction on one handle; the exact bytes sent and received."""
    fd = os.open(path, flags)
    try:
        kmsio.write_all(fd, req)
        resp = b"" if flags == os.O_WRONLY else kmsio.read_all(fd)
    finally:
        try:
            os.close(fd)
        except OSError:
            pass
    return len(req), len(resp), resp


def snapshot(mnt):
    with open(os.path.join(mnt, ".metrics")) as f:
        text = f.read()
    with open(os.path.join(mnt, ".status")) as f:
        status = json.load(f)
    return parse(text), status


def expect(what, got, want):
    if got != want:
        raise SystemExit(f"FAIL: {what}: expected {want}, got {got}")


def check(mnt, project):
    p = os.path.join(mnt, project)
    m0, _ = snapshot(mnt)
    sent = received = 0
    key_id = None
    for i in range(3):
        n_in, n_out, resp = raw_call(f"{p}/create-key", b'{"key_alias":"m%d"}' % i)
        sent, received = sent + n_in, received + n_out
        key_id = json.loads(resp)["key_info"]["key_id"]
    for _ in range(2):
        n_in, n_out, resp = raw_call(f"{p}/describe-key", b'{"key_id":"nope"}')
        sent, received = sent + n_in, received + n_out
        expect("describe-key of a bad id", json.loads(resp)["error"]["error_code"], "KMS.0205")
    n_in, n_out, _ = raw_call(f"{p}/describe-key", b'{"key_id":"%s"}' % key_id.encode())
    sent, received = sent + n_in, received + n_out
    # close() of a read-write handle does not wait for its RELEASE (no FLUSH: docs/using.md),
    # so the daemon may still hold the last handle for a moment.
    for _ in range(100):
        m1, st = snapshot(mnt)
        if value(m1, "kmsfs_open_handles") == 0:
            break
        time.sleep(0.05)

    def delta(name, **labels):
        return value(m1, name, **labels) - value(m0, name, **labels)

    expect("create-key ok", delta("kmsfs_requests_total", action="create-key", code="ok"), 3)
    expect("describe-key KMS.0205",
           delta("kmsfs_requests_total", action="describe-key", code="KMS.0205"), 2)
    expect("describe-key ok", delta("kmsfs_requests_total", action="describe-key", code="ok"), 1)
    expect("latency count", delta("kmsfs_request_duration_seconds_count"), 6)
    expect("request bytes", delta("kmsfs_request_bytes_total"), sent)
    expect("response bytes", delta("kmsfs_response_bytes_total"), received)
    if delta("kmsfs_key_cache_hits_total") < 1:
        raise SystemExit("FAIL: describe-key of a cached key is no cache hit")
    expect("open handles at rest", value(m1, "kmsfs_open_handles"), 0)
    expect("token bindings", value(m1, "kmsfs_token_bindings"), 1)
    expect("build_info", [k for k in m1 if k[0] == "kmsfs_build_info"],
           [("kmsfs_build_info", (("version", st["version"]),))])

    # .status says the same as .metrics (no request ran between the two reads).
    total = sum(v for (n, _), v in m1.items() if n == "kmsfs_requests_total")
    expect(".status serving", st["serving"], True)
    expect(".status requests.total", st["requests"]["total"], total)
    expect(".status by_action", st["requests"]["by_action"]["describe-key"],
           {"ok": value(m1, "kmsfs_requests_total", action="describe-key", code="ok"),
            "KMS.0205": value(m1, "kmsfs_requests_total", action="describe-key",
                              code="KMS.0205")})
    expect(".status latency count", st["request_duration_seconds"]["count"],
           value(m1, "kmsfs_request_duration_seconds_count"))
    expect(".status request bytes", st["request_bytes"], value(m1, "kmsfs_request_bytes_total"))
    expect(".status key cache", st["key_cache"]["entries"],
           value(m1, "kmsfs_key_cache_entries"))
    expect(".status limits", st["limits"]["open_handles"],
           value(m1, "kmsfs_open_handles_limit"))
    for k in ("uptime_seconds", "start_time_seconds", "open_handles", "held_answer_bytes",
              "mailboxes", "token_bindings", "buffered_request_bytes", "store"):
        if k not in st:
            raise SystemExit(f"FAIL: .status has no {k}: {st}")
    # The store's figures (values are the backend's: present in both, and the same).
    for name, where, key in (("kmsfs_key_cache_limit", "key_cache", "limit"),
                             ("kmsfs_key_cache_evictions_total", "key_cache", "evictions"),
                             ("kmsfs_store_online", "store", "online")):
        if (name, ()) not in m1:
            raise SystemExit(f"FAIL: .metrics has no {name}")
        expect(f".status {where}.{key}", float(st[where][key]), value(m1, name))
    if ("kmsfs_store_fresh_age_seconds", ()) not in m1 or "fresh_age_ms" not in st["store"]:
        raise SystemExit("FAIL: no store fresh age in .metrics or .status")

    # Gauges: a handle held open; an answer left in a mailbox (echo >f without cat).
    fd = os.open(f"{p}/create-key", os.O_RDWR)
    try:
        m2, _ = snapshot(mnt)
        expect("open handles with one open", value(m2, "kmsfs_open_handles"), 1)
    finally:
        os.close(fd)
    raw_call(f"{p}/gen-random", b'{"random_data_length":"512"}', os.O_WRONLY)
    m3, st3 = snapshot(mnt)
    expect("mailboxes", value(m3, "kmsfs_mailboxes"), 1)
    expect(".status mailboxes", st3["mailboxes"], 1)
    if value(m3, "kmsfs_held_answer_bytes") <= 0:
        raise SystemExit("FAIL: an answer in a mailbox holds no bytes")
    kmsio.call(f"{p}/gen-random")  # takes the mailbox
    m4, _ = snapshot(mnt)
    expect("mailboxes after the read", value(m4, "kmsfs_mailboxes"), 0)
    print("ok")


def main(argv):
    if len(argv) == 3 and argv[1] == "parse":
        with open(argv[2]) as f:
            try:
                parse(f.read())
            except ValueError as e:
                raise SystemExit(f"FAIL: {argv[2]}: {e}")
        return 0
    if len(argv) == 4 and argv[1] == "check":
        check(argv[2], argv[3])
        return 0
    raise SystemExit(__doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
