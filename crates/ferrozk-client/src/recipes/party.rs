//! Group membership (kazoo's `Party`).

use super::{delete_if_exists, ensure_path, uuid_hex};
use crate::{open_acl, Client, CreateMode, ErrorCode, OneshotWatch};

const MEMBER_MARK: &str = "__party__";

/// Group membership with ephemeral nodes (kazoo's `Party`): a member is the ephemeral child
/// `<random hex>__party__` of `path`, holding the member's identifier. A member whose session
/// ends (closed, expired, its process killed) drops out of the party on its own.
///
/// ```no_run
/// # async fn demo(zk: &ferrozk_client::Client) -> Result<(), ferrozk_client::ErrorCode> {
/// use ferrozk_client::recipes::Party;
/// let mut me = Party::new(zk, "/cluster/members", "10.0.0.7:9000");
/// me.join().await?;
/// let (members, changed) = me.members_w().await?;
/// println!("members: {members:?}");
/// changed.await?; // someone joined or left
/// # Ok(()) }
/// ```
pub struct Party {
    zk: Client,
    path: String,
    data: Vec<u8>,
    node: String,
    participating: bool,
}

impl Party {
    pub fn new(zk: &Client, path: &str, identifier: &str) -> Party {
        let path = path.trim_end_matches('/').to_string();
        let node = format!("{path}/{}{MEMBER_MARK}", uuid_hex());
        Party { zk: zk.clone(), path, data: identifier.as_bytes().to_vec(), node, participating: false }
    }

    pub fn is_participating(&self) -> bool {
        self.participating
    }

    /// Joins the party (idempotent).
    pub async fn join(&mut self) -> Result<(), ErrorCode> {
        ensure_path(&self.zk, &self.path).await?;
        // The node's name is ours alone: NodeExists is an earlier try whose reply was lost.
        match self.zk.retrying().create(&self.node, &self.data, open_acl(), CreateMode::Ephemeral).await {
            Ok(_) | Err(ErrorCode::NodeExists) => {
                self.participating = true;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Leaves the party (idempotent).
    pub async fn leave(&mut self) -> Result<(), ErrorCode> {
        self.participating = false;
        delete_if_exists(&self.zk, &self.node).await
    }

    /// The members' identifiers, in node-name order (random, not joining order).
    pub async fn members(&self) -> Result<Vec<String>, ErrorCode> {
        let children = match self.zk.retrying().get_children(&self.path).await {
            Ok((c, _)) => c,
            Err(ErrorCode::NoNode) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        self.identifiers(children).await
    }

    /// The members, and a watch that fires when someone joins or leaves.
    pub async fn members_w(&self) -> Result<(Vec<String>, OneshotWatch), ErrorCode> {
        ensure_path(&self.zk, &self.path).await?;
        let ((children, _), changed) = self.zk.retrying().get_children_w(&self.path).await?;
        Ok((self.identifiers(children).await?, changed))
    }

    /// How many members there are.
    pub async fn len(&self) -> Result<usize, ErrorCode> {
        match self.zk.retrying().get_children(&self.path).await {
            Ok((c, _)) => Ok(c.iter().filter(|c| c.contains(MEMBER_MARK)).count()),
            Err(ErrorCode::NoNode) => Ok(0),
            Err(e) => Err(e),
        }
    }

    pub async fn is_empty(&self) -> Result<bool, ErrorCode> {
        Ok(self.len().await? == 0)
    }

    async fn identifiers(&self, children: Vec<String>) -> Result<Vec<String>, ErrorCode> {
        let mut members = Vec::new();
        for c in children.iter().filter(|c| c.contains(MEMBER_MARK)) {
            match self.zk.retrying().get_data(&format!("{}/{c}", self.path)).await {
                Ok((data, _)) => members.push(String::from_utf8_lossy(&data).into_owned()),
                // Left between the listing and the read.
                Err(ErrorCode::NoNode) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(members)
    }
}
