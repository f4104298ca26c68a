#!/usr/bin/env bash
# C client test: the ZooKeeper C client's own programs (cli_mt, load_gen from Debian's
# zookeeper-bin) against a fresh server; cclient_test.py checks what they print. See README.md.
#
#   interop/cclient/run.sh
#
# Environment:
#   ZK_BACKEND=ferrozk|apache   the server to test (default ferrozk; apache validates the test)
#   FERROZK_BIN                 default <repo>/target/release/ferrozk
#   LOADGEN_CHILDREN, LOADGEN_CYCLES   load_gen's size (default 300 children, 3 full cycles)
#   ZK_KEEP=1                   keep the work directory (server log)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
FERROZK_BIN="${FERROZK_BIN:-$ROOT/target/release/ferrozk}"
BACKEND="${ZK_BACKEND:-ferrozk}"
ZK_CP="/etc/zookeeper/conf:/usr/share/java/zookeeper.jar:/usr/share/java/*"
PORT_LO=22050 PORT_HI=22099

case "$BACKEND" in ferrozk|apache) ;; *) echo "ZK_BACKEND must be ferrozk or apache" >&2; exit 2 ;; esac

# ---- what this test needs
need=()
[ -x /usr/lib/zookeeper/bin/cli_mt ] && [ -x /usr/lib/zookeeper/bin/load_gen ] || need+=(zookeeper-bin)
if [ "$BACKEND" = apache ] && { [ ! -f /usr/share/java/zookeeper.jar ] || ! command -v java >/dev/null; }; then
  need+=(zookeeper)
fi
command -v python3 >/dev/null || need+=(python3)
command -v stdbuf >/dev/null || need+=(coreutils)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ "$BACKEND" = ferrozk ] && [ ! -x "$FERROZK_BIN" ]; then
  echo "ferrozk binary not found at $FERROZK_BIN (build it, or set FERROZK_BIN)" >&2
  exit 1
fi

WORK="$(mktemp -d /tmp/ferrozk-cclient.XXXXXX)"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  if [ "${ZK_KEEP:-0}" = 1 ]; then echo "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# shellcheck source=../lib/standalone.sh
source "$ROOT/interop/lib/standalone.sh"

PORT="$(free_port "$PORT_LO")"
echo "== $BACKEND server on 127.0.0.1:$PORT"
start_server server "$BACKEND" "$PORT"

rc=0
python3 "$HERE/cclient_test.py" "127.0.0.1:$PORT" || rc=$?
if [ "$rc" != 0 ]; then
  ZK_KEEP=1
  echo "cclient: FAILED against $BACKEND (server log: $WORK/server/server.log)"
fi
exit "$rc"
