"""The operator's HTTP port (issue 10): /healthz, /readyz, /metrics fetched with curl.

Covers: liveness; readiness true only with Redis reachable, maxmemory-policy noeviction (changed
at run time with CONFIG SET), false while Redis is down and true again after it returns; 404 and
405; /metrics parsed by a strict text-format 0.0.4 parser (written here) and its counters moving
with IMAP traffic; the persistence policy (AOF, appendfsync) as labels; start-up refused on a
keyspace schema newer than the build knows.
"""

import math
import re
import shutil
import subprocess
import time
import unittest

import harness

CURL = shutil.which("curl")

NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


class PromError(Exception):
    pass


def parse_value(text):
    if text in ("+Inf", "Inf"):
        return math.inf
    if text == "-Inf":
        return -math.inf
    if text == "NaN":
        return math.nan
    if not re.fullmatch(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?", text):
        raise PromError("bad value %r" % text)
    return float(text)


def parse_labels(text, lineno):
    """Parses the inside of {...}: name="value" pairs, escapes \\\\ \\" \\n only."""
    labels, i = {}, 0
    while i < len(text):
        eq = text.find("=", i)
        if eq < 0:
            raise PromError("line %d: label without '='" % lineno)
        name = text[i:eq]
        if not LABEL_RE.match(name) or name in labels:
            raise PromError("line %d: bad or repeated label name %r" % (lineno, name))
        if eq + 1 >= len(text) or text[eq + 1] != '"':
            raise PromError("line %d: label value not quoted" % lineno)
        j, value = eq + 2, []
        while True:
            if j >= len(text):
                raise PromError("line %d: unterminated label value" % lineno)
            ch = text[j]
            if ch == "\\":
                nxt = text[j + 1:j + 2]
                if nxt not in ("\\", '"', "n"):
                    raise PromError("line %d: bad escape" % lineno)
                value.append("\n" if nxt == "n" else nxt)
                j += 2
            elif ch == '"':
                j += 1
                break
            elif ch == "\n":
                raise PromError("line %d: raw newline in label" % lineno)
            else:
                value.append(ch)
                j += 1
        labels[name] = "".join(value)
        if j < len(text):
            if text[j] != ",":
                raise PromError("line %d: expected ',' between labels" % lineno)
            j += 1
        i = j
    return labels


def family_of(name, types):
    """The family a sample belongs to (histogram samples carry suffixes)."""
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[:-len(suffix)]
        if name.endswith(suffix) and types.get(base) in ("histogram", "summary"):
            return base
    return name


def parse_prometheus(text):
    """Strict text format 0.0.4. Returns {family: {"type", "help", "samples": [(name, labels, v)]}}."""
    if not text.endswith("\n"):
        raise PromError("exposition must end with a newline")
    families, types, seen, closed = {}, {}, set(), set()
    current = None
    for lineno, line in enumerate(text[:-1].split("\n"), 1):
        if line == "":
            raise PromError("line %d: empty line" % lineno)
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 2 and parts[1] in ("HELP", "TYPE"):
                if len(parts) < 4 or not NAME_RE.match(parts[2]):
                    raise PromError("line %d: malformed %s" % (lineno, parts[1]))
                fam = families.setdefault(parts[2], {"type": None, "help": None, "samples": []})
                if parts[2] in closed:
                    raise PromError("line %d: %s after its samples" % (lineno, parts[2]))
                key = parts[1].lower()
                if fam[key] is not None:
                    raise PromError("line %d: second %s for %s" % (lineno, parts[1], parts[2]))
                if key == "type":
                    if parts[3] not in TYPES:
                        raise PromError("line %d: unknown type %r" % (lineno, parts[3]))
                    if fam["samples"]:
                        raise PromError("line %d: TYPE after samples" % lineno)
                    types[parts[2]] = parts[3]
                fam[key] = parts[3]
            continue
        m = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)( -?\d+)?", line)
        if not m:
            raise PromError("line %d: malformed sample %r" % (lineno, line))
        name, labels = m.group(1), parse_labels(m.group(3) or "", lineno)
        value = parse_value(m.group(4))
        fam_name = family_of(name, types)
        if current is not None and fam_name != current:
            closed.add(current)
        if fam_name in closed:
            raise PromError("line %d: samples of %s are not contiguous" % (lineno, fam_name))
        current = fam_name
        key = (name, tuple(sorted(labels.items())))
        if key in seen:
            raise PromError("line %d: duplicate sample %r" % (lineno, key))
        seen.add(key)
        fam = families.setdefault(fam_name, {"type": None, "help": None, "samples": []})
        fam["samples"].append((name, labels, value))
    for fam_name, fam in families.items():
        if fam["type"] == "counter":
            for name, _, v in fam["samples"]:
                if not v >= 0:
                    raise PromError("%s: negative or NaN counter" % name)
        if fam["type"] == "histogram":
            check_histogram(fam_name, fam["samples"])
    return families


def check_histogram(fam_name, samples):
    series = {}
    for name, labels, v in samples:
        rest = tuple(sorted((k, x) for k, x in labels.items() if k != "le"))
        s = series.setdefault(rest, {"buckets": [], "sum": None, "count": None})
        if name == fam_name + "_bucket":
            if "le" not in labels:
                raise PromError("%s: bucket without le" % fam_name)
            s["buckets"].append((parse_value(labels["le"]), v))
        elif name == fam_name + "_sum":
            s["sum"] = v
        elif name == fam_name + "_count":
            s["count"] = v
        else:
            raise PromError("%s: stray sample %s" % (fam_name, name))
    for rest, s in series.items():
        les = [le for le, _ in s["buckets"]]
        if not les or les[-1] != math.inf or les != sorted(les) or len(set(les)) != len(les):
            raise PromError("%s%r: buckets must rise and end with +Inf" % (fam_name, rest))
        counts = [c for _, c in s["buckets"]]
        if counts != sorted(counts):
            raise PromError("%s%r: buckets not cumulative" % (fam_name, rest))
        if s["count"] is None or s["sum"] is None or s["count"] != counts[-1]:
            raise PromError("%s%r: _count must equal the +Inf bucket" % (fam_name, rest))


def value(families, family, name=None, **labels):
    """One sample's value, or None."""
    fam = families.get(family)
    if fam is None:
        return None
    for n, ls, v in fam["samples"]:
        if n == (name or family) and all(ls.get(k) == x for k, x in labels.items()):
            return v
    return None


class PrometheusParserTest(unittest.TestCase):
    """The parser is strict enough to mean something."""

    def test_rejects(self):
        bad = [
            "x 1",  # no final newline
            "x{a=\"1\"} 1\nx{a=\"1\"} 2\n",  # duplicate
            "# TYPE x counter\n# TYPE x gauge\nx 1\n",
            "x{a=1} 1\n",
            "x{a=\"\\q\"} 1\n",
            "x one\n",
            "x 1\ny 1\nx 2\n",  # not contiguous
            "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
            "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",
            "# TYPE c counter\nc -1\n",
            "\n",
        ]
        for text in bad:
            with self.assertRaises(PromError, msg=text):
                parse_prometheus(text)

    def test_accepts(self):
        fams = parse_prometheus("# HELP a An \"a\".\n# TYPE a counter\na{x=\"q\\\"\\n\"} 3\n"
                                "# TYPE h histogram\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 2\n"
                                "h_sum 0.7\nh_count 2\n")
        self.assertEqual(value(fams, "a", x="q\"\n"), 3)
        self.assertEqual(value(fams, "h", "h_count"), 2)


def curl(port, path, *extra):
    """(status, body) of GET http://127.0.0.1:port/path."""
    p = subprocess.run([CURL, "-s", "-o", "-", "-w", "\n%{http_code}", *extra,
                        "http://127.0.0.1:%d%s" % (port, path)],
                       capture_output=True, timeout=20, check=False)
    out = p.stdout.decode()
    body, _, code = out.rpartition("\n")
    return int(code or 0), body


def wait_for(pred, timeout=15.0, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return False


@unittest.skipIf(CURL is None, "curl not installed")
class HttpTest(unittest.TestCase):
    def setUp(self):
        self.redis = harness.Redis()
        self.http = harness.free_port()
        self.server = harness.Cimapd(self.redis.url, "--http", "127.0.0.1:%d" % self.http,
                                     "--lease-ttl", "3")
        harness.wait_for_user(self.redis)
        self.assertTrue(wait_for(lambda: curl(self.http, "/readyz")[0] == 200),
                        self.server.log_text()[-2000:])

    def tearDown(self):
        code = self.server.stop()
        log = self.server.log_text()
        self.server.cleanup()
        self.redis.stop()
        self.assertEqual(code, 0, log[-3000:])

    def metrics(self):
        code, body = curl(self.http, "/metrics")
        self.assertEqual(code, 200)
        return parse_prometheus(body)

    def test_endpoints(self):
        self.assertEqual(curl(self.http, "/healthz"), (200, "ok\n"))
        self.assertEqual(curl(self.http, "/readyz"), (200, "ready\n"))
        self.assertEqual(curl(self.http, "/nothing")[0], 404)
        self.assertIn(curl(self.http, "/healthz", "-X", "POST")[0], (405, 501))  # evhttp: 501
        p = subprocess.run([CURL, "-s", "-D", "-", "-o", "/dev/null",
                            "http://127.0.0.1:%d/metrics" % self.http],
                           capture_output=True, timeout=20, check=True)
        self.assertIn("text/plain; version=0.0.4", p.stdout.decode())

    def test_metrics_move_with_traffic(self):
        before = self.metrics()
        r = harness.Raw(self.server.port)
        r.line()
        r.send("a1 LOGIN demouser demopass\r\n")
        self.assertTrue(r.until_tagged("a1")[-1].startswith("a1 OK"))
        r.send("a2 NOOP\r\na3 SELECT INBOX\r\na4 UID FETCH 1:* (FLAGS)\r\n")
        r.until_tagged("a4")
        r.send("a5 BOGUS\r\n")
        r.until_tagged("a5")
        r.send("a6 IDLE\r\n")
        self.assertTrue(r.line().startswith("+"))
        during = self.metrics()
        self.assertEqual(value(during, "cimap_connections", state="selected"), 1)
        self.assertEqual(value(during, "cimap_connections", state="idle"), 1)
        r.send("DONE\r\n")
        r.until_tagged("a6")
        r.send("a7 LOGOUT\r\n")
        r.until_tagged("a7")
        r.close()
        r2 = harness.Raw(self.server.port)
        r2.line()
        r2.send("b1 LOGIN demouser wrong\r\n")
        r2.until_tagged("b1")
        r2.close()
        after = self.metrics()

        def grew(family, name=None, by=1, **labels):
            old = value(before, family, name, **labels) or 0
            new = value(after, family, name, **labels)
            self.assertIsNotNone(new, (family, labels))
            self.assertGreaterEqual(new - old, by, (family, labels, old, new))

        grew("cimap_commands_total", command="NOOP", result="OK")
        grew("cimap_commands_total", command="LOGIN", result="OK")
        grew("cimap_commands_total", command="LOGIN", result="NO")
        grew("cimap_commands_total", command="UID FETCH", result="OK")
        grew("cimap_commands_total", command="IDLE", result="OK")
        grew("cimap_command_duration_seconds", "cimap_command_duration_seconds_count",
             command="SELECT")
        grew("cimap_protocol_errors_total", by=0)
        grew("cimap_logins_total", result="ok")
        grew("cimap_logins_total", result="failed")
        grew("cimap_connections_accepted_total", by=2)
        grew("cimap_client_bytes_received_total", by=100)
        grew("cimap_client_bytes_sent_total", by=300)
        grew("cimap_redis_requests_total", by=3)
        self.assertEqual(value(after, "cimap_ready"), 1)
        self.assertEqual(value(after, "cimap_build_info", version="0.1.0"), 1)
        self.assertEqual(value(after, "cimap_frontends_live"), 1)
        self.assertEqual(value(after, "cimap_redis_persistence_info", appendonly="no",
                               maxmemory_policy="noeviction"), 1)
        for family in ("cimap_pubsub_wakeups_total", "cimap_redis_reconnects_total",
                       "cimap_tls_handshakes_total", "cimap_redis_errors_total"):
            self.assertIn(family, after)

    def test_persistence_labels(self):
        c = self.redis.client()
        c.call("CONFIG", "SET", "appendonly", "yes")
        c.call("CONFIG", "SET", "appendfsync", "always")
        c.close()
        self.assertTrue(wait_for(lambda: value(self.metrics(), "cimap_redis_persistence_info",
                                               appendonly="yes", appendfsync="always") == 1))
        self.assertIn("event=redis.persistence appendonly=yes appendfsync=always",
                      self.server.log_text())

    def test_ready_follows_eviction_policy(self):
        c = self.redis.client()
        c.call("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
        self.assertTrue(wait_for(lambda: curl(self.http, "/readyz")[0] == 503))
        code, body = curl(self.http, "/readyz")
        self.assertIn("maxmemory-policy", body)
        self.assertEqual(len(body.strip().split("\n")), 1)
        self.assertEqual(value(self.metrics(), "cimap_ready"), 0)
        c.call("CONFIG", "SET", "maxmemory-policy", "noeviction")
        c.close()
        self.assertTrue(wait_for(lambda: curl(self.http, "/readyz")[0] == 200))

    def test_ready_follows_redis(self):
        self.redis.kill()
        self.assertTrue(wait_for(lambda: curl(self.http, "/readyz")[0] == 503))
        code, body = curl(self.http, "/readyz")
        self.assertIn("redis", body)
        self.assertEqual(curl(self.http, "/healthz")[0], 200)  # alive all the same
        self.redis.start()
        self.assertTrue(wait_for(lambda: curl(self.http, "/readyz")[0] == 200, timeout=30),
                        curl(self.http, "/readyz"))
        fams = self.metrics()
        self.assertGreaterEqual(value(fams, "cimap_redis_reconnects_total"), 1)
        self.assertGreaterEqual(value(fams, "cimap_redis_errors_total", kind="unavailable"), 0)


class SchemaGateTest(unittest.TestCase):
    """Rolling upgrades: a front end refuses a keyspace newer than it knows, clearly."""

    def test_newer_schema_refuses_start(self):
        redis = harness.Redis()
        try:
            c = redis.client()
            c.call("SET", "/schema", "999")
            c.close()
            p = subprocess.run([harness.CIMAPD, "--redis", redis.url, "--listen",
                                "127.0.0.1:%d" % harness.free_port()],
                               capture_output=True, timeout=30, check=False)
            err = p.stderr.decode(errors="replace")
            self.assertEqual(p.returncode, 78, err)  # EX_CONFIG
            self.assertIn("event=startup.schema_newer have=999 known=1", err)
            self.assertIn("cannot serve a newer keyspace", err)
            c = redis.client()
            self.assertEqual(c.call("GET", "/schema"), b"999")  # untouched
            c.close()
        finally:
            redis.stop()


if __name__ == "__main__":
    unittest.main()
