#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Lab test of jumbo frames on viaduct's xdp path (multi-buffer AF_XDP: a frame spans several 4096-byte UMEM
# chunks; docs/design.md "Jumbo frames"), root. A `viaduct lab` at MTU 9000, viaduct programs as uid 65534:
#   - the daemon opens endpoints for 9014-byte frames (3 chunks) and the dispatcher runs in native mode;
#   - limits (tests/lab/jumbo_probe.c): max payload is the MTU's (8972 UDP, 9000 IPv4) in both RX modes,
#     tx_alloc lends a buffer of that size, a frame of max + 1 is refused at TX with EMSGSIZE;
#   - frames of several sizes around the chunk boundaries up to exactly the maximum, byte for byte
#     (tests/lab/nic_peer.c), direct and steered, plus a kernel UDP socket; max + 1 refused by nic_peer;
#   - TCP kernel <-> viaduct both directions at once, verified by SHA-256, with segments of the jumbo MSS;
#   - `viaduct perf frames` and `viaduct perf bw` run at MTU 9000 and give results;
#   - a lab with an MTU beyond 16 chunks: the daemon says so, and the nic reports the smaller maximum.
# usage: tests/lab/test_jumbo.sh [BUILD_DIR]   (env VD_TEST_LAB=vdjumbo, VD_JUMBO_TCP_BYTES=50M)
set -uo pipefail
BUILD=$(cd "${1:-build}" && pwd) || exit 1
V=$BUILD/bin/viaduct
PEER=$BUILD/tests/nic_peer
PROBE=$BUILD/tests/jumbo_probe
SOCK=$BUILD/tests/sock_peer
LAB=${VD_TEST_LAB:-vdjumbo}
BIG=${LAB}b
BYTES=${VD_JUMBO_TCP_BYTES:-50M}
[ "$(id -u)" -eq 0 ] || { echo "test_jumbo: needs root" >&2; exit 1; }
for b in "$V" "$PEER" "$PROBE" "$SOCK"; do [ -x "$b" ] || { echo "test_jumbo: $b not built" >&2; exit 1; }; done
command -v python3 >/dev/null || { echo "test_jumbo: needs python3" >&2; exit 1; }

. "$(dirname "$0")/lib.sh"
lab_scratch "$LAB" "$BIG"

"$V" lab down --name "$LAB" >/dev/null 2>&1
"$V" lab up --name "$LAB" --mtu 9000 --group nogroup >/dev/null || { echo "FAIL lab up --mtu 9000"; exit 1; }
NOBODY="setpriv --reuid 65534 --regid 65534 --init-groups"
on() { local h=$1; shift; "$V" lab exec --name "$LAB" "$h" -- $NOBODY "$@"; }
H0=10.99.0.1 H1=10.99.0.2
LOG0=/run/viaduct/lab/$LAB-h0/viaductd.log

# ---- the daemon ----
if grep -q "mtu 9000 .*XDP dispatcher attached (native mode)" "$LOG0"; then
	ok "viaductd attaches the dispatcher in native mode at MTU 9000"
else
	ko "dispatcher attach at MTU 9000"; tail -n 5 "$LOG0" | sed 's/^/    /'
fi

# ---- limits ----
probe() { # NAME EXPECT ARGS...
	local name=$1 expect=$2; shift 2
	if on h0 "$PROBE" --expect "$expect" "$@" >"$tmp/probe" 2>&1; then
		ok "$name: $(tail -n 1 "$tmp/probe")"
	else
		ko "$name"; sed 's/^/    /' "$tmp/probe"
	fi
}
probe "limits, UDP layer, direct" 8972 --mode direct
probe "limits, UDP layer, steered" 8972 --mode steered
probe "limits, IPv4 layer (IP MTU)" 9000 --layer ipv4
if grep -q "frames up to 11520 bytes (3 chunks)" "$LOG0"; then
	ok "the daemon opened 3-chunk endpoints"
else
	ko "3-chunk endpoints in the daemon log"; tail -n 3 "$LOG0" | sed 's/^/    /'
fi

# ---- frames byte for byte ----
port=7200
pair() { # NAME "server command" "client command": server in h1, client in h0; both must exit 0
	local name=$1 srv=$2 cli=$3
	port=$((port + 1))
	srv=${srv//PORT/$port} cli=${cli//PORT/$port}
	on h1 $srv >"$tmp/srv" 2>&1 &
	local spid=$!
	sleep 0.3
	timeout 30 "$V" lab exec --name "$LAB" h0 -- $NOBODY $cli >"$tmp/cli" 2>&1
	local crc=$?
	wait "$spid"
	local src=$?
	if [ "$crc" -eq 0 ] && [ "$src" -eq 0 ]; then
		ok "$name: $(tail -n 1 "$tmp/cli")"
	else
		ko "$name (client rc $crc, server rc $src)"
		sed 's/^/    cli: /' "$tmp/cli"; sed 's/^/    srv: /' "$tmp/srv"
	fi
}
# 3990: the largest one-chunk UDP payload (4096 - 64 metadata room - 42); 3991: the smallest of two chunks;
# 8000 / 8972: three chunks, 8972 the maximum.
for size in 64 3990 3991 8000 8972; do
	pair "direct <-> direct, $size B, busy-poll" \
		"$PEER echo --backend xdp --mode direct --local $H1:PORT --count 300 --busy" \
		"$PEER ping --backend xdp --mode direct --peer $H1:PORT --count 300 --size $size --busy"
done
pair "steered <-> steered, 8972 B, blocking" \
	"$PEER echo --backend xdp --mode steered --local $H1:PORT --count 300" \
	"$PEER ping --backend xdp --mode steered --peer $H1:PORT --count 300 --size 8972"
pair "steered client -> direct server, 5000 B" \
	"$PEER echo --backend xdp --mode direct --local $H1:PORT --count 300" \
	"$PEER ping --backend xdp --mode steered --peer $H1:PORT --count 300 --size 5000"

cat >"$tmp/kecho.py" <<'PY'
import socket,sys
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind((sys.argv[1],int(sys.argv[2]))); s.settimeout(10)
for _ in range(int(sys.argv[3])):
    d,a=s.recvfrom(65536); s.sendto(d,a)
PY
port=$((port + 1))
"$V" lab exec --name "$LAB" h1 -- $NOBODY timeout 20 python3 "$tmp/kecho.py" $H1 $port 200 >"$tmp/srv" 2>&1 &
kp=$!
sleep 0.3
if on h0 "$PEER" ping --backend xdp --peer $H1:$port --count 200 --size 8972 >"$tmp/cli" 2>&1 && wait $kp; then
	ok "xdp ping <-> kernel UDP echo, 8972 B: $(tail -n 1 "$tmp/cli")"
else
	ko "xdp ping <-> kernel UDP echo, 8972 B"; sed 's/^/    /' "$tmp/cli" "$tmp/srv"
fi
on h0 "$PEER" ping --backend xdp --peer $H1:7 --count 1 --size 8973 >"$tmp/cli" 2>&1
rc=$?
if [ $rc -eq 2 ] && grep -q "max payload 8972" "$tmp/cli"; then
	ok "a payload of max + 1 (8973) is refused"
else
	ko "max + 1 refused (rc $rc)"; sed 's/^/    /' "$tmp/cli"
fi

# ---- TCP kernel <-> viaduct, both directions at once ----
cat >"$tmp/ktcp.py" <<'PY'
import hashlib, random, socket, sys, time
def result(mode, n, h, t0):
    dt = time.monotonic() - t0
    print("RESULT %s bytes %d sha256 %s secs %.2f MBps %.1f" % (mode, n, h.hexdigest(), dt, n / dt / 1e6 if dt else 0), flush=True)
if sys.argv[1] == "tcp-recv":
    l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(("0.0.0.0", int(sys.argv[2]))); l.listen(1); print("LISTENING", flush=True)
    c, _ = l.accept(); h = hashlib.sha256(); n = 0; t0 = time.monotonic()
    while True:
        b = c.recv(1 << 20)
        if not b: break
        h.update(b); n += len(b)
    c.close(); result("tcp-recv", n, h, t0)
else:
    host, port = sys.argv[2].rsplit(":", 1); total = int(sys.argv[3]); rnd = random.Random(int(sys.argv[4]))
    c = socket.create_connection((host, int(port)), timeout=60); h = hashlib.sha256(); n = 0; t0 = time.monotonic()
    while n < total:
        b = rnd.randbytes(min(1 << 20, total - n)); h.update(b); c.sendall(b); n += len(b)
    c.shutdown(socket.SHUT_WR)
    if c.recv(1) != b"": sys.exit("peer sent data")
    c.close(); result("tcp-send", n, h, t0)
PY
nbytes=$(python3 -c "import sys; s=sys.argv[1]; m={'K':1<<10,'M':1<<20,'G':1<<30}; print(int(float(s[:-1])*m[s[-1]]) if s[-1] in m else int(s))" "$BYTES")
rx1=$("$V" lab exec --name "$LAB" h1 -- cat /sys/class/net/eth0/statistics/rx_packets)
"$V" lab exec --name "$LAB" h1 -- timeout 60 python3 "$tmp/ktcp.py" tcp-recv 9101 >"$tmp/a_k" 2>&1 &
ka=$!
on h0 "$SOCK" tcp-recv 9102 --timeout-s 60 >"$tmp/b_v" 2>&1 &
vb=$!
wait_listening "$tmp/a_k" && wait_listening "$tmp/b_v" || echo "    (a receiver did not report LISTENING)"
on h0 "$SOCK" tcp-send $H1:9101 "$BYTES" --seed 5 --timeout-s 60 >"$tmp/a_v" 2>&1 &
va=$!
"$V" lab exec --name "$LAB" h1 -- timeout 60 python3 "$tmp/ktcp.py" tcp-send $H0:9102 "$nbytes" 6 >"$tmp/b_k" 2>&1 &
kb=$!
wait $va; rva=$?; wait $ka; rka=$?; wait $kb; rkb=$?; wait $vb; rvb=$?
check_pair "TCP viaduct (h0) -> kernel (h1) at MTU 9000" "$nbytes" "$tmp/a_v" $rva "$tmp/a_k" $rka
check_pair "TCP kernel (h1) -> viaduct (h0) at MTU 9000" "$nbytes" "$tmp/b_k" $rkb "$tmp/b_v" $rvb
# viaduct's segments must be jumbo: h1 received the stream in frames of about the MSS, not of 4 KB or less.
rx2=$("$V" lab exec --name "$LAB" h1 -- cat /sys/class/net/eth0/statistics/rx_packets)
per=$(( nbytes / (rx2 - rx1 + 1) ))
if [ "$per" -gt 6000 ]; then
	ok "viaduct's TCP segments are jumbo: $((rx2 - rx1)) frames at h1 for $nbytes bytes (~$per B each, with ACKs)"
else
	ko "viaduct's TCP segments are not jumbo: ~$per B per frame at h1"
fi

# ---- benchmarks run at MTU 9000 ----
if timeout 120 "$V" perf frames --lab "$LAB" --path viaduct-direct,viaduct-steered,kernel-udp --size 64,9014 \
	--reps 1 --iters 2000 --warmup 200 --duration-ms 200 --json >"$tmp/frames" 2>"$tmp/frames.err" &&
	python3 - "$tmp/frames" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
big = [r for r in rows if r.get("size") == 9014 and r.get("path", "").startswith("viaduct")]
good = [r for r in big if any(isinstance(v, (int, float)) and v > 0 for k, v in r.items() if k not in ("size",))]
sys.exit(0 if len(big) >= 2 and len(good) == len(big) else 1)
PY
then
	ok "viaduct perf frames at 9014 B: $(grep -c '"size":9014\|"size": 9014' "$tmp/frames") result lines"
else
	ko "viaduct perf frames at MTU 9000"; sed 's/^/    /' "$tmp/frames" "$tmp/frames.err" | tail -n 12
fi
if timeout 120 "$V" perf bw --lab "$LAB" --path viaduct-xdp,kernel-tcp --size 1M --reps 1 --duration-ms 300 --json \
	>"$tmp/bw" 2>"$tmp/bw.err" && python3 - "$tmp/bw" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
v = [r for r in rows if r.get("path") == "viaduct-xdp" and (r.get("gbps") or 0) > 0]
sys.exit(0 if v else 1)
PY
then
	ok "viaduct perf bw 1 MiB at MTU 9000: $(python3 -c "
import json,sys
for l in open(sys.argv[1]):
    if l.startswith('{'):
        r=json.loads(l); print('%s %.2f Gbit/s;' % (r['path'], r.get('gbps') or 0), end=' ')" "$tmp/bw")"
else
	ko "viaduct perf bw at MTU 9000"; sed 's/^/    /' "$tmp/bw" "$tmp/bw.err" | tail -n 12
fi
"$V" lab down --name "$LAB" >/dev/null 2>&1

# ---- an MTU beyond what an endpoint carries (16 chunks of 3840 bytes) ----
"$V" lab down --name "$BIG" >/dev/null 2>&1
if "$V" lab up --name "$BIG" --mtu 62000 --group nogroup >/dev/null; then
	if "$V" lab exec --name "$BIG" h0 -- $NOBODY "$PROBE" --expect 61398 >"$tmp/probe" 2>&1 &&
		grep -q "MTU 62000 is larger than an endpoint can carry" /run/viaduct/lab/$BIG-h0/viaductd.log; then
		ok "MTU 62000: the daemon says endpoints carry less, the nic reports 61398 (16 chunks)"
	else
		ko "MTU 62000 limit"; sed 's/^/    /' "$tmp/probe"; tail -n 3 /run/viaduct/lab/$BIG-h0/viaductd.log | sed 's/^/    /'
	fi
else
	ko "lab up --mtu 62000"
fi

finish
