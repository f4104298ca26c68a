//! The data tree and its one deterministic state transition, `apply`.
//!
//! Over 800 lines on purpose: `apply` is the transition every member must compute alike from
//! the same log (invariant 2 of DESIGN.md), and each of its operations reads best beside the
//! structures and checks it uses; split, the ZooKeeper rule behind a line would be a file away.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use ferrozk_proto::codes::{op, perms};
use ferrozk_proto::{Acl, CreateMode, ErrorCode, Id, OpResult, Stat};

use crate::acl;
use crate::path;
use crate::quota;
use crate::store::{Node, NodeRef, Store, ROOT};
use crate::txn::{Txn, TxnOp};
use crate::watch::ChangeKind;
use ferrozk_proto::StatsTrack;

/// `ephemeralOwner` of a container (`Long.MIN_VALUE`).
pub const CONTAINER_OWNER: i64 = i64::MIN;
const EXTENDED_MASK: i64 = 0xff00_0000_0000_0000u64 as i64;
/// The largest TTL ZooKeeper can encode in `ephemeralOwner`.
pub const MAX_TTL: i64 = 0x0000_00ff_ffff_ffff;

/// What `ephemeralOwner` says a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Persistent,
    Ephemeral(i64),
    Container,
    Ttl(i64),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatPersisted {
    pub czxid: i64,
    pub mzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub version: i32,
    pub cversion: i32,
    pub aversion: i32,
    pub ephemeral_owner: i64,
    pub pzxid: i64,
}

/// `ephemeralOwner` of a TTL node.
pub(crate) fn ttl_owner(ttl: i64) -> i64 {
    EXTENDED_MASK | (ttl & MAX_TTL)
}

/// Clients see the owner of ephemerals only; containers and TTL nodes show 0
/// (`DataNode.getClientEphemeralOwner`).
pub(crate) fn client_visible_owner(owner: i64) -> i64 {
    if owner == CONTAINER_OWNER || owner & EXTENDED_MASK == EXTENDED_MASK {
        0
    } else {
        owner
    }
}

/// A session as the replicated state knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub timeout: i32,
    pub passwd: Vec<u8>,
}

/// Settings that change what `apply` decides; the same on every server.
#[derive(Debug, Clone, Default)]
pub struct TreeConfig {
    /// `extendedTypesEnabled`: TTL nodes are allowed.
    pub ttl_enabled: bool,
    /// `enforceQuota`: hard quotas refuse writes with QUOTAEXCEEDED.
    pub enforce_quota: bool,
    /// TLS clients are served, so the `x509` scheme is known for ACLs.
    pub x509_enabled: bool,
}

/// A change that may fire watches: the path, what happened, and the ACL that decides who may
/// hear of it (the node's, or the parent's for NodeChildrenChanged).
#[derive(Debug, Clone)]
pub struct Change {
    pub path: String,
    pub kind: ChangeKind,
    pub acl: Arc<Vec<Acl>>,
}

/// What a write produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Created {
        path: String,
        stat: Stat,
    },
    Deleted,
    DataSet(Stat),
    AclSet(Stat),
    Checked(Stat),
    Multi(Vec<OpResult>),
    SessionCreated,
    SessionClosed,
    /// A reconfig's answer: the new `/zookeeper/config` and its Stat.
    Config {
        data: Vec<u8>,
        stat: Stat,
    },
}

#[derive(Debug)]
pub struct Applied {
    pub zxid: i64,
    pub result: Result<Outcome, ErrorCode>,
    pub changes: Vec<Change>,
}

/// Maps keyed by paths: a seeded hasher much faster than SipHash on short strings.
pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

pub struct DataTree {
    store: Store,
    sessions: BTreeMap<i64, Session>,
    ephemerals: HashMap<i64, BTreeSet<String>>,
    containers: BTreeSet<String>,
    ttls: BTreeSet<String>,
    quota_roots: BTreeSet<String>,
    last_zxid: i64,
    config: TreeConfig,
    /// Inside a multi: the state of every node before the multi first touched it.
    undo: Option<Vec<(String, Option<Node>)>>,
}

struct Ctx<'a> {
    zxid: i64,
    time: i64,
    session: i64,
    auth: &'a [Id],
}

type OpOutcome = Result<Outcome, ErrorCode>;

/// The root as a new tree has it (and as a snapshot overwrites it).
fn empty_root() -> Node {
    Node { data: Some(Vec::new()), acl: 0, stat: StatPersisted::default() }
}

impl DataTree {
    pub fn new(config: TreeConfig) -> DataTree {
        let mut store = Store::new(&empty_root());
        let open = store.intern_acl(acl::open_acl());
        debug_assert_eq!(open, empty_root().acl);
        let empty = |acl, stat| Node { data: Some(Vec::new()), acl, stat };
        let proc = store.insert(ROOT, "zookeeper", &empty(open, StatPersisted::default()));
        store.insert(proc, "quota", &empty(open, StatPersisted::default()));
        // ZooKeeper sets the config node's ACL with version -1, which leaves aversion at -1.
        let read = store.intern_acl(acl::read_acl());
        store.insert(proc, "config", &empty(read, StatPersisted { aversion: -1, ..Default::default() }));
        DataTree {
            store,
            sessions: BTreeMap::new(),
            ephemerals: HashMap::new(),
            containers: BTreeSet::new(),
            ttls: BTreeSet::new(),
            quota_roots: BTreeSet::new(),
            last_zxid: 0,
            config,
            undo: None,
        }
    }

    pub fn config(&self) -> &TreeConfig {
        &self.config
    }

    pub fn last_zxid(&self) -> i64 {
        self.last_zxid
    }

    /// The version of the ensemble's configuration (`version=` in `/zookeeper/config`; 0
    /// before any).
    pub fn config_version(&self) -> i64 {
        let data = self.node("/zookeeper/config").and_then(|n| n.data()).unwrap_or_default();
        String::from_utf8_lossy(data)
            .lines()
            .filter_map(|l| l.strip_prefix("version="))
            .filter_map(|v| i64::from_str_radix(v.trim(), 16).ok())
            .next_back()
            .unwrap_or(0)
    }

    /// Records that log entry `zxid` was applied without changing the tree (a consensus entry
    /// or a `sync` barrier), so the tree's zxid stays the log position it reflects.
    pub fn set_last_zxid(&mut self, zxid: i64) {
        self.last_zxid = zxid;
    }

    /// The node at `path`; "" names the root too, as in ZooKeeper.
    pub fn node(&self, path: &str) -> Option<NodeRef<'_>> {
        self.store.find(path).map(|id| self.store.get(id))
    }

    pub fn node_count(&self) -> usize {
        self.store.live()
    }

    /// Visits every node with its path, parents before their children.
    pub fn walk(&self, visit: impl FnMut(&str, NodeRef<'_>)) {
        self.store.walk(ROOT, "/", visit)
    }

    pub fn sessions(&self) -> &BTreeMap<i64, Session> {
        &self.sessions
    }

    pub fn session(&self, id: i64) -> Option<&Session> {
        self.sessions.get(&id)
    }

    /// The ephemerals owned by `session`, sorted.
    pub fn ephemerals(&self, session: i64) -> Vec<String> {
        self.ephemerals.get(&session).map(|s| s.iter().cloned().collect()).unwrap_or_default()
    }

    pub fn ephemeral_count(&self) -> usize {
        self.ephemerals.values().map(|s| s.len()).sum()
    }

    pub fn all_ephemerals(&self) -> &HashMap<i64, BTreeSet<String>> {
        &self.ephemerals
    }

    /// Bytes of paths and data (`approximateDataSize`).
    pub fn approximate_data_size(&self) -> u64 {
        let mut total = 0;
        self.walk(|p, n| total += p.len() as u64 + n.data_len() as u64);
        total
    }

    /// A digest of the whole replicated state (every node's path, data, ACL and Stat, and the
    /// sessions), independent of the order nodes are kept in: equal trees give equal digests
    /// on every server. Nodes' hashes are summed, so no sort of a million paths is needed.
    pub fn digest(&self) -> u64 {
        const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
        fn fnv(h: &mut u64, bytes: &[u8]) {
            for b in bytes {
                *h ^= *b as u64;
                *h = h.wrapping_mul(0x100_0000_01b3);
            }
        }
        let mut sum = 0u64;
        self.walk(|p, n| {
            let mut h = OFFSET;
            fnv(&mut h, p.as_bytes());
            fnv(&mut h, &[n.data().is_some() as u8]);
            fnv(&mut h, n.data().unwrap_or_default());
            fnv(&mut h, &ferrozk_proto::jute::to_bytes(n.acl().as_ref()));
            fnv(&mut h, &ferrozk_proto::jute::to_bytes(&n.stat()));
            sum = sum.wrapping_add(h);
        });
        let mut h = OFFSET;
        fnv(&mut h, &sum.to_be_bytes());
        for (id, s) in &self.sessions {
            fnv(&mut h, &id.to_be_bytes());
            fnv(&mut h, &s.timeout.to_be_bytes());
            fnv(&mut h, &s.passwd);
        }
        h
    }

    /// The number of nodes below `path`, not counting itself. ZooKeeper counts every key
    /// under "" (its alias of the root), the root included, so "" gives one more than "/".
    pub fn all_children_number(&self, path: &str) -> usize {
        if path.is_empty() {
            return self.store.live();
        }
        let Some(id) = self.store.find(path) else { return 0 };
        let mut n = 0;
        self.store.walk(id, path, |_, _| n += 1);
        n - 1
    }

    pub fn kind(&self, owner: i64) -> NodeKind {
        if self.config.ttl_enabled && owner & EXTENDED_MASK == EXTENDED_MASK {
            return NodeKind::Ttl(owner & MAX_TTL);
        }
        match owner {
            0 => NodeKind::Persistent,
            CONTAINER_OWNER => NodeKind::Container,
            o => NodeKind::Ephemeral(o),
        }
    }

    /// Containers and TTL nodes due for removal at `now` (ZooKeeper's `ContainerManager`):
    /// empty containers that have had children, and empty TTL nodes unchanged for their TTL.
    pub fn reap_candidates(&self, now: i64) -> Vec<String> {
        let mut out = Vec::new();
        for p in &self.containers {
            if let Some(n) = self.node(p) {
                if n.num_children() == 0 && n.persisted().cversion > 0 {
                    out.push(p.clone());
                }
            }
        }
        for p in &self.ttls {
            if let Some(n) = self.node(p) {
                let st = n.persisted();
                if let NodeKind::Ttl(ttl) = self.kind(st.ephemeral_owner) {
                    if n.num_children() == 0 && ttl != 0 && now - st.mtime > ttl {
                        out.push(p.clone());
                    }
                }
            }
        }
        out
    }

    pub(crate) fn intern(&mut self, acl: Vec<Acl>) -> u32 {
        self.store.intern_acl(acl)
    }

    /// Drops every node and session, for a snapshot to fill the tree.
    pub(crate) fn clear(&mut self) {
        self.store.clear(&empty_root());
        self.sessions.clear();
        self.ephemerals.clear();
        self.containers.clear();
        self.ttls.clear();
        self.quota_roots.clear();
    }

    pub(crate) fn insert_session(&mut self, id: i64, s: Session) {
        self.sessions.insert(id, s);
    }

    pub(crate) fn reserve_nodes(&mut self, n: usize) {
        self.store.reserve(n);
    }

    /// Puts a node read from a snapshot under `parent` (the root when `p` is "/"), with its
    /// indexes.
    pub(crate) fn load_node(&mut self, parent: u32, p: &str, stat: &StatPersisted, data: Option<&[u8]>, acl: u32) -> u32 {
        let id = if p == "/" {
            self.store.set_parts(ROOT, stat, data, acl);
            ROOT
        } else {
            let (_, name) = path::split(p).expect("a path read from a snapshot has a /");
            self.store.insert_parts(parent, name, stat, data, acl)
        };
        self.track(p, stat.ephemeral_owner, true);
        id
    }

    pub(crate) fn child_id(&self, parent: u32, name: &str) -> Option<u32> {
        self.store.child(parent, name)
    }

    pub(crate) fn find_id(&self, p: &str) -> Option<u32> {
        self.store.find(p)
    }

    /// After a snapshot is read: quota usage is recomputed from the tree, as ZooKeeper does.
    pub(crate) fn finish_load(&mut self, last_zxid: i64) {
        self.last_zxid = last_zxid;
        let roots: Vec<String> = self.quota_roots.iter().cloned().collect();
        for r in roots {
            self.recount_quota(&r);
        }
    }

    // Replaying Apache ZooKeeper's log (zookeeper.rs): its records carry the values they
    // produced, which these assign as `DataTree.java` does on replay (no checks, no quota
    // accounting: quotas are recounted once the import is done, by `finish_load`).

    /// `createNode`: a new node with `czxid = mzxid = pzxid = zxid`; the parent's cversion
    /// goes to `parent_cversion` (-1: one more) if that is higher, and its pzxid with it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn assign_create(
        &mut self,
        p: &str,
        data: Option<&[u8]>,
        acl: Vec<Acl>,
        owner: i64,
        zxid: i64,
        time: i64,
        parent_cversion: i32,
    ) -> Result<(), ErrorCode> {
        let (parent, child) = path::split(p).ok_or(ErrorCode::BadArguments)?;
        let parent = path::parent_key(parent);
        let parent_id = self.store.find(parent).ok_or(ErrorCode::NoNode)?;
        if child.is_empty() {
            return Err(ErrorCode::BadArguments);
        }
        if self.store.child(parent_id, child).is_some() {
            return Err(ErrorCode::NodeExists);
        }
        let acl = self.store.intern_acl(acl);
        let stat = StatPersisted {
            czxid: zxid,
            mzxid: zxid,
            ctime: time,
            mtime: time,
            version: 0,
            cversion: 0,
            aversion: 0,
            ephemeral_owner: owner,
            pzxid: zxid,
        };
        let parent = parent.to_string();
        self.assign_parent_cversion(&parent, parent_cversion, zxid);
        self.store.insert_parts(parent_id, child, &stat, data, acl);
        self.track(p, owner, true);
        Ok(())
    }

    /// `setCversionPzxid`: the parent's cversion goes to `cversion` (-1: one more) if that is
    /// higher, and its pzxid to `zxid` with it.
    pub(crate) fn assign_parent_cversion(&mut self, parent: &str, cversion: i32, zxid: i64) {
        let Some(id) = self.store.find(parent) else { return };
        let st = self.store.get(id).persisted();
        let cversion = if cversion == -1 { st.cversion.wrapping_add(1) } else { cversion };
        if cversion > st.cversion {
            self.store.set_child_counters(id, cversion, zxid);
        }
    }

    /// `deleteNode`: the parent's pzxid goes to `zxid` if that is higher; its cversion stays.
    pub(crate) fn assign_delete(&mut self, p: &str, zxid: i64) -> Result<(), ErrorCode> {
        let ctx = Ctx { zxid, time: 0, session: 0, auth: &[] };
        self.delete_node(&ctx, p, &mut Vec::new())
    }

    /// `setData`: the data, `version` as the new version, mzxid and mtime.
    pub(crate) fn assign_data(
        &mut self,
        p: &str,
        data: Option<&[u8]>,
        version: i32,
        zxid: i64,
        time: i64,
    ) -> Result<(), ErrorCode> {
        let id = self.store.find(p).ok_or(ErrorCode::NoNode)?;
        let node = self.store.get(id);
        let (mut st, acl) = (node.persisted(), node.acl_id());
        st.version = version;
        st.mzxid = zxid;
        st.mtime = time;
        self.store.set_parts(id, &st, data, acl);
        Ok(())
    }

    /// `setACL`: the ACL, and `version` as the new aversion.
    pub(crate) fn assign_acl(&mut self, p: &str, acl: Vec<Acl>, version: i32) -> Result<(), ErrorCode> {
        let id = self.store.find(p).ok_or(ErrorCode::NoNode)?;
        let mut st = self.store.get(id).persisted();
        st.aversion = version;
        let acl = self.store.intern_acl(acl);
        self.store.set_meta(id, &st, acl);
        Ok(())
    }

    /// Sets the ACL of the node at `p` created at `czxid`, its Stat unchanged; false when no
    /// such node is there (for ACLs a ZooKeeper log defines after a fuzzy snapshot).
    pub(crate) fn restore_acl(&mut self, p: &str, czxid: i64, acl: Vec<Acl>) -> bool {
        let Some(id) = self.store.find(p) else { return false };
        let st = self.store.get(id).persisted();
        if st.czxid != czxid {
            return false;
        }
        let acl = self.store.intern_acl(acl);
        self.store.set_meta(id, &st, acl);
        true
    }

    /// `killSession`: the session goes with the ephemerals its record lists and any others
    /// it still owns.
    pub(crate) fn close_zookeeper_session(&mut self, session: i64, listed: &[String], zxid: i64) {
        self.sessions.remove(&session);
        let mut paths: Vec<String> = listed.to_vec();
        paths.extend(self.ephemerals.remove(&session).unwrap_or_default());
        for p in paths {
            let _ = self.assign_delete(&p, zxid);
        }
    }

    /// Applies one log entry at `zxid`. Deterministic: the same entries in the same order give
    /// the same tree and the same results on every server.
    pub fn apply(&mut self, zxid: i64, txn: &Txn) -> Applied {
        self.last_zxid = zxid;
        let ctx = Ctx { zxid, time: txn.time, session: txn.session, auth: &txn.auth };
        let mut changes = Vec::new();
        let result = match &txn.op {
            TxnOp::CreateSession { timeout, passwd } => {
                self.sessions.insert(txn.session, Session { timeout: *timeout, passwd: passwd.clone() });
                Ok(Outcome::SessionCreated)
            }
            TxnOp::CloseSession => {
                self.sessions.remove(&txn.session);
                let paths = self.ephemerals.remove(&txn.session).unwrap_or_default();
                for p in paths {
                    let _ = self.delete_node(&ctx, &p, &mut changes);
                }
                Ok(Outcome::SessionClosed)
            }
            TxnOp::Multi(ops) => Ok(self.apply_multi(&ctx, ops, &mut changes)),
            TxnOp::Error(code) => Err(*code),
            single => self.apply_op(&ctx, single, &mut changes),
        };
        Applied { zxid, result, changes }
    }

    fn apply_multi(&mut self, ctx: &Ctx, ops: &[TxnOp], changes: &mut Vec<Change>) -> Outcome {
        self.undo = Some(Vec::new());
        let mark = changes.len();
        let mut results = Vec::with_capacity(ops.len());
        let mut failed = None;
        for (i, o) in ops.iter().enumerate() {
            let res = match o {
                TxnOp::Create { .. } | TxnOp::Delete { .. } | TxnOp::SetData { .. } | TxnOp::Check { .. } => {
                    self.apply_op(ctx, o, changes)
                }
                _ => Err(ErrorCode::Unimplemented),
            };
            match res {
                Ok(outcome) => results.push(multi_result(o, outcome)),
                Err(e) => {
                    failed = Some((i, e));
                    break;
                }
            }
        }
        let undo = self.undo.take().unwrap_or_default();
        match failed {
            None => Outcome::Multi(results),
            Some((at, err)) => {
                self.roll_back(undo);
                changes.truncate(mark);
                Outcome::Multi(
                    (0..ops.len())
                        .map(|i| {
                            OpResult::Error(match i.cmp(&at) {
                                std::cmp::Ordering::Less => 0,
                                std::cmp::Ordering::Equal => err.code(),
                                std::cmp::Ordering::Greater => ErrorCode::RuntimeInconsistency.code(),
                            })
                        })
                        .collect(),
                )
            }
        }
    }

    /// Puts every node a failed multi touched back as it was: state restored in place, nodes
    /// it created removed (deepest first), nodes it deleted linked in again (parents first).
    fn roll_back(&mut self, undo: Vec<(String, Option<Node>)>) {
        let depth = |p: &str| p.bytes().filter(|&b| b == b'/').count();
        let mut created = Vec::new();
        let mut deleted = Vec::new();
        for (p, before) in undo {
            match (before, self.store.find(&p)) {
                (Some(before), Some(id)) => {
                    self.track(&p, self.store.get(id).persisted().ephemeral_owner, false);
                    self.store.set(id, &before);
                    self.track(&p, before.stat.ephemeral_owner, true);
                }
                (Some(before), None) => deleted.push((p, before)),
                (None, Some(id)) => created.push((p, id)),
                (None, None) => {}
            }
        }
        created.sort_by_key(|(p, _)| std::cmp::Reverse(depth(p)));
        for (p, id) in created {
            let gone = self.store.remove(id);
            self.track(&p, gone.stat.ephemeral_owner, false);
        }
        deleted.sort_by_key(|(p, _)| depth(p));
        for (p, before) in deleted {
            let (parent, name) = path::split(&p).expect("a node's path");
            let parent = self.store.find(path::parent_key(parent)).expect("parents are restored first");
            self.store.insert(parent, name, &before);
            self.track(&p, before.stat.ephemeral_owner, true);
        }
    }

    fn apply_op(&mut self, ctx: &Ctx, o: &TxnOp, changes: &mut Vec<Change>) -> OpOutcome {
        match o {
            TxnOp::Create { opcode, path, data, acl, flags, ttl } => {
                self.create(ctx, *opcode, path, data, acl, *flags, *ttl, changes)
            }
            TxnOp::Delete { path, version } => self.delete(ctx, path, *version, changes),
            TxnOp::SetData { path, data, version } => self.set_data(ctx, path, data, *version, changes),
            TxnOp::SetAcl { path, acl, version } => self.set_acl(ctx, path, acl, *version),
            TxnOp::Check { path, version } => self.check(ctx, path, *version),
            TxnOp::DeleteContainer { path } => self.delete_container(ctx, path, changes),
            TxnOp::SetConfig { servers } => {
                let p = "/zookeeper/config";
                let data = format!("{servers}version={:x}", ctx.zxid).into_bytes();
                let id = self.store.find(p).ok_or(ErrorCode::NoNode)?;
                self.save(p);
                let node = self.store.get(id);
                let (mut st, acl) = (node.persisted(), node.acl_id());
                st.mtime = ctx.time;
                st.mzxid = ctx.zxid;
                // ZooKeeper writes the config node with version -1 each time.
                st.version = -1;
                self.store.set_parts(id, &st, Some(&data), acl);
                let node = self.store.get(id);
                changes.push(Change { path: p.to_string(), kind: ChangeKind::DataChanged, acl: node.acl().clone() });
                Ok(Outcome::Config { data, stat: node.stat() })
            }
            TxnOp::Error(code) => Err(*code),
            TxnOp::CreateSession { .. } | TxnOp::CloseSession | TxnOp::Multi(_) => Err(ErrorCode::Unimplemented),
        }
    }

    fn check_version(current: i32, expected: i32) -> Result<i32, ErrorCode> {
        if expected != -1 && expected != current {
            return Err(ErrorCode::BadVersion);
        }
        Ok(current.wrapping_add(1))
    }

    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        ctx: &Ctx,
        opcode: i32,
        req_path: &str,
        data: &Option<Vec<u8>>,
        acl_in: &[Acl],
        flags: i32,
        ttl: i64,
        changes: &mut Vec<Change>,
    ) -> OpOutcome {
        let mode = CreateMode::from_flag(flags).ok_or(ErrorCode::BadArguments)?;
        if mode.is_ttl() {
            if !self.config.ttl_enabled {
                return Err(ErrorCode::Unimplemented);
            }
            if ttl <= 0 || ttl > MAX_TTL {
                return Err(ErrorCode::BadArguments);
            }
        } else if ttl >= 0 {
            return Err(ErrorCode::BadArguments);
        } else if opcode == op::CREATE_TTL {
            // ZooKeeper cannot encode a TTL node without a TTL and fails in preparation.
            return Err(ErrorCode::MarshallingError);
        }
        if mode.is_ephemeral() && !self.sessions.contains_key(&ctx.session) {
            return Err(ErrorCode::SessionExpired);
        }
        if req_path.contains('\0') {
            return Err(ErrorCode::BadArguments);
        }
        let (parent, _) = path::split(req_path).ok_or(ErrorCode::BadArguments)?;
        let parent = path::parent_key(parent).to_string();
        let acl_list = acl::fixup_acl(ctx.auth, acl_in, self.config.x509_enabled)?;
        let parent_id = self.store.find(&parent).ok_or(ErrorCode::NoNode)?;
        let parent_node = self.store.get(parent_id);
        acl::check(parent_node.acl(), perms::CREATE, ctx.auth)?;
        let parent_stat = parent_node.persisted();
        let full = if mode.is_sequential() {
            format!("{req_path}{}", format_sequence(parent_stat.cversion))
        } else {
            req_path.to_string()
        };
        if !path::is_valid(&full) {
            return Err(ErrorCode::BadArguments);
        }
        let (_, child) = path::split(&full).expect("validated");
        if self.store.child(parent_id, child).is_some() {
            return Err(ErrorCode::NodeExists);
        }
        if let NodeKind::Ephemeral(_) = self.kind(parent_stat.ephemeral_owner) {
            return Err(ErrorCode::NoChildrenForEphemerals);
        }
        self.check_quota(&full, None, data.as_ref().map_or(0, |d| d.len() as i64), 1)?;
        let owner = match opcode {
            op::CREATE_CONTAINER => CONTAINER_OWNER,
            op::CREATE_TTL if mode.is_ttl() => EXTENDED_MASK | ttl,
            _ if mode.is_ephemeral() => ctx.session,
            _ => 0,
        };
        let acl = self.store.intern_acl(acl_list);
        let stat = StatPersisted {
            czxid: ctx.zxid,
            mzxid: ctx.zxid,
            ctime: ctx.time,
            mtime: ctx.time,
            version: 0,
            cversion: 0,
            aversion: 0,
            ephemeral_owner: owner,
            pzxid: ctx.zxid,
        };
        self.save(&parent);
        self.store.set_child_counters(parent_id, parent_stat.cversion.wrapping_add(1), ctx.zxid);
        self.save(&full);
        let id = self.store.insert_parts(parent_id, child, &stat, data.as_deref(), acl);
        self.track(&full, owner, true);
        let out_stat = self.store.get(id).stat();
        let child = child.to_string();
        if let Some(real) = parent.strip_prefix(quota::QUOTA_ROOT) {
            if child == quota::STAT_NODE {
                self.recount_quota(real);
            }
        }
        if let Some(prefix) = self.max_quota_prefix(&full) {
            self.update_quota_stat(&prefix, data.as_ref().map_or(0, |d| d.len() as i64), 1);
        }
        let parent_acl = self.store.get(parent_id).acl().clone();
        changes.push(Change { path: full.clone(), kind: ChangeKind::Created, acl: self.store.acl(acl).clone() });
        changes.push(Change { path: parent, kind: ChangeKind::ChildrenChanged, acl: parent_acl });
        Ok(Outcome::Created { path: full, stat: out_stat })
    }

    fn delete(&mut self, ctx: &Ctx, p: &str, version: i32, changes: &mut Vec<Change>) -> OpOutcome {
        let (parent, _) = path::split(p).ok_or(ErrorCode::BadArguments)?;
        if p.contains('\0') || is_special_path(p) {
            return Err(ErrorCode::BadArguments);
        }
        let parent = self.node(path::parent_key(parent)).ok_or(ErrorCode::NoNode)?;
        acl::check(parent.acl(), perms::DELETE, ctx.auth)?;
        let node = self.node(p).ok_or(ErrorCode::NoNode)?;
        Self::check_version(node.persisted().version, version)?;
        if node.num_children() > 0 {
            return Err(ErrorCode::NotEmpty);
        }
        self.delete_node(ctx, p, changes)?;
        Ok(Outcome::Deleted)
    }

    fn delete_container(&mut self, ctx: &Ctx, p: &str, changes: &mut Vec<Change>) -> OpOutcome {
        if p.contains('\0') || is_special_path(p) || path::split(p).is_none() {
            return Err(ErrorCode::BadArguments);
        }
        let node = self.node(p).ok_or(ErrorCode::NoNode)?;
        if node.num_children() > 0 {
            return Err(ErrorCode::NotEmpty);
        }
        if !matches!(self.kind(node.persisted().ephemeral_owner), NodeKind::Container | NodeKind::Ttl(_)) {
            return Err(ErrorCode::BadVersion);
        }
        self.delete_node(ctx, p, changes)?;
        Ok(Outcome::Deleted)
    }

    /// `DataTree.deleteNode`: unlinks a node that passed its checks (or an ephemeral of a
    /// closing session), keeping parent, indexes and quota usage in step.
    fn delete_node(&mut self, ctx: &Ctx, p: &str, changes: &mut Vec<Change>) -> Result<(), ErrorCode> {
        let (parent, child) = path::split(p).ok_or(ErrorCode::NoNode)?;
        let parent = path::parent_key(parent).to_string();
        let parent_id = self.store.find(&parent).ok_or(ErrorCode::NoNode)?;
        let id = self.store.child(parent_id, child).ok_or(ErrorCode::NoNode)?;
        self.save(&parent);
        let parent_stat = self.store.get(parent_id).persisted();
        self.store.set_child_counters(parent_id, parent_stat.cversion, parent_stat.pzxid.max(ctx.zxid));
        self.save(p);
        let node = self.store.remove(id);
        self.track(p, node.stat.ephemeral_owner, false);
        if let Some(prefix) = self.max_quota_prefix(p) {
            self.update_quota_stat(&prefix, -node.data.as_ref().map_or(0, |d| d.len() as i64), -1);
        }
        let parent_acl = self.store.get(parent_id).acl().clone();
        changes.push(Change { path: p.to_string(), kind: ChangeKind::Deleted, acl: self.store.acl(node.acl).clone() });
        changes.push(Change { path: parent, kind: ChangeKind::ChildrenChanged, acl: parent_acl });
        Ok(())
    }

    fn set_data(&mut self, ctx: &Ctx, p: &str, data: &Option<Vec<u8>>, version: i32, changes: &mut Vec<Change>) -> OpOutcome {
        if !path::is_valid(p) {
            return Err(ErrorCode::BadArguments);
        }
        let id = self.store.find(p).ok_or(ErrorCode::NoNode)?;
        let node = self.store.get(id);
        acl::check(node.acl(), perms::WRITE, ctx.auth)?;
        let old_len = node.data_len();
        let new_len = data.as_ref().map_or(0, |d| d.len() as i64);
        self.check_quota(p, Some(old_len), new_len, 0)?;
        let node = self.store.get(id);
        let (mut st, acl) = (node.persisted(), node.acl_id());
        st.version = Self::check_version(st.version, version)?;
        st.mtime = ctx.time;
        st.mzxid = ctx.zxid;
        self.save(p);
        self.store.set_parts(id, &st, data.as_deref(), acl);
        let node = self.store.get(id);
        let stat = node.stat();
        let acl = node.acl().clone();
        if let Some(prefix) = self.max_quota_prefix(p) {
            self.update_quota_stat(&prefix, new_len - old_len, 0);
        }
        changes.push(Change { path: p.to_string(), kind: ChangeKind::DataChanged, acl });
        Ok(Outcome::DataSet(stat))
    }

    fn set_acl(&mut self, ctx: &Ctx, p: &str, acl_in: &[Acl], version: i32) -> OpOutcome {
        if !path::is_valid(p) {
            return Err(ErrorCode::BadArguments);
        }
        let acl_list = acl::fixup_acl(ctx.auth, acl_in, self.config.x509_enabled)?;
        let id = self.store.find(p).ok_or(ErrorCode::NoNode)?;
        let node = self.store.get(id);
        acl::check(node.acl(), perms::ADMIN, ctx.auth)?;
        let mut st = node.persisted();
        st.aversion = Self::check_version(st.aversion, version)?;
        let acl = self.store.intern_acl(acl_list);
        self.save(p);
        self.store.set_meta(id, &st, acl);
        Ok(Outcome::AclSet(self.store.get(id).stat()))
    }

    fn check(&mut self, ctx: &Ctx, p: &str, version: i32) -> OpOutcome {
        if !path::is_valid(p) {
            return Err(ErrorCode::BadArguments);
        }
        let node = self.node(p).ok_or(ErrorCode::NoNode)?;
        acl::check(node.acl(), perms::READ, ctx.auth)?;
        Self::check_version(node.persisted().version, version)?;
        Ok(Outcome::Checked(node.stat()))
    }

    /// Remembers a node's state before a multi first changes it.
    fn save(&mut self, p: &str) {
        if let Some(undo) = &mut self.undo {
            if !undo.iter().any(|(q, _)| q == p) {
                undo.push((p.to_string(), self.store.find(p).map(|id| self.store.get(id).to_node())));
            }
        }
    }

    /// Keeps the ephemeral, container, TTL and quota indexes in step with a node at `p` with
    /// this owner appearing (`present`) or going.
    fn track(&mut self, p: &str, owner: i64, present: bool) {
        match self.kind(owner) {
            NodeKind::Persistent => {}
            NodeKind::Container => {
                if present {
                    self.containers.insert(p.to_string());
                } else {
                    self.containers.remove(p);
                }
            }
            NodeKind::Ttl(_) => {
                if present {
                    self.ttls.insert(p.to_string());
                } else {
                    self.ttls.remove(p);
                }
            }
            NodeKind::Ephemeral(s) => {
                if present {
                    self.ephemerals.entry(s).or_default().insert(p.to_string());
                } else if let Some(set) = self.ephemerals.get_mut(&s) {
                    set.remove(p);
                    if set.is_empty() {
                        self.ephemerals.remove(&s);
                    }
                }
            }
        }
        // A quota's limits node, `/zookeeper/quota<path>/zookeeper_limits`, makes <path> a quota root.
        let real =
            p.strip_prefix(quota::QUOTA_ROOT).and_then(|r| r.strip_suffix(quota::LIMIT_NODE)).and_then(|r| r.strip_suffix('/'));
        if let Some(real) = real {
            if present {
                self.quota_roots.insert(real.to_string());
            } else {
                self.quota_roots.remove(real);
            }
        }
    }

    /// The deepest path with a quota that is `p` or an ancestor of it (never "/").
    pub fn max_quota_prefix(&self, p: &str) -> Option<String> {
        if self.quota_roots.is_empty() {
            return None;
        }
        let mut cur = p;
        loop {
            if cur != "/" && !cur.is_empty() && self.quota_roots.contains(cur) {
                return Some(cur.to_string());
            }
            match cur.rfind('/') {
                Some(0) | None => return None,
                Some(i) => cur = &cur[..i],
            }
        }
    }

    /// Rewrites the usage in a quota's stat node; `save`d first when `undoable`.
    fn write_quota_stat(&mut self, prefix: &str, undoable: bool, usage: impl FnOnce(&mut StatsTrack)) {
        let sp = quota::stat_path(prefix);
        let Some(id) = self.store.find(&sp) else { return };
        if undoable {
            self.save(&sp);
        }
        let node = self.store.get(id);
        let mut st = StatsTrack::parse_lenient(node.data());
        usage(&mut st);
        let (stat, acl) = (node.persisted(), node.acl_id());
        self.store.set_parts(id, &stat, Some(st.to_string().as_bytes()), acl);
    }

    fn update_quota_stat(&mut self, prefix: &str, bytes_diff: i64, count_diff: i64) {
        self.write_quota_stat(prefix, true, |st| {
            st.set("count", st.count() + count_diff);
            st.set("bytes", st.bytes() + bytes_diff);
        });
    }

    fn recount_quota(&mut self, real: &str) {
        let (mut count, mut bytes) = (0i64, 0i64);
        if let Some(id) = self.store.find(real) {
            self.store.walk(id, real, |_, n| {
                count += 1;
                bytes += n.data_len();
            });
        }
        self.write_quota_stat(real, false, |st| {
            *st = StatsTrack::default();
            st.set("count", count);
            st.set("bytes", bytes);
        });
    }

    /// `ZooKeeperServer.checkQuota`: only hard limits refuse, and only with `enforceQuota`.
    fn check_quota(&self, p: &str, old_len: Option<i64>, new_len: i64, count_diff: i64) -> Result<(), ErrorCode> {
        if !self.config.enforce_quota {
            return Ok(());
        }
        let Some(prefix) = self.max_quota_prefix(p) else { return Ok(()) };
        let bytes_diff = new_len - old_len.unwrap_or(0);
        let Some(limit_node) = self.node(&quota::limit_path(&prefix)) else { return Ok(()) };
        let limits = StatsTrack::parse_lenient(limit_node.data());
        let check_count = count_diff != 0 && (limits.count() > -1 || limits.get("countHardLimit") > -1);
        let check_bytes = bytes_diff != 0 && (limits.bytes() > -1 || limits.get("byteHardLimit") > -1);
        if !check_count && !check_bytes {
            return Ok(());
        }
        let Some(stat_node) = self.node(&quota::stat_path(&prefix)) else { return Ok(()) };
        let current = StatsTrack::parse_lenient(stat_node.data());
        if check_count && limits.get("countHardLimit") > -1 && current.count() + count_diff > limits.get("countHardLimit") {
            return Err(ErrorCode::QuotaExceeded);
        }
        if check_bytes && limits.get("byteHardLimit") > -1 && current.bytes() + bytes_diff > limits.get("byteHardLimit") {
            return Err(ErrorCode::QuotaExceeded);
        }
        Ok(())
    }
}

fn multi_result(o: &TxnOp, outcome: Outcome) -> OpResult {
    match (o, outcome) {
        (TxnOp::Create { opcode: op::CREATE, .. }, Outcome::Created { path, .. }) => OpResult::Create(path),
        (_, Outcome::Created { path, stat }) => OpResult::Create2(path, stat),
        (_, Outcome::Deleted) => OpResult::Delete,
        (_, Outcome::DataSet(stat)) => OpResult::SetData(stat),
        (_, Outcome::Checked(_)) => OpResult::Check,
        _ => OpResult::Error(ErrorCode::Unimplemented.code()),
    }
}

/// Java's `String.format("%010d", cversion)`: ten digits, a minus sign counted in the width.
pub fn format_sequence(n: i32) -> String {
    if n < 0 {
        format!("-{:09}", -(n as i64))
    } else {
        format!("{n:010}")
    }
}

/// "/", "/zookeeper", "/zookeeper/quota" and "/zookeeper/config" cannot be deleted.
pub fn is_special_path(p: &str) -> bool {
    matches!(p, "/" | "/zookeeper" | "/zookeeper/quota" | "/zookeeper/config")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(session: i64, op: TxnOp) -> Txn {
        Txn { session, time: 1000, auth: vec![], op }
    }

    fn create(path: &str, flags: i32) -> TxnOp {
        TxnOp::Create { opcode: op::CREATE2, path: path.into(), data: Some(b"v".to_vec()), acl: acl::open_acl(), flags, ttl: -1 }
    }

    #[test]
    fn a_failed_multi_leaves_the_tree_as_it_was() {
        let mut t = DataTree::new(TreeConfig::default());
        let mut zxid = 0;
        let mut apply = |t: &mut DataTree, op: TxnOp| {
            zxid += 1;
            t.apply(zxid, &txn(7, op))
        };
        apply(&mut t, TxnOp::CreateSession { timeout: 4000, passwd: vec![0; 16] });
        for p in ["/x", "/x/y", "/z", "/q"] {
            apply(&mut t, create(p, 0));
        }
        apply(&mut t, create("/q/e", 1));
        let before = t.digest();
        let ops = vec![
            create("/a", 0),
            create("/a/b", 0),
            create("/a/b/s-", 2),
            TxnOp::Delete { path: "/x/y".into(), version: -1 },
            TxnOp::Delete { path: "/x".into(), version: -1 },
            TxnOp::Delete { path: "/q/e".into(), version: -1 },
            create("/q/e", 0),
            create("/x", 0),
            TxnOp::SetData { path: "/z".into(), data: Some(b"changed".to_vec()), version: -1 },
            TxnOp::Check { path: "/z".into(), version: 99 },
        ];
        let out = apply(&mut t, TxnOp::Multi(ops));
        assert!(matches!(out.result, Ok(Outcome::Multi(ref r)) if r.iter().all(|x| matches!(x, OpResult::Error(_)))));
        assert!(out.changes.is_empty());
        assert_eq!(t.digest(), before);
        assert_eq!(t.node("/x").unwrap().child_names(), vec!["y".to_string()]);
        assert_eq!(t.ephemerals(7), vec!["/q/e".to_string()]);
        assert!(t.node("/a").is_none());
        // The same multi without the failing check commits.
        let ops = vec![
            create("/a", 0),
            TxnOp::Delete { path: "/x/y".into(), version: -1 },
            TxnOp::Delete { path: "/x".into(), version: -1 },
        ];
        assert!(
            matches!(apply(&mut t, TxnOp::Multi(ops)).result, Ok(Outcome::Multi(ref r)) if !r.iter().any(|x| matches!(x, OpResult::Error(_))))
        );
        assert!(t.node("/x").is_none() && t.node("/a").is_some());
        assert_eq!(t.node("/").unwrap().stat().num_children, 4);
    }
}
