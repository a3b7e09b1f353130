#!/usr/bin/env bash
# t080_verify.sh: verify reads back the whole repository and reports what is
# wrong, naming it, with exit 18 (and 0 when nothing is):
#
# - a full and an incremental backup with their WAL verify as ok (text, JSON,
#   --set, one worker, the sanitizer build, --fast); no stanza is 7, an
#   unknown --set 17;
# - a flipped byte in a pack file: names the backups and a file;
# - a flipped byte inside a data block: full mode names the corrupt block,
#   --fast (which does not read blocks back) passes: its trade-off;
# - a missing pack file: names the backups and a file, with and without --fast;
# - a damaged or missing compression dictionary (store/dict): full mode names it with the
#   blocks it makes unreadable, --fast names the damaged file;
# - a truncated pack file: --fast names the pack;
# - a WAL segment deleted between the two backups: a gap of the full backup
#   naming the segment, not of the incremental one (also with --fast);
# - a flipped byte in a WAL file: that file is named corrupt (--fast does not
#   read WAL files and passes);
# - a manifest without its last line: the backup is named (also with --fast);
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
# indexed PACK OFF ID: whether the block store index maps ID to the record at offset OFF of PACK.
# Two workers storing one block at once leave a copy in each of their packs and the index names
# one of them: damage to the other is never read. Index slots are 64 bytes from offset 64 (id,
# pack id, record offset); the home slot is the id's first bytes, little-endian, modulo the
# number of slots (header offset 16), then linear probing to an empty (zero) slot.
indexed() {
	local pack=$1 off=$2 id=$3 idx=$STORE/index slots i at s
	slots=$(od -An -tu8 -j 16 -N 8 "$idx" | tr -d ' ')
	for ((i = $(od -An -tu4 -j $((off + 4)) -N 4 "$pack" | tr -d ' ') & (slots - 1); ; i = (i + 1) % slots)); do
		at=$((64 + 64 * i))
		s=$(od -An -tx1 -j "$at" -N 32 "$idx" | tr -d ' \n')
		[ "$s" != "$(printf '%064d' 0)" ] || return 1
		[ "$s" = "$id" ] || continue
		[ "$(basename "$pack")" = "$(od -An -tx8 -j $((at + 32)) -N 8 "$idx" | tr -d ' ').pack" ] &&
			[ "$(od -An -tu8 -j $((at + 40)) -N 8 "$idx" | tr -d ' ')" = "$off" ]
		return
	done
}
# data_block_byte PACK: the offset of a byte in the middle of the stored bytes of the first
# record of PACK that holds a data block, not a block list (lists are read by --fast too),
# and is the copy the index names. Records: a 16-byte pack header, then 56-byte record headers
# (id at +4, stored length at +44) each followed by the stored bytes (doc/repository-format.md).
data_block_byte() {
	local pack=$1 off=16 size id len
	size=$(file_size "$pack")
	cat "$REPO"/main/backup/*/manifest | awk -F'\t' '$1 == "g" { print $2 }' | sort -u >"$WORK/tmp/list-ids"
	while [ "$off" -lt "$size" ]; do
		id=$(od -An -tx1 -j $((off + 4)) -N 32 "$pack" | tr -d ' \n')
		len=$(od -An -tu4 -j $((off + 44)) -N 4 "$pack" | tr -d ' ')
		if ! grep -qx "$id" "$WORK/tmp/list-ids" && indexed "$pack" "$off" "$id"; then
			echo $((off + 56 + len / 2))
			return
		fi
		off=$((off + 56 + len))
	done
	fail "no data block record in $pack"
}

# list_record_byte ID: "PACK OFFSET" of a byte in the middle of the stored bytes of the indexed
# record of object ID (a block list) in the full backup's packs.
list_record_byte() {
	local id=$1 p pack off size rid len
	while read -r p; do
		pack=$STORE/pack/$p off=16 size=$(file_size "$STORE/pack/$p")
		while [ "$off" -lt "$size" ]; do
			rid=$(od -An -tx1 -j $((off + 4)) -N 32 "$pack" | tr -d ' \n')
			len=$(od -An -tu4 -j $((off + 44)) -N 4 "$pack" | tr -d ' ')
			if [ "$rid" = "$id" ] && indexed "$pack" "$off" "$id"; then
				echo "$pack $((off + 56 + len / 2))"
				return
			fi
			off=$((off + 56 + len))
		done
	done <"$WORK/tmp/full-packs"
	fail "block list $id is in none of the full backup's packs"
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
	PK_BIN=pgkeep_san pk_ok "verify --fast with the sanitizer build" --stanza=main verify --fast
fi
pk_ok "verify --fast of an intact repository" --stanza=main verify --fast
assert_contains "$PK_OUT" "ok: backup $full (" "--fast: the full backup is ok"
assert_contains "$PK_OUT" "ok: backup $incr (" "--fast: the incremental backup is ok"
assert_match "$PK_OUT" '^verify --fast .*: ok$' "--fast: the summary says it was fast and ok"
pk_ok "verify --fast --output=json" --stanza=main verify --fast --output=json
cp "$PK_OUT" "$WORK/verify-fast.json"
assert_json "$WORK/verify-fast.json" '.fast == true and .status == "ok" and ([.backups[].blocks] | min) > 0' \
	"JSON: fast, ok, every backup's blocks counted"
assert_json "$WORK/verify-ok.json" '.fast == false' "JSON: a full verify says it was not fast"

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

# ------------------------------------------- a flipped byte inside a data block
pack=$(largest_pack)
off=$(data_block_byte "$pack")
note "flipping byte $off of $pack, inside the stored bytes of a data block"
flip_byte "$pack" "$off"
assert_rc 18 "verify finds the damaged data block" pk --stanza=main verify
assert_match "$PK_OUT" "^ERROR: backup $full: corrupt block [0-9]+ of file " "the corrupt block and its file are named"
pk_ok "verify --fast does not read blocks back: it passes (its trade-off)" --stanza=main verify --fast
assert_contains "$PK_OUT" "ok: backup $full (" "--fast: the full backup is reported ok"
repo_reset

# ------------------------------------------- a flipped byte inside a block list
# A list in the middle of the manifest: through a server the lists come prefetched many at a time
# (blocklist_reader_follow), and a damaged one in the middle of a batch must be reported as such
# (the others before and after it still read), as it is from a local repository.
awk -F'\t' '$1 == "g" && !seen[$2]++ { print $2 }' "$REPO/main/backup/$full/manifest" >"$WORK/tmp/full-lists"
nlists=$(wc -l <"$WORK/tmp/full-lists")
[ "$nlists" -ge 3 ] || fail "the full backup has $nlists block lists, too few to damage one in the middle"
list=$(sed -n "$((nlists / 2 + 1))p" "$WORK/tmp/full-lists")
read -r pack off <<<"$(list_record_byte "$list")"
note "flipping byte $off of $pack, inside block list $list ($((nlists / 2 + 1)) of $nlists)"
flip_byte "$pack" "$off"
assert_rc 18 "verify finds the damaged block list" pk --stanza=main verify
assert_match "$PK_OUT" "^ERROR: backup $full: .*block list $list" "the problem names the list"
if grep -q "$list" "$REPO/main/backup/$incr/manifest"; then
	assert_match "$PK_OUT" "^ERROR: backup $incr: .*block list $list" "the incremental backup shares the list: it is named too"
else
	assert_contains "$PK_OUT" "ok: backup $incr (" "the incremental backup, which does not use the list, is ok"
fi
assert_rc 18 "verify --fast reads lists: it finds it too" pk --stanza=main verify --fast
assert_match "$PK_OUT" "^ERROR: backup $full: .*block list $list" "--fast: the list is named"
as_user mkdir -m 700 "$WORK/from-damaged-list"
assert_rc 8 "a restore of the full backup fails as corrupt" \
	pk --stanza=main --pg1-path="$WORK/from-damaged-list" --set="$full" restore
assert_match "$PK_ALL" "ERROR: \\[corrupt\\] .*block list $list" "and names the list"
rm -rf "$WORK/from-damaged-list"
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
assert_rc 18 "verify --fast finds the missing pack file" pk --stanza=main verify --fast
assert_match "$PK_OUT" "^ERROR: backup $full: .*of file \"(base|global|pg_[a-z_]+)/[0-9A-Za-z_./]+\".*pack file .* is missing" \
	"--fast: names the full backup, a file and the missing pack"
assert_contains "$PK_OUT" "failed: backup $full" "--fast: the full backup is reported failed"
repo_reset

# ------------------------------------------- a damaged compression dictionary
# The first backup made the stanza's dictionary, and zst blocks name it: a flipped byte in it makes
# every block compressed with it unreadable, and verify says so, naming the dictionary.
[ -s "$STORE/dict" ] || fail "the first backup made no compression dictionary ($STORE/dict)"
note "flipping byte 100 of $STORE/dict"
flip_byte "$STORE/dict" 100
assert_rc 18 "verify finds a damaged compression dictionary" pk --stanza=main verify
assert_match "$PK_OUT" "^ERROR: backup $full: .*compression dictionary .*(checksum does not match|damaged)" \
	"the problem names the dictionary and the full backup"
assert_match "$PK_OUT" "^failed: compression dictionary" "the dictionary is reported failed once"
assert_rc 18 "verify --fast finds the damaged dictionary too (one small file)" pk --stanza=main verify --fast
assert_match "$PK_OUT" "^ERROR: compression dictionary: .*checksum does not match" "--fast: the dictionary is named"
assert_rc 18 "verify --output=json reports it" pk --stanza=main verify --fast --output=json
cp "$PK_OUT" "$WORK/verify-dict.json"
assert_json "$WORK/verify-dict.json" '.dictionary.present == true and (.dictionary.errors | length) == 1 and .status == "error"' \
	"JSON: the dictionary is present, with one error"
assert_json "$WORK/verify-ok.json" '.dictionary.present == true and (.dictionary.errors | length) == 0' \
	"JSON of the intact repository: the dictionary is present and ok"
repo_reset
rm -f "$STORE/dict"
assert_rc 18 "verify finds a missing compression dictionary" pk --stanza=main verify
assert_match "$PK_OUT" "^ERROR: backup $full: .*has no dictionary" "the problem says the stanza has no dictionary"
repo_reset

# --------------------------------------------------------- a truncated pack
pack=$(largest_pack)
size=$(file_size "$pack")
note "truncating $pack to $((size / 2)) of $size bytes"
truncate -s $((size / 2)) "$pack"
assert_rc 18 "verify --fast finds a truncated pack file" pk --stanza=main verify --fast
assert_match "$PK_OUT" "^ERROR: backup $full: .*beyond the end of the file" "--fast: a record lies beyond the end of the pack"
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
assert_rc 18 "verify --fast finds the gap too" pk --stanza=main verify --fast
assert_match "$PK_OUT" "^ERROR: backup $full needs WAL segments .*missing: $gap" "--fast: the gap is named"
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
pk_ok "verify --fast does not read WAL files back: it passes" --stanza=main verify --fast
repo_reset

# ------------------------------------------------------ a truncated manifest
mf=$REPO/main/backup/$incr/manifest
head -n -1 "$mf" >"$WORK/tmp/manifest.cut"
cat "$WORK/tmp/manifest.cut" >"$mf"
assert_rc 18 "verify finds a manifest without its end line" pk --stanza=main verify
assert_match "$PK_OUT" "^ERROR: backup $incr: manifest" "the problem names the backup and its manifest"
assert_contains "$PK_OUT" "ok: backup $full (" "the other backup is ok"
assert_rc 18 "verify --fast reads manifests in full: it finds it too" pk --stanza=main verify --fast
assert_match "$PK_OUT" "^ERROR: backup $incr: manifest" "--fast: the backup and its manifest are named"
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
