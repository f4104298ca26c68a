//! A double barrier (kazoo's `DoubleBarrier`, ZooKeeper's "Double Barriers" recipe).

use super::{delete_if_exists, ensure_path, uuid_hex};
use crate::{event, open_acl, Client, CreateMode, ErrorCode};

/// The node whose creation lets everyone through [`DoubleBarrier::enter`].
const READY: &str = "ready";

/// Synchronises the start and the end of a computation among `num_clients` clients: `enter`
/// blocks until `num_clients` have entered, `leave` blocks until all of them have left.
///
/// Each participant is an ephemeral child of `path` (a random hex name, holding the
/// identifier); the client that completes the count creates `path/ready`, and the last to
/// leave removes it (kazoo removes it as each leaves). On leaving, the
/// participant with the lowest name waits for the others (watching the highest), the others
/// delete their node and wait for the lowest to go. If a participant's session ends, its node
/// goes too and it no longer counts.
///
/// ```no_run
/// # async fn demo(zk: &ferrozk_client::Client) -> Result<(), ferrozk_client::ErrorCode> {
/// use ferrozk_client::recipes::DoubleBarrier;
/// let mut barrier = DoubleBarrier::new(zk, "/jobs/42/barrier", 3, "worker-1");
/// barrier.enter().await?; // all three have arrived
/// // ... the computation ...
/// barrier.leave().await?; // all three have finished
/// # Ok(()) }
/// ```
pub struct DoubleBarrier {
    zk: Client,
    path: String,
    num_clients: usize,
    data: Vec<u8>,
    node_name: String,
    participating: bool,
}

impl DoubleBarrier {
    pub fn new(zk: &Client, path: &str, num_clients: usize, identifier: &str) -> DoubleBarrier {
        DoubleBarrier {
            zk: zk.clone(),
            path: path.trim_end_matches('/').to_string(),
            num_clients,
            data: identifier.as_bytes().to_vec(),
            node_name: uuid_hex(),
            participating: false,
        }
    }

    pub fn is_participating(&self) -> bool {
        self.participating
    }

    /// The participants present, without the `ready` marker.
    async fn participants(&self) -> Result<Vec<String>, ErrorCode> {
        let (mut children, _) = self.zk.retrying().get_children(&self.path).await?;
        children.retain(|c| c != READY);
        Ok(children)
    }

    /// Joins and waits until `num_clients` participants have joined.
    pub async fn enter(&mut self) -> Result<(), ErrorCode> {
        ensure_path(&self.zk, &self.path).await?;
        // A fresh name each round: a slow leaver of the last round, waiting for this node's
        // predecessor to go, must not mistake it for the old one.
        self.node_name = uuid_hex();
        let own = format!("{}/{}", self.path, self.node_name);
        let zk = self.zk.retrying();
        // The node's name is ours alone: NodeExists is an earlier try whose reply was lost.
        match zk.create(&own, &self.data, open_acl(), CreateMode::Ephemeral).await {
            Ok(_) | Err(ErrorCode::NodeExists) => {}
            Err(e) => return Err(e),
        }
        self.participating = true;
        let ready = format!("{}/{READY}", self.path);
        loop {
            // Watch before counting, so the last arrival's `ready` cannot be missed.
            let (stat, created) = zk.exists_w(&ready).await?;
            if stat.is_some() {
                return Ok(());
            }
            if self.participants().await?.len() >= self.num_clients {
                match zk.create(&ready, b"", open_acl(), CreateMode::Persistent).await {
                    Ok(_) | Err(ErrorCode::NodeExists) => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
            // `ready` stays until the last participant leaves, so a watch restored after a
            // lost connection still finds it.
            if created.await?.event_type == event::NODE_CREATED {
                return Ok(());
            }
        }
    }

    /// Leaves and waits until every participant has left.
    pub async fn leave(&mut self) -> Result<(), ErrorCode> {
        let own = format!("{}/{}", self.path, self.node_name);
        loop {
            let mut children = self.participants().await?;
            if !children.contains(&self.node_name) {
                break;
            }
            if children.len() == 1 {
                // The last to leave lowers `ready`: a participant still entering (its
                // connection lost when `ready` came) must find it, and nobody returns from
                // `leave`, so nobody enters again, before this node is gone.
                delete_if_exists(&self.zk, &format!("{}/{READY}", self.path)).await?;
                delete_if_exists(&self.zk, &own).await?;
                break;
            }
            children.sort();
            let lowest = children[0].clone();
            if lowest == self.node_name {
                // The lowest leaves last: wait for the others, the highest first.
                let highest = children.last().cloned().unwrap_or_default();
                let (stat, gone) = self.zk.retrying().exists_w(&format!("{}/{highest}", self.path)).await?;
                if stat.is_some() {
                    gone.await?;
                }
                continue;
            }
            // The others go, then wait for the lowest: once it has gone, everyone has. Not
            // looked at again: nodes there by then belong to the next round.
            delete_if_exists(&self.zk, &own).await?;
            let (stat, gone) = self.zk.retrying().exists_w(&format!("{}/{lowest}", self.path)).await?;
            if stat.is_some() {
                gone.await?;
            }
            break;
        }
        self.participating = false;
        Ok(())
    }
}
