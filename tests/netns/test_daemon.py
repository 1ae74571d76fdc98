#!/usr/bin/python3
"""The understudy daemon on a net_af_packet port in a network namespace, with real clients and servers:
the exception path (a real kernel answering ARP and ping through DPDK and a tap), l2dsr forwarding of
real TCP connections to the server the independent oracle names, and a clean stop on SIGTERM."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

BINARY = sys.argv.pop(1) if len(sys.argv) > 1 else "build/src/balancer/understudy"
ROOT = os.environ.get("UNDERSTUDY_SOURCE_ROOT", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import netns  # noqa: E402

CONFIG = """
[cluster]
secret = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"

[health]
kind = "none"

[[pool]]
name = "web"
table_bits = 12
{backends}

[[vip]]
address = "192.0.2.10"
port = 8080
protocol = "tcp"
pool = "web"
method = "l2dsr"

[dataplane]
eal_args = ["--in-memory", "--no-pci", "--no-telemetry", "-l", "0,1", "--log-level=lib.*:warning", "--file-prefix=us-netns-test"]
workers = [1]
source_v4 = "10.0.0.2"
non_vip = "kernel"
exception_iface = "understudy0"
exception_addresses = ["10.0.0.2/24"]
  [[dataplane.port]]
  name = "p0"
  devargs = "net_af_packet0,iface=eth0"
  rx_queues = 1

[control]
socket = "{dir}/understudy.sock"
"""


def require_environment():
    if os.geteuid() != 0:
        raise SystemExit("FAIL: namespace tests need root")
    with open("/proc/sys/vm/nr_hugepages") as f:
        pages = int(f.read())
    if pages < 256:
        raise SystemExit("FAIL: fewer than 256 hugepages reserved: run tools/setup.sh")


class DaemonTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_environment()
        cls.dir = tempfile.TemporaryDirectory()
        cls.topo = netns.Topology(prefix="ust", backends=3, balancers=1).up()
        backends = "".join(f'  [[pool.backend]]\n  id = {i}\n  address = "{cls.topo.backend_addr(i)}"\n'
                           for i in range(1, 4))
        cls.config = os.path.join(cls.dir.name, "understudy.toml")
        with open(cls.config, "w") as f:
            f.write(CONFIG.format(backends=backends, dir=cls.dir.name))
        cls.log = os.path.join(cls.dir.name, "understudy.log")
        cls.topo.start_http_servers(8080)
        cls.daemon = cls.topo.start_balancer(1, BINARY, cls.config, cls.log)

    @classmethod
    def tearDownClass(cls):
        cls.topo.down()
        cls.dir.cleanup()

    def test_1_exception_path_arp_and_ping(self):
        c = self.topo.client(1)
        r = c.run("ping", "-c", "3", "-i", "0.2", "-W", "2", self.topo.balancer_addr(1), check=False)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        neigh = self.topo.router().run("ip", "neigh", "show", self.topo.balancer_addr(1)).stdout
        self.assertIn(self.topo.balancer(1).mac("eth0"), neigh, "ARP answered by the kernel with the NIC's MAC")
        # And the other way: the balancer host's kernel reaches a backend through the tap and the NIC.
        r = self.topo.balancer(1).run("ping", "-c", "2", "-i", "0.2", "-W", "2", self.topo.backend_addr(2), check=False)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def oracle(self, lines):
        r = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "tools", "ordering_ref.py"), "lookup",
                            "--config", self.config], input="".join(lines), capture_output=True, text=True, timeout=60)
        return [json.loads(l) for l in r.stdout.splitlines()]

    def test_2_connections_reach_the_oracles_server(self):
        c = self.topo.client(1)
        # The daemon learns backend MACs from the kernel's neighbour table within a second or two.
        netns.wait_for(lambda: c.run("curl", "-s", "-m", "1", "http://192.0.2.10:8080/", check=False).returncode == 0,
                       15, "first connection through the balancer", self.log)
        ports = list(range(41000, 41060))
        want = self.oracle([f"{self.topo.client_addr(1)} {p} 192.0.2.10 8080 tcp\n" for p in ports])
        seen = set()
        for port, w in zip(ports, want):
            r = c.run("curl", "-s", "-m", "3", "--local-port", str(port), "http://192.0.2.10:8080/", check=False)
            self.assertEqual(r.returncode, 0, f"port {port}: curl {r.returncode} {r.stderr}")
            name, peer = r.stdout.split()
            self.assertEqual(name, f"b{w['serving']}", f"source port {port}")
            self.assertEqual(peer, f"{self.topo.client_addr(1)}:{port}", "direct server return keeps the client's address")
            seen.add(name)
        self.assertEqual(seen, {"b1", "b2", "b3"}, "60 connections over 3 backends reach all of them")

    def test_3_sigterm_stops_cleanly_with_statistics(self):
        self.daemon.send_signal(signal.SIGTERM)
        self.assertEqual(self.daemon.wait(timeout=15), 0)
        with open(self.log) as f:
            log = f.read()
        self.assertIn("tx_packets", log)
        tx = int(log.split("tx_packets")[1].split()[0])
        self.assertGreaterEqual(tx, 60 * 5, "each of 60 HTTP connections is at least 5 client packets")
        self.assertFalse(self.topo.balancer(1).run("ip", "link", "show", "understudy0", check=False).returncode == 0,
                         "the exception tap goes away with the daemon")


if __name__ == "__main__":
    unittest.main(verbosity=2)
