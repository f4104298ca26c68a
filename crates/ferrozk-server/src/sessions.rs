//! Sessions: tracking and expiry (ZooKeeper's SessionTracker). Every packet renews its
//! session's lease on the member that holds the connection; members report the sessions they
//! heard from to the leader twice a tick, and only the leader proposes the close of an expired
//! session, on tick boundaries, while it has a quorum. A new leader, or one that finds its
//! quorum again, renews every session: time without a reachable quorum never counts against a
//! client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrozk_tree::TxnOp;

use crate::core::{wall_ms, ConnId, Core, Shared};
use crate::raft::Outbound;

/// A live session on this server: when it expires and which connection holds it.
pub struct Tracked {
    pub timeout: u64,
    pub expires_at: u64,
    pub owner: Option<ConnId>,
    pub closing: bool,
    /// A read-only session of a member cut off from the quorum: known only here.
    pub local: bool,
}

impl Shared {
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

    /// Gives every session a fresh timeout from now, as ZooKeeper's leader does when it
    /// takes over: it cannot know when its clients last reached some member.
    pub(crate) fn renew_all_sessions(&self) {
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

    /// Reports the sessions this member's clients kept alive to the leader.
    pub(crate) fn report_liveness(&self) {
        let ids: Vec<i64> = self.lock().touched.drain().collect();
        if !ids.is_empty() && !self.is_leader() {
            self.hand_to_proposer(Some(Outbound::Touch(ids)), None);
        }
    }
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
            c.out.close();
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
