"""The real understudy daemon over benchmark traffic: port "in" is net_pcap replaying a capture forever
(infinite_rx), forwarding out of port "out" (net_null, transmit only), one worker lcore; counters come from
the control socket ({"op": "stats"}, as `understudyctl stats --json` prints them)."""
import json
import os
import socket
import subprocess
import time

import gen_pcap
from procs import BenchError, log, make_realtime, spawn, stop, tail, thread_cpu_ns, worker_thread

SECRET = "000102030405060708090a0b0c0d0e0f"
POOL = "bench"
VIP = {"v4": ("192.0.2.10", "tcp"), "v4udp": ("192.0.2.10", "udp"), "v6": ("2001:db8::10", "udp")}
VIP_PORT = 80
GATEWAY_MAC = "02:00:00:00:00:fe"  # every backend's next hop: no neighbour resolution on the way


EST_POOL = "est"   # mixed cases: the established flows' pool and VIP (the flood goes to POOL's VIP)
EST_VIP = "192.0.2.11"


def backend_address(family, i, net=1):
    return "2001:db8:%x::%x" % (net + 1, i) if family == "v6" else "10.%d.%d.%d" % (net, i // 250, i % 250 + 1)


def conn_table_size(flows):
    """The sizing docs/configuration.md recommends: at least four times the flows a worker sees, and the default
    (2^20) at least."""
    size = 1 << 20
    while size < 4 * flows:
        size *= 2
    return size


def config_text(case, pcap, sock, lcores, mbufs=None, backends=None, probed_port=None):
    """The daemon config of a case: one pool, one VIP, health probes off, non-VIP traffic dropped. With
    probed_port, the last backend is 127.0.0.1 and is probed (tcp, every 100 ms, one result decides) on that
    port, so that opening and closing a listener there makes real probe verdicts."""
    n = backends or case["backends"]
    vip, proto = VIP[case["family"]]
    out = ['[cluster]', 'secret = "%s"' % SECRET, '[health]', 'kind = "none"',
           '[[pool]]', 'name = "%s"' % POOL, 'table_bits = %d' % case.get("table_bits", 20)]
    for i in range(1, n + 1):
        state = "disabled" if case.get("primary_down") and i == 1 else "enabled"
        probed = probed_port and i == n
        address = "127.0.0.1" if probed else backend_address(case["family"], i)
        out += ['[[pool.backend]]', 'id = %d' % i, 'address = "%s"' % address, 'state = "%s"' % state]
        if probed:
            out += ['  [pool.backend.health]', '  kind = "tcp"', '  port = %d' % probed_port, '  interval_ms = 100',
                    '  timeout_ms = 100', '  rise = 1', '  fall = 1']
    vips = [(vip, POOL)]
    if case.get("traffic") == "mixed":
        out += ['[[pool]]', 'name = "%s"' % EST_POOL, 'table_bits = %d' % case.get("table_bits", 20)]
        for i in range(1, n + 1):
            out += ['[[pool.backend]]', 'id = %d' % i, 'address = "%s"' % backend_address(case["family"], i, 2)]
        vips.append((EST_VIP, EST_POOL))
    for address, pool in vips:
        out += ['[[vip]]', 'address = "%s"' % address, 'port = %d' % VIP_PORT, 'protocol = "%s"' % proto,
                'pool = "%s"' % pool, 'method = "%s"' % case["method"],
                'conn_table = %s' % str(case["conn"]).lower()]
        if case.get("quic") and pool == POOL:
            sid_len, nonce_len, key = gen_pcap.QUIC_CONFIGS[case["quic"]]
            out += ['  [[vip.quic_lb]]', '  codepoint = 0', '  server_id_len = %d' % sid_len,
                    '  nonce_len = %d' % nonce_len]  # server IDs derived from the ids, as gen_pcap mints them
            if key:
                out.append('  key = "%s"' % key)
    eal = ["--in-memory", "--no-pci", "--no-telemetry", "-l", "%d,%d" % lcores, "--main-lcore", str(lcores[0]),
           "--log-level=lib.*:warning"]
    out += ['[dataplane]', 'eal_args = %s' % json.dumps(eal), 'workers = [%d]' % lcores[1], 'non_vip = "drop"',
            'source_v4 = "198.18.0.1"', 'source_v6 = "2001:db8:ffff::1"', 'gateway_mac = "%s"' % GATEWAY_MAC]
    if mbufs:
        out.append('mbufs = %d' % mbufs)
    if case["conn"]:
        out.append('conn_table_size = %d' % (case.get("conn_table") or
                                             conn_table_size(case.get("flows_measured", case["flows"]))))
    out += ['[[dataplane.port]]', 'name = "in"', 'devargs = "net_pcap0,rx_pcap=%s,infinite_rx=1"' % pcap,
            'tx_port = "out"',
            '[[dataplane.port]]', 'name = "out"', 'devargs = "net_null0"', 'rx_queues = 0',
            '[control]', 'socket = "%s"' % sock, 'metrics = ""']
    return "\n".join(out) + "\n"


class Control:
    """The daemon's control socket: one JSON object per line each way."""

    def __init__(self, path, timeout=30.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""

    def call(self, op, **fields):
        req = dict(fields, op=op)
        self.sock.sendall((json.dumps(req) + "\n").encode())
        while b"\n" not in self.buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise BenchError("the daemon closed its control socket")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        reply = json.loads(line)
        if not reply.get("ok", False):
            raise BenchError("control API %s: %s" % (op, reply.get("error")))
        return reply

    def close(self):
        self.sock.close()


class Daemon:
    """One daemon process for one run: start() waits until the worker forwards, stop() ends it."""

    def __init__(self, bins, case, pcap, rundir, tag, lcores, mbufs=None, backends=None, rt=False, probed_port=None):
        self.bins, self.case, self.lcores, self.rt = bins, case, lcores, rt
        self.conf = os.path.join(rundir, tag + ".toml")
        self.sock = os.path.join(rundir, tag + ".sock")
        self.log = os.path.join(rundir, tag + ".log")
        with open(self.conf, "w") as f:
            f.write(config_text(case, pcap, self.sock, lcores, mbufs, backends, probed_port))
        self.proc = None
        self.ctl = None
        self.tid = None

    def start(self, timeout):
        self.proc = spawn([self.bins["understudy"], "run", "--config", self.conf], self.log)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise BenchError("understudy exited with status %s during start-up; %s:\n%s" %
                                 (self.proc.returncode, self.log, tail(self.log)))
            if time.monotonic() > deadline:
                raise BenchError("understudy did not forward within %.0f s; %s:\n%s" % (timeout, self.log, tail(self.log)))
            if self.ctl is None and os.path.exists(self.sock):
                try:
                    self.ctl = Control(self.sock)
                except OSError:
                    self.ctl = None
            if self.ctl is not None and self.ctl.call("stats")["counters"]["tx_packets"] > 0:
                break
            time.sleep(0.1)
        self.tid = worker_thread(self.proc.pid, self.lcores[1])
        if self.tid is None:
            raise BenchError("cannot find the worker thread of lcore %d in process %d" % (self.lcores[1], self.proc.pid))
        if self.rt:
            make_realtime(self.tid)

    def sample(self):
        """Counters, the daemon's clock, and the worker thread's CPU time, as close together as possible."""
        s = self.ctl.call("stats")
        run_ns, wait_ns = thread_cpu_ns(self.proc.pid, self.tid)
        return {"stats": s, "time": s["time_s"], "cpu_ns": run_ns, "wait_ns": wait_ns}

    def status(self):
        return self.ctl.call("status")

    def memory(self):
        """The daemon's resident memory and hugepage memory (kB, /proc/PID/status), and the live entries of
        its connection tables (understudyctl stats: conn_table_entries)."""
        m = {}
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "HugetlbPages"):
                    m[k] = int(v.split()[0])
        return {"rss_kib": m.get("VmRSS"), "hugetlb_kib": m.get("HugetlbPages"),
                "conn_table_entries": self.ctl.call("stats").get("conn_table_entries")}

    def ctl_cmd(self, *args):
        """understudyctl against this daemon; returns (exit status, stdout, seconds it took)."""
        t0 = time.monotonic()
        r = subprocess.run([self.bins["understudyctl"], "--socket", self.sock] + list(args), capture_output=True,
                           text=True, timeout=60)
        return r.returncode, r.stdout + r.stderr, time.monotonic() - t0

    def stop(self):
        if self.ctl is not None:
            self.ctl.close()
            self.ctl = None
        if self.proc is not None:
            rc = stop(self.proc)
            self.proc = None
            return rc
        return None


def measure(d, warmup, window, backends=False):
    """One window on a running daemon: packets forwarded per second of wall clock and per second the worker
    thread was on a CPU, plus what the counters say about the run (drops, connection table, failovers)."""
    time.sleep(warmup)
    a = d.sample()
    time.sleep(window)
    b = d.sample()
    ca, cb = a["stats"]["counters"], b["stats"]["counters"]
    tx = cb["tx_packets"] - ca["tx_packets"]
    rx = cb["rx_packets"] - ca["rx_packets"]
    wall = b["time"] - a["time"]
    cpu = (b["cpu_ns"] - a["cpu_ns"]) / 1e9
    drops = {k: b["stats"]["drops"][k] - a["stats"]["drops"].get(k, 0) for k in b["stats"]["drops"]}
    hits = cb["conn_hits"] - ca["conn_hits"]
    misses = cb["conn_misses"] - ca["conn_misses"]
    r = {
        "tx_packets": tx, "rx_packets": rx, "wall_s": wall, "cpu_s": cpu,
        "wait_s": (b["wait_ns"] - a["wait_ns"]) / 1e9,
        "mpps": tx / cpu / 1e6 if cpu > 0 else 0.0,
        "mpps_wall": tx / wall / 1e6 if wall > 0 else 0.0,
        "core_share": cpu / wall if wall > 0 else 0.0,
        "drops": {k: v for k, v in drops.items() if v},
        "failover_ratio": (cb["failovers"] - ca["failovers"]) / tx if tx else 0.0,
        "conn_hit_ratio": hits / (hits + misses) if hits + misses else None,
        "conn_evictions": cb["conn_evictions"] - ca["conn_evictions"],
        "conn_evictions_confirmed": cb.get("conn_evictions_confirmed", 0) - ca.get("conn_evictions_confirmed", 0),
    }
    quic = [v["quic"] for v in b["stats"].get("vips", []) if "quic" in v]
    if quic:  # per-VIP QUIC results (cid_routed, primary_down, unroutable_*), summed over the VIPs
        before = [v["quic"] for v in a["stats"].get("vips", []) if "quic" in v]
        r["quic"] = {k: sum(q[k] for q in quic) - sum(q.get(k, 0) for q in before) for k in quic[0]}
    if backends:
        r["backend_packets"] = backend_deltas(a["stats"], b["stats"])
    if tx < rx * 0.999:
        log("bench: warning: %s forwarded %d of %d packets received (drops: %s)" % (d.conf, tx, rx, r["drops"]))
    return r


def backend_deltas(a, b):
    """Packets each backend was sent between two stats replies: {"pool/id": packets}."""
    before = {"%s/%d" % (x["pool"], x["id"]): x["packets"] for x in a.get("backends", [])}
    return {"%s/%d" % (x["pool"], x["id"]): x["packets"] - before.get("%s/%d" % (x["pool"], x["id"]), 0)
            for x in b.get("backends", [])}
