#!/usr/bin/env python3
"""The yardstick's big answers timed with a client that does not parse them (not a test).

bigmailbox.py reads an answer line by line in Python, which for 100,000 FETCH lines costs about as
much as a fast server takes to produce them (client_floor.py measures that floor). This client
only receives bytes (1 MiB recv calls) until the tagged line, so its figure is the server's time to
produce and send the answer, and the ratio between two servers is theirs, not the client's.

  fast_client.py PORT USER PASS [ROUNDS]     (median of ROUNDS, default 5, after one warm-up)
"""
import socket
import sys
import time

COMMANDS = ["UID FETCH 1:* (FLAGS)", "FETCH 1:* (ENVELOPE)", "SEARCH UNSEEN", "SEARCH SUBJECT budget"]


class Client:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), 300)
        self.n = 0
        self.buf = bytearray()
        self._until(b"\r\n")

    def _until(self, marker):
        while True:
            i = self.buf.find(marker)
            if i >= 0:
                out = bytes(self.buf[:i + len(marker)])
                del self.buf[:i + len(marker)]
                return out
            chunk = self.s.recv(1 << 20)
            if not chunk:
                raise EOFError("closed")
            self.buf += chunk

    def cmd(self, text):
        """Sends one command; returns (seconds, bytes received, tagged line)."""
        self.n += 1
        tag = b"f%d" % self.n
        t = time.perf_counter()
        self.s.sendall(tag + b" " + text.encode() + b"\r\n")
        total = 0
        marker = b"\r\n" + tag + b" "
        # The tagged line is the first line starting with the tag: scan only what arrived last
        # (plus a marker's length of what came before).
        while True:
            i = self.buf.find(marker)
            if i >= 0 or self.buf.startswith(tag + b" "):
                start = i + 2 if i >= 0 else 0
                end = self.buf.find(b"\r\n", start)
                if end >= 0:
                    dt = time.perf_counter() - t
                    line = bytes(self.buf[start:end])
                    total += end + 2
                    del self.buf[:end + 2]
                    return dt, total, line
            keep = len(marker)
            if len(self.buf) > keep:
                total += len(self.buf) - keep
                del self.buf[:len(self.buf) - keep]
            chunk = self.s.recv(1 << 20)
            if not chunk:
                raise EOFError("closed")
            self.buf += chunk


def main():
    port, user, pw = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    c = Client(port)
    _, _, line = c.cmd(f"LOGIN {user} {pw}")
    assert b" OK" in line, line
    _, _, line = c.cmd("SELECT INBOX")
    assert b" OK" in line, line
    for cmd in COMMANDS:
        c.cmd(cmd)  # warm
        times = []
        for _ in range(rounds):
            dt, size, line = c.cmd(cmd)
            assert b" OK" in line, line
            times.append(dt * 1000)
        times.sort()
        print(f"{cmd:24s} {times[len(times) // 2]:9.1f} ms  ({size} bytes, median of {rounds})")


if __name__ == "__main__":
    main()
