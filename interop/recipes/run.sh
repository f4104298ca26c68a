#!/usr/bin/env bash
# The ferrozk-client recipe tests (crates/ferrozk-client/tests/recipes*.rs) against Apache
# ZooKeeper 3.8.0 (Debian): starts it on a free loopback port with a temporary data dir, runs
# the tests with FERROZK_TEST_ZK pointing at it (each test works under its own chroot), and
# stops it afterwards. Shows that the recipes rely on ZooKeeper's behaviour, not ferrozk's.
#
#   bash interop/recipes/run.sh            # extra arguments go to cargo test, e.g. -j1
#   CLIENTS_BACKEND=ferrozk bash interop/recipes/run.sh   # a ferrozk binary instead ($FERROZK_BIN)
# CARGO_TARGET_DIR is honoured as usual; CLIENTS_KEEP=1 keeps the work dir (server log).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export CLIENTS_BACKEND="${CLIENTS_BACKEND:-zookeeper}"
CLIENT_NAME=recipes PORT_LO=27100 PORT_HI=27119
source "$HERE/../clients/lib/server.sh"

tests=()
for f in "$CLIENTS_ROOT"/crates/ferrozk-client/tests/recipes*.rs; do
  tests+=(--test "$(basename "$f" .rs)")
done
# Compile before starting the server, so build time does not count against it.
(cd "$CLIENTS_ROOT" && cargo test -q -p ferrozk-client "${tests[@]}" --no-run "$@")
start_server
if (cd "$CLIENTS_ROOT" && FERROZK_TEST_ZK="127.0.0.1:$PORT" cargo test -p ferrozk-client "${tests[@]}" "$@"); then
  echo "PASS recipe tests against $BACKEND on 127.0.0.1:$PORT"
else
  echo "FAIL recipe tests against $BACKEND (server log: $SERVER_LOG)"
  CLIENTS_FAILED=1
  exit 1
fi
