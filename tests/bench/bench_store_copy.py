#!/usr/bin/env python3
"""Benchmark of STORE, COPY and EXPUNGE on a big mailbox (not run by CI).

Fills a mailbox with N small messages (MULTIAPPEND, 1,000 per command), then times through one
cimapd, each on a warm connection:
  STORE 1:* +FLAGS (\\Seen)     (every untagged FETCH read by the client)
  COPY 1:* <other mailbox>     (staged batches + one commit)
  EXPUNGE of N/2 messages      (STORE 1:N/2 +FLAGS.SILENT (\\Deleted) first, not timed)
and reports for each: wall time, Redis calls per command, and Redis blocking
per batch (the duration of each EVALSHA: a script blocks Redis while it runs). Redis calls are
counted in a second pass on a second mailbox with MONITOR (which marks the commands a script
runs, so only the front end's own requests are counted); times come from the first pass.

    tests/bench/bench_store_copy.py [--messages 100000] [--cimapd build/cimapd]

SLOWLOG at threshold 0 also records every command a script runs, which adds to the scripts'
measured time: the blocking figures are upper bounds.
"""
import argparse
import collections
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness  # noqa: E402


class Client:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=600)
        self.buf = b""
        self.n = 0
        self.line()
        self.cmd(b"LOGIN demouser demopass")

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def cmd(self, text, payload=b""):
        self.n += 1
        tag = b"b%d" % self.n
        self.sock.sendall(tag + b" " + text + payload + b"\r\n")
        count = 0
        while True:
            line = self.line()
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise RuntimeError(line)
                return count, line
            count += 1


def message(i):
    return (b"From: bench@example.org\r\nTo: demouser@example.org\r\nSubject: bench %d\r\n"
            b"Message-ID: <bench.%d@example.org>\r\n\r\nBody %d.\r\n" % (i, i, i))


def fill(c, box, n):
    for start in range(0, n, 1000):
        parts = []
        for i in range(start, min(n, start + 1000)):
            m = message(i)
            parts.append(b" {%d+}\r\n" % len(m) + m)
        c.cmd(b"APPEND " + box, b"".join(parts))


class Monitor:
    """Counts the commands clients send (not those scripts run) while it is active."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(b"MONITOR\r\n")
        self.calls = collections.Counter()
        self.active = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        buf = b""
        while True:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                return
            buf += chunk
            *lines, buf = buf.split(b"\r\n")
            for line in lines:
                if self.active and line.startswith(b"+") and b" lua] " not in line and b'"' in line:
                    name = line.split(b'"', 2)[1].decode().upper()
                    if name not in ("SLOWLOG", "PING", "SUBSCRIBE", "UNSUBSCRIBE"):
                        self.calls[name] += 1


def measured(r, c, text, mon=None):
    r.call("SLOWLOG", "RESET")
    if mon is not None:
        mon.calls.clear()
        mon.active = True
    t0 = time.perf_counter()
    lines, tagged = c.cmd(text)
    wall = time.perf_counter() - t0
    if mon is not None:
        time.sleep(0.5)
        mon.active = False
    log = r.call("SLOWLOG", "GET", -1)
    script_us = [e[2] for e in log if e[3][0].decode().upper() == "EVALSHA"]
    return wall, lines, tagged, (mon.calls.copy() if mon else None), sorted(script_us)


def report(what, n, wall, lines, calls, script_us):
    print("%-34s %8.1f ms  %6.2f us/msg  untagged %d" % (what, wall * 1000, wall * 1e6 / n, lines))
    print("    Redis calls by cimapd: %d (%s)" % (sum(calls.values()), ", ".join(
        "%s %d" % kv for kv in sorted(calls.items()))))
    if script_us:
        p50 = script_us[len(script_us) // 2]
        print("    Redis blocking per script call: n=%d p50 %.2f ms, max %.2f ms, sum %.1f ms" %
              (len(script_us), p50 / 1000, script_us[-1] / 1000, sum(script_us) / 1000))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=100000)
    ap.add_argument("--cimapd", default=os.environ.get("CIMAPD", os.path.join(harness.ROOT, "build", "cimapd")))
    args = ap.parse_args()
    harness.CIMAPD = args.cimapd
    n = args.messages
    redis = harness.Redis()
    d = harness.Cimapd(redis.url)
    try:
        harness.wait_for_user(redis)
        r = redis.client()
        r.call("CONFIG", "SET", "slowlog-log-slower-than", 0)
        r.call("CONFIG", "SET", "slowlog-max-len", 1000000)
        c = Client(d.port)
        c.cmd(b"CREATE Big")
        c.cmd(b"CREATE Big2")
        c.cmd(b"CREATE Copies")
        c.cmd(b"CREATE Copies2")
        t0 = time.perf_counter()
        fill(c, b"Big", n)
        print("filled %d messages in %.1f s" % (n, time.perf_counter() - t0))
        fill(c, b"Big2", n)
        mon = None  # MONITOR slows Redis down: only during the counting pass
        half = n // 2
        steps = [("STORE 1:* +FLAGS (\\Seen)", b"STORE 1:* +FLAGS (\\Seen)", n),
                 ("STORE 1:* -FLAGS.SILENT (\\Seen)", b"STORE 1:* -FLAGS.SILENT (\\Seen)", n),
                 ("COPY 1:*", b"COPY 1:* %s", n),
                 (None, b"STORE 1:%d +FLAGS.SILENT (\\Deleted)" % half, half),
                 ("EXPUNGE of %d" % half, b"EXPUNGE", half)]
        results = {}
        for box, dest, counting in ((b"Big", b"Copies", False), (b"Big2", b"Copies2", True)):
            c.cmd(b"SELECT " + box)
            if counting:
                mon = Monitor(redis.port)
            for what, text, count in steps:
                if b"%s" in text:
                    text = text % dest
                if what is None:
                    c.cmd(text)
                    continue
                res = measured(r, c, text, mon if counting else None)
                if counting:
                    results[what] = results[what][:3] + (res[3],) + results[what][4:]
                else:
                    results[what] = res
                    if what.startswith("COPY"):
                        print("    %s" % res[2].decode())
        for what, _, count in steps:
            if what is not None:
                wall, lines, _, calls, us = results[what]
                report(what, count, wall, lines, calls, us)
        used = r.call("INFO", "memory")
        print("redis used_memory: %s" % [l for l in used.decode().splitlines()
                                         if l.startswith("used_memory_human")][0])
        r.close()
    finally:
        d.stop()
        d.cleanup()
        redis.stop()


if __name__ == "__main__":
    main()
