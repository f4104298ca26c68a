//! Coordination recipes on top of [`crate::Client`], herd-free where it matters: each waiter
//! watches only the node just ahead of it, so a release wakes exactly one waiter.

mod lock;
mod misc;

pub use lock::{Lock, LockKind};
pub use misc::{Barrier, Counter, LeaderElection};

use crate::{open_acl, Client, CreateMode, ErrorCode};

/// Creates `path` and its missing ancestors as persistent nodes.
pub async fn ensure_path(zk: &Client, path: &str) -> Result<(), ErrorCode> {
    let mut at = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        at.push('/');
        at.push_str(part);
        match zk.create(&at, b"", open_acl(), CreateMode::Persistent).await {
            Ok(_) | Err(ErrorCode::NodeExists) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
