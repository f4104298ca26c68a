"""Start, restart and stop the two servers under comparison.

A backend is "zookeeper" (Apache ZooKeeper from /usr/share/java) or "ferrozk"
(the binary in $FERROZK_BIN). Both get the same zoo.cfg; ZooKeeper also gets
the JVM properties it reads only from the command line.
"""

import os
import shutil
import signal
import subprocess
import time

import zkwire

# zookeeper.jar's manifest Class-Path names its dependencies. The usual
# "/usr/share/java/*" wildcard also works, but then slf4j-nop wins the binding
# race and the server logs nothing; naming slf4j-log4j12 + log4j instead gives
# server.log content (and a wildcard would add log4j-over-slf4j, which clashes).
ZK_CLASSPATH = os.environ.get(
    "DIFF_ZK_CLASSPATH",
    "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar:"
    "/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar")
SUPER_DIGEST = "super:D/InIHSb7yEEbrWz8b9l71RjZJU="   # user super, password test


class Server:
    def __init__(self, name, kind, port, workdir, ferrozk_bin=None, extra_cfg=()):
        self.name = name
        self.kind = kind
        self.port = port
        self.host = "127.0.0.1"
        self.dir = os.path.join(workdir, name)
        self.data_dir = os.path.join(self.dir, "data")
        self.cfg_path = os.path.join(self.dir, "zoo.cfg")
        self.log_path = os.path.join(self.dir, "server.log")
        self.ferrozk_bin = ferrozk_bin
        self.extra_cfg = list(extra_cfg)
        self.proc = None
        self.starts = 0
        os.makedirs(self.data_dir, exist_ok=True)

    def describe(self):
        return "%s (%s on %s:%d)" % (self.name, self.kind, self.host, self.port)

    def _write_cfg(self, container_interval_ms):
        lines = [
            "tickTime=2000",
            "dataDir=%s" % self.data_dir,
            "clientPort=%d" % self.port,
            "clientPortAddress=127.0.0.1",
            "admin.enableServer=false",
            "4lw.commands.whitelist=*",
            "maxClientCnxns=0",
            "extendedTypesEnabled=true",
            # ZooKeeper reads the container/TTL reaper interval only as a JVM
            # property; ferrozk is expected to take it from zoo.cfg.
            "znode.container.checkIntervalMs=%d" % container_interval_ms,
            # becomes the system property zookeeper.DigestAuthenticationProvider.superDigest
            "DigestAuthenticationProvider.superDigest=%s" % SUPER_DIGEST,
        ] + self.extra_cfg
        with open(self.cfg_path, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self, container_interval_ms):
        self._write_cfg(container_interval_ms)
        if self.kind == "zookeeper":
            cmd = [
                "java", "-Xmx512m", "-XX:+UseSerialGC",
                "-cp", ZK_CLASSPATH,
                "-Dzookeeper.extendedTypesEnabled=true",
                "-Dznode.container.checkIntervalMs=%d" % container_interval_ms,
                "-Dzookeeper.admin.enableServer=false",
                "-Dzookeeper.root.logger=%s,CONSOLE" % os.environ.get("DIFF_ZK_LOG_LEVEL", "INFO"),
                "-Dzookeeper.console.threshold=%s" % os.environ.get("DIFF_ZK_LOG_LEVEL", "INFO"),
                "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                self.cfg_path,
            ]
        elif self.kind == "ferrozk":
            cmd = [self.ferrozk_bin, "server", self.cfg_path]
        else:
            raise ValueError("unknown backend kind %r" % self.kind)
        self.starts += 1
        logf = open(self.log_path, "ab")
        logf.write(("\n==== start #%d: %s\n" % (self.starts, " ".join(cmd))).encode())
        logf.flush()
        self.proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL,
                                     cwd=self.dir, start_new_session=True)
        logf.close()

    def wait_ready(self, timeout=60.0):
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError("%s exited with %s before answering ruok; see %s"
                                   % (self.describe(), self.proc.returncode, self.log_path))
            try:
                out = zkwire.four_letter(self.host, self.port, b"ruok")
                if out.strip() == b"imok":
                    # ruok answers before the database is loaded; make sure a
                    # session can actually be opened.
                    s = zkwire.Session(self.host, self.port, timeout_ms=10000)
                    s.close()
                    return
                last = out
            except (OSError, zkwire.ConnectionClosed, zkwire.ProtocolError) as e:
                last = e
            time.sleep(0.2)
        raise RuntimeError("%s not ready after %.0fs (last: %r); see %s"
                           % (self.describe(), timeout, last, self.log_path))

    def stop(self, timeout=15.0):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        self.proc = None

    def tail_log(self, n=30):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return ""


def remove_tree(path):
    shutil.rmtree(path, ignore_errors=True)
