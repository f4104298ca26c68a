#!/usr/bin/env bash
# node-zookeeper-client 1.1.3 (npm) against ferrozk or Apache ZooKeeper. See ../README.md.
#   CLIENTS_BACKEND=ferrozk|zookeeper (default ferrozk)   FERROZK_LOG=debug   CLIENTS_KEEP=1
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CLIENT_NAME=node PORT_LO=27040 PORT_HI=27059
source "$HERE/../lib/server.sh"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "== installing nodejs npm"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
if [ ! -f "$HERE/node_modules/node-zookeeper-client/package.json" ]; then
  echo "== npm install (node-zookeeper-client)"
  (cd "$HERE" && npm install --no-audit --no-fund --silent)
fi

start_server
printf '#!/usr/bin/env bash\nexec bash %q %q restart\n' "$CLIENTS_LIB/restart.sh" "$WORK" >"$WORK/restart-server.sh"
rc=0
node "$HERE/test.js" "127.0.0.1:$PORT" "$WORK/restart-server.sh" || rc=$?
[ "$rc" = 0 ] || CLIENTS_FAILED=1
exit "$rc"
