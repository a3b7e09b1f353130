#!/usr/bin/env bash
# tests/demo.sh: pgkeep end to end on a throwaway PostgreSQL 15, in one go.
#
#   sudo bash tests/demo.sh
#
# Installs the dependencies, builds pgkeep (configure only the first time),
# then in a temporary directory under /tmp: creates a cluster that archives
# its WAL through `pgkeep archive-push`, creates the stanza, loads pgbench
# data, takes a full backup, runs more load, restores into a second directory,
# starts the copy on another port, compares the data and prints `pgkeep info`.
# Everything is stopped and removed at exit (KEEP=1 keeps the directory).
# PGKEEP_BIN=/path/to/pgkeep uses that binary and skips the build.
# As root, PostgreSQL and pgkeep run as user postgres.
set -euo pipefail

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
SRC=$PWD
PG_BINDIR=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
PORT=55432          # the demo cluster
PORT_RESTORED=55433 # the restored copy
STANZA=demo

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

say "Installing dependencies (tests/install-deps.sh)"
bash tests/install-deps.sh

if [ -z "${PGKEEP_BIN:-}" ]; then
	say "Building pgkeep"
	if [ ! -f Makefile ]; then
		autoreconf -fi
		./configure
	fi
	make -j2 pgkeep
	PGKEEP_BIN=$SRC/pgkeep
fi
export -n PGKEEP_BIN    # pgkeep would warn about an unknown PGKEEP_* variable

# ------------------------------------------------------------------ setup
DEMO=$(mktemp -d /tmp/pgkeep-demo.XXXXXX)
chmod 755 "$DEMO"
if [ "$(id -u)" -eq 0 ]; then
	AS=(runuser -u postgres --)
	chown postgres: "$DEMO"
else
	AS=()
fi
# as_pg CMD...: run CMD as the PostgreSQL user, from the demo directory.
as_pg() { (cd "$DEMO" && "${AS[@]}" "$@"); }

cleanup() {
	local rc=$?
	set +e
	for d in "$DEMO/pg" "$DEMO/restored"; do
		[ -f "$d/postmaster.pid" ] && as_pg "$PG_BINDIR/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1
	done
	if [ "${KEEP:-0}" = 1 ]; then
		echo "KEEP=1: kept $DEMO"
	else
		rm -rf "$DEMO"
	fi
	[ "$rc" -eq 0 ] && say "Demo finished; cleaned up" || echo "demo failed (exit $rc)" >&2
	exit "$rc"
}
trap cleanup EXIT

as_pg mkdir -p "$DEMO/bin" "$DEMO/sock" "$DEMO/log" "$DEMO/lock" "$DEMO/spool"
# A copy of the binary that user postgres can run even when the build tree
# is private (e.g. under /root).
cp "$PGKEEP_BIN" "$DEMO/bin/pgkeep"
chmod 755 "$DEMO/bin/pgkeep"
CONF=$DEMO/pgkeep.conf
PGKEEP=("$DEMO/bin/pgkeep" --config="$CONF" --stanza="$STANZA")

# pgkeep ARGS...: show and run a pgkeep command.
pgkeep() {
	echo "\$ pgkeep --stanza=$STANZA $*"
	as_pg "${PGKEEP[@]}" "$@"
}
# sql PORT SQL: run a query.
sql() { as_pg "$PG_BINDIR/psql" -X -At -v ON_ERROR_STOP=1 -h "$DEMO/sock" -p "$1" -U postgres -d postgres -c "$2"; }
# counts PORT: the row counts and the balance sum of the pgbench tables.
counts() {
	sql "$1" "select 'accounts=' || (select count(*) from pgbench_accounts)
		|| ' balance=' || (select sum(abalance) from pgbench_accounts)
		|| ' history=' || (select count(*) from pgbench_history)"
}

say "Creating a PostgreSQL 15 cluster in $DEMO/pg"
# The production layout uses 512 MiB WAL segments (--wal-segsize=512); the
# demo uses 16 MiB ones so that it is quick.
as_pg "$PG_BINDIR/initdb" -D "$DEMO/pg" -A trust -U postgres --data-checksums --wal-segsize=16 \
	--locale=C -E UTF8 >"$DEMO/initdb.log"
cat >>"$DEMO/pg/postgresql.conf" <<EOF
listen_addresses = ''
unix_socket_directories = '$DEMO/sock'
port = $PORT
wal_level = replica
archive_mode = on
archive_command = '$DEMO/bin/pgkeep --config=$CONF --stanza=$STANZA archive-push %p'
EOF
grep -E '^(archive_mode|archive_command)' "$DEMO/pg/postgresql.conf"

say "Writing the pgkeep configuration $CONF"
cat >"$CONF" <<EOF
[global]
repo1-path=$DEMO/repo
log-path=$DEMO/log
lock-path=$DEMO/lock
spool-path=$DEMO/spool
log-level-console=info
start-fast=y
process-max=2
repo1-retention-full=2

[$STANZA]
pg1-path=$DEMO/pg
pg1-socket-path=$DEMO/sock
pg1-port=$PORT
EOF
cat "$CONF"

say "Starting PostgreSQL on port $PORT"
as_pg "$PG_BINDIR/pg_ctl" -D "$DEMO/pg" -l "$DEMO/pg.log" -w start

say "Creating the stanza"
pgkeep stanza-create
pgkeep check

say "Loading data: pgbench -i -s 5"
as_pg "$PG_BINDIR/pgbench" -i -s 5 -q -h "$DEMO/sock" -p "$PORT" -U postgres postgres

say "Full backup"
pgkeep backup --type=full

say "More load after the backup: pgbench -c 2 -T 10"
as_pg "$PG_BINDIR/pgbench" -n -c 2 -j 2 -T 10 -h "$DEMO/sock" -p "$PORT" -U postgres postgres | grep -E '^(tps|number of transactions actually)'
ORIGIN=$(counts "$PORT")
echo "origin: $ORIGIN"

say "Switching WAL and waiting until it is archived"
seg=$(sql "$PORT" "select pg_walfile_name(pg_switch_wal())")
for ((i = 0; i < 600; i++)); do
	last=$(sql "$PORT" "select coalesce(last_archived_wal, '') from pg_stat_archiver")
	[ -n "$last" ] && [[ ! "$last" < "$seg" ]] && break
	sleep 0.2
done
sql "$PORT" "select 'archived: ' || archived_count || ', failed: ' || failed_count || ', last: ' || coalesce(last_archived_wal, '-') from pg_stat_archiver"

say "Restoring the backup into $DEMO/restored"
as_pg mkdir -m 700 "$DEMO/restored"
pgkeep --pg1-path="$DEMO/restored" restore
echo "recovery settings written by restore (postgresql.auto.conf):"
grep -v '^#' "$DEMO/restored/postgresql.auto.conf" || true
# Another port; no archiving from the copy (it would push a new timeline into the stanza).
cat >>"$DEMO/restored/postgresql.conf" <<EOF
port = $PORT_RESTORED
archive_mode = off
EOF

say "Starting the restored copy on port $PORT_RESTORED (replays the archive through archive-get)"
as_pg "$PG_BINDIR/pg_ctl" -D "$DEMO/restored" -l "$DEMO/restored.log" -w -t 300 start
for ((i = 0; i < 1500; i++)); do
	[ "$(sql "$PORT_RESTORED" "select pg_is_in_recovery()" 2>/dev/null)" = f ] && break
	sleep 0.2
done
echo "in recovery: $(sql "$PORT_RESTORED" "select pg_is_in_recovery()")"

say "Comparing the data"
RESTORED=$(counts "$PORT_RESTORED")
echo "origin:   $ORIGIN"
echo "restored: $RESTORED"
if [ "$ORIGIN" = "$RESTORED" ]; then
	echo "the restored copy has the same data"
else
	echo "MISMATCH between origin and restored copy" >&2
	exit 1
fi

say "pgkeep info"
pgkeep info
