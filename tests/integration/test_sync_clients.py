"""Real sync clients from Debian against a real cimapd + Redis (scripts/deps.sh --test installs them):

- mbsync (isync) pushes a local Maildir with several folders, flags and deletions to cimap; then
  both sides change (flags, deletions, new messages on the server through imaplib and locally in
  the Maildir), mbsync syncs again, and a fresh pull into an empty Maildir must come out identical
  to the local copy (mbsync's own X-TUID header aside);
- offlineimap3 downloads every folder;
- getmail6 downloads INBOX.
Each client is skipped with a clear message when it is not installed."""

import imaplib
import os
import re
import shutil
import subprocess
import tempfile
import unittest

import harness

FLAG_LETTERS = {"D": "\\Draft", "F": "\\Flagged", "R": "\\Answered", "S": "\\Seen", "T": "\\Deleted"}


def message(folder, i, extra=""):
    return ("From: Sender %d <s%d@example.org>\r\nTo: demouser@example.org\r\n"
            "Subject: %s %d\r\nMessage-ID: <%s.%d@example.org>\r\n"
            "Date: Mon, 7 Feb 2022 10:%02d:00 +0000\r\n%s\r\nBody of %s %d.\r\n" %
            (i, i, folder, i, folder.replace("/", "."), i, i % 60, extra, folder, i)).encode()


def write_maildir_message(folder_dir, name, data, flags=""):
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(folder_dir, sub), exist_ok=True)
    if flags:
        path = os.path.join(folder_dir, "cur", "%s:2,%s" % (name, "".join(sorted(flags))))
    else:
        path = os.path.join(folder_dir, "new", name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def read_maildir(root):
    """{folder: sorted [(content without X-TUID, flags)]} of a Maildir tree (mbsync Verbatim)."""
    out = {}
    for dirpath, dirnames, _ in os.walk(root):
        if not {"cur", "new", "tmp"} <= set(dirnames):
            continue
        folder = os.path.relpath(dirpath, root)
        items = []
        for sub in ("cur", "new"):
            for name in os.listdir(os.path.join(dirpath, sub)):
                with open(os.path.join(dirpath, sub, name), "rb") as f:
                    data = f.read()
                data = re.sub(rb"(?im)^X-TUID: [^\r\n]*\r?\n", b"", data)
                flags = name.split(":2,", 1)[1] if ":2," in name else ""
                items.append((data.replace(b"\r\n", b"\n"), "".join(sorted(flags))))
        out[folder] = sorted(items)
    return out


def run(argv, cwd=None, timeout=120, env=None):
    p = subprocess.run(argv, cwd=cwd, capture_output=True, timeout=timeout, env=env)
    if p.returncode != 0:
        raise AssertionError("%s exited %d:\n%s\n%s" % (argv[0], p.returncode,
                                                        p.stdout.decode(errors="replace")[-3000:],
                                                        p.stderr.decode(errors="replace")[-3000:]))
    return p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")


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
        self.dir = tempfile.mkdtemp(prefix="cimap-sync-")
        self.env = dict(os.environ, HOME=self.dir)

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def imap(self):
        m = imaplib.IMAP4("127.0.0.1", self.d.port)
        m.login("demouser", "demopass")
        return m

    def server_counts(self):
        m = self.imap()
        out = {}
        for line in m.list()[1]:
            name = line.decode().rsplit(' "/" ', 1)[1].strip('"')
            if "\\Noselect" in line.decode():
                continue
            typ, data = m.status('"%s"' % name, "(MESSAGES)")
            out[name] = int(re.search(rb"MESSAGES (\d+)", data[0]).group(1))
        m.logout()
        return out


class TestMbsync(Base):
    def config(self, name, local):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write("""IMAPAccount cimap
Host 127.0.0.1
Port %d
User demouser
Pass demopass
SSLType None
AuthMechs LOGIN
Timeout 60

IMAPStore remote
Account cimap

MaildirStore local
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns *
Create Both
Remove None
Expunge Both
SyncState *
CopyArrivalDate yes
""" % (self.d.port, local, local))
        return path

    def mbsync(self, conf):
        return run(["mbsync", "-c", conf, "-a"], env=self.env)

    def test_push_change_both_sides_and_pull(self):
        if shutil.which("mbsync") is None:
            self.skipTest("mbsync not installed (scripts/deps.sh --test installs isync)")
        local = os.path.join(self.dir, "local")
        folders = {"INBOX": 6, "Work": 5, "Work/Reports": 4, "Lists": 3}
        flags = ["", "S", "SF", "R", "D", "SR"]
        for folder, n in folders.items():
            for i in range(n):
                name = "%d.%d_%s.host" % (1644000000 + i, i, folder.replace("/", "-"))
                write_maildir_message(os.path.join(local, folder), name, message(folder, i),
                                      flags[i % len(flags)])
        # A local message already trashed, and one removed before the first sync: neither arrives.
        trashed = write_maildir_message(os.path.join(local, "Work"), "1644009999.9.host",
                                        message("Work", 99), "ST")
        conf = self.config("mbsyncrc", local)
        base = self.server_counts()  # the demo user's own mail comes down too
        self.mbsync(conf)
        self.assertFalse(os.path.exists(trashed))
        counts = self.server_counts()
        for folder, n in folders.items():
            self.assertEqual(counts[folder], base.get(folder, 0) + n, folder)

        # The server side changes: flags, a deletion, a new message, a move between folders.
        m = self.imap()
        m.select("Work")
        m.store("1", "+FLAGS", "(\\Flagged)")
        m.store("2", "-FLAGS", "(\\Seen)")
        m.store("3", "+FLAGS", "(\\Deleted)")
        m.expunge()
        m.append("Lists", "(\\Seen)", None, message("Lists", 50))
        m.select("INBOX")
        typ, _ = m.uid("MOVE", "1", "Lists")
        self.assertEqual(typ, "OK")
        m.copy("2", "Work/Reports")
        m.logout()
        # ... and the local side: flags, a deletion, a new message.
        inbox_cur = os.path.join(local, "INBOX", "cur")
        names = sorted(os.listdir(inbox_cur))
        victim = os.path.join(inbox_cur, names[-1])
        os.unlink(victim)
        first = os.path.join(inbox_cur, names[0])
        stem, fl = first.split(":2,")
        os.rename(first, stem + ":2," + "".join(sorted(set(fl + "FS"))))
        write_maildir_message(os.path.join(local, "Work", "Reports"), "1644100000.1.host",
                              message("Work/Reports", 60))
        self.mbsync(conf)
        self.mbsync(conf)  # a second run changes nothing

        # A fresh pull must be identical to the local copy.
        fresh = os.path.join(self.dir, "fresh")
        os.makedirs(fresh)
        conf2 = self.config("mbsyncrc2", fresh)
        self.mbsync(conf2)
        a, b = read_maildir(local), read_maildir(fresh)
        self.assertEqual(sorted(a), sorted(b))
        for folder in a:
            self.assertEqual(a[folder], b[folder], folder)
        self.assertEqual(len(a["Work"]), base.get("Work", 0) + 4)
        self.assertEqual(len(a["Lists"]), base.get("Lists", 0) + 5)
        self.assertEqual(len(a["Work/Reports"]), base.get("Work/Reports", 0) + 6)
        self.assertEqual(len(a["INBOX"]), base["INBOX"] + 6 - 2)
        # The server agrees on the counts.
        counts = self.server_counts()
        for folder in a:
            self.assertEqual(counts[folder], len(a[folder]), folder)


class TestDownloaders(Base):
    def fill_server(self):
        m = self.imap()
        m.create("Archive")
        for i in range(7):
            m.append("INBOX", "(\\Seen)" if i % 2 else None, None, message("INBOX", 100 + i))
        for i in range(4):
            m.append("Archive", None, None, message("Archive", i))
        m.logout()
        return self.server_counts()

    def test_offlineimap(self):
        if shutil.which("offlineimap") is None:
            self.skipTest("offlineimap not installed (scripts/deps.sh --test installs offlineimap3)")
        counts = self.fill_server()
        local = os.path.join(self.dir, "oi")
        conf = os.path.join(self.dir, "offlineimaprc")
        with open(conf, "w") as f:
            f.write("""[general]
accounts = cimap
metadata = %s/meta
ui = quiet

[Account cimap]
localrepository = local
remoterepository = remote

[Repository local]
type = Maildir
localfolders = %s

[Repository remote]
type = IMAP
remotehost = 127.0.0.1
remoteport = %d
remoteuser = demouser
remotepass = demopass
ssl = no
starttls = no
""" % (self.dir, local, self.d.port))
        out = run(["offlineimap", "-c", conf, "-o", "-u", "quiet"], env=self.env, timeout=300)
        got = {}
        for dirpath, dirnames, _ in os.walk(local):
            if {"cur", "new"} <= set(dirnames):
                got[os.path.relpath(dirpath, local).replace(".", "/")] = sum(
                    len(os.listdir(os.path.join(dirpath, s))) for s in ("cur", "new"))
        self.assertEqual(got, counts, out)
        # Seen messages arrive as Seen.
        seen = [n for n in os.listdir(os.path.join(local, "INBOX", "cur"))
                if re.search(r":2,[A-Z]*S", n)]
        self.assertGreaterEqual(len(seen), 3)

    def test_getmail(self):
        exe = shutil.which("getmail") or shutil.which("getmail6")
        if exe is None:
            self.skipTest("getmail not installed (scripts/deps.sh --test installs getmail6)")
        counts = self.fill_server()
        dest = os.path.join(self.dir, "gm")
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(dest, sub))
        user = ""
        if os.geteuid() == 0:  # getmail refuses to deliver as root: deliver as nobody
            user = "user = nobody\n"
            for p in [self.dir, dest] + [os.path.join(dest, s) for s in ("cur", "new", "tmp")]:
                os.chmod(p, 0o777)
        rc = os.path.join(self.dir, "getmailrc")
        with open(rc, "w") as f:
            f.write("""[retriever]
type = SimpleIMAPRetriever
server = 127.0.0.1
port = %d
username = demouser
password = demopass
mailboxes = ("INBOX", "Archive")

[destination]
type = Maildir
path = %s/

%s
[options]
read_all = false
delete = false
verbose = 0
""" % (self.d.port, dest, user))
        run([exe, "--rcfile", rc, "--getmaildir", self.dir], env=self.env)
        got = len(os.listdir(os.path.join(dest, "new")))
        self.assertEqual(got, counts["INBOX"] + counts["Archive"])
        # Downloading again fetches nothing new (getmail remembers UIDs).
        run([exe, "--rcfile", rc, "--getmaildir", self.dir], env=self.env)
        self.assertEqual(len(os.listdir(os.path.join(dest, "new"))), got)


if __name__ == "__main__":
    unittest.main()
