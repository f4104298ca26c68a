# Sourced by interop/clients/*/run.sh: start one server (ferrozk or Apache
# ZooKeeper 3.8.0) on a free port in [PORT_LO, PORT_HI] and stop it on exit.
#
# Inputs (set before sourcing): PORT_LO, PORT_HI, CLIENT_NAME.
# Environment: CLIENTS_BACKEND=ferrozk|zookeeper (default ferrozk),
#              FERROZK_BIN (default <repo>/target/release/ferrozk),
#              FERROZK_LOG (passed through; e.g. debug), CLIENTS_KEEP=1 keeps the work dir.
# Outputs: BACKEND, PORT, WORK, SERVER_PID, SERVER_LOG; functions start_server, stop_server.

CLIENTS_LIB="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CLIENTS_ROOT="$(cd "$CLIENTS_LIB/../../.." && pwd)"
BACKEND="${CLIENTS_BACKEND:-ferrozk}"
# The programs expect 3.9 answers from ferrozk and 3.8 answers from the reference server.
export CLIENTS_BACKEND="$BACKEND"
FERROZK_BIN="${FERROZK_BIN:-$CLIENTS_ROOT/target/release/ferrozk}"
# Naming slf4j-log4j12 + log4j (not /usr/share/java/*) gives a server log.
ZK_SERVER_CP="/etc/zookeeper/conf:/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar"

case "$BACKEND" in ferrozk|zookeeper) ;; *) echo "CLIENTS_BACKEND must be ferrozk or zookeeper, not '$BACKEND'" >&2; exit 2 ;; esac

ensure_server_installed() {
  if [ "$BACKEND" = zookeeper ]; then
    if [ ! -f /usr/share/java/zookeeper.jar ] || ! command -v java >/dev/null; then
      echo "== installing Apache ZooKeeper from Debian" >&2
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zookeeper zookeeper-bin >/dev/null
    fi
  elif [ ! -x "$FERROZK_BIN" ]; then
    echo "ferrozk binary not found at $FERROZK_BIN (build it, or set FERROZK_BIN)" >&2
    exit 2
  fi
}

WORK="$(mktemp -d "/tmp/ferrozk-clients-${CLIENT_NAME}.XXXXXX")"
SERVER_PID=""
SERVER_LOG="$WORK/server.log"
CLIENTS_FAILED=0

stop_server() {
  # The server may have been restarted by restart.sh (then it is not our child).
  [ -f "$WORK/server.pid" ] && SERVER_PID="$(cat "$WORK/server.pid")"
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
    rm -f "$WORK/server.pid"
  fi
}
_clients_cleanup() {
  stop_server
  if [ "${CLIENTS_KEEP:-0}" = 1 ] || [ "$CLIENTS_FAILED" != 0 ]; then
    echo "work directory kept: $WORK (server log: $SERVER_LOG)" >&2
  else
    rm -rf "$WORK"
  fi
}
trap _clients_cleanup EXIT

_port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
four_letter() { # port word
  ( exec 3<>"/dev/tcp/127.0.0.1/$1" && printf '%s' "$2" >&3 && timeout 3 cat <&3 ) 2>/dev/null || true
}

start_server() {
  ensure_server_installed
  local p
  PORT=""
  for ((p = PORT_LO; p <= PORT_HI; p++)); do _port_busy "$p" || { PORT=$p; break; }; done
  [ -n "$PORT" ] || { echo "no free port in $PORT_LO..$PORT_HI" >&2; exit 2; }
  mkdir -p "$WORK/data"
  cat >"$WORK/zoo.cfg" <<CFG
tickTime=2000
initLimit=10
syncLimit=5
dataDir=$WORK/data
clientPort=$PORT
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=*
extendedTypesEnabled=true
maxClientCnxns=0
znode.container.checkIntervalMs=${CONTAINER_CHECK_MS:-1000}
CFG
  echo "== $BACKEND server on 127.0.0.1:$PORT (work dir $WORK)"
  # The command that (re)starts the server, for restart.sh as well.
  if [ "$BACKEND" = zookeeper ]; then
    printf '%q ' java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -cp "$ZK_SERVER_CP" \
      -Dzookeeper.extendedTypesEnabled=true -Dzookeeper.admin.enableServer=false \
      -Dznode.container.checkIntervalMs="${CONTAINER_CHECK_MS:-1000}" \
      -Dzookeeper.root.logger="${ZK_LOG_LEVEL:-INFO},CONSOLE" -Dzookeeper.console.threshold="${ZK_LOG_LEVEL:-INFO}" \
      org.apache.zookeeper.server.quorum.QuorumPeerMain "$WORK/zoo.cfg" >"$WORK/server.cmd"
  else
    printf '%q ' "$FERROZK_BIN" server "$WORK/zoo.cfg" >"$WORK/server.cmd"
  fi
  echo "$PORT" >"$WORK/server.port"
  bash "$CLIENTS_LIB/restart.sh" "$WORK" start || { CLIENTS_FAILED=1; exit 1; }
  SERVER_PID="$(cat "$WORK/server.pid")"
}
