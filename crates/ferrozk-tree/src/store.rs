//! Where znodes live: a slot per node in one arena, found through a hash table keyed by
//! (parent slot, name).
//!
//! A znode of 100 bytes cost ~470 bytes when each node was a boxed struct under its full path
//! in a hash map, with its name again in its parent's `BTreeSet` (bench/README.md). Here a node
//! is a 40-byte slot (links, child count, the Stat fields a child's create or delete changes) and
//! one allocation with its name, the rest of its Stat (varints), its ACL and its data. Full paths are not
//! stored; siblings are linked through their slots; the index holds 4-byte slot numbers.

use std::alloc::{self, Layout};
use std::hash::BuildHasher;
use std::ptr::NonNull;
use std::sync::Arc;

use ferrozk_proto::{Acl, Stat};
use hashbrown::HashTable;

use crate::tree::{client_visible_owner, FastMap, StatPersisted};

/// The root's slot; it always exists.
pub const ROOT: u32 = 0;
const NONE: u32 = u32::MAX;

/// A node's own state, detached from the tree: what a multi saves to roll back, what a
/// snapshot record holds. Children are not part of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub data: Option<Vec<u8>>,
    /// An index into the store's ACL table ([`Store::intern_acl`]).
    pub acl: u32,
    pub stat: StatPersisted,
}

struct Slot {
    pzxid: i64,
    /// `None` marks a free slot.
    blob: Option<Blob>,
    parent: u32,
    first_child: u32,
    next: u32,
    prev: u32,
    num_children: u32,
    cversion: i32,
}

pub struct Store {
    slots: Vec<Slot>,
    /// Free slots, chained through `next`.
    free: u32,
    live: usize,
    index: HashTable<u32>,
    hasher: foldhash::fast::FixedState,
    acls: Vec<Arc<Vec<Acl>>>,
    acl_ids: FastMap<Vec<Acl>, u32>,
}

impl Store {
    /// A store holding only the root, with `root` as its state.
    pub fn new(root: &Node) -> Store {
        let mut s = Store {
            slots: Vec::new(),
            free: NONE,
            live: 0,
            index: HashTable::new(),
            hasher: foldhash::fast::FixedState::with_seed(0x5eed_f00d),
            acls: Vec::new(),
            acl_ids: FastMap::default(),
        };
        s.slots.push(Slot {
            pzxid: root.stat.pzxid,
            blob: Some(encode("", &root.stat, root.data.as_deref(), root.acl)),
            parent: NONE,
            first_child: NONE,
            next: NONE,
            prev: NONE,
            num_children: 0,
            cversion: root.stat.cversion,
        });
        s.live = 1;
        s
    }

    /// Drops every node but the root, whose state becomes `root`; ACLs stay interned.
    pub fn clear(&mut self, root: &Node) {
        let acls = (std::mem::take(&mut self.acls), std::mem::take(&mut self.acl_ids));
        *self = Store::new(root);
        (self.acls, self.acl_ids) = acls;
    }

    /// Room for `n` more nodes without growing the arena or the index.
    pub fn reserve(&mut self, n: usize) {
        self.slots.reserve(n);
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index.reserve(n, |&id| hash_of(hasher, &slots[id as usize]));
    }

    /// Live nodes, the root included.
    pub fn live(&self) -> usize {
        self.live
    }

    pub fn intern_acl(&mut self, acl: Vec<Acl>) -> u32 {
        if let Some(&id) = self.acl_ids.get(&acl) {
            return id;
        }
        let id = self.acls.len() as u32;
        self.acls.push(Arc::new(acl.clone()));
        self.acl_ids.insert(acl, id);
        id
    }

    pub fn acl(&self, id: u32) -> &Arc<Vec<Acl>> {
        &self.acls[id as usize]
    }

    /// The node at an absolute path ("" and "/" are the root).
    pub fn find(&self, path: &str) -> Option<u32> {
        if path.is_empty() {
            return Some(ROOT);
        }
        let rest = path.strip_prefix('/')?;
        if rest.is_empty() {
            return Some(ROOT);
        }
        let mut id = ROOT;
        for name in rest.split('/') {
            id = self.child(id, name)?;
        }
        Some(id)
    }

    pub fn child(&self, parent: u32, name: &str) -> Option<u32> {
        let h = self.hasher.hash_one((parent, name.as_bytes()));
        self.index
            .find(h, |&id| {
                let s = &self.slots[id as usize];
                s.parent == parent && s.blob.as_ref().is_some_and(|b| name_of(b.bytes()) == name.as_bytes())
            })
            .copied()
    }

    pub fn get(&self, id: u32) -> NodeRef<'_> {
        NodeRef { store: self, id }
    }

    /// Adds a node under `parent`, which must be live; `name` must not be taken there.
    pub fn insert(&mut self, parent: u32, name: &str, node: &Node) -> u32 {
        self.insert_parts(parent, name, &node.stat, node.data.as_deref(), node.acl)
    }

    pub fn insert_parts(&mut self, parent: u32, name: &str, stat: &StatPersisted, data: Option<&[u8]>, acl: u32) -> u32 {
        let first = self.slots[parent as usize].first_child;
        let slot = Slot {
            pzxid: stat.pzxid,
            blob: Some(encode(name, stat, data, acl)),
            parent,
            first_child: NONE,
            next: first,
            prev: NONE,
            num_children: 0,
            cversion: stat.cversion,
        };
        let id = if self.free != NONE {
            let id = self.free;
            self.free = self.slots[id as usize].next;
            self.slots[id as usize] = slot;
            id
        } else {
            self.slots.push(slot);
            (self.slots.len() - 1) as u32
        };
        if first != NONE {
            self.slots[first as usize].prev = id;
        }
        let p = &mut self.slots[parent as usize];
        p.first_child = id;
        p.num_children += 1;
        self.live += 1;
        let h = hash_of(&self.hasher, &self.slots[id as usize]);
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index.insert_unique(h, id, |&i| hash_of(hasher, &slots[i as usize]));
        id
    }

    /// Takes a childless node out and returns its state.
    pub fn remove(&mut self, id: u32) -> Node {
        debug_assert!(id != ROOT && self.slots[id as usize].num_children == 0);
        let node = self.get(id).to_node();
        let h = hash_of(&self.hasher, &self.slots[id as usize]);
        if let Ok(e) = self.index.find_entry(h, |&i| i == id) {
            e.remove();
        }
        let (parent, next, prev) = {
            let s = &self.slots[id as usize];
            (s.parent, s.next, s.prev)
        };
        if prev != NONE {
            self.slots[prev as usize].next = next;
        } else {
            self.slots[parent as usize].first_child = next;
        }
        if next != NONE {
            self.slots[next as usize].prev = prev;
        }
        self.slots[parent as usize].num_children -= 1;
        let s = &mut self.slots[id as usize];
        s.blob = None;
        s.next = self.free;
        self.free = id;
        self.live -= 1;
        node
    }

    /// Replaces a node's state, keeping its place and children.
    pub fn set(&mut self, id: u32, node: &Node) {
        self.set_parts(id, &node.stat, node.data.as_deref(), node.acl);
    }

    pub fn set_parts(&mut self, id: u32, stat: &StatPersisted, data: Option<&[u8]>, acl: u32) {
        let s = &mut self.slots[id as usize];
        let blob = encode_with_name(s.blob.as_ref().map_or(&b""[..], |b| name_of(b.bytes())), stat, data, acl);
        s.blob = Some(blob);
        s.pzxid = stat.pzxid;
        s.cversion = stat.cversion;
    }

    /// Replaces a node's Stat and ACL, keeping its data.
    pub fn set_meta(&mut self, id: u32, stat: &StatPersisted, acl: u32) {
        let s = &mut self.slots[id as usize];
        let old = s.blob.take().expect("a live node");
        s.blob = Some(encode_with_name(name_of(old.bytes()), stat, decode(old.bytes()).data, acl));
        s.pzxid = stat.pzxid;
        s.cversion = stat.cversion;
    }

    /// What a child's create or delete changes in its parent.
    pub fn set_child_counters(&mut self, id: u32, cversion: i32, pzxid: i64) {
        let s = &mut self.slots[id as usize];
        s.cversion = cversion;
        s.pzxid = pzxid;
    }

    /// Visits every node below and including `from` in pre-order with its full path.
    pub fn walk(&self, from: u32, from_path: &str, mut visit: impl FnMut(&str, NodeRef<'_>)) {
        let mut path = String::from(from_path);
        let mut stack = vec![(from, path.len())];
        let base = path.len();
        while let Some((id, parent_len)) = stack.pop() {
            let node = self.get(id);
            if id != from {
                path.truncate(parent_len);
                if !path.ends_with('/') {
                    path.push('/');
                }
                path.push_str(node.name());
            } else {
                path.truncate(base);
            }
            visit(&path, node);
            let len = path.len();
            stack.extend(node.child_ids().map(|c| (c, len)));
        }
    }
}

fn hash_of(hasher: &foldhash::fast::FixedState, slot: &Slot) -> u64 {
    let name = slot.blob.as_ref().map_or(&b""[..], |b| name_of(b.bytes()));
    hasher.hash_one((slot.parent, name))
}

/// A live node in the store.
#[derive(Clone, Copy)]
pub struct NodeRef<'a> {
    store: &'a Store,
    id: u32,
}

impl<'a> NodeRef<'a> {
    fn slot(&self) -> &'a Slot {
        &self.store.slots[self.id as usize]
    }

    fn decoded(&self) -> Decoded<'a> {
        decode(self.slot().blob.as_ref().expect("a live node").bytes())
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn name(&self) -> &'a str {
        let name = name_of(self.slot().blob.as_ref().expect("a live node").bytes());
        // Blobs are written only by `encode`, from a &str.
        std::str::from_utf8(name).unwrap_or_default()
    }

    pub fn data(&self) -> Option<&'a [u8]> {
        self.decoded().data
    }

    pub fn data_len(&self) -> i64 {
        self.data().map_or(0, |d| d.len() as i64)
    }

    pub fn acl_id(&self) -> u32 {
        self.decoded().acl
    }

    pub fn acl(&self) -> &'a Arc<Vec<Acl>> {
        self.store.acl(self.acl_id())
    }

    pub fn num_children(&self) -> usize {
        self.slot().num_children as usize
    }

    pub fn persisted(&self) -> StatPersisted {
        let d = self.decoded();
        let s = self.slot();
        StatPersisted {
            czxid: d.czxid,
            mzxid: d.mzxid,
            ctime: d.ctime,
            mtime: d.mtime,
            version: d.version,
            cversion: s.cversion,
            aversion: d.aversion,
            ephemeral_owner: d.owner,
            pzxid: s.pzxid,
        }
    }

    /// The Stat clients see.
    pub fn stat(&self) -> Stat {
        let d = self.decoded();
        let s = self.slot();
        let children = s.num_children as i32;
        Stat {
            czxid: d.czxid,
            mzxid: d.mzxid,
            ctime: d.ctime,
            mtime: d.mtime,
            version: d.version,
            // The stored cversion counts creates (it names sequential children); clients see
            // creates plus deletes, which is 2 * creates - children (`DataNode.copyStat`).
            cversion: s.cversion.wrapping_mul(2).wrapping_sub(children),
            aversion: d.aversion,
            ephemeral_owner: client_visible_owner(d.owner),
            data_length: d.data.map_or(0, |x| x.len() as i32),
            num_children: children,
            pzxid: s.pzxid,
        }
    }

    pub fn to_node(&self) -> Node {
        Node { data: self.data().map(<[u8]>::to_vec), acl: self.acl_id(), stat: self.persisted() }
    }

    pub fn child_ids(&self) -> impl Iterator<Item = u32> + 'a {
        let slots = &self.store.slots;
        let mut at = self.slot().first_child;
        std::iter::from_fn(move || {
            let id = at;
            (id != NONE).then(|| {
                at = slots[id as usize].next;
                id
            })
        })
    }

    pub fn children(&self) -> impl Iterator<Item = NodeRef<'a>> + 'a {
        let store = self.store;
        self.child_ids().map(move |id| NodeRef { store, id })
    }

    /// Child names in byte order, as `getChildren` answers them.
    pub fn child_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.children().map(|c| c.name().to_string()).collect();
        names.sort_unstable();
        names
    }
}

/// A node's name, the Stat fields not kept in its slot, its ACL and its data, in one
/// allocation. Layout: varint name length, name, then zigzag varints version, aversion, mzxid,
/// mzxid - czxid, mtime, mtime - ctime, ephemeralOwner, then varints ACL index and (data
/// length + 1) (0: no data), and the data. The differences are nearly always 0 or small, so a typical Stat takes
/// about 15 bytes instead of 60.
fn encode(name: &str, st: &StatPersisted, data: Option<&[u8]>, acl: u32) -> Blob {
    encode_with_name(name.as_bytes(), st, data, acl)
}

fn encode_with_name(name: &[u8], st: &StatPersisted, data: Option<&[u8]>, acl: u32) -> Blob {
    let mut head = [0u8; 10 * 10];
    let mut n = 0;
    let mut put = |v: u64| {
        let mut v = v;
        while v >= 0x80 {
            head[n] = (v as u8) | 0x80;
            v >>= 7;
            n += 1;
        }
        head[n] = v as u8;
        n += 1;
        n
    };
    let name_end = put(name.len() as u64);
    let zz = |v: i64| ((v << 1) ^ (v >> 63)) as u64;
    put(zz(st.version as i64));
    put(zz(st.aversion as i64));
    put(zz(st.mzxid));
    put(zz(st.mzxid.wrapping_sub(st.czxid)));
    put(zz(st.mtime));
    put(zz(st.mtime.wrapping_sub(st.ctime)));
    put(zz(st.ephemeral_owner));
    put(acl as u64);
    let n = put(data.map_or(0, |d| d.len() as u64 + 1));
    Blob::new(&[&head[..name_end], name, &head[name_end..n], data.unwrap_or_default()])
}

struct Decoded<'a> {
    version: i32,
    aversion: i32,
    mzxid: i64,
    czxid: i64,
    mtime: i64,
    ctime: i64,
    owner: i64,
    acl: u32,
    data: Option<&'a [u8]>,
}

fn varint(b: &[u8], at: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    while let Some(&byte) = b.get(*at) {
        *at += 1;
        v |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    v
}

fn name_of(b: &[u8]) -> &[u8] {
    let mut at = 0;
    let len = varint(b, &mut at) as usize;
    &b[at..at + len]
}

fn decode(b: &[u8]) -> Decoded<'_> {
    let mut at = 0;
    let name_len = varint(b, &mut at) as usize;
    at += name_len;
    let mut next = || {
        let v = varint(b, &mut at);
        ((v >> 1) as i64) ^ -((v & 1) as i64)
    };
    let version = next() as i32;
    let aversion = next() as i32;
    let mzxid = next();
    let czxid = mzxid.wrapping_sub(next());
    let mtime = next();
    let ctime = mtime.wrapping_sub(next());
    let owner = next();
    let acl = varint(b, &mut at) as u32;
    let tag = varint(b, &mut at) as usize;
    let data = (tag > 0).then(|| &b[at..at + tag - 1]);
    Decoded { version, aversion, mzxid, czxid, mtime, ctime, owner, acl, data }
}

/// Bytes behind one thin pointer, their length in front: 8 bytes in a slot where a `Box<[u8]>`
/// takes 16.
struct Blob(NonNull<u8>);

// A Blob owns its allocation and is immutable once made, like a Box<[u8]>.
unsafe impl Send for Blob {}
unsafe impl Sync for Blob {}

impl Blob {
    fn layout(len: usize) -> Layout {
        Layout::from_size_align(4 + len, 4).expect("a znode is far below isize::MAX bytes")
    }

    fn new(parts: &[&[u8]]) -> Blob {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let len32 = u32::try_from(len).expect("a znode is below 4 GiB (jute.maxbuffer)");
        let layout = Self::layout(len);
        // SAFETY: the layout is non-zero in size; the length goes in the first 4 (aligned)
        // bytes and exactly `len` bytes are copied behind them.
        unsafe {
            let p = alloc::alloc(layout);
            let Some(p) = NonNull::new(p) else { alloc::handle_alloc_error(layout) };
            p.as_ptr().cast::<u32>().write(len32);
            let mut at = p.as_ptr().add(4);
            for part in parts {
                std::ptr::copy_nonoverlapping(part.as_ptr(), at, part.len());
                at = at.add(part.len());
            }
            Blob(p)
        }
    }

    fn len(&self) -> usize {
        // SAFETY: `new` wrote the length at the start of the allocation.
        unsafe { self.0.as_ptr().cast::<u32>().read() as usize }
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `len` bytes follow the length, initialised by `new`, alive as long as self.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().add(4), self.len()) }
    }
}

impl Drop for Blob {
    fn drop(&mut self) {
        // SAFETY: allocated by `new` with this layout.
        unsafe { alloc::dealloc(self.0.as_ptr(), Self::layout(self.len())) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(data: Option<&[u8]>, czxid: i64) -> Node {
        Node {
            data: data.map(<[u8]>::to_vec),
            acl: 300,
            stat: StatPersisted {
                czxid,
                mzxid: czxid.wrapping_add(5),
                ctime: 1_700_000_000_000,
                mtime: 1_699_999_999_000,
                version: 3,
                cversion: 7,
                aversion: -1,
                ephemeral_owner: i64::MIN,
                pzxid: -2,
            },
        }
    }

    #[test]
    fn nodes_round_trip_and_are_found_by_path() {
        let mut s = Store::new(&node(Some(b""), 0));
        let a = s.insert(ROOT, "a", &node(Some(b"x"), 1));
        let b = s.insert(a, "b", &node(None, i64::MAX));
        let c = s.insert(a, "c\u{e9}", &node(Some(&[7; 300]), 3));
        assert_eq!(s.find("/a/b"), Some(b));
        assert_eq!(s.find("/a/c\u{e9}"), Some(c));
        assert_eq!(s.find("/"), Some(ROOT));
        assert_eq!(s.find(""), Some(ROOT));
        for missing in ["/a/", "/a//b", "/b", "a", "/a/b/c"] {
            assert_eq!(s.find(missing), None, "{missing}");
        }
        assert_eq!(s.get(b).to_node(), node(None, i64::MAX));
        assert_eq!(s.get(c).to_node(), node(Some(&[7; 300]), 3));
        assert_eq!(s.get(a).child_names(), vec!["b".to_string(), "c\u{e9}".to_string()]);
        assert_eq!(s.get(a).stat().num_children, 2);
        assert_eq!(s.live(), 4);
        assert_eq!(s.remove(b), node(None, i64::MAX));
        assert_eq!(s.find("/a/b"), None);
        assert_eq!(s.get(a).child_names(), vec!["c\u{e9}".to_string()]);
        // The freed slot is reused and the new node is found under its own name.
        let d = s.insert(ROOT, "d", &node(Some(b"d"), 9));
        assert_eq!(d, b);
        assert_eq!(s.find("/d"), Some(d));
        assert_eq!(s.get(d).name(), "d");
        s.set(d, &node(Some(b"changed"), 10));
        assert_eq!(s.get(d).data(), Some(&b"changed"[..]));
        assert_eq!(s.find("/d"), Some(d));
        let mut seen = Vec::new();
        s.walk(ROOT, "/", |p, _| seen.push(p.to_string()));
        seen.sort();
        assert_eq!(seen, ["/", "/a", "/a/c\u{e9}", "/d"]);
    }

    #[test]
    fn a_slot_stays_forty_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), 40);
    }

    #[test]
    fn many_siblings_unlink_from_anywhere_in_the_list() {
        let mut s = Store::new(&node(Some(b""), 0));
        let ids: Vec<u32> = (0..1000).map(|i| s.insert(ROOT, &format!("n{i}"), &node(Some(b"v"), i))).collect();
        for (i, id) in ids.iter().enumerate() {
            if i % 3 != 1 {
                s.remove(*id);
            }
        }
        let left: Vec<String> = (0..1000).filter(|i| i % 3 == 1).map(|i| format!("n{i}")).collect();
        let mut expect = left.clone();
        expect.sort();
        assert_eq!(s.get(ROOT).child_names(), expect);
        assert_eq!(s.get(ROOT).num_children(), left.len());
        for name in &left {
            assert!(s.find(&format!("/{name}")).is_some());
        }
        assert_eq!(s.find("/n0"), None);
    }
}
