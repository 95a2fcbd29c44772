#!/usr/bin/env python3
"""The shared large-mailbox yardstick (../shared/bench/bigmailbox.py) against cimap and the
reference Dovecot in the same run, same messages and flags (../shared/bench/make_maildir.py's
generator), both warm (each measured twice; the second run is reported), and the yardstick client's
own floor (client_floor.py: cimap's answers replayed from memory); then the big answers again
with fast_client.py, which only receives bytes, so the server's own time shows. Not a test.

  yardstick.py [N]     (default 100000)
"""
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, HERE)
import harness  # noqa: E402
import bench_mailbox  # noqa: E402

SHARED = bench_mailbox.SHARED
BIG = os.path.join(SHARED, "bigmailbox.py")
FAST = os.path.join(HERE, "fast_client.py")


def run(port, user, pw, script=BIG):
    out = subprocess.run([sys.executable, script, str(port), user, pw], capture_output=True, text=True,
                         timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return out.stdout


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
    redis = harness.Redis()
    server = harness.Cimapd(redis.url)
    harness.wait_for_user(redis)
    time.sleep(0.5)
    # bigmailbox.py selects INBOX: load the messages into the demo user's INBOX.
    bench_mailbox.load_cimap(server.port, n, "INBOX")
    run(server.port, "demouser", "demopass")
    cimap = run(server.port, "demouser", "demopass")
    cimap_fast = run(server.port, "demouser", "demopass", FAST)
    # The client's own floor: the same answers replayed from memory by a server that costs nothing.
    floor = subprocess.run([sys.executable, os.path.join(HERE, "client_floor.py"), str(server.port),
                            "demouser", "demopass"], capture_output=True, text=True, timeout=1800)
    server.stop()
    server.cleanup()
    redis.stop()
    print(f"cimap, {n} messages (+5 demo), warm:\n{cimap}")
    print(floor.stdout if floor.returncode == 0 else "client floor failed: " + floor.stderr)
    print(f"cimap, fast client (fast_client.py: bytes only, no parsing):\n{cimap_fast}")
    subprocess.run(["bash", os.path.join(SHARED, "dovecot", "start.sh"), "10143", "1"], check=True)
    try:
        bench_mailbox.load_dovecot("test1", n)
        run(10143, "test1", "pass")
        dov = run(10143, "test1", "pass")
        dov_fast = run(10143, "test1", "pass", FAST)
    finally:
        subprocess.run(["bash", os.path.join(SHARED, "dovecot", "stop.sh")])
    print(f"dovecot, {n} messages, warm:\n{dov}")
    print(f"dovecot, fast client:\n{dov_fast}")


if __name__ == "__main__":
    main()
