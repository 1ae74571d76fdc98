#!/usr/bin/python3
"""Short TCP sessions, as a client sees them: one HTTP/1.0 request per source port to a server that names
itself in the body (tools/netns.py start_http_server: "bI CLIENT:PORT"). Prints one JSON line per session
as it ends: {"sport", "t0" (connect started), "t1" (ended), "result": "bI" | "refused" | "timeout" | "reset"
| other error, "peer": what the server saw as the client}. Runs in a client namespace.

The client closes with an RST (SO_LINGER 0), so it keeps no TIME_WAIT and a source port can be used again
by a later run. --workers sessions run at a time; --pace spaces the starts of one worker's sessions (a steady
stream of new sessions while something changes). Stops on SIGTERM/SIGINT (the sessions in flight end first),
or after --max-seconds. Times are time.monotonic(), the same clock in every network namespace.
"""
import argparse
import errno
import json
import signal
import socket
import struct
import sys
import threading
import time

LINGER_RST = struct.pack("ii", 1, 0)


def session(vip, port, sport, timeout):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.settimeout(timeout)
    t0 = time.monotonic()
    result, peer = None, None
    try:
        s.bind(("0.0.0.0", sport))
        s.connect((vip, port))
        s.sendall(b"GET / HTTP/1.0\r\nHost: vip\r\n\r\n")
        data = b""
        while len(data) < 65536:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        words = body.split()
        if head.startswith(b"HTTP/1.0 200") and len(words) == 2:
            result, peer = words[0].decode(), words[1].decode()
        else:
            result = "bad reply"
    except socket.timeout:
        result = "timeout"
    except ConnectionRefusedError:
        result = "refused"
    except ConnectionResetError:
        result = "reset"
    except OSError as e:
        result = errno.errorcode.get(e.errno, str(e))
    finally:
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        except OSError:
            pass
        s.close()
    return {"sport": sport, "t0": t0, "t1": time.monotonic(), "result": result, "peer": peer}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--vip", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--sports", required=True, help="first-last, or a comma-separated list")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--pace", type=float, default=0.0, help="seconds between the starts of one worker's sessions")
    ap.add_argument("--timeout", type=float, default=2.5, help="per session: covers one SYN retransmission (1 s)")
    ap.add_argument("--max-seconds", type=float, default=240)
    args = ap.parse_args()

    if "-" in args.sports:
        first, last = (int(x) for x in args.sports.split("-"))
        ports = list(range(first, last + 1))
    else:
        ports = [int(x) for x in args.sports.split(",")]

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    lock = threading.Lock()
    started = time.monotonic()

    def worker(mine):
        for sport in mine:
            if stop.is_set() or time.monotonic() - started > args.max_seconds:
                return
            t = time.monotonic()
            r = session(args.vip, args.port, sport, args.timeout)
            with lock:
                sys.stdout.write(json.dumps(r) + "\n")
                sys.stdout.flush()
            rest = args.pace - (time.monotonic() - t)
            if rest > 0:
                stop.wait(rest)

    n = max(1, args.workers)
    threads = [threading.Thread(target=worker, args=(ports[i::n],)) for i in range(n)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        for t in threads:
            t.join(timeout=0.1)


if __name__ == "__main__":
    main()
