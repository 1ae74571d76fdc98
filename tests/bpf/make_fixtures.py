#!/usr/bin/python3
"""Packet fixtures of the BPF tests: crafted frames for bpf/us_backend.bpf.c and bpf/us_steer.bpf.c, each with
the map contents it needs, the verdict, the output frame and the counters it must move.

Nothing here comes from the programs under test. Inputs and expected outputs are built with scapy from
docs/wire.md and the decision order in bpf/README.md: a served packet is the inner packet behind the received
L2 header, a forwarded one is the received packet with its outer addresses, MACs and hop budget changed and
its checksums recomputed by scapy from scratch (the program updates them incrementally).

  make_fixtures.py OUTDIR     writes OUTDIR/fixtures.json:
    world:    config, pools, backends, vips and the TCP connections the test must open before running
    fixtures: name, desc, program ("backend" or "steer"), input (hex), tables ({pool: {bucket: [primary,
              serving, previous, previous2]}}; every other bucket of a pool's table holds UNSET), xsk (steer: whether an
              AF_XDP socket sits at RX queue 0), verdict, output (hex), counters ({name: delta}; every other
              counter of the program must not move), config (fields of world.config this fixture changes)
"""
import json
import os
import struct
import sys

from scapy.config import conf
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_Router_Alert
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.packet import Raw

conf.verb = 0

NO_SERVER = 0xffff
UNSET = [0xfffe, 0xfffe, 0xfffe, 0xfffe]  # a slot no pool has: a lookup of the wrong bucket cannot go unnoticed

# This backend.
OWN_MAC = "02:00:00:00:bb:01"
OWN_V4 = "10.1.0.11"
OWN_V6 = "fd00:1::11"
GUE_PORT = 6080
# Where GUE packets come from.
LB_MAC = "02:00:00:00:aa:01"
LB_V4 = "198.18.0.1"
LB_V6 = "2001:db8:ffff::1"

# The outer sources tunnels are accepted from (us_tunnel_sources: prefix lengths over the 16-byte form, an
# IPv4 /16 is 96 + 16), and the hop budget a received one is clamped to.
TRUSTED_PREFIX_HOST = "10.200.3.4"
UNTRUSTED_V4 = "203.0.113.99"
TUNNEL_SOURCES = [(LB_V4, 128), (LB_V6, 128), ("10.1.0.10", 128), ("10.200.0.0", 96 + 16)]
MAX_HOPS = 6

CLIENT4 = "203.0.113.7"
CLIENT6 = "2001:db8:c::7"
VIP4 = "192.0.2.10"          # pool 0 (web4): 80/tcp, 53/udp, fragments
VIP6 = "2001:db8::10"        # pool 1 (web6): 443/tcp, fragments
VIP4_OTHER = "192.0.2.30"    # pool 2 (other, this host not a member): 80/tcp
VIP4_NOTABLE = "192.0.2.40"  # pool 3 (no table swapped in yet): 80/tcp
VIP4_UNCONF = "192.0.2.50"   # pool 5 (not configured: no backends): 80/tcp
NOT_VIP4 = "192.0.2.99"

DIGEST = [0x11223344, 0x55667788, 0x0badcafe, 0x01020304]
POOLS = [
    {"index": 0, "table_bits": 8, "my_slot": 1, "digest": DIGEST[0]},
    {"index": 1, "table_bits": 10, "my_slot": 0, "digest": DIGEST[1]},
    {"index": 2, "table_bits": 8, "my_slot": NO_SERVER, "digest": DIGEST[2]},
    {"index": 3, "table_bits": 8, "my_slot": 0, "digest": DIGEST[3], "no_table": True},
]
# (pool, slot, id, operational, address, next-hop MAC); pool 0 slot 5 is a free slot.
BACKENDS = [
    (0, 0, 10, True, "10.1.0.10", "02:00:00:00:bb:00"),
    (0, 1, 11, True, OWN_V4, OWN_MAC),
    (0, 2, 12, True, "10.1.0.12", "02:00:00:00:bb:02"),
    (0, 3, 13, False, "10.1.0.13", "02:00:00:00:bb:03"),
    (0, 4, 14, True, "fd00:1::14", "02:00:00:00:bb:04"),
    (1, 0, 20, True, OWN_V6, OWN_MAC),
    (1, 1, 21, True, "fd00:1::21", "02:00:00:00:bb:21"),
    (1, 2, 22, True, "fd00:1::22", "02:00:00:00:bb:22"),
    (2, 0, 30, True, "10.1.0.30", "02:00:00:00:bb:30"),
    (3, 0, 40, True, OWN_V4, OWN_MAC),
]
N_BACKENDS = {0: 6, 1: 3, 2: 1, 3: 1}
BY_SLOT = {(b[0], b[1]): b for b in BACKENDS}
VIPS = [  # (address, port, proto, pool); port 0 = fragments
    (VIP4, 80, 6, 0), (VIP4, 0, 6, 0), (VIP4, 53, 17, 0), (VIP4, 0, 17, 0), (VIP6, 443, 6, 1), (VIP6, 0, 6, 1),
    (VIP4_OTHER, 80, 6, 2), (VIP4_NOTABLE, 80, 6, 3), (VIP4_UNCONF, 80, 6, 5), (VIP6, 443, 17, 1),
]
# Connections the test opens (listener on vip:vport, client bound to client:cport) before running fixtures.
SOCKETS = [
    {"family": 4, "client": CLIENT4, "cport": 40001, "vip": VIP4, "vport": 80},
    {"family": 6, "client": CLIENT6, "cport": 40001, "vip": VIP6, "vport": 443},
]

SYN, ACK, PSH = "S", "A", "PA"


def mac_bytes(text):
    return bytes(int(x, 16) for x in text.split(":"))


def hash_for(pool, bucket, salt):
    """A session hash whose bucket in the pool is `bucket`. The bit just above the bucket's is always set and
    the higher ones vary, so that a mask one bit too wide picks a bucket past the table."""
    bits = POOLS[pool]["table_bits"]
    high = (0x9e3779b97f4a7c15 * (salt + 1)) & 0xffffffffffffffff
    return (high & ~((1 << bits) - 1)) | (1 << bits) | bucket


def gue_header(inner, *, session_hash, digest, flags=0, primary=10, hop=2, magic=0x5553, version=1, hlen=6,
               control=0, proto=None, gue_flags=0, walked=0):
    """GUE variant 0 base header and understudy's private data (docs/wire.md), written out field by field."""
    if proto is None:
        proto = 4 if inner[0] >> 4 == 4 else 41
    base = struct.pack("!BBH", (control << 5) | hlen, proto, gue_flags)
    pd = struct.pack("!HBBIQIBB2x", magic, version, flags, primary, session_hash, digest, hop, walked)
    assert len(pd) == 24
    return base + pd


def tcp4(src=CLIENT4, dst=VIP4, sport=40000, dport=80, flags=ACK, **ip):
    return bytes(IP(src=src, dst=dst, **ip) / TCP(sport=sport, dport=dport, flags=flags, seq=1000, ack=2000) /
                 Raw(b"hello"))


def tcp6(src=CLIENT6, dst=VIP6, sport=40000, dport=443, flags=ACK):
    return bytes(IPv6(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags, seq=1000, ack=2000) /
                 Raw(b"hello"))


def outer4(payload, *, udp_chksum=0, options=None, vlans=(), sport=0xc123, udp_len=None, src=LB_V4):
    ip = IP(src=src, dst=OWN_V4, id=0, ttl=64)
    if options:
        ip.options = options
    udp = UDP(sport=sport, dport=GUE_PORT, chksum=udp_chksum, len=udp_len)
    return l2(0x0800, vlans) / ip / udp / Raw(payload)


def outer6(payload, *, ext=None, sport=0xc123):
    ip = IPv6(src=LB_V6, dst=OWN_V6, hlim=64, fl=0x12345)
    if ext is not None:
        ip = ip / ext
    return l2(0x86dd) / ip / UDP(sport=sport, dport=GUE_PORT) / Raw(payload)


def l2(ethertype, vlans=()):
    """Ethernet header from the balancer to this host, with (tpid, vid) tags, outermost first."""
    if not vlans:
        return Ether(dst=OWN_MAC, src=LB_MAC, type=ethertype)
    frame = Ether(dst=OWN_MAC, src=LB_MAC, type=vlans[0][0])
    for i, (_, vid) in enumerate(vlans):
        tpid_next = vlans[i + 1][0] if i + 1 < len(vlans) else ethertype
        frame = frame / (Dot1AD if vlans[i][0] == 0x88a8 else Dot1Q)(vlan=vid, type=tpid_next)
    return frame


def served(frame, inner, trailing=b""):
    """The frame after decapsulation: the received L2 header (VLAN tags kept) whose last EtherType now names
    the inner packet's family, the inner packet, and whatever followed the outer packet in the frame."""
    tags = 0
    layer = frame[Ether].payload
    while isinstance(layer, (Dot1Q, Dot1AD)):
        tags += 1
        layer = layer.payload
    l2_len = 14 + 4 * tags
    inner_type = 0x0800 if inner[0] >> 4 == 4 else 0x86dd
    return bytes(frame)[:l2_len - 2] + struct.pack("!H", inner_type) + inner + trailing


def forwarded(frame, backend, hop, walked=0):
    """The frame forwarded to backend (pool, slot, id, operational, address, mac): outer addresses from this
    host to it, MACs, hop budget, the walked places, checksums recomputed from scratch (UDP 0 over IPv4,
    computed over IPv6)."""
    p = Ether(bytes(frame))
    p[Ether].dst = backend[5]
    p[Ether].src = OWN_MAC
    raw = bytearray(p[Raw].load)
    raw[24] = hop
    raw[25] = walked
    p[Raw].load = bytes(raw)
    if IP in p and p[IP].proto == 17:
        p[IP].src = OWN_V4
        p[IP].dst = backend[4]
        del p[IP].chksum
        p[UDP].chksum = 0
    else:
        p[IPv6].src = OWN_V6
        p[IPv6].dst = backend[4]
        del p[UDP].chksum
    return bytes(p)


FIXTURES = []


def fixture(name, desc, frame, verdict, output=None, counters=None, tables=None, program="backend", xsk=False,
            config=None, **extra):
    data = bytes(frame) if not isinstance(frame, bytes) else frame
    FIXTURES.append({
        **extra,
        "name": name,
        "desc": desc,
        "program": program,
        "input": data.hex(),
        "tables": {str(k): {str(b): e for b, e in v.items()} for k, v in (tables or {}).items()},
        "xsk": xsk,
        "config": config or {},
        "verdict": verdict,
        "output": (data if output is None else output).hex(),
        "counters": counters or {},
    })


def entry(primary, serving, previous=NO_SERVER, previous2=NO_SERVER):
    return [primary, serving, previous, previous2]


def gue4(inner, pool=0, bucket=135, salt=0, vlans=(), udp_chksum=0, options=None, digest=None, trailing=b"",
         udp_len=None, src=LB_V4, **g):
    h = hash_for(pool, bucket, salt)
    payload = gue_header(inner, session_hash=h, digest=DIGEST[pool] if digest is None else digest, **g) + inner
    frame = outer4(payload, udp_chksum=udp_chksum, options=options, vlans=vlans, udp_len=udp_len, src=src)
    return bytes(frame) + trailing, frame


def gue6(inner, pool=1, bucket=300, salt=0, ext=None, digest=None, **g):
    h = hash_for(pool, bucket, salt)
    payload = gue_header(inner, session_hash=h, digest=DIGEST[pool] if digest is None else digest, **g) + inner
    frame = outer6(payload, ext=ext)
    return bytes(frame), frame


def backend_fixtures():
    # --- not ours: untouched, "passed" ---
    arp = Ether(dst="ff:ff:ff:ff:ff:ff", src=LB_MAC) / ARP(psrc=LB_V4, pdst=OWN_V4)
    fixture("pass_arp", "ARP is the kernel's", arp, "XDP_PASS", counters={"passed": 1})
    fixture("pass_tcp", "plain TCP to this host", l2(0x0800) / IP(src=CLIENT4, dst=OWN_V4) / TCP(dport=22),
            "XDP_PASS", counters={"passed": 1})
    fixture("pass_udp_other_port", "UDP to another port than gue_port",
            l2(0x0800) / IP(src=LB_V4, dst=OWN_V4) / UDP(sport=1234, dport=53) / Raw(b"x" * 40),
            "XDP_PASS", counters={"passed": 1})
    _, f = gue4(tcp4())
    frag = Ether(bytes(f))
    frag[IP].flags = "MF"
    del frag[IP].chksum
    fixture("pass_outer_fragment", "a fragment of a GUE packet: the kernel reassembles", frag, "XDP_PASS",
            counters={"passed": 1})
    quoted = bytes(IP(src=OWN_V4, dst="10.1.0.10") / UDP(sport=0xc123, dport=GUE_PORT) / Raw(b"g" * 40))[:28]
    icmp = l2(0x0800) / IP(src="10.1.0.1", dst=OWN_V4) / ICMP(type=3, code=4, nexthopmtu=1400) / Raw(quoted)
    fixture("pass_outer_icmp_error", "an ICMP error about a GUE packet goes to the kernel", icmp, "XDP_PASS",
            counters={"passed": 1})
    fixture("pass_gue_off", "gue_port 0 in the config: GUE is the kernel's", f, "XDP_PASS", counters={"passed": 1},
            config={"gue_port": 0})
    fixture("pass_truncated", "a frame cut inside its IPv4 header", bytes(f)[:30], "XDP_PASS",
            counters={"passed": 1})
    fixture("pass_ipip_outer_fragment", "a fragment of an IP-in-IP packet",
            l2(0x0800) / IP(src=LB_V4, dst=OWN_V4, proto=4, flags="MF") / Raw(tcp4()), "XDP_PASS",
            counters={"passed": 1})

    # --- GUE that is not understudy's: untouched, "bad_gue" ---
    inner = tcp4()
    for name, desc, g in [
        ("bad_gue_magic", "private data without the US magic", {"magic": 0x5554}),
        ("bad_gue_version", "private data version 2", {"version": 2}),
        ("bad_gue_hlen", "hlen 7: optional fields this program does not know", {"hlen": 7}),
        ("bad_gue_control", "a GUE control message (C bit)", {"control": 1}),
        ("bad_gue_proto", "GUE proto 17: not an IP packet inside", {"proto": 17}),
        ("bad_gue_flags", "GUE flags set", {"gue_flags": 0x8000}),
    ]:
        data, _ = gue4(inner, **g)
        fixture(name, desc, data, "XDP_PASS", counters={"bad_gue": 1})
    short = outer4(gue_header(inner, session_hash=1, digest=DIGEST[0])[:20])
    fixture("bad_gue_short", "UDP payload shorter than the GUE header", short, "XDP_PASS", counters={"bad_gue": 1})
    ver1 = outer4(b"\x45" + bytes(27) + inner)
    fixture("bad_gue_ver1", "GUE version 1 (direct IP encapsulation) is not understudy's", ver1, "XDP_PASS",
            counters={"bad_gue": 1})

    # --- inner packet malformed or not for a VIP: untouched ---
    trunc = bytearray(tcp4())
    trunc[2:4] = struct.pack("!H", len(trunc) + 20)  # total length past the end
    data, _ = gue4(bytes(trunc))
    fixture("bad_inner_length", "inner IPv4 total length past the UDP payload", data, "XDP_PASS",
            counters={"bad_inner": 1})
    data, _ = gue4(tcp6(), proto=4)
    fixture("bad_inner_version", "GUE says IPv4, the inner packet is IPv6", data, "XDP_PASS",
            counters={"bad_inner": 1})
    in4 = tcp4()
    data, _ = gue4(in4, udp_len=8 + 28 + len(in4) - 4, bucket=135)
    fixture("bad_inner_udp_length", "the UDP length ends the datagram inside the inner packet (the frame has the "
            "bytes: the inner packet is bounded by the UDP length, not the buffer)", data, "XDP_PASS",
            counters={"bad_inner": 1})
    data, _ = gue4(tcp4(dst=NOT_VIP4))
    fixture("no_vip_address", "inner packet for an address that is no VIP", data, "XDP_PASS",
            counters={"no_vip": 1})
    data, _ = gue4(tcp4(dport=8080))
    fixture("no_vip_port", "the VIP's address on a port that is no VIP", data, "XDP_PASS", counters={"no_vip": 1})
    data, _ = gue4(tcp4(dst=VIP4_UNCONF))
    fixture("no_vip_unconfigured_pool", "a VIP whose pool has no backends (not configured)", data, "XDP_PASS",
            counters={"no_vip": 1})

    # --- served here ---
    # A TCP segment that is not a SYN asks for a local socket first; these cases use SYNs, UDP and fragments,
    # which the table decides. This host is pool 0's slot 1 (ID 11) and pool 1's slot 0 (ID 20).
    others = {0: {135: entry(0, 0)}}  # the table would send it elsewhere
    syn4, syn6 = tcp4(flags=SYN), tcp6(flags=SYN)
    udp4 = bytes(IP(src=CLIENT4, dst=VIP4) / UDP(sport=5353, dport=53) / Raw(b"q" * 30))
    data, f = gue4(udp4, flags=0x01 | 0x02, bucket=135)
    fixture("pinned_served", "UDP, PINNED: served without looking at the table (which says slot 0)", data,
            "XDP_PASS", served(f, udp4), {"pinned_served": 1}, others)
    data, f = gue4(syn4, bucket=135)
    fixture("served_v4_tcp", "a SYN, and the bucket's serving server is this host", data, "XDP_PASS",
            served(f, syn4), {"gue_served": 1}, {0: {135: entry(0, 1)}})
    data, f = gue4(syn4, bucket=135, salt=99)
    fixture("served_mask", "only the low table_bits bits of the hash pick the bucket", data, "XDP_PASS",
            served(f, syn4), {"gue_served": 1}, {0: {135: entry(1, 1)}})
    data, f = gue4(udp4, bucket=200)
    fixture("served_v4_udp", "UDP VIP", data, "XDP_PASS", served(f, udp4), {"gue_served": 1},
            {0: {200: entry(1, 1)}})
    data, f = gue6(syn6, bucket=1000)
    fixture("served_v6_in_v6", "IPv6 VIP over an IPv6 outer header", data, "XDP_PASS", served(f, syn6),
            {"gue_served": 1}, {1: {1000: entry(0, 0)}})
    data, f = gue6(syn4, pool=0, bucket=9)
    fixture("served_v4_in_v6", "IPv4 VIP over an IPv6 outer header", data, "XDP_PASS", served(f, syn4),
            {"gue_served": 1}, {0: {9: entry(1, 1)}})
    data, f = gue4(syn4, vlans=[(0x8100, 5)], bucket=135)
    fixture("served_vlan", "one VLAN tag: kept, its type becomes the inner family's", data, "XDP_PASS",
            served(f, syn4), {"gue_served": 1}, {0: {135: entry(1, 1)}})
    data, f = gue4(syn4, vlans=[(0x88a8, 100), (0x8100, 5)], bucket=135)
    fixture("served_qinq", "two VLAN tags: kept", data, "XDP_PASS", served(f, syn4), {"gue_served": 1},
            {0: {135: entry(1, 1)}})
    data, f = gue6(syn6, bucket=1000, ext=IPv6ExtHdrDestOpt())
    fixture("served_outer_ext_header", "outer IPv6 with a destination options header", data, "XDP_PASS",
            served(f, syn6), {"gue_served": 1}, {1: {1000: entry(0, 0)}})
    data, f = gue4(syn4, bucket=135, options=[IPOption_Router_Alert()])
    fixture("served_outer_options", "outer IPv4 with options", data, "XDP_PASS", served(f, syn4),
            {"gue_served": 1}, {0: {135: entry(1, 1)}})
    data, f = gue4(syn4, bucket=135, trailing=b"\xee" * 6)
    fixture("served_trailing", "bytes after the outer packet (Ethernet padding) stay behind the inner packet",
            data, "XDP_PASS", served(f, syn4, b"\xee" * 6), {"gue_served": 1}, {0: {135: entry(1, 1)}})
    inner = bytes(IP(src=CLIENT4, dst=VIP4, flags="MF", frag=0) / TCP(sport=40000, dport=80) / Raw(b"f" * 24))
    data, f = gue4(inner, bucket=11)
    fixture("served_fragment", "an inner fragment finds its VIP by port 0", data, "XDP_PASS", served(f, inner),
            {"gue_served": 1}, {0: {11: entry(1, 1)}})
    quoted = bytes(IP(src=VIP4, dst=CLIENT4) / TCP(sport=80, dport=40000, flags=ACK))[:28]
    inner = bytes(IP(src="10.9.9.9", dst=VIP4) / ICMP(type=3, code=4, nexthopmtu=1400) / Raw(quoted))
    data, f = gue4(inner, bucket=12, primary=11)
    fixture("served_icmp_error", "an ICMP error quoting a VIP flow (PMTU discovery) that no other candidate can "
            "hold: served here", data, "XDP_PASS", served(f, inner), {"no_holder_served": 1},
            {0: {12: entry(1, 1)}})
    inner = tcp4()
    data, f = gue4(inner, bucket=135, hop=0)
    fixture("last_resort", "an ACK with no connection here and hop budget 0: served here although the table says "
            "slot 0", data, "XDP_PASS", served(f, inner), {"gue_last_resort": 1}, others)
    data, f = gue4(udp4, bucket=135, hop=0)
    fixture("last_resort_udp", "UDP, hop budget 0: served here although the table says slot 0", data, "XDP_PASS",
            served(f, udp4), {"gue_last_resort": 1}, others)
    data, f = gue4(udp4, bucket=135)
    fixture("no_server", "nobody operational for the bucket in this host's view", data, "XDP_PASS",
            served(f, udp4), {"gue_no_server": 1}, {0: {135: entry(0, NO_SERVER, 0)}})
    data, f = gue4(udp4, bucket=135)
    fixture("cannot_forward_family", "the serving server is IPv6, the outer header IPv4", data, "XDP_PASS",
            served(f, udp4), {"cannot_forward": 1}, {0: {135: entry(4, 4)}})
    fixture("cannot_forward_free_slot", "the table names a free slot", data, "XDP_PASS", served(f, udp4),
            {"cannot_forward": 1}, {0: {135: entry(5, 5)}})
    fixture("cannot_forward_past_pool", "the table names a slot past n_backends", data, "XDP_PASS",
            served(f, udp4), {"cannot_forward": 1}, {0: {135: entry(9, 9)}})
    data, f = gue6(udp4, pool=0, bucket=135)
    fixture("cannot_forward_no_own_address", "this host has no IPv6 address to send from", data, "XDP_PASS",
            served(f, udp4), {"cannot_forward": 1}, {0: {135: entry(4, 4)}}, config={"own_v6": "::"})
    inner = tcp4(dst=VIP4_NOTABLE)
    data, f = gue4(inner, pool=3, bucket=135)
    fixture("no_table", "the pool's table is not there yet", data, "XDP_PASS", served(f, inner),
            {"no_table": 1})
    data, f = gue4(syn4, bucket=135, digest=0xdeadbeef)
    fixture("digest_mismatch_served", "the sender's view of the pool differs; this host's decides (serve)", data,
            "XDP_PASS", served(f, syn4), {"gue_served": 1, "digest_mismatch": 1}, {0: {135: entry(1, 1)}})

    payload = b"understudy"
    inner = bytes(IP(src="198.51.100.77", dst=VIP4) / UDP(sport=5353, dport=53) / Raw(payload))
    data, f = gue4(inner, bucket=201)
    fixture("live_served_udp", "served; the live test also sends it over veth to a socket on the VIP", data,
            "XDP_PASS", served(f, inner), {"gue_served": 1}, {0: {201: entry(1, 1)}},
            udp_vip=VIP4, udp_port=53, udp_payload=payload.decode())

    # --- forwarded by this host's view (not TCP: no socket to ask) ---
    b0, b2 = BY_SLOT[(0, 0)], BY_SLOT[(0, 2)]
    data, f = gue4(udp4, bucket=135, udp_chksum=0x1234)
    fixture("forward_v4", "UDP forwarded to the serving server; the UDP checksum becomes 0", data, "XDP_TX",
            forwarded(f, b0, 1), {"gue_forwarded": 1}, {0: {135: entry(0, 0)}})
    data, f = gue4(udp4, bucket=135, hop=5, options=[IPOption_Router_Alert()], vlans=[(0x8100, 5)])
    fixture("forward_v4_options_vlan", "outer IPv4 options and a VLAN tag: checksum over the options too",
            data, "XDP_TX", forwarded(f, b0, 4), {"gue_forwarded": 1}, {0: {135: entry(0, 0)}})
    data, f = gue4(udp4, bucket=135, digest=0xdeadbeef)
    fixture("digest_mismatch_forward", "the sender's view differs; this host's decides (forward)", data,
            "XDP_TX", forwarded(f, b0, 1), {"gue_forwarded": 1, "digest_mismatch": 1}, {0: {135: entry(0, 0)}})
    data, f = gue4(udp4, bucket=135, hop=200)
    fixture("hop_budget_clamped", "a hop budget above this host's maximum (6) is clamped before it is spent",
            data, "XDP_TX", forwarded(f, b0, MAX_HOPS - 1), {"gue_forwarded": 1, "hop_clamped": 1},
            {0: {135: entry(0, 0)}})
    data, f = gue4(udp4, bucket=135, hop=MAX_HOPS)
    fixture("hop_budget_at_max", "a hop budget equal to the maximum is not clamped", data, "XDP_TX",
            forwarded(f, b0, MAX_HOPS - 1), {"gue_forwarded": 1}, {0: {135: entry(0, 0)}})
    data, f = gue6(syn6, bucket=1000)
    fixture("forward_v6", "IPv6 outer: UDP checksum recomputed", data, "XDP_TX", forwarded(f, BY_SLOT[(1, 2)], 1),
            {"gue_forwarded": 1}, {1: {1000: entry(2, 2)}})
    data, f = gue6(syn6, bucket=1000, ext=IPv6ExtHdrDestOpt(), hop=1)
    fixture("forward_v6_ext_header", "IPv6 outer with a destination options header", data, "XDP_TX",
            forwarded(f, BY_SLOT[(1, 1)], 0), {"gue_forwarded": 1}, {1: {1000: entry(1, 1)}})
    data, f = gue6(tcp6(), bucket=1000, walked=0b10000)
    fixture("forward_v6_walked", "IPv6 outer, a walk: the checksum covers the walked places too", data, "XDP_TX",
            forwarded(f, BY_SLOT[(1, 2)], 1, 0b11001), {"misdirected_forwarded": 1}, {1: {1000: entry(2, 2)}})
    data, f = gue4(udp4, bucket=135, src=TRUSTED_PREFIX_HOST)
    fixture("trusted_by_prefix", "an outer source inside a trusted prefix (not a /32 entry)", data, "XDP_TX",
            forwarded(f, b0, 1), {"gue_forwarded": 1}, {0: {135: entry(0, 0)}})

    inner = tcp4(dst=VIP4_OTHER, flags=SYN)
    data, f = gue4(inner, pool=2, bucket=135)
    fixture("forward_syn_not_member", "a SYN where this host is no member of the pool: this host's view places it",
            data, "XDP_TX", forwarded(f, BY_SLOT[(2, 0)], 1), {"gue_forwarded": 1}, {2: {135: entry(0, 0)}})
    syn = tcp4(sport=40010, flags=SYN)
    data, f = gue4(syn, bucket=20, flags=0x01)
    fixture("forward_syn_not_walked", "a SYN goes to the serving server, never down the history; PINNED does not "
            "keep it", data, "XDP_TX", forwarded(f, b0, 1), {"gue_forwarded": 1}, {0: {20: entry(0, 0, 2)}})

    # --- TCP of a connection this host does not hold: the candidates walk (bpf/README.md) ---
    # candidates, by place: 0 serving, 1 previous, 2 previous2, 3 this host's primary, 4 the header's primary;
    # `walked` marks the places tried; this host marks its own, forwards to the first untried operational one
    # and marks every place of it. Header primary 10 is pool 0's slot 0.
    inner = tcp4(sport=40010)
    data, f = gue4(inner, bucket=20)
    fixture("misdirected_from_outside", "an ACK at a host that is not among the candidates: the serving server",
            data, "XDP_TX", forwarded(f, b0, 1, 0b11001), {"misdirected_forwarded": 1}, {0: {20: entry(0, 0, 2)}})
    data, f = gue4(inner, bucket=20, flags=0x01)
    fixture("misdirected_pinned", "PINNED does not bypass the socket check: an ACK pinned here without a "
            "connection goes on", data, "XDP_TX", forwarded(f, b0, 1, 0b11001), {"misdirected_forwarded": 1},
            {0: {20: entry(0, 0, 2)}})
    data, f = gue4(inner, bucket=20)
    fixture("misdirected_previous", "an ACK at the serving server, which holds no connection: the previous one",
            data, "XDP_TX", forwarded(f, b2, 1, 0b01011), {"misdirected_forwarded": 1}, {0: {20: entry(1, 1, 2)}})
    fixture("misdirected_serving_first", "at the previous server, from a balancer: the serving server first",
            data, "XDP_TX", forwarded(f, b0, 1, 0b11011), {"misdirected_forwarded": 1},
            {0: {20: entry(0, 0, 1, 2)}})
    data, f = gue4(inner, bucket=20, walked=0b00001)
    fixture("misdirected_previous2", "at the previous server after the serving one: the one before it", data,
            "XDP_TX", forwarded(f, b2, 1, 0b00111), {"misdirected_forwarded": 1}, {0: {20: entry(0, 0, 1, 2)}})
    quoted = bytes(IP(src=VIP4, dst=CLIENT4) / TCP(sport=80, dport=40010, flags=ACK))[:28]
    icmp_inner = bytes(IP(src="10.9.9.9", dst=VIP4) / ICMP(type=3, code=4, nexthopmtu=1400) / Raw(quoted))
    data, f = gue4(icmp_inner, bucket=20)
    fixture("misdirected_icmp_error", "an ICMP error quoting a TCP flow belongs to a connection: walked too",
            data, "XDP_TX", forwarded(f, b2, 1, 0b01011), {"misdirected_forwarded": 1}, {0: {20: entry(1, 1, 2)}})
    data, f = gue4(inner, bucket=20, primary=12)
    fixture("misdirected_header_primary", "no history here; the primary the header names (ID 12, slot 2) may "
            "hold it (the sender's view differs)", data, "XDP_TX", forwarded(f, b2, 1, 0b11001),
            {"misdirected_forwarded": 1}, {0: {20: entry(1, 1)}})
    data, f = gue4(inner, bucket=20, primary=11)
    fixture("misdirected_previous_down", "the previous server is not operational and nobody else is left: "
            "served here", data, "XDP_PASS", served(f, inner), {"no_holder_served": 1},
            {0: {20: entry(1, 1, 3)}})
    fixture("misdirected_nobody", "no history, this host is serving and primary: served here", data, "XDP_PASS",
            served(f, inner), {"no_holder_served": 1}, {0: {20: entry(1, 1)}})
    fixture("misdirected_previous_family", "the previous server is of the other family: skipped", data,
            "XDP_PASS", served(f, inner), {"no_holder_served": 1}, {0: {20: entry(1, 1, 4)}})
    data, f = gue4(inner, bucket=20, primary=11, walked=0b00001)
    fixture("misdirected_all_tried", "the serving server was tried before and this host is the last candidate: "
            "served here, never back", data, "XDP_PASS", served(f, inner), {"no_holder_served": 1},
            {0: {20: entry(0, 0, 1)}})
    data, f = gue4(inner, bucket=20, primary=77777)
    fixture("misdirected_unknown_primary", "a header primary this host does not know (us_backend_ids) is skipped",
            data, "XDP_PASS", served(f, inner), {"no_holder_served": 1}, {0: {20: entry(1, 1)}})
    data, f = gue4(udp4, bucket=20)
    fixture("misdirected_tcp_only", "UDP is not walked: this host's serving server", data, "XDP_TX",
            forwarded(f, b0, 1), {"gue_forwarded": 1}, {0: {20: entry(0, 0, 2)}})
    data, f = gue4(inner, bucket=20, hop=0)
    fixture("misdirected_no_budget", "hop budget 0 comes first: served here", data, "XDP_PASS",
            served(f, inner), {"gue_last_resort": 1}, {0: {20: entry(1, 1, 2)}})
    data, f = gue4(inner, bucket=20, hop=1)
    fixture("misdirected_last_hop", "hop budget 1: forwarded with 0 left", data, "XDP_TX",
            forwarded(f, b2, 0, 0b01011), {"misdirected_forwarded": 1}, {0: {20: entry(1, 1, 2)}})

    # --- QUIC: QUIC_PRIMARY says the header's primary is the server the connection ID names (docs/quic-lb.md).
    # Not TCP: this host if it is that server; else that server while it is operational and reachable here
    # and the budget allows; else this host's table as for any UDP packet, and quic_primary_fallback on top.
    # Pool 0: this host is ID 11; 10 and 12 are up, 13 down, 14 IPv6 (the outer header is IPv4).
    QUIC, PINNED, FAILOVER = 0x04, 0x01, 0x02
    quic4 = bytes(IP(src=CLIENT4, dst=VIP4) / UDP(sport=4433, dport=53) / Raw(b"\x40" + bytes(range(11)) + b"q" * 20))
    quic6 = bytes(IPv6(src=CLIENT6, dst=VIP6) / UDP(sport=4433, dport=443) / Raw(b"\x40" + b"c" * 30))
    data, f = gue4(quic4, bucket=40, flags=QUIC, primary=11)
    fixture("quic_primary_served", "the CID names this host: served, though the table says slot 0", data,
            "XDP_PASS", served(f, quic4), {"quic_primary_served": 1}, {0: {40: entry(0, 0)}})
    data, f = gue4(quic4, bucket=40, flags=QUIC, primary=11, hop=0)
    fixture("quic_primary_served_no_budget", "the CID names this host, hop budget 0: served as the CID's server",
            data, "XDP_PASS", served(f, quic4), {"quic_primary_served": 1}, {0: {40: entry(0, 0)}})
    data, f = gue4(quic4, bucket=40, flags=QUIC, primary=12)
    fixture("quic_primary_forwarded", "the CID names ID 12, up here: forwarded there although this host is the "
            "bucket's serving server", data, "XDP_TX", forwarded(f, b2, 1), {"quic_primary_forwarded": 1},
            {0: {40: entry(1, 1)}})
    data, f = gue4(quic4, bucket=40, flags=QUIC | PINNED | FAILOVER, primary=12)
    fixture("quic_primary_over_pinned", "the sender thought the CID's server down and pinned a stand-in; up in "
            "this view: forwarded to it", data, "XDP_TX", forwarded(f, b2, 1), {"quic_primary_forwarded": 1},
            {0: {40: entry(1, 1)}})
    data, f = gue6(quic6, bucket=1000, flags=QUIC, primary=21)
    fixture("quic_primary_forwarded_v6", "IPv6 outer: forwarded to the CID's server (ID 21), UDP checksum "
            "updated", data, "XDP_TX", forwarded(f, BY_SLOT[(1, 1)], 1), {"quic_primary_forwarded": 1},
            {1: {1000: entry(0, 0)}})
    data, f = gue4(quic4, bucket=40, flags=QUIC | FAILOVER, primary=13)
    fixture("quic_primary_down_served", "the CID's server (13) is down here and this host is the bucket's "
            "serving server: served", data, "XDP_PASS", served(f, quic4),
            {"gue_served": 1, "quic_primary_fallback": 1}, {0: {40: entry(3, 1)}})
    fixture("quic_primary_down_forwarded", "the CID's server (13) is down here: the bucket's serving server",
            data, "XDP_TX", forwarded(f, b0, 1), {"gue_forwarded": 1, "quic_primary_fallback": 1},
            {0: {40: entry(3, 0)}})
    data, f = gue4(quic4, bucket=40, flags=QUIC | PINNED | FAILOVER, primary=13)
    fixture("quic_primary_down_pinned", "the CID's server is down here too and the sender pinned this host: "
            "served as any pinned UDP", data, "XDP_PASS", served(f, quic4),
            {"pinned_served": 1, "quic_primary_fallback": 1}, {0: {40: entry(3, 0)}})
    data, f = gue4(quic4, bucket=40, flags=QUIC, primary=77777)
    fixture("quic_primary_unknown", "a server ID this host does not know: the bucket's serving server", data,
            "XDP_TX", forwarded(f, b0, 1), {"gue_forwarded": 1, "quic_primary_fallback": 1},
            {0: {40: entry(0, 0)}})
    data, f = gue4(quic4, bucket=40, flags=QUIC, primary=14)
    fixture("quic_primary_other_family", "the CID's server has no address of the outer family: unreachable, the "
            "table decides (this host serves)", data, "XDP_PASS", served(f, quic4),
            {"gue_served": 1, "quic_primary_fallback": 1}, {0: {40: entry(4, 1)}})
    data, f = gue4(quic4, bucket=40, flags=QUIC, primary=12, hop=0)
    fixture("quic_primary_no_budget", "the CID's server is up but the hop budget is spent: served here", data,
            "XDP_PASS", served(f, quic4), {"gue_last_resort": 1, "quic_primary_fallback": 1},
            {0: {40: entry(0, 0)}})
    data, f = gue4(quic4, bucket=40, primary=12)
    fixture("quic_flag_absent", "the same packet without QUIC_PRIMARY: the header's primary is the ordering's, "
            "this host's table decides", data, "XDP_PASS", served(f, quic4), {"gue_served": 1},
            {0: {40: entry(1, 1)}})
    syn = tcp4(sport=40020, flags=SYN)
    data, f = gue4(syn, bucket=40, flags=QUIC, primary=12)
    fixture("quic_flag_tcp", "TCP ignores QUIC_PRIMARY: a SYN opens on this host's serving server", data,
            "XDP_PASS", served(f, syn), {"gue_served": 1}, {0: {40: entry(1, 1)}})

    # --- a connection this host holds (the test opens them: world.sockets) ---
    s4, s6 = SOCKETS
    inner = tcp4(src=s4["client"], sport=s4["cport"], dst=s4["vip"], dport=s4["vport"], flags=PSH)
    data, f = gue4(inner, bucket=30)
    fixture("local_socket_v4", "the table says slot 0 but the TCP connection is here", data, "XDP_PASS",
            served(f, inner), {"local_socket_served": 1}, {0: {30: entry(0, 0, 2)}})
    data, f = gue4(inner, bucket=30, flags=0x01)
    fixture("local_socket_pinned", "pinned here and the connection is here", data, "XDP_PASS",
            served(f, inner), {"local_socket_served": 1}, {0: {30: entry(0, 0)}})
    inner = tcp6(src=s6["client"], sport=s6["cport"], dst=s6["vip"], dport=s6["vport"], flags=PSH)
    data, f = gue6(inner, bucket=1001)
    fixture("local_socket_v6", "the same over IPv6", data, "XDP_PASS", served(f, inner),
            {"local_socket_served": 1}, {1: {1001: entry(1, 1)}})
    inner = tcp4(src=s4["client"], sport=s4["cport"] + 1, dst=s4["vip"], dport=s4["vport"], flags=PSH)
    data, f = gue4(inner, bucket=30)
    fixture("local_socket_listener_only", "only the listener matches (another client port): not a connection",
            data, "XDP_TX", forwarded(f, b0, 1, 0b11001), {"misdirected_forwarded": 1}, {0: {30: entry(0, 0)}})
    inner = tcp4(src=s4["client"], sport=s4["cport"], dst=s4["vip"], dport=s4["vport"], flags=SYN)
    data, f = gue4(inner, bucket=30)
    fixture("local_socket_syn", "a SYN is not looked up: this host's view places it", data, "XDP_TX",
            forwarded(f, b0, 1), {"gue_forwarded": 1}, {0: {30: entry(0, 0)}})

    # --- tunnels from outside us_tunnel_sources: dropped ---
    data, f = gue4(syn4, bucket=135, src=UNTRUSTED_V4)
    fixture("untrusted_gue", "GUE from a source that is no balancer nor backend: dropped", data, "XDP_DROP",
            counters={"untrusted_source": 1}, tables={0: {135: entry(1, 1)}})
    f = l2(0x0800) / IP(src=UNTRUSTED_V4, dst=OWN_V4, proto=4) / Raw(tcp4())
    fixture("untrusted_ipip", "IP-in-IP from an untrusted source: dropped", f, "XDP_DROP",
            counters={"untrusted_source": 1})
    f = l2(0x0800) / IP(src="10.1.0.11", dst=OWN_V4) / UDP(sport=1234, dport=GUE_PORT) / Raw(b"x" * 40)
    fixture("untrusted_before_parse", "the source check comes before the GUE header is read", f, "XDP_DROP",
            counters={"untrusted_source": 1})
    data, f = gue4(syn4, bucket=135, src="10.1.0.10")
    fixture("trusted_backend", "GUE from another backend (which forwards to this host): accepted", data,
            "XDP_PASS", served(f, syn4), {"gue_served": 1}, {0: {135: entry(1, 1)}})

    # --- IP-in-IP ---
    inner = tcp4()
    f = l2(0x0800) / IP(src=LB_V4, dst=OWN_V4, proto=4) / Raw(inner)
    fixture("ipip_v4_in_v4", "IPv4 in IPv4 to a VIP: decapsulated", f, "XDP_PASS", served(f, inner),
            {"ipip_decap": 1})
    inner6 = tcp6()
    f = l2(0x86dd) / IPv6(src=LB_V6, dst=OWN_V6, nh=41) / Raw(inner6)
    fixture("ipip_v6_in_v6", "IPv6 in IPv6 to a VIP: decapsulated", f, "XDP_PASS", served(f, inner6),
            {"ipip_decap": 1})
    f = l2(0x86dd) / IPv6(src=LB_V6, dst=OWN_V6, nh=4) / Raw(inner)
    fixture("ipip_v4_in_v6", "IPv4 in IPv6", f, "XDP_PASS", served(f, inner), {"ipip_decap": 1})
    f = l2(0x0800) / IP(src=LB_V4, dst=OWN_V4, proto=41) / Raw(inner6)
    fixture("ipip_v6_in_v4", "IPv6 in IPv4 (6in4)", f, "XDP_PASS", served(f, inner6), {"ipip_decap": 1})
    f = l2(0x0800, [(0x8100, 7)]) / IP(src=LB_V4, dst=OWN_V4, proto=4) / Raw(inner)
    fixture("ipip_vlan", "IP-in-IP with a VLAN tag", f, "XDP_PASS", served(f, inner), {"ipip_decap": 1})
    f = l2(0x0800) / IP(src=LB_V4, dst=OWN_V4, proto=4) / Raw(tcp4(dst=NOT_VIP4))
    fixture("ipip_no_vip", "IP-in-IP to an address that is no VIP: the kernel's", f, "XDP_PASS",
            counters={"no_vip": 1})
    f = l2(0x0800) / IP(src=LB_V4, dst=OWN_V4, proto=4) / Raw(tcp4()[:30])
    fixture("ipip_bad_inner", "IP-in-IP with a truncated inner packet", f, "XDP_PASS", counters={"bad_inner": 1})


def steer_fixtures():
    cases = [
        ("vip_tcp", "TCP to a VIP", l2(0x0800) / IP(src=CLIENT4, dst=VIP4) / TCP(sport=40000, dport=80), True),
        ("vip_udp", "UDP to a VIP", l2(0x0800) / IP(src=CLIENT4, dst=VIP4) / UDP(sport=5353, dport=53), True),
        ("vip_v6", "TCP to an IPv6 VIP", l2(0x86dd) / IPv6(src=CLIENT6, dst=VIP6) / TCP(sport=40000, dport=443),
         True),
        ("vip_vlan", "a VLAN-tagged VIP packet",
         l2(0x0800, [(0x8100, 5)]) / IP(src=CLIENT4, dst=VIP4) / TCP(sport=40000, dport=80), True),
        ("vip_fragment", "a later fragment: VIP by port 0",
         l2(0x0800) / IP(src=CLIENT4, dst=VIP4, proto=6, frag=100) / Raw(b"z" * 40), True),
        ("vip_icmp_error", "an ICMP error quoting a VIP flow",
         l2(0x0800) / IP(src="10.9.9.9", dst=VIP4) / ICMP(type=3, code=4, nexthopmtu=1400) /
         Raw(bytes(IP(src=VIP4, dst=CLIENT4) / TCP(sport=80, dport=40000))[:28]), True),
        ("not_vip_port", "the VIP's address on another port",
         l2(0x0800) / IP(src=CLIENT4, dst=VIP4) / TCP(sport=40000, dport=22), False),
        ("not_vip_address", "another address", l2(0x0800) / IP(src=CLIENT4, dst=NOT_VIP4) / TCP(dport=80), False),
        ("not_vip_proto", "the VIP's port with another protocol",
         l2(0x0800) / IP(src=CLIENT4, dst=VIP4) / UDP(sport=5353, dport=80), False),
        ("not_ip", "ARP", Ether(dst="ff:ff:ff:ff:ff:ff", src=LB_MAC) / ARP(pdst=VIP4), False),
        ("malformed", "a truncated TCP header to a VIP", bytes(l2(0x0800) / IP(src=CLIENT4, dst=VIP4) /
                                                              TCP(dport=80))[:44], False),
    ]
    for name, desc, frame, vip in cases:
        if vip:
            fixture("steer_" + name, desc + ", a socket on the queue: redirected", frame, "XDP_REDIRECT",
                    counters={"steered": 1}, program="steer", xsk=True)
            fixture("steer_" + name + "_no_socket", desc + ", no socket on the queue: the kernel", frame,
                    "XDP_PASS", counters={"no_socket": 1}, program="steer", xsk=False)
        else:
            fixture("steer_" + name, desc + ": the kernel", frame, "XDP_PASS", counters={"passed": 1},
                    program="steer", xsk=True)


def world():
    return {
        "config": {"own_v4": OWN_V4, "own_v6": OWN_V6, "own_mac": OWN_MAC, "gue_port": GUE_PORT,
                   "max_hops": MAX_HOPS},
        "tunnel_sources": [{"address": a, "prefixlen": n} for a, n in TUNNEL_SOURCES],
        "pools": [dict(p, n_backends=N_BACKENDS[p["index"]]) for p in POOLS],
        "backends": [{"pool": p, "slot": s, "id": i, "operational": o, "address": a, "mac": m}
                     for p, s, i, o, a, m in BACKENDS],
        "vips": [{"address": a, "port": port, "proto": proto, "pool": pool} for a, port, proto, pool in VIPS],
        "sockets": SOCKETS,
        "unset_entry": UNSET,
    }


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_fixtures.py OUTDIR")
    backend_fixtures()
    steer_fixtures()
    names = [f["name"] for f in FIXTURES]
    assert len(names) == len(set(names)), "duplicate fixture names"
    os.makedirs(sys.argv[1], exist_ok=True)
    with open(os.path.join(sys.argv[1], "fixtures.json"), "w") as out:
        json.dump({"world": world(), "fixtures": FIXTURES}, out, indent=1)


if __name__ == "__main__":
    main()
