#!/usr/bin/env bash
# The whole test suite, as CI and a newcomer run it: installs what it needs (Debian's
# ZooKeeper 3.8.0 and C client as the reference, kazoo and pytest from PyPI), builds ferrozk,
# runs the Rust tests, then every interop suite against real clients and Apache ZooKeeper.
#
#   bash test.sh            everything
#   bash test.sh rust       only the Rust tests
#   bash test.sh interop    only the interop suites
set -uo pipefail
cd "$(dirname "$0")"
what="${1:-all}"

need_apt=()
[ -f /usr/share/java/zookeeper.jar ] || need_apt+=(zookeeper)
[ -x /usr/lib/zookeeper/bin/cli_mt ] || need_apt+=(zookeeper-bin)
command -v java >/dev/null || need_apt+=(default-jre-headless)
command -v go >/dev/null || need_apt+=(golang-go)
[ -d /usr/share/gocode/src/github.com/samuel/go-zookeeper/zk ] || need_apt+=(golang-github-samuel-go-zookeeper-dev)
if [ "$what" != rust ] && [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing ${need_apt[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${need_apt[@]}" >/dev/null || { echo "apt-get failed"; exit 1; }
fi
if [ "$what" != rust ] && ! python3 -c "import kazoo, pytest" 2>/dev/null; then
  echo "== installing kazoo and pytest (pip)"
  python3 -m pip install -q "kazoo==2.11.*" pytest pyjks objgraph "pyopenssl<24.3" || { echo "pip failed"; exit 1; }
fi

passed=0
failed=0
failures=()
# Each suite's output is also kept, so that a failure's own lines can be printed again at the
# very end, where a reader of a long CI log looks first.
logs="$(mktemp -d "${TMPDIR:-/tmp}/ferrozk-test-logs.XXXXXX")"
step() {
  local name="$1"; shift
  echo
  echo "== $name: $*"
  local t0=$SECONDS log="$logs/$((passed + failed)).log"
  if "$@" 2>&1 | tee "$log"; then
    passed=$((passed + 1)); echo "== $name: ok ($((SECONDS - t0)) s)"
  else
    failed=$((failed + 1)); failures+=("$name"); echo "== $name: FAILED ($((SECONDS - t0)) s)"
    failed_logs+=("$name|$log")
  fi
}
failed_logs=()

if [ "$what" = all ] || [ "$what" = rust ]; then
  step "cargo fmt --check" cargo fmt --check
  step "cargo test" cargo test --workspace --quiet
  step "clippy (warnings are errors)" cargo clippy --workspace --all-targets --quiet -- -D warnings
fi
if [ "$what" = all ] || [ "$what" = interop ]; then
  # The debug build (already made by cargo test) serves the interop suites: their time goes
  # to Python and the JVM, and a second, release compile would cost CI minutes.
  if cargo build --quiet; then
    export FERROZK_BIN="$PWD/target/debug/ferrozk"
    step "kazoo suite" bash interop/kazoo/run.sh -q
    step "kazoo suite, 3-member ensemble" env ZOOKEEPER_CLUSTER_SIZE=3 bash interop/kazoo/run.sh -q
    step "ensemble faults (3 and 5 members)" bash interop/ensemble/run.sh
    step "differential vs ZooKeeper" bash interop/differential/run.sh
    step "zkCli.sh script" bash interop/zkcli/run.sh
    step "ferrozk cli vs zkCli.sh" bash crates/ferrozk-cli/tests/zkcli_interop.sh
    step "C client" bash interop/cclient/run.sh
    step "pipelining order (raw wire)" bash interop/clients/repro/run.sh
    step "Curator" bash interop/clients/curator/run.sh
    step "Curator ensemble tracking (3 members)" python3 interop/clients/curator/ensemble_tracking.py
    step "/zookeeper/config vs ZooKeeper (3 members)" python3 interop/ensemble/zkconfig_diff.py
    step "Go client" bash interop/clients/go/run.sh
    step "sessions through a lost quorum (kazoo, Go)" python3 interop/ensemble/quorum_return.py
    step "Node client" bash interop/clients/node/run.sh
    step "cross-client lock (Rust + kazoo)" bash interop/clients/crosslock/run.sh
    step "cross-client lock through leader failovers" python3 interop/clients/crosslock/failover.py
    step "cross-client lock through ZooKeeper failovers" python3 interop/clients/crosslock/failover.py --backend zookeeper
    step "recipes vs ZooKeeper" bash interop/recipes/run.sh
    step "ZooKeeper data directories read back (20 seeds)" bash interop/zkimport/run.sh
    step "live cutover from ZooKeeper and back (standalone, 3 members)" bash interop/zkimport/cutover.sh
  else
    failed=$((failed + 1)); failures+=("cargo build")
  fi
fi

for entry in "${failed_logs[@]}"; do
  echo
  echo "== last lines of the failed suite '${entry%%|*}':"
  tail -n 40 "${entry#*|}"
done
rm -rf "$logs"
echo
[ ${#failures[@]} -gt 0 ] && echo "failed: ${failures[*]}"
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
