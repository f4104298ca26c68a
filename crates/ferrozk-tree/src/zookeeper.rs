//! Apache ZooKeeper's data read into a ferrozk tree: its snapshot stream (`FileSnap`, after
//! decompression) and the entries of its transaction log, replayed as ZooKeeper replays them
//! when it starts (`FileTxnSnapLog.restore`).
//!
//! ZooKeeper's snapshots are fuzzy: written while the tree changed, so one may hold changes
//! past the zxid it is named after. Its log records carry the values they produced (a node's
//! new version, its parent's new cversion), so replaying the log from the snapshot's zxid
//! assigns those values, and a record replayed over a tree that already has it changes nothing
//! in the end: a create of a node that exists or a delete of one that does not is skipped, as
//! ZooKeeper skips them. File handling (names, compression, seals of the log) is in
//! `ferrozk-storage`; this module sees streams and record bytes.

use std::collections::HashMap;
use std::io::{self, Read, Write};

// A log's transaction types are the request opcodes (`ZooDefs.OpCode`).
use ferrozk_proto::codes::op as txn_type;
use ferrozk_proto::ErrorCode;
use ferrozk_proto::{Acl, Decode, Reader};

use crate::acl;
use crate::snapshot::Source;
use crate::tree::{DataTree, Session, StatPersisted, TreeConfig, CONTAINER_OWNER};

/// "ZKSN": the first word of a ZooKeeper snapshot.
pub const SNAPSHOT_MAGIC: i32 = 0x5A4B_534E;
/// The ACL reference ZooKeeper stores for `world:anyone` with every permission, never in its map.
const OPEN_UNSAFE_ACL_ID: i64 = -1;
/// ZooKeeper derives a session's password from its id and this constant.
const SUPER_SECRET: i64 = 0xB341_5C00;

/// A tree read from a ZooKeeper snapshot, and what its trailers said.
pub struct ZkSnapshot {
    pub tree: DataTree,
    /// ZooKeeper's ACL cache as the snapshot left it, for the log's replay.
    pub acls: ZkAcls,
    /// The digest trailer (3.6+): the zxid it was computed at, and the digest.
    pub digest: Option<(i64, i64)>,
    /// The lastProcessedZxid trailer (3.9+).
    pub last_processed_zxid: Option<i64>,
}

/// ZooKeeper's ACL cache (`ReferenceCountedACLCache`) while a data directory loads, followed
/// step by step because the keys it hands out depend on it. A snapshot is fuzzy: its ACL map is
/// written before its nodes, so a node created meanwhile may name a key the map lacks. Loading,
/// ZooKeeper counts each node's use of its key, then drops the lists nobody uses; replaying, a
/// create (of a node whose parent exists, even one that exists already) and a setACL take the
/// list's key, or the next key for a list it does not hold, and a delete or setACL gives its
/// node's key back, dropping the list when its count reaches 0. A snapshot's node whose key was
/// missing gets the list the log bound to that key.
#[derive(Default)]
pub struct ZkAcls {
    keys: HashMap<Vec<Acl>, i64>,
    lists: HashMap<i64, Vec<Acl>>,
    uses: HashMap<i64, u64>,
    last_key: i64,
    /// Every list a key was ever bound to (the last one), for the nodes below.
    bound: HashMap<i64, Vec<Acl>>,
    /// Nodes of the snapshot whose key its map did not hold: path -> (key, czxid).
    pending: HashMap<String, (i64, i64)>,
}

impl ZkAcls {
    fn insert(&mut self, key: i64, list: Vec<Acl>) {
        self.last_key = self.last_key.max(key);
        self.keys.insert(list.clone(), key);
        self.bound.insert(key, list.clone());
        self.lists.insert(key, list);
        self.uses.insert(key, 0);
    }

    fn add_usage(&mut self, key: i64) {
        if let Some(n) = self.uses.get_mut(&key) {
            *n += 1;
        }
    }

    fn remove_usage(&mut self, key: i64) {
        let Some(n) = self.uses.get_mut(&key) else { return };
        *n = n.saturating_sub(1);
        if *n == 0 {
            self.uses.remove(&key);
            if let Some(list) = self.lists.remove(&key) {
                self.keys.remove(&list);
            }
        }
    }

    /// After the snapshot's nodes: `purgeUnused`.
    fn purge_unused(&mut self) {
        let unused: Vec<i64> = self.uses.iter().filter(|(_, n)| **n == 0).map(|(k, _)| *k).collect();
        for key in unused {
            self.uses.remove(&key);
            if let Some(list) = self.lists.remove(&key) {
                self.keys.remove(&list);
            }
        }
    }

    /// `convertAcls`: the list's key, or the next one for a list not held; counted.
    fn convert(&mut self, list: &[Acl]) {
        let key = match self.keys.get(list) {
            Some(k) => *k,
            None => {
                let k = self.last_key + 1;
                self.insert(k, list.to_vec());
                k
            }
        };
        self.add_usage(key);
    }

    /// Gives back the key of the node at `path`, whose ACL is `list` (a node given one by the
    /// snapshot with a missing key: that key).
    fn release(&mut self, path: &str, list: &[Acl]) {
        let key = match self.pending.remove(path) {
            Some((key, _)) => Some(key),
            None => self.keys.get(list).copied(),
        };
        if let Some(key) = key {
            self.remove_usage(key);
        }
    }

    /// Nodes whose ACL key neither the snapshot nor the log (so far) defines.
    pub fn unresolved(&self) -> usize {
        self.pending.iter().filter(|(_, (key, _))| !self.bound.contains_key(key)).count()
    }
}

/// `TxnHeader`: what every log entry starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZkTxnHeader {
    pub session: i64,
    pub cxid: i32,
    pub zxid: i64,
    pub time: i64,
    pub kind: i32,
}

/// The password ZooKeeper gave session `id`: `new java.util.Random(id ^ superSecret)`'s first
/// 16 bytes. Only sessions imported from ZooKeeper keep such a password.
pub fn zookeeper_session_password(id: i64) -> Vec<u8> {
    const MULTIPLIER: u64 = 0x5_DEEC_E66D;
    const MASK: u64 = (1 << 48) - 1;
    let mut seed = ((id ^ SUPER_SECRET) as u64 ^ MULTIPLIER) & MASK;
    let mut out = Vec::with_capacity(16);
    while out.len() < 16 {
        seed = (seed.wrapping_mul(MULTIPLIER).wrapping_add(0xB)) & MASK;
        let mut word = (seed >> 16) as u32;
        for _ in 0..4 {
            out.push(word as u8);
            word >>= 8;
        }
    }
    out
}

impl DataTree {
    /// Reads a ZooKeeper snapshot from its decompressed stream, checking its seals.
    pub fn read_zookeeper_snapshot(r: &mut dyn Read, config: TreeConfig) -> Result<ZkSnapshot, String> {
        let mut src = Source::new(r);
        src.start_checksum();
        let magic = src.i32()?;
        if magic != SNAPSHOT_MAGIC {
            return Err(format!("not a ZooKeeper snapshot (magic 0x{magic:08x} at offset 0)"));
        }
        let version = src.i32()?;
        if version != 2 {
            return Err(format!("unsupported ZooKeeper snapshot version {version} at offset 4"));
        }
        let _dbid = src.i64()?;
        let mut tree = DataTree::empty(config);
        let sessions = src.i32()?;
        for _ in 0..sessions.max(0) {
            let id = src.i64()?;
            let timeout = src.i32()?;
            tree.insert_session(id, Session { timeout, passwd: zookeeper_session_password(id) });
        }
        let acls = src.i32()?;
        let mut acl_ids: HashMap<i64, u32> = HashMap::new();
        let mut cache = ZkAcls::default();
        acl_ids.insert(OPEN_UNSAFE_ACL_ID, tree.intern(acl::open_acl()));
        for _ in 0..acls.max(0) {
            let key = src.i64()?;
            let list: Vec<Acl> = src.record()?;
            acl_ids.insert(key, tree.intern(list.clone()));
            cache.insert(key, list);
        }
        let mut p = String::new();
        let mut data = Vec::new();
        let mut max_zxid = 0;
        loop {
            let at = src.offset();
            src.string_into(&mut p)?;
            if p == "/" {
                break;
            }
            let has_data = src.buffer_into(&mut data)?;
            let acl_ref = src.i64()?;
            let stat = src.stat_persisted()?;
            let acl = match acl_ids.get(&acl_ref) {
                Some(a) => {
                    cache.add_usage(acl_ref);
                    *a
                }
                None => {
                    // Defined by the log's replay (see ZkAcls); open until then.
                    let path = if p.is_empty() { "/" } else { p.as_str() };
                    cache.pending.insert(path.to_string(), (acl_ref, stat.czxid));
                    acl_ids[&OPEN_UNSAFE_ACL_ID]
                }
            };
            max_zxid = max_zxid.max(stat.mzxid).max(stat.czxid).max(stat.pzxid);
            // The root is written with the empty path.
            let path = if p.is_empty() { "/" } else { p.as_str() };
            let parent = if path == "/" {
                crate::store::ROOT
            } else {
                let (parent, name) = crate::path::split(path).ok_or_else(|| format!("bad path {p:?} at offset {at}"))?;
                let parent = tree
                    .find_id(crate::path::parent_key(parent))
                    .ok_or_else(|| format!("node {p:?} at offset {at} comes before its parent"))?;
                if name.is_empty() || tree.child_id(parent, name).is_some() {
                    return Err(format!("bad or repeated path {p:?} at offset {at}"));
                }
                parent
            };
            tree.load_node(parent, path, &stat, has_data.then_some(&data[..]), acl);
        }
        src.seal()?;
        cache.purge_unused();
        // The trailers are told apart by how many bytes remain (ZooKeeper reads until EOF):
        // a digest (3.6+) and the last processed zxid (3.9+), each sealed.
        let at = src.offset();
        let (digest, last_processed_zxid) = match src.remaining_to_end(64)? {
            0 => (None, None),
            n @ (33 | 54) => {
                let zxid = src.i64()?;
                let version = src.i32()?;
                let digest = src.i64()?;
                src.seal()?;
                let last = if n == 54 {
                    let z = src.i64()?;
                    src.seal()?;
                    Some(z)
                } else {
                    None
                };
                ((version >= 2).then_some((zxid, digest)), last)
            }
            21 => {
                let z = src.i64()?;
                src.seal()?;
                (None, Some(z))
            }
            n => return Err(format!("{n} unexpected bytes after the tree at offset {at}")),
        };
        tree.finish_load(max_zxid);
        Ok(ZkSnapshot { tree, acls: cache, digest, last_processed_zxid })
    }

    /// Replays one entry of ZooKeeper's transaction log (`TxnHeader`, the txn, and 3.6+'s
    /// digest, which is ignored) and returns its header. Creates of nodes that exist and
    /// changes of nodes that do not are skipped, as ZooKeeper skips them on replay.
    pub fn replay_zookeeper_txn(&mut self, entry: &[u8], acls: &mut ZkAcls) -> Result<ZkTxnHeader, String> {
        let mut r = Reader::new(entry);
        let err = |e: ferrozk_proto::DecodeError| format!("bad transaction record: {e}");
        let hdr = ZkTxnHeader {
            session: r.read_i64().map_err(err)?,
            cxid: r.read_i32().map_err(err)?,
            zxid: r.read_i64().map_err(err)?,
            time: r.read_i64().map_err(err)?,
            kind: r.read_i32().map_err(err)?,
        };
        let body = &entry[r.position()..];
        match hdr.kind {
            txn_type::CREATE_SESSION => {
                let timeout = Reader::new(body).read_i32().map_err(err)?;
                self.insert_session(hdr.session, Session { timeout, passwd: zookeeper_session_password(hdr.session) });
            }
            txn_type::CLOSE_SESSION => {
                // 3.6+ lists the ephemerals to delete; older logs leave the body empty.
                let listed =
                    if body.len() >= 4 { Vec::<String>::decode(&mut Reader::new(body)).map_err(err)? } else { Vec::new() };
                let going: std::collections::BTreeSet<String> =
                    listed.iter().cloned().chain(self.ephemerals(hdr.session)).collect();
                for p in &going {
                    self.release_zookeeper_acl(p, acls);
                }
                self.close_zookeeper_session(hdr.session, &listed, hdr.zxid);
            }
            txn_type::MULTI => {
                let mut r = Reader::new(body);
                let n = r.read_count().map_err(err)?;
                let mut subs = Vec::with_capacity(n.min(1 << 16));
                for _ in 0..n {
                    let kind = r.read_i32().map_err(err)?;
                    let data = r.read_buffer().map_err(err)?.unwrap_or_default();
                    subs.push((kind, data));
                }
                // A multi with a failed op was applied as nothing.
                if !subs.iter().any(|(k, _)| *k == txn_type::ERROR) {
                    for (kind, data) in &subs {
                        self.replay_op(&hdr, *kind, data, acls).map_err(|e| format!("in a multi: {e}"))?;
                    }
                }
            }
            kind => self.replay_op(&hdr, kind, body, acls)?,
        }
        self.set_last_zxid(hdr.zxid);
        Ok(hdr)
    }

    /// One line for a ZooKeeper log entry (`ferrozk log` on ZooKeeper's files): its header and
    /// what it does, without applying it.
    pub fn describe_zookeeper_txn(entry: &[u8]) -> Result<String, String> {
        let mut r = Reader::new(entry);
        let err = |e: ferrozk_proto::DecodeError| format!("bad transaction record: {e}");
        let (session, cxid, zxid, time, kind) = (
            r.read_i64().map_err(err)?,
            r.read_i32().map_err(err)?,
            r.read_i64().map_err(err)?,
            r.read_i64().map_err(err)?,
            r.read_i32().map_err(err)?,
        );
        let body = &entry[r.position()..];
        let what = if kind == txn_type::MULTI {
            let mut r = Reader::new(body);
            let n = r.read_count().map_err(err)?;
            let mut ops = Vec::with_capacity(n.min(1 << 10));
            for _ in 0..n {
                let kind = r.read_i32().map_err(err)?;
                let data = r.read_buffer().map_err(err)?.unwrap_or_default();
                ops.push(describe_op(kind, &data).map_err(|e| format!("in a multi: {e}"))?);
            }
            format!("multi [{}]", ops.join("; "))
        } else {
            describe_op(kind, body)?
        };
        Ok(format!("zxid=0x{zxid:x} time={time} session=0x{session:x} cxid={cxid} {what}"))
    }

    /// Gives the snapshot's nodes whose ACL key the log defined their ACL; an error names one
    /// whose key nothing defined.
    pub fn resolve_zookeeper_acls(&mut self, acls: &mut ZkAcls) -> Result<(), String> {
        for (path, (key, czxid)) in std::mem::take(&mut acls.pending) {
            let list = acls.bound.get(&key).cloned().unwrap_or_default();
            if self.restore_acl(&path, czxid, list) && !acls.bound.contains_key(&key) {
                return Err(format!("node {path:?} names ACL {key}, which neither the snapshot nor the log defines"));
            }
        }
        Ok(())
    }

    /// `removeUsage` for the node at `path` that a replayed transaction deletes or re-ACLs.
    fn release_zookeeper_acl(&self, path: &str, acls: &mut ZkAcls) {
        if let Some(n) = self.node(path) {
            acls.release(path, n.acl());
        }
    }

    fn replay_op(&mut self, hdr: &ZkTxnHeader, kind: i32, body: &[u8], acls: &mut ZkAcls) -> Result<(), String> {
        let mut r = Reader::new(body);
        let err = |e: ferrozk_proto::DecodeError| format!("bad body of a type {kind} transaction: {e}");
        match kind {
            txn_type::CREATE | txn_type::CREATE2 | txn_type::CREATE_CONTAINER | txn_type::CREATE_TTL => {
                let path = String::decode(&mut r).map_err(err)?;
                let data = r.read_buffer().map_err(err)?;
                let acl = Vec::<Acl>::decode(&mut r).map_err(err)?;
                // ZooKeeper takes the list's key once the parent is found, before it looks
                // for the node.
                if crate::path::split(&path).is_some_and(|(parent, _)| self.node(crate::path::parent_key(parent)).is_some()) {
                    acls.convert(&acl);
                }
                let (owner, parent_cversion) = match kind {
                    txn_type::CREATE_CONTAINER => (CONTAINER_OWNER, r.read_i32().map_err(err)?),
                    txn_type::CREATE_TTL => {
                        let parent_cversion = r.read_i32().map_err(err)?;
                        let ttl = r.read_i64().map_err(err)?;
                        (crate::tree::ttl_owner(ttl), parent_cversion)
                    }
                    _ => {
                        let ephemeral = r.read_bool().map_err(err)?;
                        // CreateTxnV0 (before 3.3) has no parentCVersion: -1 means one more.
                        let parent_cversion = if r.remaining() >= 4 { r.read_i32().map_err(err)? } else { -1 };
                        (if ephemeral { hdr.session } else { 0 }, parent_cversion)
                    }
                };
                let created = self.assign_create(&path, data.as_deref(), acl, owner, hdr.zxid, hdr.time, parent_cversion);
                if created == Err(ErrorCode::NodeExists) && kind == txn_type::CREATE {
                    // ZooKeeper still moves the parent's cversion forward (a fuzzy snapshot may
                    // hold the node and not the parent's change).
                    if let Some((parent, _)) = crate::path::split(&path) {
                        self.assign_parent_cversion(crate::path::parent_key(parent), parent_cversion, hdr.zxid);
                    }
                }
            }
            txn_type::DELETE | txn_type::DELETE_CONTAINER => {
                let path = String::decode(&mut r).map_err(err)?;
                self.release_zookeeper_acl(&path, acls);
                let _ = self.assign_delete(&path, hdr.zxid);
            }
            txn_type::SET_DATA | txn_type::RECONFIG => {
                let path = String::decode(&mut r).map_err(err)?;
                let data = r.read_buffer().map_err(err)?;
                let version = r.read_i32().map_err(err)?;
                let _ = self.assign_data(&path, data.as_deref(), version, hdr.zxid, hdr.time);
            }
            txn_type::SET_ACL => {
                let path = String::decode(&mut r).map_err(err)?;
                let acl = Vec::<Acl>::decode(&mut r).map_err(err)?;
                let version = r.read_i32().map_err(err)?;
                if self.node(&path).is_some() {
                    self.release_zookeeper_acl(&path, acls);
                    acls.convert(&acl);
                    let _ = self.assign_acl(&path, acl, version);
                }
            }
            txn_type::CHECK | txn_type::ERROR => {}
            other => return Err(format!("unknown ZooKeeper transaction type {other}")),
        }
        Ok(())
    }
}

/// The digest ZooKeeper (3.6+, `DigestCalculator`, version 2) keeps of a node: CRC-32 of its
/// path (the root's as ""), its data and its persisted Stat; 0 under `/zookeeper/`.
pub fn zookeeper_node_digest(path: &str, data: Option<&[u8]>, st: &StatPersisted) -> i64 {
    if path.starts_with("/zookeeper/") {
        return 0;
    }
    let mut crc = crc32fast::Hasher::new();
    crc.update(if path == "/" { b"" } else { path.as_bytes() });
    if let Some(d) = data {
        crc.update(d);
    }
    let mut block = Vec::with_capacity(60);
    for v in [st.czxid, st.mzxid, st.pzxid, st.ctime, st.mtime] {
        block.extend_from_slice(&v.to_be_bytes());
    }
    for v in [st.version, st.cversion, st.aversion] {
        block.extend_from_slice(&v.to_be_bytes());
    }
    block.extend_from_slice(&st.ephemeral_owner.to_be_bytes());
    crc.update(&block);
    i64::from(crc.finalize())
}

/// Writes through to `inner`, keeping the running Adler-32 that ZooKeeper's seals carry.
struct Sealed<'a> {
    inner: &'a mut dyn Write,
    sum: adler2::Adler32,
}

impl Sealed<'_> {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.sum.write_slice(bytes);
        self.inner.write_all(bytes)
    }

    fn put_string(&mut self, s: &str) -> io::Result<()> {
        self.put(&(s.len() as i32).to_be_bytes())?;
        self.put(s.as_bytes())
    }

    /// `SnapStream.sealStream`: the checksum so far, then "/".
    fn seal(&mut self) -> io::Result<()> {
        let sum = i64::from(self.sum.checksum());
        self.put(&sum.to_be_bytes())?;
        self.put_string("/")
    }
}

impl DataTree {
    /// ZooKeeper's digest of the whole tree: the wrapping sum of its nodes' digests.
    pub fn zookeeper_digest(&self) -> i64 {
        let mut digest = 0i64;
        self.walk(|p, n| digest = digest.wrapping_add(zookeeper_node_digest(p, n.data(), &n.persisted())));
        digest
    }
}

impl DataTree {
    /// Writes the tree as an uncompressed Apache ZooKeeper snapshot (`snapshot.<zxid>`, as 3.6
    /// to 3.9 read it) taken at `zxid`: the sessions, the ACL map, every node parent first,
    /// the seal, then the digest trailer and its seal. Returns the tree digest written.
    pub fn write_zookeeper_snapshot(&self, w: &mut dyn Write, zxid: i64) -> io::Result<i64> {
        let mut out = Sealed { inner: w, sum: adler2::Adler32::new() };
        out.put(&SNAPSHOT_MAGIC.to_be_bytes())?;
        out.put(&2i32.to_be_bytes())?;
        out.put(&(-1i64).to_be_bytes())?;
        out.put(&(self.sessions().len() as i32).to_be_bytes())?;
        for (id, s) in self.sessions() {
            out.put(&id.to_be_bytes())?;
            out.put(&s.timeout.to_be_bytes())?;
        }
        // ZooKeeper's ACL keys count up from 1, one a distinct list.
        let mut keys: HashMap<Vec<Acl>, i64> = HashMap::new();
        let mut lists: Vec<Vec<Acl>> = Vec::new();
        self.walk(|_, n| {
            let acl = n.acl().as_ref();
            if !keys.contains_key(acl) {
                keys.insert(acl.clone(), lists.len() as i64 + 1);
                lists.push(acl.clone());
            }
        });
        out.put(&(lists.len() as i32).to_be_bytes())?;
        for (i, list) in lists.iter().enumerate() {
            out.put(&(i as i64 + 1).to_be_bytes())?;
            out.put(&ferrozk_proto::jute::to_bytes(list))?;
        }
        let mut digest = 0i64;
        let mut failed = None;
        self.walk(|p, n| {
            if failed.is_some() {
                return;
            }
            let st = n.persisted();
            digest = digest.wrapping_add(zookeeper_node_digest(p, n.data(), &st));
            let mut rec = Vec::with_capacity(96 + p.len() + n.data().map_or(0, |d| d.len()));
            // The root is written with the empty path.
            let path = if p == "/" { "" } else { p };
            rec.extend_from_slice(&(path.len() as i32).to_be_bytes());
            rec.extend_from_slice(path.as_bytes());
            match n.data() {
                Some(d) => {
                    rec.extend_from_slice(&(d.len() as i32).to_be_bytes());
                    rec.extend_from_slice(d);
                }
                None => rec.extend_from_slice(&(-1i32).to_be_bytes()),
            }
            rec.extend_from_slice(&keys[n.acl().as_ref()].to_be_bytes());
            for v in [st.czxid, st.mzxid, st.ctime, st.mtime] {
                rec.extend_from_slice(&v.to_be_bytes());
            }
            for v in [st.version, st.cversion, st.aversion] {
                rec.extend_from_slice(&v.to_be_bytes());
            }
            for v in [st.ephemeral_owner, st.pzxid] {
                rec.extend_from_slice(&v.to_be_bytes());
            }
            if let Err(e) = out.put(&rec) {
                failed = Some(e);
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        out.put_string("/")?;
        out.seal()?;
        out.put(&zxid.to_be_bytes())?;
        out.put(&2i32.to_be_bytes())?;
        out.put(&digest.to_be_bytes())?;
        out.seal()?;
        Ok(digest)
    }
}

/// A ZooKeeper transaction body of type `kind`, in a few words.
fn describe_op(kind: i32, body: &[u8]) -> Result<String, String> {
    let mut r = Reader::new(body);
    let err = |e: ferrozk_proto::DecodeError| format!("bad body of a type {kind} transaction: {e}");
    let name = ferrozk_proto::codes::op::name(kind);
    Ok(match kind {
        txn_type::CREATE_SESSION => format!("createSession timeout={}", r.read_i32().map_err(err)?),
        txn_type::CLOSE_SESSION => "closeSession".into(),
        txn_type::CREATE | txn_type::CREATE2 | txn_type::CREATE_CONTAINER | txn_type::CREATE_TTL => {
            let path = String::decode(&mut r).map_err(err)?;
            let len = r.read_buffer().map_err(err)?.map_or(-1, |d| d.len() as i64);
            format!("{name} {path} dataLength={len}")
        }
        txn_type::DELETE | txn_type::DELETE_CONTAINER => format!("{name} {}", String::decode(&mut r).map_err(err)?),
        txn_type::SET_DATA | txn_type::RECONFIG => {
            let path = String::decode(&mut r).map_err(err)?;
            let len = r.read_buffer().map_err(err)?.map_or(-1, |d| d.len() as i64);
            format!("{name} {path} dataLength={len} version={}", r.read_i32().map_err(err)?)
        }
        txn_type::SET_ACL => {
            let path = String::decode(&mut r).map_err(err)?;
            let acl = Vec::<Acl>::decode(&mut r).map_err(err)?;
            format!("setACL {path} acl={} version={}", acl.len(), r.read_i32().map_err(err)?)
        }
        txn_type::CHECK => {
            let path = String::decode(&mut r).map_err(err)?;
            format!("check {path} version={}", r.read_i32().map_err(err)?)
        }
        txn_type::ERROR => format!("error {}", r.read_i32().map_err(err)?),
        other => return Err(format!("unknown ZooKeeper transaction type {other}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn session_passwords_follow_java_util_random() {
        // `new java.util.Random(id ^ 0xB3415C00L).nextBytes(new byte[16])`, run on Java 17.
        assert_eq!(hex(&zookeeper_session_password(0)), "f22acd4a97e69d6d20a49bb638eadb38");
        assert_eq!(hex(&zookeeper_session_password(0x0100_017a_2b3c_0001)), "197db50ebb0f70b549d01f043076b499");
    }
    #[test]
    fn an_exported_snapshot_reads_back_as_zookeeper_would_load_it() {
        use crate::txn::{Txn, TxnOp};
        use ferrozk_proto::codes::op;
        let create = |path: &str, flags: i32, opcode: i32, ttl: i64| TxnOp::Create {
            opcode,
            path: path.into(),
            data: (path != "/a").then(|| path.as_bytes().to_vec()),
            acl: acl::open_acl(),
            flags,
            ttl,
        };
        let config = TreeConfig { ttl_enabled: true, enforce_quota: false, x509_enabled: false };
        let mut t = DataTree::new(config.clone());
        let mut zxid = 0x5_0000_0000;
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
        apply(
            &mut t,
            7,
            TxnOp::SetAcl { path: "/box".into(), acl: vec![Acl { perms: 1, id: acl::id("auth", "") }], version: -1 },
        );
        let mut bytes = Vec::new();
        let digest = t.write_zookeeper_snapshot(&mut bytes, t.last_zxid()).unwrap();
        let back = DataTree::read_zookeeper_snapshot(&mut &bytes[..], config).unwrap();
        assert_eq!(back.digest, Some((t.last_zxid(), digest)));
        assert_eq!(digest, t.zookeeper_digest());
        assert_eq!(back.acls.unresolved(), 0);
        let mut paths = Vec::new();
        t.walk(|p, _| paths.push(p.to_string()));
        assert_eq!(back.tree.node_count(), t.node_count());
        for p in &paths {
            let (a, b) = (t.node(p).unwrap(), back.tree.node(p).unwrap());
            assert_eq!((a.stat(), a.data(), a.acl()), (b.stat(), b.data(), b.acl()), "{p}");
        }
        let sessions: Vec<_> = back.tree.sessions().iter().map(|(id, s)| (*id, s.timeout, s.passwd.clone())).collect();
        assert_eq!(sessions, vec![(7, 4000, zookeeper_session_password(7))]);
        // Sequential names go on from the parent's cversion.
        let mut tree = back.tree;
        let out = tree.apply(zxid + 1, &Txn { session: 7, time: 5, auth: vec![], op: create("/a/s-", 2, op::CREATE, -1) });
        assert!(matches!(out.result, Ok(crate::Outcome::Created { ref path, .. }) if path == "/a/s-0000000002"));
    }
    /// jute for the hand-made snapshot and log below.
    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as i32).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    fn acl_list(out: &mut Vec<u8>, scheme_id: &str) {
        out.extend_from_slice(&1i32.to_be_bytes());
        out.extend_from_slice(&31i32.to_be_bytes());
        string(out, "digest");
        string(out, scheme_id);
    }

    fn digest_acl(id: &str) -> Vec<Acl> {
        vec![Acl { perms: 31, id: acl::id("digest", id) }]
    }

    #[test]
    fn acl_keys_follow_zookeepers_reference_counts_through_a_fuzzy_snapshot() {
        // Snapshot: keys 1 (u1) and 2 (u2); /a uses 1, /b uses 2, /x names key 3, which the
        // map lacks (it was created while the snapshot was written).
        let mut snap = Vec::new();
        snap.extend_from_slice(&SNAPSHOT_MAGIC.to_be_bytes());
        snap.extend_from_slice(&2i32.to_be_bytes());
        snap.extend_from_slice(&(-1i64).to_be_bytes());
        snap.extend_from_slice(&0i32.to_be_bytes());
        snap.extend_from_slice(&2i32.to_be_bytes());
        for (key, id) in [(1i64, "u1"), (2, "u2")] {
            snap.extend_from_slice(&key.to_be_bytes());
            acl_list(&mut snap, id);
        }
        for (path, key, zxid) in [("", -1i64, 0i64), ("/a", 1, 1), ("/b", 2, 2), ("/x", 3, 3)] {
            string(&mut snap, path);
            snap.extend_from_slice(&(-1i32).to_be_bytes());
            snap.extend_from_slice(&key.to_be_bytes());
            for v in [zxid, zxid, 0, 0] {
                snap.extend_from_slice(&v.to_be_bytes());
            }
            for v in [0i32, 0, 0] {
                snap.extend_from_slice(&v.to_be_bytes());
            }
            snap.extend_from_slice(&0i64.to_be_bytes());
            snap.extend_from_slice(&zxid.to_be_bytes());
        }
        string(&mut snap, "/");
        let sum = adler2::adler32_slice(&snap);
        snap.extend_from_slice(&i64::from(sum).to_be_bytes());
        string(&mut snap, "/");
        let s = DataTree::read_zookeeper_snapshot(&mut &snap[..], TreeConfig::default()).unwrap();
        let (mut tree, mut acls) = (s.tree, s.acls);
        assert_eq!(acls.unresolved(), 1);
        let txn = |zxid: i64, kind: i32, body: &dyn Fn(&mut Vec<u8>)| {
            let mut e = Vec::new();
            e.extend_from_slice(&1i64.to_be_bytes());
            e.extend_from_slice(&0i32.to_be_bytes());
            e.extend_from_slice(&zxid.to_be_bytes());
            e.extend_from_slice(&0i64.to_be_bytes());
            e.extend_from_slice(&kind.to_be_bytes());
            body(&mut e);
            e
        };
        let create = |path: &'static str, id: &'static str| {
            move |e: &mut Vec<u8>| {
                string(e, path);
                e.extend_from_slice(&(-1i32).to_be_bytes());
                acl_list(e, id);
                e.push(0);
                e.extend_from_slice(&1i32.to_be_bytes());
            }
        };
        // /b goes: u2's last user, so key 2 is dropped. /x's create (logged after the snapshot
        // began; the node exists) takes u2 again, now under key 3; then u3 gets key 4.
        tree.replay_zookeeper_txn(&txn(4, txn_type::DELETE, &|e| string(e, "/b")), &mut acls).unwrap();
        tree.replay_zookeeper_txn(&txn(3, txn_type::CREATE, &create("/x", "u2")), &mut acls).unwrap();
        tree.replay_zookeeper_txn(&txn(5, txn_type::CREATE, &create("/y", "u3")), &mut acls).unwrap();
        tree.resolve_zookeeper_acls(&mut acls).unwrap();
        assert_eq!(tree.node("/x").unwrap().acl().as_ref(), &digest_acl("u2"));
        assert_eq!(tree.node("/y").unwrap().acl().as_ref(), &digest_acl("u3"));
        assert_eq!(tree.node("/a").unwrap().acl().as_ref(), &digest_acl("u1"));
        assert!(tree.node("/b").is_none());
    }
}
