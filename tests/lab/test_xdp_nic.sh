#!/bin/sh
# SPDX-License-Identifier: MIT
# Lab test of the xdp nic backend (root): two namespaces joined by a 4-queue veth, viaductd in each, and
# xdp_pingpong run as uid 65534 (no capability) in both RX modes, busy-polled and blocking, plus interop
# with a kernel UDP socket in both directions. Fails on any lost reply or malformed frame.
#   usage: tests/lab/test_xdp_nic.sh [BUILD_DIR] [NAME]     (default: build, vdxnic)
set -u
BUILD=${1:-build}
NAME=${2:-vdxnic}
BIN=$(cd "$BUILD/bin" && pwd) || exit 1
RUN=/run/viaduct/$NAME
NB="setpriv --reuid 65534 --regid 65534 --groups 65534"
fail=0

[ "$(id -u)" = 0 ] || { echo "SKIP: needs root"; exit 77; }
[ -x "$BIN/xdp_pingpong" ] && [ -x "$BIN/viaductd" ] || { echo "missing $BIN/xdp_pingpong or viaductd"; exit 1; }

down() {
	for i in 0 1; do
		p=$(cat "$RUN/h$i/viaductd.pid" 2>/dev/null) && [ -n "$p" ] && kill "$p" 2>/dev/null
	done
	sleep 0.3
	for i in 0 1; do ip netns del "$NAME-h$i" 2>/dev/null; done
	rm -rf "$RUN"
}
trap down EXIT INT TERM
down

for i in 0 1; do ip netns add "$NAME-h$i" || exit 1; done
ip link add "${NAME}a" numtxqueues 4 numrxqueues 4 type veth peer name "${NAME}b" numtxqueues 4 numrxqueues 4 || exit 1
ip link set "${NAME}a" netns "$NAME-h0"
ip link set "${NAME}b" netns "$NAME-h1"
ip -n "$NAME-h0" link set "${NAME}a" name eth0
ip -n "$NAME-h1" link set "${NAME}b" name eth0
for i in 0 1; do
	ip -n "$NAME-h$i" addr add "10.99.0.$((i + 1))/24" dev eth0
	ip -n "$NAME-h$i" link set eth0 up
	ip -n "$NAME-h$i" link set lo up
	mkdir -p "$RUN/h$i"
	ip netns exec "$NAME-h$i" "$BIN/viaductd" --iface eth0 --socket "$RUN/h$i/viaductd.sock" \
		--pidfile "$RUN/h$i/viaductd.pid" --log "$RUN/h$i/viaductd.log" --group nogroup --daemon || exit 1
done

# case NAME "server args" "client args": one ping-pong run, checked. Each case has its own server port:
# viaductd may keep a closed endpoint's port reserved for a moment, and a kernel socket cannot bind it then.
port=7000
case_run() {
	port=$((port + 1))
	ip netns exec "$NAME-h1" env VIADUCT_SOCKET="$RUN/h1/viaductd.sock" $NB "$BIN/xdp_pingpong" server \
		--local 10.99.0.2:$port --seconds 10 $2 >"$RUN/srv.out" 2>&1 &
	spid=$!
	sleep 0.5
	out=$(timeout 15 ip netns exec "$NAME-h0" env VIADUCT_SOCKET="$RUN/h0/viaductd.sock" $NB \
		"$BIN/xdp_pingpong" client --local 10.99.0.1:7001 --peer 10.99.0.2:$port --iters 3000 --warmup 100 \
		--seconds 10 $3 2>"$RUN/cli.err")
	rc=$?
	wait $spid
	json=$(echo "$out" | grep '^{')
	if [ $rc -ne 0 ] || ! echo "$json" | grep -q '"n":3000,"lost":0' || grep -q 'malformed [1-9]' "$RUN/srv.out" "$RUN/cli.err"; then
		echo "FAIL $1: rc=$rc $json"
		cat "$RUN/srv.out" "$RUN/cli.err"
		fail=1
	else
		echo "ok   $1: $json"
	fi
}

case_run direct-busy "--rx direct" "--rx direct"
case_run steered-busy "--rx steered" "--rx steered"
case_run direct-blocking "--rx direct --wait" "--rx direct --wait"
case_run steered-blocking "--rx steered --wait" "--rx steered --wait"
case_run interop-xdp-to-kernel "--backend kudp" "--rx direct"
case_run interop-kernel-to-xdp-direct "--rx direct" "--backend kudp"
case_run interop-kernel-to-xdp-steered "--rx steered" "--backend kudp"
exit $fail
