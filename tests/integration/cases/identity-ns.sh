#!/bin/bash
# Tokens are scoped to (uid, mount namespace, project) (issue 15.1), checked with real namespaces:
# the host root's token does not apply in a new mount namespace (unshare -m, unshare -Urm: there
# root is still uid 0 to the daemon, as unshare -Ur maps it to the uid that ran it), and an
# unprivileged user's does not apply in its own unshare -Urm either; a namespace sets its own
# token, which the host and the other namespaces do not see, two namespaces at once with
# different tokens; removexattr removes only its own scope's binding; a namespace that ended
# takes its logins with it, even though the kernel reuses its number; a key folder
# bind-mounted in a new namespace is only reachable with that namespace's own login; a caller
# whose namespace the daemon cannot read gets no token (fail closed); and
# `getfattr -n user.kms.identity` (read-only, read by name only: never listed, so never
# copied) says how kmsfs sees the caller in each case. Last, real containers (podman + runc, a volume of the mount): root in a container cannot
# use the host admin's token and sets its own (skipped, with the reason, where podman cannot run).
source "$(dirname "$0")/../lib/common.sh"
source "$KMS_LIB/podman.sh"
kms_setup unshare nsenter setpriv getfattr
kms_user_setup
kms_start_project ns allow_other # the host root's admin token: KMS_TOKEN
P=$KMS_MNT/ns
id=$(kms_create_key ns app)
ctok_a=$(kms_token ns --user ctr-a --role viewer)
ctok_b=$(kms_token ns --user ctr-b --role crypto)
utok=$(kms_token ns --user u-host --role viewer)
utok_a=$(kms_token ns --user u-a --role crypto)
TOKENS=("$KMS_TOKEN" "$ctok_a" "$ctok_b" "$utok" "$utok_a")

ns_of() { readlink "/proc/$1/ns/mnt" | tr -dc 0-9; }
HOST_NS=$(ns_of 1 || true) # empty when pid 1 is not ours to read: host_namespace is then null
MY_NS=$(ns_of self)
MY_CG=$(sed -n 's/^0:://p' /proc/self/cgroup)

# ident PATH [PREFIX...]: user.kms.identity of PATH read through PREFIX (nsenter, setpriv, ...).
ident() {
	local p=$1 out
	shift
	out=$("$@" getfattr --absolute-names --only-values -n user.kms.identity "$p" 2>&1) ||
		fail "getfattr -n user.kms.identity $p as ${*:-this shell}: $out"
	printf '%s' "$out"
}

# expect_ident WHAT JSON UID MNTNS TOKEN_USER ROLE: the identity's fields (MNTNS "new": neither
# the host's nor ours; TOKEN_USER and ROLE "null" when none); never a token in it.
expect_ident() {
	local what=$1 j=$2 ns t
	printf '%s' "$j" | jq -e 'type == "object"' >/dev/null 2>&1 || fail "$what: not JSON: $j"
	assert_eq "$(jget "$j" .uid)" "$3" "$what: uid"
	ns=$(jget "$j" .mntns)
	if [ "$4" == new ]; then
		if [ "$ns" == null ] || [ "$ns" == "$MY_NS" ] || [ "$ns" == "$HOST_NS" ]; then
			fail "$what: mntns $ns is not a new namespace's: $j"
		fi
	else
		assert_eq "$ns" "$4" "$what: mntns"
	fi
	if [ -n "$HOST_NS" ]; then
		assert_eq "$(jget "$j" .host_namespace)" "$([ "$ns" == "$HOST_NS" ] && echo true || echo false)" \
			"$what: host_namespace"
	else
		assert_eq "$(jget "$j" .host_namespace)" null "$what: host_namespace (pid 1 unreadable)"
	fi
	assert_eq "$(jget "$j" '.token.user // "null"')" "$5" "$what: token user"
	assert_eq "$(jget "$j" '.role // "null"')" "$6" "$what: role"
	if [ "$5" == null ]; then
		assert_eq "$(jget "$j" .token_id)" null "$what: token_id"
		assert_contains "$(jget "$j" .token_error)" "KMS.0301" "$what: why no token"
	else
		assert_eq "$(jget "$j" .token_id)" "$(jget "$j" .token.id)" "$what: token_id"
	fi
	[ -z "$MY_CG" ] || jget "$j" .cgroup | grep -q '^/' || fail "$what: cgroup: $j"
	for t in "${TOKENS[@]}"; do assert_not_contains "$j" "$t" "$what: a token in the identity"; done
}

# list_as WHAT CODE|ok PREFIX...: list-keys through PREFIX answers CODE (or succeeds).
list_as() {
	local what=$1 want=$2 r
	shift 2
	r=$("$@" cat "$P/list-keys" 2>&1) || true
	if [ "$want" == ok ]; then assert_ok "$r"; else assert_errcode "$r" "$want"; fi
}

as_u=(setpriv --reuid="$KMS_UID" --regid="$KMS_GID" --clear-groups --)

# --- the host: its own token, the identity read-only and not listed --------------------------------
expect_ident "host root" "$(ident "$P")" 0 "$MY_NS" admin admin
expect_ident "host root, key folder" "$(ident "$P/keys/$id")" 0 "$MY_NS" admin admin
assert_not_contains "$(getfattr -d -m - "$P" 2>&1)" "kms.identity" "listxattr of the project"
cpdir=$(mktemp -d)
cp -a "$P/keys/$id/create-datakey" "$cpdir/copy" 2>/dev/null || true
[ -e "$cpdir/copy" ] || fail "cp -a of an action file made no copy"
assert_not_contains "$(getfattr -d -m - "$cpdir/copy" 2>&1)" "kms." "xattrs of a cp -a copy"
rm -rf "$cpdir"
err=$(setfattr -n user.kms.identity -v '{}' "$P" 2>&1) && fail "setfattr user.kms.identity succeeded"
assert_contains "$err" "Operation not permitted" "setfattr user.kms.identity"
err=$(setfattr -x user.kms.identity "$P" 2>&1) && fail "setfattr -x user.kms.identity succeeded"
assert_contains "$err" "Operation not permitted" "setfattr -x user.kms.identity"
list_as "host root" ok

# --- two namespaces at once (each kept alive by a sleeping process, entered with nsenter) -------
unshare -m --propagation private sleep 600 &
A=$!
kms_bg "$A"
unshare -m --propagation private sleep 600 &
B=$!
kms_bg "$B"
for _ in $(seq 50); do [ "$(ns_of "$A")" != "$MY_NS" ] && [ "$(ns_of "$B")" != "$MY_NS" ] && break; sleep 0.1; done
NA=$(ns_of "$A") NB=$(ns_of "$B")
inA=(nsenter -t "$A" -m --)
inB=(nsenter -t "$B" -m --)

# uid 0 in a new mount namespace: the host's token does not apply.
expect_ident "root in A, no token" "$(ident "$P" "${inA[@]}")" 0 "$NA" null null
list_as "root in A" KMS.0301 "${inA[@]}"
"${inA[@]}" ls "$P/keys" >/dev/null 2>&1 && fail "root in A lists the keys with the host's token"
# Its own token, set through its view of the mount: for it alone.
"${inA[@]}" setfattr -n user.kms.token -v "$ctok_a" "$P" || fail "setfattr in A"
expect_ident "root in A, own token" "$(ident "$P" "${inA[@]}")" 0 "$NA" ctr-a viewer
list_as "root in A" ok "${inA[@]}"
expect_ident "host root after A's login" "$(ident "$P")" 0 "$MY_NS" admin admin
expect_ident "root in B, no token" "$(ident "$P" "${inB[@]}")" 0 "$NB" null null
"${inB[@]}" setfattr -n user.kms.token -v "$ctok_b" "$P/keys" || fail "setfattr in B"
expect_ident "root in B, own token" "$(ident "$P" "${inB[@]}")" 0 "$NB" ctr-b crypto
expect_ident "root in A beside B" "$(ident "$P" "${inA[@]}")" 0 "$NA" ctr-a viewer
r=$("${inB[@]}" cat "$P/keys/$id/create-datakey-without-plaintext") || fail "B's data key"
assert_eq "$(jget "$r" .key_id)" "$id" "B's crypto token makes a data key"
r=$("${inA[@]}" cat "$P/keys/$id/create-datakey-without-plaintext") || fail "A's data key"
assert_errcode "$r" KMS.0307 # viewer

# removexattr removes only the caller's scope.
"${inA[@]}" setfattr -x user.kms.token "$P" || fail "setfattr -x in A"
expect_ident "root in A after its logout" "$(ident "$P" "${inA[@]}")" 0 "$NA" null null
expect_ident "root in B after A's logout" "$(ident "$P" "${inB[@]}")" 0 "$NB" ctr-b crypto
expect_ident "host root after A's logout" "$(ident "$P")" 0 "$MY_NS" admin admin
setfattr -x user.kms.token "$P" || fail "setfattr -x on the host"
expect_ident "host root after its logout" "$(ident "$P")" 0 "$MY_NS" null null
expect_ident "root in B after the host's logout" "$(ident "$P" "${inB[@]}")" 0 "$NB" ctr-b crypto
err=$("${inA[@]}" setfattr -x user.kms.token "$P" 2>&1) && fail "a second logout in A succeeded"
assert_contains "$err" "No such attribute" "a second logout in A"
kms_login ns "$KMS_TOKEN"
expect_ident "host root logged in again" "$(ident "$P")" 0 "$MY_NS" admin admin

# --- one thread that changes namespace itself ----------------------------------------------------
# kmsfs keeps a descriptor of /proc/TID/ns/mnt for a thread that comes back (from its third
# read of the namespace on), to read it without the path walk: the read must still be live.
# The same thread (no fork in between) opens as the host root five times, unshare(CLONE_NEWNS)s
# and opens at once (no token), then setns()es back and opens again (the host's token).
cat >"$KMS_WORK/same-thread.py" <<'INNER'
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNS = 0x00020000
path = sys.argv[1]
def answer():
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 65536).decode()
    finally:
        os.close(fd)
def ns():
    return os.readlink("/proc/self/ns/mnt")
out = [answer() for _ in range(5)]
home = os.open("/proc/self/ns/mnt", os.O_RDONLY)
before = ns()
if libc.unshare(CLONE_NEWNS) != 0:
    sys.exit("unshare: " + os.strerror(ctypes.get_errno()))
if ns() == before:
    sys.exit("unshare left the namespace as it was")
out.append(answer())
if libc.setns(home, CLONE_NEWNS) != 0:
    sys.exit("setns: " + os.strerror(ctypes.get_errno()))
if ns() != before:
    sys.exit("setns did not return to the first namespace")
out.append(answer())
for line in out:
    print(line.replace("\n", " "))
INNER
out=$("$KMS_PY" "$KMS_WORK/same-thread.py" "$P/list-keys" 2>&1) || fail "same-thread namespace change: $out"
assert_eq "$(wc -l <<<"$out")" 7 "answers of the same-thread run: $out"
for i in 1 2 3 4 5; do assert_ok "$(sed -n "${i}p" <<<"$out")"; done
assert_errcode "$(sed -n 6p <<<"$out")" KMS.0301 # the same thread, a new namespace: no token
assert_ok "$(sed -n 7p <<<"$out")"              # back in the host's: its token again

# --- an unprivileged user: the same scoping ---------------------------------------------------
"${as_u[@]}" setfattr -n user.kms.token -v "$utok" "$P" || fail "setfattr as $KMS_USER"
expect_ident "$KMS_USER on the host" "$(ident "$P" "${as_u[@]}")" "$KMS_UID" "$MY_NS" u-host viewer
expect_ident "$KMS_USER in A" "$(ident "$P" "${inA[@]}" "${as_u[@]}")" "$KMS_UID" "$NA" null null
list_as "$KMS_USER in A" KMS.0301 "${inA[@]}" "${as_u[@]}"
"${inA[@]}" "${as_u[@]}" setfattr -n user.kms.token -v "$utok_a" "$P" || fail "setfattr as $KMS_USER in A"
expect_ident "$KMS_USER in A, own token" "$(ident "$P" "${inA[@]}" "${as_u[@]}")" "$KMS_UID" "$NA" u-a crypto
expect_ident "$KMS_USER on the host beside A" "$(ident "$P" "${as_u[@]}")" "$KMS_UID" "$MY_NS" u-host viewer
expect_ident "root in A (not $KMS_USER's token)" "$(ident "$P" "${inA[@]}")" 0 "$NA" null null

# --- user namespaces: unshare -Urm ------------------------------------------------------------
# As root, -Ur maps the namespace's root to uid 0 again: the daemon sees uid 0, in a new mount
# namespace, so no token. As $KMS_USER (if unprivileged user namespaces are allowed) the
# namespace's root is $KMS_UID to the daemon, and its host token does not apply either.
expect_ident "root in unshare -Urm" "$(ident "$P" unshare -Urm)" 0 new null null
if out=$("${as_u[@]}" unshare -Urm true 2>&1); then
	expect_ident "$KMS_USER in unshare -Urm" "$(ident "$P" "${as_u[@]}" unshare -Urm)" "$KMS_UID" new null null
else
	log "unprivileged user namespaces unavailable ($out): $KMS_USER's unshare -Urm not checked"
fi

# --- a namespace that ended takes its logins with it --------------------------------------------
kill "$B"
wait "$B" 2>/dev/null || true
for _ in $(seq 50); do
	grep -q "mount namespace $NB has no process left" "$KMS_LOG" && break
	sleep 0.2
done
grep -q "mount namespace $NB has no process left" "$KMS_LOG" || fail "B's bindings were not dropped"
# The kernel gives B's number to the next namespace; it must not inherit B's login.
# shellcheck disable=SC2016 # expanded by the inner sh
out=$(unshare -m --propagation private sh -c 'readlink /proc/self/ns/mnt; cat "$1/list-keys"' sh "$P")
assert_errcode "$(sed -n 2p <<<"$out")" KMS.0301

# --- a key folder bind-mounted in a new namespace, as a container sees it ---------------------
mkdir -p "$KMS_WORK/container"
cat >"$KMS_WORK/bind.sh" <<'INNER'
set -u
P=$1 id=$2 t=$3 tok=$4
mount --bind "$P/keys/$id" "$t" 2>/dev/null && { echo "bound without a login"; exit 1; }
getfattr --absolute-names --only-values -n user.kms.identity "$P"
echo
setfattr -n user.kms.token -v "$tok" "$P" || exit 1
mount --bind "$P/keys/$id" "$t" || exit 1
cat "$t/create-datakey-without-plaintext"
getfattr --absolute-names --only-values -n user.kms.identity "$t"
echo
INNER
out=$(unshare -m --propagation private bash "$KMS_WORK/bind.sh" "$P" "$id" "$KMS_WORK/container" "$ctok_b" 2>&1) ||
	fail "key folder in a new namespace: $out"
expect_ident "root before its login, bind" "$(sed -n 1p <<<"$out")" 0 new null null
assert_eq "$(jget "$(sed -n 2p <<<"$out")" .key_id)" "$id" "data key through the bind mount"
expect_ident "root through its bind mount" "$(sed -n 3p <<<"$out")" 0 new ctr-b crypto
mountpoint -q "$KMS_WORK/container" && fail "the namespace's bind mount reached the host"
expect_ident "host root after the container" "$(ident "$P")" 0 "$MY_NS" admin admin

kill "$A"
wait "$A" 2>/dev/null || true

# --- a caller the daemon cannot see: fail closed, and told why ----------------------------------
# A daemon in a pid namespace of its own sees no pid for the host's callers, so not their mount
# namespace either: no token applies to them, and none can be set.
kms_umount
printf '#!/bin/sh\nexec unshare --pid --fork --kill-child "%s" "$@"\n' "$KMSFS" >"$KMS_WORK/kmsfs-pidns"
chmod +x "$KMS_WORK/kmsfs-pidns"
real_kmsfs=$KMSFS
KMSFS=$KMS_WORK/kmsfs-pidns
kms_mount allow_other
KMSFS=$real_kmsfs
err=$(setfattr -n user.kms.token -v "$KMS_TOKEN" "$P" 2>&1) && fail "a token bound for an unseen caller"
assert_contains "$err" "Operation not permitted" "setfattr by a caller the daemon cannot see"
j=$(ident "$P")
assert_eq "$(jget "$j" '[.pid, .mntns, .host_namespace, .token, .role] | map(tostring) | join(" ")')" \
	"0 null null null null" "identity of a caller the daemon cannot see"
assert_contains "$(jget "$j" .token_error)" "not visible in the daemon's pid namespace" "why no token"
list_as "a caller the daemon cannot see" KMS.0301
kms_umount
kms_mount allow_other
kms_login ns "$KMS_TOKEN"

# --- podman: a volume of the mount in a root container -----------------------------------------
# ct_setup skips the whole case when podman cannot run here; everything above has passed by now,
# so say why and pass.
skip() {
	printf '# %s: podman part skipped: %s\n' "$KMS_CASE" "$*" >&2
	exit 0
}
ct_setup
# setfattr and getfattr for busybox: the host's, run by its dynamic loader from /t/x.
mkdir -p "$CT_SCRIPTS/x"
for f in setfattr getfattr; do cp "$(command -v $f)" "$CT_SCRIPTS/x/"; done
ldso=
while read -r lib; do
	cp -L "$lib" "$CT_SCRIPTS/x/"
	case $lib in */ld-linux*) ldso=$(basename "$lib") ;; esac
done < <(ldd "$(command -v setfattr)" "$(command -v getfattr)" |
	awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// && $1 !~ /:$/ {print $1}' | sort -u)
[ -n "$ldso" ] || skip "no dynamic loader found for setfattr"
cat >"$CT_SCRIPTS/login.sh" <<EOS
x() { t=\$1; shift; /t/x/$ldso --library-path /t/x /t/x/\$t "\$@"; }
echo "list0 \$(cat /kms/ns/list-keys 2>&1)"
echo "ident0 \$(x getfattr --absolute-names --only-values -n user.kms.identity /kms/ns 2>&1)"
x setfattr -n user.kms.token -v "\$1" /kms/ns || echo "setfattr failed"
echo "list1 \$(cat /kms/ns/list-keys 2>&1)"
echo "ident1 \$(x getfattr --absolute-names --only-values -n user.kms.identity /kms/ns 2>&1)"
EOS
out=$(ct_run -v "$KMS_MNT:/kms:rslave" -v "$CT_SCRIPTS:/t:ro" "$CT_IMAGE" sh /t/login.sh "$ctok_a" 2>&1) ||
	fail "podman run: $out"
assert_errcode "$(sed -n 's/^list0 //p' <<<"$out")" KMS.0301
expect_ident "root container, no token" "$(sed -n 's/^ident0 //p' <<<"$out")" 0 new null null
assert_ok "$(sed -n 's/^list1 //p' <<<"$out")"
expect_ident "root container, own token" "$(sed -n 's/^ident1 //p' <<<"$out")" 0 new ctr-a viewer
jget "$(sed -n 's/^ident1 //p' <<<"$out")" .cgroup | grep -q '^/' || fail "the container's cgroup: $out"
expect_ident "host root after the container" "$(ident "$P")" 0 "$MY_NS" admin admin
# The next container is a new namespace: the last one's login is not its own.
out=$(ct_run -v "$KMS_MNT:/kms:rslave" "$CT_IMAGE" cat /kms/ns/list-keys 2>&1) || fail "podman run: $out"
assert_errcode "$out" KMS.0301
kms_umount
