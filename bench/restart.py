"""Restart benchmark (issue 3): a tree of N znodes (100-byte values) is written to each server,
the server is stopped and started again on its data, and we measure the time from process start
until a client can read the last znode written, the peak RSS after it is readable, and (for
ferrozk) snapshot size and write time from its log. Run: python3 bench/restart.py [N]
(default 1,000,000; BENCH_RESTART_N also works). Prints a Markdown table of the figures and
the ferrozk/ZooKeeper ratios."""
import os, re, shutil, signal, socket, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import FERROZK, free_port, mntr, rss_mb, ruok, start as start_server, write_cfg  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("BENCH_RESTART_N", "1000000"))
SESSIONS = 8


def start(kind, d, port):
    cfg = os.path.join(d, "zoo.cfg")
    write_cfg(cfg, f"{d}/data", port)
    return start_server(kind, cfg, os.path.join(d, "server.log"))


def last_node(port):
    """Writes a marker after the tree: once it is readable after a restart, so is everything
    written before it (reads see writes in log order). Returns it and the tree's size."""
    from kazoo.client import KazooClient
    zk = KazooClient(hosts=f"127.0.0.1:{port}", timeout=30)
    zk.start(timeout=60)
    zk.create("/restart-marker", b"x" * 100)
    count = zk.get_all_children_number("/ferrozk-bench") if hasattr(zk, "get_all_children_number") else N
    zk.stop(); zk.close()
    return "/restart-marker", count


def time_to_readable(port, path, t0):
    """Polls with raw ZooKeeper frames (no client library start-up cost) until getData works."""
    import struct
    def frame(b): return struct.pack(">i", len(b)) + b
    connect = frame(struct.pack(">iqiq", 0, 0, 30000, 0) + struct.pack(">i", 16) + b"\0" * 16)
    pb = path.encode()
    get = frame(struct.pack(">ii", 1, 4) + struct.pack(">i", len(pb)) + pb + b"\0")
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(connect)
                s.recv(1024)  # ConnectResponse
                s.sendall(get)
                data = b""
                while len(data) < 20:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                if len(data) >= 20 and struct.unpack(">i", data[16:20])[0] == 0:  # len, xid, zxid, err
                    return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.02)


def run(kind):
    d = tempfile.mkdtemp(prefix=f"restart-{kind}-")
    port = free_port()
    p = start(kind, d, port)
    while not ruok(port):
        time.sleep(0.1)
    t = time.monotonic()
    out = subprocess.run([FERROZK, "bench", "--servers", f"127.0.0.1:{port}", "--workload", "create", "--count", str(N),
                          "--sessions", str(SESSIONS), "--inflight", "16", "--no-warmup", "--quiet", "--json"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"ferrozk bench against {kind} failed: {out.stderr.strip()}")
    populate = time.monotonic() - t
    path, count = last_node(port)
    time.sleep(2)  # let a snapshot in progress finish, as an operator's restart would
    p.send_signal(signal.SIGTERM); p.wait(30)
    du = subprocess.run(["du", "-sB1", f"{d}/data"], capture_output=True, text=True).stdout.split()[0]
    t0 = time.monotonic()
    p = start(kind, d, port)
    readable = time_to_readable(port, path, t0)
    rss = rss_mb(p.pid)
    m = mntr(port)
    tree_mb = (int(m["zk_approximate_data_size"]) + 100 * int(m["zk_znode_count"])) / 2**20
    p.send_signal(signal.SIGTERM); p.wait(30)
    snap = ""
    if kind == "ferrozk":
        log = open(os.path.join(d, "server.log")).read()
        m = re.findall(r"snapshot written .*?nodes=(\d+) ms=(\d+)", log)
        snaps = os.path.join(d, "data/snapshots")
        sizes = [os.path.getsize(os.path.join(snaps, f)) for f in os.listdir(snaps)] if os.path.isdir(snaps) else []
        if m:
            snap = f"last snapshot: {m[-1][0]} nodes in {m[-1][1]} ms, {max(sizes)/1e6:.0f} MB"
    shutil.rmtree(d, ignore_errors=True)
    return {"populate_s": populate, "nodes": count, "disk_mb": int(du) / 1e6, "readable_s": readable, "rss_mb": rss, "snap": snap, "target_mb": tree_mb}


def main():
    res = {k: run(k) for k in ("ferrozk", "zookeeper")}
    fz, zk = res["ferrozk"], res["zookeeper"]
    print(f"| {N:,} znodes (100 B) | ferrozk | ZooKeeper 3.8.0 | ratio |")
    print("|---|---|---|---|")
    print(f"| time until the last znode is readable after a restart | {fz['readable_s']:.2f} s | {zk['readable_s']:.2f} s | {fz['readable_s']/zk['readable_s']:.2f} |")
    print(f"| peak RSS after the restart | {fz['rss_mb']:.0f} MB | {zk['rss_mb']:.0f} MB | {fz['rss_mb']/zk['rss_mb']:.2f} |")
    print(f"| RSS target: paths and data + 100 B a znode (ferrozk's mntr) | {fz['target_mb']:.0f} MB | | {fz['rss_mb']/fz['target_mb']:.2f} of it |")
    print(f"| data on disk | {fz['disk_mb']:.0f} MB | {zk['disk_mb']:.0f} MB | {fz['disk_mb']/zk['disk_mb']:.2f} |")
    print(f"| writing the tree (create workload) | {fz['populate_s']:.1f} s | {zk['populate_s']:.1f} s | {fz['populate_s']/zk['populate_s']:.2f} |")
    print(f"\n{fz['snap']}")


if __name__ == "__main__":
    main()
