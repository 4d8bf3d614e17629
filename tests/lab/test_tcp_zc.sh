#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Lab test of TCP large sends from lent UMEM (issue 4 item 4, src/lib/tcp/tcp_zc.c: the send ring in TX
# buffers the xdp nic lends, segments sent as pieces of it, no copy into TX buffers). Engaged only with
# multi-buffer frames, TX metadata and checksum offload, i.e. jumbo MTUs; viaduct (tests/lab/sock_peer.c,
# as uid 65534) sends on h0, the kernel's sockets (python3) receive on h1, SHA-256 of what was sent
# against what was received:
#   a. MTU 9000 through the impairment relay ("loss 1% duplicate 1% reorder 25% delay 100us"):
#      retransmissions and SACK recovery send from the same ring chunks;
#   b. MTU 62000 (61398 on the link, 16-chunk TX buffers: the most pieces a segment takes), clean;
#   c. MTU 9000 clean, one thread sending while another receives the echo on the same socket;
#   d. MTU 9000 clean, python3 under `viaduct run`: the parent sends, a fork child sends on the inherited
#      socket (the ring in lent UMEM and its busy counts live in the stack's shared heap), the parent again;
#   e. MTU 1500 clean, a short transfer: the fallback (heap ring, bytes copied into each frame).
# That the lent path is taken (a, b) or not (e) is checked twice: the sender's nic counters at its end
# (sock_peer's "nic:" line, vd_nic_stats: frames sent with attached pieces, buffers still lent) and the
# sender's endpoint in `viaduct stat --json` sampled while it runs (the shared stats page through viaductd;
# the endpoint goes when the process exits, so only samples taken during the transfer count).
# usage: tests/lab/test_tcp_zc.sh [BUILD_DIR]   (env VD_TCP_ZC_BYTES=200M, VD_TCP_ZC_BYTES_1500=64M,
#        VD_TEST_LAB=vdZ1, VD_TEST_LAB2=vdZ2)
set -uo pipefail
BUILD=$(cd "${1:-build}" && pwd) || exit 1
V=$BUILD/bin/viaduct
PEER=$BUILD/tests/sock_peer
LAB=${VD_TEST_LAB:-vdZ1}
LAB2=${VD_TEST_LAB2:-vdZ2}
BYTES=${VD_TCP_ZC_BYTES:-200M}
NETEM="loss 1% duplicate 1% reorder 25% delay 100us"
LIMIT=90
[ "$(id -u)" -eq 0 ] || { echo "test_tcp_zc: needs root" >&2; exit 1; }
for b in "$V" "$PEER"; do [ -x "$b" ] || { echo "test_tcp_zc: $b not built" >&2; exit 1; }; done
command -v python3 >/dev/null || { echo "test_tcp_zc: needs python3" >&2; exit 1; }

. "$(dirname "$0")/lib.sh"
lab_scratch "$LAB" "$LAB2"

cat >"$tmp/kpeer.py" <<'PY'
import hashlib, socket, sys, time
mode, port = sys.argv[1], int(sys.argv[2])
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("0.0.0.0", port)); l.listen(4)
print("LISTENING", flush=True)
c, _ = l.accept(); h = hashlib.sha256(); n = 0; t0 = time.monotonic()
while True:
    b = c.recv(1 << 20)
    if not b:
        break
    if mode == "tcp-echo":
        c.sendall(b)
    else:
        h.update(b); n += len(b)
dt = time.monotonic() - t0
c.close()
print("RESULT %s bytes %d sha256 %s secs %.2f MBps %.1f" % (mode, n, h.hexdigest(), dt, n / dt / 1e6 if dt else 0), flush=True)
PY
NOBODY="setpriv --reuid 65534 --regid 65534 --init-groups"
H1=10.99.0.2

# nic_of FILE KEY: a value of sock_peer's "nic:" line (vd_nic_stats of the sender at its end).
nic_of() { awk -v k="$2" '$1 == "nic:" { for (i = 2; i < NF; i++) if ($i == k) print $(i + 1) }' "$1" | tail -n 1; }

# stat_poll LAB OUT: `viaduct stat --json` of host h0 every 20 ms, one object per line, until killed
# (bounded by LIMIT seconds). Run in the background while a sender runs: a fast transfer lasts well under
# a second, so the samples must come often.
stat_poll() {
	local end=$((SECONDS + LIMIT))
	while [ $SECONDS -lt $end ]; do
		"$V" lab exec --name "$1" h0 -- "$V" stat --json >>"$2" 2>/dev/null && echo >>"$2"
		sleep 0.02
	done
}
# stat_att OUT: "SAMPLES MAX_ATT_FRAMES MAX_ATT_PIECES MAX_LENT" over the samples that show the sender's
# endpoint (uid 65534).
stat_att() {
	python3 - "$1" <<'PY'
import json, sys
n = f = p = l = 0
for line in open(sys.argv[1]):
    try:
        d = json.loads(line)
    except ValueError:
        continue
    for e in d.get("endpoints", []):
        if e.get("uid") == 65534:
            n += 1
            f = max(f, e["tx_att_frames"]); p = max(p, e["tx_att_pieces"]); l = max(l, e["tx_lent"])
print(n, f, p, l)
PY
}

# send_case NAME LAB PORT EXPECT [BYTES]: viaduct sends BYTES to a kernel receiver; SHA-256 compared; then
# whether the send ring was in lent TX memory: EXPECT "lent" (attached frames > 0) or "copy" (none).
send_case() {
	local name=$1 lab=$2 port=$3 expect=$4 bytes=${5:-$BYTES} rv rk s r want
	want=$(python3 -c "import sys; s=sys.argv[1]; m={'K':1<<10,'M':1<<20,'G':1<<30}; print(int(float(s[:-1])*m[s[-1]]) if s[-1] in m else int(s))" "$bytes")
	"$V" lab exec --name "$lab" h1 -- timeout "$LIMIT" python3 "$tmp/kpeer.py" tcp-recv "$port" >"$tmp/k_$port" 2>&1 &
	local k=$!
	wait_listening "$tmp/k_$port" || echo "    (the receiver did not report LISTENING)"
	: >"$tmp/s_$port"
	stat_poll "$lab" "$tmp/s_$port" &
	local sp=$!
	# shellcheck disable=SC2086
	"$V" lab exec --name "$lab" h0 -- $NOBODY "$PEER" tcp-send $H1:"$port" "$bytes" --seed 21 --timeout-s $LIMIT \
		>"$tmp/v_$port" 2>&1
	rv=$?
	kill "$sp" 2>/dev/null; wait "$sp" 2>/dev/null
	wait $k; rk=$?
	s=$(sha_of "$tmp/v_$port"); r=$(sha_of "$tmp/k_$port")
	if [ $rv -eq 0 ] && [ $rk -eq 0 ] && [ -n "$s" ] && [ "$s" = "$r" ] && [ "$(bytes_of "$tmp/k_$port")" = "$want" ]; then
		ok "$name: $want bytes, SHA-256 equal ($(rate_of "$tmp/k_$port"))"
	else
		ko "$name (sender rc $rv, receiver rc $rk, sha $s vs $r)" "$tmp/v_$port"
		tail -n 3 "$tmp/k_$port" | sed 's/^/     k: /'
	fi
	local af ap lent samples sf spc sl
	af=$(nic_of "$tmp/v_$port" att_frames); ap=$(nic_of "$tmp/v_$port" att_pieces); lent=$(nic_of "$tmp/v_$port" lent)
	read -r samples sf spc sl < <(stat_att "$tmp/s_$port")
	if [ "$expect" = lent ]; then
		# pieces >= frames; the open socket's ring is still lent when the line is printed
		if [ "${af:-0}" -gt 0 ] && [ "${ap:-0}" -ge "${af:-0}" ] && [ "${lent:-0}" -ge 1 ]; then
			ok "$name: sent from lent TX memory (nic: $af frames with $ap attached pieces, $lent buffer(s) lent)"
		else
			ko "$name: not sent from lent TX memory (nic: att_frames '${af}' att_pieces '${ap}' lent '${lent}')" "$tmp/v_$port"
		fi
		if [ "${samples:-0}" -gt 0 ] && [ "$sf" -gt 0 ] && [ "$spc" -ge "$sf" ] && [ "$sl" -ge 1 ]; then
			ok "$name: viaduct stat showed the sender's endpoint sending from lent memory ($samples samples, up to $sf attached frames, $sl lent)"
		else
			ko "$name: viaduct stat did not show attached frames (samples ${samples:-0}, att_frames ${sf:-}, lent ${sl:-})" "$tmp/s_$port"
		fi
	else
		if [ -n "$af" ] && [ "$af" -eq 0 ] && [ "$ap" -eq 0 ] && [ "$lent" -eq 0 ]; then
			ok "$name: copying path (nic: 0 attached frames, 0 buffers lent)"
		else
			ko "$name: expected the copying path (nic: att_frames '${af}' att_pieces '${ap}' lent '${lent}')" "$tmp/v_$port"
		fi
		if [ "${samples:-0}" -gt 0 ] && [ "$sf" -eq 0 ] && [ "$sl" -eq 0 ]; then
			ok "$name: viaduct stat showed 0 attached frames, 0 lent ($samples samples)"
		else
			ko "$name: viaduct stat (samples ${samples:-0}, att_frames ${sf:-}, lent ${sl:-})" "$tmp/s_$port"
		fi
	fi
}

"$V" lab down --name "$LAB" >/dev/null 2>&1
if "$V" lab up --name "$LAB" --group nogroup --mtu 9000 --netem "$NETEM" >/dev/null; then
	send_case "a. TCP viaduct -> kernel, MTU 9000, through \"$NETEM\"" "$LAB" 9101 lent
else
	ko "a. lab up $LAB"
fi
"$V" lab down --name "$LAB" >/dev/null 2>&1

if "$V" lab up --name "$LAB" --group nogroup --mtu 1500 >/dev/null; then
	send_case "e. TCP viaduct -> kernel, MTU 1500 (fallback)" "$LAB" 9105 copy "${VD_TCP_ZC_BYTES_1500:-64M}"
else
	ko "e. lab up $LAB (MTU 1500)"
fi
"$V" lab down --name "$LAB" >/dev/null 2>&1

"$V" lab down --name "$LAB2" >/dev/null 2>&1
if "$V" lab up --name "$LAB2" --group nogroup --mtu 62000 >/dev/null; then
	send_case "b. TCP viaduct -> kernel, MTU 62000 (16-chunk frames)" "$LAB2" 9102 lent
else
	ko "b. lab up $LAB2"
fi
"$V" lab down --name "$LAB2" >/dev/null 2>&1

if "$V" lab up --name "$LAB2" --group nogroup --mtu 9000 >/dev/null; then
	"$V" lab exec --name "$LAB2" h1 -- timeout "$LIMIT" python3 "$tmp/kpeer.py" tcp-echo 9103 >"$tmp/e_k" 2>&1 &
	ke=$!
	wait_listening "$tmp/e_k" || echo "    (the echo server did not report LISTENING)"
	# shellcheck disable=SC2086
	"$V" lab exec --name "$LAB2" h0 -- $NOBODY "$PEER" tcp-duplex $H1:9103 "$BYTES" --seed 23 --timeout-s $LIMIT \
		>"$tmp/e_v" 2>&1
	rve=$?
	wait $ke; rke=$?
	es=$(sha_of "$tmp/e_v"); er=$(awk '$1 == "ECHO" { print $3 }' "$tmp/e_v")
	if [ $rve -eq 0 ] && [ $rke -eq 0 ] && [ -n "$es" ] && [ "$es" = "$er" ]; then
		ok "c. TCP duplex on one socket (send thread + echo receive thread), MTU 9000: SHA-256 equal"
	else
		ko "c. TCP duplex MTU 9000 (viaduct rc $rve, echo rc $rke, sha $es vs $er)" "$tmp/e_v"
	fi

	cat >"$tmp/fork.py" <<'PY'
import hashlib, os, socket, sys
if sys.argv[1] == "recv":
    l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(("0.0.0.0", 9104)); l.listen(1)
    print("LISTENING", flush=True)
    c, _ = l.accept(); h = hashlib.sha256(); n = 0
    while True:
        b = c.recv(1 << 20)
        if not b:
            break
        h.update(b); n += len(b)
    print("RESULT recv bytes %d sha256 %s" % (n, h.hexdigest()), flush=True)
else:
    s = socket.create_connection((sys.argv[2], 9104), timeout=60)
    h = hashlib.sha256(); n = 0
    def send(tag):
        global n
        for i in range(100):
            b = bytes([(tag * 31 + i) & 255]) * 100000
            s.sendall(b)
    def account(tag):
        global n
        for i in range(100):
            h.update(bytes([(tag * 31 + i) & 255]) * 100000); n += 100000
    send(1); account(1)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        send(2); os.write(w, b"x"); os._exit(0)
    os.read(r, 1); os.waitpid(pid, 0); account(2)
    send(3); account(3)
    s.close()
    print("RESULT send bytes %d sha256 %s" % (n, h.hexdigest()), flush=True)
PY
	"$V" lab exec --name "$LAB2" h1 -- timeout "$LIMIT" python3 "$tmp/fork.py" recv >"$tmp/f_k" 2>&1 &
	kf=$!
	wait_listening "$tmp/f_k" || echo "    (the receiver did not report LISTENING)"
	"$V" lab exec --name "$LAB2" h0 -- timeout "$LIMIT" "$V" run -- python3 "$tmp/fork.py" send $H1 >"$tmp/f_v" 2>&1
	rvf=$?
	wait $kf; rkf=$?
	fs=$(sha_of "$tmp/f_v"); fr=$(sha_of "$tmp/f_k")
	if [ $rvf -eq 0 ] && [ $rkf -eq 0 ] && [ -n "$fs" ] && [ "$fs" = "$fr" ]; then
		ok "d. fork under viaduct run: parent, child, parent send 30 MB on one socket, MTU 9000: SHA-256 equal"
	else
		ko "d. fork under viaduct run (sender rc $rvf, receiver rc $rkf, sha $fs vs $fr)" "$tmp/f_v"
	fi
else
	ko "c. lab up $LAB2"
fi
finish
