//! The state every connection shares, and the write path: writes are proposed to consensus
//! ([`crate::raft`]), applied in log order by [`Core::apply_entry`] on every member, and
//! answered by the member holding the client's connection, together with the reads that
//! queued behind them.
//!
//! Lock order: `Shared::core` is the only lock; it is never held across an await.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferrozk_proto::codes::{state, xid};
use ferrozk_proto::frame::write_frame;
use ferrozk_proto::{Decode, Encode, Id, ReplyHeader, SyncResponse, WatcherEvent};
use ferrozk_storage::snap;
use ferrozk_tree::{acl, Applied, Change, DataTree, TreeConfig, Txn, TxnOp, Watches};
use std::path::PathBuf;
use tokio::sync::{mpsc, oneshot};

use crate::config::ServerConfig;
use crate::raft::{Command, Outbound};

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
    /// Served by a member cut off from the quorum: reads only.
    pub read_only: bool,
}

/// A live session on this server: when it expires and which connection holds it.
pub struct Tracked {
    pub timeout: u64,
    pub expires_at: u64,
    pub owner: Option<ConnId>,
    pub closing: bool,
    /// A read-only session of a member cut off from the quorum: known only here.
    pub local: bool,
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
    /// Writes proposed by this member, by token, until applied (or failed).
    writes: HashMap<u64, PendingWrite>,
    /// Per connection, what waits behind its writes: their own slots and the reads and
    /// replies that must leave after them.
    backlog: HashMap<ConnId, VecDeque<Waiting>>,
    next_token: u64,
    /// Sessions heard from since the last liveness report to the leader.
    touched: HashSet<i64>,
}

struct PendingWrite {
    reply: Reply,
    /// The client session it is answered to, if any (0: none).
    session: i64,
    /// The leader and term it was handed to: a change of either fails it (its outcome is
    /// then unknown).
    sent_to: Option<(u64, u64)>,
    sent_at: Option<Instant>,
}

/// Something a connection must answer in its place among its writes.
pub enum Waiting {
    Write(u64),
    /// A read of a session with writes in flight: answered once they are applied, so it sees
    /// exactly the session's earlier writes and none of its later ones.
    Read {
        req: ferrozk_proto::Request,
        session: i64,
        auth: Arc<Vec<Id>>,
        reply: ReplyTo,
    },
    /// A frame (and/or a close) that must leave after everything queued before it.
    Forward {
        frame: Option<Vec<u8>>,
        close: bool,
        reply: ReplyTo,
    },
}

/// Where the answer to a client's request goes: its connection, in the session's order.
pub struct ReplyTo {
    pub conn: ConnId,
    pub out: mpsc::UnboundedSender<Out>,
    pub xid: i32,
    pub opcode: i32,
    pub at: Instant,
}

impl ReplyTo {
    /// Sends the frame (and a close, if asked) and counts the reply.
    fn send(self, core: &mut Core, frame: Option<Vec<u8>>, close: bool) {
        if let Some(f) = frame {
            let _ = self.out.send(Out::Frame(f));
            core.count_reply(self.conn, Some(self.at), self.opcode, self.xid);
        }
        if close {
            let _ = self.out.send(Out::Close);
        }
    }
}

/// Who waits for a write.
pub enum Reply {
    None,
    /// The server itself (session creation in the handshake).
    Internal(oneshot::Sender<Applied>),
    Client(ReplyTo),
    /// A `sync`: answered with its path once the barrier entry is applied here.
    Sync(ReplyTo, String),
    /// A barrier that a connection's next read waits behind (`linearizableReads`).
    Barrier(ConnId),
}

/// The leader's view of its members, for mntr (kept current by the consensus module).
#[derive(Default, Clone, Copy)]
pub struct EnsembleStats {
    pub voters: usize,
    /// Other members this leader replicates to (voters and observers).
    pub followers: usize,
    /// Of those, the voters caught up with it,
    pub synced: usize,
    /// the observers,
    pub synced_observers: usize,
    /// and the members outside the config that still follow (ZooKeeper's non-voting followers).
    pub synced_non_voting: usize,
}

impl Reply {
    /// The connection whose order this write holds a place in.
    fn conn(&self) -> Option<ConnId> {
        match self {
            Reply::Client(r) | Reply::Sync(r, _) => Some(r.conn),
            Reply::Barrier(c) => Some(*c),
            Reply::None | Reply::Internal(_) => None,
        }
    }
}

pub struct Shared {
    pub config: ServerConfig,
    pub core: Mutex<Core>,
    proposals: mpsc::UnboundedSender<Option<Outbound>>,
    pub started: Instant,
    pub bound: SocketAddr,
    /// This member's id in the ensemble (1 when standalone).
    pub my_id: u64,
    /// Whether this server runs as one member of several (else: standalone).
    pub ensemble: bool,
    is_leader: AtomicBool,
    /// The current leader's id (0: none known).
    leader: AtomicU64,
    relink: AtomicBool,
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
    ensemble_stats: std::sync::OnceLock<Box<dyn Fn() -> EnsembleStats + Send + Sync>>,
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
        my_id: u64,
    ) -> (Arc<Shared>, mpsc::UnboundedReceiver<Option<Outbound>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let ensemble = config.members.len() > 1;
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
        });
        {
            let mut core = shared.lock();
            core.track_recovered(&shared);
        }
        (shared, rx)
    }

    /// Asks the proposer to send what it has and stop.
    pub fn stop_proposer(&self) {
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
        self.expiry_from(Instant::now(), timeout)
    }

    /// [`Shared::expiry_for`] counted from `at` instead of now.
    pub fn expiry_from(&self, at: Instant, timeout: u64) -> u64 {
        let tick = self.config.tick_time.max(1);
        let at = at.saturating_duration_since(self.started).as_millis() as u64;
        ((at + timeout) / tick + 1) * tick
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

    /// Gives every session a fresh timeout from now, as ZooKeeper's leader does when it
    /// takes over: it cannot know when its clients last reached some member.
    fn renew_all_sessions(&self) {
        let mut core = self.lock();
        let now_ids: Vec<(i64, u64)> = core.sessions.iter().map(|(id, t)| (*id, t.timeout)).collect();
        for (id, timeout) in now_ids {
            let at = self.expiry_for(timeout);
            if let Some(t) = core.sessions.get_mut(&id) {
                t.expires_at = at;
                t.closing = false;
            }
        }
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
                let _ = c.out.send(Out::Close);
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

    /// Sends a write to consensus; the receiver yields its result once applied here.
    pub fn propose(&self, session: i64, auth: Vec<Id>, op: TxnOp) -> oneshot::Receiver<Applied> {
        let (tx, rx) = oneshot::channel();
        self.submit_write(Txn { session, time: wall_ms(), auth, op }, Reply::Internal(tx));
        rx
    }

    /// A write of the server's own that nobody waits for.
    pub fn propose_detached_op(&self, op: TxnOp) {
        self.propose_detached(0, op);
    }

    fn propose_detached(&self, session: i64, op: TxnOp) {
        self.submit_write(Txn { session, time: wall_ms(), auth: Vec::new(), op }, Reply::None);
    }

    /// Proposes a client's write; it is answered on its connection, in order, once applied.
    pub fn submit_write(&self, txn: Txn, reply: Reply) {
        let mut bytes = Vec::with_capacity(256);
        txn.encode(&mut bytes);
        self.submit(Some(bytes), reply);
    }

    /// A `sync`: a barrier entry through the leader; once this member applies it, every write
    /// acknowledged before the sync is visible here.
    pub fn submit_sync(&self, reply: ReplyTo, path: String) {
        self.submit(None, Reply::Sync(reply, path));
    }

    /// With `linearizableReads`: the connection's next read waits for a barrier entry, so it
    /// sees every write acknowledged anywhere before it was asked.
    pub fn submit_barrier(&self, conn: ConnId) {
        self.submit(None, Reply::Barrier(conn));
    }

    /// A client's reconfig: the leader changes the membership, then the new config is
    /// applied like a write and answered in this connection's order.
    pub fn submit_reconfig(&self, reply: ReplyTo, plan: crate::raft::ReconfigPlan) {
        let token = self.register(Reply::Client(reply));
        let _ = self.proposals.send(Some(Outbound::Reconfig { token, plan }));
    }

    /// Answers a write that will not be applied with ZooKeeper's error `code`.
    pub fn fail_write_with(&self, token: u64, code: ferrozk_proto::ErrorCode) {
        let mut core = self.lock();
        if let Some(PendingWrite { reply: Reply::Client(r), .. }) = core.writes.remove(&token) {
            let zxid = core.tree.last_zxid();
            let frame = crate::ops::reply_frame(r.xid, zxid, code.code(), None);
            let conn = r.conn;
            r.send(&mut core, Some(frame), false);
            core.release_backlog(conn, token);
        }
    }

    /// Records a write waiting on this member; a connection's write takes its place in that
    /// connection's order.
    fn register(&self, reply: Reply) -> u64 {
        let mut core = self.lock();
        core.next_token += 1;
        let token = core.next_token;
        let mut session = 0;
        if let Some(c) = reply.conn() {
            core.backlog.entry(c).or_default().push_back(Waiting::Write(token));
            session = core.conns.get(&c).map_or(0, |c| c.session);
        }
        core.writes.insert(token, PendingWrite { reply, session, sent_to: None, sent_at: None });
        token
    }

    /// Whether a write a client of `session` sent here (on any of its connections) is still
    /// in flight. A session that moves to a new connection waits for these first, so that it
    /// sees its own writes in order (ZooKeeper orders a session's requests, not a
    /// connection's).
    pub fn session_writes_in_flight(&self, session: i64) -> bool {
        self.lock().writes.values().any(|w| w.session == session)
    }

    fn submit(&self, txn: Option<Vec<u8>>, reply: Reply) {
        let token = self.register(reply);
        let command = Command { origin: self.my_id, token, txn };
        let _ = self.proposals.send(Some(Outbound::Write { token, command }));
    }

    /// The proposer hands these writes to `leader` in `term` now.
    pub fn mark_sent(&self, tokens: &[u64], leader: u64, term: u64) {
        let mut core = self.lock();
        for t in tokens {
            if let Some(w) = core.writes.get_mut(t) {
                w.sent_to = Some((leader, term));
                w.sent_at = Some(Instant::now());
            }
        }
    }

    /// A write handed over long ago and still not applied was lost on the way (a link that
    /// silently stopped delivering, a leader that dropped it): it fails like the others, and
    /// the proposer opens a new link. Returns whether any did.
    pub fn fail_stale_writes(&self, max_age: Duration) -> bool {
        let stale = self.lock().writes.values().any(|w| w.sent_at.is_some_and(|t| t.elapsed() > max_age));
        if stale {
            tracing::warn!("writes handed to the leader {max_age:?} ago were never applied: failing them and reconnecting");
            self.relink.store(true, Ordering::Release);
            self.fail_sent_writes(None);
        }
        stale
    }

    /// Whether the proposer must open a new link to the leader (and clears the request).
    pub fn take_relink(&self) -> bool {
        self.relink.swap(false, Ordering::AcqRel)
    }

    /// Writes handed to a leader other than `current` (all, if `None`) have an unknown
    /// outcome: their connections are closed (the client sees a connection loss, as in
    /// ZooKeeper) and nothing waits for them.
    pub fn fail_sent_writes(&self, current: Option<(u64, u64)>) {
        let mut core = self.lock();
        let failed: Vec<u64> = core
            .writes
            .iter()
            .filter(|(_, w)| w.sent_to.is_some() && (current.is_none() || w.sent_to != current))
            .map(|(t, _)| *t)
            .collect();
        for t in failed {
            if let Some(w) = core.writes.remove(&t) {
                if let Some(c) = w.reply.conn() {
                    core.backlog.remove(&c);
                    if let Some(e) = core.conns.get(&c) {
                        let _ = e.out.send(Out::Close);
                    }
                }
            }
        }
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

    /// The ensemble's replication as mntr shows it, read from consensus when asked.
    pub fn ensemble_stats(&self) -> EnsembleStats {
        self.ensemble_stats.get().map_or_else(EnsembleStats::default, |stats| stats())
    }

    pub fn set_ensemble_stats_source(&self, stats: Box<dyn Fn() -> EnsembleStats + Send + Sync>) {
        let _ = self.ensemble_stats.set(stats);
    }

    /// Writes another member forwarded to this leader, proposed with its own.
    pub fn relay(&self, commands: Vec<Command>) {
        let _ = self.proposals.send(Some(Outbound::Relay(commands)));
    }

    /// Liveness reported by a member for the sessions of its clients.
    pub fn touch_sessions(&self, ids: &[i64]) {
        let mut core = self.lock();
        for id in ids {
            if let Some(t) = core.sessions.get_mut(id) {
                if !t.closing {
                    t.expires_at = self.expiry_for(t.timeout);
                }
            }
        }
    }

    /// A snapshot from the leader replaced this member's state: clients reconnect (and set
    /// their watches again) as after a ZooKeeper follower's resync.
    pub fn replace_tree(&self, tree: DataTree) {
        let mut core = self.lock();
        for c in core.conns.values() {
            let _ = c.out.send(Out::Close);
        }
        core.tree = tree;
        core.sessions.clear();
        core.writes.clear();
        core.backlog.clear();
        core.track_recovered(self);
    }

    /// Reports the sessions this member's clients kept alive to the leader.
    fn report_liveness(&self) {
        let ids: Vec<i64> = self.lock().touched.drain().collect();
        if !ids.is_empty() && !self.is_leader() {
            let _ = self.proposals.send(Some(Outbound::Touch(ids)));
        }
    }
}

/// A log entry's write (none: a barrier) applied to the tree alone: what every member and a
/// restart's replay do alike. The decoded txn and its effects, if it was one.
pub(crate) fn apply_to_tree(tree: &mut DataTree, zxid: i64, txn: Option<&[u8]>) -> Option<(Txn, Applied)> {
    let decoded = txn.map(|b| Txn::decode(&mut ferrozk_proto::Reader::new(b)));
    match decoded {
        Some(Ok(txn)) => {
            let applied = tree.apply(zxid, &txn);
            Some((txn, applied))
        }
        other => {
            if let Some(Err(e)) = other {
                // Every member skips it alike; it passed its checksum, so this is a bug.
                tracing::error!(zxid, "undecodable transaction in the log: {e}");
            }
            tree.set_last_zxid(zxid);
            None
        }
    }
}

pub(crate) fn new_tree(config: &ServerConfig) -> DataTree {
    DataTree::new(tree_config(config))
}

impl Core {
    /// After a restart every recovered session gets a fresh timeout, as in ZooKeeper: its
    /// client may re-attach, or it expires and takes its ephemerals with it.
    pub fn track_recovered(&mut self, shared: &Shared) {
        let ids: Vec<(i64, i32)> = self.tree.sessions().iter().map(|(id, s)| (*id, s.timeout)).collect();
        for (id, timeout) in ids {
            let timeout = timeout.max(0) as u64;
            self.sessions.insert(
                id,
                Tracked { timeout, expires_at: shared.expiry_for(timeout), owner: None, closing: false, local: false },
            );
        }
    }

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

    /// Answers now if nothing of this connection is in flight, else queues behind it.
    pub fn answer_or_queue(&mut self, conn: ConnId, w: Waiting) {
        match self.backlog.get_mut(&conn) {
            Some(q) if !q.is_empty() => q.push_back(w),
            _ => self.run_waiting(w),
        }
    }

    fn run_waiting(&mut self, w: Waiting) {
        match w {
            Waiting::Write(_) => {}
            Waiting::Read { req, session, auth, reply } => {
                let (pre, frame) = crate::ops::answer_read(self, reply.conn, session, &auth, reply.xid, &req);
                for f in pre {
                    let _ = reply.out.send(Out::Frame(f));
                }
                reply.send(self, Some(frame), false);
            }
            Waiting::Forward { frame, close, reply } => reply.send(self, frame, close),
        }
    }

    /// A connection's write `token` is answered: what queued behind it up to its next write
    /// is answered now.
    fn release_backlog(&mut self, conn: ConnId, token: u64) {
        let Some(q) = self.backlog.get_mut(&conn) else { return };
        if let Some(pos) = q.iter().position(|w| matches!(w, Waiting::Write(t) if *t == token)) {
            q.remove(pos);
        }
        let mut ready = Vec::new();
        while q.front().is_some_and(|w| !matches!(w, Waiting::Write(_))) {
            ready.extend(q.pop_front());
        }
        if q.is_empty() {
            self.backlog.remove(&conn);
        }
        for w in ready {
            self.run_waiting(w);
        }
    }

    /// Applies log entry `zxid` (on every member, in log order) and answers the client if it
    /// waits on this member. `txn`: `None` for consensus entries, `Some(None)` for a sync
    /// barrier, `Some(Some(bytes))` for a write.
    pub fn apply_entry(&mut self, shared: &Shared, zxid: i64, origin: u64, token: u64, txn: Option<Option<&[u8]>>) {
        let mine = if origin == shared.my_id && origin != 0 { self.writes.remove(&token) } else { None };
        let Some((txn, applied)) = apply_to_tree(&mut self.tree, zxid, txn.flatten()) else {
            match mine.map(|w| w.reply) {
                Some(Reply::Sync(r, path)) => {
                    let frame = crate::ops::reply_frame(r.xid, zxid, 0, Some(&SyncResponse { path }));
                    let conn = r.conn;
                    r.send(self, Some(frame), false);
                    self.release_backlog(conn, token);
                }
                Some(Reply::Barrier(conn)) => self.release_backlog(conn, token),
                _ => {}
            }
            return;
        };
        let from_client = matches!(mine, Some(PendingWrite { reply: Reply::Client(_), .. }));
        self.after_apply(shared, &txn, &applied, from_client);
        match mine.map(|w| w.reply) {
            None | Some(Reply::None) => {}
            Some(Reply::Internal(tx)) => {
                let _ = tx.send(applied);
            }
            Some(Reply::Client(r)) => {
                let frame = crate::ops::write_reply(r.xid, r.opcode, &applied);
                let close = txn.op == TxnOp::CloseSession;
                let conn = r.conn;
                r.send(self, Some(frame), close);
                self.release_backlog(conn, token);
            }
            Some(Reply::Sync(r, _)) => {
                let conn = r.conn;
                r.send(self, None, false);
                self.release_backlog(conn, token);
            }
            Some(Reply::Barrier(conn)) => self.release_backlog(conn, token),
        }
    }

    /// `sync`s of this member's clients not yet applied here.
    pub fn pending_syncs(&self) -> usize {
        self.writes.values().filter(|w| matches!(w.reply, Reply::Sync(..))).count()
    }

    /// A connection ended: nothing waits on it any more.
    pub fn forget_conn(&mut self, conn: ConnId) {
        self.backlog.remove(&conn);
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

    /// Renews a session's lease; called on every packet from its client, `received` when it
    /// was read.
    pub fn touch(&mut self, shared: &Shared, session: i64, received: Instant) {
        if let Some(t) = self.sessions.get_mut(&session) {
            if !t.closing {
                t.expires_at = shared.expiry_from(received, t.timeout);
            }
        }
        if shared.ensemble {
            self.touched.insert(session);
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
                self.sessions.entry(txn.session).or_insert(Tracked {
                    timeout,
                    expires_at,
                    owner: None,
                    closing: false,
                    local: false,
                });
            }
            TxnOp::CloseSession => {
                if let Some(t) = self.sessions.remove(&txn.session) {
                    // A client's own close is answered first; its reply then closes it.
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

/// Expires sessions on tick boundaries and reaps empty containers and expired TTL nodes.
pub async fn run_expiry(shared: Arc<Shared>) {
    let tick = shared.config.tick_time.max(1);
    let reap_every = shared.config.container_check_interval_ms;
    let mut next_reap = shared.now() + reap_every;
    let mut next_tick = (shared.now() / tick + 1) * tick;
    // Members report their clients' liveness to the leader twice a tick, as ZooKeeper's
    // followers do with their pings.
    let report_every = (tick / 2).max(1);
    // Longer than any election plus a slow fsync: a write older than this was lost.
    let stale_after = Duration::from_millis((crate::raft::timing(&shared.config).1 * 4).max(5000));
    let mut next_report = shared.now() + report_every;
    loop {
        // Wake for whichever comes first: the next tick boundary, report or reaping.
        let now = shared.now();
        let wake = next_tick.min(next_reap).min(if shared.ensemble { next_report } else { u64::MAX });
        tokio::time::sleep(Duration::from_millis(wake.saturating_sub(now))).await;
        let now = shared.now();
        if shared.ensemble {
            shared.fail_stale_writes(stale_after);
        }
        if shared.ensemble && now >= next_report {
            next_report = now + report_every;
            shared.report_liveness();
        }
        // Only the leader expires sessions and reaps nodes; the others propose nothing.
        if !shared.is_leader() {
            if now >= next_tick {
                next_tick = (now / tick + 1) * tick;
                expire_local_sessions(&shared, now);
            }
            if now >= next_reap {
                next_reap = now + reap_every;
            }
            continue;
        }
        // A leader cut off from the quorum expires nothing: its clients cannot reach it, and
        // a close it proposed would commit the moment the quorum came back.
        if now >= next_tick {
            next_tick = (now / tick + 1) * tick;
            if shared.serving() {
                expire_sessions(&shared, now);
            }
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

/// Read-only sessions end where they live: their connection closes.
fn expire_local_sessions(shared: &Shared, now: u64) {
    let mut core = shared.lock();
    let expired: Vec<(i64, Option<ConnId>)> =
        core.sessions.iter().filter(|(_, t)| t.local && t.expires_at <= now).map(|(id, t)| (*id, t.owner)).collect();
    for (id, owner) in expired {
        core.sessions.remove(&id);
        if let Some(c) = owner.and_then(|o| core.conns.get(&o)) {
            let _ = c.out.send(Out::Close);
        }
    }
}

/// Proposes the close of every session whose lease ran out by `now`.
fn expire_sessions(shared: &Shared, now: u64) {
    expire_local_sessions(shared, now);
    let expired: Vec<i64> = {
        let mut core = shared.lock();
        let mut ids = Vec::new();
        for (id, t) in core.sessions.iter_mut() {
            if !t.closing && !t.local && t.expires_at <= now {
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
