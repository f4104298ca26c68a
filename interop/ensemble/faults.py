#!/usr/bin/env python3
"""Fault test for a ferrozk ensemble (or Apache ZooKeeper's, as a check of the test itself).

Starts N members on loopback. Members reach each other only through proxies run by this
script (one per direction and member pair), so a member can be cut off from the others: a cut
proxy drops its connections and swallows new ones without an answer (a blackhole, as a dead
link looks). Meanwhile kazoo clients, each connected to all members, run:

- versioned counter increments (get, then set with the version read) on one counter;
- sequential creates, each carrying a unique token;
- kazoo Locks on one path, each holder checking that no other holder is inside;
- write-then-sync-then-read probes across two members;
- with `--flood`, two raw-protocol flooders (`flood_worker`) pipelining 1 KB setData on /flood
  as fast as a member takes them, one reading its replies and one never reading, which must
  not starve the clients above (issue 15). With the release build it passes on 3 and 5
  members (FERROZK_BIN=target/release/ferrozk faults.py --flood: 448k flood writes beside
  1,852 acknowledged creates and 599 increments, 3 members). On the debug build CI uses, 3
  members pass (120-270 creates in 40 s beside the flood, 2026-12-07, after consensus moved to
  its own thread, appends got their RPC timeout floor and a follower stopped standing for
  election after giving a vote); 5 members still fail now and then: a worker's request is
  never answered after the faults end. So run.sh does not flood yet.

and the fault loop kills members (SIGKILL, the leader as often as not), pauses them
(SIGSTOP/SIGCONT) or cuts them off, one fault at a time, healing each after a while.

At the end every member is restarted and healed, and the checker verifies:
- every acknowledged sequential create is present with its token, and no sequence number was
  handed out twice; each session saw its own creates in increasing order;
- every acknowledged counter increment is there: the acknowledged new values are distinct and
  the final value is at least the number of acknowledged increments and at most that plus the
  increments whose outcome is unknown (connection lost in flight);
- no two lock holders overlapped (a holder counts as holding from acquisition until release or
  until its connection was first suspended, whichever is earlier);
- a read after sync on any member saw every write acknowledged before the sync;
- all members reach the same zxid and the same tree digest (`hash` four-letter word), and
  answer the same data for every znode the test wrote.

Usage: faults.py [--members 3] [--seconds 60] [--seed N] [--backend ferrozk|zookeeper]
Exit status 0 when every check passed.
"""

import argparse
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from kazoo.client import KazooClient
from kazoo.exceptions import (
    BadVersionError,
    ConnectionLoss,
    KazooException,
    NodeExistsError,
    OperationTimeoutError,
    SessionExpiredError,
)
from kazoo.protocol.states import KazooState
from kazoo.retry import KazooRetry

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from ensemble import HOST, REPO, four_letter, free_port  # noqa: E402


def log(msg):
    sys.stdout.write("%s %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stdout.flush()


class Proxy(object):
    """Forwards one direction of one member pair; `cut` turns it into a blackhole."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.port = free_port()
        self.cut = False
        self.conns = []
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, self.port))
        self.sock.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            if self.cut:
                with self.lock:
                    self.conns.append((c, None))  # held open, never answered
                continue
            try:
                u = socket.create_connection((HOST, self.target_port), timeout=2)
            except OSError:
                c.close()
                continue
            with self.lock:
                self.conns.append((c, u))
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data or self.cut:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def set_cut(self, cut):
        # Healing ends the connections held during the cut, as their timeouts would.
        self.cut = cut
        if True:
            with self.lock:
                conns, self.conns = self.conns, []
            for c, u in conns:
                for s in (c, u):
                    if s is not None:
                        try:
                            s.shutdown(socket.SHUT_RDWR)
                            s.close()
                        except OSError:
                            pass


class Member(object):
    def __init__(self, backend, sid, root, tick):
        self.backend = backend
        self.sid = sid
        self.dir = os.path.join(root, "m%d" % sid)
        os.makedirs(os.path.join(self.dir, "data"))
        with open(os.path.join(self.dir, "data", "myid"), "w") as f:
            f.write("%d\n" % sid)
        self.client_port = free_port()
        self.quorum_port = free_port()
        self.election_port = free_port()
        self.tick = tick
        self.proc = None
        self.paused = False

    def write_config(self, members, proxies):
        lines = [
            "tickTime=%d" % self.tick,
            "initLimit=10",
            "syncLimit=5",
            "dataDir=%s" % os.path.join(self.dir, "data"),
            "clientPort=%d" % self.client_port,
            "clientPortAddress=%s" % HOST,
            "maxClientCnxns=0",
            "4lw.commands.whitelist=*",
            "admin.enableServer=false",
            "digest.enabled=true",
        ]
        for m in members:
            if m is self:
                q, e = m.quorum_port, m.election_port
            else:
                q, e = proxies[(self.sid, m.sid, "q")].port, proxies[(self.sid, m.sid, "e")].port
            lines.append("server.%d=%s:%d:%d" % (m.sid, HOST, q, e))
        with open(os.path.join(self.dir, "zoo.cfg"), "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self):
        cfg = os.path.join(self.dir, "zoo.cfg")
        if self.backend == "ferrozk":
            binary = os.environ.get("FERROZK_BIN") or os.path.join(REPO, "target", "debug", "ferrozk")
            cmd = [binary, "server", cfg]
        else:
            cp = "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar:/usr/share/java/*"
            cmd = ["java", "-cp", cp, "-Dzookeeper.digest.enabled=true",
                   "org.apache.zookeeper.server.quorum.QuorumPeerMain", cfg]
        out = open(os.path.join(self.dir, "server.log"), "ab")
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=self.dir)
        self.paused = False

    def kill(self):
        if self.proc and self.proc.poll() is None:
            if self.paused:
                self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        self.paused = False

    def pause(self, on):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGSTOP if on else signal.SIGCONT)
            self.paused = on

    def mode(self):
        for line in four_letter(self.client_port, "srvr").splitlines():
            if line.startswith("Mode:"):
                return line.split(":", 1)[1].strip()
        return None

    def zxid(self):
        for line in four_letter(self.client_port, "srvr").splitlines():
            if line.startswith("Zxid:"):
                return int(line.split(":", 1)[1].strip(), 16)
        return None


class Results(object):
    def __init__(self):
        self.lock = threading.Lock()
        self.seq_acked = []          # (path, token, worker)
        self.seq_unknown = 0
        self.counter_acked = []      # new values acknowledged
        self.counter_unknown = 0
        self.lock_intervals = []     # (start, end, holder)
        self.sync_checks = 0
        self.failures = []
        self.ops = 0
        self.flood_sent = 0          # setData requests the flooders sent

    def fail(self, msg):
        with self.lock:
            self.failures.append(msg)
        log("FAIL " + msg)


def client(hosts, timeout):
    retry = KazooRetry(max_tries=-1, delay=0.05, max_delay=0.5)
    c = KazooClient(hosts=hosts, timeout=timeout, connection_retry=retry, randomize_hosts=True)
    c.start(timeout=30)
    return c


UNKNOWN = (ConnectionLoss, OperationTimeoutError)


def seq_worker(hosts, res, stop, wid):
    zk = client(hosts, 6.0)
    n = 0
    last_seq = -1
    try:
        while not stop.is_set():
            token = "w%d-%d" % (wid, n)
            n += 1
            try:
                path = zk.create("/seq/item-", token.encode(), sequence=True)
            except UNKNOWN:
                with res.lock:
                    res.seq_unknown += 1
                time.sleep(0.05)
                continue
            except (SessionExpiredError, KazooException):
                time.sleep(0.05)
                continue
            seq = int(path[-10:])
            if seq <= last_seq:
                res.fail("worker %d: sequence %d after %d in one session's order" % (wid, seq, last_seq))
            last_seq = seq
            with res.lock:
                res.seq_acked.append((path, token, wid))
                res.ops += 1
    finally:
        zk.stop()
        zk.close()


def counter_worker(hosts, res, stop):
    zk = client(hosts, 6.0)
    try:
        while not stop.is_set():
            try:
                data, st = zk.get("/counter")
                value = int(data)
            except (KazooException, ValueError):
                time.sleep(0.05)
                continue
            try:
                zk.set("/counter", str(value + 1).encode(), version=st.version)
            except BadVersionError:
                continue
            except UNKNOWN:
                with res.lock:
                    res.counter_unknown += 1
                time.sleep(0.05)
                continue
            except KazooException:
                time.sleep(0.05)
                continue
            with res.lock:
                res.counter_acked.append(value + 1)
                res.ops += 1
    finally:
        zk.stop()
        zk.close()


def lock_worker(hosts, res, stop, wid):
    zk = client(hosts, 6.0)
    suspended_at = [None]

    def listener(state):
        if state != KazooState.CONNECTED and suspended_at[0] is None:
            suspended_at[0] = time.monotonic()

    zk.add_listener(listener)
    try:
        while not stop.is_set():
            lock = zk.Lock("/lock", "w%d" % wid)
            try:
                if not lock.acquire(timeout=5):
                    continue
            except KazooException:
                time.sleep(0.1)
                continue
            suspended_at[0] = None
            start = time.monotonic()
            time.sleep(random.uniform(0.005, 0.03))
            end = time.monotonic()
            if suspended_at[0] is not None:
                end = min(end, suspended_at[0])
            try:
                lock.release()
            except KazooException:
                pass
            with res.lock:
                res.lock_intervals.append((start, end, wid))
                res.ops += 1
    finally:
        zk.stop()
        zk.close()


def sync_worker(members, res, stop, chroot=""):
    """Writes through one member, then sync + read through another: the read must see it."""
    value = 0
    while not stop.is_set():
        a, b = random.sample(members, 2)
        try:
            wa = client("%s:%d" % (HOST, a.client_port), 6.0)
            wb = client("%s:%d" % (HOST, b.client_port), 6.0)
        except Exception:
            time.sleep(0.2)
            continue
        try:
            for _ in range(20):
                if stop.is_set():
                    break
                value += 1
                try:
                    wa.set("/probe", str(value).encode())
                except KazooException:
                    break
                try:
                    wb.sync("/probe")
                    got = int(wb.get("/probe")[0])
                except KazooException:
                    break
                if got < value:
                    res.fail("sync then read on member %d saw %d after %d was acknowledged by member %d"
                             % (b.sid, got, value, a.sid))
                with res.lock:
                    res.sync_checks += 1
        finally:
            for c in (wa, wb):
                try:
                    c.stop()
                    c.close()
                except Exception:
                    pass


def flood_worker(members, res, stop, read_replies):
    """Pipelines 1 KB setData on /flood, 100 per burst, as fast as a member takes them; with
    `read_replies` False it never reads. Moves to the next member when its connection ends."""
    import struct

    def frame(b):
        return struct.pack(">i", len(b)) + b

    connect = frame(struct.pack(">iqiq", 0, 0, 6000, 0) + struct.pack(">i", 16) + b"\0" * 16)
    path = b"/flood"
    req = frame(struct.pack(">ii", 1, 5) + struct.pack(">i", len(path)) + path + struct.pack(">i", 1024) + b"f" * 1024
                + struct.pack(">i", -1))
    burst = req * 100
    i = 0
    while not stop.is_set():
        m = members[i % len(members)]
        i += 1
        try:
            s = socket.create_connection((HOST, m.client_port), timeout=2)
        except OSError:
            time.sleep(0.1)
            continue
        try:
            s.sendall(connect)
            if not s.recv(64):
                raise OSError("refused")
            s.settimeout(0.2)
            while not stop.is_set():
                try:
                    s.sendall(burst)
                    with res.lock:
                        res.flood_sent += 100
                except socket.timeout:
                    pass
                if read_replies:
                    try:
                        if not s.recv(1 << 20):
                            break
                    except socket.timeout:
                        pass
        except OSError:
            time.sleep(0.1)
        finally:
            s.close()


def leader_of(members):
    for m in members:
        if m.proc and not m.paused and m.mode() == "leader":
            return m
    return None


def wait_serving(members, deadline):
    while time.monotonic() < deadline:
        modes = [m.mode() for m in members]
        if all(x in ("leader", "follower", "observer") for x in modes) and modes.count("leader") == 1:
            return True
        time.sleep(0.2)
    return False


def run(args):
    rnd = random.Random(args.seed)
    root = tempfile.mkdtemp(prefix="ferrozk-faults-")
    members = [Member(args.backend, i + 1, root, args.tick) for i in range(args.members)]
    proxies = {}
    for a in members:
        for b in members:
            if a is not b:
                proxies[(a.sid, b.sid, "q")] = Proxy(b.quorum_port)
                proxies[(a.sid, b.sid, "e")] = Proxy(b.election_port)
    for m in members:
        m.write_config(members, proxies)
        m.start()
    hosts = ",".join("%s:%d" % (HOST, m.client_port) for m in members)
    res = Results()
    stop = threading.Event()
    threads = []
    faults = {"kill": 0, "kill-leader": 0, "pause": 0, "partition": 0}
    ok = False
    try:
        if not wait_serving(members, time.monotonic() + 60):
            res.fail("the ensemble did not form within 60 s")
            return res, faults, root
        setup = client(hosts, 10.0)
        setup.ensure_path("/seq")
        setup.create("/counter", b"0")
        setup.create("/probe", b"0")
        setup.create("/flood", b"")
        setup.stop()
        setup.close()
        for i in range(3):
            threads.append(threading.Thread(target=seq_worker, args=(hosts, res, stop, i)))
        for i in range(2):
            threads.append(threading.Thread(target=counter_worker, args=(hosts, res, stop)))
        for i in range(3):
            threads.append(threading.Thread(target=lock_worker, args=(hosts, res, stop, i)))
        threads.append(threading.Thread(target=sync_worker, args=(members, res, stop)))
        for reads in (True, False) if args.flood else ():
            threads.append(threading.Thread(target=flood_worker, args=(members, res, stop, reads)))
        for t in threads:
            t.start()
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            time.sleep(rnd.uniform(1.0, 2.5))
            kind = rnd.choice(["kill", "pause", "partition"])
            leader = leader_of(members)
            victim = leader if (leader and rnd.random() < 0.5) else rnd.choice(members)
            hold = rnd.uniform(1.0, 4.0)
            if kind == "kill":
                faults["kill-leader" if victim is leader else "kill"] += 1
                log("SIGKILL member %d%s for %.1f s" % (victim.sid, " (leader)" if victim is leader else "", hold))
                victim.kill()
                time.sleep(hold)
                victim.start()
            elif kind == "pause":
                faults["pause"] += 1
                log("SIGSTOP member %d%s for %.1f s" % (victim.sid, " (leader)" if victim is leader else "", hold))
                victim.pause(True)
                time.sleep(hold)
                victim.pause(False)
            else:
                faults["partition"] += 1
                log("cut member %d%s off for %.1f s" % (victim.sid, " (leader)" if victim is leader else "", hold))
                cut = [p for (a, b, _), p in proxies.items() if victim.sid in (a, b)]
                for p in cut:
                    p.set_cut(True)
                time.sleep(hold)
                for p in cut:
                    p.set_cut(False)
        stop.set()
        for t in threads:
            t.join(120)
            if t.is_alive():
                res.fail("a worker did not finish within 120 s of the end")
        ok = True
    finally:
        stop.set()
        if ok:
            check(members, hosts, res)
        for m in members:
            m.kill()
        for p in proxies.values():
            p.set_cut(True)
            p.sock.close()
    return res, faults, root


def check(members, hosts, res):
    for m in members:
        if m.proc is None:
            m.start()
        m.pause(False)
    if not wait_serving(members, time.monotonic() + 60):
        res.fail("the ensemble did not recover within 60 s after the faults: modes %s" % [m.mode() for m in members])
        return
    zk = client(hosts, 10.0)
    zk.sync("/")
    # Lost writes.
    children = set(zk.get_children("/seq"))
    seen = {}
    for path, token, wid in res.seq_acked:
        name = path.rsplit("/", 1)[1]
        if name not in children:
            res.fail("acknowledged create %s (%s) is missing" % (path, token))
            continue
        data = zk.get(path)[0].decode()
        if data != token:
            res.fail("%s holds %r, acknowledged with %r" % (path, data, token))
        if path in seen:
            res.fail("sequence %s handed out twice (%s and %s)" % (path, seen[path], token))
        seen[path] = token
    final = int(zk.get("/counter")[0])
    acked = res.counter_acked
    if len(set(acked)) != len(acked):
        res.fail("a counter value was acknowledged twice: lost update")
    if final < len(acked) or final > len(acked) + res.counter_unknown:
        res.fail("counter is %d after %d acknowledged and %d unknown increments"
                 % (final, len(acked), res.counter_unknown))
    if acked and final < max(acked):
        res.fail("counter %d is below the acknowledged %d" % (final, max(acked)))
    # Lock holders.
    iv = sorted(res.lock_intervals)
    for (s1, e1, w1), (s2, e2, w2) in zip(iv, iv[1:]):
        if s2 < e1:
            res.fail("lock holders %d and %d overlapped by %.3f s" % (w1, w2, e1 - s2))
    zk.stop()
    zk.close()
    # Every member: same zxid, same digest, same data.
    hashes = []
    # Writes may still arrive (a leader expiring the sessions of killed clients), so the
    # digests count only when every member answered at one and the same zxid.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        zxids = [m.zxid() for m in members]
        if len(set(zxids)) == 1 and zxids[0] is not None:
            hashes = [four_letter(m.client_port, "hash").strip().splitlines()[-1:] for m in members]
            at = set(h[0].split(":")[0] if h else None for h in hashes)
            if len(at) == 1 and [m.zxid() for m in members] == zxids:
                break
        time.sleep(0.2)
    if len(set(tuple(h) for h in hashes)) != 1:
        res.fail("members disagree: zxids %s, digests %s" % ([m.zxid() for m in members], hashes))
    views = []
    for m in members:
        c = client("%s:%d" % (HOST, m.client_port), 10.0)
        view = {"/counter": c.get("/counter")[0]}
        for name in c.get_children("/seq"):
            view["/seq/" + name] = c.get("/seq/" + name)[0]
        views.append(view)
        c.stop()
        c.close()
    for m, v in zip(members[1:], views[1:]):
        if v != views[0]:
            res.fail("member %d answers differently from member %d" % (m.sid, members[0].sid))
    log("members agree: zxid 0x%x, digest %s" % (members[0].zxid() or 0, hashes[0]))


def main():
    # kazoo narrates every reconnection; the faults make many.
    logging.basicConfig(level=logging.CRITICAL)
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--tick", type=int, default=500)
    ap.add_argument("--backend", default="ferrozk", choices=["ferrozk", "zookeeper"])
    ap.add_argument("--keep", action="store_true", help="keep the members' directories")
    ap.add_argument("--flood", action="store_true", help="add two clients flooding writes (one never reads)")
    args = ap.parse_args()
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    log("%d-member %s ensemble, %.0f s of faults, seed %d" % (args.members, args.backend, args.seconds, args.seed))
    started = time.monotonic()
    res, faults, root = run(args)
    log("faults: %s" % ", ".join("%s=%d" % kv for kv in sorted(faults.items())))
    log("acknowledged: %d sequential creates (%d unknown), %d counter increments (%d unknown), "
        "%d lock holds, %d sync+read checks; the flooders sent %d writes"
        % (len(res.seq_acked), res.seq_unknown, len(res.counter_acked), res.counter_unknown,
           len(res.lock_intervals), res.sync_checks, res.flood_sent))
    if not res.seq_acked or not res.counter_acked or not res.lock_intervals or not res.sync_checks:
        res.fail("a workload made no progress at all")
    if res.failures:
        log("FAILED (%d problems) in %.0f s; member logs kept in %s" % (len(res.failures), time.monotonic() - started, root))
        sys.exit(1)
    log("PASS in %.0f s" % (time.monotonic() - started))
    if not args.keep:
        shutil.rmtree(root, True)


if __name__ == "__main__":
    main()
