#!/usr/bin/env python3
"""Sessions live through a lost quorum: time without a quorum never counts against a session.

A 3-member ensemble (session timeout 4 s, tickTime 2000), a kazoo client whose hosts list starts
with the leader, and a go-zookeeper client (session_holder.go), each holding an ephemeral node.
Three outages, each longer than the session timeout:

1. the leader is killed (the kazoo client moves to another member), then a second member, so
   that the new leader is left alone without a quorum; then the first is started again;
2. the same, but the second member killed is the new leader, so a follower is left alone;
3. every member is killed, and all are started again.

After each, both clients must get back the same session (same id), and its ephemeral must still
be there, owned by it: ZooKeeper's leader gives every session a fresh timeout when it takes
over, and no session can expire while no leader has a quorum.

Usage: quorum_return.py [--backend ferrozk|zookeeper]   (exit status 0 when every check passed)
"""

import argparse
import logging
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from ensemble import Ensemble, log  # noqa: E402

from kazoo.client import KazooClient  # noqa: E402
from kazoo.retry import KazooRetry  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TIMEOUT_MS = 4000
OUTAGE = 1.5 * TIMEOUT_MS / 1000 + 1


class GoHolder(object):
    """session_holder.go, run as a child and spoken to over its stdin and stdout."""

    def __init__(self, binary, hosts, path):
        self.proc = subprocess.Popen([binary, hosts, path, str(TIMEOUT_MS)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        line = self.proc.stdout.readline().split()
        if not line or line[0] != "READY":
            raise RuntimeError("go session holder did not start: %r" % line)
        self.session = int(line[1], 16)

    def ask(self, command):
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().split()

    def close(self):
        try:
            self.ask("quit")
        except (BrokenPipeError, OSError):
            pass
        self.proc.wait(10)


def build_go_holder(work):
    env = dict(os.environ, GO111MODULE="off", GOPATH="/usr/share/gocode",
               GOCACHE=os.environ.get("GOCACHE", os.path.expanduser("~/.cache/ferrozk-clients-go")))
    out = os.path.join(work, "session_holder")
    subprocess.run(["go", "build", "-o", out, os.path.join(HERE, "session_holder.go")], env=env, check=True)
    return out


def check_sessions(ens, kz, kz_session, go, failures, what):
    """Both clients back with their own sessions, their ephemerals intact."""
    before = len(failures)
    deadline = time.time() + 30
    while time.time() < deadline and not kz.connected:
        time.sleep(0.1)
    if kz.client_id is None or kz.client_id[0] != kz_session:
        failures.append("%s: kazoo session 0x%x replaced by %s" % (what, kz_session, kz.client_id and hex(kz.client_id[0])))
    else:
        st = None
        for _ in range(100):
            try:
                st = kz.exists("/held/kazoo")
                break
            except Exception:
                time.sleep(0.2)
        if st is None or st.ephemeralOwner != kz_session:
            failures.append("%s: kazoo's ephemeral is %s" % (what, "gone" if st is None else "owned by 0x%x" % st.ephemeralOwner))
    answer = go.ask("check")
    if answer[:1] != ["CHECK"] or int(answer[1], 16) != go.session:
        failures.append("%s: go session 0x%x replaced (%s)" % (what, go.session, " ".join(answer)))
    elif answer[2] == "none" or int(answer[2], 16) != go.session:
        failures.append("%s: go's ephemeral is %s" % (what, "gone" if answer[2] == "none" else "owned by 0x" + answer[2]))
    log("%s: %s" % (what, "; ".join(failures[before:]) or "sessions kept"))


def outage_without_quorum(ens, survivor_role):
    """Kills the leader, then the member that leaves a `survivor_role` alone; restarts the first."""
    old = ens.leader()
    log("killing the leader, server.%d" % old.sid)
    old.kill()
    new = ens.wait_serving(members=[m for m in ens.members if m.running()])
    follower = next(m for m in ens.members if m.running() and m is not new)
    second = follower if survivor_role == "leader" else new
    time.sleep(1.0)  # let the clients settle on the members left
    log("server.%d leads; killing server.%d, leaving a %s alone for %.1f s" % (new.sid, second.sid, survivor_role, OUTAGE))
    second.kill()
    time.sleep(OUTAGE)
    log("starting server.%d again" % old.sid)
    old.start()
    ens.wait_serving(members=[m for m in ens.members if m.running()])
    return second


class Clients(object):
    """A kazoo client whose hosts list starts with the leader and a go client, each holding an
    ephemeral node under its own session."""

    def __init__(self, ens, go_binary):
        leader = ens.leader()
        hosts = [leader.address] + [m.address for m in ens.members if m is not leader]
        self.kz = KazooClient(hosts=",".join(hosts), timeout=TIMEOUT_MS / 1000, randomize_hosts=False,
                              connection_retry=KazooRetry(max_tries=-1, delay=0.1, max_delay=1))
        self.kz.start(timeout=30)
        self.kz_session = self.kz.client_id[0]
        self.kz.create("/held/kazoo", b"kazoo", ephemeral=True, makepath=True)
        self.go = GoHolder(go_binary, ens.hosts, "/held/go")
        log("kazoo session 0x%x on server.%d, go session 0x%x" % (self.kz_session, leader.sid, self.go.session))

    def check(self, ens, failures, what):
        check_sessions(ens, self.kz, self.kz_session, self.go, failures, what)

    def close(self):
        self.go.close()
        self.kz.stop()
        self.kz.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default=os.environ.get("CLIENTS_BACKEND", "ferrozk"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    failures = []
    checks = 0
    with Ensemble(args.backend, 3) as ens:
        go_binary = build_go_holder(ens.root)
        ens.start_all()
        ens.wait_serving()
        for role in ("leader", "follower", None):
            clients = Clients(ens, go_binary)
            try:
                if role:
                    what = "a %s alone without a quorum" % role
                    stopped = outage_without_quorum(ens, role)
                    clients.check(ens, failures, what)
                    stopped.start()
                    ens.wait_serving()
                else:
                    what = "the whole ensemble restarted"
                    log("killing every member for %.1f s" % OUTAGE)
                    for m in ens.members:
                        m.kill()
                    time.sleep(OUTAGE)
                    ens.start_all()
                    ens.wait_serving()
                    clients.check(ens, failures, what)
                checks += 1
            finally:
                clients.close()
        if failures:
            ens.failed = True
    for f in failures:
        print("FAIL " + f)
    failed = len({f.split(":")[0] for f in failures})
    print("%d passed, %d failed" % (checks - failed, failed))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
