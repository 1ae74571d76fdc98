#!/usr/bin/python3
"""Test networks in network namespaces: clients behind a router, balancer hosts and backends on one L2 segment.

Used by the namespace tests and the demo; also a command:
    tools/netns.py up [--backends N] [--balancers N]    build it and leave it running
    tools/netns.py down                                 tear down everything with the prefix
All traffic stays inside namespaces this tool creates.

Layout (PREFIX defaults to "us"):
    PREFIX-sw   two bridges: br1 the clients' segment 10.1.0.0/24, br0 the servers' segment 10.0.0.0/24
    PREFIX-c1   client 10.1.0.101 (and more clients .102...), default route via the router
    PREFIX-r    router 10.1.0.1 / 10.0.0.1: routes each VIP to the balancers by ECMP (a multipath route,
                hashing on addresses and ports, as a data-centre fabric does)
    PREFIX-lb1  balancer host: eth0 is handed to DPDK (net_af_packet); the daemon creates the exception-path
                tap (understudy0) and puts 10.0.0.2 on it (exception_addresses in its config)
    PREFIX-bN   backend N at 10.0.0.(10+N), VIPs on its loopback, answering ARP only for its own address,
                replying to clients directly through the router
    PREFIX-e    (edge=True) a host on the servers' segment at 10.0.0.250, to put frames on the wire that the
                router would never forward (malformed Ethernet and IP headers)
Services: an HTTP server and a line echo server in a backend, both naming the backend in what they send
back, and UDP sinks that count datagrams.
"""
import argparse
import os
import signal
import subprocess
import sys
import time

SEGMENT = "10.0.0.0/24"


def sh(*args, check=True, **kw):
    return subprocess.run(list(args), check=check, capture_output=True, text=True, **kw)


class Namespace:
    def __init__(self, name):
        self.name = name

    def run(self, *args, check=True, timeout=60, **kw):
        r = subprocess.run(["ip", "netns", "exec", self.name, *args], capture_output=True, text=True,
                           timeout=timeout, **kw)
        if check and r.returncode != 0:
            raise RuntimeError(f"[{self.name}] {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
        return r

    def popen(self, *args, **kw):
        return subprocess.Popen(["ip", "netns", "exec", self.name, *args], **kw)

    def mac(self, iface="eth0"):
        out = self.run("cat", f"/sys/class/net/{iface}/address").stdout.strip()
        return out


class Topology:
    def __init__(self, prefix="us", backends=4, balancers=1, clients=1, vips=("192.0.2.10",), edge=False,
                 server_mtu=None, backend_gro=True):
        """server_mtu: the MTU of the servers' segment (the router's server side, the balancers, the backends,
        the edge host); None leaves the default (1500). The clients' segment stays at 1500."""
        self.prefix = prefix
        self.server_mtu = server_mtu
        self.backend_gro = backend_gro
        self.n_backends = backends
        self.n_balancers = balancers
        self.n_clients = clients
        self.vips = list(vips)
        self.with_edge = edge
        self.procs = []

    # names and addresses
    def sw(self):
        return Namespace(f"{self.prefix}-sw")

    def client(self, i=1):
        return Namespace(f"{self.prefix}-c{i}")

    def router(self):
        return Namespace(f"{self.prefix}-r")

    def balancer(self, i=1):
        return Namespace(f"{self.prefix}-lb{i}")

    def backend(self, i):
        return Namespace(f"{self.prefix}-b{i}")

    def edge(self):
        return Namespace(f"{self.prefix}-e")

    ROUTER_CLIENT_SIDE = "10.1.0.1"
    ROUTER_SERVER_SIDE = "10.0.0.1"

    @staticmethod
    def client_addr(i=1):
        return f"10.1.0.{100 + i}"

    @staticmethod
    def balancer_addr(i=1):
        return f"10.0.0.{1 + i}"

    @staticmethod
    def backend_addr(i):
        return f"10.0.0.{10 + i}"

    EDGE_ADDR = "10.0.0.250"

    def all_namespaces(self):
        names = [self.sw(), self.router()]
        names += [self.client(i) for i in range(1, self.n_clients + 1)]
        names += [self.balancer(i) for i in range(1, self.n_balancers + 1)]
        names += [self.backend(i) for i in range(1, self.n_backends + 1)]
        if self.with_edge:
            names.append(self.edge())
        return names

    # building
    def _attach(self, ns, tag, bridge="br0", ifname="eth0", gro=False, mtu=None):
        """A veth from ns (named ifname there) to a bridge. gro: GRO on the switch-side end (only where a
        host's XDP program transmits, see below); mtu: on both ends (default 1500)."""
        inner, outer = f"{self.prefix}{tag}i", f"{self.prefix}{tag}o"
        sh("ip", "link", "add", inner, "type", "veth", "peer", "name", outer)
        if mtu:
            sh("ip", "link", "set", inner, "mtu", str(mtu))
            sh("ip", "link", "set", outer, "mtu", str(mtu))
        sh("ip", "link", "set", inner, "netns", ns.name)
        sh("ip", "link", "set", outer, "netns", self.sw().name)
        ns.run("ip", "link", "set", inner, "name", ifname)
        ns.run("ip", "link", "set", ifname, "up")
        ns.run("ip", "link", "set", "lo", "up")
        self.sw().run("ip", "link", "set", outer, "master", bridge, "up")
        # GRO on a switch-side veth merges the frames its host sends into one large packet, which the bridge
        # and the router pass on whole: reaching a balancer's DPDK port (net_af_packet), such a packet arrives
        # cut to the ring's frame size and is dropped as truncated_frame (bulk TCP through the balancer then
        # crawls at well under 1 Mbit/s). So GRO is off everywhere except on backends' ports: XDP_TX on a veth
        # (an agent forwarding a packet) needs NAPI on the peer, and GRO turns it on; what a backend sends
        # goes to the kernel stacks of the router, the clients or other backends, never to a DPDK port
        # (the balancers' health probes are answered with small segments).
        self.sw().run("ethtool", "-K", outer, "gro", "on" if gro else "off", check=False)
        # Checksums must be complete on the wire: the balancer forwards frames as they are. (With transmit
        # checksumming off the kernel also segments before the wire: no TSO super-frames.)
        ns.run("ethtool", "-K", ifname, "tx", "off", check=False)

    def up(self):
        self.down()
        for ns in self.all_namespaces():
            sh("ip", "netns", "add", ns.name)
        sw = self.sw()
        # A plain L2 switch: where br_netfilter is loaded it would otherwise check (and drop) bridged IP headers.
        sw.run("sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=0", "net.bridge.bridge-nf-call-ip6tables=0",
               "net.bridge.bridge-nf-call-arptables=0", check=False)
        for br in ("br0", "br1"):
            sw.run("ip", "link", "add", br, "type", "bridge")
            sw.run("ip", "link", "set", br, "up")
        r = self.router()
        self._attach(r, "rc", bridge="br1", ifname="eth1")
        self._attach(r, "rs", bridge="br0", ifname="eth0", mtu=self.server_mtu)
        r.run("ip", "addr", "add", f"{self.ROUTER_CLIENT_SIDE}/24", "dev", "eth1")
        r.run("ip", "addr", "add", f"{self.ROUTER_SERVER_SIDE}/24", "dev", "eth0")
        r.run("sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.fib_multipath_hash_policy=1")
        self.route_vips(list(range(1, self.n_balancers + 1)))
        for i in range(1, self.n_clients + 1):
            c = self.client(i)
            self._attach(c, f"c{i}", bridge="br1")
            c.run("ip", "addr", "add", f"{self.client_addr(i)}/24", "dev", "eth0")
            c.run("ip", "route", "add", "default", "via", self.ROUTER_CLIENT_SIDE)
            # The tests bind their clients to chosen source ports (10000-49999); other clients (wrk, iperf3,
            # curl) must not take one of those as an ephemeral port (EADDRINUSE at connect).
            c.run("sysctl", "-qw", "net.ipv4.ip_local_reserved_ports=10000-49999")
        for i in range(1, self.n_balancers + 1):
            self._attach(self.balancer(i), f"l{i}", mtu=self.server_mtu)
        for i in range(1, self.n_backends + 1):
            b = self.backend(i)
            self._attach(b, f"b{i}", gro=self.backend_gro, mtu=self.server_mtu)
            b.run("ip", "addr", "add", f"{self.backend_addr(i)}/24", "dev", "eth0")
            b.run("ip", "route", "add", "default", "via", self.ROUTER_SERVER_SIDE)
            for vip in self.vips:
                b.run("ip", "addr", "add", f"{vip}/32", "dev", "lo")
            # The VIP lives on lo: answer ARP only for addresses of the receiving interface.
            b.run("sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2")
        if self.with_edge:
            e = self.edge()
            self._attach(e, "e", mtu=self.server_mtu)
            e.run("ip", "addr", "add", f"{self.EDGE_ADDR}/24", "dev", "eth0")
        return self

    def route_vips(self, balancers):
        """Routes every VIP from the router to these balancers, by ECMP when there are several."""
        r = self.router()
        for vip in self.vips:
            # One atomic replace: deleting first would leave a moment without a route, in which the router
            # answers clients with ICMP net unreachable (a withdrawal of one path never does that).
            if len(balancers) == 1:
                r.run("ip", "route", "replace", f"{vip}/32", "via", self.balancer_addr(balancers[0]))
            elif balancers:
                hops = []
                for i in balancers:
                    hops += ["nexthop", "via", self.balancer_addr(i)]
                r.run("ip", "route", "replace", f"{vip}/32", *hops)
            else:
                r.run("ip", "route", "del", f"{vip}/32", check=False)

    def down(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        self.procs = []
        existing = sh("ip", "netns", "list", check=False).stdout.split()
        for name in existing:
            if name.startswith(f"{self.prefix}-"):
                sh("ip", "netns", "pids", name, check=False)
                pids = sh("ip", "netns", "pids", name, check=False).stdout.split()
                for pid in pids:
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except (ProcessLookupError, ValueError):
                        pass
                sh("ip", "netns", "del", name, check=False)
        # Veth ends left in this namespace by a run that was killed half-way through up().
        for line in sh("ip", "-o", "link", "show", check=False).stdout.splitlines():
            name = line.split(":")[1].strip().split("@")[0]
            if name.startswith(self.prefix) and name[len(self.prefix):len(self.prefix) + 1] in "clbe":
                sh("ip", "link", "del", name, check=False)

    def __enter__(self):
        return self.up()

    def __exit__(self, *exc):
        self.down()

    # services
    HTTP_SERVER = (
        "import http.server,socketserver,sys\n"
        "name=sys.argv[1]\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    protocol_version=sys.argv[3] if len(sys.argv)>3 else 'HTTP/1.0'\n"
        "    def do_GET(self):\n"
        "        body=(name+' '+self.client_address[0]+':'+str(self.client_address[1])+'\\n').encode()\n"
        "        self.send_response(200); self.send_header('Content-Length',str(len(body))); self.end_headers()\n"
        "        self.wfile.write(body)\n"
        "    def log_message(self,*a): pass\n"
        "class S(socketserver.ThreadingMixIn,http.server.HTTPServer):\n"
        "    allow_reuse_address=True; daemon_threads=True; request_queue_size=256\n"
        "S(('0.0.0.0',int(sys.argv[2])),H).serve_forever()\n")

    def start_http_server(self, i, port=8080, keepalive=False):
        """A server in backend i that names itself ("bI CLIENT:PORT") in its replies. keepalive: it speaks
        HTTP/1.1 and keeps connections open between requests (for wrk); otherwise HTTP/1.0, one request per
        connection."""
        args = [f"b{i}", str(port)] + (["HTTP/1.1"] if keepalive else [])
        p = self.backend(i).popen("/usr/bin/python3", "-c", self.HTTP_SERVER, *args,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(p)
        wait_for(lambda: f":{port} " in self.backend(i).run("ss", "-ltn").stdout, 10, f"HTTP server in backend {i}")
        return p

    def stop_http_server(self, i):
        self.stop_backend_servers(i, "BaseHTTPRequestHandler")

    def start_http_servers(self, port=8080):
        for i in range(1, self.n_backends + 1):
            self.start_http_server(i, port)

    # One thread, many connections: every line received is sent back as "bI LINE".
    ECHO_SERVER = (
        "import selectors,socket,sys\n"
        "name=sys.argv[1].encode()\n"
        "sel=selectors.DefaultSelector()\n"
        "ls=socket.socket(); ls.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
        "ls.bind(('0.0.0.0',int(sys.argv[2]))); ls.listen(1024); ls.setblocking(False)\n"
        "sel.register(ls,selectors.EVENT_READ,None)\n"
        "bufs={}\n"
        "def close(c):\n"
        "    sel.unregister(c); bufs.pop(c,None); c.close()\n"
        "while True:\n"
        "    for key,_ in sel.select():\n"
        "        s=key.fileobj\n"
        "        if s is ls:\n"
        "            try:\n"
        "                c,_=ls.accept()\n"
        "            except OSError:\n"
        "                continue\n"
        "            c.setblocking(False); c.setsockopt(socket.IPPROTO_TCP,socket.TCP_NODELAY,1)\n"
        "            bufs[c]=b''; sel.register(c,selectors.EVENT_READ,None); continue\n"
        "        try:\n"
        "            d=s.recv(65536)\n"
        "        except OSError:\n"
        "            close(s); continue\n"
        "        if not d:\n"
        "            close(s); continue\n"
        "        b=bufs[s]+d; *lines,bufs[s]=b.split(b'\\n')\n"
        "        try:\n"
        "            s.sendall(b''.join(name+b' '+l+b'\\n' for l in lines))\n"
        "        except OSError:\n"
        "            close(s)\n")

    def start_echo_server(self, i, port=7000):
        """A line echo server in backend i: each line comes back as "bI LINE" (long-lived connections)."""
        p = self.backend(i).popen("/usr/bin/python3", "-c", self.ECHO_SERVER, f"b{i}", str(port),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(p)
        wait_for(lambda: f":{port} " in self.backend(i).run("ss", "-ltn").stdout, 10, f"echo server in backend {i}")
        return p

    def start_echo_servers(self, port=7000):
        for i in range(1, self.n_backends + 1):
            self.start_echo_server(i, port)

    UDP_COUNTER = (
        "import os,socket,sys,time\n"
        "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
        "s.setsockopt(socket.SOL_SOCKET,socket.SO_RCVBUF,4<<20); s.bind(('0.0.0.0',int(sys.argv[1])))\n"
        "s.settimeout(0.05); n=0; saved=-1; t=0\n"
        "while True:\n"
        "    try:\n"
        "        s.recv(2048); n+=1\n"
        "    except socket.timeout:\n"
        "        pass\n"
        "    if n!=saved and time.monotonic()-t>0.05:\n"
        "        open(sys.argv[2]+'.tmp','w').write(str(n)); os.replace(sys.argv[2]+'.tmp',sys.argv[2])\n"
        "        saved=n; t=time.monotonic()\n")

    def start_udp_counter(self, i, port, workdir, wait=True):
        """A UDP sink in backend i that keeps the number of datagrams it got in WORKDIR/udp-bI. A datagram
        counts once the kernel has it whole (fragments reassembled)."""
        path = os.path.join(workdir, f"udp-b{i}")
        with open(path, "w") as f:
            f.write("0")
        p = self.backend(i).popen("/usr/bin/python3", "-c", self.UDP_COUNTER, str(port), path,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(p)
        if wait:
            wait_for(lambda: f":{port} " in self.backend(i).run("ss", "-lun").stdout, 10, f"UDP sink in backend {i}")
        return p

    def start_udp_counters(self, port, workdir):
        """A UDP sink in every backend that keeps the number of datagrams it got in WORKDIR/udp-bN."""
        for i in range(1, self.n_backends + 1):
            self.start_udp_counter(i, port, workdir, wait=False)
        for i in range(1, self.n_backends + 1):
            wait_for(lambda i=i: f":{port} " in self.backend(i).run("ss", "-lun").stdout, 10,
                     f"UDP sink in backend {i}")

    def start_iperf_server(self, i, port, log_path):
        """iperf3 -s in backend i, its results (JSON, one object per test) appended to log_path."""
        p = self.backend(i).popen("iperf3", "-s", "-p", str(port), "-J", "--logfile", log_path, "--idle-timeout", "20",
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(p)
        wait_for(lambda: f":{port} " in self.backend(i).run("ss", "-ltn").stdout, 10, f"iperf3 server in backend {i}")
        return p

    def block_port(self, i, sources, port, table="usblock"):
        """In backend i's namespace only: drop TCP packets to `port` from the given source addresses (as a
        firewall between some hosts and this one would). unblock_port lifts it."""
        b = self.backend(i)
        b.run("nft", f"add table inet {table}")
        b.run("nft", f"add chain inet {table} input {{ type filter hook input priority 0 ; }}")
        for a in sources:
            b.run("nft", f"add rule inet {table} input ip saddr {a} tcp dport {port} drop")

    def unblock_port(self, i, table="usblock"):
        self.backend(i).run("nft", f"delete table inet {table}", check=False)

    def stop_backend_servers(self, i, pattern):
        """Kills the processes in backend i whose command line contains pattern."""
        for pid in sh("ip", "netns", "pids", self.backend(i).name, check=False).stdout.split():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if pattern.encode() in f.read():
                        os.kill(int(pid), signal.SIGKILL)
            except (FileNotFoundError, ProcessLookupError):
                pass

    def stop_all_servers(self, i):
        """Kills every process in backend i (as when the machine's services die; its kernel stays up) and waits
        until they are gone. Returns the time.monotonic() at which the signals were sent."""
        for pid in sh("ip", "netns", "pids", self.backend(i).name, check=False).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        killed_at = time.monotonic()
        for p in self.procs:
            p.poll()  # reap what this process started there
        wait_for(lambda: not sh("ip", "netns", "pids", self.backend(i).name, check=False).stdout.split(), 5,
                 f"every process in backend {i} to exit")
        return killed_at

    def start_balancer(self, i, binary, config, log_path):
        with open(log_path, "w") as log:
            p = self.balancer(i).popen(binary, "run", "--config", config, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(p)
        def started():
            with open(log_path) as f:
                return p.poll() is not None or "understudy: forwarding" in f.read()
        wait_for(started, 30, f"balancer {i} to start forwarding", log_path)
        if p.poll() is not None:
            with open(log_path) as f:
                raise RuntimeError(f"balancer {i} exited {p.returncode}: {f.read()}")
        # The host's own routes on the exception interface are the operator's, as on a real host.
        self.balancer(i).run("ip", "route", "replace", "default", "via", self.ROUTER_SERVER_SIDE, "dev", "understudy0")
        return p


def stop_process(proc, sig=signal.SIGTERM, timeout=15):
    """Asks proc to end with sig (if it still runs), waits up to timeout seconds, then kills it."""
    if sig is not None and proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_for(predicate, seconds, what, log_path=None):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    extra = ""
    if log_path:
        with open(log_path) as f:
            extra = f"\n--- {log_path} ---\n{f.read()}"
    raise TimeoutError(f"timed out after {seconds}s waiting for {what}{extra}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["up", "down"])
    ap.add_argument("--prefix", default="us")
    ap.add_argument("--backends", type=int, default=4)
    ap.add_argument("--balancers", type=int, default=1)
    ap.add_argument("--edge", action="store_true", help="add the edge host on the servers' segment")
    args = ap.parse_args()
    t = Topology(args.prefix, args.backends, args.balancers, edge=args.edge)
    if args.action == "up":
        t.up()
        print("namespaces:", " ".join(ns.name for ns in t.all_namespaces()))
    else:
        t.down()


if __name__ == "__main__":
    sys.exit(main())
