#!/usr/bin/env python3
"""Differential check of /zookeeper/config: ferrozk against Apache ZooKeeper 3.8.0, 3 members each.

For each form of the `server.N` lines (no client address, `;port`, `;127.0.0.1:port`) both
ensembles are started with the same kind of zoo.cfg, and `/zookeeper/config` is read from every
member; with client addresses, again after `reconfig -remove 3` (from the removed member too,
which goes on following without a vote) and after member 3 is added back.
The texts must be equal once each member's ports are replaced by names, and the Stat must
follow ZooKeeper's rules: `version=` equals the node's mzxid in hex, czxid 0, dataVersion -1,
aclVersion -1, dataLength the text's length. The version's value is each server's own zxid:
ZooKeeper's start at epoch << 32, ferrozk's are its log positions (README, "zxids").

Usage: zkconfig_diff.py   (exit status 0 when every check passed)
"""

import logging
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from ensemble import Ensemble, log  # noqa: E402

from kazoo.client import KazooClient  # noqa: E402
from kazoo.exceptions import ConnectionLoss  # noqa: E402


def normalised(ens, data, stat, problems, where):
    text = data.decode()
    m = re.search(r"\nversion=([0-9a-f]+)$", text)
    if not m:
        problems.append("%s: no version line at the end: %r" % (where, text))
        return text
    if int(m.group(1), 16) != stat.mzxid:
        problems.append("%s: version=%s but mzxid 0x%x" % (where, m.group(1), stat.mzxid))
    for field, want in (("czxid", 0), ("version", -1), ("aversion", -1), ("dataLength", len(data))):
        if getattr(stat, field) != want:
            problems.append("%s: Stat %s is %s, ZooKeeper's rule says %s" % (where, field, getattr(stat, field), want))
    text = text[:m.start(1)] + "<V>"
    for mem in ens.members:
        for port, name in ((mem.quorum_port, "q"), (mem.election_port, "e"), (mem.client_port, "c")):
            text = re.sub(r"(?<=:)%d(?=\D|$)" % port, "<%s%d>" % (name, mem.sid), text)
    return text


def read_all(ens, problems, what, members):
    """The normalised config as each of `members` serves it; they must agree."""
    texts = set()
    for mem in members:
        kz = KazooClient(hosts=mem.address)
        kz.start(timeout=30)
        try:
            # A new ferrozk ensemble's first leader publishes the configured members a moment
            # after it is elected (ZooKeeper has them before it serves).
            for _ in range(100):
                kz.sync("/zookeeper/config")
                data, stat = kz.get("/zookeeper/config")
                if data:
                    break
                time.sleep(0.1)
        finally:
            kz.stop()
            kz.close()
        texts.add(normalised(ens, data, stat, problems, "%s %s, server.%d" % (ens.backend, what, mem.sid)))
    if len(texts) != 1:
        problems.append("%s %s: members disagree: %s" % (ens.backend, what, sorted(texts)))
    return sorted(texts)[0]


def reconfig(ens, **change):
    kz = KazooClient(hosts=ens.member(1).address, auth_data=[("digest", "super:test")])
    kz.start(timeout=30)
    try:
        kz.reconfig(new_members=None, **change)
    except ConnectionLoss:
        pass  # the leader left; the configs read next tell whether it happened
    finally:
        kz.stop()
        kz.close()
    time.sleep(1)


def run(backend, form, problems):
    """The sequence of normalised configs one backend serves for one form of server lines."""
    seen = []
    with Ensemble(backend, 3, client_addrs=form) as ens:
        ens.start_all()
        ens.wait_serving()
        seen.append(("after start", read_all(ens, problems, "after start", ens.members)))
        if form:
            reconfig(ens, joining=None, leaving="3")
            # Member 3 too: ZooKeeper keeps a removed member following, as a non-voting follower.
            seen.append(("after -remove 3", read_all(ens, problems, "after -remove 3", ens.members)))
            reconfig(ens, joining=ens.server_lines[2], leaving=None)
            ens.wait_serving()
            seen.append(("after -add server.3", read_all(ens, problems, "after -add server.3", ens.members)))
        if problems:
            ens.failed = True
    return seen


def main():
    logging.basicConfig(level=logging.CRITICAL)
    checks, failures = 0, 0
    for form in (None, "port", "addr"):
        name = {None: "no client address", "port": "';port'", "addr": "';127.0.0.1:port'"}[form]
        problems = []
        zk = run("zookeeper", form, problems)
        fz = run("ferrozk", form, problems)
        for (what, want), (_, got) in zip(zk, fz):
            checks += 1
            if want != got:
                problems.append("%s: ZooKeeper serves %r, ferrozk %r" % (what, want, got))
        for (what, text) in zk:
            log("%s, %s: %r" % (name, what, text))
        for p in problems:
            print("FAIL %s, %s" % (name, p))
        failures += 1 if problems else 0
        if not problems:
            print("PASS %s: /zookeeper/config as ZooKeeper serves it (%d states)" % (name, len(zk)))
    print("%d passed, %d failed" % (3 - failures, failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
