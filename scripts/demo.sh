#!/usr/bin/env bash
# `make demo`: bring a two-host lab up, run `viaduct perf frames` on it (viaduct against kernel UDP and bare
# AF_XDP, measured in the same run), print the table with the ratios and the issue's targets; then the
# messaging benchmarks `viaduct perf pingpong,bw,rate` on the same lab (viaduct messages over xdp and udp
# against kernel UDP, kernel TCP, bare AF_XDP and libfabric's fi_pingpong), their table and an SVG plot;
# then unmodified programs under `viaduct run` against the kernel's TCP (`viaduct perf sockets`);
# take the lab down - also when something fails or on ^C.
#   scripts/demo.sh [BUILD_DIR]      (default build; run as root: the lab makes network namespaces)
# Environment: VD_DEMO_NAME (lab name, default vddemo), VD_PERF_ARGS (extra `perf frames` options,
# e.g. "--iters 50000 --reps 5"), VD_MSG_ARGS (extra `perf pingpong,bw,rate` options, e.g. "--reps 5"),
# VD_SOCK_ARGS (extra `perf sockets` options, e.g. "--reps 5 --seconds 5").
set -euo pipefail
build=${1:-build}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
viaduct="$build/bin/viaduct"
name=${VD_DEMO_NAME:-vddemo}
results="$build/demo-perf.json"
msg_results="$build/demo-msg.json"
msg_plot="$build/demo-msg.svg"
jumbo="${name:0:7}j"
# Jumbo frames (multi-buffer AF_XDP, docs/design.md): the targets that name "the largest MTU viaduct supports"
# are measured there: 16 UMEM chunks per frame, an IP MTU of 61398 on a veth (VD_DEMO_JUMBO_MTU=9000 for
# the usual jumbo MTU of Ethernet NICs).
jumbo_mtu=${VD_DEMO_JUMBO_MTU:-61398}
jumbo_results="$build/demo-msg-jumbo.json"
sock_results="$build/demo-sockets.txt"

if [ "$(id -u)" -ne 0 ]; then
	echo "demo: needs root (the lab creates network namespaces and attaches XDP programs)" >&2
	exit 1
fi
if [ ! -x "$viaduct" ]; then
	echo "demo: $viaduct not found: build first (make build)" >&2
	exit 1
fi

down() {
	"$viaduct" lab down --name "$name" >/dev/null 2>&1 || true
	"$viaduct" lab down --name "$jumbo" >/dev/null 2>&1 || true
}
trap down EXIT
trap 'exit 130' INT TERM

down # a lab left over by an interrupted run
echo "== lab up: $name (2 hosts; eth0 with viaductd, ref0 reference link without)"
"$viaduct" lab up --name "$name" --hosts 2

echo "== viaduct perf frames --lab $name (JSON lines in $results)"
# shellcheck disable=SC2086 # VD_PERF_ARGS is a list of options
"$viaduct" perf frames --lab "$name" --json ${VD_PERF_ARGS:-} | tee "$results"

echo
echo "== results: viaduct against kernel UDP and bare AF_XDP, 64 B frames carry the targets"
"$viaduct" perf table "$results"
echo
echo "Targets (issue 2, 64 B, busy-poll): ping-pong p50 direct <= 1.25 x bare-afxdp, steered <= 1.8 x,"
echo "both <= 0.5 x kernel-udp; stream frame rate >= 0.9 x bare-afxdp at 64 B and 1500 B."
echo "Sizes are Ethernet frame lengths without FCS; gbps counts UDP payload bits."

echo
echo "== viaduct perf pingpong,bw,rate --lab $name (JSON lines in $msg_results, plot in $msg_plot)"
# A failed path still leaves the others' figures: print the table, then fail.
msg_rc=0
# shellcheck disable=SC2086 # VD_MSG_ARGS is a list of options
"$viaduct" perf pingpong,bw,rate --lab "$name" --json --plot "$msg_plot" ${VD_MSG_ARGS:-} | tee "$msg_results" ||
	msg_rc=$?
echo
echo "== results: viaduct messages against kernel UDP/TCP, bare AF_XDP and libfabric (fi-*: fi_pingpong's mean)"
"$viaduct" perf table "$msg_results"

# The bandwidth target is stated at the largest MTU viaduct supports on the link: a second lab at jumbo MTU,
# 1 MiB messages, viaduct against bare AF_XDP and kernel TCP (which is not held to the MTU on a veth: it
# moves 64 KiB GSO segments).
echo
echo "== bandwidth at MTU $jumbo_mtu: lab $jumbo, viaduct perf bw --size 1M (JSON lines in $jumbo_results)"
"$viaduct" lab down --name "$name" >/dev/null 2>&1 || true
"$viaduct" lab up --name "$jumbo" --hosts 2 --mtu "$jumbo_mtu"
# shellcheck disable=SC2086 # VD_MSG_ARGS is a list of options
"$viaduct" perf bw --lab "$jumbo" --json --size 1M --path viaduct-xdp,bare-afxdp,kernel-tcp ${VD_MSG_ARGS:-} \
	>"$jumbo_results" || msg_rc=$?
"$viaduct" perf table "$jumbo_results" | sed -n '/^bandwidth/,$p'
echo
echo "Targets (issue 3, busy-poll): 8 B half round trip viaduct-xdp <= 1.25 x bare-afxdp and <= 0.33 x kernel-udp;"
echo "1 MiB bandwidth >= 0.9 x bare-afxdp frame throughput at the MTU and >= kernel-tcp; 8 B message rate"
echo ">= 5 x kernel-udp. Sizes are message lengths; kernel-udp and bare-afxdp carry one message per frame."
echo "The first messaging table is at MTU 1500; the bandwidth target counts at MTU $jumbo_mtu (the last table)."

# Unmodified programs (sockperf, iperf3, a connect/close loop) under `viaduct run` against the same programs
# on the kernel's TCP, on the same lab: the kernel on ref0 (no viaductd), at the same MTU.
echo
echo "== viaduct perf sockets --lab $jumbo (MTU $jumbo_mtu; JSON lines in $sock_results)"
sock_rc=0
# shellcheck disable=SC2086 # VD_SOCK_ARGS is a list of options
"$viaduct" perf sockets --lab "$jumbo" ${VD_SOCK_ARGS:-} | tee "$sock_results" || sock_rc=$?
echo "Targets (issue 4, both sides busy-polling): sockperf 64 B p50 <= 0.5 x kernel TCP; iperf3 one stream"
echo ">= 0.7 x kernel TCP at the same MTU; connections per second >= the kernel's."
if [ "$msg_rc" -ne 0 ]; then
	echo "demo: a messaging benchmark failed (exit $msg_rc, see above)" >&2
	exit "$msg_rc"
fi
if [ "$sock_rc" -ne 0 ]; then
	echo "demo: a sockets benchmark failed (exit $sock_rc, see above)" >&2
	exit "$sock_rc"
fi
