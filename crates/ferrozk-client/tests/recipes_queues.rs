//! Queue recipes: FIFO order with several producers and consumers, blocking gets, and a
//! LockingQueue losing no entry when a consumer's session ends before it consumes.
//! Against an in-process ferrozk server, or `FERROZK_TEST_ZK` (see tests/common).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{server, within};
use ferrozk_client::recipes::{LockingQueue, Queue};

/// "producer:n" -> (producer, n)
fn parse(entry: &[u8]) -> (u32, u32) {
    let s = std::str::from_utf8(entry).unwrap();
    let (p, n) = s.split_once(':').unwrap();
    (p.parse().unwrap(), n.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_is_fifo_with_several_producers_and_consumers() {
    const PRODUCERS: u32 = 3;
    const EACH: u32 = 20;
    let s = server("queue").await;

    // One consumer after several producers: exactly the order of creation.
    let zk = s.client().await;
    let q = Queue::new(&zk, "/q1");
    let mut created = Vec::new();
    for n in 0..10 {
        created.push(q.put(format!("0:{n}").as_bytes()).await.unwrap());
    }
    let other = s.client().await;
    created.push(Queue::new(&other, "/q1").put(b"1:0").await.unwrap());
    let mut q = q;
    assert_eq!(q.len().await.unwrap(), 11);
    let mut got = Vec::new();
    while let Some(v) = q.get().await.unwrap() {
        got.push(String::from_utf8(v).unwrap());
    }
    let mut want: Vec<String> = (0..10).map(|n| format!("0:{n}")).collect();
    want.push("1:0".into());
    assert_eq!(got, want);
    assert!(q.is_empty().await.unwrap());
    // Priorities come first, FIFO within a priority.
    q.put_with_priority(b"late", 500).await.unwrap();
    q.put_with_priority(b"urgent", 1).await.unwrap();
    q.put(b"normal").await.unwrap();
    for want in ["urgent", "normal", "late"] {
        assert_eq!(q.get().await.unwrap().as_deref(), Some(want.as_bytes()));
    }

    // Producers and blocked consumers running together: every entry taken exactly once, and
    // each consumer sees each producer's entries in the order they were put.
    let mut consumers = Vec::new();
    for _ in 0..3 {
        let zk = s.client().await;
        consumers.push(tokio::spawn(async move {
            let mut q = Queue::new(&zk, "/q2");
            let mut got = Vec::new();
            while let Some(v) = q.get_wait(Some(Duration::from_secs(20))).await.unwrap() {
                if v == b"stop" {
                    break;
                }
                got.push(parse(&v));
            }
            got
        }));
    }
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let zk = s.client().await;
        producers.push(tokio::spawn(async move {
            let q = Queue::new(&zk, "/q2");
            for n in 0..EACH {
                q.put(format!("{p}:{n}").as_bytes()).await.unwrap();
            }
        }));
    }
    for p in producers {
        within("producers", p).await.unwrap();
    }
    // Low priority: taken only once every entry has been.
    let stopper = Queue::new(&zk, "/q2");
    for _ in 0..3 {
        stopper.put_with_priority(b"stop", 999).await.unwrap();
    }
    let mut seen = BTreeSet::new();
    for c in consumers {
        let got = within("consumers", c).await.unwrap();
        for p in 0..PRODUCERS {
            let order: Vec<u32> = got.iter().filter(|(q, _)| *q == p).map(|(_, n)| *n).collect();
            assert!(order.windows(2).all(|w| w[0] < w[1]), "producer {p}'s entries out of order: {order:?}");
        }
        for e in got {
            assert!(seen.insert(e), "{e:?} taken twice");
        }
    }
    assert_eq!(seen.len() as u32, PRODUCERS * EACH, "entries lost");
    assert!(Queue::new(&zk, "/q2").is_empty().await.unwrap());

    // A blocked get is woken by a put; an empty queue times out; cancel ends a wait.
    let mut waiter = Queue::new(&other, "/q3");
    assert_eq!(waiter.get_wait(Some(Duration::from_millis(100))).await.unwrap(), None);
    let cancel = waiter.canceller();
    let pending = tokio::spawn(async move { waiter.get_wait(None).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    cancel.cancel();
    assert_eq!(within("cancelled get", pending).await.unwrap().unwrap(), None);
    let mut waiter = Queue::new(&other, "/q3");
    let pending = tokio::spawn(async move { waiter.get_wait(None).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    Queue::new(&zk, "/q3").put(b"wake").await.unwrap();
    assert_eq!(within("blocked get", pending).await.unwrap().unwrap().as_deref(), Some(&b"wake"[..]));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locking_queue_loses_no_entry_when_a_consumer_dies_before_consuming() {
    let s = server("locking-queue").await;
    let zk = s.client().await;
    let mut producer = LockingQueue::new(&zk, "/lq");
    producer.put_all(&[b"e0", b"e1", b"e2"], 100).await.unwrap();
    producer.put(b"e3").await.unwrap();
    assert_eq!(producer.len().await.unwrap(), 4);

    // A consumer takes e0 and its session ends before it consumes it.
    let doomed = s.client().await;
    let mut dying = LockingQueue::new(&doomed, "/lq");
    assert_eq!(dying.get(None).await.unwrap().as_deref(), Some(&b"e0"[..]));
    assert!(dying.holds_lock().await.unwrap());
    assert_eq!(dying.get(None).await.unwrap().as_deref(), Some(&b"e0"[..]), "get returns the held entry again");

    // Meanwhile another consumer skips the locked entry.
    let c2 = s.client().await;
    let mut survivor = LockingQueue::new(&c2, "/lq");
    assert_eq!(survivor.get(None).await.unwrap().as_deref(), Some(&b"e1"[..]));
    assert!(survivor.release().await.unwrap(), "released, not consumed");
    assert_eq!(survivor.get(None).await.unwrap().as_deref(), Some(&b"e1"[..]), "a released entry is taken again");
    assert!(survivor.consume().await.unwrap());

    doomed.close().await;
    assert!(!dying.consume().await.unwrap_or(false), "a consumer whose session ended cannot consume");
    // e0 is back in the queue: every remaining entry is consumed exactly once.
    let mut got = Vec::new();
    while let Some(v) = survivor.get(Some(Duration::from_millis(500))).await.unwrap() {
        got.push(String::from_utf8(v).unwrap());
        assert!(survivor.consume().await.unwrap());
    }
    assert_eq!(got, vec!["e0", "e2", "e3"]);
    assert_eq!(producer.len().await.unwrap(), 0);

    // A blocked get wakes when an entry's holder releases it.
    producer.put(b"contested").await.unwrap();
    let mut holder = LockingQueue::new(&zk, "/lq");
    assert_eq!(holder.get(None).await.unwrap().as_deref(), Some(&b"contested"[..]));
    let waiting = tokio::spawn(async move {
        let got = survivor.get(None).await.unwrap();
        (survivor, got)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "took an entry someone holds");
    assert!(holder.release().await.unwrap());
    let (mut survivor, got) = within("released entry", waiting).await.unwrap();
    assert_eq!(got.as_deref(), Some(&b"contested"[..]));
    assert!(survivor.consume().await.unwrap());
    assert!(!holder.consume().await.unwrap(), "nothing held after release");

    // Several consumers, one of which dies holding an entry: all entries consumed exactly once.
    let values: Vec<Vec<u8>> = (0..30).map(|n| format!("job-{n:02}").into_bytes()).collect();
    let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
    producer.put_all(&refs, 100).await.unwrap();
    let crasher_zk = s.client().await;
    let mut crasher = LockingQueue::new(&crasher_zk, "/lq");
    let lost_job = crasher.get(None).await.unwrap().unwrap();
    let mut workers = Vec::new();
    for _ in 0..3 {
        let zk = s.client().await;
        workers.push(tokio::spawn(async move {
            let mut q = LockingQueue::new(&zk, "/lq");
            let mut done = Vec::new();
            while let Some(v) = q.get(Some(Duration::from_secs(2))).await.unwrap() {
                if q.consume().await.unwrap() {
                    done.push(v);
                }
            }
            done
        }));
    }
    crasher_zk.close().await;
    let mut consumed = Vec::new();
    for w in workers {
        consumed.extend(within("workers", w).await.unwrap());
    }
    consumed.sort();
    assert!(consumed.contains(&lost_job), "the crashed consumer's entry was lost");
    assert_eq!(consumed, values, "every entry consumed exactly once");
    s.shutdown().await;
}
