#!/usr/bin/env bash
# t055_full_disk.sh: a repository whose file system fills up.
#
# The repository lives on a tmpfs, shrunk to 24 MiB more than the WAL
# takes.  A full backup that does not fit
# fails with a clear "No space left on device" error, leaves no backup in
# info and no temporary file, and the next expire gives back the space it
# took; with the file system grown, the
# next backup succeeds and restores the origin's data.  While the file
# system is full, PostgreSQL's archive_command fails (nothing is stored,
# no partial file stays) and once there is room again the archiver's retry
# stores the segment intact: no WAL is lost.  Needs root (mount); skips
# otherwise.
. "$(dirname "$0")/lib.sh"

WALSEG=16
[ "$(id -u)" -eq 0 ] || skip "mounting a small file system needs root"
it_setup
mkdir -p "$WORK/repo"
mount -t tmpfs -o size=1g,mode=0750 tmpfs "$WORK/repo" || skip "could not mount a tmpfs"
IT_MOUNTS+=("$WORK/repo")
chown postgres: "$WORK/repo"
pg_new main 55545
write_config main
pg_start main
pk_ok "stanza-create" --stanza=main stanza-create
pgbench_init main 2
# Hex text compresses about 2:1, so this table needs ~70 MB in the repository.
psql_c main "create table it_big as select g, md5(g::text) || md5((g * 7)::text) || md5((g * 13)::text) as t
	from generate_series(1, 1000000) g"
seg=$(pg_switch_wal main)
pg_wait_archived main "$seg"

used() { df -B1 --output=used "$WORK/repo" | tail -n 1 | tr -d ' '; }
# Now shrink the file system to what the WAL took plus 24 MiB.
mount -o remount,size=$((($(used) / 1048576) + 24))m "$WORK/repo"
before=$(used)
assert_fails "a full backup larger than the repository's file system fails" \
	pk --stanza=main backup --type=full
assert_match "$PK_ALL" "No space left on device" "the error says the device is full"
info_json "$WORK/info0.json"
assert_json "$WORK/info0.json" '.[0].backup | length == 0' "info shows no backup"
failed=$(used)
assert_eq "$(find "$WORK/repo" -name '*.tmp*' | wc -l)" 0 "no temporary file is left in the repository"
# What the failed backup stored is garbage no backup references: the next expire collects it.
pk_ok "expire after the failed backup" --stanza=main expire
after=$(used)
note "repository file system used: $before bytes before the backup, $failed after it failed, $after after expire"
assert_true "expire gave the failed backup's space back (under 2 MiB kept: $before -> $after)" \
	test $((after - before)) -lt $((2 * 1024 * 1024))

# ------------------------------------------------ WAL archiving on a full disk
free=$(df -B1 --output=avail "$WORK/repo" | tail -n 1 | tr -d ' ')
as_user dd if=/dev/zero of="$WORK/repo/filler" bs=1M count=$((free / 1048576)) status=none 2>/dev/null || true
failed0=$(psql_c main "select failed_count from pg_stat_archiver")
psql_c main "insert into pgbench_history select 1, 1, 1, 1, now() from generate_series(1, 50000)" >/dev/null
pg_switch_wal main >/dev/null
for ((i = 0; i < 300; i++)); do
	[ "$(psql_c main "select failed_count from pg_stat_archiver")" -gt "$failed0" ] && break
	sleep 0.2
done
assert_true "archive_command fails while the file system is full" \
	test "$(psql_c main "select failed_count from pg_stat_archiver")" -gt "$failed0"
full_seg=$(psql_c main "select last_failed_wal from pg_stat_archiver")
note "the archiver failed on $full_seg"
assert_rc 1 "the segment is not in the repository" pk --stanza=main archive-get "$full_seg" "$WORK/tmp/none"
assert_eq "$(find "$WORK/repo" -name '*.tmp*' | wc -l)" 0 "the failed push left no partial file"
rm -f "$WORK/repo/filler"
pg_wait_archived main "$full_seg"
ok "with room again, the archiver's retry stored $full_seg"
pk_ok "archive-get of the retried segment" --stanza=main archive-get "$full_seg" "$WORK/tmp/$full_seg"
assert_true "pg_waldump reads the retried segment" \
	as_user "$PG_BINDIR/pg_waldump" -q "$WORK/tmp/$full_seg"

# ------------------------------------------------------- room for a backup
mount -o remount,size=400m "$WORK/repo"
pk_ok "with the file system grown, the full backup succeeds" --stanza=main backup --type=full
fp=$(data_fingerprint main)
big=$(psql_c main "select count(*) || ',' || sum(length(t)) from it_big")
seg=$(pg_switch_wal main)
pg_wait_archived main "$seg"
pk_restore r1 55546
pg_start r1
pg_wait_promoted r1
assert_eq "$(data_fingerprint r1)" "$fp" "the backup restores the origin's pgbench data"
assert_eq "$(psql_c r1 "select count(*) || ',' || sum(length(t)) from it_big")" "$big" "and the big table"
pg_stop r1
pk_ok "verify" --stanza=main verify

it_done
