//! What stops a server from recovering its data directory or starting consensus, as types: the
//! binary reports a damaged file, a gap in the history and a consensus failure as what they are.

use std::fmt;
use std::io;

/// Why the data directory cannot be recovered.
#[derive(Debug)]
pub enum RecoveryError {
    /// A log segment, snapshot or state file cannot be read, or is damaged.
    Storage(ferrozk_storage::StorageError),
    /// The log resumes after entries that were purged and that no readable snapshot holds.
    Gap { resumes_at: u64, tree_ends_before: u64 },
    /// The log before `first_kept` was purged and no readable snapshot covers it.
    Purged { first_kept: u64 },
    /// A thread that recovery needs could not be started, or died.
    Thread(io::Error),
    /// Apache ZooKeeper's data, found at the first start, cannot be taken over.
    ZooKeeper(crate::zk_import::ImportError),
}

impl fmt::Display for RecoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecoveryError::Storage(e) => e.fmt(f),
            RecoveryError::Gap { resumes_at, tree_ends_before } => write!(
                f,
                "the log resumes at entry {resumes_at} but the tree recovered ends before entry {tree_ends_before}: the entries between were purged, and no readable snapshot holds them; refusing to start on an incomplete history"
            ),
            RecoveryError::Purged { first_kept } => write!(
                f,
                "the log before index {first_kept} was purged, and no readable snapshot covers it: refusing to start on an incomplete history"
            ),
            RecoveryError::Thread(e) => write!(f, "recovery thread: {e}"),
            RecoveryError::ZooKeeper(e) => write!(f, "{e}; nothing was imported"),
        }
    }
}

impl std::error::Error for RecoveryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RecoveryError::Storage(e) => Some(e),
            RecoveryError::Thread(e) => Some(e),
            RecoveryError::ZooKeeper(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ferrozk_storage::StorageError> for RecoveryError {
    fn from(e: ferrozk_storage::StorageError) -> Self {
        RecoveryError::Storage(e)
    }
}

/// Why consensus could not start over what was recovered.
#[derive(Debug)]
pub enum ConsensusError {
    /// What was recovered cannot be a start (a history with a hole in it).
    Recovery(RecoveryError),
    /// The timing the configuration asks for is not one consensus can run with.
    Timing(String),
    /// openraft refused to start or to take its first step (its message).
    Raft(String),
}

impl fmt::Display for ConsensusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConsensusError::Recovery(e) => e.fmt(f),
            ConsensusError::Timing(e) => write!(f, "timing (tickTime, initLimit, syncLimit): {e}"),
            ConsensusError::Raft(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ConsensusError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConsensusError::Recovery(e) => Some(e),
            _ => None,
        }
    }
}
