#!/usr/bin/python3
"""The daemon's ports on a real device: net_af_packet on one end of a veth pair in a network namespace of
this test's own. [dataplane] mtu is applied to the interface at start, or refused with an error naming the
port; the port's own counters (rte_eth_stats_get) appear in `understudyctl stats`, in Prometheus and in
DPDK telemetry; frames sent to another host's MAC are counted as not_for_us while the port counts them
received.

  test_port.py UNDERSTUDY UNDERSTUDYCTL [unittest args]

Needs root and 2 MiB hugepages; without them it fails, it never skips.
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

UNDERSTUDY = os.path.abspath(sys.argv.pop(1)) if len(sys.argv) > 1 else "build/src/balancer/understudy"
UNDERSTUDYCTL = os.path.abspath(sys.argv.pop(1)) if len(sys.argv) > 1 else "build/src/cli/understudyctl"
NS = f"usdp{os.getpid()}"
METRICS = "127.0.0.1:19273"
PORT_MAC = "02:00:00:00:dd:01"    # the DPDK side of the veth
OTHER_MAC = "02:00:00:00:dd:99"   # some other host on the segment

CONFIG = """
[cluster]
secret = "00112233445566778899aabbccddeeff"

[dataplane]
eal_args = ["--in-memory", "--no-pci", "-l", "0,1", "--log-level=lib.*:warning", "--file-prefix={ns}"]
workers = [1]
non_vip = "drop"
{extra}
  [[dataplane.port]]
  name = "p0"
  devargs = "net_af_packet0,iface=lb0"

[control]
socket = "{dir}/understudy.sock"
metrics = "{metrics}"
"""


def sh(*args, check=True):
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(args)}: {r.returncode}\n{r.stdout}{r.stderr}")
    return r


def in_ns(*args, check=True):
    return sh("ip", "netns", "exec", NS, *args, check=check)


def link_mtu(name):
    return int(re.search(r"mtu (\d+)", in_ns("ip", "link", "show", name).stdout).group(1))


def setUpModule():
    if os.geteuid() != 0:
        raise AssertionError("test_port.py creates a network namespace and runs DPDK: run it as root")
    with open("/proc/sys/vm/nr_hugepages") as f:
        if int(f.read()) < 256:
            raise AssertionError("fewer than 256 2 MiB hugepages reserved: run tools/setup.sh")
    sh("ip", "netns", "add", NS)
    in_ns("ip", "link", "set", "lo", "up")
    # No IPv6 on the veths: the peer's kernel would send router solicitations and MLD reports of its own,
    # and every count below is exact.
    in_ns("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
    in_ns("ip", "link", "add", "lb0", "type", "veth", "peer", "name", "peer0")
    in_ns("ip", "link", "set", "lb0", "address", PORT_MAC)
    for dev in ("lb0", "peer0"):
        in_ns("ip", "link", "set", dev, "up")


def tearDownModule():
    sh("ip", "netns", "del", NS, check=False)


class Daemon:
    def __init__(self, tmp, extra=""):
        self.tmp = tmp
        self.config = os.path.join(tmp, "understudy.toml")
        with open(self.config, "w") as f:
            f.write(CONFIG.format(ns=NS, dir=tmp, metrics=METRICS, extra=extra))
        self.log = os.path.join(tmp, "understudy.log")
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(["ip", "netns", "exec", NS, UNDERSTUDY, "run", "--config", self.config],
                                         stdout=log, stderr=subprocess.STDOUT)

    def output(self):
        with open(self.log) as f:
            return f.read()

    def wait_started(self):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None or "understudy: forwarding" in self.output():
                break
            time.sleep(0.1)
        if self.proc.poll() is not None:
            raise AssertionError(f"the daemon exited {self.proc.returncode}:\n{self.output()}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class MtuStartTest(unittest.TestCase):
    def start(self, iface_mtu, setting):
        """Starts the daemon on lb0 (MTU iface_mtu) with [dataplane] mtu = setting; returns (exit status or
        None while it runs, output, lb0's MTU then)."""
        in_ns("ip", "link", "set", "lb0", "mtu", str(iface_mtu))
        with tempfile.TemporaryDirectory(prefix="dataplane-port-") as tmp:
            d = Daemon(tmp, f"mtu = {setting}")
            try:
                deadline = time.monotonic() + 30
                while d.proc.poll() is None and "understudy: forwarding" not in d.output():
                    self.assertLess(time.monotonic(), deadline, d.output())
                    time.sleep(0.1)
                return d.proc.poll(), d.output(), link_mtu("lb0")
            finally:
                d.stop()

    def test_mtu_is_set_on_the_interface(self):
        """The driver (net_af_packet) raises its kernel interface's MTU to [dataplane] mtu at start."""
        rc, out, mtu = self.start(1400, 1500)
        self.assertIsNone(rc, out)
        self.assertEqual(mtu, 1500)

    def test_a_larger_interface_mtu_is_left_alone(self):
        """The interface is the host's: one already above [dataplane] mtu keeps its MTU (and the log says so)."""
        rc, out, mtu = self.start(1600, 1500)
        self.assertIsNone(rc, out)
        self.assertEqual(mtu, 1600)
        self.assertIn("interface lb0 has MTU 1600, above [dataplane] mtu = 1500: left as it is", out)

    def test_mtu_beyond_the_drivers_bound_on_an_interface_that_has_it(self):
        """net_af_packet in DPDK 22.11 declares frames of at most 1518 bytes, though its ring frames hold
        more: mtu = 1600 runs on an interface whose MTU is 1600 already."""
        rc, out, mtu = self.start(1600, 1600)
        self.assertIsNone(rc, out)
        self.assertEqual(mtu, 1600)

    def test_mtu_the_device_cannot_take_is_a_start_error_naming_the_port(self):
        """mtu = 9000 on an interface of MTU 1500 that the driver cannot raise that far: the start stops with a
        message that names the port, the setting and the range."""
        rc, out, mtu = self.start(1500, 9000)
        self.assertEqual(rc, 1, out)
        self.assertIn("port p0: [dataplane] mtu = 9000 is outside what the device takes", out)
        self.assertIn("interface lb0 has MTU 1500", out)
        self.assertNotIn("understudy: forwarding", out)
        self.assertEqual(mtu, 1500)


def send_frames(frames):
    """Sends raw Ethernet frames out of peer0, the other end of the daemon's veth."""
    code = ("import socket,sys\n"
            "s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)\n"
            "s.bind(('peer0',0))\n"
            "for h in sys.stdin.read().split():\n"
            "    s.send(bytes.fromhex(h))\n")
    r = subprocess.run(["ip", "netns", "exec", NS, "/usr/bin/python3", "-c", code],
                       input=" ".join(f.hex() for f in frames), capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise AssertionError(r.stderr)


def frame(dst_mac, i):
    """A UDP datagram to 192.0.2.77 (no VIP): counted as no_vip when it is for the port."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    return bytes(Ether(dst=dst_mac, src="02:00:00:00:dd:02") / IP(src="198.51.100.1", dst="192.0.2.77")
                 / UDP(sport=40000 + i, dport=53) / (b"x" * 20))


class PortCountersTest(unittest.TestCase):
    """A running daemon: frames for the port and for another host, then the port's counters in every place
    statistics are read from."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="dataplane-port-")
        cls.daemon = Daemon(cls.tmp.name)
        cls.daemon.wait_started()
        send_frames([frame(PORT_MAC, i) for i in range(5)] + [frame(OTHER_MAC, i) for i in range(7)])
        time.sleep(1.5)  # the telemetry copy is refreshed every second
        cls.stats = json.loads(in_ns(UNDERSTUDYCTL, "--socket", os.path.join(cls.tmp.name, "understudy.sock"),
                                     "stats", "--json").stdout)
        cls.text = in_ns(UNDERSTUDYCTL, "--socket", os.path.join(cls.tmp.name, "understudy.sock"), "stats").stdout
        cls.metrics = in_ns("curl", "-s", "-m", "5", f"http://{METRICS}/metrics").stdout

    @classmethod
    def tearDownClass(cls):
        cls.daemon.stop()
        cls.tmp.cleanup()

    def test_frames_for_another_mac_are_not_for_us(self):
        drops = self.stats["drops"]
        self.assertEqual(drops["not_for_us"], 7)
        self.assertEqual(drops["no_vip"], 5)

    def test_port_counters_in_stats(self):
        ports = self.stats["ports"]
        self.assertEqual([p["port"] for p in ports], ["p0"])
        p = ports[0]
        for key in ("rx_packets", "rx_bytes", "rx_missed", "rx_errors", "rx_nombuf", "tx_packets", "tx_bytes",
                    "tx_errors"):
            self.assertIn(key, p)
        self.assertEqual(p["rx_packets"], 12)
        self.assertEqual(p["rx_packets"], self.stats["counters"]["rx_packets"], "the port and the worker agree")
        self.assertEqual(p["rx_bytes"], 12 * len(frame(PORT_MAC, 0)))

    def test_port_counters_in_understudyctl_stats_text(self):
        self.assertRegex(self.text, r"PORT +RX +RX MISSED +RX ERRORS +RX NOMBUF +TX +TX ERRORS")
        row = next(l for l in self.text.splitlines() if l.split()[:1] == ["p0"])
        self.assertEqual(int(row.split()[1]), self.stats["ports"][0]["rx_packets"])

    def test_port_counters_in_prometheus(self):
        for name in ("rx_packets", "rx_missed", "rx_errors", "rx_nombuf", "tx_packets", "tx_errors"):
            m = re.search(r'^understudy_port_%s_total\{port="p0"\} (\d+)$' % name, self.metrics, re.M)
            self.assertIsNotNone(m, name)
        rx = int(re.search(r'^understudy_port_rx_packets_total\{port="p0"\} (\d+)$', self.metrics, re.M).group(1))
        self.assertEqual(rx, 12)
        self.assertRegex(self.metrics, r'(?m)^understudy_drops_total\{reason="not_for_us"\} 7$')
        self.assertRegex(self.metrics, r'(?m)^# TYPE understudy_icmp_too_big_sent_total counter$')

    def test_port_counters_in_telemetry(self):
        path = f"/var/run/dpdk/{NS}/dpdk_telemetry.v2"
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.connect(path)
        s.recv(1024)  # the greeting
        s.send(b"/understudy/ports")
        reply = json.loads(s.recv(16384))
        s.close()
        ports = reply["/understudy/ports"]
        self.assertIn("p0", ports)
        self.assertEqual(ports["p0"]["rx_packets"], 12)
        self.assertIn("rx_missed", ports["p0"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
