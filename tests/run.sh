#!/usr/bin/env bash
# tests/run.sh: install the dependencies, build pgkeep in the source tree and
# run the whole test suite (`make check`: unit tests plain and under
# ASan+UBSan, then the integration tests against PostgreSQL 15), then the
# protocol fuzz target for 30 s (`make fuzz`, FUZZ_SECONDS).
#
# Prints the logs of failed tests, and last a line "N passed, N failed"
# (", N skipped" when some were skipped).  Exits non-zero when anything
# failed.  Works from any directory.  JOBS=N sets make's parallelism (2).
set -uo pipefail

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." || exit 1
JOBS=${JOBS:-2}
START=$SECONDS

step() {
	echo "==> $*"
	"$@"
}

# summary PASSED FAILED SKIPPED: the last line, and the exit status.
summary() {
	local line="$1 passed, $2 failed"
	[ "$3" -gt 0 ] && line+=", $3 skipped"
	echo "==> done in $(((SECONDS - START) / 60)) min $(((SECONDS - START) % 60)) s"
	echo "$line"
	[ "$2" -eq 0 ]
	exit $?
}

if ! step bash tests/install-deps.sh; then
	echo "FAIL: tests/install-deps.sh"
	summary 0 1 0
fi

if ! { step autoreconf -fi && step ./configure && step make -j"$JOBS"; }; then
	echo "FAIL: the build (autoreconf, configure or make) failed"
	[ -f config.log ] && { echo "---- tail of config.log"; tail -n 40 config.log; }
	summary 0 1 0
fi

# Only results written by this run count (a stamp older than every new .trs).
STAMP=$(mktemp)
trap 'rm -f "$STAMP"' EXIT
check_rc=0
step make -j"$JOBS" check || check_rc=$?

passed=0 failed=0 skipped=0
failed_logs=()
while IFS= read -r trs; do
	result=$(sed -n 's/^:test-result: *\([A-Z]*\).*/\1/p' "$trs" | head -n 1)
	case $result in
	PASS | XFAIL) passed=$((passed + 1)) ;;
	SKIP) skipped=$((skipped + 1)) ;;
	*)
		failed=$((failed + 1))
		failed_logs+=("${trs%.trs}.log")
		;;
	esac
done < <(find . -name '*.trs' -newer "$STAMP" -type f | sort)

# The protocol fuzz target (libFuzzer, tests/fuzz/) for a fixed time; it needs clang.
if command -v clang >/dev/null; then
	if step make fuzz FUZZ_SECONDS="${FUZZ_SECONDS:-30}" >fuzz.log 2>&1; then
		passed=$((passed + 1))
		tail -n 2 fuzz.log
	else
		failed=$((failed + 1))
		failed_logs+=("./fuzz.log")
	fi
else
	echo "SKIP: make fuzz (no clang)"
	skipped=$((skipped + 1))
fi

for log in "${failed_logs[@]}"; do
	echo
	echo "==================== FAILED: ${log#./} (last 200 lines)"
	if [ -f "$log" ]; then tail -n 200 "$log"; else echo "(no log)"; fi
done
if [ "$failed" -gt 0 ] && [ -f test-suite.log ]; then
	echo
	echo "==================== tail of test-suite.log"
	tail -n 40 test-suite.log
fi

if [ "$check_rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
	echo "FAIL: make check exited $check_rc without a failed test (a test program did not build?)"
	failed=1
fi
summary "$passed" "$failed" "$skipped"
