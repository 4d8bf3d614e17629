#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Lab test of the nic's IPv4 layer on xdp and of port steering in viaductd (root; the viaduct programs
# run as uid 65534 with no capability). An endpoint (tests/lab/l3_peer.c, driven line by line) in h1,
# the Linux kernel's own sockets (python3) in h0 and h1:
#   - TCP and UDP ports added to the endpoint: a kernel TCP connect (SYN) and UDP datagrams from h0
#     arrive as whole IPv4 packets (protocol, ports, payload checked); the kernel of h1 does not answer
#     the SYN (no RST: the dispatcher took it);
#   - a UDP packet the endpoint builds itself (its own checksums) reaches a kernel socket in h0;
#   - conflicts refused: a port a kernel socket holds, a port another endpoint holds, a privileged port;
#   - port_del with a hold: kernel sockets cannot bind it and frames to it are dropped (no RST) until the
#     hold ends, then the kernel has it back (connect gets its RST);
#   - kill -9 of the endpoint: ports asked for by number are free at once, ephemeral TCP ports held
#     (TIME-WAIT), as viaduct stat shows;
#   - batched reservation (EP_PORTS_ADD): one ephemeral port asked for reserves a batch (4), the next
#     comes from it; a del with a hold (sent without waiting, EP_PORTS_DEL quiet) is in place at once;
#     a clean exit frees the unused ports at once, kill -9 leaves them held with the used ones (TIME-WAIT)
#     and frees unused UDP ones;
#   - viaductd's pool of TCP ports reserved ahead adapts (its daemons run with --pool-idle-s 2): a burst
#     of 2500 ephemeral ports asked for faster than the idle refill (daemon_probe.py ports-burst) grows
#     its target above 1024 and the pool fills to it; after the quiet period the target is 1024 again and
#     the surplus is closed (descriptors drop by as much).
# usage: tests/lab/test_nic_l3.sh [BUILD_DIR]
set -uo pipefail
BUILD=$(cd "${1:-build}" && pwd) || exit 1
V=$BUILD/bin/viaduct
PEER=$BUILD/tests/l3_peer
LAB=${VD_TEST_LAB:-vdAl3}
[ "$(id -u)" -eq 0 ] || { echo "test_nic_l3: needs root" >&2; exit 1; }
for b in "$V" "$PEER"; do [ -x "$b" ] || { echo "test_nic_l3: $b not built" >&2; exit 1; }; done

. "$(dirname "$0")/lib.sh"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
	"$V" lab down --name "$LAB" >/dev/null 2>&1
	[ -n "${tmp:-}" ] && rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The lab's viaductd (VIADUCTD, else the build's) with the pool's quiet period cut to 2 s (see the end).
tmp=$(mktemp -d)
chmod 755 "$tmp"
printf '#!/bin/sh\nexec %q --pool-idle-s 2 "$@"\n' "${VIADUCTD:-$BUILD/bin/viaductd}" >"$tmp/viaductd"
chmod 755 "$tmp/viaductd"
"$V" lab down --name "$LAB" >/dev/null 2>&1
VIADUCTD=$tmp/viaductd "$V" lab up --name "$LAB" --group nogroup >/dev/null || { echo "FAIL lab up"; exit 1; }
H0=10.99.0.1 H1=10.99.0.2
in_host() { local h=$1; shift; "$V" lab exec --name "$LAB" "$h" -- "$@"; }
as_nobody() { local h=$1; shift; in_host "$h" setpriv --reuid 65534 --regid 65534 --init-groups "$@"; }
py() { local h=$1; shift; in_host "$h" /usr/bin/python3 "$@"; }

# Endpoint A: a coprocess; say CMD writes a command, hear reads one answer line (5 s at most).
coproc EPA { as_nobody h1 "$PEER" --local "$H1" 2>&1; }
pids+=("$EPA_PID")
say() { echo "$1" >&"${EPA[1]}"; }
hear() { local l; IFS= read -r -t 5 l <&"${EPA[0]}" || l="(no answer)"; echo "$l"; }
ask() { say "$1"; hear; }
ready=$(hear)
[[ $ready == ready* ]] || { ko "endpoint A opens in the IPv4 layer: $ready"; finish; exit 1; }
epa=${ready##* }
pids+=("$epa")
[[ $ready == *"mtu 1500 "* ]] && ok "endpoint A open, max payload = IP MTU ($ready)" || ko "max payload: $ready"

r=$(ask "add tcp 5001"); [ "$r" = "added tcp 5001" ] && ok "add tcp 5001" || ko "add tcp 5001: $r"
r=$(ask "add udp 5002"); [ "$r" = "added udp 5002" ] && ok "add udp 5002" || ko "add udp 5002: $r"
r=$(ask "add tcp 5001"); [ "$r" = "err 17" ] && ok "add twice: EEXIST" || ko "add twice: $r"
r=$(ask "add tcp 80"); [ "$r" = "err 13" ] && ok "privileged port refused: EACCES" || ko "privileged port: $r"

# The kernel in h0 talks to those ports: a TCP connect (its SYN; nobody answers, so it times out rather
# than being refused) and three UDP datagrams.
cat >"$tmp/conn.py" <<'PY'
import socket,sys
s=socket.socket(); s.settimeout(float(sys.argv[3]))
try:
    s.connect((sys.argv[1],int(sys.argv[2]))); print("connected")
except ConnectionRefusedError: print("refused")
except (socket.timeout, OSError) as e: print("timeout" if isinstance(e, socket.timeout) else "error %s" % e)
PY
cat >"$tmp/bind.py" <<'PY'
import socket,sys,time
s=socket.socket(socket.AF_INET, socket.SOCK_STREAM if sys.argv[1]=="tcp" else socket.SOCK_DGRAM)
try:
    s.bind((sys.argv[2],int(sys.argv[3]))); print("bound")
except OSError as e: print("errno %d" % e.errno)
sys.stdout.flush()
if len(sys.argv) > 4: time.sleep(float(sys.argv[4]))
PY
py h0 "$tmp/conn.py" "$H1" 5001 2 >"$tmp/conn1" 2>&1 &
cpid=$!
sleep 0.3
py h0 -c "
import socket
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('$H0',6000))
for i in range(3): s.sendto(b'hello-l3-%d' % i, ('$H1',5002))
"
say "recv 6 1500"
got=()
for _ in $(seq 8); do l=$(hear); got+=("$l"); [[ $l == done* ]] && break; done
printf '%s\n' "${got[@]}" >"$tmp/rx1"
grep -q "proto=6 src=$H0 sport=[0-9]* dport=5001 tcpflags=0x02 " "$tmp/rx1" &&
	ok "kernel TCP SYN from h0 received as an IPv4 packet (proto 6, dport 5001, SYN)" ||
	{ ko "TCP SYN received"; cat "$tmp/rx1"; }
n=$(grep -c "proto=17 src=$H0 sport=6000 dport=5002 tcpflags=0x00 len=38 payload=hello-l3-" "$tmp/rx1")
[ "$n" -eq 3 ] && ok "3 kernel UDP datagrams received whole (proto 17, ports, length, payload)" ||
	{ ko "UDP datagrams received ($n of 3)"; cat "$tmp/rx1"; }
wait "$cpid"
grep -q timeout "$tmp/conn1" && ok "kernel of h1 did not answer the SYN (connect timed out, no RST)" ||
	ko "no RST from h1's kernel: $(cat "$tmp/conn1")"

# The endpoint sends a packet it built itself to a kernel socket in h0.
py h0 -c "
import socket
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('$H0',6001)); s.settimeout(3)
d,a=s.recvfrom(2000); print(d.decode(), a[0], a[1])
" >"$tmp/krx" 2>&1 &
kpid=$!
sleep 0.4
r=$(ask "sendudp $H0 5002 6001 crafted-by-viaduct")
wait "$kpid"
[ "$r" = sent ] && grep -q "^crafted-by-viaduct $H1 5002$" "$tmp/krx" &&
	ok "crafted UDP/IPv4 packet received by a kernel socket in h0" ||
	{ ko "crafted UDP packet to the kernel ($r)"; cat "$tmp/krx"; }

# The same with the UDP checksum left to the nic (peer.port = VD_NIC_TX_L4_CSUM: TX metadata offload).
py h0 -c "
import socket
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('$H0',6002)); s.settimeout(3)
d,a=s.recvfrom(2000); print(d.decode(), a[0], a[1])
" >"$tmp/krx2" 2>&1 &
kpid=$!
sleep 0.4
r=$(ask "sendudpp $H0 5002 6002 checksum-completed-by-the-nic")
wait "$kpid"
[ "$r" = sent ] && grep -q "^checksum-completed-by-the-nic $H1 5002$" "$tmp/krx2" &&
	ok "UDP packet with the checksum completed by the nic received by a kernel socket" ||
	{ ko "VD_NIC_TX_L4_CSUM packet to the kernel ($r)"; cat "$tmp/krx2"; }

# A steered endpoint (RX only through the dispatcher's ring) receives an added port's packets too.
{ echo "add udp 5010"; sleep 1.5; echo "recv 1 2500"; sleep 3; echo quit; } |
	as_nobody h1 "$PEER" --local "$H1" --mode steered >"$tmp/eps" 2>&1 &
spid=$!
sleep 1
py h0 -c "
import socket,time
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)
for i in range(8): s.sendto(b'to-steered', ('$H1',5010)); time.sleep(0.25)
"
wait "$spid"
grep -q "^added udp 5010$" "$tmp/eps" && grep -q "proto=17 src=$H0 sport=[0-9]* dport=5010 .*payload=to-steered" "$tmp/eps" &&
	ok "steered endpoint: added UDP port receives kernel datagrams" || { ko "steered endpoint"; cat "$tmp/eps"; }

# Conflicts: a kernel socket in h1 holds UDP 6100; a second endpoint asks for A's port.
py h1 "$tmp/bind.py" udp "$H1" 6100 4 >"$tmp/kbind" 2>&1 &
kpid=$!
pids+=("$kpid")
for _ in $(seq 30); do grep -q bound "$tmp/kbind" && break; sleep 0.1; done
r=$(ask "add udp 6100"); [ "$r" = "err 98" ] && ok "port held by a kernel socket: EADDRINUSE" || ko "kernel-held port: $r"
printf 'add tcp 5001\nadd tcp 0\nquit\n' | as_nobody h1 "$PEER" --local "$H1" >"$tmp/epb" 2>&1
sed -n 2p "$tmp/epb" | grep -q "^err 98$" && ok "port of another endpoint: EADDRINUSE" ||
	{ ko "port of another endpoint"; cat "$tmp/epb"; }
sed -n 3p "$tmp/epb" | grep -q "^added tcp [0-9]" && ok "ephemeral TCP port for a second endpoint: $(sed -n 3p "$tmp/epb")" ||
	{ ko "ephemeral port"; cat "$tmp/epb"; }
kill "$kpid" 2>/dev/null; wait "$kpid" 2>/dev/null

# Drain what is still in flight (SYN retransmissions of the first connect).
say "recv 100 300"
for _ in $(seq 110); do l=$(hear); [[ $l == done* || $l == "(no answer)" ]] && break; done

# Delete with a hold of 3 s: the port stays reserved and its frames are dropped, then it is free.
r=$(ask "del tcp 5001 3000"); [ "$r" = deleted ] && ok "del tcp 5001 with a 3 s hold" || ko "del with hold: $r"
t0=$(date +%s.%N)
r=$(py h1 "$tmp/bind.py" tcp "$H1" 5001); [ "$r" = "errno 98" ] && ok "held port: kernel bind refused" || ko "held port bind: $r"
in_host h1 "$V" stat --json >"$tmp/stat1" 2>&1
grep -q '"proto": "tcp", "port": 5001, [^}]*"held": true' "$tmp/stat1" && ok "stat lists tcp/5001 as held" ||
	{ ko "stat shows the held port"; cat "$tmp/stat1"; }
r=$(py h0 "$tmp/conn.py" "$H1" 5001 1); [ "$r" = timeout ] && ok "held port: SYN dropped, no RST" || ko "held port SYN: $r"
r=$(ask "recv 1 300"); [ "$r" = "done 0" ] && ok "held port: nothing reaches the endpoint" || ko "held port rx: $r $(hear)"
sleep "$(python3 -c "import time; print(max(0, 3.6 - (time.time() - $t0) ))" 2>/dev/null || echo 3)"
r=$(py h1 "$tmp/bind.py" tcp "$H1" 5001); [ "$r" = bound ] && ok "hold over: the kernel can bind 5001" || ko "after hold bind: $r"
r=$(py h0 "$tmp/conn.py" "$H1" 5001 2); [ "$r" = refused ] && ok "hold over: the kernel answers 5001 (RST)" || ko "after hold connect: $r"
r=$(ask "del udp 5002 0"); [ "$r" = deleted ] && ok "del udp 5002 without hold" || ko "del udp: $r"
r=$(py h1 "$tmp/bind.py" udp "$H1" 5002); [ "$r" = bound ] && ok "freed at once: kernel binds udp 5002" || ko "free bind: $r"
r=$(ask "del udp 5002 0"); [ "$r" = "err 2" ] && ok "del of a port not owned: ENOENT" || ko "del not owned: $r"

# kill -9: numbered ports free at once, ephemeral TCP ports held for viaductd's TIME-WAIT (60 s).
r=$(ask "add tcp 5003"); [ "$r" = "added tcp 5003" ] || ko "add tcp 5003: $r"
r=$(ask "add tcp 0"); eph=${r##* }
[[ $r == "added tcp "* ]] && [ "$eph" -ge 1024 ] && ok "ephemeral TCP port $eph" || ko "add tcp 0: $r"
r=$(ask "add udp 0"); ueph=${r##* }
in_host h1 "$V" stat >"$tmp/stat2" 2>&1
grep -qE "tcp/5003( |$)" "$tmp/stat2" && grep -q "tcp/$eph\*" "$tmp/stat2" && ok "stat shows the endpoint's ports" ||
	{ ko "stat shows ports"; cat "$tmp/stat2"; }
kill -9 "$epa" # the process itself: lab exec, ip netns exec and setpriv exec it
wait "$EPA_PID" 2>/dev/null
sleep 0.3
r=$(py h1 "$tmp/bind.py" tcp "$H1" 5003); [ "$r" = bound ] && ok "after kill -9: numbered tcp 5003 free at once" || ko "numbered after kill: $r"
r=$(py h1 "$tmp/bind.py" udp "$H1" "$ueph"); [ "$r" = bound ] && ok "after kill -9: ephemeral udp $ueph free at once" || ko "udp eph after kill: $r"
r=$(py h1 "$tmp/bind.py" tcp "$H1" "$eph"); [ "$r" = "errno 98" ] && ok "after kill -9: ephemeral tcp $eph held (TIME-WAIT)" || ko "eph held after kill: $r"
r=$(py h0 "$tmp/conn.py" "$H1" "$eph" 1); [ "$r" = timeout ] && ok "after kill -9: SYN to tcp $eph dropped, no RST" || ko "eph SYN after kill: $r"
in_host h1 "$V" stat >"$tmp/stat3" 2>&1
grep -q "tcp/$eph ifindex [0-9]* [0-9]* ms left" "$tmp/stat3" && ok "stat lists the held ephemeral port" ||
	{ ko "stat held after kill"; cat "$tmp/stat3"; }

# Batched reservation. eps.py PID PROTO: "OWNED | HELD" ports from viaduct stat --json (on stdin): the
# ephemeral PROTO ports of PID's endpoint, and every held PROTO port.
cat >"$tmp/eps.py" <<'PY'
import json,sys
d=json.load(sys.stdin); pid=int(sys.argv[1]); proto=sys.argv[2]
ids=[e["id"] for e in d["endpoints"] if e["pid"]==pid]
own=sorted(p["port"] for p in d["ports"] if p["proto"]==proto and not p["held"] and p.get("ep") in ids and p["ephemeral"])
held=sorted(p["port"] for p in d["ports"] if p["proto"]==proto and p["held"])
print(" ".join(map(str,own)), "|", " ".join(map(str,held)))
PY
ports_of() { in_host h1 "$V" stat --json | python3 "$tmp/eps.py" "$1" "$2"; }
owned() { local o; o=$(ports_of "$1" "$2"); o=${o%%|*}; echo $o; }
is_held() { local o; o=$(ports_of "$1" tcp); [[ " ${o#*|} " == *" $2 "* ]]; }
kbind() { py h1 "$tmp/bind.py" "$1" "$H1" "$2"; }

coproc EPC { as_nobody h1 "$PEER" --local "$H1" 2>&1; }
pids+=("$EPC_PID")
sayc() { echo "$1" >&"${EPC[1]}"; }
hearc() { local l; IFS= read -r -t 5 l <&"${EPC[0]}" || l="(no answer)"; echo "$l"; }
askc() { sayc "$1"; hearc; }
ready=$(hearc)
epc=${ready##* }
pids+=("$epc")
r=$(askc "add tcp 0"); c1=${r##* }
batch=$(owned "$epc" tcp)
n=$(wc -w <<<"$batch")
[[ $r == "added tcp "* ]] && [ "$n" -eq 4 ] && [[ " $batch " == *" $c1 "* ]] &&
	ok "one ephemeral tcp port asked for: a batch of 4 reserved ($batch), $c1 handed out" ||
	ko "batch reserved: $r, owned: $batch"
spare=$(for p in $batch; do [ "$p" != "$c1" ] && echo "$p" && break; done)
r=$(kbind tcp "$spare"); [ "$r" = "errno 98" ] && ok "a reserved port not handed out yet: kernel bind refused" ||
	ko "spare port reserved: $r"
r=$(askc "add tcp 0"); c2=${r##* }
[[ " $batch " == *" $c2 "* ]] && [ "$c2" != "$c1" ] && [ "$(owned "$epc" tcp)" = "$batch" ] &&
	ok "the next ephemeral port ($c2) comes from the batch, no new reservation" ||
	ko "second port from the batch: $r, owned: $(owned "$epc" tcp)"
r=$(askc "del tcp $c1 60000")
# Holds are gathered in the nic (nic_xdp.c ports section): they reach viaductd when the process next waits
# in the nic (as recv does when nothing comes), and its frames are dropped meanwhile (checked below).
askc "recv 1 50" >/dev/null
held_now=0
for _ in $(seq 20); do is_held "$epc" "$c1" && { held_now=1; break; }; sleep 0.1; done
[ "$r" = deleted ] && [ "$held_now" -eq 1 ] && ok "del with a hold, not waited for: tcp $c1 held" ||
	ko "quiet del with a hold: $r, held: $held_now"
r=$(py h0 "$tmp/conn.py" "$H1" "$c1" 1); [ "$r" = timeout ] && ok "quiet hold: SYN to $c1 dropped, no RST" ||
	ko "quiet hold SYN: $r"
r=$(askc "recv 1 300"); [ "$r" = "done 0" ] && ok "quiet hold: nothing for $c1 reaches the endpoint" || ko "quiet hold rx: $r"
# A hold still gathered in the nic (no wait since the del): the port is still steered here, and the nic
# drops its frames itself, as viaductd's hold would.
r=$(askc "add tcp 0"); c3=${r##* }
askc "del tcp $c3 60000" >/dev/null
r=$(py h0 "$tmp/conn.py" "$H1" "$c3" 1)
r2=$(askc "recv 1 300")
[ "$r" = timeout ] && [ "$r2" = "done 0" ] && ok "gathered hold: the SYN to $c3 already here is dropped by the nic, no RST" ||
	ko "gathered hold: connect $r, endpoint $r2"
sayc quit
wait "$EPC_PID" 2>/dev/null
sleep 0.3
res=""
for p in $batch; do [ "$p" = "$c1" ] || [ "$p" = "$c2" ] || [ "$p" = "$c3" ] || res+="$(kbind tcp "$p") "; done
[ "$res" = "bound " ] && ok "clean exit: the port never handed out is free at once" ||
	ko "clean exit frees unused reserved ports: $res"
is_held 0 "$c2" && ok "clean exit: the used ephemeral port $c2 held (TIME-WAIT)" || ko "used port held after exit"

coproc EPD { as_nobody h1 "$PEER" --local "$H1" 2>&1; }
pids+=("$EPD_PID")
l=""; IFS= read -r -t 5 l <&"${EPD[0]}"
epd=${l##* }
pids+=("$epd")
echo "add tcp 0" >&"${EPD[1]}"; IFS= read -r -t 5 l <&"${EPD[0]}"
echo "add udp 0" >&"${EPD[1]}"; IFS= read -r -t 5 l <&"${EPD[0]}"
dt=$(owned "$epd" tcp) du=$(owned "$epd" udp)
[ "$(wc -w <<<"$dt")" -eq 4 ] && [ "$(wc -w <<<"$du")" -eq 4 ] && ok "second endpoint: batches of 4 tcp ($dt), 4 udp ($du)" ||
	ko "second endpoint batches: tcp $dt udp $du"
kill -9 "$epd"
wait "$EPD_PID" 2>/dev/null
sleep 0.3
o=$(ports_of 0 tcp); held=" ${o#*|} "
res=""
for p in $dt; do [[ $held == *" $p "* ]] && [ "$(kbind tcp "$p")" = "errno 98" ] || res+="$p "; done
[ -z "$res" ] && ok "kill -9: all 4 reserved tcp ports reclaimed as held (TIME-WAIT), none leaked to the endpoint" ||
	ko "kill -9: tcp ports not held: $res"
res=""
for p in $du; do r=$(kbind udp "$p"); [ "$r" = bound ] || res+="$p:$r "; done
[ -z "$res" ] && ok "kill -9: all 4 reserved udp ports free at once" || ko "kill -9 udp ports: $res"

# viaductd's pool of ephemeral ports reserved ahead (port.c): refilled once the daemon is idle, and every
# reservation accounted for. Each reserved, pooled or held port is a kernel socket of viaductd, so with
# the pool full again its descriptor count grows by exactly the ports now held, and a batch taken from
# the pool is a pool port each (already bound: the kernel refuses them).
dpid=$(cat "/run/viaduct/lab/$LAB-h1/viaductd.pid")
nfd() { ls "/proc/$dpid/fd" | wc -l; }
nheld() { local o; o=$(ports_of 0 tcp); wc -w <<<"${o#*|}"; }
sleep 0.5
f0=$(nfd) h0n=$(nheld)
# POOL_TCP + POOL_UDP (1024 + 64) when a quarter of viaductd's descriptor limit allows (port.c pool_init)
nofile=$(awk '/^Max open files/ {print $4}' "/proc/$dpid/limits")
want=$((nofile / 4 < 1088 ? nofile / 4 : 1088))
[ "$f0" -ge "$want" ] && ok "pool: viaductd keeps ephemeral ports reserved ahead ($f0 descriptors, pool $want)" ||
	ko "pool: only $f0 descriptors in viaductd (pool $want, limit $nofile)"
coproc EPE { as_nobody h1 "$PEER" --local "$H1" 2>&1; }
pids+=("$EPE_PID")
l=""; IFS= read -r -t 5 l <&"${EPE[0]}"
epe=${l##* }
pids+=("$epe")
echo "add tcp 0" >&"${EPE[1]}"; IFS= read -r -t 5 l <&"${EPE[0]}"
e1=${l##* }
de=$(owned "$epe" tcp)
[ "$(wc -w <<<"$de")" -eq 4 ] && ok "pool: a batch of 4 ($de)" || ko "pool batch: $de"
echo "del tcp $e1 60000" >&"${EPE[1]}"; IFS= read -r -t 5 l <&"${EPE[0]}"
echo quit >&"${EPE[1]}"
wait "$EPE_PID" 2>/dev/null
sleep 0.5 # the daemon is idle: the pool refills
f1=$(nfd) h1n=$(nheld)
[ "$((f1 - f0))" -eq "$((h1n - h0n))" ] && [ "$((h1n - h0n))" -ge 1 ] &&
	ok "pool: refilled, no port leaked (descriptors $f0 -> $f1, held ports $h0n -> $h1n)" ||
	ko "pool: descriptors $f0 -> $f1 but held ports $h0n -> $h1n"

# A connection whose peer closed first ends with no TIME-WAIT here, but the peer keeps one for the
# 4-tuple: the port stays in the process's pool (tcp.c) and, when the process exits, viaductd holds it
# (another process's SYN on it would carry unrelated timestamps, which the peer's TIME-WAIT refuses).
cat >"$tmp/srv_close.py" <<'PY'
import socket,sys,time
l=socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); l.bind((sys.argv[1], 5010)); l.listen(8)
print("listening", flush=True)
l.settimeout(10)
c,_=l.accept(); c.close(); time.sleep(1)
PY
cat >"$tmp/cli_wait.py" <<'PY'
import socket,sys,time
s=socket.create_connection((sys.argv[1], 5010), timeout=5)
port=s.getsockname()[1]
while s.recv(100): pass
time.sleep(0.2) # our FIN acked: a clean close with the peer in TIME-WAIT
s.close(); time.sleep(0.2)
print(port)
PY
py h0 "$tmp/srv_close.py" "$H0" >"$tmp/srv_close.out" 2>&1 &
spid=$!
pids+=("$spid")
for _ in $(seq 20); do grep -q listening "$tmp/srv_close.out" && break; sleep 0.1; done
cp=$(timeout 10 "$V" lab exec --name "$LAB" h1 -- "$V" run -- /usr/bin/python3 "$tmp/cli_wait.py" "$H0" 2>&1 | tail -1)
wait "$spid" 2>/dev/null
sleep 0.3
[[ $cp =~ ^[0-9]+$ ]] && is_held 0 "$cp" && [ "$(kbind tcp "$cp")" = "errno 98" ] &&
	ok "peer closed first: at exit the client's port $cp is held for the peer's TIME-WAIT" ||
	ko "peer-first port held after exit: '$cp'"

# The pool adapts (port.c "How big"): 2500 ephemeral ports asked for back to back grow the TCP target above
# 1024 and the idle refill fills to it; 2 s (--pool-idle-s) after the burst the target is back to 1024 and
# the surplus closed. The burst is the control protocol's, not a connect loop's: a loop slowed down by a
# busy host (or its server closing first, which gives ports back without TIME-WAIT) can leave the refill
# time to keep up, and then nothing needs a larger pool. pool.py: h1's spares from viaduct stat --json: "POOL TARGET
# POOL_UDP HELD_TCP HELD_UDP SPARE_EPS RING_JOBS SPARE_UMEMS".
cat >"$tmp/pool.py" <<'PY'
import json,sys
i=json.load(sys.stdin)["interfaces"][0]
print(*(i[k] for k in ("pool_tcp","pool_tcp_target","pool_udp","held_tcp","held_udp","spare_eps","ring_jobs","spare_umems")))
PY
spares() { in_host h1 "$V" stat --json | python3 "$tmp/pool.py"; }
# settled COND SECONDS: a stable sample (the same spares before and after the descriptor count, no ring
# job) where `(( COND ))` holds for p (pooled) and t (target), within SECONDS; sets S and F.
settled() {
	local a b end=$((SECONDS + $2)) p t rj
	while [ "$SECONDS" -lt "$end" ]; do
		a=$(spares); F=$(nfd); b=$(spares)
		read -r p t _ _ _ _ rj _ <<<"$a"
		if [ -n "$a" ] && [ "$a" = "$b" ] && [ "$rj" = 0 ] && (( $1 )); then S=$a; return 0; fi
		sleep 0.05
	done
	S=$a
	return 1
}
fds_of() { local p u ht hu; read -r p _ u ht hu _ <<<"$1"; echo $((p + u + ht + hu)); }
r=$(spares)
[ "$(cut -d' ' -f2 <<<"$r")" = 1024 ] && ok "pool: TCP target 1024 before the burst ($r)" || ko "pool target before the burst: $r"
burst=$(timeout 60 python3 "$(dirname "$0")/daemon_probe.py" --socket "/run/viaduct/lab/$LAB-h1/viaductd.sock" ports-burst \
	--count 2500 2>&1)
[[ $burst == *'"taken": 2500,'* ]] && ok "pool: a burst of 2500 ephemeral ports ($burst)" || ko "pool burst: $burst"
if settled 't > 1024 && p == t' 2; then
	S1=$S F1=$F
	ok "pool: the burst grew the TCP target and the pool filled to it ($S1; $F1 descriptors)"
	if settled 't == 1024 && p == 1024' 10; then
		d=$((F1 - F)) dp=$(( $(fds_of "$S1") - $(fds_of "$S") )) surplus=$(( $(cut -d' ' -f1 <<<"$S1") - 1024 ))
		[ "$d" -eq "$dp" ] && [ "$d" -ge "$surplus" ] && [ "$surplus" -gt 0 ] &&
			ok "pool: back to 1024 after the quiet period, surplus closed (descriptors $F1 -> $F, pooled+held -$dp)" ||
			ko "pool shrink: descriptors $F1 -> $F ($d) but pooled+held -$dp, surplus $surplus ($S1 -> $S)"
	else
		ko "pool: target not back to 1024 with --pool-idle-s 2 ($S)"
	fi
else
	ko "pool: target did not grow, or the pool never filled to it ($S)"
fi

finish
