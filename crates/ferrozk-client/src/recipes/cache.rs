//! Local copies of a node ([`NodeCache`]) or a subtree ([`TreeCache`]), kept current by a
//! persistent (recursive) watch, with each change also sent on a channel.
//!
//! Both need `addWatch` on the server (ferrozk, ZooKeeper 3.6 and later). A watch event says
//! only that a node changed, so the cache reads the node after each event: it may skip
//! intermediate values of a node that changes quickly, but after the last change its copy
//! equals the server's. Persistent watches replay nothing missed while disconnected, so after a
//! reconnection the cache reads everything again and reports the differences.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::{event, Client, ErrorCode, SessionState, Stat, WatchedEvent};

/// A node's data and Stat as last read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeData {
    pub data: Vec<u8>,
    pub stat: Stat,
}

/// A change seen by a cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheEvent {
    Created {
        path: String,
        node: NodeData,
    },
    /// The data changed (a new `mzxid`); a Stat change alone (children) is not reported.
    Changed {
        path: String,
        node: NodeData,
    },
    Deleted {
        path: String,
    },
}

/// What changed between two copies of one node, if anything worth reporting.
fn difference(path: &str, before: Option<&NodeData>, after: Option<&NodeData>) -> Option<CacheEvent> {
    let path = path.to_string();
    match (before, after) {
        (None, Some(n)) => Some(CacheEvent::Created { path, node: n.clone() }),
        (Some(_), None) => Some(CacheEvent::Deleted { path }),
        (Some(a), Some(b)) if (a.stat.czxid, a.stat.mzxid) != (b.stat.czxid, b.stat.mzxid) => {
            Some(CacheEvent::Changed { path, node: b.clone() })
        }
        _ => None,
    }
}

async fn read_node(zk: &Client, path: &str) -> Result<Option<NodeData>, ErrorCode> {
    match zk.retrying().get_data(path).await {
        Ok((data, stat)) => Ok(Some(NodeData { data, stat })),
        Err(ErrorCode::NoNode) => Ok(None),
        Err(e) => Err(e),
    }
}

/// What a cache task does next.
enum Next {
    Event(WatchedEvent),
    /// Reconnected: read everything again.
    Resync,
    Stop,
}

/// Waits for the next watch event or a reconnection. `lost` is set while the session is
/// between servers (or a read failed for that reason).
async fn next(
    events: &mut mpsc::UnboundedReceiver<WatchedEvent>,
    state: &mut watch::Receiver<SessionState>,
    lost: &mut bool,
) -> Next {
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                None => return Next::Stop,
                Some(ev) if ev.event_type == event::NONE => continue,
                Some(ev) => return Next::Event(ev),
            },
            changed = state.changed() => {
                if changed.is_err() {
                    return Next::Stop;
                }
                let s = *state.borrow_and_update();
                match s {
                    SessionState::Connected | SessionState::ConnectedReadOnly if *lost => {
                        *lost = false;
                        return Next::Resync;
                    }
                    SessionState::Disconnected | SessionState::Connecting => *lost = true,
                    SessionState::Expired | SessionState::Closed | SessionState::AuthFailed => return Next::Stop,
                    _ => {}
                }
            }
        }
    }
}

/// A failed read: wait for the reconnection (then resync) on a connection loss, else stop.
fn on_read_error(e: ErrorCode, lost: &mut bool) -> bool {
    if e == ErrorCode::ConnectionLoss {
        *lost = true;
        true
    } else {
        tracing::debug!("cache stops: {e}");
        false
    }
}

/// A local copy of one node (Curator's `NodeCache`), following its creation, changes and
/// deletion through a persistent watch.
///
/// ```no_run
/// # async fn demo(zk: &ferrozk_client::Client) -> Result<(), ferrozk_client::ErrorCode> {
/// use ferrozk_client::recipes::NodeCache;
/// let (cache, mut changes) = NodeCache::start(zk, "/config/app").await?;
/// println!("now: {:?}", cache.get().map(|n| n.data));
/// while let Some(change) = changes.recv().await {
///     println!("{change:?}");
/// }
/// # Ok(()) }
/// ```
pub struct NodeCache {
    current: watch::Receiver<Option<NodeData>>,
    task: JoinHandle<()>,
}

impl NodeCache {
    /// Reads the node and starts following it. Changes after this read arrive on the channel;
    /// it closes when the cache stops (dropped, or the session ended).
    pub async fn start(zk: &Client, path: &str) -> Result<(NodeCache, mpsc::UnboundedReceiver<CacheEvent>), ErrorCode> {
        // Watch first, then read: a change between the two is then not missed.
        let mut events = zk.retry(|| zk.add_watch(path, false)).await?;
        let initial = read_node(zk, path).await?;
        let (current_tx, current) = watch::channel(initial);
        let (tx, rx) = mpsc::unbounded_channel();
        let (zk, path) = (zk.clone(), path.to_string());
        let mut state = zk.state_events();
        let task = tokio::spawn(async move {
            let mut lost = false;
            loop {
                match next(&mut events, &mut state, &mut lost).await {
                    Next::Stop => return,
                    Next::Event(_) | Next::Resync => {}
                }
                // Later events for the node are answered by this one read too.
                while events.try_recv().is_ok() {}
                let after = match read_node(&zk, &path).await {
                    Ok(n) => n,
                    Err(e) if on_read_error(e, &mut lost) => continue,
                    Err(_) => return,
                };
                let change = difference(&path, current_tx.borrow().as_ref(), after.as_ref());
                current_tx.send_replace(after);
                if let Some(change) = change {
                    let _ = tx.send(change);
                }
            }
        });
        Ok((NodeCache { current, task }, rx))
    }

    /// The node as last read (`None` if it does not exist).
    pub fn get(&self) -> Option<NodeData> {
        self.current.borrow().clone()
    }

    /// The copy as a `watch` channel, to wait for a state rather than for events.
    pub fn subscribe(&self) -> watch::Receiver<Option<NodeData>> {
        self.current.clone()
    }
}

impl Drop for NodeCache {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A local copy of a subtree (Curator's `CuratorCache`/`TreeCache`), kept through one
/// persistent recursive watch on its root: every node below the root, at any depth.
///
/// ```no_run
/// # async fn demo(zk: &ferrozk_client::Client) -> Result<(), ferrozk_client::ErrorCode> {
/// use ferrozk_client::recipes::{CacheEvent, TreeCache};
/// let (cache, mut changes) = TreeCache::start(zk, "/services").await?;
/// println!("{} nodes", cache.snapshot().len());
/// while let Some(change) = changes.recv().await {
///     if let CacheEvent::Created { path, .. } = change {
///         println!("new: {path}, children: {:?}", cache.children(&path));
///     }
/// }
/// # Ok(()) }
/// ```
pub struct TreeCache {
    nodes: Arc<Mutex<BTreeMap<String, NodeData>>>,
    task: JoinHandle<()>,
}

fn child_path(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

fn is_below(path: &str, ancestor: &str) -> bool {
    ancestor == "/" && path != "/" || path.strip_prefix(ancestor).is_some_and(|rest| rest.starts_with('/'))
}

/// Reads the whole subtree at `root`.
async fn read_tree(zk: &Client, root: &str) -> Result<BTreeMap<String, NodeData>, ErrorCode> {
    let mut nodes = BTreeMap::new();
    let mut todo = vec![root.to_string()];
    while let Some(path) = todo.pop() {
        let Some(node) = read_node(zk, &path).await? else { continue };
        if node.stat.num_children > 0 {
            match zk.retrying().get_children(&path).await {
                Ok((children, _)) => todo.extend(children.iter().map(|c| child_path(&path, c))),
                Err(ErrorCode::NoNode) => continue,
                Err(e) => return Err(e),
            }
        }
        nodes.insert(path, node);
    }
    Ok(nodes)
}

impl TreeCache {
    /// Reads the subtree and starts following it. Changes after this read arrive on the
    /// channel; it closes when the cache stops (dropped, or the session ended).
    pub async fn start(zk: &Client, root: &str) -> Result<(TreeCache, mpsc::UnboundedReceiver<CacheEvent>), ErrorCode> {
        let root = if root == "/" { root.to_string() } else { root.trim_end_matches('/').to_string() };
        let mut events = zk.retry(|| zk.add_watch(&root, true)).await?;
        let nodes = Arc::new(Mutex::new(read_tree(zk, &root).await?));
        let (tx, rx) = mpsc::unbounded_channel();
        let (zk, shared) = (zk.clone(), nodes.clone());
        let mut state = zk.state_events();
        let task = tokio::spawn(async move {
            let mut lost = false;
            loop {
                let ev = match next(&mut events, &mut state, &mut lost).await {
                    Next::Stop => return,
                    Next::Event(ev) => ev,
                    Next::Resync => {
                        let fresh = match read_tree(&zk, &root).await {
                            Ok(t) => t,
                            Err(e) if on_read_error(e, &mut lost) => continue,
                            Err(_) => return,
                        };
                        let mut nodes = shared.lock().unwrap();
                        for (path, before) in nodes.iter() {
                            if !fresh.contains_key(path) {
                                let _ = tx.send(CacheEvent::Deleted { path: path.clone() });
                            } else if let Some(change) = difference(path, Some(before), fresh.get(path)) {
                                let _ = tx.send(change);
                            }
                        }
                        for (path, after) in fresh.iter().filter(|(p, _)| !nodes.contains_key(*p)) {
                            let _ = tx.send(CacheEvent::Created { path: path.clone(), node: after.clone() });
                        }
                        *nodes = fresh;
                        continue;
                    }
                };
                // Events come in the order of the changes; reading after each one means the
                // last event of a node is followed by a read that sees its final state.
                let after = if ev.event_type == event::NODE_DELETED {
                    None
                } else {
                    match read_node(&zk, &ev.path).await {
                        Ok(n) => n,
                        Err(e) if on_read_error(e, &mut lost) => continue,
                        Err(_) => return,
                    }
                };
                // A recursive watch says nothing of a parent when a child comes or goes: read it
                // again for its child count and cversion (a Stat change only, not reported).
                let parent = if ev.path == root || ev.event_type == event::NODE_DATA_CHANGED {
                    None
                } else {
                    ev.path.rsplit_once('/').map(|(p, _)| if p.is_empty() { "/".to_string() } else { p.to_string() })
                };
                let parent = match parent {
                    Some(p) => match read_node(&zk, &p).await {
                        Ok(n) => n.map(|n| (p, n)),
                        Err(e) if on_read_error(e, &mut lost) => continue,
                        Err(_) => return,
                    },
                    None => None,
                };
                let mut nodes = shared.lock().unwrap();
                if let Some((path, node)) = parent {
                    if let Some(cached) = nodes.get_mut(&path) {
                        // Same data version only: a data change is reported by its own event.
                        if (cached.stat.czxid, cached.stat.mzxid) == (node.stat.czxid, node.stat.mzxid) {
                            *cached = node;
                        }
                    }
                }
                match after {
                    Some(node) => {
                        if let Some(change) = difference(&ev.path, nodes.get(&ev.path), Some(&node)) {
                            let _ = tx.send(change);
                        }
                        nodes.insert(ev.path, node);
                    }
                    None => {
                        // Descendants are deleted before their parent, each with its own
                        // event; any still here were missed and go too.
                        let gone: Vec<String> =
                            nodes.keys().filter(|p| **p == ev.path || is_below(p, &ev.path)).cloned().collect();
                        for path in gone.into_iter().rev() {
                            nodes.remove(&path);
                            let _ = tx.send(CacheEvent::Deleted { path });
                        }
                    }
                }
            }
        });
        Ok((TreeCache { nodes, task }, rx))
    }

    /// A node of the subtree as last read.
    pub fn get(&self, path: &str) -> Option<NodeData> {
        self.nodes.lock().unwrap().get(path).cloned()
    }

    /// The names of `path`'s children in the copy, sorted.
    pub fn children(&self, path: &str) -> Vec<String> {
        let nodes = self.nodes.lock().unwrap();
        let prefix = if path == "/" { "/".to_string() } else { format!("{path}/") };
        nodes
            .range(prefix.clone()..)
            .take_while(|(p, _)| p.starts_with(&prefix))
            .filter_map(|(p, _)| {
                let rest = &p[prefix.len()..];
                (!rest.is_empty() && !rest.contains('/')).then(|| rest.to_string())
            })
            .collect()
    }

    /// The whole copy: every node's path (below and including the root) and its data.
    pub fn snapshot(&self) -> BTreeMap<String, NodeData> {
        self.nodes.lock().unwrap().clone()
    }
}

impl Drop for TreeCache {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::is_below;

    #[test]
    fn descendants() {
        assert!(is_below("/a/b", "/a"));
        assert!(!is_below("/ab", "/a"));
        assert!(!is_below("/a", "/a"));
        assert!(is_below("/a", "/"));
        assert!(!is_below("/", "/"));
    }
}
