//! The watch table of a session: who is told of an event, on server paths (`ZKWatchManager`).
//! A watcher is the one-shot or channel a call of [`crate::Client`] registered, or the session's
//! default watcher, which is one watcher: it hears an event once however many of its watches
//! match it.

use std::collections::HashMap;

use ferrozk_proto::codes::{event, watcher_type};
use ferrozk_proto::{ErrorCode, SetWatches2};
use tokio::sync::{mpsc, oneshot};

use crate::WatchedEvent;

/// What a request asks to be registered when it succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WatchKind {
    /// getData (and exists on an existing node).
    Data,
    /// exists: a data watch if the node exists, an exist watch if not.
    Exists,
    Child,
    Persistent,
    PersistentRecursive,
}

pub(crate) enum Watcher {
    Once(oneshot::Sender<WatchedEvent>),
    Many(mpsc::UnboundedSender<WatchedEvent>),
    /// The session's default watcher ([`Settings::default_watcher`]).
    Default,
}

/// What a call does to the watch table when its reply comes.
pub(crate) enum WatchOp {
    /// Register a watcher on a server path.
    Add(WatchKind, String, Watcher),
    /// removeWatches on a server path: the client's watchers of that type go and are told,
    /// whatever the server answered if `local` (`removeAllWatches(path, type, local)`).
    Remove { path: String, watcher_type: i32, local: bool },
}

#[derive(Default)]
pub(crate) struct Watches {
    data: HashMap<String, Vec<Watcher>>,
    exist: HashMap<String, Vec<Watcher>>,
    child: HashMap<String, Vec<Watcher>>,
    persistent: HashMap<String, Vec<Watcher>>,
    recursive: HashMap<String, Vec<Watcher>>,
}

/// Hands `ev` to each watcher of `list`; the ones that stay (channels still listened to, the
/// default watcher of a persistent watch) go to `keep`. Whether the default watcher was among them.
fn deliver(list: Vec<Watcher>, ev: &WatchedEvent, keep: &mut Vec<Watcher>, persistent: bool) -> bool {
    let mut default_hit = false;
    for w in list {
        match w {
            Watcher::Once(tx) => {
                let _ = tx.send(ev.clone());
            }
            Watcher::Many(tx) => {
                if tx.send(ev.clone()).is_ok() && persistent {
                    keep.push(Watcher::Many(tx));
                }
            }
            Watcher::Default => {
                default_hit = true;
                if persistent {
                    keep.push(Watcher::Default);
                }
            }
        }
    }
    default_hit
}

impl Watches {
    pub(crate) fn add(&mut self, kind: WatchKind, path: String, w: Watcher, exists: bool) {
        let map = match kind {
            WatchKind::Data => &mut self.data,
            WatchKind::Exists if exists => &mut self.data,
            WatchKind::Exists => &mut self.exist,
            WatchKind::Child => &mut self.child,
            WatchKind::Persistent => &mut self.persistent,
            WatchKind::PersistentRecursive => &mut self.recursive,
        };
        let list = map.entry(path).or_default();
        // The default watcher is one watcher: on a path once, however often it is set there.
        if matches!(w, Watcher::Default) && list.iter().any(|x| matches!(x, Watcher::Default)) {
            return;
        }
        list.push(w);
    }

    /// `ZKWatchManager.materialize`: who hears of an event on a server path. Watchers get `ev`
    /// (already in client terms); whether the default watcher is among them.
    pub(crate) fn dispatch(&mut self, path: &str, ev: &WatchedEvent) -> bool {
        let fire = |map: &mut HashMap<String, Vec<Watcher>>, p: &str, persistent: bool| -> bool {
            let Some(list) = map.remove(p) else { return false };
            let mut keep = Vec::new();
            let hit = deliver(list, ev, &mut keep, persistent);
            if !keep.is_empty() {
                map.insert(p.to_string(), keep);
            }
            hit
        };
        let mut hit = false;
        match ev.event_type {
            event::NODE_DATA_CHANGED | event::NODE_CREATED => {
                hit |= fire(&mut self.data, path, false);
                hit |= fire(&mut self.exist, path, false);
            }
            event::NODE_CHILDREN_CHANGED => hit |= fire(&mut self.child, path, false),
            event::NODE_DELETED => {
                hit |= fire(&mut self.data, path, false);
                hit |= fire(&mut self.exist, path, false);
                hit |= fire(&mut self.child, path, false);
            }
            _ => return false,
        }
        hit |= fire(&mut self.persistent, path, true);
        if ev.event_type != event::NODE_CHILDREN_CHANGED {
            // The node itself and every ancestor may hold a recursive watch.
            let mut p = path;
            loop {
                hit |= fire(&mut self.recursive, p, true);
                if p == "/" || p.is_empty() {
                    break;
                }
                p = match p.rfind('/') {
                    Some(0) => "/",
                    Some(i) => &p[..i],
                    None => break,
                };
            }
        }
        hit
    }

    /// `removeWatches` of one [`watcher_type`] on a server path: the watchers removed, each with
    /// the "watch removed" event type it is told, or the error code the call fails with.
    pub(crate) fn remove(&mut self, path: &str, wtype: i32, local: bool, server_err: i32) -> Result<Vec<(i32, Watcher)>, i32> {
        let maps: Vec<(&mut HashMap<String, Vec<Watcher>>, i32)> = match wtype {
            watcher_type::CHILDREN => vec![(&mut self.child, event::CHILD_WATCH_REMOVED)],
            watcher_type::DATA => vec![(&mut self.data, event::DATA_WATCH_REMOVED), (&mut self.exist, event::DATA_WATCH_REMOVED)],
            watcher_type::PERSISTENT => vec![(&mut self.persistent, event::PERSISTENT_WATCH_REMOVED)],
            watcher_type::PERSISTENT_RECURSIVE => vec![(&mut self.recursive, event::PERSISTENT_WATCH_REMOVED)],
            _ => vec![
                (&mut self.child, event::CHILD_WATCH_REMOVED),
                (&mut self.data, event::DATA_WATCH_REMOVED),
                (&mut self.exist, event::DATA_WATCH_REMOVED),
                (&mut self.persistent, event::PERSISTENT_WATCH_REMOVED),
                (&mut self.recursive, event::PERSISTENT_WATCH_REMOVED),
            ],
        };
        if !maps.iter().any(|(m, _)| m.contains_key(path)) {
            return Err(ErrorCode::NoWatcher.code());
        }
        if !local && server_err != 0 {
            return Err(server_err);
        }
        let mut removed = Vec::new();
        for (map, told) in maps {
            for w in map.remove(path).unwrap_or_default() {
                removed.push((told, w));
            }
        }
        Ok(removed)
    }

    /// Everyone watching learns that the session is gone (the default watcher hears it as a
    /// state change).
    pub(crate) fn fail_all(&mut self, st: i32) {
        let ev = WatchedEvent { event_type: event::NONE, state: st, path: String::new() };
        for map in [&mut self.data, &mut self.exist, &mut self.child, &mut self.persistent, &mut self.recursive] {
            for (_, list) in map.drain() {
                deliver(list, &ev, &mut Vec::new(), false);
            }
        }
    }

    pub(crate) fn set_watches(&self, relative_zxid: i64) -> Option<SetWatches2> {
        let keys = |m: &HashMap<String, Vec<Watcher>>| m.keys().cloned().collect::<Vec<_>>();
        let sw = SetWatches2 {
            relative_zxid,
            data_watches: keys(&self.data),
            exist_watches: keys(&self.exist),
            child_watches: keys(&self.child),
            persistent_watches: keys(&self.persistent),
            persistent_recursive_watches: keys(&self.recursive),
        };
        let empty = sw.data_watches.is_empty()
            && sw.exist_watches.is_empty()
            && sw.child_watches.is_empty()
            && sw.persistent_watches.is_empty()
            && sw.persistent_recursive_watches.is_empty();
        (!empty).then_some(sw)
    }
}
