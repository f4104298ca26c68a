#!/usr/bin/env python3
"""A ZooKeeper member with transactions the others never got (issue 16): ZooKeeper's leader
would truncate them (TRUNC); ferrozk's member sets its import aside and takes the leader's.

A 3-member Apache ZooKeeper 3.8.0 ensemble writes /d/base/*; all stop; members 2 and 3's
data directories are copied; ZooKeeper runs again and writes /d/later/*; all stop, and members
2 and 3 get their copies back. So member 1 holds transactions no other member has (as after a
leader logged proposals nobody acknowledged). ferrozk starts on members 2 and 3, which elect a
leader, then on member 1. Checks: member 1 sets its import aside and restarts (same process),
receives the leader's snapshot, and all three serve the same tree, without /d/later; a write
then reaches member 1.

Usage: diverged.py
"""

import glob
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cutover import check, failures, wait_for  # noqa: E402
from fixtures import read_tree  # noqa: E402
from ensemble import Ensemble  # noqa: E402

from kazoo.client import KazooClient  # noqa: E402


def connect(hosts):
    zk = KazooClient(hosts=hosts, timeout=10)
    zk.start(timeout=30)
    return zk


def main():
    ens = Ensemble("zookeeper", 3)
    try:
        ens.start_all()
        ens.wait_serving()
        zk = connect(ens.hosts)
        zk.ensure_path("/d/base")
        for i in range(20):
            zk.create(f"/d/base/n{i}", b"base")
        zk.stop()
        for m in ens.members:
            m.stop(30)
        behind = ens.members[1:]
        for m in behind:
            shutil.copytree(os.path.join(m.dir, "data"), os.path.join(m.dir, "data-before"))
        ens.start_all()
        ens.wait_serving()
        zk = connect(ens.hosts)
        zk.ensure_path("/d/later")
        for i in range(20):
            zk.create(f"/d/later/n{i}", b"later")
        zk.stop()
        for m in ens.members:
            m.stop(30)
        for m in behind:
            shutil.rmtree(os.path.join(m.dir, "data"))
            os.rename(os.path.join(m.dir, "data-before"), os.path.join(m.dir, "data"))

        ahead = ens.members[0]
        for m in behind:
            m.backend = "ferrozk"
            m.start()
        try:
            ens.wait_serving(timeout=60, members=behind)
            formed = True
        except RuntimeError:
            formed = False
        check("members 2 and 3 elect a leader on their imports", formed)
        pid = None
        ahead.backend = "ferrozk"
        ahead.start()
        pid = ahead.proc.pid
        log = os.path.join(ahead.dir, "server.log")

        def set_aside():
            with open(log, errors="replace") as f:
                return "does not hold this member's import" in f.read()
        check("member 1, ahead, sets its import aside", wait_for(set_aside, 30), f"see {log}")
        check("member 1 restarted in the same process", ahead.running() and ahead.proc.pid == pid)
        check("member 1's data is kept aside",
              glob.glob(os.path.join(ahead.dir, "data", "ferrozk-import-set-aside-*", "snapshots")) != [])
        try:
            ens.wait_serving(timeout=60)
            joined = True
        except RuntimeError:
            joined = False
        check("member 1 joins the ensemble", joined)

        trees = {}
        for m in ens.members:
            c = connect(m.address)
            try:
                c.sync("/")
                trees[m.sid] = read_tree(c)
            finally:
                c.stop()
                c.close()
        for t in trees.values():
            t.pop("/zookeeper/config", None)
        check("all members hold the same tree", trees[1] == trees[2] == trees[3],
              f"{[len(t) for t in trees.values()]} nodes")
        check("the base writes are there and the later ones are not",
              "/d/base/n19" in trees[1] and "/d/later" not in trees[1], f"{sorted(trees[1])[:30]}")
        zk = connect(ens.hosts)
        zk.create("/d/after", b"x")
        zk.stop()
        c = connect(ahead.address)
        check("a new write reaches member 1", wait_for(lambda: c.exists("/d/after") is not None, 10))
        c.stop()
    finally:
        ens.failed = bool(failures)
        ens.close()
    print("FAILED: " + ", ".join(failures) if failures else "diverged: all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
