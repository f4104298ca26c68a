//! Watch bookkeeping, as ZooKeeper's `WatchManager` keeps it: one table for data (and exist)
//! watches, one for child watches, each mapping a path to its watchers with a mode per watcher.
//! Watches are local to the server holding the connection; a watcher is a connection id.

use std::collections::{HashMap, HashSet};

use ferrozk_proto::codes::{event, watcher_type};

pub type WatcherId = u64;

const STANDARD: u8 = 1;
const PERSISTENT: u8 = 2;
const RECURSIVE: u8 = 4;

/// What a write did to one path, in the order ZooKeeper triggers watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Created,
    Deleted,
    DataChanged,
    ChildrenChanged,
}

impl ChangeKind {
    pub fn event_type(self) -> i32 {
        match self {
            ChangeKind::Created => event::NODE_CREATED,
            ChangeKind::Deleted => event::NODE_DELETED,
            ChangeKind::DataChanged => event::NODE_DATA_CHANGED,
            ChangeKind::ChildrenChanged => event::NODE_CHILDREN_CHANGED,
        }
    }
}

#[derive(Default)]
struct Table {
    by_path: HashMap<String, HashMap<WatcherId, u8>>,
    by_watcher: HashMap<WatcherId, HashSet<String>>,
    recursive: usize,
}

impl Table {
    fn add(&mut self, path: &str, w: WatcherId, mode: u8) {
        let modes = self.by_path.entry(path.to_string()).or_default().entry(w).or_insert(0);
        if mode == RECURSIVE && *modes & RECURSIVE == 0 {
            self.recursive += 1;
        }
        *modes |= mode;
        self.by_watcher.entry(w).or_default().insert(path.to_string());
    }

    fn has(&self, path: &str, w: WatcherId, mode: Option<u8>) -> bool {
        match self.by_path.get(path).and_then(|m| m.get(&w)) {
            Some(bits) => mode.map_or(true, |m| bits & m != 0),
            None => false,
        }
    }

    /// Removes `mode` (or every mode) of `w` on `path`; true if anything was removed.
    fn remove(&mut self, path: &str, w: WatcherId, mode: Option<u8>) -> bool {
        let Some(watchers) = self.by_path.get_mut(path) else { return false };
        let Some(bits) = watchers.get_mut(&w) else { return false };
        let old = *bits;
        let new = match mode {
            Some(m) => old & !m,
            None => 0,
        };
        if old == new {
            return false;
        }
        if old & RECURSIVE != 0 && new & RECURSIVE == 0 {
            self.recursive -= 1;
        }
        if new == 0 {
            watchers.remove(&w);
            if watchers.is_empty() {
                self.by_path.remove(path);
            }
            if let Some(paths) = self.by_watcher.get_mut(&w) {
                paths.remove(path);
                if paths.is_empty() {
                    self.by_watcher.remove(&w);
                }
            }
        } else {
            *bits = new;
        }
        true
    }

    fn remove_watcher(&mut self, w: WatcherId) {
        if let Some(paths) = self.by_watcher.remove(&w) {
            for p in paths {
                if let Some(watchers) = self.by_path.get_mut(&p) {
                    if let Some(bits) = watchers.remove(&w) {
                        if bits & RECURSIVE != 0 {
                            self.recursive -= 1;
                        }
                    }
                    if watchers.is_empty() {
                        self.by_path.remove(&p);
                    }
                }
            }
        }
    }

    /// Fires the watches on `path` (one-shot ones are consumed) and the recursive ones on its
    /// ancestors; adds the watchers to `out`.
    fn trigger(&mut self, path: &str, out: &mut Vec<WatcherId>) {
        if let Some(watchers) = self.by_path.get_mut(path) {
            let mut emptied = Vec::new();
            for (w, bits) in watchers.iter_mut() {
                out.push(*w);
                *bits &= !STANDARD;
                if *bits == 0 {
                    emptied.push(*w);
                }
            }
            for w in emptied {
                watchers.remove(&w);
                if let Some(paths) = self.by_watcher.get_mut(&w) {
                    paths.remove(path);
                    if paths.is_empty() {
                        self.by_watcher.remove(&w);
                    }
                }
            }
            if watchers.is_empty() {
                self.by_path.remove(path);
            }
        }
        if self.recursive > 0 {
            let mut p = path;
            while p != "/" {
                p = match p.rfind('/') {
                    Some(0) => "/",
                    Some(i) => &p[..i],
                    None => break,
                };
                if let Some(watchers) = self.by_path.get(p) {
                    out.extend(watchers.iter().filter(|(_, b)| **b & RECURSIVE != 0).map(|(w, _)| *w));
                }
            }
        }
    }

    fn count(&self) -> usize {
        self.by_watcher.values().map(|p| p.len()).sum()
    }
}

/// Every watch this server holds.
#[derive(Default)]
pub struct Watches {
    data: Table,
    child: Table,
}

impl Watches {
    /// A one-shot data watch (getData, or exists on a node that exists or not).
    pub fn add_data(&mut self, path: &str, w: WatcherId) {
        self.data.add(path, w, STANDARD);
    }

    /// A one-shot child watch (getChildren).
    pub fn add_child(&mut self, path: &str, w: WatcherId) {
        self.child.add(path, w, STANDARD);
    }

    /// addWatch: persistent watches see data and child events of the path itself; recursive
    /// ones see data events of the path and everything below it.
    pub fn add_persistent(&mut self, path: &str, w: WatcherId, recursive: bool) {
        if recursive {
            self.data.add(path, w, RECURSIVE);
        } else {
            self.data.add(path, w, PERSISTENT);
            self.child.add(path, w, PERSISTENT);
        }
    }

    /// Who is told about `kind` happening at `path`. Each watcher appears once, so a watcher
    /// with both a data and a child watch on a deleted node gets one NodeDeleted.
    pub fn trigger(&mut self, path: &str, kind: ChangeKind) -> Vec<WatcherId> {
        let mut out = Vec::new();
        match kind {
            ChangeKind::Created | ChangeKind::DataChanged => self.data.trigger(path, &mut out),
            ChangeKind::Deleted => {
                self.data.trigger(path, &mut out);
                self.child.trigger(path, &mut out);
            }
            ChangeKind::ChildrenChanged => self.child.trigger(path, &mut out),
        }
        let mut seen = HashSet::new();
        out.retain(|w| seen.insert(*w));
        out
    }

    fn mode_of(watcher_type: i32) -> Option<(bool, bool, Option<u8>)> {
        // (look in child table, look in data table, mode)
        Some(match watcher_type {
            watcher_type::CHILDREN => (true, false, Some(STANDARD)),
            watcher_type::DATA => (false, true, Some(STANDARD)),
            watcher_type::PERSISTENT => (true, true, Some(PERSISTENT)),
            watcher_type::PERSISTENT_RECURSIVE => (false, true, Some(RECURSIVE)),
            watcher_type::ANY => (true, true, None),
            _ => return None,
        })
    }

    /// checkWatches.
    pub fn contains(&self, path: &str, w: WatcherId, watcher_type: i32) -> bool {
        match watcher_type {
            // Persistent watches are looked up in the data table only, as ZooKeeper does.
            watcher_type::PERSISTENT => self.data.has(path, w, Some(PERSISTENT)),
            _ => match Self::mode_of(watcher_type) {
                Some((child, data, mode)) => (child && self.child.has(path, w, mode)) || (data && self.data.has(path, w, mode)),
                None => false,
            },
        }
    }

    /// removeWatches; true if a watch was removed.
    pub fn remove(&mut self, path: &str, w: WatcherId, watcher_type: i32) -> bool {
        let Some((child, data, mode)) = Self::mode_of(watcher_type) else { return false };
        let c = child && self.child.remove(path, w, mode);
        let d = data && self.data.remove(path, w, mode);
        c || d
    }

    /// Drops every watch of a closed connection.
    pub fn remove_watcher(&mut self, w: WatcherId) {
        self.data.remove_watcher(w);
        self.child.remove_watcher(w);
    }

    /// Total watches (a path watched by one connection in both tables counts twice, as in
    /// ZooKeeper's `wchs`).
    pub fn count(&self) -> usize {
        self.data.count() + self.child.count()
    }

    /// Number of watched paths.
    pub fn path_count(&self) -> usize {
        let mut paths: HashSet<&String> = self.data.by_path.keys().collect();
        paths.extend(self.child.by_path.keys());
        paths.len()
    }

    /// Number of connections with watches.
    pub fn watcher_count(&self) -> usize {
        let mut ws: HashSet<&WatcherId> = self.data.by_watcher.keys().collect();
        ws.extend(self.child.by_watcher.keys());
        ws.len()
    }

    /// Paths watched by each connection (for `wchc`).
    pub fn by_watcher(&self) -> Vec<(WatcherId, Vec<String>)> {
        let mut m: HashMap<WatcherId, HashSet<String>> = HashMap::new();
        for t in [&self.data, &self.child] {
            for (w, paths) in &t.by_watcher {
                m.entry(*w).or_default().extend(paths.iter().cloned());
            }
        }
        let mut v: Vec<_> = m
            .into_iter()
            .map(|(w, p)| {
                let mut p: Vec<_> = p.into_iter().collect();
                p.sort();
                (w, p)
            })
            .collect();
        v.sort();
        v
    }

    /// Connections watching each path (for `wchp`).
    pub fn by_path(&self) -> Vec<(String, Vec<WatcherId>)> {
        let mut m: HashMap<String, HashSet<WatcherId>> = HashMap::new();
        for t in [&self.data, &self.child] {
            for (p, ws) in &t.by_path {
                m.entry(p.clone()).or_default().extend(ws.keys());
            }
        }
        let mut v: Vec<_> = m
            .into_iter()
            .map(|(p, w)| {
                let mut w: Vec<_> = w.into_iter().collect();
                w.sort();
                (p, w)
            })
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shot_watches_fire_once() {
        let mut w = Watches::default();
        w.add_data("/a", 1);
        assert_eq!(w.trigger("/a", ChangeKind::DataChanged), vec![1]);
        assert!(w.trigger("/a", ChangeKind::DataChanged).is_empty());
        assert_eq!(w.count(), 0);
    }

    #[test]
    fn delete_notifies_a_data_and_child_watcher_once() {
        let mut w = Watches::default();
        w.add_data("/a", 1);
        w.add_child("/a", 1);
        w.add_child("/", 2);
        assert_eq!(w.trigger("/a", ChangeKind::Deleted), vec![1]);
        assert_eq!(w.trigger("/", ChangeKind::ChildrenChanged), vec![2]);
    }

    #[test]
    fn persistent_and_recursive_watches_stay() {
        let mut w = Watches::default();
        w.add_persistent("/a", 1, false);
        w.add_persistent("/a", 2, true);
        assert_eq!(w.trigger("/a/b", ChangeKind::Created), vec![2]);
        assert_eq!(w.trigger("/a", ChangeKind::ChildrenChanged), vec![1]);
        let mut got = w.trigger("/a", ChangeKind::DataChanged);
        got.sort();
        assert_eq!(got, vec![1, 2]);
        assert!(w.contains("/a", 1, watcher_type::PERSISTENT));
        assert!(w.remove("/a", 2, watcher_type::PERSISTENT_RECURSIVE));
        assert!(w.trigger("/a/b", ChangeKind::Created).is_empty());
        w.remove_watcher(1);
        assert_eq!(w.count(), 0);
    }
}
