#!/usr/bin/env bash
# t100_expire.sh: expire, retention, and expire-auto.
#
# Six backups, backdated with backdate.sh to 20, 16, 15, 13, 8 and 1 days
# ago (full, incr, full, diff, full, incr).  Without repo1-retention-full,
# expire warns and removes nothing.  info (text and JSON) marks exactly the
# backups the next expire removes, for time and count retention.  Time
# retention 30 (no full that old) removes nothing.  A bad --set exits 17 and
# changes nothing.  --dry-run lists what the real run then removes and leaves
# the repository tree identical.  Time retention 14 keeps exactly the anchor
# (the full of 15 days) and everything after it, and the WAL from the
# anchor's start on: archive-get of that segment works, of an older one is
# "not found", and a .history file stays.  Count retention 1 keeps exactly
# the newest full and what follows.  --set removes exactly one backup (the
# full of the last incr), and that incr still restores to the origin's data.
# backup runs expire afterwards (expire-auto) unless --no-expire-auto or
# expire-auto=n; a failing expire leaves the backup successful with a
# warning.  verify passes on the repository after all of it.
. "$(dirname "$0")/lib.sh"

WALSEG=16
LOAD_SECONDS=${LOAD_SECONDS:-3}
it_setup
pg_new main 55500
write_config main
pg_start main
pk_ok "stanza-create" --stanza=main stanza-create
pgbench_init main 5
cp "$PGKEEP_SRCDIR/tests/integration/backdate.sh" "$WORK/bin/backdate.sh"

# A history file of a timeline no backup is on (PostgreSQL probes timelines
# upward from its own and stops at the first missing file, so 5 is never read).
as_user mkdir -p "$WORK/hist" "$WORK/get"
printf '1\t0/3000000\tno recovery target specified\n' >"$WORK/hist/00000005.history"
chown "$IT_USER": "$WORK/hist/00000005.history"
pk_ok "archive-push of 00000005.history" --stanza=main archive-push "$WORK/hist/00000005.history"

# backup TYPE DAYS: take a backup (no expire-auto) after a little load, make it
# DAYS days old, and print nothing; the label is in LAST.
LAST=
backup() {
	pgbench_load main "$LOAD_SECONDS"
	pgbench_wait
	pk_ok "$1 backup (to be $2 days old)" --stanza=main backup --type="$1" --no-expire-auto
	LAST=$(new_label)
	assert_true "backdate $LAST to $2 days ago" as_user bash "$WORK/bin/backdate.sh" "$WORK/repo/main/backup/$LAST/manifest" "$2"
}

# new_label: the label the last backup printed (expire-auto may log after it).
new_label() { grep -E '^[0-9]{8}-[0-9]{6}F(_[0-9]{8}-[0-9]{6}[DI])?$' "$PK_OUT" | tail -n 1; }

# labels: the backups in the repository, one line, oldest first.
labels() { (cd "$WORK/repo/main/backup" && find . -mindepth 2 -maxdepth 2 -name manifest | cut -d/ -f2 | sort | tr '\n' ' '); }

# tree: every path of the repository with size and mtime (directories: path), lock files aside.
tree() {
	(cd "$WORK/repo" && find . -name '*.lock' -prune -o \( -type d -printf 'd %p\n' \) -o -printf 'f %p %s %T@\n' | sort)
}

# removed FILE: the labels an expire run reported removing ("removed" or "would remove"), sorted, one line.
removed() { sed -nE 's/.*expire: (removed|would remove) backup ([0-9A-Z_-]+).*/\2/p' "$1" | sort | tr '\n' ' '; }

# json_marked FILE: the labels marked "expire-next" in an info JSON document, sorted, one line.
json_marked() { jq -r '.[0].backup[] | select(."expire-next") | .label' "$1" | sort | tr '\n' ' '; }

# wal_start LABEL: the first WAL segment of backup LABEL (info JSON).
wal_start() { jq -r ".[0].backup[] | select(.label == \"$1\") | .archive.start" "$WORK/info-all.json"; }

TIME14=(--repo1-retention-full=14 --repo1-retention-full-type=time)

backup full 20; F1=$LAST
backup incr 16; I1=$LAST
backup full 15; F2=$LAST
backup diff 13; D1=$LAST
backup full 8; F3=$LAST
backup incr 1; I2=$LAST
note "backups: F1 $F1, I1 $I1, F2 $F2, D1 $D1, F3 $F3, I2 $I2"
assert_eq "$(labels)" "$F1 $I1 $F2 $D1 $F3 $I2 " "six backups in the repository"
info_json "$WORK/info-all.json"
assert_json "$WORK/info-all.json" \
	"[.[0].backup[].timestamp.stop | (now - .) / 86400 | floor] == [20, 16, 15, 13, 8, 1]" \
	"info shows the backdated stop times: 20, 16, 15, 13, 8, 1 days ago"
pk_ok "verify accepts the backdated manifests" --stanza=main verify

# ------------------------------------------------------------- no retention
before=$(tree)
pk_ok "expire without repo1-retention-full" --stanza=main expire
assert_contains "$PK_ALL" "repo1-retention-full is not set" "warns that repo1-retention-full is not set"
assert_eq "$(tree)" "$before" "expire without retention changes nothing"
assert_json "$WORK/info-all.json" '[.[0].backup[]."expire-next"] | all(. == false)' \
	"info without retention marks no backup"

# -------------------------------------------------------------------- info
pk_ok "info text with time retention 14" --stanza=main "${TIME14[@]}" info
assert_eq "$(grep -c '(expires at next expire)' "$PK_OUT")" 2 "info text marks two backups"
assert_contains "$PK_OUT" "full backup: $F1 (expires at next expire)" "info text marks $F1"
assert_contains "$PK_OUT" "incr backup: $I1 (expires at next expire)" "info text marks $I1"
pk --stanza=main "${TIME14[@]}" info --output=json
cp "$PK_OUT" "$WORK/info-time14.json"
assert_eq "$(json_marked "$WORK/info-time14.json")" "$(echo "$F1 $I1" | tr ' ' '\n' | sort | tr '\n' ' ')" \
	"info JSON marks exactly $F1 and $I1 for time retention 14"
pk --stanza=main --repo1-retention-full=1 info --output=json
cp "$PK_OUT" "$WORK/info-count1.json"
assert_eq "$(json_marked "$WORK/info-count1.json")" "$(echo "$F1 $I1 $F2 $D1" | tr ' ' '\n' | sort | tr '\n' ' ')" \
	"info JSON marks exactly the backups before the newest full for count retention 1"
assert_eq "$(labels)" "$F1 $I1 $F2 $D1 $F3 $I2 " "info removed nothing"

# -------------------------------------------------- no full old enough, bad --set
pk_ok "expire with time retention 30" --stanza=main --repo1-retention-full=30 --repo1-retention-full-type=time expire
assert_not_contains "$PK_ALL" "removed backup" "time retention 30: no full is that old, no backup goes"
assert_eq "$(tree)" "$before" "time retention 30 changes nothing"
assert_rc 17 "expire --set of a backup that does not exist" pk --stanza=main "${TIME14[@]}" expire --set=20200101-000000F
assert_contains "$PK_ERR" "backup set 20200101-000000F does not exist" "the error names the missing backup"
assert_rc 17 "expire --set of a path" pk --stanza=main expire --set=../../main
assert_eq "$(tree)" "$before" "a bad --set changes nothing"

# ----------------------------------------------------------------- dry run
pk_ok "expire --dry-run with time retention 14" --stanza=main "${TIME14[@]}" expire --dry-run
cp "$PK_ALL" "$WORK/dry.out"
assert_match "$WORK/dry.out" "would remove [0-9]+ WAL files from" "the dry run names the WAL it would remove"
assert_eq "$(tree)" "$before" "--dry-run leaves the repository tree identical"

# ------------------------------------------------------ time retention 14
pk_ok "expire with time retention 14" --stanza=main "${TIME14[@]}" expire
cp "$PK_ALL" "$WORK/time14.out"
assert_eq "$(removed "$WORK/time14.out")" "$(removed "$WORK/dry.out")" "the dry run listed exactly what expire removed"
assert_eq "$(labels)" "$F2 $D1 $F3 $I2 " "time retention 14 keeps the anchor $F2 (15 days) and everything after it"
assert_match "$WORK/time14.out" "expire: removed [0-9]+ WAL files from [0-9A-F]{24} to [0-9A-F]{24}" "expire reports the WAL range removed"
assert_match "$WORK/time14.out" "expire: removed 2 of 6 backups" "expire prints a summary"
keep=$(wal_start "$F2")
old=$(wal_start "$F1")
note "anchor $F2 starts at $keep; $F1 started at $old"
info_json "$WORK/info-after14.json"
assert_json "$WORK/info-after14.json" ".[0].archive[0].min == \"$keep\"" \
	"the oldest WAL segment left is the anchor's start segment $keep"
pk_ok "archive-get of the anchor's start segment" --stanza=main archive-get "$keep" "$WORK/get/$keep"
assert_rc 1 "archive-get of $F1's start segment: not found" pk --stanza=main archive-get "$old" "$WORK/get/$old"
assert_true "no WAL file before $keep is left in the repository" \
	test -z "$(find "$WORK/repo/main/wal" -type f ! -path '*/history/*' -printf '%f\n' | awk -v k="$keep" 'substr($0, 1, 24) < k')"
pk_ok "archive-get of 00000005.history" --stanza=main archive-get 00000005.history "$WORK/get/00000005.history"
assert_true "the history file stays" cmp "$WORK/hist/00000005.history" "$WORK/get/00000005.history"
pk_ok "expire with time retention 14 again" --stanza=main "${TIME14[@]}" expire
assert_not_contains "$PK_ALL" "removed backup" "a second expire removes nothing more"

# ------------------------------------------------------- count retention 1
# (with the ASan+UBSan build when there is one)
san=pgkeep
[ -x "$WORK/bin/pgkeep_san" ] && san=pgkeep_san
PK_BIN=$san pk_ok "expire with count retention 1 ($san)" --stanza=main --repo1-retention-full=1 expire
assert_not_contains "$PK_ALL" "Sanitizer" "no sanitizer report from expire"
assert_not_contains "$PK_ALL" "runtime error" "no UBSan report from expire"
assert_eq "$(labels)" "$F3 $I2 " "count retention 1 keeps exactly the newest full $F3 and what follows"
info_json "$WORK/info-count.json"
assert_json "$WORK/info-count.json" ".[0].archive[0].min == \"$(wal_start "$F3")\"" \
	"the WAL now starts at $F3's start segment"

# ------------------------------------------------------------------ --set
pk_ok "expire --set=$F3" --stanza=main expire --set="$F3"
assert_eq "$(labels)" "$I2 " "--set removed exactly $F3"
assert_eq "$(removed "$PK_ALL")" "$F3 " "--set reports exactly $F3"

# An incremental whose full has been expired restores to the origin's data.
fp=$(data_fingerprint main)
seg=$(pg_switch_wal main)
pg_wait_archived main "$seg"
pk_restore rincr 55501 --set="$I2"
pg_start rincr
pg_wait_promoted rincr
assert_eq "$(data_fingerprint rincr)" "$fp" "incr $I2, whose full is expired, restores the origin's data"
pg_stop rincr

# ------------------------------------------------------------- expire-auto
pk_ok "full backup with --no-expire-auto" --stanza=main --repo1-retention-full=1 backup --type=full --no-expire-auto
F4=$(new_label)
assert_not_contains "$PK_ALL" "expire:" "--no-expire-auto: no expire runs"
assert_eq "$(labels)" "$I2 $F4 " "--no-expire-auto: $I2 is still there"
pk_ok "incr backup with expire-auto (default)" --stanza=main --repo1-retention-full=1 backup --type=incr
I3=$(new_label)
assert_contains "$PK_ALL" "expire: removed backup $I2" "expire-auto: the backup ran expire, which removed $I2"
assert_eq "$(labels)" "$F4 $I3 " "expire-auto left $F4 and $I3"
sed 's/^\[global\]$/[global]\nexpire-auto=n/' "$WORK/pgkeep.conf" >"$WORK/pgkeep-noexpire.conf"
chown "$IT_USER": "$WORK/pgkeep-noexpire.conf"
PK_CONFIG=$WORK/pgkeep-noexpire.conf pk_ok "incr backup with expire-auto=n in the file" \
	--stanza=main --repo1-retention-full=1 backup --type=incr
assert_not_contains "$PK_ALL" "expire:" "expire-auto=n: no expire runs"

# A failing expire (here: another expire holds the lock) leaves the backup successful.
as_user flock "$WORK/lock/main-expire.lock" bash -c 'touch "$1.held"; while [ ! -e "$1" ]; do sleep 0.1; done' _ "$WORK/tmp/release" &
holder=$!
IT_BG_PIDS+=("$holder")
for _ in $(seq 100); do [ -e "$WORK/tmp/release.held" ] && break; sleep 0.1; done
pk_ok "incr backup while another expire holds the lock" --stanza=main --repo1-retention-full=1 backup --type=incr
assert_contains "$PK_ALL" "the backup succeeded, but expire failed" "the failing expire is a warning"
assert_contains "$PK_ALL" "another expire of stanza main is running" "the warning says why"
assert_rc 10 "expire itself while another holds the lock" pk --stanza=main expire
touch "$WORK/tmp/release"
wait "$holder"

# ------------------------------------------------------------------ verify
pk_ok "verify after expire" --stanza=main verify

it_done
