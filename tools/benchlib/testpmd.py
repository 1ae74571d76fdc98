"""dpdk-testpmd over the same devices and capture as the daemon, as the baselines: one forwarding core,
--forward-mode io (no packet access), macswap (swaps the MAC addresses) or 5tswap (swaps MACs, IP addresses and
L4 ports: reads and writes the headers a load balancer touches). Counters come from --stats-period 1."""
import os
import re
import threading
import time

from procs import BenchError, make_realtime, spawn, stop, tail, thread_cpu_ns, worker_thread

MODES = ["io", "macswap", "5tswap"]
_PORT = re.compile(r"NIC statistics for port (\d+)")
_RX = re.compile(r"RX-packets:\s*(\d+)")
_TX = re.compile(r"TX-packets:\s*(\d+)")


class Testpmd:
    def __init__(self, mode, pcap, packets, rundir, tag, lcores, rt=False):
        self.mode, self.lcores, self.rt = mode, lcores, rt
        self.log = os.path.join(rundir, tag + ".log")
        # The capture's copies and every packet in flight come from testpmd's pool, as from the daemon's.
        mbufs = packets + 16384
        self.argv = [
            "dpdk-testpmd", "-l", "%d,%d" % lcores, "--main-lcore", str(lcores[0]), "--in-memory", "--no-pci",
            "--no-telemetry", "--log-level=lib.*:warning",
            "--vdev", "net_pcap0,rx_pcap=%s,infinite_rx=1" % pcap, "--vdev", "net_null0,no-rx=1", "--",
            "--nb-cores=1", "--forward-mode=%s" % mode, "--stats-period", "1", "--total-num-mbufs=%d" % mbufs,
            "--burst=32",
        ]
        self.samples = []  # (monotonic time, port 1 TX-packets, port 0 RX-packets, cpu ns, wait ns)
        self.proc = None
        self.tid = None
        self.error = None

    def _reader(self):
        port, rx0, tx1 = None, None, None
        with open(self.log, "ab") as logf:
            for raw in self.proc.stdout:
                logf.write(raw)
                line = raw.decode(errors="replace")
                m = _PORT.search(line)
                if m:
                    port = int(m.group(1))
                    continue
                m = _RX.search(line)
                if m and port == 0:
                    rx0 = int(m.group(1))
                m = _TX.search(line)
                if m and port == 1:
                    tx1 = int(m.group(1))
                    if self.tid is not None and rx0 is not None:
                        try:
                            run, wait = thread_cpu_ns(self.proc.pid, self.tid)
                        except OSError:
                            return
                        self.samples.append((time.monotonic(), tx1, rx0, run, wait))
                    port = None

    def start(self, timeout):
        # stdbuf: line-buffered output, so each statistics block arrives when it is printed.
        self.proc = spawn(["stdbuf", "-oL"] + self.argv, self.log, pipe_stdout=True)
        threading.Thread(target=self._reader, daemon=True).start()
        self.tid = worker_thread(self.proc.pid, self.lcores[1], timeout=timeout)
        if self.tid is None:
            self.stop()
            raise BenchError("testpmd (%s) did not start its forwarding lcore; %s:\n%s" % (self.mode, self.log, tail(self.log)))
        if self.rt:
            make_realtime(self.tid)
        deadline = time.monotonic() + timeout
        while not any(s[1] > 0 for s in self.samples):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise BenchError("testpmd (%s) did not forward; %s:\n%s" % (self.mode, self.log, tail(self.log)))
            time.sleep(0.1)

    def measure(self, warmup, window):
        """Between two of the samples testpmd prints once a second: the last one after warmup, and the first
        one at least window seconds later."""
        time.sleep(warmup)
        a = self.samples[-1]
        deadline = time.monotonic() + window + 15
        while True:
            if self.proc.poll() is not None:
                raise BenchError("testpmd (%s) exited; %s:\n%s" % (self.mode, self.log, tail(self.log)))
            b = self.samples[-1]
            if b[0] - a[0] >= window - 0.2:
                break
            if time.monotonic() > deadline:
                raise BenchError("testpmd (%s) printed too few statistics; %s" % (self.mode, self.log))
            time.sleep(0.05)
        tx, rx = b[1] - a[1], b[2] - a[2]
        wall, cpu = b[0] - a[0], (b[3] - a[3]) / 1e9
        return {"tx_packets": tx, "rx_packets": rx, "wall_s": wall, "cpu_s": cpu, "wait_s": (b[4] - a[4]) / 1e9,
                "mpps": tx / cpu / 1e6 if cpu > 0 else 0.0, "mpps_wall": tx / wall / 1e6 if wall > 0 else 0.0,
                "core_share": cpu / wall if wall > 0 else 0.0}

    def stop(self):
        if self.proc is not None:
            stop(self.proc, grace=10.0)
            self.proc = None
