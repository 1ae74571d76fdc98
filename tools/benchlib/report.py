"""Human-readable tables of a tools/bench result (the same data --json prints)."""


def flows_label(n):
    if n >= 1000000 and n % 1000000 == 0:
        return "%dM" % (n // 1000000)
    if n >= 1000 and n % 1000 == 0:
        return "%dk" % (n // 1000)
    return str(n)


def describe(c):
    fam = {"v4": "IPv4 TCP 64 B", "v4udp": "IPv4 UDP 80 B", "v6": "IPv6 UDP 78 B"}[c["family"]]
    if c.get("quic"):
        fam = "QUIC short header (%s CIDs), %s" % (c["quic"], fam)
    table = "conn table 2^%d" % (c["conn_table"].bit_length() - 1) if c.get("conn_table") else ""
    if c.get("traffic") == "flood":
        return "SYN flood, every packet a new flow (%s), %s, %s" % (flows_label(c["flood"]), table, c["method"])
    if c.get("traffic") == "mixed":
        return "half SYN flood, half %s established flows, %s, %s" % (flows_label(c["established"]), table,
                                                                     c["method"])
    flows = flows_label(c["flows"])
    if c.get("flows_measured", c["flows"]) != c["flows"]:
        flows += " (%s measured)" % flows_label(c["flows_measured"])
    return "%s, %s flows, conn %s, %s, %d backends%s" % (
        fam, flows, "on" if c["conn"] else "off", c["method"], c["backends"],
        ", backend 1 disabled" if c["primary_down"] else "")


def _f(v, fmt="%.2f"):
    return fmt % v if v is not None else "-"


def _table(headers, rows):
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h)) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def text(r):
    out = []
    m = r["machine"]
    out.append("%s" % r["command"])
    out.append("machine: %s CPUs, %s, TSC %.3f GHz, kernel %s, DPDK %s, %s; load %s -> %s" % (
        m["nproc"], m["cpu"], m.get("tsc_hz", 0) / 1e9, m["kernel"], m["dpdk"], m["date"],
        "/".join("%.2f" % x for x in m["loadavg_start"]), "/".join("%.2f" % x for x in m.get("loadavg_end", []))))
    s = r["settings"]
    if "runs" in s:
        out.append("runs %d, warm-up %.0f s, window %.0f s, lcores main %d worker %d%s; logs %s" % (
            s["runs"], s["warmup_s"], s["window_s"], s["lcores"]["main"], s["lcores"]["worker"],
            ", worker SCHED_FIFO" if s["rt"] else "", s["logs"]))
    for n in r.get("notes", []):
        out.append("note: " + n)
    if r.get("cases"):
        out.append("")
        out.append("Mpps per worker core: packets forwarded per second the worker thread was on a CPU (median of "
                   "runs, min-max); cycles/packet = TSC Hz / that rate; core = share of wall time the worker got; "
                   "ratios are against testpmd on the same capture.")
        rows = []
        for c in r["cases"]:
            rows.append([c["name"], describe(c), _f(c.get("mpps")),
                         "%s-%s" % (_f(c.get("mpps_min")), _f(c.get("mpps_max"))),
                         _f(c.get("cycles_per_packet"), "%.0f"), _f(c.get("mpps_wall")), _f(c.get("core_share")),
                         _f(c.get("ratio_io")), _f(c.get("ratio_macswap")), _f(c.get("ratio_5tswap")),
                         _f(c.get("conn_hit_ratio")), _f(c.get("failover_ratio"), "%.3f")])
        out.append(_table(["case", "traffic and config", "Mpps", "min-max", "cyc/pkt", "wall Mpps", "core",
                           "/io", "/macswap", "/5tswap", "conn hit", "failover"], rows))
        floods = [c for c in r["cases"] if c.get("flood_summary")]
        if floods:
            out.append("")
            out.append("new-flow floods: established flows that kept their pin after a backend joined their pool "
                       "(from the packets sent to it; min over runs), established packets sent to it, evictions, "
                       "live table entries, daemon memory at the end of the window and its growth during it:")
            rows = []
            for c in floods:
                f = c["flood_summary"]
                pct = lambda v, fmt="%.2f%%": fmt % (v * 100) if v is not None else "-"
                mib = lambda v: "%.0f" % (v / 1024) if v is not None else "-"
                rows.append([c["name"], _f(c.get("mpps")), _f(c.get("ratio_5tswap")), _f(c.get("conn_hit_ratio")),
                             flows_label(f["established"]) if f.get("established") else "-",
                             pct(f.get("kept")), pct(f.get("kept_min")), pct(f.get("moved_packet_share"), "%.3f%%"),
                             _f(c.get("conn_evictions_per_s") and c["conn_evictions_per_s"] / 1e6, "%.2f"),
                             _f(c.get("conn_evictions_confirmed_per_s"), "%.0f"),
                             "%s/2^%d" % (_f(f.get("conn_table_entries"), "%.0f"), f["conn_table_size"].bit_length() - 1),
                             mib(f.get("rss_kib")), "%+.1f" % (f["rss_growth_kib"] / 1024)
                             if f.get("rss_growth_kib") is not None else "-", mib(f.get("hugetlb_kib"))])
            out.append(_table(["case", "Mpps", "/5tswap", "conn hit", "established", "pins kept", "min",
                               "moved pkts", "evict M/s", "evict confirmed/s", "entries", "RSS MiB",
                               "RSS growth", "hugepages MiB"], rows))
        quic = r.get("quic_cost")
        if quic:
            out.append("")
            out.append("QUIC CID decode: cycles per packet of each QUIC case less those of its plain UDP case (the "
                       "same IPv4 UDP frames, flows, pool and connection-table setting without QUIC-LB) in the same "
                       "round, median and range over rounds; routed = share of packets sent by their CID:")
            rows = []
            for q in quic:
                c = next(x for x in r["cases"] if x["name"] == q["case"])
                routed = (c.get("quic_results") or {}).get("cid_routed")
                rows.append([q["case"], _f(c.get("mpps")), _f(c.get("cycles_per_packet"), "%.0f"),
                             _f(q["cycles_median"], "%+.0f"), "%s..%s" % (_f(q["cycles_min"], "%+.0f"),
                                                                          _f(q["cycles_max"], "%+.0f")),
                             _f(q["ns_median"], "%+.1f"), _f(routed, "%.3f")])
            out.append(_table(["case", "Mpps", "cyc/pkt", "decode cyc", "range", "decode ns", "routed"], rows))
    if r.get("cases") and any(b[m].get("mpps") for b in r["baselines"] for m in ("io", "macswap", "5tswap")):
        out.append("")
        out.append("baselines (dpdk-testpmd, 1 forwarding core, same devices and capture), Mpps per core:")
        rows = []
        for b in r["baselines"]:
            row = [b["capture"]]
            for mode in ("io", "macswap", "5tswap"):
                x = b[mode]
                row.append("%s (%s-%s)" % (_f(x.get("mpps")), _f(x.get("mpps_min")), _f(x.get("mpps_max"))))
                row.append(_f(r["machine"]["tsc_hz"] / (x["mpps"] * 1e6), "%.0f") if x.get("mpps") else "-")
            rows.append(row)
        out.append(_table(["capture", "io", "cyc", "macswap", "cyc", "5tswap", "cyc"], rows))
    if r.get("cases"):
        errs = [(c["name"], e) for c in r["cases"] for e in c.get("errors", [])]
        errs += [(b["capture"] + " " + mode, e) for b in r["baselines"] for mode in ("io", "macswap", "5tswap")
                 for e in b[mode].get("errors", [])]
        for name, e in errs:
            out.append("failed run: %s: %s" % (name, e))
    u = r.get("update_latency")
    if u:
        out.append("")
        if "error" in u:
            out.append("table-update latency: failed: " + u["error"])
        else:
            out.append("table-update latency, %d backends, 2^%d buckets, under traffic (daemon's own figures, "
                       "understudyctl status -> last_update):" % (u["backends"], u["table_bits"]))
            for cause, what in (("api", "API request (understudyctl backend disable/enable)"),
                                ("probe", "health-probe verdict (tcp probe of a port the bench closes/reopens)")):
                x = u[cause]
                out.append("  cause: %s, %d changes" % (what, x["changes"]))
                rows = [("publish_s", "cause -> new table live"), ("first_packet_s", "cause -> first packet forwarded with it")]
                if "cli_s" in x:
                    rows.append(("cli_s", "understudyctl round trip"))
                for key, label in rows:
                    v = x[key]
                    out.append("    %-42s median %8.3f ms  (%.3f-%.3f)" % (label, v["median"] * 1e3, v["min"] * 1e3, v["max"] * 1e3))
                out.append("    %-42s median %8.0f" % ("buckets changed", x["buckets_changed"]["median"]))
            out.append("  %-44s %8.1f s" % ("daemon start-up to forwarding", u["startup_s"]))
    mi = r.get("micro")
    if mi:
        out.append("")
        if "error" in mi:
            out.append("micro-benchmarks: failed: " + mi["error"])
        else:
            fast = [b for b in mi["benchmarks"] if "ns_per_packet" in b or ("error" in b and "table" not in b["name"])]
            slow = [b for b in mi["benchmarks"] if b not in fast]
            out.append("micro-benchmarks, per packet in bursts of 32 (CPU time):")
            rows = [[b["name"], _f(b.get("ns_per_packet"), "%.1f"), _f(b.get("cycles_per_packet"), "%.0f"),
                     " ".join("%s=%.3f" % (k, b[k]) for k in ("hit_ratio", "conn_hit_ratio", "failover_ratio") if k in b)
                     or b.get("error", "")] for b in fast]
            out.append(_table(["benchmark", "ns/pkt", "cycles", ""], rows))
            out.append("")
            out.append("table builder (wall time):")
            rows = [[b["name"], _f(b.get("real_s") and b["real_s"] * 1e3, "%.3f"),
                     _f(b.get("memory_bytes") and b["memory_bytes"] / 2**20, "%.1f"),
                     _f(b.get("buckets_changed"), "%.0f"), b.get("error", "")] for b in slow]
            out.append(_table(["benchmark", "ms", "MiB", "buckets changed", ""], rows))
    p = r.get("profile")
    if p:
        out.append("")
        if "error" in p:
            out.append("profile: failed: " + p["error"])
        else:
            out.append("profile of the worker thread, %s (perf cpu-clock; %s):" % (p["case"], p["perf_data"]))
            for s in p["symbols"][:15]:
                out.append("  %5.1f%%  %-28s %s" % (s["share"] * 100, s["dso"], s["symbol"]))
            if p["process_burst_hot"]:
                out.append("  hottest instructions of process_burst (share of the function):")
                for h in p["process_burst_hot"]:
                    out.append("  %5.1f%%  %s" % (h["share_of_function"] * 100, h["instruction"]))
    out.append("")
    out.append("elapsed %.0f s%s" % (r.get("elapsed_s", 0), "; saved " + r["saved"] if r.get("saved") else ""))
    return "\n".join(out)
