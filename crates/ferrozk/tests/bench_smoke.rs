//! `ferrozk bench` counts what it did: short runs of the create, lock and watch workloads
//! against a server, then what they left in the tree is compared with what they reported.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferrozk_client::Client;

/// A ferrozk server in a fresh directory, killed when dropped.
struct TestServer {
    child: Child,
    dir: PathBuf,
    servers: String,
}

impl TestServer {
    async fn start(name: &str) -> TestServer {
        let dir = std::env::temp_dir().join(format!("ferrozk-bench-smoke-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let cfg = dir.join("zoo.cfg");
        writeln!(
            std::fs::File::create(&cfg).unwrap(),
            "tickTime=200\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1",
            dir.join("data").display()
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ferrozk")).arg("server").arg(&cfg).stderr(Stdio::null()).spawn().unwrap();
        let servers = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Client::connect(&servers).await.is_err() {
            assert!(Instant::now() < deadline, "server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        TestServer { child, dir, servers }
    }

    /// Runs `ferrozk bench` with `args` (plus --no-warmup --json) and returns its JSON line.
    /// A run that never reaches its --count (every operation failing) fails the test after
    /// two minutes instead of hanging it.
    fn bench(&self, args: &[&str]) -> Json {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferrozk"))
            .args(["bench", "--servers", &self.servers, "--no-warmup", "--json"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("ferrozk bench {args:?} did not finish in 120 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        Json(String::from_utf8(out.stdout).unwrap())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Json(String);

impl Json {
    /// A numeric field, wherever it is in the object (names are unique in bench's output).
    fn field(&self, name: &str) -> f64 {
        let json = &self.0;
        let at = json.find(&format!("\"{name}\":")).unwrap_or_else(|| panic!("{name} in {json}")) + name.len() + 3;
        json[at..].split([',', '}']).next().unwrap().parse().unwrap()
    }
}

#[tokio::test]
async fn bench_counts_the_operations_it_completed() {
    let server = TestServer::start("create").await;
    let (sessions, inflight) = (3u64, 4u64);
    let json = server.bench(&[
        "--workload",
        "create",
        "--count",
        "500",
        "--sessions",
        &sessions.to_string(),
        "--inflight",
        &inflight.to_string(),
    ]);
    let ops = json.field("ops") as u64;
    assert!(ops >= 500, "stopped early: {}", json.0);
    assert_eq!(json.field("errors"), 0.0);
    assert!(json.field("p50") > 0.0 && json.field("p99") >= json.field("p50"), "{}", json.0);
    // Every counted create made a node; requests still in flight at the stop may add a few.
    let zk = Client::connect(&server.servers).await.unwrap();
    let (children, _) = zk.get_children("/ferrozk-bench/seq").await.unwrap();
    let made = children.len() as u64;
    assert!(made >= ops && made <= ops + sessions * inflight, "{made} nodes for {ops} counted creates");
}

#[tokio::test]
async fn lock_counts_hand_offs_and_leaves_no_lock_node() {
    let server = TestServer::start("lock").await;
    let sessions = 4u64;
    let json = server.bench(&["--workload", "lock", "--count", "200", "--sessions", &sessions.to_string()]);
    let ops = json.field("ops") as u64;
    // The contenders that were waiting when the 200th hand-off stopped the run finish theirs.
    assert!((200..=200 + sessions).contains(&ops), "{}", json.0);
    assert_eq!(json.field("errors"), 0.0, "{}", json.0);
    assert_eq!(json.field("exclusion_violations"), 0.0, "{}", json.0);
    assert!(json.field("p50") > 0.0 && json.field("p99") >= json.field("p50"), "{}", json.0);
    // Four contenders queue in turn: nearly every acquisition is a hand-off to another session.
    assert!(json.field("owner_changes") as u64 >= ops / 2, "{}", json.0);
    let zk = Client::connect(&server.servers).await.unwrap();
    let (children, stat) = zk.get_children("/ferrozk-bench/lock").await.unwrap();
    assert!(children.is_empty(), "left behind: {children:?}");
    // Each acquisition created a contender node and its release deleted it: two changes of
    // the lock's children each. A hand-off finished after the count was reached is not counted.
    let acquisitions = stat.cversion as u64 / 2;
    assert!(acquisitions >= ops && acquisitions <= ops + sessions, "{acquisitions} contender nodes for {ops} counted hand-offs");
}

#[tokio::test]
async fn watch_counts_rounds_every_watcher_saw() {
    let server = TestServer::start("watch").await;
    let json = server.bench(&["--workload", "watch", "--count", "50", "--sessions", "4"]);
    // One writer, one setData a round, and it stops at the count.
    assert_eq!(json.field("ops"), 50.0, "{}", json.0);
    assert_eq!(json.field("errors"), 0.0, "{}", json.0);
    assert_eq!(json.field("missed_rounds"), 0.0, "{}", json.0);
    assert_eq!(json.field("watchers"), 4.0, "{}", json.0);
    assert!(json.field("p50") > 0.0 && json.field("p99") >= json.field("p50"), "{}", json.0);
    let zk = Client::connect(&server.servers).await.unwrap();
    let (_, stat) = zk.get_data("/ferrozk-bench/watch").await.unwrap();
    assert_eq!(stat.version, 50, "setData done on the watched node");
}
