#!/usr/bin/python3
"""`understudyctl lookup --quic-cid`: the offline explanation of the data plane's QUIC decision
(docs/quic-lb.md). A CID minted for server X names X from any client port and goes to X while it is up; with
X down it goes to the 4-tuple's serving server; an unroutable CID goes by the 4-tuple. The 4-tuple's servers
come from the independent oracle tools/ordering_ref.py, the CIDs from `understudyctl quic-cid encode` (the
library, itself pinned to the draft's vectors and tools/quic_lb_ref.py by tests/quiclb).

  test_quic_lookup.py PATH/TO/understudyctl [unittest args]     (UNDERSTUDY_SOURCE_ROOT: the source tree)
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

CTL = os.path.abspath(sys.argv.pop(1)) if len(sys.argv) > 1 else "build/src/cli/understudyctl"
ROOT = os.environ.get("UNDERSTUDY_SOURCE_ROOT", os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
ORACLE = os.path.join(ROOT, "tools", "ordering_ref.py")

CONFIG = """
[cluster]
secret = "3f1e0c2a9b8d7766554433221100ffee"

[[pool]]
name = "quic"
table_bits = 12
  [[pool.backend]]
  id = 1
  address = "10.0.1.11"
  [[pool.backend]]
  id = 2
  address = "10.0.1.12"
  [[pool.backend]]
  id = 300
  address = "10.0.1.13"
  [[pool.backend]]
  id = 4
  address = "10.0.1.14"

[[vip]]
address = "192.0.2.10"
port = 443
protocol = "udp"
pool = "quic"
  [[vip.quic_lb]]
  codepoint = 0
  server_id_len = 2
  nonce_len = 8
  key = "8f95f09245765f80256934e50c66207f"
  [[vip.quic_lb]]
  codepoint = 1
  server_id_len = 1
  nonce_len = 6
  server_ids = { 300 = "03" }
"""
VIP = "192.0.2.10:443/udp"
SERVERS = [1, 2, 300, 4]
PORTS = [1024, 40000, 40001, 51234, 65535]


class QuicLookup(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()
        cls.config = os.path.join(cls.dir.name, "quic.toml")
        with open(cls.config, "w") as f:
            f.write(CONFIG)

    @classmethod
    def tearDownClass(cls):
        cls.dir.cleanup()

    def ctl(self, *args, rc=0):
        p = subprocess.run([CTL, *args], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, rc, p.stderr)
        return p.stdout

    def mint(self, codepoint, server):
        out = self.ctl("quic-cid", "encode", "--config", self.config, "--vip", VIP, "--codepoint", str(codepoint),
                       "--server", str(server), "--json")
        return json.loads(out)["cid"]

    def lookup(self, cid, port, down=""):
        args = ["lookup", "--config", self.config, "--vip", VIP, "--src", "198.51.100.7:%d" % port,
                "--quic-cid", cid, "--json"]
        if down:
            args += ["--down", down]
        return json.loads(self.ctl(*args))["quic"]

    def serving(self, port, down=""):
        args = [sys.executable, ORACLE, "lookup", "--config", self.config]
        if down:
            args += ["--down", down]
        p = subprocess.run(args, input="198.51.100.7 %d 192.0.2.10 443 udp\n" % port, capture_output=True,
                           text=True, timeout=60, check=True)
        return json.loads(p.stdout)["serving"]

    def test_a_cid_goes_to_the_server_it_names_from_any_port(self):
        for codepoint in (0, 1):
            for x in SERVERS:
                cid = self.mint(codepoint, x)
                for port in PORTS:
                    q = self.lookup(cid, port)
                    self.assertTrue(q["routable"], (cid, q))
                    self.assertEqual((q["codepoint"], q["primary"], q["server"]), (codepoint, x, x), cid)

    def test_a_primary_down_goes_to_the_four_tuples_serving_server(self):
        for x in SERVERS:
            cid = self.mint(0, x)
            for port in PORTS:
                q = self.lookup(cid, port, down=str(x))
                self.assertEqual(q["primary"], x)
                self.assertEqual(q["server"], self.serving(port, down=str(x)), (cid, port))
                self.assertNotEqual(q["server"], x)

    def test_unroutable_cids_go_by_the_four_tuple(self):
        cid = self.mint(0, 2)
        cases = {
            "codepoint 7": "%02x" % (0xe0 | int(cid[:2], 16) & 0x1f) + cid[2:],
            "codepoint without configuration": "%02x" % (0x60 | int(cid[:2], 16) & 0x1f) + cid[2:],
            "too short": cid[:8],
            "unknown server ID": "2509aabbccddeeff",
        }
        for what, bad in cases.items():
            for port in PORTS:
                q = self.lookup(bad, port)
                self.assertFalse(q["routable"], what)
                self.assertIsNone(q["primary"], what)
                self.assertEqual(q["server"], self.serving(port), what)

    def test_quic_cid_needs_an_offline_lookup(self):
        self.ctl("lookup", "--vip", VIP, "--src", "198.51.100.7:1", "--quic-cid", "00", rc=2)
        self.ctl("lookup", "--config", self.config, "--vip", VIP, "--src", "198.51.100.7:1", "--quic-cid", "0g", rc=2)


if __name__ == "__main__":
    unittest.main()
