//! The proposer: one task per member that hands its clients' writes to consensus, in the order
//! the connections submitted them (invariant 3 of DESIGN.md: a session's writes apply in its
//! order). On the leader it packs them into log entries (group commit); elsewhere it streams them
//! to the leader, which proposes them in that member's order. A reconfig asked here goes to the
//! leader as a request of its own.

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
pub async fn run_proposer(shared: Arc<Shared>, raft: Raft, mut rx: tokio::sync::mpsc::UnboundedReceiver<Option<Outbound>>) {
    let me = shared.my_id;
    let mut metrics = raft.server_metrics();
    let mut link: Option<(u64, TcpStream)> = None;
    let mut batch = Vec::new();
    let mut in_flight: VecDeque<ResponderReceiver> = VecDeque::new();
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
        if rx.recv_many(&mut batch, limit).await == 0 {
            return;
        }
        let stop = batch.iter().any(|b| b.is_none());
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
            let mut writes = Vec::new();
            for o in batch.drain(..).flatten() {
                match o {
                    Outbound::Write { command, .. } => writes.push(command),
                    Outbound::Relay(commands) => writes.extend(commands),
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
            let mut writes = writes.into_iter().peekable();
            while writes.peek().is_some() {
                // An entry holds at most MAX_BATCH writes and about MAX_ENTRY_BYTES (at least one
                // write): entries travel to the other members whole, within an RPC's timeout.
                let mut chunk = Vec::new();
                let mut bytes = 0;
                while let Some(w) = writes
                    .next_if(|w| chunk.is_empty() || (chunk.len() < MAX_BATCH && bytes + command_bytes(w) <= MAX_ENTRY_BYTES))
                {
                    bytes += command_bytes(&w);
                    chunk.push(w);
                }
                match raft.client_write_ff(Batch(Arc::new(chunk))).await {
                    Ok(r) => in_flight.push_back(r),
                    Err(_) => return,
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
        if stop {
            return;
        }
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
