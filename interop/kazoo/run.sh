#!/usr/bin/env bash
# Run kazoo's own test suite (kazoo 2.11, installed from PyPI) against ferrozk
# or Apache ZooKeeper servers launched by kazoo_backend.py. See README.md.
#
#   KAZOO_BACKEND=ferrozk|zookeeper  (default ferrozk)
#   ZOOKEEPER_CLUSTER_SIZE=N         (default 1)
#   FERROZK_BIN=path                 (default <repo>/target/release/ferrozk)
#   extra arguments go to pytest, e.g.  bash run.sh -k test_lock
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HERE/../.." && pwd)"
PYTHON="${PYTHON:-python3}"

export KAZOO_BACKEND="${KAZOO_BACKEND:-ferrozk}"
export ZOOKEEPER_CLUSTER_SIZE="${ZOOKEEPER_CLUSTER_SIZE:-1}"
export ZOOKEEPER_PORT_OFFSET="${ZOOKEEPER_PORT_OFFSET:-20000}"
# kazoo's harness needs a version (>= 3.5 turns on the reconfig, 4lw and
# super-user settings); ferrozk speaks ZooKeeper 3.8's protocol.
export ZOOKEEPER_VERSION="${ZOOKEEPER_VERSION:-3.8.0}"
export FERROZK_BIN="${FERROZK_BIN:-$REPO_ROOT/target/release/ferrozk}"

say() { echo "kazoo/run.sh: $*" >&2; }

# --- Python packages ---------------------------------------------------------
if ! "$PYTHON" - <<'EOF' 2>/dev/null
from importlib.metadata import version
import jks, objgraph, OpenSSL, pytest  # noqa: F401  (the harness imports them)
assert version("kazoo").startswith("2.11."), version("kazoo")
assert tuple(int(x) for x in version("pyopenssl").split(".")[:2]) < (24, 3)
EOF
then
    say "installing kazoo 2.11 and the test suite's dependencies"
    "$PYTHON" -m pip install -q "kazoo==2.11.*" pytest pyjks objgraph "pyopenssl<24.3"
fi

# --- the backend -------------------------------------------------------------
case "$KAZOO_BACKEND" in
ferrozk)
    if [[ ! -x "$FERROZK_BIN" ]]; then
        say "ferrozk binary $FERROZK_BIN not found or not executable;"
        say "build it with 'cargo build --release' or set FERROZK_BIN"
        exit 2
    fi
    FERROZK_BIN="$(cd "$(dirname "$FERROZK_BIN")" && pwd)/$(basename "$FERROZK_BIN")"
    ;;
zookeeper)
    if [[ ! -f /usr/share/java/zookeeper.jar ]] || ! command -v java >/dev/null; then
        say "installing Apache ZooKeeper from Debian"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zookeeper zookeeper-bin >/dev/null
    fi
    ;;
*)
    say "KAZOO_BACKEND must be ferrozk or zookeeper, not '$KAZOO_BACKEND'"
    exit 2
    ;;
esac

# --- pytest ------------------------------------------------------------------
SITE="$("$PYTHON" -c 'import kazoo, os; print(os.path.dirname(os.path.dirname(kazoo.__file__)))')"

deselect=()
if [[ "$ZOOKEEPER_CLUSTER_SIZE" == 1 ]]; then
    while read -r line; do
        line="${line%%#*}"
        line="${line//[[:space:]]/}"
        [[ -n "$line" ]] && deselect+=(--deselect "$line")
    done <"$HERE/needs-ensemble.txt"
fi

# Which tests, relative to site-packages (a file, a file::Class, ...).
read -r -a targets <<<"${KAZOO_TESTS:-kazoo/tests}"

# The suite changes its behaviour when CI is set (it then trusts
# ZOOKEEPER_VERSION instead of asking the server, runs a version check and
# sleeps longer); keep runs the same everywhere. The two variables after it
# are set and cleared by individual tests.
unset CI ZOOKEEPER_JAAS_AUTH ZOOKEEPER_LOCAL_SESSION_RO

# Node ids are relative to site-packages (--rootdir), so the deselect list and
# -k work the same on every machine; no cache is written there. pytest runs in
# site-packages so that it prints those node ids as they are: give file paths
# in extra pytest options (--junitxml=...) as absolute paths.
export PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}"
cd "$SITE"
exec "$PYTHON" -m pytest \
    -c "$HERE/pytest.ini" \
    --rootdir "$SITE" \
    --confcutdir "$SITE/kazoo" \
    -p no:cacheprovider \
    -p kazoo_backend \
    "${deselect[@]}" \
    "${targets[@]}" \
    "$@"
