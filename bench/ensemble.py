"""3-member ferrozk ensemble against a 3-member Apache ZooKeeper 3.8.0 ensemble on this machine,
same client, same run, fsync on, the same zoo.cfg (tickTime=2000, initLimit=10, syncLimit=5):

- throughput and p50/p99 of `ferrozk bench` (sessions spread over the three members) for
  create, set, get and mixed; server CPU per request (all members); peak RSS per member;
- failover: a client writes continuously through all three members while the leader is
  killed with SIGKILL; the time from the kill to the acknowledgement of the first write
  sent after it
  (median of FAILOVERS kills; the killed member is restarted between kills).

Writes bench/results/ensemble-<date>.json and the table between the ENSEMBLE markers of
bench/README.md.  Usage: bash bench/ensemble.sh   (BENCH_SECONDS, FAILOVERS)
"""
import datetime, json, logging, os, re, shutil, signal, statistics, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import FERROZK, ROOT, cpu_seconds, free_port, rss_mb, start, write_cfg  # noqa: E402
from benchlib import four_letter as four  # noqa: E402
SECONDS = float(os.environ.get("BENCH_SECONDS", "8"))
FAILOVERS = int(os.environ.get("FAILOVERS", "3"))
WORKLOADS = ["create", "set", "get", "mixed"]
# create makes this many znodes (no warm-up) rather than running SECONDS, so that both
# ensembles hold the same tree when their memory is compared (see compare.py).
CREATE_COUNT = int(os.environ.get("BENCH_ENSEMBLE_CREATE_COUNT", "100000"))


class Member:
    def __init__(self, kind, sid, root, ports):
        self.kind, self.sid, self.dir = kind, sid, os.path.join(root, f"m{sid}")
        os.makedirs(os.path.join(self.dir, "data"))
        open(os.path.join(self.dir, "data", "myid"), "w").write(f"{sid}\n")
        self.port = ports[sid][0]
        servers = "".join(f"server.{i}=127.0.0.1:{q}:{e}\n" for i, (_, q, e) in sorted(ports.items()))
        write_cfg(os.path.join(self.dir, "zoo.cfg"), f"{self.dir}/data", self.port, "initLimit=10\nsyncLimit=5\n" + servers)
        self.p = None
        self.cpu_done = 0.0

    def start(self):
        self.p = start(self.kind, os.path.join(self.dir, "zoo.cfg"), os.path.join(self.dir, "server.log"))

    def mode(self):
        for l in four(self.port, "srvr").splitlines():
            if l.startswith("Mode:"):
                return l.split(":")[1].strip()

    def cpu(self):
        return cpu_seconds(self.p.pid)

    def rss_mb(self):
        return rss_mb(self.p.pid)

    def kill(self):
        self.p.kill(); self.p.wait()


class Ensemble:
    def __init__(self, kind):
        self.kind, self.root = kind, tempfile.mkdtemp(prefix=f"bench-ens-{kind}-")
        ports = {i: (free_port(), free_port(), free_port()) for i in (1, 2, 3)}
        self.members = [Member(kind, i, self.root, ports) for i in (1, 2, 3)]
        for m in self.members:
            m.start()
        self.wait_ready()
        self.hosts = ",".join(f"127.0.0.1:{m.port}" for m in self.members)

    def wait_ready(self, timeout=90):
        deadline = time.time() + timeout
        while time.time() < deadline:
            modes = [m.mode() for m in self.members]
            if modes.count("leader") == 1 and modes.count("follower") == 2:
                return
            time.sleep(0.1)
        raise SystemExit(f"{self.kind} ensemble did not form; see {self.root}")

    def leader(self):
        return next(m for m in self.members if m.mode() == "leader")

    def stop(self):
        for m in self.members:
            if m.p and m.p.poll() is None:
                m.p.send_signal(signal.SIGTERM)
        for m in self.members:
            try:
                m.p.wait(10)
            except subprocess.TimeoutExpired:
                m.kill()
        shutil.rmtree(self.root, ignore_errors=True)


def bench(ens, workload):
    cpu0 = sum(m.cpu() for m in ens.members)
    length = ["--count", str(CREATE_COUNT), "--no-warmup"] if workload == "create" else ["--duration", str(SECONDS)]
    out = subprocess.run([FERROZK, "bench", "--servers", ens.hosts, "--workload", workload, "--sessions", "9",
                          "--inflight", "8", *length, "--json", "--root", f"/bench-{workload}"],
                         capture_output=True, text=True, check=True)
    r = json.loads(out.stdout)
    r["server_cpu_s"] = sum(m.cpu() for m in ens.members) - cpu0
    # Counting the warm-up second's requests too (they used CPU); create has none.
    requests = r["ops"] + (0 if workload == "create" else r["throughput"])
    r["cpu_ms_per_1k"] = 1000 * r["server_cpu_s"] / requests * 1000
    return r


def failover(ens):
    from kazoo.client import KazooClient
    from kazoo.retry import KazooRetry
    logging.getLogger("kazoo").setLevel(logging.CRITICAL)
    times = []
    for _ in range(FAILOVERS):
        zk = KazooClient(hosts=ens.hosts, timeout=10,
                         connection_retry=KazooRetry(max_tries=-1, delay=0.01, max_delay=0.05))
        zk.start(30)
        zk.ensure_path("/failover")
        acked = []
        stop = threading.Event()

        def writer():
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    sent = time.monotonic()
                    zk.set("/failover", str(i).encode())
                    acked.append((sent, time.monotonic()))
                except Exception:
                    time.sleep(0.005)

        t = threading.Thread(target=writer); t.start()
        time.sleep(1.0)
        victim = ens.leader()
        killed_at = time.monotonic()
        victim.kill()
        deadline = killed_at + 60
        # The first write sent after the kill and acknowledged.
        while time.monotonic() < deadline and not any(s > killed_at for s, _ in acked[-50:]):
            time.sleep(0.01)
        after = [a for s, a in acked if s > killed_at]
        stop.set(); t.join()
        zk.stop(); zk.close()
        times.append(after[0] - killed_at if after else float("inf"))
        print(f"   failover after killing member {victim.sid}: {times[-1]:.2f} s", flush=True)
        victim.start()
        ens.wait_ready()
    return times


def main():
    results = {}
    for kind in ("ferrozk", "zookeeper"):
        print(f"== {kind}, 3 members", flush=True)
        ens = Ensemble(kind)
        try:
            res = {}
            for w in WORKLOADS:
                res[w] = bench(ens, w)
                print(f"   {w:<7} {res[w]['throughput']:>8.0f} ops/s  p50 {res[w]['latency_ms']['p50']:.3f} ms  "
                      f"p99 {res[w]['latency_ms']['p99']:.3f} ms  cpu {res[w]['cpu_ms_per_1k']:.1f} ms/1k", flush=True)
            res["rss_mb"] = [m.rss_mb() for m in ens.members]
            counts = [re.search(r"zk_znode_count\s+(\d+)", four(m.port, "mntr")) for m in ens.members]
            res["znodes"] = max((int(c.group(1)) for c in counts if c), default=-1)
            print(f"   peak RSS per member {', '.join('%.0f' % r for r in res['rss_mb'])} MB, {res['znodes']} znodes", flush=True)
            res["failover_s"] = failover(ens)
        finally:
            ens.stop()
        results[kind] = res
    report(results)


def report(results):
    fz, zk = results["ferrozk"], results["zookeeper"]
    date = datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"Run {date} on {os.cpu_count()} cores, `bash bench/ensemble.sh` (3 members each on loopback, "
             f"tickTime=2000, fsync on; `ferrozk bench` 9 sessions x 8 in flight spread over the members, "
             f"100 B values, {SECONDS:g} s per workload after 1 s warm-up, but create: {CREATE_COUNT} znodes and no warm-up, "
             f"so both ensembles hold the same tree). Ratios are ferrozk / ZooKeeper.", "",
             "| workload | ferrozk ops/s | ZooKeeper ops/s | throughput | p50 | p99 | server CPU per request |",
             "|---|---|---|---|---|---|---|"]
    for w in WORKLOADS:
        a, b = fz[w], zk[w]
        lines.append(f"| {w} | {a['throughput']:.0f} | {b['throughput']:.0f} | {a['throughput']/b['throughput']:.2f}x | "
                     f"{a['latency_ms']['p50']/b['latency_ms']['p50']:.2f} | {a['latency_ms']['p99']/b['latency_ms']['p99']:.2f} | "
                     f"{a['cpu_ms_per_1k']/b['cpu_ms_per_1k']:.2f} |")
    rf, rz = statistics.mean(fz["rss_mb"]), statistics.mean(zk["rss_mb"])
    ff, fzk = statistics.median(fz["failover_s"]), statistics.median(zk["failover_s"])
    lines += ["", f"Peak RSS per member: {', '.join('%.0f' % r for r in fz['rss_mb'])} MB vs "
              f"{', '.join('%.0f' % r for r in zk['rss_mb'])} MB (mean ratio {rf/rz:.3f}), holding {fz.get('znodes', -1)} vs "
              f"{zk.get('znodes', -1)} znodes at the end.",
              f"Failover (leader SIGKILLed, kill to the acknowledgement of the first write sent after it, median of {FAILOVERS}): "
              f"{ff:.2f} s vs {fzk:.2f} s (ratio {ff/fzk:.2f}); each: "
              f"{', '.join('%.2f' % x for x in fz['failover_s'])} vs {', '.join('%.2f' % x for x in zk['failover_s'])} s.", ""]
    os.makedirs(os.path.join(ROOT, "bench/results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench/results", "ensemble-" + datetime.datetime.utcnow().strftime("%Y%m%d-%H%M") + ".json"), "w") as f:
        json.dump(results, f, indent=1)
    readme = os.path.join(ROOT, "bench/README.md")
    text = open(readme).read()
    start, end = "<!-- ENSEMBLE -->", "<!-- /ENSEMBLE -->"
    if start not in text:
        text += f"\n## Ensembles (3 members)\n\n{start}\n{end}\n"
    i, j = text.index(start) + len(start), text.index(end)
    open(readme, "w").write(text[:i] + "\n" + "\n".join(lines) + "\n" + text[j:])
    print("\n".join(lines))


if __name__ == "__main__":
    main()
