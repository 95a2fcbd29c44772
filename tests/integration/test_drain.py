"""SIGTERM drain and SIGHUP reload (issue 10), against a real cimapd.

SIGTERM under load: /readyz turns 503 at once and the listeners close; clients between commands
and clients in IDLE get `* BYE [UNAVAILABLE]`; commands in flight (an APPEND whose literal is
still arriving, a LOGIN in its failure delay, a stream of FETCH/NOOP from several clients) finish
with their tagged reply before the BYE; the process exits 0 once the last client is gone, or
after --drain-grace when a command never finishes; the front end's lease leaves Redis.
SIGHUP re-reads the certificate while connections stay up.
"""

import shutil
import signal
import socket
import ssl
import tempfile
import threading
import time
import unittest

import harness
from test_http import CURL, curl
from test_tls import OPENSSL, make_cert


def login(port):
    r = harness.Raw(port)
    r.line()
    r.send("l1 LOGIN demouser demopass\r\n")
    assert r.until_tagged("l1")[-1].startswith("l1 OK")
    return r


class Loader(threading.Thread):
    """A client that runs SELECT / UID FETCH / NOOP until the server says BYE."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.r = login(port)
        self.n = 0
        self.bye = None
        self.error = None
        self.last_tagged = None

    def run(self):
        try:
            while True:
                self.n += 1
                tag = "t%d" % self.n
                self.r.send("%s %s\r\n" % (tag, ("NOOP", "SELECT INBOX", "UID FETCH 1:* (FLAGS)")
                                           [self.n % 3]))
                while True:
                    line = self.r.line()
                    if line.startswith("* BYE"):
                        self.bye = line
                        return
                    if line.startswith(tag + " "):
                        self.last_tagged = line
                        break
        except (ConnectionError, OSError) as e:  # closed right after a BYE we already read
            if self.bye is None:
                self.error = repr(e)


class DrainTest(unittest.TestCase):
    def setUp(self):
        self.redis = harness.Redis()
        self.http = harness.free_port()

    def tearDown(self):
        self.redis.stop()

    def start(self, *extra):
        server = harness.Cimapd(self.redis.url, "--http", "127.0.0.1:%d" % self.http,
                                "--login-fail-delay", "1500", "--lease-ttl", "3",
                                "--login-throttle-addr", "0", *extra)
        harness.wait_for_user(self.redis)
        deadline = time.monotonic() + 10
        while curl(self.http, "/readyz")[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        return server

    @unittest.skipIf(CURL is None, "curl not installed")
    def test_sigterm_under_load(self):
        server = self.start()
        try:
            loaders = [Loader(server.port) for _ in range(4)]
            for t in loaders:
                t.start()
            idle = login(server.port)  # between commands
            idler = login(server.port)
            idler.send("i1 SELECT INBOX\r\n")
            idler.until_tagged("i1")
            idler.send("i2 IDLE\r\n")
            self.assertTrue(idler.line().startswith("+ "))
            # An APPEND whose literal is half sent: a command in flight.
            appender = login(server.port)
            msg = b"Subject: drained\r\n\r\n" + b"x" * 200000 + b"\r\n"
            appender.send(b"p1 APPEND INBOX {%d}\r\n" % len(msg))
            self.assertTrue(appender.line().startswith("+ "))
            appender.send(msg[:1000])
            # A LOGIN in its failure delay: in flight too.
            failer = harness.Raw(server.port)
            failer.line()
            failer.send("f1 LOGIN demouser wrong\r\n")
            time.sleep(0.5)  # the loaders are busy; the LOGIN now sleeps its 1.5 s

            server.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 5
            while curl(self.http, "/readyz")[0] != 503 and time.monotonic() < deadline:
                time.sleep(0.02)
            code, body = curl(self.http, "/readyz")
            self.assertEqual((code, body), (503, "draining\n"))
            self.assertEqual(curl(self.http, "/healthz")[0], 200)
            with self.assertRaises(OSError):  # no longer accepting
                socket.create_connection(("127.0.0.1", server.port), timeout=2).close()

            self.assertEqual(idle.line(), "* BYE [UNAVAILABLE] Server shutting down")
            self.assertTrue(idle.closed())
            lines = []
            while not lines or not lines[-1].startswith("* BYE"):
                lines.append(idler.line())
            self.assertEqual(lines[-1], "* BYE [UNAVAILABLE] Server shutting down")
            self.assertTrue(idler.closed())

            appender.send(msg[1000:] + b"\r\n")  # the in-flight APPEND completes, then BYE
            self.assertRegex(appender.until_tagged("p1")[-1], r"^p1 OK \[APPENDUID \d+ \d+\]")
            self.assertEqual(appender.line(), "* BYE [UNAVAILABLE] Server shutting down")
            self.assertEqual(failer.until_tagged("f1")[-1],
                             "f1 NO [AUTHENTICATIONFAILED] Authentication failed")
            self.assertEqual(failer.line(), "* BYE [UNAVAILABLE] Server shutting down")

            for t in loaders:
                t.join(10)
                self.assertFalse(t.is_alive())
                self.assertIsNone(t.error)
                self.assertEqual(t.bye, "* BYE [UNAVAILABLE] Server shutting down")
                self.assertTrue(t.last_tagged is None or " OK " in t.last_tagged, t.last_tagged)
            server.proc.wait(15)
            self.assertEqual(server.proc.returncode, 0)
        finally:
            code = server.stop()
            log = server.log_text()
            server.cleanup()
        self.assertEqual(code, 0, log[-3000:])
        self.assertIn("event=shutdown connections_left=0", log)
        self.assertRegex(log, r"event=fleet.leave id=fe-\d+-[0-9a-f]+\n")
        c = self.redis.client()
        self.assertEqual(c.keys("/frontends/*"), set())  # details gone with the front end
        now_s, now_us = c.call("TIME")
        now_ms = int(now_s) * 1000 + int(now_us) // 1000
        # The lease is given back: its entry is expired (kept a day so others learn it is dead).
        self.assertEqual(c.call("ZRANGEBYSCORE", "/frontends", "(%d" % now_ms, "+inf"), [])
        self.assertEqual(len(c.call("ZRANGE", "/frontends", 0, -1)), 1)
        c.close()

    def test_grace_period_bounds_the_drain(self):
        server = self.start("--drain-grace", "1")
        try:
            appender = login(server.port)
            appender.send(b"p1 APPEND INBOX {100000}\r\n")
            self.assertTrue(appender.line().startswith("+ "))
            appender.send(b"x" * 10)  # never finished
            t0 = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            server.proc.wait(10)
            self.assertLess(time.monotonic() - t0, 5)
            self.assertEqual(server.proc.returncode, 0)
            self.assertTrue(appender.closed())
        finally:
            code = server.stop()
            log = server.log_text()
            server.cleanup()
        self.assertEqual(code, 0, log[-3000:])
        self.assertIn("event=shutdown connections_left=1", log)


@unittest.skipIf(OPENSSL is None, "openssl command not installed")
class ReloadTest(unittest.TestCase):
    def test_sighup_keeps_connections(self):
        tmp = tempfile.mkdtemp(prefix="cimap-reload-")
        redis = harness.Redis()
        cert, key = make_cert(tmp, "one")
        tls_port = harness.free_port()
        server = harness.Cimapd(redis.url, "--tls-cert", cert, "--tls-key", key,
                                "--listen-tls", "127.0.0.1:%d" % tls_port)
        try:
            harness.wait_for_user(redis)
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE

            def imaps():
                s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", tls_port), timeout=10),
                                    server_hostname="localhost")
                f = s.makefile("rb")
                assert f.readline().startswith(b"* OK")
                return s, f

            old, old_f = imaps()
            old_der = old.getpeercert(binary_form=True)
            old.sendall(b"a1 LOGIN demouser demopass\r\na2 SELECT INBOX\r\n")
            while not old_f.readline().startswith(b"a2 OK"):
                pass
            plain = login(server.port)
            new_cert, new_key = make_cert(tmp, "two")
            shutil.copy(new_cert, cert)
            shutil.copy(new_key, key)
            server.proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 5
            while "event=reload tls=ok" not in server.log_text():
                self.assertLess(time.monotonic(), deadline)
                time.sleep(0.05)
            # Connections made before the reload go on, with the session they had.
            old.sendall(b"a3 NOOP\r\n")
            line = old_f.readline()
            while not line.startswith(b"a3 "):
                line = old_f.readline()
            self.assertEqual(line, b"a3 OK NOOP completed\r\n")
            plain.send("b1 NOOP\r\n")
            self.assertEqual(plain.until_tagged("b1")[-1], "b1 OK NOOP completed")
            # New ones get the new certificate.
            new, _ = imaps()
            self.assertNotEqual(new.getpeercert(binary_form=True), old_der)
            new.close()
            old.close()
            plain.close()
        finally:
            code = server.stop()
            log = server.log_text()
            server.cleanup()
            redis.stop()
            shutil.rmtree(tmp, ignore_errors=True)
        self.assertEqual(code, 0, log[-3000:])


if __name__ == "__main__":
    unittest.main()
