"""SELECT / EXAMINE / CLOSE / UNSELECT / CHECK and APPEND (incl. MULTIAPPEND and streamed
literals) against a real redis-server and cimapd; the demo data; what ends up in Redis."""

import imaplib
import re
import time
import unittest

import harness


def message(subject, body="Hello.\r\n", size=0):
    head = ("From: Tester <tester@example.org>\r\nTo: demouser@example.org\r\n"
            "Subject: %s\r\nMessage-ID: <%s@example.org>\r\n\r\n" % (subject, subject.replace(" ", "-")))
    data = (head + body).encode()
    if size > len(data):
        line = b"x" * 76 + b"\r\n"
        data += line * ((size - len(data)) // len(line) + 1)
    return data


class SelectAppendTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.redis = harness.Redis()
        cls.server = harness.Cimapd(cls.redis.url)
        harness.wait_for_user(cls.redis)
        # The demo mailboxes and messages follow the user record.
        deadline = time.monotonic() + 10
        while True:
            c = imaplib.IMAP4("127.0.0.1", cls.server.port)
            c.login("demouser", "demopass")
            typ, data = c.status("Trash", "(MESSAGES)")
            c.logout()
            if typ == "OK":
                break
            if time.monotonic() > deadline:
                raise RuntimeError("demo data never appeared")
            time.sleep(0.05)

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        log = cls.server.log_text()
        cls.server.cleanup()
        cls.redis.stop()
        if code != 0:
            raise AssertionError("cimapd exited with %s:\n%s" % (code, log[-4000:]))

    def imap(self):
        c = imaplib.IMAP4("127.0.0.1", self.server.port, timeout=20)
        c.login("demouser", "demopass")
        self.addCleanup(self._close, c)
        return c

    @staticmethod
    def _close(c):
        try:
            c.logout()
        except (OSError, imaplib.IMAP4.error):
            pass

    def raw(self):
        r = harness.Raw(self.server.port)
        r.line()
        r.send("L LOGIN demouser demopass\r\n")
        self.assertTrue(r.until_tagged("L")[-1].startswith("L OK"))
        self.addCleanup(r.close)
        return r

    def fresh_mailbox(self, c, name):
        typ, data = c.create(name)
        self.assertEqual(typ, "OK", data)
        return name

    # --- demo data -----------------------------------------------------------------------

    def test_demo_data(self):
        c = self.imap()
        typ, boxes = c.list()
        names = [b.decode() for b in boxes]
        for want in ('\\Sent) "/" "Sent"', '\\Drafts) "/" "Drafts"', '\\Trash) "/" "Trash"'):
            self.assertTrue(any(want in n for n in names), names)
        typ, data = c.status("INBOX", "(MESSAGES UNSEEN)")
        self.assertEqual(typ, "OK")
        self.assertIn(b"MESSAGES 5", data[0])
        self.assertIn(b"UNSEEN 2", data[0])
        typ, data = c.status("Drafts", "(MESSAGES)")
        self.assertIn(b"MESSAGES 1", data[0])

    # --- SELECT / EXAMINE ------------------------------------------------------------------

    def test_select_transcript(self):
        c = self.imap()
        box = self.fresh_mailbox(c, "Sel1")
        for i in range(3):
            c.append(box, "(\\Seen)" if i == 0 else None, None, message("sel %d" % i))
        r = self.raw()
        r.send("s1 SELECT Sel1\r\n")
        lines = r.until_tagged("s1")
        self.assertIn("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)", lines)
        self.assertIn("* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] "
                      "Flags permitted", lines)
        self.assertIn("* 3 EXISTS", lines)
        self.assertIn("* 3 RECENT", lines)
        self.assertIn("* OK [UNSEEN 2] First unseen", lines)
        self.assertTrue(any(l.startswith("* OK [UIDVALIDITY ") for l in lines))
        self.assertIn("* OK [UIDNEXT 4] Predicted next UID", lines)
        self.assertTrue(any(l.startswith("* OK [MAILBOXID (F") for l in lines))
        self.assertEqual(lines[-1], "s1 OK [READ-WRITE] SELECT completed")
        # \Recent was claimed by that session: a second one sees none.
        r2 = self.raw()
        r2.send("s2 EXAMINE Sel1\r\n")
        lines = r2.until_tagged("s2")
        self.assertIn("* 0 RECENT", lines)
        self.assertIn("* OK [PERMANENTFLAGS ()] Read-only mailbox", lines)
        self.assertEqual(lines[-1], "s2 OK [READ-ONLY] EXAMINE completed")

    def test_select_errors_and_state(self):
        r = self.raw()
        r.send("e1 SELECT NoSuchBox\r\n")
        self.assertEqual(r.line(), "e1 NO [NONEXISTENT] No such mailbox")
        r.send("e2 CLOSE\r\n")
        self.assertEqual(r.line(), "e2 BAD Command not valid in this state")
        r.send("e3 SELECT INBOX\r\n")
        self.assertTrue(r.until_tagged("e3")[-1].startswith("e3 OK [READ-WRITE]"))
        r.send("e4 CHECK\r\n")
        self.assertEqual(r.line(), "e4 OK CHECK completed")
        # A failed SELECT leaves the selected state (RFC 3501 §6.3.1).
        r.send("e5 SELECT NoSuchBox\r\n")
        self.assertEqual(r.line(), "e5 NO [NONEXISTENT] No such mailbox")
        r.send("e6 CHECK\r\n")
        self.assertEqual(r.line(), "e6 BAD Command not valid in this state")
        r.send("e7 SELECT inbox\r\n")
        self.assertTrue(r.until_tagged("e7")[-1].startswith("e7 OK"))
        r.send("e8 UNSELECT\r\n")
        self.assertEqual(r.line(), "e8 OK UNSELECT completed")
        r.send('e9 SELECT "bad&name"\r\n')
        self.assertTrue(r.line().startswith("e9 NO"))

    def test_close_expunges_only_read_write(self):
        c = self.imap()
        box = self.fresh_mailbox(c, "Closing")
        c.append(box, "(\\Deleted)", None, message("gone"))
        c.append(box, None, None, message("stays"))
        c.select(box, readonly=True)
        self.assertEqual(c.close()[0], "OK")
        self.assertIn(b"MESSAGES 2", c.status(box, "(MESSAGES)")[1][0])
        c.select(box)
        self.assertEqual(c.close()[0], "OK")
        self.assertIn(b"MESSAGES 1", c.status(box, "(MESSAGES)")[1][0])

    # --- APPEND ----------------------------------------------------------------------------

    def test_append_appenduid_and_flags(self):
        c = self.imap()
        box = self.fresh_mailbox(c, "App1")
        typ, data = c.append(box, "(\\Flagged $Work)", '"05-Mar-2024 10:20:30 +0100"',
                             message("flags"))
        self.assertEqual(typ, "OK")
        self.assertRegex(data[0].decode(), r"^\[APPENDUID \d+ 1\] APPEND completed$")
        typ, data = c.status(box, "(MESSAGES UNSEEN UIDNEXT SIZE)")
        self.assertIn(b"MESSAGES 1", data[0])
        self.assertIn(b"UNSEEN 1", data[0])
        self.assertIn(b"UIDNEXT 2", data[0])
        r = self.raw()
        r.send("a1 SELECT App1\r\n")
        lines = r.until_tagged("a1")
        self.assertIn("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work)", lines)

    def test_append_errors(self):
        r = self.raw()
        r.send("b1 APPEND NoSuchBox {5}\r\n")
        self.assertEqual(r.line(), "+ Ready for literal data")
        r.send("hello\r\n")
        self.assertEqual(r.line(), "b1 NO [TRYCREATE] No such mailbox")
        r.send('b2 APPEND INBOX "31-Feb-2024 00:00:00 +0000" {5}\r\n')
        self.assertEqual(r.line(), "b2 BAD Invalid date-time")
        r.send("b3 APPEND INBOX (\\Bogus) {5}\r\n")
        self.assertEqual(r.line(), "b3 BAD Unknown system flag")
        r.send("b4 APPEND INBOX (\\Recent) {5}\r\n")
        self.assertTrue(r.line().startswith("b4 BAD"))
        r.send("b5 APPEND INBOX {100000000}\r\n")  # over APPENDLIMIT (64 MiB)
        self.assertEqual(r.line(), "b5 NO [TOOBIG] Message larger than APPENDLIMIT")
        r.send("b6 APPEND INBOX {0}\r\n")
        self.assertEqual(r.line(), "b6 NO Empty message")
        # The connection goes on after every refusal.
        r.send("b7 NOOP\r\n")
        self.assertEqual(r.line(), "b7 OK NOOP completed")
        # A literal beyond --max-literal (256 MiB) is not read at all: BYE.
        r.send("b8 APPEND INBOX {999999999999}\r\n")
        lines = [r.line(), r.line()]
        self.assertTrue(lines[0].startswith("b8 BAD"), lines)
        self.assertTrue(lines[1].startswith("* BYE"), lines)
        self.assertTrue(r.closed())

    def test_append_nonsync_literal_and_pipelining(self):
        c = self.imap()
        box = self.fresh_mailbox(c, "Plus")
        r = self.raw()
        body = message("plus")
        r.send(b"p1 APPEND Plus {%d+}\r\n%s\r\np2 NOOP\r\n" % (len(body), body))
        lines = r.until_tagged("p2")
        self.assertTrue(any(l.startswith("p1 OK [APPENDUID ") for l in lines), lines)
        self.assertIn(b"MESSAGES 1", c.status(box, "(MESSAGES)")[1][0])

    def test_append_to_selected_mailbox_announces_exists(self):
        c = self.imap()
        self.fresh_mailbox(c, "SelApp")
        r = self.raw()
        r.send("v1 SELECT SelApp\r\n")
        self.assertIn("* 0 EXISTS", r.until_tagged("v1"))
        body = message("selapp")
        r.send(b"v2 APPEND SelApp {%d+}\r\n%s\r\n" % (len(body), body))
        lines = r.until_tagged("v2")
        self.assertEqual(lines[0], "* 1 EXISTS")  # before the tagged OK (RFC 3501 §6.3.11)
        self.assertRegex(lines[-1], r"^v2 OK \[APPENDUID \d+ 1\] APPEND completed$")
        r.send("v3 UID FETCH 1 (FLAGS)\r\n")
        lines = r.until_tagged("v3")
        self.assertTrue(any(l.startswith("* 1 FETCH (UID 1 FLAGS (") for l in lines), lines)

    # --- many runs: SELECT pages the runs by score while others expunge -------------------------

    def raw(self, select=None):
        r = harness.Raw(self.server.port, timeout=60)
        self.addCleanup(r.close)
        r.line()
        r.send("l LOGIN demouser demopass\r\n")
        self.assertIn("l OK", r.until_tagged("l")[-1])
        if select:
            r.send("s SELECT %s\r\n" % select)
            self.assertIn("s OK", r.until_tagged("s")[-1])
        return r

    def test_select_of_many_runs_while_another_session_expunges(self):
        """A mailbox of 2,500 runs (every other UID expunged) is read in pages after the SELECT
        snapshot; another session expunging single-message runs in front of the page boundary
        moves every rank after it. The view must still be exactly the mailbox once the log is
        replayed (pages by rank used to skip runs here, silently)."""
        box = "ManyRuns"
        a = self.raw()
        a.send("c CREATE %s\r\n" % box)
        a.until_tagged("c")
        n = 5000
        out = []
        for i in range(n):
            m = message("run %d" % i, size=0)
            out.append(b"a%d APPEND %s {%d+}\r\n%s\r\n" % (i, box.encode(), len(m), m))
        a.send(b"".join(out))
        for i in range(n):
            self.assertIn("OK", a.until_tagged("a%d" % i)[-1])
        a.send("s SELECT %s\r\n" % box)
        a.until_tagged("s")
        a.send("".join("d%d UID STORE %d +FLAGS.SILENT (\\Deleted)\r\n" % (u, u) for u in range(2, n + 1, 2)))
        for u in range(2, n + 1, 2):
            self.assertIn("OK", a.until_tagged("d%d" % u)[-1])
        a.send("e EXPUNGE\r\n")
        self.assertIn("e OK", a.until_tagged("e")[-1])
        r = self.redis.client()
        self.addCleanup(r.close)
        nsid = r.call("HGET", "/users/demouser", "nsid").decode()
        mbxid = r.call("HGET", "/ns/{%s}/mailboxes" % nsid, box).decode()
        uids_key = "/ns/{%s}/mbx/%s/uids" % (nsid, mbxid)
        self.assertEqual(r.call("ZCARD", "/ns/{%s}/mbx/%s/runs" % (nsid, mbxid)), n // 2)
        b = self.raw(select=box)
        victims = list(range(1, n, 2))  # single-message runs, lowest first
        for round_ in range(12):
            batch, victims = victims[:40], victims[40:]
            # b expunges 40 single-message runs of the first page, one command each, while a
            # SELECTs (its snapshot script, then pages of runs) and replays the log.
            b.send("".join("x%d UID STORE %d +FLAGS.SILENT (\\Deleted)\r\ny%d UID EXPUNGE %d\r\n"
                           % (u, u, u, u) for u in batch))
            a.send("s%d SELECT %s\r\n" % (round_, box))
            a.until_tagged("s%d" % round_)
            for u in batch:
                b.until_tagged("y%d" % u)
            a.send("n%d NOOP\r\nq%d UID SEARCH ALL\r\n" % (round_, round_))
            a.until_tagged("n%d" % round_)
            lines = a.until_tagged("q%d" % round_)
            got = sorted(int(x) for l in lines if l.startswith("* SEARCH") for x in l.split()[2:])
            want = sorted(int(x) for x in r.call("ZRANGE", uids_key, 0, -1))
            self.assertEqual(len(got), len(want), "round %d" % round_)
            self.assertEqual(got, want, "round %d" % round_)

    def test_status_follows_rename_and_recreate(self):
        # STATUS remembers name -> id per session; a rename or re-create must not fool it.
        c = self.imap()
        box = self.fresh_mailbox(c, "Stat1")
        c.append(box, None, None, message("stat one"))
        self.assertIn(b"MESSAGES 1", c.status(box, "(MESSAGES)")[1][0])
        self.assertEqual(c.rename(box, "Stat2")[0], "OK")
        self.assertEqual(c.status(box, "(MESSAGES)")[0], "NO")
        self.assertEqual(c.create(box)[0], "OK")
        self.assertIn(b"MESSAGES 0", c.status(box, "(MESSAGES)")[1][0])
        self.assertIn(b"MESSAGES 1", c.status("Stat2", "(MESSAGES)")[1][0])

    def test_pipelined_appends_with_literal_plus(self):
        # mbsync's default: many APPENDs in flight, each literal non-synchronizing; one streamed.
        c = self.imap()
        box = self.fresh_mailbox(c, "Piped")
        r = self.raw()
        msgs = [message("piped %d" % i) for i in range(5)]
        msgs.insert(2, message("piped big", size=600 * 1024))
        out = b"".join(b"q%d APPEND Piped {%d+}\r\n%s\r\n" % (i, len(m), m) for i, m in enumerate(msgs))
        r.send(out + b"qn NOOP\r\n")
        lines = r.until_tagged("qn")
        oks = [l for l in lines if re.match(r"q\d OK \[APPENDUID \d+ \d+\]", l)]
        self.assertEqual(len(oks), len(msgs), lines)
        uids = [int(l.split()[4].rstrip("]")) for l in oks]
        self.assertEqual(uids, list(range(1, len(msgs) + 1)))
        self.assertIn(b"MESSAGES %d" % len(msgs), c.status(box, "(MESSAGES)")[1][0])

    def test_multiappend_all_or_nothing(self):
        c = self.imap()
        box = self.fresh_mailbox(c, "Multi")
        r = self.raw()
        m1, m2 = message("m one"), message("m two")
        r.send(b"m1 APPEND Multi (\\Seen) {%d+}\r\n%s (\\Flagged) {%d+}\r\n%s\r\n"
               % (len(m1), m1, len(m2), m2))
        line = r.until_tagged("m1")[-1]
        self.assertRegex(line, r"^m1 OK \[APPENDUID \d+ 1:2\] APPEND completed$")
        # The last message fails (bad flag): nothing of the command is stored.
        r.send(b"m2 APPEND Multi {%d+}\r\n%s (\\Nope) {%d+}\r\n%s\r\n"
               % (len(m1), m1, len(m2), m2))
        line = r.until_tagged("m2")[-1]
        self.assertTrue(line.startswith("m2 BAD"), line)
        self.assertIn(b"MESSAGES 2", c.status(box, "(MESSAGES)")[1][0])

    def test_streamed_append_and_staging_cleanup(self):
        c = self.imap()
        box = self.fresh_mailbox(c, "Big")
        big = message("big", size=3 * 1024 * 1024 + 17)
        rc = self.redis.client()
        staged_before = [k for k in rc.keys() if "/staging/" in k]
        typ, data = c.append(box, None, None, big)
        self.assertEqual(typ, "OK", data)
        typ, data = c.status(box, "(MESSAGES SIZE)")
        self.assertIn(b"MESSAGES 1", data[0])
        self.assertIn(b"SIZE %d" % len(big), data[0])
        try:
            self.assertEqual([k for k in rc.keys() if "/staging/" in k], staged_before)
            raws = [k for k in rc.keys() if k.endswith("/raw")]
            self.assertIn(len(big), [rc.call("STRLEN", k) for k in raws])
            # Same bytes again: the content is shared, not stored twice.
            before = len(raws)
            self.assertEqual(c.append(box, None, None, big)[0], "OK")
            self.assertEqual(len([k for k in rc.keys() if k.endswith("/raw")]), before)
        finally:
            rc.close()

    def test_abandoned_upload_leaves_only_expiring_staging(self):
        self.imap()
        r = self.raw()
        size = 2 * 1024 * 1024
        r.send("u1 APPEND INBOX {%d}\r\n" % size)
        self.assertEqual(r.line(), "+ Ready for literal data")
        r.send(b"x" * (size // 2))
        time.sleep(0.3)
        r.close()
        time.sleep(0.3)
        rc = self.redis.client()
        try:
            staging = [k for k in rc.keys() if "/staging/" in k]
            self.assertEqual(len(staging), 1)
            ttl = rc.call("TTL", staging[0])
            self.assertGreater(ttl, 0)
            self.assertLessEqual(ttl, 3600)
        finally:
            rc.close()

    def test_second_frontend_sees_appends(self):
        other = harness.Cimapd(self.redis.url, demo=False)
        try:
            c = self.imap()
            box = self.fresh_mailbox(c, "Shared")
            c.append(box, None, None, message("shared"))
            c2 = imaplib.IMAP4("127.0.0.1", other.port)
            c2.login("demouser", "demopass")
            typ, data = c2.select(box)
            self.assertEqual((typ, data), ("OK", [b"1"]))
            c2.logout()
        finally:
            self.assertEqual(other.stop(), 0)
            other.cleanup()


if __name__ == "__main__":
    unittest.main()
