#!/usr/bin/env bash
# t090_delta_restore.sh: restore --delta onto an existing data directory.
#
# A full backup under pgbench load is restored twice, into A (the reference)
# and B.  B is then made to diverge: started and promoted (its own timeline
# and WAL), loaded with pgbench, stopped; a relation file is deleted, bytes
# of another are overwritten, garbage is appended to a third, a file is made
# read-only, a stray file, a stray directory and a stray WAL segment are
# added; in B's tablespace rows are added, a stray file is put in the
# cluster's version directory and another version's directory beside it.
# restore --delta onto B must:
#   - refuse while B runs (exit 17) without touching it;
#   - leave B's tree equal to A's (paths, types, modes, link targets, content
#     hashes, file mtimes), with a summary line whose counts equal those
#     computed here by comparing B with A beforehand (unchanged > 0, one file
#     created), rewriting exactly the one overwritten block of the damaged
#     file and naming the stray entries it removed; the other version's
#     directory in the tablespace is kept;
#   - give a B that starts, recovers and has exactly the origin's data (the
#     diverged timeline's WAL is gone).
# A second --delta onto the identical B rewrites nothing and touches no file
# (no ctime changes).  --delta into a missing and into an empty directory
# works like a plain restore.  A --delta that needs a block that is corrupt in
# the repository fails with exit 8 naming the file, leaves no global/pg_control
# (PostgreSQL cannot start the half-restored directory), and a re-run after
# the repair completes the directory.  A --delta killed with SIGKILL half-way
# leaves no global/pg_control either, and a re-run completes the directory,
# keeping what the killed run wrote.  A restore whose final syncfs fails
# (EIO, injected) exits 5 naming the directory, leaves no global/pg_control,
# and a --delta re-run completes the directory.  The sanitizer build runs a delta
# restore cleanly.
. "$(dirname "$0")/lib.sh"

WALSEG=16
LOAD_SECONDS=${LOAD_SECONDS:-10}
it_setup
pg_new main 55490
# No autovacuum: the static tables below stay as the backup has them on B.
pg_conf main "autovacuum = off"
write_config main
pg_start main
pk_ok "stanza-create" --stanza=main stanza-create
pgbench_init main 10
for t in it_del it_corrupt it_append it_chmod; do
	psql_c main "create table $t as select g, md5(g::text) m from generate_series(1, 20000) g" >/dev/null
done
as_user mkdir "$WORK/ts"
psql_c main "create tablespace it_ts location '$WORK/ts'" >/dev/null
psql_c main "create table it_tsdata tablespace it_ts as select g, md5(g::text) m from generate_series(1, 20000) g" >/dev/null
psql_c main "vacuum freeze" >/dev/null
psql_c main "checkpoint" >/dev/null
tsver=PG_15_$(psql_c main "select catalog_version_no from pg_control_system()")
declare -A REL=()
for t in it_del it_corrupt it_append it_chmod; do
	REL[$t]=$(psql_c main "select pg_relation_filepath('$t')")
	note "$t is ${REL[$t]}"
done

# tree_state NAME: one sorted line per entry under WORK/NAME and then under
# its tablespace's directory WORK/ts_NAME (prefixed "ts/", without the other
# version's directory PG_14_0 that the test puts there): path, type, mode,
# link target, SHA-256 of a file's content, and a file's mtime.  The
# tablespace's directory is written TS in the link and in tablespace_map.
# Left out: the mtimes of directories (entries made in them later change
# them) and of the files restore writes itself (backup_label,
# tablespace_map, the signal files, a postgresql.auto.conf with recovery
# settings: they get the time of the restore).
tree_state() {
	local dir=$WORK/$1 ts=$WORK/ts_$1
	{
		(cd "$dir" && find . -mindepth 1 -type f ! -name tablespace_map -print0 | xargs -0 -r sha256sum)
		[ ! -f "$dir/tablespace_map" ] || echo "$(sed "s|$ts|TS|" "$dir/tablespace_map" | sha256sum | cut -c1-64)  ./tablespace_map"
		(cd "$ts" && find . -mindepth 1 -type f -print0 | xargs -0 -r sha256sum) | sed 's|  \./|  ts/./|'
	} | sed 's/  /\t/' >"$WORK/tmp/hashes"
	{
		(cd "$dir" && find . -mindepth 1 -printf '%p\t%y\t%m\t%l\t%T@\n')
		(cd "$ts" && find . -mindepth 1 -path ./PG_14_0 -prune -o -printf 'ts/%p\t%y\t%m\t%l\t%T@\n')
	} | awk -F'\t' -v OFS='\t' -v ts="$ts" '
			NR == FNR { h[$2] = $1; next }
			{
				mtime = $5
				if ($2 != "f" || $1 ~ /^\.\/(backup_label|tablespace_map|recovery\.signal|standby\.signal|postgresql\.auto\.conf)$/)
					mtime = "-"
				print $1, $2, $3, ($4 == ts ? "TS" : $4), ($2 == "f" ? h[$1] : "-"), mtime
			}' "$WORK/tmp/hashes" - | LC_ALL=C sort
}

# ctimes DIR: "path ctime" of every file and directory (a write, chmod or utime changes it).
ctimes() { (cd "$1" && find . -printf '%p %C@\n') | LC_ALL=C sort; }

# assert_same_tree NAME REF MSG: tree_state of NAME equals the saved state file REF.
assert_same_tree() {
	tree_state "$1" >"$WORK/tmp/state.now"
	if diff "$2" "$WORK/tmp/state.now" >"$WORK/tmp/state.diff"; then
		ok "$3 ($(wc -l <"$2") entries)"
	else
		head -n 40 "$WORK/tmp/state.diff" | awk '{print "#   " $0}' >&2
		fail "$3: the trees differ"
	fi
}

# summary: "UNCHANGED CHANGED BLOCKS CREATED REMOVED" from the last pk run's summary line.
summary() {
	sed -nE 's/.*delta restore: ([0-9]+) files unchanged, ([0-9]+) files changed \(([0-9]+) blocks rewritten, [0-9.]+ MiB\), ([0-9]+) files created, ([0-9]+) removed.*/\1 \2 \3 \4 \5/p' "$PK_ALL" | tail -n 1
}

# expected_counts REF NOW: "UNCHANGED CHANGED CREATED REMOVED" that a delta
# restore of the backup (state REF, of a fresh restore) onto a directory in
# state NOW must report.  Files: those of REF but restore's own
# (backup_label, tablespace_map, signal files, which it replaces), compared
# by hash.  Removed: the topmost entries of NOW that REF does not have.
expected_counts() {
	awk -F'\t' '
		NR == FNR {
			t[$1] = $2
			if ($1 !~ /^\.\/(backup_label|tablespace_map|recovery\.signal|standby\.signal)$/) { f[$1] = $2; h[$1] = $5 }
			next
		}
		{ nt[$1] = $2; nh[$1] = $5; order[++n] = $1 }
		END {
			for (p in f) if (f[p] == "f") {
				if (nt[p] != "f") created++; else if (nh[p] == h[p]) unchanged++; else changed++
			}
			for (i = 1; i <= n; i++) {
				p = order[i]; parent = p; sub(/\/[^\/]*$/, "", parent)
				if (!(p in t) && (parent == "." || t[parent] == "d")) removed++
			}
			printf "%d %d %d %d\n", unchanged, changed, created, removed
		}' "$1" "$2"
}

# restore_into NAME MSG [ARGS]: restore stanza main into WORK/NAME, its
# tablespace into WORK/ts_NAME (no pg_adopt).  Every restore of this test
# maps the tablespace: the backup's location is the origin's live one.
restore_into() {
	local name=$1 msg=$2
	shift 2
	pk_ok "$msg" --stanza=main --pg1-path="$WORK/$name" restore --tablespace-map=it_ts="$WORK/ts_$name" "$@"
}

# ------------------------------------------------------------ the backup
pgbench_load main "$LOAD_SECONDS"
sleep 2
pk_ok "full backup under load" --stanza=main backup --type=full
pgbench_wait
info_json "$WORK/info.json"
label=$(jq -r '.[0].backup[-1].label' "$WORK/info.json")
fp=$(data_fingerprint main)
note "origin: $fp"
seg=$(pg_switch_wal main)
pg_wait_archived main "$seg"

# ------------------------------------------------- A, the reference, and B
as_user mkdir -m 700 "$WORK/ra" "$WORK/rb"
restore_into ra "restore A"
tree_state ra >"$WORK/state.a"
t0=$(date +%s.%N)
restore_into rb "restore B"
t1=$(date +%s.%N)
note "plain restore B took $(awk "BEGIN { printf \"%.1f\", $t1 - $t0 }") s"
assert_same_tree rb "$WORK/state.a" "two plain restores give the same tree (the comparison is deterministic)"
assert_true "a restore leaves no temporary pg_control" test ! -e "$WORK/ra/global/pg_control.pgkeep-restore"
assert_true "the tablespace of A is in ts_ra" test -d "$WORK/ts_ra/$tsver"

# ---------------------------------------------------------- B diverges
pg_adopt rb 55491
pg_start rb
pg_wait_promoted rb
assert_eq "$(psql_c rb "select timeline_id > 1 from pg_control_checkpoint()")" t "B was promoted to a timeline of its own"
pgbench_load rb 5
pgbench_wait
psql_c rb "insert into it_tsdata select g, 'new' from generate_series(1, 1000) g" >/dev/null
psql_c rb "checkpoint" >/dev/null

assert_rc 17 "restore --delta onto the running B is refused" \
	pk --stanza=main --pg1-path="$WORK/rb" restore --tablespace-map=it_ts="$WORK/ts_rb" --delta
assert_contains "$PK_ALL" "appears to be running" "the error says the cluster is running"
assert_true "the refused restore did not touch B (global/pg_control in place, no temporary one)" \
	test -f "$WORK/rb/global/pg_control" -a ! -e "$WORK/rb/global/pg_control.pgkeep-restore"
assert_eq "$(psql_c rb "select count(*) from pgbench_branches")" 10 "B still runs and answers"
pg_stop rb

rb=$WORK/rb
as_user rm "$rb/${REL[it_del]}"
printf 'garbage!' | as_user dd of="$rb/${REL[it_corrupt]}" bs=1 seek=5000 conv=notrunc status=none
printf 'appended garbage' | as_user tee -a "$rb/${REL[it_append]}" >/dev/null
as_user chmod 0400 "$rb/${REL[it_chmod]}"
as_user sh -c "echo stray >'$rb/base/stray_file'; mkdir -p '$rb/stray_dir/sub'; echo x >'$rb/stray_dir/sub/f'"
stray_wal=$(ls "$rb/pg_wal" | grep -E '^[0-9A-F]{24}$' | head -n 1)
as_user cp "$rb/pg_wal/$stray_wal" "$rb/pg_wal/0000000100000000000000F0"
note "B's pg_wal now: $(ls "$rb/pg_wal" | tr '\n' ' ')"
tsdb=$(ls "$WORK/ts_rb/$tsver")
as_user sh -c "echo stray >'$WORK/ts_rb/$tsver/$tsdb/stray_ts_file'; mkdir -p '$WORK/ts_rb/PG_14_0/1'; echo old >'$WORK/ts_rb/PG_14_0/1/keep'"
tree_state rb >"$WORK/state.b0"
expected=$(expected_counts "$WORK/state.a" "$WORK/state.b0")
note "expected unchanged changed created removed: $expected"
read -r e_unchanged e_changed e_created e_removed <<<"$expected"
assert_true "B's diverged server rewrote files and B has files the backup has not ($expected)" \
	test "$e_changed" -gt 3 -a "$e_removed" -gt 3

# ------------------------------------------------------------ delta onto B
t0=$(date +%s.%N)
restore_into rb "restore --delta onto the diverged B" --delta --log-level-console=detail
t1=$(date +%s.%N)
sumline=$(grep -m1 'delta restore:' "$PK_ALL" || true)
note "delta restore onto B took $(awk "BEGIN { printf \"%.1f\", $t1 - $t0 }") s: $sumline"
got=$(summary)
read -r g_unchanged g_changed g_blocks g_created g_removed <<<"${got:-x x x x x}"
assert_eq "$g_unchanged $g_changed $g_created $g_removed" "$e_unchanged $e_changed $e_created $e_removed" \
	"summary counts (unchanged changed created removed) are what B's differences from A call for"
assert_true "most files were kept unchanged ($g_unchanged)" test "$g_unchanged" -gt "$((g_changed + g_created))"
assert_eq "$g_created" 1 "one file created: the deleted relation file"
assert_contains "$PK_ALL" "file \"$rb/${REL[it_corrupt]}\": 1 blocks rewritten" "the damaged file got exactly its one damaged block back"
assert_contains "$PK_ALL" "file \"$rb/${REL[it_append]}\": 0 blocks rewritten, size changed" "the file with garbage appended was cut, nothing rewritten"
assert_contains "$PK_ALL" "remove \"$rb/base/stray_file\"" "the stray file was removed"
assert_contains "$PK_ALL" "remove \"$rb/stray_dir\"" "the stray directory was removed"
assert_contains "$PK_ALL" "remove \"$rb/pg_wal/0000000100000000000000F0\"" "the stray WAL segment was removed"
assert_contains "$PK_ALL" "remove \"$rb/pg_wal/$stray_wal\"" "B's own WAL segment $stray_wal was removed"
assert_contains "$PK_ALL" "stray_ts_file\": not in backup set" "the stray file in the tablespace was removed"
assert_true "another version's directory in the tablespace is kept" test -f "$WORK/ts_rb/PG_14_0/1/keep"
assert_same_tree rb "$WORK/state.a" "after --delta, B's tree equals A's"

# ------------------------------------------------------ a second --delta
ctimes "$rb" >"$WORK/tmp/ctimes.before"
restore_into rb "a second restore --delta onto the identical B" --delta
note "second delta: $(grep -m1 'delta restore:' "$PK_ALL" || true)"
got=$(summary)
read -r g2_unchanged g2_changed g2_blocks g2_created g2_removed <<<"${got:-x x x x x}"
assert_eq "$g2_changed $g2_blocks $g2_created $g2_removed" "0 0 0 0" "the second delta changes, rewrites, creates and removes nothing"
assert_eq "$g2_unchanged" "$((e_unchanged + e_changed + e_created))" "the second delta keeps every file"
ctimes "$rb" >"$WORK/tmp/ctimes.after"
# Expected changes: backup_label, tablespace_map and the signal file are
# restore's own, written every time, in the top directory; pg_control is
# renamed (not written) to a temporary name and back, which changes its and
# global's ctime.
{ diff "$WORK/tmp/ctimes.before" "$WORK/tmp/ctimes.after" || true; } | { grep -E '^[<>]' || true; } |
	{ grep -vE '^[<>] \./(backup_label|tablespace_map|recovery\.signal|global|global/pg_control) |^[<>] \. ' || true; } >"$WORK/tmp/ctimes.diff"
if [ -s "$WORK/tmp/ctimes.diff" ]; then
	awk '{print "#   " $0}' "$WORK/tmp/ctimes.diff" | head -n 20 >&2
	fail "the second delta touched files (their ctime changed)"
else
	ok "the second delta touched no file of the backup (no ctime changed)"
fi
assert_same_tree rb "$WORK/state.a" "after the second --delta, B's tree still equals A's"

pg_adopt rb 55491
pg_start rb
pg_wait_promoted rb
assert_eq "$(data_fingerprint rb)" "$fp" "B after --delta recovers to exactly the origin's data"
assert_eq "$(psql_c rb "select count(*) from it_tsdata")" 20000 "B's table in the tablespace has the origin's rows"
pg_stop rb
pg_checksums_ok rb

# ----------------------------------------- --delta into missing and empty directories
restore_into rmissing "restore --delta into a missing directory" --delta
got=$(summary)
assert_eq "${got% *}" "0 0 0 $((e_unchanged + e_changed + e_created))" "into a missing directory every file is created"
assert_same_tree rmissing "$WORK/state.a" "--delta into a missing directory equals a plain restore"
as_user mkdir -m 700 "$WORK/rempty" "$WORK/ts_rempty"
restore_into rempty "restore --delta into an empty directory" --delta
assert_same_tree rempty "$WORK/state.a" "--delta into an empty directory equals a plain restore"

# ------------------------------------------------- ASan+UBSan build
if [ -x "$WORK/bin/pgkeep_san" ]; then
	printf 'appended garbage' | as_user tee -a "$WORK/rmissing/${REL[it_append]}" >/dev/null
	printf 'garbage!' | as_user dd of="$WORK/rmissing/${REL[it_corrupt]}" bs=1 seek=9000 conv=notrunc status=none
	as_user rm "$WORK/rmissing/${REL[it_del]}"
	as_user sh -c "echo stray >'$WORK/rmissing/base/stray_file'"
	PK_BIN=pgkeep_san restore_into rmissing "restore --delta with the sanitizer build" --delta
	assert_not_contains "$PK_ALL" "Sanitizer" "no sanitizer report from the delta restore"
	assert_not_contains "$PK_ALL" "runtime error" "no UBSan report from the delta restore"
	# (postgresql.auto.conf changes too: its restore_command names the binary that restored)
	got=$(summary)
	assert_eq "$(echo "$got" | cut -d' ' -f2-5)" "3 2 1 1" \
		"the sanitizer build's delta: 3 files changed (2 blocks rewritten), 1 created, 1 removed"
	restore_into rmissing "restore --delta with the plain build again" --delta
	got=$(summary)
	assert_eq "$(echo "$got" | cut -d' ' -f2-5)" "1 1 0 0" "then only postgresql.auto.conf changes back"
	assert_same_tree rmissing "$WORK/state.a" "after the sanitizer build's delta and a plain one the directory equals a plain restore"
else
	note "no sanitizer build ($PGKEEP_SAN_BIN): skipped that part"
fi

# ------------------------------------------------ kill -9 half-way
# A --delta into a new directory is killed once it has started on
# pgbench_accounts (the biggest file); the re-run must complete it.  The
# restore runs as the test user through a shell that records its pid and
# execs pgkeep, so the kill hits pgkeep itself.
accounts=$(psql_c main "select pg_relation_filepath('pgbench_accounts')")
(cd "$WORK" && exec "${AS[@]}" bash -c 'echo $$ >"$1"; exec "$2" --config="$3" --stanza=main --pg1-path="$4" --process-max=1 restore --tablespace-map=it_ts="$5" --delta' \
	_ "$WORK/tmp/restore.pid" "$WORK/bin/pgkeep" "$WORK/pgkeep.conf" "$WORK/rkill" "$WORK/ts_rkill") >"$WORK/tmp/killed-restore.out" 2>&1 &
bgpid=$!
IT_BG_PIDS+=("$bgpid")
for ((i = 0; i < 100; i++)); do
	[ -s "$WORK/tmp/restore.pid" ] && break
	sleep 0.1
done
pkpid=$(cat "$WORK/tmp/restore.pid")
for ((i = 0; i < 1000; i++)); do
	[ -e "$WORK/rkill/$accounts" ] && break
	kill -0 "$pkpid" 2>/dev/null || break
	sleep 0.02
done
kill -0 "$pkpid" 2>/dev/null || {
	cat "$WORK/tmp/killed-restore.out"
	fail "the restore ended before it could be killed"
}
kill -9 "$pkpid"
wait "$bgpid" || true
ok "restore --delta killed with SIGKILL while writing $accounts (pid $pkpid)"
assert_true "the killed restore left no global/pg_control (PostgreSQL will not start it)" test ! -e "$WORK/rkill/global/pg_control"
restore_into rkill "a re-run of restore --delta after the kill" --delta
got=$(summary)
note "re-run after the kill: $got"
assert_true "the re-run kept what the killed run had written (unchanged files: ${got%% *})" test "${got%% *}" -gt 0
assert_same_tree rkill "$WORK/state.a" "after the re-run the killed restore's directory equals a plain restore"

# ------------------------------------------------ a corrupt block that --delta needs
# Block 0 of pgbench_branches is changed in rempty, so --delta must fetch it;
# its record in the packs is damaged (every copy of it).
branches=$(psql_c main "select pg_relation_filepath('pgbench_branches')")
id=$(head -c 8192 "$WORK/ra/$branches" | sha256sum | cut -c1-64)
# A record is "PGKR" and the id (binary: perl, since the id may hold any byte, newlines too).
flipped=()
while IFS=: read -r pack off; do
	len=$(od -An -tu4 -j $((off + 44)) -N4 "$pack" | tr -d ' ')
	flip_byte "$pack" $((off + 56 + len / 2))
	flipped+=("$pack:$((off + 56 + len / 2))")
done < <(find "$WORK/repo/main/store/pack" -name '*.pack' -print0 |
	xargs -0 perl -e 'my $rec = "PGKR" . pack("H*", shift);
		for my $f (@ARGV) {
			open(my $h, "<:raw", $f) or die "$f: $!"; local $/; my $d = <$h>;
			for (my $p = index($d, $rec); $p >= 0; $p = index($d, $rec, $p + 1)) { print "$f:$p\n" }
		}' "$id")
note "block $id of $branches: damaged at ${flipped[*]:-nowhere}"
assert_true "the block of $branches is in a pack" test "${#flipped[@]}" -gt 0
printf 'x' | as_user dd of="$WORK/rempty/$branches" bs=1 seek=100 conv=notrunc status=none
assert_rc 8 "restore --delta needing the corrupt block fails as corrupt" \
	pk --stanza=main --pg1-path="$WORK/rempty" restore --tablespace-map=it_ts="$WORK/ts_rempty" --delta
assert_contains "$PK_ALL" "$branches" "the error names the file ($branches)"
assert_contains "$PK_ALL" "$label" "the error names the backup set"
assert_true "the half-restored directory has no global/pg_control (PostgreSQL will not start it)" \
	test ! -e "$WORK/rempty/global/pg_control"
for f in "${flipped[@]}"; do flip_byte "${f%:*}" "${f##*:}"; done
restore_into rempty "with the block repaired, a re-run of restore --delta succeeds" --delta
got=$(summary)
assert_eq "$(echo "$got" | cut -d' ' -f2-5)" "1 1 0 0" "the re-run rewrote the one block of the one damaged file, and nothing else"
assert_same_tree rempty "$WORK/state.a" "after the re-run the directory equals a plain restore"

# ------------------------------------------------ a sync that fails
# Restore makes its files durable with one syncfs per file system at the end
# (restore/restore.c): a syncfs failing with EIO (fault injection by path
# suffix, src/fileio.h) must fail the restore naming the directory, and leave
# no global/pg_control: the restore is not complete.
fsync_eio_restore() {
	as_user env PGKEEP_FAULT_FSYNC_EIO="/rfsync" "$WORK/bin/pgkeep" --config="$WORK/pgkeep.conf" --stanza=main \
		--pg1-path="$WORK/rfsync" --process-max=2 restore --tablespace-map=it_ts="$WORK/ts_rfsync" \
		>"$WORK/tmp/fsync-eio.out" 2>&1
}
as_user mkdir -m 700 "$WORK/rfsync"
assert_rc 5 "restore whose sync of the data directory's file system fails with EIO fails" fsync_eio_restore
awk '{print "#   | " $0}' "$WORK/tmp/fsync-eio.out"
assert_contains "$WORK/tmp/fsync-eio.out" "could not sync the file system of \"$WORK/rfsync\": Input/output error" \
	"the error names the directory and the system error"
assert_true "the failed restore left no global/pg_control and no backup_label" \
	test ! -e "$WORK/rfsync/global/pg_control" -a ! -e "$WORK/rfsync/backup_label"
restore_into rfsync "without the fault, a re-run of restore --delta succeeds" --delta
assert_same_tree rfsync "$WORK/state.a" "after the re-run the directory equals a plain restore"

it_done
