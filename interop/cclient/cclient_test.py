#!/usr/bin/env python3
"""Drive the ZooKeeper C client against a running server and check what it prints.

  cclient_test.py HOST:PORT [--skip-loadgen]

Part 1 runs cli_mt (the C client's interactive shell, multi-threaded library) through a scripted
session: each step sends one command and waits until the lines it must print have appeared, in the
given order (so "event before reply" is checked where a command fires a watch), then checks that
lines it must not print did not appear. Part 2 runs load_gen (create/set/get/delete cycles over N
children), freezes it between two cycles, checks the children with cli_mt, and cleans up with
"load_gen ... clean". Exit status 0 when every check passes.
"""
import os
import re
import signal
import subprocess
import sys
import threading
import time

CLI = os.environ.get("CLI_MT", "/usr/lib/zookeeper/bin/cli_mt")
LOADGEN = os.environ.get("LOAD_GEN", "/usr/lib/zookeeper/bin/load_gen")
STEP_TIMEOUT = float(os.environ.get("CCLIENT_STEP_TIMEOUT", "20"))
LOADGEN_CHILDREN = int(os.environ.get("LOADGEN_CHILDREN", "300"))
LOADGEN_CYCLES = int(os.environ.get("LOADGEN_CYCLES", "3"))

passed = 0
failed = 0


def ok(name):
    global passed
    passed += 1
    print(f"ok   {name}")


def fail(name, detail=""):
    global failed
    failed += 1
    print(f"FAIL {name}")
    if detail:
        for l in detail.rstrip("\n").split("\n")[-40:]:
            print(f"       | {l}")


class Proc:
    """A child process whose stdout+stderr are collected line by line."""

    def __init__(self, argv):
        self.p = subprocess.Popen(["stdbuf", "-oL", "-eL"] + argv, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines = []
        self.eof = False
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for raw in self.p.stdout:
            with self.cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def send(self, s):
        self.p.stdin.write((s + "\n").encode())
        self.p.stdin.flush()

    def wait_patterns(self, start, patterns, timeout):
        """Wait until the patterns match lines from index `start` on, in order. Returns
        (matches or None, index after the last match)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                pos, found = start, []
                for pat in patterns:
                    rx = re.compile(pat)
                    while pos < len(self.lines):
                        m = rx.search(self.lines[pos])
                        pos += 1
                        if m:
                            found.append(m)
                            break
                    else:
                        found = None
                        break
                if found is not None:
                    return found, pos
                left = deadline - time.monotonic()
                if left <= 0 or self.eof:
                    return None, len(self.lines)
                self.cond.wait(min(left, 0.5))

    def text(self, start, end=None):
        with self.cond:
            return "\n".join(self.lines[start:end])


def cli_session(hostport):
    cli = Proc([CLI, "-h", hostport])
    vals = {}
    last = {"out": ""}

    def step(name, cmd, expect=(), forbid=(), settle=0.0, capture=None):
        with cli.cond:
            start = len(cli.lines)
        if cmd is not None:
            cli.send(cmd)
        exp = [e.format(**vals) for e in expect]
        found, end = cli.wait_patterns(start, exp, STEP_TIMEOUT)
        if settle:
            time.sleep(settle)
        if not exp:
            time.sleep(0.3)
        out = cli.text(start)
        last["out"] = out
        if found is None:
            fail(f"{name}: `{cmd}`", "expected, in order:\n  " + "\n  ".join(exp) + "\noutput:\n" + out)
            return None
        bad = [f for f in forbid if re.search(f.format(**vals), out, re.M)]
        if bad:
            fail(f"{name}: `{cmd}`", "must not print: " + ", ".join(bad) + "\noutput:\n" + out)
            return None
        if capture:
            for key, (idx, grp) in capture.items():
                vals[key] = found[idx].group(grp)
        ok(f"{name}: `{cmd}`" if cmd else name)
        return found

    # connect
    step("session established", None,
         [r"^Watcher SESSION_EVENT state = CONNECTED_STATE$", r"^Got a new session id: 0x([0-9a-f]+)$"],
         capture={"sid": (1, 1)})
    step("myid prints the session id", "myid", [r"^session Id = {sid}$"])

    # create, all modes the shell has
    step("create", "create /cc", [r"^Creating \[/cc\] node \(mode: 0\)$", r"^\[/cc\]: rc = 0$", r"^\tname = /cc$"])
    step("create existing -> ZNODEEXISTS", "create /cc", [r"^\[/cc\]: rc = -110$"], forbid=[r"name = /cc$"])
    step("create without parent -> ZNONODE", "create /nope/x", [r"^\[/nope/x\]: rc = -101$"])
    step("create sequential", "create +s /cc/seq-", [r"mode: 2\)$", r"^\[/cc/seq-\]: rc = 0$", r"^\tname = /cc/seq-0000000000$"])
    step("create ephemeral", "create +e /cc/eph", [r"mode: 1\)$", r"^\[/cc/eph\]: rc = 0$", r"^\tname = /cc/eph$"])
    step("create ephemeral sequential", "create +es /cc/es-", [r"mode: 3\)$", r"^\tname = /cc/es-0000000002$"])
    step("child of an ephemeral -> ZNOCHILDRENFOREPHEMERALS", "create /cc/eph/x", [r"^\[/cc/eph/x\]: rc = -108$"])
    step("create container", "create +c /cont", [r"mode: 4\)$", r"^\[/cont\]: rc = 0$"])
    step("create TTL", "create +t=600000 /ttl", [r"mode: 5\)$", r"^\[/ttl\]: rc = 0$"])
    step("create sequential TTL", "create +st=600000 /cc/ttls-", [r"mode: 6\)$", r"^\tname = /cc/ttls-0000000003$"])
    step("create2 returns the Stat", "create2 /cc/c2",
         [r"^\[/cc/c2\]: rc = 0$", r"^\tname = /cc/c2$", r"^\tctime = ", r"^\tczxid=([0-9a-f]+)$",
          r"^\tmtime=", r"^\tmzxid=([0-9a-f]+)$", r"^\tversion=0\taversion=0$", r"^\tephemeralOwner = 0$"],
         capture={"c2_czxid": (3, 1), "c2_mzxid": (5, 1)})
    if vals.get("c2_czxid") is not None and vals["c2_czxid"] != vals["c2_mzxid"]:
        fail("create2: czxid == mzxid", f"{vals['c2_czxid']} != {vals['c2_mzxid']}")
    step("create2 ephemeral: ephemeralOwner is the session", "create2 +e /cc/e2",
         [r"^\[/cc/e2\]: rc = 0$", r"^\tversion=0\taversion=0$", r"^\tephemeralOwner = {sid}$"])
    step("create2 container: ephemeralOwner hidden", "create2 +c /cont2",
         [r"^\[/cont2\]: rc = 0$", r"^\tephemeralOwner = 0$"])
    step("create2 TTL: ephemeralOwner hidden", "create2 +t=600000 /ttl2",
         [r"^\[/ttl2\]: rc = 0$", r"^\tephemeralOwner = 0$"])
    step("client-side path check", "create /cc/", [r"^Error -8 for /cc/$"])

    # ls / get / set with watches (get and ls leave a watch in this shell)
    step("ls lists the children", "ls /cc",
         [r"^/cc: rc = 0$"], settle=0.2)
    out = last["out"]
    kids = {"seq-0000000000", "eph", "es-0000000002", "ttls-0000000003", "c2", "e2"}
    got = set(re.findall(r"^\t([^\t=]+)$", out.split("/cc: rc = 0")[-1], re.M))
    if got == kids:
        ok("ls /cc: exactly the 6 children")
    else:
        fail("ls /cc: exactly the 6 children", f"got {sorted(got)}")
    step("get returns data and Stat", "get /cc/c2",
         [r"^/cc/c2: rc = 0$", r"^ value_len = 3$", r"^new$", r"^Stat:$", r"^\tczxid={c2_czxid}$",
          r"^\tmzxid={c2_mzxid}$", r"^\tversion=0\taversion=0$"])
    step("set fires the data watch, event before the reply", "set /cc/c2 hello",
         [r"^Watcher CHANGED_EVENT state = CONNECTED_STATE for path /cc/c2$",
          r"^/cc/c2: rc = 0 Stat:$", r"^\tczxid={c2_czxid}$", r"^\tmzxid=([0-9a-f]+)$", r"^\tversion=1\taversion=0$"],
         capture={"c2_mzxid2": (3, 1)})
    if vals.get("c2_mzxid2") and int(vals["c2_mzxid2"], 16) > int(vals["c2_czxid"], 16):
        ok("set: new mzxid > czxid")
    else:
        fail("set: new mzxid > czxid", str(vals))
    step("a data watch fires once", "set /cc/c2 hello2", [r"^/cc/c2: rc = 0 Stat:$", r"^\tversion=2\taversion=0$"],
         forbid=[r"CHANGED_EVENT.*/cc/c2$"], settle=0.3)
    step("get sees the new data", "get /cc/c2", [r"^/cc/c2: rc = 0$", r"^ value_len = 6$", r"^hello2$", r"^\tmzxid=", r"^\tversion=2\t"])
    step("create fires the child watch of ls, event before the reply", "create /cc/new",
         [r"^Watcher CHILD_EVENT state = CONNECTED_STATE for path /cc$", r"^\[/cc/new\]: rc = 0$"])
    step("ls2 prints children and Stat", "ls2 /cc",
         [r"^/cc: rc = 0$", r"^\tnew$", r"^\tctime = ", r"^\tczxid=", r"^\tversion=0\taversion=0$", r"^\tephemeralOwner = 0$"])
    step("delete fires the child watch of ls2", "delete /cc/new",
         [r"^Watcher CHILD_EVENT state = CONNECTED_STATE for path /cc$", r"^/cc/new: rc = 0$"])
    step("exists on a missing node leaves a watch", "exists /cc/later", [r"^Error -101 for /cc/later$"])
    step("create fires the exists watch", "create /cc/later",
         [r"^Watcher CREATED_EVENT state = CONNECTED_STATE for path /cc/later$", r"^\[/cc/later\]: rc = 0$"])
    step("wexists on an existing node", "wexists /cc/later", [])
    step("delete fires the wexists watch", "delete /cc/later",
         [r"^Watcher DELETED_EVENT state = CONNECTED_STATE for path /cc/later$", r"^/cc/later: rc = 0$"])
    step("delete a missing node -> ZNONODE", "delete /cc/later", [r"^/cc/later: rc = -101$"])
    step("delete a node with children -> ZNOTEMPTY", "delete /cc", [r"^/cc: rc = -111$"])
    step("get a missing node -> ZNONODE", "get /nope", [r"^/nope: rc = -101$", r"^Stat:$", r"^null$"])
    step("ls a missing node -> ZNONODE", "ls /nope", [r"^/nope: rc = -101$"])
    step("set a missing node -> ZNONODE", "set /nope x", [r"^/nope: rc = -101 Stat:$", r"^null$"])
    step("sync", "sync /cc", [r"^\[/cc\]: rc = 0$", r"^\tname = /cc$"])
    step("config (getConfig of /zookeeper/config)", "config",
         [r"^/zookeeper/config: rc = 0$", r"^ value_len = 0$", r"^Stat:$", r"^\tczxid=0$", r"^\tmzxid=0$",
          r"^\tversion=0\taversion=ffffffff$"])
    step("ls /", "ls /", [r"^/: rc = 0$"], settle=0.2)
    out = last["out"].split("/: rc = 0")[-1]
    got = set(re.findall(r"^\t([^\t=]+)$", out, re.M))
    want = {"cc", "zookeeper", "cont", "ttl", "cont2", "ttl2"}
    if got == want:
        ok("ls /: exactly the top-level nodes")
    else:
        fail("ls /: exactly the top-level nodes", f"got {sorted(got)} want {sorted(want)}")

    # "od": 200 pipelined set+get pairs of 64 KiB each on /od
    step("create /od", "create /od", [r"^\[/od\]: rc = 0$"])
    step("od: 200 pipelined 64 KiB set+get pairs", "od",
         [r"^Overdosing...$", r"^od command response: rc = 0 Stat:$", r"^Recvd 200 responses for 200 requests sent$"])
    out = cli.text(0)
    bad = [l for l in out.split("\n") if l.startswith("Data completion") and not l.endswith("rc = 0")]
    if bad:
        fail("od: every get rc = 0", "\n".join(bad[:10]))
    else:
        ok("od: every get rc = 0")
    step("get /od after od", "get /od", [r"^/od: rc = 0$", r"^ value_len = 65535$", r"^\tversion=c9\t"])

    # a new session: the old one's ephemerals are gone
    step("reinit: close the session, open a new one", "reinit",
         [r"^Watcher SESSION_EVENT state = CONNECTED_STATE$", r"^Got a new session id: 0x([0-9a-f]+)$"],
         capture={"sid2": (1, 1)})
    if vals.get("sid2") == vals.get("sid"):
        fail("reinit gave a new session id", vals.get("sid2", ""))
    step("ephemerals of the closed session are gone", "ls /cc", [r"^/cc: rc = 0$", r"^\tc2$"],
         forbid=[r"^\teph$", r"^\tes-0000000002$", r"^\te2$"], settle=0.2)
    step("myid prints the new session id", "myid", [r"^session Id = {sid2}$"])
    step("digest addauth is accepted", "addauth digest user:pass", [])
    step("the session still works", "get /cc/c2", [r"^/cc/c2: rc = 0$", r"^hello2$"])
    step("unknown auth scheme -> AUTH_FAILED", "addauth bogus foo",
         [r"^Watcher SESSION_EVENT state = AUTH_FAILED_STATE$", r"^Authentication failure. Shutting down...$"])
    try:
        cli.p.stdin.close()
    except OSError:
        pass
    try:
        cli.p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        cli.p.kill()
        cli.p.wait()
    return cli


def cli_batch(hostport, cmd, timeout=20):
    """One cli_mt command in batch mode (-c); returns its output."""
    p = subprocess.run(["timeout", str(timeout), CLI, "-h", hostport, "-c", cmd],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return p.stdout.decode("utf-8", "replace")


def loadgen(hostport):
    n, path = LOADGEN_CHILDREN, "/loadgen"
    lg = Proc([LOADGEN, hostport, path, str(n)])
    # wait for LOADGEN_CYCLES full cycles, then for the read phase of the next one, and freeze it
    # there: the read phase begins after every create and set of the cycle has been answered, and
    # the deletes are sent only after "Starting the delete cycle" is logged.
    frozen = False
    for attempt in range(5):
        found, _ = lg.wait_patterns(0, [r"Starting the delete cycle"] * (LOADGEN_CYCLES + attempt) +
                                    [r"Starting the read cycle"], 120)
        if found is None:
            break
        os.kill(lg.p.pid, signal.SIGSTOP)
        time.sleep(0.3)
        text = lg.text(0)
        if text.count("Starting the delete cycle") == LOADGEN_CYCLES + attempt:
            frozen = True
            break
        os.kill(lg.p.pid, signal.SIGCONT)
    log = lg.text(0)
    errors = [l for l in log.split("\n") if "ZOO_ERROR" in l or "Failed" in l or "Invalid read" in l]
    cycles = log.count("Starting the delete cycle")
    if frozen and not errors:
        ok(f"load_gen: {cycles} cycles of {n} creates/sets/gets/deletes, no errors")
    else:
        fail("load_gen: cycles without errors", f"frozen={frozen} cycles={cycles}\n" + "\n".join(errors[:20] or log.split("\n")[-20:]))

    if frozen:
        out = cli_batch(hostport, f"ls {path}")
        kids = re.findall(r"^\t(\d+)$", out, re.M)
        if f"{path}: rc = 0" in out and sorted(map(int, kids)) == list(range(n)):
            ok(f"load_gen's {n} children are visible to another client")
        else:
            fail(f"load_gen's {n} children are visible to another client", out)
        for i in (0, n - 1):
            out = cli_batch(hostport, f"get {path}/{i}")
            if re.search(rf"^{path}/{i}: rc = 0$", out, re.M) and re.search(r"^ value_len = 6$", out, re.M) \
                    and re.search(r"^second$", out, re.M):
                ok(f"{path}/{i} holds load_gen's second write")
            else:
                fail(f"{path}/{i} holds load_gen's second write", out)
    os.kill(lg.p.pid, signal.SIGKILL)
    os.kill(lg.p.pid, signal.SIGCONT)
    lg.p.wait()

    p = subprocess.run(["timeout", "120", LOADGEN, hostport, path, "clean"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = p.stdout.decode("utf-8", "replace")
    m = re.search(rf"Successfully deleted a subtree starting at {path} \((\d+) nodes\)", out)
    if p.returncode == 0 and m and (not frozen or int(m.group(1)) == n + 1):
        ok(f"load_gen clean: exit 0, deleted {m.group(1)} nodes")
    else:
        fail("load_gen clean", f"exit {p.returncode}\n{out}")
    out = cli_batch(hostport, f"ls {path}")
    if f"{path}: rc = -101" in out:
        ok(f"{path} is gone after clean")
    else:
        fail(f"{path} is gone after clean", out)


def main():
    if len(sys.argv) < 2:
        sys.stderr.write(__doc__)
        return 2
    hostport = sys.argv[1]
    print("== cli_mt session")
    cli = cli_session(hostport)
    if os.environ.get("CCLIENT_SHOW"):
        print(cli.text(0))
    if "--skip-loadgen" not in sys.argv:
        print("== load_gen")
        loadgen(hostport)
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
