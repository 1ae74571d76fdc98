#!/usr/bin/python3
"""Bad input for the balancer's edge, built byte by byte (no packet library), run inside a namespace.

  bad_packets.py frames  --iface eth0 --dst-mac MAC --vip ADDR --count N
        Ethernet frames that no router would forward (truncated or inconsistent L2/L3 headers), sent with
        an AF_PACKET socket from a host on the balancer's own segment, addressed to the balancer's MAC.
  bad_packets.py packets --vip ADDR --tcp-port P --udp-port Q --count N
        IP packets with a sound IP header and a malformed L4 header (what a router forwards), sent with a
        raw IP socket (the kernel fills in the IP checksum and total length, see raw(7)).
  bad_packets.py big-udp --vip ADDR --port Q --count N --size BYTES --sports FIRST
        UDP datagrams larger than the MTU with DF clear, so the sending kernel fragments them; one source
        port per datagram.

truncated_l2 cannot be produced here: a Linux veth or bridge port frees a frame whose VLAN tag is cut short
(skb_vlan_untag) before anyone sees it, and AF_PACKET pads frames shorter than 14 bytes; the parser's unit
tests cover it.

Prints {"case": number sent, ...} as one JSON object. Which drop reason each case must land under is the
test's business (from docs/dataplane.md), not this file's.
"""
import argparse
import ipaddress
import json
import socket
import struct
import time

ETH_P_IP, ETH_P_IPV6, ETH_P_8021Q = 0x0800, 0x86DD, 0x8100
IP_MTU_DISCOVER, IP_PMTUDISC_DONT = 10, 0  # <linux/in.h>; not exported by Python's socket module
CLIENT = "198.51.100.7"  # inner source of the crafted frames: no reply is expected


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4(src, dst, proto, payload, version=4, ihl=5, total=None, frag=0):
    total = 20 + len(payload) if total is None else total
    hdr = struct.pack("!BBHHHBBH4s4s", version << 4 | ihl, 0, total, 0x1234, frag, 64, proto, 0,
                      socket.inet_aton(src), socket.inet_aton(dst))
    hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
    return hdr + payload


def udp(sport, dport, payload, length=None):
    return struct.pack("!HHHH", sport, dport, 8 + len(payload) if length is None else length, 0) + payload


def tcp(sport, dport, doff_words=5, flags=0x02, options=b""):
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, doff_words << 4, flags, 65535, 0, 0) + options


def mac_bytes(text):
    return bytes(int(x, 16) for x in text.split(":"))


def edge_frames(dst_mac, src_mac, vip):
    """Name -> frame. Every one is addressed to the balancer; none can be forwarded."""
    eth = lambda etype: dst_mac + src_mac + struct.pack("!H", etype)  # noqa: E731
    good_ip = ipv4(CLIENT, vip, 17, udp(40000, 9000, b"x" * 16))
    v6dst = ipaddress.IPv6Address("64:ff9b::" + vip).packed
    v6src = ipaddress.IPv6Address("2001:db8::7").packed
    tag = lambda etype: struct.pack("!HH", 7, etype)  # noqa: E731  (TCI, next EtherType)
    return {
        "three_vlan_tags": eth(ETH_P_8021Q) + tag(ETH_P_8021Q) + tag(ETH_P_8021Q) + tag(ETH_P_IP) + good_ip,
        "ipv4_header_cut": eth(ETH_P_IP) + good_ip[:12],
        "ipv4_version_6": eth(ETH_P_IP) + bytes([0x65]) + good_ip[1:],
        "ipv4_ihl_4": eth(ETH_P_IP) + bytes([0x44]) + good_ip[1:],
        "ipv4_ihl_past_end": eth(ETH_P_IP) + bytes([0x4F]) + good_ip[1:40],
        "ipv4_total_length_past_end": eth(ETH_P_IP) + ipv4(CLIENT, vip, 17, udp(40000, 9000, b"x" * 16),
                                                             total=20 + 24 + 100),
        "ipv6_header_cut": eth(ETH_P_IPV6) + bytes([0x60]) + b"\0" * 30,
        "ipv6_esp": eth(ETH_P_IPV6) + struct.pack("!IHBB", 6 << 28, 24, 50, 64) + v6src + v6dst + b"\0" * 24,
    }


def l4_packets(vip, tcp_port, udp_port):
    """Name -> IP payload and protocol: IP is sound, L4 is not."""
    return {
        "tcp_data_offset_3": (6, tcp(41000, tcp_port, doff_words=3)),
        "tcp_data_offset_past_end": (6, tcp(41001, tcp_port, doff_words=15)),
        "tcp_header_cut": (6, tcp(41002, tcp_port)[:12]),
        "udp_length_4": (17, udp(41003, udp_port, b"y" * 16, length=4)),
        "udp_length_past_end": (17, udp(41004, udp_port, b"y" * 16, length=200)),
        "udp_header_cut": (17, udp(41005, udp_port, b"")[:6]),
        # ICMP destination unreachable quoting 12 bytes: too short for the IPv4 header it must hold.
        "icmp_error_quote_cut": (1, struct.pack("!BBHI", 3, 1, 0, 0) + b"\x45" + b"\0" * 11),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["frames", "packets", "big-udp"])
    ap.add_argument("--vip", required=True)
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--iface", default="eth0")
    ap.add_argument("--dst-mac")
    ap.add_argument("--tcp-port", type=int, default=8080)
    ap.add_argument("--udp-port", type=int, default=9000)
    ap.add_argument("--port", type=int, default=9000)
    ap.add_argument("--size", type=int, default=3000)
    ap.add_argument("--sports", type=int, default=42000)
    ap.add_argument("--gap", type=float, default=0.002, help="seconds between two packets")
    args = ap.parse_args()
    sent = {}
    if args.mode == "frames":
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        s.bind((args.iface, 0))
        src_mac = mac_bytes(open(f"/sys/class/net/{args.iface}/address").read().strip())
        for name, frame in edge_frames(mac_bytes(args.dst_mac), src_mac, args.vip).items():
            sent[name] = 0
            for _ in range(args.count):
                s.send(frame)
                sent[name] += 1
                time.sleep(args.gap)
    elif args.mode == "packets":
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        for name, (proto, payload) in l4_packets(args.vip, args.tcp_port, args.udp_port).items():
            # Source 0: the kernel puts the interface's address, so the router forwards it as any packet.
            pkt = ipv4("0.0.0.0", args.vip, proto, payload)
            sent[name] = 0
            for _ in range(args.count):
                s.sendto(pkt, (args.vip, 0))
                sent[name] += 1
                time.sleep(args.gap)
    else:
        sent["datagrams"] = 0
        for i in range(args.count):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
            s.bind(("0.0.0.0", args.sports + i))
            s.sendto(bytes([i % 256]) * args.size, (args.vip, args.port))
            s.close()
            sent["datagrams"] += 1
            time.sleep(args.gap)
    print(json.dumps(sent))


if __name__ == "__main__":
    main()
