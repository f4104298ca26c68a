#!/usr/bin/env python3
"""Differential test: one seeded random sequence of ZooKeeper operations,
applied in lockstep to two servers, results compared after every operation.

See README.md in this directory for what is compared and how results are
normalised. Exit status: 0 = no difference, 1 = a difference (or an
implausible result), 2 = harness/setup error.
"""

import argparse
import base64
import bisect
import hashlib
import os
import random
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import zkwire as zw  # noqa: E402
from zkwire import errname  # noqa: E402

# ------------------------------------------------------------------ constants

NAMES = ["a", "b", "c"]
OPEN = [(31, "world", "anyone")]


def digest_id(user, password):
    raw = hashlib.sha1(("%s:%s" % (user, password)).encode()).digest()
    return "%s:%s" % (user, base64.b64encode(raw).decode())


ALICE = digest_id("alice", "pa")
BOB = digest_id("bob", "pb")
CAROL = digest_id("carol", "pc")

# Session slots: (label, credentials added with addauth after connecting).
SLOTS = [
    ("anon", []),
    ("alice", [("digest", b"alice:pa")]),
    ("bob", [("digest", b"bob:pb")]),
    ("anon2", []),
    ("alice+bob", [("digest", b"alice:pa"), ("digest", b"bob:pb")]),
    ("super", [("digest", b"super:test")]),
]
SLOT_WEIGHTS = [3, 3, 2, 2, 2, 1]
SUPER_SLOT = 5

# Extra credentials an addauth op may add to a session.
EXTRA_CREDS = [
    ("digest", b"carol:pc"), ("digest", b"alice:pa"), ("digest", b"bob:pb"),
    ("digest", b"alice:wrong"), ("digest", b"nocolon"), ("digest", b"super:wrong"),
    ("ip", b"anything"),
]

INVALID_PATHS = [
    "", "a", "a/b", "/a/", "/a/b/", "//", "//a", "/a//b", "/a/./b", "/a/../b",
    "/.", "/..", "/a/.", "/a/..", "/a\x00b", "/\x00", "/a\x01", "/a\x1f",
    "/a\x7f", "/a\u0085", "/a\uf8ff", "/a\ufff5", "/\u00e9", "/a/\u4e2d",
    "/zookeeper/", "/a b", "/ ",
]

# Paths in the system subtree; writes there are allowed, refused or
# BADARGUMENTS depending on the path.
SYSTEM_PATHS = ["/zookeeper", "/zookeeper/x", "/zookeeper/config", "/zookeeper/quota",
                "/zookeeper/x/y"]

# TTLs are either expired long before the reap phase (<= 2 s) or outlive the
# whole run (>= 1 h); nothing in between, so reaping never depends on timing.
TTL_SHORT = [1, 10, 500, 2000]
TTL_LONG = [3600 * 1000, 86400 * 1000 * 30]
TTL_INVALID = [0, -1, 2 ** 40, 2 ** 62]
TTL_SETTLE_MS = 2500          # > max(TTL_SHORT)

# Operation categories that --disable can switch off.
CATEGORIES = {
    "ttl": "TTL creates (createTTL opcode)",
    "container": "container creates (createContainer opcode)",
    "exotic-create": "opcode/flag combinations no stock client sends "
                     "(createContainer with flags 0-3, create with flag 4, invalid flags)",
    "null-data": "create/setData with a null data buffer (length -1)",
    "invalid-paths": "malformed paths in writes",
    "invalid-read-paths": "malformed paths in reads (ZooKeeper does not validate these)",
    "system-paths": "operations on /zookeeper and below",
    "large-values": "values of 10 KB - 1 MB",
    "multi": "multi transactions",
    "multiread": "multiRead",
    "persistent-watches": "addWatch (persistent / persistent-recursive)",
    "remove-watches": "removeWatches / checkWatches",
    "v39-divergent": "requests where 3.8 and 3.9 answer differently: removeWatches/"
                     "checkWatches type 4/5, and watch-mode combinations on one path "
                     "(ZOOKEEPER-4466/4471; see Gen.watch_mode_guard)",
    "auth": "addauth during the run",
    "bad-auth": "addauth with an unknown scheme (AUTHFAILED, connection closed)",
    "close-session": "closeSession and reopening the slot",
    "reconnect": "dropping the TCP connection and re-attaching with setWatches/setWatches2",
    "wrong-password": "re-attach with a wrong session password",
    "oversize": "a request larger than jute.maxbuffer (connection closed)",
    "misc-reads": "getEphemerals, getAllChildrenNumber, whoAmI, sync",
    "reap-phase": "restart both servers with a short container check interval "
                  "and compare the tree after containers/TTL nodes are reaped",
}
DEFAULT_DISABLED = {"v39-divergent"}


# --sort-acls: compare ACL lists as sorted lists. Off by default; it exists only
# to look past a known ACL-order bug in the server under test.
SORT_ACLS = False


def acl_key(acl):
    if SORT_ACLS and isinstance(acl, list):
        return sorted(acl)
    return acl


class Difference(Exception):
    pass


class Implausible(Exception):
    pass


def short(v, n=80):
    if isinstance(v, (bytes, bytearray)):
        if len(v) > n:
            return "<%d bytes sha1:%s %r...>" % (len(v), hashlib.sha1(v).hexdigest()[:10], bytes(v[:16]))
        return repr(bytes(v))
    s = repr(v)
    if len(s) > 4 * n:
        s = s[:4 * n] + "..."
    return s


def data_key(b):
    """Data as compared: exact bytes, hashed when large, None kept distinct."""
    if b is None:
        return None
    if len(b) > 64:
        return ("len", len(b), "sha1", hashlib.sha1(b).hexdigest())
    return bytes(b)


# ------------------------------------------------------------- per-server side

class Backend:
    """One server under test plus everything needed to normalise its answers."""

    def __init__(self, name, host, port, flavor=None):
        self.name = name
        self.host = host
        self.port = port
        # Which ZooKeeper line the server follows where 3.8 and 3.9 differ:
        # "3.8", "3.9", or None (unknown: no divergence is modelled).
        self.flavor = flavor
        self.super_sess = None        # a super-user session of the harness's own
        self.sessions = [None] * len(SLOTS)
        self.gen = [0] * len(SLOTS)
        self.creds = [list(c) for _, c in SLOTS]
        self.sid_label = {}
        self.anchor_zxids = []        # sorted zxids of successful mutating ops
        self.anchor_op = {}           # zxid -> op index
        self.time_of = {}             # zxid label -> ms, to check one time per txn
        self.t_start_ms = int(time.time() * 1000)

    # --- zxid / session normalisation
    def add_anchor(self, zxid, op_index, what):
        if zxid <= 0:
            raise Implausible("%s: %s succeeded but its reply header zxid is %d"
                              % (self.name, what, zxid))
        if self.anchor_zxids and zxid <= self.anchor_zxids[-1]:
            raise Implausible("%s: %s succeeded with reply zxid 0x%x, not above the previous "
                              "successful write's 0x%x" % (self.name, what, zxid,
                                                          self.anchor_zxids[-1]))
        self.anchor_zxids.append(zxid)
        self.anchor_op[zxid] = op_index

    def zl(self, z):
        """zxid label: 0, ('op', i) for the write made by op i, or
        ('after-op', i) for a zxid no successful write of ours returned
        (closeSession, reaper deletes), placed after op i."""
        if z == 0:
            return 0
        i = bisect.bisect_left(self.anchor_zxids, z)
        if i < len(self.anchor_zxids) and self.anchor_zxids[i] == z:
            return ("op", self.anchor_op[z])
        if i == 0:
            return ("after-op", None)
        return ("after-op", self.anchor_op[self.anchor_zxids[i - 1]])

    def owner_label(self, owner):
        if owner == 0:
            return 0
        if owner in self.sid_label:
            return self.sid_label[owner]
        return ("raw", owner)

    def stat(self, st, where=""):
        if st is None:
            return None
        now = int(time.time() * 1000)
        czl = self.zl(st.czxid)
        mzl = self.zl(st.mzxid)
        for fld, t, zlab in (("ctime", st.ctime, czl), ("mtime", st.mtime, mzl)):
            if zlab == 0 or st.czxid == 0:
                if t != 0 and not (self.t_start_ms - 600000 <= t <= now + 5000):
                    raise Implausible("%s: %s %s=%d for a node with czxid 0 %s"
                                      % (self.name, where, fld, t, tuple(st)))
                continue
            if not (self.t_start_ms - 5000 <= t <= now + 5000):
                raise Implausible("%s: %s %s=%d outside the run's wall-clock window [%d, %d] %s"
                                  % (self.name, where, fld, t, self.t_start_ms, now, tuple(st)))
            prev = self.time_of.get(zlab)
            if prev is None:
                self.time_of[zlab] = t
            elif prev != t:
                raise Implausible("%s: %s %s=%d but another stat stamped by the same txn %r "
                                  "had time %d %s" % (self.name, where, fld, t, zlab, prev,
                                                      tuple(st)))
        if st.ctime > st.mtime:
            raise Implausible("%s: %s ctime %d > mtime %d %s" % (self.name, where, st.ctime,
                                                                  st.mtime, tuple(st)))
        return {
            "czxid": czl, "mzxid": mzl, "pzxid": self.zl(st.pzxid),
            "version": st.version, "cversion": st.cversion, "aversion": st.aversion,
            "ephemeralOwner": self.owner_label(st.ephemeralOwner),
            "dataLength": st.dataLength, "numChildren": st.numChildren,
            "ctime==0": st.ctime == 0,
        }

    # --- sessions
    def open_slot(self, slot):
        """Open a fresh session for the slot and add its credentials.
        Returns the normalised outcome (compared by the caller)."""
        s = zw.Session(self.host, self.port, timeout_ms=30000)
        self.gen[slot] += 1
        self.sessions[slot] = s
        self.creds[slot] = list(SLOTS[slot][1])
        self.sid_label[s.session_id] = "S%d.%d" % (slot, self.gen[slot])
        out = [("connect", s.timeout_ms, len(s.passwd or b""), s.read_only)]
        for scheme, cred in self.creds[slot]:
            out.append(("auth", scheme, cred, errname(s.add_auth(scheme, cred).err)))
        return out

    def live_slots(self):
        return [i for i, s in enumerate(self.sessions) if s is not None and not s.closed]

    def close_all(self):
        for i, s in enumerate(self.sessions):
            if s is not None:
                try:
                    s.close()
                except Exception:
                    pass
                self.sessions[i] = None
        if self.super_sess is not None:
            try:
                self.super_sess.close()
            except Exception:
                pass
            self.super_sess = None

    def super_call(self, opcode, body):
        """One request on the harness's own super-user session (opened on
        first use, and again if the server closed it, e.g. after it expired
        while idle). Used for look-ups that must not depend on the slot's
        permissions: the 'right' version, and whether a node changed."""
        for attempt in (0, 1):
            s = self.super_sess
            if s is None or s.closed:
                s = zw.Session(self.host, self.port, timeout_ms=30000)
                rep = s.add_auth("digest", b"super:test")
                if rep.err != 0:
                    raise Implausible("%s: digest auth as super failed: %s"
                                      % (self.name, errname(rep.err)))
                self.super_sess = s
            try:
                rep = s.call(opcode, body)
                s.take_events()
                return rep
            except zw.ConnectionClosed:
                self.super_sess = None
                if attempt:
                    raise

    def drain_events(self, slots, unordered=False):
        """Round-trip (sync) on every live session so that every notification
        caused by what happened so far has arrived, then take them. With
        unordered, each session's events are sorted (used after closeSession:
        ZooKeeper deletes a session's ephemerals in Java hash-set order, which
        is not part of the contract)."""
        out = {}
        for i in slots:
            s = self.sessions[i]
            if s is None:
                continue
            closed = None
            if not s.closed:
                try:
                    s.sync("/")
                except zw.ConnectionClosed as e:
                    closed = "connection closed: %s" % e
            ev = s.take_events()
            if ev or closed:
                out[i] = [(typ, state, path) for typ, state, path, _z in ev]
                if unordered:
                    out[i].sort()
            if closed:
                out[i].append(closed)
                out[i].append(reattach(self, i))
        return out

    def dump_tree(self):
        """Walk the whole tree as super on a session of its own. Returns
        {path: {data, stat, acl, aclStat, children, childrenStat}}, normalised."""
        s = zw.Session(self.host, self.port, timeout_ms=30000)
        try:
            rep = s.add_auth("digest", b"super:test")
            if rep.err != 0:
                raise Implausible("%s: digest auth as super failed: %s" % (self.name, errname(rep.err)))
            return self._dump(s)
        finally:
            s.close()

    def _dump(self, s):
        out = {}
        stack = ["/"]
        while stack:
            p = stack.pop()
            rd = s.call(zw.GET_DATA, zw.enc_path_watch(p, False))
            if rd.err != 0:
                out[p] = ("error", errname(rd.err))
                continue
            ra = s.call(zw.GET_ACL, zw.enc_path(p))
            rc = s.call(zw.GET_CHILDREN2, zw.enc_path_watch(p, False))
            kids = sorted(rc.body["children"]) if rc.err == 0 else []
            out[p] = {
                "data": data_key(rd.body["data"]),
                "stat": self.stat(rd.body["stat"], "dump " + p),
                "acl": acl_key(ra.body["acl"]) if ra.err == 0 else errname(ra.err),
                "aclStat": self.stat(ra.body["stat"], "dump " + p) if ra.err == 0 else None,
                "children": kids,
                "childrenStat": self.stat(rc.body["stat"], "dump " + p) if rc.err == 0 else None,
            }
            for k in kids:
                stack.append(("/" + k) if p == "/" else (p + "/" + k))
        return out


# ---------------------------------------------------------------- generation

class Gen:
    """Draws operations. Choices depend only on the seed and on results
    that both servers agreed on, so a run is reproducible from its seed."""

    def __init__(self, seed, disabled):
        self.rng = random.Random(seed)
        self.disabled = disabled
        self.known = set()           # paths believed to exist (from agreed results)
        self.kind = {}               # path -> ("container",) / ("ttl", ms) / ("plain",)
        # Watches each slot's current connection holds, as far as they matter
        # for the 3.8-vs-3.9 watch-mode divergences (ZOOKEEPER-4466/4471);
        # see watch_mode_guard().
        self.pw = [dict() for _ in SLOTS]         # path -> addWatch mode (0 persistent, 1 recursive)
        self.std_child = [set() for _ in SLOTS]   # paths with a one-shot child watch that may be pending

    def on(self, cat):
        return cat not in self.disabled

    def pick(self, weighted):
        items = [(w, v) for w, v in weighted if w > 0]
        total = sum(w for w, _ in items)
        x = self.rng.uniform(0, total)
        for w, v in items:
            x -= w
            if x <= 0:
                return v
        return items[-1][1]

    # --- building blocks
    def slot(self):
        return self.pick(list(zip(SLOT_WEIGHTS, range(len(SLOTS)))))

    def ns_path(self, max_depth=3):
        depth = self.pick([(4, 1), (4, 2), (3, 3)][:max_depth])
        return "/" + "/".join(self.rng.choice(NAMES) for _ in range(depth))

    def known_path(self):
        if not self.known:
            return self.ns_path()
        return self.rng.choice(sorted(self.known))

    def invalid_path(self):
        if self.known and self.rng.random() < 0.3:
            return self.known_path() + self.rng.choice(["/", "//", "/.", "\x00"])
        return self.rng.choice(INVALID_PATHS)

    def system_path(self):
        return self.rng.choice(SYSTEM_PATHS)

    def target(self, write, known=5, ns=4, root=0.3):
        """A path for an operation on an existing-or-not node."""
        choices = [(known, "known"), (ns, "ns"), (root, "root")]
        if write and self.on("invalid-paths"):
            choices.append((0.6, "invalid"))
        if not write and self.on("invalid-read-paths"):
            choices.append((0.5, "invalid"))
        if self.on("system-paths"):
            choices.append((0.35, "system"))
        c = self.pick(choices)
        if c == "known":
            return self.known_path()
        if c == "ns":
            return self.ns_path()
        if c == "root":
            return "/"
        if c == "invalid":
            return self.invalid_path()
        return self.system_path()

    def create_path(self, sequential):
        c = self.pick([(5, "ns"), (4, "child"), (0.7 if self.on("invalid-paths") else 0, "invalid"),
                       (0.3 if self.on("system-paths") else 0, "system")])
        if c == "invalid":
            return self.invalid_path()
        if c == "system":
            return self.rng.choice(["/zookeeper/x", "/zookeeper/x/y", "/zookeeper", "/zookeeper/config/x",
                                    "/zookeeper/quota"])
        if c == "child" and self.known:
            parent = self.known_path()
            if sequential:
                suffix = self.rng.choice(["", "s-", "a", "q"])
            else:
                suffix = self.rng.choice(NAMES)
            return (parent.rstrip("/") + "/" + suffix) if parent != "/" else "/" + suffix
        p = self.ns_path()
        if sequential and self.rng.random() < 0.3:
            p = p + "/"
        return p

    def data(self):
        c = self.pick([(25, "empty"), (55, "small"), (12, "medium"),
                       (3 if self.on("large-values") else 0, "large"),
                       (0.6 if self.on("large-values") else 0, "huge"),
                       (1 if self.on("null-data") else 0, "null")])
        if c == "empty":
            return b""
        if c == "null":
            return None
        if c == "small":
            return bytes(self.rng.choice(b"xyz01") for _ in range(self.rng.randint(1, 12)))
        if c == "medium":
            n = self.rng.randint(100, 1500)
        elif c == "large":
            n = self.rng.randint(10000, 100000)
        else:
            n = self.rng.randint(500000, 1000000)
        seed = self.rng.getrandbits(32)
        return (hashlib.sha256(str(seed).encode()).digest() * (n // 32 + 1))[:n]

    def acl(self):
        r = self.rng
        return self.pick([
            (55, OPEN),
            (4, [(1, "world", "anyone")]),
            (5, [(r.randint(0, 31), "world", "anyone")]),
            (5, [(31, "auth", "")]),
            (2, [(r.randint(1, 31), "auth", r.choice(["", "ignored"]))]),
            (4, [(31, "digest", ALICE)]),
            (3, [(r.randint(0, 31), "digest", BOB)]),
            (3, [(31, "digest", ALICE), (1, "world", "anyone")]),
            (2, [(16, "digest", ALICE), (r.randint(0, 15), "world", "anyone")]),
            (4, [(31, "ip", "127.0.0.1")]),
            (2, [(31, "ip", "10.1.2.3")]),
            (2, [(17, "ip", "127.0.0.0/8")]),
            (1, [(31, "ip", "192.168.0.0/16")]),
            (2, [(1, "ip", "127.0.0.1"), (31, "digest", BOB)]),
            (1, [(31, "digest", CAROL), (r.randint(0, 31), "auth", "")]),
            (1, [(31, "world", "anyone"), (31, "world", "anyone")]),
            (1, [(31, "digest", ALICE), (31, "digest", ALICE), (3, "world", "anyone")]),
            # invalid ones
            (1, []),
            (0.5, None),
            (0.7, [(31, "world", "someone")]),
            (0.7, [(31, "digest", "nocolon")]),
            (0.5, [(31, "digest", "a:b:c")]),
            (0.7, [(31, "ip", "not-an-ip")]),
            (0.5, [(31, "ip", "10.0.0.0/33")]),
            (0.7, [(31, "foo", "bar")]),
            (0.5, [(31, "super", "x")]),
            (0.5, [(31, "world", "anyone"), (31, "foo", "bar")]),
        ])

    def version_mode(self):
        return self.pick([(35, -1), (35, "right"), (30, "wrong")])

    def wrong_version(self):
        return self.rng.choice([0, 0, 1, 1, 2, 3, 7, 100, -2, 2 ** 31 - 1])

    def create_spec(self):
        """(opcode, flags, ttl, kind)"""
        r = self.rng
        mode = self.pick([
            (30, "persistent"), (15, "ephemeral"), (12, "pseq"), (8, "eseq"),
            (10 if self.on("container") else 0, "container"),
            (6 if self.on("ttl") else 0, "ttl"),
            (4 if self.on("ttl") else 0, "ttlseq"),
            (1 if self.on("ttl") else 0, "ttlbad"),
            (3 if self.on("exotic-create") else 0, "exotic"),
        ])
        if mode in ("persistent", "ephemeral", "pseq", "eseq"):
            flags = {"persistent": 0, "ephemeral": 1, "pseq": 2, "eseq": 3}[mode]
            return (r.choice([zw.CREATE, zw.CREATE2]), flags, None)
        if mode == "container":
            return (zw.CREATE_CONTAINER, 4, None)
        if mode in ("ttl", "ttlseq"):
            ttl = r.choice(TTL_SHORT + TTL_LONG)
            return (zw.CREATE_TTL, 5 if mode == "ttl" else 6, ttl)
        if mode == "ttlbad":
            return (zw.CREATE_TTL, r.choice([5, 6]), r.choice(TTL_INVALID))
        opcode = r.choice([zw.CREATE, zw.CREATE2, zw.CREATE_CONTAINER, zw.CREATE_TTL])
        flags = r.choice([0, 1, 2, 3, 4, 5, 6, 7, -1, 99])
        ttl = r.choice(TTL_SHORT + TTL_LONG) if opcode == zw.CREATE_TTL else None
        if not self.on("container") and flags == 4:
            flags = 0
        if opcode == zw.CREATE_CONTAINER and not self.on("container"):
            opcode = zw.CREATE2
        if opcode == zw.CREATE_TTL and not self.on("ttl"):
            opcode = zw.CREATE
            ttl = None
        return (opcode, flags, ttl)

    # --- operations
    def op(self):
        r = self.rng
        kind = self.pick([
            # deletes grow with the tree so that it stays small and ops keep colliding
            (16, "create"), (11 * max(1.0, len(self.known) / 80.0), "delete"), (8, "setData"), (6, "exists"), (6, "getData"),
            (5, "getChildren"), (3, "getACL"), (4, "setACL"),
            (7 if self.on("multi") else 0, "multi"),
            (2 if self.on("multiread") else 0, "multiRead"),
            (2 if self.on("persistent-watches") else 0, "addWatch"),
            (1.5 if self.on("remove-watches") else 0, "removeWatches"),
            (0.5 if self.on("remove-watches") else 0, "checkWatches"),
            (0.5 if self.on("misc-reads") else 0, "sync"),
            (1 if self.on("misc-reads") else 0, "getEphemerals"),
            (0.5 if self.on("misc-reads") else 0, "getAllChildrenNumber"),
            (0.5 if self.on("misc-reads") else 0, "whoAmI"),
            (1 if self.on("auth") else 0, "addAuth"),
            (0.15 if self.on("bad-auth") else 0, "badAuth"),
            (0.8 if self.on("close-session") else 0, "closeSession"),
            (0.6 if self.on("reconnect") else 0, "reconnect"),
            (0.15 if self.on("wrong-password") else 0, "wrongPassword"),
            (0.08 if self.on("oversize") else 0, "oversize"),
        ])
        op = {"kind": kind, "slot": self.slot()}
        if kind == "create":
            opcode, flags, ttl = self.create_spec()
            op.update(opcode=opcode, flags=flags, ttl=ttl,
                      path=self.create_path(sequential=bool(flags in (2, 3, 6))),
                      data=self.data(), acl=self.acl())
        elif kind == "delete":
            op.update(path=self.target(True, known=7), version=self.version_mode())
            if op["version"] == "wrong":
                op["version"] = self.wrong_version()
        elif kind == "setData":
            op.update(path=self.target(True), data=self.data(), version=self.version_mode())
            if op["version"] == "wrong":
                op["version"] = self.wrong_version()
        elif kind == "setACL":
            path = self.target(True)
            if path in ("/", "/zookeeper", "/zookeeper/quota"):
                path = self.known_path() if self.known else "/a"
            op.update(path=path, acl=self.acl(), version=self.version_mode())
            if op["version"] == "wrong":
                op["version"] = self.wrong_version()
        elif kind in ("exists", "getData", "getACL"):
            op.update(path=self.target(False), watch=r.random() < 0.45)
            if kind != "getACL":
                self.watch_mode_guard(op)
        elif kind == "getChildren":
            op.update(path=self.target(False), watch=r.random() < 0.45,
                      opcode=r.choice([zw.GET_CHILDREN, zw.GET_CHILDREN2]))
            self.watch_mode_guard(op)
        elif kind == "multi":
            op.update(ops=self.multi_ops())
        elif kind == "multiRead":
            op.update(ops=[(r.choice([zw.GET_DATA, zw.GET_CHILDREN]), self.target(False),
                            r.random() < 0.1) for _ in range(r.randint(1, 4))])
        elif kind == "addWatch":
            op.update(path=self.pick([(5, self.known_path()), (3, self.ns_path(2)), (1, "/"),
                                      (0.3, self.invalid_path())]),
                      mode=self.pick([(5, 0), (5, 1), (0.2, 2)]))
            self.watch_mode_guard(op)
        elif kind in ("removeWatches", "checkWatches"):
            types = [(3, 1), (3, 2), (3, 3)]
            if self.on("v39-divergent"):
                types += [(1, 4), (1, 5)]
            op.update(path=self.pick([(5, self.known_path()), (3, self.ns_path(2)), (1, "/")]),
                      wtype=self.pick(types))
            self.watch_mode_guard(op)
        elif kind == "sync":
            op.update(path=self.target(False))
        elif kind == "getEphemerals":
            op.update(path=r.choice(["/", "/a", "/a/", "/b", "/c/a", "", "/zookeeper", "/nonexistent"]))
        elif kind == "getAllChildrenNumber":
            op.update(path=self.target(False))
        elif kind == "addAuth":
            op.update(cred=r.choice(EXTRA_CREDS))
        elif kind == "badAuth":
            op.update(cred=(r.choice(["nosuchscheme", "x509", "sasl", "super"]), b"whatever"))
            if op["slot"] == SUPER_SLOT:
                op["slot"] = 0
        elif kind == "reconnect":
            nw = r.randint(0, 4)
            op.update(v2=r.random() < 0.5, back=self.pick([(3, 0), (2, r.randint(1, 30))]),
                      data=[self.target(False) for _ in range(nw)],
                      exist=[self.ns_path() for _ in range(r.randint(0, 2))],
                      child=[self.pick([(3, self.known_path()), (1, "/")]) for _ in range(r.randint(0, 3))],
                      persistent=[self.pick([(3, self.known_path()), (1, "/")]) for _ in range(r.randint(0, 2))],
                      recursive=[self.pick([(2, self.ns_path(1)), (1, "/")]) for _ in range(r.randint(0, 1))])
            self.watch_mode_guard(op)
        elif kind == "oversize":
            op.update(path=self.known_path(), size=r.choice([1100000, 2 * 1024 * 1024]))
        if op.get("path") in ("/zookeeper/config",) and op["slot"] == SUPER_SLOT and kind in (
                "setData", "setACL", "delete"):
            op["slot"] = 0
        return op

    def watch_mode_guard(self, op):
        """Keep the op away from the watch-mode combinations where ZooKeeper
        3.8 and 3.9 differ, unless v39-divergent is on. In 3.8 a connection
        has one mode per path and per watch table (WatcherModeManager): a
        later watch on the same path replaces the mode, and addWatch's
        PERSISTENT_RECURSIVE goes into the child table too. 3.9
        (ZOOKEEPER-4466) keeps the modes side by side, and removeWatches /
        checkWatches types 1 and 2 match only one-shot watches
        (ZOOKEEPER-4471). The guard changes the op rather than dropping it, so
        persistent and one-shot watches stay frequent:
          - a one-shot watch (exists/getData/getChildren) on a path where the
            slot holds a persistent or recursive watch is sent without the
            watch flag (3.8 would downgrade the persistent watch);
          - a second addWatch on such a path gets the same mode as the first;
          - addWatch recursive on a path with a pending one-shot child watch
            becomes persistent (3.8 would turn the child watch recursive, and
            recursive watches never get NodeChildrenChanged);
          - removeWatches/checkWatches type 1 or 2 on such a path becomes
            type 3 (Any), which removes/finds the whole watch in both;
          - on re-attach, setWatches2 does not list a path as recursive when it
            is also in the persistent or child list.
        Everything here depends only on agreed results (see learn), so a seed
        still replays the same run."""
        if not self.on("v39-divergent"):
            k = op["kind"]
            slot = op["slot"]
            pw = self.pw[slot]
            if k in ("exists", "getData", "getChildren"):
                if op["watch"] and op["path"] in pw:
                    op["watch"] = False
            elif k == "addWatch":
                if op["mode"] in (0, 1):
                    if op["path"] in pw:
                        op["mode"] = pw[op["path"]]
                    elif op["mode"] == 1 and op["path"] in self.std_child[slot]:
                        op["mode"] = 0
            elif k in ("removeWatches", "checkWatches"):
                if op["wtype"] in (1, 2) and op["path"] in pw:
                    op["wtype"] = 3
            elif k == "reconnect" and op["v2"]:
                op["recursive"] = [p for p in op["recursive"]
                                   if p not in op["persistent"] and p not in op["child"]]
        return op

    def reset_watches(self, slot):
        """The slot's connection was replaced: its watches are gone."""
        self.pw[slot] = {}
        self.std_child[slot] = set()

    def learn_watches(self, op, res):
        k = op["kind"]
        slot = op["slot"]
        if k == "closeSession" or any(x in res for x in ("reattach", "connection", "protocol")):
            self.reset_watches(slot)
        if k == "reconnect":
            for entry in res.get("reattach") or []:
                if entry in (("setWatches", "OK"), ("setWatches2", "OK")):
                    self.std_child[slot] = set(op["child"])
                if entry == ("setWatches2", "OK"):
                    for p in op["persistent"]:
                        self.pw[slot][p] = 0
                    for p in op["recursive"]:
                        self.pw[slot][p] = 1
            return
        if res.get("err") != "OK":
            return
        if k == "addWatch" and op["mode"] in (0, 1):
            self.pw[slot][op["path"]] = op["mode"]
        elif k == "getChildren" and op["watch"]:
            self.std_child[slot].add(op["path"])
        elif k == "removeWatches":
            p, t = op["path"], op["wtype"]
            if t in (1, 3):
                self.std_child[slot].discard(p)
            if t == 3 or (t == 4 and self.pw[slot].get(p) == 0) or \
                    (t == 5 and self.pw[slot].get(p) == 1):
                self.pw[slot].pop(p, None)

    def learn_events(self, events):
        """Agreed watch events: a one-shot child watch is used up by
        NodeChildrenChanged/NodeDeleted (it may also be used up silently, when
        the event is filtered by ACL; std_child then over-approximates, which
        only makes the guard more careful). A re-attach after a lost
        connection drops every watch."""
        for slot, evs in events.items():
            for e in evs:
                if isinstance(e, str) and e.startswith("connection closed"):
                    self.reset_watches(slot)
                elif isinstance(e, tuple) and len(e) == 3 and e[0] in (2, 4):
                    self.std_child[slot].discard(e[2])

    def multi_ops(self):
        r = self.rng
        n = self.pick([(1, 0), (6, 1), (6, 2), (5, 3), (3, 4), (2, 5)])
        ops = []
        created = []
        for _ in range(n):
            k = self.pick([(5, "create"), (3, "delete"), (3, "setData"), (3, "check")])
            if k == "create":
                opcode, flags, ttl = self.create_spec()
                if opcode == zw.CREATE_CONTAINER and flags in (0, 1, 2, 3) \
                        and not self.on("v39-divergent"):
                    # In a multi, 3.8 makes a plain/ephemeral node from these
                    # flags and 3.9 a container (ZOOKEEPER-4026); a different
                    # node kind would make every later comparison differ.
                    opcode = zw.CREATE
                if created and r.random() < 0.4:
                    path = created[-1] + "/" + r.choice(NAMES)
                else:
                    path = self.create_path(sequential=bool(flags in (2, 3, 6)))
                created.append(path)
                ops.append(("create", opcode, path, self.data() if r.random() < 0.9 else b"",
                            self.acl() if r.random() < 0.4 else OPEN, flags, ttl))
            else:
                if created and r.random() < 0.3:
                    path = r.choice(created)
                else:
                    path = self.target(True, known=7)
                version = self.pick([(5, -1), (3, 0), (2, 1), (1, 2), (0.3, -2)])
                if k == "delete":
                    ops.append(("delete", path, version))
                elif k == "setData":
                    ops.append(("setData", path, self.data() if r.random() < 0.7 else b"v", version))
                else:
                    ops.append(("check", path, version))
        return ops

    # --- learning from agreed results
    def learn(self, op, res):
        """Update the set of known paths from the (already compared) result."""
        k = op["kind"]
        self.learn_watches(op, res)
        if k == "create" and res.get("err") == "OK":
            self.learn_create(res["path"], op["opcode"], op["flags"], op.get("ttl"))
        elif k == "delete" and res.get("err") == "OK":
            self.known.discard(op["path"])
        elif k == "multi" and res.get("err") == "OK":
            rs = res.get("results") or []
            if rs and all(x.get("type") != "error" for x in rs):
                for sub, x in zip(op["ops"], rs):
                    if sub[0] == "create":
                        self.learn_create(x["path"], sub[1], sub[5], sub[6], in_multi=True)
                    elif sub[0] == "delete":
                        self.known.discard(sub[1])
        elif k == "getChildren" and res.get("err") == "OK":
            base = op["path"]
            if base == "/" or (base.startswith("/") and not base.endswith("/")
                               and "\x00" not in base and "//" not in base):
                for c in res["children"]:
                    self.known.add(("/" + c) if base == "/" else base + "/" + c)

    def learn_create(self, path, opcode, flags, ttl, in_multi=False):
        """Remember what kind of node a successful create made, the way
        ZooKeeper decides it: a single request's opcode decides (createContainer
        makes a container whatever the flags; create/create2 with flag 4 make a
        plain node), but inside a multi the server rebuilds each create from
        its flags (flag 4 = container, 5/6 = TTL, whatever the sub-op's type)."""
        self.known.add(path)
        if in_multi:
            if flags == 4:
                kind = ("container",)
            elif flags in (5, 6) and opcode == zw.CREATE_TTL:
                kind = ("ttl", ttl)
            else:
                kind = ("plain",)
        elif opcode == zw.CREATE_CONTAINER:
            kind = ("container",)
        elif opcode == zw.CREATE_TTL:
            kind = ("ttl", ttl)
        else:
            kind = ("plain",)
        self.kind[path] = kind

    def relearn(self, dump):
        self.known = set(p for p in dump if p != "/" and not p.startswith("/zookeeper"))


# ------------------------------------------------------------------ execution

def describe(op):
    d = dict(op)
    parts = []
    for k, v in d.items():
        if k in ("kind",):
            continue
        if k == "opcode":
            v = zw.OPNAMES.get(v, v)
        if k == "data":
            v = short(v, 24)
        if k == "ops" and op["kind"] == "multi":
            v = [tuple(short(x, 24) if isinstance(x, (bytes, bytearray)) else
                       (zw.OPNAMES.get(x, x) if i == 1 and s[0] == "create" else x)
                       for i, x in enumerate(s)) for s in v]
        if k == "ops" and op["kind"] == "multiRead":
            v = [(zw.OPNAMES[o], p, w) for o, p, w in v]
        parts.append("%s=%r" % (k, v))
    return "%s(%s)" % (op["kind"], ", ".join(parts))


def norm_reply(be, rep, opcode, where):
    """Normalise a reply: error name plus normalised body."""
    out = {"err": errname(rep.err)}
    if rep.err != 0 or rep.body is None:
        return out
    b = rep.body
    for key, val in b.items():
        if key == "stat":
            out["stat"] = be.stat(val, where)
        elif key == "data":
            out["data"] = data_key(val)
        elif key == "children":
            out["children"] = sorted(val) if val is not None else None
        elif key in ("ephemerals",):
            out[key] = sorted(val) if val is not None else None
        elif key == "ids":
            out[key] = sorted(val)
        elif key == "results":
            out["results"] = [norm_multi_result(be, x, where) for x in val]
        elif key == "acl":
            out[key] = acl_key(val)
        else:
            out[key] = val
    return out


def norm_multi_result(be, x, where):
    o = {"type": zw.OPNAMES.get(x["type"], x["type"]), "hdr_err": errname(x["hdr_err"])}
    for key, val in x.items():
        if key in ("type", "hdr_err"):
            continue
        if key == "err":
            o["err"] = errname(val)
        elif key == "stat":
            o["stat"] = be.stat(val, where)
        elif key == "data":
            o["data"] = data_key(val)
        elif key == "children":
            o["children"] = sorted(val) if val is not None else None
        else:
            o[key] = val
    return o


MUTATING = ("create", "delete", "setData", "setACL", "multi", "closeSession", "badAuth",
            "reconnect", "oversize", "wrongPassword")


def resolve_version(be, s, path, field):
    """Look up the node's current version (for 'right version' ops). This
    asks as the super user, not as the op's session: since ZOOKEEPER-2590
    (3.9) exists() needs READ, so the session's own exists() would answer
    NOAUTH on 3.9 and the Stat on 3.8. As super, both answer like 3.8's
    permission-free exists() did."""
    rep = be.super_call(zw.EXISTS, zw.enc_path_watch(path, False))
    if rep.err != 0:
        return 0, {"err": errname(rep.err)}
    st = rep.body["stat"]
    return getattr(st, field), {"err": "OK", "version": getattr(st, field)}


def reattach(be, slot, setwatches=None):
    """Re-open the slot's session on a new connection (same id and
    password), re-add its credentials, optionally send setWatches."""
    old = be.sessions[slot]
    try:
        s = zw.Session(be.host, be.port, timeout_ms=30000, session_id=old.session_id,
                       passwd=old.passwd, last_zxid=old.last_zxid)
    except zw.SessionRefused as e:
        be.sessions[slot] = None
        return [("reattach-refused", e.timeout_ms)]
    except zw.ConnectionClosed as e:
        be.sessions[slot] = None
        return [("reattach-closed", str(e))]
    out = [("reattach", s.session_id == old.session_id, s.timeout_ms)]
    be.sessions[slot] = s
    for scheme, cred in be.creds[slot]:
        out.append(("auth", scheme, cred, errname(s.add_auth(scheme, cred).err)))
    if setwatches is not None:
        v2, back, data, exist, child, persistent, recursive = setwatches
        rel = old.last_zxid
        if back:
            # pretend the client last saw the zxid of the back-th latest write
            rel = be.anchor_zxids[-back] if len(be.anchor_zxids) >= back else 0
        w = zw.Writer().long(rel).string_list(data).string_list(exist).string_list(child)
        opcode = zw.SET_WATCHES
        if v2:
            w.string_list(persistent).string_list(recursive)
            opcode = zw.SET_WATCHES2
        rep = s.call(opcode, w.bytes(), xid=-8)
        out.append(("setWatches%s" % ("2" if v2 else ""), errname(rep.err)))
    return out


def execute(be, op, idx):
    """Run one operation on one backend. Returns a normalised result dict."""
    k = op["kind"]
    slot = op["slot"]
    where = "op %d %s" % (idx, k)
    if be.sessions[slot] is None:
        return {"session": "none"}
    s = be.sessions[slot]
    res = {}
    try:
        if k == "create":
            if op["opcode"] == zw.CREATE_TTL:
                body = zw.enc_create_ttl(op["path"], op["data"], op["acl"], op["flags"], op["ttl"])
            else:
                body = zw.enc_create(op["path"], op["data"], op["acl"], op["flags"])
            rep = s.call(op["opcode"], body)
            if rep.err == 0:
                be.add_anchor(rep.zxid, idx, where)
            res = norm_reply(be, rep, op["opcode"], where)
        elif k in ("delete", "setData", "setACL"):
            version = op["version"]
            if version == "right":
                version, pre = resolve_version(be, s, op["path"],
                                               "aversion" if k == "setACL" else "version")
                res["pre"] = pre
            if k == "delete":
                rep = s.call(zw.DELETE, zw.enc_path_version(op["path"], version))
                opcode = zw.DELETE
            elif k == "setData":
                rep = s.call(zw.SET_DATA, zw.enc_set_data(op["path"], op["data"], version))
                opcode = zw.SET_DATA
            else:
                rep = s.call(zw.SET_ACL, zw.enc_set_acl(op["path"], op["acl"], version))
                opcode = zw.SET_ACL
            if rep.err == 0:
                be.add_anchor(rep.zxid, idx, where)
            res.update(norm_reply(be, rep, opcode, where))
        elif k in ("exists", "getData"):
            opcode = zw.EXISTS if k == "exists" else zw.GET_DATA
            rep = s.call(opcode, zw.enc_path_watch(op["path"], op["watch"]))
            res = norm_reply(be, rep, opcode, where)
        elif k == "getChildren":
            rep = s.call(op["opcode"], zw.enc_path_watch(op["path"], op["watch"]))
            res = norm_reply(be, rep, op["opcode"], where)
        elif k == "getACL":
            rep = s.call(zw.GET_ACL, zw.enc_path(op["path"]))
            res = norm_reply(be, rep, zw.GET_ACL, where)
        elif k == "multi":
            subs = []
            mutating = False
            for sub in op["ops"]:
                if sub[0] == "create":
                    _, opcode, path, data, acl, flags, ttl = sub
                    if opcode == zw.CREATE_TTL:
                        subs.append((opcode, zw.enc_create_ttl(path, data, acl, flags, ttl)))
                    else:
                        subs.append((opcode, zw.enc_create(path, data, acl, flags)))
                    mutating = True
                elif sub[0] == "delete":
                    subs.append((zw.DELETE, zw.enc_path_version(sub[1], sub[2])))
                    mutating = True
                elif sub[0] == "setData":
                    subs.append((zw.SET_DATA, zw.enc_set_data(sub[1], sub[2], sub[3])))
                    mutating = True
                else:
                    subs.append((zw.CHECK, zw.enc_path_version(sub[1], sub[2])))
            rep = s.call(zw.MULTI, zw.enc_multi(subs))
            if rep.err == 0 and mutating and all(x["type"] != zw.ERROR
                                                 for x in rep.body["results"]):
                be.add_anchor(rep.zxid, idx, where)
            res = norm_reply(be, rep, zw.MULTI, where)
        elif k == "multiRead":
            subs = [(o, zw.enc_path_watch(p, w)) for o, p, w in op["ops"]]
            rep = s.call(zw.MULTI_READ, zw.enc_multi(subs))
            res = norm_reply(be, rep, zw.MULTI_READ, where)
        elif k == "addWatch":
            rep = s.call(zw.ADD_WATCH, zw.enc_path_int(op["path"], op["mode"]))
            res = norm_reply(be, rep, zw.ADD_WATCH, where)
        elif k in ("removeWatches", "checkWatches"):
            opcode = zw.REMOVE_WATCHES if k == "removeWatches" else zw.CHECK_WATCHES
            rep = s.call(opcode, zw.enc_path_int(op["path"], op["wtype"]))
            res = norm_reply(be, rep, opcode, where)
        elif k == "sync":
            rep = s.call(zw.SYNC, zw.enc_path(op["path"]))
            res = norm_reply(be, rep, zw.SYNC, where)
        elif k == "getEphemerals":
            rep = s.call(zw.GET_EPHEMERALS, zw.enc_path(op["path"]))
            res = norm_reply(be, rep, zw.GET_EPHEMERALS, where)
        elif k == "getAllChildrenNumber":
            rep = s.call(zw.GET_ALL_CHILDREN_NUMBER, zw.enc_path(op["path"]))
            res = norm_reply(be, rep, zw.GET_ALL_CHILDREN_NUMBER, where)
        elif k == "whoAmI":
            rep = s.call(zw.WHO_AM_I, b"")
            res = norm_reply(be, rep, zw.WHO_AM_I, where)
        elif k == "addAuth":
            scheme, cred = op["cred"]
            rep = s.add_auth(scheme, cred)
            res = {"err": errname(rep.err)}
            if rep.err == 0:
                be.creds[slot].append((scheme, cred))
        elif k == "badAuth":
            scheme, cred = op["cred"]
            rep = s.add_auth(scheme, cred)
            res = {"err": errname(rep.err)}
            if rep.err != 0:
                res["closed"] = s.wait_closed(10.0)
                res["reattach"] = reattach(be, slot)
        elif k == "closeSession":
            rep = s.close()
            res = {"err": errname(rep.err) if rep is not None else "no reply"}
            ev = s.take_events()
            if ev:
                # sorted: ZooKeeper deletes a session's ephemerals in hash-set order
                res["events before the close reply"] = sorted(e[:3] for e in ev)
            be.sessions[slot] = None
        elif k == "reconnect":
            s.drop()
            res = {"reattach": reattach(be, slot, (op["v2"], op["back"], op["data"], op["exist"], op["child"],
                                                   op["persistent"], op["recursive"]))}
        elif k == "wrongPassword":
            try:
                t = zw.Session(be.host, be.port, timeout_ms=30000, session_id=s.session_id,
                               passwd=bytes(b ^ 0x5A for b in s.passwd))
                t.drop()
                res = {"outcome": "accepted"}
            except zw.SessionRefused as e:
                res = {"outcome": "refused", "timeout": e.timeout_ms}
            except zw.ConnectionClosed:
                res = {"outcome": "closed without a ConnectResponse"}
            # ZooKeeper closes the session's current connection before it
            # checks the password, so the rightful owner is disconnected too.
            try:
                s.sync("/")
                res["original connection"] = "alive"
            except zw.ConnectionClosed:
                res["original connection"] = "closed by server"
                res["reattach"] = reattach(be, slot)
        elif k == "oversize":
            data = b"o" * op["size"]
            try:
                rep = s.call(zw.SET_DATA, zw.enc_set_data(op["path"], data, -1))
                res = {"err": errname(rep.err)}
                if rep.err == 0:
                    be.add_anchor(rep.zxid, idx, where)
            except zw.ConnectionClosed:
                res = {"closed": True, "reattach": reattach(be, slot)}
        else:
            raise ValueError(k)
    except zw.ConnectionClosed as e:
        res["connection"] = "closed: %s" % e
        if be.sessions[slot] is s:
            res["reattach"] = reattach(be, slot)
    except (zw.ProtocolError, OSError) as e:
        # a malformed or missing reply: the stream cannot be trusted any more
        res["protocol"] = "%s: %s" % (type(e).__name__, e)
        s.drop()
        if be.sessions[slot] is s:
            res["reattach"] = reattach(be, slot)
    return res


# --------------------------------------------------------------------- runner

class Runner:
    def __init__(self, args, backends, restart_cb=None):
        self.args = args
        self.a, self.b = backends
        self.disabled = set(args.disabled)
        self.gen = Gen(args.seed, self.disabled)
        self.history = []
        self.restart_cb = restart_cb
        self.stats = {}
        self.outcomes = {}
        self.events = {}
        # Known ZooKeeper 3.8-vs-3.9 divergences are modelled only when one
        # backend follows 3.8 and the other 3.9 (see README.md).
        self.old = self.new = None
        if (self.a.flavor, self.b.flavor) == ("3.8", "3.9"):
            self.old, self.new = self.a, self.b
        elif (self.a.flavor, self.b.flavor) == ("3.9", "3.8"):
            self.old, self.new = self.b, self.a
        # (slot, path) -> (3.8 session object, czxid, mzxid): an exists()
        # watch that 3.8 set on a node the session cannot read and 3.9
        # refused with NOAUTH (ZOOKEEPER-2590). It lives only on the 3.8
        # server, until the node changes or is deleted, or the connection goes.
        self.phantoms = {}
        self.divergences = {}
        self.trace = open(args.trace, "w", buffering=1) if getattr(args, "trace", None) else None

    # ------------------------------------------------ 3.8-vs-3.9 divergences

    def split(self, ra, rb):
        """(3.8's value, 3.9's value) from (A's, B's)."""
        return (ra, rb) if self.old is self.a else (rb, ra)

    def note(self, what):
        self.divergences[what] = self.divergences.get(what, 0) + 1

    def unreadable(self, slot, path):
        """Both servers say the slot's session may not read the node:
        getData (no watch) on the same session answers NOAUTH on both."""
        errs = []
        for be in (self.old, self.new):
            s = be.sessions[slot]
            if s is None or s.closed:
                return False
            try:
                errs.append(s.call(zw.GET_DATA, zw.enc_path_watch(path, False)).err)
            except (zw.ConnectionClosed, zw.ProtocolError, OSError):
                return False
        return errs == [-102, -102]

    def add_phantom(self, slot, path):
        rep = self.old.super_call(zw.EXISTS, zw.enc_path_watch(path, False))
        if rep.err == 0:
            st = rep.body["stat"]
            self.phantoms[(slot, path)] = (self.old.sessions[slot], st.czxid, st.mzxid)

    def live_phantom(self, slot, path):
        ph = self.phantoms.get((slot, path))
        return ph is not None and ph[0] is self.old.sessions[slot] and not ph[0].closed

    def probe_phantoms(self):
        """After an op that may have changed the tree: which phantom watches
        did it trigger? A 3.8 data watch fires at the first setData (mzxid
        changes) or delete (node gone, or re-created: czxid changes) of its
        node. Asked as super on the 3.8 server. Returns {slot: {path}} and
        forgets the ones that fired."""
        fired = {}
        for (slot, path), (_sess, cz, mz) in sorted(self.phantoms.items()):
            rep = self.old.super_call(zw.EXISTS, zw.enc_path_watch(path, False))
            if rep.err != 0 or rep.body["stat"].czxid != cz or rep.body["stat"].mzxid != mz:
                fired.setdefault(slot, set()).add(path)
                del self.phantoms[(slot, path)]
        return fired

    def prune_phantoms(self, op, res):
        """Forget phantom watches whose connection is gone, and those that
        an agreed op made equal on both servers."""
        for key, (sess, _cz, _mz) in list(self.phantoms.items()):
            if self.old.sessions[key[0]] is not sess or sess.closed:
                del self.phantoms[key]
        k = op["kind"]
        key = (op["slot"], op.get("path"))
        if key not in self.phantoms or res.get("err") != "OK":
            return
        if (k in ("exists", "getData") and op["watch"]) or k == "addWatch" or \
                (k == "removeWatches" and op["wtype"] in (2, 3)):
            # both now hold a data watch there (3.8's addWatch replaces the
            # one-shot mode by the persistent one), or neither does
            del self.phantoms[key]

    def bad_multi_creates(self, op):
        """Indexes of multi sub-ops that 3.9 cannot decode (ZOOKEEPER-4026):
        a CreateRequest (create/create2/createContainer) with flags outside
        0-4 or a null ACL."""
        return [i for i, x in enumerate(op["ops"]) if x[0] == "create" and x[1] != zw.CREATE_TTL
                and (x[5] not in (0, 1, 2, 3, 4) or x[4] is None)]

    def answered_like_38(self, op, res):
        """Both servers gave the same answer, but it is 3.8's where 3.9's
        must differ. Returns a reason, or None."""
        k = op["kind"]
        if k == "exists" and res.get("err") == "OK" and self.unreadable(op["slot"], op["path"]):
            return ("exists() on a node the session cannot read (getData says NOAUTH) must "
                    "answer NOAUTH (ZOOKEEPER-2590)")
        if k == "multi":
            bad = self.bad_multi_creates(op)
            if bad and res != {"err": "MARSHALLINGERROR"}:
                return ("sub-op #%d is a create request with flags %r and ACL %r, which 3.9 "
                        "cannot decode: the whole multi fails with MARSHALLINGERROR "
                        "(ZOOKEEPER-4026)" % (bad[0], op["ops"][bad[0]][5],
                                               op["ops"][bad[0]][4]))
            rs = res.get("results") or []
            for i, (sub, x) in enumerate(zip(op["ops"], rs)):
                if sub[0] == "create" and sub[1] == zw.CREATE2 and sub[5] in (0, 1, 2, 3) \
                        and x.get("type") == "create":
                    return ("sub-op #%d create2 with flags %d must be answered as create2 with "
                            "a stat (ZOOKEEPER-4026)" % (i, sub[5]))
        return None

    def reconcile_multi(self, idx, op, ro, rn):
        """ZOOKEEPER-4026 (3.9) changed how a multi reads its create
        sub-ops sent as create/create2/createContainer (a CreateRequest):
          - it builds a CreateOptions from them while decoding the request,
            so flags outside 0-6, flags 5/6 (a TTL mode without a TTL) and a
            null ACL (Objects.requireNonNull) make the whole multi fail with
            MARSHALLINGERROR before any sub-op is prepared. 3.8 fails only when
            it reaches that sub-op (BADARGUMENTS, MARSHALLINGERROR or
            INVALIDACL), and an earlier failing sub-op wins;
          - create2 with flags 0-3 stays create2, answered with path and
            stat; 3.8 decays it to create (path only)."""
        subs = op["ops"]
        bad = self.bad_multi_creates(op)
        if bad and rn == {"err": "MARSHALLINGERROR"}:
            rs = ro.get("results")
            if ro.get("err") == "OK" and rs is not None and len(rs) == len(subs) \
                    and all(x.get("type") == "error" for x in rs):
                first = min(i for i, x in enumerate(rs) if x.get("err") != "OK")
                if first <= bad[0]:
                    self.note("multi with an undecodable create fails as a whole "
                              "(ZOOKEEPER-4026)")
                    return rn
            return None
        if ro.get("err") != "OK" or rn.get("err") != "OK" or set(ro) != set(rn):
            return None
        ros, rns = ro.get("results") or [], rn.get("results") or []
        if len(ros) != len(rns) or len(ros) != len(subs):
            return None
        changed = False
        for sub, xo, xn in zip(subs, ros, rns):
            if xo == xn:
                continue
            if not (sub[0] == "create" and sub[1] == zw.CREATE2 and sub[5] in (0, 1, 2, 3)):
                return None
            if xo != {"type": "create", "hdr_err": "OK", "path": xn.get("path")} or \
                    set(xn) != {"type", "hdr_err", "path", "stat"} or xn["type"] != "create2":
                return None
            data = sub[3]
            owner = 0
            if sub[5] in (1, 3):
                owner = self.new.owner_label(self.new.sessions[op["slot"]].session_id)
            want = {"czxid": ("op", idx), "mzxid": ("op", idx), "pzxid": ("op", idx),
                    "version": 0, "cversion": 0, "aversion": 0, "ephemeralOwner": owner,
                    "dataLength": len(data) if data is not None else 0, "numChildren": 0,
                    "ctime==0": False}
            if xn["stat"] != want:
                return None
            changed = True
        if changed:
            self.note("multi create2 answered with a stat (ZOOKEEPER-4026)")
            return rn
        return None

    def other_watcher(self, slot, path, wtype):
        """Does another session hold a watch on exactly this path, in the
        watch table(s) that 3.8's checkWatches type wtype looks at? 3.8 puts a
        one-shot child watch in the child table, exists/getData watches in
        the data table, and persistent and persistent-recursive watches in
        both. Asked on the 3.9 server, whose checkWatches is per session:
        type 1 (one-shot child), 2 (one-shot data), 4 (persistent),
        5 (recursive), 3 (any). A 3.8-only exists watch of another session
        (see phantoms) counts for the data table."""
        if wtype in (2, 3) and any(j != slot and p == path and self.live_phantom(j, p)
                                   for (j, p) in self.phantoms):
            return True
        types = {1: (1, 4, 5), 2: (2, 4, 5), 3: (3,)}[wtype]
        for j in range(len(SLOTS)):
            s = self.new.sessions[j]
            if j == slot or s is None or s.closed:
                continue
            for t in types:
                try:
                    if s.call(zw.CHECK_WATCHES, zw.enc_path_int(path, t)).err == 0:
                        return True
                except (zw.ConnectionClosed, zw.ProtocolError, OSError):
                    return False
        return False

    @staticmethod
    def drop_phantom_events(lo, ln, paths):
        """3.8's event list minus, for each phantom path that fired, one
        NodeDataChanged/NodeDeleted event for that path that 3.9 lacks.
        Returns the result if it equals 3.9's list, else None."""
        lo = list(lo)
        for p in sorted(paths):
            for i, e in enumerate(lo):
                if isinstance(e, tuple) and len(e) == 3 and e[2] == p and e[0] in (2, 3) \
                        and lo.count(e) > ln.count(e):
                    del lo[i]
                    break
        return lo if lo == ln else None

    def reconcile(self, idx, op, ra, rb, fired):
        """Results differ. If the difference is a modelled 3.8-vs-3.9
        divergence, return the result to go on with (3.9's); else None."""
        if self.old is None:
            return None
        ro, rn = self.split(ra, rb)
        k = op["kind"]
        slot = op["slot"]
        if k == "exists" and ro.get("err") == "OK" and set(ro) == {"err", "stat"} \
                and rn == {"err": "NOAUTH"}:
            # ZOOKEEPER-2590: 3.9's exists() checks READ on an existing node
            if self.unreadable(slot, op["path"]):
                self.note("exists NOAUTH (ZOOKEEPER-2590)")
                if op["watch"]:
                    self.add_phantom(slot, op["path"])
                    self.note("exists watch set only by 3.8 (ZOOKEEPER-2590)")
                return rn
            return None
        if k in ("removeWatches", "checkWatches") and op["wtype"] in (2, 3) \
                and ro == {"err": "OK"} and rn == {"err": "NOWATCHER"} \
                and self.live_phantom(slot, op["path"]):
            # the only watch there is the one 3.8 set and 3.9 refused
            self.note("%s finds the 3.8-only exists watch (ZOOKEEPER-2590)" % k)
            if k == "removeWatches":
                del self.phantoms[(slot, op["path"])]
            return rn
        if k == "multi":
            return self.reconcile_multi(idx, op, ro, rn)
        if k == "checkWatches" and op["wtype"] in (1, 2, 3) and ro == {"err": "OK"} \
                and rn == {"err": "NOWATCHER"} and self.other_watcher(slot, op["path"], op["wtype"]):
            # 3.8's WatchManager.containsWatcher answers whether the path has
            # any watcher in that table, whoever owns it; ZOOKEEPER-4466
            # made it look for the caller's watch only.
            self.note("checkWatches sees another session's watch in 3.8 (ZOOKEEPER-4466)")
            return rn
        if k == "closeSession" and slot in fired:
            key = "events before the close reply"
            rest_o = dict((x, y) for x, y in ro.items() if x != key)
            rest_n = dict((x, y) for x, y in rn.items() if x != key)
            if rest_o == rest_n and self.drop_phantom_events(
                    ro.get(key, []), rn.get(key, []), fired[slot]) is not None:
                self.note("event from the 3.8-only exists watch (ZOOKEEPER-2590)")
                return rn
        return None

    def reconcile_events(self, ea, eb, fired):
        """Event lists differ: acceptable only if, per slot, 3.8's list is
        3.9's plus the events of phantom watches that fired in this op."""
        if self.old is None:
            return False
        eo, en = self.split(ea, eb)
        for slot in set(eo) | set(en):
            lo, ln = eo.get(slot, []), en.get(slot, [])
            if lo != ln:
                if self.drop_phantom_events(lo, ln, fired.get(slot, ())) is None:
                    return False
                self.note("event from the 3.8-only exists watch (ZOOKEEPER-2590)")
        return True

    def repro(self):
        a = self.args
        cmd = ["interop/differential/run.sh", "--a", a.a, "--b", a.b, "--seed", str(a.seed),
               "--ops", str(a.ops)]
        if self.disabled - DEFAULT_DISABLED:
            cmd += ["--disable", ",".join(sorted(self.disabled - DEFAULT_DISABLED))]
        if DEFAULT_DISABLED - self.disabled:
            cmd += ["--enable", ",".join(sorted(DEFAULT_DISABLED - self.disabled))]
        if a.tree_every != 1000:
            cmd += ["--tree-every", str(a.tree_every)]
        for flag, val in (("--extra-cfg-a", a.extra_cfg_a), ("--extra-cfg-b", a.extra_cfg_b)):
            if val:
                cmd += [flag, "'%s'" % val]
        for flag, val in (("--flavor-a", a.flavor_a), ("--flavor-b", a.flavor_b)):
            if val:
                cmd += [flag, val]
        if a.sort_acls:
            cmd += ["--sort-acls"]
        if a.accept_38_answers:
            cmd += ["--accept-38-answers"]
        if a.port_base != 21010:
            cmd += ["--port-base", str(a.port_base)]
        return " ".join(cmd)

    def tally(self, op, res):
        errs = []
        if "err" in res:
            errs.append(res["err"])
        for x in res.get("results") or []:
            if x.get("type") == "error":
                errs.append("multi:" + x.get("err", "?"))
        for e in errs:
            self.outcomes[e] = self.outcomes.get(e, 0) + 1

    def log(self, msg):
        print(msg, flush=True)

    def fail(self, idx, op, what, ra, rb, extra=""):
        lines = [
            "",
            "=" * 78,
            "DIFFERENCE at op #%d (seed %d): %s" % (idx, self.args.seed, what),
            "op: %s" % (describe(op) if op else "-"),
            "session slot: %s" % (("%d (%s)" % (op["slot"], SLOTS[op["slot"]][0])) if op else "-"),
            "%s: %s" % (self.a.name, short(ra, 400)),
            "%s: %s" % (self.b.name, short(rb, 400)),
        ]
        if isinstance(ra, dict) and isinstance(rb, dict):
            keys = sorted(set(ra) | set(rb), key=str)
            for k in keys:
                if ra.get(k) != rb.get(k):
                    lines.append("  differs in %r:\n    %s: %s\n    %s: %s"
                                 % (k, self.a.name, short(ra.get(k), 300),
                                    self.b.name, short(rb.get(k), 300)))
        if extra:
            lines.append(extra)
        lines.append("last operations:")
        for i, o in self.history[-15:]:
            lines.append("  #%d %s" % (i, describe(o)))
        lines.append("reproduce: " + self.repro())
        lines.append("=" * 78)
        raise Difference("\n".join(lines))

    def both_phantoms(self, idx, op):
        try:
            return self.probe_phantoms()
        except (zw.ProtocolError, zw.ConnectionClosed, OSError) as e:
            self.fail(idx, op, "probing %s for 3.8-only watches failed (%s)"
                      % (self.old.name, type(e).__name__), str(e), "(not compared)")

    def both(self, fn, idx, op, what):
        out = []
        for be in (self.a, self.b):
            try:
                out.append(fn(be))
            except Implausible as e:
                self.fail(idx, op, "implausible result from %s" % be.name,
                          str(e), "(not compared)")
            except (zw.ProtocolError, zw.ConnectionClosed, OSError) as e:
                self.fail(idx, op, "%s failed talking to %s (%s)" % (what, be.name, type(e).__name__),
                          "%s: %s" % (type(e).__name__, e), "(not compared)",
                          traceback.format_exc(limit=6))
        return out

    def compare(self, idx, op, what, ra, rb):
        if ra != rb:
            self.fail(idx, op, what, ra, rb)

    def setup_sessions(self):
        for slot in range(len(SLOTS)):
            ra, rb = self.both(lambda be: be.open_slot(slot), -1, None, "open")
            self.compare(-1, None, "opening session slot %d" % slot, ra, rb)

    def compare_trees(self, idx, label):
        ta, tb = self.both(lambda be: be.dump_tree(), idx, None, "dump")
        if ta != tb:
            lines = []
            for p in sorted(set(ta) | set(tb)):
                if ta.get(p) != tb.get(p):
                    lines.append("  %s\n    %s: %s\n    %s: %s" % (
                        repr(p), self.a.name, short(ta.get(p), 300),
                        self.b.name, short(tb.get(p), 300)))
                    if len(lines) > 20:
                        lines.append("  ...")
                        break
            self.fail(idx, None, "full tree comparison (%s) differs" % label,
                      "%d nodes" % len(ta), "%d nodes" % len(tb), "\n".join(lines))
        return ta

    def run(self):
        t0 = time.time()
        self.setup_sessions()
        n = self.args.ops
        for idx in range(n):
            op = self.gen.op()
            self.history.append((idx, op))
            self.stats[op["kind"]] = self.stats.get(op["kind"], 0) + 1
            ra, rb = self.both(lambda be: execute(be, op, idx), idx, op, "execute")
            if self.trace:
                self.trace.write("#%d %s\n  A: %s\n  B: %s\n" % (idx, describe(op), short(ra, 300),
                                                                short(rb, 300)))
            fired = {}
            if op["kind"] in MUTATING and self.phantoms:
                fired = self.both_phantoms(idx, op)
            if ra != rb:
                agreed = self.reconcile(idx, op, ra, rb, fired)
                if agreed is None:
                    self.fail(idx, op, "results differ", ra, rb)
                ra = rb = agreed
            elif self.old is not None and not self.args.accept_38_answers:
                why = self.answered_like_38(op, ra)
                if why:
                    self.fail(idx, op, "%s (declared 3.9) answered like 3.8 where 3.9 differs: %s"
                              % (self.new.name, why), ra, rb)
            self.tally(op, ra)
            evs_agreed = {}
            if op["kind"] in MUTATING:
                ea, eb = self.both(lambda be: be.drain_events(
                    range(len(SLOTS)), unordered=op["kind"] == "closeSession"), idx, op, "events")
                if ea != eb and not self.reconcile_events(ea, eb, fired):
                    self.fail(idx, op, "watch events differ (per session slot: "
                              "(type, state, path))", ea, eb)
                for evs in ea.values():
                    for e in evs:
                        if isinstance(e, tuple) and len(e) == 3:
                            self.events[e[0]] = self.events.get(e[0], 0) + 1
                evs_agreed = self.split(ea, eb)[1] if self.old is not None else ea
            self.gen.learn(op, ra)
            self.gen.learn_events(evs_agreed)
            if self.old is not None:
                self.prune_phantoms(op, ra)
            # reopen a closed slot, and compare the outcome
            if op["kind"] == "closeSession" or any(
                    be.sessions[op["slot"]] is None for be in (self.a, self.b)):
                ra, rb = self.both(lambda be: be.open_slot(op["slot"]), idx, op, "reopen")
                self.compare(idx, op, "reopening the session slot", ra, rb)
            if self.args.tree_every and (idx + 1) % self.args.tree_every == 0:
                dump = self.compare_trees(idx, "after op #%d" % idx)
                self.gen.relearn(dump)
            if (idx + 1) % 1000 == 0:
                self.log("  %d/%d ops, %.1fs, %d known paths" % (idx + 1, n, time.time() - t0,
                                                                  len(self.gen.known)))
        # close every session: ephemerals vanish, watchers see it
        for slot in range(len(SLOTS)):
            op = {"kind": "closeSession", "slot": slot}
            idx = n + slot
            self.history.append((idx, op))
            ra, rb = self.both(lambda be: execute(be, op, idx), idx, op, "execute")
            fired = self.both_phantoms(idx, op) if self.phantoms else {}
            if ra != rb and self.reconcile(idx, op, ra, rb, fired) is None:
                self.fail(idx, op, "results differ", ra, rb)
            ea, eb = self.both(lambda be: be.drain_events(range(len(SLOTS)), unordered=True),
                               idx, op, "events")
            if ea != eb and not self.reconcile_events(ea, eb, fired):
                self.fail(idx, op, "watch events differ", ea, eb)
            if self.old is not None:
                self.prune_phantoms(op, ra)
        dump = self.compare_trees(n + len(SLOTS), "end of operations")
        self.log("ops done: %d ops in %.1fs; final tree has %d nodes" % (
            n, time.time() - t0, len(dump)))
        if "reap-phase" not in self.disabled and self.restart_cb is not None:
            self.reap_phase(dump)
        self.log("op mix: " + ", ".join("%s=%d" % kv for kv in sorted(self.stats.items())))
        self.log("results: " + ", ".join("%s=%d" % kv for kv in sorted(self.outcomes.items())))
        evnames = {1: "NodeCreated", 2: "NodeDeleted", 3: "NodeDataChanged", 4: "NodeChildrenChanged"}
        self.log("watch events delivered: " + ", ".join(
            "%s=%d" % (evnames.get(k, k), v) for k, v in sorted(self.events.items())))
        if self.old is not None:
            self.log("3.8-vs-3.9 divergences accepted (%s is 3.8, %s is 3.9): %s" % (
                self.old.name, self.new.name, ", ".join(
                    "%s=%d" % kv for kv in sorted(self.divergences.items())) or "none"))

    def eligible(self, dump):
        """Nodes ZooKeeper's reaper would delete now (given what we created)."""
        out = []
        for p, node in dump.items():
            if not isinstance(node, dict):
                continue
            kind = self.gen.kind.get(p)
            st = node["stat"]
            if kind is None or st["numChildren"] != 0:
                continue
            if kind[0] == "container" and st["cversion"] > 0:
                out.append(p)
            elif kind[0] == "ttl" and kind[1] in TTL_SHORT:
                out.append(p)
        return sorted(out)

    def reap_phase(self, dump):
        """Restart both servers with a short reaper interval and wait until
        neither has a node left that ZooKeeper's reaper would delete, both
        trees are equal, and they stayed so for one more poll; then compare.
        Nothing is asserted about when a node goes, only about the end state."""
        t0 = time.time()
        time.sleep(TTL_SETTLE_MS / 1000.0)   # every short TTL has expired
        self.a.close_all()
        self.b.close_all()
        before = self.eligible(dump)
        self.log("reap phase: restarting both servers with a %d ms container check interval; "
                 "%d nodes eligible now (more may follow as parents empty)"
                 % (self.args.reap_interval_ms, len(before)))
        self.restart_cb(self.args.reap_interval_ms)
        deadline = time.time() + self.args.reap_timeout
        ta = tb = prev = None
        settled = False
        while time.time() < deadline:
            time.sleep(max(0.25, self.args.reap_interval_ms / 1000.0 / 2))
            ta, tb = self.both(lambda be: be.dump_tree(), -1, None, "dump")
            if not self.eligible(ta) and not self.eligible(tb) and ta == tb:
                if prev == ta:
                    settled = True
                    break
                prev = ta
            else:
                prev = None
        if not settled:
            self.log("reap phase: not settled after %.0fs (eligible on %s: %s; on %s: %s)"
                     % (self.args.reap_timeout, self.a.name, self.eligible(ta)[:10],
                        self.b.name, self.eligible(tb)[:10]))
        self.compare_trees(-1, "after reaping")
        self.log("reap phase: done in %.1fs; %d nodes before, %d after" % (
            time.time() - t0, len(dump), len(ta or {})))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: time-based)")
    ap.add_argument("--ops", type=int, default=5000, help="operations per run (default 5000)")
    ap.add_argument("--a", default="zookeeper", help="backend A: zookeeper|ferrozk|host:port")
    ap.add_argument("--b", default="ferrozk", help="backend B: zookeeper|ferrozk|host:port")
    ap.add_argument("--port-base", type=int, default=21010)
    ap.add_argument("--ferrozk-bin", default=None)
    ap.add_argument("--workdir", default=None, help="where server data and logs go "
                    "(default: a fresh temp dir, removed on success)")
    ap.add_argument("--keep", action="store_true", help="keep the work dir even on success")
    ap.add_argument("--tree-every", type=int, default=1000,
                    help="compare the whole tree every N ops (0 = only at the end)")
    ap.add_argument("--disable", default="", help="comma-separated categories to switch off; "
                    "'list' prints them")
    ap.add_argument("--enable", default="", help="comma-separated categories to switch on "
                    "(for ones off by default)")
    ap.add_argument("--extra-cfg-a", default="", help="extra zoo.cfg lines for server A, ';'-separated")
    ap.add_argument("--extra-cfg-b", default="", help="extra zoo.cfg lines for server B, ';'-separated "
                    "(e.g. 'skipACL=yes' to check that the test notices a difference)")
    ap.add_argument("--flavor-a", choices=["3.8", "3.9", "none"], default=None,
                    help="which ZooKeeper line server A follows where 3.8 and 3.9 differ "
                    "(default: 3.8 for zookeeper, 3.9 for ferrozk, none for host:port)")
    ap.add_argument("--flavor-b", choices=["3.8", "3.9", "none"], default=None,
                    help="the same for server B")
    ap.add_argument("--trace", default=None, help="write every op and both results to this file")
    ap.add_argument("--accept-38-answers", action="store_true",
                    help="where ZooKeeper 3.8 and 3.9 differ, also accept 3.8's answer from the "
                    "server declared 3.9 (by default it must give 3.9's)")
    ap.add_argument("--sort-acls", action="store_true",
                    help="compare ACL lists sorted (only to look past a known ACL-order bug)")
    ap.add_argument("--reap-interval-ms", type=int, default=1000)
    ap.add_argument("--reap-timeout", type=float, default=30.0)
    args = ap.parse_args(argv)

    if args.disable == "list":
        for k, v in CATEGORIES.items():
            print("%-20s %s%s" % (k, v, "  [off by default]" if k in DEFAULT_DISABLED else ""))
        return 0
    disabled = set(DEFAULT_DISABLED)
    for c in filter(None, args.disable.split(",")):
        if c not in CATEGORIES:
            ap.error("unknown category %r (try --disable list)" % c)
        disabled.add(c)
    for c in filter(None, args.enable.split(",")):
        if c not in CATEGORIES:
            ap.error("unknown category %r (try --disable list)" % c)
        disabled.discard(c)
    args.disabled = sorted(disabled)
    global SORT_ACLS
    SORT_ACLS = args.sort_acls
    if args.seed is None:
        args.seed = int(time.time() * 1000) % 1000000007
    if args.ferrozk_bin is None:
        root = os.path.dirname(os.path.dirname(HERE))
        args.ferrozk_bin = os.environ.get("FERROZK_BIN",
                                          os.path.join(root, "target", "release", "ferrozk"))

    import servers
    print("differential test: seed=%d ops=%d A=%s B=%s disabled=%s" % (
        args.seed, args.ops, args.a, args.b, ",".join(args.disabled) or "-"), flush=True)

    workdir = args.workdir or tempfile.mkdtemp(prefix="ferrozk-diff-")
    procs = []
    endpoints = []
    for i, spec in enumerate((args.a, args.b)):
        name = "%s-%s" % ("AB"[i], spec.replace(":", "_"))
        if spec in ("zookeeper", "ferrozk"):
            if spec == "ferrozk" and not os.access(args.ferrozk_bin, os.X_OK):
                print("error: ferrozk binary %s not found or not executable (set FERROZK_BIN)"
                      % args.ferrozk_bin, file=sys.stderr)
                return 2
            port = free_port(args.port_base + i, avoid=[e[2] for e in endpoints])
            extra = [x.strip() for x in (args.extra_cfg_a, args.extra_cfg_b)[i].split(";") if x.strip()]
            srv = servers.Server(name, spec, port, workdir, ferrozk_bin=args.ferrozk_bin,
                                 extra_cfg=extra)
            procs.append(srv)
            endpoints.append((name, "127.0.0.1", port))
        else:
            host, port = spec.rsplit(":", 1)
            endpoints.append((name, host, int(port)))

    def start_all(interval_ms):
        # one JVM at a time: the machine is small
        for srv in procs:
            t = time.time()
            srv.start(interval_ms)
            srv.wait_ready()
            print("  started %s in %.1fs" % (srv.describe(), time.time() - t), flush=True)

    def restart_all(interval_ms):
        for srv in procs:
            srv.stop()
        start_all(interval_ms)

    rc = 2
    t0 = time.time()
    try:
        start_all(3600 * 1000)
        flavors = []
        for spec, fl in ((args.a, args.flavor_a), (args.b, args.flavor_b)):
            if fl is None:
                fl = {"zookeeper": "3.8", "ferrozk": "3.9"}.get(spec, "none")
            flavors.append(None if fl == "none" else fl)
        backends = [Backend(n, h, p, fl) for (n, h, p), fl in zip(endpoints, flavors)]
        runner = Runner(args, backends, restart_cb=restart_all if len(procs) == 2 else None)
        try:
            runner.run()
            rc = 0
            print("PASS: seed=%d ops=%d, no differences (%.1fs total)" % (
                args.seed, args.ops, time.time() - t0), flush=True)
        except Difference as d:
            print(str(d), flush=True)
            print("FAIL: seed=%d (server logs in %s)" % (args.seed, workdir), flush=True)
            rc = 1
        finally:
            for be in backends:
                try:
                    be.close_all()
                except Exception:
                    pass
    except Exception:
        traceback.print_exc()
        print("ERROR: harness failure, seed=%d (server logs in %s)" % (args.seed, workdir),
              flush=True)
        for srv in procs:
            print("---- last lines of %s" % srv.log_path)
            print(srv.tail_log())
        rc = 2
    finally:
        for srv in procs:
            srv.stop()
        if rc == 0 and not args.keep and not args.workdir:
            servers.remove_tree(workdir)
    return rc


def free_port(start, avoid=()):
    import socket
    end = 21100 if start < 21100 else 21200
    for p in range(start, end):
        if p in avoid:
            continue
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", p))
                return p
            except OSError:
                continue
    raise RuntimeError("no free port in %d..%d" % (start, end - 1))


if __name__ == "__main__":
    sys.exit(main())
