"""Starting and stopping ferrozk or Apache ZooKeeper 3.8.0 servers on loopback, for the interop
suites: free ports, four-letter words, zoo.cfg, members and ensembles.

    from ensemble import Ensemble
    with Ensemble("ferrozk", 3) as ens:          # or "zookeeper"
        ens.start_all(); ens.wait_serving()
        leader = ens.leader()
        leader.kill()

Each member lives in its own directory under one temporary root (``zoo.cfg``, ``data/`` with
``myid``, ``server.log``); the root is removed on a clean exit and kept (and named) after a
failure. ``client_addrs`` chooses the form of the ``server.N`` lines: ``None`` (no client
address, the common form), ``"port"`` (``;<port>``) or ``"addr"`` (``;127.0.0.1:<port>``).
"""

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HOST = "127.0.0.1"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ZK_CLASSPATH = "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar:/usr/share/java/*"
# user "super", password "test"
SUPER_DIGEST = "super:D/InIHSb7yEEbrWz8b9l71RjZJU="


_HANDED_OUT = set()


def free_port():
    """A free port below the kernel's ephemeral range (32768 and up): a server restarted on
    its ports must not find one taken meanwhile by some outgoing connection. Never the same
    one twice in a process: nothing holds a port between this call and the server's bind."""
    while True:
        port = random.SystemRandom().randrange(12000, 32000)
        if port in _HANDED_OUT:
            continue
        _HANDED_OUT.add(port)
        with socket.socket() as s:
            try:
                s.bind((HOST, port))
            except OSError:
                continue
            return port


def four_letter(port, word, timeout=2.0):
    """The server's answer to a four-letter word, or "" when it cannot be reached."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            s.sendall(word.encode())
            out = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return out.decode(errors="replace")
                out += chunk
    except OSError:
        return ""


def srvr_field(port, name):
    for line in four_letter(port, "srvr").splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    return None


def log(msg):
    sys.stdout.write("%s %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stdout.flush()


class Member(object):
    def __init__(self, backend, sid, root, extra_config=()):
        self.backend = backend
        self.sid = sid
        self.dir = os.path.join(root, "m%d" % sid)
        os.makedirs(os.path.join(self.dir, "data"))
        with open(os.path.join(self.dir, "data", "myid"), "w") as f:
            f.write("%d\n" % sid)
        self.client_port = free_port()
        self.quorum_port = free_port()
        self.election_port = free_port()
        self.extra_config = list(extra_config)
        self.proc = None

    @property
    def address(self):
        return "%s:%d" % (HOST, self.client_port)

    def server_line(self, client_addrs=None):
        line = "server.%d=%s:%d:%d" % (self.sid, HOST, self.quorum_port, self.election_port)
        if client_addrs == "port":
            line += ";%d" % self.client_port
        elif client_addrs == "addr":
            line += ";%s:%d" % (HOST, self.client_port)
        return line

    def write_config(self, server_lines, tick=2000, client_addrs=None):
        lines = [
            "tickTime=%d" % tick,
            "initLimit=10",
            "syncLimit=5",
            "dataDir=%s" % os.path.join(self.dir, "data"),
            "clientPort=%d" % self.client_port,
        ]
        # ZooKeeper refuses a clientPortAddress that differs from the wildcard a bare `;port`
        # in its own server line stands for.
        if client_addrs != "port":
            lines.append("clientPortAddress=%s" % HOST)
        lines += [
            "maxClientCnxns=0",
            "4lw.commands.whitelist=*",
            "admin.enableServer=false",
        ] + self.extra_config + server_lines
        with open(os.path.join(self.dir, "zoo.cfg"), "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self):
        cfg = os.path.join(self.dir, "zoo.cfg")
        if self.backend == "ferrozk":
            binary = os.environ.get("FERROZK_BIN") or os.path.join(REPO, "target", "debug", "ferrozk")
            cmd = [binary, "server", cfg]
        else:
            cmd = ["java", "-Xmx256m", "-XX:+UseSerialGC", "-cp", ZK_CLASSPATH,
                   "-Dzookeeper.admin.enableServer=false",
                   "org.apache.zookeeper.server.quorum.QuorumPeerMain", cfg]
        out = open(os.path.join(self.dir, "server.log"), "ab")
        out.write(("==== start %s\n" % time.strftime("%H:%M:%S")).encode())
        out.flush()
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=self.dir)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """SIGKILL, as a crash."""
        if self.running():
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def stop(self, timeout=10):
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def mode(self):
        return srvr_field(self.client_port, "Mode")

    def four(self, word):
        return four_letter(self.client_port, word)


class Ensemble(object):
    """`size` members with the same server lines; nothing is started until asked."""

    def __init__(self, backend, size=3, client_addrs=None, tick=2000, extra_config=()):
        if backend not in ("ferrozk", "zookeeper"):
            raise ValueError("backend must be ferrozk or zookeeper, not %r" % backend)
        self.backend = backend
        self.root = tempfile.mkdtemp(prefix="ferrozk-ens-%s-" % backend)
        # ZooKeeper reads unknown zoo.cfg keys as `zookeeper.<key>` properties: one spelling
        # sets the super user on both.
        extra_config = list(extra_config) + ["reconfigEnabled=true",
                                             "DigestAuthenticationProvider.superDigest=" + SUPER_DIGEST]
        self.members = [Member(backend, i, self.root, extra_config) for i in range(1, size + 1)]
        self.client_addrs = client_addrs
        self.server_lines = [m.server_line(client_addrs) for m in self.members]
        for m in self.members:
            m.write_config(self.server_lines, tick, client_addrs)
        self.failed = False

    @property
    def hosts(self):
        return ",".join(m.address for m in self.members)

    def member(self, sid):
        return self.members[sid - 1]

    def start_all(self):
        for m in self.members:
            m.start()

    def wait_serving(self, timeout=90, members=None):
        """Waits until the running members (or `members`) have one leader and the rest follow."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            group = members or [m for m in self.members if m.running()]
            modes = [m.mode() for m in group]
            if modes.count("leader") == 1 and all(x in ("leader", "follower", "observer") for x in modes):
                return next(m for m, x in zip(group, modes) if x == "leader")
            time.sleep(0.1)
        raise RuntimeError("%s ensemble did not form within %ss; logs in %s" % (self.backend, timeout, self.root))

    def leader(self):
        for m in self.members:
            if m.running() and m.mode() == "leader":
                return m
        return None

    def close(self):
        for m in self.members:
            m.stop()
        if self.failed:
            log("work directory kept: %s" % self.root)
        else:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.failed = True
        self.close()
