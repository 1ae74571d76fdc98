#!/usr/bin/env bash
# The demo: installs and builds what it needs, then runs a balancer in front of four web servers in network
# namespaces, fails one and brings it back. Run as root on Debian 12. Leaves nothing behind.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "Preparing (packages, hugepages, build): the first run takes a few minutes..."
tools/setup.sh > /tmp/understudy-setup.log 2>&1 || { cat /tmp/understudy-setup.log; exit 1; }
exec /usr/bin/python3 tools/demo.py
