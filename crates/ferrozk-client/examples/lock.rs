//! A distributed lock: `cargo run -p ferrozk-client --example lock -- HOSTS PATH ROUNDS [COUNTER_FILE]`.
//!
//! Takes the lock ROUNDS times. With COUNTER_FILE, each round does an unprotected
//! read-increment-write of the number in that file while holding the lock, so lost updates
//! show when two holders overlap (the cross-client test runs this beside kazoo's Lock).

use std::time::Duration;

use ferrozk_client::recipes::Lock;
use ferrozk_client::Client;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: lock HOSTS PATH ROUNDS [COUNTER_FILE]");
        std::process::exit(2);
    }
    let (hosts, path, rounds) = (&args[1], &args[2], args[3].parse::<u32>()?);
    let counter = args.get(4);
    let zk = Client::connect(hosts).await.map_err(|e| format!("connect: {e}"))?;
    let mut lock = Lock::new(&zk, path, &format!("rust-{}", std::process::id()));
    for _ in 0..rounds {
        lock.acquire(None).await.map_err(|e| format!("acquire: {e}"))?;
        if let Some(file) = counter {
            let n: u64 = std::fs::read_to_string(file)?.trim().parse().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(2)).await;
            std::fs::write(file, format!("{}\n", n + 1))?;
        } else {
            println!("holding {path}");
        }
        lock.release().await.map_err(|e| format!("release: {e}"))?;
    }
    zk.close().await;
    Ok(())
}
