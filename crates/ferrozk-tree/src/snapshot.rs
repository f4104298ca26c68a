//! Snapshot (de)serialisation of a whole tree: sessions, then every node in pre-order with its
//! data, ACL and persisted Stat. Containers, TTL nodes, ephemeral owners, sequence counters
//! (the stored cversion) and quota usage are all in there, so a loaded tree is the tree.
//! Framing, checksums and files are `ferrozk-storage`'s business.

use std::io::{self, Read, Write};

use ferrozk_proto::jute::{Decode, Encode, Reader};
use ferrozk_proto::Acl;

use crate::path;
use crate::tree::{DataTree, Session, StatPersisted, TreeConfig};

const FORMAT: u32 = 1;

fn put<T: Encode + ?Sized>(buf: &mut Vec<u8>, v: &T) {
    v.encode(buf);
}

impl DataTree {
    /// Writes the tree; `last_zxid` is part of it.
    pub fn write_snapshot(&self, w: &mut dyn Write) -> io::Result<()> {
        let mut buf = Vec::with_capacity(1 << 16);
        put(&mut buf, &(FORMAT as i32));
        put(&mut buf, &self.last_zxid());
        put(&mut buf, &(self.sessions().len() as i32));
        for (id, s) in self.sessions() {
            put(&mut buf, id);
            put(&mut buf, &s.timeout);
            put(&mut buf, &Some(s.passwd.clone()));
        }
        put(&mut buf, &(self.node_count() as i64));
        w.write_all(&buf)?;
        buf.clear();
        let mut result = Ok(());
        // A node's ACL is nearly always its predecessor's: its encoding is reused by ACL id.
        let mut last_acl: Option<(u32, Vec<u8>)> = None;
        self.walk(|p, node| {
            if result.is_err() {
                return;
            }
            put_str(&mut buf, p);
            match node.data() {
                None => put(&mut buf, &-1i32),
                Some(d) => {
                    put(&mut buf, &(d.len() as i32));
                    buf.extend_from_slice(d);
                }
            }
            match &last_acl {
                Some((id, bytes)) if *id == node.acl_id() => buf.extend_from_slice(bytes),
                _ => {
                    let at = buf.len();
                    put(&mut buf, node.acl().as_ref());
                    last_acl = Some((node.acl_id(), buf[at..].to_vec()));
                }
            }
            let s = node.persisted();
            for v in [s.czxid, s.mzxid, s.ctime, s.mtime] {
                put(&mut buf, &v);
            }
            for v in [s.version, s.cversion, s.aversion] {
                put(&mut buf, &v);
            }
            put(&mut buf, &s.ephemeral_owner);
            put(&mut buf, &s.pzxid);
            if buf.len() >= 1 << 16 {
                result = w.write_all(&buf);
                buf.clear();
            }
        });
        result?;
        w.write_all(&buf)
    }

    /// Reads a tree written by [`DataTree::write_snapshot`]; `progress` is called now and then
    /// with the number of nodes read so far.
    pub fn read_snapshot(r: &mut dyn Read, config: TreeConfig, progress: &mut dyn FnMut(u64, u64)) -> Result<DataTree, String> {
        let mut src = Source::new(r);
        let format = src.i32()?;
        if format != FORMAT as i32 {
            return Err(format!("unsupported snapshot format {format}"));
        }
        let last_zxid = src.i64()?;
        let mut tree = DataTree::empty(config);
        let sessions = src.i32()?;
        for _ in 0..sessions.max(0) {
            let id = src.i64()?;
            let timeout = src.i32()?;
            let passwd = src.record::<Option<Vec<u8>>>()?.unwrap_or_default();
            tree.insert_session(id, Session { timeout, passwd });
        }
        let count = src.i64()?;
        // Room for every node at once: growing the arena and index 20 times over moves every
        // entry again.
        tree.reserve_nodes(count.clamp(0, 1 << 26) as usize);
        // Reused across nodes: path and data are copied once, into the node; a node's ACL is
        // nearly always its predecessor's, recognised by its bytes without decoding it.
        let mut p = String::new();
        let mut data = Vec::new();
        let mut last_acl: Option<(Vec<u8>, u32)> = None;
        // Nodes come in pre-order: a node's parent is on the stack of the previous node's
        // ancestors (their path lengths in `above`'s path), found without a lookup.
        let mut above = String::new();
        let mut ancestors: Vec<(usize, u32)> = Vec::new();
        for i in 0..count.max(0) as u64 {
            src.string_into(&mut p)?;
            let has_data = src.buffer_into(&mut data)?;
            let acl = match &last_acl {
                Some((bytes, acl)) if src.skip_if_next(bytes)? => *acl,
                _ => {
                    let (acl, bytes) = src.record_and_bytes::<Vec<Acl>>()?;
                    let acl = tree.intern(acl);
                    last_acl = Some((bytes, acl));
                    acl
                }
            };
            let stat = src.stat_persisted()?;
            let parent = if p == "/" {
                crate::store::ROOT
            } else {
                let (parent, name) = path::split(&p).ok_or_else(|| format!("bad path {p:?} in snapshot"))?;
                let parent = path::parent_key(parent);
                while ancestors.last().is_some_and(|&(len, _)| &above[..len] != parent) {
                    ancestors.pop();
                }
                let id = match ancestors.last() {
                    Some(&(_, id)) => id,
                    None => {
                        let id = tree.find_id(parent).ok_or_else(|| format!("{p} comes before its parent in the snapshot"))?;
                        ancestors.push((parent.len(), id));
                        id
                    }
                };
                if name.is_empty() || tree.child_id(id, name).is_some() {
                    return Err(format!("bad or repeated path {p:?} in snapshot"));
                }
                id
            };
            let data = has_data.then_some(&data[..]);
            let id = tree.load_node(parent, &p, &stat, data, acl);
            above.clear();
            above.push_str(&p);
            ancestors.push((p.len(), id));
            if i % 250_000 == 0 && i > 0 {
                progress(i, count as u64);
            }
        }
        tree.finish_load(last_zxid);
        Ok(tree)
    }
}

/// A buffered jute reader over a stream.
pub(crate) struct Source<'a> {
    r: &'a mut dyn Read,
    buf: Vec<u8>,
    pos: usize,
    /// Bytes already dropped from the front of `buf`: stream offset = dropped + pos.
    dropped: usize,
    /// The running Adler32 of what was consumed (ZooKeeper's seals), once started, and the
    /// stream offset it covers up to.
    sum: Option<adler2::Adler32>,
    summed: usize,
}

impl<'a> Source<'a> {
    pub(crate) fn new(r: &'a mut dyn Read) -> Source<'a> {
        Source { r, buf: Vec::new(), pos: 0, dropped: 0, sum: None, summed: 0 }
    }

    /// Keeps an Adler32 of every byte consumed from here on.
    pub(crate) fn start_checksum(&mut self) {
        self.sum = Some(adler2::Adler32::new());
        self.summed = self.offset();
    }

    /// The stream offset of the next byte.
    pub(crate) fn offset(&self) -> usize {
        self.dropped + self.pos
    }

    /// Adds the bytes consumed since the last call to the checksum.
    fn sum_consumed(&mut self) {
        if let Some(sum) = &mut self.sum {
            let from = self.summed - self.dropped;
            sum.write_slice(&self.buf[from..self.pos]);
            self.summed = self.offset();
        }
    }

    /// ZooKeeper's seal: the Adler32 of everything before it (as a long), then the string "/".
    pub(crate) fn seal(&mut self) -> Result<(), String> {
        self.sum_consumed();
        let expected = self.sum.as_ref().map_or(0, |s| s.checksum());
        let at = self.offset();
        let stored = self.i64()?;
        let mut slash = String::new();
        self.string_into(&mut slash)?;
        if stored != i64::from(expected) || slash != "/" {
            return Err(format!("checksum mismatch at offset {at}: stored {stored:#x}, computed {expected:#x}"));
        }
        Ok(())
    }

    /// How many bytes are left before the end of the stream, at most `max` (else an error).
    pub(crate) fn remaining_to_end(&mut self, max: usize) -> Result<usize, String> {
        while self.fill(self.buf.len() - self.pos + 1)? {
            if self.buf.len() - self.pos > max {
                return Err(format!("more than {max} unexpected bytes at offset {}", self.offset()));
            }
        }
        Ok(self.buf.len() - self.pos)
    }

    /// Decodes one value, pulling more bytes in until it fits.
    pub(crate) fn record<T: Decode>(&mut self) -> Result<T, String> {
        loop {
            let mut rd = Reader::new(&self.buf[self.pos..]);
            match T::decode(&mut rd) {
                Ok(v) => {
                    self.pos += rd.position();
                    return Ok(v);
                }
                Err(_) => {
                    let before = self.buf.len() - self.pos;
                    self.refill()?;
                    if self.buf.len() - self.pos == before {
                        return Err("snapshot ends in the middle of a record".into());
                    }
                }
            }
        }
    }

    /// Keeps the undecoded rest and reads more behind it, in the same buffer (a fresh chunk
    /// per read made malloc consolidate its free lists over and over on big snapshots).
    fn refill(&mut self) -> Result<(), String> {
        self.sum_consumed();
        let rest = self.buf.len() - self.pos;
        self.buf.copy_within(self.pos.., 0);
        self.dropped += self.pos;
        self.pos = 0;
        self.buf.resize(rest + (1 << 16), 0);
        let n = self.r.read(&mut self.buf[rest..]).map_err(|e| e.to_string())?;
        self.buf.truncate(rest + n);
        Ok(())
    }

    /// Makes at least `n` undecoded bytes available; false at the end of the stream.
    fn fill(&mut self, n: usize) -> Result<bool, String> {
        while self.buf.len() - self.pos < n {
            let before = self.buf.len() - self.pos;
            self.refill()?;
            if self.buf.len() - self.pos == before {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Decodes a jute string into `out`, reusing its allocation.
    pub(crate) fn string_into(&mut self, out: &mut String) -> Result<(), String> {
        let len: i32 = self.record()?;
        let len = usize::try_from(len).map_err(|_| format!("string of length {len} in a snapshot"))?;
        if !self.fill(len)? {
            return Err("snapshot ends in the middle of a record".into());
        }
        let s = std::str::from_utf8(&self.buf[self.pos..self.pos + len]).map_err(|e| e.to_string())?;
        out.clear();
        out.push_str(s);
        self.pos += len;
        Ok(())
    }

    /// Consumes the next bytes if they equal `bytes`.
    fn skip_if_next(&mut self, bytes: &[u8]) -> Result<bool, String> {
        if self.fill(bytes.len())? && self.buf[self.pos..].starts_with(bytes) {
            self.pos += bytes.len();
            return Ok(true);
        }
        Ok(false)
    }

    /// Decodes one value and returns the bytes it was read from as well.
    fn record_and_bytes<T: Decode>(&mut self) -> Result<(T, Vec<u8>), String> {
        let start = self.dropped + self.pos;
        let v = self.record()?;
        Ok((v, self.buf[start - self.dropped..self.pos].to_vec()))
    }

    /// Decodes a jute buffer into `out`, reusing its allocation; false for a null buffer.
    pub(crate) fn buffer_into(&mut self, out: &mut Vec<u8>) -> Result<bool, String> {
        let len: i32 = self.record()?;
        out.clear();
        if len < 0 {
            return Ok(false);
        }
        let len = len as usize;
        if !self.fill(len)? {
            return Err("snapshot ends in the middle of a record".into());
        }
        out.extend_from_slice(&self.buf[self.pos..self.pos + len]);
        self.pos += len;
        Ok(true)
    }

    /// jute's `StatPersisted`: what a snapshot keeps of a node's Stat.
    pub(crate) fn stat_persisted(&mut self) -> Result<StatPersisted, String> {
        Ok(StatPersisted {
            czxid: self.i64()?,
            mzxid: self.i64()?,
            ctime: self.i64()?,
            mtime: self.i64()?,
            version: self.i32()?,
            cversion: self.i32()?,
            aversion: self.i32()?,
            ephemeral_owner: self.i64()?,
            pzxid: self.i64()?,
        })
    }

    pub(crate) fn i32(&mut self) -> Result<i32, String> {
        self.record()
    }

    pub(crate) fn i64(&mut self) -> Result<i64, String> {
        self.record()
    }
}

impl DataTree {
    pub(crate) fn empty(config: TreeConfig) -> DataTree {
        let mut t = DataTree::new(config);
        t.clear();
        t
    }
}

/// A jute string from a &str, as `String`'s encoding writes it.
fn put_str(buf: &mut Vec<u8>, s: &str) {
    let at = buf.len();
    buf.extend_from_slice(&[0; 4]);
    ferrozk_proto::jute::write_java_utf8(s, buf);
    let n = (buf.len() - at - 4) as i32;
    buf[at..at + 4].copy_from_slice(&n.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl;
    use crate::txn::{Txn, TxnOp};
    use ferrozk_proto::codes::op;

    fn create(path: &str, flags: i32, opcode: i32, ttl: i64) -> TxnOp {
        TxnOp::Create { opcode, path: path.into(), data: Some(path.as_bytes().to_vec()), acl: acl::open_acl(), flags, ttl }
    }

    #[test]
    fn a_snapshot_reads_back_as_the_same_tree() {
        let config = TreeConfig { ttl_enabled: true, enforce_quota: true, x509_enabled: false };
        let mut t = DataTree::new(config.clone());
        let mut zxid = 0;
        let mut apply = |t: &mut DataTree, session: i64, op: TxnOp| {
            zxid += 1;
            t.apply(zxid, &Txn { session, time: 1000 + zxid, auth: vec![acl::id("digest", "u:x")], op })
        };
        apply(&mut t, 7, TxnOp::CreateSession { timeout: 4000, passwd: vec![1; 16] });
        apply(&mut t, 7, create("/a", 0, op::CREATE, -1));
        apply(&mut t, 7, create("/a/s-", 2, op::CREATE, -1));
        apply(&mut t, 7, create("/a/e", 1, op::CREATE, -1));
        apply(&mut t, 7, create("/box", 0, op::CREATE_CONTAINER, -1));
        apply(&mut t, 7, create("/ttl", 5, op::CREATE_TTL, 500));
        apply(&mut t, 7, create("/zookeeper/quota/a", 0, op::CREATE, -1));
        apply(&mut t, 7, create("/zookeeper/quota/a/zookeeper_limits", 0, op::CREATE, -1));
        apply(&mut t, 7, create("/zookeeper/quota/a/zookeeper_stats", 0, op::CREATE, -1));
        apply(&mut t, 7, TxnOp::Delete { path: "/a/s-0000000000".into(), version: -1 });
        apply(
            &mut t,
            7,
            TxnOp::SetAcl { path: "/box".into(), acl: vec![Acl { perms: 1, id: acl::id("auth", "") }], version: -1 },
        );
        let mut bytes = Vec::new();
        t.write_snapshot(&mut bytes).unwrap();
        let back = DataTree::read_snapshot(&mut &bytes[..], config, &mut |_, _| {}).unwrap();
        assert_eq!(back.digest(), t.digest());
        assert_eq!(back.last_zxid(), t.last_zxid());
        assert_eq!(back.ephemerals(7), vec!["/a/e".to_string()]);
        assert_eq!(back.reap_candidates(1_000_000), t.reap_candidates(1_000_000));
        assert_eq!(back.max_quota_prefix("/a/e"), Some("/a".into()));
        // ACLs change from node to node and back (written once per run of equal ones).
        let mut paths = Vec::new();
        t.walk(|p, _| paths.push(p.to_string()));
        for p in &paths {
            assert_eq!(back.node(p).map(|n| n.acl().clone()), t.node(p).map(|n| n.acl().clone()), "ACL of {p}");
        }
        assert_ne!(t.node("/box").unwrap().acl(), t.node("/ttl").unwrap().acl());
        // The next sequential child continues from the stored counter.
        let mut back = back;
        let out = back.apply(100, &Txn { session: 7, time: 5, auth: vec![], op: create("/a/s-", 2, op::CREATE, -1) });
        assert!(matches!(out.result, Ok(crate::Outcome::Created { ref path, .. }) if path == "/a/s-0000000002"));
        // A truncated snapshot is an error, not a smaller tree.
        assert!(DataTree::read_snapshot(&mut &bytes[..bytes.len() - 3], TreeConfig::default(), &mut |_, _| {}).is_err());
    }
}
