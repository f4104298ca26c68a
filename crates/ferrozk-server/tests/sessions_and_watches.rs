//! Sessions, ephemerals and watches as a client sees them.

mod common;

use std::time::Duration;

use common::*;
use ferrozk_proto::codes::{event, op};
use ferrozk_proto::*;

#[test]
fn stat_fields_move_as_in_zookeeper() {
    let s = TestServer::start(|b| b);
    let mut c = Client::connect(s.addr);
    let (_, p) = c.create("/p", b"ab", 0).unwrap();
    assert_eq!((p.version, p.cversion, p.aversion, p.data_length, p.num_children), (0, 0, 0, 2, 0));
    assert_eq!(p.czxid, p.mzxid);
    assert_eq!(p.czxid, p.pzxid);
    let (name, child) = c.create("/p/c-", b"", 2).unwrap();
    assert_eq!(name, "/p/c-0000000000");
    let parent = c.exists("/p", false).unwrap();
    assert_eq!((parent.cversion, parent.num_children, parent.pzxid), (1, 1, child.czxid));
    assert_eq!(parent.mzxid, p.mzxid, "a child does not change the parent's mzxid");
    let set = c.set("/p", b"xyz", 0).unwrap();
    assert_eq!((set.version, set.data_length), (1, 3));
    assert!(set.mzxid > child.czxid);
    assert_eq!(c.set("/p", b"", 0), Err(ErrorCode::BadVersion));
    c.delete(&name, -1).unwrap();
    let after = c.exists("/p", false).unwrap();
    assert_eq!(after.num_children, 0);
    assert!(after.pzxid > child.czxid, "delete moves pzxid");
    assert_eq!(after.cversion, 2, "a delete is a change to the children too");
    // The sequence keeps counting from cversion.
    assert_eq!(c.create("/p/c-", b"", 2).unwrap().0, "/p/c-0000000001");
    assert_eq!(c.delete("/p", -1), Err(ErrorCode::NotEmpty));
}

#[test]
fn ephemerals_go_with_their_session_and_cannot_have_children() {
    let s = TestServer::start(|b| b);
    let mut a = Client::connect(s.addr);
    let mut b = Client::connect(s.addr);
    let (_, st) = a.create("/e", b"", 1).unwrap();
    assert_eq!(st.ephemeral_owner, a.session);
    assert_eq!(a.create("/e/child", b"", 0), Err(ErrorCode::NoChildrenForEphemerals));
    b.exists("/e", true).unwrap();
    a.close();
    // b's watch fires; the ping's reply comes after the notification.
    let (h, _) = b.call(&Request::Ping);
    assert_eq!(h.xid, -2);
    assert_eq!(b.events, vec![(event::NODE_DELETED, "/e".to_string())]);
    assert_eq!(b.exists("/e", false), Err(ErrorCode::NoNode));
}

#[test]
fn a_session_without_pings_expires_and_loses_its_ephemerals() {
    let s = TestServer::start(|b| b.session_timeouts(400, 400));
    let mut quiet = Client::connect(s.addr);
    let mut watcher = Client::connect(s.addr);
    quiet.create("/lease", b"", 1).unwrap();
    // The watcher pings, as clients do every third of the timeout; the quiet one does not.
    for _ in 0..12 {
        std::thread::sleep(Duration::from_millis(100));
        watcher.call(&Request::Ping);
    }
    assert_eq!(watcher.exists("/lease", false), Err(ErrorCode::NoNode));
    assert!(is_closed(&mut quiet.stream, Duration::from_secs(2)));
    // Re-attaching to an expired session is refused (timeout 0).
    assert!(Client::connect_with(s.addr, quiet.session, quiet.passwd.clone(), 30000, 0).is_none());
}

#[test]
fn reattach_needs_the_password_and_moves_the_session() {
    let s = TestServer::start(|b| b);
    let mut a = Client::connect(s.addr);
    a.create("/mine", b"", 1).unwrap();
    assert!(Client::connect_with(s.addr, a.session, vec![9; 16], 30000, 0).is_none());
    let mut again = Client::connect_with(s.addr, a.session, a.passwd.clone(), 30000, 0).unwrap();
    assert_eq!(again.session, a.session);
    // The old connection is closed; the session and its ephemeral live on.
    assert!(is_closed(&mut a.stream, Duration::from_secs(2)));
    assert_eq!(again.exists("/mine", false).unwrap().ephemeral_owner, again.session);
}

#[test]
fn a_client_ahead_of_the_server_is_refused() {
    let s = TestServer::start(|b| b);
    assert!(Client::connect_with(s.addr, 0, vec![0; 16], 30000, 1 << 40).is_none());
}

#[test]
fn timeouts_are_clamped_to_the_configured_range() {
    let s = TestServer::start(|b| b.session_timeouts(4000, 8000));
    assert_eq!(Client::connect_with(s.addr, 0, vec![0; 16], 100, 0).unwrap().timeout, 4000);
    assert_eq!(Client::connect_with(s.addr, 0, vec![0; 16], 60000, 0).unwrap().timeout, 8000);
}

#[test]
fn notification_precedes_the_reply_that_shows_the_change() {
    let s = TestServer::start(|b| b);
    let mut w = Client::connect(s.addr);
    let mut writer = Client::connect(s.addr);
    writer.create("/n", b"0", 0).unwrap();
    w.get("/n", true).unwrap();
    w.children("/", true).unwrap();
    writer.set("/n", b"1", -1).unwrap();
    writer.create("/n2", b"", 0).unwrap();
    let (data, _) = w.get("/n", false).unwrap();
    assert_eq!(data.unwrap(), b"1");
    let order: Vec<_> = w.order.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    let changed = order.iter().position(|e| e == "event:/n").expect("data watch fired");
    let read = order.iter().rposition(|e| e.starts_with("reply")).unwrap();
    assert!(changed < read, "{order:?}");
    assert!(w.events.contains(&(event::NODE_DATA_CHANGED, "/n".into())));
    assert!(w.events.contains(&(event::NODE_CHILDREN_CHANGED, "/".into())));
    // One-shot: a second change fires nothing more.
    writer.set("/n", b"2", -1).unwrap();
    w.call(&Request::Ping);
    assert_eq!(w.events.iter().filter(|e| e.1 == "/n").count(), 1);
}

#[test]
fn persistent_recursive_watch_sees_the_subtree_and_stays() {
    let s = TestServer::start(|b| b);
    let mut w = Client::connect(s.addr);
    let mut c = Client::connect(s.addr);
    let (h, _) = w.call(&Request::AddWatch(AddWatchRequest { path: "/r".into(), mode: 1 }));
    assert_eq!(h.err, 0);
    c.create("/r", b"", 0).unwrap();
    c.create("/r/a", b"", 0).unwrap();
    c.set("/r/a", b"x", -1).unwrap();
    c.delete("/r/a", -1).unwrap();
    w.call(&Request::Ping);
    assert_eq!(
        w.events,
        vec![
            (event::NODE_CREATED, "/r".into()),
            (event::NODE_CREATED, "/r/a".into()),
            (event::NODE_DATA_CHANGED, "/r/a".into()),
            (event::NODE_DELETED, "/r/a".into()),
        ]
    );
    let (h, _) = w.call(&Request::RemoveWatches(RemoveWatchesRequest { path: "/r".into(), watch_type: 5 }));
    assert_eq!(h.err, 0);
    let (h, _) = w.call(&Request::RemoveWatches(RemoveWatchesRequest { path: "/r".into(), watch_type: 5 }));
    assert_eq!(h.err, ErrorCode::NoWatcher.code());
}

#[test]
fn multi_is_all_or_nothing_with_zookeeper_result_codes() {
    let s = TestServer::start(|b| b);
    let mut c = Client::connect(s.addr);
    let create = |p: &str| MultiOp::Create(op::CREATE, CreateRequest { path: p.into(), data: None, acl: open_acl(), flags: 0 });
    let bad = MultiRequest {
        ops: vec![create("/m1"), MultiOp::Delete(DeleteRequest { path: "/missing".into(), version: -1 }), create("/m2")],
    };
    let (h, body) = c.call(&Request::Multi(bad));
    assert_eq!(h.err, 0);
    let r = MultiResponse::decode(&mut Reader::new(&body)).unwrap();
    assert_eq!(r.results, vec![OpResult::Error(0), OpResult::Error(-101), OpResult::Error(-2)]);
    assert_eq!(c.exists("/m1", false), Err(ErrorCode::NoNode));
    let good = MultiRequest { ops: vec![create("/m1"), MultiOp::Check(CheckVersionRequest { path: "/m1".into(), version: 0 })] };
    let (_, body) = c.call(&Request::Multi(good));
    let r = MultiResponse::decode(&mut Reader::new(&body)).unwrap();
    assert_eq!(r.results, vec![OpResult::Create("/m1".into()), OpResult::Check]);
    // null data stays null
    assert_eq!(c.get("/m1", false).unwrap().0, None);
}

#[test]
fn a_restart_keeps_data_zxids_and_sessions() {
    let s = TestServer::start(|b| b);
    let mut c = Client::connect(s.addr);
    c.create("/kept", b"v", 0).unwrap();
    c.create("/kept/s-", b"", 2).unwrap();
    c.create("/kept/eph", b"", 1).unwrap();
    let before = c.exists("/kept", false).unwrap();
    let (session, passwd) = (c.session, c.passwd.clone());
    drop(c);
    let s = s.restart();
    // The client re-attaches with its session; its ephemeral is still there.
    let mut c = Client::connect_with(s.addr, session, passwd, 30000, before.pzxid).expect("session survives");
    assert_eq!(c.exists("/kept", false).unwrap(), before);
    assert_eq!(c.exists("/kept/eph", false).unwrap().ephemeral_owner, session);
    assert_eq!(c.create("/kept/s-", b"", 2).unwrap().0, "/kept/s-0000000002", "sequence continues");
    let (_, st) = c.create("/after", b"", 0).unwrap();
    assert!(st.czxid > before.pzxid, "zxids continue after a restart");
}

#[test]
fn empty_containers_and_expired_ttl_nodes_are_reaped() {
    let s = TestServer::start(|b| b.extended_types(true).container_check_interval_ms(100));
    let mut c = Client::connect(s.addr);
    let container = CreateRequest { path: "/box".into(), data: None, acl: open_acl(), flags: 4 };
    let (h, _) = c.call(&Request::Create(op::CREATE_CONTAINER, container));
    assert_eq!(h.err, 0);
    // Clients see ephemeralOwner 0 for containers and TTL nodes, as in ZooKeeper.
    assert_eq!(c.exists("/box", false).unwrap().ephemeral_owner, 0);
    let ttl = |path: &str, ttl: i64| CreateTtlRequest { path: path.into(), data: None, acl: open_acl(), flags: 5, ttl };
    let (h, body) = c.call(&Request::CreateTtl(ttl("/short", 200)));
    assert_eq!(h.err, 0);
    let st = Create2Response::decode(&mut Reader::new(&body)).unwrap().stat;
    assert_eq!(st.ephemeral_owner, 0);
    assert_eq!(c.call(&Request::CreateTtl(ttl("/bad", 0))).0.err, ErrorCode::BadArguments.code());
    // A never-used container stays; once it had a child and lost it, it goes.
    std::thread::sleep(Duration::from_millis(500));
    assert!(c.exists("/box", false).is_ok());
    assert_eq!(c.exists("/short", false), Err(ErrorCode::NoNode), "TTL node expired");
    c.create("/box/item", b"", 0).unwrap();
    c.delete("/box/item", -1).unwrap();
    let mut gone = false;
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(50));
        if c.exists("/box", false) == Err(ErrorCode::NoNode) {
            gone = true;
            break;
        }
    }
    assert!(gone, "empty container was not reaped");
}

#[test]
fn ttl_nodes_need_extended_types() {
    let s = TestServer::start(|b| b);
    let mut c = Client::connect(s.addr);
    let req = CreateTtlRequest { path: "/t".into(), data: None, acl: open_acl(), flags: 5, ttl: 1000 };
    assert_eq!(c.call(&Request::CreateTtl(req)).0.err, ErrorCode::Unimplemented.code());
}
