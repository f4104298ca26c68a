//! Locks with kazoo's node naming, so a ferrozk-client process and a kazoo process contend on
//! the same path correctly: contenders create `<uuid>__lock__<seq>` (readers `__rlock__`) as
//! ephemeral sequential children of the lock path; a contender holds the lock when no
//! conflicting contender has a smaller sequence number, and otherwise watches only the nearest
//! such one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::ensure_path;
use crate::{open_acl, Client, CreateMode, ErrorCode};

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
pub struct Lock {
    zk: Client,
    path: String,
    kind: LockKind,
    prefix: String,
    data: Vec<u8>,
    node: Option<String>,
    holds: u32,
    /// How many times this contender was woken by a watch (for checking there is no herd).
    pub wakeups: Arc<AtomicU64>,
}

/// The 10-digit sequence after one of `names`, if `child` is a contender of that kind.
fn sequence<'a>(child: &'a str, names: &[&str]) -> Option<&'a str> {
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
        let uuid: u128 = rand::random();
        Lock {
            zk: zk.clone(),
            path: path.trim_end_matches('/').to_string(),
            kind,
            prefix: format!("{uuid:032x}{}", kind.node_name()),
            data: identifier.as_bytes().to_vec(),
            node: None,
            holds: 0,
            wakeups: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn is_acquired(&self) -> bool {
        self.holds > 0
    }

    /// Waits for the lock (at most `timeout`, if given). `Ok(false)` when it timed out; the
    /// contender's node is removed then.
    pub async fn acquire(&mut self, timeout: Option<Duration>) -> Result<bool, ErrorCode> {
        if self.holds > 0 {
            self.holds += 1;
            return Ok(true);
        }
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        ensure_path(&self.zk, &self.path).await?;
        let node = self
            .zk
            .create(&format!("{}/{}", self.path, self.prefix), &self.data, open_acl(), CreateMode::EphemeralSequential)
            .await?;
        let name = node.rsplit('/').next().unwrap_or_default().to_string();
        self.node = Some(node);
        let result = self.wait_turn(&name, deadline).await;
        match result {
            Ok(true) => {
                self.holds = 1;
                Ok(true)
            }
            other => {
                // Timed out or failed: leave the queue so nobody waits behind us.
                if let Some(n) = self.node.take() {
                    let _ = self.zk.delete(&n, -1).await;
                }
                other
            }
        }
    }

    async fn wait_turn(&self, name: &str, deadline: Option<tokio::time::Instant>) -> Result<bool, ErrorCode> {
        let own = sequence(name, &[self.kind.node_name()]).ok_or(ErrorCode::SystemError)?.to_string();
        loop {
            let (children, _) = self.zk.get_children(&self.path).await?;
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
            let (stat, watch) = self.zk.exists_w(&format!("{}/{}", self.path, pred)).await?;
            if stat.is_none() {
                continue;
            }
            match deadline {
                None => {
                    let _ = watch.await;
                }
                Some(d) => {
                    if tokio::time::timeout_at(d, watch).await.is_err() {
                        return Ok(false);
                    }
                }
            }
            self.wakeups.fetch_add(1, Ordering::Relaxed);
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
                match self.zk.delete(&n, -1).await {
                    Ok(()) | Err(ErrorCode::NoNode) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// The identifiers of the contenders, in queue order (kazoo's `contenders()`).
    pub async fn contenders(&self) -> Result<Vec<String>, ErrorCode> {
        let (children, _) = match self.zk.get_children(&self.path).await {
            Ok(c) => c,
            Err(ErrorCode::NoNode) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut queued: Vec<(String, String)> = children
            .iter()
            .filter_map(|c| sequence(c, &["__lock__", "__rlock__"]).map(|s| (s.to_string(), c.clone())))
            .collect();
        queued.sort();
        let mut out = Vec::new();
        for (_, c) in queued {
            if let Ok((data, _)) = self.zk.get_data(&format!("{}/{c}", self.path)).await {
                out.push(String::from_utf8_lossy(&data).into_owned());
            }
        }
        Ok(out)
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
