"""Mailbox commands against a real redis-server and cimapd (issue 5): CREATE, DELETE, RENAME,
LIST, LSUB, SUBSCRIBE, UNSUBSCRIBE, NAMESPACE, STATUS.

Each test gets its own Redis and cimapd with the demo user (INBOX with messages, Sent, Drafts,
Trash, Junk, Archive with SPECIAL-USE), so tests cannot see each other's mailboxes. Most tests are
raw transcripts; a few go through imaplib as a second, independent client.
"""

import imaplib
import re
import unittest

import harness

STATUS_ALL = "(MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN MAILBOXID SIZE)"


class Session:
    """A logged-in raw IMAP session: cmd() returns (untagged lines, tagged line)."""

    def __init__(self, port):
        self.raw = harness.Raw(port)
        self.n = 0
        greeting = self.raw.line()
        assert greeting.startswith("* OK "), greeting
        _, tagged = self.cmd("LOGIN demouser demopass")
        assert tagged.startswith("OK"), tagged

    def cmd(self, text):
        self.n += 1
        tag = "t%d" % self.n
        self.raw.send("%s %s\r\n" % (tag, text))
        lines = self.raw.until_tagged(tag)
        return lines[:-1], lines[-1][len(tag) + 1:]

    def cmd_literal(self, before, literal, after=""):
        """Sends `before {n}` CRLF, waits for the continuation, then the literal and `after`."""
        self.n += 1
        tag = "t%d" % self.n
        data = literal.encode() if isinstance(literal, str) else literal
        self.raw.send("%s %s{%d}\r\n" % (tag, before, len(data)))
        cont = self.raw.line()
        assert cont.startswith("+"), cont
        self.raw.send(data + after.encode() + b"\r\n")
        lines = self.raw.until_tagged(tag)
        return lines[:-1], lines[-1][len(tag) + 1:]

    def ok(self, text):
        untagged, tagged = self.cmd(text)
        assert tagged.startswith("OK"), "%s -> %s" % (text, tagged)
        return untagged

    def list(self, ref, pattern, verb="LIST"):
        """{name: set of attributes} of a LIST/LSUB answer (names quoted by the server)."""
        out = {}
        for line in self.ok('%s %s %s' % (verb, ref, pattern)):
            m = re.match(r'^\* %s \(([^)]*)\) "/" "((?:[^"\\]|\\.)*)"$' % verb, line)
            assert m, line
            out[m.group(2).replace('\\"', '"').replace("\\\\", "\\")] = set(m.group(1).split())
        return out

    def status(self, name, items=STATUS_ALL):
        untagged = self.ok("STATUS %s %s" % (name, items))
        assert len(untagged) == 1, untagged
        m = re.match(r'^\* STATUS ("(?:[^"\\]|\\.)*"|\S+) \((.*)\)$', untagged[0])
        assert m, untagged[0]
        body = m.group(2)
        values = {}
        mid = re.search(r"MAILBOXID \((F[0-9a-f]{32})\)", body)
        if mid:
            values["MAILBOXID"] = mid.group(1)
            body = body.replace(mid.group(0), "")
        toks = body.split()
        for i in range(0, len(toks), 2):
            values[toks[i]] = int(toks[i + 1])
        return m.group(1), values

    def close(self):
        self.raw.close()


class MailboxCommandsTest(unittest.TestCase):
    def setUp(self):
        self.redis = harness.Redis()
        self.server = harness.Cimapd(self.redis.url)
        harness.wait_for_user(self.redis)
        r = self.redis.client()
        self.nsid = r.call("HGET", "/users/demouser", "nsid").decode()
        r.close()
        self.s = self.session()

    def tearDown(self):
        code = self.server.stop()
        log = self.server.log_text()
        self.server.cleanup()
        self.redis.stop()
        if code != 0:
            raise AssertionError("cimapd exited with %s:\n%s" % (code, log[-4000:]))

    def session(self, server=None):
        s = Session((server or self.server).port)
        self.addCleanup(s.close)
        return s

    def ns(self, suffix):
        return "/ns/{%s}/%s" % (self.nsid, suffix)

    def mailboxes(self):
        r = self.redis.client()
        try:
            flat = r.call("HGETALL", self.ns("mailboxes"))
        finally:
            r.close()
        return {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}

    # --- capabilities, NAMESPACE -------------------------------------------------------------

    def test_capabilities_and_namespace(self):
        caps = self.s.ok("CAPABILITY")[0].split()
        for word in ("NAMESPACE", "SPECIAL-USE", "STATUS=SIZE", "OBJECTID"):
            self.assertIn(word, caps)
        self.assertNotIn("LIST-STATUS", caps)
        self.assertEqual(self.s.ok("NAMESPACE"), ['* NAMESPACE (("" "/")) NIL NIL'])
        self.assertEqual(self.s.cmd("NAMESPACE extra")[1][:3], "BAD")

    def test_not_authenticated(self):
        raw = harness.Raw(self.server.port)
        self.addCleanup(raw.close)
        raw.line()
        for i, command in enumerate(("CREATE x", 'LIST "" *', "STATUS INBOX (MESSAGES)",
                                     "NAMESPACE", "DELETE x", "RENAME a b", "SUBSCRIBE x",
                                     'LSUB "" *', "UNSUBSCRIBE x")):
            raw.send("n%d %s\r\n" % (i, command))
            self.assertTrue(raw.until_tagged("n%d" % i)[-1].startswith("n%d BAD" % i), command)

    # --- CREATE --------------------------------------------------------------------------------

    def test_create_and_duplicate(self):
        _, tagged = self.s.cmd("CREATE Projects")
        self.assertRegex(tagged, r"^OK \[MAILBOXID \(F[0-9a-f]{32}\)\] ")
        self.assertEqual(self.mailboxes()["Projects"], tagged.split("(")[1].split(")")[0])
        self.assertTrue(self.s.cmd("CREATE Projects")[1].startswith("NO [ALREADYEXISTS]"))
        for inbox in ("INBOX", "inbox", "InBoX"):
            self.assertTrue(self.s.cmd("CREATE %s" % inbox)[1].startswith("NO [ALREADYEXISTS]"))

    def test_create_with_parents(self):
        self.s.ok("CREATE a/b/c")
        boxes = self.mailboxes()
        for name in ("a", "a/b", "a/b/c"):
            self.assertIn(name, boxes)
        self.assertEqual(len({boxes["a"], boxes["a/b"], boxes["a/b/c"]}), 3)
        listed = self.s.list('""', "a*")
        self.assertEqual(listed, {"a": {"\\HasChildren"}, "a/b": {"\\HasChildren"},
                                  "a/b/c": {"\\HasNoChildren"}})
        # a parent that exists is kept as it is
        before = boxes["a"]
        self.s.ok("CREATE a/x")
        self.assertEqual(self.mailboxes()["a"], before)
        # a trailing delimiter declares a future parent: the name is created without it
        self.s.ok("CREATE Later/")
        self.assertIn("Later", self.mailboxes())
        # INBOX children keep INBOX upper case
        self.s.ok("CREATE inbox/Sub")
        self.assertIn("INBOX/Sub", self.mailboxes())

    def test_create_invalid_names(self):
        for bad in ('"a//b"', '"/a"', '"/"', '"&AOk"', '"&AGE-"', '"&AOk-&AOk-"', '"a*b"',
                    '"a%b"', '""', '"&Jjo!-"'):
            _, tagged = self.s.cmd("CREATE %s" % bad)
            self.assertTrue(tagged.startswith("NO [CANNOT]") or tagged.startswith("BAD"),
                            "%s -> %s" % (bad, tagged))
        # 8-bit and control bytes only arrive as literals
        for bad in ("caf\u00e9".encode(), b"tab\there", b"nul\x00x"):
            _, tagged = self.s.cmd_literal("CREATE ", bad)
            self.assertTrue(tagged.startswith("NO [CANNOT]") or tagged.startswith("BAD"),
                            "%r -> %s" % (bad, tagged))
        self.assertEqual(set(self.mailboxes()), {"INBOX", "Sent", "Drafts", "Trash", "Junk",
                                                 "Archive"})

    def test_create_limits(self):
        self.s.ok("CREATE " + "x" * 255)
        self.assertTrue(self.s.cmd("CREATE " + "y" * 256)[1].startswith("NO [LIMIT]"))
        self.s.ok("CREATE " + "/".join(["d"] * 16))
        self.assertTrue(self.s.cmd("CREATE " + "/".join(["e"] * 17))[1].startswith("NO [LIMIT]"))
        self.assertNotIn("e", self.mailboxes())

    def test_modified_utf7_names(self):
        self.s.ok('CREATE "&AOk-t&AOk-"')
        self.s.ok("CREATE &ZeVnLIqe-/&-x")
        listed = self.s.list('""', "*")
        self.assertEqual(listed["&AOk-t&AOk-"], {"\\HasNoChildren"})
        self.assertEqual(listed["&ZeVnLIqe-"], {"\\HasChildren"})
        self.assertIn("&ZeVnLIqe-/&-x", listed)
        name, values = self.s.status('"&AOk-t&AOk-"', "(MESSAGES)")
        self.assertEqual((name, values), ('"&AOk-t&AOk-"', {"MESSAGES": 0}))
        # imaplib as a second client sees the same names
        c = imaplib.IMAP4("127.0.0.1", self.server.port, timeout=10)
        try:
            c.login("demouser", "demopass")
            typ, data = c.list('""', "&AOk-*")
            self.assertEqual(typ, "OK")
            self.assertEqual(data, [b'(\\HasNoChildren) "/" "&AOk-t&AOk-"'])
        finally:
            c.logout()

    def test_names_with_spaces_quoted_and_literal(self):
        self.s.ok('CREATE "My Folder"')
        _, tagged = self.s.cmd_literal("CREATE ", "Other Box/with \"quote\"")
        self.assertTrue(tagged.startswith("OK"), tagged)
        boxes = self.mailboxes()
        self.assertIn("My Folder", boxes)
        self.assertIn('Other Box/with "quote"', boxes)
        listed = self.s.list('""', "*")
        self.assertIn("My Folder", listed)
        self.assertEqual(listed["Other Box"], {"\\HasChildren"})  # parents are created
        self.assertIn('Other Box/with "quote"', listed)
        untagged, tagged = self.s.cmd_literal("STATUS ", "My Folder", " (MESSAGES UIDNEXT)")
        self.assertTrue(tagged.startswith("OK"), tagged)
        self.assertEqual(untagged, ['* STATUS "My Folder" (MESSAGES 0 UIDNEXT 1)'])
        untagged = self.s.ok('STATUS "Other Box/with \\"quote\\"" (MESSAGES)')
        self.assertEqual(untagged, ['* STATUS "Other Box/with \\"quote\\"" (MESSAGES 0)'])

    # --- DELETE --------------------------------------------------------------------------------

    def mailbox_keys(self, mbxid):
        r = self.redis.client()
        try:
            return r.keys(self.ns("mbx/%s*" % mbxid))
        finally:
            r.close()

    def test_delete_errors(self):
        for inbox in ("INBOX", "inbox"):
            self.assertTrue(self.s.cmd("DELETE %s" % inbox)[1].startswith("NO [CANNOT]"))
        self.assertTrue(self.s.cmd("DELETE Nope")[1].startswith("NO [NONEXISTENT]"))
        self.assertTrue(self.s.cmd('DELETE "a//b"')[1].startswith("NO [CANNOT]"))
        self.assertIn("INBOX", self.mailboxes())

    def test_delete_leaves_no_key(self):
        self.s.ok("CREATE Gone")
        mbxid = self.mailboxes()["Gone"]
        self.assertTrue(self.mailbox_keys(mbxid))
        self.s.ok("DELETE Gone")
        self.assertNotIn("Gone", self.mailboxes())
        self.assertEqual(self.mailbox_keys(mbxid), set())
        r = self.redis.client()
        try:
            self.assertEqual(r.call("SMEMBERS", self.ns("trash")), [])
        finally:
            r.close()
        self.assertTrue(self.s.cmd("STATUS Gone (MESSAGES)")[1].startswith("NO [NONEXISTENT]"))
        self.assertTrue(self.s.cmd("DELETE Gone")[1].startswith("NO [NONEXISTENT]"))

    def test_delete_with_messages(self):
        _, inbox = self.s.status("INBOX")
        self.assertGreater(inbox["MESSAGES"], 0)
        self.s.ok("RENAME INBOX Full")
        _, full = self.s.status("Full")
        self.assertEqual(full["MESSAGES"], inbox["MESSAGES"])
        self.assertEqual(full["MAILBOXID"], inbox["MAILBOXID"])
        self.assertTrue(self.mailbox_keys(full["MAILBOXID"]))
        r = self.redis.client()
        try:
            before = int(r.call("HGET", self.ns("meta"), "messages") or 0)
            self.s.ok("DELETE Full")
            self.assertEqual(self.mailbox_keys(full["MAILBOXID"]), set())
            after = int(r.call("HGET", self.ns("meta"), "messages") or 0)
            self.assertEqual(before - after, inbox["MESSAGES"])
            self.assertEqual(r.call("SMEMBERS", self.ns("trash")), [])
        finally:
            r.close()

    def test_delete_finishes_leftover_purges(self):
        # A front end killed between mbx_delete and the end of its purge leaves the mailbox in
        # the trash set; the user's next DELETE purges it.
        self.s.ok("RENAME INBOX Left")
        left = self.mailboxes()["Left"]
        with open(harness.ROOT + "/lua/mbx_delete.lua") as f:
            body = f.read()
        r = self.redis.client()
        try:
            mbx = self.ns("mbx/" + left)
            r.call("EVAL", body, 6, self.ns("meta"), self.ns("mailboxes"), mbx, mbx + "/log",
                   self.ns("channel"), self.ns("trash"), "Left", left)
            self.assertEqual(r.call("SMEMBERS", self.ns("trash")), [left.encode()])
            self.assertTrue(self.mailbox_keys(left))
            self.s.ok("CREATE Other")
            self.s.ok("DELETE Other")
            self.assertEqual(r.call("SMEMBERS", self.ns("trash")), [])
            self.assertEqual(self.mailbox_keys(left), set())
        finally:
            r.close()

    def test_delete_parent_keeps_children(self):
        self.s.ok("CREATE p/c1")
        self.s.ok("CREATE p/c2/g")
        self.s.ok("DELETE p")
        boxes = self.mailboxes()
        self.assertNotIn("p", boxes)
        for name in ("p/c1", "p/c2", "p/c2/g"):
            self.assertIn(name, boxes)
        listed = self.s.list('""', "p*")
        self.assertEqual(listed, {"p": {"\\Noselect", "\\HasChildren"},
                                  "p/c1": {"\\HasNoChildren"}, "p/c2": {"\\HasChildren"},
                                  "p/c2/g": {"\\HasNoChildren"}})
        self.assertEqual(self.s.list('""', "%")["p"], {"\\Noselect", "\\HasChildren"})
        # the implied parent cannot be deleted or examined, but can be created again
        self.assertTrue(self.s.cmd("DELETE p")[1].startswith("NO [NONEXISTENT]"))
        self.assertTrue(self.s.cmd("STATUS p (MESSAGES)")[1].startswith("NO [NONEXISTENT]"))
        self.s.ok("CREATE p")
        self.assertEqual(self.s.list('""', "p")["p"], {"\\HasChildren"})

    # --- RENAME --------------------------------------------------------------------------------

    def test_rename_errors(self):
        self.s.ok("CREATE A")
        self.s.ok("CREATE B")
        self.assertTrue(self.s.cmd("RENAME A B")[1].startswith("NO [ALREADYEXISTS]"))
        self.assertTrue(self.s.cmd("RENAME A inbox")[1].startswith("NO [ALREADYEXISTS]"))
        self.assertTrue(self.s.cmd("RENAME Nope C")[1].startswith("NO [NONEXISTENT]"))
        self.assertTrue(self.s.cmd("RENAME A A/sub")[1].startswith("NO [CANNOT]"))
        self.assertTrue(self.s.cmd("RENAME A " + "z" * 256)[1].startswith("NO [LIMIT]"))
        self.assertTrue(self.s.cmd('RENAME A "bad//name"')[1].startswith("NO [CANNOT]"))
        self.assertTrue(self.s.cmd("RENAME A")[1].startswith("BAD"))
        boxes = self.mailboxes()
        self.assertIn("A", boxes)
        self.assertIn("B", boxes)

    def test_rename_keeps_id_and_moves_children(self):
        self.s.ok("CREATE r/x/y")
        self.s.ok("CREATE r/z")
        self.s.ok("CREATE rr")
        before = self.mailboxes()
        _, st = self.s.status("r/x", "(UIDVALIDITY MAILBOXID)")
        self.s.ok("RENAME r s/t")
        after = self.mailboxes()
        for old, new in (("r", "s/t"), ("r/x", "s/t/x"), ("r/x/y", "s/t/x/y"), ("r/z", "s/t/z")):
            self.assertNotIn(old, after)
            self.assertEqual(after[new], before[old])
        self.assertEqual(after["rr"], before["rr"])  # a sibling prefix is not a child
        _, st2 = self.s.status("s/t/x", "(UIDVALIDITY MAILBOXID)")
        self.assertEqual(st, st2)
        self.assertEqual(self.s.list('""', "s")["s"], {"\\Noselect", "\\HasChildren"})

    def test_rename_inbox(self):
        self.s.ok("CREATE INBOX/keep")
        _, inbox = self.s.status("INBOX")
        self.s.ok("RENAME inbox Archive/Old")
        _, old = self.s.status("Archive/Old")
        _, fresh = self.s.status("INBOX")
        self.assertEqual(old["MAILBOXID"], inbox["MAILBOXID"])
        self.assertEqual(old["UIDVALIDITY"], inbox["UIDVALIDITY"])
        self.assertEqual(old["MESSAGES"], inbox["MESSAGES"])
        self.assertNotEqual(fresh["MAILBOXID"], inbox["MAILBOXID"])
        self.assertGreater(fresh["UIDVALIDITY"], inbox["UIDVALIDITY"])
        self.assertEqual((fresh["MESSAGES"], fresh["UIDNEXT"], fresh["SIZE"]), (0, 1, 0))
        # INBOX's children stay where they are (RFC 3501 6.3.5)
        self.assertIn("INBOX/keep", self.mailboxes())

    # --- LIST / LSUB -----------------------------------------------------------------------------

    def test_list_patterns(self):
        for name in ("Work", "Work/Reports", "Work/Reports/2024", "Workshop", "INBOX/Sub"):
            self.s.ok('CREATE "%s"' % name)
        every = self.s.list('""', "*")
        self.assertEqual(set(every), {"INBOX", "INBOX/Sub", "Sent", "Drafts", "Trash", "Junk",
                                      "Archive", "Work", "Work/Reports", "Work/Reports/2024",
                                      "Workshop"})
        self.assertEqual(every["INBOX"], {"\\HasChildren"})
        self.assertEqual(every["Sent"], {"\\HasNoChildren", "\\Sent"})
        for name, use in (("Drafts", "\\Drafts"), ("Trash", "\\Trash"), ("Junk", "\\Junk"),
                          ("Archive", "\\Archive")):
            self.assertIn(use, every[name])
        self.assertEqual(set(self.s.list('""', "%")),
                         {"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive", "Work",
                          "Workshop"})
        self.assertEqual(set(self.s.list('""', "Work/%")), {"Work/Reports"})
        self.assertEqual(set(self.s.list('""', "Work/*")), {"Work/Reports", "Work/Reports/2024"})
        self.assertEqual(set(self.s.list('"Work/"', "%")), {"Work/Reports"})
        self.assertEqual(set(self.s.list("Work", "*")),
                         {"Work", "Work/Reports", "Work/Reports/2024", "Workshop"})
        self.assertEqual(set(self.s.list('""', "%/%")), {"INBOX/Sub", "Work/Reports"})
        self.assertEqual(set(self.s.list('""', "*/2024")), {"Work/Reports/2024"})
        self.assertEqual(set(self.s.list('""', "work")), set())  # case-sensitive
        self.assertEqual(set(self.s.list('""', "inbox")), {"INBOX"})  # but not INBOX
        self.assertEqual(set(self.s.list('""', "Inbox/%")), {"INBOX/Sub"})
        self.assertEqual(set(self.s.list('""', "nothing*")), set())
        self.assertEqual(set(self.s.list('""', "W" + "*%" * 5000 + "4")), {"Work/Reports/2024"})
        self.assertEqual(set(self.s.list('""', "*a" * 3000)), set())
        self.assertEqual(self.s.ok('LIST "" ""'), ['* LIST (\\Noselect) "/" ""'])
        self.assertEqual(self.s.ok('LIST "Work" ""'), ['* LIST (\\Noselect) "/" ""'])
        self.assertTrue(self.s.cmd("LIST (x) *")[1].startswith("BAD"))
        self.assertTrue(self.s.cmd("LIST x")[1].startswith("BAD"))
        # literals for both arguments
        untagged, tagged = self.s.cmd_literal("LIST \"\" ", "Work/*")
        self.assertTrue(tagged.startswith("OK"), tagged)
        self.assertEqual(len(untagged), 2)

    def test_list_creates_missing_inbox(self):
        r = self.redis.client()
        try:
            old = r.call("HGET", self.ns("mailboxes"), "INBOX").decode()
            r.call("HDEL", self.ns("mailboxes"), "INBOX")
        finally:
            r.close()
        self.assertEqual(self.s.list('""', "INBOX"), {"INBOX": {"\\HasNoChildren"}})
        new = self.mailboxes()["INBOX"]
        self.assertNotEqual(new, old)
        _, values = self.s.status("INBOX")
        self.assertEqual(values["MAILBOXID"], new)
        # STATUS creates it too
        r = self.redis.client()
        try:
            r.call("HDEL", self.ns("mailboxes"), "INBOX")
        finally:
            r.close()
        name, values = self.s.status("inbox", "(MESSAGES)")
        self.assertEqual((name, values), ('"INBOX"', {"MESSAGES": 0}))
        self.assertIn("INBOX", self.mailboxes())

    def test_subscribe_and_lsub(self):
        self.assertEqual(self.s.list('""', "*", "LSUB"), {})
        self.s.ok("CREATE Lists/Dev")
        self.s.ok("SUBSCRIBE Lists/Dev")
        self.s.ok("SUBSCRIBE inbox")
        self.s.ok("SUBSCRIBE Ghost")  # need not exist (RFC 3501 6.3.6)
        self.s.ok("SUBSCRIBE Ghost")  # again: still fine
        self.s.ok("SUBSCRIBE Deep/Down/Here")
        r = self.redis.client()
        try:
            subs = {m.decode() for m in r.call("SMEMBERS", self.ns("subscriptions"))}
        finally:
            r.close()
        self.assertEqual(subs, {"Lists/Dev", "INBOX", "Ghost", "Deep/Down/Here"})
        self.assertEqual(self.s.list('""', "*", "LSUB"),
                         {"INBOX": set(), "Lists/Dev": set(), "Ghost": {"\\Noselect"},
                          "Deep/Down/Here": {"\\Noselect"}})
        # "%" shows an unsubscribed parent as \Noselect (RFC 3501 6.3.9)
        self.assertEqual(self.s.list('""', "%", "LSUB"),
                         {"INBOX": set(), "Lists": {"\\Noselect"}, "Ghost": {"\\Noselect"},
                          "Deep": {"\\Noselect"}})
        self.assertEqual(self.s.list('""', "Deep/%", "LSUB"), {"Deep/Down": {"\\Noselect"}})
        self.assertEqual(self.s.list('"Lists/"', "%", "LSUB"), {"Lists/Dev": set()})
        self.s.ok("UNSUBSCRIBE Lists/Dev")
        self.s.ok("UNSUBSCRIBE Lists/Dev")  # not subscribed any more: still OK
        self.s.ok("UNSUBSCRIBE Ghost")
        self.assertEqual(set(self.s.list('""', "*", "LSUB")), {"INBOX", "Deep/Down/Here"})
        self.assertTrue(self.s.cmd('SUBSCRIBE "a//b"')[1].startswith("NO [CANNOT]"))
        self.assertIn("Lists/Dev", self.mailboxes())  # unsubscribing deletes nothing

    # --- STATUS ----------------------------------------------------------------------------------

    def test_status_items(self):
        name, values = self.s.status("INBOX")
        self.assertEqual(name, '"INBOX"')
        self.assertEqual(set(values), {"MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN",
                                       "MAILBOXID", "SIZE"})
        self.assertEqual(values["MAILBOXID"], self.mailboxes()["INBOX"])
        r = self.redis.client()
        try:
            h = r.call("HMGET", self.ns("mbx/" + values["MAILBOXID"]), "messages", "recent",
                       "uidnext", "uidvalidity", "unseen", "bytes")
        finally:
            r.close()
        self.assertEqual([int(x) for x in h],
                         [values[k] for k in ("MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY",
                                              "UNSEEN", "SIZE")])
        self.assertGreater(values["SIZE"], 0)
        # the order asked for is kept, duplicates are answered once, any case is fine
        untagged = self.s.ok("STATUS inbox (size uidnext SIZE)")
        self.assertRegex(untagged[0], r'^\* STATUS "INBOX" \(SIZE \d+ UIDNEXT \d+\)$')
        self.assertTrue(self.s.cmd("STATUS INBOX (MESSAGES BOGUS)")[1].startswith("BAD"))
        self.assertTrue(self.s.cmd("STATUS INBOX ()")[1].startswith("BAD"))
        self.assertTrue(self.s.cmd("STATUS INBOX MESSAGES")[1].startswith("BAD"))
        self.assertTrue(self.s.cmd("STATUS Nope (MESSAGES)")[1].startswith("NO [NONEXISTENT]"))
        self.s.ok("CREATE Empty")
        name, values = self.s.status("Empty")
        self.assertEqual({k: v for k, v in values.items() if k not in ("MAILBOXID", "UIDVALIDITY")},
                         {"MESSAGES": 0, "RECENT": 0, "UIDNEXT": 1, "UNSEEN": 0, "SIZE": 0})

    def test_status_imaplib(self):
        c = imaplib.IMAP4("127.0.0.1", self.server.port, timeout=10)
        try:
            c.login("demouser", "demopass")
            typ, data = c.status("Sent", "(MESSAGES UIDNEXT MAILBOXID)")
            self.assertEqual(typ, "OK")
            self.assertRegex(data[0].decode(),
                             r'^"Sent" \(MESSAGES \d+ UIDNEXT \d+ MAILBOXID \(F[0-9a-f]{32}\)\)$')
        finally:
            c.logout()

    # --- several front ends ----------------------------------------------------------------------

    def test_second_frontend_sees_changes(self):
        other = harness.Cimapd(self.redis.url, demo=False)
        try:
            s2 = self.session(other)
            self.s.ok("CREATE Shared/Box")
            self.assertIn("Shared/Box", s2.list('""', "Shared/*"))
            s2.ok("RENAME Shared/Box Shared/Renamed")
            self.assertEqual(set(self.s.list('""', "Shared/*")), {"Shared/Renamed"})
            _, v1 = self.s.status("Shared/Renamed", "(MAILBOXID)")
            _, v2 = s2.status("Shared/Renamed", "(MAILBOXID)")
            self.assertEqual(v1, v2)
            self.s.ok("DELETE Shared/Renamed")
            self.assertTrue(s2.cmd("STATUS Shared/Renamed (MESSAGES)")[1]
                            .startswith("NO [NONEXISTENT]"))
            s2.ok("SUBSCRIBE Sent")
            self.assertEqual(self.s.list('""', "*", "LSUB"), {"Sent": set()})
        finally:
            code = other.stop()
            log = other.log_text()
            other.cleanup()
            self.assertEqual(code, 0, log[-4000:])


if __name__ == "__main__":
    unittest.main()
