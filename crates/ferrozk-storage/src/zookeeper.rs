//! Apache ZooKeeper's files, read and never written: the snapshots and transaction logs in a
//! `version-2` directory (3.5 to 3.9 formats). Snapshots come out as their decompressed
//! stream (plain, gzip, or snappy-java's stream format), to be parsed by
//! `ferrozk_tree::zookeeper`; logs as their records, each checked against its Adler32.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::StorageError;

/// "ZKLG": the first word of a transaction log.
pub const LOG_MAGIC: i32 = 0x5A4B_4C47;

/// How a snapshot file is compressed, from its name as ZooKeeper decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
}

/// A ZooKeeper snapshot or log file and the zxid in its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkFile {
    pub path: PathBuf,
    pub zxid: i64,
}

/// ZooKeeper's files in a data directory and a log directory (the same one when `dataLogDir`
/// is not set), each sorted by zxid.
#[derive(Debug, Clone, Default)]
pub struct ZkFiles {
    pub snapshots: Vec<(ZkFile, Compression)>,
    pub logs: Vec<ZkFile>,
}

impl ZkFiles {
    /// Lists `<data_dir>/version-2/snapshot.*` and `<log_dir>/version-2/log.*`.
    pub fn scan(data_dir: &Path, log_dir: &Path) -> Result<ZkFiles, StorageError> {
        let mut files = ZkFiles::default();
        for (dir, want_logs) in [(data_dir.join("version-2"), false), (log_dir.join("version-2"), true)] {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StorageError::Io(dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| StorageError::Io(dir.clone(), e))?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                let mut parts = name.split('.');
                let (Some(kind), Some(hex)) = (parts.next(), parts.next()) else { continue };
                let Ok(zxid) = i64::from_str_radix(hex, 16) else { continue };
                let file = ZkFile { path: entry.path(), zxid };
                match (kind, parts.next(), parts.next(), want_logs) {
                    ("snapshot", None, None, false) => files.snapshots.push((file, Compression::None)),
                    ("snapshot", Some("gz"), None, false) => files.snapshots.push((file, Compression::Gzip)),
                    ("snapshot", Some("snappy"), None, false) => files.snapshots.push((file, Compression::Snappy)),
                    ("log", None, None, true) => files.logs.push(file),
                    _ => {}
                }
            }
        }
        files.snapshots.sort_by_key(|(f, _)| f.zxid);
        files.logs.sort_by_key(|f| f.zxid);
        Ok(files)
    }

    pub fn is_empty(&self) -> bool {
        self.snapshots.is_empty() && self.logs.is_empty()
    }
}

/// The decompressed stream of a snapshot file.
pub fn open_snapshot(path: &Path, compression: Compression) -> Result<Box<dyn Read>, StorageError> {
    let file = File::open(path).map_err(|e| StorageError::Io(path.to_path_buf(), e))?;
    let file = BufReader::with_capacity(1 << 16, file);
    Ok(match compression {
        Compression::None => Box::new(file),
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(file)),
        Compression::Snappy => Box::new(SnappyJavaStream::new(file, path).map_err(|e| damaged(path, 0, e))?),
    })
}

fn damaged(path: &Path, offset: u64, reason: impl std::fmt::Display) -> StorageError {
    StorageError::Damaged { file: path.to_path_buf(), offset, reason: reason.to_string() }
}

/// snappy-java's `SnappyOutputStream` format (not snappy's framing format): an 8-byte magic,
/// two version words, then blocks, each a big-endian length and a raw snappy block.
struct SnappyJavaStream<R> {
    inner: R,
    block: Vec<u8>,
    pos: usize,
    compressed: Vec<u8>,
    decoder: ::snap::raw::Decoder,
    path: PathBuf,
    offset: u64,
}

const SNAPPY_JAVA_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];

impl<R: Read> SnappyJavaStream<R> {
    fn new(mut inner: R, path: &Path) -> Result<Self, String> {
        let mut head = [0u8; 16];
        inner.read_exact(&mut head).map_err(|e| format!("no snappy-java header: {e}"))?;
        if head[..8] != SNAPPY_JAVA_MAGIC {
            return Err("not a snappy-java stream (bad magic)".into());
        }
        Ok(SnappyJavaStream {
            inner,
            block: Vec::new(),
            pos: 0,
            compressed: Vec::new(),
            decoder: ::snap::raw::Decoder::new(),
            path: path.to_path_buf(),
            offset: 16,
        })
    }

    /// The next block; false at the end of the stream.
    fn next_block(&mut self) -> io::Result<bool> {
        let mut len = [0u8; 4];
        match read_full(&mut self.inner, &mut len)? {
            0 => return Ok(false),
            4 => {}
            _ => return Err(self.error("stream ends in a block length")),
        }
        let n = i32::from_be_bytes(len);
        if !(0..=(64 << 20)).contains(&n) {
            return Err(self.error(format!("block length {n}")));
        }
        self.compressed.resize(n as usize, 0);
        if read_full(&mut self.inner, &mut self.compressed)? != n as usize {
            return Err(self.error("stream ends in a block"));
        }
        let size = ::snap::raw::decompress_len(&self.compressed).map_err(|e| self.error(e))?;
        self.block.resize(size, 0);
        self.decoder.decompress(&self.compressed, &mut self.block).map_err(|e| self.error(e))?;
        self.pos = 0;
        self.offset += 4 + n as u64;
        Ok(true)
    }

    fn error(&self, reason: impl std::fmt::Display) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("damaged snapshot {} at offset {}: {reason}", self.path.display(), self.offset),
        )
    }
}

impl<R: Read> Read for SnappyJavaStream<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.block.len() {
            if !self.next_block()? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.block.len() - self.pos);
        out[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Reads until `buf` is full or the stream ends; the count read.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// The records of one transaction log file, in order, each an entry (`TxnHeader`, txn and
/// optional digest) whose Adler32 matched. The file ends, as ZooKeeper reads it, at EOF, at
/// a zero length (the preallocated tail) or at a record cut short (a torn last write); a
/// record whose checksum does not match is an error naming file and offset.
pub struct TxnLogReader {
    r: BufReader<File>,
    path: PathBuf,
    offset: u64,
    done: bool,
    /// The file ends inside its 16-byte header: ZooKeeper was stopped between creating a
    /// new log and writing its header, so the file holds no record (ZOOKEEPER-2332).
    pub header_torn: bool,
}

impl TxnLogReader {
    pub fn open(path: &Path) -> Result<TxnLogReader, StorageError> {
        let file = File::open(path).map_err(|e| StorageError::Io(path.to_path_buf(), e))?;
        let mut r = BufReader::with_capacity(1 << 16, file);
        let mut head = [0u8; 16];
        let n = read_full(&mut r, &mut head).map_err(|e| StorageError::Io(path.to_path_buf(), e))?;
        if n < 16 {
            return Ok(TxnLogReader { r, path: path.to_path_buf(), offset: 0, done: true, header_torn: true });
        }
        let magic = i32::from_be_bytes(head[..4].try_into().expect("4 bytes"));
        if magic != LOG_MAGIC {
            return Err(damaged(path, 0, format!("not a ZooKeeper transaction log (magic 0x{magic:08x})")));
        }
        let version = i32::from_be_bytes(head[4..8].try_into().expect("4 bytes"));
        if version != 2 {
            return Err(damaged(path, 4, format!("unsupported log version {version}")));
        }
        Ok(TxnLogReader { r, path: path.to_path_buf(), offset: 16, done: false, header_torn: false })
    }

    /// The next record and its offset in the file; `None` at the end of the log.
    pub fn next_record(&mut self) -> Result<Option<(u64, Vec<u8>)>, StorageError> {
        if self.done {
            return Ok(None);
        }
        let at = self.offset;
        let io_err = |e| StorageError::Io(self.path.clone(), e);
        let mut head = [0u8; 12];
        if read_full(&mut self.r, &mut head).map_err(io_err)? < 12 {
            self.done = true;
            return Ok(None);
        }
        let stored = i64::from_be_bytes(head[..8].try_into().expect("8 bytes"));
        let len = i32::from_be_bytes(head[8..].try_into().expect("4 bytes"));
        if len == 0 {
            // The zeros ZooKeeper preallocates past the last record.
            self.done = true;
            return Ok(None);
        }
        if !(0..=1 << 30).contains(&len) {
            return Err(damaged(&self.path, at, format!("record length {len}")));
        }
        let mut entry = vec![0; len as usize + 1];
        let n = read_full(&mut self.r, &mut entry).map_err(|e| StorageError::Io(self.path.clone(), e))?;
        if n < entry.len() || entry[len as usize] != b'B' {
            // "Last transaction was partial": ZooKeeper ends the log here.
            self.done = true;
            return Ok(None);
        }
        entry.truncate(len as usize);
        let sum = adler2::adler32_slice(&entry);
        if i64::from(sum) != stored {
            return Err(damaged(&self.path, at, format!("checksum mismatch: stored {stored:#x}, computed {sum:#x}")));
        }
        self.offset += 12 + len as u64 + 1;
        Ok(Some((at, entry)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(entry: &[u8]) -> Vec<u8> {
        let mut out = (adler2::adler32_slice(entry) as i64).to_be_bytes().to_vec();
        out.extend_from_slice(&(entry.len() as i32).to_be_bytes());
        out.extend_from_slice(entry);
        out.push(b'B');
        out
    }

    fn log_file(dir: &Path, records: &[u8]) -> PathBuf {
        let mut bytes = LOG_MAGIC.to_be_bytes().to_vec();
        bytes.extend_from_slice(&2i32.to_be_bytes());
        bytes.extend_from_slice(&0i64.to_be_bytes());
        bytes.extend_from_slice(records);
        let p = dir.join("log.1");
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn all(p: &Path) -> Result<Vec<Vec<u8>>, StorageError> {
        let mut r = TxnLogReader::open(p)?;
        let mut out = Vec::new();
        while let Some((_, e)) = r.next_record()? {
            out.push(e);
        }
        Ok(out)
    }

    #[test]
    fn a_log_ends_at_its_zero_tail_or_a_torn_record_and_refuses_a_bad_checksum() {
        let dir = std::env::temp_dir().join(format!("ferrozk-zklog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut recs = record(b"first");
        recs.extend(record(b"second"));
        let mut padded = recs.clone();
        padded.extend(vec![0; 100]);
        assert_eq!(all(&log_file(&dir, &padded)).unwrap(), vec![b"first".to_vec(), b"second".to_vec()]);
        // A last record cut short, its 'B' never written.
        let mut torn = recs.clone();
        torn.extend(&record(b"third")[..15]);
        torn.extend(vec![0; 10]);
        assert_eq!(all(&log_file(&dir, &torn)).unwrap().len(), 2);
        // A flipped byte inside the second record.
        let mut bad = recs.clone();
        let at = bad.len() - 3;
        bad[at] ^= 1;
        let err = all(&log_file(&dir, &bad)).unwrap_err().to_string();
        assert!(err.contains("log.1") && err.contains("offset 34") && err.contains("checksum"), "{err}");
        let wrong = dir.join("log.2");
        std::fs::write(&wrong, b"ZKSN-not-a-log-at-all").unwrap();
        assert!(TxnLogReader::open(&wrong).err().expect("refused").to_string().contains("not a ZooKeeper transaction log"));
        // Created but never given its header: no records, marked torn for the caller.
        let empty = dir.join("log.3");
        std::fs::write(&empty, &LOG_MAGIC.to_be_bytes()[..3]).unwrap();
        let mut r = TxnLogReader::open(&empty).unwrap();
        assert!(r.header_torn && r.next_record().unwrap().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn snappy_java_blocks_decompress_in_order() {
        let mut file = SNAPPY_JAVA_MAGIC.to_vec();
        file.extend_from_slice(&1i32.to_be_bytes());
        file.extend_from_slice(&1i32.to_be_bytes());
        for part in [&b"hello, "[..], &b"zookeeper"[..]] {
            let block = ::snap::raw::Encoder::new().compress_vec(part).unwrap();
            file.extend_from_slice(&(block.len() as i32).to_be_bytes());
            file.extend_from_slice(&block);
        }
        let mut s = SnappyJavaStream::new(&file[..], Path::new("snapshot.1.snappy")).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert_eq!(out, "hello, zookeeper");
        let mut cut = SnappyJavaStream::new(&file[..file.len() - 2], Path::new("snapshot.1.snappy")).unwrap();
        assert!(cut.read_to_string(&mut String::new()).unwrap_err().to_string().contains("ends in a block"));
    }
}
