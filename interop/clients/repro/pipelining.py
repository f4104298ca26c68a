#!/usr/bin/env python3
"""Raw-wire reproductions of the pipelining differences the client tests found.

    pipelining.py HOST:PORT

Every scenario sends a few requests of one session in ONE socket write (as the Node and Java
clients do when calls are issued back to back) and tallies what comes back over 20 rounds.
Prints PASS/FAIL lines and "N passed, M failed"; exits 1 on failure.
"""
import socket
import struct
import sys

HOST, PORT = sys.argv[1].rsplit(":", 1)
PORT = int(PORT)
ROUNDS = 20


def s_(b):
    return struct.pack(">i", len(b)) + b


def frame(b):
    return struct.pack(">i", len(b)) + b


ACL = struct.pack(">i", 1) + struct.pack(">i", 31) + s_(b"world") + s_(b"anyone")


class Session:
    def __init__(self):
        self.s = socket.create_connection((HOST, PORT))
        self.s.settimeout(2)
        self.s.sendall(frame(struct.pack(">iqiq", 0, 0, 10000, 0) + s_(b"\0" * 16) + b"\0"))
        self.read()
        self.xid = 0

    def read(self):
        hdr = b""
        while len(hdr) < 4:
            d = self.s.recv(4 - len(hdr))
            if not d:
                raise EOFError
            hdr += d
        n = struct.unpack(">i", hdr)[0]
        b = b""
        while len(b) < n:
            d = self.s.recv(n - len(b))
            if not d:
                raise EOFError
            b += d
        return b

    def next_xid(self):
        self.xid += 1
        return self.xid

    def create(self, path, data):
        return struct.pack(">ii", self.next_xid(), 1) + s_(path) + s_(data) + ACL + struct.pack(">i", 0)

    def get_data(self, path, watch):
        return struct.pack(">ii", self.next_xid(), 4) + s_(path) + (b"\1" if watch else b"\0")

    def set_data(self, path, data):
        return struct.pack(">ii", self.next_xid(), 5) + s_(path) + s_(data) + struct.pack(">i", -1)

    def send_all(self, reqs):
        self.s.sendall(b"".join(frame(r) for r in reqs))

    def collect(self, last_xid, linger=0.1):
        """Replies and notifications up to the reply for last_xid, plus events within linger s."""
        out = []
        while True:
            r = self.read()
            xid, zxid, err = struct.unpack(">iqi", r[:16])
            out.append((xid, zxid, err, r[16:]))
            if xid == last_xid:
                break
        self.s.settimeout(max(linger, 0.01))
        try:
            while True:
                r = self.read()
                out.append(struct.unpack(">iqi", r[:16]) + (r[16:],))
        except socket.timeout:
            pass
        self.s.settimeout(2)
        return out


def data_of(body):
    n = struct.unpack(">i", body[:4])[0]
    return body[4:4 + max(n, 0)]


passed = failed = 0


def report(name, tally, good):
    global passed, failed
    summary = ", ".join("%dx %s" % (v, k) for k, v in sorted(tally.items(), key=lambda kv: -kv[1]))
    if set(tally) == {good}:
        passed += 1
        print("PASS %s: %s" % (name, summary), flush=True)
    else:
        failed += 1
        print("FAIL %s: %s (want %dx %s)" % (name, summary, ROUNDS, good), flush=True)


# 1. create P "a"; getData P; setData P "b" -- the read must return "a".
s = Session()
tally = {}
for i in range(ROUNDS):
    p = b"/repro-a-%d" % i
    reqs = [s.create(p, b"a"), s.get_data(p, False), s.set_data(p, b"b")]
    read_xid = s.xid - 1
    s.send_all(reqs)
    got = [data_of(body).decode() for xid, _, err, body in s.collect(s.xid) if xid == read_xid]
    key = "getData returned %r" % got[0]
    tally[key] = tally.get(key, 0) + 1
report("pipelined create/getData/setData: the read sees the create, not the later setData", tally, "getData returned 'a'")

# 2. setData P "mid"; getData P watch; setData P "new" -- the read returns "mid" and its
#    watch fires for "new".
tally = {}
for i in range(ROUNDS):
    p = b"/repro-b-%d" % i
    s.send_all([s.create(p, b"old")])
    s.collect(s.xid, 0)
    reqs = [s.set_data(p, b"mid"), s.get_data(p, True), s.set_data(p, b"new")]
    read_xid = s.xid - 1
    s.send_all(reqs)
    out = s.collect(s.xid)
    read = [data_of(body).decode() for xid, _, _, body in out if xid == read_xid][0]
    events = sum(1 for xid, _, _, _ in out if xid == -1)
    key = "getData=%r, %d notification(s)" % (read, events)
    tally[key] = tally.get(key, 0) + 1
report("pipelined setData/getData(watch)/setData: read sees 'mid' and the watch fires", tally,
       "getData='mid', 1 notification(s)")

# 3. Ordering: a watch on Q; then setData P; setData Q in one write. Replies and the
#    notification must come in zxid order: reply(P), event(Q), reply(Q).
tally = {}
for i in range(ROUNDS):
    p, q = b"/repro-c-p%d" % i, b"/repro-c-q%d" % i
    s.send_all([s.create(p, b""), s.create(q, b"")])
    s.collect(s.xid, 0)
    s.send_all([s.get_data(q, True)])
    s.collect(s.xid, 0)
    xp = s.xid + 1
    reqs = [s.set_data(p, b"1"), s.set_data(q, b"1")]
    s.send_all(reqs)
    seq = []
    for xid, zxid, err, body in s.collect(s.xid):
        seq.append("event(Q)" if xid == -1 else ("reply(P)" if xid == xp else "reply(Q)"))
    key = " ".join(seq)
    tally[key] = tally.get(key, 0) + 1
report("pipelined setData P, setData Q with a watch on Q: reply(P) before event(Q)", tally,
       "reply(P) event(Q) reply(Q)")

print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
