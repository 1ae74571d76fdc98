#!/usr/bin/python3
"""Chaos: the real daemon (`understudy run` on net_af_packet in a tools/netns.py topology, l2dsr, real echo and
HTTP servers on the backends) under one abuse after another while client traffic flows through its VIP:
20 long-lived connections sending and checking a line every 100 ms, and a new connection every 50 ms.

    phase 1  reload storm: 220 reloads (API `reload` and SIGHUP) alternating valid changed files and invalid
             ones (syntax error, 1,025+ VIPs, a dotted key of 40,000 parts, a file over 16 MiB); every
             invalid one refused with an error, nothing changed
    phase 2  API storm: 4 concurrent clients adding, removing, draining and enabling the same backend and
             adding and removing the same VIPs; every reply well-formed JSON, the final state the one the last
             successful request of each object says
    phase 3  1,000 idle connections on each listener (control socket, metrics port) plus slow byte-a-second
             clients, the daemon run with `ulimit -n 1024` (hard limit too)
    phase 4  health flapping: a backend's server stopped and started every ~0.8 s for 12 s
    phase 5  oversized and deeply nested API input: a 100,000-deep "id", a line over 1 MiB, non-UTF-8 bytes,
             NUL escapes, `plan` with deeply nested config_text
    phase 6  kill -9 of the daemon and a restart (stale control socket left behind)

Two pools: "steady" (backends 1, 2; VIP 192.0.2.10) carries the measured traffic and is touched by no storm;
"storm" (backends 3, 4, and 5 added and removed by the API storm; VIP 192.0.2.20 and more) takes every change.
So the measured connections must never be reset or moved in phases 1-5. After each phase: the daemon runs and
answers `status`; it still probes (the steady backends' probe counters grow); fresh connections reach the
backend tools/ordering_ref.py names; the long-lived connections still echo (not after phase 6, where they are
counted); VmRSS is back within MEMORY_BOUND of its level before the phase. Resets seen by clients, VmRSS and
the control thread's longest pause (`status` field `control.longest_pause_ms`, when the daemon has it) are
printed per phase.

Run: test_chaos.py UNDERSTUDY UNDERSTUDYCTL   (meson: suite chaos; root, hugepages)
"""
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.environ.get("UNDERSTUDY_SOURCE_ROOT", os.path.abspath(os.path.join(HERE, "..", "..")))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import netns  # noqa: E402

BINARY = os.path.join(ROOT, "build/src/balancer/understudy")
CTL = os.path.join(ROOT, "build/src/cli/understudyctl")
ORDERING_REF = os.path.join(ROOT, "tools", "ordering_ref.py")

PREFIX = "ch"                 # namespaces ch-*, veths ch*: no other test uses it
VIP = "192.0.2.10"            # the steady pool's VIP: measured traffic
STORM_VIP = "192.0.2.20"      # the storm pool's VIP
ECHO_PORT = 7000
HTTP_PORT = 8080              # the probed port
METRICS_PORT = 9479           # inside the balancer namespace
FILE_PREFIX = "chaos-lb1"     # DPDK --file-prefix (with --in-memory)
NOFILE = 1024                 # the daemon runs with RLIMIT_NOFILE soft = hard = 1024
LONG_LIVED = (20000, 20019)   # source ports of the long-lived connections
# VmRSS after a phase may exceed its level before the phase by at most MEMORY_BOUND_KIB: room for the
# allocator's high-water marks (a 16 MiB config file read whole, 2,000 clients' buffers) but not for memory
# kept per request. A leak is also caught apart from any high-water mark: over the second half of the reload
# storm VmRSS may grow by at most LEAK_BOUND_KIB.
MEMORY_BOUND_KIB = 32 * 1024
LEAK_BOUND_KIB = 4 * 1024
STALL_S = 3.0                 # longest silence allowed on a long-lived connection in phases 1-5 (2 loaded cores)
RELOADS = 220
STORM_CLIENTS, STORM_REQUESTS = 4, 150
FLAP_SECONDS, FLAP_HALF_PERIOD = 12.0, 0.8
IDLE_CONNECTIONS, SLOW_CONNECTIONS, HOLD_SECONDS = 1000, 12, 8.0

CONFIG = """
[cluster]
secret = "c4a05c4a05c4a05c4a05c4a05c4a05c4"

[health]
kind = "tcp"
port = 8080
interval_ms = 100
timeout_ms = 100
rise = 2
fall = 2

[[pool]]
name = "steady"
table_bits = 12
  [pool.health]
  interval_ms = 200
  timeout_ms = 200
  fall = 5
  [[pool.backend]]
  id = 1
  address = "10.0.0.11"
  [[pool.backend]]
  id = 2
  address = "10.0.0.12"

[[pool]]
name = "storm"
table_bits = 12
  [[pool.backend]]
  id = 3
  address = "10.0.0.13"
  weight = {w3}
  [[pool.backend]]
  id = 4
  address = "10.0.0.14"

[[vip]]
address = "192.0.2.10"
port = 7000
pool = "steady"
method = "l2dsr"

[[vip]]
address = "192.0.2.20"
port = 7000
pool = "storm"
method = "l2dsr"
{extra_vips}
[dataplane]
eal_args = ["--in-memory", "--no-pci", "--no-telemetry", "-l", "0,1", "--log-level=lib.*:warning",
            "--file-prefix={file_prefix}"]
workers = [1]
source_v4 = "10.0.0.2"
exception_addresses = ["10.0.0.2/24"]
conn_table_size = 65536
  [[dataplane.port]]
  name = "p0"
  devargs = "net_af_packet0,iface=eth0"

[control]
socket = "{socket}"
metrics = "127.0.0.1:{metrics}"
"""


def storm_vip(port):
    return f'\n[[vip]]\naddress = "{STORM_VIP}"\nport = {port}\npool = "storm"\nmethod = "l2dsr"\n'


def require_environment():
    problems = []
    if os.geteuid() != 0:
        problems.append("the chaos suite needs root (network namespaces, AF_PACKET)")
    try:
        with open("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages") as f:
            free = int(f.read())
        if free < 256:
            problems.append(f"{free} free 2 MiB hugepages, need 256: run tools/setup.sh")
    except OSError as e:
        problems.append(f"cannot read hugepage counts: {e}")
    for tool in ("ip", "ss", "ethtool", "sysctl", "prlimit", "curl"):
        if not shutil.which(tool):
            problems.append(f"'{tool}' is not installed (tools/setup.sh installs it)")
    for path in (BINARY, CTL):
        if not os.access(path, os.X_OK):
            problems.append(f"{path} is not built")
    if problems:
        raise SystemExit("FAIL: " + "; ".join(problems))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


# Phase 3: run in the balancer's namespace. Opens N idle connections to the metrics port and N to the control
# socket, then S slow clients on each that send a request one byte a second; after HOLD seconds reports (JSON)
# how many of each the daemon closed, and when each slow one was closed or answered.
HOLDER = r"""
import json,resource,socket,sys,time
resource.setrlimit(resource.RLIMIT_NOFILE,(8192,8192))
path,port,n,slow,hold=sys.argv[1],int(sys.argv[2]),int(sys.argv[3]),int(sys.argv[4]),float(sys.argv[5])
idle={'metrics':[],'control':[]}; errors={'metrics':0,'control':0}
def unix_connect(path):
    # A full backlog (256) answers EAGAIN at once on a Unix socket: try again for up to 5 s.
    for k in range(500):
        u=socket.socket(socket.AF_UNIX); u.settimeout(5)
        try:
            u.connect(path); return u
        except BlockingIOError:
            u.close(); time.sleep(0.01)
    raise OSError('backlog full for 5 s')
for i in range(n):
    try:
        idle['metrics'].append(socket.create_connection(('127.0.0.1',port),timeout=5))
    except OSError:
        errors['metrics']+=1
    try:
        idle['control'].append(unix_connect(path))
    except OSError:
        errors['control']+=1
reqs={'metrics':b'GET /metrics HTTP/1.0\r\n\r\n','control':b'{"op":"status"}\n'}
slows=[]
for i in range(slow):
    for kind in ('metrics','control'):
        s=socket.create_connection(('127.0.0.1',port),timeout=5) if kind=='metrics' else unix_connect(path)
        s.setblocking(False)
        slows.append({'kind':kind,'s':s,'sent':0,'opened':time.monotonic(),'closed':None,'answered':None})
print('held',flush=True)
t0=time.monotonic()
while time.monotonic()-t0<hold:
    for c in slows:
        if c['closed'] is not None or c['answered'] is not None:
            continue
        try:
            d=c['s'].recv(65536)
            if d:
                c['answered']=time.monotonic()-c['opened']
            else:
                c['closed']=time.monotonic()-c['opened']
            continue
        except BlockingIOError:
            pass
        except OSError:
            c['closed']=time.monotonic()-c['opened']; continue
        if c['sent']<len(reqs[c['kind']]):
            try:
                c['s'].send(reqs[c['kind']][c['sent']:c['sent']+1]); c['sent']+=1
            except OSError:
                c['closed']=time.monotonic()-c['opened']
    time.sleep(1.0)
closed={}
for kind,socks in idle.items():
    k=0
    for s in socks:
        s.setblocking(False)
        try:
            if s.recv(1)==b'':
                k+=1
        except BlockingIOError:
            pass
        except OSError:
            k+=1
    closed[kind]=k
print(json.dumps({'opened':{k:len(v) for k,v in idle.items()},'connect_errors':errors,'idle_closed':closed,
    'slow':[{'kind':c['kind'],'sent':c['sent'],'closed':c['closed'],'answered':c['answered']} for c in slows]}),flush=True)
sys.stdin.read()
"""

# Fresh connections from chosen source ports: which backend answers each ("bI"), or the error.
PROBE = r"""
import json,socket,sys
vip,port=sys.argv[1],int(sys.argv[2]); out={}
for p in [int(x) for x in sys.argv[3].split(',')]:
    s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)
    try:
        s.bind(('0.0.0.0',p)); s.settimeout(float(sys.argv[4])); s.connect((vip,port)); s.sendall(b'x\n')
        d=b''
        while not d.endswith(b'\n'):
            r=s.recv(100)
            if not r:
                break
            d+=r
        out[p]=d.decode(errors='replace').split()[0] if d.endswith(b' x\n') else 'bad reply %r'%d
    except OSError as e:
        out[p]='error %s'%e
    finally:
        s.close()
print(json.dumps(out))
"""


class Chaos(unittest.TestCase):
    """The phases run in name order and share one daemon; each restores what it changed."""

    figures = []        # one line per phase, printed again at the end
    pauses = []         # longest control-thread pause read after each phase (ms), when the daemon reports it

    @classmethod
    def setUpClass(cls):
        cls.t_start = time.monotonic()
        cls.dir = tempfile.mkdtemp(prefix="understudy-chaos-")
        cls.socket = os.path.join(cls.dir, "lb1.sock")
        cls.config = os.path.join(cls.dir, "understudy.toml")   # a symlink, swapped atomically per reload
        cls.log = os.path.join(cls.dir, "lb1.log")
        cls.baseline = cls.write_file("baseline.toml", cls.config_text())
        cls.point_config_at(cls.baseline)
        cls.next_port = 30000
        cls.daemon = None
        cls.traffic = None
        cls.topo = netns.Topology(prefix=PREFIX, backends=5, balancers=1, vips=(VIP, STORM_VIP))
        try:
            cls.topo.up()
            for i in range(1, 6):
                cls.topo.start_http_server(i, HTTP_PORT)
                cls.topo.start_echo_server(i, ECHO_PORT)
            cls.start_daemon()
            with open(f"/proc/{cls.daemon.pid}/limits") as f:
                limits = [l for l in f if l.startswith("Max open files")][0].split()
            assert limits[3:5] == [str(NOFILE), str(NOFILE)], f"the daemon's descriptor limit: {limits}"
            netns.wait_for(lambda: all(h.get("probed") and h["up"] for h in cls.api({"op": "health"})["health"]),
                           15, "every backend probed up", cls.log)
            cls.wait_forwarding(20)
            cls.start_traffic()
        except BaseException:
            cls.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.cleanup()
        print("\n== chaos summary", file=sys.stderr)
        for line in cls.figures:
            print("  " + line, file=sys.stderr)
        if cls.pauses:
            print(f"chaos: longest control-thread pause {max(cls.pauses):.1f} ms", file=sys.stderr)
        else:
            print("chaos: longest control-thread pause n/a (status has no control.longest_pause_ms)",
                  file=sys.stderr)
        print(f"chaos: {time.monotonic() - cls.t_start:.1f} s in all", file=sys.stderr)

    cleaned = False

    @classmethod
    def cleanup(cls):
        if cls.cleaned or not hasattr(cls, "topo"):
            return
        cls.cleaned = True
        try:
            if cls.traffic is not None:
                netns.stop_process(cls.traffic, signal.SIGTERM, 10)
            cls.topo.down()
            try:
                with open(cls.log) as f:
                    lines = [l.rstrip() for l in f if any(w in l for w in ("health:", "rror", "reload", "signal"))]
                print(f"\n--- {cls.log}: last health/reload/error lines", file=sys.stderr)
                for l in lines[-25:]:
                    print("  " + l[:300], file=sys.stderr)
            except OSError:
                pass
        finally:
            shutil.rmtree(cls.dir, ignore_errors=True)

    # --- files, daemon, API --------------------------------------------------------------------------

    @classmethod
    def config_text(cls, w3=100, extra_ports=()):
        return CONFIG.format(w3=w3, extra_vips="".join(storm_vip(p) for p in extra_ports),
                             file_prefix=FILE_PREFIX, socket=cls.socket, metrics=METRICS_PORT)

    @classmethod
    def write_file(cls, name, text):
        path = os.path.join(cls.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    @classmethod
    def point_config_at(cls, target):
        tmp = cls.config + ".new"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(target, tmp)
        os.replace(tmp, cls.config)

    @classmethod
    def start_daemon(cls):
        """`understudy run` in the balancer namespace with RLIMIT_NOFILE 1024 (soft and hard: it cannot raise
        it); waits for its "forwarding" line. `ip netns exec` and prlimit exec: the child is the daemon."""
        before = cls.log_count("understudy: forwarding")
        with open(cls.log, "a") as log:
            p = cls.topo.balancer(1).popen("prlimit", f"--nofile={NOFILE}:{NOFILE}", BINARY, "run",
                                           "--config", cls.config, stdout=log, stderr=subprocess.STDOUT)
        cls.topo.procs.append(p)
        netns.wait_for(lambda: p.poll() is not None or cls.log_count("understudy: forwarding") > before, 30,
                       "the daemon to start forwarding", cls.log)
        if p.poll() is not None:
            raise AssertionError(f"the daemon exited {p.returncode}:\n{cls.read_log()[-3000:]}")
        assert os.readlink(f"/proc/{p.pid}/exe").endswith("understudy"), "the child process is the daemon"
        cls.topo.balancer(1).run("ip", "route", "replace", "default", "via", netns.Topology.ROUTER_SERVER_SIDE,
                                 "dev", "understudy0")
        cls.daemon = p
        return p

    @classmethod
    def read_log(cls):
        with open(cls.log, errors="replace") as f:
            return f.read()

    @classmethod
    def log_count(cls, text):
        try:
            return cls.read_log().count(text)
        except FileNotFoundError:
            return 0

    @classmethod
    def api(cls, request, expect_ok=True, timeout=10):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(cls.socket)
            s.sendall(json.dumps(request).encode() + b"\n")
            line = s.makefile("rb").readline()
        reply = json.loads(line)
        if expect_ok is not None:
            assert reply.get("ok") is expect_ok, f"{request}: {reply}"
        return reply

    @classmethod
    def fresh_ports(cls, n):
        ports = list(range(cls.next_port, cls.next_port + n))
        cls.next_port += n
        assert cls.next_port < 50000, "out of fresh source ports"
        return ports

    @classmethod
    def connect_from(cls, ports, vip=VIP, timeout=2.0):
        r = cls.topo.client(1).run("/usr/bin/python3", "-c", PROBE, vip, str(ECHO_PORT),
                                   ",".join(str(p) for p in ports), str(timeout), timeout=120)
        return {int(k): v for k, v in json.loads(r.stdout).items()}

    @classmethod
    def expected(cls, ports):
        """tools/ordering_ref.py: the serving backend of each flow to the steady VIP (both backends up)."""
        flows = "".join(f"{netns.Topology.client_addr(1)} {p} {VIP} {ECHO_PORT} tcp\n" for p in ports)
        r = subprocess.run(["/usr/bin/python3", ORDERING_REF, "lookup", "--config", cls.baseline], input=flows,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return {p: f"b{json.loads(l)['serving']}" for p, l in zip(ports, r.stdout.splitlines())}

    @classmethod
    def wait_forwarding(cls, seconds):
        """Until a fresh connection reaches each steady backend (next hops are learnt from the neighbour table)."""
        deadline = time.monotonic() + seconds
        seen = set()
        while time.monotonic() < deadline:
            got = cls.connect_from(cls.fresh_ports(8), timeout=1.0)
            seen |= {v for v in got.values() if v in ("b1", "b2")}
            if seen == {"b1", "b2"}:
                return
            time.sleep(0.2)
        raise AssertionError(f"no connection through the VIP reached every steady backend in {seconds} s "
                             f"(seen {sorted(seen)})\n{cls.read_log()[-2000:]}")

    @classmethod
    def start_traffic(cls):
        cls.report_path = os.path.join(cls.dir, "traffic.json")
        cls.traffic = cls.topo.client(1).popen(
            "/usr/bin/python3", os.path.join(HERE, "traffic.py"), "--vip", VIP, "--port", str(ECHO_PORT),
            "--sports", f"{LONG_LIVED[0]}-{LONG_LIVED[1]}", "--backends", "b1,b2", "--interval", "0.1",
            "--new-interval", "0.05", "--report", cls.report_path, "--max-seconds", "280",
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cls.topo.procs.append(cls.traffic)
        netns.wait_for(lambda: os.path.exists(cls.report_path) and
                       all(c["replies"] >= 3 for c in cls.traffic_report()["conns"]), 15,
                       "every long-lived connection to echo")
        conns = cls.traffic_report()["conns"]
        assert {c["backend"] for c in conns} == {"b1", "b2"}, "long-lived connections on both steady backends"

    @classmethod
    def traffic_report(cls):
        for _ in range(20):
            try:
                with open(cls.report_path) as f:
                    return json.load(f)
            except (OSError, ValueError):
                time.sleep(0.05)
        raise AssertionError("no traffic report")

    # --- what every phase checks -----------------------------------------------------------------------

    def begin(self, name):
        self.assertIsNone(self.daemon.poll(), f"the daemon runs before {name}")
        self.phase = name
        self.t0 = time.monotonic()
        self.rss_before = rss_kib(self.daemon.pid)
        self.report_before = self.traffic_report()
        self.addCleanup(self.restore_baseline)
        print(f"\n== {name}: VmRSS before {self.rss_before} KiB", file=sys.stderr)

    def restore_baseline(self):
        """After every phase, passed or not: the config file is the baseline again, and the daemon runs it."""
        self.point_config_at(self.baseline)
        if self.daemon.poll() is None:
            try:
                self.api({"op": "reload"}, expect_ok=None)
            except (OSError, ValueError) as e:
                print(f"  restoring the baseline config: {e!r}", file=sys.stderr)

    def health_line_count(self):
        return self.log_count("health: ")

    def end(self, long_lived_must_survive=True):
        """The checks after each phase (see the module's docstring); returns the phase's figures."""
        name = self.phase
        t_end = time.monotonic()
        self.assertIsNone(self.daemon.poll(), f"{name}: the daemon still runs\n{self.read_log()[-3000:]}")
        status = self.api({"op": "status"})
        self.assertTrue(status["ok"])
        # Probes go on: the steady backends' probe counters grow, and both are up.
        h1 = {h["id"]: h for h in self.api({"op": "health", "pool": "steady"})["health"]}
        time.sleep(0.7)
        h2 = {h["id"]: h for h in self.api({"op": "health", "pool": "steady"})["health"]}
        for i in (1, 2):
            self.assertGreater(h2[i]["probes"], h1[i]["probes"], f"{name}: backend {i} is still probed")
            self.assertTrue(h2[i]["up"], f"{name}: steady backend {i} is up: {h2[i]}")
        # Fresh connections land where the reference says.
        ports = self.fresh_ports(16)
        got = self.connect_from(ports)
        want = self.expected(ports)
        self.assertEqual(got, want, f"{name}: fresh connections through the VIP reach the backend "
                                    "tools/ordering_ref.py names")
        # The traffic that ran through the phase.
        time.sleep(0.3)
        rep = self.traffic_report()
        before = {c["sport"]: c for c in self.report_before["conns"]}
        conns = rep["conns"]
        died = [c for c in conns if c["error_at"] is not None and c["error_at"] >= self.t0]
        resets = sum(1 for c in died if c["error"] == "reset")
        new_failures = [f for f in rep["new"]["failures"] if f[0] >= self.t0]
        new_resets = sum(1 for f in new_failures if f[1] == "reset")
        new_ok = rep["new"]["ok"] - self.report_before["new"]["ok"]
        stalls = [(c["sport"], round(b - a, 2)) for c in conns for a, b in c["gaps"]
                  if b >= self.t0 and b - a > STALL_S]
        longest_gap = max([b - a for c in conns for a, b in c["gaps"] if b >= self.t0] + [0.0])
        bad = sum(c["bad_replies"] - before[c["sport"]]["bad_replies"] for c in conns)
        alive = [c for c in conns if c["error"] is None and rep["now"] - c["last_reply"] < 1.0]
        # Memory: back within the bound (a little time for the allocator and deferred frees).
        rss_after = rss_kib(self.daemon.pid)
        for _ in range(10):
            if rss_after <= self.rss_before + MEMORY_BOUND_KIB:
                break
            time.sleep(0.3)
            rss_after = rss_kib(self.daemon.pid)
        pause = (status.get("control") or {}).get("longest_pause_ms")
        if isinstance(pause, (int, float)):
            Chaos.pauses.append(float(pause))
        line = (f"{name}: {t_end - self.t0:.1f} s; resets: long-lived {resets}, new {new_resets}; "
                f"long-lived alive {len(alive)}/{len(conns)}, longest gap {longest_gap:.2f} s, bad replies {bad}; "
                f"new connections ok {new_ok}, failed {len(new_failures)}; VmRSS {self.rss_before} -> {rss_after} "
                f"KiB (bound +{MEMORY_BOUND_KIB} KiB); longest control-thread pause "
                f"{'n/a' if pause is None else f'{pause:.1f} ms'}")
        Chaos.figures.append(line)
        print("  " + line, file=sys.stderr)
        self.assertLessEqual(rss_after, self.rss_before + MEMORY_BOUND_KIB,
                             f"{name}: VmRSS {self.rss_before} -> {rss_after} KiB")
        if long_lived_must_survive:
            self.assertEqual([(c["sport"], c["error"]) for c in died], [],
                             f"{name}: no long-lived connection of the untouched pool ends")
            self.assertEqual(len(alive), len(conns), f"{name}: every long-lived connection still echoes")
            self.assertEqual(bad, 0, f"{name}: every reply is the right line from the same backend")
            self.assertEqual(stalls, [], f"{name}: no long-lived connection silent for more than {STALL_S} s")
            self.assertEqual(new_failures, [], f"{name}: every new connection through the VIP works")
            self.assertGreater(new_ok, 10, f"{name}: new connections kept coming")
        return {"resets": resets + new_resets, "new_failures": new_failures, "alive": alive, "rep": rep}

    # --- phase 1 -----------------------------------------------------------------------------------------

    def invalid_files(self):
        """The four bad files, each also changing a weight (so that a partial apply would show)."""
        base = self.config_text(w3=7)
        many = "".join(f'\n[[vip]]\naddress = "192.0.2.40"\nport = {p}\npool = "storm"\nmethod = "l2dsr"\n'
                       for p in range(1, 1026))
        dotted = base + "\n" + ".".join(["a"] * 40000) + " = 1\n"
        pad = "# " + "x" * 1021 + "\n"
        big = base + pad * (17 * 1024 + 1)
        return {
            "syntax": (self.write_file("bad-syntax.toml", base + '\n[[pool]\nname = "x"\n'), "syntax"),
            "1027 VIPs": (self.write_file("bad-vips.toml", base + many), "1024"),
            "dotted key of 40,000 parts": (self.write_file("bad-dotted.toml", dotted),
                                           "a dotted key of 40000 parts"),
            "17 MiB file": (self.write_file("bad-big.toml", big), "a configuration holds at most"),
        }

    def storm_state(self):
        backends = {b["id"]: (b["weight"], b["state"]) for b in self.api({"op": "backend.list", "pool": "storm"})["backends"]}
        vips = sorted((v["address"], v["port"]) for v in self.api({"op": "vip.list"})["vips"])
        return backends, vips

    def sighup_and_wait(self, marker_ok, marker_bad):
        n_ok, n_bad = self.log_count(marker_ok), self.log_count(marker_bad)
        self.daemon.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            text = self.read_log()
            if text.count(marker_ok) > n_ok:
                return True, text
            if text.count(marker_bad) > n_bad:
                return False, text
            time.sleep(0.02)
        self.fail(f"SIGHUP: no reload logged within 10 s\n{self.read_log()[-2000:]}")

    def test_1_reload_storm(self):
        self.begin("phase 1 reload storm")
        bad = self.invalid_files()
        kinds = list(bad)
        valid_n = invalid_n = 0
        counts, problems = {}, []
        t_deadline = time.monotonic() + 90
        ok_marker, bad_marker = "SIGHUP: configuration reloaded", "SIGHUP: reload rejected, nothing changed"

        def problem(text):
            problems.append(text)
            print(f"  PROBLEM {text[:400]}", file=sys.stderr)

        # Every reload is judged on its own (what it did from the state before it), and the storm goes on
        # after a wrong one, so that one run shows every kind of input that goes wrong.
        rss_half = None
        for i in range(RELOADS):
            if i == RELOADS // 2:
                rss_half = rss_kib(self.daemon.pid)
            self.assertLess(time.monotonic(), t_deadline, f"reload storm: {i} reloads in 90 s")
            self.assertIsNone(self.daemon.poll(), f"the daemon runs at reload {i}\n{self.read_log()[-2000:]}")
            if i % 2 == 0:
                w3 = 50 + (valid_n * 37) % 200
                extra = tuple(7100 + k for k in range(valid_n % 4))
                path = self.write_file(f"valid-{valid_n % 2}.toml", self.config_text(w3=w3, extra_ports=extra))
                via = "api" if valid_n % 2 == 0 else "sighup"
                valid_n += 1
                what = f"reload {i} (valid, {via})"
                gen = self.api({"op": "status"})["generation"]
                self.point_config_at(path)
                if via == "api":
                    reply = self.api({"op": "reload"}, expect_ok=None)
                    if reply.get("ok") is not True or not reply.get("generation", 0) > gen:
                        problem(f"{what}: not applied: {str(reply)[:300]}")
                else:
                    applied, text = self.sighup_and_wait(ok_marker, bad_marker)
                    if not applied:
                        problem(f"{what}: rejected: {text[text.rfind(bad_marker):][:300]}")
                backends, vips = self.storm_state()
                want = ({3: (w3, "enabled"), 4: (100, "enabled")}, [(STORM_VIP, p) for p in (7000,) + extra])
                got = (backends, [v for v in vips if v[0] == STORM_VIP])
                if got != want:
                    problem(f"{what}: the daemon holds {str(got)[:200]}, the file says {want}")
                counts[f"valid via {via}"] = counts.get(f"valid via {via}", 0) + 1
            else:
                kind = kinds[invalid_n % len(kinds)]
                via = "api" if (invalid_n // len(kinds)) % 2 == 0 else "sighup"
                invalid_n += 1
                what = f"reload {i} ({kind}, {via})"
                path, want = bad[kind]
                state = self.storm_state()
                gen = self.api({"op": "status"})["generation"]
                health_lines = self.health_line_count()
                self.point_config_at(path)
                if via == "api":
                    reply = self.api({"op": "reload"}, expect_ok=None)
                    if reply.get("ok") is not False or want not in str(reply.get("error")):
                        problem(f"{what}: want an error with {want!r}, got {str(reply)[:300]}")
                else:
                    applied, text = self.sighup_and_wait(ok_marker, bad_marker)
                    tail = text[text.rfind(bad_marker):]
                    if applied or want not in tail[:4000]:
                        problem(f"{what}: want a rejection naming {want!r} in the log, got {tail[:300]!r}")
                after = self.storm_state()
                if after != state:
                    problem(f"{what}: refused, yet the running config changed: storm pool {state[0]} -> {after[0]}, "
                            f"{len(state[1])} -> {len(after[1])} VIPs")
                # The generation moves only with health changes (logged), never with a refused reload.
                published = self.api({"op": "status"})["generation"] - gen
                if published > self.health_line_count() - health_lines:
                    problem(f"{what}: refused, yet {published} publication(s)")
                counts[f"{kind} via {via}"] = counts.get(f"{kind} via {via}", 0) + 1
        rss_end = rss_kib(self.daemon.pid)
        print(f"  reloads: {json.dumps(counts)}; {len(problems)} wrong; VmRSS {rss_half} KiB half-way, "
              f"{rss_end} KiB at the end", file=sys.stderr)
        self.assertLessEqual(rss_end - rss_half, LEAK_BOUND_KIB, "no memory grows reload after reload")
        # `understudyctl check` answers for the daemon: what a reload refuses, check refuses too.
        for kind, (path, _) in bad.items():
            r = subprocess.run([CTL, "check", "--config", path], capture_output=True, text=True, timeout=60)
            if r.returncode != 1:
                problem(f"understudyctl check --config <{kind}> exits {r.returncode} (want 1, as the daemon "
                        f"refuses it): {(r.stdout + r.stderr).strip()[:200]}")
        self.assertEqual(sum(counts.values()), RELOADS)
        self.assertEqual(len(counts), 2 + 2 * len(kinds), "every kind of input, through the API and SIGHUP")
        self.point_config_at(self.baseline)
        self.api({"op": "reload"})
        self.assertEqual(self.storm_state()[0], {3: (100, "enabled"), 4: (100, "enabled")})
        figures = self.end()
        self.assertEqual(problems, [], f"{len(problems)} of {RELOADS} reloads went wrong; the first: "
                                       f"{problems[:1]}")
        return figures

    # --- phase 2 -----------------------------------------------------------------------------------------

    STORM_OPS = (
        ("b5", {"op": "backend.add", "pool": "storm", "id": 5, "address": "10.0.0.15"}),
        ("b5", {"op": "backend.remove", "pool": "storm", "id": 5}),
        ("b5", {"op": "backend.drain", "pool": "storm", "id": 5}),
        ("b5", {"op": "backend.enable", "pool": "storm", "id": 5}),
        ("b4", {"op": "backend.drain", "pool": "storm", "id": 4}),
        ("b4", {"op": "backend.enable", "pool": "storm", "id": 4}),
    ) + tuple((f"vip{p}", {"op": op, "address": STORM_VIP, "port": p, **({"pool": "storm", "method": "l2dsr"}
                                                                         if op == "vip.add" else {})})
              for p in (7200, 7201, 7202) for op in ("vip.add", "vip.remove")) + (
        (None, {"op": "status"}),
        (None, {"op": "backend.list", "pool": "storm"}),
    )
    # The only refusals the storm may get: the object is not in the state the request needs.
    REFUSALS = {"backend.add": "duplicate", "backend.remove": "has no backend 5", "backend.drain": "has no backend 5",
                "backend.enable": "has no backend 5", "vip.add": "VIP", "vip.remove": "no VIP"}

    def storm_client(self, w, records, errors):
        rnd = random.Random(1000 + w)
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(20)
            s.connect(self.socket)
            f = s.makefile("rb")
            for i in range(STORM_REQUESTS):
                if rnd.random() < 0.15:  # sometimes a connection per request
                    f.close()
                    s.close()
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    s.settimeout(20)
                    s.connect(self.socket)
                    f = s.makefile("rb")
                obj, req = rnd.choice(self.STORM_OPS)
                if not req["op"].startswith("backend."):  # there "id" is the backend's
                    req = dict(req, id=f"w{w}-{i}")
                t_send = time.monotonic()
                s.sendall(json.dumps(req).encode() + b"\n")
                line = f.readline()
                t_recv = time.monotonic()
                records.append({"obj": obj, "req": req, "line": line, "t_send": t_send, "t_recv": t_recv})
            f.close()
            s.close()
        except Exception as e:  # noqa: BLE001 - reported by the test
            errors.append(f"client {w}: {e!r}")

    def test_2_api_storm(self):
        self.begin("phase 2 API storm")
        records, errors = [], []
        threads = [threading.Thread(target=self.storm_client, args=(w, records, errors)) for w in range(STORM_CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        self.assertFalse([t for t in threads if t.is_alive()], "every storm client finished within 60 s")
        self.assertEqual(errors, [], "no storm client lost its connection")
        self.assertEqual(len(records), STORM_CLIENTS * STORM_REQUESTS)
        changes = []
        refused = 0
        for r in records:
            try:
                reply = json.loads(r["line"])
            except ValueError:
                self.fail(f"a reply that is not JSON: {r['line'][:300]!r} for {r['req']}")
            self.assertIsInstance(reply, dict, r)
            self.assertIsInstance(reply.get("ok"), bool, reply)
            self.assertEqual(reply.get("id"), r["req"].get("id"), f"the request id is echoed: {r['req']} {reply}")
            op = r["req"]["op"]
            if not reply["ok"]:
                refused += 1
                self.assertIsInstance(reply.get("error"), str, reply)
                self.assertIn(self.REFUSALS.get(op, "\0never"), reply["error"], f"{r['req']}: {reply}")
            elif r["obj"] is not None:
                self.assertIsInstance(reply.get("generation"), int, reply)
                changes.append(dict(r, gen=reply["generation"]))
        # One total order: a change answered before another was sent has the lower generation.
        for a in changes:
            for b in changes:
                if a["t_recv"] < b["t_send"]:
                    self.assertLess(a["gen"], b["gen"], f"{a['req']} then {b['req']}")
        gens = [c["gen"] for c in changes]
        self.assertEqual(len(set(gens)), len(gens), "every successful change has a generation of its own")
        last = {}
        for c in sorted(changes, key=lambda c: c["gen"]):
            last[c["obj"]] = c["req"]
        backends, vips = self.storm_state()
        want_b = {3: (100, "enabled"), 4: (100, "enabled")}
        if "b4" in last:
            want_b[4] = (100, "drain" if last["b4"]["op"] == "backend.drain" else "enabled")
        if "b5" in last and last["b5"]["op"] != "backend.remove":
            want_b[5] = (100, "drain" if last["b5"]["op"] == "backend.drain" else "enabled")
        self.assertEqual(backends, want_b, f"the storm pool is what the last successful requests say: "
                                           f"{ {k: v['op'] for k, v in last.items()} }")
        want_v = {(STORM_VIP, 7000)} | {(STORM_VIP, p) for p in (7200, 7201, 7202)
                                        if f"vip{p}" in last and last[f"vip{p}"]["op"] == "vip.add"}
        self.assertEqual({v for v in vips if v[0] == STORM_VIP}, want_v, "the VIPs are what the last requests say")
        self.assertIn((VIP, ECHO_PORT), vips)
        addr5 = [b["address"] for b in self.api({"op": "backend.list", "pool": "storm"})["backends"] if b["id"] == 5]
        self.assertIn(addr5, ([], ["10.0.0.15"]))
        print(f"  API storm: {len(records)} requests from {STORM_CLIENTS} clients, {len(changes)} changes "
              f"applied, {refused} refused; final {want_b}, VIPs {sorted(p for _, p in want_v)}", file=sys.stderr)
        self.api({"op": "reload"})  # back to the file
        self.assertEqual(self.storm_state()[0], {3: (100, "enabled"), 4: (100, "enabled")})
        self.end()

    # --- phase 3 -----------------------------------------------------------------------------------------

    def descriptors(self):
        return len(os.listdir(f"/proc/{self.daemon.pid}/fd"))

    def metrics_ok(self):
        r = self.topo.balancer(1).run("curl", "-s", "-m", "5", f"http://127.0.0.1:{METRICS_PORT}/metrics",
                                      check=False)
        return r.returncode == 0 and "understudy_rx_packets_total" in r.stdout

    def test_3_idle_and_slow_connections(self):
        self.begin("phase 3 idle and slow connections")
        fds_before = self.descriptors()
        holder = self.topo.balancer(1).popen(
            "/usr/bin/python3", "-c", HOLDER, self.socket, str(METRICS_PORT), str(IDLE_CONNECTIONS),
            str(SLOW_CONNECTIONS), str(HOLD_SECONDS), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.topo.procs.append(holder)
        fds_max = fds_before
        try:
            t_open = time.monotonic()
            self.assertEqual(holder.stdout.readline().strip(), "held")
            print(f"  {2 * IDLE_CONNECTIONS} idle and {2 * SLOW_CONNECTIONS} slow connections open after "
                  f"{time.monotonic() - t_open:.1f} s", file=sys.stderr)
            answered = metrics = 0
            probes0 = sum(h["probes"] for h in self.api({"op": "health"})["health"])
            t_hold = time.monotonic()
            while time.monotonic() - t_hold < HOLD_SECONDS - 1.5:
                fds_max = max(fds_max, self.descriptors())
                answered += self.api({"op": "status"})["ok"]
                metrics += self.metrics_ok()
                time.sleep(0.5)
            r = subprocess.run([CTL, "--socket", self.socket, "status", "--json"], capture_output=True, text=True,
                               timeout=30)
            self.assertEqual(r.returncode, 0, "understudyctl still gets in: " + r.stderr)
            health = self.api({"op": "health"})["health"]
            probes1 = sum(h["probes"] for h in health)
            summary = json.loads(holder.stdout.readline())
        finally:
            holder.stdin.close()
            holder.wait(timeout=30)
        print(f"  daemon descriptors: {fds_before} before, {fds_max} at most while held (limit {NOFILE}); "
              f"API answered {answered}, metrics {metrics} times while held; probes +{probes1 - probes0}",
              file=sys.stderr)
        slow = summary.pop("slow")
        print(f"  holder: {json.dumps(summary)}", file=sys.stderr)
        for kind in ("metrics", "control"):
            s = [c for c in slow if c["kind"] == kind]
            print(f"  slow {kind} clients: closed after {[c['closed'] and round(c['closed'], 1) for c in s]} s, "
                  f"answered {sum(1 for c in s if c['answered'] is not None)}", file=sys.stderr)
        self.assertEqual(summary["connect_errors"], {"metrics": 0, "control": 0},
                         "every connection was accepted (the idlest/oldest closed to make room)")
        self.assertLess(fds_max, fds_before + 64 + 32 + 8, "the listeners keep at most 64 API and 32 metrics clients")
        self.assertGreater(answered, 0)
        self.assertGreater(metrics, 0)
        self.assertGreater(probes1, probes0, "probes went on while the listeners were flooded")
        self.assertTrue(all(h["up"] for h in health), health)
        for c in slow:
            if c["kind"] == "metrics":
                # One a second: never a complete request in time; closed after the 5 s request timeout.
                self.assertIsNone(c["answered"], c)
                self.assertIsNotNone(c["closed"], f"a byte-a-second metrics client is closed: {c}")
                self.assertLessEqual(c["closed"], 7.5, c)
        netns.wait_for(lambda: self.descriptors() <= fds_before + 4, 10,
                       f"the daemon's descriptors back to {fds_before} (+4) once the clients left")
        self.assertTrue(self.metrics_ok())
        self.end()

    # --- phase 4 -----------------------------------------------------------------------------------------

    def test_4_health_flapping(self):
        self.begin("phase 4 health flapping")
        downs, ups = self.log_count("health: storm/3 down"), self.log_count("health: storm/3 up")
        cycles = 0
        t_flap = time.monotonic()
        while time.monotonic() - t_flap < FLAP_SECONDS and cycles < 20:
            self.topo.stop_http_server(3)
            time.sleep(FLAP_HALF_PERIOD)
            self.topo.start_http_server(3, HTTP_PORT)
            time.sleep(FLAP_HALF_PERIOD)
            cycles += 1
        netns.wait_for(lambda: next(b for b in self.api({"op": "backend.list", "pool": "storm"})["backends"]
                                    if b["id"] == 3)["operational"], 10, "backend 3 back up", self.log)
        n_down = self.log_count("health: storm/3 down") - downs
        n_up = self.log_count("health: storm/3 up") - ups
        print(f"  {cycles} stop/start cycles of backend 3's server: {n_down} down and {n_up} up verdicts",
              file=sys.stderr)
        self.assertGreaterEqual(n_down, cycles // 2, "the flapping was seen (down verdicts)")
        self.assertEqual(n_up, n_down, "every down verdict was followed by an up verdict")
        self.end()

    # --- phase 5 -----------------------------------------------------------------------------------------

    def exchange(self, s, data):
        """Sends data on s, returns the next reply line parsed as JSON (asserting it is a JSON object)."""
        s.sendall(data)
        line = s.makefile("rb").readline()
        self.assertTrue(line.endswith(b"\n"), f"a reply to {data[:80]!r}...: got {line[:200]!r}")
        try:
            reply = json.loads(line)
        except ValueError:
            self.fail(f"a reply that is not JSON for {data[:80]!r}: {line[:300]!r}")
        self.assertIsInstance(reply, dict)
        return reply

    def test_5_hostile_input(self):
        self.begin("phase 5 hostile API input")
        gen = self.api({"op": "status"})["generation"]
        health_lines = self.health_line_count()
        before = self.storm_state(), self.api({"op": "backend.list", "pool": "steady"})["backends"]
        deep = 100000
        cases = [
            ("100,000-deep JSON id (arrays)", b'{"op":"status","id":' + b"[" * deep + b"]" * deep + b"}\n", "nest"),
            ("100,000-deep JSON id (objects)", b'{"op":"status","id":' + b'{"a":' * deep + b"1" + b"}" * deep + b"}\n",
             "nest"),
            ("non-UTF-8 op", b'{"op":"\xff\xfe\xfd"}\n', None),
            ("non-UTF-8 pool", b'{"op":"backend.drain","pool":"st\xc3\x28","id":1}\n', None),
            ("non-UTF-8 id", b'{"op":"status","id":"\xed\xa0\x80"}\n', None),
            ("non-UTF-8 outside strings", b'{"op":"status"\xff}\n', None),
            ("NUL escape in op", b'{"op":"status\\u0000"}\n', "unknown op"),
            ("NUL escape in pool", b'{"op":"backend.drain","pool":"steady\\u0000x","id":1}\n', "pool"),
            ("NUL escape in address", b'{"op":"vip.add","address":"192.0.2.20\\u0000","port":7300,"pool":"storm",'
                                      b'"method":"l2dsr"}\n', "address"),
            ("NUL escape in backend address", b'{"op":"backend.add","pool":"storm","id":9,'
                                              b'"address":"10.0.0.15\\u0000junk"}\n', "address"),
            ("raw NUL byte, then more", b'{"op":"status"}\x00{"op":"backend.drain"}\n', None),
            ("plan: config_text with a NUL", json.dumps(
                {"op": "plan", "config_text": "[cluster]\u0000\n"}).encode() + b"\n", None),
            ("plan: config_text nested 100,000 deep", json.dumps(
                {"op": "plan", "config_text": "x = " + "[" * deep + "]" * deep + "\n"}).encode() + b"\n", "nested"),
            ("plan: config_text with a dotted key of 40,000 parts", json.dumps(
                {"op": "plan", "config_text": ".".join(["a"] * 40000) + " = 1\n"}).encode() + b"\n", "dotted key"),
            ("plan: config_text of inline tables 50,000 deep", json.dumps(
                {"op": "plan", "config_text": "x = " + "{a = " * 50000 + "1" + " }" * 50000 + "\n"}).encode() + b"\n",
             "nested"),
        ]
        problems = []
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(20)
            s.connect(self.socket)
            for what, data, want in cases:
                reply = self.exchange(s, data)  # asserts a well-formed JSON object
                if reply.get("ok") is not False or not isinstance(reply.get("error"), str) or \
                        (want and want not in reply["error"]):
                    problems.append(f"{what}: want a refusal" + (f" naming {want!r}" if want else "") +
                                    f", got {str(reply)[:200]}")
                    print(f"  PROBLEM {problems[-1]}", file=sys.stderr)
                else:
                    print(f"  {what}: {reply['error'][:110]!r}", file=sys.stderr)
                # The same connection goes on serving.
                self.assertIs(self.exchange(s, b'{"op":"status","id":1}\n').get("ok"), True, f"after {what}")
        # A line over 1 MiB (docs/operations.md: "a line longer than 1 MiB gets an error and the connection is
        # closed"), sent whole or cut in two (the newline half a second later): one error reply, then the
        # connection ends; the daemon goes on.
        long_line = b'{"op":"status","id":"' + b"x" * (3 << 19) + b'"}\n'
        # Whether the daemon has read the newline by the time it has read 1 MiB depends on timing: several tries.
        tries = [(f"sent whole, try {k}", [long_line]) for k in (1, 2, 3, 4)]
        for how, parts in tries + [("newline later", [long_line[:-1], b"\n"])]:
            what = f"line of 1.5 MiB, {how}"
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(10)
                s.connect(self.socket)
                try:
                    for k, part in enumerate(parts):
                        if k:
                            time.sleep(0.5)
                        s.sendall(part)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                f = s.makefile("rb")
                line = f.readline()
                s.settimeout(3)
                try:
                    reply = json.loads(line)
                except ValueError:
                    self.fail(f"{what}: a reply that is not JSON: {line[:200]!r}")
                self.assertIsInstance(reply, dict)
                try:
                    rest = f.read()
                    closed = "closed"
                except (TimeoutError, socket.timeout):
                    rest, closed = b"", "still open 3 s later"
                if reply.get("ok") is not False or "request longer than" not in str(reply.get("error")) or \
                        rest or closed != "closed":
                    problems.append(f"{what}: want one error reply 'request longer than ...' and the connection "
                                    f"closed; got ok={reply.get('ok')}, {len(line)} bytes: "
                                    f"{str(reply.get('error', ''))[:80]!r}, then {len(rest)} more bytes, {closed}")
                    print(f"  PROBLEM {problems[-1]}", file=sys.stderr)
                else:
                    print(f"  {what}: {reply['error']!r}, connection closed", file=sys.stderr)
        after = self.storm_state(), self.api({"op": "backend.list", "pool": "steady"})["backends"]
        self.assertEqual([(b["id"], b["state"], b["weight"]) for b in after[1]],
                         [(b["id"], b["state"], b["weight"]) for b in before[1]], "the steady pool is untouched")
        if after[0] != before[0]:
            added = sorted(set(after[0][1]) - set(before[0][1]))
            problems.append(f"the storm pool or the VIPs changed: backends {before[0][0]} -> {after[0][0]}, "
                            f"VIPs added {added}")
        published = self.api({"op": "status"})["generation"] - gen
        if published > self.health_line_count() - health_lines:
            problems.append(f"{published} publication(s) from input that should all be refused")
        self.end()
        self.assertEqual(problems, [], "every hostile request is refused and changes nothing")

    # --- phase 6 -----------------------------------------------------------------------------------------

    def test_6_kill_and_restart(self):
        self.begin("phase 6 kill -9 and restart")
        old = self.daemon
        old.kill()
        t_kill = time.monotonic()
        old.wait(timeout=10)
        stale = os.path.exists(self.socket)
        self.start_daemon()
        t_started = time.monotonic()
        # Fresh connections recover: poll until one reaches a steady backend.
        t_back = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            got = self.connect_from(self.fresh_ports(2), timeout=1.0)
            if any(v in ("b1", "b2") for v in got.values()):
                t_back = time.monotonic()
                break
        self.assertIsNotNone(t_back, f"a fresh connection works within 30 s of the restart\n{self.read_log()[-2000:]}")
        self.wait_forwarding(20)
        time.sleep(2.5)  # long-lived connections whose retransmissions backed off get another chance
        print(f"  killed; stale control socket left: {stale}; restarted (forwarding) after {t_started - t_kill:.2f} s;"
              f" first fresh connection through after {t_back - t_kill:.2f} s", file=sys.stderr)
        fig = self.end(long_lived_must_survive=False)
        rep = fig["rep"]
        after = [t for t in rep["new"]["ok_times"] if t > t_back]
        self.assertGreater(len(after), 10, "the stream of new connections recovered")
        self.assertEqual([f for f in fig["new_failures"] if f[0] > t_back + 1.0], [],
                         "no new connection fails a second after service came back")
        print(f"  long-lived connections: {len(fig['alive'])} of {len(rep['conns'])} survived the restart "
              f"(l2dsr: the restarted daemon hashes them to the same servers)", file=sys.stderr)


def _sigterm(*_):
    raise KeyboardInterrupt("SIGTERM")


def main():
    global BINARY, CTL
    argv = sys.argv
    if len(argv) >= 3 and not argv[1].startswith("-"):
        BINARY, CTL = argv[1], argv[2]
        argv = [argv[0]] + argv[3:]
    signal.signal(signal.SIGTERM, _sigterm)
    require_environment()
    try:
        prog = unittest.main(argv=argv, exit=False, verbosity=2)
    finally:
        Chaos.cleanup()  # after Ctrl-C or SIGTERM (meson's timeout) too
    sys.exit(0 if prog.result.wasSuccessful() and prog.result.testsRun > 0 else 1)


if __name__ == "__main__":
    main()
