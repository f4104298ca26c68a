//! A shared counter and a barrier.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use super::ensure_path;
use crate::{open_acl, Client, CreateMode, ErrorCode, Op};

/// A counter kept as a decimal number in a node, changed with versioned writes (kazoo's
/// `Counter`): concurrent changes never lose an update.
///
/// An add is exact through connection loss too: each write also records, in an ephemeral
/// child of the counter's node that belongs to this `Counter` (`__add__<guid>`, invisible to
/// kazoo's Counter, which reads the data alone), the number of the add it completes. When a
/// write's reply is lost, that record tells whether the write happened.
pub struct Counter {
    zk: Client,
    path: String,
    marker: String,
    /// Adds attempted so far, and whether the marker node was made.
    attempts: AtomicU64,
    marker_made: AtomicBool,
}

impl Counter {
    pub fn new(zk: &Client, path: &str) -> Counter {
        let path = path.trim_end_matches('/').to_string();
        let marker = format!("{path}/__add__{}", super::uuid_hex());
        Counter { zk: zk.clone(), path, marker, attempts: AtomicU64::new(0), marker_made: AtomicBool::new(false) }
    }

    pub async fn get(&self) -> Result<i64, ErrorCode> {
        match self.zk.retrying().get_data(&self.path).await {
            Ok((data, _)) => Ok(String::from_utf8_lossy(&data).trim().parse().unwrap_or(0)),
            Err(ErrorCode::NoNode) => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Adds `delta` (negative to subtract) and returns the new value.
    pub async fn add(&self, delta: i64) -> Result<i64, ErrorCode> {
        let zk = self.zk.retrying();
        loop {
            let (value, version) = match zk.get_data(&self.path).await {
                Ok((data, stat)) => (String::from_utf8_lossy(&data).trim().parse().unwrap_or(0i64), stat.version),
                Err(ErrorCode::NoNode) => {
                    if let Some(parent) = self.path.rsplit_once('/').map(|p| p.0).filter(|p| !p.is_empty()) {
                        ensure_path(&self.zk, parent).await?;
                    }
                    match zk.create(&self.path, b"0", open_acl(), CreateMode::Persistent).await {
                        Ok(_) | Err(ErrorCode::NodeExists) => continue,
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            };
            if !self.marker_made.load(Ordering::SeqCst) {
                match zk.create(&self.marker, b"0", open_acl(), CreateMode::Ephemeral).await {
                    Ok(_) | Err(ErrorCode::NodeExists) => self.marker_made.store(true, Ordering::SeqCst),
                    Err(ErrorCode::NoNode) => continue,
                    Err(e) => return Err(e),
                }
            }
            let attempt = (self.attempts.fetch_add(1, Ordering::SeqCst) + 1).to_string();
            let next = value + delta;
            let write = vec![
                Op::SetData { path: self.path.clone(), data: next.to_string().into_bytes(), version },
                Op::SetData { path: self.marker.clone(), data: attempt.clone().into_bytes(), version: -1 },
            ];
            match self.zk.multi(write).await {
                Ok(_) => return Ok(next),
                Err((ErrorCode::BadVersion, _)) => continue,
                Err((e, _)) if crate::is_retryable(e) => match zk.get_data(&self.marker).await {
                    // The reply was lost: the marker says whether the write happened.
                    Ok((done, _)) if done == attempt.as_bytes() => return Ok(next),
                    Ok(_) => continue,
                    Err(ErrorCode::NoNode) => self.marker_made.store(false, Ordering::SeqCst),
                    Err(e) => return Err(e),
                },
                // The marker is gone (a new session, or removed): made again.
                Err((ErrorCode::NoNode, _)) => self.marker_made.store(false, Ordering::SeqCst),
                Err((e, _)) => return Err(e),
            }
        }
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        if self.marker_made.load(Ordering::SeqCst) {
            super::delete_in_background(&self.zk, self.marker.clone());
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
        self.zk.retrying().delete(&self.path, -1).await
    }

    /// Waits until the barrier is down; `Ok(false)` if `timeout` passed first.
    pub async fn wait(&self, timeout: Option<Duration>) -> Result<bool, ErrorCode> {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        loop {
            let (stat, gone) = self.zk.retrying().exists_w(&self.path).await?;
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
