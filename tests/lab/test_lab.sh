#!/usr/bin/env bash
# Lab tests for `viaduct lab` (root: network namespaces). $1 = build dir (default build).
# Labs used: vdBt1 (2 hosts), vdBt2 (3 hosts), vdBt3 (netem); all removed on exit, whatever happens.
# The viaductd checks run when BUILD/bin/viaductd exists; without it the labs are made with --no-daemon.
set -u
BUILD=$(cd "${1:-build}" && pwd) || { echo "test_lab: no build dir ${1:-build}" >&2; exit 1; }
V="$BUILD/bin/viaduct"
LABS=(vdBt1 vdBt2 vdBt3)
pass=0
fail=0

[ "$(id -u)" -eq 0 ] || { echo "test_lab: needs root" >&2; exit 1; }
[ -x "$V" ] || { echo "test_lab: $V not built" >&2; exit 1; }

cleanup() {
	for l in "${LABS[@]}"; do "$V" lab down --name "$l" >/dev/null 2>&1; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ok() { pass=$((pass + 1)); echo "ok   $*"; }
ko() { fail=$((fail + 1)); echo "FAIL $*"; }
# check "description" command...: passes when the command succeeds
check() { local d=$1; shift; if "$@" >/tmp/vdB_test_out.$$ 2>&1; then ok "$d"; else ko "$d"; sed 's/^/     /' /tmp/vdB_test_out.$$; fi; }
# check_not "description" command...: passes when the command fails
check_not() { local d=$1; shift; if "$@" >/tmp/vdB_test_out.$$ 2>&1; then ko "$d"; else ok "$d"; fi; }

if [ -x "$BUILD/bin/viaductd" ]; then
	DAEMON=1; UP_OPTS=()
else
	DAEMON=0; UP_OPTS=(--no-daemon)
	echo "note: $BUILD/bin/viaductd not built: labs without viaductd, daemon checks skipped"
fi

ns_exists() { [ -e "/run/netns/$1" ]; }
# Every trace of lab $1 is gone: namespaces, run dirs.
lab_gone() {
	! ls /run/netns 2>/dev/null | grep -q "^$1-" && ! ls /run/viaduct/lab 2>/dev/null | grep -q "^$1-"
}
pings() { "$V" lab exec --name "$1" "$2" -- ping -c 1 -W 2 "$3" >/dev/null 2>&1 || \
	"$V" lab exec --name "$1" "$2" -- ping -c 2 -W 2 "$3" >/dev/null 2>&1; }
daemon_pid() { cat "/run/viaduct/lab/$1/viaductd.pid" 2>/dev/null; }
daemon_running() {
	local pid; pid=$(daemon_pid "$1") && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && \
	[ "$(readlink /proc/"$pid"/ns/net)" = "$(ip netns exec "$1" readlink /proc/self/ns/net)" ] && \
	[ -S "/run/viaduct/lab/$1/viaductd.sock" ]
}
# No process whose command line names the lab's run dir (bracket: grep must not match itself).
no_lab_procs() { ! grep -lqa "lab/$1[-]h" /proc/[0-9]*/cmdline 2>/dev/null; }
# Running (a zombie waiting for its reaper is not).
alive() { local st; st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1); [ -n "$st" ] && [ "$st" != Z ]; }
pids_in() { ip netns pids "$1" 2>/dev/null | wc -l; }

cleanup

# --- usage --------------------------------------------------------------------------------------------
"$V" >/dev/null 2>&1; [ $? -eq 2 ] && ok "no command: exit 2" || ko "no command: exit 2"
"$V" frobnicate >/dev/null 2>&1; [ $? -eq 2 ] && ok "unknown command: exit 2" || ko "unknown command: exit 2"
"$V" lab up --name 'bad/name' >/dev/null 2>&1; [ $? -eq 2 ] && ok "bad lab name: exit 2" || ko "bad lab name: exit 2"
"$V" lab up --hosts 1 >/dev/null 2>&1; [ $? -eq 2 ] && ok "--hosts 1: exit 2" || ko "--hosts 1: exit 2"
check "lab --help" "$V" lab --help
check "version" "$V" version

# --- two hosts ------------------------------------------------------------------------------------------
check "down of a lab that is not there succeeds" "$V" lab down --name vdBt1
root_links=$(ip -o link show | wc -l)
check "up vdBt1 (2 hosts, mtu 2000, 2 queues)" "$V" lab up --name vdBt1 --mtu 2000 --queues 2 "${UP_OPTS[@]}"
check_not "up vdBt1 again fails" "$V" lab up --name vdBt1 "${UP_OPTS[@]}"
check "vdBt1 still intact after the refused up" ns_exists vdBt1-h1
check "h0 -> h1 ping (eth0)" pings vdBt1 h0 10.99.0.2
check "h1 -> h0 ping (eth0)" pings vdBt1 h1 10.99.0.1
check "h0 -> h1 ping (ref0)" pings vdBt1 h0 10.98.0.2
check "mtu 2000 on eth0" sh -c "ip -n vdBt1-h0 link show eth0 | grep -q 'mtu 2000'"
check "2 rx queues on eth0" sh -c "ip -n vdBt1-h1 -d link show eth0 | grep -q 'numrxqueues 2'"
check "ref0 has the same mtu" sh -c "ip -n vdBt1-h1 link show ref0 | grep -q 'mtu 2000'"
check "no interface added to the root namespace" sh -c "[ \$(ip -o link show | wc -l) -eq $root_links ]"
check "exec sets VIADUCT_SOCKET/LAB/HOST" sh -c \
	"[ \"\$('$V' lab exec --name vdBt1 h1 -- sh -c 'echo \$VIADUCT_SOCKET \$VIADUCT_LAB \$VIADUCT_HOST')\" = \
	'/run/viaduct/lab/vdBt1-h1/viaductd.sock vdBt1 h1' ]"
check "exec runs in the namespace" sh -c \
	"[ \"\$('$V' lab exec --name vdBt1 h0 -- readlink /proc/self/ns/net)\" = \"\$(ip netns exec vdBt1-h0 readlink /proc/self/ns/net)\" ]"
"$V" lab exec --name vdBt1 h0 -- sh -c 'exit 7'; [ $? -eq 7 ] && ok "exec exits with the command's status" || ko "exec status"
check_not "exec on a host that does not exist fails" "$V" lab exec --name vdBt1 h5 -- true
check "list shows vdBt1" sh -c "'$V' lab list | grep -q '^vdBt1 '"
if [ $DAEMON = 1 ]; then
	check "viaductd running in h0" daemon_running vdBt1-h0
	check "viaductd running in h1" daemon_running vdBt1-h1
	check "viaduct stat through exec" "$V" lab exec --name vdBt1 h0 -- "$V" stat
	check "viaduct stat --json" sh -c "'$V' stat --socket /run/viaduct/lab/vdBt1-h1/viaductd.sock --json | grep -q '\"interfaces\"'"
fi

# --- three hosts, beside the first lab ---------------------------------------------------------------
check "up vdBt2 (3 hosts) while vdBt1 is up" "$V" lab up --name vdBt2 --hosts 3 "${UP_OPTS[@]}"
check "vdBt2 h0 -> h2 ping" pings vdBt2 h0 10.99.0.3
check "vdBt2 h2 -> h1 ping" pings vdBt2 h2 10.99.0.2
check "vdBt2 h0 -> h1 ping (ref0)" pings vdBt2 h0 10.98.0.2
check "vdBt1 still works beside vdBt2" pings vdBt1 h0 10.99.0.2
[ $DAEMON = 1 ] && check "viaductd running in vdBt2 h2" daemon_running vdBt2-h2
check "down vdBt2" "$V" lab down --name vdBt2
check "vdBt2 gone" lab_gone vdBt2
check "vdBt1 untouched by down vdBt2" pings vdBt1 h1 10.99.0.1

# --- down after crashes inside ----------------------------------------------------------------------
ip netns exec vdBt1-h1 sleep 600 >/dev/null 2>&1 &
stray=$!
disown "$stray"   # no "Killed" job report when down kills it
sleep 0.2
if [ $DAEMON = 1 ]; then
	dpid=$(daemon_pid vdBt1-h0)
	kill -9 "$dpid" 2>/dev/null
fi
# a process started in the lab that crashed (kill -9) and one still running
bash -c '"$0" lab exec --name vdBt1 h0 -- sh -c "kill -9 \$\$"; exit 0' "$V" 2>/dev/null
check "a stray process is in vdBt1-h1" sh -c "[ $(pids_in vdBt1-h1) -ge 1 ]"
check "down vdBt1 after kill -9 inside" "$V" lab down --name vdBt1
check "vdBt1 gone (namespaces, run dirs)" lab_gone vdBt1
check_not "stray process gone" alive "$stray"
[ $DAEMON = 1 ] && { check_not "killed viaductd gone" alive "$dpid"; check "no viaductd of vdBt1 left" no_lab_procs vdBt1; }
check "down is idempotent" "$V" lab down --name vdBt1

# --- netem ----------------------------------------------------------------------------------------------
# This needs the kernel's sch_netem; where it is missing, up must fail cleanly (and leave nothing).
if "$V" lab up --name vdBt3 --no-daemon --netem "delay 5ms" >/tmp/vdB_test_out.$$ 2>&1; then
	check "netem on h0 eth0" sh -c "tc -n vdBt3-h0 qdisc show dev eth0 | grep -q 'netem.*delay 5ms'"
	check "netem on h1 ref0" sh -c "tc -n vdBt3-h1 qdisc show dev ref0 | grep -q 'netem.*delay 5ms'"
	check "ping through netem" pings vdBt3 h0 10.99.0.2
	check "down vdBt3" "$V" lab down --name vdBt3
else
	if grep -q 'netem' /tmp/vdB_test_out.$$; then
		echo "note: no netem in this kernel; checking that the failed up cleaned up"
		check "failed up (netem) left nothing" lab_gone vdBt3
	else
		ko "up with netem"; sed 's/^/     /' /tmp/vdB_test_out.$$
	fi
fi
check "vdBt3 gone" lab_gone vdBt3

rm -f /tmp/vdB_test_out.$$
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
