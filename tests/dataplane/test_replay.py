#!/usr/bin/python3
"""The DPDK pipeline over net_pcap (`understudy replay`), checked packet by packet and field by field.

Crafted frames (make_fixtures.py) go in; every frame that comes out is decoded here byte by byte and compared
with what docs/wire.md prescribes, for the server and session hash that the independent oracle
tools/ordering_ref.py computes from the config. Nothing expected comes from the code under test.

  test_replay.py [PATH/TO/understudy] [unittest args]     (UNDERSTUDY_SOURCE_ROOT: the source tree)

Needs root and 2 MiB hugepages (tools/setup.sh reserves them); without them it fails, it never skips.
"""
import importlib.util
import ipaddress
import json
import os
import struct
import subprocess
import sys
import tempfile
import tomllib
import unittest
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

UNDERSTUDY = os.path.abspath(sys.argv.pop(1)) if len(sys.argv) > 1 else "build/src/balancer/understudy"
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.environ.get("UNDERSTUDY_SOURCE_ROOT", os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, HERE)

import make_fixtures as fx  # noqa: E402


def load_oracle():
    path = os.path.join(ROOT, "tools", "ordering_ref.py")
    spec = importlib.util.spec_from_file_location("ordering_ref", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ref = load_oracle()

SECRET = "3f1e0c2a9b8d7766554433221100ffee"
DOWN = "2,12,21"  # web4's heaviest server, one of web6, tiny's only enabled server
REPLAY_TIMEOUT = 60

CONFIG = f"""
[cluster]
secret = "{SECRET}"

[dataplane]
conn_table_size = 65536
@DATAPLANE@

[[pool]]
name = "web4"
table_bits = 16
  [[pool.backend]]
  id = 1
  address = "10.0.1.11"
  [[pool.backend]]
  id = 2
  address = "10.0.1.12"
  weight = 200
  [[pool.backend]]
  id = 3
  address = "10.0.1.13"
  state = "drain"
  [[pool.backend]]
  id = 4
  address = "10.0.1.14"
  mac = "02:aa:bb:cc:dd:04"
  [[pool.backend]]
  id = 5
  address = "10.0.1.15"
  state = "disabled"
  [[pool.backend]]
  id = 6
  address = "10.0.1.16"
  weight = 0

[[pool]]
name = "web6"
table_bits = 12
  [[pool.backend]]
  id = 1
  address = "2001:db8:1::1"
  [[pool.backend]]
  id = 12
  address = "2001:db8:1::12"
  weight = 150
  [[pool.backend]]
  id = 13
  address = "2001:db8:1::13"
  mac = "02:aa:bb:cc:dd:0d"

[[pool]]
name = "tiny"
table_bits = 8
  [[pool.backend]]
  id = 21
  address = "10.0.3.21"
  [[pool.backend]]
  id = 22
  address = "10.0.3.22"
  state = "drain"

[[pool]]
name = "empty"
table_bits = 8

[[vip]]
address = "{fx.VIP4}"
port = 80
protocol = "tcp"
pool = "web4"

[[vip]]
address = "{fx.VIP4}"
port = 443
protocol = "tcp"
pool = "web4"
affinity = "client"

[[vip]]
address = "{fx.VIP4}"
port = 53
protocol = "udp"
pool = "web4"

[[vip]]
address = "{fx.VIP6}"
port = 80
protocol = "tcp"
pool = "web6"

[[vip]]
address = "{fx.VIP6}"
port = 53
protocol = "udp"
pool = "web6"

[[vip]]
address = "{fx.VIP4_IPIP}"
port = 80
protocol = "tcp"
pool = "web4"
method = "ipip"

[[vip]]
address = "{fx.VIP6_IPIP}"
port = 80
protocol = "tcp"
pool = "web6"
method = "ipip"

[[vip]]
address = "{fx.VIP4_L2}"
port = 80
protocol = "tcp"
pool = "web4"
method = "l2dsr"

[[vip]]
address = "{fx.VIP6_L2}"
port = 80
protocol = "tcp"
pool = "web6"
method = "l2dsr"

[[vip]]
address = "{fx.VIP6_X}"
port = 80
protocol = "tcp"
pool = "web4"
method = "gue"

[[vip]]
address = "{fx.VIP4_X}"
port = 80
protocol = "tcp"
pool = "web6"

[[vip]]
address = "{fx.VIP4_EMPTY}"
port = 80
protocol = "tcp"
pool = "empty"

[[vip]]
address = "{fx.VIP4_NOCONN}"
port = 8080
protocol = "udp"
pool = "web4"
conn_table = false

[[vip]]
address = "{fx.VIP4_TINY}"
port = 80
protocol = "tcp"
pool = "tiny"

[[vip]]
address = "{fx.VIP4_QUIC}"
port = 443
protocol = "udp"
pool = "web4"
conn_table = false
""" + "".join(f"""  [[vip.quic_lb]]
  codepoint = {cp}
  server_id_len = {sid}
  nonce_len = {nonce}
""" + (f"""  key = "{key}"
""" if key else "") for cp, (sid, nonce, key) in sorted(fx.QUIC_LB.items()))

# Room for the full-size 1500-byte fixtures through gue over IPv6 (1500 + 76 bytes); the MTU tests below
# run the default (1500) and others.
MAIN_MTU = "mtu = 1600"


def config_text(dataplane="", mtu=MAIN_MTU):
    return CONFIG.replace("@DATAPLANE@", dataplane + "\n" + mtu)


# The same world with every outer-header knob of [dataplane] set.
CONFIGURED = """source_v4 = "10.0.0.2"
source_v6 = "fd00::2"
gateway_mac = "02:00:00:00:00:fe"
hop_budget = 5"""

PROTO = {"tcp": 6, "udp": 17}
DEFAULT_SOURCE_V4 = "198.18.0.1"
DEFAULT_SOURCE_V6 = "2001:db8:ffff::1"
GUE_PORT = 6080
F_PINNED, F_FAILOVER, F_QUIC_PRIMARY = 0x01, 0x02, 0x04
QUIC_V2 = 0x6b3343cf  # RFC 9369


def quic_named(configs, inner):
    """The server ID (an int) the destination CID of a UDP packet names under the VIP's QUIC-LB configurations,
    or None when the packet is routed by its 4-tuple (docs/quic-lb.md), read here from RFC 9000's header
    formats and decoded by tools/quic_lb_ref.py."""
    if inner[0] >> 4 != 4 or inner[9] != 17:
        return None
    payload = inner[(inner[0] & 15) * 4 + 8:]
    if len(payload) < 2:
        return None
    if payload[0] & 0x80:  # long header: version, DCID length, DCID
        if len(payload) < 6:
            return None
        version, kind = struct.unpack("!I", payload[1:5])[0], (payload[0] >> 4) & 3
        if version == 1:
            client_chosen = kind in (0, 1)  # Initial, 0-RTT
        elif version == QUIC_V2:
            client_chosen = kind in (1, 2)
        else:
            client_chosen = True  # an unknown version's types are unknown
        n = payload[5]
        if client_chosen or n == 0 or n > 20 or len(payload) < 6 + n:
            return None
        cid = payload[6:6 + n]
    else:  # short header: the CID's own codepoint gives its length
        config = configs.get(payload[1] >> 5)
        if config is None or len(payload) - 1 < 1 + config.plaintext_len:
            return None
        cid = payload[1:2 + config.plaintext_len]
    try:
        return int.from_bytes(fx.quic_lb_ref.decode(configs, cid)[1], "big")
    except fx.quic_lb_ref.Unroutable:
        return None


def setUpModule():
    with open("/proc/sys/vm/nr_hugepages") as f:
        pages = int(f.read())
    if pages < 256:
        raise AssertionError(f"the data-plane tests need at least 256 2 MiB hugepages, {pages} are reserved: "
                             "run tools/setup.sh as root (it reserves 512)")
    if os.geteuid() != 0:
        raise AssertionError("the data-plane tests run DPDK and need root: run them as root after tools/setup.sh")
    if not os.access(UNDERSTUDY, os.X_OK):
        raise AssertionError(f"no understudy binary at {UNDERSTUDY}: build it (ninja -C build) or pass its path")


# ======================================================================== running replay

@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str
    stats: dict
    frames: list


def replay(tmp, name, config, frames, down=None, timeout=REPLAY_TIMEOUT, extra=()):
    """Runs understudy replay over frames; returns the exit status, output, statistics and output frames."""
    src = os.path.join(tmp, name + ".in.pcap")
    out = os.path.join(tmp, name + ".out.pcap")
    if frames is not None:
        fx.write_pcap(src, frames)
    return replay_file(config, src, out, down, timeout, extra)


def replay_file(config, src, out, down=None, timeout=REPLAY_TIMEOUT, extra=()):
    cmd = [UNDERSTUDY, "replay", "--config", config, "--in", src, "--out", out, "--json", *extra]
    if down:
        cmd += ["--down", down]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"replay did not finish in {timeout} s: {' '.join(cmd)}\n{e.stderr or ''}") from None
    stats, frames = None, []
    if r.returncode == 0:
        try:
            stats = json.loads(r.stdout)
        except json.JSONDecodeError as e:
            raise AssertionError(f"replay --json printed no JSON object ({e}):\n{r.stdout[:2000]}") from None
        frames = fx.read_pcap(out)
    return Run(r.returncode, r.stdout, r.stderr, stats, frames)


# ======================================================================== expectations (oracle + config)

def mac_text(b):
    return ":".join("%02x" % x for x in b)


def family(addr):
    return ipaddress.ip_address(addr).version


@dataclass
class Expect:
    """What must happen to one VIP fixture."""
    vip_index: int
    vip: dict
    session_hash: int
    bucket: int
    ordering: list
    primary: int
    serving: int             # None: no operational server, dropped as no_server
    backend: dict = None     # the serving backend's config
    dst_mac: str = ""
    flags: int = 0
    out_len: int = 0
    pool_digest: int = 0

    @property
    def forwarded(self):
        return self.serving is not None


class World:
    """The test config read by tomllib plus the ordering oracle, for one --down set."""

    def __init__(self, config_path, down=""):
        with open(config_path, "rb") as f:
            self.cfg = tomllib.load(f)
        self.down = {int(x) for x in down.split(",") if x}
        self.secret, pools, _ = ref.load_config(config_path)
        self.views = {name: ref.Pool(self.secret, p, self.down) for name, p in pools.items()}
        dp = self.cfg.get("dataplane", {})
        self.source_v4 = dp.get("source_v4", DEFAULT_SOURCE_V4)
        self.source_v6 = dp.get("source_v6", DEFAULT_SOURCE_V6)
        self.gateway_mac = dp.get("gateway_mac")
        self.hop_budget = dp.get("hop_budget", 3)  # docs/configuration.md
        self.outer_df = dp.get("outer_df", True)
        self.mtu = dp.get("mtu", 1500)
        self.pools = {p["name"]: p for p in self.cfg.get("pool", [])}
        self.vips = []
        for v in self.cfg.get("vip", []):
            self.vips.append({"address": v["address"], "port": v["port"], "proto": PROTO[v.get("protocol", "tcp")],
                              "pool": v["pool"], "method": v.get("method", "gue"),
                              "affinity": v.get("affinity", "flow"), "conn_table": v.get("conn_table", True),
                              "quic": {q["codepoint"]: fx.quic_lb_ref.Config(
                                  q["codepoint"], q["server_id_len"], q["nonce_len"],
                                  bytes.fromhex(q["key"]) if "key" in q else None) for q in v.get("quic_lb", [])}})
        self.vip_index = {}
        for i, v in enumerate(self.vips):
            self.vip_index[(ipaddress.ip_address(v["address"]), v["port"], v["proto"])] = i
        self.digests = {name: self.pool_digest(p) for name, p in self.pools.items()}

    def pool_digest(self, pool):
        """docs/wire.md: SipHash-1-3 of le32(id) || le32(weight) per server in ascending id order, weight 0
        while draining; low 32 bits."""
        data = b""
        for b in sorted(pool.get("backend", []), key=lambda b: b["id"]):
            weight = 0 if b.get("state", "enabled") == "drain" else b.get("weight", 100)
            data += struct.pack("<II", b["id"], weight)
        return ref.siphash13(self.secret, data) & 0xffffffff

    def backend(self, pool, bid):
        return next(b for b in self.pools[pool].get("backend", []) if b["id"] == bid)

    def mac_of(self, backend):
        if "mac" in backend:
            return backend["mac"].lower()
        if self.gateway_mac:
            return self.gateway_mac.lower()
        return mac_text(b"\x02\x00" + struct.pack("!I", backend["id"]))

    def expect(self, f):
        if f.verdict != "vip":
            return None
        addr, port, proto = f.vip
        vi = self.vip_index[(ipaddress.ip_address(addr), port, proto)]
        vip = self.vips[vi]
        src, sport, dst, dport, fproto = f.flow
        assert ipaddress.ip_address(dst) == ipaddress.ip_address(addr) and fproto == proto, f.name
        key = ref.session_key(src, sport, dst, dport, proto, vip["affinity"])
        h = ref.siphash13(self.secret, key)
        view = self.views[vip["pool"]]
        bucket = ref.bucket_of(h, view.table_bits)
        ordering, primary, serving = view.primary_serving(bucket)
        quic_flag = 0
        if vip["quic"] and "frag" not in f.tags and "icmp" not in f.tags:
            named = quic_named(vip["quic"], f.inner)
            if named is not None and any(b["id"] == named for b in self.pools[vip["pool"]].get("backend", [])):
                # The CID names the primary; it serves while operational, else the 4-tuple's server does.
                primary, quic_flag = named, F_QUIC_PRIMARY
                if named in view.operational:
                    serving = named
        e = Expect(vi, vip, h, bucket, ordering, primary, serving, pool_digest=self.digests[vip["pool"]])
        if serving is None:
            return e
        e.backend = self.backend(vip["pool"], serving)
        e.dst_mac = self.mac_of(e.backend)
        e.flags = quic_flag | (F_FAILOVER if serving != primary else 0)
        inner = len(f.inner)
        outer_ip = 20 if family(e.backend["address"]) == 4 else 40
        e.out_len = {"gue": 14 + outer_ip + 8 + 28 + inner, "ipip": 14 + outer_ip + inner,
                     "l2dsr": 14 + inner}[vip["method"]]
        return e


# ======================================================================== decoding the output

def be16(b):
    return struct.unpack("!H", b)[0]


def be32(b):
    return struct.unpack("!I", b)[0]


def ones_sum(data):
    if len(data) % 2:
        data += b"\x00"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return s


def inner_tos(inner):
    """The inner packet's DSCP/ECN byte: the IPv4 TOS or the IPv6 traffic class."""
    return inner[1] if inner[0] >> 4 == 4 else ((inner[0] & 0x0f) << 4) | (inner[1] >> 4)


def check_frame(world, f, e, frame, port_mac):
    """Every field of one output frame against docs/wire.md; returns the mismatches."""
    errs = []

    def eq(field, got, want):
        if got != want:
            g = got.hex() if isinstance(got, bytes) and len(got) > 16 else got
            w = want.hex() if isinstance(want, bytes) and len(want) > 16 else want
            errs.append(f"{field}: got {g!r}, want {w!r}")

    inner = f.inner
    inner_v6 = inner[0] >> 4 == 6
    method = e.vip["method"]
    eq("frame length", len(frame), e.out_len)
    if len(frame) < 14:
        return errs
    eq("eth.dst", mac_text(frame[0:6]), e.dst_mac)
    eq("eth.src", mac_text(frame[6:12]), port_mac)
    if method == "l2dsr":
        eq("eth.type", be16(frame[12:14]), 0x86dd if inner_v6 else 0x0800)
        eq("inner packet", frame[14:], inner)
        return errs

    outer_v6 = family(e.backend["address"]) == 6
    inner_proto = 41 if inner_v6 else 4
    l4_len = (8 + 28 if method == "gue" else 0) + len(inner)
    next_proto = 17 if method == "gue" else inner_proto
    dst = ipaddress.ip_address(e.backend["address"]).packed
    eq("eth.type", be16(frame[12:14]), 0x86dd if outer_v6 else 0x0800)
    ip = frame[14:]
    if not outer_v6:
        if len(ip) < 20:
            return errs + ["outer IPv4 header truncated"]
        eq("ipv4.version", ip[0] >> 4, 4)
        eq("ipv4.ihl", ip[0] & 0x0f, 5)
        eq("ipv4.tos (copied from inner)", ip[1], inner_tos(inner))
        eq("ipv4.total_length", be16(ip[2:4]), 20 + l4_len)
        # DF and identification 0 (an atomic datagram, RFC 6864) unless outer_df = false: then no DF and an
        # identification counter, which is never 0 here (replay's one worker starts at 1).
        eq("ipv4.flags+fragment_offset", be16(ip[6:8]), 0x4000 if world.outer_df else 0)
        if world.outer_df:
            eq("ipv4.id (0 with DF)", be16(ip[4:6]), 0)
        elif be16(ip[4:6]) == 0:
            errs.append("ipv4.id: 0 without DF")
        eq("ipv4.ttl", ip[8], 64)
        eq("ipv4.protocol", ip[9], next_proto)
        eq("ipv4.header_checksum valid", ones_sum(ip[:20]), 0xffff)
        eq("ipv4.src", str(ipaddress.ip_address(ip[12:16])), world.source_v4)
        eq("ipv4.dst", ip[16:20], dst)
        l4, pseudo_src, pseudo_dst = ip[20:], None, None
    else:
        if len(ip) < 40:
            return errs + ["outer IPv6 header truncated"]
        vtf = be32(ip[0:4])
        eq("ipv6.version", vtf >> 28, 6)
        eq("ipv6.traffic_class (copied from inner)", (vtf >> 20) & 0xff, inner_tos(inner))
        eq("ipv6.flow_label (session hash & 0xfffff)", vtf & 0xfffff, e.session_hash & 0xfffff)
        eq("ipv6.payload_length", be16(ip[4:6]), l4_len)
        eq("ipv6.next_header", ip[6], next_proto)
        eq("ipv6.hop_limit", ip[7], 64)
        eq("ipv6.src", str(ipaddress.ip_address(ip[8:24])), str(ipaddress.ip_address(world.source_v6)))
        eq("ipv6.dst", ip[24:40], dst)
        l4, pseudo_src, pseudo_dst = ip[40:], ip[8:24], ip[24:40]
    if method == "ipip":
        eq("inner packet", l4, inner)
        return errs

    if len(l4) < 36:
        return errs + ["UDP/GUE headers truncated"]
    eq("udp.src_port", be16(l4[0:2]), 0xc000 | ((e.session_hash >> 32) & 0x3fff))
    eq("udp.dst_port", be16(l4[2:4]), GUE_PORT)
    eq("udp.length", be16(l4[4:6]), l4_len)
    csum = be16(l4[6:8])
    if not outer_v6:
        eq("udp.checksum (0 over IPv4)", csum, 0)
    else:
        pseudo = pseudo_src + pseudo_dst + struct.pack("!IxxxB", len(l4), 17)
        if csum == 0:
            errs.append("udp.checksum: 0 over IPv6")
        eq("udp.checksum valid (IPv6 pseudo-header)", ones_sum(pseudo + l4), 0xffff)
    gue, pd = l4[8:12], l4[12:36]
    eq("gue.ver_c_hlen", gue[0], 0x06)
    eq("gue.proto", gue[1], inner_proto)
    eq("gue.flags", gue[2:4], b"\x00\x00")
    eq("pd.magic", be16(pd[0:2]), 0x5553)
    eq("pd.version", pd[2], 1)
    eq("pd.flags", pd[3], e.flags)
    eq("pd.primary_id", be32(pd[4:8]), e.primary)
    eq("pd.session_hash", "%016x" % struct.unpack("!Q", pd[8:16])[0], "%016x" % e.session_hash)
    eq("pd.pool_digest", "%08x" % be32(pd[16:20]), "%08x" % e.pool_digest)
    eq("pd.hop_budget", pd[20], world.hop_budget)
    eq("pd.reserved", pd[21:24], b"\x00\x00\x00")
    eq("inner packet", l4[36:], inner)
    return errs


def owner_of(frame, by_inner):
    """The fixture whose IP packet this output frame carries (it is the frame's tail after 14/34/54/70/90
    bytes of new headers)."""
    for header in (14, 34, 54, 70, 90):
        name = by_inner.get(frame[header:])
        if name:
            return name
    return None


def outer_dst(frame):
    """Where an output frame goes: its outer destination address, or its MAC for l2dsr."""
    t = be16(frame[12:14])
    if t == 0x0800 and frame[23] in (4, 17, 41):
        return frame[30:34]
    if t == 0x86dd and frame[20] in (4, 17, 41):
        return frame[38:54]
    return frame[0:6]


class Outcome:
    """One replay of a fixture list, with the expectations of its world and the outputs matched to fixtures."""

    def __init__(self, world, fixtures, run):
        self.world, self.fixtures, self.run = world, fixtures, run
        self.expect = {f.name: world.expect(f) for f in fixtures}
        self.by_name = {f.name: f for f in fixtures}
        by_inner = {f.inner: f.name for f in fixtures if f.verdict == "vip"}
        self.owners = [owner_of(fr, by_inner) for fr in run.frames]
        self.frame = {}
        for name, fr in zip(self.owners, run.frames):
            if name and name not in self.frame:
                self.frame[name] = fr
        srcs = {fr[6:12] for fr in run.frames}
        self.port_mac = mac_text(run.frames[0][6:12]) if run.frames else None
        self.port_macs = srcs

    def forwarded(self):
        return [f for f in self.fixtures if f.verdict == "vip" and self.expect[f.name].forwarded]

    def problems(self, f):
        e = self.expect[f.name]
        if f.verdict != "vip":
            return ["dropped fixture written out"] if f.name in self.frame else []
        if not e.forwarded:
            return ["written out, but its pool has no operational server"] if f.name in self.frame else []
        if f.name not in self.frame:
            return [f"not written (expected to go to server {e.serving} via {e.vip['method']})"]
        return check_frame(self.world, f, e, self.frame[f.name], self.port_mac)

    def expected_stats(self):
        w = self.world
        counters = {"rx_packets": len(self.fixtures), "rx_bytes": sum(len(f.frame) for f in self.fixtures),
                    "tx_packets": 0, "tx_bytes": 0, "exception_packets": 0, "kernel_packets": 0,
                    "failovers": 0, "fragments": 0, "icmp_errors": 0, "conn_hits": 0, "conn_misses": 0,
                    "conn_evictions": 0, "conn_stale": 0, "icmp_too_big_sent": 0}
        drops = {}
        vips = [[0, 0] for _ in w.vips]
        backends = {(p, b["id"]): [0, 0] for p in w.pools for b in w.pools[p].get("backend", [])}
        seen = set()
        for f in self.fixtures:
            e = self.expect[f.name]
            if e is None:
                drops[f.verdict] = drops.get(f.verdict, 0) + 1
                continue
            if e.vip["conn_table"]:
                tag = (e.vip_index, e.session_hash)
                if tag in seen:
                    counters["conn_hits"] += 1
                else:
                    counters["conn_misses"] += 1
                if e.forwarded:
                    seen.add(tag)
            if not e.forwarded:
                drops["no_server"] = drops.get("no_server", 0) + 1
                continue
            counters["tx_packets"] += 1
            counters["tx_bytes"] += e.out_len
            counters["failovers"] += e.serving != e.primary
            counters["fragments"] += "frag" in f.tags
            counters["icmp_errors"] += "icmp" in f.tags
            vips[e.vip_index][0] += 1
            vips[e.vip_index][1] += len(f.frame)
            backends[(e.vip["pool"], e.serving)][0] += 1
            backends[(e.vip["pool"], e.serving)][1] += e.out_len
        return counters, drops, vips, backends


def first_diff(got, want):
    return {k: (got.get(k), want.get(k)) for k in sorted(set(got) | set(want)) if got.get(k) != want.get(k)}


# ======================================================================== the main capture

class ReplayTest(unittest.TestCase):
    """All fixtures in one capture, replayed with every server up and again with DOWN not operational."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="dataplane-test-")
        cls.config = os.path.join(cls.tmp.name, "understudy.toml")
        with open(cls.config, "w") as f:
            f.write(config_text())
        cls.fixtures = fx.main_fixtures()
        frames = [f.frame for f in cls.fixtures]
        with ThreadPoolExecutor(2) as pool:
            up = pool.submit(replay, cls.tmp.name, "up", cls.config, frames)
            down = pool.submit(replay, cls.tmp.name, "down", cls.config, frames, DOWN)
            cls.up_run, cls.down_run = up.result(), down.result()
        for run in (cls.up_run, cls.down_run):
            assert run.rc == 0, f"replay failed with exit status {run.rc}:\n{run.stderr[-3000:]}"
        cls.up = Outcome(World(cls.config), cls.fixtures, cls.up_run)
        cls.down = Outcome(World(cls.config, DOWN), cls.fixtures, cls.down_run)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    # ---------------------------------------------------------------- helpers

    def select(self, want=(), without=(), verdict="vip"):
        chosen = [f for f in self.fixtures if f.verdict == verdict and set(want) <= f.tags
                  and not (set(without) & f.tags)]
        self.assertTrue(chosen, f"no fixture tagged {want} without {without}: the fixture set lost its coverage")
        return chosen

    def check_fixtures(self, fixtures, outcome=None):
        outcome = outcome or self.up
        for f in fixtures:
            with self.subTest(fixture=f.name, desc=f.desc):
                problems = outcome.problems(f)
                self.assertEqual(problems, [], f"{f.name} ({f.desc}):\n  " + "\n  ".join(problems))

    def check_groups(self, fixtures, outcome=None):
        """Fixtures of one group: one server, one session hash, and the output frames agree."""
        outcome = outcome or self.up
        groups = {}
        for f in fixtures:
            if f.group:
                groups.setdefault(f.group, []).append(f)
        self.assertTrue(groups)
        for name, members in groups.items():
            with self.subTest(group=name):
                self.assertGreaterEqual(len(members), 2)
                exp = [outcome.expect[f.name] for f in members]
                self.assertEqual(len({e.serving for e in exp}), 1, f"{name}: the oracle disagrees with the fixture")
                self.assertEqual(len({e.session_hash for e in exp}), 1, name)
                frames = [outcome.frame.get(f.name) for f in members]
                self.assertNotIn(None, frames, f"{name}: {[f.name for f in members]} not all written")
                self.assertEqual(len({outer_dst(fr) for fr in frames}), 1, f"{name}: sent to different servers")

    # ---------------------------------------------------------------- order and framing

    def test_output_is_the_forwarded_inputs_in_order(self):
        want = [f.name for f in self.up.forwarded()]
        got = self.up.owners
        missing = [n for n in want if n not in got]
        unknown = [i for i, n in enumerate(got) if n is None]
        dropped_written = [n for n in got if n and n not in want]
        self.assertEqual(missing, [], "expected in the output but not written")
        self.assertEqual(unknown, [], "output frames carrying no fixture's packet (indices)")
        self.assertEqual(dropped_written, [], "written although they must be dropped")
        self.assertEqual(got, want, "output order differs from input order")

    def test_port_mac_is_the_source_of_every_frame(self):
        self.assertEqual(len(self.up.port_macs), 1, "frames leave with different source MACs")
        mac = bytes.fromhex(self.up.port_mac.replace(":", ""))
        self.assertNotEqual(mac, bytes(6))
        self.assertEqual(mac[0] & 1, 0, "the port MAC must be unicast")

    def test_frames_come_to_the_port_mac(self):
        """The fixtures are addressed to the replay port's MAC, which is its source MAC on the way out."""
        self.assertEqual(self.up.port_mac, fx.LB_MAC)

    def test_frames_for_other_hosts_are_dropped_as_not_for_us(self):
        """The port is promiscuous: unicast frames to another MAC are dropped and counted, whatever they carry;
        broadcast and multicast frames (ARP, neighbour discovery) go on to the parser."""
        mac = self.select(("mac",), verdict="not_for_us")
        self.assertGreaterEqual(len(mac), 3)
        for f in mac:
            self.assertNotIn(f.name, self.up.frame)
        passed = [f for f in self.fixtures if "mac" in f.tags and f.verdict != "not_for_us"]
        self.assertEqual({f.verdict for f in passed}, {"not_ip", "no_vip"}, "group addresses reach the parser")
        self.assertEqual(self.up_run.stats["drops"]["not_for_us"], len(mac))

    def test_outer_ipv4_has_df_and_identification_0(self):
        """[dataplane] outer_df defaults to true: every outer IPv4 header (gue, ipip) carries DF and ID 0."""
        outer4 = [fr for fr in self.up_run.frames if be16(fr[12:14]) == 0x0800 and fr[23] in (4, 17, 41)]
        self.assertGreater(len(outer4), 100)
        self.assertEqual({(be16(fr[18:20]), be16(fr[20:22])) for fr in outer4}, {(0, 0x4000)})

    def test_port_counters(self):
        """The port's own counters (rte_eth_stats_get) in the statistics: what net_pcap read and wrote."""
        ports = self.up_run.stats["ports"]
        self.assertEqual([p["port"] for p in ports], ["pcap"])
        p = ports[0]
        self.assertEqual((p["rx_packets"], p["rx_bytes"]),
                         (len(self.fixtures), sum(len(f.frame) for f in self.fixtures)))
        self.assertEqual((p["tx_packets"], p["tx_bytes"]),
                         (len(self.up_run.frames), sum(len(fr) for fr in self.up_run.frames)))
        self.assertEqual((p["rx_missed"], p["rx_errors"], p["rx_nombuf"], p["tx_errors"]), (0, 0, 0, 0))

    # ---------------------------------------------------------------- by kind of traffic

    SPECIAL = ("vlan", "options", "ext", "frag", "icmp", "padding", "affinity", "cross", "big", "tiny", "empty",
               "noconn", "quic")

    def test_ipv4_tcp_gue(self):
        self.check_fixtures(self.select(("v4", "tcp", "gue"), self.SPECIAL))

    def test_ipv4_udp_gue(self):
        self.check_fixtures(self.select(("v4", "udp", "gue"), self.SPECIAL))

    def test_ipv6_tcp_gue(self):
        self.check_fixtures(self.select(("v6", "tcp", "gue"), self.SPECIAL))

    def test_ipv6_udp_gue(self):
        self.check_fixtures(self.select(("v6", "udp", "gue"), self.SPECIAL))

    def test_gue_across_address_families(self):
        self.check_fixtures(self.select(("cross", "v6")))  # IPv6 VIP, IPv4 backends: IPv6-in-UDP-in-IPv4
        self.check_fixtures(self.select(("cross", "v4")))  # IPv4 VIP, IPv6 backends

    def test_ipip_ipv4(self):
        self.check_fixtures(self.select(("ipip", "v4")))

    def test_ipip_ipv6(self):
        self.check_fixtures(self.select(("ipip", "v6")))

    def test_l2dsr_ipv4(self):
        fixtures = self.select(("l2dsr", "v4"))
        self.check_fixtures(fixtures)
        macs = {self.up.expect[f.name].dst_mac for f in fixtures}
        self.assertIn("02:aa:bb:cc:dd:04", macs, "coverage: a backend with an explicit mac")
        self.assertIn("02:00:00:00:00:01", macs, "coverage: the 02:00 + ID placeholder")

    def test_l2dsr_ipv6(self):
        fixtures = self.select(("l2dsr", "v6"))
        self.check_fixtures(fixtures)
        self.assertIn("02:aa:bb:cc:dd:0d", {self.up.expect[f.name].dst_mac for f in fixtures})

    def test_vlan_tags_are_removed(self):
        self.check_fixtures(self.select(("vlan",)))

    def test_ethernet_padding_is_removed(self):
        self.check_fixtures(self.select(("padding",)))

    def test_full_size_packets(self):
        self.check_fixtures(self.select(("big",)))

    def test_ipv4_and_tcp_options(self):
        self.check_fixtures(self.select(("options",)))

    def test_ipv6_extension_headers(self):
        self.check_fixtures(self.select(("ext",), ("frag", "icmp")))

    def test_ipv6_eight_extension_headers_are_walked(self):
        """Chains longer than 8 extension headers are dropped (v6-9-ext); a chain of exactly 8 is walked and
        forwarded. Its own capture, so that a failure here names nothing else."""
        fixtures = fx.limit_fixtures()
        run = replay(self.tmp.name, "limits", self.config, [f.frame for f in fixtures])
        self.assertEqual(run.rc, 0, run.stderr[-2000:])
        outcome = Outcome(self.up.world, fixtures, run)
        self.check_fixtures(fixtures, outcome)
        self.check_drops(outcome)

    def test_affinity_client_ignores_ports(self):
        fixtures = self.select(("affinity",))
        self.check_fixtures(fixtures)
        self.check_groups(fixtures)
        for f in fixtures:
            src, _, dst, _, proto = f.flow
            want = ref.siphash13(self.up.world.secret, ref.session_key(src, 0, dst, 0, proto))
            self.assertEqual(self.up.expect[f.name].session_hash, want, f.name)
        for g in {f.group for f in fixtures}:
            sports = {f.flow[1] for f in fixtures if f.group == g}
            self.assertEqual(len(sports), 2, f"{g}: its two connections must use different ports")

    def test_icmp_errors_follow_their_flow(self):
        fixtures = [f for f in self.fixtures if {"icmp", "icmp-flow"} & f.tags]
        self.check_fixtures(fixtures)
        groups = {f.group for f in fixtures if f.group}
        self.assertIn("frag4-tcp", groups, "coverage: an error quoting a fragment")
        self.check_groups([f for f in self.fixtures if f.group in groups])

    def test_ipv4_fragments(self):
        fixtures = self.select(("frag", "v4"))
        self.check_fixtures(fixtures)
        self.check_groups(fixtures)
        for f in fixtures:
            self.assertEqual((f.flow[1], f.flow[3]), (0, 0))
        # frag4-tcp-443 was sent to port 443 but counts under the first VIP on its address: 80/tcp
        self.assertEqual(self.up.expect["frag4-tcp-443-first"].vip["port"], 80)

    def test_ipv6_fragments(self):
        fixtures = self.select(("frag", "v6"))
        self.check_fixtures(fixtures)
        self.check_groups(fixtures)

    # ---------------------------------------------------------------- server states

    def test_drain_and_weight_zero_receive_nothing_while_others_serve(self):
        # A QUIC CID that names a draining server still reaches it (its connection lives there):
        # test_quic_lb_routes_by_connection_id; here only what the ordering chooses.
        forwarded = [e for e in self.up.expect.values() if e and e.forwarded]
        sent = [(e.vip["pool"], e.serving) for e in forwarded if not e.flags & F_QUIC_PRIMARY]
        for pool, bid in (("web4", 3), ("web4", 6), ("tiny", 22)):
            self.assertNotIn((pool, bid), sent, "the oracle sends traffic to a draining server")
            by_cid = sum(1 for e in forwarded if e.flags & F_QUIC_PRIMARY and (e.vip["pool"], e.serving) == (pool, bid))
            self.assertEqual(self.backend_stats(self.up_run, pool, bid)["packets"], by_cid, f"{pool} {bid}")
        for e in self.up.expect.values():
            if e and e.vip["pool"] == "web4":
                self.assertEqual(set(e.ordering[-2:]), {3, 6}, "weight 0 sorts last")

    def test_disabled_backend_never_serves(self):
        self.assertEqual(self.backend_stats(self.up_run, "web4", 5)["packets"], 0)
        self.assertFalse(self.backend_stats(self.up_run, "web4", 5)["operational"])
        moved = [f for f in self.fixtures if f.verdict == "vip" and self.up.expect[f.name].primary == 5]
        self.assertGreaterEqual(len(moved), 5, "coverage: flows whose primary is the disabled server")
        self.check_fixtures(moved)
        for f in moved:
            if self.up.expect[f.name].vip["method"] == "gue":
                pd = self.up.frame[f.name][-len(f.inner) - 24:-len(f.inner)]
                quic = F_QUIC_PRIMARY if "quic" in f.tags else 0  # a CID naming server 5 (test_quic_lb_...)
                self.assertEqual((pd[3], be32(pd[4:8])), (F_FAILOVER | quic, 5), f.name)

    def test_quic_lb_routes_by_connection_id(self):
        """A QUIC VIP: the server a packet's destination CID names, while it is operational (also draining or
        at weight 0), with QUIC_PRIMARY and that server as the header's primary; the 4-tuple's server when it
        is disabled or down, the header still naming it; the 4-tuple alone when the CID names nobody."""
        quic = self.select(("quic",))
        for outcome in (self.up, self.down):
            self.check_fixtures(quic, outcome)
        by_cid = [f for f in quic if "quic-unroutable" not in f.tags]
        self.assertGreaterEqual(len(by_cid), 30, "coverage")
        for f in by_cid:
            self.assertTrue(self.up.expect[f.name].flags & F_QUIC_PRIMARY, f"{f.name}: the oracle reads its CID")
        for f in self.select(("quic-unroutable",)):
            self.assertFalse(self.up.expect[f.name].flags & F_QUIC_PRIMARY, f"{f.name}: routed by the 4-tuple")
        # The CID, not the 4-tuple, chose: most of these go elsewhere than their 4-tuple's server would.
        world = self.up.world
        elsewhere = 0
        for f in by_cid:
            e = self.up.expect[f.name]
            _, _, tuple_serving = world.views["web4"].primary_serving(e.bucket)
            elsewhere += e.serving != tuple_serving
        self.assertGreaterEqual(elsewhere, len(by_cid) // 3, "coverage: CIDs that outrank the 4-tuple")
        # A CID naming a server that is down in the down run (2) goes by the 4-tuple there.
        moved = [f for f in by_cid if self.up.expect[f.name].primary == 2]
        self.assertGreaterEqual(len(moved), 3, "coverage: CIDs naming the server that goes down")
        for f in moved:
            self.assertNotEqual(self.down.expect[f.name].serving, 2, f.name)

    def test_pool_without_backends_drops_no_server(self):
        fixtures = self.select(("empty",))
        for f in fixtures:
            self.assertIsNone(self.up.expect[f.name].serving)
            self.assertNotIn(f.name, self.up.frame)
        self.assertEqual(self.up_run.stats["drops"]["no_server"], len(fixtures))

    def test_primary_down_fails_over(self):
        """--down: the same packets go to the first operational server of the ordering, marked FAILOVER,
        with the primary's ID and the same session hash and pool digest."""
        moved = {"web4": 0, "web6": 0, "tiny": 0}
        for f in self.fixtures:
            up, down = self.up.expect[f.name], self.down.expect[f.name]
            if up is None or not up.forwarded or up.primary not in self.down.world.down:
                continue
            with self.subTest(fixture=f.name):
                self.assertEqual(down.primary, up.primary)
                self.assertEqual(down.serving, next(s for s in up.ordering if s in self.down.world.views[
                    up.vip["pool"]].operational))
                self.assertNotEqual(down.serving, up.primary)
                self.assertEqual(self.down.problems(f), [])
                if up.vip["method"] == "gue" and up.serving == up.primary:
                    a = self.up.frame[f.name][-len(f.inner) - 24:-len(f.inner)]
                    b = self.down.frame[f.name][-len(f.inner) - 24:-len(f.inner)]
                    quic = up.flags & F_QUIC_PRIMARY  # the CID named the server that went down
                    self.assertEqual((a[3], b[3]), (quic, quic | F_FAILOVER), "FAILOVER flag")
                    self.assertEqual(a[4:20], b[4:20], "primary_id, session_hash, pool_digest")
                moved[up.vip["pool"]] += 1
        self.assertGreaterEqual(moved["web4"], 20, "coverage: web4 flows whose primary is down")
        self.assertGreaterEqual(moved["web6"], 10, "coverage: web6 flows whose primary is down")
        self.assertEqual(moved["tiny"], len(self.select(("tiny",))), "all of tiny's flows")

    def test_primary_down_draining_server_takes_what_nothing_else_can(self):
        for f in self.select(("tiny",)):
            self.assertEqual(self.down.expect[f.name].serving, 22)
            self.assertEqual(self.up.expect[f.name].serving, 21)
        self.assertEqual(self.backend_stats(self.down_run, "tiny", 22)["packets"], len(self.select(("tiny",))))

    def test_primary_down_every_packet(self):
        self.check_fixtures([f for f in self.fixtures if f.verdict == "vip"], self.down)
        self.assertEqual(self.down.owners, [f.name for f in self.down.forwarded()])

    # ---------------------------------------------------------------- statistics

    def backend_stats(self, run, pool, bid):
        return next(b for b in run.stats["backends"] if b["pool"] == pool and b["id"] == bid)

    def check_counters(self, outcome, names=None):
        counters, _, _, _ = outcome.expected_stats()
        got = outcome.run.stats["counters"]
        names = names or list(counters)
        self.assertEqual(first_diff({k: got.get(k) for k in names}, {k: counters[k] for k in names}), {},
                         "counter: (got, want)")

    def check_drops(self, outcome):
        _, drops, _, _ = outcome.expected_stats()
        got = outcome.run.stats["drops"]
        for name in drops:
            self.assertIn(name, got, f"drop reason {name} missing from the statistics")
        want = {k: drops.get(k, 0) for k in got}
        self.assertEqual(first_diff(got, want), {}, "drop reason: (got, want)")

    def check_vips_backends(self, outcome):
        w = outcome.world
        _, _, vips, backends = outcome.expected_stats()
        got_vips = outcome.run.stats["vips"]
        self.assertEqual(len(got_vips), len(w.vips))
        for i, (v, g) in enumerate(zip(w.vips, got_vips)):
            with self.subTest(vip=i):
                self.assertIn(str(ipaddress.ip_address(v["address"])), g["vip"])
                self.assertTrue(g["vip"].endswith(":%d/%s" % (v["port"], "tcp" if v["proto"] == 6 else "udp")),
                                g["vip"])
                self.assertEqual(g["pool"], v["pool"])
                self.assertEqual((g["packets"], g["bytes"]), tuple(vips[i]), g["vip"])
        got_b = {(b["pool"], b["id"]): b for b in outcome.run.stats["backends"]}
        self.assertEqual(set(got_b), set(backends))
        for key, (packets, nbytes) in backends.items():
            with self.subTest(backend=key):
                b = got_b[key]
                cb = w.backend(*key)
                self.assertEqual(b["address"], str(ipaddress.ip_address(cb["address"])))
                operational = cb.get("state", "enabled") != "disabled" and key[1] not in w.down
                self.assertEqual(b["operational"], operational)
                self.assertEqual((b["packets"], b["bytes"]), (packets, nbytes))

    def test_stats_counters(self):
        self.check_counters(self.up)

    def test_stats_drop_reasons(self):
        self.check_drops(self.up)

    def test_stats_vips_and_backends(self):
        self.check_vips_backends(self.up)

    def test_stats_primary_down(self):
        self.check_counters(self.down)
        self.check_drops(self.down)
        self.check_vips_backends(self.down)
        self.assertGreater(self.down_run.stats["counters"]["failovers"], self.up_run.stats["counters"]["failovers"])

    def test_conn_table_counts_later_packets_of_a_flow(self):
        """conn_hits counts the 2nd and later packets of each flow (ICMP errors and later fragments included),
        conn_misses the first; VIPs with conn_table = false count neither."""
        counters, _, _, _ = self.up.expected_stats()
        self.assertGreater(counters["conn_hits"], 100, "coverage: flows of several packets")
        noconn = self.select(("noconn",))
        self.assertGreater(len(noconn), len({f.flow for f in noconn}), "coverage: repeated packets")
        self.check_counters(self.up, ["conn_hits", "conn_misses", "conn_evictions", "conn_stale"])

    # ---------------------------------------------------------------- malformed and non-VIP, one by one

    def test_each_dropped_packet_alone_counts_its_exact_reason(self):
        drops = [f for f in self.fixtures if f.verdict != "vip"]
        self.assertGreater(len(drops), 60)

        def one(f):
            return f, replay(self.tmp.name, "drop-" + f.name, self.config, [f.frame])

        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(one, drops))
        for f, run in results:
            with self.subTest(fixture=f.name, desc=f.desc):
                self.assertEqual(run.rc, 0, run.stderr[-2000:])
                nonzero = {k: v for k, v in run.stats["drops"].items() if v}
                self.assertEqual(nonzero, {f.verdict: 1}, f"{f.name}: {f.desc}")
                self.assertEqual(run.stats["counters"]["rx_packets"], 1)
                self.assertEqual(run.stats["counters"]["tx_packets"], 0)
                self.assertEqual(run.frames, [])


# ======================================================================== outer-header settings

class ConfiguredDataplaneTest(unittest.TestCase):
    """[dataplane] source_v4, source_v6, gateway_mac and hop_budget set: the outer headers follow them; a
    backend's own mac still wins over gateway_mac."""

    def test_sources_gateway_mac_and_hop_budget(self):
        with tempfile.TemporaryDirectory(prefix="dataplane-test-") as tmp:
            config = os.path.join(tmp, "understudy.toml")
            with open(config, "w") as f:
                f.write(config_text(CONFIGURED))
            fixtures = fx.configured_fixtures()
            run = replay(tmp, "configured", config, [f.frame for f in fixtures])
            self.assertEqual(run.rc, 0, run.stderr[-3000:])
            outcome = Outcome(World(config), fixtures, run)
            self.assertEqual(outcome.world.hop_budget, 5)
            for f in fixtures:
                with self.subTest(fixture=f.name):
                    problems = outcome.problems(f)
                    self.assertEqual(problems, [], "\n  ".join(problems))
            macs = {outcome.expect[f.name].dst_mac for f in fixtures}
            self.assertIn("02:00:00:00:00:fe", macs, "coverage: gateway_mac")
            self.assertTrue(macs & {"02:aa:bb:cc:dd:04", "02:aa:bb:cc:dd:0d"}, "coverage: a backend's own mac")
            self.assertEqual(outcome.owners, [f.name for f in outcome.forwarded()])


# ======================================================================== the MTU

def check_too_big(f, frame, mtu, port_mac):
    """One ICMP "fragmentation needed" (RFC 792, 1191) or ICMPv6 "packet too big" (RFC 4443) answer to
    fixture f, field by field; mtu is what the MTU field must say. Returns the mismatches."""
    errs = []

    def eq(field, got, want):
        if got != want:
            errs.append(f"{field}: got {got!r}, want {want!r}")

    inner = f.inner
    v6 = inner[0] >> 4 == 6
    # RFC 1812 4.3.2.3: as much of the packet as keeps the ICMP datagram within 576 bytes; RFC 4443 2.4 (c):
    # as much as fits the IPv6 minimum MTU, 1280.
    quote = min(len(inner), 1280 - 48 if v6 else 576 - 28)
    ip_len = 40 if v6 else 20
    eq("frame length", len(frame), 14 + ip_len + 8 + quote)
    if len(frame) < 14 + ip_len + 8:
        return errs
    eq("eth.dst (the sender's MAC)", mac_text(frame[0:6]), mac_text(f.frame[6:12]))
    eq("eth.src", mac_text(frame[6:12]), port_mac)
    eq("eth.type (untagged)", be16(frame[12:14]), 0x86dd if v6 else 0x0800)
    ip = frame[14:14 + ip_len]
    icmp = frame[14 + ip_len:]
    if not v6:
        eq("ipv4.version/ihl", ip[0], 0x45)
        eq("ipv4.total_length", be16(ip[2:4]), 28 + quote)
        if be16(ip[2:4]) > 576:
            errs.append("ipv4.total_length over 576")
        eq("ipv4.flags+offset (DF, not a fragment)", be16(ip[6:8]), 0x4000)
        eq("ipv4.ttl", ip[8], 64)
        eq("ipv4.protocol", ip[9], 1)
        eq("ipv4.header_checksum valid", ones_sum(ip), 0xffff)
        eq("ipv4.src (the VIP the packet went to)", ip[12:16], inner[16:20])
        eq("ipv4.dst (the packet's source)", ip[16:20], inner[12:16])
        eq("icmp.type", icmp[0], 3)
        eq("icmp.code (fragmentation needed and DF set)", icmp[1], 4)
        eq("icmp.checksum valid", ones_sum(icmp), 0xffff)
        eq("icmp.unused", icmp[4:6], b"\x00\x00")
        eq("icmp.next_hop_mtu", be16(icmp[6:8]), mtu)
    else:
        vtf = be32(ip[0:4])
        eq("ipv6.version", vtf >> 28, 6)
        eq("ipv6.payload_length", be16(ip[4:6]), 8 + quote)
        eq("ipv6.next_header", ip[6], 58)
        eq("ipv6.hop_limit", ip[7], 64)
        eq("ipv6.src (the VIP the packet went to)", ip[8:24], inner[24:40])
        eq("ipv6.dst (the packet's source)", ip[24:40], inner[8:24])
        pseudo = ip[8:24] + ip[24:40] + struct.pack("!IxxxB", len(icmp), 58)
        eq("icmpv6.checksum valid (pseudo-header)", ones_sum(pseudo + icmp), 0xffff)
        eq("icmpv6.type (packet too big)", icmp[0], 2)
        eq("icmpv6.code", icmp[1], 0)
        eq("icmpv6.mtu (at least 1280)", be32(icmp[4:8]), max(1280, mtu))
    eq("quoted packet", icmp[8:], inner[:quote])
    # scapy's reading of the same frame: the sender's stack matches the error to its socket by the quote.
    from scapy.layers.l2 import Ether
    from scapy.layers.inet import IPerror, TCPerror, UDPerror
    from scapy.layers.inet6 import IPerror6
    p = Ether(frame)
    q = p[IPerror6] if v6 else p[IPerror]
    src, sport, dst, dport, proto = f.flow
    eq("scapy: quoted source", ipaddress.ip_address(q.src), ipaddress.ip_address(src))
    eq("scapy: quoted destination", ipaddress.ip_address(q.dst), ipaddress.ip_address(dst))
    if sport:
        l4 = p[TCPerror] if proto == 6 else p[UDPerror]
        eq("scapy: quoted ports", (l4.sport, l4.dport), (sport, dport))
    return errs


def quote_owner(frame, by_quote):
    """The fixture an ICMP answer quotes."""
    if be16(frame[12:14]) == 0x0800 and frame[23] == 1:
        return by_quote.get(frame[42:])
    if be16(frame[12:14]) == 0x86dd and frame[20] == 58:
        return by_quote.get(frame[62:])
    return None


class MtuTest(unittest.TestCase):
    """[dataplane] mtu (MTU = 1500 here: the default). Packets that fit the MTU once encapsulated go on;
    one byte more and an IPv4 packet with DF, or any IPv6 packet, is answered with ICMP frag-needed / packet
    too big carrying the largest inner size that fits (mtu less the encapsulation's bytes, docs/wire.md); an
    IPv4 packet with DF clear, or an ICMP error, is dropped unanswered."""

    MTU = 1500

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="dataplane-test-")
        cls.config = os.path.join(cls.tmp.name, "understudy.toml")
        mtu = "" if cls.MTU == 1500 else f"mtu = {cls.MTU}"  # 1500: the default, not written
        with open(cls.config, "w") as f:
            f.write(config_text("", mtu))
        cls.fixtures = fx.mtu_fixtures(cls.MTU)
        cls.replayed = replay(cls.tmp.name, "mtu", cls.config, [f.frame for f in cls.fixtures])
        assert cls.replayed.rc == 0, cls.replayed.stderr[-3000:]
        cls.world = World(cls.config)
        assert cls.world.mtu == cls.MTU
        cls.outcome = Outcome(cls.world, cls.fixtures, cls.replayed)
        by_quote = {}
        for f in cls.fixtures:
            v6 = f.inner[0] >> 4 == 6 if f.inner else False
            if f.inner:
                by_quote[f.inner[:min(len(f.inner), 1232 if v6 else 548)]] = f.name
        cls.answers = {}
        for fr in cls.replayed.frames:
            name = quote_owner(fr, by_quote)
            if name:
                cls.answers.setdefault(name, []).append(fr)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def of(self, verdict):
        chosen = [f for f in self.fixtures if f.verdict == verdict]
        self.assertTrue(chosen, verdict)
        return chosen

    def test_packets_that_fit_are_forwarded(self):
        for f in self.of("vip"):
            with self.subTest(fixture=f.name, desc=f.desc):
                problems = self.outcome.problems(f)
                self.assertEqual(problems, [], "\n  ".join(problems))
                self.assertNotIn(f.name, self.answers)

    def test_too_big_is_answered_with_the_mtu_that_fits(self):
        answered = self.of("too_big")
        self.assertGreaterEqual(len(answered), 15)
        for f in answered:
            with self.subTest(fixture=f.name, desc=f.desc):
                frames = self.answers.get(f.name, [])
                self.assertEqual(len(frames), 1, "one answer")
                self.assertNotIn(f.name, self.outcome.frame, "not forwarded as well")
                problems = check_too_big(f, frames[0], fx.limit(self.MTU, f.vip[0]), fx.LB_MAC)
                self.assertEqual(problems, [], "\n  ".join(problems))
        families = {f.inner[0] >> 4 for f in answered}
        self.assertEqual(families, {4, 6}, "coverage: ICMP and ICMPv6")

    def test_df_clear_and_icmp_errors_are_dropped_unanswered(self):
        for verdict in ("too_big_df_clear", "too_big_icmp_error"):
            for f in self.of(verdict):
                with self.subTest(fixture=f.name, desc=f.desc):
                    self.assertNotIn(f.name, self.answers)
                    self.assertNotIn(f.name, self.outcome.frame)
        self.assertEqual(len(self.replayed.frames), len(self.of("vip")) + len(self.of("too_big")), "nothing else sent")

    def test_counters(self):
        drops = {k: v for k, v in self.replayed.stats["drops"].items() if v}
        want = {}
        for f in self.fixtures:
            if f.verdict != "vip":
                want[f.verdict] = want.get(f.verdict, 0) + 1
        self.assertEqual(drops, want)
        c = self.replayed.stats["counters"]
        self.assertEqual(c["icmp_too_big_sent"], len(self.of("too_big")))
        self.assertEqual(c["tx_packets"], len(self.of("vip")))
        self.assertEqual(c["rx_packets"], len(self.fixtures))


class JumboMtuTest(MtuTest):
    """The same at mtu = 9000: jumbo frames are received whole (the mbuf data room follows the MTU)."""

    MTU = 9000


class SmallMtuTest(unittest.TestCase):
    def test_ipv6_packet_too_big_never_says_less_than_1280(self):
        """mtu = 1300: gue over IPv6 leaves 1224 bytes, less than IPv6's minimum MTU; packet-too-big says
        1280 (RFC 8200 5: every link carries 1280), IPv4's frag-needed says what fits (1244)."""
        with tempfile.TemporaryDirectory(prefix="dataplane-test-") as tmp:
            config = os.path.join(tmp, "understudy.toml")
            with open(config, "w") as f:
                f.write(config_text("", "mtu = 1300"))
            b = fx.Builder()
            fixtures = []
            for i, (dst, src) in enumerate(((fx.VIP6, "2001:db8:c:9::1"), (fx.VIP4, "198.51.100.99"))):
                ip = fx.sized(b, src, 32000 + i, dst, 80, 1300)
                fixtures.append(fx.Fixture("small-%d" % i, "", fx.l2(fx.ethertype_of(ip)) + ip, "too_big", ip,
                                           (src, 32000 + i, dst, 80, 6), (dst, 80, 6)))
            run = replay(tmp, "small", config, [f.frame for f in fixtures])
            self.assertEqual(run.rc, 0, run.stderr[-2000:])
            self.assertEqual(len(run.frames), 2)
            self.assertEqual(fx.limit(1300, fx.VIP6), 1224)
            for f, fr in zip(fixtures, run.frames):
                problems = check_too_big(f, fr, fx.limit(1300, f.vip[0]), fx.LB_MAC)
                self.assertEqual(problems, [], "\n  ".join(problems))
            self.assertEqual(be32(run.frames[0][14 + 40 + 4:14 + 40 + 8]), 1280)
            self.assertEqual(be16(run.frames[1][14 + 20 + 6:14 + 20 + 8]), 1244)


class FrameSizeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="dataplane-test-")

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def config(self, name, dataplane="", mtu=""):
        path = os.path.join(self.tmp.name, name + ".toml")
        with open(path, "w") as f:
            f.write(config_text(dataplane, mtu))
        return path

    def test_frame_larger_than_an_mbuf_is_multi_segment(self):
        """At the default MTU an mbuf holds 2,048 bytes: a 3,000-byte frame spans two and is dropped; with
        mtu = 3000 the data room follows the MTU and the same frame is forwarded."""
        b = fx.Builder()
        ip = fx.sized(b, "198.51.100.98", 33000, fx.VIP4_L2, 80, 3000)
        frame = fx.l2(0x0800) + ip
        run = replay(self.tmp.name, "seg", self.config("seg"), [frame])
        self.assertEqual(run.rc, 0, run.stderr[-2000:])
        self.assertEqual({k: v for k, v in run.stats["drops"].items() if v}, {"multi_segment": 1})
        run = replay(self.tmp.name, "seg3000", self.config("seg3000", mtu="mtu = 3000"), [frame])
        self.assertEqual(run.rc, 0, run.stderr[-2000:])
        self.assertEqual([fr[14:] for fr in run.frames], [ip])

    def test_data_room_too_small_for_the_mtu_is_refused(self):
        run = replay(self.tmp.name, "room", self.config("room", "mbuf_data_room = 4096", "mtu = 9000"), [])
        self.assertEqual(run.rc, 2)
        self.assertIn("dataplane.mbuf_data_room", run.stderr)
        self.assertIn("9022", run.stderr)

    def test_mtu_out_of_range_is_refused(self):
        for mtu in (1000, 20000):
            run = replay(self.tmp.name, "range", self.config("range", mtu=f"mtu = {mtu}"), [])
            self.assertEqual(run.rc, 2, mtu)
            self.assertIn("dataplane.mtu", run.stderr)


class IcmpRateTest(unittest.TestCase):
    """[dataplane] icmp_rate: answers per second per worker, with a burst of as many. 20 oversize packets in
    one capture (handled in well under a second) get at most `icmp_rate` answers; the rest are counted as
    icmp_rate_limited."""

    N = 20

    def run_with(self, rate):
        with tempfile.TemporaryDirectory(prefix="dataplane-test-") as tmp:
            config = os.path.join(tmp, "understudy.toml")
            with open(config, "w") as f:
                f.write(config_text(f"icmp_rate = {rate}", ""))
            fixtures = fx.oversize_fixtures(self.N)
            run = replay(tmp, "rate", config, [f.frame for f in fixtures])
            self.assertEqual(run.rc, 0, run.stderr[-2000:])
            return fixtures, run

    def test_answers_within_the_rate(self):
        fixtures, run = self.run_with(3)
        answers = len(run.frames)
        self.assertGreaterEqual(answers, 1)
        self.assertLessEqual(answers, 3)
        drops = run.stats["drops"]
        self.assertEqual(drops["too_big"], answers)
        self.assertEqual(run.stats["counters"]["icmp_too_big_sent"], answers)
        self.assertEqual(drops["icmp_rate_limited"], self.N - answers)
        by_quote = {f.inner[:548]: f.name for f in fixtures}
        for fr in run.frames:
            f = next(x for x in fixtures if x.name == quote_owner(fr, by_quote))
            self.assertEqual(check_too_big(f, fr, 1444, fx.LB_MAC), [])

    def test_rate_0_answers_nothing(self):
        _, run = self.run_with(0)
        self.assertEqual(run.frames, [])
        self.assertEqual(run.stats["drops"]["icmp_rate_limited"], self.N)
        self.assertEqual(run.stats["drops"]["too_big"], 0)


class OuterIdentificationTest(unittest.TestCase):
    def test_outer_df_false_counts_identification(self):
        """outer_df = false: outer IPv4 headers without DF, identification a counter that goes up by one per
        packet (replay has one worker) and is never 0; checksums stay right."""
        with tempfile.TemporaryDirectory(prefix="dataplane-test-") as tmp:
            config = os.path.join(tmp, "understudy.toml")
            with open(config, "w") as f:
                f.write(config_text("outer_df = false"))
            fixtures = [f for f in fx.configured_fixtures() if "v4" in f.tags and "cross" not in f.tags]
            self.assertGreaterEqual(len(fixtures), 10)
            run = replay(tmp, "nodf", config, [f.frame for f in fixtures])
            self.assertEqual(run.rc, 0, run.stderr[-2000:])
            outcome = Outcome(World(config), fixtures, run)
            self.assertFalse(outcome.world.outer_df)
            for f in fixtures:
                problems = outcome.problems(f)
                self.assertEqual(problems, [], f"{f.name}:\n  " + "\n  ".join(problems))
            ids = [be16(fr[18:20]) for fr in run.frames]
            self.assertEqual(len(ids), len(fixtures))
            self.assertNotIn(0, ids)
            self.assertEqual([b - a for a, b in zip(ids, ids[1:])], [1] * (len(ids) - 1), ids)


class PortMacTest(unittest.TestCase):
    def test_port_mac_option_takes_a_capture_from_another_host(self):
        """replay --port-mac: frames captured on the way to a balancer with another MAC are for this port;
        without it they are not_for_us."""
        with tempfile.TemporaryDirectory(prefix="dataplane-test-") as tmp:
            config = os.path.join(tmp, "understudy.toml")
            with open(config, "w") as f:
                f.write(config_text())
            fixtures = fx.configured_fixtures()[:6]
            other = fx.mac_bytes(fx.OTHER_MAC)
            frames = [other + f.frame[6:] for f in fixtures]
            run = replay(tmp, "other", config, frames)
            self.assertEqual(run.rc, 0, run.stderr[-2000:])
            self.assertEqual(run.frames, [])
            self.assertEqual(run.stats["drops"]["not_for_us"], len(frames))
            run = replay(tmp, "other2", config, frames, extra=("--port-mac", fx.OTHER_MAC))
            self.assertEqual(run.rc, 0, run.stderr[-2000:])
            self.assertEqual(len(run.frames), len(frames))
            self.assertEqual({mac_text(fr[6:12]) for fr in run.frames}, {fx.OTHER_MAC})
            run = replay(tmp, "bad", config, frames, extra=("--port-mac", "01:00:5e:00:00:01"))
            self.assertEqual(run.rc, 2)
            self.assertIn("--port-mac", run.stderr)


# ======================================================================== UDP checksum that sums to zero

def gue_udp_sum(world, e, inner):
    """The ones-complement sum over IPv6 pseudo-header, UDP header (checksum 0), GUE and inner packet that a
    correct sender computes for e, from docs/wire.md alone."""
    src = ipaddress.ip_address(world.source_v6).packed
    dst = ipaddress.ip_address(e.backend["address"]).packed
    length = 8 + 28 + len(inner)
    udp = struct.pack("!HHHH", 0xc000 | ((e.session_hash >> 32) & 0x3fff), GUE_PORT, length, 0)
    gue = bytes([0x06, 41 if inner[0] >> 4 == 6 else 4, 0, 0])
    pd = struct.pack("!HBBIQIB3x", 0x5553, 1, e.flags, e.primary, e.session_hash, e.pool_digest, world.hop_budget)
    return ones_sum(src + dst + struct.pack("!IxxxB", length, 17) + udp + gue + pd + inner)


class UdpChecksumTest(unittest.TestCase):
    def test_ipv6_udp_checksum_that_computes_to_zero_is_sent_as_ffff(self):
        """RFC 768/8200: over IPv6 a computed UDP checksum of 0 goes on the wire as 0xffff. Two payload bytes of
        the inner packet are chosen so that the outer checksum computes to 0 (the balancer does not look at the
        inner TCP checksum, it forwards the packet unchanged)."""
        with tempfile.TemporaryDirectory(prefix="dataplane-test-") as tmp:
            config = os.path.join(tmp, "understudy.toml")
            with open(config, "w") as f:
                f.write(config_text())
            world = World(config)
            b = fx.Builder()
            src, sport = "2001:db8:c:7::1", 47000
            inner = bytearray(b.tcp(src, sport, fx.VIP6, 80, flags="PA", payload=b"\x00\x00zero-sum"))
            f = fx.Fixture("csum0", "outer UDP checksum computes to 0", b"", "vip", b"", (src, sport, fx.VIP6, 80, 6),
                           (fx.VIP6, 80, 6))
            e = world.expect(f)
            self.assertEqual(family(e.backend["address"]), 6)
            word = 0xffff - gue_udp_sum(world, e, bytes(inner))
            inner[60:62] = struct.pack("!H", word)
            self.assertEqual(gue_udp_sum(world, e, bytes(inner)), 0xffff, "the checksum now computes to 0")
            f.inner = bytes(inner)
            f.frame = fx.l2(0x86dd) + f.inner
            run = replay(tmp, "csum0", config, [f.frame])
            self.assertEqual(run.rc, 0, run.stderr[-2000:])
            self.assertEqual(len(run.frames), 1)
            frame = run.frames[0]
            self.assertEqual(frame[14 + 40 + 6:14 + 40 + 8], b"\xff\xff")
            self.assertEqual(check_frame(world, f, world.expect(f), frame, mac_text(frame[6:12])), [])


# ======================================================================== capture files

class CaptureFileTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="dataplane-test-")
        cls.config = os.path.join(cls.tmp.name, "understudy.toml")
        with open(cls.config, "w") as f:
            f.write(config_text())

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def path(self, name, data):
        p = os.path.join(self.tmp.name, name)
        with open(p, "wb") as f:
            f.write(data)
        return p

    def test_empty_capture_writes_nothing(self):
        run = replay(self.tmp.name, "empty", self.config, [])
        self.assertEqual(run.rc, 0, run.stderr)
        self.assertEqual(run.frames, [])
        self.assertEqual(run.stats["counters"]["rx_packets"], 0)
        self.assertEqual(run.stats["counters"]["tx_packets"], 0)

    def test_not_a_pcap_file_exits_2(self):
        src = self.path("garbage.pcap", b"this is not a capture, just some text\n" * 20)
        run = replay_file(self.config, src, os.path.join(self.tmp.name, "garbage.out.pcap"))
        self.assertEqual(run.rc, 2)
        self.assertIn("not a capture", run.stderr)
        self.assertIn("garbage.pcap", run.stderr)

    @staticmethod
    def pcapng(frames):
        """A pcapng file written here (section header, one Ethernet interface, an enhanced packet block per
        frame), independent of libpcap."""
        def block(kind, body):
            body += b"\0" * (-len(body) % 4)
            return struct.pack("<II", kind, len(body) + 12) + body + struct.pack("<I", len(body) + 12)
        out = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
        out += block(1, struct.pack("<HHI", 1, 0, 65535))
        for i, f in enumerate(frames):
            out += block(6, struct.pack("<IIIII", 0, 0, i, len(f), len(f)) + f)
        return out

    def test_pcapng_is_replayed_like_pcap(self):
        frames = [f.frame for f in fx.configured_fixtures()[:6]]
        src = self.path("capture.pcapng", self.pcapng(frames))
        ng = replay_file(self.config, src, os.path.join(self.tmp.name, "ng.out.pcap"))
        classic = replay(self.tmp.name, "classic", self.config, frames)
        self.assertEqual(ng.rc, 0, ng.stderr)
        self.assertEqual(ng.stats["counters"]["rx_packets"], 6)
        self.assertGreater(len(classic.frames), 0)
        self.assertEqual(ng.frames, classic.frames)

    def test_oversized_record_is_refused_at_once(self):
        """caplen 262,145 (past what libpcap reads): an error naming the record, not a replay that polls forever."""
        good = fx.configured_fixtures()[0].frame
        data = struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 262144, 1)
        data += struct.pack("<IIII", 0, 0, len(good), len(good)) + good
        data += struct.pack("<IIII", 0, 0, 262145, 262145) + b"\0" * 262145
        src = self.path("huge.pcap", data)
        run = replay_file(self.config, src, os.path.join(self.tmp.name, "huge.out.pcap"), timeout=8)
        self.assertEqual(run.rc, 2, run.stderr)
        self.assertIn("record 2", run.stderr)

    def test_output_that_is_the_input_is_refused_and_the_input_kept(self):
        src = os.path.join(self.tmp.name, "keep.pcap")
        fx.write_pcap(src, [f.frame for f in fx.configured_fixtures()[:3]])
        with open(src, "rb") as f:
            before = f.read()
        os.makedirs(os.path.join(self.tmp.name, "d"), exist_ok=True)
        for out in (src, os.path.join(self.tmp.name, "d", "..", "keep.pcap")):
            run = replay_file(self.config, src, out)
            self.assertEqual(run.rc, 2, out)
            self.assertIn("is the input", run.stderr)
            with open(src, "rb") as f:
                self.assertEqual(f.read(), before, "the input was touched")

    def test_write_errors_exit_1(self):
        src = os.path.join(self.tmp.name, "full.pcap")
        fx.write_pcap(src, [f.frame for f in fx.configured_fixtures()[:3]])
        run = replay_file(self.config, src, "/dev/full")
        self.assertEqual(run.rc, 1, run.stdout + run.stderr)
        self.assertIn("No space left", run.stderr)

    def test_shorter_than_a_pcap_header_exits_2(self):
        src = self.path("short.pcap", b"\xd4\xc3\xb2\xa1\x02\x00")
        run = replay_file(self.config, src, os.path.join(self.tmp.name, "short.out.pcap"))
        self.assertEqual(run.rc, 2)
        self.assertIn("short.pcap", run.stderr)

    def test_missing_capture_exits_2(self):
        run = replay_file(self.config, os.path.join(self.tmp.name, "nonexistent.pcap"),
                          os.path.join(self.tmp.name, "missing.out.pcap"))
        self.assertEqual(run.rc, 2)
        self.assertIn("nonexistent.pcap", run.stderr)

    def test_truncated_last_record_exits_2(self):
        """A capture cut inside its last packet's data (a copy that ran out of disk) is refused, not
        replayed forever waiting for a packet the PMD never delivers."""
        src = os.path.join(self.tmp.name, "whole.pcap")
        frames = [f.frame for f in fx.configured_fixtures()[:3]]
        fx.write_pcap(src, frames)
        with open(src, "rb") as f:
            data = f.read()
        cut = self.path("cut.pcap", data[:-10])
        run = replay_file(self.config, cut, os.path.join(self.tmp.name, "cut.out.pcap"), timeout=8)
        self.assertEqual(run.rc, 2, "a truncated capture must be refused")
        self.assertIn("truncated", run.stderr)

    def test_truncated_last_record_header_exits_2(self):
        """Cut inside the last record's 16-byte header: refused like data cut short, not dropped silently."""
        src = os.path.join(self.tmp.name, "whole2.pcap")
        frames = [f.frame for f in fx.configured_fixtures()[:3]]
        fx.write_pcap(src, frames)
        with open(src, "rb") as f:
            data = f.read()
        cut = self.path("cut-header.pcap", data[:-(len(frames[-1]) + 6)])
        run = replay_file(self.config, cut, os.path.join(self.tmp.name, "cut2.out.pcap"), timeout=8)
        self.assertEqual(run.rc, 2, "a truncated record header must be refused")
        self.assertIn("truncated", run.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
