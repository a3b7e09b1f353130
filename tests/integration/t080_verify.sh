#!/usr/bin/env bash
# t080_verify.sh: verify reads back the whole repository and reports what is
# wrong, naming it, with exit 18 (and 0 when nothing is):
#
# - a full and an incremental backup with their WAL verify as ok (text, JSON,
#   --set, one worker, the sanitizer build); no stanza is 7, an unknown --set 17;
# - a flipped byte in a pack file: names the backups and a file;
# - a missing pack file: names the backups and a file;
# - a WAL segment deleted between the two backups: a gap of the full backup
#   naming the segment, not of the incremental one;
# - a flipped byte in a WAL file: that file is named corrupt;
# - a manifest without its last line: the backup is named;
# - several of these at once: all are reported in one run.
# The repository is copied aside before the first damage and put back after each.
. "$(dirname "$0")/lib.sh"

WALSEG=16
it_setup
pg_new main 55480
write_config main
pg_start main
pk_ok "stanza-create" --stanza=main stanza-create
pgbench_init main 5

pk_ok "full backup" --stanza=main backup --type=full
# The packs of the full backup: the ones damaged below, so that it is the full backup that is hit.
find "$WORK/repo/main/store/pack" -name '*.pack' -type f -printf '%P\n' >"$WORK/tmp/full-packs"
# Two closed segments after the full backup and before the incremental one.
pg_switch_wal main >/dev/null
pg_switch_wal main >/dev/null
pgbench_load main 5
pgbench_wait
pk_ok "incremental backup" --stanza=main backup --type=incr
for i in 1 2 3; do seg=$(pg_switch_wal main); done
pg_wait_archived main "$seg"
pg_stop main     # nothing changes the repository from here on

info_json "$WORK/info.json"
full=$(jq -r '.[0].backup[0].label' "$WORK/info.json")
incr=$(jq -r '.[0].backup[1].label' "$WORK/info.json")
full_stop=$(jq -r '.[0].backup[0].archive.stop' "$WORK/info.json")
incr_start=$(jq -r '.[0].backup[1].archive.start' "$WORK/info.json")
note "full $full (wal-stop $full_stop), incr $incr (wal-start $incr_start)"
[ "$incr" != null ] || fail "info does not show two backups"

REPO=$WORK/repo
STORE=$REPO/main/store
WALDIR=$REPO/main/wal
cp -a "$REPO" "$WORK/repo.clean"
repo_reset() {
	rm -rf "$REPO"
	cp -a "$WORK/repo.clean" "$REPO"
}
# stored_wal SEGMENT: the path of the stored object of a WAL file.
stored_wal() { find "$WALDIR" -type f -name "$1-*" -print -quit; }
# largest_pack: the path of the largest pack file written by the full backup.
largest_pack() {
	local p
	while read -r p; do printf '%s %s\n' "$(file_size "$STORE/pack/$p")" "$STORE/pack/$p"; done <"$WORK/tmp/full-packs" |
		sort -n | tail -n 1 | cut -d' ' -f2
}

# ------------------------------------------------------------ all is well
pk_ok "verify of an intact repository" --stanza=main verify
assert_contains "$PK_OUT" "ok: backup $full (" "the full backup is ok"
assert_contains "$PK_OUT" "ok: backup $incr (" "the incremental backup is ok"
assert_match "$PK_OUT" '^ok: WAL archive \([1-9][0-9]* files\)' "the WAL archive is ok"
assert_not_contains "$PK_ALL" "ERROR" "no error is reported"

pk_ok "verify --output=json" --stanza=main verify --output=json
cp "$PK_OUT" "$WORK/verify-ok.json"
assert_json "$WORK/verify-ok.json" '.stanza == "main" and .status == "ok" and (.backups | length) == 2' \
	"JSON: stanza main, status ok, two backups"
assert_json "$WORK/verify-ok.json" "[.backups[] | .files > 0 and .blocks > 0 and (.errors | length) == 0] == [true, true]" \
	"JSON: each backup has files and blocks and no errors"
assert_json "$WORK/verify-ok.json" '.wal.files > 3 and (.wal.errors | length) == 0' "JSON: WAL files and no errors"

pk_ok "verify --set of one backup with one worker" --stanza=main verify --set="$incr" --process-max=1
assert_contains "$PK_OUT" "ok: backup $incr (" "--set verifies that backup"
assert_not_contains "$PK_OUT" "backup $full (" "--set does not verify the other one"
assert_rc 17 "verify --set of a backup that does not exist" pk --stanza=main verify --set=20000101-000000F
assert_contains "$PK_ALL" "20000101-000000F" "the error names the set"
assert_rc 7 "verify of a stanza that does not exist" pk --stanza=nosuch verify
if [ -x "$WORK/bin/pgkeep_san" ]; then
	PK_BIN=pgkeep_san pk_ok "verify with the sanitizer build" --stanza=main verify --process-max=3
fi

# ------------------------------------------------- a flipped byte in a pack
pack=$(largest_pack)
[ -n "$pack" ] || fail "no pack file under $STORE/pack"
size=$(file_size "$pack")
note "flipping byte $((size / 2)) of $pack ($size bytes)"
flip_byte "$pack" $((size / 2))
assert_rc 18 "verify finds a flipped byte in a pack file" pk --stanza=main verify
assert_contains "$PK_OUT" "ERROR: backup $full" "the problem names the full backup"
assert_match "$PK_OUT" "^ERROR: backup $full: .*\"(base|global|pg_[a-z_]+)/[0-9A-Za-z_./]+\"" \
	"the problem names a file of the data directory"
assert_contains "$PK_OUT" "failed: backup $full" "the full backup is reported failed"
assert_contains "$PK_ALL" "verify found" "the summary error says problems were found"
if [ -x "$WORK/bin/pgkeep_san" ]; then
	PK_BIN=pgkeep_san assert_rc 18 "the sanitizer build finds it too" pk --stanza=main verify --output=json
else
	assert_rc 18 "verify --output=json finds it too" pk --stanza=main verify --output=json
fi
cp "$PK_OUT" "$WORK/verify-pack.json"
assert_json "$WORK/verify-pack.json" '.status == "error" and (.backups[0].errors | length) > 0 and .problems > 0' \
	"JSON: status error, with the backup's errors"
repo_reset

# ---------------------------------------------------------- a missing pack
pack=$(largest_pack)
note "removing $pack"
rm -f "$pack"
assert_rc 18 "verify finds a missing pack file" pk --stanza=main verify
assert_match "$PK_OUT" "^ERROR: backup $full: .*\"(base|global|pg_[a-z_]+)/[0-9A-Za-z_./]+\"" \
	"the problem names the full backup and a file"
assert_contains "$PK_OUT" "is missing" "the problem says the pack is missing"
assert_contains "$PK_OUT" "ok: WAL archive" "the WAL archive is still ok"
repo_reset

# ------------------------------------------- a WAL segment between backups
gap=$(ls "$WALDIR"/*/ | sed -n 's/^\([0-9A-F]\{24\}\)-.*/\1/p' | sort |
	awk -v a="$full_stop" -v b="$incr_start" '$1 > a && $1 < b { print; exit }')
[ -n "$gap" ] || fail "no archived segment between $full_stop and $incr_start"
note "deleting WAL segment $gap"
rm -f "$(stored_wal "$gap")"
assert_rc 18 "verify finds a gap in the WAL archive" pk --stanza=main verify
assert_match "$PK_OUT" "^ERROR: backup $full needs WAL segments .*missing: $gap" \
	"the gap of the full backup is named ($gap)"
assert_not_contains "$PK_OUT" "backup $incr needs" "the incremental backup, after the gap, has none"
assert_contains "$PK_OUT" "ok: backup $incr (" "the incremental backup is ok"
repo_reset

# ------------------------------------------------ a flipped byte in a WAL file
walfile=$(stored_wal "$incr_start")
[ -n "$walfile" ] || fail "the segment $incr_start is not in the archive"
size=$(file_size "$walfile")
note "flipping byte $((size / 2)) of $walfile ($size bytes)"
flip_byte "$walfile" $((size / 2))
assert_rc 18 "verify finds a corrupt WAL file" pk --stanza=main verify
assert_contains "$PK_OUT" "ERROR: WAL file $incr_start is corrupt" "the WAL file is named corrupt"
assert_not_contains "$PK_OUT" "needs WAL" "a corrupt file is not a gap"
assert_contains "$PK_OUT" "ok: backup $full (" "the backups are ok"
repo_reset

# ------------------------------------------------------ a truncated manifest
mf=$REPO/main/backup/$incr/manifest
head -n -1 "$mf" >"$WORK/tmp/manifest.cut"
cat "$WORK/tmp/manifest.cut" >"$mf"
assert_rc 18 "verify finds a manifest without its end line" pk --stanza=main verify
assert_match "$PK_OUT" "^ERROR: backup $incr: manifest" "the problem names the backup and its manifest"
assert_contains "$PK_OUT" "ok: backup $full (" "the other backup is ok"
repo_reset

# ----------------------------------------------------- several at once
rm -f "$(stored_wal "$gap")"
flip_byte "$walfile" $((size / 2))
pack=$(largest_pack)
rm -f "$pack"
head -n -1 "$mf" >"$WORK/tmp/manifest.cut"
cat "$WORK/tmp/manifest.cut" >"$mf"
assert_rc 18 "verify with several problems" pk --stanza=main verify
assert_contains "$PK_OUT" "needs WAL segments" "the gap is reported"
assert_contains "$PK_OUT" "WAL file $incr_start is corrupt" "the corrupt WAL file is reported"
assert_contains "$PK_OUT" "is missing" "the missing pack is reported"
assert_match "$PK_OUT" "^ERROR: backup $incr: manifest" "the truncated manifest is reported"
repo_reset
pk_ok "with the repository put back, verify is ok again" --stanza=main verify

it_done
