#!/usr/bin/env bash
# zkCli differential test: Apache's own zkCli.sh runs script.zk against a fresh Apache ZooKeeper
# 3.8.0 and against a fresh second backend (ferrozk by default); the normalised transcripts must
# be equal. See README.md.
#
#   interop/zkcli/run.sh            run both, diff, exit 1 on any difference
#   interop/zkcli/run.sh --regen    run Apache only and rewrite expected.txt
#
# Environment:
#   ZK_BACKEND=ferrozk|apache   the second backend (default ferrozk; apache = Apache against itself)
#   ZK_REFERENCE=apache|expected  where the reference transcript comes from (default apache: a live
#                               run; expected: the stored expected.txt, which saves one JVM)
#   FERROZK_BIN                 default <repo>/target/release/ferrozk
#   ZK_KEEP=1                   keep the work directory (transcripts, server logs)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
FERROZK_BIN="${FERROZK_BIN:-$ROOT/target/release/ferrozk}"
BACKEND="${ZK_BACKEND:-ferrozk}"
REFERENCE="${ZK_REFERENCE:-apache}"
ZKCLI_SH=/usr/share/zookeeper/bin/zkCli.sh
ZK_CP="/etc/zookeeper/conf:/usr/share/java/zookeeper.jar:/usr/share/java/*"
PORT_LO=22000 PORT_HI=22049
REGEN=0
[ "${1:-}" = "--regen" ] && REGEN=1

case "$BACKEND" in ferrozk|apache) ;; *) echo "ZK_BACKEND must be ferrozk or apache" >&2; exit 2 ;; esac
case "$REFERENCE" in apache|expected) ;; *) echo "ZK_REFERENCE must be apache or expected" >&2; exit 2 ;; esac

# ---- what this test needs
if [ ! -x "$ZKCLI_SH" ] || [ ! -f /usr/share/java/zookeeper.jar ] || ! command -v java >/dev/null; then
  echo "== installing Debian's zookeeper package"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq zookeeper >/dev/null
fi
command -v python3 >/dev/null || { apt-get update -qq && apt-get install -y -qq python3 >/dev/null; }
if [ "$BACKEND" = ferrozk ] && [ "$REGEN" = 0 ] && [ ! -x "$FERROZK_BIN" ]; then
  echo "ferrozk binary not found at $FERROZK_BIN (build it, or set FERROZK_BIN)" >&2
  exit 1
fi

WORK="$(mktemp -d /tmp/ferrozk-zkcli.XXXXXX)"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  if [ "${ZK_KEEP:-0}" = 1 ]; then echo "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# shellcheck source=../lib/standalone.sh
source "$ROOT/interop/lib/standalone.sh"

# transcript NAME KIND PORT: run script.zk on a fresh server, leave $WORK/NAME.txt (normalised)
transcript() {
  local name=$1 kind=$2 port=$3 rc=0
  echo "== $name: $kind server on 127.0.0.1:$port"
  start_server "$name" "$kind" "$port" enforceQuota=true
  CLIENT_JVMFLAGS="${CLIENT_JVMFLAGS:--XX:TieredStopAtLevel=1 -Xmx256m}" ZKCLI="$ZKCLI_SH" \
    python3 "$HERE/zkcli_driver.py" run "127.0.0.1:$port" "$HERE/script.zk" "$WORK/$name.raw" || rc=$?
  stop_server
  python3 "$HERE/zkcli_driver.py" normalize "$WORK/$name.raw" >"$WORK/$name.txt"
  if [ "$rc" != 0 ]; then
    echo "   zkCli did not get through the script (see the end of the diff)"
  fi
  echo "   $(grep -c '^> ' "$WORK/$name.txt") commands, $(wc -l <"$WORK/$name.txt") lines"
}

P1="$(free_port "$PORT_LO")"
if [ "$REGEN" = 1 ]; then
  transcript reference apache "$P1"
  cp "$WORK/reference.txt" "$HERE/expected.txt"
  echo "wrote $HERE/expected.txt"
  exit 0
fi

if [ "$REFERENCE" = apache ]; then
  transcript reference apache "$P1"
  if ! cmp -s "$WORK/reference.txt" "$HERE/expected.txt"; then
    echo "   note: Apache's transcript differs from expected.txt (script changed? rerun with --regen):"
    diff -u "$HERE/expected.txt" "$WORK/reference.txt" | head -n 40 || true
  fi
else
  cp "$HERE/expected.txt" "$WORK/reference.txt"
fi
P2="$(free_port $((P1 + 1)))"
transcript "$BACKEND" "$BACKEND" "$P2"

if diff -u --label "apache-3.8.0" --label "$BACKEND" "$WORK/reference.txt" "$WORK/$BACKEND.txt" >"$WORK/diff.txt"; then
  echo "zkcli: transcripts equal ($(grep -c '^> ' "$WORK/reference.txt") commands)"
  echo "1 passed, 0 failed"
  exit 0
fi
cat "$WORK/diff.txt"
echo "zkcli: transcripts differ ($(grep -c '^[-+][^-+]' "$WORK/diff.txt") lines); raw transcripts and server logs in $WORK"
ZK_KEEP=1
echo "0 passed, 1 failed"
exit 1
