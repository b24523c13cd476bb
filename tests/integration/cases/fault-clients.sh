#!/bin/bash
# Clients that misbehave: killed mid-transaction, handles left open, half-written requests,
# thousands of open handles, a client that never reads. The daemon keeps serving other callers
# correctly, and its file descriptors and memory stay bounded.
#
# The bounds (src/fs/fs_internal.h, src/fs/fs_txn.c, src/common/kms_limits.h):
#   * a request body is at most 64 KiB (KMS_MAX_REQUEST): the write that crosses it fails with
#     EFBIG, the response is KMS.0203 and close() fails with EFBIG;
#   * request bytes buffered by all open handles together are at most 256 MiB
#     (FS_MAX_BUFFERED_BYTES = 4096 requests of 64 KiB), and those of the handles one uid opened
#     at most a quarter of that (1024 requests): a write beyond either fails with ENOMEM;
#   * at most 100000 open handles (FS_MAX_OPEN_HANDLES; open fails with ENFILE beyond), 25000 per
#     uid (fault-uid-share tests the per-uid shares of every pool);
#   * a handle whose write was refused with ENOMEM never runs what it had: it answers KMS.0104
#     (503) and close() fails with EAGAIN;
#   * answers held by open handles and mailboxes together are at most 256 MiB
#     (FS_MAX_HELD_BYTES), 64 MiB per uid: past it, that uid's requests are refused with KMS.0104
#     / EAGAIN before running;
#   * at most 16384 unread mailboxes, each wiped after -o mailbox_ttl seconds;
#   * handles are not file descriptors of the daemon: its fd count does not depend on clients,
#     except for the O_PATH descriptors of /proc/TID/ns/mnt it keeps for client threads that
#     come back (src/fs/fs_identity.c): at most 64 (FS_MNTNS_LINK_SLOTS), each closed by the
#     janitor once its thread made no open for 2 s (FS_MNTNS_LINK_IDLE_NS).
#
# Steps:
#   1. SIGKILLed clients, 210 times: after half a JSON object, after a whole request but before
#      the read, in the middle of a batch (one write, and small chunks), at random moments of
#      chunked batch write/read loops, while blocked in the read of a slow batch, and on a handle
#      shared with the parent (which then does its own transaction on it and must get its own
#      answer). A correct round trip after each kind.
#   2. 5200 handles held at once (by one process, or by several when the hard RLIMIT_NOFILE is
#      lower): a quarter with half a JSON object, a quarter with half a batch line, a quarter
#      read-only and idle, a quarter with an answer read by one byte only. Meanwhile another
#      client's round trips are correct. At close, every half JSON object fails with EINVAL
#      (KMS.0202); afterwards the daemon's fds and RSS are back near the baseline.
#   3. A client that writes to many files and never reads (-o mailbox_ttl=1): big answers (a
#      batch of 21845 `{}` lines is answered by ~2 MiB of KMS.0204 lines) wait in mailboxes and
#      expire (a later cat gets a fresh one-line answer), and RSS does not grow burst after burst.
#   4. The bounds: 64 KiB (EFBIG on that write and later ones, KMS.0203, the handle usable
#      afterwards, close() EFBIG). Then, twice, the 256 MiB bound is filled with 64 KiB
#      half-written requests by four uids: exactly 1024 fit for root (its quarter; fewer would
#      mean that an earlier step leaked buffered-bytes accounting), the next write and even one
#      more byte fail with ENOMEM, a new writer of root elsewhere gets ENOMEM while another uid's
#      write is accepted; three more uids fit 1024 each, and then a fifth uid's write fails with
#      ENOMEM (the daemon-wide bound). Callers that need no request bytes (empty reads, cat) still
#      work, and once the handles close writes work again; the second fill fits 4 x 1024 again.
#      The handle whose write was refused answers KMS.0104 (it never runs a partial request).
#   5. Answers held unread (~2 MiB each, one byte read): root's requests are refused with
#      KMS.0104 past its 64 MiB share of held answers while another uid's still run, RSS stays
#      under the bound, and everything works once they close.
#   6. Handles that had a big answer, read it, then a small one, and stay open: RSS stays within
#      64 MiB (the daemon gives big request and answer blocks back when a transaction ends).
#
# RSS bounds. The daemon runs as shipped (mlockall, libfuse worker threads) with one change:
# GLIBC_TUNABLES=glibc.malloc.arena_max=1. With glibc's default per-thread arenas, each arena
# keeps the memory freed in it, and mlockall() keeps that resident, so RSS after a round depends
# on which worker threads served it: eight fills of the 256 MiB bound took RSS from 271 to
# 401 MiB, converging, with nothing leaked; that noise would hide a leak. With one arena the
# same eight fills peak at 271 MiB each time, and freed memory is reused or returned. So:
#   * steps 1-2 (a few MiB involved): fds within 4 and RSS within 64 MiB of the baseline
#     (measured: +0 to +8 MiB). Not tight: it catches leaked 64 KiB request buffers or ~2 MiB
#     answers by the dozen, not a leaked handle struct; step 4's exact 4096 catches leaked
#     request-byte accounting;
#   * steps 3-4: repeated rounds must not raise RSS, after expiry or at the peak, by 32 MiB
#     (measured: 0-4 MiB; a daemon built without the janitor's expiry: +45 MiB a burst; a fill
#     whose buffers leaked would be +256 MiB).
# Under ASan (detected from the binary, or KMS_ASAN=1) the tunable does not apply and freed
# memory goes through a quarantine first: the daemon gets a small one (quarantine_size_mb=16),
# every bound gets 128 MiB more room, and step 3 sends smaller batches (the instrumented JSON
# code is slow). There the RSS checks are sanity bounds; the sanitizers are what matters.
#
# Not tested here:
#   * the 100000-handle bound (ENFILE): one process may hold at most RLIMIT_NOFILE descriptors
#     (hard limit 20000 where this case was written, and root without CAP_SYS_RESOURCE cannot
#     raise it), so reaching it takes six processes and 10-20 s of opens and closes on a 2-core
#     machine: too slow for this case.
# Latencies are logged for information only (the machine may be busy): correctness is asserted.
source "$(dirname "$0")/../lib/common.sh"
kms_setup
kms_user_setup

asan=0
if [ "${KMS_ASAN:-0}" == 1 ] || grep -qa __asan_init "$KMSFS"; then asan=1; fi
slack=0     # extra MiB for ASan's quarantine and allocator
lines=21845 # batch lines of step 3's big requests (64 KiB, ~2 MiB answers)
asan_opts=${ASAN_OPTIONS:-}
if [ "$asan" == 1 ]; then
	slack=128
	lines=4096 # ~5x less work: the instrumented JSON code is slow, and the bound is loose anyway
	asan_opts="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=16"
fi

kms_token fc >/dev/null
GLIBC_TUNABLES="${GLIBC_TUNABLES:+$GLIBC_TUNABLES:}glibc.malloc.arena_max=1" ASAN_OPTIONS=$asan_opts \
	kms_mount mailbox_ttl=1 allow_other
tr '\0' '\n' <"/proc/$KMS_PID/environ" | grep -q '^GLIBC_TUNABLES=.*arena_max=1' ||
	fail "the daemon did not get GLIBC_TUNABLES=glibc.malloc.arena_max=1"
kms_login fc
P=$KMS_MNT/fc
DPID=$KMS_PID

# 60 keys in one batch: "app" for the clients, k1..k59 for the files of step 3.
req=$(printf '{"key_alias":"app"}\n'; for i in $(seq 1 59); do printf '{"key_alias":"k%d"}\n' "$i"; done)
kms_call fc/create-key "$req" >"$KMS_WORK/keys.json"
mapfile -t kids < <(jq -r '.key_info.key_id' "$KMS_WORK/keys.json")
[ "${#kids[@]}" -eq 60 ] || fail "batch create-key made ${#kids[@]} keys: $(head -c 300 "$KMS_WORK/keys.json")"
for k in "${kids[@]}"; do [[ $k =~ ^[0-9a-f-]{36}$ ]] || fail "batch create-key answered: $k"; done
id=${kids[0]}

# The helpers of every step: lib/fault_clients.py ("$KMS_PY" "$FC", not kms_py, where a step
# runs in the background: $! must be python's own pid, which the EXIT trap kills).
FC=$KMS_PYLIB/fault_clients.py

# Daemon figures: open fds but the kept namespace links, those links, resident MiB (VmRSS),
# threads. Every look at the fds checks the links' bound too (links_bounded).
d_nslinks() { find "/proc/$DPID/fd" -mindepth 1 -maxdepth 1 -lname '/proc/*/ns/mnt' | wc -l; }
d_fds() { find "/proc/$DPID/fd" -mindepth 1 -maxdepth 1 ! -lname '/proc/*/ns/mnt' | wc -l; }
links_bounded() {
	local n
	n=$(d_nslinks)
	[ "$n" -le 64 ] || fail "the daemon keeps $n namespace links (at most 64)"
}
d_rss() { awk '/^VmRSS:/ {print int($2 / 1024)}' "/proc/$DPID/status"; }
d_threads() { awk '/^Threads:/ {print $2}' "/proc/$DPID/status"; }
alive() { kill -0 "$DPID" 2>/dev/null || fail "the daemon died ($1)"; }

# wait_ready FILE PID: until the background helper PID wrote FILE.
wait_ready() {
	local i
	for ((i = 0; i < 1200; i++)); do
		[ -e "$1" ] && return 0
		kill -0 "$2" 2>/dev/null || { wait "$2" || true; fail "helper $2 exited before it was ready"; }
		sleep 0.05
	done
	fail "helper $2 not ready after 60 s"
}

# holder NAME FUNCTION ARGS...: run `$FC FUNCTION ARGS... NAME.ready NAME.release` (in the work
# dir) in the background until it is ready; its pid in HOLDER. release NAME WHAT: let it go, and
# it must succeed.
holder() {
	local name=$1
	shift
	rm -f "$KMS_WORK/$name.ready" "$KMS_WORK/$name.release"
	"$KMS_PY" "$FC" "$@" "$KMS_WORK/$name.ready" "$KMS_WORK/$name.release" &
	HOLDER=$!
	kms_bg "$HOLDER"
	wait_ready "$KMS_WORK/$name.ready" "$HOLDER"
}
release() {
	touch "$KMS_WORK/$1.release"
	wait "$HOLDER" || fail "$2 failed"
}

# Descriptors one helper process may hold (the hard RLIMIT_NOFILE; root may lack CAP_SYS_RESOURCE
# to raise it): steps 2 and 4 spread their handles over as many processes as that takes.
hardfd=$(ulimit -Hn)
[ "$hardfd" == unlimited ] && hardfd=1048576
per=$((hardfd - 64))
[ "$per" -ge 100 ] || skip "RLIMIT_NOFILE hard limit $hardfd is too small"

# Baseline, after a warm-up that starts a few worker threads (concurrent clients).
warm=()
for j in 1 2 3 4; do "$KMS_PY" "$FC" client "$P" "$id" 5 >/dev/null & warm+=($!); kms_bg $!; done
for p in "${warm[@]}"; do wait "$p" || fail "warm-up client $p failed"; done
lat0=$("$KMS_PY" "$FC" client "$P" "$id" 20) || fail "baseline round trips"
fd0=$(d_fds) rss0=$(d_rss)
links_bounded
log "baseline: fds=$fd0 rss=${rss0}MiB threads=$(d_threads) asan=$asan; round trip median/max ms: $lat0"

# ---------------------------------------------------------------- 1. killed clients
t=$SECONDS
r=$("$KMS_PY" "$FC" kills "$P" "$id" "$DPID") || fail "killed-clients step failed"
alive "after the killed clients"
log "killed clients ($((SECONDS - t)) s): $r"
fd1=$(d_fds) rss1=$(d_rss)
links_bounded
log "after the kills: fds=$fd1 rss=${rss1}MiB"
[ "$fd1" -le $((fd0 + 4)) ] && [ "$fd1" -ge $((fd0 - 4)) ] || fail "daemon fds $fd0 -> $fd1 after the killed clients"
[ "$rss1" -lt $((rss0 + 64 + slack)) ] || fail "daemon RSS ${rss0} -> ${rss1} MiB after the killed clients"

# ---------------------------------------------------------------- 2. thousands of open handles
want=5200 held=0 hogs=()
while [ "$held" -lt "$want" ]; do
	n=$((want - held < per ? want - held : per))
	"$KMS_PY" "$FC" hog "$P" "$held" "$n" "$KMS_WORK/hog.ready.${#hogs[@]}" "$KMS_WORK/hog.release" "${kids[@]:0:20}" &
	hogs+=($!)
	kms_bg $!
	held=$((held + n))
done
for i in "${!hogs[@]}"; do wait_ready "$KMS_WORK/hog.ready.$i" "${hogs[i]}"; done
lat2=$("$KMS_PY" "$FC" client "$P" "$id" 20) || fail "round trips while $held handles are open"
fd2=$(d_fds) rss2=$(d_rss)
links_bounded
log "$held handles held by ${#hogs[@]} process(es): fds=$fd2 rss=${rss2}MiB threads=$(d_threads); round trip median/max ms: $lat2"
[ "$fd2" -le $((fd0 + 4)) ] || fail "daemon fds $fd0 -> $fd2 with $held handles open"
[ "$rss2" -lt $((rss0 + 64 + slack)) ] || fail "daemon RSS ${rss0} -> ${rss2} MiB with $held handles open"
touch "$KMS_WORK/hog.release"
for p in "${hogs[@]}"; do wait "$p" || fail "a handle holder failed (closes of half-written requests: see above)"; done
sleep 0.5 # releases are asynchronous
alive "after $held handles closed"
"$KMS_PY" "$FC" client "$P" "$id" 5 >/dev/null || fail "round trips after the handles closed"
fd3=$(d_fds) rss3=$(d_rss)
links_bounded
log "after they closed: fds=$fd3 rss=${rss3}MiB"
[ "$fd3" -le $((fd0 + 4)) ] && [ "$fd3" -ge $((fd0 - 4)) ] || fail "daemon fds $fd0 -> $fd3 after the handles closed"
[ "$rss3" -lt $((rss0 + 64 + slack)) ] || fail "daemon RSS ${rss0} -> ${rss3} MiB after the handles closed"

# ---------------------------------------------------------------- 3. a client that never reads
# Four bursts, each on the files of 12 other keys (5 files each, two with ~2 MiB answers: ~48 MiB
# of mailboxes), each left to expire. RSS after each expiry must not grow from one burst to the
# next (measured: flat, back to about the baseline; without the janitor's expiry, +45 MiB a
# burst). RSS just after a burst is only bounded: mailboxes expire while the burst runs.
declare -a rb=() re=()
for b in 0 1 2 3; do
	group=("${kids[@]:$((12 * b + 1)):12}")
	t=$SECONDS
	nf=$("$KMS_PY" "$FC" burst "$P" "$lines" "${group[@]}") || fail "burst $b"
	lat3=$("$KMS_PY" "$FC" client "$P" "$id" 5) || fail "round trips next to full mailboxes"
	rb[b]=$(d_rss) t=$((SECONDS - t))
	sleep 2.5 # mailbox_ttl=1, janitor every second
	re[b]=$(d_rss)
	log "burst $b: $nf files written, never read ($t s); rss=${rb[b]}MiB, after expiry ${re[b]}MiB; round trip median/max ms: $lat3"
	# A burst holds at most ~24 answers of ~2 MiB and their transient copies.
	[ "${rb[b]}" -lt $((rss3 + 128 + slack)) ] || fail "burst $b: RSS ${rss3} -> ${rb[b]} MiB"
	[ $((re[b] - re[0])) -lt $((32 + slack)) ] ||
		fail "RSS kept growing with expired mailboxes: ${re[*]} MiB after each expiry (${rb[*]} MiB after each burst)"
	# Expired: a read-only open gets a fresh answer to an empty request, not the 2 MiB batch.
	r=$(cat "$P/keys/${group[0]}/decrypt-datakey")
	[ "$(printf '%s\n' "$r" | wc -l)" -eq 1 ] || fail "burst $b: an expired mailbox was served ($(printf '%s' "$r" | wc -c) bytes)"
	assert_errcode "$r" KMS.0204
done
alive "after the never-reading client"

# ---------------------------------------------------------------- 4. the bounds
# 64 KiB: EFBIG on the write that crosses it (and on later writes), KMS.0203, then the same
# handle works again; close() reports EFBIG when the oversized request ran at close.
kms_py fault_clients bound64k "$P" "$id" || fail "64 KiB bound"

# 256 MiB of buffered request bytes, twice. The buffers are 64 KiB (+1) each, so a fill costs
# 256 MiB of RSS: the peak stays within 256 + 64 MiB of before. The second fill reuses the first
# one's memory (measured: the same peak to 1 MiB); had the buffers leaked, it would be 256 MiB
# higher. Bound: 32 MiB.
peak_prev=
for round in 1 2; do
	rm -f "$KMS_WORK"/fill.*
	before=$(d_rss)
	t=$SECONDS
	nfit=0 ferr=none fillers=()
	while [ "$ferr" == none ] && [ "$nfit" -le 1024 ]; do
		"$KMS_PY" "$FC" fill "$P" "$id" "$KMS_WORK/fill.ready.${#fillers[@]}" "$KMS_WORK/fill.release" "$per" &
		fillers+=($!)
		kms_bg $!
		wait_ready "$KMS_WORK/fill.ready.$((${#fillers[@]} - 1))" "$!"
		read -r n ferr <"$KMS_WORK/fill.ready.$((${#fillers[@]} - 1))"
		nfit=$((nfit + n))
	done
	log "fill $round ($((SECONDS - t)) s): $nfit requests of 64 KiB fit for root, then $ferr; rss ${before} -> $(d_rss)MiB, fds=$(d_fds)"
	assert_eq "$nfit" 1024 "64 KiB requests of root that fit in its 64 MiB share (fewer: leaked accounting)"
	assert_eq "$ferr" ENOMEM/ENOMEM "errno past the share (then for one more byte)"
	# Another writer of root, on another file: refused; another uid's write: accepted.
	kms_call fc/encrypt-data "{\"key_id\":\"$id\",\"plain_text\":\"x\"}" >/dev/null
	assert_errno write ENOMEM
	assert_errcode "$(as_user "$KMS_PY" "$KMS_IO" rdwr "$P/encrypt-data" '{"plain_text":"x"}')" KMS.0301
	assert_errno write 0 "$KMS_UID"
	# Three more uids take their shares: the daemon-wide 256 MiB is full, a fifth uid is refused.
	for u in 61101 61102 61103; do
		rm -f "$KMS_SCRATCH/fill.ready"
		kms_spawn "$u" "$u" "$KMS_PY" "$FC" fill "$P" "$id" "$KMS_SCRATCH/fill.ready" "$KMS_WORK/fill.release" "$per" &
		fillers+=($!)
		kms_bg $!
		wait_ready "$KMS_SCRATCH/fill.ready" "$!"
		read -r n uerr <"$KMS_SCRATCH/fill.ready"
		assert_eq "$n $uerr" "1024 ENOMEM/ENOMEM" "64 KiB requests of uid $u"
		nfit=$((nfit + n))
	done
	r=$(kms_as 61104 61104 "" "$KMS_PY" "$FC" onewrite "$P/encrypt-data")
	assert_eq "$r" ENOMEM "a fifth uid's write with the daemon-wide bound full"
	peak=$(d_rss)
	log "fill $round ($((SECONDS - t)) s): 4 uids hold $nfit requests of 64 KiB; rss ${before} -> ${peak}MiB"
	# Callers that need no request bytes still work: empty reads.
	lat4=$("$KMS_PY" "$FC" reads "$P" "$id" 10) || fail "empty reads while the buffer is full"
	assert_eq "$(jget "$(cat "$P/list-keys")" .total)" 60 "list-keys (cat) while full"
	log "empty reads while the buffer is full: median/max ms: $lat4"
	[ "$peak" -lt $((before + 256 + 64 + slack)) ] || fail "RSS ${before} -> ${peak} MiB for a 256 MiB bound"
	if [ -n "$peak_prev" ]; then
		[ "$peak" -lt $((peak_prev + 32 + slack)) ] || fail "second fill: RSS peak ${peak_prev} -> ${peak} MiB"
	fi
	peak_prev=$peak
	touch "$KMS_WORK/fill.release"
	for p in "${fillers[@]}"; do wait "$p" || fail "a filler failed"; done
	sleep 0.3
	alive "after fill $round"
	log "fill $round: handles closed, rss=$(d_rss)MiB"
	# Recovered: requests are accepted again.
	"$KMS_PY" "$FC" client "$P" "$id" 3 >/dev/null || fail "round trips after fill $round"
done
assert_ok "$(kms_call fc/encrypt-data "{\"key_id\":\"$id\",\"plain_text\":\"back\"}")"
assert_errno write 0

# ---------------------------------------------------------------- 5. answers held, unread
# Handles that each hold a ~2 MiB answer and read one byte of it: past 256 MiB of held answers
# (FS_MAX_HELD_BYTES) the daemon refuses to run requests (KMS.0104, EAGAIN) instead of growing;
# cheap requests with small answers from other callers still run... only after the holder lets
# go. Skipped under ASan (minutes of instrumented JSON for 256 MiB of answers).
if [ "$asan" == 0 ]; then
	before=$(d_rss)
	t=$SECONDS
	holder hold holdanswers "$P" "$id" 21845 400
	read -r nheld nbusy <"$KMS_WORK/hold.ready"
	peak=$(d_rss)
	log "held answers ($((SECONDS - t)) s): $nheld handles hold ~2 MiB each, then $nbusy refused; rss ${before} -> ${peak}MiB"
	[ "$nbusy" -ge 1 ] || fail "no request was refused with $nheld answers of ~2 MiB held"
	[ "$nheld" -ge 10 ] || fail "only $nheld answers held before refusals (root's share: 64 MiB)"
	# Another uid's requests still run (its answer is its own refusal, not KMS.0104).
	assert_errcode "$(as_user "$KMS_PY" "$KMS_IO" rdwr "$P/describe-key" "{\"key_id\":\"$id\"}")" KMS.0301
	[ "$peak" -lt $((before + 256 + 96)) ] || fail "RSS ${before} -> ${peak} MiB holding answers"
	r=$(kms_call "fc/keys/$id/describe-key" '{}')
	assert_errcode "$r" KMS.0104
	kms_write "fc/keys/$id/describe-key" '{}' # write-only: close() reports it
	assert_errno close EAGAIN
	release hold "the answer holder"
	sleep 0.3
	alive "after holding answers"
	assert_ok "$(kms_call "fc/keys/$id/describe-key" '{}')"
	log "held answers released: rss=$(d_rss)MiB"

	# ------------------------------------------------------------ 6. big blocks not pinned
	# 200 handles that each had a ~2 MiB answer (read whole) and then a small one, held open:
	# they hold nothing big, so the daemon must not keep the big blocks (it counted answers by
	# length and kept each handle's largest block: 200 x 4 MiB pinned, past the 256 MiB bound).
	before=$(d_rss)
	t=$SECONDS
	holder pin pinned "$P" "$id" 21845 200
	peak=$(d_rss)
	log "big then small answers ($((SECONDS - t)) s): $(cat "$KMS_WORK/pin.ready") handles open; rss ${before} -> ${peak}MiB"
	[ "$peak" -lt $((before + 64)) ] || fail "RSS ${before} -> ${peak} MiB with 200 idle handles that once had big answers"
	assert_ok "$(kms_call "fc/keys/$id/describe-key" '{}')"
	release pin "the big-then-small client"
fi

fd4=$(d_fds)
links_bounded
log "end: fds=$fd4 rss=$(d_rss)MiB threads=$(d_threads) namespace links=$(d_nslinks)"
[ "$fd4" -le $((fd0 + 4)) ] && [ "$fd4" -ge $((fd0 - 4)) ] || fail "daemon fds $fd0 -> $fd4 at the end"
# Every client above has ended: within the idle time (2 s) and a janitor tick (1 s) the daemon
# closes the namespace links it kept for their threads.
for _ in $(seq 50); do [ "$(d_nslinks)" -eq 0 ] && break; sleep 0.2; done
[ "$(d_nslinks)" -eq 0 ] || fail "$(d_nslinks) namespace links of ended clients still open after 10 s"
kms_umount
