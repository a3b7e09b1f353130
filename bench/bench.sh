#!/usr/bin/env bash
# bench/bench.sh: one reproducible run that times pgkeep and pgBackRest on the same pgbench
# database (full backup, full restore, incremental backup, delta restore, archive-push of a real
# 512 MiB WAL segment, and the same through each tool's TLS server over loopback) and prints medians,
# ratios, peak RSS and repository sizes. See bench/README.md.
#
# usage: bash bench/bench.sh [--scale N] [--runs N] [--pgkeep PATH] [--only pgbackrest|pgkeep|both]
#                            [--scenarios "backup restore incr delta archive-push remote-..."] [--work DIR] [--port N] [--no-drop-caches]
set -Eeuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$HERE/lib.sh"

# --- options ----------------------------------------------------------------------------------
SCALE=100
RUNS=3
PGKEEP_SRC=$PWD/pgkeep
ONLY=both
WORK=/tmp/pgkeep-bench
PORT=55432
DROP_CACHES=1
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
ALL_SCENARIOS="backup restore incr delta archive-push remote-backup remote-restore remote-push remote-rss"
SCENARIOS=${SCENARIOS:-$ALL_SCENARIOS}

usage() {
	sed -n '7,8p' "$0" | sed 's/^# \{0,1\}//'
	exit "${1:-0}"
}
need_arg() { [ $# -ge 2 ] && [ -n "$2" ] || { echo "bench: $1 needs a value" >&2; usage 2; }; }
while [ $# -gt 0 ]; do
	case $1 in
	--scale) need_arg "$@"; SCALE=$2; shift 2 ;;
	--scale=*) SCALE=${1#*=}; shift ;;
	--runs) need_arg "$@"; RUNS=$2; shift 2 ;;
	--runs=*) RUNS=${1#*=}; shift ;;
	--pgkeep) need_arg "$@"; PGKEEP_SRC=$2; shift 2 ;;
	--pgkeep=*) PGKEEP_SRC=${1#*=}; shift ;;
	--only) need_arg "$@"; ONLY=$2; shift 2 ;;
	--only=*) ONLY=${1#*=}; shift ;;
	--work) need_arg "$@"; WORK=$2; shift 2 ;;
	--work=*) WORK=${1#*=}; shift ;;
	--port) need_arg "$@"; PORT=$2; shift 2 ;;
	--port=*) PORT=${1#*=}; shift ;;
	--scenarios) need_arg "$@"; SCENARIOS=$2; shift 2 ;;
	--scenarios=*) SCENARIOS=${1#*=}; shift ;;
	--no-drop-caches) DROP_CACHES=0; shift ;;
	-h | --help) usage 0 ;;
	*) echo "bench: unknown argument: $1" >&2; usage 2 ;;
	esac
done
[[ $SCALE =~ ^[1-9][0-9]*$ ]] || { echo "bench: --scale must be a positive integer" >&2; exit 2; }
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "bench: --runs must be a positive integer" >&2; exit 2; }
[[ $PORT =~ ^[1-9][0-9]*$ ]] || { echo "bench: --port must be a positive integer" >&2; exit 2; }
case $ONLY in pgbackrest | pgkeep | both) ;; *) echo "bench: --only must be pgbackrest, pgkeep or both" >&2; exit 2 ;; esac
read -r -a words <<<"$SCENARIOS"
SCENARIOS=${words[*]:-} # one space between words
[ -n "$SCENARIOS" ] || { echo "bench: --scenarios is empty" >&2; exit 2; }
for s in $SCENARIOS; do
	case " $ALL_SCENARIOS " in *" $s "*) ;; *) echo "bench: unknown scenario '$s' (known: $ALL_SCENARIOS)" >&2; exit 2 ;; esac
done
# want SCENARIO: whether it runs. restore restores the backup scenario's backups and delta
# restores the incr scenario's, so each brings the other along. The remote scenarios are compared
# with their local twins of the same run and run inside their loops, so each brings its twin:
# remote-backup brings backup, remote-restore brings restore and remote-backup, remote-push brings
# archive-push.
want() {
	case " $SCENARIOS " in
	*" $1 "*) return 0 ;;
	esac
	case $1 in
	backup) want restore || want remote-backup ;;
	restore | remote-backup) want remote-restore ;;
	incr) want delta ;;
	archive-push) want remote-push ;;
	*) return 1 ;;
	esac
}
want_remote() { want remote-backup || want remote-push || want remote-rss; }
case $PGKEEP_SRC in /*) ;; *) PGKEEP_SRC=$PWD/$PGKEEP_SRC ;; esac
case $WORK in /*) ;; *) WORK=$PWD/$WORK ;; esac
WORK=${WORK%/}
[ -n "$WORK" ] && [ "$WORK" != / ] || { echo "bench: refusing --work /" >&2; exit 2; }

trap 'die "unexpected failure (exit $?) at bench.sh line $LINENO: $BASH_COMMAND"' ERR

# --- who runs what ----------------------------------------------------------------------------
if [ "$(id -u)" = 0 ]; then
	id postgres >/dev/null 2>&1 || die "running as root but there is no postgres user"
	AS_PG=(runuser -u postgres --)
else
	AS_PG=()
	if [ "$DROP_CACHES" = 1 ]; then
		warn "not root: cannot drop the page cache, continuing as with --no-drop-caches"
		DROP_CACHES=0
	fi
fi
for bin in /usr/bin/time "$PGBIN/initdb" "$PGBIN/pg_ctl" "$PGBIN/psql" "$PGBIN/pgbench"; do
	[ -x "$bin" ] || die "missing $bin"
done
command -v jq >/dev/null || die "missing jq (apt-get install jq)"
if [ "$ONLY" != pgkeep ]; then
	command -v pgbackrest >/dev/null || die "missing pgbackrest (or use --only pgkeep)"
fi

# --- work directory ---------------------------------------------------------------------------
PGDATA=$WORK/pgdata
SOCK=$WORK/sock
LOGD=$WORK/log
RAW=$WORK/raw.tsv
PG_STARTED=0
declare -A SRV_PID=()

stop_cluster() {
	if [ -f "$PGDATA/postmaster.pid" ]; then
		pg_run "$PGBIN/pg_ctl" -D "$PGDATA" -m "${1:-fast}" -w stop >/dev/null 2>&1 || true
	fi
}
on_exit() {
	local rc=$?
	trap - ERR
	[ ${#SRV_PID[@]} -eq 0 ] || stop_servers
	if [ "$PG_STARTED" = 1 ]; then stop_cluster fast; fi
	exit "$rc"
}
trap on_exit EXIT

if [ -e "$WORK" ]; then
	if [ -n "$(ls -A "$WORK" 2>/dev/null)" ] && [ ! -f "$WORK/.pgkeep-bench" ]; then
		die "$WORK exists, is not empty and was not made by bench.sh: refusing to wipe it"
	fi
	stop_cluster immediate # a cluster left running by an interrupted run
	rm -rf "$WORK"
fi
mkdir -p "$WORK"/{tmp,log,seg,bin,arch} "$SOCK"
touch "$WORK/.pgkeep-bench"
[ ${#AS_PG[@]} -eq 0 ] || chown -R postgres:postgres "$WORK"
cd "$WORK"
pg_run test -w "$WORK" || die "user postgres cannot write $WORK (pick a --work under /tmp)"
printf 'step\ttool\trun\twall_s\trss_kib\ttree_rss_kib\trc\n' >"$RAW"

# --- tools ------------------------------------------------------------------------------------
# PGKEEP_NA: empty while pgkeep is usable, else why it is not.
PGKEEP_NA=
PGKEEP_VERSION=n/a
PGBR_VERSION=n/a
if [ "$ONLY" = pgbackrest ]; then
	PGKEEP_NA="not run (--only pgbackrest)"
elif [ ! -f "$PGKEEP_SRC" ] || [ ! -x "$PGKEEP_SRC" ]; then
	PGKEEP_NA="no pgkeep binary at $PGKEEP_SRC"
	[ "$ONLY" = pgkeep ] && die "$PGKEEP_NA"
	warn "$PGKEEP_NA: pgkeep results will be n/a"
else
	cp "$PGKEEP_SRC" "$WORK/bin/pgkeep"
	chmod 755 "$WORK/bin/pgkeep"
	PGKEEP_VERSION=$(pg_run "$WORK/bin/pgkeep" version 2>&1 | head -n 1) || PGKEEP_VERSION="n/a (version failed)"
fi
if [ "$ONLY" != pgkeep ]; then
	PGBR_VERSION=$(pgbackrest version 2>&1 | head -n 1)
fi

PGBR=(pgbackrest --config="$WORK/pgbackrest.conf" --stanza=main)
PGK=("$WORK/bin/pgkeep" --config="$WORK/pgkeep.conf" --stanza=main)

enabled() {
	case $1 in
	pgbackrest) [ "$ONLY" != pgkeep ] ;;
	pgkeep) [ "$ONLY" != pgbackrest ] && [ -z "$PGKEEP_NA" ] ;;
	esac
}
# tool_argv TOOL: TOOL_ARGV = the tool's command with its config and stanza.
tool_argv() {
	if [ "$1" = pgbackrest ]; then TOOL_ARGV=("${PGBR[@]}"); else TOOL_ARGV=("${PGK[@]}"); fi
}
# run_order RUN: the enabled tools, pgBackRest first on odd runs, pgkeep first on even runs.
run_order() {
	local t list="pgbackrest pgkeep"
	[ $(($1 % 2)) = 1 ] || list="pgkeep pgbackrest"
	for t in $list; do
		if enabled "$t"; then echo "$t"; fi
	done
}

declare -A WALLS=() RSSV=() TREEV=() FAIL=() REPO1=() REPO2=() STORED=() RESTORED=() NBACKUP=()
declare -A GROW=() BREAKDOWN=() DELTA_OK=()
SEG=

# record STEP TOOL RUN: keep the last timed() figures.
record() {
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$T_WALL" "$T_RSS" "$T_TREE" "$T_RC" >>"$RAW"
	[ "$T_RC" = 0 ] || return 0
	WALLS[$1:$2]+=" $T_WALL"
	RSSV[$1:$2]+=" $T_RSS"
	TREEV[$1:$2]+=" $T_TREE"
}

# step_failed STEP TOOL LOG WHY: pgBackRest failures end the benchmark (its numbers are the
# reference); a pgkeep failure marks that step n/a for pgkeep and the run goes on.
step_failed() {
	local step=$1 tool=$2 log=$3 why=$4
	[ "$tool" = pgkeep ] || die "pgBackRest $step failed: $why" "$log"
	warn "pgkeep $step failed: $why; pgkeep $step is n/a. Last lines of $log:"
	tail -n 30 "$log" >&2 || true
	FAIL[$step:$tool]="$why (log: $log)"
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# --- 1. cluster -------------------------------------------------------------------------------
say "initdb in $PGDATA (512 MiB WAL segments, data checksums)"
must "$LOGD/initdb.log" pg_run "$PGBIN/initdb" -D "$PGDATA" --wal-segsize=512 --data-checksums -A trust -U postgres
cat >>"$PGDATA/postgresql.conf" <<EOF

# bench/bench.sh
listen_addresses = ''
unix_socket_directories = '$SOCK'
port = $PORT
archive_mode = on
archive_command = '/bin/true'
max_wal_size = 4GB
shared_buffers = 256MB
checkpoint_timeout = 30min
autovacuum = off
EOF
must "$LOGD/pg_ctl-start.log" pg_run "$PGBIN/pg_ctl" -D "$PGDATA" -l "$LOGD/postgresql.log" -w -t 120 start
PG_STARTED=1

psqlc() { pg_run "$PGBIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -U postgres -d postgres -c "$1"; }
SEGSIZE=$(psqlc "select setting from pg_settings where name = 'wal_segment_size'")
[ "$SEGSIZE" = 536870912 ] || die "wal_segment_size is '$SEGSIZE', expected 536870912"

say "pgbench -i -s $SCALE"
t0=$(date +%s)
must "$LOGD/pgbench-init.log" pg_run "$PGBIN/pgbench" -i -q -s "$SCALE" -h "$SOCK" -p "$PORT" -U postgres postgres
# settle the data before the first timed backup: hint bits and visibility map set, nothing
# left for autovacuum (pgbench already loads pgbench_accounts frozen, so this is cheap)
must "$LOGD/vacuum.log" psqlc "VACUUM (FREEZE, ANALYZE)"
must "$LOGD/checkpoint.log" psqlc "CHECKPOINT"
say "pgbench -i done in $(($(date +%s) - t0)) s"
DB_BYTES=$(psqlc "select pg_database_size('postgres')")
PGDATA_BYTES=$(($(du_b "$PGDATA") - $(du_b "$PGDATA/pg_wal")))
PGDATA_FILES=$(count_files "$PGDATA")

# --- 2. configurations and stanzas ----------------------------------------------------------
write_conf() { # FILE REPO
	cat >"$1" <<EOF
[global]
repo1-path=$2
repo1-retention-full=100
compress-type=zst
compress-level=3
process-max=2
start-fast=y
archive-check=n
log-path=$WORK/log-$(basename "$2")
lock-path=$WORK/lock-$(basename "$2")
log-level-console=warn

[main]
pg1-path=$PGDATA
pg1-socket-path=$SOCK
pg1-port=$PORT
EOF
	# the tools do not create their log and lock directories
	mkdir -p "$WORK/log-$(basename "$2")" "$WORK/lock-$(basename "$2")"
	[ ${#AS_PG[@]} -eq 0 ] ||
		chown postgres:postgres "$1" "$WORK/log-$(basename "$2")" "$WORK/lock-$(basename "$2")"
}
write_conf "$WORK/pgbackrest.conf" "$WORK/repo-pgbackrest"
write_conf "$WORK/pgkeep.conf" "$WORK/repo-pgkeep"

for tool in pgbackrest pgkeep; do
	enabled "$tool" || continue
	tool_argv "$tool"
	log=$LOGD/stanza-create-$tool.log
	rc=0
	(cd "$WORK" && pg_run "${TOOL_ARGV[@]}" stanza-create) >"$log" 2>&1 || rc=$?
	if [ "$rc" != 0 ]; then
		step_failed stanza-create "$tool" "$log" "exit $rc"
		PGKEEP_NA="stanza-create failed (exit $rc, log: $log)"
	fi
done

# --- 2b. TLS servers (remote scenarios) ------------------------------------------------------
# One CA; a server certificate for localhost (DNS:localhost, IP:127.0.0.1) used by all three
# servers; client certificates CN=pgnode (the PostgreSQL node's commands) and CN=repohost
# (pgBackRest's repository host, which pulls backups from its server on the PostgreSQL node).
# Servers, all on 127.0.0.1 and run as postgres:
#   pgkeep server          port PORT+1, repository WORK/repo-rpgkeep
#   pgbackrest server      port PORT+2, repository WORK/repo-rpgbackrest (the "repository host")
#   pgbackrest server      port PORT+3, the "PostgreSQL node" side (pg1-path), for backups
# pgBackRest 2.45 refuses `backup` on the PostgreSQL node when the repository is on a TLS host
# ("backup command must be run on the repository host"): its backups are pulled by the repository
# host (WORK/pgbr-repohost.conf, pg1-host-type=tls); archive-push and restore run on the
# PostgreSQL node (WORK/pgbr-pgnode.conf, repo1-host-type=tls). pgkeep runs all three on the
# PostgreSQL node (WORK/pgkeep-remote.conf, repo1-host-type=tls).
TLS_PGK=$((PORT + 1))
TLS_BRREPO=$((PORT + 2))
TLS_BRPG=$((PORT + 3))
declare -A SRV_BIG=() SRV_SUM=() RSTORED=() RRESTORED=() CONC_WALL=()
PGKR=("$WORK/bin/pgkeep" --config="$WORK/pgkeep-remote.conf" --stanza=main)
PGBRP=(pgbackrest --config="$WORK/pgbr-pgnode.conf" --stanza=main)
PGBRR=(pgbackrest --config="$WORK/pgbr-repohost.conf" --stanza=main)
PGBR_BACKUP_ON_PG_NODE=n/a
# remote_argv TOOL STEP: TOOL_ARGV = the command that runs STEP (backup, restore, archive-push,
# stanza-create, info) against the tool's TLS server.
remote_argv() {
	if [ "$1" = pgkeep ]; then TOOL_ARGV=("${PGKR[@]}")
	elif [ "$2" = backup ]; then TOOL_ARGV=("${PGBRR[@]}")
	else TOOL_ARGV=("${PGBRP[@]}"); fi
}
# server_start NAME CONFIG PORT LOG: run `TOOL --config=CONFIG server` as postgres in the
# background (setpriv execs, so the PID is the server's) and wait until it listens.
server_start() {
	local name=$1 conf=$2 port=$3 log=$4 bin=$WORK/bin/pgkeep
	[[ $name == pgkeep ]] || bin=$(command -v pgbackrest)
	if [ ${#AS_PG[@]} -gt 0 ]; then
		setpriv --reuid=postgres --regid=postgres --init-groups -- "$bin" --config="$conf" server >>"$log" 2>&1 &
	else
		"$bin" --config="$conf" server >>"$log" 2>&1 &
	fi
	SRV_PID[$name]=$!
	wait_port "$port" "${SRV_PID[$name]}"
}
stop_servers() {
	local n
	for n in "${!SRV_PID[@]}"; do kill "${SRV_PID[$n]}" 2>/dev/null || true; done
	for n in "${!SRV_PID[@]}"; do wait "${SRV_PID[$n]}" 2>/dev/null || true; done
	SRV_PID=()
}
# srv_start TOOL / srv_stop STEP TOOL: sample the RSS of the tool's server processes (for
# pgBackRest both of its servers) while a step runs; keep the largest process and the largest sum.
srv_start() {
	SRV_STOP=$WORK/tmp/srv-stop.$$
	SRV_OUT=$WORK/tmp/srv-out.$$
	touch "$SRV_STOP"
	if [ "$1" = pgkeep ]; then
		server_sampler "$SRV_OUT" "$SRV_STOP" "${SRV_PID[pgkeep]}" &
	else
		server_sampler "$SRV_OUT" "$SRV_STOP" "${SRV_PID[pgbackrest-repo]}" "${SRV_PID[pgbackrest-pg]}" &
	fi
	SRV_SPID=$!
}
srv_stop() {
	local b s
	rm -f "$SRV_STOP"
	wait "$SRV_SPID" || true
	read -r b s <"$SRV_OUT" || { b=0; s=0; }
	rm -f "$SRV_OUT"
	SRV_B=$b SRV_S=$s
	[ "$T_RC" != 0 ] || { SRV_BIG[$1:$2]+=" $b"; SRV_SUM[$1:$2]+=" $s"; }
}
# remote_fresh TOOL STEP RUN: empty the tool's server repository and stanza-create through the
# server (untimed); false (and STEP failed for TOOL) if that fails.
remote_fresh() {
	local tool=$1 repo=$WORK/repo-r$1 log=$LOGD/$2-stanza-create-$1-$3.log rc=0
	pg_run rm -rf "$repo"
	pg_run mkdir -p "$repo"
	remote_argv "$tool" stanza-create
	(cd "$WORK" && pg_run "${TOOL_ARGV[@]}" stanza-create) >"$log" 2>&1 || rc=$?
	[ "$rc" = 0 ] && return 0
	step_failed "$2" "$tool" "$log" "stanza-create through the server: exit $rc"
	return 1
}

if want_remote; then
	command -v openssl >/dev/null || die "missing openssl (needed by the remote scenarios)"
	command -v ss >/dev/null || die "missing ss (needed by the remote scenarios)"
	C=$WORK/certs
	mkdir -p "$C"
	{
		openssl req -x509 -newkey rsa:2048 -nodes -keyout "$C/ca.key" -out "$C/ca.crt" -days 30 -subj "/CN=pgkeep bench CA"
		printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$C/san.ext"
		for c in server:localhost pgnode:pgnode repohost:repohost; do
			openssl req -newkey rsa:2048 -nodes -keyout "$C/${c%%:*}.key" -out "$C/${c%%:*}.csr" -subj "/CN=${c#*:}"
			ext=()
			[ "${c%%:*}" != server ] || ext=(-extfile "$C/san.ext")
			openssl x509 -req -in "$C/${c%%:*}.csr" -CA "$C/ca.crt" -CAkey "$C/ca.key" -CAcreateserial -days 30 \
				-out "$C/${c%%:*}.crt" "${ext[@]}"
		done
	} >"$LOGD/certs.log" 2>&1 || die "could not make the certificates" "$LOGD/certs.log"
	chmod 600 "$C"/*.key
	[ ${#AS_PG[@]} -eq 0 ] || chown -R postgres:postgres "$C"
	# tls_server PORT AUTH: the server options of a config file.
	tls_server() {
		printf 'tls-server-address=127.0.0.1\ntls-server-port=%s\ntls-server-cert-file=%s\ntls-server-key-file=%s\ntls-server-ca-file=%s\ntls-server-auth=%s\n' \
			"$1" "$C/server.crt" "$C/server.key" "$C/ca.crt" "$2"
	}
	# tls_client PREFIX PORT CN: the client options (PREFIX repo1 or pg1) of a config file.
	tls_client() {
		printf '%s-host=localhost\n%s-host-type=tls\n%s-host-port=%s\n%s-host-cert-file=%s\n%s-host-key-file=%s\n%s-host-ca-file=%s\n' \
			"$1" "$1" "$1" "$2" "$1" "$C/$3.crt" "$1" "$C/$3.key" "$1" "$C/ca.crt"
	}
	# add_global FILE TEXT: TEXT as the first lines of FILE's [global] section.
	add_global() { printf '%s\n' "$2" >"$WORK/tmp/add"; sed -i "/^\[global\]/r $WORK/tmp/add" "$1"; }

	# pgkeep: the server's repository config, and the node's config without repo1-path
	write_conf "$WORK/pgkeep-server.conf" "$WORK/repo-rpgkeep"
	add_global "$WORK/pgkeep-server.conf" "$(tls_server "$TLS_PGK" pgnode=main)"
	write_conf "$WORK/pgkeep-remote.conf" "$WORK/node-pgkeep"
	sed -i '/^repo1-path=/d' "$WORK/pgkeep-remote.conf"
	add_global "$WORK/pgkeep-remote.conf" "$(tls_client repo1 "$TLS_PGK" pgnode)"
	# pgBackRest: the repository host (its server, and the backups it pulls from the node) ...
	write_conf "$WORK/pgbr-repohost.conf" "$WORK/repo-rpgbackrest"
	add_global "$WORK/pgbr-repohost.conf" "$(tls_server "$TLS_BRREPO" pgnode=main)"
	tls_client pg1 "$TLS_BRPG" repohost >>"$WORK/pgbr-repohost.conf" # into [main], the last section
	# ... and the PostgreSQL node (its server, and archive-push and restore to the repository host)
	# (repo1-path stays: pgBackRest sends it to the repository host's server, whose own
	# repo1-path it overrides; without it the server would use the default /var/lib/pgbackrest)
	write_conf "$WORK/pgbr-pgnode.conf" "$WORK/repo-rpgbackrest"
	sed -i "s|^log-path=.*|log-path=$WORK/log-node-pgbackrest|; s|^lock-path=.*|lock-path=$WORK/lock-node-pgbackrest|" "$WORK/pgbr-pgnode.conf"
	mkdir -p "$WORK/log-node-pgbackrest" "$WORK/lock-node-pgbackrest"
	[ ${#AS_PG[@]} -eq 0 ] || chown postgres:postgres "$WORK/log-node-pgbackrest" "$WORK/lock-node-pgbackrest"
	add_global "$WORK/pgbr-pgnode.conf" "$(tls_client repo1 "$TLS_BRREPO" pgnode)
$(tls_server "$TLS_BRPG" repohost=main)"

	if enabled pgkeep; then
		say "starting pgkeep server on 127.0.0.1:$TLS_PGK"
		if ! server_start pgkeep "$WORK/pgkeep-server.conf" "$TLS_PGK" "$LOGD/server-pgkeep.log"; then
			warn "pgkeep server did not start; its remote figures are n/a. Last lines of $LOGD/server-pgkeep.log:"
			tail -n 20 "$LOGD/server-pgkeep.log" >&2 || true
			for s in remote-backup remote-restore remote-push remote-rss; do FAIL[$s:pgkeep]="pgkeep server did not start (log: $LOGD/server-pgkeep.log)"; done
			unset 'SRV_PID[pgkeep]'
		fi
	fi
	if enabled pgbackrest; then
		say "starting pgbackrest servers on 127.0.0.1:$TLS_BRREPO (repository host) and :$TLS_BRPG (PostgreSQL node)"
		server_start pgbackrest-repo "$WORK/pgbr-repohost.conf" "$TLS_BRREPO" "$LOGD/server-pgbackrest-repo.log" ||
			die "pgbackrest server (repository host) did not start" "$LOGD/server-pgbackrest-repo.log"
		server_start pgbackrest-pg "$WORK/pgbr-pgnode.conf" "$TLS_BRPG" "$LOGD/server-pgbackrest-pg.log" ||
			die "pgbackrest server (PostgreSQL node) did not start" "$LOGD/server-pgbackrest-pg.log"
		# what pgBackRest 2.45 says to a backup on the PostgreSQL node with a TLS repository host
		pg_run mkdir -p "$WORK/repo-rpgbackrest"
		rc=0
		(cd "$WORK" && pg_run "${PGBRP[@]}" stanza-create && pg_run "${PGBRP[@]}" backup --type=full) >"$LOGD/pgbackrest-backup-on-pg-node.log" 2>&1 || rc=$?
		PGBR_BACKUP_ON_PG_NODE="exit $rc: $(grep -m1 -o 'ERROR.*' "$LOGD/pgbackrest-backup-on-pg-node.log" || echo 'no error')"
		say "pgbackrest backup on the PostgreSQL node against the TLS repository host: $PGBR_BACKUP_ON_PG_NODE"
	fi
fi

# remote_backup_run RUN: each tool's full backup through its server into an emptied repository.
remote_backup_run() {
	local run=$1 tool log n
	for tool in $(run_order "$run"); do
		[ -z "${FAIL[remote-backup:$tool]:-}" ] || continue
		remote_fresh "$tool" remote-backup "$run" || continue
		remote_argv "$tool" backup
		log=$LOGD/remote-backup-$tool-$run.log
		say "run $run/$RUNS: $tool backup --type=full through the TLS server"
		srv_start "$tool"
		timed "$WORK" "$log" "${TOOL_ARGV[@]}" backup --type=full
		srv_stop remote-backup "$tool"
		record remote-backup "$tool" "$run"
		if [ "$T_RC" != 0 ]; then step_failed remote-backup "$tool" "$log" "exit $T_RC"; continue; fi
		n=$( (cd "$WORK" && pg_run "${TOOL_ARGV[@]}" info --output=json) 2>"$log.info.err" |
			jq '[.[] | select(.name == "main") | .backup[]? | select(.type == "full")] | length' 2>/dev/null) || n=
		if [ "$n" != 1 ]; then
			WALLS[remote-backup:$tool]=
			step_failed remote-backup "$tool" "$log.info.err" "exit 0 but info through the server lists '$n' full backups, expected 1"
			continue
		fi
		say "  $T_WALL s, client RSS $(kib_to_mib "$T_RSS") MiB, server processes: largest $(kib_to_mib "$SRV_B") MiB, sum $(kib_to_mib "$SRV_S") MiB"
	done
}

# remote_restore_run RUN: each tool's restore of its last remote backup, on the node, through the server.
remote_restore_run() {
	local run=$1 tool log dir
	for tool in $(run_order "$run"); do
		if [ -n "${FAIL[remote-backup:$tool]:-}" ]; then
			FAIL[remote-restore:$tool]=${FAIL[remote-restore:$tool]:-"no remote backup to restore"}
			continue
		fi
		[ -z "${FAIL[remote-restore:$tool]:-}" ] || continue
		remote_argv "$tool" restore
		dir=$WORK/rrestore-$tool
		rm -rf "$dir"
		pg_run mkdir -m 0700 "$dir"
		log=$LOGD/remote-restore-$tool-$run.log
		say "run $run/$RUNS: $tool restore --type=none through the TLS server into $dir"
		srv_start "$tool"
		timed "$WORK" "$log" "${TOOL_ARGV[@]}" restore --pg1-path="$dir" --type=none
		srv_stop remote-restore "$tool"
		record remote-restore "$tool" "$run"
		if [ "$T_RC" != 0 ]; then step_failed remote-restore "$tool" "$log" "exit $T_RC"; continue; fi
		if [ ! -s "$dir/PG_VERSION" ] || [ ! -s "$dir/global/pg_control" ]; then
			WALLS[remote-restore:$tool]=
			step_failed remote-restore "$tool" "$log" "exit 0 but $dir has no PG_VERSION or global/pg_control"
			continue
		fi
		say "  $T_WALL s, client RSS $(kib_to_mib "$T_RSS") MiB, server processes: largest $(kib_to_mib "$SRV_B") MiB, sum $(kib_to_mib "$SRV_S") MiB"
		[ "$run" = "$RUNS" ] || continue
		RRESTORED[$tool]="$(bytes_h $(($(du_b "$dir") - $(du_b "$dir/pg_wal")))), $(count_files "$dir") files"
		# the last run's result: base/ as in the cluster (nothing wrote to it since the backups)
		if diff -rq --exclude=pg_internal.init --exclude=pgsql_tmp "$PGDATA/base" "$dir/base" >"$log.diff" 2>&1; then
			RRESTORED[$tool]+=", base/ equal to the cluster's"
		else
			WALLS[remote-restore:$tool]=
			[ "$tool" = pgbackrest ] && die "pgBackRest's restore through its server differs from the cluster in base/" "$log.diff"
			step_failed remote-restore "$tool" "$log.diff" "exit 0 but base/ differs from the cluster's in $(wc -l <"$log.diff") file(s)"
		fi
	done
}

# remote_push_run RUN: each tool's archive-push of the segment through its server into an
# emptied repository (pushing a segment the archive holds is a no-op).
remote_push_run() {
	local run=$1 tool log before stored repo
	for tool in $(run_order "$run"); do
		[ -z "${FAIL[remote-push:$tool]:-}" ] || continue
		remote_fresh "$tool" remote-push "$run" || continue
		remote_argv "$tool" archive-push
		repo=$WORK/repo-r$tool
		before=$(du_b "$repo")
		log=$LOGD/remote-push-$tool-$run.log
		say "run $run/$RUNS: $tool archive-push $SEG through the TLS server"
		srv_start "$tool"
		timed "$PGDATA" "$log" "${TOOL_ARGV[@]}" archive-push "$SEGFILE"
		srv_stop remote-push "$tool"
		record remote-push "$tool" "$run"
		if [ "$T_RC" != 0 ]; then step_failed remote-push "$tool" "$log" "exit $T_RC"; continue; fi
		stored=$(($(du_b "$repo") - before))
		if [ "$stored" -lt 1048576 ]; then
			WALLS[remote-push:$tool]=
			step_failed remote-push "$tool" "$log" "exit 0 but the server's repository grew by only $stored bytes"
			continue
		fi
		RSTORED[$tool]=$stored
		say "  $T_WALL s, client RSS $(kib_to_mib "$T_RSS") MiB, server processes: largest $(kib_to_mib "$SRV_B") MiB, sum $(kib_to_mib "$SRV_S") MiB, stored $(bytes_h "$stored")"
	done
}

# --- 3. full backups --------------------------------------------------------------------------
# Each run starts from an empty repository (the first full backup of a cluster), then takes a
# second full backup of the unchanged database into it: pgkeep's block store finds every block
# already stored, pgBackRest copies everything again. Both are reported; the first is the
# like-for-like comparison.
if want backup; then
	for run in $(seq 1 "$RUNS"); do
		for tool in $(run_order "$run"); do
			[ -z "${FAIL[backup:$tool]:-}" ] || continue
			tool_argv "$tool"
			pg_run rm -rf "$WORK/repo-$tool"
			pg_run mkdir -p "$WORK/repo-$tool"
			log=$LOGD/backup-stanza-create-$tool-$run.log
			rc=0
			(cd "$WORK" && pg_run "${TOOL_ARGV[@]}" stanza-create) >"$log" 2>&1 || rc=$?
			if [ "$rc" != 0 ]; then
				step_failed backup "$tool" "$log" "stanza-create: exit $rc"
				continue
			fi
			for step in backup backup-again; do
				log=$LOGD/$step-$tool-$run.log
				say "run $run/$RUNS: $tool $step --type=full"
				timed "$WORK" "$log" "${TOOL_ARGV[@]}" backup --type=full
				record "$step" "$tool" "$run"
				if [ "$T_RC" != 0 ]; then
					step_failed "$step" "$tool" "$log" "exit $T_RC"
					break
				fi
				say "  $T_WALL s, RSS $(kib_to_mib "$T_RSS") MiB"
				[ "$run" != 1 ] || [ "$step" != backup ] || REPO1[$tool]=$(du_b "$WORK/repo-$tool")
				[ "$run" != 1 ] || [ "$step" != backup-again ] || REPO2[$tool]=$(du_b "$WORK/repo-$tool")
			done
		done
		! want remote-backup || remote_backup_run "$run"
	done

	# Every backup must be listed by info --output=json.
	for tool in pgbackrest pgkeep; do
		enabled "$tool" && [ -z "${FAIL[backup:$tool]:-}" ] || continue
		tool_argv "$tool"
		log=$LOGD/info-$tool.log
		rc=0
		(cd "$WORK" && pg_run "${TOOL_ARGV[@]}" info --output=json) >"$log" 2>"$log.err" || rc=$?
		n=$(jq '[.[] | select(.name == "main") | .backup[]? | select(.type == "full")] | length' "$log" 2>/dev/null) || n=
		# the repository of the last run holds its two full backups
		if [ "$rc" != 0 ] || [ -z "$n" ]; then
			[ "$tool" = pgbackrest ] && die "pgbackrest info --output=json failed or is not the expected JSON (exit $rc)" "$log.err"
			NBACKUP[$tool]="n/a (info --output=json: exit $rc or unreadable)"
		else
			NBACKUP[$tool]=$n
			if [ "$n" != 2 ]; then
				[ "$tool" = pgbackrest ] && die "pgbackrest info lists $n full backups, expected 2" "$log"
				NBACKUP[$tool]="$n (expected 2!)"
			fi
		fi
	done
fi

# --- 4. full restores -------------------------------------------------------------------------
if want restore; then
	for run in $(seq 1 "$RUNS"); do
		for tool in $(run_order "$run"); do
			if [ -n "${FAIL[backup:$tool]:-}" ]; then
				FAIL[restore:$tool]=${FAIL[restore:$tool]:-"no backup to restore"}
				continue
			fi
			[ -z "${FAIL[restore:$tool]:-}" ] || continue
			tool_argv "$tool"
			dir=$WORK/restore-$tool
			rm -rf "$dir"
			pg_run mkdir -m 0700 "$dir"
			log=$LOGD/restore-$tool-$run.log
			say "run $run/$RUNS: $tool restore --type=none into $dir"
			timed "$WORK" "$log" "${TOOL_ARGV[@]}" restore --pg1-path="$dir" --type=none
			record restore "$tool" "$run"
			if [ "$T_RC" != 0 ]; then
				step_failed restore "$tool" "$log" "exit $T_RC"
				continue
			fi
			if [ ! -s "$dir/PG_VERSION" ] || [ ! -s "$dir/global/pg_control" ]; then
				# the time was recorded above: drop it, the restore is not a restore
				WALLS[restore:$tool]=
				step_failed restore "$tool" "$log" "exit 0 but $dir has no PG_VERSION or global/pg_control"
				continue
			fi
			say "  $T_WALL s, RSS $(kib_to_mib "$T_RSS") MiB"
			if [ "$run" = "$RUNS" ]; then
				b=$(($(du_b "$dir") - $(du_b "$dir/pg_wal")))
				f=$(count_files "$dir")
				RESTORED[$tool]="$(bytes_h "$b"), $f files"
			fi
		done
		! want remote-restore || remote_restore_run "$run"
	done
fi

# --- 5. incremental backup and delta restore -------------------------------------------------
# Each run: a fresh repository and an untimed full backup for each tool (of the same database
# state: nothing writes between them), then one pgbench round of changes and a CHECKPOINT, then the timed
# `backup --type=incr` of each tool, which therefore both back up the same changes. The
# repository growth of each incr is du -sb after minus before. Delta restore: each tool restores
# its full backup into WORK/delta-TOOL (untimed), then the timed `restore --delta` of its incr
# onto it; the result's base/ must equal the cluster's (nothing writes after the incrs).
INCR_PGBENCH=(-n -c 2 -j 2 -t 2000 -N)
# label_of TOOL LOG: the label of the newest backup in the tool's info --output=json (LOG keeps it).
label_of() {
	tool_argv "$1"
	(cd "$WORK" && pg_run "${TOOL_ARGV[@]}" info --output=json) >"$2" 2>"$2.err" &&
		jq -er '.[] | select(.name == "main") | .backup[-1] | "\(.label) \(.type)"' "$2"
}
# incr_fail TOOL WHY LOG: the incr (and so the delta) of TOOL is n/a from now on.
incr_fail() {
	step_failed incr "$1" "$3" "$2"
	FAIL[delta:$1]=${FAIL[delta:$1]:-"no incremental backup"}
}
if want incr; then
	for run in $(seq 1 "$RUNS"); do
		declare -A FULL_LABEL=()
		for tool in $(run_order "$run"); do
			[ -z "${FAIL[incr:$tool]:-}" ] || continue
			tool_argv "$tool"
			pg_run rm -rf "$WORK/repo-$tool"
			pg_run mkdir -p "$WORK/repo-$tool"
			log=$LOGD/incr-full-$tool-$run.log
			say "run $run/$RUNS: $tool stanza-create and backup --type=full (untimed)"
			rc=0
			(cd "$WORK" && pg_run "${TOOL_ARGV[@]}" stanza-create && pg_run "${TOOL_ARGV[@]}" backup --type=full) >"$log" 2>&1 || rc=$?
			if [ "$rc" != 0 ]; then incr_fail "$tool" "full backup before the incr: exit $rc" "$log"; continue; fi
			lt=$(label_of "$tool" "$LOGD/incr-full-info-$tool-$run.json") || lt=
			if [ "${lt#* }" != full ]; then incr_fail "$tool" "info does not list the full backup" "$LOGD/incr-full-info-$tool-$run.json"; continue; fi
			FULL_LABEL[$tool]=${lt% *}
		done
		say "run $run/$RUNS: pgbench ${INCR_PGBENCH[*]}"
		must "$LOGD/incr-pgbench-$run.log" env PGOPTIONS='-c synchronous_commit=off' \
			"${AS_PG[@]}" "$PGBIN/pgbench" "${INCR_PGBENCH[@]}" -h "$SOCK" -p "$PORT" -U postgres postgres
		# flush pgbench's writes now: else the first tool's immediate checkpoint pays for it
		must "$LOGD/checkpoint.log" psqlc "CHECKPOINT"
		for tool in $(run_order "$run"); do
			[ -z "${FAIL[incr:$tool]:-}" ] || continue
			tool_argv "$tool"
			repo=$WORK/repo-$tool
			if [ "$tool" = pgkeep ]; then # for the breakdown of what the incr adds
				find "$repo/main/store/pack" -name '*.pack' >"$WORK/tmp/packs-before"
				index_before=$(stat -c %s "$repo/main/store/index")
			fi
			before=$(du_b "$repo")
			log=$LOGD/incr-$tool-$run.log
			say "run $run/$RUNS: $tool backup --type=incr"
			timed "$WORK" "$log" "${TOOL_ARGV[@]}" backup --type=incr
			record incr "$tool" "$run"
			if [ "$T_RC" != 0 ]; then incr_fail "$tool" "exit $T_RC" "$log"; continue; fi
			lt=$(label_of "$tool" "$LOGD/incr-info-$tool-$run.json") || lt=
			if [ "${lt#* }" != incr ]; then
				WALLS[incr:$tool]=
				incr_fail "$tool" "exit 0 but info does not list an incr backup as the newest" "$LOGD/incr-info-$tool-$run.json"
				continue
			fi
			grown=$(($(du_b "$repo") - before))
			GROW[$tool]+=" $grown"
			say "  $T_WALL s, RSS $(kib_to_mib "$T_RSS") MiB, repository +$(bytes_h "$grown")"
			if [ "$tool" = pgkeep ] && command -v python3 >/dev/null; then
				if python3 "$HERE/store_growth.py" "$repo/main" "$WORK/tmp/packs-before" \
					"$repo/main/backup/${lt% *}/manifest" "$repo/main/backup/${FULL_LABEL[$tool]}/manifest" \
					"$index_before" >"$LOGD/incr-growth-$run.txt" 2>&1; then
					BREAKDOWN[$run]="$grown $(tr '\n' ' ' <"$LOGD/incr-growth-$run.txt")"
				else
					warn "bench/store_growth.py failed, see $LOGD/incr-growth-$run.txt"
				fi
			fi
		done
		want delta || continue
		for tool in $(run_order "$run"); do
			[ -z "${FAIL[delta:$tool]:-}" ] || continue
			tool_argv "$tool"
			dir=$WORK/delta-$tool
			rm -rf "$dir"
			pg_run mkdir -m 0700 "$dir"
			log=$LOGD/delta-full-restore-$tool-$run.log
			say "run $run/$RUNS: $tool restore --set=${FULL_LABEL[$tool]} (the full, untimed) into $dir"
			rc=0
			(cd "$WORK" && pg_run "${TOOL_ARGV[@]}" restore --set="${FULL_LABEL[$tool]}" --pg1-path="$dir" --type=none) >"$log" 2>&1 || rc=$?
			if [ "$rc" != 0 ]; then step_failed delta "$tool" "$log" "restore of the full backup: exit $rc"; continue; fi
			log=$LOGD/delta-$tool-$run.log
			say "run $run/$RUNS: $tool restore --delta (the incr) onto $dir"
			timed "$WORK" "$log" "${TOOL_ARGV[@]}" restore --delta --pg1-path="$dir" --type=none
			record delta "$tool" "$run"
			if [ "$T_RC" != 0 ]; then step_failed delta "$tool" "$log" "exit $T_RC"; continue; fi
			# a valid restore of the incr: every relation file as in the cluster (which nothing
			# changed since the incrs: autovacuum is off), no file missing or left over
			if ! diff -rq --exclude=pg_internal.init --exclude=pgsql_tmp "$PGDATA/base" "$dir/base" >"$log.diff" 2>&1; then
				WALLS[delta:$tool]=
				[ "$tool" = pgbackrest ] && die "pgBackRest's delta restore differs from the cluster in base/" "$log.diff"
				step_failed delta "$tool" "$log.diff" "exit 0 but base/ differs from the cluster's in $(wc -l <"$log.diff") file(s)"
				continue
			fi
			DELTA_OK[$tool]=$(( ${DELTA_OK[$tool]:-0} + 1 ))
			say "  $T_WALL s, RSS $(kib_to_mib "$T_RSS") MiB; base/ equal to the cluster's"
		done
	done
fi

# --- 6. archive-push of a real, fully written WAL segment -----------------------------------
if want archive-push || want remote-rss; then
	lsn_seg() { psqlc "select pg_walfile_name(pg_current_wal_lsn())"; }
	SEG=$(psqlc "select pg_walfile_name(pg_current_wal_lsn() + $SEGSIZE)")
	say "generating WAL with pgbench -c 2 -j 2 until segment $SEG is complete (now in $(lsn_seg))"
	t0=$(date +%s)
	while :; do
		cur=$(lsn_seg)
		[[ $cur > $SEG ]] && break
		[ $(($(date +%s) - t0)) -lt 1800 ] || die "segment $SEG still not complete after 30 min of pgbench (now in $cur)"
		# A checkpoint before each 5 s round makes pgbench write full-page images again, as it
		# does after every checkpoint in production: without them a small database yields only
		# ~0.3 MB/s of WAL here. synchronous_commit=off only makes pgbench faster; the records
		# are the same.
		must "$LOGD/checkpoint.log" psqlc "CHECKPOINT"
		must "$LOGD/pgbench-round.log" env PGOPTIONS='-c synchronous_commit=off' \
			"${AS_PG[@]}" "$PGBIN/pgbench" -n -c 2 -j 2 -T 5 -h "$SOCK" -p "$PORT" -U postgres postgres
		cat "$LOGD/pgbench-round.log" >>"$LOGD/pgbench-run.log"
	done
	say "WAL generated in $(($(date +%s) - t0)) s, now in segment $cur"
	must "$LOGD/copy-segment.log" pg_run cp "$PGDATA/pg_wal/$SEG" "$WORK/seg/$SEG"

	# The copy must be the segment itself, fully written: the page address in the headers of its
	# first and last pages must be where the segment sits (a recycled file would carry old ones).
	SEGFILE=$WORK/seg/$SEG
	[ "$(stat -c %s "$SEGFILE")" = "$SEGSIZE" ] || die "$SEGFILE is not $SEGSIZE bytes"
	seg_log=$((16#${SEG:8:8}))
	seg_no=$((16#${SEG:16:8}))
	seg_start=$((seg_log * 4294967296 + seg_no * SEGSIZE))
	pageaddr() { od -An -t u8 -j $(($1 + 8)) -N 8 "$SEGFILE" | tr -d ' '; }
	[ "$(pageaddr 0)" = "$seg_start" ] || die "$SEGFILE: first page address $(pageaddr 0), expected $seg_start"
	last=$((SEGSIZE - 8192))
	[ "$(pageaddr "$last")" = "$((seg_start + last))" ] ||
		die "$SEGFILE: last page address $(pageaddr "$last"), expected $((seg_start + last)) (not fully written?)"

	# the runs (remote-rss only needs the segment)
	if want archive-push; then
		for run in $(seq 1 "$RUNS"); do
			for tool in $(run_order "$run"); do
				[ -z "${FAIL[archive-push:$tool]:-}" ] || continue
				tool_argv "$tool"
				# a fresh repository per run: pushing a segment the archive already holds is a no-op
				repo=$WORK/arch/$tool-$run
				pg_run mkdir -p "$repo"
				log=$LOGD/archive-push-stanza-create-$tool-$run.log
				rc=0
				(cd "$WORK" && pg_run "${TOOL_ARGV[@]}" --repo1-path="$repo" stanza-create) >"$log" 2>&1 || rc=$?
				if [ "$rc" != 0 ]; then
					step_failed archive-push "$tool" "$log" "stanza-create of a fresh repository: exit $rc"
					continue
				fi
				before=$(du_b "$repo")
				log=$LOGD/archive-push-$tool-$run.log
				say "run $run/$RUNS: $tool archive-push $SEG"
				timed "$PGDATA" "$log" "${TOOL_ARGV[@]}" --repo1-path="$repo" archive-push "$SEGFILE"
				record archive-push "$tool" "$run"
				if [ "$T_RC" != 0 ]; then
					step_failed archive-push "$tool" "$log" "exit $T_RC"
					continue
				fi
				stored=$(($(du_b "$repo") - before))
				if [ "$stored" -lt 1048576 ]; then
					WALLS[archive-push:$tool]=
					step_failed archive-push "$tool" "$log" "exit 0 but the repository grew by only $stored bytes"
					continue
				fi
				say "  $T_WALL s, RSS $(kib_to_mib "$T_RSS") MiB, stored $(bytes_h "$stored")"
				STORED[$tool]=$stored
				rm -rf "$repo"
			done
			! want remote-push || remote_push_run "$run"
		done
	fi
fi

# --- 7. four clients at once on one server ----------------------------------------------------
# Each run: an emptied server repository and stanza-create, then four archive-push of four copies
# of the segment as four other segments (bench/wal_copy.py: named for segment number + 16, + 32,
# + 48, + 64, with the page addresses in their page headers moved to match, since pgkeep checks
# them against the name), started together from the node.
# The server processes' RSS (the listener and the four connection processes it forks) is sampled
# every 0.1 s: the largest VmHWM of one process and the largest sum of VmRSS at one sample.
# pgkeep only: pgBackRest 2.45 allows one archive-push per stanza at a time (a lock on the
# repository host), which is all PostgreSQL's single archiver needs.
if want remote-rss; then
	mkdir -p "$WORK/seg4"
	CONC_SEGS=()
	if ! command -v python3 >/dev/null; then
		FAIL[remote-rss:pgkeep]="needs python3 (bench/wal_copy.py)"
	else
		must "$LOGD/wal-copy.log" python3 "$HERE/wal_copy.py" "$SEGFILE" "$WORK/seg4" "$SEGSIZE" 4
		mapfile -t CONC_SEGS <"$LOGD/wal-copy.log"
		[ ${#CONC_SEGS[@]} = 4 ] || die "bench/wal_copy.py did not write 4 segments" "$LOGD/wal-copy.log"
		[ ${#AS_PG[@]} -eq 0 ] || chown -R postgres:postgres "$WORK/seg4"
	fi
	for run in $(seq 1 "$RUNS"); do
		for tool in $(run_order "$run"); do
			# pgkeep only: pgBackRest's archive-push takes a lock per stanza on the repository host
			# (main-archive.lock), so of four at once three fail with LockAcquireError
			[ "$tool" = pgkeep ] || continue
			[ -z "${FAIL[remote-rss:$tool]:-}" ] || continue
			remote_fresh "$tool" remote-rss "$run" || continue
			remote_argv "$tool" archive-push
			before=$(du_b "$WORK/repo-r$tool")
			say "run $run/$RUNS: $tool: four archive-push at once through the TLS server"
			drop_caches
			srv_start "$tool"
			t0=$(date +%s.%N)
			pids=()
			for i in 0 1 2 3; do
				(cd "$PGDATA" && exec "${AS_PG[@]}" "${TOOL_ARGV[@]}" archive-push "${CONC_SEGS[$i]}") \
					>"$LOGD/remote-rss-$tool-$run-$i.log" 2>&1 &
				pids+=($!)
			done
			T_RC=0
			for i in 0 1 2 3; do wait "${pids[$i]}" || T_RC=$?; done
			t1=$(date +%s.%N)
			srv_stop remote-rss "$tool"
			if [ "$T_RC" != 0 ]; then step_failed remote-rss "$tool" "$LOGD/remote-rss-$tool-$run-$i.log" "an archive-push failed (exit $T_RC)"; continue; fi
			stored=$(($(du_b "$WORK/repo-r$tool") - before))
			if [ "$stored" -lt 4194304 ]; then
				step_failed remote-rss "$tool" "$LOGD/remote-rss-$tool-$run-0.log" "exit 0 but the server's repository grew by only $stored bytes"
				continue
			fi
			CONC_WALL[$tool]+=" $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')"
			say "  ${CONC_WALL[$tool]##* } s, server processes: largest $(kib_to_mib "$SRV_B") MiB, sum $(kib_to_mib "$SRV_S") MiB"
		done
	done
fi

stop_servers
stop_cluster fast
PG_STARTED=0

# --- 8. report --------------------------------------------------------------------------------
# (the figure lists are space-separated on purpose: unquoted expansion below)
# shellcheck disable=SC2086
# cell STEP TOOL KIND: median wall, max RSS or max tree RSS of a step; n/a when not measured.
cell() {
	local v
	if ! enabled "$2" || [ -n "${FAIL[$1:$2]:-}" ]; then echo n/a; return; fi
	case $3 in
	wall) v=${WALLS[$1:$2]:-}; median $v ;;
	rss) v=${RSSV[$1:$2]:-}; kib_to_mib "$(maxof $v)" ;;
	tree) v=${TREEV[$1:$2]:-}; kib_to_mib "$(maxof $v)" ;;
	esac
}
growth() { # TOOL
	local a=${REPO1[$1]:-} b=${REPO2[$1]:-}
	if [ "$RUNS" -lt 2 ]; then echo "n/a (needs --runs 2 or more)"; return; fi
	if [ -z "$a" ] || [ -z "$b" ]; then echo "n/a"; return; fi
	awk -v a="$a" -v b="$b" 'BEGIN { printf "+%.2f%% of run 1 (+%.1f MiB)", (b - a) * 100 / a, (b - a) / 1048576 }'
}
# shellcheck disable=SC2086
runs_of() { # STEP TOOL
	local v=${WALLS[$1:$2]:-}
	if ! enabled "$2" || [ -n "${FAIL[$1:$2]:-}" ] || [ -z "${v// /}" ]; then echo n/a; else echo $v; fi
}
# shellcheck disable=SC2086
incr_growth() { # TOOL: median growth in bytes, or n/a
	if ! enabled "$1" || [ -n "${FAIL[incr:$1]:-}" ] || [ -z "${GROW[$1]:-}" ]; then echo n/a; else median ${GROW[$1]} | cut -d. -f1; fi
}
# target A B MAX: "A/B (target at most MAX: met|MISSED)", three decimals; n/a if A or B is.
target() {
	case "$1$2" in *n/a*) echo "n/a"; return ;; esac
	awk -v a="$1" -v b="$2" -v m="$3" 'BEGIN { if (b + 0 == 0) { print "n/a"; exit }
		printf "%.3f (target at most %s: %s)", a / b, m, (a / b <= m + 0) ? "met" : "MISSED" }'
}
# paired STEP BASE TOOL: "median M of the per-run ratios R1 R2 ...": run r's STEP time over run
# r's BASE time. Both steps of a run are taken a few seconds apart, so that load on this shared
# machine drifting between runs cancels out of each ratio; n/a unless both have every run's time.
# shellcheck disable=SC2206
paired() {
	local step_w=(${WALLS[$1:$3]:-}) base_w=(${WALLS[$2:$3]:-}) r=() i
	if [ ${#step_w[@]} != "$RUNS" ] || [ ${#base_w[@]} != "$RUNS" ]; then echo n/a; return; fi
	for ((i = 0; i < RUNS; i++)); do
		r+=("$(awk -v x="${step_w[$i]}" -v y="${base_w[$i]}" 'BEGIN { printf "%.3f", x / y }')")
	done
	printf '%s\n' "${r[@]}" | sort -g | awk -v all="${r[*]}" '{ v[NR] = $1 } END {
		m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		printf "median %.3f of the per-run ratios %s", m, all }'
}
# target_least A B MIN: "A/B (target at least MIN: met|MISSED)", two decimals; n/a if A or B is.
target_least() {
	case "$1$2" in *n/a*) echo "n/a"; return ;; esac
	awk -v a="$1" -v b="$2" -v m="$3" 'BEGIN { if (b + 0 == 0) { print "n/a"; exit }
		printf "%.2f (target at least %s: %s)", a / b, m, (a / b >= m + 0) ? "met" : "MISSED" }'
}
# srv_cell STEP TOOL: "LARGEST / SUM" MiB of the tool's server processes during STEP (max over runs).
# shellcheck disable=SC2086
srv_cell() {
	local b=${SRV_BIG[$1:$2]:-} s=${SRV_SUM[$1:$2]:-}
	if ! enabled "$2" || [ -n "${FAIL[$1:$2]:-}" ] || [ -z "${b// /}" ]; then echo n/a; return; fi
	echo "$(kib_to_mib "$(maxof $b)") / $(kib_to_mib "$(maxof $s)")"
}
# bd KEY: a figure of the breakdown in BD (store_growth.py's key=value words).
bd() { tr ' ' '\n' <<<"$BD" | sed -n "s/^$1=//p"; }
STEPS=()
! want backup || STEPS+=(backup backup-again)
! want restore || STEPS+=(restore)
! want incr || STEPS+=(incr)
! want delta || STEPS+=(delta)
! want archive-push || STEPS+=(archive-push)
! want remote-backup || STEPS+=(remote-backup)
! want remote-restore || STEPS+=(remote-restore)
! want remote-push || STEPS+=(remote-push)

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
CPU=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
MEM=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
REPORT=$WORK/results.txt
{
	echo "pgkeep vs pgBackRest benchmark ($(date -u '+%Y-%m-%d %H:%M UTC'))"
	echo "machine:  $(nproc) CPUs ($CPU), $MEM RAM, Linux $(uname -r), load average at start: $LOAD_START, at end: $LOAD_END"
	echo "versions: $PGBR_VERSION; pgkeep: $PGKEEP_VERSION; $("$PGBIN/postgres" --version)"
	echo "data:     pgbench scale $SCALE, database $(bytes_h "$DB_BYTES"), cluster without pg_wal $(bytes_h "$PGDATA_BYTES"), $PGDATA_FILES files"
	echo "settings: zst level 3, process-max=2, start-fast, $RUNS runs per step, order alternated per run, page cache dropped before each timed step: $([ "$DROP_CACHES" = 1 ] && echo yes || echo no)"
	echo "scenarios: $SCENARIOS$(! want incr || echo "; changes before each incr: pgbench ${INCR_PGBENCH[*]}")"
	[ -z "$PGKEEP_NA" ] || echo "pgkeep:   n/a: $PGKEEP_NA"
	echo
	printf '%-14s %10s %10s %9s  %21s  %21s\n' "" "wall s" "wall s" "ratio" "peak RSS MiB" "peak RSS MiB"
	printf '%-14s %10s %10s %9s  %21s  %21s\n' "step" "pgkeep" "pgBackRest" "pgBR/pgk" "(time -v, 1 process)" "(sampled, tree sum)"
	printf '%-14s %10s %10s %9s  %10s %10s  %10s %10s\n' "" "(median)" "(median)" "" "pgkeep" "pgBackRest" "pgkeep" "pgBackRest"
	for step in "${STEPS[@]}"; do
		k=$(cell "$step" pgkeep wall)
		b=$(cell "$step" pgbackrest wall)
		printf '%-14s %10s %10s %9s  %10s %10s  %10s %10s\n' "$step" "$k" "$b" "$(ratio "$b" "$k")" \
			"$(cell "$step" pgkeep rss)" "$(cell "$step" pgbackrest rss)" \
			"$(cell "$step" pgkeep tree)" "$(cell "$step" pgbackrest tree)"
	done
	echo
	! want backup || echo "backup: first full backup into an empty repository; backup-again: a second full backup of the
unchanged database into the same repository."
	! want incr || echo "incr: backup --type=incr after pgbench changes, onto a full backup of the same data."
	! want delta || echo "delta: restore --delta of that incr onto a directory holding the restored full backup."
	echo "ratio > 1: pgkeep is faster. RSS is the max over runs; 'time -v' is the largest single process"
	echo "(pgBackRest forks process-max worker processes: this is its biggest process, not the sum);"
	echo "'tree sum' adds up every pgkeep/pgBackRest process of the command, sampled every 0.2 s."
	echo
	echo "wall seconds of each run (run order alternates: pgBackRest first on odd runs):"
	for step in "${STEPS[@]}"; do
		printf '  %-13s pgkeep: %-30s pgBackRest: %s\n' "$step" "$(runs_of "$step" pgkeep)" "$(runs_of "$step" pgbackrest)"
	done
	echo
	if want backup; then
		echo "repository after the first full backup:"
		printf '  %-11s %s\n' pgkeep "$(bytes_h "${REPO1[pgkeep]:-n/a}")" pgBackRest "$(bytes_h "${REPO1[pgbackrest]:-n/a}")"
		echo "repository growth from the 1st to the 2nd full backup of the unchanged database:"
		printf '  %-11s %s\n' pgkeep "$(growth pgkeep)" pgBackRest "$(growth pgbackrest)"
		echo "full backups listed by info --output=json in the last run's repository (expected 2):"
		printf '  %-11s %s\n' pgkeep "${NBACKUP[pgkeep]:-n/a}" pgBackRest "${NBACKUP[pgbackrest]:-n/a}"
	fi
	if want restore; then
		echo "restored cluster without pg_wal (source: $(bytes_h "$PGDATA_BYTES"), $PGDATA_FILES files):"
		printf '  %-11s %s\n' pgkeep "${RESTORED[pgkeep]:-n/a}" pgBackRest "${RESTORED[pgbackrest]:-n/a}"
	fi
	if want incr; then
		gk=$(incr_growth pgkeep)
		gb=$(incr_growth pgbackrest)
		echo "repository growth of the incr backup (median; each run's in bytes):"
		printf '  %-11s %-32s %s\n' pgkeep "$(bytes_h "$gk")" "${GROW[pgkeep]:-}" pgBackRest "$(bytes_h "$gb")" "${GROW[pgbackrest]:-}"
		echo "  pgkeep/pgBackRest growth: $(target "$gk" "$gb" 0.125)"
		echo "  pgkeep/pgBackRest time:   $(target "$(cell incr pgkeep wall)" "$(cell incr pgbackrest wall)" 0.5)"
		if [ ${#BREAKDOWN[@]} -gt 0 ]; then
			echo "what pgkeep's incr added (bench/store_growth.py; bytes as du -sb counts them):"
			for run in $(printf '%s\n' "${!BREAKDOWN[@]}" | sort -n); do
				BD=${BREAKDOWN[$run]#* }
				g=${BREAKDOWN[$run]%% *}
				other=$((g - $(bd data_stored) - $(bd list_stored) - $(bd record_header_bytes) - $(bd pack_header_bytes) - $(bd manifest_bytes) - $(bd index_growth)))
				printf '  run %s: %s = data blocks %s (%s new blocks, %s raw) + block lists %s (%s lists, %s of them deltas: %s)\n' \
					"$run" "$g" "$(bd data_stored)" "$(bd data_records)" "$(bd data_raw)" "$(bd list_stored)" "$(bd list_records)" \
					"$(bd delta_records)" "$(bd delta_stored)"
				printf '         + record headers %s + pack headers %s (%s packs) + manifest %s + index %s + other (directories) %s\n' \
					"$(bd record_header_bytes)" "$(bd pack_header_bytes)" "$(bd packs)" "$(bd manifest_bytes)" "$(bd index_growth)" "$other"
				printf '         manifest: %s g lines, %s naming a list the full does not; %s single-id lines, %s new\n' \
					"$(bd groups)" "$(bd groups_new)" "$(bd id_lines)" "$(bd id_lines_new)"
			done
		fi
	fi
	if want delta; then
		echo "delta restore: pgkeep/pgBackRest time: $(target "$(cell delta pgkeep wall)" "$(cell delta pgbackrest wall)" 0.5)"
		echo "delta-restored base/ equal to the cluster's (runs):"
		printf '  %-11s %s\n' pgkeep "${DELTA_OK[pgkeep]:-0} of $RUNS" pgBackRest "${DELTA_OK[pgbackrest]:-0} of $RUNS"
	fi
	if want archive-push; then
		echo "archive-push: segment $SEG ($(bytes_h "$SEGSIZE")), stored in the repository:"
		printf '  %-11s %s\n' pgkeep "$(bytes_h "${STORED[pgkeep]:-n/a}")" pgBackRest "$(bytes_h "${STORED[pgbackrest]:-n/a}")"
	fi
	if want_remote; then
		echo
		echo "remote: each tool's TLS server on 127.0.0.1 (mutual TLS, one CA, same certificates for both tools):"
		echo "  pgkeep: server on port $TLS_PGK; backup, restore and archive-push run on the PostgreSQL node (repo1-host-type=tls)."
		echo "  pgBackRest: server on port $TLS_BRREPO (repository host) for archive-push and restore run on the node;"
		echo "  its backup runs on the repository host and pulls from its server on the node (port $TLS_BRPG, pg1-host-type=tls):"
		echo "  a backup on the node against the TLS repository host: $PGBR_BACKUP_ON_PG_NODE"
		if want remote-backup; then
			echo "  pgkeep remote/local backup time:  $(target "$(cell remote-backup pgkeep wall)" "$(cell backup pgkeep wall)" 1.15)"
			echo "    paired by run: $(paired remote-backup backup pgkeep)"
		fi
		if want remote-restore; then
			echo "  pgkeep remote/local restore time: $(target "$(cell remote-restore pgkeep wall)" "$(cell restore pgkeep wall)" 1.15)"
			echo "    paired by run: $(paired remote-restore restore pgkeep)"
			echo "  restored through the server, without pg_wal: pgkeep ${RRESTORED[pgkeep]:-n/a}; pgBackRest ${RRESTORED[pgbackrest]:-n/a}"
		fi
		if want remote-push; then
			echo "  pgBackRest/pgkeep remote-push time: $(target_least "$(cell remote-push pgbackrest wall)" "$(cell remote-push pgkeep wall)" 1.3)"
			echo "  stored by remote-push: pgkeep $(bytes_h "${RSTORED[pgkeep]:-n/a}"); pgBackRest $(bytes_h "${RSTORED[pgbackrest]:-n/a}")"
		fi
		echo "  server processes' peak RSS MiB, largest process / sum (max over runs; pgBackRest: both its servers):"
		printf '    %-15s %-18s %s\n' step pgkeep pgBackRest
		for step in remote-backup remote-restore remote-push remote-rss; do
			want "$step" || continue
			printf '    %-15s %-18s %s\n' "$step" "$(srv_cell "$step" pgkeep)" "$(srv_cell "$step" pgbackrest)"
		done
		if want remote-rss; then
			# shellcheck disable=SC2086
			for tool in pgkeep pgbackrest; do
				if enabled "$tool" && [ -z "${FAIL[remote-rss:$tool]:-}" ] && [ -n "${CONC_WALL[$tool]:-}" ]; then
					echo "  remote-rss, four archive-push at once: $tool wall s (each run): ${CONC_WALL[$tool]# }"
				fi
			done
			b=$(srv_cell remote-rss pgkeep)
			if [ "$b" != n/a ]; then
				awk -v b="${b% / *}" -v s="${b#* / }" 'BEGIN { printf "  pgkeep server with four clients: largest process %.1f MiB, sum %.1f MiB (target under 64: %s)\n",
					b, s, (b < 64 && s < 64) ? "met" : "MISSED" }'
			fi
		fi
	fi
	if [ ${#FAIL[@]} -gt 0 ]; then
		echo
		echo "failures:"
		for k in "${!FAIL[@]}"; do echo "  $k: ${FAIL[$k]}"; done
	fi
	echo
	echo "raw figures: $RAW; logs: $LOGD"
} >"$REPORT"
echo
cat "$REPORT"
