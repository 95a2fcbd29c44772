"""The production topology on loopback (deploy/local/up.sh): Redis + 3 cimapd + HAProxy in TCP mode
sending PROXY v2 and checking /readyz, as on Kubernetes (deploy/k8s).

Clients through the balancer work and spread over the front ends; cimapd logs the client's own
address from the PROXY header (IMAP and IMAPS); an IDLE client on one front end sees an APPEND
made through another; SIGTERM of one front end under load completes in-flight commands, says BYE
to idle and IDLE clients, its clients reconnect to the others and no acknowledged APPEND is lost;
/readyz is false while Redis is down and true again after; /metrics parses as Prometheus text and
moves with traffic.

Cases that need a cimapd flag this build does not have (--http, --proxy-protocol) are skipped
with the flag named. Needs haproxy and redis-server (scripts/deps.sh --test).
"""

import imaplib
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

from harness import CIMAP_ADMIN, CIMAPD, ROOT

UP = os.path.join(ROOT, "deploy", "local", "up.sh")
DOWN = os.path.join(ROOT, "deploy", "local", "down.sh")
KDF = "1000"  # documented low cost, for tests only
PASSWORD = "secret-pw"


def cimapd_help():
    try:
        return subprocess.run([CIMAPD, "--help"], capture_output=True, text=True, timeout=10).stdout
    except OSError:
        return ""


HELP = cimapd_help()
HAS_HTTP = "--http " in HELP
HAS_PROXY = "--proxy-protocol" in HELP
# The drain of issue 10 (BYE to IDLE clients too, bounded by --drain-grace); before it, SIGTERM
# already stops accepting and says BYE to clients between commands.
HAS_DRAIN = "--drain-grace" in HELP
HAVE_TOOLS = all(shutil.which(t) for t in ("haproxy", "redis-server", "redis-cli"))


def free_base(span=40):
    """A port base with span free loopback ports above it."""
    for _ in range(200):
        base = random.randrange(20000, 60000 - span)
        socks = []
        try:
            for p in range(base, base + span):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range")


def proxy_v1(src_port, dst_port, src="127.0.0.1"):
    return ("PROXY TCP4 %s 127.0.0.1 %d %d\r\n" % (src, src_port, dst_port)).encode()


class Client:
    """A raw IMAP connection: to the balancer, or straight to one front end (then with the PROXY
    header the front end expects from HAProxy), optionally from another loopback address."""

    def __init__(self, port, source="127.0.0.1", direct=False, tls=False, timeout=15):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                             source_address=(source, 0))
        if direct and HAS_PROXY:
            self.sock.sendall(proxy_v1(self.sock.getsockname()[1], port, source))
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            self.sock = ctx.wrap_socket(self.sock)
        self.buf = b""
        self.greeting = self.line()

    def send(self, data):
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed; pending %r" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode(errors="replace")

    def cmd(self, tag, text):
        self.send("%s %s\r\n" % (tag, text))
        lines = []
        while True:
            line = self.line()
            lines.append(line)
            if line.startswith(tag + " "):
                return lines

    def login(self, user, password=PASSWORD):
        last = self.cmd("l", "LOGIN %s %s" % (user, password))[-1]
        if not last.startswith("l OK"):
            raise AssertionError("login failed: %s" % last)

    def eof(self, timeout=10):
        """Reads until the server closes; returns everything read, or None on a time-out."""
        self.sock.settimeout(timeout)
        data = self.buf
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return data.decode(errors="replace")
                data += chunk
        except socket.timeout:
            return None
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            return data.decode(errors="replace")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def message(tag, size=0):
    body = "x" * size
    return ("From: a@example.org\r\nTo: b@example.org\r\nSubject: %s\r\n"
            "Message-ID: <%s@cimap.test>\r\n\r\nhello %s\r\n%s\r\n" % (tag, tag, tag, body)).encode()


@unittest.skipUnless(HAVE_TOOLS, "haproxy, redis-server or redis-cli missing (scripts/deps.sh --test)")
class LocalTopology(unittest.TestCase):
    def setUp(self):
        self.state = tempfile.mkdtemp(prefix="cimap-local-")
        env = dict(os.environ, CIMAPD=CIMAPD, CIMAP_ADMIN=CIMAP_ADMIN,
                   CIMAP_LOCAL_PORT_BASE=str(free_base()),
                   CIMAP_LOCAL_CIMAPD_ARGS="--kdf-cost %s --login-fail-delay 50" % KDF)
        r = subprocess.run([UP, self.state], env=env, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            self.fail("up.sh failed:\n%s\n%s" % (r.stderr, self.logs()))
        self.env = {}
        with open(os.path.join(self.state, "env")) as f:
            for line in f:
                k, _, v = line.strip().partition("=")
                self.env[k] = v
        self.lb = int(self.env["LB_PORT"])
        self.n = int(self.env["FRONTENDS"])
        self.redis_url = self.env["REDIS_URL"]
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.close()
        result = getattr(self._outcome, "result", None)
        if result is not None and any(t is self for t, _ in result.failures + result.errors):
            print(self.logs())
        subprocess.run([DOWN, self.state], capture_output=True, timeout=120)
        shutil.rmtree(self.state, ignore_errors=True)

    # ---- helpers

    def logs(self):
        out = []
        for name in sorted(os.listdir(self.state)) if os.path.isdir(self.state) else []:
            if name.endswith(".log"):
                with open(os.path.join(self.state, name), errors="replace") as f:
                    out.append("==== %s\n%s" % (name, "".join(f.readlines()[-40:])))
        return "\n".join(out)

    def log(self, i):
        with open(os.path.join(self.state, "cimapd-%d.log" % i), errors="replace") as f:
            return f.read()

    def front(self, i, what="IMAP"):
        return int(self.env["FRONT_%d_%s" % (i, what)])

    def client(self, port=None, **kw):
        c = Client(port or self.lb, **kw)
        self.clients.append(c)
        return c

    def add_user(self, login):
        r = subprocess.run([CIMAP_ADMIN, "--redis", self.redis_url, "set-user", login,
                            "--password-stdin", "--kdf-cost", KDF],
                           input=PASSWORD + "\n", capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)

    def imap(self, user):
        m = imaplib.IMAP4("127.0.0.1", self.lb, timeout=15)
        m.login(user, PASSWORD)
        return m

    def http(self, i, path):
        """(status, body) of GET path on front end i's HTTP port."""
        url = "http://127.0.0.1:%d%s" % (self.front(i, "HTTP"), path)
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError:
            return None, ""

    def wait(self, cond, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return
            time.sleep(0.1)
        self.fail("timed out waiting for " + what)

    @staticmethod
    def exited(pid):
        """True when pid is gone or a zombie (up.sh's children are reparented, maybe unreaped)."""
        try:
            with open("/proc/%d/stat" % pid) as f:
                return f.read().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            return True

    def pid(self, i):
        with open(os.path.join(self.state, "cimapd-%d.pid" % i)) as f:
            return int(f.read())

    def count(self, user, mailbox="INBOX"):
        m = self.imap(user)
        try:
            typ, data = m.status(mailbox, "(MESSAGES)")
            self.assertEqual(typ, "OK")
            return int(re.search(rb"MESSAGES (\d+)", data[0]).group(1))
        finally:
            m.logout()

    # ---- tests

    def test_clients_through_balancer(self):
        """imaplib through HAProxy: login, select, append, fetch; connections spread out."""
        self.add_user("alice")
        conns = [self.imap("alice") for _ in range(2 * self.n)]
        try:
            for k, m in enumerate(conns):
                typ, _ = m.select("INBOX")
                self.assertEqual(typ, "OK")
                typ, data = m.append("INBOX", None, None, message("lb-%d" % k))
                self.assertEqual(typ, "OK", data)
            m = conns[0]
            m.noop()
            typ, data = m.search(None, "ALL")
            self.assertEqual(len(data[0].split()), 2 * self.n)
            typ, data = m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            self.assertIn(b"Subject: lb-", data[0][1])
        finally:
            for m in conns:
                m.logout()
        # leastconn: every front end served some of the concurrent sessions.
        for i in range(1, self.n + 1):
            self.assertIn("user=alice", self.log(i), "front end %d got no session" % i)

    @unittest.skipUnless(HAS_PROXY, "cimapd has no --proxy-protocol yet")
    def test_logs_real_client_address(self):
        """The PROXY v2 header from HAProxy carries the client's address into cimapd's logs."""
        self.add_user("bob")
        c = self.client(source="127.0.0.23")
        c.login("bob")
        c.cmd("z", "LOGOUT")
        if "LB_TLS_PORT" in self.env:
            t = self.client(int(self.env["LB_TLS_PORT"]), source="127.0.0.24", tls=True)
            t.login("bob")
            t.cmd("z", "LOGOUT")
        want = ["127.0.0.23"] + (["127.0.0.24"] if "LB_TLS_PORT" in self.env else [])

        def logged():
            text = "".join(self.log(i) for i in range(1, self.n + 1))
            return all(re.search(r"peer=\[?%s\b" % re.escape(a), text) for a in want)

        self.wait(logged, 5, "peer=%s in the logs" % want)

    def test_idle_sees_append_through_other_frontend(self):
        """IDLE on front end 1, APPEND on front end 2: the EXISTS arrives within a second."""
        self.add_user("carol")
        idler = self.client(self.front(1), direct=True)
        idler.login("carol")
        self.assertTrue(idler.cmd("s", "SELECT INBOX")[-1].startswith("s OK"))
        idler.send("i IDLE\r\n")
        self.assertEqual(idler.line(), "+ idling")
        writer = self.client(self.front(2), direct=True)
        writer.login("carol")
        msg = message("idle-1")
        writer.send("a APPEND INBOX {%d}\r\n" % len(msg))
        self.assertTrue(writer.line().startswith("+"))
        writer.send(msg + b"\r\n")
        started = time.monotonic()
        while True:
            line = writer.line()
            if line.startswith("a "):
                self.assertTrue(line.startswith("a OK"), line)
                break
        idler.sock.settimeout(5)
        self.assertEqual(idler.line(), "* 1 EXISTS")
        self.assertLess(time.monotonic() - started, 1.0)
        idler.send("DONE\r\n")
        while True:
            line = idler.line()
            if not line.startswith("* "):
                break
        self.assertTrue(line.startswith("i OK"), line)

    def test_sigterm_drains_under_load(self):
        """SIGTERM front end 1 while clients append through the balancer: in-flight commands finish,
        idle and IDLE clients get BYE, clients reconnect to the others, no acknowledged write is
        lost, and the process exits 0."""
        self.add_user("dave")
        # A mailbox large enough that FETCH 1:* takes a while: the in-flight command.
        seed = self.imap("dave")
        for k in range(300):
            seed.append("INBOX", None, None, message("seed-%d" % k, 2000))
        seed.logout()

        idle = self.client(self.front(1), direct=True)
        idle.login("dave")
        idle.cmd("s", "SELECT INBOX")
        idling = self.client(self.front(1), direct=True)
        idling.login("dave")
        idling.cmd("s", "SELECT INBOX")
        idling.send("i IDLE\r\n")
        self.assertEqual(idling.line(), "+ idling")
        busy = self.client(self.front(1), direct=True)
        busy.login("dave")
        busy.cmd("s", "SELECT INBOX")

        acked, attempted = set(), set()
        landed = []
        lock = threading.Lock()
        stop = threading.Event()

        def worker(w):
            m, k = None, 0
            while not stop.is_set():
                try:
                    if m is None:
                        m = self.imap("dave")
                        with lock:
                            landed.append(time.monotonic())
                    tag = "load-%d-%d" % (w, k)
                    k += 1
                    with lock:
                        attempted.add(tag)
                    typ, _ = m.append("INBOX", None, None, message(tag))
                    if typ == "OK":
                        with lock:
                            acked.add(tag)
                except (imaplib.IMAP4.abort, imaplib.IMAP4.error, OSError):
                    m = None
                    time.sleep(0.05)
            if m is not None:
                try:
                    m.logout()
                except (imaplib.IMAP4.abort, imaplib.IMAP4.error, OSError):
                    pass

        threads = [threading.Thread(target=worker, args=(w,)) for w in range(2 * self.n)]
        for t in threads:
            t.start()
        try:
            time.sleep(1.0)

            busy.send("f FETCH 1:* (UID RFC822.SIZE BODY.PEEK[])\r\n")
            time.sleep(0.005)
            killed_at = time.monotonic()
            os.kill(self.pid(1), signal.SIGTERM)

            # The in-flight FETCH completes with every message, then BYE.
            fetched, tagged = 0, None
            busy.sock.settimeout(30)
            while tagged is None:
                line = busy.line()
                if line.startswith("* ") and " FETCH " in line:
                    fetched += 1
                    literal = re.search(r"\{(\d+)\}$", line)
                    if literal:
                        need = int(literal.group(1))
                        while len(busy.buf) < need:
                            chunk = busy.sock.recv(65536)
                            self.assertTrue(chunk, "closed inside a literal")
                            busy.buf += chunk
                        busy.buf = busy.buf[need:]
                elif line.startswith("f "):
                    tagged = line
            self.assertTrue(tagged.startswith("f OK"), tagged)
            self.assertGreaterEqual(fetched, 300)
            self.assertIn("* BYE", busy.eof(35) or "")

            for c, name in ((idle, "idle"), (idling, "IDLE")) if HAS_DRAIN else ((idle, "idle"),):
                rest = c.eof(35)
                self.assertIsNotNone(rest, "%s client not disconnected" % name)
                self.assertIn("* BYE", rest, "%s client got no BYE" % name)

            if not HAS_DRAIN:
                idling.close()  # this cimapd waits for IDLE clients to leave by themselves
            self.wait(lambda: self.exited(self.pid(1)), 40, "front end 1 to exit")
            # Load goes on through the others for a while.
            time.sleep(1.5)
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        self.assertTrue(any(t > killed_at for t in landed), "no client reconnected after SIGTERM")
        self.assertGreater(len(acked), 0)

        # Nothing acknowledged is lost.
        m = self.imap("dave")
        try:
            m.select("INBOX", readonly=True)
            typ, data = m.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            subjects = set()
            for item in data:
                if isinstance(item, tuple):
                    subjects.add(item[1].decode().split(":", 1)[1].strip())
        finally:
            m.logout()
        self.assertFalse(acked - subjects, "acknowledged APPENDs lost")
        self.assertFalse((subjects - {"seed-%d" % k for k in range(300)}) - attempted)
        self.assertIn("shutdown", self.log(1))

        # New sessions work through the remaining front ends.
        self.assertGreaterEqual(self.count("dave"), 300 + len(acked))

    @unittest.skipUnless(HAS_HTTP, "cimapd has no --http yet")
    def test_readyz_follows_redis(self):
        """/readyz is 200 with Redis up, not 200 while it is down (HAProxy then takes no one), 200
        again after Redis comes back; /healthz stays 200 throughout."""
        for i in range(1, self.n + 1):
            self.assertEqual(self.http(i, "/readyz")[0], 200)
        with open(os.path.join(self.state, "redis.pid")) as f:
            redis_pid = int(f.read())
        os.kill(redis_pid, signal.SIGKILL)
        for i in range(1, self.n + 1):
            self.wait(lambda i=i: self.http(i, "/readyz")[0] not in (200, None), 15,
                      "front end %d not ready" % i)
            self.assertEqual(self.http(i, "/healthz")[0], 200)
        subprocess.run(["redis-server", os.path.join(self.state, "redis.conf")], check=True,
                       capture_output=True)
        for i in range(1, self.n + 1):
            self.wait(lambda i=i: self.http(i, "/readyz")[0] == 200, 30, "front end %d ready" % i)
        # HAProxy's checks (every second) bring the servers back.
        self.add_user("erin")

        def login_works():
            try:
                self.imap("erin").logout()
                return True
            except (imaplib.IMAP4.error, OSError):
                return False

        self.wait(login_works, 10, "a login through the balancer")

    @unittest.skipUnless(HAS_HTTP, "cimapd has no --http yet")
    def test_metrics_prometheus_text(self):
        """/metrics is Prometheus text format and its counters move with traffic."""
        sample = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (-?[0-9.eE+-]+|NaN|[+-]Inf)( \d+)?$')

        def scrape(i):
            status, body = self.http(i, "/metrics")
            self.assertEqual(status, 200)
            values = {}
            for line in body.splitlines():
                if not line or line.startswith("#"):
                    if line.startswith("# TYPE"):
                        self.assertRegex(line, r"^# TYPE \S+ (counter|gauge|histogram|summary|untyped)$")
                    continue
                m = sample.match(line)
                self.assertIsNotNone(m, "not Prometheus text: %r" % line)
                values[m.group(1) + (m.group(2) or "")] = float(m.group(3))
            return values

        before = scrape(1)
        self.add_user("frank")
        c = self.client(self.front(1), direct=True)
        c.login("frank")
        for k in range(5):
            c.cmd("n%d" % k, "NOOP")
        c.cmd("z", "LOGOUT")
        after = scrape(1)
        moved = [k for k in after if after[k] > before.get(k, 0)]
        self.assertTrue(moved, "no metric moved with traffic")


if __name__ == "__main__":
    unittest.main()
