#!/usr/bin/env bash
# t010_options.sh: the command line and configuration files, without PostgreSQL.
#
# version and help work; an unknown option or an invalid value is refused with
# exit 2 naming the option; pgBackRest configuration files of the three-node
# layout load unchanged; an unknown key in a file is a warning; a bad value in
# a file is exit 3 naming the file, the line and the option.
. "$(dirname "$0")/lib.sh"

it_setup --no-pg

# ---------------------------------------------------------------- commands
# No configuration file is needed for these: point --config at an empty one.
: >"$WORK/empty.conf"
export PK_CONFIG=$WORK/empty.conf

pk_ok "pgkeep version" version
assert_contains "$PK_OUT" pgkeep "version prints the program name"
pk_ok "pgkeep help" help
assert_contains "$PK_OUT" backup "help lists the backup command"
pk_ok "pgkeep help backup" help backup
assert_contains "$PK_OUT" start-fast "help backup lists the backup options"

# ------------------------------------------------------ bad command lines
assert_rc 2 "unknown option is refused" pk --stanza=main --no-such-option=1 info
assert_contains "$PK_ALL" no-such-option "the message names the unknown option"

assert_rc 2 "unknown command is refused" pk --stanza=main frobnicate

assert_rc 2 "--process-max=0 is refused" pk --stanza=main --process-max=0 backup
assert_contains "$PK_ALL" process-max "the message names process-max"

assert_rc 2 "--compress-type=foo is refused" pk --stanza=main --compress-type=foo backup
assert_contains "$PK_ALL" compress-type "the message names compress-type"

assert_rc 2 "--log-level-console=loud is refused" pk --stanza=main --log-level-console=loud backup
assert_contains "$PK_ALL" log-level-console "the message names log-level-console"

# ------------------------------------ pgBackRest files of the HA layout
# These are the files of a real pgBackRest installation (backup node and
# PostgreSQL node); they must load unchanged.  log-path does not exist here:
# --log-level-file=off on the command line keeps pgkeep from opening it.
cat >"$WORK/backup-node.conf" <<'EOF'
[global]
repo1-path=/pg_backup/pg_backup_patroni
repo1-retention-full=14
repo1-retention-full-type=time
repo1-host-user=pgbackrest
archive-check=n
process-max=1
log-level-console=info
log-path=/pg_backup/pgbackrest/log
log-level-file=debug
start-fast=y
delta=y
compress-level=3

[pg_backup]
pg1-host=pg1.example.net
pg1-host-user=postgres
pg1-database=postgres
pg1-path=/pg_data/data
pg1-port=5432
EOF

cat >"$WORK/pg-node.conf" <<'EOF'
[global]
repo1-host=backup.example.net
repo1-host-user=pgbackrest
log-level-console=info
log-level-file=debug
delta=y

[pg_backup]
pg1-path=/pg_data/data
recovery-option=primary_conninfo=host=vip.example.net user=replication
EOF

# check_loads FILE WHAT: `info` with FILE parses and validates the options,
# then runs (an empty repository: exit 0, or "stanza missing"), never a
# configuration or option error.
check_loads() {
	local file=$1 what=$2 rc=0
	PK_CONFIG=$file pk --stanza=pg_backup --repo1-path="$WORK/repo" --log-level-file=off info || rc=$?
	if [ "$rc" -eq 2 ] || [ "$rc" -eq 3 ] || [ "$rc" -ge 20 ]; then
		pk_dump
		fail "$what: info exits $rc (option/configuration error or crash)"
	fi
	ok "$what loads (info exits $rc)"
	if grep -iE 'error' "$PK_ALL" | grep -qiE 'config|option'; then
		pk_dump
		fail "$what: an error about the configuration"
	fi
	ok "$what: no error about the configuration"
}
chown "$IT_USER": "$WORK"/*.conf
check_loads "$WORK/backup-node.conf" "pgBackRest backup-node file"
check_loads "$WORK/pg-node.conf" "pgBackRest PostgreSQL-node file"

# The example files shipped in conf/ load as well.
for f in pgkeep.conf.backup-node pgkeep.conf.pg-node pgkeep.conf.local; do
	if [ -f "$PGKEEP_SRCDIR/conf/$f" ]; then
		sed 's/^\[main\]/[pg_backup]/' "$PGKEEP_SRCDIR/conf/$f" >"$WORK/$f"
		chown "$IT_USER": "$WORK/$f"
		check_loads "$WORK/$f" "conf/$f"
	fi
done

# ------------------------------------------------- unknown key in a file
cat >"$WORK/unknown-key.conf" <<EOF
[global]
repo1-path=$WORK/repo
log-level-file=off
frobnicate-level=7

[main]
pg1-path=$WORK/nowhere
EOF
chown "$IT_USER": "$WORK/unknown-key.conf"
rc=0
PK_CONFIG=$WORK/unknown-key.conf pk --stanza=main info || rc=$?
if [ "$rc" -eq 2 ] || [ "$rc" -eq 3 ] || [ "$rc" -ge 20 ]; then
	pk_dump
	fail "an unknown key in the file is an error (exit $rc); expected a warning"
fi
ok "an unknown key in the file is not an error (exit $rc)"
assert_contains "$PK_ALL" frobnicate-level "the warning names the unknown key"
assert_match "$PK_ALL" '[Ww][Aa][Rr][Nn]' "it is reported as a warning"

# ---------------------------------------------------- bad value in a file
cat >"$WORK/bad-value.conf" <<EOF
[global]
repo1-path=$WORK/repo
process-max=zero
log-level-file=off
EOF
chown "$IT_USER": "$WORK/bad-value.conf"
PK_CONFIG=$WORK/bad-value.conf assert_rc 3 "a bad value in the file is refused" pk --stanza=main info
assert_contains "$PK_ALL" "$WORK/bad-value.conf" "the message names the file"
assert_contains "$PK_ALL" process-max "the message names the option"
assert_match "$PK_ALL" '(line |:)3([^0-9]|$)' "the message names the line (3)"

# A bad value in the environment is a configuration error too.
PGKEEP_PROCESS_MAX=0 assert_rc 3 "PGKEEP_PROCESS_MAX=0 is refused" pk --stanza=main info
assert_contains "$PK_ALL" PGKEEP_PROCESS_MAX "the message names the variable"

it_done
