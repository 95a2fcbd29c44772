#!/usr/bin/env python3
"""The mailbox scripts of lua/ against a real redis-server (no mocks).

Loads lua/*.lua with SCRIPT LOAD and calls them with EVALSHA, building every key from the formats
of keys/README.md ("Mailboxes and messages"), so this file pins them a second time. Checks each
script's success path down to the fields it writes (and that nothing else exists afterwards),
every error path (the whole keyspace is byte-identical after a refused call), the runs invariant
against a Python model, log trimming, pub/sub wake-ups, content sharing and garbage collection.
Python 3 standard library only; runs in well under a minute.

    python3 tests/integration/test_lua_mailbox.py -v
"""
import hashlib
import os
import random
import sys
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

LUA_DIR = os.path.join(harness.ROOT, "lua")
SCRIPTS = ("ns_create", "mbx_create", "mbx_delete", "mbx_purge", "mbx_rename", "mbx_subscribe",
           "staging_append", "append", "mbx_select", "gc_sweep", "recent_claim")
MBX_PARTS = ("", "/uids", "/runs", "/msg", "/flags", "/modseq", "/unseen", "/deleted", "/log")
MBX_FIELDS = {"uidvalidity", "uidnext", "highestmodseq", "messages", "unseen", "deleted", "recent",
              "recent_uid", "bytes", "keywords", "created"}
LOG_MAX = 10000
LOG_AGE = 7 * 86400

REDIS = None
SHAS = {}


def setUpModule():
    global REDIS
    REDIS = harness.Redis()
    r = REDIS.client()
    for name in SCRIPTS:
        with open(os.path.join(LUA_DIR, name + ".lua"), "rb") as f:
            SHAS[name] = r.call("SCRIPT", "LOAD", f.read()).decode()
    r.close()


def tearDownModule():
    if REDIS is not None:
        REDIS.stop()


def new_mbxid():
    return "F" + uuid.uuid4().hex


def new_staging_id():
    return uuid.uuid4().hex


class Keys:
    """Key names exactly as keys/README.md documents them."""

    def __init__(self, nsid):
        self.nsid = nsid
        self.prefix = "/ns/{%s}/" % nsid
        p = self.prefix
        self.meta, self.mailboxes, self.subscriptions = p + "meta", p + "mailboxes", p + "subscriptions"
        self.threads, self.gc, self.trash, self.channel = p + "threads", p + "gc", p + "trash", p + "channel"

    def mbx(self, mbxid, part=""):
        return "%smbx/%s%s" % (self.prefix, mbxid, part)

    def mbx_all(self, mbxid):
        return [self.mbx(mbxid, part) for part in MBX_PARTS]

    def content(self, sha):
        return "%scontent/%s" % (self.prefix, sha)

    def caches(self, mbxid, uids, kinds):
        """The column-cache keys of the UIDs' chunks (keys_cache_chunks order), kinds per chunk."""
        out, last = [], None
        for u in uids:
            c = int(u) // 1024
            if c != last:
                out += [self.mbx(mbxid, "/cache/%s/%d" % (k, c)) for k in kinds]
                last = c
        return out

    def raw(self, sha):
        return "%scontent/%s/raw" % (self.prefix, sha)

    def staging(self, sid):
        return "%sstaging/%s" % (self.prefix, sid)


class Msg:
    """One message to append: the 11 ARGV fields of append.lua plus where its bytes come from."""

    def __init__(self, body, flags="", date="", msgid="", refs="", staging=None):
        self.body = body if isinstance(body, bytes) else body.encode()
        self.sha = hashlib.sha256(self.body).hexdigest()
        self.size = len(self.body)
        self.flags, self.date, self.msgid, self.refs = flags, date, msgid, refs
        self.staging = staging  # staging id when the bytes were uploaded with staging_append
        self.emailid = "M" + self.sha[:24]
        self.parse, self.env, self.bs = "parse:" + self.sha[:8], "env:" + self.sha[:8], "bs:" + self.sha[:8]

    def argv(self):
        return [self.sha, str(self.size), self.date, self.flags, b"" if self.staging else self.body,
                self.parse, self.env, self.bs, self.msgid, self.refs, self.emailid]


def snapshot(r):
    """Every key with its serialised value and whether it has a TTL."""
    return {k: (r.call("DUMP", k), r.call("PTTL", k) >= 0) for k in r.keys()}


def hgetall(r, key):
    flat = r.call("HGETALL", key)
    return {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}


def zmembers(r, key):
    flat = r.call("ZRANGE", key, 0, -1, "WITHSCORES")
    return [(flat[i].decode(), int(float(flat[i + 1]))) for i in range(0, len(flat), 2)]


def runs_of(uids):
    """The documented runs of a UID set: [(first, last), ...] ascending, maximal."""
    out = []
    for uid in sorted(uids):
        if out and out[-1][1] == uid - 1:
            out[-1] = (out[-1][0], uid)
        else:
            out.append((uid, uid))
    return out


def pipeline(r, commands, chunk=500):
    """Sends commands in chunks without waiting for each reply; returns the replies."""
    replies = []
    for start in range(0, len(commands), chunk):
        part = commands[start:start + chunk]
        out = []
        for args in part:
            out.append(b"*%d\r\n" % len(args))
            for a in args:
                a = a.encode() if isinstance(a, str) else str(a).encode() if isinstance(a, int) else a
                out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        r.sock.sendall(b"".join(out))
        replies.extend(r._reply() for _ in part)
    return replies


class Store:
    """Calls the scripts the way the front end does, keys built from keys/README.md."""

    def __init__(self, r, nsid=None):
        self.r = r
        self.k = Keys(nsid or str(uuid.uuid4()))

    def evalsha(self, name, keys, args):
        return self.r.call("EVALSHA", SHAS[name], len(keys), *keys, *args)

    def evalsha_cmd(self, name, keys, args):
        return ["EVALSHA", SHAS[name], len(keys)] + list(keys) + list(args)

    def ns_create(self):
        return self.evalsha("ns_create", [self.k.meta], ["tester"])

    def create(self, name, max_mailboxes=0, specialuse="", ids=None):
        """Creates name and its missing parents (as the front end would find them)."""
        levels = name.split("/")
        names = ["/".join(levels[:i + 1]) for i in range(len(levels))]
        missing = [n for n in names[:-1] if self.r.call("HEXISTS", self.k.mailboxes, n) == 0]
        missing.append(name)
        ids = ids or [new_mbxid() for _ in missing]
        args = [max_mailboxes]
        for n, i in zip(missing, ids):
            args += [n, i]
        args.append(specialuse)
        uidvalidity, mbxid = self.evalsha("mbx_create", [self.k.meta, self.k.mailboxes] +
                                          [self.k.mbx(i) for i in ids], args)
        return int(uidvalidity), mbxid.decode()

    def id_of(self, name):
        v = self.r.call("HGET", self.k.mailboxes, name)
        return v.decode() if v is not None else None

    def append_keys_args(self, mbxid, msgs, quota_bytes=0, quota_messages=0, max_keywords=0):
        keys = [self.k.meta] + self.k.mbx_all(mbxid) + [self.k.threads, self.k.channel, self.k.gc]
        args = [mbxid, quota_bytes, quota_messages, max_keywords, len(msgs)]
        for m in msgs:
            keys += [self.k.content(m.sha), self.k.raw(m.sha),
                     self.k.staging(m.staging) if m.staging else self.k.raw(m.sha)]
            args += m.argv()
        return keys, args

    def append(self, mbxid, msgs, **limits):
        keys, args = self.append_keys_args(mbxid, msgs, **limits)
        return self.evalsha("append", keys, args)

    def stage(self, body, chunk=7, ttl=3600):
        sid = new_staging_id()
        for i in range(0, max(len(body), 1), chunk):
            self.evalsha("staging_append", [self.k.meta, self.k.staging(sid)], [body[i:i + chunk], ttl])
        return sid

    def select(self, mbxid, claim=1, max_runs=100):
        return self.evalsha("mbx_select", [self.k.meta, self.k.mbx(mbxid), self.k.mbx(mbxid, "/runs"),
                                           self.k.mbx(mbxid, "/unseen")], [mbxid, claim, max_runs])

    def delete(self, name, mbxid=None):
        mbxid = mbxid or self.id_of(name) or new_mbxid()
        return self.evalsha("mbx_delete", [self.k.meta, self.k.mailboxes, self.k.mbx(mbxid),
                                           self.k.mbx(mbxid, "/log"), self.k.channel, self.k.trash],
                            [name, mbxid])

    def purge_once(self, mbxid, batch=1000, uids=None):
        if uids is None:
            uids = [int(u) for u in self.r.call("ZRANGE", self.k.mbx(mbxid, "/uids"), 0, batch - 1)]
        shas = []
        for u in uids:
            rec = self.r.call("HGET", self.k.mbx(mbxid, "/msg"), u)
            shas.append(rec.split()[0].decode() if rec else "0" * 64)
        keys = [self.k.meta, self.k.trash] + self.k.mbx_all(mbxid) + [self.k.gc]
        keys += [self.k.content(s) for s in shas] + self.k.caches(mbxid, uids, "fm")
        released, remaining = self.evalsha("mbx_purge", keys, [mbxid] + uids)
        return released, remaining

    def purge(self, mbxid, batch=1000):
        calls = 0
        while True:
            calls += 1
            _, remaining = self.purge_once(mbxid, batch)
            if remaining == 0:
                return calls

    def rename(self, old, new, max_mailboxes=0, inbox_id=None):
        if old == "INBOX" and inbox_id is None:
            inbox_id = new_mbxid()
        keys = [self.k.meta, self.k.mailboxes] + ([self.k.mbx(inbox_id)] if inbox_id else [])
        return self.evalsha("mbx_rename", keys, [old, new, inbox_id or "", max_mailboxes])

    def subscribe(self, name, on=True):
        return self.evalsha("mbx_subscribe", [self.k.meta, self.k.subscriptions], [1 if on else 0, name])

    def gc_sweep(self, grace, shas):
        keys = [self.k.meta, self.k.gc]
        for s in shas:
            keys += [self.k.content(s), self.k.raw(s)]
        return self.evalsha("gc_sweep", keys, [grace] + list(shas))

    def recent_claim(self, mbxid, upto):
        return self.evalsha("recent_claim", [self.k.meta, self.k.mbx(mbxid), self.k.mbx(mbxid, "/uids")],
                            [mbxid, upto])


class Base(unittest.TestCase):
    def setUp(self):
        self.r = REDIS.client()
        self.r.call("FLUSHALL")
        self.s = Store(self.r)
        self.s.ns_create()
        self.k = self.s.k

    def tearDown(self):
        self.r.close()

    def now(self):
        return int(self.r.call("TIME")[0])

    def assertRefused(self, code, fn, *args, **kwargs):
        """fn must fail with an error starting with code and leave the keyspace untouched."""
        before = snapshot(self.r)
        with self.assertRaises(RuntimeError) as cm:
            fn(*args, **kwargs)
        self.assertTrue(str(cm.exception).startswith(code + " "), "%s: %s" % (code, cm.exception))
        self.assertEqual(snapshot(self.r), before, "a refused call wrote something")
        return str(cm.exception)

    def assertKeysExactly(self, expected):
        self.assertEqual(self.r.keys(), set(expected))

    def assertInvariants(self, mbxid):
        """Counters, indexes and runs agree with the per-message columns."""
        k = self.k
        h = hgetall(self.r, k.mbx(mbxid))
        uids = {int(u) for u in self.r.call("ZRANGE", k.mbx(mbxid, "/uids"), 0, -1)}
        msg = hgetall(self.r, k.mbx(mbxid, "/msg"))
        flags = hgetall(self.r, k.mbx(mbxid, "/flags"))
        self.assertEqual({int(u) for u in msg}, uids)
        self.assertEqual({u for u, _ in zmembers(self.r, k.mbx(mbxid, "/modseq"))}, {str(u) for u in uids})
        self.assertEqual(int(h["messages"]), len(uids))
        self.assertEqual(int(h["bytes"]), sum(int(v.split()[2]) for v in msg.values()))
        unseen = {u for u in uids if "\\Seen" not in flags.get(str(u), "").split()}
        deleted = {u for u in uids if "\\Deleted" in flags.get(str(u), "").split()}
        self.assertEqual({int(m) for m, _ in zmembers(self.r, k.mbx(mbxid, "/unseen"))}, unseen)
        self.assertEqual({int(m) for m, _ in zmembers(self.r, k.mbx(mbxid, "/deleted"))}, deleted)
        self.assertEqual(int(h["unseen"]), len(unseen))
        self.assertEqual(int(h["deleted"]), len(deleted))
        self.assertEqual(int(h["recent"]), len([u for u in uids if u >= int(h["recent_uid"])]))
        runs = zmembers(self.r, k.mbx(mbxid, "/runs"))
        self.assertEqual(runs, [("%d:%d" % (a, b), a) for a, b in runs_of(uids)])
        if uids:
            self.assertLess(max(uids), int(h["uidnext"]))


class TestCreate(Base):
    def test_create_writes_documented_fields(self):
        t0 = self.now()
        uv_inbox, inbox = self.s.create("INBOX")
        self.assertGreaterEqual(uv_inbox, t0)
        h = hgetall(self.r, self.k.mbx(inbox))
        self.assertEqual(set(h), MBX_FIELDS)
        self.assertEqual(h["uidvalidity"], str(uv_inbox))
        for f, v in (("uidnext", "1"), ("highestmodseq", "1"), ("messages", "0"), ("unseen", "0"),
                     ("deleted", "0"), ("recent", "0"), ("recent_uid", "1"), ("bytes", "0"),
                     ("keywords", "")):
            self.assertEqual(h[f], v, f)
        self.assertLessEqual(abs(int(h["created"]) - t0), 2)

        uv_sent, sent = self.s.create("Sent", specialuse="\\Sent")
        self.assertEqual(hgetall(self.r, self.k.mbx(sent))["specialuse"], "\\Sent")
        self.assertGreater(uv_sent, uv_inbox)
        # Missing parents are created top-down, each with its own UIDVALIDITY.
        uv_c, c = self.s.create("a/b/c", specialuse="\\Archive \\Flagged")
        names = hgetall(self.r, self.k.mailboxes)
        self.assertEqual(set(names), {"INBOX", "Sent", "a", "a/b", "a/b/c"})
        self.assertEqual(names["a/b/c"], c)
        uvs = [int(hgetall(self.r, self.k.mbx(names[n]))["uidvalidity"]) for n in ("a", "a/b", "a/b/c")]
        self.assertEqual(uvs, sorted(set(uvs)))
        self.assertEqual(uvs[-1], uv_c)
        self.assertNotIn("specialuse", hgetall(self.r, self.k.mbx(names["a"])))
        self.assertEqual(hgetall(self.r, self.k.meta)["uidvalidity"], str(uv_c))
        self.assertKeysExactly([self.k.meta, self.k.mailboxes] + [self.k.mbx(i) for i in names.values()])

    def test_existing_levels_are_skipped(self):
        _, a = self.s.create("a")
        skipped, wanted = new_mbxid(), new_mbxid()
        args = [0, "a", skipped, "a/b", wanted, ""]
        _, got = self.s.evalsha("mbx_create", [self.k.meta, self.k.mailboxes, self.k.mbx(skipped),
                                               self.k.mbx(wanted)], args)
        self.assertEqual(got.decode(), wanted)
        self.assertEqual(self.r.call("EXISTS", self.k.mbx(skipped)), 0)
        self.assertEqual(self.s.id_of("a"), a)

    def test_create_errors(self):
        self.s.create("INBOX")
        self.s.create("x")
        self.assertRefused("ALREADYEXISTS", self.s.create, "x")
        self.assertRefused("ALREADYEXISTS", self.s.create, "INBOX")
        self.assertRefused("LIMIT", self.s.create, "y", max_mailboxes=2)
        self.assertRefused("LIMIT", self.s.create, "p/q", max_mailboxes=3)  # p and p/q: 4 > 3
        self.s.create("y", max_mailboxes=3)
        for bad in ("", "/a", "a/", "a//b", "a\nb", "inbox", "Inbox/x", "a" * 1025):
            self.assertRefused("ERR", self.s.create, bad)
        self.assertRefused("ERR", self.s.create, "z", specialuse="Sent")
        self.assertRefused("ERR", self.s.create, "z", specialuse="\\Sent ")
        m1 = new_mbxid()
        k = [self.k.meta, self.k.mailboxes, self.k.mbx(m1)]
        self.assertRefused("ERR", self.s.evalsha, "mbx_create", k, [0, "z", m1.upper(), ""])
        self.assertRefused("ERR", self.s.evalsha, "mbx_create", k, [0, "z", new_mbxid(), ""])
        self.assertRefused("ERR", self.s.evalsha, "mbx_create", k, [-1, "z", m1, ""])
        self.assertRefused("ERR", self.s.evalsha, "mbx_create", k, [0, "z", m1])
        other = Keys(str(uuid.uuid4()))
        self.assertRefused("ERR", self.s.evalsha, "mbx_create",
                           [self.k.meta, other.mailboxes, self.k.mbx(m1)], [0, "z", m1, ""])
        self.assertRefused("ERR", self.s.evalsha, "mbx_create",
                           [self.k.meta, self.k.mailboxes, other.mbx(m1)], [0, "z", m1, ""])
        m2 = new_mbxid()
        k2 = [self.k.meta, self.k.mailboxes, self.k.mbx(m1), self.k.mbx(m2)]
        self.assertRefused("ERR", self.s.evalsha, "mbx_create", k2, [0, "q", m1, "z/w", m2, ""])
        # An id whose hash exists already (a collision, i.e. a caller bug).
        self.assertRefused("ERR", self.s.create, "z", ids=[self.s.id_of("x")])
        # Namespace gone (user being deleted).
        self.r.call("DEL", self.k.meta)
        self.assertRefused("NONEXISTENT", self.s.create, "z")

    def test_uidvalidity_rises_across_delete_and_recreate(self):
        seen = []
        for _ in range(3):
            uv, mbxid = self.s.create("box")
            seen.append(uv)
            self.s.delete("box")
            self.s.purge(mbxid)
        self.assertEqual(seen, sorted(set(seen)))
        # A counter already in the future keeps rising by one.
        future = self.now() + 1000
        self.r.call("HSET", self.k.meta, "uidvalidity", future)
        self.assertEqual(self.s.create("later")[0], future + 1)


class TestAppend(Base):
    def setUp(self):
        super().setUp()
        self.uv, self.inbox = self.s.create("INBOX")

    def test_single_append_fields(self):
        t0 = self.now()
        m = Msg(b"Subject: hi\r\n\r\nhello\r\n", flags="\\seen $Foo \\RECENT \\flagged $foo",
                date="1700000000", msgid="<a@x>", refs="")
        reply = self.s.append(self.inbox, [m])
        self.assertEqual(reply, [self.uv, 1, 1, 2])
        k, b = self.k, self.k.mbx(self.inbox)
        self.assertEqual(hgetall(self.r, b + "/msg"),
                         {"1": "%s 1700000000 %d %s T%s" % (m.sha, m.size, m.emailid, m.sha[:24])})
        self.assertEqual(hgetall(self.r, b + "/flags"), {"1": "\\Seen \\Flagged $Foo"})
        self.assertEqual(zmembers(self.r, b + "/uids"), [("1", 1)])
        self.assertEqual(zmembers(self.r, b + "/runs"), [("1:1", 1)])
        self.assertEqual(zmembers(self.r, b + "/modseq"), [("1", 2)])
        self.assertEqual(zmembers(self.r, b + "/unseen"), [])
        h = hgetall(self.r, b)
        for f, v in (("uidnext", "2"), ("highestmodseq", "2"), ("messages", "1"), ("unseen", "0"),
                     ("deleted", "0"), ("recent", "1"), ("recent_uid", "1"), ("bytes", str(m.size)),
                     ("keywords", "$Foo")):
            self.assertEqual(h[f], v, f)
        meta = hgetall(self.r, k.meta)
        self.assertEqual((meta["messages"], meta["bytes"]), ("1", str(m.size)))
        c = hgetall(self.r, k.content(m.sha))
        self.assertEqual(set(c), {"refs", "size", "parse", "env", "bs", "created"})
        self.assertEqual((c["refs"], c["size"], c["parse"], c["env"], c["bs"]),
                         ("1", str(m.size), m.parse, m.env, m.bs))
        self.assertLessEqual(abs(int(c["created"]) - t0), 2)
        self.assertEqual(self.r.call("GET", k.raw(m.sha)), m.body)
        self.assertEqual(self.r.call("PTTL", k.raw(m.sha)), -1)
        self.assertEqual(hgetall(self.r, k.threads), {"<a@x>": "T" + m.sha[:24]})
        log = self.r.call("XRANGE", b + "/log", "-", "+")
        self.assertEqual(len(log), 1)
        self.assertEqual(log[0][0], b"2-1")
        f = log[0][1]
        self.assertEqual(f[:4], [b"k", b"append", b"u", b"1"])
        self.assertEqual(f[4], b"t")
        self.assertLessEqual(abs(int(f[5]) - t0), 2)
        self.assertKeysExactly([k.meta, k.mailboxes, k.threads, k.content(m.sha), k.raw(m.sha)] +
                               [b + p for p in ("", "/uids", "/runs", "/msg", "/flags", "/modseq", "/log")])
        self.assertInvariants(self.inbox)

    def test_internaldate_defaults_to_now_and_flags_index(self):
        t0 = self.now()
        self.s.append(self.inbox, [Msg(b"one"), Msg(b"two", flags="\\Deleted \\Draft \\Answered")])
        b = self.k.mbx(self.inbox)
        rec = hgetall(self.r, b + "/msg")
        self.assertLessEqual(abs(int(rec["1"].split()[1]) - t0), 2)
        self.assertEqual(hgetall(self.r, b + "/flags"), {"2": "\\Answered \\Deleted \\Draft"})
        self.assertEqual(zmembers(self.r, b + "/unseen"), [("1", 1), ("2", 2)])
        self.assertEqual(zmembers(self.r, b + "/deleted"), [("2", 2)])
        self.assertEqual(hgetall(self.r, b)["keywords"], "")
        self.assertInvariants(self.inbox)

    def test_multiappend_staged_and_inline(self):
        big = os.urandom(3000)
        sid = self.s.stage(big, chunk=1000)
        ttl = self.r.call("TTL", self.k.staging(sid))
        self.assertTrue(3500 < ttl <= 3600, ttl)
        self.assertEqual(self.r.call("STRLEN", self.k.staging(sid)), 3000)
        msgs = [Msg(b"a"), Msg(big, staging=sid), Msg(b"c", flags="$Junk")]
        reply = self.s.append(self.inbox, msgs)
        self.assertEqual(reply, [self.uv, 1, 3, 2])
        self.assertEqual(self.r.call("EXISTS", self.k.staging(sid)), 0)
        self.assertEqual(self.r.call("GET", self.k.raw(msgs[1].sha)), big)
        self.assertEqual(self.r.call("PTTL", self.k.raw(msgs[1].sha)), -1)
        self.assertEqual(self.r.call("XRANGE", self.k.mbx(self.inbox, "/log"), "-", "+")[0][1][:4],
                         [b"k", b"append", b"u", b"1:3"])
        self.assertEqual(zmembers(self.r, self.k.mbx(self.inbox, "/modseq")), [("1", 2), ("2", 2), ("3", 2)])
        self.s.append(self.inbox, [Msg(b"d")])
        self.assertEqual(zmembers(self.r, self.k.mbx(self.inbox, "/runs")), [("1:4", 1)])
        self.assertInvariants(self.inbox)

    def test_staging_append(self):
        sid = new_staging_id()
        key = self.k.staging(sid)
        self.assertEqual(self.s.evalsha("staging_append", [self.k.meta, key], ["abc", 60]), [3])
        self.assertEqual(self.s.evalsha("staging_append", [self.k.meta, key], ["de", 120]), [5])
        self.assertEqual(self.r.call("GET", key), b"abcde")
        self.assertTrue(100 < self.r.call("TTL", key) <= 120)
        other = Keys(str(uuid.uuid4()))
        for keys, args in (([self.k.meta, key], ["x", 0]), ([self.k.meta, key], ["x", 86401]),
                           ([self.k.meta, key], ["x"]), ([self.k.meta, other.staging(sid)], ["x", 60]),
                           ([self.k.meta, self.k.staging(sid[:-1])], ["x", 60]),
                           ([self.k.meta, self.k.raw("0" * 64)], ["x", 60])):
            self.assertRefused("ERR", self.s.evalsha, "staging_append", keys, args)
        self.r.call("DEL", self.k.meta)
        self.assertRefused("NONEXISTENT", self.s.evalsha, "staging_append", [self.k.meta, key], ["x", 60])

    def test_staging_expires(self):
        sid = self.s.stage(b"abandoned", ttl=1)
        self.assertEqual(self.r.call("TTL", self.k.staging(sid)), 1)
        time.sleep(1.2)
        self.assertEqual(self.r.call("EXISTS", self.k.staging(sid)), 0)
        self.assertRefused("NONEXISTENT", self.s.append, self.inbox, [Msg(b"abandoned", staging=sid)])

    def test_content_shared(self):
        _, other = self.s.create("Other")
        m = Msg(b"the same bytes")
        self.s.append(self.inbox, [m])
        sid = self.s.stage(m.body)
        self.s.append(other, [Msg(m.body, staging=sid)])
        self.assertEqual(hgetall(self.r, self.k.content(m.sha))["refs"], "2")
        self.assertEqual(self.r.call("EXISTS", self.k.staging(sid)), 0)  # staging dropped, not renamed
        self.assertEqual(len(self.r.keys(self.k.prefix + "content/*")), 2)  # one hash, one raw
        # Twice in one MULTIAPPEND, first staged then inline: still one content.
        n = Msg(b"new twice")
        sid2 = self.s.stage(n.body)
        self.s.append(other, [Msg(n.body, staging=sid2), Msg(n.body)])
        self.assertEqual(hgetall(self.r, self.k.content(n.sha))["refs"], "2")
        self.assertEqual(self.r.call("GET", self.k.raw(n.sha)), n.body)
        meta = hgetall(self.r, self.k.meta)
        self.assertEqual(int(meta["messages"]), 4)
        self.assertEqual(int(meta["bytes"]), 2 * m.size + 2 * n.size)  # quota counts every copy
        # Known content wins over a stale gc entry.
        self.r.call("ZADD", self.k.gc, 1, m.sha)
        self.s.append(self.inbox, [Msg(m.body)])
        self.assertEqual(self.r.call("ZCARD", self.k.gc), 0)

    def test_threads(self):
        a = Msg(b"A", msgid="<a@x>")
        b = Msg(b"B", msgid="<b@x>", refs="<a@x>")
        c = Msg(b"C", msgid="<c@x>", refs="<zz@x> <b@x> <a@x>")
        d = Msg(b"D", msgid="", refs="<unknown@x>")
        e = Msg(b"E", msgid="<a@x>")  # a re-sent A with other bytes joins A's thread
        self.s.append(self.inbox, [a, b])  # b sees a's mapping made earlier in the same call
        self.s.append(self.inbox, [c, d, e])
        rec = {u: v.split()[4] for u, v in hgetall(self.r, self.k.mbx(self.inbox, "/msg")).items()}
        ta = "T" + a.sha[:24]
        self.assertEqual(rec, {"1": ta, "2": ta, "3": ta, "4": "T" + d.sha[:24], "5": ta})
        self.assertEqual(hgetall(self.r, self.k.threads), {"<a@x>": ta, "<b@x>": ta, "<c@x>": ta})

    def test_multiappend_failing_last_message_leaves_nothing(self):
        self.s.append(self.inbox, [Msg(b"before")])
        good = [Msg(b"m1", flags="$One"), Msg(b"m2", msgid="<m2@x>")]
        sid = self.s.stage(b"staged ok")
        good.append(Msg(b"staged ok", staging=sid))
        self.assertRefused("ERR", self.s.append, self.inbox, good + [Msg(b"bad", flags="\\Bogus")])
        self.assertRefused("ERR", self.s.append, self.inbox, good + [Msg(b"bad", flags="$a(b")])
        gone = Msg(b"expired", staging=new_staging_id())
        self.assertRefused("NONEXISTENT", self.s.append, self.inbox, good + [gone])
        total = sum(m.size for m in good) + len(b"before") + len(b"over")
        self.assertRefused("OVERQUOTA", self.s.append, self.inbox, good + [Msg(b"over")],
                           quota_bytes=total - 1)
        self.assertRefused("OVERQUOTA", self.s.append, self.inbox, good + [Msg(b"over")], quota_messages=4)
        self.assertRefused("LIMIT", self.s.append, self.inbox, good + [Msg(b"kw", flags="$Two $Three")],
                           max_keywords=2)
        # Exactly at the limits is fine.
        reply = self.s.append(self.inbox, good + [Msg(b"over", flags="$two")], quota_bytes=total,
                              quota_messages=5, max_keywords=2)
        self.assertEqual(reply[1:], [2, 5, 3])
        self.assertEqual(hgetall(self.r, self.k.mbx(self.inbox))["keywords"], "$One $two")
        self.assertInvariants(self.inbox)

    def test_keywords_limit_counts_distinct_case_insensitively(self):
        self.s.append(self.inbox, [Msg(b"1", flags="$A $b")], max_keywords=2)
        self.s.append(self.inbox, [Msg(b"2", flags="$a $B")], max_keywords=2)
        self.assertEqual(hgetall(self.r, self.k.mbx(self.inbox, "/flags"))["2"], "$A $b")
        self.assertRefused("LIMIT", self.s.append, self.inbox, [Msg(b"3", flags="$c")], max_keywords=2)

    def test_append_errors(self):
        k = self.k
        m = Msg(b"x")
        self.assertRefused("TRYCREATE", self.s.append, new_mbxid(), [m])
        _, doomed = self.s.create("doomed")
        self.s.delete("doomed")
        self.assertRefused("TRYCREATE", self.s.append, doomed, [m])

        def call(keys, args):
            return self.s.evalsha("append", keys, args)

        keys, args = self.s.append_keys_args(self.inbox, [m])
        bad_cases = []

        def variant(i=None, v=None, ki=None, kv=None, a=args, kk=keys):
            a2, k2 = list(a), list(kk)
            if i is not None:
                a2[i] = v
            if ki is not None:
                k2[ki] = kv
            bad_cases.append((k2, a2))

        variant(1, "-1")                        # quota
        variant(4, "2")                         # n does not match
        variant(4, "0")
        variant(5, "g" * 64)                    # sha
        variant(6, "2")                         # size vs inline bytes
        variant(6, "1x")
        variant(7, "yesterday")                 # internaldate
        variant(8, "\\Bogus")                   # flag
        variant(8, "$a\x7f")
        variant(13, "<a b>")                    # message-id with a space
        variant(14, "<a>\n<b>")                 # refs with a control character
        variant(15, "M" + "0" * 24)             # emailid
        variant(0, new_mbxid())                 # mbxid vs keys
        variant(ki=3, kv=k.mbx(self.inbox, "/wrong"))
        variant(ki=11, kv=k.gc)                 # threads slot
        variant(ki=13, kv=k.content("0" * 64))  # content key vs sha
        variant(ki=14, kv=k.content(m.sha))     # raw key
        variant(ki=15, kv=k.staging("zz"))      # staging key shape
        variant(ki=0, kv=Keys(str(uuid.uuid4())).meta)
        for kk, aa in bad_cases:
            self.assertRefused("ERR", call, kk, aa)
        # Raw bytes together with a staging key; one staging key twice.
        sid = self.s.stage(b"x")
        mk, ma = self.s.append_keys_args(self.inbox, [Msg(b"x", staging=sid)])
        ma[9] = b"x"
        self.assertRefused("ERR", call, mk, ma)
        self.assertRefused("ERR", self.s.append, self.inbox, [Msg(b"x", staging=sid), Msg(b"x", staging=sid)])
        # Staged bytes shorter than announced (an upload cut short).
        sid = self.s.stage(b"abc")
        short = Msg(b"abcd", staging=sid)
        self.assertRefused("ERR", self.s.append, self.inbox, [short])
        # Stored content of another size under the same id.
        self.s.append(self.inbox, [m])
        self.r.call("HSET", k.content(m.sha), "size", 99)
        self.assertRefused("ERR", self.s.append, self.inbox, [m])
        # A log ahead of highestmodseq would make XADD fail midway: refused up front.
        self.r.call("HSET", k.content(m.sha), "size", 1)
        self.r.call("XADD", k.mbx(self.inbox, "/log"), "50-1", "k", "x")
        self.assertRefused("ERR", self.s.append, self.inbox, [Msg(b"y")])
        self.r.call("DEL", k.meta)
        self.assertRefused("NONEXISTENT", self.s.append, self.inbox, [Msg(b"y")])

    def test_staged_message_whose_content_exists_needs_no_staging(self):
        m = Msg(b"known")
        self.s.append(self.inbox, [m])
        lost = Msg(b"known", staging=new_staging_id())  # expired, but the content is known
        self.assertEqual(self.s.append(self.inbox, [lost])[1], 2)
        self.assertEqual(hgetall(self.r, self.k.content(m.sha))["refs"], "2")


class TestSelect(Base):
    def setUp(self):
        super().setUp()
        self.uv, self.inbox = self.s.create("INBOX", specialuse="")
        self.s.append(self.inbox, [Msg(b"1", flags="\\Seen"), Msg(b"2", flags="$Work"), Msg(b"3")])

    def test_select_claims_recent_once(self):
        before = hgetall(self.r, self.k.mbx(self.inbox))
        r = self.s.select(self.inbox, claim=1)
        self.assertEqual(r, [self.uv, 4, 2, 3, 1, 2, b"$Work", b"", 1, b"1:3"])
        h = hgetall(self.r, self.k.mbx(self.inbox))
        self.assertEqual((h["recent_uid"], h["recent"]), ("4", "0"))
        self.assertEqual(h["highestmodseq"], before["highestmodseq"])
        self.assertEqual(self.r.call("XLEN", self.k.mbx(self.inbox, "/log")), 1)
        self.assertEqual(self.s.select(self.inbox, claim=1)[4], 4)  # nothing recent any more
        self.s.append(self.inbox, [Msg(b"4")])
        self.assertEqual(self.s.select(self.inbox, claim=0)[4], 5)  # EXAMINE: nothing recent
        self.assertEqual(hgetall(self.r, self.k.mbx(self.inbox))["recent"], "1")
        self.assertEqual(self.s.select(self.inbox, claim=1)[4], 4)
        self.assertInvariants(self.inbox)

    def test_select_examine_writes_nothing(self):
        before = snapshot(self.r)
        self.s.select(self.inbox, claim=0)
        self.assertEqual(snapshot(self.r), before)
        self.s.select(self.inbox, claim=1)
        before = snapshot(self.r)
        self.s.select(self.inbox, claim=1)  # nothing to claim: no write
        self.assertEqual(snapshot(self.r), before)

    def test_runs_limit_and_specialuse(self):
        _, sent = self.s.create("Sent", specialuse="\\Sent")
        for i in range(5):
            self.s.append(sent, [Msg(b"s%d" % i)])
            self.r.call("HINCRBY", self.k.mbx(sent), "uidnext", 1)  # a hole, as an expunge leaves
        r = self.s.select(sent, claim=0, max_runs=2)
        self.assertEqual(r[7:], [b"\\Sent", 5, b"1:1", b"3:3"])
        self.assertEqual(self.s.select(sent, claim=0, max_runs=0)[8:], [5])
        self.assertEqual(r[5], 1)
        self.r.call("DEL", self.k.mbx(sent, "/unseen"))
        self.assertEqual(self.s.select(sent, claim=0)[5], 0)

    def test_select_errors(self):
        self.assertRefused("NONEXISTENT", self.s.select, new_mbxid())
        _, gone = self.s.create("gone")
        self.s.delete("gone")
        self.assertRefused("NONEXISTENT", self.s.select, gone)
        k = self.k
        good_keys = [k.meta, k.mbx(self.inbox), k.mbx(self.inbox, "/runs"), k.mbx(self.inbox, "/unseen")]
        for keys, args in ((good_keys, [self.inbox, 2, 10]), (good_keys, [self.inbox, 1, -1]),
                           (good_keys, [self.inbox, 1]), (good_keys[:3], [self.inbox, 1, 10]),
                           (good_keys, [new_mbxid(), 1, 10]),
                           (good_keys[:2] + [k.mbx(self.inbox, "/uids"), good_keys[3]], [self.inbox, 1, 10])):
            self.assertRefused("ERR", self.s.evalsha, "mbx_select", keys, args)
        self.r.call("DEL", k.meta)
        self.assertRefused("NONEXISTENT", self.s.select, self.inbox)

    def test_recent_claim(self):
        self.assertEqual(self.s.recent_claim(self.inbox, 3), [1])  # this session: UIDs 1, 2
        h = hgetall(self.r, self.k.mbx(self.inbox))
        self.assertEqual((h["recent_uid"], h["recent"]), ("3", "1"))
        self.assertEqual(self.s.recent_claim(self.inbox, 2), [3])  # never moves down
        self.assertEqual(self.s.recent_claim(self.inbox, 99), [3])  # capped at uidnext
        self.assertEqual(hgetall(self.r, self.k.mbx(self.inbox))["recent_uid"], "4")
        self.assertEqual(self.s.select(self.inbox, claim=1)[4], 4)
        self.assertInvariants(self.inbox)
        self.assertRefused("NONEXISTENT", self.s.recent_claim, new_mbxid(), 3)
        self.assertRefused("ERR", self.s.recent_claim, self.inbox, "x")


class TestDeletePurgeGc(Base):
    def setUp(self):
        super().setUp()
        _, self.inbox = self.s.create("INBOX")

    def test_delete_purge_releases_everything(self):
        k = self.k
        _, box = self.s.create("box")
        _, child = self.s.create("box/child")
        shared = Msg(b"shared")
        self.s.append(self.inbox, [shared])
        msgs = [Msg(b"m%d" % i, flags="\\Deleted" if i % 3 == 0 else "\\Seen" if i % 2 else "")
                for i in range(7)] + [Msg(b"shared")]
        self.s.append(box, msgs)
        sub = harness.Resp(REDIS.port)
        sub.call("SUBSCRIBE", k.channel)
        t0 = self.now()
        self.assertEqual(self.s.delete("box"), [box.encode()])
        self.assertEqual(sub._reply(), [b"message", k.channel.encode(), ("%s 3" % box).encode()])
        sub.close()
        self.assertIsNone(self.s.id_of("box"))
        self.assertEqual(self.s.id_of("box/child"), child)  # children stay (parent shows \Noselect)
        self.assertEqual(self.r.call("SMEMBERS", k.trash), [box.encode()])
        h = hgetall(self.r, k.mbx(box))
        self.assertEqual(h["highestmodseq"], "3")
        self.assertLessEqual(abs(int(h["removed"]) - t0), 2)
        entry = self.r.call("XRANGE", k.mbx(box, "/log"), "-", "+")[-1]
        self.assertEqual(entry[0], b"3-1")
        self.assertEqual(entry[1][:4] + entry[1][6:], [b"k", b"mailbox", b"u", b"", b"e", b"deleted"])
        self.assertRefused("NONEXISTENT", self.s.delete, "box", box)

        # Purge in batches of 3: each releases content references and user totals.
        meta0 = hgetall(self.r, k.meta)
        released, remaining = self.s.purge_once(box, batch=3)
        self.assertEqual((released, remaining), (3, 5))
        self.assertInvariants(box)
        meta1 = hgetall(self.r, k.meta)
        self.assertEqual(int(meta0["messages"]) - int(meta1["messages"]), 3)
        self.assertEqual(int(meta0["bytes"]) - int(meta1["bytes"]), sum(m.size for m in msgs[:3]))
        self.assertEqual(self.r.call("ZCARD", k.gc), 3)
        self.assertEqual(self.s.purge_once(box, uids=[1, 2, 3]), (0, 5))  # a rerun releases nothing
        self.assertEqual(self.s.purge(box, batch=3), 2)
        self.assertEqual(self.s.purge_once(box), (0, 0))  # idempotent once gone
        self.assertEqual(hgetall(self.r, k.content(shared.sha))["refs"], "1")
        self.assertEqual(self.r.call("ZCARD", k.gc), 7)
        meta = hgetall(self.r, k.meta)
        self.assertEqual((meta["messages"], meta["bytes"]), ("1", str(shared.size)))
        contents = []
        for m in msgs[:7] + [shared]:
            contents += [k.content(m.sha), k.raw(m.sha)]
        self.assertKeysExactly([k.meta, k.mailboxes, k.gc] + contents + k.mbx_all(self.inbox)[:1] +
                               [k.mbx(self.inbox, p) for p in ("/uids", "/runs", "/msg", "/modseq",
                                                               "/unseen", "/log")] + [k.mbx(child)])

        # gc_sweep honours the grace period, then reclaims.
        gone = [m.sha for m in msgs[:7]]
        self.assertEqual(self.s.gc_sweep(3600, gone), [0])
        self.assertEqual(self.r.call("ZCARD", k.gc), 7)
        for s in gone[:4]:
            self.r.call("ZADD", k.gc, self.now() - 3601, s)
        self.assertEqual(self.s.gc_sweep(3600, gone), [4])
        self.assertEqual(self.s.gc_sweep(0, gone), [3])
        self.assertEqual(self.r.call("ZCARD", k.gc), 0)
        self.assertKeysExactly([k.meta, k.mailboxes, k.content(shared.sha), k.raw(shared.sha), k.mbx(child)] +
                               [k.mbx(self.inbox, p) for p in ("", "/uids", "/runs", "/msg", "/modseq",
                                                               "/unseen", "/log")])

    def test_gc_keeps_revived_content(self):
        k = self.k
        _, box = self.s.create("box")
        m = Msg(b"revive me")
        self.s.append(box, [m])
        self.s.delete("box")
        self.s.purge(box)
        self.assertEqual(hgetall(self.r, k.content(m.sha))["refs"], "0")
        self.r.call("ZADD", k.gc, 1, m.sha)
        self.r.call("ZADD", k.gc, 1, "f" * 64)  # an entry whose content vanished
        self.r.call("HSET", k.content(m.sha), "refs", 1)  # as a COPY would, racing the sweeper
        self.assertEqual(self.s.gc_sweep(0, [m.sha, "f" * 64, "e" * 64]), [1])
        self.assertEqual(self.r.call("EXISTS", k.content(m.sha), k.raw(m.sha)), 2)
        self.assertEqual(self.r.call("ZCARD", k.gc), 0)

    def test_gc_errors(self):
        k = self.k
        for keys, args in (([k.meta, k.gc], [-1]), ([k.meta, k.gc], []),
                           ([k.meta, k.gc, k.content("a" * 64)], [0, "a" * 64]),
                           ([k.meta, k.gc, k.content("a" * 64), k.raw("b" * 64)], [0, "a" * 64]),
                           ([k.meta, k.trash], [0])):
            self.assertRefused("ERR", self.s.evalsha, "gc_sweep", keys, args)
        self.r.call("DEL", k.meta)
        self.assertRefused("NONEXISTENT", self.s.gc_sweep, 0, [])

    def test_delete_errors(self):
        k = self.k
        self.assertRefused("CANNOT", self.s.delete, "INBOX")
        self.assertRefused("NONEXISTENT", self.s.delete, "nope")
        _, box = self.s.create("box")
        self.assertRefused("NONEXISTENT", self.s.delete, "box", new_mbxid())
        for keys in ([k.meta, k.mailboxes, k.mbx(box), k.mbx(box, "/uids"), k.channel, k.trash],
                     [k.meta, k.mailboxes, k.mbx(box), k.mbx(box, "/log"), k.gc, k.trash],
                     [k.meta, k.mailboxes, k.mbx(box), k.mbx(box, "/log"), k.channel]):
            self.assertRefused("ERR", self.s.evalsha, "mbx_delete", keys, ["box", box])
        self.r.call("DEL", k.meta)
        self.assertRefused("NONEXISTENT", self.s.delete, "box")

    def test_purge_errors(self):
        k = self.k
        _, box = self.s.create("box")
        self.s.append(box, [Msg(b"p")])
        self.assertRefused("ERR", self.s.purge_once, box)  # not deleted
        self.s.delete("box")
        keys = [k.meta, k.trash] + k.mbx_all(box) + [k.gc, k.content("0" * 64)]
        self.assertRefused("ERR", self.s.evalsha, "mbx_purge", keys, [box, 1])  # wrong content key
        self.assertRefused("ERR", self.s.evalsha, "mbx_purge", keys, [box, "1x"])
        self.assertRefused("ERR", self.s.evalsha, "mbx_purge", keys[:-1], [box] + list(range(1, 1002)))
        swapped = [k.meta, k.trash] + k.mbx_all(box)[::-1] + [k.gc]
        self.assertRefused("ERR", self.s.evalsha, "mbx_purge", swapped, [box])
        self.r.call("DEL", k.meta)
        self.assertRefused("NONEXISTENT", self.s.purge_once, box)

    def test_purge_progresses_over_damaged_uids(self):
        k = self.k
        _, box = self.s.create("box")
        self.s.append(box, [Msg(b"ok")])
        self.r.call("ZADD", k.mbx(box, "/uids"), 7, 7)  # a UID without a /msg record
        self.r.call("HINCRBY", k.mbx(box), "messages", 1)
        self.r.call("HINCRBY", k.mbx(box), "recent", 1)
        self.s.delete("box")
        keys = [k.meta, k.trash] + k.mbx_all(box) + [k.gc, k.meta]
        self.assertRefused("ERR", self.s.evalsha, "mbx_purge", keys[:-1] + [Keys(str(uuid.uuid4())).meta],
                           [box, 7])
        self.assertEqual(self.s.evalsha("mbx_purge", keys + k.caches(box, [7], "fm"), [box, 7]), [1, 1])
        self.assertInvariants(box)
        self.assertEqual(self.s.purge(box), 1)
        self.assertEqual(hgetall(self.r, k.meta)["messages"], "0")

    def test_empty_mailbox_purges_in_one_call(self):
        _, box = self.s.create("empty")
        self.s.delete("empty")
        self.assertEqual(self.s.purge(box), 1)
        self.assertEqual(self.r.keys(self.k.prefix + "mbx/" + box + "*"), set())
        self.assertEqual(self.r.call("EXISTS", self.k.trash), 0)


class TestRenameSubscribe(Base):
    def setUp(self):
        super().setUp()
        self.uv, self.inbox = self.s.create("INBOX")

    def test_rename_with_children(self):
        _, a = self.s.create("a")
        _, ab = self.s.create("a/b")
        _, abc = self.s.create("a/b/c")
        _, ax = self.s.create("ax")  # not a child of "a"
        before = {i: hgetall(self.r, self.k.mbx(i)) for i in (a, ab, abc, ax)}
        self.assertEqual(self.s.rename("a", "z/y"), [a.encode()])
        self.assertEqual(hgetall(self.r, self.k.mailboxes),
                         {"INBOX": self.inbox, "z/y": a, "z/y/b": ab, "z/y/b/c": abc, "ax": ax})
        self.assertEqual({i: hgetall(self.r, self.k.mbx(i)) for i in (a, ab, abc, ax)}, before)
        # Rename a child onto its implicit parent's name: "z/y/b/c" moves onto the freed "z/y/b".
        self.assertEqual(self.s.rename("z/y/b", "z/b"), [ab.encode()])
        self.assertEqual(self.s.id_of("z/b/c"), abc)

    def test_rename_moves_onto_freed_names(self):
        _, b = self.s.create("a/b")
        _, bb = self.s.create("a/b/b")
        self.s.delete("a")  # "a" now exists only as the implicit parent of "a/b"
        self.s.rename("a/b", "a")
        self.assertEqual(hgetall(self.r, self.k.mailboxes),
                         {"INBOX": self.inbox, "a": b, "a/b": bb})
        self.assertNotIn("a/b/b", hgetall(self.r, self.k.mailboxes))

    def test_rename_errors(self):
        self.s.create("a/b")
        self.s.create("c/b")
        self.s.create("d")
        self.assertRefused("NONEXISTENT", self.s.rename, "nope", "x")
        self.assertRefused("ALREADYEXISTS", self.s.rename, "a", "d")
        self.assertRefused("ALREADYEXISTS", self.s.rename, "a", "a")
        self.assertRefused("ALREADYEXISTS", self.s.rename, "a", "c")
        self.assertRefused("ALREADYEXISTS", self.s.rename, "d", "INBOX")
        self.s.create("e")
        self.s.create("f/b")
        self.assertRefused("ALREADYEXISTS", self.s.rename, "a", "f")  # a/b -> f/b exists
        self.assertRefused("CANNOT", self.s.rename, "a", "a/b/x")
        self.assertRefused("LIMIT", self.s.rename, "a", "n" * 1023)  # its child would be too long
        for old, new in (("a", ""), ("a", "x/"), ("", "x"), ("a", "inbox"), ("a", "x\x00y")):
            self.assertRefused("ERR", self.s.rename, old, new)
        k = self.k
        self.assertRefused("ERR", self.s.evalsha, "mbx_rename", [k.meta, k.mailboxes], ["INBOX", "old", "", 0])
        self.assertRefused("ERR", self.s.evalsha, "mbx_rename", [k.meta, k.mailboxes], ["a", "x", new_mbxid(), 0])
        self.assertRefused("ERR", self.s.evalsha, "mbx_rename", [k.meta, k.mailboxes], ["a", "x", "", "z"])
        self.assertRefused("ERR", self.s.rename, "INBOX", "old", inbox_id=self.inbox)  # id in use
        self.assertRefused("LIMIT", self.s.rename, "INBOX", "old", max_mailboxes=9)
        self.r.call("DEL", k.meta)
        self.assertRefused("NONEXISTENT", self.s.rename, "a", "x")

    def test_rename_inbox(self):
        self.s.append(self.inbox, [Msg(b"keep me")])
        _, child = self.s.create("INBOX/sub")
        fresh = new_mbxid()
        self.assertEqual(self.s.rename("INBOX", "INBOX/old", max_mailboxes=3, inbox_id=fresh),
                         [self.inbox.encode()])
        names = hgetall(self.r, self.k.mailboxes)
        self.assertEqual(names, {"INBOX": fresh, "INBOX/old": self.inbox, "INBOX/sub": child})
        h = hgetall(self.r, self.k.mbx(fresh))
        self.assertEqual(set(h), MBX_FIELDS)
        self.assertEqual((h["messages"], h["uidnext"]), ("0", "1"))
        self.assertGreater(int(h["uidvalidity"]), self.uv)
        self.assertEqual(hgetall(self.r, self.k.meta)["uidvalidity"], h["uidvalidity"])
        self.assertEqual(hgetall(self.r, self.k.mbx(self.inbox))["messages"], "1")
        self.assertRefused("LIMIT", self.s.rename, "INBOX", "again", max_mailboxes=3)
        self.s.rename("INBOX", "again", max_mailboxes=4)

    def test_subscribe(self):
        k = self.k
        self.assertEqual(self.s.subscribe("a/b"), [1])  # need not exist
        self.assertEqual(self.s.subscribe("a/b"), [0])
        self.assertEqual(self.s.subscribe("INBOX"), [1])
        self.assertEqual(self.s.subscribe("a/b", on=False), [1])
        self.assertEqual(self.s.subscribe("a/b", on=False), [0])
        self.assertEqual(self.r.call("SMEMBERS", k.subscriptions), [b"INBOX"])
        self.assertRefused("ERR", self.s.evalsha, "mbx_subscribe", [k.meta, k.subscriptions], [2, "x"])
        self.assertRefused("ERR", self.s.evalsha, "mbx_subscribe", [k.meta, k.mailboxes], [1, "x"])
        self.assertRefused("ERR", self.s.subscribe, "x//y")
        self.r.call("DEL", k.meta)
        self.assertRefused("NONEXISTENT", self.s.subscribe, "x")


class TestRunsProperty(Base):
    def test_runs_match_model(self):
        """Seeded random appends (with UID holes) and out-of-order purges against a model."""
        for seed in range(4):
            rng = random.Random(seed)
            _, box = self.s.create("box%d" % seed)
            model, uidnext, serial = set(), 1, 0
            for _ in range(rng.randint(20, 40)):
                if rng.random() < 0.3:  # a hole, as an expunge of the newest UIDs leaves
                    skip = rng.randint(1, 3)
                    self.r.call("HINCRBY", self.k.mbx(box), "uidnext", skip)
                    uidnext += skip
                n = rng.randint(1, 4)
                msgs = []
                for _ in range(n):
                    serial += 1
                    msgs.append(Msg(b"%d-%d" % (seed, serial), flags=rng.choice(["", "\\Seen", "\\Deleted"])))
                _, first, last, _ = self.s.append(box, msgs)
                self.assertEqual((first, last), (uidnext, uidnext + n - 1))
                model.update(range(first, last + 1))
                uidnext = last + 1
                self.assertInvariants(box)
            self.s.delete("box%d" % seed)
            while model:
                batch = rng.sample(sorted(model), min(len(model), rng.randint(1, 6)))
                batch += rng.sample(batch, 1)  # a duplicate is released once
                released, remaining = self.s.purge_once(box, uids=batch)
                model -= set(batch)
                self.assertEqual((released, remaining), (len(set(batch)), len(model)))
                if model:
                    self.assertInvariants(box)
            self.assertEqual(self.r.keys(self.k.prefix + "mbx/" + box + "*"), set())


class TestLog(Base):
    def setUp(self):
        super().setUp()
        _, self.inbox = self.s.create("INBOX")
        self.log = self.k.mbx(self.inbox, "/log")

    def test_trim_by_count(self):
        """The log keeps about the newest 10,000 entries (XADD MAXLEN ~: whole stream nodes go)."""
        keys, args = self.s.append_keys_args(self.inbox, [Msg(b"same")])
        cmd = self.s.evalsha_cmd("append", keys, args)
        total = LOG_MAX + 250
        t = time.monotonic()
        replies = pipeline(self.r, [cmd] * total)
        elapsed = time.monotonic() - t
        self.assertFalse([x for x in replies if isinstance(x, RuntimeError)])
        self.assertEqual(replies[-1][3], total + 1)
        xlen = self.r.call("XLEN", self.log)
        self.assertTrue(LOG_MAX <= xlen < LOG_MAX + 250, xlen)
        first = self.r.call("XRANGE", self.log, "-", "+", "COUNT", 1)[0][0]
        self.assertEqual(int(first.split(b"-")[0]), total + 2 - xlen)
        last = self.r.call("XREVRANGE", self.log, "+", "-", "COUNT", 1)[0][0]
        self.assertEqual(last, b"%d-1" % (total + 1))
        self.assertEqual(hgetall(self.r, self.k.content(Msg(b"same").sha))["refs"], str(total))
        sys.stderr.write("\n  %d appends pipelined in %.2f s\n" % (total, elapsed))

    def test_trim_by_age_in_bounded_steps(self):
        old = self.now() - LOG_AGE - 60
        self.r.call("HSET", self.k.mbx(self.inbox), "highestmodseq", 251)
        for i in range(1, 251):
            self.r.call("XADD", self.log, "%d-1" % i, "k", "append", "u", "1", "t", old)
        self.s.append(self.inbox, [Msg(b"x")])  # modseq 252; removes 100 old entries
        self.assertEqual(self.r.call("XLEN", self.log), 151)
        self.s.append(self.inbox, [Msg(b"y")])
        self.assertEqual(self.r.call("XLEN", self.log), 52)
        self.s.append(self.inbox, [Msg(b"z")])
        self.assertEqual([e[0] for e in self.r.call("XRANGE", self.log, "-", "+")],
                         [b"252-1", b"253-1", b"254-1"])
        self.s.append(self.inbox, [Msg(b"w")])
        self.assertEqual(self.r.call("XLEN", self.log), 4)

    def test_publish_on_append(self):
        sub = harness.Resp(REDIS.port)
        try:
            self.assertEqual(sub.call("SUBSCRIBE", self.k.channel), [b"subscribe", self.k.channel.encode(), 1])
            self.s.append(self.inbox, [Msg(b"a")])
            self.s.append(self.inbox, [Msg(b"b"), Msg(b"c")])
            self.assertEqual(sub._reply()[2], ("%s 2" % self.inbox).encode())
            self.assertEqual(sub._reply()[2], ("%s 3" % self.inbox).encode())
        finally:
            sub.close()


if __name__ == "__main__":
    unittest.main()
