#!/usr/bin/env bash
# 3-member ferrozk ensemble vs 3-member Apache ZooKeeper 3.8.0 ensemble, same machine, same
# client, fsync on: throughput, latency, CPU, RSS per member, and failover after SIGKILL of the
# leader. Results go to bench/README.md (ENSEMBLE markers). See bench/ensemble.py.
#   BENCH_SECONDS=8 FAILOVERS=3 bash bench/ensemble.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f /usr/share/java/zookeeper.jar ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq zookeeper >/dev/null
fi
python3 -c "import kazoo" 2>/dev/null || python3 -m pip install -q "kazoo==2.11.*"
cargo build --release --quiet
exec python3 bench/ensemble.py "$@"
