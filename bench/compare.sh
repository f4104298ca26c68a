#!/usr/bin/env bash
# Side-by-side benchmark of ferrozk and Apache ZooKeeper 3.8.0 on this machine, same client,
# same run, fsync on for both. Installs ZooKeeper (Debian) if missing, builds ferrozk, runs
# `ferrozk bench` workloads and the C client's load_gen against each server, the lock recipe
# against Redis's lock (bench/redis_lock.py), and writes the table of ferrozk/ZooKeeper ratios
# into bench/README.md (between the RESULTS markers).
#
#   bash bench/compare.sh                 # default: 10 s per workload, about 6 minutes
#   BENCH_SECONDS=5 bash bench/compare.sh # quicker
#   CARGO_TARGET_DIR=... or FERROZK_BIN=... to build into / use another target directory
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
apt_updated=
apt_install() {
  [ -n "$apt_updated" ] || { apt-get update -qq; apt_updated=1; }
  apt-get install -y -qq "$@" >/dev/null
}
if [ ! -f /usr/share/java/zookeeper.jar ] || [ ! -x /usr/lib/zookeeper/bin/load_gen ]; then
  apt_install zookeeper zookeeper-bin
fi
command -v redis-server >/dev/null || apt_install redis-server
if ! python3 -c "import redis" 2>/dev/null; then
  # As interop/ installs kazoo; a Debian system Python refuses without the flag.
  python3 -m pip install -q "redis==5.*" || python3 -m pip install -q --break-system-packages "redis==5.*"
fi
cargo build --release --quiet
export FERROZK_BIN="${FERROZK_BIN:-${CARGO_TARGET_DIR:-target}/release/ferrozk}"
exec python3 bench/compare.py "$@"
