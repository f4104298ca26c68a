//! The proposer: one task per member that hands its clients' writes to consensus, in the order
//! the connections submitted them (invariant 3 of DESIGN.md: a session's writes apply in its
//! order). On the leader it packs them into log entries (group commit); elsewhere it streams them
//! to the leader, which proposes them in that member's order. A reconfig asked here goes to the
//! leader as a request of its own.
//!
//! Fairness: the leader proposes one entry at a time from a [`FairQueue`], which takes the
//! sessions' writes in turn. A flood of one session (or of many) queued ahead does not stand
//! between another session's write and the next entry: that write waits for the entry being
//! committed and goes in the next (ZooKeeper orders only a session's own requests, so writes
//! of different sessions in flight together may commit in either order).

use std::collections::HashMap;

use super::*;

/// What the proposer sends to the leader: writes in order and liveness reports.
pub enum Outbound {
    Write {
        token: u64,
        command: Command,
    },
    /// Writes another member forwarded to this one (as leader): proposed with its own, in
    /// that member's order.
    Relay(Vec<Command>),
    Touch(Vec<i64>),
    /// A reconfig of a client of this member: the leader changes the membership, then
    /// proposes the new `/zookeeper/config` under this token.
    Reconfig {
        token: u64,
        plan: ReconfigPlan,
    },
}

/// Log entries handed to openraft and not yet applied, at most. One: the writes that arrive
/// meanwhile gather into the next entry, so each fsync (and each replication round) carries
/// one larger batch. With two, batches were smaller (22 writes an fsync instead of 30 under
/// `ferrozk bench` 8x8) for more server CPU a write (standalone and 3 members alike).
const ENTRIES_IN_FLIGHT: usize = 1;

/// Sends this member's writes to the leader in order: as batched log entries when this
/// member leads, over one stream to the leader otherwise.
pub async fn run_proposer(shared: Arc<Shared>, raft: Raft, mut rx: tokio::sync::mpsc::Receiver<Option<Outbound>>) {
    let me = shared.my_id;
    let mut metrics = raft.server_metrics();
    let mut link: Option<(u64, TcpStream)> = None;
    let mut batch = Vec::new();
    let mut in_flight: VecDeque<ResponderReceiver> = VecDeque::new();
    // Writes this leader has taken and not yet put in an entry, and the term they were taken in.
    let mut queue = FairQueue::default();
    let mut queued_term = 0;
    let mut stop = false;
    loop {
        // While openraft still holds earlier entries, let writes gather into the next one.
        while in_flight.len() >= ENTRIES_IN_FLIGHT {
            if let Some(r) = in_flight.pop_front() {
                if !matches!(r.await, Ok(Ok(_))) {
                    // Not applied (no longer leader): their clients learn it as a connection loss.
                    shared.fail_sent_writes(None);
                }
            }
        }
        let limit = MAX_BATCH.saturating_sub(batch.len()).max(1);
        if queue.is_empty() && !stop {
            if rx.recv_many(&mut batch, limit).await == 0 {
                return;
            }
        } else if queue.len() < MAX_QUEUED {
            // Writes are waiting for an entry: take what else arrived, without waiting.
            while batch.len() < limit {
                match rx.try_recv() {
                    Ok(o) => batch.push(o),
                    Err(_) => break,
                }
            }
        }
        stop |= batch.iter().any(|b| b.is_none());
        let (leader, term) = loop {
            let (l, term) = leader_and_term(&metrics.borrow());
            let standing_aside = l == Some(me) && shared.handing_over.load(Ordering::Acquire);
            if let (Some(l), false) = (l, standing_aside) {
                break (l, term);
            }
            // The flag clears without a metrics change when nobody took over (see hand_over).
            let recheck = Duration::from_millis(if standing_aside { 50 } else { 3_600_000 });
            if let Ok(Err(_)) = tokio::time::timeout(recheck, metrics.changed()).await {
                return;
            }
        };
        if (leader, term) != (me, queued_term) {
            // Taken under another leadership: failed as sent to it (on_leader_change) or, if
            // relayed, by the member they came from.
            queue.clear();
            queued_term = term;
        }
        let tokens: Vec<u64> = batch
            .iter()
            .flatten()
            .filter_map(|o| match o {
                Outbound::Write { token, .. } => Some(*token),
                _ => None,
            })
            .collect();
        shared.mark_sent(&tokens, leader, term);
        if leader == me {
            for o in batch.drain(..).flatten() {
                match o {
                    Outbound::Write { command, .. } => queue.push(command),
                    Outbound::Relay(commands) => commands.into_iter().for_each(|c| queue.push(c)),
                    Outbound::Touch(ids) => shared.touch_sessions(&ids),
                    Outbound::Reconfig { token, plan } => {
                        let (shared, raft) = (shared.clone(), raft.clone());
                        tokio::spawn(async move {
                            if let Err(code) = lead_reconfig(&shared, &raft, me, token, plan).await {
                                shared.fail_write_with(token, code);
                            }
                        });
                    }
                }
            }
            // One entry a round (all that is left when stopping): what arrives meanwhile
            // competes fairly for the next.
            while !queue.is_empty() {
                match raft.client_write_ff(Batch(Arc::new(queue.next_entry()))).await {
                    Ok(r) => in_flight.push_back(r),
                    Err(_) => return,
                }
                if !stop {
                    break;
                }
            }
        } else {
            if shared.take_relink() || link.as_ref().is_some_and(|(l, _)| *l != leader) {
                link = None;
            }
            if link.is_none() {
                let addr = local_addrs(&shared.config)
                    .get(&leader)
                    .cloned()
                    .or_else(|| metrics.borrow().membership_config.membership().get_node(&leader).map(|n| n.addr.clone()));
                if let Some(addr) = addr {
                    match TcpStream::connect(&addr).await {
                        Ok(mut s) => {
                            let _ = s.set_nodelay(true);
                            if write_msg(&mut s, &PeerRequest::ForwardStream { from: me }).await.is_ok() {
                                link = Some((leader, s));
                            }
                        }
                        Err(e) => tracing::warn!(leader, %addr, "cannot reach the leader: {e}"),
                    }
                }
            }
            let mut msgs = Vec::new();
            let mut writes = Vec::new();
            for o in batch.drain(..).flatten() {
                match o {
                    Outbound::Write { command, .. } => writes.push(command),
                    // Writes relayed to a member that lost the lead: their origin fails them.
                    Outbound::Relay(_) => {}
                    Outbound::Touch(ids) => msgs.push(Forwarded::Touch(ids)),
                    Outbound::Reconfig { token, plan } => forward_reconfig(&shared, leader, token, plan),
                }
            }
            if !writes.is_empty() {
                msgs.push(Forwarded::Writes(writes));
            }
            let mut out = Vec::new();
            for msg in msgs {
                if let Ok(body) = bincode::serialize(&msg) {
                    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
                    out.extend_from_slice(&body);
                }
            }
            let sent = match link.as_mut() {
                Some((_, s)) => s.write_all(&out).await.is_ok(),
                None => false,
            };
            if !sent {
                // Their clients see the connection close and retry, as after a ZooKeeper
                // leader change.
                link = None;
                shared.fail_sent_writes(None);
            }
        }
        batch.clear();
        if stop && queue.is_empty() {
            return;
        }
    }
}

/// Writes a leader holds in its [`FairQueue`] at most; past it, the input queue is left to
/// fill, and connections wait (`order::Slot`). What the members admit (`globalOutstandingLimit`
/// each) stays well below it, so that all of it competes fairly for the next entry.
const MAX_QUEUED: usize = 8 * MAX_BATCH;

/// The writes a leader has taken and not yet proposed, one queue a session (its order kept),
/// taken in turn into entries.
#[derive(Default)]
struct FairQueue {
    sessions: HashMap<i64, VecDeque<Command>>,
    /// Sessions with writes waiting, in the order they take their turns.
    turns: VecDeque<i64>,
    len: usize,
}

impl FairQueue {
    fn is_empty(&self) -> bool {
        self.turns.is_empty()
    }

    fn len(&self) -> usize {
        self.len
    }

    fn clear(&mut self) {
        self.sessions.clear();
        self.turns.clear();
        self.len = 0;
    }

    fn push(&mut self, command: Command) {
        // A txn begins with its session id (jute long). Barriers (`sync`) and the server's own
        // writes (session 0) share one queue, in order.
        let session =
            command.txn.as_ref().and_then(|t| t.get(..8)).map_or(0, |b| i64::from_be_bytes(b.try_into().unwrap_or_default()));
        let q = self.sessions.entry(session).or_default();
        if q.is_empty() {
            self.turns.push_back(session);
        }
        q.push_back(command);
        self.len += 1;
    }

    /// The next log entry: a write from each waiting session in turn, at most MAX_BATCH
    /// writes and about MAX_ENTRY_BYTES (at least one write), so that an entry travels to the
    /// other members whole within an RPC's timeout.
    fn next_entry(&mut self) -> Vec<Command> {
        let mut entry = Vec::new();
        let mut bytes = 0;
        while let Some(session) = self.turns.pop_front() {
            let Some(q) = self.sessions.get_mut(&session) else { continue };
            let Some(c) = q.front() else { continue };
            let n = command_bytes(c);
            if !entry.is_empty() && (entry.len() >= MAX_BATCH || bytes + n > MAX_ENTRY_BYTES) {
                self.turns.push_front(session);
                break;
            }
            bytes += n;
            entry.extend(q.pop_front());
            self.len -= 1;
            if q.is_empty() {
                self.sessions.remove(&session);
            } else {
                self.turns.push_back(session);
            }
        }
        entry
    }
}

type ResponderReceiver =
    <openraft::raft::responder::OneshotResponder<TypeConfig> as openraft::raft::responder::Responder<TypeConfig>>::Receiver;

/// A reconfig asked on this member goes to the leader as a request of its own, answered when
/// the leader is done.
fn forward_reconfig(shared: &Arc<Shared>, leader: u64, token: u64, plan: ReconfigPlan) {
    let addr = local_addrs(&shared.config).get(&leader).cloned();
    let (shared, me) = (shared.clone(), shared.my_id);
    tokio::spawn(async move {
        let r = match addr {
            Some(addr) => {
                let mut c = PeerClient::to(leader, addr);
                let req = PeerRequest::Reconfig { origin: me, token, plan };
                match c.call(req, Duration::from_secs(60)).await {
                    Ok(PeerResponse::Reconfig(r)) => r.map_err(|c| ErrorCode::from_code(c).unwrap_or(ErrorCode::SystemError)),
                    _ => Err(ErrorCode::ConnectionLoss),
                }
            }
            None => Err(ErrorCode::ConnectionLoss),
        };
        if let Err(code) = r {
            shared.fail_write_with(token, code);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(session: i64, n: u8, len: usize) -> Command {
        let mut txn = session.to_be_bytes().to_vec();
        txn.push(n);
        txn.resize(8 + len.max(1), n);
        Command { origin: 1, token: 0, txn: Some(txn) }
    }

    fn tags(entry: &[Command]) -> Vec<(i64, u8)> {
        // Barriers (no txn) are left out.
        entry.iter().filter_map(|c| c.txn.as_ref()).map(|t| (i64::from_be_bytes(t[..8].try_into().unwrap()), t[8])).collect()
    }

    #[test]
    fn sessions_take_turns_and_keep_their_order() {
        let mut q = FairQueue::default();
        for n in 0..5 {
            q.push(write(7, n, 10));
        }
        q.push(write(9, 0, 10));
        q.push(Command { origin: 2, token: 1, txn: None });
        q.push(write(9, 1, 10));
        assert_eq!(q.len(), 8);
        let entry = q.next_entry();
        assert_eq!(entry.len(), 8);
        assert_eq!((q.is_empty(), q.len()), (true, 0));
        assert_eq!(tags(&entry[..2]), vec![(7, 0), (9, 0)]);
        assert!(entry[2].txn.is_none(), "the barrier's turn comes third");
        let of = |s: i64| tags(&entry).into_iter().filter(|(x, _)| *x == s).map(|(_, n)| n).collect::<Vec<_>>();
        assert_eq!(of(7), vec![0, 1, 2, 3, 4]);
        assert_eq!(of(9), vec![0, 1]);
    }

    #[test]
    fn a_late_session_gets_into_the_next_entry_past_a_flood() {
        let mut q = FairQueue::default();
        // A flood of 3 MB from one session, then a single write of another.
        for n in 0..3000u32 {
            q.push(write(1, (n % 256) as u8, 1000));
        }
        q.push(write(2, 0, 10));
        let first = q.next_entry();
        let bytes: usize = first.iter().map(command_bytes).sum();
        assert!(bytes <= MAX_ENTRY_BYTES && first.len() < 3000);
        assert!(tags(&first).contains(&(2, 0)), "the lone write waits for no flood entry");
        let mut total = first.len();
        while !q.is_empty() {
            let e = q.next_entry();
            assert!(!e.is_empty());
            total += e.len();
        }
        assert_eq!(total, 3001);
    }

    #[test]
    fn an_oversized_write_goes_alone() {
        let mut q = FairQueue::default();
        q.push(write(1, 0, MAX_ENTRY_BYTES + 10));
        q.push(write(2, 0, 10));
        assert_eq!(q.next_entry().len(), 1);
        assert_eq!(tags(&q.next_entry()), vec![(2, 0)]);
        assert!(q.is_empty());
    }
}
