//! A work queue whose jobs survive a crashed worker:
//! `cargo run -p ferrozk-client --example work_queue -- HOST:PORT[,HOST:PORT...]`
//!
//! A producer puts ten jobs in a [`LockingQueue`] at `/ferrozk-examples/jobs`. A worker takes
//! one and "crashes" (its session closes before it calls `consume`): the job's lock goes with
//! the session and the job returns to the queue. Three workers then take, process and consume
//! every job, including the one the crashed worker held. Each worker prints what it did.
//!
//! [`LockingQueue`]: ferrozk_client::recipes::LockingQueue

use std::time::Duration;

use ferrozk_client::recipes::LockingQueue;
use ferrozk_client::Client;

const PATH: &str = "/ferrozk-examples/jobs";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hosts = std::env::args().nth(1).ok_or("usage: work_queue HOST:PORT[,HOST:PORT...]")?;
    let producer_zk = Client::connect(&hosts).await?;
    let mut queue = LockingQueue::new(&producer_zk, PATH);
    let jobs: Vec<String> = (1..=10).map(|n| format!("job-{n:02}")).collect();
    for job in &jobs {
        queue.put(job.as_bytes()).await?;
    }
    println!("producer: queued {} jobs", jobs.len());

    let crashing_zk = Client::connect(&hosts).await?;
    let mut crashing = LockingQueue::new(&crashing_zk, PATH);
    if let Some(job) = crashing.get(Some(Duration::from_secs(5))).await? {
        println!("worker X: took {} and crashed before finishing it", String::from_utf8_lossy(&job));
    }
    crashing_zk.close().await;

    let mut workers = Vec::new();
    for id in 1..=3 {
        let zk = Client::connect(&hosts).await?;
        workers.push(tokio::spawn(async move {
            let mut queue = LockingQueue::new(&zk, PATH);
            let mut done = Vec::new();
            // An empty queue for a second means the work is over.
            while let Some(job) = queue.get(Some(Duration::from_secs(1))).await? {
                let job = String::from_utf8_lossy(&job).into_owned();
                tokio::time::sleep(Duration::from_millis(20)).await; // the "work"
                if queue.consume().await? {
                    println!("worker {id}: finished {job}");
                    done.push(job);
                }
            }
            zk.close().await;
            Ok::<_, ferrozk_client::ErrorCode>(done)
        }));
    }
    let mut finished = Vec::new();
    for w in workers {
        finished.extend(w.await??);
    }
    finished.sort();
    println!("all workers: {} of {} jobs finished, none lost: {}", finished.len(), jobs.len(), finished == jobs);
    producer_zk.close().await;
    if finished != jobs {
        return Err("jobs were lost or done twice".into());
    }
    Ok(())
}
