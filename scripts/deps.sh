#!/usr/bin/env bash
# Installs the Debian packages the build, the tests and the demo need, if any is missing.
set -euo pipefail
pkgs=(build-essential cmake pkg-config clang llvm libclang-rt-14-dev libbpf-dev libxdp-dev libelf-dev
      zlib1g-dev bpftool iproute2 ethtool iputils-ping python3 util-linux procps
      libfabric-bin # libfabric-bin: fi_pingpong, a reference of `viaduct perf pingpong` (optional there)
      # unmodified programs run under `viaduct run` by tests/lab/test_run.sh
      redis-server redis-tools nginx-light curl openssl socat iperf3
      sockperf) # sockperf: a program `viaduct perf sockets` (make demo) runs under viaduct run and on the kernel
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "deps: missing packages: ${missing[*]} (run as root, or install them)" >&2
  exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
