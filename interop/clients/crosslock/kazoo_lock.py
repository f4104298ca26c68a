"""kazoo Lock holder for the cross-client test: ROUNDS unprotected increments of COUNTER_FILE,
each while holding kazoo's Lock on PATH for LOCK_HOLD_MS (default 2)."""
import os, sys, time
from kazoo.client import KazooClient

hosts, path, rounds, counter = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
zk = KazooClient(hosts=hosts)
zk.start()
lock = zk.Lock(path, "kazoo")
for _ in range(rounds):
    with lock:
        n = int(open(counter).read().strip() or 0)
        time.sleep(float(os.environ.get("LOCK_HOLD_MS", "2")) / 1000)
        open(counter, "w").write(f"{n + 1}\n")
zk.stop()
