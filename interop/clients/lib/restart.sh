#!/usr/bin/env bash
# restart.sh WORK start|stop|restart — (re)start the server that lib/server.sh set up in WORK
# (command in WORK/server.cmd, port in WORK/server.port, pid kept in WORK/server.pid, log
# appended to WORK/server.log). Client programs call "restart" to test reconnection.
set -u
WORK="$1"; what="${2:-restart}"
PORT="$(cat "$WORK/server.port")"
four_letter() { ( exec 3<>"/dev/tcp/127.0.0.1/$1" && printf '%s' "$2" >&3 && timeout 3 cat <&3 ) 2>/dev/null || true; }
stop() {
  [ -f "$WORK/server.pid" ] || return 0
  local pid; pid="$(cat "$WORK/server.pid")"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$WORK/server.pid"
}
start() {
  echo "==== start $(date +%T.%N)" >>"$WORK/server.log"
  setsid bash -c "exec $(cat "$WORK/server.cmd")" >>"$WORK/server.log" 2>&1 </dev/null &
  echo $! >"$WORK/server.pid"
  local pid=$! i
  for ((i = 0; i < 300; i++)); do
    if [ "$(four_letter "$PORT" ruok)" = imok ]; then return 0; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "server on port $PORT did not answer ruok; its log:" >&2
  tail -n 40 "$WORK/server.log" >&2
  return 1
}
case "$what" in
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  *) echo "usage: restart.sh WORK start|stop|restart" >&2; exit 2 ;;
esac
