//! Consensus: ferrozk's log, state machine and member-to-member transport behind openraft.
//! This is the only module that names openraft's types (DESIGN.md), so an upgrade touches it
//! alone.
//!
//! - Writes travel in batches: one log entry ([`Batch`]) holds the [`Command`]s (a jute-encoded
//!   `Txn` and where its client waits) that arrived while the previous entries were being made
//!   durable. openraft 0.9 waits for each append's fsync before it takes the next entry, so
//!   batching here is what makes group commit. Log index `i` is record `i + 1` of the
//!   `ferrozk-storage` log (snapshots are named by it), and the `k`-th write of that entry
//!   gets zxid `(i + 1) << 16 | k`: unique, increasing, and never rolling over.
//! - The log thread appends what openraft hands it and fsyncs before openraft counts the entry
//!   towards a quorum.
//! - Entries are applied on every member, in order, by [`crate::core::Core::apply_entry`]; the
//!   member holding the client's connection answers it.
//! - Snapshots are written by a forked child from a copy-on-write image of the tree
//!   ([`crate::snapshot_child`]); they carry openraft's snapshot metadata in front of the
//!   tree. After each one the log is purged up to the snapshot before it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Debug;
use std::io::{self, Read, Write};
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferrozk_proto::{Decode, ErrorCode, Reader};
use ferrozk_storage::{snap, Wal};
use ferrozk_tree::{DataTree, Txn};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, Membership, RaftLogReader, RaftSnapshotBuilder, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership, Vote,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::config::ServerConfig;
use crate::core::Shared;
use crate::snapshot_child::SnapshotChild;

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Batch,
        R = (),
        NodeId = u64,
        Node = ZkNode,
        Entry = Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
type SErr = StorageError<u64>;
type Meta = SnapshotMeta<u64, ZkNode>;

/// A member as the membership records it: where peers reach it (`host:quorumPort`) and its
/// `server.N` line's value, for `/zookeeper/config`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZkNode {
    pub addr: String,
    pub spec: String,
}

impl std::fmt::Display for ZkNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.spec)
    }
}

impl ZkNode {
    /// A member as ZooKeeper prints its `server.N` line: the role always, a client address
    /// only when the line gives one (never filled in from `clientPort`).
    fn of(m: &crate::config::Member) -> ZkNode {
        let role = if m.observer { "observer" } else { "participant" };
        let client = m.client_spec.as_ref().map(|a| format!(";{a}")).unwrap_or_default();
        ZkNode { addr: m.peer_addr(), spec: format!("{}:{}:{}:{role}{client}", m.host, m.quorum_port, m.election_port) }
    }

    /// The role its `server.N` line gives (`participant` or `observer`).
    fn role(&self) -> &str {
        let peer = self.spec.split(';').next().unwrap_or_default();
        peer.rsplit(':').next().unwrap_or_default()
    }

    /// The same member, as a participant no longer voting: see [`in_config`].
    fn as_non_voting(&self) -> ZkNode {
        let (peer, client) = self.spec.split_once(';').map_or((self.spec.as_str(), None), |(p, c)| (p, Some(c)));
        let host_ports = peer.rsplit_once(':').map_or(peer, |(h, _)| h);
        let client = client.map(|c| format!(";{c}")).unwrap_or_default();
        ZkNode { addr: self.addr.clone(), spec: format!("{host_ports}:participant{client}") }
    }
}

/// Whether a member of openraft's membership is in ZooKeeper's config: a voter, or a learner
/// whose line says `observer`. A learner whose line says `participant` is outside it: a member
/// that `reconfig` removed, or one being added that does not vote yet. ZooKeeper keeps a removed
/// member following the leader as a "non-voting follower" (it still serves its clients, with
/// current data), and so does ferrozk: openraft keeps replicating to it as to any learner.
fn in_config(m: &Membership<u64, ZkNode>, id: u64, node: &ZkNode) -> bool {
    node.role() == "observer" || m.voter_ids().any(|v| v == id)
}

/// One replicated write: the encoded `Txn` (none for a `sync` barrier), and the member and
/// token under which the client's connection waits for it (member 0: nobody waits).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Command {
    pub origin: u64,
    pub token: u64,
    #[serde(with = "opt_bytes")]
    pub txn: Option<Vec<u8>>,
}

/// `Option<Vec<u8>>` as serde bytes rather than a sequence of u8: bincode then copies the
/// bytes at once instead of one element at a time (a 900 KB write took longer than an
/// AppendEntries may in a debug build). bincode writes both the same way (a u64 length, then
/// the bytes), so logs written before read back unchanged.
mod opt_bytes {
    use serde::de::{Deserializer, Visitor};
    use serde::{Deserialize, Serialize, Serializer};

    struct Bytes<'a>(&'a [u8]);

    impl Serialize for Bytes<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(&Bytes(b)),
            None => s.serialize_none(),
        }
    }

    struct Buf(Vec<u8>);

    impl<'de> Deserialize<'de> for Buf {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Buf, D::Error> {
            d.deserialize_byte_buf(BufVisitor)
        }
    }

    struct BufVisitor;

    impl<'de> Visitor<'de> for BufVisitor {
        type Value = Buf;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("bytes")
        }

        fn visit_bytes<E>(self, v: &[u8]) -> Result<Buf, E> {
            Ok(Buf(v.to_vec()))
        }

        fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Buf, E> {
            Ok(Buf(v))
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Ok(Option::<Buf>::deserialize(d)?.map(|b| b.0))
    }
}

/// The writes of one log entry, in the order they are applied. Shared, because openraft hands
/// out owned entries (into the in-memory log, back out to the state machine and to each
/// follower): cloning an entry must not copy each of its writes. Encoded as the list itself.
#[derive(Debug, Clone, Default)]
pub struct Batch(pub Arc<Vec<Command>>);

impl Serialize for Batch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.as_slice().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Batch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Batch, D::Error> {
        Vec::<Command>::deserialize(d).map(|v| Batch(Arc::new(v)))
    }
}

impl std::fmt::Display for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} writes", self.0.len())
    }
}

/// Writes per log entry at most (the low 16 bits of a zxid number them).
const MAX_BATCH: usize = 4096;
const MAX_ENTRY_BYTES: usize = 1 << 20;

/// The zxid of the `pos`-th write of log entry `index`.
pub fn zxid_of(index: u64, pos: usize) -> i64 {
    (((index + 1) << 16) | pos as u64) as i64
}

/// The log record (index + 1) a zxid belongs to.
pub fn record_of(zxid: i64) -> u64 {
    zxid as u64 >> 16
}

fn io_err(e: impl std::error::Error + 'static) -> SErr {
    StorageIOError::write(&e).into()
}

fn read_err(e: impl std::fmt::Display) -> SErr {
    StorageIOError::read(&io::Error::other(e.to_string())).into()
}

/// Reads and writes a small file atomically (tmp, fsync, rename, directory fsync).
fn write_small(dir: &Path, name: &str, bytes: &[u8], durable: bool) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        if durable {
            f.sync_all()?;
        }
    }
    std::fs::rename(&tmp, dir.join(name))?;
    if durable {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn read_small<T: for<'a> Deserialize<'a>>(dir: &Path, name: &str) -> Result<Option<T>, String> {
    match std::fs::read(dir.join(name)) {
        Ok(b) => bincode::deserialize(&b).map(Some).map_err(|e| format!("{}: {e}", dir.join(name).display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", dir.join(name).display())),
    }
}

/// Decodes one log record's payload.
pub fn decode_entry(payload: &[u8]) -> Result<Entry<TypeConfig>, String> {
    bincode::deserialize(payload).map_err(|e| e.to_string())
}

/// What one log record holds, for `ferrozk log`.
pub enum EntryView {
    /// The writes with their zxids (`None`: a sync barrier).
    Writes(Vec<(i64, Option<Txn>)>),
    Blank,
    Membership(String),
}

pub fn view_entry(payload: &[u8]) -> Result<(u64, EntryView), String> {
    let e = decode_entry(payload)?;
    let leader = e.log_id.leader_id.node_id;
    Ok((
        leader,
        match e.payload {
            EntryPayload::Blank => EntryView::Blank,
            EntryPayload::Membership(m) => EntryView::Membership(describe_membership(&m)),
            EntryPayload::Normal(batch) => {
                let mut out = Vec::new();
                for (k, c) in batch.0.iter().enumerate() {
                    let txn = match &c.txn {
                        None => None,
                        Some(b) => Some(Txn::decode(&mut Reader::new(b)).map_err(|e| e.to_string())?),
                    };
                    out.push((zxid_of(e.log_id.index, k), txn));
                }
                EntryView::Writes(out)
            }
        },
    ))
}

fn describe_membership(m: &Membership<u64, ZkNode>) -> String {
    m.nodes()
        .map(|(id, n)| format!("server.{id}={}{}", n.spec, if in_config(m, *id, n) { "" } else { " (non-voting)" }))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `/zookeeper/config`'s server lines for a membership.
fn config_text(m: &Membership<u64, ZkNode>) -> String {
    m.nodes().filter(|(id, n)| in_config(m, **id, n)).map(|(id, n)| format!("server.{id}={}\n", n.spec)).collect()
}

// ---------------------------------------------------------------------------------------------
// The log

struct LogCache {
    /// Log index of `entries[0]`.
    first: u64,
    entries: VecDeque<Entry<TypeConfig>>,
    last: Option<LogId<u64>>,
    purged: Option<LogId<u64>>,
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

fn command_bytes(c: &Command) -> usize {
    c.txn.as_ref().map_or(0, Vec::len) + 48
}

struct LogShared {
    wal_dir: PathBuf,
    raft_dir: PathBuf,
    cache: Mutex<LogCache>,
    /// Highest log index known durable, plus one (0: none).
    flushed: AtomicU64,
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
    fn cache(&self) -> std::sync::MutexGuard<'_, LogCache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Entries `[start, end)`: recent ones from memory, older ones from the files; no more than
    /// about `max_bytes` of them (at least one).
    fn entries(&self, start: u64, end: u64, max_bytes: usize) -> Result<Vec<Entry<TypeConfig>>, SErr> {
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut next = start.max(self.cache().purged.map_or(0, |p| p.index + 1));
        loop {
            let c = self.cache();
            let end = end.min(c.last.map_or(0, |l| l.index + 1));
            if next >= end || bytes >= max_bytes {
                return Ok(out);
            }
            if next < c.first {
                let upto = end.min(c.first);
                drop(c);
                // Log index i is record i + 1: records (next, upto].
                let recs = ferrozk_storage::read_range(&self.wal_dir, next, upto, max_bytes - bytes).map_err(read_err)?;
                for r in recs {
                    let e = decode_entry(&r.payload).map_err(read_err)?;
                    bytes += entry_bytes(&e);
                    out.push(e);
                    next += 1;
                }
                // The cache may have moved on meanwhile: look again.
                continue;
            }
            for i in next..end {
                let Some(e) = c.entries.get((i - c.first) as usize) else { break };
                bytes += entry_bytes(e);
                out.push(e.clone());
                if bytes >= max_bytes {
                    break;
                }
            }
            return Ok(out);
        }
    }

    /// Drops cached entries up to `index`: they are durable and older than a snapshot.
    fn trim(&self, index: u64) {
        let old = self.cache().take_through(index);
        drop(old);
    }

    /// Keeps the cache under [`CACHE_BYTES`] once entries up to `applied` are applied: drops
    /// applied, durable entries from the front until half the budget is left.
    fn trim_to_budget(&self, applied: u64) {
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
    shared: Arc<LogShared>,
    ops: std::sync::mpsc::Sender<LogOp>,
}

#[derive(Clone)]
pub struct LogReader {
    shared: Arc<LogShared>,
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
    purged: Option<LogId<u64>>,
    vote: Option<Vote<u64>>,
    committed: Option<LogId<u64>>,
}

/// How many decoded entries may wait between the thread reading the log and the one applying
/// them at start (each up to [`MAX_ENTRY_BYTES`]).
const REPLAY_QUEUE: usize = 16;

impl LogFiles {
    /// Reads and checks every record after the purge point. Records after `covered` (a record
    /// index: what the snapshot holds) are decoded as they are read: those up to the saved
    /// commit point go to `committed_entry` at once (to be applied), later ones are kept.
    pub fn read(
        config: &ServerConfig,
        covered: u64,
        committed_entry: &mut dyn FnMut(Entry<TypeConfig>) -> Result<(), String>,
    ) -> Result<LogFiles, String> {
        let (wal_dir, _) = crate::core::dirs(config);
        let raft_dir = config.data_dir.join("raft");
        std::fs::create_dir_all(&raft_dir).map_err(|e| format!("{}: {e}", raft_dir.display()))?;
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
            let e = decode_entry(payload)?;
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
        })
        .map_err(|e| e.to_string())?;
        if last.is_none() && !last_covered.is_empty() {
            last = Some(decode_entry(&last_covered).map_err(|e| format!("damaged log in {}: {e}", wal_dir.display()))?.log_id);
        }
        let last = last.or(purged);
        tracing::info!(records, decoded, ms = started.elapsed().as_millis() as u64, "read the log");
        Ok(LogFiles { wal_dir, raft_dir, wal, entries, last, purged, vote, committed })
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
pub fn recover(config: &ServerConfig) -> Result<(Recovered, LogFiles), String> {
    let covered = LogFiles::newest_snapshot(config);
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel(REPLAY_QUEUE);
        let reader = s.spawn(move || {
            LogFiles::read(config, covered, &mut |e| tx.send(e).map_err(|_| "recovery stopped".to_string()))
        });
        let mut recovered = load_snapshot(config);
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
                recovered.replay(e).inspect_err(|m| gap = Some(m.clone()))
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
        let files = reader.join().unwrap_or_else(|_| Err("reading the log failed".into()));
        replayed?;
        Ok((recovered, files?))
    })
}

impl LogStore {
    /// Opens the log read by [`LogFiles::read`], continuing the tree recovered at `applied`:
    /// entries after it are kept in memory, older ones are read from the files when a lagging
    /// member needs them. Returns the store and the log thread's handle.
    pub fn open(files: LogFiles, applied: Option<LogId<u64>>) -> Result<(LogStore, std::thread::JoinHandle<()>), String> {
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
            cache: Mutex::new(LogCache { first, bytes: entries.iter().map(entry_bytes).sum(), entries, last, purged, vote, committed }),
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("ferrozk-log".into())
            .spawn({
                let shared = shared.clone();
                move || run_log(wal, rx, shared)
            })
            .map_err(|e| e.to_string())?;
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

    /// One AppendEntries carries about [`REPLICATION_BYTES`] at most: 2000 batched entries of
    /// large values did not cross within an RPC's timeout, and a member behind never caught up.
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

// ---------------------------------------------------------------------------------------------
// The state machine


/// The snapshot a member currently offers to others.
#[derive(Clone)]
struct CurrentSnapshot {
    meta: Meta,
    path: PathBuf,
}

pub struct StateMachine {
    shared: Arc<Shared>,
    log: Arc<LogShared>,
    applied: Option<LogId<u64>>,
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
    applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, ZkNode>,
    current: Option<CurrentSnapshot>,
    /// Writes replayed from the log onto the snapshot's tree.
    replayed_writes: u64,
}

impl Recovered {
    /// The last log entry the tree holds.
    pub fn applied(&self) -> Option<LogId<u64>> {
        self.applied
    }

    /// A committed log entry read at start, applied to the tree as
    /// [`RaftStateMachine::apply`] would (entries the snapshot holds are skipped). An entry
    /// that does not follow the tree's last one is an error: the entries between were purged
    /// and no snapshot that could be read holds them.
    fn replay(&mut self, e: Entry<TypeConfig>) -> Result<(), String> {
        let next = self.applied.map_or(0, |a| a.index + 1);
        if e.log_id.index < next {
            return Ok(());
        }
        if e.log_id.index > next {
            return Err(format!(
                "the log resumes at entry {} but the tree recovered ends before entry {next}: the entries between were purged, and no readable snapshot holds them; refusing to start on an incomplete history",
                e.log_id.index
            ));
        }
        let index = e.log_id.index;
        match e.payload {
            EntryPayload::Normal(batch) => {
                for (k, c) in batch.0.iter().enumerate() {
                    crate::core::apply_to_tree(&mut self.tree, zxid_of(index, k), c.txn.as_deref());
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
                return Recovered {
                    tree,
                    applied: meta.last_log_id,
                    membership: meta.last_membership.clone(),
                    current: Some(CurrentSnapshot { meta, path: file.path }),
                    replayed_writes: 0,
                };
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
fn read_snapshot_file(config: &ServerConfig, path: &Path) -> Result<(Meta, DataTree), String> {
    let index = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("snapshot."))
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or_else(|| format!("{}: not a snapshot file name", path.display()))?;
    let file = snap::SnapshotFile { index, path: path.to_path_buf() };
    let mut progress = |done: u64, total: u64| tracing::info!("loading {}: {done} of {total} nodes", path.display());
    snap::read(&file, |r| {
        let meta = read_meta(r)?;
        let tree = DataTree::read_snapshot(r, crate::core::tree_config(config), &mut progress)?;
        Ok((meta, tree))
    })
    .map_err(|e| e.to_string())
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

/// Summary and tree of a snapshot file, for `ferrozk snapshot`.
pub fn open_snapshot_for_tools(path: &Path) -> Result<(String, DataTree), String> {
    let config = ServerConfig { extended_types_enabled: true, ..Default::default() };
    let (meta, tree) = read_snapshot_file(&config, path)?;
    let last = meta.last_log_id.map_or("none".to_string(), |l| format!("index {} term {} leader {}", l.index, l.leader_id.term, l.leader_id.node_id));
    Ok((format!("last entry: {last}\nmembers: {}", describe_membership(meta.last_membership.membership())), tree))
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
        SnapshotBuilder { config: self.shared.config.clone(), log: self.log.clone(), child: Some(child), current: self.current.clone() }
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
        let (_, tree) = tokio::task::spawn_blocking(move || read_snapshot_file(&config, &p))
            .await
            .map_err(io_err)?
            .map_err(read_err)?;
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
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(CurrentSnapshot { meta: meta.clone(), path: path.clone() });
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

// ---------------------------------------------------------------------------------------------
// Member-to-member transport: length-prefixed bincode frames over TCP on the quorum port.

#[derive(Serialize, Deserialize)]
enum PeerRequest {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<u64>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    /// The rest of this connection carries [`Forwarded`] messages from a member to the leader.
    ForwardStream { from: u64 },
    Reconfig { origin: u64, token: u64, plan: ReconfigPlan },
}

#[derive(Serialize, Deserialize)]
enum PeerResponse {
    Append(Result<AppendEntriesResponse<u64>, RaftError<u64>>),
    Vote(Result<VoteResponse<u64>, RaftError<u64>>),
    Snapshot(Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>),
    /// Done (the new config is proposed), or ZooKeeper's error code.
    Reconfig(Result<(), i32>),
}

/// From a member to the leader, in the member's order.
#[derive(Serialize, Deserialize)]
pub enum Forwarded {
    Writes(Vec<Command>),
    /// Sessions whose clients were heard from since the last report (liveness for expiry).
    Touch(Vec<i64>),
}

const MAX_PEER_FRAME: usize = 512 << 20;

async fn write_msg<T: Serialize>(s: &mut (impl AsyncWriteExt + Unpin), msg: &T) -> io::Result<()> {
    let body = bincode::serialize(msg).map_err(io::Error::other)?;
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    s.write_all(&out).await
}

async fn read_msg<T: for<'a> Deserialize<'a>>(s: &mut (impl AsyncReadExt + Unpin)) -> io::Result<T> {
    let len = s.read_u32().await? as usize;
    if len > MAX_PEER_FRAME {
        return Err(io::Error::other(format!("peer frame of {len} bytes")));
    }
    let mut b = vec![0; len];
    s.read_exact(&mut b).await?;
    bincode::deserialize(&b).map_err(io::Error::other)
}

/// Reaches members at the addresses of this server's own `zoo.cfg` (as ZooKeeper does),
/// falling back to the address recorded in the membership.
pub struct Network {
    addrs: BTreeMap<u64, String>,
    /// The shortest time an RPC is given (see `PeerClient::call`): openraft gives a
    /// replication request one heartbeat interval, and a member's fsync on a busy disk may take
    /// longer.
    min_ttl: Duration,
}

fn local_addrs(config: &ServerConfig) -> BTreeMap<u64, String> {
    config.members.iter().map(|m| (m.id, m.peer_addr())).collect()
}

pub struct PeerClient {
    target: u64,
    addr: String,
    conn: Option<TcpStream>,
    min_ttl: Duration,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &ZkNode) -> PeerClient {
        let addr = self.addrs.get(&target).cloned().unwrap_or_else(|| node.addr.clone());
        PeerClient { target, addr, conn: None, min_ttl: self.min_ttl }
    }
}

impl PeerClient {
    /// One request and its answer. Cancellation-safe: openraft drops this future when its own
    /// timeout fires, and a connection left with an unread answer on it would hand that answer
    /// to the next request (a stale "conflict" makes a leader believe its follower's log went
    /// backwards). So the connection is taken out while in use and put back only after a
    /// whole round trip.
    async fn call(&mut self, req: PeerRequest, ttl: Duration) -> Result<PeerResponse, RPCError<u64, ZkNode, RaftError<u64>>> {
        let ttl = ttl.max(self.min_ttl);
        let conn = self.conn.take();
        let r = tokio::time::timeout(ttl, async {
            let mut s = match conn {
                Some(s) => s,
                None => {
                    let s = TcpStream::connect(&self.addr).await?;
                    let _ = s.set_nodelay(true);
                    s
                }
            };
            write_msg(&mut s, &req).await?;
            let resp = read_msg::<PeerResponse>(&mut s).await?;
            Ok::<_, io::Error>((s, resp))
        })
        .await;
        match r {
            Ok(Ok((s, resp))) => {
                self.conn = Some(s);
                Ok(resp)
            }
            Ok(Err(e)) => Err(RPCError::Unreachable(Unreachable::new(&e))),
            Err(_) => Err(RPCError::Network(NetworkError::new(&io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer from {} in {ttl:?}", self.addr),
            )))),
        }
    }

    fn remote<E: std::error::Error>(&self, e: RaftError<u64, E>) -> RemoteError<u64, ZkNode, RaftError<u64, E>> {
        RemoteError::new(self.target, e)
    }
}

fn unexpected<E: std::error::Error>() -> RPCError<u64, ZkNode, RaftError<u64, E>> {
    RPCError::Network(NetworkError::new(&io::Error::other("unexpected answer from a peer")))
}

fn widen<E: std::error::Error>(e: RPCError<u64, ZkNode, RaftError<u64>>) -> RPCError<u64, ZkNode, RaftError<u64, E>> {
    match e {
        RPCError::Unreachable(u) => RPCError::Unreachable(u),
        RPCError::Network(n) => RPCError::Network(n),
        RPCError::PayloadTooLarge(p) => RPCError::PayloadTooLarge(p),
        RPCError::Timeout(t) => RPCError::Timeout(t),
        RPCError::RemoteError(r) => RPCError::Network(NetworkError::new(&io::Error::other(r.to_string()))),
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, ZkNode, RaftError<u64>>> {
        match self.call(PeerRequest::Append(rpc), option.hard_ttl()).await? {
            PeerResponse::Append(Ok(r)) => Ok(r),
            PeerResponse::Append(Err(e)) => Err(RPCError::RemoteError(self.remote(e))),
            _ => Err(unexpected()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RPCError<u64, ZkNode, RaftError<u64, InstallSnapshotError>>> {
        match self.call(PeerRequest::Snapshot(rpc), option.hard_ttl()).await.map_err(widen)? {
            PeerResponse::Snapshot(Ok(r)) => Ok(r),
            PeerResponse::Snapshot(Err(e)) => Err(RPCError::RemoteError(self.remote(e))),
            _ => Err(unexpected()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, ZkNode, RaftError<u64>>> {
        match self.call(PeerRequest::Vote(rpc), option.hard_ttl()).await? {
            PeerResponse::Vote(Ok(r)) => Ok(r),
            PeerResponse::Vote(Err(e)) => Err(RPCError::RemoteError(self.remote(e))),
            _ => Err(unexpected()),
        }
    }
}

/// Serves the quorum port: Raft RPCs, and the write streams members forward to the leader.
pub async fn serve_peers(listener: TcpListener, raft: Raft, shared: Arc<Shared>) {
    // The connections' tasks live in this set, so that stopping this task (server shutdown)
    // closes them too: a peer must not keep talking to a stopped member's leftovers.
    let mut conns = tokio::task::JoinSet::new();
    // When a leader's replication last reached this member (ms of `Shared::now`), on any
    // connection.
    let replicated = Arc::new(AtomicU64::new(0));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let Ok((stream, peer)) = accepted else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (raft, shared, replicated) = (raft.clone(), shared.clone(), replicated.clone());
        conns.spawn(async move {
            let mut replicated_here = None;
            if let Err(e) = serve_peer(stream, &raft, &shared, &replicated, &mut replicated_here).await {
                tracing::debug!(%peer, "peer connection ended: {e}");
            }
            if let Some(at) = replicated_here {
                stand_after_lease(&raft, &shared, &replicated, at).await;
            }
        });
    }
}

/// Serves one member's connection; `replicated_here`: when it last carried a leader's
/// replication, if it did.
async fn serve_peer(
    mut s: TcpStream,
    raft: &Raft,
    shared: &Arc<Shared>,
    replicated: &AtomicU64,
    replicated_here: &mut Option<u64>,
) -> io::Result<()> {
    loop {
        let req: PeerRequest = read_msg(&mut s).await?;
        let resp = match req {
            PeerRequest::Append(r) => {
                let at = shared.now();
                replicated.store(at, Ordering::Relaxed);
                *replicated_here = Some(at);
                PeerResponse::Append(raft.append_entries(r).await)
            }
            PeerRequest::Vote(r) => PeerResponse::Vote(raft.vote(r).await),
            PeerRequest::Snapshot(r) => PeerResponse::Snapshot(raft.install_snapshot(r).await),
            PeerRequest::Reconfig { origin, token, plan } => {
                PeerResponse::Reconfig(lead_reconfig(shared, raft, origin, token, plan).await.map_err(|e| e.code()))
            }
            PeerRequest::ForwardStream { from } => {
                tracing::debug!(member = from, "forwarding stream opened");
                loop {
                    match read_msg::<Forwarded>(&mut s).await? {
                        // Proposed in the member's order; if this member is no longer leader the
                        // entry is dropped and the member, seeing the new leader, fails it.
                        Forwarded::Writes(c) => shared.relay(c),
                        Forwarded::Touch(ids) => shared.touch_sessions(&ids),
                    }
                }
            }
        };
        write_msg(&mut s, &resp).await?;
    }
}

/// The connection a leader replicated over has closed, most likely because it died (a killed
/// process's sockets close at once). openraft 0.9's follower stands only after the leader
/// lease (election_timeout_max) plus a random election timeout: 1.5-2 s at tickTime 2000.
/// This one stands as soon as the lease has run out, plus a jitter so that the remaining
/// followers do not all stand at once (a split vote), unless a leader is heard from meanwhile.
/// Votes stay Raft's: a candidate too early is refused, and openraft's own timer goes on.
async fn stand_after_lease(raft: &Raft, shared: &Shared, replicated: &AtomicU64, last_heard: u64) {
    // openraft 0.9's leader lease is its election_timeout_max.
    let (lease, election) = (raft.config().election_timeout_max, raft.config().election_timeout_min);
    let jitter = 20 + rand::random::<u64>() % (election / 2).max(1);
    let at = last_heard + lease + jitter;
    tokio::time::sleep(Duration::from_millis(at.saturating_sub(shared.now()))).await;
    if replicated.load(Ordering::Relaxed) > last_heard || shared.is_leader() {
        return;
    }
    tracing::info!(silent_ms = shared.now() - last_heard, "the leader's connection closed and its lease ran out: standing for election");
    let _ = raft.trigger().elect().await;
}

/// What the proposer sends to the leader: writes in order and liveness reports.
pub enum Outbound {
    Write { token: u64, command: Command },
    /// Writes another member forwarded to this one (as leader): proposed with its own, in
    /// that member's order.
    Relay(Vec<Command>),
    Touch(Vec<i64>),
    /// A reconfig of a client of this member: the leader changes the membership, then
    /// proposes the new `/zookeeper/config` under this token.
    Reconfig { token: u64, plan: ReconfigPlan },
}

/// Log entries handed to openraft and not yet applied, at most. One: the writes that arrive
/// meanwhile gather into the next entry, so each fsync (and each replication round) carries
/// one larger batch. With two, batches were smaller (22 writes an fsync instead of 30 under
/// `ferrozk bench` 8x8) for more server CPU a write (standalone and 3 members alike).
const ENTRIES_IN_FLIGHT: usize = 1;

/// Sends this member's writes to the leader in order: as batched log entries when this
/// member leads, over one stream to the leader otherwise.
pub async fn run_proposer(shared: Arc<Shared>, raft: Raft, mut rx: tokio::sync::mpsc::UnboundedReceiver<Option<Outbound>>) {
    let me = shared.my_id;
    let mut metrics = raft.server_metrics();
    let mut link: Option<(u64, TcpStream)> = None;
    let mut batch = Vec::new();
    let mut in_flight: VecDeque<ResponderReceiver> = VecDeque::new();
    loop {
        // While openraft still holds earlier entries, let writes gather into the next one.
        while in_flight.len() >= ENTRIES_IN_FLIGHT {
            if let Some(r) = in_flight.pop_front() {
                if !matches!(r.await, Ok(Ok(_))) {
                    // Not applied (no longer leader): their clients learn it as a connection loss.
                    shared.fail_sent_writes(None);
                }
            }
        }
        let limit = MAX_BATCH.saturating_sub(batch.len()).max(1);
        if rx.recv_many(&mut batch, limit).await == 0 {
            return;
        }
        let stop = batch.iter().any(|b| b.is_none());
        let (leader, term) = loop {
            let (l, term) = leader_and_term(&metrics.borrow());
            let standing_aside = l == Some(me) && shared.handing_over.load(Ordering::Acquire);
            if let (Some(l), false) = (l, standing_aside) {
                break (l, term);
            }
            // The flag clears without a metrics change when nobody took over (see hand_over).
            let recheck = Duration::from_millis(if standing_aside { 50 } else { 3_600_000 });
            if let Ok(Err(_)) = tokio::time::timeout(recheck, metrics.changed()).await {
                return;
            }
        };
        let tokens: Vec<u64> = batch.iter().flatten().filter_map(|o| match o { Outbound::Write { token, .. } => Some(*token), _ => None }).collect();
        shared.mark_sent(&tokens, leader, term);
        if leader == me {
            let mut writes = Vec::new();
            for o in batch.drain(..).flatten() {
                match o {
                    Outbound::Write { command, .. } => writes.push(command),
                    Outbound::Relay(commands) => writes.extend(commands),
                    Outbound::Touch(ids) => shared.touch_sessions(&ids),
                    Outbound::Reconfig { token, plan } => {
                        let (shared, raft) = (shared.clone(), raft.clone());
                        tokio::spawn(async move {
                            if let Err(code) = lead_reconfig(&shared, &raft, me, token, plan).await {
                                shared.fail_write_with(token, code);
                            }
                        });
                    }
                }
            }
            let mut writes = writes.into_iter().peekable();
            while writes.peek().is_some() {
                // An entry holds at most MAX_BATCH writes and about MAX_ENTRY_BYTES (at least one
                // write): entries travel to the other members whole, within an RPC's timeout.
                let mut chunk = Vec::new();
                let mut bytes = 0;
                while let Some(w) = writes.next_if(|w| chunk.is_empty() || (chunk.len() < MAX_BATCH && bytes + command_bytes(w) <= MAX_ENTRY_BYTES)) {
                    bytes += command_bytes(&w);
                    chunk.push(w);
                }
                match raft.client_write_ff(Batch(Arc::new(chunk))).await {
                    Ok(r) => in_flight.push_back(r),
                    Err(_) => return,
                }
            }
        } else {
            if shared.take_relink() || link.as_ref().is_some_and(|(l, _)| *l != leader) {
                link = None;
            }
            if link.is_none() {
                let addr = local_addrs(&shared.config)
                    .get(&leader)
                    .cloned()
                    .or_else(|| metrics.borrow().membership_config.membership().get_node(&leader).map(|n| n.addr.clone()));
                if let Some(addr) = addr {
                    match TcpStream::connect(&addr).await {
                        Ok(mut s) => {
                            let _ = s.set_nodelay(true);
                            if write_msg(&mut s, &PeerRequest::ForwardStream { from: me }).await.is_ok() {
                                link = Some((leader, s));
                            }
                        }
                        Err(e) => tracing::warn!(leader, %addr, "cannot reach the leader: {e}"),
                    }
                }
            }
            let mut msgs = Vec::new();
            let mut writes = Vec::new();
            for o in batch.drain(..).flatten() {
                match o {
                    Outbound::Write { command, .. } => writes.push(command),
                    // Writes relayed to a member that lost the lead: their origin fails them.
                    Outbound::Relay(_) => {}
                    Outbound::Touch(ids) => msgs.push(Forwarded::Touch(ids)),
                    Outbound::Reconfig { token, plan } => forward_reconfig(&shared, leader, token, plan),
                }
            }
            if !writes.is_empty() {
                msgs.push(Forwarded::Writes(writes));
            }
            let mut out = Vec::new();
            for msg in msgs {
                if let Ok(body) = bincode::serialize(&msg) {
                    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
                    out.extend_from_slice(&body);
                }
            }
            let sent = match link.as_mut() {
                Some((_, s)) => s.write_all(&out).await.is_ok(),
                None => false,
            };
            if !sent {
                // Their clients see the connection close and retry, as after a ZooKeeper
                // leader change.
                link = None;
                shared.fail_sent_writes(None);
            }
        }
        batch.clear();
        if stop {
            return;
        }
    }
}

type ResponderReceiver = <openraft::raft::responder::OneshotResponder<TypeConfig> as openraft::raft::responder::Responder<TypeConfig>>::Receiver;

/// A reconfig asked on this member goes to the leader as a request of its own, answered when
/// the leader is done.
fn forward_reconfig(shared: &Arc<Shared>, leader: u64, token: u64, plan: ReconfigPlan) {
    let addr = local_addrs(&shared.config).get(&leader).cloned();
    let (shared, me) = (shared.clone(), shared.my_id);
    tokio::spawn(async move {
        let r = match addr {
            Some(addr) => {
                let mut c = PeerClient { target: leader, addr, conn: None, min_ttl: Duration::ZERO };
                let req = PeerRequest::Reconfig { origin: me, token, plan };
                match c.call(req, Duration::from_secs(60)).await {
                    Ok(PeerResponse::Reconfig(r)) => r.map_err(|c| ErrorCode::from_code(c).unwrap_or(ErrorCode::SystemError)),
                    _ => Err(ErrorCode::ConnectionLoss),
                }
            }
            None => Err(ErrorCode::ConnectionLoss),
        };
        if let Err(code) = r {
            shared.fail_write_with(token, code);
        }
    });
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

/// The leader and term writes are handed over under: read from the same metrics by the
/// proposer and by [`watch_leadership`], so that both name a leadership alike.
fn leader_and_term(m: &openraft::metrics::RaftServerMetrics<u64, ZkNode>) -> (Option<u64>, u64) {
    (m.current_leader, m.vote.leader_id().get_term())
}

/// Follows leadership: a change fails the writes sent to the old leader, and a new leader
/// gives every session a fresh timeout (as ZooKeeper does). Server metrics change with votes,
/// roles and membership only, not with every entry.
pub async fn watch_leadership(shared: Arc<Shared>, raft: Raft) {
    let mut metrics = raft.server_metrics();
    let mut last = (None, 0);
    loop {
        let now = leader_and_term(&metrics.borrow_and_update());
        if now != last {
            tracing::info!(leader = ?now.0, term = now.1, "leadership changed");
            shared.on_leader_change(now.0, now.1);
            last = now;
            if shared.ensemble && now.0 == Some(shared.my_id) {
                tokio::spawn(publish_config(shared.clone(), raft.clone()));
            }
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// A new leader makes `/zookeeper/config` show the members, once it has applied what came
/// before: a new ensemble's configured members (as ZooKeeper shows its static configuration
/// there), or a membership that a reconfig changed without publishing it (its leader removed
/// itself, or failed in between).
async fn publish_config(shared: Arc<Shared>, raft: Raft) {
    tokio::time::sleep(Duration::from_millis(timing(&shared.config).1)).await;
    // Not halfway through a reconfig: that one publishes its own result.
    if !shared.is_leader() || shared.reconfig_in_progress.load(Ordering::Acquire) {
        return;
    }
    let (version, published) = {
        let core = shared.lock();
        let data = core.tree.node("/zookeeper/config").and_then(|n| n.data()).unwrap_or_default();
        (core.tree.config_version(), String::from_utf8_lossy(data).into_owned())
    };
    let servers = if version == 0 {
        let (voters, learners) = initial_members(&shared.config, shared.my_id);
        voters.into_iter().chain(learners).collect::<BTreeMap<_, _>>().into_iter().map(|(id, n)| format!("server.{id}={}\n", n.spec)).collect()
    } else {
        let m = raft.metrics().borrow().membership_config.clone();
        let changed_since = m.log_id().map_or(0, |l| l.index + 1) > record_of(version);
        let servers = config_text(m.membership());
        if !changed_since || published.strip_prefix(&servers).is_some_and(|rest| rest.starts_with("version=")) {
            return;
        }
        servers
    };
    shared.propose_detached_op(ferrozk_tree::TxnOp::SetConfig { servers });
}


/// A reconfig as a client asked for it: checked on the member it reached, carried out by
/// the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReconfigPlan {
    joining: Vec<(u64, ZkNode, bool)>,
    leaving: Vec<u64>,
    new_members: Option<Vec<(u64, ZkNode, bool)>>,
    /// Whether the client may write `/zookeeper/config` (checked last, as ZooKeeper does).
    authorized: bool,
}

/// `server.N=host:port:port[:role][;client]` entries, comma-separated.
fn parse_servers(list: &str) -> Result<Vec<(u64, ZkNode, bool)>, ErrorCode> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (key, value) = item.split_once('=').ok_or(ErrorCode::BadArguments)?;
        let id = key.trim().strip_prefix("server.").and_then(|n| n.parse::<u64>().ok()).ok_or(ErrorCode::BadArguments)?;
        let m = crate::config::Member::parse(id, value.trim()).map_err(|_| ErrorCode::BadArguments)?;
        out.push((id, ZkNode::of(&m), m.observer));
    }
    Ok(out)
}

/// The checks ZooKeeper makes before it involves the quorum, in its order: reconfig enabled,
/// the expected config version, well-formed arguments. WRITE on `/zookeeper/config` (in
/// practice: the super user) is noted here and enforced by the leader after its own checks.
pub fn prepare_reconfig(shared: &Shared, auth: &[ferrozk_proto::Id], r: &ferrozk_proto::ReconfigRequest) -> Result<ReconfigPlan, ErrorCode> {
    if !shared.ensemble || !shared.config.reconfig_enabled {
        return Err(ErrorCode::ReconfigDisabled);
    }
    let (version, authorized) = {
        let core = shared.lock();
        let node = core.tree.node("/zookeeper/config").ok_or(ErrorCode::NoNode)?;
        let authorized = ferrozk_tree::acl::check(node.acl(), ferrozk_proto::codes::perms::WRITE, auth).is_ok();
        (core.tree.config_version(), authorized)
    };
    if r.cur_config_id != -1 && r.cur_config_id != version {
        return Err(ErrorCode::BadVersion);
    }
    let new_members = parse_servers(&r.new_members)?;
    let joining = parse_servers(&r.joining_servers)?;
    let leaving = r
        .leaving_servers
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u64>().map_err(|_| ErrorCode::BadArguments))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ReconfigPlan { joining, leaving, new_members: (!new_members.is_empty()).then_some(new_members), authorized })
}

/// On the leader: changes the membership (openraft's joint consensus), then proposes the new
/// `/zookeeper/config`, answered by member `origin` under `token`.
async fn lead_reconfig(shared: &Arc<Shared>, raft: &Raft, origin: u64, token: u64, plan: ReconfigPlan) -> Result<(), ErrorCode> {
    if shared.reconfig_in_progress.swap(true, Ordering::AcqRel) {
        return Err(ErrorCode::ReconfigInProgress);
    }
    let r = change_members(shared, raft, plan).await;
    shared.reconfig_in_progress.store(false, Ordering::Release);
    let servers = r?;
    let mut txn = Vec::new();
    ferrozk_proto::Encode::encode(
        &Txn { session: 0, time: crate::core::wall_ms(), auth: Vec::new(), op: ferrozk_tree::TxnOp::SetConfig { servers } },
        &mut txn,
    );
    let applied = raft.client_write_ff(Batch(Arc::new(vec![Command { origin, token, txn: Some(txn) }]))).await;
    let applied = applied.map_err(|_| ErrorCode::ConnectionLoss)?;
    let voting = raft.metrics().borrow().membership_config.membership().voter_ids().any(|id| id == shared.my_id);
    if !voting {
        // Answered (once applied) before this leader stands aside.
        let _ = applied.await;
        tokio::spawn(hand_over(shared.clone(), raft.clone()));
    }
    Ok(())
}

/// A leader that a reconfig removed from the voters stands aside, as ZooKeeper's does. openraft
/// would let it lead on as a learner, so it goes quiet instead: no heartbeats, no proposals
/// (the proposer holds writes back meanwhile), until a voter's election timer fires and the new
/// leader's first message makes this member a follower; writes held back then go to that leader.
async fn hand_over(shared: Arc<Shared>, raft: Raft) {
    shared.handing_over.store(true, Ordering::Release);
    raft.runtime_config().heartbeat(false);
    let mut metrics = raft.server_metrics();
    let limit = Duration::from_millis(timing(&shared.config).1 * 20);
    let stood_aside = tokio::time::timeout(limit, async {
        while metrics.borrow_and_update().current_leader == Some(shared.my_id) {
            if metrics.changed().await.is_err() {
                return;
            }
        }
    })
    .await;
    if stood_aside.is_err() {
        tracing::warn!("removed from the voters, but no voter took the lead within {limit:?}: leading on");
    }
    raft.runtime_config().heartbeat(true);
    shared.handing_over.store(false, Ordering::Release);
}

async fn change_members(shared: &Shared, raft: &Raft, plan: ReconfigPlan) -> Result<String, ErrorCode> {
    use openraft::ChangeMembers;
    if !shared.is_leader() {
        return Err(ErrorCode::ConnectionLoss);
    }
    let wait = Duration::from_millis(timing(&shared.config).1 * 4);
    let current = raft.metrics().borrow().membership_config.clone();
    let cm = current.membership();
    if cm.get_joint_config().len() > 1 {
        return Err(ErrorCode::ReconfigInProgress);
    }
    let voters: BTreeSet<u64> = cm.voter_ids().collect();
    let mut target: BTreeMap<u64, (ZkNode, bool)> =
        cm.nodes().filter(|(id, n)| in_config(cm, **id, n)).map(|(id, n)| (*id, (n.clone(), !voters.contains(id)))).collect();
    match plan.new_members.clone() {
        Some(all) => target = all.into_iter().map(|(id, n, o)| (id, (n, o))).collect(),
        None => {
            for id in &plan.leaving {
                target.remove(id);
            }
            for (id, n, o) in &plan.joining {
                target.insert(*id, (n.clone(), *o));
            }
        }
    }
    let new_voters: BTreeSet<u64> = target.iter().filter(|(_, (_, o))| !o).map(|(id, _)| *id).collect();
    // ZooKeeper (with standaloneEnabled, its default) wants at least two voters.
    if new_voters.len() < 2 {
        return Err(ErrorCode::BadArguments);
    }
    // A quorum of the new voters must be connected and caught up with this leader.
    let synced = {
        let m = raft.metrics().borrow().clone();
        let last = m.last_log_index.unwrap_or(0);
        let slack = 1000;
        new_voters
            .iter()
            .filter(|id| {
                **id == shared.my_id
                    || m.replication.as_ref().and_then(|r| r.get(id)).and_then(|x| x.as_ref()).is_some_and(|l| l.index + slack >= last)
            })
            .count()
    };
    if synced * 2 <= new_voters.len() {
        return Err(ErrorCode::NewConfigNoQuorum);
    }
    if !plan.authorized {
        return Err(ErrorCode::NoAuth);
    }
    let failed = |e: String| {
        tracing::warn!("reconfig failed: {e}");
        ErrorCode::NewConfigNoQuorum
    };
    for (id, (node, observer)) in &target {
        match cm.get_node(id) {
            // A new member first follows as a learner; one that will vote must catch up first.
            None => match tokio::time::timeout(wait, raft.add_learner(*id, node.clone(), !observer)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(failed(e.to_string())),
                Err(_) => return Err(failed(format!("server {id} did not catch up within {wait:?}"))),
            },
            Some(old) if old != node => {
                let change = ChangeMembers::SetNodes([(*id, node.clone())].into_iter().collect());
                raft.change_membership(change, true).await.map_err(|e| failed(e.to_string()))?;
            }
            Some(_) => {}
        }
    }
    if new_voters != voters {
        let change = tokio::time::timeout(wait, raft.change_membership(ChangeMembers::ReplaceAllVoters(new_voters), true));
        match change.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(failed(e.to_string())),
            Err(_) => return Err(failed(format!("the new voters did not commit within {wait:?}"))),
        }
    }
    // Removed voters stayed on as learners (retain); removed observers become non-voting
    // participants, so that neither is in the config and both keep following (see in_config).
    let now = raft.metrics().borrow().membership_config.clone();
    let leftover: BTreeMap<u64, ZkNode> = now
        .membership()
        .nodes()
        .filter(|(id, n)| !target.contains_key(id) && in_config(now.membership(), **id, n))
        .map(|(id, n)| (*id, n.as_non_voting()))
        .collect();
    if !leftover.is_empty() {
        raft.change_membership(ChangeMembers::SetNodes(leftover), true).await.map_err(|e| failed(e.to_string()))?;
    }
    let m = raft.metrics().borrow().membership_config.clone();
    Ok(config_text(m.membership()))
}

/// The leader's view of its members, for mntr.
fn ensemble_stats(m: &openraft::RaftMetrics<u64, ZkNode>, my_id: u64) -> crate::core::EnsembleStats {
    let membership = m.membership_config.membership();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let last_index = m.last_log_index.unwrap_or(0);
    let mut stats = crate::core::EnsembleStats { voters: voters.len(), ..Default::default() };
    for (id, matched) in m.replication.iter().flatten() {
        if *id == my_id {
            continue;
        }
        stats.followers += 1;
        // Caught up: within a couple of entries of this leader's log.
        if matched.as_ref().is_some_and(|l| l.index + 2 >= last_index) {
            match membership.get_node(id) {
                _ if voters.contains(id) => stats.synced += 1,
                Some(n) if in_config(membership, *id, n) => stats.synced_observers += 1,
                _ => stats.synced_non_voting += 1,
            }
        }
    }
    stats
}

/// openraft's settings from `zoo.cfg`.
pub fn raft_config(config: &ServerConfig) -> Result<openraft::Config, String> {
    let (heartbeat, election) = timing(config);
    let c = openraft::Config {
        cluster_name: "ferrozk".into(),
        heartbeat_interval: heartbeat,
        election_timeout_min: election,
        election_timeout_max: election * 2,
        // Snapshots follow snapCount in writes (the state machine asks), not in entries.
        snapshot_policy: openraft::SnapshotPolicy::Never,
        // openraft counts entries, and an entry holds a batch of writes, so its count-based
        // purge would keep the whole log of a busy server. run_snapshot_trigger purges instead,
        // up to the snapshot before the newest: a damaged newest snapshot can still fall back
        // to that one plus the log.
        max_in_snapshot_log_to_keep: u64::MAX,
        max_payload_entries: 2000,
        install_snapshot_timeout: 10_000,
        ..Default::default()
    };
    c.validate().map_err(|e| e.to_string())
}

/// Heartbeat interval and the shortest election timeout, in ms. A member suspects the leader
/// after a quarter to half a tick of silence, between 500 ms and 1 s (ZooKeeper notices a dead
/// leader's closed socket at once, a silent one only after syncLimit ticks: 10 s by
/// default), so a failover completes well within two ticks plus the election.
/// What a member is given at least before it counts as unresponsive, however short the
/// election timeout: a peer RPC's reply (an append's fsync on a busy disk) and, on a leader, a
/// quorum's answer (check-quorum). Elections got faster than this; these waits did not.
const BUSY_MACHINE_MS: u64 = 500;

pub fn timing(config: &ServerConfig) -> (u64, u64) {
    if config.members.len() <= 1 {
        return (50, 150);
    }
    // An eighth of a tick (250 ms at tickTime 2000): openraft's leader lease is twice this,
    // and a killed leader is replaced once it runs out (see stand_after_lease).
    let election = (config.tick_time / 8).clamp(250, 1000);
    (election / 3, election)
}

/// A leader that cannot reach a quorum stops serving (check-quorum), as a ZooKeeper leader
/// does after syncLimit: its clients then look for a member that has one (or stay read-only).
/// openraft keeps it leader until another is elected; nothing it proposes can commit meanwhile.
pub async fn check_quorum(shared: Arc<Shared>, raft: Raft) {
    let (_, election) = timing(&shared.config);
    let election = Duration::from_millis(election.max(BUSY_MACHINE_MS));
    let mut last_ok = Instant::now();
    loop {
        // Its read-index round renews the voters' leases: not while standing aside (hand_over).
        if !shared.is_leader() || shared.handing_over.load(Ordering::Acquire) {
            shared.set_quorum(true);
            tokio::time::sleep(election / 2).await;
            last_ok = Instant::now();
            continue;
        }
        // A quorum round trip (the read index).
        if matches!(tokio::time::timeout(election, raft.ensure_linearizable()).await, Ok(Ok(_))) {
            last_ok = Instant::now();
            shared.set_quorum(true);
            tokio::time::sleep(election / 2).await;
            continue;
        }
        if last_ok.elapsed() >= election * 2 && shared.set_quorum(false) {
            tracing::warn!("no quorum answered for {:?}: not serving until one does", last_ok.elapsed());
        }
        tokio::time::sleep(election / 10).await;
    }
}

/// The initial members, for a log that has never been started.
pub fn initial_members(config: &ServerConfig, my_id: u64) -> (BTreeMap<u64, ZkNode>, BTreeMap<u64, ZkNode>) {
    let mut voters = BTreeMap::new();
    let mut learners = BTreeMap::new();
    if config.members.is_empty() {
        voters.insert(my_id, ZkNode::default());
    }
    for m in &config.members {
        let node = ZkNode::of(m);
        if m.observer {
            learners.insert(m.id, node);
        } else {
            voters.insert(m.id, node);
        }
    }
    (voters, learners)
}

/// Starts consensus: openraft over the recovered log and tree; a new ensemble is initialised
/// with the configured members (every member may do so with the same set).
pub async fn start(
    config: &ServerConfig,
    shared: Arc<Shared>,
    log: LogStore,
    mut recovered: Recovered,
) -> Result<Raft, String> {
    let my_id = shared.my_id;
    let purged = log.shared.cache().purged;
    if purged.is_some_and(|p| recovered.applied.map_or(true, |a| a.index < p.index)) {
        return Err(format!(
            "the log before index {} was purged, and no readable snapshot covers it: refusing to start on an incomplete history",
            purged.map_or(0, |p| p.index + 1)
        ));
    }
    let sm = StateMachine::new(shared.clone(), &log, &mut recovered);
    let raft = Raft::new(my_id, Arc::new(raft_config(config)?), Network { addrs: local_addrs(config), min_ttl: Duration::from_millis(timing(config).1.max(BUSY_MACHINE_MS)) }, log, sm).await.map_err(|e| e.to_string())?;
    // Computed when mntr asks: the metrics change with every entry.
    let metrics = raft.metrics();
    shared.set_ensemble_stats_source(Box::new(move || ensemble_stats(&metrics.borrow(), my_id)));
    let (voters, learners) = initial_members(config, my_id);
    let solo = voters.len() == 1 && voters.contains_key(&my_id);
    if voters.contains_key(&my_id) && !raft.is_initialized().await.map_err(|e| e.to_string())? {
        // A new ensemble: the lowest id starts it at once; the others wait to hear from it
        // and start it themselves only if it stays silent (several members initialising at
        // once would depose each other's first leader). Observers join later as learners.
        let first = voters.keys().next() == Some(&my_id);
        let wait = if first { Duration::ZERO } else { Duration::from_millis(timing(config).1 * 4) };
        let raft = raft.clone();
        let init = async move {
            let mut metrics = raft.metrics();
            let _ = tokio::time::timeout(wait, async {
                while metrics.borrow().membership_config.membership().voter_ids().next().is_none() {
                    if metrics.changed().await.is_err() {
                        return;
                    }
                }
            })
            .await;
            if !raft.is_initialized().await.unwrap_or(true) {
                match raft.initialize(voters).await {
                    Ok(()) => tracing::info!("initialised a new ensemble"),
                    Err(e) => tracing::debug!("initialise: {e}"),
                }
            }
        };
        if first {
            init.await;
        } else {
            tokio::spawn(init);
        }
    }
    if solo && raft.is_initialized().await.map_err(|e| e.to_string())? {
        // A restarted standalone server need not wait out an election timeout for itself.
        raft.trigger().elect().await.map_err(|e| e.to_string())?;
    }
    if !learners.is_empty() {
        tokio::spawn(add_observers(raft.clone(), learners, my_id));
    }
    Ok(raft)
}

/// The leader adds configured observers as learners (openraft's non-voting members).
async fn add_observers(raft: Raft, learners: BTreeMap<u64, ZkNode>, my_id: u64) {
    let mut metrics = raft.metrics();
    loop {
        let (leader, known): (Option<u64>, BTreeSet<u64>) = {
            let m = metrics.borrow();
            (m.current_leader, m.membership_config.membership().nodes().map(|(id, _)| *id).collect())
        };
        if learners.keys().all(|id| known.contains(id)) {
            return;
        }
        if leader == Some(my_id) {
            for (id, node) in &learners {
                if !known.contains(id) {
                    if let Err(e) = raft.add_learner(*id, node.clone(), false).await {
                        tracing::warn!(observer = id, "cannot add observer: {e}");
                    }
                }
            }
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_lines_carry_a_client_address_only_where_the_server_line_gives_one() {
        // The member's own clientPort is never added: clients would be sent to it alone.
        let config = ServerConfig::parse(
            "dataDir=/d\nclientPort=2181\nserver.1=h1:2888:3888\nserver.2=h2:2888:3888;2182\nserver.3=h3:2888:3888:observer;10.0.0.3:2183\n",
            "zoo.cfg",
        )
        .unwrap();
        let (voters, learners) = initial_members(&config, 1);
        let lines: Vec<String> = voters.iter().chain(learners.iter()).map(|(id, n)| format!("server.{id}={}", n.spec)).collect();
        assert_eq!(
            lines,
            [
                "server.1=h1:2888:3888:participant",
                "server.2=h2:2888:3888:participant;0.0.0.0:2182",
                "server.3=h3:2888:3888:observer;10.0.0.3:2183"
            ]
        );
        // A reconfig's lines are shown in the same form, whatever their spelling.
        let joining = parse_servers("server.4=h4:2888:3888;2184, server.5=h5:2888:3888:participant").unwrap();
        assert_eq!(joining[0].1.spec, "h4:2888:3888:participant;0.0.0.0:2184");
        assert_eq!(joining[1].1.spec, "h5:2888:3888:participant");
    }

    #[test]
    fn removed_members_stay_as_learners_outside_the_config() {
        let node = |spec: &str| ZkNode { addr: "a:1".into(), spec: spec.into() };
        let (voter, observer) = (node("h1:1:2:participant;0.0.0.0:3"), node("[::1]:1:2:observer;[::1]:3"));
        assert_eq!(observer.role(), "observer");
        assert_eq!(observer.as_non_voting().spec, "[::1]:1:2:participant;[::1]:3");
        assert_eq!(node("h:1:2:observer").as_non_voting().spec, "h:1:2:participant");
        let removed = node("h3:1:2:participant");
        let nodes: BTreeMap<u64, ZkNode> = [(1, voter.clone()), (2, observer.clone()), (3, removed)].into_iter().collect();
        let m = Membership::new(vec![[1].into_iter().collect()], nodes);
        assert_eq!(config_text(&m), format!("server.1={}\nserver.2={}\n", voter.spec, observer.spec));
        assert!(describe_membership(&m).ends_with("server.3=h3:1:2:participant (non-voting)"));
    }

    #[test]
    fn commands_encode_as_they_did_with_txn_a_sequence_of_u8() {
        #[derive(Serialize)]
        struct Before {
            origin: u64,
            token: u64,
            txn: Option<Vec<u8>>,
        }
        for txn in [None, Some(vec![]), Some((0..=255).collect::<Vec<u8>>())] {
            let now = Command { origin: 3, token: 7, txn: txn.clone() };
            let before = bincode::serialize(&Before { origin: 3, token: 7, txn: txn.clone() }).unwrap();
            assert_eq!(bincode::serialize(&now).unwrap(), before);
            let back: Command = bincode::deserialize(&before).unwrap();
            assert_eq!(back.txn, txn);
        }
    }

    #[test]
    fn batches_encode_as_the_list_of_their_commands() {
        let commands = vec![Command { origin: 1, token: 2, txn: Some(vec![9; 5]) }, Command { origin: 1, token: 3, txn: None }];
        let before = bincode::serialize(&commands).unwrap();
        assert_eq!(bincode::serialize(&Batch(Arc::new(commands))).unwrap(), before);
        let back: Batch = bincode::deserialize(&before).unwrap();
        assert_eq!(back.0.iter().map(|c| (c.token, c.txn.clone())).collect::<Vec<_>>(), vec![(2, Some(vec![9; 5])), (3, None)]);
    }

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
            let op = TxnOp::Create { opcode: 1, path: format!("/n{i}"), data: Some(vec![]), acl: acl::open_acl(), flags: 0, ttl: -1 };
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
            Err(e) => assert!(e.contains("incomplete history"), "{e}"),
            Ok((r, _)) => panic!("recovered a tree at {:?} from a log missing entries 0-4", r.applied()),
        }
        std::fs::remove_dir_all(&config.data_dir).unwrap();
    }
}
