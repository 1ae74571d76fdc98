"""What every end-to-end test shares: the environment check, the cluster (a tools/netns.py topology plus the
real `understudy run` on its balancer hosts and real servers on its backends), understudyctl against the
live daemons, and the client programs of this directory run inside the client namespace.

The forwarding method is a parameter of the cluster (Cluster.method), so each scenario class is written
once and made concrete per method (see SingleNodeL2dsr in test_single_node.py). What a method needs on the
backends besides their servers is Cluster.prepare_backend: nothing for l2dsr (the VIP on lo and
arp_ignore, which netns.py sets up); for gue/ipip it will start understudy-agent in the backend.

Every assertion is about what clients saw (replies naming their server, resets, gaps) or about the daemon's
own live answers (lookup, backend list, stats), never about the test's own model of the data plane.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.environ.get("UNDERSTUDY_SOURCE_ROOT", os.path.abspath(os.path.join(HERE, "..", "..")))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import netns  # noqa: E402

BINARY = os.environ.get("UNDERSTUDY_BINARY", os.path.join(ROOT, "build/src/control/understudy"))
CTL = os.environ.get("UNDERSTUDYCTL_BINARY", os.path.join(ROOT, "build/src/cli/understudyctl"))

VIP = "192.0.2.10"
HTTP_PORT = 8080   # short sessions (http_sessions.py)
ECHO_PORT = 7000   # long-lived connections (stream_client.py)
UDP_PORT = 9000    # UDP sinks; the first UDP VIP on the address, so IP fragments belong to it
UDP_CLIENT_PORT = 9001  # affinity = "client": its live lookup names the server of any port-less key

# Health probing, and the failover detection time the tests hold the daemon to.
PROBE_INTERVAL_MS, PROBE_TIMEOUT_MS, PROBE_FALL, PROBE_RISE = 100, 50, 3, 2
DETECTION_S = (PROBE_FALL * PROBE_INTERVAL_MS + PROBE_TIMEOUT_MS) / 1000.0

CONFIG = """
# Written by tests/e2e for node {node} ({method}).
[cluster]
secret = "e2e0f1e2d3c4b5a6978877665544332f"

[health]
kind = "tcp"
port = {http_port}
interval_ms = {interval}
timeout_ms = {timeout}
rise = {rise}
fall = {fall}

[[pool]]
name = "web"
table_bits = {table_bits}
{backends}
[[vip]]
address = "{vip}"
port = {http_port}
protocol = "tcp"
pool = "web"
method = "{method}"

[[vip]]
address = "{vip}"
port = {echo_port}
protocol = "tcp"
pool = "web"
method = "{method}"

[[vip]]
address = "{vip}"
port = {udp_port}
protocol = "udp"
pool = "web"
method = "{method}"

[[vip]]
address = "{vip}"
port = {udp_client_port}
protocol = "udp"
pool = "web"
method = "{method}"
affinity = "client"

[dataplane]
eal_args = ["--in-memory", "--no-pci", "--no-telemetry", "-l", "0,1", "--main-lcore", "{main_lcore}",
            "--log-level=lib.*:warning", "--file-prefix={file_prefix}"]
workers = [{worker}]
source_v4 = "{node_addr}"
exception_addresses = ["{node_addr}/24"]
conn_table_size = 65536
  [[dataplane.port]]
  name = "p0"
  devargs = "{devargs}"

[control]
socket = "{socket}"
metrics = "127.0.0.1:9273"
"""


def require_environment():
    """Fails loudly (exit 1) when the machine cannot run these tests: they never skip quietly."""
    problems = []
    if os.geteuid() != 0:
        problems.append("end-to-end tests need root (network namespaces, AF_PACKET)")
    try:
        with open("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages") as f:
            free = int(f.read())
        if free < 256:
            problems.append(f"{free} free 2 MiB hugepages, need 256 (as the dataplane suite): run tools/setup.sh")
    except OSError as e:
        problems.append(f"cannot read hugepage counts: {e}")
    for tool in ("ip", "ss", "ethtool", "sysctl"):
        if not shutil.which(tool):
            problems.append(f"'{tool}' is not installed")
    for path in (BINARY, CTL):
        if not os.access(path, os.X_OK):
            problems.append(f"{path} is not built")
    if problems:
        raise SystemExit("FAIL: " + "; ".join(problems))


LIVE = []  # clusters up in this process: torn down on any exit, including SIGTERM (meson's timeout) and Ctrl-C


def _sigterm(*_):
    raise KeyboardInterrupt("SIGTERM")


def main(argv):
    """unittest.main with teardown that survives failures, Ctrl-C and SIGTERM. argv: [script, understudy,
    understudyctl, unittest args...]."""
    global BINARY, CTL
    if len(argv) >= 3 and not argv[1].startswith("-"):
        BINARY, CTL = argv[1], argv[2]
        argv = [argv[0]] + argv[3:]
    signal.signal(signal.SIGTERM, _sigterm)
    ok = False
    try:
        require_environment()
        prog = unittest.main(module="__main__", argv=argv, exit=False, verbosity=2)
        ok = prog.result.wasSuccessful() and prog.result.testsRun > 0
    finally:
        for cluster in list(LIVE):
            cluster.down()
    sys.exit(0 if ok else 1)


class Cluster:
    """A topology with balancers running understudy and backends running an HTTP server (8080), an echo
    server (7000) and a UDP sink (9000). Backends 1..len(weights) are in the pool; the others are spares,
    servers running, ready for `backend add`."""

    def __init__(self, prefix, method, weights, backends, balancers=1, edge=False, table_bits=16,
                 port="net_af_packet"):
        self.method = method
        self.port = port
        self.weights = dict(weights)
        self.table_bits = table_bits
        self.topo = netns.Topology(prefix=prefix, backends=backends, balancers=balancers, edge=edge)
        self.dir = tempfile.mkdtemp(prefix=f"understudy-{prefix}-")
        self.daemons = {}
        self.servers = {}  # backend -> the server processes start_servers started there
        self.next_probe_port = 61000  # wait_forwarding's source ports: fresh each time (no connection-table entry)
        self.configs = {}
        self.logs = {}

    # --- life cycle ----------------------------------------------------------------------------------

    def up(self):
        LIVE.append(self)
        try:
            self.topo.up()
            for i in range(1, self.topo.n_backends + 1):
                self.prepare_backend(i)
                self.start_servers(i)
            for n in range(1, self.topo.n_balancers + 1):
                self.start_node(n)
            for n in range(1, self.topo.n_balancers + 1):
                netns.wait_for(lambda n=n: all(h.get("probed") and h["up"] for h in self.health(n)), 15,
                               f"node {n}: every backend probed up", self.logs[n])
            # Next hops are learnt from the neighbour table: wait until each node forwards to every backend.
            self.wait_forwarding()
        except BaseException:
            self.down()
            raise
        return self

    def down(self):
        try:
            self.topo.down()
            self.report_logs()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
            if self in LIVE:
                LIVE.remove(self)

    def report_logs(self, limit=40):
        """What each daemon logged about health and tables: the first thing to read when a scenario fails."""
        for n, path in sorted(self.logs.items()):
            try:
                with open(path) as f:
                    lines = [l.rstrip() for l in f if not l.startswith(" ") and
                             any(w in l for w in ("health:", "api:", "signal", "rror", "reload"))]
            except OSError:
                continue
            print(f"\n--- node {n} ({path}), health/api/signal/error lines:", file=sys.stderr)
            for line in lines[-limit:]:
                print("  " + line, file=sys.stderr)

    def prepare_backend(self, i):
        """What backend i needs for the forwarding method besides its servers.

        l2dsr: the VIP on lo and arp_ignore/arp_announce, which netns.py sets up in every backend.
        gue (to do, see tests/netns/test_agent.py for the mechanics): an `[agent]` section (interface =
        "eth0") in the config, and `understudy-agent --config FILE --socket SOCK` started here before the
        balancers. Backends outside the pool (the spare) need the agent too, and `backend add` on the
        balancers must reach the agents' views as well (their config and a SIGHUP), or the new backend's
        agent forwards its sessions away: that belongs to the divergent-views scenario."""
        if self.method == "l2dsr":
            return
        raise NotImplementedError(f"method {self.method}: start understudy-agent in backend {i} here")

    def start_servers(self, i):
        self.servers[i] = [self.topo.start_http_server(i, HTTP_PORT), self.topo.start_echo_server(i, ECHO_PORT),
                           self.topo.start_udp_counter(i, UDP_PORT, self.dir)]

    def servers_running(self, i):
        return any(p.poll() is None for p in self.servers.get(i, []))

    def kill_servers(self, i):
        """SIGKILL to backend i's servers (only them: an agent there stays), as when a service dies; waits
        until they are gone. Returns the time.monotonic() at which the signals were sent."""
        procs = self.servers.pop(i, [])
        for p in procs:
            if p.poll() is None:
                p.kill()
        killed_at = time.monotonic()
        for p in procs:
            p.wait(timeout=10)
        return killed_at

    def config_text(self, n):
        backends = "".join(
            f'  [[pool.backend]]\n  id = {i}\n  address = "{self.topo.backend_addr(i)}"\n  weight = {w}\n'
            for i, w in sorted(self.weights.items()))
        # Two nodes on two cores: each node's busy-polling worker gets a core of its own.
        main_lcore, worker = (0, 1) if n % 2 == 1 else (1, 0)
        return CONFIG.format(node=n, method=self.method, http_port=HTTP_PORT, echo_port=ECHO_PORT,
                             udp_port=UDP_PORT, udp_client_port=UDP_CLIENT_PORT, vip=VIP,
                             interval=PROBE_INTERVAL_MS, timeout=PROBE_TIMEOUT_MS, rise=PROBE_RISE,
                             fall=PROBE_FALL, table_bits=self.table_bits, backends=backends,
                             main_lcore=main_lcore, worker=worker, file_prefix=f"{self.topo.prefix}-lb{n}",
                             node_addr=self.topo.balancer_addr(n), socket=self.socket(n),
                             devargs=f"{self.port}0,iface=eth0")

    def start_node(self, n):
        self.configs[n] = os.path.join(self.dir, f"lb{n}.toml")
        with open(self.configs[n], "w") as f:
            f.write(self.config_text(n))
        self.logs[n] = os.path.join(self.dir, f"lb{n}.log")
        self.daemons[n] = self.topo.start_balancer(n, BINARY, self.configs[n], self.logs[n])

    def stop_node(self, n):
        """SIGTERM: the daemon drains its workers and exits 0."""
        p = self.daemons[n]
        p.send_signal(signal.SIGTERM)
        return p.wait(timeout=15)

    def socket(self, n):
        return os.path.join(self.dir, f"lb{n}.sock")

    def log(self, n):
        with open(self.logs[n]) as f:
            return f.read()

    def wait_forwarding(self, nodes=None, backend_ids=None, seconds=20):
        """Until every node has forwarded a session to every given backend (per its own lookup), so that no
        test starts while a next hop is still unknown (those packets are dropped as no_next_hop)."""
        nodes = nodes or [n for n in self.daemons if self.daemons[n].poll() is None]
        backend_ids = backend_ids or sorted(self.weights)
        for n in nodes:
            candidates = list(range(self.next_probe_port, self.next_probe_port + 200))
            self.next_probe_port += 200
            assert self.next_probe_port < 65536, "out of fresh source ports for wait_forwarding"
            if len(nodes) > 1:
                # The router spreads by ECMP: reach this node directly for this check.
                self.topo.route_vips([n])
            try:
                flows = self.lookup(n, [(self.topo.client_addr(1), p, VIP, HTTP_PORT, "tcp") for p in candidates])
                want = {}
                for p, r in zip(candidates, flows):
                    want.setdefault(r["serving"], p)
                for b in backend_ids:
                    port = want.get(b)
                    assert port is not None, f"no port among {len(candidates)} maps to backend {b}"
                    netns.wait_for(lambda: self.http([port], timeout=1)[0]["result"] == f"b{b}", seconds,
                                   f"node {n} to forward to backend {b}", self.logs[n])
            finally:
                if len(nodes) > 1:
                    self.topo.route_vips(nodes)

    # --- understudyctl against a live daemon ------------------------------------------------------------

    def ctl(self, n, *args, input=None, check=True):
        r = subprocess.run([CTL, "--socket", self.socket(n), *args], capture_output=True, text=True,
                           input=input, timeout=120)
        if check and r.returncode != 0:
            raise AssertionError(f"understudyctl {' '.join(args)} exited {r.returncode}: {r.stdout}{r.stderr}")
        return r

    def lookup(self, n, flows):
        """Live `lookup --batch` for (src, sport, dst, dport, proto) flows: one dict per flow, in order."""
        text = "".join(f"{s} {sp} {d} {dp} {pr}\n" for s, sp, d, dp, pr in flows)
        out = self.ctl(n, "lookup", "--batch", input=text).stdout.splitlines()
        assert len(out) == len(flows), f"lookup --batch gave {len(out)} lines for {len(flows)} flows"
        return [json.loads(line) for line in out]

    def lookup_raw(self, n, flows):
        text = "".join(f"{s} {sp} {d} {dp} {pr}\n" for s, sp, d, dp, pr in flows)
        return self.ctl(n, "lookup", "--batch", input=text).stdout

    def backends(self, n=1):
        return {b["id"]: b for b in json.loads(self.ctl(n, "backend", "list", "--json").stdout)["backends"]}

    def health(self, n=1):
        return json.loads(self.ctl(n, "health", "--json").stdout)["health"]

    def stats(self, n=1):
        return json.loads(self.ctl(n, "stats", "--json").stdout)

    def udp_counts(self):
        counts = {}
        for i in range(1, self.topo.n_backends + 1):
            try:
                with open(os.path.join(self.dir, f"udp-b{i}")) as f:
                    counts[i] = int(f.read() or 0)
            except FileNotFoundError:
                counts[i] = 0
        return counts

    # --- clients ------------------------------------------------------------------------------------------

    def http(self, sports, workers=4, timeout=2.5, client=1):
        """One HTTP session per source port, from a client namespace; returns http_sessions.py's records in
        the order of sports."""
        spec = ",".join(str(p) for p in sports)
        r = self.topo.client(client).run("/usr/bin/python3", os.path.join(HERE, "http_sessions.py"), "--vip", VIP,
                                         "--port", str(HTTP_PORT), "--sports", spec, "--workers", str(workers),
                                         "--timeout", str(timeout), timeout=300)
        by_port = {}
        for line in r.stdout.splitlines():
            rec = json.loads(line)
            by_port[rec["sport"]] = rec
        return [by_port.get(p, {"sport": p, "result": "not run"}) for p in sports]

    def http_loop(self, first_port, count, pace, workers=1, client=1):
        return HttpLoop(self, first_port, count, pace, workers, client)

    def stream(self, first_port, count, interval=0.05, client=1):
        return Stream(self, first_port, count, interval, client)


class HttpLoop:
    """http_sessions.py in the background: a steady stream of new sessions while something changes."""

    def __init__(self, cluster, first_port, count, pace, workers, client):
        self.cluster = cluster
        self.out = os.path.join(cluster.dir, f"http-{first_port}.jsonl")
        self.f = open(self.out, "w")
        self.proc = cluster.topo.client(client).popen(
            "/usr/bin/python3", os.path.join(HERE, "http_sessions.py"), "--vip", VIP, "--port", str(HTTP_PORT),
            "--sports", f"{first_port}-{first_port + count - 1}", "--workers", str(workers), "--pace", str(pace),
            "--max-seconds", "120", stdout=self.f, stderr=subprocess.DEVNULL)
        cluster.topo.procs.append(self.proc)

    def records(self):
        with open(self.out) as f:
            return [json.loads(line) for line in f if line.endswith("\n")]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.f.close()
        return self.records()


class Stream:
    """stream_client.py in the background: long-lived connections, one line per interval each."""

    def __init__(self, cluster, first_port, count, interval, client):
        self.cluster = cluster
        self.ports = list(range(first_port, first_port + count))
        self.path = os.path.join(cluster.dir, f"stream-{first_port}.json")
        self.errors = self.path + ".stderr"
        with open(self.errors, "w") as err:
            self.proc = cluster.topo.client(client).popen(
                "/usr/bin/python3", os.path.join(HERE, "stream_client.py"), "--vip", VIP, "--port", str(ECHO_PORT),
                "--sports", f"{first_port}-{first_port + count - 1}", "--interval", str(interval),
                "--report", self.path, "--max-seconds", "180", stdout=subprocess.DEVNULL, stderr=err)
        cluster.topo.procs.append(self.proc)
        try:
            netns.wait_for(lambda: self._all_answered(), 20, f"{count} long-lived connections to answer")
        except TimeoutError:
            self.stop()
            raise

    def _all_answered(self):
        if self.proc.poll() is not None:
            with open(self.errors) as f:
                raise AssertionError(f"stream client exited {self.proc.returncode}: {f.read()}")
        r = self.report()
        return r is not None and all(c["replies"] > 0 or c["error"] for c in r["conns"])

    def report(self):
        try:
            with open(self.path) as f:
                return json.load(f)
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def conns(self):
        return {c["sport"]: c for c in self.report()["conns"]}

    def wait_replies(self, sports, after, n=5, seconds=10):
        """Until each of sports has had a reply at `after` or later, and n more replies since now."""
        base = {p: c["replies"] for p, c in self.conns().items()}
        netns.wait_for(lambda: all(self.conns()[p]["last_reply"] >= after and
                                   self.conns()[p]["replies"] >= base[p] + n for p in sports),
                       seconds, f"replies on {len(sports)} connections")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.report()


def backend_name(i):
    return f"b{i}"


def backend_id(name):
    return int(name[1:]) if name and name.startswith("b") and name[1:].isdigit() else None


def now():
    return time.monotonic()
