#!/usr/bin/python3
"""Packet fixtures of the data-plane tests: crafted frames, each with a description and its expected verdict.

A fixture's verdict is either "vip" (the frame belongs to the VIP named by `vip`, with the session key fields
in `flow`; where it goes and how it is encapsulated follows from the config and the ordering oracle) or the
name of the drop reason it must be counted under (src/common/us_wire.h). For "vip" fixtures `inner` is the
IP packet the balancer must forward unchanged: the frame without its Ethernet header, VLAN tags and padding.

The VIP addresses below are those of the test config that tests/dataplane/test_replay.py writes. Nothing
here comes from the code under test: the expected flow of every packet is written down by hand from
docs/wire.md, docs/ordering.md and the parsing rules.

  make_fixtures.py OUTDIR     writes OUTDIR/fixtures.pcap and OUTDIR/fixtures.json (name, description,
                              verdict, flow, vip, tags, frame as hex) for a look with tcpdump or wireshark
"""
import json
import os
import random
import struct
import sys
from dataclasses import dataclass

from scapy.config import conf
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_Router_Alert, IPOption_RR
from scapy.layers.inet6 import (ICMPv6DestUnreach, ICMPv6EchoRequest, ICMPv6ND_NS, ICMPv6PacketTooBig, IPv6,
                                IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting,
                                PadN)
from scapy.packet import Raw

conf.verb = 0

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
import quic_lb_ref  # noqa: E402

TCP_, UDP_, ICMP_, ICMP6_ = 6, 17, 1, 58

# The test world (test_replay.py builds its config from these).
VIP4 = "192.0.2.10"         # gue, pool web4: 80/tcp (flow), 443/tcp (affinity client), 53/udp
VIP6 = "2001:db8::10"       # gue, pool web6: 80/tcp, 53/udp
VIP4_IPIP = "192.0.2.20"    # ipip, pool web4: 80/tcp
VIP6_IPIP = "2001:db8::20"  # ipip, pool web6: 80/tcp
VIP4_L2 = "192.0.2.30"      # l2dsr, pool web4: 80/tcp
VIP6_L2 = "2001:db8::30"    # l2dsr, pool web6: 80/tcp
VIP6_X = "2001:db8::40"     # gue across families: IPv6 VIP on the IPv4 pool web4, 80/tcp
VIP4_X = "192.0.2.40"       # gue across families: IPv4 VIP on the IPv6 pool web6, 80/tcp
VIP4_EMPTY = "192.0.2.50"   # gue, pool empty (no backends): 80/tcp
VIP4_NOCONN = "192.0.2.60"  # gue, pool web4, conn_table = false: 8080/udp
VIP4_TINY = "192.0.2.70"    # gue, pool tiny (one enabled server, one draining): 80/tcp
VIP4_QUIC = "192.0.2.80"    # gue, pool web4, conn_table = false, QUIC-LB (QUIC_LB below): 443/udp

# The QUIC VIP's QUIC-LB configurations (docs/quic-lb.md), by codepoint: (server ID length, nonce length, key).
# Server IDs are the backends' ids, big-endian (the default). test_replay.py writes them into its config.
QUIC_KEY = "8f95f09245765f80256934e50c66207f"
QUIC_LB = {1: (2, 8, QUIC_KEY), 3: (1, 6, None), 5: (4, 12, QUIC_KEY)}  # four-pass, plaintext, single pass

# The balancer's port, as the clients' router sees it: the MAC of replay's net_pcap port (DPDK's net_pcap
# names its first device 02:70:63:61:70:00, "pcap" and the device index). Frames to another unicast MAC
# are not for the balancer: the port is promiscuous, the worker drops them as not_for_us.
LB_MAC = "02:70:63:61:70:00"
OTHER_MAC = "02:00:00:00:bb:01"    # another host on the clients' segment
ROUTER_MAC = "02:00:00:00:cc:01"   # the router in front of the balancer
ROUTER4 = "203.0.113.254"          # sends ICMP errors about the balancer's backends' replies
ROUTER6 = "2001:db8:ffff:ff::1"


@dataclass
class Fixture:
    name: str
    desc: str
    frame: bytes
    verdict: str                  # "vip" or a drop reason
    inner: bytes = b""            # the IP packet that must come out unchanged ("vip" only)
    flow: tuple = None            # (src, sport, dst, dport, proto): session key fields, before affinity
    vip: tuple = None             # (address, port, proto) of the VIP it must be counted under
    tags: frozenset = frozenset()
    group: str = ""               # fixtures of one group must reach one server with one session hash


def mac_bytes(text):
    return bytes(int(x, 16) for x in text.split(":"))


def l2(ethertype, vlans=(), dst=LB_MAC):
    """Ethernet header, with the given (tpid, vid) tags, outermost first."""
    out = mac_bytes(dst) + mac_bytes(ROUTER_MAC)
    for tpid, vid in vlans:
        out += struct.pack("!HH", tpid, vid & 0x0fff)
    return out + struct.pack("!H", ethertype)


def ethertype_of(ip):
    return 0x86dd if ip[0] >> 4 == 6 else 0x0800


QINQ = ((0x88a8, 100), (0x8100, 10))
DOT1Q = ((0x8100, 10),)


class Builder:
    def __init__(self):
        self.items = []
        self.ipid = 0x100
        self.seq = 1000

    def next_id(self):
        self.ipid += 1
        return self.ipid

    def next_seq(self):
        self.seq += 7919
        return self.seq & 0xffffffff

    # ---------------------------------------------------------------- packet makers (scapy)

    def tcp(self, src, sport, dst, dport, flags="S", payload=b"", tos=0, options=None, ext=(), tcp_options=None,
            df=False):
        if ":" in dst:
            ip = IPv6(src=src, dst=dst, tc=tos, fl=0)
            for h in ext:
                ip = ip / h
        else:
            ip = IP(src=src, dst=dst, tos=tos, id=self.next_id(), options=options or [], flags="DF" if df else 0)
        t = TCP(sport=sport, dport=dport, flags=flags, seq=self.next_seq(), options=tcp_options or [])
        return bytes(ip / t / Raw(payload)) if payload else bytes(ip / t)

    def udp(self, src, sport, dst, dport, payload=b"q", tos=0, ext=(), df=False):
        payload = payload + struct.pack("!I", self.next_seq())  # unique
        if ":" in dst:
            ip = IPv6(src=src, dst=dst, tc=tos)
            for h in ext:
                ip = ip / h
        else:
            ip = IP(src=src, dst=dst, tos=tos, id=self.next_id(), flags="DF" if df else 0)
        return bytes(ip / UDP(sport=sport, dport=dport) / Raw(payload))

    # ---------------------------------------------------------------- recording

    def vip(self, name, desc, ip, flow, vip, tags=(), vlans=(), trailer=None, group=""):
        frame = l2(ethertype_of(ip), vlans) + ip
        if trailer is None:
            trailer = b"\x00" * max(0, 60 - len(frame))  # what a NIC delivers for a short frame
        self.items.append(Fixture(name, desc, frame + trailer, "vip", ip, tuple(flow), tuple(vip),
                                  frozenset(tags), group))

    def drop(self, name, desc, frame, reason, tags=()):
        self.items.append(Fixture(name, desc, bytes(frame), reason, tags=frozenset(tags) | {"drop"}))


def rand_v4(rng, net="198.51.100"):
    return "%s.%d" % (net, rng.randrange(1, 255))


def rand_v6(rng):
    return "2001:db8:c:%x::%x" % (rng.randrange(0x10000), rng.randrange(1, 0x10000))


def flows(b, rng, tag, n, src_fn, vip_addr, port, proto, packets=(1, 3), tags=(), method_tags=()):
    """n random flows to one VIP, each of 1..3 packets (a handshake and some data for TCP)."""
    for i in range(n):
        src, sport = src_fn(rng), rng.randrange(1024, 65536)
        count = rng.randint(*packets)
        for k in range(count):
            if proto == TCP_:
                flags, payload = [("S", b""), ("A", b""), ("PA", b"GET / HTTP/1.1\r\n\r\n")][min(k, 2)]
                tos = rng.choice((0, 0x10, 0xb8, 0x02))  # DSCP and ECN bits, copied to the outer header
                ip = b.tcp(src, sport, vip_addr, port, flags=flags, payload=payload, tos=tos)
            else:
                ip = b.udp(src, sport, vip_addr, port, tos=rng.choice((0, 0x28, 0x01)))
            b.vip("%s-%d-%d" % (tag, i, k), "%s flow %d packet %d" % (tag, i, k), ip,
                  (src, sport, vip_addr, port, proto), (vip_addr, port, proto),
                  tags=set(tags) | set(method_tags) | {"flow"})


# ==================================================================== forwarded traffic

def plain_flows(b):
    rng = random.Random(20240601)
    v4 = ("v4", "gue", "tcp")
    flows(b, rng, "v4-tcp-80", 45, rand_v4, VIP4, 80, TCP_, tags=v4)
    flows(b, rng, "v4-udp-53", 20, rand_v4, VIP4, 53, UDP_, packets=(1, 2), tags=("v4", "gue", "udp"))
    flows(b, rng, "v6-tcp-80", 30, rand_v6, VIP6, 80, TCP_, tags=("v6", "gue", "tcp"))
    flows(b, rng, "v6-udp-53", 15, rand_v6, VIP6, 53, UDP_, packets=(1, 2), tags=("v6", "gue", "udp"))
    flows(b, rng, "ipip-v4", 20, rand_v4, VIP4_IPIP, 80, TCP_, tags=("v4", "ipip", "tcp"))
    flows(b, rng, "ipip-v6", 20, rand_v6, VIP6_IPIP, 80, TCP_, tags=("v6", "ipip", "tcp"))
    flows(b, rng, "l2dsr-v4", 20, rand_v4, VIP4_L2, 80, TCP_, tags=("v4", "l2dsr", "tcp"))
    flows(b, rng, "l2dsr-v6", 20, rand_v6, VIP6_L2, 80, TCP_, tags=("v6", "l2dsr", "tcp"))
    flows(b, rng, "x-v6-on-v4", 12, rand_v6, VIP6_X, 80, TCP_, tags=("v6", "gue", "tcp", "cross"))
    flows(b, rng, "x-v4-on-v6", 12, rand_v4, VIP4_X, 80, TCP_, tags=("v4", "gue", "tcp", "cross"))
    flows(b, rng, "noconn", 6, rand_v4, VIP4_NOCONN, 8080, UDP_, packets=(2, 3), tags=("v4", "gue", "udp", "noconn"))
    flows(b, rng, "tiny", 10, rand_v4, VIP4_TINY, 80, TCP_, packets=(1, 1), tags=("v4", "gue", "tcp", "tiny"))
    flows(b, rng, "empty", 3, rand_v4, VIP4_EMPTY, 80, TCP_, packets=(1, 2), tags=("v4", "gue", "tcp", "empty"))


def quic_configs():
    return {cp: quic_lb_ref.Config(cp, sid, nonce, bytes.fromhex(key) if key else None)
            for cp, (sid, nonce, key) in QUIC_LB.items()}


def quic(b):
    """QUIC packets to the QUIC-LB VIP: short headers (1-RTT) and Handshake packets whose destination CID
    names a backend of web4 (enabled, draining, weight 0, disabled, and down in the down run), and ones routed
    by the 4-tuple: codepoint 7, a server ID of no backend, an Initial (the client chose its DCID), a packet
    too short to hold a CID. The CIDs are minted by tools/quic_lb_ref.py."""
    rng = random.Random(443)
    configs = quic_configs()

    def packet(name, payload, tags=()):
        src, sport = rand_v4(rng), rng.randrange(1024, 65536)
        ip = b.udp(src, sport, VIP4_QUIC, 443, payload=payload)
        b.vip(name, "QUIC " + name, ip, (src, sport, VIP4_QUIC, 443, UDP_), (VIP4_QUIC, 443, UDP_),
              tags={"v4", "gue", "udp", "quic"} | set(tags))

    def cid(cp, backend):
        c = configs[cp]
        return quic_lb_ref.encode(c, backend.to_bytes(c.sid_len, "big"), rng.randbytes(c.nonce_len))

    for cp in sorted(configs):
        for backend in (1, 2, 3, 4, 5, 6, 1, 2, 4):
            dcid = cid(cp, backend)
            packet("quic-short-cp%d-b%d-%d" % (cp, backend, rng.randrange(1 << 16)),
                   bytes([0x40 | rng.randrange(64)]) + dcid + rng.randbytes(20))
        dcid = cid(cp, 4)
        # Handshake (v1 type 2) and RFC 9369 v2 Handshake (type 3): the DCID is the server's.
        packet("quic-handshake-v1-cp%d" % cp, bytes([0xE0]) + struct.pack("!IB", 1, len(dcid)) + dcid + b"\0" * 24)
        packet("quic-handshake-v2-cp%d" % cp,
               bytes([0xF0]) + struct.pack("!IB", 0x6b3343cf, len(dcid)) + dcid + b"\0" * 24)
        packet("quic-unknown-sid-cp%d" % cp, bytes([0x41]) + cid(cp, 0x99 if cp == 3 else 99) + rng.randbytes(20),
               tags={"quic-unroutable"})
    packet("quic-codepoint-7", bytes([0x40]) + bytes([0xE0 | 17]) + rng.randbytes(30), tags={"quic-unroutable"})
    packet("quic-unconfigured-codepoint", bytes([0x40]) + bytes([0x00 | 9]) + rng.randbytes(30),
           tags={"quic-unroutable"})
    dcid = cid(1, 1)
    packet("quic-initial", bytes([0xC0]) + struct.pack("!IB", 1, len(dcid)) + dcid + b"\0" * 24,
           tags={"quic-unroutable"})
    packet("quic-short-too-short", bytes([0x40]) + cid(1, 1)[:5], tags={"quic-unroutable"})


def full_size(b):
    src, sport = "198.51.100.200", 40400
    ip = b.tcp(src, sport, VIP4, 80, flags="PA", payload=bytes(range(256)) * 5 + bytes(1460 - 1280))
    assert len(ip) == 1500
    b.vip("v4-1500", "a full-size 1500-byte IPv4 packet", ip, (src, sport, VIP4, 80, TCP_), (VIP4, 80, TCP_),
          tags=("v4", "gue", "tcp", "big"))
    src6 = "2001:db8:c:99::1"
    ip = b.tcp(src6, sport, VIP6, 80, flags="PA", payload=bytes(1440))
    assert len(ip) == 1500
    b.vip("v6-1500", "a full-size 1500-byte IPv6 packet", ip, (src6, sport, VIP6, 80, TCP_), (VIP6, 80, TCP_),
          tags=("v6", "gue", "tcp", "big"))


def padding(b):
    src = "198.51.100.77"
    ip = b.tcp(src, 5555, VIP4, 80, flags="A")
    b.vip("pad-zero", "40-byte IPv4 TCP ACK padded to 60 bytes with zeros", ip, (src, 5555, VIP4, 80, TCP_),
          (VIP4, 80, TCP_), tags=("v4", "gue", "tcp", "padding"), trailer=bytes(6))
    ip = b.tcp(src, 5556, VIP4, 80, flags="A")
    b.vip("pad-junk", "IPv4 TCP ACK followed by 30 bytes of non-zero trailer", ip, (src, 5556, VIP4, 80, TCP_),
          (VIP4, 80, TCP_), tags=("v4", "gue", "tcp", "padding"), trailer=b"\xde\xad\xbe\xef" * 7 + b"\xff\xee")
    src6 = "2001:db8:c:77::7"
    ip = b.udp(src6, 5557, VIP6, 53, payload=b"")
    b.vip("pad-v6", "IPv6 UDP followed by 20 bytes of trailer", ip, (src6, 5557, VIP6, 53, UDP_),
          (VIP6, 53, UDP_), tags=("v6", "gue", "udp", "padding"), trailer=b"\x5a" * 20)
    ip = b.tcp(src, 5558, VIP4_L2, 80, flags="A")
    b.vip("pad-l2dsr", "short l2dsr frame: padding is removed before the new Ethernet header", ip,
          (src, 5558, VIP4_L2, 80, TCP_), (VIP4_L2, 80, TCP_), tags=("v4", "l2dsr", "tcp", "padding"))


def vlans(b):
    cases = [
        ("dot1q-v4", "802.1Q tag 10, IPv4 TCP", DOT1Q, "198.51.100.101", VIP4, 80, TCP_, ("v4", "gue", "tcp")),
        ("qinq-v4", "802.1ad 100 + 802.1Q 10 (QinQ), IPv4 TCP", QINQ, "198.51.100.102", VIP4, 80, TCP_,
         ("v4", "gue", "tcp")),
        ("dot1q-v6", "802.1Q tag 10, IPv6 UDP", DOT1Q, "2001:db8:c:1::101", VIP6, 53, UDP_, ("v6", "gue", "udp")),
        ("qinq-v6", "QinQ, IPv6 TCP", QINQ, "2001:db8:c:1::102", VIP6, 80, TCP_, ("v6", "gue", "tcp")),
        ("qinq-8100-8100", "two 0x8100 tags (old-style QinQ), IPv4 UDP", ((0x8100, 5), (0x8100, 6)),
         "198.51.100.103", VIP4, 53, UDP_, ("v4", "gue", "udp")),
        ("dot1q-ipip", "802.1Q, ipip VIP", DOT1Q, "198.51.100.104", VIP4_IPIP, 80, TCP_, ("v4", "ipip", "tcp")),
        ("qinq-l2dsr-v6", "QinQ, IPv6 l2dsr VIP", QINQ, "2001:db8:c:1::105", VIP6_L2, 80, TCP_,
         ("v6", "l2dsr", "tcp")),
    ]
    for name, desc, vlan_tags, src, dst, port, proto, tags in cases:
        ip = b.tcp(src, 33000, dst, port, flags="S") if proto == TCP_ else b.udp(src, 33000, dst, port)
        b.vip(name, desc, ip, (src, 33000, dst, port, proto), (dst, port, proto), tags=set(tags) | {"vlan"},
              vlans=vlan_tags)


def ip_options(b):
    src = "198.51.100.110"
    ip = b.tcp(src, 41000, VIP4, 80, options=[IPOption_Router_Alert()])
    assert ip[0] == 0x46
    b.vip("v4-opt-ra", "IPv4 with a router-alert option (IHL 6)", ip, (src, 41000, VIP4, 80, TCP_), (VIP4, 80, TCP_),
          tags=("v4", "gue", "tcp", "options"))
    ip = bytes(IP(src=src, dst=VIP4, id=b.next_id(), tos=0xb8, options=[IPOption_RR(routers=["0.0.0.0"] * 9)])
               / UDP(sport=41001, dport=53) / Raw(b"opt"))
    assert ip[0] == 0x4f, hex(ip[0])
    b.vip("v4-opt-max", "IPv4 with the longest header (IHL 15, record route), UDP", ip, (src, 41001, VIP4, 53, UDP_),
          (VIP4, 53, UDP_), tags=("v4", "gue", "udp", "options"))
    ip = b.tcp(src, 41002, VIP4_IPIP, 80, options=[IPOption_Router_Alert()])
    b.vip("v4-opt-ipip", "IPv4 with options through ipip", ip, (src, 41002, VIP4_IPIP, 80, TCP_),
          (VIP4_IPIP, 80, TCP_), tags=("v4", "ipip", "tcp", "options"))
    ip = b.tcp(src, 41003, VIP4, 80, tcp_options=[("MSS", 1460), ("SAckOK", b""), ("WScale", 7), ("NOP", None)])
    b.vip("v4-tcp-opt", "TCP with options (data offset 8)", ip, (src, 41003, VIP4, 80, TCP_), (VIP4, 80, TCP_),
          tags=("v4", "gue", "tcp", "options"))


def ext_headers(b):
    src = "2001:db8:c:2::1"
    cases = [
        ("v6-hbh-tcp", "hop-by-hop options, TCP", [IPv6ExtHdrHopByHop()], TCP_, VIP6, 80),
        ("v6-dst-udp", "destination options, UDP", [IPv6ExtHdrDestOpt()], UDP_, VIP6, 53),
        ("v6-rt-tcp", "routing header (type 4, segments left 0), TCP",
         [IPv6ExtHdrRouting(type=4, segleft=0, addresses=[])], TCP_, VIP6, 80),
        ("v6-hbh-dst-rt-dst-udp", "hop-by-hop, dstopts, routing, dstopts, UDP",
         [IPv6ExtHdrHopByHop(), IPv6ExtHdrDestOpt(), IPv6ExtHdrRouting(type=4, segleft=0, addresses=[]),
          IPv6ExtHdrDestOpt()], UDP_, VIP6, 53),
        ("v6-long-dst-tcp", "a 24-byte destination-options header (hdr ext len 2), TCP",
         [IPv6ExtHdrDestOpt(options=[PadN(optdata=bytes(18))])], TCP_, VIP6, 80),
        ("v6-hbh-ipip", "hop-by-hop then TCP through ipip", [IPv6ExtHdrHopByHop()], TCP_, VIP6_IPIP, 80),
        ("v6-hbh-l2dsr", "hop-by-hop then TCP through l2dsr", [IPv6ExtHdrHopByHop()], TCP_, VIP6_L2, 80),
        ("v6-atomic-frag-tcp", "an atomic fragment header (offset 0, no M): not a fragment, hashed with ports",
         [IPv6ExtHdrFragment(offset=0, m=0, id=0x5eed)], TCP_, VIP6, 80),
        ("v6-hbh-atomic-frag-udp", "hop-by-hop, atomic fragment header, UDP",
         [IPv6ExtHdrHopByHop(), IPv6ExtHdrFragment(offset=0, m=0, id=0x5eee)], UDP_, VIP6, 53),
        ("v6-7-ext", "seven extension headers, then TCP", [IPv6ExtHdrHopByHop()] + [IPv6ExtHdrDestOpt()] * 6,
         TCP_, VIP6, 80),
    ]
    for i, (name, desc, ext, proto, dst, port) in enumerate(cases):
        sport = 42000 + i
        ip = b.tcp(src, sport, dst, port, ext=ext) if proto == TCP_ else b.udp(src, sport, dst, port, ext=ext)
        method = "ipip" if dst == VIP6_IPIP else "l2dsr" if dst == VIP6_L2 else "gue"
        b.vip(name, desc, ip, (src, sport, dst, port, proto), (dst, port, proto),
              tags=("v6", method, "tcp" if proto == TCP_ else "udp", "ext"))


def eight_ext_headers(b):
    """At the documented limit: the parser walks up to 8 extension headers, so a chain of exactly 8 is
    forwarded (longer ones are dropped as bad_ext_header, see malformed())."""
    src = "2001:db8:c:2::8"
    for proto, port in ((TCP_, 80), (UDP_, 53)):
        ext = [IPv6ExtHdrHopByHop()] + [IPv6ExtHdrDestOpt()] * 6 + [IPv6ExtHdrRouting(type=4, segleft=0, addresses=[])]
        ip = b.tcp(src, 42100, VIP6, port, ext=ext) if proto == TCP_ else b.udp(src, 42100, VIP6, port, ext=ext)
        b.vip("v6-8-ext-%s" % ("tcp" if proto == TCP_ else "udp"), "eight extension headers, then %s" % (
            "TCP" if proto == TCP_ else "UDP"), ip, (src, 42100, VIP6, port, proto), (VIP6, port, proto),
              tags=("v6", "gue", "tcp" if proto == TCP_ else "udp", "ext", "limit"))


def affinity(b):
    rng = random.Random(7)
    for c in range(8):
        client = "203.0.113.%d" % (10 + c) if c < 6 else "198.51.100.%d" % (200 + c)
        for k in range(2):
            sport = rng.randrange(1024, 65536)
            ip = b.tcp(client, sport, VIP4, 443, flags="S")
            b.vip("aff-%d-%d" % (c, k), "affinity client: client %d connection %d" % (c, k), ip,
                  (client, sport, VIP4, 443, TCP_), (VIP4, 443, TCP_), tags=("v4", "gue", "tcp", "affinity"),
                  group="affinity-%d" % c)


def icmp_errors(b):
    # IPv4: a router between the backend's reply and the client says "fragmentation needed" (type 3 code 4)
    for i, (client, cport, vip, vport, proto, quote_all) in enumerate([
            ("198.51.100.150", 50000, VIP4, 80, TCP_, False),
            ("198.51.100.151", 50001, VIP4, 80, TCP_, True),
            ("198.51.100.152", 50002, VIP4, 53, UDP_, False),
            ("198.51.100.153", 50003, VIP4, 443, TCP_, False),
            ("198.51.100.154", 50004, VIP4_IPIP, 80, TCP_, False)]):
        method = "ipip" if vip == VIP4_IPIP else "gue"
        ptag = "tcp" if proto == TCP_ else "udp"
        group = "icmp4-%d" % i
        if proto == TCP_:
            req = b.tcp(client, cport, vip, vport, flags="S")
            reply = bytes(IP(src=vip, dst=client, id=0, flags="DF") / TCP(sport=vport, dport=cport, flags="SA")
                          / Raw(b"x" * 64))
        else:
            req = b.udp(client, cport, vip, vport)
            reply = bytes(IP(src=vip, dst=client) / UDP(sport=vport, dport=cport) / Raw(b"y" * 64))
        vip_t = (vip, vport, proto)
        tags = {"v4", method, ptag}
        b.vip("icmp4-flow-%d" % i, "client flow %d that the ICMP error is about" % i, req,
              (client, cport, vip, vport, proto), vip_t, tags=tags | {"icmp-flow"}, group=group)
        quote = reply if quote_all else reply[:28]
        err = bytes(IP(src=ROUTER4, dst=vip, id=b.next_id()) / ICMP(type=3, code=4, nexthopmtu=1400) / Raw(quote))
        b.vip("icmp4-err-%d" % i, "ICMP frag-needed quoting %s:%d -> %s:%d%s" % (
            vip, vport, client, cport, " (whole reply quoted)" if quote_all else ""), err,
              (client, cport, vip, vport, proto), vip_t, tags=tags | {"icmp"}, group=group)

    # IPv6: packet too big, and destination unreachable
    for i, (client, cport, vip, vport, proto, kind, ext) in enumerate([
            ("2001:db8:c:3::1", 51000, VIP6, 80, TCP_, "ptb", ()),
            ("2001:db8:c:3::2", 51001, VIP6, 53, UDP_, "ptb", ()),
            ("2001:db8:c:3::3", 51002, VIP6, 80, TCP_, "unreach", ()),
            ("2001:db8:c:3::4", 51003, VIP6_IPIP, 80, TCP_, "ptb", ()),
            ("2001:db8:c:3::5", 51004, VIP6, 80, TCP_, "ptb", (IPv6ExtHdrHopByHop(),))]):
        method = "ipip" if vip == VIP6_IPIP else "gue"
        ptag = "tcp" if proto == TCP_ else "udp"
        group = "icmp6-%d" % i
        if proto == TCP_:
            req = b.tcp(client, cport, vip, vport, flags="S")
            reply = bytes(IPv6(src=vip, dst=client) / TCP(sport=vport, dport=cport, flags="SA") / Raw(b"z" * 1300))
        else:
            req = b.udp(client, cport, vip, vport)
            reply = bytes(IPv6(src=vip, dst=client) / UDP(sport=vport, dport=cport) / Raw(b"w" * 1300))
        vip_t = (vip, vport, proto)
        tags = {"v6", method, ptag}
        b.vip("icmp6-flow-%d" % i, "client flow %d that the ICMPv6 error is about" % i, req,
              (client, cport, vip, vport, proto), vip_t, tags=tags | {"icmp-flow"}, group=group)
        quote = reply[:1232 - 8]  # as much as fits in the minimum MTU
        outer = IPv6(src=ROUTER6, dst=vip, hlim=60)
        for h in ext:
            outer = outer / h
        icmp = ICMPv6PacketTooBig(mtu=1280) if kind == "ptb" else ICMPv6DestUnreach(code=3)
        err = bytes(outer / icmp / Raw(quote))
        b.vip("icmp6-err-%d" % i, "ICMPv6 %s quoting %s:%d -> %s:%d%s" % (
            "packet-too-big" if kind == "ptb" else "destination unreachable", vip, vport, client, cport,
            " after a hop-by-hop header" if ext else ""), err, (client, cport, vip, vport, proto), vip_t,
              tags=tags | {"icmp"} | ({"ext"} if ext else set()), group=group)

    # The quoted reply carries IP options: its ports are found behind them.
    client, cport = "198.51.100.155", 50005
    req = b.tcp(client, cport, VIP4, 80, flags="S")
    b.vip("icmp4-flow-opt", "client flow that the next ICMP error is about", req, (client, cport, VIP4, 80, TCP_),
          (VIP4, 80, TCP_), tags=("v4", "gue", "tcp", "icmp-flow"), group="icmp4-opt")
    reply = bytes(IP(src=VIP4, dst=client, options=[IPOption_Router_Alert()]) / TCP(sport=80, dport=cport))
    assert reply[0] == 0x46
    err = bytes(IP(src=ROUTER4, dst=VIP4, id=b.next_id()) / ICMP(type=3, code=4, nexthopmtu=1400) / Raw(reply[:32]))
    b.vip("icmp4-err-opt", "ICMP frag-needed quoting a reply with IP options (IHL 6) and 8 bytes of TCP", err,
          (client, cport, VIP4, 80, TCP_), (VIP4, 80, TCP_), tags=("v4", "gue", "tcp", "icmp", "options"),
          group="icmp4-opt")

    # An error about a flow never seen before still goes where the ordering says.
    client = "198.51.100.160"
    reply = bytes(IP(src=VIP4, dst=client) / TCP(sport=80, dport=52000, flags="A"))[:28]
    err = bytes(IP(src=ROUTER4, dst=VIP4, id=b.next_id()) / ICMP(type=3, code=4, nexthopmtu=1300) / Raw(reply))
    b.vip("icmp4-err-unseen", "ICMP frag-needed for a flow the balancer has not seen", err,
          (client, 52000, VIP4, 80, TCP_), (VIP4, 80, TCP_), tags=("v4", "gue", "tcp", "icmp"))


def fragments(b):
    # IPv4: the first fragment carries the TCP header, the second does not; both are hashed with ports 0
    # and belong to the first VIP configured on (address, protocol).
    cases = [
        ("frag4-tcp", "198.51.100.170", 43000, VIP4, 80, TCP_, (VIP4, 80, TCP_)),
        ("frag4-tcp-443", "198.51.100.171", 43001, VIP4, 443, TCP_, (VIP4, 80, TCP_)),  # first VIP is :80
        ("frag4-udp", "198.51.100.172", 43002, VIP4, 53, UDP_, (VIP4, 53, UDP_)),
        ("frag4-ipip", "198.51.100.173", 43003, VIP4_IPIP, 80, TCP_, (VIP4_IPIP, 80, TCP_)),
    ]
    for name, src, sport, dst, dport, proto, vip in cases:
        ident = b.next_id()
        l4 = TCP(sport=sport, dport=dport, flags="PA", seq=b.next_seq()) if proto == TCP_ else \
            UDP(sport=sport, dport=dport)
        whole = bytes(IP(src=src, dst=dst, id=ident) / l4 / Raw(bytes(range(200))))
        payload = whole[20:]
        cut = 48  # a multiple of 8
        first = bytes(IP(src=src, dst=dst, id=ident, flags="MF", frag=0, proto=proto) / Raw(payload[:cut]))
        second = bytes(IP(src=src, dst=dst, id=ident, frag=cut // 8, proto=proto) / Raw(payload[cut:]))
        method = "ipip" if dst == VIP4_IPIP else "gue"
        ptag = "tcp" if proto == TCP_ else "udp"
        key = (src, 0, dst, 0, proto)
        b.vip(name + "-first", "IPv4 first fragment (MF, offset 0) of %s:%d -> %s:%d" % (src, sport, dst, dport),
              first, key, vip, tags=("v4", method, ptag, "frag"), group=name)
        b.vip(name + "-second", "IPv4 last fragment (offset %d) of the same datagram" % cut, second, key, vip,
              tags=("v4", method, ptag, "frag"), group=name)
        if name in ("frag4-tcp", "frag4-udp"):
            # The server's reply was fragmented too; a router's error about one of its fragments quotes no
            # ports (the first fragment's are not looked at either): it goes where the client's fragments go.
            first_quote = name == "frag4-tcp"
            reply = bytes(IP(src=dst, dst=src, id=ident + 1, flags="MF" if first_quote else 0,
                             frag=0 if first_quote else 6, proto=proto) / Raw(bytes(range(48))))
            err = bytes(IP(src=ROUTER4, dst=dst, id=b.next_id()) / ICMP(type=3, code=4, nexthopmtu=576)
                        / Raw(reply[:28]))
            b.vip(name + "-icmp", "ICMP frag-needed quoting the %s fragment of the server's reply" % (
                "first" if first_quote else "last"), err, key, vip, tags=("v4", method, ptag, "icmp"), group=name)

    cases6 = [
        ("frag6-tcp", "2001:db8:c:4::1", 44000, VIP6, 80, TCP_, (VIP6, 80, TCP_), ()),
        ("frag6-udp", "2001:db8:c:4::2", 44001, VIP6, 53, UDP_, (VIP6, 53, UDP_), ()),
        ("frag6-hbh-tcp", "2001:db8:c:4::3", 44002, VIP6, 8443, TCP_, (VIP6, 80, TCP_), (IPv6ExtHdrHopByHop(),)),
        ("frag6-ipip", "2001:db8:c:4::4", 44003, VIP6_IPIP, 80, TCP_, (VIP6_IPIP, 80, TCP_), ()),
    ]
    for name, src, sport, dst, dport, proto, vip, ext in cases6:
        ident = b.next_id() * 65537
        l4 = TCP(sport=sport, dport=dport, flags="PA", seq=b.next_seq()) if proto == TCP_ else \
            UDP(sport=sport, dport=dport)
        whole = bytes(IPv6(src=src, dst=dst) / l4 / Raw(bytes(range(200))))
        payload = whole[40:]
        cut = 56
        parts = []
        for off, chunk, more in ((0, payload[:cut], 1), (cut // 8, payload[cut:], 0)):
            p = IPv6(src=src, dst=dst)
            for h in ext:
                p = p / h
            p = p / IPv6ExtHdrFragment(nh=proto, offset=off, m=more, id=ident) / Raw(chunk)
            parts.append(bytes(p))
        method = "ipip" if dst == VIP6_IPIP else "gue"
        ptag = "tcp" if proto == TCP_ else "udp"
        key = (src, 0, dst, 0, proto)
        tags = {"v6", method, ptag, "frag"} | ({"ext"} if ext else set())
        b.vip(name + "-first", "IPv6 first fragment of %s:%d -> [%s]:%d%s" % (
            src, sport, dst, dport, " after hop-by-hop" if ext else ""), parts[0], key, vip, tags=tags, group=name)
        b.vip(name + "-second", "IPv6 last fragment of the same datagram", parts[1], key, vip, tags=tags, group=name)


# ==================================================================== not for a VIP

def non_vip(b):
    arp = bytes.fromhex("0001080006040001") + mac_bytes(ROUTER_MAC) + bytes([198, 51, 100, 1]) + bytes(6) + \
        bytes([192, 0, 2, 10])
    b.drop("arp", "ARP request for a VIP", l2(0x0806) + arp + bytes(18), "not_ip", tags=("nonvip",))
    b.drop("lldp", "LLDP frame", l2(0x88cc) + bytes(46), "not_ip", tags=("nonvip",))
    b.drop("arp-vlan", "ARP in an 802.1Q tag", l2(0x0806, DOT1Q) + arp + bytes(14), "not_ip", tags=("nonvip",))
    # Group addresses pass the MAC check (ARP and neighbour discovery need them); unicast to another host
    # does not, whatever it carries.
    b.drop("arp-broadcast", "ARP request to the broadcast address", l2(0x0806, dst="ff:ff:ff:ff:ff:ff") + arp +
           bytes(18), "not_ip", tags=("nonvip", "mac"))
    ns = bytes(IPv6(src="2001:db8:c:5::9", dst="ff02::1:ff00:10", hlim=255) / ICMPv6ND_NS(tgt=VIP6))
    b.drop("nd-multicast", "IPv6 neighbour solicitation for a VIP to its solicited-node multicast MAC",
           l2(0x86dd, dst="33:33:ff:00:00:10") + ns, "no_vip", tags=("nonvip", "mac"))
    b.drop("foreign-mac-vip", "TCP SYN to a VIP in a frame for another host's MAC",
           l2(0x0800, dst=OTHER_MAC) + b.tcp("198.51.100.181", 1010, VIP4, 80) + bytes(6), "not_for_us",
           tags=("nonvip", "mac"))
    b.drop("foreign-mac-vip6-vlan", "IPv6 TCP to a VIP, 802.1Q tagged, for another host's MAC",
           l2(0x86dd, DOT1Q, dst=OTHER_MAC) + b.tcp("2001:db8:c:5::a", 1011, VIP6, 80), "not_for_us",
           tags=("nonvip", "mac"))
    b.drop("foreign-mac-arp", "ARP reply unicast to another host", l2(0x0806, dst=OTHER_MAC) + arp + bytes(18),
           "not_for_us", tags=("nonvip", "mac"))
    src = "198.51.100.180"
    cases = [
        ("tcp-other-port", "TCP to a VIP address on a port that is no VIP", b.tcp(src, 1000, VIP4, 8081)),
        ("udp-on-tcp-vip", "UDP to VIP4:80, which is a TCP VIP only", b.udp(src, 1001, VIP4, 80)),
        ("tcp-other-addr", "TCP to an address that is no VIP", b.tcp(src, 1002, "192.0.2.99", 80)),
        ("icmp-echo-vip", "ICMP echo request to a VIP",
         bytes(IP(src=src, dst=VIP4, id=b.next_id()) / ICMP(type=8) / Raw(b"ping"))),
        ("icmp6-echo-vip", "ICMPv6 echo request to a VIP",
         bytes(IPv6(src="2001:db8:c:5::1", dst=VIP6) / ICMPv6EchoRequest(data=b"ping"))),
        ("tcp6-other-port", "IPv6 TCP to a VIP address on a port that is no VIP",
         b.tcp("2001:db8:c:5::2", 1003, VIP6, 81)),
        ("icmp-err-nonvip", "ICMP frag-needed quoting a packet from a non-VIP address",
         bytes(IP(src=ROUTER4, dst="192.0.2.99", id=b.next_id()) / ICMP(type=3, code=4, nexthopmtu=1400)
               / Raw(bytes(IP(src="192.0.2.99", dst=src) / TCP(sport=80, dport=1004))[:28]))),
        ("icmp-err-vip-other-port", "ICMP frag-needed quoting VIP4:8081 (no VIP) -> client",
         bytes(IP(src=ROUTER4, dst=VIP4, id=b.next_id()) / ICMP(type=3, code=4, nexthopmtu=1400)
               / Raw(bytes(IP(src=VIP4, dst=src) / TCP(sport=8081, dport=1005))[:28]))),
        ("icmp6-err-quote-ext", "ICMPv6 packet-too-big quoting a VIP packet with an extension header (not walked)",
         bytes(IPv6(src=ROUTER6, dst=VIP6) / ICMPv6PacketTooBig(mtu=1280)
               / Raw(bytes(IPv6(src=VIP6, dst="2001:db8:c:5::3") / IPv6ExtHdrDestOpt() / TCP(sport=80, dport=1006))))),
        ("icmp-err-quotes-icmp", "ICMP unreachable quoting an ICMP echo reply from a VIP",
         bytes(IP(src=ROUTER4, dst=VIP4, id=b.next_id()) / ICMP(type=3, code=1)
               / Raw(bytes(IP(src=VIP4, dst=src) / ICMP(type=0))[:28]))),
        ("icmpv6-in-ipv4", "IPv4 protocol 58 (ICMPv6) packet-too-big quoting a VIP packet: not an IPv4 error",
         bytes(IP(src=ROUTER4, dst=VIP4, id=b.next_id(), proto=58)
               / Raw(bytes([2, 0, 0, 0, 0, 0, 5, 0]) + bytes(IP(src=VIP4, dst=src) / TCP(sport=80, dport=1007))[:28]))),
        ("icmp-in-ipv6", "IPv6 next header 1 (ICMP) frag-needed quoting a VIP packet: not an IPv6 error",
         bytes(IPv6(src=ROUTER6, dst=VIP6, nh=1)
               / Raw(bytes([3, 4, 0, 0, 0, 0, 5, 0]) + bytes(IPv6(src=VIP6, dst="2001:db8:c:5::4")
                                                          / TCP(sport=80, dport=1008))[:48]))),
        ("frag-no-vip-proto", "IPv4 UDP fragment to an address whose VIPs are all TCP",
         bytes(IP(src=src, dst=VIP4_IPIP, id=b.next_id(), flags="MF", proto=17) / Raw(bytes(40)))),
    ]
    for name, desc, ip in cases:
        frame = l2(ethertype_of(ip)) + ip
        b.drop(name, desc, frame + bytes(max(0, 60 - len(frame))), "no_vip", tags=("nonvip",))


# ==================================================================== malformed

def patch(data, offset, value):
    data = bytearray(data)
    data[offset:offset + len(value)] = value
    return bytes(data)


def be16(v):
    return struct.pack("!H", v)


def malformed(b):
    src, src6 = "198.51.100.190", "2001:db8:c:6::1"
    tcp4 = b.tcp(src, 1100, VIP4, 80, flags="PA", payload=b"0123456789")     # 20 + 20 + 10
    udp4 = b.udp(src, 1101, VIP4, 53, payload=b"0123456")                      # 20 + 8 + 11
    tcp6 = b.tcp(src6, 1102, VIP6, 80, flags="PA", payload=b"0123456789")    # 40 + 20 + 10
    udp6 = b.udp(src6, 1103, VIP6, 53, payload=b"0123456")
    hbh6 = b.tcp(src6, 1104, VIP6, 80, ext=[IPv6ExtHdrHopByHop()])            # 40 + 8 + 20
    opt4 = b.tcp(src, 1105, VIP4, 80, options=[IPOption_RR(routers=["0.0.0.0"] * 4)])  # IHL 10
    assert opt4[0] == 0x4a
    e4, e6 = l2(0x0800), l2(0x86dd)
    D = b.drop

    # Ethernet and VLAN
    D("cut-eth-0", "empty frame", b"", "truncated_l2")
    D("cut-eth-13", "13 bytes: one short of an Ethernet header", e4[:13], "truncated_l2")
    D("cut-after-eth", "an Ethernet header for IPv4 and nothing else", e4, "truncated_l3")
    D("cut-vlan-2", "802.1Q tag cut after 2 of its 4 bytes", l2(0x0800, DOT1Q)[:16], "truncated_l2")
    D("cut-qinq-inner", "QinQ frame that ends after the outer tag", l2(0x0800, QINQ)[:18], "truncated_l2")
    D("cut-after-vlan", "802.1Q tag for IPv4 and nothing else", l2(0x0800, DOT1Q), "truncated_l3")
    D("vlan-3-tags", "three VLAN tags", l2(0x0800, QINQ + ((0x8100, 20),)) + tcp4, "vlan_too_deep")
    D("vlan-3-tags-8100", "three 0x8100 tags", l2(0x0800, ((0x8100, 1), (0x8100, 2), (0x8100, 3))) + udp4,
      "vlan_too_deep")

    # IPv4 header
    D("cut-v4-19", "IPv4 header cut at 19 bytes", e4 + tcp4[:19], "truncated_l3")
    D("cut-v4-vlan-10", "IPv4 header cut at 10 bytes behind a QinQ tag pair", l2(0x0800, QINQ) + tcp4[:10],
      "truncated_l3")
    D("v4-version-6", "EtherType IPv4, version field 6", e4 + patch(tcp4, 0, b"\x65"), "bad_ip_version")
    D("v6-version-4", "EtherType IPv6, version field 4", e6 + patch(tcp6, 0, b"\x45"), "bad_ip_version")
    D("v4-ihl-4", "IPv4 IHL 4 (16 bytes)", e4 + patch(tcp4, 0, b"\x44"), "bad_ihl")
    D("v4-ihl-0", "IPv4 IHL 0", e4 + patch(tcp4, 0, b"\x40"), "bad_ihl")
    D("v4-ihl-past-end", "IPv4 IHL 15 (60 bytes) in a 50-byte packet", e4 + patch(tcp4, 0, b"\x4f"), "bad_ihl")
    D("cut-v4-options", "IPv4 IHL 10, frame cut inside the options (at 30 bytes)", e4 + opt4[:30], "bad_ihl")
    D("cut-v4-options-end", "IPv4 IHL 10, frame cut at the end of the fixed header", e4 + opt4[:20], "bad_ihl")
    D("v4-total-gt-frame", "IPv4 total length 1000 in a 50-byte packet", e4 + patch(tcp4, 2, be16(1000)),
      "truncated_frame")
    D("v4-total-lt-ihl", "IPv4 total length 16 (below the 20-byte header)", e4 + patch(tcp4, 2, be16(16)),
      "bad_ip_length")
    D("v4-total-lt-ihl-opt", "IPv4 IHL 10, total length 32 (below the 40-byte header)",
      e4 + patch(opt4, 2, be16(32)), "bad_ip_length")
    D("cut-v4-in-tcp", "IPv4 frame cut inside the TCP header (total length says 50)", e4 + tcp4[:30],
      "truncated_frame")
    D("cut-v4-after-ip", "IPv4 frame cut right after the IP header (total length says 50)", e4 + tcp4[:20],
      "truncated_frame")
    # What net_af_packet hands over when the kernel merged TCP segments (GRO) into one larger than the
    # ring's frames: the whole IP header, lengths of the merged packet, the data cut at the frame size.
    gro4 = b.tcp(src, 1110, VIP4, 80, flags="PA", payload=bytes(range(256)) * 11 + bytes(40))   # 2,896 bytes
    D("gro-v4-cut", "GRO-merged IPv4 TCP segment of 2,896 bytes cut to a 1,514-byte frame", (e4 + gro4)[:1514],
      "truncated_frame")
    gro6 = b.tcp(src6, 1111, VIP6, 80, flags="PA", payload=bytes(2856))
    D("gro-v6-cut", "GRO-merged IPv6 TCP segment of 2,916 bytes cut to a 1,514-byte frame", (e6 + gro6)[:1514],
      "truncated_frame")

    # IPv6 header and extension headers
    D("cut-v6-39", "IPv6 header cut at 39 bytes", e6 + tcp6[:39], "truncated_l3")
    D("cut-v6-after-eth", "an Ethernet header for IPv6 and nothing else", e6, "truncated_l3")
    D("v6-plen-gt-frame", "IPv6 payload length 1000 in a 70-byte packet", e6 + patch(tcp6, 4, be16(1000)),
      "truncated_frame")
    D("cut-v6-in-tcp", "IPv6 frame cut inside the TCP header (payload length says 30)", e6 + tcp6[:50],
      "truncated_frame")
    D("v6-plen-0", "IPv6 payload length 0 (a jumbogram: not supported)", e6 + patch(tcp6, 4, be16(0)),
      "bad_ip_length")
    D("cut-v6-ext", "hop-by-hop header cut after 4 bytes (payload length 4)",
      e6 + patch(hbh6[:44], 4, be16(4)), "bad_ext_header")
    D("cut-v6-ext-frame", "hop-by-hop header cut by the frame (payload length says 28)", e6 + hbh6[:44],
      "truncated_frame")
    D("v6-ext-len-past-end", "hop-by-hop header claiming 48 bytes in a 28-byte payload",
      e6 + patch(hbh6, 41, b"\x05"), "bad_ext_header")
    nine = b.tcp(src6, 1106, VIP6, 80, ext=[IPv6ExtHdrHopByHop()] + [IPv6ExtHdrDestOpt()] * 8)
    D("v6-9-ext", "nine extension headers before TCP", e6 + nine, "bad_ext_header")
    many = b.tcp(src6, 1107, VIP6, 80, ext=[IPv6ExtHdrHopByHop()] + [IPv6ExtHdrDestOpt()] * 15)
    D("v6-16-ext", "sixteen extension headers before TCP", e6 + many, "bad_ext_header")
    esp = bytes(IPv6(src=src6, dst=VIP6, nh=50) / Raw(bytes(range(40))))
    D("v6-esp", "IPv6 ESP to a VIP address", e6 + esp, "bad_ext_header")
    esp2 = bytes(IPv6(src=src6, dst=VIP6) / IPv6ExtHdrHopByHop(nh=50) / Raw(bytes(range(40))))
    D("v6-hbh-esp", "IPv6 hop-by-hop then ESP", e6 + esp2, "bad_ext_header")

    # TCP and UDP
    def v4_len(ip, n):
        ip = patch(ip[:n], 2, be16(n))
        return patch(ip, 10, b"\x00\x00")

    D("v4-tcp-short", "IPv4 total length 32: a 12-byte TCP header", e4 + v4_len(tcp4, 32) + bytes(14),
      "truncated_l4")
    D("v4-tcp-empty", "IPv4 total length 20: TCP with no header at all", e4 + v4_len(tcp4, 20) + bytes(26),
      "truncated_l4")
    D("v4-udp-short", "IPv4 total length 24: a 4-byte UDP header", e4 + v4_len(udp4, 24) + bytes(22),
      "truncated_l4")
    D("v6-tcp-short", "IPv6 payload length 12: a 12-byte TCP header", e6 + patch(tcp6[:52], 4, be16(12)),
      "truncated_l4")
    D("v6-udp-short", "IPv6 payload length 6: a 6-byte UDP header", e6 + patch(udp6[:46], 4, be16(6)),
      "truncated_l4")
    D("v6-ext-tcp-short", "hop-by-hop then a 10-byte TCP header", e6 + patch(hbh6[:58], 4, be16(18)),
      "truncated_l4")
    D("v4-tcp-doff-4", "TCP data offset 4", e4 + patch(tcp4, 32, b"\x40"), "bad_l4_header")
    D("v4-tcp-doff-0", "TCP data offset 0", e4 + patch(tcp4, 32, b"\x00"), "bad_l4_header")
    D("v4-tcp-doff-past-end", "TCP data offset 15 (60 bytes) in a 30-byte segment", e4 + patch(tcp4, 32, b"\xf0"),
      "bad_l4_header")
    D("v6-tcp-doff-4", "IPv6 TCP data offset 4", e6 + patch(tcp6, 52, b"\x40"), "bad_l4_header")
    D("v6-tcp-doff-past-end", "IPv6 TCP data offset 10 in a 30-byte segment", e6 + patch(tcp6, 52, b"\xa0"),
      "bad_l4_header")
    D("v4-udp-len-7", "UDP length 7", e4 + patch(udp4, 24, be16(7)), "bad_l4_header")
    D("v4-udp-len-0", "UDP length 0", e4 + patch(udp4, 24, be16(0)), "bad_l4_header")
    D("v4-udp-len-gt-ip", "UDP length 20 in a 19-byte IP payload", e4 + patch(udp4, 24, be16(20)),
      "bad_l4_header")
    D("v6-udp-len-4", "IPv6 UDP length 4", e6 + patch(udp6, 44, be16(4)), "bad_l4_header")
    D("v6-udp-len-gt-ip", "IPv6 UDP length 100 in a 19-byte payload", e6 + patch(udp6, 44, be16(100)),
      "bad_l4_header")

    # ICMP
    reply4 = bytes(IP(src=VIP4, dst=src) / TCP(sport=80, dport=1108))
    reply6 = bytes(IPv6(src=VIP6, dst=src6) / TCP(sport=80, dport=1109))

    def icmp4(quote, t=3, c=4):
        return bytes(IP(src=ROUTER4, dst=VIP4, id=b.next_id()) / ICMP(type=t, code=c, nexthopmtu=1400) / Raw(quote))

    def icmp6(quote):
        return bytes(IPv6(src=ROUTER6, dst=VIP6) / ICMPv6PacketTooBig(mtu=1280) / Raw(quote))

    full4 = icmp4(reply4[:28])
    D("icmp4-short", "IPv4 ICMP with a 4-byte header", e4 + v4_len(full4, 24) + bytes(22), "truncated_l4")
    full6 = icmp6(reply6[:48])
    D("icmp6-short", "ICMPv6 with a 6-byte header", e6 + patch(full6[:46], 4, be16(6)), "truncated_l4")
    D("icmp4-no-quote", "ICMP frag-needed with no quote at all", e4 + icmp4(b"") + bytes(18), "bad_icmp_quote")
    D("icmp4-quote-19", "ICMP frag-needed quoting 19 bytes of IP header", e4 + icmp4(reply4[:19]), "bad_icmp_quote")
    D("icmp4-quote-l4-4", "ICMP frag-needed quoting the IP header and 4 bytes of TCP", e4 + icmp4(reply4[:24]),
      "bad_icmp_quote")
    D("icmp4-quote-ihl-3", "ICMP frag-needed quoting an IP header with IHL 3",
      e4 + icmp4(patch(reply4[:28], 0, b"\x43")), "bad_icmp_quote")
    D("icmp4-quote-v6", "ICMP (v4) frag-needed quoting an IPv6 header", e4 + icmp4(reply6[:48]), "bad_icmp_quote")
    D("icmp4-quote-opt-l4", "ICMP quoting an IP header with IHL 6 and only 4 bytes after it",
      e4 + icmp4(patch(reply4[:28], 0, b"\x46")), "bad_icmp_quote")
    D("icmp6-quote-39", "ICMPv6 packet-too-big quoting 39 bytes of IPv6 header", e6 + icmp6(reply6[:39]),
      "bad_icmp_quote")
    D("icmp6-quote-l4-7", "ICMPv6 packet-too-big quoting the IPv6 header and 7 bytes of TCP",
      e6 + icmp6(reply6[:47]), "bad_icmp_quote")
    D("icmp6-quote-v4", "ICMPv6 packet-too-big quoting an IPv4 header", e6 + icmp6(reply4[:28] + bytes(12)),
      "bad_icmp_quote")


# ==================================================================== sets

def main_fixtures():
    """Everything, in one capture: the order mixes forwarded and dropped packets."""
    b = Builder()
    plain_flows(b)
    full_size(b)
    padding(b)
    vlans(b)
    ip_options(b)
    ext_headers(b)
    affinity(b)
    icmp_errors(b)
    fragments(b)
    non_vip(b)
    malformed(b)
    quic(b)
    items = interleave(b.items)
    check_unique(items)
    return items


def interleave(items):
    """Spreads the drops among the forwarded packets, keeping each kind's own order."""
    fwd = [f for f in items if f.verdict == "vip"]
    drops = [f for f in items if f.verdict != "vip"]
    out, step = [], max(1, len(fwd) // max(1, len(drops)))
    for i, f in enumerate(fwd):
        out.append(f)
        if drops and i % step == step - 1:
            out.append(drops.pop(0))
    return out + drops


def limit_fixtures():
    """Packets at a documented limit, in a capture of their own so that a failure names only them."""
    b = Builder()
    b.ipid, b.seq = 0x8000, 500000
    eight_ext_headers(b)
    check_unique(b.items)
    return b.items


def configured_fixtures():
    """A few flows for the config that sets source_v4/_v6, gateway_mac and hop_budget."""
    b = Builder()
    rng = random.Random(99)
    flows(b, rng, "cfg-v4", 12, rand_v4, VIP4, 80, TCP_, packets=(1, 1), tags=("v4", "gue", "tcp"))
    flows(b, rng, "cfg-v6", 12, rand_v6, VIP6, 80, TCP_, packets=(1, 1), tags=("v6", "gue", "tcp"))
    flows(b, rng, "cfg-x", 6, rand_v4, VIP4_X, 80, TCP_, packets=(1, 1), tags=("v4", "gue", "tcp", "cross"))
    flows(b, rng, "cfg-ipip4", 6, rand_v4, VIP4_IPIP, 80, TCP_, packets=(1, 1), tags=("v4", "ipip", "tcp"))
    flows(b, rng, "cfg-ipip6", 6, rand_v6, VIP6_IPIP, 80, TCP_, packets=(1, 1), tags=("v6", "ipip", "tcp"))
    check_unique(b.items)
    return b.items


# ==================================================================== the MTU

# Bytes each method puts in front of the inner IP packet (docs/wire.md): outer IPv4 20 / IPv6 40, and for
# gue UDP 8 + GUE 28. By the backend's family: web4's backends are IPv4, web6's IPv6.
OVERHEAD = {("gue", 4): 56, ("gue", 6): 76, ("ipip", 4): 20, ("ipip", 6): 40, ("l2dsr", 4): 0, ("l2dsr", 6): 0}
# (VIP address, port, protocol) -> (method, outer family) in the test config
VIP_PATH = {VIP4: ("gue", 4), VIP6: ("gue", 6), VIP4_X: ("gue", 6), VIP6_X: ("gue", 4), VIP4_IPIP: ("ipip", 4),
            VIP6_IPIP: ("ipip", 6), VIP4_L2: ("l2dsr", 4), VIP6_L2: ("l2dsr", 6)}


def limit(mtu, vip):
    """The largest inner packet to vip that fits the MTU once encapsulated."""
    return mtu - OVERHEAD[VIP_PATH[vip]]


def sized(b, src, sport, dst, dport, size, proto=TCP_, df=True):
    """A TCP (or UDP) packet of exactly size bytes of IP, DF set unless df is False (IPv4)."""
    header = (40 if ":" in dst else 20) + (20 if proto == TCP_ else 8)
    if proto == TCP_:
        data = (bytes(range(256)) * (size // 256 + 1))[:size - header]
        ip = b.tcp(src, sport, dst, dport, flags="PA", payload=data, df=df)
    else:
        ip = b.udp(src, sport, dst, dport, payload=bytes(size - header - 4), df=df)
    assert len(ip) == size, (len(ip), size)
    return ip


def mtu_fixtures(mtu=1500):
    """Packets around the MTU of every path, for a config with [dataplane] mtu = mtu: each fits exactly
    ("vip"), is one byte too big and answered ("too_big"), or too big and dropped unanswered."""
    b = Builder()
    b.ipid, b.seq = 0x4000, 700000
    n = [0]

    def add(name, desc, dst, dport, size, verdict, proto=TCP_, df=True, vlans=(), tags=()):
        n[0] += 1
        src = ("2001:db8:c:8::%x" % n[0]) if ":" in dst else "198.51.100.%d" % (n[0] % 250 + 1)
        sport = 30000 + n[0]
        ip = sized(b, src, sport, dst, dport, size, proto, df)
        ptag = "tcp" if proto == TCP_ else "udp"
        if verdict == "vip":
            b.vip(name, desc, ip, (src, sport, dst, dport, proto), (dst, dport, proto),
                  tags={"v6" if ":" in dst else "v4", VIP_PATH[dst][0], ptag, "mtu"} | set(tags), vlans=vlans)
        else:
            f = Fixture(name, desc, l2(ethertype_of(ip), vlans) + ip, verdict, ip, (src, sport, dst, dport, proto),
                        (dst, dport, proto), frozenset({"mtu"} | set(tags)))
            b.items.append(f)

    for dst, dport in ((VIP4, 80), (VIP6, 80), (VIP4_X, 80), (VIP6_X, 80), (VIP4_IPIP, 80), (VIP6_IPIP, 80)):
        top = limit(mtu, dst)
        method, fam = VIP_PATH[dst]
        what = "%s over IPv%d to %s" % (method, fam, dst)
        add("fit-%s-%d" % (dst, top), "%d bytes, %s: fits exactly" % (top, what), dst, dport, top, "vip")
        add("big-%s-%d" % (dst, top + 1), "%d bytes with DF, %s: one byte too big" % (top + 1, what), dst, dport,
            top + 1, "too_big")
        add("big-%s-%d" % (dst, mtu), "%d bytes with DF, %s" % (mtu, what), dst, dport, mtu, "too_big")
    add("fit-l2dsr-%d" % mtu, "%d bytes through l2dsr (no overhead)" % mtu, VIP4_L2, 80, mtu, "vip")
    add("big-v4-udp", "%d-byte UDP with DF" % mtu, VIP4, 53, mtu, "too_big", proto=UDP_)
    add("big-v6-udp", "%d-byte IPv6 UDP" % mtu, VIP6, 53, mtu, "too_big", proto=UDP_)
    add("big-v4-qinq", "%d bytes with DF in a QinQ frame: answered untagged" % mtu, VIP4, 80, mtu, "too_big",
        vlans=QINQ, tags=("vlan",))
    add("big-v4-df-clear", "%d bytes, DF clear: the balancer does not fragment, drops it unanswered" % mtu, VIP4, 80,
        mtu, "too_big_df_clear", df=False)
    add("big-v4-df-clear-udp", "%d-byte UDP, DF clear" % mtu, VIP4, 53, mtu, "too_big_df_clear", proto=UDP_,
        df=False)

    # An IPv6 fragment is answered too (its source re-fragments smaller); an IPv4 one has DF clear.
    src6, ident = "2001:db8:c:8::f1", 0x77665544
    frag6 = bytes(IPv6(src=src6, dst=VIP6) / IPv6ExtHdrFragment(nh=TCP_, offset=0, m=1, id=ident)
                  / Raw(bytes(mtu - 48)))
    b.items.append(Fixture("big-v6-fragment", "first fragment of a large IPv6 datagram, %d bytes" % mtu,
                           l2(0x86dd) + frag6, "too_big", frag6, (src6, 0, VIP6, 0, TCP_), (VIP6, 80, TCP_),
                           frozenset({"mtu", "frag"})))
    frag4 = bytes(IP(src="198.51.100.240", dst=VIP4, id=b.next_id(), flags="MF", proto=TCP_) / Raw(bytes(mtu - 20)))
    b.drop("big-v4-fragment", "first fragment of a large IPv4 datagram, %d bytes (MF, so DF clear)" % mtu,
           l2(0x0800) + frag4, "too_big_df_clear", tags=("mtu",))

    # ICMP errors are never answered with another one, DF or not.
    client = "198.51.100.241"
    reply = bytes(IP(src=VIP4, dst=client, flags="DF") / TCP(sport=80, dport=40001, flags="PA") / Raw(bytes(mtu)))
    err = bytes(IP(src=ROUTER4, dst=VIP4, id=b.next_id(), flags="DF") / ICMP(type=3, code=4, nexthopmtu=1400)
                / Raw(reply[:mtu - 28]))
    b.drop("big-icmp4-error", "a %d-byte ICMP frag-needed with DF quoting a VIP flow" % len(err), l2(0x0800) + err,
           "too_big_icmp_error", tags=("mtu",))
    reply6 = bytes(IPv6(src=VIP6, dst="2001:db8:c:8::e1") / TCP(sport=80, dport=40002) / Raw(bytes(mtu)))
    err6 = bytes(IPv6(src=ROUTER6, dst=VIP6) / ICMPv6PacketTooBig(mtu=1280) / Raw(reply6[:mtu - 48]))
    b.drop("big-icmp6-error", "a %d-byte ICMPv6 packet-too-big quoting a VIP flow" % len(err6), l2(0x86dd) + err6,
           "too_big_icmp_error", tags=("mtu",))
    check_unique(b.items)
    return b.items


def oversize_fixtures(n, size=1500):
    """n packets of size bytes with DF from n clients to VIP4:80 (each one answered, within the rate)."""
    b = Builder()
    b.ipid, b.seq = 0x6000, 900000
    items = []
    for i in range(n):
        src, sport = "198.51.100.%d" % (i + 1), 31000 + i
        ip = sized(b, src, sport, VIP4, 80, size)
        items.append(Fixture("oversize-%d" % i, "%d bytes with DF, client %d" % (size, i), l2(0x0800) + ip, "too_big",
                             ip, (src, sport, VIP4, 80, TCP_), (VIP4, 80, TCP_), frozenset({"mtu"})))
    return items


def check_unique(items):
    names = [f.name for f in items]
    assert len(set(names)) == len(names), "fixture names must be unique"
    inners = [f.inner for f in items if f.verdict == "vip"]
    assert len(set(inners)) == len(inners), "forwarded packets must differ, so outputs can be told apart"


def write_pcap(path, frames):
    """Classic pcap, microsecond timestamps, LINKTYPE_ETHERNET."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
        for i, frame in enumerate(frames):
            f.write(struct.pack("<IIII", 1700000000 + i // 1000, (i % 1000) * 1000, len(frame), len(frame)))
            f.write(frame)


def read_pcap(path):
    """Frames of a classic pcap (either byte order, micro- or nanosecond)."""
    with open(path, "rb") as f:
        data = f.read()
    if not data:
        return []
    magic = struct.unpack("<I", data[:4])[0]
    if magic in (0xa1b2c3d4, 0xa1b23c4d):
        e = "<"
    elif magic in (0xd4c3b2a1, 0x4d3cb2a1):
        e = ">"
    else:
        raise ValueError("%s: not a pcap file" % path)
    linktype = struct.unpack(e + "I", data[20:24])[0]
    if linktype != 1:
        raise ValueError("%s: link type %d, not Ethernet" % (path, linktype))
    frames, off = [], 24
    while off < len(data):
        _, _, incl, orig = struct.unpack(e + "IIII", data[off:off + 16])
        if incl != orig:
            raise ValueError("%s: record at %d truncated by the snap length" % (path, off))
        frames.append(data[off + 16:off + 16 + incl])
        off += 16 + incl
    return frames


def to_json(items):
    return [{"name": f.name, "desc": f.desc, "verdict": f.verdict, "flow": f.flow, "vip": f.vip,
             "tags": sorted(f.tags), "group": f.group, "frame": f.frame.hex()} for f in items]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: make_fixtures.py OUTDIR", file=sys.stderr)
        sys.exit(2)
    os.makedirs(sys.argv[1], exist_ok=True)
    items = main_fixtures()
    write_pcap(os.path.join(sys.argv[1], "fixtures.pcap"), [f.frame for f in items])
    with open(os.path.join(sys.argv[1], "fixtures.json"), "w") as f:
        json.dump(to_json(items), f, indent=1)
    print("%d fixtures (%d for a VIP) in %s" % (len(items), sum(f.verdict == "vip" for f in items), sys.argv[1]))
