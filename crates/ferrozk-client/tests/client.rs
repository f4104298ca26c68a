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
