#!/usr/bin/env python3
"""Memory per idle logged-in connection, plaintext and TLS (a benchmark, not a test).

Starts a private redis-server and, for each mode, a fresh cimapd (so the allocator state of one
mode does not flatter the other), opens N connections that each log in and then sit idle, and
reports cimapd's RSS growth divided by N. TLS connections use IMAPS with a self-signed
certificate made at run time (openssl); the handshake is TLS 1.3 with the default suites.
DESIGN.md targets: <= 20 KiB per plaintext, <= 48 KiB per TLS connection.

Usage: tests/bench/tls_idle_memory.py [-n 1000] [--select]      (CIMAPD=path/to/cimapd)
"""

import argparse
import os
import resource
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness  # noqa: E402  pylint: disable=wrong-import-position


def make_cert(directory):
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=localhost",
                    "-days", "1", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key


class Conn:
    def __init__(self, port, ctx):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock = ctx.wrap_socket(sock, server_hostname="localhost") if ctx else sock
        self.buf = b""

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("server closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode(errors="replace")

    def command(self, tag, text):
        self.sock.sendall(("%s %s\r\n" % (tag, text)).encode())
        while True:
            line = self.line()
            if line.startswith(tag + " "):
                return line


def measure(redis, n, tls, select, tmp):
    args = ["--max-connections", str(2 * n + 100), "--workers", "2"]
    ctx = None
    port = None
    if tls:
        cert, key = make_cert(tmp)
        port = harness.free_port()
        args += ["--listen-tls", "127.0.0.1:%d" % port, "--tls-cert", cert, "--tls-key", key]
        ctx = ssl.create_default_context(cafile=cert)
    server = harness.Cimapd(redis.url, *args)
    port = port or server.port
    harness.wait_port(port, proc=server.proc)
    harness.wait_for_user(redis)
    conns = []
    try:
        # Warm up (lazy allocations, first handshake, Redis pool), then take the baseline.
        for _ in range(20):
            c = Conn(port, ctx)
            c.line()
            assert c.command("w", "LOGIN demouser demopass").startswith("w OK")
            c.sock.close()
        time.sleep(0.5)
        before = server.rss_kib()
        start = time.monotonic()
        for i in range(n):
            c = Conn(port, ctx)
            c.line()
            reply = c.command("a%d" % i, "LOGIN demouser demopass")
            if not reply.startswith("a%d OK" % i):
                raise RuntimeError("login %d: %s" % (i, reply))
            if select:
                reply = c.command("s%d" % i, "SELECT INBOX")
                if not reply.startswith("s%d OK" % i):
                    raise RuntimeError("select %d: %s" % (i, reply))
            conns.append(c)
        elapsed = time.monotonic() - start
        time.sleep(1.0)  # let the last responses flush and buffers be released
        after = server.rss_kib()
        return before, after, elapsed
    finally:
        for c in conns:
            c.sock.close()
        server.stop()
        server.cleanup()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=1000, help="connections per mode (default 1000)")
    ap.add_argument("--select", action="store_true", help="also SELECT INBOX on each connection")
    opts = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, 2 * opts.n + 256))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))  # cimapd inherits it
    if want < opts.n + 64:
        sys.exit("open-file limit %d too low for -n %d" % (want, opts.n))

    tmp = tempfile.mkdtemp(prefix="cimap-bench-")
    redis = harness.Redis()
    try:
        print("cimapd: %s   connections per mode: %d%s" % (harness.CIMAPD, opts.n,
                                                          "   (INBOX selected)" if opts.select else ""))
        print("%-10s %12s %12s %14s %10s" % ("mode", "RSS before", "RSS after", "KiB/connection",
                                              "setup s"))
        for tls in (False, True):
            before, after, elapsed = measure(redis, opts.n, tls, opts.select, tmp)
            print("%-10s %9d KiB %9d KiB %14.1f %10.2f" % ("TLS" if tls else "plaintext", before,
                                                          after, (after - before) / opts.n,
                                                          elapsed))
    finally:
        redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
