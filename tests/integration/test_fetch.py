"""FETCH and UID FETCH against a real redis-server and cimapd: every data item and macro, section
forms incl. nested message/rfc822 parts, partials, BINARY (base64, quoted-printable, literal8,
UNKNOWN-CTE), implicit \\Seen, vanished messages, error paths, a 5 MB message streamed whole and in
partials, batches past 1,000 messages, and curl as a second client."""

import base64
import email
import email.policy
import imaplib
import os
import shutil
import socket
import subprocess
import threading
import time
import unittest

import harness

FIXTURES = os.path.join(harness.ROOT, "tests", "fixtures", "mail")


def crlf(data):
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def fixture(name):
    with open(os.path.join(FIXTURES, name), "rb") as f:
        return crlf(f.read())


def message(subject, body=b"Hello.\r\n", extra=b""):
    head = (b"From: Tester <tester@example.org>\r\nTo: demouser@example.org\r\n"
            b"Subject: " + subject.encode() + b"\r\nMessage-ID: <" +
            subject.replace(" ", "-").encode() + b"@example.org>\r\n" + extra + b"\r\n")
    return head + body


class Conn:
    """A raw IMAP client that reads responses with their literals (and literal8) inline."""

    def __init__(self, port, login=True):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.buf = b""
        self.n = 0
        self._line()
        if login:
            self.ok("LOGIN demouser demopass")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _fill(self):
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("server closed")
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def response(self):
        """One response with its literals: bytes as on the wire (minus the final CRLF)."""
        out = b""
        while True:
            line = self._line()
            out += line
            if line.endswith(b"}") and b"{" in line:
                head = line[line.rindex(b"{") + 1:-1].rstrip(b"+")
                n = int(head)
                out += b"\r\n" + self._exact(n)
                continue
            return out

    def run(self, text):
        """Sends a tagged command; returns (untagged responses, tagged line)."""
        self.n += 1
        tag = b"t%d" % self.n
        self.sock.sendall(tag + b" " + text.encode() + b"\r\n")
        untagged = []
        while True:
            r = self.response()
            if r.startswith(tag + b" "):
                return untagged, r[len(tag) + 1:]
            untagged.append(r)

    def ok(self, text):
        untagged, tagged = self.run(text)
        if not tagged.startswith(b"OK"):
            raise AssertionError("%s -> %r" % (text, tagged))
        return untagged

    def fetch(self, text):
        """Runs a FETCH that must succeed; returns {seq: {ITEM: value}}."""
        return fetches(self.ok(text))


# --- a small parser for FETCH responses ----------------------------------------------------------

def parse_value(b, i):
    while b[i:i + 1] == b" ":
        i += 1
    c = b[i:i + 1]
    if c == b"(":
        i += 1
        items = []
        while True:
            while b[i:i + 1] == b" ":
                i += 1
            if b[i:i + 1] == b")":
                return items, i + 1
            v, i = parse_value(b, i)
            items.append(v)
    if c == b'"':
        i += 1
        out = b""
        while b[i:i + 1] != b'"':
            if b[i:i + 1] == b"\\":
                i += 1
            out += b[i:i + 1]
            i += 1
        return out, i + 1
    if c == b"{" or (c == b"~" and b[i + 1:i + 2] == b"{"):
        if c == b"~":
            i += 1
        j = b.index(b"}", i)
        n = int(b[i + 1:j])
        start = j + 3
        return Literal(b[start:start + n], c == b"~"), start + n
    j = i
    depth = 0
    while j < len(b):
        ch = b[j:j + 1]
        if ch == b"[":
            depth += 1
        elif ch == b"]":
            depth -= 1
        elif depth == 0 and ch in (b" ", b")"):
            break
        j += 1
    atom = b[i:j]
    return (None if atom.upper() == b"NIL" else Atom(atom)), j


class Literal(bytes):
    def __new__(cls, data, literal8):
        obj = super().__new__(cls, data)
        obj.literal8 = literal8
        return obj


class Atom(bytes):
    pass


def parse_fetch(resp):
    """b'* 3 FETCH (A x B y)' -> (3, {'A': x, 'B': y})."""
    assert resp.startswith(b"* "), resp
    parts = resp.split(b" ", 3)
    assert parts[2] == b"FETCH", resp
    seq = int(parts[1])
    items, _ = parse_value(resp, len(b"* %d FETCH " % seq))
    d = {}
    for k in range(0, len(items), 2):
        d[items[k].decode()] = items[k + 1]
    return seq, d


def fetches(untagged):
    out = {}
    for r in untagged:
        if b" FETCH (" in r[:30]:
            seq, d = parse_fetch(r)
            out[seq] = d
    return out


class FetchTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.redis = harness.Redis()
        cls.server = harness.Cimapd(cls.redis.url)
        harness.wait_for_user(cls.redis)
        deadline = time.monotonic() + 10
        while True:
            c = imaplib.IMAP4("127.0.0.1", cls.server.port)
            c.login("demouser", "demopass")
            typ, _ = c.status("Trash", "(MESSAGES)")
            c.logout()
            if typ == "OK":
                break
            if time.monotonic() > deadline:
                raise RuntimeError("demo data never appeared")
            time.sleep(0.05)
        cls.counter = 0

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        log = cls.server.log_text()
        cls.server.cleanup()
        cls.redis.stop()
        if code != 0:
            raise AssertionError("cimapd exited with %s:\n%s" % (code, log[-4000:]))

    def conn(self, select=None, examine=None):
        c = Conn(self.server.port)
        self.addCleanup(c.close)
        if select:
            c.ok("SELECT " + select)
        if examine:
            c.ok("EXAMINE " + examine)
        return c

    def imap(self):
        c = imaplib.IMAP4("127.0.0.1", self.server.port, timeout=60)
        c.login("demouser", "demopass")
        self.addCleanup(self._logout, c)
        return c

    @staticmethod
    def _logout(c):
        try:
            c.logout()
        except (OSError, imaplib.IMAP4.error):
            pass

    def mailbox(self, messages, flags=None):
        """A fresh mailbox holding messages (APPENDed in order, no flags unless given)."""
        FetchTest.counter += 1
        name = "Fetch%d" % FetchTest.counter
        c = self.imap()
        typ, data = c.create(name)
        self.assertEqual(typ, "OK", data)
        for m in messages:
            typ, data = c.append(name, flags, '"01-Feb-2024 10:20:30 +0000"', m)
            self.assertEqual(typ, "OK", data)
        return name

    def redis_call(self, *args):
        r = self.redis.client()
        try:
            return r.call(*args)
        finally:
            r.close()

    def stored(self, mailbox, uid):
        """The msg record fields and content hash key of a message, read from Redis."""
        nsid = self.redis_call("HGET", "/users/demouser", "nsid").decode()
        mbxid = self.redis_call("HGET", "/ns/{%s}/mailboxes" % nsid, mailbox).decode()
        rec = self.redis_call("HGET", "/ns/{%s}/mbx/%s/msg" % (nsid, mbxid), str(uid)).decode()
        sha = rec.split()[0]
        return nsid, mbxid, rec.split(), "/ns/{%s}/content/%s" % (nsid, sha)

    def raw_message(self, c, seq):
        return bytes(c.fetch("FETCH %d BODY.PEEK[]" % seq)[seq]["BODY[]"])

    # --- simple items and macros --------------------------------------------------------------

    def test_flags_uid_and_recent(self):
        c = self.conn(examine="INBOX")
        got = c.fetch("FETCH 1:* (FLAGS UID)")
        self.assertEqual(sorted(got), [1, 2, 3, 4, 5])
        self.assertEqual(got[2]["UID"], b"2")
        self.assertIn(b"\\Flagged", got[2]["FLAGS"])
        self.assertNotIn(b"\\Recent", got[2]["FLAGS"])  # EXAMINE claims nothing as \Recent
        # A fresh mailbox selected read-write: its messages are \Recent for this session.
        box = self.mailbox([message("recent one"), message("recent two")])
        c2 = self.conn(select=box)
        got = c2.fetch("FETCH 1:2 FLAGS")
        self.assertEqual(got[1]["FLAGS"], [b"\\Recent"])

    def test_uid_fetch_always_includes_uid(self):
        c = self.conn(examine="INBOX")
        untagged = c.ok("UID FETCH 2:3 FLAGS")
        self.assertTrue(untagged[0].startswith(b"* 2 FETCH (UID 2 FLAGS ("), untagged[0])
        got = fetches(untagged)
        self.assertEqual(got[3]["UID"], b"3")

    def test_macros(self):
        c = self.conn(examine="INBOX")
        fast = c.fetch("FETCH 1 FAST")[1]
        self.assertEqual(set(fast), {"FLAGS", "INTERNALDATE", "RFC822.SIZE"})
        every = c.fetch("FETCH 1 ALL")[1]
        self.assertEqual(set(every), {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"})
        full = c.fetch("FETCH 1 FULL")[1]
        self.assertEqual(set(full), {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"})
        self.assertEqual(full["INTERNALDATE"], b"24-Nov-2025 16:00:00 +0000")
        raw = self.raw_message(c, 1)
        self.assertEqual(int(full["RFC822.SIZE"]), len(raw))

    def test_internaldate_size_objectids(self):
        data = message("dated")
        box = self.mailbox([data])
        c = self.conn(examine=box)
        got = c.fetch("FETCH 1 (INTERNALDATE RFC822.SIZE EMAILID THREADID)")[1]
        self.assertEqual(got["INTERNALDATE"], b"01-Feb-2024 10:20:30 +0000")
        self.assertEqual(int(got["RFC822.SIZE"]), len(data))
        _, _, rec, _ = self.stored(box, 1)
        self.assertEqual(got["EMAILID"], [rec[3].encode()])
        self.assertEqual(got["THREADID"], [rec[4].encode()])

    def test_envelope_and_bodystructure_are_the_stored_strings(self):
        c = self.conn(examine="INBOX")
        for uid in range(1, 6):
            untagged = c.ok("UID FETCH %d (ENVELOPE)" % uid)
            line = untagged[0]
            _, _, _, content = self.stored("INBOX", uid)
            env = self.redis_call("HGET", content, "env")
            bs = self.redis_call("HGET", content, "bs")
            self.assertEqual(line, b"* %d FETCH (UID %d ENVELOPE %s)" % (uid, uid, env))
            line = c.ok("UID FETCH %d BODYSTRUCTURE" % uid)[0]
            self.assertEqual(line, b"* %d FETCH (UID %d BODYSTRUCTURE %s)" % (uid, uid, bs))
        # BODY is BODYSTRUCTURE without extension data.
        got = c.fetch("FETCH 2 (BODY BODYSTRUCTURE)")[2]
        self.assertEqual(got["BODY"][-1], b"mixed")
        self.assertGreater(len(got["BODYSTRUCTURE"]), len(got["BODY"]))

    # --- sections -----------------------------------------------------------------------------

    def test_header_text_and_parts(self):
        c = self.conn(examine="INBOX")
        raw = self.raw_message(c, 2)
        head, _, text = raw.partition(b"\r\n\r\n")
        got = c.fetch("FETCH 2 (BODY.PEEK[HEADER] BODY.PEEK[TEXT] RFC822.HEADER BODY.PEEK[1] "
                      "BODY.PEEK[2.MIME] BODY.PEEK[2])")[2]
        self.assertEqual(got["BODY[HEADER]"], head + b"\r\n\r\n")
        self.assertEqual(got["RFC822.HEADER"], head + b"\r\n\r\n")
        self.assertEqual(got["BODY[TEXT]"], text)
        msg = email.message_from_bytes(raw, policy=email.policy.compat32)
        parts = msg.get_payload()
        self.assertEqual(got["BODY[1]"], parts[0].get_payload().encode())
        self.assertEqual(got["BODY[2]"], parts[1].get_payload().encode())
        self.assertTrue(got["BODY[2.MIME]"].startswith(b"Content-Type: text/csv"))
        self.assertTrue(got["BODY[2.MIME]"].endswith(b"\r\n\r\n"))

    def test_nested_message_parts(self):
        c = self.conn(examine="INBOX")
        got = c.fetch("FETCH 3 (BODY.PEEK[2.HEADER] BODY.PEEK[2.TEXT] BODY.PEEK[2.1] "
                      "BODY.PEEK[2.HEADER.FIELDS (SUBJECT)] BODY.PEEK[2.MIME] BODY.PEEK[2])")[3]
        self.assertTrue(got["BODY[2.HEADER]"].startswith(b"From: Operator <operator@mark2.example>"))
        self.assertTrue(got["BODY[2.HEADER]"].endswith(b"\r\n\r\n"))
        self.assertEqual(got["BODY[2.TEXT]"], got["BODY[2.1]"])
        self.assertTrue(got["BODY[2.1]"].startswith(b"Moth found trapped"))
        self.assertEqual(got["BODY[2.HEADER.FIELDS (SUBJECT)]"], b"Subject: Relay #70, panel F\r\n\r\n")
        self.assertEqual(got["BODY[2]"], got["BODY[2.HEADER]"] + got["BODY[2.TEXT]"])
        self.assertTrue(got["BODY[2.MIME]"].startswith(b"Content-Type: message/rfc822"))

    def test_header_fields_and_not(self):
        c = self.conn(examine="INBOX")
        untagged = c.ok('FETCH 1 (BODY.PEEK[HEADER.FIELDS (Subject "FROM")] '
                        'BODY.PEEK[HEADER.FIELDS.NOT (Subject From Return-Path)])')
        self.assertIn(b"BODY[HEADER.FIELDS (Subject FROM)] {", untagged[0])
        got = fetches(untagged)[1]
        self.assertEqual(got["BODY[HEADER.FIELDS (Subject FROM)]"],
                         b"From: The cimap team <team@cimap.example>\r\n"
                         b"Subject: Welcome to cimap\r\n\r\n")
        rest = got["BODY[HEADER.FIELDS.NOT (Subject From Return-Path)]"]
        self.assertNotIn(b"Subject:", rest)
        self.assertIn(b"Message-ID: <welcome-1@cimap.example>\r\n", rest)
        self.assertTrue(rest.startswith(b"To: "))
        # A field no message has: just the blank line.
        got = c.fetch("FETCH 1 BODY.PEEK[HEADER.FIELDS (X-Nothing)]")[1]
        self.assertEqual(got["BODY[HEADER.FIELDS (X-Nothing)]"], b"\r\n")

    def test_missing_part_is_nil(self):
        c = self.conn(examine="INBOX")
        got = c.fetch("FETCH 1 (BODY.PEEK[7] BODY.PEEK[1.2.3])")[1]
        self.assertIsNone(got["BODY[7]"])
        self.assertIsNone(got["BODY[1.2.3]"])

    def test_partials(self):
        c = self.conn(examine="INBOX")
        raw = self.raw_message(c, 4)
        untagged = c.ok("FETCH 4 (BODY.PEEK[]<0.10> BODY.PEEK[]<100.25> BODY.PEEK[TEXT]<5.7> "
                        "BODY.PEEK[]<%d.10> BODY.PEEK[]<%d.100>)" % (len(raw) - 4, len(raw) + 5))
        self.assertIn(b"BODY[]<0> {10}", untagged[0])
        got = fetches(untagged)[4]
        self.assertEqual(got["BODY[]<0>"], raw[:10])
        self.assertEqual(got["BODY[]<100>"], raw[100:125])
        text = raw.partition(b"\r\n\r\n")[2]
        self.assertEqual(got["BODY[TEXT]<5>"], text[5:12])
        self.assertEqual(got["BODY[]<%d>" % (len(raw) - 4)], raw[-4:])
        self.assertEqual(got["BODY[]<%d>" % (len(raw) + 5)], b"")

    # --- BINARY ---------------------------------------------------------------------------------

    def test_binary_base64_and_qp(self):
        c = self.conn(examine="INBOX")
        got = c.fetch("FETCH 2 (BINARY.PEEK[2] BINARY.SIZE[2] BODY.PEEK[2] BINARY.PEEK[2]<4.6>)")[2]
        decoded = base64.b64decode(got["BODY[2]"])
        self.assertEqual(got["BINARY[2]"], decoded)
        self.assertEqual(int(got["BINARY.SIZE[2]"]), len(decoded))
        self.assertEqual(got["BINARY[2]<4>"], decoded[4:10])
        got = c.fetch("FETCH 4 (BINARY.PEEK[1] BINARY.SIZE[1] BINARY.PEEK[2])")[4]
        self.assertEqual(got["BINARY[1]"], b"This week: Lua scripts as transactions, and why "
                                           b"noeviction matters for a database.")
        self.assertEqual(int(got["BINARY.SIZE[1]"]), len(got["BINARY[1]"]))
        self.assertTrue(got["BINARY[2]"].startswith(b"<html>"))  # 7bit: as it is
        # BINARY[] is the whole message, undecoded.
        raw = self.raw_message(c, 4)
        got = c.fetch("FETCH 4 (BINARY.PEEK[] BINARY.SIZE[])")[4]
        self.assertEqual(got["BINARY[]"], raw)
        self.assertEqual(int(got["BINARY.SIZE[]"]), len(raw))

    def test_binary_literal8_with_nul(self):
        blob = bytes(range(256)) * 4
        body = (b"--b\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n--b\r\n"
                b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
                base64.encodebytes(blob).replace(b"\n", b"\r\n") + b"--b--\r\n")
        box = self.mailbox([message("binary blob", body,
                                    b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n")])
        c = self.conn(examine=box)
        untagged = c.ok("FETCH 1 (BINARY.PEEK[2] BINARY.PEEK[1] BINARY.SIZE[2])")
        self.assertIn(b"BINARY[2] ~{1024}", untagged[0])
        got = fetches(untagged)[1]
        self.assertEqual(got["BINARY[2]"], blob)
        self.assertTrue(got["BINARY[2]"].literal8)
        self.assertFalse(got["BINARY[1]"].literal8)
        self.assertEqual(int(got["BINARY.SIZE[2]"]), 1024)

    def test_unknown_cte(self):
        box = self.mailbox([fixture("38-unknown-cte.eml"), message("plain after")])
        c = self.conn(examine=box)
        untagged, tagged = c.run("FETCH 1:2 (UID BINARY.PEEK[1])")
        self.assertTrue(tagged.startswith(b"NO [UNKNOWN-CTE]"), tagged)
        got = fetches(untagged)
        self.assertNotIn(1, got)
        self.assertEqual(got[2]["BINARY[1]"], b"Hello.\r\n")
        _, tagged = c.run("FETCH 1 BINARY.SIZE[1]")
        self.assertTrue(tagged.startswith(b"NO [UNKNOWN-CTE]"), tagged)
        got = c.fetch("FETCH 1 BODY.PEEK[1]")[1]  # BODY is not decoded: fine
        self.assertIn(b"begin 644 file.bin", got["BODY[1]"])

    # --- \Seen ----------------------------------------------------------------------------------

    def test_non_peek_sets_seen(self):
        box = self.mailbox([message("seen %d" % k) for k in range(4)])
        c = self.conn(select=box)
        got = c.fetch("FETCH 1 BODY.PEEK[]")[1]
        self.assertNotIn("FLAGS", got)
        self.assertEqual(c.fetch("FETCH 1 FLAGS")[1]["FLAGS"], [b"\\Recent"])
        got = c.fetch("FETCH 1 BODY[TEXT]")[1]
        self.assertEqual(got["FLAGS"], [b"\\Seen", b"\\Recent"])
        got = c.fetch("FETCH 2 (FLAGS RFC822)")[2]
        self.assertEqual(got["FLAGS"], [b"\\Seen", b"\\Recent"])
        got = c.fetch("FETCH 3 BINARY[1]")[3]
        self.assertIn(b"\\Seen", got["FLAGS"])
        # Already seen: no FLAGS unless asked.
        got = c.fetch("FETCH 1 BODY[TEXT]")[1]
        self.assertNotIn("FLAGS", got)
        # RFC822.HEADER is a peek.
        c.fetch("FETCH 4 RFC822.HEADER")
        self.assertEqual(c.fetch("FETCH 4 FLAGS")[4]["FLAGS"], [b"\\Recent"])
        # Another session sees it in Redis.
        c2 = self.conn(examine=box)
        flags = c2.fetch("FETCH 1:4 FLAGS")
        self.assertEqual([flags[k]["FLAGS"] for k in range(1, 5)],
                         [[b"\\Seen"], [b"\\Seen"], [b"\\Seen"], []])

    def test_examine_does_not_set_seen(self):
        box = self.mailbox([message("examined")])
        c = self.conn(examine=box)
        got = c.fetch("FETCH 1 (BODY[] RFC822.TEXT)")[1]
        self.assertNotIn("FLAGS", got)
        self.assertEqual(c.fetch("FETCH 1 FLAGS")[1]["FLAGS"], [])

    # --- errors and vanished messages ---------------------------------------------------------

    def test_errors(self):
        c = self.conn(examine="INBOX")
        for bad in ["FETCH 1 FOO", "FETCH 1 (FLAGS ALL)", "FETCH 1 BODY[", "FETCH 1 BODY[]<1>",
                    "FETCH 1 BODY[]<1.0>", "FETCH 1 BINARY[HEADER]", "FETCH 1 BODY[0]",
                    "FETCH 1 BINARY.SIZE[1]<0.1>", "FETCH 6 FLAGS", "FETCH 1:9 FLAGS",
                    "FETCH 0 FLAGS", "FETCH 1 ()", "FETCH x FLAGS", "FETCH 1 MODSEQ",
                    "FETCH 1 BODY[TEXT.FOO]"]:
            _, tagged = c.run(bad)
            self.assertTrue(tagged.startswith(b"BAD"), (bad, tagged))
        # UIDs that do not exist match nothing.
        untagged, tagged = c.run("UID FETCH 99:200 FLAGS")
        self.assertEqual((untagged, tagged[:2]), ([], b"OK"))
        # Not selected.
        c2 = self.conn()
        _, tagged = c2.run("FETCH 1 FLAGS")
        self.assertTrue(tagged.startswith(b"BAD") or tagged.startswith(b"NO"), tagged)

    def test_vanished_record(self):
        box = self.mailbox([message("v%d" % k) for k in range(3)])
        c = self.conn(examine=box)
        nsid, mbxid, _, _ = self.stored(box, 2)
        self.redis_call("HDEL", "/ns/{%s}/mbx/%s/msg" % (nsid, mbxid), "2")
        self.redis_call("ZREM", "/ns/{%s}/mbx/%s/uids" % (nsid, mbxid), "2")
        untagged, tagged = c.run("UID FETCH 1:3 (RFC822.SIZE)")
        self.assertTrue(tagged.startswith(b"OK"), tagged)
        self.assertEqual(sorted(fetches(untagged)), [1, 3])
        untagged, tagged = c.run("FETCH 1:3 (RFC822.SIZE)")
        self.assertTrue(tagged.startswith(b"NO [EXPUNGEISSUED]"), tagged)
        self.assertEqual(sorted(fetches(untagged)), [1, 3])
        # FLAGS alone reads no msg record: existence comes from the mailbox modseq (unchanged:
        # the view is exact), else from the uids set. A real expunge bumps the modseq.
        self.redis_call("HINCRBY", "/ns/{%s}/mbx/%s" % (nsid, mbxid), "highestmodseq", "1")
        untagged, tagged = c.run("FETCH 1:3 (FLAGS)")
        self.assertTrue(tagged.startswith(b"NO [EXPUNGEISSUED]"), tagged)
        self.assertEqual(sorted(fetches(untagged)), [1, 3])

    # --- size and volume --------------------------------------------------------------------------

    def big_message(self, size):
        line = b"".join(bytes([33 + (k * 7 + j) % 90 for j in range(76)]) + b"\r\n"
                        for k in range(97))
        body = line * (size // len(line) + 1)
        return message("big", body[:size] + b"\r\nend\r\n")

    def test_5mb_message_whole_and_partial(self):
        data = self.big_message(5 << 20)
        box = self.mailbox([data])
        c = self.conn(examine=box)
        got = c.fetch("FETCH 1 (BODY.PEEK[] RFC822.SIZE)")[1]
        self.assertEqual(int(got["RFC822.SIZE"]), len(data))
        self.assertTrue(bytes(got["BODY[]"]) == data, "5 MB BODY[] differs")
        for origin, count in [(0, 1), (1000, 300000), (262143, 3), (262144 * 3 - 5, 262144 * 2),
                              (len(data) - 100, 1000), (1 << 20, 3 << 20)]:
            got = c.fetch("FETCH 1 BODY.PEEK[]<%d.%d>" % (origin, count))[1]
            self.assertTrue(bytes(got["BODY[]<%d>" % origin]) == data[origin:origin + count],
                            "partial %d.%d differs" % (origin, count))
        got = c.fetch("FETCH 1 (BODY.PEEK[HEADER] BODY.PEEK[TEXT]<10.20> UID)")[1]
        self.assertEqual(got["BODY[HEADER]"], data.partition(b"\r\n\r\n")[0] + b"\r\n\r\n")
        self.assertEqual(got["BODY[TEXT]<10>"], data.partition(b"\r\n\r\n")[2][10:30])
        text = data.partition(b"\r\n\r\n")[2]
        got = c.fetch("FETCH 1 BODY.PEEK[TEXT]")[1]
        self.assertTrue(bytes(got["BODY[TEXT]"]) == text)

    def test_large_binary_streamed(self):
        blob = os.urandom(3 << 20)
        qp_text = (b"caf=C3=A9 " * 30 + b"=\r\n") * 4000
        body = (b"--b\r\nContent-Type: application/octet-stream\r\n"
                b"Content-Transfer-Encoding: base64\r\n\r\n" +
                base64.encodebytes(blob).replace(b"\n", b"\r\n") +
                b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n"
                b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + qp_text + b"\r\n--b--\r\n")
        box = self.mailbox([message("large binary", body,
                                    b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n")])
        c = self.conn(examine=box)
        got = c.fetch("FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1])")[1]
        self.assertEqual(int(got["BINARY.SIZE[1]"]), len(blob))
        self.assertTrue(got["BINARY[1]"].literal8)
        self.assertTrue(bytes(got["BINARY[1]"]) == blob, "streamed base64 decode differs")
        got = c.fetch("FETCH 1 BINARY.PEEK[1]<1000000.700000>")[1]
        self.assertTrue(bytes(got["BINARY[1]<1000000>"]) == blob[1000000:1700000])
        decoded_qp = ("café " * 30).encode() * 4000 + b"\r\n"
        got = c.fetch("FETCH 1 (BINARY.PEEK[2] BINARY.SIZE[2])")[1]
        self.assertEqual(int(got["BINARY.SIZE[2]"]), len(got["BINARY[2]"]))
        self.assertTrue(bytes(got["BINARY[2]"]).startswith(decoded_qp[:-2]))

    def test_slow_reader_does_not_stall_others(self):
        data = self.big_message(5 << 20)
        box = self.mailbox([data])
        slow = socket.create_connection(("127.0.0.1", self.server.port), timeout=30)
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        slow.sendall(b"a LOGIN demouser demopass\r\nb EXAMINE " + box.encode() +
                     b"\r\nc FETCH 1 BODY.PEEK[]\r\n")
        time.sleep(0.3)  # the server fills its buffers and waits for the drain
        c = self.conn(examine="INBOX")
        t0 = time.monotonic()
        for _ in range(20):
            c.ok("NOOP")
            c.fetch("FETCH 1 FLAGS")
        self.assertLess(time.monotonic() - t0, 2.0)
        # Then read it all: the response is complete and intact.
        buf = b""
        slow.settimeout(30)
        while b"\r\nc OK" not in buf[-200:]:
            chunk = slow.recv(1 << 20)
            if not chunk:
                break
            buf += chunk
        slow.close()
        self.assertIn(data, buf)

    def test_batches_past_one_thousand(self):
        n = 1500
        FetchTest.counter += 1
        box = "Many%d" % FetchTest.counter
        c = self.conn()
        c.ok("CREATE " + box)
        # MULTIAPPEND in chunks of 250 messages (one round trip each).
        for start in range(0, n, 250):
            parts = []
            for k in range(start, start + 250):
                m = message("many %d" % k)
                parts.append(b"(\\Seen) {%d+}\r\n" % len(m) + m)
            c.sock.sendall(b"m APPEND " + box.encode() + b" " + b" ".join(parts) + b"\r\n")
            while True:
                r = c.response()
                if r.startswith(b"m "):
                    self.assertTrue(r.startswith(b"m OK"), r)
                    break
        c.ok("EXAMINE " + box)
        got = c.fetch("FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (Subject)] ENVELOPE)")
        self.assertEqual(sorted(got), list(range(1, n + 1)))
        for k in (1, 999, 1000, 1001, n):
            self.assertEqual(got[k]["BODY[HEADER.FIELDS (Subject)]"],
                             b"Subject: many %d\r\n\r\n" % (k - 1))
            self.assertEqual(got[k]["ENVELOPE"][1], b"many %d" % (k - 1))
        got = c.fetch("UID FETCH 1:* (FLAGS)")
        self.assertEqual(len(got), n)
        got = c.fetch("FETCH 998:1003,1499 BODY.PEEK[]<0.4>")
        self.assertEqual(sorted(got), [998, 999, 1000, 1001, 1002, 1003, 1499])

    @unittest.skipUnless(shutil.which("curl"), "curl not installed")
    def test_curl_fetch_by_uid(self):
        c = self.conn(examine="INBOX")
        raw = self.raw_message(c, 2)
        out = subprocess.run(
            ["curl", "-sS", "--max-time", "20", "-u", "demouser:demopass",
             "imap://127.0.0.1:%d/INBOX;UID=2" % self.server.port],
            capture_output=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout, raw)
        out = subprocess.run(
            ["curl", "-sS", "--max-time", "20", "-u", "demouser:demopass",
             "imap://127.0.0.1:%d/INBOX;UID=3/;SECTION=2.HEADER" % self.server.port],
            capture_output=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertTrue(out.stdout.startswith(b"From: Operator"), out.stdout)


if __name__ == "__main__":
    unittest.main()
