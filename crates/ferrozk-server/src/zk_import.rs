//! Reading an Apache ZooKeeper data directory into a tree, as ZooKeeper itself restores it
//! when it starts (`FileTxnSnapLog.restore`): the newest snapshot that reads whole (falling
//! back to older ones), then every logged transaction after the snapshot's zxid, from the log
//! file that holds it. ZooKeeper's files are only read, never changed.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ferrozk_storage::zookeeper::{open_snapshot, TxnLogReader, ZkFiles};
use ferrozk_storage::StorageError;
use ferrozk_tree::zookeeper::ZkAcls;
use ferrozk_tree::{DataTree, TreeConfig};

use crate::config::ServerConfig;
use crate::raft::RecoveryError;

/// What was read, and from where.
pub struct ZkImport {
    pub tree: DataTree,
    /// The highest zxid ZooKeeper had handed out, as far as its files tell.
    pub last_zxid: i64,
    pub snapshot: Option<PathBuf>,
    /// Snapshots that could not be read, newest first, and why.
    pub skipped_snapshots: Vec<(PathBuf, String)>,
    pub txns_replayed: u64,
    pub seconds: f64,
}

impl ZkImport {
    /// One line for the log: what came over.
    pub fn summary(&self) -> String {
        format!(
            "{} znodes, {} sessions, last zxid 0x{:x}, from {} and {} logged transactions after it, in {:.2} s",
            self.tree.node_count(),
            self.tree.sessions().len(),
            self.last_zxid,
            self.snapshot.as_ref().map_or("no snapshot".into(), |p| p.display().to_string()),
            self.txns_replayed,
            self.seconds
        )
    }
}

/// Why ZooKeeper's data cannot be imported.
#[derive(Debug)]
pub enum ImportError {
    Storage(StorageError),
    /// A snapshot's or a log record's content is wrong.
    Damaged {
        file: PathBuf,
        offset: u64,
        reason: String,
    },
    /// Transactions are missing between the snapshot and the logs, or between two logs.
    Gap {
        file: PathBuf,
        offset: u64,
        expected: i64,
        found: i64,
    },
    /// No snapshot could be read.
    NoSnapshot(Vec<(PathBuf, String)>),
    /// ZooKeeper's last zxid leaves ferrozk's zxids no room above it (past epoch 32766).
    ZxidTooHigh(i64),
}

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImportError::Storage(e) => write!(f, "{e}"),
            ImportError::Damaged { file, offset, reason } => {
                write!(f, "cannot import {} at offset {offset}: {reason}", file.display())
            }
            ImportError::Gap { file, offset, expected, found } => write!(
                f,
                "ZooKeeper's log has a gap: {} at offset {offset} holds zxid 0x{found:x}, but 0x{expected:x} was never logged",
                file.display()
            ),
            ImportError::ZxidTooHigh(z) => write!(
                f,
                "ZooKeeper's last zxid 0x{z:x} (epoch {}) leaves ferrozk's zxids no room above it: imports end in epoch 32766",
                z >> 32
            ),
            ImportError::NoSnapshot(tried) => {
                write!(f, "no ZooKeeper snapshot could be read")?;
                for (p, why) in tried {
                    write!(f, "; {}: {why}", p.display())?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ImportError {}

impl From<StorageError> for ImportError {
    fn from(e: StorageError) -> Self {
        ImportError::Storage(e)
    }
}

/// At a server's start: when its data directory holds Apache ZooKeeper's files and none of
/// ferrozk's, reads them and writes ferrozk's data from them (`raft::adopt`), logging one line.
/// Returns what was imported, if anything, and the snapshot written from it.
pub fn take_over(config: &ServerConfig, my_id: u64) -> Result<Option<(ZkImport, crate::raft::Adopted)>, RecoveryError> {
    if !crate::raft::has_no_ferrozk_data(config) {
        return Ok(None);
    }
    crate::raft::clear_unfinished_import(config);
    let log_dir = config.data_log_dir.clone().unwrap_or_else(|| config.data_dir.clone());
    let Some(import) =
        read_zookeeper(&config.data_dir, &log_dir, crate::core::tree_config(config)).map_err(RecoveryError::ZooKeeper)?
    else {
        return Ok(None);
    };
    let adopted = crate::raft::adopt(config, my_id, &import)?;
    tracing::info!(
        "imported Apache ZooKeeper's data: {} (ferrozk's log continues at entry {}; ZooKeeper's files are left as they were)",
        import.summary(),
        adopted.next_entry()
    );
    Ok(Some((import, adopted)))
}

/// Reads ZooKeeper's snapshots from `data_dir/version-2` and its logs from
/// `log_dir/version-2`; `None` when there are none.
pub fn read_zookeeper(data_dir: &Path, log_dir: &Path, config: TreeConfig) -> Result<Option<ZkImport>, ImportError> {
    let started = Instant::now();
    let files = ZkFiles::scan(data_dir, log_dir)?;
    if files.is_empty() {
        return Ok(None);
    }
    let mut skipped = Vec::new();
    let mut chosen = None;
    for (file, compression) in files.snapshots.iter().rev() {
        let read = open_snapshot(&file.path, *compression)
            .map_err(|e| e.to_string())
            .and_then(|mut r| DataTree::read_zookeeper_snapshot(&mut r, config.clone()));
        match read {
            Ok(s) => {
                chosen = Some((file.clone(), s));
                break;
            }
            Err(why) => {
                tracing::warn!(snapshot = %file.path.display(), "cannot read this ZooKeeper snapshot, trying an older one: {why}");
                skipped.push((file.path.clone(), why));
            }
        }
    }
    let (snapshot, mut tree, mut acls, snap_zxid) = match chosen {
        Some((file, s)) => (Some(file.path), s.tree, s.acls, file.zxid),
        // ZooKeeper writes a snapshot when it first starts; without one, the logs are
        // replayed over an empty tree only if they begin at the first zxid (the gap check).
        None if files.snapshots.is_empty() => (None, DataTree::new(config), ZkAcls::default(), 0),
        None => return Err(ImportError::NoSnapshot(skipped)),
    };
    let mut last = snap_zxid;
    let mut replayed = 0;
    // The log that holds the snapshot's next transaction starts at or before it.
    let first = files.logs.iter().rposition(|l| l.zxid <= snap_zxid).unwrap_or(0);
    for (i, log) in files.logs.iter().enumerate().skip(first) {
        let mut reader = TxnLogReader::open(&log.path)?;
        if reader.header_torn {
            // The newest log may have been cut before its header, as ZooKeeper 3.9.3 and
            // later accept; one in the middle lost what its successors depend on.
            if i + 1 < files.logs.len() {
                return Err(ImportError::Damaged {
                    file: log.path.clone(),
                    offset: 0,
                    reason: "shorter than a log file header, and newer logs follow".into(),
                });
            }
            tracing::warn!(log = %log.path.display(), "the newest ZooKeeper log ends inside its header; it holds no transaction");
            continue;
        }
        while let Some((offset, entry)) = reader.next_record()? {
            let zxid = entry_zxid(&entry).ok_or_else(|| ImportError::Damaged {
                file: log.path.clone(),
                offset,
                reason: "record shorter than a transaction header".into(),
            })?;
            if zxid <= last {
                continue;
            }
            // Within an epoch zxids count up by one; a new epoch starts its own count.
            if zxid >> 32 == last >> 32 && zxid != last + 1 {
                return Err(ImportError::Gap { file: log.path.clone(), offset, expected: last + 1, found: zxid });
            }
            tree.replay_zookeeper_txn(&entry, &mut acls).map_err(|reason| ImportError::Damaged {
                file: log.path.clone(),
                offset,
                reason,
            })?;
            last = zxid;
            replayed += 1;
        }
    }
    tree.resolve_zookeeper_acls(&mut acls).map_err(|reason| ImportError::Damaged {
        file: snapshot.clone().unwrap_or_default(),
        offset: 0,
        reason,
    })?;
    let last_zxid = last.max(tree.last_zxid());
    tree.set_last_zxid(last_zxid);
    Ok(Some(ZkImport {
        tree,
        last_zxid,
        snapshot,
        skipped_snapshots: skipped,
        txns_replayed: replayed,
        seconds: started.elapsed().as_secs_f64(),
    }))
}

/// The zxid in a log entry's `TxnHeader` (after clientId and cxid).
fn entry_zxid(entry: &[u8]) -> Option<i64> {
    entry.get(12..20).map(|b| i64::from_be_bytes(b.try_into().expect("8 bytes")))
}
