//! Lock, election and semaphore recipes: mutual exclusion, no herd, timeouts, cancellation,
//! holders whose session ends (also by SIGKILL), readers sharing, leader observers.
//! Against an in-process ferrozk server, or `FERROZK_TEST_ZK` (see tests/common).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, server, within};
use ferrozk_client::recipes::{Lock, LockKind};
use ferrozk_client::*;

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

/// Requests the server has received (`srvr`).
async fn received(connect: &str) -> u64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = connect.split('/').next().unwrap();
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(b"srvr").await.unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).await.unwrap();
    out.lines().find_map(|l| l.strip_prefix("Received: ")).unwrap().trim().parse().unwrap()
}

#[tokio::test]
async fn a_lock_ensures_its_path_once_and_again_if_it_was_removed() {
    let s = server("lockpath").await;
    let zk = Client::connect(&s.connect_string()).await.unwrap();
    let mut lock = Lock::new(&zk, "/locks/p/q", "me");
    assert!(lock.acquire(None).await.unwrap());
    lock.release().await.unwrap();
    let before = received(&s.connect_string()).await;
    assert!(lock.acquire(None).await.unwrap());
    lock.release().await.unwrap();
    // create, getChildren and delete: the path is not created again (each create of an
    // existing node would be a write through the log that fails). Counted only on a server
    // of this test's own: on a shared one other tests' requests count too.
    if s.dedicated() {
        assert_eq!(received(&s.connect_string()).await - before, 3);
    }
    let (_, root) = zk.get_data("/locks").await.unwrap();
    zk.delete("/locks/p/q", -1).await.unwrap();
    zk.delete("/locks/p", -1).await.unwrap();
    assert!(lock.acquire(None).await.unwrap(), "the removed path is made again");
    lock.release().await.unwrap();
    assert!(zk.exists("/locks/p/q").await.unwrap().is_some());
    assert!(zk.get_data("/locks").await.unwrap().1.cversion > root.cversion);
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

/// The lock node names queued at `path` (empty if the lock node does not exist).
async fn queued(zk: &Client, path: &str) -> Vec<String> {
    match zk.get_children(path).await {
        Ok((c, _)) => c,
        Err(ErrorCode::NoNode) => Vec::new(),
        Err(e) => panic!("get_children {path}: {e}"),
    }
}

#[tokio::test]
async fn abandoned_acquires_leave_no_node_behind() {
    use std::future::Future;
    use std::task::Poll;
    let s = server("cancel").await;
    let zk = s.client().await;
    let mut holder = Lock::new(&zk, "/locks/c", "holder");
    assert!(holder.acquire(None).await.unwrap());
    let holder_node = holder.node().unwrap().rsplit('/').next().unwrap().to_string();

    // 1. A waiter whose acquire future is dropped while it waits behind the holder.
    let waiter_zk = s.client().await;
    let mut waiter = Lock::new(&waiter_zk, "/locks/c", "dropped-waiting");
    assert!(tokio::time::timeout(Duration::from_millis(300), waiter.acquire(None)).await.is_err(), "the lock is held");
    eventually("the dropped waiter's node goes", || async { queued(&zk, "/locks/c").await == vec![holder_node.clone()] }).await;

    // 2. Dropped right after its first poll, with the create request still in flight: the node's
    // sequence number was never learnt, yet it must go too.
    {
        let fut = waiter.acquire(None);
        tokio::pin!(fut);
        std::future::poll_fn(|cx| {
            assert!(fut.as_mut().poll(cx).is_pending());
            Poll::Ready(())
        })
        .await;
    }
    eventually("the in-flight node goes", || async { queued(&zk, "/locks/c").await == vec![holder_node.clone()] }).await;

    // 3. An explicit cancel: acquire returns false and has removed its node when it returns.
    let canceller = waiter.canceller();
    let pending = tokio::spawn(async move {
        let got = waiter.acquire(None).await;
        (waiter, got)
    });
    eventually("the waiter queues", || async { queued(&zk, "/locks/c").await.len() == 2 }).await;
    canceller.cancel();
    let (mut waiter, got) = within("cancelled acquire", pending).await.unwrap();
    assert!(!got.unwrap(), "a cancelled acquire reports it did not get the lock");
    assert_eq!(queued(&zk, "/locks/c").await, vec![holder_node.clone()], "cancel left a node");

    // The abandoned attempts did not disturb the queue: the waiter still gets the lock next.
    holder.release().await.unwrap();
    assert!(within("acquire after release", waiter.acquire(None)).await.unwrap());
    let waiter_node = waiter.node().unwrap().to_string();

    // 4. A held Lock that is dropped releases its node.
    drop(waiter);
    eventually("the dropped holder's node goes", || async { zk.exists(&waiter_node).await.unwrap().is_none() }).await;
    assert!(queued(&zk, "/locks/c").await.is_empty());
    s.shutdown().await;
}

/// Not a test of its own: the lock-holding process `sigkilled_holder_hands_the_lock_on` starts
/// (this test binary again) and kills with SIGKILL.
#[tokio::test]
#[ignore = "run by sigkilled_holder_hands_the_lock_on as a separate process"]
async fn lock_holder_process() {
    let connect = std::env::var("FERROZK_HOLDER_CONNECT").expect("started by sigkilled_holder_hands_the_lock_on");
    let zk = Client::builder(&connect).session_timeout(Duration::from_millis(2000)).connect().await.unwrap();
    let mut lock = Lock::new(&zk, "/locks/killed", "doomed");
    assert!(lock.acquire(None).await.unwrap());
    // Straight to the process's stdout (println! would be captured by the test harness); the
    // harness's "test lock_holder_process ... " may precede it on the line.
    let mut out = std::io::stdout();
    std::io::Write::write_all(&mut out, format!("HOLDING {}\n", lock.node().unwrap()).as_bytes()).unwrap();
    std::io::Write::flush(&mut out).unwrap();
    std::future::pending::<()>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_holder_hands_the_lock_on() {
    use std::io::BufRead;
    use std::os::unix::process::ExitStatusExt;
    let s = server("sigkill").await;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "lock_holder_process", "--test-threads=1"])
        .env("FERROZK_HOLDER_CONNECT", s.connect_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let holder_node = within(
        "the holder process takes the lock",
        tokio::task::spawn_blocking(move || {
            let mut lines = std::io::BufReader::new(stdout).lines();
            lines.find_map(|l| Some(l.ok()?.split_once("HOLDING ")?.1.to_string())).expect("holder exited early")
        }),
    )
    .await
    .unwrap();

    let zk = s.client().await;
    let mut waiter = Lock::new(&zk, "/locks/killed", "survivor");
    let waiting = tokio::spawn(async move {
        let got = waiter.acquire(None).await.unwrap();
        (waiter, got)
    });
    eventually("the waiter queues behind the holder", || async { queued(&zk, "/locks/killed").await.len() == 2 }).await;
    assert_eq!(Lock::new(&zk, "/locks/killed", "").contenders().await.unwrap(), vec!["doomed", "survivor"]);
    assert!(!waiting.is_finished(), "the waiter got the lock while the holder lived");

    child.kill().unwrap(); // SIGKILL: no release, no session close
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "the holder did not die of SIGKILL: {status}");
    // Only the server's session expiry removes the holder's node now.
    let (waiter, got) = within("the waiter gets the lock after the holder's session expires", waiting).await.unwrap();
    assert!(got && waiter.is_acquired());
    assert!(zk.exists(&holder_node).await.unwrap().is_none(), "the killed holder's node is gone");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn election_observers_follow_the_hand_over_without_a_herd() {
    use ferrozk_client::recipes::{LeaderElection, LeaderObserver};
    let s = server("observer").await;
    let watcher_zk = s.client().await;
    ferrozk_client::recipes::ensure_path(&watcher_zk, "/election").await.unwrap();
    // Three observers, on one session, each reporting leaders on its own channel.
    let mut observers = Vec::new();
    for _ in 0..3 {
        let (observer, rx) = LeaderObserver::channel(&watcher_zk, "/election");
        observers.push((observer, rx));
    }
    for (_, rx) in observers.iter_mut() {
        assert_eq!(within("first report", rx.recv()).await.unwrap(), None, "nobody leads yet");
    }

    // Four candidates queue up; each leads until told to step down.
    let mut step_down = Vec::new();
    let mut candidates = Vec::new();
    let mut woken_before_joins = Vec::new();
    for i in 0..4 {
        let zk = s.client().await;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        step_down.push(tx);
        let mut e = LeaderElection::new(&zk, "/election", &format!("c{i}"));
        candidates.push(tokio::spawn(async move {
            e.run(async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
            zk.close().await;
        }));
        let expected = i + 1;
        eventually("the candidate queues", || async { queued(&watcher_zk, "/election").await.len() == expected }).await;
        if i == 0 {
            for (observer, rx) in observers.iter_mut() {
                assert_eq!(within("leader report", rx.recv()).await.unwrap().as_deref(), Some("c0"));
                // Settle, so each observer is watching the leader before the others join.
                tokio::time::sleep(Duration::from_millis(200)).await;
                woken_before_joins.push(observer.wakeups.load(Ordering::SeqCst));
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for ((observer, _), before) in observers.iter().zip(&woken_before_joins) {
        assert_eq!(observer.wakeups.load(Ordering::SeqCst), *before, "an observer was woken by candidates joining");
    }
    let asker = LeaderElection::new(&watcher_zk, "/election", "asker");
    assert_eq!(asker.leader().await.unwrap().as_deref(), Some("c0"));
    assert_eq!(asker.contenders().await.unwrap(), vec!["c0", "c1", "c2", "c3"]);

    // Hand over c0 -> c1 -> c2 -> c3 -> nobody; every observer sees each leader in turn.
    for (i, tx) in step_down.into_iter().enumerate() {
        tx.send(()).unwrap();
        let next = (i + 1 < 4).then(|| format!("c{}", i + 1));
        for (_, rx) in observers.iter_mut() {
            assert_eq!(within("hand-over report", rx.recv()).await.unwrap(), next);
        }
    }
    for c in candidates {
        c.await.unwrap();
    }
    // At most one wake-up per leader leaving (fewer when a leader left before the observer
    // had set its watch: it then sees the node gone without waiting).
    for ((observer, _), before) in observers.iter().zip(&woken_before_joins) {
        let woken = observer.wakeups.load(Ordering::SeqCst);
        assert!(woken <= before + 4, "{woken} wake-ups for 4 leader changes");
    }
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semaphore_never_exceeds_its_leases_and_wakes_one_waiter_per_release() {
    use ferrozk_client::recipes::Semaphore;
    const MAX: usize = 2;
    let s = server("semaphore").await;
    let inside = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    let mut wakeups = Vec::new();
    for i in 0..6 {
        let zk = s.client().await;
        let mut sem = Semaphore::new(&zk, "/sem", &format!("w{i}"), MAX);
        wakeups.push(sem.wakeups.clone());
        let inside = inside.clone();
        tasks.push(tokio::spawn(async move {
            let checker = Semaphore::new(&zk, "/sem", "checker", MAX);
            for _ in 0..4 {
                assert!(sem.acquire(None).await.unwrap());
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                assert!(now <= MAX, "{now} holders of {MAX} leases");
                let holders = checker.lease_holders().await.unwrap();
                assert!(holders.len() <= MAX && holders.contains(&format!("w{i}")), "lease holders {holders:?}");
                tokio::time::sleep(Duration::from_millis(5)).await;
                inside.fetch_sub(1, Ordering::SeqCst);
                sem.release().await.unwrap();
            }
            zk.close().await;
        }));
    }
    for t in tasks {
        within("semaphore workers", t).await.unwrap();
    }
    // Lock hand-offs wake one waiter each, and only the lock holder watches the lease pool.
    let woken: u64 = wakeups.iter().map(|w| w.load(Ordering::SeqCst)).sum();
    assert!(woken <= 2 * 24, "herd: {woken} wake-ups for 24 acquisitions");

    let zk = s.client().await;
    let mut a = Semaphore::new(&zk, "/sem", "a", MAX);
    let mut b = Semaphore::new(&zk, "/sem", "b", MAX);
    let mut c = Semaphore::new(&zk, "/sem", "c", MAX);
    assert!(a.acquire(None).await.unwrap() && b.acquire(None).await.unwrap());
    assert!(!c.acquire(Some(Duration::from_millis(200))).await.unwrap(), "a third lease of two");
    let mut holders = a.lease_holders().await.unwrap();
    holders.sort();
    assert_eq!(holders, vec!["a", "b"], "the timed-out contender left no lease");
    assert_eq!(
        Semaphore::new(&zk, "/sem", "x", 3).acquire(None).await,
        Err(ErrorCode::BadArguments),
        "max_leases must match the recorded value"
    );
    // A waiter gets a lease as soon as one is released, and a dropped holder gives its lease back.
    let waiting = tokio::spawn(async move {
        let got = c.acquire(None).await.unwrap();
        (c, got)
    });
    a.release().await.unwrap();
    let (c, got) = within("a freed lease", waiting).await.unwrap();
    assert!(got && c.is_acquired());
    drop(b);
    eventually("a dropped holder's lease goes", || async { c.lease_holders().await.unwrap() == vec!["c"] }).await;
    s.shutdown().await;
}
