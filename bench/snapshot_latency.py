"""p99 write latency while snapshots are being written vs without (issue 3): a tree of N znodes
(100 B) is written, then the same open-loop setData load (`ferrozk bench --rate`) runs twice on
it: once with snapCount so large that no snapshot is taken, once with snapCount small enough
that a snapshot of the whole tree is being built most of the time. Run:
python3 bench/snapshot_latency.py [N] [RATE]   (defaults 1,000,000 and 4,000 writes/s)"""
import json, os, shutil, signal, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import FERROZK, free_port, ruok  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
RATE = int(sys.argv[2]) if len(sys.argv) > 2 else 4000
SECONDS = 20


def start(d, port, snap_count):
    cfg = os.path.join(d, "zoo.cfg")
    with open(cfg, "w") as f:
        f.write(f"tickTime=2000\ndataDir={d}/data\nclientPort={port}\nclientPortAddress=127.0.0.1\n"
                f"maxClientCnxns=0\nsnapCount={snap_count}\n4lw.commands.whitelist=*\n")
    p = subprocess.Popen([FERROZK, "server", cfg], stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "server.log"), "a"))
    while not ruok(port):
        time.sleep(0.05)
    return p


def bench(port, *args):
    out = subprocess.run([FERROZK, "bench", "--servers", f"127.0.0.1:{port}", "--json", "--quiet", *args],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main():
    d = tempfile.mkdtemp(prefix="snaplat-")
    port = free_port()
    p = start(d, port, 10_000_000)
    bench(port, "--workload", "create", "--count", str(N), "--sessions", "8", "--inflight", "16", "--no-warmup")
    p.send_signal(signal.SIGTERM); p.wait(60)
    results = {}
    for label, snap_count in (("no snapshot", 10_000_000), ("snapshots running", RATE * 2)):
        p = start(d, port, snap_count)
        r = bench(port, "--workload", "set", "--rate", str(RATE), "--duration", str(SECONDS), "--sessions", "8")
        log = open(os.path.join(d, "server.log")).read()
        r["snapshots"] = log.count("snapshot written")
        results[label] = r
        p.send_signal(signal.SIGTERM); p.wait(60)
        with open(os.path.join(d, "server.log"), "w"):
            pass
    shutil.rmtree(d, ignore_errors=True)
    a, b = results["no snapshot"], results["snapshots running"]
    print(f"| setData at {RATE}/s, open loop, {N:,} znodes | p50 ms | p99 ms | p99.9 ms | max ms | snapshots written |")
    print("|---|---|---|---|---|---|")
    for label, r in results.items():
        l = r["latency_ms"]
        print(f"| {label} | {l['p50']:.3f} | {l['p99']:.3f} | {l['p999']:.3f} | {l['max']:.1f} | {r['snapshots']} |")
    print(f"\np99 with snapshots / without: {b['latency_ms']['p99'] / a['latency_ms']['p99']:.2f} (target: at most 3)")


if __name__ == "__main__":
    main()
