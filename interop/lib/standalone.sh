# Sourced by the shell tests that run one standalone server at a time, Apache ZooKeeper 3.8.0
# (Debian's) or ferrozk: interop/zkcli/run.sh, interop/cclient/run.sh and
# crates/ferrozk-cli/tests/zkcli_interop.sh. (interop/clients/lib/server.sh does the same for
# the client-library programs, with restarts; Python tests use interop/lib/ensemble.py.)
#
# Expects: WORK (a work directory), FERROZK_BIN, ZK_CP (the JVM class path), PORT_HI.
# Sets SERVER_PID.

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() { # FROM: the first port in FROM..PORT_HI that nothing listens on
  local p
  for ((p = $1; p <= PORT_HI; p++)); do port_busy "$p" || { echo "$p"; return 0; }; done
  echo "no free port in $1..$PORT_HI" >&2; return 1
}

four_letter() { # PORT WORD: the server's answer, or nothing
  ( exec 3<>"/dev/tcp/127.0.0.1/$1" && printf '%s' "$2" >&3 && timeout 3 cat <&3 ) 2>/dev/null || true
}

# start_server NAME KIND PORT [ZOO_CFG_LINES]: a fresh KIND (apache or ferrozk) server with its
# own dataDir under $WORK/NAME, its log in $WORK/NAME/server.log; returns once it answers ruok.
start_server() {
  local name=$1 kind=$2 port=$3 extra=${4:-} dir="$WORK/$1"
  mkdir -p "$dir/data"
  cat >"$dir/zoo.cfg" <<CFG
tickTime=2000
dataDir=$dir/data
clientPort=$port
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=*
extendedTypesEnabled=true
$extra
CFG
  if [ "$kind" = apache ]; then
    java -cp "$ZK_CP" -Dzookeeper.extendedTypesEnabled=true \
      org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/zoo.cfg" >"$dir/server.log" 2>&1 &
  else
    "$FERROZK_BIN" server "$dir/zoo.cfg" >"$dir/server.log" 2>&1 &
  fi
  SERVER_PID=$!
  local i
  for ((i = 0; i < 300; i++)); do
    if [ "$(four_letter "$port" ruok)" = imok ]; then return 0; fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
    sleep 0.2
  done
  echo "$kind server on port $port did not answer ruok with imok; its log:" >&2
  tail -n 40 "$dir/server.log" >&2
  return 1
}

stop_server() {
  if [ -n "${SERVER_PID:-}" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
}
