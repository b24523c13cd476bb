#!/bin/bash
# The Kubernetes manifests of deploy/kubernetes (docs/kubernetes.md) are valid YAML with the
# fields each kind requires, and run kmsfs and kmsctl as their --help says
# (lib/container_manifests.py); the Containerfile parses (`podman build` gets past parsing: on a
# stand-in base image its first RUN step fails, as it must without Debian's tools). The full
# image build is container-image.sh's, outside the default run.
source "$(dirname "$0")/../lib/common.sh"
"$KMS_PY" -c 'import yaml' 2>/dev/null || skip "PyYAML missing for $KMS_PY (apt-get install python3-yaml)"
for b in "$KMSFS" "$KMSCTL"; do [ -x "$b" ] || skip "not built: $b"; done
help=$(mktemp -d "${KMS_TMPDIR:-/tmp}/kmsfs-it.XXXXXX")
trap 'rm -rf "$help"' EXIT
"$KMSFS" --help >"$help/kmsfs" 2>&1 || true
"$KMSCTL" --help >"$help/kmsctl" 2>&1 || true
out=$("$KMS_PY" "$KMS_LIB/container_manifests.py" "$KMS_SRC/deploy/kubernetes" "$help/kmsfs" "$help/kmsctl" 2>&1) ||
	fail "deploy/kubernetes: $out"
log "$out"
assert_contains "$out" "DaemonSet/kmsfs" "objects checked"
