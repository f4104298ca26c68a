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

mod apply;
pub mod config;
mod conn;
mod core;
mod dispatch;
pub mod fourlw;
mod ops;
mod order;
mod outbox;
mod raft;
mod sessions;
pub use raft::{has_no_ferrozk_data, tools, ConsensusError, RecoveryError};
mod snapshot_child;
mod stats;
mod tls;
pub mod zk_import;

/// The request path without the network, for the fuzzer: frames in, tree changed, replies
/// encoded. Not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    use ferrozk_proto::frame::{check_frame, FrameCheck};
    use ferrozk_proto::{Decode, Reader, Request, RequestHeader};
    use ferrozk_tree::{acl, Txn};

    use crate::config::ServerConfig;
    use crate::core::Core;
    use crate::ops::{execute_read, write_reply, write_txn, ReadCtx};

    /// Runs every complete frame in `data` as a request of one session, as a connection would.
    pub fn run_frames(data: &[u8]) {
        let config = ServerConfig { extended_types_enabled: true, enforce_quota: true, ..Default::default() };
        let mut core = Core::new(&config);
        let session = 1;
        let auth = vec![acl::id("ip", "127.0.0.1"), acl::id("digest", "u:x")];
        core.tree.apply(
            1,
            &Txn {
                session,
                time: 0,
                auth: vec![],
                op: ferrozk_tree::TxnOp::CreateSession { timeout: 30000, passwd: vec![0; 16] },
            },
        );
        let mut rest = data;
        let mut time = 1;
        while let FrameCheck::Complete(len) = check_frame(rest, 1 << 20) {
            let payload = &rest[4..4 + len];
            rest = &rest[4 + len..];
            let mut r = Reader::new(payload);
            let Ok(hdr) = RequestHeader::decode(&mut r) else { continue };
            let Ok(req) = Request::decode(hdr.op, &mut r) else { continue };
            if let Some(op) = write_txn(&req) {
                time += 1;
                let zxid = core.tree.last_zxid() + 1;
                let applied = core.tree.apply(zxid, &Txn { session, time, auth: auth.clone(), op });
                for c in &applied.changes {
                    core.watches.trigger(&c.path, c.kind);
                }
                let _ = write_reply(hdr.xid, hdr.op, &applied);
            } else {
                let ctx = ReadCtx { conn: 1, session, auth: &auth };
                let mut pre = Vec::new();
                if let Ok(Some(body)) = execute_read(&mut core, &ctx, &req, &mut pre) {
                    let mut out = Vec::new();
                    body.encode(&mut out);
                }
            }
            for path in core.tree.reap_candidates(time + 1_000_000) {
                let zxid = core.tree.last_zxid() + 1;
                core.tree.apply(zxid, &Txn { session: 0, time, auth: vec![], op: ferrozk_tree::TxnOp::DeleteContainer { path } });
            }
        }
    }
}

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

    /// How often empty containers and expired TTL nodes are removed
    /// (`znode.container.checkIntervalMs`).
    pub fn container_check_interval_ms(mut self, ms: u64) -> Self {
        self.config.container_check_interval_ms = ms.max(1);
        self
    }

    /// Entries between snapshots (`snapCount`).
    pub fn snap_count(mut self, n: u64) -> Self {
        self.config.snap_count = n.max(2);
        self
    }

    pub fn config_mut(&mut self) -> &mut ServerConfig {
        &mut self.config
    }

    /// This server's id: set, or the `myid` file in dataDir; 1 for a standalone server.
    pub fn my_id(mut self, id: u64) -> Self {
        self.config.my_id = Some(id);
        self
    }

    /// Recovers the tree and the log, starts consensus, binds the ports and starts serving.
    pub async fn start(self) -> Result<Server, StartError> {
        let mut config = self.config;
        let my_id = resolve_my_id(&config).map_err(StartError::Config)?;
        if let Some(m) = config.members.iter().find(|m| m.id == my_id) {
            if config.client_addr.port() == 0 {
                if let Some(a) = m.client_addr {
                    config.client_addr = a;
                }
            }
        }
        let (tree, restored) = tokio::task::spawn_blocking({
            let config = config.clone();
            move || -> Result<_, raft::RecoveryError> {
                let imported = zk_import::take_over(&config, my_id)?.map(|(i, adopted)| (i.tree, adopted));
                let restored = raft::restore(&config, imported)?;
                // Reading the log and the snapshot left freed memory in their threads' malloc
                // arenas (tens of MB on a big log); hand it back before serving.
                // SAFETY: malloc_trim only releases free memory.
                unsafe { libc::malloc_trim(0) };
                Ok(restored)
            }
        })
        .await
        .map_err(|e| StartError::Data(raft::RecoveryError::Thread(std::io::Error::other(e.to_string()))))?
        .map_err(StartError::Data)?;
        let listener = listen("clients", config.client_addr.to_string()).await?;
        let bound = listener.local_addr().map_err(|e| StartError::Listen {
            what: "clients",
            addr: config.client_addr.to_string(),
            source: e,
        })?;
        let peer_listener = match config.members.iter().find(|m| m.id == my_id) {
            Some(m) if config.members.len() > 1 => {
                Some(listen("ensemble members", format!("{}:{}", m.host, m.quorum_port)).await?)
            }
            _ => None,
        };
        let (shared, proposals) = core::Shared::new(config.clone(), bound, tree, my_id);
        let consensus =
            raft::Consensus::start(shared.clone(), restored, proposals, peer_listener).await.map_err(StartError::Consensus)?;
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(sessions::run_expiry(shared.clone())));
        tasks.push(tokio::spawn(accept_loop(shared.clone(), listener, None)));
        tracing::info!(addr = %bound, "serving clients");
        let mut secure_bound = None;
        if let Some(addr) = shared.config.secure_client_addr {
            let acceptor = tls::acceptor(&shared.config.tls).map_err(StartError::Tls)?;
            let listener = listen("TLS clients", addr.to_string()).await?;
            let at = listener.local_addr().map_err(|e| StartError::Listen {
                what: "TLS clients",
                addr: addr.to_string(),
                source: e,
            })?;
            secure_bound = Some(at);
            tasks.push(tokio::spawn(accept_loop(shared.clone(), listener, Some(acceptor))));
            tracing::info!(addr = %at, "serving TLS clients");
        }
        Ok(Server { shared, tasks, bound, secure_bound, consensus })
    }
}

/// Why a server did not start, as its operator needs to hear it.
#[derive(Debug)]
pub enum StartError {
    /// The configuration or `myid` does not describe a server this one can be.
    Config(String),
    /// The data directory cannot be used: a damaged or incomplete log or snapshot, or an I/O
    /// error reading it.
    Data(RecoveryError),
    /// An address could not be listened on (in use, not local, not permitted).
    Listen { what: &'static str, addr: String, source: std::io::Error },
    /// The TLS keys or certificates cannot be used.
    Tls(String),
    /// Consensus could not start over the recovered state.
    Consensus(ConsensusError),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Config(e) => write!(f, "bad configuration: {e}"),
            StartError::Data(e) => write!(f, "cannot use the data directory: {e}"),
            StartError::Listen { what, addr, source } => write!(f, "cannot listen for {what} on {addr}: {source}"),
            StartError::Tls(e) => write!(f, "cannot set up TLS: {e}"),
            StartError::Consensus(e) => write!(f, "cannot start consensus: {e}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Listen { source, .. } => Some(source),
            StartError::Data(e) => Some(e),
            StartError::Consensus(e) => Some(e),
            _ => None,
        }
    }
}

/// For callers that deal in `io::Error`: a failed bind keeps its kind.
impl From<StartError> for std::io::Error {
    fn from(e: StartError) -> std::io::Error {
        let kind = match &e {
            StartError::Listen { source, .. } => source.kind(),
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, e)
    }
}

async fn listen(what: &'static str, addr: String) -> Result<TcpListener, StartError> {
    TcpListener::bind(&addr).await.map_err(|source| StartError::Listen { what, addr, source })
}

/// `myid` decides which `server.N` line is this server; a standalone server is member 1.
pub fn resolve_my_id(config: &ServerConfig) -> Result<u64, String> {
    let from_file = || -> Result<Option<u64>, String> {
        let path = config.data_dir.join("myid");
        match std::fs::read_to_string(&path) {
            Ok(t) => {
                t.trim().parse::<u64>().map(Some).map_err(|_| format!("{}: not a server id: '{}'", path.display(), t.trim()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    };
    let id = match config.my_id {
        Some(id) => Some(id),
        None => from_file()?,
    };
    match (config.members.len(), id) {
        (0, id) => Ok(id.unwrap_or(1).max(1)),
        (1, None) => Ok(config.members[0].id),
        (_, None) => {
            Err(format!("{} is missing: an ensemble member needs its server id there", config.data_dir.join("myid").display()))
        }
        (_, Some(id)) if config.members.iter().any(|m| m.id == id) => Ok(id),
        (_, Some(id)) => Err(format!("myid {id} is not one of the configured servers (server.N lines)")),
    }
}

async fn accept_loop(shared: Arc<core::Shared>, listener: TcpListener, tls: Option<tokio_rustls::TlsAcceptor>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                tokio::spawn(conn::serve(shared.clone(), stream, peer, tls.clone()));
            }
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

/// A running server. Dropping it without `shutdown` leaves its tasks running on the runtime.
pub struct Server {
    shared: Arc<core::Shared>,
    tasks: Vec<JoinHandle<()>>,
    bound: SocketAddr,
    secure_bound: Option<SocketAddr>,
    consensus: raft::Consensus,
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

    /// Writes a snapshot of everything applied so far and waits for it; returns its file.
    pub async fn take_snapshot(&self) -> std::io::Result<Option<PathBuf>> {
        let target = self.shared.lock().tree.last_zxid() as u64;
        self.consensus.snapshot().await?;
        let (_, snap_dir) = core::dirs(&self.shared.config);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
        loop {
            if let Some(s) =
                ferrozk_storage::snap::list(&snap_dir).into_iter().next().filter(|s| s.index >= raft::record_of(target as i64))
            {
                return Ok(Some(s.path));
            }
            if std::time::Instant::now() > deadline {
                return Err(std::io::Error::other("snapshot did not finish"));
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// This member's role: "leader", "follower", "observer" or "standalone".
    pub fn role(&self) -> &'static str {
        fourlw::mode(&self.shared)
    }

    /// A digest of the tree as applied here (equal on members that applied the same log).
    pub fn digest(&self) -> (i64, u64) {
        let core = self.shared.lock();
        (core.tree.last_zxid(), core.tree.digest())
    }

    /// The TLS client address, when `secureClientPort` is set.
    pub fn secure_client_addr(&self) -> Option<SocketAddr> {
        self.secure_bound
    }

    pub fn config(&self) -> &ServerConfig {
        &self.shared.config
    }

    /// Stops accepting, closes every connection and stops the server's tasks.
    pub async fn shutdown(mut self) {
        for t in &self.tasks {
            t.abort();
        }
        {
            let core = self.shared.lock();
            for c in core.conns.values() {
                c.out.close();
            }
        }
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        self.consensus.shutdown(&self.shared).await;
    }
}
