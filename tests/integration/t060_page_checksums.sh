#!/usr/bin/env bash
# t060_page_checksums.sh: a data page whose checksum does not match is
# found while the backup reads it: the backup still completes, warns naming
# the file, and info (text and JSON) reports the page-checksum errors.
. "$(dirname "$0")/lib.sh"

WALSEG=16
it_setup
pg_new main 55460
write_config main
pg_start main
pk_ok "stanza-create" --stanza=main stanza-create
psql_c main "create table damaged as select g as i, repeat('x', 100) as filler from generate_series(1, 20000) g" >/dev/null
relpath=$(psql_c main "select pg_relation_filepath('damaged')")
psql_c main "checkpoint" >/dev/null
pg_stop main

# Flip a byte in the tuple data of page 3 (not its header): only its checksum gives it away.
file=$WORK/main/$relpath
as_user perl -e 'open(my $f, "+<", $ARGV[0]) or die "$ARGV[0]: $!"; seek($f, 3 * 8192 + 6000, 0);
	read($f, my $b, 1); seek($f, 3 * 8192 + 6000, 0); print $f chr(ord($b) ^ 0xff); close($f) or die;' "$file"
pg_start main

pk_ok "backup of a cluster with a damaged page completes" --stanza=main backup --type=full
assert_contains "$PK_ALL" "invalid page checksums" "the backup warns about the page checksum"
assert_contains "$PK_ALL" "$relpath" "the warning names the damaged file"

info_json "$WORK/info.json"
assert_json "$WORK/info.json" '.[0].backup[-1]."checksum-page-errors" == 1' "info JSON counts one page-checksum error"
assert_json "$WORK/info.json" '.[0].backup[-1].error == true' "info JSON flags the backup"
pk_ok "info" --stanza=main info
assert_contains "$PK_OUT" "page checksum errors: 1" "info text reports the page-checksum error"
label=$(jq -r '.[0].backup[-1].label' "$WORK/info.json")
assert_true "the manifest lists the damaged page (block 3) of the file" \
	grep -qE "^f	$relpath	.*	1:3$" "$WORK/repo/main/backup/$label/manifest"

it_done
