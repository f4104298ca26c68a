#!/usr/bin/env python3
"""Cross-client lock through leader failovers: two ferrozk-client `lock` example processes and two
kazoo Lock processes (kazoo_lock.py) contend on one path, 40 rounds each, on a 3-member
ensemble, each holder doing an unprotected read-increment-write of a counter file. The leader
is SIGKILLed a quarter of the way in; in the second run it is restarted once a new leader
serves and the new leader is killed too, past half way. Every process must finish (exit 0)
and the counter must be exact: no two holders overlapped, no round was lost.

Apache ZooKeeper's members drop every client connection while they elect, so this is what
makes a lock library that gives up on ConnectionLoss fail.

Usage: failover.py [--backend ferrozk|zookeeper] [--example LOCK_BINARY]   (exit status 0 when both runs passed)
"""

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "lib"))
from ensemble import REPO, Ensemble, log  # noqa: E402

ROUNDS = 40
HOLD_MS = "20"


def count(path):
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def wait_for_count(path, at_least, procs, limit=120):
    deadline = time.time() + limit
    while count(path) < at_least and time.time() < deadline and any(p.poll() is None for p in procs):
        time.sleep(0.01)


def run(backend, kills, example):
    total = 4 * ROUNDS
    with Ensemble(backend, 3) as ens:
        ens.start_all()
        ens.wait_serving()
        counter = os.path.join(ens.root, "counter")
        with open(counter, "w") as f:
            f.write("0\n")
        env = dict(os.environ, LOCK_HOLD_MS=HOLD_MS, RUST_LOG="warn")
        procs = []
        for i in range(2):
            procs.append(subprocess.Popen([example, ens.hosts, "/failover-lock", str(ROUNDS), counter], env=env,
                                          stdout=subprocess.DEVNULL, stderr=open(os.path.join(ens.root, "rust%d.log" % i), "w")))
            procs.append(subprocess.Popen([sys.executable, os.path.join(HERE, "kazoo_lock.py"), ens.hosts, "/failover-lock",
                                           str(ROUNDS), counter], env=env, stdout=subprocess.DEVNULL,
                                          stderr=open(os.path.join(ens.root, "kazoo%d.log" % i), "w")))
        for n, at in enumerate((total // 4, total * 5 // 8)[:kills]):
            wait_for_count(counter, at, procs)
            leader = ens.leader()
            log("counter %d: killing the leader, server.%d" % (count(counter), leader.sid))
            leader.kill()
            if n + 1 < kills:
                # Back while the others elect, so that the second kill leaves a quorum.
                ens.wait_serving()
                leader.start()
                ens.wait_serving(members=ens.members)
        codes = []
        for p in procs:
            try:
                codes.append(p.wait(180))
            except subprocess.TimeoutExpired:
                p.kill()
                codes.append("hung")
        got = count(counter)
        ok = got == total and all(c == 0 for c in codes)
        what = "%s, leader killed %s: counter %d of %d, exit codes %s" % (backend, "once" if kills == 1 else "twice",
                                                                           got, total, codes)
        if not ok:
            ens.failed = True
            for name in sorted(os.listdir(ens.root)):
                if name.endswith(".log"):
                    tail = open(os.path.join(ens.root, name)).read().strip().splitlines()[-3:]
                    if tail:
                        log("%s: %s" % (name, " | ".join(tail)))
        return ok, what


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default=os.environ.get("CLIENTS_BACKEND", "ferrozk"))
    ap.add_argument("--example", help="a lock example binary to use instead of building this tree's")
    args = ap.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    example = args.example
    if not example:
        subprocess.run(["cargo", "build", "-q", "-p", "ferrozk-client", "--example", "lock"], cwd=REPO, check=True)
        target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target")
        example = os.path.join(target, "debug", "examples", "lock")
    results = [run(args.backend, kills, example) for kills in (1, 2)]
    for ok, what in results:
        print("%s %s" % ("PASS" if ok else "FAIL", what))
    failed = sum(1 for ok, _ in results if not ok)
    print("%d passed, %d failed" % (len(results) - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
