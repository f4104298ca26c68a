"""Runs the side-by-side comparison; see compare.sh. Writes bench/results/<date>.json and the
table in bench/README.md."""
import datetime, json, os, platform, re, shutil, signal, socket, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FERROZK = os.environ.get("FERROZK_BIN", os.path.join(ROOT, "target/release/ferrozk"))
ZK_CP = "/usr/share/java/zookeeper.jar:/usr/share/java/zookeeper-jute.jar:/usr/share/java/*"
SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
WORKLOADS = os.environ.get("BENCH_WORKLOADS", "create,set,get,mixed").split(",")
SESSIONS, INFLIGHT = 8, 8
TICKS = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def ruok(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"ruok"); return s.recv(4) == b"imok"
    except OSError:
        return False


class Server:
    def __init__(self, kind, jvm_opts=()):
        self.kind, self.dir, self.port = kind, tempfile.mkdtemp(prefix=f"bench-{kind}-"), free_port()
        cfg = os.path.join(self.dir, "zoo.cfg")
        with open(cfg, "w") as f:
            f.write(f"tickTime=2000\ndataDir={self.dir}/data\nclientPort={self.port}\nclientPortAddress=127.0.0.1\n"
                    "maxClientCnxns=0\nadmin.enableServer=false\n4lw.commands.whitelist=*\n")
        log = open(os.path.join(self.dir, "server.log"), "w")
        if kind == "ferrozk":
            cmd = [FERROZK, "server", cfg]
        else:
            cmd = ["java", *jvm_opts, "-cp", ZK_CP, "org.apache.zookeeper.server.quorum.QuorumPeerMain", cfg]
        self.p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while not ruok(self.port):
            if time.time() > deadline or self.p.poll() is not None:
                raise SystemExit(f"{kind} did not start; see {self.dir}/server.log")
            time.sleep(0.1)

    def cpu_seconds(self):
        with open(f"/proc/{self.p.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def peak_rss_mb(self):
        with open(f"/proc/{self.p.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill(); self.p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def bench(server, workload):
    cpu0 = server.cpu_seconds()
    out = subprocess.run([FERROZK, "bench", "--servers", f"127.0.0.1:{server.port}", "--workload", workload,
                          "--sessions", str(SESSIONS), "--inflight", str(INFLIGHT), "--duration", str(SECONDS),
                          "--json", "--root", f"/bench-{workload}"], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout)
    r["server_cpu_s"] = server.cpu_seconds() - cpu0
    # CPU per 1,000 requests, counting the warm-up second's requests too (they used CPU).
    r["cpu_ms_per_1k"] = 1000 * r["server_cpu_s"] / (r["ops"] * (1 + 1 / SECONDS)) * 1000
    return r


def load_gen(server, children=200, seconds=None):
    seconds = seconds or SECONDS
    path = f"/loadgen{int(time.time()*1000) % 100000}"
    p = subprocess.Popen(["/usr/lib/zookeeper/bin/load_gen", f"127.0.0.1:{server.port}", path, str(children)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(seconds)
    p.kill()
    out = p.communicate()[0]
    cycles = out.count("Starting the delete cycle")
    return {"cycles": cycles, "ops_per_s": cycles * children * 4 / seconds}


def main():
    configs = [("ferrozk", "ferrozk", ()), ("zookeeper (Debian defaults)", "zookeeper", ()),
               ("zookeeper (-Xms1g -Xmx1g)", "zookeeper", ("-Xms1g", "-Xmx1g"))]
    results = {}
    for label, kind, opts in configs:
        print(f"== {label}", flush=True)
        s = Server(kind, opts)
        try:
            res = {}
            for w in WORKLOADS:
                res[w] = bench(s, w)
                print(f"   {w:<7} {res[w]['throughput']:>9.0f} ops/s  p50 {res[w]['latency_ms']['p50']:.3f} ms  "
                      f"p99 {res[w]['latency_ms']['p99']:.3f} ms  cpu {res[w]['cpu_ms_per_1k']:.1f} ms/1k", flush=True)
            res["load_gen"] = load_gen(s)
            print(f"   load_gen {res['load_gen']['ops_per_s']:.0f} ops/s", flush=True)
            res["peak_rss_mb"] = s.peak_rss_mb()
            print(f"   peak RSS {res['peak_rss_mb']:.0f} MB", flush=True)
        finally:
            s.stop()
        results[label] = res
    write_report(results)


def write_report(results):
    fz = results["ferrozk"]
    date = datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC")
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"model name\s*:\s*(.*)", f.read())
            cpu = m.group(1) if m else cpu
    except OSError:
        pass
    lines = [f"Run {date} on {os.cpu_count()} cores ({cpu}), `bash bench/compare.sh` "
             f"(`ferrozk bench`, {SESSIONS} sessions x {INFLIGHT} in flight, 100 B values, {SECONDS:g} s per workload "
             "after 1 s warm-up; fsync on for both). Ratios are ferrozk / ZooKeeper; for throughput higher is "
             "better, for latency, CPU and memory lower is better.", ""]
    for label in [l for l in results if l != "ferrozk"]:
        zk = results[label]
        lines += [f"**vs {label}**", "",
                  "| workload | ferrozk ops/s | ZooKeeper ops/s | throughput | p50 | p99 | server CPU per request |",
                  "|---|---|---|---|---|---|---|"]
        for w in WORKLOADS:
            a, b = fz[w], zk[w]
            lines.append(f"| {w} | {a['throughput']:.0f} | {b['throughput']:.0f} | {a['throughput']/b['throughput']:.2f}x | "
                         f"{a['latency_ms']['p50']/b['latency_ms']['p50']:.2f} | {a['latency_ms']['p99']/b['latency_ms']['p99']:.2f} | "
                         f"{a['cpu_ms_per_1k']/b['cpu_ms_per_1k']:.2f} |")
        lg = fz["load_gen"]["ops_per_s"] / max(zk["load_gen"]["ops_per_s"], 1e-9)
        lines += ["", f"C client `load_gen` (a client no one here wrote): {fz['load_gen']['ops_per_s']:.0f} vs "
                  f"{zk['load_gen']['ops_per_s']:.0f} ops/s, ratio {lg:.2f}x. Peak RSS: {fz['peak_rss_mb']:.0f} MB vs "
                  f"{zk['peak_rss_mb']:.0f} MB, ratio {fz['peak_rss_mb']/zk['peak_rss_mb']:.3f}.", ""]
    os.makedirs(os.path.join(ROOT, "bench/results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench/results", datetime.datetime.utcnow().strftime("%Y%m%d-%H%M") + ".json"), "w") as f:
        json.dump(results, f, indent=1)
    readme = os.path.join(ROOT, "bench/README.md")
    text = open(readme).read()
    start, end = "<!-- RESULTS -->", "<!-- /RESULTS -->"
    i, j = text.index(start) + len(start), text.index(end)
    open(readme, "w").write(text[:i] + "\n" + "\n".join(lines) + "\n" + text[j:])
    print("\n".join(lines))


if __name__ == "__main__":
    main()
