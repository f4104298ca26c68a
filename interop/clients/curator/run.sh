#!/usr/bin/env bash
# Apache Curator 5.4 (Debian jars) against ferrozk or Apache ZooKeeper. See ../README.md.
#   CLIENTS_BACKEND=ferrozk|zookeeper (default ferrozk)   FERROZK_LOG=debug   CLIENTS_KEEP=1
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CLIENT_NAME=curator PORT_LO=27000 PORT_HI=27019
source "$HERE/../lib/server.sh"

need=()
for pkg in libcurator-recipes-java libcurator-framework-java libcurator-client-java libzookeeper-java; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
command -v javac >/dev/null || need+=(default-jdk-headless)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

J=/usr/share/java
CP="$J/curator-recipes.jar:$J/curator-framework.jar:$J/curator-client.jar:$J/zookeeper.jar:$J/zookeeper-jute.jar:$J/guava.jar:$J/slf4j-api.jar:$J/slf4j-simple.jar"
mkdir -p "$WORK/classes"
javac -nowarn -d "$WORK/classes" -cp "$CP" "$HERE/CuratorInterop.java" 2>&1 | grep -v '^Note:' || true
[ -f "$WORK/classes/CuratorInterop.class" ] || { echo "FAIL compile"; echo "0 passed, 1 failed"; CLIENTS_FAILED=1; exit 1; }

start_server
printf '#!/usr/bin/env bash\nexec bash %q %q restart\n' "$CLIENTS_LIB/restart.sh" "$WORK" >"$WORK/restart-server.sh"
rc=0
# Curator/ZooKeeper client logs (warnings and up) go to client.log.
java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -cp "$WORK/classes:$CP" \
  -Dorg.slf4j.simpleLogger.defaultLogLevel="${CLIENT_LOG_LEVEL:-warn}" -Dorg.slf4j.simpleLogger.logFile="$WORK/client.log" \
  -Dorg.slf4j.simpleLogger.showDateTime=true -Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS \
  -Dzookeeper.extendedTypesEnabled=true \
  CuratorInterop "127.0.0.1:$PORT" "$WORK/restart-server.sh" || rc=$?
[ "$rc" = 0 ] || CLIENTS_FAILED=1
exit "$rc"
