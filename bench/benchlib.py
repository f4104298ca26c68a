"""What the benchmark scripts share: where the servers are, free ports, four-letter words, a
zoo.cfg, starting a server of either kind, and a process's CPU time and memory from /proc."""
import os
import random
import socket
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FERROZK = os.environ.get("FERROZK_BIN", os.path.join(ROOT, "target/release/ferrozk"))
ZK_CP = "/usr/share/java/zookeeper.jar:/usr/share/java/zookeeper-jute.jar:/usr/share/java/*"
TICKS = os.sysconf("SC_CLK_TCK")
# The settings every benchmark server gets, ferrozk and ZooKeeper alike.
BASE_CFG = "maxClientCnxns=0\nadmin.enableServer=false\n4lw.commands.whitelist=*\n"


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
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def four_letter(port, word, timeout=1):
    """The server's whole answer to a four-letter word ("" when it cannot be reached)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(word.encode())
            out = b""
            while chunk := s.recv(65536):
                out += chunk
            return out.decode(errors="replace")
    except OSError:
        return ""


def ruok(port):
    return four_letter(port, "ruok") == "imok"


def mntr(port):
    """`mntr` as a dict of its tab-separated lines (raises OSError when unreachable)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"mntr")
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return dict(line.split("\t", 1) for line in out.decode().splitlines() if "\t" in line)


def write_cfg(path, data_dir, port, extra=""):
    """A standalone (or, with server lines in `extra`, ensemble) zoo.cfg on loopback."""
    with open(path, "w") as f:
        f.write(f"tickTime=2000\ndataDir={data_dir}\nclientPort={port}\nclientPortAddress=127.0.0.1\n{BASE_CFG}{extra}")


def server_cmd(kind, cfg, jvm_opts=()):
    """The command that runs a server of `kind` ("ferrozk" or "zookeeper") on `cfg`."""
    if kind == "ferrozk":
        return [FERROZK, "server", cfg]
    return ["java", *jvm_opts, "-cp", ZK_CP, "org.apache.zookeeper.server.quorum.QuorumPeerMain", cfg]


def start(kind, cfg, log_path, jvm_opts=()):
    return subprocess.Popen(server_cmd(kind, cfg, jvm_opts), stdout=open(log_path, "a"), stderr=subprocess.STDOUT)


def cpu_seconds(pid):
    """User + system time of a process, its own and its reaped children's: ferrozk writes
    snapshots from a forked child, ZooKeeper from a thread."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / TICKS


def rss_mb(pid, key="VmHWM"):
    """Peak (VmHWM) or current (VmRSS) resident memory of a process, in MB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return 0.0
