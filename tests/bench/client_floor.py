#!/usr/bin/env python3
"""The yardstick client's own floor (not a test): records what a real server answers to each
command of ../shared/bench/bigmailbox.py, then serves those exact bytes from memory through a
trivial server and runs bigmailbox.py against it. Whatever bigmailbox.py reports then is the time
the Python client needs to read the answers, with a server that costs nothing: no server, cimap or
Dovecot, can be measured faster than this on the same machine.

  client_floor.py PORT USER PASS      (PORT: a server whose INBOX holds the yardstick mailbox)
"""
import os
import re
import socket
import subprocess
import sys
import threading

BIG = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                   "..", "shared", "bench", "bigmailbox.py")
COMMANDS = ["SELECT INBOX", "UID FETCH 1:* (FLAGS)", "FETCH 1:* (ENVELOPE)", "SEARCH UNSEEN",
            "SEARCH SUBJECT budget", "STATUS INBOX (MESSAGES UNSEEN UIDNEXT)"]


def record(port, user, pw):
    """Raw answer bytes (untagged lines and literals) of each command, without the tagged line."""
    s = socket.create_connection(("127.0.0.1", port), 300)
    f = s.makefile("rb")
    f.readline()
    out = {}
    for n, cmd in enumerate([f"LOGIN {user} {pw}"] + COMMANDS):
        tag = b"r%d " % n
        s.sendall(tag + cmd.encode() + b"\r\n")
        buf = []
        while True:
            line = f.readline()
            m = re.search(rb"\{(\d+)\+?\}\r\n$", line)
            while m:
                line += f.read(int(m.group(1)))
                more = f.readline()
                line += more
                m = re.search(rb"\{(\d+)\+?\}\r\n$", more)
            if line.startswith(tag):
                break
            buf.append(line)
        out[cmd.upper()] = b"".join(buf)
    s.close()
    return out


def serve(lsock, answers):
    while True:
        c, _ = lsock.accept()
        threading.Thread(target=session, args=(c, answers), daemon=True).start()


def session(c, answers):
    c.sendall(b"* OK replay\r\n")
    f = c.makefile("rb")
    while True:
        line = f.readline()
        if not line:
            return
        tag, _, cmd = line.rstrip(b"\r\n").partition(b" ")
        key = cmd.decode().upper()
        body = b"" if key.startswith("LOGIN") else answers.get(key, b"")
        c.sendall(body + tag + b" OK done\r\n")


def main():
    port, user, pw = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    answers = record(port, user, pw)
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    threading.Thread(target=serve, args=(lsock, answers), daemon=True).start()
    rport = lsock.getsockname()[1]
    print("answer sizes: " + ", ".join(f"{k.split(' (')[0]}: {len(v)} B" for k, v in answers.items()))
    for _ in range(2):  # warm, then reported
        res = subprocess.run([sys.executable, BIG, str(rport), "u", "p"], capture_output=True,
                             text=True, check=True)
    print("client floor (bigmailbox.py against a server replaying recorded answers from memory):")
    print(res.stdout, end="")


if __name__ == "__main__":
    main()
