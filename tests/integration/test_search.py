"""SEARCH and UID SEARCH against a real redis-server and cimapd (issue 6, SEARCH half): every
RFC 3501 key, boolean combinations, sequence and UID sets, CHARSET, ESEARCH (RFC 4731) answers,
EMAILID/THREADID (RFC 8474), errors, numbering after expunges, a seeded property test against a
Python model, that a long BODY search does not stall other clients, and that the column caches
(three chunks of a larger mailbox) change no answer: cold, warm, after other sessions' changes,
and with chunks damaged by hand.

Each test class gets its own Redis and cimapd (with the demo user) and builds its mailboxes with
APPEND, so it knows every byte, flag and date it searches for.
"""

import base64
import quopri
import random
import re
import threading
import time
import unittest

import harness

MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()


class Session:
    """A logged-in raw IMAP session: cmd() returns (untagged lines, tagged text after the tag)."""

    def __init__(self, port):
        self.raw = harness.Raw(port, timeout=120)
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

    def ok(self, text):
        untagged, tagged = self.cmd(text)
        assert tagged.startswith("OK"), "%s -> %s" % (text, tagged)
        return untagged

    def append(self, box, msg, flags="", date=None):
        """APPEND with a non-synchronizing literal (LITERAL+)."""
        data = msg.encode() if isinstance(msg, str) else msg
        self.n += 1
        tag = "t%d" % self.n
        head = "%s APPEND %s (%s)%s {%d+}\r\n" % (
            tag, box, flags, ' "%s"' % date if date else "", len(data))
        self.raw.send(head.encode() + data + b"\r\n")
        lines = self.raw.until_tagged(tag)
        assert lines[-1].startswith(tag + " OK"), lines[-1]

    def search(self, criteria, uid=False):
        """The numbers of a plain SEARCH answer, in the order sent."""
        untagged = self.ok("%sSEARCH %s" % ("UID " if uid else "", criteria))
        hits = [l for l in untagged if l.startswith("* SEARCH")]
        assert len(hits) == 1, untagged
        return [int(x) for x in hits[0][len("* SEARCH"):].split()]

    def close(self):
        self.raw.close()


def idate(day, month, year, hh=12):
    return "%02d-%s-%04d %02d:00:00 +0000" % (day, MONTHS[month - 1], year, hh)


def message(subject="Hello", frm="Alice <alice@example.org>", to="bob@example.org", date=None,
            body="hello there\r\n", extra="", ctype="text/plain; charset=us-ascii", cte=None):
    h = "From: %s\r\nTo: %s\r\nSubject: %s\r\n" % (frm, to, subject)
    if date is not None:
        h += "Date: %s\r\n" % date
    h += extra
    h += "MIME-Version: 1.0\r\nContent-Type: %s\r\n" % ctype
    if cte:
        h += "Content-Transfer-Encoding: %s\r\n" % cte
    return h + "\r\n" + body


def qp(text, charset="utf-8"):
    data = text.replace("\r\n", "\n").encode(charset)
    return quopri.encodestring(data).decode().replace("\n", "\r\n")


def b64(text, charset="utf-8"):
    data = base64.encodebytes(text.encode(charset)).decode()  # lines of 76, LF
    return data.replace("\n", "\r\n")


class Server:
    """One Redis + cimapd for a test class."""

    @classmethod
    def start_server(cls):
        cls.redis = harness.Redis()
        cls.cimapd = harness.Cimapd(cls.redis.url)
        harness.wait_for_user(cls.redis)

    @classmethod
    def stop_server(cls):
        status = cls.cimapd.stop()
        log = cls.cimapd.log_text()
        cls.cimapd.cleanup()
        cls.redis.stop()
        assert status == 0, "cimapd exited %s\n%s" % (status, log[-4000:])
        assert "ERROR: AddressSanitizer" not in log and "runtime error" not in log, log[-4000:]


# The fixed mailbox: one message per interesting shape.
FIXED = [
    # 1: plain ASCII, seen
    (message("Hello world", date="Thu, 01 Feb 2024 10:00:00 +0000",
             body="The quick brown fox jumps\r\nover the lazy dog\r\n"),
     "\\Seen", idate(5, 3, 2024)),
    # 2: RFC 2047 subject and from, quoted-printable UTF-8 body, flagged
    (message("=?UTF-8?B?R3LDvMOfZSBhdXMgTcO8bmNoZW4=?=",
             frm="=?ISO-8859-1?Q?J=F6rg_M=FCller?= <jorg@example.de>",
             date="Thu, 01 Feb 2024 23:30:00 -0800",
             body=qp("Käse und Brot, schön=gut\r\n"), ctype="text/plain; charset=utf-8",
             cte="quoted-printable"),
     "\\Flagged", idate(6, 3, 2024)),
    # 3: base64 ISO-8859-1 body, answered + keyword
    (message("Dessert menu", frm="chef@example.com", date="Sat, 10 Feb 2024 08:00:00 +0100",
             body=b64("Crème brûlée et café\r\n", "iso-8859-1"),
             ctype="text/plain; charset=iso-8859-1", cte="base64"),
     "\\Answered $Important", idate(7, 3, 2024)),
    # 4: multipart: text, html, and a binary attachment holding a word BODY must not find
    (("From: dave@example.net\r\nTo: bob@example.org\r\nCc: Carol <carol@example.org>\r\n"
      "Bcc: secret-bcc@example.org\r\nSubject: Quarterly report\r\n"
      "Date: Mon, 12 Feb 2024 09:00:00 +0000\r\nMIME-Version: 1.0\r\n"
      "Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n"
      "--XX\r\nContent-Type: text/plain\r\n\r\nNumbers are up this quarter.\r\n"
      "--XX\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
      + b64("<p>Revenue <b>grew</b> nicely</p>\r\n") +
      "--XX\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
      + b64("hiddenword inside a binary\r\n") + "--XX--\r\n"),
     "\\Draft", idate(8, 3, 2024)),
    # 5: no Date header, a custom header, deleted, large body
    (message("Tracking", extra="X-Tracker: ABC-123 =?UTF-8?Q?caf=C3=A9?=\r\n",
             body="filler line\r\n" * 300),
     "\\Deleted $Later", idate(9, 3, 2024)),
]


class SearchKeys(Server, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.start_server()
        s = Session(cls.cimapd.port)
        s.ok("CREATE Fixed")
        for msg, flags, date in FIXED:
            s.append("Fixed", msg, flags, date)
        s.close()
        cls.sizes = [len(m.encode()) for m, _, _ in FIXED]

    @classmethod
    def tearDownClass(cls):
        cls.stop_server()

    def setUp(self):
        self.s = Session(self.cimapd.port)
        self.s.ok("SELECT Fixed")

    def tearDown(self):
        self.s.close()

    def check(self, criteria, expected, uid_expected=None):
        self.assertEqual(self.s.search(criteria), expected, criteria)
        self.assertEqual(self.s.search(criteria, uid=True),
                         expected if uid_expected is None else uid_expected, "UID " + criteria)

    def test_flags(self):
        self.check("ALL", [1, 2, 3, 4, 5])
        self.check("SEEN", [1])
        self.check("UNSEEN", [2, 3, 4, 5])
        self.check("FLAGGED", [2])
        self.check("UNFLAGGED", [1, 3, 4, 5])
        self.check("ANSWERED", [3])
        self.check("UNANSWERED", [1, 2, 4, 5])
        self.check("DRAFT", [4])
        self.check("UNDRAFT", [1, 2, 3, 5])
        self.check("DELETED", [5])
        self.check("UNDELETED", [1, 2, 3, 4])
        self.check("KEYWORD $Important", [3])
        self.check("KEYWORD $important", [3])  # keywords compare case-insensitively
        self.check("UNKEYWORD $Important", [1, 2, 4, 5])
        self.check("KEYWORD $Nothing", [])
        self.check("keyword $Later unseen", [5])

    def test_recent(self):
        # Appended before any SELECT: this (first) session holds them as \Recent...
        first = Session(self.cimapd.port)
        try:
            # ... but this class's setUp already selected once; whichever session was first owns
            # them, so only check consistency: RECENT and OLD partition the mailbox.
            first.ok("SELECT Fixed")
            recent = first.search("RECENT")
            old = first.search("OLD")
            self.assertEqual(sorted(recent + old), [1, 2, 3, 4, 5])
            self.assertEqual(first.search("NEW"), [n for n in recent if n != 1])
        finally:
            first.close()

    def test_recent_fresh_mailbox(self):
        self.s.ok("CREATE Fresh")
        self.s.append("Fresh", message("a"), "\\Seen")
        self.s.append("Fresh", message("b"))
        self.s.ok("SELECT Fresh")
        self.check("RECENT", [1, 2])
        self.check("NEW", [2])
        self.check("OLD", [])
        other = Session(self.cimapd.port)
        try:
            other.ok("SELECT Fresh")
            self.assertEqual(other.search("RECENT"), [])
            self.assertEqual(other.search("OLD"), [1, 2])
            self.assertEqual(other.search("NEW"), [])
        finally:
            other.close()

    def test_internaldate(self):
        self.check("ON 6-Mar-2024", [2])
        self.check('ON "6-Mar-2024"', [2])
        self.check("BEFORE 7-Mar-2024", [1, 2])
        self.check("SINCE 7-Mar-2024", [3, 4, 5])
        self.check("SINCE 10-Mar-2024", [])
        self.check("BEFORE 1-Jan-2000", [])

    def test_sent_dates(self):
        # Message 2 was sent 23:30 -0800 on Feb 1 (Feb 2 in UTC): its own date counts.
        self.check("SENTON 1-Feb-2024", [1, 2])
        self.check("SENTBEFORE 2-Feb-2024", [1, 2])
        self.check("SENTSINCE 10-Feb-2024", [3, 4])
        self.check("SENTON 10-Feb-2024", [3])
        # No Date header: never matches a SENT* key.
        self.check("SENTSINCE 1-Jan-1990", [1, 2, 3, 4])
        self.check("NOT SENTSINCE 1-Jan-1990", [5])

    def test_sizes(self):
        big = max(self.sizes)
        small = min(self.sizes)
        self.check("LARGER %d" % (big - 1), [self.sizes.index(big) + 1])
        self.check("LARGER %d" % big, [])
        self.check("SMALLER %d" % (small + 1), [self.sizes.index(small) + 1])
        self.check("SMALLER %d" % small, [])
        self.check("LARGER 0", [1, 2, 3, 4, 5])

    def test_address_and_subject(self):
        self.check("FROM alice", [1, 5])
        self.check("FROM ALICE@EXAMPLE", [1, 5])
        self.check('FROM "jörg müller"', [2])      # RFC 2047 decoded, case-insensitive
        self.check('FROM "JÖRG"', [2])
        self.check("TO bob", [1, 2, 3, 4, 5])
        self.check("CC carol", [4])
        self.check("BCC secret-bcc", [4])
        self.check("CC nobody", [])
        self.check('SUBJECT "grüße aus münchen"', [2])
        self.check('SUBJECT "MÜNCHEN"', [2])
        self.check("SUBJECT report", [4])
        self.check('SUBJECT ""', [1, 2, 3, 4, 5])

    def test_header(self):
        self.check("HEADER X-Tracker abc-123", [5])
        self.check('HEADER x-tracker "café"', [5])   # decoded encoded word
        self.check('HEADER X-Tracker ""', [5])       # field present
        self.check('HEADER X-Missing ""', [])
        self.check('HEADER Content-Type multipart', [4])
        self.check('HEADER Subject "tracking"', [5])

    def test_body_and_text(self):
        self.check("BODY quick", [1])
        self.check("BODY LAZY", [1])
        self.check('BODY "käse"', [2])               # quoted-printable UTF-8
        self.check('BODY "schön=gut"', [2])
        self.check('BODY "crème brûlée"', [3])       # base64 ISO-8859-1
        self.check('BODY "CAFÉ"', [3])
        self.check("BODY quarter", [4])
        self.check("BODY grew", [4])                 # base64 text/html part
        self.check("BODY hiddenword", [])            # attachments are not text
        self.check("BODY Tracking", [])              # BODY excludes the header
        self.check("TEXT Tracking", [5])             # TEXT includes it
        self.check("TEXT x-tracker", [5])
        self.check("TEXT quick", [1])
        self.check('TEXT "münchen"', [2])            # decoded header
        self.check("BODY filler", [5])
        self.check('BODY ""', [1, 2, 3, 4, 5])

    def test_literal_string(self):
        data = "brûlée".encode()
        self.s.n += 1
        tag = "t%d" % self.s.n
        self.s.raw.send(b"%s SEARCH CHARSET UTF-8 BODY {%d+}\r\n%s\r\n" % (tag.encode(), len(data), data))
        lines = self.s.raw.until_tagged(tag)
        self.assertEqual(lines[0], "* SEARCH 3")
        self.assertTrue(lines[-1].startswith(tag + " OK"))

    def test_charset(self):
        self.check("CHARSET UTF-8 SUBJECT hello", [1])
        self.check("CHARSET us-ascii SUBJECT hello", [1])
        _, tagged = self.s.cmd("SEARCH CHARSET ISO-8859-1 SUBJECT hello")
        self.assertTrue(tagged.startswith("NO [BADCHARSET (UTF-8 US-ASCII)]"), tagged)
        _, tagged = self.s.cmd("SEARCH CHARSET")
        self.assertTrue(tagged.startswith("BAD"), tagged)

    def test_sets(self):
        self.check("1:3", [1, 2, 3])
        self.check("2,4:*", [2, 4, 5])
        self.check("*", [5])
        self.check("UID 2:3", [2, 3])
        self.check("UID 4:99", [4, 5])
        self.check("UID 99:100", [])
        self.check("NOT 1:2", [3, 4, 5])
        self.check("1:* UNSEEN", [2, 3, 4, 5])

    def test_boolean(self):
        self.check("OR SEEN FLAGGED", [1, 2])
        self.check("OR SEEN OR FLAGGED DRAFT", [1, 2, 4])
        self.check("NOT OR SEEN FLAGGED", [3, 4, 5])
        self.check("(SEEN) (FROM alice)", [1])
        self.check("(OR SEEN FLAGGED) NOT FROM alice", [2])
        self.check("(OR SEEN FLAGGED) FROM alice", [1])
        self.check("OR (SUBJECT hello BODY fox) (BODY käse)".replace("käse", '"käse"'), [1, 2])
        self.check("NOT NOT SEEN", [1])
        self.check("OR BODY quick SEEN", [1])
        self.check("NOT BODY quick", [2, 3, 4, 5])
        self.check("UNSEEN OR BODY quarter BODY filler", [4, 5])
        self.check("OR 1 BODY quarter", [1, 4])
        self.check("(((ALL)))", [1, 2, 3, 4, 5])

    def test_esearch(self):
        untagged = self.s.ok("SEARCH RETURN (MIN MAX COUNT ALL) UNSEEN")
        self.assertEqual(untagged, ['* ESEARCH (TAG "t%d") MIN 2 MAX 5 ALL 2:5 COUNT 4' % self.s.n])
        untagged = self.s.ok("UID SEARCH RETURN (COUNT) SEEN")
        self.assertEqual(untagged, ['* ESEARCH (TAG "t%d") UID COUNT 1' % self.s.n])
        untagged = self.s.ok("SEARCH RETURN () OR 1 3")
        self.assertEqual(untagged, ['* ESEARCH (TAG "t%d") ALL 1,3' % self.s.n])
        untagged = self.s.ok("SEARCH RETURN (MIN MAX ALL COUNT) KEYWORD $Nothing")
        self.assertEqual(untagged, ['* ESEARCH (TAG "t%d") COUNT 0' % self.s.n])
        untagged = self.s.ok("SEARCH RETURN (MIN) CHARSET UTF-8 BODY fox")
        self.assertEqual(untagged, ['* ESEARCH (TAG "t%d") MIN 1' % self.s.n])
        _, tagged = self.s.cmd("SEARCH RETURN (SAVE) ALL")
        self.assertTrue(tagged.startswith("BAD"), tagged)
        _, tagged = self.s.cmd("SEARCH RETURN ALL")
        self.assertTrue(tagged.startswith("BAD"), tagged)

    def test_capability(self):
        untagged = self.s.ok("CAPABILITY")
        self.assertIn("ESEARCH", untagged[0].split())

    def test_objectid(self):
        untagged = self.s.ok("STATUS Fixed (MAILBOXID)")
        mbxid = re.search(r"MAILBOXID \((F[0-9a-f]+)\)", untagged[0]).group(1)
        r = self.redis.client()
        try:
            nsid = r.call("HGET", "/users/demouser", "nsid")
            nsid = nsid.decode() if isinstance(nsid, bytes) else nsid
            rec = r.call("HGET", "/ns/{%s}/mbx/%s/msg" % (nsid, mbxid), "3")
            rec = rec.decode() if isinstance(rec, bytes) else rec
        finally:
            r.close()
        _, _, _, emailid, threadid = rec.split()
        self.check("EMAILID %s" % emailid, [3])
        self.check("THREADID %s" % threadid, [3])
        self.check("EMAILID M000000000000000000000000", [])
        _, tagged = self.s.cmd("SEARCH EMAILID bad!id")
        self.assertTrue(tagged.startswith("BAD"), tagged)

    def test_errors(self):
        for bad in ("FOO", "SINCE", "SINCE 32-Jan-2024", "SINCE yesterday", "SUBJECT",
                    "HEADER Subject", "LARGER", "LARGER -1", "LARGER x", "OR SEEN", "NOT",
                    "UID", "UID x", "KEYWORD", "KEYWORD \\Seen", "1:x", "()", "ALL)",
                    "RETURN (MIN)", "CHARSET UTF-8", "6", "0"):
            _, tagged = self.s.cmd("SEARCH " + bad)
            self.assertTrue(tagged.startswith("BAD"), "%s -> %s" % (bad, tagged))
        _, tagged = self.s.cmd("SEARCH")
        self.assertTrue(tagged.startswith("BAD"), tagged)
        deep = "NOT " * 100 + "ALL"
        _, tagged = self.s.cmd("SEARCH " + deep)
        self.assertTrue(tagged.startswith("BAD"), tagged)
        self.check("NOT " * 10 + "SEEN", [1])
        other = Session(self.cimapd.port)
        try:
            _, tagged = other.cmd("SEARCH ALL")
            self.assertTrue(tagged.startswith("BAD"), tagged)  # not selected
        finally:
            other.close()

    def test_empty_mailbox(self):
        self.s.ok("CREATE Empty")
        self.s.ok("SELECT Empty")
        self.check("ALL", [])
        self.check("1:*", [])
        self.check("BODY x", [])
        untagged = self.s.ok("SEARCH RETURN (COUNT MIN) ALL")
        self.assertEqual(untagged, ['* ESEARCH (TAG "t%d") COUNT 0' % self.s.n])


class Expunged(Server, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.start_server()

    @classmethod
    def tearDownClass(cls):
        cls.stop_server()

    def test_numbering_after_close(self):
        s = Session(self.cimapd.port)
        s.ok("CREATE Ex")
        for i in range(1, 8):
            s.append("Ex", message("m%d" % i, body="word%d\r\n" % i),
                     "\\Deleted" if i in (2, 5) else "")
        s.ok("SELECT Ex")
        s.ok("CLOSE")
        s.ok("SELECT Ex")
        self.assertEqual(s.search("ALL"), [1, 2, 3, 4, 5])
        self.assertEqual(s.search("ALL", uid=True), [1, 3, 4, 6, 7])
        self.assertEqual(s.search("BODY word4"), [3])
        self.assertEqual(s.search("BODY word4", uid=True), [4])
        self.assertEqual(s.search("UID 3:6"), [2, 3, 4])
        self.assertEqual(s.search("2:3", uid=True), [3, 4])
        self.assertEqual(s.search("SUBJECT m6"), [4])
        untagged = s.ok("SEARCH RETURN (ALL) NOT 3")
        self.assertEqual(untagged, ['* ESEARCH (TAG "t%d") ALL 1:2,4:5' % s.n])
        untagged = s.ok("UID SEARCH RETURN (ALL) NOT 3")
        self.assertEqual(untagged, ['* ESEARCH (TAG "t%d") UID ALL 1,3,6:7' % s.n])
        s.close()

    def test_expunged_by_another_session(self):
        a = Session(self.cimapd.port)
        b = Session(self.cimapd.port)
        try:
            a.ok("CREATE Ex2")
            for i in range(1, 6):
                a.append("Ex2", message("n%d" % i, body="text%d\r\n" % i),
                         "\\Deleted" if i in (2, 4) else "")
            a.ok("EXAMINE Ex2")
            b.ok("SELECT Ex2")
            b.ok("CLOSE")  # expunges 2 and 4 behind a's back
            # Whatever a has been told, messages that are gone never match.
            self.assertEqual(a.search("ALL", uid=True), [1, 3, 5])
            self.assertEqual(a.search("DELETED", uid=True), [])
            self.assertEqual(a.search("BODY text", uid=True), [1, 3, 5])
            self.assertEqual(a.search("OR BODY text2 SUBJECT n4", uid=True), [])
            self.assertEqual(len(a.search("ALL")), 3)
        finally:
            a.close()
            b.close()


# ---- property test against a Python model ----

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
         "juliet", "kilo", "lima", "mike", "crème", "größe"]
SYSFLAGS = ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"]
KEYWORDS = ["$a", "$b"]


class Model:
    """A message as the model sees it."""

    def __init__(self, rnd, n):
        self.flags = set(f for f in SYSFLAGS + KEYWORDS if rnd.random() < 0.35)
        self.iday = rnd.randint(1, 20)                   # internaldate: day of March 2024
        self.sday = rnd.randint(1, 20)                   # sent: day of February 2024, local
        tz = rnd.choice([-800, 0, 530, 900])
        hour = rnd.choice([0, 1, 12, 22, 23])
        sign = "-" if tz < 0 else "+"
        self.date = "Mon, %02d Feb 2024 %02d:15:00 %s%04d" % (self.sday, hour, sign, abs(tz))
        self.subject = " ".join(rnd.sample(WORDS, 2))
        self.frm = "%s@example.org" % rnd.choice(WORDS[:12])
        self.tag = rnd.choice(["red", "green", "blue"])
        self.body = " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(1, 30))) + "\r\n"
        enc = rnd.choice(["plain", "qp", "b64"])
        subj_hdr = self.subject
        if rnd.random() < 0.3:
            subj_hdr = "=?UTF-8?B?%s?=" % base64.b64encode(self.subject.encode()).decode()
        if enc == "plain":
            raw_body, cte = self.body, None
        elif enc == "qp":
            raw_body, cte = qp(self.body), "quoted-printable"
        else:
            raw_body, cte = b64(self.body), "base64"
        self.headers = [("From", self.frm), ("To", "list@example.com"), ("Subject", self.subject),
                        ("Date", self.date), ("X-Tag", self.tag), ("MIME-Version", "1.0"),
                        ("Content-Type", "text/plain; charset=utf-8")]
        if cte:
            self.headers.append(("Content-Transfer-Encoding", cte))
        raw = "".join("%s: %s\r\n" % (k, subj_hdr if k == "Subject" else v) for k, v in self.headers)
        self.raw = (raw + "\r\n" + raw_body).encode()
        self.size = len(self.raw)
        self.uid = 0
        self.recent = False


def has(hay, needle):
    return needle.lower() in hay.lower()


class QueryGen:
    def __init__(self, rnd, msgs):
        self.rnd = rnd
        self.msgs = msgs  # in sequence order

    def leaf(self):
        r = self.rnd
        kind = r.randrange(22)
        if kind == 0:
            return "ALL", lambda m: True
        if kind == 1:
            f = r.choice(SYSFLAGS)
            return f[1:].upper(), lambda m, f=f: f in m.flags
        if kind == 2:
            f = r.choice(SYSFLAGS)
            return "UN" + f[1:].upper(), lambda m, f=f: f not in m.flags
        if kind == 3:
            k = r.choice(KEYWORDS)
            return "KEYWORD " + k, lambda m, k=k: k in m.flags
        if kind == 4:
            k = r.choice(KEYWORDS)
            return "UNKEYWORD " + k, lambda m, k=k: k not in m.flags
        if kind == 5:
            word = r.choice(["NEW", "OLD", "RECENT"])
            return word, {"NEW": lambda m: m.recent and "\\Seen" not in m.flags,
                          "OLD": lambda m: not m.recent, "RECENT": lambda m: m.recent}[word]
        if kind == 6:
            d = r.randint(1, 21)
            op = r.choice(["BEFORE", "ON", "SINCE"])
            fn = {"BEFORE": lambda m, d=d: m.iday < d, "ON": lambda m, d=d: m.iday == d,
                  "SINCE": lambda m, d=d: m.iday >= d}[op]
            return "%s %d-Mar-2024" % (op, d), fn
        if kind == 7:
            d = r.randint(1, 21)
            op = r.choice(["SENTBEFORE", "SENTON", "SENTSINCE"])
            fn = {"SENTBEFORE": lambda m, d=d: m.sday < d, "SENTON": lambda m, d=d: m.sday == d,
                  "SENTSINCE": lambda m, d=d: m.sday >= d}[op]
            return "%s %d-Feb-2024" % (op, d), fn
        if kind == 8:
            m0 = r.choice(self.msgs)
            n = m0.size + r.choice([-1, 0, 1])
            if r.random() < 0.5:
                return "LARGER %d" % n, lambda m, n=n: m.size > n
            return "SMALLER %d" % n, lambda m, n=n: m.size < n
        if kind in (9, 10):
            w = r.choice(WORDS)
            w = w[:r.randint(2, len(w))]
            up = w.upper() if len(w.upper()) == len(w) else w  # "ß".upper() is "SS"
            return 'SUBJECT "%s"' % up, lambda m, w=w: has(m.subject, w)
        if kind == 11:
            w = r.choice(WORDS)[:3]
            return 'FROM "%s"' % w, lambda m, w=w: has(m.frm, w)
        if kind in (12, 13, 14):
            w = r.choice(WORDS)
            return 'BODY "%s"' % w, lambda m, w=w: has(m.body, w)
        if kind == 15:
            w = r.choice(WORDS + ["x-tag", "red", "example.com"])
            return 'TEXT "%s"' % w, lambda m, w=w: has(m.body, w) or any(
                has("%s: %s" % hv, w) for hv in m.headers)
        if kind == 16:
            t = r.choice(["red", "green", "blue", "re", ""])
            return 'HEADER X-Tag "%s"' % t, lambda m, t=t: has(m.tag, t)
        if kind in (17, 18):
            n = len(self.msgs)
            a, b = r.randint(1, n), r.randint(1, n)
            text = r.choice(["%d:%d" % (a, b), "%d" % a, "%d,%d" % (a, b), "%d:*" % a])
            seqs = set()
            for part in text.split(","):
                if ":" in part:
                    x, y = part.split(":")
                    x = int(x)
                    y = n if y == "*" else int(y)
                    seqs |= set(range(min(x, y), max(x, y) + 1))
                else:
                    seqs.add(int(part))
            return text, lambda m, s=seqs: (self.msgs.index(m) + 1) in s
        if kind == 19:
            top = self.msgs[-1].uid
            a, b = r.randint(1, top + 5), r.randint(1, top + 5)
            lo, hi = min(a, b), max(a, b)
            return "UID %d:%d" % (lo, hi), lambda m, lo=lo, hi=hi: lo <= m.uid <= hi
        if kind == 20:
            return "SEEN", lambda m: "\\Seen" in m.flags
        return "UNSEEN", lambda m: "\\Seen" not in m.flags

    def key(self, depth=0):
        r = self.rnd.random()
        if depth < 3 and r < 0.15:
            t, f = self.key(depth + 1)
            return "NOT " + t, lambda m, f=f: not f(m)
        if depth < 3 and r < 0.30:
            t1, f1 = self.key(depth + 1)
            t2, f2 = self.key(depth + 1)
            return "OR %s %s" % (t1, t2), lambda m, f1=f1, f2=f2: f1(m) or f2(m)
        if depth < 3 and r < 0.40:
            t1, f1 = self.key(depth + 1)
            t2, f2 = self.key(depth + 1)
            return "(%s %s)" % (t1, t2), lambda m, f1=f1, f2=f2: f1(m) and f2(m)
        return self.leaf()

    def query(self):
        n = self.rnd.randint(1, 3)
        parts = [self.key() for _ in range(n)]
        text = " ".join(p[0] for p in parts)
        return text, lambda m: all(p[1](m) for p in parts)


class Property(Server, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.start_server()

    @classmethod
    def tearDownClass(cls):
        cls.stop_server()

    def test_random_queries_match_model(self):
        rnd = random.Random(20240306)
        s = Session(self.cimapd.port)
        s.ok("CREATE Prop")
        # First batch, then expunge its \Deleted messages (holes in the UIDs), then a second
        # batch that is \Recent for the final session.
        first = [Model(rnd, i) for i in range(120)]
        for m in first:
            s.append("Prop", m.raw, " ".join(sorted(m.flags)), idate(m.iday, 3, 2024, 10))
        for i, m in enumerate(first):
            m.uid = i + 1
        s.ok("SELECT Prop")
        s.ok("CLOSE")
        kept = [m for m in first if "\\Deleted" not in m.flags]
        second = [Model(rnd, i) for i in range(100)]
        for m in second:
            s.append("Prop", m.raw, " ".join(sorted(m.flags)), idate(m.iday, 3, 2024, 10))
        for i, m in enumerate(second):
            m.uid = 121 + i
            m.recent = True
        msgs = kept + second
        s.ok("SELECT Prop")
        gen = QueryGen(rnd, msgs)
        self.assertEqual(s.search("ALL", uid=True), [m.uid for m in msgs])
        for _ in range(200):
            text, fn = gen.query()
            want = [i + 1 for i, m in enumerate(msgs) if fn(m)]
            want_uids = [m.uid for m in msgs if fn(m)]
            self.assertEqual(s.search(text), want, text)
            self.assertEqual(s.search(text, uid=True), want_uids, "UID " + text)
        s.close()


class Latency(Server, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.start_server()

    @classmethod
    def tearDownClass(cls):
        cls.stop_server()

    def test_body_search_does_not_stall_others(self):
        s = Session(self.cimapd.port)
        s.ok("CREATE Big")
        line = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod\r\n"
        body = qp(line * 1500)  # ~110 KB each, quoted-printable so decoding does real work
        for i in range(200):
            s.append("Big", message("big %d" % i, body=body, ctype="text/plain; charset=utf-8",
                                    cte="quoted-printable"))
        s.ok("SELECT Big")
        other = Session(self.cimapd.port)
        lat = []
        done = threading.Event()
        result = {}

        def search():
            t = time.monotonic()
            result["hits"] = s.search("BODY notpresentanywhere")
            result["secs"] = time.monotonic() - t
            done.set()

        th = threading.Thread(target=search)
        th.start()
        while not done.is_set():
            t = time.monotonic()
            other.ok("NOOP")
            lat.append(time.monotonic() - t)
        th.join()
        other.close()
        self.assertEqual(result["hits"], [])
        self.assertEqual(s.search("BODY consectetur", uid=True), list(range(1, 201)))
        s.close()
        worst = max(lat) if lat else 0
        print("\nBODY search of 200 x 110 KB: %.3f s; %d NOOPs meanwhile, worst %.1f ms" % (
            result["secs"], len(lat), worst * 1000))
        if not harness.SANITIZED:
            self.assertLess(worst, 0.5)


# ---- column caches: the same answers with them and without ----

def cache_message(i):
    subject = ["budget %d" % i, "invoice %d" % i, "Re: meeting", "status of %d" % (i % 50)][i % 4]
    return message(subject, frm="User %d <user%d@example.org>" % (i % 37, i % 37),
                   to="team%d@example.org" % (i % 5),
                   date="%02d Feb 2024 %02d:00:00 +0000" % (1 + i % 28, i % 24),
                   extra="X-Num: %d\r\n" % (i % 100), body=("line %d\r\n" % i) * (1 + i % 13))


def cache_flags(i):
    f = []
    if i % 3:
        f.append("\\Seen")
    if i % 17 == 0:
        f.append("\\Flagged")
    if i % 11 == 0:
        f.append("\\Answered")
    if i % 29 == 0:
        f.append("\\Deleted")
    if i % 7 == 0:
        f.append("$Work")
    if i % 13 == 0:
        f.append("$Later")
    return " ".join(f)


def append_many(session, box, items):
    """APPENDs (msg, flags, date) items pipelined, 100 at a time (LITERAL+)."""
    for start in range(0, len(items), 100):
        tags = []
        out = []
        for msg, flags, date in items[start:start + 100]:
            session.n += 1
            tag = "t%d" % session.n
            data = msg.encode()
            out.append(("%s APPEND %s (%s) \"%s\" {%d+}\r\n" % (tag, box, flags, date, len(data)))
                       .encode() + data + b"\r\n")
            tags.append(tag)
        session.raw.send(b"".join(out))
        for tag in tags:
            lines = session.raw.until_tagged(tag)
            assert lines[-1].startswith(tag + " OK"), lines[-1]


CACHE_QUERIES = [
    "ALL", "UNSEEN", "SEEN", "FLAGGED", "UNFLAGGED", "ANSWERED", "DELETED", "UNDELETED", "NEW",
    "OLD", "RECENT", "KEYWORD $Work", "UNKEYWORD $Later", "NOT SEEN FLAGGED",
    "OR FLAGGED KEYWORD $Later", "NOT (SEEN OR ANSWERED DELETED)", "UNSEEN UNDELETED KEYWORD $Work",
    "SUBJECT budget", 'SUBJECT "Re: meeting"', "FROM user5@", "TO team3", "NOT FROM user1",
    "SUBJECT invoice UNSEEN", "OR SUBJECT budget FLAGGED", "NOT SUBJECT status DELETED",
    "SENTSINCE 20-Feb-2024", "SENTBEFORE 5-Feb-2024", "SENTON 9-Feb-2024", "SINCE 20-Mar-2024",
    "BEFORE 5-Mar-2024", "ON 7-Mar-2024", "LARGER 300", "SMALLER 200", "UID 1000:1600",
    "1:50", "2000:* UNSEEN", "UID 5,1500,2250 SUBJECT budget", "UID 3,1030,2100 FLAGGED",
    "UID 900:1100 NOT SEEN SMALLER 250", "HEADER X-Num 7", 'BODY "line 42"', "TEXT team4",
    "RETURN (MIN MAX COUNT) UNSEEN", "RETURN (ALL) FLAGGED", "RETURN () SUBJECT budget",
    "RETURN (COUNT) DELETED", "RETURN (MIN) SUBJECT invoice FLAGGED", "UID 2200:* NOT SEEN",
    "UID 999999 UNSEEN", "RETURN (COUNT) UID 999999", "UID 1100:1200 (OR UNSEEN DELETED)",
]


def record_ends(value):
    """Offsets where the records of a chunk value end (colcache.h format)."""
    pos = value.index(b"\n") + 1
    ends = []
    while pos < len(value):
        nl = value.index(b"\n", pos)
        pos = nl + 1 + sum(int(x) for x in value[pos:nl].split(b" ")[1:])
        ends.append(pos)
    return ends


def normalise(untagged):
    return [re.sub(r'\(TAG "[^"]*"\)', "(TAG)", line) for line in untagged]


class ColumnCaches(unittest.TestCase):
    """Two cimapd on one Redis: one with the column caches, one with --cache-ttl 0. A mailbox of
    three chunks (> 2,100 messages, holes from an expunge) must answer every query identically
    through both, cold and warm, after changes made by other sessions, and with damaged chunks."""

    N = 2300

    @classmethod
    def setUpClass(cls):
        cls.redis = harness.Redis()
        cls.cached = harness.Cimapd(cls.redis.url)
        cls.plain = harness.Cimapd(cls.redis.url, "--cache-ttl", "0")
        harness.wait_for_user(cls.redis)
        s = Session(cls.plain.port)
        s.ok("CREATE Cache")
        append_many(s, "Cache", [(cache_message(i), cache_flags(i), idate(1 + i % 28, 3, 2024))
                                 for i in range(cls.N)])
        s.ok("SELECT Cache")
        s.ok("STORE 500:520 +FLAGS.SILENT (\\Deleted)")
        s.ok("EXPUNGE")  # holes: 500:520 and every 29th
        s.ok("UID STORE 1000,1500,2000 +FLAGS.SILENT (\\Deleted)")
        s.close()
        cls.r = cls.redis.client()

    @classmethod
    def tearDownClass(cls):
        cls.r.close()
        for d in (cls.cached, cls.plain):
            status = d.stop()
            log = d.log_text()
            d.cleanup()
            assert status == 0, "cimapd exited %s\n%s" % (status, log[-4000:])
            assert "ERROR: AddressSanitizer" not in log and "runtime error" not in log, log[-4000:]
        cls.redis.stop()

    def session(self, d):
        s = Session(d.port)
        s.ok("SELECT Cache")
        return s

    def cache_keys(self, kind="*"):
        return sorted(self.r.keys("*/cache/%s/*" % kind))

    def settled_keys(self, suffixes, kind="*"):
        """cache_keys once a key ends with each of suffixes (chunks are stored fire and forget,
        so an answer may reach the client before its chunks reach Redis); at most 5 s."""
        deadline = time.monotonic() + 5
        keys = self.cache_keys(kind)
        while time.monotonic() < deadline and not all(any(k.endswith(x) for k in keys) for x in suffixes):
            time.sleep(0.01)
            keys = self.cache_keys(kind)
        return keys

    def answers(self, s, queries=CACHE_QUERIES):
        out = {}
        for q in queries:
            for uid in ("", "UID "):
                out[uid + q] = normalise(s.ok("%sSEARCH %s" % (uid, q)))
        return out

    def assert_same(self, got, want):
        for q in want:
            self.assertEqual(got[q], want[q], q)

    def test_same_answers_cold_and_warm(self):
        for k in self.cache_keys():
            self.r.call("DEL", k)
        p = self.session(self.plain)
        want = self.answers(p)
        self.assertEqual(self.cache_keys(), [], "--cache-ttl 0 must not build caches")
        c = self.session(self.cached)
        self.assert_same(self.answers(c), want)  # cold: builds the chunks
        keys = self.settled_keys(["/cache/%s/%d" % (kind, chunk) for kind in "fm" for chunk in range(3)])
        for kind in "fm":
            for chunk in range(3):
                self.assertTrue(any(k.endswith("/cache/%s/%d" % (kind, chunk)) for k in keys),
                                (kind, chunk, keys))
        self.assert_same(self.answers(c), want)  # warm: from the chunks
        c.close()
        p.close()

    def test_changes_by_other_sessions(self):
        x = self.session(self.cached)
        self.answers(x)  # warm
        old_view = set(x.search("ALL", uid=True))
        y = self.session(self.cached)
        y.ok("UID STORE 1:300 +FLAGS.SILENT (\\Seen)")
        y.ok("UID STORE 1200:1300 -FLAGS.SILENT (\\Seen)")
        y.ok("UID STORE 2100:2200 +FLAGS.SILENT ($Work \\Flagged)")
        y.ok("UID STORE 1500:1510,2250 +FLAGS.SILENT (\\Deleted)")
        y.ok("EXPUNGE")
        append_many(y, "Cache", [(cache_message(i), cache_flags(i), idate(3, 3, 2024))
                                 for i in range(self.N, self.N + 40)])
        y.close()
        p = self.session(self.plain)
        truth = {q: set(p.search(q, uid=True)) for q in
                 ["UNSEEN", "FLAGGED", "DELETED", "KEYWORD $Work", "SUBJECT budget", "ALL"]}
        # x has not been told yet: never an expunged message, never stale flags.
        for q, want in truth.items():
            got = set(x.search(q, uid=True))
            self.assertTrue(want & old_view <= got <= want, q)
        # The same with the 'f' chunks gone (x's view is not exact: the indexes / HMGET decide).
        for k in self.cache_keys("f"):
            self.r.call("DEL", k)
        got = set(x.search("UNSEEN", uid=True))
        self.assertTrue(truth["UNSEEN"] & old_view <= got <= truth["UNSEEN"])
        fresh = self.session(self.cached)
        fresh.search("UNSEEN")  # rebuilds them (an exact view)
        fresh.close()
        last = [k for k in self.settled_keys(["/f/2"], "f") if k.endswith("/f/2")]
        self.assertEqual(len(last), 1)
        self.r.call("DEL", last[0])
        got = set(x.search("UNSEEN DELETED", uid=True) + x.search("UNSEEN", uid=True))
        self.assertTrue(got <= truth["UNSEEN"] | truth["DELETED"])
        self.assertTrue(truth["UNSEEN"] & old_view <= got)
        x.ok("NOOP")
        # \Recent belongs to the session that first saw the new messages (x): not compared.
        queries = [q for q in CACHE_QUERIES if q not in ("NEW", "OLD", "RECENT")]
        self.assert_same(self.answers(x, queries), self.answers(p, queries))
        x.close()
        p.close()

    def test_damaged_chunks_are_absent(self):
        c = self.session(self.cached)
        p = self.session(self.plain)
        # Per-message keys first, so a damaged 'f' chunk is rebuilt by the per-message phase;
        # then the index phase's own reads.
        queries = ["FLAGGED", "SUBJECT budget", "UID 1024:2047 KEYWORD $Work",
                   "OR ANSWERED SMALLER 200", "UNSEEN", "UNSEEN SUBJECT invoice", "DELETED"]
        want = self.answers(p, queries)
        self.assert_same(self.answers(c, queries), want)  # builds
        for kind in "fm":
            key = [k for k in self.settled_keys(["/%s/1" % kind], kind) if k.endswith("/%s/1" % kind)][0]
            value = self.r.call("GET", key)
            self.assertTrue(value.startswith(("c1 %s 1 " % kind).encode()), value[:40])
            header, rest = value.split(b"\n", 1)
            ends = record_ends(value)
            self.assertGreater(len(ends), 900)
            fields = header.split(b" ")  # c1 <kind> <chunk> <modseq> <upto>
            newer = b" ".join(fields[:3] + [b"%d" % (int(fields[3]) + 1000)] + fields[4:])
            damaged = [b"garbage", value[:len(value) // 2], value[:-1], value + b"x",
                       header.replace(b" 1 ", b" 2 ", 1) + b"\n" + rest,
                       header + b"\n" + b"99999999 3\n" + rest,
                       header + b"\n" + rest.replace(b"\n", b"\n7 ", 1),
                       value[:ends[len(ends) // 2]],      # cut at a record boundary: well formed
                       value[:ends[0]],                   # one record left
                       newer + b"\n" + rest]             # newer than the mailbox
            for bad in damaged:
                self.r.call("SET", key, bad)
                self.assert_same(self.answers(c, queries), want)
                # Treated as absent and rebuilt from the exact view (stored fire and forget).
                deadline = time.monotonic() + 5
                while self.r.call("GET", key) != value and time.monotonic() < deadline:
                    time.sleep(0.01)
                self.assertEqual(self.r.call("GET", key), value, bad[:60])
            if kind == "m":
                # Well-formed, but one message's stored parse is unreadable: that message is read
                # the old way.
                self.r.call("SET", key, value.replace(b"CMP", b"XMP", 1))
                self.assert_same(self.answers(c, queries), want)
        c.close()
        p.close()

    def test_guard_refuses_a_build_from_an_incomplete_view(self):
        """A view can be exact by modseq and still lack a message (colcache.h); a chunk built
        from it would call that message absent for every session. The build's guard (ZCOUNT
        uids, read with the snapshot) counts more UIDs than records: nothing is stored, and the
        answers are the view's — in the index phase (UNSEEN), and in the per-message phase for
        'f' (FLAGGED) and 'm' (SUBJECT)."""
        s = self.session(self.plain)
        s.ok("CREATE Guard")
        append_many(s, "Guard", [(cache_message(i), cache_flags(i), idate(1 + i % 28, 3, 2024))
                                 for i in range(60)])
        s.ok("SELECT Guard")
        s.ok("UID STORE 10 +FLAGS.SILENT (\\Deleted)")
        s.ok("EXPUNGE")
        s.close()
        nsid = self.r.call("HGET", "/users/demouser", "nsid").decode()
        mbxid = self.r.call("HGET", "/ns/{%s}/mailboxes" % nsid, "Guard").decode()
        base = "/ns/{%s}/mbx/%s" % (nsid, mbxid)
        c = Session(self.cached.port)
        c.ok("EXAMINE Guard")
        p = Session(self.plain.port)
        p.ok("EXAMINE Guard")
        # UID 10 comes back behind the sessions' backs, highestmodseq untouched: both views are
        # exact by modseq, and both lack it (SELECT reads /runs, left as it was).
        self.r.call("ZADD", base + "/uids", "10", "10")
        self.r.call("HSET", base + "/msg", "10", self.r.call("HGET", base + "/msg", "11"))
        self.r.call("HSET", base + "/flags", "10", "\\Flagged")
        self.r.call("ZADD", base + "/unseen", "10", "10")
        queries = ["UNSEEN", "FLAGGED", "SUBJECT budget", "NOT SEEN FLAGGED", "ALL"]
        want = self.answers(p, queries)
        uids = want["UID ALL"][0].split()[2:]
        self.assertEqual(len(uids), 56)  # every 29th had \\Deleted, UID 10 too
        self.assertNotIn("10", uids)
        self.assert_same(self.answers(c, queries), want)
        self.assert_same(self.answers(c, queries), want)
        time.sleep(0.5)  # puts are fire and forget: give a wrong one time to land
        self.assertEqual(self.r.keys(base + "/cache/*"), set())
        # The same mailbox made consistent again: the same session builds both chunks.
        self.r.call("ZREM", base + "/uids", "10")
        self.r.call("ZREM", base + "/unseen", "10")
        self.r.call("HDEL", base + "/msg", "10")
        self.r.call("HDEL", base + "/flags", "10")
        self.assert_same(self.answers(c, queries), want)
        deadline = time.monotonic() + 5
        while len(self.r.keys(base + "/cache/*")) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        self.assertEqual(self.r.keys(base + "/cache/*"), {base + "/cache/f/0", base + "/cache/m/0"})
        c.close()
        p.close()


if __name__ == "__main__":
    unittest.main()
