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

. "$(dirname "$0")/lib.sh"
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

# Multi-buffer: at MTU 9000 a frame spans up to 3 UMEM chunks (4096 B, data 256 B in on RX). bare-afxdp alone
# (no viaductd needed): ping-pong and stream at 8000 and 9014 B, the MTU's frame; 9015 B is refused.
JLAB=${LAB}j
cleanup_j() { "$V" lab down --name "$JLAB" >/dev/null 2>&1; }
trap 'cleanup; cleanup_j' EXIT
cleanup_j
if "$V" lab up --name "$JLAB" --mtu 9000 --no-daemon >/dev/null; then
	JQ=(--reps 1 --iters 300 --warmup 50 --duration-ms 300 --size 64,8000,9014,9015)
	if timeout 120 "$V" perf frames --lab "$JLAB" --path bare-afxdp "${JQ[@]}" --json >"$tmp/jout" 2>"$tmp/jerr"
	then ok "mtu 9000: perf frames --path bare-afxdp exits 0"
	else ko "mtu 9000: perf frames --path bare-afxdp exits 0"; cat "$tmp/jerr"; fi
	for size in 64 8000 9014; do
		pp=$(grep "\"bench\":\"pingpong\",\"path\":\"bare-afxdp\",\"size\":$size," "$tmp/jout")
		st=$(grep "\"bench\":\"stream\",\"path\":\"bare-afxdp\",\"size\":$size," "$tmp/jout")
		if [[ $pp == *'"iters":300,'* && ($pp == *'"lost":0,'* || $pp == *'"lost":0}'*) ]]; then
			ok "mtu 9000: bare-afxdp $size B ping-pong: 300 round trips, nothing lost"
		else
			ko "mtu 9000: bare-afxdp $size B ping-pong line: ${pp:-missing}"
		fi
		# More frames than either half of the UMEM has chunks (2048): RX and TX chunks of multi-chunk
		# frames must come back to be reused. Loss under overload is the receiver's limit, not an error.
		if [[ $st =~ \"frames\":([0-9.e+]+) ]] && awk "BEGIN{exit !(${BASH_REMATCH[1]} > 2048)}" &&
			[[ $st =~ \"loss\":([0-9.e+]+) ]] && awk "BEGIN{exit !(${BASH_REMATCH[1]} < 0.5)}"; then
			ok "mtu 9000: bare-afxdp $size B stream: chunks recycled ($st)"
		else
			ko "mtu 9000: bare-afxdp $size B stream line: ${st:-missing}"
		fi
	done
	if ! grep -q '"size":9015' "$tmp/jout" &&
		grep -q "size 9015 exceeds the path's MTU (payload 8973 > 8972)" "$tmp/jerr"; then
		ok "mtu 9000: bare-afxdp payload cap is the MTU's (8972), not a chunk's"
	else
		ko "mtu 9000: bare-afxdp payload cap"; cat "$tmp/jerr"
	fi
	# Byte-exact echoes through the kernel: a kernel UDP socket in h0 sends pings of random payload around
	# every piece boundary (RX pieces hold 3840 B, TX chunks 4096 B) to a bare-afxdp server in h1, whose
	# echo is read in place from the received pieces and written across TX chunks; the kernel checks the
	# echo's IPv4/UDP headers and lengths, this script every byte.
	cat >"$tmp/echo.py" <<-'PYEOF'
	import os, socket, struct, sys, time
	ip, port, sizes = sys.argv[1], int(sys.argv[2]), [int(x) for x in sys.argv[3].split(",")]
	def ping(s, seq, n):
	    body = struct.pack("<HBBIQ", 0x7664, 2, 0, seq, time.monotonic_ns()) + os.urandom(n - 16)
	    s.send(body)
	    try:
	        return s.recv(65536) == body
	    except (socket.timeout, ConnectionRefusedError):
	        return False
	sock, deadline = None, time.monotonic() + 15
	# The server's XSK is on one queue; a flow's queue follows its hash: find a source port that reaches it
	# (other queues answer with ICMP port unreachable at once). Rescan while the server may be starting.
	while not sock and time.monotonic() < deadline:
	    for sp in range(40000, 40064):
	        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
	        s.bind(("", sp)); s.connect((ip, port)); s.settimeout(0.05)
	        if ping(s, 1, 64):
	            sock = s; break
	        s.close()
	    else:
	        time.sleep(0.2)
	if not sock:
	    print("no echo on any source port"); sys.exit(2)
	sock.settimeout(1.0)
	bad = 0
	for n in sizes:
	    good = sum(1 for i in range(20) if ping(sock, 100 + i, n))
	    print(f"{n}:{good}/20", end=" ")
	    bad += good != 20
	print()
	sys.exit(1 if bad else 0)
	PYEOF
	"$V" lab exec --name "$JLAB" h1 -- "$V" perf frames --server --path bare-afxdp --idle-ms 3000 \
		>/dev/null 2>&1 &
	spid=$!
	sleep 1
	if res=$("$V" lab exec --name "$JLAB" h0 -- timeout 60 python3 "$tmp/echo.py" 10.98.0.2 27803 \
		22,3797,3798,3799,4054,4055,7638,7639,8000,8972 2>&1); then
		ok "mtu 9000: bare-afxdp echoes multi-chunk payloads byte for byte ($res)"
	else
		ko "mtu 9000: bare-afxdp byte-exact echoes: $res"
	fi
	wait "$spid"
	if ip -n "$JLAB-h1" link show ref0 | grep -q "xdp"; then
		ko "mtu 9000: no XDP program left on h1 ref0"
	else
		ok "mtu 9000: no XDP program left on h1 ref0"
	fi
else
	ko "lab up --mtu 9000"
fi
cleanup_j

finish
