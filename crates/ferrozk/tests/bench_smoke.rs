//! `ferrozk bench` counts what it did: a short run of the create workload against a server,
//! then the nodes it made are counted.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferrozk_client::Client;

#[tokio::test]
async fn bench_counts_the_operations_it_completed() {
    let dir = std::env::temp_dir().join(format!("ferrozk-bench-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = dir.join("zoo.cfg");
    writeln!(std::fs::File::create(&cfg).unwrap(), "tickTime=200\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1", dir.join("data").display()).unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_ferrozk")).arg("server").arg(&cfg).stderr(Stdio::null()).spawn().unwrap();
    let servers = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while Client::connect(&servers).await.is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (sessions, inflight) = (3u64, 4u64);
    let out = Command::new(env!("CARGO_BIN_EXE_ferrozk"))
        .args(["bench", "--servers", &servers, "--workload", "create", "--count", "500", "--no-warmup", "--json"])
        .args(["--sessions", &sessions.to_string(), "--inflight", &inflight.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json = String::from_utf8(out.stdout).unwrap();
    let field = |name: &str| -> f64 {
        let at = json.find(&format!("\"{name}\":")).unwrap_or_else(|| panic!("{name} in {json}")) + name.len() + 3;
        json[at..].split([',', '}']).next().unwrap().parse().unwrap()
    };
    let ops = field("ops") as u64;
    assert!(ops >= 500, "stopped early: {json}");
    assert_eq!(field("errors"), 0.0);
    assert!(field("p50") > 0.0 && field("p99") >= field("p50"), "{json}");
    // Every counted create made a node; requests still in flight at the stop may add a few.
    let zk = Client::connect(&servers).await.unwrap();
    let (children, _) = zk.get_children("/ferrozk-bench/seq").await.unwrap();
    let made = children.len() as u64;
    assert!(made >= ops && made <= ops + sessions * inflight, "{made} nodes for {ops} counted creates");
    server.kill().unwrap();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
