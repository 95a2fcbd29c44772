"""FETCH through the column caches (frontend/colcache.h) against a real redis-server and two
cimapds on it: one with the caches (the default), one with --cache-ttl 0. The same commands must
answer byte for byte the same on both, cold (the caches being built) and warm (read from them),
for a mailbox of three chunks with mixed flags, keywords and holes; changes made through another
session (STORE, EXPUNGE, APPEND, MOVE, the implicit \\Seen of FETCH) must show at once; a damaged
chunk must read as absent; and ENVELOPE/BODYSTRUCTURE rendered from the cached parse must be the
strings APPEND stored."""

import glob
import imaplib
import os
import re
import time
import unittest

import harness
import test_fetch as tf


def body_of(k):
    """Message k of a test mailbox: plain text, or (every 10th) multipart with an attachment."""
    subject = "cache message %d" % k
    extra = b"Cc: Other <other%d@example.net>\r\n" % (k % 13)
    if k % 10 == 0:
        extra += b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n"
        body = (b"--b\r\nContent-Type: text/plain\r\n\r\npart one of %d\r\n--b\r\n"
                b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
                b"\r\nAAECAwQFBgcICQ==\r\n--b--\r\n" % k)
    else:
        body = b"Hello number %d.\r\n" % k
    return tf.message(subject, body, extra)


def flags_of(k):
    flags = []
    if k % 3 != 0:
        flags.append("\\Seen")
    if k % 17 == 0:
        flags.append("\\Flagged")
    if k % 11 == 0:
        flags += ["\\Answered", "\\Draft"]
    if k % 5 == 0:
        flags.append("$Label1")
    if k % 7 == 0:
        flags.append("Work")
    return flags


def record_ends(value, kind):
    """Offsets where the records of a chunk value end (colcache.h format)."""
    pos = value.index(b"\n") + 1
    ends = []
    while pos < len(value):
        nl = value.index(b"\n", pos)
        lens = [int(x) for x in value[pos:nl].split(b" ")[1:]]
        pos = nl + 1 + sum(lens)
        ends.append(pos)
    return ends


class FetchCacheTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.redis = harness.Redis()
        cls.server = harness.Cimapd(cls.redis.url)
        harness.wait_for_user(cls.redis)
        cls.plain = harness.Cimapd(cls.redis.url, "--cache-ttl", "0", demo=False)
        cls.counter = 0

    @classmethod
    def tearDownClass(cls):
        failures = []
        for s in (cls.server, cls.plain):
            code = s.stop()
            if code != 0:
                failures.append("cimapd exited with %s:\n%s" % (code, s.log_text()[-4000:]))
            s.cleanup()
        cls.redis.stop()
        if failures:
            raise AssertionError("\n".join(failures))

    def conn(self, server=None, select=None, examine=None):
        c = tf.Conn((server or self.server).port)
        self.addCleanup(c.close)
        if select:
            c.ok("SELECT " + select)
        if examine:
            c.ok("EXAMINE " + examine)
        return c

    def redis_call(self, *args):
        r = self.redis.client()
        try:
            return r.call(*args)
        finally:
            r.close()

    def ids(self, box):
        nsid = self.redis_call("HGET", "/users/demouser", "nsid").decode()
        mbxid = self.redis_call("HGET", "/ns/{%s}/mailboxes" % nsid, box).decode()
        return nsid, mbxid

    def cache_keys(self, box):
        nsid, mbxid = self.ids(box)
        r = self.redis.client()
        try:
            prefix = "/ns/{%s}/mbx/%s/cache/" % (nsid, mbxid)
            return {k[len(prefix):] for k in r.keys(prefix + "*")}
        finally:
            r.close()

    def settled_keys(self, box, want):
        """cache_keys once every key of want is there (chunks are stored fire and forget, so an
        answer may reach the client before its chunks reach Redis); at most 5 s."""
        deadline = time.monotonic() + 5
        keys = self.cache_keys(box)
        while not set(want) <= keys and time.monotonic() < deadline:
            time.sleep(0.01)
            keys = self.cache_keys(box)
        return keys

    def cache_key(self, box, kind, chunk):
        nsid, mbxid = self.ids(box)
        return "/ns/{%s}/mbx/%s/cache/%s/%d" % (nsid, mbxid, kind, chunk)

    def make_box(self, n, with_flags=True):
        """A fresh mailbox of n messages (MULTIAPPEND, 250 at a time)."""
        FetchCacheTest.counter += 1
        box = "Cache%d" % FetchCacheTest.counter
        c = self.conn()
        c.ok("CREATE " + box)
        for start in range(0, n, 250):
            parts = []
            for k in range(start + 1, min(n, start + 250) + 1):
                m = body_of(k)
                flags = " ".join(flags_of(k)) if with_flags else ""
                parts.append(b"(%s) {%d+}\r\n" % (flags.encode(), len(m)) + m)
            c.sock.sendall(b"m APPEND " + box.encode() + b" " + b" ".join(parts) + b"\r\n")
            while True:
                r = c.response()
                if r.startswith(b"m "):
                    self.assertTrue(r.startswith(b"m OK"), r)
                    break
        c.close()
        return box

    def same_everywhere(self, box, commands):
        """Each command answers the same: cold and warm with caches, and without them."""
        cached = self.conn(examine=box)
        plain = self.conn(server=self.plain, examine=box)
        for cmd in commands:
            want = plain.run(cmd)
            for attempt in ("cold", "warm"):
                got = cached.run(cmd)
                self.assertEqual(len(got[0]), len(want[0]), (cmd, attempt))
                for a, b in zip(got[0], want[0]):
                    self.assertEqual(a, b, (cmd, attempt))
                self.assertEqual(got[1], want[1], (cmd, attempt))

    # --- the same answers, caches on and off ---------------------------------------------------

    def test_three_chunks_same_answers(self):
        box = self.make_box(2200)
        c = self.conn(select=box)
        c.ok("UID STORE 100:130,1500,2050:2060 +FLAGS.SILENT (\\Deleted)")
        c.ok("EXPUNGE")
        c.close()
        self.assertEqual(self.cache_keys(box), set())
        self.same_everywhere(box, [
            "UID FETCH 1:* (FLAGS)",
            "FETCH 1:* (FLAGS)",
            "FETCH 1:* (UID)",
            "FETCH 1:* (ENVELOPE)",
            "FETCH 1:* ALL",
            "FETCH 1:* FULL",
            "FETCH 1:* (BODYSTRUCTURE)",
            "FETCH 1:* (UID RFC822.SIZE INTERNALDATE EMAILID THREADID)",
            "FETCH 1:* (BODY.PEEK[HEADER.FIELDS (Subject)] BINARY.SIZE[1])",
            "UID FETCH 1000:1100 (FLAGS ENVELOPE)",
            "FETCH 1,500,1000:1030,2100:* (FLAGS BODY RFC822.SIZE)",
            "UID FETCH 1023:1025,2047:2049 (FLAGS BODY.PEEK[TEXT])",
            "FETCH 7 (FLAGS ENVELOPE)",
        ])
        # The caches of the three chunks are in Redis now.
        want = {"f/0", "f/1", "f/2", "m/0", "m/1", "m/2"}
        self.assertTrue(want <= self.settled_keys(box, want), self.cache_keys(box))
        # DELETE releases the mailbox in batches and leaves none of its keys, caches included.
        nsid, mbxid = self.ids(box)
        c = self.conn()
        c.ok("DELETE " + box)
        r = self.redis.client()
        try:
            self.assertEqual(r.keys("/ns/{%s}/mbx/%s*" % (nsid, mbxid)), set())
        finally:
            r.close()

    def test_envelope_and_bodystructure_from_the_cached_parse(self):
        """Rendered from the parse (building and warm), they are the strings APPEND stored."""
        FetchCacheTest.counter += 1
        box = "Fixtures%d" % FetchCacheTest.counter
        c = self.conn()
        c.ok("CREATE " + box)
        c.close()
        imap = imaplib.IMAP4("127.0.0.1", self.server.port, timeout=60)
        imap.login("demouser", "demopass")
        stored = 0
        for path in sorted(glob.glob(os.path.join(tf.FIXTURES, "*.eml"))):
            with open(path, "rb") as f:
                data = tf.crlf(f.read())
            if not data:
                continue
            typ, _ = imap.append(box, None, None, data)
            stored += typ == "OK"
        imap.logout()
        self.assertGreater(stored, 40)
        nsid, mbxid = self.ids(box)
        c = self.conn(examine=box)
        for attempt in ("building", "warm"):
            untagged = c.ok("FETCH 1:* (UID ENVELOPE BODYSTRUCTURE)")
            self.assertEqual(len(untagged), stored, attempt)
            for line in untagged:
                seq, uid = (int(x) for x in re.match(rb"\* (\d+) FETCH \(UID (\d+) ", line).groups())
                rec = self.redis_call("HGET", "/ns/{%s}/mbx/%s/msg" % (nsid, mbxid), str(uid))
                content = "/ns/{%s}/content/%s" % (nsid, rec.split()[0].decode())
                env = self.redis_call("HGET", content, "env")
                bs = self.redis_call("HGET", content, "bs")
                self.assertEqual(line, b"* %d FETCH (UID %d ENVELOPE %s BODYSTRUCTURE %s)"
                                 % (seq, uid, env, bs), attempt)
        self.assertIn("m/0", self.settled_keys(box, {"m/0"}))

    # --- changes through other sessions --------------------------------------------------------

    def flags_by_uid(self, untagged):
        """{uid: [flag lists of every FETCH response naming it]} (unsolicited ones included)."""
        out = {}
        for r in untagged:
            if b" FETCH (" not in r[:30]:
                continue
            _, d = tf.parse_fetch(r)
            if "UID" in d and "FLAGS" in d:
                out.setdefault(int(d["UID"]), []).append([bytes(f) for f in d["FLAGS"]])
        return out

    def test_store_through_another_session(self):
        box = self.make_box(1100)
        a = self.conn(select=box)
        b = self.conn(server=self.plain, select=box)
        a.ok("UID FETCH 1:* (FLAGS)")
        a.ok("UID FETCH 1:* (FLAGS)")
        self.assertTrue({"f/0", "f/1"} <= self.settled_keys(box, {"f/0", "f/1"}))
        b.ok("UID STORE 5,1030 +FLAGS.SILENT (\\Answered $Moved)")
        b.ok("UID STORE 6 -FLAGS.SILENT (\\Seen)")
        got = self.flags_by_uid(a.ok("UID FETCH 1:* (FLAGS)"))
        for uid in (5, 1030):
            for flags in got[uid]:
                self.assertIn(b"\\Answered", flags)
                self.assertIn(b"$Moved", flags)
        for flags in got[6]:
            self.assertNotIn(b"\\Seen", flags)
        # The same through the cache rebuilt by that FETCH.
        got = self.flags_by_uid(a.ok("UID FETCH 1:* (FLAGS)"))
        self.assertIn(b"$Moved", got[1030][-1])
        self.assertNotIn(b"\\Seen", got[6][-1])

    def test_implicit_seen_through_the_cache(self):
        box = self.make_box(1100, with_flags=False)
        a = self.conn(select=box)
        a.ok("FETCH 1:* (FLAGS)")
        a.ok("FETCH 1:* (FLAGS)")
        # A non-PEEK body item over more than 1,000 unseen messages of one chunk.
        got = tf.fetches(a.ok("FETCH 1:1050 (BODY[HEADER.FIELDS (Subject)])"))
        self.assertEqual(len(got), 1050)
        self.assertIn(b"\\Seen", got[1]["FLAGS"])
        self.assertIn(b"\\Seen", got[1050]["FLAGS"])
        other = self.conn(server=self.plain, examine=box)
        for conn in (a, other):
            flags = tf.fetches(conn.ok("FETCH 1:* (FLAGS)"))
            seen = [k for k in flags if b"\\Seen" in flags[k]["FLAGS"]]
            self.assertEqual(seen, list(range(1, 1051)))

    def test_expunge_through_another_session(self):
        box = self.make_box(1100)
        a = self.conn(select=box)
        b = self.conn(server=self.plain, select=box)
        for cmd in ("FETCH 1:* (FLAGS)", "FETCH 1:* (RFC822.SIZE)", "FETCH 1:* (ENVELOPE)"):
            a.ok(cmd)
            a.ok(cmd)
        self.assertTrue({"f/0", "f/1", "m/0", "m/1"} <= self.settled_keys(box, {"f/0", "f/1", "m/0", "m/1"}))
        b.ok("UID STORE 10,1040 +FLAGS.SILENT (\\Deleted)")
        b.ok("EXPUNGE")
        # a has not been told: its view still holds them, the caches must not.
        for cmd in ("FETCH 1:* (FLAGS)", "FETCH 1:* (RFC822.SIZE)", "FETCH 1:* (ENVELOPE)"):
            untagged, tagged = a.run(cmd)
            self.assertTrue(tagged.startswith(b"NO [EXPUNGEISSUED]"), (cmd, tagged))
            got = tf.fetches(untagged)
            self.assertNotIn(10, got, cmd)
            self.assertNotIn(1040, got, cmd)
            self.assertEqual(len(got), 1098, cmd)
        untagged, tagged = a.run("UID FETCH 1:* (FLAGS)")
        self.assertTrue(tagged.startswith(b"OK"), tagged)
        uids = {int(d["UID"]) for d in tf.fetches(untagged).values()}
        self.assertEqual(len(uids), 1098)
        self.assertNotIn(10, uids)
        # After NOOP the view agrees; answers are complete and the caches come back.
        a.ok("NOOP")
        self.assertEqual(len(a.fetch("FETCH 1:* (RFC822.SIZE FLAGS)")), 1098)
        self.assertTrue({"f/0", "f/1", "m/0", "m/1"} <= self.settled_keys(box, {"f/0", "f/1", "m/0", "m/1"}))
        self.same_everywhere(box, ["FETCH 1:* (FLAGS RFC822.SIZE ENVELOPE)"])

    def test_append_and_move_through_another_session(self):
        box = self.make_box(1100)
        c = self.conn()
        c.ok("CREATE %sTarget" % box)
        a = self.conn(select=box)
        b = self.conn(server=self.plain, select=box)
        for cmd in ("UID FETCH 1:* (FLAGS)", "UID FETCH 1:* (RFC822.SIZE)"):
            a.ok(cmd)
            a.ok(cmd)
        new = tf.message("appended later", b"new body\r\n")
        c.sock.sendall(b"x APPEND %s (\\Flagged Later) {%d+}\r\n" % (box.encode(), len(new)) +
                       new + b"\r\n")
        while not c.response().startswith(b"x OK"):
            pass
        b.ok("UID MOVE 20,1050 %sTarget" % box)
        untagged, tagged = a.run("FETCH 1:* (UID FLAGS RFC822.SIZE)")
        self.assertTrue(tagged.startswith(b"NO [EXPUNGEISSUED]"), tagged)
        uids = {int(d["UID"]) for d in tf.fetches(untagged).values()}
        self.assertNotIn(20, uids)
        self.assertNotIn(1050, uids)
        a.ok("NOOP")  # learns of the move and the new message
        got = tf.fetches(a.ok("UID FETCH 1:* (FLAGS RFC822.SIZE)"))
        by_uid = {int(d["UID"]): d for d in got.values()}
        self.assertEqual(len(by_uid), 1099)
        self.assertIn(1101, by_uid)
        self.assertIn(b"\\Flagged", by_uid[1101]["FLAGS"])
        self.assertIn(b"Later", by_uid[1101]["FLAGS"])
        self.assertEqual(int(by_uid[1101]["RFC822.SIZE"]), len(new))
        moved = self.conn(examine=box + "Target")
        got = tf.fetches(moved.ok("FETCH 1:* (FLAGS ENVELOPE)"))
        self.assertEqual(sorted(bytes(d["ENVELOPE"][1]) for d in got.values()),
                         [b"cache message 1050", b"cache message 20"])
        self.same_everywhere(box, ["UID FETCH 1:* (FLAGS RFC822.SIZE)", "FETCH 1:* ENVELOPE"])

    # --- a view exact by modseq that lacks a message ----------------------------------------------

    def test_guard_refuses_a_build_from_an_incomplete_view(self):
        """A view can be exact by modseq and still lack a message (colcache.h); a chunk built
        from it would call that message absent for every session. The build's guard (ZCOUNT
        uids, read with the snapshot) counts more UIDs than records: nothing is stored, and the
        answers are the view's."""
        box = self.make_box(40)
        c = self.conn(select=box)
        c.ok("UID STORE 10 +FLAGS.SILENT (\\Deleted)")
        c.ok("EXPUNGE")
        c.close()
        nsid, mbxid = self.ids(box)
        base = "/ns/{%s}/mbx/%s" % (nsid, mbxid)
        a = self.conn(examine=box)
        plain = self.conn(server=self.plain, examine=box)
        # UID 10 comes back behind the sessions' backs, highestmodseq untouched: both views are
        # exact by modseq, and both lack it (SELECT reads /runs, left as it was).
        self.redis_call("ZADD", base + "/uids", "10", "10")
        self.redis_call("HSET", base + "/msg", "10", self.redis_call("HGET", base + "/msg", "11"))
        commands = ["FETCH 1:* (FLAGS)", "FETCH 1:* (RFC822.SIZE ENVELOPE)",
                    "UID FETCH 1:* (FLAGS INTERNALDATE BODY.PEEK[HEADER.FIELDS (Subject)])"]
        for cmd in commands:
            want = plain.run(cmd)
            self.assertEqual(len(tf.fetches(want[0])), 39, cmd)
            for attempt in ("first", "second"):
                self.assertEqual(a.run(cmd), want, (cmd, attempt))
        time.sleep(0.5)  # puts are fire and forget: give a wrong one time to land
        self.assertEqual(self.cache_keys(box), set())
        # The same mailbox made consistent again: the same session builds both chunks.
        self.redis_call("ZREM", base + "/uids", "10")
        self.redis_call("HDEL", base + "/msg", "10")
        for cmd in commands:
            self.assertEqual(a.run(cmd), plain.run(cmd), cmd)
        self.assertTrue({"f/0", "m/0"} <= self.settled_keys(box, {"f/0", "m/0"}),
                        self.cache_keys(box))

    # --- damaged chunks --------------------------------------------------------------------------

    def test_damaged_chunks_read_as_absent(self):
        box = self.make_box(1100)
        items = "(FLAGS RFC822.SIZE ENVELOPE BODY)"
        plain = self.conn(server=self.plain, examine=box)
        want = plain.run("FETCH 1:* " + items)
        c = self.conn(examine=box)
        c.run("FETCH 1:* " + items)
        self.assertEqual(c.run("FETCH 1:* " + items), want)
        self.settled_keys(box, {"f/0", "m/0"})
        for kind in ("f", "m"):
            key = self.cache_key(box, kind, 0)
            good = self.redis_call("GET", key)
            self.assertIsNotNone(good, kind)
            header, _, records = good.partition(b"\n")
            ends = record_ends(good, kind)
            self.assertGreater(len(ends), 1000)
            parse_at = good.find(b"CMP")
            damaged = [
                b"garbage",
                b"",
                good[:ends[500] - 3],                                  # cut inside a record
                good[:ends[500]],                                      # cut at a record boundary
                header.replace(b" 0 ", b" 1 ", 1) + b"\n" + records,   # another chunk's header
                header + b"\n" + b"x" + records,                       # a bad record
                good + b"99999 1 1\nzz",                               # a record past upto
                good.replace(b"c1 ", b"c9 ", 1),                       # unknown version
                header.replace(b" %s 0 " % kind.encode(), b" %s 0 9" % kind.encode(), 1)
                + b"\n" + records,                                     # newer than the mailbox
            ]
            if kind == "m" and parse_at > 0:                           # a parse that does not open
                damaged.append(good[:parse_at] + b"XXX" + good[parse_at + 3:])
            for value in damaged:
                self.redis_call("SET", key, value)
                self.assertEqual(c.run("FETCH 1:* " + items), want, (kind, value[:60]))
                self.assertTrue(self.server.alive())
                # Its rebuild is stored fire and forget: let it land before the next damage.
                deadline = time.monotonic() + 2
                while self.redis_call("GET", key) != good and time.monotonic() < deadline:
                    time.sleep(0.01)
        self.assertTrue(self.server.alive())


if __name__ == "__main__":
    unittest.main()
