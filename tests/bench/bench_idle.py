#!/usr/bin/env python3
"""Live-update benchmarks of issue 8 (not a test).

  bench_idle.py latency [USERS]     notification latency: APPEND through front end A, untagged
                                    EXISTS on an IDLE session on front end B; USERS idling users
                                    (default 1000), p50/p99 over 500 appends; the same against
                                    the reference Dovecot (../shared/bench/dovecot) when present
  bench_idle.py memory [CONNS]      CONNS (default 10000) authenticated IDLE connections on one
                                    cimapd with an INBOX of 1,000 messages selected: RSS per
                                    connection, CPU while idle, Redis connections used

Needs build/cimapd and build/cimap-admin (or CIMAPD / CIMAP_ADMIN), redis-server; raises
RLIMIT_NOFILE itself (run as root for 10,000).
"""
import os
import random
import resource
import selectors
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness  # noqa: E402

SHARED = os.path.join(os.path.dirname(ROOT), "shared", "bench")
MSG = b"From: a@example.org\r\nSubject: ping\r\n\r\nping\r\n"


def raise_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, n)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def idle_session(port, user, pw, box="INBOX"):
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    f = s.makefile("rb")
    f.readline()
    for tag, cmd in ((b"l", b"LOGIN %s %s" % (user.encode(), pw.encode())), (b"s", b"SELECT " + box.encode())):
        s.sendall(tag + b" " + cmd + b"\r\n")
        while True:
            line = f.readline()
            if line.startswith(tag + b" "):
                assert b" OK" in line, line
                break
    s.sendall(b"i IDLE\r\n")
    assert f.readline().startswith(b"+"), "no IDLE continuation"
    s.setblocking(False)
    return s


def appender(port, user, pw):
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"l LOGIN %s %s\r\n" % (user.encode(), pw.encode()))
    while not f.readline().startswith(b"l "):
        pass
    return s, f


def append(s, f, box=b"INBOX"):
    s.sendall(b"a APPEND " + box + b" {%d+}\r\n" % len(MSG) + MSG + b"\r\n")
    while True:
        line = f.readline()
        if line.startswith(b"a "):
            assert b" OK" in line, line
            return


def latency_run(port_a, port_b, users, pw, appends=500):
    sel = selectors.DefaultSelector()
    sessions = {}
    for u in users:
        s = idle_session(port_b, u, pw)
        sessions[u] = s
        sel.register(s, selectors.EVENT_READ, u)
    time.sleep(1.0)
    for s in sessions.values():  # drain anything pending
        try:
            s.recv(65536)
        except BlockingIOError:
            pass
    writers = {}
    rnd = random.Random(3)
    lat = []
    for _ in range(appends):
        u = rnd.choice(users)
        if u not in writers:
            writers[u] = appender(port_a, u, pw)
        s, f = writers[u]
        t0 = time.perf_counter()
        append(s, f)
        got = False
        while not got:
            for key, _ in sel.select(timeout=1):
                data = key.fileobj.recv(65536)
                if key.data == u and b"EXISTS" in data:
                    lat.append((time.perf_counter() - t0) * 1000)
                    got = True
            if time.perf_counter() - t0 > 35:
                lat.append(35000.0)
                break
    for s in sessions.values():
        s.close()
    lat.sort()
    return lat[len(lat) // 2], lat[int(len(lat) * 0.99) - 1]


def latency(nusers):
    raise_nofile(nusers * 2 + 1000)
    redis = harness.Redis()
    a = harness.Cimapd(redis.url, demo=False)
    b = harness.Cimapd(redis.url, demo=False, *[])
    users = ["u%d" % i for i in range(nusers)]
    for u in users:
        subprocess.run([harness.CIMAP_ADMIN, "--redis", redis.url, "set-user", u, "--password-stdin",
                        "--kdf-cost", "1"], input="pw\n", text=True, check=True, capture_output=True)
    p50, p99 = latency_run(a.port, b.port, users, "pw")
    print(f"cimap: APPEND on A -> EXISTS on IDLE on B, {nusers} idling users: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    a.stop(), b.stop(), a.cleanup(), b.cleanup(), redis.stop()
    start = os.path.join(SHARED, "dovecot", "start.sh")
    if os.path.exists(start):
        subprocess.run(["bash", start, "10143", str(nusers)], check=True)
        try:
            dusers = ["test%d" % (i + 1) for i in range(nusers)]
            # Dovecot notices new mail within its IDLE check interval, so fewer samples do.
            p50, p99 = latency_run(10143, 10143, dusers, "pass", appends=60)
            print(f"dovecot: same workload: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
        finally:
            subprocess.run(["bash", os.path.join(SHARED, "dovecot", "stop.sh")])


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        parts = f.read().split(")")[1].split()
    return int(parts[11]) + int(parts[12])


def memory(nconns):
    raise_nofile(nconns + 1000)
    redis = harness.Redis()
    srv = harness.Cimapd(redis.url, "--max-connections", str(nconns + 100), "--max-user-connections", "0")
    harness.wait_for_user(redis)
    time.sleep(0.5)
    s, f = appender(srv.port, "demouser", "demopass")
    for _ in range(1000 - 5):  # the demo INBOX has 5
        append(s, f)
    base = rss_kib(srv.proc.pid)
    conns = []
    for i in range(nconns):
        conns.append(idle_session(srv.port, "demouser", "demopass"))
    time.sleep(2)
    rss = rss_kib(srv.proc.pid)
    t0 = cpu_ticks(srv.proc.pid)
    time.sleep(10)
    idle_cpu = (cpu_ticks(srv.proc.pid) - t0) / os.sysconf("SC_CLK_TCK") / 10 * 100
    rc = redis.client()
    clients = rc.call("INFO", "clients").decode()
    rc.close()
    print(f"{nconns} IDLE connections, INBOX of 1,000 selected: RSS {(rss - base) / nconns:.1f} KiB per "
          f"connection ({base} KiB before, {rss} KiB after), CPU while idle {idle_cpu:.2f}%")
    print("redis " + " ".join(l for l in clients.splitlines() if l.startswith("connected_clients")))
    for c in conns:
        c.close()
    srv.stop(), srv.cleanup(), redis.stop()


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "latency"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else (1000 if what == "latency" else 10000)
    latency(n) if what == "latency" else memory(n)
