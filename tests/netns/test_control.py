#!/usr/bin/python3
"""The control plane of a running daemon, from the outside: health probes against real servers, the control
API over its real socket (valid, invalid, garbage and oversized requests), understudyctl run as a process,
reload with good and bad files (file and SIGHUP), the Prometheus endpoint, and forwarding that loses nothing
while tables are republished many times a second."""
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest

BINARY = sys.argv.pop(1) if len(sys.argv) > 1 else "build/src/balancer/understudy"
CTL = sys.argv.pop(1) if len(sys.argv) > 1 else "build/src/cli/understudyctl"
ROOT = os.environ.get("UNDERSTUDY_SOURCE_ROOT", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import netns  # noqa: E402

VIP = "192.0.2.10"

CONFIG = """
[cluster]
secret = "a1b2c3d4e5f60718293a4b5c6d7e8f90"

[health]
kind = "http"
port = 8080
path = "/"
interval_ms = 100
timeout_ms = 80
rise = 2
fall = 2

[[pool]]
name = "web"
table_bits = 12
  [[pool.backend]]
  id = 1
  address = "10.0.0.11"
  [[pool.backend]]
  id = 2
  address = "10.0.0.12"
  [[pool.backend]]
  id = 3
  address = "10.0.0.13"
  weight = {w3}

[[vip]]
address = "192.0.2.10"
port = 8080
protocol = "tcp"
pool = "web"
method = "l2dsr"

[[vip]]
address = "192.0.2.10"
port = 9000
protocol = "udp"
pool = "web"
method = "l2dsr"
conn_table = false

[dataplane]
eal_args = ["--in-memory", "--no-pci", "-l", "0,1", "--log-level=lib.*:warning", "--file-prefix=us-control-test"]
workers = [1]
source_v4 = "10.0.0.2"
exception_addresses = ["10.0.0.2/24"]
  [[dataplane.port]]
  name = "p0"
  devargs = "net_af_packet0,iface=eth0"

[control]
socket = "{dir}/understudy.sock"
metrics = "127.0.0.1:9273"
"""


def require_environment():
    if os.geteuid() != 0:
        raise SystemExit("FAIL: namespace tests need root")
    with open("/proc/sys/vm/nr_hugepages") as f:
        if int(f.read()) < 256:
            raise SystemExit("FAIL: fewer than 256 hugepages reserved: run tools/setup.sh")


class ControlTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_environment()
        cls.dir = tempfile.TemporaryDirectory()
        cls.config = os.path.join(cls.dir.name, "understudy.toml")
        cls.write_config(w3=100)
        cls.socket = os.path.join(cls.dir.name, "understudy.sock")
        cls.log = os.path.join(cls.dir.name, "understudy.log")
        cls.topo = netns.Topology(prefix="usc", backends=3, balancers=1).up()
        cls.topo.start_http_servers(8080)
        cls.topo.start_udp_counters(9000, cls.dir.name)
        cls.daemon = cls.topo.start_balancer(1, BINARY, cls.config, cls.log)
        netns.wait_for(lambda: all(h["up"] and h.get("probed") for h in cls.api({"op": "health"})["health"]), 15,
                       "every backend probed up", cls.log)
        c = cls.topo.client(1)
        # The balancer learns next hops from the kernel's neighbour table: wait until a connection goes through.
        netns.wait_for(lambda: c.run("curl", "-s", "-m", "1", f"http://{VIP}:8080/", check=False).returncode == 0,
                       20, "a connection through the balancer", cls.log)

    @classmethod
    def tearDownClass(cls):
        cls.topo.down()
        cls.dir.cleanup()

    @classmethod
    def write_config(cls, w3, extra=""):
        with open(cls.config, "w") as f:
            f.write(CONFIG.format(dir=cls.dir.name, w3=w3) + extra)

    @classmethod
    def api(cls, request, expect_ok=True):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(cls.socket)
            s.sendall((request if isinstance(request, str) else json.dumps(request)).encode() + b"\n")
            reply = json.loads(s.makefile().readline())
        if expect_ok is not None:
            assert reply["ok"] == expect_ok, reply
        return reply

    def ctl(self, *args, check=None, input=None):
        r = subprocess.run([CTL, "--socket", self.socket, *args], capture_output=True, text=True, timeout=60, input=input)
        if check is not None:
            self.assertEqual(r.returncode, check, r.stdout + r.stderr)
        return r

    def backend(self, id):
        return next(b for b in self.api({"op": "backend.list"})["backends"] if b["id"] == id)

    # --- the socket itself -------------------------------------------------------------------------

    def test_socket_path_naming_a_file_is_refused_and_kept(self):
        """control.socket naming a regular file: the daemon refuses to start and the file is untouched."""
        victim = os.path.join(self.dir.name, "precious.txt")
        with open(victim, "w") as f:
            f.write("keep me")
        cfg = os.path.join(self.dir.name, "victim.toml")
        with open(cfg, "w") as f:
            f.write(CONFIG.format(dir=self.dir.name, w3=100).replace(f'socket = "{self.dir.name}/understudy.sock"',
                                                                      f'socket = "{victim}"')
                    .replace("us-control-test", "us-control-victim").replace('metrics = "127.0.0.1:9273"', 'metrics = ""')
                    .replace('devargs = "net_af_packet0,iface=eth0"', 'devargs = "net_null0"')
                    .replace("exception_addresses = [\"10.0.0.2/24\"]\n", "non_vip = \"drop\"\n"))
        r = subprocess.run([BINARY, "run", "--config", cfg], capture_output=True, text=True, timeout=60)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("is not a socket", r.stderr)
        with open(victim) as f:
            self.assertEqual(f.read(), "keep me")

    def test_socket_mode_and_owner(self):
        st = os.stat(self.socket)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o660)
        self.assertEqual(st.st_uid, 0)

    def test_bad_requests_get_errors_and_others_keep_being_served(self):
        other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        other.settimeout(10)
        other.connect(self.socket)
        cases = {
            "this is not json": "malformed JSON",
            "[1, 2]": "JSON object",
            "{\"no_op\": 1}": "missing \"op\"",
            "{\"op\": 7}": "missing \"op\"",
            "{\"op\": \"frobnicate\"}": "unknown op \"frobnicate\"",
            "{\"op\": \"status\", \"bogus\": 1}": "unknown field \"bogus\"",
            "{\"op\": \"backend.set\", \"pool\": \"web\", \"id\": \"two\", \"weight\": 5}": "\"id\" must be an integer",
            "{\"op\": \"backend.set\", \"pool\": \"web\", \"id\": 2, \"weight\": 70000}": "\"weight\" must be 0..65535",
            "{\"op\": \"backend.set\", \"pool\": \"nope\", \"id\": 2, \"weight\": 5}": "no pool named 'nope'",
            "{\"op\": \"backend.drain\", \"pool\": \"web\", \"id\": 99}": "has no backend 99",
            "{\"op\": \"backend.add\", \"pool\": \"web\", \"id\": 2, \"address\": \"10.0.0.99\"}": "duplicate",
            "{\"op\": \"backend.add\", \"pool\": \"web\", \"id\": 9, \"address\": \"10.0.0.300\"}": "field \"address\"",
            "{\"op\": \"vip.add\", \"address\": \"192.0.2.10\", \"port\": 8080, \"pool\": \"web\"}": "VIP",
            "{\"op\": \"lookup\", \"vip\": \"192.0.2.10:8080\", \"src\": \"1.2.3.4:5\"}": "ADDR:PORT/PROTO",
            # A key twice would silently take the last value.
            "{\"op\": \"backend.drain\", \"pool\": \"web\", \"id\": 1, \"id\": 2}": "\"id\" given twice",
            # An escaped NUL would cut the address short where C strings read it.
            "{\"op\": \"backend.add\", \"pool\": \"web\", \"id\": 9, \"address\": \"10.0.0.19\\u0000x\"}": "NUL",
            "{\"op\": \"lookup\", \"vip\": \"192.0.2.10:8080/tcp\", \"src\": \"1.2.3.4\\u0000:5\"}": "NUL",
            # Past int64: reported as written, not as -1.
            "{\"op\": \"backend.set\", \"pool\": \"web\", \"id\": 18446744073709551615, \"weight\": 5}":
                "got 18446744073709551615",
            # The file's limit, not a smaller one of the API's own.
            "{\"op\": \"vip.add\", \"address\": \"192.0.2.10\", \"port\": 8080, \"pool\": \"web\", "
            "\"conn_idle_timeout_s\": 2097152}": "1..2097151",
        }
        generation = self.api({"op": "status"})["generation"]
        for line, want in cases.items():
            reply = self.api(line, expect_ok=False)
            self.assertIn(want, reply["error"], line)
        self.assertEqual(self.api({"op": "status"})["generation"], generation, "refused changes change nothing")
        # A change refused by validation names the request, not the config file (which says nothing wrong).
        reply = self.api({"op": "backend.add", "pool": "web", "id": 1, "address": "10.0.0.99"}, expect_ok=False)
        self.assertNotIn(self.config, reply["error"])
        self.assertIn("request backend.add", reply["error"])
        # A VIP timeout the file accepts is accepted here too (then removed again).
        self.api({"op": "vip.add", "address": "192.0.2.20", "port": 80, "pool": "web", "conn_idle_timeout_s": 2000000})
        self.api({"op": "vip.remove", "address": "192.0.2.20", "port": 80})
        # An oversized line: an error, then the connection is dropped; the daemon goes on.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(self.socket)
            try:
                s.sendall(b"x" * (2 << 20))
            except (BrokenPipeError, ConnectionResetError):
                pass
            data = s.makefile("rb").read()
            self.assertIn(b"request longer than", data)
        other.sendall(b'{"op": "status", "id": 42}\n')
        reply = json.loads(other.makefile().readline())
        self.assertTrue(reply["ok"])
        self.assertEqual(reply["id"], 42, "request ids are echoed")
        other.close()

    # --- health probes and failover ----------------------------------------------------------------

    def test_health_failover_and_recovery(self):
        lines = [f"198.51.100.{i} {20000 + i} {VIP} 8080 tcp" for i in range(1, 200)]
        before = [json.loads(l) for l in self.ctl("lookup", "--batch", input="\n".join(lines) + "\n", check=0).stdout.splitlines()]
        self.assertTrue(any(r["serving"] == 2 for r in before))
        self.topo.stop_http_server(2)
        netns.wait_for(lambda: not self.backend(2)["operational"], 5, "backend 2 to go down", self.log)
        h = next(x for x in self.api({"op": "health"})["health"] if x["id"] == 2)
        self.assertFalse(h["up"])
        self.assertIn("refused", h["last_result"])
        after = [json.loads(l) for l in self.ctl("lookup", "--batch", input="\n".join(lines) + "\n", check=0).stdout.splitlines()]
        for b, a in zip(before, after):
            self.assertEqual(a["ordering"], b["ordering"])
            if b["serving"] == 2:
                self.assertEqual(a["serving"], [i for i in b["ordering"] if i != 2][0], "first operational of the ordering")
            else:
                self.assertEqual(a["serving"], b["serving"], "other sessions do not move")
        status = self.api({"op": "status"})
        self.assertIn("health: web/2 down", status["last_update"]["cause"])
        self.assertLess(status["last_update"]["publish_seconds"], 0.05)
        with open(self.log) as f:
            self.assertIn("health: web/2 down (connection refused)", f.read())
        self.topo.start_http_server(2)
        netns.wait_for(lambda: self.backend(2)["operational"], 5, "backend 2 to come back", self.log)
        again = [json.loads(l) for l in self.ctl("lookup", "--batch", input="\n".join(lines) + "\n", check=0).stdout.splitlines()]
        self.assertEqual(again, before)

    # --- admin state through understudyctl ---------------------------------------------------------

    def test_drain_enable_disable_and_weight(self):
        self.ctl("backend", "drain", "--pool", "web", "--id", "3", check=0)
        b = self.backend(3)
        self.assertEqual(b["state"], "drain")
        self.assertEqual(b["share"], 0.0, "a draining server gets no new buckets (others are operational)")
        self.ctl("backend", "enable", "--pool", "web", "--id", "3", check=0)
        self.assertGreater(self.backend(3)["share"], 0.2)
        self.ctl("backend", "disable", "--pool", "web", "--id", "3", check=0)
        self.assertFalse(self.backend(3)["operational"])
        self.ctl("backend", "set", "--pool", "web", "--id", "3", "--state", "enabled", "--weight", "300", check=0)
        self.assertGreater(self.backend(3)["share"], 0.45, "weight 300 against 100 + 100 is 60% of buckets")
        r = self.ctl("backend", "set", "--pool", "web", "--id", "3", "--weight", "70000", check=1)
        self.assertIn("weight", r.stderr)
        self.ctl("backend", "set", "--pool", "web", "--id", "3", "--weight", "100", check=0)
        table = self.ctl("backend", "list", check=0).stdout
        self.assertIn("POOL", table.splitlines()[0])
        self.assertEqual(len(table.splitlines()), 4)

    def test_backend_and_vip_add_remove(self):
        self.ctl("backend", "add", "--pool", "web", "--id", "7", "--address", "10.0.0.17", "--state", "disabled", check=0)
        self.assertEqual(self.backend(7)["state"], "disabled")
        self.ctl("backend", "remove", "--pool", "web", "--id", "7", check=0)
        self.assertFalse(any(b["id"] == 7 for b in self.api({"op": "backend.list"})["backends"]))
        self.ctl("vip", "add", "--address", "192.0.2.11", "--port", "80", "--pool", "web", "--method", "l2dsr", check=0)
        vips = json.loads(self.ctl("vip", "list", "--json", check=0).stdout)["vips"]
        self.assertIn(("192.0.2.11", 80), [(v["address"], v["port"]) for v in vips])
        self.ctl("vip", "remove", "--address", "192.0.2.11", "--port", "80", check=0)
        r = self.ctl("vip", "remove", "--address", "192.0.2.11", "--port", "80", check=1)
        self.assertIn("no VIP", r.stderr)

    def test_a_new_backend_starts_its_counters_at_zero(self):
        """A backend added after another was removed takes its statistics slot, not its totals."""
        c = self.topo.client(1)
        for _ in range(30):
            c.run("curl", "-s", "-m", "1", f"http://{VIP}:8080/", check=False)
        stats = lambda: {b["id"]: b for b in self.api({"op": "stats"})["backends"]}
        self.assertGreater(stats()[3]["packets"], 0, "backend 3 had traffic")
        self.api({"op": "backend.remove", "pool": "web", "id": 3})
        self.api({"op": "backend.add", "pool": "web", "id": 8, "address": "10.0.0.13", "state": "disabled"})
        try:
            now = stats()
            self.assertEqual(now[8]["packets"], 0, "the new backend inherited the removed one's counters")
            self.assertEqual(now[8]["bytes"], 0)
            metrics = self.topo.balancer(1).run("curl", "-s", "-m", "5", "http://127.0.0.1:9273/metrics").stdout
            self.assertIn('understudy_backend_packets_total{pool="web",id="8",address="10.0.0.13"} 0', metrics)
        finally:
            self.api({"op": "backend.remove", "pool": "web", "id": 8})
            self.api({"op": "backend.add", "pool": "web", "id": 3, "address": "10.0.0.13"})
        netns.wait_for(lambda: self.backend(3)["operational"], 10, "backend 3 back", self.log)
        self.assertLess(stats()[3]["packets"], 1000)

    # --- reload ------------------------------------------------------------------------------------

    def test_reload_good_and_bad(self):
        gen = self.api({"op": "status"})["generation"]
        self.write_config(w3=250)
        self.ctl("reload", check=0)
        self.assertEqual(self.backend(3)["weight"], 250)
        self.assertGreater(self.api({"op": "status"})["generation"], gen)
        # A bad file: nothing changes, and the reply names file, line and field.
        self.write_config(w3=250, extra='\n[[pool.backend]]\nid = 4\naddress = "10.0.0.14"\nwieght = 5\n')
        gen = self.api({"op": "status"})["generation"]
        r = self.ctl("reload", check=1)
        self.assertIn(f"{self.config}:", r.stderr)
        self.assertIn("wieght", r.stderr)
        self.assertEqual(self.api({"op": "status"})["generation"], gen)
        self.assertEqual(len(self.api({"op": "backend.list"})["backends"]), 3)
        # SIGHUP reloads the same way.
        self.write_config(w3=100)
        self.daemon.send_signal(signal.SIGHUP)
        netns.wait_for(lambda: self.backend(3)["weight"] == 100, 5, "SIGHUP reload", self.log)
        # A change that needs a restart is refused whole.
        with open(self.config) as f:
            text = f.read()
        with open(self.config, "w") as f:
            f.write(text.replace("weight = 100", "weight = 120").replace('name = "p0"', 'name = "p1"'))
        r = self.ctl("reload", check=1)
        self.assertIn("only change with a restart", r.stderr)
        self.assertEqual(self.backend(3)["weight"], 100)
        # The mbuf pool is sized once, at start-up: a new size is refused by name.
        with open(self.config, "w") as f:
            f.write(CONFIG.format(dir=self.dir.name, w3=120).replace("workers = [1]\n", "workers = [1]\nmbufs = 20000\n"))
        r = self.ctl("reload", check=1)
        self.assertIn("dataplane.mbufs", r.stderr)
        self.assertEqual(self.backend(3)["weight"], 100)
        # One VIP past the data plane's limit: refused before anything changes, and the daemon keeps serving
        # (this used to swap the config in first and then fail, leaving the daemon reading past its VIP table).
        vips = "".join(f'\n[[vip]]\naddress = "198.51.100.{i // 250}"\nport = {1000 + i % 250}\nprotocol = "tcp"\n'
                       f'pool = "web"\nmethod = "l2dsr"\n' for i in range(1023))
        self.write_config(w3=100, extra=vips)
        gen = self.api({"op": "status"})["generation"]
        r = self.ctl("reload", check=1)
        self.assertIn("1024", r.stderr)
        self.assertEqual(self.api({"op": "status"})["generation"], gen)
        self.assertEqual(len(self.api({"op": "vip.list"})["vips"]), 2)
        self.api({"op": "stats"})
        self.write_config(w3=100)
        self.ctl("reload", check=0)

    def test_control_thread_never_stalls_on_a_2_24_pool(self):
        try:
            self.check_a_2_24_reload()
        finally:
            # Whatever happened, the next tests find the daemon as they expect it.
            self.write_config(w3=100)
            netns.wait_for(lambda: self.ctl("reload").returncode == 0, 60, "the original configuration back", self.log)

    def check_a_2_24_reload(self):
        """A reload that adds a pool of 2^24 buckets is built off the control thread: meanwhile the API answers,
        probes go on, and another change is refused by name instead of waiting; then it is live whole."""
        big = ('\n[[pool]]\nname = "big"\ntable_bits = 24\n'
               '  [[pool.backend]]\n  id = 11\n  address = "10.0.0.11"\n'
               '  [[pool.backend]]\n  id = 12\n  address = "10.0.0.12"\n'
               '\n[[vip]]\naddress = "192.0.2.11"\nport = 8080\nprotocol = "tcp"\npool = "big"\nmethod = "l2dsr"\n')
        self.write_config(w3=100, extra=big)
        probes = lambda: sum(h.get("probes", 0) for h in self.api({"op": "health"})["health"])
        probes_before = probes()
        result = {}

        def reload():
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(300)
                s.connect(self.socket)
                s.sendall(b'{"op": "reload"}\n')
                result["reply"] = json.loads(s.makefile().readline())
                result["at"] = time.monotonic()

        started = time.monotonic()
        t = threading.Thread(target=reload)
        t.start()
        latencies, building_seen, refused = [], 0, None
        while t.is_alive() and time.monotonic() - started < 280:
            t0 = time.monotonic()
            status = self.api({"op": "status"})
            latencies.append(time.monotonic() - t0)
            if status["control"]["change_in_progress"]:
                building_seen += 1
                if refused is None:
                    refused = self.api({"op": "backend.drain", "pool": "web", "id": 2}, expect_ok=False)
                    self.daemon.send_signal(signal.SIGHUP)  # kept, and served once the build is live
            time.sleep(0.05)
        t.join(5)
        self.assertTrue(result["reply"]["ok"], result)
        build_s = result["at"] - started
        self.assertGreater(building_seen, 3, "the build was not seen in progress: it ran on the control thread")
        self.assertIn("another change is being built", refused["error"])
        self.assertEqual(self.backend(2)["state"], "enabled", "the refused change changed something")
        # While it was built the control thread kept answering and probing. (How fast depends on what else the
        # machine's CPUs run: the bound is loose, the answers during the build are what shows it was aside.)
        self.assertLess(max(latencies), max(1.0, build_s / 2), f"a status request waited {max(latencies):.3f} s "
                        f"during a build of {build_s:.1f} s")
        self.assertGreater(probes() - probes_before, 10 * build_s, "probes stopped during the build")
        def log_text():
            with open(self.log, errors="replace") as f:
                return f.read()
        netns.wait_for(lambda: "SIGHUP: configuration reloaded" in log_text().split("SIGHUP while a change is being built")[-1],
                       120, "the SIGHUP kept during the build served after it", self.log)
        big_backends = self.api({"op": "backend.list", "pool": "big"})["backends"]
        self.assertAlmostEqual(sum(b["share"] for b in big_backends), 1.0, places=6)
        control = self.api({"op": "status"})["control"]
        print(f"\n2^24 reload: built in {build_s:.1f} s off the control thread; status answered in at most "
              f"{max(latencies) * 1000:.1f} ms meanwhile ({len(latencies)} requests); control thread's longest "
              f"pause so far {control['longest_pause_ms']:.1f} ms", file=sys.stderr)
        # A live plan of a 2^24 change is computed aside too.
        nxt = os.path.join(self.dir.name, "next24.toml")
        with open(nxt, "w") as f:
            f.write(CONFIG.format(dir=self.dir.name, w3=100).replace("table_bits = 12", "table_bits = 24"))
        plan = {}
        t = threading.Thread(target=lambda: plan.update(r=self.ctl("plan", "--new", nxt, "--json")))
        t.start()
        latencies = []
        while t.is_alive():
            t0 = time.monotonic()
            self.api({"op": "status"})
            latencies.append(time.monotonic() - t0)
            time.sleep(0.05)
        t.join()
        self.assertEqual(plan["r"].returncode, 0, plan["r"].stderr)
        self.assertAlmostEqual(json.loads(plan["r"].stdout)["moved"], 1.0, delta=0.01)  # every session remaps
        # Not asserted: a plan builds both tables in the daemon's own address space, and page faults that compact
        # memory for transparent huge pages hold the process's mmap lock; on a fragmented machine the control
        # thread waits behind them (seen: 0.04 s on a fresh machine, up to 7 s after hours of tests).
        print(f"2^24 live plan: status answered in at most {max(latencies) * 1000:.1f} ms meanwhile",
              file=sys.stderr)
        self.write_config(w3=100)
        self.ctl("reload", check=0)
        self.assertEqual([p["name"] for p in self.api({"op": "status"})["pools"]], ["web"])

    def test_live_plan(self):
        nxt = os.path.join(self.dir.name, "next.toml")
        with open(nxt, "w") as f:
            f.write(CONFIG.format(dir=self.dir.name, w3=100).replace('  id = 3\n  address = "10.0.0.13"\n', '  id = 3\n  address = "10.0.0.13"\n  state = "disabled"\n'))
        r = self.ctl("plan", "--new", nxt, "--json", check=0)
        plan = json.loads(r.stdout)
        share3 = self.backend(3)["share"]
        self.assertAlmostEqual(plan["moved"], share3, places=6, msg="disabling 3 moves exactly the buckets it serves")
        self.assertAlmostEqual(plan["ideal"], 1 / 3, places=6)
        self.assertIn("moved", self.ctl("plan", "--new", nxt, check=0).stdout)
        with open(nxt, "a") as f:
            f.write("\nbogus = 1\n")
        r = self.ctl("plan", "--new", nxt, check=1)
        self.assertIn(nxt + ":", r.stderr)

    # --- metrics, stats, status --------------------------------------------------------------------

    def test_metrics_endpoint(self):
        r = self.topo.balancer(1).run("curl", "-s", "-m", "5", "http://127.0.0.1:9273/metrics")
        text = r.stdout
        for name in ("understudy_rx_packets_total", "understudy_drops_total{reason=\"truncated_l2\"}",
                     "understudy_backend_health_up{pool=\"web\",id=\"1\"} 1", "understudy_table_generation",
                     "understudy_table_update_publish_seconds", "understudy_conn_table_entries",
                     "understudy_control_longest_pause_seconds", "understudy_control_pauses_total{over=\"100ms\"}",
                     "understudy_failovers_total", "understudy_vip_packets_total{vip=\"192.0.2.10:8080/tcp\""):
            self.assertIn(name, text)
        r = self.topo.balancer(1).run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:9273/nope")
        self.assertEqual(r.stdout, "404")

    # Opens N idle connections to the metrics port and N to the control socket, and holds them until stdin
    # closes; prints "held" once they are open.
    HOLDER = (
        "import resource,socket,sys\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE,(8192,8192))\n"
        "n=int(sys.argv[2]); held=[]\n"
        "for i in range(n):\n"
        "    t=socket.create_connection(('127.0.0.1',9273)); held.append(t)\n"
        "    u=socket.socket(socket.AF_UNIX); u.connect(sys.argv[1]); held.append(u)\n"
        "print('held',flush=True)\n"
        "sys.stdin.read()\n")

    def daemon_descriptors(self):
        return len(os.listdir(f"/proc/{self.daemon.pid}/fd"))

    def test_idle_connections_cannot_starve_the_daemon(self):
        """1,000 idle connections to each listener (2,000 in all): the daemon holds at most its limits of them,
        answers the API and metrics, and keeps probing (every backend stays up)."""
        before = self.daemon_descriptors()
        holder = self.topo.balancer(1).popen("/usr/bin/python3", "-c", self.HOLDER, self.socket, "1000",
                                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.topo.procs.append(holder)
        try:
            self.assertEqual(holder.stdout.readline().strip(), "held")
            time.sleep(1.0)  # a few probe rounds with every connection held
            self.assertLess(self.daemon_descriptors(), before + 64 + 32 + 8,
                            "the listeners keep at most 64 API and 32 metrics clients")
            self.assertIn("POOL", self.ctl("status", check=0).stdout, "an operator still gets in")
            r = self.topo.balancer(1).run("curl", "-s", "-m", "5", "http://127.0.0.1:9273/metrics")
            self.assertIn("understudy_rx_packets_total", r.stdout)
            health = self.api({"op": "health"})["health"]
            self.assertTrue(all(h["up"] for h in health), health)
        finally:
            holder.stdin.close()
            holder.wait(timeout=20)

    def test_slow_and_wrong_metrics_requests(self):
        """A request that never ends its headers is closed after 5 s; /metricsXYZ is not /metrics."""
        script = ("import socket,time\n"
                  "s=socket.create_connection(('127.0.0.1',9273)); s.sendall(b'GET /metr'); t=time.time()\n"
                  "s.settimeout(20); d=s.recv(100)\n"
                  "print(repr(d), round(time.time()-t,1))\n")
        out = self.topo.balancer(1).run("/usr/bin/python3", "-c", script, timeout=30).stdout.split()
        self.assertEqual(out[0], "b''", "closed without an answer")
        self.assertGreaterEqual(float(out[1]), 4.5)
        self.assertLessEqual(float(out[1]), 7.0)
        r = self.topo.balancer(1).run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                      "http://127.0.0.1:9273/metricsXYZ")
        self.assertEqual(r.stdout, "404")

    def test_pipelined_requests_answered_in_order(self):
        """5,000 requests sent at once, replies read only afterwards: every one answered, in order."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(30)
            s.connect(self.socket)
            s.sendall(b"".join(json.dumps({"op": "status", "id": i}).encode() + b"\n" for i in range(5000)))
            time.sleep(1.0)
            f = s.makefile()
            ids = [json.loads(f.readline())["id"] for _ in range(5000)]
        self.assertEqual(ids, list(range(5000)))

    def test_status_and_stats_watch(self):
        out = self.ctl("status", check=0).stdout
        self.assertIn("POOL", out)
        self.assertIn("last update", out)
        r = self.ctl("stats", "--watch", "0.5", "--count", "2", check=0)
        self.assertEqual(r.stdout.count("RATE"), 2)
        self.assertIn("rx_packets", r.stdout)

    def test_unreachable_daemon_exit_code(self):
        r = subprocess.run([CTL, "--socket", "/nonexistent/x.sock", "status"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 3)
        self.assertIn("is it running?", r.stderr)

    # --- forwarding while republishing -------------------------------------------------------------

    def test_zz_no_loss_while_republishing(self):
        def counts():
            total = 0
            for i in (1, 2, 3):
                with open(os.path.join(self.dir.name, f"udp-b{i}")) as f:
                    total += int(f.read() or 0)
            return total
        start = counts()
        stop = threading.Event()
        published = [0]

        def churn():
            w = 100
            while not stop.is_set():
                w = 101 if w == 100 else 100
                self.api({"op": "backend.set", "pool": "web", "id": 3, "weight": w})
                published[0] += 1
                time.sleep(0.01)

        drops_before = sum(self.api({"op": "stats"})["drops"].values())
        t = threading.Thread(target=churn)
        t.start()
        n = 20000
        sender = ("import socket,time\n"
                  "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                  f"for i in range({n}):\n"
                  f"    s.sendto(b'x'*64,('{VIP}',9000))\n"
                  "    time.sleep(0.005) if i%25==0 else None\n")  # about 5,000 packets/s
        t0 = time.monotonic()
        self.topo.client(1).run("/usr/bin/python3", "-c", sender, timeout=120)
        elapsed = time.monotonic() - t0
        stop.set()
        t.join()
        try:
            netns.wait_for(lambda: counts() - start >= n, 10, f"{n} datagrams at the backends")
        finally:
            stats = self.api({"op": "stats"})
            print(f"sent {n}, backends got {counts() - start}, published {published[0]} times in {elapsed:.1f} s, "
                  f"balancer rx {stats['counters']['rx_packets']} tx {stats['counters']['tx_packets']} "
                  f"drops {[(k, v) for k, v in stats['drops'].items() if v]}", file=sys.stderr)
        self.assertEqual(counts() - start, n, "every datagram reached a backend")
        self.assertGreater(published[0] / elapsed, 10, "tables were republished more than 10 times a second")
        drops = self.api({"op": "stats"})["drops"]
        self.assertEqual(sum(drops.values()) - drops_before, 0, drops)


if __name__ == "__main__":
    unittest.main(verbosity=2)
