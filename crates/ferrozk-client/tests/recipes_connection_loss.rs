//! Every recipe rides through connection loss while its session lives: each client goes through
//! a proxy that cuts its connection one to six requests after every reconnect (tests/common's
//! `CuttingProxy`), so a request or its reply is lost in the middle of most operations. No
//! recipe call may fail, no lock or lease node may be left behind or made twice, and what the
//! recipes promise (one holder at a time, exact counts) still holds.
//! Against an in-process ferrozk server, or `FERROZK_TEST_ZK` (interop/recipes/run.sh).

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, server, within};
use ferrozk_client::recipes::*;
use ferrozk_client::*;

async fn children(zk: &Client, path: &str) -> Vec<String> {
    match zk.get_children(path).await {
        Ok((c, _)) => c,
        Err(ErrorCode::NoNode) => Vec::new(),
        Err(e) => panic!("get_children {path}: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_hand_over_through_cut_connections_and_leave_no_node() {
    let s = server("cut-lock").await;
    let proxy = s.cutting_proxy().await;
    let holders = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..3 {
        let zk = proxy.client().await;
        let holders = holders.clone();
        tasks.push(tokio::spawn(async move {
            let mut lock = Lock::new(&zk, "/cut/lock", &format!("worker-{i}"));
            for round in 0..8 {
                assert!(lock.acquire(None).await.unwrap_or_else(|e| panic!("worker {i} round {round}: acquire: {e}")));
                assert_eq!(holders.fetch_add(1, Ordering::SeqCst), 0, "two holders at once");
                tokio::time::sleep(Duration::from_millis(2)).await;
                holders.fetch_sub(1, Ordering::SeqCst);
                lock.release().await.unwrap_or_else(|e| panic!("worker {i} round {round}: release: {e}"));
            }
            let id = zk.session_id();
            (zk, id)
        }));
    }
    let mut sessions = Vec::new();
    for t in tasks {
        sessions.push(within("lock rounds", t).await.unwrap());
    }
    let direct = s.client().await;
    assert_eq!(children(&direct, "/cut/lock").await, Vec::<String>::new(), "a contender node left behind");
    for (zk, id) in sessions {
        assert_eq!(zk.session_id(), id);
        assert_eq!(zk.connection_state(), ConnectionState::Connected, "the session lived through the cuts");
        zk.close().await;
    }
    assert!(proxy.cuts.load(Ordering::SeqCst) > 10, "the proxy cut connections");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semaphore_election_and_party_through_cut_connections() {
    let s = server("cut-semaphore").await;
    let proxy = s.cutting_proxy().await;
    let direct = s.client().await;
    let inside = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..3 {
        let zk = proxy.client().await;
        let inside = inside.clone();
        tasks.push(tokio::spawn(async move {
            let mut sem = Semaphore::new(&zk, "/cut/sem", &format!("s{i}"), 2);
            let mut election = LeaderElection::new(&zk, "/cut/election", &format!("e{i}"));
            let mut party = Party::new(&zk, "/cut/party", &format!("p{i}"));
            for round in 0..4 {
                assert!(sem.acquire(None).await.unwrap_or_else(|e| panic!("semaphore {i}/{round}: {e}")));
                assert!(inside.fetch_add(1, Ordering::SeqCst) < 2, "more lease holders than leases");
                tokio::time::sleep(Duration::from_millis(2)).await;
                inside.fetch_sub(1, Ordering::SeqCst);
                sem.release().await.unwrap_or_else(|e| panic!("semaphore release {i}/{round}: {e}"));
                let led = election.run(async { i }).await.unwrap_or_else(|e| panic!("election {i}/{round}: {e}"));
                assert_eq!(led, Some(i));
                party.join().await.unwrap_or_else(|e| panic!("party join {i}/{round}: {e}"));
                assert!(party.members().await.unwrap().contains(&format!("p{i}")));
                party.leave().await.unwrap_or_else(|e| panic!("party leave {i}/{round}: {e}"));
            }
            zk
        }));
    }
    for t in tasks {
        within("semaphore rounds", t).await.unwrap().close().await;
    }
    for path in ["/cut/sem", "/cut/sem-__lock__", "/cut/election", "/cut/party"] {
        assert_eq!(children(&direct, path).await, Vec::<String>::new(), "{path}: a node left behind");
    }
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_stay_exact_through_cut_connections() {
    let s = server("cut-counter").await;
    let proxy = s.cutting_proxy().await;
    let mut tasks = Vec::new();
    // Different deltas: a lost reply is then told apart from another client's equal write.
    for delta in [1i64, 1000] {
        let zk = proxy.client().await;
        tasks.push(tokio::spawn(async move {
            let counter = Counter::new(&zk, "/cut/counter");
            for _ in 0..15 {
                counter.add(delta).await.unwrap_or_else(|e| panic!("add {delta}: {e}"));
            }
            zk
        }));
    }
    for t in tasks {
        within("counter adds", t).await.unwrap().close().await;
    }
    let direct = s.client().await;
    assert_eq!(Counter::new(&direct, "/cut/counter").get().await.unwrap(), 15 * 1001);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barriers_through_cut_connections() {
    let s = server("cut-barrier").await;
    let proxy = s.cutting_proxy().await;
    let direct = s.client().await;
    // A double barrier of three, twice.
    let mut tasks = Vec::new();
    for i in 0..3 {
        let zk = proxy.client().await;
        tasks.push(tokio::spawn(async move {
            let mut barrier = DoubleBarrier::new(&zk, "/cut/double", 3, &format!("d{i}"));
            for round in 0..2 {
                barrier.enter().await.unwrap_or_else(|e| panic!("enter {i}/{round}: {e}"));
                barrier.leave().await.unwrap_or_else(|e| panic!("leave {i}/{round}: {e}"));
            }
            zk
        }));
    }
    for t in tasks {
        within("double barrier", t).await.unwrap().close().await;
    }
    assert_eq!(children(&direct, "/cut/double").await, Vec::<String>::new());
    // A plain barrier: created and waited on through the proxy, removed directly.
    let zk = proxy.client().await;
    let barrier = Barrier::new(&zk, "/cut/gate");
    barrier.create().await.unwrap();
    let waiting = tokio::spawn(async move {
        let ok = Barrier::new(&zk, "/cut/gate").wait(None).await;
        (zk, ok)
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    Barrier::new(&direct, "/cut/gate").remove().await.unwrap();
    let (zk, ok) = within("barrier wait", waiting).await.unwrap();
    assert_eq!(ok, Ok(true));
    zk.close().await;
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_through_cut_connections() {
    let s = server("cut-queue").await;
    let proxy = s.cutting_proxy().await;
    let direct = s.client().await;
    let producer = proxy.client().await;
    let consumer = proxy.client().await;
    let put: BTreeSet<String> = (0..12).map(|i| format!("item-{i}")).collect();

    // Queue: a put whose reply is lost may put twice (kazoo's layout leaves no room for a
    // marker) and a take whose reply is lost may lose the entry (as kazoo's): no error, and
    // nothing comes out that was not put.
    let queue = Queue::new(&producer, "/cut/queue");
    for item in &put {
        queue.put(item.as_bytes()).await.unwrap_or_else(|e| panic!("put {item}: {e}"));
    }
    let mut taker = Queue::new(&consumer, "/cut/queue");
    while let Some(v) = taker.get().await.unwrap_or_else(|e| panic!("get: {e}")) {
        assert!(put.contains(&String::from_utf8(v).unwrap()));
    }

    // LockingQueue: every entry is consumed at least once, and consuming is exact.
    let mut lq = LockingQueue::new(&producer, "/cut/lq");
    for item in &put {
        lq.put(item.as_bytes()).await.unwrap_or_else(|e| panic!("locking put {item}: {e}"));
    }
    let mut worker = LockingQueue::new(&consumer, "/cut/lq");
    let mut consumed = BTreeSet::new();
    while let Some(v) = worker.get(Some(Duration::from_millis(500))).await.unwrap_or_else(|e| panic!("locking get: {e}")) {
        consumed.insert(String::from_utf8(v).unwrap());
        assert!(worker.consume().await.unwrap_or_else(|e| panic!("consume: {e}")), "the entry was ours");
    }
    assert_eq!(consumed, put);
    assert_eq!(children(&direct, "/cut/lq/entries").await, Vec::<String>::new());
    assert_eq!(children(&direct, "/cut/lq/taken").await, Vec::<String>::new());
    producer.close().await;
    consumer.close().await;
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caches_and_watchers_follow_changes_through_cut_connections() {
    let s = server("cut-cache").await;
    let proxy = s.cutting_proxy().await;
    let direct = s.client().await;
    ensure_path(&direct, "/cut/tree/a").await.unwrap();
    let zk = proxy.client().await;
    let (node_cache, _node_events) = NodeCache::start(&zk, "/cut/tree/a").await.unwrap();
    let (tree_cache, _tree_events) = TreeCache::start(&zk, "/cut/tree").await.unwrap();
    let (_watch, mut seen) = DataWatch::channel(&zk, "/cut/tree/a");
    let (_observer, mut leaders) = LeaderObserver::channel(&zk, "/cut/leader");
    for i in 0..10 {
        direct.set_data("/cut/tree/a", format!("v{i}").as_bytes(), -1).await.unwrap();
        direct.create(&format!("/cut/tree/n{i}"), b"x", open_acl(), CreateMode::Persistent).await.unwrap();
        // Keep the proxied session busy, so that its connection keeps being cut.
        let _ = zk.exists("/cut").await;
    }
    eventually("NodeCache has the last value", || async { node_cache.get().map(|n| n.data) == Some(b"v9".to_vec()) }).await;
    eventually("TreeCache has every node", || async { (0..10).all(|i| tree_cache.get(&format!("/cut/tree/n{i}")).is_some()) })
        .await;
    within("DataWatch reports the last value", async {
        while let Some(v) = seen.recv().await {
            if v.map(|n| n.data) == Some(b"v9".to_vec()) {
                break;
            }
        }
    })
    .await;
    let mut election = LeaderElection::new(&direct, "/cut/leader", "the-leader");
    let observed = async {
        while let Some(l) = leaders.recv().await {
            if l.as_deref() == Some("the-leader") {
                return;
            }
        }
        panic!("the observer stopped");
    };
    let led = election.run(async { within("LeaderObserver sees the leader", observed).await });
    assert_eq!(led.await.unwrap(), Some(()));
    zk.close().await;
    s.shutdown().await;
}

#[tokio::test]
async fn a_lost_session_is_reported_not_retried() {
    let s = server("cut-lost").await;
    let zk = s.client().await;
    let mut lock = Lock::new(&zk, "/cut/lost", "a");
    assert!(lock.acquire(None).await.unwrap());
    zk.clone().close().await;
    eventually("the session is lost", || async { zk.connection_state() == ConnectionState::Lost }).await;
    assert!(!lock.is_acquired(), "a lock is not held once its session is lost");
    assert_eq!(lock.release().await, Err(ErrorCode::SessionExpired));
    s.shutdown().await;
}
