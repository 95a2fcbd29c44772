#!/usr/bin/env python3
"""FETCH benchmark (not run by CI): loads INBOX with N messages (the messages of
../shared/bench/make_maildir.py, with its flags, by pipelined MULTIAPPEND over a few connections),
then times UID FETCH 1:* (FLAGS), FETCH 1:* (ENVELOPE) and FETCH 1:* BODY.PEEK[] (with cimapd's
peak RSS above idle), a 50 MB BODY.PEEK[] (peak RSS), and counts Redis commands per FETCH.
Optionally runs ../shared/bench/bigmailbox.py against the loaded server.

usage: bench_fetch.py [--n 10000] [--big-mb 50] [--bigmailbox] [--cimapd PATH]
(100,000 is the yardstick; 10,000 is a quick run.) Uses a plain (non-sanitizer) build:
build/cimapd by default, or CIMAPD.
"""

import argparse
import os
import random
import re
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness  # noqa: E402

SHARED = os.path.join(harness.ROOT, "..", "shared", "bench")


class Client:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=600)
        self.f = self.s.makefile("rb", buffering=1 << 20)
        self.n = 0
        self.f.readline()

    def cmd(self, text, payload=b"", count_only=False):
        """Runs a command; returns (number of untagged responses, bytes read, tagged line)."""
        self.n += 1
        tag = b"t%d" % self.n
        self.s.sendall(tag + b" " + text.encode() + payload + b"\r\n")
        untagged = 0
        nbytes = 0
        while True:
            line = self.f.readline()
            if not line:
                raise EOFError("closed")
            nbytes += len(line)
            m = re.search(rb"~?\{(\d+)\}\r\n$", line)
            while m:
                left = int(m.group(1))
                while left > 0:
                    chunk = self.f.read(min(left, 1 << 20))
                    left -= len(chunk)
                    nbytes += len(chunk)
                more = self.f.readline()
                nbytes += len(more)
                m = re.search(rb"~?\{(\d+)\}\r\n$", more)
            if line.startswith(tag + b" "):
                return untagged, nbytes, line
            untagged += 1


def messages(n):
    """The messages and flags of make_maildir.py (same seed, same bodies)."""
    rnd = random.Random(1)
    for i in range(n):
        flags = ("\\Flagged " if i % 17 == 0 else "") + ("\\Seen" if i % 3 else "")
        body = (f"From: user{i % 500}@example.org\r\nTo: big@example.org\r\n"
                f"Subject: message {i} about {rnd.choice(['budget', 'meeting', 'release', 'invoice'])}\r\n"
                f"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\nMessage-ID: <{i}@bench>\r\n\r\n"
                f"body of message {i}\r\n" + "x" * rnd.randint(100, 2000) + "\r\n")
        yield flags.strip(), body.encode()


def load(port, n, conns=4, per_append=500):
    msgs = list(messages(n))
    chunks = [msgs[k:k + per_append] for k in range(0, n, per_append)]
    lock = threading.Lock()
    errors = []

    def worker():
        c = Client(port)
        c.cmd("LOGIN demouser demopass")
        while True:
            with lock:
                if not chunks:
                    break
                chunk = chunks.pop(0)
            parts = b" ".join(b"(%s) {%d+}\r\n%s" % (f.encode(), len(b), b) for f, b in chunk)
            _, _, tagged = c.cmd("APPEND INBOX ", parts)
            if b" OK" not in tagged:
                errors.append(tagged)
                break

    threads = [threading.Thread(target=worker) for _ in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError("APPEND failed: %r" % errors[0])


class RssSampler:
    def __init__(self, server):
        self.server = server
        self.peak = 0
        self.stop = False
        self.t = threading.Thread(target=self.run)

    def run(self):
        while not self.stop:
            self.peak = max(self.peak, self.server.rss_kib())
            time.sleep(0.002)

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *exc):
        self.stop = True
        self.t.join()


def redis_commands(r):
    info = r.call("INFO", "stats").decode()
    return int(re.search(r"total_commands_processed:(\d+)", info).group(1))


def restart(server, redis):
    server.stop()
    server.cleanup()
    fresh = harness.Cimapd(redis.url, "--max-literal", str(128 << 20))
    time.sleep(0.3)
    return fresh


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--big-mb", type=int, default=50)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--bigmailbox", action="store_true")
    ap.add_argument("--cimapd", default=os.environ.get("CIMAPD", harness.CIMAPD))
    args = ap.parse_args()
    harness.CIMAPD = args.cimapd

    redis = harness.Redis()
    server = harness.Cimapd(redis.url, "--max-literal", str(128 << 20))
    try:
        harness.wait_for_user(redis)
        time.sleep(0.5)
        t0 = time.monotonic()
        load(server.port, args.n)
        print(f"loaded {args.n} messages in {time.monotonic() - t0:.1f} s")
        rc = redis.client()
        c = Client(server.port)
        c.cmd("LOGIN demouser demopass")
        t = time.perf_counter()
        c.cmd("SELECT INBOX")
        print(f"{'SELECT INBOX':32s} {(time.perf_counter() - t) * 1000:9.1f} ms")
        for label, cmd in (("UID FETCH 1:* (FLAGS)", "UID FETCH 1:* (FLAGS)"),
                           ("FETCH 1:* (ENVELOPE)", "FETCH 1:* (ENVELOPE)"),
                           ("FETCH 1:* (BODYSTRUCTURE)", "FETCH 1:* (BODYSTRUCTURE)"),
                           ("FETCH 1:* BODY.PEEK[HEADER]", "FETCH 1:* BODY.PEEK[HEADER]")):
            times = []
            for _ in range(args.runs):
                before = redis_commands(rc)
                t = time.perf_counter()
                un, nbytes, tagged = c.cmd(cmd)
                times.append((time.perf_counter() - t) * 1000)
                calls = redis_commands(rc) - before
            times.sort()
            print(f"{label:32s} {times[len(times) // 2]:9.1f} ms median of {args.runs} "
                  f"(best {times[0]:.1f})  {un} responses, {nbytes / 1e6:.1f} MB, "
                  f"{calls} Redis commands, {tagged.split()[1].decode()}")
        # Peak RSS on a fresh cimapd (same Redis), so earlier commands' memory does not hide it.
        server = restart(server, redis)
        c = Client(server.port)
        c.cmd("LOGIN demouser demopass")
        c.cmd("EXAMINE INBOX")
        idle = server.rss_kib()
        with RssSampler(server) as s:
            t = time.perf_counter()
            un, nbytes, tagged = c.cmd("FETCH 1:* BODY.PEEK[]")
            dt = (time.perf_counter() - t) * 1000
        print(f"{'FETCH 1:* BODY.PEEK[]':32s} {dt:9.1f} ms  {un} responses, {nbytes / 1e6:.1f} MB; "
              f"RSS idle {idle / 1024:.1f} MiB, peak +{(s.peak - idle) / 1024:.1f} MiB")

        if args.big_mb > 0:
            c.cmd("CREATE Big")
            line = b"y" * 78 + b"\r\n"
            body = b"From: a@example.org\r\nSubject: big\r\n\r\n" + line * ((args.big_mb << 20) // 80)
            t = time.perf_counter()
            _, _, tagged = c.cmd("APPEND Big {%d+}\r\n" % len(body), body)
            print(f"{'APPEND %d MB' % args.big_mb:32s} {(time.perf_counter() - t) * 1000:9.1f} ms "
                  f"{tagged.split()[1].decode()}")
            server = restart(server, redis)
            c = Client(server.port)
            c.cmd("LOGIN demouser demopass")
            c.cmd("EXAMINE Big")
            idle = server.rss_kib()
            with RssSampler(server) as s:
                t = time.perf_counter()
                un, nbytes, tagged = c.cmd("FETCH 1 BODY.PEEK[]")
                dt = (time.perf_counter() - t) * 1000
            print(f"{'FETCH 1 BODY.PEEK[] (%d MB)' % args.big_mb:32s} {dt:9.1f} ms  "
                  f"{nbytes / 1e6:.1f} MB; RSS idle {idle / 1024:.1f} MiB, "
                  f"peak +{(s.peak - idle) / 1024:.1f} MiB")
        rc.close()
        if args.bigmailbox:
            server = restart(server, redis)
            subprocess.run([sys.executable, os.path.join(SHARED, "bigmailbox.py"),
                            str(server.port), "demouser", "demopass"], check=False)
    finally:
        server.stop()
        server.cleanup()
        redis.stop()


if __name__ == "__main__":
    main()
