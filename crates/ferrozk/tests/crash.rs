//! Crash test: the server is killed with SIGKILL at random moments under concurrent writes and
//! restarted on its data; every acknowledged write must survive.
//!
//! Workers do sequential creates (each returned name is acknowledged) and versioned
//! read-modify-write increments of a counter of their own. A write whose answer was lost with
//! the connection is "in doubt": after the restart it may or may not be there. After every
//! restart: each acknowledged name exists, no name was ever handed out twice, and each counter
//! lies between its acknowledged increments and those plus the ones in doubt (then the counter's
//! true value becomes the new baseline). `FERROZK_CRASH_CYCLES` sets the number of kills
//! (default 30).

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferrozk_client::{open_acl, Client, CreateMode, ErrorCode};

const WORKERS: usize = 4;

struct Server {
    child: Child,
    port: u16,
}

/// Below the kernel's ephemeral range, so that a restart on the same port finds it free.
fn free_port() -> u16 {
    // From a random start, each call the next: never the same port twice in a process (the
    // tests run side by side, and nothing holds a port until its server binds it).
    use std::sync::atomic::{AtomicU16, Ordering::SeqCst};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(0, 12000 + rand::random::<u16>() % 18000, SeqCst, SeqCst);
    loop {
        let port = NEXT.fetch_add(1, SeqCst);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn start(dir: &Path, port: u16) -> Server {
    let cfg = dir.join("zoo.cfg");
    let mut f = std::fs::File::create(&cfg).unwrap();
    writeln!(
        f,
        "tickTime=200\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\nmaxSessionTimeout=4000",
        dir.join("data").display()
    )
    .unwrap();
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("server.log")).unwrap();
    let child =
        Command::new(env!("CARGO_BIN_EXE_ferrozk")).arg("server").arg(&cfg).stdout(Stdio::null()).stderr(log).spawn().unwrap();
    Server { child, port }
}

async fn connect(port: u16) -> Client {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match Client::builder(&format!("127.0.0.1:{port}")).session_timeout(Duration::from_secs(4)).connect().await {
            Ok(c) => return c,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("server did not come back: {e:?}"),
        }
    }
}

#[derive(Default)]
struct Ledger {
    acked_names: Vec<String>,
    all_names: HashSet<String>,
    counters_acked: [i64; WORKERS],
    counters_in_doubt: [i64; WORKERS],
    acked_writes: u64,
}

async fn worker(port: u16, id: usize, ledger: Arc<Mutex<Ledger>>, stop: Arc<AtomicBool>) {
    let Ok(zk) = Client::builder(&format!("127.0.0.1:{port}")).session_timeout(Duration::from_secs(4)).connect().await else {
        return;
    };
    let counter = format!("/counters/w{id}");
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        if n % 2 == 0 {
            match zk.create(&format!("/seq/w{id}-"), b"", open_acl(), CreateMode::PersistentSequential).await {
                Ok(name) => {
                    let mut l = ledger.lock().unwrap();
                    assert!(l.all_names.insert(name.clone()), "sequence name {name} handed out twice");
                    l.acked_names.push(name);
                    l.acked_writes += 1;
                }
                Err(_) => break,
            }
        } else {
            let Ok((data, stat)) = zk.get_data(&counter).await else { break };
            let value: i64 = String::from_utf8_lossy(&data).parse().unwrap();
            // This worker is the counter's only writer and nothing is in doubt within a cycle
            // until a write fails, so the counter must read exactly what was acknowledged.
            assert_eq!(value, ledger.lock().unwrap().counters_acked[id], "{counter} moved under its only writer");
            match zk.set_data(&counter, (value + 1).to_string().as_bytes(), stat.version).await {
                Ok(_) => {
                    let mut l = ledger.lock().unwrap();
                    l.counters_acked[id] += 1;
                    l.acked_writes += 1;
                }
                Err(ErrorCode::BadVersion) => panic!("only this worker writes {counter}"),
                Err(_) => {
                    ledger.lock().unwrap().counters_in_doubt[id] += 1;
                    break;
                }
            }
        }
    }
    drop(zk);
}

fn temp_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("ferrozk-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let cycles: usize = std::env::var("FERROZK_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let dir = temp_dir();
    let port = free_port();
    let mut server = start(&dir, port);
    {
        let zk = connect(port).await;
        for p in ["/counters", "/seq"] {
            zk.create(p, b"", open_acl(), CreateMode::Persistent).await.unwrap();
        }
        for w in 0..WORKERS {
            zk.create(&format!("/counters/w{w}"), b"0", open_acl(), CreateMode::Persistent).await.unwrap();
        }
        zk.close().await;
    }
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let started = Instant::now();
    for cycle in 0..cycles {
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..WORKERS).map(|w| tokio::spawn(worker(port, w, ledger.clone(), stop.clone()))).collect();
        let run_for = 50 + rand::random::<u64>() % 400;
        tokio::time::sleep(Duration::from_millis(run_for)).await;
        server.child.kill().unwrap(); // SIGKILL
        server.child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.await.unwrap();
        }
        server = start(&dir, server.port);
        let zk = connect(port).await;
        let (children, _) = zk.get_children("/seq").await.unwrap();
        let present: HashSet<String> = children.into_iter().map(|c| format!("/seq/{c}")).collect();
        let mut values = [0i64; WORKERS];
        for (w, value) in values.iter_mut().enumerate() {
            let (data, _) = zk.get_data(&format!("/counters/w{w}")).await.unwrap();
            *value = String::from_utf8_lossy(&data).parse().unwrap();
        }
        {
            let mut l = ledger.lock().unwrap_or_else(|e| e.into_inner());
            for name in &l.acked_names {
                assert!(present.contains(name), "cycle {cycle}: acknowledged create {name} lost");
            }
            for (w, &value) in values.iter().enumerate() {
                let (acked, doubt) = (l.counters_acked[w], l.counters_in_doubt[w]);
                assert!(
                    value >= acked && value <= acked + doubt,
                    "cycle {cycle}: counter w{w} is {value}, acknowledged {acked}, in doubt {doubt}"
                );
                l.counters_acked[w] = value;
                l.counters_in_doubt[w] = 0;
            }
        }
        zk.close().await;
    }
    let l = ledger.lock().unwrap();
    eprintln!(
        "{cycles} SIGKILLs in {:.1} s; {} acknowledged writes verified ({} sequential names)",
        started.elapsed().as_secs_f64(),
        l.acked_writes,
        l.acked_names.len()
    );
    assert!(l.acked_writes > cycles as u64, "the workload made too little progress to mean anything");
    server.child.kill().unwrap();
    let _ = server.child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
