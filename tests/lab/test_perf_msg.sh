#!/usr/bin/env bash
# Lab test of the messaging benchmarks `viaduct perf pingpong|bw|rate` (root: network namespaces).
# $1 = build dir (default build). Lab ${P}1 with P = $VD_TEST_LAB_PREFIX (default vdHt), removed on exit.
# Runs every bench briefly on every path with --json and checks the lines are well formed and every path
# reported (fi-* may be reported as skipped when fi_pingpong is not installed), that --plot writes a valid
# SVG with a line per path, that the table shows the targets, and the --server/--client mode.
set -u
BUILD=$(cd "${1:-build}" && pwd) || { echo "test_perf_msg: no build dir ${1:-build}" >&2; exit 1; }
V="$BUILD/bin/viaduct"
P=${VD_TEST_LAB_PREFIX:-vdHt}
LAB="${P}1"
TMP=$(mktemp -d /tmp/vdH_perf_msg.XXXXXX)
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" -eq 0 ] || { echo "test_perf_msg: needs root" >&2; exit 1; }
[ -x "$V" ] || { echo "test_perf_msg: $V not built" >&2; exit 1; }
[ -x "$BUILD/bin/viaductd" ] || { echo "test_perf_msg: $BUILD/bin/viaductd not built" >&2; exit 1; }

cleanup() {
	"$V" lab down --name "$LAB" >/dev/null 2>&1
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

exit_is() { local want=$1 d=$2; shift 2; "$@" >/dev/null 2>&1; local rc=$?
	[ "$rc" -eq "$want" ] && ok "$d" || ko "$d (exit $rc, want $want)"; }

# --- command line ---------------------------------------------------------------------------------------
exit_is 0 "perf pingpong --help: exit 0" "$V" perf pingpong --help
exit_is 2 "perf bw without --lab/--server/--client: exit 2" "$V" perf bw
exit_is 2 "perf rate --size 0: exit 2" "$V" perf rate --server --size 0
exit_is 2 "perf pingpong,bogus: exit 2" "$V" perf pingpong,bogus --server
exit_is 2 "perf pingpong --path nosuch: exit 2" "$V" perf pingpong --server --path nosuch

# --- lab run: every bench, every path -------------------------------------------------------------------
"$V" lab down --name "$LAB" >/dev/null 2>&1
if ! "$V" lab up --name "$LAB" --hosts 2 >"$TMP/up" 2>&1; then
	ko "lab up"; sed 's/^/     /' "$TMP/up"
	finish; exit 1
fi
ok "lab up $LAB"

# Short runs: correctness of the output, not figures. 64K exercises rendezvous (above the eager limit).
check "perf pingpong,bw,rate --lab --json --plot" timeout 80 "$V" perf pingpong,bw,rate --lab "$LAB" --json \
	--reps 1 --iters 300 --warmup 50 --pingpong-ms 200 --duration-ms 100 --size 8,64K --plot "$TMP/plot.svg"
printf '%s\n' "$check_output" >"$TMP/res.json"

# Every line a flat JSON object with the seven fields; every path reported for every bench it runs.
check "JSON lines well formed, every path reported" python3 - "$TMP/res.json" <<'EOF'
import json, math, sys
want = {
    "pingpong": ["viaduct-xdp", "viaduct-udp", "viaduct-shm", "kernel-udp", "bare-afxdp", "kernel-tcp", "fi-shm",
                 "fi-udp", "fi-tcp"],
    "bw": ["viaduct-xdp", "viaduct-udp", "viaduct-shm", "kernel-udp", "bare-afxdp", "kernel-tcp"],
    "rate": ["viaduct-xdp", "viaduct-udp", "viaduct-shm", "kernel-udp", "bare-afxdp"],
}
seen, skipped, bad = {}, set(), 0
def num(v): return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
for line in open(sys.argv[1]):
    line = line.strip()
    if not line.startswith("{"):
        continue  # the benchmark's notes on stderr
    o = json.loads(line)
    for k in ("bench", "path", "size", "p50_us", "p99_us", "gbps", "mmsgs"):
        if k not in o:
            print("missing", k, line); bad += 1
    if "skipped" in o:
        skipped.add(o["path"]); continue
    b, p = o["bench"], o["path"]
    if b not in want or p not in want[b] or not isinstance(o["size"], int):
        print("unexpected", line); bad += 1; continue
    if b == "pingpong":
        ok = num(o["p50_us"]) and (num(o["p99_us"]) or (p.startswith("fi-") and o["p99_us"] is None))
    else:
        ok = num(o["gbps"]) and num(o["mmsgs"])
    if not ok:
        print("bad values", line); bad += 1
    # viaduct-shm must really be shared memory: the udp backend carries frames only until the channel is up
    if p == "viaduct-shm" and not (o.get("shm_share", 0) >= 0.5):
        print("viaduct-shm not through shared memory", line); bad += 1
    seen.setdefault(b, set()).add(p)
for b, paths in want.items():
    for p in paths:
        if p not in seen.get(b, set()) and p not in skipped:
            print("not reported:", b, p); bad += 1
# The viaduct paths and the ping-pong references give every size asked for (8 B and 64 KiB).
sizes = {}
for line in open(sys.argv[1]):
    if line.startswith("{") and "skipped" not in line:
        o = json.loads(line); sizes.setdefault((o["bench"], o["path"]), set()).add(o["size"])
for b in want:
    for p in ("viaduct-xdp", "viaduct-udp", "viaduct-shm"):
        if sizes.get((b, p)) != {8, 65536}:
            print("sizes of", b, p, sizes.get((b, p))); bad += 1
sys.exit(1 if bad else 0)
EOF

# The SVG: well-formed XML (xmllint where installed, else Python's parser), an <svg> root, two panels and a
# polyline per path in each.
if command -v xmllint >/dev/null 2>&1; then
	check "plot: xmllint accepts the SVG" xmllint --noout "$TMP/plot.svg"
fi
check "plot: svg root, latency and bandwidth panels, a line per path" python3 - "$TMP/plot.svg" <<'EOF'
import sys, xml.etree.ElementTree as ET
ns = "{http://www.w3.org/2000/svg}"
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == ns + "svg", root.tag
texts = [t.text or "" for t in root.iter(ns + "text")]
assert "Latency" in texts and "Bandwidth" in texts, texts
lines = root.findall(ns + "polyline")
# latency: 5 paths with results at 8 B at least + fi-* if installed; bandwidth: viaduct-xdp/udp, kernel-tcp,
# bare-afxdp, kernel-udp
assert len(lines) >= 10, len(lines)
for name in ("viaduct-xdp", "viaduct-udp", "viaduct-shm", "kernel-tcp", "bare-afxdp", "kernel-udp"):
    assert texts.count(name) == 2, (name, texts.count(name))
for l in lines:
    pts = l.get("points").split()
    assert pts and all(len(p.split(",")) == 2 for p in pts)
EOF

# The table of a JSON file: the three blocks and the target lines.
check "perf table FILE: messaging table with the targets" bash -c \
	"'$V' perf table '$TMP/res.json' | tee /dev/stderr | grep -q 'ping-pong: half round trip' && \
	 '$V' perf table '$TMP/res.json' | grep -q 'message rate' && \
	 '$V' perf table '$TMP/res.json' | grep -c 'target' | grep -qx 7"

# --- --server / --client --------------------------------------------------------------------------------
"$V" lab exec --name "$LAB" h1 -- "$V" perf pingpong,rate --server --path viaduct-udp,kernel-tcp \
	--ref-iface ref0 --size 8 --reps 2 --idle-ms 20000 >"$TMP/server" 2>&1 &
spid=$!
check "--client ADDR: viaduct-udp and kernel-tcp against --server" timeout 40 "$V" lab exec --name "$LAB" h0 -- \
	"$V" perf pingpong,rate --client 10.98.0.2 --path viaduct-udp,kernel-tcp --size 8 --reps 2 --iters 200 \
	--warmup 20 --duration-ms 100 --json
printf '%s\n' "$check_output" >"$TMP/out"
grep -q '"bench":"rate","path":"viaduct-udp","size":8' "$TMP/out" && grep -q '"path":"kernel-tcp"' "$TMP/out" &&
	grep -q '"reps":2' "$TMP/out" && ok "--client: lines of both paths, medians of 2 reps" ||
	{ ko "--client: lines of both paths, medians of 2 reps"; sed 's/^/     /' "$TMP/out"; }
for _ in $(seq 50); do kill -0 "$spid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$spid" 2>/dev/null; then
	ko "--server: leaves after the client's quit"; kill "$spid" 2>/dev/null
else
	wait "$spid" && ok "--server: leaves after the client's quit, exit 0" ||
		{ ko "--server: exit status"; sed 's/^/     /' "$TMP/server"; }
fi

finish
