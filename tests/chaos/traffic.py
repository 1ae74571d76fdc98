#!/usr/bin/python3
"""The chaos suite's client traffic, run in a client namespace against a line echo server behind a VIP
(tools/netns.py start_echo_server answers each line "bI LINE"):

- long-lived connections, one per source port of --sports, each sending a numbered line every --interval
  seconds and checking that the reply is "bI N" with the same bI as its first reply and N the next number;
- a stream of new connections (one every --new-interval seconds, ephemeral source ports): connect, one line,
  the reply checked the same way (its bI among --backends), close.

Everything is recorded with time.monotonic() (the same clock in every namespace of the machine), so that the
test can cut the record into its phases: per long-lived connection the replies, bad replies, the error that
ended it and when (reset, closed by the peer, send failure) and every gap of more than 0.5 s between two replies;
for the new connections the successes and each failure with its time and kind. The report (JSON) is written
atomically to --report every 0.2 s and once more on exit. Stops on SIGTERM/SIGINT or after --max-seconds.
"""
import argparse
import errno
import json
import os
import selectors
import signal
import socket
import threading
import time

GAP_S = 0.5       # gaps longer than this are listed one by one
MAX_LISTED = 200  # bound on every list in the report


def kind_of(e):
    if isinstance(e, socket.timeout):
        return "timeout"
    if isinstance(e, OSError) and e.errno in (errno.ECONNRESET, errno.EPIPE):
        return "reset"
    if isinstance(e, OSError) and e.errno is not None:
        return errno.errorcode.get(e.errno, str(e.errno))
    return str(e)


class Conn:
    def __init__(self, sport):
        self.sport = sport
        self.sock = None
        self.backend = None
        self.sent = 0
        self.expect = 0
        self.replies = 0
        self.bad_replies = 0
        self.last_reply = None
        self.gaps = []
        self.error = None
        self.error_at = None
        self.buf = b""

    def report(self):
        return {"sport": self.sport, "backend": self.backend, "sent": self.sent, "replies": self.replies,
                "bad_replies": self.bad_replies, "last_reply": self.last_reply, "gaps": self.gaps,
                "error": self.error, "error_at": self.error_at}


class NewConnections(threading.Thread):
    def __init__(self, vip, port, interval, backends, stop):
        super().__init__(daemon=True)
        self.vip, self.port, self.interval, self.backends, self.stop = vip, port, interval, backends, stop
        self.ok = 0
        self.ok_times = []  # the last successes (bounded), to tell when service came back
        self.failures = []  # [time, kind], bounded
        self.failed = 0
        self.lock = threading.Lock()

    def run(self):
        n = 0
        while not self.stop.is_set():
            t0 = time.monotonic()
            n += 1
            kind = None
            try:
                with socket.create_connection((self.vip, self.port), timeout=2.0) as s:
                    s.settimeout(2.0)
                    s.sendall(f"{n}\n".encode())
                    data = b""
                    while not data.endswith(b"\n"):
                        d = s.recv(256)
                        if not d:
                            raise ConnectionError("closed before the reply")
                        data += d
                    parts = data.decode(errors="replace").split()
                    if len(parts) != 2 or parts[0] not in self.backends or parts[1] != str(n):
                        kind = f"bad reply {data[:40]!r}"
            except ConnectionError as e:
                kind = "reset" if isinstance(e, ConnectionResetError) else kind_of(e) if e.errno else str(e)
            except OSError as e:
                kind = kind_of(e)
            with self.lock:
                if kind is None:
                    self.ok += 1
                    self.ok_times = (self.ok_times + [t0])[-MAX_LISTED:]
                else:
                    self.failed += 1
                    self.failures = (self.failures + [[t0, kind]])[-MAX_LISTED:]
            left = self.interval - (time.monotonic() - t0)
            if left > 0:
                self.stop.wait(left)

    def report(self):
        with self.lock:
            return {"ok": self.ok, "failed": self.failed, "failures": list(self.failures),
                    "ok_times": list(self.ok_times)}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--vip", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--sports", required=True, help="first-last: one long-lived connection per source port")
    ap.add_argument("--backends", required=True, help="comma-separated names a reply may carry (b1,b2)")
    ap.add_argument("--interval", type=float, default=0.1)
    ap.add_argument("--new-interval", type=float, default=0.05)
    ap.add_argument("--report", required=True)
    ap.add_argument("--max-seconds", type=float, default=280)
    args = ap.parse_args()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    backends = set(args.backends.split(","))
    started = time.monotonic()

    first, last = (int(x) for x in args.sports.split("-"))
    conns = [Conn(p) for p in range(first, last + 1)]
    sel = selectors.DefaultSelector()

    def fail(c, what, now):
        if c.error is None:
            c.error, c.error_at = what, now
        if c.sock is not None:
            try:
                sel.unregister(c.sock)
            except (KeyError, ValueError):
                pass
            c.sock.close()
            c.sock = None

    for c in conns:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.bind(("0.0.0.0", c.sport))
        s.settimeout(3.0)
        try:
            s.connect((args.vip, args.port))
        except OSError as e:
            c.error, c.error_at = f"connect: {kind_of(e)}", time.monotonic()
            s.close()
            continue
        s.setblocking(False)
        c.sock = s
        c.last_reply = time.monotonic()
        sel.register(s, selectors.EVENT_READ, c)

    newconn = NewConnections(args.vip, args.port, args.new_interval, backends, stop)
    newconn.start()

    def write_report(now):
        tmp = args.report + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"now": now, "started": started, "conns": [c.report() for c in conns],
                       "new": newconn.report()}, f)
        os.replace(tmp, args.report)

    next_send = time.monotonic()
    next_report = 0.0
    while not stop.is_set() and time.monotonic() - started < args.max_seconds:
        now = time.monotonic()
        if now >= next_send:
            for c in conns:
                if c.sock is None:
                    continue
                try:
                    c.sock.send(f"{c.sent}\n".encode())
                    c.sent += 1
                except BlockingIOError:
                    pass  # a full send buffer: shows as a gap
                except OSError as e:
                    fail(c, kind_of(e), now)
            next_send += args.interval
            if next_send < now:
                next_send = now + args.interval
        for key, _ in sel.select(timeout=max(0.0, min(next_send, next_report) - time.monotonic())):
            c = key.data
            now = time.monotonic()
            try:
                data = c.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError as e:
                fail(c, kind_of(e), now)
                continue
            if not data:
                fail(c, "closed by peer", now)
                continue
            c.buf += data
            *lines, c.buf = c.buf.split(b"\n")
            for line in lines:
                parts = line.decode(errors="replace").split()
                good = len(parts) == 2 and parts[0] in backends and parts[1] == str(c.expect)
                if good and c.backend is None:
                    c.backend = parts[0]
                if not good or parts[0] != c.backend:
                    c.bad_replies += 1
                c.expect += 1
                gap = now - c.last_reply
                if gap > GAP_S and len(c.gaps) < MAX_LISTED:
                    c.gaps.append([c.last_reply, now])
                c.last_reply = now
                c.replies += 1
        now = time.monotonic()
        if now >= next_report:
            write_report(now)
            next_report = now + 0.2
    stop.set()
    newconn.join(timeout=5)
    write_report(time.monotonic())
    for c in conns:
        if c.sock is not None:
            c.sock.close()


if __name__ == "__main__":
    main()
