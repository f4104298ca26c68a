"""Overload benchmark (issue 15): one bad client must not take the server down. Against ferrozk
and Apache ZooKeeper 3.8.0 in turn, standalone, same machine, same run, raw ZooKeeper frames:

  flood     F connections (spread over P processes) pipelining 1 KB setData, D in flight each,
            reading their replies; plus a bystander session doing setData + getData every 20 ms.
  abusive   the flood, plus 20 connections that send setData and never read, plus one
            connection that holds 20,000 data watches and a persistent recursive watch on the
            flooded nodes' parent (so every flood write notifies it) and never reads.

With `--members 3` each server runs as a 3-member ensemble (bench/ensemble.py's): the
flooders and the non-reading connections are spread over the members, the watcher and the
bystander use a follower.

Reports per server: writes answered to the flooders, the server's peak RSS (VmHWM; on an
ensemble the largest member's and the sum), the bystander's rounds, p50/p99/max round latency,
and whether its session survived.

  python3 bench/overload.py                 # standalone, 20 s per scenario
  python3 bench/overload.py --members 3     # 3-member ensembles
  OVERLOAD_SECONDS=10 python3 bench/overload.py
"""
import argparse, json, multiprocessing as mp, os, shutil, socket, statistics, struct, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import free_port, mntr, rss_mb, ruok, start as start_server, write_cfg  # noqa: E402
from ensemble import Ensemble  # noqa: E402

SECONDS = float(os.environ.get("OVERLOAD_SECONDS", "20"))
FLOODERS, PROCS, DEPTH = 50, 4, 2000
SILENT, WATCHES = 20, 20000
VALUE = b"v" * 1024


def frame(b):
    return struct.pack(">i", len(b)) + b


def jstr(s):
    b = s.encode()
    return struct.pack(">i", len(b)) + b


def jbuf(b):
    return struct.pack(">i", len(b)) + b


CONNECT = frame(struct.pack(">iqiq", 0, 0, 30000, 0) + jbuf(b"\0" * 16))


def set_data(xid, path, value=VALUE):
    return frame(struct.pack(">ii", xid, 5) + jstr(path) + jbuf(value) + struct.pack(">i", -1))


def get_data(xid, path, watch=False):
    return frame(struct.pack(">ii", xid, 4) + jstr(path) + (b"\1" if watch else b"\0"))


def create(xid, path):
    acl = struct.pack(">ii", 1, 31) + jstr("world") + jstr("anyone")
    return frame(struct.pack(">ii", xid, 1) + jstr(path) + jbuf(b"") + acl + struct.pack(">i", 0))


def add_watch(xid, path):
    return frame(struct.pack(">ii", xid, 106) + jstr(path) + struct.pack(">i", 1))


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    BUFFERS.pop(s.fileno(), None)
    s.sendall(CONNECT)
    resp = read_frame(s)
    if resp is None or struct.unpack(">i", resp[4:8])[0] <= 0:
        raise OSError("session refused")
    return s


BUFFERS = {}


def read_frame(s):
    buf = BUFFERS.setdefault(s.fileno(), bytearray())
    while True:
        if len(buf) >= 4:
            n = struct.unpack(">i", buf[:4])[0]
            if len(buf) >= 4 + n:
                f = bytes(buf[4:4 + n])
                del buf[:4 + n]
                return f
        chunk = s.recv(65536)
        if not chunk:
            return None
        buf += chunk


def call(s, req):
    """Sends one request and returns its reply's error code (skipping notifications)."""
    s.sendall(req)
    while True:
        f = read_frame(s)
        if f is None:
            raise OSError("connection closed")
        xid, _, err = struct.unpack(">iqi", f[:16])
        if xid != -1:
            return err


def flood_proc(port, paths, until, out):
    """Pipelines setData on each of `paths` (one connection each), DEPTH in flight, counting
    replies."""
    import selectors
    sel = selectors.DefaultSelector()
    conns = []
    for p in paths:
        try:
            s = connect(port)
        except OSError:
            continue
        s.setblocking(False)
        c = {"s": s, "req": set_data(1, p), "buf": bytearray(), "out": 0, "done": 0, "pending": b""}
        conns.append(c)
        sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
    while time.monotonic() < until and conns:
        for key, ev in sel.select(timeout=0.1):
            c = key.data
            try:
                if ev & selectors.EVENT_WRITE:
                    if not c["pending"] and c["out"] < DEPTH:
                        n = DEPTH - c["out"]
                        c["pending"] = c["req"] * n
                        c["out"] += n
                    if c["pending"]:
                        sent = c["s"].send(c["pending"])
                        c["pending"] = c["pending"][sent:]
                if ev & selectors.EVENT_READ:
                    chunk = c["s"].recv(1 << 20)
                    if not chunk:
                        raise OSError("closed")
                    buf = c["buf"]
                    buf += chunk
                    pos = 0
                    while len(buf) - pos >= 4:
                        n = struct.unpack_from(">i", buf, pos)[0]
                        if len(buf) - pos < 4 + n:
                            break
                        pos += 4 + n
                        c["out"] -= 1
                        c["done"] += 1
                    del buf[:pos]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                sel.unregister(c["s"])
                conns.remove(c)
                out.put(("closed", 1))
    out.put(("done", sum(c["done"] for c in conns)))


def silent_proc(port, n, until, out):
    """Connections that send setData and never read."""
    socks = []
    for _ in range(n):
        try:
            s = connect(port)
            s.settimeout(0.05)
            socks.append(s)
        except OSError:
            pass
    burst = set_data(1, "/o/silent") * 64
    while time.monotonic() < until:
        for s in socks:
            try:
                s.sendall(burst)
            except (socket.timeout, OSError):
                pass
    out.put(("silent", len(socks)))


def bystander_proc(port, until, out):
    lat, errors = [], 0
    try:
        s = connect(port)
        x = 0
        while time.monotonic() < until:
            t = time.monotonic()
            x += 2
            e1 = call(s, set_data(x, "/bystander", b"b" * 100))
            e2 = call(s, get_data(x + 1, "/bystander"))
            lat.append((time.monotonic() - t) * 1000)
            errors += (e1 != 0) + (e2 != 0)
            time.sleep(max(0.0, 0.02 - (time.monotonic() - t)))
        alive = True
    except OSError:
        alive = False
    out.put(("bystander", {"lat": lat, "errors": errors, "alive": alive}))


def setup(port, abusive):
    # A server answers ruok a moment before it takes sessions.
    deadline = time.monotonic() + 60
    while True:
        try:
            s = connect(port)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    x = 0
    for p in ["/o", "/bystander", "/o/silent"] + [f"/o/f{i}" for i in range(FLOODERS)]:
        x += 1
        call(s, create(x, p))
    watcher = None
    if abusive:
        # The watched nodes, made in pipelined batches, then watched by a connection that will
        # not read again.
        for base in range(0, WATCHES, 500):
            reqs = b"".join(create(x + i + 1, f"/o/f{(base + i) % FLOODERS}/w{base + i}") for i in range(500))
            s.sendall(reqs)
            for _ in range(500):
                read_frame(s)
            x += 500
        watcher = connect(port)
        call(watcher, add_watch(1, "/o"))
        for base in range(0, WATCHES, 500):
            watcher.sendall(b"".join(get_data(base + i + 2, f"/o/f{(base + i) % FLOODERS}/w{base + i}", True) for i in range(500)))
            for _ in range(500):
                read_frame(watcher)
    s.close()
    return watcher


class Standalone:
    """One server, with the interface of bench/ensemble.py's Ensemble that the scenarios use."""

    def __init__(self, kind):
        self.root = tempfile.mkdtemp(prefix=f"ferrozk-overload-{kind}-")
        self.port = free_port()
        cfg = os.path.join(self.root, "zoo.cfg")
        write_cfg(cfg, f"{self.root}/data", self.port)
        self.proc = start_server(kind, cfg, os.path.join(self.root, "server.log"))
        deadline = time.monotonic() + 60
        while not ruok(self.port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind} did not start; see {self.root}/server.log")
            time.sleep(0.1)

    def ports(self):
        return [self.port]

    def quiet_port(self):
        return self.port

    def peak_rss(self):
        return [rss_mb(self.proc.pid)]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except Exception:
            self.proc.kill()
        shutil.rmtree(self.root, ignore_errors=True)


class ThreeMembers:
    def __init__(self, kind):
        self.ens = Ensemble(kind)

    def ports(self):
        return [m.port for m in self.ens.members]

    def quiet_port(self):
        """A follower's port: where the watcher and the bystander connect."""
        return next(m.port for m in self.ens.members if m.mode() == "follower")

    def peak_rss(self):
        return [m.rss_mb() for m in self.ens.members]

    def stop(self):
        self.ens.stop()


def scenario(kind, abusive, members):
    server = ThreeMembers(kind) if members == 3 else Standalone(kind)
    try:
        ports, quiet = server.ports(), server.quiet_port()
        watcher = setup(quiet, abusive)
        q = mp.Queue()
        until = time.monotonic() + SECONDS
        procs = [mp.Process(target=bystander_proc, args=(quiet, until, q))]
        paths = [f"/o/f{i}" for i in range(FLOODERS)]
        for k in range(PROCS):
            procs.append(mp.Process(target=flood_proc, args=(ports[k % len(ports)], paths[k::PROCS], until, q)))
        if abusive:
            for k, port in enumerate(ports):
                n = SILENT // len(ports) + (k < SILENT % len(ports))
                procs.append(mp.Process(target=silent_proc, args=(port, n, until, q)))
        for p in procs:
            p.start()
        results = {"done": 0, "closed": 0, "silent": 0}
        expected = len(procs)
        got = 0
        while got < expected:
            k, v = q.get(timeout=SECONDS + 120)
            if k in ("done", "closed", "silent"):
                results[k] += v
                got += k != "closed"
            else:
                results[k] = v
                got += 1
        for p in procs:
            p.join(timeout=30)
        by = results["bystander"]
        lat = sorted(by["lat"]) or [0.0]
        rss = server.peak_rss()
        row = {
            "server": kind,
            "members": members,
            "scenario": "abusive" if abusive else "flood",
            "writes": results["done"],
            "peak_rss_mb": round(max(rss), 1),
            "peak_rss_sum_mb": round(sum(rss), 1),
            "bystander_rounds": len(by["lat"]),
            "bystander_p50_ms": round(statistics.median(lat), 2),
            "bystander_p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 2),
            "bystander_max_ms": round(lat[-1], 2),
            "bystander_session_alive": by["alive"],
            "flood_connections_closed": results["closed"],
        }
        counters = {}
        for port in ports:
            try:
                m = mntr(port)
            except (OSError, ValueError):
                continue
            for k in m:
                if "throttle" in k or "slow_consumer" in k or "rejected" in k:
                    counters[k] = counters.get(k, 0) + int(float(m[k]))
        row["mntr"] = counters
        if watcher:
            watcher.close()
        return row
    finally:
        server.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--members", type=int, choices=(1, 3), default=1)
    members = ap.parse_args().members
    rows = []
    for abusive in (False, True):
        for kind in ("ferrozk", "zookeeper"):
            row = scenario(kind, abusive, members)
            print(json.dumps(row), flush=True)
            rows.append(row)
    print()
    rss = "peak RSS MB" if members == 1 else "peak RSS MB (largest member / sum)"
    print(f"| scenario | server | writes answered | {rss} | bystander rounds | p50 ms | p99 ms | max ms | session alive |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        mem = r["peak_rss_mb"] if members == 1 else f"{r['peak_rss_mb']} / {r['peak_rss_sum_mb']}"
        print(f"| {r['scenario']} | {r['server']} | {r['writes']} | {mem} | {r['bystander_rounds']} | "
              f"{r['bystander_p50_ms']} | {r['bystander_p99_ms']} | {r['bystander_max_ms']} | {r['bystander_session_alive']} |")
    for scen in ("flood", "abusive"):
        f, z = [r for r in rows if r["scenario"] == scen]
        print(f"\n{scen}: ferrozk/ZooKeeper writes {f['writes'] / max(1, z['writes']):.2f}x, peak RSS "
              f"{f['peak_rss_mb'] / max(1, z['peak_rss_mb']):.2f}, bystander p99 "
              f"{f['bystander_p99_ms'] / max(0.01, z['bystander_p99_ms']):.2f}, max "
              f"{f['bystander_max_ms'] / max(0.01, z['bystander_max_ms']):.2f}")


if __name__ == "__main__":
    main()
