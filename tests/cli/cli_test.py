#!/usr/bin/python3
"""understudyctl check and lookup, run as a process, against the independent oracle tools/ordering_ref.py."""
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import unittest

CTL = sys.argv.pop(1) if len(sys.argv) > 1 else "build/src/cli/understudyctl"
ROOT = os.environ.get("UNDERSTUDY_SOURCE_ROOT", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
ORACLE = os.path.join(ROOT, "tools", "ordering_ref.py")

CONFIG = """
[cluster]
secret = "00112233445566778899aabbccddeeff"

[[pool]]
name = "web"
table_bits = 16
  [[pool.backend]]
  id = 1
  address = "10.0.1.11"
  [[pool.backend]]
  id = 2
  address = "10.0.1.12"
  weight = 200
  [[pool.backend]]
  id = 3
  address = "10.0.1.13"
  state = "drain"
  [[pool.backend]]
  id = 4
  address = "10.0.1.14"
  weight = 50
  [[pool.backend]]
  id = 7
  address = "10.0.1.17"
  state = "disabled"

[[pool]]
name = "dns"
table_bits = 12
  [[pool.backend]]
  id = 1
  address = "2001:db8:1::1"
  [[pool.backend]]
  id = 9
  address = "2001:db8:1::9"
  weight = 300

[[vip]]
address = "192.0.2.10"
port = 80
protocol = "tcp"
pool = "web"

[[vip]]
address = "192.0.2.10"
port = 443
protocol = "tcp"
pool = "web"
affinity = "client"

[[vip]]
address = "2001:db8::53"
port = 53
protocol = "udp"
pool = "dns"
"""

SECRET_AND_POOL = """[cluster]
secret = "00112233445566778899aabbccddeeff"
[[pool]]
name = "web"
[[pool.backend]]
id = 1
address = "10.0.0.1"
"""


def run(*args, stdin=None):
    return subprocess.run([CTL, *args], input=stdin, capture_output=True, text=True, timeout=120)


class CtlTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()
        cls.config = os.path.join(cls.dir.name, "understudy.toml")
        with open(cls.config, "w") as f:
            f.write(CONFIG)

    def write(self, name, text):
        path = os.path.join(self.dir.name, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_check_valid(self):
        r = run("check", "--config", self.config)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("valid", r.stdout)

    def test_check_example_config(self):
        r = run("check", "--config", os.path.join(ROOT, "conf", "understudy.toml"))
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_check_invalid_names_file_line_field(self):
        bad = CONFIG.replace('secret = "00112233445566778899aabbccddeeff"', 'secret = "0011"')
        bad = bad.replace('  weight = 50\n', '  weight = 70000\n')
        path = self.write("bad.toml", bad)
        r = run("check", "--config", path)
        self.assertEqual(r.returncode, 1)
        lines = r.stderr.strip().splitlines()
        text = bad.splitlines()
        secret_line = next(i for i, l in enumerate(text, 1) if l.startswith("secret"))
        weight_line = next(i for i, l in enumerate(text, 1) if "70000" in l)
        self.assertTrue(any(l.startswith(f"{path}:{secret_line}: cluster.secret:") for l in lines), r.stderr)
        self.assertTrue(any(l.startswith(f"{path}:{weight_line}: pool[0].backend[3].weight:") for l in lines), r.stderr)

    def test_check_missing_file(self):
        r = run("check", "--config", "/nonexistent/understudy.toml")
        self.assertEqual(r.returncode, 1)
        self.assertIn("/nonexistent/understudy.toml", r.stderr)

    def test_usage_error_exit_2(self):
        self.assertEqual(run("lookup").returncode, 2)
        self.assertEqual(run("frobnicate").returncode, 2)
        r = run("lookup", "--config", self.config, "--vip", "192.0.2.10:80", "--src", "1.2.3.4:5")
        self.assertEqual(r.returncode, 2)
        self.assertIn("ADDR:PORT/PROTO", r.stderr)

    def oracle(self, lines, down=None):
        args = ["/usr/bin/python3", ORACLE, "lookup", "--config", self.config]
        if down:
            args += ["--down", down]
        r = subprocess.run(args, input=lines, capture_output=True, text=True, timeout=300)
        self.assertEqual(r.stderr, "")
        return [json.loads(l) for l in r.stdout.splitlines()]

    def random_lines(self, n, seed):
        rng = random.Random(seed)
        out = []
        for _ in range(n):
            kind = rng.random()
            if kind < 0.45:
                out.append(f"198.51.{rng.randrange(256)}.{rng.randrange(256)} {rng.randrange(65536)} 192.0.2.10 80 tcp")
            elif kind < 0.6:
                out.append(f"203.0.113.{rng.randrange(256)} {rng.randrange(65536)} 192.0.2.10 443 tcp")
            elif kind < 0.95:
                out.append(f"2001:db8:{rng.randrange(65536):x}::{rng.randrange(65536):x} {rng.randrange(65536)} 2001:db8::53 53 udp")
            else:
                out.append(rng.choice(["garbage", "1.2.3.4 5 192.0.2.99 80 tcp", "1.2.3.4 70000 192.0.2.10 80 tcp",
                                       "1.2.3.4 5 192.0.2.10 80 sctp", ""]))
        return "\n".join(out) + "\n"

    def test_batch_matches_oracle(self):
        lines = self.random_lines(20000, 1)
        for down in (None, "2", "1,2,4"):
            args = ["lookup", "--config", self.config, "--batch"] + (["--down", down] if down else [])
            r = run(*args, stdin=lines)
            got = [json.loads(l) for l in r.stdout.splitlines()]
            want = self.oracle(lines, down)
            self.assertEqual(len(got), len(lines.splitlines()))
            self.assertEqual(len(got), len(want))
            errors = 0
            for i, (g, w) in enumerate(zip(got, want)):
                if "error" in w:
                    self.assertEqual(list(g.keys()), ["error"], f"line {i}: {g}")
                    errors += 1
                else:
                    self.assertEqual(list(g.keys()), ["session_hash", "bucket", "ordering", "primary", "serving"])
                    self.assertEqual(g, w, f"line {i} down={down}")
            self.assertGreater(errors, 0)
            self.assertEqual(r.returncode, 1, "a batch with bad lines exits 1")

    def test_batch_100k_lines(self):
        lines = "".join(f"198.51.{i // 256 % 256}.{i % 256} {1024 + i % 60000} 192.0.2.10 80 tcp\n" for i in range(100000))
        r = run("lookup", "--config", self.config, "--batch", stdin=lines)
        self.assertEqual(r.returncode, 0, r.stderr[:500])
        self.assertEqual(len(r.stdout.splitlines()), 100000)

    def test_batch_line_not_utf8(self):
        """A line with bytes that are not UTF-8 gets its error line (the bytes as U+FFFD); the rest of the
        batch is answered (it aborted the process and lost the rest)."""
        lines = b"198.51.100.1 1000 192.0.2.10 80 tcp\n198.51.100.\xff 1000 192.0.2.10 80 tcp\n" \
                b"198.51.100.2 1000 192.0.2.10 80 tcp\n"
        r = subprocess.run([CTL, "lookup", "--config", self.config, "--batch"], input=lines, capture_output=True,
                           timeout=60)
        self.assertEqual(r.returncode, 1, "a batch with a bad line exits 1, not by a signal")
        out = [json.loads(l) for l in r.stdout.decode().splitlines()]
        self.assertEqual(len(out), 3)
        self.assertIn("198.51.100.\ufffd", out[1]["error"])
        want = self.oracle("198.51.100.2 1000 192.0.2.10 80 tcp\n")[0]
        self.assertEqual(out[2], want)

    def test_single_lookup_human_and_json(self):
        r = run("lookup", "--config", self.config, "--vip", "192.0.2.10:80/tcp", "--src", "198.51.100.7:40000", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        got = json.loads(r.stdout)
        want = self.oracle("198.51.100.7 40000 192.0.2.10 80 tcp\n")[0]
        self.assertEqual(got, want)
        h = run("lookup", "--config", self.config, "--vip", "192.0.2.10:80/tcp", "--src", "198.51.100.7:40000")
        self.assertEqual(h.returncode, 0)
        self.assertIn(want["session_hash"], h.stdout)
        self.assertIn(f"bucket        {want['bucket']} of 65536", h.stdout)

    def test_ipv6_vip_and_down(self):
        spec = ["--vip", "[2001:db8::53]:53/udp", "--src", "[2001:db8:5::1]:5353", "--json"]
        base = json.loads(run("lookup", "--config", self.config, *spec).stdout)
        primary = base["primary"]
        down = json.loads(run("lookup", "--config", self.config, *spec, "--down", str(primary)).stdout)
        self.assertEqual(down["primary"], primary)
        self.assertNotEqual(down["serving"], primary)
        self.assertEqual(down["serving"], [i for i in base["ordering"] if i != primary][0])
        both = json.loads(run("lookup", "--config", self.config, *spec, "--down", "1,9").stdout)
        self.assertIsNone(both["serving"])

    def test_disabled_never_serves_and_drain_sorts_last(self):
        lines = self.random_lines(3000, 2)
        for l in run("lookup", "--config", self.config, "--batch", stdin=lines).stdout.splitlines():
            o = json.loads(l)
            if "error" in o or 7 not in o["ordering"]:
                continue  # the dns pool
            self.assertNotEqual(o["serving"], 7)
            self.assertEqual(o["ordering"][-1], 3, "a draining server (weight 0) sorts after all others")

    def test_unknown_vip(self):
        r = run("lookup", "--config", self.config, "--vip", "192.0.2.99:80/tcp", "--src", "1.2.3.4:5")
        self.assertEqual(r.returncode, 1)
        self.assertIn("no VIP 192.0.2.99:80/tcp", r.stderr)

    def test_bad_down_list(self):
        r = run("lookup", "--config", self.config, "--batch", "--down", "1,x")
        self.assertEqual(r.returncode, 2)
        self.assertIn("'x' is not a server ID", r.stderr)

    # --- limits: what the data plane and the agent hold is refused by check, not when it is applied

    def vips_config(self, n):
        text = SECRET_AND_POOL  # 7 lines
        for i in range(n):
            text += f'[[vip]]\naddress = "192.0.{i // 250}.{i % 250 + 1}"\nport = 80\npool = "web"\n'
        return text

    def test_check_vip_limit(self):
        """1,025 VIPs passed check and were refused when the data plane published them."""
        ok = run("check", "--config", self.write("vips1024.toml", self.vips_config(1024)))
        self.assertEqual(ok.returncode, 0, ok.stderr[:500])
        path = self.write("vips1025.toml", self.vips_config(1025))
        r = run("check", "--config", path)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr.strip(), f"{path}:4104: vip[1024]: is VIP number 1025 of 1025; the data plane "
                                           "holds at most 1024 VIPs")

    def test_check_agent_limits(self):
        text = SECRET_AND_POOL + '[agent]\ninterface = "eth0"\n'
        for i in range(1, 65):
            text += f'[[pool]]\nname = "p{i}"\n'
        path = self.write("pools65.toml", text)
        self.assertEqual(run("check", "--config", path).returncode, 0, "the balancer holds 65 pools")
        r = run("check", "--agent", "--config", path)
        self.assertEqual(r.returncode, 1)
        self.assertIn("pool[64]: is pool number 65 of 65; the agent holds at most 64 pools (US_BPF_MAX_POOLS)", r.stderr)
        r = run("check", "--dataplane", "--config", path)
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"{path}:1: dataplane.port: at least one [[dataplane.port]]", r.stderr)

    def test_check_conn_idle_timeout_limit(self):
        """Connection-table ages are 31-bit counts of 1/1024 s: a longer timeout would never expire."""
        vip = '[[vip]]\naddress = "192.0.2.1"\nport = 80\npool = "web"\nconn_idle_timeout_s = '
        ok = run("check", "--config", self.write("idle_ok.toml", SECRET_AND_POOL + vip + "2097151\n"))
        self.assertEqual(ok.returncode, 0, ok.stderr[:500])
        path = self.write("idle_long.toml", SECRET_AND_POOL + vip + "2097152\n")
        r = run("check", "--config", path)
        self.assertEqual(r.returncode, 1)
        self.assertIn("vip[0].conn_idle_timeout_s: must be 1-2097151", r.stderr)

    def test_check_dpdk_limits(self):
        """More ports (with their exception taps) than DPDK has ethdevs for, or a worker lcore past
        RTE_MAX_LCORE, passed check and failed at start."""
        def config(ports, lcores):
            text = SECRET_AND_POOL + '[dataplane]\nnon_vip = "kernel"\nexception_iface = "us0"\n'
            text += f"workers = {lcores}\n"
            for i in range(ports):
                text += f'[[dataplane.port]]\nname = "p{i}"\ndevargs = "net_null{i}"\nrx_queues = 1\n'
            return text
        ok = run("check", "--dataplane", "--config", self.write("ports16.toml", config(16, list(range(1, 17)))))
        self.assertEqual(ok.returncode, 0, ok.stderr[:500])
        path = self.write("ports17.toml", config(17, list(range(1, 17)) + [128]))
        r = run("check", "--dataplane", "--config", path)
        self.assertEqual(r.returncode, 1)
        self.assertIn("dataplane.port: 17 ports need 34 DPDK ports with their exception taps; DPDK has room for 32 "
                      "(RTE_MAX_ETHPORTS)", r.stderr)
        self.assertIn("dataplane.workers[16]: lcore 128 is past DPDK's last lcore (127, RTE_MAX_LCORE)", r.stderr)

    # --- input that is not a plain small file

    def test_check_stops_at_the_size_limit(self):
        """/dev/zero and a FIFO that never ends were read until memory ran out."""
        r = run("check", "--config", "/dev/zero")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr.strip(), "/dev/zero:1: file: holds more than 16777216 bytes (stopped reading "
                                           "there); a configuration holds at most 16777216")
        fifo = os.path.join(self.dir.name, "endless.fifo")
        os.mkfifo(fifo)
        def feed():
            try:
                with open(fifo, "wb") as f:
                    while True:
                        f.write(b"#" * 65536)
            except (BrokenPipeError, OSError):
                pass
        writer = threading.Thread(target=feed)
        writer.start()
        r = run("check", "--config", fifo)
        writer.join()
        self.assertEqual(r.returncode, 1)
        self.assertIn("stopped reading there", r.stderr)
        r = run("check", "--config", self.dir.name)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr.strip(), f"{self.dir.name}: cannot read the config file: it is a directory")

    def test_live_plan_reads_a_fifo_once(self):
        """plan --new read the file twice (checked, then sent): a FIFO's second read waited forever."""
        fifo = os.path.join(self.dir.name, "next.fifo")
        os.mkfifo(fifo)
        def feed():
            with open(fifo, "w") as f:
                f.write(CONFIG)
        writer = threading.Thread(target=feed)
        writer.start()
        r = subprocess.run([CTL, "plan", "--new", fifo, "--socket", os.path.join(self.dir.name, "none.sock")],
                           capture_output=True, text=True, timeout=30)
        writer.join()
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("cannot reach the daemon", r.stderr)

    # --- user text in messages

    def test_check_refuses_nul_and_escapes_user_text(self):
        text = SECRET_AND_POOL + '[control]\nsocket = "/run/a\\u0000b"\n"ke\\u001b[2Jy\\r" = 1\n'
        path = self.write("nul.toml", text)
        r = subprocess.run([CTL, "check", "--config", path], capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 1)
        err = r.stderr.decode()
        self.assertEqual(err.splitlines(), [
            f"{path}:9: control.socket: holds a NUL character (\\u0000), which would cut the value short",
            f"{path}:10: control.ke\\x1b[2Jy\\r: unknown key (allowed here: socket, socket_group, metrics)",
        ])
        self.assertFalse(any(b < 0x20 and b != 0x0a for b in r.stderr), r.stderr)

    def test_path_not_utf8(self):
        """A config path that is not UTF-8 is printed escaped, and no command aborts on it."""
        path = os.path.join(os.fsencode(self.dir.name), b"conf\xff.toml")
        with open(path, "w") as f:
            f.write(CONFIG)
        r = subprocess.run([CTL.encode(), b"check", b"--config", path], capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.decode(), f"{self.dir.name}/conf\\xff.toml: valid (2 pools, 7 backends, 3 VIPs)\n")
        for args in ([b"lookup", b"--config", path, b"--vip", b"192.0.2.10:80/tcp", b"--src", b"1.2.3.4:5"],
                     [b"plan", b"--config", path, b"--new", path]):
            r = subprocess.run([CTL.encode(), *args], capture_output=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
        missing = path + b".missing"
        for args in ([b"check", b"--config", missing], [b"lookup", b"--config", missing, b"--batch"],
                     [b"plan", b"--config", missing, b"--new", missing], [b"plan", b"--new", missing]):
            r = subprocess.run([CTL.encode(), *args], capture_output=True, timeout=60, input=b"")
            self.assertIn(r.returncode, (1, 2), r.stderr)
            self.assertIn(b"conf\\xff.toml.missing: cannot read the config file", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
