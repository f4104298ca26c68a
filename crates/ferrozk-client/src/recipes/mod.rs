//! Coordination recipes on top of [`crate::Client`], herd-free where it matters: each waiter
//! watches only the node just ahead of it, so a release wakes exactly one waiter.
//!
//! Node layouts follow kazoo's recipes, so a Rust process and a kazoo process can share a
//! lock, semaphore, barrier, queue or party on the same path.
//!
//! Waiting calls can be abandoned safely: dropping the future of an `acquire`/`get` (or calling
//! the recipe's [`Canceller::cancel`]) removes the node it had created, so no orphan is left
//! queued in front of other clients.
//!
//! The watching recipes ([`NodeCache`], [`TreeCache`], [`DataWatch`], [`LeaderObserver`]) run
//! on a spawned task holding a handle on the session: the session stays open while one runs.
//! Drop them, or [`Client::close`] the session, to end them.

mod barrier;
mod cache;
mod election;
mod lock;
mod misc;
mod party;
mod queue;
mod semaphore;
mod watchers;

pub use barrier::DoubleBarrier;
pub use cache::{CacheEvent, NodeCache, NodeData, TreeCache};
pub use election::{LeaderElection, LeaderObserver};
pub use lock::{Lock, LockKind};
pub use misc::{Barrier, Counter};
pub use party::Party;
pub use queue::{LockingQueue, Queue};
pub use semaphore::Semaphore;
pub use watchers::DataWatch;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::{open_acl, Client, CreateMode, ErrorCode};

/// Creates `path` and its missing ancestors as persistent nodes (through connection loss).
pub async fn ensure_path(zk: &Client, path: &str) -> Result<(), ErrorCode> {
    let mut at = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        at.push('/');
        at.push_str(part);
        match zk.retrying().create(&at, b"", open_acl(), CreateMode::Persistent).await {
            Ok(_) | Err(ErrorCode::NodeExists) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A fresh random name part (kazoo uses `uuid4().hex`).
pub(crate) fn uuid_hex() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Stops a recipe's pending wait from another task (kazoo's `cancel()`): the waiting call
/// returns as if it had timed out, after removing any node it had created.
///
/// A cancel only reaches a wait in progress: each new `acquire`/`get` starts uncancelled.
#[derive(Clone, Default)]
pub struct Canceller(Arc<CancelState>);

#[derive(Default)]
struct CancelState {
    cancelled: AtomicBool,
    notify: Notify,
}

impl Canceller {
    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    pub(crate) fn reset(&self) {
        self.0.cancelled.store(false, Ordering::SeqCst);
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::SeqCst)
    }

    async fn cancelled(&self) {
        loop {
            let notified = self.0.notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so a cancel between the two is not missed.
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

/// How a wait in a recipe ended.
pub(crate) enum Waited<T> {
    Done(T),
    TimedOut,
    Cancelled,
}

/// Waits for `fut`, unless `deadline` passes or `cancel` fires first.
pub(crate) async fn wait_until<F: Future>(fut: F, deadline: Option<Instant>, cancel: &Canceller) -> Waited<F::Output> {
    let timer = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        out = fut => Waited::Done(out),
        _ = timer => Waited::TimedOut,
        _ = cancel.cancelled() => Waited::Cancelled,
    }
}

/// Which nodes an abandoned attempt may have left behind.
#[derive(Clone)]
pub(crate) enum Leftover {
    /// Every child of the parent whose name starts with this (a create whose reply never
    /// arrived leaves a node of unknown sequence number).
    Prefix(String),
    /// Exactly this child.
    Child(String),
}

/// Removes what an unfinished attempt created, also when its future is dropped mid-way.
///
/// Armed before the create is sent, disarmed once the caller owns the node. Dropped while armed,
/// it spawns the clean-up; the client sends requests in order on one session, so the clean-up's
/// reads come after the create and see its node.
pub(crate) struct CleanupGuard {
    zk: Client,
    parent: String,
    leftover: Leftover,
    armed: bool,
}

impl CleanupGuard {
    pub(crate) fn new(zk: &Client, parent: &str, leftover: Leftover) -> CleanupGuard {
        CleanupGuard { zk: zk.clone(), parent: parent.to_string(), leftover, armed: true }
    }

    pub(crate) fn disarm(mut self) {
        self.armed = false;
    }

    /// Cleans up now (for attempts that end without being dropped).
    pub(crate) async fn clean_up(mut self) {
        remove_leftovers(&self.zk, &self.parent, &self.leftover).await;
        // Disarmed only now: if this future is dropped mid-way, the guard still cleans up.
        self.armed = false;
    }
}

impl Drop for CleanupGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (zk, parent, leftover) = (self.zk.clone(), std::mem::take(&mut self.parent), self.leftover.clone());
            rt.spawn(async move { remove_leftovers(&zk, &parent, &leftover).await });
        }
    }
}

/// Deletes the leftovers, retrying across connection losses while the session lives (after
/// that the server removes ephemerals itself).
pub(crate) async fn remove_leftovers(zk: &Client, parent: &str, leftover: &Leftover) {
    let result = match leftover {
        Leftover::Child(name) => delete_if_exists(zk, &format!("{parent}/{name}")).await,
        Leftover::Prefix(prefix) => match zk.retrying().get_children(parent).await {
            Ok((children, _)) => {
                let mut result = Ok(());
                for c in children.iter().filter(|c| c.starts_with(prefix.as_str())) {
                    result = result.and(delete_if_exists(zk, &format!("{parent}/{c}")).await);
                }
                result
            }
            Err(ErrorCode::NoNode) => Ok(()),
            Err(e) => Err(e),
        },
    };
    if let Err(e) = result {
        tracing::debug!(parent, "could not clean up after an abandoned attempt: {e}");
    }
}

/// Deletes `path` through connection loss; a node already gone is no error.
pub(crate) async fn delete_if_exists(zk: &Client, path: &str) -> Result<(), ErrorCode> {
    zk.retrying().delete(path, -1).await
}

/// Spawns the deletion of a node whose owner is gone without releasing it (e.g. a dropped
/// `Lock` that was held), so others need not wait for the session to end.
pub(crate) fn delete_in_background(zk: &Client, path: String) {
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        let zk = zk.clone();
        rt.spawn(async move {
            let (parent, name) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
            remove_leftovers(&zk, parent, &Leftover::Child(name.to_string())).await;
        });
    }
}
