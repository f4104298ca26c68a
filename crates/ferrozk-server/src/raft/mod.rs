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
//! - Entries are applied on every member, in order, by [`crate::core::Core::apply_entry`](crate::apply); the
//!   member holding the client's connection answers it.
//! - Snapshots are written by a forked child from a copy-on-write image of the tree
//!   ([`crate::snapshot_child`]); they carry openraft's snapshot metadata in front of the
//!   tree. After each one the log is purged up to the snapshot before it.
//!
//! The parts: [`log`] (the durable log and recovery), [`state_machine`] (applying entries,
//! snapshots), [`network`] (openraft's RPCs between members, and the writes members forward),
//! [`proposer`] (a member's writes into consensus, in order), [`leadership`] (timing, who
//! leads, check-quorum), [`membership`] (`/zookeeper/config` and `reconfig`), [`tools`] (what
//! the file tools read). This file holds the types they share and [`start`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Debug;
use std::io::{self, Read};
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
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, Membership, RaftLogReader, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership, Vote,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::config::ServerConfig;
use crate::core::Shared;
use crate::snapshot_child::SnapshotChild;

mod adopt;
mod error;
mod leadership;
mod log;
mod membership;
mod network;
mod proposer;
mod runtime;
mod state_machine;
pub mod tools;

use leadership::*;
use log::*;
use membership::*;
use network::*;
use proposer::*;
use state_machine::*;

// What the rest of the server uses besides [`Consensus`] and [`restore`].
pub use adopt::{adopt, clear_unfinished_import, has_no_ferrozk_data, Adopted};
pub use error::{ConsensusError, RecoveryError};
pub use leadership::timing;
pub use membership::{prepare_reconfig, ReconfigPlan};
pub use proposer::Outbound;

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Batch,
        R = (),
        NodeId = u64,
        Node = ZkNode,
        Entry = Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = runtime::PatientRuntime,
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

/// Consensus's small state files (vote, commit and purge points), checksummed by
/// `ferrozk_storage::small`.
fn write_small(dir: &Path, name: &str, bytes: &[u8], durable: bool) -> io::Result<()> {
    ferrozk_storage::small::write(dir, name, bytes, durable)
}

fn read_small<T: for<'a> Deserialize<'a>>(dir: &Path, name: &str) -> Result<Option<T>, ferrozk_storage::StorageError> {
    match ferrozk_storage::small::read(dir, name)? {
        Some(b) => bincode::deserialize(&b).map(Some).map_err(|e| ferrozk_storage::StorageError::Damaged {
            file: dir.join(name),
            offset: 0,
            reason: e.to_string(),
        }),
        None => Ok(None),
    }
}

/// Decodes one log record's payload.
pub fn decode_entry(payload: &[u8]) -> Result<Entry<TypeConfig>, bincode::Error> {
    bincode::deserialize(payload)
}

/// What consensus starts from besides the tree: the log, whose thread is running, and where
/// the tree stands in it.
pub struct Restored {
    recovered: Recovered,
    log: LogStore,
    log_thread: std::thread::JoinHandle<()>,
}

/// Reads the data directory: the tree (newest snapshot plus the committed log) and the rest
/// of the log. Blocking: call it off the async runtime.
/// `imported`: ZooKeeper's data an import just wrote as the newest snapshot, with its tree.
pub fn restore(config: &ServerConfig, imported: Option<(DataTree, Adopted)>) -> Result<(DataTree, Restored), RecoveryError> {
    let (mut recovered, files) = recover_from(config, imported.map(|(tree, a)| a.recovered(tree)))?;
    let (log, log_thread) = LogStore::open(files, recovered.applied())?;
    let tree = std::mem::replace(&mut recovered.tree, crate::core::new_tree(config));
    Ok((tree, Restored { recovered, log, log_thread }))
}

/// Consensus as the server holds it: openraft and the tasks around it, behind the few calls the
/// server makes, so that openraft's types stay in this module.
pub struct Consensus {
    raft: Raft,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    proposer: tokio::task::JoinHandle<()>,
    log_thread: std::thread::JoinHandle<()>,
}

impl Consensus {
    /// Starts openraft over what [`restore`] read, the proposer that takes `proposals`, and,
    /// in an ensemble, the tasks that follow leadership and serve the other members on `peers`.
    pub async fn start(
        shared: Arc<Shared>,
        restored: Restored,
        proposals: tokio::sync::mpsc::Receiver<Option<Outbound>>,
        peers: Option<TcpListener>,
    ) -> Result<Consensus, ConsensusError> {
        let Restored { recovered, log, log_thread } = restored;
        let raft = start(&shared.config, shared.clone(), log, recovered).await?;
        let mut tasks = vec![
            tokio::spawn(watch_leadership(shared.clone(), raft.clone())),
            tokio::spawn(run_snapshot_trigger(shared.clone(), raft.clone())),
        ];
        let proposer = tokio::spawn(run_proposer(shared.clone(), raft.clone(), proposals));
        if shared.ensemble {
            tasks.push(tokio::spawn(check_quorum(shared.clone(), raft.clone())));
        }
        if let Some(l) = peers {
            tracing::info!(addr = ?l.local_addr().ok(), id = shared.my_id, "serving ensemble members");
            let imported = adopt::imported(&shared.config);
            tasks.push(tokio::spawn(serve_peers(l, raft.clone(), shared.clone(), imported)));
        }
        Ok(Consensus { raft, tasks, proposer, log_thread })
    }

    /// Asks for a snapshot of everything applied so far (written in the background).
    pub async fn snapshot(&self) -> io::Result<()> {
        self.raft.trigger().snapshot().await.map_err(io::Error::other)
    }

    /// Stops: the writes handed over are proposed, then openraft stops, a snapshot being
    /// written is let finish, and the log thread ends once its last batch is written.
    pub async fn shutdown(self, shared: &Shared) {
        let Consensus { raft, tasks, mut proposer, log_thread } = self;
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        shared.stop_proposer();
        // Without a leader it would wait for one; what it holds fails with the connections.
        if tokio::time::timeout(Duration::from_millis(500), &mut proposer).await.is_err() {
            proposer.abort();
        }
        let _ = raft.shutdown().await;
        drop(raft);
        wait_for_snapshot(shared, Duration::from_secs(30)).await;
        let _ = tokio::task::spawn_blocking(move || log_thread.join()).await;
    }
}

/// Starts consensus: openraft over the recovered log and tree; a new ensemble is initialised
/// with the configured members (every member may do so with the same set).
async fn start(
    config: &ServerConfig,
    shared: Arc<Shared>,
    log: LogStore,
    mut recovered: Recovered,
) -> Result<Raft, ConsensusError> {
    let my_id = shared.my_id;
    let purged = log.shared.cache().purged;
    if purged.is_some_and(|p| recovered.applied.map_or(true, |a| a.index < p.index)) {
        return Err(ConsensusError::Recovery(RecoveryError::Purged { first_kept: purged.map_or(0, |p| p.index + 1) }));
    }
    let sm = StateMachine::new(shared.clone(), &log, &mut recovered);
    let raft_err = |e: openraft::error::Fatal<u64>| ConsensusError::Raft(e.to_string());
    let settings = raft_config(config).map_err(ConsensusError::Timing)?;
    let raft = Raft::new(my_id, Arc::new(settings), Network::new(config), log, sm).await.map_err(raft_err)?;
    // Computed when mntr asks: the metrics change with every entry.
    let metrics = raft.metrics();
    shared.set_ensemble_stats_source(Box::new(move || ensemble_stats(&metrics.borrow(), my_id)));
    let (voters, learners) = initial_members(config, my_id);
    let solo = voters.len() == 1 && voters.contains_key(&my_id);
    if voters.contains_key(&my_id) && !raft.is_initialized().await.map_err(raft_err)? {
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
    if solo && raft.is_initialized().await.map_err(raft_err)? {
        // A restarted standalone server need not wait out an election timeout for itself.
        raft.trigger().elect().await.map_err(raft_err)?;
    }
    if !learners.is_empty() {
        tokio::spawn(add_observers(raft.clone(), learners, my_id));
    }
    Ok(raft)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
