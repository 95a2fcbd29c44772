"""TLS and SASL against a real redis-server and a real cimapd (issue 3).

Covers: STARTTLS and IMAPS with imaplib (a self-signed certificate made here with openssl),
`openssl s_client -starttls imap`, plaintext pipelined behind STARTTLS discarded (CVE-2011-0411),
AUTHENTICATE PLAIN and LOGIN with and without SASL-IR, cancel, bad base64, wrong authorization
identity, wrong password, LOGINDISABLED / PRIVACYREQUIRED on a non-loopback plaintext connection
and --allow-plaintext-auth, STARTTLS offered only before TLS and login, IPv6, TLS handshake
failures, SIGHUP reload, masked --debug transcript, and start-up failures on bad certificates.
"""

import base64
import imaplib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

import harness

OPENSSL = shutil.which("openssl")


def b64(data):
    return base64.b64encode(data).decode()


def make_cert(directory, name, kind="ec"):
    """A self-signed certificate for localhost / 127.0.0.1 / ::1; returns (cert, key) paths."""
    cert = os.path.join(directory, name + ".pem")
    key = os.path.join(directory, name + ".key")
    newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"] if kind == "ec" \
        else ["-newkey", "rsa:2048"]
    subprocess.run([OPENSSL, "req", "-x509", *newkey, "-nodes", "-subj", "/CN=localhost",
                    "-days", "1", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key


def non_loopback_ipv4():
    """An IPv4 address of this machine that is not loopback, or None."""
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for addr in out.split():
        if "." in addr and not addr.startswith("127."):
            return addr
    return None


def ipv6_loopback_works():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class RawAt(harness.Raw):
    """harness.Raw to any host (harness.Raw connects to 127.0.0.1)."""

    def __init__(self, host, port, timeout=10):  # pylint: disable=super-init-not-called
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def start_tls(self, ctx):
        """Continues over TLS (after STARTTLS was answered OK and nothing more was read)."""
        assert self.buf == b""
        self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")


class RawTLS(RawAt):
    """harness.Raw over TLS (IMAPS)."""

    def __init__(self, host, port, ctx, timeout=10):
        super().__init__(host, port, timeout)
        self.start_tls(ctx)


@unittest.skipIf(OPENSSL is None, "openssl command not installed")
class TlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="cimap-tls-")
        cls.cert, cls.key = make_cert(cls.tmp, "server")
        cls.ctx = ssl.create_default_context(cafile=cls.cert)
        cls.redis = harness.Redis()
        cls.tls_port = harness.free_port()
        cls.wide_port = harness.free_port()  # plaintext on 0.0.0.0: reachable off loopback
        extra = ["--listen", "0.0.0.0:%d" % cls.wide_port,
                 "--listen-tls", "127.0.0.1:%d" % cls.tls_port,
                 "--tls-cert", cls.cert, "--tls-key", cls.key, "--debug"]
        cls.tls6_port = None
        if ipv6_loopback_works():
            cls.tls6_port = harness.free_port()
            extra += ["--listen-tls", "[::1]:%d" % cls.tls6_port]
        cls.server = harness.Cimapd(cls.redis.url, *extra)
        harness.wait_port(cls.tls_port, proc=cls.server.proc)
        harness.wait_for_user(cls.redis)

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        log = cls.server.log_text()
        cls.server.cleanup()
        cls.redis.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        if code != 0:
            raise AssertionError("cimapd exited with %s:\n%s" % (code, log[-4000:]))

    # --- helpers ---------------------------------------------------------------------------

    def _cleanup_imap(self, c):
        def close():
            try:
                c.shutdown()
            except OSError:
                pass
        self.addCleanup(close)
        return c

    def raw(self, port=None, host="127.0.0.1"):
        r = RawAt(host, port or self.server.port)
        self.addCleanup(r.close)
        return r

    def imaps_raw(self, port=None, host="127.0.0.1"):
        r = RawTLS(host, port or self.tls_port, self.ctx)
        self.addCleanup(r.close)
        greeting = r.line()
        self.assertTrue(greeting.startswith("* OK [CAPABILITY IMAP4rev1 "), greeting)
        return r, greeting

    def wait_log(self, needle, timeout=5):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.server.log_text():
                return True
            time.sleep(0.05)
        return False

    # --- STARTTLS and IMAPS through imaplib --------------------------------------------------

    def test_starttls_imaplib(self):
        c = self._cleanup_imap(imaplib.IMAP4("127.0.0.1", self.server.port, timeout=10))
        self.assertIn("STARTTLS", c.capabilities)
        self.assertIn("AUTH=PLAIN", c.capabilities)  # loopback: plaintext login allowed
        typ, _ = c.starttls(ssl_context=self.ctx)
        self.assertEqual(typ, "OK")
        self.assertNotIn("STARTTLS", c.capabilities)
        self.assertIn("AUTH=PLAIN", c.capabilities)
        self.assertIn("AUTH=LOGIN", c.capabilities)
        self.assertIn("SASL-IR", c.capabilities)
        self.assertEqual(c.login("demouser", "demopass")[0], "OK")
        self.assertEqual(c.noop()[0], "OK")
        self.assertEqual(c.logout()[0], "BYE")

    def test_imaps_imaplib(self):
        c = self._cleanup_imap(imaplib.IMAP4_SSL("127.0.0.1", self.tls_port,
                                                 ssl_context=self.ctx, timeout=10))
        self.assertNotIn("STARTTLS", c.capabilities)
        self.assertNotIn("LOGINDISABLED", c.capabilities)
        self.assertIn("AUTH=PLAIN", c.capabilities)
        self.assertEqual(c.login("demouser", "demopass")[0], "OK")
        typ, data = c.capability()
        self.assertEqual(typ, "OK")
        self.assertNotIn(b"AUTH=", data[0])
        self.assertNotIn(b"STARTTLS", data[0])
        self.assertEqual(c.logout()[0], "BYE")
        self.assertTrue(self.wait_log("event=conn.tls "))

    def test_imaps_ipv6(self):
        if self.tls6_port is None:
            self.skipTest("no IPv6 loopback on this machine")
        r, greeting = self.imaps_raw(self.tls6_port, host="::1")
        self.assertIn("AUTH=PLAIN", greeting)
        r.send("v1 LOGIN demouser demopass\r\n")
        self.assertTrue(r.line().startswith("v1 OK [CAPABILITY IMAP4rev1"))

    def test_authenticate_plain_imaplib(self):
        c = self._cleanup_imap(imaplib.IMAP4_SSL("127.0.0.1", self.tls_port,
                                                 ssl_context=self.ctx, timeout=10))
        typ, _ = c.authenticate("PLAIN", lambda _: b"\0demouser\0demopass")
        self.assertEqual(typ, "OK")
        self.assertEqual(c.state, "AUTH")
        self.assertEqual(c.logout()[0], "BYE")

    def test_openssl_s_client_starttls(self):
        p = subprocess.run(
            [OPENSSL, "s_client", "-starttls", "imap", "-connect",
             "127.0.0.1:%d" % self.server.port, "-CAfile", self.cert, "-verify_return_error",
             "-verify_hostname", "localhost", "-quiet", "-crlf"],
            input=b"s1 CAPABILITY\ns2 LOGIN demouser demopass\ns3 LOGOUT\n",
            capture_output=True, timeout=30)
        out = p.stdout.decode(errors="replace")
        lines = out.splitlines()
        caps = [l for l in lines if l.startswith("* CAPABILITY")]
        self.assertEqual(len(caps), 1, out + p.stderr.decode(errors="replace"))
        self.assertNotIn("STARTTLS", caps[0])
        self.assertIn("AUTH=PLAIN", caps[0])
        self.assertIn("s1 OK Capability completed", out)
        self.assertTrue(any(l.startswith("s2 OK [CAPABILITY") for l in lines), out)
        self.assertIn("s3 OK Logout completed", out)
        self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace"))

    # --- STARTTLS rules ------------------------------------------------------------------------

    def test_plaintext_pipelined_after_starttls_is_discarded(self):
        r = self.raw()
        r.line()  # greeting
        # One write: "b" sits in the server's input buffer when STARTTLS runs.
        r.send("a STARTTLS\r\nb CAPABILITY\r\n")
        self.assertEqual(r.line(), "a OK Begin TLS negotiation now")
        r.start_tls(self.ctx)  # asserts nothing came in plaintext after the OK
        r.send("c NOOP\r\n")
        lines = r.until_tagged("c")
        self.assertEqual(lines, ["c OK NOOP completed"])  # "b" was never answered
        r.send("d CAPABILITY\r\n")
        lines = r.until_tagged("d")
        self.assertFalse(any(l.startswith("b ") for l in lines), lines)
        self.assertNotIn("STARTTLS", lines[0])
        self.assertTrue(self.wait_log("event=conn.starttls_discarded"))

    def test_starttls_not_offered_after_login_or_tls(self):
        r = self.raw()
        self.assertIn("STARTTLS", r.line())
        r.send("l1 LOGIN demouser demopass\r\n")
        line = r.line()
        self.assertTrue(line.startswith("l1 OK [CAPABILITY "), line)
        self.assertNotIn("STARTTLS", line)
        r.send("l2 STARTTLS\r\n")
        self.assertEqual(r.line(), "l2 BAD Command not valid in this state")
        t, greeting = self.imaps_raw()
        self.assertNotIn("STARTTLS", greeting)
        t.send("t1 STARTTLS\r\n")
        self.assertEqual(t.line(), "t1 BAD TLS is already active")
        t.send("t2 NOOP\r\n")
        self.assertEqual(t.line(), "t2 OK NOOP completed")

    def test_tls_handshake_failure_is_logged_and_closed(self):
        r = self.raw(self.tls_port)
        r.send("a CAPABILITY\r\n" * 20)  # plaintext to the IMAPS port
        self.assertTrue(r.closed())
        self.assertTrue(self.wait_log("event=conn.tls_handshake_failed"))
        # The server goes on.
        t, _ = self.imaps_raw()
        t.send("n NOOP\r\n")
        self.assertEqual(t.line(), "n OK NOOP completed")

    # --- AUTHENTICATE --------------------------------------------------------------------------

    def test_authenticate_plain_sasl_ir(self):
        r, _ = self.imaps_raw()
        r.send("p1 AUTHENTICATE PLAIN %s\r\n" % b64(b"\0demouser\0demopass"))
        line = r.line()
        self.assertTrue(line.startswith("p1 OK [CAPABILITY IMAP4rev1"), line)
        self.assertTrue(line.endswith("Logged in"), line)
        r.send("p2 AUTHENTICATE PLAIN %s\r\n" % b64(b"\0demouser\0demopass"))
        self.assertEqual(r.line(), "p2 BAD Command not valid in this state")

    def test_authenticate_plain_with_matching_authzid(self):
        r, _ = self.imaps_raw()
        r.send("p1 AUTHENTICATE plain %s\r\n" % b64(b"demouser\0demouser\0demopass"))
        self.assertTrue(r.line().startswith("p1 OK [CAPABILITY"))

    def test_authenticate_plain_continuation(self):
        r, _ = self.imaps_raw()
        r.send("p1 AUTHENTICATE PLAIN\r\n")
        self.assertEqual(r.line(), "+ ")
        r.send(b64(b"\0demouser\0demopass") + "\r\n")
        self.assertTrue(r.line().startswith("p1 OK [CAPABILITY"))

    def test_authenticate_login(self):
        r, _ = self.imaps_raw()
        r.send("g1 AUTHENTICATE LOGIN\r\n")
        self.assertEqual(r.line(), "+ VXNlcm5hbWU6")
        r.send(b64(b"demouser") + "\r\n")
        self.assertEqual(r.line(), "+ UGFzc3dvcmQ6")
        r.send(b64(b"demopass") + "\r\n")
        self.assertTrue(r.line().startswith("g1 OK [CAPABILITY"))

    def test_authenticate_login_with_initial_user(self):
        r, _ = self.imaps_raw()
        r.send("g1 AUTHENTICATE LOGIN %s\r\n" % b64(b"demouser"))
        self.assertEqual(r.line(), "+ UGFzc3dvcmQ6")
        r.send(b64(b"demopass") + "\r\n")
        self.assertTrue(r.line().startswith("g1 OK [CAPABILITY"))

    def test_authenticate_cancel(self):
        r, _ = self.imaps_raw()
        r.send("c1 AUTHENTICATE PLAIN\r\n")
        self.assertEqual(r.line(), "+ ")
        r.send("*\r\n")
        self.assertEqual(r.line(), "c1 BAD Authentication cancelled")
        r.send("c2 AUTHENTICATE LOGIN\r\n")
        self.assertEqual(r.line(), "+ VXNlcm5hbWU6")
        r.send(b64(b"demouser") + "\r\n")
        self.assertEqual(r.line(), "+ UGFzc3dvcmQ6")
        r.send("*\r\n")
        self.assertEqual(r.line(), "c2 BAD Authentication cancelled")
        r.send("c3 NOOP\r\n")  # the connection goes on, not authenticated
        self.assertEqual(r.line(), "c3 OK NOOP completed")
        r.send("c4 ENABLE CONDSTORE\r\n")
        self.assertEqual(r.line(), "c4 BAD Log in first")

    def test_authenticate_bad_base64(self):
        r, _ = self.imaps_raw()
        for i, bad in enumerate(["AGRlbW91c2VyAGRlbW9wYXNz=", "AGRlbW9!c2VyAGRlbW9wYXNz",
                                 "AGRlbW91c2VyAGRlbW9wYXN", "AG=lbW91", "AB=="]):
            r.send("b%d AUTHENTICATE PLAIN %s\r\n" % (i, bad))
            self.assertEqual(r.line(), "b%d BAD Invalid base64 in the authentication exchange" % i)
        r.send("b9 AUTHENTICATE PLAIN\r\n")
        self.assertEqual(r.line(), "+ ")
        r.send("not base64 at all\r\n")
        self.assertEqual(r.line(), "b9 BAD Invalid base64 in the authentication exchange")
        r.send("b10 AUTHENTICATE LOGIN\r\n")
        self.assertEqual(r.line(), "+ VXNlcm5hbWU6")
        r.send("=\r\n")  # "=" is only for the initial response (RFC 4959)
        self.assertEqual(r.line(), "b10 BAD Invalid base64 in the authentication exchange")
        # BAD base64 is not a failed login: the connection is still usable.
        r.send("b11 AUTHENTICATE PLAIN %s\r\n" % b64(b"\0demouser\0demopass"))
        self.assertTrue(r.line().startswith("b11 OK [CAPABILITY"))

    def test_authenticate_failures(self):
        r, _ = self.imaps_raw()
        start = time.monotonic()
        r.send("f1 AUTHENTICATE PLAIN %s\r\n" % b64(b"\0demouser\0wrong"))
        self.assertEqual(r.line(), "f1 NO [AUTHENTICATIONFAILED] Authentication failed")
        self.assertGreaterEqual(time.monotonic() - start, 0.04)  # the LOGIN failure delay
        r.send("f2 AUTHENTICATE PLAIN %s\r\n" % b64(b"someoneelse\0demouser\0demopass"))
        self.assertEqual(r.line(), "f2 NO [AUTHENTICATIONFAILED] Authentication failed")
        r.send("f3 AUTHENTICATE PLAIN =\r\n")  # an empty PLAIN message is malformed
        self.assertEqual(r.line(), "f3 NO [AUTHENTICATIONFAILED] Authentication failed")
        self.assertEqual(r.line(), "* BYE Too many failed logins")  # failures count as LOGIN's
        self.assertTrue(r.closed())
        self.assertTrue(self.wait_log("reason=\"authorization identity is not the user\""))

    def test_authenticate_login_wrong_password_and_unknown_mechanism(self):
        r, _ = self.imaps_raw()
        r.send("w1 AUTHENTICATE CRAM-MD5\r\n")
        self.assertEqual(r.line(), "w1 NO Unsupported authentication mechanism")
        r.send("w2 AUTHENTICATE LOGIN %s\r\n" % b64(b"demouser"))
        self.assertEqual(r.line(), "+ UGFzc3dvcmQ6")
        r.send(b64(b"nope") + "\r\n")
        self.assertEqual(r.line(), "w2 NO [AUTHENTICATIONFAILED] Authentication failed")
        r.send("w3 AUTHENTICATE PLAIN %s\r\n" % b64(b"\0nosuchuser\0demopass"))
        self.assertEqual(r.line(), "w3 NO [AUTHENTICATIONFAILED] Authentication failed")
        r.send("w4 AUTHENTICATE\r\n")
        self.assertEqual(r.line(), "w4 BAD Wrong number of arguments")

    def test_authenticate_over_plaintext_loopback(self):
        r = self.raw()
        self.assertIn("AUTH=PLAIN", r.line())
        r.send("x1 AUTHENTICATE PLAIN %s\r\n" % b64(b"\0demouser\0demopass"))
        self.assertTrue(r.line().startswith("x1 OK [CAPABILITY"))

    def test_debug_transcript_masks_secrets(self):
        r, _ = self.imaps_raw()
        secret = b64(b"\0demouser\0s3cr3t-in-ir")
        r.send("m1 AUTHENTICATE PLAIN %s\r\n" % secret)
        self.assertTrue(r.line().startswith("m1 NO"))
        r.send("m2 AUTHENTICATE LOGIN\r\n")
        r.line()
        r.send(b64(b"demouser") + "\r\n")
        r.line()
        second = b64(b"s3cr3t-in-line")
        r.send(second + "\r\n")
        self.assertTrue(r.line().startswith("m2 NO"))
        self.assertTrue(self.wait_log("line=\"***\""))
        log = self.server.log_text()
        self.assertNotIn(secret, log)
        self.assertNotIn(second, log)
        self.assertNotIn("s3cr3t", log)

    # --- LOGINDISABLED ---------------------------------------------------------------------

    def test_logindisabled_off_loopback(self):
        addr = non_loopback_ipv4()
        if addr is None:
            self.skipTest("this machine has no non-loopback IPv4 address (hostname -I)")
        r = self.raw(self.wide_port, host=addr)
        greeting = r.line()
        self.assertIn("LOGINDISABLED", greeting)
        self.assertIn("STARTTLS", greeting)
        self.assertNotIn("AUTH=", greeting)
        self.assertNotIn("SASL-IR", greeting)
        r.send("d1 LOGIN demouser demopass\r\n")
        self.assertEqual(r.line(), "d1 NO [PRIVACYREQUIRED] Use STARTTLS or the IMAPS port to log in")
        r.send("d2 AUTHENTICATE PLAIN %s\r\n" % b64(b"\0demouser\0demopass"))
        self.assertEqual(r.line(), "d2 NO [PRIVACYREQUIRED] Use STARTTLS or the IMAPS port to log in")
        r.send("d3 STARTTLS\r\n")
        self.assertEqual(r.line(), "d3 OK Begin TLS negotiation now")
        r.start_tls(self.ctx)
        r.send("d4 CAPABILITY\r\n")
        lines = r.until_tagged("d4")
        self.assertIn("AUTH=PLAIN", lines[0])
        self.assertNotIn("LOGINDISABLED", lines[0])
        r.send("d5 LOGIN demouser demopass\r\n")
        self.assertTrue(r.line().startswith("d5 OK [CAPABILITY"))

    def test_allow_plaintext_auth(self):
        addr = non_loopback_ipv4()
        if addr is None:
            self.skipTest("this machine has no non-loopback IPv4 address (hostname -I)")
        port = harness.free_port()
        other = harness.Cimapd(self.redis.url, "--listen", "0.0.0.0:%d" % port,
                               "--allow-plaintext-auth", demo=False)
        try:
            r = self.raw(port, host=addr)
            greeting = r.line()
            self.assertNotIn("LOGINDISABLED", greeting)
            self.assertNotIn("STARTTLS", greeting)  # no certificate on this one
            self.assertIn("AUTH=PLAIN", greeting)
            r.send("e1 LOGIN demouser demopass\r\n")
            self.assertTrue(r.line().startswith("e1 OK [CAPABILITY"))
            r.send("e2 LOGOUT\r\n")
            r.until_tagged("e2")
        finally:
            code = other.stop()
            log = other.log_text()
            other.cleanup()
        self.assertEqual(code, 0, log[-3000:])

    # --- operations --------------------------------------------------------------------------

    def test_sighup_reloads_certificate(self):
        self.server.proc.send_signal(signal.SIGHUP)
        self.assertTrue(self.wait_log("event=reload tls=ok"))
        self.assertTrue(self.server.alive())
        r, _ = self.imaps_raw()
        r.send("h1 NOOP\r\n")
        self.assertEqual(r.line(), "h1 OK NOOP completed")


@unittest.skipIf(OPENSSL is None, "openssl command not installed")
class TlsStartupTest(unittest.TestCase):
    """cimapd refuses to start with a broken TLS configuration."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="cimap-tls-")
        cls.cert, cls.key = make_cert(cls.tmp, "a")
        cls.cert_b, cls.key_b = make_cert(cls.tmp, "b", kind="rsa")
        cls.garbage = os.path.join(cls.tmp, "garbage.pem")
        with open(cls.garbage, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def start(self, *args):
        port = harness.free_port()
        p = subprocess.run([harness.CIMAPD, "--redis", "redis://127.0.0.1:1",
                            "--listen", "127.0.0.1:%d" % port, *args],
                           capture_output=True, timeout=30)
        return p.returncode, p.stderr.decode(errors="replace")

    def test_mismatched_key(self):
        code, err = self.start("--tls-cert", self.cert, "--tls-key", self.key_b)
        self.assertEqual(code, 64, err)
        self.assertIn("does not match", err)

    def test_missing_files(self):
        code, err = self.start("--tls-cert", os.path.join(self.tmp, "nope.pem"),
                               "--tls-key", self.key)
        self.assertEqual(code, 64, err)
        self.assertIn("certificate chain", err)
        code, err = self.start("--tls-cert", self.cert, "--tls-key",
                               os.path.join(self.tmp, "nope.key"))
        self.assertEqual(code, 64, err)
        self.assertIn("private key", err)

    def test_not_pem(self):
        code, err = self.start("--tls-cert", self.garbage, "--tls-key", self.key)
        self.assertEqual(code, 64, err)

    def test_tls_listener_without_certificate(self):
        code, err = self.start("--listen-tls", "127.0.0.1:%d" % harness.free_port())
        self.assertEqual(code, 64, err)
        self.assertIn("--listen-tls needs --tls-cert", err)
        code, err = self.start("--tls-cert", self.cert)
        self.assertEqual(code, 64, err)


if __name__ == "__main__":
    unittest.main()
