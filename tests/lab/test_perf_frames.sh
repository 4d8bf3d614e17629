#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# `viaduct perf frames` on a lab, briefly: every path reports a ping-pong and a stream line for every size,
# well formed, with nothing lost in ping-pong and frames received in the stream; the table mode prints the
# ratios; the bare AF_XDP reference leaves no XDP program behind. Asserts behaviour, never a speed.
# usage: tests/lab/test_perf_frames.sh [BUILD_DIR]
set -uo pipefail
BUILD=$(cd "${1:-build}" && pwd) || exit 1
V=$BUILD/bin/viaduct
LAB=${VD_TEST_LAB:-vdtperf}
[ "$(id -u)" -eq 0 ] || { echo "test_perf_frames: needs root" >&2; exit 1; }
[ -x "$V" ] || { echo "test_perf_frames: $V not built" >&2; exit 1; }

passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok   $1"; }
ko() { failed=$((failed + 1)); echo "FAIL $1"; }
tmp=$(mktemp -d)
cleanup() { "$V" lab down --name "$LAB" >/dev/null 2>&1; rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

cleanup
mkdir -p "$tmp"
"$V" lab up --name "$LAB" >/dev/null || { echo "FAIL lab up"; exit 1; }

QUICK=(--reps 1 --iters 300 --warmup 50 --duration-ms 100 --size 64,1500)
if timeout 120 "$V" perf frames --lab "$LAB" "${QUICK[@]}" --json >"$tmp/out" 2>"$tmp/err"; then
	ok "perf frames --lab exits 0"
else
	ko "perf frames --lab exits 0"; cat "$tmp/err"
fi

for path in kernel-udp viaduct-udp bare-afxdp viaduct-direct viaduct-steered; do
	for size in 64 1500; do
		pp=$(grep "\"bench\":\"pingpong\",\"path\":\"$path\",\"size\":$size," "$tmp/out")
		st=$(grep "\"bench\":\"stream\",\"path\":\"$path\",\"size\":$size," "$tmp/out")
		if [[ $pp =~ \"p50_us\":([0-9.e+]+) ]] && awk "BEGIN{exit !(${BASH_REMATCH[1]} > 0)}" &&
			[[ $pp == *'"lost":0,'* || $pp == *'"lost":0}'* ]]; then
			ok "$path $size B ping-pong: p50 ${BASH_REMATCH[1]} us, nothing lost"
		else
			ko "$path $size B ping-pong line: ${pp:-missing}"
		fi
		if [[ $st =~ \"mpps\":([0-9.e+]+) ]] && awk "BEGIN{exit !(${BASH_REMATCH[1]} > 0)}"; then
			ok "$path $size B stream: ${BASH_REMATCH[1]} Mpps"
		else
			ko "$path $size B stream line: ${st:-missing}"
		fi
	done
done

"$V" perf table "$tmp/out" >"$tmp/table" 2>&1
grep -q "direct/bare" "$tmp/table" && grep -q "steered/kernel" "$tmp/table" &&
	ok "perf table prints the ratios" || { ko "perf table prints the ratios"; cat "$tmp/table"; }

for h in h0 h1; do
	if ip -n "$LAB-$h" link show ref0 | grep -q "xdp"; then
		ko "no XDP program left on $h ref0 after bare-afxdp"
	else
		ok "no XDP program left on $h ref0 after bare-afxdp"
	fi
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
