#!/usr/bin/env bash
# t030_backup_restore.sh: full backup under load and restore, with the
# production layout's 512 MiB WAL segments.
#
# A full backup taken while pgbench runs restores into a new directory, and
# the restored cluster, recovered to the end of the archive, has exactly the
# origin's data; info (text and JSON) reports the backups; a backup of an
# unchanged database stores almost nothing new; restore refuses a non-empty
# directory without --force (exit 17) and overwrites it with --force; the
# ASan+UBSan build backs up and restores cleanly.
. "$(dirname "$0")/lib.sh"

WALSEG=512
LOAD_SECONDS=${LOAD_SECONDS:-60}
it_setup
pg_new main 55430
# No autovacuum: the third backup below must see an unchanged database.
pg_conf main "autovacuum = off"
write_config main
pg_start main
pk_ok "stanza-create" --stanza=main stanza-create
pgbench_init main 10

# ------------------------------------------------------ backup under load
pgbench_load main "$LOAD_SECONDS"
sleep 5
pk_ok "full backup under load" --stanza=main backup --type=full
pgbench_wait

info_json "$WORK/info1.json"
label1=$(jq -r '.[0].backup[-1].label' "$WORK/info1.json")
assert_re "$label1" '^[0-9]{8}-[0-9]{6}F$' "backup label $label1 has the form YYYYMMDD-HHMMSSF"

# --------------------------------------- restore to the end of the archive
fp=$(data_fingerprint main)
note "origin: $fp"
seg=$(pg_switch_wal main)
pg_wait_archived main "$seg"

[ "$IT_REPO" != remote ] || mark=$(served_mark)
pk_restore r1 55431
if [ "$IT_REPO" = remote ]; then
	# Small files are restored in bundles whose blocks are asked for at once: fewer
	# block-read requests than files (about one per file without).
	reads=$(served_count block-read "$mark")
	nfiles=$(find "$WORK/r1/base" -type f | wc -l)
	note "restore: $reads block-read requests for $nfiles files under base/"
	assert_true "block-read requests ($reads) number less than half the files ($nfiles)" \
		test "$reads" -gt 0 -a "$((reads * 2))" -lt "$nfiles"
fi
assert_true "restore wrote recovery settings with archive-get" \
	grep -q "restore_command.*archive-get" "$WORK/r1/postgresql.auto.conf"
pg_start r1
pg_wait_promoted r1
ok "restored cluster reached the end of the archive and was promoted"
assert_eq "$(data_fingerprint r1)" "$fp" "restored data equals the origin's"
pg_stop r1
pg_checksums_ok r1

# ------------------------------------------------------------------- info
pk_ok "info" --stanza=main info
assert_contains "$PK_OUT" "$label1" "info names the backup"
assert_contains "$PK_OUT" full "info says it is a full backup"

info_json "$WORK/info.json"
J=$WORK/info.json
assert_json "$J" 'type == "array" and length == 1' "info JSON is an array of one stanza"
assert_json "$J" '.[0].name == "main"' "stanza name"
assert_json "$J" '.[0].status.code == 0' "stanza status ok"
assert_json "$J" '.[0].db[0].version == "15"' "db version 15"
sysid=$(psql_c main "select system_identifier from pg_control_system()")
# (system ids exceed 2^53, which jq rounds: compare the text)
assert_match "$J" "\"system-id\" *: *$sysid([^0-9]|\$)" "db system-id is the cluster's ($sysid)"
assert_json "$J" '.[0].archive[0].min | test("^[0-9A-F]{24}$")' "archive min is a segment name"
assert_json "$J" '.[0].archive[0].max | test("^[0-9A-F]{24}$")' "archive max is a segment name"
assert_json "$J" '.[0].backup | length == 1' "one backup"
assert_json "$J" ".[0].backup[0].label == \"$label1\"" "backup label"
assert_json "$J" '.[0].backup[0].type == "full"' "backup type full"
assert_json "$J" '.[0].backup[0].error == false' "backup has no error"
assert_json "$J" '.[0].backup[0].timestamp.start > 0 and .[0].backup[0].timestamp.stop >= .[0].backup[0].timestamp.start' "backup timestamps"
assert_json "$J" '.[0].backup[0].lsn.start | test("^[0-9A-F]+/[0-9A-F]+$")' "backup start LSN"
assert_json "$J" '.[0].backup[0].lsn.stop | test("^[0-9A-F]+/[0-9A-F]+$")' "backup stop LSN"
assert_json "$J" '.[0].backup[0].archive.start | test("^[0-9A-F]{24}$")' "backup WAL start"
assert_json "$J" '.[0].backup[0].archive.stop | test("^[0-9A-F]{24}$")' "backup WAL stop"
assert_json "$J" '.[0].backup[0].info.size > 100000000' "backup size is the database's (> 100 MB)"
assert_json "$J" '.[0].backup[0].info.repository.size > 0' "backup repository size > 0"
assert_json "$J" '.[0].backup[0].info.repository.delta > 0' "backup repository delta > 0"

# ------------------------------------- a backup of an unchanged database
# Load stopped and no autovacuum: backup 2 stores what the load changed,
# backup 3 should store next to nothing.
pk_ok "second full backup (load stopped)" --stanza=main backup --type=full
[ "$IT_REPO" != remote ] || mark=$(served_mark)
pk_ok "third full backup (database unchanged)" --stanza=main backup --type=full
if [ "$IT_REPO" = remote ]; then
	# Round trips: small files are read and asked about in bundles, and a group's
	# list with its blocks: far fewer block-exists requests than files (one per
	# file, or two, without).
	exists=$(served_count block-exists "$mark")
	nfiles=$(find "$(pg_datadir main)/base" -type f | wc -l)
	note "third backup: $exists block-exists requests for $nfiles files under base/"
	assert_true "the server logged the backup's requests" test "$exists" -gt 0
	assert_true "block-exists requests ($exists) number less than a quarter of the files ($nfiles)" \
		test "$((exists * 4))" -lt "$nfiles"
fi
info_json "$WORK/info3.json"
assert_json "$WORK/info3.json" '.[0].backup | length == 3' "three backups"
size2=$(jq -r '.[0].backup[1].info.repository.size' "$WORK/info3.json")
delta3=$(jq -r '.[0].backup[2].info.repository.delta' "$WORK/info3.json")
note "backup 2 repository size $size2, backup 3 new bytes $delta3"
assert_true "backup 3 stored less than 1% new bytes ($delta3 of $size2)" \
	test "$(jq -n "$delta3 * 100 < $size2")" = true
label3=$(jq -r '.[0].backup[2].label' "$WORK/info3.json")
seg=$(pg_switch_wal main)
pg_wait_archived main "$seg"

# ---------------------------------------------- restore into a non-empty dir
assert_rc 17 "restore into a non-empty directory without --force is refused" \
	pk --stanza=main --pg1-path="$WORK/r1" restore
assert_true "the directory was left alone" test -f "$WORK/r1/postmaster.opts"
pk_ok "restore --force into it" --stanza=main --pg1-path="$WORK/r1" restore --force
pg_adopt r1 55431
pg_start r1
pg_wait_promoted r1
assert_eq "$(data_fingerprint r1)" "$fp" "data restored with --force (backup $label3) equals the origin's"
pg_stop r1

# ------------------------------------------------- ASan+UBSan build
if [ -x "$WORK/bin/pgkeep_san" ]; then
	PK_BIN=pgkeep_san pk_ok "full backup with the sanitizer build" --stanza=main backup --type=full
	assert_not_contains "$PK_ALL" "Sanitizer" "no sanitizer report from backup"
	assert_not_contains "$PK_ALL" "runtime error" "no UBSan report from backup"
	as_user mkdir -m 700 "$WORK/rsan"
	PK_BIN=pgkeep_san pk_ok "restore with the sanitizer build" --stanza=main --pg1-path="$WORK/rsan" restore
	assert_not_contains "$PK_ALL" "Sanitizer" "no sanitizer report from restore"
	assert_not_contains "$PK_ALL" "runtime error" "no UBSan report from restore"
	assert_true "the sanitizer restore wrote the data directory" test -f "$WORK/rsan/global/pg_control"
else
	note "no sanitizer build ($PGKEEP_SAN_BIN): skipped that part"
fi

it_done
