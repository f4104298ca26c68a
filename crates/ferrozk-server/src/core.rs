//! The state every connection shares, and the write path: proposals are applied in order by
//! one committer task, which then tells watchers and the waiting connections.
//!
//! Lock order: `Shared::core` is the only lock; it is never held across an await.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferrozk_proto::codes::{state, xid};
use ferrozk_proto::frame::write_frame;
use ferrozk_proto::{Decode, Encode, Id, ReplyHeader, WatcherEvent};
use ferrozk_storage::{snap, Wal};
use std::path::PathBuf;
use ferrozk_tree::{acl, Applied, Change, DataTree, TreeConfig, Txn, TxnOp, Watches};
use tokio::sync::{mpsc, oneshot};

use crate::config::ServerConfig;

pub type ConnId = u64;

/// What a connection's writer task is sent.
#[derive(Debug)]
pub enum Out {
    Frame(Vec<u8>),
    /// Flush what came before, then close the connection.
    Close,
}

/// A client connection as the shared state sees it.
pub struct ConnEntry {
    pub peer: SocketAddr,
    pub session: i64,
    pub auth: Vec<Id>,
    pub out: mpsc::UnboundedSender<Out>,
    pub established: SystemTime,
    pub received: u64,
    pub sent: u64,
    pub last_zxid: i64,
    pub last_cxid: i32,
    pub last_op: &'static str,
    /// When the last reply left (ms since the epoch) and how long it took.
    pub last_response: i64,
    pub last_latency: u64,
    pub latency: Latency,
}

/// A live session on this server: when it expires and which connection holds it.
pub struct Tracked {
    pub timeout: u64,
    pub expires_at: u64,
    pub owner: Option<ConnId>,
    pub closing: bool,
}

#[derive(Default, Clone, Copy)]
pub struct Latency {
    pub min: u64,
    pub max: u64,
    pub total: u64,
    pub count: u64,
}

impl Latency {
    pub fn record(&mut self, ms: u64) {
        if self.count == 0 || ms < self.min {
            self.min = ms;
        }
        self.max = self.max.max(ms);
        self.total += ms;
        self.count += 1;
    }

    pub fn avg(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.total as f64 / self.count as f64
        }
    }
}

#[derive(Default)]
pub struct Stats {
    pub received: u64,
    pub sent: u64,
    pub latency: Latency,
    pub outstanding: i64,
}

pub struct Core {
    pub tree: DataTree,
    pub watches: Watches,
    pub conns: HashMap<ConnId, ConnEntry>,
    pub sessions: HashMap<i64, Tracked>,
    pub per_ip: HashMap<IpAddr, usize>,
    pub stats: Stats,
    next_session_id: i64,
}

/// Where the answer to a client's request goes: its connection, in the session's order.
pub struct ReplyTo {
    pub conn: ConnId,
    pub out: mpsc::UnboundedSender<Out>,
    pub xid: i32,
    pub opcode: i32,
    pub at: Instant,
    /// Requests of this connection queued at the committer; its reader answers a read at once
    /// only when this is zero.
    pub pending: Arc<AtomicUsize>,
}

impl ReplyTo {
    /// Sends the frame (and a close, if asked), then counts the request as done.
    fn send(self, core: &mut Core, frame: Option<Vec<u8>>, close: bool) {
        if let Some(f) = frame {
            let _ = self.out.send(Out::Frame(f));
            core.count_reply(self.conn, Some(self.at), self.opcode, self.xid);
        }
        if close {
            let _ = self.out.send(Out::Close);
        }
        self.pending.fetch_sub(1, Ordering::Release);
    }
}

/// Who waits for a write.
pub enum Reply {
    None,
    /// The server itself (session creation in the handshake).
    Internal(oneshot::Sender<Applied>),
    Client(ReplyTo),
}

/// What the committer is given, in each session's request order.
pub enum Proposal {
    /// A write: logged, fsynced, applied, answered.
    Write { txn: Txn, reply: Reply },
    /// A read of a session that has requests queued here: answered in its place among them,
    /// so it sees exactly the session's earlier writes and none of its later ones.
    Read { req: ferrozk_proto::Request, session: i64, auth: Arc<Vec<Id>>, reply: ReplyTo },
    /// A frame (and/or a close) that must leave after everything queued before it.
    Forward { frame: Option<Vec<u8>>, close: bool, reply: ReplyTo },
}

pub struct Shared {
    pub config: ServerConfig,
    pub core: Mutex<Core>,
    pub proposals: mpsc::UnboundedSender<Option<Proposal>>,
    pub started: Instant,
    pub bound: SocketAddr,
    next_conn: AtomicU64,
}

pub fn wall_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Shared {
    pub fn new(
        config: ServerConfig,
        bound: SocketAddr,
        tree: DataTree,
    ) -> (Arc<Shared>, mpsc::UnboundedReceiver<Option<Proposal>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            core: Mutex::new(Core::with_tree(tree)),
            config,
            proposals: tx,
            started: Instant::now(),
            bound,
            next_conn: AtomicU64::new(1),
        });
        {
            let mut core = shared.lock();
            core.track_recovered(&shared);
        }
        (shared, rx)
    }

    /// Asks the committer to finish what it has and stop.
    pub fn stop_committer(&self) {
        let _ = self.proposals.send(None);
    }

    pub fn lock(&self) -> MutexGuard<'_, Core> {
        // A panic while holding the lock is a bug; keep serving rather than poisoning everyone.
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn next_conn_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Milliseconds since this server started: the clock of session expiry.
    pub fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// ZooKeeper's `ExpiryQueue` rounding: expiry happens on tick boundaries.
    pub fn expiry_for(&self, timeout: u64) -> u64 {
        let tick = self.config.tick_time.max(1);
        ((self.now() + timeout) / tick + 1) * tick
    }

    /// Sends a write to the log; the receiver yields its result once applied.
    pub fn propose(&self, session: i64, auth: Vec<Id>, op: TxnOp) -> oneshot::Receiver<Applied> {
        let (tx, rx) = oneshot::channel();
        let txn = Txn { session, time: wall_ms(), auth, op };
        let _ = self.proposals.send(Some(Proposal::Write { txn, reply: Reply::Internal(tx) }));
        rx
    }

    /// Sends a client's request to the committer, to be answered on its connection in order.
    pub fn submit(&self, p: Proposal) {
        match &p {
            Proposal::Write { reply: Reply::Client(r), .. } | Proposal::Read { reply: r, .. } | Proposal::Forward { reply: r, .. } => {
                r.pending.fetch_add(1, Ordering::AcqRel);
            }
            _ => {}
        }
        let _ = self.proposals.send(Some(p));
    }

    fn propose_detached(&self, session: i64, op: TxnOp) {
        let txn = Txn { session, time: wall_ms(), auth: Vec::new(), op };
        let _ = self.proposals.send(Some(Proposal::Write { txn, reply: Reply::None }));
    }
}

fn new_tree(config: &ServerConfig) -> DataTree {
    DataTree::new(tree_config(config))
}

impl Core {
    /// After a restart every recovered session gets a fresh timeout, as in ZooKeeper: its
    /// client may re-attach, or it expires and takes its ephemerals with it.
    pub fn track_recovered(&mut self, shared: &Shared) {
        let ids: Vec<(i64, i32)> = self.tree.sessions().iter().map(|(id, s)| (*id, s.timeout)).collect();
        for (id, timeout) in ids {
            let timeout = timeout.max(0) as u64;
            self.sessions.insert(id, Tracked { timeout, expires_at: shared.expiry_for(timeout), owner: None, closing: false });
        }
    }

    pub fn new(config: &ServerConfig) -> Core {
        Self::with_tree(new_tree(config))
    }

    /// Wraps a recovered tree; its sessions must be re-tracked with [`Core::track_recovered`].
    pub fn with_tree(tree: DataTree) -> Core {
        // ZooKeeper's scheme: the time in the high bits, the server id in the top byte.
        let next_session_id = ((wall_ms() << 24) as u64 >> 8) as i64;
        Core {
            tree,
            watches: Watches::default(),
            conns: HashMap::new(),
            sessions: HashMap::new(),
            per_ip: HashMap::new(),
            stats: Stats::default(),
            next_session_id,
        }
    }

    pub fn new_session_id(&mut self) -> i64 {
        loop {
            self.next_session_id += 1;
            let id = self.next_session_id;
            if id != 0 && self.tree.session(id).is_none() && !self.sessions.contains_key(&id) {
                return id;
            }
        }
    }

    /// Renews a session's lease; called on every packet from its client.
    pub fn touch(&mut self, shared: &Shared, session: i64) {
        if let Some(t) = self.sessions.get_mut(&session) {
            if !t.closing {
                t.expires_at = shared.expiry_for(t.timeout);
            }
        }
    }

    /// Sends a watch notification to one connection, unless the node's ACL hides it from
    /// that connection (ZooKeeper 3.9 checks READ at delivery).
    fn notify(&mut self, conn: ConnId, zxid: i64, change: &Change) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if acl::check(&change.acl, ferrozk_proto::codes::perms::READ, &c.auth).is_err() {
            return;
        }
        let frame = notification_frame(zxid, change.kind.event_type(), &change.path);
        c.sent += 1;
        self.stats.sent += 1;
        let _ = c.out.send(Out::Frame(frame));
    }

    /// Everything that follows an applied entry on this server: session tracking and watches.
    /// Counts a reply for `srvr`/`cons`/`mntr`.
    pub fn count_reply(&mut self, conn: ConnId, at: Option<Instant>, opcode: i32, xid: i32) {
        self.stats.sent += 1;
        let zxid = self.tree.last_zxid();
        let ms = at.map(|a| a.elapsed().as_millis() as u64);
        if let Some(ms) = ms {
            self.stats.latency.record(ms);
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.sent += 1;
            c.last_zxid = zxid;
            c.last_op = ferrozk_proto::codes::op::name(opcode);
            if xid >= 0 {
                c.last_cxid = xid;
            }
            if let Some(ms) = ms {
                c.latency.record(ms);
                c.last_latency = ms;
                c.last_response = wall_ms();
            }
        }
    }

    fn after_apply(&mut self, shared: &Shared, txn: &Txn, applied: &Applied, from_client: bool) {
        match &txn.op {
            TxnOp::CreateSession { timeout, .. } => {
                let timeout = *timeout as u64;
                let expires_at = shared.expiry_for(timeout);
                self.sessions.entry(txn.session).or_insert(Tracked { timeout, expires_at, owner: None, closing: false });
            }
            TxnOp::CloseSession => {
                if let Some(t) = self.sessions.remove(&txn.session) {
                    // A client's own close is answered first; the committer then closes it.
                    if !from_client {
                        if let Some(c) = t.owner.and_then(|o| self.conns.get(&o)) {
                            let _ = c.out.send(Out::Close);
                        }
                    }
                }
            }
            _ => {}
        }
        for change in &applied.changes {
            for w in self.watches.trigger(&change.path, change.kind) {
                self.notify(w, applied.zxid, change);
            }
        }
    }
}

/// `ReplyHeader(-1, zxid, 0)` + `WatcherEvent`, framed.
pub fn notification_frame(zxid: i64, event_type: i32, path: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + path.len());
    write_frame(&mut out, |b| {
        ReplyHeader { xid: xid::NOTIFICATION, zxid, err: 0 }.encode(b);
        WatcherEvent { event_type, state: state::SYNC_CONNECTED, path: path.to_string() }.encode(b);
    });
    out
}

/// The write path, on a thread of its own because it waits for the disk: takes every proposal
/// that is waiting, appends them all to the log, makes them durable with one fsync (group
/// commit), then applies them in order and answers. Nothing is acknowledged before its fsync.
pub fn run_committer(
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<Option<Proposal>>,
    mut wal: Wal,
    snapshots: std::sync::mpsc::Sender<u64>,
) {
    let snap_count = shared.config.snap_count;
    let next_threshold = || snap_count / 2 + 1 + rand::random::<u64>() % (snap_count - snap_count / 2);
    let mut threshold = next_threshold();
    let mut since_snapshot = 0u64;
    let mut batch = Vec::new();
    let mut buf = Vec::new();
    let mut stopping = false;
    while !stopping {
        // `None` asks the committer to stop once what came before it is done.
        match rx.blocking_recv() {
            Some(Some(p)) => batch.push(p),
            Some(None) | None => break,
        }
        while batch.len() < 4096 {
            match rx.try_recv() {
                Ok(Some(p)) => batch.push(p),
                Ok(None) => {
                    stopping = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let durable = (|| -> std::io::Result<()> {
            let mut any = false;
            for p in &batch {
                if let Proposal::Write { txn, .. } = p {
                    buf.clear();
                    txn.encode(&mut buf);
                    wal.append(0, &buf)?;
                    any = true;
                }
            }
            if any {
                wal.sync()?;
            }
            Ok(())
        })();
        if let Err(e) = durable {
            // Unacknowledged writes are dropped (their clients see the connection close);
            // nothing more is accepted, since nothing more could be made durable.
            tracing::error!("cannot write the transaction log {}: {e}; refusing further writes", wal.current_segment().display());
            return;
        }
        let mut core = shared.lock();
        for p in batch.drain(..) {
            match p {
                Proposal::Write { txn, reply } => {
                    since_snapshot += 1;
                    let zxid = core.tree.last_zxid() + 1;
                    let applied = core.tree.apply(zxid, &txn);
                    core.after_apply(&shared, &txn, &applied, !matches!(reply, Reply::None));
                    match reply {
                        Reply::None => {}
                        Reply::Internal(tx) => {
                            let _ = tx.send(applied);
                        }
                        Reply::Client(r) => {
                            let frame = crate::ops::write_reply(r.xid, r.opcode, &applied);
                            let close = txn.op == TxnOp::CloseSession;
                            r.send(&mut core, Some(frame), close);
                        }
                    }
                }
                Proposal::Read { req, session, auth, reply } => {
                    let (pre, frame) = crate::ops::answer_read(&mut core, reply.conn, session, &auth, reply.xid, &req);
                    for f in pre {
                        let _ = reply.out.send(Out::Frame(f));
                    }
                    reply.send(&mut core, Some(frame), false);
                }
                Proposal::Forward { frame, close, reply } => reply.send(&mut core, frame, close),
            }
        }
        let last = core.tree.last_zxid() as u64;
        drop(core);
        if since_snapshot >= threshold {
            let _ = snapshots.send(last);
            since_snapshot = 0;
            threshold = next_threshold();
        }
    }
}

/// Where the log and the snapshots live.
pub fn dirs(config: &ServerConfig) -> (PathBuf, PathBuf) {
    let wal = config.data_log_dir.as_ref().unwrap_or(&config.data_dir).join("wal");
    (wal, config.data_dir.join("snapshots"))
}

fn tree_config(config: &ServerConfig) -> TreeConfig {
    TreeConfig {
        ttl_enabled: config.extended_types_enabled,
        enforce_quota: config.enforce_quota,
        x509_enabled: config.secure_client_addr.is_some(),
    }
}

/// The newest snapshot that reads back whole (at most `upto`), falling back past damaged ones.
fn load_snapshot(config: &ServerConfig, upto: u64) -> Option<DataTree> {
    let (_, snap_dir) = dirs(config);
    for file in snap::list(&snap_dir).into_iter().filter(|s| s.index <= upto) {
        let started = Instant::now();
        let mut progress = |done: u64, total: u64| tracing::info!("loading {}: {done} of {total} nodes", file.path.display());
        match snap::read(&file, |r| DataTree::read_snapshot(r, tree_config(config), &mut progress)) {
            Ok(tree) => {
                tracing::info!(snapshot = %file.path.display(), nodes = tree.node_count(), ms = started.elapsed().as_millis() as u64, "loaded snapshot");
                return Some(tree);
            }
            Err(e) => tracing::error!("{e}; falling back to an older snapshot and the log"),
        }
    }
    None
}

fn replay(tree: &mut DataTree, records: Vec<ferrozk_storage::Record>, dir: &std::path::Path) -> Result<(), String> {
    let n = records.len();
    for (i, r) in records.into_iter().enumerate() {
        let txn = Txn::decode(&mut ferrozk_proto::Reader::new(&r.payload))
            .map_err(|e| format!("damaged log record {} in {}: {e}", r.index, dir.display()))?;
        tree.apply(r.index as i64, &txn);
        if i > 0 && i % 1_000_000 == 0 {
            tracing::info!("replayed {i} of {n} log records");
        }
    }
    Ok(())
}

/// Rebuilds the tree: the newest valid snapshot, then every log record after it, in order.
pub fn recover(config: &ServerConfig) -> Result<(DataTree, Wal), String> {
    let (wal_dir, _) = dirs(config);
    let started = Instant::now();
    let mut tree = load_snapshot(config, u64::MAX).unwrap_or_else(|| new_tree(config));
    let after = tree.last_zxid() as u64;
    let (wal, records) = Wal::open_after(&wal_dir, after).map_err(|e| e.to_string())?;
    if records.first().is_some_and(|r| r.index != after + 1) || (records.is_empty() && wal.next_index() != after + 1) {
        return Err(format!(
            "the log in {} does not continue the snapshot at {after} (next log entry {}): refusing to start on an incomplete history",
            wal_dir.display(),
            records.first().map_or(wal.next_index(), |r| r.index)
        ));
    }
    let n = records.len();
    replay(&mut tree, records, &wal_dir)?;
    if tree.last_zxid() > 0 {
        tracing::info!(snapshot_zxid = after, replayed = n, zxid = format!("0x{:x}", tree.last_zxid()), nodes = tree.node_count(), ms = started.elapsed().as_millis() as u64, "recovered");
    }
    Ok((tree, wal))
}

/// Writes a snapshot of everything up to `target` without touching the live tree: the newest
/// snapshot is loaded and the log replayed onto it on this thread, so requests never wait for
/// it. Then old snapshots and the log they alone needed are purged if autopurge is on.
pub fn take_snapshot(config: &ServerConfig, target: u64) -> Result<Option<PathBuf>, String> {
    let (wal_dir, snap_dir) = dirs(config);
    let started = Instant::now();
    let mut tree = load_snapshot(config, target).unwrap_or_else(|| new_tree(config));
    let base = tree.last_zxid() as u64;
    if base >= target {
        return Ok(None);
    }
    let records = ferrozk_storage::read_range(&wal_dir, base, target).map_err(|e| e.to_string())?;
    replay(&mut tree, records, &wal_dir)?;
    let path = snap::write(&snap_dir, target, |w| tree.write_snapshot(w)).map_err(|e| format!("{}: {e}", snap_dir.display()))?;
    tracing::info!(snapshot = %path.display(), nodes = tree.node_count(), ms = started.elapsed().as_millis() as u64, "snapshot written");
    if config.purge_interval_hours > 0 {
        purge(config)?;
    }
    Ok(Some(path))
}

/// Keeps the newest `snapRetainCount` snapshots and the log segments they need.
pub fn purge(config: &ServerConfig) -> Result<(), String> {
    let (wal_dir, snap_dir) = dirs(config);
    if let Some(oldest) = snap::purge(&snap_dir, config.snap_retain_count).map_err(|e| e.to_string())? {
        let removed = ferrozk_storage::purge_log(&wal_dir, oldest).map_err(|e| e.to_string())?;
        if removed > 0 {
            tracing::info!(removed, "purged log segments covered by snapshots");
        }
    }
    Ok(())
}

/// Takes snapshots when the committer asks, one at a time, newest request first.
pub fn run_snapshotter(config: ServerConfig, rx: std::sync::mpsc::Receiver<u64>) {
    // The snapshot competes with the request path for the cores; it yields to it (Linux
    // threads have their own nice value).
    #[cfg(target_os = "linux")]
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 19);
    }
    while let Ok(mut target) = rx.recv() {
        while let Ok(t) = rx.try_recv() {
            target = t;
        }
        if let Err(e) = take_snapshot(&config, target) {
            tracing::error!("snapshot at {target} failed: {e}");
        }
    }
}

/// Expires sessions on tick boundaries and reaps empty containers and expired TTL nodes.
pub async fn run_expiry(shared: Arc<Shared>) {
    let tick = shared.config.tick_time.max(1);
    let reap_every = shared.config.container_check_interval_ms;
    let mut next_reap = shared.now() + reap_every;
    let mut next_tick = (shared.now() / tick + 1) * tick;
    loop {
        // Wake for whichever comes first: the next tick boundary or the next reaping.
        let now = shared.now();
        let wake = next_tick.min(next_reap);
        tokio::time::sleep(Duration::from_millis(wake.saturating_sub(now))).await;
        let now = shared.now();
        if now >= next_tick {
            next_tick = (now / tick + 1) * tick;
            expire_sessions(&shared, now);
        }
        if now >= next_reap {
            next_reap = now + reap_every;
            let candidates = shared.lock().tree.reap_candidates(wall_ms());
            for path in candidates {
                shared.propose_detached(0, TxnOp::DeleteContainer { path });
            }
        }
    }
}

/// Proposes the close of every session whose lease ran out by `now`.
fn expire_sessions(shared: &Shared, now: u64) {
    let expired: Vec<i64> = {
        let mut core = shared.lock();
        let mut ids = Vec::new();
        for (id, t) in core.sessions.iter_mut() {
            if !t.closing && t.expires_at <= now {
                t.closing = true;
                ids.push(*id);
            }
        }
        ids
    };
    for id in expired {
        tracing::info!(session = format!("0x{id:x}"), "session expired");
        shared.propose_detached(id, TxnOp::CloseSession);
    }
}
