#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Lab test of the xdp frame I/O backend (root): a `viaduct lab` of two hosts, every viaduct program run as
# uid 65534 with no capability. Frames are checked byte for byte (tests/lab/nic_peer.c):
#   - both RX modes, busy-polled and blocking, smallest and largest payloads;
#   - interop: the library's udp backend and a plain kernel UDP socket (python3) against xdp endpoints;
#   - viaduct stat shows the endpoint with its owner; kill -9 reclaims it and its port at once.
# usage: tests/lab/test_xdp_nic.sh [BUILD_DIR]
set -uo pipefail
BUILD=$(cd "${1:-build}" && pwd) || exit 1
V=$BUILD/bin/viaduct
PEER=$BUILD/tests/nic_peer
LAB=${VD_TEST_LAB:-vdtxnic}
[ "$(id -u)" -eq 0 ] || { echo "test_xdp_nic: needs root" >&2; exit 1; }
for b in "$V" "$PEER"; do [ -x "$b" ] || { echo "test_xdp_nic: $b not built" >&2; exit 1; }; done

. "$(dirname "$0")/lib.sh"
cleanup() { "$V" lab down --name "$LAB" >/dev/null 2>&1; }
trap cleanup EXIT
trap 'exit 130' INT TERM

cleanup
"$V" lab up --name "$LAB" --group nogroup >/dev/null || { echo "FAIL lab up"; exit 1; }

# on HOST CMD...: run CMD in a lab host as uid 65534 (group nogroup may use viaductd's socket).
on() { local h=$1; shift; "$V" lab exec --name "$LAB" "$h" -- setpriv --reuid 65534 --regid 65534 --init-groups "$@"; }
H0=10.99.0.1 H1=10.99.0.2
port=7100
tmp=$(mktemp -d)
chmod 755 "$tmp"   # the test programs run as uid 65534

# pair NAME "server command" "client command": server in h1 (port $port), client in h0; both must exit 0.
pair() {
	local name=$1 srv=$2 cli=$3
	port=$((port + 1))
	srv=${srv//PORT/$port} cli=${cli//PORT/$port}
	on h1 $srv >"$tmp/srv" 2>&1 &
	local spid=$!
	sleep 0.3
	timeout 30 "$V" lab exec --name "$LAB" h0 -- setpriv --reuid 65534 --regid 65534 --init-groups \
		$cli >"$tmp/cli" 2>&1
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

N=2000
pair "direct <-> direct, 64 B, busy-poll" \
	"$PEER echo --backend xdp --mode direct --local $H1:PORT --count $N --busy" \
	"$PEER ping --backend xdp --mode direct --peer $H1:PORT --count $N --size 64 --busy"
# Both sides sent their small frames through their TX taps (viaductd gives one per endpoint on a veth whose
# peer runs XDP), and every frame still arrived intact.
tap_cli=$(grep -o 'tap [0-9]*' "$tmp/cli" | awk '{print $2}') tap_srv=$(grep -o 'tap [0-9]*' "$tmp/srv" | awk '{print $2}')
[ "${tap_cli:-0}" -ge "$N" ] && [ "${tap_srv:-0}" -ge "$N" ] &&
	ok "small frames went through the TX taps (client $tap_cli, server $tap_srv of $N)" ||
	ko "small frames went through the TX taps (client ${tap_cli:-none}, server ${tap_srv:-none} of $N)"
pair "steered <-> steered, 1472 B, blocking" \
	"$PEER echo --backend xdp --mode steered --local $H1:PORT --count 500" \
	"$PEER ping --backend xdp --mode steered --peer $H1:PORT --count 500 --size 1472"
pair "steered client -> direct server, 1 B" \
	"$PEER echo --backend xdp --mode direct --local $H1:PORT --count 500" \
	"$PEER ping --backend xdp --mode steered --peer $H1:PORT --count 500 --size 4"
pair "udp backend -> xdp server" \
	"$PEER echo --backend xdp --local $H1:PORT --count 500" \
	"$PEER ping --backend udp --local $H0:0 --peer $H1:PORT --count 500 --size 1000"
pair "xdp client -> udp backend server" \
	"$PEER echo --backend udp --local $H1:PORT --count 500" \
	"$PEER ping --backend xdp --peer $H1:PORT --count 500 --size 1000"

# A plain kernel UDP socket, no viaduct code at all, on the other side.
cat >"$tmp/kecho.py" <<'PY'
import socket,sys
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind((sys.argv[1],int(sys.argv[2]))); s.settimeout(10)
for _ in range(int(sys.argv[3])):
    d,a=s.recvfrom(9000); s.sendto(d,a)
PY
cat >"$tmp/kping.py" <<'PY'
import socket,sys
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(0.2); peer=(sys.argv[1],int(sys.argv[2]))
for i in range(int(sys.argv[3])):
    m=i.to_bytes(4,"little")+bytes((i*31+j*7)&255 for j in range(4,int(sys.argv[4])))
    for _ in range(50):
        s.sendto(m,peer)
        try:
            d,_a=s.recvfrom(9000)
            if d[:4]==m[:4]: break
        except socket.timeout: continue
    else: sys.exit("no echo for %d"%i)
    if d!=m: sys.exit("bad echo for %d"%i)
print("kernel ping ok")
PY
pair "kernel UDP socket -> xdp direct server" \
	"$PEER echo --backend xdp --mode direct --local $H1:PORT --count 300" \
	"/usr/bin/python3 $tmp/kping.py $H1 PORT 300 900"
pair "kernel UDP socket -> xdp steered server" \
	"$PEER echo --backend xdp --mode steered --local $H1:PORT --count 300" \
	"/usr/bin/python3 $tmp/kping.py $H1 PORT 300 1472"
pair "xdp client -> kernel UDP socket" \
	"/usr/bin/python3 $tmp/kecho.py $H1 PORT 300" \
	"$PEER ping --backend xdp --peer $H1:PORT --count 300 --size 1200"

# A TX tap that disappears under a running endpoint (viaductd deletes it when the interface can no longer
# take redirected frames; here it is deleted behind everyone's back): the client's next write fails, it
# goes back to its XSK, and no frame is lost for good.
port=$((port + 1))
on h1 "$PEER" echo --backend xdp --local $H1:$port --count 1000000 --idle-ms 1500 --timeout-ms 30000 >"$tmp/srv" 2>&1 &
spid=$!
sleep 0.3
on h0 "$PEER" ping --backend xdp --peer $H1:$port --count 150000 --size 64 --busy >"$tmp/cli" 2>&1 &
cpid=$!
sleep 0.4
"$V" lab exec --name "$LAB" h0 -- sh -c 'for d in $(ip -o link show type tun | awk -F": " "{print \$2}"); do ip link del "$d"; done'
wait "$cpid"; crc=$?
wait "$spid"
if [ "$crc" -eq 0 ] && grep -q 'ping ok 150000/150000' "$tmp/cli"; then
	tap=$(grep -o 'tap [0-9]*' "$tmp/cli" | awk '{print $2}') tx=$(grep -o ' tx [0-9]*' "$tmp/cli" | awk '{print $2}')
	[ "${tap:-0}" -gt 0 ] && [ "${tap:-0}" -lt "${tx:-0}" ] &&
		ok "tap deleted mid-run: every frame echoed, $tap of $tx sent by the tap, the rest by the XSK" ||
		ko "tap deleted mid-run: tap ${tap:-none} of ${tx:-none} frames (expected some of each)"
else
	ko "tap deleted mid-run: the ping did not complete (rc $crc)"; sed 's/^/    cli: /' "$tmp/cli"
fi

# Ownership shown by stat, then reclaim after kill -9.
on h1 "$PEER" hold --backend xdp --local $H1:7999 --timeout-ms 20000 >"$tmp/hold" 2>&1 &
hpid=$!
for _ in $(seq 50); do grep -q xdp "$tmp/hold" && break; sleep 0.1; done
"$V" lab exec --name "$LAB" h1 -- "$V" stat --json >"$tmp/stat1" 2>&1
grep -q '"port": *7999' "$tmp/stat1" && grep -q '"uid": *65534' "$tmp/stat1" &&
	ok "stat shows the endpoint on :7999 owned by uid 65534" || { ko "stat shows the endpoint"; cat "$tmp/stat1"; }
# The port is the endpoint's: a kernel socket in the same host cannot take it.
"$V" lab exec --name "$LAB" h1 -- /usr/bin/python3 -c "import socket; socket.socket(2,2).bind(('$H1',7999))" 2>/dev/null &&
	ko "kernel bind of an owned port refused" || ok "kernel bind of an owned port refused"
# kill -9 the process itself (setpriv execs it, lab exec execs ip netns exec which execs setpriv).
pkill -9 -f "nic_peer hold --backend xdp --local $H1:7999"
wait "$hpid" 2>/dev/null
sleep 0.3
"$V" lab exec --name "$LAB" h1 -- "$V" stat --json >"$tmp/stat2" 2>&1
grep -q '"port": *7999' "$tmp/stat2" && ko "endpoint reclaimed after kill -9" || ok "endpoint reclaimed after kill -9"
"$V" lab exec --name "$LAB" h1 -- /usr/bin/python3 -c "import socket; socket.socket(2,2).bind(('$H1',7999))" &&
	ok "port reusable by the kernel after kill -9" || ko "port reusable by the kernel after kill -9"
pair "port reusable by a new endpoint after kill -9" \
	"$PEER echo --backend xdp --local $H1:7999 --count 10" \
	"$PEER ping --backend xdp --peer $H1:7999 --count 10 --size 64"

# Through the impairment relay: corrupted frames must be caught by the UDP checksum (the relay's hosts
# complete offloaded checksums in software), dropped and counted, never handed to the application.
"$V" lab down --name "$LAB" >/dev/null
"$V" lab up --name "$LAB" --group nogroup --netem "loss 3% duplicate 5% corrupt 10% delay 200us" >/dev/null ||
	{ ko "lab up --netem"; exit 1; }
pair "direct, netem loss/dup/corrupt: every frame intact" \
	"$PEER echo --backend xdp --mode direct --local $H1:PORT --count 100000 --idle-ms 1500 --timeout-ms 30000" \
	"$PEER ping --backend xdp --mode direct --peer $H1:PORT --count 400 --size 1200"
malformed=$(grep -o 'malformed [0-9]*' "$tmp/cli" "$tmp/srv" | awk '{s += $2} END {print s + 0}')
[ "$malformed" -gt 0 ] && ok "corrupted frames dropped and counted ($malformed)" ||
	ko "corrupted frames dropped and counted (none seen)"

rm -rf "$tmp"
finish
