#!/usr/bin/python3
"""End to end, IP fragments: UDP datagrams larger than the MTU, fragmented by the client's kernel, cross the
router and the balancer as fragments, are hashed without ports (docs/dataplane.md, "IP fragments"), and
arrive whole at one backend, while other traffic goes on undisturbed.

This class runs the balancer on net_af_xdp, not net_af_packet. DPDK 22.11's af_packet driver joins its
sockets to a PACKET_FANOUT group with PACKET_FANOUT_FLAG_DEFRAG, so the kernel reassembles IPv4 fragments
before the data plane sees them and then cuts the datagram to the ring's frame size (about 1,980 bytes): a
3,000-byte datagram reaches the worker as one truncated packet (dropped as truncated_frame) and a 1,800-byte
one as a single unfragmented frame larger than the MTU, which the kernel drops on transmit after the
balancer counted it as forwarded. Fragments cannot be observed through that driver at all. AF_XDP hands
the frames over as they are on the wire.

Run: test_fragments.py UNDERSTUDY UNDERSTUDYCTL [unittest args]   (meson: suite e2e)
"""
import json
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e  # noqa: E402
from e2e import HTTP_PORT, UDP_CLIENT_PORT, UDP_PORT, VIP  # noqa: E402

STALL_S = 1.0  # as in test_single_node.py


class FragmentScenarios:
    METHOD = None
    PORT = "net_af_xdp"
    PREFIX = None
    WEIGHTS = {1: 100, 2: 100, 3: 200, 4: 50}
    DATAGRAMS = 200
    SIZE = 3000  # UDP payload: 3,008 bytes of IP payload = fragments of 1,480 + 1,480 + 48 at MTU 1,500
    FRAGMENTS_EACH = 3

    @classmethod
    def setUpClass(cls):
        cls.cluster = e2e.Cluster(cls.PREFIX, cls.METHOD, cls.WEIGHTS, backends=len(cls.WEIGHTS), port=cls.PORT)
        cls.addClassCleanup(cls.cluster.down)
        cls.cluster.up()

    def test_fragmented_datagrams_arrive_whole_at_one_backend(self):
        """200 datagrams of 3,000 bytes from 200 source ports: the balancer forwards 600 fragments (its
        `fragments` counter), no drop counter moves, and every datagram is received whole (the backend's
        kernel reassembled it) by one backend: the one tools/ordering_ref.py names for the port-less key
        of this client, asked through the affinity = "client" UDP VIP of the same address and pool (whose
        session key zeroes both ports, exactly as a fragment's does). Meanwhile long-lived connections see
        no reset or stall over STALL_S and a parallel stream of new sessions all succeed where the reference
        says."""
        c = self.cluster
        client = c.topo.client_addr(1)
        target = c.expected([(client, 1, VIP, UDP_CLIENT_PORT, "udp")])[0]["serving"]
        stream = c.stream(25000, 24)
        loop = c.http_loop(26000, 1000, pace=0.01, workers=2)
        try:
            time.sleep(0.5)
            before, counts0 = c.stats(), c.udp_counts()
            r = c.topo.client(1).run("/usr/bin/python3", os.path.join(e2e.HERE, "bad_packets.py"), "big-udp",
                                     "--vip", VIP, "--port", str(UDP_PORT), "--count", str(self.DATAGRAMS),
                                     "--size", str(self.SIZE), "--sports", "42000", "--gap", "0.003")
            self.assertEqual(json.loads(r.stdout), {"datagrams": self.DATAGRAMS})
            t_sent = e2e.now()
            try:
                e2e.netns.wait_for(lambda: sum(c.udp_counts().values()) - sum(counts0.values()) >= self.DATAGRAMS,
                                   10, f"{self.DATAGRAMS} datagrams at the backends")
            except TimeoutError:
                pass  # the assertions below say what arrived where
            time.sleep(0.5)
            after, counts1 = c.stats(), c.udp_counts()
        finally:
            records = loop.stop()
            report = stream.stop()

        got = {i: counts1[i] - counts0[i] for i in counts1}
        self.assertEqual(got, {i: self.DATAGRAMS if i == target else 0 for i in counts1},
                         f"datagrams received whole per backend (the reference names backend {target})")
        self.assertEqual(after["counters"]["fragments"] - before["counters"]["fragments"],
                         self.FRAGMENTS_EACH * self.DATAGRAMS, "fragments forwarded")
        drops = {k: after["drops"][k] - before["drops"][k] for k in after["drops"]}
        self.assertEqual({k: v for k, v in drops.items() if v}, {}, "no drop")

        self.assertGreater(len(records), 50)
        self.assertEqual([r for r in records if not r["result"].startswith("b")], [], "every session succeeds")
        lookups = c.expected([(client, r["sport"], VIP, HTTP_PORT, "tcp") for r in records])
        self.assertEqual([r["result"] for r in records], [f"b{w['serving']}" for w in lookups])
        bad = [x for x in report["conns"] if x["error"] or len(x["backends"]) != 1 or x["max_gap"] > STALL_S
               or x["last_reply"] < t_sent]
        self.assertEqual(bad, [], "long-lived connections undisturbed")


class FragmentsL2dsrAfXdp(FragmentScenarios, unittest.TestCase):
    METHOD = "l2dsr"
    PREFIX = "use3"


if __name__ == "__main__":
    e2e.main(sys.argv)
