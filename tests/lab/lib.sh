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

# capture CMD...: runs CMD in this shell and keeps its output in check_output; returns CMD's status. The
# output goes through a file, not a pipe, which a daemon CMD starts could hold open.
check_output=
capture() {
	local out rc=0
	out=$(mktemp)
	"$@" >"$out" 2>&1 || rc=$?
	check_output=$(cat "$out")
	rm -f "$out"
	return "$rc"
}

# check NAME CMD...: passes when CMD succeeds; its output (check_output) is shown when it fails.
check() {
	local name=$1
	shift
	if capture "$@"; then ok "$name"; else ko "$name"; printf '%s\n' "$check_output" | tail -n 20 | sed 's/^/     | /'; fi
}

# check_not NAME CMD...: passes when CMD fails.
check_not() {
	local name=$1
	shift
	if capture "$@"; then ko "$name"; else ok "$name"; fi
}

# lab_scratch LAB...: a scratch directory $tmp (mode 755: test programs may run as uid 65534) and exit
# and signal traps that kill this script's background jobs still running (jobs -p: not reaped yet, so the
# pids are ours), take the named labs down and remove $tmp.
lab_scratch() {
	tmp=$(mktemp -d)
	chmod 755 "$tmp"
	scratch_labs=("$@")
	trap scratch_cleanup EXIT
	trap 'exit 130' INT TERM
}
scratch_cleanup() {
	local p l
	for p in $(jobs -p); do kill -9 "$p" 2>/dev/null; done
	for l in "${scratch_labs[@]}"; do "$V" lab down --name "$l" >/dev/null 2>&1; done
	rm -rf "$tmp"
}

# finish [NOTE]: prints the summary line; returns 0 when no check failed (the script's exit status).
finish() {
	echo "$passed passed, $failed failed${1:+ $1}"
	[ "$failed" -eq 0 ]
}

# Lab programs that print "LISTENING" once ready and a line "RESULT MODE bytes N sha256 HEX ..." at the end
# (tests/lab/sock_peer.c, the python peers of the socket tests):
# wait_listening FILE: until FILE has the LISTENING line (bounded: 10 s).
wait_listening() {
	for _ in $(seq 1 100); do
		grep -q LISTENING "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}
sha_of() { awk '$1 == "RESULT" { print $6 }' "$1" | tail -n 1; }
bytes_of() { awk '$1 == "RESULT" { print $4 }' "$1" | tail -n 1; }
rate_of() { awk '$1 == "RESULT" { print $10 " MB/s in " $8 " s" }' "$1" | tail -n 1; }

# check_pair NAME BYTES SENDER_FILE SENDER_RC RECEIVER_FILE RECEIVER_RC: a one-way transfer of BYTES passed
# when both sides exited 0 and report BYTES bytes with the same SHA-256.
check_pair() {
	local s r
	s=$(sha_of "$3"); r=$(sha_of "$5")
	if [ "$4" -eq 0 ] && [ "$6" -eq 0 ] && [ -n "$s" ] && [ "$s" = "$r" ] && [ "$(bytes_of "$3")" = "$2" ] &&
		[ "$(bytes_of "$5")" = "$2" ]; then
		ok "$1: $2 bytes, SHA-256 equal ($(rate_of "$5"))"
	else
		ko "$1 (sender rc $4, receiver rc $6, sha $s vs $r)"
		sed 's/^/    sender: /' "$3" | tail -n 12; sed 's/^/    receiver: /' "$5" | tail -n 12
	fi
}
