#!/usr/bin/python3
"""End to end, one balancer node: real clients behind a router, `understudy run` on net_af_packet, real
servers on five backends (four in the pool with weights 100/100/200/50, one spare), and an edge host on the
servers' segment. Every assertion is about what clients saw, checked against where tools/ordering_ref.py (the
independent implementation of the ordering contract) puts each session given the configuration and the
backends that are down, and against the daemon's counters (`backend list`, `stats`).

    test_1  spread: 2,000 short sessions follow the bucket shares, each on the server the reference names
    test_2  bad input at the edge: malformed frames and packets counted under their exact drop reasons,
            the traffic around them undisturbed
    test_3  failover: a backend's servers die; detection time, where its sessions go, and no reset or stall
            for anyone else
    test_4  recovery: the backend returns and takes back the new sessions it is primary for
    test_5  drain: no new session for the drained backend, its long-lived connections go on
    test_6  growth: a backend is added under long-lived connections; none breaks, new sessions reach it

The forwarding method is a class attribute (METHOD): SingleNodeL2dsr runs the scenarios with l2dsr. A gue
variant is one more class once e2e.Cluster.prepare_backend starts understudy-agent in the backends.

Run: test_single_node.py UNDERSTUDY UNDERSTUDYCTL [unittest args]   (meson: suite e2e)
"""
import collections
import json
import math
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e  # noqa: E402
from e2e import ECHO_PORT, HTTP_PORT, UDP_PORT, VIP  # noqa: E402

# A long-lived connection exchanges a line every 50 ms. A stall is a gap of more than STALL_S between two
# replies (or since the last one): TCP's first retransmission after a loss comes after 200 ms here (its
# minimum RTO), the second after 600 ms, so 1 s tolerates one lost packet and not two in a row.
STALL_S = 1.0
# Failover: a new session may reach the dead backend until the probes have failed `fall` times in a row and
# the table is republished: at most fall x interval + timeout after the kill (e2e.DETECTION_S, 350 ms).
# MARGIN_S covers probe scheduling on this loaded 2-core machine, the publication (< 5 ms) and the time for
# the kill to take effect.
MARGIN_S = 0.25
# Binomial tolerance, in standard deviations, for every share check (per check, a false alarm has a
# probability of about 6e-5 at 4 sigma).
SIGMAS = 4.0


def flows(ports, dport=HTTP_PORT, proto="tcp", client=e2e.netns.Topology.client_addr(1)):
    return [(client, p, VIP, dport, proto) for p in ports]


class SingleNodeScenarios:
    """The scenarios, written once; a concrete class sets METHOD (and may set PORT) and derives from
    unittest.TestCase. Tests run in name order and share one cluster; each puts back what it changed."""

    METHOD = None
    PORT = "net_af_packet"
    PREFIX = None
    WEIGHTS = {1: 100, 2: 100, 3: 200, 4: 50}
    SPARE = 5
    TABLE_BITS = 16

    @classmethod
    def setUpClass(cls):
        cls.cluster = e2e.Cluster(cls.PREFIX, cls.METHOD, cls.WEIGHTS, backends=len(cls.WEIGHTS) + 1, edge=True,
                                  table_bits=cls.TABLE_BITS, port=cls.PORT)
        cls.addClassCleanup(cls.cluster.down)
        cls.cluster.up()

    def setUp(self):
        # Every scenario starts from a healthy pool of the four configured backends, except that recovery
        # starts where failover left off (the victim down), as an operator would see it.
        c = self.cluster
        self.assertIsNone(c.daemons[1].poll(), "the daemon is running\n" + c.log(1))
        keep_down = {self.VICTIM} if self._testMethodName == "test_4_recovery" else set()
        healthy = [i for i in self.WEIGHTS if i not in keep_down]
        for i in healthy:
            if not c.servers_running(i):
                c.start_servers(i)
            if c.backends()[i]["state"] != "enabled":
                c.ctl(1, "backend", "enable", "--pool", "web", "--id", str(i))
        e2e.netns.wait_for(lambda: all(c.backends()[i]["operational"] for i in healthy), 10,
                           "every configured backend operational", c.logs[1])

    def assertServedAsExpected(self, records, expected, what):
        wrong = [(r["sport"], r["result"], f"b{w['serving']}") for r, w in zip(records, expected)
                 if r["result"] != f"b{w['serving']}"]
        self.assertEqual(wrong, [], f"{what}: (source port, client saw, reference names) for sessions that differ")

    def assertNoStall(self, report, conns, after=None, what="long-lived connections"):
        """conns: source ports that must have run clean: no reset or close, one backend throughout, no gap
        over STALL_S, and (when after is given) replies until at least `after`."""
        by_port = {c["sport"]: c for c in report["conns"]}
        bad = []
        for p in conns:
            c = by_port[p]
            if c["error"] or len(c["backends"]) != 1 or c["bad_replies"] or c["max_gap"] > STALL_S or \
                    (after is not None and (c["last_reply"] or 0) < after):
                bad.append({k: c[k] for k in ("sport", "backends", "error", "max_gap", "replies", "last_reply")})
        self.assertEqual(bad, [], f"{what}: connections that broke or stalled over {STALL_S} s "
                                  f"(report at {report['now']:.2f})")
        longest = max((by_port[p]["max_gap"] for p in conns), default=0)
        print(f"\n  {what}: {len(conns)} clean, longest gap {longest:.3f} s", file=sys.stderr)

    # --- 1 -------------------------------------------------------------------------------------------

    def test_1_spread_follows_bucket_shares_and_lookup(self):
        """2,000 sessions from distinct source ports: each lands where the reference says, and the
        counts per backend match each backend's bucket share.

        Tolerances. Bucket shares: buckets fall to backends at random in proportion to weight, so a
        backend's share of B = 2^16 buckets is within SIGMAS * sqrt(p (1-p) / B) of p = weight / total
        (for p = 0.444: 0.0078), plus 1/B for granularity. Sessions: each source port's session hash is
        uniform, so a backend's count is Binomial(n = 2000, s) around its actual share s from `backend
        list`: SIGMAS * sqrt(n s (1-s)) (22 sessions for s = 0.444, 14 for s = 0.111). The per-session
        check against the reference is exact."""
        c = self.cluster
        backends = c.backends()
        total_w = sum(self.WEIGHTS.values())
        buckets = 1 << self.TABLE_BITS
        for i, w in self.WEIGHTS.items():
            p = w / total_w
            tol = SIGMAS * math.sqrt(p * (1 - p) / buckets) + 1 / buckets
            self.assertAlmostEqual(backends[i]["share"], p, delta=tol, msg=f"bucket share of backend {i}")
        self.assertNotIn(self.SPARE, backends)

        ports = list(range(10000, 12000))
        want = c.expected(flows(ports))
        records = c.http(ports, workers=8)
        failed = [r for r in records if not r["result"].startswith("b")]
        self.assertEqual(failed, [], "every session gets a reply")
        self.assertServedAsExpected(records, want, "spread")
        client = c.topo.client_addr(1)
        self.assertEqual([r for r in records if r["peer"] != f"{client}:{r['sport']}"], [],
                         "the server sees the client's own address and port (direct server return)")

        counts = collections.Counter(r["result"] for r in records)
        n = len(ports)
        for i in self.WEIGHTS:
            s = backends[i]["share"]
            tol = SIGMAS * math.sqrt(n * s * (1 - s))
            self.assertAlmostEqual(counts[f"b{i}"], n * s, delta=tol,
                                   msg=f"backend {i}: {counts[f'b{i}']} sessions of {n} at share {s:.4f}")
        self.assertEqual(counts[f"b{self.SPARE}"], 0, "the spare backend is in no pool yet")
        print(f"\n  spread: {dict(sorted(counts.items()))} for shares "
              f"{ {i: round(backends[i]['share'], 4) for i in self.WEIGHTS} }", file=sys.stderr)

    # --- 2 -------------------------------------------------------------------------------------------

    # Each crafted case (tests/e2e/bad_packets.py) and the one drop reason it must be counted under, from
    # the parsing rules and the drop-reason table of docs/dataplane.md. Sent from the edge host, to the
    # balancer's MAC (a router would not forward these):
    EDGE_CASES = {
        "three_vlan_tags": "vlan_too_deep",
        "ipv4_header_cut": "truncated_l3",
        "ipv4_version_6": "bad_ip_version",
        "ipv4_ihl_4": "bad_ihl",
        "ipv4_ihl_past_end": "bad_ihl",
        "ipv4_total_length_past_end": "truncated_frame",
        "ipv6_header_cut": "truncated_l3",
        "ipv6_esp": "bad_ext_header",
    }
    # Sent by the client through the router (sound IP, malformed L4), to the VIP:
    CLIENT_CASES = {
        "tcp_data_offset_3": "bad_l4_header",
        "tcp_data_offset_past_end": "bad_l4_header",
        "tcp_header_cut": "truncated_l4",
        "udp_length_4": "bad_l4_header",
        "udp_length_past_end": "bad_l4_header",
        "udp_header_cut": "truncated_l4",
        "icmp_error_quote_cut": "bad_icmp_quote",
    }
    BAD_COUNT = 25

    def test_2_bad_input_is_counted_and_dropped_and_disturbs_nobody(self):
        """Malformed frames and packets are each counted exactly once under the drop reason docs/dataplane.md
        gives them, no other drop counter moves, and long-lived connections and a parallel stream of new
        sessions running meanwhile see no failure, reset or stall."""
        c = self.cluster
        stream = c.stream(13000, 24)
        loop = c.http_loop(12000, 1000, pace=0.01, workers=2)
        try:
            time.sleep(0.5)
            before = c.stats()
            mac = c.topo.balancer(1).mac("eth0")
            here = os.path.dirname(os.path.abspath(__file__))
            r = c.topo.edge().run("/usr/bin/python3", os.path.join(here, "bad_packets.py"), "frames",
                                  "--dst-mac", mac, "--vip", VIP, "--count", str(self.BAD_COUNT))
            sent = json.loads(r.stdout)
            r = c.topo.client(1).run("/usr/bin/python3", os.path.join(here, "bad_packets.py"), "packets",
                                     "--vip", VIP, "--tcp-port", str(HTTP_PORT), "--udp-port", str(UDP_PORT),
                                     "--count", str(self.BAD_COUNT))
            sent.update(json.loads(r.stdout))
            t_bad = e2e.now()
            time.sleep(1.0)  # the traffic goes on after the bad input
            after = c.stats()
        finally:
            records = loop.stop()
            report = stream.stop()

        self.assertEqual(set(sent), set(self.EDGE_CASES) | set(self.CLIENT_CASES), "every case was sent")
        want = collections.Counter()
        for case, reason in {**self.EDGE_CASES, **self.CLIENT_CASES}.items():
            want[reason] += sent[case]
        # not_for_us counts what the switch floods to every port before it has learnt a MAC (frames for the
        # backends or the router): the topology's, not these packets'. Every crafted frame goes to the
        # balancer's own MAC.
        got = {k: after["drops"][k] - before["drops"][k] for k in after["drops"] if k != "not_for_us"}
        self.assertEqual({k: v for k, v in got.items() if v}, dict(want),
                         "drops by reason: exactly the crafted packets, each under its own reason")

        # The traffic around them.
        self.assertGreater(len(records), 50, "the parallel sessions ran")
        want = c.expected(flows([r["sport"] for r in records]))
        self.assertServedAsExpected(records, want, "sessions during the bad input")
        self.assertNoStall(report, [x["sport"] for x in report["conns"]], after=t_bad + 0.8)
        echo = c.expected(flows([x["sport"] for x in report["conns"]], dport=ECHO_PORT))
        self.assertEqual([x["backend"] for x in report["conns"]], [f"b{w['serving']}" for w in echo],
                         "each long-lived connection is on the server the reference names")

    # --- 3 -------------------------------------------------------------------------------------------

    VICTIM = 2

    def test_3_failover(self):
        """Backend 2's servers are killed. Clients see: new sessions refused by it only until the detection
        time (fall x interval + timeout = 350 ms, + MARGIN_S), never after; its sessions (same source ports
        as before the kill) land on the first other server of their ordering (the reference with and without
        the victim down),
        and nobody else's session moves; long-lived connections to the other backends go on with no reset
        and no gap over STALL_S; its own long-lived connections end (its kernel closes them)."""
        c = self.cluster
        victim = self.VICTIM
        ports = list(range(15000, 15400))
        before_lookup = c.expected(flows(ports))
        before = c.http(ports)
        self.assertServedAsExpected(before, before_lookup, "before the failure")
        on_victim = [p for p, w in zip(ports, before_lookup) if w["serving"] == victim]
        self.assertGreater(len(on_victim), 20, "enough sessions on the victim to say something")

        stream = c.stream(14000, 40)
        loop_ports = list(range(16000, 19000))
        loop_lookup = {p: w for p, w in zip(loop_ports, c.expected(flows(loop_ports)))}
        loop = c.http_loop(16000, len(loop_ports), pace=0.004, workers=2)
        try:
            time.sleep(1.0)
            t_kill = c.kill_servers(victim)
            t_gone = e2e.now()  # every process of the victim has exited
            e2e.netns.wait_for(lambda: not c.backends()[victim]["operational"], 5, "the victim to be taken out",
                               c.logs[1])
            t_seen = e2e.now()
            time.sleep(1.5)
        finally:
            records = loop.stop()
            report = stream.stop()
        deadline = t_kill + e2e.DETECTION_S + MARGIN_S
        print(f"\n  failover: taken out {t_seen - t_kill:.3f} s after the kill (seen by polling `backend list`)",
              file=sys.stderr)

        # New sessions: a failure means the session went to the victim, and only before the deadline.
        failed = [r for r in records if not r["result"].startswith("b")]
        others_failed = [r for r in failed if loop_lookup[r["sport"]]["serving"] != victim]
        self.assertEqual(others_failed, [], "only sessions for the victim fail")
        late = [dict(r, after_kill=round(r["t0"] - t_kill, 3)) for r in failed if r["t0"] > deadline]
        self.assertEqual(late, [], f"no new session reaches the victim later than {e2e.DETECTION_S + MARGIN_S:.2f} s "
                                   "after the kill")
        self.assertFalse([r for r in records if r["t0"] > t_gone and r["result"] == f"b{victim}"],
                         "nothing is served by the dead backend")
        after_kill = [r for r in records if r["t0"] > deadline]
        self.assertGreater(len(after_kill), 100, "new sessions kept coming after the failover")
        self.assertGreater(sum(1 for r in records if t_kill < r["t0"] < deadline and
                               loop_lookup[r["sport"]]["serving"] == victim), 0,
                           "some new sessions were aimed at the victim during detection (the test is not blind)")
        last_refused = max((r["t0"] - t_kill for r in failed), default=None)
        print(f"  failover: {len(failed)} sessions refused, the last one started "
              f"{last_refused if last_refused is None else round(last_refused, 3)} s after the kill",
              file=sys.stderr)

        # The same sessions as before: the victim's move to the first other server of their ordering.
        after_lookup = c.expected(flows(ports), down={victim})
        after = c.http(ports)
        self.assertServedAsExpected(after, after_lookup, "after the failure")
        for p, b, a in zip(ports, before_lookup, after_lookup):
            self.assertEqual(a["ordering"], b["ordering"], f"port {p}: the ordering never changes")
            if b["serving"] == victim:
                self.assertEqual(a["serving"], [i for i in b["ordering"] if i != victim][0],
                                 f"port {p}: first operational server of its ordering")
            else:
                self.assertEqual(a["serving"], b["serving"], f"port {p}: sessions of other backends stay")

        # Long-lived connections.
        on = {x["sport"]: x for x in report["conns"]}
        victims = [p for p, x in on.items() if x["backend"] == f"b{victim}"]
        others = [p for p in on if p not in victims]
        self.assertGreater(len(victims), 0, "some long-lived connections were on the victim")
        self.assertNoStall(report, others, after=t_kill + 1.2, what="connections to the other backends")
        self.assertEqual([p for p in victims if not on[p]["error"]], [],
                         "the victim's own connections ended when its servers died")

    # --- 4 -------------------------------------------------------------------------------------------

    def test_4_recovery(self):
        """The victim's servers come back: once probed up (rise x interval), new sessions whose primary it is
        reach it again, and only those move."""
        c = self.cluster
        victim = self.VICTIM
        if c.backends()[victim]["operational"]:  # test_3 did not run or did not get that far
            c.kill_servers(victim)
            e2e.netns.wait_for(lambda: not c.backends()[victim]["operational"], 5, "the victim down", c.logs[1])
        ports = list(range(19500, 19900))
        down_lookup = c.expected(flows(ports), down={victim})
        self.assertFalse([w for w in down_lookup if w["serving"] == victim])
        t = e2e.now()
        c.start_servers(victim)
        e2e.netns.wait_for(lambda: c.backends()[victim]["operational"], 5, "the victim back", c.logs[1])
        print(f"\n  recovery: operational {e2e.now() - t:.2f} s after its servers started", file=sys.stderr)

        up_lookup = c.expected(flows(ports))
        records = c.http(ports)
        self.assertServedAsExpected(records, up_lookup, "after recovery")
        primary = [p for p, w in zip(ports, up_lookup) if w["primary"] == victim]
        self.assertGreater(len(primary), 20)
        self.assertEqual([r["sport"] for r in records if r["result"] == f"b{victim}"], primary,
                         "new sessions reach the returned backend exactly where it is primary")
        for d, u in zip(down_lookup, up_lookup):
            if u["primary"] != victim:
                self.assertEqual(d["serving"], u["serving"], "the others keep their sessions")

    # --- 5 -------------------------------------------------------------------------------------------

    DRAINED = 3

    def test_5_drain(self):
        """`backend drain`: the backend gets no new session while its established long-lived connections go on
        (the connection table keeps them: the reference, with the backend draining, already names another
        server)."""
        c = self.cluster
        target = self.DRAINED
        stream = c.stream(20000, 40)
        try:
            on_target = [x["sport"] for x in stream.report()["conns"] if x["backend"] == f"b{target}"]
            self.assertGreater(len(on_target), 3, "long-lived connections on the backend to drain")
            hits_before = c.stats()["counters"]["conn_hits"]
            c.ctl(1, "backend", "drain", "--pool", "web", "--id", str(target))
            t_drain = e2e.now()
            b = c.backends()[target]
            self.assertEqual((b["state"], b["operational"], b["share"]), ("drain", True, 0.0))
            drained = {target: "drain"}
            echo_lookup = c.expected(flows(on_target, dport=ECHO_PORT), states=drained)
            self.assertFalse([w for w in echo_lookup if w["serving"] == target],
                             "for the reference, these flows now belong elsewhere")

            ports = list(range(20100, 20500))
            lookups = c.expected(flows(ports), states=drained)
            records = c.http(ports)
            self.assertServedAsExpected(records, lookups, "while draining")
            self.assertFalse([r for r in records if r["result"] == f"b{target}"],
                             "no new session for the drained backend")
            time.sleep(1.5)
            hits_after = c.stats()["counters"]["conn_hits"]
        finally:
            report = stream.stop()
            c.ctl(1, "backend", "enable", "--pool", "web", "--id", str(target), check=False)
        self.assertNoStall(report, [x["sport"] for x in report["conns"]], after=t_drain + 1.5)
        self.assertGreater(hits_after - hits_before, 0, "connection-table hits")

    # --- 6 -------------------------------------------------------------------------------------------

    def test_6_growth(self):
        """`backend add` of the spare while long-lived connections are open: none of them breaks or stalls,
        although the reference now gives some of their flows to the new backend (the connection table keeps
        them), and new sessions reach the new backend where the reference says."""
        c = self.cluster
        new = self.SPARE
        stream = c.stream(21000, 40)
        try:
            echo_ports = [x["sport"] for x in stream.report()["conns"]]
            c.ctl(1, "backend", "add", "--pool", "web", "--id", str(new), "--address", c.topo.backend_addr(new),
                  "--weight", "100")
            t_add = e2e.now()
            c.weights[new] = 100  # the balancer's pool as the operator changed it, for the reference
            e2e.netns.wait_for(lambda: c.backends()[new]["operational"] and
                               any(h["id"] == new and h.get("probed") for h in c.health()), 5,
                               "the new backend probed up", c.logs[1])
            c.wait_forwarding(backend_ids=[new])
            moved = [p for p, w in zip(echo_ports, c.expected(flows(echo_ports, dport=ECHO_PORT)))
                     if w["serving"] == new]
            ports = list(range(21100, 21500))
            lookups = c.expected(flows(ports))
            records = c.http(ports)
            time.sleep(1.0)
        finally:
            report = stream.stop()
        self.assertServedAsExpected(records, lookups, "after growth")
        self.assertGreater(sum(1 for r in records if r["result"] == f"b{new}"), 20, "new sessions reach it")
        self.assertGreater(len(moved), 0, "some open connections' buckets went to the new backend")
        self.assertNoStall(report, echo_ports, after=t_add + 1.0)
        self.assertFalse([x for x in report["conns"] if x["backend"] == f"b{new}"])


class SingleNodeL2dsr(SingleNodeScenarios, unittest.TestCase):
    METHOD = "l2dsr"
    PREFIX = "use1"


# class SingleNodeGue(SingleNodeScenarios, unittest.TestCase):
#     METHOD = "gue"        # needs e2e.Cluster.prepare_backend to start understudy-agent
#     PREFIX = "use1g"


if __name__ == "__main__":
    e2e.main(sys.argv)
