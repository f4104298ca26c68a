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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn election_hands_over_in_queue_order() {
    use ferrozk_client::recipes::LeaderElection;
    let s = server("election").await;
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..3 {
        let zk = Client::connect(&s.connect_string()).await.unwrap();
        let order = order.clone();
        let mut e = LeaderElection::new(&zk, "/election", &format!("c{i}"));
        tasks.push(tokio::spawn(async move {
            e.run(async {
                order.lock().unwrap().push(i);
                tokio::time::sleep(Duration::from_millis(30)).await;
                assert_eq!(order.lock().unwrap().last(), Some(&i), "another leader started while this one led");
            })
            .await
            .unwrap();
            zk.close().await;
        }));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Each candidate led exactly once, one after the other (checked inside `run`).
    let mut led = order.lock().unwrap().clone();
    led.sort();
    assert_eq!(led, vec![0, 1, 2]);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_loses_no_update_and_barrier_releases_waiters() {
    use ferrozk_client::recipes::{Barrier, Counter};
    let s = server("counter").await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let zk = Client::connect(&s.connect_string()).await.unwrap();
        tasks.push(tokio::spawn(async move {
            let c = Counter::new(&zk, "/counters/hits");
            for _ in 0..25 {
                c.add(1).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let zk = Client::connect(&s.connect_string()).await.unwrap();
    assert_eq!(Counter::new(&zk, "/counters/hits").get().await.unwrap(), 100);
    let b = Barrier::new(&zk, "/barriers/start");
    b.create().await.unwrap();
    assert!(!b.wait(Some(Duration::from_millis(100))).await.unwrap(), "raised barrier holds");
    let waiter = {
        let zk = Client::connect(&s.connect_string()).await.unwrap();
        tokio::spawn(async move { Barrier::new(&zk, "/barriers/start").wait(Some(Duration::from_secs(10))).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    b.remove().await.unwrap();
    assert!(waiter.await.unwrap().unwrap(), "lowering releases the waiter");
    s.shutdown().await;
}
