//! The state every connection shares: the tree, the watches, the connections and sessions of
//! this server ([`Core`], under the one lock), and what the server knows of its ensemble
//! ([`Shared`]: leadership, quorum, the proposer's queue).
//!
//! A request passes through these stages, each in a file of its own (ARCHITECTURE.md follows a
//! write and a read through them): [`crate::conn`] reads frames and [`crate::dispatch`] routes
//! each request; [`crate::order`] registers writes, sends them to consensus ([`crate::raft`])
//! and holds what must wait behind them; [`crate::apply`] applies committed entries and
//! answers; [`crate::sessions`] tracks and expires sessions; [`crate::stats`] counts.
//!
//! Lock order: `Shared::core` is the only lock; it is never held across an await.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use ferrozk_proto::Id;
use ferrozk_storage::snap;
use ferrozk_tree::{DataTree, TreeConfig, Watches};
use tokio::sync::mpsc;

use crate::config::ServerConfig;
use crate::order::{PendingWrite, Waiting};
use crate::raft::Outbound;
use crate::sessions::Tracked;
use crate::stats::{EnsembleStats, Latency, Stats};

pub type ConnId = u64;

pub use crate::outbox::{Out, Outbox};

/// A client connection as the shared state sees it.
pub struct ConnEntry {
    pub peer: SocketAddr,
    pub session: i64,
    pub auth: Vec<Id>,
    pub out: Outbox,
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
    /// Served by a member cut off from the quorum: reads only.
    pub read_only: bool,
}

pub struct Core {
    pub tree: DataTree,
    pub watches: Watches,
    pub conns: HashMap<ConnId, ConnEntry>,
    pub sessions: HashMap<i64, Tracked>,
    pub per_ip: HashMap<IpAddr, usize>,
    pub stats: Stats,
    pub(crate) next_session_id: i64,
    /// Writes proposed by this member, by token, until applied (or failed).
    pub(crate) writes: HashMap<u64, PendingWrite>,
    /// Per connection, what waits behind its writes: their own slots and the reads and
    /// replies that must leave after them.
    pub(crate) backlog: HashMap<ConnId, VecDeque<Waiting>>,
    pub(crate) next_token: u64,
    /// Sessions heard from since the last liveness report to the leader.
    pub(crate) touched: HashSet<i64>,
}

pub struct Shared {
    pub config: ServerConfig,
    pub core: Mutex<Core>,
    /// The proposer's input, bounded (see `order::Slot`).
    pub(crate) proposals: mpsc::Sender<Option<Outbound>>,
    pub started: Instant,
    pub bound: SocketAddr,
    /// This member's id in the ensemble (1 when standalone).
    pub my_id: u64,
    /// Whether this server runs as one member of several (else: standalone).
    pub ensemble: bool,
    is_leader: AtomicBool,
    /// The current leader's id (0: none known).
    leader: AtomicU64,
    pub(crate) relink: AtomicBool,
    /// A reconfig is being carried out here (one at a time, as ZooKeeper's ReconfigInProgress).
    pub reconfig_in_progress: AtomicBool,
    /// This leader was removed from the voters and waits for one of them to take over: it
    /// proposes nothing meanwhile (see `raft::membership::hand_over`).
    pub handing_over: AtomicBool,
    /// False while this leader hears no quorum (check-quorum).
    quorum: AtomicBool,
    /// Signalled when snapCount writes were applied since the last snapshot.
    pub snapshot_due: tokio::sync::Notify,
    /// A snapshot writer is running; a clean stop waits for it (see `SnapshotWriting`).
    pub snapshot_writing: tokio::sync::watch::Sender<bool>,
    pub(crate) ensemble_stats: std::sync::OnceLock<Box<dyn Fn() -> EnsembleStats + Send + Sync>>,
    next_conn: AtomicU64,
    /// Client requests read and not yet answered, over all connections (`globalOutstandingLimit`).
    pub global_in_flight: Arc<std::sync::atomic::AtomicUsize>,
    pub limits: crate::stats::LimitCounters,
    /// Sessions being created at once: at most `globalOutstandingLimit`.
    pub session_creations: tokio::sync::Semaphore,
}

pub fn wall_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Shared {
    pub fn new(
        config: ServerConfig,
        bound: SocketAddr,
        tree: DataTree,
        my_id: u64,
    ) -> (Arc<Shared>, mpsc::Receiver<Option<Outbound>>) {
        let (tx, rx) = mpsc::channel(crate::order::proposal_queue_len(&config));
        let ensemble = config.members.len() > 1;
        let global_limit = config.global_outstanding_limit;
        // Session ids carry the server id in their top byte, as ZooKeeper's do (0 standalone).
        let sid = if ensemble { my_id } else { 0 };
        let shared = Arc::new(Shared {
            core: Mutex::new(Core::with_tree(tree, sid)),
            config,
            proposals: tx,
            started: Instant::now(),
            bound,
            my_id,
            ensemble,
            is_leader: AtomicBool::new(false),
            leader: AtomicU64::new(0),
            relink: AtomicBool::new(false),
            reconfig_in_progress: AtomicBool::new(false),
            handing_over: AtomicBool::new(false),
            quorum: AtomicBool::new(true),
            snapshot_due: tokio::sync::Notify::new(),
            snapshot_writing: tokio::sync::watch::channel(false).0,
            ensemble_stats: std::sync::OnceLock::new(),
            next_conn: AtomicU64::new(1),
            global_in_flight: Arc::default(),
            limits: Default::default(),
            session_creations: tokio::sync::Semaphore::new(match global_limit {
                0 => tokio::sync::Semaphore::MAX_PERMITS,
                n => n,
            }),
        });
        {
            let mut core = shared.lock();
            core.track_recovered(&shared);
        }
        (shared, rx)
    }

    /// Asks the proposer to send what it has and stop.
    pub fn stop_proposer(&self) {
        self.hand_to_proposer(None, None);
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

    pub fn is_leader(&self) -> bool {
        self.is_leader.load(Ordering::Acquire)
    }

    /// Whether this server serves clients normally: standalone, or an ensemble member that
    /// knows a leader (a member cut off from the quorum serves nobody, or read-only sessions).
    pub fn serving(&self) -> bool {
        !self.ensemble || (self.leader().is_some() && self.quorum.load(Ordering::Acquire))
    }

    /// The leader's check-quorum verdict; returns whether it changed.
    pub fn set_quorum(&self, ok: bool) -> bool {
        let was = self.serving();
        let changed = self.quorum.swap(ok, Ordering::AcqRel) != ok;
        if changed {
            self.serving_changed(was);
            if ok && self.is_leader() {
                // Time without a quorum never counts against a session: its client had no
                // member to renew it at.
                self.renew_all_sessions();
            }
        }
        changed
    }

    /// As a ZooKeeper member restarts its server when it loses or finds the quorum: losing
    /// it, its clients go and find a member that has one; finding it, the read-only sessions
    /// end (their clients reconnect read-write).
    fn serving_changed(&self, was: bool) {
        let now = self.serving();
        if !self.ensemble || was == now {
            return;
        }
        let mut core = self.lock();
        let ids: Vec<ConnId> = core.conns.iter().filter(|(_, c)| !now || c.read_only).map(|(id, _)| *id).collect();
        for id in ids {
            if let Some(c) = core.conns.get(&id) {
                c.out.close();
            }
        }
        core.sessions.retain(|_, t| !t.local);
    }

    /// Cut off from the quorum with `readonlymode.enabled`: serving read-only sessions.
    pub fn read_only(&self) -> bool {
        !self.serving() && self.config.read_only_mode
    }

    /// The current leader's id, if one is known.
    pub fn leader(&self) -> Option<u64> {
        Some(self.leader.load(Ordering::Acquire)).filter(|l| *l != 0)
    }

    pub fn on_leader_change(&self, leader: Option<u64>, term: u64) {
        let leading = leader == Some(self.my_id);
        let was = self.serving();
        self.leader.store(leader.unwrap_or(0), Ordering::Release);
        self.is_leader.store(leading, Ordering::Release);
        if !leading {
            self.quorum.store(true, Ordering::Release);
        }
        self.fail_sent_writes(leader.map(|l| (l, term)));
        self.serving_changed(was);
        if leading {
            self.renew_all_sessions();
        }
    }
}

pub(crate) fn new_tree(config: &ServerConfig) -> DataTree {
    DataTree::new(tree_config(config))
}

impl Core {
    pub fn new(config: &ServerConfig) -> Core {
        Self::with_tree(new_tree(config), 0)
    }

    /// Wraps a recovered tree; its sessions must be re-tracked with [`Core::track_recovered`].
    pub fn with_tree(tree: DataTree, sid: u64) -> Core {
        // ZooKeeper's scheme: the time in the high bits, the server id in the top byte.
        let next_session_id = (((wall_ms() << 24) as u64 >> 8) | (sid << 56)) as i64;
        Core {
            tree,
            watches: Watches::default(),
            conns: HashMap::new(),
            sessions: HashMap::new(),
            per_ip: HashMap::new(),
            stats: Stats::default(),
            next_session_id,
            writes: HashMap::new(),
            backlog: HashMap::new(),
            next_token: 0,
            touched: HashSet::new(),
        }
    }
}

/// Where the log and the snapshots live.
pub fn dirs(config: &ServerConfig) -> (PathBuf, PathBuf) {
    let wal = config.data_log_dir.as_ref().unwrap_or(&config.data_dir).join("wal");
    (wal, config.data_dir.join("snapshots"))
}

pub(crate) fn tree_config(config: &ServerConfig) -> TreeConfig {
    TreeConfig {
        ttl_enabled: config.extended_types_enabled,
        enforce_quota: config.enforce_quota,
        x509_enabled: config.secure_client_addr.is_some(),
    }
}

/// Keeps the newest `snapRetainCount` snapshots and the log segments they need (and never a
/// record past `log_start`, where the log consensus still reads begins).
pub fn purge(config: &ServerConfig, log_start: u64) -> Result<(), String> {
    let (wal_dir, snap_dir) = dirs(config);
    if let Some(oldest) = snap::purge(&snap_dir, config.snap_retain_count).map_err(|e| e.to_string())? {
        let removed = ferrozk_storage::purge_log(&wal_dir, oldest.min(log_start)).map_err(|e| e.to_string())?;
        if removed > 0 {
            tracing::info!(removed, "purged log segments covered by snapshots");
        }
    }
    Ok(())
}
