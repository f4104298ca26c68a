//! Locks with kazoo's node naming, so a ferrozk-client process and a kazoo process contend on
//! the same path correctly: contenders create `<uuid>__lock__<seq>` (readers `__rlock__`) as
//! ephemeral sequential children of the lock path; a contender holds the lock when no
//! conflicting contender has a smaller sequence number, and otherwise watches only the nearest
//! such one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{delete_in_background, ensure_path, uuid_hex, wait_until, Canceller, CleanupGuard, Leftover, Waited};
use crate::{open_acl, Client, ConnectionState, CreateMode, ErrorCode};

/// What a lock node stands for, and which others it waits behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// kazoo's `Lock`: exclusive; waits behind every `__lock__` node.
    Exclusive,
    /// kazoo's `ReadLock`: shared among readers; waits behind writers only.
    Read,
    /// kazoo's `WriteLock`: exclusive; waits behind readers and writers.
    Write,
}

impl LockKind {
    fn node_name(self) -> &'static str {
        match self {
            LockKind::Read => "__rlock__",
            _ => "__lock__",
        }
    }

    fn waits_for(self) -> &'static [&'static str] {
        match self {
            LockKind::Write => &["__lock__", "__rlock__"],
            _ => &["__lock__"],
        }
    }
}

/// A distributed lock. Re-entrant within one `Lock` value (acquire counts, release uncounts).
///
/// ```no_run
/// # async fn demo(zk: &ferrozk_client::Client) -> Result<(), ferrozk_client::ErrorCode> {
/// use ferrozk_client::recipes::Lock;
/// let mut lock = Lock::new(zk, "/locks/report", "worker-1");
/// if lock.acquire(Some(std::time::Duration::from_secs(5))).await? {
///     // ... only one holder at a time here ...
///     lock.release().await?;
/// }
/// # Ok(()) }
/// ```
///
/// Abandoning a wait leaves nothing behind: dropping the `acquire` future, or calling
/// [`Canceller::cancel`] on [`Lock::canceller`], removes this contender's node (a dropped future
/// has it removed by a spawned task). Dropping a `Lock` that is held releases it the same way.
pub struct Lock {
    zk: Client,
    path: String,
    kind: LockKind,
    data: Vec<u8>,
    node: Option<String>,
    holds: u32,
    /// The lock's parent path is known to exist (ensured once, as kazoo does: ensuring it on
    /// every acquire cost two failing creates per hand-off).
    path_ready: bool,
    cancel: Canceller,
    /// How many times this contender was woken by a watch (for checking there is no herd).
    pub wakeups: Arc<AtomicU64>,
}

/// The 10-digit sequence after one of `names`, if `child` is a contender of that kind.
pub(crate) fn sequence<'a>(child: &'a str, names: &[&str]) -> Option<&'a str> {
    for n in names {
        if let Some(at) = child.rfind(n) {
            let seq = &child[at + n.len()..];
            let digits = seq.strip_prefix('-').unwrap_or(seq);
            if digits.len() == 10 && digits.bytes().all(|b| b.is_ascii_digit()) {
                return Some(seq);
            }
        }
    }
    None
}

impl Lock {
    /// A lock at `path`; `identifier` is written into the contender's node (kazoo's
    /// `contenders()` reads it).
    pub fn new(zk: &Client, path: &str, identifier: &str) -> Lock {
        Self::with_kind(zk, path, identifier, LockKind::Exclusive)
    }

    pub fn with_kind(zk: &Client, path: &str, identifier: &str, kind: LockKind) -> Lock {
        Lock {
            zk: zk.clone(),
            path: path.trim_end_matches('/').to_string(),
            kind,
            data: identifier.as_bytes().to_vec(),
            node: None,
            holds: 0,
            path_ready: false,
            cancel: Canceller::default(),
            wakeups: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Whether this `Lock` holds the lock: false once the session is lost (its node went with
    /// it). While the connection is suspended ([`Client::connection_state`]) the lock is held
    /// only as long as the session outlives the disconnection.
    pub fn is_acquired(&self) -> bool {
        self.holds > 0 && self.zk.connection_state() != ConnectionState::Lost
    }

    pub(crate) fn client(&self) -> &Client {
        &self.zk
    }

    /// The path of this contender's node while the lock is held.
    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    /// A handle that makes a pending [`Lock::acquire`] give up (it then returns `Ok(false)`).
    pub fn canceller(&self) -> Canceller {
        self.cancel.clone()
    }

    /// Waits for the lock (at most `timeout`, if given). `Ok(false)` when it timed out or was
    /// cancelled; the contender's node is removed then.
    pub async fn acquire(&mut self, timeout: Option<Duration>) -> Result<bool, ErrorCode> {
        if self.holds > 0 {
            if !self.is_acquired() {
                // The session ended while held: the lock is gone with it.
                self.holds = 0;
                self.node = None;
                return Err(ErrorCode::SessionExpired);
            }
            self.holds += 1;
            return Ok(true);
        }
        self.cancel.reset();
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        if !self.path_ready {
            ensure_path(&self.zk, &self.path).await?;
            self.path_ready = true;
        }
        // A fresh name per attempt: cleaning up after an abandoned attempt can then never
        // touch the node of a later one.
        let prefix = format!("{}{}", uuid_hex(), self.kind.node_name());
        let guard = CleanupGuard::new(&self.zk, &self.path, Leftover::Prefix(prefix.clone()));
        // Through connection loss: a create whose reply was lost is found again by its prefix.
        let create =
            || self.zk.retrying().create_sequential(&self.path, &prefix, &self.data, open_acl(), CreateMode::EphemeralSequential);
        let mut created = create().await;
        if created == Err(ErrorCode::NoNode) {
            // Someone removed the lock's path since it was ensured.
            ensure_path(&self.zk, &self.path).await?;
            created = create().await;
        }
        let result = match created {
            Ok(node) => {
                let name = node.rsplit('/').next().unwrap_or_default().to_string();
                self.wait_turn(&name, deadline).await.map(|got| got.then_some(node))
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(Some(node)) => {
                guard.disarm();
                self.node = Some(node);
                self.holds = 1;
                Ok(true)
            }
            other => {
                // Timed out, cancelled or failed: leave the queue so nobody waits behind us.
                guard.clean_up().await;
                other.map(|_| false)
            }
        }
    }

    async fn wait_turn(&self, name: &str, deadline: Option<tokio::time::Instant>) -> Result<bool, ErrorCode> {
        let own = sequence(name, &[self.kind.node_name()]).ok_or(ErrorCode::SystemError)?.to_string();
        loop {
            if self.cancel.is_cancelled() {
                return Ok(false);
            }
            let (children, _) = self.zk.retrying().get_children(&self.path).await?;
            if !children.iter().any(|c| c == name) {
                // Our node went with our session.
                return Err(ErrorCode::SessionExpired);
            }
            let predecessor = children
                .iter()
                .filter_map(|c| sequence(c, self.kind.waits_for()).map(|s| (s.to_string(), c)))
                .filter(|(s, _)| *s < own)
                .max_by(|a, b| a.0.cmp(&b.0))
                .map(|(_, c)| c.clone());
            let Some(pred) = predecessor else { return Ok(true) };
            // A connection lost while waiting leaves the watch in place (the client restores it
            // on reconnect, and a deletion missed meanwhile fires then).
            let (stat, watch) = self.zk.retrying().exists_w(&format!("{}/{}", self.path, pred)).await?;
            if stat.is_none() {
                continue;
            }
            match wait_until(watch, deadline, &self.cancel).await {
                Waited::Done(_) => {}
                Waited::TimedOut | Waited::Cancelled => return Ok(false),
            }
            self.wakeups.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Drops every hold without waiting for the server: the node is deleted by a spawned task.
    /// For owners being dropped or cancelled mid-way (they cannot await a release).
    pub(crate) fn release_in_background(&mut self) {
        self.holds = 0;
        if let Some(n) = self.node.take() {
            delete_in_background(&self.zk, n);
        }
    }

    /// Releases one hold; the node goes with the last.
    pub async fn release(&mut self) -> Result<(), ErrorCode> {
        if self.holds == 0 {
            return Ok(());
        }
        self.holds -= 1;
        if self.holds == 0 {
            if let Some(n) = self.node.take() {
                // Retried through connection loss; SessionExpired says the lock was lost.
                if let Err(e) = self.zk.retrying().delete(&n, -1).await {
                    // Keep trying while the session lives, or the waiters would wait for the
                    // session to end.
                    delete_in_background(&self.zk, n);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// The identifiers of the contenders, in queue order (kazoo's `contenders()`).
    pub async fn contenders(&self) -> Result<Vec<String>, ErrorCode> {
        let (children, _) = match self.zk.retrying().get_children(&self.path).await {
            Ok(c) => c,
            Err(ErrorCode::NoNode) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut queued: Vec<(String, String)> =
            children.iter().filter_map(|c| sequence(c, &["__lock__", "__rlock__"]).map(|s| (s.to_string(), c.clone()))).collect();
        queued.sort();
        let mut out = Vec::new();
        for (_, c) in queued {
            if let Ok((data, _)) = self.zk.retrying().get_data(&format!("{}/{c}", self.path)).await {
                out.push(String::from_utf8_lossy(&data).into_owned());
            }
        }
        Ok(out)
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if self.holds > 0 {
            self.release_in_background();
        }
    }
}

/// Releases a held lock if the future holding it is dropped before it releases normally.
pub(crate) struct ReleaseOnDrop<'a>(pub(crate) &'a mut Lock);

impl Drop for ReleaseOnDrop<'_> {
    fn drop(&mut self) {
        if self.0.is_acquired() {
            self.0.release_in_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kazoo_node_names_parse() {
        assert_eq!(sequence("0f3a__lock__0000000012", &["__lock__"]), Some("0000000012"));
        assert_eq!(sequence("0f3a__rlock__0000000012", &["__lock__"]), None);
        assert_eq!(sequence("0f3a__rlock__0000000012", &["__lock__", "__rlock__"]), Some("0000000012"));
        assert_eq!(sequence("lease_holder", &["__lock__"]), None);
    }
}
