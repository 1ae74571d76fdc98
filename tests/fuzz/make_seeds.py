#!/usr/bin/python3
"""Writes the seed corpora of fuzz_pipeline and fuzz_tunnel from the data-plane replay fixtures
(tests/dataplane/make_fixtures.py), so that the fuzzers start from frames that reach every method, family and
drop reason of the replay world:

  pipeline_corpus/  fuzz_pipeline inputs (format: pipeline_world.h): each a burst of up to 32 fixture frames
                    in single-segment mbufs, and a few with other headrooms, chained segments, non_vip = drop
  tunnel_corpus/    frames as a backend receives them: the IP packet of each VIP fixture in GUE (docs/wire.md,
                    built here from the document, not by the balancer) over IPv4 and IPv6, and in IP-in-IP
  capture_corpus/   fuzz_capture inputs: capture files of fixture frames in every format libpcap reads (classic
                    pcap in both byte orders, micro- and nanosecond, pcapng with enhanced and simple packet
                    blocks and two sections), cut and oversized records, another link type

Run it after changing the fixtures; the files it writes are committed (a few hundred KB at most). Needs
python3-scapy.
"""
import os
import random
import socket
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "dataplane"))
import make_fixtures as fx  # noqa: E402

SOURCE4, SOURCE6 = "198.18.0.1", "2001:db8:ffff::1"  # the balancer's default outer sources
BACKEND4, BACKEND6 = "10.0.1.11", "2001:db8:1::1"
BACKEND_MAC, LB_MAC = bytes.fromhex("020000000001"), bytes.fromhex("027063617000")


def record(frame, headroom=0, segs=0):
    assert len(frame) < 4096
    return struct.pack(">H", len(frame) | headroom << 12 | segs << 14) + frame


def bursts(items, rng):
    frames = [f.frame for f in items if len(f.frame) < 4096]
    out = []
    # Consecutive fixtures 8 at a time (small seeds mutate fast), then whole mixed bursts.
    for i in range(0, len(frames), 8):
        out.append(b"\x00" + b"".join(record(f) for f in frames[i:i + 8]))
    for k in range(6):
        pick = rng.sample(frames, min(32, len(frames)))
        out.append(bytes([k & 1]) + b"".join(record(f, headroom=rng.randrange(4) if k >= 3 else 0,
                                                    segs=rng.randrange(3) if k >= 4 else 0) for f in pick))
    # More than a burst: the pipeline must take 32 and leave the rest.
    out.append(b"\x00" + b"".join(record(f) for f in rng.sample(frames, 36)))
    return out


def checksum(data):
    if len(data) % 2:
        data += b"\x00"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff


def ip4(src, dst, proto, payload, tos=0):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, tos, 20 + len(payload), 0, 0x4000, 64, proto, 0,
                    socket.inet_aton(src), socket.inet_aton(dst))
    return h[:10] + struct.pack("!H", checksum(h)) + h[12:] + payload


def ip6(src, dst, nh, payload, tc=0, flow=0):
    return struct.pack("!IHBB", 6 << 28 | tc << 20 | flow, len(payload), nh, 64) + \
        socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst) + payload


def gue(inner, rng):
    """UDP + GUE + private data (docs/wire.md) around inner; UDP checksum 0 (the backend does not check it)."""
    h = rng.getrandbits(64)
    flags = rng.choice([0, 0, 1, 2, 3])
    hop = rng.choice([3, 3, 0, 7])
    pd = struct.pack("!HBBIQIBB2x", 0x5553, 1, flags, rng.randrange(1, 20), h, rng.getrandbits(32), hop, 0)
    g = bytes([0x06, 4 if inner[0] >> 4 == 4 else 41, 0, 0]) + pd
    return struct.pack("!HHHH", 0xc000 | (h >> 32) & 0x3fff, 6080, 8 + len(g) + len(inner), 0) + g + inner


def eth(ether_type, payload):
    return BACKEND_MAC + LB_MAC + struct.pack("!H", ether_type) + payload


def tunnels(items, rng):
    out, shapes = [], set()
    for f in items:
        if f.verdict != "vip" or not f.inner or len(f.inner) > 1400:
            continue
        shape = f.name.rstrip("0123456789-_")  # one of each kind: the many plain flows differ only by ports
        if shape in shapes:
            continue
        shapes.add(shape)
        out.append((f.name + "-gue4", eth(0x0800, ip4(SOURCE4, BACKEND4, 17, gue(f.inner, rng)))))
        out.append((f.name + "-gue6", eth(0x86dd, ip6(SOURCE6, BACKEND6, 17, gue(f.inner, rng)))))
        v = 4 if f.inner[0] >> 4 == 4 else 41
        if v == 4:
            out.append((f.name + "-ipip", eth(0x0800, ip4(SOURCE4, BACKEND4, 4, f.inner))))
        else:
            out.append((f.name + "-ip6ip6", eth(0x86dd, ip6(SOURCE6, BACKEND6, 41, f.inner))))
    return out


def pcap(frames, endian="<", magic=0xA1B2C3D4, linktype=1, snaplen=262144):
    out = struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)
    for i, f in enumerate(frames):
        out += struct.pack(endian + "IIII", 1000 + i, i, len(f), len(f)) + f
    return out


def pcapng_block(kind, body):
    body += b"\0" * (-len(body) % 4)
    return struct.pack("<II", kind, len(body) + 12) + body + struct.pack("<I", len(body) + 12)


def pcapng(frames, simple=False):
    out = pcapng_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    out += pcapng_block(1, struct.pack("<HHI", 1, 0, 65535))
    for i, f in enumerate(frames):
        if simple:
            out += pcapng_block(3, struct.pack("<I", len(f)) + f)
        else:
            out += pcapng_block(6, struct.pack("<IIIII", 0, 0, i, len(f), len(f)) + f)
    return out


def captures(items):
    frames = [f.frame for f in items[:8]]
    good = pcap(frames)
    return [
        ("pcap-le", good),
        ("pcap-be", pcap(frames, endian=">")),
        ("pcap-nano", pcap(frames, magic=0xA1B23C4D)),
        ("pcap-empty", pcap([])),
        ("pcap-cut-data", good[:-7]),
        ("pcap-cut-header", good[:24 + 16 + len(frames[0]) + 9]),
        ("pcap-oversized", pcap(frames[:1]) + struct.pack("<IIII", 0, 0, 262145, 262145) + b"\0" * 64),
        ("pcap-caplen-past-len", pcap(frames[:1])[:24] + struct.pack("<IIII", 0, 0, 60, 20) + bytes(60)),
        ("pcap-raw-ip", pcap([f[14:] for f in frames[:2]], linktype=101)),
        ("pcapng-epb", pcapng(frames)),
        ("pcapng-spb", pcapng(frames[:3], simple=True)),
        ("pcapng-two-sections", pcapng(frames[:2]) + pcapng(frames[2:4])),
        ("pcapng-cut", pcapng(frames)[:-5]),
    ]


def write(directory, named):
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(directory):
        os.unlink(os.path.join(directory, name))
    for name, data in named:
        with open(os.path.join(directory, name + ".bin"), "wb") as f:
            f.write(data)


def main():
    rng = random.Random(13)
    items = fx.main_fixtures()
    write(os.path.join(HERE, "pipeline_corpus"), [("burst-%02d" % i, b) for i, b in enumerate(bursts(items, rng))])
    write(os.path.join(HERE, "tunnel_corpus"), tunnels(items, rng))
    write(os.path.join(HERE, "capture_corpus"), captures(items))


if __name__ == "__main__":
    main()
