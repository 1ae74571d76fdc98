"""Processes the benchmark starts (daemon, testpmd, perf), and the machine facts it reads: every child runs in
its own session and is ended by its process-group id on exit, on a signal or on the overall time limit;
worker threads' CPU time comes from /proc/PID/task/TID/schedstat (nanoseconds on the CPU)."""
import atexit
import os
import signal
import subprocess
import sys
import time

_children = []


class BenchError(Exception):
    """A run that could not be measured; the message says why and where the log is."""


class TimeLimit(BaseException):
    """The whole invocation ran past --timeout."""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def spawn(argv, logfile, pipe_stdout=False, stdin=None):
    """Starts argv in a new session; stderr (and stdout unless piped back to us) go to logfile."""
    logf = open(logfile, "ab")
    p = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE if pipe_stdout else logf, stderr=logf,
                         start_new_session=True)
    logf.close()
    _children.append(p)
    return p


def stop(p, sig=signal.SIGTERM, grace=15.0):
    """Ends p's process group: sig, then SIGKILL after grace seconds. Returns its exit status (or None)."""
    if p.poll() is None:
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=10)
    if p in _children:
        _children.remove(p)
    return p.returncode


def stop_all():
    for p in list(_children):
        try:
            stop(p, grace=5.0)
        except Exception as e:  # keep going: every child must be ended
            log("bench: could not stop process %d: %s" % (p.pid, e))


def _on_signal(signum, frame):
    stop_all()
    log("bench: %s: stopped every process it had started" % signal.Signals(signum).name)
    sys.exit(128 + signum)


def _on_alarm(signum, frame):
    raise TimeLimit()


def install_cleanup(timeout_s):
    """Children are ended at exit and on SIGINT/SIGTERM/SIGHUP; past timeout_s the run raises TimeLimit."""
    atexit.register(stop_all)
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _on_signal)
    signal.signal(signal.SIGALRM, _on_alarm)
    if timeout_s > 0:
        signal.alarm(int(timeout_s))


def tail(path, lines=15):
    try:
        with open(path, "rb") as f:
            return b"".join(f.read().splitlines(keepends=True)[-lines:]).decode(errors="replace")
    except OSError:
        return ""


def worker_thread(pid, lcore, timeout=10.0):
    """The TID of EAL's thread for lcore (named rte-worker-N, or lcore-worker-N in other DPDK releases)."""
    names = {"rte-worker-%d" % lcore, "lcore-worker-%d" % lcore}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            for tid in os.listdir("/proc/%d/task" % pid):
                try:
                    with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                        if f.read().strip() in names:
                            return int(tid)
                except OSError:
                    continue
        except OSError:
            return None
        time.sleep(0.05)
    return None


def thread_cpu_ns(pid, tid):
    """(time on the CPU, time waiting for it) of a thread so far, in nanoseconds."""
    with open("/proc/%d/task/%d/schedstat" % (pid, tid)) as f:
        run, wait, _ = f.read().split()
    return int(run), int(wait)


def make_realtime(tid):
    """SCHED_FIFO 1 for the measured thread, so that other work on its CPU cannot preempt it (the kernel's
    RT throttling still gives others 5% of the CPU)."""
    subprocess.run(["chrt", "-f", "-p", "1", str(tid)], check=True, stdout=subprocess.DEVNULL)


def hugepages():
    info = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":", 1)
            if k.startswith("HugePages_"):
                info[k] = int(v.split()[0])
    return info


def reserve_hugepages(pages_needed, minimum):
    """Raises nr_hugepages so that pages_needed are free (at least `minimum` in total). Never lowers it and
    restores nothing afterwards. Returns a note for the report."""
    h = hugepages()
    total, free = h.get("HugePages_Total", 0), h.get("HugePages_Free", 0)
    want = max(total, minimum, total - free + pages_needed)
    note = "hugepages: %d total, %d free before the run" % (total, free)
    if want > total:
        with open("/proc/sys/vm/nr_hugepages", "w") as f:
            f.write(str(want))
        h = hugepages()
        note += "; raised nr_hugepages to %d (%d now, %d free): left reserved afterwards, not restored" % (
            want, h.get("HugePages_Total", 0), h.get("HugePages_Free", 0))
    if not os.path.ismount("/dev/hugepages"):
        os.makedirs("/dev/hugepages", exist_ok=True)
        subprocess.run(["mount", "-t", "hugetlbfs", "nodev", "/dev/hugepages"], check=True)
    free = hugepages().get("HugePages_Free", 0)
    if free < pages_needed:
        raise BenchError("only %d free 2 MiB hugepages, %d needed (other DPDK processes running? free memory?)"
                         % (free, pages_needed))
    return note


def machine():
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    dpdk = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "dpdk"], capture_output=True, text=True).stdout
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "kernel": os.uname().release,
        "dpdk": dpdk or "unknown",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "loadavg_start": list(os.getloadavg()),
    }


def tsc_hz(microbench):
    """rte_get_tsc_hz() as EAL measures it (through the micro-benchmark binary), else /proc/cpuinfo's MHz."""
    if microbench and os.path.exists(microbench):
        try:
            out = subprocess.run([microbench, "--tsc-hz"], capture_output=True, text=True, timeout=60).stdout.split()
            if out and out[-1].isdigit():
                return int(out[-1]), "rte_get_tsc_hz()"
        except subprocess.TimeoutExpired:
            pass
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("cpu MHz"):
                return int(float(line.split(":")[1]) * 1e6), "/proc/cpuinfo cpu MHz"
    raise BenchError("cannot tell the TSC frequency")
