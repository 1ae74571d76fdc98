"""understudy-microbench (tests/bench): Google Benchmark JSON in, one flat record per benchmark out."""
import json
import os
import subprocess

from procs import BenchError, log, tail

_UNIT_S = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def run(binary, lcore, outdir, tsc_hz, filter_re="", min_time=0.3, timeout=1800):
    out = os.path.join(outdir, "micro.json")
    logf = os.path.join(outdir, "micro.log")
    argv = [binary, "--lcore", str(lcore), "--benchmark_out=" + out, "--benchmark_out_format=json",
            "--benchmark_min_time=%g" % min_time]
    if filter_re:
        argv.append("--benchmark_filter=" + filter_re)
    log("bench: micro-benchmarks: " + " ".join(argv))
    with open(logf, "wb") as f:
        r = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, timeout=timeout)
    if r.returncode != 0 or not os.path.exists(out):
        raise BenchError("understudy-microbench failed (status %d); %s:\n%s" % (r.returncode, logf, tail(logf)))
    with open(out) as f:
        data = json.load(f)
    results = []
    for b in data.get("benchmarks", []):
        if b.get("run_type", "iteration") != "iteration":
            continue
        rec = {"name": b["name"], "iterations": b.get("iterations")}
        if b.get("error_occurred"):
            rec["error"] = b.get("error_message", "error")
            results.append(rec)
            continue
        unit = _UNIT_S.get(b.get("time_unit", "ns"), 1e-9)
        rec["real_s"] = b["real_time"] * unit
        rec["cpu_s"] = b["cpu_time"] * unit
        if "per_pkt" in b:
            rec["ns_per_packet"] = b["per_pkt"] * 1e9
            rec["cycles_per_packet"] = b["per_pkt"] * tsc_hz
        for k in ("memory_bytes", "entries_bytes", "buckets_changed", "hit_ratio", "conn_hit_ratio", "failover_ratio"):
            if k in b:
                rec[k] = b[k]
        results.append(rec)
    return {"context": {k: data.get("context", {}).get(k) for k in ("library_build_type", "tsc_hz", "load_avg")},
            "benchmarks": results}
