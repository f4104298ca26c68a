//! A shared counter and a barrier.

use std::time::Duration;

use super::ensure_path;
use crate::{open_acl, Client, CreateMode, ErrorCode};

/// A counter kept as a decimal number in a node, changed with versioned writes (kazoo's
/// `Counter`): concurrent changes never lose an update.
pub struct Counter {
    zk: Client,
    path: String,
}

impl Counter {
    pub fn new(zk: &Client, path: &str) -> Counter {
        Counter { zk: zk.clone(), path: path.to_string() }
    }

    pub async fn get(&self) -> Result<i64, ErrorCode> {
        match self.zk.get_data(&self.path).await {
            Ok((data, _)) => Ok(String::from_utf8_lossy(&data).trim().parse().unwrap_or(0)),
            Err(ErrorCode::NoNode) => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Adds `delta` and returns the new value.
    pub async fn add(&self, delta: i64) -> Result<i64, ErrorCode> {
        loop {
            let (value, version) = match self.zk.get_data(&self.path).await {
                Ok((data, stat)) => (String::from_utf8_lossy(&data).trim().parse().unwrap_or(0i64), stat.version),
                Err(ErrorCode::NoNode) => {
                    if let Some(parent) = self.path.rsplit_once('/').map(|p| p.0).filter(|p| !p.is_empty()) {
                        ensure_path(&self.zk, parent).await?;
                    }
                    match self.zk.create(&self.path, b"0", open_acl(), CreateMode::Persistent).await {
                        Ok(_) | Err(ErrorCode::NodeExists) => continue,
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            };
            let next = value + delta;
            match self.zk.set_data(&self.path, next.to_string().as_bytes(), version).await {
                Ok(_) => return Ok(next),
                Err(ErrorCode::BadVersion) => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// A barrier (kazoo's `Barrier`): while its node exists, `wait` blocks; removing the node
/// releases every waiter.
pub struct Barrier {
    zk: Client,
    path: String,
}

impl Barrier {
    pub fn new(zk: &Client, path: &str) -> Barrier {
        Barrier { zk: zk.clone(), path: path.to_string() }
    }

    /// Raises the barrier (idempotent).
    pub async fn create(&self) -> Result<(), ErrorCode> {
        ensure_path(&self.zk, &self.path).await
    }

    /// Lowers the barrier, releasing the waiters.
    pub async fn remove(&self) -> Result<(), ErrorCode> {
        match self.zk.delete(&self.path, -1).await {
            Ok(()) | Err(ErrorCode::NoNode) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Waits until the barrier is down; `Ok(false)` if `timeout` passed first.
    pub async fn wait(&self, timeout: Option<Duration>) -> Result<bool, ErrorCode> {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        loop {
            let (stat, gone) = self.zk.exists_w(&self.path).await?;
            if stat.is_none() {
                return Ok(true);
            }
            match deadline {
                None => {
                    let _ = gone.await;
                }
                Some(d) => {
                    if tokio::time::timeout_at(d, gone).await.is_err() {
                        return Ok(false);
                    }
                }
            }
        }
    }
}
