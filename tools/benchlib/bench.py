"""tools/bench: the real understudy data plane on one worker lcore against dpdk-testpmd on the same devices
(io, macswap, 5tswap), over captures from gen_pcap.py; micro-benchmarks; the time a table update takes to
reach the workers. See docs/performance.md for what the figures mean and the latest results."""
import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time

import daemon
import gen_pcap
import micro
import report
import testpmd
from procs import BenchError, TimeLimit, install_cleanup, log, machine, reserve_hugepages, stop_all, tsc_hz

# net_pcap's infinite_rx copies the whole capture into the RX queue's mempool at start, so every daemon gets
# `[dataplane] mbufs` = packets + MBUF_MARGIN.
MIN_PACKETS = 8000    # captures hold at least this many packets, whatever the number of flows
MBUF_BYTES = 2432     # one mbuf with its 2,176-byte buffer and mempool headers
MBUF_MARGIN = 16384   # packets in flight and per-lcore caches, on top of the capture's copies

HEAD = {"family": "v4", "flows": 1000000, "conn": True, "method": "gue", "backends": 16, "primary_down": False,
        "traffic": "steady", "quic": ""}

# New-flow floods (gen_pcap.py --traffic): every flood packet a TCP SYN of a new flow from a random source. The
# connection table is 2^18 entries (65,536 sets) so that a capture of 10^6 flows is 15 new flows per set
# each time it loops and no flood flow finds its entry of the loop before (net_pcap replays the capture).
# mixed: ESTABLISHED flows to a second VIP, confirmed by their handshake first, then flood and established
# packets in turn; after the warm-up a backend of weight 65,535 joins the established flows' pool, so that a
# flow that loses its pin goes to it (measured from the per-backend counters).
FLOOD_TABLE = 1 << 18
FLOOD_PACKETS = 1000000
ADDED_WEIGHT = 65535


def _case(name, **changes):
    c = dict(HEAD, **changes)
    c["name"] = name
    return c


# The headline case, then one axis at a time around it.
CASES = [
    _case("headline"),
    _case("flows-1", flows=1),
    _case("flows-10k", flows=10000),
    _case("conn-off", conn=False),
    _case("ipip", method="ipip"),
    _case("l2dsr", method="l2dsr"),
    _case("backends-256", backends=256),
    _case("backends-4096", backends=4096),
    _case("primary-down", primary_down=True),
    _case("ipv6-udp", family="v6"),
    _case("ipv6-udp-flows-10k", family="v6", flows=10000),
    _case("flood", traffic="flood", flows=FLOOD_PACKETS, flood=FLOOD_PACKETS, conn_table=FLOOD_TABLE),
    # 16,384 established flows: a quarter of a flow per set (table 16x the established flows)
    _case("mixed", traffic="mixed", flows=FLOOD_PACKETS // 2, established=FLOOD_TABLE // 16,
          flood=FLOOD_PACKETS // 2 - FLOOD_TABLE // 16, conn_table=FLOOD_TABLE),
    # 65,536 established flows: one per set, the sizing docs/configuration.md recommends (table 4x the flows)
    _case("mixed-full", traffic="mixed", flows=FLOOD_PACKETS // 2, established=FLOOD_TABLE // 4,
          flood=FLOOD_PACKETS // 2 - FLOOD_TABLE // 4, conn_table=FLOOD_TABLE),
    # QUIC-LB (docs/quic-lb.md): the same IPv4 UDP frames to a UDP VIP, plain, then as QUIC short-header
    # packets whose CIDs name the backends under each algorithm (the VIP then has that [[vip.quic_lb]]); the
    # difference in cycles per packet to udp4, run by run, is the CID decode's cost (quic_cost). Run only when named
    # (--cases quic, quic-conn-off): a full run keeps its cases and duration.
    _case("udp4", family="v4udp"),
    _case("quic-plaintext", family="v4udp", quic="plaintext"),
    _case("quic-single-pass", family="v4udp", quic="single-pass"),
    _case("quic-four-pass", family="v4udp", quic="four-pass"),
    # the same without the connection table: a CID-routed packet skips it (docs/quic-lb.md), plain UDP then too,
    # so the difference is the decode and the server ID lookup alone
    _case("udp4-conn-off", family="v4udp", conn=False),
    _case("quic-plaintext-conn-off", family="v4udp", quic="plaintext", conn=False),
    _case("quic-single-pass-conn-off", family="v4udp", quic="single-pass", conn=False),
    _case("quic-four-pass-conn-off", family="v4udp", quic="four-pass", conn=False),
]
# the plain UDP case each QUIC case is compared with, by its connection-table setting
QUIC_BASE = {True: "udp4", False: "udp4-conn-off"}
# --cases quic / quic-conn-off: the plain UDP case and the three QUIC ones, run side by side
GROUPS = {"quic": [QUIC_BASE[True], "quic-plaintext", "quic-single-pass", "quic-four-pass"],
          "quic-conn-off": [QUIC_BASE[False], "quic-plaintext-conn-off", "quic-single-pass-conn-off",
                            "quic-four-pass-conn-off"]}


def parse_args(argv):
    p = argparse.ArgumentParser(prog="tools/bench", description=__doc__)
    p.add_argument("--quick", action="store_true",
                   help="only the headline case and its testpmd baselines (under three minutes)")
    p.add_argument("--micro", action="store_true", help="only the micro-benchmarks (tests/bench)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--runs", type=int, default=3, help="runs per case and per baseline; figures are medians (3)")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of traffic before each window (2)")
    p.add_argument("--window", type=float, default=3.0, help="seconds each measurement window lasts (3)")
    p.add_argument("--cases", default="", help="comma-separated case names or groups (quic, quic-conn-off) (default: "
                   "all but the QUIC ones; --list shows them)")
    p.add_argument("--skip-baselines", action="store_true", help="no testpmd runs (ratios are then absent)")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    p.add_argument("--skip-micro", action="store_true", help="full run without the micro-benchmarks")
    p.add_argument("--skip-update", action="store_true", help="full run without the table-update latency")
    p.add_argument("--micro-filter", default="", help="regular expression passed as --benchmark_filter")
    p.add_argument("--profile", action="store_true", help="also profile the headline case with perf (one extra run)")
    p.add_argument("--rt", action="store_true",
                   help="run the measured worker thread SCHED_FIFO so that other work cannot preempt it")
    p.add_argument("--lcores", default="", help="MAIN,WORKER lcores (default: the first and the last CPU)")
    p.add_argument("--max-packets", type=int, default=0, help="cap on packets per capture (default: none)")
    p.add_argument("--build", default=os.environ.get("UNDERSTUDY_BUILD", "build"), help="meson build directory")
    p.add_argument("--no-build", action="store_true", help="do not run ninja first")
    p.add_argument("--timeout", type=float, default=0, help="overall limit in seconds (default 600 quick, 5400 full)")
    a = p.parse_args(argv)
    if a.runs < 1 or a.window < 1 or a.warmup < 0:
        p.error("--runs >= 1, --window >= 1 and --warmup >= 0")
    return a


def binaries(build, no_build):
    bins = {"understudy": os.path.join(build, "src/balancer/understudy"),
            "understudyctl": os.path.join(build, "src/cli/understudyctl"),
            "microbench": os.path.join(build, "tests/bench/understudy-microbench")}
    if not os.path.exists(os.path.join(build, "build.ninja")):
        raise BenchError("no meson build in %s: run tools/setup.sh first (or pass --build DIR)" % build)
    if not no_build:
        targets = ["src/balancer/understudy", "src/cli/understudyctl"]
        if "understudy-microbench" in open(os.path.join(build, "build.ninja")).read():
            targets.append("tests/bench/understudy-microbench")
        log("bench: ninja -C %s %s" % (build, " ".join(targets)))
        r = subprocess.run(["ninja", "-C", build] + targets, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            raise BenchError("build failed:\n" + r.stderr[-3000:])
    for k in ("understudy", "understudyctl"):
        if not os.path.exists(bins[k]):
            raise BenchError("%s is not built (%s)" % (k, bins[k]))
    if not os.path.exists(bins["microbench"]):
        bins["microbench"] = None
    return bins


def lcores_of(spec):
    if spec:
        m, w = (int(x) for x in spec.split(","))
        return m, w
    n = os.cpu_count() or 2
    if n < 2:
        raise BenchError("the benchmark needs two CPUs: one for the control thread, one for the worker")
    return 0, n - 1


def plan_captures(cases, cap, max_packets):
    """The capture each case runs over: packets = max(flows, MIN_PACKETS), capped; flows capped with it."""
    for c in cases:
        if c["traffic"] != "steady":
            plan_flood(c, cap, max_packets)
            continue
        packets = max(c["flows"], MIN_PACKETS)
        if cap:
            packets = min(packets, cap)
        if max_packets:
            packets = min(packets, max_packets)
        c["packets"] = packets
        c["flows_measured"] = min(c["flows"], packets)
        c["frame_bytes"] = gen_pcap.DEFAULT_SIZE[c["family"]]
        c["capture"] = "%s-%dflows-%dpkts-%dB%s" % (c["family"], c["flows_measured"], packets, c["frame_bytes"],
                                                    "-quic-%s-%db" % (c["quic"], c["backends"]) if c["quic"] else "")
    return cases


def plan_flood(c, cap, max_packets):
    """flood: one packet per flood flow; mixed: the established flows' SYNs and ACKs, then flood and
    established packets in turn. A cap shortens the flood."""
    est = c.get("established", 0)
    limit = min(x for x in (cap, max_packets, 1 << 62) if x)
    c["flood"] = max(1, min(c["flood"], limit - 2 * est if c["traffic"] == "mixed" else limit))
    c["packets"] = c["flood"] if c["traffic"] == "flood" else 2 * est + 2 * c["flood"]
    c["flows"] = c["flows_measured"] = c["flood"] + est
    c["frame_bytes"] = gen_pcap.DEFAULT_SIZE[c["family"]]
    c["capture"] = "%s-%s-%s%dflood-%dpkts-%dB" % (c["family"], c["traffic"], "%dest-" % est if est else "",
                                                  c["flood"], c["packets"], c["frame_bytes"])


def make_capture(c, pcapdir):
    path = os.path.join(pcapdir, c["capture"] + ".pcap")
    if not os.path.exists(path) and c["traffic"] != "steady":
        log("bench: generating %s" % path)
        gen_pcap.write(gen_pcap.parse_args(["--out", path, "--traffic", c["traffic"], "--flood", str(c["flood"]),
                                            "--established", str(c.get("established", 0))]))
    if not os.path.exists(path):
        log("bench: generating %s" % path)
        quic = ["--quic", c["quic"], "--backends", str(c["backends"])] if c["quic"] else []
        gen_pcap.write(gen_pcap.parse_args(["--out", path, "--family", c["family"], "--flows", str(c["flows_measured"]),
                                            "--packets", str(c["packets"])] + quic))
    return path


def summarize(runs):
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"mpps": None, "errors": [r["error"] for r in runs]}
    v = [r["mpps"] for r in ok]
    s = {"mpps": statistics.median(v), "mpps_min": min(v), "mpps_max": max(v),
         "mpps_wall": statistics.median(r["mpps_wall"] for r in ok),
         "core_share": statistics.median(r["core_share"] for r in ok), "runs_ok": len(ok)}
    if len(ok) < len(runs):
        s["errors"] = [r["error"] for r in runs if "error" in r]
    return s


def run_daemon_case(a, bins, c, pcap, rundir, tag, lcores, mbufs):
    d = daemon.Daemon(bins, c, pcap, rundir, tag, lcores, mbufs=mbufs, rt=a.rt)
    try:
        d.start(timeout=300)
        if c["traffic"] == "mixed":
            return measure_mixed(a, d, c)
        if c["traffic"] == "flood":
            time.sleep(a.warmup)
            before = d.memory()
            r = daemon.measure(d, 0, a.window)
            r["memory"] = {"before": before, "after": d.memory()}
            return r
        return daemon.measure(d, a.warmup, a.window)
    finally:
        d.stop()


def measure_mixed(a, d, c):
    """After the warm-up (the established flows' handshakes come first in every pass of the capture), a
    backend of weight 65,535 joins the established flows' pool: it takes nearly all of its buckets, so a flow
    that has lost its pin goes there, and every flow that keeps its pin stays where it was. Over the window:
    the rate, and the established packets sent to the new backend; over the last second: the share of the
    established flows that now go to it (each flow sends as many packets), divided by the new backend's
    bucket share (a lost pin lands elsewhere that much less often), is the share of flows whose pin was lost."""
    time.sleep(a.warmup)
    new_id = c["backends"] + 1
    gen = d.status()["generation"]
    d.ctl.call("backend.add", pool=daemon.EST_POOL, id=new_id, weight=ADDED_WEIGHT,
               address=daemon.backend_address(c["family"], new_id, 2))
    if _wait_update(d, gen, "api:") is None:
        raise BenchError("the added backend reached no packet within 10 s")
    share = next(b["share"] for b in d.ctl.call("backend.list", pool=daemon.EST_POOL)["backends"]
                 if b["id"] == new_id)
    mem_before = d.memory()  # after the pool change: what grows from here on is the flood's
    r = daemon.measure(d, 0, a.window, backends=True)
    last = daemon.measure(d, 0, 1.0, backends=True)
    new_key = "%s/%d" % (daemon.EST_POOL, new_id)

    def est(run):
        sent = {k: v for k, v in run["backend_packets"].items() if k.startswith(daemon.EST_POOL + "/")}
        return sum(sent.values()), sent.get(new_key, 0)

    total, moved = est(r)
    total_last, moved_last = est(last)
    moved_share_last = moved_last / total_last if total_last else None
    r["pins"] = {
        "established": c["established"], "added_backend_share": share,
        "established_packets": total, "moved_packets": moved,
        "moved_packet_share": moved / total if total else None,
        "moved_share_last_s": moved_share_last,
        "kept": max(0.0, 1 - moved_share_last / share) if moved_share_last is not None and share else None,
        "conn_evictions_confirmed": r["conn_evictions_confirmed"],
    }
    r["memory"] = {"before": mem_before, "after": d.memory()}
    del r["backend_packets"]
    return r


def quic_cost(cases, case_runs, hz):
    """Per QUIC case: its cycles per packet less those of the plain UDP case of its connection-table setting
    (same frames, flows and pool, no QUIC-LB), run by run (run i of both was taken in the same round), median
    and range over the rounds: what the CID decode and the CID's backend lookup cost a packet, less the
    connection-table work a CID-routed packet skips. Cases without their plain UDP case are left out."""
    def cycles(r):
        return hz * r["cpu_s"] / r["tx_packets"] if "error" not in r and r.get("tx_packets") else None
    out = []
    for c in cases:
        if not c["quic"] or QUIC_BASE[c["conn"]] not in case_runs:
            continue
        base = [cycles(r) for r in case_runs[QUIC_BASE[c["conn"]]]]
        d = [cycles(q) - b for q, b in zip(case_runs[c["name"]], base) if cycles(q) is not None and b is not None]
        if d:
            out.append({"case": c["name"], "algorithm": c["quic"], "rounds": len(d),
                        "cycles_median": statistics.median(d), "cycles_min": min(d), "cycles_max": max(d),
                        "ns_median": statistics.median(d) / hz * 1e9, "base": QUIC_BASE[c["conn"]],
                        "base_cycles_median": statistics.median(b for b in base if b is not None)})
    return out


def run_testpmd(a, mode, c, pcap, rundir, tag, lcores):
    t = testpmd.Testpmd(mode, pcap, c["packets"], rundir, tag, lcores, rt=a.rt)
    try:
        t.start(timeout=120)
        return t.measure(a.warmup, a.window)
    finally:
        t.stop()


def flood_summary(c, ok):
    """Medians over the runs of a flood or mixed case: pins kept, memory, table occupancy."""
    def med(get):
        vals = [v for v in (get(r) for r in ok) if v is not None]
        return statistics.median(vals) if vals else None
    def mem(r):
        return r["memory"]["after"]
    s = {"conn_table_size": c["conn_table"], "conn_table_bytes": c["conn_table"] * 16,
         "conn_table_entries": med(lambda r: mem(r)["conn_table_entries"]),
         "rss_kib": med(lambda r: mem(r)["rss_kib"]), "hugetlb_kib": med(lambda r: mem(r)["hugetlb_kib"])}
    s["rss_growth_kib"] = med(lambda r: r["memory"]["after"]["rss_kib"] - r["memory"]["before"]["rss_kib"])
    if c["traffic"] == "mixed":
        s["established"] = c["established"]
        for k in ("kept", "moved_packet_share", "moved_share_last_s", "added_backend_share"):
            s[k] = med(lambda r: r["pins"][k])
        s["kept_min"] = min((r["pins"]["kept"] for r in ok if r["pins"]["kept"] is not None), default=None)
        s["conn_evictions_confirmed"] = med(lambda r: r["pins"]["conn_evictions_confirmed"])
    return s


def _wait_update(d, gen, cause_prefix, cause_has="", timeout=10.0):
    """The daemon's record of the first table update after generation gen whose cause starts with
    cause_prefix (and contains cause_has), once a packet has been forwarded with it; None on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lu = d.status()["last_update"]
        if (lu["generation"] > gen and lu["cause"].startswith(cause_prefix) and cause_has in lu["cause"]
                and lu.get("first_packet_seconds") is not None):
            return lu
        time.sleep(0.01)
    return None


def _probed_up(d, bid, want, timeout=10.0):
    """Waits until the daemon's health view of backend bid is want (True: up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for h in d.ctl.call("health").get("health", []):
            if h.get("id") == bid and h.get("up") == want:
                return True
        time.sleep(0.02)
    return False


def _stats(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def update_latency(a, bins, c, pcap, rundir, lcores, mbufs, changes=10):
    """How long one change among 1,000 backends (2^20 buckets) takes to reach the workers, under traffic, as
    the daemon reports it (understudyctl status: last_update.publish_seconds and first_packet_seconds), for
    two causes: the API (understudyctl backend disable/enable: the clock starts when the request is handled)
    and a real health-probe verdict (backend 1000 is 127.0.0.1, probed over TCP every 50 ms; the bench
    closes and reopens the port it probes: the clock starts at the deciding probe result)."""
    case = dict(c, backends=1000, name="update-latency")
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.listen(64)
    d = daemon.Daemon(bins, case, pcap, rundir, "update", lcores, mbufs=mbufs, rt=a.rt, probed_port=port)
    api, probe = [], []
    try:
        t0 = time.monotonic()
        d.start(timeout=600)
        startup = time.monotonic() - t0
        time.sleep(a.warmup)
        for k in range(changes):
            bid = 1 + (k * 397) % 999
            for action in ("disable", "enable"):
                gen = d.status()["generation"]
                rc, text, took = d.ctl_cmd("backend", action, "--pool", daemon.POOL, "--id", str(bid))
                if rc != 0:
                    raise BenchError("understudyctl backend %s: %s" % (action, text.strip()))
                lu = _wait_update(d, gen, "api:")
                if lu is None:
                    raise BenchError("the API change reached no packet within 10 s")
                api.append({"action": action, "id": bid, "publish_s": lu["publish_seconds"],
                            "first_packet_s": lu["first_packet_seconds"], "buckets_changed": lu["buckets_changed"],
                            "cli_s": took})
                time.sleep(0.2)
        # A probe that times out while the control thread is busy is a verdict too: before each change,
        # wait until the daemon sees the state the bench expects, and keep only the verdicts it caused.
        if not _probed_up(d, 1000, True):
            raise BenchError("backend 1000 (127.0.0.1:%d) never came up" % port)
        for k in range(changes):
            for up in (False, True):
                gen = d.status()["generation"]
                if up:
                    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    listener.bind(("127.0.0.1", port))
                    listener.listen(64)
                else:
                    listener.close()
                lu = _wait_update(d, gen, "health:", " up" if up else " down")
                if lu is not None:
                    probe.append({"up": up, "publish_s": lu["publish_seconds"],
                                  "first_packet_s": lu["first_packet_seconds"], "buckets_changed": lu["buckets_changed"]})
                if not _probed_up(d, 1000, up):
                    raise BenchError("backend 1000 did not go %s" % ("up" if up else "down"))
                time.sleep(0.2)
        if not probe:
            raise BenchError("no probe verdict was recorded")
        after = daemon.measure(d, 0, 1)
    finally:
        listener.close()
        d.stop()

    def summary(samples, keys):
        return {k: _stats([x[k] for x in samples]) for k in keys} | {"changes": len(samples), "samples": samples}
    return {"backends": 1000, "table_bits": 20, "startup_s": startup,
            "api": summary(api, ("publish_s", "first_packet_s", "buckets_changed", "cli_s")),
            "probe": summary(probe, ("publish_s", "first_packet_s", "buckets_changed")),
            "drops_after": after["drops"]}


def profile(a, bins, c, pcap, rundir, lcores, mbufs):
    """perf (cpu-clock sampling) on the worker's CPU for one window of the case: the worker thread's top
    symbols, and the hottest instructions of process_burst with their source lines."""
    d = daemon.Daemon(bins, c, pcap, rundir, "profile", lcores, mbufs=mbufs, rt=a.rt)
    data = os.path.join(rundir, "perf.data")
    comm = "rte-worker-%d" % lcores[1]
    try:
        d.start(timeout=300)
        time.sleep(a.warmup)
        r = subprocess.run(["perf", "record", "-e", "cpu-clock", "-F", "4999", "-C", str(lcores[1]), "-o", data,
                            "--", "sleep", str(a.window)], capture_output=True, text=True, timeout=a.window + 60)
        if r.returncode != 0:
            raise BenchError("perf record failed: " + r.stderr[-500:])
    finally:
        d.stop()
    rep = subprocess.run(["perf", "report", "-i", data, "--comm", comm, "--sort", "dso,sym", "--stdio", "-g", "none",
                          "--no-children"], capture_output=True, text=True, timeout=300).stdout
    rows = []
    for line in rep.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[.\]\s+(.*)$", line)
        if m:
            rows.append((float(m.group(1)), m.group(2), m.group(3).strip()))
    total = sum(r[0] for r in rows) or 1.0
    symbols = [{"share": r[0] / total, "dso": r[1], "symbol": r[2]} for r in rows if r[0] / total >= 0.005]
    ann = subprocess.run(["perf", "annotate", "-i", data, "--stdio", "-l", "-s", "understudy::dp::process_burst"],
                         capture_output=True, text=True, timeout=300).stdout
    hot = []
    for line in ann.splitlines():
        m = re.match(r"\s*([\d.]+)\s+:\s+([0-9a-f]+):\s+(.*)$", line)
        if m and float(m.group(1)) >= 2.0:
            hot.append({"share_of_function": float(m.group(1)) / 100, "address": m.group(2),
                        "instruction": re.sub(r"\s+", " ", m.group(3)).strip()})
    hot.sort(key=lambda h: -h["share_of_function"])
    return {"case": c["name"], "perf_data": data, "symbols": symbols[:25], "process_burst_hot": hot[:10]}


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    if a.list:
        for c in CASES:
            print("%-20s %s" % (c["name"], report.describe(c)))
        return 0
    if os.geteuid() != 0:
        log("tools/bench: run as root (DPDK, hugepages)")
        return 1
    timeout = a.timeout or (600 if a.quick else 5400)
    install_cleanup(timeout)
    command = "tools/bench " + " ".join(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    result = {"command": command.strip(), "machine": machine(), "settings": {}, "cases": [], "baselines": [],
              "notes": []}
    try:
        bins = binaries(a.build, a.no_build)
        lcores = lcores_of(a.lcores)
        workdir = os.path.join(a.build, "bench")
        pcapdir = os.path.join(workdir, "pcap")
        rundir = os.path.join(workdir, time.strftime("run-%Y%m%d-%H%M%S"))
        os.makedirs(pcapdir, exist_ok=True)
        os.makedirs(rundir, exist_ok=True)
        hz, hz_source = tsc_hz(bins["microbench"])
        result["machine"]["tsc_hz"] = hz
        result["machine"]["tsc_hz_source"] = hz_source
        result["settings"] = {"runs": a.runs, "warmup_s": a.warmup, "window_s": a.window, "rt": a.rt,
                              "lcores": {"main": lcores[0], "worker": lcores[1]}, "logs": rundir}

        if a.micro:
            if not bins["microbench"]:
                raise BenchError("understudy-microbench is not built (libbenchmark-dev missing? tools/setup.sh)")
            result["micro"] = micro.run(bins["microbench"], lcores[1], rundir, hz, a.micro_filter)
            return finish(a, result, started)

        named_only = {n for g in GROUPS.values() for n in g}
        cases = CASES[:1] if a.quick else [c for c in CASES if c["name"] not in named_only]
        if a.cases:
            wanted = [x for w in a.cases.split(",") if w and w != "none" for x in GROUPS.get(w, [w])]
            unknown = [w for w in wanted if w not in {c["name"] for c in CASES}]
            if unknown:
                raise BenchError("unknown case(s) %s; --list shows them" % ",".join(unknown))
            cases = [c for c in CASES if c["name"] in wanted]
        cases = [dict(c) for c in cases]
        head = dict(CASES[0])  # the traffic of the update-latency and profile runs

        plan_captures(cases + [head], None, a.max_packets)
        largest = max(c["packets"] for c in cases + [head])
        pages = int((largest + MBUF_MARGIN) * MBUF_BYTES / (2 << 20)) + 160  # + connection table, rings, EAL
        result["notes"].append(reserve_hugepages(pages, 2048 if pages > 512 else 0))
        for c in cases:
            c["pcap"] = make_capture(c, pcapdir)
        if not a.quick and (not a.skip_update or a.profile):
            head["pcap"] = make_capture(head, pcapdir)

        captures = []
        for c in cases:
            if c["capture"] not in [x["capture"] for x in captures]:
                captures.append(c)
        base_runs = {(x["capture"], m): [] for x in captures for m in testpmd.MODES}
        case_runs = {c["name"]: [] for c in cases}
        # Round-robin: every run of every case and baseline is taken close in time to the others of its
        # round, so load that comes and goes on the machine spreads over all of them.
        for r in range(a.runs):
            for x in captures:
                for mode in ([] if a.skip_baselines else testpmd.MODES):
                    tag = "testpmd-%s-%s-run%d" % (mode, x["capture"], r + 1)
                    log("bench: run %d/%d  testpmd %-8s %s" % (r + 1, a.runs, mode, x["capture"]))
                    try:
                        res = run_testpmd(a, mode, x, x["pcap"], rundir, tag, lcores)
                    except BenchError as e:
                        log("bench: " + str(e))
                        res = {"error": str(e).splitlines()[0]}
                    base_runs[(x["capture"], mode)].append(res)
                for c in [c for c in cases if c["capture"] == x["capture"]]:
                    tag = "understudy-%s-run%d" % (c["name"], r + 1)
                    log("bench: run %d/%d  understudy %s (%s)" % (r + 1, a.runs, c["name"], report.describe(c)))
                    mbufs = c["packets"] + MBUF_MARGIN
                    try:
                        res = run_daemon_case(a, bins, c, c["pcap"], rundir, tag, lcores, mbufs)
                    except BenchError as e:
                        log("bench: " + str(e))
                        res = {"error": str(e).splitlines()[0]}
                    case_runs[c["name"]].append(res)

        for x in captures:
            b = {"capture": x["capture"], "family": x["family"], "flows": x["flows_measured"], "packets": x["packets"]}
            for mode in testpmd.MODES:
                s = summarize(base_runs[(x["capture"], mode)])
                b[mode] = s
            b["runs"] = {m: base_runs[(x["capture"], m)] for m in testpmd.MODES}
            result["baselines"].append(b)
        for c in cases:
            s = summarize(case_runs[c["name"]])
            entry = {k: c[k] for k in ("name", "family", "frame_bytes", "flows", "flows_measured", "packets", "conn",
                                       "method", "backends", "primary_down", "capture", "traffic", "quic")}
            for k in ("flood", "established", "conn_table"):
                if k in c:
                    entry[k] = c[k]
            entry.update(s)
            ok = [r for r in case_runs[c["name"]] if "error" not in r]
            if s["mpps"]:
                entry["cycles_per_packet"] = hz / (s["mpps"] * 1e6)
                for key in ("conn_hit_ratio", "failover_ratio"):
                    vals = [r[key] for r in ok if r.get(key) is not None]
                    entry[key] = statistics.median(vals) if vals else None
                entry["conn_evictions_per_s"] = statistics.median(r["conn_evictions"] / r["wall_s"] for r in ok)
                entry["conn_evictions_confirmed_per_s"] = statistics.median(
                    r["conn_evictions_confirmed"] / r["wall_s"] for r in ok)
                if c["traffic"] != "steady":
                    entry["flood_summary"] = flood_summary(c, ok)
                entry["drops"] = {k: v for r in ok for k, v in r["drops"].items()}
            base = next(b for b in result["baselines"] if b["capture"] == c["capture"])
            for mode in testpmd.MODES:
                bm = base[mode].get("mpps")
                entry["baseline_%s_mpps" % mode] = bm
                entry["ratio_%s" % mode] = s["mpps"] / bm if s["mpps"] and bm else None
            if c["quic"] and ok:
                entry["quic_results"] = {k: statistics.median(r["quic"].get(k, 0) / r["tx_packets"] for r in ok)
                                         for k in ok[0].get("quic", {})}
            entry["runs"] = case_runs[c["name"]]
            result["cases"].append(entry)
        result["quic_cost"] = quic_cost(cases, case_runs, hz)

        if not a.quick:
            if not a.skip_update:
                log("bench: table-update latency: 1,000 backends, 2^20 buckets, backend disable/enable under traffic")
                try:
                    result["update_latency"] = update_latency(a, bins, head, head["pcap"], rundir, lcores,
                                                              head["packets"] + MBUF_MARGIN)
                except BenchError as e:
                    log("bench: " + str(e))
                    result["update_latency"] = {"error": str(e).splitlines()[0]}
            if not a.skip_micro:
                if bins["microbench"]:
                    try:
                        result["micro"] = micro.run(bins["microbench"], lcores[1], rundir, hz, a.micro_filter)
                    except BenchError as e:
                        log("bench: " + str(e))
                        result["micro"] = {"error": str(e).splitlines()[0]}
                else:
                    result["notes"].append("understudy-microbench is not built: no micro-benchmarks")
        if a.profile:
            if "pcap" not in head:
                head["pcap"] = make_capture(head, pcapdir)
            log("bench: profiling %s with perf" % head["name"])
            try:
                result["profile"] = profile(a, bins, head, head["pcap"], rundir, lcores,
                                            head["packets"] + MBUF_MARGIN)
            except (BenchError, FileNotFoundError) as e:
                result["profile"] = {"error": str(e).splitlines()[0]}
        return finish(a, result, started)
    except TimeLimit:
        stop_all()
        log("tools/bench: past the %d s limit (--timeout): stopped every process it had started" % timeout)
        return 3
    except BenchError as e:
        stop_all()
        log("tools/bench: " + str(e))
        return 1


def finish(a, result, started):
    result["machine"]["loadavg_end"] = list(os.getloadavg())
    result["elapsed_s"] = time.monotonic() - started
    paths = [os.path.join(a.build, "bench", "last.json")]
    if result["settings"].get("logs"):
        paths.append(os.path.join(result["settings"]["logs"], "result.json"))
    for path in paths:
        try:
            with open(path, "w") as f:
                json.dump(result, f, indent=1)
            result["saved"] = path
        except OSError:
            pass
    if a.json:
        print(json.dumps(result, indent=1))
    else:
        print(report.text(result))
    failed = [c["name"] for c in result["cases"] if not c.get("mpps")]
    if failed:
        log("tools/bench: no figure for %s (see the logs in %s)" % (", ".join(failed), result["settings"].get("logs")))
        return 1
    return 0
