#!/usr/bin/python3
"""understudy-agent on real backends, with real traffic through a real balancer using gue:
- every session is served by the server the contract names, decapsulated by the agents' XDP program;
- divergent views: the balancer cannot reach one backend's health port (blocked in its namespace only) while
  the agents can; the balancer sends that backend's sessions to their stand-in, whose XDP program forwards them
  on to the backend, which serves them: the two-hop check of the contract. Long-lived connections opened
  before, during and after the disagreement keep their server and see no reset when the views agree again;
- with a hop budget of 0 the stand-in serves them itself (the budget stops any loop);
- the agent's control socket answers understudyctl (reload included), and the agent detaches its program on
  exit."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import unittest

BINARY = sys.argv.pop(1) if len(sys.argv) > 1 else "build/src/balancer/understudy"
AGENT = sys.argv.pop(1) if len(sys.argv) > 1 else "build/src/agent/understudy-agent"
CTL = sys.argv.pop(1) if len(sys.argv) > 1 else "build/src/cli/understudyctl"
ROOT = os.environ.get("UNDERSTUDY_SOURCE_ROOT", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import netns  # noqa: E402

VIP = "192.0.2.10"
CONFIG = """
[cluster]
secret = "77a1c3e5f7092b4d6f8193a5c7e9fb1d"
[health]
kind = "http"
port = 8080
interval_ms = 150
timeout_ms = 100
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
[[vip]]
address = "192.0.2.10"
port = 8080
protocol = "tcp"
pool = "web"
method = "gue"
conn_table = false
[[vip]]
address = "192.0.2.10"
port = 7000
protocol = "tcp"
pool = "web"
method = "gue"
[dataplane]
eal_args = ["--in-memory", "--no-pci", "-l", "0,1", "--log-level=lib.*:warning", "--file-prefix=us-agent-test"]
workers = [1]
source_v4 = "10.0.0.2"
exception_addresses = ["10.0.0.2/24"]
hop_budget = {hops}
  [[dataplane.port]]
  name = "p0"
  devargs = "net_af_packet0,iface=eth0"
[control]
socket = "{dir}/understudy.sock"
metrics = ""
[agent]
interface = "eth0"
"""


class AgentTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise SystemExit("FAIL: needs root")
        cls.dir = tempfile.TemporaryDirectory()
        cls.topo = netns.Topology(prefix="usa", backends=3).up()
        cls.write(hops=2)
        cls.topo.start_http_servers(8080)
        cls.topo.start_echo_servers(7000)
        cls.agents = {}
        for i in (1, 2, 3):
            cls.start_agent(i)
        cls.log = os.path.join(cls.dir.name, "understudy.log")
        cls.daemon = cls.topo.start_balancer(1, BINARY, cls.config, cls.log)
        c = cls.topo.client(1)
        netns.wait_for(lambda: c.run("curl", "-s", "-m", "1", f"http://{VIP}:8080/", check=False).returncode == 0,
                       20, "a first request through the balancer and an agent", cls.log)

    @classmethod
    def tearDownClass(cls):
        cls.topo.down()
        cls.dir.cleanup()

    @classmethod
    def write(cls, hops):
        cls.config = os.path.join(cls.dir.name, "understudy.toml")
        with open(cls.config, "w") as f:
            f.write(CONFIG.format(dir=cls.dir.name, hops=hops))

    @classmethod
    def start_agent(cls, i):
        log = os.path.join(cls.dir.name, f"agent{i}.log")
        with open(log, "w") as out:
            p = cls.topo.backend(i).popen(AGENT, "--config", cls.config, "--socket", cls.agent_socket(i),
                                          stdout=out, stderr=subprocess.STDOUT)
        cls.topo.procs.append(p)
        cls.agents[i] = p
        netns.wait_for(lambda: p.poll() is not None or os.path.exists(cls.agent_socket(i)), 20, f"agent {i}", log)
        assert p.poll() is None, open(log).read()

    @classmethod
    def agent_socket(cls, i):
        return os.path.join(cls.dir.name, f"agent{i}.sock")

    def ctl(self, socket, *args):
        r = subprocess.run([CTL, "--socket", socket, *args], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def agent_counters(self, i):
        return json.loads(self.ctl(self.agent_socket(i), "stats", "--json"))["counters"]

    def sessions(self, ports):
        c = self.topo.client(1)
        got = {}
        for port in ports:
            r = c.run("curl", "-s", "-m", "3", "--local-port", str(port), f"http://{VIP}:8080/", check=False)
            got[port] = r.stdout.split()[0] if r.returncode == 0 else f"failed ({r.returncode})"
        return got

    # Long-lived connections from given client ports; each line on stdin is a round: every connection sends a
    # line and prints "PORT=SERVER" (or PORT=reset / PORT=timeout) from the echo's reply.
    HOLDER = (
        "import socket,sys\n"
        "src,vip=sys.argv[1],sys.argv[2]\n"
        "socks={}\n"
        "for p in sys.argv[3].split(','):\n"
        "    s=socket.socket(); s.settimeout(3); s.bind((src,int(p))); s.connect((vip,7000)); socks[p]=s\n"
        "print('open',flush=True)\n"
        "for _ in sys.stdin:\n"
        "    out=[]\n"
        "    for p,s in socks.items():\n"
        "        try:\n"
        "            s.sendall(b'x\\n'); d=s.recv(100)\n"
        "            r=d.split()[0].decode() if d else 'closed'\n"
        "        except socket.timeout:\n"
        "            r='timeout'\n"
        "        except OSError:\n"
        "            r='reset'\n"
        "        out.append(p+'='+r)\n"
        "    print(' '.join(out),flush=True)\n")

    def hold(self, ports):
        p = self.topo.client(1).popen("/usr/bin/python3", "-c", self.HOLDER, self.topo.client_addr(1), VIP,
                                      ",".join(map(str, ports)), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      text=True)
        self.topo.procs.append(p)
        self.assertEqual(p.stdout.readline().strip(), "open")
        return p

    def round(self, holder):
        holder.stdin.write("\n")
        holder.stdin.flush()
        return dict(kv.split("=") for kv in holder.stdout.readline().split())

    def expected(self, ports, down=None, vport=8080):
        lines = "".join(f"{self.topo.client_addr(1)} {p} {VIP} {vport} tcp\n" for p in ports)
        args = ["/usr/bin/python3", os.path.join(ROOT, "tools", "ordering_ref.py"), "lookup", "--config", self.config]
        if down:
            args += ["--down", down]
        out = subprocess.run(args, input=lines, capture_output=True, text=True, timeout=60).stdout
        return {p: json.loads(l) for p, l in zip(ports, out.splitlines())}

    def test_1_sessions_served_where_the_contract_says(self):
        ports = list(range(35000, 35060))
        want = self.expected(ports)
        served = ("gue_served", "local_socket_served")
        before = {i: sum(self.agent_counters(i)[k] for k in served) for i in (1, 2, 3)}
        got = self.sessions(ports)
        for p in ports:
            self.assertEqual(got[p], f"b{want[p]['serving']}", f"client port {p}")
        after = {i: sum(self.agent_counters(i)[k] for k in served) for i in (1, 2, 3)}
        self.assertEqual(sum(after.values()) - sum(before.values()) >= 60 * 3, True,
                         "every packet of every session decapsulated by an agent's XDP program")
        status = self.ctl(self.agent_socket(2), "status")
        self.assertIn("THIS HOST", status)

    def test_2_divergent_views_two_hops(self):
        # Long-lived connections of sessions whose server is backend 2, opened while every view agrees.
        before_ports = [p for p, w in self.expected(range(38000, 38200), vport=7000).items() if w["serving"] == 2][:8]
        self.assertGreater(len(before_ports), 3)
        before = self.hold(before_ports)
        self.assertEqual(set(self.round(before).values()), {"b2"})

        # The balancer alone loses sight of backend 2's health port.
        lb = self.topo.balancer(1)
        lb.run("nft", "add table inet block")
        lb.run("nft", "add chain inet block out { type filter hook output priority 0 ; }")
        lb.run("nft", "add rule inet block out ip daddr 10.0.0.12 tcp dport 8080 drop")
        sock = os.path.join(self.dir.name, "understudy.sock")

        def balancer_sees_2(up):
            backends = json.loads(self.ctl(sock, "backend", "list", "--json"))["backends"]
            return next(b for b in backends if b["id"] == 2)["operational"] == up
        try:
            netns.wait_for(lambda: balancer_sees_2(False), 10, "the balancer to see backend 2 down", self.log)
            # The connections of before: the balancer sends them to a stand-in, which holds no socket for them
            # and walks them on to backend 2.
            walked_before = sum(self.agent_counters(i)["misdirected_forwarded"] for i in (1, 3))
            self.assertEqual(set(self.round(before).values()), {"b2"}, "connections of before, views differing")
            self.assertGreaterEqual(sum(self.agent_counters(i)["misdirected_forwarded"] for i in (1, 3)) - walked_before,
                                    len(before_ports))

            # New sessions: the stand-in's view places them on backend 2 (the SYN follows this view).
            ports = list(range(36000, 36100))
            primary_2 = [p for p, w in self.expected(ports).items() if w["serving"] == 2]
            self.assertGreater(len(primary_2), 10)
            lb_view = self.expected(primary_2, down="2")
            forwarded_before = sum(self.agent_counters(i)["gue_forwarded"] + self.agent_counters(i)["misdirected_forwarded"]
                                   for i in (1, 3))
            mismatch_before = sum(self.agent_counters(i)["digest_mismatch"] for i in (1, 2, 3))
            got = self.sessions(primary_2)
            for p in primary_2:
                self.assertEqual(got[p], "b2", f"port {p}: sent to b{lb_view[p]['serving']}, forwarded on to b2, served")
            forwarded = sum(self.agent_counters(i)["gue_forwarded"] + self.agent_counters(i)["misdirected_forwarded"]
                            for i in (1, 3)) - forwarded_before
            self.assertGreaterEqual(forwarded, len(primary_2) * 3, "the stand-ins forwarded every packet")
            self.assertEqual(sum(self.agent_counters(i)["digest_mismatch"] for i in (1, 2, 3)), mismatch_before,
                             "health views differ, membership and weights do not")
            # Long-lived connections opened during the disagreement (the balancer's connection table pins them
            # to the stand-in, the agents place them on 2).
            during_ports = [p for p, w in self.expected(range(38200, 38400), vport=7000).items()
                            if w["serving"] == 2][:8]
            during = self.hold(during_ports)
            self.assertEqual(set(self.round(during).values()), {"b2"})
        finally:
            lb.run("nft", "delete table inet block", check=False)
        # The views agree again: every connection keeps its server, none is reset.
        netns.wait_for(lambda: balancer_sees_2(True), 10, "the balancer to see backend 2 up again", self.log)
        self.assertEqual(set(self.round(before).values()), {"b2"}, "connections of before, views agreeing again")
        self.assertEqual(set(self.round(during).values()), {"b2"}, "connections of during, views agreeing again")
        for holder in (before, during):
            holder.stdin.close()
            holder.wait(timeout=10)

        try:
            # A hop budget of 0: the stand-in must serve what it gets (last resort), no forwarding.
            self.write(hops=0)
            self.daemon.send_signal(signal.SIGHUP)
            netns.wait_for(lambda: "SIGHUP: configuration reloaded" in open(self.log).read(), 10, "reload", self.log)
            lb.run("nft", "add table inet block")
            lb.run("nft", "add chain inet block out { type filter hook output priority 0 ; }")
            lb.run("nft", "add rule inet block out ip daddr 10.0.0.12 tcp dport 8080 drop")
            netns.wait_for(lambda: balancer_sees_2(False), 10, "the balancer to see backend 2 down", self.log)
            ports = list(range(37000, 37100))  # fresh client ports: the others may linger in TIME_WAIT
            primary_2 = [p for p, w in self.expected(ports).items() if w["serving"] == 2]
            lb_view = self.expected(primary_2, down="2")
            last_before = sum(self.agent_counters(i)["gue_last_resort"] for i in (1, 3))
            got = self.sessions(primary_2)
            for p in primary_2:
                self.assertEqual(got[p], f"b{lb_view[p]['serving']}", f"port {p}: served by the stand-in")
            # The SYN of each session is served as the last resort; the stand-in then holds the connection,
            # so its later packets are served because of the local socket.
            self.assertGreaterEqual(sum(self.agent_counters(i)["gue_last_resort"] for i in (1, 3)) - last_before,
                                    len(primary_2))
        finally:
            lb.run("nft", "delete table inet block", check=False)
            self.write(hops=2)
            self.daemon.send_signal(signal.SIGHUP)

    def test_3_agent_reload_by_cli(self):
        """`understudyctl --socket AGENT reload` applies the file and says so (it aborted on the agent's reply)."""
        status = json.loads(self.ctl(self.agent_socket(1), "status", "--json"))
        out = self.ctl(self.agent_socket(1), "reload")
        self.assertEqual(out.strip(), f"reloaded: generation {status['generation'] + 1}")
        self.assertEqual(json.loads(self.ctl(self.agent_socket(1), "status", "--json"))["generation"],
                         status["generation"] + 1)

    def test_3b_deeply_nested_request_gets_an_error(self):
        """A request nested 100,000 deep (under the line limit) gets an error reply; the process keeps serving
        (the control API server is the balancer's too)."""
        import socket as sk
        s = sk.socket(sk.AF_UNIX, sk.SOCK_STREAM)
        s.settimeout(10)
        s.connect(self.agent_socket(1))
        s.sendall(b'{"op":"status","id":' + b"[" * 100000 + b"]" * 100000 + b"}\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = s.recv(65536)
            self.assertTrue(chunk, "the agent closed the connection")
            reply += chunk
        s.close()
        r = json.loads(reply)
        self.assertFalse(r["ok"])
        self.assertIn("nested 100001 levels deep; at most 64", r["error"])
        self.assertIsNone(self.agents[1].poll(), "the agent is alive")
        self.assertIn("generation", json.loads(self.ctl(self.agent_socket(1), "status", "--json")))

    def test_4_agent_detaches_on_exit(self):
        b3 = self.topo.backend(3)
        self.assertIn("xdp", b3.run("ip", "link", "show", "eth0").stdout)
        self.agents[3].send_signal(signal.SIGTERM)
        self.assertEqual(self.agents[3].wait(timeout=10), 0)
        self.assertNotIn("xdp", b3.run("ip", "link", "show", "eth0").stdout)
        self.start_agent(3)
        self.assertIn("xdp", b3.run("ip", "link", "show", "eth0").stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
