//! What goes wrong with the files: an I/O error, or damage, each naming the file.

use std::io;
use std::path::PathBuf;

/// Why a log segment, snapshot or state file cannot be used: it names the file and, for
/// damage, the offset.
#[derive(Debug)]
pub enum StorageError {
    Io(PathBuf, io::Error),
    Damaged { file: PathBuf, offset: u64, reason: String },
}

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            StorageError::Damaged { file, offset, reason } => {
                // Named by what the file is: a log segment, a snapshot, or a state file.
                let kind = match file.extension().and_then(|e| e.to_str()) {
                    Some("wal") => "log file",
                    _ if file.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("snapshot.")) => "snapshot",
                    _ => "file",
                };
                write!(f, "damaged {kind} {} at offset {offset}: {reason}", file.display())
            }
        }
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StorageError::Io(_, e) => Some(e),
            StorageError::Damaged { .. } => None,
        }
    }
}
