#!/usr/bin/env bash
# ZooKeeper data directories made by Apache ZooKeeper 3.8.0 (Debian's), read back by
# `ferrozk import --dry-run --dump` and compared field for field (see fixtures.py).
#   FERROZK_BIN (default <repo>/target/debug/ferrozk), ZKIMPORT_SEEDS (default 20),
#   ZKIMPORT_SEED (first seed; default a fresh one per run, printed with each seed).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
export FERROZK_BIN="${FERROZK_BIN:-$REPO/target/debug/ferrozk}"
python3 -c "import kazoo" 2>/dev/null || python3 -m pip install -q "kazoo==2.11.*"
exec python3 "$HERE/fixtures.py" --seeds "${ZKIMPORT_SEEDS:-20}" "$@"
