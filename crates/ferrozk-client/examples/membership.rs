//! Cluster membership with ephemeral nodes:
//! `cargo run -p ferrozk-client --example membership -- HOST:PORT[,HOST:PORT...]`
//!
//! Three "nodes" join the [`Party`] at `/ferrozk-examples/members`, each with its own session;
//! a monitor prints the membership whenever it changes. One node leaves politely, one
//! session is closed without leaving (as when a process exits): ZooKeeper removes its
//! ephemeral member node and the monitor sees it go.
//!
//! [`Party`]: ferrozk_client::recipes::Party

use std::time::Duration;

use ferrozk_client::recipes::Party;
use ferrozk_client::Client;

const PATH: &str = "/ferrozk-examples/members";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hosts = std::env::args().nth(1).ok_or("usage: membership HOST:PORT[,HOST:PORT...]")?;
    let monitor_zk = Client::connect(&hosts).await?;
    let monitor = Party::new(&monitor_zk, PATH, "monitor");
    // Prints each membership it sees, until only the third node is left.
    let monitor_task = tokio::spawn(async move {
        let mut last = None;
        loop {
            let (mut members, changed) = monitor.members_w().await?;
            members.sort();
            if last.as_ref() != Some(&members) {
                println!("monitor: members are {members:?}");
                last = Some(members.clone());
            }
            if members == ["10.0.0.3:9000"] {
                return Ok::<_, ferrozk_client::ErrorCode>(());
            }
            changed.await?;
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut nodes = Vec::new();
    for name in ["10.0.0.1:9000", "10.0.0.2:9000", "10.0.0.3:9000"] {
        let zk = Client::connect(&hosts).await?;
        let mut me = Party::new(&zk, PATH, name);
        me.join().await?;
        println!("{name}: joined");
        nodes.push((zk, me));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let (zk, mut leaving) = nodes.remove(0);
    leaving.leave().await?;
    println!("10.0.0.1:9000: left");
    zk.close().await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (zk, _crashed) = nodes.remove(0);
    zk.close().await;
    println!("10.0.0.2:9000: session closed without leaving");

    tokio::time::timeout(Duration::from_secs(10), monitor_task).await.map_err(|_| "monitor missed a change")???;
    for (zk, _) in nodes {
        zk.close().await;
    }
    monitor_zk.close().await;
    Ok(())
}
