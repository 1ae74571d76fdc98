#!/usr/bin/python3
"""Stopping the daemon: SIGTERM and SIGINT end it with exit status 0 and nothing on its output that says it
crashed, with the EAL in memory (--in-memory) and on hugepage files (--file-prefix: then no hugepage file of
the prefix remains in any hugetlbfs mount, and none of the sockets DPDK removes at a clean exit is left in
its runtime directory), while traffic flows through it, and after its memif peer (dpdk-testpmd) was killed
in the middle of the traffic: the daemon keeps running and answering, then stops as cleanly.

  test_stop.py UNDERSTUDY [unittest args]

Needs root, 2 MiB hugepages and dpdk-testpmd (package dpdk); without them it fails, it never skips.
"""
import glob
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest

UNDERSTUDY = os.path.abspath(sys.argv.pop(1)) if len(sys.argv) > 1 else "build/src/balancer/understudy"
TESTPMD = shutil.which("dpdk-testpmd")
PREFIX = f"ststop{os.getpid()}"
PCAP_MAC = "02:70:63:61:70:00"    # a net_pcap port's own MAC
MEMIF_MAC = "02:00:00:00:5e:01"   # the daemon's memif port
CRASH = re.compile(r"segmentation fault|sigsegv|sigbus|abort|core dumped|panic|stack trace", re.I)

CONFIG = """
[cluster]
secret = "00112233445566778899aabbccddeeff"

[health]
kind = "none"

[[pool]]
name = "web"
table_bits = 8
  [[pool.backend]]
  id = 1
  address = "10.0.1.11"
  mac = "02:aa:bb:cc:dd:01"

[[vip]]
address = "192.0.2.10"
port = 9
protocol = "udp"
pool = "web"
method = "gue"

[dataplane]
eal_args = [{eal}"--no-pci", "-l", "0,1", "--log-level=lib.*:warning", "--file-prefix={prefix}"]
workers = [1]
non_vip = "drop"
source_v4 = "10.0.0.2"
  [[dataplane.port]]
  name = "p0"
  devargs = "{devargs}"

[control]
socket = "{dir}/understudy.sock"
"""


def setUpModule():
    if os.geteuid() != 0:
        raise AssertionError("test_stop.py runs DPDK on hugepages: run it as root")
    with open("/proc/sys/vm/nr_hugepages") as f:
        if int(f.read()) < 256:
            raise AssertionError("fewer than 256 2 MiB hugepages reserved: run tools/setup.sh")
    if not TESTPMD:
        raise AssertionError("dpdk-testpmd not found: install the dpdk package (tools/setup.sh)")


def udp_frame(dst_mac, sport):
    """A UDP datagram from 198.18.0.1:sport to the VIP 192.0.2.10:9."""
    payload = b"x" * 18
    udp = struct.pack("!HHHH", sport, 9, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                     socket.inet_aton("198.18.0.1"), socket.inet_aton("192.0.2.10"))
    total = sum(struct.unpack("!10H", ip))
    while total > 0xffff:
        total = (total & 0xffff) + (total >> 16)
    ip = ip[:10] + struct.pack("!H", total ^ 0xffff) + ip[12:]
    return bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex("020000000001") + b"\x08\x00" + ip + udp


def write_pcap(path, frames):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
        for frame in frames:
            f.write(struct.pack("<IIII", 0, 0, len(frame), len(frame)) + frame)


def read(path):
    with open(path, errors="replace") as f:
        return f.read()


def hugepage_files(prefix):
    with open("/proc/mounts") as f:
        dirs = [line.split()[1] for line in f if line.split()[2] == "hugetlbfs"]
    return sorted(p for d in dirs for p in glob.glob(os.path.join(d, prefix + "map_*")))


def runtime_sockets(prefix):
    """What DPDK removes from /var/run/dpdk/<prefix> at a clean exit: its multi-process and telemetry
    sockets (config, fbarray_* and hugepage_info stay, as with dpdk-testpmd)."""
    d = os.path.join("/var/run/dpdk", prefix)
    return sorted(p for pat in ("mp_socket*", "dpdk_telemetry*", "telemetry") for p in glob.glob(os.path.join(d, pat)))


class Daemon:
    def __init__(self, tmp, devargs, in_memory, prefix):
        self.tmp, self.prefix = tmp, prefix
        self.config = os.path.join(tmp, "understudy.toml")
        with open(self.config, "w") as f:
            f.write(CONFIG.format(eal='"--in-memory", ' if in_memory else "", prefix=prefix, devargs=devargs,
                                  dir=tmp))
        self.log = os.path.join(tmp, "understudy.log")
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([UNDERSTUDY, "run", "--config", self.config], stdout=log,
                                         stderr=subprocess.STDOUT)

    def output(self):
        return read(self.log)

    def wait_started(self):
        deadline = time.monotonic() + 30
        while self.proc.poll() is None and "understudy: forwarding" not in self.output():
            if time.monotonic() > deadline:
                raise AssertionError("the daemon did not start within 30 s:\n" + self.output())
            time.sleep(0.1)
        if self.proc.poll() is not None:
            raise AssertionError(f"the daemon exited {self.proc.returncode} at start:\n{self.output()}")

    def request(self, op):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(os.path.join(self.tmp, "understudy.sock"))
            s.sendall(json.dumps({"op": op}).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        return json.loads(data)

    def counter(self, name):
        return self.request("stats")["counters"][name]

    def stop(self, sig, bound=20):
        """Sends sig; returns the exit status (None: still running after bound seconds, then killed)."""
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=bound)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class StopTest(unittest.TestCase):
    seq = 0

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="dataplane-stop-")
        StopTest.seq += 1
        self.prefix = f"{PREFIX}-{StopTest.seq}"
        self.daemon = None
        self.peer = None

    def tearDown(self):
        for p in (self.peer, self.daemon):
            if p:
                p.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)
        for f in hugepage_files(self.prefix):
            os.unlink(f)
        shutil.rmtree(os.path.join("/var/run/dpdk", self.prefix), ignore_errors=True)

    def start(self, devargs, in_memory):
        self.daemon = Daemon(self.tmp, devargs, in_memory, self.prefix)
        self.daemon.wait_started()
        return self.daemon

    def assert_clean_stop(self, sig, in_memory):
        d = self.daemon
        rc = d.stop(sig)
        out = d.output()
        self.assertIsNotNone(rc, f"still running 20 s after {signal.Signals(sig).name}:\n{out}")
        self.assertEqual(rc, 0, f"exit status after {signal.Signals(sig).name}:\n{out}")
        self.assertIsNone(CRASH.search(out), out)
        if not in_memory:
            self.assertEqual(hugepage_files(self.prefix), [], "hugepage files left behind")
            self.assertEqual(runtime_sockets(self.prefix), [], "runtime sockets left behind")
        return out

    def pcap_traffic(self):
        """net_pcap replaying a capture of VIP datagrams in a loop: traffic that never ends."""
        path = os.path.join(self.tmp, "in.pcap")
        write_pcap(path, [udp_frame(PCAP_MAC, 1000 + i) for i in range(64)])
        return f"net_pcap0,rx_pcap={path},infinite_rx=1,tx_pcap=/dev/null"

    def check_mode(self, sig, in_memory, devargs="net_null0"):
        d = self.start(devargs, in_memory)
        if not in_memory:
            self.assertNotEqual(hugepage_files(self.prefix), [], "no hugepage files while running: mode not tested")
        return self.assert_clean_stop(sig, in_memory)

    def test_sigterm_in_memory(self):
        self.check_mode(signal.SIGTERM, True)

    def test_sigint_in_memory(self):
        self.check_mode(signal.SIGINT, True)

    def test_sigterm_file_prefix(self):
        self.check_mode(signal.SIGTERM, False)

    def test_sigint_file_prefix(self):
        self.check_mode(signal.SIGINT, False)

    def under_traffic(self, sig, in_memory):
        d = self.start(self.pcap_traffic(), in_memory)
        deadline = time.monotonic() + 10
        while d.counter("tx_packets") < 10000:
            self.assertLess(time.monotonic(), deadline, "no traffic forwarded:\n" + d.output())
            time.sleep(0.2)
        out = self.assert_clean_stop(sig, in_memory)
        # The workers were still forwarding when the signal came: the final statistics say so.
        self.assertGreater(int(re.search(r"tx_packets\s+(\d+)", out).group(1)), 10000, out)

    def test_sigterm_under_traffic_in_memory(self):
        self.under_traffic(signal.SIGTERM, True)

    def test_sigterm_under_traffic_file_prefix(self):
        self.under_traffic(signal.SIGTERM, False)

    def test_sigint_under_traffic_file_prefix(self):
        self.under_traffic(signal.SIGINT, False)

    def memif_peer_leaves(self, role, in_memory):
        """The daemon's memif port in `role`, dpdk-testpmd the other end sending VIP datagrams (txonly); the
        peer is killed while they flow, the daemon must go on (and answer), then stop cleanly."""
        sock = os.path.join(self.tmp, "memif.sock")
        peer_role = "client" if role == "server" else "server"

        peer_log = os.path.join(self.tmp, "testpmd.log")

        def start_peer():
            with open(peer_log, "w") as log:
                self.peer = subprocess.Popen(
                    [TESTPMD, "-l", "0,1", "--no-pci", "--in-memory", f"--file-prefix={self.prefix}-peer",
                     f"--vdev=net_memif0,role={peer_role},socket={sock},id=0", "--", "--forward-mode=txonly",
                     "--auto-start", "--stats-period=1", f"--eth-peer=0,{MEMIF_MAC}",
                     "--tx-ip=198.18.0.1,192.0.2.10"],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

        if peer_role == "server":
            start_peer()   # listening once it forwards (the socket is abstract: no file to wait for)
            deadline = time.monotonic() + 20
            while "packet forwarding - ports=1" not in read(peer_log):
                self.assertIsNone(self.peer.poll(), read(peer_log))
                self.assertLess(time.monotonic(), deadline, "testpmd did not start forwarding")
                time.sleep(0.1)
        d = self.start(f"net_memif0,role={role},socket={sock},id=0,mac={MEMIF_MAC}", in_memory)
        if peer_role == "client":
            start_peer()
        deadline = time.monotonic() + 30
        while d.counter("rx_packets") < 10000:
            self.assertLess(time.monotonic(), deadline, "no traffic from the memif peer:\n" + d.output())
            time.sleep(0.2)
        self.peer.kill()
        self.peer.wait(timeout=10)
        time.sleep(2)   # the daemon notices the peer's end (its control channel closes) and disconnects
        self.assertIsNone(d.proc.poll(), "the daemon died when its memif peer left:\n" + d.output())
        self.assertTrue(d.request("status")["ok"], d.output())
        before = d.counter("rx_packets")
        time.sleep(0.5)
        self.assertEqual(d.counter("rx_packets"), before, "packets after the peer left: it did not leave")
        self.assert_clean_stop(signal.SIGTERM, in_memory)

    def test_memif_server_peer_leaves_file_prefix(self):
        self.memif_peer_leaves("server", False)

    def test_memif_client_peer_leaves_in_memory(self):
        self.memif_peer_leaves("client", True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
