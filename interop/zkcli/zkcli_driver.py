#!/usr/bin/env python3
"""Drive Apache's zkCli.sh through a script, one command at a time, and normalise its transcript.

  zkcli_driver.py run SERVER SCRIPT RAW_OUT   feed SCRIPT to zkCli.sh -server SERVER, write the raw transcript
  zkcli_driver.py normalize RAW_OUT           print the normalised transcript on stdout

Running: after each command the driver sends an unknown command "@@aN" and waits until zkCli
has printed "Command not found ... @@aN" (so the command has finished), waits a little so the
client's event thread can print any watch event the command fired, then sends "@@bN". Everything
printed between "@@b(N-1)" and "@@bN" belongs to command N, so the transcript is deterministic
even though zkCli prints watch events from another thread.

Normalising removes what legitimately differs between two servers or two runs: log/banner lines,
zkCli's usage text (printed for each marker), connection-state events (type:None), times other
than the epoch, session ids (ephemeralOwner, mapped to S1, S2, ... in order of appearance) and
zxids (mapped to Z1, Z2, ... in order of first appearance, 0x0 kept; "zxid order" lines at the
end list the names in numeric order, so equality and order of zxids are both checked). Within one command's block, watch events are moved after the command's own output (their
relative order is kept). getEphemerals lists, whoami's auth ids and getAcl entries of one scheme
(an "auth::" ACL expanded into the session's ids) come from Java HashSets on Apache, so they are
sorted.
"""
import os
import re
import subprocess
import sys
import threading
import time

ZKCLI = os.environ.get("ZKCLI", "/usr/share/zookeeper/bin/zkCli.sh")
CMD_TIMEOUT = float(os.environ.get("ZKCLI_CMD_TIMEOUT", "40"))
EVENT_GRACE = float(os.environ.get("ZKCLI_EVENT_GRACE", "0.1"))


def read_script(path):
    cmds = []
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            cmds.append(line.strip())
    return cmds


def run(server, script, raw_out):
    cmds = read_script(script)
    port = server.rsplit(":", 1)[1]
    proc = subprocess.Popen([ZKCLI, "-server", server], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines = []
    cond = threading.Condition()

    def reader():
        for raw in proc.stdout:
            with cond:
                lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                cond.notify_all()
        with cond:
            lines.append(None)
            cond.notify_all()

    t = threading.Thread(target=reader, daemon=True)
    t.start()

    def send(s):
        proc.stdin.write((s + "\n").encode())
        proc.stdin.flush()

    scanned = [0]

    def wait_for(marker):
        want = "Command not found " + marker
        deadline = time.monotonic() + CMD_TIMEOUT
        with cond:
            while True:
                while scanned[0] < len(lines):
                    l = lines[scanned[0]]
                    if l is None:
                        return False
                    scanned[0] += 1
                    if l.endswith(want):
                        return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                cond.wait(left)

    ok = True
    with open(raw_out + ".cmds", "w") as f:
        for i, c in enumerate(cmds, 1):
            f.write(f"{i}\t{c}\n")
    for i, c in enumerate(cmds, 1):
        try:
            send(c.replace("$PORT", port))
            send(f"@@a{i}")
            done = wait_for(f"@@a{i}")
            if done:
                time.sleep(EVENT_GRACE)
                send(f"@@b{i}")
                done = wait_for(f"@@b{i}")
        except OSError:
            done = False
        if not done:
            ok = False
            with cond:
                lines.append(f"@@DRIVER: zkCli did not finish command {i} ({c}) within {CMD_TIMEOUT}s")
            break
    try:
        send("quit")
        proc.stdin.close()
    except OSError:
        pass
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    t.join(timeout=5)
    with open(raw_out, "w") as f:
        for l in lines:
            if l is not None:
                f.write(l + "\n")
    return 0 if ok else 1


NOISE = [
    re.compile(r"^SLF4J: "),
    re.compile(r"^log4j:"),
    re.compile(r"^Connecting to "),
    re.compile(r"^Welcome to ZooKeeper!$"),
    re.compile(r"^JLine support is "),
    re.compile(r"^WATCHER::$"),
    re.compile(r"^WatchedEvent state:\w+ type:None path:null$"),
    re.compile(r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d"),  # log lines, if a log4j config is ever found
]
USAGE_HEAD = "ZooKeeper -server host:port -client-configuration properties-file cmd args"
MARK = re.compile(r"Command not found: Command not found @@([ab])(\d+)$")
EVENT = re.compile(r"^WatchedEvent ")
ZXID = re.compile(r"^(cZxid|mZxid|pZxid) = 0x([0-9a-f]+)$")
TIME = re.compile(r"^(ctime|mtime) = (.*)$")
OWNER = re.compile(r"^ephemeralOwner = 0x([0-9a-f]+)$")
EPHEMERALS = re.compile(r"^\[(/.*)\]$")


def sort_same_scheme_acl_runs(body):
    """getAcl prints each entry as "'scheme,'id" and ": perms". Entries of one scheme that follow
    each other are sorted: Apache expands an "auth::" ACL into the session's ids in Java HashSet
    order. The order of entries of different schemes is still compared."""
    entries, rest, i = [], [], 0
    while i + 1 < len(body) and body[i].startswith("'") and body[i + 1].startswith(": "):
        entries.append((body[i], body[i + 1]))
        i += 2
    rest = body[i:]
    out, run = [], []
    for e in entries + [None]:
        if run and (e is None or e[0].split(",", 1)[0] != run[0][0].split(",", 1)[0]):
            out.extend(sorted(run))
            run = []
        if e is not None:
            run.append(e)
    return [l for e in out for l in e] + rest


def normalize(raw_path):
    cmds = {}
    with open(raw_path + ".cmds") as f:
        for line in f:
            n, c = line.rstrip("\n").split("\t", 1)
            cmds[int(n)] = c
    with open(raw_path) as f:
        raw = [l.rstrip("\n") for l in f]

    # drop noise and usage text, cut into blocks at the @@b markers. A watch event is printed as
    # "\nWATCHER::" and "\nWatchedEvent ...", so a blank line just before either belongs to it;
    # other blank lines are output (a node's empty data). Usage text (tab-indented) is printed on
    # stderr for every marker and may interleave with events, so it is dropped up to the marker.
    blocks = []
    cur = []
    in_usage = False
    for i, l in enumerate(raw):
        if l == USAGE_HEAD:
            in_usage = True
            continue
        if in_usage and l.startswith("\t"):
            continue
        m = MARK.search(l)
        if m:
            in_usage = False
            pre = l[:m.start()]
            if pre:  # zkCli printed something without a newline before the marker
                cur.append(pre)
            if m.group(1) == "b":
                blocks.append((int(m.group(2)), cur))
                cur = []
            continue
        if l == "" and i + 1 < len(raw) and (raw[i + 1] == "WATCHER::" or raw[i + 1].startswith("WatchedEvent ")):
            continue
        if any(p.search(l) for p in NOISE):
            continue
        cur.append(l)
    if cur:
        blocks.append((None, cur))

    # zxids: Z1, Z2, ... in order of first appearance (so a difference shows where it first
    # happens); their numeric order is checked once, by the "zxid order" lines at the end.
    zname = {}
    for _, b in blocks:
        for l in b:
            m = ZXID.match(l)
            if m:
                v = int(m.group(2), 16)
                if v != 0 and v not in zname:
                    zname[v] = f"Z{len(zname) + 1}"
    sessions = {}

    out = []
    for n, b in blocks:
        out.append("> " + (cmds.get(n, "?") if n is not None else "(after the last command)"))
        body = [l for l in b if not EVENT.match(l)] + [l for l in b if EVENT.match(l)]
        if n is not None and re.match(r"getAcl\b", cmds.get(n, "")):
            body = sort_same_scheme_acl_runs(body)
        if body and body[0] == "Auth scheme: User":
            # whoami: Apache lists the session's auth ids from a Java HashSet; compare as a set
            k = 1
            while k < len(body) and not EVENT.match(body[k]):
                k += 1
            body = body[:1] + sorted(body[1:k]) + body[k:]
        for l in body:
            m = ZXID.match(l)
            if m:
                v = int(m.group(2), 16)
                l = f"{m.group(1)} = {'0x0' if v == 0 else zname[v]}"
            m = TIME.match(l)
            if m and m.group(2) != "Thu Jan 01 00:00:00 UTC 1970":
                l = f"{m.group(1)} = <time>"
            m = OWNER.match(l)
            if m and m.group(1) != "0":
                sessions.setdefault(m.group(1), f"S{len(sessions) + 1}")
                l = f"ephemeralOwner = <session {sessions[m.group(1)]}>"
            m = EPHEMERALS.match(l)
            if m:
                l = "[" + ", ".join(sorted(m.group(1).split(", "))) + "]"
            out.append("  " + l)
    order = [zname[v] for v in sorted(zname)]
    for i in range(0, len(order), 16):
        out.append("zxid order: " + " < ".join(order[i:i + 16]))
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "run":
        sys.exit(run(sys.argv[2], sys.argv[3], sys.argv[4]))
    if len(sys.argv) == 3 and sys.argv[1] == "normalize":
        sys.exit(normalize(sys.argv[2]))
    sys.stderr.write(__doc__)
    sys.exit(2)
