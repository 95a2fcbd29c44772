#!/usr/bin/env python3
"""cimap-admin operations (issue 9): health, keys, stats, fsck (check and --repair), gc, the
--json outputs, and users migrated from a Dovecot passwd-file logging in to cimapd.

    CIMAP_ADMIN=build/cimap-admin CIMAPD=build/cimapd python3 -m unittest -v test_admin_ops
"""
import json
import os
import subprocess
import time
import unittest

from harness import CIMAP_ADMIN, TEST_KDF_COST, Cimapd, Raw, Redis

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")

# Made by Dovecot 2.3's "doveadm pw -p pass -s <scheme>".
DOVECOT_HASHES = {
    "sha512": "{SHA512-CRYPT}$6$L/OVkHRDXqply7FZ$VV5/G6zEFIcqZrdfiGjdCKFyx8lZWyzOkSjZuXfAmzWalgPm"
              "t9NO7AsBUzPR.U1jr4UjkDn4Mar3mZn/cmrvF/",
    "blf": "{BLF-CRYPT}$2y$05$y8lSGJ7CNBeFXBVjaXGvf.51.QrLP6KOJbYmUVcI3VfP.ilXDigou",
    "sha256": "{SHA256-CRYPT}$5$A/RXreaou8BxyN/l$0C76zWYE.7JEZbD6ovTcXkMfM8SoZtdGrVxMjKSqoI9",
    "pbkdf2": "{PBKDF2}$1$8A3DWhoj54XzDlPS$5000$a19aada18bda34574b44a9d094b7299fbf520170",
    "plain": "{PLAIN}pass",
}


def admin(redis_url, *args, stdin=b""):
    p = subprocess.run([CIMAP_ADMIN, "--redis", redis_url] + list(args), input=stdin,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    err = p.stderr.decode(errors="replace")
    for mark in SANITIZER_MARKS:
        assert mark not in err, err
    return p.returncode, p.stdout.decode(), err


class OpsCase(unittest.TestCase):
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
        self.r.call("CONFIG", "SET", "maxmemory-policy", "noeviction")
        rc, _, err = admin(self.redis.url, "set-user", "ann", "--password-stdin", "--kdf-cost",
                           TEST_KDF_COST, stdin=b"pw")
        self.assertEqual(rc, 0, err)

    def deliver(self, n, mailbox="INBOX", flags=()):
        for i in range(n):
            args = ["append", "--mailbox", mailbox, "--dedupe-ttl", "0"]
            for f in flags:
                args += ["--flag", f]
            rc, _, err = admin(self.redis.url, *args, "ann",
                               stdin=b"Subject: %d\n\nbody %d %s\n" % (i, i, mailbox.encode()))
            self.assertEqual(rc, 0, err)

    def json_of(self, *args, rc=0):
        code, out, err = admin(self.redis.url, *args)
        self.assertEqual(code, rc, err)
        return json.loads(out)

    def nsid(self):
        return self.r.call("HGET", "/users/ann", "nsid").decode()

    def mbx(self, name="INBOX"):
        ns = self.nsid()
        return "/ns/{%s}/mbx/%s" % (ns, self.r.call("HGET", "/ns/{%s}/mailboxes" % ns, name).decode())


class TestHealth(OpsCase):
    def test_health_text_and_json(self):
        rc, out, err = admin(self.redis.url, "health")
        self.assertEqual(rc, 0, err)
        self.assertIn("policy noeviction", out)
        h = self.json_of("health", "--json")
        self.assertTrue(h["reachable"] and h["healthy"])
        self.assertEqual(h["maxmemory_policy"], "noeviction")
        self.assertIn("redis_version", h)
        self.assertEqual(h["scripts"]["total"], h["scripts"]["loaded"] + len(h["scripts"]["missing"]))
        self.assertEqual(h["frontends_subscribed"], 0)

    def test_misconfigured_and_unreachable(self):
        self.r.call("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
        rc, out, err = admin(self.redis.url, "health")
        self.assertEqual(rc, 1, err)
        self.assertIn("PROBLEM", out)
        self.assertFalse(self.json_of("health", "--json", rc=1)["healthy"])
        self.r.call("CONFIG", "SET", "maxmemory-policy", "noeviction")
        code, out, err = admin("redis://127.0.0.1:1", "health", "--json")
        self.assertEqual(code, 75)
        self.assertEqual(json.loads(out), {"reachable": False})

    def test_sees_live_front_ends(self):
        d = Cimapd(self.redis.url, demo=False)
        try:
            deadline = time.monotonic() + 15
            h = None
            while time.monotonic() < deadline:
                h = self.json_of("health", "--json")
                if h["frontends_subscribed"] >= 1 and h["schema"] is not None:
                    break
                time.sleep(0.2)
            self.assertGreaterEqual(h["frontends_subscribed"], 1, h)
            self.assertEqual(h["schema"], h["schema_supported"])
            self.assertEqual(h["scripts"]["missing"], [])  # cimapd loads every script
        finally:
            self.assertEqual(d.stop(), 0, d.log_text())
            d.cleanup()


class TestInspection(OpsCase):
    def test_keys_exist(self):
        self.deliver(2)
        rc, out, err = admin(self.redis.url, "keys", "ann")
        self.assertEqual(rc, 0, err)
        listed = [l.split("\t")[0] for l in out.splitlines()]
        self.assertIn("/users/ann", listed)
        for k in listed:
            if "*" not in k and not k.endswith("/channel") and "/gc" not in k and \
                    "/trash" not in k and "/copies" not in k and "/subscriptions" not in k and \
                    "/threads" not in k:
                self.assertEqual(self.r.call("EXISTS", k), 1, k)
        rc, out, err = admin(self.redis.url, "keys", "ann", "inbox")
        self.assertEqual(rc, 0, err)
        for k in [l.split("\t")[0] for l in out.splitlines()][:4]:
            self.assertEqual(self.r.call("EXISTS", k), 1, k)
        rc, out, err = admin(self.redis.url, "keys", "ann", "INBOX", "2")
        self.assertEqual(rc, 0, err)
        lines = [l.split("\t")[0] for l in out.splitlines()]
        key, field = lines[0].split(" ")
        self.assertIsNotNone(self.r.call("HGET", key, field))
        self.assertTrue(self.r.call("GET", lines[3]).startswith(b"Subject: 1"))
        self.assertEqual(admin(self.redis.url, "keys", "ann", "INBOX", "9")[0], 65)
        self.assertEqual(admin(self.redis.url, "keys", "ann", "Nope")[0], 65)
        self.assertEqual(admin(self.redis.url, "keys", "bob")[0], 67)

    def test_stats(self):
        self.deliver(3)
        self.deliver(2, "Sent", flags=("\\Seen", "\\Deleted"))
        s = self.json_of("stats", "--json", "ann")
        self.assertEqual(s["messages"], 5)
        boxes = {b["name"]: b for b in s["mailboxes"]}
        self.assertEqual(boxes["INBOX"]["messages"], 3)
        self.assertEqual(boxes["INBOX"]["unseen"], 3)
        self.assertEqual((boxes["Sent"]["unseen"], boxes["Sent"]["deleted"]), (0, 2))
        self.assertEqual(boxes["Sent"]["specialuse"], "\\Sent")
        self.assertEqual(boxes["INBOX"]["uidnext"], 4)
        rc, out, err = admin(self.redis.url, "stats", "ann")
        self.assertEqual(rc, 0, err)
        self.assertIn("INBOX", out)

    def test_user_json(self):
        admin(self.redis.url, "set-user", "ann", "--keep-password", "--param", "quota=5")
        u = self.json_of("get-user", "--json", "ann")
        self.assertEqual(u["login"], "ann")
        self.assertEqual(u["state"], "active")
        self.assertEqual(u["params"], {"quota": "5"})
        self.assertNotIn("password", u)
        self.assertIn("password", self.json_of("get-user", "--json", "--show-hash", "ann"))
        self.assertEqual(self.json_of("list-users", "--json"), ["ann"])


class TestFsck(OpsCase):
    def fsck(self, *extra, rc=0):
        return self.json_of("fsck", "--json", *extra, "ann", rc=rc)

    def test_clean_then_damaged_then_repaired(self):
        self.deliver(6)
        self.deliver(2, "Sent", flags=("\\Seen",))
        report = self.fsck()
        self.assertTrue(report["ok"])
        self.assertEqual(report["problem_count"], 0)

        m, ns = self.mbx(), self.nsid()
        sha = self.r.call("HGET", m + "/msg", 3).split()[0].decode()
        self.r.call("HSET", m, "messages", 99, "unseen", 1, "uidnext", 5)
        self.r.call("ZREM", m + "/unseen", 2)
        self.r.call("ZADD", m + "/deleted", 4, 4)
        self.r.call("ZREM", m + "/uids", 5)
        self.r.call("DEL", m + "/runs")
        self.r.call("ZADD", m + "/runs", 100, "100:100")
        self.r.call("HSET", m + "/flags", 77, "\\Seen")
        self.r.call("HINCRBY", "/ns/{%s}/content/%s" % (ns, sha), "refs", 3)
        self.r.call("HSET", "/ns/{%s}/meta" % ns, "messages", 1000)
        # A column cache built before the damage (frontend/colcache.h) contradicts the repair.
        self.r.call("SET", m + "/cache/f/0", "c1 f 0 1 6\n1 5\n\\Seen")
        self.r.call("SET", m + "/cache/m/0", "c1 m 0 1 6\n")

        hms_before = int(self.r.call("HGET", m, "highestmodseq"))
        rc, out, err = admin(self.redis.url, "fsck", "ann")
        self.assertEqual(rc, 1, err)
        self.assertIn("run with --repair", out)
        report = self.fsck(rc=1)
        self.assertFalse(report["ok"])
        text = "\n".join(p["problem"] for p in report["problems"])
        for want in ("counter messages is 99", "unseen index", "deleted index", "uids", "runs",
                     "uidnext 5", "flags: 1 entries", "refs 4, should be 1", "user totals"):
            self.assertIn(want, text)

        report = self.fsck("--repair")
        self.assertTrue(report["ok"])
        self.assertGreater(report["problem_count"], 0)
        self.assertTrue(all(p["repaired"] for p in report["problems"]))
        self.assertEqual(self.fsck()["problem_count"], 0)
        self.assertEqual(self.r.keys(m + "/cache/*"), set())  # dropped by the repair
        # Sessions resynchronise and older snapshots cannot become caches: the modseq moved.
        self.assertGreater(int(self.r.call("HGET", m, "highestmodseq")), hms_before)
        self.assertEqual(int(self.r.call("HGET", m, "messages")), 6)
        self.assertEqual(int(self.r.call("HGET", m, "uidnext")), 7)
        self.assertEqual(self.r.call("ZRANGE", m + "/runs", 0, -1), [b"1:6"])
        self.assertEqual(int(self.r.call("HGET", "/ns/{%s}/meta" % ns, "messages")), 8)

        # The repaired mailbox works for IMAP clients.
        d = Cimapd(self.redis.url, demo=False)
        try:
            c = Raw(d.port)
            c.line()
            c.send("a LOGIN ann pw\r\nb SELECT INBOX\r\n")
            lines = c.until_tagged("b")
            self.assertIn("* 6 EXISTS", lines)
            c.send("c UID SEARCH UNSEEN\r\n")
            self.assertIn("* SEARCH 1 2 3 4 5 6", c.until_tagged("c"))
            c.close()
        finally:
            self.assertEqual(d.stop(), 0, d.log_text())
            d.cleanup()

    def test_unreferenced_content_joins_gc(self):
        self.deliver(1)
        ns = self.nsid()
        m = self.mbx()
        sha = self.r.call("HGET", m + "/msg", 1).split()[0].decode()
        # A message record lost (e.g. hand-deleted): its content is now unreferenced.
        self.r.call("HDEL", m + "/msg", 1)
        report = self.fsck("--repair")
        self.assertTrue(report["ok"])
        self.assertIsNotNone(self.r.call("ZSCORE", "/ns/{%s}/gc" % ns, sha))
        self.assertEqual(int(self.r.call("HGET", "/ns/{%s}/content/%s" % (ns, sha), "refs")), 0)
        self.assertEqual(self.fsck()["problem_count"], 0)


class TestGc(OpsCase):
    def test_gc_reclaims_content_and_finishes_purges(self):
        self.deliver(3)
        self.deliver(4, "Sent")
        ns = self.nsid()
        d = Cimapd(self.redis.url, demo=False)
        try:
            c = Raw(d.port)
            c.line()
            c.send("a LOGIN ann pw\r\nb SELECT INBOX\r\nc UID STORE 1:2 +FLAGS.SILENT (\\Deleted)\r\n"
                   "d EXPUNGE\r\n")
            self.assertIn("d OK", c.until_tagged("d")[-1])
            c.close()
        finally:
            self.assertEqual(d.stop(), 0, d.log_text())
            d.cleanup()
        self.assertEqual(self.r.call("ZCARD", "/ns/{%s}/gc" % ns), 2)
        # A front end killed in the middle of DELETE: the mailbox is in the trash, unpurged.
        sent = self.mbx("Sent")
        mbxid = sent.rsplit("/", 1)[1]
        with open(os.path.join(ROOT, "lua", "mbx_delete.lua")) as f:
            script = f.read()
        self.r.call("EVAL", script, 6, "/ns/{%s}/meta" % ns, "/ns/{%s}/mailboxes" % ns, sent,
                    sent + "/log", "/ns/{%s}/channel" % ns, "/ns/{%s}/trash" % ns, "Sent", mbxid)
        self.assertEqual(self.r.call("SCARD", "/ns/{%s}/trash" % ns), 1)

        # Within the grace period nothing is reclaimed, but the purge finishes.
        g = self.json_of("gc", "--json", "ann")
        self.assertEqual((g["contents_deleted"], g["mailboxes_purged"], g["messages_released"]),
                         (0, 1, 4))
        self.assertEqual(self.r.call("SCARD", "/ns/{%s}/trash" % ns), 0)
        self.assertEqual(self.r.keys(sent + "*"), set())
        self.assertEqual(self.r.call("ZCARD", "/ns/{%s}/gc" % ns), 6)
        g = self.json_of("gc", "--json", "--grace", "0")
        self.assertEqual(g["contents_deleted"], 6)
        self.assertEqual(g["namespaces"], 1)
        self.assertEqual(len(self.r.keys("/ns/{%s}/content/*" % ns)), 2)  # INBOX 3 and 4
        self.assertEqual(self.json_of("fsck", "--json", "ann")["problem_count"], 0)
        rc, out, err = admin(self.redis.url, "gc")
        self.assertEqual(rc, 0, err)
        self.assertIn("0 contents deleted", out)


class TestDovecotPasswords(OpsCase):
    def test_import_users_and_login(self):
        path = os.path.join(self.redis.dir, "passwd")
        with open(path, "w") as f:
            f.write("# a Dovecot passwd-file\n\n")
            for login, h in DOVECOT_HASHES.items():
                f.write("%s:%s:1000:1000::/home/%s::userdb_quota_rule=*:storage=1G\n"
                        % (login, h, login))
            f.write("broken:{SSHA}abc::::\nnopass:::::\nbad login:{PLAIN}x\n")
        rc, out, err = admin(self.redis.url, "import-users", "--kdf-cost", TEST_KDF_COST, path)
        self.assertEqual(rc, 65, err)
        self.assertIn("5 created, 0 updated, 3 skipped", out)
        self.assertEqual(self.r.call("HGET", "/users/sha512", "password").decode(),
                         DOVECOT_HASHES["sha512"])
        self.assertTrue(self.r.call("HGET", "/users/plain", "password").startswith(b"$pbkdf2"))
        for login in DOVECOT_HASHES:
            self.assertEqual(admin(self.redis.url, "check-user", "--password-stdin", login,
                                   stdin=b"pass")[0], 0, login)
            self.assertEqual(admin(self.redis.url, "check-user", "--password-stdin", login,
                                   stdin=b"wrong")[0], 1, login)
        # Importing again updates; the mail stays.
        rc, out, err = admin(self.redis.url, "import-users", path)
        self.assertIn("0 created, 5 updated", out)
        # set-user --password-hash: checked before it is stored.
        self.assertEqual(admin(self.redis.url, "set-user", "x", "--password-hash",
                               "{SHA512-CRYPT}$6$broken")[0], 64)
        rc, _, err = admin(self.redis.url, "set-user", "x", "--password-hash",
                           DOVECOT_HASHES["blf"])
        self.assertEqual(rc, 0, err)

        d = Cimapd(self.redis.url, demo=False)
        try:
            for login in ("sha512", "blf", "pbkdf2", "x"):
                c = Raw(d.port)
                c.line()
                c.send("a LOGIN %s pass\r\n" % login)
                self.assertIn("a OK", c.until_tagged("a")[-1], login)
                c.close()
            c = Raw(d.port)
            c.line()
            c.send("a LOGIN sha256 nope\r\n")
            self.assertIn("a NO", c.until_tagged("a")[-1])
            c.close()
        finally:
            self.assertEqual(d.stop(), 0, d.log_text())
            d.cleanup()


if __name__ == "__main__":
    unittest.main()
