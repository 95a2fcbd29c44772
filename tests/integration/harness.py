"""Test harness for cimap integration tests: real redis-server, real cimapd, real clients.

Every test process starts its own redis-server on a free loopback port (no persistence unless
asked) and its own cimapd, and stops both at the end. Binaries come from the environment
(CIMAPD, CIMAP_ADMIN; default build/cimapd, build/cimap-admin) so the same tests run against a
normal and a sanitizer build. Python standard library only.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CIMAPD = os.environ.get("CIMAPD", os.path.join(ROOT, "build", "cimapd"))
CIMAP_ADMIN = os.environ.get("CIMAP_ADMIN", os.path.join(ROOT, "build", "cimap-admin"))
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
TEST_KDF_COST = "1000"  # documented low cost, for tests only
# Under ASan freed memory sits in quarantine, so RSS bounds are checked on the normal build only.
SANITIZED = os.environ.get("CIMAP_SANITIZED") == "1"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("process exited with %s" % proc.returncode)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("port %d did not open" % port)


class Resp:
    """A minimal RESP2 client, enough to inspect what cimap wrote."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def close(self):
        self.sock.close()

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise ValueError("bad RESP: %r" % line)

    def call(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, str):
                a = a.encode()
            elif isinstance(a, int):
                a = str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))
        r = self._reply()
        if isinstance(r, RuntimeError):
            raise r
        return r

    def keys(self, pattern="*"):
        found, cursor = set(), b"0"
        while True:
            cursor, batch = self.call("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
            found.update(k.decode() for k in batch)
            if cursor == b"0":
                return found


class Redis:
    """A private redis-server on a free loopback port. persist=True keeps an RDB in a temp dir."""

    def __init__(self, persist=False):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="cimap-redis-")
        self.persist = persist
        self.proc = None
        self.start()

    @property
    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    def start(self):
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", self.dir, "--appendonly", "no", "--daemonize", "no",
                "--maxmemory-policy", "noeviction", "--loglevel", "warning"]
        args += ["--save", "3600 1"] if self.persist else ["--save", ""]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                r = Resp(self.port)
                if r.call("PING") == "PONG":
                    r.close()
                    return
            except (OSError, RuntimeError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def client(self):
        return Resp(self.port)

    def kill(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def stop(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class Cimapd:
    """A cimapd on a free loopback port, logging to a file the test can read."""

    def __init__(self, redis_url, *extra, demo=True, wait_ready=True):
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="cimapd-", suffix=".log", delete=False)
        args = [CIMAPD, "--redis", redis_url, "--listen", "127.0.0.1:%d" % self.port,
                "--kdf-cost", TEST_KDF_COST, "--login-fail-delay", "50"]
        if demo:
            args.append("--demo-data")
        args += list(extra)
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(self.port, proc=self.proc)
        if wait_ready:
            self.wait_started()

    def wait_started(self, timeout=20.0):
        """Waits until start-up finished (Redis reached, schema checked, demo data written)."""
        deadline = time.monotonic() + timeout
        while "event=startup.done" not in self.log_text():
            if self.proc.poll() is not None:
                raise RuntimeError("cimapd exited with %s" % self.proc.returncode)
            if time.monotonic() > deadline:
                raise RuntimeError("cimapd start-up did not finish:\n" + self.log_text()[-2000:])
            time.sleep(0.02)

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def log_text(self):
        with open(self.log.name, "rb") as f:
            return f.read().decode(errors="replace")

    def alive(self):
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """Stops cimapd; returns its exit status (a sanitizer report makes it non-zero)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def cleanup(self):
        try:
            os.unlink(self.log.name)
        except OSError:
            pass


def wait_for_user(redis, login="demouser", timeout=10.0):
    """Waits until the login record exists (--demo-data creates it asynchronously)."""
    r = redis.client()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if r.call("EXISTS", "/users/" + login) == 1:
                return
            time.sleep(0.02)
        raise RuntimeError("user %s never appeared" % login)
    finally:
        r.close()


class Raw:
    """A raw IMAP connection for transcript-style tests: send bytes, read lines."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed; pending %r" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode(errors="replace")

    def until_tagged(self, tag):
        """Reads lines up to and including the one tagged tag; returns all of them."""
        lines = []
        while True:
            line = self.line()
            lines.append(line)
            if line.startswith(tag + " "):
                return lines

    def closed(self, timeout=5):
        """True when the server closes the connection (reads and drops data until EOF)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True

    def close(self):
        self.sock.close()
