#!/usr/bin/env bash
# `make demo`: bring a two-host lab up, run `viaduct perf frames` on it (viaduct against kernel UDP and bare
# AF_XDP, measured in the same run), print the table with the ratios and the issue's targets, take the lab
# down - also when something fails or on ^C.
#   scripts/demo.sh [BUILD_DIR]      (default build; run as root: the lab makes network namespaces)
# Environment: VD_DEMO_NAME (lab name, default vddemo), VD_PERF_ARGS (extra `perf frames` options,
# e.g. "--iters 50000 --reps 5").
set -euo pipefail
build=${1:-build}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
viaduct="$build/bin/viaduct"
name=${VD_DEMO_NAME:-vddemo}
results="$build/demo-perf.json"

if [ "$(id -u)" -ne 0 ]; then
	echo "demo: needs root (the lab creates network namespaces and attaches XDP programs)" >&2
	exit 1
fi
if [ ! -x "$viaduct" ]; then
	echo "demo: $viaduct not found: build first (make build)" >&2
	exit 1
fi

down() { "$viaduct" lab down --name "$name" >/dev/null 2>&1 || true; }
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
