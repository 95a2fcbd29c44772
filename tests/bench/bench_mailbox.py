#!/usr/bin/env python3
"""Mailbox benchmarks of issue 5, cimap and the reference Dovecot in the same run (not a test).

  bench_mailbox.py [N]        (default 100000; needs build/cimapd, redis-server, dovecot-imapd)

Loads N messages (the generator of ../shared/bench/make_maildir.py) into cimap by APPEND over
several connections and into a private Dovecot by writing its maildir, then measures, warm:
  - SELECT INBOX (first, again) and STATUS p50/p99 over 2,000 calls (DESIGN.md targets: SELECT
    <= 1 ms with few holes, <= 10 ms with 30% of UIDs expunged; STATUS p99 <= Dovecot's);
  - the same after expunging 30% of the messages at random;
  - STATUS on a 1,000-message mailbox (must equal the 100,000 one);
  - APPEND throughput of 10 KB messages through one cimapd (and Dovecot);
  - Redis memory per message (INFO memory), and Redis calls per SELECT / STATUS (commandstats).
"""
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness  # noqa: E402

SHARED = os.path.join(os.path.dirname(ROOT), "shared", "bench")
DOVECOT_PORT = 10143


def body(i, rnd):
    return (f"From: user{i % 500}@example.org\r\nTo: big@example.org\r\n"
            f"Subject: message {i} about {rnd.choice(['budget', 'meeting', 'release', 'invoice'])}\r\n"
            f"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\nMessage-ID: <{i}@bench>\r\n\r\n"
            f"body of message {i}\r\n" + "x" * rnd.randint(100, 2000) + "\r\n").encode()


class Imap:
    def __init__(self, port, user, pw):
        self.s = socket.create_connection(("127.0.0.1", port), 600)
        self.f = self.s.makefile("rb")
        self.n = 0
        self.f.readline()
        assert b" OK" in self.cmd(f"LOGIN {user} {pw}")[-1]

    def cmd(self, text, literal=None):
        self.n += 1
        tag = b"t%d" % self.n
        if literal is None:
            self.s.sendall(tag + b" " + text.encode() + b"\r\n")
        else:
            self.s.sendall(tag + b" " + text.encode() + b" {%d+}\r\n" % len(literal) + literal + b"\r\n")
        lines = []
        while True:
            line = self.f.readline()
            if not line:
                raise EOFError
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines

    def pipeline_append(self, mailbox, messages, flags=""):
        """APPENDs with LITERAL+, many in flight, then reads the answers. flags: one string for
        all, or one per message."""
        out = []
        for k, m in enumerate(messages):
            f = flags if isinstance(flags, str) else flags[k]
            out.append(b"p%d APPEND %s %s{%d+}\r\n%s\r\n" % (k, mailbox.encode(), f.encode(), len(m), m))
        self.s.sendall(b"".join(out))
        done = 0
        while done < len(messages):
            line = self.f.readline()
            if line.startswith(b"p"):
                assert b" OK" in line, line
                done += 1


def timed(c, cmd):
    t = time.perf_counter()
    lines = c.cmd(cmd)
    return (time.perf_counter() - t) * 1000, lines


STATUS_CALLS = 2000  # p99 of 2,000 calls: the 20th slowest, not one unlucky sample


def measure(port, user, pw, box="INBOX"):
    c = Imap(port, user, pw)
    res = {}
    for label in ("select1", "select2"):
        dt, lines = timed(c, f"SELECT {box}")
        assert b"OK" in lines[-1], lines[-1]
        res[label] = dt
    y = Imap(port, user, pw)
    lat = []
    for _ in range(STATUS_CALLS):
        dt, _ = timed(y, f"STATUS {box} (MESSAGES UNSEEN UIDNEXT)")
        lat.append(dt)
    lat.sort()
    res["status_p50"], res["status_p99"] = lat[STATUS_CALLS // 2], lat[STATUS_CALLS * 99 // 100]
    return res


def maildir_flags(i, extra=""):
    """The flags ../shared/bench/make_maildir.py gives message i (every third unseen, every 17th
    flagged), so both servers hold the same mailbox."""
    f = (["\\Flagged"] if i % 17 == 0 else []) + (["\\Seen"] if i % 3 else []) + ([extra] if extra else [])
    return "(%s) " % " ".join(f)


def load_cimap(port, n, box, deleted_ratio=0.0, conns=4):
    rnd = random.Random(1)
    msgs = [body(i, rnd) for i in range(n)]
    drnd = random.Random(7)
    dele = [drnd.random() < deleted_ratio for _ in range(n)]
    c = Imap(port, "demouser", "demopass")
    c.cmd(f"CREATE {box}")
    def worker(k):
        w = Imap(port, "demouser", "demopass")
        for start in range(k * 500, n, conns * 500):
            chunk = range(start, min(start + 500, n))
            plain = [i for i in chunk if not dele[i]]
            gone = [i for i in chunk if dele[i]]
            if plain:
                w.pipeline_append(box, [msgs[i] for i in plain], [maildir_flags(i) for i in plain])
            if gone:
                w.pipeline_append(box, [msgs[i] for i in gone],
                                  [maildir_flags(i, "\\Deleted") for i in gone])
    t = time.perf_counter()
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(conns)]
    for th in ts:
        th.start()
    for th in ts:
        th.join()
    dt = time.perf_counter() - t
    if deleted_ratio:
        c.cmd(f"SELECT {box}")
        c.cmd("CLOSE")
    return dt


def load_dovecot(user, n, deleted_ratio=0.0):
    d = f"/tmp/cimap-dovecot/mail/{user}"
    shutil.rmtree(d, ignore_errors=True)
    subprocess.run([sys.executable, os.path.join(SHARED, "make_maildir.py"), d, str(n)], check=True)
    if deleted_ratio:
        drnd = random.Random(7)
        cur = os.path.join(d, "cur")
        for name in sorted(os.listdir(cur)):
            if drnd.random() < deleted_ratio:
                os.unlink(os.path.join(cur, name))
    subprocess.run(["chown", "-R", "mail:mail", d], check=True)


def append_throughput(port, user, pw, box, count=2000):
    msg = b"From: a@example.org\r\nSubject: ten\r\n\r\n" + (b"y" * 98 + b"\r\n") * 100
    c = Imap(port, user, pw)
    c.cmd(f"CREATE {box}")
    t = time.perf_counter()
    for _ in range(count):
        c.cmd(f"APPEND {box}", msg)
    return count / (time.perf_counter() - t)


def redis_info(rc, section):
    raw = rc.call("INFO", section).decode()
    return dict(l.split(":", 1) for l in raw.splitlines() if ":" in l)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
    redis = harness.Redis()
    server = harness.Cimapd(redis.url, "--max-args", "100000")
    harness.wait_for_user(redis)
    time.sleep(0.5)
    rc = redis.client()
    mem0 = int(redis_info(rc, "memory")["used_memory"])
    t_load = load_cimap(server.port, n, "Big")
    mem1 = int(redis_info(rc, "memory")["used_memory"])
    load_cimap(server.port, 1000, "Small")
    load_cimap(server.port, n, "Holes", deleted_ratio=0.3)
    print(f"cimap: loaded {n} messages in {t_load:.1f} s ({n / t_load:.0f} APPEND/s over 4 connections)")
    print(f"redis memory per message (content included): {(mem1 - mem0) / n:.0f} B")

    rc.call("CONFIG", "RESETSTAT")
    big = measure(server.port, "demouser", "demopass", "Big")
    stats = redis_info(rc, "commandstats")
    calls = sum(int(re.search(r"calls=(\d+)", v).group(1)) for v in stats.values())
    small = measure(server.port, "demouser", "demopass", "Small")
    holes = measure(server.port, "demouser", "demopass", "Holes")
    print(f"redis calls for 2 SELECT + {STATUS_CALLS} STATUS (+2 LOGIN): {calls}")
    cimap_append = append_throughput(server.port, "demouser", "demopass", "Ten")

    dov = None
    if shutil.which("dovecot") or os.path.exists(os.path.join(SHARED, "dovecot", "start.sh")):
        subprocess.run(["bash", os.path.join(SHARED, "dovecot", "start.sh"), str(DOVECOT_PORT), "3"],
                       check=True)
        try:
            load_dovecot("test1", n)
            load_dovecot("test2", 1000)
            load_dovecot("test3", n, deleted_ratio=0.3)
            measure(DOVECOT_PORT, "test1", "pass")  # warm the index
            dov = {
                "big": measure(DOVECOT_PORT, "test1", "pass"),
                "small": measure(DOVECOT_PORT, "test2", "pass"),
            }
            measure(DOVECOT_PORT, "test3", "pass")
            dov["holes"] = measure(DOVECOT_PORT, "test3", "pass")
            dov["append"] = append_throughput(DOVECOT_PORT, "test2", "pass", "Ten")
        finally:
            subprocess.run(["bash", os.path.join(SHARED, "dovecot", "stop.sh")])

    def row(label, key, c, d):
        ratio = f"{c[key] / d[key]:.2f}x" if d else "-"
        dv = f"{d[key]:8.2f}" if d else "       -"
        print(f"{label:34s} cimap {c[key]:8.2f} ms   dovecot {dv} ms   ratio {ratio}")

    print(f"\n{n} messages, warm:")
    for label, res, dres in (("", big, dov and dov["big"]), ("30% expunged: ", holes, dov and dov["holes"]),
                             ("1,000 messages: ", small, dov and dov["small"])):
        row(label + "SELECT (first)", "select1", res, dres)
        row(label + "SELECT (again)", "select2", res, dres)
        row(label + "STATUS p50", "status_p50", res, dres)
        row(label + "STATUS p99", "status_p99", res, dres)
    print(f"APPEND 10 KB, one connection: cimap {cimap_append:.0f}/s"
          + (f", dovecot {dov['append']:.0f}/s, ratio {cimap_append / dov['append']:.2f}x" if dov else ""))
    rc.close()
    server.stop()
    server.cleanup()
    redis.stop()


if __name__ == "__main__":
    main()
