"""Lock hand-offs through Redis, the non-durable lock people pick instead of ZooKeeper because it
is faster: N processes contend for one redis-py `Lock` (blocking `acquire()` with redis-py's
default settings: no expiry, a retry every 0.1 s while the lock is taken), each looping
acquire / release, for the same warm-up and duration as `ferrozk bench --workload lock`.

    python3 bench/redis_lock.py --processes 8 --seconds 10 [--json]

Starts its own redis-server (Debian's) on a free loopback port with no config file, so with the
compiled-in defaults (RDB snapshots by the default save rules, no AOF): only --port, --bind
127.0.0.1 and --dir (a temp directory) are given. Prints acquire+release cycles per second,
how many of them were hand-offs to another process (redis-py's lock is not fair: the holder
often takes it again before a waiter's next retry), acquire latency (asking until holding),
and mutual-exclusion violations (a shared counter in the critical section; must be 0).
"""
import argparse, json, multiprocessing as mp, os, shutil, socket, statistics, subprocess, sys, tempfile, time


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import free_port  # noqa: E402


def start_redis():
    d = tempfile.mkdtemp(prefix="bench-redis-")
    port = free_port()
    p = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", d],
                         stdout=open(os.path.join(d, "redis.log"), "w"), stderr=subprocess.STDOUT)
    deadline = time.time() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    break
        except OSError:
            pass
        if time.time() > deadline or p.poll() is not None:
            raise SystemExit(f"redis-server did not start; see {d}/redis.log")
        time.sleep(0.05)
    version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()[2]
    return p, port, d, version.removeprefix("v=")


def contender(i, port, name, t_measure, t_end, holders, last_owner, violations, out):
    import redis
    r = redis.Redis(host="127.0.0.1", port=port)
    lock = r.lock(name)  # redis-py's defaults: timeout=None, sleep=0.1, blocking=True
    cycles = changes = 0
    latencies = []
    while time.monotonic() < t_end:
        asked = time.monotonic()
        lock.acquire()
        got = time.monotonic()
        with holders.get_lock():
            holders.value += 1
            if holders.value != 1:
                violations.value += 1
            changed = last_owner.value not in (-1, i)
            last_owner.value = i
        os.sched_yield()  # let another holder, if there were one, show up in `holders`
        with holders.get_lock():
            holders.value -= 1
        lock.release()
        if t_measure <= asked and got < t_end:
            cycles += 1
            changes += changed
            latencies.append(got - asked)
    out.put((i, cycles, changes, latencies))


def run(processes, seconds, warmup=1.0, port=None):
    ctx = mp.get_context("fork")
    holders, last_owner, violations = ctx.Value("i", 0), ctx.Value("i", -1), ctx.Value("i", 0)
    out = ctx.Queue()
    name = f"ferrozk-bench-lock-{os.getpid()}"
    t_start = time.monotonic() + 0.5  # the processes start together after they are forked
    t_measure, t_end = t_start + warmup, t_start + warmup + seconds
    procs = [ctx.Process(target=contender, args=(i, port, name, t_measure, t_end, holders, last_owner, violations, out))
             for i in range(processes)]
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    cycles = sum(r[1] for r in results)
    changes = sum(r[2] for r in results)
    lat = sorted(x for r in results for x in r[3])
    q = lambda f: 1000 * lat[min(len(lat) - 1, int(f * len(lat)))] if lat else 0.0
    return {"processes": processes, "seconds": seconds, "cycles": cycles, "throughput": cycles / seconds,
            "owner_changes": changes, "handoffs_per_s": changes / seconds,
            "per_process_cycles": sorted(r[1] for r in results), "violations": violations.value,
            "latency_ms": {"p50": q(0.5), "p99": q(0.99), "max": 1000 * lat[-1] if lat else 0.0,
                           "mean": 1000 * statistics.fmean(lat) if lat else 0.0}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--processes", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    server, port, d, version = start_redis()
    try:
        import redis
        r = run(a.processes, a.seconds, port=port)
        r["redis_server"], r["redis_py"] = version, redis.__version__
        r["server_config"] = "no config file (compiled-in defaults: RDB save rules, no AOF); --port, --bind 127.0.0.1, --dir tmp"
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(d, ignore_errors=True)
    if a.json:
        print(json.dumps(r))
    else:
        print(f"redis-server {r['redis_server']}, redis-py {r['redis_py']}, {r['processes']} processes, {a.seconds:g} s")
        print(f"  {r['throughput']:.0f} acquire+release/s, {r['handoffs_per_s']:.0f} hand-offs to another process/s")
        print(f"  per process: {r['per_process_cycles']}")
        print(f"  acquire latency p50 {r['latency_ms']['p50']:.3f} ms, p99 {r['latency_ms']['p99']:.3f} ms, "
              f"max {r['latency_ms']['max']:.3f} ms; exclusion violations {r['violations']}")
    if r["violations"]:
        raise SystemExit("mutual exclusion violated")


if __name__ == "__main__":
    main()
