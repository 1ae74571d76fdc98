#!/usr/bin/python3
"""The balancer on a net_af_xdp port with the steering program (bpf/us_steer.bpf.c): the host's kernel keeps
its address on the same NIC and answers ping itself, while only VIP packets reach the DPDK workers."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

BINARY = sys.argv.pop(1) if len(sys.argv) > 1 else "build/src/balancer/understudy"
CTL = sys.argv.pop(1) if len(sys.argv) > 1 else "build/src/cli/understudyctl"
STEER = sys.argv.pop(1) if len(sys.argv) > 1 else "build/bpf/us_steer.bpf.o"
ROOT = os.environ.get("UNDERSTUDY_SOURCE_ROOT", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import netns  # noqa: E402

CONFIG = """
[cluster]
secret = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
[health]
kind = "http"
port = 8080
interval_ms = 200
timeout_ms = 150
[[pool]]
name = "web"
table_bits = 12
  [[pool.backend]]
  id = 1
  address = "10.0.0.11"
  [[pool.backend]]
  id = 2
  address = "10.0.0.12"
[[vip]]
address = "192.0.2.10"
port = 8080
protocol = "tcp"
pool = "web"
method = "l2dsr"
[dataplane]
eal_args = ["--in-memory", "--no-pci", "-l", "0,1", "--log-level=lib.*:warning", "--file-prefix=us-afxdp-test"]
workers = [1]
source_v4 = "10.0.0.2"
non_vip = "drop"
  [[dataplane.port]]
  name = "p0"
  devargs = "net_af_xdp0,iface=eth0,xdp_prog={steer}"
[control]
socket = "{dir}/understudy.sock"
metrics = ""
"""


class AfXdpTest(unittest.TestCase):
    def test_only_vip_traffic_reaches_dpdk(self):
        if os.geteuid() != 0:
            self.fail("needs root")
        steer = os.path.abspath(STEER)
        self.assertTrue(os.path.exists(steer), f"{steer} is missing: build first")
        with tempfile.TemporaryDirectory() as d, netns.Topology(prefix="usx", backends=2) as t:
            config = os.path.join(d, "understudy.toml")
            with open(config, "w") as f:
                f.write(CONFIG.format(steer=steer, dir=d))
            t.start_http_servers(8080)
            lb = t.balancer(1)
            lb.run("ip", "addr", "add", f"{t.balancer_addr(1)}/24", "dev", "eth0")  # the kernel keeps the NIC
            lb.run("ip", "route", "add", "default", "via", t.ROUTER_SERVER_SIDE)
            log = os.path.join(d, "understudy.log")
            with open(log, "w") as out:
                p = lb.popen(BINARY, "run", "--config", config, stdout=out, stderr=subprocess.STDOUT)
            t.procs.append(p)

            def started():
                with open(log) as f:
                    return p.poll() is not None or "understudy: forwarding" in f.read()
            netns.wait_for(started, 30, "the balancer", log)
            self.assertIsNone(p.poll(), "the daemon exited")
            c = t.client(1)
            r = c.run("ping", "-c", "3", "-i", "0.2", "-W", "1", t.balancer_addr(1), check=False)
            self.assertEqual(r.returncode, 0, "the host's kernel answers on the NIC DPDK shares")
            served = [c.run("curl", "-s", "-m", "2", "http://192.0.2.10:8080/", check=False) for _ in range(20)]
            self.assertEqual([s.returncode for s in served], [0] * 20)
            stats = json.loads(subprocess.run([CTL, "--socket", os.path.join(d, "understudy.sock"), "stats", "--json"],
                                              capture_output=True, text=True, timeout=30).stdout)
            steering = stats["steering"]
            self.assertEqual(steering["steered"], stats["counters"]["rx_packets"],
                             "every packet DPDK saw was a VIP packet the program steered")
            self.assertGreaterEqual(stats["counters"]["tx_packets"], 20 * 5)
            self.assertGreater(steering["passed"], 0, "ping, ARP and health probes went to the kernel")
            self.assertEqual(stats["drops"]["no_vip"] + stats["drops"]["not_ip"], 0, "no non-VIP packet reached DPDK")


if __name__ == "__main__":
    unittest.main(verbosity=2)
