//! A counting semaphore with kazoo's `Semaphore` layout: at most `max_leases` lease holders.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::lock::ReleaseOnDrop;
use super::{
    delete_if_exists, delete_in_background, ensure_path, uuid_hex, wait_until, Canceller, CleanupGuard, Leftover, Lock, Waited,
};
use crate::{open_acl, Client, CreateMode, ErrorCode};

/// A semaphore: up to `max_leases` clients hold a lease at once.
///
/// As in kazoo, each lease is an ephemeral child of `path` (named by a random hex id, holding
/// the identifier); `path`'s data records `max_leases`, and every client must agree on it. A
/// [`Lock`] at `<path>-__lock__` serialises acquisition: only its holder looks at the lease
/// pool and waits for a lease to free, the other contenders wait in the lock's queue, each
/// watching only its predecessor. A release therefore wakes one client, not all of them.
///
/// ```no_run
/// # async fn demo(zk: &ferrozk_client::Client) -> Result<(), ferrozk_client::ErrorCode> {
/// use ferrozk_client::recipes::Semaphore;
/// let mut slots = Semaphore::new(zk, "/pools/db-connections", "worker-1", 4);
/// if slots.acquire(Some(std::time::Duration::from_secs(10))).await? {
///     // ... at most 4 workers here at once ...
///     slots.release().await?;
/// }
/// # Ok(()) }
/// ```
pub struct Semaphore {
    zk: Client,
    path: String,
    data: Vec<u8>,
    max_leases: usize,
    lock: Lock,
    /// Our lease node's path while we hold a lease.
    lease: Option<String>,
    max_leases_checked: bool,
    /// Watch wake-ups so far, in the lock queue and on the lease pool (for checking there is
    /// no herd).
    pub wakeups: Arc<AtomicU64>,
}

impl Semaphore {
    pub fn new(zk: &Client, path: &str, identifier: &str, max_leases: usize) -> Semaphore {
        let path = path.trim_end_matches('/').to_string();
        let lock = Lock::new(zk, &format!("{path}-__lock__"), identifier);
        let wakeups = lock.wakeups.clone();
        Semaphore {
            zk: zk.clone(),
            path,
            data: identifier.as_bytes().to_vec(),
            max_leases,
            lock,
            lease: None,
            max_leases_checked: false,
            wakeups,
        }
    }

    pub fn is_acquired(&self) -> bool {
        self.lease.is_some()
    }

    /// A handle that makes a pending [`Semaphore::acquire`] give up (it returns `Ok(false)`).
    pub fn canceller(&self) -> Canceller {
        self.lock.canceller()
    }

    /// Waits for a lease (at most `timeout`, if given). `Ok(false)` if it timed out or was
    /// cancelled. `Err(BadArguments)` if the semaphore node records another `max_leases`.
    /// Not re-entrant: with a lease already held, returns `Ok(true)` at once.
    pub async fn acquire(&mut self, timeout: Option<Duration>) -> Result<bool, ErrorCode> {
        if self.lease.is_some() {
            return Ok(true);
        }
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        if !self.max_leases_checked {
            self.check_max_leases().await?;
            self.max_leases_checked = true;
        }
        let left = deadline.map(|d| d.saturating_duration_since(tokio::time::Instant::now()));
        if !self.lock.acquire(left).await? {
            return Ok(false);
        }
        let cancel = self.lock.canceller();
        let held = ReleaseOnDrop(&mut self.lock);
        let lease = take_lease(&self.zk, &self.path, &self.data, self.max_leases, deadline, &cancel, &self.wakeups).await;
        // Recorded before the next await, so a drop from here on still gives the lease back.
        if let Ok(Some(l)) = &lease {
            self.lease = Some(l.clone());
        }
        // A failed release is retried in the background; the lease is ours either way.
        let _ = held.0.release().await;
        Ok(lease?.is_some())
    }

    /// Creates the semaphore node recording `max_leases`, or checks the one recorded.
    async fn check_max_leases(&self) -> Result<(), ErrorCode> {
        if let Some((parent, _)) = self.path.rsplit_once('/').filter(|(p, _)| !p.is_empty()) {
            ensure_path(&self.zk, parent).await?;
        }
        let zk = self.zk.retrying();
        match zk.create(&self.path, self.max_leases.to_string().as_bytes(), open_acl(), CreateMode::Persistent).await {
            Ok(_) => Ok(()),
            Err(ErrorCode::NodeExists) => {
                let (data, _) = zk.get_data(&self.path).await?;
                // Like kazoo, non-numeric data is someone else's business, not a conflict.
                match String::from_utf8_lossy(&data).trim().parse::<usize>() {
                    Ok(recorded) if recorded != self.max_leases => Err(ErrorCode::BadArguments),
                    _ => Ok(()),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Gives the lease back.
    pub async fn release(&mut self) -> Result<(), ErrorCode> {
        if let Some(lease) = &self.lease {
            delete_if_exists(&self.zk, lease).await?;
            self.lease = None;
        }
        Ok(())
    }

    /// The identifiers of the current lease holders, unordered (kazoo's `lease_holders()`).
    pub async fn lease_holders(&self) -> Result<Vec<String>, ErrorCode> {
        let zk = self.zk.retrying();
        let children = match zk.get_children(&self.path).await {
            Ok((c, _)) => c,
            Err(ErrorCode::NoNode) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut holders = Vec::new();
        for c in children {
            match zk.get_data(&format!("{}/{c}", self.path)).await {
                Ok((data, _)) => holders.push(String::from_utf8_lossy(&data).into_owned()),
                Err(ErrorCode::NoNode) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(holders)
    }
}

/// Called holding the semaphore's lock: waits until fewer than `max_leases` leases exist, then
/// creates ours. `Ok(None)` if the deadline passed or the wait was cancelled.
async fn take_lease(
    zk: &Client,
    path: &str,
    data: &[u8],
    max_leases: usize,
    deadline: Option<tokio::time::Instant>,
    cancel: &Canceller,
    wakeups: &AtomicU64,
) -> Result<Option<String>, ErrorCode> {
    let name = uuid_hex();
    let lease = format!("{path}/{name}");
    loop {
        if cancel.is_cancelled() {
            return Ok(None);
        }
        let ((children, _), changed) = zk.retrying().get_children_w(path).await?;
        if children.len() < max_leases {
            let guard = CleanupGuard::new(zk, path, Leftover::Child(name.clone()));
            // The lease's name is ours alone: NodeExists is an earlier try whose reply was lost.
            match zk.retrying().create(&lease, data, open_acl(), CreateMode::Ephemeral).await {
                Ok(_) | Err(ErrorCode::NodeExists) => {
                    guard.disarm();
                    return Ok(Some(lease));
                }
                Err(e) => {
                    guard.clean_up().await;
                    return Err(e);
                }
            }
        }
        match wait_until(changed, deadline, cancel).await {
            Waited::Done(_) => {
                wakeups.fetch_add(1, Ordering::Relaxed);
            }
            Waited::TimedOut | Waited::Cancelled => return Ok(None),
        }
    }
}

impl Drop for Semaphore {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            delete_in_background(&self.zk, lease);
        }
    }
}
