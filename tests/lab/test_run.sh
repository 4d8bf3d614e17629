#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Lab test of `viaduct run` (src/lib/preload, docs/design.md "Sockets under viaduct run"): unmodified Debian
# programs with their sockets over viaduct, against kernel peers in the other host and against each other.
# Servers run in h0 (10.99.0.1), clients in h1 (10.99.0.2). Each check asserts a correct result:
#   a. fallback plumbing: no viaductd (curl, python3 through the interposer to a loopback server), and a
#      loopback destination inside a lab host (kernel fallback counted in `viaduct stat --json`);
#   b. tests/lab/run_probe: the interposer's semantics (blocking/non-blocking, poll/select/epoll mixed with
#      kernel fds, EINTR, SO_RCVTIMEO, dup, fork and exec with an inherited socket, shutdown), viaduct <->
#      viaduct, UDP both ways;
#   c. HTTP: python3 http.server and nginx (epoll, EPOLLET, sendfile) under viaduct, curl under viaduct and
#      plain, a 20 MiB file checked by SHA-256; and curl under viaduct against a kernel server;
#   d. redis-server + redis-cli (SET then GET returns the value) + redis-benchmark (N requests completed);
#   e. iperf3 both directions (bytes received > 0, no error);
#   f. TLS: openssl s_server -WWW, fetched with curl -k (SHA-256) and a handshake with openssl s_client;
#   g. socat: a file through TCP (SHA-256), a UDP echo;
#   h. fork and exec with sockets: a listener used by a forked child (run_probe fork-accept), socat's
#      forking echo server (concurrent clients, data checked), nginx with a master and 2 workers (many
#      requests, SHA-256), redis BGSAVE (a fork child; the server serves on after it), python3
#      socketserver.ForkingTCPServer, and socat forking + exec'ing cat per connection.
# Programs under viaduct run with --no-fallback (except in a), so a kernel fallback would fail the check.
# usage: tests/lab/test_run.sh [BUILD_DIR]
set -uo pipefail
BUILD=$(cd "${1:-build}" && pwd) || exit 1
V=$BUILD/bin/viaduct
P=$BUILD/tests/run_probe
LAB=${VD_TEST_LAB:-vdDrun}
[ "$(id -u)" -eq 0 ] || { echo "test_run: needs root" >&2; exit 1; }
for b in "$V" "$P" "$BUILD/lib/libviaduct-preload.so"; do
	[ -e "$b" ] || { echo "test_run: $b not built" >&2; exit 1; }
done
for prog in curl python3 nginx redis-server redis-cli redis-benchmark iperf3 openssl socat sha256sum; do
	command -v "$prog" >/dev/null || { echo "test_run: $prog missing (scripts/deps.sh installs it)" >&2; exit 1; }
done
PY=$(command -v python3)
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3   # Debian's, not a pyenv shim

. "$(dirname "$0")/lib.sh"
tmp=$(mktemp -d)
chmod 755 "$tmp"
bg_pids=()
cleanup() {
	local p
	for p in "${bg_pids[@]}"; do kill -9 "$p" 2>/dev/null; done
	wait 2>/dev/null
	"$V" lab down --name "$LAB" >/dev/null 2>&1
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
start=$(date +%s)
H0=10.99.0.1

ex() { local h=$1; shift; "$V" lab exec --name "$LAB" "$h" -- "$@"; }   # run in a lab host
vr() { local h=$1; shift; "$V" lab exec --name "$LAB" "$h" -- "$V" run --no-fallback -- "$@"; } # ...over viaduct
# bg LOG vr|ex|cmd HOST CMD...: a background program, over viaduct (vr) or not (ex) in HOST, or a plain
# command (cmd: HOST ignored). Written out, not through the functions above, so that $! is the program's
# own pid (lab exec and viaduct run exec): LAST, and remembered for cleanup.
bg() {
	local log=$1 kind=$2 h=$3
	shift 3
	case $kind in
	vr) "$V" lab exec --name "$LAB" "$h" -- "$V" run --no-fallback -- "$@" >"$log" 2>&1 & ;;
	ex) "$V" lab exec --name "$LAB" "$h" -- "$@" >"$log" 2>&1 & ;;
	*) "$@" >"$log" 2>&1 & ;;
	esac
	LAST=$!
	bg_pids+=("$LAST")
}
stop() { kill "$1" 2>/dev/null; for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done; kill -9 "$1" 2>/dev/null; wait "$1" 2>/dev/null; }
# wait_port HOST IP PORT: until a TCP connect from HOST succeeds (at most 10 s).
wait_port() {
	for _ in $(seq 50); do
		ex "$1" timeout 1 bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null && return 0
		sleep 0.2
	done
	return 1
}
# has_ep HOST PID: the program PID has a viaduct endpoint in HOST's viaductd (it really took the stack:
# an IPv6 or loopback socket would have stayed in the kernel without one).
has_ep() {
	ex "$1" "$V" stat --json 2>/dev/null | "$PY" -c "
import json, sys
d = json.load(sys.stdin); sys.exit(0 if any(e['pid'] == int(sys.argv[1]) for e in d['endpoints']) else 1)" "$2"
}
# wait_vport HOST tcp|udp PORT: until HOST's viaductd steers PORT to an endpoint (at most 10 s), for
# servers that a probe connection would use up (socat without fork).
wait_vport() {
	for _ in $(seq 50); do
		ex "$1" "$V" stat --json 2>/dev/null | "$PY" -c "
import json, sys
d = json.load(sys.stdin)
sys.exit(0 if any(p['proto'] == sys.argv[1] and p['port'] == int(sys.argv[2]) and not p['held']
                  for p in d['ports']) else 1)" "$2" "$3" && { sleep 0.2; return 0; }
		sleep 0.2
	done
	return 1
}
same() { [ -f "$1" ] && [ -f "$2" ] && [ "$(sha256sum <"$1")" = "$(sha256sum <"$2")" ]; }

mkdir -p "$tmp/www"
head -c $((20 << 20)) /dev/urandom >"$tmp/www/blob"
chmod -R a+rX "$tmp/www"

# ---- a. fallback plumbing -----------------------------------------------------------------------------
"$PY" -m http.server 18931 --bind 127.0.0.1 --directory "$tmp/www" >"$tmp/lo_http.log" 2>&1 &
lo_http=$!
bg_pids+=($lo_http)
for _ in $(seq 50); do timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/18931" 2>/dev/null && break; sleep 0.1; done
VIADUCT_SOCKET=$tmp/no-daemon.sock timeout 30 "$V" run -- curl -sf -o "$tmp/a1" http://127.0.0.1:18931/blob \
	2>"$tmp/a1.err"
if same "$tmp/a1" "$tmp/www/blob" && [ "$(grep -c 'cannot open a stack' "$tmp/a1.err")" = 1 ]; then
	ok "a1 no viaductd: curl through the interposer, kernel sockets, one warning"
else ko "a1 no viaductd: curl" "$tmp/a1.err"; fi
VIADUCT_SOCKET=$tmp/no-daemon.sock VIADUCT_QUIET=1 timeout 30 "$V" run -- "$PY" -c "
import socket, selectors, hashlib, sys
s = socket.create_connection(('127.0.0.1', 18931)); s.setblocking(False)
s.sendall(b'GET /blob HTTP/1.0\r\n\r\n')
sel = selectors.EpollSelector(); sel.register(s, selectors.EVENT_READ); d = b''
while True:
    if not sel.select(10): sys.exit('timeout')
    b = s.recv(1 << 16)
    if not b: break
    d += b
print(hashlib.sha256(d.split(b'\r\n\r\n', 1)[1]).hexdigest())" >"$tmp/a2" 2>"$tmp/a2.err"
if [ "$(cat "$tmp/a2")" = "$(sha256sum <"$tmp/www/blob" | cut -d' ' -f1)" ] && [ ! -s "$tmp/a2.err" ]; then
	ok "a2 no viaductd: python3 epoll client, VIADUCT_QUIET"
else ko "a2 no viaductd: python3 epoll client" "$tmp/a2.err"; fi
stop "$lo_http"

"$V" lab down --name "$LAB" >/dev/null 2>&1
"$V" lab up --name "$LAB" >/dev/null || { echo "FAIL lab up $LAB"; exit 1; }

# a3: in a lab host, a loopback destination falls back to the kernel and is counted in viaduct stat.
bg "$tmp/a3srv.log" ex h1 "$PY" -m http.server 18932 --bind 127.0.0.1 --directory "$tmp/www"
a3srv=$LAST
wait_port h1 127.0.0.1 18932
bg "$tmp/a3.log" ex h1 "$V" run -- "$PY" -c "
import socket, time, sys
k = socket.create_connection(('127.0.0.1', 18932))   # loopback: the kernel's
k.sendall(b'GET /blob HTTP/1.0\r\n\r\n'); n = 0
while True:
    b = k.recv(1 << 16)
    if not b: break
    n += len(b)
print('got', n, flush=True); time.sleep(4)"
a3=$LAST
for _ in $(seq 40); do grep -q got "$tmp/a3.log" && break; sleep 0.1; done
fb=$(ex h1 "$V" stat --json 2>/dev/null | "$PY" -c "
import json, sys
d = json.load(sys.stdin); print(sum(e.get('sock_fallback', 0) for e in d.get('endpoints', [])))" 2>/dev/null)
got=$(grep -o 'got [0-9]*' "$tmp/a3.log" | cut -d' ' -f2)
if [ "${got:-0}" -gt $((20 << 20)) ] && [ "${fb:-0}" -ge 1 ] 2>/dev/null; then
	ok "a3 loopback destination under viaduct run: kernel fallback, counted in viaduct stat ($fb)"
else ko "a3 loopback fallback (stat sock_fallback=${fb:-none})" "$tmp/a3.log"; fi
stop "$a3"
stop "$a3srv"

# ---- b. semantics probe --------------------------------------------------------------------------------
bg "$tmp/b1srv.log" vr h0 "$P" server 7101
b1srv=$LAST
wait_port h1 $H0 7101
timeout 60 "$V" lab exec --name "$LAB" h1 -- "$V" run --no-fallback -- "$P" checks $H0 7101 >"$tmp/b1.log" 2>&1
rc=$?
for _ in $(seq 50); do kill -0 "$b1srv" 2>/dev/null || break; sleep 0.1; done
if [ $rc -eq 0 ] && ! kill -0 "$b1srv" 2>/dev/null && [ "$(grep -c '^ok' "$tmp/b1.log")" -ge 30 ]; then
	ok "b1 run_probe viaduct <-> viaduct: $(grep -c '^ok' "$tmp/b1.log") semantic checks, server stopped via its kernel pipe"
else ko "b1 run_probe viaduct <-> viaduct (rc $rc)"; grep -v '^ok' "$tmp/b1.log" | head -5; fi
stop "$b1srv"
# The same checks with a kernel client against the viaduct server.
bg "$tmp/b2srv.log" vr h0 "$P" server 7102
b2srv=$LAST
wait_port h1 $H0 7102
timeout 60 "$V" lab exec --name "$LAB" h1 -- "$P" checks $H0 7102 >"$tmp/b2.log" 2>&1
rc=$?
if [ $rc -eq 0 ]; then ok "b2 run_probe kernel client -> viaduct server"
else ko "b2 run_probe kernel client -> viaduct server (rc $rc)"; grep -v '^ok' "$tmp/b2.log" | head -5; fi
stop "$b2srv"
# b4: a client that closes and exits right after its last send: the data still queued in its stack (the
# interposer lingers at exit) must all arrive. Three rounds.
good=0
for i in 1 2 3; do
	bg "$tmp/b4srv.log" vr h0 "$P" sink $((7104 + i))
	b4srv=$LAST
	wait_vport h0 tcp $((7104 + i))
	timeout 30 "$V" lab exec --name "$LAB" h1 -- "$V" run --no-fallback -- "$P" blast $H0 $((7104 + i)) 3000000 \
		>"$tmp/b4cli.log" 2>&1
	for _ in $(seq 100); do kill -0 "$b4srv" 2>/dev/null || break; sleep 0.1; done
	grep -q "^sink 3000000$" "$tmp/b4srv.log" && good=$((good + 1))
	stop "$b4srv"
done
if [ $good -eq 3 ]; then ok "b4 close then exit at once: 3 x 3 MB all arrive (linger at exit)"
else ko "b4 close then exit: $good/3" "$tmp/b4srv.log"; fi
# b5: the same from a fork child (the last holder), its parent exiting right after it (the stack's last
# process: it finishes the child's close before leaving), against a slow reader.
good=0
for i in 1 2 3; do
	bg "$tmp/b5srv.log" vr h0 "$P" sink $((7110 + i)) 500   # reads after 0.5 s: the data waits in h1
	b5srv=$LAST
	wait_vport h0 tcp $((7110 + i))
	timeout 30 "$V" lab exec --name "$LAB" h1 -- "$V" run --no-fallback -- "$P" fork-blast $H0 $((7110 + i)) 3000000 \
		>"$tmp/b5cli.log" 2>&1
	for _ in $(seq 100); do kill -0 "$b5srv" 2>/dev/null || break; sleep 0.1; done
	grep -q "^sink 3000000$" "$tmp/b5srv.log" && good=$((good + 1))
	stop "$b5srv"
done
if [ $good -eq 3 ]; then ok "b5 fork child sends, closes, exits; parent exits: 3 x 3 MB all arrive"
else ko "b5 fork-blast: $good/3" "$tmp/b5srv.log"; fi
for dir in "viaduct:kernel" "kernel:viaduct"; do
	srv=${dir%%:*} cli=${dir##*:}
	if [ "$srv" = viaduct ]; then bg "$tmp/b3srv.log" vr h0 "$P" udp-echo 7103 300
	else bg "$tmp/b3srv.log" ex h0 "$P" udp-echo 7103 300; fi
	b3srv=$LAST
	for _ in $(seq 50); do grep -qs listening "$tmp/b3srv.log" && break; sleep 0.1; done
	if [ "$cli" = viaduct ]; then timeout 60 "$V" lab exec --name "$LAB" h1 -- "$V" run --no-fallback -- "$P" udp-client $H0 7103 300 >"$tmp/b3.log" 2>&1
	else timeout 60 "$V" lab exec --name "$LAB" h1 -- "$P" udp-client $H0 7103 300 >"$tmp/b3.log" 2>&1; fi
	rc=$?
	if [ $rc -eq 0 ] && grep -q "udp 300/300" "$tmp/b3.log"; then ok "b3 UDP echo, server $srv, client $cli: 300 datagrams"
	else ko "b3 UDP echo, server $srv, client $cli" "$tmp/b3.log"; fi
	stop "$b3srv"
done

# ---- c. HTTP -------------------------------------------------------------------------------------------
bg "$tmp/c1srv.log" vr h0 "$PY" -m http.server 8080 --bind 0.0.0.0 --directory "$tmp/www"
c1srv=$LAST
wait_port h1 $H0 8080
timeout 60 "$V" lab exec --name "$LAB" h1 -- "$V" run --no-fallback -- curl -sf -o "$tmp/c1" http://$H0:8080/blob
if same "$tmp/c1" "$tmp/www/blob" && has_ep h0 "$c1srv"; then ok "c1 python3 http.server <- curl, both over viaduct: 20 MiB SHA-256"
else ko "c1 python3 http.server <- curl over viaduct" "$tmp/c1srv.log"; fi
timeout 60 "$V" lab exec --name "$LAB" h1 -- curl -sf -o "$tmp/c2" http://$H0:8080/blob
if same "$tmp/c2" "$tmp/www/blob"; then ok "c2 python3 http.server over viaduct <- kernel curl: SHA-256"
else ko "c2 python3 http.server <- kernel curl" "$tmp/c1srv.log"; fi
stop "$c1srv"

bg "$tmp/c3srv.log" ex h1 "$PY" -m http.server 8081 --bind 0.0.0.0 --directory "$tmp/www"
c3srv=$LAST
wait_port h0 10.99.0.2 8081
timeout 60 "$V" lab exec --name "$LAB" h0 -- "$V" run --no-fallback -- curl -sf -o "$tmp/c3" http://10.99.0.2:8081/blob
if same "$tmp/c3" "$tmp/www/blob"; then ok "c3 kernel http.server <- curl over viaduct: SHA-256"
else ko "c3 kernel http.server <- curl over viaduct" "$tmp/c3srv.log"; fi
stop "$c3srv"

mkdir -p "$tmp/nginx"
cat >"$tmp/nginx/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 256; }
http {
	access_log off;
	sendfile on;
	tcp_nopush on;
	client_body_temp_path $tmp/nginx/body;
	proxy_temp_path $tmp/nginx/proxy;
	fastcgi_temp_path $tmp/nginx/fastcgi;
	uwsgi_temp_path $tmp/nginx/uwsgi;
	scgi_temp_path $tmp/nginx/scgi;
	server { listen 8082; root $tmp/www; }
}
EOF
bg "$tmp/c4srv.log" vr h0 nginx -c "$tmp/nginx/nginx.conf" -p "$tmp/nginx"
c4srv=$LAST
wait_port h1 $H0 8082
good=0
for i in 1 2 3; do
	rm -f "$tmp/c4"
	timeout 60 "$V" lab exec --name "$LAB" h1 -- "$V" run --no-fallback -- curl -sf -o "$tmp/c4" http://$H0:8082/blob
	same "$tmp/c4" "$tmp/www/blob" && good=$((good + 1))
done
if [ $good -eq 3 ] && has_ep h0 "$c4srv"; then ok "c4 nginx (epoll, sendfile) <- curl, both over viaduct: 3 x 20 MiB SHA-256"
else ko "c4 nginx <- curl over viaduct: $good/3" "$tmp/nginx/error.log"; fi
stop "$c4srv"

# ---- d. redis ------------------------------------------------------------------------------------------
bg "$tmp/d.log" vr h0 redis-server --port 6390 --bind 0.0.0.0 --protected-mode no --save '' --appendonly no \
	--daemonize no --dir "$tmp"
dsrv=$LAST
wait_port h1 $H0 6390
val="viaduct-$RANDOM-$RANDOM"
set_out=$(timeout 20 "$V" lab exec --name "$LAB" h1 -- "$V" run --no-fallback -- redis-cli -h $H0 -p 6390 SET k "$val" 2>&1)
get_out=$(timeout 20 "$V" lab exec --name "$LAB" h1 -- "$V" run --no-fallback -- redis-cli -h $H0 -p 6390 GET k 2>&1)
if [ "$set_out" = OK ] && [ "$get_out" = "$val" ] && has_ep h0 "$dsrv"; then ok "d1 redis-server <- redis-cli over viaduct: GET returns the SET value"
else ko "d1 redis SET/GET: '$set_out' '$get_out'" "$tmp/d.log"; fi
N=20000
timeout 120 "$V" lab exec --name "$LAB" h1 -- "$V" run --no-fallback -- redis-benchmark -h $H0 -p 6390 -n $N -c 8 \
	-t set,get --csv >"$tmp/d2.log" 2>&1
rc=$?
if [ $rc -eq 0 ] && grep -q '^"SET"' "$tmp/d2.log" && grep -q '^"GET"' "$tmp/d2.log"; then
	ok "d2 redis-benchmark over viaduct: $N SET + $N GET ($(grep -E '^"(SET|GET)"' "$tmp/d2.log" | cut -d, -f1,2 | tr '\n' ' '))"
else ko "d2 redis-benchmark (rc $rc)" "$tmp/d2.log"; fi
dbsize=$(timeout 20 "$V" lab exec --name "$LAB" h1 -- redis-cli -h $H0 -p 6390 DBSIZE 2>&1)
if [ "${dbsize:-0}" -ge 2 ] 2>/dev/null; then ok "d3 kernel redis-cli -> redis over viaduct: DBSIZE $dbsize"
else ko "d3 kernel redis-cli DBSIZE: '$dbsize'"; fi
stop "$dsrv"

# ---- e. iperf3 -----------------------------------------------------------------------------------------
bg "$tmp/e.log" vr h0 iperf3 -s -4 -p 5211   # -4: its default is an IPv6 socket, which stays in the kernel
esrv=$LAST
wait_port h1 $H0 5211
sleep 0.5   # iperf3 -s logs the probe connection as a failed test and needs a moment to listen again
for mode in "" "-R"; do
	timeout 60 "$V" lab exec --name "$LAB" h1 -- "$V" run --no-fallback -- iperf3 -c $H0 -p 5211 -t 3 $mode -J \
		>"$tmp/e$mode.json" 2>&1
	res=$("$PY" -c "
import json, sys
d = json.load(open(sys.argv[1]))
if 'error' in d: sys.exit(d['error'])
b = d['end']['sum_received']['bytes']
print('%d %.0f' % (b, d['end']['sum_received']['bits_per_second'] / 1e6))" "$tmp/e$mode.json" 2>&1)
	if [ -n "$res" ] && [ "${res%% *}" -gt 1000000 ] 2>/dev/null && has_ep h0 "$esrv"; then
		ok "e iperf3 ${mode:-(h1 -> h0)} over viaduct both ends: ${res%% *} bytes, ${res##* } Mbit/s"
	else ko "e iperf3 $mode: $res" "$tmp/e.log"; fi
done
stop "$esrv"

# ---- f. TLS --------------------------------------------------------------------------------------------
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/key.pem" -out "$tmp/cert.pem" -days 1 -subj /CN=viaduct-test \
	>/dev/null 2>&1
bg "$tmp/f.log" cmd - "$V" lab exec --name "$LAB" h0 -- bash -c "cd '$tmp/www' && exec '$V' run --no-fallback -- \
	openssl s_server -4 -accept 8443 -cert '$tmp/cert.pem' -key '$tmp/key.pem' -WWW -quiet"
fsrv=$LAST
wait_port h1 $H0 8443
timeout 60 "$V" lab exec --name "$LAB" h1 -- "$V" run --no-fallback -- curl -skf -o "$tmp/f1" https://$H0:8443/blob
if same "$tmp/f1" "$tmp/www/blob" && has_ep h0 "$fsrv"; then ok "f1 openssl s_server -WWW <- curl (TLS), both over viaduct: SHA-256"
else ko "f1 openssl s_server <- curl https" "$tmp/f.log"; fi
timeout 30 "$V" lab exec --name "$LAB" h1 -- "$V" run --no-fallback -- openssl s_client -connect $H0:8443 -brief \
	</dev/null >"$tmp/f2.log" 2>&1
if grep -q "CONNECTION ESTABLISHED" "$tmp/f2.log" && grep -q "Protocol version: TLSv1" "$tmp/f2.log"; then
	ok "f2 openssl s_client handshake over viaduct ($(grep 'Protocol version' "$tmp/f2.log" | tr -d '\n'))"
else ko "f2 openssl s_client handshake" "$tmp/f2.log"; fi
stop "$fsrv"

# ---- g. socat ------------------------------------------------------------------------------------------
bg "$tmp/g1srv.log" vr h0 socat -u TCP4-LISTEN:7201,reuseaddr CREATE:"$tmp/g1"
g1srv=$LAST
wait_vport h0 tcp 7201
timeout 60 "$V" lab exec --name "$LAB" h1 -- "$V" run --no-fallback -- socat -u OPEN:"$tmp/www/blob" TCP4:$H0:7201 \
	>"$tmp/g1cli.log" 2>&1
for _ in $(seq 100); do kill -0 "$g1srv" 2>/dev/null || break; sleep 0.1; done
if same "$tmp/g1" "$tmp/www/blob"; then ok "g1 socat file through TCP, both over viaduct: SHA-256"
else ko "g1 socat TCP file" "$tmp/g1srv.log"; fi
stop "$g1srv"
bg "$tmp/g2srv.log" vr h0 socat -T 5 UDP4-LISTEN:7202 EXEC:cat
g2srv=$LAST
wait_vport h0 udp 7202
msg="viaduct udp $RANDOM"
out=$(echo "$msg" | timeout 20 "$V" lab exec --name "$LAB" h1 -- "$V" run --no-fallback -- socat -T 2 - UDP4:$H0:7202 2>&1)
if [ "$out" = "$msg" ]; then ok "g2 socat UDP echo, both over viaduct"
else ko "g2 socat UDP echo: '$out'" "$tmp/g2srv.log"; fi
stop "$g2srv"

# ---- h. fork and exec -----------------------------------------------------------------------------------
# clients N PORT LEN: N concurrent run_probe echo-clients in h1 (odd ones over viaduct, even ones kernel);
# prints how many passed.
clients() {
	local n=$1 port=$2 len=$3 i pids=() good=0
	for i in $(seq "$n"); do
		if [ $((i % 2)) -eq 1 ]; then
			timeout 60 "$V" lab exec --name "$LAB" h1 -- "$V" run --no-fallback -- "$P" echo-client $H0 "$port" "$len" \
				>"$tmp/cl$i.log" 2>&1 &
		else
			timeout 60 "$V" lab exec --name "$LAB" h1 -- "$P" echo-client $H0 "$port" "$len" >"$tmp/cl$i.log" 2>&1 &
		fi
		pids+=($!)
	done
	for i in "${!pids[@]}"; do wait "${pids[$i]}" && good=$((good + 1)); done
	echo "$good"
}

bg "$tmp/h1srv.log" vr h0 "$P" fork-accept 7301
h1srv=$LAST
wait_vport h0 tcp 7301
g1=$(clients 1 7301 300000)
g2=$(clients 1 7301 300000)
for _ in $(seq 100); do kill -0 "$h1srv" 2>/dev/null || break; sleep 0.1; done
if [ "$g1$g2" = 11 ] && grep -q "^fork-accept 2$" "$tmp/h1srv.log"; then
	ok "h1 fork: a child accepts and echoes on the inherited listener, then the parent on it"
else ko "h1 fork-accept: clients $g1 $g2" "$tmp/h1srv.log"; fi
stop "$h1srv"

bg "$tmp/h2srv.log" vr h0 socat TCP4-LISTEN:7302,fork,reuseaddr PIPE
h2srv=$LAST
wait_vport h0 tcp 7302
good=$(clients 8 7302 200000)
if [ "$good" = 8 ] && kill -0 "$h2srv" 2>/dev/null && has_ep h0 "$h2srv"; then
	ok "h2 socat forking echo server (fork per connection): 8 concurrent clients, 200 kB each echoed"
else ko "h2 socat fork PIPE: $good/8" "$tmp/h2srv.log"; fi
stop "$h2srv"

mkdir -p "$tmp/nginx2"
sed -e 's/^master_process off;/master_process on;/' -e 's/^worker_processes 1;/worker_processes 2;/' \
	-e "s|$tmp/nginx/|$tmp/nginx2/|g" -e 's/listen 8082;/listen 8083;/' "$tmp/nginx/nginx.conf" >"$tmp/nginx2/nginx.conf"
bg "$tmp/h3srv.log" vr h0 nginx -c "$tmp/nginx2/nginx.conf" -p "$tmp/nginx2"
h3srv=$LAST
wait_port h1 $H0 8083
ngx_pids="$h3srv $(pgrep -P "$h3srv" | tr '\n' ' ')"   # the master and its workers
workers=$(pgrep -P "$h3srv" | wc -l)
good=0
pids=()
for i in 1 2 3 4; do
	timeout 60 "$V" lab exec --name "$LAB" h1 -- "$V" run --no-fallback -- curl -sf -o "$tmp/h3.$i" \
		http://$H0:8083/blob &
	pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
for i in 1 2 3 4; do same "$tmp/h3.$i" "$tmp/www/blob" && good=$((good + 1)); done
echo small >"$tmp/www/small"
chmod a+r "$tmp/www/small"
small=0
for i in $(seq 30); do
	[ "$(timeout 20 "$V" lab exec --name "$LAB" h1 -- curl -sf http://$H0:8083/small)" = small ] && small=$((small + 1))
done
if [ "$workers" = 2 ] && [ $good -eq 4 ] && [ $small -eq 30 ] && has_ep h0 "$h3srv"; then
	ok "h3 nginx master + 2 workers (fork): 4 concurrent 20 MiB SHA-256 + 30 requests on new connections"
else ko "h3 nginx master_process on: workers $workers, blobs $good/4, small $small/30" "$tmp/nginx2/error.log"; fi
stop "$h3srv"

# h3c: the same with daemon on: nginx opens its listener, then forks and its first process exits; the
# daemon child carries on as the stack's only member and forks the workers.
mkdir -p "$tmp/nginx3"
sed -e 's/^daemon off;/daemon on;/' -e "s|$tmp/nginx2/|$tmp/nginx3/|g" -e 's/listen 8083;/listen 8084;/' \
	"$tmp/nginx2/nginx.conf" >"$tmp/nginx3/nginx.conf"
timeout 20 "$V" lab exec --name "$LAB" h0 -- "$V" run --no-fallback -- nginx -c "$tmp/nginx3/nginx.conf" -p "$tmp/nginx3"
for _ in $(seq 50); do [ -s "$tmp/nginx3/nginx.pid" ] && break; sleep 0.1; done
h3d=$(cat "$tmp/nginx3/nginx.pid" 2>/dev/null)
[ -n "$h3d" ] && bg_pids+=("$h3d")
wait_port h1 $H0 8084
good=0
for i in 1 2; do
	rm -f "$tmp/h3c"
	timeout 60 "$V" lab exec --name "$LAB" h1 -- "$V" run --no-fallback -- curl -sf -o "$tmp/h3c" http://$H0:8084/blob
	same "$tmp/h3c" "$tmp/www/blob" && good=$((good + 1))
done
if [ -n "$h3d" ] && [ $good -eq 2 ]; then ok "h3c nginx daemon on (the listener's first process exits after fork): 2 x 20 MiB SHA-256"
else ko "h3c nginx daemon on: $good/2" "$tmp/nginx3/error.log"; fi
if [ -n "$h3d" ]; then
	ngx_pids="$ngx_pids $h3d $(pgrep -P "$h3d" | tr '\n' ' ')"
	stop "$h3d"
fi
sleep 0.5
left=0
for p in $ngx_pids; do kill -0 "$p" 2>/dev/null && { left=$((left + 1)); kill -9 "$p"; }; done
[ "$left" = 0 ] && ok "h3b nginx stopped (both): no master or worker left" || ko "h3b nginx processes left: $left"

bg "$tmp/h4.log" vr h0 redis-server --port 6391 --bind 0.0.0.0 --protected-mode no --save '' --appendonly no \
	--daemonize no --dir "$tmp" --dbfilename h4.rdb
h4srv=$LAST
wait_port h1 $H0 6391
rc4() { timeout 20 "$V" lab exec --name "$LAB" h1 -- "$V" run --no-fallback -- redis-cli -h $H0 -p 6391 "$@" 2>&1; }
val="fork-$RANDOM"
s1=$(rc4 SET k "$val")
b1=$(rc4 BGSAVE)
bg_ok=0
for _ in $(seq 100); do
	info=$(rc4 INFO persistence | tr -d '\r')
	if echo "$info" | grep -q '^rdb_bgsave_in_progress:0' && echo "$info" | grep -q '^rdb_last_bgsave_status:ok' &&
		[ -s "$tmp/h4.rdb" ]; then bg_ok=1; break; fi
	sleep 0.1
done
s2=$(rc4 SET k2 after)
g4=$(rc4 GET k)
g5=$(rc4 GET k2)
if [ "$s1" = OK ] && [[ "$b1" == "Background saving started" ]] && [ $bg_ok = 1 ] && [ "$s2" = OK ] &&
	[ "$g4" = "$val" ] && [ "$g5" = after ]; then
	ok "h4 redis BGSAVE (fork child, RDB written), then SET/GET served over viaduct"
else ko "h4 redis BGSAVE: '$s1' '$b1' saved=$bg_ok '$s2' '$g4' '$g5'" "$tmp/h4.log"; fi
stop "$h4srv"

cat >"$tmp/fork_echo.py" <<'PYEOF'
import socketserver, sys
class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            d = self.request.recv(65536)
            if not d:
                break
            self.request.sendall(d)
socketserver.ForkingTCPServer.allow_reuse_address = True
with socketserver.ForkingTCPServer(('0.0.0.0', int(sys.argv[1])), Echo) as s:
    print('listening', flush=True)
    s.serve_forever()
PYEOF
bg "$tmp/h5srv.log" vr h0 "$PY" "$tmp/fork_echo.py" 7305
h5srv=$LAST
wait_vport h0 tcp 7305
good=$(clients 6 7305 100000)
if [ "$good" = 6 ] && kill -0 "$h5srv" 2>/dev/null; then
	ok "h5 python3 socketserver.ForkingTCPServer: 6 concurrent clients echoed"
else ko "h5 python3 ForkingTCPServer: $good/6" "$tmp/h5srv.log"; fi
# h5b: a client that runs programs while connected: subprocess (vfork, closes the inherited fds before
# exec) and os.system (posix_spawn); its socket works after each.
timeout 60 "$V" lab exec --name "$LAB" h1 -- "$V" run --no-fallback -- "$PY" -c "
import os, socket, subprocess, sys
s = socket.create_connection(('$H0', 7305))
def echo(n):
    d = os.urandom(n); s.sendall(d); got = b''
    while len(got) < n:
        b = s.recv(65536)
        if not b: sys.exit('EOF')
        got += b
    if got != d: sys.exit('mismatch')
echo(50000)
subprocess.run(['true'], check=True)
echo(50000)
assert os.popen('echo hi').read() == 'hi\n'
echo(50000)
assert os.system('true') == 0
echo(50000)
print('ok')" >"$tmp/h5b.log" 2>&1
if [ "$(cat "$tmp/h5b.log")" = ok ]; then ok "h5b python3 client runs subprocess/popen/system while connected: echo works after each"
else ko "h5b python3 subprocess while connected" "$tmp/h5b.log"; fi
stop "$h5srv"

# fork + exec per connection: socat's child forks again and execs cat (which gets the data through a
# socketpair; the TCP socket stays with the socat child).
bg "$tmp/h6srv.log" vr h0 socat TCP4-LISTEN:7306,fork,reuseaddr EXEC:cat
h6srv=$LAST
wait_vport h0 tcp 7306
good=$(clients 4 7306 100000)
if [ "$good" = 4 ] && kill -0 "$h6srv" 2>/dev/null; then
	ok "h6 socat fork + EXEC:cat per connection: 4 concurrent clients echoed"
else ko "h6 socat fork EXEC:cat: $good/4" "$tmp/h6srv.log"; fi
stop "$h6srv"
# Forked children end with their connection (or their master): none of them is left.
sleep 1
left=$(pgrep -f "TCP4-LISTEN:730|$tmp/fork_echo.py|fork-accept 7301" | wc -l)
[ "$left" = 0 ] && ok "h7 no forked child left running" || ko "h7 $left forked processes still running"

finish "($(( $(date +%s) - start )) s)"
