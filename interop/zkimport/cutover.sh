#!/usr/bin/env bash
# Live cutover from Apache ZooKeeper 3.8.0 (Debian's) to ferrozk, standalone and on a 3-member
# ensemble (cutover.py), a member ahead of the others (diverged.py), and back (roundtrip.py). FERROZK_BIN (default <repo>/target/debug/ferrozk).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
export FERROZK_BIN="${FERROZK_BIN:-$REPO/target/debug/ferrozk}"
python3 -c "import kazoo" 2>/dev/null || python3 -m pip install -q "kazoo==2.11.*"
if ! command -v javac >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jdk-headless >/dev/null
fi
echo "== standalone"
python3 "$HERE/cutover.py"
echo "== 3 members, one stopped early"
python3 "$HERE/cutover.py" --ensemble
echo "== 3 members, one with transactions the others never got"
python3 "$HERE/diverged.py"
echo "== and back: ferrozk export, ZooKeeper starts on it"
python3 "$HERE/roundtrip.py"
echo "== and back on 3 members"
python3 "$HERE/roundtrip.py" --ensemble
