//! Snapshots: taken in the background every snapCount entries, used on restart, and a damaged
//! one is passed over for the one before it plus the log.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn snapshots(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("snapshots"))
        .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| !p.to_string_lossy().ends_with(".tmp")).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn wait_for_snapshots(dir: &std::path::Path, n: usize) -> Vec<std::path::PathBuf> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = snapshots(dir);
        if s.len() >= n {
            return s;
        }
        assert!(Instant::now() < deadline, "only {} snapshots were written", s.len());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn restart_from_snapshots_and_fall_back_past_a_damaged_one() {
    let s = TestServer::start(|b| b.snap_count(20));
    let mut c = Client::connect(s.addr);
    c.create("/data", b"", 0).unwrap();
    for i in 0..60 {
        c.create(&format!("/data/n{i}"), format!("v{i}").as_bytes(), 0).unwrap();
    }
    c.create("/data/eph", b"e", 1).unwrap();
    let (session, passwd) = (c.session, c.passwd.clone());
    let before = c.exists("/data", false).unwrap();
    let snaps = wait_for_snapshots(&s.data_dir, 2);
    drop(c);
    let dir = s.data_dir.clone();
    let s = s.restart();
    let mut c = Client::connect_with(s.addr, session, passwd.clone(), 30000, 0).expect("session restored");
    assert_eq!(c.exists("/data", false).unwrap(), before);
    assert_eq!(c.get("/data/n59", false).unwrap().0.unwrap(), b"v59");
    assert_eq!(c.exists("/data/eph", false).unwrap().ephemeral_owner, session);
    drop(c);
    // Damage the newest snapshot: the server must not serve it, and loses nothing.
    let newest = snaps.last().unwrap();
    let mut bytes = std::fs::read(newest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(newest, &bytes).unwrap();
    let s = s.restart();
    assert_eq!(s.data_dir, dir);
    let mut c = Client::connect_with(s.addr, session, passwd, 30000, 0).expect("session restored");
    assert_eq!(c.exists("/data", false).unwrap(), before);
    for i in 0..60 {
        assert_eq!(c.get(&format!("/data/n{i}"), false).unwrap().0.unwrap(), format!("v{i}").as_bytes());
    }
}

/// The record index a snapshot file holds the log up to (its name).
fn snapshot_index(path: &std::path::Path) -> u64 {
    path.file_name().unwrap().to_string_lossy().strip_prefix("snapshot.").unwrap().parse().unwrap()
}

#[test]
fn the_log_is_purged_up_to_the_snapshot_before_the_newest() {
    let s = TestServer::start(|b| b.snap_count(20));
    let mut c = Client::connect(s.addr);
    for i in 0..60 {
        c.create(&format!("/n{i}"), b"", 0).unwrap();
    }
    let snaps = wait_for_snapshots(&s.data_dir, 2);
    // The purge point is a log id (term, node, index as bincode writes them): log index i is
    // record i + 1, which names the snapshot holding it.
    let raft_dir = s.data_dir.join("raft");
    let deadline = Instant::now() + Duration::from_secs(20);
    let purged = loop {
        if let Ok(Some(b)) = ferrozk_storage::small::read(&raft_dir, "purged") {
            if b.len() == 24 {
                break u64::from_le_bytes(b[16..24].try_into().unwrap()) + 1;
            }
        }
        assert!(Instant::now() < deadline, "the log was not purged after {} snapshots", snaps.len());
        std::thread::sleep(Duration::from_millis(20));
    };
    let indexes: Vec<u64> = snapshots(&s.data_dir).iter().map(|p| snapshot_index(p)).collect();
    assert!(indexes.contains(&purged), "purged up to record {purged}, snapshots at {indexes:?}");
    assert!(purged < *indexes.last().unwrap(), "purged up to the newest snapshot ({purged}): no fallback left");
    drop(c);
}
