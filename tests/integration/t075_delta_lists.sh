#!/usr/bin/env bash
# t075_delta_lists.sh: block lists stored as deltas (doc/repository-format.md, "Block lists").
#
# A full backup of a frozen pgbench database, then two incrs, each after a
# bounded pgbench run that changes a few pages in most 256-block groups of
# pgbench_accounts and its index: each incr logs new block lists, most of them
# deltas, and verify reads delta lists back in it (and none in the full).
# The second incr's lists of groups changed twice had a delta as prior list,
# so its deltas are against the full's lists again (no chains).  Then the
# full is expired with garbage collection: the collection removes the full's
# blocks that the incrs replaced (at least one per delta: a base keeps its
# deltas' replaced blocks no longer alive), yet the full's lists that the
# deltas use as bases stay, so verify passes, and
# both incrs restore: the first to its consistency point with valid page
# checksums and all accounts, the second to the end of the archive with
# exactly the origin's data.
. "$(dirname "$0")/lib.sh"

WALSEG=16
it_setup
pg_new main 55570
pg_conf main "autovacuum = off"
write_config main
pg_start main
pk_ok "stanza-create" --stanza=main stanza-create
pgbench_init main 10
# Hint bits and visibility set now, so that the incrs see only pgbench's changes.
psql_c main "vacuum (freeze, analyze)"
psql_c main "checkpoint"

# pgbench_tx N: N simple-update transactions (2 clients), flushed by a checkpoint.
pgbench_tx() {
	as_user "$PG_BINDIR/pgbench" -n -N -c 2 -j 2 -t "$(($1 / 2))" -h "$WORK/sock" -p "${PG_PORT[main]}" \
		-U postgres postgres >"$WORK/pgbench-tx.log" 2>&1 ||
		{ tail -n 20 "$WORK/pgbench-tx.log" >&2; fail "pgbench -t failed"; }
	psql_c main "checkpoint"
	note "pgbench: $1 transactions"
}

# list_counts: "NEW DELTAS" from the last backup's log line "... N new block lists, M of them deltas".
list_counts() { sed -nE 's/.* ([0-9]+) new block lists, ([0-9]+) of them deltas.*/\1 \2/p' "$PK_ALL" | tail -n 1; }

# verify_counts LABEL: "LISTS DELTAS" of backup LABEL in the last verify's output.
verify_counts() {
	sed -nE "s/^ok: backup $1 \([0-9]+ files, [0-9]+ blocks, ([0-9]+) block lists, ([0-9]+) of them deltas\)\$/\1 \2/p" "$PK_OUT"
}

pk_ok "full backup" --stanza=main backup --type=full
full=$(grep -E '^[0-9]{8}-[0-9]{6}F$' "$PK_OUT" | tail -n 1)

pgbench_tx 600
pk_ok "first incr" --stanza=main backup --type=incr
incr1=$(grep -E '^[0-9]{8}-[0-9]{6}F_[0-9]{8}-[0-9]{6}I$' "$PK_OUT" | tail -n 1)
c=$(list_counts)
note "incr $incr1: new lists / deltas: $c"
new1=${c% *} deltas1=${c#* }
assert_true "the first incr stored delta lists ($deltas1 of $new1 new lists)" test "${deltas1:-0}" -gt 0
assert_true "most of its new lists are deltas ($deltas1 of $new1)" test "$((deltas1 * 2))" -gt "${new1:-0}"

pgbench_tx 600
pk_ok "second incr (of the first)" --stanza=main backup --type=incr
incr2=$(grep -E '^[0-9]{8}-[0-9]{6}F_[0-9]{8}-[0-9]{6}I$' "$PK_OUT" | tail -n 1)
assert_contains "$PK_ALL" "over from backup $incr1" "the second incr's prior is the first"
c=$(list_counts)
note "incr $incr2: new lists / deltas: $c"
new2=${c% *} deltas2=${c#* }
assert_true "the second incr stored delta lists ($deltas2 of $new2 new lists)" test "${deltas2:-0}" -gt 0

fp=$(data_fingerprint main)
seg=$(pg_switch_wal main)
pg_wait_archived main "$seg"
note "origin: $fp"

# verify reads the lists back: the incrs name deltas, the full none.
pk_ok "verify" --stanza=main verify
v=$(verify_counts "$full")
assert_eq "${v#* }" 0 "verify: the full backup names no delta list ($v)"
v1=$(verify_counts "$incr1")
v2=$(verify_counts "$incr2")
note "verify lists / deltas: full $v, incr1 $v1, incr2 $v2"
assert_true "verify: the first incr names delta lists ($v1)" test "${v1#* }" -gt 0
assert_true "verify: the second incr names delta lists ($v2)" test "${v2#* }" -gt 0

# ---------------------------------------------- expire the full: bases stay
pk_ok "expire --set=$full" --stanza=main expire --set="$full"
assert_contains "$PK_ALL" "expire: removed backup $full" "expire removed the full"
removed=$(sed -nE 's/.*collected block store .*: ([0-9]+) blocks removed.*/\1/p' "$PK_ALL")
# Each delta replaces at least one block of its base, which no retained backup needs any more: the
# base list stays, but not the blocks it lists that its deltas replace.
assert_true "the collection removed the full's replaced blocks (${removed:-none}, at least the $deltas1 deltas of incr 1)" \
	test "${removed:-0}" -ge "$deltas1"
pk_ok "verify after expiring the full" --stanza=main verify
assert_contains "$PK_OUT" "ok: backup $incr1 (" "the first incr verifies"
assert_contains "$PK_OUT" "ok: backup $incr2 (" "the second incr verifies"
assert_eq "$(verify_counts "$incr2")" "$v2" "the second incr still names the same lists and deltas"

pk_restore r1 55571 --set="$incr1" --type=immediate --target-action=promote
pg_start r1
pg_wait_promoted r1
assert_eq "$(psql_c r1 "select count(*) from pgbench_accounts")" 1000000 "incr 1 restored: 1000000 accounts"
pg_stop r1
pg_checksums_ok r1

pk_restore r2 55572 --set="$incr2"
pg_start r2
pg_wait_promoted r2
assert_eq "$(data_fingerprint r2)" "$fp" "incr 2 (deltas of an incr) restored to the end of the archive equals the origin"
pg_stop r2
pg_checksums_ok r2

it_done
