#!/usr/bin/env bash
# Idempotent setup on Debian 12: packages, hugepages, configure and build. Run as root.
#   tools/setup.sh            install, reserve hugepages, build into ./build
#   UNDERSTUDY_BUILD=DIR      build somewhere else
set -euo pipefail
cd "$(dirname "$0")/.."
build=${UNDERSTUDY_BUILD:-build}

packages=(
    build-essential meson ninja-build pkg-config git
    libdpdk-dev dpdk dpdk-dev libnuma-dev libpcap-dev
    libbpf-dev libxdp-dev bpftool clang llvm libclang-rt-14-dev libelf-dev zlib1g-dev
    libcli11-dev libgtest-dev libgmock-dev libbenchmark-dev libtomlplusplus-dev nlohmann-json3-dev
    python3 python3-cryptography python3-scapy python3-numpy python3-matplotlib iproute2 iputils-ping curl procps ethtool linux-perf nftables
    wrk iperf3 systemd
    libngtcp2-dev libngtcp2-crypto-gnutls-dev libgnutls28-dev
)

if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: run as root (it installs packages and reserves hugepages)" >&2
    exit 1
fi

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# DPDK needs 2 MiB hugepages; 512 of them (1 GiB) fit the tests and the demo.
want_pages=${UNDERSTUDY_HUGEPAGES:-512}
have_pages=$(cat /proc/sys/vm/nr_hugepages)
if [ "$have_pages" -lt "$want_pages" ]; then
    echo "$want_pages" > /proc/sys/vm/nr_hugepages
fi
mountpoint -q /dev/hugepages || { mkdir -p /dev/hugepages; mount -t hugetlbfs nodev /dev/hugepages; }

werror=false
[ "${CI:-}" = "true" ] && werror=true
if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" -Dwerror=$werror >/dev/null
else
    meson configure "$build" -Dwerror=$werror >/dev/null
fi
ninja -C "$build"
