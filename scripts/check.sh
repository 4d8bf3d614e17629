#!/usr/bin/env bash
# `make check`: unit tests, the same under ASan+UBSan, every fuzz target for a bounded time, then the lab
# tests (root: network namespaces, real AF_XDP). Ends with "N passed, N failed" over all suites.
set -uo pipefail
build=${1:-build}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
jobs=$(nproc)
fuzz_seconds=${VD_FUZZ_SECONDS:-30}
passed=0 failed=0 failures=()

record() { # name rc
	if [ "$2" -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); failures+=("$1"); fi
}
section() { printf '\n== %s\n' "$*"; }

section "unit tests ($build)"
ctest --test-dir "$build" -L unit --output-on-failure -j "$jobs"
record "unit" $?

section "unit tests under ASan+UBSan ($build-asan)"
if cmake -S . -B "$build-asan" -DVD_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null &&
   cmake --build "$build-asan" -j "$jobs" >/dev/null; then
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
		ctest --test-dir "$build-asan" -L unit --output-on-failure -j "$jobs"
	record "unit-asan" $?
else
	echo "ASan build failed"; record "unit-asan(build)" 1
fi

section "fuzz targets, ${fuzz_seconds}s each ($build-fuzz)"
if cmake -S . -B "$build-fuzz" -DCMAKE_C_COMPILER=clang -DVD_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug \
	-DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link,address,undefined" >/dev/null &&
   cmake --build "$build-fuzz" -j "$jobs" >/dev/null; then
	for f in "$build-fuzz"/fuzz/fuzz_*; do
		name=$(basename "$f")
		corpus=$(mktemp -d)
		seeds="tests/fuzz/corpus/${name#fuzz_}"
		[ -d "$seeds" ] && cp "$seeds"/* "$corpus"/ 2>/dev/null
		echo "-- $name"
		"$f" -max_total_time="$fuzz_seconds" -print_final_stats=0 "$corpus" 2>&1 | tail -n 2
		record "$name" "${PIPESTATUS[0]}"
		rm -rf "$corpus"
	done
else
	echo "fuzz build failed"; record "fuzz(build)" 1
fi

section "lab tests (root, network namespaces)"
if [ "$(id -u)" -ne 0 ]; then
	echo "not root: lab tests skipped"
	record "lab(not root)" 1
else
	for t in tests/lab/test_*.sh; do
		echo "-- $t"
		timeout 600 bash "$t" "$build"
		rc=$?   # before any other expansion: a command substitution would reset $?
		record "$(basename "$t" .sh)" "$rc"
	done
fi

section "summary"
[ ${#failures[@]} -gt 0 ] && echo "failed: ${failures[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
