#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Lab test of viaductd (root): two network namespaces joined by a 4-queue veth, viaductd on one side.
# Checks start-up and shutdown, the control protocol against hostile input, fd passing to an
# unprivileged user, software-steered and direct RX through the XDP dispatcher, reclaim after kill -9,
# port reservation in the kernel, neighbour resolution, that kernel traffic is untouched, and TX taps
# (a tap per endpoint, only while the peer's XDP program lets the veth take redirected frames).
#
# usage: tests/lab/test_daemon.sh BUILD_DIR     (env VD_TEST_NS: namespace prefix, default vdA-td)
set -euo pipefail

BUILD=${1:?usage: $0 BUILD_DIR}
DAEMON=$(realpath "$BUILD")/bin/viaductd
HERE=$(cd "$(dirname "$0")" && pwd)
PROBE=$HERE/daemon_probe.py
PY=/usr/bin/python3
NSP=${VD_TEST_NS:-vdA-td}
NS0=$NSP-h0
NS1=$NSP-h1
RUN=/run/viaduct/test-$NSP
SOCK=$RUN/viaductd.sock
PIDF=$RUN/viaductd.pid
TMP=$(mktemp -d /tmp/vd-test-daemon.XXXXXX)
LOG=$TMP/viaductd.log
IP0=10.99.0.1
IP1=10.99.0.2
. "$(dirname "$0")/lib.sh"
BGPIDS=()

[ "$(id -u)" = 0 ] || { echo "test_daemon.sh: needs root"; exit 77; }
[ -x "$DAEMON" ] || { echo "test_daemon.sh: no $DAEMON"; exit 1; }

cleanup() {
	set +e
	for p in "${BGPIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
	wait 2>/dev/null
	for f in "$PIDF" "$RUN/h1.pid" "$RUN/h1tap.pid" "$RUN/notap.pid"; do
		[ -s "$f" ] && kill -TERM "$(cat "$f")" 2>/dev/null
	done
	sleep 0.3
	ip netns del "$NS0" 2>/dev/null
	ip netns del "$NS1" 2>/dev/null
	rm -rf "$RUN" "$TMP"
}
trap cleanup EXIT

in0() { ip netns exec "$NS0" "$@"; }
in1() { ip netns exec "$NS1" "$@"; }
probe() { in0 "$PY" "$PROBE" --socket "$SOCK" "$@"; }
# probe_bg OUT ARGS...: a probe in the background; BG is its pid (the python process itself: a simple
# command is exec'ed, and so is python by `ip netns exec`), also remembered for the cleanup.
probe_bg() {
	local out=$1
	shift
	ip netns exec "$NS0" "$PY" "$PROBE" --socket "$SOCK" "$@" >"$out" 2>&1 &
	BG=$!
	BGPIDS+=($BG)
}
# kill9 PID: kill -9 and wait until the daemon has reclaimed the victim's endpoints (bounded).
kill9() {
	kill -9 "$1"
	wait "$1" 2>/dev/null || true
	for _ in $(seq 50); do
		[ "$(probe stat | json "len(d['eps'])")" = 0 ] && return 0
		sleep 0.1
	done
	return 1
}
# wait_for FILE PATTERN: up to 5 s for a background probe to print PATTERN.
wait_for() {
	for _ in $(seq 50); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
	return 1
}
json() { "$PY" -c "import json,sys; d=json.loads(sys.stdin.readline()); print($1)"; }
daemon_pid() { cat "$PIDF"; }
xdp_mode() { ip -n "$1" -j link show eth0 | "$PY" -c "import json,sys; print(json.load(sys.stdin)[0].get('xdp',{}).get('mode',0))"; }
# vd_ports map of the dispatcher attached to NS0's eth0, as an id for bpftool.
ports_map_id() {
	local prog
	prog=$(ip -n "$NS0" -j link show eth0 | "$PY" -c "import json,sys; print(json.load(sys.stdin)[0]['xdp']['prog']['id'])")
	for m in $(bpftool -j prog show id "$prog" | "$PY" -c "import json,sys; print(*json.load(sys.stdin)['map_ids'])"); do
		if bpftool -j map show id "$m" | grep -q '"name":"vd_ports"'; then echo "$m"; return 0; fi
	done
	return 1
}
# port_owned PORT: 1 if the dispatcher's UDP slot for PORT is in use (VD_BPF_EP_VALID in the flags word).
port_owned() {
	bpftool -j map lookup id "$(ports_map_id)" key $(("$1" & 255)) $(("$1" >> 8)) 0 0 |
		"$PY" -c "import json,sys; v=[int(b,16) for b in json.load(sys.stdin)['value']]; print(1 if v[8] & 2 else 0)"
}
kernel_bind() { # kernel_bind NS PROTO PORT: a kernel socket can bind IP0:PORT
	ip netns exec "$1" "$PY" -c "
import socket,sys
s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM if sys.argv[1]=='udp' else socket.SOCK_STREAM)
s.bind(('$IP0', int(sys.argv[2])))" "$2" "$3"
}
not() { ! "$@"; }
# retry CMD...: CMD succeeds within 5 s (reclaim happens when the daemon sees the connection close).
retry() {
	for _ in $(seq 50); do "$@" 2>/dev/null && return 0; sleep 0.1; done
	"$@"
}

# ---- lab: two namespaces, one veth with 4 RX and 4 TX queues ---------------------------------------
ip netns del "$NS0" 2>/dev/null || true
ip netns del "$NS1" 2>/dev/null || true
ip netns add "$NS0"
ip netns add "$NS1"
ip link add "$NSP-a" numtxqueues 4 numrxqueues 4 type veth peer name "$NSP-b" numtxqueues 4 numrxqueues 4
ip link set "$NSP-a" netns "$NS0"
ip link set "$NSP-b" netns "$NS1"
ip -n "$NS0" link set "$NSP-a" name eth0
ip -n "$NS1" link set "$NSP-b" name eth0
ip -n "$NS0" addr add $IP0/24 dev eth0
ip -n "$NS1" addr add $IP1/24 dev eth0
for ns in "$NS0" "$NS1"; do ip -n "$ns" link set lo up; ip -n "$ns" link set eth0 up; done
mkdir -p "$RUN"

# ---- start-up ---------------------------------------------------------------------------------------
check "viaductd --daemon starts (parent exits 0 once listening)" \
	in0 "$DAEMON" --iface eth0 --socket "$SOCK" --pidfile "$PIDF" --log "$LOG" --group nogroup --daemon -v \
	9>"$TMP/inherited"
check "the daemon keeps no descriptor it inherited (fd 9 of its starter)" \
	not bash -c "ls -l /proc/$(daemon_pid)/fd | grep -q '$TMP/inherited'"
check "socket is 0660 root:nogroup" test "$(stat -c '%A %U %G' "$SOCK")" = "srw-rw---- root nogroup"
check "pidfile names a live process" kill -0 "$(daemon_pid)"
check "dispatcher attached in native mode" test "$(xdp_mode "$NS0")" = 1
check "a second viaductd on the same socket refuses to start" \
	not in0 "$DAEMON" --iface eth0 --socket "$SOCK" --log "$TMP/second.log" --daemon
check "the first daemon survived the second's attempt" probe stat

# ---- endpoints and fd passing -----------------------------------------------------------------------
check "root opens an endpoint (4 fds of the right kinds) and closes it with EP_CLOSE" probe open --close
check "uid 65534 (group nogroup) opens an endpoint and maps UMEM, ring, stats" \
	probe --uid 65534 --gid 65534 open --mode steered
check "uid 65533 outside the socket's group is refused" not probe --uid 65533 --gid 65533 stat
check "interface's MAC and address in the reply" \
	bash -c "ip netns exec $NS0 $PY $PROBE --socket $SOCK open | grep -q \"\\\"ip\\\": \\\"$IP0\\\".*\\\"mtu\\\": 1500\""

# ---- hostile control messages -----------------------------------------------------------------------
check "hostile messages get error replies; daemon keeps serving" probe hostile
check "daemon alive after hostile messages" kill -0 "$(daemon_pid)"

# ---- software-steered RX ----------------------------------------------------------------------------
steer_test() { # steer_test RING_BYTES: frames of several sizes arrive intact in a uid-65534 process's ring
	probe_bg "$TMP/steer" --uid 65534 --gid 65534 steer-rx --count 5 --steer-bytes "$1"
	local pid=$BG
	wait_for "$TMP/steer" port || { kill $pid; return 1; }
	local port
	port=$(json "d['port']" <"$TMP/steer")
	in1 "$PY" -c "
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for n in (1, 60, 100, 1000, 1472):
    s.sendto(bytes([n & 0xff]) * n, ('$IP0', $port))"
	wait $pid
}
check "steered RX: 5 datagrams (1..1472 B) into a 4 MiB ring, read by uid 65534" steer_test 4194304
check "steered RX with a 64 KiB ring (inner ringbufs of different sizes)" steer_test 65536
check "steered RX with a 64 MiB ring" steer_test 67108864

# ---- direct RX: frames on the endpoint's queue go to its XSK, the others to its ring ----------------
direct_test() {
	probe_bg "$TMP/direct" open --mode direct --queue 2 --hold
	local pid=$BG
	wait_for "$TMP/direct" ready || return 1
	local port
	port=$(json "d['port']" <"$TMP/direct")
	test "$(json "d['queue']" <"$TMP/direct")" = 2 || return 1
	# 64 flows (a socket each): the sender's veth spreads them over the 4 queues.
	in1 "$PY" -c "
import socket
for i in range(64):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b'x' * 32, ('$IP0', $port)); s.close()"
	sleep 0.3
	probe stat >"$TMP/stat"
	kill9 $pid || return 1
	json "d['eps'][0]" <"$TMP/stat"
	json "d['eps'][0]['rx_redirected'] > 0 and d['eps'][0]['rx_steered'] > 0 and \
d['eps'][0]['rx_redirected'] + d['eps'][0]['rx_steered'] == 64 or sys.exit(1)" <"$TMP/stat"
}
check "direct RX: frames on queue 2 redirected to the XSK, the rest steered (64 in total)" direct_test

# ---- reclaim after kill -9 --------------------------------------------------------------------------
reclaim_test() {
	probe_bg "$TMP/hold" --uid 65534 --gid 65534 open --mode direct --port 7777 --hold
	local pid=$BG
	wait_for "$TMP/hold" ready || return 1
	echo "vd_ports slot of 7777 in use while held: $(port_owned 7777)"
	test "$(port_owned 7777)" = 1 || return 1
	not kernel_bind "$NS0" udp 7777 || { echo "kernel could bind an owned port"; return 1; }
	local out
	out=$(probe open --port 7777 || true)
	grep -q '"status": -98' <<<"$out" || { echo "second owner not refused: $out"; return 1; }
	kill9 $pid || return 1
	echo "vd_ports slot of 7777 in use after kill -9: $(port_owned 7777)"
	test "$(port_owned 7777)" = 0 && retry kernel_bind "$NS0" udp 7777 && probe open --port 7777
}
check "kill -9: endpoint reclaimed, map entry gone, port reusable by the kernel and by viaduct" reclaim_test

port_test() {
	probe_bg "$TMP/res" reserve tcp 0 --hold
	local pid=$BG port
	wait_for "$TMP/res" ready || return 1
	port=$(json "d['port']" <"$TMP/res")
	not kernel_bind "$NS0" tcp "$port" || return 1
	kill9 $pid || return 1
	retry kernel_bind "$NS0" tcp "$port" || return 1
	probe reserve udp 7778 --release | grep -q '"release": 0' && kernel_bind "$NS0" udp 7778
}
check "PORT_RESERVE holds a TCP port in the kernel until the owner dies; RELEASE frees a UDP one" port_test

# ---- neighbours -------------------------------------------------------------------------------------
neigh_test() {
	local mac
	mac=$(ip -n "$NS1" -j link show eth0 | json "d[0]['address']")
	ip -n "$NS0" neigh flush dev eth0
	probe neigh $IP1 | tee /dev/stderr | grep -q "\"mac\": \"$mac\""
}
check "NEIGH resolves a flushed on-link neighbour through ARP" neigh_test
neigh_wait_test() {
	probe_bg "$TMP/neigh" neigh 10.99.0.77
	local pid=$BG t0 t1
	sleep 0.2
	t0=$(date +%s%N)
	probe stat >/dev/null
	t1=$(date +%s%N)
	wait $pid
	cat "$TMP/neigh"
	echo "stat took $(((t1 - t0) / 1000000)) ms during the pending resolution"
	grep -q '"status": -113' "$TMP/neigh" && [ $(((t1 - t0) / 1000000)) -lt 500 ]
}
check "NEIGH of a silent address: -EHOSTUNREACH after ~1 s, other clients served meanwhile" neigh_wait_test
check "NEIGH off-link without a gateway: -EHOSTUNREACH" bash -c "ip netns exec $NS0 $PY $PROBE --socket $SOCK neigh 192.0.2.1 | grep -q '\"status\": -113'"

# ---- a client that never reads its replies ------------------------------------------------------------
stall_test() {
	probe_bg "$TMP/stall" stall
	local pid=$BG
	wait_for "$TMP/stall" ready || return 1
	head -1 "$TMP/stall"
	timeout 3 ip netns exec "$NS0" "$PY" "$PROBE" --socket "$SOCK" stat >/dev/null
	local rc=$?
	kill9 $pid
	return $rc
}
check "a client flooding requests without reading does not stall others" stall_test

# ---- out of file descriptors: the daemon pauses its listener instead of spinning -------------------------
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
emfile_test() {
	local pid nofile t0 t1 client rc
	pid=$(daemon_pid)
	nofile=$(prlimit --pid "$pid" --nofile --noheadings --raw -o SOFT,HARD)
	# Below the descriptors it holds already: every accept4 fails with EMFILE until the limit is back.
	prlimit --pid "$pid" --nofile=8:"${nofile#* }"
	timeout 10 ip netns exec "$NS0" "$PY" "$PROBE" --socket "$SOCK" stat >/dev/null 2>&1 &
	client=$!
	t0=$(cpu_ticks "$pid")
	sleep 2
	t1=$(cpu_ticks "$pid")
	prlimit --pid "$pid" --nofile="${nofile% *}:${nofile#* }"
	wait $client
	rc=$?
	echo "daemon cpu $((t1 - t0)) ticks in 2 s out of descriptors; waiting client exit $rc once they are back"
	[ $((t1 - t0)) -lt 40 ] && [ "$rc" = 0 ]
}
check "out of descriptors: the daemon does not spin; the waiting client is served once they are back" emfile_test
grep -q "out of file descriptors" "$LOG" && ok "running out of descriptors is logged" || ko "running out of descriptors is logged" "$LOG"
# Ports (each a descriptor of the daemon) never take its last 256 descriptors (port.c VD_PORT_FD_ROOM).
port_room_test() {
	local pid nofile n out rc
	pid=$(daemon_pid)
	nofile=$(prlimit --pid "$pid" --nofile --noheadings --raw -o SOFT,HARD)
	n=$(ls "/proc/$pid/fd" | wc -l)
	# Most of the daemon's descriptors are its port pool's: 50 more than it has leaves ports no room.
	prlimit --pid "$pid" --nofile=$((n + 50)):"${nofile#* }"
	out=$(probe reserve tcp 0 2>&1)
	probe stat >/dev/null
	rc=$?
	prlimit --pid "$pid" --nofile="${nofile% *}:${nofile#* }"
	echo "$n descriptors; reserve: $out; stat exit $rc"
	grep -q '"status": -24' <<<"$out" && [ "$rc" = 0 ]
}
check "near RLIMIT_NOFILE: a port reservation is refused (EMFILE), clients are still served" port_room_test

# ---- kernel traffic untouched while viaductd runs (with an endpoint open) ---------------------------
probe_bg "$TMP/bg" open --hold
wait_for "$TMP/bg" ready || true
check "ping across the veth" in1 ping -c 2 -W 1 -i 0.2 $IP0
kernel_udp() {
	ip netns exec "$NS0" "$PY" -c "
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('$IP0', 9999)); s.settimeout(5)
d, a = s.recvfrom(100); s.sendto(d.upper(), a)" &
	local pid=$!
	sleep 0.3
	in1 "$PY" -c "
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
s.sendto(b'hello', ('$IP0', 9999)); assert s.recvfrom(100)[0] == b'HELLO'"
	wait $pid
}
check "kernel UDP exchange across the veth" kernel_udp
kernel_tcp() {
	ip netns exec "$NS0" "$PY" -c "
import socket
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); l.bind(('$IP0', 9998)); l.listen(1)
l.settimeout(5); c, _ = l.accept(); c.sendall(c.recv(100).upper())" &
	local pid=$!
	sleep 0.3
	in1 "$PY" -c "
import socket
s = socket.create_connection(('$IP0', 9998), timeout=3); s.sendall(b'hello'); assert s.recv(100) == b'HELLO'"
	wait $pid
}
check "kernel TCP connection across the veth" kernel_tcp
malformed_test() { # a UDP packet with a bad IHL: passed to the kernel and counted as malformed
	local before after
	before=$(probe stat | json "d['ifaces'][0]['malformed']")
	in1 "$PY" -c "
import socket, struct
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind(('eth0', 0))
dst = bytes.fromhex(open('/dev/stdin').read().strip().replace(':', ''))
src = open('/sys/class/net/eth0/address').read().strip()
ip = bytes([0x44, 0, 0, 28]) + bytes(8) + socket.inet_aton('$IP1') + socket.inet_aton('$IP0')
s.send(dst + bytes.fromhex(src.replace(':', '')) + b'\x08\x00' + ip + bytes(8))" \
		<<<"$(ip -n "$NS0" -j link show eth0 | json "d[0]['address']")"
	sleep 0.2
	after=$(probe stat | json "d['ifaces'][0]['malformed']")
	echo "malformed $before -> $after"
	[ "$after" -gt "$before" ]
}
check "malformed IPv4 header counted and passed to the kernel" malformed_test

# ---- batched holds (EP_PORTS_DEL: one map update for all the request's holds, port.c) -----------------
check "EP_PORTS_DEL with holds: each port held on its own (one not ours fails alone), quiet one too" \
	probe ports-hold

# ---- TX taps (taptx.c): a tap per endpoint while eth0 takes redirected frames -----------------------
# A veth takes them (xdp_features NDO_XMIT) only while its peer has an XDP program (veth_set_xdp_features):
# so far NS1's eth0 has none.
taps() { ip -n "$NS0" -o link show | grep -o ': vdtx[0-9]*' | cut -c3- | sort | tr '\n' ' '; }
n_taps() { ip -n "$NS0" -o link show | grep -c ': vdtx' || true; }
open_fds() { probe open | json "'%d %d' % (len(d['fd_kinds']), d['tap_tx_max'])"; }
h1tap_start() {
	in1 "$DAEMON" --iface eth0 --socket "$RUN/h1tap.sock" --pidfile "$RUN/h1tap.pid" --log "$TMP/h1tap.log" \
		--daemon
}
h1tap_stop() {
	local pid
	pid=$(cat "$RUN/h1tap.pid")
	kill -TERM "$pid"
	for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
	return 1
}
spares_ready() { # spares_ready: within 5 s the two spare taps exist (ringpool.c RP_TAPS)
	for _ in $(seq 50); do [ "$(n_taps)" = 2 ] && return 0; sleep 0.1; done
	echo "taps: $(taps)"
	return 1
}
no_peer_xdp_test() {
	local got
	got=$(open_fds)
	echo "fds, tap_tx_max: $got; taps: $(taps)"
	[ "$got" = "4 0" ] && [ "$(n_taps)" = 0 ] &&
		tail -n 5 "$LOG" | grep -q 'TX tap none (interface takes no redirected frames)'
}
check "peer without XDP: EP_OPEN gives 4 fds, tap_tx_max 0, no tap made, said in the log" no_peer_xdp_test
check "viaductd on the peer (native XDP)" h1tap_start
check "two spare taps made within 5 s of the peer's XDP program" spares_ready
tap_open_test() {
	local got
	got=$(open_fds)
	echo "fds, tap_tx_max: $got"
	[ "$got" = "5 1514" ] && tail -n 5 "$LOG" | grep -q 'TX tap vdtx'
}
check "peer with XDP: EP_OPEN gives 5 fds (fd [4] a non-blocking tap queue), tap_tx_max 1514 at MTU 1500" \
	tap_open_test
tap_send_test() {
	ip netns exec "$NS1" "$PY" -c "
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('$IP1', 9997)); s.settimeout(5)
d, a = s.recvfrom(100); print('received', d, a); assert d == b'viaduct-tap 0' and a[0] == '$IP0'" >"$TMP/taprx" 2>&1 &
	local pid=$!
	sleep 0.3
	probe --uid 65534 --gid 65534 tap-send --dst-ip $IP1 --dport 9997 --count 3 \
		--dst-mac "$(ip -n "$NS1" -j link show eth0 | json "d[0]['address']")" || { kill $pid; return 1; }
	wait $pid
	local rc=$?
	cat "$TMP/taprx"
	return $rc
}
check "a UDP frame written to fd [4] by uid 65534 reaches a kernel UDP socket on the peer" tap_send_test
tap_crash_test() {
	probe_bg "$TMP/taphold" --uid 65534 --gid 65534 open --hold
	local pid=$BG name
	wait_for "$TMP/taphold" ready || return 1
	name=$(json "d['tap_name']" <"$TMP/taphold")
	echo "held endpoint's tap: $name; taps: $(taps)"
	grep -q " $name " <<<" $(taps)" || return 1
	kill -9 "$pid"
	wait "$pid" 2>/dev/null
	for _ in $(seq 50); do
		if ! grep -q " $name " <<<" $(taps)" && [ "$(n_taps)" = 2 ]; then
			echo "after kill -9: taps: $(taps)"
			return 0
		fi
		sleep 0.1
	done
	echo "after kill -9, 5 s: taps: $(taps)"
	return 1
}
check "kill -9 of the tap's holder: its tap device gone within 5 s, two spares again" tap_crash_test
tap_lost_test() {
	probe_bg "$TMP/taplost" tap-send --dst-ip $IP1 --dport 9997 --count 1 --until-gone 10 \
		--dst-mac "$(ip -n "$NS1" -j link show eth0 | json "d[0]['address']")"
	local pid=$BG
	wait_for "$TMP/taplost" sent || return 1
	h1tap_stop || return 1
	wait $pid
	local rc=$?
	cat "$TMP/taplost"
	[ $rc = 0 ] && grep -q 'gone_after_s' "$TMP/taplost" && [ "$(open_fds)" = "4 0" ]
}
check "peer's XDP program gone: the endpoint's tap ended (its next write fails), new endpoints get 4 fds" \
	tap_lost_test
check "viaductd on the peer again" h1tap_start
check "spare taps there again" spares_ready
probe_bg "$TMP/tapshut" --uid 65534 --gid 65534 open --hold
wait_for "$TMP/tapshut" ready || true
TAPSHUT=$BG

# ---- shutdown ---------------------------------------------------------------------------------------
shutdown_test() {
	local pid n
	pid=$(daemon_pid)
	kill -TERM "$pid"
	for n in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	! kill -0 "$pid" 2>/dev/null && [ ! -e "$SOCK" ] && [ ! -e "$PIDF" ] && [ "$(xdp_mode "$NS0")" = 0 ]
}
check "SIGTERM: exits, socket and pidfile removed, no XDP program left" shutdown_test
check "SIGTERM: every tap deleted, the spares and one an application still holds" \
	bash -c "grep -q '\"tap_name\": \"vdtx' '$TMP/tapshut' && kill -0 $TAPSHUT && \
		! ip -n '$NS0' -o link show | grep -q vdtx"
kill -9 $TAPSHUT 2>/dev/null || true
notap_test() {
	in0 "$DAEMON" --iface eth0 --socket "$SOCK" --pidfile "$RUN/notap.pid" --log "$TMP/notap.log" --daemon \
		--no-tap-tx || return 1
	sleep 1.5 # past a capability check (1 s): nothing may make a spare either
	local got
	got=$(open_fds)
	echo "--no-tap-tx: fds, tap_tx_max: $got; taps: $(taps)"
	kill -TERM "$(cat "$RUN/notap.pid")"
	for _ in $(seq 50); do [ -e "$RUN/notap.pid" ] || break; sleep 0.1; done
	[ "$got" = "4 0" ] && [ "$(n_taps)" = 0 ]
}
check "--no-tap-tx (peer with XDP): 4 fds, no tap made" notap_test
check "viaductd on the peer stops" h1tap_stop
check "ping after viaductd stopped" in1 ping -c 1 -W 1 $IP0

generic_test() {
	in1 "$DAEMON" --iface eth0 --socket "$RUN/h1.sock" --pidfile "$RUN/h1.pid" --log "$TMP/h1.log" \
		--xdp-mode generic --daemon || return 1
	local mode pid
	mode=$(xdp_mode "$NS1")
	pid=$(cat "$RUN/h1.pid")
	kill -TERM "$pid"
	for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	echo "mode while running: $mode, after: $(xdp_mode "$NS1")"
	[ "$mode" = 2 ] && [ "$(xdp_mode "$NS1")" = 0 ]
}
check "--xdp-mode generic attaches in skb mode and detaches on exit" generic_test

finish
