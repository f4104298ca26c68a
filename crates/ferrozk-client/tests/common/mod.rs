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
            let s = Server::builder().client_addr("127.0.0.1:0".parse().unwrap()).data_dir(d).tick_time(200).start().await.unwrap();
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
