//! The ferrozk server: `zoo.cfg`, client connections, sessions, the request path and the
//! four-letter words, embeddable in-process.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let server = ferrozk_server::Server::builder().client_port(0).start().await?;
//! println!("clients connect to {}", server.client_addr());
//! server.shutdown().await;
//! # Ok(()) }
//! ```

pub mod config;
mod conn;
mod core;
pub mod fourlw;
mod ops;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub use config::{ConfigError, ServerConfig};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Builds a server from `zoo.cfg` settings.
pub struct ServerBuilder {
    config: ServerConfig,
}

impl ServerBuilder {
    pub fn from_config(config: ServerConfig) -> Self {
        ServerBuilder { config }
    }

    /// Port 0 picks a free port; [`Server::client_addr`] tells which.
    pub fn client_port(mut self, port: u16) -> Self {
        self.config.client_addr.set_port(port);
        self
    }

    pub fn client_addr(mut self, addr: SocketAddr) -> Self {
        self.config.client_addr = addr;
        self
    }

    pub fn tick_time(mut self, ms: u64) -> Self {
        self.config.tick_time = ms;
        self
    }

    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.data_dir = dir.into();
        self
    }

    pub fn max_client_cnxns(mut self, n: usize) -> Self {
        self.config.max_client_cnxns = n;
        self
    }

    pub fn four_letter_words(mut self, words: &[&str]) -> Self {
        self.config.four_letter_whitelist = words.iter().map(|w| w.to_string()).collect();
        self
    }

    pub fn extended_types(mut self, enabled: bool) -> Self {
        self.config.extended_types_enabled = enabled;
        self
    }

    pub fn super_digest(mut self, digest: impl Into<String>) -> Self {
        self.config.super_digest = Some(digest.into());
        self
    }

    pub fn jute_max_buffer(mut self, bytes: usize) -> Self {
        self.config.jute_max_buffer = bytes;
        self
    }

    pub fn sessionless_timeout_ms(mut self, ms: u64) -> Self {
        self.config.sessionless_cnxn_timeout_ms = ms;
        self
    }

    pub fn session_timeouts(mut self, min_ms: u64, max_ms: u64) -> Self {
        self.config.min_session_timeout = Some(min_ms);
        self.config.max_session_timeout = Some(max_ms);
        self
    }

    pub fn config_mut(&mut self) -> &mut ServerConfig {
        &mut self.config
    }

    /// Binds the client port and starts serving.
    pub async fn start(self) -> std::io::Result<Server> {
        let listener = TcpListener::bind(self.config.client_addr).await?;
        let bound = listener.local_addr()?;
        let (shared, proposals) = core::Shared::new(self.config, bound);
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(core::run_committer(shared.clone(), proposals)));
        tasks.push(tokio::spawn(core::run_expiry(shared.clone())));
        let accept_shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        tokio::spawn(conn::serve(accept_shared.clone(), stream, peer));
                    }
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    }
                }
            }
        }));
        tracing::info!(addr = %bound, "serving clients");
        Ok(Server { shared, tasks, bound })
    }
}

/// A running server. Dropping it without `shutdown` leaves its tasks running on the runtime.
pub struct Server {
    shared: Arc<core::Shared>,
    tasks: Vec<JoinHandle<()>>,
    bound: SocketAddr,
}

impl Server {
    pub fn builder() -> ServerBuilder {
        ServerBuilder::from_config(ServerConfig::default())
    }

    /// The address clients connect to (with the real port when 0 was asked for).
    pub fn client_addr(&self) -> SocketAddr {
        self.bound
    }

    /// A `host:port` connect string for clients.
    pub fn connect_string(&self) -> String {
        let ip = if self.bound.ip().is_unspecified() { "127.0.0.1".to_string() } else { self.bound.ip().to_string() };
        format!("{ip}:{}", self.bound.port())
    }

    pub fn config(&self) -> &ServerConfig {
        &self.shared.config
    }

    /// Stops accepting, closes every connection and stops the server's tasks.
    pub async fn shutdown(self) {
        for t in &self.tasks {
            t.abort();
        }
        {
            let core = self.shared.lock();
            for c in core.conns.values() {
                let _ = c.out.send(core::Out::Close);
            }
        }
        for t in self.tasks {
            let _ = t.await;
        }
    }
}
