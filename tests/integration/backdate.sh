#!/usr/bin/env bash
# backdate.sh: make a backup look DAYS days old, for retention tests (no sleeping).
#
#   bash backdate.sh MANIFEST DAYS
#
# Rewrites the header lines stop-time (to now - DAYS days) and start-time (the
# same duration before it) of a pgkeep manifest (doc/repository-format.md),
# recomputes the end line (SHA-256 of every byte before it) so the manifest
# stays valid, and replaces the file atomically keeping its owner and mode.
# Block lines and everything else are copied unchanged.  Test-only: pgkeep
# itself has no way to fake its clock.
set -euo pipefail

[ $# -eq 2 ] || { echo "usage: $0 MANIFEST DAYS" >&2; exit 2; }
m=$1 days=$2
[[ "$days" =~ ^[0-9]+$ ]] || { echo "backdate: DAYS must be a whole number, got '$days'" >&2; exit 2; }
[ -f "$m" ] || { echo "backdate: no manifest '$m'" >&2; exit 2; }

# header VALUE of KEY (the header ends at the line "files").
header() { awk -F'\t' -v k="$1" '$0 == "files" { exit } $1 == k { print $2; exit }' "$m"; }
start=$(header start-time)
stop=$(header stop-time)
[[ "$start" =~ ^[0-9]+$ && "$stop" =~ ^[0-9]+$ ]] ||
	{ echo "backdate: '$m' has no start-time/stop-time header" >&2; exit 1; }
[ "$(tail -n 1 "$m" | cut -f 1)" = end ] || { echo "backdate: '$m' does not end with an end line" >&2; exit 1; }

# Arithmetic in bash: awk could print large numbers in exponent form.
new_stop=$(($(date +%s) - days * 86400))
new_start=$((new_stop - (stop - start)))

tmp=$(mktemp "$m.backdate.XXXXXX")
trap 'rm -f "$tmp" "$tmp.body"' EXIT
head -n -1 "$m" | awk -F'\t' -v s="$new_start" -v e="$new_stop" '
	h == 0 && $0 == "files" { h = 1 }
	h == 0 && $1 == "start-time" { print "start-time\t" s; next }
	h == 0 && $1 == "stop-time" { print "stop-time\t" e; next }
	{ print }' >"$tmp.body"
hash=$(sha256sum <"$tmp.body" | cut -c 1-64)
{ cat "$tmp.body"; printf 'end\t%s\n' "$hash"; } >"$tmp"
chmod --reference="$m" "$tmp"
chown --reference="$m" "$tmp"
sync "$tmp"
mv -f "$tmp" "$m"
