//! The state machine: committed entries are applied to the tree on every member, in log order
//! (invariant 2 of DESIGN.md), through [`crate::core::Core::apply_entry`](crate::apply), which also answers the
//! clients connected here. Snapshots are written by a forked child from a copy-on-write image of
//! the tree ([`crate::snapshot_child`]) with openraft's snapshot metadata in front of it;
//! [`run_snapshot_trigger`] asks for one every snapCount writes and purges the log behind it.

use super::*;

/// The snapshot a member currently offers to others.
#[derive(Clone)]
struct CurrentSnapshot {
    meta: Meta,
    path: PathBuf,
}

pub struct StateMachine {
    shared: Arc<Shared>,
    log: Arc<LogShared>,
    pub(super) applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, ZkNode>,
    current: Arc<Mutex<Option<CurrentSnapshot>>>,
    since_snapshot: u64,
    snapshot_after: u64,
}

/// Writes until the next snapshot: a random point in the upper half of snapCount, as
/// ZooKeeper picks, so that members do not all snapshot at once.
fn snapshot_threshold(config: &ServerConfig) -> u64 {
    let n = config.snap_count.max(2);
    n / 2 + 1 + rand::random::<u64>() % (n - n / 2)
}

/// What recovery found on disk before openraft starts.
pub struct Recovered {
    pub tree: DataTree,
    pub(super) applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, ZkNode>,
    current: Option<CurrentSnapshot>,
    /// Writes replayed from the log onto the snapshot's tree.
    pub(super) replayed_writes: u64,
}

impl Recovered {
    /// The tree of the snapshot at `path`, whose metadata is `meta`.
    pub(super) fn from_snapshot(tree: DataTree, meta: Meta, path: PathBuf) -> Recovered {
        Recovered {
            tree,
            applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
            current: Some(CurrentSnapshot { meta, path }),
            replayed_writes: 0,
        }
    }

    /// The last log entry the tree holds.
    pub fn applied(&self) -> Option<LogId<u64>> {
        self.applied
    }

    /// A committed log entry read at start, applied to the tree as
    /// [`RaftStateMachine::apply`] would (entries the snapshot holds are skipped). An entry
    /// that does not follow the tree's last one is an error: the entries between were purged
    /// and no snapshot that could be read holds them.
    pub(super) fn replay(&mut self, e: Entry<TypeConfig>) -> Result<(), RecoveryError> {
        let next = self.applied.map_or(0, |a| a.index + 1);
        if e.log_id.index < next {
            return Ok(());
        }
        if e.log_id.index > next {
            return Err(RecoveryError::Gap { resumes_at: e.log_id.index, tree_ends_before: next });
        }
        let index = e.log_id.index;
        match e.payload {
            EntryPayload::Normal(batch) => {
                for (k, c) in batch.0.iter().enumerate() {
                    crate::apply::apply_to_tree(&mut self.tree, zxid_of(index, k), c.txn.as_deref());
                }
                self.replayed_writes += batch.0.len() as u64;
            }
            EntryPayload::Membership(m) => {
                self.membership = StoredMembership::new(Some(e.log_id), m);
                self.tree.set_last_zxid(zxid_of(index, 0));
            }
            EntryPayload::Blank => self.tree.set_last_zxid(zxid_of(index, 0)),
        }
        self.applied = Some(e.log_id);
        Ok(())
    }
}

/// Reads the newest snapshot that reads back whole, falling back past damaged ones.
pub fn load_snapshot(config: &ServerConfig) -> Recovered {
    let (_, snap_dir) = crate::core::dirs(config);
    for file in snap::list(&snap_dir) {
        let started = Instant::now();
        match read_snapshot_file(config, &file.path) {
            Ok((meta, tree)) => {
                tracing::info!(snapshot = %file.path.display(), nodes = tree.node_count(), ms = started.elapsed().as_millis() as u64, "loaded snapshot");
                return Recovered::from_snapshot(tree, meta, file.path);
            }
            Err(e) => tracing::error!("{e}; falling back to an older snapshot and the log"),
        }
    }
    Recovered {
        tree: crate::core::new_tree(config),
        applied: None,
        membership: StoredMembership::default(),
        current: None,
        replayed_writes: 0,
    }
}

/// A snapshot file: checked whole, then its metadata and its tree.
pub(super) fn read_snapshot_file(config: &ServerConfig, path: &Path) -> Result<(Meta, DataTree), ferrozk_storage::StorageError> {
    let index = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("snapshot."))
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or_else(|| ferrozk_storage::StorageError::Damaged {
            file: path.to_path_buf(),
            offset: 0,
            reason: "not a snapshot file name".into(),
        })?;
    let file = snap::SnapshotFile { index, path: path.to_path_buf() };
    let mut progress = |done: u64, total: u64| tracing::info!("loading {}: {done} of {total} nodes", path.display());
    snap::read(&file, |r| {
        let meta = read_meta(r)?;
        let tree = DataTree::read_snapshot(r, crate::core::tree_config(config), &mut progress)?;
        Ok((meta, tree))
    })
}

fn read_meta(r: &mut dyn Read) -> Result<Meta, String> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).map_err(|e| e.to_string())?;
    let len = u32::from_be_bytes(len) as usize;
    if len > 16 << 20 {
        return Err(format!("snapshot metadata of {len} bytes"));
    }
    let mut b = vec![0; len];
    r.read_exact(&mut b).map_err(|e| e.to_string())?;
    bincode::deserialize(&b).map_err(|e| e.to_string())
}

impl StateMachine {
    pub fn new(shared: Arc<Shared>, log: &LogStore, recovered: &mut Recovered) -> StateMachine {
        let snapshot_after = snapshot_threshold(&shared.config);
        StateMachine {
            shared,
            log: log.shared.clone(),
            applied: recovered.applied,
            membership: recovered.membership.clone(),
            current: Arc::new(Mutex::new(recovered.current.take())),
            // Writes replayed at start count towards the next snapshot, so that a long replay
            // is not repeated at the next start.
            since_snapshot: recovered.replayed_writes,
            snapshot_after,
        }
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId<u64>>, StoredMembership<u64, ZkNode>), SErr> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>, SErr>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut n = 0;
        let shared = self.shared.clone();
        let mut core = shared.lock();
        let mut writes = 0;
        for e in entries {
            n += 1;
            self.applied = Some(e.log_id);
            match e.payload {
                EntryPayload::Blank => core.apply_entry(&shared, zxid_of(e.log_id.index, 0), 0, 0, None),
                EntryPayload::Normal(batch) => {
                    for (k, c) in batch.0.iter().enumerate() {
                        core.apply_entry(&shared, zxid_of(e.log_id.index, k), c.origin, c.token, Some(c.txn.as_deref()));
                    }
                    writes += batch.0.len() as u64;
                }
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(e.log_id), m);
                    core.apply_entry(&shared, zxid_of(e.log_id.index, 0), 0, 0, None);
                }
            }
        }
        drop(core);
        if let Some(applied) = self.applied {
            self.log.trim_to_budget(applied.index);
        }
        // snapCount counts writes, as ZooKeeper's does, not log entries.
        self.since_snapshot += writes;
        if self.since_snapshot >= self.snapshot_after {
            self.since_snapshot = 0;
            self.snapshot_after = snapshot_threshold(&self.shared.config);
            self.shared.snapshot_due.notify_one();
        }
        Ok(vec![(); n])
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        // openraft asks between two `apply` calls: the tree stands exactly at `applied`.
        let child = match self.applied {
            None => Err("nothing applied yet to snapshot".to_string()),
            Some(target) => self.fork_snapshot(target).await,
        };
        SnapshotBuilder {
            config: self.shared.config.clone(),
            log: self.log.clone(),
            child: Some(child),
            current: self.current.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, SErr> {
        let (_, snap_dir) = crate::core::dirs(&self.shared.config);
        std::fs::create_dir_all(&snap_dir).map_err(io_err)?;
        let f = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(snap_dir.join("incoming.tmp"))
            .await
            .map_err(io_err)?;
        Ok(Box::new(f))
    }

    async fn install_snapshot(&mut self, meta: &Meta, snapshot: Box<tokio::fs::File>) -> Result<(), SErr> {
        let (_, snap_dir) = crate::core::dirs(&self.shared.config);
        let mut f = *snapshot;
        f.flush().await.map_err(io_err)?;
        f.sync_all().await.map_err(io_err)?;
        drop(f);
        let index = meta.last_log_id.map_or(0, |l| l.index + 1);
        let path = snap_dir.join(format!("snapshot.{index:020}"));
        std::fs::rename(snap_dir.join("incoming.tmp"), &path).map_err(io_err)?;
        std::fs::File::open(&snap_dir).and_then(|d| d.sync_all()).map_err(io_err)?;
        let config = self.shared.config.clone();
        let p = path.clone();
        let (_, tree) =
            tokio::task::spawn_blocking(move || read_snapshot_file(&config, &p)).await.map_err(io_err)?.map_err(read_err)?;
        tracing::info!(snapshot = %path.display(), nodes = tree.node_count(), "installed a snapshot from the leader");
        self.shared.replace_tree(tree);
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(CurrentSnapshot { meta: meta.clone(), path });
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, SErr> {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match current {
            None => Ok(None),
            Some(c) => {
                let f = tokio::fs::File::open(&c.path).await.map_err(io_err)?;
                Ok(Some(Snapshot { meta: c.meta, snapshot: Box::new(f) }))
            }
        }
    }
}

impl StateMachine {
    /// Starts writing a snapshot of the tree as of `target` in a child process.
    async fn fork_snapshot(&self, target: LogId<u64>) -> Result<PendingSnapshot, String> {
        // The snapshot must not hold entries this member's log has not made durable yet.
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.log.flushed.load(Ordering::Acquire) < target.index + 1 {
            if Instant::now() > deadline {
                return Err(format!("log entry {} is still not durable; no snapshot", target.index));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let meta = Meta {
            last_log_id: Some(target),
            last_membership: self.membership.clone(),
            snapshot_id: format!("{}-{}", target.leader_id.term, target.index),
        };
        let header = bincode::serialize(&meta).map_err(|e| e.to_string())?;
        let (_, snap_dir) = crate::core::dirs(&self.shared.config);
        std::fs::create_dir_all(&snap_dir).map_err(|e| format!("{}: {e}", snap_dir.display()))?;
        let started = Instant::now();
        let writing = SnapshotWriting::start(&self.shared);
        let core = self.shared.lock();
        let nodes = core.tree.node_count();
        let child = SnapshotChild::spawn(&core.tree, &header, &snap_dir, target.index + 1)
            .map_err(|e| format!("cannot start the snapshot writer: {e}"))?;
        drop(core);
        tracing::debug!(us = started.elapsed().as_micros() as u64, "forked the snapshot writer");
        Ok(PendingSnapshot { child, meta, nodes, started, writing })
    }
}

/// Marks a snapshot writer as running until dropped (after its child was waited for, or when
/// the snapshot is abandoned).
struct SnapshotWriting(Arc<Shared>);

impl SnapshotWriting {
    fn start(shared: &Arc<Shared>) -> SnapshotWriting {
        shared.snapshot_writing.send_replace(true);
        SnapshotWriting(shared.clone())
    }
}

impl Drop for SnapshotWriting {
    fn drop(&mut self) {
        self.0.snapshot_writing.send_replace(false);
    }
}

/// On a clean stop: lets a snapshot being written finish (at most `limit`), so that the next
/// start loads it instead of replaying the writes it holds.
pub async fn wait_for_snapshot(shared: &Shared, limit: Duration) {
    let mut writing = shared.snapshot_writing.subscribe();
    if *writing.borrow() {
        tracing::info!("waiting for the snapshot being written");
    }
    let _ = tokio::time::timeout(limit, writing.wait_for(|w| !*w)).await;
}

/// A snapshot a child process is writing.
struct PendingSnapshot {
    child: SnapshotChild,
    meta: Meta,
    nodes: usize,
    started: Instant,
    writing: SnapshotWriting,
}

pub struct SnapshotBuilder {
    config: ServerConfig,
    log: Arc<LogShared>,
    child: Option<Result<PendingSnapshot, String>>,
    current: Arc<Mutex<Option<CurrentSnapshot>>>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, SErr> {
        let pending = match self.child.take() {
            Some(Ok(p)) => p,
            Some(Err(e)) => return Err(io_err(io::Error::other(e))),
            None => return Err(io_err(io::Error::other("snapshot already built"))),
        };
        let PendingSnapshot { child, meta, nodes, started, writing } = pending;
        let path = tokio::task::spawn_blocking(move || {
            let written = child.wait();
            drop(writing);
            written
        })
        .await
        .map_err(io_err)?
        .map_err(|e| io_err(io::Error::other(e)))?;
        tracing::info!(snapshot = %path.display(), nodes, ms = started.elapsed().as_millis() as u64, "snapshot written");
        if let Some(target) = meta.last_log_id {
            self.log.trim(target.index);
        }
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(CurrentSnapshot { meta: meta.clone(), path: path.clone() });
        if self.config.purge_interval_hours > 0 {
            let purged = self.log.cache().purged.map_or(0, |p| p.index + 1);
            if let Err(e) = crate::core::purge(&self.config, purged) {
                tracing::warn!("autopurge failed: {e}");
            }
        }
        let f = tokio::fs::File::open(&path).await.map_err(io_err)?;
        Ok(Snapshot { meta, snapshot: Box::new(f) })
    }
}

/// Takes a snapshot whenever the state machine says snapCount writes were applied, and once a
/// new snapshot is there, purges the log up to the one before it (what recovery still needs if
/// the newest snapshot turns out damaged).
pub async fn run_snapshot_trigger(shared: Arc<Shared>, raft: Raft) {
    let mut data = raft.data_metrics();
    loop {
        shared.snapshot_due.notified().await;
        let before = data.borrow().snapshot;
        if raft.trigger().snapshot().await.is_err() {
            return;
        }
        // Followed only while a snapshot is being written (these metrics change with every
        // applied entry). Should writing it fail, the next snapCount writes ask again.
        loop {
            tokio::select! {
                changed = data.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if data.borrow().snapshot > before {
                        break;
                    }
                }
                _ = shared.snapshot_due.notified() => {
                    if raft.trigger().snapshot().await.is_err() {
                        return;
                    }
                }
            }
        }
        // Purged up to the snapshot before the new one: a damaged newest snapshot can still
        // fall back to that one plus the log.
        if let Some(previous) = before {
            if raft.trigger().purge_log(previous.index).await.is_err() {
                return;
            }
        }
    }
}
