# bench/lib.sh: helpers for bench/bench.sh (sourced, not run): messages, running commands
# as the postgres user, timing one command (wall clock, peak RSS), medians, sizes.
# shellcheck shell=bash disable=SC2034
# Expects: WORK, AS_PG (array, empty or "runuser -u postgres --"), DROP_CACHES (0|1).

# --- messages ---------------------------------------------------------------------------------
say() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
warn() { printf '[bench %s] WARNING: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# die MESSAGE [LOGFILE]: print the message and the tail of the log, exit 1.
die() {
	printf '\n[bench] ERROR: %s\n' "$1" >&2
	if [ -n "${2:-}" ] && [ -f "$2" ]; then
		printf -- '--- last lines of %s ---\n' "$2" >&2
		tail -n 60 "$2" >&2
		printf -- '--- end ---\n' >&2
	fi
	exit 1
}

# must LOG CMD...: run CMD (output to LOG), die with the output if it fails.
must() {
	local log=$1 rc=0; shift
	"$@" >"$log" 2>&1 || rc=$?
	[ "$rc" = 0 ] || die "command failed (exit $rc): $*" "$log"
}

# pg_run CMD...: run CMD as the postgres user (or as ourselves when not root).
pg_run() { "${AS_PG[@]}" "$@"; }

# --- page cache -------------------------------------------------------------------------------
drop_caches() {
	[ "$DROP_CACHES" = 1 ] || return 0
	sync
	echo 3 >/proc/sys/vm/drop_caches || die "could not write /proc/sys/vm/drop_caches (use --no-drop-caches)"
}

# --- timing -----------------------------------------------------------------------------------
# tree_rss_sampler ROOTPID OUTFILE: every 0.2 s, sum the RSS of the descendants of ROOTPID whose
# command name is pgbackrest or pgkeep; write the maximum sum (KiB) to OUTFILE when ROOTPID ends.
tree_rss_sampler() {
	local root=$1 out=$2 max=0 cur
	trap - ERR
	set +e
	while kill -0 "$root" 2>/dev/null; do
		cur=$(ps -e -o pid=,ppid=,rss=,comm= 2>/dev/null | awk -v root="$root" '
			{ pp[$1] = $2; rss[$1] = $3; comm[$1] = $4 }
			END {
				s = 0
				for (p in pp) {
					if (comm[p] != "pgbackrest" && comm[p] != "pgkeep") continue
					q = p; n = 0
					while ((q in pp) && q != root && q > 1 && n++ < 64) q = pp[q]
					if (q == root) s += rss[p]
				}
				print s
			}')
		[ -n "$cur" ] && [ "$cur" -gt "$max" ] && max=$cur
		sleep 0.2
	done
	echo "$max" >"$out"
}

# timed DIR LOG CMD...: drop the page cache, then run CMD as postgres in DIR under
# /usr/bin/time -v with its output in LOG. Sets T_WALL (seconds), T_RSS (KiB, largest single
# process of the tree as reported by time -v), T_TREE (KiB, sampled sum of the tool's processes)
# and T_RC (exit code). Never fails itself.
timed() {
	local dir=$1 log=$2; shift 2
	local tf="$WORK/tmp/time.$$.$RANDOM" sf="$WORK/tmp/tree.$$.$RANDOM" pid spid t0 t1
	drop_caches
	t0=$(date +%s.%N)
	( cd "$dir" && exec "${AS_PG[@]}" /usr/bin/time -v -o "$tf" "$@" ) >"$log" 2>&1 &
	pid=$!
	tree_rss_sampler "$pid" "$sf" &
	spid=$!
	T_RC=0
	wait "$pid" || T_RC=$?
	t1=$(date +%s.%N)
	wait "$spid" || true
	T_WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
	T_RSS=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$tf" 2>/dev/null || true)
	T_RSS=${T_RSS:-0}
	T_TREE=$(cat "$sf" 2>/dev/null || echo 0)
	if [ -f "$tf" ]; then
		{ echo "--- /usr/bin/time -v ---"; cat "$tf"; } >>"$log"
	fi
	rm -f "$tf" "$sf"
}

# --- numbers ----------------------------------------------------------------------------------
# median NUMBERS...: median (mean of the two middle values for an even count); "n/a" if none.
median() {
	[ $# -gt 0 ] || { echo n/a; return; }
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
		if (NR % 2) printf "%.2f", v[(NR + 1) / 2]; else printf "%.2f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# maxof NUMBERS...: the largest; "n/a" if none.
maxof() {
	[ $# -gt 0 ] || { echo n/a; return; }
	printf '%s\n' "$@" | sort -g | tail -n 1
}

# kib_to_mib KIB|n/a
kib_to_mib() {
	case $1 in n/a | '') echo n/a ;; *) awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }' ;; esac
}

# bytes_h BYTES|n/a: "123.4 MiB (129394857 B)"
bytes_h() {
	case $1 in n/a | '') echo n/a ;; *) awk -v b="$1" 'BEGIN { printf "%.1f MiB (%d B)", b / 1048576, b }' ;; esac
}

# ratio A B: A/B with two decimals, n/a if either is missing or B is 0.
ratio() {
	case "$1$2" in *n/a*) echo n/a; return ;; esac
	awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "n/a"; else printf "%.2f", a / b }'
}

# du_b DIR: apparent size in bytes of DIR (0 if missing).
du_b() {
	# files may come and go under a running cluster: du may complain, its total still counts
	if [ -e "$1" ]; then { du -sb "$1" 2>/dev/null || true; } | awk '{ print $1 }'; else echo 0; fi
}

# count_files DIR: regular files under DIR, not counting DIR/pg_wal.
count_files() {
	{ find "$1" -path "$1/pg_wal" -prune -o -type f -print 2>/dev/null || true; } | wc -l
}

# --- TLS servers --------------------------------------------------------------------------------
# server_sampler OUT STOP ROOTPID...: while the file STOP exists, every 0.1 s, read VmHWM and VmRSS
# (/proc/PID/status) of each ROOTPID and of all its descendants (the connection processes a
# server forks); at the end write "LARGEST SUM" to OUT: the largest VmHWM of any one of them
# (KiB) and the largest sum of their VmRSS at one sample (KiB).
server_sampler() {
	local out=$1 stop=$2 big=0 sum=0 cur b s
	shift 2
	local roots="$*"
	trap - ERR
	set +e
	while :; do
		cur=$(ps -e -o pid=,ppid= 2>/dev/null | awk -v roots="$roots" '
			{ pp[$1] = $2 }
			END {
				n = split(roots, r, " ")
				for (i = 1; i <= n; i++) isroot[r[i]] = 1
				big = 0; sum = 0
				for (p in pp) {
					q = p; k = 0
					while (!(q in isroot) && (q in pp) && q > 1 && k++ < 64) q = pp[q]
					if (!(q in isroot)) continue
					f = "/proc/" p "/status"; rss = 0; hwm = 0
					while ((getline line < f) > 0) {
						if (line ~ /^VmRSS:/) { split(line, a, " "); rss = a[2] }
						else if (line ~ /^VmHWM:/) { split(line, a, " "); hwm = a[2] }
					}
					close(f)
					sum += rss
					if (hwm > big) big = hwm
				}
				print big, sum
			}')
		read -r b s <<<"$cur"
		[ -n "$b" ] && [ "$b" -gt "$big" ] && big=$b
		[ -n "$s" ] && [ "$s" -gt "$sum" ] && sum=$s
		[ -e "$stop" ] || break
		sleep 0.1
	done
	echo "$big $sum" >"$out"
}

# wait_port PORT PID: wait (up to 10 s) until something listens on TCP PORT of 127.0.0.1;
# fails at once if PID is gone.
wait_port() {
	local i
	for ((i = 0; i < 100; i++)); do
		ss -ltnH "sport = :$1" 2>/dev/null | grep -q . && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}
