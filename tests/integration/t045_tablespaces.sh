#!/usr/bin/env bash
# t045_tablespaces.sh: a cluster with a tablespace is backed up and restored
# with the tablespace moved: --tablespace-map=NAME=DIR puts it in DIR,
# --tablespace-map-all=DIR under DIR/NAME; pg_tblspc links point there, the
# tablespace_map of the backup names the new places, and the data is intact.
. "$(dirname "$0")/lib.sh"

WALSEG=16
it_setup
pg_new main 55445
write_config main
pg_start main
as_user mkdir -m 700 "$WORK/ts_orig"
psql_c main "create tablespace ts1 location '$WORK/ts_orig'" >/dev/null
psql_c main "create table in_ts tablespace ts1 as select g as i, md5(g::text) as m from generate_series(1, 50000) g" >/dev/null
oid=$(psql_c main "select oid from pg_tablespace where spcname = 'ts1'")
fp=$(psql_c main "select count(*) || ',' || sum(i) || ',' || md5(string_agg(m, '' order by i)) from in_ts")
pk_ok "stanza-create" --stanza=main stanza-create
pk_ok "backup of a cluster with a tablespace" --stanza=main backup --type=full
seg=$(pg_switch_wal main)
pg_wait_archived main "$seg"

# --tablespace-map by name
pk_restore r1 55446 --tablespace-map=ts1="$WORK/ts_moved"
assert_eq "$(readlink "$WORK/r1/pg_tblspc/$oid")" "$WORK/ts_moved" "pg_tblspc/$oid points to the mapped directory"
assert_true "the tablespace's files are in the mapped directory" test -d "$WORK/ts_moved/PG_15_$(psql_c main "select catalog_version_no from pg_control_system()")"
pg_start r1
pg_wait_promoted r1
assert_eq "$(psql_c r1 "select count(*) || ',' || sum(i) || ',' || md5(string_agg(m, '' order by i)) from in_ts")" "$fp" \
	"the table in the moved tablespace has the origin's rows"
assert_eq "$(psql_c r1 "select pg_tablespace_location($oid)")" "$WORK/ts_moved" "PostgreSQL sees the new location"
pg_stop r1
pg_checksums_ok r1
assert_eq "$(psql_c main "select count(*) || ',' || sum(i) || ',' || md5(string_agg(m, '' order by i)) from in_ts")" "$fp" \
	"the origin's tablespace is untouched by the restores"

# --tablespace-map-all
pk_restore r2 55447 --tablespace-map-all="$WORK/ts_all"
assert_eq "$(readlink "$WORK/r2/pg_tblspc/$oid")" "$WORK/ts_all/ts1" "--tablespace-map-all puts the tablespace under DIR/NAME"
pg_start r2
pg_wait_promoted r2
assert_eq "$(psql_c r2 "select count(*) from in_ts")" "50000" "the table is readable after --tablespace-map-all"
pg_stop r2

it_done
