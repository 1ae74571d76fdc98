#!/usr/bin/python3
"""End to end, two balancer nodes behind ECMP: the router spreads the VIP over both (a multipath route
hashing addresses and ports, as a fabric does), each node runs `understudy run` on net_af_packet with its own
health probes and connection table, and nothing is shared between them but the config.

    test_1  both daemons answer `lookup --batch` identically for 10,000 random flows, and as the
            independent reference (tools/ordering_ref.py) does
    test_2  one node stops (SIGTERM, and its route is withdrawn as BGP would): the other carries every
            session on; long-lived connections see no reset and no stall, new sessions all succeed

The forwarding method is a class attribute (METHOD); TwoNodesL2dsr runs with l2dsr.

Run: test_two_nodes.py UNDERSTUDY UNDERSTUDYCTL [unittest args]   (meson: suite e2e)
"""
import json
import os
import random
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e  # noqa: E402
from e2e import ECHO_PORT, HTTP_PORT, UDP_PORT, VIP  # noqa: E402

# A stall is a gap over STALL_S between two replies on a long-lived connection (a line every 50 ms). The
# route change is immediate, so at most the packets in flight to the stopping node are lost: TCP resends
# them after its minimum RTO (200 ms), or 600 ms for a second loss; 1 s allows that and nothing more.
STALL_S = 1.0


def flows(ports, dport=HTTP_PORT, proto="tcp", client=e2e.netns.Topology.client_addr(1)):
    return [(client, p, VIP, dport, proto) for p in ports]


class TwoNodeScenarios:
    METHOD = None
    PORT = "net_af_packet"
    PREFIX = None
    WEIGHTS = {1: 100, 2: 100, 3: 200, 4: 50}

    @classmethod
    def setUpClass(cls):
        cls.cluster = e2e.Cluster(cls.PREFIX, cls.METHOD, cls.WEIGHTS, backends=len(cls.WEIGHTS), balancers=2,
                                  port=cls.PORT)
        cls.addClassCleanup(cls.cluster.down)
        cls.cluster.up()

    def test_1_both_nodes_answer_lookup_identically(self):
        """10,000 random flows (random client addresses and ports, over the TCP and UDP VIPs): node 1 and node
        2 give the same session hash, bucket, ordering, primary and serving server for every one, and so
        does the independent reference implementation of the ordering contract."""
        c = self.cluster
        rng = random.Random(20261126)
        vips = [(HTTP_PORT, "tcp"), (ECHO_PORT, "tcp"), (UDP_PORT, "udp"), (e2e.UDP_CLIENT_PORT, "udp")]
        lines = []
        for _ in range(10000):
            dport, proto = rng.choice(vips)
            src = ".".join(str(rng.randrange(1, 255)) for _ in range(4))
            lines.append((src, rng.randrange(1, 65536), VIP, dport, proto))
        one, two = c.lookup_raw(1, lines), c.lookup_raw(2, lines)
        self.assertEqual(len(one.splitlines()), 10000)
        self.assertFalse([l for l in one.splitlines() if "error" in l])
        diff = [(i, a, b) for i, (a, b) in enumerate(zip(one.splitlines(), two.splitlines())) if a != b]
        self.assertEqual(diff[:5], [], f"{len(diff)} of 10000 flows differ between the two nodes")
        self.assertEqual(one, two)
        ref = subprocess.run(["/usr/bin/python3", os.path.join(e2e.ROOT, "tools", "ordering_ref.py"), "lookup",
                              "--config", c.configs[1]], input="".join(f"{s} {sp} {d} {dp} {pr}\n"
                                                                       for s, sp, d, dp, pr in lines),
                             capture_output=True, text=True, timeout=300)
        self.assertEqual(ref.returncode, 0, ref.stderr)
        want = [json.loads(l) for l in ref.stdout.splitlines()]
        got = [json.loads(l) for l in one.splitlines()]
        wrong = [(lines[i], g, w) for i, (g, w) in enumerate(zip(got, want)) if g != w]
        self.assertEqual(wrong[:5], [], f"{len(wrong)} of 10000 flows differ from the reference")
        self.assertEqual(len(want), 10000)

    def test_2_one_node_stops_the_other_carries_on(self):
        """Long-lived connections and a steady stream of new sessions go through both nodes (each node's VIP
        counters show its part). Node 1 gets SIGTERM and its next hop leaves the router's multipath route at
        once. Then: node 1 exits 0; every long-lived connection goes on through node 2 on the same backend,
        with no reset and no gap over STALL_S, still answering 2 s later; every new session succeeds, on the
        server the reference (tools/ordering_ref.py) names."""
        c = self.cluster
        stream = c.stream(23000, 48)
        loop = c.http_loop(24000, 4000, pace=0.005, workers=2)
        try:
            time.sleep(0.5)
            s1, s2 = c.stats(1), c.stats(2)
            time.sleep(1.5)
            e1, e2_ = c.stats(1), c.stats(2)
            t_stop = e2e.now()
            c.daemons[1].send_signal(e2e.signal.SIGTERM)
            c.topo.route_vips([2])  # the withdrawal: routing changes at once
            t_routed = e2e.now()
            rc = c.daemons[1].wait(timeout=15)
            time.sleep(2.5)
        finally:
            records = loop.stop()
            report = stream.stop()
        print(f"\n  node stop: route withdrawn {t_routed - t_stop:.3f} s after SIGTERM", file=sys.stderr)
        self.assertEqual(rc, 0, "node 1 stops cleanly\n" + c.log(1))

        def echo_packets(before, after):
            key = f"{VIP}:{ECHO_PORT}/tcp"
            get = lambda s: next(v["packets"] for v in s["vips"] if v["vip"] == key)  # noqa: E731
            return get(after) - get(before)
        p1, p2 = echo_packets(s1, e1), echo_packets(s2, e2_)
        print(f"  ECMP before the stop: node 1 {p1} packets, node 2 {p2} packets for the echo VIP", file=sys.stderr)
        self.assertGreater(min(p1, p2), 0.15 * (p1 + p2), "the router spreads the connections over both nodes")

        echo_lookup = c.expected(flows([x["sport"] for x in report["conns"]], dport=ECHO_PORT))
        self.assertEqual([x["backend"] for x in report["conns"]], [f"b{w['serving']}" for w in echo_lookup],
                         "each long-lived connection is on the server the reference names")
        # Times relative to the SIGTERM, to tell a break at the stop from one at any other moment.
        rel = lambda t: None if t is None else round(t - t_stop, 3)  # noqa: E731
        bad = [{"sport": x["sport"], "backends": x["backends"], "error": x["error"], "error_at": rel(x["error_at"]),
                "max_gap": round(x["max_gap"], 3), "max_gap_end": rel(x["max_gap_end"]),
                "last_reply": rel(x["last_reply"])} for x in report["conns"]
               if x["error"] or len(x["backends"]) != 1 or x["bad_replies"] or x["max_gap"] > STALL_S
               or x["last_reply"] < t_stop + 2.0]
        self.assertEqual(bad, [], f"long-lived connections that broke or stalled over {STALL_S} s (times "
                                  f"from the SIGTERM; route withdrawn at {t_routed - t_stop:.3f})")
        gaps = sorted(x["max_gap"] for x in report["conns"])
        print(f"  longest gaps: {[round(g, 3) for g in gaps[-5:]]}", file=sys.stderr)

        self.assertGreater(sum(1 for r in records if r["t0"] > t_routed), 100, "new sessions after the stop")
        failed = [dict(r, t0=rel(r["t0"]), t1=rel(r["t1"])) for r in records if not r["result"].startswith("b")]
        self.assertEqual(failed, [], "every new session succeeds (times from the SIGTERM)")
        lookups = c.expected(flows([r["sport"] for r in records]))
        wrong = [(r["sport"], r["result"], w["serving"]) for r, w in zip(records, lookups)
                 if r["result"] != f"b{w['serving']}"]
        self.assertEqual(wrong, [], "each session on the server the reference names")


class TwoNodesL2dsr(TwoNodeScenarios, unittest.TestCase):
    METHOD = "l2dsr"
    PREFIX = "use2"


# ------------------------------------------------------------------------------------------------------
# DivergentViews: placeholder, NOT a test yet (no TestCase, nothing collected). It needs understudy-agent
# in the backends (gue), which is being built.
#
# What it will do: two balancer nodes and the backends' agents are made to hold different views of the
# pool (e.g. node 1 has backend 3 disabled through `understudyctl backend disable` while node 2 and the
# agents still count it; or a backend added on one node only), and traffic is sent through both nodes.
# The GUE header carries the sender's pool digest, primary and hop budget, so the receiving agent detects
# the divergence and re-checks the ordering: a packet arriving at a server that is not first operational
# in its own view is forwarded (at most hop_budget times) to the server that is. Assertions, from the
# clients: every long-lived connection keeps one backend throughout (no reset, no stall over 1 s) while the
# views differ and after they converge; new sessions succeed; no packet loops (the hop budget bounds it,
# visible in the agent's counters); the agents' divergence counters rise while the views differ and stop
# when they agree again.
class DivergentViewsPlaceholder:
    """Not collected: see the comment above."""


if __name__ == "__main__":
    e2e.main(sys.argv)
