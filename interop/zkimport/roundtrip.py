#!/usr/bin/env python3
"""Round trip (issue 16): Apache ZooKeeper -> ferrozk -> Apache ZooKeeper, clients connected.

Debian's Apache ZooKeeper 3.8.0 runs a random workload (every kind of node and transaction, as
fixtures.py); ferrozk starts on its zoo.cfg (with sessionPasswords=zookeeper) and the workload
goes on, with a session ferrozk creates. Then ferrozk stops, `ferrozk export --zookeeper
<dataDir> <zoo.cfg>` writes a snapshot into ZooKeeper's dataDir, and ZooKeeper starts on it.
Checks: ZooKeeper serves the tree ferrozk served, field for field (the digest ferrozk writes is checked
against ZooKeeper's own in fixtures.py); every client reconnects with its session (the ones that began on ZooKeeper and
the one that began on ferrozk), its ephemerals still there; sequential names and zxids continue.

With --ensemble: a 3-member ferrozk ensemble runs the workload and stops; `ferrozk export` runs
on every member, the export of the one whose log ends with the highest (term, index) is copied
to the others, and a 3-member ZooKeeper ensemble starts on them and serves the same tree.

Usage: roundtrip.py [--ensemble] [--seed N] [--keep DIR]
"""

import argparse
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixtures import FERROZK, STAT_FIELDS, Workload, client, read_tree, ruok, start_zookeeper  # noqa: E402
from ensemble import free_port  # noqa: E402
from cutover import check, failures, wait_for  # noqa: E402
from ensemble import Ensemble  # noqa: E402

from kazoo.client import KazooState  # noqa: E402


def differences(want, got):
    out = []
    for p in sorted(set(want) | set(got)):
        if p == "/zookeeper/config":
            continue
        a, b = want.get(p), got.get(p)
        if a != b:
            if a and b and a["stat"] != b["stat"]:
                b = {f: (a["stat"][f], b["stat"][f]) for f in STAT_FIELDS if a["stat"][f] != b["stat"][f]}
            out.append((p, b if a and b else (a is not None, b is not None)))
    return out


def ensemble_roundtrip(rnd):
    ens = Ensemble("ferrozk", 3)
    try:
        ens.start_all()
        ens.wait_serving()
        w = Workload(rnd, ens.members[0].client_port)
        for _ in range(rnd.randrange(60, 100)):
            w.step(containers=False)
        # The workload's sessions close (their ephemerals go), then the tree is read.
        for c in w.sessions:
            c.stop()
            c.close()
        w.zk.sync("/")
        on_ferrozk = read_tree(w.zk)
        w.zk.stop()
        w.zk.close()
        for m in ens.members:
            m.stop(30)
        ends = {}
        for m in ens.members:
            out = subprocess.run([FERROZK, "export", "--zookeeper", os.path.join(m.dir, "data"),
                                  os.path.join(m.dir, "zoo.cfg")], capture_output=True, text=True)
            check(f"ferrozk export on member {m.sid}", out.returncode == 0, out.stderr.strip())
            print(out.stdout.strip(), flush=True)
            words = out.stdout.split("ends at index ", 1)[1].split()
            ends[m.sid] = (int(words[2].rstrip(")")), int(words[0]))
        best = max(ens.members, key=lambda m: ends[m.sid])
        src = os.path.join(best.dir, "data", "version-2")
        for m in ens.members:
            dst = os.path.join(m.dir, "data", "version-2")
            if m is not best:
                for f in os.listdir(dst):
                    os.remove(os.path.join(dst, f))
                for f in os.listdir(src):
                    shutil.copy(os.path.join(src, f), dst)
            m.backend = "zookeeper"
            m.start()
        ens.wait_serving(timeout=90)
        zk = client(ens.members[0].client_port)
        zk.add_auth("digest", "alice:secret")
        zk.sync("/")
        on_zookeeper = read_tree(zk)
        zk.stop()
        zk.close()
        diff = differences(on_ferrozk, on_zookeeper)
        check("a ZooKeeper ensemble serves the tree the ferrozk ensemble served", not diff,
              f"{len(diff)} differ, first {diff[:3]}")
    finally:
        ens.failed = bool(failures)
        ens.close()


def main():
    logging.getLogger("kazoo").setLevel(logging.CRITICAL)
    ap = argparse.ArgumentParser()
    ap.add_argument("--ensemble", action="store_true", help="3-member ensembles")
    ap.add_argument("--seed", type=int, default=random.randrange(1 << 30))
    ap.add_argument("--keep", help="keep the work directory here")
    args = ap.parse_args()
    print(f"seed {args.seed}", flush=True)
    rnd = random.Random(args.seed)
    if args.ensemble:
        ensemble_roundtrip(rnd)
        print("FAILED: " + ", ".join(failures) if failures else "ensemble round trip: all checks passed")
        return 1 if failures else 0
    root = tempfile.mkdtemp(prefix="ferrozk-roundtrip-")
    port = free_port()
    zk_proc, data_dir = start_zookeeper(root, port, "")
    cfg = os.path.join(root, "zoo.cfg")
    ferrozk = None
    clients = []
    try:
        w = Workload(rnd, port)
        for _ in range(rnd.randrange(60, 100)):
            w.step(containers=False)
        # (The workload closes sessions and opens others: the ones open now move over.)
        clients = [w.zk, *w.sessions]

        # ZooKeeper -> ferrozk.
        zk_proc.send_signal(signal.SIGTERM)
        zk_proc.wait(30)
        with open(cfg, "a") as f:
            f.write("sessionPasswords=zookeeper\n")
        flog = open(os.path.join(root, "ferrozk.log"), "w")
        ferrozk = subprocess.Popen([FERROZK, "server", cfg], stdout=flog, stderr=subprocess.STDOUT)
        check("ferrozk takes over", wait_for(lambda: ruok(port), 60), f"see {root}/ferrozk.log")
        check("the workload's sessions reconnect to ferrozk",
              wait_for(lambda: all(c.state == KazooState.CONNECTED for c in clients), 20),
              f"{[c.state for c in clients]}")
        born_on_ferrozk = client(port, 20.0)
        born_on_ferrozk.add_auth("digest", "alice:secret")
        born_on_ferrozk.create("/w/born-on-ferrozk", b"", ephemeral=True)
        for _ in range(rnd.randrange(40, 80)):
            w.step(containers=False)
        clients = [w.zk, *w.sessions, born_on_ferrozk]
        sessions = {id(c): c.client_id[0] for c in clients}
        on_ferrozk = read_tree(w.zk)
        last_seq = w.zk.create("/w/seq-", b"", sequence=True)
        _, st = w.zk.get(last_seq)
        ferrozk_last_zxid = st.czxid
        on_ferrozk = read_tree(w.zk)

        # ferrozk -> ZooKeeper.
        ferrozk.send_signal(signal.SIGTERM)
        ferrozk.wait(30)
        out = subprocess.run([FERROZK, "export", "--zookeeper", data_dir, cfg], capture_output=True, text=True)
        print(out.stdout.strip(), flush=True)
        check("ferrozk export", out.returncode == 0, out.stderr.strip())
        # ZooKeeper would refuse the ferrozk-only key; it is ferrozk's.
        with open(cfg) as f:
            lines = [ln for ln in f if not ln.startswith("sessionPasswords=")]
        with open(cfg, "w") as f:
            f.writelines(lines)
        shutil.move(os.path.join(root, "zookeeper.log"), os.path.join(root, "zookeeper-before.log"))
        zk_proc, _ = start_zookeeper_again(root, port)
        check("the clients reconnect to ZooKeeper with their sessions",
              wait_for(lambda: all(c.state == KazooState.CONNECTED for c in clients), 20)
              and all(c.client_id[0] == sessions[id(c)] for c in clients),
              f"{[(c.state, hex(c.client_id[0]), hex(sessions[id(c)])) for c in clients]}")
        on_zookeeper = read_tree(w.zk)
        diff = differences(on_ferrozk, on_zookeeper)
        check("ZooKeeper serves the tree ferrozk served", not diff, f"{len(diff)} differ, first {diff[:3]}")
        check("the ephemeral of the session ferrozk created is there",
              w.zk.exists("/w/born-on-ferrozk") is not None)
        nxt = w.zk.create("/w/seq-", b"", sequence=True)
        check("sequential names continue", int(nxt[-10:]) == int(last_seq[-10:]) + 1, f"{nxt} after {last_seq}")
        _, st = w.zk.get(nxt)
        check("zxids continue above ferrozk's", st.czxid > ferrozk_last_zxid,
              f"0x{st.czxid:x} after 0x{ferrozk_last_zxid:x}")
    finally:
        for c in clients:
            try:
                c.stop()
                c.close()
            except Exception:
                pass
        for p in (ferrozk, zk_proc):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        if args.keep:
            shutil.copytree(root, args.keep, dirs_exist_ok=True)
        if failures:
            print(f"work directory kept: {root}; repeat: python3 {sys.argv[0]} --seed {args.seed}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print("FAILED: " + ", ".join(failures) if failures else "round trip: all checks passed")
    return 1 if failures else 0


def start_zookeeper_again(root, port):
    """ZooKeeper on the zoo.cfg and dataDir it had (start_zookeeper makes new ones)."""
    import fixtures
    props = ["-Dzookeeper.extendedTypesEnabled=true", "-Dzookeeper.preAllocSize=256"]
    log = open(os.path.join(root, "zookeeper.log"), "w")
    proc = subprocess.Popen(["java", "-Xmx256m", *props, "-cp", fixtures.ZK_CP,
                             "org.apache.zookeeper.server.quorum.QuorumPeerMain", os.path.join(root, "zoo.cfg")],
                            stdout=log, stderr=subprocess.STDOUT)
    if not wait_for(lambda: ruok(port) or proc.poll() is not None, 60) or proc.poll() is not None:
        raise RuntimeError(f"ZooKeeper did not start on the export; see {root}/zookeeper.log")
    return proc, None


if __name__ == "__main__":
    sys.exit(main())
