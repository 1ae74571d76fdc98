#!/usr/bin/python3
"""understudyctl plan, run as a process, against tables from the independent oracle tools/ordering_ref.py."""
import json
import os
import re
import subprocess
import sys
import tempfile
import unittest
from fractions import Fraction

CTL = sys.argv.pop(1) if len(sys.argv) > 1 else "build/src/cli/understudyctl"
ROOT = os.environ.get("UNDERSTUDY_SOURCE_ROOT", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
ORACLE = os.path.join(ROOT, "tools", "ordering_ref.py")

HEAD = """
[cluster]
secret = "00112233445566778899aabbccddeeff"
"""


def pool(name, bits, backends):
    """backends: [(id, weight, state)]"""
    s = f'\n[[pool]]\nname = "{name}"\ntable_bits = {bits}\n'
    for i, w, st in backends:
        s += f'  [[pool.backend]]\n  id = {i}\n  address = "10.{i // 256}.{i % 256}.1"\n  weight = {w}\n  state = "{st}"\n'
    return s


VIP = '\n[[vip]]\naddress = "192.0.2.10"\nport = 80\nprotocol = "tcp"\npool = "web"\n'

WEB = [(1, 100, "enabled"), (2, 200, "enabled"), (3, 100, "enabled"), (4, 50, "drain"), (5, 100, "enabled")]
DNS = [(1, 100, "enabled"), (9, 300, "enabled")]
CURRENT = HEAD + pool("web", 10, WEB) + pool("dns", 9, DNS) + pool("old", 8, [(1, 100, "enabled")]) + VIP
# web: 3 disabled, 5 weight 100 -> 300, 6 added; dns unchanged; old removed; new added
NEXT_WEB = [(1, 100, "enabled"), (2, 200, "enabled"), (3, 100, "disabled"), (4, 50, "drain"), (5, 300, "enabled"),
            (6, 100, "enabled")]
NEXT = HEAD + pool("web", 10, NEXT_WEB) + pool("dns", 9, DNS) + pool("new", 8, [(7, 100, "enabled")]) + VIP


def run(*args):
    return subprocess.run([CTL, *args], capture_output=True, text=True, timeout=300)


def oracle_table(config, pool_name, down):
    """{bucket: serving id or None} from the reference implementation."""
    args = ["/usr/bin/python3", ORACLE, "table", "--config", config, "--pool", pool_name]
    if down:
        args += ["--down", down]
    r = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    out = []
    for line in r.stdout.splitlines():
        _, _, serving = line.split()
        out.append(None if serving == "-" else int(serving))
    return out


def ideal(before, after, down):
    """Total variation between the ideal serving shares, as exact fractions; before/after: [(id, w, state)]."""
    def shares(backends):
        op = {i: (0 if st == "drain" else w) for i, w, st in backends if st != "disabled" and i not in down}
        if not op:
            return {None: Fraction(1)}
        total = sum(op.values())
        return {i: Fraction(w, total) if total else Fraction(1, len(op)) for i, w in op.items()}
    a, b = shares(before), shares(after)
    return sum(max(Fraction(0), a[i] - b.get(i, 0)) for i in a)


class PlanTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()
        cls.current = cls.write("current.toml", CURRENT)
        cls.next = cls.write("next.toml", NEXT)

    @classmethod
    def write(cls, name, text):
        path = os.path.join(cls.dir.name, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def plan_json(self, *extra):
        r = run("plan", "--config", self.current, "--new", self.next, "--json", *extra)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def check_against_oracle(self, down):
        got = self.plan_json(*(["--down", down] if down else []))
        for key in ("moved", "ideal", "pools", "backends"):
            self.assertIn(key, got)
        down_ids = {int(x) for x in down.split(",")} if down else set()
        pools = {p["name"]: p for p in got["pools"]}
        self.assertEqual(list(pools), ["web", "dns", "old", "new"])
        backends = {(b["pool"], b["id"]): b for b in got["backends"]}

        moved_total, buckets_total, ideal_total = 0, 0, Fraction(0)
        for name, before, after in (("web", WEB, NEXT_WEB), ("dns", DNS, DNS)):
            a = oracle_table(self.current, name, down)
            b = oracle_table(self.next, name, down)
            n = len(a)
            moved = sum(1 for x, y in zip(a, b) if x != y)
            p = pools[name]
            self.assertEqual(p["buckets"], n)
            self.assertEqual(p["moved_buckets"], moved, name)
            self.assertEqual(p["moved"], moved / n)
            want_ideal = ideal(before, after, down_ids)
            self.assertAlmostEqual(p["ideal"], float(want_ideal), places=12)
            for sid in {i for i, _, _ in before} | {i for i, _, _ in after}:
                bk = backends[(name, sid)]
                self.assertEqual(bk["share_before"], a.count(sid) / n, (name, sid))
                self.assertEqual(bk["share_after"], b.count(sid) / n, (name, sid))
                self.assertEqual(bk["moved_away"], sum(1 for x, y in zip(a, b) if x == sid and y != sid) / n)
                self.assertEqual(bk["moved_in"], sum(1 for x, y in zip(a, b) if y == sid and x != sid) / n)
                self.assertIn("address", bk)
            moved_total += moved
            buckets_total += n
            ideal_total += want_ideal * n

        # removed pool: every bucket moves, ideal 1; added pool: listed, not in the totals
        self.assertEqual(pools["old"]["moved"], 1.0)
        self.assertEqual(pools["old"]["ideal"], 1.0)
        self.assertIn("removed", pools["old"]["note"])
        self.assertEqual(pools["new"]["moved"], 0.0)
        self.assertEqual(pools["new"]["buckets"], 0)
        self.assertIn("added", pools["new"]["note"])
        moved_total += 256
        buckets_total += 256
        ideal_total += 256

        self.assertEqual(got["buckets"], buckets_total)
        self.assertEqual(got["moved_buckets"], moved_total)
        self.assertEqual(got["moved"], moved_total / buckets_total)
        self.assertAlmostEqual(got["ideal"], float(ideal_total / buckets_total), places=12)
        self.assertEqual(backends[("web", 3)]["note"], "enabled -> disabled")
        self.assertEqual(backends[("web", 6)]["note"], "added")
        self.assertEqual(backends[("web", 6)]["share_before"], 0.0)
        return got

    def test_json_matches_oracle(self):
        self.check_against_oracle(None)

    def test_json_matches_oracle_with_down(self):
        got = self.check_against_oracle("2,9")
        backends = {(b["pool"], b["id"]): b for b in got["backends"]}
        self.assertEqual(backends[("web", 2)]["share_before"], 0.0)
        self.assertEqual(backends[("web", 2)]["share_after"], 0.0)
        self.assertIn("down", backends[("dns", 9)]["note"])

    def test_text_has_table_and_totals(self):
        got = self.plan_json()
        r = run("plan", "--config", self.current, "--new", self.next)
        self.assertEqual(r.returncode, 0, r.stderr)
        m = re.search(r"^moved (\d+\.\d\d)% of buckets \(ideal (\d+\.\d\d)%\)$", r.stdout, re.M)
        self.assertIsNotNone(m, r.stdout)
        self.assertEqual(m.group(1), "%.2f" % (got["moved"] * 100))
        self.assertEqual(m.group(2), "%.2f" % (got["ideal"] * 100))
        self.assertIn("pool web", r.stdout)
        self.assertIn("10.0.6.1", r.stdout)  # the added backend's address
        self.assertIn("->", r.stdout)

    def test_no_change(self):
        got = json.loads(run("plan", "--config", self.current, "--new", self.current, "--json").stdout)
        self.assertEqual(got["moved"], 0)
        self.assertEqual(got["ideal"], 0)

    def test_table_bits_change(self):
        path = self.write("bits.toml", CURRENT.replace("table_bits = 9", "table_bits = 11"))
        got = json.loads(run("plan", "--config", self.current, "--new", path, "--json").stdout)
        dns = next(p for p in got["pools"] if p["name"] == "dns")
        self.assertEqual(dns["moved"], 1.0)
        self.assertIn("every session remaps", dns["note"])

    def test_invalid_new_config_exit_1_names_file_line(self):
        bad = NEXT.replace("  weight = 300\n", "  weight = 70000\n", 1)
        path = self.write("bad.toml", bad)
        line = next(i for i, l in enumerate(bad.splitlines(), 1) if "70000" in l)
        r = run("plan", "--config", self.current, "--new", path)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout, "")
        self.assertTrue(any(l.startswith(f"{path}:{line}: ") and "weight" in l for l in r.stderr.splitlines()), r.stderr)

    def test_invalid_current_config_exit_1(self):
        path = self.write("bad_current.toml", CURRENT.replace('secret = "00112233445566778899aabbccddeeff"', 'secret = "00"'))
        r = run("plan", "--config", path, "--new", self.next)
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"{path}:", r.stderr)

    def test_usage_errors_exit_2(self):
        # Without --config, plan asks the daemon: with none running, exit 3 and say what to do.
        r = run("--socket", "/nonexistent/understudy.sock", "plan", "--new", self.next)
        self.assertEqual(r.returncode, 3)
        self.assertIn("is it running?", r.stderr)
        self.assertEqual(run("plan", "--config", self.current).returncode, 2)
        r = run("plan", "--config", self.current, "--new", self.next, "--down", "1,x")
        self.assertEqual(r.returncode, 2)
        self.assertIn("'x' is not a server ID", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
