#!/usr/bin/env bash
# Lab tests for `viaduct lab` (root: network namespaces). $1 = build dir (default build).
# Labs used: ${P}1 (2 hosts), ${P}2 (3 hosts), ${P}3 (netem, 2 hosts), ${P}4 (netem, 3 hosts), with P =
# $VD_TEST_LAB_PREFIX (default vdBt); all removed on exit, whatever happens.
# The viaductd checks run when BUILD/bin/viaductd exists; without it the labs are made with --no-daemon.
set -u
BUILD=$(cd "${1:-build}" && pwd) || { echo "test_lab: no build dir ${1:-build}" >&2; exit 1; }
V="$BUILD/bin/viaduct"
P=${VD_TEST_LAB_PREFIX:-vdBt}
LABS=("${P}1" "${P}2" "${P}3" "${P}4")
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" -eq 0 ] || { echo "test_lab: needs root" >&2; exit 1; }
[ -x "$V" ] || { echo "test_lab: $V not built" >&2; exit 1; }

cleanup() {
	for l in "${LABS[@]}"; do "$V" lab down --name "$l" >/dev/null 2>&1; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM


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
check "down of a lab that is not there succeeds" "$V" lab down --name ${P}1
root_links=$(ip -o link show | wc -l)
check "up ${P}1 (2 hosts, mtu 2000, 2 queues)" "$V" lab up --name ${P}1 --mtu 2000 --queues 2 "${UP_OPTS[@]}"
check_not "up ${P}1 again fails" "$V" lab up --name ${P}1 "${UP_OPTS[@]}"
check "${P}1 still intact after the refused up" ns_exists ${P}1-h1
check "h0 -> h1 ping (eth0)" pings ${P}1 h0 10.99.0.2
check "h1 -> h0 ping (eth0)" pings ${P}1 h1 10.99.0.1
check "h0 -> h1 ping (ref0)" pings ${P}1 h0 10.98.0.2
check_not "no switch namespace (and no relay) without --netem" ns_exists ${P}1-sw
check "mtu 2000 on eth0" sh -c "ip -n ${P}1-h0 link show eth0 | grep -q 'mtu 2000'"
check "2 rx queues on eth0" sh -c "ip -n ${P}1-h1 -d link show eth0 | grep -q 'numrxqueues 2'"
check "ref0 has the same mtu" sh -c "ip -n ${P}1-h1 link show ref0 | grep -q 'mtu 2000'"
check "no interface added to the root namespace" sh -c "[ \$(ip -o link show | wc -l) -eq $root_links ]"
check "exec sets VIADUCT_SOCKET/LAB/HOST" sh -c \
	"[ \"\$('$V' lab exec --name ${P}1 h1 -- sh -c 'echo \$VIADUCT_SOCKET \$VIADUCT_LAB \$VIADUCT_HOST')\" = \
	'/run/viaduct/lab/${P}1-h1/viaductd.sock ${P}1 h1' ]"
check "exec runs in the namespace" sh -c \
	"[ \"\$('$V' lab exec --name ${P}1 h0 -- readlink /proc/self/ns/net)\" = \"\$(ip netns exec ${P}1-h0 readlink /proc/self/ns/net)\" ]"
"$V" lab exec --name ${P}1 h0 -- sh -c 'exit 7'; [ $? -eq 7 ] && ok "exec exits with the command's status" || ko "exec status"
check_not "exec on a host that does not exist fails" "$V" lab exec --name ${P}1 h5 -- true
check "list shows ${P}1" sh -c "'$V' lab list | grep -q '^${P}1 '"
if [ $DAEMON = 1 ]; then
	check "viaductd running in h0" daemon_running ${P}1-h0
	check "viaductd running in h1" daemon_running ${P}1-h1
	check "viaduct stat through exec" "$V" lab exec --name ${P}1 h0 -- "$V" stat
	check "viaduct stat --json" sh -c "'$V' stat --socket /run/viaduct/lab/${P}1-h1/viaductd.sock --json | grep -q '\"interfaces\"'"
fi

# --- three hosts, beside the first lab ---------------------------------------------------------------
check "up ${P}2 (3 hosts) while ${P}1 is up" "$V" lab up --name ${P}2 --hosts 3 "${UP_OPTS[@]}"
check "${P}2 h0 -> h2 ping" pings ${P}2 h0 10.99.0.3
check "${P}2 h2 -> h1 ping" pings ${P}2 h2 10.99.0.2
check "${P}2 h0 -> h1 ping (ref0)" pings ${P}2 h0 10.98.0.2
check "${P}1 still works beside ${P}2" pings ${P}1 h0 10.99.0.2
[ $DAEMON = 1 ] && check "viaductd running in ${P}2 h2" daemon_running ${P}2-h2
check "down ${P}2" "$V" lab down --name ${P}2
check "${P}2 gone" lab_gone ${P}2
check "${P}1 untouched by down ${P}2" pings ${P}1 h1 10.99.0.1

# --- down after crashes inside ----------------------------------------------------------------------
ip netns exec ${P}1-h1 sleep 600 >/dev/null 2>&1 &
stray=$!
disown "$stray"   # no "Killed" job report when down kills it
sleep 0.2
if [ $DAEMON = 1 ]; then
	dpid=$(daemon_pid ${P}1-h0)
	kill -9 "$dpid" 2>/dev/null
fi
# a process started in the lab that crashed (kill -9) and one still running
bash -c '"$0" lab exec --name ${P}1 h0 -- sh -c "kill -9 \$\$"; exit 0' "$V" 2>/dev/null
check "a stray process is in ${P}1-h1" sh -c "[ $(pids_in ${P}1-h1) -ge 1 ]"
check "down ${P}1 after kill -9 inside" "$V" lab down --name ${P}1
check "${P}1 gone (namespaces, run dirs)" lab_gone ${P}1
check_not "stray process gone" alive "$stray"
[ $DAEMON = 1 ] && { check_not "killed viaductd gone" alive "$dpid"; check "no viaductd of ${P}1 left" no_lab_procs ${P}1; }
check "down is idempotent" "$V" lab down --name ${P}1

# --- netem: the userspace impairment relay ----------------------------------------------------------------
# This kernel has no sch_netem: --netem links every host to ports in NAME-sw, where `viaduct lab relay`
# forwards and impairs each frame once per link crossing (so a ping's request and reply are each impaired).
N=${P}3
relay_pid() { cat "/run/viaduct/lab/$1-sw/relay.pid" 2>/dev/null; }
relay_running() { local pid; pid=$(relay_pid "$1") && [ -n "$pid" ] && alive "$pid" && \
	[ "$(readlink /proc/"$pid"/ns/net)" = "$(ip netns exec "$1-sw" readlink /proc/self/ns/net)" ]; }
# The relay's counter line (SIGUSR1 makes it log one).
relay_counters() { kill -USR1 "$(relay_pid "$1")"; sleep 0.3; grep 'counters:' "/run/viaduct/lab/$1-sw/relay.log" | tail -n 1; }
counter() { sed -n "s/.* $1 \([0-9]*\).*/\1/p"; }
# ARP first (a lost ARP would stall the measured pings for a second): up to 10 tries.
warm() { for _ in 1 2 3 4 5 6 7 8 9 10; do "$V" lab exec --name "$1" h0 -- ping -c 1 -W 1 10.99.0.2 >/dev/null 2>&1 && return 0; done; return 1; }
# ping_out LAB COUNT [ping options]: h0 -> h1 at 10 ms intervals (COUNT x 10 ms + 1 s at most).
ping_out() { local l=$1 c=$2; shift 2; "$V" lab exec --name "$l" h0 -- ping -c "$c" -i 0.01 -W 1 "$@" 10.99.0.2 2>&1; }
loss_of() { sed -n 's/.* \([0-9.]*\)% packet loss.*/\1/p' | cut -d. -f1; }
in_range() { [ -n "$1" ] && [ "$1" -ge "$2" ] && [ "$1" -le "$3" ]; }

check_not "up refuses an unknown netem keyword" "$V" lab up --name $N --no-daemon --netem "delay 5ms frobnicate 3"
grep -q "frobnicate" <<<"$check_output" && ok "the refusal names the keyword" || ko "the refusal names the keyword"
check_not "up refuses reorder without delay" "$V" lab up --name $N --no-daemon --netem "reorder 25%"
check "refused ups made nothing" lab_gone $N
check "lab up --help explains the relay" sh -c "'$V' lab up --help | grep -q 'userspace relay'"

# loss: 20 % per crossing, so a ping (two crossings) is lost with 1 - 0.8^2 = 36 %; 200 pings: sd 3.4 %.
check "up $N --netem 'loss 20%'" "$V" lab up --name $N --no-daemon --netem "loss 20%"
check "relay running inside $N-sw" relay_running $N
check "h0 -> h1 reachable through the relay" warm $N
loss=$(ping_out $N 200 -q | loss_of)
in_range "$loss" 20 52 && ok "loss 20%: ping loss $loss% (expected ~36% over two crossings)" || ko "loss 20%: ping loss '$loss'%"
c=$(relay_counters $N)
rx=$(echo "$c" | counter rx); lost=$(echo "$c" | counter lost)
in_range "$(( ${lost:-0} * 100 / (${rx:-0} + 1) ))" 12 28 && ok "relay dropped ${lost}/${rx} frames (~20%)" || \
	ko "relay drop share: $c"
check "host TX checksum offload off (frames cross the relay whole)" sh -c \
	"ip netns exec $N-h0 ethtool -k eth0 | grep -q 'tx-checksumming: off'"
rpid=$(relay_pid $N)
check "down $N" "$V" lab down --name $N
check_not "relay gone after down" alive "$rpid"
check "$N gone" lab_gone $N

# delay: 5 ms per crossing, RTT >= 10 ms
check "up $N --netem 'delay 5ms'" "$V" lab up --name $N --no-daemon --netem "delay 5ms"
warm $N
rtt_min=$(ping_out $N 10 -q | sed -n 's|.* = \([0-9.]*\)/.*|\1|p' | cut -d. -f1)
in_range "$rtt_min" 10 1000 && ok "delay 5ms: min RTT ${rtt_min} ms >= 10" || ko "delay 5ms: min RTT '${rtt_min}'"
rtt_min=$("$V" lab exec --name $N h0 -- ping -q -c 3 -i 0.05 -W 1 10.98.0.2 2>&1 | sed -n 's|.* = \([0-9.]*\)/.*|\1|p' | cut -d. -f1)
in_range "$rtt_min" 10 1000 && ok "ref0 delayed too: min RTT ${rtt_min} ms" || ko "ref0: min RTT '${rtt_min}'"
"$V" lab down --name $N >/dev/null 2>&1

# duplicate: DUP! replies
check "up $N --netem 'duplicate 50%'" "$V" lab up --name $N --no-daemon --netem "duplicate 50%"
warm $N
ping_out $N 20 | grep -q 'DUP!' && ok "duplicate 50%: ping sees DUP! replies" || ko "duplicate 50%: no DUP! reply"
"$V" lab down --name $N >/dev/null 2>&1

# corrupt: a flipped bit fails the IPv4 or ICMP checksum, so h1's kernel drops a corrupted request
# (expected ping loss ~30%; a corrupted reply reaches ping's socket, which reports "wrong data byte")
check "up $N --netem 'corrupt 30%'" "$V" lab up --name $N --no-daemon --netem "corrupt 30%"
warm $N
loss=$(ping_out $N 100 -q -s 1200 | loss_of)
in_range "$loss" 12 60 && ok "corrupt 30%: ping loss $loss% (expected ~30%)" || \
	ko "corrupt 30%: ping loss '$loss'%"
corrupted=$(relay_counters $N | counter corrupted)
in_range "${corrupted:-0}" 1 100000 && ok "relay corrupted $corrupted frames" || ko "relay corrupted '${corrupted}' frames"
bad=$(ip netns exec $N-h1 nstat -az 2>/dev/null | awk '$1 == "IcmpInCsumErrors" || $1 == "IpExtInCsumErrors" { n += $2 } END { print n + 0 }')
in_range "$bad" 1 100000 && ok "h1 dropped $bad frames for bad checksums" || ko "h1 saw no checksum errors"
"$V" lab down --name $N >/dev/null 2>&1
check "$N gone" lab_gone $N

# three hosts through the relay (with viaductd when it is built), every pair
M=${P}4
check "up $M (3 hosts, --netem 'delay 1ms')" "$V" lab up --name $M --hosts 3 --netem "delay 1ms" "${UP_OPTS[@]}"
check "list shows the netem relay" sh -c "'$V' lab list | grep '^$M ' | grep -q relay"
for a in 0 1 2; do for b in 0 1 2; do
	[ $a = $b ] && continue
	check "$M h$a -> h$b (10.99.0.$((b + 1)))" pings $M h$a 10.99.0.$((b + 1))
done; done
check "$M h1 -> h0 (ref0)" pings $M h1 10.98.0.1
[ $DAEMON = 1 ] && check "viaductd running in $M h2" daemon_running $M-h2
rpid=$(relay_pid $M)
check "down $M" "$V" lab down --name $M
check_not "relay of $M gone" alive "$rpid"
check "$M gone" lab_gone $M

finish
