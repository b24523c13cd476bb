# shellcheck shell=bash
# pg.sh - throw-away PostgreSQL clusters for the tests (integration cases with a shared store,
# tests/unit/with-pg.sh, the fuzz run against PostgreSQL, bench/run).
#
# A cluster lives in a directory the caller gives (DIR): DIR/data is the data directory (initdb
# as the unprivileged user `kmspg`, created if missing), DIR/server.log the server's log, and the
# Unix socket sits in DIR (or, when DIR is too long for a socket path, in a short directory under
# /tmp named in DIR/socketdir). No TCP: listen_addresses is empty. Authentication is `trust` for
# local connections, so root and the daemons connect as user kmspg without a password.
#
# Every cluster made here is remembered; kms_pg_cleanup stops them all and removes their
# directories (also on partial setups, safe to call twice). common.sh's EXIT trap calls it
# (through KMS_CLEANUP_HOOKS, registered by the first kms_pg_init); other callers trap it
# themselves. Like harness.sh, no function here exits or prints a verdict: each returns a status
# (a failed start prints the server log on stderr) and the caller says what failed.
#
#   kms_pg_bindir                        print the PostgreSQL bin dir (status 1: not installed)
#   kms_pg_init DIR [PORT]               initdb (port default 5432; one socket dir per cluster)
#   kms_pg_start DIR                     start, wait until it accepts connections
#   kms_pg_stop DIR [MODE]               stop (fast|immediate|smart, default fast)
#   kms_pg_uri DIR [DBNAME]              print `host=SOCKDIR port=PORT dbname=DBNAME user=kmspg`
#   kms_pg_createdb DIR NAME             create database NAME (owner kmspg)
#   kms_pg_sql DIR DBNAME SQL            run SQL with psql -At, print the result
#   kms_pg_standby PRIMARY STANDBY PORT  pg_basebackup -R into STANDBY, start it, make it the
#                                        primary's synchronous standby (waits for sync state)
#   kms_pg_promote DIR                   promote a standby, wait until it accepts writes
#   kms_pg_cleanup                       stop every cluster made here, remove their directories

KMS_PG_USER=kmspg
KMS_PG_DIRS=()

# kms_pg_bindir: the newest installed server's bin dir (Debian's postgresql-NN package).
kms_pg_bindir() {
	local d
	d=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
	[ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] || return 1
	printf '%s\n' "$d"
}

# _kms_pg_as CMD...: run a PostgreSQL program of the bin dir as kmspg, from /, with a clean
# environment (no sanitizer or preload variables of the test reach the server).
_kms_pg_as() {
	local bin
	bin=$(kms_pg_bindir) || {
		echo "pg.sh: PostgreSQL is not installed (apt-get install postgresql)" >&2
		return 1
	}
	local prog=$1
	shift
	(cd / && setpriv --reuid="$KMS_PG_USER" --regid="$KMS_PG_USER" --clear-groups -- \
		env -i PATH="$bin:/usr/bin:/bin" HOME=/ LC_ALL=C "$bin/$prog" "$@")
}

# _kms_pg_user: make sure the unprivileged cluster owner exists.
_kms_pg_user() {
	id "$KMS_PG_USER" >/dev/null 2>&1 && return 0
	useradd --system --no-create-home --shell /usr/sbin/nologin "$KMS_PG_USER" 2>/dev/null ||
		id "$KMS_PG_USER" >/dev/null 2>&1 || {
		echo "pg.sh: cannot create the user $KMS_PG_USER" >&2
		return 1
	}
}

# _kms_pg_sock DIR: the socket directory of the cluster in DIR.
_kms_pg_sock() {
	if [ -s "$1/socketdir" ]; then cat "$1/socketdir"; else printf '%s\n' "$1"; fi
}

# _kms_pg_port DIR
_kms_pg_port() { cat "$1/port"; }

# _kms_pg_register DIR: remember DIR for kms_pg_cleanup; the first one hooks the cleanup into
# common.sh's EXIT trap (the hooks run newest first, so daemons registered later stop first).
_kms_pg_register() {
	local d
	for d in "${KMS_PG_DIRS[@]}"; do [ "$d" != "$1" ] || return 0; done
	KMS_PG_DIRS+=("$1")
	if [ "${#KMS_PG_DIRS[@]}" -eq 1 ] && declare -p KMS_CLEANUP_HOOKS >/dev/null 2>&1; then
		KMS_CLEANUP_HOOKS+=(kms_pg_cleanup)
	fi
}

# _kms_pg_dir DIR PORT: make DIR for kmspg (0700), pick the socket dir, remember the port.
_kms_pg_dir() {
	local dir=$1 port=$2 sock
	_kms_pg_user || return 1
	mkdir -p "$dir" || return 1
	_kms_pg_register "$dir"
	chown "$KMS_PG_USER:" "$dir" && chmod 0700 "$dir" || return 1
	# A Unix socket path holds at most 107 bytes: DIR/.s.PGSQL.PORT must fit.
	if [ $((${#dir} + 20)) -gt 100 ]; then
		sock=$(mktemp -d /tmp/kmspg.XXXXXX) || return 1
		chown "$KMS_PG_USER:" "$sock" && chmod 0700 "$sock" || return 1
		printf '%s\n' "$sock" >"$dir/socketdir"
	fi
	printf '%s\n' "$port" >"$dir/port"
	setpriv --reuid="$KMS_PG_USER" --regid="$KMS_PG_USER" --clear-groups -- test -w "$dir" || {
		echo "pg.sh: user $KMS_PG_USER cannot reach $dir (a parent directory is not searchable)" >&2
		return 1
	}
}

# _kms_pg_conf DIR: the settings of a test cluster, appended to DIR/data/postgresql.conf (later
# lines win, so a standby's copy of the primary's file is overridden the same way).
_kms_pg_conf() {
	cat >>"$1/data/postgresql.conf" <<EOF

# kmsfs tests (tests/integration/lib/pg.sh)
listen_addresses = ''
port = $(_kms_pg_port "$1")
unix_socket_directories = '$(_kms_pg_sock "$1")'
unix_socket_permissions = 0777
fsync = on
synchronous_commit = on
max_connections = 200
shared_buffers = 32MB
wal_level = replica
max_wal_senders = 10
hot_standby = on
wal_sender_timeout = 5s
wal_receiver_timeout = 5s
logging_collector = off
log_min_messages = warning
EOF
}

# kms_pg_init DIR [PORT]: a new cluster in DIR (which must not hold one), not started.
kms_pg_init() {
	local dir=$1 port=${2:-5432} out
	kms_pg_bindir >/dev/null || {
		echo "pg.sh: PostgreSQL is not installed (apt-get install postgresql)" >&2
		return 1
	}
	_kms_pg_dir "$dir" "$port" || return 1
	out=$(_kms_pg_as initdb -D "$dir/data" -U "$KMS_PG_USER" --auth=trust -E UTF8 \
		--no-locale --no-sync 2>&1) || {
		printf 'pg.sh: initdb %s failed:\n%s\n' "$dir/data" "$out" >&2
		return 1
	}
	_kms_pg_conf "$dir"
}

# kms_pg_start DIR: start the cluster and wait (60 s at most) until it accepts connections; on
# failure the server log goes to stderr.
kms_pg_start() {
	local dir=$1
	_kms_pg_as pg_ctl -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null 2>"$dir/pg_ctl.err" && return 0
	{
		echo "pg.sh: the PostgreSQL cluster in $dir did not start:"
		cat "$dir/pg_ctl.err"
		echo "---- $dir/server.log"
		tail -n 40 "$dir/server.log" 2>/dev/null
	} >&2
	return 1
}

# kms_pg_running DIR: true when the cluster in DIR runs.
kms_pg_running() {
	[ -f "$1/data/postmaster.pid" ] && _kms_pg_as pg_ctl -D "$1/data" status >/dev/null 2>&1
}

# kms_pg_stop DIR [MODE]: stop the cluster (fast by default; immediate is a crash without a
# checkpoint: the restart replays the WAL). A cluster that does not run is fine.
kms_pg_stop() {
	local dir=$1 mode=${2:-fast}
	kms_pg_running "$dir" || return 0
	_kms_pg_as pg_ctl -D "$dir/data" -m "$mode" -w -t 60 stop >/dev/null 2>&1 || {
		echo "pg.sh: pg_ctl stop -m $mode of $dir failed" >&2
		return 1
	}
}

# kms_pg_uri DIR [DBNAME]: the libpq keyword string of the cluster (database kms by default).
kms_pg_uri() {
	printf 'host=%s port=%s dbname=%s user=%s\n' "$(_kms_pg_sock "$1")" "$(_kms_pg_port "$1")" \
		"${2:-kms}" "$KMS_PG_USER"
}

# kms_pg_sql DIR DBNAME SQL: run SQL (psql -At, stop at the first error), print its output.
kms_pg_sql() {
	_kms_pg_as psql -X -q -At -v ON_ERROR_STOP=1 -h "$(_kms_pg_sock "$1")" -p "$(_kms_pg_port "$1")" \
		-U "$KMS_PG_USER" -d "$2" -c "$3"
}

# kms_pg_createdb DIR NAME: create the database NAME (owned by kmspg).
kms_pg_createdb() {
	_kms_pg_as createdb -h "$(_kms_pg_sock "$1")" -p "$(_kms_pg_port "$1")" -U "$KMS_PG_USER" "$2"
}

# kms_pg_standby PRIMARY_DIR STANDBY_DIR PORT: a streaming standby of the running primary
# (pg_basebackup -R), started, then made synchronous: the primary gets
# synchronous_standby_names = '*' only once the standby streams (a commit would wait for a
# standby that is not there yet), and this returns when pg_stat_replication says `sync`.
kms_pg_standby() {
	local pri=$1 sb=$2 port=$3 out i st
	_kms_pg_dir "$sb" "$port" || return 1
	out=$(_kms_pg_as pg_basebackup -h "$(_kms_pg_sock "$pri")" -p "$(_kms_pg_port "$pri")" \
		-U "$KMS_PG_USER" -D "$sb/data" -R -X stream --checkpoint=fast 2>&1) || {
		printf 'pg.sh: pg_basebackup from %s failed:\n%s\n' "$pri" "$out" >&2
		return 1
	}
	_kms_pg_conf "$sb"
	echo "cluster_name = 'kmsstandby'" >>"$sb/data/postgresql.conf"
	kms_pg_start "$sb" || return 1
	for ((i = 0; i < 300; i++)); do
		st=$(kms_pg_sql "$pri" postgres "SELECT state FROM pg_stat_replication LIMIT 1" 2>/dev/null) || st=
		[ "$st" != streaming ] || break
		sleep 0.1
	done
	[ "$st" == streaming ] || {
		echo "pg.sh: the standby in $sb does not stream from $pri after 30 s" >&2
		tail -n 20 "$sb/server.log" >&2
		return 1
	}
	kms_pg_sql "$pri" postgres "ALTER SYSTEM SET synchronous_standby_names = '*'" >/dev/null &&
		kms_pg_sql "$pri" postgres "SELECT pg_reload_conf()" >/dev/null || return 1
	for ((i = 0; i < 300; i++)); do
		st=$(kms_pg_sql "$pri" postgres "SELECT sync_state FROM pg_stat_replication LIMIT 1" 2>/dev/null) || st=
		[ "$st" != sync ] || return 0
		sleep 0.1
	done
	echo "pg.sh: the standby in $sb is not synchronous after 30 s (sync_state '$st')" >&2
	return 1
}

# kms_pg_promote DIR: promote the standby in DIR and wait until it is out of recovery.
kms_pg_promote() {
	local dir=$1 i
	_kms_pg_as pg_ctl -D "$dir/data" -w -t 60 promote >/dev/null 2>&1 || {
		echo "pg.sh: pg_ctl promote of $dir failed" >&2
		tail -n 20 "$dir/server.log" >&2
		return 1
	}
	for ((i = 0; i < 300; i++)); do
		[ "$(kms_pg_sql "$dir" postgres 'SELECT pg_is_in_recovery()' 2>/dev/null)" != f ] || return 0
		sleep 0.1
	done
	echo "pg.sh: $dir is still in recovery 30 s after the promotion" >&2
	return 1
}

# kms_pg_cleanup: stop every cluster made here (fast, then immediate, then SIGKILL of its
# postmaster) and remove its directory and socket directory. Status 1 when a server could not
# be stopped.
kms_pg_cleanup() {
	local d pid rc=0 sock left=()
	for d in "${KMS_PG_DIRS[@]}"; do
		if [ -f "$d/data/postmaster.pid" ]; then
			kms_pg_stop "$d" fast 2>/dev/null || kms_pg_stop "$d" immediate 2>/dev/null || {
				pid=$(head -n 1 "$d/data/postmaster.pid" 2>/dev/null)
				[ -z "$pid" ] || kill -KILL "$pid" 2>/dev/null || true
				sleep 0.5
			}
			if kms_pg_running "$d"; then
				echo "pg.sh: the PostgreSQL cluster in $d could not be stopped" >&2
				rc=1
				left+=("$d")
				continue
			fi
		fi
		sock=
		[ -s "$d/socketdir" ] && sock=$(cat "$d/socketdir")
		[[ $sock != /tmp/kmspg.* ]] || rm -rf "$sock"
		rm -rf "$d"
	done
	KMS_PG_DIRS=("${left[@]}")
	return "$rc"
}
