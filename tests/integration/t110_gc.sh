#!/usr/bin/env bash
# t110_gc.sh: garbage collection with real backups (doc/garbage-collection.md).
#
# Three backups of a pgbench cluster, the first holding a table dropped
# before the others.  `expire --set=FIRST` (which collects its garbage) is
# killed with SIGKILL at 52 points across its run (through the fault
# injection PGKEEP_FAULT_KILL_AT, see src/fileio.h): after each kill verify
# passes and both retained backups restore to exactly the files they
# restored to before; run to the end, it frees the dropped table's packs.
# Then collection beside a running backup: while a backup under pgbench
# load holds the store (stopped with SIGSTOP at that point), expire removes
# a backup but defers collection; the backup completes, verifies and
# restores to the origin's data; the next expire collects.  And a backup
# started while a collection holds the store waits for it, then succeeds.
. "$(dirname "$0")/lib.sh"

WALSEG=16
it_setup
pg_new main 55540
pg_conf main "autovacuum = off"
write_config main
pg_start main
pk_ok "stanza-create" --stanza=main stanza-create
pgbench_init main 2
# A table only the first backup holds: its blocks become garbage when that backup goes.
psql_c main "create table it_gone as select g, md5(g::text) || md5((g + 1)::text) as pad from generate_series(1, 200000) g"

STORE=$WORK/repo/main/store

# packs_bytes: bytes of the pack files in the store.
packs_bytes() { find "$STORE/pack" -name '*.pack' -printf '%s\n' | awk '{s += $1} END {print s + 0}'; }

# tree_hash DIR: one hash over the relative paths, modes and contents of every
# file and the targets of links under DIR.
tree_hash() {
	(cd "$1" && find . \( -type f -o -type l \) -printf '%p %m %l\n' | LC_ALL=C sort &&
		find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-64
}

# restore_hash LABEL DIR: restore backup LABEL into a fresh DIR; print its tree hash.
restore_hash() {
	rm -rf "$2"
	as_user mkdir -m 700 "$2"
	pk --stanza=main --pg1-path="$2" restore --set="$1" --type=immediate >/dev/null || {
		pk_dump
		fail "restore of backup $1 into $2 failed (exit $PK_RC)"
	}
	tree_hash "$2"
}

pk_ok "full backup 1" --stanza=main backup --type=full
psql_c main "drop table it_gone"
pgbench_load main 5
pgbench_wait
pk_ok "full backup 2" --stanza=main backup --type=full
pgbench_load main 5
pgbench_wait
pk_ok "incr backup 3" --stanza=main backup --type=incr
info_json "$WORK/info.json"
mapfile -t labels < <(jq -r '.[0].backup[].label' "$WORK/info.json")
assert_eq "${#labels[@]}" 3 "three backups"
first=${labels[0]}
kept=("${labels[1]}" "${labels[2]}")
declare -A ref=()
for l in "${kept[@]}"; do
	ref[$l]=$(restore_hash "$l" "$WORK/ref")
	note "backup $l restores to tree ${ref[$l]}"
done

# -------------------------------------------------- expire killed at 52 points
as_user cp -a "$WORK/repo" "$WORK/repo.pristine"
before=$(packs_bytes)

# expire_at K: from the pristine repository, run expire --set=FIRST killed
# just before its K-th file-changing call; print its exit status.
expire_at() {
	rm -rf "$WORK/repo"
	as_user cp -a "$WORK/repo.pristine" "$WORK/repo"
	local rc=0
	as_user env PGKEEP_FAULT_KILL_AT="$1" "$WORK/bin/pgkeep" --config="$WORK/pgkeep.conf" --stanza=main \
		expire --set="$first" >"$WORK/tmp/expire.out" 2>&1 || rc=$?
	echo "$rc"
}

# How many file-changing calls a whole run makes: the smallest K it survives, minus one.
hi=1
while [ "$(expire_at "$hi")" = 137 ]; do hi=$((hi * 2)); done
lo=$((hi / 2))
while [ $((hi - lo)) -gt 1 ]; do
	mid=$(((lo + hi) / 2))
	if [ "$(expire_at "$mid")" = 137 ]; then lo=$mid; else hi=$mid; fi
done
total=$lo
note "expire --set makes $total file-changing calls"
assert_true "expire --set makes enough calls to be killed at 52 points ($total)" test "$total" -ge 52

# 30 points evenly across the run, the first 10 and the last 12 calls.
points=()
for ((i = 1; i <= 10; i++)); do points+=("$i"); done
for ((i = 0; i < 30; i++)); do points+=($((11 + i * (total - 23) / 30))); done
for ((i = total - 11; i <= total; i++)); do points+=("$i"); done
kills=0 n=0
for k in "${points[@]}"; do
	rc=$(expire_at "$k")
	n=$((n + 1))
	[ "$rc" = 137 ] || { cat "$WORK/tmp/expire.out" >&2; fail "expire with a kill at call $k exited $rc, not by SIGKILL"; }
	kills=$((kills + 1))
	pk --stanza=main verify >/dev/null || { pk_dump; fail "verify after a kill at call $k of $total: exit $PK_RC"; }
	for l in "${kept[@]}"; do
		h=$(restore_hash "$l" "$WORK/rchk")
		[ "$h" = "${ref[$l]}" ] || fail "after a kill at call $k, backup $l restores to other files ($h)"
	done
	# Every tenth time, the next expire finishes what the killed one began.
	if [ $((n % 10)) = 0 ]; then
		if [ -e "$WORK/repo/main/backup/$first/manifest" ]; then
			pk --stanza=main expire --set="$first" >/dev/null
		else
			pk --stanza=main expire >/dev/null
		fi
		pk --stanza=main verify >/dev/null || { pk_dump; fail "verify after an expire that followed a kill at call $k"; }
	fi
done
ok "expire killed at $kills points of $total: verify passed and both retained backups restored identically each time"

expire_at $((total + 1)) >/dev/null
assert_true "expire --set removed backup $first" test ! -e "$WORK/repo/main/backup/$first/manifest"
after=$(packs_bytes)
note "pack bytes before $before, after $after"
assert_true "collection freed the dropped table's blocks ($before -> $after bytes)" \
	test "$((after * 10))" -lt "$((before * 9))"
pk_ok "verify after the expire" --stanza=main verify
for l in "${kept[@]}"; do
	assert_eq "$(restore_hash "$l" "$WORK/rchk")" "${ref[$l]}" "backup $l still restores to the same files"
done

# ------------------------------------------- collection beside a running backup
pgbench_init main 10
pgbench_load main 30
# setpriv execs pgkeep in place (runuser would stay as a parent that stops
# itself when its child is stopped), so $bg is pgkeep's own pid.
drop=()
[ "$(id -u)" -ne 0 ] || drop=(setpriv --reuid=postgres --regid=postgres --init-groups)
(cd "$WORK" && exec "${drop[@]}" "$WORK/bin/pgkeep" --config="$WORK/pgkeep.conf" --stanza=main --process-max=1 \
	backup --type=full --no-expire-auto) >"$WORK/tmp/bg-backup.out" 2>&1 &
bg=$!
IT_BG_PIDS+=("$bg")
# Stop the backup at an instant it holds the store (its shared lease on gc.lock).
held=0
for ((i = 0; i < 600; i++)); do
	kill -STOP "$bg"
	if ! flock -n -x "$STORE/gc.lock" true; then held=1; break; fi
	kill -CONT "$bg"
	sleep 0.05
done
assert_eq "$held" 1 "the running backup holds the store's lease"
expired=${kept[0]}
bytes_held=$(packs_bytes)
pk_ok "expire --set beside the stopped backup" --stanza=main expire --set="$expired"
assert_match "$PK_ALL" "garbage collection deferred" "collection is deferred while the backup holds the store"
assert_true "the backup was removed all the same" test ! -e "$WORK/repo/main/backup/$expired/manifest"
assert_eq "$(packs_bytes)" "$bytes_held" "no pack changed while the backup held the store"
kill -CONT "$bg"
rc=0
wait "$bg" || rc=$?
cat "$WORK/tmp/bg-backup.out"
assert_eq "$rc" 0 "the backup beside the expire succeeded"
pgbench_wait
fp=$(data_fingerprint main)
seg=$(pg_switch_wal main)
pg_wait_archived main "$seg"
pk_ok "verify after the backup beside the expire" --stanza=main verify
pk_restore rgc 55541
pg_start rgc
pg_wait_promoted rgc
assert_eq "$(data_fingerprint rgc)" "$fp" "the backup taken beside expire restores to the origin's data"
pg_stop rgc
pk_ok "expire after the backup" --stanza=main expire
assert_not_contains "$PK_ALL" "deferred" "nothing holds the store now"
assert_match "$PK_ALL" "collected block store" "the next expire collects the deferred garbage"
pk_ok "verify after collecting" --stanza=main verify

# ------------------------------------------- a backup waits for a collection
# A collection holds gc.lock exclusively; flock(1) stands in for one here.
flock -x "$STORE/gc.lock" sleep 4 &
holder=$!
IT_BG_PIDS+=("$holder")
sleep 0.5
start=$(date +%s)
pk_ok "incr backup while a collection holds the store" --stanza=main backup --type=incr
end=$(date +%s)
wait "$holder"
assert_match "$PK_ALL" "waiting for the garbage collection of block store" "the backup says it waits"
assert_true "the backup waited for the collection ($((end - start)) s)" test $((end - start)) -ge 2
pk_ok "verify at the end" --stanza=main verify

it_done
