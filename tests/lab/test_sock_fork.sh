#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# fork() and the sockets stack over the real xdp backend (issue 4, item 3; include/viaduct/socket.h,
# "Processes"). tests/lab/sock_fork.c on h0 (as uid 65534, no capability), the Linux kernel's sockets
# (python3) on h1:
#   share: a connection to a kernel echo server used by the parent and by fork children (one closes and
#          leaves, one _exit()s holding it, two are killed with SIGKILL); after the parent's close the
#          kernel sees EOF;
#   exec: a child leaves by exit(), one (reusing its member slot) execs; the parent's close sends FIN;
#   listen: a listener inherited by two children, each accepts one kernel connection and echoes.
# usage: tests/lab/test_sock_fork.sh [BUILD_DIR]   (env VD_TEST_LAB=vdtfork)
set -uo pipefail
BUILD=$(cd "${1:-build}" && pwd) || exit 1
V=$BUILD/bin/viaduct
PROG=$BUILD/tests/sock_fork
LAB=${VD_TEST_LAB:-vdtfork}
LIMIT=60
[ "$(id -u)" -eq 0 ] || { echo "test_sock_fork: needs root" >&2; exit 1; }
for b in "$V" "$PROG"; do [ -x "$b" ] || { echo "test_sock_fork: $b not built" >&2; exit 1; }; done
command -v python3 >/dev/null || { echo "test_sock_fork: needs python3" >&2; exit 1; }

. "$(dirname "$0")/lib.sh"
lab_scratch "$LAB"

cat >"$tmp/kpeer.py" <<'PY'
import socket, sys, time
mode = sys.argv[1]
if mode == "echo":   # one connection, echo until EOF, then say so
    l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(("0.0.0.0", int(sys.argv[2]))); l.listen(4)
    print("LISTENING", flush=True)
    c, _ = l.accept(); c.settimeout(float(sys.argv[3])); n = 0
    try:
        while True:
            b = c.recv(65536)
            if not b:
                print("EOF after %d bytes" % n, flush=True); break
            c.sendall(b); n += len(b)
    except socket.timeout:
        print("TIMEOUT after %d bytes" % n, flush=True); sys.exit(1)
    except ConnectionResetError:
        print("RESET after %d bytes" % n, flush=True); sys.exit(1)
elif mode == "clients":   # N connections, one message each, the echo must come back
    host, port = sys.argv[2].rsplit(":", 1); ok = 0
    for i in range(int(sys.argv[3])):
        c = socket.create_connection((host, int(port)), timeout=10)
        m = b"hello-%d" % i; c.sendall(m)
        got = b""
        while len(got) < len(m):
            b = c.recv(64)
            if not b: break
            got += b
        ok += got == m
        c.close()
    print("CLIENTS ok %d" % ok, flush=True)
    sys.exit(0 if ok == int(sys.argv[3]) else 1)
PY

show() { sed "s/^/    $1: /" "$2" | tail -n 30; }

"$V" lab down --name "$LAB" >/dev/null 2>&1
"$V" lab up --name "$LAB" --group nogroup >/dev/null || { echo "FAIL lab up $LAB"; exit 1; }
NOBODY="setpriv --reuid 65534 --regid 65534 --init-groups"
H0=10.99.0.1 H1=10.99.0.2

# ---- share ----
"$V" lab exec --name "$LAB" h1 -- timeout $LIMIT python3 "$tmp/kpeer.py" echo 9201 $LIMIT >"$tmp/k_share" 2>&1 &
k=$!
wait_listening "$tmp/k_share" || echo "    (the echo server did not report LISTENING)"
# shellcheck disable=SC2086
"$V" lab exec --name "$LAB" h0 -- $NOBODY "$PROG" share $H1:9201 --timeout-s $LIMIT >"$tmp/v_share" 2>&1
rv=$?
wait $k; rk=$?
sed -n 's/^/  /p' "$tmp/v_share" | grep -E '^  (ok|FAIL|    )' || true
if [ $rv -eq 0 ] && grep -q "RESULT passed [1-9][0-9]* failed 0" "$tmp/v_share"; then
	ok "share: parent and fork children on one connection ($(grep -c '^ok' "$tmp/v_share") checks)"
else
	ko "share (rc $rv)"; show viaduct "$tmp/v_share"
fi
if [ $rk -eq 0 ] && grep -q "^EOF" "$tmp/k_share"; then
	ok "share: the kernel peer saw EOF after the last holder closed ($(grep EOF "$tmp/k_share"))"
else
	ko "share: kernel peer (rc $rk)"; show kernel "$tmp/k_share"
fi

# ---- exec ----
"$V" lab exec --name "$LAB" h1 -- timeout $LIMIT python3 "$tmp/kpeer.py" echo 9203 $LIMIT >"$tmp/k_exec" 2>&1 &
k=$!
wait_listening "$tmp/k_exec" || echo "    (the echo server did not report LISTENING)"
# shellcheck disable=SC2086
"$V" lab exec --name "$LAB" h0 -- $NOBODY "$PROG" exec $H1:9203 --timeout-s $LIMIT >"$tmp/v_exec" 2>&1
rv=$?
wait $k; rk=$?
sed -n 's/^/  /p' "$tmp/v_exec" | grep -E '^  (ok|FAIL)' || true
if [ $rv -eq 0 ] && grep -q "RESULT passed [1-9][0-9]* failed 0" "$tmp/v_exec" && grep -q "^EOF" "$tmp/k_exec"; then
	ok "exec: a child that exits, one that execs; the parent's close sends FIN ($(grep EOF "$tmp/k_exec"))"
else
	ko "exec (viaduct rc $rv, kernel rc $rk)"; show viaduct "$tmp/v_exec"; show kernel "$tmp/k_exec"
fi

# ---- listen ----
# shellcheck disable=SC2086
"$V" lab exec --name "$LAB" h0 -- $NOBODY "$PROG" listen 9202 --timeout-s $LIMIT >"$tmp/v_listen" 2>&1 &
v=$!
wait_listening "$tmp/v_listen" || echo "    (the viaduct listener did not report LISTENING)"
"$V" lab exec --name "$LAB" h1 -- timeout $LIMIT python3 "$tmp/kpeer.py" clients $H0:9202 2 >"$tmp/k_listen" 2>&1
rk=$?
wait $v; rv=$?
sed -n 's/^/  /p' "$tmp/v_listen" | grep -E '^  (ok|FAIL)' || true
if [ $rv -eq 0 ] && [ $rk -eq 0 ] && grep -q "RESULT passed [1-9][0-9]* failed 0" "$tmp/v_listen"; then
	ok "listen: a listener inherited by two children, each accepted and echoed ($(cat "$tmp/k_listen"))"
else
	ko "listen (viaduct rc $rv, kernel rc $rk)"; show viaduct "$tmp/v_listen"; show kernel "$tmp/k_listen"
fi

finish
