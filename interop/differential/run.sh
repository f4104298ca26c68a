#!/usr/bin/env bash
# Differential test: the same seeded random ZooKeeper operation sequence
# against two servers (default: Apache ZooKeeper 3.8.0 from Debian vs
# ferrozk), compared after every operation. See README.md.
#
#   interop/differential/run.sh                      # ZooKeeper vs ferrozk, 5000 ops, random seed
#   interop/differential/run.sh --seed 42 --ops 20000
#   DIFF_BACKEND_B=zookeeper interop/differential/run.sh    # ZooKeeper vs ZooKeeper (self-check)
#   interop/differential/run.sh --disable list       # operation categories that can be switched off
#
# Environment: DIFF_BACKEND_A / DIFF_BACKEND_B (zookeeper | ferrozk | host:port),
# DIFF_SEED, DIFF_OPS, FERROZK_BIN (default <repo>/target/release/ferrozk),
# DIFF_PORT_BASE (default 21010), DIFF_ZK_LOG_LEVEL (default INFO).
# Command-line flags override the environment. Exit status: 0 no difference,
# 1 difference found, 2 setup or harness error.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
export FERROZK_BIN="${FERROZK_BIN:-$ROOT/target/release/ferrozk}"
A="${DIFF_BACKEND_A:-zookeeper}"
B="${DIFF_BACKEND_B:-ferrozk}"

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "run.sh: need root to run: $*" >&2; return 1; fi
}

uses_zk=0
for x in "$A" "$B" "$@"; do [ "$x" = zookeeper ] && uses_zk=1; done

if [ "$uses_zk" = 1 ] && [ ! -f /usr/share/java/zookeeper.jar ]; then
    echo "run.sh: installing Apache ZooKeeper from Debian (zookeeper package)" >&2
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q zookeeper
fi
if [ "$uses_zk" = 1 ] && ! command -v java >/dev/null; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q default-jre-headless
fi
if ! command -v python3 >/dev/null; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3
fi
# The client side is a small jute client in zkwire.py (Python standard
# library only), so there are no pip packages to install.
python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 7) else 1)' || {
    echo "run.sh: python3 >= 3.7 needed" >&2; exit 2; }

args=(--a "$A" --b "$B" --port-base "${DIFF_PORT_BASE:-21010}")
[ -n "${DIFF_SEED:-}" ] && args+=(--seed "$DIFF_SEED")
[ -n "${DIFF_OPS:-}" ] && args+=(--ops "$DIFF_OPS")

exec python3 -u "$HERE/difftest.py" "${args[@]}" "$@"
