#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Lab test of viaductd's adaptive TCP port pool (src/daemon/port.c, pool_*), root: once a burst has grown
# the pool's target and the idle refill has filled it, the shrink timer is armed (--pool-idle-s, here an
# hour). A single batch taken then (EP_PORTS_ADD with no port request after it: a program that opens
# connections and keeps them) must still be replaced by the idle refill within moments, not when the
# shrink timer fires.
#
# usage: tests/lab/test_port_pool.sh BUILD_DIR     (env VD_TEST_LAB: lab name, default vdApool)
set -uo pipefail

BUILD=$(realpath "${1:?usage: $0 BUILD_DIR}")
V=$BUILD/bin/viaduct
LAB=${VD_TEST_LAB:-vdApool}
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || { echo "test_port_pool.sh: needs root"; exit 1; }
lab_scratch "$LAB"
# The lab's viaductd (VIADUCTD, else the build's) with a quiet period far longer than the test.
printf '#!/bin/sh\nexec %q --pool-idle-s 3600 "$@"\n' "${VIADUCTD:-$BUILD/bin/viaductd}" >"$tmp/viaductd"
chmod 755 "$tmp/viaductd"
"$V" lab down --name "$LAB" >/dev/null 2>&1
VIADUCTD=$tmp/viaductd "$V" lab up --name "$LAB" --group nogroup >/dev/null || { echo "FAIL lab up"; exit 1; }

SOCK=/run/viaduct/lab/$LAB-h1/viaductd.sock
probe() { timeout 60 python3 "$(dirname "$0")/daemon_probe.py" --socket "$SOCK" "$@" 2>&1; }
# "POOLED TARGET" of h1's TCP pool (viaduct stat --json).
pool() {
	"$V" lab exec --name "$LAB" h1 -- "$V" stat --json |
		python3 -c 'import json,sys; i=json.load(sys.stdin)["interfaces"][0]; print(i["pool_tcp"], i["pool_tcp_target"])'
}
# until COND SECONDS: `(( COND ))` holds for p (pooled) and t (target) within SECONDS; sets P T.
until_pool() {
	local end=$((SECONDS + $2)) r
	while :; do
		r=$(pool)
		read -r p t <<<"$r"
		P=$p T=$t
		[ -n "$r" ] && (( $1 )) && return 0
		[ "$SECONDS" -ge "$end" ] && return 1
		sleep 0.05
	done
}

b=$(probe ports-burst --count 2500)
[[ $b == *'"taken": 2500,'* ]] && ok "a burst of 2500 ephemeral ports ($b)" || ko "burst: $b"
if until_pool 't > 1024 && p == t' 5; then
	ok "the burst grew the TCP target and the pool filled to it ($P/$T)"
	sleep 0.2 # the refill's last step is over: the shrink timer (an hour away) is what is armed now
	k=$(probe ports-burst --count 64 --keep)
	[[ $k == *'"taken": 64,'* ]] && ok "one batch of 64 kept ($k)" || ko "kept batch: $k"
	until_pool 'p == t' 3 &&
		ok "the idle refill replaced the batch at once ($P/$T)" ||
		ko "the pool stayed short after a lone batch ($P/$T): refill waits for the shrink timer"
else
	ko "the target did not grow, or the pool never filled to it ($P/$T)"
fi

finish
