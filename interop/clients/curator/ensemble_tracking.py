#!/usr/bin/env python3
"""Curator's ensemble tracking on a 3-member ensemble (EnsembleTracking.java, Debian's Curator 5.4).

Curator rewrites its connection string from /zookeeper/config. For each form of the server
lines (no client address, `;port`, `;127.0.0.1:port`):

- the connection string Curator derives lists every member (with no client address anywhere,
  Curator keeps the one it was given);
- with client addresses: after `reconfig -remove 3` it lists members 1 and 2, after member 3 is
  added back all three;
- member 1 is killed while the client is paused for longer than its session timeout: the
  client then gets a new session through the other two members and works again.

Usage: ensemble_tracking.py [--backend ferrozk|zookeeper]   (exit status 0 when all passed)
"""

import argparse
import logging
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "lib"))
from ensemble import Ensemble, log  # noqa: E402

from kazoo.client import KazooClient  # noqa: E402
from kazoo.exceptions import ConnectionLoss  # noqa: E402

J = "/usr/share/java"
CP = ":".join(J + "/" + jar for jar in ("curator-recipes.jar", "curator-framework.jar", "curator-client.jar",
                                        "zookeeper.jar", "zookeeper-jute.jar", "guava.jar", "slf4j-api.jar",
                                        "slf4j-nop.jar"))


class Curator(object):
    def __init__(self, classes, connect):
        self.proc = subprocess.Popen(["java", "-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                                      "-cp", classes + ":" + CP, "EnsembleTracking", connect],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        line = self.proc.stdout.readline().strip()
        if line != "READY":
            raise RuntimeError("Curator client did not connect: %r" % line)

    def ask(self, command):
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().split()

    def close(self):
        try:
            self.ask("quit")
        except OSError:
            pass
        self.proc.wait(20)


def super_client(ens):
    kz = KazooClient(hosts=ens.member(1).address, auth_data=[("digest", "super:test")])
    kz.start(timeout=30)
    return kz


def reconfig(kz, **change):
    """A reconfig whose answer may be lost when it removes the leader (ZooKeeper's leader then
    drops every connection); what the tracker sees afterwards is the check."""
    try:
        kz.reconfig(new_members=None, **change)
    except ConnectionLoss:
        log("reconfig %s: connection lost (the leader left)" % change)


def run_form(backend, classes, form, results):
    name = {None: "no client address", "port": "';port'", "addr": "';127.0.0.1:port'"}[form]
    with Ensemble(backend, 3, client_addrs=form) as ens:
        ens.start_all()
        ens.wait_serving()
        every = ",".join(m.address for m in ens.members)
        cur = Curator(classes, every)

        def expect_tracked(members, what):
            want = ",".join(m.address for m in members)
            got = cur.ask("tracked " + want)
            ok = got[:1] == ["TRACKED"] and len(got) == 2 and set(got[1].split(",")) == set(want.split(","))
            results.append((ok, "%s, %s: connection string %s (want %s)" % (name, what, " ".join(got[1:]), want)))

        try:
            expect_tracked(ens.members, "after connecting")
            if form:
                kz = super_client(ens)
                try:
                    reconfig(kz, joining=None, leaving="3")
                    expect_tracked(ens.members[:2], "after reconfig -remove 3")
                    reconfig(kz, joining=ens.server_lines[2], leaving=None)
                    expect_tracked(ens.members, "after reconfig -add server.3")
                finally:
                    kz.stop()
                    kz.close()
            # The client is paused meanwhile, so that its session expires and Curator makes a
            # new connection from the string it tracked.
            log("%s: killing server.1, the client paused for 8 s" % name)
            cur.proc.send_signal(signal.SIGSTOP)
            ens.member(1).kill()
            time.sleep(8)
            cur.proc.send_signal(signal.SIGCONT)
            got = cur.ask("work")
            results.append((got[:2] == ["WORK", "ok"], "%s, server.1 down past the session timeout: %s" % (name, " ".join(got))))
        finally:
            cur.close()
        if not all(ok for ok, _ in results):
            ens.failed = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default=os.environ.get("CLIENTS_BACKEND", "ferrozk"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    classes = os.path.join("/tmp", "ferrozk-curator-tracking-classes")
    os.makedirs(classes, exist_ok=True)
    subprocess.run(["javac", "-nowarn", "-d", classes, "-cp", CP, os.path.join(HERE, "EnsembleTracking.java")], check=True)
    results = []
    for form in (None, "port", "addr"):
        run_form(args.backend, classes, form, results)
    for ok, what in results:
        print("%s %s" % ("PASS" if ok else "FAIL", what))
    failed = sum(1 for ok, _ in results if not ok)
    print("%d passed, %d failed" % (len(results) - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
