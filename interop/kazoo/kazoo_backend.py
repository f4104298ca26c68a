"""pytest plugin that points kazoo's own test suite at servers we launch.

kazoo's harness (``kazoo.testing.harness.get_global_cluster``) builds a
``kazoo.testing.common.ZookeeperCluster`` of Java ZooKeeper processes.  This
plugin, loaded with ``-p kazoo_backend`` before the tests are imported,
replaces that class with :class:`Cluster`, which launches one process per
member of either backend (env ``KAZOO_BACKEND``):

``ferrozk``
    ``$FERROZK_BIN server <dir>/zoo.cfg`` (default binary:
    ``<repo>/target/release/ferrozk``).
``zookeeper``
    Apache ZooKeeper from Debian's packages (``QuorumPeerMain``), started
    with the same kind of zoo.cfg, so the harness itself is checked against
    the reference server.

Every member lives in its own temporary directory under /tmp (``zoo.cfg``,
``data/``, ``server.log`` with the process's stdout and stderr, TLS files).
A member counts as started once its client port answers ``ruok`` with
``imok``; a cluster counts as started once every member's ``srvr`` no longer
says it is not serving.
"""

import atexit
import ctypes
import logging
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import OpenSSL
import pytest

import kazoo.testing.common as kazoo_common
import kazoo.testing.harness as kazoo_harness

BACKENDS = ("ferrozk", "zookeeper")
BACKEND = os.environ.get("KAZOO_BACKEND", "ferrozk")
REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
FERROZK_BIN = os.environ.get("FERROZK_BIN") or str(
    REPO_ROOT / "target" / "release" / "ferrozk"
)
ZK_CLASSPATH = (
    # slf4j-simple (logs to stderr) ahead of the wildcard, or slf4j binds
    # the first of several bindings there, a no-op one, and logs nothing
    "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar:"
    "/usr/share/java/slf4j-simple.jar:/usr/share/java/*"
)
ZK_JAR = "/usr/share/java/zookeeper.jar"
# user "super", password "test": what kazoo's reconfig tests authenticate as
SUPER_DIGEST = "super:D/InIHSb7yEEbrWz8b9l71RjZJU="
START_TIMEOUT = float(os.environ.get("KAZOO_SERVER_START_TIMEOUT", "30"))
# After this many failed cluster starts the whole run stops (instead of every
# remaining test class waiting for a server that never comes up).
MAX_START_FAILURES = int(os.environ.get("KAZOO_MAX_START_FAILURES", "3"))
STOP_TIMEOUT = float(os.environ.get("KAZOO_SERVER_STOP_TIMEOUT", "10"))
HOST = "127.0.0.1"

# Every member ever made, so that nothing outlives the test run.
_MEMBERS = []
_MEMBERS_LOCK = threading.Lock()
_start_failures = 0


class ServerStartError(RuntimeError):
    pass


def four_letter_word(port, word, timeout=2.0):
    """Send a four-letter word to 127.0.0.1:port and return the reply."""
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(word)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def port_accepts(port):
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def _die_with_parent():
    # Runs in the child between fork and exec: if pytest dies (even by
    # SIGKILL), the kernel kills the server too.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except Exception:
        pass


class Member(object):
    """One server process; the part of ``ManagedZooKeeper``'s interface
    that kazoo's tests and harness use."""

    def __init__(
        self,
        backend,
        server_info,
        peers,
        classpath=None,
        configuration_entries=(),
        java_system_properties=(),
        jaas_config=None,
        ssl_configuration=None,
    ):
        self.backend = backend
        self.server_info = server_info
        self.peers = list(peers)
        self.host = HOST
        self._classpath = classpath or ZK_CLASSPATH
        self.configuration_entries = list(configuration_entries)
        self.java_system_properties = list(java_system_properties)
        self.jaas_config = jaas_config
        self.ssl_configuration = ssl_configuration or {}
        self.working_path = tempfile.mkdtemp(
            prefix="kazoo-%s-%d-" % (backend, server_info.server_id),
            dir="/tmp",
        )
        self.process = None
        self._log_file = None
        with _MEMBERS_LOCK:
            _MEMBERS.append(self)

    # -- addresses ---------------------------------------------------------

    @property
    def client_port(self):
        return self.server_info.client_port

    @property
    def secure_client_port(self):
        return self.server_info.secure_client_port

    @property
    def port(self):
        return self.client_port

    @property
    def address(self):
        return "%s:%s" % (self.host, self.client_port)

    @property
    def secure_address(self):
        return "%s:%s" % (self.host, self.secure_client_port)

    @property
    def running(self):
        return self.process is not None and self.process.poll() is None

    # -- files -------------------------------------------------------------

    @property
    def data_path(self):
        return os.path.join(self.working_path, "data")

    @property
    def config_path(self):
        return os.path.join(self.working_path, "zoo.cfg")

    @property
    def log_path(self):
        return os.path.join(self.working_path, "server.log")

    def _write_tls_files(self):
        """PEM files for the secure client port (kazoo's TestSSLClient):
        the server key and certificate in one file, the CA in another."""
        ssl = self.ssl_configuration
        if not ssl:
            return None
        pem = OpenSSL.crypto.FILETYPE_PEM
        keystore = os.path.join(self.working_path, "server.pem")
        truststore = os.path.join(self.working_path, "ca.pem")
        with open(keystore, "wb") as f:
            f.write(OpenSSL.crypto.dump_privatekey(pem, ssl["server_key"]))
            f.write(OpenSSL.crypto.dump_certificate(pem, ssl["server_cert"]))
        with open(truststore, "wb") as f:
            f.write(ssl["ca_cert_pem"])
        return keystore, truststore

    def _config_lines(self):
        info = self.server_info
        lines = [
            "tickTime=2000",
            "dataDir=%s" % self.data_path,
            "clientPort=%d" % info.client_port,
            "clientPortAddress=%s" % HOST,
            "maxClientCnxns=0",
            "admin.enableServer=false",
            "4lw.commands.whitelist=*",
            "extendedTypesEnabled=true",
            "DigestAuthenticationProvider.superDigest=%s" % SUPER_DIGEST,
            "readonlymode.enabled=true",
        ]
        tls = self._write_tls_files()
        if tls:
            keystore, truststore = tls
            lines += [
                "secureClientPort=%d" % info.secure_client_port,
                "secureClientPortAddress=%s" % HOST,
                "ssl.keyStore.location=%s" % keystore,
                "ssl.keyStore.type=PEM",
                "ssl.trustStore.location=%s" % truststore,
                "ssl.trustStore.type=PEM",
            ]
            if self.backend == "zookeeper":
                # ZooKeeper serves TLS only through its Netty factory.
                lines.append(
                    "serverCnxnFactory="
                    "org.apache.zookeeper.server.NettyServerCnxnFactory"
                )
        if self.jaas_config and self.backend == "zookeeper":
            lines.append(
                "authProvider.1="
                "org.apache.zookeeper.server.auth.SASLAuthenticationProvider"
            )
        # What kazoo's harness adds for ZooKeeper >= 3.5 (4lw whitelist,
        # reconfigEnabled, localSessionsEnabled, ...), later keys winning.
        lines += self.configuration_entries
        if self.peers:
            lines += ["initLimit=10", "syncLimit=5"]
            members = sorted([info] + self.peers, key=lambda p: p.server_id)
            for p in members:
                lines.append(
                    "server.%d=%s:%d:%d:%s"
                    % (
                        p.server_id,
                        HOST,
                        p.leader_port,
                        p.election_port,
                        p.peer_type,
                    )
                )
            lines.append("peerType=%s" % info.peer_type)
        # one line per key, the last one given wins
        merged = {}
        for line in lines:
            key = line.split("=", 1)[0].strip()
            merged.pop(key, None)
            merged[key] = line
        return list(merged.values())

    def _command(self):
        if self.backend == "ferrozk":
            return [FERROZK_BIN, "server", self.config_path]
        props = [
            "-Dfile.encoding=UTF-8",
            "-Djava.awt.headless=true",
            "-Dzookeeper.root.logger=INFO,CONSOLE",
            "-Dzookeeper.log.dir=%s" % self.working_path,
            "-Dzookeeper.extendedTypesEnabled=true",
            "-Dreadonlymode.enabled=true",
            "-Dzookeeper.DigestAuthenticationProvider.superDigest=%s"
            % SUPER_DIGEST,
        ]
        if self.jaas_config:
            jaas_path = os.path.join(self.working_path, "jaas.conf")
            with open(jaas_path, "w") as f:
                f.write(self.jaas_config)
            props.append("-Djava.security.auth.login.config=%s" % jaas_path)
        for prop in self.java_system_properties:
            if prop not in props:
                props.append(prop)
        return (
            ["java", "-cp", self._classpath]
            + props
            + ["org.apache.zookeeper.server.quorum.QuorumPeerMain"]
            + [self.config_path]
        )

    # -- life cycle --------------------------------------------------------

    def run(self, wait=None):
        """Start the server and wait until it answers ``ruok``; a member
        without peers also has to be serving before this returns."""
        if self.running:
            return
        self._reap()
        os.makedirs(self.data_path, exist_ok=True)
        with open(os.path.join(self.data_path, "myid"), "w") as f:
            f.write("%d\n" % self.server_info.server_id)
        with open(self.config_path, "w") as f:
            f.write("\n".join(self._config_lines()) + "\n")
        if port_accepts(self.client_port):
            raise ServerStartError(
                "port %d already accepts connections: another server is "
                "running there (left over from an earlier run?)"
                % self.client_port
            )
        args = self._command()
        self._log_file = open(self.log_path, "ab")
        self._log_file.write(
            ("==== %s: %s\n" % (time.strftime("%H:%M:%S"), " ".join(args)))
            .encode()
        )
        self._log_file.flush()
        in_main_thread = threading.current_thread() is threading.main_thread()
        try:
            self.process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                cwd=self.working_path,
                preexec_fn=_die_with_parent if in_main_thread else None,
            )
        except OSError as e:
            self._close_log()
            raise ServerStartError("cannot start %s: %s" % (args[0], e))
        if wait is None:
            wait = "serving" if not self.peers else "ruok"
        self.wait_ready(serving=(wait == "serving"))

    def wait_ready(self, serving=False, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        what = "answer ruok"
        while True:
            if not self.running:
                code = self.process.returncode if self.process else None
                self._reap()
                raise ServerStartError(
                    "%s server %d exited (status %s) before it was ready; "
                    "log %s ends with:\n%s"
                    % (
                        self.backend,
                        self.server_info.server_id,
                        code,
                        self.log_path,
                        "".join(self.get_logs(30)),
                    )
                )
            if self._is_ready(serving):
                return
            if time.monotonic() > deadline:
                self.stop()
                if serving:
                    what = "serve (srvr still says it is not serving)"
                raise ServerStartError(
                    "%s server %d on port %d did not %s within %.0f s; "
                    "log %s ends with:\n%s"
                    % (
                        self.backend,
                        self.server_info.server_id,
                        self.client_port,
                        what,
                        timeout,
                        self.log_path,
                        "".join(self.get_logs(30)),
                    )
                )
            time.sleep(0.1)

    def _is_ready(self, serving):
        try:
            if four_letter_word(self.client_port, b"ruok").strip() != "imok":
                return False
            if serving:
                reply = four_letter_word(self.client_port, b"srvr")
                if "not currently serving" in reply:
                    return False
            return True
        except OSError:
            return False

    def stop(self):
        """Stop the server (SIGTERM, then SIGKILL), keeping its data."""
        proc = self.process
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                self._note("SIGKILLed after %.0f s" % STOP_TIMEOUT)
        self._reap()

    def _reap(self):
        if self.process is not None:
            self.process.wait()
            self._note("exited with status %s" % self.process.returncode)
        self.process = None
        self._close_log()

    def _note(self, msg):
        if self._log_file is not None and not self._log_file.closed:
            self._log_file.write(("==== %s\n" % msg).encode())
            self._log_file.flush()

    def _close_log(self):
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def reset(self):
        """Stop the server and wipe its data."""
        self.stop()
        shutil.rmtree(self.data_path, True)

    def destroy(self):
        """Stop the server and remove its directory."""
        self.stop()
        shutil.rmtree(self.working_path, True)

    def get_logs(self, num_lines=100):
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return f.readlines()[-num_lines:]
        except OSError:
            return []


class Cluster(kazoo_common.ZookeeperCluster):
    """Drop-in for kazoo's ``ZookeeperCluster`` (same constructor, so the
    harness's ``get_global_cluster`` builds it unchanged)."""

    def __init__(
        self,
        install_path=None,
        classpath=None,
        size=3,
        port_offset=20000,
        observer_start_id=-1,
        configuration_entries=(),
        java_system_properties=(),
        jaas_config=None,
    ):
        self._servers = []
        self._ssl_configuration = {}
        self.perform_ssl_certs_generation()
        # Same port plan as kazoo: member i uses port_offset + 10 * i
        # (client), +1 election, +2 leader/quorum, +3 admin, +4 secure.
        infos = []
        for i in range(size):
            server_id = i + 1
            if observer_start_id != -1 and server_id >= observer_start_id:
                peer_type = "observer"
            else:
                peer_type = "participant"
            port = port_offset + 10 * i
            infos.append(
                kazoo_common.ServerInfo(
                    server_id, port, port + 4, port + 1, port + 2, port + 3,
                    peer_type,
                )
            )
        for info in infos:
            self._servers.append(
                Member(
                    BACKEND,
                    info,
                    [p for p in infos if p is not info],
                    classpath=classpath,
                    configuration_entries=configuration_entries,
                    java_system_properties=java_system_properties,
                    jaas_config=jaas_config,
                    ssl_configuration=dict(self._ssl_configuration),
                )
            )

    def start(self):
        # Highest id first, as kazoo does; each member only has to be
        # listening, then all of them have to be serving (an ensemble
        # member cannot serve until a quorum is up).
        try:
            for server in reversed(self._servers):
                server.run(wait="ruok")
            for server in self._servers:
                server.wait_ready(serving=True)
        except Exception as e:
            global _start_failures
            for server in self._servers:
                server.stop()
            _start_failures += 1
            if _start_failures >= MAX_START_FAILURES:
                pytest.exit(
                    "giving up after %d failed cluster starts; last: %s"
                    % (_start_failures, e),
                    returncode=1,
                )
            raise

    def stop(self):
        for server in self._servers:
            server.stop()

    def terminate(self):
        for server in self._servers:
            server.destroy()

    def reset(self):
        for server in self._servers:
            server.reset()

    def get_logs(self):
        logs = []
        for server in self._servers:
            logs += server.get_logs()
        return logs


def _install():
    kazoo_common.ZookeeperCluster = Cluster
    kazoo_common.ManagedZooKeeper = Member
    kazoo_harness.ZookeeperCluster = Cluster


def _cleanup():
    with _MEMBERS_LOCK:
        members = list(_MEMBERS)
    for member in members:
        try:
            member.destroy()
        except Exception:
            pass


def backend_problem():
    """Why the chosen backend cannot run here, or None."""
    if BACKEND not in BACKENDS:
        return "KAZOO_BACKEND=%s: must be one of %s" % (
            BACKEND, ", ".join(BACKENDS))
    if BACKEND == "ferrozk":
        if not os.path.isfile(FERROZK_BIN):
            return (
                "ferrozk binary %s not found: build it "
                "(cargo build --release) or set FERROZK_BIN" % FERROZK_BIN
            )
        if not os.access(FERROZK_BIN, os.X_OK):
            return "ferrozk binary %s is not executable" % FERROZK_BIN
    else:
        if shutil.which("java") is None:
            return "java not found (apt-get install -y zookeeper)"
        if not os.path.isfile(ZK_JAR):
            return "%s not found (apt-get install -y zookeeper)" % ZK_JAR
    return None


_install()
atexit.register(_cleanup)


def pytest_configure(config):
    problem = backend_problem()
    if problem:
        raise pytest.UsageError(problem)


def pytest_report_header(config):
    where = FERROZK_BIN if BACKEND == "ferrozk" else "QuorumPeerMain"
    return "kazoo backend: %s (%s), cluster size %s, client ports from %s" % (
        BACKEND,
        where,
        os.environ.get("ZOOKEEPER_CLUSTER_SIZE", "3"),
        os.environ.get("ZOOKEEPER_PORT_OFFSET", "20000"),
    )


def pytest_unconfigure(config):
    _cleanup()
    # Clients that a test left running now log "Connection dropped" while
    # the interpreter exits; keep that out of the lines after the summary.
    logging.getLogger("kazoo").addHandler(logging.NullHandler())


if __name__ == "__main__":
    # `python3 kazoo_backend.py check`: exit 2 with a message if the backend
    # cannot run here.
    problem = backend_problem()
    if problem:
        sys.stderr.write(problem + "\n")
        sys.exit(2)
