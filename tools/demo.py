#!/usr/bin/python3
"""The understudy demo: a balancer in front of four web servers, all in network namespaces on this machine.
It sends real HTTP requests, stops a server, shows where its sessions went (and that no other session moved),
brings the server back, and cleans up. Run it through tools/demo.sh, which builds everything first."""
import collections
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import netns  # noqa: E402

BUILD = os.environ.get("UNDERSTUDY_BUILD", os.path.join(ROOT, "build"))
DAEMON = os.path.join(BUILD, "src/balancer/understudy")
CTL = os.path.join(BUILD, "src/cli/understudyctl")
CONFIG = os.path.join(ROOT, "conf/demo.toml")
SOCKET = "/run/understudy/demo.sock"
VIP = "192.0.2.10"
PORTS = list(range(30001, 30201))  # 200 sessions, one client source port each
NEW_PORTS = list(range(31001, 31201))  # 200 new sessions after the recovery

BOLD, DIM, RESET = ("\033[1m", "\033[2m", "\033[0m") if sys.stdout.isatty() else ("", "", "")


def say(text):
    print(f"\n{BOLD}== {text}{RESET}", flush=True)


def ctl(*args):
    r = subprocess.run([CTL, "--socket", SOCKET, *args], capture_output=True, text=True, timeout=30)
    return r.stdout


def show(*args):
    print(f"{DIM}$ understudyctl {' '.join(args)}{RESET}")
    print(ctl(*args).rstrip())


def sessions(topo, ports=PORTS):
    """Which backend served each client port: one real HTTP request per session."""
    served = {}
    script = ("import socket,sys\n"
              f"for p in range({ports[0]},{ports[-1] + 1}):\n"
              "    s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1); s.settimeout(2)\n"
              "    try:\n"
              f"        s.bind(('0.0.0.0',p)); s.connect(('{VIP}',8080)); s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')\n"
              "        d=b''\n"
              "        while True:\n"
              "            c=s.recv(4096)\n"
              "            if not c: break\n"
              "            d+=c\n"
              "        print(p, d.split(b'\\r\\n\\r\\n',1)[1].split()[0].decode())\n"
              "    except Exception as e:\n"
              "        print(p, 'failed')\n"
              "    finally:\n"
              "        s.setsockopt(socket.SOL_SOCKET,socket.SO_LINGER,b'\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00'); s.close()\n")
    out = topo.client(1).run("/usr/bin/python3", "-c", script, timeout=120).stdout
    for line in out.splitlines():
        port, who = line.split()
        served[int(port)] = who
    return served


def tally(served):
    counts = collections.Counter(served.values())
    return "  ".join(f"{k}: {counts[k]:3d}" for k in sorted(counts))


def main():
    t0 = time.monotonic()
    topo = netns.Topology(prefix="usd", backends=4, balancers=1)
    log = "/tmp/understudy-demo.log"
    try:
        say("Building a small network in namespaces: 1 client, 1 balancer (DPDK on af_packet), 4 web servers")
        topo.up()
        topo.start_http_servers(8080)
        print("  client 10.1.0.101 -> router 10.1.0.1 -> VIP 192.0.2.10:8080 at balancer 10.0.0.2 -> backends 10.0.0.11-14")
        print("  the backends answer the client directly (l2dsr); backend 4 has half the weight of the others")
        topo.start_balancer(1, DAEMON, CONFIG, log)
        netns.wait_for(lambda: '"probed":true' in subprocess.run(
            [CTL, "--socket", SOCKET, "health", "--json"], capture_output=True, text=True).stdout.replace(" ", ""),
            15, "health probes", log)
        netns.wait_for(lambda: topo.client(1).run("curl", "-s", "-m", "1", f"http://{VIP}:8080/",
                                                  check=False).returncode == 0, 20, "the first request", log)

        say("The balancer is up")
        show("status")

        say("200 sessions (one HTTP request each, from 200 client ports)")
        before = sessions(topo)
        print("  served by  " + tally(before) + f"   {DIM}(weights 100:100:100:50){RESET}")
        show("backend", "list")

        say("Backend 2's web server stops")
        topo.stop_http_server(2)
        t = time.monotonic()
        netns.wait_for(lambda: '"operational": false' in json.dumps(json.loads(ctl("backend", "list", "--json") or "{}")),
                       10, "backend 2 to be taken out", log)
        print(f"  health probes took it out after {time.monotonic() - t:.2f} s "
              f"(fall = 2 probes, interval 200 ms)")
        show("health")

        say("The same 200 sessions again")
        after = sessions(topo)
        print("  served by  " + tally(after))
        moved = [p for p in PORTS if before[p] != after[p]]
        moved_from_2 = [p for p in moved if before[p] == "b2"]
        print(f"  sessions that were on b2: {sum(1 for p in PORTS if before[p] == 'b2')}, each moved to the next server of its ordering: "
              f"{len(moved_from_2)} -> " + tally({p: after[p] for p in moved_from_2}))
        print(f"  sessions on other backends that moved: {len(moved) - len(moved_from_2)}")
        example = moved_from_2[0]
        print(f"  why: the ordering of a session is fixed by its key; the balancer skips a server that is down.")
        show("lookup", "--vip", f"{VIP}:8080/tcp", "--src", f"{topo.client_addr(1)}:{example}")

        say("Backend 2 comes back")
        topo.start_http_server(2, 8080)
        netns.wait_for(lambda: '"operational": false' not in json.dumps(json.loads(ctl("backend", "list", "--json") or "{}")),
                       10, "backend 2 to return", log)
        again = sessions(topo)
        print("  the same 200 sessions: " + tally(again))
        print(f"  the {len(moved_from_2)} moved ones stay on their stand-in: the connection table keeps an established flow where it is")
        print("  (a real client would have closed them; they are forgotten after conn_idle_timeout_s)")
        fresh = sessions(topo, NEW_PORTS)
        print("  200 new sessions:      " + tally(fresh) + f"   {DIM}(b2 takes its share again){RESET}")

        say("Counters")
        show("stats")
        print(f"\n{BOLD}Done in {time.monotonic() - t0:.0f} s.{RESET} Cleaning up. The daemon's log was {log}.")
    finally:
        topo.down()


if __name__ == "__main__":
    main()
