"""Import benchmark (issue 16): Apache ZooKeeper 3.8.0 writes a tree of N znodes (100-byte
values, written with `ferrozk bench`) and stops; then, on two copies of its data directory,
ZooKeeper starts again and ferrozk starts for the first time (importing ZooKeeper's files, then
serving). For each: time from process start until a client can read the last znode written,
and peak RSS then. Run: python3 bench/zkimport.py [N] (default 1,000,000). Prints a Markdown
table with the ferrozk/ZooKeeper ratios, and ferrozk's import summary line."""
import os, re, shutil, signal, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import FERROZK, free_port, mntr, rss_mb, ruok  # noqa: E402
from restart import last_node, start, time_to_readable  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000


def first_start(kind, d, port):
    t0 = time.monotonic()
    p = start(kind, d, port)
    readable = time_to_readable(port, "/restart-marker", t0)
    rss = rss_mb(p.pid)
    m = mntr(port)
    p.send_signal(signal.SIGTERM)
    p.wait(60)
    return readable, rss, int(m["zk_znode_count"])


def main():
    root = tempfile.mkdtemp(prefix="zkimport-bench-")
    zk_dir, fz_dir = os.path.join(root, "zookeeper"), os.path.join(root, "ferrozk")
    os.makedirs(zk_dir)
    port = free_port()
    p = start("zookeeper", zk_dir, port)
    while not ruok(port):
        time.sleep(0.1)
    out = subprocess.run([FERROZK, "bench", "--servers", f"127.0.0.1:{port}", "--workload", "create", "--count", str(N),
                          "--sessions", "8", "--inflight", "16", "--no-warmup", "--quiet", "--json"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"ferrozk bench against ZooKeeper failed: {out.stderr.strip()}")
    last_node(port)
    p.send_signal(signal.SIGTERM)
    p.wait(60)
    shutil.copytree(zk_dir, fz_dir)
    du = int(subprocess.run(["du", "-sB1", f"{zk_dir}/data"], capture_output=True, text=True).stdout.split()[0])
    zk = first_start("zookeeper", zk_dir, port)
    fz = first_start("ferrozk", fz_dir, port)
    with open(os.path.join(fz_dir, "server.log")) as f:
        summary = re.findall(r"imported Apache ZooKeeper's data: (.*)", f.read())
    shutil.rmtree(root, ignore_errors=True)
    print(f"| ZooKeeper dataDir of {zk[2]:,} znodes ({du / 1e6:.0f} MB) | ferrozk (first start: import) | ZooKeeper 3.8.0 (restart) | ratio |")
    print("|---|---|---|---|")
    print(f"| time until the last znode is readable | {fz[0]:.2f} s | {zk[0]:.2f} s | {fz[0] / zk[0]:.2f} |")
    print(f"| peak RSS then | {fz[1]:.0f} MB | {zk[1]:.0f} MB | {fz[1] / zk[1]:.2f} |")
    print(f"| znodes served | {fz[2]:,} | {zk[2]:,} | |")
    print(f"\nferrozk's import: {summary[0] if summary else 'no summary line'}")


if __name__ == "__main__":
    main()
