#!/usr/bin/env bash
# t020_archive.sh: archive-push and archive-get against a real cluster.
#
# WAL archived by PostgreSQL through archive-push comes back byte for byte
# with archive-get; pushing the same segment again succeeds, a different
# content under the same name is refused (exit 9) and the stored copy kept;
# a missing segment is exit 1 (end of archive), other failures are not 1; a
# segment or a cluster of another system is refused (exit 7); names with a
# path are refused; .history files round-trip.
. "$(dirname "$0")/lib.sh"

WALSEG=16
it_setup
# The archive_command keeps a copy of each segment in WORK/walcopy, to compare with.
IT_ARCHIVE_COMMAND=$(archive_command_with_copy)
pg_new main 55420
write_config main
pg_start main

pk_ok "stanza-create" --stanza=main stanza-create
pk_ok "stanza-create again is harmless" --stanza=main stanza-create

# ------------------------------------------------- archive a few segments
psql_c main "create table t(i int, pad text)"
segs=()
for n in 1 2 3; do
	psql_c main "insert into t select g, repeat('x', 200) from generate_series(1, 20000) g"
	segs+=("$(pg_switch_wal main)")
done
note "closed segments: ${segs[*]}"
pg_wait_archived main "${segs[-1]}"
assert_eq "$(psql_c main 'select archived_count >= 3 from pg_stat_archiver')" t "PostgreSQL archived the segments"
assert_eq "$(psql_c main 'select failed_count from pg_stat_archiver')" 0 "archive-push never failed"

as_user mkdir -p "$WORK/get"
for seg in "${segs[@]}"; do
	pk_ok "archive-get $seg" --stanza=main archive-get "$seg" "$WORK/get/$seg"
	assert_true "$seg comes back byte for byte" cmp "$WORK/get/$seg" "$WORK/walcopy/$seg"
	assert_true "pg_waldump reads $seg" as_user "$PG_BINDIR/pg_waldump" -q "$WORK/get/$seg"
done

# ------------------------------------------------ push again: same / other content
seg=${segs[0]}
pk_ok "pushing the same segment again succeeds" --stanza=main archive-push "$WORK/walcopy/$seg"

as_user mkdir -p "$WORK/mod"
as_user cp "$WORK/walcopy/$seg" "$WORK/mod/$seg"
flip_byte "$WORK/mod/$seg" 20000     # inside a record, after the page header
assert_rc 9 "a different content under the same name is refused" pk --stanza=main archive-push "$WORK/mod/$seg"
pk_ok "archive-get $seg after the refused push" --stanza=main archive-get "$seg" "$WORK/get/$seg.again"
assert_true "the stored copy is unchanged" cmp "$WORK/get/$seg.again" "$WORK/walcopy/$seg"

# -------------------------------------------------------- archive-get errors
missing=0000000100000000000000F0
assert_rc 1 "archive-get of a missing segment is exit 1" pk --stanza=main archive-get "$missing" "$WORK/get/$missing"
assert_true "nothing is written for a missing segment" test ! -e "$WORK/get/$missing"

NOT_RC=1 assert_fails "archive-get into a missing directory is an error, not 'missing'" \
	pk --stanza=main archive-get "$seg" "$WORK/no/such/dir/$seg"

assert_fails "archive-get of a name with a path (../) is refused" \
	pk --stanza=main archive-get "../$seg" "$WORK/get/dotdot"
assert_true "nothing is written for it" test ! -e "$WORK/get/dotdot"
assert_fails "archive-get of ../x is refused" pk --stanza=main archive-get ../x "$WORK/get/x"

# ------------------------------------------------------------ .history files
as_user mkdir -p "$WORK/hist"
printf '1\t0/3000000\tno recovery target specified\n' >"$WORK/hist/00000002.history"
chown "$IT_USER": "$WORK/hist/00000002.history"
pk_ok "archive-push of 00000002.history" --stanza=main archive-push "$WORK/hist/00000002.history"
pk_ok "archive-push of it again" --stanza=main archive-push "$WORK/hist/00000002.history"
pk_ok "archive-get of 00000002.history" --stanza=main archive-get 00000002.history "$WORK/get/00000002.history"
assert_true "the history file round-trips" cmp "$WORK/hist/00000002.history" "$WORK/get/00000002.history"
assert_rc 1 "archive-get of a missing history file is exit 1" \
	pk --stanza=main archive-get 00000009.history "$WORK/get/00000009.history"

# ---------------------------------------------------------- another cluster
# A second cluster (another system identifier) that does not archive.
pg_new other 55421
pg_conf other "archive_mode = off"
pg_start other
main_cur=$(psql_c main "select pg_walfile_name(pg_current_wal_lsn())")
oseg=
for _ in $(seq 1 30); do
	oseg=$(pg_switch_wal other)
	[[ "$oseg" > "$main_cur" ]] && break
done
[[ "$oseg" > "$main_cur" ]] || fail "could not get a segment of the other cluster beyond $main_cur"
note "foreign segment $oseg (main is at $main_cur)"
as_user mkdir -p "$WORK/foreign"
as_user cp "$WORK/other/pg_wal/$oseg" "$WORK/foreign/$oseg"
assert_rc 7 "a segment of another cluster is refused" pk --stanza=main archive-push "$WORK/foreign/$oseg"
assert_rc 1 "and it is not stored" pk --stanza=main archive-get "$oseg" "$WORK/get/$oseg"

assert_rc 7 "stanza-create against another cluster is refused" \
	pk --stanza=main --pg1-path="$WORK/other" --pg1-port="${PG_PORT[other]}" stanza-create
assert_rc 7 "archive-push from another cluster's data directory is refused" \
	pk --stanza=main --pg1-path="$WORK/other" --pg1-port="${PG_PORT[other]}" archive-push "$WORK/foreign/$oseg"
assert_rc 7 "a backup of another cluster into the stanza is refused" \
	pk --stanza=main --pg1-path="$WORK/other" --pg1-port="${PG_PORT[other]}" backup --type=full
assert_eq "$(find "$WORK/repo/main/backup" -name manifest | wc -l)" "0" "the refused backup left no backup behind"
pg_stop other

# ---------------------------------------------------------------- check
pk_ok "check" --stanza=main check
assert_eq "$(psql_c main 'select failed_count from pg_stat_archiver')" 0 "archive-push still never failed"

it_done
