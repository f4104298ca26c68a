//! The client against an in-process ferrozk server.

use std::time::Duration;

use ferrozk_client::*;
use ferrozk_server::Server;

async fn server(dir: &str) -> Server {
    let d = std::env::temp_dir().join(format!("ferrozk-client-test-{dir}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    Server::builder().client_addr("127.0.0.1:0".parse().unwrap()).data_dir(d).tick_time(200).start().await.unwrap()
}

#[tokio::test]
async fn crud_watches_and_chroot() {
    let s = server("crud").await;
    let zk = Client::connect(&s.connect_string()).await.unwrap();
    assert_eq!(zk.state(), SessionState::Connected);
    zk.create("/app", b"", open_acl(), CreateMode::Persistent).await.unwrap();
    let app = Client::connect(&format!("{}/app", s.connect_string())).await.unwrap();
    let p = app.create("/job-", b"1", open_acl(), CreateMode::PersistentSequential).await.unwrap();
    assert_eq!(p, "/job-0000000000");
    assert_eq!(zk.get_data("/app/job-0000000000").await.unwrap().0, b"1");
    let ((_, stat), changed) = app.get_data_w(&p).await.unwrap();
    let ((kids, _), kids_changed) = app.get_children_w("/").await.unwrap();
    assert_eq!(kids, vec!["job-0000000000"]);
    zk.set_data("/app/job-0000000000", b"2", stat.version).await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(5), changed).await.unwrap().unwrap();
    assert_eq!((ev.event_type, ev.path.as_str()), (event::NODE_DATA_CHANGED, "/job-0000000000"));
    assert_eq!(app.set_data(&p, b"3", stat.version).await, Err(ErrorCode::BadVersion));
    zk.delete("/app/job-0000000000", -1).await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(5), kids_changed).await.unwrap().unwrap();
    assert_eq!((ev.event_type, ev.path.as_str()), (event::NODE_CHILDREN_CHANGED, "/"));
    let (none, created) = app.exists_w("/later").await.unwrap();
    assert!(none.is_none());
    zk.create("/app/later", b"", open_acl(), CreateMode::Ephemeral).await.unwrap();
    assert_eq!(created.await.unwrap().event_type, event::NODE_CREATED);
    assert_eq!(zk.get_ephemerals("/").await.unwrap(), vec!["/app/later"]);
    let mut events = zk.add_watch("/app", true).await.unwrap();
    app.create("/deep", b"", open_acl(), CreateMode::Persistent).await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(5), events.recv()).await.unwrap().unwrap();
    assert_eq!((ev.event_type, ev.path.as_str()), (event::NODE_CREATED, "/app/deep"));
    zk.close().await;
    app.close().await;
    s.shutdown().await;
}

#[tokio::test]
async fn multi_and_auth() {
    let s = server("multi").await;
    let zk = Client::connect(&s.connect_string()).await.unwrap();
    let ok = zk
        .multi(vec![
            Op::Create { path: "/m".into(), data: b"x".to_vec(), acl: open_acl(), mode: CreateMode::Persistent },
            Op::SetData { path: "/m".into(), data: b"y".to_vec(), version: 0 },
        ])
        .await
        .unwrap();
    assert_eq!(ok.len(), 2);
    let err = zk
        .multi(vec![Op::Check { path: "/m".into(), version: 0 }, Op::Delete { path: "/m".into(), version: -1 }])
        .await
        .unwrap_err();
    assert_eq!(err.0, ErrorCode::BadVersion);
    assert_eq!(err.1, vec![OpResult::Error(-103), OpResult::Error(-2)]);
    zk.add_auth("digest", b"alice:secret").await.unwrap();
    zk.create("/private", b"s", creator_all_acl(), CreateMode::Persistent).await.unwrap();
    let other = Client::connect(&s.connect_string()).await.unwrap();
    assert_eq!(other.get_data("/private").await, Err(ErrorCode::NoAuth));
    let (acl, _) = zk.get_acl("/private").await.unwrap();
    assert_eq!(acl[0].id.id, digest_id("alice", "secret"));
    assert!(zk.who_am_i().await.unwrap().contains(&("digest".to_string(), "alice".to_string())));
    s.shutdown().await;
}

#[tokio::test]
async fn the_session_survives_a_server_restart_and_its_watches_are_restored() {
    let s = server("restart").await;
    let addr = s.client_addr();
    let dir = s.config().data_dir.clone();
    let zk = Client::builder(&s.connect_string()).session_timeout(Duration::from_secs(10)).connect().await.unwrap();
    zk.create("/eph", b"", open_acl(), CreateMode::Ephemeral).await.unwrap();
    zk.create("/w", b"", open_acl(), CreateMode::Persistent).await.unwrap();
    let (_, changed) = zk.get_data_w("/w").await.unwrap();
    let session = zk.session_id();
    s.shutdown().await;
    let s = Server::builder().client_addr(addr).data_dir(dir).tick_time(200).start().await.unwrap();
    // The client reconnects by itself and re-attaches the same session.
    let mut tries = 0;
    let stat = loop {
        match zk.exists("/eph").await {
            Ok(st) => break st,
            Err(ErrorCode::ConnectionLoss) if tries < 100 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    };
    assert_eq!(stat.unwrap().ephemeral_owner, session);
    assert_eq!(zk.session_id(), session);
    let other = Client::connect(&s.connect_string()).await.unwrap();
    other.set_data("/w", b"new", -1).await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(5), changed).await.unwrap().unwrap();
    assert_eq!(ev.event_type, event::NODE_DATA_CHANGED);
    s.shutdown().await;
}

#[tokio::test]
async fn removing_watches_tells_their_watchers_and_says_when_there_are_none() {
    let s = server("remove-watches").await;
    let zk = Client::connect(&s.connect_string()).await.unwrap();
    zk.create("/r", b"", open_acl(), CreateMode::Persistent).await.unwrap();
    let (_, data_watch) = zk.get_data_w("/r").await.unwrap();
    let (_, child_watch) = zk.get_children_w("/r").await.unwrap();
    zk.remove_watches("/r", watcher_type::DATA).await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(5), data_watch).await.unwrap().unwrap();
    assert_eq!((ev.event_type, ev.path.as_str()), (event::DATA_WATCH_REMOVED, "/r"));
    assert_eq!(zk.remove_watches("/r", watcher_type::DATA).await, Err(ErrorCode::NoWatcher));
    // The child watch stayed, here and on the server.
    zk.create("/r/c", b"", open_acl(), CreateMode::Persistent).await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(5), child_watch).await.unwrap().unwrap();
    assert_eq!(ev.event_type, event::NODE_CHILDREN_CHANGED);
    zk.close().await;
    s.shutdown().await;
}

/// The Java client's delivery on the same core: one default watcher, which hears an event once
/// however many of its watches match, hears state changes, and gets paths without the chroot.
#[tokio::test]
async fn the_default_watcher_hears_each_event_once_and_every_state_change() {
    use ferrozk_client::raw::{RawOptions, RawSession, Registration};
    use ferrozk_proto::{codes::op, jute, AddWatchRequest, ExistsRequest, GetDataRequest};
    use std::sync::{Arc, Mutex};

    let s = server("default-watcher").await;
    let zk = Client::connect(&s.connect_string()).await.unwrap();
    zk.create("/chroot", b"", open_acl(), CreateMode::Persistent).await.unwrap();
    zk.create("/chroot/n", b"", open_acl(), CreateMode::Persistent).await.unwrap();
    let heard: Arc<Mutex<Vec<WatchedEvent>>> = Arc::default();
    let sink = heard.clone();
    let port = s.connect_string().rsplit(':').next().unwrap().parse().unwrap();
    let raw = RawSession::start(RawOptions {
        hosts: vec![("127.0.0.1".into(), port)],
        chroot: "/chroot".into(),
        timeout_ms: 10_000,
        read_only: false,
        default_watcher: Arc::new(move |ev: &WatchedEvent| sink.lock().unwrap().push(ev.clone())),
    });
    // Made before the connection is up: it waits for it.
    let exists = jute::to_bytes(&ExistsRequest { path: "/chroot/n".into(), watch: true });
    let (h, _) = raw.call(op::EXISTS, exists, Some(Registration::Exists("/chroot/n".into()))).await.unwrap();
    assert_eq!(h.err, 0);
    let get = jute::to_bytes(&GetDataRequest { path: "/chroot/n".into(), watch: true });
    raw.call(op::GET_DATA, get.clone(), Some(Registration::Data("/chroot/n".into()))).await.unwrap();
    raw.call(op::GET_DATA, get, Some(Registration::Data("/chroot/n".into()))).await.unwrap();
    let persistent = jute::to_bytes(&AddWatchRequest { path: "/chroot/n".into(), mode: 0 });
    raw.call(op::ADD_WATCH, persistent, Some(Registration::Persistent("/chroot/n".into()))).await.unwrap();
    zk.set_data("/chroot/n", b"x", -1).await.unwrap();
    // A request after the change: its reply comes after the notification.
    raw.call(op::EXISTS, jute::to_bytes(&ExistsRequest { path: "/chroot".into(), watch: false }), None).await.unwrap();
    raw.close().await;
    let heard: Vec<(i32, i32, String)> = heard.lock().unwrap().iter().map(|e| (e.event_type, e.state, e.path.clone())).collect();
    assert_eq!(
        heard,
        vec![
            (event::NONE, state::SYNC_CONNECTED, String::new()),
            (event::NODE_DATA_CHANGED, state::SYNC_CONNECTED, "/n".to_string()),
            (event::NONE, state::CLOSED, String::new()),
        ]
    );
    assert_eq!(raw.state(), SessionState::Closed);
    zk.close().await;
    s.shutdown().await;
}
