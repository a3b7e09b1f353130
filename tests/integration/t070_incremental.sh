#!/usr/bin/env bash
# t070_incremental.sh: incr and diff backups.
#
# A full backup, then an incr, a diff and a second incr between pgbench
# loads: labels FULL_YYYYMMDD-HHMMSSI/D, info JSON type and prior (incr: the
# newest backup, diff: the newest full); a table dropped since the full is
# absent from the incr's manifest; an incr of an unchanged database takes
# most files over from its prior and adds under 1% of the full's size to the
# repository; the incr restored with --type=immediate starts with valid
# page checksums and sane rows; the unchanged incr restored to the end of the
# archive has exactly the origin's data; --delta reads every file, and so
# does an incr after a timeline switch; --type=incr into a repository without
# backups takes a full backup and says so; the sanitizer build takes an incr
# cleanly.
. "$(dirname "$0")/lib.sh"

WALSEG=16
LOAD_SECONDS=${LOAD_SECONDS:-10}
it_setup
pg_new main 55470
# No autovacuum: backups of an unchanged database must be comparable.
pg_conf main "autovacuum = off"
write_config main
pg_start main
pk_ok "stanza-create" --stanza=main stanza-create
pgbench_init main 10
psql_c main "create table it_gone as select g from generate_series(1, 100000) g"
gone=$(psql_c main "select pg_relation_filepath('it_gone')")
note "table it_gone is $gone"

# manifest LABEL: path of the manifest of backup LABEL in WORK/repo.
manifest() { echo "$WORK/repo/main/backup/$1/manifest"; }

# last_label FILE: label of the newest backup in an info JSON document.
last_label() { jq -r '.[0].backup[-1].label' "$1"; }

# read_counts: "READ TAKEN" from the last pk run's log line
# "backup X read N files (M MiB) and took K unchanged files over from backup P".
read_counts() {
	sed -nE 's/.*read ([0-9]+) files \([0-9.]+ MiB\) and took ([0-9]+) unchanged files over.*/\1 \2/p' "$PK_ALL" | tail -n 1
}

# ------------------------------------------------------------------ full
pk_ok "full backup" --stanza=main backup --type=full
info_json "$WORK/info0.json"
full=$(last_label "$WORK/info0.json")
assert_re "$full" '^[0-9]{8}-[0-9]{6}F$' "full label $full"
assert_true "the full backup's manifest lists $gone" grep -qF "	$gone	" "$(manifest "$full")"

# ------------------------------------------------------------------ incr 1
psql_c main "drop table it_gone"
pgbench_load main "$LOAD_SECONDS"
pgbench_wait
pk_ok "incr backup after load" --stanza=main backup --type=incr
assert_match "$PK_ALL" "read [0-9]+ files \([0-9.]+ MiB\) and took [0-9]+ unchanged files over from backup $full" \
	"incr logs files read and taken over"
info_json "$WORK/info1.json"
incr1=$(last_label "$WORK/info1.json")
assert_re "$incr1" '^[0-9]{8}-[0-9]{6}F_[0-9]{8}-[0-9]{6}I$' "incr label $incr1"
assert_eq "${incr1:0:16}" "$full" "incr label starts with the full's"
assert_json "$WORK/info1.json" '.[0].backup[-1].type == "incr"' "info JSON type incr"
assert_json "$WORK/info1.json" ".[0].backup[-1].prior == \"$full\"" "incr prior is the full"
assert_true "the dropped table's file $gone is not in the incr's manifest" \
	bash -c "! grep -qF '	$gone	' '$(manifest "$incr1")'"
fc_full=$(jq -r '.[0].backup[0].info.files' "$WORK/info1.json")
fc_incr=$(jq -r '.[0].backup[-1].info.files' "$WORK/info1.json")
note "files: full $fc_full, incr $fc_incr"
assert_true "the incr lists every file (file-count $fc_incr, about the full's $fc_full)" \
	test "$fc_incr" -gt $((fc_full * 9 / 10))
pk_ok "info text" --stanza=main info
assert_contains "$PK_OUT" "incr backup: $incr1" "info text shows the incr backup"

# ------------------------------------------------------------------ diff
pgbench_load main "$LOAD_SECONDS"
pgbench_wait
pk_ok "diff backup" --stanza=main backup --type=diff
info_json "$WORK/info2.json"
diff=$(last_label "$WORK/info2.json")
assert_re "$diff" "^${full}_[0-9]{8}-[0-9]{6}D\$" "diff label $diff"
assert_json "$WORK/info2.json" '.[0].backup[-1].type == "diff"' "info JSON type diff"
assert_json "$WORK/info2.json" ".[0].backup[-1].prior == \"$full\"" "diff prior is the full, not the incr"

# ------------------------------------------------------------------ incr 2
pgbench_load main "$LOAD_SECONDS"
pgbench_wait
# Flushed now and a second before the backup starts, so the next incr can take them over.
psql_c main "checkpoint"
sleep 1.2
pk_ok "second incr backup" --stanza=main backup --type=incr
info_json "$WORK/info3.json"
incr2=$(last_label "$WORK/info3.json")
assert_re "$incr2" "^${full}_[0-9]{8}-[0-9]{6}I\$" "second incr label $incr2"
assert_json "$WORK/info3.json" ".[0].backup[-1].prior == \"$diff\"" "second incr prior is the diff"
# Restore's "latest" is the last label in name order: it must be the newest by time.
assert_json "$WORK/info3.json" '[.[0].backup[].label] == ([.[0].backup[].label] | sort_by(.[-16:-1]))' \
	"labels in name order are in the order the backups were taken"

# ----------------------------------------------- incr of an unchanged database
psql_c main "checkpoint"
sleep 1.2
pk_ok "incr backup of an unchanged database" --stanza=main backup --type=incr
counts=$(read_counts)
note "read / taken over: $counts"
read3=${counts% *}
taken3=${counts#* }
assert_true "most files were taken over ($taken3 taken, $read3 read)" test "$taken3" -gt $((read3 * 10))
info_json "$WORK/info4.json"
incr3=$(last_label "$WORK/info4.json")
assert_json "$WORK/info4.json" ".[0].backup[-1].prior == \"$incr2\"" "unchanged incr prior is the second incr"
fullsize=$(jq -r ".[0].backup[] | select(.label == \"$full\") | .info.repository.size" "$WORK/info4.json")
delta3=$(jq -r '.[0].backup[-1].info.repository.delta' "$WORK/info4.json")
note "full repository size $fullsize, unchanged incr new bytes $delta3"
assert_true "the unchanged incr added under 1% of the full's size ($delta3 of $fullsize)" \
	test "$(jq -n "$delta3 * 100 < $fullsize")" = true
assert_json "$WORK/info4.json" '.[0].backup[-1].info.size == .[0].backup[-2].info.size' \
	"the unchanged incr's database size is its prior's"

# ------------------------------------------------------------------ --delta
pk_ok "incr backup with --delta" --stanza=main backup --type=incr --delta
counts=$(read_counts)
info_json "$WORK/info5.json"
files5=$(jq -r '.[0].backup[-1].info.files' "$WORK/info5.json")
assert_eq "$counts" "$files5 0" "--delta reads every file ($files5) and takes none over"
assert_json "$WORK/info5.json" '.[0].backup[-1].type == "incr"' "a --delta incr is still an incr"

# ------------------------------------------------- ASan+UBSan build
if [ -x "$WORK/bin/pgkeep_san" ]; then
	PK_BIN=pgkeep_san pk_ok "incr backup with the sanitizer build" --stanza=main backup --type=incr
	assert_not_contains "$PK_ALL" "Sanitizer" "no sanitizer report from the incr backup"
	assert_not_contains "$PK_ALL" "runtime error" "no UBSan report from the incr backup"
	assert_match "$PK_ALL" "took [1-9][0-9]* unchanged files over" "the sanitizer incr took files over"
else
	note "no sanitizer build ($PGKEEP_SAN_BIN): skipped that part"
fi

# ---------------------------------------------------- restores
fp=$(data_fingerprint main)
note "origin: $fp"
seg=$(pg_switch_wal main)
pg_wait_archived main "$seg"

# The first incr to its consistency point.
pk_restore rincr1 55471 --set="$incr1" --type=immediate --target-action=promote
pg_start rincr1
pg_wait_promoted rincr1
assert_eq "$(psql_c rincr1 "select count(*) from pgbench_accounts")" 1000000 "incr 1 restored: 1000000 accounts"
assert_eq "$(psql_c rincr1 "select count(*) from pgbench_branches")" 10 "incr 1 restored: 10 branches"
assert_true "incr 1 restored: pgbench_history has rows" test "$(psql_c rincr1 "select count(*) > 0 from pgbench_history")" = t
assert_eq "$(psql_c rincr1 "select count(*) from pg_class where relname = 'it_gone'")" 0 "incr 1 restored: the dropped table is gone"
pg_stop rincr1
pg_checksums_ok rincr1

# The unchanged incr (nearly all of it taken over) to the end of the archive.
pk_restore rincr3 55472 --set="$incr3"
pg_start rincr3
pg_wait_promoted rincr3
assert_eq "$(data_fingerprint rincr3)" "$fp" "incr $incr3 restored to the end of the archive equals the origin"
pg_stop rincr3
pg_checksums_ok rincr3

# ---------------------------------------------- an incr after a timeline switch
# rincr3 was promoted to timeline 2.  Restored files carry the mtimes of the
# backup they came from, so they are not compared with a prior by size and
# mtime: every file is read.
pg_start rincr3
pk_ok "incr backup of the promoted copy (timeline 2)" --stanza=main --pg1-path="$WORK/rincr3" --pg1-port="${PG_PORT[rincr3]}" \
	backup --type=incr --no-archive-check
assert_contains "$PK_ALL" "a timeline switch occurred since backup" "says the timeline switched"
counts=$(read_counts)
assert_eq "${counts#* }" 0 "after a timeline switch no file is taken over"
pg_stop rincr3

# ------------------------------------------- --type=incr without a prior backup
# (a second, empty repository, through --repo1-path; with IT_REPO=remote the node's file names the
# server, whose repository --repo1-path does not replace: it says so, and --reset-repo1-host makes
# the command use the repository at --repo1-path)
as_user mkdir -m 700 "$WORK/repo2"
repo2=(--repo1-path="$WORK/repo2")
if [ "$IT_REPO" = remote ]; then
	pk_ok "info with --repo1-path while repo1-host is set" --stanza=main "${repo2[@]}" info
	assert_contains "$PK_ALL" "--repo1-path=$WORK/repo2 is not used: repo1-host=" "warns that --repo1-path is not used"
	assert_contains "$PK_OUT" "full backup" "and shows the server's backups"
	repo2=(--reset-repo1-host "${repo2[@]}")
fi
pk_ok "stanza-create in a second repository" --stanza=main "${repo2[@]}" stanza-create
assert_true "the second repository has the stanza" test -d "$WORK/repo2/main"
# (archive_command pushes into the first repository: no archive check here)
pk_ok "incr backup into a repository without backups" --stanza=main "${repo2[@]}" \
	backup --type=incr --no-archive-check
assert_contains "$PK_ALL" "no prior backup exists: taking a full backup" "says it takes a full backup"
pk --stanza=main "${repo2[@]}" info --output=json
cp "$PK_OUT" "$WORK/info-repo2.json"
lbl=$(last_label "$WORK/info-repo2.json")
assert_re "$lbl" '^[0-9]{8}-[0-9]{6}F$' "its label $lbl is a full backup's"
assert_json "$WORK/info-repo2.json" '.[0].backup[-1].type == "full" and .[0].backup[-1].prior == null' \
	"info JSON: type full, no prior"

it_done
