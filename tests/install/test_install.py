#!/usr/bin/python3
"""The package, installed as an operator installs it: tools/package.sh builds it; its contents, conffiles and
Depends are checked against the binaries' own libraries; dpkg installs it into a fresh root (an edited config
survives a reinstall); systemd-analyze verifies its units; then each unit's ExecStart, read from the
installed unit file with its paths rewritten into the root, runs the installed binary with the unit's
capability bounding set and limits, NOTIFY_SOCKET pointing at a socket this test listens on and
WATCHDOG_USEC set: READY=1 only once the data plane forwards (the balancer on a net_pcap port, from the
installed example config) or the XDP program is attached (the agent, in a network namespace of its own),
WATCHDOG=1 within every interval, RELOADING=1 then READY=1 for each SIGHUP, STOPPING=1 and exit 0 on
SIGTERM; with stderr as the journal's stream, log lines carry their priority.

  test_install.py PACKAGE_SH OUTDIR [unittest args]

Needs root, 2 MiB hugepages, dpkg-deb, setpriv and prlimit; without them it fails, it never skips.
systemd-analyze comes from the package systemd (tools/setup.sh installs it).
"""
import json
import os
import re
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

SOURCE = os.environ.get("UNDERSTUDY_SOURCE_ROOT", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
PACKAGE_SH = sys.argv.pop(1) if len(sys.argv) > 1 else os.path.join(SOURCE, "tools", "package.sh")
OUT = os.path.abspath(sys.argv.pop(1) if len(sys.argv) > 1 else os.path.join(SOURCE, "build", "install-package"))
CONFIG = "/etc/understudy/understudy.toml"
UNITS = "/usr/lib/systemd/system"
PCAP_MAC = "02:70:63:61:70:00"    # a net_pcap port's own MAC
VIP = "192.0.2.10"                # the example config's IPv4 VIP (port 80, tcp)
WATCHDOG_USEC = 1_000_000
NS = f"usinst{os.getpid()}"

DEB = None
ROOT = None


def sh(*args, check=True, timeout=120, **kw):
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(args)}: exit {r.returncode}\n{r.stdout}{r.stderr}")
    return r


def dpkg_root(*args, **kw):
    return sh("dpkg", f"--root={ROOT}", f"--log={ROOT}/var/log/dpkg.log", "--force-depends",
              "--force-script-chrootless", *args, **kw)


def read(path):
    with open(path, errors="replace") as f:
        return f.read()


def setUpModule():
    global DEB, ROOT
    if os.geteuid() != 0:
        raise AssertionError("test_install.py installs into a root and runs DPDK: run it as root")
    with open("/proc/sys/vm/nr_hugepages") as f:
        if int(f.read()) < 256:
            raise AssertionError("fewer than 256 2 MiB hugepages reserved: run tools/setup.sh")
    for tool in ("dpkg-deb", "setpriv", "prlimit"):
        if not shutil.which(tool):
            raise AssertionError(f"{tool} not found")
    r = sh(PACKAGE_SH, OUT, timeout=3300)
    DEB = r.stdout.strip().splitlines()[-1]
    if not DEB.endswith(".deb") or not os.path.isfile(DEB):
        raise AssertionError(f"package.sh did not name a package:\n{r.stdout}{r.stderr}")
    # A fresh root: an empty dpkg database and nothing else.
    ROOT = tempfile.mkdtemp(prefix="us-install-root-")
    for d in ("var/lib/dpkg/info", "var/lib/dpkg/updates", "var/log"):
        os.makedirs(os.path.join(ROOT, d))
    open(os.path.join(ROOT, "var/lib/dpkg/status"), "w").close()
    dpkg_root("-i", DEB, stdin=subprocess.DEVNULL)


def tearDownModule():
    if ROOT:
        shutil.rmtree(ROOT, ignore_errors=True)


def unit(name):
    """The installed unit's [Service] settings: {key: [values]}."""
    settings = {}
    for line in read(ROOT + UNITS + "/" + name).splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def rooted(path):
    return ROOT + path if path.startswith("/") else path


def unit_command(name):
    """The unit's ExecStart, paths into the root, under the unit's capability bounding set, NoNewPrivileges
    and limits (setpriv, prlimit): what systemd would run, less the namespaces."""
    u = unit(name)
    argv = [rooted(a) for a in u["ExecStart"][0].split()]
    caps = ",".join("+" + c.lower().removeprefix("cap_") for c in u["CapabilityBoundingSet"][0].split())
    limits = []
    # Up to this process's hard limits: raising them needs CAP_SYS_RESOURCE, which a test sandbox may lack.
    for key, opt, res in (("LimitNOFILE", "--nofile", resource.RLIMIT_NOFILE),
                          ("LimitMEMLOCK", "--memlock", resource.RLIMIT_MEMLOCK)):
        want = resource.RLIM_INFINITY if u[key][0] == "infinity" else int(u[key][0])
        hard = resource.getrlimit(res)[1]
        v = hard if hard != resource.RLIM_INFINITY and (want == resource.RLIM_INFINITY or want > hard) else want
        v = "unlimited" if v == resource.RLIM_INFINITY else v
        limits.append(f"{opt}={v}:{v}")
    wrap = ["prlimit", *limits, "--", "setpriv", "--inh-caps=-all", f"--bounding-set=-all,{caps}"]
    if u.get("NoNewPrivileges") == ["yes"]:
        wrap.append("--no-new-privs")
    return wrap + argv


def installed_example():
    return read(ROOT + "/usr/share/understudy/examples/understudy.toml")


def adapted_config(tail):
    """The installed example's cluster, health, pools and VIPs (probes off: its backends do not exist here),
    then this test's own [dataplane], [control] and [agent]."""
    head = installed_example().split("\n[dataplane]")[0]
    head = re.sub(r'(?m)^(\s*kind = )"\w+"', r'\1"none"', head)
    return head + "\n" + tail


def tcp_syn(sport):
    """A TCP SYN from 198.18.0.1:sport to the VIP, port 80, to the net_pcap port's MAC."""
    tcp = struct.pack("!HHIIBBHHH", sport, 80, 1, 0, 5 << 4, 0x02, 65535, 0, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0,
                     socket.inet_aton("198.18.0.1"), socket.inet_aton(VIP))
    total = sum(struct.unpack("!10H", ip))
    while total > 0xffff:
        total = (total & 0xffff) + (total >> 16)
    ip = ip[:10] + struct.pack("!H", total ^ 0xffff) + ip[12:]
    return bytes.fromhex(PCAP_MAC.replace(":", "")) + bytes.fromhex("020000000001") + b"\x08\x00" + ip + tcp


def write_pcap(path, frames):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
        for frame in frames:
            f.write(struct.pack("<IIII", 0, 0, len(frame), len(frame)) + frame)


def api(path, op):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(json.dumps({"op": op}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data)


class Notifications:
    """The service manager's end of sd_notify: a datagram socket; each message is kept with its arrival time
    and what `observe` said at that moment (the state the sender was in when it said it)."""

    def __init__(self, address, observe):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.2)
        self.observe = observe
        self.messages = []   # (time, {key: value}, observation)
        self.lock = threading.Lock()
        self.done = False
        self.thread = threading.Thread(target=self.receive, daemon=True)
        self.thread.start()

    def receive(self):
        while not self.done:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            seen = self.observe() if "READY" in fields else None
            with self.lock:
                self.messages.append((time.monotonic(), fields, seen))

    def since(self, t0, key=None):
        with self.lock:
            return [m for m in self.messages if m[0] >= t0 and (key is None or key in m[1])]

    def wait_for(self, t0, key, service, bound=30):
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            got = self.since(t0, key)
            if got:
                return got[0]
            if service.proc.poll() is not None:
                raise AssertionError(f"exited {service.proc.returncode} before {key}:\n{service.output()}")
            time.sleep(0.05)
        raise AssertionError(f"no {key} within {bound} s; got {[m[1] for m in self.since(t0)]}:\n{service.output()}")

    def close(self):
        self.done = True
        self.thread.join()
        self.sock.close()


def journal_stream(path):
    """JOURNAL_STREAM naming the file that will be the process's stderr, as systemd names its stream."""
    st = os.stat(path)
    return f"{st.st_dev}:{st.st_ino}"


class Service:
    """An installed unit's command, run under the protocol; output in log."""

    def __init__(self, test, unit_name, notify_address, netns=None):
        self.test = test
        self.log = os.path.join(test.tmp, unit_name + ".log")
        open(self.log, "w").close()
        env = dict(os.environ, NOTIFY_SOCKET=notify_address, WATCHDOG_USEC=str(WATCHDOG_USEC),
                   JOURNAL_STREAM=journal_stream(self.log))
        env.pop("WATCHDOG_PID", None)
        argv = unit_command(unit_name)
        if netns:
            argv = ["ip", "netns", "exec", netns] + argv
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env)

    def output(self):
        return read(self.log)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class ServiceChecks:
    """The protocol, the same for both units, on a started Service whose READY=1 has arrived."""

    def check_watchdog(self, notes, service, since):
        time.sleep(3.2)
        feeds = [m[0] for m in notes.since(since, "WATCHDOG")]
        self.assertGreaterEqual(len(feeds), 4, f"WATCHDOG=1 every {WATCHDOG_USEC / 2e6} s expected:\n"
                                + service.output())
        gaps = [b - a for a, b in zip(feeds, feeds[1:])]
        self.assertLess(max(gaps), WATCHDOG_USEC / 1e6, f"a watchdog interval passed unfed: gaps {gaps}")

    def check_reload(self, notes, service, expect_log):
        t0 = time.monotonic()
        service.proc.send_signal(signal.SIGHUP)
        reloading = notes.wait_for(t0, "RELOADING", service)
        self.assertIn("MONOTONIC_USEC", reloading[1])
        ready = notes.wait_for(reloading[0], "READY", service)
        self.assertGreaterEqual(ready[0], reloading[0])
        self.assertIn(expect_log, service.output())

    def check_stop(self, notes, service):
        t0 = time.monotonic()
        service.proc.send_signal(signal.SIGTERM)
        notes.wait_for(t0, "STOPPING", service)
        try:
            rc = service.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            service.kill()
            raise AssertionError("still running 30 s after SIGTERM:\n" + service.output())
        self.assertEqual(rc, 0, service.output())


class PackageTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="us-install-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_contents(self):
        listing = sh("dpkg-deb", "-c", DEB).stdout
        paths = {line.split()[-1].lstrip(".") for line in listing.splitlines()}
        multiarch = sh("gcc", "-print-multiarch").stdout.strip()
        for want in ("/usr/bin/understudy", "/usr/bin/understudyctl", "/usr/bin/understudy-agent",
                     f"/usr/lib/{multiarch}/understudy/us_backend.bpf.o",
                     f"/usr/lib/{multiarch}/understudy/us_steer.bpf.o", CONFIG,
                     "/usr/share/understudy/examples/understudy.toml",
                     UNITS + "/understudy.service", UNITS + "/understudy-agent.service"):
            self.assertIn(want, paths)
        self.assertEqual(sh("dpkg-deb", "-I", DEB, "conffiles").stdout.split(), [CONFIG])
        # The example is the repository's own, not some other file.
        with open(os.path.join(SOURCE, "conf", "understudy.toml")) as f:
            self.assertEqual(read(ROOT + CONFIG), f.read())

    def test_depends_are_the_linked_libraries(self):
        depends = sh("dpkg-deb", "-f", DEB, "Depends").stdout.strip()
        wanted = dict(re.fullmatch(r"(\S+) \(>= (\S+)\)", d.strip()).groups() for d in depends.split(","))
        sh("dpkg-deb", "-x", DEB, self.tmp)
        owners = set()
        for exe in ("understudy", "understudyctl", "understudy-agent"):
            ldd = sh("ldd", os.path.join(self.tmp, "usr/bin", exe)).stdout
            self.assertNotIn("not found", ldd)
            for lib in re.findall(r"=> (/\S+)", ldd):
                real = os.path.realpath(lib)
                for candidate in (lib, real, real.removeprefix("/usr"), "/usr" + lib):
                    r = sh("dpkg", "-S", candidate, check=False)
                    if r.returncode == 0:
                        owners.add(r.stdout.split(":")[0])
                        break
                else:
                    self.fail(f"no package owns {lib}")
        self.assertIn("librte-eal23", owners)   # DPDK, by its Debian name: the data plane is linked
        # Loaded, not linked: the EAL's buses and the PMDs of the documented ports.
        plugins = {p + "23" for p in ("librte-bus-pci", "librte-bus-vdev", "librte-net-af-packet",
                                      "librte-net-af-xdp", "librte-net-tap")}
        self.assertEqual(set(wanted) - {"iproute2"} - plugins, owners,
                         "Depends: the packages of the linked libraries")
        self.assertLessEqual(plugins | {"iproute2"}, set(wanted))
        for pkg, version in wanted.items():
            installed = sh("dpkg-query", "-W", "-f", "${Version}", pkg).stdout
            sh("dpkg", "--compare-versions", installed, "ge", version)

    def test_installed_in_fresh_root(self):
        status = dpkg_root("-s", "understudy").stdout
        self.assertIn("Status: install ok installed", status)
        self.assertRegex(status, r"Conffiles:\n /etc/understudy/understudy.toml [0-9a-f]{32}")
        for line in sh("dpkg-deb", "-c", DEB).stdout.splitlines():
            self.assertTrue(os.path.lexists(ROOT + line.split()[-1].lstrip(".")), line)
        for name in ("understudy.service", "understudy-agent.service"):
            exe = rooted(unit(name)["ExecStart"][0].split()[0])
            self.assertTrue(os.access(exe, os.X_OK), exe)
            self.assertIn(CONFIG, unit(name)["ExecStart"][0])

    def test_reinstall_keeps_edited_config(self):
        path = ROOT + CONFIG
        original = read(path)
        try:
            with open(path, "a") as f:
                f.write("# edited by the operator\n")
            # No --force-conf*: dpkg must keep the edited file without asking (stdin is closed).
            dpkg_root("-i", DEB, stdin=subprocess.DEVNULL)
            self.assertTrue(read(path).endswith("# edited by the operator\n"), "the edited config was replaced")
        finally:
            with open(path, "w") as f:
                f.write(original)

    def test_systemd_analyze_verify(self):
        analyze = shutil.which("systemd-analyze")
        if not analyze:
            self.fail("systemd-analyze not installed: run tools/setup.sh (package systemd)")
        # Copies whose ExecStart names the binaries in the root (verify checks they exist and are executable);
        # not --root: the fresh root has no systemd of its own (sysinit.target, /bin/kill) to verify against.
        units = []
        for name in ("understudy.service", "understudy-agent.service"):
            text = read(ROOT + UNITS + "/" + name)
            self.assertRegex(text, r"(?m)^ExecStart=/usr/bin/")
            units.append(os.path.join(self.tmp, name))
            with open(units[-1], "w") as f:
                f.write(re.sub(r"(?m)^ExecStart=/", f"ExecStart={ROOT}/", text))
        r = sh(analyze, "verify", "--man=no", "--generators=no", *units, check=False)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertNotRegex(r.stdout + r.stderr, r"(?i)unknown|ignoring|invalid", r.stdout + r.stderr)


class JournalTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="us-install-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def run_bad_config(self, journal):
        bad = os.path.join(self.tmp, "bad.toml")
        with open(bad, "w") as f:
            f.write("[cluster]\nsecret = \"00\"\n[[vip]]\naddress = \"x\"\n")
        log = os.path.join(self.tmp, "log")
        open(log, "w").close()
        env = dict(os.environ, JOURNAL_STREAM=journal_stream(log) if journal else "1:1")
        with open(log, "a") as out:
            rc = subprocess.run([ROOT + "/usr/bin/understudy", "run", "--config", bad], stdout=out,
                                stderr=subprocess.STDOUT, env=env, timeout=60).returncode
        self.assertEqual(rc, 2)
        return read(log).splitlines()

    def test_errors_carry_priority_in_journal(self):
        lines = self.run_bad_config(journal=True)
        self.assertGreater(len(lines), 1, "expected several problems, one per line")
        for line in lines:
            self.assertTrue(line.startswith("<3>"), line)

    def test_plain_elsewhere(self):
        # JOURNAL_STREAM naming another stream (stderr redirected since): the text as it always was.
        for line in self.run_bad_config(journal=False):
            self.assertNotRegex(line, r"^<\d>")


class BalancerUnitTest(unittest.TestCase, ServiceChecks):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="us-install-")
        self.prefix = f"usinst{os.getpid()}"
        self.original = read(ROOT + CONFIG)
        pcap = os.path.join(self.tmp, "in.pcap")
        write_pcap(pcap, [tcp_syn(1000 + i) for i in range(64)])
        self.socket = os.path.join(self.tmp, "understudy.sock")
        self.tail = f"""
[dataplane]
eal_args = ["--in-memory", "--no-pci", "-l", "0,1", "--log-level=lib.*:warning", "--file-prefix={self.prefix}"]
workers = [1]
non_vip = "drop"
source_v4 = "10.0.0.2"
gateway_mac = "02:00:00:00:00:01"
  [[dataplane.port]]
  name = "p0"
  devargs = "net_pcap0,rx_pcap={pcap},infinite_rx=1,tx_pcap=/dev/null"

[control]
socket = "{self.socket}"
metrics = ""
"""
        self.write(adapted_config(self.tail))
        self.service = None
        self.notes = None

    def write(self, text):
        with open(ROOT + CONFIG, "w") as f:
            f.write(text)

    def tearDown(self):
        if self.service:
            self.service.kill()
        if self.notes:
            self.notes.close()
        self.write(self.original)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_protocol(self):
        address = f"@us-install-{os.getpid()}"   # abstract, as systemd names it
        self.notes = Notifications("\0" + address[1:], lambda: "understudy: forwarding" in read(self.service.log))
        t0 = time.monotonic()
        self.service = s = Service(self, "understudy.service", address)
        ready = self.notes.wait_for(t0, "READY", s)
        # Sent only once the ports were started and the workers launched (the daemon logs that first).
        self.assertTrue(ready[2], "READY=1 before the data plane forwarded:\n" + s.output())
        self.assertIn("forwarding", ready[1].get("STATUS", ""))
        self.assertEqual(len(self.notes.since(t0, "READY")), 1)
        # ... and it does forward: the example VIP's SYNs leave encapsulated.
        deadline = time.monotonic() + 10
        while api(self.socket, "stats")["counters"]["tx_packets"] == 0:
            self.assertLess(time.monotonic(), deadline, "nothing forwarded after READY=1:\n" + s.output())
            time.sleep(0.2)
        # The installed CLI talks to it.
        r = sh(ROOT + "/usr/bin/understudyctl", "--socket", self.socket, "status")
        self.assertIn("generation", r.stdout)

        self.check_watchdog(self.notes, s, ready[0])

        # A reload that applies: a weight of the example's pool.
        self.write(adapted_config(self.tail).replace("weight = 50", "weight = 60", 1))
        self.check_reload(self.notes, s, "understudy: SIGHUP: configuration reloaded")
        self.assertEqual(api(self.socket, "status")["generation"], 2)
        # A reload refused (a setting that needs a restart) is over too: READY=1 with the old config.
        self.write(adapted_config(self.tail.replace('non_vip = "drop"', 'non_vip = "kernel"')))
        self.check_reload(self.notes, s, "<4>understudy: SIGHUP: reload rejected")
        self.assertEqual(api(self.socket, "status")["generation"], 2)

        self.check_stop(self.notes, s)
        out = s.output()
        self.assertIn("<6>understudy: forwarding:", out)
        self.assertIn("<6>understudy: signal Terminated: stopping", out)


class AgentUnitTest(unittest.TestCase, ServiceChecks):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="us-install-")
        self.original = read(ROOT + CONFIG)
        sh("ip", "netns", "add", NS)
        for cmd in (["ip", "link", "set", "lo", "up"],
                    ["ip", "link", "add", "us0", "type", "veth", "peer", "name", "us1"],
                    ["ip", "addr", "add", "10.0.1.11/24", "dev", "us0"],
                    ["ip", "link", "set", "us0", "up"], ["ip", "link", "set", "us1", "up"]):
            sh("ip", "netns", "exec", NS, *cmd)
        self.socket = os.path.join(self.tmp, "agent.sock")
        self.tail = f"""
[dataplane]
source_v4 = "10.0.0.2"
workers = [1]
  [[dataplane.port]]
  name = "p0"
  devargs = "net_null0"

[control]
socket = "{self.tmp}/understudy.sock"

[agent]
interface = "us0"
addresses = ["10.0.1.11"]
socket = "{self.socket}"
xdp_mode = "generic"
"""
        self.write(adapted_config(self.tail))
        self.service = None
        self.notes = None

    def write(self, text):
        with open(ROOT + CONFIG, "w") as f:
            f.write(text)

    def tearDown(self):
        if self.service:
            self.service.kill()
        if self.notes:
            self.notes.close()
        sh("ip", "netns", "del", NS, check=False)
        self.write(self.original)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def xdp_attached(self):
        return "xdp" in sh("ip", "-n", NS, "link", "show", "us0").stdout

    def test_protocol(self):
        # A path socket: an abstract one belongs to a network namespace, and the agent runs in another.
        address = os.path.join(self.tmp, "notify.sock")
        self.notes = Notifications(address, self.xdp_attached)
        self.assertFalse(self.xdp_attached())
        t0 = time.monotonic()
        self.service = s = Service(self, "understudy-agent.service", address, netns=NS)
        ready = self.notes.wait_for(t0, "READY", s)
        self.assertTrue(ready[2], "READY=1 before the XDP program was attached:\n" + s.output())
        self.assertIn("us0", ready[1].get("STATUS", ""))
        self.assertEqual(api(self.socket, "status")["ok"], True)

        self.check_watchdog(self.notes, s, ready[0])
        self.write(adapted_config(self.tail).replace("weight = 50", "weight = 60", 1))
        self.check_reload(self.notes, s, "understudy-agent: SIGHUP: configuration reloaded")
        self.check_stop(self.notes, s)
        self.assertFalse(self.xdp_attached(), "the program stays attached after the agent stopped")
        self.assertIn("<6>understudy-agent: signal Terminated: stopping", s.output())


if __name__ == "__main__":
    unittest.main(verbosity=2)
