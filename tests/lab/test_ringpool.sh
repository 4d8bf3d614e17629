#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Lab test of viaductd's spare steering rings and UMEMs (src/daemon/ringpool.c, root): endpoints take a
# ring installed ahead in vd_rings and a pre-faulted UMEM; when they go, the worker thread replaces or
# removes their ring. Checks that a spare is never replaced under the endpoint that took it (every
# process's connections work), that the map ends with exactly the spares (nothing leaks, after normal exits,
# kill -9 and more endpoints at once than there are spares), and that the daemon reported no failure.
# `viaduct stat` shows the spares (ids with rings, the UMEM, the port pool, held ports): its numbers must
# agree with vd_rings and with its own list of held ports.
#
# usage: tests/lab/test_ringpool.sh BUILD_DIR     (env VD_TEST_LAB: lab name, default vdCNrp)
set -uo pipefail

BUILD=$(realpath "${1:?usage: $0 BUILD_DIR}")
V=$BUILD/bin/viaduct
LAB=${VD_TEST_LAB:-vdCNrp}
SPARES=2 # RP_SPARES in ringpool.c
PORT=17390
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || { echo "test_ringpool.sh: needs root"; exit 1; }
command -v bpftool >/dev/null || { echo "test_ringpool.sh: needs bpftool (scripts/deps.sh installs it)"; exit 1; }
TMP=$(mktemp -d /tmp/vd-test-ringpool.XXXXXX)
SRV=

cleanup() {
	[ -n "$SRV" ] && kill "$SRV" 2>/dev/null
	wait 2>/dev/null
	"$V" lab down --name "$LAB" >/dev/null 2>&1
	rm -rf "$TMP"
}
trap cleanup EXIT

# rings_in_map HOST: entries of that host's viaductd vd_rings map (found through the daemon's fds).
rings_in_map() {
	local pid id f
	pid=$(cat "/run/viaduct/lab/$LAB-$1/viaductd.pid")
	for f in /proc/"$pid"/fdinfo/*; do
		id=$(awk '/^map_id/ {print $2}' "$f" 2>/dev/null)
		[ -n "$id" ] || continue
		if bpftool map show id "$id" 2>/dev/null | grep -q "name vd_rings"; then
			bpftool map dump id "$id" 2>/dev/null | grep -c '^key'
			return
		fi
	done
	echo -1
}

# wait_rings HOST N: up to 5 s for the map to hold N entries (the worker runs in the background).
wait_rings() {
	for _ in $(seq 50); do
		[ "$(rings_in_map "$1")" = "$2" ] && return 0
		sleep 0.1
	done
	echo "vd_rings of $1 holds $(rings_in_map "$1") entries, expected $2"
	return 1
}

client() { # client TAG SECONDS MAX: one viaduct run process of connect+close
	"$V" lab exec --name "$LAB" h0 -- timeout 20 "$V" run -- "$V" perf conn-client --addr 10.99.0.2:$PORT \
		--seconds "$2" --max "$3" --path viaduct >"$TMP/c$1.out" 2>&1
}

client_ok() { # client_ok TAG: it printed a result with connections and no failure
	grep -q '"failed":0' "$TMP/c$1.out" && ! grep -q '"conns":0,' "$TMP/c$1.out"
}

endpoints() { # endpoints HOST: live endpoints in `viaduct stat`
	"$V" lab exec --name "$LAB" "$1" -- "$V" stat 2>/dev/null | sed -n 's/.*interface(s), \([0-9]*\) endpoint.*/\1/p'
}

# spare HOST KEY: KEY of the interface's spares record in `viaduct stat --json` (one interface per host).
spare() {
	"$V" lab exec --name "$LAB" "$1" -- "$V" stat --json 2>/dev/null | grep -o "\"$2\": [0-9]*" | head -n 1 |
		awk '{print $2}'
}

# wait_spare HOST KEY TEST-OP VALUE: up to 5 s for `[ KEY TEST-OP VALUE ]` (the worker and the port pool
# fill in the background).
wait_spare() {
	local v
	for _ in $(seq 50); do
		v=$(spare "$1" "$2")
		[ -n "$v" ] && [ "$v" "$3" "$4" ] && return 0
		sleep 0.1
	done
	echo "viaduct stat on $1: $2 = '$v', expected $3 $4"
	"$V" lab exec --name "$LAB" "$1" -- "$V" stat
	return 1
}

# stat_agrees_with_map HOST: no endpoint, so every vd_rings entry is a spare: the counts match.
stat_agrees_with_map() {
	local s m
	s=$(spare "$1" spare_eps)
	m=$(rings_in_map "$1")
	echo "viaduct stat spare_eps=$s, vd_rings entries=$m, ring_jobs=$(spare "$1" ring_jobs)"
	[ -n "$s" ] && [ "$s" = "$m" ] && [ "$(spare "$1" ring_jobs)" = 0 ]
}

# held_agree HOST: the held TCP count equals the held TCP ports `viaduct stat` lists, and is not 0.
held_agree() {
	local n l
	n=$(spare "$1" held_tcp)
	l=$("$V" lab exec --name "$LAB" "$1" -- "$V" stat --json 2>/dev/null | grep -o '{"proto": "tcp"[^}]*"held": true' |
		wc -l)
	echo "held_tcp=$n, held tcp ports listed=$l"
	[ -n "$n" ] && [ "$n" -gt 0 ] && [ "$n" = "$l" ]
}

# stat_table HOST: the text output has the spares table with this interface's row.
stat_table() {
	"$V" lab exec --name "$LAB" "$1" -- "$V" stat >"$TMP/stat.txt" 2>&1
	cat "$TMP/stat.txt"
	grep -q 'SPARE_EPS.*POOL_TCP.*HELD_TCP' "$TMP/stat.txt" &&
		grep -Eq "^eth0 +$SPARES +0 +[0-9.]+M +[0-9]+/[0-9]+ +[0-9]+/[0-9]+ +[0-9]+ +[0-9]+\$" "$TMP/stat.txt"
}

"$V" lab down --name "$LAB" >/dev/null 2>&1
if ! "$V" lab up --name "$LAB" --hosts 2 >"$TMP/up.log" 2>&1; then
	ko "lab up" "$TMP/up.log"
	finish
	exit 1
fi
ok "lab up"
check "spares installed ahead at start-up ($SPARES rings in vd_rings, no endpoint)" wait_rings h0 $SPARES
check "viaduct stat: $SPARES spare endpoint ids, as many as vd_rings holds" stat_agrees_with_map h0
check "viaduct stat: a spare UMEM ready" wait_spare h0 spare_umem_bytes -gt 0
check "viaduct stat: the text output has the spares row" stat_table h0

"$V" lab exec --name "$LAB" h1 -- "$V" run -- "$V" perf conn-server --addr 10.99.0.2:$PORT --seconds 60 \
	>"$TMP/srv.out" 2>&1 &
SRV=$!
sleep 1

all=1
for i in 1 2 3 4; do
	client "s$i" 2 30
	client_ok "s$i" || { all=0; cat "$TMP/cs$i.out"; }
done
[ $all = 1 ] && ok "4 processes one after the other: each one's 30 connections work" ||
	ko "4 processes one after the other: each one's 30 connections work"
check "after they exit: back to $SPARES rings (old ones replaced or removed)" wait_rings h0 $SPARES
check "no endpoint left in viaductd" test "$(endpoints h0)" = 0
check "viaduct stat after them: spares agree with vd_rings" stat_agrees_with_map h0
check "viaduct stat: the closed connections' ports are held, as many as listed" held_agree h0
check "viaduct stat: the TCP port pool refilled (idle daemon)" wait_spare h0 pool_tcp -gt 0
check "viaduct stat: the pool within its target" test "$(spare h0 pool_tcp)" -le "$(spare h0 pool_tcp_target)"

# More endpoints at once than spares: the last ones install their rings themselves.
for i in 1 2 3 4; do client "p$i" 2 40 & done
wait_all=1
for j in $(jobs -p); do [ "$j" = "$SRV" ] || wait "$j" || true; done
for i in 1 2 3 4; do client_ok "p$i" || { wait_all=0; cat "$TMP/cp$i.out"; }; done
[ $wait_all = 1 ] && ok "4 processes at once (more than $SPARES spares): all connections work" ||
	ko "4 processes at once (more than $SPARES spares): all connections work"
check "after them: back to $SPARES rings" wait_rings h0 $SPARES

# kill -9: the endpoint is reclaimed and its ring goes like any other.
"$V" lab exec --name "$LAB" h0 -- "$V" run -- "$V" perf conn-client --addr 10.99.0.2:$PORT --seconds 10 \
	--path viaduct >"$TMP/ck.out" 2>&1 &
K=$!
sleep 1
check "a running client has its endpoint" test "$(endpoints h0)" = 1
kill -9 $K 2>/dev/null
wait $K 2>/dev/null
check "after kill -9: reclaimed, back to $SPARES rings" wait_rings h0 $SPARES
check "after kill -9: no endpoint left" test "$(endpoints h0)" = 0
client k2 1 20
check "a process after the kill -9 works" client_ok k2

if grep -E "steering ring slot|spare UMEM" /run/viaduct/lab/$LAB-h0/viaductd.log /run/viaduct/lab/$LAB-h1/viaductd.log \
	>"$TMP/warn" 2>&1; then
	ko "no ring pool failure in the daemons' logs" "$TMP/warn"
else
	ok "no ring pool failure in the daemons' logs"
fi

finish
