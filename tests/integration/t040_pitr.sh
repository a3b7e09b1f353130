#!/usr/bin/env bash
# t040_pitr.sh: point-in-time recovery with each restore --type.
#
# After a backup, three batches of rows A, B, C are committed with a time T1
# recorded between A and B and a restore point 'before_c' between B and C.
# --type=time --target=T1 gives A only; --type=name --target=before_c gives A
# and B; --type=immediate stops at the end of the backup (no A);
# --type=standby starts a standby that follows the archive; --type=none
# writes no recovery settings.
. "$(dirname "$0")/lib.sh"

WALSEG=16
it_setup
pg_new main 55440
write_config main
pg_start main
pk_ok "stanza-create" --stanza=main stanza-create
psql_c main "create table t(i int primary key, batch text not null)"
pk_ok "full backup" --stanza=main backup --type=full

# batches NAME: "A=100 B=100 ..." for the rows of t on cluster NAME ("" when none).
batches() {
	psql_c "$1" "select coalesce(string_agg(batch || '=' || n, ' ' order by batch), '')
		from (select batch, count(*) n from t group by batch) s"
}

psql_c main "insert into t select g, 'A' from generate_series(1, 100) g"
sleep 1
t1=$(psql_c main "select now()")
sleep 1
psql_c main "insert into t select g, 'B' from generate_series(101, 200) g"
psql_c main "select pg_create_restore_point('before_c')" >/dev/null
psql_c main "insert into t select g, 'C' from generate_series(201, 300) g"
seg=$(pg_switch_wal main)
pg_wait_archived main "$seg"
note "T1 = $t1"
assert_eq "$(batches main)" "A=100 B=100 C=100" "origin has A, B and C"

# ------------------------------------------------------------ --type=time
pk_restore rtime 55441 --type=time "--target=$t1" --target-action=promote
pg_start rtime
pg_wait_promoted rtime
assert_eq "$(batches rtime)" "A=100" "--type=time: A, not B"
pg_stop rtime

# ------------------------------------------------------------ --type=name
pk_restore rname 55442 --type=name --target=before_c --target-action=promote
pg_start rname
pg_wait_promoted rname
assert_eq "$(batches rname)" "A=100 B=100" "--type=name: A and B, not C"
pg_stop rname

# ------------------------------------------------------- --type=immediate
# Default target action (pause): the cluster stays in recovery at the end of
# the backup, open for reading.
pk_restore rimm 55443 --type=immediate
pg_start rimm
assert_eq "$(psql_c rimm 'select count(*) from t')" 0 "--type=immediate: consistent, none of A"
pg_stop rimm

# --------------------------------------------------------- --type=standby
pk_restore rstandby 55444 --type=standby
assert_true "standby.signal written" test -f "$WORK/rstandby/standby.signal"
pg_start rstandby
assert_eq "$(psql_c rstandby 'select pg_is_in_recovery()')" t "--type=standby: starts in recovery"
pg_wait_sql rstandby "select count(*) from t" 300 120
ok "the standby replays the archive through archive-get (all 300 rows)"
assert_eq "$(psql_c rstandby 'select pg_is_in_recovery()')" t "and stays a standby"
pg_stop rstandby

# ------------------------------------------------------------ --type=none
pk_restore rnone 55445 --type=none
touch "$WORK/rnone/postgresql.auto.conf"
assert_not_contains "$WORK/rnone/postgresql.auto.conf" restore_command "--type=none: no restore_command"
assert_true "--type=none: no standby.signal" test ! -e "$WORK/rnone/standby.signal"

it_done
