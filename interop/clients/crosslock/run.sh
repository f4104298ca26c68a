#!/usr/bin/env bash
# Cross-client lock: ferrozk-client's Lock (Rust processes) and kazoo's Lock (Python processes)
# contend on one path; each holder does an unprotected read-increment-write of a counter file.
# Any overlap of two holders loses an update, so the final count must equal the total rounds.
#   CLIENTS_BACKEND=ferrozk|zookeeper (default ferrozk)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CLIENT_NAME=crosslock PORT_LO=27080 PORT_HI=27099
source "$HERE/../lib/server.sh"
python3 -c "import kazoo" 2>/dev/null || python3 -m pip install -q "kazoo==2.11.*"
(cd "$CLIENTS_ROOT" && cargo build -q -p ferrozk-client --example lock)
EXAMPLE="$CLIENTS_ROOT/target/debug/examples/lock"
start_server
COUNTER="$WORK/counter"
echo 0 > "$COUNTER"
ROUNDS=25
pids=()
for i in 1 2; do
  "$EXAMPLE" "127.0.0.1:$PORT" /crosslock "$ROUNDS" "$COUNTER" & pids+=($!)
  python3 "$HERE/kazoo_lock.py" "127.0.0.1:$PORT" /crosslock "$ROUNDS" "$COUNTER" & pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
got=$(cat "$COUNTER")
want=$((4 * ROUNDS))
if [ "$rc" = 0 ] && [ "$got" = "$want" ]; then
  echo "PASS 2 Rust + 2 kazoo lock holders, $want rounds: counter $got, no overlap"
  echo "1 passed, 0 failed"
else
  echo "FAIL counter $got, want $want (exit codes ok: $([ $rc = 0 ] && echo yes || echo no))"
  echo "0 passed, 1 failed"
  CLIENTS_FAILED=1
  exit 1
fi
