"""Runs the side-by-side comparison; see compare.sh. Writes bench/results/<date>.json and the
table in bench/README.md."""
import datetime, json, multiprocessing, os, platform, re, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import FERROZK, ROOT, cpu_seconds, free_port, mntr, rss_mb, ruok, start, write_cfg  # noqa: E402
SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
# The create workload makes this many znodes (no warm-up), not as many as fit in SECONDS: the
# servers then hold the same tree, so that their memory is compared on the same data (a
# faster server would otherwise be measured holding more znodes).
CREATE_COUNT = int(os.environ.get("BENCH_CREATE_COUNT", "300000"))
# lock: 8 contenders in one `ferrozk bench`; lock-procs: 8 `ferrozk bench` processes of one
# contender each on the same lock (as the Redis processes); watch: 32 watchers, one writer;
# create-1x1: one session, one request in flight (sequential write latency).
WORKLOADS = os.environ.get("BENCH_WORKLOADS", "create,set,get,mixed,lock,lock-procs,watch,create-1x1").split(",")
SESSIONS, INFLIGHT = 8, 8
LOCKERS, WATCHERS = 8, 32
LABELS = {"lock": f"lock hand-offs, {LOCKERS} contenders in one process",
          "lock-procs": f"lock hand-offs, {LOCKERS} processes x 1 contender",
          "watch": f"watch fan-out to {WATCHERS} watchers (rounds)",
          "create-1x1": "create, 1 session x 1 in flight"}


class Server:
    def __init__(self, kind, jvm_opts=()):
        self.kind, self.dir, self.port = kind, tempfile.mkdtemp(prefix=f"bench-{kind}-"), free_port()
        cfg = os.path.join(self.dir, "zoo.cfg")
        write_cfg(cfg, f"{self.dir}/data", self.port)
        self.p = start(kind, cfg, os.path.join(self.dir, "server.log"), jvm_opts)
        deadline = time.time() + 60
        while not ruok(self.port):
            if time.time() > deadline or self.p.poll() is not None:
                raise SystemExit(f"{kind} did not start; see {self.dir}/server.log")
            time.sleep(0.1)

    def cpu_seconds(self):
        return cpu_seconds(self.p.pid)

    def peak_rss_mb(self):
        return rss_mb(self.p.pid)

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill(); self.p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def bench_cmd(server, workload, sessions, inflight, root, count=None):
    length = ["--count", str(count), "--no-warmup"] if count else ["--duration", str(SECONDS)]
    return [FERROZK, "bench", "--servers", f"127.0.0.1:{server.port}", "--workload", workload,
            "--sessions", str(sessions), "--inflight", str(inflight), *length, "--json", "--root", root]


def znode_count(port):
    """zk_znode_count from `mntr` (-1 if it cannot be read)."""
    try:
        return int(mntr(port).get("zk_znode_count", -1))
    except OSError:
        return -1


def bench(server, name):
    """One run of `ferrozk bench`; `name` is a workload or one of the variants in LABELS."""
    cpu0 = server.cpu_seconds()
    if name == "lock-procs":
        # One contender per process, all on one lock; ops and throughput summed, latency
        # percentiles averaged over the processes (each reports its own).
        cmd = bench_cmd(server, "lock", 1, 1, "/bench-lock-procs")
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(LOCKERS)]
        outs = []
        for p in procs:
            out, err = p.communicate()
            if p.returncode != 0:
                raise SystemExit(f"ferrozk bench failed: {err}")
            outs.append(json.loads(out))
        r = {"workload": "lock", "processes": LOCKERS, "per_process": outs,
             "ops": sum(o["ops"] for o in outs), "errors": sum(o["errors"] for o in outs),
             "throughput": sum(o["throughput"] for o in outs),
             "latency_ms": {q: statistics.fmean(o["latency_ms"][q] for o in outs) for q in outs[0]["latency_ms"]}}
    else:
        workload, sessions, inflight = name, SESSIONS, INFLIGHT
        if name == "lock":
            sessions, inflight = LOCKERS, 1
        elif name == "watch":
            sessions, inflight = WATCHERS, 1
        elif name == "create-1x1":
            workload, sessions, inflight = "create", 1, 1
        count = CREATE_COUNT if name == "create" else None
        out = subprocess.run(bench_cmd(server, workload, sessions, inflight, f"/bench-{name}", count),
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout)
        r["warmup_s"] = 0 if count else 1
    r["server_cpu_s"] = server.cpu_seconds() - cpu0
    # CPU per 1,000 requests, counting the warm-up second's requests too (they used CPU).
    requests = max(r["ops"], 1) + r["throughput"] * r.get("warmup_s", 1)
    r["cpu_ms_per_1k"] = 1000 * r["server_cpu_s"] / requests * 1000
    return r


def fdatasync_ms(n=300):
    """The machine's fdatasync: 100 B written at the end of a file, then fdatasync, in a temp
    directory beside the servers' data directories (the same file system). Median, and the
    median with the 100 B overwriting a preallocated block instead (no size change to sync)."""
    d = tempfile.mkdtemp(prefix="bench-fsync-")
    try:
        out = {}
        for kind in ("append", "overwrite"):
            fd = os.open(os.path.join(d, kind), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            if kind == "overwrite":
                os.write(fd, b"\0" * 4096 * 64); os.fsync(fd)
            times = []
            for i in range(n):
                t = time.perf_counter()
                if kind == "overwrite":
                    os.pwrite(fd, b"x" * 100, (i * 100) % (4096 * 64 - 100))
                else:
                    os.write(fd, b"x" * 100)
                os.fdatasync(fd)
                times.append(time.perf_counter() - t)
            os.close(fd)
            out[kind] = 1000 * statistics.median(times)
        return out
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _echo(sock):
    conn, _ = sock.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        b = conn.recv(64)
        if not b:
            return
        conn.sendall(b)


def loopback_rtt_ms(n=2000):
    """Loopback TCP round trip: 64-byte ping-pong with an echo in another process (TCP_NODELAY
    both ends), median. Python on both ends, so an upper bound on the kernel's round trip."""
    srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
    p = multiprocessing.get_context("fork").Process(target=_echo, args=(srv,)); p.start()
    c = socket.create_connection(srv.getsockname())
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    times, msg = [], b"p" * 64
    for _ in range(n + 100):
        t = time.perf_counter()
        c.sendall(msg)
        got = 0
        while got < len(msg):
            got += len(c.recv(64))
        times.append(time.perf_counter() - t)
    c.close(); p.join(5); srv.close()
    return 1000 * statistics.median(times[100:])


def redis_lock():
    out = subprocess.run([sys.executable, os.path.join(ROOT, "bench/redis_lock.py"), "--processes", str(LOCKERS),
                          "--seconds", str(SECONDS), "--json"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def load_gen(server, children=200, seconds=None):
    seconds = seconds or SECONDS
    path = f"/loadgen{int(time.time()*1000) % 100000}"
    # Its log goes to a file: into a pipe read only at the end, load_gen stalled once the pipe's
    # 64 KB were full (~115 cycles), whatever the server, and both servers scored the same.
    with tempfile.TemporaryFile(mode="w+") as log:
        p = subprocess.Popen(["/usr/lib/zookeeper/bin/load_gen", f"127.0.0.1:{server.port}", path, str(children)],
                             stdout=log, stderr=subprocess.STDOUT, text=True)
        time.sleep(seconds)
        p.kill()
        p.wait()
        log.seek(0)
        cycles = log.read().count("Starting the delete cycle")
    return {"cycles": cycles, "ops_per_s": cycles * children * 4 / seconds}


def main():
    began = time.time()
    configs = [("ferrozk", "ferrozk", ()), ("zookeeper (Debian defaults)", "zookeeper", ()),
               ("zookeeper (-Xms1g -Xmx1g)", "zookeeper", ("-Xms1g", "-Xmx1g"))]
    # (create takes CREATE_COUNT / ~20k ops/s at most, about SECONDS + 5)
    estimate = len(configs) * (len(WORKLOADS) * (SECONDS + 1.5) + SECONDS + 10) + SECONDS + 10
    print(f"about {estimate / 60:.0f} minutes ({SECONDS:g} s per workload)", flush=True)
    if estimate > 14 * 60:
        print("warning: over 15 minutes; lower BENCH_SECONDS", flush=True)
    results = {"machine": {"fdatasync_ms": fdatasync_ms(), "loopback_rtt_ms": loopback_rtt_ms()}}
    m = results["machine"]
    print(f"== machine: fdatasync {m['fdatasync_ms']['append']:.3f} ms (append; "
          f"{m['fdatasync_ms']['overwrite']:.3f} ms overwriting), loopback RTT {m['loopback_rtt_ms']:.3f} ms", flush=True)
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
            res["znodes"] = znode_count(s.port)
            print(f"   peak RSS {res['peak_rss_mb']:.0f} MB, {res['znodes']} znodes", flush=True)
        finally:
            s.stop()
        results[label] = res
    if "lock" in WORKLOADS or "lock-procs" in WORKLOADS:
        print(f"== redis lock, {LOCKERS} processes", flush=True)
        results["redis"] = redis_lock()
        rd = results["redis"]
        print(f"   {rd['throughput']:.0f} acquire+release/s, {rd['handoffs_per_s']:.0f} hand-offs to another "
              f"process/s, p50 {rd['latency_ms']['p50']:.3f} ms, p99 {rd['latency_ms']['p99']:.3f} ms", flush=True)
    # The machine measured again at the end: the figures drift on a shared machine.
    m2 = {"fdatasync_ms": fdatasync_ms(), "loopback_rtt_ms": loopback_rtt_ms()}
    results["machine_end"] = m2
    results["elapsed_s"] = time.time() - began
    write_report(results)
    print(f"took {results['elapsed_s'] / 60:.1f} minutes")


def recipe_lines(results, zks):
    """Absolute figures for the lock, watch and single-session runs, the machine's fdatasync
    and loopback round trip, and the Redis lock."""
    fz, out = results["ferrozk"], []
    servers = [("ferrozk", fz)] + [(l.replace("zookeeper", "ZooKeeper"), results[l]) for l in zks]
    ms = lambda r, q: f"{r['latency_ms'][q]:.3f}"
    if "lock" in fz:
        out += [f"**Lock hand-offs** (ferrozk-client's `Lock` recipe, {LOCKERS} contenders on one lock; one "
                "operation = acquire + release, latency = asking until holding):", ""]
        for name, r in servers:
            t = f"- {name}: {r['lock']['throughput']:.0f}/s in one process (p50 {ms(r['lock'], 'p50')} ms, p99 " \
                f"{ms(r['lock'], 'p99')} ms; {r['lock']['owner_changes']} of {r['lock']['ops']} to another contender, " \
                f"{r['lock']['errors']} errors, {r['lock']['exclusion_violations']} exclusion violations)"
            if "lock-procs" in r:
                t += f"; {r['lock-procs']['throughput']:.0f}/s as {LOCKERS} processes x 1 contender " \
                     f"({r['lock-procs']['errors']} errors)"
            out.append(t + ".")
        out.append("")
    if "watch" in fz:
        out += [f"**Watch fan-out** ({WATCHERS} sessions keep a data watch on one node, one more sets it; one operation "
                "= one setData, latency = until the last watcher is notified; each round waits until every watcher "
                "has re-armed):", ""]
        for name, r in servers:
            w = r["watch"]
            out.append(f"- {name}: {w['throughput']:.0f} rounds/s, p50 {ms(w, 'p50')} ms, p99 {ms(w, 'p99')} ms, "
                       f"{w['missed_rounds']} rounds missed by a watcher, {w['errors']} errors.")
        out.append("")
    if "create-1x1" in fz and "machine" in results:
        m0, m1 = results["machine"], results.get("machine_end", results["machine"])
        sync = (m0["fdatasync_ms"]["append"] + m1["fdatasync_ms"]["append"]) / 2
        rtt = (m0["loopback_rtt_ms"] + m1["loopback_rtt_ms"]) / 2
        p50 = fz["create-1x1"]["latency_ms"]["p50"]
        out += ["**Single-session sequential write latency** (create, 1 session x 1 in flight, p50): "
                + ", ".join(f"{name} {ms(r['create-1x1'], 'p50')} ms (p99 {ms(r['create-1x1'], 'p99')} ms)" for name, r in servers)
                + f". This machine: fdatasync {sync:.3f} ms (100 B appended then fdatasync, median of 300 in the "
                f"servers' temp directory; {m0['fdatasync_ms']['append']:.3f} ms before the servers ran, "
                f"{m1['fdatasync_ms']['append']:.3f} ms after; {m0['fdatasync_ms']['overwrite']:.3f} ms overwriting a "
                f"preallocated block), loopback TCP round trip {rtt:.3f} ms (64 B ping-pong between two Python "
                f"processes, median; {m0['loopback_rtt_ms']:.3f} / {m1['loopback_rtt_ms']:.3f} ms). ferrozk's p50 / "
                f"(fdatasync + round trip) = {p50:.3f} / {sync + rtt:.3f} = **{p50 / (sync + rtt):.2f}** (target: at most 2).", ""]
    if "redis" in results and "lock" in fz:
        rd = results["redis"]
        handoffs = fz["lock"]["owner_changes"] / fz["lock"]["seconds"]
        out += [f"**Redis lock** (same run): redis-server {rd['redis_server']} with no config file (compiled-in "
                f"defaults: RDB save rules, no AOF; only port, bind 127.0.0.1 and dir given), redis-py {rd['redis_py']} "
                f"`Lock` with its defaults (blocking `acquire()`, no expiry, a retry every 0.1 s while taken), "
                f"{rd['processes']} processes each looping acquire/release: {rd['throughput']:.0f} acquire+release/s, "
                f"of which {rd['handoffs_per_s']:.0f}/s went to another process (per process "
                f"{min(rd['per_process_cycles'])} to {max(rd['per_process_cycles'])} in {rd['seconds']:g} s: the "
                f"holder usually takes it again before a waiter's next retry); acquire latency p50 "
                f"{rd['latency_ms']['p50']:.3f} ms, p99 {rd['latency_ms']['p99']:.3f} ms, max "
                f"{rd['latency_ms']['max']:.0f} ms; {rd['violations']} exclusion violations. ferrozk's durable lock "
                f"(fsync per write, FIFO: nearly every acquisition is a hand-off) / Redis, counting acquire+release: "
                f"**{fz['lock']['throughput'] / rd['throughput']:.2f}** in one process"
                + (f", **{fz['lock-procs']['throughput'] / rd['throughput']:.2f}** as {LOCKERS} processes" if "lock-procs" in fz else "")
                + f"; counting only hand-offs to another contender (ferrozk in one process, where they are "
                f"counted): {handoffs / max(rd['handoffs_per_s'], 1e-9):.0f}x.", ""]
    return out


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
             f"(`ferrozk bench`, {SESSIONS} sessions x {INFLIGHT} in flight unless the row says otherwise, 100 B values, {SECONDS:g} s per workload "
             f"after 1 s warm-up, but create: {CREATE_COUNT} znodes and no warm-up, so both servers hold the same tree; fsync on for both). Ratios are ferrozk / ZooKeeper; for throughput higher is "
             "better, for latency, CPU and memory lower is better.", ""]
    zks = [l for l in results if l != "ferrozk" and isinstance(results[l], dict) and "peak_rss_mb" in results[l]]
    for label in zks:
        zk = results[label]
        lines += [f"**vs {label}**", "",
                  "| workload | ferrozk ops/s | ZooKeeper ops/s | throughput | p50 | p99 | server CPU per request |",
                  "|---|---|---|---|---|---|---|"]
        for w in WORKLOADS:
            a, b = fz[w], zk[w]
            lines.append(f"| {LABELS.get(w, w)} | {a['throughput']:.0f} | {b['throughput']:.0f} | {a['throughput']/b['throughput']:.2f}x | "
                         f"{a['latency_ms']['p50']/b['latency_ms']['p50']:.2f} | {a['latency_ms']['p99']/b['latency_ms']['p99']:.2f} | "
                         f"{a['cpu_ms_per_1k']/b['cpu_ms_per_1k']:.2f} |")
        lg = fz["load_gen"]["ops_per_s"] / max(zk["load_gen"]["ops_per_s"], 1e-9)
        lines += ["", f"C client `load_gen` (a client no one here wrote): {fz['load_gen']['ops_per_s']:.0f} vs "
                  f"{zk['load_gen']['ops_per_s']:.0f} ops/s, ratio {lg:.2f}x. Peak RSS: {fz['peak_rss_mb']:.0f} MB vs "
                  f"{zk['peak_rss_mb']:.0f} MB, ratio {fz['peak_rss_mb']/zk['peak_rss_mb']:.3f}, holding "
                  f"{fz.get('znodes', -1)} vs {zk.get('znodes', -1)} znodes at the end.", ""]
    lines += recipe_lines(results, zks)
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
