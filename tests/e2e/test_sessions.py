#!/usr/bin/python3
"""End to end, "no session lost" (DESIGN.md, "Sessions across change"): two balancer nodes behind the router's
ECMP route, method gue, understudy-agent on every backend (and on a spare that joins), and the failure
sequences that make views differ. In every scenario the same three clients run through the change:

    - 200 long-lived TCP connections (stream_client.py), each sending a line every 100 ms and checking that
      the reply names the server it started on: resets, moved sessions, sessions not on the server the
      reference names, and the longest stall, all from the client's own observations;
    - wrk (Debian's), 16 keep-alive HTTP/1.1 connections, a request on each every 50 ms: socket errors
      (a reset is a read error), responses from another backend than the connection's first;
    - an iperf3 bulk transfer (Debian's iperf3, capped at 100 Mbit/s for this 2-core machine): it must
      complete and move data, on the server the reference names.

Where each session should be comes from tools/ordering_ref.py given the configuration and the backends the
backends' agents see down at the moment the session opened (a SYN goes where the balancer sends it and on to
the serving server of the receiving agent's view, docs/agent.md; an established session stays where it is),
never from the daemon under test. The design promises zero
resets for gue in every scenario:

    test_1  a node is killed (SIGKILL, route withdrawn at once)
    test_2  a node is killed after a backend joined (both tiers): the dead node's moved flows reach the
            survivor, which has no connection-table entry for them
    test_3  a backend joins on the balancers some seconds before the agents; connections open meanwhile
    test_4  the reverse: the agents first
    test_5  the balancers cannot probe backend 2 (a firewall in its namespace drops their probes only) while
            the agents can; connections open meanwhile; then the views agree again
    test_6  the reverse: the agents cannot probe backend 2, the balancers can
    test_7  a VIP is removed (and put back) on both tiers while the others carry traffic, after a backend
            joined (so that established flows are held by the connection tables, not by the table)
    Gue1500 gue through a 1,500-byte backend path: the client's full-size segments do not fit once
            encapsulated, so the balancer must answer ICMP frag-needed for TCP's path MTU discovery to adapt;
            the iperf3 transfer must complete and move data.

The other scenarios give the servers' segment an MTU of 1,600 (room for the 56 bytes of GUE), as a
deployment with jumbo frames inside the data centre would.

Run: test_sessions.py UNDERSTUDY UNDERSTUDYCTL UNDERSTUDY_AGENT [unittest args]   (meson: suite e2e)
"""
import collections
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e  # noqa: E402
from e2e import ECHO_PORT, HTTP_PORT, IPERF_PORT, VIP  # noqa: E402

CONNS = 200          # long-lived connections per scenario (and half as many opened during a change)
INTERVAL = 0.1       # a line every 100 ms on each
# A stall is the longest gap between two replies on one connection. Views changing must not cost a lost
# packet; 1 s tolerates one retransmission (TCP's minimum RTO is 200 ms) on this loaded 2-core machine.
STALL_S = 1.0
# A node killed: the packets in flight to it are lost and resent after an RTO, or two for an unlucky one.
KILL_STALL_S = 1.5
# Connections opened while the tiers' views differ: a segment lost right after the handshake waits for the first
# retransmission timeout, which is 1 s when the handshake itself needed a retransmitted SYN (no RTT sample,
# RFC 6298 5.7). Seen once in 5 runs: 1.04 s.
NEW_CONN_STALL_S = 1.5
IPERF_RATE = "100M"
# The agents attach their program in generic (skb) mode here. In native mode a backend's veth forwards with
# XDP_TX into its peer's NAPI ring; on this test machine's kernel (6.18), once that ring overflows under bulk
# traffic (a stand-in forwarding 100 Mbit/s to the backend it stands in for) the peer's NAPI is never
# scheduled again and the backend's veth drops everything it sends from then on: ARP fails, every probe
# to and from it times out, and the test measures a wedged test bed instead of understudy. Generic mode runs
# the same program on the same packets and transmits through the ordinary stack (no NAPI on the peer).
XDP_MODE = "generic"
CLIENT = e2e.netns.Topology.client_addr(1)
BASE = {1: 100, 2: 100, 3: 200, 4: 50}
SPARE = 5
JOINED = {**BASE, SPARE: 100}
BLIND = 2  # the backend whose health the tiers disagree about


def flows(ports, dport=ECHO_PORT):
    return [(CLIENT, p, VIP, dport, "tcp") for p in ports]


class Traffic:
    """The clients of one scenario, started together; streams can be added while a change is under way.
    Each stream records where the reference says its connections belong, given the balancers' view when
    they opened (weights, backends seen down)."""

    def __init__(self, test, first_port, iperf_seconds, weights=None, down=()):
        self.test = test
        c = self.c = test.cluster
        self.t0 = e2e.now()
        self.streams = []
        self.iperf_before = {i: len(x) for i, x in c.iperf_servers().items()}
        # A client address of its own: with affinity = "client" the connection tables would otherwise still
        # hold where an earlier scenario's transfer went.
        source = c.fresh_client_address()
        self.iperf_expected = c.expected([(source, 1, VIP, IPERF_PORT, "tcp")], weights=weights, down=down)[0]
        self.drops_before = self.drops()
        self.add_stream("open before", first_port, CONNS, weights, down)
        self.wrk = c.wrk()
        self.iperf = c.iperf(iperf_seconds, bitrate=IPERF_RATE, source=source)
        self.events = []
        test.addCleanup(self.abort)

    def abort(self):
        """Stops whatever still runs (a scenario that failed half-way), so that the next starts clean."""
        for _, stream, _ in self.streams:
            if stream.proc.poll() is None:
                stream.stop()
        for p in (self.wrk.proc, self.iperf.proc):
            if p.poll() is None:
                p.kill()
                p.wait()
                self.c.iperf_dirty = True

    def add_stream(self, label, first_port, count, weights=None, down=()):
        ports = list(range(first_port, first_port + count))
        want = self.c.expected(flows(ports), weights=weights, down=down)
        stream = self.c.stream(first_port, count, interval=INTERVAL)
        self.streams.append((label, stream, {p: w["serving"] for p, w in zip(ports, want)}))
        return stream

    def drops(self):
        """Every running balancer's drop counters by reason and every agent's counters (diagnostics: where
        packets went when a client stalled)."""
        out = {}
        for n in sorted(self.c.daemons):
            if self.c.daemons[n].poll() is None:
                try:
                    out[f"node {n}"] = self.c.stats(n).get("drops", {})
                except Exception as e:  # a node being killed; diagnostics only
                    out[f"node {n}"] = {"unreadable": str(e)}
        for i in sorted(self.c.agents):
            try:
                out[f"agent b{i}"] = self.c.agent_stats(i).get("counters", {})
            except Exception as e:
                out[f"agent b{i}"] = {"unreadable": str(e)}
        return out

    def event(self, what):
        t = e2e.now()
        self.events.append((round(t - self.t0, 2), what))
        return t

    def finish(self, replies_after, stall_limit=STALL_S):
        """Stops the clients and returns (summary lines, violations). replies_after: every long-lived
        connection must have had a reply after this time (it lives on after the last change)."""
        reports = [(label, stream.stop(), want) for label, stream, want in self.streams]
        wrk = self.wrk.result()
        iperf = self.iperf.result()
        if not iperf["completed"]:
            self.c.iperf_dirty = True
        servers = self.c.iperf_servers()
        iperf_on = [i for i, objs in servers.items() if len(objs) > self.iperf_before.get(i, 0)]
        lines, bad = [f"events (s from start): {self.events}"], []
        after = self.drops()
        grew = {}
        for who, counts in after.items():
            before = self.drops_before.get(who, {})
            d = {k: v - before.get(k, 0) for k, v in counts.items()
                 if isinstance(v, int) and v - before.get(k, 0) > 0}
            if d:
                grew[who] = d
        lines.append(f"balancer drops and agent counters that grew: {grew or 'none'}")
        for label, report, want in reports:
            conns = report["conns"]
            errors = collections.Counter(x["error"].split(":")[0] for x in conns if x["error"])
            moved = [x["sport"] for x in conns if len(x["backends"]) > 1]
            misplaced = [(x["sport"], x["backend"], f"b{want[x['sport']]}") for x in conns
                         if x["backend"] is not None and x["backend"] != f"b{want[x['sport']]}"]
            silent = [x["sport"] for x in conns if not x["error"] and (x["last_reply"] or 0) < replies_after]
            stall = max((x["max_gap"] for x in conns), default=0.0)
            stall_at = max(conns, key=lambda x: x["max_gap"])["max_gap_end"] if conns else None
            resets = sum(errors.values())
            lines.append(f"stream ({label}): {len(conns)} connections, resets {resets} {dict(errors)}, moved "
                         f"{len(moved)}, not where the reference says {len(misplaced)}, silent {len(silent)}, "
                         f"longest stall {stall:.3f} s (ending at "
                         f"{None if stall_at is None else round(stall_at - self.t0, 2)} s); the client's own longest pause "
                         f"{report.get('client_pause', 0.0):.3f} s")
            if resets:
                bad.append(f"stream ({label}): {resets} connections broke {dict(errors)}, e.g. "
                           f"{[(x['sport'], x['backends'], x['error'], round(x['error_at'] - self.t0, 2)) for x in conns if x['error']][:5]}")
            if moved:
                bad.append(f"stream ({label}): {len(moved)} connections answered by two servers: {moved[:10]}")
            if misplaced:
                bad.append(f"stream ({label}): {len(misplaced)} connections not on the server the reference "
                           f"names (port, saw, reference): {misplaced[:10]}")
            if silent:
                bad.append(f"stream ({label}): {len(silent)} connections silent since before the last change")
            if stall > stall_limit:
                bad.append(f"stream ({label}): longest stall {stall:.3f} s > {stall_limit} s, ending at "
                           f"{round(stall_at - self.t0, 2)} s; the client's own longest pause "
                           f"{report.get('client_pause', 0.0):.3f} s; {grew or 'no drop counted'}")
        lines.append(f"wrk: {wrk['requests']} requests on {len(wrk['ports'])} connections, socket errors "
                     f"{wrk['errors']} (connect {wrk['connect']}, read {wrk['read']}, write {wrk['write']}, "
                     f"timeout {wrk['timeout']}), non-2xx {wrk['status']}, responses from another backend "
                     f"{wrk['moved']}")
        if wrk["errors"] or wrk["status"] or wrk["bad"] or wrk["moved"]:
            bad.append(f"wrk: socket errors {wrk['errors']}, non-2xx {wrk['status']}, unreadable {wrk['bad']}, "
                       f"moved {wrk['moved']}")
        if wrk["requests"] == 0:
            bad.append("wrk: no request completed")
        want_b = self.iperf_expected["serving"]
        lines.append(f"iperf3: {'completed' if iperf['completed'] else 'FAILED: ' + str(iperf['error'])}, "
                     f"{iperf['received'] / 1e6:.1f} MB received, {iperf['mbps']} Mbit/s, retransmits "
                     f"{iperf['retransmits']}, served by {['b%d' % i for i in iperf_on]} (reference: b{want_b})")
        if not iperf["completed"] or iperf["received"] <= 0:
            bad.append(f"iperf3: did not complete or moved nothing: {iperf}")
        if iperf_on != [want_b]:
            bad.append(f"iperf3: served by {iperf_on}, the reference names b{want_b}")
        return lines, bad


class SessionScenarios:
    """Tests run in name order on one cluster; setUp puts back the base state (both nodes up and routed,
    the base pool and every VIP on both tiers, no firewall rule, every backend seen up)."""

    METHOD = None
    PREFIX = None

    @classmethod
    def setUpClass(cls):
        cls.cluster = e2e.Cluster(cls.PREFIX, cls.METHOD, BASE, backends=len(BASE) + 1, balancers=2,
                                  bulk=True, server_mtu=1600, dataplane_mtu=1600, xdp_mode=XDP_MODE)
        cls.addClassCleanup(cls.cluster.down)
        cls.cluster.up()
        cls.full_vips = dict(cls.cluster.vips)
        cls.summary = []

    @classmethod
    def tearDownClass(cls):
        print("\n== sessions across change: summary", file=sys.stderr)
        for name, lines in cls.summary:
            print(f"  {name}", file=sys.stderr)
            for line in lines:
                print(f"      {line}", file=sys.stderr)

    def setUp(self):
        c = self.cluster
        for n in sorted(c.daemons):
            if c.daemons[n].poll() is not None:
                c.restart_node(n)
        c.topo.route_vips(sorted(c.daemons))
        for i in range(1, c.topo.n_backends + 1):
            c.topo.unblock_port(i)
        if c.weights != BASE or c.vips != self.full_vips:
            c.reload_balancers(BASE, self.full_vips)
        if c.agent_weights != BASE or c.agent_vips != self.full_vips:
            c.reload_agents(BASE, self.full_vips)
        if getattr(c, "iperf_dirty", False):
            c.restart_iperf_servers()
            c.iperf_dirty = False
        self.wait_balancers_see(set(BASE), up=set(BASE))
        self.wait_agents_see(set(BASE), up=set(BASE))

    # --- views -------------------------------------------------------------------------------------------

    def wait_balancers_see(self, ids, up, seconds=10):
        """Until every running node's pool is `ids`, with exactly `up` probed up. (The daemon's state, read for
        timing only: nothing expected of the clients comes from it.)"""
        c = self.cluster
        for n in sorted(c.daemons):
            if c.daemons[n].poll() is not None:
                continue
            e2e.netns.wait_for(lambda n=n: self._sees(c.health(n), ids, up), seconds,
                               f"node {n} to see pool {sorted(ids)} with {sorted(up)} up", c.logs[n])

    def wait_agents_see(self, ids, up, seconds=10):
        c = self.cluster
        for i in sorted(c.agents):
            e2e.netns.wait_for(lambda i=i: self._sees(c.agent_health(i), ids, up), seconds,
                               f"agent {i} to see pool {sorted(ids)} with {sorted(up)} up", c.agent_logs[i])

    @staticmethod
    def _sees(health, ids, up):
        h = {x["id"]: x for x in health}
        return set(h) == ids and all(x.get("probed") for x in h.values()) and \
            {i for i, x in h.items() if x["up"]} == up

    def wait_next_hop(self, backend, seconds=10):
        """Until every running node's kernel has backend's MAC in its neighbour table (its health probes make
        it resolve), plus the daemon's neighbour refresh (every 200 ms): until then the daemon would drop the
        backend's packets as no_next_hop."""
        c = self.cluster
        addr = c.topo.backend_addr(backend)
        for n in sorted(c.daemons):
            if c.daemons[n].poll() is None:
                e2e.netns.wait_for(lambda n=n: "lladdr" in c.topo.balancer(n).run("ip", "neigh", "show", addr).stdout,
                                   seconds, f"node {n}'s kernel to resolve backend {backend}", c.logs[n])
        time.sleep(0.4)

    def settle(self, seconds):
        time.sleep(seconds)

    def conclude(self, name, traffic, replies_after, stall_limit=STALL_S):
        lines, bad = traffic.finish(replies_after, stall_limit)
        type(self).summary.append((name, lines))
        print(f"\n  {name}:", file=sys.stderr)
        for line in lines:
            print(f"      {line}", file=sys.stderr)
        self.assertEqual(bad, [], f"{name}: what the clients saw")

    # --- 1 ------------------------------------------------------------------------------------------------

    def test_1_node_killed(self):
        """Node 1 is killed under load; the router withdraws it at once. Node 2 carries every session on."""
        c = self.cluster
        t = Traffic(self, 30000, iperf_seconds=5)
        self.settle(1.5)
        t_kill = c.kill_node(1)
        t.event("node 1 killed, route withdrawn")
        self.settle(2.5)
        self.conclude("node killed", t, t_kill + 1.5, KILL_STALL_S)

    # --- 2 ------------------------------------------------------------------------------------------------

    def test_2_node_killed_after_backend_joined(self):
        """Backend 5 joins on both tiers (agents, then balancers) under load: the nodes' connection tables
        keep every established flow where it is, although the table now gives some of their buckets to 5.
        Then node 1 is killed: node 2 receives node 1's flows with no entry for them, and the moved ones
        must still reach the servers that hold them."""
        c = self.cluster
        t = Traffic(self, 31000, iperf_seconds=7)
        self.settle(1.0)
        c.reload_agents(JOINED)
        t.event("agents: backend 5 joins")
        self.wait_agents_see(set(JOINED), up=set(JOINED))
        c.reload_balancers(JOINED)
        t.event("balancers: backend 5 joins")
        self.wait_balancers_see(set(JOINED), up=set(JOINED))
        self.wait_next_hop(SPARE)
        moved = [p for p, w in zip(range(31000, 31000 + CONNS), c.expected(flows(range(31000, 31000 + CONNS))))
                 if w["serving"] == SPARE]
        t.event(f"{len(moved)} of the connections' buckets now belong to backend 5 (reference)")
        self.assertGreater(len(moved), 5, "some established flows' buckets moved to the new backend")
        self.settle(1.0)
        t_kill = c.kill_node(1)
        t.event("node 1 killed, route withdrawn")
        self.settle(2.5)
        self.conclude("node killed after a backend joined", t, t_kill + 1.5, KILL_STALL_S)

    # --- 3, 4 -----------------------------------------------------------------------------------------------

    def join_one_tier_first(self, first, name, port):
        """Backend 5 joins on the `first` tier ("balancers" or "agents"), connections open while the other
        tier has not heard of it, then it joins there too."""
        c = self.cluster
        t = Traffic(self, port, iperf_seconds=8)
        self.settle(1.0)
        if first == "balancers":
            c.reload_balancers(JOINED)
            t.event("balancers: backend 5 joins")
            self.wait_balancers_see(set(JOINED), up=set(JOINED))
            self.wait_next_hop(SPARE)
        else:
            c.reload_agents(JOINED)
            t.event("agents: backend 5 joins")
            self.wait_agents_see(set(JOINED), up=set(JOINED))
        # The receiving agent's view places a new connection (the balancer's only picks the first hop).
        agent_weights = JOINED if first == "agents" else BASE
        t.add_stream(f"opened while only the {first} know backend 5", port + 500, CONNS // 2, weights=agent_weights)
        t.event("second set of connections open")
        self.settle(2.0)
        if first == "balancers":
            c.reload_agents(JOINED)
            t.event("agents: backend 5 joins")
            self.wait_agents_see(set(JOINED), up=set(JOINED))
        else:
            c.reload_balancers(JOINED)
            t.event("balancers: backend 5 joins")
            self.wait_balancers_see(set(JOINED), up=set(JOINED))
        t_agree = t.event("views agree")
        self.settle(2.0)
        self.conclude(name, t, t_agree + 1.5, NEW_CONN_STALL_S)

    def test_3_backend_joined_on_balancers_before_agents(self):
        self.join_one_tier_first("balancers", "backend joined on the balancers before the agents", 32000)

    def test_4_backend_joined_on_agents_before_balancers(self):
        self.join_one_tier_first("agents", "backend joined on the agents before the balancers", 33000)

    # --- 5, 6 -----------------------------------------------------------------------------------------------

    def blind_tier(self, blind, name, port):
        """The `blind` tier ("balancers" or "agents") cannot probe backend BLIND's health port (nft in its
        namespace drops their probes only: clients still reach it); connections open while the views differ;
        then the rule goes and the views agree again."""
        c = self.cluster
        t = Traffic(self, port, iperf_seconds=8)
        self.settle(1.0)
        if blind == "balancers":
            sources = [c.topo.balancer_addr(n) for n in sorted(c.daemons)]
        else:
            sources = [c.topo.backend_addr(i) for i in range(1, c.topo.n_backends + 1)]
        c.topo.block_port(BLIND, sources, HTTP_PORT)
        t.event(f"backend {BLIND}'s health port blocked from the {blind}")
        others = set(BASE) - {BLIND}
        if blind == "balancers":
            self.wait_balancers_see(set(BASE), up=others)
        else:
            self.wait_agents_see(set(BASE), up=others)
        t.event(f"the {blind} see backend {BLIND} down")
        # The receiving agent's view places a new connection (the balancer's only picks the first hop).
        agent_down = {BLIND} if blind == "agents" else set()
        t.add_stream(f"opened while the {blind} see backend {BLIND} down", port + 500, CONNS // 2, down=agent_down)
        t.event("second set of connections open")
        self.settle(1.5)
        c.topo.unblock_port(BLIND)
        t.event("rule removed")
        if blind == "balancers":
            self.wait_balancers_see(set(BASE), up=set(BASE))
        else:
            self.wait_agents_see(set(BASE), up=set(BASE))
        t_agree = t.event("views agree")
        self.settle(2.0)
        self.conclude(name, t, t_agree + 1.5, NEW_CONN_STALL_S)

    def test_5_balancers_blind_to_a_backend_then_agree(self):
        self.blind_tier("balancers", "balancers and agents disagree about a backend's health (balancers blind), "
                                     "then agree", 34000)

    def test_6_agents_blind_to_a_backend_then_agree(self):
        self.blind_tier("agents", "balancers and agents disagree about a backend's health (agents blind), "
                                  "then agree", 35000)

    # --- 7 --------------------------------------------------------------------------------------------------

    def test_7_vip_removed_while_another_carries_traffic(self):
        """Backend 5 joins (both tiers), so established flows now live by the connection tables; then the HTTP
        VIP (the first in the config: every other VIP's index shifts) is removed from the balancers and the
        agents, and put back. The traffic on the other VIPs goes on untouched; the removed VIP serves nothing
        while it is gone and serves again, where the reference says, once it is back."""
        c = self.cluster
        t = Traffic(self, 36000, iperf_seconds=8)
        self.settle(1.0)
        c.reload_agents(JOINED)
        self.wait_agents_see(set(JOINED), up=set(JOINED))
        c.reload_balancers(JOINED)
        self.wait_balancers_see(set(JOINED), up=set(JOINED))
        self.wait_next_hop(SPARE)
        t.event("backend 5 joined on both tiers")
        without = {k: v for k, v in self.full_vips.items() if k != "http"}
        c.reload_balancers(vips=without)
        c.reload_agents(vips=without)
        t.event("HTTP VIP removed (balancers, then agents)")
        gone = c.http(list(range(36600, 36604)), timeout=1.0)
        t.event("sessions to the removed VIP tried")
        self.settle(1.0)
        c.reload_agents(vips=self.full_vips)
        c.reload_balancers(vips=self.full_vips)
        t_back = t.event("HTTP VIP back (agents, then balancers)")
        back_ports = list(range(36700, 36720))
        back = c.http(back_ports)
        self.settle(1.5)
        self.conclude("VIP removed while another carries traffic", t, t_back + 1.0)
        self.assertFalse([r for r in gone if r["result"].startswith("b")], f"the removed VIP served: {gone}")
        want = c.expected(flows(back_ports, dport=HTTP_PORT))
        self.assertEqual([r["result"] for r in back], [f"b{w['serving']}" for w in want],
                         "the VIP serves again where the reference says")


class SessionsGue(SessionScenarios, unittest.TestCase):
    METHOD = "gue"
    PREFIX = "uss"


class Gue1500(unittest.TestCase):
    """gue through a 1,500-byte backend path: every link at MTU 1,500, clients included. A full-size client
    segment (1,500 bytes) is 1,556 bytes once encapsulated; the balancer must refuse it with ICMP
    fragmentation-needed (the outer header has DF set), so that the client's TCP lowers its segment size
    (path MTU discovery) instead of losing every full-size segment. One node, two backends."""

    @classmethod
    def setUpClass(cls):
        cls.cluster = c = e2e.Cluster("ussm", "gue", {1: 100, 2: 100}, backends=2, balancers=1, bulk=True,
                                      xdp_mode=XDP_MODE)
        cls.addClassCleanup(c.down)
        # Tell the balancer its path MTU where this build has the setting ([dataplane] mtu, being added).
        cls.mtu_setting = c.accepts("dataplane", "mtu = 1500")
        if cls.mtu_setting:
            c.dataplane_mtu = 1500
        c.up()

    def test_bulk_through_a_1500_byte_backend_path(self):
        c = self.cluster
        want = c.expected([(CLIENT, 1, VIP, IPERF_PORT, "tcp")])[0]["serving"]
        before = {i: len(x) for i, x in c.iperf_servers().items()}
        stream = c.stream(37000, 20, interval=INTERVAL)
        iperf = c.iperf(4, bitrate=IPERF_RATE)
        r = iperf.result()
        report = stream.stop()
        on = [i for i, objs in c.iperf_servers().items() if len(objs) > before.get(i, 0)]
        pmtu = c.topo.client(1).run("ip", "route", "get", VIP).stdout.strip().replace("\n", " ")
        stats = c.stats(1)
        lines = [f"[dataplane] mtu setting {'set to 1500' if self.mtu_setting else 'not known to this build'}",
                 f"iperf3: {'completed' if r['completed'] else 'FAILED: ' + str(r['error'])}, "
                 f"{r['received'] / 1e6:.1f} MB received, {r['mbps']} Mbit/s, retransmits {r['retransmits']}, "
                 f"served by {['b%d' % i for i in on]} (reference: b{want})",
                 f"client's route to the VIP: {pmtu}",
                 f"balancer drops: { {k: v for k, v in stats['drops'].items() if v} }",
                 f"stream: resets {sum(1 for x in report['conns'] if x['error'])}, longest stall "
                 f"{max(x['max_gap'] for x in report['conns']):.3f} s"]
        print("\n  gue through a 1500-byte backend path:", file=sys.stderr)
        for line in lines:
            print(f"      {line}", file=sys.stderr)
        self.assertTrue(r["completed"] and r["received"] > 0, f"the bulk transfer completes and moves data: {r}")
        self.assertEqual(on, [want], "served where the reference says")
        self.assertFalse([x for x in report["conns"] if x["error"]], "no long-lived connection broke")


if __name__ == "__main__":
    e2e.main(sys.argv, tools=("wrk", "iperf3", "nft"), agent=True)
