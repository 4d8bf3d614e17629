# SPDX-License-Identifier: MIT
# Sourced by the lab tests (tests/lab/test_*.sh): their check counters, the check helpers, and the summary
# line that ends every test ("N passed, N failed", which scripts/check.sh reports).
passed=0 failed=0

# ok NAME: a check passed.
ok() { passed=$((passed + 1)); echo "ok   $1"; }

# ko NAME [LOG]: a check failed; the last lines of LOG are shown when it is given.
ko() {
	failed=$((failed + 1))
	echo "FAIL $1"
	if [ -n "${2:-}" ] && [ -f "$2" ]; then tail -n 5 "$2" | sed 's/^/     /'; fi
	return 0
}

# check NAME CMD...: passes when CMD succeeds; its output is shown when it fails, and kept in check_output
# until the next check. CMD runs in this shell; its output goes through a file (not a pipe, which a daemon it
# starts could hold open).
check_output=
check() {
	local name=$1 out rc=0
	shift
	out=$(mktemp)
	"$@" >"$out" 2>&1 || rc=$?
	check_output=$(cat "$out")
	rm -f "$out"
	if [ "$rc" -eq 0 ]; then ok "$name"; else ko "$name"; printf '%s\n' "$check_output" | tail -n 20 | sed 's/^/     | /'; fi
}

# check_not NAME CMD...: passes when CMD fails; its output kept in check_output.
check_not() {
	local name=$1 out rc=0
	shift
	out=$(mktemp)
	"$@" >"$out" 2>&1 || rc=$?
	check_output=$(cat "$out")
	rm -f "$out"
	if [ "$rc" -eq 0 ]; then ko "$name"; else ok "$name"; fi
}

# finish [NOTE]: prints the summary line; returns 0 when no check failed (the script's exit status).
finish() {
	echo "$passed passed, $failed failed${1:+ $1}"
	[ "$failed" -eq 0 ]
}
