#!/usr/bin/env python3
"""cimap-admin import-maildir / export-maildir (issue 9), against a real Dovecot.

Round trip: mail is created in a private Dovecot (Debian dovecot-imapd, started with
/work/shared/bench/dovecot/start.sh's config on a free loopback port, state in a temp dir) over
IMAP — several folders, flags, keywords, INTERNALDATEs, expunged UIDs, a file dropped into new/
that Dovecot has not seen — then its maildir is imported into cimap and every mailbox is compared
over IMAP between Dovecot and cimapd (UIDVALIDITY, UIDNEXT, UIDs, flags, INTERNALDATE, bytes,
subscriptions). Re-running the import changes nothing; a message expunged in cimap is not brought
back. The export is then served by Dovecot as another user and compared again.

Without root or Dovecot the Dovecot tests are skipped (the fs-layout tests still run).

    CIMAP_ADMIN=build/cimap-admin CIMAPD=build/cimapd python3 -m unittest -v test_maildir
"""
import imaplib
import os
import pty
import re
import shutil
import subprocess
import tempfile
import time
import unittest

from harness import CIMAP_ADMIN, TEST_KDF_COST, Cimapd, Redis, free_port, wait_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOVECOT_START = os.environ.get("CIMAP_DOVECOT_START", "/work/shared/bench/dovecot/start.sh")
SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")


def admin(redis_url, *args, stdin=b""):
    p = subprocess.run([CIMAP_ADMIN, "--redis", redis_url] + list(args), input=stdin,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    err = p.stderr.decode(errors="replace")
    for mark in SANITIZER_MARKS:
        assert mark not in err, err
    return p.returncode, p.stdout.decode(), err


def dovecot_unavailable():
    if os.geteuid() != 0:
        return "Dovecot's master must run as root"
    if shutil.which("dovecot") is None and not os.path.exists("/usr/sbin/dovecot"):
        return "dovecot-imapd is not installed (scripts/deps.sh --test)"
    if not os.path.exists(DOVECOT_START):
        return "no Dovecot start script at %s" % DOVECOT_START
    return None


LIST_RE = re.compile(rb'^\((?P<attrs>[^)]*)\) (?:"(?P<sep>[^"]*)"|NIL) (?P<name>.*)$')


def unquote(name):
    if name.startswith(b'"') and name.endswith(b'"'):
        name = name[1:-1].replace(b'\\"', b'"').replace(b"\\\\", b"\\")
    return name.decode()


class Imap:
    """What the comparison needs, over imaplib."""

    def __init__(self, port, user, password):
        self.c = imaplib.IMAP4("127.0.0.1", port)
        self.c.login(user, password)

    def close(self):
        try:
            self.c.logout()
        except (imaplib.IMAP4.error, OSError):
            pass

    def names(self, command="LIST"):
        typ, data = self.c._simple_command(command, '""', '"*"')
        typ, data = self.c._untagged_response(typ, data, command)
        out = {}
        for line in data:
            if line is None:
                continue
            m = LIST_RE.match(line)
            sep = m.group("sep").decode() if m.group("sep") else "/"
            attrs = m.group("attrs").decode().lower()
            name = unquote(m.group("name"))
            out[name.replace(sep, "/")] = (sep, "\\noselect" in attrs or "\\nonexistent" in attrs)
        return out

    def mailbox(self, name, sep):
        """{'uidvalidity', 'uidnext', 'messages': {uid: (flags, internaldate, bytes)}}."""
        wire = '"%s"' % name.replace("/", sep)
        typ, data = self.c.status(wire, "(UIDVALIDITY UIDNEXT MESSAGES)")
        assert typ == "OK", data
        st = dict(re.findall(r"(UIDVALIDITY|UIDNEXT|MESSAGES) (\d+)", data[0].decode()))
        typ, data = self.c.select(wire, readonly=True)
        assert typ == "OK", data
        msgs = {}
        if int(st["MESSAGES"]) > 0:
            typ, data = self.c.uid("FETCH", "1:*", "(UID FLAGS INTERNALDATE BODY.PEEK[])")
            assert typ == "OK", data
            for item in data:
                if not isinstance(item, tuple):
                    continue
                head, body = item
                uid = int(re.search(rb"UID (\d+)", head).group(1))
                flags = set(re.search(rb"FLAGS \(([^)]*)\)", head).group(1).decode().split())
                flags.discard("\\Recent")
                date = time.mktime(imaplib.Internaldate2tuple(head))
                msgs[uid] = (frozenset(flags), int(date), body)
        self.c.close() if self.c.state == "SELECTED" else None
        return {"uidvalidity": int(st["UIDVALIDITY"]), "uidnext": int(st["UIDNEXT"]),
                "messages": msgs}


def snapshot(imap):
    names = imap.names()
    boxes = {name: imap.mailbox(name, sep) for name, (sep, noselect) in names.items()
             if not noselect}
    subs = set(imap.names("LSUB"))
    return boxes, subs


MSG = "From: a@example.org\r\nTo: b@example.org\r\nSubject: %s\r\nMessage-ID: <%s@x>\r\n\r\n%s\r\n"


@unittest.skipIf(dovecot_unavailable(), dovecot_unavailable() or "")
class TestDovecotRoundTrip(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="cimap-maildir-")
        os.chmod(cls.tmp, 0o755)
        cls.dcdir = os.path.join(cls.tmp, "dovecot")
        cls.dport = free_port()
        env = dict(os.environ, DOVECOT_BENCH_DIR=cls.dcdir)
        subprocess.run(["bash", DOVECOT_START, str(cls.dport), "3"], env=env, check=True,
                       stdout=subprocess.DEVNULL, timeout=120)
        wait_port(cls.dport)
        cls.redis = Redis()
        cls.cimapd = Cimapd(cls.redis.url, demo=False)
        cls.populate()

    @classmethod
    def tearDownClass(cls):
        subprocess.run(["doveadm", "-c", os.path.join(cls.dcdir, "dovecot.conf"), "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        status = cls.cimapd.stop()
        cls.cimapd.cleanup()
        cls.redis.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        assert status == 0, "cimapd exited with %s" % status

    @classmethod
    def populate(cls):
        c = imaplib.IMAP4("127.0.0.1", cls.dport)
        c.login("test1", "pass")
        for name in ("Sent", "Archive", "Archive.2024", "Work", "Caf&AOk-"):
            c.create(name)
        for name in ("Sent", "Archive.2024", "Caf&AOk-"):
            c.subscribe(name)
        flags = [r"(\Seen)", r"(\Seen $Label1 todo)", r"(\Deleted \Flagged)", r"(\Answered \Draft)",
                 r"()", r"(\Seen \Flagged $Forwarded urgent todo)", r"(NonJunk)"]
        n = 0
        for box, count in (("INBOX", 9), ("Sent", 3), ("Archive.2024", 4), ("Work", 2),
                           ("Caf&AOk-", 1)):
            for i in range(count):
                n += 1
                body = "body %d of %s\r\nline two\r\n" % (n, box) + ("x" * 80 + "\r\n") * (n % 5)
                c.append(box, flags[n % len(flags)],
                         imaplib.Time2Internaldate(1600000000 + n * 3601),
                         (MSG % ("msg %d" % n, "m%d" % n, body)).encode())
        # Holes in the UIDs and a next UID beyond the last message.
        c.select("INBOX")
        c.uid("STORE", "2,5,9", "+FLAGS.SILENT", r"(\Deleted)")
        c.expunge()
        c.select("Work")
        c.uid("STORE", "2", "+FLAGS.SILENT", r"(\Deleted)")
        c.expunge()
        c.logout()
        # A message delivered into new/ that Dovecot has not seen yet.
        work = os.path.join(cls.dcdir, "mail", "test1", ".Work", "new")
        path = os.path.join(work, "1600100000.M1P1.elsewhere")
        with open(path, "wb") as f:
            f.write(b"Subject: dropped\nMessage-ID: <dropped@x>\n\nnew/ file\n")
        os.utime(path, (1600100000, 1600100000))
        shutil.chown(path, "mail", "mail")

    def cimap_user(self, login):
        rc, _, err = admin(self.redis.url, "set-user", login, "--password-stdin", "--kdf-cost",
                           TEST_KDF_COST, stdin=b"pass")
        self.assertEqual(rc, 0, err)

    def compare(self, dovecot_user, cimap_user):
        d = Imap(self.dport, dovecot_user, "pass")
        c = Imap(self.cimapd.port, cimap_user, "pass")
        try:
            dboxes, dsubs = snapshot(d)
            cboxes, csubs = snapshot(c)
        finally:
            d.close()
            c.close()
        for name, want in dboxes.items():
            self.assertIn(name, cboxes)
            got = cboxes[name]
            self.assertEqual(got["uidvalidity"], want["uidvalidity"], name)
            self.assertEqual(got["uidnext"], want["uidnext"], name)
            self.assertEqual(sorted(got["messages"]), sorted(want["messages"]), name)
            for uid, (flags, date, body) in want["messages"].items():
                gflags, gdate, gbody = got["messages"][uid]
                self.assertEqual(gflags, flags, "%s UID %d" % (name, uid))
                self.assertEqual(gdate, date, "%s UID %d" % (name, uid))
                self.assertEqual(gbody, body, "%s UID %d" % (name, uid))
        self.assertEqual(dsubs, csubs & set(dsubs) | dsubs)
        return dboxes, cboxes, dsubs, csubs

    def test_1_import_matches_dovecot(self):
        self.cimap_user("test1")
        src = os.path.join(self.dcdir, "mail", "test1")
        # The documented migration step: Dovecot writes dovecot-uidlist lazily.
        subprocess.run(["doveadm", "-c", os.path.join(self.dcdir, "dovecot.conf"), "force-resync",
                        "-u", "test1", "*"], check=True, timeout=60)
        rc, out, err = admin(self.redis.url, "import-maildir", "test1", src)
        self.assertEqual(rc, 0, err)
        self.assertIn("imported 16 messages", out)
        dboxes, cboxes, dsubs, csubs = self.compare("test1", "test1")
        self.assertEqual(sum(len(b["messages"]) for b in dboxes.values()), 16)
        self.assertEqual(len(dboxes["INBOX"]["messages"]), 6)
        self.assertEqual(sorted(dboxes["Work"]["messages"]), [1, 3])  # the new/ file became UID 3
        self.assertIn("Caf&AOk-", cboxes)
        self.assertEqual({"Sent", "Archive/2024", "Caf&AOk-"}, csubs)
        self.assertEqual(dsubs, csubs)

        # Re-running changes nothing.
        rc, out, err = admin(self.redis.url, "import-maildir", "test1", src)
        self.assertEqual(rc, 0, err)
        self.assertIn("imported 0 messages", out)
        self.assertIn("16 already there", out)
        self.compare("test1", "test1")

    def test_2_export_is_served_by_dovecot(self):
        dst = os.path.join(self.dcdir, "mail", "test2")
        rc, out, err = admin(self.redis.url, "export-maildir", "test1", dst)
        self.assertEqual(rc, 0, err)
        self.assertIn("exported 16 messages", out)
        subprocess.run(["chown", "-R", "mail:mail", dst], check=True)
        dboxes, cboxes, dsubs, csubs = self.compare("test2", "test1")
        self.assertEqual(set(dboxes), set(cboxes))
        # Exporting into a non-empty directory is refused.
        rc, _, err = admin(self.redis.url, "export-maildir", "test1", dst)
        self.assertEqual(rc, 73, err)

    def test_3_expunged_in_cimap_stays_expunged(self):
        c = imaplib.IMAP4("127.0.0.1", self.cimapd.port)
        c.login("test1", "pass")
        c.select("Sent")
        c.uid("STORE", "2", "+FLAGS.SILENT", r"(\Deleted)")
        c.expunge()
        c.logout()
        src = os.path.join(self.dcdir, "mail", "test1")
        rc, out, err = admin(self.redis.url, "import-maildir", "test1", src)
        self.assertEqual(rc, 0, err)
        self.assertIn("1 expunged in cimap since", out)
        c = Imap(self.cimapd.port, "test1", "pass")
        try:
            self.assertEqual(sorted(c.mailbox("Sent", "/")["messages"]), [1, 3])
        finally:
            c.close()


class TestFsLayout(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.redis = Redis()
        cls.r = cls.redis.client()

    @classmethod
    def tearDownClass(cls):
        cls.r.close()
        cls.redis.stop()

    def setUp(self):
        self.r.call("FLUSHALL")
        self.tmp = tempfile.mkdtemp(prefix="cimap-fs-")
        rc, _, err = admin(self.redis.url, "set-user", "u", "--password-stdin", "--kdf-cost",
                           TEST_KDF_COST, stdin=b"pw")
        self.assertEqual(rc, 0, err)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def put(self, folder, sub, name, data, mtime):
        d = os.path.join(self.tmp, folder) if folder else self.tmp
        for s in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(d, s), exist_ok=True)
        p = os.path.join(d, sub, name)
        with open(p, "wb") as f:
            f.write(data)
        os.utime(p, (mtime, mtime))
        return p

    def box(self, name):
        ns = self.r.call("HGET", "/users/u", "nsid").decode()
        mid = self.r.call("HGET", "/ns/{%s}/mailboxes" % ns, name).decode()
        key = "/ns/{%s}/mbx/%s" % (ns, mid)
        msgs = {}
        for uid in self.r.call("ZRANGE", key + "/uids", 0, -1):
            rec = self.r.call("HGET", key + "/msg", uid).decode().split()
            raw = self.r.call("GET", "/ns/{%s}/content/%s/raw" % (ns, rec[0]))
            flags = (self.r.call("HGET", key + "/flags", uid) or b"").decode()
            msgs[int(uid)] = (flags, int(rec[1]), raw)
        return self.r.call("HGETALL", key), msgs

    def test_fs_layout_without_uidlist(self):
        self.put("", "cur", "1000.a:2,ST", b"Subject: one\n\n1\n", 1000)
        self.put("", "new", "2000.b", b"Subject: two\n\n2\n", 2000)
        self.put("", "cur", "1500.c:2,FRDP", b"Subject: three\n\n3\n", 1500)
        self.put("Lists/cimap", "cur", "1.x:2,S", b"Subject: four\n\n4\n", 3000)
        big = self.put("Lists", "cur", "2.big:2,", b"Subject: big\n\n" + b"y" * 4000, 4000)
        self.put("Lists", "cur", "3.empty:2,", b"", 4000)
        rc, out, err = admin(self.redis.url, "import-maildir", "--max-size", "1000", "u", self.tmp)
        self.assertEqual(rc, 65, err)
        self.assertIn("skipped: %s: larger than --max-size" % big, err)
        self.assertIn("3.empty:2,: empty file", err)
        self.assertIn("imported 4 messages", out)
        _, inbox = self.box("INBOX")
        # UIDs in file-name order; T is \Deleted, P is $Forwarded; mtime is INTERNALDATE; CRLF.
        self.assertEqual(inbox, {
            1: ("\\Seen \\Deleted", 1000, b"Subject: one\r\n\r\n1\r\n"),
            2: ("\\Answered \\Flagged \\Draft $Forwarded", 1500, b"Subject: three\r\n\r\n3\r\n"),
            3: ("", 2000, b"Subject: two\r\n\r\n2\r\n"),
        })
        rec, lists = self.box("Lists/cimap")
        self.assertEqual(list(lists), [1])
        self.assertEqual(self.r.call("HGET", "/ns/{%s}/mbx/%s" % (
            self.r.call("HGET", "/users/u", "nsid").decode(),
            self.r.call("HGET", "/ns/{%s}/mailboxes" % self.r.call("HGET", "/users/u", "nsid")
                        .decode(), "INBOX").decode()), "deleted"), b"1")
        # Idempotent: the same fresh UIDs again, nothing new; the empty file is still skipped, and
        # the big one's UID was spent by the first run (uidnext moved past it).
        rc, out, err = admin(self.redis.url, "import-maildir", "u", self.tmp)
        self.assertEqual(rc, 65, err)
        self.assertEqual(err.count("skipped:"), 1, err)
        self.assertIn("imported 0 messages", out)
        self.assertIn("4 already there, 1 expunged in cimap since", out)

    def test_progress_on_a_terminal(self):
        for i in range(30):
            self.put("", "cur", "%d.m:2,S" % i, b"Subject: %d\n\nx\n" % i, 1000 + i)
        pid, fd = pty.fork()
        if pid == 0:
            os.execv(CIMAP_ADMIN, [CIMAP_ADMIN, "--redis", self.redis.url, "import-maildir", "u",
                                   self.tmp])
        out = b""
        while True:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0, out)
        self.assertIn(b"30/30 messages", out)
        self.assertIn(b"imported 30 messages", out)

    def test_errors(self):
        self.assertEqual(admin(self.redis.url, "import-maildir", "u")[0], 64)
        self.assertEqual(admin(self.redis.url, "import-maildir", "u", "/nonexistent")[0], 66)
        self.assertEqual(admin(self.redis.url, "import-maildir", "nobody", self.tmp)[0], 67)
        self.assertEqual(admin(self.redis.url, "import-maildir", "u", self.tmp)[0], 66)  # no cur/


if __name__ == "__main__":
    unittest.main()
