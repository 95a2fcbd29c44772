#!/usr/bin/env python3
"""Benchmark of the mailbox scripts on a 100,000-message mailbox (not a test; not run by CI).

Measures, against a private redis-server (tests/integration/harness.py):
  * Redis memory per message, excluding content: INFO memory before/after 100,000 small appends
    (distinct bytes, each with a Message-ID), minus the MEMORY USAGE of every content hash and raw
    key; the per-key breakdown is printed too;
  * the Redis-side time (SLOWLOG with a 0 us threshold) and the client round trip of `append` of one
    10 KB message into that mailbox (inline and staged), and of `mbx_select` on it;
  * mbx_select again on a mailbox of 100,000 messages with ~30% of the UIDs missing at random
    (about 30,000 runs), returning 1,000 runs and then reading the rest with ZRANGE.

    python3 tests/bench/bench_lua_mailbox.py [--messages 100000] [--repeat 200]
"""
import argparse
import os
import random
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness  # noqa: E402
import test_lua_mailbox as t  # noqa: E402


def info_field(r, section, field):
    for line in r.call("INFO", section).decode().splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1]
    raise KeyError(field)


def slowlog_us(r, fn, repeat):
    """Runs fn repeat times; returns (redis-side us list, round-trip us list): the Redis side is the
    sum of the SLOWLOG durations of the commands fn sent (the threshold is 0 us)."""
    server, client = [], []
    for _ in range(repeat):
        r.call("SLOWLOG", "RESET")
        start = time.perf_counter()
        fn()
        client.append((time.perf_counter() - start) * 1e6)
        entries = r.call("SLOWLOG", "GET", 128)
        server.append(sum(e[2] for e in entries if e[3][0].upper() not in (b"SLOWLOG", b"CONFIG")))
    return server, client


def summary(values):
    values = sorted(values)
    return "median %.0f us, p99 %.0f us (n=%d)" % (statistics.median(values),
                                                 values[min(len(values) - 1, int(len(values) * 0.99))],
                                                 len(values))


def fill(s, mbxid, count, holes=0.0, seed=1, tag="m"):
    """Appends count small distinct messages, one per call (pipelined), optionally leaving a
    fraction of UIDs unused at random (as random expunges would)."""
    rng = random.Random(seed)
    cmds = []
    for i in range(count):
        if holes and rng.random() < holes / (1 - holes):
            cmds.append(["HINCRBY", s.k.mbx(mbxid), "uidnext", 1])
        m = t.Msg(b"Message-ID: <%s%d@bench>\r\n\r\n%s %d\r\n" % (tag.encode(), i, tag.encode(), i),
                  flags="\\Seen" if i % 3 else "", date="1700000000", msgid="<%s%d@bench>" % (tag, i))
        keys, args = s.append_keys_args(mbxid, [m])
        cmds.append(s.evalsha_cmd("append", keys, args))
    replies = t.pipeline(s.r, cmds, chunk=1000)
    errors = [x for x in replies if isinstance(x, RuntimeError)]
    if errors:
        raise errors[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=100000)
    ap.add_argument("--repeat", type=int, default=200)
    opts = ap.parse_args()
    t.setUpModule()
    try:
        r = t.REDIS.client()
        s = t.Store(r)
        s.ns_create()
        _, inbox = s.create("INBOX")
        r.call("MEMORY", "PURGE")
        before = int(info_field(r, "memory", "used_memory"))
        start = time.monotonic()
        fill(s, inbox, opts.messages)
        fill_s = time.monotonic() - start
        r.call("MEMORY", "PURGE")
        after = int(info_field(r, "memory", "used_memory"))
        content_keys = [k for k in r.keys(s.k.prefix + "content/*")]
        usage = t.pipeline(r, [["MEMORY", "USAGE", k, "SAMPLES", "0"] for k in content_keys], chunk=1000)
        content = sum(usage)
        print("fill: %d appends (one message each, pipelined) in %.1f s, %.0f appends/s"
              % (opts.messages, fill_s, opts.messages / fill_s))
        print("memory: %d bytes total for %d messages = %.0f B/message; content (hash + raw) %.0f B/message;"
              " excluding content %.0f B/message"
              % (after - before, opts.messages, (after - before) / opts.messages, content / opts.messages,
                 (after - before - content) / opts.messages))
        parts = {p or "(hash)": r.call("MEMORY", "USAGE", s.k.mbx(inbox, p), "SAMPLES", "0") or 0
                 for p in t.MBX_PARTS}
        parts["threads"] = r.call("MEMORY", "USAGE", s.k.threads, "SAMPLES", "0")
        print("per key (bytes/message): " + ", ".join("%s %.1f" % (k, v / opts.messages)
                                                         for k, v in parts.items()))

        r.call("CONFIG", "SET", "slowlog-log-slower-than", 0)
        body = os.urandom(5000).hex().encode()[:10240]
        serial = [0]

        def append_inline():
            serial[0] += 1
            s.append(inbox, [t.Msg(b"%d\r\n" % serial[0] + body, msgid="<big%d@bench>" % serial[0])])

        def append_staged():
            serial[0] += 1
            raw = b"%d\r\n" % serial[0] + body
            sid = t.new_staging_id()
            s.evalsha("staging_append", [s.k.meta, s.k.staging(sid)], [raw, 3600])
            s.append(inbox, [t.Msg(raw, staging=sid, msgid="<st%d@bench>" % serial[0])])

        server, client = slowlog_us(r, append_inline, opts.repeat)
        print("append 10 KB inline into %d messages: redis %s; round trip %s"
              % (opts.messages, summary(server), summary(client)))
        server, client = slowlog_us(r, append_staged, opts.repeat)
        print("append 10 KB staged (staging_append + append): redis %s; round trip %s"
              % (summary(server), summary(client)))
        server, client = slowlog_us(r, lambda: s.select(inbox, claim=0, max_runs=1000), opts.repeat)
        print("mbx_select (EXAMINE, 1 run): redis %s; round trip %s" % (summary(server), summary(client)))
        server, client = slowlog_us(r, lambda: s.select(inbox, claim=1, max_runs=1000), opts.repeat)
        print("mbx_select (SELECT, claims \\Recent): redis %s; round trip %s"
              % (summary(server), summary(client)))

        _, holes = s.create("Holes")
        r.call("CONFIG", "SET", "slowlog-log-slower-than", 10000000)
        fill(s, holes, opts.messages, holes=0.3, tag="h")
        r.call("CONFIG", "SET", "slowlog-log-slower-than", 0)
        runs = r.call("ZCARD", s.k.mbx(holes, "/runs"))

        def select_all_runs():
            reply = s.select(holes, claim=0, max_runs=1000)
            got = len(reply) - 9
            while got < reply[8]:
                got += len(r.call("ZRANGE", s.k.mbx(holes, "/runs"), got, got + 4999))

        server, client = slowlog_us(r, lambda: s.select(holes, claim=0, max_runs=1000), opts.repeat // 4 or 1)
        print("mbx_select, %d messages in %d runs (~30%% holes), 1,000 runs returned: redis %s; round trip %s"
              % (opts.messages, runs, summary(server), summary(client)))
        server, client = slowlog_us(r, select_all_runs, opts.repeat // 4 or 1)
        print("  ... plus ZRANGE of the remaining runs in 5,000s: redis %s; round trip (Python client,"
              " parsing dominates) %s" % (summary(server), summary(client)))
        r.close()
    finally:
        t.tearDownModule()


if __name__ == "__main__":
    main()
