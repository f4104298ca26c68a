//! A double barrier (kazoo's `DoubleBarrier`, ZooKeeper's "Double Barriers" recipe).

use super::{delete_if_exists, ensure_path, uuid_hex};
use crate::{event, open_acl, Client, CreateMode, ErrorCode};

/// The node whose creation lets everyone through [`DoubleBarrier::enter`].
const READY: &str = "ready";

/// Synchronises the start and the end of a computation among `num_clients` clients: `enter`
/// blocks until `num_clients` have entered, `leave` blocks until all of them have left.
///
/// Each participant is an ephemeral child of `path` (a random hex name, holding the
/// identifier); the client that completes the count creates `path/ready`. On leaving, the
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
        let (mut children, _) = self.zk.get_children(&self.path).await?;
        children.retain(|c| c != READY);
        Ok(children)
    }

    /// Joins and waits until `num_clients` participants have joined.
    pub async fn enter(&mut self) -> Result<(), ErrorCode> {
        ensure_path(&self.zk, &self.path).await?;
        let own = format!("{}/{}", self.path, self.node_name);
        match self.zk.create(&own, &self.data, open_acl(), CreateMode::Ephemeral).await {
            Ok(_) | Err(ErrorCode::NodeExists) => {}
            Err(e) => return Err(e),
        }
        self.participating = true;
        let ready = format!("{}/{READY}", self.path);
        loop {
            // Watch before counting, so the last arrival's `ready` cannot be missed.
            let (stat, created) = self.zk.exists_w(&ready).await?;
            if stat.is_some() {
                return Ok(());
            }
            if self.participants().await?.len() >= self.num_clients {
                match self.zk.create(&ready, b"", open_acl(), CreateMode::Persistent).await {
                    Ok(_) | Err(ErrorCode::NodeExists) => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
            // `ready` may be deleted again by a fast leaver before we look: its creation is
            // what lets us through.
            if created.await?.event_type == event::NODE_CREATED {
                return Ok(());
            }
        }
    }

    /// Leaves and waits until every participant has left.
    pub async fn leave(&mut self) -> Result<(), ErrorCode> {
        delete_if_exists(&self.zk, &format!("{}/{READY}", self.path)).await?;
        let own = format!("{}/{}", self.path, self.node_name);
        loop {
            let mut children = self.participants().await?;
            if children.is_empty() {
                break;
            }
            if children.len() == 1 && children[0] == self.node_name {
                delete_if_exists(&self.zk, &own).await?;
                break;
            }
            children.sort();
            let lowest = &children[0];
            let wait_for = if *lowest == self.node_name {
                // The lowest leaves last: wait for the others, the highest first.
                children.last().cloned().unwrap_or_default()
            } else {
                delete_if_exists(&self.zk, &own).await?;
                lowest.clone()
            };
            let (stat, gone) = self.zk.exists_w(&format!("{}/{wait_for}", self.path)).await?;
            if stat.is_some() {
                gone.await?;
            }
        }
        self.participating = false;
        Ok(())
    }
}
