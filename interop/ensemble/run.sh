#!/usr/bin/env bash
# Fault test of ferrozk ensembles (see faults.py): a 3-member and a 5-member ensemble, each
# with members killed, paused and cut off while kazoo clients check ZooKeeper's guarantees.
# `--flood` (as an extra argument) adds two clients flooding writes; see faults.py for why CI
# does not run it yet.
#   FERROZK_BIN (default <repo>/target/debug/ferrozk), FAULT_SECONDS (default 40),
#   FAULT_SEED (default: a fresh one per run, printed), extra arguments go to faults.py.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
export FERROZK_BIN="${FERROZK_BIN:-$REPO/target/debug/ferrozk}"
python3 -c "import kazoo" 2>/dev/null || python3 -m pip install -q "kazoo==2.11.*"
seconds="${FAULT_SECONDS:-40}"
seed=()
[ -n "${FAULT_SEED:-}" ] && seed=(--seed "$FAULT_SEED")
python3 "$HERE/faults.py" --members 3 --seconds "$seconds" "${seed[@]}" "$@"
python3 "$HERE/faults.py" --members 5 --seconds "$seconds" "${seed[@]}" "$@"
