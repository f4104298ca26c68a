#!/usr/bin/env bash
# github.com/samuel/go-zookeeper (Debian package, GOPATH mode) against ferrozk or Apache
# ZooKeeper. See ../README.md.
#   CLIENTS_BACKEND=ferrozk|zookeeper (default ferrozk)   FERROZK_LOG=debug   CLIENTS_KEEP=1
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CLIENT_NAME=go PORT_LO=27020 PORT_HI=27039
source "$HERE/../lib/server.sh"

need=()
command -v go >/dev/null || need+=(golang-go)
[ -d /usr/share/gocode/src/github.com/samuel/go-zookeeper/zk ] || need+=(golang-github-samuel-go-zookeeper-dev)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# GOPATH mode against the Debian source tree; the build cache stays in the work dir.
export GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="${GOCACHE:-$HOME/.cache/ferrozk-clients-go}"
go build -o "$WORK/gointerop" "$HERE/main.go" || { echo "FAIL build"; echo "0 passed, 1 failed"; CLIENTS_FAILED=1; exit 1; }

start_server
printf '#!/usr/bin/env bash\nexec bash %q %q restart\n' "$CLIENTS_LIB/restart.sh" "$WORK" >"$WORK/restart-server.sh"
rc=0
GO_CLIENT_LOG="$WORK/client.log" "$WORK/gointerop" "127.0.0.1:$PORT" "$WORK/restart-server.sh" || rc=$?
[ "$rc" = 0 ] || CLIENTS_FAILED=1
exit "$rc"
