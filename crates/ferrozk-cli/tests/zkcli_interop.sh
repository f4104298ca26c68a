#!/usr/bin/env bash
# `ferrozk cli` in place of Apache's zkCli.sh. Against a fresh Apache ZooKeeper 3.8.0 and a fresh
# ferrozk server, runs with `ferrozk cli`
#   - interop/zkcli/script.zk (312 commands), compared with interop/zkcli/expected.txt, zkCli.sh's
#     own transcript against Apache;
#   - edge.zk here (zkCli's parsing and messages), compared with edge-expected.txt, likewise
#     zkCli.sh's transcript against Apache.
# Uses interop/zkcli/zkcli_driver.py unchanged (through its ZKCLI variable), so the driving and
# the normalisation are exactly those of the zkCli test.
#
#   crates/ferrozk-cli/tests/zkcli_interop.sh               run and compare, exit 1 on a difference
#   crates/ferrozk-cli/tests/zkcli_interop.sh --regen-edge  rewrite edge-expected.txt with zkCli.sh
#
# Environment:
#   FERROZK_BIN        the ferrozk binary (default <repo>/target/release/ferrozk); its `cli` is the
#                      client under test and its `server` the ferrozk backend
#   ZKCLI_BACKENDS     which servers to run against (default "apache ferrozk")
#   ZKCLI_PORT_LO/HI   client ports to pick from (default 26000..26099)
#   ZK_KEEP=1          keep the work directory (raw transcripts, server logs)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
ZKDIR="$ROOT/interop/zkcli"
FERROZK_BIN="${FERROZK_BIN:-$ROOT/target/release/ferrozk}"
BACKENDS="${ZKCLI_BACKENDS:-apache ferrozk}"
PORT_LO="${ZKCLI_PORT_LO:-26000}" PORT_HI="${ZKCLI_PORT_HI:-26099}"
ZK_CP="/etc/zookeeper/conf:/usr/share/java/zookeeper.jar:/usr/share/java/*"
REGEN=0
[ "${1:-}" = "--regen-edge" ] && { REGEN=1; BACKENDS=apache; }

[ "$REGEN" = 1 ] || [ -x "$FERROZK_BIN" ] || { echo "ferrozk binary not found at $FERROZK_BIN (build it, or set FERROZK_BIN)" >&2; exit 1; }
case " $BACKENDS " in
  *" apache "*)
    if [ ! -f /usr/share/java/zookeeper.jar ] || [ ! -x /usr/share/zookeeper/bin/zkCli.sh ] || ! command -v java >/dev/null; then
      echo "== installing Debian's zookeeper package"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq && apt-get install -y -qq zookeeper >/dev/null
    fi ;;
esac

WORK="$(mktemp -d /tmp/ferrozk-cli-interop.XXXXXX)"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  if [ "${ZK_KEEP:-0}" = 1 ]; then echo "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# The driver starts "$ZKCLI -server host:port": a one-line wrapper makes that `ferrozk cli`.
printf '#!/bin/sh\nexec "%s" cli "$@"\n' "$FERROZK_BIN" >"$WORK/ferrozk-zkcli"
chmod +x "$WORK/ferrozk-zkcli"

# shellcheck source=../../../interop/lib/standalone.sh
source "$ROOT/interop/lib/standalone.sh"

# run_one NAME BACKEND PORT CLIENT SCRIPT EXPECTED: a fresh server, the script, the comparison
passed=0 failed=0
run_one() {
  local name=$1 backend=$2 port=$3 client=$4 script=$5 expected=$6 rc=0
  echo "== $name: $(basename "$script") against $backend on 127.0.0.1:$port"
  start_server "$name" "$backend" "$port" enforceQuota=true
  ZKCLI="$client" python3 "$ZKDIR/zkcli_driver.py" run "127.0.0.1:$port" "$script" "$WORK/$name.raw" || rc=$?
  stop_server
  python3 "$ZKDIR/zkcli_driver.py" normalize "$WORK/$name.raw" >"$WORK/$name.txt"
  [ "$rc" = 0 ] || echo "   the client did not get through the script (see the end of the diff)"
  if [ -z "$expected" ]; then return 0; fi
  if diff -u --label "zkCli.sh vs apache ($(basename "$expected"))" --label "ferrozk cli vs $backend" \
      "$expected" "$WORK/$name.txt" >"$WORK/$name.diff"; then
    echo "   transcripts equal ($(grep -c '^> ' "$WORK/$name.txt") commands)"
    passed=$((passed + 1))
  else
    cat "$WORK/$name.diff"
    echo "   transcripts differ; raw transcript in $WORK/$name.raw"
    ZK_KEEP=1
    failed=$((failed + 1))
  fi
}

port=$PORT_LO
if [ "$REGEN" = 1 ]; then
  port="$(free_port "$port")"
  run_one edge-zkcli apache "$port" /usr/share/zookeeper/bin/zkCli.sh "$HERE/edge.zk" ""
  cp "$WORK/edge-zkcli.txt" "$HERE/edge-expected.txt"
  echo "wrote $HERE/edge-expected.txt"
  exit 0
fi
for backend in $BACKENDS; do
  port="$(free_port "$port")"
  run_one "script-vs-$backend" "$backend" "$port" "$WORK/ferrozk-zkcli" "$ZKDIR/script.zk" "$ZKDIR/expected.txt"
  port="$(free_port $((port + 1)))"
  run_one "edge-vs-$backend" "$backend" "$port" "$WORK/ferrozk-zkcli" "$HERE/edge.zk" "$HERE/edge-expected.txt"
  port=$((port + 1))
done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
