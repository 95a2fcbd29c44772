#!/usr/bin/env python3
"""cimap-admin append as a local delivery agent (issue 9): exit codes, CRLF, flags and dates,
exactly-once delivery keys, staged large messages, the IDLE wake-up, and a real postfix.

The postfix test runs a private postfix instance (Debian's postfix, its own config directory,
queue and log under a temp dir, inet_interfaces = loopback-only and no network listener at all:
mail enters through sendmail/postdrop) whose pipe(8) transport "cimap" runs cimap-admin append.
It needs root (postfix's master) and the postfix package (scripts/deps.sh --test); otherwise it is
skipped with the reason.

    CIMAP_ADMIN=build/cimap-admin CIMAPD=build/cimapd python3 -m unittest -v test_lda
"""
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

from harness import CIMAP_ADMIN, TEST_KDF_COST, Cimapd, Raw, Redis

EX_OK, EX_USAGE, EX_DATAERR, EX_NOUSER, EX_TEMPFAIL = 0, 64, 65, 67, 75
SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")
MSG = (b"From: Alice <alice@example.org>\nTo: bob@example.org\nSubject: lda test\n"
       b"Message-ID: <lda-1@example.org>\n\nline one\nline two\n")


def admin(redis_url, *args, stdin=b""):
    p = subprocess.run([CIMAP_ADMIN, "--redis", redis_url] + list(args), input=stdin,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    err = p.stderr.decode(errors="replace")
    for mark in SANITIZER_MARKS:
        assert mark not in err, err
    return p.returncode, p.stdout.decode(), err


class LdaCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.redis = Redis(persist=True)
        cls.r = cls.redis.client()

    @classmethod
    def tearDownClass(cls):
        cls.r.close()
        cls.redis.stop()

    def setUp(self):
        self.r.call("FLUSHALL")
        self.make_user("bob")

    def make_user(self, login, password="secret"):
        rc, out, err = admin(self.redis.url, "set-user", login, "--password-stdin",
                             "--kdf-cost", TEST_KDF_COST, stdin=password.encode())
        self.assertEqual(rc, 0, err)

    def append(self, *args, stdin=MSG, user="bob", url=None):
        return admin(url or self.redis.url, "append", *(list(args) + [user]), stdin=stdin)

    def nsid(self, login="bob"):
        return self.r.call("HGET", "/users/" + login, "nsid").decode()

    def mbx(self, name="INBOX", login="bob"):
        ns = self.nsid(login)
        mid = self.r.call("HGET", "/ns/{%s}/mailboxes" % ns, name)
        return "/ns/{%s}/mbx/%s" % (ns, mid.decode()) if mid else None

    def messages(self, name="INBOX", login="bob"):
        """UID -> (raw bytes, internaldate, flags)."""
        ns, m = self.nsid(login), self.mbx(name, login)
        out = {}
        for uid in self.r.call("ZRANGE", m + "/uids", 0, -1):
            rec = self.r.call("HGET", m + "/msg", uid).decode().split()
            raw = self.r.call("GET", "/ns/{%s}/content/%s/raw" % (ns, rec[0]))
            flags = self.r.call("HGET", m + "/flags", uid) or b""
            out[int(uid)] = (raw, int(rec[1]), flags.decode())
        return out


class TestAppend(LdaCase):
    def test_delivers_crlf_and_prints_uid(self):
        rc, out, err = self.append("--from", "alice@example.org")
        self.assertEqual(rc, EX_OK, err)
        uidvalidity = int(self.r.call("HGET", self.mbx(), "uidvalidity"))
        self.assertEqual(out, "%d 1\n" % uidvalidity)
        msgs = self.messages()
        self.assertEqual(list(msgs), [1])
        self.assertEqual(msgs[1][0], MSG.replace(b"\n", b"\r\n"))
        self.assertEqual(msgs[1][2], "")
        self.assertLess(abs(msgs[1][1] - time.time()), 60)
        m = self.mbx()
        self.assertEqual(int(self.r.call("HGET", m, "messages")), 1)
        self.assertEqual(int(self.r.call("HGET", m, "unseen")), 1)
        log = self.r.call("XRANGE", m + "/log", "-", "+")
        self.assertEqual(log[-1][1][:4], [b"k", b"append", b"u", b"1"])

    def test_flags_date_and_mailbox(self):
        rc, out, err = self.append("--mailbox", "Sent", "--flag", "\\SEEN", "--flag", "$Label1",
                                   "--flag", "\\seen", "--date", "2024-05-01T12:00:00+02:00",
                                   stdin=MSG.replace(b"lda-1", b"lda-2"))
        self.assertEqual(rc, EX_OK, err)
        msgs = self.messages("Sent")
        self.assertEqual(msgs[1][1:], (1714557600, "\\Seen $Label1"))
        rc, _, err = self.append("--date", "1700000000", stdin=MSG.replace(b"lda-1", b"lda-3"))
        self.assertEqual(rc, EX_OK, err)
        self.assertEqual(self.messages()[1][1], 1700000000)

    def test_missing_mailbox_goes_to_inbox_unless_create(self):
        rc, out, err = self.append("--mailbox", "No/Such")
        self.assertEqual(rc, EX_OK, err)
        self.assertIn("delivering to INBOX", err)
        self.assertEqual(len(self.messages()), 1)
        self.assertIsNone(self.mbx("No/Such"))
        rc, out, err = self.append("--mailbox", "bad//name", stdin=MSG.replace(b"lda-1", b"lda-5"))
        self.assertEqual(rc, EX_OK, err)
        self.assertEqual(len(self.messages()), 2)
        rc, out, err = self.append("--mailbox", "inbox/Lists/x", "--create",
                                   stdin=MSG.replace(b"lda-1", b"lda-4"))
        self.assertEqual(rc, EX_OK, err)
        self.assertIsNotNone(self.mbx("INBOX/Lists"))
        self.assertEqual(len(self.messages("INBOX/Lists/x")), 1)

    def test_user_without_inbox_gets_one(self):
        ns = self.nsid()
        self.r.call("HDEL", "/ns/{%s}/mailboxes" % ns, "INBOX")
        rc, out, err = self.append()
        self.assertEqual(rc, EX_OK, err)
        self.assertEqual(len(self.messages()), 1)

    def test_exit_codes(self):
        before = self.r.keys("*")
        rc, _, err = self.append(user="stranger")
        self.assertEqual(rc, EX_NOUSER, err)
        rc, _, err = self.append(user="bad/login")
        self.assertEqual(rc, EX_NOUSER, err)
        self.assertEqual(self.r.keys("*"), before)  # nothing created for a stranger
        self.assertEqual(self.append(stdin=b"")[0], EX_DATAERR)
        rc, _, err = self.append("--max-size", "50")
        self.assertEqual(rc, EX_DATAERR, err)
        self.assertIn("larger than --max-size", err)
        self.assertEqual(self.append("--flag", "\\Bogus")[0], EX_USAGE)
        self.assertEqual(self.append("--date", "yesterday")[0], EX_USAGE)
        self.assertEqual(admin(self.redis.url, "append")[0], EX_USAGE)
        rc, _, err = self.append(url="redis://127.0.0.1:1")
        self.assertEqual(rc, EX_TEMPFAIL, err)
        self.r.call("HSET", "/users/bob", "state", "deleting")
        self.assertEqual(self.append()[0], EX_NOUSER)
        self.assertEqual(self.r.keys("*"), before)
        self.assertEqual(self.messages(), {})

    def test_redis_oom_is_tempfail(self):
        self.r.call("CONFIG", "SET", "maxmemory", "1")
        try:
            rc, _, err = self.append()
        finally:
            self.r.call("CONFIG", "SET", "maxmemory", "0")
        self.assertEqual(rc, EX_TEMPFAIL, err)
        self.assertEqual(self.messages(), {})

    def test_delivery_id_is_exactly_once(self):
        rc1, out1, err = self.append("--delivery-id", "4F1A2B3C4D", "--from", "a@x")
        self.assertEqual(rc1, EX_OK, err)
        rc2, out2, err = self.append("--delivery-id", "4F1A2B3C4D", "--from", "a@x")
        self.assertEqual((rc2, out2), (EX_OK, out1))
        self.assertIn("stored before", err)
        self.assertEqual(len(self.messages()), 1)
        # Another queue id is another delivery, even of the same bytes.
        rc, out3, err = self.append("--delivery-id", "99AA", "--from", "a@x")
        self.assertEqual(rc, EX_OK, err)
        self.assertEqual(len(self.messages()), 2)
        key = [k for k in self.r.keys("/ns/*/delivery/*")]
        self.assertEqual(len(key), 2)
        ttl = self.r.call("TTL", key[0])
        self.assertTrue(86000 < ttl <= 86400, ttl)

    def test_without_delivery_id_hashes_message_and_envelope(self):
        self.assertEqual(self.append("--from", "a@x")[0], EX_OK)
        self.assertEqual(self.append("--from", "a@x")[0], EX_OK)
        self.assertEqual(len(self.messages()), 1)
        self.assertEqual(self.append("--from", "other@x")[0], EX_OK)
        self.assertEqual(len(self.messages()), 2)
        self.assertEqual(self.append("--from", "a@x", "--dedupe-ttl", "0")[0], EX_OK)
        self.assertEqual(len(self.messages()), 3)
        self.assertEqual(len(self.r.keys("/ns/*/delivery/*")), 2)

    def test_concurrent_retries_store_once(self):
        results = []

        def run():
            results.append(self.append("--delivery-id", "RACE1"))
        threads = [threading.Thread(target=run) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual({r[0] for r in results}, {EX_OK})
        self.assertEqual(len({r[1] for r in results}), 1)
        self.assertEqual(len(self.messages()), 1)

    def test_large_message_is_staged(self):
        body = b"".join(b"line %06d of a large message\n" % i for i in range(40000))
        big = b"Subject: big\nMessage-ID: <big@x>\n\n" + body
        rc, out, err = self.append("--delivery-id", "BIG1", stdin=big)
        self.assertEqual(rc, EX_OK, err)
        self.assertEqual(self.messages()[1][0], big.replace(b"\n", b"\r\n"))
        self.assertEqual(self.r.keys("/ns/*/staging/*"), set())
        rc, out2, err = self.append("--delivery-id", "BIG1", stdin=big)
        self.assertEqual((rc, out2), (EX_OK, out))
        self.assertEqual(self.r.keys("/ns/*/staging/*"), set())  # the retry's upload is dropped
        self.assertEqual(len(self.messages()), 1)


class TestAppendScriptContract(LdaCase):
    """append.lua's optional delivery key: validated before any write; old callers unaffected."""

    def call(self, extra_keys, extra_args):
        import hashlib
        ns = self.nsid()
        m = self.mbx()
        mbxid = m.rsplit("/", 1)[1]
        raw = b"Subject: x\r\n\r\nx\r\n"
        sha = hashlib.sha256(raw).hexdigest()
        p = "/ns/{%s}/" % ns
        keys = [p + "meta"] + [m + s for s in ("", "/uids", "/runs", "/msg", "/flags", "/modseq",
                                               "/unseen", "/deleted", "/log")]
        keys += [p + "threads", p + "channel", p + "gc", p + "content/" + sha,
                 p + "content/" + sha + "/raw", p + "content/" + sha + "/raw"]
        args = [mbxid, "0", "0", "0", "1", sha, str(len(raw)), "", "", raw, "", "", "", "", "",
                "M" + sha[:24]]
        with open(os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
                os.path.abspath(__file__)))), "lua", "append.lua")) as f:
            script = f.read()
        return self.r.call("EVAL", script, len(keys) + len(extra_keys), *(keys + extra_keys),
                           *(args + extra_args))

    def test_delivery_key_contract(self):
        ns = self.nsid()
        good = "/ns/{%s}/delivery/%s" % (ns, "ab" * 32)
        bad_keys = [["/ns/{%s}/delivery/xyz" % ns], ["/ns/{00000000-0000-4000-8000-000000000000}"
                                                     "/delivery/" + "ab" * 32]]
        for k in bad_keys:
            with self.assertRaises(RuntimeError) as e:
                self.call(k, ["60"])
            self.assertIn("invalid delivery key", str(e.exception))
        for ttl in ("0", "2592001", "x"):
            with self.assertRaises(RuntimeError) as e:
                self.call([good], [ttl])
            self.assertIn("invalid delivery ttl", str(e.exception))
        with self.assertRaises(RuntimeError):
            self.call([good], [])  # a key without its TTL
        self.assertEqual(self.messages(), {})
        first = self.call([good], ["60"])
        self.assertEqual(first[4], 0)
        again = self.call([good], ["60"])
        self.assertEqual(again, first[:4] + [1])
        self.assertEqual(len(self.messages()), 1)
        self.assertEqual(len(self.call([], [])), 4)  # the old form: no fifth element
        self.assertEqual(len(self.messages()), 2)


class TestIdleWakeup(LdaCase):
    def test_idle_session_sees_delivery(self):
        d = Cimapd(self.redis.url, demo=False)
        try:
            c = Raw(d.port)
            c.line()
            c.send("a LOGIN bob secret\r\n")
            self.assertIn("a OK", c.until_tagged("a")[-1])
            c.send("b SELECT INBOX\r\n")
            self.assertIn("b OK", c.until_tagged("b")[-1])
            c.send("c IDLE\r\n")
            self.assertTrue(c.line().startswith("+"))
            t0 = time.monotonic()
            rc, _, err = self.append()
            self.assertEqual(rc, EX_OK, err)
            self.assertEqual(c.line(), "* 1 EXISTS")
            self.assertLess(time.monotonic() - t0, 5)
            c.send("DONE\r\n")
            c.until_tagged("c")
            c.close()
        finally:
            self.assertEqual(d.stop(), 0, d.log_text())
            d.cleanup()


def postfix_unavailable():
    if os.geteuid() != 0:
        return "postfix's master must run as root"
    if shutil.which("postfix") is None and not os.path.exists("/usr/sbin/postfix"):
        return "postfix is not installed (scripts/deps.sh --test)"
    try:
        pwd.getpwnam("postfix")
        pwd.getpwnam("nobody")
    except KeyError:
        return "no postfix or nobody account"
    return None


class Postfix:
    """A private postfix: own config dir, queue, data dir and log; no listener; pipe to cimap."""

    def __init__(self, redis_url):
        self.dir = tempfile.mkdtemp(prefix="cimap-postfix-")
        os.chmod(self.dir, 0o755)
        self.etc = os.path.join(self.dir, "etc")
        for sub in ("etc", "spool", "data"):
            os.mkdir(os.path.join(self.dir, sub))
        shutil.chown(os.path.join(self.dir, "data"), user="postfix")
        self.log = os.path.join(self.dir, "maillog")
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(MAIN_CF.format(dir=self.dir))
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(admin=CIMAP_ADMIN, url=redis_url))
        self.postfix("check")
        self.postfix("start")

    def postfix(self, *args):
        subprocess.run(["postfix", "-c", self.etc] + list(args), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)

    def sendmail(self, sender, rcpt, data):
        subprocess.run(["sendmail", "-C", self.etc, "-f", sender, rcpt], input=data, check=True,
                       timeout=30)

    def queue(self):
        p = subprocess.run(["postqueue", "-c", self.etc, "-j"], stdout=subprocess.PIPE,
                           check=True, timeout=30)
        import json
        return [json.loads(l) for l in p.stdout.decode().splitlines() if l.strip()]

    def flush(self):
        subprocess.run(["postqueue", "-c", self.etc, "-f"], check=True, timeout=30)

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def wait_log(self, text, count=1, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log_text().count(text) >= count:
                return
            time.sleep(0.1)
        raise AssertionError("postfix log never showed %r x%d:\n%s" % (text, count, self.log_text()))

    def stop(self):
        try:
            self.postfix("stop")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


MAIN_CF = """compatibility_level = 3.6
queue_directory = {dir}/spool
data_directory = {dir}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = cimap-test.localhost
mydomain = localhost
myorigin = localhost
mydestination = localhost, cimap-test.localhost
inet_interfaces = loopback-only
inet_protocols = ipv4
local_transport = cimap
default_transport = error:this test relays nothing
alias_maps =
alias_database =
local_recipient_maps =
cimap_destination_recipient_limit = 1
maillog_file = {dir}/maillog
maillog_file_prefixes = {dir}
queue_run_delay = 3600s
minimal_backoff_time = 3600s
maximal_backoff_time = 3600s
biff = no
smtputf8_enable = no
"""

# Only local services: nothing listens on a network port.
MASTER_CF = """pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
proxymap  unix  -       -       n       -       -       proxymap
cimap     unix  -       n       n       -       -       pipe
  flags=DRq user=nobody argv={admin} --redis {url} append --from ${{sender}} --delivery-id ${{queue_id}} ${{user}}
"""


@unittest.skipIf(postfix_unavailable(), postfix_unavailable() or "")
class TestPostfix(LdaCase):
    def test_pipe_transport(self):
        pf = Postfix(self.redis.url)
        d = Cimapd(self.redis.url, demo=False)
        try:
            c = Raw(d.port)
            c.line()
            c.send("a LOGIN bob secret\r\nb SELECT INBOX\r\nc IDLE\r\n")
            c.until_tagged("b")
            self.assertTrue(c.line().startswith("+"))
            pf.sendmail("alice@example.org", "bob@localhost",
                        b"Subject: via postfix\nMessage-ID: <pf-1@example.org>\n\nhello\n")
            self.assertEqual(c.line(), "* 1 EXISTS")
            pf.wait_log("status=sent")
            raw = list(self.messages().values())[0][0]
            self.assertIn(b"Delivered-To: bob@localhost\r\n", raw)
            self.assertIn(b"Return-Path: <alice@example.org>\r\n", raw)
            self.assertTrue(raw.endswith(b"\r\n\r\nhello\r\n"))
            c.send("DONE\r\n")
            c.until_tagged("c")

            # An unknown user bounces (67) and creates nothing.
            pf.sendmail("alice@example.org", "nobody-here@localhost", b"Subject: x\n\nx\n")
            pf.wait_log("status=bounced")
            self.assertIsNone(self.r.call("EXISTS", "/users/nobody-here") or None)

            # Redis down: deferred, kept in the queue; back and flushed: delivered once.
            self.r.call("SAVE")
            self.r.close()
            self.redis.kill()
            pf.sendmail("alice@example.org", "bob@localhost",
                        b"Subject: while down\nMessage-ID: <pf-2@example.org>\n\nqueued\n")
            pf.wait_log("status=deferred")
            q = pf.queue()
            self.assertEqual(len(q), 1, q)
            self.assertEqual(q[0]["queue_name"], "deferred")
            self.redis.start()
            type(self).r = self.redis.client()
            pf.flush()
            pf.wait_log("status=sent", count=2)
            deadline = time.monotonic() + 10
            while pf.queue() and time.monotonic() < deadline:
                time.sleep(0.1)
            self.assertEqual(pf.queue(), [])
            msgs = self.messages()
            self.assertEqual(len(msgs), 2)
            self.assertIn(b"queued\r\n", msgs[2][0])
            # A second flush has nothing to deliver again.
            pf.flush()
            time.sleep(0.5)
            self.assertEqual(len(self.messages()), 2)
            c.close()
        finally:
            pf.stop()
            self.assertEqual(d.stop(), 0, d.log_text())
            d.cleanup()


if __name__ == "__main__":
    unittest.main()
