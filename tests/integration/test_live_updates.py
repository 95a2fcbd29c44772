"""Live updates across front ends (DESIGN.md rules 3 and 4): IDLE and NOOP sessions on other
cimapd processes see APPENDs and EXPUNGEs made through one, in order, with correct sequence
numbers; killing a front end or restarting Redis loses nothing; a deleted mailbox ends the session.

The randomised test keeps a model of the mailbox (its UIDs in order) and replays every untagged
EXISTS / EXPUNGE a session receives onto that session's own copy; at the end, and at checkpoints,
each copy must equal the model.
"""

import queue
import random
import re
import socket
import threading
import time
import unittest

import harness

MSG = b"From: a@example.org\r\nSubject: live %d\r\nMessage-ID: <live-%d@example.org>\r\n\r\nbody\r\n"


class Session:
    """A raw IMAP session whose untagged responses are read by a thread into a queue."""

    def __init__(self, port, mailbox):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.lines = queue.Queue()
        self.buf = b""
        self.closed = False
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.expect(lambda l: l.startswith("* OK"))
        self.command("l LOGIN demouser demopass")
        lines = self.command("s SELECT %s" % mailbox)
        self.exists = [int(m.group(1)) for l in lines for m in [re.match(r"\* (\d+) EXISTS", l)] if m][0]

    def _read(self):
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                self.buf += chunk
                while b"\r\n" in self.buf:
                    line, self.buf = self.buf.split(b"\r\n", 1)
                    self.lines.put(line.decode(errors="replace"))
        except OSError:
            pass
        self.closed = True
        self.lines.put(None)

    def send(self, text):
        self.sock.sendall(text.encode() + b"\r\n")

    def expect(self, pred, timeout=20):
        got = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("timed out; got %r" % got)
            line = self.lines.get(timeout=left)
            if line is None:
                raise ConnectionError("closed; got %r" % got)
            got.append(line)
            if pred(line):
                return got

    def command(self, text):
        tag = text.split(" ", 1)[0]
        self.send(text)
        lines = self.expect(lambda l: l.startswith(tag + " "))
        if not lines[-1].startswith(tag + " OK"):
            raise AssertionError("%s failed: %r" % (text, lines))
        return lines

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Copy:
    """One session's picture of the mailbox, kept from its untagged responses."""

    def __init__(self, uids):
        self.uids = list(uids)
        self.seen_max = max(self.uids) if self.uids else 0  # UIDs are announced in order
        self.flags = {}  # UID -> flags last reported by an unsolicited FETCH

    def apply(self, line, model_appended):
        m = re.match(r"\* (\d+) EXISTS$", line)
        if m:
            n = int(m.group(1))
            if n < len(self.uids):
                raise AssertionError("EXISTS went down: %d < %d" % (n, len(self.uids)))
            newer = [u for u in model_appended if u > self.seen_max]
            self.uids.extend(newer[: n - len(self.uids)])
            if self.uids:
                self.seen_max = max(self.seen_max, self.uids[-1])
            if len(self.uids) != n:
                raise AssertionError("EXISTS %d announces unknown messages" % n)
            return
        m = re.match(r"\* (\d+) EXPUNGE$", line)
        if m:
            seq = int(m.group(1))
            if not 1 <= seq <= len(self.uids):
                raise AssertionError("EXPUNGE %d out of range (%d)" % (seq, len(self.uids)))
            del self.uids[seq - 1]
            return
        m = re.match(r"\* (\d+) FETCH \(UID (\d+) FLAGS \(([^)]*)\)\)$", line)
        if m:
            seq, uid = int(m.group(1)), int(m.group(2))
            if not 1 <= seq <= len(self.uids) or self.uids[seq - 1] != uid:
                raise AssertionError("FETCH %d names UID %d, the session has %r there"
                                     % (seq, uid, self.uids[seq - 1] if 1 <= seq <= len(self.uids) else None))
            self.flags[uid] = set(m.group(3).split()) - {"\\Recent"}


class LiveUpdatesTest(unittest.TestCase):
    def setUp(self):
        self.redis = harness.Redis(persist=True)
        self.servers = [harness.Cimapd(self.redis.url)]
        harness.wait_for_user(self.redis)
        self.servers += [harness.Cimapd(self.redis.url, demo=False) for _ in range(2)]
        self.sessions = []
        # wait for the demo mailboxes
        deadline = time.monotonic() + 10
        while True:
            r = self.redis.client()
            try:
                if any(k.endswith("/mailboxes") for k in r.keys()) and \
                        r.call("HLEN", [k for k in r.keys() if k.endswith("/mailboxes")][0]) >= 6:
                    break
            finally:
                r.close()
            if time.monotonic() > deadline:
                raise RuntimeError("demo mailboxes never appeared")
            time.sleep(0.05)

    def tearDown(self):
        for s in self.sessions:
            s.close()
        codes = []
        for srv in self.servers:
            codes.append(srv.stop())
            srv.cleanup()
        self.redis.stop()
        for srv, code in zip(self.servers, codes):
            if code not in (0, -9):
                raise AssertionError("cimapd exited with %s" % code)

    def session(self, server, mailbox="INBOX"):
        s = Session(server.port, mailbox)
        self.sessions.append(s)
        return s

    def writer(self, server, mailbox):
        w = self.session(server, mailbox)
        return w

    def append(self, w, n, deleted=False, mailbox="Live"):
        uids = []
        for _ in range(n):
            self.counter += 1
            body = MSG % (self.counter, self.counter)
            flags = " (\\Deleted)" if deleted else ""
            w.send("a APPEND %s%s {%d+}" % (mailbox, flags, len(body)))
            w.sock.sendall(body + b"\r\n")
            lines = w.expect(lambda l: l.startswith("a "))
            m = re.search(r"APPENDUID \d+ (\d+)", lines[-1])
            self.assertIsNotNone(m, lines)
            uids.append(int(m.group(1)))
        return uids

    def test_idle_sees_append_from_another_frontend(self):
        a, b = self.servers[0], self.servers[1]
        w = self.session(a)
        self.counter = 0
        w.command("c CREATE Live")
        idler = self.session(b, "Live")
        idler.send("i IDLE")
        idler.expect(lambda l: l == "+ idling")
        start = time.monotonic()
        self.append(w, 1)
        idler.expect(lambda l: l == "* 1 EXISTS", timeout=5)
        latency = time.monotonic() - start
        idler.expect(lambda l: l == "* 1 RECENT")
        idler.send("DONE")
        idler.expect(lambda l: l == "i OK IDLE terminated")
        self.assertLess(latency, 2.0)
        # garbage instead of DONE
        idler.send("j IDLE")
        idler.expect(lambda l: l == "+ idling")
        idler.send("NOPE")
        idler.expect(lambda l: l == "j BAD Expected DONE")

    def test_randomised_against_model(self):
        rnd = random.Random(20261125)
        a, b, c = self.servers
        self.counter = 0
        w = self.session(a)
        w.command("c CREATE Live")
        w.command("x SELECT Live")
        idler = self.session(b, "Live")
        idler.send("i IDLE")
        idler.expect(lambda l: l == "+ idling")
        nooper = self.session(c, "Live")
        model = []          # UIDs in the mailbox, ascending
        appended = []       # every UID ever appended, ascending
        flags = {}          # UID -> set of flags
        changed = set()     # UIDs whose flags a STORE changed (their FETCH must arrive)
        w.command("o CREATE Other")
        idle_copy, noop_copy = Copy([]), Copy([])
        ops = 1000 if not harness.SANITIZED else 300
        for step in range(ops):
            r = rnd.random()
            if r < 0.5 or len(model) < 3:
                n = rnd.randint(1, 3)
                dele = rnd.random() < 0.3
                uids = self.append(w, n, deleted=dele)
                model += uids
                appended += uids
                for u in uids:
                    flags[u] = {"\\Deleted"} if dele else set()
            elif r < 0.7:
                picked = sorted(rnd.sample(model, min(3, len(model))))
                flag = rnd.choice(["\\Flagged", "\\Seen", "\\Deleted"])
                add = rnd.random() < 0.6
                w.command("s UID STORE %s %sFLAGS.SILENT (%s)"
                          % (",".join(map(str, picked)), "+" if add else "-", flag))
                for u in picked:
                    before = set(flags[u])
                    (flags[u].add if add else flags[u].discard)(flag)
                    if flags[u] != before:  # no change, no log entry, no FETCH
                        changed.add(u)
            elif r < 0.85:
                picked = sorted(rnd.sample(model, min(rnd.randint(1, 3), len(model))))
                w.command("m UID MOVE %s Other" % ",".join(map(str, picked)))
                model = [u for u in model if u not in picked]
            else:
                # expunge every \Deleted message through the writer's session
                w.command("e CLOSE")
                w.command("x SELECT Live")
                model = [u for u in model if "\\Deleted" not in flags[u]]
            if rnd.random() < 0.2:
                for line in nooper.command("n NOOP")[:-1]:
                    noop_copy.apply(line, appended)
            while True:
                try:
                    line = idler.lines.get_nowait()
                except queue.Empty:
                    break
                self.assertIsNotNone(line, "IDLE session closed")
                idle_copy.apply(line, appended)
        # quiesce and compare: the same messages in the same order, and the last flags reported
        # for every message a STORE changed are its flags now
        for line in nooper.command("n NOOP")[:-1]:
            noop_copy.apply(line, appended)
        self.assertEqual(noop_copy.uids, model)
        deadline = time.monotonic() + 10
        want = {u: flags[u] for u in changed if u in model}
        def idle_done():
            return idle_copy.uids == model and all(idle_copy.flags.get(u) == f for u, f in want.items())
        while not idle_done() and time.monotonic() < deadline:
            try:
                line = idler.lines.get(timeout=0.2)
            except queue.Empty:
                continue
            self.assertIsNotNone(line)
            idle_copy.apply(line, appended)
        self.assertEqual(idle_copy.uids, model)
        for copy in (idle_copy, noop_copy):
            self.assertEqual({u: copy.flags.get(u) for u in want}, want)
        idler.send("DONE")
        idler.expect(lambda l: l == "i OK IDLE terminated")

    def test_kill_frontend_client_moves_on(self):
        a, b = self.servers[0], self.servers[1]
        self.counter = 0
        w = self.session(a)
        w.command("c CREATE Live")
        victim = self.session(b, "Live")
        victim.send("i IDLE")
        victim.expect(lambda l: l == "+ idling")
        self.append(w, 2)
        victim.expect(lambda l: l == "* 2 EXISTS")
        b.proc.kill()
        b.proc.wait()
        self.append(w, 3)
        # the client reconnects to another front end and sees everything
        again = self.session(self.servers[2], "Live")
        self.assertEqual(again.exists, 5)

    def test_redis_restart_while_idling(self):
        a, b = self.servers[0], self.servers[1]
        self.counter = 0
        w = self.session(a)
        w.command("c CREATE Live")
        rc = self.redis.client()
        rc.call("SAVE")
        rc.close()
        idler = self.session(b, "Live")
        idler.send("i IDLE")
        idler.expect(lambda l: l == "+ idling")
        self.redis.kill()
        self.redis.start()
        # the writer's front end reconnects; retry until Redis serves again
        deadline = time.monotonic() + 20
        while True:
            try:
                w2 = self.session(a)
                break
            except (AssertionError, ConnectionError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        self.counter = 100
        done = False
        while not done:
            try:
                self.append(w2, 1)
                done = True
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        idler.expect(lambda l: l == "* 1 EXISTS", timeout=15)

    def test_deleted_mailbox_ends_session(self):
        a, b = self.servers[0], self.servers[1]
        w = self.session(a)
        w.command("c CREATE Doomed")
        idler = self.session(b, "Doomed")
        idler.send("i IDLE")
        idler.expect(lambda l: l == "+ idling")
        w.command("d DELETE Doomed")
        lines = idler.expect(lambda l: l.startswith("* BYE"), timeout=5)
        self.assertIn("deleted", lines[-1])


if __name__ == "__main__":
    unittest.main()
