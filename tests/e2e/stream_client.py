#!/usr/bin/python3
"""Long-lived TCP connections, as a client sees them: opens one connection per source port to a line echo
server (tools/netns.py start_echo_server, which answers "bI LINE"), sends a numbered line on each every
--interval seconds and records, per connection, which backend answered, every backend that ever answered,
how many replies came back, the longest gap between two replies (or between the last reply and now), and
how the connection ended if it did (reset, closed by the peer, timed out). Runs in a client namespace.

The report (JSON, written atomically to --report every 0.2 s and once more on exit) is what the e2e tests
assert on. Times are time.monotonic(), the same clock in every network namespace of the machine.
Stops on SIGTERM/SIGINT, or after --max-seconds (a bound, so that a lost test never leaves it running).
"""
import argparse
import errno
import json
import os
import selectors
import signal
import socket
import time


class Conn:
    def __init__(self, sport):
        self.sport = sport
        self.sock = None
        self.backend = None
        self.backends = []
        self.sent = 0
        self.replies = 0
        self.bad_replies = 0
        self.connected_at = None
        self.last_reply = None
        self.max_gap = 0.0
        self.max_gap_end = None
        self.error = None
        self.error_at = None
        self.buf = b""

    def report(self, now):
        # A connection that has stopped answering has an open gap: count it, or a silent death would pass.
        gap, gap_end = self.max_gap, self.max_gap_end
        if self.error is None and self.last_reply is not None and now - self.last_reply > gap:
            gap, gap_end = now - self.last_reply, now
        return {"sport": self.sport, "backend": self.backend, "backends": self.backends, "sent": self.sent,
                "replies": self.replies, "bad_replies": self.bad_replies, "connected_at": self.connected_at,
                "last_reply": self.last_reply, "max_gap": gap, "max_gap_end": gap_end, "error": self.error,
                "error_at": self.error_at}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--vip", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--sports", required=True, help="first-last: one connection per source port")
    ap.add_argument("--interval", type=float, default=0.05)
    ap.add_argument("--report", required=True)
    ap.add_argument("--max-seconds", type=float, default=300)
    ap.add_argument("--connect-timeout", type=float, default=3)
    args = ap.parse_args()

    stop = [False]

    def on_signal(*_):
        stop[0] = True
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    first, last = (int(x) for x in args.sports.split("-"))
    conns = [Conn(p) for p in range(first, last + 1)]
    sel = selectors.DefaultSelector()
    started = time.monotonic()

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

    # Every connection is opened at once (non-blocking connects), so that connections a change leaves
    # unanswered cost one connect timeout in all, not one each.
    pending = {}
    for c in conns:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        try:
            s.bind(("0.0.0.0", c.sport))
            err = s.connect_ex((args.vip, args.port))
        except OSError as e:
            err = e.errno
        if err not in (0, errno.EINPROGRESS):
            c.error, c.error_at = f"connect: {errno.errorcode.get(err, err)}", time.monotonic()
            s.close()
            continue
        pending[s] = c
    connecting = selectors.DefaultSelector()
    for s, c in pending.items():
        connecting.register(s, selectors.EVENT_WRITE, c)
    deadline = time.monotonic() + args.connect_timeout
    while pending and not stop[0]:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        for key, _ in connecting.select(timeout=left):
            s, c = key.fileobj, key.data
            connecting.unregister(s)
            del pending[s]
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                c.error, c.error_at = f"connect: {errno.errorcode.get(err, err)}", time.monotonic()
                s.close()
                continue
            c.sock = s
            c.connected_at = time.monotonic()
            c.last_reply = c.connected_at  # the first gap runs from the handshake
            sel.register(s, selectors.EVENT_READ, c)
    for s, c in pending.items():
        c.error, c.error_at = "connect: timeout", time.monotonic()
        connecting.unregister(s)
        s.close()

    def write_report(now):
        tmp = args.report + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"now": now, "started": started, "client_pause": pause["longest"], "client_pause_end": pause["end"],
                       "conns": [c.report(now) for c in conns]}, f)
        os.replace(tmp, args.report)

    next_send = time.monotonic()
    next_report = 0.0
    # The client's own longest pause between two turns of its loop: a stall it measures while it was not
    # running itself (a starved test machine) is not the network's.
    pause = {"longest": 0.0, "end": None}
    last_turn = time.monotonic()
    while not stop[0] and time.monotonic() - started < args.max_seconds:
        now = time.monotonic()
        if now - last_turn > pause["longest"]:
            pause["longest"], pause["end"] = now - last_turn, now
        last_turn = now
        if now >= next_send:
            for c in conns:
                if c.sock is None:
                    continue
                try:
                    c.sock.send(f"{c.sent}\n".encode())
                    c.sent += 1
                except BlockingIOError:
                    pass  # the send buffer is full: the stall shows up as a gap between replies
                except OSError as e:
                    fail(c, errno.errorcode.get(e.errno, str(e)), now)
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
                fail(c, errno.errorcode.get(e.errno, str(e)), now)
                continue
            if not data:
                fail(c, "closed by peer", now)
                continue
            c.buf += data
            *lines, c.buf = c.buf.split(b"\n")
            for line in lines:
                parts = line.decode(errors="replace").split()
                if len(parts) != 2 or not parts[1].isdigit():
                    c.bad_replies += 1
                    continue
                name = parts[0]
                if c.backend is None:
                    c.backend = name
                if name not in c.backends:
                    c.backends.append(name)
                gap = now - c.last_reply
                if gap > c.max_gap:
                    c.max_gap, c.max_gap_end = gap, now
                c.last_reply = now
                c.replies += 1
        now = time.monotonic()
        if now >= next_report:
            write_report(now)
            next_report = now + 0.2
    write_report(time.monotonic())
    for c in conns:
        if c.sock is not None:
            c.sock.close()


if __name__ == "__main__":
    main()
