"""What every end-to-end test shares: the environment check, the cluster (a tools/netns.py topology plus the
real `understudy run` on its balancer hosts and real servers on its backends), understudyctl against the
live daemons, and the client programs of this directory run inside the client namespace.

The forwarding method is a parameter of the cluster (Cluster.method), so each scenario class is written
once and made concrete per method (see SingleNodeL2dsr in test_single_node.py). What a method needs on the
backends besides their servers is Cluster.prepare_backend: nothing for l2dsr (the VIP on lo and
arp_ignore, which netns.py sets up); for gue and ipip it starts understudy-agent in the backend, with a
config of its own (Cluster.agent_weights, Cluster.agent_vips), so that a test can give the agents another
view of the pool than the balancers' (Cluster.reload_agents / reload_balancers).

Every assertion is about what clients saw (replies naming their server, resets, gaps, bytes moved). Where a
session should land comes from tools/ordering_ref.py, the independent implementation of the ordering
contract, given the configuration the balancers hold and the backends they see down (Cluster.expected),
never from the daemon under test.
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

BINARY = os.environ.get("UNDERSTUDY_BINARY", os.path.join(ROOT, "build/src/balancer/understudy"))
CTL = os.environ.get("UNDERSTUDYCTL_BINARY", os.path.join(ROOT, "build/src/cli/understudyctl"))
AGENT = os.environ.get("UNDERSTUDY_AGENT_BINARY", os.path.join(ROOT, "build/src/agent/understudy-agent"))
ORDERING_REF = os.path.join(ROOT, "tools", "ordering_ref.py")

VIP = "192.0.2.10"
HTTP_PORT = 8080   # short sessions (http_sessions.py)
ECHO_PORT = 7000   # long-lived connections (stream_client.py)
UDP_PORT = 9000    # UDP sinks; the first UDP VIP on the address, so IP fragments belong to it
UDP_CLIENT_PORT = 9001  # affinity = "client": its live lookup names the server of any port-less key
KEEPALIVE_PORT = 8081  # HTTP/1.1 keep-alive (wrk); Cluster(bulk=True)
IPERF_PORT = 5201      # iperf3, affinity = "client" (its control and data connections meet on one server)

# The VIPs by name: (port, protocol, affinity). Every cluster has the first four; bulk=True adds the others.
VIPS = {"http": (HTTP_PORT, "tcp", "flow"), "echo": (ECHO_PORT, "tcp", "flow"), "udp": (UDP_PORT, "udp", "flow"),
        "udp-client": (UDP_CLIENT_PORT, "udp", "client")}
BULK_VIPS = {"keepalive": (KEEPALIVE_PORT, "tcp", "flow"), "iperf": (IPERF_PORT, "tcp", "client")}

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
{vips}
[dataplane]
eal_args = ["--in-memory", "--no-pci", "--no-telemetry", "-l", "0,1", "--main-lcore", "{main_lcore}",
            "--log-level=lib.*:warning", "--file-prefix={file_prefix}"]
workers = [{worker}]
source_v4 = "{node_addr}"
exception_addresses = ["{node_addr}/24"]
conn_table_size = 65536
{dataplane_extra}
  [[dataplane.port]]
  name = "p0"
  devargs = "{devargs}"

[control]
socket = "{socket}"
metrics = "127.0.0.1:9273"
{agent}"""

VIP_ENTRY = """
[[vip]]
address = "{vip}"
port = {port}
protocol = "{proto}"
pool = "web"
method = "{method}"
affinity = "{affinity}"
"""

AGENT_SECTION = """
[agent]
interface = "eth0"
socket = "{socket}"
xdp_mode = "{xdp_mode}"
{extra}"""


def require_environment(tools=(), agent=False):
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
    for tool in ("ip", "ss", "ethtool", "sysctl") + tuple(tools):
        if not shutil.which(tool):
            problems.append(f"'{tool}' is not installed (tools/setup.sh installs it)")
    for path in (BINARY, CTL) + ((AGENT,) if agent else ()):
        if not os.access(path, os.X_OK):
            problems.append(f"{path} is not built")
    if problems:
        raise SystemExit("FAIL: " + "; ".join(problems))


LIVE = []  # clusters up in this process: torn down on any exit, including SIGTERM (meson's timeout) and Ctrl-C


def _sigterm(*_):
    raise KeyboardInterrupt("SIGTERM")


def main(argv, tools=(), agent=False):
    """unittest.main with teardown that survives failures, Ctrl-C and SIGTERM. argv: [script, understudy,
    understudyctl, [understudy-agent,] unittest args...]. tools: programs the scenarios run besides the
    basics; agent: whether they need understudy-agent."""
    global BINARY, CTL, AGENT
    if len(argv) >= 3 and not argv[1].startswith("-"):
        BINARY, CTL = argv[1], argv[2]
        argv = [argv[0]] + argv[3:]
        # The agent's path comes third when a scenario file needs it (meson passes it).
        if len(argv) >= 2 and os.path.isfile(argv[1]) and os.access(argv[1], os.X_OK):
            AGENT = argv[1]
            argv = [argv[0]] + argv[2:]
    signal.signal(signal.SIGTERM, _sigterm)
    ok = False
    try:
        require_environment(tools, agent)
        prog = unittest.main(module="__main__", argv=argv, exit=False, verbosity=2)
        ok = prog.result.wasSuccessful() and prog.result.testsRun > 0
    finally:
        for cluster in list(LIVE):
            cluster.down()
    sys.exit(0 if ok else 1)


class Cluster:
    """A topology with balancers running understudy and backends running an HTTP server (8080), an echo
    server (7000) and a UDP sink (9000); with bulk=True also an HTTP/1.1 keep-alive server (8081, for wrk)
    and an iperf3 server (5201). Backends 1..len(weights) are in the pool; the others are spares, servers
    running, ready for `backend add`. For gue and ipip every backend, spares included, runs understudy-agent
    (started before the balancers) with its own config file: the same cluster, pool and VIPs unless a test
    changes the agents' view (agent_weights, agent_vips) apart from the balancers' (weights, vips)."""

    def __init__(self, prefix, method, weights, backends, balancers=1, edge=False, table_bits=16,
                 port="net_af_packet", bulk=False, server_mtu=None, dataplane_mtu=None, xdp_mode="native"):
        self.method = method
        self.port = port
        self.weights = dict(weights)        # the balancers' pool: id -> weight
        self.agent_weights = dict(weights)  # the agents' pool
        self.vips = dict(VIPS, **(BULK_VIPS if bulk else {}))  # the balancers' VIPs: name -> (port, proto, affinity)
        self.agent_vips = dict(self.vips)
        self.bulk = bulk
        self.dataplane_mtu = dataplane_mtu  # [dataplane] mtu, when set
        self.xdp_mode = xdp_mode            # [agent] xdp_mode
        self.table_bits = table_bits
        self.topo = netns.Topology(prefix=prefix, backends=backends, balancers=balancers, edge=edge,
                                   server_mtu=server_mtu, backend_gro=xdp_mode == "native")
        self.dir = tempfile.mkdtemp(prefix=f"understudy-{prefix}-")
        self.daemons = {}
        self.servers = {}  # backend -> the server processes start_servers started there
        self.agents = {}   # backend -> its understudy-agent process
        self.next_probe_port = 61000  # wait_forwarding's source ports: fresh each time (no connection-table entry)
        self.configs = {}
        self.logs = {}
        self.agent_configs = {}
        self.agent_logs = {}
        self.ref_count = 0

    @property
    def with_agents(self):
        return self.method in ("gue", "ipip")

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
            self.wait_agents()
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
        """What each daemon and agent logged about health and tables: the first thing to read when a scenario
        fails."""
        logs = [(f"node {n}", p) for n, p in sorted(self.logs.items())]
        logs += [(f"agent {i}", p) for i, p in sorted(self.agent_logs.items())]
        for who, path in logs:
            try:
                with open(path) as f:
                    lines = [l.rstrip() for l in f if not l.startswith(" ") and
                             any(w in l for w in ("health:", "api:", "signal", "rror", "reload"))]
            except OSError:
                continue
            print(f"\n--- {who} ({path}), health/api/signal/error lines:", file=sys.stderr)
            for line in lines[-limit:]:
                print("  " + line, file=sys.stderr)

    def prepare_backend(self, i):
        """What backend i needs for the forwarding method besides its servers.

        l2dsr: the VIP on lo and arp_ignore/arp_announce, which netns.py sets up in every backend.
        gue, ipip: understudy-agent with an [agent] section (interface "eth0") in its own config file, started
        here (before the balancers: a balancer's first gue packet finds the XDP program attached). Spares
        run it too, so that a backend that joins is ready on this side."""
        if not self.with_agents:
            return
        self.start_agent(i)

    def agent_socket(self, i):
        return os.path.join(self.dir, f"agent{i}.sock")

    def start_agent(self, i):
        self.agent_configs[i] = os.path.join(self.dir, f"agent{i}.toml")
        with open(self.agent_configs[i], "w") as f:
            f.write(self.config_text(None, agent=True))
        self.agent_logs[i] = log = os.path.join(self.dir, f"agent{i}.log")
        sock = self.agent_socket(i)
        if os.path.exists(sock):
            os.unlink(sock)
        with open(log, "w") as out:
            p = self.topo.backend(i).popen(AGENT, "--config", self.agent_configs[i], "--socket", sock,
                                           stdout=out, stderr=subprocess.STDOUT)
        self.topo.procs.append(p)
        self.agents[i] = p
        netns.wait_for(lambda: p.poll() is not None or os.path.exists(sock), 20, f"agent {i} to listen", log)
        if p.poll() is not None:
            with open(log) as f:
                raise RuntimeError(f"agent {i} exited {p.returncode}: {f.read()}")
        return p

    def wait_agents(self, backends=None, seconds=15):
        """Until every agent has probed every backend of its pool and sees it up."""
        if not self.with_agents:
            return
        for i in backends or sorted(self.agents):
            netns.wait_for(lambda i=i: self._agent_sees(i, set(self.agent_weights)), seconds,
                           f"agent {i}: every backend of its pool probed up", self.agent_logs[i])

    def _agent_sees(self, i, ids, up=True):
        h = {x["id"]: x for x in self.agent_health(i)}
        return set(h) == ids and all(x.get("probed") and x["up"] == up for x in h.values())

    def agent_ctl(self, i, *args, check=True):
        r = subprocess.run([CTL, "--socket", self.agent_socket(i), *args], capture_output=True, text=True,
                           timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f"agent {i}: understudyctl {' '.join(args)} exited {r.returncode}: "
                                 f"{r.stdout}{r.stderr}")
        return r

    def agent_health(self, i):
        return json.loads(self.agent_ctl(i, "health", "--json").stdout)["health"]

    def agent_stats(self, i):
        return json.loads(self.agent_ctl(i, "stats", "--json").stdout)

    def reload_agents(self, weights=None, vips=None, backends=None):
        """Gives the agents (all, or those of `backends`) a new pool and/or VIP set: their config files are
        rewritten and each is told to reload (`understudyctl reload`, as SIGHUP does)."""
        if weights is not None:
            self.agent_weights = dict(weights)
        if vips is not None:
            self.agent_vips = dict(vips)
        text = self.config_text(None, agent=True)
        for i in backends or sorted(self.agents):
            with open(self.agent_configs[i], "w") as f:
                f.write(text)
            # --json: the plain-text form of `reload` expects the balancer's reply ("generation") and aborts
            # on the agent's ({"reloaded": true}).
            self.agent_ctl(i, "reload", "--json")

    def reload_balancers(self, weights=None, vips=None, nodes=None):
        """Gives the balancers a new pool and/or VIP set: config files rewritten, `understudyctl reload` on each
        running node (a node started later reads the same)."""
        if weights is not None:
            self.weights = dict(weights)
        if vips is not None:
            self.vips = dict(vips)
        for n in nodes or sorted(self.daemons):
            with open(self.configs[n], "w") as f:
                f.write(self.config_text(n))
            if self.daemons[n].poll() is None:
                self.ctl(n, "reload")

    def start_servers(self, i):
        self.servers[i] = [self.topo.start_http_server(i, HTTP_PORT), self.topo.start_echo_server(i, ECHO_PORT),
                           self.topo.start_udp_counter(i, UDP_PORT, self.dir)]
        if self.bulk:
            self.servers[i] += [self.topo.start_http_server(i, KEEPALIVE_PORT, keepalive=True),
                                self.topo.start_iperf_server(i, IPERF_PORT, self.iperf_log(i))]

    def restart_iperf_servers(self):
        """A new iperf3 server on every backend (one whose client was reset stays busy with that test for a
        while)."""
        for i in range(1, self.topo.n_backends + 1):
            procs = self.servers.get(i, [])
            for p in [p for p in procs if "iperf3" in p.args]:
                if p.poll() is None:
                    p.kill()
                p.wait(timeout=10)
                procs.remove(p)
            open(self.iperf_log(i), "w").close()  # a killed server may have left half a result
            procs.append(self.topo.start_iperf_server(i, IPERF_PORT, self.iperf_log(i)))

    def iperf_log(self, i):
        return os.path.join(self.dir, f"iperf-b{i}.json")

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

    _accepts = {}

    def accepts(self, section, line):
        """Whether this build's config reader takes `line` in `section` (a setting another change is adding):
        `understudyctl check` on a copy of a node's config with the line added."""
        key = (CTL, section, line)
        if key not in Cluster._accepts:
            text = self.config_text(1).replace(f"[{section}]\n", f"[{section}]\n{line}\n", 1)
            path = os.path.join(self.dir, "accepts.toml")
            with open(path, "w") as f:
                f.write(text)
            r = subprocess.run([CTL, "check", "--config", path], capture_output=True, text=True, timeout=60)
            Cluster._accepts[key] = r.returncode == 0
        return Cluster._accepts[key]

    def config_text(self, n, agent=False, weights=None, vips=None, states=None):
        """Node n's config (n = None: an agent's, or the reference's). agent: the agents' pool and VIPs and an
        [agent] section; weights/vips: another view than the tier's, states: id -> "drain" | "disabled" (for
        the reference)."""
        if weights is None:
            weights = self.agent_weights if agent else self.weights
        if vips is None:
            vips = self.agent_vips if agent else self.vips
        states = states or {}
        backends = "".join(
            f'  [[pool.backend]]\n  id = {i}\n  address = "{self.topo.backend_addr(i)}"\n  weight = {w}\n' +
            (f'  state = "{states[i]}"\n' if i in states else "")
            for i, w in sorted(weights.items()))
        vip_text = "".join(VIP_ENTRY.format(vip=VIP, port=port, proto=proto, method=self.method, affinity=aff)
                           for port, proto, aff in vips.values())
        # Two nodes on two cores: each node's busy-polling worker gets a core of its own.
        main_lcore, worker = (0, 1) if (n or 1) % 2 == 1 else (1, 0)
        extra = f"mtu = {self.dataplane_mtu}" if self.dataplane_mtu else ""
        agent_text = ""
        if agent:
            # Every balancer node's outer source ([dataplane] source_v4 names one node only), and every
            # backend, spares included: a backend that joined on the balancers first is in no pool of the
            # agents yet, and forwards what it gets by their view.
            sources = [f'"{self.topo.balancer_addr(k)}/32"' for k in range(1, self.topo.n_balancers + 1)]
            sources += [f'"{self.topo.backend_addr(k)}/32"' for k in range(1, self.topo.n_backends + 1)]
            line = f"tunnel_sources = [{', '.join(sources)}]"
            agent_text = AGENT_SECTION.format(socket=os.path.join(self.dir, "agent.sock"), xdp_mode=self.xdp_mode,
                                              extra=line + "\n" if self._agent_accepts(line) else "")
        return CONFIG.format(node=n or "agent", method=self.method, http_port=HTTP_PORT,
                             interval=PROBE_INTERVAL_MS, timeout=PROBE_TIMEOUT_MS, rise=PROBE_RISE,
                             fall=PROBE_FALL, table_bits=self.table_bits, backends=backends, vips=vip_text,
                             main_lcore=main_lcore, worker=worker, file_prefix=f"{self.topo.prefix}-lb{n}",
                             node_addr=self.topo.balancer_addr(n or 1), socket=self.socket(n or 0),
                             devargs=f"{self.port}0,iface=eth0", dataplane_extra=extra, agent=agent_text)

    def _agent_accepts(self, line):
        key = (CTL, "agent", line)
        if key not in Cluster._accepts:
            text = self.config_text(1) + AGENT_SECTION.format(socket=os.path.join(self.dir, "agent.sock"),
                                                              xdp_mode=self.xdp_mode, extra=line + "\n")
            path = os.path.join(self.dir, "accepts.toml")
            with open(path, "w") as f:
                f.write(text)
            r = subprocess.run([CTL, "check", "--config", path], capture_output=True, text=True, timeout=60)
            Cluster._accepts[key] = r.returncode == 0
        return Cluster._accepts[key]

    def start_node(self, n):
        self.configs[n] = os.path.join(self.dir, f"lb{n}.toml")
        with open(self.configs[n], "w") as f:
            f.write(self.config_text(n))
        self.logs[n] = os.path.join(self.dir, f"lb{n}.log")
        self.daemons[n] = self.topo.start_balancer(n, BINARY, self.configs[n], self.logs[n])

    def kill_node(self, n):
        """SIGKILL to node n (a host or process crash: nothing drained) and its route withdrawn from the
        router at once, as BGP with BFD would. Returns the time.monotonic() of the kill."""
        self.daemons[n].kill()
        t = time.monotonic()
        self.topo.route_vips([k for k in sorted(self.daemons) if k != n and self.daemons[k].poll() is None])
        self.daemons[n].wait(timeout=10)
        return t

    def restart_node(self, n):
        """Starts node n again (its config file is the balancers' current view), waits until it sees every
        backend up and forwards to each, and gives it back its share of the router's multipath route."""
        self.start_node(n)
        netns.wait_for(lambda: all(h.get("probed") and h["up"] for h in self.health(n)), 15,
                       f"node {n}: every backend probed up", self.logs[n])
        self.wait_forwarding(nodes=[n])
        self.topo.route_vips([k for k in sorted(self.daemons) if self.daemons[k].poll() is None])

    # --- the reference: where sessions should be, from tools/ordering_ref.py -----------------------------

    def expected(self, flows, weights=None, down=(), vips=None, states=None):
        """tools/ordering_ref.py lookup for (src, sport, dst, dport, proto) flows, with the balancers' pool
        and VIPs (or the given ones; states: id -> "drain" | "disabled") and `down` the backends the
        balancers see down: one dict per flow (session_hash, bucket, ordering, primary, serving), in order."""
        self.ref_count += 1
        path = os.path.join(self.dir, f"ref{self.ref_count}.toml")
        with open(path, "w") as f:
            f.write(self.config_text(None, weights=weights, vips=vips, states=states))
        args = ["/usr/bin/python3", ORDERING_REF, "lookup", "--config", path]
        if down:
            args += ["--down", ",".join(str(i) for i in sorted(down))]
        r = subprocess.run(args, input="".join(f"{s} {sp} {d} {dp} {pr}\n" for s, sp, d, dp, pr in flows),
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"ordering_ref.py: {r.stderr}"
        out = [json.loads(line) for line in r.stdout.splitlines()]
        assert len(out) == len(flows) and not [x for x in out if "error" in x], f"ordering_ref.py: {out[:3]}"
        return out

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
        """Until every node has forwarded a session to every given backend (a client port the reference
        maps to it, with every backend up), so that no test starts while a next hop is still unknown (those
        packets are dropped as no_next_hop)."""
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
                flows = self.expected([(self.topo.client_addr(1), p, VIP, HTTP_PORT, "tcp") for p in candidates])
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

    def wrk(self, seconds=90, connections=16, delay_ms=50, client=1):
        return Wrk(self, seconds, connections, delay_ms, client)

    def iperf(self, seconds, bitrate="100M", client=1, source=None):
        return Iperf(self, seconds, bitrate, client, source)

    def fresh_client_address(self, client=1):
        """One more address on a client (10.1.0.150 and up, one per call), for a client whose sessions no
        connection table has seen yet (with affinity = "client" every flow of an address is one session)."""
        self.client_addresses = getattr(self, "client_addresses", 0) + 1
        addr = f"10.1.0.{149 + self.client_addresses}"
        assert self.client_addresses < 100, "out of client addresses"
        self.topo.client(client).run("ip", "addr", "add", f"{addr}/32", "dev", "eth0")
        return addr

    def iperf_servers(self):
        """What each backend's iperf3 server logged: backend -> [result objects], one per test it ran."""
        out = {}
        for i in range(1, self.topo.n_backends + 1):
            try:
                with open(self.iperf_log(i)) as f:
                    text = f.read()
            except FileNotFoundError:
                continue
            dec, pos, objs = json.JSONDecoder(), 0, []
            while True:
                while pos < len(text) and text[pos].isspace():
                    pos += 1
                if pos >= len(text):
                    break
                try:
                    obj, pos = dec.raw_decode(text, pos)
                except json.JSONDecodeError:
                    break  # a test still being written
                objs.append(obj)
            out[i] = objs
        return out


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
        netns.stop_process(self.proc, signal.SIGTERM, 15)
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
        netns.stop_process(self.proc, signal.SIGTERM, 15)
        return self.report()


# wrk's script: one request per connection every DELAY ms (wrk has no rate option); each response names the
# backend and the client address:port it saw ("bI 10.1.0.101:PORT"), so a connection (a client port) that
# is answered by two backends shows up as moved. done() prints one JSON line with wrk's own counts.
WRK_SCRIPT = """
local delay_ms = %d
ports = {}
moved = 0
bad = 0
function delay() return delay_ms end
function response(status, headers, body)
  local b, port = string.match(body or "", "^(b%%d+) [%%d.]+:(%%d+)")
  if status ~= 200 or not b then bad = bad + 1 return end
  local seen = ports[port]
  if seen == nil then ports[port] = b elseif seen ~= b then moved = moved + 1 end
end
local threads = {}
function setup(thread) table.insert(threads, thread) end
function done(summary, latency, requests)
  local e = summary.errors
  local list = {}
  local mv, bd = 0, 0
  for _, t in ipairs(threads) do
    mv = mv + t:get("moved")
    bd = bd + t:get("bad")
    for port, b in pairs(t:get("ports")) do table.insert(list, string.format('"%%s":"%%s"', port, b)) end
  end
  io.write(string.format('WRK {"requests":%%d,"duration_us":%%d,"connect":%%d,"read":%%d,"write":%%d,' ..
    '"status":%%d,"timeout":%%d,"moved":%%d,"bad":%%d,"ports":{%%s}}\\n', summary.requests, summary.duration,
    e.connect, e.read, e.write, e.status, e.timeout, mv, bd, table.concat(list, ",")))
end
"""


class Wrk:
    """wrk (keep-alive HTTP/1.1, Debian's wrk) against the keep-alive VIP in the background, until result() or
    at most `seconds`: `connections` connections, each sending a request every delay_ms. result(): wrk's
    counts (requests,
    socket errors: connect, read (a reset shows here), write, timeout; non-2xx), the client ports it used
    with the backend each was answered by, and how many responses came from another backend than the
    connection's first."""

    def __init__(self, cluster, seconds, connections, delay_ms, client):
        self.script = os.path.join(cluster.dir, f"wrk-{time.monotonic_ns()}.lua")
        with open(self.script, "w") as f:
            f.write(WRK_SCRIPT % delay_ms)
        self.out = self.script + ".out"
        self.seconds = seconds
        with open(self.out, "w") as out:
            self.proc = cluster.topo.client(client).popen(
                "wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--timeout", "2s", "-s", self.script,
                f"http://{VIP}:{KEEPALIVE_PORT}/", stdout=out, stderr=subprocess.STDOUT)
        cluster.topo.procs.append(self.proc)

    def result(self):
        """Stops wrk (SIGINT: it ends its run and reports, as at the end of its duration) and returns its counts."""
        netns.stop_process(self.proc, signal.SIGINT, 20)
        with open(self.out) as f:
            text = f.read()
        line = next((l for l in text.splitlines() if l.startswith("WRK ")), None)
        if line is None:
            raise AssertionError(f"wrk exited {self.proc.returncode} without its summary: {text}")
        r = json.loads(line[4:])
        r["errors"] = r["connect"] + r["read"] + r["write"] + r["timeout"]
        r["exit"] = self.proc.returncode
        return r


class Iperf:
    """An iperf3 bulk transfer (client to backend) through the iperf VIP for `seconds`, capped at `bitrate`
    (so that the busy-polling balancers and the long-lived connections keep their share of this machine's
    two cores), in the background. result(): completed or not (iperf3's own error, e.g. a reset), bytes
    sent and received as the client's JSON report says, and its retransmissions."""

    def __init__(self, cluster, seconds, bitrate, client, source):
        self.seconds = seconds
        self.out = os.path.join(cluster.dir, f"iperf-{time.monotonic_ns()}.json")
        self.started = time.monotonic()
        bind = ["-B", source] if source else []
        with open(self.out, "w") as out:
            self.proc = cluster.topo.client(client).popen(
                "iperf3", "-c", VIP, "-p", str(IPERF_PORT), *bind, "-t", str(seconds), "-b", bitrate, "-J",
                "--connect-timeout", "3000", "--snd-timeout", "5000", stdout=out, stderr=subprocess.STDOUT)
        cluster.topo.procs.append(self.proc)

    def result(self):
        netns.stop_process(self.proc, None, self.seconds + 30)
        with open(self.out) as f:
            text = f.read()
        try:
            j = json.loads(text)
        except json.JSONDecodeError:
            return {"completed": False, "error": f"iperf3 exited {self.proc.returncode}: {text[:300]}",
                    "sent": 0, "received": 0, "retransmits": None, "mbps": 0.0}
        end = j.get("end", {})
        sent = end.get("sum_sent", {})
        received = end.get("sum_received", {})
        err = j.get("error")
        return {"completed": self.proc.returncode == 0 and not err, "error": err,
                "sent": int(sent.get("bytes", 0)), "received": int(received.get("bytes", 0)),
                "retransmits": sent.get("retransmits"),
                "mbps": round(received.get("bits_per_second", 0) / 1e6, 1)}


def backend_name(i):
    return f"b{i}"


def backend_id(name):
    return int(name[1:]) if name and name.startswith("b") and name[1:].isdigit() else None


def now():
    return time.monotonic()
