//! The log: openraft's `RaftLogStorage` over ferrozk-storage's `Wal`. A thread of its own
//! ([`run_log`]) appends what openraft hands it and fsyncs before openraft counts an entry towards
//! a quorum (invariant 1 of DESIGN.md: no acknowledged write is lost); the newest entries stay in
//! memory ([`CACHE_BYTES`]) and older ones are read back from the files when a follower needs
//! them. [`recover`] rebuilds a member at start: the newest valid snapshot, then the log, whose
//! committed entries are applied as they are read. Raft's vote, commit and purge points live in
//! small files beside the log.

use super::*;

pub(super) struct LogCache {
    /// Log index of `entries[0]`.
    first: u64,
    entries: VecDeque<Entry<TypeConfig>>,
    last: Option<LogId<u64>>,
    pub(super) purged: Option<LogId<u64>>,
    vote: Option<Vote<u64>>,
    committed: Option<LogId<u64>>,
    /// About how many bytes `entries` hold ([`entry_bytes`]).
    bytes: usize,
}

/// The in-memory log is kept under this many bytes of writes: older entries that are applied
/// and durable are dropped and read from the files if a follower still needs them (ZooKeeper
/// keeps its last 500 proposals in memory likewise). Without a bound the log between two
/// snapshots (snapCount writes, of up to 1 MB each) all stayed in memory.
const CACHE_BYTES: usize = 4 << 20;

fn entry_bytes(e: &Entry<TypeConfig>) -> usize {
    match &e.payload {
        EntryPayload::Normal(batch) => batch.0.iter().map(command_bytes).sum::<usize>() + 64,
        _ => 64,
    }
}

pub(super) fn command_bytes(c: &Command) -> usize {
    c.txn.as_ref().map_or(0, Vec::len) + 48
}

pub(super) struct LogShared {
    wal_dir: PathBuf,
    raft_dir: PathBuf,
    cache: Mutex<LogCache>,
    /// Highest log index known durable, plus one (0: none).
    pub(super) flushed: AtomicU64,
}

impl LogCache {
    /// Takes the cached entries up to `index` out (cheaply: the rest is what is copied), for
    /// the caller to free once the lock is released: after a long replay this is a million
    /// writes, and the log's appends wait for the lock.
    fn take_through(&mut self, index: u64) -> VecDeque<Entry<TypeConfig>> {
        let n = (index + 1).saturating_sub(self.first).min(self.entries.len() as u64);
        self.first += n;
        let rest = self.entries.split_off(n as usize);
        let old = std::mem::replace(&mut self.entries, rest);
        self.bytes = self.bytes.saturating_sub(old.iter().map(entry_bytes).sum());
        old
    }
}

impl LogShared {
    pub(super) fn cache(&self) -> std::sync::MutexGuard<'_, LogCache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Entries `[start, end)`: recent ones from memory, older ones from the files; no more than
    /// `max_bytes` of them, or the first alone when it is larger.
    #[allow(clippy::result_large_err)] // openraft's StorageError, which its traits return
    fn entries(&self, start: u64, end: u64, max_bytes: usize) -> Result<Vec<Entry<TypeConfig>>, SErr> {
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut fits = |out: &Vec<Entry<TypeConfig>>, e: &Entry<TypeConfig>| {
            bytes += entry_bytes(e);
            out.is_empty() || bytes <= max_bytes
        };
        let mut next = start.max(self.cache().purged.map_or(0, |p| p.index + 1));
        loop {
            let c = self.cache();
            let end = end.min(c.last.map_or(0, |l| l.index + 1));
            if next >= end {
                return Ok(out);
            }
            if next < c.first {
                let upto = end.min(c.first);
                drop(c);
                // Log index i is record i + 1: records (next, upto].
                let recs = ferrozk_storage::read_range(&self.wal_dir, next, upto, max_bytes).map_err(read_err)?;
                for r in recs {
                    let e = decode_entry(&r.payload).map_err(read_err)?;
                    if !fits(&out, &e) {
                        return Ok(out);
                    }
                    out.push(e);
                    next += 1;
                }
                // The cache may have moved on meanwhile: look again.
                continue;
            }
            for i in next..end {
                let Some(e) = c.entries.get((i - c.first) as usize) else { break };
                if !fits(&out, e) {
                    break;
                }
                out.push(e.clone());
            }
            return Ok(out);
        }
    }

    /// Drops cached entries up to `index`: they are durable and older than a snapshot.
    pub(super) fn trim(&self, index: u64) {
        let old = self.cache().take_through(index);
        drop(old);
    }

    /// Keeps the cache under [`CACHE_BYTES`] once entries up to `applied` are applied: drops
    /// applied, durable entries from the front until half the budget is left.
    pub(super) fn trim_to_budget(&self, applied: u64) {
        let Some(durable) = self.flushed.load(Ordering::Acquire).checked_sub(1) else { return };
        let limit = applied.min(durable);
        let old = {
            let mut c = self.cache();
            if c.bytes <= CACHE_BYTES {
                return;
            }
            let mut left = c.bytes;
            let mut upto = None;
            for e in &c.entries {
                if left <= CACHE_BYTES / 2 || e.log_id.index > limit {
                    break;
                }
                left -= entry_bytes(e).min(left);
                upto = Some(e.log_id.index);
            }
            match upto {
                Some(i) => c.take_through(i),
                None => return,
            }
        };
        drop(old);
    }
}

enum LogOp {
    Append(Vec<Entry<TypeConfig>>, LogFlushed<TypeConfig>),
    Truncate(u64, tokio::sync::oneshot::Sender<Result<(), String>>),
    /// Start over at this record index: everything before it is in an installed snapshot.
    Reset(u64),
}

pub struct LogStore {
    pub(super) shared: Arc<LogShared>,
    ops: std::sync::mpsc::SyncSender<LogOp>,
}

#[derive(Clone)]
pub struct LogReader {
    pub(super) shared: Arc<LogShared>,
}

fn bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s + 1,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(e) => e + 1,
        Bound::Excluded(e) => *e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

/// The log as read from disk at start.
pub struct LogFiles {
    wal_dir: PathBuf,
    raft_dir: PathBuf,
    wal: Wal,
    /// The entries after the snapshot's that are not known committed (handed to openraft).
    entries: VecDeque<Entry<TypeConfig>>,
    /// The log's last entry.
    last: Option<LogId<u64>>,
    pub(super) purged: Option<LogId<u64>>,
    vote: Option<Vote<u64>>,
    committed: Option<LogId<u64>>,
}

/// How many decoded entries may wait between the thread reading the log and the one applying
/// them at start (each up to [`MAX_ENTRY_BYTES`]).
const REPLAY_QUEUE: usize = 16;

/// Operations waiting for the log thread, at most. openraft hands it one batch at a time per
/// leader entry or AppendEntries (the proposer keeps one entry in flight), so this bound is
/// never reached in practice; if it were, openraft would wait for the disk rather than queue.
const LOG_QUEUE: usize = 64;

impl LogFiles {
    /// Reads and checks every record after the purge point. Records after `covered` (a record
    /// index: what the snapshot holds) are decoded as they are read: those up to the saved
    /// commit point go to `committed_entry` at once (to be applied), later ones are kept.
    pub fn read(
        config: &ServerConfig,
        covered: u64,
        committed_entry: &mut dyn FnMut(Entry<TypeConfig>) -> Result<(), String>,
    ) -> Result<LogFiles, RecoveryError> {
        let (wal_dir, _) = crate::core::dirs(config);
        let raft_dir = config.data_dir.join("raft");
        std::fs::create_dir_all(&raft_dir).map_err(|e| ferrozk_storage::StorageError::Io(raft_dir.clone(), e))?;
        let purged: Option<LogId<u64>> = read_small(&raft_dir, "purged")?;
        let vote: Option<Vote<u64>> = read_small(&raft_dir, "vote")?;
        let committed: Option<LogId<u64>> = read_small(&raft_dir, "committed").unwrap_or(None);
        // Records after the purge point: record index = log index + 1.
        let after = purged.map_or(0, |p| p.index + 1);
        let started = Instant::now();
        let mut entries = VecDeque::new();
        let (mut records, mut decoded) = (0u64, 0u64);
        // The last record the snapshot holds, in case no record follows it: the log's last id.
        let mut last_covered = Vec::new();
        let mut last = None;
        let wal = Wal::open_after(&wal_dir, after, &mut |index, _, payload| {
            records += 1;
            if index <= covered {
                last_covered.clear();
                last_covered.extend_from_slice(payload);
                return Ok(());
            }
            let e = decode_entry(payload).map_err(|e| e.to_string())?;
            if e.log_id.index + 1 != index {
                return Err(format!("holds entry {}", e.log_id.index));
            }
            decoded += 1;
            last = Some(e.log_id);
            if committed.is_some_and(|c| e.log_id.index <= c.index) {
                committed_entry(e)
            } else {
                entries.push_back(e);
                Ok(())
            }
        })?;
        if last.is_none() && !last_covered.is_empty() {
            let damaged = |e: bincode::Error| ferrozk_storage::StorageError::Damaged {
                file: wal_dir.clone(),
                offset: 0,
                reason: format!("the last record the snapshot holds: {e}"),
            };
            last = Some(decode_entry(&last_covered).map_err(damaged)?.log_id);
        }
        let last = last.or(purged);
        tracing::info!(records, decoded, ms = started.elapsed().as_millis() as u64, "read the log");
        Ok(LogFiles { wal_dir, raft_dir, wal, entries, last, purged, vote, committed })
    }

    /// The entries after the saved commit point, taken out (the file tools apply them).
    pub(super) fn take_uncommitted(&mut self) -> VecDeque<Entry<TypeConfig>> {
        std::mem::take(&mut self.entries)
    }

    /// The record index the newest snapshot file holds the log up to (0: none).
    pub fn newest_snapshot(config: &ServerConfig) -> u64 {
        let (_, snap_dir) = crate::core::dirs(config);
        snap::list(&snap_dir).first().map_or(0, |f| f.index)
    }
}

/// Recovers the tree and the log at start. The newest snapshot that reads back loads on this
/// thread while another reads and checks the log; the entries after the snapshot come over a
/// short queue, and those up to the saved commit point are applied to the tree as they arrive
/// (as openraft would at start), so a long log is never held in memory whole. Entries not
/// known committed are left to openraft.
pub fn recover(config: &ServerConfig) -> Result<(Recovered, LogFiles), RecoveryError> {
    recover_from(config, None)
}

/// [`recover`], with the newest snapshot already in memory when `loaded` (an import just wrote it).
pub fn recover_from(config: &ServerConfig, loaded: Option<Recovered>) -> Result<(Recovered, LogFiles), RecoveryError> {
    let covered = LogFiles::newest_snapshot(config);
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel(REPLAY_QUEUE);
        let reader =
            s.spawn(move || LogFiles::read(config, covered, &mut |e| tx.send(e).map_err(|_| "recovery stopped".to_string())));
        let mut recovered = loaded.unwrap_or_else(|| load_snapshot(config));
        // Log index i is record i + 1.
        let needed_from = recovered.applied.map_or(0, |a| a.index + 1);
        if needed_from < covered {
            // The newest snapshot could not be read and an older one was: the reader skipped
            // entries this tree needs. Read the log again from where the tree ends.
            drop(rx);
            let _ = reader.join();
            // A gap is reported as such, not as the damaged record the reader would name.
            let mut gap = None;
            let files = LogFiles::read(config, needed_from, &mut |e| {
                recovered.replay(e).map_err(|m| {
                    let said = m.to_string();
                    gap = Some(m);
                    said
                })
            });
            return match gap {
                Some(m) => Err(m),
                None => Ok((recovered, files?)),
            };
        }
        let mut replayed = Ok(());
        for e in rx.iter() {
            replayed = recovered.replay(e);
            if replayed.is_err() {
                break;
            }
        }
        // Stops the reader if replaying failed.
        drop(rx);
        let files = reader.join().unwrap_or_else(|_| Err(RecoveryError::Thread(io::Error::other("the log reader panicked"))));
        replayed?;
        Ok((recovered, files?))
    })
}

impl LogStore {
    /// Opens the log read by [`LogFiles::read`], continuing the tree recovered at `applied`:
    /// entries after it are kept in memory, older ones are read from the files when a lagging
    /// member needs them. Returns the store and the log thread's handle.
    pub fn open(files: LogFiles, applied: Option<LogId<u64>>) -> Result<(LogStore, std::thread::JoinHandle<()>), RecoveryError> {
        let LogFiles { wal_dir, raft_dir, wal, mut entries, last, purged, vote, committed } = files;
        // Kept entries the snapshot holds after all (it can be newer than the saved commit
        // point, which is written without fsync).
        let keep_from = applied.map_or(0, |a| a.index + 1);
        while entries.front().is_some_and(|e| e.log_id.index < keep_from) {
            entries.pop_front();
        }
        let first = entries.front().map_or(wal.next_index().saturating_sub(1), |e| e.log_id.index);
        let committed = committed.filter(|c| Some(*c) <= last);
        let shared = Arc::new(LogShared {
            wal_dir,
            raft_dir,
            flushed: AtomicU64::new(last.map_or(0, |l| l.index + 1)),
            cache: Mutex::new(LogCache {
                first,
                bytes: entries.iter().map(entry_bytes).sum(),
                entries,
                last,
                purged,
                vote,
                committed,
            }),
        });
        let (tx, rx) = std::sync::mpsc::sync_channel(LOG_QUEUE);
        let thread = std::thread::Builder::new()
            .name("ferrozk-log".into())
            .spawn({
                let shared = shared.clone();
                move || run_log(wal, rx, shared)
            })
            .map_err(RecoveryError::Thread)?;
        Ok((LogStore { shared, ops: tx }, thread))
    }

    pub fn reader(&self) -> LogReader {
        LogReader { shared: self.shared.clone() }
    }
}

/// The log thread: appends batches, one fsync each, then tells openraft they are durable.
fn run_log(mut wal: Wal, rx: std::sync::mpsc::Receiver<LogOp>, shared: Arc<LogShared>) {
    let mut buf = Vec::new();
    let mut done: Vec<LogFlushed<TypeConfig>> = Vec::new();
    let mut last_committed = None;
    let mut broken = false;
    let save_committed = |last: &mut Option<LogId<u64>>| {
        let committed = shared.cache().committed;
        if committed != *last {
            // A lower bound for the next start's replay; written without fsync on purpose.
            if let Some(Ok(b)) = committed.map(|c| bincode::serialize(&c)) {
                let _ = write_small(&shared.raft_dir, "committed", &b, false);
            }
            *last = committed;
        }
    };
    loop {
        let op = match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(op) => op,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if !broken {
                    save_committed(&mut last_committed);
                }
                continue;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut ops = vec![op];
        while let Ok(op) = rx.try_recv() {
            ops.push(op);
        }
        let t0 = Instant::now();
        let n_ops = ops.len();
        let n_entries: usize = ops.iter().map(|o| if let LogOp::Append(e, _) = o { e.len() } else { 0 }).sum();
        let mut result: io::Result<()> = Ok(());
        let finish = |wal: &mut Wal, done: &mut Vec<LogFlushed<TypeConfig>>, result: &mut io::Result<()>| {
            if result.is_ok() {
                *result = wal.sync();
            }
            if result.is_ok() {
                shared.flushed.store(wal.next_index(), Ordering::Release);
            }
            for cb in done.drain(..) {
                cb.log_io_completed(match result {
                    Ok(()) => Ok(()),
                    Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                });
            }
        };
        for op in ops {
            match op {
                LogOp::Append(entries, cb) => {
                    for e in entries {
                        if broken || result.is_err() {
                            break;
                        }
                        buf.clear();
                        if let Err(err) = bincode::serialize_into(&mut buf, &e) {
                            result = Err(io::Error::other(err));
                            break;
                        }
                        if wal.next_index() != e.log_id.index + 1 {
                            result = Err(io::Error::other(format!(
                                "log entry {} does not follow record {}",
                                e.log_id.index,
                                wal.next_index() - 1
                            )));
                            break;
                        }
                        result = wal.append(e.log_id.leader_id.term, &buf).map(|_| ());
                    }
                    done.push(cb);
                }
                LogOp::Truncate(index, reply) => {
                    finish(&mut wal, &mut done, &mut result);
                    let r = wal.truncate_from(index + 1).map_err(|e| e.to_string());
                    shared.flushed.store(wal.next_index(), Ordering::Release);
                    let _ = reply.send(r);
                }
                LogOp::Reset(next) => {
                    finish(&mut wal, &mut done, &mut result);
                    if let Err(e) = wal.restart_at(next) {
                        tracing::error!("cannot restart the log at {next}: {e}");
                    }
                }
            }
        }
        finish(&mut wal, &mut done, &mut result);
        tracing::debug!(ops = n_ops, entries = n_entries, us = t0.elapsed().as_micros() as u64, "log batch");
        if let Err(e) = &result {
            // Nothing more can be made durable: stop acknowledging (openraft stops on the error).
            tracing::error!("cannot write the transaction log {}: {e}", wal.current_segment().display());
            broken = true;
        }
    }
    if wal.sync().is_ok() && !broken {
        save_committed(&mut last_committed);
    }
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, SErr> {
        let (s, e) = bounds(&range);
        self.shared.entries(s, e, usize::MAX)
    }

    /// One AppendEntries carries [`REPLICATION_BYTES`] at most (a larger entry goes alone): a
    /// lagging member is caught up piece by piece, each piece answered within an RPC's timeout
    /// (2000 batched entries of large values were not), and the leader holds one piece for it.
    async fn limited_get_log_entries(&mut self, start: u64, end: u64) -> Result<Vec<Entry<TypeConfig>>, SErr> {
        self.shared.entries(start, end, REPLICATION_BYTES)
    }
}

const REPLICATION_BYTES: usize = 1 << 20;

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, SErr> {
        self.reader().try_get_log_entries(range).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, SErr> {
        let c = self.shared.cache();
        Ok(LogState { last_purged_log_id: c.purged, last_log_id: c.last })
    }

    async fn get_log_reader(&mut self) -> LogReader {
        self.reader()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), SErr> {
        let b = bincode::serialize(vote).map_err(io_err)?;
        write_small(&self.shared.raft_dir, "vote", &b, true).map_err(|e| SErr::from(StorageIOError::write_vote(&e)))?;
        self.shared.cache().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, SErr> {
        Ok(self.shared.cache().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> Result<(), SErr> {
        self.shared.cache().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, SErr> {
        Ok(self.shared.cache().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), SErr>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        {
            let mut c = self.shared.cache();
            for e in &entries {
                if c.entries.is_empty() {
                    c.first = e.log_id.index;
                }
                c.last = Some(e.log_id);
                c.bytes += entry_bytes(e);
                c.entries.push_back(e.clone());
            }
        }
        self.ops.send(LogOp::Append(entries, callback)).map_err(|_| io_err(io::Error::other("the log thread stopped")))
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), SErr> {
        {
            let mut c = self.shared.cache();
            while c.entries.back().is_some_and(|e| e.log_id.index >= log_id.index) {
                if let Some(e) = c.entries.pop_back() {
                    c.bytes = c.bytes.saturating_sub(entry_bytes(&e));
                }
            }
            c.last = c.entries.back().map(|e| e.log_id).or(c.purged);
            if c.entries.is_empty() {
                c.first = log_id.index;
            }
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let _ = self.ops.send(LogOp::Truncate(log_id.index, tx));
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(io_err(io::Error::other(e))),
            Err(_) => Err(io_err(io::Error::other("the log thread stopped"))),
        }
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), SErr> {
        let b = bincode::serialize(&log_id).map_err(io_err)?;
        write_small(&self.shared.raft_dir, "purged", &b, true).map_err(io_err)?;
        let (beyond, old) = {
            let mut c = self.shared.cache();
            c.purged = Some(log_id);
            let old = c.take_through(log_id.index);
            let beyond = c.last.map_or(true, |l| l.index <= log_id.index);
            if beyond {
                c.last = Some(log_id);
                c.first = log_id.index + 1;
            }
            (beyond, old)
        };
        drop(old);
        // Purged past the end (a snapshot was installed): the log starts over after it. The
        // files themselves are removed only by autopurge, as in ZooKeeper.
        if beyond {
            let _ = self.ops.send(LogOp::Reset(log_id.index + 2));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test server's config in a fresh directory, with a log holding entries `first..end`
    /// (each creating `/n<i>`), the commit point `committed` and the purge point `purged`.
    fn log_on_disk(name: &str, first: u64, end: u64, committed: u64, purged: Option<u64>) -> ServerConfig {
        use ferrozk_tree::{acl, TxnOp};
        let dir = std::env::temp_dir().join(format!("ferrozk-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let config = ServerConfig { data_dir: dir.clone(), ..Default::default() };
        let (wal_dir, _) = crate::core::dirs(&config);
        let leader = openraft::CommittedLeaderId::new(1, 1);
        let (mut wal, _) = Wal::open(&wal_dir).unwrap();
        if first > 0 {
            wal.restart_at(first + 1).unwrap();
        }
        for i in first..end {
            let op =
                TxnOp::Create { opcode: 1, path: format!("/n{i}"), data: Some(vec![]), acl: acl::open_acl(), flags: 0, ttl: -1 };
            let txn = ferrozk_proto::jute::to_bytes(&Txn { session: 0, time: 0, auth: vec![], op });
            let batch = Batch(Arc::new(vec![Command { origin: 0, token: 0, txn: Some(txn) }]));
            let e: Entry<TypeConfig> = Entry { log_id: LogId::new(leader, i), payload: EntryPayload::Normal(batch) };
            wal.append(1, &bincode::serialize(&e).unwrap()).unwrap();
        }
        wal.sync().unwrap();
        let raft_dir = dir.join("raft");
        std::fs::create_dir_all(&raft_dir).unwrap();
        write_small(&raft_dir, "committed", &bincode::serialize(&LogId::new(leader, committed)).unwrap(), true).unwrap();
        if let Some(p) = purged {
            write_small(&raft_dir, "purged", &bincode::serialize(&LogId::new(leader, p)).unwrap(), true).unwrap();
        }
        config
    }

    #[test]
    fn a_restart_applies_committed_entries_as_it_reads_them_and_keeps_only_the_rest() {
        let config = log_on_disk("recover", 0, 10, 6, None);
        let (recovered, files) = recover(&config).unwrap();
        assert_eq!(recovered.applied().map(|a| a.index), Some(6));
        assert_eq!(recovered.replayed_writes, 7);
        let present: Vec<bool> = (0..10).map(|i| recovered.tree.node(&format!("/n{i}")).is_some()).collect();
        assert_eq!(present, [vec![true; 7], vec![false; 3]].concat());
        assert_eq!(files.entries.iter().map(|e| e.log_id.index).collect::<Vec<_>>(), vec![7, 8, 9]);
        assert_eq!(files.last.map(|l| l.index), Some(9));
        // Applied entries are read from the files again when a member needs them.
        let (log, thread) = LogStore::open(files, recovered.applied()).unwrap();
        let read = log.shared.entries(3, 10, usize::MAX).unwrap();
        assert_eq!(read.iter().map(|e| e.log_id.index).collect::<Vec<_>>(), (3..10).collect::<Vec<_>>());
        drop(log);
        thread.join().unwrap();
        std::fs::remove_dir_all(&config.data_dir).unwrap();
    }

    #[test]
    fn a_log_purged_past_every_readable_snapshot_refuses_to_start() {
        // Entries 0-4 were purged (a snapshot held them) and no snapshot is left to read.
        let config = log_on_disk("gap", 5, 10, 8, Some(4));
        match recover(&config) {
            Err(e @ RecoveryError::Gap { resumes_at: 5, tree_ends_before: 0 }) => {
                assert!(e.to_string().contains("incomplete history"), "{e}")
            }
            Err(e) => panic!("named as something else: {e:?}"),
            Ok((r, _)) => panic!("recovered a tree at {:?} from a log missing entries 0-4", r.applied()),
        }
        std::fs::remove_dir_all(&config.data_dir).unwrap();
    }
}
