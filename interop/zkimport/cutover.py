#!/usr/bin/env python3
"""Live cutover (issue 16): clients connected to Apache ZooKeeper carry on with ferrozk.

Starts Debian's Apache ZooKeeper 3.8.0 standalone. kazoo clients hold a lock (A) with a waiter
(B), run a leader election (C leads, D waits), hold ephemeral member nodes and data watches,
and a Java client (CutoverClient.java, ZooKeeper's own client) holds an ephemeral sequential
node, an ephemeral and a persistent watch. Then ZooKeeper is stopped (SIGTERM, as
zkServer.sh stop does) and `ferrozk server` starts on the same zoo.cfg: same dataDir, same
port. Checks: every client reconnects with its session id (none expires), every ephemeral is
still there with its owner, the lock holder still holds and the waiter still waits, watches
fire on the next change (kazoo's data watch, the Java client's persistent watch), releasing
the lock hands it to the waiter through the watch on its predecessor, the election passes to
D when C stops, new sequential nodes continue the sequence, and the session of a client that
died before the cutover expires on ferrozk after its timeout.

With --ensemble, the same on a 3-member ZooKeeper ensemble, one of whose followers is stopped
before the others and misses the writes made meanwhile; then ferrozk starts on every member's
zoo.cfg and dataDir (the member that stopped early first). Besides the checks above: every
member serves those writes, and all members hold the same tree.

Usage: cutover.py [--ensemble] [--keep DIR]
"""

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixtures import FERROZK, ZK_CP, HERE, free_port, read_tree, ruok, start_zookeeper  # noqa: E402
from ensemble import Ensemble  # noqa: E402

from kazoo.client import KazooClient, KazooState  # noqa: E402

SESSION_TIMEOUT = 15.0
failures = []


def check(name, ok, why=""):
    print(("PASS " if ok else "FAIL ") + name + ("" if ok else f": {why}"), flush=True)
    if not ok:
        failures.append(name)


def wait_for(pred, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


class Client:
    """A kazoo client that records every state it went through."""

    def __init__(self, name, hosts):
        self.name = name
        self.states = []
        self.zk = KazooClient(hosts=hosts, timeout=SESSION_TIMEOUT)
        self.zk.add_listener(self.states.append)
        self.zk.start(timeout=30)
        self.session = self.zk.client_id[0]


def start_java(root, hosts):
    classes = os.path.join(root, "classes")
    os.makedirs(classes)
    subprocess.run(["javac", "-nowarn", "-d", classes, "-cp", ZK_CP, os.path.join(HERE, "CutoverClient.java")],
                   check=True, capture_output=True)
    log = open(os.path.join(root, "java-client.log"), "w")
    proc = subprocess.Popen(["java", "-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                             "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", f"{classes}:{ZK_CP}",
                             "CutoverClient", hosts],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)
    line = proc.stdout.readline().split()
    if not line or line[0] != "READY":
        raise RuntimeError(f"the Java client did not start: {line}; see {root}/java-client.log")
    return proc, int(line[1], 16), line[2], line[3]


GHOST_TIMEOUT = 6
# A client that holds an ephemeral and is then killed (SIGKILL): its session stays open.
GHOST = f"""
import sys, time
from kazoo.client import KazooClient
zk = KazooClient(hosts=sys.argv[1], timeout={GHOST_TIMEOUT})
zk.start(timeout=30)
zk.create("/cutover/members/ghost", b"", ephemeral=True)
print("READY 0x%x" % zk.client_id[0], flush=True)
time.sleep(3600)
"""


def ephemerals(zk, root="/cutover"):
    """Every ephemeral under `root`: path -> owner."""
    out = {}
    for child in zk.get_children(root):
        path = f"{root}/{child}"
        _, st = zk.get(path)
        if st.ephemeralOwner:
            out[path] = st.ephemeralOwner
        elif st.numChildren:
            out.update(ephemerals(zk, path))
    return out


class Standalone:
    """One ZooKeeper server, then ferrozk on its zoo.cfg."""

    def __init__(self, root):
        self.root = root
        self.port = free_port()
        self.zk_proc, _ = start_zookeeper(root, self.port, "")
        self.hosts = f"127.0.0.1:{self.port}"
        self.ferrozk = None

    def before_cutover(self, admin):
        pass

    def cutover(self):
        self.zk_proc.send_signal(signal.SIGTERM)
        self.zk_proc.wait(30)
        log = open(os.path.join(self.root, "ferrozk.log"), "w")
        self.ferrozk = subprocess.Popen([FERROZK, "server", os.path.join(self.root, "zoo.cfg")],
                                        stdout=log, stderr=subprocess.STDOUT)
        ok = wait_for(lambda: ruok(self.port) or self.ferrozk.poll() is not None, 60) and self.ferrozk.poll() is None
        check("ferrozk serves on ZooKeeper's port", ok, f"exit {self.ferrozk.poll()}; see {self.root}/ferrozk.log")

    def server_logs(self):
        return [os.path.join(self.root, "ferrozk.log")]

    def after_cutover(self):
        pass

    def close(self):
        for p in (self.ferrozk, self.zk_proc):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()


class ThreeMembers:
    """A 3-member ZooKeeper ensemble, one follower stopped early; then ferrozk on each member."""

    def __init__(self, root):
        self.ens = Ensemble("zookeeper", 3)
        self.ens.start_all()
        self.ens.wait_serving()
        self.hosts = self.ens.hosts
        self.early = None
        self.missed = []

    def before_cutover(self, admin):
        leader = self.ens.leader()
        self.early = next(m for m in self.ens.members if m is not leader)
        self.early.stop()
        # Writes the early member never sees, acknowledged by the other two.
        admin.zk.ensure_path("/cutover/missed")
        self.missed = [admin.zk.create(f"/cutover/missed/m{i}", b"after the early stop") for i in range(20)]
        admin.zk.set("/cutover/config", b"v1.5")
        print(f"member {self.early.sid} stopped early; {len(self.missed) + 2} writes made without it", flush=True)

    def cutover(self):
        for m in self.ens.members:
            m.stop(30)
        order = [self.early] + [m for m in self.ens.members if m is not self.early]
        for m in order:
            m.backend = "ferrozk"
            m.start()
        try:
            self.ens.wait_serving(timeout=60)
            ok, why = True, ""
        except RuntimeError as e:
            ok, why = False, str(e)
        check("ferrozk members form an ensemble on ZooKeeper's data", ok, why)

    def server_logs(self):
        return [os.path.join(m.dir, "server.log") for m in self.ens.members]

    def after_cutover(self):
        trees = {}
        for m in self.ens.members:
            zk = KazooClient(hosts=m.address, timeout=SESSION_TIMEOUT)
            zk.start(timeout=30)
            try:
                zk.sync("/")
                trees[m.sid] = read_tree(zk)
            finally:
                zk.stop()
                zk.close()
        early = trees[self.early.sid]
        missing = [p for p in self.missed if p not in early]
        check(f"member {self.early.sid}, stopped early, serves the writes it missed", not missing,
              f"{len(missing)} missing, first {missing[:1]}")
        # /zookeeper/config is the members' own; the rest must agree node for node.
        for t in trees.values():
            t.pop("/zookeeper/config", None)
        differ = [(sid, p) for sid, t in trees.items() for p in set(t) | set(trees[1]) if t.get(p) != trees[1].get(p)]
        check("all members hold the same tree", not differ, f"{len(differ)} differences from member 1, first {differ[:1]}")

    def close(self):
        self.ens.failed = bool(failures)
        self.ens.close()


def main():
    logging.getLogger("kazoo").setLevel(logging.CRITICAL)
    ap = argparse.ArgumentParser()
    ap.add_argument("--ensemble", action="store_true", help="a 3-member ensemble instead of one server")
    ap.add_argument("--keep", help="keep the work directory here")
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="ferrozk-cutover-")
    servers = (ThreeMembers if args.ensemble else Standalone)(root)
    java = None
    clients = []
    try:
        admin = Client("admin", servers.hosts)
        clients.append(admin)
        for p in ["/cutover/lock", "/cutover/jlock", "/cutover/election", "/cutover/members", "/cutover/seq"]:
            admin.zk.ensure_path(p)
        admin.zk.create("/cutover/config", b"v1")
        seq_before = [admin.zk.create("/cutover/seq/n-", b"", sequence=True) for _ in range(3)]

        a, b, c, d = (Client(n, servers.hosts) for n in "abcd")
        clients += [a, b, c, d]
        lock_a = a.zk.Lock("/cutover/lock", "A")
        check("A takes the lock on ZooKeeper", lock_a.acquire(timeout=10))
        lock_b = b.zk.Lock("/cutover/lock", "B")
        b_holds = threading.Event()
        threading.Thread(target=lambda: lock_b.acquire() and b_holds.set(), daemon=True).start()
        wait_for(lambda: len(admin.zk.get_children("/cutover/lock")) == 2, 10)

        leading = {}
        stop_leading = {n: threading.Event() for n in "CD"}

        def lead(name):
            leading[name] = time.monotonic()
            stop_leading[name].wait()

        c_election = c.zk.Election("/cutover/election", "C")
        threading.Thread(target=lambda: c_election.run(lead, "C"), daemon=True).start()
        check("C leads on ZooKeeper", wait_for(lambda: "C" in leading, 10))
        d_election = d.zk.Election("/cutover/election", "D")
        threading.Thread(target=lambda: d_election.run(lead, "D"), daemon=True).start()
        wait_for(lambda: len(admin.zk.get_children("/cutover/election")) == 2, 10)
        for cl in (a, b, c, d):
            cl.zk.create(f"/cutover/members/{cl.name}", b"", ephemeral=True)
        changes = []
        b.zk.DataWatch("/cutover/config", lambda data, stat: changes.append(data))

        java, java_session, java_lock, java_member = start_java(root, servers.hosts)
        # A client that dies with ZooKeeper still up: its session is open when ZooKeeper stops,
        # comes over, and must expire on ferrozk (its ephemeral with it) after its timeout.
        ghost = subprocess.Popen([sys.executable, "-c", GHOST, servers.hosts], stdout=subprocess.PIPE, text=True)
        ghost_line = ghost.stdout.readline().split()
        ghost.kill()
        ghost.wait()
        ghost_session = int(ghost_line[1], 16)
        before = ephemerals(admin.zk)
        sessions = {cl.name: cl.session for cl in clients}
        print(f"on ZooKeeper: {len(before)} ephemerals, sessions "
              + ", ".join(f"{n}=0x{s:x}" for n, s in sessions.items()) + f", java=0x{java_session:x}", flush=True)
        check("the Java client's nodes are there", before.get(java_lock) == java_session
              and before.get(java_member) == java_session, f"{before}")

        servers.before_cutover(admin)
        last_zk_zxid = admin.zk.create("/cutover/last", b"", include_data=True)[1].czxid
        # The cutover: ZooKeeper stops, ferrozk starts on the same zoo.cfg and dataDir.
        started = time.monotonic()
        servers.cutover()
        print(f"ferrozk serving after {time.monotonic() - started:.2f} s", flush=True)
        imported = []
        for path in servers.server_logs():
            with open(path) as f:
                imported += [ln.strip() for ln in f if "imported Apache ZooKeeper's data" in ln]
        check("one import summary line a server", len(imported) == len(servers.server_logs()), f"{imported}")

        for cl in clients:
            check(f"{cl.name} reconnects", wait_for(lambda: cl.zk.state == KazooState.CONNECTED, SESSION_TIMEOUT),
                  f"state {cl.zk.state}")
            check(f"{cl.name} keeps its session", cl.zk.client_id[0] == sessions[cl.name]
                  and KazooState.LOST not in cl.states, f"0x{cl.zk.client_id[0]:x}, states {cl.states}")
        after = ephemerals(admin.zk)
        check("no ephemeral disappears", after == before, f"before {before}, after {after}")
        check("the dead client's session came over", after.get("/cutover/members/ghost") == ghost_session,
              f"{after.get('/cutover/members/ghost')}")
        servers.after_cutover()

        java.stdin.write("CHECK\n")
        java.stdin.flush()
        java_lines = []
        for line in java.stdout:
            java_lines.append(line.strip())
            if line.startswith("CHECKED"):
                break

        # The lock: A still holds (its node is the first), B still waits.
        contenders = sorted(admin.zk.get_children("/cutover/lock"), key=lambda n: n[-10:])
        check("the lock holder still holds", lock_a.is_acquired and contenders and lock_a.node
              and contenders[0] == lock_a.node.rsplit("/", 1)[-1], f"{contenders}, A's node {lock_a.node}")
        check("the waiter still waits", not b_holds.is_set(), "B acquired while A holds")
        check("C still leads", "D" not in leading and c_election.lock.is_acquired, f"{leading}")

        # Watches fire on the next change.
        seen = len(changes)
        admin.zk.set("/cutover/config", b"v2")
        check("kazoo's data watch fires on ferrozk", wait_for(lambda: b"v2" in changes[seen:], 10), f"{changes}")
        for line in java.stdout:
            java_lines.append(line.strip())
            if line.startswith("DONE"):
                break
        java.wait(30)
        for line in java_lines:
            if line.startswith(("PASS", "FAIL")):
                check("java: " + line.split(" ", 1)[1].split(":")[0], line.startswith("PASS"), line)
        check("the Java client passed", java.returncode == 0, f"exit {java.returncode}: {java_lines}")

        # The dead client's session expires on ferrozk after its timeout, as on ZooKeeper.
        check("the dead client's session expires, and its ephemeral goes",
              wait_for(lambda: admin.zk.exists("/cutover/members/ghost") is None, GHOST_TIMEOUT + 10),
              f"still there {GHOST_TIMEOUT + 10} s later")
        # The lock passes to the waiter through its watch on A's node.
        lock_a.release()
        check("releasing the lock hands it to the waiter", b_holds.wait(10), "B did not acquire within 10 s")
        # The election passes to D when C stops.
        stop_leading["C"].set()
        check("the election passes to D", wait_for(lambda: "D" in leading, 10), f"{leading}")
        stop_leading["D"].set()

        # Sequential names continue the sequence.
        seq_after = admin.zk.create("/cutover/seq/n-", b"", sequence=True)
        want = int(seq_before[-1][-10:]) + 1
        check("sequential nodes continue the sequence", int(seq_after[-10:]) == want,
              f"{seq_after} after {seq_before[-1]}")
        # And zxids continue above ZooKeeper's.
        _, st = admin.zk.get("/cutover/config")
        check("zxids continue above ZooKeeper's", st.mzxid > last_zk_zxid,
              f"mzxid 0x{st.mzxid:x}, ZooKeeper's last write 0x{last_zk_zxid:x}")
    finally:
        for cl in clients:
            try:
                cl.zk.stop()
                cl.zk.close()
            except Exception:
                pass
        if java is not None and java.poll() is None:
            java.kill()
            java.wait()
        servers.close()
        if args.keep or failures:
            dest = args.keep or root
            if dest != root:
                shutil.copytree(root, dest, dirs_exist_ok=True)
            print(f"work directory: {dest}")
        if not failures:
            shutil.rmtree(root, ignore_errors=True)
    print(f"{'FAILED: ' + ', '.join(failures) if failures else 'cutover: all checks passed'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
