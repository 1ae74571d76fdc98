#!/usr/bin/python3
"""Benchmark traffic as a classic pcap: minimum-size IPv4 TCP, IPv4 UDP or IPv6 UDP frames towards one VIP, from
N flows (distinct source address and port each), written with struct because scapy needs minutes for 10^6 packets.
IPv4 UDP frames carry zeros, or with --quic a QUIC short-header packet whose destination connection ID (QUIC-LB,
docs/quic-lb.md) names backend 1 + flow % --backends under one of QUIC_CONFIGS, minted by tools/quic_lb_ref.py.

Packet i belongs to flow i % N, so a capture of P packets replays every flow P/N times per pass. Sizes are
on-wire frame sizes including the 4-byte FCS the capture does not hold (64 B IPv4 TCP is 60 captured bytes,
the 40-byte IP packet plus Ethernet padding). Checksums (IPv4 header, TCP/UDP with pseudo-header) are correct.

    gen_pcap.py --out v4.pcap --family v4 --flows 1000000
    gen_pcap.py --out v6.pcap --family v6 --flows 10000 --packets 1000000 --vip 2001:db8::10 --vport 443
    gen_pcap.py --out flood.pcap --traffic flood --flood 1000000
    gen_pcap.py --out quic.pcap --family v4udp --flows 1000000 --quic four-pass --backends 16
    gen_pcap.py --out mixed.pcap --traffic mixed --flood 500000 --established 16384

A flood capture is TCP SYNs, each from a new random source address and port; a mixed capture starts with the
established flows' handshakes (SYN, then ACK) to a second VIP and then sends flood and established packets in
turn, one each.
"""
import argparse
import ipaddress
import os
import struct
import sys

FCS = 4
ETH_SRC = bytes.fromhex("020000000001")
ETH_DST = bytes.fromhex("027063617000")  # net_pcap's port MAC: the daemon drops frames for other hosts
DEFAULT_SIZE = {"v4": 64, "v4udp": 80, "v6": 78}
# 14 + 20 + 20 + FCS is 58: Ethernet's 64 minimum; 14 + 40 + 8 + FCS = 66; v4udp: room for a QUIC short header
# with a 17-octet CID (14 + 20 + 8 + 1 + 17 + FCS = 64) and a packet number
MIN_SIZE = {"v4": 64, "v4udp": 72, "v6": 66}
DEFAULT_VIP = {"v4": "192.0.2.10", "v4udp": "192.0.2.10", "v6": "2001:db8::10"}
DEFAULT_SRC = {"v4": "10.0.0.0", "v4udp": "10.0.0.0", "v6": "2001:db8:1::"}
# QUIC-LB configurations of the benchmark (codepoint 0; server ID = the backend's id, 2 octets big-endian, as
# the daemon derives it): (server_id_len, nonce_len, key). The key is the draft's appendix key.
QUIC_KEY = "8f95f09245765f80256934e50c66207f"
QUIC_CONFIGS = {
    "plaintext": (2, 8, None),       # CID 11 octets, a copy
    "single-pass": (2, 14, QUIC_KEY),  # CID 17 octets, one AES block
    "four-pass": (2, 8, QUIC_KEY),   # CID 11 octets, 3 AES blocks (nonce_len >= server_id_len)
}
DEFAULT_VIP2 = "192.0.2.11"  # the established flows' VIP in mixed captures
SYN, ACK = 0x02, 0x10


def fold(s):
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def words(b):
    if len(b) % 2:
        b = b + b"\0"
    return sum(struct.unpack("!%dH" % (len(b) // 2), b))


def source(base, family, flow):
    """Flow f's source address and port: consecutive addresses, ports spread over 1024-65023."""
    addr = base + flow
    if family == "v4" and addr >= 1 << 32:
        raise ValueError("too many flows for the IPv4 source base")
    return addr, 1024 + (flow * 7919) % 64000


def frames_v4(args):
    """IPv4 + TCP (ACK, no options): yields the captured bytes of each flow, in flow order."""
    cap = args.size - FCS
    ip_len = 20 + 20
    vip = int(ipaddress.IPv4Address(args.vip))
    base = int(ipaddress.IPv4Address(args.src))
    eth = ETH_DST + ETH_SRC + b"\x08\x00"
    # IPv4 header without source address and checksum; its sum is constant across flows.
    ip_fixed = struct.pack("!BBHHHBBHI", 0x45, 0, ip_len, 0, 0x4000, 64, 6, 0, 0) + struct.pack("!I", vip)
    ip_sum = words(ip_fixed)
    tcp_fixed = struct.pack("!HHIIBBHHH", 0, args.vport, 1, 1, 5 << 4, 0x10, 65535, 0, 0)
    tcp_sum = words(tcp_fixed) + (vip >> 16) + (vip & 0xFFFF) + 6 + 20  # pseudo-header: dst, proto, length
    pad = b"\0" * (cap - 14 - ip_len)
    for f in range(args.flows):
        src, sport = source(base, "v4", f)
        s_hi, s_lo = src >> 16, src & 0xFFFF
        ip_ck = 0xFFFF - fold(ip_sum + s_hi + s_lo)
        tcp_ck = 0xFFFF - fold(tcp_sum + s_hi + s_lo + sport)
        ip = struct.pack("!BBHHHBBHII", 0x45, 0, ip_len, 0, 0x4000, 64, 6, ip_ck, src, vip)
        tcp = struct.pack("!HHIIBBHHH", sport, args.vport, 1, 1, 5 << 4, 0x10, 65535, tcp_ck or 0xFFFF, 0)
        yield eth + ip + tcp + pad


def frames_v6(args):
    """IPv6 + UDP with a zero payload filling the frame: yields the captured bytes of each flow."""
    cap = args.size - FCS
    udp_len = cap - 14 - 40
    vip = ipaddress.IPv6Address(args.vip).packed
    base = int(ipaddress.IPv6Address(args.src))
    eth = ETH_DST + ETH_SRC + b"\x86\xdd"
    ip_head = struct.pack("!IHBB", 6 << 28, udp_len, 17, 64)
    payload = b"\0" * (udp_len - 8)
    fixed_sum = words(vip) + 17 + udp_len + args.vport + udp_len  # pseudo-header dst, proto, length; UDP dport, length
    for f in range(args.flows):
        src, sport = source(base, "v6", f)
        src_b = src.to_bytes(16, "big")
        ck = 0xFFFF - fold(fixed_sum + words(src_b) + sport)
        udp = struct.pack("!HHHH", sport, args.vport, udp_len, ck or 0xFFFF)
        yield eth + ip_head + src_b + vip + udp + payload


def quic_minter(name):
    """cid(server_id_int, nonce_int) -> bytes under QUIC_CONFIGS[name], through the reference implementation
    (tools/quic_lb_ref.py), with one AES context per key instead of one per block (10^6 CIDs in seconds)."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import quic_lb_ref
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    sid_len, nonce_len, key = QUIC_CONFIGS[name]
    key = bytes.fromhex(key) if key else None
    cache = {}

    def aes_ecb(k, block):
        if k not in cache:
            cache[k] = Cipher(algorithms.AES(k), modes.ECB()).encryptor()
        return cache[k].update(block)
    quic_lb_ref.aes_ecb = aes_ecb
    config = quic_lb_ref.Config(0, sid_len, nonce_len, key)
    return lambda sid, nonce: quic_lb_ref.encode(config, sid.to_bytes(sid_len, "big"), nonce.to_bytes(nonce_len, "big"))


def frames_v4udp(args):
    """IPv4 + UDP: zeros, or a QUIC short header (first octet 0x40, the flow's CID, zeros for the packet number
    and payload); yields the captured bytes of each flow."""
    cap = args.size - FCS
    ip_len = cap - 14
    udp_len = ip_len - 20
    vip = int(ipaddress.IPv4Address(args.vip))
    base = int(ipaddress.IPv4Address(args.src))
    eth = ETH_DST + ETH_SRC + b"\x08\x00"
    ip_sum = words(struct.pack("!BBHHHBBHI", 0x45, 0, ip_len, 0, 0x4000, 64, 17, 0, 0) + struct.pack("!I", vip))
    udp_sum = (vip >> 16) + (vip & 0xFFFF) + 17 + udp_len + args.vport + udp_len  # pseudo-header; dport, length
    mint = quic_minter(args.quic) if args.quic else None
    zeros = b"\0" * (udp_len - 8)
    for f in range(args.flows):
        src, sport = source(base, "v4", f)
        if mint:
            cid = mint(1 + f % args.backends, f)
            payload = (b"\x40" + cid + zeros)[:udp_len - 8]
        else:
            payload = zeros
        s_hi, s_lo = src >> 16, src & 0xFFFF
        ip_ck = 0xFFFF - fold(ip_sum + s_hi + s_lo)
        udp_ck = 0xFFFF - fold(udp_sum + s_hi + s_lo + sport + words(payload))
        ip = struct.pack("!BBHHHBBHII", 0x45, 0, ip_len, 0, 0x4000, 64, 17, ip_ck, src, vip)
        udp = struct.pack("!HHHH", sport, args.vport, udp_len, udp_ck or 0xFFFF)
        yield eth + ip + udp + payload


def tcp_v4(src, sport, vip, vport, flags, cap):
    """One IPv4 TCP frame (no options, no payload, padded to cap captured bytes), checksums computed."""
    ip_len = 40
    ip = struct.pack("!BBHHHBBHII", 0x45, 0, ip_len, 0, 0x4000, 64, 6, 0, src, vip)
    ip_ck = 0xFFFF - fold(words(ip))
    tcp = struct.pack("!HHIIBBHHH", sport, vport, 1, 0 if flags == SYN else 1, 5 << 4, flags, 65535, 0, 0)
    tcp_ck = 0xFFFF - fold(words(tcp) + (src >> 16) + (src & 0xFFFF) + (vip >> 16) + (vip & 0xFFFF) + 6 + 20)
    ip = ip[:10] + struct.pack("!H", ip_ck) + ip[12:]
    tcp = tcp[:16] + struct.pack("!H", tcp_ck or 0xFFFF) + tcp[18:]
    return ETH_DST + ETH_SRC + b"\x08\x00" + ip + tcp + b"\0" * (cap - 14 - ip_len)


def frames_flood(args, rng):
    """A SYN flood: every packet a new flow, from a random source address (1.0.0.0-223.255.255.255) and port
    (1024-65535) towards the VIP; no two packets of the capture share a flow."""
    cap = args.size - FCS
    vip = int(ipaddress.IPv4Address(args.vip))
    seen = set()
    while len(seen) < args.flood:
        src, sport = rng.randrange(1 << 24, 224 << 24), rng.randrange(1024, 65536)
        if (src, sport) in seen:
            continue
        seen.add((src, sport))
        yield tcp_v4(src, sport, vip, args.vport, SYN, cap)


def established_v4(args):
    """The established flows of a mixed capture, towards the second VIP: flow f from the f-th address after
    --src, each flow its own port. Returns (SYN frames, ACK frames), in flow order."""
    cap = args.size - FCS
    vip = int(ipaddress.IPv4Address(args.vip2))
    base = int(ipaddress.IPv4Address(args.src))
    syn, ack = [], []
    for f in range(args.established):
        src, sport = source(base, "v4", f)
        syn.append(tcp_v4(src, sport, vip, args.vport, SYN, cap))
        ack.append(tcp_v4(src, sport, vip, args.vport, ACK, cap))
    return syn, ack


def traffic_frames(args):
    """The capture's frames in order, for --traffic flood / mixed. flood: --flood SYNs of new flows. mixed:
    the --established flows' SYNs, then their ACKs (a warm-up: each flow's entry is confirmed), then the flood
    and ACKs of the established flows in turn (flood, flow 0, flood, flow 1, ...)."""
    import random
    rng = random.Random(args.seed)
    flood = frames_flood(args, rng)
    if args.traffic == "flood":
        yield from flood
        return
    syn, ack = established_v4(args)
    yield from syn
    yield from ack
    for i, frame in enumerate(flood):
        yield frame
        yield ack[i % len(ack)]


def write(args):
    if args.traffic != "steady":
        return write_frames(args.out, traffic_frames(args))
    flows = list({"v4": frames_v4, "v4udp": frames_v4udp, "v6": frames_v6}[args.family](args))
    packets = args.packets or args.flows
    rec = struct.Struct("<IIII")
    with open(args.out + ".tmp", "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))  # classic pcap, Ethernet
        chunk = []
        for i in range(packets):
            frame = flows[i % args.flows]
            chunk.append(rec.pack(i // 1000000, i % 1000000, len(frame), len(frame)))
            chunk.append(frame)
            if len(chunk) >= 65536:
                out.write(b"".join(chunk))
                chunk = []
        out.write(b"".join(chunk))
    os.replace(args.out + ".tmp", args.out)
    return packets


def write_frames(path, frames):
    """Writes the frames, in order, as a classic pcap; returns how many."""
    rec = struct.Struct("<IIII")
    n = 0
    with open(path + ".tmp", "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        chunk = []
        for frame in frames:
            chunk.append(rec.pack(n // 1000000, n % 1000000, len(frame), len(frame)))
            chunk.append(frame)
            n += 1
            if len(chunk) >= 65536:
                out.write(b"".join(chunk))
                chunk = []
        out.write(b"".join(chunk))
    os.replace(path + ".tmp", path)
    return n


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="pcap file to write (replaced atomically)")
    p.add_argument("--family", choices=["v4", "v4udp", "v6"], default="v4",
                   help="v4: IPv4 TCP; v4udp: IPv4 UDP (zeros, or QUIC with --quic); v6: IPv6 UDP")
    p.add_argument("--quic", choices=sorted(QUIC_CONFIGS), default="",
                   help="v4udp: QUIC short-header packets whose CIDs name the backends, under this algorithm")
    p.add_argument("--backends", type=int, default=16, help="--quic: flow f's CID names backend 1 + f %% N (16)")
    p.add_argument("--flows", type=int, default=1, help="distinct flows (source address and port)")
    p.add_argument("--packets", type=int, default=0, help="packets in the capture (default: one per flow)")
    p.add_argument("--size", type=int, default=0, help="on-wire frame size with FCS (default 64 v4, 78 v6)")
    p.add_argument("--vip", default="", help="destination address (default 192.0.2.10 / 2001:db8::10)")
    p.add_argument("--vport", type=int, default=80, help="destination port (default 80)")
    p.add_argument("--src", default="", help="first source address (default 10.0.0.0 / 2001:db8:1::)")
    p.add_argument("--traffic", choices=["steady", "flood", "mixed"], default="steady",
                   help="steady: --flows flows in turn (ACK); flood: --flood new flows (SYN, random sources); "
                        "mixed: --established flows (SYN, ACK, then ACKs) to --vip2 interleaved with --flood (IPv4)")
    p.add_argument("--flood", type=int, default=0, help="flood: new flows (one SYN each)")
    p.add_argument("--established", type=int, default=0, help="mixed: established flows")
    p.add_argument("--vip2", default=DEFAULT_VIP2, help="mixed: the established flows' VIP (default 192.0.2.11)")
    p.add_argument("--seed", type=int, default=13, help="flood: random seed (13)")
    a = p.parse_args(argv)
    if a.traffic != "steady" and (a.family != "v4" or a.flood < 1 or (a.traffic == "mixed" and a.established < 1)):
        p.error("--traffic flood needs --family v4 and --flood >= 1; mixed also --established >= 1")
    a.size = a.size or DEFAULT_SIZE[a.family]
    a.vip = a.vip or DEFAULT_VIP[a.family]
    a.src = a.src or DEFAULT_SRC[a.family]
    if a.size < MIN_SIZE[a.family] or a.size > 1518:
        p.error("--size must be %d-1518 for %s" % (MIN_SIZE[a.family], a.family))
    if a.quic and (a.family != "v4udp" or not 1 <= a.backends <= 65535):
        p.error("--quic needs --family v4udp and --backends 1-65535")
    if a.flows < 1 or a.packets < 0:
        p.error("--flows must be >= 1 and --packets >= 0")
    return a


def main(argv=None):
    a = parse_args(argv)
    n = write(a)
    if a.traffic != "steady":
        print("%s: %d packets, %s, %d-byte frames" % (a.out, n, a.traffic, a.size))
        return
    print("%s: %d packets, %d flows, %d-byte frames (%d captured), %s -> %s:%d" %
          (a.out, n, a.flows, a.size, a.size - FCS, {"v4": "IPv4 TCP", "v4udp": "IPv4 UDP", "v6": "IPv6 UDP"}[a.family] +
           (" QUIC " + a.quic if a.quic else ""), a.vip, a.vport))


if __name__ == "__main__":
    sys.exit(main())
