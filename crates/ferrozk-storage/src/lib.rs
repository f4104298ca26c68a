//! ferrozk's on-disk transaction log, and the map of everything ferrozk keeps on disk.
//!
//! # The data directory
//!
//! Every file a server writes, under `dataDir` (and `dataLogDir` for the log, when set):
//!
//! | path | what | format |
//! |---|---|---|
//! | `myid` | this member's id (`server.N`), written by the operator as for ZooKeeper | decimal text |
//! | `wal/<20 digits>.wal` (in `dataLogDir` if set) | the log: consensus's entries, each a batch of writes | below |
//! | `snapshots/snapshot.<20 digits>` | the tree as of a log record, plus consensus's metadata | [`snap`] |
//! | `snapshots/*.tmp` | a snapshot being written (removed or renamed when it is done) | [`snap`] |
//! | `raft/vote` | the term and vote this member last granted (fsynced before it answers) | [`small`] |
//! | `raft/committed` | how far the log was known committed: a lower bound for the replay at start | [`small`] |
//! | `raft/purged` | the last log entry dropped by a purge (fsynced before segments go) | [`small`] |
//! | `raft/imported` | the log entry an import of ZooKeeper's data stands for | [`small`] |
//! | `raft/import-set-aside` | where an import the elected leader lacked was moved | [`small`] |
//! | `ferrozk-import-set-aside-<secs>/` | that import's `snapshots/`, `wal/` and `raft/` | as above |
//! | `version-2/` (in `dataLogDir` too) | Apache ZooKeeper's files, read at a first start, never written (but by `ferrozk export`) | [`zookeeper`] |
//!
//! The values in the `raft/` files and the payloads of log records are consensus's own types
//! encoded with bincode (ferrozk-server's `raft` module). Every file carries a checksum; damage
//! anywhere but a log's torn tail stops the server with the file's name (a damaged newest
//! snapshot falls back to the one before it).
//!
//! Log record `i + 1` holds consensus entry `i`; snapshots are named by the record they cover.
//! The `k`-th write of entry `i` gets zxid `(i + 1) << 16 | k`: unique and increasing, and with
//! 48 bits of entries it never rolls over (ZooKeeper's zxid is epoch << 32 | counter, and its
//! counter's rollover forces an election).
//!
//! # Log segments
//!
//! The log lives in one directory as segments named `<first index, 20 digits>.wal`. A segment
//! starts with a 16-byte header (`FZKWAL01`, then a u32 format version and a u32 of zero) and
//! holds records back to back:
//!
//! ```text
//! u32 length of payload | u32 crc32 of (index, term, payload) | u64 index | u64 term | payload
//! ```
//!
//! all big-endian. Indexes are consecutive across segments (record `i + 1` holds consensus
//! entry `i`; see above for the zxids of its writes).
//! `term` is the consensus term (0 for a standalone server); it is there so that replication
//! reuses this log instead of keeping a second one. A new segment starts once the current one
//! passes 64 MiB; the directory is fsynced after a segment is created or removed. A segment is
//! created at its full 64 MiB (zeros past the records), so that an fdatasync after an append
//! need not record a new file size (about a quarter off each fsync here), and zeros are written
//! a MiB ahead of the records, so that it need not allocate blocks either; a finished segment
//! is cut to its records before the next one starts.
//!
//! # Life cycle
//!
//! [`Wal::open`] reads every segment in order and returns the records; a record cut short or
//! failing its checksum at the very end of the last segment (a torn write: only zeros or
//! nothing follow it) is cut off, while damage anywhere else is an error naming the file and
//! offset, so a damaged log is never served. [`Wal::append`] writes records, [`Wal::sync`]
//! makes everything appended durable (one `fdatasync` for a whole batch: group commit).

mod error;
pub mod small;
pub mod snap;
pub mod zookeeper;

pub use error::StorageError;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"FZKWAL01";
const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: u64 = 16;
const RECORD_HEADER: usize = 24;
const SEGMENT_BYTES: u64 = 64 << 20;
/// No single record may claim more than this (a damaged length field must not allocate).
const MAX_RECORD: u32 = 256 << 20;

/// Takes a record read back (index, term, payload); an error stops the reading.
pub type EachRecord<'a> = dyn FnMut(u64, u64, &[u8]) -> Result<(), String> + 'a;

/// Like [`EachRecord`], for [`read_segment`]: returns whether to read on.
type EachRecordUntil<'a> = dyn FnMut(u64, u64, &[u8]) -> Result<bool, String> + 'a;

/// A log entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub index: u64,
    pub term: u64,
    pub payload: Vec<u8>,
}

pub struct Wal {
    dir: PathBuf,
    file: File,
    path: PathBuf,
    size: u64,
    /// The segment's blocks up to here hold records or written zeros; past it the file may be
    /// sparse. Zeros are written ahead of the records (`ZERO_AHEAD` at a time) so that an
    /// fdatasync after an append only writes data: appending into a hole makes each fsync
    /// also allocate blocks and write that metadata (a third wait and ~15% more CPU a sync).
    zeroed: u64,
    next_index: u64,
    buf: Vec<u8>,
}

const ZERO_AHEAD: u64 = 1 << 20;
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

fn segment_name(first: u64) -> String {
    format!("{first:020}.wal")
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn crc(index: u64, term: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&index.to_be_bytes());
    h.update(&term.to_be_bytes());
    h.update(payload);
    h.finalize()
}

impl Wal {
    /// Opens (or creates) the log in `dir`, returning it positioned for appends together with
    /// every record it holds.
    pub fn open(dir: &Path) -> Result<(Wal, Vec<Record>), StorageError> {
        let mut records = Vec::new();
        let wal = Self::open_after(dir, 0, &mut |index, term, payload| {
            records.push(Record { index, term, payload: payload.to_vec() });
            Ok(())
        })?;
        Ok((wal, records))
    }

    /// Opens the log for appends, handing every record after `after` (those a snapshot at
    /// `after` does not hold) to `each` in order as it is read and checked, so that a long log
    /// is never held in memory whole. Segments holding only records at or below `after` are
    /// not read. An error from `each` stops the reading and is returned as damage at that
    /// record.
    pub fn open_after(dir: &Path, after: u64, each: &mut EachRecord) -> Result<Wal, StorageError> {
        let io = |e| StorageError::Io(dir.to_path_buf(), e);
        fs::create_dir_all(dir).map_err(io)?;
        let segments = list_segments(dir).map_err(io)?;
        let mut expected = None;
        let mut end_of_last = HEADER_LEN;
        for (i, (first, path)) in segments.iter().enumerate() {
            let last_segment = i + 1 == segments.len();
            // A segment wholly covered by the snapshot is not needed: skip reading it (a restart
            // on a long log then costs only what the snapshot does not hold).
            if let Some(next) = segments.get(i + 1) {
                if next.0 <= after + 1 {
                    expected = Some(next.0);
                    continue;
                }
            }
            let mut wanted = |index, term, payload: &[u8]| {
                if index > after {
                    each(index, term, payload)?;
                }
                Ok(true)
            };
            let (valid_len, zeros_after) = read_segment(path, *first, last_segment, 0, &mut expected, &mut wanted)?;
            if last_segment {
                end_of_last = valid_len;
                let len = fs::metadata(path).map_err(|e| StorageError::Io(path.clone(), e))?.len();
                // Zeros after the records are the segment's preallocated room, not damage.
                if valid_len < len && !zeros_after {
                    tracing::warn!(file = %path.display(), offset = valid_len, "cutting a torn record off the log's tail");
                    let f = OpenOptions::new().write(true).open(path).map_err(|e| StorageError::Io(path.clone(), e))?;
                    f.set_len(valid_len).map_err(|e| StorageError::Io(path.clone(), e))?;
                    f.sync_all().map_err(|e| StorageError::Io(path.clone(), e))?;
                }
            }
        }
        let next_index = match (expected, segments.last()) {
            (Some(e), _) => e,
            (None, Some(s)) => s.0,
            (None, None) => after + 1,
        };
        let (path, file, size) = match segments.last() {
            Some((_, p)) => {
                let mut f = OpenOptions::new().write(true).open(p).map_err(|e| StorageError::Io(p.clone(), e))?;
                let size = f.seek(SeekFrom::Start(end_of_last.max(HEADER_LEN))).map_err(|e| StorageError::Io(p.clone(), e))?;
                (p.clone(), f, size)
            }
            None => {
                let (p, f) = create_segment(dir, next_index).map_err(io)?;
                (p, f, HEADER_LEN)
            }
        };
        Ok(Wal { dir: dir.to_path_buf(), file, path, size, zeroed: size, next_index, buf: Vec::new() })
    }

    /// The index the next appended record gets.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    /// Appends one record (buffered until [`Wal::flush`] or [`Wal::sync`]); returns its index.
    pub fn append(&mut self, term: u64, payload: &[u8]) -> io::Result<u64> {
        let index = self.next_index;
        if self.size + self.buf.len() as u64 >= SEGMENT_BYTES {
            self.roll()?;
        }
        self.buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        self.buf.extend_from_slice(&crc(index, term, payload).to_be_bytes());
        self.buf.extend_from_slice(&index.to_be_bytes());
        self.buf.extend_from_slice(&term.to_be_bytes());
        self.buf.extend_from_slice(payload);
        self.next_index += 1;
        Ok(index)
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.file.write_all(&self.buf)?;
            self.size += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }

    /// Writes what was appended and waits until it is on stable storage.
    pub fn sync(&mut self) -> io::Result<()> {
        self.flush()?;
        self.zero_ahead()?;
        self.file.sync_data()
    }

    /// Keeps written zeros at least half of `ZERO_AHEAD` past the records (only before a sync:
    /// a segment being cut or rolled needs none).
    fn zero_ahead(&mut self) -> io::Result<()> {
        if self.size + ZERO_AHEAD / 2 > self.zeroed && self.zeroed < SEGMENT_BYTES {
            let mut at = self.zeroed.max(self.size);
            let end = (self.size + ZERO_AHEAD).min(SEGMENT_BYTES);
            while at < end {
                let n = (end - at).min(ZEROS.len() as u64) as usize;
                self.file.write_all_at(&ZEROS[..n], at)?;
                at += n as u64;
            }
            self.zeroed = end;
        }
        Ok(())
    }

    /// Continues in `file` (at `path`), whose records end at `size`.
    fn switch_to(&mut self, path: PathBuf, file: File, size: u64) {
        self.path = path;
        self.file = file;
        self.size = size;
        self.zeroed = size;
    }

    fn roll(&mut self) -> io::Result<()> {
        self.flush()?;
        // Only the last segment may have room after its records.
        self.file.set_len(self.size)?;
        self.file.sync_all()?;
        let (path, file) = create_segment(&self.dir, self.next_index)?;
        self.switch_to(path, file, HEADER_LEN);
        Ok(())
    }

    /// Removes every record at `index` and after it (entries a new leader overwrote): later
    /// segments are deleted, the one holding `index` is cut just before it.
    pub fn truncate_from(&mut self, index: u64) -> Result<(), StorageError> {
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |e| StorageError::Io(p, e)
        };
        self.flush().map_err(io(&self.path))?;
        if index >= self.next_index {
            return Ok(());
        }
        let segments = list_segments(&self.dir).map_err(io(&self.dir))?;
        for (first, path) in segments.iter().rev().filter(|(f, _)| *f >= index) {
            tracing::warn!(file = %path.display(), first, "removing log entries a new leader replaced");
            fs::remove_file(path).map_err(io(path))?;
        }
        match segments.iter().rev().find(|(f, _)| *f < index) {
            Some((first, path)) => {
                let offset = record_offset(path, *first, index)?;
                let mut f = OpenOptions::new().write(true).open(path).map_err(io(path))?;
                f.set_len(offset).map_err(io(path))?;
                f.sync_all().map_err(io(path))?;
                f.seek(SeekFrom::Start(offset)).map_err(io(path))?;
                self.switch_to(path.clone(), f, offset);
            }
            None => {
                let (p, f) = create_segment(&self.dir, index).map_err(io(&self.dir))?;
                self.switch_to(p, f, HEADER_LEN);
            }
        }
        fsync_dir(&self.dir).map_err(io(&self.dir))?;
        self.next_index = index;
        Ok(())
    }

    /// Drops every segment and starts over with record `next` (what came before is in a
    /// snapshot installed from the leader).
    pub fn restart_at(&mut self, next: u64) -> Result<(), StorageError> {
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |e| StorageError::Io(p, e)
        };
        self.buf.clear();
        for (_, path) in list_segments(&self.dir).map_err(io(&self.dir))? {
            fs::remove_file(&path).map_err(io(&path))?;
        }
        let (p, f) = create_segment(&self.dir, next).map_err(io(&self.dir))?;
        self.switch_to(p, f, HEADER_LEN);
        self.next_index = next;
        Ok(())
    }

    /// The segment being written.
    pub fn current_segment(&self) -> &Path {
        &self.path
    }
}

fn create_segment(dir: &Path, first: u64) -> io::Result<(PathBuf, File)> {
    let path = dir.join(segment_name(first));
    let tmp = dir.join(format!("{}.tmp", segment_name(first)));
    {
        let mut f = File::create(&tmp)?;
        let mut header = Vec::with_capacity(HEADER_LEN as usize);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        header.extend_from_slice(&0u32.to_be_bytes());
        f.write_all(&header)?;
        f.set_len(SEGMENT_BYTES)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, &path)?;
    fsync_dir(dir)?;
    let mut f = OpenOptions::new().write(true).open(&path)?;
    f.seek(SeekFrom::Start(HEADER_LEN))?;
    Ok((path, f))
}

fn list_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut v: Vec<(u64, PathBuf)> = fs::read_dir(dir)?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            Some((name.strip_suffix(".wal")?.parse::<u64>().ok()?, e.path()))
        })
        .collect();
    v.sort();
    Ok(v)
}

/// Where record `index` starts in the segment whose first record is `first`.
fn record_offset(path: &Path, first: u64, index: u64) -> Result<u64, StorageError> {
    let mut data = Vec::new();
    File::open(path).and_then(|mut f| f.read_to_end(&mut data)).map_err(|e| StorageError::Io(path.to_path_buf(), e))?;
    let mut pos = HEADER_LEN as usize;
    let mut at = first;
    while at < index {
        let Some(len) = data.get(pos..pos + 4) else { break };
        pos += RECORD_HEADER + u32::from_be_bytes(len.try_into().unwrap()) as usize;
        at += 1;
    }
    if at != index || pos > data.len() {
        return Err(StorageError::Damaged {
            file: path.to_path_buf(),
            offset: pos as u64,
            reason: format!("record {index} not found"),
        });
    }
    Ok(pos as u64)
}

/// Every record of one segment file (a torn tail is left out, as recovery would cut it).
pub fn read_file(path: &Path) -> Result<Vec<Record>, StorageError> {
    let first = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".wal"))
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or_else(|| StorageError::Damaged { file: path.to_path_buf(), offset: 0, reason: "not a log segment name".into() })?;
    let mut out = Vec::new();
    read_segment(path, first, true, 0, &mut None, &mut |index, term, payload| {
        out.push(Record { index, term, payload: payload.to_vec() });
        Ok(true)
    })?;
    Ok(out)
}

/// Deletes the log segments that hold only records at or below `upto` (all covered by a
/// snapshot that is kept). The newest segment always stays.
pub fn purge_log(dir: &Path, upto: u64) -> io::Result<usize> {
    let firsts = list_segments(dir)?;
    let mut removed = 0;
    for w in firsts.windows(2) {
        // A segment ends just before the next one starts.
        if w[1].0 <= upto + 1 {
            fs::remove_file(&w[0].1)?;
            removed += 1;
        }
    }
    if removed > 0 {
        fsync_dir(dir)?;
    }
    Ok(removed)
}

/// Reads the records with indexes in `(after, upto]` from a log that may be being appended to
/// (by the log thread): for building snapshots away from the request path, and for members
/// behind. Stops early, after at least one record, once the payloads reach `max_bytes`.
pub fn read_range(dir: &Path, after: u64, upto: u64, max_bytes: usize) -> Result<Vec<Record>, StorageError> {
    let segments = list_segments(dir).map_err(|e| StorageError::Io(dir.to_path_buf(), e))?;
    let mut out: Vec<Record> = Vec::new();
    let mut bytes = 0;
    for (i, (first, path)) in segments.iter().enumerate() {
        if segments.get(i + 1).is_some_and(|next| next.0 <= after + 1) || *first > upto {
            continue;
        }
        if bytes >= max_bytes {
            break;
        }
        // The newest segment may end in a record still being written: treat it as the tail.
        read_segment(path, *first, true, after + 1, &mut None, &mut |index, term, payload| {
            if index > after && index <= upto {
                bytes += payload.len();
                out.push(Record { index, term, payload: payload.to_vec() });
            }
            Ok(index < upto && bytes < max_bytes)
        })?;
    }
    let contiguous = out.first().map_or(true, |r| r.index == after + 1) && out.windows(2).all(|w| w[1].index == w[0].index + 1);
    let complete = out.len() as u64 == upto - after || (bytes >= max_bytes && !out.is_empty());
    if !contiguous || !complete {
        return Err(StorageError::Damaged {
            file: dir.to_path_buf(),
            offset: 0,
            reason: format!("log does not hold every entry from {} to {upto}", after + 1),
        });
    }
    Ok(out)
}

/// A window onto a segment file: records are checked as it moves along, so reading a 64 MiB
/// preallocated segment holds about one window in memory, not the whole file.
struct Window {
    file: File,
    buf: Vec<u8>,
    /// The file offset of `buf[0]`.
    start: usize,
    eof: bool,
}

const WINDOW: usize = 1 << 20;

impl Window {
    /// Makes the file's bytes `[pos, pos + n)` available; false if the file ends before.
    /// `pos` never goes back; it may jump ahead past what was read (records stepped over).
    fn fill(&mut self, pos: usize, n: usize) -> io::Result<bool> {
        debug_assert!(pos >= self.start);
        if pos + n <= self.start + self.buf.len() {
            return Ok(true);
        }
        self.buf.drain(..(pos - self.start).min(self.buf.len()));
        self.start = pos;
        while self.buf.len() < n && !self.eof {
            let have = self.buf.len();
            self.buf.resize(have + (n - have).max(WINDOW), 0);
            let got = self.file.read_at(&mut self.buf[have..], (self.start + have) as u64)?;
            self.buf.truncate(have + got);
            self.eof = got == 0;
        }
        Ok(self.buf.len() >= n)
    }

    fn bytes(&self, pos: usize, n: usize) -> &[u8] {
        &self.buf[pos - self.start..pos - self.start + n]
    }

    /// Whether only zeros (or nothing) follow `pos`; the window itself is left where it is.
    fn zeros_from(&self, pos: usize) -> io::Result<bool> {
        let buffered_end = self.start + self.buf.len();
        if pos < buffered_end && self.buf[pos - self.start..].iter().any(|b| *b != 0) {
            return Ok(false);
        }
        let mut at = pos.max(buffered_end) as u64;
        let mut chunk = vec![0u8; WINDOW];
        loop {
            let got = self.file.read_at(&mut chunk, at)?;
            if got == 0 {
                return Ok(true);
            }
            if chunk[..got].iter().any(|b| *b != 0) {
                return Ok(false);
            }
            at += got as u64;
        }
    }
}

/// Reads and checks one segment's records in order, handing each to `each` (index, term,
/// payload) for as long as it returns true. Records before index `from` are stepped over
/// (their headers followed, their payloads neither read nor checksummed: whoever reads them
/// checks them): a reader after one entry near a segment's end does not check the whole
/// segment. Returns where the records end and whether only zeros follow.
fn read_segment(
    path: &Path,
    first: u64,
    last_segment: bool,
    from: u64,
    expected: &mut Option<u64>,
    each: &mut EachRecordUntil,
) -> Result<(u64, bool), StorageError> {
    let io = |e| StorageError::Io(path.to_path_buf(), e);
    let damaged = |offset: u64, reason: String| StorageError::Damaged { file: path.to_path_buf(), offset, reason };
    let file = File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let mut w = Window { file, buf: Vec::new(), start: 0, eof: false };
    // Where the records end, and whether only zeros follow.
    let ended =
        |w: &Window, pos: usize| -> Result<(u64, bool), StorageError> { Ok((pos as u64, w.zeros_from(pos).map_err(io)?)) };
    let has_header = w.fill(0, HEADER_LEN as usize).map_err(io)?;
    if !has_header || w.bytes(0, 8) != MAGIC {
        if last_segment && w.zeros_from(0).map_err(io)? {
            return Ok((0, true));
        }
        return Err(damaged(0, "not a ferrozk log segment (bad header)".into()));
    }
    let version = u32::from_be_bytes(w.bytes(8, 4).try_into().unwrap());
    if version != FORMAT_VERSION {
        return Err(damaged(8, format!("unsupported format version {version}")));
    }
    if expected.is_none() {
        *expected = Some(first);
    }
    let mut pos = HEADER_LEN as usize;
    loop {
        if !w.fill(pos, 1).map_err(io)? {
            return Ok((pos as u64, true));
        }
        // Whether what follows `upto` could be a write that never completed: only zeros, or a
        // record running past the end of the last segment.
        let torn_tail =
            |w: &Window, upto: usize| -> Result<bool, StorageError> { Ok(last_segment && w.zeros_from(upto).map_err(io)?) };
        if !w.fill(pos, RECORD_HEADER).map_err(io)? {
            if last_segment {
                let (end, zeros) = ended(&w, pos)?;
                return Ok((end, zeros));
            }
            return Err(damaged(pos as u64, "record header cut short".into()));
        }
        let head = w.bytes(pos, RECORD_HEADER);
        let len = u32::from_be_bytes(head[0..4].try_into().unwrap());
        let sum = u32::from_be_bytes(head[4..8].try_into().unwrap());
        let index = u64::from_be_bytes(head[8..16].try_into().unwrap());
        let term = u64::from_be_bytes(head[16..24].try_into().unwrap());
        if len == 0 && sum == 0 && index == 0 && torn_tail(&w, pos)? {
            return Ok((pos as u64, true));
        }
        let end = RECORD_HEADER + len as usize;
        let too_short = (pos + end) as u64 > file_len;
        let step_over = index < from && index == expected.unwrap_or(index);
        if len > MAX_RECORD || too_short || (!step_over && !w.fill(pos, end).map_err(io)?) {
            if last_segment && (too_short || torn_tail(&w, pos + RECORD_HEADER)?) {
                let (end, zeros) = ended(&w, pos)?;
                return Ok((end, zeros));
            }
            return Err(damaged(pos as u64, format!("record length {len} runs past the end of the file")));
        }
        if step_over {
            *expected = Some(index + 1);
            pos += end;
            continue;
        }
        let payload = w.bytes(pos + RECORD_HEADER, len as usize);
        if crc(index, term, payload) != sum {
            if last_segment && torn_tail(&w, pos + end)? {
                let (end, zeros) = ended(&w, pos)?;
                return Ok((end, zeros));
            }
            return Err(damaged(pos as u64, format!("checksum mismatch in record {index}")));
        }
        let want = expected.unwrap_or(index);
        if index != want {
            return Err(damaged(pos as u64, format!("record {index} where {want} was expected")));
        }
        *expected = Some(index + 1);
        let go_on = each(index, term, payload).map_err(|reason| damaged(pos as u64, reason))?;
        pos += end;
        if !go_on {
            return Ok((pos as u64, false));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ferrozk-wal-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn write_n(dir: &Path, n: usize) {
        let (mut wal, recs) = Wal::open(dir).unwrap();
        let start = recs.len();
        for i in 0..n {
            wal.append(0, format!("entry {}", start + i).as_bytes()).unwrap();
        }
        wal.sync().unwrap();
    }

    #[test]
    fn zeros_are_written_ahead_of_the_records() {
        use std::os::unix::fs::MetadataExt;
        let d = tmpdir("zero-ahead");
        write_n(&d, 1);
        let (_, path) = list_segments(&d).unwrap().pop().unwrap();
        // Blocks written, not a hole: appends then overwrite them and a sync writes only data.
        assert!(fs::metadata(&path).unwrap().blocks() * 512 >= ZERO_AHEAD);
        let (_, recs) = Wal::open(&d).unwrap();
        assert_eq!(recs.len(), 1);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn records_survive_reopen_and_indexes_continue() {
        let d = tmpdir("reopen");
        write_n(&d, 3);
        write_n(&d, 2);
        let (wal, recs) = Wal::open(&d).unwrap();
        assert_eq!(recs.len(), 5);
        assert_eq!(recs.iter().map(|r| r.index).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
        assert_eq!(recs[4].payload, b"entry 4");
        assert_eq!(wal.next_index(), 6);
    }

    #[test]
    fn truncation_removes_replaced_entries_across_segments() {
        let d = tmpdir("truncate");
        let (mut wal, _) = Wal::open(&d).unwrap();
        for i in 1..=3 {
            wal.append(1, format!("a{i}").as_bytes()).unwrap();
        }
        wal.roll().unwrap();
        for i in 4..=6 {
            wal.append(1, format!("a{i}").as_bytes()).unwrap();
        }
        wal.sync().unwrap();
        wal.truncate_from(5).unwrap();
        wal.append(2, b"b5").unwrap();
        wal.sync().unwrap();
        let (_, recs) = Wal::open(&d).unwrap();
        let got: Vec<_> = recs.iter().map(|r| (r.index, r.term, String::from_utf8_lossy(&r.payload).into_owned())).collect();
        assert_eq!(got.len(), 5);
        assert_eq!(got[3], (4, 1, "a4".into()));
        assert_eq!(got[4], (5, 2, "b5".into()));
        // Cutting into the first segment removes the second one whole.
        let (mut wal, _) = Wal::open(&d).unwrap();
        wal.truncate_from(2).unwrap();
        wal.append(3, b"c2").unwrap();
        wal.sync().unwrap();
        let (wal, recs) = Wal::open(&d).unwrap();
        assert_eq!(recs.iter().map(|r| r.term).collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(wal.next_index(), 3);
    }

    #[test]
    fn segments_covered_by_a_snapshot_are_not_read() {
        let d = tmpdir("covered");
        {
            let (mut wal, _) = Wal::open(&d).unwrap();
            for i in 0..3 {
                wal.append(0, format!("a{i}").as_bytes()).unwrap();
            }
            wal.sync().unwrap();
            wal.roll().unwrap();
            for i in 0..3 {
                wal.append(0, format!("b{i}").as_bytes()).unwrap();
            }
            wal.sync().unwrap();
        }
        // Damage the first segment: it is not needed after a snapshot at index 3.
        let first = d.join(segment_name(1));
        let mut bytes = fs::read(&first).unwrap();
        let at = bytes.len() - 2;
        bytes[at] ^= 1;
        fs::write(&first, &bytes).unwrap();
        let mut indexes = Vec::new();
        let wal = Wal::open_after(&d, 3, &mut |index, _, _| {
            indexes.push(index);
            Ok(())
        })
        .unwrap();
        assert_eq!(indexes, vec![4, 5, 6]);
        assert_eq!(wal.next_index(), 7);
        // Without the snapshot the damage is found.
        assert!(Wal::open(&d).is_err());
    }

    #[test]
    fn records_after_a_point_are_handed_over_in_order_and_a_refusal_stops_the_reading() {
        let d = tmpdir("handed");
        write_n(&d, 5);
        let mut got = Vec::new();
        Wal::open_after(&d, 2, &mut |index, _, payload| {
            got.push((index, String::from_utf8_lossy(payload).into_owned()));
            Ok(())
        })
        .unwrap();
        assert_eq!(got, vec![(3, "entry 2".to_string()), (4, "entry 3".into()), (5, "entry 4".into())]);
        let mut seen = 0;
        let refused = Wal::open_after(&d, 0, &mut |index, _, _| {
            seen += 1;
            if index == 2 {
                Err("cannot use it".into())
            } else {
                Ok(())
            }
        });
        match refused {
            Err(StorageError::Damaged { reason, .. }) => assert_eq!(reason, "cannot use it"),
            other => panic!("expected the refusal, got {:?}", other.map(|w| w.next_index())),
        }
        assert_eq!(seen, 2);
    }

    #[test]
    fn segments_larger_than_the_read_window_read_back_whole() {
        let d = tmpdir("window");
        {
            let (mut wal, _) = Wal::open(&d).unwrap();
            for i in 0..40u32 {
                let payload = vec![(i % 251) as u8 + 1; 100_000 + i as usize];
                wal.append(0, &payload).unwrap();
            }
            wal.sync().unwrap();
        }
        let (_, recs) = Wal::open(&d).unwrap();
        assert_eq!(recs.len(), 40);
        for (i, r) in recs.iter().enumerate() {
            assert_eq!(r.payload, vec![(i % 251) as u8 + 1; 100_000 + i]);
        }
    }

    #[test]
    fn a_torn_tail_is_cut_and_earlier_records_kept() {
        let d = tmpdir("torn");
        write_n(&d, 3);
        let seg = d.join(segment_name(1));
        // The segment is preallocated: a write cut short leaves zeros at the end of the record.
        let mut data = fs::read(&seg).unwrap();
        let end = data.iter().rposition(|b| *b != 0).unwrap() + 1;
        data[end - 3..end].fill(0);
        fs::write(&seg, &data).unwrap();
        let (mut wal, recs) = Wal::open(&d).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(wal.append(0, b"again").unwrap(), 3);
        wal.sync().unwrap();
        let (_, recs) = Wal::open(&d).unwrap();
        assert_eq!(recs.last().unwrap().payload, b"again");
    }

    #[test]
    fn a_flipped_byte_inside_the_log_is_an_error_naming_file_and_offset() {
        let d = tmpdir("flip");
        write_n(&d, 3);
        let seg = d.join(segment_name(1));
        let mut data = fs::read(&seg).unwrap();
        let at = HEADER_LEN as usize + RECORD_HEADER + 2; // inside record 1's payload
        data[at] ^= 0x40;
        fs::write(&seg, &data).unwrap();
        match Wal::open(&d) {
            Err(StorageError::Damaged { file, offset, .. }) => {
                assert_eq!(file, seg);
                assert_eq!(offset, HEADER_LEN);
            }
            other => panic!("expected damage, got {:?}", other.map(|(_, r)| r)),
        }
    }

    #[test]
    fn a_range_read_checks_the_records_it_returns_and_steps_over_earlier_ones() {
        let d = tmpdir("range");
        {
            let (mut wal, _) = Wal::open(&d).unwrap();
            for i in 1..=30u32 {
                wal.append(1, &vec![i as u8; 300_000]).unwrap();
            }
            wal.sync().unwrap();
        }
        let recs = read_range(&d, 26, 30, usize::MAX).unwrap();
        assert_eq!(recs.iter().map(|r| r.index).collect::<Vec<_>>(), vec![27, 28, 29, 30]);
        assert_eq!(recs[0].payload, vec![27; 300_000]);
        // 1 MB at most, however many are asked for.
        assert_eq!(read_range(&d, 0, 30, 1 << 20).unwrap().len(), 4);
        // Damage in record 10's payload: reads after it do not look at it, reads through it fail.
        let seg = d.join(segment_name(1));
        let mut data = fs::read(&seg).unwrap();
        let record_10 = HEADER_LEN as usize + 9 * (RECORD_HEADER + 300_000);
        assert_eq!(u64::from_be_bytes(data[record_10 + 8..record_10 + 16].try_into().unwrap()), 10);
        data[record_10 + RECORD_HEADER + 5] ^= 1;
        fs::write(&seg, &data).unwrap();
        assert_eq!(read_range(&d, 10, 12, usize::MAX).unwrap().len(), 2);
        match read_range(&d, 8, 12, usize::MAX) {
            Err(StorageError::Damaged { offset, .. }) => assert_eq!(offset, record_10 as u64),
            other => panic!("expected damage, got {other:?}"),
        }
        fs::remove_dir_all(&d).unwrap();
    }
}
