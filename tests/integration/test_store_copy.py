"""STORE, EXPUNGE, COPY and MOVE (with their UID forms) against a real redis-server and cimapd, as
client/server transcripts: every form and error path, RFC 2180 behaviour of two sessions on one
mailbox, COPYUID values, COPY spanning several batches, and a failed COPY that leaves the
destination unchanged. (Quota is checked at the script level, test_lua_store.py: per-user quotas
are not wired into cimapd yet.)"""

import imaplib
import re
import unittest

import harness


def message(i, extra=""):
    return ("From: t@example.org\r\nSubject: message %d\r\nMessage-ID: <m%d@example.org>\r\n%s\r\n"
            "Body %d.\r\n" % (i, i, extra, i)).encode()


class Session:
    """A raw IMAP session: send a command, get its untagged lines and the tagged one."""

    def __init__(self, port):
        self.raw = harness.Raw(port)
        self.n = 0
        self.raw.line()
        self.ok("LOGIN demouser demopass")

    def cmd(self, text):
        self.n += 1
        tag = "t%d" % self.n
        self.raw.send("%s %s\r\n" % (tag, text))
        lines = self.raw.until_tagged(tag)
        return lines[:-1], lines[-1][len(tag) + 1:]

    def ok(self, text):
        untagged, tagged = self.cmd(text)
        if not tagged.startswith("OK"):
            raise AssertionError("%s -> %s" % (text, tagged))
        return untagged, tagged

    def append_many(self, mailbox, bodies, flags="()"):
        """One MULTIAPPEND with LITERAL+ (RFC 3502, RFC 7888)."""
        self.n += 1
        tag = "t%d" % self.n
        out = [("%s APPEND %s" % (tag, mailbox)).encode()]
        for b in bodies:
            out.append((" %s {%d+}\r\n" % (flags, len(b))).encode() + b)
        self.raw.send(b"".join(out) + b"\r\n")
        last = self.raw.until_tagged(tag)[-1]
        if " OK " not in last:
            raise AssertionError(last)
        return last

    def close(self):
        self.raw.close()


def snapshot(r, prefix):
    return {k: r.call("DUMP", k) for k in r.keys(prefix + "*")}


class Base(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.redis = harness.Redis()
        cls.d = harness.Cimapd(cls.redis.url)
        harness.wait_for_user(cls.redis)

    @classmethod
    def tearDownClass(cls):
        status = cls.d.stop()
        log = cls.d.log_text()
        cls.d.cleanup()
        cls.redis.stop()
        if status != 0 or "ERROR: AddressSanitizer" in log or "runtime error" in log:
            raise AssertionError("cimapd exited with %s:\n%s" % (status, log[-4000:]))

    def setUp(self):
        self.s = Session(self.d.port)
        self.box = "T%s" % self.id().split(".")[-1]
        self.s.ok("CREATE %s" % self.box)

    def tearDown(self):
        self.s.close()

    def fill(self, n, flags="()", box=None):
        box = box or self.box
        for start in range(0, n, 500):
            self.s.append_many(box, [message(i) for i in range(start, min(n, start + 500))], flags)


class TestStore(Base):
    def test_forms(self):
        self.fill(3)
        self.s.ok("SELECT %s" % self.box)
        u, t = self.s.ok("STORE 1:2 +FLAGS (\\Seen \\Flagged)")
        self.assertEqual(u, ["* 1 FETCH (FLAGS (\\Seen \\Flagged \\Recent))",
                             "* 2 FETCH (FLAGS (\\Seen \\Flagged \\Recent))"])
        u, t = self.s.ok("UID STORE 2:3 -FLAGS (\\Flagged)")
        self.assertEqual(u, ["* 2 FETCH (FLAGS (\\Seen \\Recent) UID 2)",
                             "* 3 FETCH (FLAGS (\\Recent) UID 3)"])
        u, t = self.s.ok("STORE 3 FLAGS.SILENT (\\Draft \\Answered)")
        self.assertEqual(u, [])
        u, t = self.s.ok("STORE 3 FLAGS \\Deleted \\Recent")
        self.assertEqual(u, ["* 3 FETCH (FLAGS (\\Deleted \\Recent))"])
        u, t = self.s.ok("STORE * -FLAGS.SILENT ()")
        self.assertEqual(u, [])
        # A new keyword is announced with FLAGS and PERMANENTFLAGS before the FETCH.
        u, t = self.s.ok("STORE 1 +FLAGS ($Important)")
        self.assertEqual(u, ["* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Important)",
                             "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft "
                             "$Important \\*)] Flags permitted",
                             "* 1 FETCH (FLAGS (\\Seen \\Flagged $Important \\Recent))"])
        u, t = self.s.ok("STORE 2 +FLAGS ($important)")  # same keyword, other case: no announcement
        self.assertEqual(u, ["* 2 FETCH (FLAGS (\\Seen $Important \\Recent))"])
        # A fresh session sees the flags (without \Recent: another session has claimed it).
        other = Session(self.d.port)
        other.ok("EXAMINE %s" % self.box)
        u, _ = other.ok("FETCH 1:3 FLAGS")
        self.assertEqual(u, ["* 1 FETCH (FLAGS (\\Seen \\Flagged $Important))",
                             "* 2 FETCH (FLAGS (\\Seen $Important))", "* 3 FETCH (FLAGS (\\Deleted))"])
        # EXAMINE refuses every change.
        for c in ("STORE 1 +FLAGS (\\Seen)", "UID STORE 1 FLAGS ()", "EXPUNGE", "UID EXPUNGE 1",
                  "MOVE 1 INBOX", "UID MOVE 1 INBOX"):
            _, t = other.cmd(c)
            self.assertTrue(t.startswith("NO [READ-ONLY]"), (c, t))
        _, t = other.cmd("COPY 1 INBOX")  # COPY only reads the source
        self.assertTrue(t.startswith("OK [COPYUID "), t)
        other.close()

    def test_errors(self):
        self.fill(2)
        self.s.ok("SELECT %s" % self.box)
        for c in ("STORE 3 +FLAGS (\\Seen)", "STORE 1:5 FLAGS ()", "STORE 0 FLAGS ()",
                  "STORE 1 FLAG (\\Seen)", "STORE 1 +FLAGS (\\Bogus)", "STORE 1 +FLAGS (a{b)",
                  "STORE 1 +FLAGS", "STORE 1 ++FLAGS (\\Seen)", "STORE 1 (UNCHANGEDSINCE 5) FLAGS ()",
                  "UID STORE x FLAGS ()", "EXPUNGE 1", "UID EXPUNGE", "UID EXPUNGE 1:x",
                  "COPY 3 INBOX", "COPY 1", "MOVE 1:4 INBOX"):
            _, t = self.s.cmd(c)
            self.assertTrue(t.startswith("BAD"), (c, t))
        # UIDs that do not exist match nothing (RFC 3501 §6.4.8).
        u, t = self.s.ok("UID STORE 7:9 +FLAGS (\\Seen)")
        self.assertEqual(u, [])
        u, t = self.s.ok("UID STORE 2:9 +FLAGS (\\Seen)")  # 2:9 holds UID 2
        self.assertEqual(u, ["* 2 FETCH (FLAGS (\\Seen \\Recent) UID 2)"])

    def test_empty_mailbox(self):
        self.s.ok("SELECT %s" % self.box)
        for c in ("UID STORE * +FLAGS (\\Seen)", "UID STORE 1:* +FLAGS (\\Seen)", "UID COPY * INBOX",
                  "UID MOVE 1:* INBOX", "UID EXPUNGE 1:*", "EXPUNGE", "STORE * +FLAGS (\\Seen)",
                  "COPY * INBOX"):
            u, t = self.s.ok(c)
            self.assertEqual(u, [], c)
            self.assertNotIn("COPYUID", t)
        _, t = self.s.cmd("STORE 1 +FLAGS (\\Seen)")
        self.assertTrue(t.startswith("BAD"), t)
        u, t = self.s.ok("COPY 1:* INBOX")  # "*" denotes no message: nothing to copy
        self.assertEqual(t, "OK COPY completed")

    def test_batches(self):
        self.fill(2500)
        self.s.ok("SELECT %s" % self.box)
        u, _ = self.s.ok("STORE 1:* +FLAGS (\\Seen)")
        self.assertEqual(len(u), 2500)
        self.assertEqual(u[2499], "* 2500 FETCH (FLAGS (\\Seen \\Recent))")
        u, _ = self.s.ok("STATUS INBOX (UNSEEN)")  # another mailbox, just a round trip
        s2 = Session(self.d.port)
        u, _ = s2.ok("STATUS %s (MESSAGES UNSEEN)" % self.box)
        self.assertTrue(u[0].endswith("(MESSAGES 2500 UNSEEN 0)"), u)
        s2.close()


class TestExpunge(Base):
    def test_sequence_numbers_shift(self):
        self.fill(6)
        self.s.ok("SELECT %s" % self.box)
        self.s.ok("STORE 2,3,5 +FLAGS.SILENT (\\Deleted)")
        u, t = self.s.ok("EXPUNGE")
        self.assertEqual(u, ["* 2 EXPUNGE", "* 2 EXPUNGE", "* 3 EXPUNGE"])
        u, _ = self.s.ok("FETCH 1:* (UID)")
        self.assertEqual(u, ["* 1 FETCH (UID 1)", "* 2 FETCH (UID 4)", "* 3 FETCH (UID 6)"])
        u, t = self.s.ok("EXPUNGE")
        self.assertEqual(u, [])

    def test_uid_expunge(self):
        self.fill(5)
        self.s.ok("SELECT %s" % self.box)
        self.s.ok("STORE 1:4 +FLAGS.SILENT (\\Deleted)")
        u, t = self.s.ok("UID EXPUNGE 2,4:5")
        self.assertEqual(u, ["* 2 EXPUNGE", "* 3 EXPUNGE"])
        self.assertTrue(t.startswith("OK"))
        u, _ = self.s.ok("FETCH 1:* (UID FLAGS)")
        self.assertEqual(u, ["* 1 FETCH (UID 1 FLAGS (\\Deleted \\Recent))",
                             "* 2 FETCH (UID 3 FLAGS (\\Deleted \\Recent))",
                             "* 3 FETCH (UID 5 FLAGS (\\Recent))"])
        self.s.ok("CLOSE")  # silent, removes the rest of \Deleted
        u, _ = self.s.ok("SELECT %s" % self.box)
        self.assertIn("* 1 EXISTS", u)

    def test_large(self):
        self.fill(2300)
        self.s.ok("SELECT %s" % self.box)
        self.s.ok("STORE 2:* +FLAGS.SILENT (\\Deleted)")
        u, _ = self.s.ok("EXPUNGE")
        self.assertEqual(u, ["* 2 EXPUNGE"] * 2299)
        u, _ = self.s.ok("FETCH * (UID)")
        self.assertEqual(u, ["* 1 FETCH (UID 1)"])

    def test_two_sessions(self):
        """RFC 2180 §4: one session expunges, the other still sees the messages until told."""
        self.fill(4)
        a, b = self.s, Session(self.d.port)
        a.ok("SELECT %s" % self.box)
        b.ok("SELECT %s" % self.box)
        a.ok("STORE 2:3 +FLAGS.SILENT (\\Deleted)")
        u, _ = a.ok("EXPUNGE")
        self.assertEqual(u, ["* 2 EXPUNGE", "* 2 EXPUNGE"])
        # B stores to messages 1-4: 2 and 3 are gone; no EXPUNGE during STORE (RFC 2180 §4.2.3).
        u, t = b.cmd("STORE 1:4 +FLAGS (\\Flagged)")
        self.assertTrue(t.startswith("NO [EXPUNGEISSUED]"), t)
        self.assertEqual([x for x in u if "FETCH" in x],
                         ["* 1 FETCH (FLAGS (\\Flagged))", "* 4 FETCH (FLAGS (\\Flagged))"])
        self.assertFalse(any("EXPUNGE" in x for x in u), u)
        u, t = b.cmd("STORE 2 +FLAGS.SILENT (\\Seen)")  # .SILENT: OK (RFC 2180 §4.2.1)
        self.assertTrue(t.startswith("OK"), t)
        u, t = b.ok("UID STORE 1:4 +FLAGS (\\Answered)")  # UIDs: the gone ones match nothing
        self.assertEqual([x for x in u if "FETCH" in x],
                         ["* 1 FETCH (FLAGS (\\Answered \\Flagged) UID 1)",
                          "* 4 FETCH (FLAGS (\\Answered \\Flagged) UID 4)"])
        # COPY of the stale range copies what still exists.
        u, t = b.ok("COPY 1:4 INBOX")
        self.assertRegex(t, r"^OK \[COPYUID \d+ 1,4 \d+:\d+\]")
        # NOOP brings B up to date: the EXPUNGEs, then the flag changes.
        u, _ = b.ok("NOOP")
        self.assertEqual([x for x in u if "EXPUNGE" in x], ["* 2 EXPUNGE", "* 2 EXPUNGE"])
        # A learns of B's flags the same way.
        u, _ = a.ok("NOOP")
        self.assertTrue(any("UID 4" in x and "\\Answered \\Flagged" in x for x in u), u)
        b.close()


class TestCopyMove(Base):
    def uidvalidity(self, box):
        u, _ = self.s.ok("STATUS %s (UIDVALIDITY UIDNEXT MESSAGES)" % box)
        m = re.search(r"UIDVALIDITY (\d+) UIDNEXT (\d+) MESSAGES (\d+)", u[0])
        return int(m.group(1)), int(m.group(2)), int(m.group(3))

    def test_copyuid(self):
        self.fill(5, flags="(\\Seen $Work)")
        self.s.ok("CREATE %s/dst" % self.box)
        dst = "%s/dst" % self.box
        self.fill(2, box=dst)
        uv, _, _ = self.uidvalidity(dst)
        self.s.ok("SELECT %s" % self.box)
        _, t = self.s.ok("UID COPY 2,4:5,99 %s" % dst)
        self.assertEqual(t, "OK [COPYUID %d 2,4:5 3:5] UID COPY completed" % uv)
        _, t = self.s.ok("COPY 1 %s" % dst)
        self.assertEqual(t, "OK [COPYUID %d 1 6] COPY completed" % uv)
        _, t = self.s.cmd("COPY 1 %s/nothere" % self.box)
        self.assertEqual(t, "NO [TRYCREATE] COPY: no such mailbox")
        _, t = self.s.cmd("MOVE 1 %s/nothere" % self.box)
        self.assertTrue(t.startswith("NO [TRYCREATE]"), t)
        # The copies keep flags and content, and are \Recent in the destination.
        b = Session(self.d.port)
        b.ok("SELECT %s" % dst)
        u, _ = b.ok("UID FETCH 3:6 (FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        text = "\n".join(u)
        self.assertEqual(len(re.findall(r"FLAGS \(\\Seen \$Work \\Recent\)", text)), 4)
        self.assertIn("message 3", text)
        b.close()

    def test_move(self):
        self.fill(5, flags="(\\Flagged)")
        self.s.ok("CREATE %s/dst" % self.box)
        dst = "%s/dst" % self.box
        uv, _, _ = self.uidvalidity(dst)
        self.s.ok("SELECT %s" % self.box)
        u, t = self.s.ok("MOVE 2,4 %s" % dst)
        self.assertEqual(u, ["* OK [COPYUID %d 2,4 1:2] Moved" % uv, "* 2 EXPUNGE", "* 3 EXPUNGE"])
        self.assertEqual(t, "OK MOVE completed")
        u, t = self.s.ok("UID MOVE 1:* %s" % dst)
        self.assertEqual(u, ["* OK [COPYUID %d 1,3,5 3:5] Moved" % uv, "* 1 EXPUNGE", "* 1 EXPUNGE",
                             "* 1 EXPUNGE"])
        self.assertEqual(self.uidvalidity(dst)[1:], (6, 5))
        self.assertEqual(self.uidvalidity(self.box)[2], 0)

    def test_multi_batch_copy_and_move(self):
        self.fill(2300)
        dst = "%s/dst" % self.box
        self.s.ok("CREATE %s" % dst)
        uv, _, _ = self.uidvalidity(dst)
        self.s.ok("SELECT %s" % self.box)
        _, t = self.s.ok("COPY 1:* %s" % dst)
        self.assertEqual(t, "OK [COPYUID %d 1:2300 1:2300] COPY completed" % uv)
        u, t = self.s.ok("MOVE 1001:2300 %s" % dst)
        self.assertEqual(u[0], "* OK [COPYUID %d 1001:2300 2301:3600] Moved" % uv)
        self.assertEqual(u[1:], ["* 1001 EXPUNGE"] * 1300)
        self.assertEqual(self.uidvalidity(dst)[1:], (3601, 3600))
        r = self.redis.client()
        self.assertEqual(r.keys("*/copy/*"), set())
        self.assertEqual(r.keys("*/copies"), set())
        r.close()

    def test_failed_copy_leaves_destination_unchanged(self):
        """A COPY of 1,200 messages fails at its commit (LIMIT on keywords): nothing appears."""
        dst = "%s/dst" % self.box
        self.s.ok("CREATE %s" % dst)
        self.s.append_many(dst, [message(0)], "(%s)" % " ".join("d%d" % i for i in range(250)))
        self.fill(1190)
        self.s.append_many(self.box, [message(i) for i in range(10)],
                           "(%s)" % " ".join("s%d" % i for i in range(10)))
        r = self.redis.client()
        nsid = r.call("HGET", "/users/demouser", "nsid").decode()
        prefix = "/ns/{%s}/" % nsid
        dst_id = r.call("HGET", prefix + "mailboxes", dst).decode()
        before = snapshot(r, prefix + "mbx/" + dst_id)
        contents = {k: r.call("HGET", k, "refs") for k in r.keys(prefix + "content/*")
                    if not k.endswith("/raw")}
        meta = r.call("HMGET", prefix + "meta", "messages", "bytes")
        self.s.ok("SELECT %s" % self.box)
        _, t = self.s.cmd("COPY 1:* %s" % dst)
        self.assertTrue(t.startswith("NO [LIMIT]"), t)
        _, t = self.s.cmd("MOVE 1:* %s" % dst)
        self.assertTrue(t.startswith("NO [LIMIT]"), t)
        self.assertEqual(snapshot(r, prefix + "mbx/" + dst_id), before)
        self.assertEqual({k: r.call("HGET", k, "refs") for k in contents}, contents)
        self.assertEqual(r.call("HMGET", prefix + "meta", "messages", "bytes"), meta)
        self.assertEqual(r.keys(prefix + "copy/*"), set())
        self.assertEqual(r.call("EXISTS", prefix + "copies"), 0)
        u, _ = self.s.ok("FETCH 1200 (UID)")  # MOVE removed nothing either
        self.assertEqual(u, ["* 1200 FETCH (UID 1200)"])
        # Without the new keywords the same COPY goes through.
        _, t = self.s.ok("COPY 1:1190 %s" % dst)
        self.assertTrue(t.startswith("OK [COPYUID "), t)
        r.close()

    def test_imaplib(self):
        """The same through a stock client library."""
        self.fill(3)
        m = imaplib.IMAP4("127.0.0.1", self.d.port)
        m.login("demouser", "demopass")
        self.assertIn("UIDPLUS", m.capabilities)
        self.assertIn("MOVE", m.capabilities)
        m.select(self.box)
        typ, data = m.store("1:2", "+FLAGS", "(\\Deleted)")
        self.assertEqual(typ, "OK")
        self.assertEqual(len(data), 2)
        typ, data = m.copy("3", "INBOX")
        self.assertEqual(typ, "OK")
        typ, data = m.uid("MOVE", "3", "INBOX")
        self.assertEqual(typ, "OK")
        typ, data = m.expunge()
        self.assertEqual((typ, data), ("OK", [b"3", b"1", b"1"]))
        m.logout()


if __name__ == "__main__":
    unittest.main()
