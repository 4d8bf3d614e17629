#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Interop lab test of viaduct's sockets (include/viaduct/socket.h: the user-level TCP/IP of src/lib/tcp and
# src/lib/sock) against the Linux kernel's stack (issue 4, item 5). One lab with the impairment relay
# ("loss 1% duplicate 1% reorder 25% delay 100us"); viaduct (tests/lab/sock_peer.c, as uid 65534 with no
# capability) on h0, the kernel's sockets (python3) on h1:
#   a. TCP viaduct -> kernel and b. TCP kernel -> viaduct, at the same time, SIZE each way (default 200 MiB),
#      verified by SHA-256 of what was sent against what was received;
#   c. UDP viaduct pings, kernel echoes and d. kernel pings, viaduct echoes, at the same time: every echoed
#      datagram verified, lost ones resent;
#   e. (clean lab) and f. (impaired lab) a kernel TCP echo server; on the viaduct side one thread sends while
#      another, on the same socket and stack, receives the echo (a blocked recv and a send making progress
#      together), SHA-256 both ways.
# usage: tests/lab/test_sock_interop.sh [BUILD_DIR]   (env VD_SOCK_INTEROP_BYTES=200M, VD_TEST_LAB=vdC1,
#        VD_TEST_LAB_CLEAN=vdC2, VD_SOCK_INTEROP_LIMIT_S=60)
set -uo pipefail
BUILD=$(cd "${1:-build}" && pwd) || exit 1
V=$BUILD/bin/viaduct
PEER=$BUILD/tests/sock_peer
LAB=${VD_TEST_LAB:-vdC1}
CLEAN=${VD_TEST_LAB_CLEAN:-vdC2}
BYTES=${VD_SOCK_INTEROP_BYTES:-200M}
NETEM="loss 1% duplicate 1% reorder 25% delay 100us"
LIMIT=45   # seconds for the UDP and duplex cases
# The TCP pair: 200 MiB each way at once through the relay took 13 s (viaduct -> kernel 18 MB/s, kernel ->
# viaduct 24 MB/s; the kernel alone: 27 MB/s one way). The bound leaves room for a busy machine.
LIMIT_TCP=${VD_SOCK_INTEROP_LIMIT_S:-60}
[ "$(id -u)" -eq 0 ] || { echo "test_sock_interop: needs root" >&2; exit 1; }
for b in "$V" "$PEER"; do [ -x "$b" ] || { echo "test_sock_interop: $b not built" >&2; exit 1; }; done
command -v python3 >/dev/null || { echo "test_sock_interop: needs python3" >&2; exit 1; }

. "$(dirname "$0")/lib.sh"
lab_scratch "$LAB" "$CLEAN"

# The kernel side: plain python3 sockets.
cat >"$tmp/kpeer.py" <<'PY'
import hashlib, os, random, select, socket, sys, time
mode = sys.argv[1]
def hostport(s):
    h, p = s.rsplit(":", 1)
    return (h, int(p))
def result(mode, n, h, t0, extra=""):
    dt = time.monotonic() - t0
    print("RESULT %s bytes %d sha256 %s secs %.2f MBps %.1f %s" % (mode, n, h.hexdigest(), dt, n / dt / 1e6 if dt else 0, extra), flush=True)
if mode == "tcp-recv":
    l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(("0.0.0.0", int(sys.argv[2]))); l.listen(4)
    print("LISTENING", flush=True)
    c, _ = l.accept(); h = hashlib.sha256(); n = 0; t0 = time.monotonic()
    while True:
        b = c.recv(1 << 20)
        if not b:
            break
        h.update(b); n += len(b)
    c.close(); result(mode, n, h, t0)
elif mode == "tcp-send":
    total = int(sys.argv[3]); rnd = random.Random(int(sys.argv[4]))
    c = socket.create_connection(hostport(sys.argv[2]), timeout=60)
    h = hashlib.sha256(); n = 0; t0 = time.monotonic()
    while n < total:
        b = rnd.randbytes(min(1 << 20, total - n)); h.update(b); c.sendall(b); n += len(b)
    c.shutdown(socket.SHUT_WR)
    if c.recv(1) != b"":
        sys.exit("peer sent data")
    c.close(); result(mode, n, h, t0)
elif mode == "tcp-echo":
    l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(("0.0.0.0", int(sys.argv[2]))); l.listen(4)
    print("LISTENING", flush=True)
    c, _ = l.accept(); n = 0; t0 = time.monotonic()
    while True:
        b = c.recv(1 << 20)
        if not b:
            break
        c.sendall(b); n += len(b)
    c.close(); result(mode, n, hashlib.sha256(), t0)
elif mode == "udp-echo":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", int(sys.argv[2])))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    print("LISTENING", flush=True)
    s.settimeout(float(sys.argv[3])); n = 0; t0 = time.monotonic()
    try:
        while True:
            b, a = s.recvfrom(65536); s.sendto(b, a); n += 1
    except socket.timeout:
        pass
    result(mode, n, hashlib.sha256(), t0, "datagrams %d" % n)
    sys.exit(0 if n else 1)
elif mode == "udp-ping":
    dst = hostport(sys.argv[2]); count = int(sys.argv[3]); size = int(sys.argv[4])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.connect(dst); s.setblocking(False)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    data = [i.to_bytes(4, "little") + bytes(4) + os.urandom(size - 8) for i in range(count)]
    done = [False] * count; sent = [0.0] * count; base = nxt = acked = bad = resent = 0; t0 = time.monotonic()
    while acked < count:
        now = time.monotonic()
        for i in range(base, min(count, base + 256)):
            if done[i] or (i < nxt and now - sent[i] < 0.03):
                continue
            s.send(data[i]); sent[i] = now
            if i < nxt: resent += 1
            nxt = max(nxt, i + 1)
        select.select([s], [], [], 0.01)
        while True:
            try:
                b = s.recv(65536)
            except BlockingIOError:
                break
            i = int.from_bytes(b[:4], "little")
            if i >= count or b != data[i]:
                bad += 1; continue
            if not done[i]:
                done[i] = True; acked += 1
        while base < count and done[base]:
            base += 1
    h = hashlib.sha256()
    for d in data: h.update(d)
    result(mode, count * size, h, t0, "datagrams %d bad %d resent %d" % (count, bad, resent))
    sys.exit(1 if bad else 0)
PY

"$V" lab down --name "$LAB" >/dev/null 2>&1
"$V" lab up --name "$LAB" --group nogroup --netem "$NETEM" >/dev/null || { echo "FAIL lab up $LAB"; exit 1; }
NOBODY="setpriv --reuid 65534 --regid 65534 --init-groups"
H0=10.99.0.1 H1=10.99.0.2

show() { sed "s/^/    $1: /" "$2" | tail -n 12; }

# ---- a + b: TCP both directions at once ----
t0=$(date +%s)
"$V" lab exec --name "$LAB" h1 -- timeout "$LIMIT_TCP" python3 "$tmp/kpeer.py" tcp-recv 9001 >"$tmp/a_k" 2>&1 &
ka=$!
# shellcheck disable=SC2086
"$V" lab exec --name "$LAB" h0 -- $NOBODY "$PEER" tcp-recv 9002 --timeout-s $LIMIT_TCP >"$tmp/b_v" 2>&1 &
vb=$!
wait_listening "$tmp/a_k" && wait_listening "$tmp/b_v" || echo "    (a receiver did not report LISTENING)"
# shellcheck disable=SC2086
"$V" lab exec --name "$LAB" h0 -- $NOBODY "$PEER" tcp-send $H1:9001 "$BYTES" --seed 11 --timeout-s $LIMIT_TCP \
	>"$tmp/a_v" 2>&1 &
va=$!
nbytes=$(python3 -c "import sys; s=sys.argv[1]; m={'K':1<<10,'M':1<<20,'G':1<<30}; print(int(float(s[:-1])*m[s[-1]]) if s[-1] in m else int(s))" "$BYTES")
"$V" lab exec --name "$LAB" h1 -- timeout "$LIMIT_TCP" python3 "$tmp/kpeer.py" tcp-send $H0:9002 "$nbytes" 12 \
	>"$tmp/b_k" 2>&1 &
kb=$!
wait $va; rva=$?
wait $ka; rka=$?
wait $kb; rkb=$?
wait $vb; rvb=$?
dt=$(( $(date +%s) - t0 ))
check_pair "a. TCP viaduct (h0) -> kernel (h1) through \"$NETEM\"" "$nbytes" "$tmp/a_v" $rva "$tmp/a_k" $rka
check_pair "b. TCP kernel (h1) -> viaduct (h0) through \"$NETEM\"" "$nbytes" "$tmp/b_k" $rkb "$tmp/b_v" $rvb
echo "     a+b took $dt s; viaduct sender: $(grep '^stack:' "$tmp/a_v" | tail -n 1)"

# ---- c + d: UDP both ways at once ----
COUNT=5000 SIZE=1400
"$V" lab exec --name "$LAB" h1 -- timeout "$LIMIT" python3 "$tmp/kpeer.py" udp-echo 9003 3 >"$tmp/c_k" 2>&1 &
kc=$!
# shellcheck disable=SC2086
"$V" lab exec --name "$LAB" h0 -- $NOBODY "$PEER" udp-echo 9004 --idle-s 3 --timeout-s $LIMIT >"$tmp/d_v" 2>&1 &
vd=$!
wait_listening "$tmp/c_k" && wait_listening "$tmp/d_v" || echo "    (an echo server did not report LISTENING)"
# shellcheck disable=SC2086
"$V" lab exec --name "$LAB" h0 -- $NOBODY "$PEER" udp-ping $H1:9003 $COUNT $SIZE --timeout-s $LIMIT >"$tmp/c_v" 2>&1 &
vc=$!
"$V" lab exec --name "$LAB" h1 -- timeout "$LIMIT" python3 "$tmp/kpeer.py" udp-ping $H0:9004 $COUNT $SIZE >"$tmp/d_k" 2>&1 &
kd=$!
wait $vc; rvc=$?
wait $kd; rkd=$?
wait $kc; rkc=$?
wait $vd; rvd=$?
udp_case() { # NAME PING_FILE PING_RC ECHO_FILE ECHO_RC
	if [ "$3" -eq 0 ] && [ "$5" -eq 0 ] && grep -q "datagrams $COUNT bad 0" "$2"; then
		ok "$1: $COUNT x $SIZE B echoed and verified ($(awk '$1 == "RESULT" { print "resent " $NF ", " $10 " MB/s" }' "$2"))"
	else
		ko "$1 (ping rc $3, echo rc $5)"
		show ping "$2"; show echo "$4"
	fi
}
udp_case "c. UDP viaduct (h0) pings, kernel (h1) echoes" "$tmp/c_v" $rvc "$tmp/c_k" $rkc
udp_case "d. UDP kernel (h1) pings, viaduct (h0) echoes" "$tmp/d_k" $rkd "$tmp/d_v" $rvd

# ---- e: two threads on one viaduct socket (one blocked in recv while the other sends) ----
# duplex_case NAME LAB BYTES: a kernel echo server in h1; sock_peer tcp-duplex in h0.
duplex_case() {
	local name=$1 lab=$2 bytes=$3
	"$V" lab exec --name "$lab" h1 -- timeout "$LIMIT" python3 "$tmp/kpeer.py" tcp-echo 9006 >"$tmp/e_k" 2>&1 &
	local ke=$!
	wait_listening "$tmp/e_k" || echo "    (the echo server did not report LISTENING)"
	# shellcheck disable=SC2086
	"$V" lab exec --name "$lab" h0 -- $NOBODY "$PEER" tcp-duplex $H1:9006 "$bytes" --seed 13 --timeout-s $LIMIT \
		>"$tmp/e_v" 2>&1
	local rve=$? rke es er
	wait $ke; rke=$?
	es=$(sha_of "$tmp/e_v"); er=$(awk '$1 == "ECHO" { print $3 }' "$tmp/e_v")
	if [ $rve -eq 0 ] && [ $rke -eq 0 ] && [ -n "$es" ] && [ "$es" = "$er" ]; then
		ok "$name: $bytes both ways, SHA-256 equal ($(rate_of "$tmp/e_v"))"
	else
		ko "$name (viaduct rc $rve, echo rc $rke, sha $es vs $er)"
		show viaduct "$tmp/e_v"; show echo "$tmp/e_k"
	fi
}
"$V" lab down --name "$CLEAN" >/dev/null 2>&1
if "$V" lab up --name "$CLEAN" --group nogroup >/dev/null; then
	duplex_case "e. clean lab, TCP echo through the kernel, sender and receiver threads on one viaduct socket" \
		"$CLEAN" 100M
else
	ko "e. lab up $CLEAN"
fi
duplex_case "f. through \"$NETEM\", the same" "$LAB" "${VD_SOCK_INTEROP_DUPLEX_BYTES:-20M}"

finish
