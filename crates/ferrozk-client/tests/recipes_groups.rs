//! Group recipes: the double barrier and party membership.
//! Against an in-process ferrozk server, or `FERROZK_TEST_ZK` (see tests/common).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{server, within};
use ferrozk_client::recipes::{DoubleBarrier, Party};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_barrier_lets_nobody_in_early_or_out_early() {
    const N: usize = 4;
    let s = server("double-barrier").await;
    let arrived = Arc::new(AtomicUsize::new(0));
    let leaving = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..N {
        let zk = s.client().await;
        let (arrived, leaving) = (arrived.clone(), leaving.clone());
        tasks.push(tokio::spawn(async move {
            // Staggered, so an early release would let someone through before the last arrives.
            tokio::time::sleep(Duration::from_millis(40 * i as u64)).await;
            let mut barrier = DoubleBarrier::new(&zk, "/barrier", N, &format!("m{i}"));
            arrived.fetch_add(1, Ordering::SeqCst);
            barrier.enter().await.unwrap();
            assert!(barrier.is_participating());
            assert_eq!(arrived.load(Ordering::SeqCst), N, "m{i} entered before everyone arrived");
            tokio::time::sleep(Duration::from_millis(40 * (N - i) as u64)).await;
            leaving.fetch_add(1, Ordering::SeqCst);
            barrier.leave().await.unwrap();
            assert_eq!(leaving.load(Ordering::SeqCst), N, "m{i} left before everyone was leaving");
            assert!(!barrier.is_participating());
            zk.close().await;
        }));
    }
    for t in tasks {
        within("barrier members", t).await.unwrap();
    }
    let zk = s.client().await;
    assert!(zk.get_children("/barrier").await.unwrap().0.is_empty(), "members' nodes left behind");

    // One short of the count, nobody gets in; the last arrival lets everyone in.
    let mut early = Vec::new();
    for i in 0..2 {
        let zk = s.client().await;
        early.push(tokio::spawn(async move {
            let mut b = DoubleBarrier::new(&zk, "/barrier2", 3, &format!("e{i}"));
            b.enter().await.unwrap();
            (zk, b)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(early.iter().all(|t| !t.is_finished()), "entered with 2 of 3");
    let mut last = DoubleBarrier::new(&zk, "/barrier2", 3, "last");
    within("the third enters", last.enter()).await.unwrap();
    let mut members = Vec::new();
    for t in early {
        members.push(within("the first two enter", t).await.unwrap());
    }
    // Leaving: the last one out waits for the others.
    let leaver = tokio::spawn(async move {
        last.leave().await.unwrap();
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!leaver.is_finished(), "left while two were still inside");
    let leaves: Vec<_> = members
        .into_iter()
        .map(|(zk, mut b)| {
            tokio::spawn(async move {
                b.leave().await.unwrap();
                zk
            })
        })
        .collect();
    for l in leaves {
        within("leave", l).await.unwrap();
    }
    within("the last leaves", leaver).await.unwrap();
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn party_membership_follows_joins_leaves_and_ended_sessions() {
    let s = server("party").await;
    let observer_zk = s.client().await;
    let observer = Party::new(&observer_zk, "/party", "observer");
    let (members, mut changed) = observer.members_w().await.unwrap();
    assert!(members.is_empty());

    let mut sessions = Vec::new();
    let mut parties = Vec::new();
    for name in ["a", "b", "c"] {
        let zk = s.client().await;
        let mut p = Party::new(&zk, "/party", name);
        p.join().await.unwrap();
        p.join().await.unwrap(); // idempotent
        assert!(p.is_participating());
        sessions.push(zk);
        parties.push(p);
    }
    within("join noticed", changed).await.unwrap();
    let mut members = observer.members().await.unwrap();
    members.sort();
    assert_eq!(members, vec!["a", "b", "c"]);
    assert_eq!(observer.len().await.unwrap(), 3);

    // b leaves explicitly.
    let (_, watch) = observer.members_w().await.unwrap();
    parties[1].leave().await.unwrap();
    within("leave noticed", watch).await.unwrap();
    let mut members = observer.members().await.unwrap();
    members.sort();
    assert_eq!(members, vec!["a", "c"]);

    // c's session closes without leaving: its ephemeral member node goes with it.
    (_, changed) = observer.members_w().await.unwrap();
    let c_session = sessions.pop().unwrap();
    parties.pop();
    c_session.close().await;
    within("session end noticed", changed).await.unwrap();
    assert_eq!(observer.members().await.unwrap(), vec!["a"]);

    // d's last client handle is dropped: that closes its session, and d drops out.
    let dropped = s.client().await;
    let mut d = Party::new(&dropped, "/party", "d");
    d.join().await.unwrap();
    let mut members = observer.members().await.unwrap();
    members.sort();
    assert_eq!(members, vec!["a", "d"]);
    let (_, changed) = observer.members_w().await.unwrap();
    drop(d);
    drop(dropped);
    within("dropped member noticed", changed).await.unwrap();
    assert_eq!(observer.members().await.unwrap(), vec!["a"]);
    assert!(parties[0].is_participating());
    s.shutdown().await;
}
