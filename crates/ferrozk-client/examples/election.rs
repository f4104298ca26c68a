//! Leader election with hand-over:
//! `cargo run -p ferrozk-client --example election -- HOST:PORT[,HOST:PORT...]`
//!
//! Three candidates, each with its own session, run for leader at
//! `/ferrozk-examples/election` ([`LeaderElection`], kazoo's node naming). The leader works for
//! a moment and steps down; the next candidate in line takes over. A [`LeaderObserver`] prints
//! each change of leader as it happens.
//!
//! [`LeaderElection`]: ferrozk_client::recipes::LeaderElection
//! [`LeaderObserver`]: ferrozk_client::recipes::LeaderObserver

use std::time::Duration;

use ferrozk_client::recipes::{LeaderElection, LeaderObserver};
use ferrozk_client::Client;

const PATH: &str = "/ferrozk-examples/election";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hosts = std::env::args().nth(1).ok_or("usage: election HOST:PORT[,HOST:PORT...]")?;
    let observer_zk = Client::connect(&hosts).await?;
    let (observer, mut leaders) = LeaderObserver::channel(&observer_zk, PATH);
    // Prints each change, until nobody leads after someone did.
    let printer = tokio::spawn(async move {
        let mut someone_led = false;
        while let Some(leader) = leaders.recv().await {
            println!("observer: leader is {}", leader.as_deref().unwrap_or("<nobody>"));
            if leader.is_none() && someone_led {
                break;
            }
            someone_led |= leader.is_some();
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut candidates = Vec::new();
    for name in ["alpha", "bravo", "charlie"] {
        let zk = Client::connect(&hosts).await?;
        candidates.push(tokio::spawn(async move {
            let mut election = LeaderElection::new(&zk, PATH, name);
            election
                .run(async {
                    println!("{name}: elected, working");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    println!("{name}: stepping down");
                })
                .await?;
            zk.close().await;
            Ok::<_, ferrozk_client::ErrorCode>(())
        }));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for c in candidates {
        c.await??;
    }
    tokio::time::timeout(Duration::from_secs(10), printer).await.map_err(|_| "observer missed a change")??;
    drop(observer);
    observer_zk.close().await;
    Ok(())
}
