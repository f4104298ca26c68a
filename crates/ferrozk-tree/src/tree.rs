//! The data tree and its one deterministic state transition, `apply`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use ferrozk_proto::codes::{op, perms};
use ferrozk_proto::{Acl, CreateMode, ErrorCode, Id, OpResult, Stat};

use crate::acl;
use crate::path;
use crate::quota::{self, StatsTrack};
use crate::txn::{Txn, TxnOp};
use crate::watch::ChangeKind;

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub data: Option<Vec<u8>>,
    pub acl: Arc<Vec<Acl>>,
    pub stat: StatPersisted,
    /// Child names. `Box<str>`: a third smaller than `String` in every B-tree slot.
    pub children: BTreeSet<Box<str>>,
}

impl Node {
    fn new(data: Option<Vec<u8>>, acl: Arc<Vec<Acl>>, stat: StatPersisted) -> Node {
        Node { data, acl, stat, children: BTreeSet::new() }
    }

    pub fn stat(&self) -> Stat {
        let s = &self.stat;
        Stat {
            czxid: s.czxid,
            mzxid: s.mzxid,
            ctime: s.ctime,
            mtime: s.mtime,
            version: s.version,
            // The stored cversion counts creates (it names sequential children); clients see
            // creates plus deletes, which is 2 * creates - children (`DataNode.copyStat`).
            cversion: s.cversion.wrapping_mul(2).wrapping_sub(self.children.len() as i32),
            aversion: s.aversion,
            ephemeral_owner: client_visible_owner(s.ephemeral_owner),
            data_length: self.data.as_ref().map_or(0, |d| d.len() as i32),
            num_children: self.children.len() as i32,
            pzxid: s.pzxid,
        }
    }

    pub fn data_len(&self) -> i64 {
        self.data.as_ref().map_or(0, |d| d.len() as i64)
    }
}

/// Clients see the owner of ephemerals only; containers and TTL nodes show 0
/// (`DataNode.getClientEphemeralOwner`).
fn client_visible_owner(owner: i64) -> i64 {
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
    Created { path: String, stat: Stat },
    Deleted,
    DataSet(Stat),
    AclSet(Stat),
    Checked(Stat),
    Multi(Vec<OpResult>),
    SessionCreated,
    SessionClosed,
    /// A reconfig's answer: the new `/zookeeper/config` and its Stat.
    Config { data: Vec<u8>, stat: Stat },
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
    /// Nodes are boxed: the map's slots stay small (a 24-byte slot instead of 152 at a load
    /// factor that can be under a half), which was most of a znode's memory.
    nodes: FastMap<Box<str>, Box<Node>>,
    sessions: BTreeMap<i64, Session>,
    ephemerals: HashMap<i64, BTreeSet<String>>,
    containers: BTreeSet<String>,
    ttls: BTreeSet<String>,
    quota_roots: BTreeSet<String>,
    acl_cache: FastMap<Vec<Acl>, Arc<Vec<Acl>>>,
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

impl DataTree {
    pub fn new(config: TreeConfig) -> DataTree {
        let mut t = DataTree {
            nodes: FastMap::default(),
            sessions: BTreeMap::new(),
            ephemerals: HashMap::new(),
            containers: BTreeSet::new(),
            ttls: BTreeSet::new(),
            quota_roots: BTreeSet::new(),
            acl_cache: FastMap::default(),
            last_zxid: 0,
            config,
            undo: None,
        };
        let open = t.intern_acl(acl::open_acl());
        let empty = || Some(Vec::new());
        let mut root = Node::new(empty(), open.clone(), StatPersisted::default());
        root.children.insert("zookeeper".into());
        let mut proc = Node::new(empty(), open.clone(), StatPersisted::default());
        proc.children.insert("quota".into());
        proc.children.insert("config".into());
        // ZooKeeper sets the config node's ACL with version -1, which leaves aversion at -1.
        let config_node = Node::new(
            empty(),
            t.intern_acl(acl::read_acl()),
            StatPersisted { aversion: -1, ..Default::default() },
        );
        t.nodes.insert("/".into(), Box::new(root));
        t.nodes.insert("/zookeeper".into(), Box::new(proc));
        t.nodes.insert(quota::QUOTA_ROOT.into(), Box::new(Node::new(empty(), open, StatPersisted::default())));
        t.nodes.insert("/zookeeper/config".into(), Box::new(config_node));
        t
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
        let data = self.nodes.get("/zookeeper/config").and_then(|n| n.data.clone()).unwrap_or_default();
        String::from_utf8_lossy(&data)
            .lines()
            .filter_map(|l| l.strip_prefix("version="))
            .filter_map(|v| i64::from_str_radix(v.trim(), 16).ok())
            .last()
            .unwrap_or(0)
    }

    /// Records that log entry `zxid` was applied without changing the tree (a consensus entry
    /// or a `sync` barrier), so the tree's zxid stays the log position it reflects.
    pub fn set_last_zxid(&mut self, zxid: i64) {
        self.last_zxid = zxid;
    }

    /// The node at `path`; "" names the root too, as in ZooKeeper.
    pub fn node(&self, path: &str) -> Option<&Node> {
        self.nodes.get(if path.is_empty() { "/" } else { path }).map(|n| &**n)
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
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
        self.nodes.iter().map(|(p, n)| p.len() as u64 + n.data_len() as u64).sum()
    }

    /// A digest of the whole replicated state (every node's path, data, ACL and Stat, and the
    /// sessions), independent of map order: equal trees give equal digests on every server.
    pub fn digest(&self) -> u64 {
        fn fnv(h: &mut u64, bytes: &[u8]) {
            for b in bytes {
                *h ^= *b as u64;
                *h = h.wrapping_mul(0x100_0000_01b3);
            }
        }
        let mut paths: Vec<&Box<str>> = self.nodes.keys().collect();
        paths.sort();
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for p in paths {
            let n = &self.nodes[&**p];
            fnv(&mut h, p.as_bytes());
            fnv(&mut h, &[n.data.is_some() as u8]);
            fnv(&mut h, n.data.as_deref().unwrap_or_default());
            fnv(&mut h, &ferrozk_proto::jute::to_bytes(n.acl.as_ref()));
            fnv(&mut h, &ferrozk_proto::jute::to_bytes(&n.stat()));
        }
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
            return self.nodes.len();
        }
        let mut stack = vec![path.to_string()];
        let mut n = 0;
        while let Some(p) = stack.pop() {
            if let Some(node) = self.nodes.get(&*p) {
                for c in &node.children {
                    n += 1;
                    stack.push(path::join(&p, c));
                }
            }
        }
        n
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
            if let Some(n) = self.nodes.get(p.as_str()) {
                if n.children.is_empty() && n.stat.cversion > 0 {
                    out.push(p.clone());
                }
            }
        }
        for p in &self.ttls {
            if let Some(n) = self.nodes.get(p.as_str()) {
                if let NodeKind::Ttl(ttl) = self.kind(n.stat.ephemeral_owner) {
                    if n.children.is_empty() && ttl != 0 && now - n.stat.mtime > ttl {
                        out.push(p.clone());
                    }
                }
            }
        }
        out
    }

    pub(crate) fn intern(&mut self, acl: Vec<Acl>) -> Arc<Vec<Acl>> {
        self.intern_acl(acl)
    }

    pub(crate) fn clear_nodes(&mut self) {
        self.nodes.clear();
        self.quota_roots.clear();
    }

    pub(crate) fn insert_session(&mut self, id: i64, s: Session) {
        self.sessions.insert(id, s);
    }

    pub(crate) fn reserve_nodes(&mut self, n: usize) {
        self.nodes.reserve(n);
    }

    pub(crate) fn add_child(&mut self, parent: &str, child: &str) -> Option<()> {
        self.nodes.get_mut(parent)?.children.insert(child.into());
        Some(())
    }

    /// Puts a node read from a snapshot in place, with its indexes.
    pub(crate) fn load_node(&mut self, p: &str, node: Node) {
        self.put_node(p, Some(node));
    }

    /// After a snapshot is read: quota usage is recomputed from the tree, as ZooKeeper does.
    pub(crate) fn finish_load(&mut self, last_zxid: i64) {
        self.last_zxid = last_zxid;
        let roots: Vec<String> = self.quota_roots.iter().cloned().collect();
        for r in roots {
            self.recount_quota(&r);
        }
    }

    fn intern_acl(&mut self, acl: Vec<Acl>) -> Arc<Vec<Acl>> {
        if let Some(a) = self.acl_cache.get(&acl) {
            return a.clone();
        }
        let a = Arc::new(acl.clone());
        self.acl_cache.insert(acl, a.clone());
        a
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
                for (p, prev) in undo.into_iter().rev() {
                    self.put_node(&p, prev);
                }
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
                self.save(p);
                let node = self.nodes.get_mut(p).ok_or(ErrorCode::NoNode)?;
                node.data = Some(data.clone());
                node.stat.mtime = ctx.time;
                node.stat.mzxid = ctx.zxid;
                node.stat.version += 1;
                let stat = node.stat();
                changes.push(Change { path: p.to_string(), kind: ChangeKind::DataChanged, acl: node.acl.clone() });
                Ok(Outcome::Config { data, stat })
            }
            TxnOp::Error(code) => Err(*code),
            TxnOp::CreateSession { .. } | TxnOp::CloseSession | TxnOp::Multi(_) => Err(ErrorCode::Unimplemented),
        }
    }

    fn node_acl(&self, path: &str) -> Result<Arc<Vec<Acl>>, ErrorCode> {
        self.nodes.get(path).map(|n| n.acl.clone()).ok_or(ErrorCode::NoNode)
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
        let parent_node = self.nodes.get(&*parent).ok_or(ErrorCode::NoNode)?;
        acl::check(&parent_node.acl, perms::CREATE, ctx.auth)?;
        let parent_cversion = parent_node.stat.cversion;
        let full = if mode.is_sequential() {
            format!("{req_path}{}", format_sequence(parent_cversion))
        } else {
            req_path.to_string()
        };
        if !path::is_valid(&full) {
            return Err(ErrorCode::BadArguments);
        }
        if self.nodes.contains_key(&*full) {
            return Err(ErrorCode::NodeExists);
        }
        if let NodeKind::Ephemeral(_) = self.kind(parent_node.stat.ephemeral_owner) {
            return Err(ErrorCode::NoChildrenForEphemerals);
        }
        self.check_quota(&full, None, data.as_ref().map_or(0, |d| d.len() as i64), 1)?;
        let owner = match opcode {
            op::CREATE_CONTAINER => CONTAINER_OWNER,
            op::CREATE_TTL if mode.is_ttl() => EXTENDED_MASK | ttl,
            _ if mode.is_ephemeral() => ctx.session,
            _ => 0,
        };
        let acl = self.intern_acl(acl_list);
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
        let node = Node::new(data.clone(), acl.clone(), stat);
        let out_stat = node.stat();
        let (_, child) = path::split(&full).expect("validated");
        let child = child.to_string();
        self.save(&parent);
        let parent_acl = {
            let p = self.nodes.get_mut(&*parent).expect("checked");
            p.children.insert(child.as_str().into());
            let new_cversion = parent_cversion.wrapping_add(1);
            p.stat.cversion = new_cversion;
            p.stat.pzxid = ctx.zxid;
            p.acl.clone()
        };
        self.save(&full);
        self.put_node(&full, Some(node));
        if parent.starts_with(quota::QUOTA_ROOT) {
            let real = &parent[quota::QUOTA_ROOT.len()..];
            if child == quota::LIMIT_NODE {
                self.quota_roots.insert(real.to_string());
            }
            if child == quota::STAT_NODE {
                self.recount_quota(real);
            }
        }
        if let Some(prefix) = self.max_quota_prefix(&full) {
            self.update_quota_stat(&prefix, data.as_ref().map_or(0, |d| d.len() as i64), 1);
        }
        changes.push(Change { path: full.clone(), kind: ChangeKind::Created, acl });
        changes.push(Change { path: parent, kind: ChangeKind::ChildrenChanged, acl: parent_acl });
        Ok(Outcome::Created { path: full, stat: out_stat })
    }

    fn delete(&mut self, ctx: &Ctx, p: &str, version: i32, changes: &mut Vec<Change>) -> OpOutcome {
        let (parent, _) = path::split(p).ok_or(ErrorCode::BadArguments)?;
        if p.contains('\0') || is_special_path(p) {
            return Err(ErrorCode::BadArguments);
        }
        let parent_acl = self.node_acl(path::parent_key(parent))?;
        acl::check(&parent_acl, perms::DELETE, ctx.auth)?;
        let node = self.nodes.get(p).ok_or(ErrorCode::NoNode)?;
        Self::check_version(node.stat.version, version)?;
        if !node.children.is_empty() {
            return Err(ErrorCode::NotEmpty);
        }
        self.delete_node(ctx, p, changes)?;
        Ok(Outcome::Deleted)
    }

    fn delete_container(&mut self, ctx: &Ctx, p: &str, changes: &mut Vec<Change>) -> OpOutcome {
        if p.contains('\0') || is_special_path(p) || path::split(p).is_none() {
            return Err(ErrorCode::BadArguments);
        }
        let node = self.nodes.get(p).ok_or(ErrorCode::NoNode)?;
        if !node.children.is_empty() {
            return Err(ErrorCode::NotEmpty);
        }
        if !matches!(self.kind(node.stat.ephemeral_owner), NodeKind::Container | NodeKind::Ttl(_)) {
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
        if !self.nodes.contains_key(&*parent) || !self.nodes.contains_key(p) {
            return Err(ErrorCode::NoNode);
        }
        self.save(&parent);
        let parent_acl = {
            let pn = self.nodes.get_mut(&*parent).expect("checked");
            pn.children.remove(child);
            if ctx.zxid > pn.stat.pzxid {
                pn.stat.pzxid = ctx.zxid;
            }
            pn.acl.clone()
        };
        self.save(p);
        let node = self.put_node(p, None).expect("checked");
        if parent.starts_with("/zookeeper") && child == quota::LIMIT_NODE && parent.starts_with(quota::QUOTA_ROOT) {
            self.quota_roots.remove(&parent[quota::QUOTA_ROOT.len()..]);
        }
        if let Some(prefix) = self.max_quota_prefix(p) {
            self.update_quota_stat(&prefix, -node.data_len(), -1);
        }
        changes.push(Change { path: p.to_string(), kind: ChangeKind::Deleted, acl: node.acl.clone() });
        changes.push(Change { path: parent, kind: ChangeKind::ChildrenChanged, acl: parent_acl });
        Ok(())
    }

    fn set_data(&mut self, ctx: &Ctx, p: &str, data: &Option<Vec<u8>>, version: i32, changes: &mut Vec<Change>) -> OpOutcome {
        if !path::is_valid(p) {
            return Err(ErrorCode::BadArguments);
        }
        let node = self.nodes.get(p).ok_or(ErrorCode::NoNode)?;
        acl::check(&node.acl, perms::WRITE, ctx.auth)?;
        let old_len = node.data_len();
        let new_len = data.as_ref().map_or(0, |d| d.len() as i64);
        self.check_quota(p, Some(old_len), new_len, 0)?;
        let node = self.nodes.get(p).expect("checked");
        let new_version = Self::check_version(node.stat.version, version)?;
        self.save(p);
        let node = self.nodes.get_mut(p).expect("checked");
        node.data = data.clone();
        node.stat.mtime = ctx.time;
        node.stat.mzxid = ctx.zxid;
        node.stat.version = new_version;
        let stat = node.stat();
        let acl = node.acl.clone();
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
        let node = self.nodes.get(p).ok_or(ErrorCode::NoNode)?;
        acl::check(&node.acl, perms::ADMIN, ctx.auth)?;
        let new_version = Self::check_version(node.stat.aversion, version)?;
        let acl = self.intern_acl(acl_list);
        self.save(p);
        let node = self.nodes.get_mut(p).expect("checked");
        node.stat.aversion = new_version;
        node.acl = acl;
        Ok(Outcome::AclSet(node.stat()))
    }

    fn check(&mut self, ctx: &Ctx, p: &str, version: i32) -> OpOutcome {
        if !path::is_valid(p) {
            return Err(ErrorCode::BadArguments);
        }
        let node = self.nodes.get(p).ok_or(ErrorCode::NoNode)?;
        acl::check(&node.acl, perms::READ, ctx.auth)?;
        Self::check_version(node.stat.version, version)?;
        Ok(Outcome::Checked(node.stat()))
    }

    /// Remembers a node's state before a multi first changes it.
    fn save(&mut self, p: &str) {
        if let Some(undo) = &mut self.undo {
            if !undo.iter().any(|(q, _)| q == p) {
                undo.push((p.to_string(), self.nodes.get(p).map(|n| Node::clone(n))));
            }
        }
    }

    /// The one place nodes enter or leave the map, keeping the ephemeral, container and TTL
    /// indexes in step. Returns the node that was there.
    fn put_node(&mut self, p: &str, node: Option<Node>) -> Option<Node> {
        let old = match node {
            Some(n) => {
                let owner = n.stat.ephemeral_owner;
                let old = self.nodes.insert(p.into(), Box::new(n)).map(|b| *b);
                if let Some(o) = &old {
                    self.unindex(p, o.stat.ephemeral_owner);
                }
                self.index(p, owner);
                old
            }
            None => {
                let old = self.nodes.remove(p).map(|b| *b);
                if let Some(o) = &old {
                    self.unindex(p, o.stat.ephemeral_owner);
                }
                old
            }
        };
        if p.starts_with(quota::QUOTA_ROOT) && p.ends_with(quota::LIMIT_NODE) {
            let real = &p[quota::QUOTA_ROOT.len()..p.len() - quota::LIMIT_NODE.len() - 1];
            if self.nodes.contains_key(p) {
                self.quota_roots.insert(real.to_string());
            } else {
                self.quota_roots.remove(real);
            }
        }
        old
    }

    fn index(&mut self, p: &str, owner: i64) {
        match self.kind(owner) {
            NodeKind::Persistent => {}
            NodeKind::Container => {
                self.containers.insert(p.to_string());
            }
            NodeKind::Ttl(_) => {
                self.ttls.insert(p.to_string());
            }
            NodeKind::Ephemeral(s) => {
                self.ephemerals.entry(s).or_default().insert(p.to_string());
            }
        }
    }

    fn unindex(&mut self, p: &str, owner: i64) {
        match self.kind(owner) {
            NodeKind::Persistent => {}
            NodeKind::Container => {
                self.containers.remove(p);
            }
            NodeKind::Ttl(_) => {
                self.ttls.remove(p);
            }
            NodeKind::Ephemeral(s) => {
                if let Some(set) = self.ephemerals.get_mut(&s) {
                    set.remove(p);
                    if set.is_empty() {
                        self.ephemerals.remove(&s);
                    }
                }
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

    fn update_quota_stat(&mut self, prefix: &str, bytes_diff: i64, count_diff: i64) {
        let sp = quota::stat_path(prefix);
        if !self.nodes.contains_key(&*sp) {
            return;
        }
        self.save(&sp);
        let n = self.nodes.get_mut(&*sp).expect("checked");
        let mut st = StatsTrack::parse(n.data.as_deref());
        st.set("count", st.count() + count_diff);
        st.set("bytes", st.bytes() + bytes_diff);
        n.data = Some(st.to_text().into_bytes());
    }

    fn recount_quota(&mut self, real: &str) {
        let (mut count, mut bytes) = (0i64, 0i64);
        let mut stack = vec![real.to_string()];
        while let Some(p) = stack.pop() {
            if let Some(n) = self.nodes.get(&*p) {
                count += 1;
                bytes += n.data_len();
                stack.extend(n.children.iter().map(|c| path::join(&p, c)));
            }
        }
        let sp = quota::stat_path(real);
        if let Some(n) = self.nodes.get_mut(&*sp) {
            let mut st = StatsTrack::default();
            st.set("count", count);
            st.set("bytes", bytes);
            n.data = Some(st.to_text().into_bytes());
        }
    }

    /// `ZooKeeperServer.checkQuota`: only hard limits refuse, and only with `enforceQuota`.
    fn check_quota(&self, p: &str, old_len: Option<i64>, new_len: i64, count_diff: i64) -> Result<(), ErrorCode> {
        if !self.config.enforce_quota {
            return Ok(());
        }
        let Some(prefix) = self.max_quota_prefix(p) else { return Ok(()) };
        let bytes_diff = new_len - old_len.unwrap_or(0);
        let Some(limit_node) = self.nodes.get(&*quota::limit_path(&prefix)) else { return Ok(()) };
        let limits = StatsTrack::parse(limit_node.data.as_deref());
        let check_count = count_diff != 0 && (limits.count() > -1 || limits.get("countHardLimit") > -1);
        let check_bytes = bytes_diff != 0 && (limits.bytes() > -1 || limits.get("byteHardLimit") > -1);
        if !check_count && !check_bytes {
            return Ok(());
        }
        let Some(stat_node) = self.nodes.get(&*quota::stat_path(&prefix)) else { return Ok(()) };
        let current = StatsTrack::parse(stat_node.data.as_deref());
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
