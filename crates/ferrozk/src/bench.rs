//! `ferrozk bench`: a load generator that speaks the ZooKeeper protocol to any server
//! (ferrozk or Apache ZooKeeper), in the spirit of etcd's `benchmark` and keeper-bench.
//!
//! Closed loop by default: every session keeps `--inflight` requests outstanding. With
//! `--rate` it runs open loop: requests are issued on a fixed schedule and latency is measured
//! from when each request was due, so a stalled server shows in the tail instead of being
//! hidden by the client slowing down (coordinated omission).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use ferrozk_client::{open_acl, Client, CreateMode, ErrorCode, Op};
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
}

impl Report {
    pub fn throughput(&self) -> f64 {
        self.ops as f64 / self.seconds.max(1e-9)
    }

    fn pct_ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }

    pub fn json(&self) -> String {
        format!(
            "{{\"workload\":\"{}\",\"ops\":{},\"errors\":{},\"seconds\":{:.3},\"throughput\":{:.1},\"latency_ms\":{{\"p50\":{:.3},\"p90\":{:.3},\"p99\":{:.3},\"p999\":{:.3},\"max\":{:.3},\"mean\":{:.3}}}}}",
            self.workload,
            self.ops,
            self.errors,
            self.seconds,
            self.throughput(),
            self.pct_ms(0.5),
            self.pct_ms(0.9),
            self.pct_ms(0.99),
            self.pct_ms(0.999),
            self.latency_us.max() as f64 / 1000.0,
            self.latency_us.mean() / 1000.0,
        )
    }

    pub fn table(&self) -> String {
        format!(
            "workload   ops        errors  seconds  ops/s      p50 ms   p90 ms   p99 ms   p99.9 ms  max ms\n\
             {:<10} {:<10} {:<7} {:<8.2} {:<10.0} {:<8.3} {:<8.3} {:<8.3} {:<9.3} {:.3}\n",
            self.workload,
            self.ops,
            self.errors,
            self.seconds,
            self.throughput(),
            self.pct_ms(0.5),
            self.pct_ms(0.9),
            self.pct_ms(0.99),
            self.pct_ms(0.999),
            self.latency_us.max() as f64 / 1000.0,
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
}

fn key(root: &str, i: usize) -> String {
    format!("{root}/keys/k{i:06}")
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
    if !s.measuring.load(Ordering::Relaxed) {
        return;
    }
    if ok {
        let us = started.elapsed().as_micros() as u64;
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

/// Runs one benchmark and returns what it measured.
pub async fn run(args: BenchArgs) -> Result<Report, String> {
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
    });
    let mut tasks = tokio::task::JoinSet::new();
    for (i, zk) in clients.iter().enumerate() {
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
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let el = t0.elapsed().as_secs_f64();
        if s.stop.load(Ordering::Relaxed) || (args.count.is_none() && el >= args.duration) {
            break;
        }
        if !args.quiet && !args.json && (el as u64) > last {
            last = el as u64;
            eprintln!("  {:>4} s  {:>10} ops  {:>9.0} ops/s", last, s.done.load(Ordering::Relaxed), s.done.load(Ordering::Relaxed) as f64 / el);
        }
    }
    s.measuring.store(false, Ordering::Relaxed);
    let seconds = t0.elapsed().as_secs_f64();
    s.stop.store(true, Ordering::Relaxed);
    while tasks.join_next().await.is_some() {}
    let mut total = new_hist();
    for h in s.histograms.lock().unwrap().iter() {
        total.add(h).map_err(|e| e.to_string())?;
    }
    for zk in clients {
        zk.close().await;
    }
    Ok(Report {
        workload: args.workload.name(),
        ops: total.len(),
        errors: s.errors.load(Ordering::Relaxed),
        seconds,
        latency_us: total,
    })
}
