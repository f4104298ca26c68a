#!/usr/bin/env bash
# Raw-wire reproductions (python3, no client library) of the pipelining differences found by
# the client tests. See ../README.md.
#   CLIENTS_BACKEND=ferrozk|zookeeper (default ferrozk)   FERROZK_LOG=debug   CLIENTS_KEEP=1
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CLIENT_NAME=repro PORT_LO=27060 PORT_HI=27079
source "$HERE/../lib/server.sh"
start_server
rc=0
python3 "$HERE/pipelining.py" "127.0.0.1:$PORT" || rc=$?
[ "$rc" = 0 ] || CLIENTS_FAILED=1
exit "$rc"
