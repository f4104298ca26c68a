//! Configuration pushed to watchers:
//! `cargo run -p ferrozk-client --example config -- HOST:PORT[,HOST:PORT...]`
//!
//! Three "service" sessions follow `/ferrozk-examples/config` with a [`DataWatch`] (each
//! change arrives as a new value, `None` while the node is absent); an "operator" session
//! publishes three versions and then deletes the node. Every service prints what it saw.
//!
//! [`DataWatch`]: ferrozk_client::recipes::DataWatch

use std::time::Duration;

use ferrozk_client::recipes::{ensure_path, DataWatch};
use ferrozk_client::{open_acl, Client, CreateMode};
use tokio::sync::mpsc;

const PATH: &str = "/ferrozk-examples/config";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hosts = std::env::args().nth(1).ok_or("usage: config HOST:PORT[,HOST:PORT...]")?;
    let operator = Client::connect(&hosts).await?;
    ensure_path(&operator, "/ferrozk-examples").await?;

    let (seen_tx, mut seen) = mpsc::unbounded_channel::<(usize, Option<String>)>();
    let mut services = Vec::new();
    for id in 0..3 {
        let zk = Client::connect(&hosts).await?;
        let tx = seen_tx.clone();
        let watch = DataWatch::start(&zk, PATH, move |value| {
            let text = value.map(|v| format!("{} (version {})", String::from_utf8_lossy(&v.data), v.stat.version));
            println!("service {id}: config is now {}", text.as_deref().unwrap_or("<absent>"));
            tx.send((id, text)).is_ok()
        });
        services.push((zk, watch));
    }
    drop(seen_tx);
    // Each watcher reports the current state first.
    wait_for_all(&mut seen, services.len()).await?;

    for (version, config) in [r#"{"pool": 4}"#, r#"{"pool": 8}"#, r#"{"pool": 8, "tls": true}"#].iter().enumerate() {
        println!("operator: publishing {config}");
        if version == 0 {
            operator.create(PATH, config.as_bytes(), open_acl(), CreateMode::Persistent).await?;
        } else {
            operator.set_data(PATH, config.as_bytes(), -1).await?;
        }
        wait_for_all(&mut seen, services.len()).await?;
    }
    println!("operator: withdrawing the config");
    operator.delete(PATH, -1).await?;
    wait_for_all(&mut seen, services.len()).await?;

    for (zk, watch) in services {
        drop(watch);
        zk.close().await;
    }
    operator.close().await;
    Ok(())
}

/// Waits until every service has reported once more.
async fn wait_for_all(seen: &mut mpsc::UnboundedReceiver<(usize, Option<String>)>, n: usize) -> Result<(), String> {
    for _ in 0..n {
        tokio::time::timeout(Duration::from_secs(10), seen.recv())
            .await
            .map_err(|_| "a service did not see the change within 10 s")?
            .ok_or("a watcher stopped")?;
    }
    Ok(())
}
