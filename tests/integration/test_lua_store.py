#!/usr/bin/env python3
"""store.lua, copy.lua and expunge.lua (both modes) against a real redis-server (no mocks).

Same style as test_lua_mailbox.py, whose key builders and Store helper this file reuses: scripts
are loaded with SCRIPT LOAD and called with EVALSHA, keys built from keys/README.md. Checks each
script's success path against a Python model of the flags, every error path (the keyspace is
byte-identical after a refused call), and that counters, indexes and runs stay consistent.

    python3 tests/integration/test_lua_store.py -v
"""
import os
import random
import sys
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_lua_mailbox as tlm  # noqa: E402

SCRIPTS = tlm.SCRIPTS + ("store", "copy", "expunge", "cache_put")
SYSTEM_ORDER = ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")
ZERO_SHA = "0" * 64


def setUpModule():
    tlm.REDIS = harness.Redis()
    r = tlm.REDIS.client()
    for name in SCRIPTS:
        with open(os.path.join(tlm.LUA_DIR, name + ".lua"), "rb") as f:
            tlm.SHAS[name] = r.call("SCRIPT", "LOAD", f.read()).decode()
    r.close()


def tearDownModule():
    if tlm.REDIS is not None:
        tlm.REDIS.stop()
        tlm.REDIS = None


def canon(flags):
    """The stored form of a set of flags: system flags in order, then keywords as given."""
    words = flags.split() if isinstance(flags, str) else list(flags)
    sys_ = [f for f in SYSTEM_ORDER if f in words]
    return " ".join(sys_ + [w for w in words if not w.startswith("\\")])


class Ops(tlm.Store):
    """The scripts of this file, called the way the front end calls them."""

    def store(self, mbxid, mode, flags, uids, since=0, max_keywords=0):
        keys = [self.k.meta] + self.k.mbx_all(mbxid) + [self.k.channel] + self.k.caches(mbxid, uids, "f")
        return self.evalsha("store", keys, [mbxid, mode, flags, since, max_keywords] + list(uids))

    def content_of(self, mbxid, uids):
        out = []
        for u in uids:
            rec = self.r.call("HGET", self.k.mbx(mbxid, "/msg"), u)
            out.append(rec.split()[0].decode() if rec else ZERO_SHA)
        return out

    def expunge(self, mbxid, uids, mode=None):
        keys = [self.k.meta] + self.k.mbx_all(mbxid) + [self.k.channel, self.k.gc]
        keys += [self.k.content(s) for s in self.content_of(mbxid, uids)]
        keys += self.k.caches(mbxid, uids, "fm")
        args = [mbxid] + ([mode] if mode else []) + list(uids)
        return self.evalsha("expunge", keys, args)

    def copy_keys(self, dst, src, staging, shas):
        keys = [self.k.meta] + self.k.mbx_all(dst) + [self.k.channel, self.k.gc,
                                                      self.k.prefix + "copies",
                                                      self.k.prefix + "copy/" + staging,
                                                      self.k.mbx(src), self.k.mbx(src, "/msg"),
                                                      self.k.mbx(src, "/flags")]
        return keys + [self.k.content(s) for s in shas]

    def copy(self, mode, dst, src, uids, staging=None, quota_bytes=0, quota_messages=0,
             max_keywords=0, shas=None):
        staging = staging or uuid.uuid4().hex
        if shas is None:
            shas = self.content_of(src, uids)
        keys = self.copy_keys(dst, src, staging, shas)
        return self.evalsha("copy", keys, [mode, dst, src, quota_bytes, quota_messages,
                                           max_keywords] + list(uids))

    def staged(self, staging):
        return [x.decode() for x in self.r.call("LRANGE", self.k.prefix + "copy/" + staging, 0, -1)]

    def copy_abort(self, dst, src, staging):
        """Releases a staged copy the way the front end does: 1,000 records per call."""
        calls = 0
        while True:
            calls += 1
            recs = self.r.call("LRANGE", self.k.prefix + "copy/" + staging, 0, 999)
            shas = [r.split()[1].decode() for r in recs]
            keys = self.copy_keys(dst, src, staging, shas)
            (remaining,) = self.evalsha("copy", keys, ["abort", dst, src, 0, 0, 0])
            if remaining == 0:
                return calls


class Base(tlm.Base):
    def setUp(self):
        super().setUp()
        self.s = Ops(self.r, self.k.nsid)
        _, self.inbox = self.s.create("INBOX")

    def fill(self, mbxid, flags_list):
        msgs = [tlm.Msg("Subject: %d %s\r\n\r\nbody %d\r\n" % (i, uuid.uuid4().hex, i), flags=f)
                for i, f in enumerate(flags_list)]
        _, first, last, _ = self.s.append(mbxid, msgs)
        return list(range(first, last + 1)), msgs

    def flags_of(self, mbxid):
        return {int(k): v for k, v in tlm.hgetall(self.r, self.k.mbx(mbxid, "/flags")).items()}

    def modseqs(self, mbxid):
        return {int(m): s for m, s in tlm.zmembers(self.r, self.k.mbx(mbxid, "/modseq"))}

    def highest(self, mbxid):
        return int(self.r.call("HGET", self.k.mbx(mbxid), "highestmodseq"))

    def log(self, mbxid):
        out = []
        for eid, fields in self.r.call("XRANGE", self.k.mbx(mbxid, "/log"), "-", "+"):
            f = {fields[i].decode(): fields[i + 1].decode() for i in range(0, len(fields), 2)}
            out.append((eid.decode(), f["k"], f["u"]))
        return out


class TestStore(Base):
    def test_modes_and_reply(self):
        uids, _ = self.fill(self.inbox, ["", "\\Seen", "\\seen \\DELETED kw1", ""])
        m0 = self.highest(self.inbox)
        reply = self.s.store(self.inbox, "add", "\\Flagged Kw1 \\Seen", uids)
        m1 = m0 + 1
        self.assertEqual(reply[0], m1)
        self.assertEqual(reply[1], 4)
        got = [(reply[2 + 3 * i], reply[3 + 3 * i].decode(), reply[4 + 3 * i]) for i in range(4)]
        self.assertEqual(got, [(uids[0], "\\Seen \\Flagged kw1", m1),
                               (uids[1], "\\Seen \\Flagged kw1", m1),
                               (uids[2], "\\Seen \\Flagged \\Deleted kw1", m1),
                               (uids[3], "\\Seen \\Flagged kw1", m1)])
        # The keyword keeps the mailbox's first spelling (kw1, learned at APPEND).
        self.assertEqual(self.r.call("HGET", self.k.mbx(self.inbox), "keywords"), b"kw1")
        self.assertEqual(self.log(self.inbox)[-1], ("%d-1" % m1, "flags", "%d:%d" % (uids[0], uids[3])))
        self.assertInvariants(self.inbox)

        # remove: only the named flags go; unchanged messages keep their modseq.
        reply = self.s.store(self.inbox, "remove", "\\Deleted \\Seen", uids[2:3])
        self.assertEqual(reply[:5], [m1 + 1, 1, uids[2], b"\\Flagged kw1", m1 + 1])
        reply = self.s.store(self.inbox, "remove", "\\Draft", uids)
        self.assertEqual(reply[0], m1 + 1, "nothing changed: no modseq bump")
        self.assertEqual([reply[4 + 3 * i] for i in range(4)], [m1, m1, m1 + 1, m1])
        self.assertEqual(len(self.log(self.inbox)), 3)

        # set replaces; an empty set removes the flags field.
        reply = self.s.store(self.inbox, "set", "", uids[:1])
        self.assertEqual(reply[:5], [m1 + 2, 1, uids[0], b"", m1 + 2])
        self.assertNotIn(uids[0], self.flags_of(self.inbox))
        # set with the same flags in another order and case is no change.
        reply = self.s.store(self.inbox, "set", "KW1 \\flagged", uids[2:3])
        self.assertEqual(reply[:5], [m1 + 2, 1, uids[2], b"\\Flagged kw1", m1 + 1])
        self.assertEqual(self.modseqs(self.inbox)[uids[2]], m1 + 1)
        self.assertInvariants(self.inbox)

    def test_missing_uids_are_skipped(self):
        uids, _ = self.fill(self.inbox, ["", ""])
        reply = self.s.store(self.inbox, "add", "\\Seen", [uids[0], uids[1] + 5, uids[1] + 9])
        self.assertEqual(reply[1], 1)
        self.assertEqual(reply[2], uids[0])
        self.assertEqual(self.s.store(self.inbox, "add", "\\Seen", [99]), [reply[0], 0])
        self.assertEqual(self.s.store(self.inbox, "add", "\\Seen", []), [reply[0], 0])
        self.assertInvariants(self.inbox)

    def test_unchangedsince_leaves_newer_messages(self):
        uids, _ = self.fill(self.inbox, ["", ""])
        m = self.highest(self.inbox)
        self.s.store(self.inbox, "add", "\\Answered", uids[1:])
        reply = self.s.store(self.inbox, "add", "\\Flagged", uids, since=m)
        self.assertEqual(reply[:8], [m + 2, 2, uids[0], b"\\Flagged", m + 2, uids[1], b"\\Answered", m + 1])

    def test_keyword_limit_and_spelling(self):
        uids, _ = self.fill(self.inbox, ["a b", ""])
        self.assertRefused("LIMIT", self.s.store, self.inbox, "add", "c", uids, max_keywords=2)
        # Known keywords (any case) never count against the limit; remove never learns.
        self.s.store(self.inbox, "add", "A B", uids, max_keywords=2)
        self.s.store(self.inbox, "remove", "zz", uids, max_keywords=2)
        self.assertEqual(self.flags_of(self.inbox), {uids[0]: "a b", uids[1]: "a b"})
        self.s.store(self.inbox, "add", "c", uids, max_keywords=3)
        self.assertEqual(self.r.call("HGET", self.k.mbx(self.inbox), "keywords"), b"a b c")
        # No message changes: nothing learned, no LIMIT either.
        self.s.store(self.inbox, "add", "d", [999], max_keywords=3)
        self.assertEqual(self.r.call("HGET", self.k.mbx(self.inbox), "keywords"), b"a b c")

    def test_errors_write_nothing(self):
        uids, _ = self.fill(self.inbox, [""])
        s, k = self.s, self.k
        self.assertRefused("ERR", s.store, self.inbox, "toggle", "\\Seen", uids)
        self.assertRefused("ERR", s.store, self.inbox, "add", "\\Bogus", uids)
        self.assertRefused("ERR", s.store, self.inbox, "add", "a(b", uids)
        self.assertRefused("ERR", s.store, self.inbox, "add", "\\Seen", [2, 1])
        self.assertRefused("ERR", s.store, self.inbox, "add", "\\Seen", ["0"])
        self.assertRefused("ERR", s.store, self.inbox, "add", "\\Seen", list(range(1, 1002)))
        self.assertRefused("ERR", s.evalsha, "store", [k.meta] + k.mbx_all(tlm.new_mbxid()) + [k.channel],
                           [self.inbox, "add", "\\Seen", 0, 0, 1])
        self.assertRefused("NONEXISTENT", s.store, tlm.new_mbxid(), "add", "\\Seen", [1])
        self.r.call("HSET", k.mbx(self.inbox), "removed", 1)
        self.assertRefused("NONEXISTENT", s.store, self.inbox, "add", "\\Seen", uids)
        self.r.call("HDEL", k.mbx(self.inbox), "removed")
        self.r.call("DEL", k.meta)
        self.assertRefused("NONEXISTENT", s.store, self.inbox, "add", "\\Seen", uids)

    def test_random_against_model(self):
        rng = random.Random(7)
        words = ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "k1", "k2", "K3"]
        uids, _ = self.fill(self.inbox, [""] * 40)
        model = {u: set() for u in uids}
        for _ in range(200):
            mode = rng.choice(["set", "add", "remove"])
            req = set(rng.sample(words, rng.randint(0, 3)))
            pick = sorted(rng.sample(uids, rng.randint(1, 10)))
            before = self.highest(self.inbox)
            reply = self.s.store(self.inbox, mode, " ".join(sorted(req)), pick)
            changed = False
            for u in pick:
                new = req if mode == "set" else model[u] | req if mode == "add" else model[u] - req
                changed |= new != model[u]
                model[u] = set(new)
            self.assertEqual(reply[0], before + (1 if changed else 0))
            for i in range(reply[1]):
                u, f = reply[2 + 3 * i], reply[3 + 3 * i].decode()
                self.assertEqual(set(f.split()), model[u])
        flags = self.flags_of(self.inbox)
        for u in uids:
            self.assertEqual(set(flags.get(u, "").split()), model[u])
        self.assertInvariants(self.inbox)


class TestExpunge(Base):
    def test_modes(self):
        uids, _ = self.fill(self.inbox, ["\\Deleted", "", "\\Deleted \\Seen", ""])
        m = self.highest(self.inbox)
        self.assertEqual(self.s.expunge(self.inbox, uids, "deleted"), [m + 1, 2, uids[0], uids[2]])
        self.assertInvariants(self.inbox)
        self.assertEqual(self.s.expunge(self.inbox, uids, "deleted"), [m + 1, 0])
        self.assertEqual(self.s.expunge(self.inbox, uids[1:2] + [999], "all"), [m + 2, 1, uids[1]])
        self.assertEqual(self.log(self.inbox)[-2:], [("%d-1" % (m + 1), "expunge", "%d,%d" % (uids[0], uids[2])),
                                                     ("%d-1" % (m + 2), "expunge", str(uids[1]))])
        self.assertInvariants(self.inbox)
        h = tlm.hgetall(self.r, self.k.mbx(self.inbox))
        self.assertEqual((h["messages"], h["deleted"], h["unseen"]), ("1", "0", "1"))

    def test_errors_write_nothing(self):
        uids, _ = self.fill(self.inbox, ["\\Deleted"])
        self.assertRefused("ERR", self.s.expunge, self.inbox, uids, "some")
        self.assertRefused("ERR", self.s.expunge, self.inbox, [uids[0], uids[0]], "all")
        keys = [self.k.meta] + self.k.mbx_all(self.inbox) + [self.k.channel, self.k.gc, self.k.content(ZERO_SHA)]
        self.assertRefused("ERR", self.s.evalsha, "expunge", keys, [self.inbox, "all", uids[0]])


class TestCaches(Base):
    """cache_put.lua, and the column caches store.lua and expunge.lua must delete (colcache.h)."""

    def cache(self, kind, chunk):
        return self.k.mbx(self.inbox, "/cache/%s/%s" % (kind, chunk))

    def put(self, kind, chunk, modseq=None, records="", mbxid=None):
        mbxid = mbxid or self.inbox
        modseq = self.highest(mbxid) if modseq is None else modseq
        value = "c1 %s %d %d %d\n%s" % (kind, chunk, modseq, chunk * 1024 + 1, records)
        keys = [self.k.meta, self.k.mbx(mbxid), self.k.mbx(mbxid, "/cache/%s/%d" % (kind, chunk))]
        return self.s.evalsha("cache_put", keys, [mbxid, modseq, 60, value])

    def exists(self, kind, chunk):
        return self.r.call("EXISTS", self.cache(kind, chunk)) == 1

    def two_chunks(self):
        """Messages in chunk 0 and in chunk 1 (uidnext moved past 1024 in between)."""
        low, _ = self.fill(self.inbox, ["", "\\Deleted"])
        self.r.call("HSET", self.k.mbx(self.inbox), "uidnext", 1030)
        high, _ = self.fill(self.inbox, ["\\Deleted"])
        self.assertEqual(high, [1030])
        for kind in "fm":
            for chunk in (0, 1):
                self.assertEqual(self.put(kind, chunk), [1])
        return low, high

    def test_put(self):
        self.fill(self.inbox, [""])
        m = self.highest(self.inbox)
        self.assertEqual(self.put("f", 0, m, "1 0\n"), [1])
        self.assertEqual(self.r.call("GET", self.cache("f", 0)), b"c1 f 0 %d 1\n1 0\n" % m)
        self.assertTrue(0 < self.r.call("TTL", self.cache("f", 0)) <= 60)
        # A snapshot older (or newer) than the mailbox is never stored.
        self.assertEqual(self.put("m", 0, m - 1), [0])
        self.assertEqual(self.put("m", 0, m + 1), [0])
        self.assertFalse(self.exists("m", 0))
        # Nor for a removed mailbox or a user being deleted.
        self.r.call("HSET", self.k.mbx(self.inbox), "removed", 1)
        self.assertEqual(self.put("m", 0), [0])
        self.r.call("HDEL", self.k.mbx(self.inbox), "removed")
        # Values whose header does not match the key, bad keys and arguments are refused.
        keys = [self.k.meta, self.k.mbx(self.inbox), self.cache("f", 0)]
        for value in ("c1 m 0 %d 1\n" % m, "c1 f 1 %d 1\n" % m, "c1 f 0 %d 1\n" % (m + 1), "x"):
            self.assertRefused("ERR", self.s.evalsha, "cache_put", keys, [self.inbox, m, 60, value])
        good = "c1 f 0 %d 1\n" % m
        self.assertRefused("ERR", self.s.evalsha, "cache_put", keys, [self.inbox, m, 0, good])
        for bad in (self.cache("x", 0), self.cache("f", "01"), self.cache("f", 4194304),
                    self.k.mbx(tlm.new_mbxid(), "/cache/f/0")):
            self.assertRefused("ERR", self.s.evalsha, "cache_put", keys[:2] + [bad], [self.inbox, m, 60, good])

    def test_store_deletes_the_flag_caches_it_changes(self):
        low, high = self.two_chunks()
        self.s.store(self.inbox, "add", "\\Seen", high)
        self.assertFalse(self.exists("f", 1))
        self.assertTrue(self.exists("f", 0) and self.exists("m", 0) and self.exists("m", 1))
        # A store that changes nothing deletes nothing.
        self.assertEqual(self.put("f", 1), [1])
        self.s.store(self.inbox, "add", "\\Seen", high)
        self.assertTrue(self.exists("f", 1))
        self.s.store(self.inbox, "remove", "\\Seen", low + high)
        self.assertFalse(self.exists("f", 0) or self.exists("f", 1))
        self.assertTrue(self.exists("m", 0) and self.exists("m", 1))
        # Without the cache keys, or with other ones, the call is refused.
        keys = [self.k.meta] + self.k.mbx_all(self.inbox) + [self.k.channel]
        self.assertRefused("ERR", self.s.evalsha, "store", keys, [self.inbox, "add", "\\Seen", 0, 0] + high)
        self.assertRefused("ERR", self.s.evalsha, "store", keys + [self.cache("f", 0)],
                           [self.inbox, "add", "\\Seen", 0, 0] + high)
        self.assertRefused("ERR", self.s.evalsha, "store", keys + [self.cache("m", 1)],
                           [self.inbox, "add", "\\Seen", 0, 0] + high)

    def test_expunge_deletes_both_kinds(self):
        low, high = self.two_chunks()
        self.assertEqual(self.s.expunge(self.inbox, low, "deleted")[1], 1)
        self.assertFalse(self.exists("f", 0) or self.exists("m", 0))
        self.assertTrue(self.exists("f", 1) and self.exists("m", 1))
        # Nothing expunged, nothing deleted.
        self.assertEqual(self.put("m", 0), [1])
        self.assertEqual(self.s.expunge(self.inbox, low, "deleted")[1], 0)
        self.assertTrue(self.exists("m", 0))
        keys = [self.k.meta] + self.k.mbx_all(self.inbox) + [self.k.channel, self.k.gc]
        keys += [self.k.content(s) for s in self.s.content_of(self.inbox, high)]
        self.assertRefused("ERR", self.s.evalsha, "expunge", keys + [self.cache("f", 1)],
                           [self.inbox, "all"] + high)

    def test_purge_deletes_them(self):
        _, self.inbox = self.s.create("Other")
        self.two_chunks()
        self.s.delete("Other", self.inbox)
        self.s.purge(self.inbox)
        self.assertEqual(self.r.call("KEYS", self.k.mbx(self.inbox) + "*"), [])


class TestCopy(Base):
    def setUp(self):
        super().setUp()
        _, self.dst = self.s.create("Dest")

    def refs(self, sha):
        return int(self.r.call("HGET", self.k.content(sha), "refs"))

    def test_single_commit(self):
        uids, msgs = self.fill(self.inbox, ["\\Seen Kw", "\\Deleted", ""])
        self.fill(self.dst, ["kw"])  # the destination spells the keyword "kw"
        uv = int(self.r.call("HGET", self.k.mbx(self.dst), "uidvalidity"))
        m = self.highest(self.dst)
        reply = self.s.copy("commit", self.dst, self.inbox, uids + [uids[2] + 7])  # one is missing
        self.assertEqual(reply, [uv, m + 1, 2, 3, 3] + uids)
        self.assertEqual(self.flags_of(self.dst), {1: "kw", 2: "\\Seen kw", 3: "\\Deleted"})
        src_msg = tlm.hgetall(self.r, self.k.mbx(self.inbox, "/msg"))
        dst_msg = tlm.hgetall(self.r, self.k.mbx(self.dst, "/msg"))
        for i, u in enumerate(uids):
            self.assertEqual(dst_msg[str(2 + i)], src_msg[str(u)])
            self.assertEqual(self.refs(msgs[i].sha), 2)
        self.assertEqual(self.log(self.dst)[-1], ("%d-1" % (m + 1), "append", "2:4"))
        h = tlm.hgetall(self.r, self.k.mbx(self.dst))
        self.assertEqual((h["messages"], h["recent"], h["uidnext"]), ("4", "4", "5"))
        self.assertEqual(self.modseqs(self.dst)[3], m + 1)
        meta = tlm.hgetall(self.r, self.k.meta)
        self.assertEqual(int(meta["messages"]), 7)
        self.assertInvariants(self.dst)
        self.assertInvariants(self.inbox)
        # Nothing left behind.
        self.assertFalse(any(b"copy" in k for k in self.r.call("KEYS", "*")))

    def test_copy_into_itself(self):
        uids, _ = self.fill(self.inbox, ["", "\\Flagged"])
        reply = self.s.copy("commit", self.inbox, self.inbox, uids)
        self.assertEqual(reply[2:], [3, 2, 2] + uids)
        self.assertEqual(self.flags_of(self.inbox), {2: "\\Flagged", 4: "\\Flagged"})
        self.assertInvariants(self.inbox)

    def test_staged_copy_is_invisible_until_commit(self):
        uids, msgs = self.fill(self.inbox, ["", "\\Seen", "", "x"])
        before = tlm.snapshot(self.r)
        dst_keys = self.k.mbx_all(self.dst)
        cid = uuid.uuid4().hex
        r1 = self.s.copy("stage", self.dst, self.inbox, uids[:2], staging=cid)
        self.assertEqual(r1, [2, 2] + uids[:2])
        r2 = self.s.copy("stage", self.dst, self.inbox, [uids[2], 50], staging=cid)
        self.assertEqual(r2, [3, 1, uids[2]])
        after = tlm.snapshot(self.r)
        for k in dst_keys + [self.k.mbx(self.inbox, p) for p in tlm.MBX_PARTS]:
            self.assertEqual(after.get(k.encode()), before.get(k.encode()), k)
        self.assertEqual(self.refs(msgs[0].sha), 2)
        self.assertEqual(self.r.call("ZCARD", self.k.prefix + "copies"), 1)
        # The source loses a staged message meanwhile: the copy still has its content.
        self.s.expunge(self.inbox, [uids[0]], "all")
        self.assertEqual(self.refs(msgs[0].sha), 1)
        r3 = self.s.copy("commit", self.dst, self.inbox, uids[3:], staging=cid)
        self.assertEqual(r3[2:], [1, 4, 1, uids[3]])
        self.assertEqual(self.log(self.dst)[-1][1:], ("append", "1:4"))
        self.assertEqual(self.flags_of(self.dst), {2: "\\Seen", 4: "x"})
        self.assertEqual(self.refs(msgs[0].sha), 1)
        self.assertEqual(self.r.call("EXISTS", self.k.prefix + "copy/" + cid), 0)
        self.assertEqual(self.r.call("ZCARD", self.k.prefix + "copies"), 0)
        self.assertInvariants(self.dst)

    def test_failed_commit_leaves_destination_unchanged(self):
        uids, msgs = self.fill(self.inbox, ["a", "b", "c"])
        used = int(tlm.hgetall(self.r, self.k.meta)["bytes"])
        cid = uuid.uuid4().hex
        self.s.copy("stage", self.dst, self.inbox, uids[:2], staging=cid)
        staged = tlm.snapshot(self.r)
        quota = used + msgs[0].size + msgs[1].size  # one message short
        self.assertRefused("OVERQUOTA", self.s.copy, "commit", self.dst, self.inbox, uids[2:],
                           staging=cid, quota_bytes=quota)
        self.assertRefused("OVERQUOTA", self.s.copy, "commit", self.dst, self.inbox, uids[2:],
                           staging=cid, quota_messages=5)
        self.assertRefused("LIMIT", self.s.copy, "commit", self.dst, self.inbox, uids[2:],
                           staging=cid, max_keywords=2)
        self.assertEqual(tlm.snapshot(self.r), staged)
        # abort releases the staged references: the keyspace is as before the COPY.
        self.assertEqual(self.s.copy_abort(self.dst, self.inbox, cid), 1)
        for m in msgs:
            self.assertEqual(self.refs(m.sha), 1)
        self.assertEqual(self.r.call("EXISTS", self.k.prefix + "copies"), 0)
        # Within the quota the same commit works.
        reply = self.s.copy("commit", self.dst, self.inbox, uids, quota_bytes=used * 2, quota_messages=6)
        self.assertEqual(reply[3], 3)

    def test_abort_in_batches(self):
        uids, msgs = self.fill(self.inbox, [""] * 5)
        cid = uuid.uuid4().hex
        for _ in range(300):  # 1,500 staged records of 5 messages
            self.s.copy("stage", self.dst, self.inbox, uids, staging=cid)
        self.assertEqual(self.refs(msgs[0].sha), 301)
        self.assertEqual(self.s.copy_abort(self.dst, self.inbox, cid), 2)
        self.assertEqual(self.refs(msgs[0].sha), 1)

    def test_large_commit(self):
        uids, msgs = self.fill(self.inbox, ["\\Seen", "", "k"])
        cid = uuid.uuid4().hex
        for _ in range(700):
            self.s.copy("stage", self.dst, self.inbox, uids, staging=cid)
        reply = self.s.copy("commit", self.dst, self.inbox, [], staging=cid)
        self.assertEqual(reply[2:], [1, 2100, 0])
        self.assertEqual(self.refs(msgs[0].sha), 701)
        self.assertInvariants(self.dst)
        self.assertEqual(tlm.zmembers(self.r, self.k.mbx(self.dst, "/runs")), [("1:2100", 1)])

    def test_errors(self):
        uids, msgs = self.fill(self.inbox, [""])
        s = self.s
        self.assertRefused("TRYCREATE", s.copy, "commit", tlm.new_mbxid(), self.inbox, uids)
        self.assertRefused("TRYCREATE", s.copy, "stage", tlm.new_mbxid(), self.inbox, uids)
        self.assertRefused("NONEXISTENT", s.copy, "commit", self.dst, tlm.new_mbxid(), [1])
        self.assertRefused("ERR", s.copy, "clone", self.dst, self.inbox, uids)
        self.assertRefused("ERR", s.copy, "commit", self.dst, self.inbox, uids, shas=[ZERO_SHA])
        self.assertRefused("ERR", s.copy, "commit", self.dst, self.inbox, [1, 1], shas=[msgs[0].sha] * 2)
        self.assertRefused("ERR", s.copy, "commit", self.dst, self.inbox, uids, staging="x")
        self.r.call("HSET", self.k.mbx(self.dst), "removed", 1)
        self.assertRefused("TRYCREATE", s.copy, "commit", self.dst, self.inbox, uids)


if __name__ == "__main__":
    unittest.main()
