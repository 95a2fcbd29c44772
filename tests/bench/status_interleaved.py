#!/usr/bin/env python3
"""STATUS latency of cimap and the reference Dovecot, interleaved (not a test).

bench_mailbox.py measures cimap first and Dovecot a minute later, so machine noise that comes and
goes lands on one server only. Here both servers hold the same N messages at the same time and
the calls alternate in blocks of 500 (cimap, Dovecot, cimap, ...), ROUNDS blocks each, so both see
the same conditions. Prints p50 / p90 / p99 / p99.9 over all calls of each server.

  status_interleaved.py [N] [ROUNDS]       (default 100000 messages, 20 rounds = 10,000 calls)
"""
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)
import harness  # noqa: E402
import bench_mailbox  # noqa: E402

BLOCK = 500


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    redis = harness.Redis()
    server = harness.Cimapd(redis.url)
    harness.wait_for_user(redis)
    time.sleep(0.5)
    bench_mailbox.load_cimap(server.port, n, "Big")
    subprocess.run(["bash", os.path.join(bench_mailbox.SHARED, "dovecot", "start.sh"), "10143", "1"],
                   check=True, stdout=subprocess.DEVNULL)
    try:
        bench_mailbox.load_dovecot("test1", n)
        # Dovecot rescans a maildir whose directory changed in the last seconds on every sync:
        # let the fresh one age first, as it would on a real server.
        time.sleep(10)
        c = bench_mailbox.Imap(server.port, "demouser", "demopass")
        d = bench_mailbox.Imap(10143, "test1", "pass")
        c.cmd("SELECT Big")  # both warm: indexes built, caches filled
        d.cmd("SELECT INBOX")
        cs = bench_mailbox.Imap(server.port, "demouser", "demopass")
        ds = bench_mailbox.Imap(10143, "test1", "pass")
        lat = {"cimap": [], "dovecot": []}
        for who, conn, box in (("cimap", cs, "Big"), ("dovecot", ds, "INBOX")):
            for _ in range(200):  # warm-up, not counted
                conn.cmd(f"STATUS {box} (MESSAGES UNSEEN UIDNEXT)")
        for _ in range(rounds):
            for who, conn, box in (("cimap", cs, "Big"), ("dovecot", ds, "INBOX")):
                cmd = f"STATUS {box} (MESSAGES UNSEEN UIDNEXT)"
                for _ in range(BLOCK):
                    t = time.perf_counter()
                    conn.cmd(cmd)
                    lat[who].append((time.perf_counter() - t) * 1000)
        print(f"STATUS, {n} messages, {rounds * BLOCK} calls each, interleaved in blocks of {BLOCK}:")
        for who, v in lat.items():
            v.sort()
            q = lambda p: v[min(len(v) - 1, int(len(v) * p))]  # noqa: E731
            print(f"  {who:8s} p50 {q(0.5):.3f}  p90 {q(0.9):.3f}  p99 {q(0.99):.3f}  "
                  f"p99.9 {q(0.999):.3f} ms")
    finally:
        subprocess.run(["bash", os.path.join(bench_mailbox.SHARED, "dovecot", "stop.sh")],
                       stdout=subprocess.DEVNULL)
        server.stop()
        server.cleanup()
        redis.stop()


if __name__ == "__main__":
    main()
