//! Riding through connection loss while the session lives, as kazoo's `KazooRetry` and
//! Curator's `RetryPolicy` do: an operation that failed with `ConnectionLoss` (or
//! `OperationTimeout`) is tried again, with backoff, once the client is connected again (to the
//! same server or another, with the same session). `SessionExpired` is never retried: the
//! session, its ephemerals and its watches are gone, and the caller must hear of it.
//!
//! Only operations that are safe to repeat go through it: reads, and writes whose second try
//! tells the caller what it needs to know (a create that meets `NodeExists` or a delete that
//! meets `NoNode` after a lost reply). Sequential creates need the caller's own marker to be
//! found again instead of made twice: [`Retrying::create_sequential`].

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::{Acl, Client, CreateMode, ErrorCode, OneshotWatch, SessionState, Stat};

/// How often and for how long an operation is retried through connection loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1: no retry).
    pub max_tries: u32,
    /// The pause before the first retry; each later one doubles, up to `max_delay`.
    pub initial_delay: Duration,
    pub max_delay: Duration,
    /// No retry starts after this long since the first attempt (waiting for a connection
    /// counts), so a call returns even if no server ever answers again.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    /// Generous enough for an Apache ZooKeeper election (seconds, during which every member
    /// drops its clients): up to 60 s and 50 tries, pauses from 50 ms doubling to 1 s.
    fn default() -> Self {
        RetryPolicy {
            max_tries: 50,
            initial_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(1),
            max_elapsed: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Never retry: every connection loss reaches the caller.
    pub fn none() -> Self {
        RetryPolicy { max_tries: 1, ..Self::default() }
    }
}

/// Errors after which the operation may simply be tried again on the same session.
pub fn is_retryable(e: ErrorCode) -> bool {
    matches!(e, ErrorCode::ConnectionLoss | ErrorCode::OperationTimeout)
}

impl Client {
    /// Runs `op` until it succeeds, fails for a reason other than connection loss, the session
    /// ends, or this client's [`RetryPolicy`] gives up (then the last error is returned).
    pub async fn retry<T, F, Fut>(&self, mut op: F) -> Result<T, ErrorCode>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ErrorCode>>,
    {
        let policy = self.retry_policy();
        let start = Instant::now();
        let mut delay = policy.initial_delay;
        let mut tries = 0;
        loop {
            tries += 1;
            let e = match op().await {
                Err(e) if is_retryable(e) => e,
                other => return other,
            };
            let give_up_at = start + policy.max_elapsed;
            if tries >= policy.max_tries || Instant::now() + delay >= give_up_at {
                return Err(e);
            }
            // The state may still read Connected for a moment after the loss: pause first.
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(policy.max_delay);
            match tokio::time::timeout_at(give_up_at, self.wait_connected()).await {
                Ok(true) => {}
                Ok(false) => return Err(ErrorCode::SessionExpired),
                Err(_) => return Err(e),
            }
        }
    }

    /// This client's operations with retries through connection loss (see [`RetryPolicy`]).
    pub fn retrying(&self) -> Retrying<'_> {
        Retrying(self)
    }

    /// Resolves once the session is over (expired, closed, or its authentication failed):
    /// kazoo's LOST, after which nothing the session held is held.
    pub async fn session_lost(&self) {
        let mut rx = self.state_events();
        while crate::ConnectionState::from(*rx.borrow_and_update()) != crate::ConnectionState::Lost {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Waits for a connection (read-write or read-only); false once the session has ended.
    pub(crate) async fn wait_connected(&self) -> bool {
        let mut rx = self.state_events();
        loop {
            match *rx.borrow_and_update() {
                SessionState::Connected | SessionState::ConnectedReadOnly => return true,
                SessionState::Expired | SessionState::Closed | SessionState::AuthFailed => return false,
                SessionState::Connecting | SessionState::Disconnected => {}
            }
            if rx.changed().await.is_err() {
                return false;
            }
        }
    }
}

/// [`Client`]'s operations, each retried through connection loss by the client's policy.
#[derive(Clone, Copy)]
pub struct Retrying<'a>(&'a Client);

impl Retrying<'_> {
    pub async fn get_data(self, path: &str) -> Result<(Vec<u8>, Stat), ErrorCode> {
        self.0.retry(|| self.0.get_data(path)).await
    }

    pub async fn get_data_w(self, path: &str) -> Result<((Vec<u8>, Stat), OneshotWatch), ErrorCode> {
        self.0.retry(|| self.0.get_data_w(path)).await
    }

    pub async fn get_children(self, path: &str) -> Result<(Vec<String>, Stat), ErrorCode> {
        self.0.retry(|| self.0.get_children(path)).await
    }

    pub async fn get_children_w(self, path: &str) -> Result<((Vec<String>, Stat), OneshotWatch), ErrorCode> {
        self.0.retry(|| self.0.get_children_w(path)).await
    }

    pub async fn exists(self, path: &str) -> Result<Option<Stat>, ErrorCode> {
        self.0.retry(|| self.0.exists(path)).await
    }

    pub async fn exists_w(self, path: &str) -> Result<(Option<Stat>, OneshotWatch), ErrorCode> {
        self.0.retry(|| self.0.exists_w(path)).await
    }

    /// A create of a node with a fixed name. `NodeExists` after a retry may mean the first try
    /// made it: callers whose names are their own (a guid) take it as success.
    pub async fn create(self, path: &str, data: &[u8], acl: Vec<Acl>, mode: CreateMode) -> Result<String, ErrorCode> {
        self.0.retry(|| self.0.create(path, data, acl.clone(), mode)).await
    }

    /// `set_data`; with version -1 a repeat is harmless, with a version a repeat after a
    /// lost reply meets `BadVersion` (kazoo and Curator behave alike).
    pub async fn set_data(self, path: &str, data: &[u8], version: i32) -> Result<Stat, ErrorCode> {
        self.0.retry(|| self.0.set_data(path, data, version)).await
    }

    /// Deletes `path`; `Ok` also when it is already gone (an earlier try whose reply was lost,
    /// or someone else): Curator's guaranteed delete.
    pub async fn delete(self, path: &str, version: i32) -> Result<(), ErrorCode> {
        match self.0.retry(|| self.0.delete(path, version)).await {
            Ok(()) | Err(ErrorCode::NoNode) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A sequential create under `parent` named `<prefix><sequence>`, where `prefix` is the
    /// caller's own (it holds a guid, as kazoo's and Curator's protected names do). After a
    /// connection loss the node is looked for by its prefix before it is created again, so a
    /// lost reply never leaves a second node behind. Returns the node's full path.
    pub async fn create_sequential(
        self,
        parent: &str,
        prefix: &str,
        data: &[u8],
        acl: Vec<Acl>,
        mode: CreateMode,
    ) -> Result<String, ErrorCode> {
        let path = format!("{parent}/{prefix}");
        let mut lost_once = false;
        self.0
            .retry(|| {
                let (path, acl) = (&path, &acl);
                let first = !std::mem::replace(&mut lost_once, true);
                async move {
                    if !first {
                        let (children, _) = self.0.get_children(parent).await?;
                        if let Some(name) = children.iter().find(|c| c.starts_with(prefix)) {
                            return Ok(format!("{parent}/{name}"));
                        }
                    }
                    self.0.create(path, data, acl.clone(), mode).await
                }
            })
            .await
    }
}
