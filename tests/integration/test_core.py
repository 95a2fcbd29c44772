"""Core server behaviour against a real redis-server and a real cimapd (issue: core server).

Covers: greeting and CAPABILITY, LOGIN (imaplib and literals), wrong password, state checks,
ID, ENABLE, NOOP, LOGOUT, pipelining order, limits before login (long line, huge literal,
command count), Redis outage and recovery, curl as a second real client.
"""

import imaplib
import os
import shutil
import subprocess
import time
import unittest

import harness


class CoreTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.redis = harness.Redis(persist=True)
        cls.server = harness.Cimapd(cls.redis.url, "--preauth-max-commands", "20")
        harness.wait_for_user(cls.redis)

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        log = cls.server.log_text()
        cls.server.cleanup()
        cls.redis.stop()
        if code != 0:
            raise AssertionError("cimapd exited with %s:\n%s" % (code, log[-4000:]))

    def imap(self):
        c = imaplib.IMAP4("127.0.0.1", self.server.port, timeout=10)
        self.addCleanup(self._close, c)
        return c

    @staticmethod
    def _close(c):
        try:
            c.shutdown()
        except OSError:
            pass

    def raw(self):
        r = harness.Raw(self.server.port)
        self.addCleanup(r.close)
        greeting = r.line()
        self.assertTrue(greeting.startswith("* OK [CAPABILITY IMAP4rev1 "), greeting)
        return r

    # --- the basics, through imaplib -------------------------------------------------------

    def test_imaplib_login_capability_logout(self):
        c = self.imap()
        self.assertIn("IMAP4REV1", c.capabilities)
        self.assertIn("LITERAL+", c.capabilities)
        typ, data = c.login("demouser", "demopass")
        self.assertEqual(typ, "OK")
        self.assertIn(b"Logged in", data[0])
        typ, data = c.capability()
        self.assertEqual(typ, "OK")
        self.assertIn(b"IMAP4rev1", data[0])
        typ, _ = c.noop()
        self.assertEqual(typ, "OK")
        typ, data = c.logout()
        self.assertEqual(typ, "BYE")

    def test_wrong_password(self):
        r = self.raw()
        start = time.monotonic()
        r.send("a1 LOGIN demouser wrong\r\n")
        self.assertEqual(r.line(), "a1 NO [AUTHENTICATIONFAILED] Authentication failed")
        self.assertGreaterEqual(time.monotonic() - start, 0.04)  # the failure delay applies
        r.send("a2 LOGIN nosuchuser whatever\r\n")
        self.assertEqual(r.line(), "a2 NO [AUTHENTICATIONFAILED] Authentication failed")
        r.send("a3 LOGIN \"bad/name\" whatever\r\n")
        self.assertEqual(r.line(), "a3 NO [AUTHENTICATIONFAILED] Authentication failed")
        # The third failure ends the connection.
        self.assertEqual(r.line(), "* BYE Too many failed logins")
        self.assertTrue(r.closed())

    def test_login_with_literals_and_state_checks(self):
        r = self.raw()
        r.send("x2 ENABLE CONDSTORE\r\n")
        self.assertEqual(r.line(), "x2 BAD Log in first")
        r.send("x3 LOGIN {8}\r\n")
        self.assertEqual(r.line(), "+ Ready for literal data")
        r.send("demouser {8+}\r\ndemopass\r\n")
        line = r.line()
        self.assertTrue(line.startswith("x3 OK [CAPABILITY IMAP4rev1"), line)
        r.send("x4 LOGIN demouser demopass\r\n")
        self.assertEqual(r.line(), "x4 BAD Command not valid in this state")
        r.send("x5 ENABLE CONDSTORE\r\n")
        self.assertEqual(r.until_tagged("x5"), ["* ENABLED", "x5 OK ENABLE completed"])
        r.send("x6 FROB\r\n")
        self.assertEqual(r.line(), "x6 BAD Unknown command")
        r.send("x7 NOOP extra\r\n")
        self.assertEqual(r.line(), "x7 BAD Wrong number of arguments")
        r.send("x8 LOGOUT\r\n")
        self.assertEqual(r.until_tagged("x8"), ["* BYE Logging out", "x8 OK Logout completed"])
        self.assertTrue(r.closed())

    def test_id(self):
        r = self.raw()
        r.send('i1 ID ("name" "harness" "version" "1.0")\r\n')
        lines = r.until_tagged("i1")
        self.assertEqual(lines[-1], "i1 OK ID completed")
        self.assertTrue(lines[0].startswith('* ID ("name" "cimap" "version" '), lines[0])
        r.send("i2 ID NIL\r\n")
        self.assertEqual(r.until_tagged("i2")[-1], "i2 OK ID completed")
        r.send('i3 ID ("odd")\r\n')
        self.assertEqual(r.line(), "i3 BAD ID takes up to 30 field/value pairs")
        r.send("i4 ID foo\r\n")
        self.assertEqual(r.line(), "i4 BAD ID takes a list or NIL")

    def test_pipelined_commands_answer_in_order(self):
        r = self.raw()
        r.send("p1 NOOP\r\np2 LOGIN demouser demopass\r\np3 CAPABILITY\r\np4 NOOP\r\n"
               "p5 BOGUS\r\np6 NOOP\r\n")
        lines = r.until_tagged("p6")
        tagged = [l.split(" ")[0] for l in lines if not l.startswith("*")]
        self.assertEqual(tagged, ["p1", "p2", "p3", "p4", "p5", "p6"])
        self.assertTrue(any(l.startswith("p2 OK") for l in lines))
        self.assertIn("p5 BAD Unknown command", lines)

    def test_syntax_errors_get_bad_and_the_connection_goes_on(self):
        r = self.raw()
        r.send('s1 LOGIN "unterminated\r\n')
        line = r.line()
        self.assertTrue(line.startswith("s1 BAD "), line)
        r.send("s2 NOOP\r\n")
        self.assertEqual(r.line(), "s2 OK NOOP completed")
        r.send("(\r\n")
        line = r.line()
        self.assertTrue(line.startswith("* BAD ") or line.startswith("( BAD"), line)
        r.send("s3 NOOP\r\n")
        self.assertEqual(r.line(), "s3 OK NOOP completed")

    # --- limits before login ---------------------------------------------------------------

    def test_long_line_before_login_is_bounded(self):
        before = self.server.rss_kib()
        r = self.raw()
        chunk = b"A" * 65536
        try:
            r.send(b"l1 LOGIN ")
            for _ in range(64 * 4):  # 16 MiB without a line end: memory must not follow
                r.send(chunk)
            r.send(b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may close before we finish: that is an answer too
        line = r.line()
        self.assertTrue(line.startswith("l1 BAD") or line.startswith("* BYE") or
                        line.startswith("* BAD"), line)
        if not harness.SANITIZED:
            self.assertLess(self.server.rss_kib() - before, 2048)
        # The server still serves others.
        c = self.imap()
        self.assertEqual(c.login("demouser", "demopass")[0], "OK")

    def test_huge_literal_before_login(self):
        before = self.server.rss_kib()
        # Synchronizing: the client waits, the server refuses and closes.
        r = self.raw()
        r.send("h1 LOGIN {2147483648}\r\n")
        line = r.line()
        self.assertTrue(line.startswith("h1 BAD") or line.startswith("h1 NO") or
                        line.startswith("* BYE"), line)
        # Non-synchronizing: the bytes start flowing at once; the server must not buffer them.
        r2 = self.raw()
        try:
            r2.send("h2 LOGIN {2147483648+}\r\n")
            for _ in range(64):
                r2.send(b"x" * 65536)
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.assertTrue(r2.closed())
        self.assertIn("BYE", r2.buf.decode(errors="replace"))
        if not harness.SANITIZED:
            self.assertLess(self.server.rss_kib() - before, 2048)
        c = self.imap()
        self.assertEqual(c.login("demouser", "demopass")[0], "OK")

    def test_command_count_before_login(self):
        r = self.raw()
        r.send("".join("n%d NOOP\r\n" % i for i in range(25)))
        lines = []
        while True:
            line = r.line()
            lines.append(line)
            if line.startswith("* BYE"):
                break
        self.assertEqual(lines[-1], "* BYE [LIMIT] Too many commands before login")
        self.assertEqual(sum(1 for l in lines if l.endswith("OK NOOP completed")), 20)
        self.assertTrue(r.closed())

    # --- a second real client ----------------------------------------------------------------

    @unittest.skipUnless(shutil.which("curl"), "curl not installed")
    def test_curl_capability(self):
        out = subprocess.run(
            ["curl", "-sS", "--max-time", "10", "imap://127.0.0.1:%d/" % self.server.port,
             "-u", "demouser:demopass", "-X", "CAPABILITY"],
            capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("CAPABILITY IMAP4rev1", out.stdout)
        bad = subprocess.run(
            ["curl", "-sS", "--max-time", "10", "imap://127.0.0.1:%d/" % self.server.port,
             "-u", "demouser:nope", "-X", "CAPABILITY"],
            capture_output=True, text=True)
        self.assertNotEqual(bad.returncode, 0)


class AdminCreatedUserTest(unittest.TestCase):
    """A user made with cimap-admin logs in and finds the default mailboxes."""

    def test_admin_user_has_default_mailboxes(self):
        redis = harness.Redis()
        server = harness.Cimapd(redis.url, demo=False)
        try:
            out = subprocess.run([harness.CIMAP_ADMIN, "--redis", redis.url, "set-user", "alice",
                                  "--password-stdin", "--kdf-cost", harness.TEST_KDF_COST],
                                 input="wonderland\n", capture_output=True, text=True)
            self.assertEqual(out.returncode, 0, out.stderr)
            c = imaplib.IMAP4("127.0.0.1", server.port)
            self.assertEqual(c.login("alice", "wonderland")[0], "OK")
            typ, boxes = c.list()
            listed = b"\n".join(boxes)
            for want in (b'"INBOX"', b'\\Sent) "/" "Sent"', b'\\Drafts) "/" "Drafts"',
                         b'\\Trash) "/" "Trash"', b'\\Junk) "/" "Junk"', b'\\Archive) "/" "Archive"'):
                self.assertIn(want, listed)
            c.logout()
        finally:
            code = server.stop()
            server.cleanup()
            redis.stop()
        self.assertEqual(code, 0)


class UserParamsTest(unittest.TestCase):
    """Per-user limits from `cimap-admin set-user --param` apply at the next login."""

    def test_quota_and_mailbox_limit(self):
        redis = harness.Redis()
        server = harness.Cimapd(redis.url, demo=False)
        try:
            out = subprocess.run([harness.CIMAP_ADMIN, "--redis", redis.url, "set-user", "quota",
                                  "--password-stdin", "--kdf-cost", harness.TEST_KDF_COST,
                                  "--param", "quota_messages=2", "--param", "max_mailboxes=7",
                                  "--param", "max_name_len=10"],
                                 input="pw\n", capture_output=True, text=True)
            self.assertEqual(out.returncode, 0, out.stderr)
            c = imaplib.IMAP4("127.0.0.1", server.port)
            self.assertEqual(c.login("quota", "pw")[0], "OK")
            msg = b"From: a@example.org\r\nSubject: q\r\n\r\nbody\r\n"
            self.assertEqual(c.append("INBOX", None, None, msg)[0], "OK")
            self.assertEqual(c.append("Sent", None, None, msg + b"2")[0], "OK")
            typ, data = c.append("INBOX", None, None, msg + b"3")
            self.assertEqual(typ, "NO")
            self.assertIn(b"[OVERQUOTA]", data[0])
            self.assertEqual(c.create("Seventh")[0], "OK")   # 6 default mailboxes + 1
            typ, data = c.create("Eighth")
            self.assertEqual(typ, "NO")
            self.assertIn(b"[LIMIT]", data[0])
            c.delete("Seventh")
            typ, data = c.create("ElevenChars")               # longer than max_name_len
            self.assertEqual(typ, "NO")
            self.assertIn(b"[LIMIT]", data[0])
            c.logout()
        finally:
            code = server.stop()
            server.cleanup()
            redis.stop()
        self.assertEqual(code, 0)


class RedisOutageTest(unittest.TestCase):
    """Redis killed mid-session: NO [UNAVAILABLE], then recovery with scripts reloaded."""

    def test_outage_and_recovery(self):
        redis = harness.Redis(persist=True)
        server = harness.Cimapd(redis.url, "--redis-timeout", "1000")
        try:
            harness.wait_for_user(redis)
            rc = redis.client()
            rc.call("SAVE")  # the restarted redis must still know the user
            rc.close()
            r = harness.Raw(server.port)
            r.line()
            r.send("o1 NOOP\r\n")
            self.assertEqual(r.line(), "o1 OK NOOP completed")
            redis.kill()
            r.send("o2 LOGIN demouser demopass\r\n")
            line = r.line()
            self.assertTrue(line.startswith("o2 NO [UNAVAILABLE]"), line)
            self.assertTrue(server.alive())
            redis.start()
            deadline = time.monotonic() + 15
            while True:
                r.send("o3 LOGIN demouser demopass\r\n")
                line = r.line()
                if line.startswith("o3 OK"):
                    break
                self.assertTrue(line.startswith("o3 NO [UNAVAILABLE]"), line)
                self.assertLess(time.monotonic(), deadline, "no recovery")
                time.sleep(0.2)
            # The front end loaded its scripts into the new Redis before using it.
            rc = redis.client()
            self.assertTrue(rc.call("SCRIPT", "EXISTS", schema_init_sha())[0] == 1)
            rc.close()
            r.close()
        finally:
            code = server.stop()
            log = server.log_text()
            server.cleanup()
            redis.stop()
        self.assertEqual(code, 0, log[-4000:])


def schema_init_sha():
    import hashlib
    with open(os.path.join(harness.ROOT, "lua", "schema_init.lua"), "rb") as f:
        return hashlib.sha1(f.read()).hexdigest()


if __name__ == "__main__":
    unittest.main()
