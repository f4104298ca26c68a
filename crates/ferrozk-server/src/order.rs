//! Submit and order: the stage between a connection and consensus (ZooKeeper's
//! PrepRequestProcessor and the commit wait of its CommitProcessor). A write is registered here
//! under a token, takes its place in its connection's order and goes to the proposer; reads,
//! auth replies and closes of a connection with writes in flight queue behind them
//! ([`Core::answer_or_queue`]) and leave once the writes before them are answered. This keeps
//! invariants 3 and 4 of DESIGN.md: a session sees its own writes in order, and replies leave a
//! connection in the order its requests came. Writes whose outcome became unknown (the leader
//! changed, the link went silent) fail by closing their connection, as ZooKeeper's do.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrozk_proto::{Encode, Id};
use ferrozk_tree::{Applied, Txn, TxnOp};
use tokio::sync::oneshot;

use crate::core::{wall_ms, ConnId, Core, Outbox, Shared};
use crate::raft::{Command, Outbound};

pub(crate) struct PendingWrite {
    pub(crate) reply: Reply,
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
    pub out: Outbox,
    pub xid: i32,
    pub opcode: i32,
    pub at: Instant,
}

impl ReplyTo {
    /// Sends the frame (and a close, if asked) and counts the reply; the request no longer
    /// counts as in flight.
    pub(crate) fn send(self, core: &mut Core, frame: Option<Vec<u8>>, close: bool) {
        if frame.is_some() {
            core.count_reply(self.conn, Some(self.at), self.opcode, self.xid);
        }
        self.out.reply(frame);
        if close {
            self.out.close();
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

/// A place in the proposer's input queue. That queue is bounded: a connection takes a slot
/// before it dispatches a request (waiting, and so not reading, while the queue is full), and
/// what the request proposes goes into it. The server's own messages (session closes, reaped
/// containers, liveness reports, relayed writes) go in when there is room, or wait in a task
/// of their own; there are at most a few per session.
pub type Slot = tokio::sync::mpsc::OwnedPermit<Option<Outbound>>;

/// The proposer's input queue, in messages: `globalOutstandingLimit` (1000 when unlimited).
pub(crate) fn proposal_queue_len(config: &crate::config::ServerConfig) -> usize {
    match config.global_outstanding_limit {
        0 => 1000,
        n => n.clamp(64, 1 << 16),
    }
}

impl Shared {
    /// Hands a message to the proposer: through `slot` when the request that makes it took one.
    pub(crate) fn hand_to_proposer(&self, o: Option<Outbound>, slot: Option<Slot>) {
        use tokio::sync::mpsc::error::TrySendError;
        if let Some(slot) = slot {
            slot.send(o);
            return;
        }
        match self.proposals.try_send(o) {
            Ok(()) | Err(TrySendError::Closed(_)) => {}
            Err(TrySendError::Full(o)) => {
                let tx = self.proposals.clone();
                tokio::spawn(async move {
                    let _ = tx.send(o).await;
                });
            }
        }
    }

    /// Sends a write to consensus; the receiver yields its result once applied here.
    pub fn propose(&self, session: i64, auth: Vec<Id>, op: TxnOp) -> oneshot::Receiver<Applied> {
        let (tx, rx) = oneshot::channel();
        self.submit_write(Txn { session, time: wall_ms(), auth, op }, Reply::Internal(tx), None);
        rx
    }

    /// A write of the server's own that nobody waits for.
    pub fn propose_detached_op(&self, op: TxnOp) {
        self.propose_detached(0, op);
    }

    pub(crate) fn propose_detached(&self, session: i64, op: TxnOp) {
        self.submit_write(Txn { session, time: wall_ms(), auth: Vec::new(), op }, Reply::None, None);
    }

    /// Proposes a client's write; it is answered on its connection, in order, once applied.
    pub fn submit_write(&self, txn: Txn, reply: Reply, slot: Option<Slot>) {
        let mut bytes = Vec::with_capacity(256);
        txn.encode(&mut bytes);
        self.submit(Some(bytes), reply, slot);
    }

    /// A `sync`: a barrier entry through the leader; once this member applies it, every write
    /// acknowledged before the sync is visible here.
    pub fn submit_sync(&self, reply: ReplyTo, path: String, slot: Option<Slot>) {
        self.submit(None, Reply::Sync(reply, path), slot);
    }

    /// With `linearizableReads`: the connection's next read waits for a barrier entry, so it
    /// sees every write acknowledged anywhere before it was asked.
    pub fn submit_barrier(&self, conn: ConnId, slot: Option<Slot>) {
        self.submit(None, Reply::Barrier(conn), slot);
    }

    /// A client's reconfig: the leader changes the membership, then the new config is
    /// applied like a write and answered in this connection's order.
    pub fn submit_reconfig(&self, reply: ReplyTo, plan: crate::raft::ReconfigPlan, slot: Option<Slot>) {
        let token = self.register(Reply::Client(reply));
        self.hand_to_proposer(Some(Outbound::Reconfig { token, plan }), slot);
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
    pub(crate) fn register(&self, reply: Reply) -> u64 {
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

    fn submit(&self, txn: Option<Vec<u8>>, reply: Reply, slot: Option<Slot>) {
        let token = self.register(reply);
        let command = Command { origin: self.my_id, token, txn };
        self.hand_to_proposer(Some(Outbound::Write { token, command }), slot);
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
                        e.out.close();
                    }
                }
            }
        }
    }

    /// Writes another member forwarded to this leader, proposed with its own. Waits while the
    /// proposer's queue is full: the member's stream is not read meanwhile.
    pub async fn relay(&self, commands: Vec<Command>) {
        let _ = self.proposals.send(Some(Outbound::Relay(commands))).await;
    }
}

impl Core {
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
                    reply.out.frame(f);
                }
                reply.send(self, Some(frame), false);
            }
            Waiting::Forward { frame, close, reply } => reply.send(self, frame, close),
        }
    }

    /// A connection's write `token` is answered: what queued behind it up to its next write
    /// is answered now.
    pub(crate) fn release_backlog(&mut self, conn: ConnId, token: u64) {
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

    /// `sync`s of this member's clients not yet applied here.
    pub fn pending_syncs(&self) -> usize {
        self.writes.values().filter(|w| matches!(w.reply, Reply::Sync(..))).count()
    }

    /// A connection ended: nothing waits on it any more.
    pub fn forget_conn(&mut self, conn: ConnId) {
        self.backlog.remove(&conn);
    }
}
