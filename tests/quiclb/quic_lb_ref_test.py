#!/usr/bin/python3
"""QUIC-LB: the independent reference tools/quic_lb_ref.py against the draft's vectors, the C library (through
`understudyctl quic-cid encode|decode --json`) against the reference over random configurations of all three
algorithms, and what `understudyctl check` says about bad [[vip.quic_lb]] tables."""
import importlib.util
import json
import os
import random
import subprocess
import sys
import tempfile
import unittest

CTL = sys.argv.pop(1) if len(sys.argv) > 1 else "build/src/cli/understudyctl"
ROOT = os.environ.get("UNDERSTUDY_SOURCE_ROOT",
                      os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

_spec = importlib.util.spec_from_file_location("quic_lb_ref", os.path.join(ROOT, "tools", "quic_lb_ref.py"))
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)

HEADER = """[cluster]
secret = "00112233445566778899aabbccddeeff"
"""


def run(*args):
    return subprocess.run([CTL, *args], capture_output=True, text=True, timeout=60)


def ctl_json(*args):
    r = run(*args, "--json")
    if r.returncode not in (0, 1) or not r.stdout.strip():
        raise AssertionError("understudyctl %s: rc %d: %s" % (" ".join(args), r.returncode, r.stderr))
    return r.returncode, json.loads(r.stdout)


class Pool:
    """A pool of backends and, per configuration, their server IDs as the config file will say them."""

    def __init__(self, rng, size):
        self.ids = rng.sample(range(1, 5000), size)


def random_config(rng, codepoint, algorithm):
    if algorithm == "single-pass":
        sid_len = rng.randint(1, 12)
        nonce_len = 16 - sid_len
    else:
        while True:
            sid_len = rng.randint(1, 15)
            nonce_len = rng.randint(4, 19 - sid_len)
            if algorithm == "plaintext" or sid_len + nonce_len != 16:
                break
    key = rng.randbytes(16) if algorithm != "plaintext" else None
    return ref.Config(codepoint, sid_len, nonce_len, key)


def server_ids_for(rng, config, backend_ids):
    """Explicit random server IDs for some backends; the others derive from their id when it fits."""
    taken, explicit, effective = set(), {}, {}
    for bid in backend_ids:
        derived = bid.to_bytes(config.sid_len, "big") if bid < 256 ** config.sid_len else None
        if derived is not None and rng.random() < 0.5 and derived not in taken:
            sid = derived
        else:
            while True:
                sid = rng.randbytes(config.sid_len)
                if sid not in taken and sid not in [b.to_bytes(config.sid_len, "big") for b in backend_ids
                                                    if b < 256 ** config.sid_len]:
                    break
            explicit[bid] = sid
        taken.add(sid)
        effective[bid] = sid
    return explicit, effective


def vip_toml(address, port, configs):
    out = '[[vip]]\naddress = "%s"\nport = %d\nprotocol = "udp"\npool = "p"\n' % (address, port)
    for config, encode_length, explicit in configs:
        out += "  [[vip.quic_lb]]\n  codepoint = %d\n  server_id_len = %d\n  nonce_len = %d\n" % (
            config.codepoint, config.sid_len, config.nonce_len)
        if config.key is not None:
            out += '  key = "%s"\n' % config.key.hex()
        out += "  encode_length = %s\n" % ("true" if encode_length else "false")
        if explicit:
            out += "  server_ids = { %s }\n" % ", ".join('%d = "%s"' % (b, s.hex()) for b, s in explicit.items())
    return out


class ReferenceTest(unittest.TestCase):
    def test_reference_passes_the_draft_vectors(self):
        self.assertEqual(ref.selftest(), 0)

    def test_reference_odd_and_even_round_trip(self):
        rng = random.Random(7)
        for n in range(5, 20):
            key = rng.randbytes(16)
            plain = rng.randbytes(n)
            self.assertEqual(ref.four_pass_decrypt(key, ref.four_pass_encrypt(key, plain)), plain)


class CliAgainstReferenceTest(unittest.TestCase):
    """Random configurations, a few per VIP at distinct codepoints, all three algorithms; every CID the C
    library mints equals the reference's, and every CID the reference mints decodes to its server in C."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()
        rng = random.Random(20261205)
        cls.backends = rng.sample(range(1, 300), 8)
        text = HEADER + '[[pool]]\nname = "p"\n'
        for i, bid in enumerate(cls.backends):
            text += '  [[pool.backend]]\n  id = %d\n  address = "10.1.0.%d"\n' % (bid, i + 1)
        cls.vips = []  # (vip spec, [(config, encode_length, effective server ids)])
        algorithms = ["plaintext", "single-pass", "four-pass"]
        for v in range(30):
            codepoints = rng.sample(range(7), rng.randint(1, 3))
            configs = []
            for k, cp in enumerate(codepoints):
                config = random_config(rng, cp, algorithms[(v + k) % 3])
                explicit, effective = server_ids_for(rng, config, cls.backends)
                configs.append((config, rng.random() < 0.5, explicit, effective))
            spec = "192.0.2.%d:443/udp" % (v + 1)
            text += vip_toml("192.0.2.%d" % (v + 1), 443, [(c, e, x) for c, e, x, _ in configs])
            cls.vips.append((spec, configs))
        cls.config = os.path.join(cls.dir.name, "quic.toml")
        with open(cls.config, "w") as f:
            f.write(text)
        cls.rng = rng

    def test_config_is_valid(self):
        r = run("check", "--config", self.config)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_encode_matches_reference(self):
        rng, count, seen = random.Random(1), 0, set()
        for spec, configs in self.vips:
            for config, encode_length, _, effective in configs:
                for _ in range(4):
                    bid = rng.choice(self.backends)
                    nonce = rng.randbytes(config.nonce_len)
                    rc, out = ctl_json("quic-cid", "encode", "--config", self.config, "--vip", spec,
                                       "--codepoint", str(config.codepoint), "--server", str(bid),
                                       "--nonce", nonce.hex())
                    self.assertEqual(rc, 0, out)
                    cid = bytes.fromhex(out["cid"])
                    want = ref.encode(config, effective[bid], nonce)
                    what = "%s codepoint %d %s sid %d+%d" % (spec, config.codepoint, config.algorithm,
                                                              config.sid_len, config.nonce_len)
                    self.assertEqual(out["algorithm"], config.algorithm, what)
                    self.assertEqual(out["server_id"], effective[bid].hex(), what)
                    if encode_length:
                        self.assertEqual(cid, want, what)
                    else:  # the low 5 bits are random
                        self.assertEqual(cid[0] >> 5, want[0] >> 5, what)
                        self.assertEqual(cid[1:], want[1:], what)
                    seen.add(config.algorithm)
                    count += 1
        self.assertGreaterEqual(count, 200)
        self.assertEqual(seen, {"plaintext", "single-pass", "four-pass"})

    def test_decode_of_reference_cids(self):
        rng, count = random.Random(2), 0
        for spec, configs in self.vips:
            for config, _, _, effective in configs:
                for _ in range(4):
                    bid = rng.choice(self.backends)
                    nonce = rng.randbytes(config.nonce_len)
                    cid = ref.encode(config, effective[bid], nonce, rng.choice([None, rng.randrange(32)]))
                    cid += rng.randbytes(rng.randint(0, 20 - len(cid)))  # a server may append octets
                    rc, out = ctl_json("quic-cid", "decode", "--config", self.config, "--vip", spec, cid.hex())
                    self.assertEqual(rc, 0, out)
                    self.assertTrue(out["routable"], out)
                    self.assertEqual(out["server"], bid, out)
                    self.assertEqual(out["server_id"], effective[bid].hex())
                    self.assertEqual(out["nonce"], nonce.hex())
                    self.assertEqual(out["codepoint"], config.codepoint)
                    count += 1
        self.assertGreaterEqual(count, 200)

    def test_random_nonce_round_trips(self):
        spec, configs = self.vips[0]
        config = configs[0][0]
        cids = set()
        for bid in self.backends[:4]:
            rc, out = ctl_json("quic-cid", "encode", "--config", self.config, "--vip", spec,
                               "--codepoint", str(config.codepoint), "--server", str(bid))
            self.assertEqual(rc, 0)
            cids.add(out["cid"])
            sid, nonce = ref.decrypt(config, bytes.fromhex(out["cid"]))
            self.assertEqual(nonce.hex(), out["nonce"])
            rc, back = ctl_json("quic-cid", "decode", "--config", self.config, "--vip", spec, out["cid"])
            self.assertEqual(back["server"], bid)
        self.assertEqual(len(cids), 4)

    def test_unroutable(self):
        spec, configs = self.vips[0]
        config = configs[0][0]
        used = {c.codepoint for c, _, _, _ in configs}
        free = next(cp for cp in range(7) if cp not in used)
        good = ref.encode(config, configs[0][3][self.backends[0]], bytes(config.nonce_len))
        cases = [
            ("", "empty"),
            ("ff" + good[1:].hex(), "codepoint 7"),
            ("%02x" % (free << 5) + good[1:].hex(), "no QUIC-LB configuration with codepoint %d" % free),
            (good[:-1].hex(), "shorter than"),
            (good.hex() + "00" * (21 - len(good)), "longer than 20"),
        ]
        for text, reason in cases:
            rc, out = ctl_json("quic-cid", "decode", "--config", self.config, "--vip", spec, text)
            self.assertEqual(rc, 1, out)
            self.assertFalse(out["routable"])
            self.assertIn(reason, out["reason"])
            self.assertIsNone(out["server"])
        # A server ID no backend has.
        taken = set(configs[0][3].values())
        sid = next(s for s in (bytes([i]) * config.sid_len for i in range(256)) if s not in taken)
        rc, out = ctl_json("quic-cid", "decode", "--config", self.config, "--vip", spec,
                           ref.encode(config, sid, bytes(config.nonce_len)).hex())
        self.assertEqual(rc, 1)
        self.assertIn("names no backend", out["reason"])
        self.assertEqual(out["server_id"], sid.hex())

    def test_human_output_and_usage(self):
        spec, configs = self.vips[0]
        config = configs[0][0]
        r = run("quic-cid", "encode", "--config", self.config, "--vip", spec, "--codepoint",
                str(config.codepoint), "--server", str(self.backends[0]))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("cid ", r.stdout)
        cid = r.stdout.split()[1]
        r = run("quic-cid", "decode", "--config", self.config, "--vip", spec, cid)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("server        %d (" % self.backends[0], r.stdout)
        r = run("quic-cid", "decode", "--config", self.config, "--vip", spec, "zz")
        self.assertEqual(r.returncode, 2)
        r = run("quic-cid", "encode", "--config", self.config, "--vip", spec, "--codepoint",
                str(config.codepoint), "--server", str(self.backends[0]), "--nonce", "00")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--nonce", r.stderr)
        r = run("quic-cid", "encode", "--config", self.config, "--vip", spec, "--codepoint", "7", "--server", "1")
        self.assertEqual(r.returncode, 2)
        r = run("quic-cid", "decode", "--config", self.config, "--vip", "198.51.100.1:443/udp", "00")
        self.assertEqual(r.returncode, 1)
        self.assertIn("no VIP", r.stderr)
        r = run("quic-cid", "encode", "--config", self.config, "--vip", spec, "--codepoint",
                str(config.codepoint), "--server", "999999")
        self.assertEqual(r.returncode, 1)
        self.assertIn("no backend with id 999999", r.stderr)


BASE = HEADER + """
[[pool]]
name = "p"
  [[pool.backend]]
  id = 1
  address = "10.1.0.1"
  [[pool.backend]]
  id = 2
  address = "10.1.0.2"
  [[pool.backend]]
  id = 300
  address = "10.1.0.3"

[[vip]]
address = "192.0.2.1"
port = 443
protocol = "udp"
pool = "p"
"""


class CheckTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()

    def check(self, text):
        path = os.path.join(self.dir.name, "c.toml")
        with open(path, "w") as f:
            f.write(text)
        r = run("check", "--config", path)
        return path, r

    def problems(self, quic_lb, base=BASE):
        """(path, lines of stderr) for BASE plus the given [[vip.quic_lb]] text."""
        path, r = self.check(base + quic_lb)
        self.assertEqual(r.returncode, 1, "expected problems, got: " + r.stdout)
        return path, r.stderr.strip().splitlines()

    def assertProblem(self, lines, path, text, line_of, field, message, offset=0):
        """A problem of `field` at the line holding `line_of` (plus offset) whose message has `message`."""
        line = next(i for i, l in enumerate(text.splitlines(), 1) if line_of in l) + offset
        want = "%s:%d: %s: " % (path, line, field)
        self.assertTrue(any(l.startswith(want) and message in l for l in lines),
                        "want %r with %r in:\n%s" % (want, message, "\n".join(lines)))

    def test_valid(self):
        quic = """  [[vip.quic_lb]]
  codepoint = 0
  server_id_len = 2
  nonce_len = 6
  key = "8f95f09245765f80256934e50c66207f"
  server_ids = { 300 = "0a0b" }
  [[vip.quic_lb]]
  codepoint = 1
  server_id_len = 1
  nonce_len = 4
  server_ids = { 300 = "03" }
"""
        path, r = self.check(BASE + quic)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_codepoints(self):
        quic = """  [[vip.quic_lb]]
  codepoint = 2
  server_id_len = 2
  nonce_len = 6
  [[vip.quic_lb]]
  codepoint = 2 # again
  server_id_len = 2
  nonce_len = 6
  [[vip.quic_lb]]
  codepoint = 7
  server_id_len = 2
  nonce_len = 6
  [[vip.quic_lb]]
  codepoint = 9
  server_id_len = 2
  nonce_len = 6
"""
        path, lines = self.problems(quic)
        text = BASE + quic
        self.assertProblem(lines, path, text, "codepoint = 2 # again", "vip[0].quic_lb[1].codepoint",
                           "duplicate codepoint 2, also used by vip[0].quic_lb[0]")
        self.assertProblem(lines, path, text, "codepoint = 7", "vip[0].quic_lb[2].codepoint", "reserved")
        self.assertProblem(lines, path, text, "codepoint = 9", "vip[0].quic_lb[3].codepoint", "must be 0-6, not 9")

    def test_lengths(self):
        quic = """  [[vip.quic_lb]]
  codepoint = 0
  server_id_len = 0
  nonce_len = 3
  [[vip.quic_lb]]
  codepoint = 1
  server_id_len = 16
  nonce_len = 19
  [[vip.quic_lb]]
  codepoint = 2
  server_id_len = 10
  nonce_len = 10
  [[vip.quic_lb]]
  codepoint = 3
  nonce_len = 8
"""
        path, lines = self.problems(quic)
        text = BASE + quic
        self.assertProblem(lines, path, text, "server_id_len = 0", "vip[0].quic_lb[0].server_id_len", "must be 1-15")
        self.assertProblem(lines, path, text, "nonce_len = 3", "vip[0].quic_lb[0].nonce_len", "must be 4-18")
        self.assertProblem(lines, path, text, "server_id_len = 16", "vip[0].quic_lb[1].server_id_len", "must be 1-15")
        self.assertProblem(lines, path, text, "nonce_len = 19", "vip[0].quic_lb[1].nonce_len", "must be 4-18")
        self.assertProblem(lines, path, text, "nonce_len = 10", "vip[0].quic_lb[2].nonce_len", "at most 19")
        # a missing key is reported at its table's header, the line before
        self.assertProblem(lines, path, text, "codepoint = 3", "vip[0].quic_lb[3].server_id_len", "is required", -1)

    def test_key_and_server_ids(self):
        quic = """  [[vip.quic_lb]]
  codepoint = 0
  server_id_len = 1
  nonce_len = 8
  key = "not-hex-not-hex-not-hex-not-hex!"
  [[vip.quic_lb]]
  codepoint = 1
  server_id_len = 1
  nonce_len = 8
  key = "0011"
  [[vip.quic_lb]]
  codepoint = 2
  server_id_len = 1
  nonce_len = 8
  server_ids = { 300 = "02" }
  [[vip.quic_lb]]
  codepoint = 3
  server_id_len = 2
  nonce_len = 8
  server_ids = { 1 = "0a", 2 = "xyzw", 7 = "0007", x = "0001" }
"""
        path, lines = self.problems(quic)
        text = BASE + quic
        self.assertProblem(lines, path, text, "key = \"not-hex", "vip[0].quic_lb[0].key", "hex digits only")
        self.assertProblem(lines, path, text, "key = \"0011\"", "vip[0].quic_lb[1].key", "32 hex digits")
        self.assertProblem(lines, path, text, "server_ids = { 300 = \"02\" }", "vip[0].quic_lb[2].server_ids.300",
                           "server ID 02 of backend 300 is also that of backend 2 (derived from its id)")
        self.assertProblem(lines, path, text, "xyzw", "vip[0].quic_lb[3].server_ids.1",
                           "server ID 0a is 1 octets; server_id_len is 2")
        self.assertProblem(lines, path, text, "xyzw", "vip[0].quic_lb[3].server_ids.2", "is not a server ID in hex")
        self.assertProblem(lines, path, text, "xyzw", "vip[0].quic_lb[3].server_ids.7", "no backend with id 7")
        self.assertProblem(lines, path, text, "xyzw", "vip[0].quic_lb[3].server_ids.x", "keys are backend ids")

    def test_id_does_not_fit(self):
        quic = """  [[vip.quic_lb]]
  codepoint = 0
  server_id_len = 1
  nonce_len = 8
"""
        path, lines = self.problems(quic)
        self.assertProblem(lines, path, BASE + quic, "server_id_len = 1", "vip[0].quic_lb[0].server_id_len",
                           "backend id 300 (pool[0].backend[2] at line")
        # Given explicitly, it fits.
        path, r = self.check(BASE + quic + '  server_ids = { 300 = "ff" }\n')
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_not_udp(self):
        base = BASE.replace('protocol = "udp"', 'protocol = "tcp"')
        quic = """  [[vip.quic_lb]]
  codepoint = 0
  server_id_len = 2
  nonce_len = 8
"""
        path, lines = self.problems(quic, base)
        self.assertProblem(lines, path, base + quic, "[[vip.quic_lb]]", "vip[0].quic_lb",
                           'QUIC-LB needs protocol = "udp"')

    def test_more_than_seven(self):
        quic = "".join("  [[vip.quic_lb]]\n  codepoint = %d\n  server_id_len = 2\n  nonce_len = 8\n" % (i % 7)
                       for i in range(8))
        path, lines = self.problems(quic)
        self.assertTrue(any("vip[0].quic_lb: 8 configurations; at most 7" in l for l in lines), lines)
        self.assertTrue(any("vip[0].quic_lb[7].codepoint: duplicate codepoint 0" in l for l in lines), lines)

    def test_unknown_key_and_wrong_types(self):
        quic = """  [[vip.quic_lb]]
  codepoint = 0
  server_id_len = 2
  nonce_len = 8
  nonce_length = 8
  encode_length = "yes"
  server_ids = { 1 = 10 }
"""
        path, lines = self.problems(quic)
        text = BASE + quic
        self.assertProblem(lines, path, text, "nonce_length", "vip[0].quic_lb[0].nonce_length", "unknown key")
        self.assertProblem(lines, path, text, "encode_length", "vip[0].quic_lb[0].encode_length", "must be a boolean")
        self.assertProblem(lines, path, text, "server_ids", "vip[0].quic_lb[0].server_ids.1", "must be a string")


if __name__ == "__main__":
    unittest.main(verbosity=2)
