//! The server a recipe test talks to: an in-process ferrozk server, or, when
//! `FERROZK_TEST_ZK=host:port` is set, that server (e.g. Apache ZooKeeper, see
//! interop/recipes/run.sh). Either way each test works under its own chroot, so runs and tests
//! never see each other's nodes.
#![allow(dead_code)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferrozk_client::recipes::ensure_path;
use ferrozk_client::Client;
use ferrozk_server::Server;

pub struct TestServer {
    server: Option<Server>,
    connect: String,
}

/// A server for the test `name`, with an empty root of its own.
pub async fn server(name: &str) -> TestServer {
    let unique = format!("{name}-{}-{}", std::process::id(), SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos());
    let (server, host) = match std::env::var("FERROZK_TEST_ZK") {
        Ok(host) if !host.is_empty() => (None, host),
        _ => {
            let d = std::env::temp_dir().join(format!("ferrozk-recipes-{unique}"));
            let _ = std::fs::remove_dir_all(&d);
            let s =
                Server::builder().client_addr("127.0.0.1:0".parse().unwrap()).data_dir(d).tick_time(200).start().await.unwrap();
            let host = s.connect_string();
            (Some(s), host)
        }
    };
    let root = format!("/ferrozk-tests/{unique}");
    // A just-started ZooKeeper answers ruok a moment before it accepts sessions.
    let mut attempts = 0;
    let zk = loop {
        match Client::connect(&host).await {
            Ok(zk) => break zk,
            Err(_) if attempts < 50 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("cannot reach {host}: {e}"),
        }
    };
    ensure_path(&zk, &root).await.unwrap();
    zk.close().await;
    TestServer { server, connect: format!("{host}{root}") }
}

impl TestServer {
    /// Host and chroot: every path a test uses lies under its own root.
    /// Whether the server serves this test alone (not a shared FERROZK_TEST_ZK server, where
    /// other tests' requests run at the same time).
    pub fn dedicated(&self) -> bool {
        self.server.is_some()
    }

    pub fn connect_string(&self) -> String {
        self.connect.clone()
    }

    pub fn is_external(&self) -> bool {
        self.server.is_none()
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.connect).await.unwrap()
    }

    /// A client whose session ends soon after its process dies (the server may raise the
    /// timeout to its minimum, 2 ticks).
    pub async fn short_session_client(&self) -> Client {
        Client::builder(&self.connect).session_timeout(Duration::from_millis(2000)).connect().await.unwrap()
    }

    pub async fn shutdown(self) {
        if let Some(s) = self.server {
            s.shutdown().await;
        }
    }
}

/// Fails the test instead of hanging if `fut` never finishes (the bound is generous: it is no
/// timing assertion, only a guard against a hang).
pub async fn within<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(60), fut).await {
        Ok(out) => out,
        Err(_) => panic!("{what}: still not done after 60 s"),
    }
}

/// Polls `check` until it holds (guarded like [`within`]).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    within(what, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// A proxy between a client and the test's server that cuts every connection a few requests
/// after its handshake, while enabled: each request it forwards may be the one whose reply never
/// arrives (the client sees ConnectionLoss in the middle of a recipe operation, and reconnects
/// through the proxy with its session).
pub struct CuttingProxy {
    pub connect: String,
    enabled: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Connections cut so far.
    pub cuts: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    /// A proxy to this server that cuts connections (see [`CuttingProxy`]), cutting from the start.
    pub async fn cutting_proxy(&self) -> CuttingProxy {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        use std::sync::Arc;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let (target, chroot) = match self.connect.find('/') {
            Some(i) => (self.connect[..i].to_string(), self.connect[i..].to_string()),
            None => (self.connect.clone(), String::new()),
        };
        let target = target.split(',').next().unwrap().to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let connect = format!("{}{chroot}", listener.local_addr().unwrap());
        let (enabled, cuts) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicU64::new(0)));
        let (on, counted) = (enabled.clone(), cuts.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                // Requests forwarded after the handshake before the cut: 1 to 6.
                let budget = on.load(Ordering::SeqCst).then(|| 1 + rand::random::<u32>() % 6);
                let (target, counted) = (target.clone(), counted.clone());
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(&target).await else { return };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (mut from_client, mut to_client) = client.into_split();
                    let (mut from_server, mut to_server) = server.into_split();
                    let down = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
                    });
                    let mut frames = 0u32;
                    loop {
                        let mut len = [0u8; 4];
                        if from_client.read_exact(&mut len).await.is_err() {
                            break;
                        }
                        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
                        if from_client.read_exact(&mut body).await.is_err()
                            || to_server.write_all(&len).await.is_err()
                            || to_server.write_all(&body).await.is_err()
                        {
                            break;
                        }
                        // Frame 0 is the handshake; the cut comes after request number `budget`,
                        // once the server had a moment to act on it.
                        if budget.is_some_and(|b| frames >= b) {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                            counted.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                        frames += 1;
                    }
                    down.abort();
                });
            }
        });
        CuttingProxy { connect, enabled, cuts, task }
    }
}

impl CuttingProxy {
    /// A client through the proxy, with a session long enough to outlive the cuts.
    pub async fn client(&self) -> Client {
        let mut attempts = 0;
        loop {
            match Client::builder(&self.connect).session_timeout(Duration::from_secs(20)).connect().await {
                Ok(zk) => return zk,
                // The handshake's connection may be cut right after it.
                Err(_) if attempts < 20 => attempts += 1,
                Err(e) => panic!("cannot connect through the proxy: {e}"),
            }
        }
    }

    /// Stops cutting new connections (those already open keep their budget).
    pub fn stop_cutting(&self) {
        self.enabled.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
