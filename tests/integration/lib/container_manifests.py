"""container_manifests.py - check the Kubernetes manifests of deploy/kubernetes (container-manifests.sh).

usage: container_manifests.py DIR KMSFS_HELP KMSCTL_HELP

Every *.yaml in DIR must parse (PyYAML) into objects with the fields their kind requires, as the
API server's validation would ask for them: apiVersion, kind, metadata.name; a DaemonSet's
spec.selector matching its template's labels; containers with a name and an image; exec probes
with a command; volumeMounts naming declared volumes; Bidirectional propagation only in a
privileged container. Then what these manifests promise (docs/kubernetes.md): the DaemonSet runs
kmsfs with options that `kmsfs --help` (file KMSFS_HELP) lists, on a mount point below a
Bidirectional mount, with liveness and readiness probes that run `kmsctl --state STATE status` on
the daemon's state directory (a command of `kmsctl --help`, file KMSCTL_HELP); the application Pod
mounts that shared directory with HostToContainer and points at a key folder below it.
Prints one line per object checked; exits 1 with the list of problems.
"""
import os
import re
import sys

import yaml

KINDS = {
    "Namespace": "v1",
    "Pod": "v1",
    "DaemonSet": "apps/v1",
    "Kustomization": "kustomize.config.k8s.io/v1beta1",
}
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
VOLUME_SOURCES = {"hostPath", "emptyDir", "configMap", "secret", "persistentVolumeClaim", "projected"}
HOSTPATH_TYPES = {"", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket",
                  "CharDevice", "BlockDevice"}
PROPAGATION = {"None", "HostToContainer", "Bidirectional"}

problems = []


def bad(where, msg):
    problems.append(f"{where}: {msg}")


def need(obj, path, where):
    """The value at the dotted path, or None (and a problem) when it is missing or empty."""
    cur = obj
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            bad(where, f"{path} is missing")
            return None
        cur = cur[part]
    if cur in (None, "", [], {}):
        bad(where, f"{path} is empty")
        return None
    return cur


def check_probe(probe, where):
    cmd = need(probe, "exec.command", where)
    if cmd is not None and not (isinstance(cmd, list) and all(isinstance(c, str) for c in cmd)):
        bad(where, "exec.command must be a list of strings")
    for field in ("periodSeconds", "timeoutSeconds", "initialDelaySeconds", "failureThreshold"):
        if field in probe and (not isinstance(probe[field], int) or probe[field] < 0):
            bad(where, f"{field} must be a non-negative integer")


def check_container(c, volumes, where):
    name = need(c, "name", where)
    if name is not None and not DNS_LABEL.match(str(name)):
        bad(where, f"name '{name}' is not a DNS label")
    where = f"{where} '{name}'"
    need(c, "image", where)
    for cmd in ("command", "args"):
        if cmd in c and not (isinstance(c[cmd], list) and all(isinstance(x, str) for x in c[cmd])):
            bad(where, f"{cmd} must be a list of strings")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        if probe in c:
            check_probe(c[probe], f"{where} {probe}")
    privileged = bool((c.get("securityContext") or {}).get("privileged"))
    for m in c.get("volumeMounts") or []:
        mw = f"{where} volumeMount {m.get('name')}"
        if m.get("name") not in volumes:
            bad(mw, "names no volume of the pod")
        path = need(m, "mountPath", mw)
        if path is not None and not str(path).startswith("/"):
            bad(mw, "mountPath must be absolute")
        prop = m.get("mountPropagation", "None")
        if prop not in PROPAGATION:
            bad(mw, f"mountPropagation '{prop}' is not one of {sorted(PROPAGATION)}")
        if prop == "Bidirectional" and not privileged:
            bad(mw, "Bidirectional propagation is allowed only in a privileged container")


def check_pod_spec(spec, where):
    volumes = {}
    for v in spec.get("volumes") or []:
        name = need(v, "name", f"{where} volume")
        if name in volumes:
            bad(where, f"volume '{name}' declared twice")
        sources = [k for k in v if k in VOLUME_SOURCES]
        if len(sources) != 1:
            bad(f"{where} volume {name}", "needs exactly one source (hostPath, emptyDir, ...)")
        hp = v.get("hostPath")
        if hp is not None:
            path = need(hp, "path", f"{where} volume {name} hostPath")
            if path is not None and not str(path).startswith("/"):
                bad(f"{where} volume {name}", "hostPath.path must be absolute")
            if hp.get("type", "") not in HOSTPATH_TYPES:
                bad(f"{where} volume {name}", f"hostPath.type '{hp.get('type')}' is not valid")
        volumes[name] = v
    containers = need(spec, "containers", where) or []
    names = []
    for c in containers + (spec.get("initContainers") or []):
        check_container(c, volumes, f"{where} container")
        names.append(c.get("name"))
    if len(names) != len(set(names)):
        bad(where, "container names must be unique")
    return volumes


def check_object(obj, where):
    if not isinstance(obj, dict):
        bad(where, "not a mapping")
        return
    kind = need(obj, "kind", where)
    api = need(obj, "apiVersion", where)
    if kind not in KINDS:
        bad(where, f"kind '{kind}' is not one this check knows ({', '.join(sorted(KINDS))})")
        return
    if api != KINDS[kind]:
        bad(where, f"{kind} needs apiVersion {KINDS[kind]}, not {api}")
    if kind == "Kustomization":
        for r in need(obj, "resources", where) or []:
            if not os.path.isfile(os.path.join(os.path.dirname(where.split(":")[0]), r)):
                bad(where, f"resource '{r}' is not a file beside it")
        print(f"ok {where} {kind}")
        return
    name = need(obj, "metadata.name", where)
    if name is not None and not DNS_LABEL.match(str(name)):
        bad(where, f"metadata.name '{name}' is not a DNS label")
    where = f"{where} {kind}/{name}"
    if kind == "Pod":
        check_pod_spec(need(obj, "spec", where) or {}, where)
    elif kind == "DaemonSet":
        match = need(obj, "spec.selector.matchLabels", where) or {}
        labels = need(obj, "spec.template.metadata.labels", where) or {}
        if any(labels.get(k) != v for k, v in match.items()):
            bad(where, "spec.selector.matchLabels does not match spec.template.metadata.labels")
        check_pod_spec(need(obj, "spec.template.spec", where) or {}, where)
    print(f"ok {where}")


def help_options(text):
    """The -o NAME options and the commands a --help text lists."""
    return set(re.findall(r"-o ([a-z_]+)", text)), set(re.findall(r"^  ([a-z]+)\b", text, re.M))


def check_promises(objs, kmsfs_help, kmsctl_help):
    ds = [o for w, o in objs if o.get("kind") == "DaemonSet"]
    pods = [o for w, o in objs if o.get("kind") == "Pod"]
    if len(ds) != 1 or not pods:
        bad("deploy/kubernetes", "needs one DaemonSet and an example Pod")
        return
    spec = ds[0]["spec"]["template"]["spec"]
    kmsfs = [c for c in spec["containers"] if "kmsfs" in " ".join(c.get("command", []))]
    if len(kmsfs) != 1:
        bad("DaemonSet", "no container runs kmsfs")
        return
    c = kmsfs[0]
    cmd = c["command"]
    opts = ",".join(cmd[i + 1] for i, a in enumerate(cmd[:-1]) if a == "-o").split(",")
    known, _ = help_options(kmsfs_help)
    for o in opts:
        if o.split("=")[0] not in known:
            bad("DaemonSet kmsfs command", f"-o {o} is not an option of kmsfs --help")
    state = dict(o.split("=", 1) for o in opts if "=" in o).get("state")
    if not state:
        bad("DaemonSet kmsfs command", "no -o state=")
    mountpoint = [a for a in cmd[1:] if a.startswith("/")][:1]
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    if not mountpoint or not any(
            mountpoint[0].startswith(p.rstrip("/") + "/") and m.get("mountPropagation") == "Bidirectional"
            for p, m in mounts.items()):
        bad("DaemonSet", f"the mount point {mountpoint} is not below a Bidirectional mount")
    if state not in mounts:
        bad("DaemonSet", f"the state directory {state} is not a volume")
    _, commands = help_options(kmsctl_help)
    for probe in ("livenessProbe", "readinessProbe"):
        pc = (c.get(probe) or {}).get("exec", {}).get("command") or []
        words = [os.path.basename(pc[0])] + pc[1:] if pc else []
        if words[:4] != ["kmsctl", "--state", state, "status"]:
            bad(f"DaemonSet {probe}", f"must run kmsctl --state {state} status, runs {pc}")
        elif "status" not in commands:
            bad(f"DaemonSet {probe}", "kmsctl --help lists no status command")
    shared = {m["mountPath"] for m in c.get("volumeMounts", []) if m.get("mountPropagation") == "Bidirectional"}
    shared_host = {v["hostPath"]["path"] for v in spec.get("volumes", [])
                   if "hostPath" in v and any(m["name"] == v["name"] and m["mountPath"] in shared
                                              for m in c.get("volumeMounts", []))}
    for pod in pods:
        where = f"Pod/{pod['metadata']['name']}"
        pspec = pod["spec"]
        vols = {v["name"]: v for v in pspec.get("volumes", [])}
        ok = False
        for pc in pspec["containers"]:
            for m in pc.get("volumeMounts", []):
                hp = vols.get(m["name"], {}).get("hostPath", {}).get("path")
                if hp in shared_host:
                    ok = True
                    if m.get("mountPropagation") != "HostToContainer":
                        bad(where, f"mounts {hp} without mountPropagation: HostToContainer")
                    env = {e["name"]: e.get("value", "") for e in pc.get("env", [])}
                    below = m["mountPath"].rstrip("/") + "/"
                    if not any(v.startswith(below) and ("/keys/" in v or "/aliases/" in v)
                               for v in env.values()):
                        bad(where, "no environment variable names a key folder below the shared mount")
        if not ok:
            bad(where, f"mounts none of the DaemonSet's shared host paths {sorted(shared_host)}")


def main(argv):
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    directory = argv[1]
    with open(argv[2]) as f:
        kmsfs_help = f.read()
    with open(argv[3]) as f:
        kmsctl_help = f.read()
    objs = []
    files = sorted(f for f in os.listdir(directory) if f.endswith((".yaml", ".yml")))
    if not files:
        bad(directory, "no manifests")
    for name in files:
        path = os.path.join(directory, name)
        try:
            with open(path) as f:
                docs = [d for d in yaml.safe_load_all(f) if d is not None]
        except yaml.YAMLError as e:
            bad(path, f"not valid YAML: {e}")
            continue
        for i, d in enumerate(docs):
            check_object(d, f"{path}:{i}")
            if isinstance(d, dict):
                objs.append((path, d))
    if not problems:
        check_promises(objs, kmsfs_help, kmsctl_help)
    for p in problems:
        print(f"problem: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
