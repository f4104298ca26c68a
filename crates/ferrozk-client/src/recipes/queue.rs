//! Distributed FIFO queues with kazoo's layouts: [`Queue`] (an entry is removed as it is
//! taken) and [`LockingQueue`] (an entry is locked while processed, removed on `consume`).

use std::time::Duration;

use super::{ensure_path, uuid_hex, wait_until, Canceller, CleanupGuard, Leftover, Waited};
use crate::{open_acl, Client, CreateMode, ErrorCode, Op};

/// Priorities run 0 (first) to 999; kazoo's default.
pub const DEFAULT_PRIORITY: u16 = 100;

fn check_priority(priority: u16) -> Result<(), ErrorCode> {
    if priority > 999 {
        return Err(ErrorCode::BadArguments);
    }
    Ok(())
}

/// A FIFO queue (kazoo's `Queue`): entries are persistent sequential children
/// `entry-<priority>-<seq>` of `path`, taken lowest name first, so entries of one priority come
/// out in the order the server created them.
///
/// Taking an entry deletes it; whoever's delete succeeds owns it. If the taker fails before
/// processing the entry, it is lost: use [`LockingQueue`] when that matters.
///
/// A blocked [`Queue::get_wait`] waits on a child watch of `path`, so every blocked consumer
/// wakes when an entry arrives and all but one go back to waiting (the queue recipe cannot
/// avoid that without consumers queueing among themselves).
///
/// ```no_run
/// # async fn demo(zk: &ferrozk_client::Client) -> Result<(), ferrozk_client::ErrorCode> {
/// use ferrozk_client::recipes::Queue;
/// let mut jobs = Queue::new(zk, "/jobs");
/// jobs.put(b"resize img-1").await?;
/// let next = jobs.get_wait(Some(std::time::Duration::from_secs(5))).await?;
/// assert_eq!(next.as_deref(), Some(&b"resize img-1"[..]));
/// # Ok(()) }
/// ```
pub struct Queue {
    zk: Client,
    path: String,
    /// Children seen at the last listing and not yet tried, in order.
    pending: Vec<String>,
    cancel: Canceller,
}

impl Queue {
    pub fn new(zk: &Client, path: &str) -> Queue {
        Queue { zk: zk.clone(), path: path.trim_end_matches('/').to_string(), pending: Vec::new(), cancel: Canceller::default() }
    }

    /// Adds an entry with the default priority; returns its node's path.
    pub async fn put(&self, value: &[u8]) -> Result<String, ErrorCode> {
        self.put_with_priority(value, DEFAULT_PRIORITY).await
    }

    /// Adds an entry; lower `priority` values (0..=999) are taken first.
    pub async fn put_with_priority(&self, value: &[u8], priority: u16) -> Result<String, ErrorCode> {
        check_priority(priority)?;
        let node = format!("{}/entry-{priority:03}-", self.path);
        // Retried through connection loss: at least once (kazoo's layout has no room for a
        // marker to find a lost reply's entry by, so that entry may then be there twice).
        let zk = self.zk.retrying();
        match zk.create(&node, value, open_acl(), CreateMode::PersistentSequential).await {
            Err(ErrorCode::NoNode) => {
                ensure_path(&self.zk, &self.path).await?;
                zk.create(&node, value, open_acl(), CreateMode::PersistentSequential).await
            }
            other => other,
        }
    }

    /// Takes the first entry, or `None` if the queue is empty (does not wait).
    pub async fn get(&mut self) -> Result<Option<Vec<u8>>, ErrorCode> {
        loop {
            if self.pending.is_empty() {
                self.pending = match self.zk.retrying().get_children(&self.path).await {
                    Ok((children, _)) => children,
                    Err(ErrorCode::NoNode) => Vec::new(),
                    Err(e) => return Err(e),
                };
                if self.pending.is_empty() {
                    return Ok(None);
                }
            }
            // Nodes created after the listing sort after every listed one, so trying the
            // listed ones in order keeps FIFO order.
            let name = self.pending.remove(0);
            let node = format!("{}/{name}", self.path);
            let data = match self.zk.retrying().get_data(&node).await {
                Ok((data, _)) => data,
                Err(ErrorCode::NoNode) => continue,
                Err(e) => return Err(e),
            };
            match self.zk.retry(|| self.zk.delete(&node, -1)).await {
                Ok(()) => return Ok(Some(data)),
                // Another consumer took it (or, as with kazoo, our own take whose reply was
                // lost: at most once).
                Err(ErrorCode::NoNode) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Takes the first entry, waiting for one (at most `timeout`, if given). `None` if the
    /// time ran out or the wait was cancelled.
    pub async fn get_wait(&mut self, timeout: Option<Duration>) -> Result<Option<Vec<u8>>, ErrorCode> {
        self.cancel.reset();
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        loop {
            if let Some(value) = self.get().await? {
                return Ok(Some(value));
            }
            let changed = match self.zk.retrying().get_children_w(&self.path).await {
                Ok(((children, _), _)) if !children.is_empty() => continue,
                Ok((_, changed)) => changed,
                Err(ErrorCode::NoNode) => {
                    ensure_path(&self.zk, &self.path).await?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            match wait_until(changed, deadline, &self.cancel).await {
                Waited::Done(_) => {}
                Waited::TimedOut | Waited::Cancelled => return Ok(None),
            }
        }
    }

    /// A handle that makes a pending [`Queue::get_wait`] return `Ok(None)`.
    pub fn canceller(&self) -> Canceller {
        self.cancel.clone()
    }

    /// How many entries the queue holds.
    pub async fn len(&self) -> Result<usize, ErrorCode> {
        match self.zk.retrying().exists(&self.path).await? {
            Some(stat) => Ok(stat.num_children as usize),
            None => Ok(0),
        }
    }

    pub async fn is_empty(&self) -> Result<bool, ErrorCode> {
        Ok(self.len().await? == 0)
    }
}

/// A FIFO queue whose consumers lock an entry while processing it (kazoo's `LockingQueue`):
/// entries are `path/entries/entry-<priority>-<seq>`; [`LockingQueue::get`] takes the first one
/// not locked by creating the ephemeral `path/taken/<entry>` (holding the consumer's id), and
/// [`LockingQueue::consume`] deletes both in one transaction. If the consumer's session ends
/// before it consumes, the lock goes with it and the entry is taken again by someone else.
///
/// ```no_run
/// # async fn demo(zk: &ferrozk_client::Client) -> Result<(), ferrozk_client::ErrorCode> {
/// use ferrozk_client::recipes::LockingQueue;
/// let mut jobs = LockingQueue::new(zk, "/work");
/// jobs.put(b"job-1").await?;
/// if let Some(job) = jobs.get(Some(std::time::Duration::from_secs(5))).await? {
///     println!("processing {}", String::from_utf8_lossy(&job));
///     jobs.consume().await?; // done: the entry leaves the queue
/// }
/// # Ok(()) }
/// ```
pub struct LockingQueue {
    zk: Client,
    entries_path: String,
    taken_path: String,
    id: Vec<u8>,
    /// The entry this consumer holds: its name and value.
    processing: Option<(String, Vec<u8>)>,
    paths_ensured: bool,
    cancel: Canceller,
}

impl LockingQueue {
    pub fn new(zk: &Client, path: &str) -> LockingQueue {
        let path = path.trim_end_matches('/');
        LockingQueue {
            zk: zk.clone(),
            entries_path: format!("{path}/entries"),
            taken_path: format!("{path}/taken"),
            id: uuid_hex().into_bytes(),
            processing: None,
            paths_ensured: false,
            cancel: Canceller::default(),
        }
    }

    async fn ensure_paths(&mut self) -> Result<(), ErrorCode> {
        if !self.paths_ensured {
            ensure_path(&self.zk, &self.taken_path).await?;
            ensure_path(&self.zk, &self.entries_path).await?;
            self.paths_ensured = true;
        }
        Ok(())
    }

    fn entry_prefix(&self, priority: u16) -> String {
        format!("{}/entry-{priority:03}-", self.entries_path)
    }

    /// Adds an entry with the default priority.
    pub async fn put(&mut self, value: &[u8]) -> Result<(), ErrorCode> {
        self.put_with_priority(value, DEFAULT_PRIORITY).await
    }

    /// Adds an entry; lower `priority` values (0..=999) are taken first.
    pub async fn put_with_priority(&mut self, value: &[u8], priority: u16) -> Result<(), ErrorCode> {
        check_priority(priority)?;
        self.ensure_paths().await?;
        // At least once, as Queue::put.
        self.zk.retrying().create(&self.entry_prefix(priority), value, open_acl(), CreateMode::PersistentSequential).await?;
        Ok(())
    }

    /// Adds all the entries or none, in order.
    pub async fn put_all(&mut self, values: &[&[u8]], priority: u16) -> Result<(), ErrorCode> {
        check_priority(priority)?;
        self.ensure_paths().await?;
        let ops: Vec<Op> = values
            .iter()
            .map(|v| Op::Create {
                path: self.entry_prefix(priority),
                data: v.to_vec(),
                acl: open_acl(),
                mode: CreateMode::PersistentSequential,
            })
            .collect();
        // At least once, as Queue::put.
        self.zk.retry(|| async { self.zk.multi(ops.clone()).await.map(|_| ()).map_err(|(e, _)| e) }).await
    }

    /// Locks and returns the first unlocked entry, waiting for one (at most `timeout`, if
    /// given); `None` if the time ran out or the wait was cancelled. While an entry taken
    /// earlier is neither consumed nor released, returns that entry again.
    pub async fn get(&mut self, timeout: Option<Duration>) -> Result<Option<Vec<u8>>, ErrorCode> {
        if let Some((_, value)) = &self.processing {
            return Ok(Some(value.clone()));
        }
        self.cancel.reset();
        self.ensure_paths().await?;
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        loop {
            // Entries arriving and locks going (released, or their session ended) can both
            // make an entry available.
            let ((entries, _), entries_changed) = self.zk.retrying().get_children_w(&self.entries_path).await?;
            let ((taken, _), taken_changed) = self.zk.retrying().get_children_w(&self.taken_path).await?;
            for name in entries.iter().filter(|e| !taken.contains(e)) {
                if let Some(value) = self.take(name).await? {
                    self.processing = Some((name.clone(), value.clone()));
                    return Ok(Some(value));
                }
            }
            let either = async {
                tokio::select! {
                    _ = entries_changed => {},
                    _ = taken_changed => {},
                }
            };
            match wait_until(either, deadline, &self.cancel).await {
                Waited::Done(()) => {}
                Waited::TimedOut | Waited::Cancelled => return Ok(None),
            }
        }
    }

    /// Locks `name` and reads its value; `None` if someone else has it (or it is gone).
    async fn take(&self, name: &str) -> Result<Option<Vec<u8>>, ErrorCode> {
        let lock = format!("{}/{name}", self.taken_path);
        // Until the entry is recorded as ours, a dropped `get` must not leave it locked.
        let guard = CleanupGuard::new(&self.zk, &self.taken_path, Leftover::Child(name.to_string()));
        match self.zk.retrying().create(&lock, &self.id, open_acl(), CreateMode::Ephemeral).await {
            Ok(_) => {}
            // Someone else's, or ours from a try whose reply was lost: the owner id tells.
            Err(ErrorCode::NodeExists) => match self.zk.retrying().get_data(&lock).await {
                Ok((owner, _)) if owner == self.id => {}
                Ok(_) | Err(ErrorCode::NoNode) => {
                    guard.disarm();
                    return Ok(None);
                }
                Err(e) => {
                    guard.clean_up().await;
                    return Err(e);
                }
            },
            Err(e) => {
                guard.clean_up().await;
                return Err(e);
            }
        }
        match self.zk.retrying().get_data(&format!("{}/{name}", self.entries_path)).await {
            Ok((value, _)) => {
                guard.disarm();
                Ok(Some(value))
            }
            Err(ErrorCode::NoNode) => {
                guard.clean_up().await;
                Ok(None)
            }
            Err(e) => {
                guard.clean_up().await;
                Err(e)
            }
        }
    }

    /// Whether this consumer still holds the lock on its entry (false once its session ended).
    pub async fn holds_lock(&self) -> Result<bool, ErrorCode> {
        let Some((name, _)) = &self.processing else { return Ok(false) };
        let lock = format!("{}/{name}", self.taken_path);
        self.zk.retry(|| self.zk.sync(&lock)).await?;
        match self.zk.retrying().get_data(&lock).await {
            Ok((owner, _)) => Ok(owner == self.id),
            Err(ErrorCode::NoNode) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Removes the entry being processed from the queue. `Ok(false)` if there is none or its
    /// lock was lost (then someone else may be processing it).
    pub async fn consume(&mut self) -> Result<bool, ErrorCode> {
        self.finish(true).await
    }

    /// Unlocks the entry being processed without consuming it, for another consumer to take.
    pub async fn release(&mut self) -> Result<bool, ErrorCode> {
        self.finish(false).await
    }

    async fn finish(&mut self, consume: bool) -> Result<bool, ErrorCode> {
        if !self.holds_lock().await? {
            self.processing = None;
            return Ok(false);
        }
        let Some((name, _)) = self.processing.clone() else { return Ok(false) };
        let lock = format!("{}/{name}", self.taken_path);
        let mut ops = Vec::new();
        if consume {
            ops.push(Op::Delete { path: format!("{}/{name}", self.entries_path), version: -1 });
        }
        ops.push(Op::Delete { path: lock, version: -1 });
        self.zk
            .retry(|| async {
                match self.zk.multi(ops.clone()).await {
                    Ok(_) => Ok(()),
                    // The reply was lost: done if our lock is gone (only we delete it while
                    // the session lives), else tried again.
                    Err((e, _)) if crate::is_retryable(e) => match self.holds_lock().await? {
                        false => Ok(()),
                        true => Err(e),
                    },
                    Err((e, _)) => Err(e),
                }
            })
            .await?;
        self.processing = None;
        Ok(true)
    }

    /// A handle that makes a pending [`LockingQueue::get`] return `Ok(None)`.
    pub fn canceller(&self) -> Canceller {
        self.cancel.clone()
    }

    /// How many entries the queue holds, locked ones included.
    pub async fn len(&self) -> Result<usize, ErrorCode> {
        match self.zk.retrying().exists(&self.entries_path).await? {
            Some(stat) => Ok(stat.num_children as usize),
            None => Ok(0),
        }
    }

    pub async fn is_empty(&self) -> Result<bool, ErrorCode> {
        Ok(self.len().await? == 0)
    }
}
