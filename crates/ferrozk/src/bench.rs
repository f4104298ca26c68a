//! `ferrozk bench`: a load generator that speaks the ZooKeeper protocol to any server
//! (ferrozk or Apache ZooKeeper), in the spirit of etcd's `benchmark` and keeper-bench.
//!
//! Closed loop by default: every session keeps `--inflight` requests outstanding. With
//! `--rate` it runs open loop: requests are issued on a fixed schedule and latency is measured
//! from when each request was due, so a stalled server shows in the tail instead of being
//! hidden by the client slowing down (coordinated omission).
//!
//! Two workloads measure recipes rather than single requests, one operation per session at a
//! time (`--inflight` and `--rate` do not apply): `lock` (hand-offs of one lock between
//! `--sessions` contenders through `recipes::Lock`) and `watch` (fan-out of one setData to
//! `--sessions` sessions watching the node).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use ferrozk_client::recipes::Lock;
use ferrozk_client::{event, open_acl, Client, CreateMode, ErrorCode, Op};
use hdrhistogram::Histogram;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// Sequential persistent creates.
    Create,
    /// setData on a set of existing keys.
    Set,
    /// getData on a set of existing keys.
    Get,
    /// getData or setData, `--read-ratio` of them reads.
    Mixed,
    /// Create an ephemeral node, then delete it (one operation = the pair).
    Ephemeral,
    /// A multi of two setData.
    Multi,
    /// `--sessions` contenders hand one lock (`recipes::Lock`) around; one operation = one
    /// acquire and release, latency = from asking for the lock until holding it. Holding it
    /// twice at once counts as an error (`exclusion_violations`).
    Lock,
    /// `--sessions` sessions keep a data watch on one node, one more session sets it; one
    /// operation = one setData, latency = until the last watcher is notified. The next setData
    /// waits until every watcher has re-armed; a round some watcher misses is an error.
    Watch,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Create => "create",
            Workload::Set => "set",
            Workload::Get => "get",
            Workload::Mixed => "mixed",
            Workload::Ephemeral => "ephemeral",
            Workload::Multi => "multi",
            Workload::Lock => "lock",
            Workload::Watch => "watch",
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Connect string: host:port[,host:port...]; sessions are spread over the servers.
    #[arg(long, default_value = "127.0.0.1:2181")]
    pub servers: String,
    #[arg(long, value_enum, default_value_t = Workload::Set)]
    pub workload: Workload,
    /// Client sessions.
    #[arg(long, default_value_t = 8)]
    pub sessions: usize,
    /// Requests outstanding per session (closed loop).
    #[arg(long, default_value_t = 8)]
    pub inflight: usize,
    /// Bytes per value written.
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,
    /// Seconds to run (after a 1 s warm-up that is not counted).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Stop after this many operations instead of after `--duration`.
    #[arg(long)]
    pub count: Option<u64>,
    /// Open loop: total operations per second across all sessions.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Fraction of reads in the mixed workload.
    #[arg(long, default_value_t = 0.9)]
    pub read_ratio: f64,
    /// Keys for set/get/mixed/multi.
    #[arg(long, default_value_t = 1000)]
    pub keys: usize,
    /// Where the benchmark's nodes live.
    #[arg(long, default_value = "/ferrozk-bench")]
    pub root: String,
    /// Skip the warm-up second.
    #[arg(long)]
    pub no_warmup: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// No progress lines.
    #[arg(long)]
    pub quiet: bool,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Report {
    pub workload: &'static str,
    pub ops: u64,
    pub errors: u64,
    pub seconds: f64,
    pub latency_us: Histogram<u64>,
    /// Workload-specific counts (the lock's exclusion violations, the watch's missed rounds).
    pub extra: Vec<(&'static str, u64)>,
}

impl Report {
    pub fn throughput(&self) -> f64 {
        self.ops as f64 / self.seconds.max(1e-9)
    }

    fn pct_ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }

    /// p50, p90, p99, p99.9, max and mean latency, in milliseconds.
    fn latencies_ms(&self) -> [f64; 6] {
        [
            self.pct_ms(0.5),
            self.pct_ms(0.9),
            self.pct_ms(0.99),
            self.pct_ms(0.999),
            self.latency_us.max() as f64 / 1000.0,
            self.latency_us.mean() / 1000.0,
        ]
    }

    pub fn json(&self) -> String {
        let extra: String = self.extra.iter().map(|(k, v)| format!(",\"{k}\":{v}")).collect();
        let [p50, p90, p99, p999, max, mean] = self.latencies_ms();
        format!(
            "{{\"workload\":\"{}\",\"ops\":{},\"errors\":{},\"seconds\":{:.3},\"throughput\":{:.1},\"latency_ms\":{{\"p50\":{p50:.3},\"p90\":{p90:.3},\"p99\":{p99:.3},\"p999\":{p999:.3},\"max\":{max:.3},\"mean\":{mean:.3}}}{extra}}}",
            self.workload,
            self.ops,
            self.errors,
            self.seconds,
            self.throughput(),
        )
    }

    pub fn table(&self) -> String {
        let extra: String = self.extra.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
        let [p50, p90, p99, p999, max, _] = self.latencies_ms();
        format!(
            "workload   ops        errors  seconds  ops/s      p50 ms   p90 ms   p99 ms   p99.9 ms  max ms\n\
             {:<10} {:<10} {:<7} {:<8.2} {:<10.0} {p50:<8.3} {p90:<8.3} {p99:<8.3} {p999:<9.3} {max:.3}\n{extra}",
            self.workload,
            self.ops,
            self.errors,
            self.seconds,
            self.throughput(),
        )
    }
}

struct Shared {
    args: BenchArgs,
    value: Vec<u8>,
    measuring: AtomicBool,
    stop: AtomicBool,
    done: AtomicU64,
    errors: AtomicU64,
    histograms: Mutex<Vec<Histogram<u64>>>,
    /// lock: contenders inside the critical section now, and who was there last (session + 1).
    holders: AtomicU64,
    last_holder: AtomicU64,
    /// lock: times two contenders held the lock at once; hand-offs to another session.
    violations: AtomicU64,
    owner_changes: AtomicU64,
    /// watch: rounds in which some watcher was not notified (or not re-armed) in time.
    missed: AtomicU64,
}

/// How long a lock or watch round may take before it counts as an error.
const ROUND_TIMEOUT: Duration = Duration::from_secs(10);

fn key(root: &str, i: usize) -> String {
    format!("{root}/keys/k{i:06}")
}

fn lock_path(root: &str) -> String {
    format!("{root}/lock")
}

fn watch_path(root: &str) -> String {
    format!("{root}/watch")
}

async fn ensure(zk: &Client, path: &str, data: &[u8]) -> Result<(), ErrorCode> {
    match zk.create(path, data, open_acl(), CreateMode::Persistent).await {
        Ok(_) | Err(ErrorCode::NodeExists) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates the nodes the workload needs.
/// Connects, retrying for a while: a server that was just started may answer `ruok` before it
/// serves sessions (Apache ZooKeeper does).
async fn connect(servers: &str) -> Result<Client, String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match Client::connect(servers).await {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() >= deadline => return Err(format!("cannot connect to {servers}: {e}")),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

async fn setup(args: &BenchArgs, value: &[u8]) -> Result<(), String> {
    let zk = connect(&args.servers).await?;
    let root = &args.root;
    for p in [root.clone(), format!("{root}/keys"), format!("{root}/seq"), format!("{root}/eph")] {
        ensure(&zk, &p, b"").await.map_err(|e| format!("cannot create {p}: {e}"))?;
    }
    if args.workload == Workload::Watch {
        ensure(&zk, &watch_path(root), value).await.map_err(|e| format!("setup: {e}"))?;
    }
    if matches!(args.workload, Workload::Set | Workload::Get | Workload::Mixed | Workload::Multi) {
        let mut pending = Vec::new();
        for i in 0..args.keys {
            let zk = zk.clone();
            let (p, v) = (key(root, i), value.to_vec());
            pending.push(tokio::spawn(async move { ensure(&zk, &p, &v).await }));
            if pending.len() >= 256 {
                for h in pending.drain(..) {
                    h.await.map_err(|e| e.to_string())?.map_err(|e| format!("setup: {e}"))?;
                }
            }
        }
        for h in pending {
            h.await.map_err(|e| e.to_string())?.map_err(|e| format!("setup: {e}"))?;
        }
    }
    zk.close().await;
    Ok(())
}

async fn one_op(zk: &Client, s: &Shared, session: usize, n: u64) -> Result<(), ErrorCode> {
    let a = &s.args;
    let pick = || rand::random::<usize>() % a.keys.max(1);
    match a.workload {
        Workload::Create => {
            zk.create(&format!("{}/seq/s{session}-", a.root), &s.value, open_acl(), CreateMode::PersistentSequential).await?;
        }
        Workload::Set => {
            zk.set_data(&key(&a.root, pick()), &s.value, -1).await?;
        }
        Workload::Get => {
            zk.get_data(&key(&a.root, pick())).await?;
        }
        Workload::Mixed => {
            if rand::random::<f64>() < a.read_ratio {
                zk.get_data(&key(&a.root, pick())).await?;
            } else {
                zk.set_data(&key(&a.root, pick()), &s.value, -1).await?;
            }
        }
        Workload::Ephemeral => {
            let p = zk.create(&format!("{}/eph/s{session}-{n}", a.root), &s.value, open_acl(), CreateMode::Ephemeral).await?;
            zk.delete(&p, -1).await?;
        }
        Workload::Lock | Workload::Watch => unreachable!("lock and watch run their own loops"),
        Workload::Multi => {
            let ops = vec![
                Op::SetData { path: key(&a.root, pick()), data: s.value.clone(), version: -1 },
                Op::SetData { path: key(&a.root, pick()), data: s.value.clone(), version: -1 },
            ];
            zk.multi(ops).await.map_err(|(e, _)| e)?;
        }
    }
    Ok(())
}

fn record(s: &Shared, h: &mut Histogram<u64>, started: Instant, ok: bool) {
    record_latency(s, h, started.elapsed(), ok);
}

/// Counts one operation (an error if not `ok`) while measuring; false if it was not counted.
fn record_latency(s: &Shared, h: &mut Histogram<u64>, latency: Duration, ok: bool) -> bool {
    if !s.measuring.load(Ordering::Relaxed) {
        return false;
    }
    if ok {
        let us = latency.as_micros() as u64;
        let _ = h.record(us.max(1));
        let done = s.done.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(c) = s.args.count {
            if done >= c {
                s.stop.store(true, Ordering::Relaxed);
            }
        }
    } else {
        s.errors.fetch_add(1, Ordering::Relaxed);
    }
    true
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

/// Closed loop: one task per in-flight slot, each issuing its next request when the previous
/// one is answered.
async fn closed_slot(zk: Client, s: Arc<Shared>, session: usize, slot: usize) {
    let mut h = new_hist();
    let mut n = (slot as u64) << 40;
    while !s.stop.load(Ordering::Relaxed) {
        n += 1;
        let t = Instant::now();
        let ok = one_op(&zk, &s, session, n).await.is_ok();
        record(&s, &mut h, t, ok);
    }
    s.histograms.lock().unwrap().push(h);
}

/// Open loop: requests are due on a fixed schedule; latency counts from when each was due.
async fn open_session(zk: Client, s: Arc<Shared>, session: usize, per_session_rate: f64) {
    let interval = Duration::from_secs_f64(1.0 / per_session_rate.max(1e-6));
    let start = Instant::now() + Duration::from_secs_f64(rand::random::<f64>() * interval.as_secs_f64());
    let hist = Arc::new(Mutex::new(new_hist()));
    let mut n = 0u64;
    let mut tasks = tokio::task::JoinSet::new();
    while !s.stop.load(Ordering::Relaxed) {
        let due = start + interval * n as u32;
        tokio::time::sleep_until(due.into()).await;
        n += 1;
        let (zk, s2, hist) = (zk.clone(), s.clone(), hist.clone());
        tasks.spawn(async move {
            let ok = one_op(&zk, &s2, session, n).await.is_ok();
            let mut h = hist.lock().unwrap();
            record(&s2, &mut h, due, ok);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let h = hist.lock().unwrap().clone();
    s.histograms.lock().unwrap().push(h);
}

/// One lock contender: acquire, check that no one else is inside, release; until stopped.
/// Contenders queue in order (each watches its predecessor), so after the stop every waiting
/// contender still gets its turn and releases: the run leaves no lock node behind.
async fn lock_contender(zk: Client, s: Arc<Shared>, session: usize) {
    let mut h = new_hist();
    let mut lock = Lock::new(&zk, &lock_path(&s.args.root), &format!("bench-{session}"));
    let me = session as u64 + 1;
    while !s.stop.load(Ordering::Relaxed) {
        let asked = Instant::now();
        match lock.acquire(Some(ROUND_TIMEOUT)).await {
            Ok(true) => {
                let waited = asked.elapsed();
                let alone = s.holders.fetch_add(1, Ordering::SeqCst) == 0;
                let before = s.last_holder.swap(me, Ordering::SeqCst);
                // Let any other holder run (and show up in `holders`) before leaving.
                tokio::task::yield_now().await;
                let still_alone = s.holders.fetch_sub(1, Ordering::SeqCst) == 1;
                if !alone {
                    // Counted over the whole run, warm-up included: any is a bug.
                    s.violations.fetch_add(1, Ordering::Relaxed);
                }
                let released = lock.release().await.is_ok();
                let ok = alone && still_alone && released;
                if record_latency(&s, &mut h, waited, ok) && ok && before != me && before != 0 {
                    s.owner_changes.fetch_add(1, Ordering::Relaxed);
                }
            }
            // Not our turn within ROUND_TIMEOUT (the recipe removed our node).
            Ok(false) => {
                record_latency(&s, &mut h, asked.elapsed(), false);
            }
            Err(_) => {
                record_latency(&s, &mut h, asked.elapsed(), false);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    s.histograms.lock().unwrap().push(h);
}

/// What a watcher tells the writer: its watch is set with the node at `version`, or it was
/// notified of the change that made `version`.
enum WatchEvent {
    Armed { id: usize, version: i32 },
    Fired { id: usize, version: i32, at: Instant },
}

/// A watcher: getData with a watch, report it armed, wait for the notification, report it,
/// and again. Runs until aborted.
async fn watcher(zk: Client, root: String, id: usize, tx: tokio::sync::mpsc::UnboundedSender<WatchEvent>) {
    let path = watch_path(&root);
    loop {
        let ((_, stat), watch) = match zk.get_data_w(&path).await {
            Ok(x) => x,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if tx.send(WatchEvent::Armed { id, version: stat.version }).is_err() {
            return;
        }
        // A session event (NONE) instead of the change: just set the watch again.
        if let Ok(ev) = watch.await {
            if ev.event_type == event::NODE_DATA_CHANGED {
                let at = Instant::now();
                if tx.send(WatchEvent::Fired { id, version: stat.version + 1, at }).is_err() {
                    return;
                }
            }
        }
    }
}

/// The watch workload's writer: waits until every watcher is armed at the node's current
/// version, sets the node, and waits for every watcher's notification of that version.
async fn watch_writer(zk: Client, s: Arc<Shared>, watchers: usize, mut rx: tokio::sync::mpsc::UnboundedReceiver<WatchEvent>) {
    let path = watch_path(&s.args.root);
    let mut h = new_hist();
    let mut armed = vec![i32::MIN; watchers];
    let mut version = match zk.exists(&path).await {
        Ok(Some(stat)) => stat.version,
        _ => {
            s.errors.fetch_add(1, Ordering::Relaxed);
            s.stop.store(true, Ordering::Relaxed);
            return;
        }
    };
    while !s.stop.load(Ordering::Relaxed) {
        // Every watcher re-armed since the last change. One that is not by the deadline will
        // miss this round's notification, and the round counts as an error below.
        let deadline = tokio::time::Instant::now() + ROUND_TIMEOUT;
        while armed.iter().any(|&v| v < version) {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(WatchEvent::Armed { id, version: v })) => armed[id] = armed[id].max(v),
                Ok(Some(WatchEvent::Fired { .. })) => {} // late news of an earlier round
                Ok(None) | Err(_) => break,
            }
        }
        let sent = Instant::now();
        match zk.set_data(&path, &s.value, -1).await {
            Ok(stat) => version = stat.version,
            Err(_) => {
                record_latency(&s, &mut h, sent.elapsed(), false);
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        }
        let deadline = tokio::time::Instant::from_std(sent + ROUND_TIMEOUT);
        let mut notified = vec![false; watchers];
        let (mut count, mut last) = (0, sent);
        while count < watchers {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(WatchEvent::Fired { id, version: v, at })) if v == version && !notified[id] => {
                    notified[id] = true;
                    count += 1;
                    last = last.max(at);
                }
                Ok(Some(WatchEvent::Armed { id, version: v })) => armed[id] = armed[id].max(v),
                Ok(Some(WatchEvent::Fired { .. })) => {}
                Ok(None) | Err(_) => break,
            }
        }
        let ok = count == watchers;
        if !ok && s.measuring.load(Ordering::Relaxed) {
            s.missed.fetch_add(1, Ordering::Relaxed);
        }
        record_latency(&s, &mut h, last.saturating_duration_since(sent), ok);
    }
    s.histograms.lock().unwrap().push(h);
}

/// Runs one benchmark and returns what it measured.
pub async fn run(args: BenchArgs) -> Result<Report, String> {
    let recipe = matches!(args.workload, Workload::Lock | Workload::Watch);
    if recipe && args.rate.is_some() {
        return Err(format!("--rate does not apply to the {} workload", args.workload.name()));
    }
    if recipe && args.sessions == 0 {
        return Err(format!("the {} workload needs at least one session", args.workload.name()));
    }
    let value: Vec<u8> = (0..args.value_size).map(|i| b'a' + (i % 26) as u8).collect();
    setup(&args, &value).await?;
    let hosts: Vec<&str> = args.servers.split('/').next().unwrap_or("").split(',').collect();
    let mut clients = Vec::new();
    for i in 0..args.sessions {
        // Spread sessions over the servers round-robin, as many clients of an ensemble would be.
        let host = hosts[i % hosts.len()];
        let chroot = args.servers.find('/').map(|at| &args.servers[at..]).unwrap_or("");
        let zk = connect(&format!("{host}{chroot}")).await?;
        clients.push(zk);
    }
    let s = Arc::new(Shared {
        args: args.clone(),
        value,
        measuring: AtomicBool::new(args.no_warmup),
        stop: AtomicBool::new(false),
        done: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        histograms: Mutex::new(Vec::new()),
        holders: AtomicU64::new(0),
        last_holder: AtomicU64::new(0),
        violations: AtomicU64::new(0),
        owner_changes: AtomicU64::new(0),
        missed: AtomicU64::new(0),
    });
    let mut tasks = tokio::task::JoinSet::new();
    // Tasks that run until aborted once `tasks` are done (the watchers).
    let mut background = tokio::task::JoinSet::new();
    if args.workload == Workload::Watch {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        for (i, zk) in clients.iter().enumerate() {
            background.spawn(watcher(zk.clone(), args.root.clone(), i, tx.clone()));
        }
        // One more session, the writer.
        let host = hosts[args.sessions % hosts.len()];
        let chroot = args.servers.find('/').map(|at| &args.servers[at..]).unwrap_or("");
        let writer = connect(&format!("{host}{chroot}")).await?;
        tasks.spawn(watch_writer(writer.clone(), s.clone(), args.sessions, rx));
        clients.push(writer);
    }
    for (i, zk) in clients.iter().enumerate() {
        if recipe {
            if args.workload == Workload::Lock {
                tasks.spawn(lock_contender(zk.clone(), s.clone(), i));
            }
            continue;
        }
        match args.rate {
            Some(rate) => {
                tasks.spawn(open_session(zk.clone(), s.clone(), i, rate / args.sessions as f64));
            }
            None => {
                for slot in 0..args.inflight.max(1) {
                    tasks.spawn(closed_slot(zk.clone(), s.clone(), i, slot));
                }
            }
        }
    }
    if !args.no_warmup {
        tokio::time::sleep(Duration::from_secs(1)).await;
        s.measuring.store(true, Ordering::Relaxed);
    }
    let t0 = Instant::now();
    let mut last = 0;
    // With --count, the run ends within 10 ms of the last operation, so that the throughput of
    // a short run is not cut by the wait.
    let tick = Duration::from_millis(if args.count.is_some() { 10 } else { 200 });
    loop {
        tokio::time::sleep(tick).await;
        let el = t0.elapsed().as_secs_f64();
        if s.stop.load(Ordering::Relaxed) || (args.count.is_none() && el >= args.duration) {
            break;
        }
        if !args.quiet && !args.json && (el as u64) > last {
            last = el as u64;
            eprintln!(
                "  {:>4} s  {:>10} ops  {:>9.0} ops/s",
                last,
                s.done.load(Ordering::Relaxed),
                s.done.load(Ordering::Relaxed) as f64 / el
            );
        }
    }
    s.measuring.store(false, Ordering::Relaxed);
    let seconds = t0.elapsed().as_secs_f64();
    s.stop.store(true, Ordering::Relaxed);
    while tasks.join_next().await.is_some() {}
    background.shutdown().await;
    let mut total = new_hist();
    for h in s.histograms.lock().unwrap().iter() {
        total.add(h).map_err(|e| e.to_string())?;
    }
    for zk in clients {
        zk.close().await;
    }
    let extra = match args.workload {
        Workload::Lock => vec![
            ("exclusion_violations", s.violations.load(Ordering::Relaxed)),
            ("owner_changes", s.owner_changes.load(Ordering::Relaxed)),
        ],
        Workload::Watch => vec![("watchers", args.sessions as u64), ("missed_rounds", s.missed.load(Ordering::Relaxed))],
        _ => Vec::new(),
    };
    Ok(Report {
        workload: args.workload.name(),
        ops: total.len(),
        errors: s.errors.load(Ordering::Relaxed),
        seconds,
        latency_us: total,
        extra,
    })
}
