//! Lock recipes against an in-process ferrozk server: mutual exclusion, no herd, timeouts,
//! a holder whose session ends, and readers sharing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ferrozk_client::recipes::{Lock, LockKind};
use ferrozk_client::*;
use ferrozk_server::Server;

async fn server(name: &str) -> Server {
    let d = std::env::temp_dir().join(format!("ferrozk-recipes-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    Server::builder().client_addr("127.0.0.1:0".parse().unwrap()).data_dir(d).tick_time(200).start().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_holder_at_a_time_and_a_release_wakes_one_waiter() {
    let s = server("mutex").await;
    let holders = Arc::new(AtomicUsize::new(0));
    let acquisitions = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    let mut wakeups = Vec::new();
    for i in 0..5 {
        let zk = Client::connect(&s.connect_string()).await.unwrap();
        let mut lock = Lock::new(&zk, "/locks/mutex", &format!("worker-{i}"));
        wakeups.push(lock.wakeups.clone());
        let (holders, acquisitions) = (holders.clone(), acquisitions.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                assert!(lock.acquire(None).await.unwrap());
                assert_eq!(holders.fetch_add(1, Ordering::SeqCst), 0, "two holders at once");
                tokio::time::sleep(Duration::from_millis(3)).await;
                holders.fetch_sub(1, Ordering::SeqCst);
                acquisitions.fetch_add(1, Ordering::SeqCst);
                lock.release().await.unwrap();
            }
            zk.close().await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(acquisitions.load(Ordering::SeqCst), 25);
    // Each waiter watches only its predecessor: one wake-up per hand-off at most.
    let woken: u64 = wakeups.iter().map(|w| w.load(Ordering::SeqCst)).sum();
    assert!(woken <= 25, "herd: {woken} wake-ups for 25 acquisitions");
    s.shutdown().await;
}

#[tokio::test]
async fn timeouts_and_ended_sessions_hand_the_lock_on() {
    let s = server("timeout").await;
    let a = Client::builder(&s.connect_string()).session_timeout(Duration::from_millis(800)).connect().await.unwrap();
    let b = Client::connect(&s.connect_string()).await.unwrap();
    let mut held = Lock::new(&a, "/locks/t", "a");
    assert!(held.acquire(None).await.unwrap());
    assert!(held.acquire(None).await.unwrap(), "re-entrant");
    let mut waiter = Lock::new(&b, "/locks/t", "b");
    assert!(!waiter.acquire(Some(Duration::from_millis(200))).await.unwrap(), "timed out");
    assert_eq!(waiter.contenders().await.unwrap(), vec!["a"], "a timed-out waiter leaves the queue");
    // The holder's session ends without a release: its node goes, the waiter proceeds.
    a.close().await;
    assert!(waiter.acquire(Some(Duration::from_secs(10))).await.unwrap());
    waiter.release().await.unwrap();
    s.shutdown().await;
}

#[tokio::test]
async fn readers_share_and_a_writer_waits_for_them() {
    let s = server("rw").await;
    let zk = Client::connect(&s.connect_string()).await.unwrap();
    let mut r1 = Lock::with_kind(&zk, "/locks/rw", "r1", LockKind::Read);
    let mut r2 = Lock::with_kind(&zk, "/locks/rw", "r2", LockKind::Read);
    let mut w = Lock::with_kind(&zk, "/locks/rw", "w", LockKind::Write);
    assert!(r1.acquire(None).await.unwrap());
    assert!(r2.acquire(Some(Duration::from_millis(500))).await.unwrap(), "readers share");
    assert!(!w.acquire(Some(Duration::from_millis(200))).await.unwrap(), "a writer waits for readers");
    r1.release().await.unwrap();
    r2.release().await.unwrap();
    assert!(w.acquire(Some(Duration::from_secs(5))).await.unwrap());
    let mut r3 = Lock::with_kind(&zk, "/locks/rw", "r3", LockKind::Read);
    assert!(!r3.acquire(Some(Duration::from_millis(200))).await.unwrap(), "a reader waits for the writer");
    w.release().await.unwrap();
    s.shutdown().await;
}
