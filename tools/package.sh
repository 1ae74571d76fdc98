#!/usr/bin/env bash
# Builds the Debian package of understudy (daemon, agent, CLI, BPF objects, example config, systemd units):
# a meson build configured for /usr without the tests, `meson install --destdir` into a staging tree, a control
# file whose Depends are the Debian packages that own the libraries the binaries load, then dpkg-deb.
#   tools/package.sh [OUTDIR]    default build-package/; prints the package's path on its last line
# OUTDIR keeps the build (build/) and the staging tree (stage/), so a second run rebuilds only what changed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(realpath -m "${1:-$root/build-package}")
build=$out/build
stage=$out/stage
mkdir -p "$out"

if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" "$root" --prefix=/usr --sysconfdir=/etc --localstatedir=/var \
        --buildtype=debugoptimized -Dtests=false -Dwerror=true >"$out/setup.log" \
        || { cat "$out/setup.log" >&2; exit 1; }
fi
ninja -C "$build" >"$out/build.log" || { tail -50 "$out/build.log" >&2; exit 1; }
rm -rf "$stage"
meson install -C "$build" --destdir "$stage" --strip --no-rebuild >"$out/install.log" \
    || { cat "$out/install.log" >&2; exit 1; }

version=$(meson introspect --projectinfo "$build" | /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["version"])')
arch=$(dpkg --print-architecture)

# Every shared library an installed ELF file loads (ldd: the dynamic loader's own answer).
declare -A libs=() depends=()
while IFS= read -r -d '' f; do
    [ "$(head -c 4 "$f" | od -An -tx1 | tr -d ' ')" = 7f454c46 ] || continue   # ELF
    ldd "$f" >/dev/null 2>&1 || continue                                      # not dynamically linked
    if ldd "$f" | grep -q 'not found'; then
        echo "package.sh: $f: a library is missing:" >&2
        ldd "$f" | grep 'not found' >&2
        exit 1
    fi
    for lib in $(ldd "$f" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }'); do
        libs[$lib]=1
    done
done < <(find "$stage" -type f -perm -u+x -print0)

# Their packages, from one dpkg -S over every name a library may be registered under (merged /usr: the link
# ldd names, its target, each with and without /usr).
declare -A names=() owner_of=()
for lib in "${!libs[@]}"; do
    real=$(realpath "$lib")
    for p in "$lib" "$real" "${lib#/usr}" "${real#/usr}" "/usr${lib#/usr}" "/usr${real#/usr}"; do
        names[$p]=1
    done
done
while IFS= read -r line; do
    owner_of[${line#*: }]=${line%%:*}
done < <(dpkg -S "${!names[@]}" 2>/dev/null | grep -v '^diversion' || true)
for lib in "${!libs[@]}"; do
    real=$(realpath "$lib") pkg=""
    for p in "$lib" "$real" "${lib#/usr}" "${real#/usr}" "/usr${lib#/usr}" "/usr${real#/usr}"; do
        pkg=${owner_of[$p]:-}
        [ -n "$pkg" ] && break
    done
    if [ -z "$pkg" ]; then
        echo "package.sh: no Debian package owns $lib" >&2
        exit 1
    fi
    depends[$pkg]=1
done
# Not linked but run: `ip` puts the exception path's addresses on its tap.
depends[iproute2]=1
# Not linked but loaded: the EAL loads buses and PMDs from its plugin directory. The ones the docs' ports use
# (PCI and virtual devices, net_af_packet, net_af_xdp, the exception path's net_tap); other NICs' PMDs are
# in the Suggests (dpdk: all of them).
pmds=$(ls -d "$(pkg-config --variable=libdir libdpdk)"/dpdk/pmds-* | tail -1)
for plugin in bus_pci bus_vdev net_af_packet net_af_xdp net_tap; do
    # The file itself, not the .so link (that one is the -dev package's).
    depends[$(dpkg -S "$(realpath "$pmds/librte_$plugin.so")" | sed -n '1s/:.*//p')]=1
done

dep_list=""
for pkg in $(printf '%s\n' "${!depends[@]}" | sort); do
    v=$(dpkg-query -W -f '${Version}' "$pkg")
    dep_list+="${dep_list:+, }$pkg (>= $v)"
done

mkdir -p "$stage/DEBIAN"
# Every file under /etc is the operator's: dpkg keeps an edited one across upgrades and asks before replacing it.
(cd "$stage" && find etc -type f | sort | sed 's|^|/|') >"$stage/DEBIAN/conffiles"
cat >"$stage/DEBIAN/control" <<CONTROL
Package: understudy
Version: $version
Architecture: $arch
Maintainer: understudy developers <understudy@localhost>
Installed-Size: $(du -sk --exclude=DEBIAN "$stage" | cut -f1)
Depends: $dep_list
Suggests: dpdk
Section: net
Priority: optional
Description: kernel-bypass L4 load balancer with precomputed stand-ins
 understudy spreads VIP traffic over backend pools with a DPDK data plane; every
 node computes the same ordering of stand-in servers for a session, so nodes and
 backends fail without resetting sessions. Includes understudy-agent (the XDP
 backend side), understudyctl, the BPF objects and systemd units (not enabled).
CONTROL

# Maintainer scripts stay minimal: the group the example config gives the control socket, and telling systemd
# about the units. Nothing is enabled or started: the config must be edited first. With DPKG_ROOT set (an
# install into another root, as tests/install does) the running system is left alone.
cat >"$stage/DEBIAN/postinst" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = configure ] && [ -z "${DPKG_ROOT:-}" ]; then
    getent group understudy >/dev/null || groupadd --system understudy
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload || true
    fi
fi
SCRIPT
cat >"$stage/DEBIAN/postrm" <<'SCRIPT'
#!/bin/sh
set -e
if [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
SCRIPT
chmod 0755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/postrm"

deb=$out/understudy_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "$deb"
