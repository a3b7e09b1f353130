# tests/integration/lib.sh: shared plumbing of the integration tests.
#
# Sourced by every tests/integration/tNNN_*.sh.  It gives a test a private
# work directory, throwaway PostgreSQL 15 clusters, a `pk` wrapper that runs
# pgkeep, and assertion helpers that print "ok N - MSG" (TAP-like) lines.
# Exit status follows the automake harness: 0 pass, 77 skip, 99 hard error,
# anything else fail.  See tests/integration/README.md.
#
# Environment (set by `make check`, all optional when run by hand):
#   PGKEEP_BIN      the pgkeep binary            (default: $PGKEEP_SRCDIR/pgkeep)
#   PGKEEP_SAN_BIN  the ASan+UBSan build of it   (default: next to PGKEEP_BIN)
#   PG_BINDIR       PostgreSQL server binaries   (default: /usr/lib/postgresql/15/bin)
#   PGKEEP_SRCDIR   the source tree              (default: two levels above this file)
#   WALSEG          --wal-segsize in MiB for pg_new (default 512, the production layout)
#   KEEP=1          keep the work directory (and print its path) after the test
#   IT_WORK_PARENT  where the work directory is made (default /tmp)
#   IT_CONTINUE=1   report failed assertions and go on (debugging aid)
#   IT_REPO=remote  run against a repository behind `pgkeep server` instead of
#                   repo1-path (write_config starts the server); the clusters'
#                   ports are 1000 higher, so that a test's local and remote
#                   runs can go at the same time (tests/integration/remote/)
#
# Users.  PostgreSQL refuses to run as root, and the build tree may be unreadable
# by user postgres (e.g. under /root).  So when the test runs as root, everything
# lives in WORK=/tmp/pgkeep-it.XXXXXX owned by postgres, the binaries are copied
# to WORK/bin, and every PostgreSQL and pgkeep command runs as postgres
# (`runuser -u postgres --`), so the repository stays owned by the same user that
# archive_command runs as.  As a non-root user, everything runs as that user.
#
# Conventions.  Tests run with `set -euo pipefail`; an unexpected failing command
# stops the test and the ERR trap prints its line.  Capture expected failures with
# `assert_rc` or `rc=0; pk ... || rc=$?`.  Never call pgbench_load or pk inside
# $(...): they set global variables.

set -euo pipefail

PG_BINDIR=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
PGKEEP_SRCDIR=${PGKEEP_SRCDIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
PGKEEP_BIN=${PGKEEP_BIN:-$PGKEEP_SRCDIR/pgkeep}
PGKEEP_SAN_BIN=${PGKEEP_SAN_BIN:-$(dirname "$PGKEEP_BIN")/pgkeep_san}
WALSEG=${WALSEG:-512}
# pgkeep reads PGKEEP_<OPTION> variables and warns about unknown ones: keep
# the harness's own variables out of the environment of pgkeep and PostgreSQL.
export -n PGKEEP_BIN PGKEEP_SAN_BIN PGKEEP_SRCDIR
KEEP=${KEEP:-0}
IT_REPO=${IT_REPO:-local}
case $IT_REPO in
local) IT_PORT_OFFSET=0 ;;
remote) IT_PORT_OFFSET=1000 ;;
*) echo "IT_REPO must be local or remote, not '$IT_REPO'" >&2; exit 99 ;;
esac

IT_NAME=$(basename "$0" .sh)
IT_COUNT=0                 # assertions passed so far
WORK=                      # the work directory (it_setup)
PK_OUT='' PK_ERR='' PK_ALL=''  # files with the last pk run's stdout, stderr, both
PK_RC=0                    # exit code of the last pk run
PGBENCH_PID=               # the last pgbench_load
declare -A PG_PORT=()      # cluster NAME -> port
declare -A PG_PID=()       # cluster NAME -> postmaster pid (for the cleanup)
IT_STARTED=()              # clusters started by pg_start (stopped by the cleanup)
IT_BG_PIDS=()              # background processes to kill at cleanup
IT_MOUNTS=()               # file systems a test mounted, unmounted at cleanup

if [ "$(id -u)" -eq 0 ]; then
	IT_USER=postgres
	AS=(runuser -u postgres --)
else
	IT_USER=$(id -un)
	AS=()
fi

# ---------------------------------------------------------------- messages

# note MSG: a comment line in the test log.
note() { echo "# $*"; }

# fail MSG: report the failed assertion and stop the test (exit 1).  With
# IT_CONTINUE=1 (a debugging aid) it counts the failure and goes on; the test
# still exits 1 at the end.
IT_FAILED=0
fail() {
	echo "not ok $((IT_COUNT + IT_FAILED + 1)) - $*" >&2
	IT_FAILED=$((IT_FAILED + 1))
	[ "${IT_CONTINUE:-0}" = 1 ] && return 0
	exit 1
}

# skip MSG: the test cannot run here (exit 77, automake's SKIP).
skip() {
	echo "SKIP: $*"
	exit 77
}

# hard_error MSG: the test environment is broken (exit 99, automake's ERROR).
hard_error() {
	echo "ERROR: $*" >&2
	exit 99
}

# ok MSG: count a passed assertion and print "ok N - MSG".
ok() {
	IT_COUNT=$((IT_COUNT + 1))
	echo "ok $((IT_COUNT + IT_FAILED)) - $*"
}

IT_UNEXPECTED=0
it__on_err() {
	IT_UNEXPECTED=1
	echo "# unexpected failure (exit $1) at ${BASH_SOURCE[1]:-?}:$2: $3" >&2
}
trap 'it__on_err $? $LINENO "$BASH_COMMAND"' ERR
set -E

# --------------------------------------------------------------- assertions

# assert_eq ACTUAL EXPECTED MSG: the two strings are equal.
assert_eq() {
	if [ "$1" == "$2" ]; then
		ok "$3"
	else
		fail "$3: got '$1', expected '$2'"
	fi
}

# assert_ne A B MSG: the two strings differ.
assert_ne() {
	if [ "$1" != "$2" ]; then ok "$3"; else fail "$3: both are '$1'"; fi
}

# assert_true MSG CMD...: CMD succeeds.
assert_true() {
	local msg=$1; shift
	if "$@"; then ok "$msg"; else fail "$msg (command failed: $*)"; fi
}

# assert_rc EXPECTED MSG CMD...: CMD exits with exactly EXPECTED.  With pk,
# the outputs stay in PK_OUT/PK_ERR for further checks.
assert_rc() {
	local expected=$1 msg=$2 rc=0
	shift 2
	"$@" || rc=$?
	if [ "$rc" -eq "$expected" ]; then
		ok "$msg (exit $rc)"
	else
		[ "$1" = pk ] && pk_dump
		fail "$msg: exit $rc, expected $expected (command: $*)"
	fi
}

# assert_fails MSG CMD...: CMD exits non-zero (any code but those listed in
# the space-separated NOT_RC, e.g. NOT_RC="1" assert_fails ...).
assert_fails() {
	local msg=$1 rc=0 bad
	shift
	"$@" || rc=$?
	if [ "$rc" -eq 0 ]; then
		[ "$1" = pk ] && pk_dump
		fail "$msg: succeeded, expected a failure (command: $*)"
	fi
	for bad in ${NOT_RC:-}; do
		if [ "$rc" -eq "$bad" ]; then
			[ "$1" = pk ] && pk_dump
			fail "$msg: exit $rc, expected a non-zero code other than ${NOT_RC} (command: $*)"
		fi
	done
	ok "$msg (exit $rc)"
}

# assert_re STRING ERE MSG: STRING matches the extended regular expression.
assert_re() {
	if [[ "$1" =~ $2 ]]; then ok "$3"; else fail "$3: '$1' does not match /$2/"; fi
}

# assert_json FILE JQ-EXPR MSG: the jq expression is true for the document
# in FILE (e.g. '.[0].backup | length == 1').
assert_json() {
	if [ "$(jq -r "$2" "$1" 2>&1)" = true ]; then
		ok "$3"
	else
		echo "# --- $1:" >&2; head -n 60 "$1" | awk '{print "#   " $0}' >&2
		fail "$3: jq '$2' is not true"
	fi
}

# assert_contains FILE TEXT MSG: FILE contains TEXT (fixed string, case-insensitive).
assert_contains() {
	if grep -qiF -- "$2" "$1"; then
		ok "$3"
	else
		echo "# --- $1:" >&2; tail -n 40 "$1" | awk '{print "#   " $0}' >&2
		fail "$3: '$2' not found in $1"
	fi
}

# assert_not_contains FILE TEXT MSG: FILE does not contain TEXT (case-insensitive).
assert_not_contains() {
	if grep -qiF -- "$2" "$1"; then
		echo "# --- $1:" >&2; grep -m 20 -iF -- "$2" "$1" | awk '{print "#   " $0}' >&2
		fail "$3: '$2' found in $1"
	else
		ok "$3"
	fi
}

# assert_match FILE ERE MSG: some line of FILE matches the extended regex.
assert_match() {
	if grep -qE -- "$2" "$1"; then
		ok "$3"
	else
		echo "# --- $1:" >&2; tail -n 40 "$1" | awk '{print "#   " $0}' >&2
		fail "$3: no line matches /$2/ in $1"
	fi
}

# ------------------------------------------------------------ setup/cleanup

# as_user CMD...: run CMD as the test user (postgres when root), in WORK.
as_user() {
	(cd "${WORK:-/}" && "${AS[@]}" "$@")
}

# it_setup [--no-pg] [--no-pgkeep]: create the work directory WORK (mode 755,
# owned by the test user) with bin/ sock/ log/ lock/ spool/, copy the pgkeep
# binaries into WORK/bin (pgkeep, and pgkeep_san when PGKEEP_SAN_BIN exists),
# install the cleanup trap.  Skips (77) when PostgreSQL is missing unless
# --no-pg; a missing pgkeep binary is a hard error unless --no-pgkeep.
it_setup() {
	local need_pg=1 need_pk=1 a
	for a in "$@"; do
		case $a in
		--no-pg) need_pg=0 ;;
		--no-pgkeep) need_pk=0 ;;
		*) hard_error "it_setup: unknown argument $a" ;;
		esac
	done
	if [ "$need_pg" = 1 ]; then
		[ -x "$PG_BINDIR/initdb" ] || skip "PostgreSQL server binaries not found in $PG_BINDIR"
		[ "$(id -u)" -ne 0 ] || id postgres >/dev/null 2>&1 || skip "running as root and there is no user postgres"
	fi
	if [ "$need_pk" = 1 ] && [ ! -x "$PGKEEP_BIN" ]; then
		hard_error "pgkeep binary not found: PGKEEP_BIN=$PGKEEP_BIN"
	fi
	command -v jq >/dev/null || hard_error "jq is required (tests/install-deps.sh installs it)"

	WORK=$(mktemp -d "${IT_WORK_PARENT:-/tmp}/pgkeep-it.XXXXXX")
	trap it_cleanup EXIT
	trap 'exit 130' INT TERM
	chmod 755 "$WORK"
	mkdir -p "$WORK/bin" "$WORK/sock" "$WORK/log" "$WORK/lock" "$WORK/spool" "$WORK/tmp"
	if [ -x "$PGKEEP_BIN" ]; then cp "$PGKEEP_BIN" "$WORK/bin/pgkeep"; fi
	if [ -x "$PGKEEP_SAN_BIN" ]; then cp "$PGKEEP_SAN_BIN" "$WORK/bin/pgkeep_san"; fi
	[ "$(id -u)" -ne 0 ] || chown -R postgres: "$WORK"
	cd "$WORK"
	note "$IT_NAME: work directory $WORK, running as $IT_USER, PG_BINDIR=$PG_BINDIR"
}

# it_cleanup: (EXIT trap) kill background jobs, stop every started cluster
# with pg_ctl -m immediate, print log tails when the test failed, and remove
# WORK unless KEEP=1.  Keeps the test's exit status.
it_cleanup() {
	local rc=$? name pid f
	trap - ERR
	set +e
	# An unexpected failure is a FAIL, even when its code happens to be 77 or 99.
	if [ "$rc" -eq 0 ] && [ "$IT_FAILED" -gt 0 ]; then rc=1; fi
	if [ "$IT_UNEXPECTED" = 1 ] && { [ "$rc" -eq 77 ] || [ "$rc" -eq 99 ] || [ "$rc" -eq 0 ]; }; then rc=1; fi
	for pid in "${IT_BG_PIDS[@]}"; do
		kill -9 "$pid" 2>/dev/null
	done
	for name in "${IT_STARTED[@]}"; do
		if [ -f "$WORK/$name/postmaster.pid" ]; then
			as_user "$PG_BINDIR/pg_ctl" -D "$WORK/$name" -m immediate -w stop >/dev/null 2>&1
		fi
		# The data directory may be gone: stop the postmaster by its pid.
		pid=${PG_PID[$name]:-}
		if [ -n "$pid" ] && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = postgres ]; then
			kill -QUIT "$pid" 2>/dev/null
			sleep 1
			kill -9 "$pid" 2>/dev/null
		fi
	done
	if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ] && [ -n "$WORK" ]; then
		for f in "$WORK"/*.log "$WORK"/log/*; do
			[ -f "$f" ] || continue
			case $f in *.initdb.log | */pgbench-init-*) continue ;; esac
			echo "# ---- tail of $f"
			tail -n 30 "$f" | awk '{print "#   " $0}'
		done
	fi
	cd /
	for f in "${IT_MOUNTS[@]}"; do
		umount -l "$f" 2>/dev/null
	done
	if [ -n "$WORK" ] && [ -d "$WORK" ]; then
		if [ "$KEEP" = 1 ]; then
			echo "# KEEP=1: work directory kept: $WORK"
		else
			rm -rf "$WORK"
		fi
	fi
	if [ "$rc" -eq 0 ]; then
		echo "# $IT_NAME: all $IT_COUNT assertions passed"
	elif [ "$IT_FAILED" -gt 0 ]; then
		echo "# $IT_NAME: $IT_FAILED assertions failed, $IT_COUNT passed"
	fi
	exit "$rc"
}

# it_done: end of a test: exit 0 (the cleanup prints the summary).
it_done() { exit 0; }

# -------------------------------------------------------------- PostgreSQL

# pg_datadir NAME: the data directory of cluster NAME (WORK/NAME).
pg_datadir() { echo "$WORK/$1"; }

# pg_conf NAME LINE...: append settings to NAME's postgresql.conf (later lines win).
pg_conf() {
	local name=$1 line
	shift
	for line in "$@"; do
		echo "$line" >>"$WORK/$name/postgresql.conf"
	done
}

# pg_new NAME PORT [INITDB ARGS...]: initdb WORK/NAME (-A trust -U postgres
# --data-checksums, --wal-segsize=$WALSEG unless the args give one) and write
# the test settings into its postgresql.conf: socket in WORK/sock, PORT,
# archive_mode=on with archive_command through pgkeep archive-push (or
# $IT_ARCHIVE_COMMAND when set; %p and %f work as usual), wal_level=replica,
# log in WORK/NAME.log.  Does not start it.
pg_new() {
	local name=$1 port=$2 seg=$WALSEG a
	shift 2
	for a in "$@"; do
		case $a in --wal-segsize=*) seg=${a#--wal-segsize=} ;; esac
	done
	local init=(--wal-segsize="$seg")
	for a in "$@"; do
		case $a in --wal-segsize=*) ;; *) init+=("$a") ;; esac
	done
	local archive_command=${IT_ARCHIVE_COMMAND:-"$WORK/bin/pgkeep --config=$WORK/pgkeep.conf --stanza=main archive-push %p"}
	port=$((port + IT_PORT_OFFSET))
	note "initdb $name (port $port, wal-segsize $seg MiB)"
	as_user "$PG_BINDIR/initdb" -D "$WORK/$name" -A trust -U postgres --data-checksums \
		--locale=C -E UTF8 "${init[@]}" >"$WORK/$name.initdb.log" 2>&1 ||
		{ cat "$WORK/$name.initdb.log" >&2; fail "initdb of $name failed"; }
	PG_PORT[$name]=$port
	pg_conf "$name" \
		"# ---- pgkeep integration test settings" \
		"listen_addresses = ''" \
		"unix_socket_directories = '$WORK/sock'" \
		"port = $port" \
		"archive_mode = on" \
		"archive_command = '${archive_command//\'/\'\'}'" \
		"wal_level = replica" \
		"max_wal_senders = 2" \
		"fsync = on" \
		"shared_buffers = 128MB" \
		"max_wal_size = 2GB" \
		"min_wal_size = $((seg * 2))MB" \
		"checkpoint_timeout = 30min" \
		"logging_collector = off" \
		"log_line_prefix = '%m [%p] '"
}

# pg_adopt NAME PORT: register an existing data directory WORK/NAME (a restored
# copy) as cluster NAME on PORT: appends port, socket directory and
# archive_mode=off at the end of its postgresql.conf (restore writes its
# recovery settings into postgresql.auto.conf, which we leave alone).  A
# restored cluster must not archive: a promoted copy would push a new
# timeline into the stanza of the origin.
pg_adopt() {
	local name=$1 port=$(($2 + IT_PORT_OFFSET))
	PG_PORT[$name]=$port
	pg_conf "$name" \
		"# ---- pgkeep integration test: restored copy" \
		"port = $port" \
		"unix_socket_directories = '$WORK/sock'" \
		"listen_addresses = ''" \
		"archive_mode = off"
}

# pg_start NAME: start cluster NAME (pg_ctl -w, log in WORK/NAME.log) and wait
# until it accepts connections (read-only ones for a cluster in recovery).
pg_start() {
	local name=$1
	IT_STARTED+=("$name")
	as_user "$PG_BINDIR/pg_ctl" -D "$WORK/$name" -l "$WORK/$name.log" -w -t 300 start >/dev/null ||
		{ tail -n 40 "$WORK/$name.log" >&2; fail "could not start cluster $name"; }
	PG_PID[$name]=$(head -n 1 "$WORK/$name/postmaster.pid")
	note "started $name on port ${PG_PORT[$name]}"
}

# pg_stop NAME: stop cluster NAME (fast shutdown, wait).
pg_stop() {
	as_user "$PG_BINDIR/pg_ctl" -D "$WORK/$1" -m fast -w -t 120 stop >/dev/null ||
		fail "could not stop cluster $1"
	PG_PID[$1]=
	note "stopped $1"
}

# psql_c NAME SQL: run SQL on NAME (database postgres), print the unaligned,
# tuples-only result; stops on the first error.
psql_c() {
	as_user "$PG_BINDIR/psql" -X -At -v ON_ERROR_STOP=1 -h "$WORK/sock" -p "${PG_PORT[$1]}" \
		-U postgres -d postgres -c "$2"
}

# pg_wait_sql NAME SQL EXPECTED [SECONDS]: poll until SQL prints EXPECTED
# (default timeout 180 s); fails with the server log on timeout.
pg_wait_sql() {
	local name=$1 sql=$2 expected=$3 timeout=${4:-180} i got=
	for ((i = 0; i < timeout * 5; i++)); do
		got=$(psql_c "$name" "$sql" 2>/dev/null) || got=
		[ "$got" = "$expected" ] && return 0
		sleep 0.2
	done
	tail -n 40 "$WORK/$name.log" >&2
	fail "timeout after ${timeout}s waiting for '$sql' = '$expected' on $name (last: '$got')"
}

# pg_wait_promoted NAME: wait until NAME has left recovery.
pg_wait_promoted() { pg_wait_sql "$1" "select pg_is_in_recovery()" f "${2:-300}"; }

# pg_switch_wal NAME: write a little WAL, switch to a new segment, and print
# the name of the segment that was closed (the one that must get archived).
pg_switch_wal() {
	psql_c "$1" "create table if not exists it_switch(i int); insert into it_switch values (1)" >/dev/null
	psql_c "$1" "select pg_walfile_name(pg_switch_wal())"
}

# pg_wait_archived NAME SEGMENT [SECONDS]: wait until pg_stat_archiver says
# SEGMENT (or a later one) is archived; fails on timeout (default 180 s)
# printing pg_stat_archiver.
pg_wait_archived() {
	local name=$1 seg=$2 timeout=${3:-180} i last
	for ((i = 0; i < timeout * 5; i++)); do
		last=$(psql_c "$name" "select coalesce(last_archived_wal, '') from pg_stat_archiver")
		# Segment names of one timeline sort in WAL order.
		if [ -n "$last" ] && [[ ! "$last" < "$seg" ]]; then return 0; fi
		sleep 0.2
	done
	psql_c "$name" "select * from pg_stat_archiver" >&2 || true
	tail -n 40 "$WORK/$name.log" >&2
	fail "timeout after ${timeout}s waiting for $seg to be archived by $name"
}

# pgbench_init NAME SCALE: pgbench -i -s SCALE on NAME.
pgbench_init() {
	as_user "$PG_BINDIR/pgbench" -i -s "$2" -q -h "$WORK/sock" -p "${PG_PORT[$1]}" -U postgres postgres \
		>"$WORK/pgbench-init-$1.log" 2>&1 ||
		{ tail -n 20 "$WORK/pgbench-init-$1.log" >&2; fail "pgbench -i on $1 failed"; }
	note "pgbench -i -s $2 on $1 done"
}

# pgbench_load NAME SECONDS [CLIENTS]: start `pgbench -c CLIENTS (2) -T SECONDS`
# in the background; sets PGBENCH_PID (do not call inside $(...)).
pgbench_load() {
	local name=$1 secs=$2 clients=${3:-2}
	(cd "$WORK" && exec "${AS[@]}" "$PG_BINDIR/pgbench" -n -c "$clients" -j "$clients" -T "$secs" \
		-h "$WORK/sock" -p "${PG_PORT[$name]}" -U postgres postgres) \
		>"$WORK/pgbench-$name.log" 2>&1 &
	PGBENCH_PID=$!
	IT_BG_PIDS+=("$PGBENCH_PID")
	note "pgbench load on $name for ${secs}s (pid $PGBENCH_PID)"
}

# pgbench_wait [PID]: wait for the pgbench started by pgbench_load; fails if it failed.
pgbench_wait() {
	local pid=${1:-$PGBENCH_PID} rc=0
	wait "$pid" || rc=$?
	[ "$rc" -eq 0 ] || { tail -n 20 "$WORK"/pgbench-*.log >&2; fail "pgbench failed (exit $rc)"; }
	note "pgbench done: $(grep -h '^tps' "$WORK"/pgbench-*.log 2>/dev/null | head -n 1 || true)"
}

# data_fingerprint NAME: one line summarizing the pgbench tables:
# "accounts COUNT,SUM(abalance) history COUNT,SUM(delta) branches COUNT".
data_fingerprint() {
	psql_c "$1" "select 'accounts ' || (select count(*) || ',' || coalesce(sum(abalance), 0) from pgbench_accounts)
		|| ' history ' || (select count(*) || ',' || coalesce(sum(delta), 0) from pgbench_history)
		|| ' branches ' || (select count(*) from pgbench_branches)"
}

# pg_checksums_ok NAME: the (stopped) cluster NAME has no page with a bad
# checksum: every page of every relation is read, not only those a query visits.
pg_checksums_ok() {
	local out
	out=$(as_user "$PG_BINDIR/pg_checksums" --check -D "$(pg_datadir "$1")" 2>&1) ||
		fail "pg_checksums --check of cluster $1 found bad pages: $out"
	ok "every page of cluster $1 has a valid checksum"
}

# ------------------------------------------------------------------ pgkeep

# write_config NAME: write WORK/pgkeep.conf for a local repository in
# WORK/repo and a stanza [main] whose pg1 is cluster NAME.  With
# IT_REPO=remote the repository WORK/repo belongs to a `pgkeep server`
# (repo_server_start) and the configuration reaches it through repo1-host.
write_config() {
	local name=$1
	cat >"$WORK/pgkeep.conf" <<EOF
[global]
repo1-path=$WORK/repo
log-path=$WORK/log
lock-path=$WORK/lock
spool-path=$WORK/spool
log-level-console=info
log-level-file=detail
process-max=2
archive-timeout=120
start-fast=y

[main]
pg1-path=$WORK/$name
pg1-socket-path=$WORK/sock
pg1-port=${PG_PORT[$name]}
EOF
	[ "$(id -u)" -ne 0 ] || chown postgres: "$WORK/pgkeep.conf"
	if [ "$IT_REPO" = remote ]; then
		repo_server_start "$((PG_PORT[$name] + 9))"
		sed -i '/^repo1-path=/d' "$WORK/pgkeep.conf"
		sed -i "/^\[global\]/a repo1-host=localhost\nrepo1-host-type=tls\nrepo1-host-port=$IT_SERVER_PORT\nrepo1-host-cert-file=$WORK/certs/pgnode.crt\nrepo1-host-key-file=$WORK/certs/pgnode.key\nrepo1-host-ca-file=$WORK/certs/ca.crt" \
			"$WORK/pgkeep.conf"
	fi
}

# repo_server_start PORT: (IT_REPO=remote, once per test) a CA, a server
# certificate for localhost and a client certificate with CN pgnode in
# WORK/certs; `pgkeep server` on 127.0.0.1:PORT as the test user, owning
# WORK/repo (its log and locks in WORK/server-log and WORK/server-lock),
# allowing pgnode every stanza; waits until it accepts connections.
IT_SERVER_PORT=
repo_server_start() {
	local port=$1 c=$WORK/certs i
	[ -z "$IT_SERVER_PORT" ] || return 0
	command -v openssl >/dev/null || hard_error "openssl is required for IT_REPO=remote"
	mkdir -p "$c" "$WORK/server-log" "$WORK/server-lock"
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$c/ca.key" -out "$c/ca.crt" -days 30 \
		-subj "/CN=pgkeep test CA" 2>/dev/null || hard_error "openssl could not make the test CA"
	printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$c/san.ext"
	for i in server:localhost pgnode:pgnode; do
		openssl req -newkey rsa:2048 -nodes -keyout "$c/${i%%:*}.key" -out "$c/${i%%:*}.csr" \
			-subj "/CN=${i#*:}" 2>/dev/null &&
			openssl x509 -req -in "$c/${i%%:*}.csr" -CA "$c/ca.crt" -CAkey "$c/ca.key" -CAcreateserial \
				-out "$c/${i%%:*}.crt" -days 30 -extfile "$c/san.ext" 2>/dev/null ||
			hard_error "openssl could not make the certificate ${i%%:*}"
	done
	chmod 600 "$c"/*.key
	printf '%s\n' "[global]" "repo1-path=$WORK/repo" "log-path=$WORK/server-log" "lock-path=$WORK/server-lock" \
		"log-level-console=warn" "log-level-file=detail" "tls-server-address=127.0.0.1" "tls-server-port=$port" \
		"tls-server-cert-file=$c/server.crt" "tls-server-key-file=$c/server.key" "tls-server-ca-file=$c/ca.crt" \
		"tls-server-auth=pgnode=*" >"$WORK/server.conf"
	[ "$(id -u)" -ne 0 ] || chown -R postgres: "$c" "$WORK/server.conf" "$WORK/server-log" "$WORK/server-lock"
	if [ "$(id -u)" -eq 0 ]; then
		setpriv --reuid=postgres --regid=postgres --init-groups -- \
			"$WORK/bin/pgkeep" --config="$WORK/server.conf" server >>"$WORK/server.out" 2>&1 &
	else
		"$WORK/bin/pgkeep" --config="$WORK/server.conf" server >>"$WORK/server.out" 2>&1 &
	fi
	IT_BG_PIDS+=("$!")
	IT_SERVER_PORT=$port
	for ((i = 0; i < 100; i++)); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			note "pgkeep server on 127.0.0.1:$port (IT_REPO=remote)"
			return 0
		fi
		sleep 0.1
	done
	cat "$WORK/server.out" >&2
	hard_error "pgkeep server did not start on port $port"
}

# served_mark: (IT_REPO=remote) how many connection summaries the server has
# logged so far; served_count OP MARK: once the connections opened since MARK
# have been summed up (the count of summaries stays the same for 0.2 s), the
# number of OP requests they made.  A summary is logged when its client leaves.
served_mark() { grep -c ': served ' "$WORK/server-log/all-server.log" || true; }
served_count() {
	local op=$1 mark=$2 n i
	for ((i = 0; i < 50; i++)); do
		n=$(served_mark)
		sleep 0.2
		[ "$n" -le "$mark" ] || [ "$n" != "$(served_mark)" ] || break
	done
	grep ': served ' "$WORK/server-log/all-server.log" | tail -n +"$((mark + 1))" |
		grep -o "$op [0-9]*" | awk '{s += $2} END {print s + 0}'
}

# pk ARGS...: run WORK/bin/pgkeep --config=WORK/pgkeep.conf ARGS as the test
# user.  Returns pgkeep's exit code (also in PK_RC); stdout, stderr and both
# are in the files PK_OUT, PK_ERR, PK_ALL.  The run and its output are
# echoed into the test log.  PK_BIN=pgkeep_san selects the sanitizer build;
# PK_CONFIG=FILE another configuration file.
pk() {
	local bin=$WORK/bin/${PK_BIN:-pgkeep} conf=${PK_CONFIG:-$WORK/pgkeep.conf}
	PK_OUT=$WORK/tmp/pk.out PK_ERR=$WORK/tmp/pk.err PK_ALL=$WORK/tmp/pk.all
	PK_RC=0
	as_user "$bin" --config="$conf" "$@" >"$PK_OUT" 2>"$PK_ERR" || PK_RC=$?
	awk 1 "$PK_OUT" "$PK_ERR" >"$PK_ALL"    # (awk: a last line without newline stays a line)
	echo "# \$ ${PK_BIN:-pgkeep} $* -> exit $PK_RC"
	head -n 15 "$PK_ALL" | awk '{print "#   | " $0}'
	return "$PK_RC"
}

# pk_dump: print the whole output of the last pk run (on failures).
pk_dump() {
	echo "# ---- stdout of the last pgkeep run:" >&2; awk '{print "#   " $0}' "$PK_OUT" >&2
	echo "# ---- stderr of the last pgkeep run:" >&2; awk '{print "#   " $0}' "$PK_ERR" >&2
}

# pk_ok MSG ARGS...: pk ARGS must exit 0.
pk_ok() {
	local msg=$1
	shift
	assert_rc 0 "$msg" pk "$@"
}

# pk_restore NAME PORT [RESTORE ARGS...]: restore stanza main into a new empty
# directory WORK/NAME (mode 700) and register it as cluster NAME on PORT
# (pg_adopt).  Asserts exit 0.  Does not start it.
pk_restore() {
	local name=$1 port=$2
	shift 2
	as_user mkdir -m 700 "$WORK/$name"
	pk_ok "restore $* into $name" --stanza=main --pg1-path="$WORK/$name" restore "$@"
	pg_adopt "$name" "$port"
	if [ -f "$WORK/$name/postgresql.auto.conf" ]; then
		note "postgresql.auto.conf of $name:"
		awk '{print "#   " $0}' "$WORK/$name/postgresql.auto.conf"
	fi
}

# info_json FILE: run `info --output=json` for stanza main (must exit 0) and
# save the document in FILE (call it directly, not inside $(...)).
info_json() {
	pk --stanza=main info --output=json || { pk_dump; fail "info --output=json failed"; }
	jq . "$PK_OUT" >/dev/null 2>&1 || { pk_dump; fail "info --output=json is not valid JSON"; }
	cp "$PK_OUT" "$1"
}

# archive_command_with_copy: an archive_command (for IT_ARCHIVE_COMMAND) that
# copies each WAL file into WORK/walcopy/ before pushing it through pgkeep, so
# a test can compare what it gets back byte for byte with what was archived.
archive_command_with_copy() {
	as_user mkdir -p "$WORK/walcopy"
	echo "cp %p $WORK/walcopy/%f && $WORK/bin/pgkeep --config=$WORK/pgkeep.conf --stanza=main archive-push %p"
}

# flip_byte FILE OFFSET: invert the byte at OFFSET of FILE in place.
flip_byte() {
	local file=$1 off=$2 byte
	byte=$(od -An -tu1 -j "$off" -N1 "$file" | tr -d ' ')
	[ -n "$byte" ] || fail "flip_byte: $file has no byte at $off"
	# shellcheck disable=SC2059
	printf "$(printf '\\%03o' $((255 - byte)))" |
		dd of="$file" bs=1 seek="$off" count=1 conv=notrunc status=none
}

# file_size FILE: size in bytes.
file_size() { stat -c %s "$1"; }
