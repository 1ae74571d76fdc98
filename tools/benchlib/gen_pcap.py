#!/usr/bin/python3
"""Benchmark traffic as a classic pcap: minimum-size IPv4 TCP or IPv6 UDP frames towards one VIP, from N flows
(distinct source address and port each), written with struct because scapy needs minutes for 10^6 packets.

Packet i belongs to flow i % N, so a capture of P packets replays every flow P/N times per pass. Sizes are
on-wire frame sizes including the 4-byte FCS the capture does not hold (64 B IPv4 TCP is 60 captured bytes,
the 40-byte IP packet plus Ethernet padding). Checksums (IPv4 header, TCP/UDP with pseudo-header) are correct.

    gen_pcap.py --out v4.pcap --family v4 --flows 1000000
    gen_pcap.py --out v6.pcap --family v6 --flows 10000 --packets 1000000 --vip 2001:db8::10 --vport 443
"""
import argparse
import ipaddress
import os
import struct
import sys

FCS = 4
ETH_SRC = bytes.fromhex("020000000001")
ETH_DST = bytes.fromhex("027063617000")  # net_pcap's port MAC: the daemon drops frames for other hosts
DEFAULT_SIZE = {"v4": 64, "v6": 78}
MIN_SIZE = {"v4": 64, "v6": 66}  # 14 + 20 + 20 + FCS is 58: Ethernet's 64 minimum; 14 + 40 + 8 + FCS = 66
DEFAULT_VIP = {"v4": "192.0.2.10", "v6": "2001:db8::10"}
DEFAULT_SRC = {"v4": "10.0.0.0", "v6": "2001:db8:1::"}


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


def write(args):
    flows = list((frames_v4 if args.family == "v4" else frames_v6)(args))
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


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="pcap file to write (replaced atomically)")
    p.add_argument("--family", choices=["v4", "v6"], default="v4", help="v4: IPv4 TCP; v6: IPv6 UDP")
    p.add_argument("--flows", type=int, default=1, help="distinct flows (source address and port)")
    p.add_argument("--packets", type=int, default=0, help="packets in the capture (default: one per flow)")
    p.add_argument("--size", type=int, default=0, help="on-wire frame size with FCS (default 64 v4, 78 v6)")
    p.add_argument("--vip", default="", help="destination address (default 192.0.2.10 / 2001:db8::10)")
    p.add_argument("--vport", type=int, default=80, help="destination port (default 80)")
    p.add_argument("--src", default="", help="first source address (default 10.0.0.0 / 2001:db8:1::)")
    a = p.parse_args(argv)
    a.size = a.size or DEFAULT_SIZE[a.family]
    a.vip = a.vip or DEFAULT_VIP[a.family]
    a.src = a.src or DEFAULT_SRC[a.family]
    if a.size < MIN_SIZE[a.family] or a.size > 1518:
        p.error("--size must be %d-1518 for %s" % (MIN_SIZE[a.family], a.family))
    if a.flows < 1 or a.packets < 0:
        p.error("--flows must be >= 1 and --packets >= 0")
    return a


def main(argv=None):
    a = parse_args(argv)
    n = write(a)
    print("%s: %d packets, %d flows, %d-byte frames (%d captured), %s -> %s:%d" %
          (a.out, n, a.flows, a.size, a.size - FCS, "IPv4 TCP" if a.family == "v4" else "IPv6 UDP", a.vip, a.vport))


if __name__ == "__main__":
    sys.exit(main())
