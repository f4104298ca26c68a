//! A damaged log is detected, never served: a torn tail is cut, damage elsewhere stops the
//! server with a message naming the file and the offset.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferrozk_client::{open_acl, Client, CreateMode};

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ferrozk-corrupt-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config(d: &Path, port: u16) -> PathBuf {
    let cfg = d.join("zoo.cfg");
    let mut f = std::fs::File::create(&cfg).unwrap();
    writeln!(f, "tickTime=200\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1", d.join("data").display()).unwrap();
    cfg
}

fn port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn client(port: u16) -> Client {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match Client::connect(&format!("127.0.0.1:{port}")).await {
            Ok(c) => return c,
            Err(e) if Instant::now() > deadline => panic!("no server: {e:?}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Writes `n` nodes through a server, then stops it; returns the log segment.
async fn populate(d: &Path, n: usize) -> PathBuf {
    let p = port();
    let mut child =
        Command::new(env!("CARGO_BIN_EXE_ferrozk")).arg("server").arg(config(d, p)).stderr(Stdio::null()).spawn().unwrap();
    let zk = client(p).await;
    for i in 0..n {
        zk.create(&format!("/n{i}"), format!("value {i}").as_bytes(), open_acl(), CreateMode::Persistent).await.unwrap();
    }
    zk.close().await;
    child.kill().unwrap();
    child.wait().unwrap();
    let wal = d.join("data/wal");
    let mut segs: Vec<_> = std::fs::read_dir(&wal).unwrap().flatten().map(|e| e.path()).collect();
    segs.sort();
    segs.pop().unwrap()
}

/// Where a segment's records end: segments are preallocated, zeros follow the records.
fn records_end(segment: &[u8]) -> usize {
    segment.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1)
}

#[tokio::test]
async fn a_torn_last_record_is_cut_and_everything_before_it_served() {
    let d = dir("torn");
    let seg = populate(&d, 20).await;
    // Zero the end of the last record (the closeSession), as a crash mid-write would leave
    // the segment's preallocated room.
    let mut bytes = std::fs::read(&seg).unwrap();
    let end = records_end(&bytes);
    bytes[end - 5..end].fill(0);
    std::fs::write(&seg, &bytes).unwrap();
    let p = port();
    let mut child =
        Command::new(env!("CARGO_BIN_EXE_ferrozk")).arg("server").arg(config(&d, p)).stderr(Stdio::null()).spawn().unwrap();
    let zk = client(p).await;
    for i in 0..20 {
        assert_eq!(zk.get_data(&format!("/n{i}")).await.unwrap().0, format!("value {i}").as_bytes());
    }
    child.kill().unwrap();
    let _ = child.wait();
}

#[test]
fn a_flipped_byte_inside_the_log_stops_the_server_naming_file_and_offset() {
    let d = dir("flip");
    let seg = tokio::runtime::Runtime::new().unwrap().block_on(populate(&d, 20));
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = records_end(&bytes) / 2;
    bytes[at] ^= 0x20;
    std::fs::write(&seg, &bytes).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ferrozk")).arg("server").arg(config(&d, port())).output().unwrap();
    assert!(!out.status.success(), "a damaged log must not be served");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&seg.display().to_string()), "{err}");
    assert!(err.contains("at offset"), "{err}");
    assert!(err.contains("ferrozk: cannot use the data directory: damaged log file"), "named as what it is: {err}");
}

/// Each reason a server does not start is reported as what it is, not as one another.
#[test]
fn a_port_in_use_and_a_bad_config_are_reported_as_such() {
    let d = dir("reasons");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let p = taken.local_addr().unwrap().port();
    let out = Command::new(env!("CARGO_BIN_EXE_ferrozk")).arg("server").arg(config(&d, p)).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("ferrozk: cannot listen for clients on 127.0.0.1:{p}: ")), "{err}");
    let bad = d.join("bad.cfg");
    std::fs::write(&bad, format!("tickTime=2000\ndataDir={}\nclientPort=x\n", d.join("data").display())).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ferrozk")).arg("server").arg(&bad).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.cfg:3: invalid value 'x' for clientPort"), "{err}");
    let _ = std::fs::remove_dir_all(&d);
}
