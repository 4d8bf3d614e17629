#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Lab test of the messaging engine (include/viaduct/msg.h) over the real xdp backend (root). Every message
# is checked by tests/lab/msg_peer.c: sequence number and CRC-32C of its content, exactly once, intact, in
# order per (sender, receiver), both directions at once, sizes 1 B .. 4 MiB (issue 3, item 5):
#   a. clean lab, xdp direct <-> xdp direct, 256 MiB each way (and 64 MiB steered <-> direct);
#   b. lab through the impairment relay ("loss 5% duplicate 1% reorder 25% delay 100us corrupt 1%"),
#      512 MiB each way (1 GiB in total);
#   c. udp backend <-> xdp interop, both directions;
#   d. a peer killed with SIGKILL: the survivor's pending requests complete with an error within
#      peer_timeout + rto_max (docs/msg-protocol.md section 9);
#   e. every viaduct program runs as uid 65534 with no capability (lab up --group nogroup);
#   f. fuzzed datagrams fired at an xdp endpoint during a transfer are dropped and counted;
#   g. one 1 GiB message over the clean lab.
# usage: tests/lab/test_msg_lab.sh [BUILD_DIR]
set -uo pipefail
BUILD=$(cd "${1:-build}" && pwd) || exit 1
V=$BUILD/bin/viaduct
PEER=$BUILD/tests/msg_peer
CLEAN=${VD_TEST_LAB:-vdGc}
IMP=${VD_TEST_LAB_NETEM:-vdGn}
NETEM="loss 5% duplicate 1% reorder 25% delay 100us corrupt 1%"
[ "$(id -u)" -eq 0 ] || { echo "test_msg_lab: needs root" >&2; exit 1; }
for b in "$V" "$PEER"; do [ -x "$b" ] || { echo "test_msg_lab: $b not built" >&2; exit 1; }; done

. "$(dirname "$0")/lib.sh"
lab_scratch "$CLEAN" "$IMP"
start=$(date +%s)

"$V" lab down --name "$CLEAN" >/dev/null 2>&1
"$V" lab down --name "$IMP" >/dev/null 2>&1
"$V" lab up --name "$CLEAN" --group nogroup >/dev/null || { echo "FAIL lab up $CLEAN"; exit 1; }
"$V" lab up --name "$IMP" --group nogroup --netem "$NETEM" >/dev/null || { echo "FAIL lab up $IMP"; exit 1; }

# Run in a lab host as uid 65534 (group nogroup may use viaductd's socket): "$V" lab exec --name LAB hI --
# $NOBODY CMD. Written out at each use (not a function) so that $! of a background one is the program
# itself (lab exec and setpriv both exec), which case d kills.
NOBODY="setpriv --reuid 65534 --regid 65534 --init-groups"
H0=10.99.0.1 H1=10.99.0.2
port=7500

# pair NAME LAB LIMIT_S "h1 options" "h0 options" [common options]: role b in h1, role a in h0, both
# running `msg_peer run` against each other; both must exit 0 within LIMIT_S seconds.
pair() {
	local name=$1 lab=$2 limit=$3 opt1=$4 opt0=$5 common=${6:-}
	port=$((port + 1))
	# shellcheck disable=SC2086 # options are word lists
	"$V" lab exec --name "$lab" h1 -- $NOBODY "$PEER" run --role b --local $H1:$port --peer $H0:$port \
		--timeout-s "$limit" $opt1 $common \
		>"$tmp/b" 2>&1 &
	local bpid=$!
	local t0
	t0=$(date +%s.%N)
	# shellcheck disable=SC2086
	timeout $((limit + 10)) "$V" lab exec --name "$lab" h0 -- $NOBODY "$PEER" run --role a --local $H0:$port \
		--peer $H1:$port --timeout-s "$limit" $opt0 \
		$common >"$tmp/a" 2>&1
	local arc=$?
	wait "$bpid"
	local brc=$?
	local dt
	dt=$(echo "$(date +%s.%N) - $t0" | bc)
	if [ "$arc" -eq 0 ] && [ "$brc" -eq 0 ]; then
		ok "$name ($(printf %.1f "$dt") s)"
		echo "     h0: $(tail -n 1 "$tmp/a")"
		echo "     h1: $(tail -n 1 "$tmp/b")"
	else
		ko "$name (h0 rc $arc, h1 rc $brc)"
		sed 's/^/    h0: /' "$tmp/a" | tail -n 15; sed 's/^/    h1: /' "$tmp/b" | tail -n 15
	fi
}

# a. clean lab, both directions at once.
pair "a. clean, xdp direct <-> xdp direct, 256 MiB each way" "$CLEAN" 60 \
	"--backend xdp --mode direct" "--backend xdp --mode direct" "--bytes 256M --seed 1"
pair "a. clean, xdp steered <-> xdp direct, 64 MiB each way" "$CLEAN" 60 \
	"--backend xdp --mode steered" "--backend xdp --mode direct" "--bytes 64M --seed 2"

# b. through the impairment relay: 1 GiB in total, both directions at once.
pair "b. netem \"$NETEM\", xdp <-> xdp, 512 MiB each way" "$IMP" 120 \
	"--backend xdp --mode direct" "--backend xdp --mode direct" "--bytes 512M --seed 3"

# c. interop: the udp backend (a kernel socket) on one side, xdp on the other, both ways round.
pair "c. clean, udp backend (h1) <-> xdp (h0), 64 MiB each way" "$CLEAN" 60 \
	"--backend udp" "--backend xdp" "--bytes 64M --seed 4"
pair "c. netem, xdp (h1) <-> udp backend (h0), 64 MiB each way" "$IMP" 60 \
	"--backend xdp" "--backend udp" "--bytes 64M --seed 5"

# d. peer disappearance: h1 is killed with SIGKILL in the middle of a transfer; h0 must get the
# peer-gone notice, and every pending send and matched receive must complete with an error:
#   - h1 stays dead: -ETIMEDOUT within peer_timeout + rto_max (1 s) of the kill (docs/msg-protocol.md
#     section 9), plus 0.5 s for this script;
#   - h1 comes back on the same address at once: the new incarnation's frames (or its RESET answer to
#     ours) tell h0 the old one is gone, -ECONNRESET well before any timeout (bound 1.5 s).
PTO=2000
# gone_case NAME RESTART EXPECTED_ERRNO BOUND_MS
gone_case() {
	local name=$1 restart=$2 want=$3 bound=$4
	port=$((port + 1))
	# shellcheck disable=SC2086
	"$V" lab exec --name "$CLEAN" h1 -- $NOBODY "$PEER" run --role b --backend xdp --local $H1:$port \
		--peer $H0:$port --bytes 8G --timeout-s 60 >"$tmp/b" 2>&1 &
	local bpid=$!
	# shellcheck disable=SC2086
	"$V" lab exec --name "$CLEAN" h0 -- $NOBODY "$PEER" gone --role a --backend xdp --local $H0:$port \
		--peer $H1:$port --bytes 8G --timeout-s 30 --peer-timeout-ms $PTO >"$tmp/a" 2>&1 &
	local apid=$!
	sleep 1.5
	kill -9 "$bpid"
	local kill_ns
	kill_ns=$(date +%s%N)
	{ wait "$bpid"; } 2>/dev/null # no "Killed" job notice
	local npid=
	if [ "$restart" -eq 1 ]; then
		# The new incarnation cannot finish (h0 no longer talks to it): it gives up after 5 s.
		# shellcheck disable=SC2086
		"$V" lab exec --name "$CLEAN" h1 -- $NOBODY "$PEER" run --role b --backend xdp \
			--local $H1:$port --peer $H0:$port --bytes 1M --timeout-s 5 >"$tmp/b2" 2>&1 &
		npid=$!
	fi
	wait "$apid" # bounded: msg_peer gives up after --timeout-s 30
	local arc=$?
	[ -n "$npid" ] && { wait "$npid"; } 2>/dev/null
	local gone_ns err
	gone_ns=$(awk '$1 == "GONE" { print $2 }' "$tmp/a")
	err=$(awk '$1 == "GONE" { print $3 }' "$tmp/a")
	if [ "$arc" -eq 0 ] && [ -n "$gone_ns" ]; then
		local ms=$(( (gone_ns - kill_ns) / 1000000 ))
		if [ "$ms" -ge 0 ] && [ "$ms" -le "$bound" ] && [ "$err" = "$want" ]; then
			ok "$name: detected after $ms ms (bound $bound ms), error $err, pending requests failed"
			echo "     h0: $(tail -n 1 "$tmp/a")"
		else
			ko "$name: detected after $ms ms (bound $bound ms), error $err (want $want)"
		fi
	else
		ko "$name: not detected (rc $arc)"
		sed 's/^/    h0: /' "$tmp/a" | tail -n 15
	fi
}
gone_case "d. peer killed" 0 -110 $((PTO + 1000 + 500))
gone_case "d. peer killed and restarted on its address" 1 -104 1500

# f. malformed frames on the real backend: while h0 and h1 exchange 128 MiB each way, a kernel UDP socket in
# h0 fires fuzzed datagrams at h1's xdp endpoint (random bytes; the right magic and version with random
# fields; whole headers with a wrong checksum; truncated headers). The transfer must still verify, and h1
# must have dropped and counted them (vd_ep_stats.malformed; a few may be lost to a full ring).
cat >"$tmp/fuzz.py" <<'PY'
import os, random, socket, struct, sys
dst = (sys.argv[1], int(sys.argv[2])); n = int(sys.argv[3]); rnd = random.Random(7)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(n):
    k = i % 4
    if k == 0:
        d = bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(0, 200)))
    elif k == 1:
        d = struct.pack(">HBB", 0x5644, 1, rnd.randrange(0, 8)) + os.urandom(rnd.randrange(0, 120))
    elif k == 2:   # a well-formed DATA header but a checksum that cannot match (0xdead, not computed)
        d = struct.pack(">HBBBBHIIIIHHQ", 0x5644, 1, 1, 0, 0, 0xdead, 1234, 0, 1, 0, 0, 0, 0) + os.urandom(40)
    else:
        d = struct.pack(">HBB", 0x5644, 1, 2)[: rnd.randrange(0, 4)]
    s.sendto(d, dst)
print(n)
PY
port=$((port + 1))
NFUZZ=4000
# shellcheck disable=SC2086
"$V" lab exec --name "$CLEAN" h1 -- $NOBODY "$PEER" run --role b --backend xdp --local $H1:$port \
	--peer $H0:$port --bytes 128M --seed 7 --timeout-s 60 >"$tmp/b" 2>&1 &
bpid=$!
# shellcheck disable=SC2086
"$V" lab exec --name "$CLEAN" h0 -- $NOBODY "$PEER" run --role a --backend xdp --local $H0:$port \
	--peer $H1:$port --bytes 128M --seed 7 --timeout-s 60 >"$tmp/a" 2>&1 &
apid=$!
sleep 0.2
# shellcheck disable=SC2086
"$V" lab exec --name "$CLEAN" h0 -- $NOBODY timeout 30 python3 "$tmp/fuzz.py" $H1 $port $NFUZZ >/dev/null 2>&1
frc=$?
wait "$apid"
arc=$?
wait "$bpid"
brc=$?
mal=$(sed -n 's/.* malformed \([0-9]*\) .*/\1/p' "$tmp/b" | tail -n 1)
if [ "$frc" -eq 0 ] && [ "$arc" -eq 0 ] && [ "$brc" -eq 0 ] && [ "${mal:-0}" -ge $((NFUZZ * 9 / 10)) ]; then
	ok "f. $NFUZZ fuzzed datagrams during a transfer: $mal dropped and counted, transfer verified"
	echo "     h1: $(tail -n 1 "$tmp/b")"
else
	ko "f. fuzzed datagrams (fuzzer rc $frc, h0 rc $arc, h1 rc $brc, malformed ${mal:-?} of $NFUZZ)"
	sed 's/^/    h0: /' "$tmp/a" | tail -n 5; sed 's/^/    h1: /' "$tmp/b" | tail -n 5
fi

# g. one 1 GiB message (h0 -> h1) over the clean lab.
pair "g. clean, one 1 GiB message h0 -> h1" "$CLEAN" 90 \
	"--backend xdp" "--backend xdp" "--bytes 1G --bytes-b 0 --fixed-size 1G --inflight 1"

echo "test_msg_lab: $(( $(date +%s) - start )) s"
finish
