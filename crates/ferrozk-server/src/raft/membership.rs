//! Membership as ZooKeeper shows it: which of openraft's members are in the config
//! ([`in_config`]), `/zookeeper/config` and its publication by a leader, `reconfig` carried out
//! by the leader with openraft's joint consensus, configured observers added as learners, and
//! the leader's count of its followers for mntr.

use super::*;

/// Whether a member of openraft's membership is in ZooKeeper's config: a voter, or a learner
/// whose line says `observer`. A learner whose line says `participant` is outside it: a member
/// that `reconfig` removed, or one being added that does not vote yet. ZooKeeper keeps a removed
/// member following the leader as a "non-voting follower" (it still serves its clients, with
/// current data), and so does ferrozk: openraft keeps replicating to it as to any learner.
pub(super) fn in_config(m: &Membership<u64, ZkNode>, id: u64, node: &ZkNode) -> bool {
    node.role() == "observer" || m.voter_ids().any(|v| v == id)
}

pub(super) fn describe_membership(m: &Membership<u64, ZkNode>) -> String {
    m.nodes()
        .map(|(id, n)| format!("server.{id}={}{}", n.spec, if in_config(m, *id, n) { "" } else { " (non-voting)" }))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `/zookeeper/config`'s server lines for a membership.
fn config_text(m: &Membership<u64, ZkNode>) -> String {
    m.nodes().filter(|(id, n)| in_config(m, **id, n)).map(|(id, n)| format!("server.{id}={}\n", n.spec)).collect()
}

/// A new leader makes `/zookeeper/config` show the members, once it has applied what came
/// before: a new ensemble's configured members (as ZooKeeper shows its static configuration
/// there), or a membership that a reconfig changed without publishing it (its leader removed
/// itself, or failed in between).
pub(super) async fn publish_config(shared: Arc<Shared>, raft: Raft) {
    // A quorum round that also waits until this leader has applied its predecessors' entries
    // (openraft's read index includes the leader's first entry of its term).
    let wait = Duration::from_millis(timing(&shared.config).1 * 4);
    if !matches!(tokio::time::timeout(wait, raft.ensure_linearizable()).await, Ok(Ok(_))) {
        return;
    }
    // Not halfway through a reconfig: that one publishes its own result.
    if !shared.is_leader() || shared.reconfig_in_progress.load(Ordering::Acquire) {
        return;
    }
    let (version, published) = {
        let core = shared.lock();
        let data = core.tree.node("/zookeeper/config").and_then(|n| n.data()).unwrap_or_default();
        (core.tree.config_version(), String::from_utf8_lossy(data).into_owned())
    };
    let servers = if version == 0 {
        let (voters, learners) = initial_members(&shared.config, shared.my_id);
        voters
            .into_iter()
            .chain(learners)
            .collect::<BTreeMap<_, _>>()
            .into_iter()
            .map(|(id, n)| format!("server.{id}={}\n", n.spec))
            .collect()
    } else {
        let m = raft.metrics().borrow().membership_config.clone();
        let changed_since = m.log_id().map_or(0, |l| l.index + 1) > record_of(version);
        let servers = config_text(m.membership());
        if !changed_since || published.strip_prefix(&servers).is_some_and(|rest| rest.starts_with("version=")) {
            return;
        }
        servers
    };
    shared.propose_detached_op(ferrozk_tree::TxnOp::SetConfig { servers });
}

/// A reconfig as a client asked for it: checked on the member it reached, carried out by
/// the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReconfigPlan {
    joining: Vec<(u64, ZkNode, bool)>,
    leaving: Vec<u64>,
    new_members: Option<Vec<(u64, ZkNode, bool)>>,
    /// Whether the client may write `/zookeeper/config` (checked last, as ZooKeeper does).
    authorized: bool,
}

/// `server.N=host:port:port[:role][;client]` entries, comma-separated.
fn parse_servers(list: &str) -> Result<Vec<(u64, ZkNode, bool)>, ErrorCode> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (key, value) = item.split_once('=').ok_or(ErrorCode::BadArguments)?;
        let id = key.trim().strip_prefix("server.").and_then(|n| n.parse::<u64>().ok()).ok_or(ErrorCode::BadArguments)?;
        let m = crate::config::Member::parse(id, value.trim()).map_err(|_| ErrorCode::BadArguments)?;
        out.push((id, ZkNode::of(&m), m.observer));
    }
    Ok(out)
}

/// The checks ZooKeeper makes before it involves the quorum, in its order: reconfig enabled,
/// the expected config version, well-formed arguments. WRITE on `/zookeeper/config` (in
/// practice: the super user) is noted here and enforced by the leader after its own checks.
pub fn prepare_reconfig(
    shared: &Shared,
    auth: &[ferrozk_proto::Id],
    r: &ferrozk_proto::ReconfigRequest,
) -> Result<ReconfigPlan, ErrorCode> {
    if !shared.ensemble || !shared.config.reconfig_enabled {
        return Err(ErrorCode::ReconfigDisabled);
    }
    let (version, authorized) = {
        let core = shared.lock();
        let node = core.tree.node("/zookeeper/config").ok_or(ErrorCode::NoNode)?;
        let authorized = ferrozk_tree::acl::check(node.acl(), ferrozk_proto::codes::perms::WRITE, auth).is_ok();
        (core.tree.config_version(), authorized)
    };
    if r.cur_config_id != -1 && r.cur_config_id != version {
        return Err(ErrorCode::BadVersion);
    }
    let new_members = parse_servers(&r.new_members)?;
    let joining = parse_servers(&r.joining_servers)?;
    let leaving = r
        .leaving_servers
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u64>().map_err(|_| ErrorCode::BadArguments))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ReconfigPlan { joining, leaving, new_members: (!new_members.is_empty()).then_some(new_members), authorized })
}

/// On the leader: changes the membership (openraft's joint consensus), then proposes the new
/// `/zookeeper/config`, answered by member `origin` under `token`.
pub(super) async fn lead_reconfig(
    shared: &Arc<Shared>,
    raft: &Raft,
    origin: u64,
    token: u64,
    plan: ReconfigPlan,
) -> Result<(), ErrorCode> {
    if shared.reconfig_in_progress.swap(true, Ordering::AcqRel) {
        return Err(ErrorCode::ReconfigInProgress);
    }
    let r = change_members(shared, raft, plan).await;
    shared.reconfig_in_progress.store(false, Ordering::Release);
    let servers = r?;
    let mut txn = Vec::new();
    ferrozk_proto::Encode::encode(
        &Txn { session: 0, time: crate::core::wall_ms(), auth: Vec::new(), op: ferrozk_tree::TxnOp::SetConfig { servers } },
        &mut txn,
    );
    let applied = raft.client_write_ff(Batch(Arc::new(vec![Command { origin, token, txn: Some(txn) }]))).await;
    let applied = applied.map_err(|_| ErrorCode::ConnectionLoss)?;
    let voting = raft.metrics().borrow().membership_config.membership().voter_ids().any(|id| id == shared.my_id);
    if !voting {
        // Answered (once applied) before this leader stands aside.
        let _ = applied.await;
        tokio::spawn(hand_over(shared.clone(), raft.clone()));
    }
    Ok(())
}

/// A leader that a reconfig removed from the voters stands aside, as ZooKeeper's does. openraft
/// would let it lead on as a learner, so it goes quiet instead: no heartbeats, no proposals
/// (the proposer holds writes back meanwhile), until a voter's election timer fires and the new
/// leader's first message makes this member a follower; writes held back then go to that leader.
async fn hand_over(shared: Arc<Shared>, raft: Raft) {
    shared.handing_over.store(true, Ordering::Release);
    raft.runtime_config().heartbeat(false);
    let mut metrics = raft.server_metrics();
    let limit = Duration::from_millis(timing(&shared.config).1 * 20);
    let stood_aside = tokio::time::timeout(limit, async {
        while metrics.borrow_and_update().current_leader == Some(shared.my_id) {
            if metrics.changed().await.is_err() {
                return;
            }
        }
    })
    .await;
    if stood_aside.is_err() {
        tracing::warn!("removed from the voters, but no voter took the lead within {limit:?}: leading on");
    }
    raft.runtime_config().heartbeat(true);
    shared.handing_over.store(false, Ordering::Release);
}

async fn change_members(shared: &Shared, raft: &Raft, plan: ReconfigPlan) -> Result<String, ErrorCode> {
    use openraft::ChangeMembers;
    if !shared.is_leader() {
        return Err(ErrorCode::ConnectionLoss);
    }
    let wait = Duration::from_millis(timing(&shared.config).1 * 4);
    let current = raft.metrics().borrow().membership_config.clone();
    let cm = current.membership();
    if cm.get_joint_config().len() > 1 {
        return Err(ErrorCode::ReconfigInProgress);
    }
    let voters: BTreeSet<u64> = cm.voter_ids().collect();
    let mut target: BTreeMap<u64, (ZkNode, bool)> =
        cm.nodes().filter(|(id, n)| in_config(cm, **id, n)).map(|(id, n)| (*id, (n.clone(), !voters.contains(id)))).collect();
    match plan.new_members.clone() {
        Some(all) => target = all.into_iter().map(|(id, n, o)| (id, (n, o))).collect(),
        None => {
            for id in &plan.leaving {
                target.remove(id);
            }
            for (id, n, o) in &plan.joining {
                target.insert(*id, (n.clone(), *o));
            }
        }
    }
    let new_voters: BTreeSet<u64> = target.iter().filter(|(_, (_, o))| !o).map(|(id, _)| *id).collect();
    // ZooKeeper (with standaloneEnabled, its default) wants at least two voters.
    if new_voters.len() < 2 {
        return Err(ErrorCode::BadArguments);
    }
    // A quorum of the new voters must be connected and caught up with this leader.
    let synced = {
        let m = raft.metrics().borrow().clone();
        let last = m.last_log_index.unwrap_or(0);
        let slack = 1000;
        new_voters
            .iter()
            .filter(|id| {
                **id == shared.my_id
                    || m.replication
                        .as_ref()
                        .and_then(|r| r.get(id))
                        .and_then(|x| x.as_ref())
                        .is_some_and(|l| l.index + slack >= last)
            })
            .count()
    };
    if synced * 2 <= new_voters.len() {
        return Err(ErrorCode::NewConfigNoQuorum);
    }
    if !plan.authorized {
        return Err(ErrorCode::NoAuth);
    }
    let failed = |e: String| {
        tracing::warn!("reconfig failed: {e}");
        ErrorCode::NewConfigNoQuorum
    };
    for (id, (node, observer)) in &target {
        match cm.get_node(id) {
            // A new member first follows as a learner; one that will vote must catch up first.
            None => match tokio::time::timeout(wait, raft.add_learner(*id, node.clone(), !observer)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(failed(e.to_string())),
                Err(_) => return Err(failed(format!("server {id} did not catch up within {wait:?}"))),
            },
            Some(old) if old != node => {
                let change = ChangeMembers::SetNodes([(*id, node.clone())].into_iter().collect());
                raft.change_membership(change, true).await.map_err(|e| failed(e.to_string()))?;
            }
            Some(_) => {}
        }
    }
    if new_voters != voters {
        let change = tokio::time::timeout(wait, raft.change_membership(ChangeMembers::ReplaceAllVoters(new_voters), true));
        match change.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(failed(e.to_string())),
            Err(_) => return Err(failed(format!("the new voters did not commit within {wait:?}"))),
        }
    }
    // Removed voters stayed on as learners (retain); removed observers become non-voting
    // participants, so that neither is in the config and both keep following (see in_config).
    let now = raft.metrics().borrow().membership_config.clone();
    let leftover: BTreeMap<u64, ZkNode> = now
        .membership()
        .nodes()
        .filter(|(id, n)| !target.contains_key(id) && in_config(now.membership(), **id, n))
        .map(|(id, n)| (*id, n.as_non_voting()))
        .collect();
    if !leftover.is_empty() {
        raft.change_membership(ChangeMembers::SetNodes(leftover), true).await.map_err(|e| failed(e.to_string()))?;
    }
    let m = raft.metrics().borrow().membership_config.clone();
    Ok(config_text(m.membership()))
}

/// The leader's view of its members, for mntr.
pub(super) fn ensemble_stats(m: &openraft::RaftMetrics<u64, ZkNode>, my_id: u64) -> crate::stats::EnsembleStats {
    let membership = m.membership_config.membership();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let last_index = m.last_log_index.unwrap_or(0);
    let mut stats = crate::stats::EnsembleStats { voters: voters.len(), ..Default::default() };
    for (id, matched) in m.replication.iter().flatten() {
        if *id == my_id {
            continue;
        }
        stats.followers += 1;
        // Caught up: within a couple of entries of this leader's log.
        if matched.as_ref().is_some_and(|l| l.index + 2 >= last_index) {
            match membership.get_node(id) {
                _ if voters.contains(id) => stats.synced += 1,
                Some(n) if in_config(membership, *id, n) => stats.synced_observers += 1,
                _ => stats.synced_non_voting += 1,
            }
        }
    }
    stats
}

/// The initial members, for a log that has never been started.
pub fn initial_members(config: &ServerConfig, my_id: u64) -> (BTreeMap<u64, ZkNode>, BTreeMap<u64, ZkNode>) {
    let mut voters = BTreeMap::new();
    let mut learners = BTreeMap::new();
    if config.members.is_empty() {
        voters.insert(my_id, ZkNode::default());
    }
    for m in &config.members {
        let node = ZkNode::of(m);
        if m.observer {
            learners.insert(m.id, node);
        } else {
            voters.insert(m.id, node);
        }
    }
    (voters, learners)
}

/// The leader adds configured observers as learners (openraft's non-voting members).
pub(super) async fn add_observers(raft: Raft, learners: BTreeMap<u64, ZkNode>, my_id: u64) {
    let mut metrics = raft.metrics();
    loop {
        let (leader, known): (Option<u64>, BTreeSet<u64>) = {
            let m = metrics.borrow();
            (m.current_leader, m.membership_config.membership().nodes().map(|(id, _)| *id).collect())
        };
        if learners.keys().all(|id| known.contains(id)) {
            return;
        }
        if leader == Some(my_id) {
            for (id, node) in &learners {
                if !known.contains(id) {
                    if let Err(e) = raft.add_learner(*id, node.clone(), false).await {
                        tracing::warn!(observer = id, "cannot add observer: {e}");
                    }
                }
            }
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_lines_carry_a_client_address_only_where_the_server_line_gives_one() {
        // The member's own clientPort is never added: clients would be sent to it alone.
        let config = ServerConfig::parse(
            "dataDir=/d\nclientPort=2181\nserver.1=h1:2888:3888\nserver.2=h2:2888:3888;2182\nserver.3=h3:2888:3888:observer;10.0.0.3:2183\n",
            "zoo.cfg",
        )
        .unwrap();
        let (voters, learners) = initial_members(&config, 1);
        let lines: Vec<String> = voters.iter().chain(learners.iter()).map(|(id, n)| format!("server.{id}={}", n.spec)).collect();
        assert_eq!(
            lines,
            [
                "server.1=h1:2888:3888:participant",
                "server.2=h2:2888:3888:participant;0.0.0.0:2182",
                "server.3=h3:2888:3888:observer;10.0.0.3:2183"
            ]
        );
        // A reconfig's lines are shown in the same form, whatever their spelling.
        let joining = parse_servers("server.4=h4:2888:3888;2184, server.5=h5:2888:3888:participant").unwrap();
        assert_eq!(joining[0].1.spec, "h4:2888:3888:participant;0.0.0.0:2184");
        assert_eq!(joining[1].1.spec, "h5:2888:3888:participant");
    }

    #[test]
    fn removed_members_stay_as_learners_outside_the_config() {
        let node = |spec: &str| ZkNode { addr: "a:1".into(), spec: spec.into() };
        let (voter, observer) = (node("h1:1:2:participant;0.0.0.0:3"), node("[::1]:1:2:observer;[::1]:3"));
        assert_eq!(observer.role(), "observer");
        assert_eq!(observer.as_non_voting().spec, "[::1]:1:2:participant;[::1]:3");
        assert_eq!(node("h:1:2:observer").as_non_voting().spec, "h:1:2:participant");
        let removed = node("h3:1:2:participant");
        let nodes: BTreeMap<u64, ZkNode> = [(1, voter.clone()), (2, observer.clone()), (3, removed)].into_iter().collect();
        let m = Membership::new(vec![[1].into_iter().collect()], nodes);
        assert_eq!(config_text(&m), format!("server.1={}\nserver.2={}\n", voter.spec, observer.spec));
        assert!(describe_membership(&m).ends_with("server.3=h3:1:2:participant (non-voting)"));
    }
}
