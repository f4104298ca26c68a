//! Leadership and its timing: openraft's settings derived from `tickTime`, following who leads
//! (sessions renewed, writes sent to a deposed leader failed), check-quorum (a leader without a
//! quorum stops serving, as ZooKeeper's does after syncLimit), and a follower standing for
//! election as soon as a dead leader's lease has run out.

use super::*;

/// The connection a leader replicated over has closed, most likely because it died (a killed
/// process's sockets close at once). openraft 0.9's follower stands only after the leader
/// lease (election_timeout_max) plus a random election timeout: 1.5-2 s at tickTime 2000.
/// This one stands as soon as the lease has run out, plus a jitter so that the remaining
/// followers do not all stand at once (a split vote), unless a leader is heard from meanwhile.
/// Votes stay Raft's: a candidate too early is refused, and openraft's own timer goes on.
pub(super) async fn stand_after_lease(raft: &Raft, shared: &Shared, replicated: &AtomicU64, last_heard: u64) {
    // openraft 0.9's leader lease is its election_timeout_max.
    let (lease, election) = (raft.config().election_timeout_max, raft.config().election_timeout_min);
    let jitter = 20 + rand::random::<u64>() % (election / 2).max(1);
    let at = last_heard + lease + jitter;
    let vote = raft.metrics().borrow().vote;
    tokio::time::sleep(Duration::from_millis(at.saturating_sub(shared.now()))).await;
    // A vote given or a term begun meanwhile (the connection was a deposed leader's, and an
    // election is under way or won): openraft's own timer is in charge. Standing then would
    // depose the new leader before its first append arrived, and under load again and again.
    if replicated.load(Ordering::Relaxed) > last_heard || shared.is_leader() || raft.metrics().borrow().vote != vote {
        return;
    }
    tracing::info!(
        silent_ms = shared.now() - last_heard,
        "the leader's connection closed and its lease ran out: standing for election"
    );
    let _ = raft.trigger().elect().await;
}

/// The leader and term writes are handed over under: read from the same metrics by the
/// proposer and by [`watch_leadership`], so that both name a leadership alike.
pub(super) fn leader_and_term(m: &openraft::metrics::RaftServerMetrics<u64, ZkNode>) -> (Option<u64>, u64) {
    (m.current_leader, m.vote.leader_id().get_term())
}

/// Follows leadership: a change fails the writes sent to the old leader, and a new leader
/// gives every session a fresh timeout (as ZooKeeper does). Server metrics change with votes,
/// roles and membership only, not with every entry.
pub async fn watch_leadership(shared: Arc<Shared>, raft: Raft) {
    let mut metrics = raft.server_metrics();
    let mut last = (None, 0);
    loop {
        let now = leader_and_term(&metrics.borrow_and_update());
        if now != last {
            tracing::info!(leader = ?now.0, term = now.1, "leadership changed");
            shared.on_leader_change(now.0, now.1);
            last = now;
            if shared.ensemble && now.0 == Some(shared.my_id) {
                tokio::spawn(publish_config(shared.clone(), raft.clone()));
            }
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// openraft's settings from `zoo.cfg`.
pub fn raft_config(config: &ServerConfig) -> Result<openraft::Config, String> {
    let (heartbeat, election) = timing(config);
    let c = openraft::Config {
        cluster_name: "ferrozk".into(),
        heartbeat_interval: heartbeat,
        election_timeout_min: election,
        election_timeout_max: election * 2,
        // Snapshots follow snapCount in writes (the state machine asks), not in entries.
        snapshot_policy: openraft::SnapshotPolicy::Never,
        // openraft counts entries, and an entry holds a batch of writes, so its count-based
        // purge would keep the whole log of a busy server. run_snapshot_trigger purges instead,
        // up to the snapshot before the newest: a damaged newest snapshot can still fall back
        // to that one plus the log.
        max_in_snapshot_log_to_keep: u64::MAX,
        // Entries hold batches of up to 1 MB; the log reader bounds a request in bytes.
        max_payload_entries: 64,
        install_snapshot_timeout: 10_000,
        ..Default::default()
    };
    c.validate().map_err(|e| e.to_string())
}

/// Heartbeat interval and the shortest election timeout, in ms. A member suspects the leader
/// after a quarter to half a tick of silence, between 500 ms and 1 s (ZooKeeper notices a dead
/// leader's closed socket at once, a silent one only after syncLimit ticks: 10 s by
/// default), so a failover completes well within two ticks plus the election.
/// What a member is given at least before it counts as unresponsive, however short the
/// election timeout: a peer RPC's reply (an append's fsync on a busy disk) and, on a leader, a
/// quorum's answer (check-quorum). Elections got faster than this; these waits did not.
pub(super) const BUSY_MACHINE_MS: u64 = 500;

pub fn timing(config: &ServerConfig) -> (u64, u64) {
    if config.members.len() <= 1 {
        return (50, 150);
    }
    // An eighth of a tick (250 ms at tickTime 2000): openraft's leader lease is twice this,
    // and a killed leader is replaced once it runs out (see stand_after_lease).
    let election = (config.tick_time / 8).clamp(250, 1000);
    (election / 3, election)
}

/// A leader that cannot reach a quorum stops serving (check-quorum), as a ZooKeeper leader
/// does after syncLimit: its clients then look for a member that has one (or stay read-only).
/// openraft keeps it leader until another is elected; nothing it proposes can commit meanwhile.
pub async fn check_quorum(shared: Arc<Shared>, raft: Raft) {
    let (_, election) = timing(&shared.config);
    let election = Duration::from_millis(election.max(BUSY_MACHINE_MS));
    let mut last_ok = Instant::now();
    loop {
        // Its read-index round renews the voters' leases: not while standing aside (hand_over).
        if !shared.is_leader() || shared.handing_over.load(Ordering::Acquire) {
            shared.set_quorum(true);
            tokio::time::sleep(election / 2).await;
            last_ok = Instant::now();
            continue;
        }
        // A quorum round trip (the read index).
        if matches!(tokio::time::timeout(election, raft.ensure_linearizable()).await, Ok(Ok(_))) {
            last_ok = Instant::now();
            shared.set_quorum(true);
            tokio::time::sleep(election / 2).await;
            continue;
        }
        if last_ok.elapsed() >= election * 2 && shared.set_quorum(false) {
            tracing::warn!("no quorum answered for {:?}: not serving until one does", last_ok.elapsed());
        }
        tokio::time::sleep(election / 10).await;
    }
}
