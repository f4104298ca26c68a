#!/usr/bin/env bash
# Side-by-side benchmark of ferrozk and Apache ZooKeeper 3.8.0 on this machine, same client,
# same run, fsync on for both. Installs ZooKeeper (Debian) if missing, builds ferrozk, runs
# `ferrozk bench` workloads and the C client's load_gen against each server, and writes the
# table of ferrozk/ZooKeeper ratios into bench/README.md (between the RESULTS markers).
#
#   bash bench/compare.sh                 # default: 10 s per workload
#   BENCH_SECONDS=5 bash bench/compare.sh # quicker
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f /usr/share/java/zookeeper.jar ] || [ ! -x /usr/lib/zookeeper/bin/load_gen ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq zookeeper zookeeper-bin >/dev/null
fi
cargo build --release --quiet
exec python3 bench/compare.py "$@"
