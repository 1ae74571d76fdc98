#!/usr/bin/python3
"""Parity of the three implementations of the contract over 100,000 random sessions and two health states:
the DPDK data plane (`understudy replay`), `understudyctl lookup --batch`, and the agents' XDP program.
Every GUE packet replay writes is sent to every backend's agent: exactly the agent of the server the lookup
names must serve it, and every other agent must forward it (to that same server). The sessions are UDP: an
agent decides those by its table alone (TCP asks the host's sockets first, bpf/README.md).

Besides, 5,000 QUIC sessions on a QUIC-LB VIP (docs/quic-lb.md), short-header packets whose destination CIDs
tools/quic_lb_ref.py mints (four-pass and single-pass) for a random backend, or unroutable (codepoint 7, a server
ID of no backend): the server the CID names when it is operational, else the 4-tuple's as lookup gives it;
the header names the CID's server (QUIC_PRIMARY), and the agents serve or forward on it alike."""
import json
import os
import random
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest

BINARY = sys.argv.pop(1) if len(sys.argv) > 1 else "build/src/balancer/understudy"
AGENT = sys.argv.pop(1) if len(sys.argv) > 1 else "build/src/agent/understudy-agent"
CTL = sys.argv.pop(1) if len(sys.argv) > 1 else "build/src/cli/understudyctl"
ROOT = os.environ.get("UNDERSTUDY_SOURCE_ROOT", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import netns  # noqa: E402
import quic_lb_ref as qlb  # noqa: E402

SESSIONS = 100_000
QUIC_SESSIONS = 5_000
QUIC_PORT = 443
QUIC_KEY = bytes.fromhex("8f95f09245765f80256934e50c66207f")
QUIC_CONFIGS = {0: qlb.Config(0, 2, 8, QUIC_KEY), 2: qlb.Config(2, 3, 13, QUIC_KEY)}  # four-pass, single pass
GUE_F_FAILOVER, GUE_F_QUIC_PRIMARY = 0x02, 0x04  # docs/wire.md
BACKENDS = 4
VIP = "192.0.2.10"
CONFIG = """
[cluster]
secret = "3c5e7091b2d4f6a8ca1e3f5b7d9f1a2c"
[health]
kind = "none"
[[pool]]
name = "web"
table_bits = 16
{backends}
[[vip]]
address = "192.0.2.10"
port = 80
protocol = "udp"
pool = "web"
method = "gue"
conn_table = false
[[vip]]
address = "192.0.2.10"
port = 443
protocol = "udp"
pool = "web"
method = "gue"
conn_table = false
  [[vip.quic_lb]]
  codepoint = 0
  server_id_len = 2
  nonce_len = 8
  key = "8f95f09245765f80256934e50c66207f"
  [[vip.quic_lb]]
  codepoint = 2
  server_id_len = 3
  nonce_len = 13
  key = "8f95f09245765f80256934e50c66207f"
[dataplane]
source_v4 = "10.0.0.2"
[agent]
interface = "eth0"
"""


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff


def udp_frame(src, sport, dport=80, payload=b"parity"):
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload  # checksum 0: none, allowed over IPv4
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, socket.inet_aton(src),
                     socket.inet_aton(VIP))
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return b"\x02\x00\x00\x00\x00\x01" + b"\x02\x00\x00\x00\x00\x02" + b"\x08\x00" + ip + udp


def write_pcap(path, frames):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
        for fr in frames:
            f.write(struct.pack("<IIII", 0, 0, len(fr), len(fr)) + fr)


def read_pcap(path):
    frames = []
    with open(path, "rb") as f:
        f.read(24)
        while hdr := f.read(16):
            n = struct.unpack("<IIII", hdr)[2]
            frames.append(f.read(n))
    return frames


def quic_session(rng):
    """(destination CID, the backend id it names or None when unroutable) of one QUIC session."""
    kind = rng.randrange(10)
    if kind == 0:  # codepoint 7: unroutable by definition
        return bytes([0xE0 | rng.randrange(32)]) + rng.randbytes(17), None
    config = QUIC_CONFIGS[rng.choice(sorted(QUIC_CONFIGS))]
    backend = 99 if kind == 1 else rng.randrange(1, BACKENDS + 1)  # 99: a server ID of no backend
    sid = backend.to_bytes(config.sid_len, "big")  # the default server ID: the backend's id, big-endian
    cid = qlb.encode(config, sid, rng.randbytes(config.nonce_len))
    return cid, (backend if backend <= BACKENDS else None)


def quic_payload(cid, rng):
    """A 1-RTT (short header) packet: first octet 0b01xxxxxx, the destination CID, then protected bytes."""
    return bytes([0x40 | rng.randrange(64)]) + cid + rng.randbytes(24)


class ParityTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise SystemExit("FAIL: needs root")
        cls.dir = tempfile.TemporaryDirectory()
        rng = random.Random(2026)
        cls.flows = [(f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                      rng.randrange(1024, 65536)) for _ in range(SESSIONS)]
        cls.quic = []  # (source, port, CID, named backend or None)
        for _ in range(QUIC_SESSIONS):
            src = f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            cid, named = quic_session(rng)
            # The CID decodes back to the backend it names under the reference, independently of the encoder's
            # caller: a check of this test's own inputs.
            if named is not None:
                assert int.from_bytes(qlb.decode(QUIC_CONFIGS, cid)[1], "big") == named
            cls.quic.append((src, rng.randrange(1024, 65536), cid, named))
        cls.pcap = os.path.join(cls.dir.name, "in.pcap")
        write_pcap(cls.pcap, [udp_frame(a, p) for a, p in cls.flows] +
                   [udp_frame(a, p, QUIC_PORT, quic_payload(cid, rng)) for a, p, cid, _ in cls.quic])

    @classmethod
    def tearDownClass(cls):
        cls.dir.cleanup()

    def run_state(self, disabled):
        d = self.dir.name
        backends = "".join(f'  [[pool.backend]]\n  id = {i}\n  address = "10.0.0.{10 + i}"\n'
                           + (f'  weight = {50 * i}\n') + ('  state = "disabled"\n' if i in disabled else "")
                           for i in range(1, BACKENDS + 1))
        config = os.path.join(d, "parity.toml")
        with open(config, "w") as f:
            f.write(CONFIG.format(backends=backends))

        # 1. lookup: the server each session goes to by its 4-tuple; a QUIC session goes to the server its CID
        # names while that one is operational (here: not disabled), with that server as the header's primary.
        lines = "".join(f"{a} {p} {VIP} 80 udp\n" for a, p in self.flows)
        lines += "".join(f"{a} {p} {VIP} {QUIC_PORT} udp\n" for a, p, _, _ in self.quic)
        r = subprocess.run([CTL, "lookup", "--config", config, "--batch"], input=lines, capture_output=True, text=True,
                           timeout=300)
        self.assertEqual(r.returncode, 0, r.stderr[:500])
        want = [json.loads(l) for l in r.stdout.splitlines()]
        self.assertEqual(len(want), SESSIONS + QUIC_SESSIONS)
        quic_served = {i: 0 for i in range(1, BACKENDS + 1)}  # by the CID's server, up: QUIC_PRIMARY served there
        quic_down = {i: 0 for i in range(1, BACKENDS + 1)}    # by the CID's server, disabled: the 4-tuple's server
        for k, (_, _, _, named) in enumerate(self.quic):
            w = want[SESSIONS + k]
            if named is not None:
                w["primary"] = named
                if named in disabled:
                    quic_down[named] += 1
                else:
                    w["serving"] = named
                    quic_served[named] += 1
            # FAILOVER: sent to another server than the header's primary (docs/wire.md)
            w["flags"] = (GUE_F_QUIC_PRIMARY if named is not None else 0) | \
                (GUE_F_FAILOVER if w["serving"] != w["primary"] else 0)

        # 2. replay: the data plane's decision, written on the wire.
        out = os.path.join(d, "out.pcap")
        r = subprocess.run([BINARY, "replay", "--config", config, "--in", self.pcap, "--out", out, "--json",
                            "--port-mac", "02:00:00:00:00:01"],  # the frames' destination (udp_frame)
                           capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stderr[-2000:])
        frames = read_pcap(out)
        self.assertEqual(len(frames), SESSIONS + QUIC_SESSIONS)
        per_backend = {i: 0 for i in range(1, BACKENDS + 1)}
        for k, (fr, w) in enumerate(zip(frames, want)):
            dst = socket.inet_ntoa(fr[30:34])
            self.assertEqual(dst, f"10.0.0.{10 + w['serving']}", f"session {k}: replay and lookup differ")
            gue = fr[42:]
            self.assertEqual(struct.unpack("!I", gue[8:12])[0], w["primary"], f"session {k}: primary")
            self.assertEqual(gue[12:20].hex(), w["session_hash"], f"session {k}: session hash")
            if k >= SESSIONS:
                self.assertEqual(gue[7] & (GUE_F_QUIC_PRIMARY | GUE_F_FAILOVER), w["flags"], f"session {k}: flags")
            per_backend[w["serving"]] += 1
        for i in disabled:
            self.assertEqual(per_backend[i], 0)

        # 3. the agents' XDP programs: every backend gets every packet.
        prefix = "usp"
        names = [f"{prefix}-b{i}" for i in range(1, BACKENDS + 1)] + [f"{prefix}-inj"]
        try:
            for n in names:
                subprocess.run(["ip", "netns", "del", n], capture_output=True)
                subprocess.run(["ip", "netns", "add", n], check=True)
            inj = netns.Namespace(f"{prefix}-inj")
            agents = []
            for i in range(1, BACKENDS + 1):
                b = netns.Namespace(f"{prefix}-b{i}")
                subprocess.run(["ip", "link", "add", f"{prefix}{i}i", "type", "veth", "peer", "name", f"{prefix}{i}o"],
                               check=True)
                subprocess.run(["ip", "link", "set", f"{prefix}{i}i", "netns", b.name], check=True)
                subprocess.run(["ip", "link", "set", f"{prefix}{i}o", "netns", inj.name], check=True)
                b.run("ip", "link", "set", f"{prefix}{i}i", "name", "eth0")
                b.run("ip", "addr", "add", f"10.0.0.{10 + i}/24", "dev", "eth0")
                b.run("ip", "link", "set", "eth0", "up")
                inj.run("ip", "link", "set", f"{prefix}{i}o", "up")
                inj.run("ethtool", "-K", f"{prefix}{i}o", "gro", "on", check=False)  # XDP_TX needs NAPI on the peer
                sock = os.path.join(d, f"agent{i}.sock")
                with open(os.path.join(d, f"agent{i}.log"), "w") as log:
                    agents.append((b.popen(AGENT, "--config", config, "--socket", sock, stdout=log,
                                           stderr=subprocess.STDOUT), sock))
            for p, sock in agents:
                netns.wait_for(lambda: p.poll() is not None or os.path.exists(sock), 20, "an agent")
                self.assertIsNone(p.poll(), "an agent exited")
            sender = ("import socket,struct,sys\n"
                      "frames=[]\n"
                      "f=open(sys.argv[1],'rb'); f.read(24)\n"
                      "while True:\n"
                      "    h=f.read(16)\n"
                      "    if not h: break\n"
                      "    frames.append(f.read(struct.unpack('<IIII',h)[2]))\n"
                      "for ifname in sys.argv[2:]:\n"
                      "    s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW); s.bind((ifname,0))\n"
                      "    for fr in frames: s.send(fr)\n")
            inj.run("/usr/bin/python3", "-c", sender, out, *[f"{prefix}{i}o" for i in range(1, BACKENDS + 1)],
                    timeout=600)
            time.sleep(0.5)
            for i, (p, sock) in enumerate(agents, start=1):
                r = subprocess.run([CTL, "--socket", sock, "stats", "--json"], capture_output=True, text=True, timeout=30)
                c = json.loads(r.stdout)["counters"]
                # A host that a CID names serves the packet whatever its state (the connection lives there:
                # a disabled server still holds its connections); the balancer sent it elsewhere, so here it
                # is one more than lookup gives this host.
                mine = per_backend[i] + quic_down[i]
                served = c["gue_served"] + c["gue_no_server"] + c["gue_last_resort"] + c["quic_primary_served"]
                self.assertEqual(served, mine, f"backend {i} serves exactly the sessions lookup gives it")
                self.assertEqual(c["gue_forwarded"] + c["quic_primary_forwarded"],
                                 SESSIONS + QUIC_SESSIONS - mine, f"backend {i} forwards all the others")
                self.assertEqual(c["quic_primary_served"], quic_served[i] + quic_down[i],
                                 f"backend {i}: QUIC sessions its CIDs name")
                self.assertEqual(c["quic_primary_forwarded"], sum(quic_served.values()) - quic_served[i],
                                 f"backend {i}: QUIC sessions other CIDs name, forwarded to their server")
                self.assertEqual(c["quic_primary_fallback"], sum(quic_down.values()) - quic_down[i],
                                 f"backend {i}: CIDs whose server is down here go by the table")
                self.assertEqual(c["digest_mismatch"], 0, "same config everywhere: same digest")
                p.terminate()
                p.wait(timeout=10)
        finally:
            for n in names:
                subprocess.run(["ip", "netns", "del", n], capture_output=True)
        return per_backend

    def test_all_up(self):
        counts = self.run_state(disabled=set())
        self.assertTrue(all(v > 0 for v in counts.values()))

    def test_two_down(self):
        self.run_state(disabled={2, 3})


if __name__ == "__main__":
    unittest.main(verbosity=2)
