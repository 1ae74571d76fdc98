#!/usr/bin/env python3
"""Reference implementation of the understudy ordering contract (docs/ordering.md).

Written from the contract text alone, in plain Python, so that the C++ (and BPF)
implementations can be tested against something that does not share their code.

  ordering_ref.py selftest
  ordering_ref.py vectors > tests/core/ordering_vectors.json
  ordering_ref.py lookup --config FILE [--down ID[,ID...]]  < lines
  ordering_ref.py table  --config FILE --pool NAME [--down ID[,ID...]]

Standard library only (Python >= 3.11 for tomllib).
"""

import argparse
import ipaddress
import json
import math
import random
import struct
import sys
import tomllib

MASK64 = (1 << 64) - 1
PROTOCOLS = {"tcp": 6, "udp": 17}
STATES = ("enabled", "drain", "disabled")

# --------------------------------------------------------------------------- SipHash


def _rotl(x, b):
    return ((x << b) | (x >> (64 - b))) & MASK64


def siphash(key, msg, c=2, d=4):
    """SipHash-c-d of msg under a 16-byte key; returns the 64-bit result as an int
    (the 8 output bytes read little-endian, as the reference C code does)."""
    assert len(key) == 16
    k0, k1 = struct.unpack("<QQ", key)
    v0 = k0 ^ 0x736F6D6570736575
    v1 = k1 ^ 0x646F72616E646F6D
    v2 = k0 ^ 0x6C7967656E657261
    v3 = k1 ^ 0x7465646279746573

    def sipround():
        nonlocal v0, v1, v2, v3
        v0 = (v0 + v1) & MASK64
        v1 = _rotl(v1, 13) ^ v0
        v0 = _rotl(v0, 32)
        v2 = (v2 + v3) & MASK64
        v3 = _rotl(v3, 16) ^ v2
        v0 = (v0 + v3) & MASK64
        v3 = _rotl(v3, 21) ^ v0
        v2 = (v2 + v1) & MASK64
        v1 = _rotl(v1, 17) ^ v2
        v2 = _rotl(v2, 32)

    n = len(msg)
    full = n - n % 8
    # the last block: remaining bytes, zero padding, message length mod 256 in the top byte
    last = int.from_bytes(msg[full:], "little") | ((n & 0xFF) << 56)
    blocks = [int.from_bytes(msg[i:i + 8], "little") for i in range(0, full, 8)] + [last]
    for m in blocks:
        v3 ^= m
        for _ in range(c):
            sipround()
        v0 ^= m
    v2 ^= 0xFF
    for _ in range(d):
        sipround()
    return v0 ^ v1 ^ v2 ^ v3


def siphash13(key, msg):
    return siphash(key, msg, 1, 3)


# SipHash-2-4 reference vectors (vectors.h of the SipHash reference implementation,
# vectors_sip64): key 00 01 .. 0f, message 00 01 .. (n-1) for n = 0..63.
# Each entry is the 8 output bytes in output order (little-endian of the 64-bit result).
REFERENCE_SIP64 = """
310e0edd47db6f72 fd67dc93c539f874 5a4fa9d909806c0d 2d7efbd796666785
b7877127e09427cf 8da699cd64557618 cee3fe586e46c9cb 37d1018bf50002ab
6224939a79f5f593 b0e4a90bdf82009e f3b9dd94c5bb5d7a a7ad6b22462fb3f4
fbe50e86bc8f1e75 903d84c02756ea14 eef27a8e90ca23f7 e545be4961ca29a1
db9bc2577fcc2a3f 9447be2cf5e99a69 9cd38d96f0b3c14b bd6179a71dc96dbb
98eea21af25cd6be c7673b2eb0cbf2d0 883ea3e395675393 c8ce5ccd8c030ca8
94af49f6c650adb8 eab8858ade92e1bc f315bb5bb835d817 adcf6b0763612e2f
a5c91da7acaa4dde 716595876650a2a6 28ef495c53a387ad 42c341d8fa92d832
ce7cf2722f512771 e37859f94623f3a7 381205bb1ab0e012 ae97a10fd434e015
b4a31508beff4d31 81396229f0907902 4d0cf49ee5d4dcca 5c73336a76d8bf9a
d0a704536ba93e0e 925958fcd6420cad a915c29bc8067318 952b79f3bc0aa6d4
f21df2e41d4535f9 87577519048f53a9 10a56cf5dfcd9adb eb75095ccd986cd0
51a9cb9ecba312e6 96afadfc2ce666c7 72fe52975a4364ee 5a1645b276d592a1
b274cb8ebf87870a 6f9bb4203de7b381 eaecb2a30b22a87f 9924a43cc1315724
bd838d3aafbf8db7 0b1a2a3265d51aea 135079a3231ce660 932b2846e4d70666
e1915f5cb1eca46c f325965ca16d629f 575ff28e60381be5 724506eb4c328a95
""".split()
REFERENCE_KEY = bytes(range(16))


def reference_vectors():
    """[(key, msg, expected int)] for the 64 SipHash-2-4 reference vectors."""
    return [(REFERENCE_KEY, bytes(range(n)), int.from_bytes(bytes.fromhex(h), "little"))
            for n, h in enumerate(REFERENCE_SIP64)]


# SipHash-1-3 has no vectors from the SipHash authors; these two, key 16 zero bytes,
# agree with independent third-party implementations (e.g. Rust's SipHasher13 family).
SIP13_KNOWN = [(bytes(16), b"", 0xD1FBA762150C532C), (bytes(16), b"siphash", 0x8264CEECCB16BCBE)]


def hex64(v):
    return "%016x" % v


# --------------------------------------------------------------------------- the contract


def addr16(text):
    """16-byte form of an address: IPv6 as is, IPv4 as ::ffff:a.b.c.d."""
    a = ipaddress.ip_address(text)
    if a.version == 4:
        return b"\x00" * 10 + b"\xff\xff" + a.packed
    return a.packed


def session_key(src, sport, dst, dport, proto, affinity="flow"):
    """The 37-byte canonical session key."""
    if affinity == "client":
        sport = dport = 0
    return addr16(src) + addr16(dst) + struct.pack("!HHB", sport, dport, proto)


def bucket_of(session_hash, table_bits):
    return session_hash & ((1 << table_bits) - 1)


def server_u(secret, bucket, server_id):
    return siphash13(secret, struct.pack("<QI", bucket, server_id))


def score_of(u, weight):
    """weight / -ln(x), x = ((u >> 11) + 0.5) / 2^53, evaluated in IEEE double as C does."""
    x = (float(u >> 11) + 0.5) / 9007199254740992.0  # 2^53
    if weight == 0:
        return 0.0
    denom = -math.log(x)
    if denom == 0.0:  # only if u >> 11 == 2^53 - 1 (x rounds to 1.0): the contract says +infinity
        return math.inf
    return weight / denom


def ordering(secret, bucket, servers):
    """servers: iterable of (id, weight). Returns ids, best first:
    score descending, then u descending, then id ascending. Weight 0 scores 0, so
    those servers come after every positive-weight server, by u."""
    ranked = []
    for sid, weight in servers:
        u = server_u(secret, bucket, sid)
        ranked.append((-score_of(u, weight), -u, sid))
    ranked.sort()
    return [sid for _, _, sid in ranked]


# --------------------------------------------------------------------------- config


class ConfigError(Exception):
    pass


def load_config(path):
    with open(path, "rb") as f:
        cfg = tomllib.load(f)
    try:
        secret = bytes.fromhex(cfg["cluster"]["secret"])
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError("[cluster] secret: missing or not hex (%s)" % e)
    if len(secret) != 16:
        raise ConfigError("[cluster] secret must be 32 hex digits (16 bytes)")
    pools = {}
    for p in cfg.get("pool", []):
        name = p["name"]
        backends = []
        for b in p.get("backend", []):
            state = b.get("state", "enabled")
            if state not in STATES:
                raise ConfigError("pool %s backend %s: bad state %r" % (name, b.get("id"), state))
            backends.append({"id": int(b["id"]), "weight": int(b.get("weight", 100)), "state": state})
        pools[name] = {"name": name, "table_bits": int(p.get("table_bits", 20)), "backends": backends}
    vips = {}
    for v in cfg.get("vip", []):
        proto = PROTOCOLS[v.get("protocol", "tcp").lower()]
        if v["pool"] not in pools:
            raise ConfigError("vip %s:%s: unknown pool %r" % (v["address"], v["port"], v["pool"]))
        key = (addr16(v["address"]), int(v["port"]), proto)
        vips[key] = {"pool": v["pool"], "affinity": v.get("affinity", "flow")}
    return secret, pools, vips


class Pool:
    """A pool's view: ordering per bucket (cached), primary and serving."""

    def __init__(self, secret, pool, down):
        self.secret = secret
        self.table_bits = pool["table_bits"]
        # drain -> effective weight 0; disabled keeps its weight but is not operational
        self.servers = [(b["id"], 0 if b["state"] == "drain" else b["weight"]) for b in pool["backends"]]
        self.operational = {b["id"] for b in pool["backends"]
                            if b["state"] != "disabled" and b["id"] not in down}
        self.cache = {}

    def ordering(self, bucket):
        o = self.cache.get(bucket)
        if o is None:
            o = self.cache[bucket] = ordering(self.secret, bucket, self.servers)
        return o

    def primary_serving(self, bucket):
        o = self.ordering(bucket)
        primary = o[0] if o else None
        serving = next((sid for sid in o if sid in self.operational), None)
        return o, primary, serving


def parse_down(values):
    down = set()
    for v in values or []:
        down.update(int(x) for x in v.split(",") if x.strip())
    return down


# --------------------------------------------------------------------------- commands


def cmd_selftest(_args):
    bad = 0
    for n, (key, msg, want) in enumerate(reference_vectors()):
        got = siphash(key, msg, 2, 4)
        if got != want:
            print("siphash24 vector %d: got %s want %s" % (n, hex64(got), hex64(want)))
            bad += 1
    assert hex64(reference_vectors()[0][2]) == "726fdb47dd0e0e31"
    for key, msg, want in SIP13_KNOWN:
        got = siphash13(key, msg)
        if got != want:
            print("siphash13 %r: got %s want %s" % (msg, hex64(got), hex64(want)))
            bad += 1
    if bad:
        print("selftest FAILED: %d mismatches" % bad)
        return 1
    print("selftest ok: 64 SipHash-2-4 reference vectors, %d SipHash-1-3 known answers" % len(SIP13_KNOWN))
    return 0


def cmd_lookup(args):
    secret, pools, vips = load_config(args.config)
    down = parse_down(args.down)
    views = {name: Pool(secret, p, down) for name, p in pools.items()}
    out = sys.stdout
    for line in sys.stdin:
        try:
            f = line.split()
            if len(f) != 5:
                raise ValueError("expected: SRC_ADDR SRC_PORT DST_ADDR DST_PORT PROTO")
            src, sport, dst, dport, proto = f[0], int(f[1]), f[2], int(f[3]), f[4].lower()
            if not (0 <= sport <= 65535 and 0 <= dport <= 65535):
                raise ValueError("port out of range")
            if proto not in PROTOCOLS:
                raise ValueError("protocol must be tcp or udp")
            vip = vips.get((addr16(dst), dport, PROTOCOLS[proto]))
            if vip is None:
                raise LookupError("no VIP %s %d %s" % (dst, dport, proto))
            view = views[vip["pool"]]
            key = session_key(src, sport, dst, dport, PROTOCOLS[proto], vip["affinity"])
            h = siphash13(secret, key)
            b = bucket_of(h, view.table_bits)
            o, primary, serving = view.primary_serving(b)
            res = {"session_hash": hex64(h), "bucket": b, "ordering": o,
                   "primary": primary, "serving": serving}
        except (ValueError, LookupError) as e:
            res = {"error": str(e)}
        out.write(json.dumps(res) + "\n")
    return 0


def cmd_table(args):
    secret, pools, _ = load_config(args.config)
    if args.pool not in pools:
        print("no pool %r" % args.pool, file=sys.stderr)
        return 2
    view = Pool(secret, pools[args.pool], parse_down(args.down))
    w = sys.stdout.write
    for b in range(1 << view.table_bits):
        _, primary, serving = view.primary_serving(b)
        w("%d %s %s\n" % (b, "-" if primary is None else primary, "-" if serving is None else serving))
        view.cache.clear()
    return 0


# --------------------------------------------------------------------------- vectors


def make_vectors():
    rng = random.Random(1)

    def rbytes(n):
        return bytes(rng.getrandbits(8) for _ in range(n))

    def raddr(v6):
        if v6:
            return str(ipaddress.IPv6Address(rbytes(16)))
        return str(ipaddress.IPv4Address(rbytes(4)))

    doc = {"contract": "understudy-ordering-v1"}

    doc["siphash24"] = [{"key": k.hex(), "msg": m.hex(), "hash": hex64(h)}
                        for k, m, h in reference_vectors()]

    sip13 = [{"key": k.hex(), "msg": m.hex(), "hash": hex64(h)} for k, m, h in SIP13_KNOWN]
    for n in (0, 1, 2, 3, 7, 8, 9, 12, 15, 16, 17, 23, 24, 31, 32, 33, 37, 39, 40):
        k, m = rbytes(16), rbytes(n)
        sip13.append({"key": k.hex(), "msg": m.hex(), "hash": hex64(siphash13(k, m))})
    doc["siphash13"] = sip13

    secret = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
    fixed = [  # (src, sport, dst, dport, proto, affinity, table_bits)
        ("192.0.2.1", 40000, "198.51.100.10", 80, 6, "flow", 20),
        ("192.0.2.1", 40000, "198.51.100.10", 80, 6, "client", 20),
        ("192.0.2.1", 40000, "198.51.100.10", 53, 17, "flow", 16),
        ("2001:db8::1", 40000, "2001:db8:0:1::10", 443, 6, "flow", 20),
        ("2001:db8::1", 40000, "2001:db8:0:1::10", 443, 17, "client", 24),
        ("10.0.0.1", 0, "10.0.0.2", 0, 17, "flow", 8),
    ]
    cases = [(secret,) + c for c in fixed]
    for i in range(20):
        v6 = i % 2 == 1
        cases.append((rbytes(16), raddr(v6), rng.randrange(1, 65536), raddr(v6), rng.randrange(1, 65536),
                      rng.choice((6, 17)), "client" if i % 4 >= 2 else "flow", (8, 16, 20, 24)[i % 4]))
    keys = []
    for sec, src, sport, dst, dport, proto, aff, bits in cases:
        key = session_key(src, sport, dst, dport, proto, aff)
        h = siphash13(sec, key)
        keys.append({"secret": sec.hex(), "src": src, "sport": sport, "dst": dst, "dport": dport,
                     "proto": proto, "affinity": aff, "table_bits": bits, "key": key.hex(),
                     "session_hash": hex64(h), "bucket": bucket_of(h, bits)})
    doc["session_keys"] = keys

    scores = []
    fixed_scores = [(secret, 0, 1, 100), (secret, 0, 2, 100), (secret, 1, 1, 100), (secret, 0, 1, 0),
                    (secret, (1 << 20) - 1, 4294967294, 1), (secret, (1 << 64) - 1, 0, 65535)]
    for i in range(20):
        fixed_scores.append((rbytes(16), rng.getrandbits(rng.choice((8, 16, 20, 24, 64))),
                             rng.getrandbits(32) % 4294967295, rng.choice((0, 1, 7, 50, 100, 250, 1000, 65535))))
    for sec, b, sid, w in fixed_scores:
        u = server_u(sec, b, sid)
        scores.append({"secret": sec.hex(), "bucket": b, "id": sid, "weight": w,
                       "u": hex64(u), "score": score_of(u, w)})
    doc["scores"] = scores

    orderings = []
    for i in range(32):
        sec = secret if i < 4 else rbytes(16)
        b = rng.getrandbits((8, 16, 20, 24)[i % 4])
        n = 1 + i % 12
        if i % 3 == 0:
            ids = list(range(1, n + 1))
        else:
            ids = rng.sample(range(4294967295), n)
            if i % 5 == 0:
                ids[0] = 4294967294
        kind = i % 4
        if kind == 0:      # equal weights
            weights = [100] * n
        elif kind == 1:    # unequal weights
            weights = [rng.choice((1, 10, 50, 100, 200, 1000)) for _ in ids]
        elif kind == 2:    # some weight 0 (several, to exercise the u tie rule)
            weights = [0 if rng.random() < 0.5 else rng.choice((1, 100, 300)) for _ in ids]
        else:              # many weight 0, or all
            weights = [0] * n if i % 8 == 3 else [0 if j % 3 else 100 for j in range(n)]
        servers = list(zip(ids, weights))
        orderings.append({"secret": sec.hex(), "bucket": b,
                          "servers": [{"id": s, "weight": w} for s, w in servers],
                          "ordering": ordering(sec, b, servers)})
    doc["orderings"] = orderings
    return doc


def cmd_vectors(_args):
    json.dump(make_vectors(), sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("selftest").set_defaults(fn=cmd_selftest)
    sub.add_parser("vectors").set_defaults(fn=cmd_vectors)
    p = sub.add_parser("lookup")
    p.add_argument("--config", required=True)
    p.add_argument("--down", action="append", help="comma-separated backend ids that are down")
    p.set_defaults(fn=cmd_lookup)
    p = sub.add_parser("table")
    p.add_argument("--config", required=True)
    p.add_argument("--pool", required=True)
    p.add_argument("--down", action="append", help="comma-separated backend ids that are down")
    p.set_defaults(fn=cmd_table)
    args = ap.parse_args(argv)
    try:
        return args.fn(args)
    except BrokenPipeError:  # e.g. piped into head
        sys.stderr.close()
        return 0
    except (ConfigError, KeyError, OSError, tomllib.TOMLDecodeError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
