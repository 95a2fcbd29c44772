"""Cluster-wide limits through Redis (issue 10): two real cimapd front ends on one Redis.

Covers: --max-user-connections counted across both front ends (NO [LIMIT] at login, a slot
freed by a logout on one is usable on the other); the connections of a killed front end vanish
once its lease runs out, while a live one's never expire; a password-guessing loop spread over
both front ends is refused per user and per client address (NO [UNAVAILABLE], the password not
even checked) and the right password is refused too while throttled; the heartbeat keys
(/frontends, /frontends/<id>) that cimap-admin health will read.
"""

import signal
import time
import unittest

import harness


def connect(port):
    r = harness.Raw(port)
    r.line()
    return r


def login(port, password="demopass", tag="l1"):
    """(connection, tagged answer)."""
    r = connect(port)
    r.send("%s LOGIN demouser %s\r\n" % (tag, password))
    return r, r.until_tagged(tag)[-1]


def wait_for(pred, timeout=15.0, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return False


class Fleet:
    def __init__(self, redis, *flags):
        self.servers = [harness.Cimapd(redis.url, "--lease-ttl", "2", *flags, demo=(i == 0))
                        for i in range(2)]
        harness.wait_for_user(redis)
        c = redis.client()
        assert wait_for(lambda: len(c.call("ZRANGE", "/frontends", 0, -1)) == 2)
        c.close()

    def stop(self):
        codes, logs = [], []
        for s in self.servers:
            codes.append(s.stop())
            logs.append(s.log_text())
            s.cleanup()
        return codes, logs


class UserLimitTest(unittest.TestCase):
    def setUp(self):
        self.redis = harness.Redis()
        self.fleet = Fleet(self.redis, "--max-user-connections", "3")
        self.a, self.b = (s.port for s in self.fleet.servers)
        self.conns = []

    def tearDown(self):
        for r in self.conns:
            r.close()
        codes, logs = self.fleet.stop()
        self.redis.stop()
        for code, log in zip(codes, logs):
            if code not in (0, -signal.SIGKILL):
                self.fail(log[-3000:])

    def ok(self, port):
        r, answer = login(port)
        self.assertTrue(answer.startswith("l1 OK"), answer)
        self.conns.append(r)
        return r

    def test_limit_across_front_ends(self):
        a1 = self.ok(self.a)
        self.ok(self.a)
        self.ok(self.b)
        for port in (self.b, self.a):
            r, answer = login(port)
            self.assertEqual(answer, "l1 NO [LIMIT] Too many connections for this user")
            r.close()
        c = self.redis.client()
        nsid = c.call("HGET", "/users/demouser", "nsid").decode()
        conns = c.call("HGETALL", "/ns/{%s}/conns" % nsid)
        self.assertEqual(sorted(int(v) for v in conns[1::2]), [1, 2])
        # A logout on A frees a slot usable on B.
        a1.send("x LOGOUT\r\n")
        a1.until_tagged("x")
        self.assertTrue(wait_for(lambda: sorted(
            int(v) for v in c.call("HGETALL", "/ns/{%s}/conns" % nsid)[1::2]) == [1, 1]))
        self.ok(self.b)
        r, answer = login(self.b)
        self.assertTrue(answer.startswith("l1 NO [LIMIT]"), answer)
        r.close()
        c.close()
        self.assertIn("result=limit", self.fleet.servers[1].log_text())

    def test_killed_front_end_counts_vanish(self):
        self.ok(self.a)
        self.ok(self.a)
        self.ok(self.b)
        r, answer = login(self.b)
        self.assertTrue(answer.startswith("l1 NO [LIMIT]"), answer)
        r.close()
        self.fleet.servers[0].proc.send_signal(signal.SIGKILL)  # no chance to say goodbye
        self.fleet.servers[0].proc.wait()
        # Within the lease the dead front end's connections still count...
        r, answer = login(self.b)
        self.assertTrue(answer.startswith("l1 NO [LIMIT]"), answer)
        r.close()
        # ...after it (2 s, plus a heartbeat of B to learn it) they are gone.
        time.sleep(3.5)
        self.ok(self.b)
        self.ok(self.b)
        r, answer = login(self.b)
        self.assertTrue(answer.startswith("l1 NO [LIMIT]"), answer)
        r.close()
        c = self.redis.client()
        nsid = c.call("HGET", "/users/demouser", "nsid").decode()
        fields = c.call("HGETALL", "/ns/{%s}/conns" % nsid)
        self.assertEqual(len(fields), 2)  # only B's field is left
        self.assertEqual(fields[1], b"3")
        c.close()

    def test_live_counts_never_expire(self):
        self.ok(self.a)
        self.ok(self.b)
        self.ok(self.b)
        time.sleep(5)  # more than two leases: renewed, so still counted
        r, answer = login(self.a)
        self.assertTrue(answer.startswith("l1 NO [LIMIT]"), answer)
        r.close()

    def test_heartbeat_keys(self):
        c = self.redis.client()
        ids = [x.decode() for x in c.call("ZRANGE", "/frontends", 0, -1)]
        self.assertEqual(len(ids), 2)
        for i in ids:
            self.assertRegex(i, r"^fe-\d{13}-[0-9a-f]{8}$")
            info = c.call("HGETALL", "/frontends/" + i)
            info = {info[k].decode(): info[k + 1].decode() for k in range(0, len(info), 2)}
            self.assertEqual(info["version"], "0.1.0")
            self.assertRegex(info["addr"], r"^127\.0\.0\.1:\d+$")
            self.assertIn("connections", info)
            self.assertIn("started", info)
            ttl = c.call("PTTL", "/frontends/" + i)
            self.assertTrue(0 < ttl <= 2000, ttl)
        c.close()


class ThrottleTest(unittest.TestCase):
    def setUp(self):
        self.redis = harness.Redis()

    def tearDown(self):
        codes, logs = self.fleet.stop()
        self.redis.stop()
        for code, log in zip(codes, logs):
            self.assertEqual(code, 0, log[-3000:])

    def guess(self, n):
        """n wrong passwords, alternating front ends; returns the answers."""
        answers = []
        for i in range(n):
            r, answer = login(self.fleet.servers[i % 2].port, "guess%d" % i)
            answers.append(answer)
            r.close()
        return answers

    def test_user_throttle_over_two_front_ends(self):
        self.fleet = Fleet(self.redis, "--login-throttle-user", "4", "--login-throttle-addr", "0",
                           "--login-throttle-window", "60")
        answers = self.guess(7)
        self.assertEqual(answers[:4], ["l1 NO [AUTHENTICATIONFAILED] Authentication failed"] * 4)
        self.assertEqual(answers[4:],
                         ["l1 NO [UNAVAILABLE] Too many failed logins; try again later"] * 3)
        # The right password is not even checked while the bucket is empty.
        r, answer = login(self.fleet.servers[1].port)
        self.assertTrue(answer.startswith("l1 NO [UNAVAILABLE]"), answer)
        r.close()
        c = self.redis.client()
        self.assertEqual(c.keys("/throttle/*"), {"/throttle/user/demouser"})
        ttl = c.call("PTTL", "/throttle/user/demouser")
        self.assertTrue(0 < ttl <= 60000, ttl)
        # One token comes back every window / capacity = 15 s; let it come at once.
        c.call("HSET", "/throttle/user/demouser", "tokens", "1")
        c.close()
        r, answer = login(self.fleet.servers[0].port)
        self.assertTrue(answer.startswith("l1 OK"), answer)
        r.close()
        logs = "".join(s.log_text() for s in self.fleet.servers)
        self.assertEqual(logs.count("result=throttled"), 4)

    def test_address_throttle_over_two_front_ends(self):
        self.fleet = Fleet(self.redis, "--login-throttle-user", "0", "--login-throttle-addr", "3",
                           "--login-throttle-window", "60")
        answers = []
        for i in range(5):  # a different user every time: only the address ties them together
            r = connect(self.fleet.servers[i % 2].port)
            r.send("g LOGIN user%d wrong\r\n" % i)
            answers.append(r.until_tagged("g")[-1])
            r.close()
        self.assertEqual([a.split("]")[0] for a in answers],
                         ["g NO [AUTHENTICATIONFAILED"] * 3 + ["g NO [UNAVAILABLE"] * 2)
        c = self.redis.client()
        self.assertEqual(c.keys("/throttle/*"), {"/throttle/addr/127.0.0.1"})
        c.close()

    def test_throttle_off(self):
        self.fleet = Fleet(self.redis, "--login-throttle-user", "0", "--login-throttle-addr", "0")
        answers = self.guess(4)
        self.assertTrue(all("AUTHENTICATIONFAILED" in a for a in answers), answers)
        c = self.redis.client()
        self.assertEqual(c.keys("/throttle/*"), set())
        c.close()


if __name__ == "__main__":
    unittest.main()
