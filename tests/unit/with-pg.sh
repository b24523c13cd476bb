#!/usr/bin/env bash
# with-pg.sh CMD...: run CMD with KMS_TEST_PG_URI naming the database "kms" of a throw-away
# PostgreSQL cluster (tests/integration/lib/pg.sh: initdb as the unprivileged user kmspg, Unix
# socket only), and remove the cluster afterwards, also when CMD fails or the run is killed.
# CMD's status is the status. Without PostgreSQL installed, or when not run as root (the cluster
# runs as kmspg), CMD runs without KMS_TEST_PG_URI and its PostgreSQL parts report SKIP.
set -u
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../integration/lib/pg.sh
. "$here/../integration/lib/pg.sh"

unset KMS_TEST_PG_URI
if ! kms_pg_bindir >/dev/null; then
	echo "with-pg.sh: PostgreSQL is not installed (apt-get install postgresql): no KMS_TEST_PG_URI" >&2
	exec "$@"
fi
if [ "$(id -u)" != 0 ]; then
	echo "with-pg.sh: not root, cannot run a cluster as kmspg: no KMS_TEST_PG_URI" >&2
	exec "$@"
fi

base=$(mktemp -d "${TMPDIR:-/tmp}/kms-with-pg.XXXXXX") || exit 1
chmod 0711 "$base" # kmspg must reach its cluster directory inside
cleanup() {
	kms_pg_cleanup
	rm -rf "$base"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

cluster=$base/pg
if ! kms_pg_init "$cluster" 5432 || ! kms_pg_start "$cluster" || ! kms_pg_createdb "$cluster" kms; then
	echo "with-pg.sh: could not start a PostgreSQL cluster in $cluster" >&2
	exit 1
fi
KMS_TEST_PG_URI=$(kms_pg_uri "$cluster" kms)
export KMS_TEST_PG_URI
"$@"
exit $?
