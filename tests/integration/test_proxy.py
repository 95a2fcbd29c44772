"""PROXY protocol v1/v2 in front of IMAP and IMAPS (issue 10), against a real cimapd.

Covers: a v1 and a v2 header from a trusted peer name the client in the logs and take the
loopback exemption away (LOGINDISABLED for a non-loopback client over plaintext); v2 LOCAL keeps
the socket's address; an untrusted peer, a malformed header and a client that speaks IMAP first
are closed without a greeting; PROXY + STARTTLS; PROXY + IMAPS with the header and the ClientHello
in separate packets and in one; the metrics count headers.
"""

import re
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import time
import unittest

import harness
from test_tls import OPENSSL, make_cert


def v1(src, sport, dst="10.0.0.1", dport=143, proto="TCP4"):
    return ("PROXY %s %s %s %d %d\r\n" % (proto, src, dst, sport, dport)).encode()


V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v2_tcp4(src, sport, dst="10.0.0.1", dport=993, tlv=b""):
    body = socket.inet_pton(socket.AF_INET, src) + socket.inet_pton(socket.AF_INET, dst) + \
        struct.pack("!HH", sport, dport) + tlv
    return V2_SIG + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


def v2_tcp6(src, sport, dst="2001:db8::1", dport=143):
    body = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst) + \
        struct.pack("!HH", sport, dport)
    return V2_SIG + bytes([0x21, 0x21]) + struct.pack("!H", len(body)) + body


def v2_local():
    return V2_SIG + bytes([0x20, 0x00, 0x00, 0x00])


def client_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class BioTLS:
    """A TLS client over a socket driven through memory BIOs, so the ClientHello can be sent in
    the same packet as the PROXY header."""

    def __init__(self, sock, header):
        self.sock = sock
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = client_ctx().wrap_bio(self.inc, self.out, server_hostname="localhost")
        try:
            self.obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        self.sock.sendall(header + self.out.read())  # one write: header + ClientHello
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                pending = self.out.read()
                if pending:
                    self.sock.sendall(pending)
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionError("closed during the handshake")
                self.inc.write(data)
        pending = self.out.read()
        if pending:
            self.sock.sendall(pending)
        self.buf = b""

    def send(self, text):
        self.obj.write(text.encode())
        self.sock.sendall(self.out.read())

    def line(self):
        while b"\r\n" not in self.buf:
            try:
                self.buf += self.obj.read(65536)
                continue
            except ssl.SSLWantReadError:
                pass
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed")
            self.inc.write(data)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode()


@unittest.skipIf(OPENSSL is None, "openssl command not installed")
class ProxyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="cimap-proxy-")
        cls.cert, cls.key = make_cert(cls.tmp, "p")
        cls.redis = harness.Redis()
        cls.tls_port = harness.free_port()
        cls.http = harness.free_port()
        cls.server = harness.Cimapd(cls.redis.url, "--proxy-protocol", "--tls-cert", cls.cert,
                                    "--tls-key", cls.key, "--listen-tls",
                                    "127.0.0.1:%d" % cls.tls_port,
                                    "--http", "127.0.0.1:%d" % cls.http)
        harness.wait_for_user(cls.redis)

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        log = cls.server.log_text()
        cls.server.cleanup()
        cls.redis.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        assert code == 0, log[-3000:]

    def connect(self, header, port=None):
        r = harness.Raw(port or self.server.port)
        r.send(header)
        return r

    def wait_log(self, pattern, timeout=5):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.server.log_text())
            if m:
                return m
            time.sleep(0.05)
        self.fail("no log line matching %r" % pattern)

    def test_v1_names_the_client(self):
        r = self.connect(v1("192.0.2.7", 50000))
        greeting = r.line()
        self.assertTrue(greeting.startswith("* OK"), greeting)
        self.assertIn("LOGINDISABLED", greeting)  # 192.0.2.7 is not loopback: no plaintext login
        r.send("a1 LOGIN demouser demopass\r\n")
        lines = r.until_tagged("a1")
        self.assertTrue(lines[-1].startswith("a1 NO [PRIVACYREQUIRED]"), lines)
        r.close()
        m = self.wait_log(r"event=conn.proxy conn=(\d+) peer=192\.0\.2\.7:50000 "
                          r"proxy=127\.0\.0\.1:\d+ version=1 local=0")
        self.wait_log(r"event=conn.close conn=%s peer=192\.0\.2\.7:50000" % m.group(1))

    def test_v1_loopback_client_logs_in(self):
        r = self.connect(v1("127.0.0.9", 4242))
        self.assertNotIn("LOGINDISABLED", r.line())
        r.send("a1 LOGIN demouser demopass\r\n")
        self.assertTrue(r.until_tagged("a1")[-1].startswith("a1 OK"))
        r.send("a2 LOGOUT\r\n")
        r.until_tagged("a2")
        self.wait_log(r"event=login conn=\d+ peer=127\.0\.0\.9:4242 user=demouser mech=LOGIN "
                      r"tls=0 result=ok")

    def test_v2_tcp6(self):
        r = self.connect(v2_tcp6("2001:db8::5", 1234))
        self.assertIn("LOGINDISABLED", r.line())
        r.close()
        self.wait_log(r"event=conn.proxy conn=\d+ peer=\[2001:db8::5\]:1234 proxy=127\.0\.0\.1:\d+ "
                      r"version=2 local=0")

    def test_v2_local_keeps_socket_address(self):
        r = self.connect(v2_local())
        self.assertNotIn("LOGINDISABLED", r.line())  # still 127.0.0.1
        r.close()
        self.wait_log(r"event=conn.proxy conn=\d+ peer=127\.0\.0\.1:\d+ proxy=127\.0\.0\.1:\d+ "
                      r"version=2 local=1")

    def test_header_split_and_followed_by_a_command(self):
        hdr = v2_tcp4("198.51.100.3", 7000, tlv=b"\x04\x00\x03abc")
        r = harness.Raw(self.server.port)
        for b in hdr[:20]:
            r.send(bytes([b]))
        r.send(hdr[20:] + b"c1 CAPABILITY\r\n")  # a command right behind the header
        self.assertTrue(r.line().startswith("* OK"))
        lines = r.until_tagged("c1")
        self.assertTrue(lines[0].startswith("* CAPABILITY"))
        r.close()

    def test_malformed_closed(self):
        for junk in (b"GARBAGE\r\n", b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n",
                     b"a1 CAPABILITY\r\n", V2_SIG + b"\x31\x11\x00\x0c" + b"\x00" * 12,
                     b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"):
            r = self.connect(junk)
            self.assertTrue(r.closed(), junk)
            self.assertEqual(r.buf, b"", junk)  # not a byte of greeting
            r.close()
        self.wait_log(r"event=conn.proxy_error conn=\d+ peer=127\.0\.0\.1:\d+ error=")

    def test_starttls_after_proxy(self):
        r = self.connect(v2_tcp4("192.0.2.44", 2525, dport=143))
        greeting = r.line()
        self.assertIn("STARTTLS", greeting)
        r.send("s1 STARTTLS\r\n")
        self.assertTrue(r.line().startswith("s1 OK"))
        r.sock = client_ctx().wrap_socket(r.sock, server_hostname="localhost")
        r.send("s2 LOGIN demouser demopass\r\n")
        self.assertTrue(r.until_tagged("s2")[-1].startswith("s2 OK"))
        r.close()
        self.wait_log(r"event=login conn=\d+ peer=192\.0\.2\.44:2525 user=demouser mech=LOGIN "
                      r"tls=1 result=ok")

    def test_imaps_after_proxy_separate_packets(self):
        s = socket.create_connection(("127.0.0.1", self.tls_port), timeout=10)
        s.sendall(v1("203.0.113.8", 6000, dport=993))
        t = client_ctx().wrap_socket(s, server_hostname="localhost")
        f = t.makefile("rb")
        self.assertTrue(f.readline().startswith(b"* OK"))
        t.sendall(b"i1 LOGIN demouser demopass\r\n")
        self.assertTrue(f.readline().startswith(b"i1 OK"))
        t.close()
        self.wait_log(r"event=login conn=\d+ peer=203\.0\.113\.8:6000 user=demouser mech=LOGIN "
                      r"tls=1 result=ok")

    def test_imaps_after_proxy_one_packet(self):
        s = socket.create_connection(("127.0.0.1", self.tls_port), timeout=10)
        t = BioTLS(s, v2_tcp4("203.0.113.9", 6001))
        self.assertTrue(t.line().startswith("* OK"))
        t.send("i1 NOOP\r\n")
        self.assertEqual(t.line(), "i1 OK NOOP completed")
        s.close()
        self.wait_log(r"event=conn.tls conn=\d+ peer=203\.0\.113\.9:6001 tls=")

    def test_metrics_count_headers(self):
        import test_http
        self.connect(v2_local()).close()
        fams = test_http.parse_prometheus(test_http.curl(self.http, "/metrics")[1])
        self.assertGreaterEqual(test_http.value(fams, "cimap_proxy_headers_total", result="ok"), 1)


class UntrustedProxyTest(unittest.TestCase):
    def test_untrusted_peer_closed(self):
        redis = harness.Redis()
        server = harness.Cimapd(redis.url, "--proxy-protocol", "--proxy-trusted", "10.0.0.0/8",
                                "--proxy-trusted", "2001:db8::/32", demo=False)
        try:
            r = harness.Raw(server.port)
            r.send(v1("192.0.2.7", 50000))
            self.assertTrue(r.closed())
            self.assertEqual(r.buf, b"")
            r.close()
        finally:
            code = server.stop()
            log = server.log_text()
            server.cleanup()
            redis.stop()
        self.assertEqual(code, 0, log[-2000:])
        self.assertRegex(log, r"event=conn.proxy_untrusted peer=127\.0\.0\.1:\d+")
        self.assertNotIn("event=conn.open", log)

    def test_bad_cidr_is_a_usage_error(self):
        p = subprocess.run([harness.CIMAPD, "--proxy-trusted", "10.0.0.1/8"], capture_output=True,
                           timeout=10, check=False)
        self.assertEqual(p.returncode, 64)
        self.assertIn("bits set beyond the prefix", p.stderr.decode())


if __name__ == "__main__":
    unittest.main()
