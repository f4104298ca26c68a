//! Three in-process members on loopback: writes through any member, sync and linearizable
//! reads, a leader stopped and the others carrying on, and equal trees at the end.

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ferrozk_client::{open_acl, Client, CreateMode};
use ferrozk_server::config::Member;
use ferrozk_server::{Server, ServerBuilder, ServerConfig};

/// A free port below the kernel's ephemeral range (32768 and up): a member restarted on its
/// ports must not find one taken by another member's outgoing connection made meanwhile.
fn free_port() -> u16 {
    // From a random start, each call the next: never the same port twice in a process (the
    // tests run side by side, and nothing holds a port until its server binds it).
    use std::sync::atomic::{AtomicU16, Ordering::SeqCst};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(0, 12000 + rand::random::<u16>() % 18000, SeqCst, SeqCst);
    loop {
        let port = NEXT.fetch_add(1, SeqCst);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

struct Plan {
    root: PathBuf,
    members: Vec<Member>,
    clients: Vec<u16>,
}

fn plan(name: &str, n: u64) -> Plan {
    let root = std::env::temp_dir().join(format!("ferrozk-ensemble-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let members = (1..=n).map(|id| Member::parse(id, &format!("127.0.0.1:{}:{}", free_port(), free_port())).unwrap()).collect();
    let clients = (1..=n).map(|_| free_port()).collect();
    Plan { root, members, clients }
}

async fn start(p: &Plan, id: u64, linearizable: bool) -> Server {
    start_with(p, id, |c| c.linearizable_reads = linearizable).await
}

async fn start_with(p: &Plan, id: u64, tune: impl FnOnce(&mut ServerConfig)) -> Server {
    let mut config = ServerConfig { tick_time: 200, members: p.members.clone(), my_id: Some(id), ..Default::default() };
    tune(&mut config);
    ServerBuilder::from_config(config)
        .client_addr(format!("127.0.0.1:{}", p.clients[id as usize - 1]).parse().unwrap())
        .data_dir(p.root.join(format!("m{id}")))
        .start()
        .await
        .unwrap()
}

async fn wait_for_leader(servers: &[&Server]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let roles: Vec<&str> = servers.iter().map(|s| s.role()).collect();
        if roles.iter().filter(|r| **r == "leader").count() == 1
            && roles.iter().all(|r| matches!(*r, "leader" | "follower" | "observer"))
        {
            return roles.iter().position(|r| *r == "leader").unwrap();
        }
        assert!(Instant::now() < deadline, "no leader: {roles:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn connect(port: u16) -> Client {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match Client::connect(&format!("127.0.0.1:{port}")).await {
            Ok(c) => return c,
            Err(e) if Instant::now() > deadline => panic!("cannot connect to {port}: {e:?}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_any_member_survive_the_leader() {
    let p = plan("failover", 3);
    let mut servers = Vec::new();
    for id in 1..=3 {
        servers.push(Some(start(&p, id, false).await));
    }
    let leader = wait_for_leader(&servers.iter().flatten().collect::<Vec<_>>()).await;
    let clients: Vec<Client> = futures_join(p.clients.iter().map(|port| connect(*port))).await;
    // A write through each member; a sync then a read through every member sees all of them.
    for (i, c) in clients.iter().enumerate() {
        c.create(&format!("/via{i}"), format!("{i}").as_bytes(), open_acl(), CreateMode::Persistent).await.unwrap();
    }
    for c in &clients {
        c.sync("/").await.unwrap();
        for i in 0..3 {
            assert_eq!(c.get_data(&format!("/via{i}")).await.unwrap().0, format!("{i}").as_bytes());
        }
    }
    // An ephemeral of a follower's client lives on the leader too.
    let follower = (leader + 1) % 3;
    clients[follower].create("/eph", b"", open_acl(), CreateMode::Ephemeral).await.unwrap();
    clients[leader].sync("/").await.unwrap();
    assert!(clients[leader].exists("/eph").await.unwrap().is_some());
    // Stop the leader: the other two elect one and go on accepting writes.
    drop(clients);
    servers[leader].take().unwrap().shutdown().await;
    let rest: Vec<&Server> = servers.iter().flatten().collect();
    wait_for_leader(&rest).await;
    let survivor = p.clients[(leader + 1) % 3];
    let c = connect(survivor).await;
    c.create("/after", b"x", open_acl(), CreateMode::Persistent).await.unwrap();
    for i in 0..3 {
        assert!(c.exists(&format!("/via{i}")).await.unwrap().is_some(), "acknowledged write /via{i} lost");
    }
    drop(c);
    // The old leader comes back, catches up, and every tree is the same.
    servers[leader] = Some(start(&p, leader as u64 + 1, false).await);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let digests: Vec<(i64, u64)> = servers.iter().flatten().map(|s| s.digest()).collect();
        if digests.windows(2).all(|w| w[0] == w[1]) {
            break;
        }
        assert!(Instant::now() < deadline, "members disagree: {digests:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for s in servers.into_iter().flatten() {
        s.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&p.root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linearizable_reads_see_writes_acknowledged_elsewhere() {
    let p = plan("linearizable", 3);
    let mut servers = Vec::new();
    for id in 1..=3 {
        servers.push(start(&p, id, true).await);
    }
    let leader = wait_for_leader(&servers.iter().collect::<Vec<_>>()).await;
    let writer = connect(p.clients[leader]).await;
    let reader = connect(p.clients[(leader + 1) % 3]).await;
    writer.create("/v", b"0", open_acl(), CreateMode::Persistent).await.unwrap();
    for i in 1..=50 {
        writer.set_data("/v", format!("{i}").as_bytes(), -1).await.unwrap();
        // No sync: the read itself waits for the leader's log position.
        assert_eq!(reader.get_data("/v").await.unwrap().0, format!("{i}").as_bytes());
    }
    drop((writer, reader));
    for s in servers {
        s.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&p.root);
}

async fn wait_for_equal_digests(servers: &[&Server]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let digests: Vec<(i64, u64)> = servers.iter().map(|s| s.digest()).collect();
        if digests.windows(2).all(|w| w[0] == w[1]) {
            return;
        }
        assert!(Instant::now() < deadline, "members disagree: {digests:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_serves_clients_without_voting() {
    let mut p = plan("observer", 3);
    p.members[2].observer = true;
    let mut servers = Vec::new();
    for id in 1..=3 {
        servers.push(start(&p, id, false).await);
    }
    wait_for_leader(&servers.iter().collect::<Vec<_>>()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while servers[2].role() != "observer" {
        assert!(Instant::now() < deadline, "member 3 is {}", servers[2].role());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Writes through the observer are forwarded; reads there see them after sync.
    let c = connect(p.clients[2]).await;
    c.create("/from-observer", b"o", open_acl(), CreateMode::Persistent).await.unwrap();
    let other = connect(p.clients[0]).await;
    other.create("/from-voter", b"v", open_acl(), CreateMode::Persistent).await.unwrap();
    c.sync("/").await.unwrap();
    assert_eq!(c.get_data("/from-voter").await.unwrap().0, b"v");
    drop((c, other));
    wait_for_equal_digests(&servers.iter().collect::<Vec<_>>()).await;
    for s in servers {
        s.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&p.root);
}

/// `FERROZK_TEST_LOG=info` (an EnvFilter) shows the members' logs.
fn init_test_log() {
    if std::env::var("FERROZK_TEST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_env("FERROZK_TEST_LOG")).try_init();
    }
}

/// Starts every member of `p`, then stops one follower: the members (the stopped one `None`),
/// the leader's position and the stopped follower's.
async fn start_with_a_follower_down(p: &Plan, tune: impl Fn(&mut ServerConfig) + Copy) -> (Vec<Option<Server>>, usize, usize) {
    let mut servers = Vec::new();
    for id in 1..=p.members.len() as u64 {
        servers.push(Some(start_with(p, id, tune).await));
    }
    let leader = wait_for_leader(&servers.iter().flatten().collect::<Vec<_>>()).await;
    let behind = (leader + 1) % servers.len();
    servers[behind].take().unwrap().shutdown().await;
    (servers, leader, behind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_far_behind_catches_up_from_a_snapshot() {
    init_test_log();
    let p = plan("snapshot", 3);
    let small = |c: &mut ServerConfig| c.snap_count = 20;
    let (mut servers, leader, behind) = start_with_a_follower_down(&p, small).await;
    // Far more entries than the leader keeps behind its snapshots (two snapCounts).
    let c = connect(p.clients[leader]).await;
    for i in 0..300 {
        c.create(&format!("/n{i}"), format!("{i}").as_bytes(), open_acl(), CreateMode::Persistent).await.unwrap();
    }
    drop(c);
    let leader_dir = p.root.join(format!("m{}", leader + 1)).join("snapshots");
    assert!(std::fs::read_dir(&leader_dir).map(|d| d.count()).unwrap_or(0) > 0, "the leader took no snapshot");
    servers[behind] = Some(start_with(&p, behind as u64 + 1, small).await);
    wait_for_equal_digests(&servers.iter().flatten().collect::<Vec<_>>()).await;
    let c = connect(p.clients[behind]).await;
    c.sync("/").await.unwrap();
    assert_eq!(c.get_data("/n299").await.unwrap().0, b"299");
    drop(c);
    let behind_dir = p.root.join(format!("m{}", behind + 1)).join("snapshots");
    assert!(std::fs::read_dir(&behind_dir).map(|d| d.count()).unwrap_or(0) > 0, "no snapshot was installed");
    for s in servers.into_iter().flatten() {
        s.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&p.root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_behind_catches_up_from_log_files_the_leader_no_longer_caches() {
    init_test_log();
    let p = plan("logfiles", 3);
    let (mut servers, leader, behind) = start_with_a_follower_down(&p, |_| {}).await;
    // More bytes of writes than the leader keeps in memory (4 MiB), and no snapshot (the
    // default snapCount is far off): the entries the member misses come from the files.
    let c = connect(p.clients[leader]).await;
    for i in 0..40 {
        let value = vec![b'a' + (i % 26) as u8; 900_000];
        c.create(&format!("/big{i}"), &value, open_acl(), CreateMode::Persistent).await.unwrap();
    }
    drop(c);
    let leader_dir = p.root.join(format!("m{}", leader + 1)).join("snapshots");
    assert_eq!(std::fs::read_dir(&leader_dir).map(|d| d.count()).unwrap_or(0), 0, "the leader took a snapshot");
    servers[behind] = Some(start_with(&p, behind as u64 + 1, |_| {}).await);
    wait_for_equal_digests(&servers.iter().flatten().collect::<Vec<_>>()).await;
    let c = connect(p.clients[behind]).await;
    assert_eq!(c.get_data("/big0").await.unwrap().0, vec![b'a'; 900_000]);
    drop(c);
    for s in servers.into_iter().flatten() {
        s.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&p.root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconfig_adds_and_removes_an_observer_with_zookeepers_errors() {
    let p = plan("reconfig", 3);
    let tune = |c: &mut ServerConfig| {
        c.reconfig_enabled = true;
        // user "super", password "test"
        c.super_digest = Some("super:D/InIHSb7yEEbrWz8b9l71RjZJU=".into());
    };
    let mut servers = Vec::new();
    for id in 1..=3 {
        servers.push(start_with(&p, id, tune).await);
    }
    let leader = wait_for_leader(&servers.iter().collect::<Vec<_>>()).await;
    // Through a follower: the leader carries it out.
    let c = connect(p.clients[(leader + 1) % 3]).await;
    let joining = "server.9=127.0.0.1:1:2:observer;127.0.0.1:3";
    assert_eq!(c.reconfig(Some(joining), None, None, -1).await.unwrap_err(), ferrozk_client::ErrorCode::NoAuth);
    assert_eq!(c.reconfig(Some("some thing"), None, None, -1).await.unwrap_err(), ferrozk_client::ErrorCode::BadArguments);
    c.add_auth("digest", b"super:test").await.unwrap();
    let (data, stat) = c.reconfig(Some(joining), None, None, -1).await.unwrap();
    let text = String::from_utf8(data).unwrap();
    assert!(text.contains(joining), "{text}");
    let version = i64::from_str_radix(text.lines().last().unwrap().strip_prefix("version=").unwrap(), 16).unwrap();
    assert_eq!(stat.mzxid, version, "the version is the reconfig's zxid");
    assert_eq!(c.reconfig(None, Some("9"), None, version + 1).await.unwrap_err(), ferrozk_client::ErrorCode::BadVersion);
    let (data, _) = c.reconfig(None, Some("9"), None, version).await.unwrap();
    assert!(!String::from_utf8_lossy(&data).contains("server.9="));
    // Every member shows the same configuration.
    for port in &p.clients {
        let other = connect(*port).await;
        other.sync("/zookeeper/config").await.unwrap();
        assert_eq!(other.get_data("/zookeeper/config").await.unwrap().0, data);
    }
    drop(c);
    for s in servers {
        s.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&p.root);
}

/// As ZooKeeper's: a member that `reconfig` removes keeps following the leader without voting
/// (its clients read current data and their writes go through), and is not in the config. The
/// leader removes itself here, so the new leader publishes the config it could not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_follows_without_voting() {
    init_test_log();
    let p = plan("removed", 3);
    let tune = |c: &mut ServerConfig| {
        c.reconfig_enabled = true;
        c.super_digest = Some("super:D/InIHSb7yEEbrWz8b9l71RjZJU=".into());
        c.four_letter_whitelist = vec!["mntr".into()];
    };
    let mut servers = Vec::new();
    for id in 1..=3 {
        servers.push(start_with(&p, id, tune).await);
    }
    let leader = wait_for_leader(&servers.iter().collect::<Vec<_>>()).await;
    let removed = connect(p.clients[leader]).await;
    removed.create("/before", b"", open_acl(), CreateMode::Persistent).await.unwrap();
    let admin = connect(p.clients[(leader + 1) % 3]).await;
    admin.add_auth("digest", b"super:test").await.unwrap();
    // The answer may be lost with the leader that carried it out; what the members show is the check.
    let _ = admin.reconfig(None, Some(&(leader + 1).to_string()), None, -1).await;
    let gone = format!("server.{}=", leader + 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    for port in &p.clients {
        let c = connect(*port).await;
        loop {
            let _ = c.sync("/zookeeper/config").await;
            let text =
                c.get_data("/zookeeper/config").await.map(|(d, _)| String::from_utf8_lossy(&d).into_owned()).unwrap_or_default();
            if !text.is_empty() && !text.contains(&gone) {
                assert_eq!(text.lines().filter(|l| l.starts_with("server.")).count(), 2, "{text}");
                break;
            }
            assert!(Instant::now() < deadline, "member on {port} still shows {gone}: {text:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let voters: Vec<&Server> = servers.iter().enumerate().filter(|(i, _)| *i != leader).map(|(_, s)| s).collect();
    wait_for_leader(&voters).await;
    assert_eq!(servers[leader].role(), "follower", "the removed member follows");
    // A write made elsewhere reaches the removed member, and its own clients can still write
    // (a request may meet the connection a leader change closed: retried).
    admin.retrying().create("/after", b"x", open_acl(), CreateMode::Persistent).await.unwrap();
    let removed = connect(p.clients[leader]).await;
    removed.retry(|| removed.sync("/after")).await.unwrap();
    assert_eq!(removed.retrying().get_data("/after").await.unwrap().0, b"x");
    removed.retrying().create("/from-removed", b"", open_acl(), CreateMode::Persistent).await.unwrap();
    admin.retry(|| admin.sync("/from-removed")).await.unwrap();
    assert!(admin.retrying().exists("/from-removed").await.unwrap().is_some());
    // The new leader counts it as ZooKeeper's does: a synced non-voting follower of two voters.
    let new_leader = servers.iter().position(|s| s.role() == "leader").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mntr = four_letter(p.clients[new_leader], "mntr").await;
        if mntr.contains("zk_synced_non_voting_followers\t1\n") {
            assert!(mntr.contains("zk_quorum_size\t2\n") && mntr.contains("zk_synced_followers\t1\n"), "{mntr}");
            break;
        }
        assert!(Instant::now() < deadline, "{mntr}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop((admin, removed));
    wait_for_equal_digests(&servers.iter().collect::<Vec<_>>()).await;
    for s in servers {
        s.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&p.root);
}

async fn four_letter(port: u16, word: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(word.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

async fn futures_join<F: std::future::Future<Output = Client>>(fs: impl Iterator<Item = F>) -> Vec<Client> {
    let mut out = Vec::new();
    for f in fs {
        out.push(f.await);
    }
    out
}
