#!/usr/bin/python3
"""Writes the fuzzer's seed corpus, tests/fuzz/corpus/*.bin: one small valid frame per header the parser walks.

Run it from anywhere after changing it; the files it writes are committed. Needs python3-scapy.
"""
import os

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (ICMPv6DestUnreach, ICMPv6PacketTooBig, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment,
                                IPv6ExtHdrHopByHop, IPv6ExtHdrRouting)
from scapy.layers.ipsec import AH
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether

CLIENT4, VIP4, ROUTER4 = "198.51.100.7", "192.0.2.10", "203.0.113.1"
CLIENT6, VIP6, ROUTER6 = "2001:db8:1::7", "2001:db8::10", "2001:db8:ff00::1"
MACS = dict(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")


def eth(**kw):
    return Ether(**{**MACS, **kw})


def frames():
    yield "ipv4-tcp", eth() / IP(src=CLIENT4, dst=VIP4) / TCP(sport=40000, dport=80, flags="S")
    yield "ipv4-options-udp", eth() / IP(src=CLIENT4, dst=VIP4, options=b"\x01\x01\x01\x00") / UDP(
        sport=5353, dport=53) / b"q"
    yield "vlan-ipv4-udp", eth() / Dot1Q(vlan=100) / IP(src=CLIENT4, dst=VIP4) / UDP(sport=5353, dport=53)
    yield "ipv4-fragment", eth() / IP(src=CLIENT4, dst=VIP4, flags="MF", proto=6) / (b"\xee" * 16)
    yield "icmp-unreachable", eth() / IP(src=ROUTER4, dst=VIP4) / ICMP(type=3, code=4, nexthopmtu=1400) / bytes(
        IP(src=VIP4, dst=CLIENT4) / TCP(sport=80, dport=40000))[:28]
    yield "qinq-ipv6-tcp", eth() / Dot1AD(vlan=10) / Dot1Q(vlan=100) / IPv6(src=CLIENT6, dst=VIP6) / TCP(
        sport=40000, dport=443, flags="S")
    yield "ipv6-ext-chain", eth() / IPv6(src=CLIENT6, dst=VIP6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting() / (
        IPv6ExtHdrDestOpt()) / AH(nh=17, payloadlen=4, spi=256, seq=1, icv=b"\x00" * 12) / UDP(sport=4000, dport=53)
    yield "ipv6-fragment", eth() / IPv6(src=CLIENT6, dst=VIP6) / IPv6ExtHdrFragment(nh=6, offset=100, id=1) / (
        b"\xee" * 16)
    yield "icmpv6-too-big", eth() / IPv6(src=ROUTER6, dst=VIP6) / ICMPv6PacketTooBig(mtu=1280) / bytes(
        IPv6(src=VIP6, dst=CLIENT6) / UDP(sport=53, dport=5353))
    yield "icmpv6-unreachable", eth() / IPv6(src=ROUTER6, dst=VIP6) / ICMPv6DestUnreach(code=4) / bytes(
        IPv6(src=VIP6, dst=CLIENT6) / TCP(sport=443, dport=40000))[:48]
    yield "arp", eth(dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=CLIENT4, pdst=VIP4)


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    os.makedirs(out, exist_ok=True)
    for name, frame in frames():
        with open(os.path.join(out, name + ".bin"), "wb") as f:
            f.write(bytes(frame))


if __name__ == "__main__":
    main()
