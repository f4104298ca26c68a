//! Snapshot files: `snapshot.<index, 20 digits>` in the data directory.
//!
//! ```text
//! "FZKSNAP1" | u32 format version | u32 0 | u64 index of the last entry in it
//! body (the tree, as ferrozk-tree writes it)
//! u64 body length | u32 crc32 of the body | "FZKSEND1"
//! ```
//!
//! Written to `<name>.tmp`, fsynced, renamed into place, and the directory fsynced, so a crash
//! leaves either the old set of snapshots or the new one. A snapshot whose trailer or checksum
//! does not match is refused, and recovery falls back to the one before it.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::StorageError;

const MAGIC: &[u8; 8] = b"FZKSNAP1";
const END: &[u8; 8] = b"FZKSEND1";
const VERSION: u32 = 1;
const HEADER: u64 = 24;
const TRAILER: u64 = 20;

/// A snapshot file and the index of the last entry it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    pub index: u64,
    pub path: PathBuf,
}

/// Snapshots in `dir`, newest first.
pub fn list(dir: &Path) -> Vec<SnapshotFile> {
    let mut v: Vec<SnapshotFile> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let index = name.strip_prefix("snapshot.")?.parse::<u64>().ok()?;
                    Some(SnapshotFile { index, path: e.path() })
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort_by_key(|s| std::cmp::Reverse(s.index));
    v
}

/// Flushes to disk every few MiB while the snapshot is written: a large burst of dirty pages
/// would make the log's fsyncs (on the request path) wait behind it.
const SYNC_EVERY: u64 = 1 << 20;

struct HashingWriter {
    inner: BufWriter<File>,
    hasher: crc32fast::Hasher,
    len: u64,
    unsynced: u64,
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        self.unsynced += n as u64;
        if self.unsynced >= SYNC_EVERY {
            self.inner.flush()?;
            self.inner.get_ref().sync_data()?;
            self.unsynced = 0;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes a snapshot of everything up to `index`; `body` writes the tree.
pub fn write(dir: &Path, index: u64, body: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let path = dir.join(format!("snapshot.{index:020}"));
    let tmp = dir.join(format!("snapshot.{index:020}.tmp"));
    let file = File::create(&tmp)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    w.write_all(MAGIC)?;
    w.write_all(&VERSION.to_be_bytes())?;
    w.write_all(&0u32.to_be_bytes())?;
    w.write_all(&index.to_be_bytes())?;
    let mut hw = HashingWriter { inner: w, hasher: crc32fast::Hasher::new(), len: 0, unsynced: 0 };
    body(&mut hw)?;
    let (mut w, crc, len) = (hw.inner, hw.hasher.finalize(), hw.len);
    w.write_all(&len.to_be_bytes())?;
    w.write_all(&crc.to_be_bytes())?;
    w.write_all(END)?;
    let file = w.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    fs::rename(&tmp, &path)?;
    File::open(dir)?.sync_all()?;
    Ok(path)
}

struct HashingReader<R> {
    inner: R,
    hasher: crc32fast::Hasher,
    left: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let max = (buf.len() as u64).min(self.left) as usize;
        if max == 0 {
            return Ok(0);
        }
        let n = self.inner.read(&mut buf[..max])?;
        self.hasher.update(&buf[..n]);
        self.left -= n as u64;
        Ok(n)
    }
}

/// Reads a snapshot: `parse` gets the body, and its result counts only if the whole body was
/// read and its checksum matches.
pub fn read<T>(file: &SnapshotFile, parse: impl FnOnce(&mut dyn Read) -> Result<T, String>) -> Result<T, StorageError> {
    let p = &file.path;
    let damaged = |offset: u64, reason: String| StorageError::Damaged { file: p.clone(), offset, reason };
    let mut f = File::open(p).map_err(|e| StorageError::Io(p.clone(), e))?;
    let size = f.metadata().map_err(|e| StorageError::Io(p.clone(), e))?.len();
    if size < HEADER + TRAILER {
        return Err(damaged(0, "too short to be a snapshot".into()));
    }
    let mut header = [0u8; HEADER as usize];
    f.read_exact(&mut header).map_err(|e| StorageError::Io(p.clone(), e))?;
    if &header[..8] != MAGIC {
        return Err(damaged(0, "not a ferrozk snapshot (bad header)".into()));
    }
    let index = u64::from_be_bytes(header[16..24].try_into().unwrap());
    if index != file.index {
        return Err(damaged(16, format!("holds index {index}, its name says {}", file.index)));
    }
    let mut trailer = [0u8; TRAILER as usize];
    f.seek(SeekFrom::Start(size - TRAILER)).map_err(|e| StorageError::Io(p.clone(), e))?;
    f.read_exact(&mut trailer).map_err(|e| StorageError::Io(p.clone(), e))?;
    let len = u64::from_be_bytes(trailer[..8].try_into().unwrap());
    let crc = u32::from_be_bytes(trailer[8..12].try_into().unwrap());
    if &trailer[12..] != END || len != size - HEADER - TRAILER {
        return Err(damaged(size - TRAILER, "trailer missing or wrong (incomplete snapshot)".into()));
    }
    f.seek(SeekFrom::Start(HEADER)).map_err(|e| StorageError::Io(p.clone(), e))?;
    let mut r = HashingReader { inner: BufReader::with_capacity(1 << 20, f), hasher: crc32fast::Hasher::new(), left: len };
    let value = parse(&mut r).map_err(|e| damaged(HEADER, e))?;
    // Whatever the parser left unread still counts for the checksum.
    io::copy(&mut r, &mut io::sink()).map_err(|e| StorageError::Io(p.clone(), e))?;
    if r.hasher.finalize() != crc {
        return Err(damaged(HEADER, "checksum mismatch".into()));
    }
    Ok(value)
}

/// Removes all but the newest `keep` snapshots; returns the index of the oldest one kept.
pub fn purge(dir: &Path, keep: usize) -> io::Result<Option<u64>> {
    let all = list(dir);
    for s in all.iter().skip(keep.max(1)) {
        fs::remove_file(&s.path)?;
    }
    if all.len() > keep {
        File::open(dir)?.sync_all()?;
    }
    Ok(all.iter().take(keep.max(1)).next_back().map(|s| s.index))
}
