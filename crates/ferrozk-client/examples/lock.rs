//! A distributed lock: `cargo run -p ferrozk-client --example lock -- HOSTS PATH ROUNDS [COUNTER_FILE]`.
//!
//! Takes the lock ROUNDS times. With COUNTER_FILE, each round does an unprotected
//! read-increment-write of the number in that file while holding the lock, so lost updates
//! show when two holders overlap (the cross-client test runs this beside kazoo's Lock).
//! LOCK_HOLD_MS (default 2) is how long each round holds the lock. Connection loss is ridden
//! through (the client's default RetryPolicy); the session's end stops the run.

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
    let hold = Duration::from_millis(std::env::var("LOCK_HOLD_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(2));
    let zk = Client::connect(hosts).await.map_err(|e| format!("connect: {e}"))?;
    let mut lock = Lock::new(&zk, path, &format!("rust-{}", std::process::id()));
    for _ in 0..rounds {
        lock.acquire(None).await.map_err(|e| format!("acquire: {e}"))?;
        if let Some(file) = counter {
            let n: u64 = std::fs::read_to_string(file)?.trim().parse().unwrap_or(0);
            tokio::time::sleep(hold).await;
            std::fs::write(file, format!("{}\n", n + 1))?;
        } else {
            println!("holding {path}");
        }
        lock.release().await.map_err(|e| format!("release: {e}"))?;
    }
    zk.close().await;
    Ok(())
}
