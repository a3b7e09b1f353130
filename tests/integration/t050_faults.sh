#!/usr/bin/env bash
# t050_faults.sh: faults the repository must survive or report.
#
# - a failed fsync of the dictionary's directory fails the first backup and
#   leaves no dictionary behind;
# - kill -9 of a backup half-way leaves no backup behind, and the next
#   backup succeeds and restores;
# - a corrupted byte in a pack file makes restore fail with exit 8, naming
#   the backup and the file it hits;
# - kill -9 of a restore half-way, then restore --force into the same
#   directory gives the origin's data;
# - a stored WAL file with a flipped byte: archive-get exits 8 and writes
#   nothing at the requested path;
# - a manifest with a "../" path is refused and nothing is written outside
#   the target directory.
# (archive-push of another cluster's WAL is in t020_archive.sh.)
. "$(dirname "$0")/lib.sh"

WALSEG=16
it_setup
pg_new main 55450
write_config main
pg_start main
pk_ok "stanza-create" --stanza=main stanza-create
pgbench_init main 20

STORE=$WORK/repo/main/store

# ------------------------------------------------- the dictionary's write fails
# The stanza's first backup makes its compression dictionary (store/dict). When the fsync of the
# directory that holds it fails with EIO (fault injection by path suffix, src/fileio.h), the
# backup fails naming that directory, and no dictionary is left in place: a dictionary whose
# directory entry may not be durable must not be found and used by the next backup.
dict_eio_backup() {
	(cd "$WORK" && as_user env PGKEEP_FAULT_FSYNC_EIO="/main/store" "$WORK/bin/pgkeep" --config="$WORK/pgkeep.conf" \
		--stanza=main backup --type=full) >"$WORK/tmp/dict-eio.out" 2>&1
}
assert_rc 5 "a first backup whose dictionary cannot be made durable fails" dict_eio_backup
awk '{print "#   | " $0}' "$WORK/tmp/dict-eio.out"
assert_contains "$WORK/tmp/dict-eio.out" "could not fsync directory \"$STORE\": Input/output error" \
	"the error names the directory and the system error"
assert_true "no dictionary is left in place" test ! -e "$STORE/dict"
info_json "$WORK/info-dict-eio.json"
assert_json "$WORK/info-dict-eio.json" '.[0].backup | length == 0' "and no backup is listed"

# ------------------------------------------------- kill -9 half-way
# The backup runs as the test user through a shell that records its pid and
# execs pgkeep, so the kill hits pgkeep itself (not runuser).
(cd "$WORK" && exec "${AS[@]}" bash -c 'echo $$ >"$1"; exec "$2" --config="$3" --stanza=main --process-max=1 backup --type=full' \
	_ "$WORK/tmp/backup.pid" "$WORK/bin/pgkeep" "$WORK/pgkeep.conf") >"$WORK/tmp/killed-backup.out" 2>&1 &
bgpid=$!
IT_BG_PIDS+=("$bgpid")
for ((i = 0; i < 100; i++)); do
	[ -s "$WORK/tmp/backup.pid" ] && break
	sleep 0.1
done
pkpid=$(cat "$WORK/tmp/backup.pid")
# Wait until the store has grown (a file appears under store/pack), at most
# 10 s; then kill in any case, as long as the backup is still running.
for ((i = 0; i < 200; i++)); do
	[ -n "$(find "$STORE/pack" -type f -print -quit 2>/dev/null)" ] && break
	kill -0 "$pkpid" 2>/dev/null || break
	sleep 0.05
done
kill -0 "$pkpid" 2>/dev/null || {
	cat "$WORK/tmp/killed-backup.out"
	fail "the backup ended before it could be killed (make the database bigger)"
}
note "store files before the kill: $(find "$STORE/pack" -type f 2>/dev/null | wc -l || true)"
kill -9 "$pkpid"
wait "$bgpid" || true
ok "backup killed with SIGKILL half-way (pid $pkpid)"
tail -n 5 "$WORK/tmp/killed-backup.out" | awk '{print "#   | " $0}'

info_json "$WORK/info-killed.json"
assert_json "$WORK/info-killed.json" '.[0].backup | length == 0' "info shows no backup after the kill"

pk_ok "the next backup succeeds" --stanza=main backup --type=full
info_json "$WORK/info.json"
assert_json "$WORK/info.json" '.[0].backup | length == 1' "info shows one backup"
label=$(jq -r '.[0].backup[0].label' "$WORK/info.json")

fp=$(data_fingerprint main)
seg=$(pg_switch_wal main)
pg_wait_archived main "$seg"
pk_restore r1 55451
pg_start r1
pg_wait_promoted r1
assert_eq "$(data_fingerprint r1)" "$fp" "the backup after the kill restores the origin's data"
pg_stop r1

# --------------------------------------------- a corrupted stored block
read -r size pack < <(find "$STORE/pack" -name '*.pack' -type f -printf '%s %p\n' | sort -n | tail -n 1) || true
[ -n "${pack:-}" ] || fail "no pack file under $STORE/pack"
off=$((size / 2))
note "corrupting byte $off of $pack ($size bytes)"
flip_byte "$pack" "$off"
as_user mkdir -m 700 "$WORK/rcorrupt"
assert_rc 8 "restore of a corrupted block fails as corrupt" \
	pk --stanza=main --pg1-path="$WORK/rcorrupt" restore
assert_contains "$PK_ALL" "$label" "the error names the backup ($label)"
assert_match "$PK_ALL" '(base|global|pg_[a-z_]+)/[0-9A-Za-z_.]+' "the error names a file of the data directory"

flip_byte "$pack" "$off"    # repair: flipping twice restores the byte
as_user mkdir -m 700 "$WORK/rrepaired"
pk_ok "with the byte repaired, restore succeeds" --stanza=main --pg1-path="$WORK/rrepaired" restore

# ------------------------------------------------- kill -9 of a restore
as_user mkdir -m 700 "$WORK/rkilled"
(cd "$WORK" && exec "${AS[@]}" bash -c 'echo $$ >"$1"; exec "$2" --config="$3" --stanza=main --process-max=1 --pg1-path="$4" restore' \
	_ "$WORK/tmp/restore.pid" "$WORK/bin/pgkeep" "$WORK/pgkeep.conf" "$WORK/rkilled") >"$WORK/tmp/killed-restore.out" 2>&1 &
bgpid=$!
IT_BG_PIDS+=("$bgpid")
for ((i = 0; i < 100; i++)); do
	[ -s "$WORK/tmp/restore.pid" ] && break
	sleep 0.1
done
pkpid=$(cat "$WORK/tmp/restore.pid")
# Kill once it has written a fifth of the data (or after 10 s if still running).
want=$(($(du -sb "$WORK/rrepaired" | cut -f1) / 5))
for ((i = 0; i < 200; i++)); do
	[ "$(du -sb "$WORK/rkilled" | cut -f1)" -ge "$want" ] && break
	kill -0 "$pkpid" 2>/dev/null || break
	sleep 0.05
done
kill -0 "$pkpid" 2>/dev/null || {
	cat "$WORK/tmp/killed-restore.out"
	fail "the restore ended before it could be killed (make the database bigger)"
}
note "restored bytes before the kill: $(du -sb "$WORK/rkilled" | cut -f1) of about $((want * 5))"
kill -9 "$pkpid"
wait "$bgpid" || true
ok "restore killed with SIGKILL half-way (pid $pkpid)"
assert_true "the half-restored directory has no backup_label yet (it is written last)" test ! -e "$WORK/rkilled/backup_label"
pk_ok "restore --force into the half-restored directory" --stanza=main --pg1-path="$WORK/rkilled" restore --force
pg_adopt rkilled 55452
pg_start rkilled
pg_wait_promoted rkilled
assert_eq "$(data_fingerprint rkilled)" "$fp" "the restore after the killed one has the origin's data"
pg_stop rkilled

# ----------------------------------------------- a corrupted stored WAL file
walobj=$(find "$WORK/repo/main/wal" -path '*/wal/history' -prune -o -type f -name '0*-*.zst' -size +4k -print | sort | head -n 1)
[ -n "$walobj" ] || fail "no stored WAL segment under $WORK/repo/main/wal"
walname=$(basename "$walobj" | cut -d- -f1)
flip_byte "$walobj" $(($(file_size "$walobj") / 2))
assert_rc 8 "archive-get of a corrupted stored WAL file fails as corrupt" \
	pk --stanza=main archive-get "$walname" "$WORK/tmp/got-$walname"
assert_contains "$PK_ALL" "$walname" "the error names the WAL file"
assert_true "nothing was written at the requested path" test ! -e "$WORK/tmp/got-$walname"
flip_byte "$walobj" $(($(file_size "$walobj") / 2))
pk_ok "with the byte repaired, archive-get succeeds" --stanza=main archive-get "$walname" "$WORK/tmp/got-$walname"

# --------------------------------------------------- "../" in a manifest
mf=$(find "$WORK/repo/main/backup/$label" -maxdepth 1 -type f -name 'manifest*' -print -quit)
[ -n "$mf" ] || fail "no manifest under $WORK/repo/main/backup/$label"
cp -p "$mf" "$WORK/tmp/manifest.saved"
zst=0
[ "$(od -An -tx1 -N4 "$mf" | tr -d ' ')" = 28b52ffd ] && zst=1    # zstd frame magic
if [ "$zst" = 1 ]; then zstd -qdc "$mf" >"$WORK/tmp/manifest.txt"; else cp "$mf" "$WORK/tmp/manifest.txt"; fi
sed -i 's|^f\tPG_VERSION\t|f\t../evil\t|' "$WORK/tmp/manifest.txt"
grep -q $'^f\t\.\./evil\t' "$WORK/tmp/manifest.txt" || fail "could not put ../evil into the manifest (format changed?)"
if [ "$zst" = 1 ]; then zstd -qc "$WORK/tmp/manifest.txt" >"$mf"; else cat "$WORK/tmp/manifest.txt" >"$mf"; fi
note "manifest $mf now lists ../evil (zstd: $zst)"

as_user mkdir -p "$WORK/revil"
as_user mkdir -m 700 "$WORK/revil/data"
assert_fails "restore of a manifest with ../evil is refused" \
	pk --stanza=main --pg1-path="$WORK/revil/data" restore
assert_true "nothing was written outside the target (no ../evil)" test ! -e "$WORK/revil/evil"
assert_eq "$(ls -A "$WORK/revil")" data "the parent of the target holds only the target"
cp -p "$WORK/tmp/manifest.saved" "$mf"

it_done
