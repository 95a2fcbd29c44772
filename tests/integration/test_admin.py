#!/usr/bin/env python3
"""Integration tests for cimap-admin's user commands against a private redis-server.

Starts redis-server on a free loopback port (no persistence), runs the cimap-admin binary
(env CIMAP_ADMIN, else build/cimap-admin) and inspects Redis with a small RESP client of its own.
Python 3 standard library only.

    CIMAP_ADMIN=build/cimap-admin python3 tests/integration/test_admin.py -v
"""
import os
import pty
import select
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ADMIN = os.environ.get("CIMAP_ADMIN", os.path.join(ROOT, "build", "cimap-admin"))
REDIS_SERVER = os.environ.get("REDIS_SERVER", shutil.which("redis-server") or "redis-server")
KDF = ["--kdf-cost", "1000"]  # fast hashing: this tests the tool, not PBKDF2

EX_OK, EX_MISMATCH, EX_USAGE, EX_NOUSER, EX_CANTCREAT, EX_TEMPFAIL = 0, 1, 64, 67, 73, 75
SANITIZER_MARKS = (b"AddressSanitizer", b"LeakSanitizer", b"runtime error:", b"UndefinedBehavior")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisError(Exception):
    pass


class Resp:
    """A minimal blocking RESP2 client: enough to inspect and prepare the keyspace."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""

    def close(self):
        self.sock.close()

    @staticmethod
    def encode(args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, str):
                a = a.encode()
            elif isinstance(a, int):
                a = str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise ValueError("bad RESP line %r" % line)

    def call(self, *args):
        self.sock.sendall(self.encode(args))
        r = self._reply()
        if isinstance(r, RedisError):
            raise r
        return r

    def pipeline(self, commands):
        self.sock.sendall(b"".join(self.encode(c) for c in commands))
        return [self._reply() for _ in commands]

    def keys(self, pattern):
        found, cursor = set(), b"0"
        while True:
            cursor, batch = self.call("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
            found.update(k.decode() for k in batch)
            if cursor == b"0":
                return found

    def hgetall(self, key):
        flat = self.call("HGETALL", key)
        return {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}


class AdminTestCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.access(ADMIN, os.X_OK):
            raise unittest.SkipTest("cimap-admin not found at %s (set CIMAP_ADMIN)" % ADMIN)
        cls.tmp = tempfile.mkdtemp(prefix="cimap-admin-test-")
        cls.port = free_port()
        cls.redis = subprocess.Popen(
            [REDIS_SERVER, "--port", str(cls.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", cls.tmp, "--maxmemory-policy", "noeviction"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                cls.r = Resp(cls.port)
                cls.r.call("PING")
                break
            except (OSError, RedisError):
                if time.monotonic() > deadline or cls.redis.poll() is not None:
                    cls.tearDownClass()
                    raise
                time.sleep(0.05)
        cls.url = "redis://127.0.0.1:%d" % cls.port

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "r", None) is not None:
            cls.r.close()
        cls.redis.terminate()
        cls.redis.wait(10)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.r.call("FLUSHALL")

    def admin(self, *args, password=None, stdin=None, url=None, env=None):
        """Runs cimap-admin --redis URL ARGS; password goes to stdin (with a newline)."""
        if password is not None:
            stdin = (password.encode() if isinstance(password, str) else password) + b"\n"
        full_env = dict(os.environ)
        full_env.pop("CIMAP_REDIS", None)
        full_env.update(env or {})
        cmd = [ADMIN] + (["--redis", url or self.url] if url != "" else []) + list(args)
        p = subprocess.run(cmd, input=stdin if stdin is not None else b"",
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env,
                           timeout=60)
        for mark in SANITIZER_MARKS:
            self.assertNotIn(mark, p.stderr, p.stderr.decode(errors="replace"))
        # Every error is one clear line on stderr.
        self.assertLessEqual(p.stderr.count(b"\n"), 1, p.stderr)
        if p.returncode != 0:
            self.assertTrue(p.stderr.startswith(b"cimap-admin: "), p.stderr)
        return p

    def set_user(self, login, password, *extra):
        p = self.admin("set-user", login, "--password-stdin", *KDF, *extra, password=password)
        self.assertEqual(p.returncode, EX_OK, p.stderr)
        return p

    def check(self, login, password):
        return self.admin("check-user", login, "--password-stdin", password=password).returncode

    def get_user(self, login, *extra):
        p = self.admin("get-user", login, *extra)
        self.assertEqual(p.returncode, EX_OK, p.stderr)
        lines = p.stdout.decode().splitlines()
        return dict(line.split("=", 1) for line in lines), lines

    def ns_keys(self, nsid):
        return self.r.keys("/ns/{%s}/*" % nsid)

    def fill_namespace(self, nsid, n):
        cmds = [("SET", "/ns/{%s}/mbx/x/msg/%d" % (nsid, i), "v") for i in range(n)]
        cmds.append(("HSET", "/ns/{%s}/mbx/x" % nsid, "name", "INBOX"))
        for reply in self.r.pipeline(cmds):
            self.assertNotIsInstance(reply, RedisError)


class TestUsers(AdminTestCase):
    def test_set_get_check(self):
        p = self.set_user("alice", "s3cret", "--param", "quota=100")
        self.assertIn(b"created user alice", p.stdout)
        rec, lines = self.get_user("alice")
        self.assertEqual(lines[0], "login=alice")
        self.assertEqual(rec["state"], "active")
        self.assertRegex(rec["nsid"], r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
        self.assertGreater(int(rec["created"]), 1600000000)
        self.assertEqual(rec["param:quota"], "100")
        self.assertNotIn("password", rec)

        raw = self.r.hgetall("/users/alice")
        self.assertEqual(set(raw), {"nsid", "password", "state", "created", "param:quota"})
        self.assertTrue(raw["password"].startswith("$pbkdf2-sha256$i=1000$"))
        self.assertNotIn("s3cret", raw["password"])
        meta = self.r.hgetall("/ns/{%s}/meta" % rec["nsid"])
        self.assertEqual(meta["login"], "alice")

        hashed, _ = self.get_user("alice", "--show-hash")
        self.assertEqual(hashed["password"], raw["password"])

        self.assertEqual(self.check("alice", "s3cret"), EX_OK)
        self.assertEqual(self.check("alice", "s3cret "), EX_MISMATCH)
        self.assertEqual(self.check("alice", "S3cret"), EX_MISMATCH)
        self.assertEqual(self.check("nobody", "s3cret"), EX_NOUSER)
        self.assertEqual(self.admin("get-user", "nobody").returncode, EX_NOUSER)

    def test_default_cost(self):
        p = self.admin("set-user", "dflt", "--password-stdin", password="pw")
        self.assertEqual(p.returncode, EX_OK, p.stderr)
        self.assertTrue(self.r.hgetall("/users/dflt")["password"].startswith(
            "$pbkdf2-sha256$i=100000$"))
        self.assertEqual(self.check("dflt", "pw"), EX_OK)

    def test_update_password(self):
        self.set_user("bob", "old-password")
        before, _ = self.get_user("bob")
        p = self.set_user("bob", "new-password")
        self.assertIn(b"updated user bob", p.stdout)
        after, _ = self.get_user("bob")
        self.assertEqual(before["nsid"], after["nsid"])
        self.assertEqual(before["created"], after["created"])
        self.assertEqual(self.check("bob", "new-password"), EX_OK)
        self.assertEqual(self.check("bob", "old-password"), EX_MISMATCH)
        # Exactly one namespace: an update never makes a new one. (It holds the default
        # mailboxes too: /mailboxes and one hash per mailbox.)
        keys = self.r.keys("/ns/*")
        self.assertIn("/ns/{%s}/meta" % after["nsid"], keys)
        self.assertTrue(all(k.startswith("/ns/{%s}/" % after["nsid"]) for k in keys), keys)

    def test_params_round_trip(self):
        self.set_user("carol", "pw", "--param", "quota=5G", "--param", "display-name=Carol C. Ä",
                      "--param", "x.y_z=a=b", "--param", "dup=1", "--param", "dup=2")
        rec, lines = self.get_user("carol")
        self.assertEqual(rec["param:quota"], "5G")
        self.assertEqual(rec["param:display-name"], "Carol C. Ä")
        self.assertEqual(rec["param:x.y_z"], "a=b")
        self.assertEqual(rec["param:dup"], "2")
        params = [line.split("=", 1)[0] for line in lines if line.startswith("param:")]
        self.assertEqual(params, sorted(params))

        p = self.admin("set-user", "carol", "--keep-password", "--param", "quota=", "--param",
                       "new=1")
        self.assertEqual(p.returncode, EX_OK, p.stderr)
        rec, _ = self.get_user("carol")
        self.assertNotIn("param:quota", rec)
        self.assertEqual(rec["param:new"], "1")
        self.assertEqual(self.check("carol", "pw"), EX_OK)  # --keep-password kept it

        p = self.admin("set-user", "nobody", "--keep-password", "--param", "a=1")
        self.assertEqual(p.returncode, EX_NOUSER)
        self.assertEqual(self.r.keys("/users/nobody"), set())

    def test_password_with_nul_and_length(self):
        self.set_user("nul", b"a\x00b")
        self.assertEqual(self.check("nul", b"a\x00b"), EX_OK)
        self.assertEqual(self.check("nul", b"a"), EX_MISMATCH)
        self.assertEqual(self.check("nul", b"a\x00c"), EX_MISMATCH)
        # Only one trailing newline is removed; \r\n counts as one.
        self.set_user("crlf", b"pw\r")
        self.assertEqual(self.check("crlf", b"pw"), EX_OK)
        self.set_user("long", b"p" * 1024)
        self.assertEqual(self.check("long", b"p" * 1024), EX_OK)
        p = self.admin("set-user", "toolong", "--password-stdin", *KDF, password=b"p" * 1025)
        self.assertEqual(p.returncode, EX_USAGE)
        p = self.admin("set-user", "multi", "--password-stdin", *KDF, stdin=b"a\nb\n")
        self.assertEqual(p.returncode, EX_USAGE)
        p = self.admin("set-user", "empty", "--password-stdin", *KDF, stdin=b"\n")
        self.assertEqual(p.returncode, EX_USAGE)
        self.assertEqual(self.r.keys("/users/*"), {"/users/nul", "/users/crlf", "/users/long"})

    def test_list_users(self):
        self.assertEqual(self.admin("list-users").stdout, b"")
        for login in ["zed", "alice", "Bob", "a.b@example.org", "x+tag"]:
            self.set_user(login, "pw")
        self.r.call("SET", "/users/not valid", "x")  # a hand-made key that is no login record
        p = self.admin("list-users")
        self.assertEqual(p.returncode, EX_OK, p.stderr)
        self.assertEqual(p.stdout.decode().splitlines(),
                         sorted(["zed", "alice", "Bob", "a.b@example.org", "x+tag"]))

    def test_many_users_listed(self):
        nsid = "0" * 8 + "-0000-4000-8000-" + "0" * 12
        self.r.pipeline([("HSET", "/users/u%04d" % i, "nsid", nsid, "state", "active")
                         for i in range(2500)])
        p = self.admin("list-users")
        self.assertEqual(p.stdout.decode().splitlines(), ["u%04d" % i for i in range(2500)])

    def test_noscript_fallback(self):
        self.r.call("SCRIPT", "FLUSH")
        self.set_user("flushed", "pw")
        self.r.call("SCRIPT", "FLUSH")
        self.assertEqual(self.admin("delete-user", "flushed").returncode, EX_OK)

    def test_select_db(self):
        p = self.admin("set-user", "dbuser", "--password-stdin", *KDF, password="pw",
                       url=self.url + "/3")
        self.assertEqual(p.returncode, EX_OK, p.stderr)
        self.assertEqual(self.r.keys("/users/*"), set())
        self.r.call("SELECT", 3)
        try:
            self.assertEqual(self.r.keys("/users/*"), {"/users/dbuser"})
        finally:
            self.r.call("SELECT", 0)

    def test_env_url(self):
        p = self.admin("set-user", "envuser", "--password-stdin", *KDF, password="pw", url="",
                       env={"CIMAP_REDIS": self.url})
        self.assertEqual(p.returncode, EX_OK, p.stderr)
        self.assertEqual(self.r.keys("/users/*"), {"/users/envuser"})


class TestDelete(AdminTestCase):
    def test_delete_user(self):
        self.set_user("dave", "pw")
        self.set_user("erin", "pw")
        dave = self.get_user("dave")[0]["nsid"]
        erin = self.get_user("erin")[0]["nsid"]
        self.fill_namespace(dave, 1234)
        self.fill_namespace(erin, 10)
        # 1,234 filler keys, meta, the mailboxes hash and the 6 default mailboxes
        self.assertEqual(len(self.ns_keys(dave)), 1243)

        p = self.admin("delete-user", "dave")
        self.assertEqual(p.returncode, EX_OK, p.stderr)
        self.assertIn(b"deleted user dave", p.stdout)
        self.assertEqual(self.ns_keys(dave), set())
        self.assertEqual(self.r.keys("/users/dave"), set())
        self.assertEqual(len(self.ns_keys(erin)), 19)  # the neighbour is untouched (10 + 9)
        self.assertEqual(self.check("erin", "pw"), EX_OK)

        self.assertEqual(self.check("dave", "pw"), EX_NOUSER)
        self.assertEqual(self.admin("delete-user", "dave").returncode, EX_NOUSER)
        self.assertEqual(self.admin("get-user", "dave").returncode, EX_NOUSER)

        # The login can be created again, with a fresh namespace.
        self.set_user("dave", "pw2")
        self.assertNotEqual(self.get_user("dave")[0]["nsid"], dave)

    def test_delete_resumes_after_crash(self):
        self.set_user("frank", "pw")
        nsid = self.get_user("frank")[0]["nsid"]
        self.fill_namespace(nsid, 700)
        # A crash after the tombstone and part of the sweep: state=deleting, some keys left.
        self.r.call("HSET", "/users/frank", "state", "deleting")
        self.r.call("DEL", *["/ns/{%s}/mbx/x/msg/%d" % (nsid, i) for i in range(300)])
        self.r.call("DEL", "/ns/{%s}/meta" % nsid)

        self.assertEqual(self.check("frank", "pw"), EX_NOUSER)  # a tombstone is no user
        rec, _ = self.get_user("frank")
        self.assertEqual(rec["state"], "deleting")
        p = self.admin("set-user", "frank", "--password-stdin", *KDF, password="pw")
        self.assertEqual(p.returncode, EX_CANTCREAT)
        self.assertIn(b"delete-user", p.stderr)

        p = self.admin("delete-user", "frank")
        self.assertEqual(p.returncode, EX_OK, p.stderr)
        self.assertEqual(self.ns_keys(nsid), set())
        self.assertEqual(self.r.keys("/users/frank"), set())

    def test_delete_resumes_after_sweep(self):
        # A crash after the whole sweep, before the record went: only the tombstone is left.
        self.set_user("gina", "pw")
        nsid = self.get_user("gina")[0]["nsid"]
        self.r.call("HSET", "/users/gina", "state", "deleting")
        self.r.call("DEL", "/ns/{%s}/meta" % nsid)
        self.assertEqual(self.admin("delete-user", "gina").returncode, EX_OK)
        self.assertEqual(self.r.call("EXISTS", "/users/gina"), 0)

    def test_sweep_refuses_foreign_keys(self):
        # ns_sweep.lua itself refuses keys outside the namespace it was given.
        self.set_user("hank", "pw")
        nsid = self.get_user("hank")[0]["nsid"]
        self.r.call("SET", "/users/victim", "x")
        with open(os.path.join(ROOT, "lua", "ns_sweep.lua"), "rb") as f:
            body = f.read()
        with self.assertRaises(RedisError):
            self.r.call("EVAL", body, 2, "/ns/{%s}/meta" % nsid, "/users/victim",
                        "/ns/{%s}/" % nsid)
        self.assertEqual(self.r.call("EXISTS", "/users/victim", "/ns/{%s}/meta" % nsid), 2)


class TestErrors(AdminTestCase):
    BAD_LOGINS = [".dot", "a b", "x" * 256, "", "a/b", "ümlaut", "a*", "a\tb", "-dash"]

    def test_invalid_logins(self):
        for login in self.BAD_LOGINS:
            with self.subTest(login=login):
                for args in (["get-user", login], ["delete-user", login],
                             ["check-user", login, "--password-stdin"],
                             ["set-user", login, "--password-stdin"]):
                    p = self.admin(*args, password="pw")
                    self.assertEqual(p.returncode, EX_USAGE, (args, p.stderr))
        self.assertEqual(self.r.call("DBSIZE"), 0)
        self.assertEqual(self.admin("get-user", "x" * 255).returncode, EX_NOUSER)

    def test_usage_errors(self):
        cases = [
            [],
            ["frobnicate"],
            ["get-user"],
            ["get-user", "a", "b"],
            ["get-user", "a", "--bogus"],
            ["get-user", "a", "--kdf-cost", "5"],
            ["list-users", "extra"],
            ["delete-user"],
            ["set-user", "a", "--password-stdin", "--kdf-cost", "0"],
            ["set-user", "a", "--password-stdin", "--kdf-cost", "10000001"],
            ["set-user", "a", "--password-stdin", "--kdf-cost", "abc"],
            ["set-user", "a", "--password-stdin", "--kdf-cost"],
            ["set-user", "a", "--password-stdin", "--param", "novalue"],
            ["set-user", "a", "--password-stdin", "--param", "bad name=1"],
            ["set-user", "a", "--password-stdin", "--param", "=1"],
            ["set-user", "a", "--password-stdin", "--param", "a=b\x01"],
            ["set-user", "a", "--password-stdin", "--param", "a=" + "v" * 1025],
            ["set-user", "a", "--password-stdin", "--keep-password"],
            ["--timeout", "0", "list-users"],
            ["--bogus", "list-users"],
        ]
        for args in cases:
            with self.subTest(args=args):
                p = self.admin(*args, password="pw")
                self.assertEqual(p.returncode, EX_USAGE, p.stderr)
        for url in ["http://127.0.0.1", "redis://", "redis://h:0", "redis://h:99999",
                    "redis://h:1/x", "redis://h:1/2/3", "redis://[::1"]:
            with self.subTest(url=url):
                self.assertEqual(self.admin("list-users", url=url).returncode, EX_USAGE)
        self.assertEqual(self.r.call("DBSIZE"), 0)

    def test_no_terminal(self):
        # Without --password-stdin the password must come from a terminal.
        for cmd in ("set-user", "check-user"):
            p = subprocess.run([ADMIN, "--redis", self.url, cmd, "alice"],
                               stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
            self.assertEqual(p.returncode, EX_USAGE)
            self.assertIn(b"--password-stdin", p.stderr)

    def run_on_tty(self, args, answers):
        """Runs cimap-admin with a pseudo-terminal as stdin, answering each prompt in turn."""
        master, slave = pty.openpty()
        p = subprocess.Popen([ADMIN, "--redis", self.url] + args, stdin=slave,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        os.close(slave)
        echoed, prompts = b"", b""
        try:
            for i, answer in enumerate(answers):
                # Answer only once the prompt is out: the prompt flushes earlier typeahead.
                while prompts.count(b": ") <= i:
                    ready, _, _ = select.select([p.stderr], [], [], 10)
                    self.assertTrue(ready, "no prompt; got %r" % prompts)
                    chunk = os.read(p.stderr.fileno(), 1024)
                    self.assertTrue(chunk, "no prompt; got %r" % prompts)
                    prompts += chunk
                os.write(master, answer + b"\n")
            out, err = p.communicate(timeout=30)
            while True:
                ready, _, _ = select.select([master], [], [], 0.2)
                if not ready:
                    break
                try:
                    chunk = os.read(master, 1024)
                except OSError:
                    break
                if not chunk:
                    break
                echoed += chunk
        finally:
            os.close(master)
        return p.returncode, prompts + err, echoed

    def test_terminal_prompt(self):
        rc, err, echoed = self.run_on_tty(["set-user", "tty", *KDF], [b"hidden-pw", b"hidden-pw"])
        self.assertEqual(rc, EX_OK, err)
        self.assertIn(b"Password (again): ", err)
        self.assertNotIn(b"hidden-pw", echoed)  # echo was off
        self.assertEqual(self.check("tty", "hidden-pw"), EX_OK)

        rc, err, _ = self.run_on_tty(["check-user", "tty"], [b"hidden-pw"])
        self.assertEqual(rc, EX_OK, err)
        rc, err, _ = self.run_on_tty(["check-user", "tty"], [b"wrong"])
        self.assertEqual(rc, EX_MISMATCH, err)

        rc, err, _ = self.run_on_tty(["set-user", "tty2", *KDF], [b"one", b"two"])
        self.assertEqual(rc, EX_USAGE, err)
        self.assertIn(b"do not match", err)
        self.assertEqual(self.r.call("EXISTS", "/users/tty2"), 0)

    def test_help(self):
        p = self.admin("--help")
        self.assertEqual(p.returncode, EX_OK)
        text = p.stdout.decode()
        for word in ["set-user", "get-user", "list-users", "check-user", "delete-user",
                     "--redis", "--timeout", "--password-stdin", "--keep-password", "--param",
                     "--kdf-cost", "--show-hash", "CIMAP_REDIS", "benchmarks", "64", "67", "75"]:
            self.assertIn(word, text)
        self.assertEqual(self.admin("set-user", "--help").returncode, EX_OK)
        self.assertEqual(self.admin("help").returncode, EX_OK)

    def test_redis_down(self):
        down = "redis://127.0.0.1:%d" % free_port()
        for args in (["get-user", "alice"], ["list-users"], ["delete-user", "alice"],
                     ["check-user", "alice", "--password-stdin"],
                     ["set-user", "alice", "--password-stdin", *KDF]):
            with self.subTest(args=args):
                p = self.admin(*args, password="pw", url=down)
                self.assertEqual(p.returncode, EX_TEMPFAIL, p.stderr)
                self.assertIn(b"Redis", p.stderr)

    def test_redis_busy_is_tempfail(self):
        # A Redis stuck in a long script answers -BUSY: "retry later", not "internal error".
        self.r.call("CONFIG", "SET", "lua-time-limit", "100")
        blocker = Resp(self.port)
        try:
            blocker.sock.sendall(Resp.encode(
                ["EVAL", "local t = redis.call('TIME')[1] "
                 "while redis.call('TIME')[1] - t < 2 do end return 1", 0]))
            time.sleep(0.5)
            p = self.admin("get-user", "alice")
            self.assertEqual(p.returncode, EX_TEMPFAIL, p.stderr)
            self.assertIn(b"BUSY", p.stderr)
        finally:
            blocker.sock.settimeout(10)
            blocker._reply()
            blocker.close()


if __name__ == "__main__":
    unittest.main()
