//! NodeCache, TreeCache and DataWatch: they converge to the server's state after a burst of
//! changes, report changes in order, and a config watcher sees each change made in step.
//! Against an in-process ferrozk server, or `FERROZK_TEST_ZK` (see tests/common).

mod common;

use std::collections::BTreeMap;

use common::{server, within};
use ferrozk_client::recipes::{CacheEvent, DataWatch, NodeCache, NodeData, TreeCache};
use ferrozk_client::*;

/// The server's copy of a subtree, read node by node.
async fn server_tree(zk: &Client, root: &str) -> BTreeMap<String, NodeData> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_string()];
    while let Some(p) = todo.pop() {
        let (data, stat) = zk.get_data(&p).await.unwrap();
        for c in zk.get_children(&p).await.unwrap().0 {
            todo.push(format!("{p}/{c}"));
        }
        out.insert(p, NodeData { data, stat });
    }
    out
}

async fn next(values: &mut tokio::sync::mpsc::UnboundedReceiver<Option<NodeData>>) -> Option<NodeData> {
    within("config value", values.recv()).await.expect("the watcher stopped")
}

fn data_of(node: &Option<NodeData>) -> Option<&[u8]> {
    node.as_ref().map(|n| n.data.as_slice())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_cache_follows_creation_changes_and_deletion() {
    let s = server("node-cache").await;
    let zk = s.client().await;
    let writer = s.client().await;
    let (cache, mut events) = NodeCache::start(&zk, "/cfg").await.unwrap();
    assert_eq!(cache.get(), None);
    let mut copy = cache.subscribe();

    // In step: each change is reported before the next is made.
    writer.create("/cfg", b"v0", open_acl(), CreateMode::Persistent).await.unwrap();
    let Some(CacheEvent::Created { path, node }) = within("created", events.recv()).await else { panic!("no Created") };
    assert_eq!((path.as_str(), node.data.as_slice()), ("/cfg", &b"v0"[..]));
    writer.set_data("/cfg", b"v1", -1).await.unwrap();
    let Some(CacheEvent::Changed { node, .. }) = within("changed", events.recv()).await else { panic!("no Changed") };
    assert_eq!((node.data.as_slice(), node.stat.version), (&b"v1"[..], 1));
    // A child coming does not change the data: no event, but the copy's Stat follows.
    writer.create("/cfg/child", b"", open_acl(), CreateMode::Persistent).await.unwrap();
    within("child count", copy.wait_for(|n| n.as_ref().is_some_and(|n| n.stat.num_children == 1))).await.unwrap();
    writer.delete("/cfg/child", -1).await.unwrap();
    writer.delete("/cfg", -1).await.unwrap();
    assert_eq!(within("deleted", events.recv()).await, Some(CacheEvent::Deleted { path: "/cfg".into() }));
    assert_eq!(cache.get(), None);

    // A burst, with a deletion and re-creation in the middle: the copy ends equal to the server.
    writer.create("/cfg", b"b0", open_acl(), CreateMode::Persistent).await.unwrap();
    for i in 1..=30 {
        writer.set_data("/cfg", format!("b{i}").as_bytes(), -1).await.unwrap();
    }
    writer.delete("/cfg", -1).await.unwrap();
    writer.create("/cfg", b"c0", open_acl(), CreateMode::Persistent).await.unwrap();
    for i in 1..=30 {
        writer.set_data("/cfg", format!("c{i}").as_bytes(), -1).await.unwrap();
    }
    within("converged", copy.wait_for(|n| data_of(n) == Some(b"c30"))).await.unwrap();
    let (data, stat) = writer.get_data("/cfg").await.unwrap();
    assert_eq!(cache.get(), Some(NodeData { data, stat }));
    // What was reported came in order, each value newer than the one before, up to the final
    // value (its event may follow the copy's update by a moment).
    let final_mzxid = cache.get().unwrap().stat.mzxid;
    let mut last_mzxid = 0;
    while last_mzxid != final_mzxid {
        let ev = within("the final value's event", events.recv()).await.expect("events end");
        if let CacheEvent::Created { node, .. } | CacheEvent::Changed { node, .. } = ev {
            assert!(node.stat.mzxid > last_mzxid, "reported out of order");
            assert!(node.stat.mzxid <= final_mzxid, "reported past the final value");
            last_mzxid = node.stat.mzxid;
        }
    }
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tree_cache_converges_after_a_burst_from_several_writers() {
    let s = server("tree-cache").await;
    let zk = s.client().await;
    for p in ["/tree", "/tree/a", "/tree/a/x", "/tree/b"] {
        zk.create(p, p.as_bytes(), open_acl(), CreateMode::Persistent).await.unwrap();
    }
    let (cache, mut events) = TreeCache::start(&zk, "/tree").await.unwrap();
    assert_eq!(cache.snapshot(), server_tree(&zk, "/tree").await, "initial copy");
    assert_eq!(cache.children("/tree"), vec!["a", "b"]);

    let mut writers = Vec::new();
    for w in 0..3 {
        let zk = s.client().await;
        writers.push(tokio::spawn(async move {
            let base = format!("/tree/w{w}");
            zk.create(&base, b"", open_acl(), CreateMode::Persistent).await.unwrap();
            for i in 0..15 {
                let dir = format!("{base}/d{i}");
                zk.create(&dir, format!("{i}").as_bytes(), open_acl(), CreateMode::Persistent).await.unwrap();
                zk.create(&format!("{dir}/leaf"), b"x", open_acl(), CreateMode::Ephemeral).await.unwrap();
                zk.set_data(&dir, format!("{i}-changed").as_bytes(), -1).await.unwrap();
                if i % 3 == 0 {
                    zk.delete(&format!("{dir}/leaf"), -1).await.unwrap();
                    zk.delete(&dir, -1).await.unwrap();
                }
            }
            zk.set_data("/tree/a", format!("touched by {w}").as_bytes(), -1).await.unwrap();
            zk
        }));
    }
    let mut sessions = Vec::new();
    for w in writers {
        sessions.push(within("writers", w).await.unwrap());
    }
    zk.delete("/tree/a/x", -1).await.unwrap();
    zk.delete("/tree/b", -1).await.unwrap();
    // Events come in the order of the changes: once the cache reports this last one, it has
    // handled every earlier one.
    zk.create("/tree/done", b"", open_acl(), CreateMode::Persistent).await.unwrap();
    let mut deleted = Vec::new();
    loop {
        match within("the last change", events.recv()).await.unwrap() {
            CacheEvent::Created { path, .. } if path == "/tree/done" => break,
            CacheEvent::Deleted { path } => deleted.push(path),
            _ => {}
        }
    }
    assert_eq!(cache.snapshot(), server_tree(&zk, "/tree").await, "copy after the burst");
    // Nodes in the copy that went are reported (short-lived ones may never be seen at all).
    for gone in ["/tree/a/x", "/tree/b"] {
        assert!(deleted.iter().any(|d| d == gone), "{gone} not reported deleted: {deleted:?}");
    }
    assert_eq!(cache.children("/tree/w0").len(), 10);

    // A writer's session ends: its ephemeral leaves go, and the copy follows.
    sessions.pop().unwrap().close().await;
    zk.set_data("/tree/done", b"again", -1).await.unwrap();
    loop {
        if let CacheEvent::Changed { path, .. } = within("the marker change", events.recv()).await.unwrap() {
            if path == "/tree/done" {
                break;
            }
        }
    }
    assert_eq!(cache.snapshot(), server_tree(&zk, "/tree").await, "copy after a session ended");
    assert!(cache.get("/tree/w2/d1/leaf").is_none() && cache.get("/tree/w2/d1").is_some());
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_watcher_sees_each_change() {
    let s = server("data-watch").await;
    let zk = s.client().await;
    let writer = s.client().await;
    let (_watch, mut values) = DataWatch::channel(&zk, "/config");
    assert_eq!(next(&mut values).await, None, "no node yet");

    // Each change waits for the previous one to be seen, so each is seen.
    writer.create("/config", b"v1", open_acl(), CreateMode::Persistent).await.unwrap();
    assert_eq!(data_of(&next(&mut values).await), Some(&b"v1"[..]));
    writer.set_data("/config", b"v2", -1).await.unwrap();
    let v2 = next(&mut values).await.unwrap();
    assert_eq!((v2.data.as_slice(), v2.stat.version), (&b"v2"[..], 1));
    writer.set_data("/config", b"v2", -1).await.unwrap(); // the same bytes again: still a change
    assert_eq!(next(&mut values).await.unwrap().stat.version, 2);
    writer.delete("/config", -1).await.unwrap();
    assert_eq!(next(&mut values).await, None, "deletion");
    writer.create("/config", b"v3", open_acl(), CreateMode::Persistent).await.unwrap();
    assert_eq!(data_of(&next(&mut values).await), Some(&b"v3"[..]), "re-creation");

    // A burst: the values seen are in order and end with the last one.
    for i in 0..40 {
        writer.set_data("/config", format!("burst-{i}").as_bytes(), -1).await.unwrap();
    }
    let mut last_version = 0;
    loop {
        let v = next(&mut values).await.unwrap();
        assert!(v.stat.version > last_version, "values out of order");
        last_version = v.stat.version;
        if v.data == b"burst-39" {
            break;
        }
    }
    assert_eq!(last_version, 40);

    // The callback form stops when it returns false.
    let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let _stopping = DataWatch::start(&zk, "/config", move |v| {
        let keep_going = data_of(&v.cloned()) != Some(b"stop");
        let _ = tx.send(v.map(|n| n.data.clone()));
        keep_going
    });
    assert_eq!(within("first call", seen.recv()).await.unwrap().as_deref(), Some(&b"burst-39"[..]));
    writer.set_data("/config", b"stop", -1).await.unwrap();
    assert_eq!(within("stop call", seen.recv()).await.unwrap().as_deref(), Some(&b"stop"[..]));
    writer.set_data("/config", b"after", -1).await.unwrap();
    // The stopped watcher dropped its sender: the channel ends without another value.
    assert_eq!(within("channel end", seen.recv()).await, None);
    s.shutdown().await;
}

/// Always against an in-process ferrozk server (even with `FERROZK_TEST_ZK`): it restarts the
/// server under the caches' session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caches_catch_up_after_a_server_restart() {
    use ferrozk_server::Server;
    let dir = std::env::temp_dir().join(format!("ferrozk-recipes-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let start = |addr: std::net::SocketAddr| {
        let dir = dir.clone();
        async move { Server::builder().client_addr(addr).data_dir(dir).tick_time(200).start().await.unwrap() }
    };
    let s = start("127.0.0.1:0".parse().unwrap()).await;
    let addr = s.client_addr();
    let zk = Client::connect(&s.connect_string()).await.unwrap();
    zk.create("/r", b"", open_acl(), CreateMode::Persistent).await.unwrap();
    zk.create("/r/kept", b"1", open_acl(), CreateMode::Persistent).await.unwrap();
    zk.create("/r/removed", b"1", open_acl(), CreateMode::Persistent).await.unwrap();
    let (tree, mut tree_events) = TreeCache::start(&zk, "/r").await.unwrap();
    let (node, _node_events) = NodeCache::start(&zk, "/r/kept").await.unwrap();
    let mut node_copy = node.subscribe();
    let session = zk.session_id();

    s.shutdown().await;
    let s = start(addr).await;
    // Written as soon as the server is back, likely before the caches' client (backing off
    // between attempts) re-attaches: persistent watches replay nothing, only the caches'
    // re-read after reconnecting can see these.
    let writer = Client::connect(&s.connect_string()).await.unwrap();
    writer.set_data("/r/kept", b"2", -1).await.unwrap();
    writer.delete("/r/removed", -1).await.unwrap();
    writer.create("/r/added", b"", open_acl(), CreateMode::Persistent).await.unwrap();
    writer.create("/r/marker", b"", open_acl(), CreateMode::Persistent).await.unwrap();
    loop {
        if let CacheEvent::Created { path, .. } = within("marker", tree_events.recv()).await.unwrap() {
            if path == "/r/marker" {
                break;
            }
        }
    }
    assert_eq!(zk.session_id(), session, "the caches' session re-attached");
    assert_eq!(tree.snapshot(), server_tree(&writer, "/r").await, "tree copy after the restart");
    within("node copy", node_copy.wait_for(|n| data_of(n) == Some(b"2"))).await.unwrap();
    let (data, stat) = writer.get_data("/r/kept").await.unwrap();
    assert_eq!(node.get(), Some(NodeData { data, stat }));
    s.shutdown().await;
}
